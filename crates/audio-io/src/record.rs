//! Crash-safe call recording: the mixed audio and one file per speaker, 16-bit WAV.
//!
//! The audio thread only copies a frame into a bounded lock-free queue
//! ([`RecordingSink::push`]); a writer thread owns the files. Every
//! [`RecordingConfig::header_interval`] the writer rewrites each WAV header (hound's
//! `WavWriter::flush` seeks back and writes the RIFF and data sizes, then flushes), so after
//! `kill -9` every file is a valid WAV holding at least the audio written before the last
//! rewrite — the approach of Janus's AudioBridge. A write error (a full disk, say) stops that
//! file with a logged error and a [`TrackState::Failed`] status, and leaves it exactly the WAV
//! the last rewrite described (whatever part of a later write reached the disk is cut off); the
//! call and the other files go on. A file that could not even get its header is removed.
//!
//! Tracks stay aligned in time: each frame carries the call's tick number, and a track that
//! starts late, or misses frames (a speaker who is not among the active ones, a frame dropped on
//! a full queue), is padded with silence up to that tick.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::frame::{CORE_FRAME_SAMPLES, TICKS_PER_SECOND, f32_to_s16, frame_samples, s16_to_f32};
use crate::resample::{FrameResampler, ResampleError};

/// Which audio a frame or a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Track {
    /// Everything the bot hears, mixed.
    Mixed,
    /// One remote speaker, unmixed, by media source id (what Graph's `ActiveSpeakers` and
    /// unmixed buffers name speakers by).
    Speaker(u32),
}

/// How a recording is made.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Directory the files go into. It must exist and be writable.
    pub directory: PathBuf,
    /// File name prefix, usually the call id: files are `{name}-mixed.wav` and
    /// `{name}-speaker-{id}.wav`. Existing files of those names are overwritten.
    pub name: String,
    /// Rate of the frames pushed: 48 000 (media core frames, 960 samples) or 16 000 (bot
    /// frames, 320 samples); any rate ≤ 48 kHz whose 20 ms is a whole number of samples.
    pub input_sample_rate: u32,
    /// Rate of the WAV files (resampled on the writer thread when it differs from the input).
    pub output_sample_rate: u32,
    /// Record the mixed track.
    pub record_mixed: bool,
    /// Record one file per speaker.
    pub record_speakers: bool,
    /// At most this many speaker files; frames of further speakers are counted and dropped.
    pub max_speakers: usize,
    /// Frames the queue between the audio thread and the writer holds (each ≈ 3.9 KB).
    pub queue_frames: usize,
    /// How often WAV headers are rewritten; bounds what a crash can lose.
    pub header_interval: Duration,
    /// Longest silence written to fill a gap in a track's ticks; a larger jump (a bogus tick
    /// number) is logged and filled only this far.
    pub max_gap: Duration,
    /// Write through a symbolic link planted at a track's path (e.g. to a FIFO a pipeline
    /// reads). Off by default: on Unix the file is opened with `O_NOFOLLOW`, so whoever can
    /// write to the directory cannot make the recorder overwrite another file by planting a
    /// link under the next recording's name — the track fails with [`RecordError::Unwritable`]
    /// instead, and the link's target is untouched.
    pub follow_symlinks: bool,
}

impl RecordingConfig {
    /// Mixed and per-speaker files at 16 kHz from 48 kHz core frames, headers rewritten twice a
    /// second.
    pub fn new(directory: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        Self {
            directory: directory.into(),
            name: name.into(),
            input_sample_rate: 48_000,
            output_sample_rate: 16_000,
            record_mixed: true,
            record_speakers: true,
            max_speakers: 32,
            queue_frames: 256,
            header_interval: Duration::from_millis(500),
            max_gap: Duration::from_secs(600),
            follow_symlinks: false,
        }
    }

    /// The file a track is written to.
    pub fn path_of(&self, track: Track) -> PathBuf {
        match track {
            Track::Mixed => self.directory.join(format!("{}-mixed.wav", self.name)),
            Track::Speaker(id) => self
                .directory
                .join(format!("{}-speaker-{id}.wav", self.name)),
        }
    }
}

/// Why a recording could not start. All of these are reported before the call's audio flows.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file name prefix is empty or would leave the directory.
    #[error("invalid recording name {0:?}: it must be non-empty and contain no path separator")]
    InvalidName(String),
    /// A sample rate that cannot be cut into 20 ms frames, or is out of range.
    #[error(
        "unsupported {which} sample rate {rate} Hz (needs 8000..=48000 and a whole number of samples per 20 ms)"
    )]
    UnsupportedRate {
        /// "input" or "output".
        which: &'static str,
        /// The rate given.
        rate: u32,
    },
    /// A zero-sized queue or interval.
    #[error("invalid recording setting {0}")]
    InvalidSetting(&'static str),
    /// Nothing to record.
    #[error("recording has neither the mixed track nor speakers enabled")]
    NothingToRecord,
    /// The output directory or file cannot be written.
    #[error("cannot write recording file {path}: {source}")]
    Unwritable {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The resampler for the output rate could not be built.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The writer thread could not be started.
    #[error("cannot start the recording writer thread: {0}")]
    Thread(std::io::Error),
}

/// Why [`RecordingSink::push`] did not queue a frame. Each is also counted in [`SinkCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameDropped {
    /// The writer is behind and the queue is full; the file gets silence for this tick.
    #[error("recording queue full")]
    QueueFull,
    /// The recording was stopped or its writer has ended.
    #[error("recording stopped")]
    Stopped,
    /// The frame does not have the configured frame length.
    #[error("frame has {got} samples, the recording expects {expected}")]
    WrongLength {
        /// Samples per frame at the configured input rate.
        expected: usize,
        /// Samples given.
        got: usize,
    },
    /// This track is not recorded (mixed or speakers disabled).
    #[error("track not recorded")]
    TrackDisabled,
}

/// Producer-side counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Frames handed to the writer.
    pub queued: u64,
    /// Frames dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Frames pushed after the recording stopped.
    pub dropped_stopped: u64,
    /// Frames of the wrong length.
    pub rejected: u64,
}

/// Where a track's file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackState {
    /// Being written.
    Recording,
    /// Closed normally, header final.
    Finished,
    /// Stopped by an error (see [`TrackStatus::error`]); the file is valid up to
    /// [`TrackStatus::durable_samples`].
    Failed,
}

/// One file of a recording.
#[derive(Debug, Clone)]
pub struct TrackStatus {
    /// The track.
    pub track: Track,
    /// Its file.
    pub path: PathBuf,
    /// Recording, finished or failed.
    pub state: TrackState,
    /// Samples written to the file so far (at the output rate).
    pub samples_written: u64,
    /// Samples covered by the last header rewrite: what survives a crash.
    pub durable_samples: u64,
    /// The output sample rate.
    pub sample_rate: u32,
    /// Frames that arrived for a tick already written (late or duplicate), dropped.
    pub late_frames: u64,
    /// Peak level (0..=1) of the audio received since the previous status update (one header
    /// interval): what a live level meter shows.
    pub peak: f32,
    /// What went wrong, for a failed track.
    pub error: Option<String>,
}

impl TrackStatus {
    /// [`peak`](Self::peak) in dBFS (−∞ for digital silence).
    pub fn peak_dbfs(&self) -> f32 {
        20.0 * self.peak.log10()
    }

    /// Length of the audio that survives a crash.
    pub fn durable_duration(&self) -> Duration {
        Duration::from_secs_f64(self.durable_samples as f64 / f64::from(self.sample_rate))
    }
}

/// A recording's state: producer counters and one entry per file.
#[derive(Debug, Clone, Default)]
pub struct RecordingStatus {
    /// Frames queued and dropped on the producer side.
    pub counters: SinkCounters,
    /// Frames of speakers beyond [`RecordingConfig::max_speakers`], dropped by the writer.
    pub dropped_extra_speakers: u64,
    /// Header rewrites done.
    pub header_rewrites: u64,
    /// The files, mixed first, then speakers in order of appearance.
    pub tracks: Vec<TrackStatus>,
}

impl RecordingStatus {
    /// Audio bytes written to the recording's files so far (16-bit mono PCM, two bytes per
    /// sample; the 44-byte WAV headers not counted).
    pub fn bytes_written(&self) -> u64 {
        self.tracks
            .iter()
            .map(|t| t.samples_written * BYTES_PER_SAMPLE)
            .sum()
    }
}

/// What the recorder's audio side, its writer thread and [`CallRecorder::status`] share.
struct RecorderShared {
    stopped: AtomicBool,
    queued: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_stopped: AtomicU64,
    rejected: AtomicU64,
    /// Written by the writer thread only, read by [`CallRecorder::status`]; the audio thread
    /// never takes this lock.
    status: Mutex<WriterStatus>,
}

#[derive(Default)]
struct WriterStatus {
    dropped_extra_speakers: u64,
    header_rewrites: u64,
    tracks: Vec<TrackStatus>,
}

impl RecorderShared {
    fn counters(&self) -> SinkCounters {
        SinkCounters {
            queued: self.queued.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            dropped_stopped: self.dropped_stopped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    fn lock_status(&self) -> MutexGuard<'_, WriterStatus> {
        // A panic on the writer thread poisons the lock; the status inside is still the last
        // consistent one, which is what a caller wants to see.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One queued frame. Fixed-size so the bounded channel's preallocated slots hold it: queuing
/// allocates nothing.
struct FrameMsg {
    tick: u64,
    track: Track,
    samples: [f32; CORE_FRAME_SAMPLES],
}

/// The audio thread's end of a recording. `push` never blocks, locks or allocates.
pub struct RecordingSink {
    tx: Sender<FrameMsg>,
    shared: Arc<RecorderShared>,
    frame_len: usize,
    record_mixed: bool,
    record_speakers: bool,
}

impl RecordingSink {
    /// Queues one 20 ms frame of `track` for tick `tick` (the call's frame counter).
    pub fn push(&self, tick: u64, track: Track, samples: &[f32]) -> Result<(), FrameDropped> {
        self.push_with(tick, track, samples.len(), |dst| {
            dst.copy_from_slice(samples)
        })
    }

    /// Like [`push`](Self::push), for 16-bit frames (the bot-facing format).
    pub fn push_s16(&self, tick: u64, track: Track, samples: &[i16]) -> Result<(), FrameDropped> {
        self.push_with(tick, track, samples.len(), |dst| {
            for (d, s) in dst.iter_mut().zip(samples) {
                *d = s16_to_f32(*s);
            }
        })
    }

    /// Producer-side counters.
    pub fn counters(&self) -> SinkCounters {
        self.shared.counters()
    }

    fn push_with(
        &self,
        tick: u64,
        track: Track,
        len: usize,
        fill: impl FnOnce(&mut [f32]),
    ) -> Result<(), FrameDropped> {
        let enabled = match track {
            Track::Mixed => self.record_mixed,
            Track::Speaker(_) => self.record_speakers,
        };
        if !enabled {
            return Err(FrameDropped::TrackDisabled);
        }
        if len != self.frame_len {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(FrameDropped::WrongLength {
                expected: self.frame_len,
                got: len,
            });
        }
        if self.shared.stopped.load(Ordering::Relaxed) {
            self.shared.dropped_stopped.fetch_add(1, Ordering::Relaxed);
            return Err(FrameDropped::Stopped);
        }
        let mut msg = FrameMsg {
            tick,
            track,
            samples: [0.0; CORE_FRAME_SAMPLES],
        };
        fill(&mut msg.samples[..len]);
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.shared
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(FrameDropped::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped_stopped.fetch_add(1, Ordering::Relaxed);
                Err(FrameDropped::Stopped)
            }
        }
    }
}

/// The control end of a recording: status and stop. Dropping it stops the recording and waits
/// for the files to be closed.
pub struct CallRecorder {
    shared: Arc<RecorderShared>,
    stop_tx: Sender<()>,
    writer: Option<JoinHandle<()>>,
}

impl CallRecorder {
    /// Checks the configuration, creates the mixed file (so an unwritable path fails here,
    /// before the call starts) and starts the writer thread.
    pub fn start(config: RecordingConfig) -> Result<(CallRecorder, RecordingSink), RecordError> {
        validate(&config)?;
        let in_frame =
            frame_samples(config.input_sample_rate).ok_or(RecordError::UnsupportedRate {
                which: "input",
                rate: config.input_sample_rate,
            })?;
        let mut writer = Writer::new(&config, in_frame);
        if config.record_mixed {
            writer.open_track(Track::Mixed)?;
        } else {
            probe_directory(&config)?;
        }
        let shared = Arc::new(RecorderShared {
            stopped: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_stopped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            status: Mutex::new(WriterStatus::default()),
        });
        writer.publish(&shared);
        let (tx, rx) = crossbeam_channel::bounded(config.queue_frames);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let thread_shared = Arc::clone(&shared);
        let interval = config.header_interval;
        let handle = std::thread::Builder::new()
            .name(format!("rec-{}", config.name))
            .spawn(move || writer.run(rx, stop_rx, interval, &thread_shared))
            .map_err(RecordError::Thread)?;
        let sink = RecordingSink {
            tx,
            shared: Arc::clone(&shared),
            frame_len: in_frame,
            record_mixed: config.record_mixed,
            record_speakers: config.record_speakers,
        };
        Ok((
            CallRecorder {
                shared,
                stop_tx,
                writer: Some(handle),
            },
            sink,
        ))
    }

    /// Current state of every file and the producer counters.
    pub fn status(&self) -> RecordingStatus {
        let counters = self.shared.counters();
        let st = self.shared.lock_status();
        RecordingStatus {
            counters,
            dropped_extra_speakers: st.dropped_extra_speakers,
            header_rewrites: st.header_rewrites,
            tracks: st.tracks.clone(),
        }
    }

    /// Stops the recording: frames already queued are written, later pushes are dropped, every
    /// file gets its final header. Returns the final status.
    pub fn finish(mut self) -> RecordingStatus {
        self.stop_and_join();
        self.status()
    }

    fn stop_and_join(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        // Capacity 1 and only ever one send, so this cannot block; an Err means the writer
        // already ended.
        let _ = self.stop_tx.try_send(());
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("recording writer thread panicked");
        }
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn validate(config: &RecordingConfig) -> Result<(), RecordError> {
    let name = &config.name;
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(RecordError::InvalidName(name.clone()));
    }
    for (which, rate) in [
        ("input", config.input_sample_rate),
        ("output", config.output_sample_rate),
    ] {
        if !(8_000..=48_000).contains(&rate) || frame_samples(rate).is_none() {
            return Err(RecordError::UnsupportedRate { which, rate });
        }
    }
    if config.queue_frames == 0 {
        return Err(RecordError::InvalidSetting("queue_frames = 0"));
    }
    if config.header_interval.is_zero() {
        return Err(RecordError::InvalidSetting("header_interval = 0"));
    }
    if !config.record_mixed && !config.record_speakers {
        return Err(RecordError::NothingToRecord);
    }
    Ok(())
}

/// Creates (or truncates) the file at `path` for writing; with `follow_symlinks` false, a
/// symbolic link at `path` is refused (`O_NOFOLLOW`: the error is ELOOP) rather than followed.
fn create(path: &Path, follow_symlinks: bool) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if !follow_symlinks {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = follow_symlinks;
    options.open(path)
}

/// With no mixed file to create up front, prove the directory is writable with a probe file so
/// that the error still comes before the call.
fn probe_directory(config: &RecordingConfig) -> Result<(), RecordError> {
    let probe = config.directory.join(format!(".{}.probe", config.name));
    create(&probe, false).map_err(|source| RecordError::Unwritable {
        path: config.directory.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

type Wav = hound::WavWriter<BufWriter<File>>;

/// Largest data chunk hound can describe (its sizes are u32), minus room for one more frame.
const WAV_DATA_LIMIT_BYTES: u64 = u32::MAX as u64 - 64 * 1024;
/// Every track is 16-bit mono PCM.
const BYTES_PER_SAMPLE: u64 = 2;

struct TrackFile {
    wav: Option<Wav>,
    /// The same open file, to `sync_data` what the writer flushed (hound keeps its own
    /// handle inside the buffered writer), and to trim it after a write error.
    sync: Option<File>,
    /// Bytes before the samples: the header hound wrote, its data size in the last four.
    header_len: u64,
    resampler: Option<FrameResampler>,
    /// Ticks this file covers so far, counted from the recording's base tick.
    ticks: u64,
    status: TrackStatus,
}

struct Writer {
    config: RecordingConfig,
    in_frame: usize,
    base_tick: Option<u64>,
    max_gap_ticks: u64,
    tracks: Vec<TrackFile>,
    dropped_extra_speakers: u64,
    header_rewrites: u64,
    silence: Vec<i16>,
    pcm: Vec<i16>,
}

impl Writer {
    fn new(config: &RecordingConfig, in_frame: usize) -> Self {
        // Validated before: the output rate has a whole frame.
        let out_frame = frame_samples(config.output_sample_rate).unwrap_or(in_frame);
        let max_gap_ticks =
            (config.max_gap.as_millis() / u128::from(1000 / TICKS_PER_SECOND)) as u64;
        Self {
            config: config.clone(),
            in_frame,
            base_tick: None,
            max_gap_ticks,
            tracks: Vec::new(),
            dropped_extra_speakers: 0,
            header_rewrites: 0,
            silence: vec![0; out_frame],
            pcm: Vec::with_capacity(4 * out_frame),
        }
    }

    fn open_track(&mut self, track: Track) -> Result<usize, RecordError> {
        let path = self.config.path_of(track);
        let unwritable = |source| RecordError::Unwritable {
            path: path.clone(),
            source,
        };
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: self.config.output_sample_rate,
            bits_per_sample: BYTES_PER_SAMPLE as u16 * 8,
            sample_format: hound::SampleFormat::Int,
        };
        let file = create(&path, self.config.follow_symlinks).map_err(unwritable)?;
        let sync = file.try_clone().map_err(unwritable)?;
        // Put a valid (empty) WAV on disk now: a crash before the first rewrite still leaves a
        // playable file, and a device that refuses writes fails here rather than mid-call.
        let started = Wav::new(BufWriter::new(file), spec).and_then(|mut wav| {
            wav.flush()?;
            Ok(wav)
        });
        let header_len = started
            .as_ref()
            .map_err(|_| ())
            .and_then(|_| sync.metadata().map(|m| m.len()).map_err(|_| ()));
        let (wav, header_len) = match (started, header_len) {
            (Ok(wav), Ok(len)) => (wav, len),
            (started, _) => {
                // Not even a header reached the disk (it is full): the file holds nothing, and
                // an empty or half-written file is no WAV — remove it, unless it is not a file
                // this recorder made (a link or a FIFO it was told to write through).
                let error = started.err().map_or_else(
                    || std::io::Error::other("cannot read the new file's length"),
                    hound_io,
                );
                drop(sync);
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
                    let _ = std::fs::remove_file(&path);
                }
                return Err(unwritable(error));
            }
        };
        let resampler = if self.config.input_sample_rate == self.config.output_sample_rate {
            None
        } else {
            Some(FrameResampler::new(
                self.config.input_sample_rate,
                self.config.output_sample_rate,
                self.in_frame,
            )?)
        };
        self.tracks.push(TrackFile {
            wav: Some(wav),
            sync: Some(sync),
            header_len,
            resampler,
            ticks: 0,
            status: TrackStatus {
                track,
                path,
                state: TrackState::Recording,
                samples_written: 0,
                durable_samples: 0,
                sample_rate: self.config.output_sample_rate,
                late_frames: 0,
                peak: 0.0,
                error: None,
            },
        });
        Ok(self.tracks.len() - 1)
    }

    fn run(
        mut self,
        rx: Receiver<FrameMsg>,
        stop_rx: Receiver<()>,
        interval: Duration,
        shared: &RecorderShared,
    ) {
        let mut next_rewrite = Instant::now() + interval;
        loop {
            let timeout = next_rewrite.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(rx) -> msg => match msg {
                    Ok(msg) => self.handle(&msg),
                    Err(_) => break, // every sink dropped: the call is over
                },
                recv(stop_rx) -> _ => {
                    // Write what the call already handed over, then close.
                    while let Ok(msg) = rx.try_recv() {
                        self.handle(&msg);
                    }
                    break;
                }
                default(timeout) => {}
            }
            if Instant::now() >= next_rewrite {
                self.rewrite_headers();
                self.publish(shared);
                next_rewrite = Instant::now() + interval;
            }
        }
        shared.stopped.store(true, Ordering::Relaxed);
        self.finalize();
        self.publish(shared);
    }

    fn handle(&mut self, msg: &FrameMsg) {
        let base = *self.base_tick.get_or_insert(msg.tick);
        let Some(rel_tick) = msg.tick.checked_sub(base) else {
            self.late(msg.track);
            return;
        };
        let idx = match self.tracks.iter().position(|t| t.status.track == msg.track) {
            Some(i) => i,
            None => {
                let speakers = self
                    .tracks
                    .iter()
                    .filter(|t| matches!(t.status.track, Track::Speaker(_)))
                    .count();
                if speakers >= self.config.max_speakers {
                    self.dropped_extra_speakers += 1;
                    return;
                }
                match self.open_track(msg.track) {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::error!(track = ?msg.track, error = %e, "cannot create recording file");
                        self.tracks
                            .push(failed_track(&self.config, msg.track, e.to_string()));
                        return;
                    }
                }
            }
        };
        let max_gap = self.max_gap_ticks;
        let in_frame = self.in_frame;
        let Self {
            tracks,
            silence,
            pcm,
            ..
        } = self;
        let track = &mut tracks[idx];
        if track.wav.is_none() {
            return;
        }
        if rel_tick < track.ticks {
            track.status.late_frames += 1;
            return;
        }
        let gap = rel_tick - track.ticks;
        if gap > max_gap {
            tracing::warn!(track = ?msg.track, gap_ticks = gap, "tick jump in recording, gap filled only up to max_gap");
        }
        let result = (|| -> Result<(), String> {
            for _ in 0..gap.min(max_gap) {
                write_pcm(track, silence)?;
            }
            let frame = &msg.samples[..in_frame];
            track.status.peak = frame
                .iter()
                .fold(track.status.peak, |p, s| p.max(s.abs().min(1.0)));
            pcm.clear();
            match &mut track.resampler {
                None => pcm.extend(msg.samples[..in_frame].iter().map(|s| f32_to_s16(*s))),
                Some(r) => {
                    let out = r
                        .process(&msg.samples[..in_frame])
                        .map_err(|e| e.to_string())?;
                    pcm.extend(out.iter().map(|s| f32_to_s16(*s)));
                }
            }
            write_pcm(track, pcm)?;
            Ok(())
        })();
        track.ticks = rel_tick + 1;
        if let Err(e) = result {
            fail(track, e);
        }
    }

    fn late(&mut self, track: Track) {
        if let Some(t) = self.tracks.iter_mut().find(|t| t.status.track == track) {
            t.status.late_frames += 1;
        }
    }

    fn rewrite_headers(&mut self) {
        for track in &mut self.tracks {
            let Some(wav) = track.wav.as_mut() else {
                continue;
            };
            // Flushed and on disk: what `durable_samples` promises survives a power cut too.
            match wav
                .flush()
                .map_err(hound_io)
                .and_then(|()| track.sync.as_ref().map_or(Ok(()), File::sync_data))
            {
                Ok(()) => track.status.durable_samples = track.status.samples_written,
                Err(e) => fail(track, format!("header rewrite failed: {e}")),
            }
        }
        self.header_rewrites += 1;
    }

    fn finalize(&mut self) {
        for track in &mut self.tracks {
            if track.wav.is_none() {
                continue;
            }
            if let Some(r) = track.resampler.as_mut() {
                match r.drain() {
                    Ok(tail) => {
                        let pcm: Vec<i16> = tail.iter().map(|s| f32_to_s16(*s)).collect();
                        if let Err(e) = write_pcm(track, &pcm) {
                            fail(track, e);
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "resampler tail lost"),
                }
            }
            let Some(wav) = track.wav.take() else {
                continue;
            };
            match wav
                .finalize()
                .map_err(hound_io)
                .and_then(|()| track.sync.as_ref().map_or(Ok(()), File::sync_all))
            {
                Ok(()) => {
                    track.status.durable_samples = track.status.samples_written;
                    track.status.state = TrackState::Finished;
                }
                Err(e) => fail(track, format!("closing the file failed: {e}")),
            }
        }
    }

    /// Publishes the status and starts a new level-meter interval.
    fn publish(&mut self, shared: &RecorderShared) {
        let mut st = shared.lock_status();
        st.dropped_extra_speakers = self.dropped_extra_speakers;
        st.header_rewrites = self.header_rewrites;
        st.tracks.clear();
        st.tracks
            .extend(self.tracks.iter().map(|t| t.status.clone()));
        for t in &mut self.tracks {
            t.status.peak = 0.0;
        }
    }
}

fn write_pcm(track: &mut TrackFile, pcm: &[i16]) -> Result<(), String> {
    let Some(wav) = track.wav.as_mut() else {
        return Ok(());
    };
    if (track.status.samples_written + pcm.len() as u64) * BYTES_PER_SAMPLE > WAV_DATA_LIMIT_BYTES {
        return Err("WAV size limit (4 GiB) reached".to_string());
    }
    let mut w = wav.get_i16_writer(pcm.len() as u32);
    for s in pcm {
        w.write_sample(*s);
    }
    w.flush()
        .map_err(|e| format!("write failed: {}", hound_io(e)))?;
    track.status.samples_written += pcm.len() as u64;
    Ok(())
}

/// Stops one file after an error. The file is left exactly the WAV the last good header
/// rewrite described ([`trim_to_durable`]): on a real full disk a failed write may have put
/// part of its bytes on disk past that, and hound's drop may still rewrite the header for
/// samples that never got there.
fn fail(track: &mut TrackFile, error: String) {
    tracing::error!(path = %track.status.path.display(), %error, "recording stopped for this file; the call goes on");
    track.status.state = TrackState::Failed;
    track.status.error = Some(error);
    // hound's drop (and its buffer's) try to write once more: let them, then set it right.
    track.wav = None;
    if let Some(file) = track.sync.take()
        && let Err(e) = trim_to_durable(&file, track.header_len, track.status.durable_samples)
    {
        tracing::error!(path = %track.status.path.display(), error = %e, "cannot trim the failed recording file to its last good length");
    }
    track.resampler = None;
}

/// Makes the file header + `durable_samples` 16-bit samples long, both sizes in the header
/// saying so, and syncs it. Shrinking a file and rewriting eight bytes in place take no new
/// space, so this works on the full disk that stopped the recording.
fn trim_to_durable(file: &File, header_len: u64, durable_samples: u64) -> std::io::Result<()> {
    let data = durable_samples * 2;
    let too_big = |_| std::io::Error::other("a WAV over 4 GiB");
    let riff = u32::try_from(header_len + data - 8).map_err(too_big)?;
    let data_len = u32::try_from(data).map_err(too_big)?;
    file.set_len(header_len + data)?;
    let mut file = file;
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&riff.to_le_bytes())?;
    file.seek(SeekFrom::Start(header_len - 4))?;
    file.write_all(&data_len.to_le_bytes())?;
    file.sync_all()
}

fn failed_track(config: &RecordingConfig, track: Track, error: String) -> TrackFile {
    TrackFile {
        wav: None,
        sync: None,
        header_len: 0,
        resampler: None,
        ticks: 0,
        status: TrackStatus {
            track,
            path: config.path_of(track),
            state: TrackState::Failed,
            samples_written: 0,
            durable_samples: 0,
            sample_rate: config.output_sample_rate,
            late_frames: 0,
            peak: 0.0,
            error: Some(error),
        },
    }
}

fn hound_io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}
