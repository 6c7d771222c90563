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
