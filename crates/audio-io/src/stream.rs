//! Prompts streamed from disk instead of decoded up front: for long files (hold music) whose
//! 48 kHz `f32` form would not be worth keeping in memory. WAV and Ogg/Opus.
//!
//! [`StreamedClip::open`] checks the file as thoroughly as [`AudioClip::open`](crate::clip::AudioClip::open)
//! does without keeping the audio — not a WAV, an unsupported encoding, a header promising more
//! data than the file holds are errors at open; an Ogg/Opus file is decoded once, page by
//! page in constant memory, so a damaged page or packet is an error at open too. Playing it starts a decoder thread that reads,
//! down-mixes and resamples in blocks into a wait-free ring (rtrb); the audio thread only copies
//! out of that ring. A decoder that falls behind costs a counted stretch of silence, never a
//! blocked tick.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use appmedia_media::pipeline::PlayerFrame;

use crate::format::{Encoding, OpenError, SourceFormat, find_chunk, header_error, wav_encoding};
use crate::frame::{CORE_FRAME_SAMPLES, CORE_SAMPLE_RATE};
use crate::resample::FrameResampler;

/// Samples per decode block (at the file's rate).
const BLOCK: usize = 1024;
/// Ring between the decoder and the audio thread: one second at 48 kHz.
const RING: usize = CORE_SAMPLE_RATE as usize;
/// Ring of whole frames (about 5 KiB each, with their packets) for an Ogg/Opus prompt whose
/// packets pass through: 0.64 s.
const FRAME_RING: usize = 32;

/// A WAV file checked and ready to be streamed into a call.
#[derive(Debug, Clone)]
pub struct StreamedClip {
    path: PathBuf,
    source: SourceFormat,
    /// Frames (samples per channel) in the file.
    frames: u64,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Wav,
    /// Decoded at 48 kHz; `pre_skip` samples are dropped from the start of each pass.
    /// With `passthrough` (some or all packets can be sent as they are) it is instead decoded
    /// into whole 20 ms frames from the first decoded sample, each frame with its packet when
    /// it has one (see [`AudioClip`](crate::clip::AudioClip) for what is played).
    OggOpus {
        pre_skip: usize,
        passthrough: bool,
    },
}

impl StreamedClip {
    /// Checks the file's header and size; the audio itself is read while playing.
    pub fn open(path: impl AsRef<Path>) -> Result<StreamedClip, OpenError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let file_len = std::fs::metadata(&path).map_err(io)?.len();
        let mut head = Vec::with_capacity(64 * 1024);
        File::open(&path)
            .map_err(io)?
            .take(64 * 1024)
            .read_to_end(&mut head)
            .map_err(io)?;
        if crate::ogg_opus::is_ogg(&head) {
            let (info, frames) = crate::ogg_opus::scan(&path)?;
            return Ok(StreamedClip {
                path,
                source: SourceFormat {
                    sample_rate: CORE_SAMPLE_RATE,
                    channels: u16::from(info.channels),
                    bits_per_sample: 0,
                    encoding: Encoding::Opus,
                },
                frames,
                kind: Kind::OggOpus {
                    pre_skip: info.pre_skip,
                    passthrough: info.passthrough_packets > 0,
                },
            });
        }
        let reader = match hound::WavReader::new(BufReader::new(File::open(&path).map_err(io)?)) {
            Ok(r) => r,
            Err(e) => return Err(header_error(e, &head, path)),
        };
        let spec = reader.spec();
        if spec.sample_rate == 0 || spec.sample_rate > 768_000 {
            return Err(OpenError::UnsupportedRate {
                path,
                rate: spec.sample_rate,
            });
        }
        let bytes_per_sample = u64::from(spec.bits_per_sample.div_ceil(8).max(1));
        let expected = u64::from(reader.len());
        if expected == 0 {
            return Err(OpenError::Empty { path });
        }
        if let Some((offset, _)) = find_chunk(&head, b"data") {
            let present = file_len.saturating_sub(offset as u64) / bytes_per_sample;
            if present < expected {
                return Err(OpenError::TruncatedData {
                    path,
                    expected,
                    found: present,
                });
            }
        }
        Ok(StreamedClip {
            frames: u64::from(reader.duration()),
            source: SourceFormat {
                sample_rate: spec.sample_rate,
                channels: spec.channels,
                bits_per_sample: spec.bits_per_sample,
                encoding: wav_encoding(spec),
            },
            path,
            kind: Kind::Wav,
        })
    }

    /// The file's format.
    pub fn source_format(&self) -> &SourceFormat {
        &self.source
    }

    /// Length of one pass.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames as f64 / f64::from(self.source.sample_rate))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is Ogg/Opus with packets that can be sent as they are (mono, no
    /// header gain, 20 ms packets): it then plays in whole frames, each with its packet.
    pub fn passes_through(&self) -> bool {
        matches!(
            self.kind,
            Kind::OggOpus {
                passthrough: true,
                ..
            }
        )
    }

    /// Starts the decoder thread and waits (briefly, on the caller's thread) until the ring
    /// holds a few frames, so the prompt starts without a gap.
    pub(crate) fn start(&self, looped: bool) -> std::io::Result<StreamReader> {
        let shared = Arc::new(StreamShared::default());
        if self.passes_through() {
            let (producer, consumer) = rtrb::RingBuffer::new(FRAME_RING);
            let thread_shared = Arc::clone(&shared);
            let path = self.path.clone();
            std::thread::Builder::new()
                .name("prompt-stream".into())
                .spawn(move || decode_ogg_frames(path, looped, producer, &thread_shared))?;
            let reader = StreamReader {
                ring: Ring::Frames(consumer),
                shared,
            };
            reader.wait_for(4);
            return Ok(reader);
        }
        let (producer, consumer) = rtrb::RingBuffer::new(RING);
        let thread_shared = Arc::clone(&shared);
        let path = self.path.clone();
        let rate = self.source.sample_rate;
        let (kind, frames) = (self.kind, self.frames);
        std::thread::Builder::new()
            .name("prompt-stream".into())
            .spawn(move || match kind {
                Kind::Wav => decode(path, rate, looped, producer, &thread_shared),
                Kind::OggOpus { pre_skip, .. } => decode_ogg(
                    path,
                    OggPass { pre_skip, frames },
                    looped,
                    producer,
                    &thread_shared,
                ),
            })?;
        let reader = StreamReader {
            ring: Ring::Samples(consumer),
            shared,
        };
        reader.wait_for(4);
        Ok(reader)
    }
}

#[derive(Default)]
struct StreamShared {
    /// Set after the decoder's last push (Release), so an Acquire load followed by reading the
    /// ring's fill sees every sample.
    finished: AtomicBool,
    failed: AtomicBool,
}

/// What a frame read from a framed stream gave.
pub(crate) enum FrameRead {
    /// A frame.
    Frame,
    /// None yet: the decoder is behind.
    Behind,
    /// The stream is over (`failed`: ended by a read error).
    Ended { failed: bool },
}

/// What a read from the stream gave.
pub(crate) enum StreamRead {
    /// `n` samples; more may come.
    More(usize),
    /// `n` samples, and the stream is over (`failed`: ended by a read error).
    Ended { n: usize, failed: bool },
}

/// The audio thread's end of a streamed prompt.
pub(crate) struct StreamReader {
    ring: Ring,
    shared: Arc<StreamShared>,
}

/// Samples, or whole frames with their packets.
enum Ring {
    Samples(rtrb::Consumer<f32>),
    Frames(rtrb::Consumer<PlayerFrame>),
}

impl StreamReader {
    /// Waits (briefly, on the caller's thread) until the ring holds `frames` frames or the
    /// decoder finished, so the prompt starts without a gap.
    fn wait_for(&self, frames: usize) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let ready = || match &self.ring {
            Ring::Samples(c) => c.slots() >= frames * CORE_FRAME_SAMPLES,
            Ring::Frames(c) => c.slots() >= frames,
        };
        while !ready() && !self.shared.finished.load(Ordering::Acquire) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Whether the stream gives whole frames ([`read_frame`](Self::read_frame)) rather than
    /// samples ([`read`](Self::read)).
    pub(crate) fn is_framed(&self) -> bool {
        matches!(self.ring, Ring::Frames(_))
    }

    /// The next whole frame, with its packet if it has one. Wait-free; allocates nothing.
    pub(crate) fn read_frame(&mut self, out: &mut PlayerFrame) -> FrameRead {
        let Ring::Frames(consumer) = &mut self.ring else {
            return FrameRead::Ended { failed: true };
        };
        let finished = self.shared.finished.load(Ordering::Acquire);
        if let Ok(frame) = consumer.pop() {
            *out = frame;
            return FrameRead::Frame;
        }
        if finished {
            return FrameRead::Ended {
                failed: self.shared.failed.load(Ordering::Relaxed),
            };
        }
        FrameRead::Behind
    }

    /// Copies up to `out.len()` samples. Wait-free; allocates nothing.
    pub(crate) fn read(&mut self, out: &mut [f32]) -> StreamRead {
        let Ring::Samples(consumer) = &mut self.ring else {
            return StreamRead::Ended { n: 0, failed: true };
        };
        let finished = self.shared.finished.load(Ordering::Acquire);
        let n = consumer.slots().min(out.len());
        if n > 0
            && let Ok(chunk) = consumer.read_chunk(n)
        {
            let (a, b) = chunk.as_slices();
            out[..a.len()].copy_from_slice(a);
            out[a.len()..n].copy_from_slice(b);
            chunk.commit_all();
        }
        if finished && consumer.is_empty() {
            return StreamRead::Ended {
                n,
                failed: self.shared.failed.load(Ordering::Relaxed),
            };
        }
        StreamRead::More(n)
    }
}

/// The decoder thread: passes over the file (one, or until the reader is dropped when looped),
/// pushing mono 48 kHz into the ring; exits when the audio side drops its end.
fn decode(
    path: PathBuf,
    rate: u32,
    looped: bool,
    mut producer: rtrb::Producer<f32>,
    shared: &StreamShared,
) {
    run_decoder(&path, shared, || {
        let mut resampler = if rate == CORE_SAMPLE_RATE {
            None
        } else {
            Some(FrameResampler::new(rate, CORE_SAMPLE_RATE, BLOCK).map_err(|e| e.to_string())?)
        };
        let mut block = Vec::with_capacity(BLOCK);
        let (mut real_in, mut pushed) = (0u64, 0u64);
        loop {
            let reader = hound::WavReader::open(&path).map_err(|e| e.to_string())?;
            let spec = reader.spec();
            let channels = usize::from(spec.channels);
            let frames = MonoFrames::new(reader, channels);
            let before = real_in;
            for sample in frames {
                block.push(sample.map_err(|e| format!("reading {}: {e}", path.display()))?);
                real_in += 1;
                if block.len() == BLOCK {
                    pushed += emit(&mut resampler, &block, &mut producer)?;
                    block.clear();
                }
            }
            if !looped {
                break;
            }
            if real_in == before {
                // Changed on disk since it was opened; looping would spin.
                return Err(format!("{} holds no audio any more", path.display()));
            }
        }
        // The last partial block, padded; then the resampler's tail; cut to the exact length.
        let exact = real_in * u64::from(CORE_SAMPLE_RATE) / u64::from(rate);
        let mut tail = Vec::new();
        if !block.is_empty() {
            block.resize(BLOCK, 0.0);
            match resampler.as_mut() {
                None => tail.extend_from_slice(&block),
                Some(r) => tail.extend_from_slice(r.process(&block).map_err(|e| e.to_string())?),
            }
        }
        if let Some(r) = resampler.as_mut() {
            tail.extend(r.drain().map_err(|e| e.to_string())?);
        }
        tail.truncate(exact.saturating_sub(pushed) as usize);
        push_all(&mut producer, &tail)?;
        Ok(())
    });
}

const ABANDONED: &str = "player dropped the stream";

/// Runs a decoder thread's work, then tells the reader the stream is over: failed (and logged)
/// on an error other than the reader having gone.
fn run_decoder(path: &Path, shared: &StreamShared, work: impl FnOnce() -> Result<(), String>) {
    if let Err(e) = work()
        && e != ABANDONED
    {
        tracing::warn!(path = %path.display(), error = %e, "streamed prompt stopped");
        shared.failed.store(true, Ordering::Relaxed);
    }
    shared.finished.store(true, Ordering::Release);
}

/// What one pass over an Ogg/Opus file plays: `frames` samples after the first `pre_skip`.
struct OggPass {
    pre_skip: usize,
    frames: u64,
}

/// The decoder thread of an Ogg/Opus prompt: decodes page by page (already 48 kHz, so no
/// resampling), drops the pre-skip, stops each pass at the length the last granule position
/// gave, and pushes into the ring; passes again when looped.
fn decode_ogg(
    path: PathBuf,
    pass: OggPass,
    looped: bool,
    mut producer: rtrb::Producer<f32>,
    shared: &StreamShared,
) {
    use crate::ogg_opus::{OpusStream, PageReader, clamp};
    run_decoder(&path, shared, || {
        let mut out = Vec::new();
        loop {
            let file = File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
            let mut pages = PageReader::new(BufReader::new(file));
            let mut stream = OpusStream::new(path.clone());
            let (mut skip, mut left) = (pass.pre_skip, pass.frames);
            while left > 0 {
                let Some(page) = next_page(&mut pages, &path)? else {
                    break;
                };
                out.clear();
                let end = stream.feed(&page, &mut out).map_err(|e| e.to_string())?;
                let from = skip.min(out.len());
                skip -= from;
                let to = from + (out.len() - from).min(usize::try_from(left).unwrap_or(usize::MAX));
                clamp(&mut out[from..to]);
                push_all(&mut producer, &out[from..to])?;
                left -= (to - from) as u64;
                if end {
                    break;
                }
            }
            if !looped {
                return Ok(());
            }
            if left == pass.frames {
                // Changed on disk since it was opened; looping would spin.
                return Err(format!("{} holds no audio any more", path.display()));
            }
        }
    });
}

/// The decoder thread of an Ogg/Opus prompt whose packets pass through: decodes page by page
/// into whole frames from the first decoded sample (no trimming: every frame is a packet's
/// decoding, or the audio of several), pushes them into the frame ring with their packets;
/// passes again when looped.
fn decode_ogg_frames(
    path: PathBuf,
    looped: bool,
    mut producer: rtrb::Producer<PlayerFrame>,
    shared: &StreamShared,
) {
    use crate::ogg_opus::{AudioPacket, FrameAligner, OpusStream, PageReader};
    run_decoder(&path, shared, || {
        let mut push = |frame: &PlayerFrame| -> Result<(), String> {
            loop {
                if producer.is_abandoned() {
                    return Err(ABANDONED.to_string());
                }
                match producer.push(*frame) {
                    Ok(()) => return Ok(()),
                    Err(rtrb::PushError::Full(_)) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        };
        loop {
            let file = File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
            let mut pages = PageReader::new(BufReader::new(file));
            let mut stream = OpusStream::new(path.clone());
            let mut aligner = FrameAligner::new();
            let mut frames = 0u64;
            while let Some(page) = next_page(&mut pages, &path)? {
                let mut failure = None;
                let end = stream
                    .feed_packets(&page, &mut |p: AudioPacket<'_>| {
                        let mut counted = |f: &PlayerFrame| {
                            frames += 1;
                            push(f)
                        };
                        if let Err(e) = aligner.push(&p, &mut counted) {
                            failure = Some(e);
                        }
                        Ok(())
                    })
                    .map_err(|e| e.to_string())?;
                if let Some(e) = failure {
                    return Err(e);
                }
                if end {
                    break;
                }
            }
            aligner.finish(&mut |f: &PlayerFrame| {
                frames += 1;
                push(f)
            })?;
            if !looped {
                return Ok(());
            }
            if frames == 0 {
                // Changed on disk since it was opened; looping would spin.
                return Err(format!("{} holds no audio any more", path.display()));
            }
        }
    });
}

fn emit(
    resampler: &mut Option<FrameResampler>,
    block: &[f32],
    producer: &mut rtrb::Producer<f32>,
) -> Result<u64, String> {
    match resampler.as_mut() {
        None => {
            push_all(producer, block)?;
            Ok(block.len() as u64)
        }
        Some(r) => {
            let out = r.process(block).map_err(|e| e.to_string())?;
            let n = out.len() as u64;
            // `out` borrows the resampler; push from a copy-free loop.
            push_all(producer, out)?;
            Ok(n)
        }
    }
}

/// Pushes every sample, sleeping while the ring is full; stops when the reader is gone.
fn push_all(producer: &mut rtrb::Producer<f32>, mut samples: &[f32]) -> Result<(), String> {
    while !samples.is_empty() {
        if producer.is_abandoned() {
            return Err(ABANDONED.to_string());
        }
        let n = producer.slots().min(samples.len());
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if let Ok(chunk) = producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(samples[..n].iter().copied());
        }
        samples = &samples[n..];
    }
    Ok(())
}

/// Down-mixes a WAV reader's interleaved samples to mono `f32`.
struct MonoFrames {
    ints: Option<hound::WavIntoSamples<BufReader<File>, i32>>,
    floats: Option<hound::WavIntoSamples<BufReader<File>, f32>>,
    channels: usize,
    scale: f32,
}

impl MonoFrames {
    fn new(reader: hound::WavReader<BufReader<File>>, channels: usize) -> Self {
        let spec = reader.spec();
        let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
        match spec.sample_format {
            hound::SampleFormat::Float => Self {
                ints: None,
                floats: Some(reader.into_samples()),
                channels,
                scale,
            },
            hound::SampleFormat::Int => Self {
                ints: Some(reader.into_samples()),
                floats: None,
                channels,
                scale,
            },
        }
    }

    fn sample(&mut self) -> Option<Result<f32, hound::Error>> {
        if let Some(it) = self.ints.as_mut() {
            let scale = self.scale;
            return it.next().map(|r| r.map(|s| s as f32 * scale));
        }
        self.floats.as_mut()?.next().map(|r| {
            r.map(|s| {
                if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            })
        })
    }
}

impl Iterator for MonoFrames {
    type Item = Result<f32, hound::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut acc = 0.0f32;
        for c in 0..self.channels {
            match self.sample() {
                Some(Ok(s)) => acc += s,
                Some(Err(e)) => return Some(Err(e)),
                None if c == 0 => return None,
                None => {
                    return Some(Err(hound::Error::FormatError("file ends inside a frame")));
                }
            }
        }
        Some(Ok(acc / self.channels as f32))
    }
}

/// The next Ogg page of the file at `path` (`None` at its end), a failure said with the path.
fn next_page<'a, R: Read>(
    pages: &'a mut crate::ogg_opus::PageReader<R>,
    path: &Path,
) -> Result<Option<crate::ogg_opus::Page<'a>>, String> {
    use crate::ogg_opus::PageError;
    pages.next().map_err(|e| match e {
        PageError::Io(e) => format!("reading {}: {e}", path.display()),
        PageError::Bad(reason) => format!("{}: {reason}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::AudioClip;

    fn samples_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../media-samples")
    }

    /// Reads a whole stream, waiting for the decoder when it is behind.
    fn read_all(reader: &mut StreamReader) -> (Vec<f32>, bool) {
        let mut all = Vec::new();
        let mut buf = [0.0f32; CORE_FRAME_SAMPLES];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "stream never ended");
            match reader.read(&mut buf) {
                StreamRead::More(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if n < buf.len() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                StreamRead::Ended { n, failed } => {
                    all.extend_from_slice(&buf[..n]);
                    return (all, failed);
                }
            }
        }
    }

    #[test]
    fn a_streamed_file_matches_the_decoded_one() {
        for name in [
            "john-speech.wav",
            "stereo-440l-1000r-44k1.wav",
            "tone-440hz-48k.wav",
        ] {
            let path = samples_dir().join(name);
            let decoded = AudioClip::open(&path).unwrap();
            let clip = StreamedClip::open(&path).unwrap();
            let (streamed, failed) = read_all(&mut clip.start(false).unwrap());
            assert!(!failed, "{name}");
            let want = decoded.samples();
            assert_eq!(streamed.len(), want.len(), "{name}");
            // Two FFT resamplers chunked differently agree to within one 48 kHz sample of
            // timing (the delay each trims is rounded to whole samples): for these files, whose
            // steepest content is a 1 kHz tone at 0.25 (at most 0.033 per sample), that bounds
            // the difference at 0.035. Away from the first and last 2 ms, where each sees the
            // clip's edge differently.
            let interior = 100..want.len() - 100;
            let err = streamed[interior.clone()]
                .iter()
                .zip(&want[interior])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.035, "{name}: max difference {err}");
        }
    }

    #[test]
    fn a_streamed_ogg_opus_file_is_the_decoded_one() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for name in [
            "prompt-16k-10ms.opus",
            "prompt-16k-40ms.opus",
            "stereo-440l-1000r.opus",
        ] {
            let path = fixtures.join(name);
            let decoded = AudioClip::open(&path).unwrap();
            let clip = StreamedClip::open(&path).unwrap();
            assert!(!clip.passes_through(), "{name}");
            assert_eq!(clip.source_format(), decoded.source_format(), "{name}");
            assert_eq!(clip.duration(), decoded.duration(), "{name}");
            let (streamed, failed) = read_all(&mut clip.start(false).unwrap());
            assert!(!failed, "{name}");
            // The same decoder over the same packets: the same samples.
            assert_eq!(streamed, decoded.samples(), "{name}");
        }
    }

    #[test]
    fn a_streamed_ogg_opus_file_that_passes_through_gives_the_decoded_ones_frames() {
        use crate::playback::{PlayMode, PromptPlayer};
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prompt-16k.opus");
        let decoded = AudioClip::open(&path).unwrap();
        let clip = StreamedClip::open(&path).unwrap();
        assert!(clip.passes_through());
        assert_eq!(clip.duration(), decoded.duration());
        let frames = |play: &dyn Fn(&crate::playback::PromptQueue)| {
            let (mut player, queue) = PromptPlayer::new(2);
            play(&queue);
            let mut frame = PlayerFrame::SILENT;
            let mut all = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while player.is_playing() || all.is_empty() {
                assert!(Instant::now() < deadline, "never ended");
                let underruns = player.counters().stream_underruns;
                let got = player.next_player_frame(&mut frame);
                if player.counters().stream_underruns > underruns {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                if got {
                    all.push(frame);
                }
            }
            all
        };
        let whole = frames(&|q| {
            q.play(&decoded, PlayMode::Once).unwrap();
        });
        let streamed = frames(&|q| {
            q.play_streamed(&clip, PlayMode::Once).unwrap();
        });
        assert_eq!(whole.len(), decoded.passthrough_frames());
        assert_eq!(whole.len(), streamed.len());
        for (k, (a, b)) in whole.iter().zip(&streamed).enumerate() {
            assert_eq!(a.pcm, b.pcm, "frame {k}");
            assert!(a.packet.is_some() && a.packet == b.packet, "frame {k}");
        }
        // The frames hold the file's whole decoding: the clip's samples from the pre-skip on.
        let pcm: Vec<f32> = whole.iter().flat_map(|f| f.pcm).collect();
        let skip = pcm.len() - decoded.samples().len();
        let found = (0..skip + 1)
            .find(|&s| pcm[s..s + decoded.samples().len()] == *decoded.samples())
            .expect("the trimmed samples inside the frames");
        assert_eq!(found, 312, "opusenc's pre-skip");
    }

    #[test]
    fn a_looped_ogg_opus_stream_plays_every_pass_whole() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stereo-440l-1000r.opus");
        let decoded = AudioClip::open(&path).unwrap();
        let one = decoded.samples();
        let mut reader = StreamedClip::open(&path).unwrap().start(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0.0f32; CORE_FRAME_SAMPLES];
        while got.len() < 2 * one.len() + CORE_FRAME_SAMPLES {
            match reader.read(&mut buf) {
                StreamRead::More(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if n < buf.len() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                StreamRead::Ended { .. } => panic!("a looped stream ended"),
            }
        }
        assert_eq!(&got[..one.len()], one);
        // Each pass restarts the decoder, so the second is the first again, sample for sample.
        assert_eq!(&got[one.len()..2 * one.len()], one);
    }

    #[test]
    fn a_looped_stream_repeats_seamlessly_until_dropped() {
        let path = samples_dir().join("tone-1khz-16k.wav");
        let clip = StreamedClip::open(&path).unwrap();
        let mut reader = clip.start(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0.0f32; CORE_FRAME_SAMPLES];
        // Five seconds of a two-second file.
        while got.len() < 5 * 48_000 {
            match reader.read(&mut buf) {
                StreamRead::More(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if n < buf.len() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                StreamRead::Ended { .. } => panic!("a looped stream ended"),
            }
        }
        // 1 kHz at 48 kHz repeats every 48 samples; the sox tone starts at phase 0 and lasts a
        // whole number of periods, so the loop point is seamless: sample i equals sample i + 48.
        for i in (2 * 48_000 - 200..2 * 48_000 + 200).step_by(7) {
            assert!((got[i] - got[i + 48]).abs() < 0.01, "discontinuity at {i}");
        }
    }

    #[test]
    fn bad_files_are_errors_at_open() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        assert!(matches!(
            StreamedClip::open(fixtures.join("not-a-wav.wav")),
            Err(OpenError::NotWav { .. })
        ));
        match StreamedClip::open(fixtures.join("truncated-data.wav")) {
            Err(OpenError::TruncatedData {
                expected, found, ..
            }) => {
                assert_eq!((expected, found), (16_000, 4_000));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            StreamedClip::open(fixtures.join("truncated-header.wav")),
            Err(OpenError::TruncatedHeader { .. })
        ));
        assert!(matches!(
            StreamedClip::open(fixtures.join("alaw-8k.wav")),
            Err(OpenError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            StreamedClip::open(fixtures.join("empty.wav")),
            Err(OpenError::Empty { .. })
        ));
        assert!(matches!(
            StreamedClip::open(fixtures.join("missing.wav")),
            Err(OpenError::Io { .. })
        ));
        assert!(matches!(
            StreamedClip::open(fixtures.join("truncated.opus")),
            Err(OpenError::Malformed { .. })
        ));
        assert!(matches!(
            StreamedClip::open(fixtures.join("vorbis.ogg")),
            Err(OpenError::UnsupportedFormat { .. })
        ));
    }
}
