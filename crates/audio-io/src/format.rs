//! What a prompt file is before it is decoded: its format ([`SourceFormat`], [`Encoding`]),
//! the limits on what is loaded ([`MAX_CLIP_DURATION`], [`MAX_CLIP_FILE_BYTES`]) and every way
//! a file can be refused ([`OpenError`]), shared by the decoded clip
//! ([`AudioClip`](crate::clip::AudioClip)), the streamed one
//! ([`StreamedClip`](crate::stream::StreamedClip)) and the Ogg/Opus reader.
//!
//! The modules depend one way: format → clip and stream → playback.

use std::path::PathBuf;
use std::time::Duration;

use crate::resample::ResampleError;

/// Why a WAV file cannot be used as a prompt.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a RIFF/WAVE file at all.
    #[error("{path} is not a WAV file ({reason})")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What was missing.
        reason: &'static str,
    },
    /// The file ends inside the WAV header.
    #[error("{path} is truncated: it ends inside the WAV header")]
    TruncatedHeader {
        /// The file.
        path: PathBuf,
    },
    /// The header promises more samples than the file holds.
    #[error("{path} is truncated: the header promises {expected} samples, the file holds {found}")]
    TruncatedData {
        /// The file.
        path: PathBuf,
        /// Samples (all channels) the header announces.
        expected: u64,
        /// Samples actually present.
        found: u64,
    },
    /// A WAV whose header is inconsistent.
    #[error("{path} is a malformed WAV file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// hound's description.
        reason: &'static str,
    },
    /// A WAV in an encoding this crate does not decode (only integer PCM of 8–32 bits and 32-bit
    /// float are supported).
    #[error("{path} uses an unsupported WAV encoding: {encoding}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The encoding, e.g. "format tag 0x0006 (A-law)".
        encoding: String,
    },
    /// The sample rate is zero or beyond what any audio file uses.
    #[error("{path} has an unsupported sample rate of {rate} Hz")]
    UnsupportedRate {
        /// The file.
        path: PathBuf,
        /// The rate in the header.
        rate: u32,
    },
    /// The file holds no audio.
    #[error("{path} holds no audio samples")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Longer than [`MAX_CLIP_DURATION`], which is decoded into memory up front.
    #[error("{path} lasts {seconds:.0} s or more; prompts are limited to {} s", MAX_CLIP_DURATION.as_secs())]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Its duration, or how much of it was decoded before decoding stopped.
        seconds: f64,
    },
    /// Bigger than [`MAX_CLIP_FILE_BYTES`]: refused before it is read.
    #[error(
        "{path} is {bytes} bytes; files of more than {} bytes are not loaded (stream them)",
        MAX_CLIP_FILE_BYTES
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Resampling to 48 kHz failed.
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

/// Longest prompt decoded into memory: an hour is 691 MB of 48 kHz `f32`, so stop at 30 minutes
/// (345 MB) — far beyond any IVR prompt.
pub const MAX_CLIP_DURATION: Duration = Duration::from_secs(30 * 60);

/// The largest file [`AudioClip::open`](crate::clip::AudioClip::open) reads: 30 minutes of 96 kHz stereo 24-bit WAV, with
/// room to spare. Longer prompts are streamed (`PromptQueue::play_streamed`), not loaded.
pub const MAX_CLIP_FILE_BYTES: u64 = 1 << 30;

/// What the file was before conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFormat {
    /// Sample rate of the file.
    pub sample_rate: u32,
    /// Channels in the file (down-mixed to mono).
    pub channels: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// How the samples are coded.
    pub encoding: Encoding,
}

/// How a prompt file's samples are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Integer PCM WAV.
    PcmInt,
    /// IEEE float WAV (or samples given in memory).
    PcmFloat,
    /// Ogg/Opus.
    Opus,
}

pub(crate) fn wav_encoding(spec: hound::WavSpec) -> Encoding {
    match spec.sample_format {
        hound::SampleFormat::Float => Encoding::PcmFloat,
        hound::SampleFormat::Int => Encoding::PcmInt,
    }
}

pub(crate) fn header_error(e: hound::Error, bytes: &[u8], path: PathBuf) -> OpenError {
    match e {
        hound::Error::IoError(_) => {
            // The header ran out. A file that starts like a WAV (as far as it goes) was cut
            // short; anything else is not a WAV.
            let riff_wave =
                bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE";
            let riff_prefix = !bytes.is_empty()
                && bytes.len() < 12
                && b"RIFF".starts_with(&bytes[..bytes.len().min(4)]);
            if riff_wave || riff_prefix {
                OpenError::TruncatedHeader { path }
            } else {
                OpenError::NotWav {
                    path,
                    reason: "no RIFF/WAVE header",
                }
            }
        }
        hound::Error::FormatError(reason @ ("no RIFF tag found" | "no WAVE tag found")) => {
            OpenError::NotWav { path, reason }
        }
        hound::Error::FormatError(reason) => OpenError::Malformed { path, reason },
        hound::Error::Unsupported => OpenError::UnsupportedFormat {
            path,
            encoding: describe_format_tag(bytes),
        },
        other => OpenError::UnsupportedFormat {
            path,
            encoding: other.to_string(),
        },
    }
}

/// Names the encoding of a WAV hound refused, from its `fmt ` chunk.
fn describe_format_tag(bytes: &[u8]) -> String {
    let Some(tag) = find_chunk(bytes, b"fmt ")
        .and_then(|(at, _)| bytes.get(at..at + 2))
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
    else {
        return "unknown encoding".to_string();
    };
    let name = match tag {
        0x0002 => "Microsoft ADPCM",
        0x0006 => "A-law",
        0x0007 => "µ-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG",
        0x0055 => "MP3",
        0xFFFE => "extensible, unsupported sub-format",
        _ => "unknown",
    };
    format!("format tag 0x{tag:04X} ({name})")
}

/// Finds a RIFF chunk in the first bytes of a file: (offset of its data, its length).
pub(crate) fn find_chunk(bytes: &[u8], id: &[u8; 4]) -> Option<(usize, usize)> {
    let mut pos = 12usize;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        if &bytes[pos..pos + 4] == id {
            return Some((pos + 8, len));
        }
        pos = pos.checked_add(8)?.checked_add(len)?.checked_add(len & 1)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_tags_are_named() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x12\0\0\0\x06\0\x01\0".to_vec();
        wav.extend_from_slice(&[0; 16]);
        assert_eq!(describe_format_tag(&wav), "format tag 0x0006 (A-law)");
        assert_eq!(describe_format_tag(b"RIFF"), "unknown encoding");
    }
}
