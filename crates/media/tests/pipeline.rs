//! The per-call pipeline end to end: two pipelines wired back to back with a fake clock,
//! the network in between played by the test (loss, DTX, garbage, SSRC changes).

use std::time::Duration;

use appmedia_media::codec::{
    EncodedFrame, EncoderConfig, OpusDecoder, OpusEncoder, OpusPacket, packet_has_fec,
};
use appmedia_media::feedback::LossReports;
use appmedia_media::frame::{Frame48, SAMPLES_PER_FRAME_16K, SAMPLES_PER_FRAME_48K};
use appmedia_media::jitter::JitterConfig;
use appmedia_media::pipeline::{
    BotAudioFormat, CallPipeline, PipelineConfig, PipelineEvent, PlayerFrame, RtpReceiveTotals,
    SendOutcome,
};
use appmedia_media::rtp::{RtpHeader, RtpPacket, RtpPacketSpec};
use bytes::Bytes;

const TICK: Duration = Duration::from_millis(20);

fn config(ssrc: u32) -> PipelineConfig {
    PipelineConfig {
        local_ssrc: ssrc,
        initial_sequence_number: 65_500, // wraps within the tests
        initial_timestamp: u32::MAX - 960 * 30,
        ..PipelineConfig::default()
    }
}

fn tone_16k(freq: f32, amp: f32, frame: usize) -> [u8; 640] {
    let mut out = [0u8; 640];
    for i in 0..SAMPLES_PER_FRAME_16K {
        let t = (frame * SAMPLES_PER_FRAME_16K + i) as f32 / 16_000.0;
        let s = (amp * (2.0 * std::f32::consts::PI * freq * t).sin() * 32767.0) as i16;
        out[2 * i..2 * i + 2].copy_from_slice(&s.to_le_bytes());
    }
    out
}

fn tone_48k(freq: f32, amp: f32, frame: usize) -> Frame48 {
    let mut out = [0.0f32; SAMPLES_PER_FRAME_48K];
    for (i, s) in out.iter_mut().enumerate() {
        let t = (frame * SAMPLES_PER_FRAME_48K + i) as f32 / 48_000.0;
        *s = amp * (2.0 * std::f32::consts::PI * freq * t).sin();
    }
    out
}

/// Voiced-speech-like signal (harmonics of 140 Hz, swelling at 3 Hz): Opus codes it in SILK
/// or hybrid mode, where in-band FEC lives.
fn speechlike(frame: usize) -> Frame48 {
    let mut out = [0.0f32; SAMPLES_PER_FRAME_48K];
    for (i, s) in out.iter_mut().enumerate() {
        let t = (frame * SAMPLES_PER_FRAME_48K + i) as f32 / 48_000.0;
        let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
        let v: f32 = (1..=8)
            .map(|h| (2.0 * std::f32::consts::PI * 140.0 * h as f32 * t).sin() / h as f32)
            .sum();
        *s = 0.15 * env * v;
    }
    out
}

fn zero_crossings(samples: &[f32]) -> usize {
    samples
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count()
}

fn events(p: &mut CallPipeline) -> Vec<PipelineEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn packet_of(p: &CallPipeline) -> Option<Bytes> {
    p.outgoing_packet().map(Bytes::copy_from_slice)
}

#[test]
fn two_party_loopback_carries_a_tone_both_ways_of_the_api() {
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    let bot_a = a.bot_sender();
    let mut heard = Vec::new();
    let mut heard_16k = Vec::new();
    let mut sent = Vec::new();
    for tick in 0..100usize {
        let now = TICK * tick as u32;
        assert_eq!(
            bot_a.send_pcm16k(&tone_16k(440.0, 0.3, tick)).unwrap(),
            SendOutcome::Queued
        );
        a.tick(now);
        if let Some(pkt) = packet_of(&a) {
            sent.push(RtpPacket::parse(pkt.clone()).unwrap());
            b.push_rtp(pkt, now + Duration::from_millis(3));
        }
        b.tick(now + Duration::from_millis(10));
        if tick >= 50 {
            heard.extend_from_slice(b.bot_frame_48k());
            let pcm = b.bot_frame_16k().unwrap();
            heard_16k.extend(
                pcm.chunks_exact(2)
                    .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]]))),
            );
        }
    }
    // 50 frames = 1 s of a 440 Hz tone: 880 zero crossings, at both rates.
    let zc = zero_crossings(&heard);
    assert!((870..=890).contains(&zc), "48 kHz zero crossings {zc}");
    let zc16 = zero_crossings(&heard_16k);
    assert!((870..=890).contains(&zc16), "16 kHz zero crossings {zc16}");
    assert!(!b.is_silence());

    // The remote party is the active and dominant speaker and has an unmixed frame.
    assert_eq!(b.active_speakers(), &[0xA]);
    assert_eq!(b.dominant_speaker(), Some(0xA));
    let unmixed: Vec<_> = b.unmixed().collect();
    assert_eq!(unmixed.len(), 1);
    assert_eq!((unmixed[0].ssrc, unmixed[0].source_id), (0xA, 0xA));
    assert!(!unmixed[0].is_silence && unmixed[0].pcm16k.is_some());
    let ev = events(&mut b);
    assert_eq!(
        ev,
        vec![
            PipelineEvent::StreamAdded {
                ssrc: 0xA,
                source_id: 0xA
            },
            PipelineEvent::DominantSpeakerChanged {
                source_id: Some(0xA)
            },
        ]
    );

    // Outgoing RTP: continuous sequence numbers and timestamps across both wraps, one
    // marker at the start, audio level extension present.
    assert!(sent.len() >= 95);
    assert!(sent[0].marker());
    for w in sent.windows(2) {
        assert_eq!(
            w[1].sequence_number(),
            w[0].sequence_number().wrapping_add(1)
        );
        assert_eq!(w[1].timestamp(), w[0].timestamp().wrapping_add(960));
        assert!(!w[1].marker());
        assert_eq!(w[1].ssrc(), 0xA);
    }
    assert!(
        sent.last().unwrap().sequence_number() < 100,
        "sequence wrapped"
    );
    assert!(sent[60].audio_level(1).unwrap().voice);

    let s: Vec<_> = b.stream_stats().collect();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].codec, "opus/48000/2");
    assert_eq!(s[0].jitter.lost, 0);
    assert_eq!(s[0].decode_errors, 0);
    assert!(s[0].jitter.played >= 95);
}

#[test]
fn fec_recovers_a_dropped_packet_and_sounds_different_from_plc() {
    let sender_cfg = PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        encoder: EncoderConfig {
            expected_loss_pct: 20,
            ..EncoderConfig::default()
        },
        ..config(0xA)
    };
    let receiver_cfg = PipelineConfig {
        jitter: JitterConfig {
            min_delay: Duration::from_millis(40),
            ..JitterConfig::default()
        },
        bot_format: BotAudioFormat::Pcm48k,
        ..config(0xB)
    };
    let mut a = CallPipeline::new(sender_cfg).unwrap();
    let mut fec = CallPipeline::new(receiver_cfg).unwrap();
    let mut plc = CallPipeline::new(PipelineConfig {
        use_inband_fec: false,
        ..receiver_cfg
    })
    .unwrap();
    let bot = a.bot_sender();
    let mut differs = false;
    for tick in 0..60usize {
        let now = TICK * tick as u32;
        bot.send_48k(&speechlike(tick)).unwrap();
        a.tick(now);
        if let Some(pkt) = packet_of(&a) {
            // Frame 25 is mid-syllable, so packet 26 carries its FEC copy.
            if tick != 25 {
                fec.push_rtp(pkt.clone(), now + Duration::from_millis(1));
                plc.push_rtp(pkt, now + Duration::from_millis(1));
            }
        }
        fec.tick(now + Duration::from_millis(10));
        plc.tick(now + Duration::from_millis(10));
        if fec.bot_frame_48k() != plc.bot_frame_48k() {
            differs = true;
        }
    }
    let f = fec.stream_stats().next().unwrap().jitter;
    let p = plc.stream_stats().next().unwrap().jitter;
    assert_eq!((f.lost, f.fec_recovered, f.concealed), (1, 1, 0));
    assert_eq!((p.lost, p.fec_recovered, p.concealed), (1, 0, 1));
    // The call-wide totals (what the bot's /metrics sums) say the same.
    let totals = |received, fec_recovered, concealed| RtpReceiveTotals {
        packets: received,
        lost: 1,
        concealed,
        fec_recovered,
    };
    assert_eq!(fec.rtp_receive_totals(), totals(f.received, 1, 0));
    assert_eq!(plc.rtp_receive_totals(), totals(p.received, 0, 1));
    assert!(differs, "FEC output identical to PLC output");
}

#[test]
fn fec_follows_the_far_ends_receiver_reports_both_ways() {
    let mut a = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        ..config(0xA)
    })
    .unwrap();
    let reports = std::sync::Arc::new(LossReports::new());
    a.use_loss_reports(reports.clone()).unwrap();
    assert_eq!(a.stats().expected_loss_pct, 0, "clean until told otherwise");
    let bot = a.bot_sender();
    // Real speech: Opus judges the synthetic harmonics music and codes them in CELT, which
    // has no in-band FEC.
    let (rate, speech) = appmedia_testkit::audio::read_wav(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../media-samples/john-speech-48k.wav"),
    );
    assert_eq!(rate, 48_000);
    let frames: Vec<Frame48> = speech
        .chunks_exact(SAMPLES_PER_FRAME_48K)
        .map(|c| c.try_into().unwrap())
        .collect();
    let mut tick = 0usize;
    // Runs one second of speech with one receiver report first; how many packets had FEC.
    let mut second = |a: &mut CallPipeline, fraction_lost: Option<u8>| {
        if let Some(f) = fraction_lost {
            reports.report(f);
        }
        let (mut sent, mut with_fec) = (0, 0);
        for _ in 0..50 {
            bot.send_48k(&frames[tick % frames.len()]).unwrap();
            a.tick(TICK * tick as u32);
            tick += 1;
            if let Ok(p) = RtpPacket::parse(packet_of(a).unwrap_or_default()) {
                sent += 1;
                with_fec += usize::from(packet_has_fec(p.payload()));
            }
        }
        assert!(sent > 25, "{sent} packets in a second of speech");
        with_fec
    };
    assert_eq!(second(&mut a, None), 0, "no reports: no FEC");
    assert_eq!(second(&mut a, Some(0)), 0, "a clean path: no FEC");
    // 10 % loss (26/256) reported: FEC from the next second on.
    let lossy: Vec<usize> = (0..4).map(|_| second(&mut a, Some(26))).collect();
    assert!(
        lossy.iter().all(|&n| n > 20),
        "packets with FEC per second: {lossy:?}"
    );
    assert!(a.stats().expected_loss_pct >= 5, "{:?}", a.stats());
    assert_eq!(
        (a.stats().loss_reports, a.stats().remote_fraction_lost),
        (5, 26)
    );
    // Clean again: FEC stays for a while, then goes.
    let clean: Vec<usize> = (0..25).map(|_| second(&mut a, Some(0))).collect();
    assert!(
        clean[0] > 20,
        "one clean report is not a clean path: {clean:?}"
    );
    let off = clean
        .iter()
        .position(|&n| n == 0)
        .expect("FEC off after a clean period");
    assert!(clean[off..].iter().all(|&n| n == 0), "{clean:?}");
    assert_eq!(a.stats().expected_loss_pct, 0);
}

/// A listen-only stretch: the bot sends nothing for 10 s, then talks. Runs `a` → `b` and
/// returns what `b` heard of the talk spurt's first 200 ms and the packets `a` sent.
fn listen_then_talk(a: &mut CallPipeline, silence_ticks: usize) -> (Vec<f32>, Vec<RtpPacket>) {
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    let bot = a.bot_sender();
    let mut heard = Vec::new();
    let mut sent = Vec::new();
    for tick in 0..silence_ticks + 40 {
        let now = TICK * tick as u32;
        if tick < 10 || tick >= silence_ticks {
            bot.send_pcm16k(&tone_16k(300.0, 0.3, tick)).unwrap();
        }
        a.tick(now);
        if let Some(pkt) = packet_of(a) {
            sent.push(RtpPacket::parse(pkt.clone()).unwrap());
            b.push_rtp(pkt, now + Duration::from_millis(2));
        }
        b.tick(now + Duration::from_millis(10));
        if tick >= silence_ticks + 10 && tick < silence_ticks + 20 {
            heard.extend_from_slice(b.bot_frame_48k());
        }
    }
    let s = b.stream_stats().next().unwrap().jitter;
    assert_eq!((s.lost, s.concealed), (0, 0), "{s:?}");
    (heard, sent)
}

#[test]
fn a_listen_only_call_stops_encoding_and_talks_again_without_a_click() {
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let (heard, sent) = listen_then_talk(&mut a, 510);
    let stats = *a.stats();
    // 500 silent ticks: the encoder ran until it entered DTX (a few hundred ms), then rested.
    assert!(
        stats.encoder_rested_ticks > 450,
        "the encoder rested {} of 500 silent ticks",
        stats.encoder_rested_ticks
    );
    assert!(stats.dtx_ticks >= stats.encoder_rested_ticks);
    // While resting only comfort-noise updates go out, one every 400 ms, all the same tiny
    // packet (the encoder's last of digital silence), as libopus sends them in DTX.
    let updates = stats.comfort_noise_updates as usize;
    assert!(
        (stats.encoder_rested_ticks as usize / 20).abs_diff(updates) <= 1,
        "{updates} updates in {} rested ticks",
        stats.encoder_rested_ticks
    );
    // The update is the packet just before the talk spurt (the encoder's last of digital
    // silence, ~20 bytes), repeated.
    let spurt = sent
        .iter()
        .rposition(|p| p.payload().len() > 40 && p.marker())
        .unwrap();
    let update = sent[spurt - 1].payload();
    assert!(update.len() < 40, "{} bytes", update.len());
    let repeats = sent.iter().filter(|p| p.payload() == update).count();
    assert!(repeats > updates, "{repeats} packets carry the update");
    assert!(
        sent.len() < 10 + 40 + 25 + updates,
        "{} packets: the encoder did not rest",
        sent.len()
    );
    // The talk spurt after the rest: the tone at its level, no click, no gap.
    let (freq, ratio) = dominant_of(&heard, &[300.0, 1000.0, 3000.0]);
    assert_eq!(freq, 300.0, "ratio {ratio}");
    let peak = heard.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    assert!((0.2..=0.36).contains(&peak), "peak {peak} (tone 0.3)");
    let level = appmedia_media::frame::level_dbov(&heard);
    assert!(
        (level + 13.5).abs() < 2.0,
        "level {level} dBov (0.3 sine: -13.5)"
    );

    // The same call with frames of zeros instead of nothing: the same rest.
    let mut zeros = CallPipeline::new(config(0xC)).unwrap();
    let bot = zeros.bot_sender();
    for tick in 0..100u32 {
        bot.send_pcm16k(&[0u8; 640]).unwrap();
        zeros.tick(TICK * tick);
    }
    assert!(
        zeros.stats().encoder_rested_ticks > 70,
        "{:?}",
        zeros.stats()
    );
}

/// The strongest of `candidates` (Hz) in 48 kHz `samples`, and its ratio to the runner-up.
fn dominant_of(samples: &[f32], candidates: &[f32]) -> (f32, f64) {
    appmedia_testkit::audio::dominant(samples, candidates, 48_000.0)
}

#[test]
fn dtx_pause_is_not_loss_and_resumes_with_marker_and_timestamp_jump() {
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    let bot = a.bot_sender();
    let mut sent = Vec::new();
    let mut silent_ticks_at_b = 0;
    for tick in 0..200usize {
        let now = TICK * tick as u32;
        let talking = !(60..140).contains(&tick);
        if talking {
            bot.send_pcm16k(&tone_16k(300.0, 0.3, tick)).unwrap();
        }
        a.tick(now);
        if let Some(pkt) = packet_of(&a) {
            sent.push((tick, RtpPacket::parse(pkt.clone()).unwrap()));
            b.push_rtp(pkt, now + Duration::from_millis(2));
        }
        b.tick(now + Duration::from_millis(10));
        if (90..130).contains(&tick) && b.is_silence() {
            silent_ticks_at_b += 1;
        }
    }
    // The bot's silence became DTX: few packets (comfort-noise updates) during the pause.
    let in_pause = sent.iter().filter(|(t, _)| (70..140).contains(t)).count();
    assert!(in_pause < 15, "{in_pause} packets sent during silence");
    assert!(a.stats().dtx_ticks > 50);
    assert_eq!(a.stats().bot_underruns, 1);
    // Sequence numbers stay contiguous; timestamps track the tick that produced them.
    for w in sent.windows(2) {
        let ((t0, p0), (t1, p1)) = (&w[0], &w[1]);
        assert_eq!(p1.sequence_number(), p0.sequence_number().wrapping_add(1));
        assert_eq!(
            p1.timestamp().wrapping_sub(p0.timestamp()),
            960 * (t1 - t0) as u32
        );
        // Marker exactly at the start of a talk spurt (after any unsent tick).
        assert_eq!(p1.marker(), t1 - t0 > 1, "marker at tick {t1}");
    }
    let resumed = sent.iter().find(|(t, _)| *t >= 140).unwrap();
    assert!(resumed.1.marker());
    // The receiver saw a pause, not loss.
    let s = b.stream_stats().next().unwrap().jitter;
    assert_eq!(s.lost, 0);
    assert!(s.dtx_frames > 20, "{s:?}");
    assert!(silent_ticks_at_b >= 35);
    assert_eq!(b.active_speakers(), &[0xA]);
}

fn rtp(ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Bytes {
    RtpPacketSpec::new(RtpHeader::new(111, seq, ts, ssrc), payload)
        .to_bytes()
        .unwrap()
}

#[test]
fn garbage_is_counted_and_the_tick_goes_on() {
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for tick in 0..200u32 {
        let now = TICK * tick;
        // Garbage Opus payload in a valid RTP packet...
        let payload: Vec<u8> = (0..rnd() % 80).map(|_| rnd() as u8).collect();
        b.push_rtp(rtp(7, tick as u16, tick * 960, &payload), now);
        // ...and garbage that is not even RTP, and a foreign payload type.
        // ...packets from many SSRCs with random sequence numbers and timestamps...
        let ssrc = 100 + (rnd() % 20) as u32;
        b.push_rtp(rtp(ssrc, rnd() as u16, rnd() as u32, &payload), now);
        let junk: Vec<u8> = (0..rnd() % 30).map(|_| rnd() as u8).collect();
        b.push_rtp(Bytes::from(junk), now);
        let mut h = RtpHeader::new(13, tick as u16, 0, 7);
        h.marker = true;
        b.push_rtp(RtpPacketSpec::new(h, &[0]).to_bytes().unwrap(), now);
        let report = b.tick(now + Duration::from_millis(5));
        assert!(
            b.bot_frame_48k()
                .iter()
                .all(|s| s.is_finite() && s.abs() <= 1.0)
        );
        let _ = report;
    }
    let s = b.stream_stats().find(|s| s.ssrc == 7).unwrap();
    assert!(s.decode_errors > 50, "{s:?}");
    assert!(b.stats().streams_full > 0);
    assert!(b.stream_stats().count() <= 8);
    assert!(b.stats().rtp_errors.total() > 100);
    assert!(b.stats().unknown_payload_type >= 200);
    assert_eq!(b.stats().ticks, 200);
}

#[test]
fn ssrc_change_resets_a_two_party_stream_and_adds_one_in_a_conference() {
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let bot = a.bot_sender();
    let mut packets = Vec::new();
    for tick in 0..40usize {
        bot.send_pcm16k(&tone_16k(500.0, 0.2, tick)).unwrap();
        a.tick(TICK * tick as u32);
        packets.push(packet_of(&a));
    }
    let restamp = |p: &Bytes, ssrc: u32| {
        let mut v = p.to_vec();
        v[8..12].copy_from_slice(&ssrc.to_be_bytes());
        Bytes::from(v)
    };
    for (max_streams, want) in [(1, "reset"), (4, "added")] {
        let mut b = CallPipeline::new(PipelineConfig {
            max_remote_streams: max_streams,
            stream_timeout: Duration::from_millis(500),
            ..config(0xB)
        })
        .unwrap();
        let mut pushed = 0;
        for (tick, p) in packets.iter().enumerate() {
            let now = TICK * tick as u32;
            if let Some(p) = p {
                let ssrc = if tick < 20 { 0x111 } else { 0x222 };
                b.push_rtp(restamp(p, ssrc), now);
                pushed += 1;
            }
            b.tick(now + Duration::from_millis(5));
        }
        assert_eq!(b.rtp_receive_totals().packets, pushed, "{want}");
        let ev = events(&mut b);
        let got = ev.iter().find(|e| match e {
            PipelineEvent::StreamReset { ssrc: 0x222, .. } => want == "reset",
            PipelineEvent::StreamAdded { ssrc: 0x222, .. } => want == "added",
            _ => false,
        });
        assert!(got.is_some(), "{want}: {ev:?}");
        let live: Vec<u32> = b.stream_stats().map(|s| s.ssrc).collect();
        if want == "reset" {
            assert_eq!(live, vec![0x222]);
        } else {
            assert_eq!(live, vec![0x111, 0x222]);
            // The old stream times out and is removed.
            for tick in 40..80u32 {
                b.tick(TICK * tick);
            }
            let ev = events(&mut b);
            assert!(ev.contains(&PipelineEvent::StreamRemoved {
                ssrc: 0x111,
                source_id: 0x111
            }));
            // Gone from the live streams, still in the call's totals.
            let live: u64 = b.stream_stats().map(|s| s.jitter.received).sum();
            assert!(live < pushed, "{live} of {pushed} packets on live streams");
            assert_eq!(b.rtp_receive_totals().packets, pushed);
        }
    }
}

#[test]
fn bursty_bot_is_smoothed_by_the_send_queue() {
    let mut a = CallPipeline::new(PipelineConfig {
        encoder: EncoderConfig {
            dtx: false,
            ..EncoderConfig::default()
        },
        ..config(0xA)
    })
    .unwrap();
    let bot = a.bot_sender();
    let mut frame = 0;
    let mut markers = 0;
    let mut sent = 0;
    for tick in 0..150usize {
        // The bot wakes every third tick and pushes three frames, sometimes one tick late.
        let late = tick % 30 == 3;
        if tick % 3 == 0 && !late || tick % 30 == 4 {
            for _ in 0..3 {
                bot.send_pcm16k(&tone_16k(440.0, 0.3, frame)).unwrap();
                frame += 1;
            }
        }
        a.tick(TICK * tick as u32);
        if let Some(p) = a.outgoing_packet() {
            sent += 1;
            if tick > 5
                && RtpPacket::parse(Bytes::copy_from_slice(p))
                    .unwrap()
                    .marker()
            {
                markers += 1;
            }
        }
    }
    assert_eq!(sent, 150);
    assert_eq!(markers, 0);
    assert_eq!(a.stats().bot_underruns, 0);
    assert_eq!(a.stats().bot_queue.evicted, 0);

    // A bot far ahead of real time loses its oldest frames, counted.
    for _ in 0..30 {
        bot.send_pcm16k(&[0; 640]).unwrap();
    }
    a.tick(TICK * 151);
    assert!(a.stats().bot_queue.evicted >= 20);
    assert!(bot.send_pcm16k(&[0; 10]).is_err());
}

#[test]
fn player_audio_is_sent_and_heard() {
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    let player = a.add_player(4).unwrap();
    let mut heard = Vec::new();
    for tick in 0..60usize {
        let now = TICK * tick as u32;
        if player.queued() < player.capacity() {
            player.send(&tone_48k(1000.0, 0.3, tick)).unwrap();
        }
        a.tick(now);
        if let Some(p) = packet_of(&a) {
            b.push_rtp(p, now + Duration::from_millis(1));
        }
        b.tick(now + Duration::from_millis(10));
        if tick >= 35 {
            heard.extend_from_slice(b.bot_frame_48k());
        }
    }
    let zc = zero_crossings(&heard);
    assert!((980..=1020).contains(&zc), "{zc}"); // 25 frames of 1 kHz = 1000 crossings
    drop(player);
    a.tick(TICK * 60);
    assert!(a.add_player(4).is_ok() && a.add_player(4).is_ok());
    assert!(a.add_player(4).is_err());
}

#[test]
fn a_held_send_side_keeps_the_players_audio_for_when_it_runs() {
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let player = a.add_player(4).unwrap();
    let bot = a.bot_sender();
    for frame in 0..4 {
        player.send(&tone_48k(1000.0, 0.3, frame)).unwrap();
    }
    a.set_send_active(false);
    assert!(!a.send_active());
    for tick in 0..10u32 {
        // A bot streaming live while held: its frames are discarded, not queued up as delay.
        bot.send_pcm16k(&tone_16k(440.0, 0.3, tick as usize))
            .unwrap();
        a.tick(TICK * tick);
        assert!(
            packet_of(&a).is_none(),
            "nothing is sent while held (tick {tick})"
        );
    }
    let stats = *a.stats();
    assert_eq!(stats.send_held_ticks, 10);
    assert_eq!(stats.bot_frames_discarded_while_held, 10);
    assert_eq!(
        (stats.packets_sent, stats.dtx_ticks),
        (0, 0),
        "the encoder rested"
    );
    assert_eq!(player.queued(), 4, "the player's audio waits");

    a.set_send_active(true);
    a.tick(TICK * 10);
    let first = RtpPacket::parse(packet_of(&a).expect("sent once active")).unwrap();
    assert!(first.marker(), "a new talk spurt");
    assert_eq!(
        first.timestamp(),
        config(0xA).initial_timestamp.wrapping_add(10 * 960),
        "the RTP clock ran on while held"
    );
    assert_eq!(
        player.queued(),
        3,
        "the player's first frame went out first"
    );
    assert_eq!(a.stats().send_held_ticks, 10);
}

#[test]
fn dominant_speaker_changes_with_hysteresis() {
    let mut s1 = CallPipeline::new(config(0x1)).unwrap();
    let mut s2 = CallPipeline::new(config(0x2)).unwrap();
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    b.assign_source_id(0x2, 77);
    let (bot1, bot2) = (s1.bot_sender(), s2.bot_sender());
    let mut dominants = Vec::new();
    for tick in 0..200usize {
        let now = TICK * tick as u32;
        // 1 talks loudly, then from tick 100 2 talks louder while 1 keeps murmuring; a
        // single-tick burst from 2 at tick 50 must not steal dominance.
        let (a1, a2) = match tick {
            0..=99 => (0.3, if tick == 50 { 0.9 } else { 0.0 }),
            _ => (0.02, 0.5),
        };
        bot1.send_pcm16k(&tone_16k(300.0, a1, tick)).unwrap();
        bot2.send_pcm16k(&tone_16k(700.0, a2, tick)).unwrap();
        for s in [&mut s1, &mut s2] {
            s.tick(now);
            if let Some(p) = packet_of(s) {
                b.push_rtp(p, now + Duration::from_millis(1));
            }
        }
        b.tick(now + Duration::from_millis(10));
        for e in events(&mut b) {
            if let PipelineEvent::DominantSpeakerChanged { source_id } = e {
                dominants.push((tick, source_id));
            }
        }
    }
    assert_eq!(dominants.len(), 2, "{dominants:?}");
    assert_eq!(dominants[0].1, Some(0x1));
    assert_eq!(dominants[1].1, Some(77));
    assert!(dominants[1].0 >= 110, "{dominants:?}");
    assert_eq!(b.active_speakers(), &[77, 0x1]);
    let unmixed: Vec<u32> = b.unmixed().map(|u| u.source_id).collect();
    assert_eq!(unmixed, vec![77, 0x1]);
    // Each unmixed 16 kHz frame carries only its own talker: 700 Hz is 28 zero crossings in
    // 20 ms, 300 Hz is 12 (each stream has its own resampler once two are live).
    let crossings: Vec<usize> = b
        .unmixed()
        .map(|u| {
            let pcm: Vec<f32> = u
                .pcm16k
                .unwrap()
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect();
            zero_crossings(&pcm)
        })
        .collect();
    assert!((27..=29).contains(&crossings[0]), "{crossings:?}");
    assert!((11..=13).contains(&crossings[1]), "{crossings:?}");
}

#[test]
fn a_48k_pipeline_takes_both_bot_formats() {
    let cfg = |ssrc| PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        ..config(ssrc)
    };
    let mut a = CallPipeline::new(cfg(0xA)).unwrap();
    let mut b = CallPipeline::new(cfg(0xB)).unwrap();
    let bot = a.bot_sender();
    let mut heard = Vec::new();
    for tick in 0..80usize {
        let now = TICK * tick as u32;
        // 16 kHz frames, then 48 kHz frames of the same 400 Hz tone.
        if tick < 40 {
            bot.send_pcm16k(&tone_16k(400.0, 0.3, tick)).unwrap();
        } else {
            bot.send_48k(&tone_48k(400.0, 0.3, tick)).unwrap();
        }
        a.tick(now);
        if let Some(p) = packet_of(&a) {
            b.push_rtp(p, now + Duration::from_millis(1));
        }
        b.tick(now + Duration::from_millis(10));
        if (15..35).contains(&tick) || (55..75).contains(&tick) {
            heard.push(zero_crossings(b.bot_frame_48k()));
        }
    }
    assert!(b.bot_frame_16k().is_none());
    assert!(b.unmixed().all(|u| u.pcm16k.is_none()));
    // 400 Hz: 16 crossings per 20 ms frame, in both halves.
    assert!(heard.iter().all(|&zc| (15..=17).contains(&zc)), "{heard:?}");
    assert_eq!(a.stats().resample_errors, 0);
}

#[test]
fn network_inbox_feeds_the_tick_and_counts_overflow() {
    let mut b = CallPipeline::new(PipelineConfig {
        inbound_queue_packets: 8,
        ..config(0xB)
    })
    .unwrap();
    let inbox = b.rtp_inbox();
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let bot = a.bot_sender();
    let mut packets = Vec::new();
    for tick in 0..20usize {
        bot.send_pcm16k(&tone_16k(440.0, 0.3, tick)).unwrap();
        a.tick(TICK * tick as u32);
        packets.extend(packet_of(&a));
    }
    // The worker stalled: 12 packets arrive before the next tick; the 4 oldest are dropped.
    for (i, p) in packets.iter().take(12).enumerate() {
        inbox.push(p.clone(), TICK * i as u32).unwrap();
    }
    assert_eq!(inbox.queued(), 8);
    b.tick(TICK * 12);
    let st = b.stats().inbound_queue;
    assert_eq!((st.pushed, st.evicted, st.popped), (12, 4, 8));
    let s = b.stream_stats().next().unwrap();
    assert_eq!(s.jitter.received, 8);
    assert_eq!(inbox.queued(), 0);
}

#[test]
fn a_bad_network_is_absorbed_and_counted() {
    let mut a = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        encoder: EncoderConfig {
            expected_loss_pct: 10,
            ..EncoderConfig::default()
        },
        ..config(0xA)
    })
    .unwrap();
    let mut b = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        ..config(0xB)
    })
    .unwrap();
    let bot = a.bot_sender();
    let inbox = b.rtp_inbox();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    // (arrival, packet) in flight.
    let mut in_flight: Vec<(Duration, Bytes)> = Vec::new();
    let mut tail = Vec::new();
    let ticks = 500usize;
    for tick in 0..ticks {
        let now = TICK * tick as u32;
        bot.send_48k(&speechlike(tick)).unwrap();
        a.tick(now);
        if let Some(p) = packet_of(&a) {
            match rnd(100) {
                0..=2 => {} // 3 % lost
                3..=7 => {
                    // 5 % duplicated
                    in_flight.push((now + Duration::from_millis(rnd(60)), p.clone()));
                    in_flight.push((now + Duration::from_millis(rnd(60)), p));
                }
                8 => in_flight.push((now + Duration::from_millis(300), p)), // very late
                _ => in_flight.push((now + Duration::from_millis(rnd(60)), p)), // 0-60 ms jitter
            }
        }
        let tick_at = now + Duration::from_millis(10);
        in_flight.sort_by_key(|(t, _)| *t);
        while in_flight.first().is_some_and(|(t, _)| *t <= tick_at) {
            let (t, p) = in_flight.remove(0);
            inbox.push(p, t).unwrap();
        }
        b.tick(tick_at);
        if tick >= ticks - 100 {
            tail.extend_from_slice(b.bot_frame_48k());
        }
    }
    let s = b.stream_stats().next().unwrap().jitter;
    assert!(s.reordered > 20, "{s:?}");
    assert!(s.duplicate > 10, "{s:?}");
    assert!(s.late >= 3, "{s:?}");
    assert!(s.lost >= 10 && s.lost < 60, "{s:?}");
    assert!(s.fec_recovered > 0, "{s:?}");
    assert!(s.target_delay > Duration::from_millis(40), "{s:?}");
    // What plays is still the talker: energy close to the source's over the last 2 s.
    let src: f64 = (ticks - 100..ticks)
        .flat_map(speechlike)
        .map(|v| f64::from(v * v))
        .sum();
    let got: f64 = tail.iter().map(|&v| f64::from(v * v)).sum();
    assert!(
        (0.6..1.6).contains(&(got / src)),
        "energy ratio {}",
        got / src
    );
}

#[test]
fn threaded_outputs_arrive_through_the_outboxes() {
    use appmedia_media::scheduler::Tickable;

    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    let a_out = a.packet_outbox(4);
    let b_in = b.rtp_inbox();
    let b_bot = b.bot_audio_outbox(8).unwrap();
    let bot = a.bot_sender();
    let mut received = Vec::new();
    for tick in 0..60usize {
        let now = TICK * tick as u32;
        bot.send_pcm16k(&tone_16k(440.0, 0.3, tick)).unwrap();
        Tickable::tick(&mut a, now); // as the scheduler calls it
        // The transport task: forwards whatever A sent.
        while let Some(p) = a_out.pop() {
            b_in.push(
                Bytes::copy_from_slice(p.as_bytes()),
                now + Duration::from_millis(2),
            )
            .unwrap();
        }
        Tickable::tick(&mut b, now + Duration::from_millis(10));
        // The bot's thread: takes what it hears.
        while let Some(audio) = b_bot.pop() {
            received.push(audio);
        }
    }
    assert_eq!(received.len(), 60);
    let last = received.last().unwrap();
    assert_eq!(last.timestamp, TICK * 59 + Duration::from_millis(10));
    assert!(!last.is_silence);
    assert_eq!(last.active_speakers(), &[0xA]);
    assert_eq!(last.dominant_speaker, Some(0xA));
    assert_eq!(last.unmixed().len(), 1);
    assert_eq!(last.unmixed()[0].source_id, 0xA);
    let pcm: Vec<f32> = received[30..]
        .iter()
        .flat_map(|a| {
            a.mixed
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect::<Vec<_>>()
        })
        .collect();
    let zc = zero_crossings(&pcm);
    assert!((520..=536).contains(&zc), "{zc}"); // 0.6 s of 440 Hz = 528 crossings
    assert_eq!(b.stats().packet_outbox.pushed, 0);
    assert!(a.stats().packet_outbox.pushed >= 55);

    let mut wide = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        ..config(0xC)
    })
    .unwrap();
    assert!(wide.bot_audio_outbox(2).is_err());
}

#[test]
fn pipelines_can_share_one_packet_outbox() {
    use appmedia_media::queue;

    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    let (tx, rx) = queue::bounded(16);
    a.connect_packet_outbox(tx.clone());
    b.connect_packet_outbox(tx);
    let (bot_a, bot_b) = (a.bot_sender(), b.bot_sender());
    let mut ssrcs = Vec::new();
    for tick in 0..10usize {
        let now = TICK * tick as u32;
        bot_a.send_pcm16k(&tone_16k(440.0, 0.3, tick)).unwrap();
        bot_b.send_pcm16k(&tone_16k(660.0, 0.3, tick)).unwrap();
        a.tick(now);
        b.tick(now);
        while let Some(p) = rx.pop() {
            ssrcs.push(
                RtpPacket::parse(Bytes::copy_from_slice(p.as_bytes()))
                    .unwrap()
                    .ssrc(),
            );
        }
    }
    // Both streams arrive through the one queue, each under its own SSRC, in tick order.
    let from_a = ssrcs.iter().filter(|&&s| s == 0xA).count();
    let from_b = ssrcs.iter().filter(|&&s| s == 0xB).count();
    assert_eq!(from_a + from_b, ssrcs.len());
    assert!(from_a >= 7 && from_b >= 7, "{from_a} {from_b}");
    assert_eq!(from_a as u64, a.stats().packets_sent);
    // The counters are the queue's, read at each pipeline's own tick: B ticked last.
    assert_eq!(b.stats().packet_outbox.pushed, ssrcs.len() as u64);
}

/// DTMF end to end between two pipelines: A's bot sends keys through its ToneSender while
/// speaking; B reports each key once (Graph's tone names), A reports each as sent, the
/// telephone-event packets replace A's audio only while a key is held, and B hears A's
/// voice again afterwards. Every end packet of one key is lost on the way: B still reports
/// it, marked as closed without its end.
#[test]
fn dtmf_keys_cross_the_call_once_each_even_when_their_end_is_lost() {
    use appmedia_media::dtmf::{Tone, ToneRequest};
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let mut b = CallPipeline::new(config(0xB)).unwrap();
    b.assign_source_id(0xA, 42);
    let bot_a = a.bot_sender();
    let tones = a.tone_sender().unwrap();
    let keys = [Tone::Tone1, Tone::Tone1, Tone::Pound, Tone::Tone9];
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let mut event_packets = 0;
    let mut audio_after_keys = 0;
    for tick in 0..100u32 {
        let now = TICK * tick;
        bot_a
            .send_pcm16k(&tone_16k(440.0, 0.3, tick as usize))
            .unwrap();
        if tick == 10 {
            for key in keys {
                tones.send(ToneRequest::key(key)).unwrap();
            }
        }
        a.tick(now);
        if let Some(packet) = packet_of(&a) {
            let parsed = RtpPacket::parse(packet.clone()).unwrap();
            let is_event = parsed.payload_type() == 101;
            event_packets += usize::from(is_event);
            // All three end packets of the '#' are lost.
            let hash_end = is_event && parsed.payload()[0] == 11 && parsed.payload()[1] & 0x80 != 0;
            if !hash_end {
                b.push_rtp(packet, now + Duration::from_millis(3));
            }
            if tick > 60 && !is_event {
                audio_after_keys += 1;
            }
        }
        b.tick(now + Duration::from_millis(5));
        for e in events(&mut a) {
            if let PipelineEvent::ToneSent { tone } = e {
                sent.push(tone);
            }
        }
        for e in events(&mut b) {
            if let PipelineEvent::ToneReceived {
                ssrc,
                source_id,
                tone,
                duration,
                end_seen,
            } = e
            {
                assert_eq!((ssrc, source_id), (0xA, 42));
                received.push((tone, duration, end_seen));
            }
        }
    }
    assert_eq!(sent, keys);
    let got: Vec<_> = received.iter().map(|r| r.0).collect();
    assert_eq!(got, keys, "{received:?}");
    let ends: Vec<bool> = received.iter().map(|r| r.2).collect();
    assert_eq!(ends, [true, true, false, true]);
    assert_eq!(received[0].1, Duration::from_millis(100));
    // Four keys × (4 running + 3 end packets).
    assert_eq!(event_packets, 28);
    assert_eq!(a.stats().dtmf_packets_sent, 28);
    assert_eq!(b.stats().dtmf.tones, 4);
    assert_eq!(b.stats().dtmf.ends_lost, 1);
    assert_eq!(b.stats().unknown_payload_type, 0);
    assert!(audio_after_keys > 30, "audio resumes after the keys");
    assert!(
        b.stream_stats()
            .any(|s| s.ssrc == 0xA && s.level_dbov > -30.0)
    );
}

#[test]
fn without_a_negotiated_telephone_event_tones_are_refused_and_events_unknown() {
    let mut b = CallPipeline::new(PipelineConfig {
        telephone_event_payload_type: None,
        ..config(0xB)
    })
    .unwrap();
    assert!(b.tone_sender().is_err());
    let mut h = RtpHeader::new(101, 1, 0, 7);
    h.marker = true;
    b.push_rtp(
        RtpPacketSpec::new(h, &[1, 0x80, 3, 192])
            .to_bytes()
            .unwrap(),
        TICK,
    );
    b.tick(TICK);
    assert_eq!(b.stats().unknown_payload_type, 1);
    assert_eq!(b.stats().dtmf.tones, 0);
}

/// `n` frames of speech-like audio as a far end hears them from a real libopus stream: each
/// frame with the packet it is the decoding of (what an Ogg/Opus prompt's player hands over).
fn coded_prompt(n: usize) -> Vec<PlayerFrame> {
    let mut encoder = OpusEncoder::new(EncoderConfig {
        bitrate_bps: 24_000,
        dtx: false,
        ..EncoderConfig::default()
    })
    .unwrap();
    let mut decoder = OpusDecoder::new().unwrap();
    (0..n)
        .map(|k| {
            let EncodedFrame::Voice(bytes) = encoder.encode(&speechlike(k)).unwrap() else {
                panic!("speech is not DTX");
            };
            let packet = OpusPacket::new(bytes).unwrap();
            let mut pcm = [0.0; SAMPLES_PER_FRAME_48K];
            decoder.decode(bytes, &mut pcm).unwrap();
            PlayerFrame {
                pcm,
                packet: Some(packet),
            }
        })
        .collect()
}

/// Runs `a` for `frames.len()` ticks, one prompt frame queued per tick (and the bot's frame
/// from `bot`, if any); returns every packet sent.
fn play_prompt(
    a: &mut CallPipeline,
    frames: &[PlayerFrame],
    mut bot: impl FnMut(usize) -> Option<Frame48>,
) -> Vec<RtpPacket> {
    let player = a.add_player(4).unwrap();
    let bot_tx = a.bot_sender();
    let mut sent = Vec::new();
    for (k, frame) in frames.iter().enumerate() {
        player.send_frame(frame).unwrap();
        if let Some(f) = bot(k) {
            bot_tx.send_48k(&f).unwrap();
        }
        a.tick(TICK * k as u32);
        if let Some(p) = packet_of(a) {
            sent.push(RtpPacket::parse(p).unwrap());
        }
    }
    sent
}

#[test]
fn a_prompt_alone_goes_out_as_its_own_packets_re_timestamped() {
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let prompt = coded_prompt(40);
    let sent = play_prompt(&mut a, &prompt, |_| None);
    assert_eq!(sent.len(), prompt.len());
    for (k, (p, f)) in sent.iter().zip(&prompt).enumerate() {
        assert_eq!(
            p.payload(),
            f.packet.unwrap().as_bytes(),
            "packet {k} unchanged"
        );
        assert_eq!(p.sequence_number(), 65_500u16.wrapping_add(k as u16));
        assert_eq!(
            p.timestamp(),
            (u32::MAX - 960 * 30).wrapping_add(960 * k as u32)
        );
        assert_eq!(p.ssrc(), 0xA);
        assert_eq!(p.marker(), k == 0, "marker on the first packet only");
        let level = p.audio_level(1).unwrap();
        assert_eq!(level.level_dbov, appmedia_media::rtp::dbov_of(&f.pcm));
    }
    let stats = a.stats();
    assert_eq!(stats.passthrough_frames, 40);
    assert_eq!((stats.frames_encoded, stats.encoder_resets), (0, 0));
    assert_eq!(stats.passthrough_mixed, 0);
}

#[test]
fn the_bot_speaking_over_a_prompt_is_mixed_and_encoded_then_passthrough_resumes() {
    let mut a = CallPipeline::new(PipelineConfig {
        send_prebuffer_frames: 0,
        ..config(0xA)
    })
    .unwrap();
    let prompt = coded_prompt(60);
    // The bot talks on ticks 20..30 and streams digital silence the rest of the time, as
    // Graph bots do: silence does not count as speaking over the prompt.
    let sent = play_prompt(&mut a, &prompt, |k| {
        Some(if (20..30).contains(&k) {
            tone_48k(300.0, 0.3, k)
        } else {
            [0.0; SAMPLES_PER_FRAME_48K]
        })
    });
    assert_eq!(sent.len(), 60);
    for (k, p) in sent.iter().enumerate() {
        let own = p.payload() == prompt[k].packet.unwrap().as_bytes();
        assert_eq!(own, !(20..30).contains(&k), "tick {k}");
    }
    // Contiguous through both switches.
    for w in sent.windows(2) {
        assert_eq!(
            w[1].sequence_number(),
            w[0].sequence_number().wrapping_add(1)
        );
        assert_eq!(w[1].timestamp(), w[0].timestamp().wrapping_add(960));
        assert!(!w[1].marker());
    }
    let stats = a.stats();
    assert_eq!(stats.passthrough_frames, 50);
    assert_eq!(stats.passthrough_mixed, 10);
    assert_eq!(stats.frames_encoded, 10);
    assert_eq!(stats.encoder_resets, 1, "one switch back to encoding");
}

#[test]
fn two_prompts_at_once_a_tone_or_passthrough_off_are_encoded() {
    let prompt = coded_prompt(10);
    // Two players with packets: both are heard, so they are mixed.
    let mut a = CallPipeline::new(config(0xA)).unwrap();
    let other = a.add_player(4).unwrap();
    for f in &prompt[..4] {
        other.send_frame(f).unwrap();
    }
    let sent = play_prompt(&mut a, &prompt, |_| None);
    assert_eq!(a.stats().passthrough_mixed, 4);
    assert_eq!(a.stats().passthrough_frames, 6);
    assert_ne!(sent[2].payload(), prompt[2].packet.unwrap().as_bytes());

    // Turned off: every frame is encoded.
    let mut b = CallPipeline::new(PipelineConfig {
        opus_passthrough: false,
        ..config(0xB)
    })
    .unwrap();
    let sent = play_prompt(&mut b, &prompt, |_| None);
    assert!(
        sent.iter()
            .zip(&prompt)
            .all(|(p, f)| p.payload() != f.packet.unwrap().as_bytes())
    );
    assert_eq!(b.stats().passthrough_frames, 0);
    assert_eq!(b.stats().frames_encoded, 10);

    // A DTMF tone replaces the prompt while it is held.
    let mut c = CallPipeline::new(config(0xC)).unwrap();
    c.tone_sender()
        .unwrap()
        .send(appmedia_media::dtmf::ToneRequest::key(
            appmedia_media::dtmf::Tone::from_event(5).unwrap(),
        ))
        .unwrap();
    let sent = play_prompt(&mut c, &prompt, |_| None);
    assert_eq!(sent[0].payload_type(), 101);
    assert!(c.stats().dtmf_packets_sent > 0);
    assert_eq!(
        c.stats().passthrough_frames + c.stats().dtmf_packets_sent,
        10
    );
}

#[test]
fn a_pcm_send_side_plays_the_prompts_audio_and_ignores_its_packets() {
    let mut a = CallPipeline::new(PipelineConfig {
        send_output: appmedia_media::pipeline::SendOutput::Pcm(
            appmedia_media::pcm::PcmRate::Hz16000,
        ),
        ..config(0xA)
    })
    .unwrap();
    let prompt = coded_prompt(10);
    let sent = play_prompt(&mut a, &prompt, |_| None);
    assert!(sent.is_empty());
    assert_eq!(a.stats().pcm_frames_sent, 10);
    assert_eq!(a.stats().passthrough_frames, 0);
}
