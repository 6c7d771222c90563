//! RTP (RFC 3550) packets on [`bytes::Bytes`], with RFC 8285 header extensions and the
//! RFC 6464 client-to-mixer audio level.
//!
//! Parsing never copies and never allocates: an [`RtpPacket`] keeps the buffer it was given
//! and remembers where the extension block and the payload lie in it. Every malformed input
//! is a typed [`RtpError`]; [`RtpErrorCounters`] turns those into per-kind counters for stats.
//! Building writes into a caller buffer ([`RtpPacketSpec::write`]) so a real-time sender can
//! reuse one buffer per packet.

use bytes::Bytes;
use thiserror::Error;

/// The only RTP version in use (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed header before CSRCs.
pub const FIXED_HEADER_LEN: usize = 12;
/// Most CSRCs a header can list (4-bit CC field).
pub const MAX_CSRCS: usize = 15;
/// Profile value of the RFC 8285 one-byte header form.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Profile value of the RFC 8285 two-byte header form (the low 4 bits are "appbits").
pub const TWO_BYTE_PROFILE: u16 = 0x1000;
/// Mask that tells the two-byte form regardless of its appbits.
const TWO_BYTE_PROFILE_MASK: u16 = 0xFFF0;
/// URI negotiated in SDP for the RFC 6464 audio level extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Why a byte string is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("RTP packet of {len} bytes is shorter than the 12-byte fixed header")]
    TooShort {
        /// The packet's length.
        len: usize,
    },
    /// Version field other than 2.
    #[error("RTP version {version} (only version 2 exists)")]
    BadVersion {
        /// The version field.
        version: u8,
    },
    /// The CSRC list runs past the end of the packet.
    #[error("{csrc_count} CSRCs need {needed} bytes but the packet has {len}")]
    CsrcPastEnd {
        /// The CC field.
        csrc_count: u8,
        /// Bytes the header and CSRC list need.
        needed: usize,
        /// The packet's length.
        len: usize,
    },
    /// The header extension (its 4-byte header or its declared length) runs past the end.
    #[error("header extension needs {needed} bytes but the packet has {len}")]
    ExtensionPastEnd {
        /// Bytes the extension needs.
        needed: usize,
        /// The packet's length.
        len: usize,
    },
    /// An RFC 8285 element inside the extension block runs past the block.
    #[error("header extension element id {id} at offset {offset} runs past the extension block")]
    BadExtensionElement {
        /// The element's id.
        id: u8,
        /// Its offset in the extension block.
        offset: usize,
    },
    /// The padding count (last byte) is zero or larger than what follows the header.
    #[error("padding length {padding_len} invalid with {available} bytes after the header")]
    BadPadding {
        /// The padding count.
        padding_len: u8,
        /// Bytes after the header.
        available: usize,
    },
}

/// One counter per kind of [`RtpError`], for stats: parse failures are counted, never fatal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpErrorCounters {
    /// [`RtpError::TooShort`] packets.
    pub too_short: u64,
    /// [`RtpError::BadVersion`] packets.
    pub bad_version: u64,
    /// [`RtpError::CsrcPastEnd`] packets.
    pub csrc_past_end: u64,
    /// [`RtpError::ExtensionPastEnd`] packets.
    pub extension_past_end: u64,
    /// [`RtpError::BadExtensionElement`] packets.
    pub bad_extension_element: u64,
    /// [`RtpError::BadPadding`] packets.
    pub bad_padding: u64,
}

impl RtpErrorCounters {
    /// Counts one error under its kind.
    pub fn record(&mut self, error: &RtpError) {
        let counter = match error {
            RtpError::TooShort { .. } => &mut self.too_short,
            RtpError::BadVersion { .. } => &mut self.bad_version,
            RtpError::CsrcPastEnd { .. } => &mut self.csrc_past_end,
            RtpError::ExtensionPastEnd { .. } => &mut self.extension_past_end,
            RtpError::BadExtensionElement { .. } => &mut self.bad_extension_element,
            RtpError::BadPadding { .. } => &mut self.bad_padding,
        };
        *counter += 1;
    }

    /// Every error counted so far.
    pub fn total(&self) -> u64 {
        self.too_short
            + self.bad_version
            + self.csrc_past_end
            + self.extension_past_end
            + self.bad_extension_element
            + self.bad_padding
    }
}

/// The RTP fixed header and CSRC list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    /// The marker bit (for audio: the first packet after silence).
    pub marker: bool,
    /// The payload type (7 bits).
    pub payload_type: u8,
    /// The sequence number.
    pub sequence_number: u16,
    /// The timestamp (sample clock of the payload type).
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
    csrc_count: u8,
    csrcs: [u32; MAX_CSRCS],
}

impl RtpHeader {
    /// A header without CSRCs.
    pub fn new(payload_type: u8, sequence_number: u16, timestamp: u32, ssrc: u32) -> Self {
        RtpHeader {
            marker: false,
            payload_type: payload_type & 0x7F,
            sequence_number,
            timestamp,
            ssrc,
            csrc_count: 0,
            csrcs: [0; MAX_CSRCS],
        }
    }

    /// The contributing sources (set by a mixer).
    pub fn csrcs(&self) -> &[u32] {
        &self.csrcs[..usize::from(self.csrc_count)]
    }

    /// Replaces the CSRC list; more than 15 entries cannot be written and are refused.
    pub fn set_csrcs(&mut self, csrcs: &[u32]) -> Result<(), RtpBuildError> {
        if csrcs.len() > MAX_CSRCS {
            return Err(RtpBuildError::TooManyCsrcs { count: csrcs.len() });
        }
        self.csrcs[..csrcs.len()].copy_from_slice(csrcs);
        self.csrc_count = csrcs.len() as u8;
        Ok(())
    }
}

/// Where the header extension lies inside the packet buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExtensionBlock {
    profile: u16,
    start: usize,
    len: usize,
}

/// A parsed RTP packet that borrows nothing: it owns the [`Bytes`] it was parsed from.
#[derive(Debug, Clone)]
pub struct RtpPacket {
    header: RtpHeader,
    buf: Bytes,
    extension: Option<ExtensionBlock>,
    payload_start: usize,
    payload_end: usize,
}

impl RtpPacket {
    /// Parses and validates a whole packet, including every RFC 8285 element, so that
    /// [`extensions`](Self::extensions) can be infallible afterwards.
    pub fn parse(buf: Bytes) -> Result<RtpPacket, RtpError> {
        let len = buf.len();
        if len < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort { len });
        }
        let b0 = buf[0];
        let version = b0 >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion { version });
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = b0 & 0x0F;
        let b1 = buf[1];
        let mut header = RtpHeader {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7F,
            sequence_number: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            csrc_count,
            csrcs: [0; MAX_CSRCS],
        };
        let mut pos = FIXED_HEADER_LEN;
        let csrc_end = pos + 4 * usize::from(csrc_count);
        if csrc_end > len {
            return Err(RtpError::CsrcPastEnd {
                csrc_count,
                needed: csrc_end,
                len,
            });
        }
        for (i, chunk) in buf[pos..csrc_end].chunks_exact(4).enumerate() {
            header.csrcs[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        pos = csrc_end;

        let mut extension = None;
        if has_extension {
            if pos + 4 > len {
                return Err(RtpError::ExtensionPastEnd {
                    needed: pos + 4,
                    len,
                });
            }
            let profile = u16::from_be_bytes([buf[pos], buf[pos + 1]]);
            let words = usize::from(u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]));
            let start = pos + 4;
            let end = start + 4 * words;
            if end > len {
                return Err(RtpError::ExtensionPastEnd { needed: end, len });
            }
            validate_elements(profile, &buf[start..end], start)?;
            extension = Some(ExtensionBlock {
                profile,
                start,
                len: end - start,
            });
            pos = end;
        }

        let mut payload_end = len;
        if has_padding {
            let padding_len = buf[len - 1];
            let available = len - pos;
            if padding_len == 0 || usize::from(padding_len) > available {
                return Err(RtpError::BadPadding {
                    padding_len,
                    available,
                });
            }
            payload_end = len - usize::from(padding_len);
        }
        Ok(RtpPacket {
            header,
            buf,
            extension,
            payload_start: pos,
            payload_end,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &RtpHeader {
        &self.header
    }
    /// The sequence number.
    pub fn sequence_number(&self) -> u16 {
        self.header.sequence_number
    }
    /// The timestamp.
    pub fn timestamp(&self) -> u32 {
        self.header.timestamp
    }
    /// The synchronisation source.
    pub fn ssrc(&self) -> u32 {
        self.header.ssrc
    }
    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.header.marker
    }
    /// The payload type.
    pub fn payload_type(&self) -> u8 {
        self.header.payload_type
    }

    /// The payload, without header, extension or padding.
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.payload_start..self.payload_end]
    }

    /// Number of padding bytes at the end (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }

    /// The whole packet as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The extension profile (0xBEDE, 0x100X or another profile's value), if the X bit is set.
    pub fn extension_profile(&self) -> Option<u16> {
        self.extension.map(|e| e.profile)
    }

    /// The raw extension block (after its 4-byte header), if the X bit is set.
    pub fn extension_data(&self) -> Option<&[u8]> {
        self.extension.map(|e| &self.buf[e.start..e.start + e.len])
    }

    /// The RFC 8285 elements; empty for an extension of another profile or no extension.
    pub fn extensions(&self) -> HeaderExtensions<'_> {
        match self.extension {
            Some(block) => HeaderExtensions::new(
                block.profile,
                &self.buf[block.start..block.start + block.len],
            ),
            None => HeaderExtensions::new(0, &[]),
        }
    }

    /// The data of the first RFC 8285 element with this id.
    pub fn extension(&self, id: u8) -> Option<&[u8]> {
        self.extensions().find(|e| e.id == id).map(|e| e.data)
    }

    /// The RFC 6464 audio level carried in the element with this (SDP-negotiated) id.
    pub fn audio_level(&self, id: u8) -> Option<AudioLevel> {
        self.extension(id).and_then(AudioLevel::from_element)
    }
}

fn is_two_byte(profile: u16) -> bool {
    profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE
}

/// Walks every element once so a truncated one is an error at parse time.
fn validate_elements(profile: u16, data: &[u8], block_offset: usize) -> Result<(), RtpError> {
    if profile != ONE_BYTE_PROFILE && !is_two_byte(profile) {
        return Ok(());
    }
    let mut it = HeaderExtensions::new(profile, data);
    loop {
        match it.next_checked() {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err((id, offset)) => {
                return Err(RtpError::BadExtensionElement {
                    id,
                    offset: block_offset + offset,
                });
            }
        }
    }
}

/// One RFC 8285 header extension element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// The element's id (1–14 one-byte form, 1–255 two-byte form).
    pub id: u8,
    /// The element's data.
    pub data: &'a [u8],
}

/// Iterator over the RFC 8285 elements of a packet.
#[derive(Debug, Clone)]
pub struct HeaderExtensions<'a> {
    two_byte: bool,
    data: &'a [u8],
    pos: usize,
}

impl<'a> HeaderExtensions<'a> {
    fn new(profile: u16, data: &'a [u8]) -> Self {
        let known = profile == ONE_BYTE_PROFILE || is_two_byte(profile);
        HeaderExtensions {
            two_byte: is_two_byte(profile),
            data: if known { data } else { &[] },
            pos: 0,
        }
    }

    /// Next element, or the (id, offset) of an element that runs past the block.
    fn next_checked(&mut self) -> Result<Option<HeaderExtension<'a>>, (u8, usize)> {
        loop {
            let Some(&first) = self.data.get(self.pos) else {
                return Ok(None);
            };
            let offset = self.pos;
            if first == 0 {
                // Padding byte between elements (both forms).
                self.pos += 1;
                continue;
            }
            let (id, len, header_len) = if self.two_byte {
                let Some(&len) = self.data.get(self.pos + 1) else {
                    return Err((first, offset));
                };
                (first, usize::from(len), 2)
            } else {
                let id = first >> 4;
                if id == 15 {
                    // RFC 8285 §4.2: id 15 ends processing of the whole block.
                    self.pos = self.data.len();
                    return Ok(None);
                }
                (id, usize::from(first & 0x0F) + 1, 1)
            };
            let start = self.pos + header_len;
            let end = start + len;
            if end > self.data.len() {
                return Err((id, offset));
            }
            self.pos = end;
            return Ok(Some(HeaderExtension {
                id,
                data: &self.data[start..end],
            }));
        }
    }
}

impl<'a> Iterator for HeaderExtensions<'a> {
    type Item = HeaderExtension<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        // Packets are validated at parse time; a bad element here just ends iteration.
        self.next_checked().ok().flatten()
    }
}

/// RFC 6464 audio level: the level in −dBov (0 = loudest, 127 = silence) and the voice flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// The V flag: the sender judged the frame to be voice.
    pub voice: bool,
    /// Level as a positive number of dB below overload, 0..=127.
    pub level_dbov: u8,
}

impl AudioLevel {
    /// Reads the element's first byte (the one-byte form has exactly one; the two-byte form may pad).
    pub fn from_element(data: &[u8]) -> Option<AudioLevel> {
        data.first().map(|&b| AudioLevel {
            voice: b & 0x80 != 0,
            level_dbov: b & 0x7F,
        })
    }

    /// The element byte to send.
    pub fn to_byte(self) -> u8 {
        (u8::from(self.voice) << 7) | self.level_dbov.min(127)
    }

    /// Level of a frame of f32 samples in [-1, 1], as RFC 6464 §3 defines it (RMS in dBov,
    /// clamped to 0..=127).
    pub fn from_samples(samples: &[f32], voice: bool) -> AudioLevel {
        let level_dbov = dbov_of(samples);
        AudioLevel { voice, level_dbov }
    }
}

/// RMS level in −dBov of f32 samples (full scale = 1.0), clamped to 0..=127.
pub fn dbov_of(samples: &[f32]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / samples.len() as f64).sqrt();
    if rms <= 1e-7 {
        return 127;
    }
    let db = -20.0 * rms.log10();
    db.round().clamp(0.0, 127.0) as u8
}

/// Why a packet cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpBuildError {
    #[error("{count} CSRCs given; a header holds at most 15")]
    /// More than 15 CSRCs.
    TooManyCsrcs {
        /// The CSRCs given.
        count: usize,
    },
    #[error("header extension id {id} with {len} data bytes cannot be written in RFC 8285 form")]
    /// An extension element that neither RFC 8285 form can hold.
    BadExtension {
        /// The element's id.
        id: u8,
        /// Its data length.
        len: usize,
    },
    #[error("output buffer of {capacity} bytes is too small for a {needed}-byte packet")]
    /// The output buffer is smaller than the packet.
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the buffer has.
        capacity: usize,
    },
    #[error("header extension block of {len} bytes exceeds the 16-bit length field")]
    /// The extension block is longer than its 16-bit length field can say.
    ExtensionTooLong {
        /// The block's length in bytes.
        len: usize,
    },
}

/// Everything needed to write one packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacketSpec<'a> {
    /// The fixed header and CSRCs.
    pub header: RtpHeader,
    /// Header extension elements (RFC 8285).
    pub extensions: &'a [HeaderExtension<'a>],
    /// The payload.
    pub payload: &'a [u8],
    /// Padding bytes to append (0 = none; the P bit is set otherwise).
    pub padding: u8,
}

impl<'a> RtpPacketSpec<'a> {
    /// A packet of `header` and `payload`, without extensions or padding.
    pub fn new(header: RtpHeader, payload: &'a [u8]) -> Self {
        RtpPacketSpec {
            header,
            extensions: &[],
            payload,
            padding: 0,
        }
    }

    /// The one-byte form when every element fits it (id 1..=14, 1..=16 bytes), else two-byte.
    fn uses_one_byte_form(&self) -> bool {
        self.extensions
            .iter()
            .all(|e| (1..=14).contains(&e.id) && (1..=16).contains(&e.data.len()))
    }

    fn extension_body_len(&self) -> Result<usize, RtpBuildError> {
        let one_byte = self.uses_one_byte_form();
        let mut len = 0;
        for e in self.extensions {
            if one_byte {
                len += 1 + e.data.len();
            } else {
                if e.id == 0 || e.data.len() > 255 {
                    return Err(RtpBuildError::BadExtension {
                        id: e.id,
                        len: e.data.len(),
                    });
                }
                len += 2 + e.data.len();
            }
        }
        let padded = len.div_ceil(4) * 4;
        if padded / 4 > usize::from(u16::MAX) {
            return Err(RtpBuildError::ExtensionTooLong { len: padded });
        }
        Ok(padded)
    }

    /// Bytes [`write`](Self::write) will produce.
    pub fn encoded_len(&self) -> Result<usize, RtpBuildError> {
        let ext = if self.extensions.is_empty() {
            0
        } else {
            4 + self.extension_body_len()?
        };
        Ok(FIXED_HEADER_LEN
            + 4 * self.header.csrcs().len()
            + ext
            + self.payload.len()
            + usize::from(self.padding))
    }

    /// Writes the packet into `out` and returns its length. Allocates nothing.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpBuildError> {
        let needed = self.encoded_len()?;
        if out.len() < needed {
            return Err(RtpBuildError::BufferTooSmall {
                needed,
                capacity: out.len(),
            });
        }
        let h = &self.header;
        let csrcs = h.csrcs();
        out[0] = (RTP_VERSION << 6)
            | (u8::from(self.padding > 0) << 5)
            | (u8::from(!self.extensions.is_empty()) << 4)
            | csrcs.len() as u8;
        out[1] = (u8::from(h.marker) << 7) | (h.payload_type & 0x7F);
        out[2..4].copy_from_slice(&h.sequence_number.to_be_bytes());
        out[4..8].copy_from_slice(&h.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&h.ssrc.to_be_bytes());
        let mut pos = FIXED_HEADER_LEN;
        for c in csrcs {
            out[pos..pos + 4].copy_from_slice(&c.to_be_bytes());
            pos += 4;
        }
        if !self.extensions.is_empty() {
            let one_byte = self.uses_one_byte_form();
            let body = self.extension_body_len()?;
            let profile = if one_byte {
                ONE_BYTE_PROFILE
            } else {
                TWO_BYTE_PROFILE
            };
            out[pos..pos + 2].copy_from_slice(&profile.to_be_bytes());
            out[pos + 2..pos + 4].copy_from_slice(&((body / 4) as u16).to_be_bytes());
            pos += 4;
            let body_end = pos + body;
            for e in self.extensions {
                if one_byte {
                    out[pos] = (e.id << 4) | (e.data.len() as u8 - 1);
                    pos += 1;
                } else {
                    out[pos] = e.id;
                    out[pos + 1] = e.data.len() as u8;
                    pos += 2;
                }
                out[pos..pos + e.data.len()].copy_from_slice(e.data);
                pos += e.data.len();
            }
            out[pos..body_end].fill(0);
            pos = body_end;
        }
        out[pos..pos + self.payload.len()].copy_from_slice(self.payload);
        pos += self.payload.len();
        if self.padding > 0 {
            let end = pos + usize::from(self.padding);
            out[pos..end - 1].fill(0);
            out[end - 1] = self.padding;
            pos = end;
        }
        Ok(pos)
    }

    /// Convenience for non-real-time code: writes into a new [`Bytes`].
    pub fn to_bytes(&self) -> Result<Bytes, RtpBuildError> {
        let mut v = vec![0u8; self.encoded_len()?];
        let n = self.write(&mut v)?;
        v.truncate(n);
        Ok(Bytes::from(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn header() -> RtpHeader {
        let mut h = RtpHeader::new(111, 0xFFFE, 0xDEAD_BEEF, 0x1234_5678);
        h.marker = true;
        h
    }

    #[test]
    fn parses_hand_made_minimal_packet() {
        let raw = [
            0x80, 0xEF, 0x01, 0x02, 0x00, 0x00, 0x03, 0xC0, 0xAA, 0xBB, 0xCC, 0xDD, 0xFC, 0x01,
        ];
        let p = RtpPacket::parse(Bytes::copy_from_slice(&raw)).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 111);
        assert_eq!(p.sequence_number(), 0x0102);
        assert_eq!(p.timestamp(), 960);
        assert_eq!(p.ssrc(), 0xAABB_CCDD);
        assert_eq!(p.payload(), &[0xFC, 0x01]);
        assert!(p.header().csrcs().is_empty());
        assert_eq!(p.extension_profile(), None);
    }

    #[test]
    fn round_trips_csrcs_one_byte_extensions_and_padding() {
        let mut h = header();
        h.set_csrcs(&[1, 2, 3]).unwrap();
        let level = AudioLevel {
            voice: true,
            level_dbov: 30,
        };
        let lvl = [level.to_byte()];
        let exts = [
            HeaderExtension { id: 1, data: &lvl },
            HeaderExtension {
                id: 3,
                data: &[9, 8, 7],
            },
        ];
        let spec = RtpPacketSpec {
            header: h,
            extensions: &exts,
            payload: b"opus!",
            padding: 3,
        };
        let bytes = spec.to_bytes().unwrap();
        assert_eq!(bytes.len(), spec.encoded_len().unwrap());
        let p = RtpPacket::parse(bytes).unwrap();
        assert_eq!(p.header(), &h);
        assert_eq!(p.header().csrcs(), &[1, 2, 3]);
        assert_eq!(p.extension_profile(), Some(ONE_BYTE_PROFILE));
        assert_eq!(p.audio_level(1), Some(level));
        assert_eq!(p.extension(3), Some(&[9u8, 8, 7][..]));
        assert_eq!(p.extension(2), None);
        assert_eq!(p.payload(), b"opus!");
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn long_or_high_id_elements_use_two_byte_form() {
        let big = [0x55u8; 40];
        let exts = [
            HeaderExtension { id: 20, data: &big },
            HeaderExtension { id: 2, data: &[] },
        ];
        let mut spec = RtpPacketSpec::new(header(), b"x");
        spec.extensions = &exts;
        let p = RtpPacket::parse(spec.to_bytes().unwrap()).unwrap();
        assert_eq!(p.extension_profile(), Some(TWO_BYTE_PROFILE));
        let got: Vec<_> = p.extensions().collect();
        assert_eq!(got, exts.to_vec());
        assert_eq!(p.payload(), b"x");
    }

    #[test]
    fn one_byte_form_skips_padding_and_stops_at_id_15() {
        // ext header 0xBEDE, 2 words: [pad, id1 len1: 2 bytes, id15 ..., junk]
        let mut raw = vec![0x90, 0x6F, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        raw.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02]);
        raw.extend_from_slice(&[0x00, 0x11, 0xAA, 0xBB, 0xF0, 0xFF, 0xFF, 0xFF]);
        raw.extend_from_slice(b"pl");
        let p = RtpPacket::parse(Bytes::from(raw)).unwrap();
        let got: Vec<_> = p.extensions().collect();
        assert_eq!(
            got,
            vec![HeaderExtension {
                id: 1,
                data: &[0xAA, 0xBB]
            }]
        );
        assert_eq!(p.payload(), b"pl");
    }

    #[test]
    fn unknown_profile_is_kept_raw() {
        let mut raw = vec![0x90, 0x6F, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        raw.extend_from_slice(&[0x12, 0x34, 0x00, 0x01, 1, 2, 3, 4, 0xAB]);
        let p = RtpPacket::parse(Bytes::from(raw)).unwrap();
        assert_eq!(p.extension_profile(), Some(0x1234));
        assert_eq!(p.extension_data(), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(p.extensions().count(), 0);
        assert_eq!(p.payload(), &[0xAB]);
    }

    #[test]
    fn each_malformation_has_its_error() {
        let base = [0x80u8, 0x6F, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        let parse = |v: &[u8]| RtpPacket::parse(Bytes::copy_from_slice(v));
        assert_eq!(
            parse(&base[..11]).unwrap_err(),
            RtpError::TooShort { len: 11 }
        );
        let mut v = base.to_vec();
        v[0] = 0x40;
        assert_eq!(parse(&v).unwrap_err(), RtpError::BadVersion { version: 1 });
        let mut v = base.to_vec();
        v[0] = 0x82; // two CSRCs, none present
        assert_eq!(
            parse(&v).unwrap_err(),
            RtpError::CsrcPastEnd {
                csrc_count: 2,
                needed: 20,
                len: 12
            }
        );
        let mut v = base.to_vec();
        v[0] = 0x90;
        v.extend_from_slice(&[0xBE, 0xDE]);
        assert_eq!(
            parse(&v).unwrap_err(),
            RtpError::ExtensionPastEnd {
                needed: 16,
                len: 14
            }
        );
        let mut v = base.to_vec();
        v[0] = 0x90;
        v.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02, 0x10, 0]);
        assert_eq!(
            parse(&v).unwrap_err(),
            RtpError::ExtensionPastEnd {
                needed: 24,
                len: 18
            }
        );
        let mut v = base.to_vec();
        v[0] = 0x90;
        v.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x00, 0x00, 0x13, 0x01]);
        assert_eq!(
            parse(&v).unwrap_err(),
            RtpError::BadExtensionElement { id: 1, offset: 18 }
        );
        let mut v = base.to_vec();
        v[0] = 0xA0;
        v.extend_from_slice(&[1, 2, 0]);
        assert_eq!(
            parse(&v).unwrap_err(),
            RtpError::BadPadding {
                padding_len: 0,
                available: 3
            }
        );
        let mut v = base.to_vec();
        v[0] = 0xA0;
        v.extend_from_slice(&[1, 2, 4]);
        assert_eq!(
            parse(&v).unwrap_err(),
            RtpError::BadPadding {
                padding_len: 4,
                available: 3
            }
        );
        // Padding that eats exactly the whole payload is valid.
        let mut v = base.to_vec();
        v[0] = 0xA0;
        v.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse(&v).unwrap().payload(), &[] as &[u8]);
    }

    #[test]
    fn counters_count_by_kind() {
        let mut c = RtpErrorCounters::default();
        for raw in [&[0u8; 3][..], &[0x40u8; 12][..], &[0x8Fu8; 12][..]] {
            if let Err(e) = RtpPacket::parse(Bytes::copy_from_slice(raw)) {
                c.record(&e);
            }
        }
        assert_eq!((c.too_short, c.bad_version, c.csrc_past_end), (1, 1, 1));
        assert_eq!(c.total(), 3);
    }

    #[test]
    fn random_bytes_never_panic_and_valid_ones_round_trip() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut counters = RtpErrorCounters::default();
        let mut ok = 0;
        for i in 0..20_000 {
            let len = rng.below(80) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if i % 2 == 0 && !v.is_empty() {
                // Force version 2 half the time so the deeper checks get exercised.
                v[0] = (v[0] & 0x3F) | 0x80;
            }
            match RtpPacket::parse(Bytes::from(v.clone())) {
                Ok(p) => {
                    ok += 1;
                    assert!(p.payload().len() + p.padding_len() <= v.len());
                    for e in p.extensions() {
                        assert!(e.data.len() <= v.len());
                    }
                    // Whatever parsed is re-parsed identically from the same bytes.
                    let again = RtpPacket::parse(p.as_bytes().clone()).unwrap();
                    assert_eq!(again.header(), p.header());
                    assert_eq!(again.payload(), p.payload());
                }
                Err(e) => counters.record(&e),
            }
        }
        assert!(
            ok > 100,
            "random generator should hit valid packets too ({ok})"
        );
        assert_eq!(counters.total(), 20_000 - ok);
        assert!(counters.bad_version > 0 && counters.too_short > 0);
        assert!(counters.csrc_past_end > 0 && counters.bad_padding > 0);
    }

    #[test]
    fn random_specs_round_trip() {
        let mut rng = Rng(42);
        let mut out = [0u8; 2048];
        for _ in 0..2_000 {
            let mut h = RtpHeader::new(
                rng.below(128) as u8,
                rng.next() as u16,
                rng.next() as u32,
                rng.next() as u32,
            );
            h.marker = rng.below(2) == 1;
            let csrcs: Vec<u32> = (0..rng.below(16)).map(|_| rng.next() as u32).collect();
            h.set_csrcs(&csrcs).unwrap();
            let datas: Vec<Vec<u8>> = (0..rng.below(4))
                .map(|_| (0..1 + rng.below(20)).map(|_| rng.next() as u8).collect())
                .collect();
            let exts: Vec<HeaderExtension> = datas
                .iter()
                .enumerate()
                .map(|(i, d)| HeaderExtension {
                    id: 1 + i as u8 * 4,
                    data: d,
                })
                .collect();
            let payload: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            let spec = RtpPacketSpec {
                header: h,
                extensions: &exts,
                payload: &payload,
                padding: rng.below(5) as u8,
            };
            let n = spec.write(&mut out).unwrap();
            let p = RtpPacket::parse(Bytes::copy_from_slice(&out[..n])).unwrap();
            assert_eq!(p.header(), &h);
            assert_eq!(p.payload(), &payload[..]);
            assert_eq!(p.extensions().collect::<Vec<_>>(), exts);
        }
    }

    #[test]
    fn build_errors_are_typed() {
        let mut h = header();
        assert_eq!(
            h.set_csrcs(&[0; 16]),
            Err(RtpBuildError::TooManyCsrcs { count: 16 })
        );
        let spec = RtpPacketSpec::new(h, &[0; 100]);
        let mut small = [0u8; 50];
        assert_eq!(
            spec.write(&mut small),
            Err(RtpBuildError::BufferTooSmall {
                needed: 112,
                capacity: 50
            })
        );
        let big = [0u8; 300];
        let exts = [HeaderExtension { id: 5, data: &big }];
        let mut spec = RtpPacketSpec::new(h, &[]);
        spec.extensions = &exts;
        assert_eq!(
            spec.encoded_len(),
            Err(RtpBuildError::BadExtension { id: 5, len: 300 })
        );
    }

    #[test]
    fn audio_level_of_samples() {
        assert_eq!(dbov_of(&[0.0; 960]), 127);
        assert_eq!(dbov_of(&[1.0; 960]), 0);
        assert_eq!(dbov_of(&[0.1; 960]), 20);
        let l = AudioLevel::from_samples(&[0.01; 10], false);
        assert_eq!(l.to_byte(), 40);
        assert_eq!(
            AudioLevel::from_element(&[0x80 | 40]).unwrap().level_dbov,
            40
        );
        assert_eq!(AudioLevel::from_element(&[]), None);
    }
}
