//! Ogg/Opus files (RFC 7845) as prompts: a small Ogg demuxer (RFC 3533) over the `opus`
//! decoder, decoding up front to mono 48 kHz like WAV prompts.
//!
//! Handles what encoders produce for speech and music prompts: one logical Opus stream (others
//! in the file are skipped), mono or stereo (channel mapping family 0 or 1 with ≤ 2 channels),
//! pre-skip, end trimming by the last granule position, and the header's output gain. Every
//! page's CRC is checked, so a damaged or cut file is an error at open, not noise in a call.

use std::ops::Range;
use std::path::PathBuf;

use appmedia_media::codec::OpusPacket;
use appmedia_media::pipeline::PlayerFrame;

use crate::format::OpenError;
use crate::frame::CORE_FRAME_SAMPLES;

/// Opus always decodes at 48 kHz here; 120 ms is the longest packet.
const MAX_PACKET_SAMPLES: usize = 5760;

/// Whether `bytes` start like an Ogg file.
pub(crate) fn is_ogg(bytes: &[u8]) -> bool {
    bytes.starts_with(b"OggS")
}

/// A whole Ogg/Opus file decoded to mono 48 kHz.
pub(crate) struct DecodedOgg {
    /// Every decoded sample, untrimmed (pre-skip and end padding included), zero-padded to
    /// whole 20 ms frames: frame f is `pcm[f * 960..(f + 1) * 960]`.
    pub(crate) pcm: Vec<f32>,
    /// The part a player of the file plays: pre-skip dropped, end cut at the last granule.
    pub(crate) trimmed: Range<usize>,
    /// Channels of the stream (down-mixed to mono).
    pub(crate) channels: u8,
    /// The packets that can be sent as they are, by frame; `None` when there are none.
    pub(crate) packets: Option<FramePackets>,
}

/// The Opus packets of a decoded file that are exactly one 20 ms frame each, by frame.
#[derive(Debug)]
pub(crate) struct FramePackets {
    /// For frame f, the range of its packet in `bytes`, if it has one.
    spans: Vec<Option<(u32, u16)>>,
    bytes: Vec<u8>,
}

impl FramePackets {
    /// Frame `f`'s packet, if it has one.
    pub(crate) fn get(&self, f: usize) -> Option<&[u8]> {
        let (at, len) = (*self.spans.get(f)?)?;
        let at = at as usize;
        self.bytes.get(at..at + usize::from(len))
    }

    /// Frames that have a packet.
    pub(crate) fn count(&self) -> usize {
        self.spans.iter().filter(|s| s.is_some()).count()
    }
}

/// Decodes an Ogg/Opus file to mono 48 kHz samples, cut into 20 ms frames from its first
/// sample, each frame that is exactly one packet's decoding keeping that packet.
/// Decoding stops with [`OpenError::TooLong`] as soon as more than `max_samples` came out: a
/// small file of tiny packets must not decode to hours of audio before its length is known.
pub(crate) fn decode(
    bytes: &[u8],
    path: PathBuf,
    max_samples: usize,
) -> Result<DecodedOgg, OpenError> {
    let mut pages = Pages { bytes, pos: 0 };
    let mut stream = OpusStream::new(path.clone());
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut packet_bytes = Vec::new();
    loop {
        let page = pages.next().map_err(|r| stream.malformed(r))?;
        let Some(page) = page else { break };
        let ended = stream.feed_packets(&page, &mut |p: AudioPacket<'_>| {
            if out.len().is_multiple_of(CORE_FRAME_SAMPLES) && passes_through(&p) {
                let frame = out.len() / CORE_FRAME_SAMPLES;
                spans.resize(frame, None);
                // A file is far below 4 GiB (MAX_CLIP_FILE_BYTES) and a packet below 1276 B.
                spans.push(Some((packet_bytes.len() as u32, p.bytes.len() as u16)));
                packet_bytes.extend_from_slice(p.bytes);
            }
            out.extend_from_slice(p.pcm);
            Ok(())
        })?;
        // One page decodes to 255 packets of 120 ms at most: the overshoot is bounded.
        if out.len() > max_samples {
            return Err(OpenError::TooLong {
                path,
                seconds: out.len() as f64 / 48_000.0,
            });
        }
        if ended {
            break;
        }
    }
    let info = stream.finish()?;
    // The last granule position counts every sample including the pre-skip: the end is cut
    // there (the encoder padded the last packet), and the pre-skip dropped from the start.
    let end = info
        .last_granule
        .map_or(out.len(), |g| usize::try_from(g).unwrap_or(usize::MAX))
        .min(out.len());
    let start = info.pre_skip.min(end);
    let frames = out.len().div_ceil(CORE_FRAME_SAMPLES);
    out.resize(frames * CORE_FRAME_SAMPLES, 0.0);
    clamp(&mut out);
    if start == end {
        return Err(OpenError::Empty { path });
    }
    let packets = (!spans.is_empty()).then(|| {
        spans.resize(frames, None);
        FramePackets {
            spans,
            bytes: packet_bytes,
        }
    });
    Ok(DecodedOgg {
        pcm: out,
        trimmed: start..end,
        channels: info.channels,
        packets,
    })
}

/// Whether the packet may go out as it is: the stream allows it (mono, no header gain) and
/// the packet is one 20 ms mono frame of at most 1275 bytes.
fn passes_through(p: &AudioPacket<'_>) -> bool {
    p.passthrough && p.pcm.len() == CORE_FRAME_SAMPLES && OpusPacket::new(p.bytes).is_ok()
}

/// Cuts a stream's decoded audio into 20 ms frames from its first sample; a packet that
/// starts on a frame's first sample and fills exactly that frame stays with it, so the frame
/// can be sent as that packet.
pub(crate) struct FrameAligner {
    frame: PlayerFrame,
    /// Samples of `frame` filled so far.
    fill: usize,
}

impl FrameAligner {
    pub(crate) fn new() -> Self {
        FrameAligner {
            frame: PlayerFrame::SILENT,
            fill: 0,
        }
    }

    /// Takes one packet; `emit` gets every frame completed.
    pub(crate) fn push<E>(
        &mut self,
        p: &AudioPacket<'_>,
        emit: &mut impl FnMut(&PlayerFrame) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.fill == 0
            && p.pcm.len() == CORE_FRAME_SAMPLES
            && let Some(packet) = p
                .passthrough
                .then(|| OpusPacket::new(p.bytes).ok())
                .flatten()
        {
            self.frame.pcm.copy_from_slice(p.pcm);
            clamp(&mut self.frame.pcm);
            self.frame.packet = Some(packet);
            return emit(&self.frame);
        }
        let mut pcm = p.pcm;
        while !pcm.is_empty() {
            let n = (CORE_FRAME_SAMPLES - self.fill).min(pcm.len());
            self.frame.pcm[self.fill..self.fill + n].copy_from_slice(&pcm[..n]);
            self.fill += n;
            pcm = &pcm[n..];
            if self.fill == CORE_FRAME_SAMPLES {
                self.fill = 0;
                self.frame.packet = None;
                clamp(&mut self.frame.pcm);
                emit(&self.frame)?;
            }
        }
        Ok(())
    }

    /// The last, partial frame, padded with silence.
    pub(crate) fn finish<E>(
        &mut self,
        emit: &mut impl FnMut(&PlayerFrame) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.fill == 0 {
            return Ok(());
        }
        self.frame.pcm[self.fill..].fill(0.0);
        self.frame.packet = None;
        self.fill = 0;
        clamp(&mut self.frame.pcm);
        emit(&self.frame)
    }
}

/// Replaces what would poison a mix (NaN, infinity, beyond full scale).
pub(crate) fn clamp(samples: &mut [f32]) {
    for s in samples {
        *s = if s.is_finite() {
            s.clamp(-1.0, 1.0)
        } else {
            0.0
        };
    }
}

/// What a whole Ogg/Opus stream said about itself, once read to its end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpusInfo {
    /// Samples to drop from the start (OpusHead's pre-skip).
    pub(crate) pre_skip: usize,
    /// The last granule position: pre-skip plus the samples to play.
    pub(crate) last_granule: Option<u64>,
    /// Channels of the stream (down-mixed to mono).
    pub(crate) channels: u8,
    /// Packets that can be sent as they are (see [`FrameAligner`]).
    pub(crate) passthrough_packets: u64,
}

impl OpusInfo {
    /// Samples a pass plays, once trimmed (at most `decoded` when the granule is missing).
    pub(crate) fn playable(&self, decoded: u64) -> u64 {
        self.last_granule
            .unwrap_or(decoded)
            .min(decoded)
            .saturating_sub(self.pre_skip as u64)
    }
}

/// Checks a whole Ogg/Opus file by decoding it page by page without keeping the audio: the
/// same errors as [`decode`], in constant memory. Returns the stream's facts and the samples
/// a pass plays.
pub(crate) fn scan(path: &std::path::Path) -> Result<(OpusInfo, u64), OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut pages = PageReader::new(std::io::BufReader::new(file));
    let mut stream = OpusStream::new(path.to_path_buf());
    let mut decoded = 0u64;
    let mut passthrough_packets = 0u64;
    loop {
        let page = pages.next().map_err(|e| match e {
            PageError::Io(source) => io(source),
            PageError::Bad(reason) => stream.malformed(reason),
        })?;
        let Some(page) = page else { break };
        let end = stream.feed_packets(&page, &mut |p: AudioPacket<'_>| {
            if decoded.is_multiple_of(CORE_FRAME_SAMPLES as u64) && passes_through(&p) {
                passthrough_packets += 1;
            }
            decoded += p.pcm.len() as u64;
            Ok(())
        })?;
        if end {
            break;
        }
    }
    let mut info = stream.finish()?;
    info.passthrough_packets = passthrough_packets;
    let playable = info.playable(decoded);
    if playable == 0 {
        return Err(OpenError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((info, playable))
}

/// Why a page could not be read from a file.
pub(crate) enum PageError {
    Io(std::io::Error),
    Bad(&'static str),
}

/// Whole Ogg pages read from a file, one at a time, each CRC-checked.
pub(crate) struct PageReader<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: std::io::Read> PageReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        PageReader {
            reader,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// The next page; `None` at a clean end of file.
    pub(crate) fn next(&mut self) -> Result<Option<Page<'_>>, PageError> {
        self.buf.resize(27, 0);
        let got = read_full(&mut self.reader, &mut self.buf[..27])?;
        if got == 0 {
            return Ok(None);
        }
        if got < 27 {
            return Err(PageError::Bad("Ogg page header cut short (truncated file)"));
        }
        let n_segments = usize::from(self.buf[26]);
        self.buf.resize(27 + n_segments, 0);
        if read_full(&mut self.reader, &mut self.buf[27..])? < n_segments {
            return Err(PageError::Bad(
                "Ogg segment table cut short (truncated file)",
            ));
        }
        let data_len: usize = self.buf[27..].iter().map(|&s| usize::from(s)).sum();
        let start = self.buf.len();
        self.buf.resize(start + data_len, 0);
        if read_full(&mut self.reader, &mut self.buf[start..])? < data_len {
            return Err(PageError::Bad("Ogg page cut short (truncated file)"));
        }
        let mut pages = Pages {
            bytes: &self.buf,
            pos: 0,
        };
        pages.next().map_err(PageError::Bad)
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl std::io::Read, buf: &mut [u8]) -> Result<usize, PageError> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PageError::Io(e)),
        }
    }
    Ok(got)
}

/// An Ogg/Opus logical stream decoded one page at a time.
pub(crate) struct OpusStream {
    path: PathBuf,
    serial: Option<u32>,
    packet: Vec<u8>,
    head: Option<OpusHead>,
    tags_seen: bool,
    decoder: Option<opus::Decoder>,
    pcm: Vec<f32>,
    last_granule: Option<u64>,
    eos: bool,
}

impl OpusStream {
    pub(crate) fn new(path: PathBuf) -> Self {
        OpusStream {
            path,
            serial: None,
            packet: Vec::new(),
            head: None,
            tags_seen: false,
            decoder: None,
            pcm: vec![0.0f32; MAX_PACKET_SAMPLES * 2],
            last_granule: None,
            eos: false,
        }
    }

    pub(crate) fn malformed(&self, reason: &'static str) -> OpenError {
        OpenError::Malformed {
            path: self.path.clone(),
            reason,
        }
    }

    /// Feeds one page, appending its decoded mono samples (untrimmed) to `out`. Returns
    /// `true` once the stream's end page was fed.
    pub(crate) fn feed(&mut self, page: &Page<'_>, out: &mut Vec<f32>) -> Result<bool, OpenError> {
        self.feed_packets(page, &mut |p: AudioPacket<'_>| {
            out.extend_from_slice(p.pcm);
            Ok(())
        })
    }

    /// Feeds one page, handing each audio packet to `sink` with its decoded mono samples
    /// (untrimmed: packet k's samples are exactly what a decoder fed packets 0..=k gives for
    /// it). Returns `true` once the stream's end page was fed.
    pub(crate) fn feed_packets(
        &mut self,
        page: &Page<'_>,
        sink: &mut dyn FnMut(AudioPacket<'_>) -> Result<(), OpenError>,
    ) -> Result<bool, OpenError> {
        match self.serial {
            None if page.flags & FLAG_BOS != 0 => self.serial = Some(page.serial),
            None => return Err(self.malformed("Ogg stream does not begin with a start page")),
            Some(s) if s != page.serial => return Ok(false), // another logical stream
            Some(_) => {}
        }
        if page.flags & FLAG_CONTINUED == 0 {
            self.packet.clear();
        }
        let mut offset = 0;
        for (i, &lace) in page.segments.iter().enumerate() {
            let lace = usize::from(lace);
            self.packet
                .extend_from_slice(&page.data[offset..offset + lace]);
            offset += lace;
            let complete = lace < 255;
            if !complete && i + 1 < page.segments.len() {
                continue;
            }
            if !complete {
                break; // continues on the next page
            }
            self.packet_done(sink)?;
            self.packet.clear();
        }
        if page.granule != u64::MAX && self.head.is_some() && self.tags_seen {
            self.last_granule = Some(page.granule);
        }
        if page.flags & FLAG_EOS != 0 {
            self.eos = true;
        }
        Ok(self.eos)
    }

    fn packet_done(
        &mut self,
        sink: &mut dyn FnMut(AudioPacket<'_>) -> Result<(), OpenError>,
    ) -> Result<(), OpenError> {
        let path = &self.path;
        match (&self.head, self.tags_seen) {
            (None, _) => {
                let h = OpusHead::parse(&self.packet).map_err(|e| match e {
                    HeadError::NotOpus(kind) => OpenError::UnsupportedFormat {
                        path: path.clone(),
                        encoding: format!("Ogg {kind} (only Ogg/Opus is supported)"),
                    },
                    HeadError::Bad(reason) => OpenError::Malformed {
                        path: path.clone(),
                        reason,
                    },
                    HeadError::Channels(n) => OpenError::UnsupportedFormat {
                        path: path.clone(),
                        encoding: format!(
                            "Ogg/Opus with {n} channels (mono and stereo are supported)"
                        ),
                    },
                })?;
                let channels = if h.channels == 1 {
                    opus::Channels::Mono
                } else {
                    opus::Channels::Stereo
                };
                let mut d = opus::Decoder::new(48_000, channels)
                    .map_err(|_| self.malformed("the Opus decoder refused the stream's layout"))?;
                if h.output_gain != 0 {
                    // Q7.8 dB, applied by libopus.
                    d.set_gain(i32::from(h.output_gain))
                        .map_err(|_| self.malformed("invalid output gain in OpusHead"))?;
                }
                self.decoder = Some(d);
                self.head = Some(h);
            }
            (Some(_), false) => {
                if !self.packet.starts_with(b"OpusTags") {
                    return Err(self.malformed("second Ogg/Opus packet is not OpusTags"));
                }
                self.tags_seen = true;
            }
            (Some(h), true) => {
                let channels = usize::from(h.channels);
                let Some(d) = self.decoder.as_mut() else {
                    return Err(self.malformed("audio before OpusHead"));
                };
                let n = d
                    .decode_float(
                        &self.packet,
                        &mut self.pcm[..MAX_PACKET_SAMPLES * channels],
                        false,
                    )
                    .map_err(|_| OpenError::Malformed {
                        path: self.path.clone(),
                        reason: "corrupt Opus packet",
                    })?;
                if channels == 2 {
                    // Down-mixed in place: sample i only reads 2i and 2i + 1, at or after i.
                    for i in 0..n {
                        self.pcm[i] = (self.pcm[2 * i] + self.pcm[2 * i + 1]) * 0.5;
                    }
                }
                sink(AudioPacket {
                    bytes: &self.packet,
                    pcm: &self.pcm[..n],
                    // Only then is the decoded audio what the far end's decoder makes of
                    // the packet: a stereo stream is heard down-mixed (our stream is mono),
                    // a header gain is applied by our decoder, not by the far end's.
                    passthrough: h.channels == 1 && h.output_gain == 0,
                })?;
            }
        }
        Ok(())
    }

    /// After the last page: the stream must have had its headers and its end page.
    pub(crate) fn finish(&self) -> Result<OpusInfo, OpenError> {
        let Some(head) = &self.head else {
            return Err(OpenError::TruncatedHeader {
                path: self.path.clone(),
            });
        };
        if !self.eos {
            return Err(self.malformed("Ogg/Opus stream has no end page (truncated file)"));
        }
        Ok(OpusInfo {
            pre_skip: usize::from(head.pre_skip),
            last_granule: self.last_granule,
            channels: head.channels,
            passthrough_packets: 0,
        })
    }
}

/// One audio packet of an Ogg/Opus stream and its decoding.
pub(crate) struct AudioPacket<'a> {
    /// The Opus packet.
    pub(crate) bytes: &'a [u8],
    /// Its decoded mono 48 kHz samples.
    pub(crate) pcm: &'a [f32],
    /// Whether the stream allows sending the packet as it is in place of `pcm`: mono, and
    /// no output gain in the header.
    pub(crate) passthrough: bool,
}

const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;

pub(crate) struct Page<'a> {
    flags: u8,
    granule: u64,
    serial: u32,
    segments: &'a [u8],
    data: &'a [u8],
}

struct Pages<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Pages<'a> {
    fn next(&mut self) -> Result<Option<Page<'a>>, &'static str> {
        let b = &self.bytes[self.pos..];
        if b.is_empty() {
            return Ok(None);
        }
        if b.len() < 27 {
            return Err("Ogg page header cut short (truncated file)");
        }
        if &b[..4] != b"OggS" || b[4] != 0 {
            return Err("bad Ogg page (capture pattern or version)");
        }
        let n_segments = usize::from(b[26]);
        if b.len() < 27 + n_segments {
            return Err("Ogg segment table cut short (truncated file)");
        }
        let segments = &b[27..27 + n_segments];
        let data_len: usize = segments.iter().map(|&s| usize::from(s)).sum();
        let total = 27 + n_segments + data_len;
        if b.len() < total {
            return Err("Ogg page cut short (truncated file)");
        }
        let stored_crc = u32::from_le_bytes([b[22], b[23], b[24], b[25]]);
        if ogg_crc(&b[..total]) != stored_crc {
            return Err("Ogg page checksum mismatch (damaged file)");
        }
        let granule = u64::from_le_bytes([b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13]]);
        let serial = u32::from_le_bytes([b[14], b[15], b[16], b[17]]);
        self.pos += total;
        Ok(Some(Page {
            flags: b[5],
            granule,
            serial,
            segments,
            data: &b[27 + n_segments..total],
        }))
    }
}

/// Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0, computed with the CRC
/// field taken as zero.
fn ogg_crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for (i, &byte) in page.iter().enumerate() {
        let byte = if (22..26).contains(&i) { 0 } else { byte };
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

struct OpusHead {
    channels: u8,
    pre_skip: u16,
    output_gain: i16,
}

enum HeadError {
    NotOpus(&'static str),
    Bad(&'static str),
    Channels(u8),
}

impl OpusHead {
    fn parse(p: &[u8]) -> Result<Self, HeadError> {
        if !p.starts_with(b"OpusHead") {
            let kind = if p.get(1..7) == Some(b"vorbis") {
                "Vorbis"
            } else if p.starts_with(b"\x7fFLAC") {
                "FLAC"
            } else if p.starts_with(b"Speex") {
                "Speex"
            } else {
                "stream of an unknown codec"
            };
            return Err(HeadError::NotOpus(kind));
        }
        if p.len() < 19 {
            return Err(HeadError::Bad("OpusHead packet too short"));
        }
        if p[8] >> 4 != 0 {
            return Err(HeadError::Bad("unsupported OpusHead major version"));
        }
        let channels = p[9];
        let mapping_family = p[18];
        if channels == 0 {
            return Err(HeadError::Bad("OpusHead with zero channels"));
        }
        // Family 0 is mono/stereo by definition; family 1 with ≤ 2 channels is the same layout.
        if channels > 2 || mapping_family > 1 {
            return Err(HeadError::Channels(channels));
        }
        Ok(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([p[10], p[11]]),
            output_gain: i16::from_le_bytes([p[16], p[17]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_ogg_crc32() {
        // CRC-32 with polynomial 0x04C11DB7, init 0, unreflected and without a final xor:
        // CRC-32/CKSUM's check value 0x765E7680 before its final xor with 0xFFFFFFFF.
        assert_eq!(ogg_crc(b"123456789"), 0x765E_7680 ^ 0xFFFF_FFFF);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..300usize {
            let mut bytes = b"OggS\0".to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            assert!(decode(&bytes, PathBuf::from("garbage"), usize::MAX).is_err());
        }
    }

    /// Ogg pages around `packets` (each one packet per lacing run), CRCs and all.
    fn ogg_file(packets: &[Vec<u8>], samples_per_packet: u64) -> Vec<u8> {
        let mut file = Vec::new();
        let mut granule = 0u64;
        let mut sequence = 0u32;
        let mut page = |packets: &[Vec<u8>], flags: u8, granule: u64, file: &mut Vec<u8>| {
            let mut lacing = Vec::new();
            let mut data = Vec::new();
            for p in packets {
                lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
                lacing.push((p.len() % 255) as u8);
                data.extend_from_slice(p);
            }
            let mut header = b"OggS".to_vec();
            header.push(0);
            header.push(flags);
            header.extend_from_slice(&granule.to_le_bytes());
            header.extend_from_slice(&7u32.to_le_bytes());
            header.extend_from_slice(&sequence.to_le_bytes());
            header.extend_from_slice(&0u32.to_le_bytes());
            header.push(lacing.len() as u8);
            header.extend_from_slice(&lacing);
            header.extend_from_slice(&data);
            let crc = ogg_crc(&header);
            header[22..26].copy_from_slice(&crc.to_le_bytes());
            file.extend_from_slice(&header);
            sequence += 1;
        };
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 1, 0x38, 0x01]); // version, mono, pre-skip 312
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&[0, 0, 0]); // gain, mapping family 0
        page(&[head], FLAG_BOS, 0, &mut file);
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&[0; 8]);
        page(&[tags], 0, 0, &mut file);
        let chunks: Vec<&[Vec<u8>]> = packets.chunks(200).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            granule += samples_per_packet * chunk.len() as u64;
            let flags = if i + 1 == chunks.len() { FLAG_EOS } else { 0 };
            page(chunk, flags, granule, &mut file);
        }
        file
    }

    #[test]
    fn a_small_file_of_tiny_packets_is_refused_at_the_budget_not_decoded_whole() {
        // 60 ms of silence in very few bytes, repeated for two hours.
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut packet = vec![0u8; 64];
        let n = encoder.encode_float(&[0.0; 2880], &mut packet).unwrap();
        packet.truncate(n);
        let packets = vec![packet; 2 * 3600 * 1000 / 60];
        let bytes = ogg_file(&packets, 2880);
        assert!(bytes.len() < 2 << 20, "a small file: {} bytes", bytes.len());
        // A budget of 10 minutes: decoding stops just past it, not after two hours.
        let budget = 10 * 60 * 48_000;
        match decode(&bytes, PathBuf::from("bomb.opus"), budget) {
            Err(OpenError::TooLong { seconds, .. }) => {
                assert!(seconds < 10.0 * 60.0 + 60.0, "decoded {seconds:.0} s first");
            }
            other => panic!("{:?}", other.map(|d| d.pcm.len())),
        }
        // The same stream, short, decodes.
        let decoded = decode(
            &ogg_file(&packets[..50], 2880),
            PathBuf::from("ok.opus"),
            budget,
        )
        .unwrap();
        assert_eq!(decoded.channels, 1);
        assert_eq!(decoded.trimmed.len(), 50 * 2880 - 312);
        // 60 ms packets: none passes through.
        assert!(decoded.packets.is_none());
    }
}
