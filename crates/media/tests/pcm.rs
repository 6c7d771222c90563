//! Raw PCM through the call pipeline (Azure Communication Services audio streaming): PCM
//! remote streams reach the bot through the same mixer, levels and speaker tracking as RTP,
//! and the bot's send mix leaves as PCM. A fake clock drives every test.

use std::f64::consts::PI;
use std::time::Duration;

use appmedia_media::frame::{SAMPLES_PER_FRAME_16K, SAMPLES_PER_FRAME_48K};
use appmedia_media::pcm::{PCM_PLAYOUT_FRAMES, PcmFrameOut, PcmLengthError, PcmRate};
use appmedia_media::pipeline::{
    CallPipeline, HandOffError, PipelineConfig, PipelineError, PipelineEvent, SendOutput,
    StreamStats,
};
use appmedia_testkit::audio::best_match;

const TICK: Duration = Duration::from_millis(20);

/// Where a frame pushed before tick `k` comes out: after the 40 ms cushion and 5 ms in each
/// resampler (into 48 kHz, back to the bot's 16 kHz), in 16 kHz samples.
const EXPECTED_DELAY_16K: usize = 2 * SAMPLES_PER_FRAME_16K + 80 + 80;

fn pcm_config() -> PipelineConfig {
    PipelineConfig {
        local_ssrc: 0xB0,
        ..PipelineConfig::default()
    }
}

/// A voiced, gliding, swelling signal (no period within the test's length, so a correlation
/// search finds one lag): harmonics of 140 ± 30 Hz plus a 2.3 kHz component.
fn voice(t: f64) -> f64 {
    let glide = 2.0 * PI * (140.0 * t - 30.0 / (2.0 * PI * 0.7) * (2.0 * PI * 0.7 * t).cos());
    let env = 0.55 + 0.45 * (2.0 * PI * 3.0 * t).sin();
    let harmonics: f64 = (1..=6)
        .map(|h| (glide * f64::from(h)).sin() / f64::from(h))
        .sum();
    let high = 0.3 * (2.0 * PI * 2300.0 * t).sin() * (2.0 * PI * 1.3 * t).cos();
    0.12 * env * (harmonics + high)
}

/// Frame `k` of `signal` sampled at `rate`, as s16.
fn pcm_frame(rate: PcmRate, k: usize, signal: impl Fn(f64) -> f64) -> Vec<i16> {
    let n = rate.samples_per_frame();
    (0..n)
        .map(|i| {
            let t = (k * n + i) as f64 / f64::from(rate.hz());
            (signal(t) * 32767.0).round() as i16
        })
        .collect()
}

fn tone(freq: f64, amp: f64) -> impl Fn(f64) -> f64 {
    move |t| amp * (2.0 * PI * freq * t).sin()
}

fn s16le_to_f32(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
}

fn zero_crossings(samples: &[f32]) -> usize {
    samples
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count()
}

fn rms(samples: &[f32]) -> f64 {
    let e: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (e / samples.len().max(1) as f64).sqrt()
}

fn events(p: &mut CallPipeline) -> Vec<PipelineEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn stream(p: &CallPipeline, key: u32) -> StreamStats {
    p.stream_stats()
        .find(|s| s.ssrc == key)
        .unwrap_or_else(|| panic!("no stream {key}"))
}

/// One mixed stream at `rate`, one frame per tick arriving 3 ms before the tick: what the bot
/// hears at 16 kHz must be the input, delayed by the cushion and the resamplers.
fn mixed_stream_reaches_the_bot(rate: PcmRate) {
    let mut call = CallPipeline::new(pcm_config()).unwrap();
    let inbox = call.pcm_inbox();
    let ticks = 150;
    let mut heard = Vec::new();
    for k in 0..ticks {
        let now = TICK * k as u32;
        let frame = pcm_frame(rate, k, voice);
        inbox
            .push(
                0,
                rate,
                &frame,
                now.saturating_sub(Duration::from_millis(3)),
            )
            .unwrap();
        let report = call.tick(now);
        assert_eq!(report.streams_playing, usize::from(k >= 2), "tick {k}");
        heard.extend(s16le_to_f32(call.bot_frame_16k().unwrap()));
    }
    // The input as the bot's 16 kHz would sample it (for 24 kHz, the same signal).
    let sent: Vec<f32> = (0..ticks * SAMPLES_PER_FRAME_16K)
        .map(|n| voice(n as f64 / 16_000.0) as f32)
        .collect();
    let start = 20 * SAMPLES_PER_FRAME_16K;
    let excerpt = &sent[start..start + 80 * SAMPLES_PER_FRAME_16K];
    let (lag, r) = best_match(excerpt, &heard);
    assert!(r >= 0.99, "{rate:?}: correlation {r:.4} at lag {lag}");
    assert_eq!(lag - start, EXPECTED_DELAY_16K, "{rate:?}: delay");
    let s = stream(&call, 0);
    assert_eq!(s.codec, rate.codec_name());
    assert_eq!(s.jitter.received, ticks as u64);
    assert_eq!(s.jitter.played, ticks as u64 - 2);
    assert_eq!((s.jitter.underruns, s.jitter.overflow), (0, 0));
    assert_eq!(s.decode_errors, 0);
    assert!(!call.is_silence());
    assert_eq!(call.stats().resample_errors, 0);
    assert_eq!(call.stats().pcm_inbound_queue.popped, ticks as u64);
}

#[test]
fn mixed_pcm_16k_reaches_the_bot_as_the_same_audio() {
    mixed_stream_reaches_the_bot(PcmRate::Hz16000);
}

#[test]
fn mixed_pcm_24k_reaches_the_bot_as_the_same_audio() {
    mixed_stream_reaches_the_bot(PcmRate::Hz24000);
}

#[test]
fn two_keys_give_two_unmixed_frames_and_the_louder_is_the_speaker() {
    let mut call = CallPipeline::new(pcm_config()).unwrap();
    call.assign_source_id(1, 101);
    let inbox = call.pcm_inbox();
    let mut added = Vec::new();
    for k in 0..60usize {
        let now = TICK * k as u32;
        // Key 1 murmurs at 300 Hz (16 kHz), key 2 speaks up at 700 Hz (24 kHz).
        let quiet = pcm_frame(PcmRate::Hz16000, k, tone(300.0, 0.05));
        let loud = pcm_frame(PcmRate::Hz24000, k, tone(700.0, 0.4));
        inbox.push(1, PcmRate::Hz16000, &quiet, now).unwrap();
        inbox.push(2, PcmRate::Hz24000, &loud, now).unwrap();
        if k == 10 {
            // The roster names key 2 mid-call.
            call.assign_source_id(2, 202);
        }
        call.tick(now);
        for e in events(&mut call) {
            if let PipelineEvent::StreamAdded { ssrc, source_id } = e {
                added.push((ssrc, source_id));
            }
        }
    }
    assert_eq!(added, [(1, 101), (2, 2)]);
    assert_eq!(call.active_speakers(), &[202, 101]);
    assert_eq!(call.dominant_speaker(), Some(202));
    let unmixed: Vec<_> = call.unmixed().map(|u| (u.source_id, u.ssrc)).collect();
    assert_eq!(unmixed, [(202, 2), (101, 1)]);
    // Each unmixed frame carries only its own talker: 700 Hz is 28 zero crossings in 20 ms,
    // 300 Hz is 12.
    let crossings: Vec<usize> = call
        .unmixed()
        .map(|u| zero_crossings(&s16le_to_f32(u.pcm16k.unwrap()).collect::<Vec<_>>()))
        .collect();
    assert!((27..=29).contains(&crossings[0]), "{crossings:?}");
    assert!((11..=13).contains(&crossings[1]), "{crossings:?}");
    let levels: Vec<f32> = call.unmixed().map(|u| u.level_dbov).collect();
    assert!(levels[0] > levels[1] + 15.0, "{levels:?}");
}

#[test]
fn bursts_that_come_late_play_without_a_gap_and_a_longer_pause_underruns() {
    let mut call = CallPipeline::new(pcm_config()).unwrap();
    let inbox = call.pcm_inbox();
    // TCP bunching: five frames at once every 100 ms, then 80 ms of nothing, each burst up
    // to 30 ms late; after the 14th burst 300 ms of nothing; then bursts on time again.
    let late_ms = [0, 30, 10, 25, 0, 30, 5, 20, 30, 0, 15, 30, 10, 0];
    let mut schedule: Vec<(Duration, usize)> = Vec::new();
    let bursts = late_ms
        .iter()
        .enumerate()
        .chain([(16, &0), (17, &0), (18, &0), (19, &0)]);
    for (n, &late) in bursts {
        let arrival = Duration::from_millis(100 * n as u64 + late);
        schedule.extend((0..5).map(|j| (arrival, 5 * n + j)));
    }
    let mut next = schedule.iter().peekable();
    let mut gaps = Vec::new();
    for k in 0..100usize {
        let now = TICK * k as u32;
        while let Some(&&(arrival, frame)) = next.peek().filter(|(a, _)| *a <= now) {
            let f = pcm_frame(PcmRate::Hz16000, frame, tone(440.0, 0.3));
            inbox.push(7, PcmRate::Hz16000, &f, arrival).unwrap();
            next.next();
        }
        let report = call.tick(now);
        if (2..72).contains(&k) && (report.streams_playing != 1 || call.is_silence()) {
            gaps.push(k);
        }
        if k == 69 {
            let s = stream(&call, 7);
            assert_eq!(
                s.jitter.underruns, 0,
                "the 40 ms cushion absorbs 30 ms of lateness"
            );
            assert_eq!(s.jitter.played, 68);
            assert_eq!(s.jitter.current_delay, TICK * 2, "{:?}", s.jitter);
        }
    }
    assert!(
        gaps.is_empty(),
        "silent ticks while the bursts kept up: {gaps:?}"
    );
    let s = stream(&call, 7);
    assert_eq!(s.jitter.underruns, 1, "{:?}", s.jitter);
    assert_eq!(s.jitter.concealed, 1);
    assert_eq!(s.jitter.overflow, 0);
    assert_eq!(s.jitter.received, schedule.len() as u64);
    assert!(!call.is_silence(), "playing again after a new cushion");
}

#[test]
fn frames_faster_than_real_time_stay_bounded_with_drops_counted() {
    let mut call = CallPipeline::new(PipelineConfig {
        pcm_inbound_queue_frames: 8,
        ..pcm_config()
    })
    .unwrap();
    let inbox = call.pcm_inbox();
    // Three frames per tick: the ring fills to its size, then drops its oldest.
    for k in 0..50usize {
        for j in 0..3 {
            let f = pcm_frame(PcmRate::Hz24000, 3 * k + j, tone(440.0, 0.3));
            inbox
                .push(5, PcmRate::Hz24000, &f, TICK * k as u32)
                .unwrap();
        }
        call.tick(TICK * k as u32);
        let s = stream(&call, 5);
        assert!(
            s.jitter.current_delay <= TICK * PCM_PLAYOUT_FRAMES as u32,
            "tick {k}: {:?}",
            s.jitter.current_delay
        );
    }
    let s = stream(&call, 5);
    assert_eq!(s.jitter.received, 150);
    assert_eq!(s.jitter.played, 48);
    // Every frame was played, dropped, or is still in the (full, less this tick's) ring.
    assert_eq!(
        s.jitter.current_delay,
        TICK * (PCM_PLAYOUT_FRAMES as u32 - 1)
    );
    assert_eq!(
        s.jitter.overflow,
        150 - 48 - (PCM_PLAYOUT_FRAMES as u64 - 1),
        "{:?}",
        s.jitter
    );
    // A stalled worker: 20 frames before one tick, the queue keeps the newest 8.
    for j in 0..20 {
        let f = pcm_frame(PcmRate::Hz24000, j, tone(440.0, 0.3));
        inbox.push(5, PcmRate::Hz24000, &f, TICK * 50).unwrap();
    }
    assert_eq!(inbox.queued(), 8);
    call.tick(TICK * 50);
    let q = call.stats().pcm_inbound_queue;
    assert_eq!((q.pushed, q.evicted, q.popped), (170, 12, 158));
}

#[test]
fn a_frame_of_the_wrong_length_is_refused() {
    let mut call = CallPipeline::new(pcm_config()).unwrap();
    let inbox = call.pcm_inbox();
    assert_eq!(
        inbox.push(1, PcmRate::Hz16000, &[0; 480], Duration::ZERO),
        Err(HandOffError::BadPcmLength(PcmLengthError {
            len: 480,
            expected: 320,
            hz: 16_000
        }))
    );
    let err = inbox
        .push(1, PcmRate::Hz24000, &[0; 320], Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PCM frame of 320 samples; 20 ms at 24000 Hz has 480"
    );
    assert!(
        inbox
            .push(1, PcmRate::Hz24000, &[], Duration::ZERO)
            .is_err()
    );
    assert!(
        call.push_pcm(1, PcmRate::Hz16000, &[0; 321], Duration::ZERO)
            .is_err()
    );
    assert_eq!(inbox.queued(), 0);
    call.tick(Duration::ZERO);
    assert_eq!(
        call.stream_stats().count(),
        0,
        "no stream from refused frames"
    );
    assert!(events(&mut call).is_empty());
}

#[test]
fn a_pcm_stream_that_stops_expires_and_its_slot_is_reused() {
    let mut call = CallPipeline::new(PipelineConfig {
        stream_timeout: Duration::from_secs(1),
        max_remote_streams: 1,
        ..pcm_config()
    })
    .unwrap();
    call.assign_source_id(9, 900);
    let mut removed_at = None;
    for k in 0..120usize {
        let now = TICK * k as u32;
        if k < 10 {
            let f = pcm_frame(PcmRate::Hz16000, k, tone(440.0, 0.3));
            call.push_pcm(9, PcmRate::Hz16000, &f, now).unwrap();
        }
        call.tick(now);
        for e in events(&mut call) {
            if e == (PipelineEvent::StreamRemoved {
                ssrc: 9,
                source_id: 900,
            }) {
                removed_at = Some(k);
            }
        }
    }
    // The last frame came at tick 9: a second later the stream is gone.
    assert_eq!(removed_at, Some(59));
    assert_eq!(call.stream_stats().count(), 0);
    assert!(call.is_silence());
    // A new key takes the freed slot.
    let f = pcm_frame(PcmRate::Hz16000, 0, tone(440.0, 0.3));
    call.push_pcm(10, PcmRate::Hz16000, &f, TICK * 120).unwrap();
    assert_eq!(
        events(&mut call),
        [PipelineEvent::StreamAdded {
            ssrc: 10,
            source_id: 10
        }]
    );
    assert_eq!(call.stats().streams_full, 0);
}

fn pcm_out_config(rate: PcmRate) -> PipelineConfig {
    PipelineConfig {
        send_output: SendOutput::Pcm(rate),
        ..pcm_config()
    }
}

/// Ticks `ticks` times with the bot sending a 1 kHz tone on the ticks `talk` selects; returns
/// what came out of the PCM outbox.
fn bot_talks(
    call: &mut CallPipeline,
    ticks: usize,
    talk: impl Fn(usize) -> bool,
) -> Vec<PcmFrameOut> {
    let bot = call.bot_sender();
    let outbox = call.pcm_outbox(64).unwrap();
    let mut out = Vec::new();
    for k in 0..ticks {
        if talk(k) {
            let f = pcm_frame(PcmRate::Hz16000, k, tone(1000.0, 0.3));
            let bytes: Vec<u8> = f.iter().flat_map(|s| s.to_le_bytes()).collect();
            bot.send_pcm16k(&bytes).unwrap();
        }
        let report = call.tick(TICK * k as u32);
        assert!(!report.packet_ready && call.outgoing_packet().is_none());
        assert_eq!(report.pcm_ready, call.outgoing_pcm().is_some());
        out.extend(std::iter::from_fn(|| outbox.pop()));
    }
    out
}

fn pcm_tone_comes_out(rate: PcmRate) {
    let mut call = CallPipeline::new(pcm_out_config(rate)).unwrap();
    // Talk for 30 ticks, pause for 20, talk again for 10.
    let out = bot_talks(&mut call, 80, |k| k < 30 || (50..60).contains(&k));
    // Each spurt: the bot's frames (after the send queue's 40 ms cushion), plus one that
    // carries the resampler's tail.
    assert_eq!(out.len(), 30 + 1 + 10 + 1, "frames out");
    let starts: Vec<usize> = (0..out.len()).filter(|&i| out[i].first_of_spurt).collect();
    assert_eq!(starts, [0, 31]);
    assert_eq!(out[0].timestamp, TICK * 2, "the send queue's cushion");
    assert_eq!(out[31].timestamp, TICK * 52);
    for f in &out {
        assert_eq!(f.frame.rate(), rate);
        assert_eq!(f.frame.samples().len(), rate.samples_per_frame());
    }
    // Steady frames: 1 kHz is 40 zero crossings per 20 ms, at the bot's level.
    for f in &out[3..29] {
        let x: Vec<f32> = f
            .frame
            .samples()
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        let zc = zero_crossings(&x);
        assert!((39..=41).contains(&zc), "{rate:?}: {zc} zero crossings");
        let db = 20.0 * (rms(&x) / (0.3 / 2f64.sqrt())).log10();
        assert!(db.abs() < 0.3, "{rate:?}: level off by {db:.2} dB");
    }
    let tail: Vec<f32> = out[30]
        .frame
        .samples()
        .iter()
        .map(|&s| f32::from(s))
        .collect();
    let n = rate.samples_per_frame();
    assert!(
        rms(&tail[..n / 8]) > 1000.0,
        "the tail frame starts with audio"
    );
    assert!(rms(&tail[n / 2..]) < 10.0, "and ends in silence");
    let stats = call.stats();
    assert_eq!(stats.pcm_frames_sent, out.len() as u64);
    assert_eq!(stats.pcm_outbox.pushed, out.len() as u64);
    assert_eq!((stats.packets_sent, stats.pcm_outbox.evicted), (0, 0));
}

#[test]
fn a_tone_the_bot_sends_comes_out_as_16k_pcm() {
    pcm_tone_comes_out(PcmRate::Hz16000);
}

#[test]
fn a_tone_the_bot_sends_comes_out_as_24k_pcm() {
    pcm_tone_comes_out(PcmRate::Hz24000);
}

#[test]
fn silence_and_a_held_send_side_give_no_pcm() {
    let mut call = CallPipeline::new(pcm_out_config(PcmRate::Hz16000)).unwrap();
    // A bot that sends zeros is as silent as one that sends nothing.
    let bot = call.bot_sender();
    let outbox = call.pcm_outbox(4).unwrap();
    for k in 0..20u32 {
        if k >= 10 {
            bot.send_pcm16k(&[0; 640]).unwrap();
        }
        call.tick(TICK * k);
        assert!(call.outgoing_pcm().is_none(), "tick {k}");
    }
    // Held: the bot's tone is discarded, nothing goes out.
    call.set_send_active(false);
    let out = bot_talks(&mut call, 10, |_| true);
    assert!(out.is_empty());
    assert_eq!(call.stats().send_held_ticks, 10);
    assert_eq!(call.stats().pcm_frames_sent, 0);
    drop(outbox);
    // Active again: a spurt starts, and an outbox nobody reads drops its oldest frames.
    call.set_send_active(true);
    let outbox = call.pcm_outbox(2).unwrap();
    let bot = call.bot_sender();
    for k in 0..12u32 {
        let f = pcm_frame(PcmRate::Hz16000, k as usize, tone(1000.0, 0.3));
        let bytes: Vec<u8> = f.iter().flat_map(|s| s.to_le_bytes()).collect();
        bot.send_pcm16k(&bytes).unwrap();
        call.tick(TICK * (40 + k));
    }
    assert_eq!(call.stats().pcm_frames_sent, 10);
    assert_eq!(call.stats().pcm_outbox.evicted, 8);
    assert!(outbox.pop().is_some_and(|f| !f.first_of_spurt));
}

#[test]
fn rtp_and_pcm_outputs_refuse_each_others_handles() {
    let mut rtp = CallPipeline::new(pcm_config()).unwrap();
    assert!(matches!(
        rtp.pcm_outbox(4),
        Err(PipelineError::WrongSendOutput {
            output: SendOutput::Rtp
        })
    ));
    let mut pcm = CallPipeline::new(pcm_out_config(PcmRate::Hz24000)).unwrap();
    assert!(matches!(
        pcm.tone_sender(),
        Err(PipelineError::WrongSendOutput { .. })
    ));
    // No encoder: the loss setting is only recorded.
    pcm.set_expected_loss_pct(20).unwrap();
    assert_eq!(pcm.stats().expected_loss_pct, 20);
    assert!(matches!(
        CallPipeline::new(PipelineConfig {
            pcm_prebuffer_frames: PCM_PLAYOUT_FRAMES,
            ..pcm_config()
        }),
        Err(PipelineError::BadConfig {
            name: "pcm_prebuffer_frames",
            ..
        })
    ));
}

#[test]
fn a_pcm_call_still_takes_rtp() {
    // PCM in, RTP out (and an RTP stream beside the PCM one): both reach the mix.
    let mut far = CallPipeline::new(PipelineConfig {
        local_ssrc: 0xF0,
        ..PipelineConfig::default()
    })
    .unwrap();
    let far_bot = far.bot_sender();
    let mut call = CallPipeline::new(pcm_config()).unwrap();
    let inbox = call.pcm_inbox();
    let mut heard = Vec::new();
    for k in 0..60usize {
        let now = TICK * k as u32;
        let f = pcm_frame(PcmRate::Hz16000, k, tone(300.0, 0.2));
        let bytes: Vec<u8> = pcm_frame(PcmRate::Hz16000, k, tone(1200.0, 0.2))
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        far_bot.send_pcm16k(&bytes).unwrap();
        far.tick(now);
        if let Some(p) = far.outgoing_packet() {
            call.push_rtp(bytes::Bytes::copy_from_slice(p), now);
        }
        inbox.push(0xF0, PcmRate::Hz16000, &f, now).unwrap();
        call.tick(now);
        if k >= 40 {
            heard.extend(call.bot_frame_48k().iter().copied());
        }
    }
    let codecs: Vec<&str> = call.stream_stats().map(|s| s.codec).collect();
    assert_eq!(codecs.len(), 2, "same number, two streams: {codecs:?}");
    assert!(codecs.contains(&"opus/48000/2") && codecs.contains(&"L16/16000"));
    let power = |f: f32| appmedia_testkit::audio::tone_power(&heard, 48_000.0, f);
    assert!(
        power(300.0) > 1e-3 && power(1200.0) > 1e-3,
        "{} {}",
        power(300.0),
        power(1200.0)
    );
    assert_eq!(heard.len(), 20 * SAMPLES_PER_FRAME_48K);
}
