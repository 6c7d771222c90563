//! The receive side of a call's pipeline: one slot per remote stream (RTP through the jitter
//! buffer and the Opus decoder, or PCM through a playout ring and an upsampler), the mix for
//! the bot, its 16 kHz copy and each stream's unmixed 16 kHz frame, and received DTMF.

use std::time::Duration;

use bytes::Bytes;

use super::speakers::Speakers;
use super::{CODEC_NAME, Context, PipelineConfig, PipelineError, PipelineEvent, StreamStats};
use crate::codec::{FecOutcome, OpusDecoder};
use crate::dtmf::{DtmfDetector, ToneReceived};
use crate::frame::{
    BYTES_PER_FRAME_16K_S16, Frame16, Frame48, SAMPLES_PER_FRAME_16K, SILENT_FRAME_48, level_dbov,
};
use crate::jitter::{JitterBuffer, JitterStats, Playout, PushOutcome};
use crate::mixer::{Mixer, SourceId};
use crate::pcm::{PcmFrame, PcmPlayout, PcmPush, PcmRate, PcmUpsampler, PlayoutStep};
use crate::resample::{Downsampler, ResampleError, f32_to_s16le_bytes};
use crate::rtp::RtpPacket;

/// Where a remote stream's audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    /// Opus in RTP, through the jitter buffer and the decoder.
    Rtp,
    /// Raw PCM frames, through the playout ring and an upsampler.
    Pcm,
}

/// An RTP stream's input side, made the first time a slot carries an RTP stream.
#[derive(Debug)]
struct RtpInput {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
}

/// A PCM stream's input side, made the first time a slot carries a PCM stream.
#[derive(Debug)]
struct PcmInput {
    playout: PcmPlayout,
    up: PcmUpsampler,
    /// The rate of the frames played (for the stats' codec name).
    rate: PcmRate,
}

pub(super) struct RemoteStream {
    pub(super) live: bool,
    /// The SSRC, or a PCM stream's key.
    pub(super) ssrc: u32,
    pub(super) source_id: u32,
    kind: StreamKind,
    /// Built the first time the slot carries an RTP stream: PCM-only calls need no jitter
    /// buffer and no decoder.
    rtp_in: Option<RtpInput>,
    /// Built the first time the slot carries a PCM stream.
    pcm_in: Option<Box<PcmInput>>,
    mixer_source: Option<SourceId>,
    pub(super) pcm: Box<Frame48>,
    down: Option<Box<Downsampler>>,
    pub(super) pcm16k: Box<[u8; BYTES_PER_FRAME_16K_S16]>,
    scratch16: Box<Frame16>,
    last_packet: Duration,
    decode_errors: u64,
    playing: bool,
    pub(super) level_dbov: f32,
    /// Slow-moving level for the dominant speaker choice.
    pub(super) smoothed_dbov: f32,
    /// Whether the last frame was above the speech threshold.
    loud: bool,
    /// Ticks left in the active-speaker hangover.
    pub(super) active_ticks: u32,
}

impl RemoteStream {
    fn new() -> Self {
        RemoteStream {
            live: false,
            ssrc: 0,
            source_id: 0,
            kind: StreamKind::Rtp,
            rtp_in: None,
            pcm_in: None,
            mixer_source: None,
            pcm: Box::new(SILENT_FRAME_48),
            // Made only once a second stream is live: a lone stream's unmixed frame is the mix.
            down: None,
            pcm16k: Box::new([0; BYTES_PER_FRAME_16K_S16]),
            scratch16: Box::new([0.0; SAMPLES_PER_FRAME_16K]),
            last_packet: Duration::ZERO,
            decode_errors: 0,
            playing: false,
            level_dbov: -127.0,
            smoothed_dbov: -127.0,
            loud: false,
            active_ticks: 0,
        }
    }

    /// Readies the slot for a new stream of `kind`: builds what that kind needs the first
    /// time (the only allocation after the slot itself), clears its history otherwise.
    fn prepare(&mut self, kind: StreamKind, config: &PipelineConfig) -> Result<(), PipelineError> {
        match kind {
            StreamKind::Rtp => match self.rtp_in.as_mut() {
                // Its stats are kept, as they always were for a slot's jitter buffer.
                Some(r) => {
                    r.jitter.reset();
                    let _ = r.decoder.reset();
                }
                None => {
                    self.rtp_in = Some(RtpInput {
                        jitter: JitterBuffer::new(config.jitter),
                        decoder: OpusDecoder::new()?,
                    });
                }
            },
            StreamKind::Pcm => match self.pcm_in.as_mut() {
                // The upsampler is cleared by the first frame, which brings the rate.
                Some(p) => p.playout.clear(),
                None => {
                    self.pcm_in = Some(Box::new(PcmInput {
                        playout: PcmPlayout::new(config.pcm_prebuffer_frames),
                        up: PcmUpsampler::new(),
                        rate: PcmRate::Hz16000,
                    }));
                }
            },
        }
        self.kind = kind;
        Ok(())
    }

    /// Whether a new stream of `kind` (at `rate`, for PCM) would find everything it needs
    /// already built in this slot.
    fn is_equipped_for(&self, kind: StreamKind, rate: Option<PcmRate>) -> bool {
        match kind {
            StreamKind::Rtp => self.rtp_in.is_some(),
            StreamKind::Pcm => self
                .pcm_in
                .as_deref()
                .is_some_and(|p| rate.is_none_or(|r| p.up.has(r))),
        }
    }

    pub(super) fn stats(&self) -> StreamStats {
        let (codec, jitter) = match (self.kind, self.pcm_in.as_deref(), &self.rtp_in) {
            (StreamKind::Pcm, Some(p), _) => (p.rate.codec_name(), p.playout.jitter_stats()),
            (StreamKind::Rtp, _, Some(r)) => (CODEC_NAME, *r.jitter.stats()),
            _ => (CODEC_NAME, JitterStats::default()),
        };
        StreamStats {
            ssrc: self.ssrc,
            source_id: self.source_id,
            codec,
            jitter,
            decode_errors: self.decode_errors,
            level_dbov: self.level_dbov,
        }
    }

    /// Takes one PCM frame into the playout ring; a first frame or a new rate readies the
    /// upsampler (which allocates only the first time the slot sees that rate).
    fn push_pcm(&mut self, frame: &PcmFrame) -> Result<PcmPush, ResampleError> {
        let Some(input) = self.pcm_in.as_deref_mut() else {
            return Ok(PcmPush::Buffered);
        };
        let new_rate = input.playout.rate() != Some(frame.rate());
        let outcome = input.playout.push(frame);
        if new_rate {
            input.rate = frame.rate();
            input.up.prepare(frame.rate())?;
        }
        Ok(outcome)
    }

    /// Produces this tick's frame into `pcm`; returns whether it carries audio.
    fn play(&mut self, now: Duration, use_fec: bool, threshold: f32) -> bool {
        let (produced, played) = match self.kind {
            StreamKind::Rtp => self.decode_rtp(now, use_fec),
            StreamKind::Pcm => self.play_pcm(),
        };
        if let Produced::Silence = produced {
            self.pcm.fill(0.0);
        }
        self.level_dbov = level_dbov(&self.pcm[..]);
        if self.kind == StreamKind::Rtp
            && let Some(r) = self.rtp_in.as_mut()
        {
            r.jitter.set_silent(self.level_dbov < threshold);
        }
        // ~0.3 s time constant: steady enough for dominance, quick enough to follow turns.
        self.smoothed_dbov += (self.level_dbov - self.smoothed_dbov) * 0.06;
        self.loud = self.level_dbov >= threshold;
        self.playing = played && !matches!(produced, Produced::Silence);
        self.playing
    }
}

impl RemoteStream {
    /// This tick's frame of an RTP stream: decoded, rebuilt from FEC, or concealed.
    fn decode_rtp(&mut self, now: Duration, use_fec: bool) -> (Produced, bool) {
        let Some(RtpInput { jitter, decoder }) = self.rtp_in.as_mut() else {
            return (Produced::Silence, false);
        };
        let pcm = &mut self.pcm[..];
        let (result, played) = match jitter.pop(now) {
            Playout::Buffering => (Ok(Produced::Silence), false),
            Playout::Silence => (Ok(Produced::Silence), true),
            Playout::Frame(p) => match decoder.decode(p.payload(), pcm) {
                Ok(()) => (Ok(Produced::Decoded), true),
                Err(e) => (Err(e), true),
            },
            Playout::Lost { fec: Some(next) } if use_fec => {
                match decoder.decode_fec(next.payload(), pcm) {
                    Ok(FecOutcome::Recovered) => (Ok(Produced::Fec), true),
                    Ok(FecOutcome::Concealed) => (Ok(Produced::Concealed), true),
                    Err(e) => (Err(e), true),
                }
            }
            Playout::Lost { .. } | Playout::Underrun => match decoder.conceal(pcm) {
                Ok(()) => (Ok(Produced::Concealed), true),
                Err(e) => (Err(e), true),
            },
        };
        let produced = match result {
            Ok(p) => p,
            Err(_) => {
                // Garbage payload: count it and conceal instead, so the tick goes on.
                self.decode_errors += 1;
                if decoder.conceal(pcm).is_ok() {
                    Produced::Concealed
                } else {
                    Produced::Silence
                }
            }
        };
        match produced {
            Produced::Fec => jitter.record_fec_recovered(),
            Produced::Concealed => jitter.record_concealed(),
            Produced::Decoded | Produced::Silence => {}
        }
        (produced, played)
    }

    /// This tick's frame of a PCM stream: the ring's next frame upsampled to 48 kHz. On an
    /// underrun (counted by the ring) a silent frame goes through the upsampler instead, so
    /// the last 5 ms it held of the frame before come out in order and the stream restarts
    /// from a clean history.
    fn play_pcm(&mut self) -> (Produced, bool) {
        let Some(input) = self.pcm_in.as_deref_mut() else {
            return (Produced::Silence, false);
        };
        let rate = input.rate;
        let result = match input.playout.pop() {
            PlayoutStep::Buffering => return (Produced::Silence, false),
            PlayoutStep::Frame(f) => input.up.process(f.rate(), Some(f), &mut self.pcm),
            PlayoutStep::Underrun => input.up.process(rate, None, &mut self.pcm),
        };
        match result {
            Ok(()) => (Produced::Decoded, true),
            Err(_) => {
                self.decode_errors += 1;
                (Produced::Silence, true)
            }
        }
    }
}

enum Produced {
    Decoded,
    Fec,
    Concealed,
    Silence,
}

/// The receive side's state; the call's settings, events and counters come with each call
/// ([`Context`]).
pub(super) struct ReceiveSide {
    pub(super) streams: Vec<RemoteStream>,
    /// SSRC → Graph source id assignments.
    source_ids: Vec<(u32, u32)>,
    mixer: Mixer,
    /// The mix as the bot's 16 kHz s16 bytes (with [`BotAudioFormat::Pcm16k`](super::BotAudioFormat)).
    pub(super) mixed_16k: Box<[u8; BYTES_PER_FRAME_16K_S16]>,
    /// `None` unless the bot takes 16 kHz.
    down: Option<Box<Downsampler>>,
    scratch16: Box<Frame16>,
    pub(super) mixed_silent: bool,
    dtmf: DtmfDetector,
}

impl ReceiveSide {
    pub(super) fn new(config: &PipelineConfig) -> Result<Self, PipelineError> {
        Ok(ReceiveSide {
            streams: Vec::with_capacity(config.max_remote_streams),
            source_ids: Vec::with_capacity(config.max_remote_streams * 2),
            mixer: Mixer::with_capacity(config.max_remote_streams),
            mixed_16k: Box::new([0; BYTES_PER_FRAME_16K_S16]),
            down: if config.bot_format == super::BotAudioFormat::Pcm16k {
                Some(Box::new(Downsampler::new()?))
            } else {
                None
            },
            scratch16: Box::new([0.0; SAMPLES_PER_FRAME_16K]),
            mixed_silent: true,
            dtmf: DtmfDetector::new(),
        })
    }

    /// Whether the bot takes 16 kHz frames (the mix and each unmixed stream).
    pub(super) fn has_16k(&self) -> bool {
        self.down.is_some()
    }

    /// The mix of this tick, 48 kHz.
    pub(super) fn mixed(&self) -> &Frame48 {
        self.mixer.mixed()
    }

    pub(super) fn assign_source_id(&mut self, ssrc: u32, source_id: u32) {
        if let Some(entry) = self.source_ids.iter_mut().find(|(s, _)| *s == ssrc) {
            entry.1 = source_id;
        } else if self.source_ids.len() < self.source_ids.capacity() {
            self.source_ids.push((ssrc, source_id));
        } else {
            self.source_ids[0] = (ssrc, source_id);
            self.source_ids.rotate_left(1);
        }
        // An RTP stream and a PCM stream may share the number; both are that source.
        for s in self.streams.iter_mut().filter(|s| s.live && s.ssrc == ssrc) {
            s.source_id = source_id;
        }
    }

    pub(super) fn push_rtp(
        &mut self,
        packet: Bytes,
        now: Duration,
        cx: &mut Context<'_>,
        speakers: &mut Speakers,
    ) {
        let packet = match RtpPacket::parse(packet) {
            Ok(p) => p,
            Err(e) => {
                cx.stats.rtp_errors.record(&e);
                return;
            }
        };
        if Some(packet.payload_type()) == cx.config.telephone_event_payload_type {
            self.push_telephone_event(&packet, now, cx);
            return;
        }
        if packet.payload_type() != cx.config.payload_type {
            cx.stats.unknown_payload_type += 1;
            return;
        }
        let ssrc = packet.ssrc();
        let Some(idx) = self.stream_for(ssrc, StreamKind::Rtp, None, now, cx, speakers) else {
            return;
        };
        let stream = &mut self.streams[idx];
        stream.last_packet = now;
        let Some(rtp) = stream.rtp_in.as_mut() else {
            return;
        };
        if rtp.jitter.push(packet, now) == PushOutcome::Reset {
            // A far jump in sequence numbers: the decoder's history belongs to the old run.
            let _ = rtp.decoder.reset();
            cx.events.push(PipelineEvent::StreamReset {
                ssrc,
                source_id: stream.source_id,
            });
        }
    }

    pub(super) fn push_pcm(
        &mut self,
        key: u32,
        frame: &PcmFrame,
        now: Duration,
        cx: &mut Context<'_>,
        speakers: &mut Speakers,
    ) {
        let Some(idx) =
            self.stream_for(key, StreamKind::Pcm, Some(frame.rate()), now, cx, speakers)
        else {
            return;
        };
        let stream = &mut self.streams[idx];
        stream.last_packet = now;
        match stream.push_pcm(frame) {
            Ok(PcmPush::RateChanged) => cx.events.push(PipelineEvent::StreamReset {
                ssrc: key,
                source_id: stream.source_id,
            }),
            Ok(PcmPush::Buffered | PcmPush::DroppedOldest) => {}
            Err(_) => cx.stats.resample_errors += 1,
        }
    }

    /// The live stream `ssrc` of `kind`, or a new one; `None` (counted) when no slot is free.
    fn stream_for(
        &mut self,
        ssrc: u32,
        kind: StreamKind,
        rate: Option<PcmRate>,
        now: Duration,
        cx: &mut Context<'_>,
        speakers: &mut Speakers,
    ) -> Option<usize> {
        let found = self
            .streams
            .iter()
            .position(|s| s.live && s.ssrc == ssrc && s.kind == kind);
        let idx = found.or_else(|| self.open_stream(ssrc, kind, rate, now, cx, speakers));
        if idx.is_none() {
            cx.stats.streams_full += 1;
        }
        idx
    }

    fn push_telephone_event(&mut self, packet: &RtpPacket, now: Duration, cx: &mut Context<'_>) {
        let (ssrc, timestamp) = (packet.ssrc(), packet.timestamp());
        let (events, source_ids) = (&mut *cx.events, &self.source_ids);
        self.dtmf.push(ssrc, timestamp, packet.payload(), now, |t| {
            events.push(tone_event(t, source_ids));
        });
        cx.stats.dtmf = self.dtmf.stats();
    }

    /// Ends tones whose end packets never came.
    pub(super) fn poll_dtmf(&mut self, now: Duration, cx: &mut Context<'_>) {
        let (events, source_ids) = (&mut *cx.events, &self.source_ids);
        self.dtmf
            .poll(now, |t| events.push(tone_event(t, source_ids)));
        cx.stats.dtmf = self.dtmf.stats();
    }

    /// Finds a slot for a new SSRC: a free one, else (single-stream calls) the current one
    /// is replaced, else the longest-silent stream past the timeout. Among free slots, one
    /// that already carried this kind of stream (at this rate) is taken first, so that reuse
    /// allocates nothing even in a call that mixes kinds or rates.
    fn open_stream(
        &mut self,
        ssrc: u32,
        kind: StreamKind,
        rate: Option<PcmRate>,
        now: Duration,
        cx: &mut Context<'_>,
        speakers: &mut Speakers,
    ) -> Option<usize> {
        let source_id = source_id_in(&self.source_ids, ssrc);
        if cx.config.max_remote_streams == 1 && self.streams.first().is_some_and(|s| s.live) {
            // Two-party call: the peer restarted its stream under a new SSRC.
            let s = &mut self.streams[0];
            let old = (s.ssrc, s.source_id);
            s.prepare(kind, cx.config).ok()?;
            s.ssrc = ssrc;
            s.source_id = source_id;
            s.last_packet = now;
            cx.events
                .push(PipelineEvent::StreamReset { ssrc, source_id });
            if old.1 != source_id {
                speakers.forget(old.1, cx.events);
            }
            return Some(0);
        }
        let equipped = self
            .streams
            .iter()
            .position(|s| !s.live && s.is_equipped_for(kind, rate));
        let idx = if let Some(i) = equipped.or_else(|| self.streams.iter().position(|s| !s.live)) {
            i
        } else if self.streams.len() < cx.config.max_remote_streams {
            // First use of this slot: with `prepare` below, the only allocation a stream makes.
            self.streams.push(RemoteStream::new());
            self.streams.len() - 1
        } else {
            return None;
        };
        self.streams[idx].prepare(kind, cx.config).ok()?;
        let mixer_source = self.mixer.add_source().ok()?;
        let s = &mut self.streams[idx];
        s.live = true;
        s.ssrc = ssrc;
        s.source_id = source_id;
        if let Some(d) = s.down.as_mut() {
            d.reset();
        }
        s.mixer_source = Some(mixer_source);
        s.last_packet = now;
        if self.down.is_some() && self.streams.iter().filter(|s| s.live).count() >= 2 {
            // From now on unmixed frames differ from the mix and need their own resampler
            // (~50 KiB each, so two-party calls never build one).
            for s in self
                .streams
                .iter_mut()
                .filter(|s| s.live && s.down.is_none())
            {
                match Downsampler::new() {
                    Ok(d) => s.down = Some(Box::new(d)),
                    Err(_) => cx.stats.resample_errors += 1,
                }
            }
        }
        let s = &mut self.streams[idx];
        s.decode_errors = 0;
        s.level_dbov = -127.0;
        s.smoothed_dbov = -127.0;
        s.active_ticks = 0;
        s.loud = false;
        s.playing = false;
        cx.events
            .push(PipelineEvent::StreamAdded { ssrc, source_id });
        Some(idx)
    }

    fn close_stream(&mut self, idx: usize, cx: &mut Context<'_>, speakers: &mut Speakers) {
        let s = &mut self.streams[idx];
        s.live = false;
        s.playing = false;
        if let Some(r) = s.rtp_in.as_mut() {
            r.jitter.reset();
        }
        if let Some(src) = s.mixer_source.take() {
            let _ = self.mixer.remove_source(src);
        }
        let (ssrc, source_id) = (s.ssrc, s.source_id);
        cx.events
            .push(PipelineEvent::StreamRemoved { ssrc, source_id });
        speakers.forget(source_id, cx.events);
    }

    /// This tick's receive step: streams silent past the timeout close, every live stream
    /// plays one frame into the mix, and the 16 kHz copies are made.
    pub(super) fn tick(&mut self, now: Duration, cx: &mut Context<'_>, speakers: &mut Speakers) {
        for i in 0..self.streams.len() {
            if self.streams[i].live
                && now.saturating_sub(self.streams[i].last_packet) >= cx.config.stream_timeout
            {
                self.close_stream(i, cx, speakers);
            }
        }
        let threshold = cx.config.speech_threshold_dbov;
        let hangover = cx.config.active_hangover_ticks;
        for s in self.streams.iter_mut().filter(|s| s.live) {
            let playing = s.play(now, cx.config.use_inband_fec, threshold);
            if s.loud {
                s.active_ticks = hangover.max(1);
            } else {
                s.active_ticks = s.active_ticks.saturating_sub(1);
            }
            if playing && let Some(src) = s.mixer_source {
                let _ = self.mixer.push(src, &s.pcm);
            }
        }
        let mixed = self.mixer.mix();
        self.mixed_silent = level_dbov(&mixed[..]) < threshold;
        if let Some(down) = self.down.as_mut() {
            if down.process(mixed, &mut self.scratch16).is_err() {
                cx.stats.resample_errors += 1;
            }
            if f32_to_s16le_bytes(&self.scratch16[..], &mut self.mixed_16k[..]).is_err() {
                cx.stats.resample_errors += 1;
            }
        }
        // Unmixed frames are resampled for every live stream, so each downsampler's history
        // stays continuous whether or not the stream makes the top N this tick. With a single
        // stream (a two-party call) its unmixed frame is the mix itself (soft clipping aside,
        // which only touches peaks above 0.8), so the second resampling is skipped.
        let single = self.streams.iter().filter(|s| s.live).count() == 1;
        if self.down.is_none() {
            return;
        }
        for s in self.streams.iter_mut().filter(|s| s.live) {
            match (single, s.down.as_mut()) {
                (true, _) => s.pcm16k.copy_from_slice(&self.mixed_16k[..]),
                (false, Some(down)) => {
                    if down.process(&s.pcm, &mut s.scratch16).is_err() {
                        cx.stats.resample_errors += 1;
                    }
                    if f32_to_s16le_bytes(&s.scratch16[..], &mut s.pcm16k[..]).is_err() {
                        cx.stats.resample_errors += 1;
                    }
                }
                // Its resampler could not be built (counted then): better silence than stale.
                (false, None) => s.pcm16k.fill(0),
            }
        }
    }

    /// Live streams that played audio this tick.
    pub(super) fn streams_playing(&self) -> usize {
        self.streams.iter().filter(|s| s.live && s.playing).count()
    }

    /// Every slot's RTP input, live or not.
    pub(super) fn jitter_buffers(&self) -> impl Iterator<Item = &JitterBuffer> + '_ {
        self.streams
            .iter()
            .filter_map(|s| s.rtp_in.as_ref().map(|r| &r.jitter))
    }
}

/// The Graph source id assigned to `ssrc`, else the SSRC itself.
fn source_id_in(source_ids: &[(u32, u32)], ssrc: u32) -> u32 {
    source_ids
        .iter()
        .find(|(s, _)| *s == ssrc)
        .map_or(ssrc, |&(_, id)| id)
}

fn tone_event(t: ToneReceived, source_ids: &[(u32, u32)]) -> PipelineEvent {
    PipelineEvent::ToneReceived {
        ssrc: t.ssrc,
        source_id: source_id_in(source_ids, t.ssrc),
        tone: t.tone,
        duration: t.duration,
        end_seen: t.end_seen,
    }
}
