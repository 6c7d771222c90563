//! DTMF over RTP: RFC 4733 telephone-events, received and sent on the call's audio SSRC.
//!
//! A phone's keypad reaches an app-hosted bot as telephone-event packets, not as audio
//! (Microsoft's media library raises `AudioSocket.ToneReceived` for them; Graph's
//! `sendDtmfTones` sends them). One event is a run of packets sharing one RTP timestamp
//! (the event's start), each carrying the duration so far; the last ones carry the end bit,
//! sent three times because any of them may be lost (RFC 4733 §2.5.1.4).
//!
//! [`DtmfDetector`] reports each event once: at its first end packet, or — when every end
//! packet was lost — when the next event starts or nothing came for [`END_TIMEOUT`].
//! [`DtmfSender`] turns queued tones into such packet runs, one packet per 20 ms tick.
//! Both are fixed-size state: nothing allocates.
//!
//! The event clock is the audio clock, 48 kHz (`telephone-event/48000`, what WebRTC
//! pairs with Opus).

use std::time::Duration;

/// The telephone-event clock: the Opus RTP clock.
pub const EVENT_CLOCK_RATE: u32 = 48_000;

/// An event whose end packets were all lost is reported after this long without packets.
pub const END_TIMEOUT: Duration = Duration::from_millis(200);

/// Times the end packet is sent (RFC 4733 §2.5.1.4 recommends three).
pub const END_REPEATS: u8 = 3;

/// The longest tone sent in one event: a telephone-event duration is 16 bits of 48 kHz
/// samples (1.36 s); longer tones are cut to this.
pub const MAX_TONE: Duration = Duration::from_millis(1_300);

/// A DTMF key (RFC 4733 §3.2 events 0–16), named as Graph's `tone` enum names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    /// Key 0.
    Tone0,
    /// Key 1.
    Tone1,
    /// Key 2.
    Tone2,
    /// Key 3.
    Tone3,
    /// Key 4.
    Tone4,
    /// Key 5.
    Tone5,
    /// Key 6.
    Tone6,
    /// Key 7.
    Tone7,
    /// Key 8.
    Tone8,
    /// Key 9.
    Tone9,
    /// Key `*`.
    Star,
    /// Key `#`.
    Pound,
    /// Key A (the fourth column of a 16-key pad).
    A,
    /// Key B.
    B,
    /// Key C.
    C,
    /// Key D.
    D,
    /// Hook flash.
    Flash,
}

const TONES: [Tone; 17] = [
    Tone::Tone0,
    Tone::Tone1,
    Tone::Tone2,
    Tone::Tone3,
    Tone::Tone4,
    Tone::Tone5,
    Tone::Tone6,
    Tone::Tone7,
    Tone::Tone8,
    Tone::Tone9,
    Tone::Star,
    Tone::Pound,
    Tone::A,
    Tone::B,
    Tone::C,
    Tone::D,
    Tone::Flash,
];

impl Tone {
    /// The tone of an RFC 4733 event code; `None` for codes that are not DTMF keys.
    pub fn from_event(code: u8) -> Option<Tone> {
        TONES.get(usize::from(code)).copied()
    }

    /// The RFC 4733 event code.
    pub fn event(self) -> u8 {
        self as u8
    }

    /// The key as a character: `0`–`9`, `*`, `#`, `A`–`D`, `!` for flash.
    pub fn as_char(self) -> char {
        b"0123456789*#ABCD!"[self as usize] as char
    }

    /// The tone of a key character (letters in either case).
    pub fn from_char(c: char) -> Option<Tone> {
        let c = c.to_ascii_uppercase();
        b"0123456789*#ABCD!"
            .iter()
            .position(|&k| char::from(k) == c)
            .and_then(|i| TONES.get(i).copied())
    }

    /// Graph's name for it (`tone0`…`tone9`, `star`, `pound`, `a`…`d`, `flash`).
    pub fn graph_name(self) -> &'static str {
        [
            "tone0", "tone1", "tone2", "tone3", "tone4", "tone5", "tone6", "tone7", "tone8",
            "tone9", "star", "pound", "a", "b", "c", "d", "flash",
        ][self as usize]
    }

    /// The tone Graph names `name`.
    pub fn from_graph_name(name: &str) -> Option<Tone> {
        TONES.iter().copied().find(|t| t.graph_name() == name)
    }
}

impl std::fmt::Display for Tone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.graph_name())
    }
}

/// Why a telephone-event payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload of {len} bytes; at least 4 are needed")]
    /// Shorter than the 4-byte payload.
    Short {
        /// The bytes given.
        len: usize,
    },
}

/// One telephone-event payload (RFC 4733 §2.3): event, end bit, volume, duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code (0–15: the DTMF keys).
    pub event: u8,
    /// The end bit: the last packets of the event.
    pub end: bool,
    /// Power level, 0 to -63 dBm0, as its magnitude.
    pub volume: u8,
    /// Duration so far, in [`EVENT_CLOCK_RATE`] samples from the event's timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of a payload (bytes past 4 are ignored, as RFC 4733 allows
    /// receivers to).
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let &[event, flags, d0, d1, ..] = payload else {
            return Err(DtmfError::Short { len: payload.len() });
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4-byte payload.
    pub fn to_bytes(self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        let flags = (u8::from(self.end) << 7) | (self.volume & 0x3f);
        [self.event, flags, d0, d1]
    }
}

/// A key press received from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneReceived {
    /// The stream it came on.
    pub ssrc: u32,
    /// The key.
    pub tone: Tone,
    /// How long the key was held, as the sender reported it.
    pub duration: Duration,
    /// False when every end packet was lost and the event was closed by a timeout or by
    /// the next event (its duration is then the last one seen).
    pub end_seen: bool,
}

/// Counters of a [`DtmfDetector`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtmfStats {
    /// Key presses reported.
    pub tones: u64,
    /// Events closed without an end packet.
    pub ends_lost: u64,
    /// Event codes that are not DTMF keys (other RFC 4733 tones), ignored.
    pub unknown_events: u64,
    /// Payloads too short to read, dropped.
    pub malformed: u64,
    /// Packets of an event already reported (repeated end packets), or of an older one.
    pub stale_packets: u64,
    /// Events of a new SSRC dropped because every slot was busy with a live event.
    pub streams_full: u64,
}

#[derive(Debug, Clone, Copy)]
struct EventState {
    ssrc: u32,
    timestamp: u32,
    tone: Tone,
    duration: u16,
    reported: bool,
    last_packet: Duration,
}

fn samples_to_duration(samples: u16) -> Duration {
    Duration::from_micros(u64::from(samples) * 1_000_000 / u64::from(EVENT_CLOCK_RATE))
}

/// Receive side: one current event per SSRC, for up to `N` SSRCs at once.
#[derive(Debug, Clone)]
pub struct DtmfDetector<const N: usize = 4> {
    slots: [Option<EventState>; N],
    stats: DtmfStats,
}

impl<const N: usize> Default for DtmfDetector<N> {
    fn default() -> Self {
        Self {
            slots: [None; N],
            stats: DtmfStats::default(),
        }
    }
}

impl<const N: usize> DtmfDetector<N> {
    /// A detector with no event in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// What it has counted.
    pub fn stats(&self) -> DtmfStats {
        self.stats
    }

    /// Feeds one telephone-event packet of `ssrc` with RTP `timestamp`, arrived at `now`;
    /// `emit` gets the tones it completes (the previous event when its end was lost, and
    /// this one when it carries the end bit).
    pub fn push(
        &mut self,
        ssrc: u32,
        timestamp: u32,
        payload: &[u8],
        now: Duration,
        mut emit: impl FnMut(ToneReceived),
    ) {
        let event = match TelephoneEvent::parse(payload) {
            Ok(e) => e,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let Some(tone) = Tone::from_event(event.event) else {
            self.stats.unknown_events += 1;
            return;
        };
        let slot = match self
            .slots
            .iter()
            .position(|s| s.is_some_and(|s| s.ssrc == ssrc))
        {
            Some(i) => i,
            None => match self.free_slot(now, &mut emit) {
                Some(i) => i,
                None => {
                    self.stats.streams_full += 1;
                    return;
                }
            },
        };
        if let Some(current) = self.slots[slot] {
            if current.timestamp == timestamp {
                if current.reported {
                    self.stats.stale_packets += 1;
                    return;
                }
            } else if timestamp.wrapping_sub(current.timestamp) > u32::MAX / 2 {
                // Older than the current event: a late packet of an event already over.
                self.stats.stale_packets += 1;
                return;
            } else if !current.reported {
                // A new event before the old one's end: its end packets were all lost.
                self.report(slot, false, &mut emit);
            }
        }
        let state = match &mut self.slots[slot] {
            Some(s) if s.timestamp == timestamp => s,
            other => other.insert(EventState {
                ssrc,
                timestamp,
                tone,
                duration: 0,
                reported: false,
                last_packet: now,
            }),
        };
        state.duration = state.duration.max(event.duration);
        state.last_packet = now;
        if event.end {
            self.report(slot, true, &mut emit);
        }
    }

    /// Closes events whose end never came within [`END_TIMEOUT`], and forgets SSRCs idle
    /// for as long; call once per tick.
    pub fn poll(&mut self, now: Duration, mut emit: impl FnMut(ToneReceived)) {
        for i in 0..N {
            let Some(state) = self.slots[i] else { continue };
            if now.saturating_sub(state.last_packet) < END_TIMEOUT {
                continue;
            }
            if !state.reported {
                self.report(i, false, &mut emit);
            }
            // Repeated end packets come right after the end; anything later is a new event.
            self.slots[i] = None;
        }
    }

    fn free_slot(&mut self, now: Duration, emit: &mut impl FnMut(ToneReceived)) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            return Some(i);
        }
        self.poll(now, &mut *emit);
        self.slots.iter().position(Option::is_none)
    }

    fn report(&mut self, slot: usize, end_seen: bool, emit: &mut impl FnMut(ToneReceived)) {
        let Some(state) = &mut self.slots[slot] else {
            return;
        };
        state.reported = true;
        self.stats.tones += 1;
        if !end_seen {
            self.stats.ends_lost += 1;
        }
        emit(ToneReceived {
            ssrc: state.ssrc,
            tone: state.tone,
            duration: samples_to_duration(state.duration),
            end_seen,
        });
    }
}

/// A tone to send: the key, how long it is held and the pause after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneRequest {
    /// The key.
    pub tone: Tone,
    /// How long it is held.
    pub duration: Duration,
    /// Silence after it, before the next key.
    pub pause_after: Duration,
}

impl ToneRequest {
    /// RFC 4733's usual key press: 100 ms held, 100 ms pause (Graph's default delay
    /// between tones is 0; a keypad needs a gap for two equal keys to be two presses).
    pub fn key(tone: Tone) -> ToneRequest {
        ToneRequest {
            tone,
            duration: Duration::from_millis(100),
            pause_after: Duration::from_millis(100),
        }
    }
}

/// One telephone-event packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The payload.
    pub event: TelephoneEvent,
    /// The event's RTP timestamp (its start), the same for all its packets.
    pub timestamp: u32,
    /// Set on the event's first packet (RFC 4733 §2.5.1.3).
    pub marker: bool,
}

#[derive(Debug, Clone, Copy)]
enum SendPhase {
    Tone {
        request: ToneRequest,
        timestamp: u32,
        /// Samples of the tone sent so far (the duration field).
        elapsed: u32,
        total: u32,
        ends_sent: u8,
    },
    Pause {
        ticks_left: u32,
    },
}

/// What a [`DtmfSender`] wants sent on a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStep {
    /// Audio goes out as usual (no tone, or a tone's pause).
    Audio,
    /// Send this packet instead of audio; `finished` on the tone's last end packet.
    Packet {
        /// The packet.
        packet: EventPacket,
        /// Whether it is the tone's last end packet.
        finished: bool,
    },
}

/// Send side: turns one tone at a time into a packet run, one per tick of
/// `samples_per_tick` samples; the caller queues the next tone when it is idle.
#[derive(Debug, Clone, Default)]
pub struct DtmfSender {
    phase: Option<SendPhase>,
}

fn samples_of(d: Duration) -> u32 {
    let capped = d.min(MAX_TONE);
    (capped.as_micros() as u64 * u64::from(EVENT_CLOCK_RATE) / 1_000_000) as u32
}

impl DtmfSender {
    /// An idle sender.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no tone or pause is in progress.
    pub fn is_idle(&self) -> bool {
        self.phase.is_none()
    }

    /// Starts a tone at RTP time `timestamp`; refused (returned) while another is going.
    pub fn start(&mut self, request: ToneRequest, timestamp: u32) -> Result<(), ToneRequest> {
        if self.phase.is_some() {
            return Err(request);
        }
        self.phase = Some(SendPhase::Tone {
            request,
            timestamp,
            elapsed: 0,
            total: samples_of(request.duration),
            ends_sent: 0,
        });
        Ok(())
    }

    /// The next tick's step; `samples_per_tick` is the RTP time one tick covers.
    pub fn step(&mut self, samples_per_tick: u32) -> SendStep {
        let Some(phase) = &mut self.phase else {
            return SendStep::Audio;
        };
        match phase {
            SendPhase::Tone {
                request,
                timestamp,
                elapsed,
                total,
                ends_sent,
            } => {
                let request = *request;
                let first = *elapsed == 0;
                *elapsed = (*elapsed + samples_per_tick).min(*total);
                let end = *elapsed >= *total;
                let mut finished = false;
                let packet = EventPacket {
                    event: TelephoneEvent {
                        event: request.tone.event(),
                        end,
                        volume: 10,
                        duration: u16::try_from(*elapsed).unwrap_or(u16::MAX),
                    },
                    timestamp: *timestamp,
                    marker: first,
                };
                if end {
                    *ends_sent += 1;
                    if *ends_sent >= END_REPEATS {
                        finished = true;
                        let pause = request.pause_after.as_micros() as u64
                            * u64::from(EVENT_CLOCK_RATE)
                            / 1_000_000;
                        let ticks = pause.div_ceil(u64::from(samples_per_tick.max(1)));
                        self.phase = Some(SendPhase::Pause {
                            ticks_left: u32::try_from(ticks).unwrap_or(u32::MAX),
                        });
                    }
                }
                SendStep::Packet { packet, finished }
            }
            SendPhase::Pause { ticks_left } => {
                if *ticks_left <= 1 {
                    self.phase = None;
                } else {
                    *ticks_left -= 1;
                }
                SendStep::Audio
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u32 = 960;

    #[test]
    fn tones_map_both_ways() {
        for code in 0..=16u8 {
            let tone = Tone::from_event(code).unwrap();
            assert_eq!(tone.event(), code);
            assert_eq!(Tone::from_char(tone.as_char()), Some(tone));
            assert_eq!(Tone::from_graph_name(tone.graph_name()), Some(tone));
        }
        assert_eq!(Tone::from_event(17), None);
        assert_eq!(Tone::from_char('#'), Some(Tone::Pound));
        assert_eq!(Tone::from_char('b'), Some(Tone::B));
        assert_eq!(Tone::from_char('x'), None);
        assert_eq!(Tone::Tone7.to_string(), "tone7");
    }

    #[test]
    fn payloads_round_trip_and_short_ones_are_refused() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 4800,
        };
        assert_eq!(e.to_bytes(), [11, 0x8a, 0x12, 0xc0]);
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Ok(e));
        // The reserved bit is ignored.
        assert_eq!(TelephoneEvent::parse(&[11, 0xca, 0x12, 0xc0]), Ok(e));
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(DtmfError::Short { len: 3 })
        );
    }

    /// Runs a sender for `ticks` ticks, starting tones from `queue` when idle, and returns
    /// the packets it sent (None for audio ticks).
    fn run_sender(queue: &[ToneRequest], ticks: u32) -> Vec<Option<EventPacket>> {
        let mut sender = DtmfSender::new();
        let mut queue = queue.iter();
        let mut out = Vec::new();
        for k in 0..ticks {
            if sender.is_idle()
                && let Some(r) = queue.next()
            {
                sender.start(*r, k * TICK).unwrap();
            }
            out.push(match sender.step(TICK) {
                SendStep::Packet { packet, .. } => Some(packet),
                SendStep::Audio => None,
            });
        }
        out
    }

    #[test]
    fn a_key_press_is_a_marked_run_with_three_ends_then_a_pause() {
        let packets = run_sender(&[ToneRequest::key(Tone::Tone5)], 12);
        // 100 ms = 5 ticks of 20 ms: 4 running packets, the 5th is the first end, ×3.
        let sent: Vec<_> = packets.iter().flatten().collect();
        assert_eq!(sent.len(), 7);
        assert!(sent[0].marker);
        assert!(sent[1..].iter().all(|p| !p.marker));
        assert!(sent.iter().all(|p| p.timestamp == 0 && p.event.event == 5));
        let durations: Vec<u16> = sent.iter().map(|p| p.event.duration).collect();
        assert_eq!(durations, [960, 1920, 2880, 3840, 4800, 4800, 4800]);
        let ends = sent.iter().filter(|p| p.event.end).count();
        assert_eq!(ends, 3);
        // Then 100 ms of pause (5 audio ticks).
        assert!(packets[7..].iter().all(Option::is_none));
    }

    #[test]
    fn a_sender_refuses_a_second_tone_while_busy_and_caps_long_ones() {
        let mut sender = DtmfSender::new();
        let long = ToneRequest {
            tone: Tone::Star,
            duration: Duration::from_secs(5),
            pause_after: Duration::ZERO,
        };
        sender.start(long, 0).unwrap();
        assert_eq!(
            sender.start(ToneRequest::key(Tone::A), 0),
            Err(ToneRequest::key(Tone::A))
        );
        let mut last = 0;
        let mut finished = 0;
        while let SendStep::Packet {
            packet,
            finished: f,
        } = sender.step(TICK)
        {
            last = packet.event.duration;
            finished += usize::from(f);
        }
        assert_eq!(finished, 1, "finished once, on the last end packet");
        assert_eq!(u32::from(last), samples_of(MAX_TONE));
        assert!(sender.is_idle(), "no pause after a zero pause_after");
    }

    fn detect(
        detector: &mut DtmfDetector,
        packets: &[(u32, EventPacket, Duration)],
    ) -> Vec<ToneReceived> {
        let mut got = Vec::new();
        for (ssrc, p, at) in packets {
            detector.push(*ssrc, p.timestamp, &p.event.to_bytes(), *at, |t| {
                got.push(t)
            });
        }
        got
    }

    fn as_arrivals(
        ssrc: u32,
        packets: &[Option<EventPacket>],
    ) -> Vec<(u32, EventPacket, Duration)> {
        packets
            .iter()
            .enumerate()
            .filter_map(|(k, p)| p.map(|p| (ssrc, p, Duration::from_millis(20 * k as u64))))
            .collect()
    }

    #[test]
    fn each_key_is_reported_once_with_its_duration() {
        let keys = [Tone::Tone1, Tone::Tone1, Tone::Pound];
        let requests: Vec<_> = keys.iter().map(|&t| ToneRequest::key(t)).collect();
        let packets = as_arrivals(7, &run_sender(&requests, 40));
        let mut detector = DtmfDetector::<4>::new();
        let got = detect(&mut detector, &packets);
        let tones: Vec<_> = got.iter().map(|t| t.tone).collect();
        assert_eq!(
            tones, keys,
            "two equal keys are two presses; repeats are not"
        );
        assert!(got.iter().all(|t| t.end_seen && t.ssrc == 7));
        assert!(got.iter().all(|t| t.duration == Duration::from_millis(100)));
        assert_eq!(
            detector.stats().stale_packets,
            6,
            "two repeated ends per key"
        );
    }

    #[test]
    fn lost_end_packets_are_closed_by_the_next_event_or_the_timeout() {
        let requests = [ToneRequest::key(Tone::Tone3), ToneRequest::key(Tone::Tone4)];
        let mut packets = as_arrivals(1, &run_sender(&requests, 30));
        packets.retain(|(_, p, _)| !p.event.end);
        let mut detector = DtmfDetector::<4>::new();
        let got = detect(&mut detector, &packets);
        assert_eq!(got.len(), 1, "the 3 is closed when the 4 starts");
        assert_eq!(got[0].tone, Tone::Tone3);
        assert!(!got[0].end_seen);
        assert_eq!(
            got[0].duration,
            Duration::from_millis(80),
            "the last duration seen"
        );
        let last = packets.last().unwrap().2;
        let mut late = Vec::new();
        detector.poll(last + END_TIMEOUT / 2, |t| late.push(t));
        assert!(late.is_empty(), "not before the timeout");
        detector.poll(last + END_TIMEOUT, |t| late.push(t));
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].tone, Tone::Tone4);
        assert_eq!(detector.stats().ends_lost, 2);
    }

    #[test]
    fn reordered_duplicated_and_foreign_packets_do_not_double_report() {
        let packets = as_arrivals(9, &run_sender(&[ToneRequest::key(Tone::D)], 10));
        let mut shuffled = packets.clone();
        shuffled.swap(1, 3);
        shuffled.insert(2, shuffled[2]);
        let mut detector = DtmfDetector::<4>::new();
        let mut got = detect(&mut detector, &shuffled);
        // A late packet of the reported event, then of an older event.
        got.extend(detect(&mut detector, &packets[1..2]));
        let older = EventPacket {
            timestamp: packets[0].1.timestamp.wrapping_sub(9600),
            ..packets[0].1
        };
        got.extend(detect(
            &mut detector,
            &[(9, older, Duration::from_millis(300))],
        ));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].tone, Tone::D);
        // A non-DTMF event code and a short payload are counted, not reported.
        let mut none = Vec::new();
        detector.push(9, 123_456, &[40, 0x80, 0, 160], Duration::ZERO, |t| {
            none.push(t)
        });
        detector.push(9, 123_456, &[1, 0x80], Duration::ZERO, |t| none.push(t));
        assert!(none.is_empty());
        assert_eq!(detector.stats().unknown_events, 1);
        assert_eq!(detector.stats().malformed, 1);
    }

    #[test]
    fn timestamps_wrap() {
        let mut detector = DtmfDetector::<2>::new();
        let mut got = Vec::new();
        let near_end = u32::MAX - 100;
        let e = |end| {
            TelephoneEvent {
                event: 2,
                end,
                volume: 10,
                duration: 960,
            }
            .to_bytes()
        };
        detector.push(3, near_end, &e(true), Duration::ZERO, |t| got.push(t));
        detector.push(
            3,
            near_end.wrapping_add(9600),
            &e(true),
            Duration::from_millis(200),
            |t| got.push(t),
        );
        assert_eq!(got.len(), 2, "the event after the wrap is newer, not stale");
    }

    #[test]
    fn a_full_table_frees_idle_streams_and_counts_live_ones() {
        let mut detector = DtmfDetector::<1>::new();
        let mut got = Vec::new();
        let start = TelephoneEvent {
            event: 1,
            end: false,
            volume: 10,
            duration: 960,
        }
        .to_bytes();
        detector.push(1, 0, &start, Duration::ZERO, |t| got.push(t));
        detector.push(2, 0, &start, Duration::from_millis(20), |t| got.push(t));
        assert_eq!(detector.stats().streams_full, 1);
        // After the timeout the first stream's event is closed and the slot reused.
        detector.push(2, 0, &start, END_TIMEOUT, |t| got.push(t));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ssrc, 1);
        assert_eq!(detector.stats().streams_full, 1);
    }
}
