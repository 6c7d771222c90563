//! A prompt decoded into memory: [`AudioClip::open`] reads a WAV file of any common rate,
//! channel count and PCM/float sample format (or an Ogg/Opus file, told apart by its content),
//! down-mixes it to mono and resamples it (rubato) to the media core's 48 kHz — up front, so
//! that playing is only copying. Every kind of bad file is a typed
//! [`OpenError`] at open time, before the call starts. Prompts too
//! long to hold are streamed instead ([`StreamedClip`](crate::stream::StreamedClip)).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::format::{
    Encoding, MAX_CLIP_DURATION, MAX_CLIP_FILE_BYTES, OpenError, SourceFormat, header_error,
    wav_encoding,
};
use crate::frame::CORE_SAMPLE_RATE;
use crate::ogg_opus::FramePackets;
use crate::resample::resample_clip;

/// A prompt decoded to mono 48 kHz `f32`, ready to play. Cloning shares the samples.
///
/// An Ogg/Opus clip whose packets are 20 ms mono frames also keeps those packets: it plays in
/// whole frames from the file's first decoded sample, each frame with its packet, so that a
/// call sending nothing else sends the packets as they are (Opus passthrough, see
/// `PipelineConfig::opus_passthrough` in appmedia-media). It then plays the encoder's
/// pre-skip (6.5 ms from opusenc, quiet) and the end of the last packet too: what every
/// decoder of the packets hears.
#[derive(Debug, Clone)]
pub struct AudioClip {
    /// For an Ogg/Opus clip, every decoded sample in whole 20 ms frames; `samples()` is the
    /// `trimmed` part.
    samples: Arc<[f32]>,
    trimmed: std::ops::Range<usize>,
    source: SourceFormat,
    packets: Option<Arc<FramePackets>>,
}

impl AudioClip {
    /// Opens and converts a WAV file.
    pub fn open(path: impl AsRef<Path>) -> Result<AudioClip, OpenError> {
        let path = path.as_ref();
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        // The size before the read: a huge file is refused without being loaded.
        let size = file.metadata().map_err(io)?.len();
        if size > MAX_CLIP_FILE_BYTES {
            return Err(OpenError::TooLarge {
                path: path.to_path_buf(),
                bytes: size,
            });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        if crate::ogg_opus::is_ogg(&bytes) {
            return Self::from_ogg_opus_bytes(&bytes, path);
        }
        Self::from_wav_bytes(&bytes, path)
    }

    /// Decodes an Ogg/Opus file already in memory; `name` is used in errors.
    pub fn from_ogg_opus_bytes(
        bytes: &[u8],
        name: impl AsRef<Path>,
    ) -> Result<AudioClip, OpenError> {
        let path = name.as_ref().to_path_buf();
        if bytes.len() as f64 > MAX_CLIP_DURATION.as_secs_f64() * 64_000.0 {
            // Far more bytes than 30 minutes of Opus at a generous 512 kb/s could need.
            return Err(OpenError::TooLong {
                path,
                seconds: f64::INFINITY,
            });
        }
        let budget = (MAX_CLIP_DURATION.as_secs() * u64::from(CORE_SAMPLE_RATE)) as usize;
        let decoded = crate::ogg_opus::decode(bytes, path.clone(), budget)?;
        let seconds = decoded.trimmed.len() as f64 / f64::from(CORE_SAMPLE_RATE);
        if seconds > MAX_CLIP_DURATION.as_secs_f64() {
            return Err(OpenError::TooLong { path, seconds });
        }
        Ok(AudioClip {
            samples: decoded.pcm.into(),
            trimmed: decoded.trimmed,
            source: SourceFormat {
                sample_rate: CORE_SAMPLE_RATE,
                channels: u16::from(decoded.channels),
                bits_per_sample: 0,
                encoding: Encoding::Opus,
            },
            packets: decoded.packets.map(Arc::new),
        })
    }

    /// Converts a WAV file already in memory; `name` is used in errors.
    pub fn from_wav_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<AudioClip, OpenError> {
        let path = name.as_ref().to_path_buf();
        let reader = match hound::WavReader::new(bytes) {
            Ok(r) => r,
            Err(e) => return Err(header_error(e, bytes, path)),
        };
        let spec = reader.spec();
        if spec.sample_rate == 0 || spec.sample_rate > 768_000 {
            return Err(OpenError::UnsupportedRate {
                path,
                rate: spec.sample_rate,
            });
        }
        let expected = u64::from(reader.len());
        let channels = usize::from(spec.channels);
        let bytes_per_sample = usize::from(spec.bits_per_sample).div_ceil(8).max(1);
        let seconds = f64::from(reader.duration()) / f64::from(spec.sample_rate);
        // Only a file that really holds that much audio is "too long"; a header promising more
        // than the file holds is reported as truncated by the decoding below.
        if seconds > MAX_CLIP_DURATION.as_secs_f64()
            && expected.saturating_mul(bytes_per_sample as u64) <= bytes.len() as u64
        {
            return Err(OpenError::TooLong { path, seconds });
        }
        // Never trust the header for the allocation: a lying header on a small file must not
        // reserve gigabytes.
        let capacity = (expected as usize).min(bytes.len() / bytes_per_sample) / channels;
        let mut mono = Vec::with_capacity(capacity);
        let found = decode_mono(reader, spec, &mut mono).map_err(|e| match e {
            DecodeError::Eof(found) => OpenError::TruncatedData {
                path: path.clone(),
                expected,
                found,
            },
            DecodeError::Format(reason) => OpenError::Malformed {
                path: path.clone(),
                reason,
            },
        })?;
        debug_assert_eq!(found, expected);
        if mono.is_empty() {
            return Err(OpenError::Empty { path });
        }
        let samples = resample_clip(&mono, spec.sample_rate, CORE_SAMPLE_RATE)?;
        Ok(AudioClip {
            trimmed: 0..samples.len(),
            samples: samples.into(),
            packets: None,
            source: SourceFormat {
                sample_rate: spec.sample_rate,
                channels: spec.channels,
                bits_per_sample: spec.bits_per_sample,
                encoding: wav_encoding(spec),
            },
        })
    }

    /// A clip from mono samples at 48 kHz (a tone, synthesized speech); `None` when empty.
    pub fn from_samples(samples: Vec<f32>) -> Option<AudioClip> {
        if samples.is_empty() {
            return None;
        }
        Some(AudioClip {
            trimmed: 0..samples.len(),
            samples: samples.into(),
            packets: None,
            source: SourceFormat {
                sample_rate: CORE_SAMPLE_RATE,
                channels: 1,
                bits_per_sample: 32,
                encoding: Encoding::PcmFloat,
            },
        })
    }

    /// The mono 48 kHz samples (for Ogg/Opus: without the pre-skip and the end padding).
    pub fn samples(&self) -> &[f32] {
        &self.samples[self.trimmed.clone()]
    }

    /// Length of the clip.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.trimmed.len() as f64 / f64::from(CORE_SAMPLE_RATE))
    }

    /// Frames of an Ogg/Opus clip that carry their packet and can be sent as they are (0 for
    /// other clips, and for Ogg/Opus files that are stereo, have an output gain, or whose
    /// packets are not 20 ms).
    pub fn passthrough_frames(&self) -> usize {
        self.packets.as_ref().map_or(0, |p| p.count())
    }

    /// The file's original format.
    pub fn source_format(&self) -> &SourceFormat {
        &self.source
    }

    /// Every decoded sample, pre-skip and end padding included: for an Ogg/Opus clip with
    /// [`packets`](Self::packets), whole 20 ms frames, frame `n` carrying packet `n`.
    pub(crate) fn all_samples(&self) -> &[f32] {
        &self.samples
    }

    /// An Ogg/Opus clip's packets, one per 20 ms frame, when it plays in whole frames.
    pub(crate) fn packets(&self) -> Option<&FramePackets> {
        self.packets.as_deref()
    }
}

enum DecodeError {
    /// The data ended early; the count of samples read.
    Eof(u64),
    Format(&'static str),
}

/// Decodes every sample, averaging the channels of each frame. Returns the samples read.
fn decode_mono(
    mut reader: hound::WavReader<&[u8]>,
    spec: hound::WavSpec,
    out: &mut Vec<f32>,
) -> Result<u64, DecodeError> {
    let channels = usize::from(spec.channels);
    let gain = 1.0 / channels as f32;
    let mut acc = 0.0f32;
    let mut in_frame = 0usize;
    let mut count = 0u64;
    let mut push = |s: f32| {
        acc += s;
        in_frame += 1;
        if in_frame == channels {
            out.push(acc * gain);
            acc = 0.0;
            in_frame = 0;
        }
    };
    let map_err = |e: hound::Error, count: u64| match e {
        hound::Error::IoError(_) => DecodeError::Eof(count),
        hound::Error::FormatError(r) => DecodeError::Format(r),
        _ => DecodeError::Format("sample does not match the header's format"),
    };
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                let s = s.map_err(|e| map_err(e, count))?;
                // NaN or infinity in a float WAV would poison the mix; treat as silence.
                push(if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                });
                count += 1;
            }
        }
        hound::SampleFormat::Int => {
            // hound takes the valid-bits field of WAVE_FORMAT_EXTENSIBLE as is: 0 or 200
            // would underflow or overflow the shift.
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(DecodeError::Format(
                    "integer samples must have 1 to 32 bits",
                ));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            for s in reader.samples::<i32>() {
                let s = s.map_err(|e| map_err(e, count))?;
                push(s as f32 * scale);
                count += 1;
            }
        }
    }
    Ok(count)
}
