//! `appmedia lab`: plain-RTP lab mode. Opus RTP in and out over bare UDP (no ICE, no
//! DTLS: explicit opt-in, for benchmarks and standard RTP tools), through the full media
//! core: jitter buffer, Opus decode with PLC/FEC, mix, encode.
//!
//! ```text
//! appmedia lab --listen 127.0.0.1:5004 --send-to 127.0.0.1:5006 --play in.wav --record out.wav --seconds 10
//! ```

use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use appmedia_media::frame::{
    FRAME_DURATION, Frame16, Frame48, SAMPLES_PER_FRAME_16K, SAMPLES_PER_FRAME_48K,
};
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia_media::resample::Upsampler;
use appmedia_transport::{PlainRtpConfig, PlainRtpSession, PlainRtpStats};
use clap::Args;
use serde_json::json;

/// Plain RTP (no ICE/DTLS/SRTP) through the full media core.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Receive Opus RTP on this address.
    #[arg(long)]
    listen: SocketAddr,
    /// Send Opus RTP to this address.
    #[arg(long)]
    send_to: SocketAddr,
    /// RTP payload type for Opus (both directions).
    #[arg(long, default_value_t = 111, value_parser = clap::value_parser!(u8).range(96..=127))]
    payload_type: u8,
    /// WAV to send (mono or stereo, 16 or 48 kHz, 16-bit or float); silence without it.
    #[arg(long)]
    play: Option<PathBuf>,
    /// WAV to write what was received (48 kHz mono 16-bit, after the jitter buffer and mix).
    #[arg(long)]
    record: Option<PathBuf>,
    /// How long to run.
    #[arg(long)]
    seconds: f64,
    /// Print the statistics as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, thiserror::Error)]
enum LabError {
    #[error("--seconds must be positive and finite, got {0}")]
    Seconds(f64),
    #[error("cannot read {path}: {source}")]
    ReadWav { path: PathBuf, source: hound::Error },
    #[error("{path}: {what} is not supported (need mono or stereo at 16000 or 48000 Hz)")]
    WavFormat { path: PathBuf, what: String },
    #[error("cannot write {path}: {source}")]
    WriteWav { path: PathBuf, source: hound::Error },
    #[error("media pipeline: {0}")]
    Pipeline(String),
    #[error("transport: {0}")]
    Transport(#[from] appmedia_transport::TransportError),
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
}

pub fn run(args: LabArgs) -> ExitCode {
    match lab(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appmedia lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lab(args: &LabArgs) -> Result<(), LabError> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return Err(LabError::Seconds(args.seconds));
    }
    let play = match &args.play {
        Some(path) => read_wav_48k(path)?,
        None => Vec::new(),
    };
    // Created before the run so a bad path fails before any packet is sent.
    let mut recorder = match &args.record {
        Some(path) => Some(create_wav(path)?),
        None => None,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(LabError::Runtime)?;
    let mut config = PlainRtpConfig::new(args.listen, args.send_to);
    config.payload_type = args.payload_type;
    let session = runtime.block_on(PlainRtpSession::bind(config))?;

    let mut pipeline = CallPipeline::new(PipelineConfig {
        payload_type: args.payload_type,
        bot_format: BotAudioFormat::Pcm48k,
        // The far end of a lab run has not negotiated RFC 6464.
        audio_level_ext_id: None,
        initial_sequence_number: rand::random(),
        initial_timestamp: rand::random(),
        local_ssrc: rand::random(),
        ..PipelineConfig::default()
    })
    .map_err(|e| LabError::Pipeline(e.to_string()))?;
    let epoch = Instant::now();
    session.attach_pipeline(&mut pipeline, epoch);
    let bot = pipeline.bot_sender();

    // The media worker: a plain thread on absolute 20 ms deadlines; the async runtime
    // only moves packets.
    let ticks = (args.seconds * 50.0).ceil() as u64;
    let worker = thread::spawn(move || {
        let mut recorded = Vec::with_capacity(if recorder.is_some() {
            ticks as usize * SAMPLES_PER_FRAME_48K
        } else {
            0
        });
        for k in 0..ticks {
            let now = FRAME_DURATION * k as u32;
            if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let mut frame: Frame48 = [0.0; SAMPLES_PER_FRAME_48K];
            let at = k as usize * SAMPLES_PER_FRAME_48K;
            if at < play.len() {
                let end = (at + SAMPLES_PER_FRAME_48K).min(play.len());
                frame[..end - at].copy_from_slice(&play[at..end]);
            }
            // The pipeline's send queue is drop-oldest; pacing one frame per tick keeps it
            // from ever filling.
            let _ = bot.send_48k(&frame);
            pipeline.tick(now);
            if recorder.is_some() {
                recorded.extend_from_slice(pipeline.bot_frame_48k());
            }
        }
        (pipeline, recorded, recorder.take())
    });
    let (pipeline, recorded, recorder) = match worker.join() {
        Ok(done) => done,
        Err(_) => return Err(LabError::Pipeline("media worker panicked".into())),
    };
    if let (Some(mut writer), Some(path)) = (recorder, &args.record) {
        for x in recorded {
            writer
                .write_sample((x.clamp(-1.0, 1.0) * 32767.0) as i16)
                .map_err(|source| LabError::WriteWav {
                    path: path.clone(),
                    source,
                })?;
        }
        writer.finalize().map_err(|source| LabError::WriteWav {
            path: path.clone(),
            source,
        })?;
    }
    let transport = session.stats();
    drop(session);
    runtime.shutdown_timeout(Duration::from_secs(1));
    report(args, &transport, &pipeline);
    Ok(())
}

fn report(args: &LabArgs, transport: &PlainRtpStats, pipeline: &CallPipeline) {
    let stats = pipeline.stats();
    let streams: Vec<_> = pipeline
        .stream_stats()
        .map(|s| {
            json!({
                "ssrc": s.ssrc,
                "received": s.jitter.received,
                "lost": s.jitter.lost,
                "late": s.jitter.late,
                "duplicate": s.jitter.duplicate,
                "reordered": s.jitter.reordered,
                "concealed": s.jitter.concealed,
                "fecRecovered": s.jitter.fec_recovered,
                "decodeErrors": s.decode_errors,
            })
        })
        .collect();
    let out = json!({
        "seconds": args.seconds,
        "transport": transport,
        "pipeline": {
            "ticks": stats.ticks,
            "packetsSent": stats.packets_sent,
            "unknownPayloadType": stats.unknown_payload_type,
            "encodeErrors": stats.encode_errors,
            "inboundQueueEvicted": stats.inbound_queue.evicted,
            "packetOutboxEvicted": stats.packet_outbox.evicted,
        },
        "streams": streams,
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "lab: {:.1} s, sent {} packets, received {} RTP ({} wrong payload type, {} garbage, {} RTCP)",
            args.seconds,
            transport.packets_sent,
            transport.rtp_received,
            transport.wrong_payload_type,
            transport.garbage,
            transport.rtcp_received
        );
        for s in pipeline.stream_stats() {
            println!(
                "  stream ssrc {:#010x}: received {}, lost {}, late {}, concealed {}, FEC recovered {}",
                s.ssrc,
                s.jitter.received,
                s.jitter.lost,
                s.jitter.late,
                s.jitter.concealed,
                s.jitter.fec_recovered
            );
        }
    }
}

/// Reads a WAV as mono f32 at 48 kHz (16 kHz is upsampled with the media core's resampler).
fn read_wav_48k(path: &Path) -> Result<Vec<f32>, LabError> {
    let reader = hound::WavReader::open(path).map_err(|source| LabError::ReadWav {
        path: path.to_owned(),
        source,
    })?;
    let spec = reader.spec();
    let bad = |what: String| LabError::WavFormat {
        path: path.to_owned(),
        what,
    };
    if !(1..=2).contains(&spec.channels) {
        return Err(bad(format!("{} channels", spec.channels)));
    }
    let read_err = |source| LabError::ReadWav {
        path: path.to_owned(),
        source,
    };
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => reader
            .into_samples::<i16>()
            .map(|s| s.map(|v| f32::from(v) / 32768.0))
            .collect::<Result<_, _>>()
            .map_err(read_err)?,
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(read_err)?,
        (format, bits) => return Err(bad(format!("{bits}-bit {format:?}"))),
    };
    let mono: Vec<f32> = interleaved
        .chunks(spec.channels as usize)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    match spec.sample_rate {
        48_000 => Ok(mono),
        16_000 => {
            let mut up = Upsampler::new().map_err(|e| LabError::Pipeline(e.to_string()))?;
            let mut out = Vec::with_capacity(mono.len() * 3);
            let mut frame16: Frame16 = [0.0; SAMPLES_PER_FRAME_16K];
            let mut frame48: Frame48 = [0.0; SAMPLES_PER_FRAME_48K];
            for chunk in mono.chunks(SAMPLES_PER_FRAME_16K) {
                frame16.fill(0.0);
                frame16[..chunk.len()].copy_from_slice(chunk);
                up.process(&frame16, &mut frame48)
                    .map_err(|e| LabError::Pipeline(e.to_string()))?;
                out.extend_from_slice(&frame48);
            }
            Ok(out)
        }
        rate => Err(bad(format!("{rate} Hz"))),
    }
}

fn create_wav(path: &Path) -> Result<hound::WavWriter<BufWriter<File>>, LabError> {
    hound::WavWriter::create(
        path,
        hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )
    .map_err(|source| LabError::WriteWav {
        path: path.to_owned(),
        source,
    })
}
