//! Running a [`ConferenceMedia`] in real time on the media core's scheduler.
//!
//! The scheduler's workers tick every conference against absolute 20 ms deadlines; packets
//! cross between the conference and the transport's task through the media core's lock-free
//! queues ([`RtpInbox`] in, a shared [`OutgoingRtp`] outbox out); commands, events and stats
//! travel on their own queues, so nothing the transport or the service does can block a tick.
//!
//! ```
//! use std::time::Duration;
//! use appmedia_emulator_media::ConferenceMedia;
//! use appmedia_emulator_media::realtime::{ConferenceScheduler, RunningConference};
//! use appmedia_media::scheduler::SchedulerConfig;
//!
//! let scheduler = ConferenceScheduler::start(SchedulerConfig { workers: 1, ..Default::default() })?;
//! let conference = ConferenceMedia::new(Default::default())?;
//! let mut call = RunningConference::start(&scheduler, conference, Default::default())?;
//! while call.latest_stats().map_or(0, |s| s.ticks) < 3 {
//!     std::thread::sleep(Duration::from_millis(5)); // the transport would pump packets here
//! }
//! call.stop();
//! scheduler.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, Instant};

use appmedia_media::pipeline::{OutgoingRtp, RtpInbox, SendOutcome};
use appmedia_media::queue::{Consumer, Producer, Push};
use appmedia_media::scheduler::{CallHandle, Scheduler, SchedulerError};
use bytes::Bytes;

use crate::conference::{ConferenceControl, ConferenceEvent, ConferenceMedia, ConferenceStats};

/// The scheduler that ticks conferences.
pub type ConferenceScheduler = Scheduler<ConferenceMedia>;

/// Sizes of a running conference's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSizes {
    /// Packets to the transport (a speaker stream each, so room for several per tick).
    pub outgoing_packets: usize,
    /// Events waiting for the service.
    pub events: usize,
}

impl Default for QueueSizes {
    fn default() -> Self {
        QueueSizes {
            outgoing_packets: 256,
            events: 256,
        }
    }
}

/// What one [`RunningConference::pump`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pumped {
    /// Packets from the bot handed to the conference.
    pub received: usize,
    /// Packets to the bot handed to the transport.
    pub sent: usize,
    /// Packets that pushed an older one out of a full queue, or found the other side gone.
    pub dropped: usize,
}

/// One conference on the scheduler, and the ends of its queues.
pub struct RunningConference {
    call: CallHandle,
    epoch: Instant,
    inbox: RtpInbox,
    outbox: Consumer<OutgoingRtp>,
    control: ConferenceControl,
    events: Consumer<ConferenceEvent>,
    stats: Consumer<ConferenceStats>,
    last_stats: Option<ConferenceStats>,
}

impl std::fmt::Debug for RunningConference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningConference")
            .field("call", &self.call.id())
            .finish_non_exhaustive()
    }
}

impl RunningConference {
    /// Connects the conference's outboxes and hands it to the scheduler.
    pub fn start(
        scheduler: &ConferenceScheduler,
        mut conference: ConferenceMedia,
        sizes: QueueSizes,
    ) -> Result<RunningConference, SchedulerError> {
        let outbox = conference.packet_outbox(sizes.outgoing_packets);
        let events = conference.event_outbox(sizes.events);
        let stats = conference.stats_outbox();
        let inbox = conference.rtp_inbox();
        let control = conference.control();
        conference.set_disposer(scheduler.disposer());
        let call = scheduler.add(conference)?;
        Ok(RunningConference {
            call,
            epoch: scheduler.epoch(),
            inbox,
            outbox,
            control,
            events,
            stats,
            last_stats: None,
        })
    }

    /// The scheduler's clock: what `now` the conference's ticks see.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Queues a packet from the bot (after SRTP), stamped with its arrival time now.
    pub fn receive(&self, packet: Bytes) -> SendOutcome {
        // The conference holds the inbox's consumer until it is removed; a packet for a stopped
        // call is dropped, which is all that can be done with it.
        self.inbox
            .push(packet, self.now())
            .unwrap_or(SendOutcome::DroppedOldest)
    }

    /// The next packet for the bot.
    pub fn next_outgoing(&self) -> Option<OutgoingRtp> {
        self.outbox.pop()
    }

    /// Moves every waiting packet between the conference and a transport's queues (e.g. the
    /// transport crate's `RtpEndpoint`: `incoming` from the bot, `outgoing` to the bot).
    /// Call it from the transport's task every few milliseconds, never from a tick: each
    /// outgoing packet is copied into a new `Bytes`.
    pub fn pump(&self, incoming: &Consumer<Bytes>, outgoing: &Producer<Bytes>) -> Pumped {
        let mut pumped = Pumped::default();
        while let Some(p) = incoming.pop() {
            if self.receive(p) == SendOutcome::DroppedOldest {
                pumped.dropped += 1;
            }
            pumped.received += 1;
        }
        while let Some(p) = self.outbox.pop() {
            match outgoing.push(Bytes::copy_from_slice(p.as_bytes())) {
                Push::Queued => {}
                Push::QueuedEvicting(_) | Push::Rejected(_) | Push::Disconnected(_) => {
                    pumped.dropped += 1
                }
            }
            pumped.sent += 1;
        }
        pumped
    }

    /// The next event.
    pub fn next_event(&self) -> Option<ConferenceEvent> {
        self.events.pop()
    }

    /// The handle to add, remove, mute parties and change what they do.
    pub fn control(&self) -> &ConferenceControl {
        &self.control
    }

    /// The stats published by the latest tick (`None` before the first tick).
    pub fn latest_stats(&mut self) -> Option<ConferenceStats> {
        while let Some(s) = self.stats.pop() {
            self.last_stats = Some(s);
        }
        self.last_stats
    }

    /// Removes the conference from the scheduler (it is dropped on the disposer thread).
    pub fn stop(&self) {
        self.call.remove();
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.call.is_removed()
    }
}

impl Drop for RunningConference {
    fn drop(&mut self) {
        self.call.remove();
    }
}
