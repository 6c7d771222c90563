//! The audio-streaming WebSocket: the JSON text messages ACS exchanges with the bot's
//! `transportUrl`, both ways, and a checked reader of what arrives.
//!
//! The service sends `AudioMetadata` first (encoding, rate, channels, bytes per frame), then
//! `AudioData` frames (20 ms of s16le mono PCM in base64; in unmixed mode one per participant,
//! named by raw id; `silent` when the frame is silence) and `DtmfData` when a key is pressed.
//! With bidirectional streaming the bot sends `AudioData` back (played into the call) and
//! `StopAudio` (the service drops what it has queued: barge-in).
//!
//! [`StreamReader`] refuses what a hostile or broken peer could send — not JSON, an unknown
//! kind, audio before the metadata, a frame of the wrong length, bad base64, an oversized
//! message — with a typed [`StreamError`]; the caller counts it and reads on.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// Bytes of one 20 ms s16 mono frame at 16 kHz.
pub const FRAME_BYTES_16K: usize = 640;
/// Bytes of one 20 ms s16 mono frame at 24 kHz.
pub const FRAME_BYTES_24K: usize = 960;
/// Samples of the largest frame this crate handles (24 kHz, 20 ms).
pub const MAX_FRAME_SAMPLES: usize = 480;
/// A message larger than this is refused unread: a 24 kHz frame in base64 plus its JSON is
/// under 2 KiB, so 64 KiB leaves room for any documented message.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The stream's PCM format, from `AudioMetadata`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioMetadata {
    /// The media streaming subscription this socket carries.
    pub subscription_id: String,
    /// `PCM`.
    pub encoding: String,
    /// 16000 or 24000.
    pub sample_rate: u32,
    /// 1.
    pub channels: u16,
    /// Bytes per frame (640 at 16 kHz).
    pub length: usize,
}

impl AudioMetadata {
    /// The metadata of a 16 or 24 kHz mono PCM stream.
    pub fn pcm(subscription_id: impl Into<String>, sample_rate: u32) -> Self {
        AudioMetadata {
            subscription_id: subscription_id.into(),
            encoding: "PCM".into(),
            sample_rate,
            channels: 1,
            length: sample_rate as usize / 50 * 2,
        }
    }

    /// Samples per 20 ms frame.
    pub fn frame_samples(&self) -> usize {
        self.sample_rate as usize / 50
    }
}

/// One `AudioData` frame as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioDataWire {
    /// Base64 of the s16le samples.
    pub data: String,
    /// When the frame was captured (ISO 8601), from the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Whose audio (unmixed mode), from the service.
    #[serde(
        default,
        rename = "participantRawID",
        skip_serializing_if = "Option::is_none"
    )]
    pub participant_raw_id: Option<String>,
    /// The frame is silence, from the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
}

/// One `DtmfData` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DtmfDataWire {
    /// The key: `0`–`9`, `*`, `#`, `A`–`D`.
    pub data: String,
    /// When it was pressed (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Who pressed it.
    #[serde(
        default,
        rename = "participantRawID",
        skip_serializing_if = "Option::is_none"
    )]
    pub participant_raw_id: Option<String>,
}

/// Every message of the streaming socket, as JSON (`kind` plus the kind's object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Message {
    /// Service → bot, first: the format.
    #[serde(rename = "AudioMetadata", rename_all = "camelCase")]
    AudioMetadata {
        /// The format.
        audio_metadata: AudioMetadata,
    },
    /// Both ways: one frame.
    #[serde(rename = "AudioData", rename_all = "camelCase")]
    AudioData {
        /// The frame.
        audio_data: AudioDataWire,
    },
    /// Service → bot: a key pressed.
    #[serde(rename = "DtmfData", rename_all = "camelCase")]
    DtmfData {
        /// The key.
        dtmf_data: DtmfDataWire,
    },
    /// Bot → service: drop the audio queued so far.
    #[serde(rename = "StopAudio", rename_all = "camelCase")]
    StopAudio {
        /// An empty object on the wire.
        stop_audio: StopAudioWire,
    },
}

/// `StopAudio`'s (empty) object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopAudioWire {}

impl Message {
    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An outbound (bot → service) frame of s16 samples.
    pub fn outbound_audio(samples: &[i16]) -> Self {
        Message::AudioData {
            audio_data: AudioDataWire {
                data: encode_samples(samples),
                timestamp: None,
                participant_raw_id: None,
                silent: None,
            },
        }
    }

    /// `StopAudio`.
    pub fn stop_audio() -> Self {
        Message::StopAudio {
            stop_audio: StopAudioWire {},
        }
    }
}

/// Base64 of s16 samples, little-endian.
pub fn encode_samples(samples: &[i16]) -> String {
    let mut bytes = [0u8; MAX_FRAME_SAMPLES * 2];
    let n = samples.len().min(MAX_FRAME_SAMPLES);
    for (chunk, s) in bytes.chunks_exact_mut(2).zip(&samples[..n]) {
        chunk.copy_from_slice(&s.to_le_bytes());
    }
    STANDARD.encode(&bytes[..n * 2])
}

/// Why a message from the socket was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON, or not an object with a string `kind`.
    #[error("message is not a JSON object with a kind: {0}")]
    NotJson(String),
    /// A `kind` this side does not take.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// A known kind whose object is missing or malformed.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// The message kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Audio before `AudioMetadata`.
    #[error("AudioData before AudioMetadata")]
    NoMetadata,
    /// A second `AudioMetadata` changing the format mid-stream.
    #[error("AudioMetadata changed the format mid-stream ({0})")]
    FormatChanged(String),
    /// A format this side does not play.
    #[error("unsupported audio format: {0}")]
    UnsupportedFormat(String),
    /// `data` is not base64.
    #[error("AudioData is not base64")]
    BadBase64,
    /// A frame that is not one 20 ms frame of the stream's format.
    #[error("AudioData of {actual} bytes, the stream's frames are {expected}")]
    WrongLength {
        /// Bytes per frame announced.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// A message kind the other direction sends (the bot got `StopAudio`, say).
    #[error("{0} does not travel this way")]
    WrongDirection(&'static str),
}

/// One checked frame, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioFrame {
    /// Samples (`frame_samples` of them).
    pub samples: [i16; MAX_FRAME_SAMPLES],
    /// How many of `samples` are the frame.
    pub len: usize,
    /// The speaker's raw id (unmixed mode).
    pub participant_raw_id: Option<String>,
    /// The service marked the frame silent.
    pub silent: bool,
    /// The capture time the service gave.
    pub timestamp: Option<String>,
}

impl AudioFrame {
    /// The frame's samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples[..self.len]
    }
}

/// What the reader made of one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// The stream's format (the first message).
    Metadata(AudioMetadata),
    /// A frame.
    Audio(Box<AudioFrame>),
    /// A key pressed.
    Dtmf(DtmfDataWire),
    /// The peer asked to drop queued audio.
    StopAudio,
}

/// Which side of the socket reads: the bot (reads the service's messages) or the service
/// (reads the bot's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The bot: takes `AudioMetadata`, `AudioData`, `DtmfData`.
    Bot,
    /// The service: takes `AudioData`, `StopAudio`; the format is the one it announced.
    Service,
}

/// Reads one side of a streaming socket, message by message, checking each against the
/// stream's format.
#[derive(Debug)]
pub struct StreamReader {
    side: Side,
    metadata: Option<AudioMetadata>,
}

impl StreamReader {
    /// The bot's reader: the service's `AudioMetadata` sets the format.
    pub fn bot() -> Self {
        StreamReader {
            side: Side::Bot,
            metadata: None,
        }
    }

    /// The service's reader of what the bot sends, in the format it announced.
    pub fn service(metadata: AudioMetadata) -> Self {
        StreamReader {
            side: Side::Service,
            metadata: Some(metadata),
        }
    }

    /// The stream's format, once known.
    pub fn metadata(&self) -> Option<&AudioMetadata> {
        self.metadata.as_ref()
    }

    /// Reads one text message.
    pub fn read(&mut self, text: &str) -> Result<Received, StreamError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(StreamError::TooLarge(text.len()));
        }
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| StreamError::NotJson(e.to_string()))?;
        normalize_case(&mut value, 0);
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| StreamError::NotJson("no string kind".into()))?;
        let known: &'static str = match kind {
            "AudioMetadata" => "AudioMetadata",
            "AudioData" => "AudioData",
            "DtmfData" => "DtmfData",
            "StopAudio" => "StopAudio",
            other => return Err(StreamError::UnknownKind(truncate(other))),
        };
        let message: Message =
            serde_json::from_value(value).map_err(|e| StreamError::Malformed {
                kind: known,
                reason: e.to_string(),
            })?;
        match (self.side, message) {
            (Side::Bot, Message::AudioMetadata { audio_metadata }) => {
                self.accept_metadata(audio_metadata)
            }
            (_, Message::AudioData { audio_data }) => self.audio(audio_data),
            (Side::Bot, Message::DtmfData { dtmf_data }) => Ok(Received::Dtmf(dtmf_data)),
            (Side::Service, Message::StopAudio { .. }) => Ok(Received::StopAudio),
            (_, Message::AudioMetadata { .. }) => Err(StreamError::WrongDirection("AudioMetadata")),
            (_, Message::DtmfData { .. }) => Err(StreamError::WrongDirection("DtmfData")),
            (_, Message::StopAudio { .. }) => Err(StreamError::WrongDirection("StopAudio")),
        }
    }

    fn accept_metadata(&mut self, metadata: AudioMetadata) -> Result<Received, StreamError> {
        let format = format!(
            "{} {} Hz {} channel(s), {} bytes",
            metadata.encoding, metadata.sample_rate, metadata.channels, metadata.length
        );
        if !metadata.encoding.eq_ignore_ascii_case("PCM")
            || !matches!(metadata.sample_rate, 16_000 | 24_000)
            || metadata.channels != 1
            || metadata.length != metadata.frame_samples() * 2
        {
            return Err(StreamError::UnsupportedFormat(format));
        }
        if let Some(known) = &self.metadata
            && (known.sample_rate, known.length) != (metadata.sample_rate, metadata.length)
        {
            return Err(StreamError::FormatChanged(format));
        }
        self.metadata = Some(metadata.clone());
        Ok(Received::Metadata(metadata))
    }

    fn audio(&mut self, wire: AudioDataWire) -> Result<Received, StreamError> {
        let metadata = self.metadata.as_ref().ok_or(StreamError::NoMetadata)?;
        let mut bytes = [0u8; MAX_FRAME_SAMPLES * 2];
        // A frame is at most 960 bytes: a longer base64 text is the wrong length, not worth
        // decoding.
        let decoded_max = wire.data.len() / 4 * 3;
        if decoded_max > bytes.len() + 2 {
            return Err(StreamError::WrongLength {
                expected: metadata.length,
                actual: decoded_max,
            });
        }
        let n = STANDARD
            .decode_slice(wire.data.as_bytes(), &mut bytes)
            .map_err(|_| StreamError::BadBase64)?;
        if n != metadata.length {
            return Err(StreamError::WrongLength {
                expected: metadata.length,
                actual: n,
            });
        }
        let mut frame = AudioFrame {
            samples: [0; MAX_FRAME_SAMPLES],
            len: n / 2,
            participant_raw_id: wire.participant_raw_id.filter(|p| !p.is_empty()),
            silent: wire.silent.unwrap_or(false),
            timestamp: wire.timestamp,
        };
        for (s, b) in frame.samples.iter_mut().zip(bytes[..n].chunks_exact(2)) {
            *s = i16::from_le_bytes([b[0], b[1]]);
        }
        Ok(Received::Audio(Box::new(frame)))
    }
}

/// Microsoft's own SDKs and samples disagree on casing (`{"Kind":"AudioData","AudioData":
/// {"Data":…}}` in C#, `"kind":"audioData"` in JavaScript, `"kind":"AudioData","audioData"`
/// in Java and the docs), and the service takes them all: keys are read with a lower-case
/// first letter and `kind` with an upper-case one, two levels deep (the message and its
/// object).
fn normalize_case(value: &mut serde_json::Value, depth: usize) {
    let serde_json::Value::Object(map) = value else {
        return;
    };
    let needs = map
        .keys()
        .any(|k| k.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
    if needs {
        let taken = std::mem::take(map);
        for (key, v) in taken {
            let mut chars = key.chars();
            let key = match chars.next() {
                Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                None => key,
            };
            // A key given twice in two casings: the first one wins.
            map.entry(key).or_insert(v);
        }
    }
    if depth == 0
        && let Some(serde_json::Value::String(kind)) = map.get_mut("kind")
        && let Some(first) = kind.chars().next()
    {
        *kind = first.to_ascii_uppercase().to_string() + &kind[first.len_utf8()..];
    }
    if depth == 0 {
        for v in map.values_mut() {
            normalize_case(v, depth + 1);
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metadata_json(rate: u32) -> String {
        json!({"kind": "AudioMetadata", "audioMetadata": {
            "subscriptionId": "89e8cb59-b991-48b0-b154-1db84f16a077",
            "encoding": "PCM", "sampleRate": rate, "channels": 1, "length": rate / 50 * 2}})
        .to_string()
    }

    fn frame_json(samples: &[i16], who: Option<&str>) -> String {
        let mut v = json!({"kind": "AudioData", "audioData": {
            "timestamp": "2024-11-05T10:00:00.000Z", "data": encode_samples(samples), "silent": false}});
        if let Some(who) = who {
            v["audioData"]["participantRawID"] = json!(who);
        }
        v.to_string()
    }

    #[test]
    fn metadata_then_frames() {
        let mut reader = StreamReader::bot();
        let Received::Metadata(m) = reader.read(&metadata_json(16_000)).unwrap() else {
            panic!("metadata first")
        };
        assert_eq!(
            (m.sample_rate, m.length, m.frame_samples()),
            (16_000, 640, 320)
        );
        let samples: Vec<i16> = (0..320).map(|i| (i * 100 - 16_000) as i16).collect();
        let Received::Audio(frame) = reader
            .read(&frame_json(&samples, Some("4:+14255550123")))
            .unwrap()
        else {
            panic!("audio")
        };
        assert_eq!(frame.samples(), &samples[..]);
        assert_eq!(frame.participant_raw_id.as_deref(), Some("4:+14255550123"));
        assert!(!frame.silent);
        let dtmf = json!({"kind": "DtmfData", "dtmfData": {"data": "5"}}).to_string();
        assert!(matches!(reader.read(&dtmf), Ok(Received::Dtmf(d)) if d.data == "5"));
    }

    #[test]
    fn every_bad_message_is_a_typed_error() {
        let mut reader = StreamReader::bot();
        let tone: Vec<i16> = vec![1000; 320];
        assert_eq!(
            reader.read(&frame_json(&tone, None)),
            Err(StreamError::NoMetadata)
        );
        assert!(matches!(
            reader.read("not json"),
            Err(StreamError::NotJson(_))
        ));
        assert!(matches!(reader.read("[1,2]"), Err(StreamError::NotJson(_))));
        assert_eq!(
            reader.read(r#"{"kind":"Video"}"#),
            Err(StreamError::UnknownKind("Video".into()))
        );
        assert!(matches!(
            reader.read(r#"{"kind":"AudioData"}"#),
            Err(StreamError::Malformed {
                kind: "AudioData",
                ..
            })
        ));
        let huge = format!(r#"{{"kind":"AudioData","x":"{}"}}"#, "a".repeat(10 << 20));
        assert_eq!(reader.read(&huge), Err(StreamError::TooLarge(huge.len())));
        let stereo = metadata_json(16_000).replace("\"channels\":1", "\"channels\":2");
        assert!(matches!(
            reader.read(&stereo),
            Err(StreamError::UnsupportedFormat(_))
        ));
        reader.read(&metadata_json(16_000)).unwrap();
        assert!(matches!(
            reader.read(&metadata_json(24_000)),
            Err(StreamError::FormatChanged(_))
        ));
        assert_eq!(
            reader.read(&frame_json(&tone[..160], None)),
            Err(StreamError::WrongLength {
                expected: 640,
                actual: 320
            })
        );
        assert!(matches!(
            reader.read(&frame_json(&vec![0; 2000], None)),
            Err(StreamError::WrongLength { expected: 640, .. })
        ));
        let bad64 = json!({"kind": "AudioData", "audioData": {"data": "@@@@"}}).to_string();
        assert_eq!(reader.read(&bad64), Err(StreamError::BadBase64));
        assert_eq!(
            reader.read(&Message::stop_audio().to_json()),
            Err(StreamError::WrongDirection("StopAudio"))
        );
        // After all that, frames still read.
        assert!(matches!(
            reader.read(&frame_json(&tone, None)),
            Ok(Received::Audio(_))
        ));
    }

    #[test]
    fn every_casing_microsofts_sdks_and_samples_use_is_read() {
        let samples = [7i16; 320];
        let data = encode_samples(&samples);
        let mut service = StreamReader::service(AudioMetadata::pcm("s", 16_000));
        for text in [
            // C# samples.
            json!({"Kind": "AudioData", "AudioData": {"Data": data}, "StopAudio": null}),
            // JavaScript SDK.
            json!({"kind": "audioData", "audioData": {"data": data, "isSilent": false}, "stopAudio": {}}),
            // Java SDK.
            json!({"kind": "AudioData", "audioData": {"data": data, "timestamp": null,
                   "participant": null, "isSilent": false}, "stopAudio": null}),
        ] {
            let Ok(Received::Audio(frame)) = service.read(&text.to_string()) else {
                panic!("{text}")
            };
            assert_eq!(frame.samples(), &samples[..]);
        }
        for text in [
            json!({"Kind": "StopAudio", "AudioData": null, "StopAudio": {}}),
            json!({"kind": "stopAudio", "stopAudio": {}}),
        ] {
            assert_eq!(
                service.read(&text.to_string()),
                Ok(Received::StopAudio),
                "{text}"
            );
        }
    }

    #[test]
    fn the_bots_messages_as_the_service_reads_them() {
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&Message::stop_audio().to_json()).unwrap(),
            json!({"kind": "StopAudio", "stopAudio": {}})
        );
        let samples = [7i16; 480];
        let out = Message::outbound_audio(&samples).to_json();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["kind"], "AudioData");
        assert_eq!(v["audioData"].as_object().unwrap().len(), 1, "{out}");
        let mut service = StreamReader::service(AudioMetadata::pcm("s", 24_000));
        let Received::Audio(frame) = service.read(&out).unwrap() else {
            panic!("audio")
        };
        assert_eq!(frame.samples(), &samples[..]);
        assert_eq!(
            service.read(&Message::stop_audio().to_json()),
            Ok(Received::StopAudio)
        );
        assert_eq!(
            service.read(&metadata_json(16_000)),
            Err(StreamError::WrongDirection("AudioMetadata"))
        );
    }
}
