//! Adaptive jitter buffer for one remote RTP stream (one SSRC).
//!
//! Packets go in with their arrival time ([`JitterBuffer::push`]); once per 20 ms tick
//! [`JitterBuffer::pop`] says what to play: the next packet, a known loss (with the following
//! packet when it is buffered, for Opus in-band FEC), DTX silence, an underrun, or nothing yet.
//!
//! * Ordering uses extended sequence numbers (u16 wrap) and extended RTP timestamps (u32 wrap).
//! * Storage is a fixed ring of slots indexed by sequence number, allocated once: a push or a
//!   pop allocates nothing (the caller's [`Bytes`](bytes::Bytes) is moved in, not copied).
//! * The target delay follows the RFC 3550 §A.8 interarrival jitter between a floor and a
//!   ceiling. It rises at once (and by one frame per late packet), falls slowly, and the
//!   playout delay is realigned to it mostly in silence: when a DTX pause ends, the first packet
//!   is held exactly the target delay; while the talker is quiet a frame of silence is inserted
//!   (delay too short) or one is dropped (too long). In speech the delay grows only by
//!   underruns and shrinks by dropping one frame at most once a second.
//! * DTX is told from loss by sequence numbers: a jump in timestamp with contiguous sequence
//!   numbers is a pause of the sender, a gap in sequence numbers is loss.

use std::time::Duration;

use crate::rtp::RtpPacket;

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Lowest target delay (one frame by default).
    pub min_delay: Duration,
    /// Highest target delay.
    pub max_delay: Duration,
    /// RTP clock rate (48 kHz for Opus).
    pub clock_rate: u32,
    /// RTP timestamp units per packet (960 = 20 ms at 48 kHz).
    pub frame_ts: u32,
    /// Slots in the ring; packets further ahead than this re-anchor the stream.
    pub capacity: usize,
    /// How far the target delay may fall per popped frame.
    pub decay_per_frame: Duration,
    /// Frames of excess delay that must persist before one is dropped during speech.
    pub speech_shrink_after_frames: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            clock_rate: 48_000,
            frame_ts: 960,
            capacity: 64,
            decay_per_frame: Duration::from_micros(500),
            speech_shrink_after_frames: 50,
        }
    }
}

/// Counters and gauges of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets handed to `push` for this stream (after any reset, counts keep going).
    pub received: u64,
    /// Sequence numbers that playout passed without having the packet.
    pub lost: u64,
    /// Packets that arrived after their playout time had passed.
    pub late: u64,
    /// Packets already received, dropped.
    pub duplicate: u64,
    /// Packets that arrived with a lower sequence number than one already received.
    pub reordered: u64,
    /// Frames produced by packet-loss concealment (recorded by the decoding side).
    pub concealed: u64,
    /// Frames rebuilt from the next packet's in-band FEC (recorded by the decoding side).
    pub fec_recovered: u64,
    /// Packets played in order.
    pub played: u64,
    /// Ticks of DTX silence (sender paused).
    pub dtx_frames: u64,
    /// Ticks with nothing buffered while the sender seemed to be talking.
    pub underruns: u64,
    /// Frames dropped to shrink the delay.
    pub accelerated: u64,
    /// Silent frames inserted (in silence) to grow the delay.
    pub stretched: u64,
    /// Packets that did not fit the ring.
    pub overflow: u64,
    /// Restarts on an SSRC change or a large sequence jump.
    pub resets: u64,
    /// Audio buffered after the last pop.
    pub current_delay: Duration,
    /// The delay the buffer aims for now.
    pub target_delay: Duration,
    /// RFC 3550 §A.8 interarrival jitter.
    pub jitter: Duration,
}

/// What `push` did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for its playout time.
    Buffered,
    /// The stream restarted (new SSRC or a large jump) and the packet began the new one.
    Reset,
    /// Already stored: dropped.
    Duplicate,
    /// Its playout time has passed: dropped.
    Late,
    /// Too far from the current position to store; may start a new stream if followed up.
    OutOfWindow,
}

/// What to play on this tick.
#[derive(Debug)]
pub enum Playout<'a> {
    /// Nothing yet: no packet received, or filling to the target delay.
    Buffering,
    /// The next packet, in order.
    Frame(&'a RtpPacket),
    /// The packet for this tick is lost; `fec` is the packet after it when already here, whose
    /// in-band FEC may rebuild the lost frame.
    Lost {
        /// The packet after the lost one, when already here.
        fec: Option<&'a RtpPacket>,
    },
    /// The sender is in DTX (or presumed silent): play silence or comfort noise.
    Silence,
    /// Nothing buffered while the sender was talking: conceal; playout waits for the packet.
    Underrun,
}

#[derive(Debug, Default)]
struct Slot {
    /// Extended sequence number this slot last held (buffered or already played).
    seq: i64,
    /// Whether `seq` was received (false: never used).
    used: bool,
    packet: Option<RtpPacket>,
    ts: i64,
    arrival: Duration,
}

/// Jitter buffer for one remote stream. See the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Box<[Slot]>,
    ssrc: Option<u32>,
    started: bool,
    first_arrival: Duration,
    /// Extended sequence number of the next packet to play.
    expected_seq: i64,
    /// Extended RTP timestamp the next frame plays at.
    play_ts: i64,
    highest_seq: i64,
    buffered: usize,
    /// A.1-style probation: a far-off sequence number followed by its successor restarts.
    probation_seq: Option<u16>,
    /// Late packets in a row: past a max delay's worth, playout re-anchors on the stream.
    consecutive_late: u32,
    /// A.8 state.
    last_transit: Option<i64>,
    jitter_ts: f64,
    target_ts: f64,
    silent: bool,
    shrink_window: u32,
    shrink_window_min: usize,
    current: Option<RtpPacket>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Allocates the ring (the only allocation this type makes).
    pub fn new(config: JitterConfig) -> Self {
        let capacity = config.capacity.max(4);
        let mut slots = Vec::with_capacity(capacity);
        slots.resize_with(capacity, Slot::default);
        let mut jb = JitterBuffer {
            config: JitterConfig { capacity, ..config },
            slots: slots.into_boxed_slice(),
            ssrc: None,
            started: false,
            first_arrival: Duration::ZERO,
            expected_seq: 0,
            play_ts: 0,
            highest_seq: 0,
            buffered: 0,
            probation_seq: None,
            consecutive_late: 0,
            last_transit: None,
            jitter_ts: 0.0,
            target_ts: 0.0,
            silent: false,
            shrink_window: 0,
            shrink_window_min: usize::MAX,
            current: None,
            stats: JitterStats::default(),
        };
        jb.target_ts = jb.dur_to_ts(config.min_delay);
        jb.update_gauges();
        jb
    }

    /// The buffer's settings.
    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    /// The SSRC of the stream being played, once a packet arrived.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// What the buffer has counted.
    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    /// Packets waiting to be played.
    pub fn len(&self) -> usize {
        self.buffered
    }

    /// True when no packet waits.
    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// The decoding side says whether what it just played was silent; an empty buffer after
    /// silence is DTX, after speech an underrun. Also lets the delay move in silence.
    pub fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
    }

    /// The decoding side rebuilt a lost frame from FEC.
    pub fn record_fec_recovered(&mut self) {
        self.stats.fec_recovered += 1;
    }

    /// The decoding side concealed a frame (PLC).
    pub fn record_concealed(&mut self) {
        self.stats.concealed += 1;
    }

    fn dur_to_ts(&self, d: Duration) -> f64 {
        d.as_secs_f64() * f64::from(self.config.clock_rate)
    }

    fn ts_to_dur(&self, ts: f64) -> Duration {
        Duration::from_secs_f64((ts / f64::from(self.config.clock_rate)).max(0.0))
    }

    fn frame(&self) -> i64 {
        i64::from(self.config.frame_ts)
    }

    fn slot_index(&self, seq: i64) -> usize {
        seq.rem_euclid(self.slots.len() as i64) as usize
    }

    fn extend_seq(&self, seq: u16) -> i64 {
        self.expected_seq + i64::from(seq.wrapping_sub(self.expected_seq as u16) as i16)
    }

    fn extend_ts(&self, ts: u32) -> i64 {
        self.play_ts + i64::from(ts.wrapping_sub(self.play_ts as u32) as i32)
    }

    /// Drops all packets and playout position; keeps stats and the SSRC.
    fn reset_playout(&mut self) {
        for slot in self.slots.iter_mut() {
            *slot = Slot::default();
        }
        self.started = false;
        self.buffered = 0;
        self.probation_seq = None;
        self.consecutive_late = 0;
        self.last_transit = None;
        self.shrink_window = 0;
        self.shrink_window_min = usize::MAX;
        self.current = None;
        self.silent = false;
    }

    /// Forgets the stream entirely (e.g. the remote party left). Stats are kept.
    pub fn reset(&mut self) {
        self.reset_playout();
        self.ssrc = None;
    }

    fn anchor(&mut self, packet: &RtpPacket, now: Duration) {
        self.ssrc = Some(packet.ssrc());
        self.expected_seq = i64::from(packet.sequence_number());
        self.highest_seq = self.expected_seq;
        self.play_ts = i64::from(packet.timestamp());
        self.first_arrival = now;
    }

    /// Takes one packet that arrived at `now`.
    pub fn push(&mut self, packet: RtpPacket, now: Duration) -> PushOutcome {
        self.stats.received += 1;
        let mut outcome = PushOutcome::Buffered;
        match self.ssrc {
            None => self.anchor(&packet, now),
            Some(ssrc) if ssrc != packet.ssrc() => {
                self.restart(&packet, now);
                outcome = PushOutcome::Reset;
            }
            Some(_) => {}
        }
        let seq = self.extend_seq(packet.sequence_number());
        let cap = self.slots.len() as i64;
        let delta = seq - self.expected_seq;

        if !self.started && delta < 0 && delta > -cap && self.highest_seq - seq < cap {
            // Still filling: an earlier packet moves the start back.
            self.expected_seq = seq;
            self.play_ts = self.extend_ts(packet.timestamp());
        } else if delta < 0 || delta >= cap {
            let idx = self.slot_index(seq);
            if delta < 0 && delta > -cap && self.slots[idx].used && self.slots[idx].seq == seq {
                self.stats.duplicate += 1;
                return PushOutcome::Duplicate;
            }
            if delta < 0 && delta > -cap {
                self.stats.late += 1;
                self.bump_target_for_late();
                return PushOutcome::Late;
            }
            // Far away: RFC 3550 §A.1 probation — two sequential packets restart the stream.
            if self.probation_seq == Some(packet.sequence_number()) {
                self.restart(&packet, now);
                outcome = PushOutcome::Reset;
            } else {
                self.probation_seq = Some(packet.sequence_number().wrapping_add(1));
                self.stats.overflow += 1;
                return PushOutcome::OutOfWindow;
            }
        }
        let mut seq = self.extend_seq(packet.sequence_number());
        let mut ts = self.extend_ts(packet.timestamp());
        if self.started && ts + self.frame() <= self.play_ts {
            self.stats.late += 1;
            self.bump_target_for_late();
            // Every packet late, for longer than the largest delay the buffer would ever
            // wait: playout is anchored on a bad timestamp (one packet whose timestamp jumped
            // far ahead, or a sender that restarted its clock), not on this stream. Like
            // NetEq, which resets after a run of packets it can no longer place, re-anchor
            // on the stream as it arrives now.
            self.consecutive_late += 1;
            if self.consecutive_late <= self.late_run_limit() {
                return PushOutcome::Late;
            }
            self.restart(&packet, now);
            outcome = PushOutcome::Reset;
            seq = self.extend_seq(packet.sequence_number());
            ts = self.extend_ts(packet.timestamp());
        }
        self.consecutive_late = 0;
        let idx = self.slot_index(seq);
        if self.slots[idx].packet.is_some() {
            if self.slots[idx].seq == seq {
                self.stats.duplicate += 1;
                return PushOutcome::Duplicate;
            }
            // Cannot happen while every stored seq is within one ring of expected; count it
            // rather than overwrite silently.
            self.stats.overflow += 1;
            return PushOutcome::OutOfWindow;
        }
        if seq < self.highest_seq {
            self.stats.reordered += 1;
        } else {
            self.highest_seq = seq;
        }
        self.update_jitter(ts, now);
        self.slots[idx] = Slot {
            seq,
            used: true,
            packet: Some(packet),
            ts,
            arrival: now,
        };
        self.buffered += 1;
        self.probation_seq = None;
        self.update_gauges();
        outcome
    }

    /// Late packets in a row tolerated before re-anchoring: a max delay's worth of frames.
    fn late_run_limit(&self) -> u32 {
        let frames = self.config.max_delay.as_micros()
            / self.ts_to_dur(self.frame() as f64).as_micros().max(1);
        u32::try_from(frames).unwrap_or(u32::MAX).max(2)
    }

    fn restart(&mut self, packet: &RtpPacket, now: Duration) {
        self.reset_playout();
        self.anchor(packet, now);
        self.stats.resets += 1;
    }

    /// RFC 3550 §A.8: J += (|D| − J) / 16 with D the change in transit time.
    fn update_jitter(&mut self, ts: i64, now: Duration) {
        // Integer arithmetic so a perfectly paced stream measures exactly zero jitter.
        let arrival_ts =
            (now.as_nanos() * u128::from(self.config.clock_rate) / 1_000_000_000) as i64;
        let transit = arrival_ts - ts;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            // A DTX pause or clock jump is not jitter: ignore absurd values (> 1 s).
            if d < f64::from(self.config.clock_rate) {
                self.jitter_ts += (d - self.jitter_ts) / 16.0;
            }
        }
        self.last_transit = Some(transit);
        // One frame plus three mean deviations covers nearly all arrival spread.
        let desired = self.frame() as f64 + 3.0 * self.jitter_ts;
        let desired = self.clamp_target(desired);
        if desired > self.target_ts {
            self.target_ts = desired;
        }
    }

    fn clamp_target(&self, ts: f64) -> f64 {
        ts.clamp(
            self.dur_to_ts(self.config.min_delay),
            self.dur_to_ts(self.config.max_delay),
        )
    }

    fn bump_target_for_late(&mut self) {
        self.target_ts = self.clamp_target(self.target_ts + self.frame() as f64);
        self.update_gauges();
    }

    fn buffered_ts(&self) -> i64 {
        self.buffered as i64 * self.frame()
    }

    /// Finds the first buffered packet after `expected_seq` (bounded by the ring size).
    fn next_buffered(&self) -> Option<i64> {
        if self.buffered == 0 {
            return None;
        }
        let end = self
            .highest_seq
            .min(self.expected_seq + self.slots.len() as i64 - 1);
        (self.expected_seq + 1..=end).find(|&s| {
            let slot = &self.slots[self.slot_index(s)];
            slot.packet.is_some() && slot.seq == s
        })
    }

    fn take(&mut self, seq: i64) -> Option<RtpPacket> {
        let idx = self.slot_index(seq);
        let p = self.slots[idx].packet.take();
        if p.is_some() {
            self.buffered -= 1;
        }
        p
    }

    fn decay_target(&mut self) {
        let desired = self.clamp_target(self.frame() as f64 + 3.0 * self.jitter_ts);
        if self.target_ts > desired {
            let step = self.dur_to_ts(self.config.decay_per_frame);
            self.target_ts = (self.target_ts - step).max(desired);
        }
    }

    fn update_gauges(&mut self) {
        self.stats.current_delay = self.ts_to_dur(self.buffered_ts() as f64);
        self.stats.target_delay = self.ts_to_dur(self.target_ts);
        self.stats.jitter = self.ts_to_dur(self.jitter_ts);
    }

    /// What to play for the tick at `now`. Call once per 20 ms.
    pub fn pop(&mut self, now: Duration) -> Playout<'_> {
        self.current = None;
        self.decay_target();
        let kind = self.pop_kind(now);
        self.update_gauges();
        match kind {
            Kind::Buffering => Playout::Buffering,
            Kind::Frame => match &self.current {
                Some(p) => Playout::Frame(p),
                None => Playout::Underrun,
            },
            Kind::Lost { fec_seq } => {
                let fec = fec_seq.and_then(|s| {
                    let slot = &self.slots[self.slot_index(s)];
                    slot.packet.as_ref().filter(|_| slot.seq == s)
                });
                Playout::Lost { fec }
            }
            Kind::Silence => Playout::Silence,
            Kind::Underrun => Playout::Underrun,
        }
    }

    fn pop_kind(&mut self, now: Duration) -> Kind {
        let frame = self.frame();
        if self.ssrc.is_none() {
            return Kind::Buffering;
        }
        if !self.started {
            let waited = now.saturating_sub(self.first_arrival);
            if self.buffered > 0
                && (self.buffered_ts() as f64 >= self.target_ts
                    || self.dur_to_ts(waited) >= self.target_ts)
            {
                self.started = true;
            } else {
                return Kind::Buffering;
            }
        }
        self.track_shrink_window();
        // Bounded: each pass consumes or skips at least one sequence number.
        for _ in 0..=self.slots.len() {
            let idx = self.slot_index(self.expected_seq);
            let here = self.slots[idx].packet.is_some() && self.slots[idx].seq == self.expected_seq;
            if here {
                let ts = self.slots[idx].ts;
                let arrival = self.slots[idx].arrival;
                if ts + frame <= self.play_ts {
                    // Its time passed while it waited (e.g. a bad sender timestamp).
                    self.take(self.expected_seq);
                    self.stats.late += 1;
                    self.expected_seq += 1;
                    continue;
                }
                if ts > self.play_ts {
                    // Contiguous sequence, later timestamp: the sender paused (DTX). Resume
                    // once the packet has waited the target delay: this is where the playout
                    // delay realigns to the target, in silence.
                    let waited = self.dur_to_ts(now.saturating_sub(arrival));
                    if waited + 0.5 * frame as f64 >= self.target_ts {
                        self.play_ts = ts;
                    } else {
                        self.stats.dtx_frames += 1;
                        self.play_ts += frame;
                        return Kind::Silence;
                    }
                }
                if self.silent
                    && (self.buffered_ts() as f64) + 0.5 * (frame as f64) < self.target_ts
                {
                    // Below target while the talker is silent: insert one frame of silence
                    // (inaudible here) so the cushion is in place before speech resumes.
                    self.stats.stretched += 1;
                    return Kind::Silence;
                }
                if self.should_shrink() && self.buffered > 1 {
                    // Drop this frame to cut excess delay.
                    self.take(self.expected_seq);
                    self.stats.accelerated += 1;
                    self.expected_seq += 1;
                    self.play_ts = ts + frame;
                    self.shrink_window = 0;
                    self.shrink_window_min = usize::MAX;
                    continue;
                }
                self.current = self.take(self.expected_seq);
                self.expected_seq += 1;
                self.play_ts = ts + frame;
                self.stats.played += 1;
                return Kind::Frame;
            }
            match self.next_buffered() {
                Some(next) => {
                    let next_ts = self.slots[self.slot_index(next)].ts;
                    if next_ts <= self.play_ts {
                        // Everything before `next` is overdue: skip to it.
                        self.stats.lost += (next - self.expected_seq) as u64;
                        self.expected_seq = next;
                        continue;
                    }
                    // Audio queued ahead, counting the hole itself.
                    let hole_span = (self.highest_seq - self.expected_seq + 1) * frame;
                    if next > self.expected_seq + 1
                        && hole_span as f64 > 2.0 * self.target_ts + 2.0 * frame as f64
                    {
                        // After an outage far longer than the target delay: concealing the
                        // hole frame by frame would only pile up delay. Give up all but the
                        // last missing frame, which the next packet's FEC may rebuild.
                        self.stats.lost += (next - 1 - self.expected_seq) as u64;
                        self.expected_seq = next - 1;
                        self.play_ts = next_ts - frame;
                    }
                    let span = (self.highest_seq - self.expected_seq + 1) * frame;
                    if (span as f64) < self.target_ts {
                        // Less than the target is queued: the missing packet may just be
                        // late, so hold playout (conceal one frame, the delay grows by one)
                        // rather than give it up.
                        self.stats.underruns += 1;
                        return Kind::Underrun;
                    }
                    self.stats.lost += 1;
                    self.expected_seq += 1;
                    self.play_ts += frame;
                    let fec_seq = (next == self.expected_seq).then_some(next);
                    return Kind::Lost { fec_seq };
                }
                None => {
                    // Nothing to play; playout holds so a late packet still plays (the delay
                    // grows by one frame), unless the sender went quiet.
                    if self.silent {
                        self.stats.dtx_frames += 1;
                        return Kind::Silence;
                    }
                    self.stats.underruns += 1;
                    return Kind::Underrun;
                }
            }
        }
        self.stats.underruns += 1;
        Kind::Underrun
    }

    /// Keeps the minimum buffered count over a window; excess that persists is real.
    fn track_shrink_window(&mut self) {
        self.shrink_window += 1;
        self.shrink_window_min = self.shrink_window_min.min(self.buffered);
        if self.shrink_window > self.config.speech_shrink_after_frames.max(1) * 2 {
            self.shrink_window = 1;
            self.shrink_window_min = self.buffered;
        }
    }

    fn should_shrink(&self) -> bool {
        let frame = self.frame() as f64;
        let excess = |count: usize| count as f64 * frame > self.target_ts + frame;
        if self.silent {
            excess(self.buffered)
        } else {
            self.shrink_window >= self.config.speech_shrink_after_frames
                && excess(self.shrink_window_min)
        }
    }
}

enum Kind {
    Buffering,
    Frame,
    Lost { fec_seq: Option<i64> },
    Silence,
    Underrun,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{RtpHeader, RtpPacketSpec};

    const F: Duration = Duration::from_millis(20);

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> RtpPacket {
        let h = RtpHeader::new(111, seq, ts, ssrc);
        let payload = seq.to_be_bytes();
        RtpPacket::parse(RtpPacketSpec::new(h, &payload).to_bytes().unwrap()).unwrap()
    }

    fn seq_of(p: &Playout<'_>) -> Option<u16> {
        match p {
            Playout::Frame(p) => Some(p.sequence_number()),
            _ => None,
        }
    }

    /// Describes a pop compactly: "F<seq>", "L", "L+<fec seq>", "S", "U", "B".
    fn tag(p: &Playout<'_>) -> String {
        match p {
            Playout::Buffering => "B".into(),
            Playout::Frame(p) => format!("F{}", p.sequence_number()),
            Playout::Lost { fec: Some(n) } => format!("L+{}", n.sequence_number()),
            Playout::Lost { fec: None } => "L".into(),
            Playout::Silence => "S".into(),
            Playout::Underrun => "U".into(),
        }
    }

    /// Sends `count` packets from `seq0`/`ts0`, one per 20 ms, popping once per 20 ms just
    /// after each arrival; returns the pop tags.
    fn steady(jb: &mut JitterBuffer, seq0: u16, ts0: u32, count: u16, t0: Duration) -> Vec<String> {
        let mut tags = vec![];
        for i in 0..count {
            let now = t0 + F * u32::from(i);
            jb.push(
                pkt(
                    7,
                    seq0.wrapping_add(i),
                    ts0.wrapping_add(960 * u32::from(i)),
                ),
                now,
            );
            tags.push(tag(&jb.pop(now + Duration::from_millis(1))));
        }
        tags
    }

    #[test]
    fn in_order_stream_plays_every_packet() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(tag(&jb.pop(Duration::ZERO)), "B");
        let tags = steady(&mut jb, 100, 5000, 50, Duration::ZERO);
        let want: Vec<String> = (100..150).map(|s| format!("F{s}")).collect();
        assert_eq!(tags, want);
        let s = jb.stats();
        assert_eq!((s.played, s.lost, s.late, s.duplicate), (50, 0, 0, 0));
        assert_eq!(s.target_delay, Duration::from_millis(20));
    }

    #[test]
    fn one_packet_with_a_huge_timestamp_jump_does_not_silence_the_stream() {
        // A steady stream, then one forged (or broken) packet: the next sequence number with
        // a timestamp hours ahead; then the real stream goes on.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        steady(&mut jb, 100, 5000, 50, Duration::ZERO);
        let t = F * 50;
        jb.push(
            pkt(7, 150, 5000u32.wrapping_add(960 * 50).wrapping_add(1 << 30)),
            t,
        );
        let _ = jb.pop(t + Duration::from_millis(1));
        let mut played = 0;
        for i in 1..=100u16 {
            let now = t + F * u32::from(i);
            jb.push(pkt(7, 150 + i, 5000 + 960 * (50 + u32::from(i))), now);
            if matches!(jb.pop(now + Duration::from_millis(1)), Playout::Frame(_)) {
                played += 1;
            }
        }
        // The stream recovers within a few frames of the max delay, not never.
        assert!(
            played >= 80,
            "played {played} of the 100 real frames after the jump"
        );
    }

    #[test]
    fn sequence_and_timestamp_wrap_keep_order() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let tags = steady(&mut jb, 65_530, u32::MAX - 960 * 3, 12, Duration::ZERO);
        let want: Vec<String> = (0..12u16)
            .map(|i| format!("F{}", 65_530u16.wrapping_add(i)))
            .collect();
        assert_eq!(tags, want);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn reorder_duplicate_and_late_across_the_wraps() {
        let mut jb = JitterBuffer::new(JitterConfig {
            min_delay: Duration::from_millis(60),
            ..JitterConfig::default()
        });
        let base_ts = u32::MAX - 960 * 2;
        let ts = |s: u16| base_ts.wrapping_add(960 * u32::from(s.wrapping_sub(65_533)));
        // 65533, 65535, 65534 (reordered across nothing), 1 before 0 (across the wrap),
        // 0 twice (duplicate across the wrap).
        let arrivals = [65_533u16, 65_535, 65_534, 1, 0, 0, 2, 3, 4, 5];
        let mut played = vec![];
        for (i, &s) in arrivals.iter().enumerate() {
            let now = F * i as u32;
            let out = jb.push(pkt(9, s, ts(s)), now);
            if i == 5 {
                assert_eq!(out, PushOutcome::Duplicate);
            }
            if let Some(s) = seq_of(&jb.pop(now)) {
                played.push(s);
            }
        }
        for i in 10..14 {
            if let Some(s) = seq_of(&jb.pop(F * i)) {
                played.push(s);
            }
        }
        assert_eq!(played, vec![65_533, 65_534, 65_535, 0, 1, 2, 3, 4, 5]);
        let st = jb.stats();
        assert_eq!((st.reordered, st.duplicate, st.lost), (2, 1, 0));
        // 65535 arriving again long after the wrap: a duplicate of a played packet.
        assert_eq!(
            jb.push(pkt(9, 65_535, ts(65_535)), F * 14),
            PushOutcome::Duplicate
        );
    }

    #[test]
    fn dtx_gap_across_the_timestamp_wrap() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        steady(&mut jb, 10, u32::MAX - 960 * 4, 3, Duration::ZERO);
        jb.set_silent(true);
        let mut tags = vec![];
        for i in 3..13u32 {
            tags.push(tag(&jb.pop(F * i)));
        }
        // Resume 10 frames later: the timestamp has wrapped past zero.
        let resume_ts = (u32::MAX - 960 * 4).wrapping_add(960 * 13);
        jb.push(pkt(7, 13, resume_ts), F * 13);
        jb.set_silent(false);
        for i in 13..16u32 {
            tags.push(tag(&jb.pop(F * i + Duration::from_millis(25))));
            jb.push(
                pkt(
                    7,
                    14 + (i - 13) as u16,
                    resume_ts.wrapping_add(960 * (i - 12)),
                ),
                F * (i + 1),
            );
        }
        assert!(tags[..10].iter().all(|t| t == "S"));
        assert_eq!(&tags[10..], ["F13", "F14", "F15"]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn reordered_packets_play_in_order() {
        let mut jb = JitterBuffer::new(JitterConfig {
            min_delay: Duration::from_millis(60),
            ..JitterConfig::default()
        });
        let order = [0u16, 2, 1, 3, 5, 4, 6, 7, 8, 9];
        let mut played = vec![];
        for (i, &s) in order.iter().enumerate() {
            let now = F * i as u32;
            jb.push(pkt(1, s, 960 * u32::from(s)), now);
            if let Some(s) = seq_of(&jb.pop(now)) {
                played.push(s);
            }
        }
        for i in 0..5 {
            if let Some(s) = seq_of(&jb.pop(F * (10 + i))) {
                played.push(s);
            }
        }
        assert_eq!(played, (0..10).collect::<Vec<_>>());
        assert_eq!(jb.stats().reordered, 2);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn duplicates_are_dropped_before_and_after_playout() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(
            jb.push(pkt(1, 10, 0), Duration::ZERO),
            PushOutcome::Buffered
        );
        assert_eq!(
            jb.push(pkt(1, 10, 0), Duration::ZERO),
            PushOutcome::Duplicate
        );
        assert_eq!(jb.push(pkt(1, 11, 960), F), PushOutcome::Buffered);
        assert_eq!(tag(&jb.pop(F)), "F10");
        assert_eq!(jb.push(pkt(1, 10, 0), F), PushOutcome::Duplicate);
        assert_eq!(jb.stats().duplicate, 2);
        assert_eq!(tag(&jb.pop(F * 2)), "F11");
    }

    #[test]
    fn loss_is_reported_with_the_next_packet_for_fec() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut tags = vec![];
        for i in 0..10u16 {
            let now = F * u32::from(i);
            if i != 4 {
                jb.push(pkt(1, i, 960 * u32::from(i)), now);
            }
            tags.push(tag(&jb.pop(now + Duration::from_millis(1))));
        }
        // Seq 4 missing: at its tick only an underrun is known (nothing after it yet, so
        // playout waits); next tick seq 5 is here, so 4 is lost and 5 rides along for FEC.
        assert_eq!(
            tags,
            ["F0", "F1", "F2", "F3", "U", "L+5", "F5", "F6", "F7", "F8"]
        );
        assert_eq!(jb.stats().lost, 1);
        assert_eq!(jb.stats().underruns, 1);
    }

    #[test]
    fn burst_loss_without_fec_neighbour() {
        let mut jb = JitterBuffer::new(JitterConfig {
            min_delay: Duration::from_millis(60),
            ..JitterConfig::default()
        });
        for s in [0u16, 1, 2, 5, 6, 7] {
            jb.push(pkt(1, s, 960 * u32::from(s)), Duration::ZERO);
        }
        let tags: Vec<String> = (0..8).map(|i| tag(&jb.pop(F * i))).collect();
        assert_eq!(tags, ["F0", "F1", "F2", "L", "L+5", "F5", "F6", "F7"]);
        assert_eq!(jb.stats().lost, 2);
    }

    #[test]
    fn late_packet_is_dropped_and_raises_target() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for s in [0u16, 1, 3, 4, 5] {
            jb.push(pkt(1, s, 960 * u32::from(s)), Duration::ZERO);
        }
        assert_eq!(tag(&jb.pop(Duration::ZERO)), "F0");
        assert_eq!(tag(&jb.pop(F)), "F1");
        assert_eq!(tag(&jb.pop(F * 2)), "L+3");
        let before = jb.stats().target_delay;
        assert_eq!(jb.push(pkt(1, 2, 1920), F * 2), PushOutcome::Late);
        assert_eq!(jb.stats().late, 1);
        assert!(jb.stats().target_delay > before);
        assert_eq!(tag(&jb.pop(F * 3)), "F3");
    }

    #[test]
    fn dtx_pause_is_silence_not_loss() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut tags = steady(&mut jb, 0, 0, 5, Duration::ZERO);
        // Sender pauses 10 frames; the decoding side reported the last frames silent.
        jb.set_silent(true);
        for i in 5..15u32 {
            tags.push(tag(&jb.pop(F * i + Duration::from_millis(1))));
        }
        // Resumes with the next sequence number and a timestamp 10 frames later.
        let mut now = F * 15;
        jb.push(pkt(7, 5, 960 * 15), now);
        jb.set_silent(false);
        for i in 0..4u16 {
            tags.push(tag(&jb.pop(now + Duration::from_millis(1))));
            now += F;
            jb.push(pkt(7, 6 + i, 960 * (16 + u32::from(i))), now);
        }
        assert_eq!(&tags[..5], ["F0", "F1", "F2", "F3", "F4"]);
        assert!(tags[5..15].iter().all(|t| t == "S"), "{tags:?}");
        // The first packet after the pause waits the target delay (one tick here), which
        // rebuilds the cushion; then playout runs on.
        assert_eq!(&tags[15..], ["S", "F5", "F6", "F7"]);
        let s = jb.stats();
        assert_eq!((s.lost, s.underruns, s.dtx_frames), (0, 0, 11));
    }

    #[test]
    fn delay_grows_in_silence_by_inserting_a_frame() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut tags = steady(&mut jb, 0, 0, 10, Duration::ZERO);
        // A straggler from before this run raises the target by a frame (20 -> 40 ms).
        assert_eq!(jb.push(pkt(7, 65_500, 0), F * 10), PushOutcome::Late);
        // The talker is quiet now: the buffer holds one tick to build the cushion...
        jb.set_silent(true);
        tags.extend(steady(&mut jb, 10, 9600, 5, F * 10));
        assert_eq!(&tags[10..], ["S", "F10", "F11", "F12", "F13"]);
        assert_eq!(jb.stats().stretched, 1);
        assert_eq!(jb.stats().lost, 0);
        // ...whereas in speech it would not have.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        steady(&mut jb, 0, 0, 10, Duration::ZERO);
        jb.push(pkt(7, 65_500, 0), F * 10);
        let tags = steady(&mut jb, 10, 9600, 5, F * 10);
        assert_eq!(tags, ["F10", "F11", "F12", "F13", "F14"]);
        assert_eq!(jb.stats().stretched, 0);
    }

    #[test]
    fn ssrc_change_resets() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        steady(&mut jb, 0, 0, 5, Duration::ZERO);
        assert_eq!(jb.push(pkt(99, 40_000, 123), F * 5), PushOutcome::Reset);
        assert_eq!(jb.ssrc(), Some(99));
        assert_eq!(jb.stats().resets, 1);
        assert_eq!(tag(&jb.pop(F * 6)), "F40000");
    }

    #[test]
    fn large_jump_restarts_after_two_sequential_packets() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        steady(&mut jb, 0, 0, 5, Duration::ZERO);
        assert_eq!(jb.push(pkt(7, 30_000, 1), F * 5), PushOutcome::OutOfWindow);
        assert_eq!(jb.push(pkt(7, 30_001, 961), F * 6), PushOutcome::Reset);
        assert_eq!(tag(&jb.pop(F * 7)), "F30001");
        // A single stray far-off packet does not disturb the stream.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        steady(&mut jb, 0, 0, 5, Duration::ZERO);
        assert_eq!(jb.push(pkt(7, 9_000, 1), F * 5), PushOutcome::OutOfWindow);
        assert_eq!(jb.push(pkt(7, 5, 960 * 5), F * 5), PushOutcome::Buffered);
        assert_eq!(tag(&jb.pop(F * 5)), "F5");
    }

    #[test]
    fn outage_skips_ahead_instead_of_piling_up_delay() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut tags = steady(&mut jb, 1000, 0, 10, Duration::ZERO);
        // One second lost (50 packets), no pause at the sender; playout conceals meanwhile.
        for i in 10..60u32 {
            tags.push(tag(&jb.pop(F * i + Duration::from_millis(1))));
        }
        for i in 60..70u16 {
            let now = F * u32::from(i);
            jb.push(pkt(7, 1000 + i, 960 * u32::from(i)), now);
            tags.push(tag(&jb.pop(now + Duration::from_millis(1))));
        }
        assert!(tags[10..60].iter().all(|t| t == "U"), "{tags:?}");
        // Right after the outage: one frame whose FEC rides in 1060, then live again.
        assert_eq!(&tags[60..62], ["L+1060", "F1060"], "{tags:?}");
        assert_eq!(jb.stats().lost, 50);
        assert!(jb.stats().current_delay <= Duration::from_millis(40));
    }

    /// Deterministic arrival jitter: each packet delayed 0..max_ms.
    fn jittery_run(jb: &mut JitterBuffer, from: u16, frames: u16, max_ms: u64, seed: &mut u64) {
        let mut arrivals: Vec<(Duration, u16)> = (from..from + frames)
            .map(|s| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                let delay = if max_ms == 0 { 0 } else { *seed % max_ms };
                (F * u32::from(s) + Duration::from_millis(delay), s)
            })
            .collect();
        arrivals.sort();
        let mut next = 0;
        for tick in from..from + frames {
            let now = F * u32::from(tick) + Duration::from_millis(10);
            while next < arrivals.len() && arrivals[next].0 <= now {
                let s = arrivals[next].1;
                jb.push(pkt(3, s, 960 * u32::from(s)), arrivals[next].0);
                next += 1;
            }
            let _ = jb.pop(now);
        }
    }

    #[test]
    fn target_rises_under_jitter_and_falls_slowly() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut seed = 0x1234_5678_9abc_def0;
        jittery_run(&mut jb, 0, 100, 0, &mut seed);
        assert_eq!(jb.stats().target_delay, Duration::from_millis(20));
        jittery_run(&mut jb, 100, 250, 80, &mut seed);
        let high = jb.stats().target_delay;
        assert!(high >= Duration::from_millis(60), "target {high:?}");
        assert!(jb.stats().jitter > Duration::from_millis(10));
        // Late drops stop once the target has caught up.
        let late_before = jb.stats().late;
        jittery_run(&mut jb, 350, 250, 80, &mut seed);
        let late_mid = jb.stats().late - late_before;
        assert!(late_mid < 15, "{late_mid} late packets after adapting");
        let high = jb.stats().target_delay;
        // Calm again: one second later the target has fallen only a little...
        jittery_run(&mut jb, 600, 50, 0, &mut seed);
        let after_1s = jb.stats().target_delay;
        assert!(
            after_1s < high && after_1s > high / 2,
            "{after_1s:?} vs {high:?}"
        );
        // ...and after a long calm it reaches the floor, and so does the real delay.
        jittery_run(&mut jb, 650, 1000, 0, &mut seed);
        assert!(jb.stats().target_delay < Duration::from_millis(21));
        assert!(jb.stats().current_delay <= Duration::from_millis(60));
        assert!(jb.stats().accelerated > 0);
    }

    #[test]
    fn random_orders_never_panic_and_balance() {
        let mut seed = 0xdead_beef_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut now = Duration::ZERO;
        for _ in 0..20_000 {
            let r = rnd();
            let ssrc = if r % 500 == 0 { 2 } else { 1 };
            let seq = (r >> 8) as u16 % 300;
            let ts = u32::from(seq) * 960 + if r % 7 == 0 { (r >> 40) as u32 } else { 0 };
            jb.push(pkt(ssrc, seq, ts), now);
            if r % 3 == 0 {
                now += F;
                let _ = jb.pop(now);
            }
            assert!(jb.len() <= jb.config().capacity);
        }
        let s = jb.stats();
        assert_eq!(s.received, 20_000);
        assert!(s.duplicate > 0 && s.late > 0 && s.resets > 0);
    }
}
