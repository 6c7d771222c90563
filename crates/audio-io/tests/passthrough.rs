//! Opus passthrough of Ogg/Opus prompts, from the file to the RTP packets: a prompt played
//! alone goes out as the file's own packets; the bot speaking over it is mixed and encoded;
//! files whose packets cannot pass through are decoded and mixed as before.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::playback::{PlayMode, PromptPlayer};
use appmedia_audio_io::stream::StreamedClip;
use appmedia_media::codec::OpusDecoder;
use appmedia_media::frame::{Frame48, SAMPLES_PER_FRAME_48K};
use appmedia_media::pipeline::{CallPipeline, PipelineConfig, PlayerFrame};
use appmedia_media::rtp::RtpPacket;

const TICK: Duration = Duration::from_millis(20);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The audio packets of an Ogg/Opus file, read here independently of the crate's reader:
/// pages, lacing, and the two header packets skipped.
fn ogg_packets(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let (mut pos, mut packets, mut current) = (0, Vec::new(), Vec::new());
    while pos < bytes.len() {
        assert_eq!(&bytes[pos..pos + 4], b"OggS");
        let segments = usize::from(bytes[pos + 26]);
        let lacing = &bytes[pos + 27..pos + 27 + segments];
        let mut data = pos + 27 + segments;
        for &lace in lacing {
            current.extend_from_slice(&bytes[data..data + usize::from(lace)]);
            data += usize::from(lace);
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        pos = data;
    }
    packets.split_off(2)
}

/// A call whose bot plays `clip` (through the prompt player, as the bot SDK does) and speaks
/// `bot(tick)` over it; returns the packets sent, the pipeline, and the audio it was given
/// (prompt plus bot, tick by tick).
fn play_mixed(
    clip: Option<&AudioClip>,
    streamed: Option<&StreamedClip>,
    config: PipelineConfig,
    ticks: usize,
    mut bot: impl FnMut(usize) -> Option<Frame48>,
) -> (Vec<RtpPacket>, CallPipeline, Vec<f32>) {
    let mut call = CallPipeline::new(PipelineConfig {
        send_prebuffer_frames: 0,
        ..config
    })
    .unwrap();
    let player_tx = call.add_player(4).unwrap();
    let bot_tx = call.bot_sender();
    let (mut player, queue) = PromptPlayer::new(4);
    if let Some(clip) = clip {
        queue.play(clip, PlayMode::Once).unwrap();
    }
    if let Some(clip) = streamed {
        queue.play_streamed(clip, PlayMode::Once).unwrap();
    }
    let mut frame = PlayerFrame::SILENT;
    let mut sent = Vec::new();
    let mut given = Vec::new();
    for k in 0..ticks {
        let mut input = [0.0; SAMPLES_PER_FRAME_48K];
        let played = loop {
            let behind = player.counters().stream_underruns;
            let played = player.next_player_frame(&mut frame);
            // A streamed prompt's decoder thread runs in real time beside this fake clock:
            // when it is behind, wait for it (a real tick would be 20 ms later anyway).
            if player.counters().stream_underruns == behind {
                break played;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if played {
            player_tx.send_frame(&frame).unwrap();
            input = frame.pcm;
        }
        if let Some(f) = bot(k) {
            bot_tx.send_48k(&f).unwrap();
            input.iter_mut().zip(&f).for_each(|(i, b)| *i += b);
        }
        given.extend_from_slice(&input);
        call.tick(TICK * k as u32);
        if let Some(p) = call.outgoing_packet() {
            sent.push(RtpPacket::parse(bytes::Bytes::copy_from_slice(p)).unwrap());
        }
    }
    (sent, call, given)
}

fn play(
    clip: Option<&AudioClip>,
    streamed: Option<&StreamedClip>,
    config: PipelineConfig,
    ticks: usize,
    bot: impl FnMut(usize) -> Option<Frame48>,
) -> (Vec<RtpPacket>, CallPipeline) {
    let (sent, call, _) = play_mixed(clip, streamed, config, ticks, bot);
    (sent, call)
}

fn tone(freq: f32, amp: f32, k: usize) -> Frame48 {
    let mut out = [0.0; SAMPLES_PER_FRAME_48K];
    for (i, s) in out.iter_mut().enumerate() {
        let t = (k * SAMPLES_PER_FRAME_48K + i) as f32 / 48_000.0;
        *s = amp * (2.0 * std::f32::consts::PI * freq * t).sin();
    }
    out
}

#[test]
fn an_ogg_opus_prompt_played_alone_is_sent_as_the_files_own_packets() {
    let path = fixture("prompt-16k.opus");
    let packets = ogg_packets(&path);
    assert!(packets.len() > 200, "{} packets", packets.len());
    let clip = AudioClip::open(&path).unwrap();
    assert_eq!(clip.passthrough_frames(), packets.len());
    let (sent, call) = play(
        Some(&clip),
        None,
        PipelineConfig::default(),
        packets.len(),
        |_| None,
    );
    assert_eq!(sent.len(), packets.len());
    for (k, (p, file)) in sent.iter().zip(&packets).enumerate() {
        assert_eq!(p.payload(), &file[..], "packet {k}");
    }
    for w in sent.windows(2) {
        assert_eq!(
            w[1].sequence_number(),
            w[0].sequence_number().wrapping_add(1)
        );
        assert_eq!(w[1].timestamp(), w[0].timestamp().wrapping_add(960));
    }
    let stats = call.stats();
    assert_eq!(stats.passthrough_frames, packets.len() as u64);
    assert_eq!(stats.frames_encoded, 0, "no encoding");
}

#[test]
fn a_streamed_ogg_opus_prompt_is_sent_as_the_files_own_packets() {
    let path = fixture("prompt-16k.opus");
    let packets = ogg_packets(&path);
    let clip = StreamedClip::open(&path).unwrap();
    assert!(clip.passes_through());
    let (sent, call) = play(
        None,
        Some(&clip),
        PipelineConfig::default(),
        packets.len(),
        |_| None,
    );
    let payloads: Vec<&[u8]> = sent.iter().map(|p| p.payload()).collect();
    let want: Vec<&[u8]> = packets.iter().map(|p| &p[..]).collect();
    assert_eq!(payloads, want);
    assert_eq!(call.stats().passthrough_frames, packets.len() as u64);
    assert_eq!(call.stats().frames_encoded, 0);
}

#[test]
fn files_whose_packets_cannot_pass_through_are_decoded_mixed_and_encoded() {
    for name in [
        "prompt-16k-10ms.opus",
        "prompt-16k-40ms.opus",
        "stereo-440l-1000r.opus",
    ] {
        let path = fixture(name);
        let clip = AudioClip::open(&path).unwrap();
        assert_eq!(clip.passthrough_frames(), 0, "{name}");
        assert!(
            !StreamedClip::open(&path).unwrap().passes_through(),
            "{name}"
        );
        let ticks = clip.samples().len() / SAMPLES_PER_FRAME_48K;
        let (sent, call) = play(Some(&clip), None, PipelineConfig::default(), ticks, |_| {
            None
        });
        let stats = call.stats();
        assert_eq!(stats.passthrough_frames, 0, "{name}");
        assert!(
            stats.frames_encoded as usize >= ticks - 1,
            "{name}: {stats:?}"
        );
        // And they are heard: the far end decodes audio.
        let mut decoder = OpusDecoder::new().unwrap();
        let mut out = [0.0; SAMPLES_PER_FRAME_48K];
        let loud = sent
            .iter()
            .filter(|p| {
                decoder.decode(p.payload(), &mut out).unwrap();
                appmedia_media::frame::level_dbov(&out) > -40.0
            })
            .count();
        assert!(loud > ticks / 3, "{name}: {loud} of {ticks} frames heard");
    }
}

#[test]
fn a_damaged_page_is_an_error_at_open_for_both_players() {
    let dir = common::TempDir::new("passthrough-damaged");
    let mut bytes = std::fs::read(fixture("prompt-16k.opus")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5A;
    let path = dir.path().join("damaged.opus");
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        AudioClip::open(&path),
        Err(appmedia_audio_io::format::OpenError::Malformed { .. })
    ));
    assert!(matches!(
        StreamedClip::open(&path),
        Err(appmedia_audio_io::format::OpenError::Malformed { .. })
    ));
}

/// What the far end hears: every payload decoded in order by one libopus decoder.
fn far_end(sent: &[RtpPacket]) -> Vec<f32> {
    let mut decoder = OpusDecoder::new().unwrap();
    let mut out = Vec::new();
    let mut frame = [0.0; SAMPLES_PER_FRAME_48K];
    for p in sent {
        decoder.decode(p.payload(), &mut frame).unwrap();
        out.extend_from_slice(&frame);
    }
    out
}

fn snr_db(signal: &[f32], reference: &[f32]) -> f64 {
    let (mut s, mut e) = (0.0f64, 0.0f64);
    for (x, r) in signal.iter().zip(reference) {
        s += f64::from(*r) * f64::from(*r);
        e += f64::from(x - r) * f64::from(x - r);
    }
    10.0 * (s / e.max(1e-12)).log10()
}

/// libopus' look-ahead at 48 kHz for VoIP (2.5 ms + 4 ms): an encoded frame is heard this
/// many samples after it was given.
const LOOKAHEAD: usize = 312;

/// The bot talks (a 1 kHz tone) over the prompt's start, then again (300 Hz) from tick 100
/// to 150. Far-end audio, decoded by one libopus decoder from the packets sent: until the bot
/// first speaks it is the prompt's own decoding, sample for sample. At tick 100 the pipeline
/// switches from the file's packets back to its encoder, whose history (the 1 kHz tone of 60
/// ticks before) is stale and whose packets would predict from frames the far end's decoder
/// never had. Two criteria, both failing without the encoder's reset at the switch
/// (measured in docs/media-pipeline.md, "Opus passthrough"):
/// * the first 100 ms encoded after the switch follow what was given (delayed by the
///   encoder's look-ahead, as every encoded frame is) within 3 dB of the signal-to-error
///   ratio of the steady frames after them (mean 7.2 dB against 7.9 dB steady with the
///   reset; 1.5 dB against 7.6 dB without);
/// * no click: the largest sample-to-sample jump around each join stays within 20 % of the
///   call's 99.9th percentile jump (0.103 against 0.110 × 1.2 = 0.132 with the reset, 0.164
///   without).
#[test]
fn mixing_resumes_seamlessly_when_the_bot_speaks_over_the_prompt() {
    let path = fixture("prompt-16k.opus");
    let clip = AudioClip::open(&path).unwrap();
    let ticks = clip.passthrough_frames();
    let bot = |k: usize| {
        if (20..40).contains(&k) {
            Some(tone(1000.0, 0.3, k))
        } else {
            (100..150).contains(&k).then(|| tone(300.0, 0.2, k))
        }
    };
    let (sent, call, given) = play_mixed(Some(&clip), None, PipelineConfig::default(), ticks, bot);
    assert_eq!(sent.len(), ticks);
    let stats = call.stats();
    assert_eq!((stats.passthrough_mixed, stats.encoder_resets), (70, 2));
    let heard = far_end(&sent);
    let frame = |k: usize| k * SAMPLES_PER_FRAME_48K..(k + 1) * SAMPLES_PER_FRAME_48K;
    // Passed through from the start: exactly the file's decoding.
    assert_eq!(heard[..frame(20).start], given[..frame(20).start]);
    let snr = |k: usize| {
        let r = frame(k);
        snr_db(
            &heard[r.clone()],
            &given[r.start - LOOKAHEAD..r.end - LOOKAHEAD],
        )
    };
    let switch = (100..105).map(snr).sum::<f64>() / 5.0;
    let mut steady: Vec<f64> = (102..150).map(snr).collect();
    steady.sort_by(f64::total_cmp);
    let median = steady[steady.len() / 2];
    let mut jumps: Vec<f32> = heard.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    jumps.sort_by(f32::total_cmp);
    let largest = jumps[jumps.len() * 999 / 1000];
    let join = |at: usize| {
        heard[at - 96..at + 96 + LOOKAHEAD]
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max)
    };
    let (into_mix, back) = (join(frame(100).start), join(frame(150).start));
    eprintln!(
        "after the switch {switch:.1} dB, steady median {median:.1} dB; largest jump at the \
         joins {into_mix:.4} / {back:.4}, p99.9 of the call {largest:.4}"
    );
    assert!(
        median > 6.0,
        "the encoded frames follow their input: {median:.1} dB"
    );
    assert!(
        switch > median - 3.0,
        "after the switch {switch:.1} dB against {median:.1} dB steady"
    );
    assert!(
        into_mix <= 1.2 * largest && back <= 1.2 * largest,
        "jumps at the joins {into_mix} {back}, the call's p99.9 {largest}"
    );
}

#[test]
fn an_ogg_opus_prompt_starts_on_a_frame_and_loops_with_its_packets() {
    let clip = AudioClip::open(fixture("prompt-16k.opus")).unwrap();
    let frames = clip.passthrough_frames();
    let ramp = AudioClip::from_samples((1..=1500).map(|i| i as f32 / 1500.0).collect()).unwrap();
    let (mut player, queue) = PromptPlayer::new(4);
    queue.play(&ramp, PlayMode::Once).unwrap();
    queue.play(&clip, PlayMode::Loop).unwrap();
    let mut frame = PlayerFrame::SILENT;
    let mut got = Vec::new();
    for _ in 0..2 + 2 * frames {
        assert!(player.next_player_frame(&mut frame));
        got.push(frame);
    }
    // The ramp's 1500 samples end 540 samples into the second frame: the rest of it is
    // silence, and the prompt starts with the third, with its first packet.
    assert!(got[0].packet.is_none() && got[1].packet.is_none());
    assert_eq!(got[1].pcm[539], 1.0);
    assert!(got[1].pcm[540..].iter().all(|s| *s == 0.0));
    let packets = ogg_packets(&fixture("prompt-16k.opus"));
    assert_eq!(got[2].packet.unwrap().as_bytes(), &packets[0][..]);
    // Looped: the second pass is the first again, packets and audio.
    for k in 0..frames {
        let (a, b) = (&got[2 + k], &got[2 + frames + k]);
        assert_eq!(a.packet.unwrap().as_bytes(), &packets[k][..], "frame {k}");
        assert_eq!((a.packet, a.pcm), (b.packet, b.pcm), "frame {k}");
    }
    assert_eq!(player.counters().packet_frames, 2 * frames as u64);
}

#[test]
fn a_looped_streamed_ogg_opus_prompt_sends_every_pass_as_the_files_packets() {
    let path = fixture("prompt-16k.opus");
    let packets = ogg_packets(&path);
    let clip = StreamedClip::open(&path).unwrap();
    let (mut player, queue) = PromptPlayer::new(2);
    queue.play_streamed(&clip, PlayMode::Loop).unwrap();
    let mut frame = PlayerFrame::SILENT;
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 2 * packets.len() {
        assert!(std::time::Instant::now() < deadline, "stream too slow");
        let underruns = player.counters().stream_underruns;
        if player.next_player_frame(&mut frame) {
            got.push(frame.packet.expect("every frame has its packet"));
        } else {
            assert!(
                player.counters().stream_underruns > underruns,
                "a looped stream ended"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for (k, p) in got.iter().enumerate() {
        assert_eq!(p.as_bytes(), &packets[k % packets.len()][..], "frame {k}");
    }
}
