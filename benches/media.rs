//! Per-frame cost of each stage of the media path and of whole call frames.
//!
//! `cargo bench --bench media` runs every stage under criterion. With
//! `APPMEDIA_BENCH_GUARD` set to `report`, `check` or `update` it instead runs
//! the bench guard (see `support/guard.rs` and `scripts/bench-guard`): the same
//! stages, interleaved, each as a ratio to Opus decode + encode.
//!
//! Each stage is a closure `FnMut(frames) -> Duration` that processes that many
//! frames and returns only the time of the measured work: per-frame input
//! (an RTP packet's `Bytes`, which the network side builds) is made before the
//! clock starts. Criterion drives it through `iter_custom`; the guard calls it
//! directly. The time is the thread's CPU time, so a shared, busy host slows
//! the numbers far less than wall time would (preemption is not counted).

use std::hint::black_box;
use std::time::{Duration, Instant};

use appmedia::media::codec::{EncodedFrame, EncoderConfig, OpusDecoder, OpusEncoder, OpusPacket};
use appmedia::media::cpu::thread_cpu_time;
use appmedia::media::frame::{
    BYTES_PER_FRAME_16K_S16, FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_16K, SILENT_FRAME_48,
    level_dbov,
};
use appmedia::media::jitter::{JitterBuffer, JitterConfig, Playout};
use appmedia::media::mixer::{Mixer, SourceId};
use appmedia::media::pcm::PcmRate;
use appmedia::media::pipeline::{
    BotAudioFormat, CallPipeline, PipelineConfig, PlayerFrame, SendOutput,
};
use appmedia::media::resample::{Downsampler, f32_to_s16, f32_to_s16le_bytes};
use appmedia::media::rtp::{HeaderExtension, RtpHeader, RtpPacket, RtpPacketSpec};
use appmedia::media::synth::SpeechLike;
use bytes::Bytes;
use criterion::Criterion;

#[path = "support/guard.rs"]
mod guard;

const PT: u8 = 111;
const LEVEL_EXT: u8 = 1;

/// One benchmarked stage: runs `frames` frames, returns the measured time.
pub struct Stage {
    /// The stage's name in reports and in `benches/baseline.json`.
    pub name: &'static str,
    /// Runs the stage over the given number of 20 ms frames and returns the time it took.
    pub run: Box<dyn FnMut(u64) -> Duration>,
}

fn stage(name: &'static str, run: impl FnMut(u64) -> Duration + 'static) -> Stage {
    Stage {
        name,
        run: Box::new(run),
    }
}

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

/// A remote talker: the next packet of its loop, on a continuous timeline.
struct Talker {
    ssrc: u32,
    packets: Vec<Vec<u8>>,
    seq: u16,
}

impl Talker {
    fn new(voice: u32) -> Self {
        Self {
            ssrc: 0x1000 + voice,
            packets: encode_all(&talk_frames(voice, 50)),
            seq: 0,
        }
    }

    /// The next packet and its arrival time (one per 20 ms of fake time).
    fn next(&mut self) -> (Bytes, Duration) {
        self.seq = self.seq.wrapping_add(1);
        let payload = &self.packets[usize::from(self.seq) % self.packets.len()];
        (
            rtp_bytes(self.seq, self.ssrc, payload),
            FRAME_DURATION * u32::from(self.seq),
        )
    }
}

/// Measures this thread's CPU time (wall time where the OS has no thread
/// clock): what a stage costs, not how long a busy host let it run. The clock
/// is read twice per batch, so its own cost (a system call) does not matter.
enum Stopwatch {
    Cpu(Duration),
    Wall(Instant),
}

impl Stopwatch {
    fn start() -> Self {
        thread_cpu_time().map_or_else(|| Stopwatch::Wall(Instant::now()), Stopwatch::Cpu)
    }

    fn elapsed(&self) -> Duration {
        match self {
            Stopwatch::Cpu(t0) => {
                thread_cpu_time().map_or(Duration::ZERO, |t| t.saturating_sub(*t0))
            }
            Stopwatch::Wall(t0) => t0.elapsed(),
        }
    }
}

/// Times `work` over `frames` prepared inputs (prepared before the clock starts).
fn timed<I>(frames: u64, mut prepare: impl FnMut() -> I, mut work: impl FnMut(I)) -> Duration {
    let inputs: Vec<I> = (0..frames).map(|_| prepare()).collect();
    let start = Stopwatch::start();
    for input in inputs {
        work(input);
    }
    start.elapsed()
}

fn rtp_parse() -> Stage {
    let packets = encode_all(&talk_frames(0, 5));
    let wire = rtp_bytes(1000, 0x1234, &packets[0]);
    stage("rtp_parse", move |frames| {
        let start = Stopwatch::start();
        for _ in 0..frames {
            let p = RtpPacket::parse(black_box(wire.clone())).expect("parse");
            black_box(p.audio_level(LEVEL_EXT));
        }
        start.elapsed()
    })
}

/// One packet in, one frame out, per 20 ms of fake time.
fn jitter_push_pop() -> Stage {
    let mut talker = Talker::new(0);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    stage("jitter_push_pop", move |frames| {
        timed(
            frames,
            || {
                let (bytes, now) = talker.next();
                (RtpPacket::parse(bytes).expect("parse"), now)
            },
            |(packet, now)| {
                jb.push(packet, now);
                if let Playout::Frame(p) = jb.pop(now) {
                    black_box(p.payload().len());
                }
            },
        )
    })
}

fn opus_decode() -> Stage {
    let packets = encode_all(&talk_frames(0, 50));
    let mut dec = OpusDecoder::new().expect("decoder");
    let mut out = SILENT_FRAME_48;
    let mut i = 0;
    stage("opus_decode", move |frames| {
        let start = Stopwatch::start();
        for _ in 0..frames {
            i = (i + 1) % packets.len();
            dec.decode(black_box(&packets[i]), &mut out)
                .expect("decode");
            black_box(&out);
        }
        start.elapsed()
    })
}

fn opus_encode() -> Stage {
    let frames_in = talk_frames(0, 50);
    let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
    let mut j = 0;
    stage("opus_encode", move |frames| {
        let start = Stopwatch::start();
        for _ in 0..frames {
            j = (j + 1) % frames_in.len();
            let n = match enc.encode(black_box(&frames_in[j])).expect("encode") {
                EncodedFrame::Voice(p) => p.len(),
                EncodedFrame::Dtx => 0,
            };
            black_box(n);
        }
        start.elapsed()
    })
}

/// `n` sources pushed and mixed.
fn mix(name: &'static str, n: usize) -> Stage {
    let inputs: Vec<Frame48> = (0..n).map(|k| talk_frames(k as u32, 1)[0]).collect();
    let mut mixer = Mixer::with_capacity(n);
    let ids: Vec<SourceId> = (0..n).map(|_| mixer.add_source().expect("room")).collect();
    stage(name, move |frames| {
        let start = Stopwatch::start();
        for _ in 0..frames {
            for (id, f) in ids.iter().zip(&inputs) {
                mixer.push(*id, f).expect("live source");
            }
            black_box(mixer.mix());
        }
        start.elapsed()
    })
}

/// A whole frame of a 2-party call through the real pipeline: one RTP packet
/// in (parse, jitter buffer, decode), the frame to the bot, the bot's own
/// frame back (the same talk the `opus_encode` stage encodes, so the two are
/// comparable), encode, RTP out. Talk only: every frame is decoded and encoded.
/// `bot_talks: false` is a listen-only bot (a recorder): it sends nothing, so after the
/// encoder's DTX decision the frame is the decode side alone.
fn two_party(name: &'static str, format: BotAudioFormat, bot_talks: bool) -> Stage {
    // Voice 0 both ways: the very packets `opus_decode` decodes and the very
    // frames `opus_encode` encodes, so the ratio compares like with like.
    let mut talker = Talker::new(0);
    let bot_frames = talk_frames(0, 50);
    // The same talk as Graph's 16 kHz s16 bytes, for the 16 kHz bot.
    let mut down = Downsampler::new().expect("downsampler");
    let bot_frames_16k: Vec<[u8; BYTES_PER_FRAME_16K_S16]> = bot_frames
        .iter()
        .map(|f| {
            let mut narrow = [0.0f32; SAMPLES_PER_FRAME_16K];
            down.process(f, &mut narrow).expect("resample");
            let mut bytes = [0u8; BYTES_PER_FRAME_16K_S16];
            f32_to_s16le_bytes(&narrow, &mut bytes).expect("lengths match");
            bytes
        })
        .collect();
    let mut pipeline = CallPipeline::new(PipelineConfig {
        payload_type: PT,
        audio_level_ext_id: Some(LEVEL_EXT),
        bot_format: format,
        ..PipelineConfig::default()
    })
    .expect("pipeline");
    let bot = pipeline.bot_sender();
    let mut k = 0;
    stage(name, move |frames| {
        timed(
            frames,
            || talker.next(),
            |(bytes, now)| {
                pipeline.push_rtp(bytes, now);
                pipeline.tick(now);
                black_box(pipeline.bot_frame_48k());
                k = (k + 1) % bot_frames.len();
                if !bot_talks {
                    black_box(pipeline.outgoing_packet());
                    return;
                }
                let _ = match format {
                    BotAudioFormat::Pcm16k => bot.send_pcm16k(&bot_frames_16k[k]),
                    BotAudioFormat::Pcm48k => bot.send_48k(&bot_frames[k]),
                };
                black_box(pipeline.outgoing_packet());
            },
        )
    })
}

/// A whole frame of a 2-party call whose bot plays an Ogg/Opus prompt alone: one RTP packet
/// in (parse, jitter buffer, decode), the frame to the bot (16 kHz), the prompt's frame with
/// its packet queued by the player, and that packet sent as it is (Opus passthrough): no
/// encode. The prompt is voice 1's talk, coded by libopus as a file's packets would be.
fn two_party_passthrough() -> Stage {
    let mut talker = Talker::new(0);
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
    let mut decoder = OpusDecoder::new().expect("decoder");
    let prompt: Vec<PlayerFrame> = talk_frames(1, 50)
        .iter()
        .filter_map(|f| match encoder.encode(f).expect("encode") {
            EncodedFrame::Voice(p) => {
                let packet = OpusPacket::new(p).expect("a 20 ms mono packet");
                let mut pcm = SILENT_FRAME_48;
                decoder.decode(p, &mut pcm).expect("decode");
                Some(PlayerFrame {
                    pcm,
                    packet: Some(packet),
                })
            }
            EncodedFrame::Dtx => None,
        })
        .collect();
    let mut pipeline = CallPipeline::new(PipelineConfig {
        payload_type: PT,
        audio_level_ext_id: Some(LEVEL_EXT),
        bot_format: BotAudioFormat::Pcm16k,
        ..PipelineConfig::default()
    })
    .expect("pipeline");
    let player = pipeline.add_player(4).expect("a player slot");
    let mut k = 0;
    stage("call_2party_passthrough_frame", move |frames| {
        let time = timed(
            frames,
            || talker.next(),
            |(bytes, now)| {
                pipeline.push_rtp(bytes, now);
                k = (k + 1) % prompt.len();
                let _ = player.send_frame(&prompt[k]);
                pipeline.tick(now);
                black_box(pipeline.bot_frame_16k());
                black_box(pipeline.outgoing_packet());
            },
        );
        // Measures what it says: every frame passed through, none encoded.
        assert_eq!(pipeline.stats().frames_encoded, 0, "a frame was encoded");
        time
    })
}

/// A whole frame of a 2-party call over raw PCM (Azure Communication Services audio
/// streaming), 16 kHz both ways: one frame in (playout ring, upsampling to 48 kHz), the frame
/// to the bot at 16 kHz, the bot's own 16 kHz frame back, the send mix downsampled to 16 kHz
/// PCM out. The same talk both ways as `call_2party_frame_pcm16k`, which carries it over
/// Opus and RTP instead.
fn two_party_pcm() -> Stage {
    let mut down = Downsampler::new().expect("downsampler");
    let talk: Vec<[i16; SAMPLES_PER_FRAME_16K]> = talk_frames(0, 50)
        .iter()
        .map(|f| {
            let mut narrow = [0.0f32; SAMPLES_PER_FRAME_16K];
            down.process(f, &mut narrow).expect("resample");
            let mut samples = [0i16; SAMPLES_PER_FRAME_16K];
            f32_to_s16(&narrow, &mut samples).expect("lengths match");
            samples
        })
        .collect();
    let mut pipeline = CallPipeline::new(PipelineConfig {
        send_output: SendOutput::Pcm(PcmRate::Hz16000),
        ..PipelineConfig::default()
    })
    .expect("pipeline");
    let bot = pipeline.bot_sender();
    let (mut k, mut tick) = (0, 0u32);
    stage("call_2party_frame_pcm", move |frames| {
        timed(
            frames,
            || {
                k = (k + 1) % talk.len();
                tick += 1;
                (k, FRAME_DURATION * tick)
            },
            |(k, now)| {
                pipeline
                    .push_pcm(0, PcmRate::Hz16000, &talk[k], now)
                    .expect("20 ms frames");
                pipeline.tick(now);
                black_box(pipeline.bot_frame_16k());
                let _ = bot.send_pcm16k_samples(&talk[k]);
                black_box(pipeline.outgoing_pcm());
            },
        )
    })
}

/// One participant of the conference bench: what a conference mixer keeps
/// per party.
struct Participant {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    encoder: OpusEncoder,
    source: SourceId,
    heard: Box<Frame48>,
    out_seq: u16,
    ssrc: u32,
    wire: [u8; 1500],
}

/// Five parties: each frame, every party's packet is parsed, buffered,
/// decoded and mixed; each party gets total − own, encoded and packetized.
fn conference() -> Stage {
    const PARTIES: u32 = 5;
    let mut mixer = Mixer::with_capacity(PARTIES as usize);
    let mut talkers: Vec<Talker> = (0..PARTIES).map(Talker::new).collect();
    let mut parties: Vec<Participant> = talkers
        .iter()
        .map(|t| Participant {
            jitter: JitterBuffer::new(JitterConfig::default()),
            decoder: OpusDecoder::new().expect("decoder"),
            encoder: OpusEncoder::new(EncoderConfig::default()).expect("encoder"),
            source: mixer.add_source().expect("room"),
            heard: Box::new(SILENT_FRAME_48),
            out_seq: 0,
            ssrc: t.ssrc,
            wire: [0; 1500],
        })
        .collect();
    stage("conference_5party_frame", move |frames| {
        timed(
            frames,
            || talkers.iter_mut().map(Talker::next).collect::<Vec<_>>(),
            |incoming| {
                for (p, (bytes, now)) in parties.iter_mut().zip(incoming) {
                    if let Ok(packet) = RtpPacket::parse(bytes) {
                        p.jitter.push(packet, now);
                    }
                    let pcm = &mut mixer.input_mut(p.source).expect("live source")[..];
                    match p.jitter.pop(now) {
                        Playout::Frame(packet) => {
                            if p.decoder.decode(packet.payload(), pcm).is_err() {
                                pcm.fill(0.0);
                            }
                        }
                        Playout::Lost { fec: Some(next) } => {
                            let _ = p.decoder.decode_fec(next.payload(), pcm);
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
        )
    })
}

/// Every stage, in report order; the guard's reference is the first two.
fn all_stages() -> Vec<Stage> {
    vec![
        opus_decode(),
        opus_encode(),
        rtp_parse(),
        jitter_push_pop(),
        mix("mix_2", 2),
        mix("mix_5", 5),
        mix("mix_10", 10),
        mix("mix_50", 50),
        two_party("call_2party_frame", BotAudioFormat::Pcm48k, true),
        two_party("call_2party_frame_pcm16k", BotAudioFormat::Pcm16k, true),
        two_party("call_2party_listen_frame", BotAudioFormat::Pcm16k, false),
        two_party_passthrough(),
        two_party_pcm(),
        conference(),
    ]
}

fn main() {
    let mut stages = all_stages();
    if let Ok(mode) = std::env::var("APPMEDIA_BENCH_GUARD") {
        let baseline =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/baseline.json");
        std::process::exit(guard::run(&mode, &mut stages, &baseline));
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    for s in &mut stages {
        let run = &mut s.run;
        c.bench_function(s.name, |b| b.iter_custom(&mut **run));
    }
    c.final_summary();
}
