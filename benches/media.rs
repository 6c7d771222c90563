//! Per-frame cost of each stage of the media path and of whole call frames.
//!
//! `cargo bench --bench media` runs them all. With `APPMEDIA_BENCH_GUARD` set
//! to `report`, `check` or `update`, the run ends by comparing each stage's
//! time, as a ratio to Opus decode + encode measured in the same run, with
//! `benches/baseline.json` (see `scripts/bench-guard` and docs/benchmarks.md).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use appmedia::media::codec::{EncodedFrame, EncoderConfig, OpusDecoder, OpusEncoder};
use appmedia::media::frame::{FRAME_DURATION, Frame48, SILENT_FRAME_48, level_dbov};
use appmedia::media::jitter::{JitterBuffer, JitterConfig, Playout};
use appmedia::media::mixer::{Mixer, SourceId};
use appmedia::media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia::media::rtp::{HeaderExtension, RtpHeader, RtpPacket, RtpPacketSpec};
use appmedia::media::synth::SpeechLike;
use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion};

#[path = "support/guard.rs"]
mod guard;

const PT: u8 = 111;
const LEVEL_EXT: u8 = 1;

/// `n` frames of talk (pauses skipped) from speaker `voice`.
fn talk_frames(voice: u32, n: usize) -> Vec<Frame48> {
    let mut synth = SpeechLike::new(voice);
    let mut out = Vec::with_capacity(n);
    let mut frame = SILENT_FRAME_48;
    while out.len() < n {
        synth.next_frame(&mut frame);
        if level_dbov(&frame) > -40.0 {
            out.push(frame);
        }
    }
    out
}

/// Opus packets of those frames (voice only; no DTX in talk).
fn encode_all(frames: &[Frame48]) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
    frames
        .iter()
        .filter_map(|f| match enc.encode(f).expect("encode") {
            EncodedFrame::Voice(p) => Some(p.to_vec()),
            EncodedFrame::Dtx => None,
        })
        .collect()
}

fn rtp_bytes(seq: u16, ssrc: u32, payload: &[u8]) -> Bytes {
    let level = [0x80 | 30u8];
    let ext = [HeaderExtension {
        id: LEVEL_EXT,
        data: &level,
    }];
    let mut spec = RtpPacketSpec::new(
        RtpHeader::new(PT, seq, u32::from(seq).wrapping_mul(960), ssrc),
        payload,
    );
    spec.extensions = &ext;
    spec.to_bytes().expect("valid packet")
}

fn stages(c: &mut Criterion) {
    let frames = talk_frames(0, 50);
    let packets = encode_all(&frames);

    let wire = rtp_bytes(1000, 0x1234, &packets[0]);
    c.bench_function("rtp_parse", |b| {
        b.iter(|| {
            let p = RtpPacket::parse(black_box(wire.clone())).expect("parse");
            black_box(p.audio_level(LEVEL_EXT));
        })
    });

    // One packet in, one frame out, per 20 ms of fake time. Building the
    // packet's Bytes is setup, not timed (the network side does it).
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut seq = 0u16;
    c.bench_function("jitter_push_pop", |b| {
        b.iter_batched(
            || {
                seq = seq.wrapping_add(1);
                let bytes = rtp_bytes(seq, 0x1234, &packets[usize::from(seq) % packets.len()]);
                let packet = RtpPacket::parse(bytes).expect("parse");
                // Monotonic fake clock: the stream's own timeline.
                let now = FRAME_DURATION * u32::from(seq);
                (packet, now)
            },
            |(packet, now)| {
                jb.push(packet, now);
                match jb.pop(now) {
                    Playout::Frame(p) => black_box(p.payload().len()),
                    _ => 0,
                }
            },
            BatchSize::SmallInput,
        )
    });

    let mut dec = OpusDecoder::new().expect("decoder");
    let mut out = SILENT_FRAME_48;
    let mut i = 0;
    c.bench_function("opus_decode", |b| {
        b.iter(|| {
            i = (i + 1) % packets.len();
            dec.decode(black_box(&packets[i]), &mut out)
                .expect("decode");
            black_box(&out);
        })
    });

    let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
    let mut j = 0;
    c.bench_function("opus_encode", |b| {
        b.iter(|| {
            j = (j + 1) % frames.len();
            let n = match enc.encode(black_box(&frames[j])).expect("encode") {
                EncodedFrame::Voice(p) => p.len(),
                EncodedFrame::Dtx => 0,
            };
            black_box(n);
        })
    });

    let mut group = c.benchmark_group("mix");
    for n in [2usize, 5, 10, 50] {
        let inputs: Vec<Frame48> = (0..n).map(|k| talk_frames(k as u32, 1)[0]).collect();
        let mut mixer = Mixer::with_capacity(n);
        let ids: Vec<SourceId> = (0..n).map(|_| mixer.add_source().expect("room")).collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                for (id, f) in ids.iter().zip(&inputs) {
                    mixer.push(*id, f).expect("live source");
                }
                black_box(mixer.mix());
            })
        });
    }
    group.finish();
}

/// A whole frame of a 2-party call through the real pipeline: one RTP packet
/// in (parse, jitter buffer, decode), the frame to the bot, the bot's echo of
/// it back, encode, RTP out. Talk only, so every frame is decoded and encoded.
fn two_party(c: &mut Criterion, name: &str, format: BotAudioFormat) {
    let packets = encode_all(&talk_frames(1, 50));
    let mut pipeline = CallPipeline::new(PipelineConfig {
        payload_type: PT,
        audio_level_ext_id: Some(LEVEL_EXT),
        bot_format: format,
        ..PipelineConfig::default()
    })
    .expect("pipeline");
    let bot = pipeline.bot_sender();
    let mut seq = 0u16;
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                seq = seq.wrapping_add(1);
                let bytes = rtp_bytes(seq, 0x5151, &packets[usize::from(seq) % packets.len()]);
                (bytes, FRAME_DURATION * u32::from(seq))
            },
            |(bytes, now)| {
                pipeline.push_rtp(bytes, now);
                pipeline.tick(now);
                let _ = match pipeline.bot_frame_16k() {
                    Some(pcm) => bot.send_pcm16k(pcm),
                    None => bot.send_48k(pipeline.bot_frame_48k()),
                };
                black_box(pipeline.outgoing_packet());
            },
            BatchSize::SmallInput,
        )
    });
}

/// One participant of the conference bench: what the emulator's conference
/// mixer keeps per remote party.
struct Participant {
    ssrc: u32,
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    encoder: OpusEncoder,
    source: SourceId,
    heard: Box<Frame48>,
    out_seq: u16,
    wire: [u8; 1500],
}

/// Five parties: each frame, every party's packet is parsed, buffered,
/// decoded and mixed; each party gets total − own, encoded and packetized.
fn conference(c: &mut Criterion) {
    const PARTIES: usize = 5;
    let mut mixer = Mixer::with_capacity(PARTIES);
    let mut parties: Vec<Participant> = (0..PARTIES as u32)
        .map(|k| Participant {
            ssrc: 0x1000 + k,
            jitter: JitterBuffer::new(JitterConfig::default()),
            decoder: OpusDecoder::new().expect("decoder"),
            encoder: OpusEncoder::new(EncoderConfig::default()).expect("encoder"),
            source: mixer.add_source().expect("room"),
            heard: Box::new(SILENT_FRAME_48),
            out_seq: 0,
            wire: [0; 1500],
        })
        .collect();
    // What each party says: its SSRC and a loop of its Opus packets.
    let talkers: Vec<(u32, Vec<Vec<u8>>)> = parties
        .iter()
        .enumerate()
        .map(|(k, p)| (p.ssrc, encode_all(&talk_frames(k as u32, 50))))
        .collect();
    let mut seq = 0u16;
    c.bench_function("conference_5party_frame", |b| {
        b.iter_batched(
            || {
                seq = seq.wrapping_add(1);
                let now = FRAME_DURATION * u32::from(seq);
                let incoming: Vec<Bytes> = talkers
                    .iter()
                    .map(|(ssrc, pk)| rtp_bytes(seq, *ssrc, &pk[usize::from(seq) % pk.len()]))
                    .collect();
                (incoming, now)
            },
            |(incoming, now)| {
                for (p, bytes) in parties.iter_mut().zip(incoming) {
                    if let Ok(packet) = RtpPacket::parse(bytes) {
                        p.jitter.push(packet, now);
                    }
                    let pcm = mixer.input_mut(p.source).expect("live source");
                    match p.jitter.pop(now) {
                        Playout::Frame(packet) => {
                            if p.decoder.decode(packet.payload(), &mut pcm[..]).is_err() {
                                pcm.fill(0.0);
                            }
                        }
                        Playout::Lost { fec: Some(next) } => {
                            let _ = p.decoder.decode_fec(next.payload(), &mut pcm[..]);
                        }
                        _ => pcm.fill(0.0),
                    }
                }
                mixer.mix();
                for p in parties.iter_mut() {
                    mixer
                        .mix_minus_into(p.source, &mut p.heard)
                        .expect("live source");
                    if let Ok(EncodedFrame::Voice(payload)) = p.encoder.encode(&p.heard[..]) {
                        p.out_seq = p.out_seq.wrapping_add(1);
                        let header = RtpHeader::new(PT, p.out_seq, 0, p.ssrc);
                        let n = RtpPacketSpec::new(header, payload)
                            .write(&mut p.wire)
                            .unwrap_or(0);
                        black_box(n);
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });
}

/// Where criterion writes its results (its own default rule, made explicit so
/// the guard reads the same place).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

fn main() {
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    stages(&mut c);
    two_party(&mut c, "call_2party_frame", BotAudioFormat::Pcm48k);
    two_party(&mut c, "call_2party_frame_pcm16k", BotAudioFormat::Pcm16k);
    conference(&mut c);
    c.final_summary();
    if let Ok(mode) = std::env::var("APPMEDIA_BENCH_GUARD") {
        let baseline = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/baseline.json");
        std::process::exit(guard::run(&mode, &dir, &baseline));
    }
}
