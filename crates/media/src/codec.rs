//! Opus (RFC 6716 / RFC 7587) encoder and decoder for 20 ms mono frames at 48 kHz.
//!
//! Thin wrappers over the `opus` crate that fix the call-audio choices (VoIP application,
//! in-band FEC, DTX) and own their output buffers, so encoding or decoding a frame allocates
//! nothing. The decoder covers the three ways a frame can be produced: from its own packet,
//! from the in-band FEC (LBRR) copy in the *next* packet, or by packet-loss concealment.

use opus::{Application, Bitrate, Channels};
use thiserror::Error;

/// RTP clock and internal sample rate (RFC 7587: always 48 kHz).
pub const OPUS_SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms mono frame at 48 kHz.
pub const OPUS_FRAME_SAMPLES: usize = 960;
/// Largest Opus packet for one frame (RFC 6716 §3.4: 1275 bytes) plus headroom.
pub const MAX_OPUS_PACKET: usize = 1500;
/// libopus signals "nothing worth sending" (DTX) with packets of this size or less.
pub const DTX_PACKET_MAX: usize = 2;

/// Why an Opus operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("libopus {function} failed: {code:?}")]
    /// A libopus call failed.
    Opus {
        /// The libopus function.
        function: &'static str,
        /// libopus' error code.
        code: opus::ErrorCode,
    },
    #[error("frame of {len} samples given; a 20 ms 48 kHz mono frame has 960")]
    /// A frame to encode is not 960 samples (20 ms at 48 kHz).
    BadFrameLength {
        /// The samples given.
        len: usize,
    },
    #[error("packet decodes to {samples} samples; only 20 ms (960-sample) packets are supported")]
    /// A packet decodes to another duration than 20 ms.
    UnsupportedPacketDuration {
        /// The samples it decodes to.
        samples: usize,
    },
    #[error("{name} = {value} is out of range")]
    /// A setting outside the range libopus takes.
    BadConfig {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: i32,
    },
}

impl From<opus::Error> for CodecError {
    fn from(e: opus::Error) -> Self {
        CodecError::Opus {
            function: e.function(),
            code: e.code(),
        }
    }
}

/// Encoder settings. Defaults suit a Teams-like VoIP call: 32 kb/s, complexity 9
/// (libopus' default), FEC on with 10 % expected loss, DTX on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Target bitrate, bits per second (500..=512000).
    pub bitrate_bps: i32,
    /// 0..=10.
    pub complexity: u8,
    /// Send in-band forward error correction (the next packet can rebuild a lost one).
    pub inband_fec: bool,
    /// 0..=100; tells the encoder how much redundancy FEC should carry.
    pub expected_loss_pct: u8,
    /// Discontinuous transmission: send nearly nothing while the frame is silent.
    pub dtx: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            bitrate_bps: 32_000,
            complexity: 9,
            inband_fec: true,
            expected_loss_pct: 10,
            dtx: true,
        }
    }
}

/// What encoding one frame produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodedFrame<'a> {
    /// A packet to send.
    Voice(&'a [u8]),
    /// DTX: the encoder judged the frame silent and nothing needs to be sent.
    Dtx,
}

/// Opus encoder for 20 ms mono frames, owning its output buffer.
pub struct OpusEncoder {
    inner: opus::Encoder,
    config: EncoderConfig,
    out: Box<[u8; MAX_OPUS_PACKET]>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .finish()
    }
}

impl OpusEncoder {
    /// An encoder for 48 kHz mono VoIP with `config` applied.
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        let mut inner = opus::Encoder::new(OPUS_SAMPLE_RATE, Channels::Mono, Application::Voip)?;
        if config.complexity > 10 {
            return Err(CodecError::BadConfig {
                name: "complexity",
                value: i32::from(config.complexity),
            });
        }
        if config.expected_loss_pct > 100 {
            return Err(CodecError::BadConfig {
                name: "expected_loss_pct",
                value: i32::from(config.expected_loss_pct),
            });
        }
        if !(500..=512_000).contains(&config.bitrate_bps) {
            return Err(CodecError::BadConfig {
                name: "bitrate_bps",
                value: config.bitrate_bps,
            });
        }
        inner.set_bitrate(Bitrate::Bits(config.bitrate_bps))?;
        inner.set_complexity(i32::from(config.complexity))?;
        inner.set_inband_fec(config.inband_fec)?;
        inner.set_packet_loss_perc(i32::from(config.expected_loss_pct))?;
        inner.set_dtx(config.dtx)?;
        Ok(OpusEncoder {
            inner,
            config,
            out: Box::new([0; MAX_OPUS_PACKET]),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Updates the expected loss (e.g. from RTCP receiver reports); clamped to 100.
    pub fn set_expected_loss_pct(&mut self, pct: u8) -> Result<(), CodecError> {
        let pct = pct.min(100);
        self.inner.set_packet_loss_perc(i32::from(pct))?;
        self.config.expected_loss_pct = pct;
        Ok(())
    }

    /// Turns in-band FEC on or off (it costs nothing while the expected loss is 0).
    pub fn set_inband_fec(&mut self, on: bool) -> Result<(), CodecError> {
        self.inner.set_inband_fec(on)?;
        self.config.inband_fec = on;
        Ok(())
    }

    /// Changes the target bitrate (bits per second, 500..=512000).
    pub fn set_bitrate(&mut self, bitrate_bps: i32) -> Result<(), CodecError> {
        if !(500..=512_000).contains(&bitrate_bps) {
            return Err(CodecError::BadConfig {
                name: "bitrate_bps",
                value: bitrate_bps,
            });
        }
        self.inner.set_bitrate(Bitrate::Bits(bitrate_bps))?;
        self.config.bitrate_bps = bitrate_bps;
        Ok(())
    }

    /// Encodes one 960-sample frame (f32, full scale ±1.0).
    pub fn encode(&mut self, pcm: &[f32]) -> Result<EncodedFrame<'_>, CodecError> {
        if pcm.len() != OPUS_FRAME_SAMPLES {
            return Err(CodecError::BadFrameLength { len: pcm.len() });
        }
        let n = self.inner.encode_float(pcm, &mut self.out[..])?;
        if self.config.dtx && n <= DTX_PACKET_MAX {
            Ok(EncodedFrame::Dtx)
        } else {
            Ok(EncodedFrame::Voice(&self.out[..n]))
        }
    }

    /// Forgets all history (e.g. when the outgoing stream restarts).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        self.inner.reset_state()?;
        Ok(())
    }
}

/// Largest Opus packet a player frame carries for passthrough: RFC 6716 §3.2.1's limit for
/// one frame. With a 12-byte RTP header and an audio-level extension it fits the 1500-byte
/// packets the pipeline writes.
pub const MAX_PASSTHROUGH_PACKET: usize = 1275;

/// Why a packet cannot be sent as it is in place of the pipeline's own encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PassthroughRefusal {
    #[error("an empty packet cannot be passed through")]
    /// No bytes at all.
    Empty,
    #[error("packet of {len} bytes; at most 1275 pass through")]
    /// Longer than [`MAX_PASSTHROUGH_PACKET`].
    TooLarge {
        /// The packet's length.
        len: usize,
    },
    #[error("packet of {samples} samples; only 20 ms (960 at 48 kHz) fill one tick")]
    /// Not exactly one 20 ms tick of audio (10, 40, 60 ms packets are decoded and mixed).
    Duration {
        /// The samples it decodes to at 48 kHz.
        samples: usize,
    },
    #[error("stereo packet; the call's stream is mono")]
    /// Coded as stereo: the pipeline sends a mono stream.
    Stereo,
    #[error("the packet's table of contents is invalid")]
    /// libopus could not read the packet's table of contents.
    Malformed,
}

/// One 20 ms mono Opus packet kept by value (no allocation to copy or queue it), checked to be
/// fit to go out as this call's RTP payload unchanged: mono, exactly 960 samples at 48 kHz,
/// at most [`MAX_PASSTHROUGH_PACKET`] bytes.
#[derive(Clone, Copy)]
pub struct OpusPacket {
    len: u16,
    bytes: [u8; MAX_PASSTHROUGH_PACKET],
}

impl OpusPacket {
    /// No packet yet: a placeholder for preallocated state, never sent.
    pub(crate) const EMPTY: OpusPacket = OpusPacket {
        len: 0,
        bytes: [0; MAX_PASSTHROUGH_PACKET],
    };

    /// Checks and copies `packet`.
    pub fn new(packet: &[u8]) -> Result<OpusPacket, PassthroughRefusal> {
        if packet.is_empty() {
            return Err(PassthroughRefusal::Empty);
        }
        if packet.len() > MAX_PASSTHROUGH_PACKET {
            return Err(PassthroughRefusal::TooLarge { len: packet.len() });
        }
        let samples = opus::packet::get_nb_samples(packet, OPUS_SAMPLE_RATE)
            .map_err(|_| PassthroughRefusal::Malformed)?;
        if samples != OPUS_FRAME_SAMPLES {
            return Err(PassthroughRefusal::Duration { samples });
        }
        match opus::packet::get_nb_channels(packet) {
            Ok(Channels::Mono) => {}
            Ok(Channels::Stereo) => return Err(PassthroughRefusal::Stereo),
            Err(_) => return Err(PassthroughRefusal::Malformed),
        }
        let mut bytes = [0; MAX_PASSTHROUGH_PACKET];
        bytes[..packet.len()].copy_from_slice(packet);
        Ok(OpusPacket {
            // At most 1275: fits.
            len: packet.len() as u16,
            bytes,
        })
    }

    /// The packet's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for OpusPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusPacket")
            .field("len", &self.len)
            .finish()
    }
}

impl PartialEq for OpusPacket {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for OpusPacket {}

/// Whether `packet` carries an in-band FEC (LBRR) copy of the frame before it.
pub fn packet_has_fec(packet: &[u8]) -> bool {
    if packet.is_empty() || packet.len() > i32::MAX as usize {
        return false;
    }
    // SAFETY: the pointer and length describe a live slice; libopus only reads `len` bytes
    // and returns a negative code for malformed packets.
    let r = unsafe { opusic_sys::opus_packet_has_lbrr(packet.as_ptr(), packet.len() as i32) };
    r == 1
}

/// How a frame was produced from a FEC attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FecOutcome {
    /// Decoded from the next packet's in-band FEC data.
    Recovered,
    /// The next packet had no FEC for this frame: concealed (PLC) instead.
    Concealed,
}

/// Opus decoder for 20 ms mono frames at 48 kHz.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A 48 kHz mono decoder.
    pub fn new() -> Result<Self, CodecError> {
        Ok(OpusDecoder {
            inner: opus::Decoder::new(OPUS_SAMPLE_RATE, Channels::Mono)?,
        })
    }

    fn check_out(out: &[f32]) -> Result<(), CodecError> {
        if out.len() != OPUS_FRAME_SAMPLES {
            return Err(CodecError::BadFrameLength { len: out.len() });
        }
        Ok(())
    }

    /// Decodes one packet into `out` (960 samples). Packets of another duration are refused
    /// before decoding so the decoder state stays in step with the 20 ms tick.
    pub fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
        Self::check_out(out)?;
        if packet.is_empty() {
            return self.conceal(out);
        }
        let samples = opus::packet::get_nb_samples(packet, OPUS_SAMPLE_RATE)?;
        if samples != OPUS_FRAME_SAMPLES {
            return Err(CodecError::UnsupportedPacketDuration { samples });
        }
        let n = self.inner.decode_float(packet, out, false)?;
        if n != OPUS_FRAME_SAMPLES {
            return Err(CodecError::UnsupportedPacketDuration { samples: n });
        }
        Ok(())
    }

    /// Packet-loss concealment for one missing frame (also the comfort noise during DTX).
    pub fn conceal(&mut self, out: &mut [f32]) -> Result<(), CodecError> {
        Self::check_out(out)?;
        self.inner.decode_float(&[], out, false)?;
        Ok(())
    }

    /// Rebuilds the missing frame from the FEC copy in `next_packet` (the packet after the
    /// lost one), or conceals when it has none. `next_packet` is still decoded normally on
    /// the following tick.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        out: &mut [f32],
    ) -> Result<FecOutcome, CodecError> {
        Self::check_out(out)?;
        if !packet_has_fec(next_packet) {
            self.conceal(out)?;
            return Ok(FecOutcome::Concealed);
        }
        self.inner.decode_float(next_packet, out, true)?;
        Ok(FecOutcome::Recovered)
    }

    /// Forgets all history (stream reset / SSRC change).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        self.inner.reset_state()?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Voiced-speech-like test signal: a 140 Hz harmonic series whose loudness swells at ~3 Hz,
    /// so Opus picks SILK/hybrid (where in-band FEC lives) rather than CELT.
    pub(crate) fn speechlike(frame: usize, out: &mut [f32]) {
        for (i, s) in out.iter_mut().enumerate() {
            let t = (frame * OPUS_FRAME_SAMPLES + i) as f32 / OPUS_SAMPLE_RATE as f32;
            let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
            let mut v = 0.0;
            for h in 1..=8 {
                let f =
                    140.0 * h as f32 * (1.0 + 0.02 * (2.0 * std::f32::consts::PI * 1.3 * t).sin());
                v += (2.0 * std::f32::consts::PI * f * t).sin() / h as f32;
            }
            *s = 0.15 * env * v;
        }
    }

    fn sq_err(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(x - y) * f64::from(x - y))
            .sum()
    }

    fn encode_all(cfg: EncoderConfig, frames: usize) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new(cfg).unwrap();
        let mut pcm = [0.0f32; OPUS_FRAME_SAMPLES];
        (0..frames)
            .map(|f| {
                speechlike(f, &mut pcm);
                match enc.encode(&pcm).unwrap() {
                    EncodedFrame::Voice(p) => p.to_vec(),
                    EncodedFrame::Dtx => panic!("speech must not be DTX"),
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_keeps_the_signal() {
        let packets = encode_all(EncoderConfig::default(), 50);
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = [0.0f32; OPUS_FRAME_SAMPLES];
        let mut energy = 0.0f64;
        for p in &packets {
            dec.decode(p, &mut out).unwrap();
            energy += out.iter().map(|&s| f64::from(s * s)).sum::<f64>();
        }
        let mut src = [0.0f32; OPUS_FRAME_SAMPLES];
        let mut src_energy = 0.0f64;
        for f in 0..50 {
            speechlike(f, &mut src);
            src_energy += src.iter().map(|&s| f64::from(s * s)).sum::<f64>();
        }
        let ratio = energy / src_energy;
        assert!((0.5..2.0).contains(&ratio), "energy ratio {ratio}");
    }

    #[test]
    fn silence_becomes_dtx_and_speech_resumes() {
        let mut enc = OpusEncoder::new(EncoderConfig::default()).unwrap();
        let silence = [0.0f32; OPUS_FRAME_SAMPLES];
        let dtx = (0..50)
            .filter(|_| enc.encode(&silence).unwrap() == EncodedFrame::Dtx)
            .count();
        assert!(dtx > 30, "only {dtx} of 50 silent frames were DTX");
        let mut pcm = [0.0f32; OPUS_FRAME_SAMPLES];
        speechlike(3, &mut pcm);
        assert!(matches!(enc.encode(&pcm).unwrap(), EncodedFrame::Voice(p) if p.len() > 10));
        let mut no_dtx = OpusEncoder::new(EncoderConfig {
            dtx: false,
            ..EncoderConfig::default()
        })
        .unwrap();
        assert!((0..20).all(|_| no_dtx.encode(&silence).unwrap() != EncodedFrame::Dtx));
    }

    #[test]
    fn fec_recovers_a_lost_frame_better_than_plc() {
        let cfg = EncoderConfig {
            expected_loss_pct: 20,
            ..EncoderConfig::default()
        };
        let packets = encode_all(cfg, 40);
        let lost = 30;
        assert!(packet_has_fec(&packets[lost + 1]), "encoder emitted no FEC");
        let mut reference = OpusDecoder::new().unwrap();
        let mut plc = OpusDecoder::new().unwrap();
        let mut fec = OpusDecoder::new().unwrap();
        let mut out = [0.0f32; OPUS_FRAME_SAMPLES];
        for p in &packets[..lost] {
            reference.decode(p, &mut out).unwrap();
            plc.decode(p, &mut out).unwrap();
            fec.decode(p, &mut out).unwrap();
        }
        let mut want = [0.0f32; OPUS_FRAME_SAMPLES];
        let mut got_plc = [0.0f32; OPUS_FRAME_SAMPLES];
        let mut got_fec = [0.0f32; OPUS_FRAME_SAMPLES];
        reference.decode(&packets[lost], &mut want).unwrap();
        plc.conceal(&mut got_plc).unwrap();
        assert_eq!(
            fec.decode_fec(&packets[lost + 1], &mut got_fec).unwrap(),
            FecOutcome::Recovered
        );
        assert_ne!(got_fec, got_plc);
        let (e_fec, e_plc) = (sq_err(&got_fec, &want), sq_err(&got_plc, &want));
        assert!(
            e_fec < e_plc,
            "FEC error {e_fec} not below PLC error {e_plc}"
        );
    }

    #[test]
    fn without_fec_the_decoder_conceals() {
        let cfg = EncoderConfig {
            inband_fec: false,
            ..EncoderConfig::default()
        };
        let packets = encode_all(cfg, 10);
        assert!(!packet_has_fec(&packets[5]));
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = [0.0f32; OPUS_FRAME_SAMPLES];
        dec.decode(&packets[0], &mut out).unwrap();
        assert_eq!(
            dec.decode_fec(&packets[2], &mut out).unwrap(),
            FecOutcome::Concealed
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = [0.0f32; OPUS_FRAME_SAMPLES];
        // Code-3 packet declaring zero frames (RFC 6716 §3.2.5): no 20 ms of audio in it.
        assert_eq!(
            dec.decode(&[0x03, 0x00], &mut out),
            Err(CodecError::UnsupportedPacketDuration { samples: 0 })
        );
        // Code-2 packet (two 10 ms frames) without its length byte: corrupt.
        assert!(matches!(
            dec.decode(&[0x02], &mut out),
            Err(CodecError::Opus {
                code: opus::ErrorCode::InvalidPacket,
                ..
            })
        ));
        // A 60 ms SILK packet (config 3) is refused by duration.
        assert_eq!(
            dec.decode(&[0x18, 0, 0], &mut out),
            Err(CodecError::UnsupportedPacketDuration { samples: 2880 })
        );
        assert_eq!(
            dec.decode(&[0x08], &mut out[..10]),
            Err(CodecError::BadFrameLength { len: 10 })
        );
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let len = (x % 60) as usize;
            let pkt: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = dec.decode(&pkt, &mut out);
            let _ = dec.decode_fec(&pkt, &mut out);
            assert!(out.iter().all(|s| s.is_finite()));
        }
    }

    #[test]
    fn only_20ms_mono_packets_of_at_most_1275_bytes_pass_through() {
        let packets = encode_all(EncoderConfig::default(), 3);
        let p = OpusPacket::new(&packets[2]).unwrap();
        assert_eq!(p.as_bytes(), &packets[2][..]);
        assert_eq!(OpusPacket::new(&[]), Err(PassthroughRefusal::Empty));
        assert_eq!(
            OpusPacket::new(&[0u8; 1276]),
            Err(PassthroughRefusal::TooLarge { len: 1276 })
        );
        // TOC config 0 (SILK NB 10 ms), code 0: half a tick.
        assert_eq!(
            OpusPacket::new(&[0x00, 0x11]),
            Err(PassthroughRefusal::Duration { samples: 480 })
        );
        // Config 1 (SILK NB 20 ms) with the stereo bit.
        assert_eq!(
            OpusPacket::new(&[0x0C, 0x11]),
            Err(PassthroughRefusal::Stereo)
        );
        // Code 3 (a frame count follows) without its count byte.
        assert_eq!(OpusPacket::new(&[0x03]), Err(PassthroughRefusal::Malformed));
        // Two 10 ms CELT frames (config 18, code 1) make 20 ms: they pass.
        assert!(OpusPacket::new(&[0x91, 0x11, 0x22]).is_ok());
    }

    #[test]
    fn bad_config_is_refused() {
        let bad = EncoderConfig {
            complexity: 11,
            ..EncoderConfig::default()
        };
        assert_eq!(
            OpusEncoder::new(bad).unwrap_err(),
            CodecError::BadConfig {
                name: "complexity",
                value: 11
            }
        );
        let mut enc = OpusEncoder::new(EncoderConfig::default()).unwrap();
        assert!(enc.set_bitrate(100).is_err());
        enc.set_expected_loss_pct(250).unwrap();
        assert_eq!(enc.config().expected_loss_pct, 100);
        assert_eq!(
            enc.encode(&[0.0; 480]),
            Err(CodecError::BadFrameLength { len: 480 })
        );
    }
}
