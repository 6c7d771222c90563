//! The send side of a call's pipeline: the bot's frames through the prebuffering send queue,
//! the players, their mix, then Opus (or the prompt's own packet: passthrough) in RTP, DTMF
//! tones in place of audio, or PCM frames ([`SendOutput::Pcm`]).

use std::sync::Arc;
use std::time::Duration;

use super::{
    BotFrame, Context, MAX_RTP_PACKET, PipelineConfig, PipelineError, PipelineEvent, PipelineStats,
    PlayerFrame, PlayerSender, SILENCE_DBOV, SendOutput,
};
use crate::codec::{EncodedFrame, OpusEncoder, OpusPacket};
use crate::dtmf::{DtmfSender, SendStep, Tone, ToneRequest};
use crate::feedback::{AdaptiveFec, LossReports};
use crate::frame::{
    Frame16, Frame48, SAMPLES_PER_FRAME_16K, SAMPLES_PER_FRAME_48K, SILENT_FRAME_48, level_dbov,
};
use crate::mixer::{Mixer, SourceId};
use crate::pcm::{MAX_PCM_FRAME, PcmDownsampler, PcmFrame, PcmFrameOut};
use crate::queue::{self, Consumer, QueueStats};
use crate::resample::{Upsampler, s16_to_f32};
use crate::rtp::{AudioLevel, HeaderExtension, RtpHeader, RtpPacketSpec};

/// The send side's state; the call's settings, events and counters come with each call
/// ([`Context`]).
pub(super) struct SendSide {
    bot_rx: Consumer<BotFrame>,
    /// Whether the bot's frames flow (the prebuffer was filled).
    sending: bool,
    /// Ticks the first queued frame has waited while prebuffering.
    waited: usize,
    upsampler: Box<Upsampler>,
    scratch16: Box<Frame16>,
    players: Vec<Player>,
    mixer: Mixer,
    bot_source: SourceId,
    /// `None` with [`SendOutput::Pcm`]: nothing is encoded.
    encoder: Option<OpusEncoder>,
    pass: Box<Passthrough>,
    /// The PCM send side, with [`SendOutput::Pcm`].
    pcm: Option<Box<PcmSend>>,
    next_seq: u16,
    next_ts: u32,
    sent_last_tick: bool,
    /// Whether the send side runs (`CallPipeline::set_send_active`).
    pub(super) active: bool,
    /// The encoder at rest on digital silence, and the update it repeats meanwhile.
    rest: EncoderRest,
    /// Receiver reports from the transport, when it gives them, and the FEC that follows them.
    feedback: Option<(Arc<LossReports>, AdaptiveFec)>,
    out_packet: Box<[u8; MAX_RTP_PACKET]>,
    out_len: usize,
    dtmf: DtmfSender,
    tone_rx: Consumer<ToneRequest>,
}

/// The send side's PCM output: the mix resampled to the output rate.
#[derive(Debug)]
struct PcmSend {
    down: PcmDownsampler,
    scratch: [f32; MAX_PCM_FRAME],
    out: PcmFrameOut,
    /// Whether `out` was produced by the last tick.
    ready: bool,
}

struct Player {
    rx: Consumer<PlayerFrame>,
    source: SourceId,
}

/// The send side's Opus passthrough state.
struct Passthrough {
    /// The packet of this tick's candidate frame.
    packet: OpusPacket,
    /// A frame was passed through since the encoder last ran: its history is stale.
    encoder_stale: bool,
}

impl SendSide {
    pub(super) fn new(
        config: &PipelineConfig,
        bot_rx: Consumer<BotFrame>,
        tone_rx: Consumer<ToneRequest>,
    ) -> Result<Self, PipelineError> {
        let (encoder, pcm) = match config.send_output {
            SendOutput::Rtp => (Some(OpusEncoder::new(config.encoder)?), None),
            SendOutput::Pcm(rate) => {
                let send = PcmSend {
                    down: PcmDownsampler::new(rate)?,
                    scratch: [0.0; MAX_PCM_FRAME],
                    out: PcmFrameOut {
                        frame: PcmFrame::silent(rate),
                        timestamp: Duration::ZERO,
                        first_of_spurt: false,
                    },
                    ready: false,
                };
                (None, Some(Box::new(send)))
            }
        };
        let mut mixer = Mixer::with_capacity(1 + config.max_players);
        let bot_source = mixer.add_source()?;
        Ok(SendSide {
            bot_rx,
            sending: false,
            waited: 0,
            // Built whatever the receive format: a bot may send either format.
            upsampler: Box::new(Upsampler::new()?),
            scratch16: Box::new([0.0; SAMPLES_PER_FRAME_16K]),
            players: Vec::with_capacity(config.max_players),
            mixer,
            bot_source,
            encoder,
            pass: Box::new(Passthrough {
                packet: OpusPacket::EMPTY,
                encoder_stale: false,
            }),
            pcm,
            next_seq: config.initial_sequence_number,
            next_ts: config.initial_timestamp,
            sent_last_tick: false,
            active: true,
            rest: EncoderRest::default(),
            feedback: None,
            out_packet: Box::new([0; MAX_RTP_PACKET]),
            out_len: 0,
            dtmf: DtmfSender::new(),
            tone_rx,
        })
    }

    /// Adds a player source mixed into what the bot sends (allocates its queue).
    pub(super) fn add_player(
        &mut self,
        queue_frames: usize,
        config: &PipelineConfig,
    ) -> Result<PlayerSender, PipelineError> {
        if self.players.len() >= config.max_players {
            return Err(PipelineError::PlayersFull {
                capacity: config.max_players,
            });
        }
        let source = self.mixer.add_source()?;
        let (tx, rx) = queue::bounded(queue_frames.max(1));
        self.players.push(Player { rx, source });
        Ok(PlayerSender { tx })
    }

    /// The RTP packet produced by the last tick, if any.
    pub(super) fn outgoing_packet(&self) -> Option<&[u8]> {
        (self.out_len > 0).then(|| &self.out_packet[..self.out_len])
    }

    /// The bot's send queue's counters.
    pub(super) fn bot_queue_stats(&self) -> QueueStats {
        self.bot_rx.stats()
    }

    /// Whether the pipeline sends PCM frames ([`SendOutput::Pcm`]).
    pub(super) fn sends_pcm(&self) -> bool {
        self.pcm.is_some()
    }

    /// The PCM frame produced by the last tick, if any ([`SendOutput::Pcm`]).
    pub(super) fn outgoing_pcm(&self) -> Option<&PcmFrameOut> {
        self.pcm.as_deref().and_then(|p| p.ready.then_some(&p.out))
    }

    /// A held send side: players and tones stay queued for when it runs, the bot's live
    /// frames are discarded (a stream played late would only be late), the encoder rests.
    fn hold(&mut self, stats: &mut PipelineStats) {
        stats.sent_level_dbov = SILENCE_DBOV;
        stats.send_held_ticks += 1;
        self.sent_last_tick = false;
        self.sending = false;
        self.waited = 0;
        while self.bot_rx.pop().is_some() {
            stats.bot_frames_discarded_while_held += 1;
        }
    }

    /// Takes the bot's next frame through the prebuffering send queue.
    fn next_bot_frame(&mut self, cx: &mut Context<'_>) -> Option<BotFrame> {
        if !self.sending {
            if self.bot_rx.is_empty() {
                self.waited = 0;
                return None;
            }
            // Hold the first frames back by a fixed delay: the queue then keeps that cushion
            // whatever size the bot's bursts are.
            self.waited += 1;
            if self.waited <= cx.config.send_prebuffer_frames {
                return None;
            }
            self.waited = 0;
            self.sending = true;
        }
        match self.bot_rx.pop() {
            Some(f) => Some(f),
            None => {
                // The bot ran dry: collect a new cushion before sending again.
                cx.stats.bot_underruns += 1;
                self.sending = false;
                None
            }
        }
    }

    pub(super) fn tick(&mut self, now: Duration, cx: &mut Context<'_>) {
        self.out_len = 0;
        if let Some(pcm) = self.pcm.as_deref_mut() {
            pcm.ready = false;
        }
        let ts = self.next_ts;
        // RTP time advances every tick, sent or not: after a pause the receiver sees the
        // timestamp jump by the pause's length with contiguous sequence numbers (DTX).
        self.next_ts = self.next_ts.wrapping_add(SAMPLES_PER_FRAME_48K as u32);
        if !self.active {
            self.hold(cx.stats);
            return;
        }
        self.follow_loss_reports(cx.stats);

        let mut any_input = false;
        // Inputs carrying audio (a packet counts as audio): passthrough needs exactly one.
        let mut audible = 0usize;
        let mut has_packet = false;
        if let Some(frame) = self.next_bot_frame(cx)
            && let Ok(input) = self.mixer.input_mut(self.bot_source)
        {
            any_input = true;
            match frame {
                BotFrame::Pcm48k(f) => input.copy_from_slice(&f),
                BotFrame::Pcm16k(samples) => {
                    let ok = s16_to_f32(&samples, &mut self.scratch16[..]).is_ok()
                        && self.upsampler.process(&self.scratch16, input).is_ok();
                    if !ok {
                        cx.stats.resample_errors += 1;
                        input.fill(0.0);
                    }
                }
            }
            // A bot streaming silence between its turns does not stop a prompt's passthrough.
            if !is_digital_silence(input) {
                audible += 1;
            }
        }
        let mut i = 0;
        while i < self.players.len() {
            let p = &self.players[i];
            if let Some(frame) = p.rx.pop() {
                any_input = true;
                let _ = self.mixer.push(p.source, &frame.pcm);
                match frame.packet {
                    Some(packet) => {
                        audible += 1;
                        if !has_packet {
                            has_packet = true;
                            self.pass.packet = packet;
                        }
                    }
                    None if !is_digital_silence(&frame.pcm) => audible += 1,
                    None => {}
                }
            } else if p.rx.is_finished() {
                let p = self.players.swap_remove(i);
                let _ = self.mixer.remove_source(p.source);
                continue;
            }
            i += 1;
        }
        if self.pcm.is_some() {
            self.send_pcm(any_input, now, cx);
            return;
        }
        if let Some(pt) = cx.config.telephone_event_payload_type
            && self.send_tone(pt, ts, cx)
        {
            // The tone replaces this tick's audio; the mix is still taken so the sources'
            // frames of this tick do not linger into the next.
            if any_input {
                let _ = self.mixer.mix();
            }
            return;
        }
        let frame: &Frame48 = if any_input {
            self.mixer.mix()
        } else {
            &SILENT_FRAME_48
        };
        let passthrough = has_packet && audible == 1 && cx.config.opus_passthrough;
        if has_packet && !passthrough {
            cx.stats.passthrough_mixed += 1;
        }
        // Digital silence (nothing to send, or frames of zeros): the encoder runs until it
        // has told the far end to play comfort noise (libopus DTX), then rests until audio
        // comes back — a listen-only call costs no encoding — while its last update goes out
        // again every 400 ms, as libopus would send it. Without DTX silence is encoded and
        // sent, keeping the stream flowing as configured.
        let silent = !any_input || is_digital_silence(frame);
        let update;
        let (payload, level): (&[u8], AudioLevel) = if passthrough {
            // The player's packet is this tick's payload: no encoding. The encoder's history
            // stops here; it is reset before it next runs.
            self.rest.wake();
            self.pass.encoder_stale = true;
            cx.stats.passthrough_frames += 1;
            let sent_dbov = level_dbov(&frame[..]);
            cx.stats.sent_level_dbov = sent_dbov;
            let level = AudioLevel {
                voice: sent_dbov >= cx.config.speech_threshold_dbov,
                level_dbov: crate::rtp::dbov_of(&frame[..]),
            };
            (self.pass.packet.as_bytes(), level)
        } else if silent && self.rest.is_resting() {
            cx.stats.sent_level_dbov = SILENCE_DBOV;
            cx.stats.dtx_ticks += 1;
            cx.stats.encoder_rested_ticks += 1;
            let Some(due) = self.rest.tick() else {
                self.sent_last_tick = false;
                return;
            };
            cx.stats.comfort_noise_updates += 1;
            update = due;
            let silence = AudioLevel {
                voice: false,
                level_dbov: 127,
            };
            (update.as_slice(), silence)
        } else {
            self.rest.wake();
            let sent_dbov = level_dbov(&frame[..]);
            cx.stats.sent_level_dbov = sent_dbov;
            let level = AudioLevel {
                voice: sent_dbov >= cx.config.speech_threshold_dbov,
                level_dbov: crate::rtp::dbov_of(&frame[..]),
            };
            let Some(encoder) = self.encoder.as_mut() else {
                self.sent_last_tick = false;
                return;
            };
            if self.pass.encoder_stale {
                // Back from passthrough: the far end's decoder state now comes from the
                // prompt's packets, which this encoder never made, and its own history is
                // audio from before them. After a reset its first packet is coded on its own
                // (no prediction from earlier frames) and its look-ahead holds no stale audio.
                // Priming it with the last passed-through frame was measured worse: the next
                // packet then predicts from a frame the far end never received
                // (docs/media-pipeline.md, "Opus passthrough").
                self.pass.encoder_stale = false;
                cx.stats.encoder_resets += 1;
                if encoder.reset().is_err() {
                    cx.stats.encode_errors += 1;
                }
            }
            cx.stats.frames_encoded += 1;
            match encoder.encode(frame) {
                Ok(EncodedFrame::Voice(p)) => {
                    if silent {
                        self.rest.keep_update(p);
                    }
                    (p, level)
                }
                Ok(EncodedFrame::Dtx) => {
                    cx.stats.dtx_ticks += 1;
                    self.sent_last_tick = false;
                    if silent {
                        self.rest.start();
                    }
                    return;
                }
                Err(_) => {
                    cx.stats.encode_errors += 1;
                    self.sent_last_tick = false;
                    return;
                }
            }
        };
        let mut header = RtpHeader::new(
            cx.config.payload_type,
            self.next_seq,
            ts,
            cx.config.local_ssrc,
        );
        // RFC 3551 §4.1: the marker flags the first packet of a talk spurt.
        header.marker = !self.sent_last_tick;
        let level_byte = [level.to_byte()];
        let ext_storage;
        let extensions: &[HeaderExtension<'_>] = match cx.config.audio_level_ext_id {
            Some(id) => {
                ext_storage = [HeaderExtension {
                    id,
                    data: &level_byte,
                }];
                &ext_storage
            }
            None => &[],
        };
        let spec = RtpPacketSpec {
            header,
            extensions,
            payload,
            padding: 0,
        };
        match spec.write(&mut self.out_packet[..]) {
            Ok(n) => {
                self.out_len = n;
                self.next_seq = self.next_seq.wrapping_add(1);
                self.sent_last_tick = true;
                cx.stats.packets_sent += 1;
                cx.stats.bytes_sent += n as u64;
            }
            Err(_) => {
                cx.stats.encode_errors += 1;
                self.sent_last_tick = false;
            }
        }
    }

    /// The send mix as PCM ([`SendOutput::Pcm`]), on the same notion of silence as the RTP
    /// side's DTX: nothing while the bot, its players and sources are silent; the first
    /// frame after silence (or a hold) starts a spurt (`first_of_spurt`, a fresh resampler).
    /// The tick after a spurt's last frame sends one more, which carries the last 5 ms of the
    /// spurt that were still inside the resampler, then zeros.
    fn send_pcm(&mut self, any_input: bool, now: Duration, cx: &mut Context<'_>) {
        let Some(pcm) = self.pcm.as_deref_mut() else {
            return;
        };
        let frame: &Frame48 = if any_input {
            self.mixer.mix()
        } else {
            &SILENT_FRAME_48
        };
        let silent = !any_input || is_digital_silence(frame);
        cx.stats.sent_level_dbov = if silent {
            SILENCE_DBOV
        } else {
            level_dbov(&frame[..])
        };
        if silent && !self.sent_last_tick {
            return;
        }
        let first = !self.sent_last_tick;
        if first {
            // Whatever the resampler held belongs to audio that was never sent (a hold).
            pcm.down.reset();
        }
        match pcm
            .down
            .process(frame, &mut pcm.scratch, &mut pcm.out.frame)
        {
            Ok(()) => {
                pcm.out.timestamp = now;
                pcm.out.first_of_spurt = first;
                pcm.ready = true;
                cx.stats.pcm_frames_sent += 1;
                // The tail frame ends the spurt.
                self.sent_last_tick = !silent;
            }
            Err(_) => {
                cx.stats.resample_errors += 1;
                self.sent_last_tick = false;
            }
        }
    }

    /// Sends this tick's telephone-event packet instead of audio while a tone is held;
    /// false when audio goes out as usual.
    fn send_tone(&mut self, payload_type: u8, ts: u32, cx: &mut Context<'_>) -> bool {
        if self.dtmf.is_idle()
            && let Some(request) = self.tone_rx.pop()
        {
            let _ = self.dtmf.start(request, ts);
        }
        let SendStep::Packet { packet, finished } = self.dtmf.step(SAMPLES_PER_FRAME_48K as u32)
        else {
            return false;
        };
        let mut header = RtpHeader::new(
            payload_type,
            self.next_seq,
            packet.timestamp,
            cx.config.local_ssrc,
        );
        header.marker = packet.marker;
        let payload = packet.event.to_bytes();
        let spec = RtpPacketSpec {
            header,
            extensions: &[],
            payload: &payload,
            padding: 0,
        };
        if let Ok(n) = spec.write(&mut self.out_packet[..]) {
            self.out_len = n;
            self.next_seq = self.next_seq.wrapping_add(1);
            cx.stats.dtmf_packets_sent += 1;
            cx.stats.packets_sent += 1;
            cx.stats.bytes_sent += n as u64;
        }
        // Audio after the tone starts a new talk spurt (marker set).
        self.sent_last_tick = false;
        if finished && let Some(tone) = Tone::from_event(packet.event.event) {
            cx.events.push(PipelineEvent::ToneSent { tone });
        }
        true
    }

    /// Sets the expected loss the encoder protects against. A pipeline that takes receiver
    /// reports ([`use_loss_reports`](Self::use_loss_reports)) sets it itself.
    /// Without an encoder ([`SendOutput::Pcm`]) it is only recorded in the stats.
    pub(super) fn set_expected_loss_pct(
        &mut self,
        pct: u8,
        stats: &mut PipelineStats,
    ) -> Result<(), PipelineError> {
        stats.expected_loss_pct = match self.encoder.as_mut() {
            Some(encoder) => {
                encoder.set_expected_loss_pct(pct)?;
                encoder.config().expected_loss_pct
            }
            None => pct.min(100),
        };
        Ok(())
    }

    /// Drives in-band FEC from the far end's receiver reports, which the transport writes
    /// into `reports` ([`crate::feedback`]): from now on no FEC on a clean path, FEC with the
    /// reported loss's step when there is loss. Without it the encoder keeps its configured
    /// FEC and expected loss.
    pub(super) fn use_loss_reports(
        &mut self,
        reports: Arc<LossReports>,
        stats: &mut PipelineStats,
    ) -> Result<(), PipelineError> {
        let fec = AdaptiveFec::new();
        self.apply_expected_loss(fec.expected_loss_pct(), stats)?;
        self.feedback = Some((reports, fec));
        Ok(())
    }

    fn apply_expected_loss(
        &mut self,
        pct: u8,
        stats: &mut PipelineStats,
    ) -> Result<(), PipelineError> {
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.set_inband_fec(pct > 0)?;
        }
        self.set_expected_loss_pct(pct, stats)
    }

    /// Takes a new receiver report, if one came since the last tick.
    fn follow_loss_reports(&mut self, stats: &mut PipelineStats) {
        let Some((reports, fec)) = &mut self.feedback else {
            return;
        };
        let (count, fraction) = reports.latest();
        if count == stats.loss_reports {
            return;
        }
        let pct = fec.on_report(fraction);
        stats.loss_reports = count;
        stats.remote_fraction_lost = fraction;
        if pct != stats.expected_loss_pct && self.apply_expected_loss(pct, stats).is_err() {
            stats.encode_errors += 1;
        }
    }
}

/// libopus sends a comfort-noise update every 400 ms in DTX.
const DTX_UPDATE_TICKS: u32 = 20;

/// Largest comfort-noise update kept for repeating (libopus's are a few bytes).
const COMFORT_NOISE_MAX: usize = 64;

/// The send side's encoder at rest on digital silence: it is not called until audio returns,
/// and libopus's comfort-noise refresh is imitated by repeating its last packet of digital
/// silence every 400 ms (for digital silence every update is the same).
#[derive(Debug, Default)]
struct EncoderRest {
    /// Ticks spent at rest; `None` while the encoder runs.
    rested: Option<u32>,
    /// The encoder's last packet of digital silence (`len` bytes of `bytes`).
    update: ComfortNoise,
}

/// A small packet kept by value, so the tick copies it without allocating.
#[derive(Debug, Clone, Copy)]
struct ComfortNoise {
    bytes: [u8; COMFORT_NOISE_MAX],
    len: usize,
}

impl ComfortNoise {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Default for ComfortNoise {
    fn default() -> Self {
        ComfortNoise {
            bytes: [0; COMFORT_NOISE_MAX],
            len: 0,
        }
    }
}

impl EncoderRest {
    fn is_resting(&self) -> bool {
        self.rested.is_some()
    }

    /// The encoder said DTX on digital silence: rest from the next tick.
    fn start(&mut self) {
        self.rested = Some(0);
    }

    /// Audio again: the encoder runs.
    fn wake(&mut self) {
        self.rested = None;
    }

    /// Keeps a packet the encoder made of digital silence, for repeating at rest.
    fn keep_update(&mut self, packet: &[u8]) {
        if packet.len() <= COMFORT_NOISE_MAX {
            self.update.bytes[..packet.len()].copy_from_slice(packet);
            self.update.len = packet.len();
        }
    }

    /// One more tick at rest: the update to send now, every `DTX_UPDATE_TICKS`.
    fn tick(&mut self) -> Option<ComfortNoise> {
        let rested = self.rested.as_mut()?;
        *rested = rested.wrapping_add(1);
        (self.update.len > 0 && rested.is_multiple_of(DTX_UPDATE_TICKS)).then_some(self.update)
    }
}

/// True when every sample is below half a 16-bit step: nothing a far end could hear.
fn is_digital_silence(frame: &Frame48) -> bool {
    frame.iter().all(|s| s.abs() < 0.5 / 32_768.0)
}
