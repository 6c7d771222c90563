//! Proves the real-time paths allocate nothing in steady state.
//!
//! A counting global allocator wraps the system allocator and counts, per
//! thread, every `alloc`, `alloc_zeroed` and `realloc`. Each test warms a
//! component up (first ticks may size lazy state), then runs many ticks and
//! asserts the count did not move. Counting per thread keeps the parallel test
//! harness from disturbing the measurement.

use appmedia_media::alloc_count::{CountingAllocator, allocations_during};
use appmedia_media::frame::{Frame16, Frame48, SAMPLES_PER_FRAME_16K, SILENT_FRAME_48};
use appmedia_media::mixer::Mixer;
use appmedia_media::queue::{self, Push};
use appmedia_media::resample::{Downsampler, Upsampler, f32_to_s16le_bytes, s16le_bytes_to_f32};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const WARMUP_TICKS: usize = 10;
const MEASURED_TICKS: usize = 500;

fn speechish(tick: usize, phase: f32) -> Frame48 {
    let mut f = SILENT_FRAME_48;
    for (i, s) in f.iter_mut().enumerate() {
        let t = (tick * SILENT_FRAME_48.len() + i) as f32 / 48_000.0;
        *s = 0.3 * (t * 2.0 * std::f32::consts::PI * (180.0 + phase)).sin();
    }
    f
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the guard: a test that cannot fail proves nothing.
    let n = allocations_during(|| {
        let v: Vec<u8> = Vec::with_capacity(64);
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}

#[test]
fn mixer_tick_with_mix_minus_allocates_nothing() {
    let mut mixer = Mixer::with_capacity(8);
    let ids: Vec<_> = (0..5).map(|_| mixer.add_source().unwrap()).collect();
    let inputs: Vec<Frame48> = (0..5).map(|k| speechish(k, k as f32 * 40.0)).collect();
    let mut outs = vec![SILENT_FRAME_48; 5];
    let mut tick = |mixer: &mut Mixer| {
        for (id, frame) in ids.iter().zip(&inputs) {
            mixer.push(*id, frame).unwrap();
        }
        mixer.mix();
        for (id, out) in ids.iter().zip(outs.iter_mut()) {
            mixer.mix_minus_into(*id, out).unwrap();
        }
        std::hint::black_box(&outs);
    };
    for _ in 0..WARMUP_TICKS {
        tick(&mut mixer);
    }
    // A slot's buffer comes with its first use; reuse must not allocate.
    let spare = mixer.add_source().unwrap();
    mixer.remove_source(spare).unwrap();
    let n = allocations_during(|| {
        for i in 0..MEASURED_TICKS {
            // Control changes happen between ticks in real calls too.
            mixer
                .set_gain(ids[i % 5], 0.5 + (i % 3) as f32 * 0.25)
                .unwrap();
            mixer.set_muted(ids[(i + 1) % 5], i % 7 == 0).unwrap();
            tick(&mut mixer);
        }
        let id = mixer.add_source().unwrap();
        mixer.remove_source(id).unwrap();
    });
    assert_eq!(n, 0, "mixer allocated {n} times in {MEASURED_TICKS} ticks");
}

#[test]
fn a_preallocated_mixer_takes_sources_mid_call_without_allocating() {
    let mut plain = Mixer::with_capacity(4);
    let first_use = allocations_during(|| {
        std::hint::black_box(plain.add_source().unwrap());
    });
    assert!(
        first_use > 0,
        "a slot's first use allocates its input buffer"
    );

    let mut mixer = Mixer::with_capacity(4);
    mixer.preallocate();
    let mut out = SILENT_FRAME_48;
    let n = allocations_during(|| {
        for round in 0..50 {
            let a = mixer.add_source().unwrap();
            let b = mixer.add_source().unwrap();
            mixer.push(a, &speechish(round, 0.0)).unwrap();
            mixer.push(b, &speechish(round, 40.0)).unwrap();
            mixer.mix();
            mixer.mix_minus_into(a, &mut out).unwrap();
            mixer.remove_source(a).unwrap();
            mixer.remove_source(b).unwrap();
        }
    });
    assert_eq!(n, 0, "sources joining and leaving a preallocated mixer");
}

#[test]
fn queue_hand_off_allocates_nothing() {
    // Frames as the worker hands them to the bot: fixed-size, by value.
    let (tx, rx) = queue::bounded::<Box<Frame48>>(4);
    let mut spare: Vec<Box<Frame48>> = (0..16).map(|_| Box::new(SILENT_FRAME_48)).collect();
    let n = allocations_during(|| {
        for i in 0..MEASURED_TICKS {
            // Recycle buffers: a pushed frame comes back when evicted or consumed.
            if let Some(mut frame) = spare.pop() {
                frame[0] = i as f32;
                match tx.push(frame) {
                    Push::Queued => {}
                    Push::QueuedEvicting(old) | Push::Rejected(old) | Push::Disconnected(old) => {
                        spare.push(old)
                    }
                }
            }
            // The consumer falls behind on purpose every third tick.
            if i % 3 != 0
                && let Some(frame) = rx.pop()
            {
                spare.push(frame);
            }
            std::hint::black_box(tx.stats());
        }
    });
    assert_eq!(n, 0, "queue allocated {n} times");
    assert!(rx.stats().evicted > 0, "the test must exercise eviction");
}

#[test]
fn resampling_and_conversion_allocate_nothing() {
    let mut up = Upsampler::new().unwrap();
    let mut down = Downsampler::new().unwrap();
    let mut bytes = [0u8; SAMPLES_PER_FRAME_16K * 2];
    let mut narrow: Frame16 = [0.0; SAMPLES_PER_FRAME_16K];
    let mut wide = SILENT_FRAME_48;
    let mut tick = |i: usize| {
        let frame = speechish(i, 0.0);
        down.process(&frame, &mut narrow).unwrap();
        f32_to_s16le_bytes(&narrow, &mut bytes).unwrap();
        s16le_bytes_to_f32(&bytes, &mut narrow).unwrap();
        up.process(&narrow, &mut wide).unwrap();
        std::hint::black_box(&wide);
    };
    for i in 0..WARMUP_TICKS {
        tick(i);
    }
    let n = allocations_during(|| {
        for i in 0..MEASURED_TICKS {
            tick(i);
        }
    });
    assert_eq!(n, 0, "resampling allocated {n} times");
}

/// A two-party call through two whole pipelines (16 kHz bot side, so both resamplers run),
/// with loss, a DTX pause (A's encoder rests), a player, event polling, receiver reports
/// switching A's FEC on and off, and A's send side held for a while: once warm, `push_rtp` and `tick`
/// allocate nothing. Packet buffers are made outside the measured part, as the transport
/// would make them.
#[test]
fn pipeline_two_party_tick_allocates_nothing() {
    use appmedia_media::pipeline::{CallPipeline, PipelineConfig};
    use std::time::Duration;

    let tick_len = Duration::from_millis(20);
    let mut a = CallPipeline::new(PipelineConfig {
        local_ssrc: 0xA,
        ..PipelineConfig::default()
    })
    .unwrap();
    let mut b = CallPipeline::new(PipelineConfig {
        local_ssrc: 0xB,
        ..PipelineConfig::default()
    })
    .unwrap();
    let (bot_a, bot_b) = (a.bot_sender(), b.bot_sender());
    let player = a.add_player(4).unwrap();
    let keys = a.tone_sender().unwrap();
    // A's packets reach B through the network-side queue, B's through push_rtp.
    let b_inbox = b.rtp_inbox();
    // B's bot hears through the 16 kHz outbox; A's packets also go to a transport outbox.
    let b_bot_audio = b.bot_audio_outbox(4).unwrap();
    let a_packets = a.packet_outbox(4);
    let reports = std::sync::Arc::new(appmedia_media::feedback::LossReports::new());
    a.use_loss_reports(reports.clone()).unwrap();
    let mut pcm16 = [0u8; 640];
    let (mut to_b, mut to_a) = (None, None);
    let mut allocations = 0;
    let mut fec_or_plc_ticks = 0;
    for i in 0..WARMUP_TICKS * 5 + MEASURED_TICKS {
        let now = tick_len * i as u32;
        // Outside the measurement: the bots and the "network" prepare their inputs.
        let tone = speechish(i, 0.0);
        let mut narrow: Frame16 = [0.0; SAMPLES_PER_FRAME_16K];
        for (n, w) in narrow.iter_mut().zip(tone.iter().step_by(3)) {
            *n = *w;
        }
        f32_to_s16le_bytes(&narrow, &mut pcm16).unwrap();
        if !(200..260).contains(&i) {
            bot_a.send_pcm16k(&pcm16).unwrap();
        }
        bot_b.send_pcm16k(&pcm16).unwrap();
        if i % 40 == 7 {
            player.send(&speechish(i, 90.0)).unwrap();
        }
        if i % 50 == 21 {
            // DTMF both ways of the tick: sent by A, detected by B.
            let key = appmedia_media::dtmf::Tone::from_event((i % 16) as u8).unwrap();
            keys.send(appmedia_media::dtmf::ToneRequest::key(key))
                .unwrap();
        }
        match i {
            300 | 320 | 340 => reports.report(26),
            360..=500 if i % 10 == 0 => reports.report(0),
            _ => {}
        }
        a.set_send_active(!(450..470).contains(&i));
        let a_pkt = to_b.take().filter(|_| i % 17 != 0);
        let b_pkt = to_a.take();
        let n = allocations_during(|| {
            if let Some(p) = a_pkt {
                b_inbox.push(p, now).unwrap();
            }
            if let Some(p) = b_pkt {
                a.push_rtp(p, now);
            }
            a.tick(now);
            b.tick(now + Duration::from_millis(5));
            while let Some(e) = a.poll_event() {
                std::hint::black_box(e);
            }
            while let Some(e) = b.poll_event() {
                std::hint::black_box(e);
            }
            for u in b.unmixed() {
                std::hint::black_box(u.pcm16k);
            }
            while let Some(audio) = b_bot_audio.pop() {
                std::hint::black_box(audio.unmixed());
            }
            while let Some(p) = a_packets.pop() {
                std::hint::black_box(p.as_bytes());
            }
            std::hint::black_box((b.bot_frame_16k(), b.active_speakers(), b.stats()));
            // What the bot's media worker publishes once a second for /metrics.
            std::hint::black_box(b.rtp_receive_totals());
        });
        if i >= WARMUP_TICKS * 5 {
            allocations += n;
        }
        if i == 345 {
            assert!(a.stats().expected_loss_pct > 0, "FEC on: {:?}", a.stats());
        }
        to_b = a.outgoing_packet().map(bytes::Bytes::copy_from_slice);
        to_a = b.outgoing_packet().map(bytes::Bytes::copy_from_slice);
        fec_or_plc_ticks = b
            .stream_stats()
            .map(|s| s.jitter.fec_recovered + s.jitter.concealed)
            .sum::<u64>();
    }
    assert_eq!(allocations, 0, "pipelines allocated {allocations} times");
    // The measured ticks did exercise loss recovery and DTX.
    assert!(fec_or_plc_ticks > 10, "{fec_or_plc_ticks}");
    assert!(a.stats().dtx_ticks > 20);
    assert!(a.stats().encoder_rested_ticks > 20, "{:?}", a.stats());
    assert_eq!(a.stats().send_held_ticks, 20);
    assert!(a.stats().loss_reports > 10);
    assert_eq!(
        a.stats().expected_loss_pct,
        0,
        "FEC off again after the clean reports"
    );
    assert!(b.stats().inbound_queue.popped > 400);
    assert!(b.stats().dtmf.tones > 5, "{:?}", b.stats().dtmf);
}

/// A call of Azure Communication Services audio streaming: unmixed PCM in (two 16 kHz keys
/// throughout, a 24 kHz key that leaves and another that takes its slot, bursts and an
/// underrun), the send mix out as 16 kHz PCM with talk spurts and a hold. Once every slot has
/// carried its kind of stream, the inbox, `push_pcm` and `tick` allocate nothing.
#[test]
fn pipeline_pcm_call_tick_allocates_nothing() {
    use appmedia_media::pcm::PcmRate;
    use appmedia_media::pipeline::{CallPipeline, PipelineConfig, SendOutput};
    use std::time::Duration;

    let tick_len = Duration::from_millis(20);
    let mut call = CallPipeline::new(PipelineConfig {
        send_output: SendOutput::Pcm(PcmRate::Hz16000),
        max_remote_streams: 3,
        stream_timeout: Duration::from_millis(200),
        ..PipelineConfig::default()
    })
    .unwrap();
    call.assign_source_id(1, 100);
    let inbox = call.pcm_inbox();
    let bot = call.bot_sender();
    let player = call.add_player(4).unwrap();
    let outbox = call.pcm_outbox(4).unwrap();
    let bot_audio = call.bot_audio_outbox(4).unwrap();
    let mut pcm16 = [0u8; 640];
    let mut allocations = 0;
    for i in 0..WARMUP_TICKS * 5 + MEASURED_TICKS {
        let now = tick_len * i as u32;
        // Outside the measurement: the SDK decodes the WebSocket's frames, the bot its audio.
        let wide = speechish(i, 0.0);
        let narrow16: Vec<i16> = wide
            .iter()
            .step_by(3)
            .map(|&s| (s * 20_000.0) as i16)
            .collect();
        let narrow24: Vec<i16> = wide
            .iter()
            .step_by(2)
            .map(|&s| (s * 9_000.0) as i16)
            .collect();
        let mut narrow: Frame16 = [0.0; SAMPLES_PER_FRAME_16K];
        for (n, &s) in narrow.iter_mut().zip(&narrow16) {
            *n = f32::from(s) / 32768.0;
        }
        f32_to_s16le_bytes(&narrow, &mut pcm16).unwrap();
        // Key 3 (24 kHz) talks during the warm-up, then leaves; key 4 (24 kHz) takes its
        // slot in the measured part. Key 2 comes in bursts of three, pauses (an underrun),
        // then stops long enough to expire and comes back (its old slot, not key 4's, is
        // the one equipped for 16 kHz).
        let key24 = match i {
            0..20 => Some(3),
            100..=300 => Some(4),
            _ => None,
        };
        let burst = i % 3 == 0 && !(400..406).contains(&i) && !(450..480).contains(&i);
        let bot_talks = !(150..200).contains(&i) && !(350..360).contains(&i);
        call.set_send_active(!(250..260).contains(&i));
        let n = allocations_during(|| {
            inbox.push(1, PcmRate::Hz16000, &narrow16, now).unwrap();
            if burst {
                for _ in 0..3 {
                    inbox.push(2, PcmRate::Hz16000, &narrow16, now).unwrap();
                }
            }
            if let Some(key) = key24 {
                call.push_pcm(key, PcmRate::Hz24000, &narrow24, now)
                    .unwrap();
            }
            if bot_talks {
                bot.send_pcm16k(&pcm16).unwrap();
            }
            if i % 40 == 7 {
                player.send(&speechish(i, 90.0)).unwrap();
            }
            call.tick(now);
            while let Some(e) = call.poll_event() {
                std::hint::black_box(e);
            }
            for u in call.unmixed() {
                std::hint::black_box(u.pcm16k);
            }
            while let Some(frame) = outbox.pop() {
                std::hint::black_box(frame.frame.samples());
            }
            while let Some(audio) = bot_audio.pop() {
                std::hint::black_box(audio.unmixed());
            }
            std::hint::black_box((call.bot_frame_16k(), call.active_speakers(), call.stats()));
            std::hint::black_box(call.stream_stats().count());
        });
        if i >= WARMUP_TICKS * 5 {
            allocations += n;
        }
        if i == 440 {
            let s = call.stream_stats().find(|s| s.ssrc == 2).unwrap();
            assert_eq!(s.jitter.underruns, 1, "key 2's pause: {:?}", s.jitter);
        }
    }
    assert_eq!(allocations, 0, "the PCM call allocated {allocations} times");
    // The measured ticks did exercise what they claim.
    let stats = call.stats();
    assert!(stats.pcm_frames_sent > 300, "{stats:?}");
    assert_eq!(stats.send_held_ticks, 10);
    assert_eq!(stats.streams_full, 0);
    assert_eq!(stats.resample_errors, 0);
    let codecs: Vec<_> = call.stream_stats().map(|s| (s.ssrc, s.codec)).collect();
    assert_eq!(
        codecs,
        [(1, "L16/16000"), (2, "L16/16000")],
        "keys 3 and 4 left"
    );
    assert_eq!(call.active_speakers().first(), Some(&100));
}

/// The scheduler's workers, between and around the ticks: sleeping, claiming slots, stealing,
/// timing and counting allocate nothing once running. Each call notes the allocations its
/// worker thread had made so far at each tick; in steady state the count stays put.
#[test]
fn scheduler_workers_allocate_nothing_in_steady_state() {
    use appmedia_media::alloc_count::allocations;
    use appmedia_media::scheduler::{Scheduler, SchedulerConfig, Tickable};
    use std::sync::{Arc, Mutex};
    use std::thread::ThreadId;
    use std::time::{Duration, Instant};

    type Notes = Vec<(ThreadId, u64, Duration)>;
    struct Probe {
        notes: Notes,
        done: Arc<Mutex<Vec<Notes>>>,
    }
    impl Tickable for Probe {
        fn tick(&mut self, now: Duration) {
            if self.notes.len() < self.notes.capacity() {
                self.notes
                    .push((std::thread::current().id(), allocations(), now));
            }
        }
    }
    impl Drop for Probe {
        fn drop(&mut self) {
            let notes = std::mem::take(&mut self.notes);
            self.done.lock().unwrap().push(notes);
        }
    }

    const CALLS: usize = 24;
    const NOTES: usize = 80;
    let period = Duration::from_millis(5);
    let scheduler = Scheduler::start(SchedulerConfig {
        workers: 2,
        period,
        ..SchedulerConfig::default()
    })
    .unwrap();
    let done = Arc::new(Mutex::new(Vec::new()));
    for i in 0..CALLS {
        let probe = Probe {
            notes: Vec::with_capacity(NOTES),
            done: done.clone(),
        };
        // Uneven homes, so that worker 1 steals from worker 0.
        scheduler.add_to(usize::from(i % 3 == 0), probe).unwrap();
    }
    let started = Instant::now();
    // Long enough for every call's notes (each call ticks once per 5 ms period).
    while started.elapsed() < period * (NOTES as u32 + 40) {
        std::thread::sleep(period);
    }
    let stats = scheduler.shutdown();
    let done = done.lock().unwrap();
    assert_eq!(done.len(), CALLS, "every call dropped at shutdown");
    let mut by_thread: std::collections::HashMap<ThreadId, (u64, u64, usize)> =
        std::collections::HashMap::new();
    for notes in done.iter() {
        assert_eq!(notes.len(), NOTES);
        // The first ticks may come while calls are still being added and workers start.
        for &(thread, count, _) in &notes[NOTES / 4..] {
            let e = by_thread.entry(thread).or_insert((count, count, 0));
            e.0 = e.0.min(count);
            e.1 = e.1.max(count);
            e.2 += 1;
        }
    }
    assert!(!by_thread.is_empty());
    for (thread, (min, max, n)) in &by_thread {
        assert_eq!(
            min,
            max,
            "worker {thread:?} allocated {} times over {n} ticks",
            max - min
        );
    }
    assert!(stats.ticks() >= (CALLS * NOTES) as u64);
}

/// Opus passthrough: a prompt's frames with their packets, passed through alone, mixed and
/// encoded while the bot talks over them (the switch resets the encoder), passed through
/// again. Queuing the frames, the ticks and reading the packets allocate nothing.
#[test]
fn passthrough_and_its_switches_allocate_nothing() {
    use appmedia_media::codec::{
        EncodedFrame, EncoderConfig, OpusDecoder, OpusEncoder, OpusPacket,
    };
    use appmedia_media::pipeline::{CallPipeline, PipelineConfig, PlayerFrame};
    use std::time::Duration;

    // The prompt, made outside the measurement: real libopus packets and their decodings.
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).unwrap();
    let mut decoder = OpusDecoder::new().unwrap();
    let prompt: Vec<PlayerFrame> = (0..100)
        .map(|k| {
            let EncodedFrame::Voice(bytes) = encoder.encode(&speechish(k, 0.0)).unwrap() else {
                panic!("a tone is not DTX");
            };
            let packet = OpusPacket::new(bytes).unwrap();
            let mut pcm = SILENT_FRAME_48;
            decoder.decode(bytes, &mut pcm).unwrap();
            PlayerFrame {
                pcm,
                packet: Some(packet),
            }
        })
        .collect();
    let mut call = CallPipeline::new(PipelineConfig {
        send_prebuffer_frames: 0,
        ..PipelineConfig::default()
    })
    .unwrap();
    let player = call.add_player(4).unwrap();
    let bot = call.bot_sender();
    let outbox = call.packet_outbox(4);
    let voice = speechish(3, 60.0);
    let mut allocations = 0;
    for i in 0..WARMUP_TICKS + MEASURED_TICKS {
        let now = Duration::from_millis(20) * i as u32;
        let frame = &prompt[i % prompt.len()];
        // The bot talks over the prompt for 10 ticks in every 50.
        let talks = i % 50 >= 40;
        let n = allocations_during(|| {
            player.send_frame(frame).unwrap();
            if talks {
                bot.send_48k(&voice).unwrap();
            }
            call.tick(now);
            while let Some(p) = outbox.pop() {
                std::hint::black_box(p.as_bytes());
            }
            std::hint::black_box(call.stats());
        });
        if i >= WARMUP_TICKS {
            allocations += n;
        }
    }
    assert_eq!(allocations, 0, "passthrough allocated {allocations} times");
    let stats = call.stats();
    assert!(stats.passthrough_frames > 300, "{stats:?}");
    assert!(stats.encoder_resets >= 9, "{stats:?}");
    assert!(stats.frames_encoded >= 90, "{stats:?}");
}
