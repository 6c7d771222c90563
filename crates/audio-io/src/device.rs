//! Live audio devices through cpal: a microphone into the call, the call to the speakers.
//!
//! Each direction has two ends. The cpal callback end ([`Speakers`], [`Microphone`] own the
//! stream) touches only a wait-free SPSC ring (rtrb) of mono `f32` at the device's rate, plus
//! atomic counters: no allocation, no lock, no syscall. The tick end ([`SpeakerFeed`],
//! [`MicSource`]) trades 20 ms frames of mono 48 kHz `f32` with that ring, through a rubato
//! polynomial resampler whose ratio follows the ring's fill level: the device's clock and the
//! call's 20 ms tick never run at exactly the same speed, so a fixed ratio would slowly empty
//! or overflow the ring. The controller holds the fill near a target; a fill far above the
//! band (a stalled tick or device) is cut back at once by dropping samples, and an empty ring
//! is bridged with silence — each counted.
//!
//! [`list_devices`] names what the host offers; `open` takes one of those names or `None` for
//! the system default. No such device, or one that cannot be opened, is a [`DeviceError`]
//! before any audio flows.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Adjustable, Async, FixedAsync, PolynomialDegree, Resampler};

use crate::frame::{CORE_FRAME_SAMPLES, CORE_SAMPLE_RATE};

/// A device the host offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to open it by (for ALSA, the PCM name, e.g. `default` or `hw:CARD=0,DEV=0`).
    pub name: String,
    /// Human-readable description.
    pub description: String,
    /// The host says it can capture.
    pub input: bool,
    /// The host says it can play.
    pub output: bool,
}

/// Capture or playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Microphone.
    Input,
    /// Speakers.
    Output,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// Why a device could not be listed, found, or opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The audio host (ALSA) failed to enumerate devices.
    #[error("cannot list audio devices: {0}")]
    Host(String),
    /// No device of that name.
    #[error("no {direction} audio device named {name:?}; available: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NotFound {
        /// The name asked for.
        name: String,
        /// Input or output.
        direction: Direction,
        /// The names that exist.
        available: Vec<String>,
    },
    /// The host has no usable default device for that direction.
    #[error(
        "no default {direction} audio device ({reason}); is there a sound card? `appmedia devices` lists what exists"
    )]
    NoDefault {
        /// Input or output.
        direction: Direction,
        /// What the host said.
        reason: String,
    },
    /// The device offers no format this crate can use.
    #[error("{direction} device {device:?} offers no usable format: {reason}")]
    NoUsableFormat {
        /// The device.
        device: String,
        /// Input or output.
        direction: Direction,
        /// What was wrong.
        reason: String,
    },
    /// The device exists but its stream could not be built or started.
    #[error("cannot open {direction} device {device:?}: {reason}")]
    Open {
        /// The device.
        device: String,
        /// Input or output.
        direction: Direction,
        /// cpal's error.
        reason: String,
    },
    /// Invalid settings.
    #[error("invalid device setting: {0}")]
    InvalidSetting(String),
}

/// Lists the host's devices.
pub fn list_devices() -> Result<Vec<DeviceInfo>, DeviceError> {
    let host = cpal::default_host();
    let devices = host
        .devices()
        .map_err(|e| DeviceError::Host(e.to_string()))?;
    Ok(devices
        .map(|d| {
            let name = device_name(&d);
            let description = d
                .description()
                .map(|desc| desc.name().to_string())
                .unwrap_or_else(|_| name.clone());
            DeviceInfo {
                description,
                input: d.supports_input(),
                output: d.supports_output(),
                name,
            }
        })
        .collect())
}

/// The name a device is opened by: its id without the host prefix (for ALSA, the PCM name).
fn device_name(d: &cpal::Device) -> String {
    d.id()
        .map(|id| id.id().to_string())
        .unwrap_or_else(|_| d.to_string())
}

fn find_device(name: Option<&str>, direction: Direction) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    let Some(name) = name else {
        let dev = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return dev.ok_or(DeviceError::NoDefault {
            direction,
            reason: "the host reports none".into(),
        });
    };
    let devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|e| DeviceError::Host(e.to_string()))?
        .collect();
    if let Some(d) = devices.iter().find(|d| device_name(d) == name) {
        return Ok(d.clone());
    }
    // Also accept the description's name, what desktop mixers show.
    if let Some(d) = devices
        .iter()
        .find(|d| d.description().is_ok_and(|desc| desc.name() == name))
    {
        return Ok(d.clone());
    }
    Err(DeviceError::NotFound {
        name: name.to_string(),
        direction,
        available: devices.iter().map(device_name).collect(),
    })
}

/// The stream format chosen for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    /// Device sample rate.
    pub sample_rate: u32,
    /// Device channels (the call is mono: up-mixed for playback, down-mixed for capture).
    pub channels: u16,
    /// Device sample format.
    pub sample_format: SampleFormat,
}

/// Picks the format: 48 kHz when offered (no rate conversion beyond drift), `f32` or `i16`,
/// mono for capture and stereo (or the fewest channels) for playback.
fn choose_format(device: &cpal::Device, direction: Direction) -> Result<StreamFormat, DeviceError> {
    let name = device_name(device);
    let err = |reason: String| DeviceError::NoUsableFormat {
        device: name.clone(),
        direction,
        reason,
    };
    let ranges: Vec<cpal::SupportedStreamConfigRange> = match direction {
        Direction::Input => device.supported_input_configs().map(|r| r.collect()),
        Direction::Output => device.supported_output_configs().map(|r| r.collect()),
    }
    .map_err(|e| open_error(&name, direction, &e))?;
    let preferred_channels = match direction {
        Direction::Input => 1,
        Direction::Output => 2,
    };
    let mut best: Option<(u32, StreamFormat)> = None;
    for range in &ranges {
        let format_score = match range.sample_format() {
            SampleFormat::F32 => 3,
            SampleFormat::I16 => 2,
            SampleFormat::I32 | SampleFormat::U16 | SampleFormat::U8 | SampleFormat::I8 => 1,
            _ => continue,
        };
        if range.channels() == 0 {
            continue;
        }
        let rate = [CORE_SAMPLE_RATE, 44_100, 16_000]
            .into_iter()
            .find(|r| (range.min_sample_rate()..=range.max_sample_rate()).contains(r))
            .unwrap_or(range.max_sample_rate());
        if rate < 8_000 {
            continue;
        }
        let rate_score = if rate == CORE_SAMPLE_RATE { 8 } else { 0 };
        let channel_score = if range.channels() == preferred_channels {
            4
        } else if range.channels() <= 2 {
            2
        } else {
            0
        };
        let score = rate_score + channel_score + format_score;
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((
                score,
                StreamFormat {
                    sample_rate: rate,
                    channels: range.channels(),
                    sample_format: range.sample_format(),
                },
            ));
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| {
        err(format!(
            "offered {} configurations, none in f32/i16/i32/u16/u8/i8 at ≥ 8 kHz",
            ranges.len()
        ))
    })
}

fn open_error(device: &str, direction: Direction, e: &dyn std::fmt::Display) -> DeviceError {
    DeviceError::Open {
        device: device.to_string(),
        direction,
        reason: e.to_string(),
    }
}

/// On a machine without a sound card the host still names a default device, which then fails
/// to open; say so in those words rather than with the host's generic error.
fn default_device_error(
    e: DeviceError,
    config: &DeviceConfig,
    direction: Direction,
) -> DeviceError {
    match (config.name.as_deref(), e) {
        (None, DeviceError::Open { reason, .. } | DeviceError::NoUsableFormat { reason, .. }) => {
            DeviceError::NoDefault { direction, reason }
        }
        (_, e) => e,
    }
}

/// Settings for opening a device.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Device name from [`list_devices`]; `None` for the default device.
    pub name: Option<String>,
    /// Fill level the drift controller holds the ring at: the added latency.
    pub target_latency: Duration,
}

impl DeviceConfig {
    /// The default device with 60 ms of buffering.
    pub fn new(name: Option<&str>) -> Self {
        Self {
            name: name.map(str::to_string),
            target_latency: Duration::from_millis(60),
        }
    }
}

/// Counters shared by the callback and the tick side (atomics only).
#[derive(Debug, Default)]
struct Counters {
    callbacks: AtomicU64,
    device_samples: AtomicU64,
    underrun_samples: AtomicU64,
    overrun_samples: AtomicU64,
    dropped_for_drift: AtomicU64,
    stream_errors: AtomicU64,
}

/// What happened on a device stream so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Callbacks cpal made.
    pub callbacks: u64,
    /// Mono samples that went through the device.
    pub device_samples: u64,
    /// Samples bridged with silence because the ring was empty.
    pub underrun_samples: u64,
    /// Samples lost because the ring was full.
    pub overrun_samples: u64,
    /// Samples dropped to bring an over-full ring back to its target.
    pub dropped_for_drift: u64,
    /// Errors cpal reported on the stream.
    pub stream_errors: u64,
}

impl Counters {
    fn snapshot(&self) -> DeviceCounters {
        DeviceCounters {
            callbacks: self.callbacks.load(Ordering::Relaxed),
            device_samples: self.device_samples.load(Ordering::Relaxed),
            underrun_samples: self.underrun_samples.load(Ordering::Relaxed),
            overrun_samples: self.overrun_samples.load(Ordering::Relaxed),
            dropped_for_drift: self.dropped_for_drift.load(Ordering::Relaxed),
            stream_errors: self.stream_errors.load(Ordering::Relaxed),
        }
    }
}

/// Proportional control of the resampling ratio from the ring's fill level.
///
/// The fill is smoothed (the callback drains in bursts of its period, so the raw level saws),
/// then the ratio moves by `GAIN` × relative error, capped at ±`MAX_ADJUST`: far above any real
/// clock drift (±100 ppm typical), far below anything audible as pitch.
#[derive(Debug, Clone)]
pub struct DriftControl {
    target: f64,
    smoothed: f64,
}

impl DriftControl {
    const GAIN: f64 = 0.02;
    const MAX_ADJUST: f64 = 0.005;
    const SMOOTHING: f64 = 0.05;

    /// Holds the fill at `target` samples.
    pub fn new(target: usize) -> Self {
        Self {
            target: target.max(1) as f64,
            smoothed: target as f64,
        }
    }

    /// Feeds the current fill; returns the relative ratio (1.0 = nominal). Above 1 produces
    /// more output per input; the caller maps that to its direction.
    pub fn update(&mut self, fill: usize) -> f64 {
        self.smoothed += (fill as f64 - self.smoothed) * Self::SMOOTHING;
        let error = (self.smoothed - self.target) / self.target;
        1.0 - (error * Self::GAIN).clamp(-Self::MAX_ADJUST, Self::MAX_ADJUST)
    }

    /// The target fill in samples.
    pub fn target(&self) -> usize {
        self.target as usize
    }

    /// Forgets the history (after the fill was reset by dropping or priming).
    pub fn reset(&mut self, fill: usize) {
        self.smoothed = fill as f64;
    }
}

/// What opening a device in either direction starts with: the device, the format it will run
/// in, and the ring (sized for the target latency) between its callback and the tick.
struct Opening {
    device: cpal::Device,
    name: String,
    format: StreamFormat,
    target: usize,
    producer: rtrb::Producer<f32>,
    consumer: rtrb::Consumer<f32>,
    counters: Arc<Counters>,
}

impl Opening {
    fn new(config: &DeviceConfig, direction: Direction) -> Result<Opening, DeviceError> {
        if config.target_latency.is_zero() {
            return Err(DeviceError::InvalidSetting("target_latency = 0".into()));
        }
        let device = find_device(config.name.as_deref(), direction)?;
        let name = device_name(&device);
        let format = choose_format(&device, direction)?;
        let target = target_samples(format.sample_rate, config.target_latency);
        let (producer, consumer) = rtrb::RingBuffer::new(ring_capacity(target));
        Ok(Opening {
            device,
            name,
            format,
            target,
            producer,
            consumer,
            counters: Arc::new(Counters::default()),
        })
    }
}

fn ring_capacity(target: usize) -> usize {
    // Room for four targets: the band above the target plus a stalled tick's worth.
    (target * 4).max(4 * CORE_FRAME_SAMPLES)
}

fn target_samples(rate: u32, latency: Duration) -> usize {
    ((f64::from(rate) * latency.as_secs_f64()) as usize).max(CORE_FRAME_SAMPLES / 2)
}

/// An open device stream and what the host says of it; dropping it stops the stream.
/// [`Speakers`] and [`Microphone`] are its two directions.
pub struct DeviceStream<D> {
    _stream: cpal::Stream,
    format: StreamFormat,
    device: String,
    counters: Arc<Counters>,
    _direction: PhantomData<D>,
}

/// Marks a [`DeviceStream`] that plays the call (an output device).
pub enum Playback {}
/// Marks a [`DeviceStream`] that captures into the call (an input device).
pub enum Capture {}

/// The call's audio playing on an output device. Dropping it stops the stream.
pub type Speakers = DeviceStream<Playback>;
/// A microphone feeding the call. Dropping it stops the stream.
pub type Microphone = DeviceStream<Capture>;

impl<D> DeviceStream<D> {
    /// Opens the device `config` names for `direction` and starts the stream `build` makes
    /// from it; `build` also returns the tick's end of the ring.
    fn open_with<Tick>(
        config: &DeviceConfig,
        direction: Direction,
        build: impl FnOnce(Opening) -> Result<(cpal::Stream, Tick), DeviceError>,
    ) -> Result<(Self, Tick), DeviceError> {
        let open = || {
            let opening = Opening::new(config, direction)?;
            let (name, format, counters) = (
                opening.name.clone(),
                opening.format,
                Arc::clone(&opening.counters),
            );
            let (stream, tick) = build(opening)?;
            stream
                .play()
                .map_err(|e| open_error(&name, direction, &e))?;
            Ok((
                DeviceStream {
                    _stream: stream,
                    format,
                    device: name,
                    counters,
                    _direction: PhantomData,
                },
                tick,
            ))
        };
        open().map_err(|e| default_device_error(e, config, direction))
    }

    /// The format the device runs in.
    pub fn format(&self) -> StreamFormat {
        self.format
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Counters.
    pub fn counters(&self) -> DeviceCounters {
        self.counters.snapshot()
    }
}

/// The tick's end of [`Speakers`]: one 48 kHz frame per tick in.
pub struct SpeakerFeed {
    producer: rtrb::Producer<f32>,
    resampler: Async<f32>,
    nominal_ratio: f64,
    out: Vec<f32>,
    drift: DriftControl,
    counters: Arc<Counters>,
}

impl DeviceStream<Playback> {
    /// Opens the output device and starts its stream (playing silence until frames come).
    pub fn open(config: &DeviceConfig) -> Result<(Speakers, SpeakerFeed), DeviceError> {
        Self::open_with(config, Direction::Output, |o| {
            let stream = build_output(
                &o.device,
                &o.name,
                o.format,
                o.consumer,
                o.target,
                Arc::clone(&o.counters),
            )?;
            let feed = SpeakerFeed::new(o.producer, o.format.sample_rate, o.target, o.counters)
                .map_err(|e| open_error(&o.name, Direction::Output, &e))?;
            Ok((stream, feed))
        })
    }
}

/// A mono resampler between the core's 48 kHz frames and the device rate whose ratio the
/// drift controller may move by up to 10 % either way; `fixed` is the side that is one
/// core frame long.
fn drift_resampler(
    nominal_ratio: f64,
    fixed: FixedAsync,
) -> Result<Async<f32>, rubato::ResamplerConstructionError> {
    Async::<f32>::new_poly(
        nominal_ratio,
        1.1,
        PolynomialDegree::Cubic,
        CORE_FRAME_SAMPLES,
        1,
        fixed,
    )
}

impl SpeakerFeed {
    fn new(
        producer: rtrb::Producer<f32>,
        device_rate: u32,
        target: usize,
        counters: Arc<Counters>,
    ) -> Result<Self, rubato::ResamplerConstructionError> {
        let nominal_ratio = f64::from(device_rate) / f64::from(CORE_SAMPLE_RATE);
        let resampler = drift_resampler(nominal_ratio, FixedAsync::Input)?;
        let out = vec![0.0; resampler.output_frames_max()];
        Ok(SpeakerFeed {
            producer,
            resampler,
            nominal_ratio,
            out,
            drift: DriftControl::new(target),
            counters,
        })
    }

    /// Hands one 20 ms frame (960 samples at 48 kHz) to the device. Never blocks or allocates.
    pub fn push_frame(&mut self, frame: &[f32; CORE_FRAME_SAMPLES]) {
        let fill = self.producer.buffer().capacity() - self.producer.slots();
        if fill > self.drift.target() * 3 {
            // The device stalled or the tick ran ahead: skip this frame rather than let the
            // latency grow; the controller restarts from the new level.
            self.counters
                .dropped_for_drift
                .fetch_add(CORE_FRAME_SAMPLES as u64, Ordering::Relaxed);
            self.drift.reset(fill);
            return;
        }
        let adjust = self.drift.update(fill);
        // Over-full ring → adjust < 1 → fewer device samples per frame.
        let _ = self
            .resampler
            .set_resample_ratio(self.nominal_ratio * adjust, true);
        let Ok(input) = InterleavedSlice::new(&frame[..], 1, CORE_FRAME_SAMPLES) else {
            return;
        };
        let capacity = self.out.len();
        let Ok(mut output) = InterleavedSlice::new_mut(&mut self.out[..], 1, capacity) else {
            return;
        };
        let Ok((_, written)) = self
            .resampler
            .process_into_buffer(&input, &mut output, None)
        else {
            return;
        };
        for &s in &self.out[..written] {
            if self.producer.push(s).is_err() {
                self.counters
                    .overrun_samples
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Samples waiting for the device.
    pub fn fill(&self) -> usize {
        self.producer.buffer().capacity() - self.producer.slots()
    }
}

/// Runs `$body` with `$t` bound to the Rust sample type of a cpal sample format (cpal's
/// stream builders are generic over it); formats cpal has but we do not convert are refused.
macro_rules! with_sample_type {
    ($format:expr, $name:expr, $direction:expr, $t:ident => $body:expr) => {
        match $format {
            SampleFormat::F32 => {
                type $t = f32;
                $body
            }
            SampleFormat::I16 => {
                type $t = i16;
                $body
            }
            SampleFormat::I32 => {
                type $t = i32;
                $body
            }
            SampleFormat::U16 => {
                type $t = u16;
                $body
            }
            SampleFormat::U8 => {
                type $t = u8;
                $body
            }
            SampleFormat::I8 => {
                type $t = i8;
                $body
            }
            other => Err(DeviceError::NoUsableFormat {
                device: $name.to_string(),
                direction: $direction,
                reason: format!("sample format {other}"),
            }),
        }
    };
}

fn build_output(
    device: &cpal::Device,
    name: &str,
    format: StreamFormat,
    consumer: rtrb::Consumer<f32>,
    target: usize,
    counters: Arc<Counters>,
) -> Result<cpal::Stream, DeviceError> {
    with_sample_type!(format.sample_format, name, Direction::Output, T => {
        output_stream::<T>(device, name, format, consumer, target, counters)
    })
}

fn output_stream<T>(
    device: &cpal::Device,
    name: &str,
    format: StreamFormat,
    mut consumer: rtrb::Consumer<f32>,
    target: usize,
    counters: Arc<Counters>,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(format.channels);
    let config = cpal::StreamConfig {
        channels: format.channels,
        sample_rate: format.sample_rate,
        buffer_size: cpal::BufferSize::Default,
    };
    let cb_counters = Arc::clone(&counters);
    let err_counters = counters;
    let device_name = name.to_string();
    // Play silence until the ring first reaches its target (and again after it ran dry), so
    // the start of a call is one clean gap rather than a stutter.
    let mut primed = false;
    device
        .build_output_stream::<T, _, _>(
            config,
            move |data: &mut [T], _| {
                let frames = data.len() / channels;
                if !primed && consumer.slots() >= target {
                    primed = true;
                }
                let mut missing = 0u64;
                for frame in data.chunks_mut(channels) {
                    let s = if primed {
                        match consumer.pop() {
                            Ok(s) => s,
                            Err(_) => {
                                missing += 1;
                                0.0
                            }
                        }
                    } else {
                        0.0
                    };
                    let v = T::from_sample(s);
                    for c in frame {
                        *c = v;
                    }
                }
                if missing > 0 {
                    primed = false;
                    cb_counters
                        .underrun_samples
                        .fetch_add(missing, Ordering::Relaxed);
                }
                cb_counters.callbacks.fetch_add(1, Ordering::Relaxed);
                cb_counters
                    .device_samples
                    .fetch_add(frames as u64, Ordering::Relaxed);
            },
            move |e| {
                // cpal calls this from its own thread, not the data callback.
                err_counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(device = %device_name, error = %e, "output stream error");
            },
            None,
        )
        .map_err(|e| open_error(name, Direction::Output, &e))
}

/// The tick's end of [`Microphone`]: one 48 kHz frame per tick out.
pub struct MicSource {
    consumer: rtrb::Consumer<f32>,
    resampler: Async<f32>,
    nominal_ratio: f64,
    input: Vec<f32>,
    drift: DriftControl,
    primed: bool,
    counters: Arc<Counters>,
}

impl DeviceStream<Capture> {
    /// Opens the input device and starts capturing.
    pub fn open(config: &DeviceConfig) -> Result<(Microphone, MicSource), DeviceError> {
        Self::open_with(config, Direction::Input, |o| {
            let stream = build_input(
                &o.device,
                &o.name,
                o.format,
                o.producer,
                Arc::clone(&o.counters),
            )?;
            let source = MicSource::new(o.consumer, o.format.sample_rate, o.target, o.counters)
                .map_err(|e| open_error(&o.name, Direction::Input, &e))?;
            Ok((stream, source))
        })
    }
}

impl MicSource {
    fn new(
        consumer: rtrb::Consumer<f32>,
        device_rate: u32,
        target: usize,
        counters: Arc<Counters>,
    ) -> Result<Self, rubato::ResamplerConstructionError> {
        let nominal_ratio = f64::from(CORE_SAMPLE_RATE) / f64::from(device_rate);
        let resampler = drift_resampler(nominal_ratio, FixedAsync::Output)?;
        let input = vec![0.0; resampler.input_frames_max()];
        Ok(MicSource {
            consumer,
            resampler,
            nominal_ratio,
            input,
            drift: DriftControl::new(target),
            primed: false,
            counters,
        })
    }

    /// Fills `out` with the next 20 ms of captured audio at 48 kHz. Returns `false` (and
    /// silence) while the ring is filling up or after it ran dry. Never blocks or allocates.
    pub fn pull_frame(&mut self, out: &mut [f32; CORE_FRAME_SAMPLES]) -> bool {
        let fill = self.consumer.slots();
        let target = self.drift.target();
        if !self.primed {
            if fill < target {
                out.fill(0.0);
                return false;
            }
            self.primed = true;
            self.drift.reset(fill);
        }
        if fill > target * 3 {
            // The tick stalled: drop the backlog down to the target instead of carrying the
            // extra latency for the rest of the call.
            let excess = fill - target;
            if let Ok(chunk) = self.consumer.read_chunk(excess) {
                chunk.commit_all();
            }
            self.counters
                .dropped_for_drift
                .fetch_add(excess as u64, Ordering::Relaxed);
            self.drift.reset(target);
        }
        let fill = self.consumer.slots();
        let adjust = self.drift.update(fill);
        // Over-full ring → adjust < 1 → a lower out/in ratio → more device samples per frame.
        let _ = self
            .resampler
            .set_resample_ratio(self.nominal_ratio * adjust, true);
        let need = self.resampler.input_frames_next();
        if fill < need || need > self.input.len() {
            self.counters
                .underrun_samples
                .fetch_add(CORE_FRAME_SAMPLES as u64, Ordering::Relaxed);
            self.primed = false;
            out.fill(0.0);
            return false;
        }
        let Ok(chunk) = self.consumer.read_chunk(need) else {
            out.fill(0.0);
            return false;
        };
        let (a, b) = chunk.as_slices();
        self.input[..a.len()].copy_from_slice(a);
        self.input[a.len()..need].copy_from_slice(b);
        chunk.commit_all();
        let Ok(input) = InterleavedSlice::new(&self.input[..], 1, need) else {
            out.fill(0.0);
            return false;
        };
        let Ok(mut output) = InterleavedSlice::new_mut(&mut out[..], 1, CORE_FRAME_SAMPLES) else {
            return false;
        };
        self.resampler
            .process_into_buffer(&input, &mut output, None)
            .is_ok()
    }

    /// Captured samples waiting for the tick.
    pub fn fill(&self) -> usize {
        self.consumer.slots()
    }
}

fn build_input(
    device: &cpal::Device,
    name: &str,
    format: StreamFormat,
    producer: rtrb::Producer<f32>,
    counters: Arc<Counters>,
) -> Result<cpal::Stream, DeviceError> {
    with_sample_type!(format.sample_format, name, Direction::Input, T => {
        input_stream::<T>(device, name, format, producer, counters)
    })
}

fn input_stream<T>(
    device: &cpal::Device,
    name: &str,
    format: StreamFormat,
    mut producer: rtrb::Producer<f32>,
    counters: Arc<Counters>,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(format.channels);
    let gain = 1.0 / channels as f32;
    let config = cpal::StreamConfig {
        channels: format.channels,
        sample_rate: format.sample_rate,
        buffer_size: cpal::BufferSize::Default,
    };
    let cb_counters = Arc::clone(&counters);
    let err_counters = counters;
    let device_name = name.to_string();
    device
        .build_input_stream::<T, _, _>(
            config,
            move |data: &[T], _| {
                let mut lost = 0u64;
                let mut frames = 0u64;
                for frame in data.chunks(channels) {
                    let mono = frame
                        .iter()
                        .map(|s| <f32 as FromSample<T>>::from_sample_(*s))
                        .sum::<f32>()
                        * gain;
                    if producer.push(mono).is_err() {
                        lost += 1;
                    }
                    frames += 1;
                }
                if lost > 0 {
                    cb_counters
                        .overrun_samples
                        .fetch_add(lost, Ordering::Relaxed);
                }
                cb_counters.callbacks.fetch_add(1, Ordering::Relaxed);
                cb_counters
                    .device_samples
                    .fetch_add(frames, Ordering::Relaxed);
            },
            move |e| {
                err_counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(device = %device_name, error = %e, "input stream error");
            },
            None,
        )
        .map_err(|e| open_error(name, Direction::Input, &e))
}

/// The format [`Speakers::open`] or [`Microphone::open`] would choose for a device, without
/// opening a stream (what `appmedia devices` shows).
pub fn probe_format(name: Option<&str>, direction: Direction) -> Result<StreamFormat, DeviceError> {
    let device = find_device(name, direction)?;
    choose_format(&device, direction)
        .map_err(|e| default_device_error(e, &DeviceConfig::new(name), direction))
}

/// The tick-side halves without a device, for tests that check what they do per frame (this
/// crate's allocation test). Not for production use: nothing drains or fills the rings.
#[doc(hidden)]
pub mod test_support {
    use super::*;

    /// A speaker feed for a device at `rate`, and the ring its callback would drain.
    pub fn speaker_feed_for_test(rate: u32) -> (SpeakerFeed, rtrb::Consumer<f32>) {
        let target = target_samples(rate, Duration::from_millis(60));
        let (producer, consumer) = rtrb::RingBuffer::new(ring_capacity(target));
        let feed = SpeakerFeed::new(producer, rate, target, Arc::new(Counters::default()))
            .expect("resampler for a valid rate");
        (feed, consumer)
    }

    /// A microphone source for a device at `rate`, and the ring its callback would fill.
    pub fn mic_source_for_test(rate: u32) -> (MicSource, rtrb::Producer<f32>) {
        let target = target_samples(rate, Duration::from_millis(60));
        let (producer, consumer) = rtrb::RingBuffer::new(ring_capacity(target));
        let source = MicSource::new(consumer, rate, target, Arc::new(Counters::default()))
            .expect("resampler for a valid rate");
        (source, producer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appmedia_testkit::audio::goertzel;

    /// A device whose clock runs `ppm` fast against the tick, draining `period` samples per
    /// callback; the controller must keep the ring near its target with no under- or
    /// overruns once settled.
    fn simulate_speakers(ppm: f64, period: usize) -> (usize, usize, u64, u64) {
        let rate = 48_000.0;
        let target = 2880; // 60 ms
        let mut drift = DriftControl::new(target);
        let mut fill = target as f64;
        let (mut min, mut max) = (usize::MAX, 0usize);
        let (mut underruns, mut dropped) = (0u64, 0u64);
        let device_rate = rate * (1.0 + ppm / 1e6);
        let mut device_clock = 0.0f64;
        // 10 minutes of ticks.
        for tick in 0..30_000u64 {
            let adjust = drift.update(fill as usize);
            if fill as usize > target * 3 {
                dropped += 1;
            } else {
                fill += CORE_FRAME_SAMPLES as f64 * adjust;
            }
            // The device drains in whole periods on its own clock.
            device_clock += device_rate * 0.020;
            while device_clock >= period as f64 {
                device_clock -= period as f64;
                if fill < period as f64 {
                    underruns += 1;
                    fill = 0.0;
                } else {
                    fill -= period as f64;
                }
            }
            if tick > 3_000 {
                min = min.min(fill as usize);
                max = max.max(fill as usize);
            }
        }
        (min, max, underruns, dropped)
    }

    #[test]
    fn drift_control_holds_the_ring_near_target() {
        for ppm in [-500.0, -100.0, 0.0, 100.0, 500.0] {
            for period in [256, 441, 1024] {
                let (min, max, underruns, dropped) = simulate_speakers(ppm, period);
                assert_eq!(underruns, 0, "ppm {ppm} period {period}");
                assert_eq!(dropped, 0, "ppm {ppm} period {period}");
                assert!(
                    min > 500 && max < 2880 * 2,
                    "ppm {ppm} period {period}: {min}..{max}"
                );
            }
        }
    }

    /// The tick side of the speakers against a simulated 44.1 kHz device running 300 ppm fast:
    /// the tone keeps its pitch, the ring stays near its target, nothing under- or overruns.
    #[test]
    fn speaker_feed_resamples_and_follows_a_drifting_device() {
        let rate = 44_100u32;
        let target = target_samples(rate, Duration::from_millis(60));
        let (producer, mut consumer) = rtrb::RingBuffer::new(ring_capacity(target));
        let counters = Arc::new(Counters::default());
        let mut feed = SpeakerFeed::new(producer, rate, target, Arc::clone(&counters)).unwrap();
        let device_rate = f64::from(rate) * (1.0 + 300e-6);
        let (mut clock, mut played) = (0.0f64, Vec::new());
        let mut frame = [0.0f32; CORE_FRAME_SAMPLES];
        let (mut min_fill, mut max_fill) = (usize::MAX, 0);
        for tick in 0..15_000usize {
            for (i, s) in frame.iter_mut().enumerate() {
                let n = (tick * CORE_FRAME_SAMPLES + i) as f32;
                *s = (2.0 * std::f32::consts::PI * 1000.0 * n / 48_000.0).sin() * 0.5;
            }
            feed.push_frame(&frame);
            if tick == 3 {
                // Start the device once the ring holds its target, as the callback's priming does.
                assert!(feed.fill() >= target - CORE_FRAME_SAMPLES);
            }
            if tick >= 3 {
                clock += device_rate * 0.020;
                while clock >= 441.0 {
                    clock -= 441.0;
                    for _ in 0..441 {
                        match consumer.pop() {
                            Ok(s) => played.push(s),
                            Err(_) => panic!("underrun at tick {tick}"),
                        }
                    }
                }
            }
            if tick > 1_000 {
                min_fill = min_fill.min(feed.fill());
                max_fill = max_fill.max(feed.fill());
            }
        }
        let c = counters.snapshot();
        assert_eq!((c.overrun_samples, c.dropped_for_drift), (0, 0), "{c:?}");
        assert!(
            min_fill > target / 3 && max_fill < target * 2,
            "{min_fill}..{max_fill} vs {target}"
        );
        // 1 kHz at 44.1 kHz: strong at 1000 Hz, nothing at the pitch a wrong ratio would give.
        let tail = &played[played.len() - 44_100..];
        let on = goertzel(tail, 1000.0, 44_100.0);
        assert!(on > 0.05, "{on}");
        assert!(goertzel(tail, 1088.4, 44_100.0) < on / 100.0);
    }

    /// The tick side of the microphone against a simulated 16 kHz device: 48 kHz frames out,
    /// pitch kept.
    #[test]
    fn mic_source_resamples_to_48k_frames() {
        let rate = 16_000u32;
        let target = target_samples(rate, Duration::from_millis(60));
        let (mut producer, consumer) = rtrb::RingBuffer::new(ring_capacity(target));
        let counters = Arc::new(Counters::default());
        let mut source = MicSource::new(consumer, rate, target, Arc::clone(&counters)).unwrap();
        let mut frame = [0.0f32; CORE_FRAME_SAMPLES];
        let (mut n, mut got) = (0usize, Vec::new());
        for _ in 0..500 {
            // The device delivers 20 ms (320 samples) per tick, in two callbacks.
            for _ in 0..2 {
                for _ in 0..160 {
                    let s = (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16_000.0).sin() * 0.5;
                    producer.push(s).unwrap();
                    n += 1;
                }
            }
            if source.pull_frame(&mut frame) {
                got.extend_from_slice(&frame);
            }
        }
        assert!(
            got.len() >= 490 * CORE_FRAME_SAMPLES,
            "{} frames",
            got.len() / CORE_FRAME_SAMPLES
        );
        let tail = &got[got.len() - 48_000..];
        let on = goertzel(tail, 1000.0, 48_000.0);
        assert!(on > 0.05, "{on}");
        assert!(goertzel(tail, 3000.0, 48_000.0) < on / 100.0);
        assert_eq!(counters.snapshot().overrun_samples, 0);
    }

    #[test]
    fn drift_control_direction_and_bounds() {
        let mut d = DriftControl::new(1000);
        for _ in 0..200 {
            d.update(3000);
        }
        let high = d.update(3000);
        assert!((1.0 - DriftControl::MAX_ADJUST..1.0).contains(&high));
        let mut d = DriftControl::new(1000);
        for _ in 0..200 {
            d.update(0);
        }
        let low = d.update(0);
        assert!(low > 1.0 && low <= 1.0 + DriftControl::MAX_ADJUST, "{low}");
    }
}
