//! `appmedia loadtest`: how many concurrent calls this machine carries in real time.
//!
//! In-process, no network: each call is a real [`CallPipeline`] between a synthetic
//! remote party (speech-like audio, Opus-encoded into RTP and pushed at real-time
//! pace, 1.8 s talk spurts with DTX pauses) and a bot that speaks its own speech-like
//! script back into the call, one frame per tick, in the chosen PCM format. The media scheduler ticks all calls on one worker per
//! core against absolute 20 ms deadlines. The run reports tick latency, late ticks
//! (a call's frame finished after its 20 ms period), CPU and memory per call, and the
//! codec-bound limit measured in the same run: 20 ms ÷ (Opus decode + encode of one
//! frame of the same input).
//!
//! `--bot listen` makes every bot a listener (a recording or transcription bot: it sends no
//! audio, so its encoder rests once it has signalled DTX), `--bot conversation` makes the
//! bot and its party take turns (each talks 40 % of the time); the default `talk` keeps both
//! talking at once, the worst case.
//!
//! `--calls max` searches for the largest call count with zero late ticks: a
//! bounded gallop-then-bisect over short probe runs (at most 16; a failing count is probed
//! twice, so one noisy run does not decide), each run in a
//! fresh child process (`appmedia loadtest --json`) so memory figures and
//! runs stay independent; the final run is one more child of `--seconds`.
//!
//! `--transport rtp|webrtc` puts the wire between each bot and its remote party: a pair
//! of plain-RTP or WebRTC (DTLS-SRTP) sessions on loopback per call, so the capacity
//! includes socket and encryption cost; the report splits the CPU into the transport's
//! share and the media core's (see [`wire`]).

mod far_end;
mod plot;
mod wire;

pub use wire::Transport;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appmedia_media::codec::{EncodedFrame, EncoderConfig, OpusDecoder, OpusEncoder};
use appmedia_media::cpu::thread_cpu_time;
use appmedia_media::frame::{
    BYTES_PER_FRAME_16K_S16, FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_16K, SILENT_FRAME_48,
    level_dbov,
};
use appmedia_media::pipeline::{BotAudioFormat, BotSender, CallPipeline, PipelineConfig};
use appmedia_media::resample::{Downsampler, Upsampler, f32_to_s16le_bytes, s16le_bytes_to_f32};
use appmedia_media::rtp::{AudioLevel, HeaderExtension, RtpHeader, RtpPacketSpec};
use appmedia_media::scheduler::{Scheduler, SchedulerConfig, SchedulerStats, Tickable};
use appmedia_media::synth::SpeechLike;
use appmedia_transport::RtpEndpoint;
use bytes::Bytes;
use serde_json::json;

/// Opus payload type both sides use.
const PAYLOAD_TYPE: u8 = 111;
/// RFC 6464 audio level extension id both sides use.
const AUDIO_LEVEL_EXT: u8 = 1;
/// Length of each remote party's pre-encoded script (5 s), replayed in a loop.
const SCRIPT_FRAMES: usize = 250;
/// Distinct remote voices; call `i` uses voice `i % VOICES`.
const VOICES: u32 = 4;
/// Most probe runs `--calls max` makes.
const MAX_PROBES: usize = 16;
/// Most calls one run builds (about 20 GiB of call state at the limit).
const MAX_CALLS: usize = 100_000;

/// `--calls`: a number, or `max` to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallCount {
    /// Run exactly this many calls.
    Fixed(usize),
    /// Find the largest count with zero late ticks.
    Max,
}

impl FromStr for CallCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(CallCount::Max);
        }
        match s.parse::<usize>() {
            Ok(0) => Err("--calls must be at least 1".into()),
            Ok(n) if n > MAX_CALLS => Err(format!(
                "--calls {n} is more than this load test runs ({MAX_CALLS}; ~200 KiB each)"
            )),
            Ok(n) => Ok(CallCount::Fixed(n)),
            Err(_) => Err(format!("--calls takes a number or `max`, not {s:?}")),
        }
    }
}

impl fmt::Display for CallCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallCount::Fixed(n) => write!(f, "{n}"),
            CallCount::Max => f.write_str("max"),
        }
    }
}

/// What the bot does with its audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BotMode {
    /// Speaks its script all the time while the remote party speaks too (the worst case).
    Talk,
    /// Only listens, as a recording or transcription bot does: it never sends audio.
    Listen,
    /// Takes turns with the remote party: each talks 40 % of a 5 s cycle, both are
    /// silent for the rest.
    Conversation,
}

impl BotMode {
    fn name(self) -> &'static str {
        match self {
            BotMode::Talk => "talk",
            BotMode::Listen => "listen",
            BotMode::Conversation => "conversation",
        }
    }

    /// Whether the remote party and the bot talk on tick `tick` of a call.
    fn turns(self, tick: usize) -> (bool, bool) {
        match self {
            BotMode::Talk => (true, true),
            BotMode::Listen => (true, false),
            BotMode::Conversation => {
                let t = tick % CONVERSATION_CYCLE;
                (
                    t < CONVERSATION_CYCLE * 2 / 5,
                    (CONVERSATION_CYCLE / 2..CONVERSATION_CYCLE * 9 / 10).contains(&t),
                )
            }
        }
    }
}

/// `--realtime`: the media workers' real-time policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Realtime {
    /// SCHED_FIFO.
    Fifo,
    /// SCHED_RR.
    Rr,
}

impl Realtime {
    fn name(self) -> &'static str {
        match self {
            Realtime::Fifo => "fifo",
            Realtime::Rr => "rr",
        }
    }

    fn priority(self, priority: u8) -> appmedia_media::scheduler::RealtimePriority {
        appmedia_media::scheduler::RealtimePriority {
            policy: match self {
                Realtime::Fifo => appmedia_media::scheduler::RealtimePolicy::Fifo,
                Realtime::Rr => appmedia_media::scheduler::RealtimePolicy::RoundRobin,
            },
            priority,
        }
    }
}

/// Ticks of one `--bot conversation` cycle (5 s).
const CONVERSATION_CYCLE: usize = 250;

/// The bot's PCM format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BotFormat {
    /// s16 mono 16 kHz, 640 bytes a frame (Graph media bots' format; resampled).
    Pcm16k,
    /// f32 mono 48 kHz (no resampling).
    Pcm48k,
}

impl BotFormat {
    fn name(self) -> &'static str {
        match self {
            BotFormat::Pcm16k => "pcm16k",
            BotFormat::Pcm48k => "pcm48k",
        }
    }
}

/// Arguments of `appmedia loadtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadtestArgs {
    /// Concurrent 2-party calls, or `max` to find the most with zero late ticks.
    #[arg(long, default_value = "10")]
    pub calls: CallCount,
    /// Length of the measured run in seconds (with `--calls max`: of the final run).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub workers: Option<u64>,
    /// The bot's audio format.
    #[arg(long, value_enum, default_value_t = BotFormat::Pcm16k)]
    pub bot_format: BotFormat,
    /// What each bot does: talks all the time, only listens, or takes turns.
    #[arg(long, value_enum, default_value_t = BotMode::Talk)]
    pub bot: BotMode,
    /// Run the media workers under a real-time policy (needs root, CAP_SYS_NICE or an
    /// RLIMIT_RTPRIO allowance; refused: normal priority, and the report says so).
    #[arg(long, value_enum)]
    pub realtime: Option<Realtime>,
    /// Draw the measured run second by second (tick time, late ticks, CPU) into FILE.svg
    /// (with `--calls max`: the final run).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// Keep each call on its home worker: no worker ticks another's calls within the
    /// period (to measure what stealing buys; the report says which ran).
    #[arg(long)]
    pub no_steal: bool,
    /// With `--realtime`: the priority, 1-99.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=99))]
    pub realtime_priority: u8,
    /// With `--calls max`: the largest count tried.
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_calls: u64,
    /// With `--calls max`: seconds of each probe run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub probe_seconds: u64,
    /// What carries each call's audio between the bot and its remote party.
    #[arg(long, value_enum, default_value_t = Transport::None)]
    pub transport: Transport,
    /// With `--transport webrtc|webrtc-port`: where the remote parties and their sessions
    /// run — in this process (the report counts both ends), or in a child process (the
    /// report's CPU, RSS and UDP sockets are the bot side's alone).
    #[arg(long, value_enum, default_value_t = FarEnd::InProcess)]
    pub far_end: FarEnd,
    /// With `--transport webrtc-port`: sockets on the one port (`SO_REUSEPORT`), each read
    /// by a thread of its own (`MediaPort::bind_reuseport`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub port_sockets: u64,
    /// Internal: be the far end of a `--far-end process` run (offers on stdin, answers on
    /// stdout).
    #[arg(long, hide = true)]
    pub serve_far_end: bool,
    /// With `--transport webrtc`: seconds each session pair gets to connect (ICE + DTLS)
    /// before the run fails.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub connect_timeout: u64,
}

/// Where the remote parties of a WebRTC run live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FarEnd {
    /// In this process, on its own runtime threads.
    InProcess,
    /// In a child process (`appmedia loadtest --serve-far-end`).
    Process,
}

impl FarEnd {
    fn name(self) -> &'static str {
        match self {
            FarEnd::InProcess => "in-process",
            FarEnd::Process => "process",
        }
    }
}

/// Why the load test could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// Building a codec for the synthetic party or the codec timing failed.
    #[error("codec: {0}")]
    Codec(#[from] appmedia_media::codec::CodecError),
    /// Preparing the bot's 16 kHz audio failed.
    #[error("resample: {0}")]
    Resample(#[from] appmedia_media::resample::ResampleError),
    /// A call's pipeline could not be built.
    #[error("pipeline: {0}")]
    Pipeline(#[from] appmedia_media::pipeline::PipelineError),
    /// The scheduler could not start or take a call.
    #[error("scheduler: {0}")]
    Scheduler(#[from] appmedia_media::scheduler::SchedulerError),
    /// The sessions of `--transport rtp|webrtc` could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// `--plot` could not be written.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// A `--calls max` run in a child process failed.
    #[error("child run with {calls} calls: {what}")]
    Child {
        /// Calls of that run.
        calls: usize,
        /// What went wrong.
        what: String,
    },
}

/// The audio of one pair of voices, shared by every call using it: the remote
/// party's Opus packets (`None` where DTX sent nothing) and the bot's PCM in
/// both formats.
struct Script {
    packets: Vec<Option<(Vec<u8>, AudioLevel)>>,
    /// The remote's talk packets, for timing the decoder on the same input.
    talk_packets: Vec<Vec<u8>>,
    bot48: Vec<Frame48>,
    bot16: Vec<[u8; BYTES_PER_FRAME_16K_S16]>,
    /// The bot's talk frames as the pipeline's encoder sees them, per format
    /// (16 kHz frames arrive upsampled), for timing the encoder on the same input.
    bot_talk48: Vec<Frame48>,
    bot_talk16: Vec<Frame48>,
}

impl Script {
    fn new(voice: u32) -> Result<Self, LoadtestError> {
        let mut synth = SpeechLike::new(voice);
        let mut encoder = OpusEncoder::new(EncoderConfig::default())?;
        let mut frame = SILENT_FRAME_48;
        let mut packets = Vec::with_capacity(SCRIPT_FRAMES);
        let mut talk_packets = Vec::new();
        for _ in 0..SCRIPT_FRAMES {
            synth.next_frame(&mut frame);
            let level = AudioLevel::from_samples(&frame, true);
            match encoder.encode(&frame)? {
                EncodedFrame::Voice(p) => {
                    // Comfort-noise updates during DTX are a few bytes; time talk only.
                    if p.len() > 10 {
                        talk_packets.push(p.to_vec());
                    }
                    packets.push(Some((p.to_vec(), level)));
                }
                EncodedFrame::Dtx => packets.push(None),
            }
        }
        let mut bot_synth = SpeechLike::new(voice + VOICES);
        let mut down = Downsampler::new()?;
        let mut up = Upsampler::new()?;
        let (mut bot48, mut bot16) = (Vec::new(), Vec::new());
        let (mut bot_talk48, mut bot_talk16) = (Vec::new(), Vec::new());
        let mut narrow = [0.0f32; SAMPLES_PER_FRAME_16K];
        let mut wide = SILENT_FRAME_48;
        for _ in 0..SCRIPT_FRAMES {
            bot_synth.next_frame(&mut frame);
            down.process(&frame, &mut narrow)?;
            let mut bytes = [0u8; BYTES_PER_FRAME_16K_S16];
            f32_to_s16le_bytes(&narrow, &mut bytes)?;
            // What the pipeline will encode for a 16 kHz bot: the s16 frame, upsampled.
            s16le_bytes_to_f32(&bytes, &mut narrow)?;
            up.process(&narrow, &mut wide)?;
            if level_dbov(&frame) > -60.0 {
                bot_talk48.push(frame);
                bot_talk16.push(wide);
            }
            bot48.push(frame);
            bot16.push(bytes);
        }
        Ok(Self {
            packets,
            talk_packets,
            bot48,
            bot16,
            bot_talk48,
            bot_talk16,
        })
    }
}

/// The far end of one call: replays its script as RTP, one packet per tick.
struct RemoteParty {
    script: Arc<Script>,
    position: usize,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// The last frame was DTX: the next packet starts a talk spurt (marker bit).
    was_silent: bool,
    /// RFC 6464 extension id (WebRTC: the negotiated one).
    audio_level_ext: u8,
}

impl RemoteParty {
    /// Call `index`'s remote party speaking `script` (each call starts at its own place in
    /// it, with its own SSRC, sequence and timestamp), its audio level under extension `ext`.
    fn new(index: usize, script: Arc<Script>, ext: u8) -> Self {
        let start = (index * 37) % script.packets.len();
        RemoteParty {
            script,
            position: start,
            ssrc: 0x2000_0000 + index as u32,
            sequence: (index as u16).wrapping_mul(31),
            timestamp: (index as u32).wrapping_mul(7_777),
            was_silent: true,
            audio_level_ext: ext,
        }
    }

    /// The packet for this tick, if the script is not in a DTX pause.
    fn next_packet(&mut self) -> Option<Bytes> {
        let entry = &self.script.packets[self.position];
        self.position = (self.position + 1) % self.script.packets.len();
        let timestamp = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(960);
        let Some((payload, level)) = entry else {
            self.was_silent = true;
            return None;
        };
        let mut header = RtpHeader::new(PAYLOAD_TYPE, self.sequence, timestamp, self.ssrc);
        header.marker = std::mem::take(&mut self.was_silent);
        self.sequence = self.sequence.wrapping_add(1);
        let level_byte = [level.to_byte()];
        let extensions = [HeaderExtension {
            id: self.audio_level_ext,
            data: &level_byte,
        }];
        let mut spec = RtpPacketSpec::new(header, payload);
        spec.extensions = &extensions;
        // The network side hands the pipeline an owned buffer per packet, as a
        // socket reader does.
        spec.to_bytes().ok()
    }
}

/// One simulated call: the pipeline, its remote party and an echo bot.
struct SimCall {
    pipeline: CallPipeline,
    remote: RemoteParty,
    bot: BotSender,
    format: BotFormat,
    mode: BotMode,
    /// Ticks run (the conversation's turns follow it).
    ticks: usize,
    /// Where the bot is in its script (the remote party's script holds it too).
    bot_position: usize,
    /// With a transport: the remote party's end of the wire (the pipeline is attached
    /// to the bot's session). `None`: packets go straight into the pipeline.
    wire_remote: Option<RtpEndpoint>,
    /// The remote party speaks from another process (`--far-end process`): this call only
    /// runs the bot's side.
    remote_elsewhere: bool,
}

impl Tickable for SimCall {
    fn tick(&mut self, now: Duration) {
        let (remote_talks, bot_talks) = self.mode.turns(self.ticks);
        self.ticks += 1;
        let packet = self.remote.next_packet();
        if let Some(packet) = packet.filter(|_| remote_talks && !self.remote_elsewhere) {
            match &self.wire_remote {
                // A full queue drops its oldest packet, counted by the session.
                Some(wire) => drop(wire.outgoing.push(packet)),
                None => self.pipeline.push_rtp(packet, now),
            }
        }
        // The remote party hears the bot: take what the wire delivered.
        if let Some(wire) = &self.wire_remote {
            while let Some(heard) = wire.incoming.pop() {
                std::hint::black_box(heard);
            }
        }
        self.pipeline.tick(now);
        // The bot reads what it heard and speaks its next frame (queued for
        // the next tick, as a bot on its own thread would).
        let script = &self.remote.script;
        let _ = match self.format {
            BotFormat::Pcm16k => {
                std::hint::black_box(self.pipeline.bot_frame_16k());
                bot_talks.then(|| self.bot.send_pcm16k(&script.bot16[self.bot_position]))
            }
            BotFormat::Pcm48k => {
                std::hint::black_box(self.pipeline.bot_frame_48k());
                bot_talks.then(|| self.bot.send_48k(&script.bot48[self.bot_position]))
            }
        };
        self.bot_position = (self.bot_position + 1) % script.bot48.len();
        // The transport would send this; reading it is enough here.
        std::hint::black_box(self.pipeline.outgoing_packet());
        while self.pipeline.poll_event().is_some() {}
    }
}

fn sim_call(
    index: usize,
    scripts: &[Arc<Script>],
    (format, mode): (BotFormat, BotMode),
    audio_level_ext: u8,
) -> Result<SimCall, LoadtestError> {
    let script = scripts[index % scripts.len()].clone();
    let start = (index * 37) % script.packets.len();
    let config = PipelineConfig {
        local_ssrc: 0x1000_0000 + index as u32,
        payload_type: PAYLOAD_TYPE,
        audio_level_ext_id: Some(audio_level_ext),
        initial_sequence_number: (index as u16).wrapping_mul(7919),
        initial_timestamp: (index as u32).wrapping_mul(104_729),
        bot_format: match format {
            BotFormat::Pcm16k => BotAudioFormat::Pcm16k,
            BotFormat::Pcm48k => BotAudioFormat::Pcm48k,
        },
        ..PipelineConfig::default()
    };
    let pipeline = CallPipeline::new(config)?;
    let bot = pipeline.bot_sender();
    Ok(SimCall {
        pipeline,
        remote: RemoteParty::new(index, script, audio_level_ext),
        bot,
        format,
        mode,
        // Calls take their turns at different moments.
        ticks: index * 37,
        bot_position: (start + SCRIPT_FRAMES / 2) % SCRIPT_FRAMES,
        wire_remote: None,
        remote_elsewhere: false,
    })
}

/// Mean CPU time of one Opus decode (of the remote parties' talk packets) and
/// one encode (of the bots' talk frames as the pipeline's encoder sees them in
/// `format`), on this thread, in microseconds: the same input as the calls.
///
/// Thread CPU time, not wall time: on a shared machine a wall clock also counts
/// the time this thread waited for a core, which would understate the limit.
fn time_codec(scripts: &[Arc<Script>], format: BotFormat) -> Result<(f64, f64), LoadtestError> {
    let mut decoder = OpusDecoder::new()?;
    let mut encoder = OpusEncoder::new(EncoderConfig::default())?;
    let mut out = SILENT_FRAME_48;
    let packets: Vec<&Vec<u8>> = scripts.iter().flat_map(|s| &s.talk_packets).collect();
    let pcm: Vec<&Frame48> = scripts
        .iter()
        .flat_map(|s| match format {
            BotFormat::Pcm16k => &s.bot_talk16,
            BotFormat::Pcm48k => &s.bot_talk48,
        })
        .collect();
    // Warm caches, then measure whole passes until each took 300 ms.
    for (frame, packet) in pcm.iter().zip(&packets).take(50) {
        decoder.decode(packet, &mut out)?;
        std::hint::black_box(encoder.encode(&frame[..])?);
    }
    let min_time = Duration::from_millis(300);
    let (mut dec_n, mut dec_t) = (0u32, Duration::ZERO);
    while dec_t < min_time {
        let clock = CpuClock::start();
        for packet in &packets {
            decoder.decode(packet, &mut out)?;
        }
        dec_t += clock.elapsed();
        dec_n += packets.len() as u32;
    }
    let (mut enc_n, mut enc_t) = (0u32, Duration::ZERO);
    while enc_t < min_time {
        let clock = CpuClock::start();
        for frame in &pcm {
            std::hint::black_box(encoder.encode(&frame[..])?);
        }
        enc_t += clock.elapsed();
        enc_n += pcm.len() as u32;
    }
    Ok((
        dec_t.as_secs_f64() * 1e6 / f64::from(dec_n.max(1)),
        enc_t.as_secs_f64() * 1e6 / f64::from(enc_n.max(1)),
    ))
}

/// This thread's CPU time, falling back to wall time where the OS lacks it.
enum CpuClock {
    Thread(Duration),
    Wall(Instant),
}

impl CpuClock {
    fn start() -> Self {
        thread_cpu_time().map_or_else(|| CpuClock::Wall(Instant::now()), CpuClock::Thread)
    }

    fn elapsed(&self) -> Duration {
        match self {
            CpuClock::Thread(t0) => {
                thread_cpu_time().map_or(Duration::ZERO, |t| t.saturating_sub(*t0))
            }
            CpuClock::Wall(t0) => t0.elapsed(),
        }
    }
}

/// The 1-minute load average (Linux), to show how busy the host was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time (user + system) of the whole process so far.
fn process_cpu_time() -> Option<Duration> {
    // SAFETY: getrusage only writes the struct we pass; zeroed is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusively borrowed rusage for the call's duration.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return None;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// Resident memory in KiB, from /proc/self/status (Linux): the whole resident set
/// (`VmRSS`) and its anonymous part (`RssAnon`: heap and stacks, without the pages of the
/// binary's code and other mapped files).
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

/// Everything one run measured.
#[derive(Debug, Clone)]
struct RunResult {
    /// Second by second, when asked for (`--plot`).
    timeline: Vec<plot::Sample>,
    calls: usize,
    seconds: f64,
    workers: usize,
    stats: SchedulerStats,
    cpu_per_call_pct: Option<f64>,
    /// CPU per call of the transport runtime's threads, and of the media workers.
    transport_cpu_per_call_pct: Option<f64>,
    media_cpu_per_call_pct: Option<f64>,
    /// With a transport: the sessions' counters summed.
    wire: Option<wire::WireTotals>,
    rss_per_call_kib: Option<f64>,
    /// The anonymous part of it: what the calls allocated, without the code pages the first
    /// calls fault in (shared with every process of the binary, bounded by its size).
    anon_rss_per_call_kib: Option<f64>,
    /// Host 1-minute load average at the end of the run.
    load_average: Option<f64>,
}

/// What carries the calls' audio in one run.
#[derive(Debug, Clone, Copy)]
struct WireSetup {
    transport: Transport,
    connect_timeout: Duration,
    /// The media workers' real-time priority, if asked for.
    realtime: Option<appmedia_media::scheduler::RealtimePriority>,
    /// Sample the run every second (`--plot`).
    timeline: bool,
    /// Workers tick each other's calls within the period.
    steal: bool,
    /// The remote parties run in a child process.
    far_end: FarEnd,
    /// Sockets on the bot's one port (`webrtc-port`).
    port_sockets: usize,
    /// The bots' turns (the far end's parties follow them).
    mode: BotMode,
}

fn run_once(
    calls: usize,
    seconds: u64,
    workers: usize,
    format: (BotFormat, BotMode),
    scripts: &[Arc<Script>],
    wire_setup: WireSetup,
) -> Result<RunResult, LoadtestError> {
    let rss_before = rss_kib();
    // The sessions first: a run whose sessions do not connect fails before any call runs.
    // The transport runtime gets as many threads as the media side has workers.
    let wire = match wire_setup.transport {
        Transport::None => None,
        transport => Some(wire::Wire::connect(
            transport,
            calls,
            workers,
            wire_setup.connect_timeout,
            (wire_setup.far_end == FarEnd::Process).then_some(wire_setup.mode),
            wire_setup.port_sockets,
        )?),
    };
    let scheduler = Scheduler::start(SchedulerConfig {
        workers,
        realtime: wire_setup.realtime,
        steal: wire_setup.steal,
        ..SchedulerConfig::default()
    })?;
    // Build every call before the clock starts: construction allocates, ticks must not.
    let mut sims = Vec::with_capacity(calls);
    for i in 0..calls {
        let ext = wire
            .as_ref()
            .and_then(|w| w.audio_level_ext_id(i))
            .unwrap_or(AUDIO_LEVEL_EXT);
        let mut sim = sim_call(i, scripts, format, ext)?;
        if let Some(wire) = &wire {
            sim.wire_remote = wire.attach(i, &mut sim.pipeline, scheduler.epoch())?;
            sim.remote_elsewhere = sim.wire_remote.is_none();
        }
        sims.push(sim);
    }
    let mut handles = Vec::with_capacity(calls);
    for sim in sims {
        handles.push(scheduler.add(sim)?);
    }
    // Let every worker adopt its calls and the jitter buffers fill (1 s), then
    // measure the steady state only.
    std::thread::sleep(Duration::from_secs(1));
    scheduler.reset_stats(Duration::from_secs(1));
    let cpu0 = process_cpu_time();
    let split0 = wire::thread_cpu_split();
    let t0 = Instant::now();
    let mut timeline = Vec::new();
    if wire_setup.timeline {
        // One sample per second (stats are read off the tick: they allocate).
        let (mut before, mut cpu_before, mut at) = (scheduler.stats(), cpu0, t0);
        for second in 1..=seconds {
            let next = t0 + Duration::from_secs(second);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let (after, cpu_after, now) = (scheduler.stats(), process_cpu_time(), Instant::now());
            timeline.push(plot::sample(
                now - t0,
                &before,
                &after,
                (cpu_before, cpu_after),
                now - at,
            ));
            (before, cpu_before, at) = (after, cpu_after, now);
        }
    } else {
        std::thread::sleep(Duration::from_secs(seconds));
    }
    let wall = t0.elapsed();
    let cpu1 = process_cpu_time();
    let split1 = wire::thread_cpu_split();
    let stats = scheduler.stats();
    let rss_after = rss_kib();
    for h in &handles {
        h.remove();
    }
    scheduler.shutdown();
    let wire = wire.map(wire::Wire::finish);
    let per_call = |a: Duration, b: Duration| {
        b.saturating_sub(a).as_secs_f64() / wall.as_secs_f64() * 100.0 / calls as f64
    };
    let cpu_per_call_pct = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(per_call(a, b)),
        _ => None,
    };
    let (transport_cpu_per_call_pct, media_cpu_per_call_pct) = match (split0, split1) {
        (Some((n0, m0, _)), Some((n1, m1, _))) => (Some(per_call(n0, n1)), Some(per_call(m0, m1))),
        _ => (None, None),
    };
    let grown = |pick: fn((u64, u64)) -> u64| {
        rss_before
            .zip(rss_after)
            .map(|(a, b)| pick(b).saturating_sub(pick(a)) as f64 / calls as f64)
    };
    let (rss_per_call_kib, anon_rss_per_call_kib) = (grown(|r| r.0), grown(|r| r.1));
    Ok(RunResult {
        timeline,
        calls,
        seconds: wall.as_secs_f64(),
        workers,
        stats,
        cpu_per_call_pct,
        transport_cpu_per_call_pct,
        media_cpu_per_call_pct,
        wire,
        rss_per_call_kib,
        anon_rss_per_call_kib,
        load_average: load_average(),
    })
}

fn report_json(
    r: &RunResult,
    decode_us: f64,
    encode_us: f64,
    (format, mode): (BotFormat, BotMode),
) -> serde_json::Value {
    let tick = r.stats.tick_time();
    let send = r.stats.send_offset();
    let wake = r.stats.wake_delay();
    let us = |d: Duration| round(d.as_secs_f64() * 1e6, 1);
    let (send_p50, send_p99, send_p999) = (
        send.quantile(0.50),
        send.quantile(0.99),
        send.quantile(0.999),
    );
    let mut priorities: Vec<String> = r
        .stats
        .workers
        .iter()
        .map(|w| w.priority.to_string())
        .collect();
    priorities.dedup();
    let limit = FRAME_DURATION.as_secs_f64() * 1e6 / (decode_us + encode_us);
    let per_core = r.calls as f64 / r.workers as f64;
    json!({
        "calls": r.calls,
        "seconds": round(r.seconds, 2),
        "ticks": r.stats.ticks(),
        "late_ticks": r.stats.late_ticks(),
        "tick_p50_us": round(tick.p50.as_secs_f64() * 1e6, 1),
        "tick_p99_us": round(tick.p99.as_secs_f64() * 1e6, 1),
        "tick_max_us": round(tick.max.as_secs_f64() * 1e6, 1),
        // When each call's packet left, from the start of its 20 ms period; the jitter a
        // far end sees from the scheduler is how much later than usual: p99 - p50 etc.
        // How late the workers began their periods: a late tick whose period began late
        // was lost to the host, not to the work.
        "wake_delay_p99_us": us(wake.quantile(0.99)),
        "wake_delay_max_us": us(wake.max()),
        "send_offset_p50_us": us(send_p50),
        "send_offset_p99_us": us(send_p99),
        "send_offset_p999_us": us(send_p999),
        "send_offset_max_us": us(send.max()),
        "send_jitter_p99_us": us(send_p99.saturating_sub(send_p50)),
        "send_jitter_p999_us": us(send_p999.saturating_sub(send_p50)),
        "worker_priority": priorities.join("; "),
        "cpu_per_call_pct": r.cpu_per_call_pct.map(|x| round(x, 3)),
        "transport": r.wire.as_ref().map_or("none", wire::WireTotals::transport_name),
        "transport_cpu_per_call_pct": r.transport_cpu_per_call_pct.map(|x| round(x, 3)),
        "media_cpu_per_call_pct": r.media_cpu_per_call_pct.map(|x| round(x, 3)),
        "wire": r.wire.as_ref().map(wire::WireTotals::to_json),
        "rss_per_call_kib": r.rss_per_call_kib.map(|x| round(x, 1)),
        "anon_rss_per_call_kib": r.anon_rss_per_call_kib.map(|x| round(x, 1)),
        "decode_us": round(decode_us, 1),
        "encode_us": round(encode_us, 1),
        "codec_limit_calls_per_core": round(limit, 1),
        // webrtc-port: the bot side's transport on the workers, per call tick, as a share of
        // one frame's decode + encode.
        "bot_transport_vs_codec": r
            .wire
            .as_ref()
            .and_then(wire::WireTotals::bot_transport_us_per_tick)
            .map(|us| round(us / (decode_us + encode_us), 3)),
        "workers": r.workers,
        "calls_per_core": round(per_core, 1),
        "pct_of_codec_limit": round(per_core / limit * 100.0, 1),
        "late_periods": r.stats.workers.iter().map(|w| w.late_periods).sum::<u64>(),
        "skipped_periods": r.stats.workers.iter().map(|w| w.skipped_periods).sum::<u64>(),
        "steals": r.stats.steals(),
        "bot_format": format.name(),
        "bot": mode.name(),
        "host_cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "host_load_avg_1m": r.load_average,
    })
}

/// The human-readable form of a report (built from the JSON, so both agree).
fn report_text(v: &serde_json::Value) -> String {
    let num = |k: &str| v[k].as_f64().map_or("n/a".to_string(), |x| format!("{x}"));
    let mut text = format!(
        "loadtest: {} calls ({}, bot {}) on {} workers for {} s\n\
         ticks {} late {} | tick p50 {} us p99 {} us max {} us | stolen ticks {}\n\
         send time after the period start p50 {} us p99 {} us p99.9 {} us max {} us \
         (jitter p99 {} us p99.9 {} us) | workers at {} priority, woken after the period \
         start p99 {} us max {} us\n\
         cpu per call {} % | rss per call {} KiB ({} KiB anonymous) | host load average {} \
         on {} cores\n\
         opus decode {} us + encode {} us CPU per frame -> codec limit {} calls/core; \
         running {} calls/core = {} % of it",
        num("calls"),
        v["bot_format"].as_str().unwrap_or("?"),
        v["bot"].as_str().unwrap_or("?"),
        num("workers"),
        num("seconds"),
        num("ticks"),
        num("late_ticks"),
        num("tick_p50_us"),
        num("tick_p99_us"),
        num("tick_max_us"),
        num("steals"),
        num("send_offset_p50_us"),
        num("send_offset_p99_us"),
        num("send_offset_p999_us"),
        num("send_offset_max_us"),
        num("send_jitter_p99_us"),
        num("send_jitter_p999_us"),
        v["worker_priority"].as_str().unwrap_or("?"),
        num("wake_delay_p99_us"),
        num("wake_delay_max_us"),
        num("cpu_per_call_pct"),
        num("rss_per_call_kib"),
        num("anon_rss_per_call_kib"),
        num("host_load_avg_1m"),
        num("host_cores"),
        num("decode_us"),
        num("encode_us"),
        num("codec_limit_calls_per_core"),
        num("calls_per_core"),
        num("pct_of_codec_limit"),
    );
    let wire = &v["wire"];
    if wire.is_object() {
        let w = |k: &str| {
            wire[k]
                .as_f64()
                .map_or("n/a".to_string(), |x| format!("{x}"))
        };
        text.push_str(&format!(
            "\ntransport {}: cpu per call {} % (media {} %) | setup {} ms | packets sent {} \
             received {} missing {} lost {} srtp rejected {} queue full {}",
            v["transport"].as_str().unwrap_or("?"),
            num("transport_cpu_per_call_pct"),
            num("media_cpu_per_call_pct"),
            w("setup_ms"),
            w("packets_sent"),
            w("packets_received"),
            w("packets_missing"),
            w("packets_lost"),
            w("srtp_rejected"),
            w("inbound_queue_full"),
        ));
        text.push_str(&format!(
            " | UDP sockets {} | bot transport per call tick {} µs ({}× the codec)",
            w("udp_sockets"),
            w("bot_transport_us_per_tick"),
            num("bot_transport_vs_codec"),
        ));
    }
    if let Some(search) = v["search"].as_array() {
        text.push_str("\nsearch (calls: late ticks):");
        for probe in search {
            text.push_str(&format!(" {}: {}", probe["calls"], probe["late_ticks"]));
        }
    }
    text
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Runs one measured run in a fresh child process (`appmedia loadtest … --json`)
/// and returns its report. A fresh process per run keeps RSS growth honest
/// (memory freed by an earlier run would otherwise be reused) and the runs
/// independent. Bounded: the child is killed if it overruns by a minute.
fn run_child(
    args: &LoadtestArgs,
    calls: usize,
    seconds: u64,
    workers: usize,
    plot: Option<&std::path::Path>,
) -> Result<serde_json::Value, LoadtestError> {
    let child_err = |what: String| LoadtestError::Child { calls, what };
    let exe = std::env::current_exe().map_err(|e| child_err(format!("no executable path: {e}")))?;
    let mut child = std::process::Command::new(exe)
        .args(["loadtest", "--json", "--bot-format", args.bot_format.name()])
        .args(["--bot", args.bot.name()])
        .args(
            plot.map(|p| vec![std::ffi::OsStr::new("--plot"), p.as_os_str()])
                .unwrap_or_default(),
        )
        .args(
            args.realtime
                .map(|r| {
                    vec![
                        "--realtime".to_owned(),
                        r.name().to_owned(),
                        "--realtime-priority".to_owned(),
                        args.realtime_priority.to_string(),
                    ]
                })
                .unwrap_or_default(),
        )
        .args([
            "--calls",
            &calls.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--workers", &workers.to_string()])
        .args(args.no_steal.then_some("--no-steal"))
        .args(["--transport", args.transport.name()])
        .args(["--far-end", args.far_end.name()])
        .args(["--port-sockets", &args.port_sockets.to_string()])
        .args(["--connect-timeout", &args.connect_timeout.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| child_err(format!("cannot start: {e}")))?;
    // Setup and codec timing take a few seconds; a minute more means it hung.
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                // Our own child, by its handle.
                let _ = child.kill();
                let _ = child.wait();
                return Err(child_err("timed out; killed".into()));
            }
            Err(e) => return Err(child_err(format!("wait failed: {e}"))),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| child_err(format!("cannot read its report: {e}")))?;
    if !out.status.success() {
        return Err(child_err(format!("exited with {}", out.status)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| child_err(format!("bad report: {e}")))
}

/// Largest passing count: gallop up from a codec-based guess, then bisect,
/// within `MAX_PROBES` child runs. Returns the count and the probes made.
fn search_max(
    args: &LoadtestArgs,
    workers: usize,
    codec_limit_per_core: f64,
) -> Result<(usize, Vec<(usize, u64)>), LoadtestError> {
    let guess = (codec_limit_per_core * workers as f64 * 0.5) as usize;
    search(args.max_calls as usize, guess, |n, made| {
        let started = Instant::now();
        if !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!(
                "loadtest: probe {} of at most {MAX_PROBES}: {n} calls for {} s...\r",
                made + 1,
                args.probe_seconds
            );
        }
        let report = run_child(args, n, args.probe_seconds, workers, None)?;
        let late = report["late_ticks"].as_u64().unwrap_or(u64::MAX);
        if !args.json {
            eprintln!(
                "loadtest: probe {} of at most {MAX_PROBES}: {n} calls -> {late} late ticks ({:.0} s)",
                made + 1,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(late)
    })
}

/// The search of [`search_max`] over `run(calls, probes made so far) -> late ticks`: gallop
/// from `guess` (doubling while passing, halving while failing) until the answer is
/// bracketed, then bisect to within 5 %. A count fails only when a repeat of its probe has
/// late ticks too: one noisy probe (a build finishing, a cron job) would otherwise halve the
/// answer.
fn search<E>(
    cap: usize,
    guess: usize,
    mut run: impl FnMut(usize, usize) -> Result<u64, E>,
) -> Result<(usize, Vec<(usize, u64)>), E> {
    let mut probes: Vec<(usize, u64)> = Vec::new();
    let mut passes = |n: usize, probes: &mut Vec<(usize, u64)>| -> Result<bool, E> {
        let late = run(n, probes.len())?;
        probes.push((n, late));
        if late == 0 || probes.len() >= MAX_PROBES {
            return Ok(late == 0);
        }
        let again = run(n, probes.len())?;
        probes.push((n, again));
        Ok(again == 0)
    };
    // `lo` is the largest count seen passing (0: none yet), `hi` the smallest failing.
    let (mut lo, mut hi) = (0usize, cap + 1);
    let mut n = guess.clamp(1, cap);
    while probes.len() < MAX_PROBES {
        if passes(n, &mut probes)? {
            lo = n;
            if hi <= cap || n >= cap {
                break;
            }
            n = (n * 2).min(cap);
        } else {
            hi = n;
            if lo > 0 || n <= 1 {
                break;
            }
            n = (n / 2).max(1);
        }
    }
    while probes.len() < MAX_PROBES && hi <= cap && hi - lo > (lo / 20).max(1) {
        let mid = lo + (hi - lo) / 2;
        if passes(mid, &mut probes)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((lo, probes))
}

/// Runs `appmedia loadtest` and prints its report.
pub fn run(args: &LoadtestArgs) -> Result<(), LoadtestError> {
    // A plot that cannot be written fails before the run, not after it.
    if let Some(path) = &args.plot {
        crate::plot::check_path(path)?;
    }
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |w| w as usize,
    );
    if args.serve_far_end {
        return far_end::serve(args.bot, Duration::from_secs(args.connect_timeout));
    }
    if args.far_end == FarEnd::Process
        && !matches!(args.transport, Transport::Webrtc | Transport::WebrtcPort)
    {
        return Err(LoadtestError::Transport(
            "--far-end process needs --transport webrtc or webrtc-port".into(),
        ));
    }
    let scripts: Vec<Arc<Script>> = (0..VOICES)
        .map(|v| Script::new(v).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let (decode_us, encode_us) = time_codec(&scripts, args.bot_format)?;
    let report = match args.calls {
        CallCount::Fixed(n) => {
            let wire_setup = WireSetup {
                transport: args.transport,
                connect_timeout: Duration::from_secs(args.connect_timeout),
                realtime: args.realtime.map(|r| r.priority(args.realtime_priority)),
                timeline: args.plot.is_some(),
                steal: !args.no_steal,
                far_end: args.far_end,
                port_sockets: args.port_sockets as usize,
                mode: args.bot,
            };
            let result = run_once(
                n,
                args.seconds,
                workers,
                (args.bot_format, args.bot),
                &scripts,
                wire_setup,
            )?;
            if let Some(path) = &args.plot {
                let title = format!(
                    "appmedia loadtest: {n} calls (bot {}, transport {}) on {workers} workers",
                    args.bot.name(),
                    result
                        .wire
                        .as_ref()
                        .map_or("none", wire::WireTotals::transport_name),
                );
                plot::draw(path, &title, &result.timeline)?;
            }
            report_json(&result, decode_us, encode_us, (args.bot_format, args.bot))
        }
        CallCount::Max => {
            drop(scripts);
            let codec_limit = FRAME_DURATION.as_secs_f64() * 1e6 / (decode_us + encode_us);
            let (best, probes) = search_max(args, workers, codec_limit)?;
            let mut report = run_child(
                args,
                best.max(1),
                args.seconds,
                workers,
                args.plot.as_deref(),
            )?;
            report["search"] = probes
                .iter()
                .map(|(calls, late)| json!({"calls": calls, "late_ticks": late}))
                .collect();
            report
        }
    };
    if args.json {
        println!("{report}");
    } else {
        println!("{}", report_text(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine that carries `capacity` calls, with noisy probes at the counts in `noisy`
    /// (their first run has late ticks).
    fn machine(
        capacity: usize,
        noisy: &[usize],
    ) -> impl FnMut(usize, usize) -> Result<u64, ()> + use<'_> {
        let mut seen = std::collections::HashSet::new();
        move |n, _| {
            let first = seen.insert(n);
            Ok(if n > capacity || (first && noisy.contains(&n)) {
                3
            } else {
                0
            })
        }
    }

    #[test]
    fn the_search_finds_the_capacity_within_five_percent() {
        for (capacity, guess) in [(63, 30), (406, 30), (5, 40), (1000, 1000)] {
            let (found, probes) = search(1000, guess, machine(capacity, &[])).unwrap();
            assert!(probes.len() <= MAX_PROBES, "{probes:?}");
            assert!(found <= capacity, "{capacity}: {found} {probes:?}");
            assert!(
                found as f64 >= capacity as f64 * 0.95 - 1.0,
                "{capacity}: {found} {probes:?}"
            );
        }
    }

    #[test]
    fn one_noisy_probe_does_not_decide_the_search() {
        // The first probe at 30 and at 60 are late by accident (a build was finishing).
        let (found, probes) = search(1000, 30, machine(406, &[30, 60])).unwrap();
        assert!(found >= 385, "{found} {probes:?}");
        // Each noisy count was probed twice, the second time clean.
        assert_eq!(&probes[..2], [(30, 3), (30, 0)]);
        // A count that is really over capacity fails twice.
        let (found, probes) = search(1000, 30, machine(20, &[])).unwrap();
        assert!((18..=20).contains(&found), "{found} {probes:?}");
        assert!(
            probes
                .windows(2)
                .any(|w| w[0] == (30, 3) && w[1] == (30, 3))
        );
    }

    #[test]
    fn call_count_parses_numbers_and_max() {
        assert_eq!("12".parse::<CallCount>(), Ok(CallCount::Fixed(12)));
        assert_eq!("MAX".parse::<CallCount>(), Ok(CallCount::Max));
        assert!("0".parse::<CallCount>().is_err());
        assert!("-3".parse::<CallCount>().is_err());
        assert!("lots".parse::<CallCount>().unwrap_err().contains("lots"));
        assert!(
            "100001"
                .parse::<CallCount>()
                .unwrap_err()
                .contains("100001")
        );
        assert_eq!(CallCount::Max.to_string(), "max");
    }

    #[test]
    fn remote_party_paces_sequence_and_timestamps() {
        let script = Arc::new(Script::new(0).unwrap());
        let dtx = script.packets.iter().filter(|p| p.is_none()).count();
        assert!(dtx > 0, "the script must include DTX pauses");
        let mut remote = RemoteParty {
            script: script.clone(),
            position: 0,
            ssrc: 7,
            sequence: 65_530,
            timestamp: u32::MAX - 960,
            was_silent: true,
            audio_level_ext: AUDIO_LEVEL_EXT,
        };
        let mut sent = Vec::new();
        for tick in 0..SCRIPT_FRAMES as u32 {
            if let Some(bytes) = remote.next_packet() {
                let p = appmedia_media::rtp::RtpPacket::parse(bytes).unwrap();
                sent.push((tick, p));
            }
        }
        assert_eq!(sent.len(), SCRIPT_FRAMES - dtx);
        // Sequence numbers are consecutive (wrapping); timestamps follow the tick.
        for w in sent.windows(2) {
            assert_eq!(
                w[1].1.sequence_number(),
                w[0].1.sequence_number().wrapping_add(1)
            );
            let dt = w[1].1.timestamp().wrapping_sub(w[0].1.timestamp());
            assert_eq!(dt, 960 * (w[1].0 - w[0].0));
            // The marker bit flags the first packet after a pause.
            assert_eq!(w[1].1.marker(), w[1].0 - w[0].0 > 1);
        }
        assert!(sent[0].1.audio_level(AUDIO_LEVEL_EXT).is_some());
        // The bot's script: every frame in both formats, pauses left out of
        // the encoder timing input.
        assert_eq!(script.bot48.len(), SCRIPT_FRAMES);
        assert_eq!(script.bot16.len(), SCRIPT_FRAMES);
        assert_eq!(script.bot_talk16.len(), script.bot_talk48.len());
        assert!(script.bot_talk48.len() < SCRIPT_FRAMES * 9 / 10);
        assert!(script.bot_talk48.len() > SCRIPT_FRAMES / 2);
    }

    #[test]
    fn a_short_run_ticks_every_call_and_reports_all_fields() {
        let scripts = vec![Arc::new(Script::new(1).unwrap())];
        let in_process = WireSetup {
            transport: Transport::None,
            connect_timeout: Duration::from_secs(1),
            realtime: None,
            timeline: true,
            steal: true,
            far_end: FarEnd::InProcess,
            port_sockets: 1,
            mode: BotMode::Listen,
        };
        let mode = (BotFormat::Pcm16k, BotMode::Listen);
        let r = run_once(3, 1, 1, mode, &scripts, in_process).unwrap();
        assert!(r.wire.is_none());
        assert_eq!(r.timeline.len(), 1, "one sample per second");
        // Nominally 3 calls × 50 ticks; only "some" is asserted, since a debug
        // build on a busy machine may manage far fewer (speed is for benches).
        assert!(r.stats.ticks() > 0, "no call was ticked");
        assert_eq!(r.calls, 3);
        let (dec, enc) = (100.0, 200.0);
        let mut v = report_json(&r, dec, enc, mode);
        for key in [
            "calls",
            "seconds",
            "ticks",
            "late_ticks",
            "tick_p50_us",
            "tick_p99_us",
            "tick_max_us",
            "cpu_per_call_pct",
            "rss_per_call_kib",
            "anon_rss_per_call_kib",
            "decode_us",
            "encode_us",
            "codec_limit_calls_per_core",
            "send_offset_p99_us",
            "send_jitter_p999_us",
            "wake_delay_p99_us",
            "wake_delay_max_us",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["codec_limit_calls_per_core"], json!(66.7));
        v["search"] = json!([{"calls": 3, "late_ticks": 0}]);
        let text = report_text(&v);
        assert!(
            text.contains("loadtest: 3 calls (pcm16k, bot listen)"),
            "{text}"
        );
        assert!(text.contains("search (calls: late ticks): 3: 0"), "{text}");
    }

    #[test]
    fn a_conversation_takes_turns_and_a_listener_never_talks() {
        let cycle: Vec<(bool, bool)> = (0..CONVERSATION_CYCLE)
            .map(|t| BotMode::Conversation.turns(t))
            .collect();
        let remote = cycle.iter().filter(|t| t.0).count();
        let bot = cycle.iter().filter(|t| t.1).count();
        assert_eq!((remote, bot), (100, 100), "40 % each");
        assert!(cycle.iter().all(|&(r, b)| !(r && b)), "never both at once");
        assert!((0..1000).all(|t| BotMode::Listen.turns(t) == (true, false)));
        assert!((0..1000).all(|t| BotMode::Talk.turns(t) == (true, true)));
    }

    #[test]
    fn codec_timing_is_positive() {
        let scripts = vec![Arc::new(Script::new(2).unwrap())];
        let (d, e) = time_codec(&scripts, BotFormat::Pcm16k).unwrap();
        assert!(d > 0.0 && e > 0.0);
    }
}
