//! Round-trip time from RTCP report blocks (RFC 3550 §6.4.1).
//!
//! rtc 0.21.1 counts receiver reports but records 0 as their round-trip time ("would
//! require additional tracking"), so this interceptor does the arithmetic: the peer echoes
//! the middle 32 bits of our last sender report's NTP time (LSR) and how long it held it
//! (DLSR); RTT = arrival − LSR − DLSR. Our sender reports carry wall-clock NTP time, so the
//! arrival time is read from the same clock.
//!
//! The same interceptor notices an RTCP BYE from the peer: the stack does not turn the
//! peer's close into a state change, so without it a hang-up would look like a vanished
//! peer and take the whole peer timeout to notice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use appmedia_media::feedback::LossReports;
use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::goodbye::Goodbye;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// The latest RTT, shared with the session's stats; and the peer's loss reports about what
/// we send, shared with the media pipeline (its adaptive FEC).
#[derive(Debug, Default)]
pub(crate) struct RttCell {
    pub(crate) loss: Arc<LossReports>,
    /// f64 seconds, as bits.
    latest: AtomicU64,
    measurements: AtomicU64,
    /// Set when the peer sent an RTCP BYE; the session's watchdog is woken through `bye`.
    bye_received: std::sync::atomic::AtomicBool,
    pub(crate) bye: tokio::sync::Notify,
}

impl RttCell {
    pub(crate) fn latest(&self) -> Option<f64> {
        (self.measurements.load(Ordering::Relaxed) > 0)
            .then(|| f64::from_bits(self.latest.load(Ordering::Relaxed)))
    }

    pub(crate) fn bye_received(&self) -> bool {
        self.bye_received.load(Ordering::Relaxed)
    }

    fn record(&self, seconds: f64) {
        self.latest.store(seconds.to_bits(), Ordering::Relaxed);
        self.measurements.fetch_add(1, Ordering::Relaxed);
    }
}

/// RTT in seconds from one report block arriving at NTP time `arrival` (compact 16.16),
/// or `None` when the peer has not yet received a sender report from us.
pub(crate) fn rtt_seconds(arrival_compact: u32, report: &ReceptionReport) -> Option<f64> {
    if report.last_sender_report == 0 {
        return None;
    }
    let rtt = arrival_compact
        .wrapping_sub(report.last_sender_report)
        .wrapping_sub(report.delay);
    // A "negative" result (clock step, or a bogus report) wraps to a huge value; a real
    // round trip over UDP is far below a minute.
    (rtt < 60 << 16).then(|| f64::from(rtt) / 65536.0)
}

fn ntp_compact_now() -> u32 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = unix.as_secs() + 0x83AA_7E80; // NTP epoch is 1900
    let fraction = (u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000;
    let ntp = (seconds << 32) | fraction;
    (ntp >> 16) as u32
}

/// Which of the peer's streams said RTCP BYE. The session ends when every stream the peer
/// sends has (what a peer closing the session does: one BYE naming all its SSRCs), not when
/// one stream ends — e.g. one unmixed speaker stream of a meeting. Before any remote stream is
/// known, a BYE ends it.
#[derive(Debug, Default)]
pub(crate) struct ByeTracker {
    remote: Vec<u32>,
    said_bye: Vec<u32>,
}

impl ByeTracker {
    pub(crate) fn bind(&mut self, ssrc: u32) {
        if !self.remote.contains(&ssrc) {
            self.remote.push(ssrc);
        }
    }

    pub(crate) fn unbind(&mut self, ssrc: u32) {
        self.remote.retain(|s| *s != ssrc);
    }

    /// Notes a BYE naming `sources`; true when the peer has now left altogether.
    pub(crate) fn goodbye(&mut self, sources: &[u32]) -> bool {
        for s in sources {
            if !self.said_bye.contains(s) && self.said_bye.len() < 256 {
                self.said_bye.push(*s);
            }
        }
        self.remote.is_empty() || self.remote.iter().all(|s| self.said_bye.contains(s))
    }
}

pub(crate) struct RttInterceptor {
    cell: Arc<RttCell>,
    byes: ByeTracker,
    /// Our streams: the report blocks about them say what the peer lost of ours.
    local: Vec<u32>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl RttInterceptor {
    pub(crate) fn new(cell: Arc<RttCell>) -> Self {
        Self {
            cell,
            byes: ByeTracker::default(),
            local: Vec::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }
}

impl RttInterceptor {
    /// What one compound RTCP packet from the peer says: a BYE, round-trip times and the
    /// peer's loss reports about our streams.
    pub(crate) fn observe(&mut self, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        let arrival = ntp_compact_now();
        for packet in packets {
            let any = packet.as_any();
            if let Some(bye) = any.downcast_ref::<Goodbye>() {
                if self.byes.goodbye(&bye.sources) {
                    self.cell.bye_received.store(true, Ordering::Relaxed);
                    // notify_one stores a permit, so a watchdog not yet waiting sees it.
                    self.cell.bye.notify_one();
                }
                continue;
            }
            let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                &rr.reports
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                &sr.reports
            } else {
                continue;
            };
            for report in reports {
                if let Some(rtt) = rtt_seconds(arrival, report) {
                    self.cell.record(rtt);
                }
                if self.local.contains(&report.ssrc) {
                    self.cell.loss.report(report.fraction_lost);
                }
            }
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RttInterceptor {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            self.observe(packets);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for RttInterceptor {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if !self.local.contains(&info.ssrc) && self.local.len() < 256 {
            self.local.push(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.local.retain(|s| *s != info.ssrc);
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.byes.bind(info.ssrc);
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.byes.unbind(info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lsr: u32, dlsr: u32) -> ReceptionReport {
        ReceptionReport {
            last_sender_report: lsr,
            delay: dlsr,
            ..Default::default()
        }
    }

    #[test]
    fn a_bye_for_one_of_the_peers_streams_does_not_end_the_session() {
        let mut byes = ByeTracker::default();
        byes.bind(1);
        byes.bind(2);
        assert!(!byes.goodbye(&[2]), "one stream ended, the other goes on");
        assert!(!byes.goodbye(&[99]), "a stream the peer never sent");
        assert!(byes.goodbye(&[1]), "every stream said BYE");
        // A peer closing names all its streams at once.
        let mut byes = ByeTracker::default();
        byes.bind(1);
        byes.bind(2);
        assert!(byes.goodbye(&[1, 2]));
        // Before any stream is known, a BYE ends the session.
        assert!(ByeTracker::default().goodbye(&[5]));
    }

    #[test]
    fn rfc3550_example() {
        // RFC 3550 §6.4.1: A = 0xb710_8000 (46864.500 s), LSR = 0xb705_2000 (46853.125 s),
        // DLSR = 0x0005_4000 (5.250 s) -> RTT 6.125 s.
        let rtt = rtt_seconds(0xb710_8000, &report(0xb705_2000, 0x0005_4000)).unwrap();
        assert!((rtt - 6.125).abs() < 1e-9, "{rtt}");
    }

    #[test]
    fn no_sender_report_yet_or_nonsense_gives_nothing() {
        assert_eq!(rtt_seconds(0x1000_0000, &report(0, 0)), None);
        // LSR in the future: wraps, refused.
        assert_eq!(rtt_seconds(0x1000_0000, &report(0x1000_0100, 0)), None);
    }

    #[test]
    fn compact_now_moves_at_65536_per_second() {
        let a = ntp_compact_now();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let b = ntp_compact_now();
        let elapsed = f64::from(b.wrapping_sub(a)) / 65536.0;
        assert!(elapsed >= 0.04, "{elapsed}");
    }
}
