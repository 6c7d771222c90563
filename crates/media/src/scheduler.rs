//! The scheduler: W worker threads that tick many calls every 20 ms.
//!
//! This is the one part of the media core that owns threads and a clock; the
//! per-call pipeline knows nothing about it (it only implements [`Tickable`]).
//! The shape follows songbird's scheduler:
//!
//! * Each worker ticks all its calls against **absolute deadlines**
//!   `epoch + k · period`, so sleeping overshoot never accumulates into drift.
//!   Every call is told the *nominal* time of its frame (`k · period`), so its
//!   clock is exact even when the thread wakes a little late.
//! * Every call tick is timed; a worker measures its busy share of each
//!   window (default 1 s). A worker above its budget (default 90 % of the
//!   period) hands one call per window to the least-loaded worker that can take
//!   it without going over budget itself.
//! * Calls are added from any thread through a bounded command channel per
//!   worker; they are removed through their [`CallHandle`] (an atomic flag the
//!   owning worker checks every tick, so removal needs no routing and is safe
//!   while a call migrates).
//! * Removed calls are dropped on a [`Disposer`] thread, since a call's `Drop`
//!   may free large buffers or close things.
//! * A panicking call is caught, counted and removed; its worker carries on.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//! use appmedia_media::scheduler::{Scheduler, SchedulerConfig, Tickable};
//!
//! struct Counter(Arc<AtomicU64>);
//! impl Tickable for Counter {
//!     fn tick(&mut self, _now: Duration) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! let scheduler = Scheduler::start(SchedulerConfig { workers: 1, ..Default::default() }).unwrap();
//! let ticks = Arc::new(AtomicU64::new(0));
//! let call = scheduler.add(Counter(ticks.clone())).unwrap();
//! while ticks.load(Ordering::Relaxed) < 3 {
//!     std::thread::sleep(Duration::from_millis(5));
//! }
//! call.remove();
//! let stats = scheduler.shutdown();
//! assert!(stats.ticks() >= 3);
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::frame::FRAME_DURATION;
use crate::latency::{HistogramSnapshot, LatencyHistogram, LatencySummary};

/// Something the scheduler ticks once per period: a call's pipeline, a test counter.
pub trait Tickable: Send + 'static {
    /// Produce this period's frame. `now` is the nominal time of the frame
    /// (`k · period` since the scheduler's epoch), strictly increasing per call.
    fn tick(&mut self, now: Duration);
}

/// The scheduler drives call pipelines whose outputs go through their connected queues. The impl
/// lives here, not in `pipeline`, so that the sans-IO pipeline never depends on the scheduler.
impl Tickable for crate::pipeline::CallPipeline {
    fn tick(&mut self, now: Duration) {
        crate::pipeline::CallPipeline::tick(self, now);
    }
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Worker threads (default: one per available core).
    pub workers: usize,
    /// Tick period (default 20 ms, one frame).
    pub period: Duration,
    /// Share of the period a worker may be busy before it sheds a call (default 0.9).
    pub budget: f64,
    /// Periods per load window (default 50 = 1 s at 20 ms).
    pub window_periods: u32,
    /// How many periods a stalled worker catches up by ticking back to back
    /// before it skips ahead to the present (default 5).
    pub max_catch_up_periods: u32,
    /// Capacity of each worker's command channel (default 1024).
    pub command_capacity: usize,
    /// Calls each worker preallocates room for (default 256); more still work,
    /// at the cost of one reallocation when added.
    pub calls_per_worker: usize,
    /// Real-time scheduling for the workers (default `None`: the OS's normal policy).
    /// Needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` allowance; when the OS refuses, the worker
    /// runs at normal priority and [`WorkerStats::priority`] says why.
    pub realtime: Option<RealtimePriority>,
}

/// A real-time policy and priority for the media workers (Linux `SCHED_FIFO`/`SCHED_RR`).
/// A busy real-time thread can starve everything else on its core: the tick is bounded
/// work every 20 ms, but leave a core for the rest of the process on small machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealtimePriority {
    /// The policy.
    pub policy: RealtimePolicy,
    /// 1 (lowest) to 99.
    pub priority: u8,
}

/// Which real-time policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealtimePolicy {
    /// `SCHED_FIFO`: runs until it blocks (the worker sleeps between periods).
    Fifo,
    /// `SCHED_RR`: like FIFO, with a time slice among equal priorities.
    RoundRobin,
}

/// The priority a worker actually runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerPriority {
    /// The OS's normal policy (none asked for).
    #[default]
    Normal,
    /// The real-time policy asked for, granted.
    Realtime(RealtimePriority),
    /// Asked for, refused by the OS (`errno`, e.g. 1 = EPERM): running at normal priority.
    Refused {
        /// What was asked for.
        asked: RealtimePriority,
        /// The OS's error number.
        errno: i32,
    },
    /// Asked for on an OS where appmedia does not set thread priorities.
    Unsupported,
}

impl std::fmt::Display for WorkerPriority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |p: &RealtimePriority| match p.policy {
            RealtimePolicy::Fifo => format!("SCHED_FIFO {}", p.priority),
            RealtimePolicy::RoundRobin => format!("SCHED_RR {}", p.priority),
        };
        match self {
            WorkerPriority::Normal => f.write_str("normal"),
            WorkerPriority::Realtime(p) => f.write_str(&name(p)),
            WorkerPriority::Refused { asked, errno } => write!(
                f,
                "normal ({} refused: {})",
                name(asked),
                std::io::Error::from_raw_os_error(*errno)
            ),
            WorkerPriority::Unsupported => {
                f.write_str("normal (real-time priority unsupported here)")
            }
        }
    }
}

/// Puts the calling thread under `asked` (Linux); what it got.
fn apply_priority(asked: Option<RealtimePriority>) -> WorkerPriority {
    let Some(asked) = asked else {
        return WorkerPriority::Normal;
    };
    #[cfg(target_os = "linux")]
    {
        let policy = match asked.policy {
            RealtimePolicy::Fifo => libc::SCHED_FIFO,
            RealtimePolicy::RoundRobin => libc::SCHED_RR,
        };
        let param = libc::sched_param {
            sched_priority: i32::from(asked.priority.clamp(1, 99)),
        };
        // SAFETY: pthread_self() is this live thread; `param` is a valid sched_param that
        // outlives the call, which only reads it.
        let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), policy, &param) };
        if rc == 0 {
            WorkerPriority::Realtime(asked)
        } else {
            WorkerPriority::Refused { asked, errno: rc }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        WorkerPriority::Unsupported
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            period: FRAME_DURATION,
            budget: 0.9,
            window_periods: 50,
            max_catch_up_periods: 5,
            command_capacity: 1024,
            calls_per_worker: 256,
            realtime: None,
        }
    }
}

/// What went wrong starting the scheduler or adding a call.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A setting is out of range.
    #[error("invalid scheduler setting {name} = {value}")]
    InvalidConfig {
        /// Which setting.
        name: &'static str,
        /// Its value, printed.
        value: String,
    },
    /// The OS refused a thread.
    #[error("cannot spawn scheduler thread {name}: {source}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The worker's command channel is full (it is not draining: stalled or stopping).
    #[error("worker {worker} command queue is full; call not added")]
    WorkerBusy {
        /// The worker.
        worker: usize,
    },
    /// No such worker.
    #[error("no worker {worker}; there are {workers}")]
    UnknownWorker {
        /// The index asked for.
        worker: usize,
        /// How many workers exist.
        workers: usize,
    },
    /// The scheduler is shutting down.
    #[error("scheduler is stopped")]
    Stopped,
}

/// Handle to a scheduled call; removes it from any thread.
#[derive(Debug, Clone)]
pub struct CallHandle {
    id: u64,
    removed: Arc<AtomicBool>,
}

impl CallHandle {
    /// The call's id (unique within its scheduler).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Asks the owning worker to drop the call at its next tick (on the
    /// disposer thread). Idempotent; the call is not ticked again after the
    /// worker sees the flag.
    pub fn remove(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Whether [`CallHandle::remove`] was called.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
}

struct Entry<T> {
    call: Box<T>,
    removed: Arc<AtomicBool>,
    last_now: Option<Duration>,
    /// Tick time spent in the current load window.
    window_ns: u64,
}

enum Command<T> {
    Adopt(Entry<T>),
}

/// Counters one worker publishes (written by the worker only).
#[derive(Default)]
struct WorkerShared {
    calls: AtomicUsize,
    ticks: AtomicU64,
    late_ticks: AtomicU64,
    periods: AtomicU64,
    late_periods: AtomicU64,
    skipped_periods: AtomicU64,
    migrations_in: AtomicU64,
    migrations_out: AtomicU64,
    panics: AtomicU64,
    /// Busy share of the last window, in per-mille; raised by migrating
    /// workers when they hand over a call so two do not pick the same target.
    load_permille: AtomicU32,
    tick_time: LatencyHistogram,
    busy_time: LatencyHistogram,
    send_offset: LatencyHistogram,
    /// What [`apply_priority`] gave the worker (written once at its start).
    priority: std::sync::Mutex<WorkerPriority>,
    /// Set by [`Scheduler::reset_stats`]; the worker zeroes its own counters
    /// (it is their only writer) and clears the flag.
    reset_requested: AtomicBool,
}

impl WorkerShared {
    fn reset(&self) {
        for c in [
            &self.ticks,
            &self.late_ticks,
            &self.periods,
            &self.late_periods,
            &self.skipped_periods,
            &self.migrations_out,
            &self.panics,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        // Written by other workers too, hence a swap rather than a store race.
        self.migrations_in.swap(0, Ordering::Relaxed);
        self.tick_time.reset();
        self.busy_time.reset();
        self.send_offset.reset();
        self.reset_requested.store(false, Ordering::Release);
    }
}

struct WorkerLink<T> {
    tx: Sender<Command<T>>,
    shared: Arc<WorkerShared>,
}

/// Per-worker statistics.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: usize,
    /// Calls it owns now.
    pub calls: usize,
    /// Call ticks run.
    pub ticks: u64,
    /// Call ticks that finished after their frame's period had ended.
    pub late_ticks: u64,
    /// Periods (wake-ups) run.
    pub periods: u64,
    /// Periods whose work finished after the period ended.
    pub late_periods: u64,
    /// Periods skipped after a stall longer than the catch-up limit.
    pub skipped_periods: u64,
    /// Calls received from overloaded workers.
    pub migrations_in: u64,
    /// Calls handed to less loaded workers.
    pub migrations_out: u64,
    /// Call ticks that panicked (the call was removed).
    pub panics: u64,
    /// Busy share of the period over the last window (0.0–1.0+).
    pub load: f64,
    /// Distribution of single call tick durations.
    pub tick_time: HistogramSnapshot,
    /// Distribution of whole-period busy times (all calls of the worker).
    pub busy_time: HistogramSnapshot,
    /// When each call tick finished, from the start of its period: when its packet leaves.
    /// Its spread is the send-time jitter a far end sees from the scheduler.
    pub send_offset: HistogramSnapshot,
    /// The scheduling policy the worker runs under.
    pub priority: WorkerPriority,
}

/// Statistics of all workers.
#[derive(Debug, Clone)]
pub struct SchedulerStats {
    /// One entry per worker.
    pub workers: Vec<WorkerStats>,
    /// Drops done inline because the disposer queue was full.
    pub disposed_inline: u64,
}

impl SchedulerStats {
    /// Call ticks over all workers.
    pub fn ticks(&self) -> u64 {
        self.workers.iter().map(|w| w.ticks).sum()
    }

    /// Late call ticks over all workers.
    pub fn late_ticks(&self) -> u64 {
        self.workers.iter().map(|w| w.late_ticks).sum()
    }

    /// Migrations over all workers.
    pub fn migrations(&self) -> u64 {
        self.workers.iter().map(|w| w.migrations_out).sum()
    }

    /// Calls currently scheduled.
    pub fn calls(&self) -> usize {
        self.workers.iter().map(|w| w.calls).sum()
    }

    /// When call ticks finished within their period, over all workers
    /// ([`WorkerStats::send_offset`]).
    pub fn send_offset(&self) -> HistogramSnapshot {
        let mut all = HistogramSnapshot::default();
        for w in &self.workers {
            all.merge(&w.send_offset);
        }
        all
    }

    /// Call tick durations over all workers.
    pub fn tick_time(&self) -> LatencySummary {
        let mut all = HistogramSnapshot::default();
        for w in &self.workers {
            all.merge(&w.tick_time);
        }
        all.summary()
    }
}

/// Drops objects on its own thread, so a costly `Drop` never runs on the tick.
///
/// Dropping the `Disposer` drains what is queued and ends the thread, even if
/// handles are still alive; objects sent after that are dropped by whoever
/// drops the last handle.
#[derive(Debug)]
pub struct Disposer {
    handle: DisposerHandle,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Sends objects to a [`Disposer`]; cloneable, usable from any thread.
#[derive(Debug, Clone)]
pub struct DisposerHandle {
    tx: Sender<Box<dyn Send>>,
    inline: Arc<AtomicU64>,
}

/// How often an idle disposer checks whether it should end.
const DISPOSER_POLL: Duration = Duration::from_millis(20);

impl Disposer {
    /// Starts the disposer thread with room for `capacity` pending objects.
    pub fn start(capacity: usize) -> Result<Self, SchedulerError> {
        let (tx, rx) = crossbeam_channel::bounded::<Box<dyn Send>>(capacity.max(1));
        let closing = Arc::new(AtomicBool::new(false));
        let name = "appmedia-disposer".to_string();
        let thread = {
            let closing = closing.clone();
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    loop {
                        match rx.recv_timeout(DISPOSER_POLL) {
                            Ok(item) => drop(item),
                            Err(RecvTimeoutError::Timeout) => {
                                if closing.load(Ordering::Acquire) {
                                    break;
                                }
                            }
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    while let Ok(item) = rx.try_recv() {
                        drop(item);
                    }
                })
                .map_err(|source| SchedulerError::Spawn { name, source })?
        };
        Ok(Self {
            handle: DisposerHandle {
                tx,
                inline: Arc::new(AtomicU64::new(0)),
            },
            closing,
            thread: Some(thread),
        })
    }

    /// A handle to send objects with.
    pub fn handle(&self) -> DisposerHandle {
        self.handle.clone()
    }
}

impl Drop for Disposer {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // Bounded: the thread ends within one poll once the queue is
            // empty. A panic in some object's Drop was already printed.
            let _ = t.join();
        }
    }
}

impl DisposerHandle {
    /// Hands `item` to the disposer thread without blocking; if its queue is
    /// full (or it is gone) the item is dropped here and counted.
    pub fn dispose(&self, item: Box<dyn Send>) {
        if let Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) =
            self.tx.try_send(item)
        {
            self.inline.fetch_add(1, Ordering::Relaxed);
            drop(item);
        }
    }

    /// Objects that had to be dropped inline.
    pub fn dropped_inline(&self) -> u64 {
        self.inline.load(Ordering::Relaxed)
    }
}

/// The running scheduler. Shared between threads by reference or `Arc`; stops
/// and joins its threads on [`Scheduler::shutdown`] or drop.
pub struct Scheduler<T: Tickable> {
    config: SchedulerConfig,
    epoch: Instant,
    links: Arc<[WorkerLink<T>]>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next_id: AtomicU64,
    disposer_handle: DisposerHandle,
    // Dropped last (after the workers are joined) so it drains everything.
    disposer: Option<Disposer>,
}

impl<T: Tickable> Scheduler<T> {
    /// Validates `config` and starts the workers and the disposer.
    pub fn start(config: SchedulerConfig) -> Result<Self, SchedulerError> {
        let invalid = |name, value: String| Err(SchedulerError::InvalidConfig { name, value });
        if config.workers == 0 {
            return invalid("workers", config.workers.to_string());
        }
        if config.period.is_zero() {
            return invalid("period", format!("{:?}", config.period));
        }
        if !(config.budget > 0.0 && config.budget <= 1.0) {
            return invalid("budget", config.budget.to_string());
        }
        if config.window_periods == 0 {
            return invalid("window_periods", config.window_periods.to_string());
        }
        let disposer = Disposer::start(1024)?;
        let disposer_handle = disposer.handle();
        let mut receivers = Vec::with_capacity(config.workers);
        let links: Arc<[WorkerLink<T>]> = (0..config.workers)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::bounded(config.command_capacity.max(1));
                receivers.push(rx);
                WorkerLink {
                    tx,
                    shared: Arc::new(WorkerShared::default()),
                }
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        // Start the grid one period out so every worker is up before frame 1.
        let epoch = Instant::now();
        let mut scheduler = Self {
            config: config.clone(),
            epoch,
            links: links.clone(),
            threads: Vec::with_capacity(config.workers),
            stop: stop.clone(),
            next_id: AtomicU64::new(1),
            disposer_handle: disposer_handle.clone(),
            disposer: Some(disposer),
        };
        for (index, rx) in receivers.into_iter().enumerate() {
            let worker = Worker {
                index,
                config: config.clone(),
                epoch,
                rx,
                links: links.clone(),
                stop: stop.clone(),
                disposer: disposer_handle.clone(),
                entries: Vec::with_capacity(config.calls_per_worker),
            };
            let name = format!("appmedia-media-{index}");
            let thread = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || worker.run())
                .map_err(|source| SchedulerError::Spawn { name, source })?;
            // On error, `scheduler` drops here and stops the workers already started.
            scheduler.threads.push(thread);
        }
        Ok(scheduler)
    }

    /// The instant that `now = 0` stands for.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.links.len()
    }

    /// The settings in use.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Adds a call to the least loaded worker.
    pub fn add(&self, call: T) -> Result<CallHandle, SchedulerError> {
        let worker = self
            .links
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| {
                (
                    l.shared.load_permille.load(Ordering::Relaxed),
                    l.shared.calls.load(Ordering::Relaxed),
                )
            })
            .map_or(0, |(i, _)| i);
        self.add_to(worker, call)
    }

    /// Adds a call to a given worker (pinning for tests and experiments; the
    /// worker may still move it when over budget).
    pub fn add_to(&self, worker: usize, call: T) -> Result<CallHandle, SchedulerError> {
        if self.stop.load(Ordering::Acquire) {
            return Err(SchedulerError::Stopped);
        }
        let link = self
            .links
            .get(worker)
            .ok_or(SchedulerError::UnknownWorker {
                worker,
                workers: self.links.len(),
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let removed = Arc::new(AtomicBool::new(false));
        let entry = Entry {
            call: Box::new(call),
            removed: removed.clone(),
            last_now: None,
            window_ns: 0,
        };
        match link.tx.try_send(Command::Adopt(entry)) {
            Ok(()) => {
                // Count it now so the next `add` sees this worker as fuller.
                link.shared.calls.fetch_add(1, Ordering::Relaxed);
                Ok(CallHandle { id, removed })
            }
            Err(TrySendError::Full(_)) => Err(SchedulerError::WorkerBusy { worker }),
            Err(TrySendError::Disconnected(_)) => Err(SchedulerError::Stopped),
        }
    }

    /// A handle to the scheduler's disposer, for the calls' own costly drops.
    pub fn disposer(&self) -> DisposerHandle {
        self.disposer_handle.clone()
    }

    /// Current statistics (allocates; call it off the tick).
    pub fn stats(&self) -> SchedulerStats {
        let workers = self
            .links
            .iter()
            .enumerate()
            .map(|(worker, l)| {
                let s = &l.shared;
                WorkerStats {
                    worker,
                    calls: s.calls.load(Ordering::Relaxed),
                    ticks: s.ticks.load(Ordering::Relaxed),
                    late_ticks: s.late_ticks.load(Ordering::Relaxed),
                    periods: s.periods.load(Ordering::Relaxed),
                    late_periods: s.late_periods.load(Ordering::Relaxed),
                    skipped_periods: s.skipped_periods.load(Ordering::Relaxed),
                    migrations_in: s.migrations_in.load(Ordering::Relaxed),
                    migrations_out: s.migrations_out.load(Ordering::Relaxed),
                    panics: s.panics.load(Ordering::Relaxed),
                    load: f64::from(s.load_permille.load(Ordering::Relaxed)) / 1000.0,
                    tick_time: s.tick_time.snapshot(),
                    busy_time: s.busy_time.snapshot(),
                    send_offset: s.send_offset.snapshot(),
                    priority: *s.priority.lock().unwrap_or_else(|p| p.into_inner()),
                }
            })
            .collect();
        SchedulerStats {
            workers,
            disposed_inline: self.disposer_handle.dropped_inline(),
        }
    }

    /// Zeroes every worker's counters and histograms (not `calls` or `load`),
    /// e.g. after a warm-up. Each worker does it at its next period; this waits
    /// for that, at most `timeout`, and returns whether all workers did.
    pub fn reset_stats(&self, timeout: Duration) -> bool {
        for l in self.links.iter() {
            l.shared.reset_requested.store(true, Ordering::Release);
        }
        let start = Instant::now();
        loop {
            let pending = self
                .links
                .iter()
                .any(|l| l.shared.reset_requested.load(Ordering::Acquire));
            if !pending {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(self.config.period / 4);
        }
    }

    /// Stops every worker (within about one period), drops all calls on the
    /// disposer, joins all threads and returns the final statistics.
    pub fn shutdown(mut self) -> SchedulerStats {
        self.stop_and_join();
        self.stats()
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            // A worker only panics if the scheduler itself has a bug; the
            // panic message is already printed and the other workers go on.
            let _ = t.join();
        }
    }
}

impl<T: Tickable> Drop for Scheduler<T> {
    fn drop(&mut self) {
        self.stop_and_join();
        // Workers are gone; now the disposer can drain and end.
        self.disposer.take();
    }
}

impl<T: Tickable> std::fmt::Debug for Scheduler<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("workers", &self.links.len())
            .field("period", &self.config.period)
            .finish()
    }
}

struct Worker<T: Tickable> {
    index: usize,
    config: SchedulerConfig,
    epoch: Instant,
    rx: Receiver<Command<T>>,
    links: Arc<[WorkerLink<T>]>,
    stop: Arc<AtomicBool>,
    disposer: DisposerHandle,
    entries: Vec<Entry<T>>,
}

impl<T: Tickable> Worker<T> {
    fn shared(&self) -> &WorkerShared {
        &self.links[self.index].shared
    }

    fn run(mut self) {
        let granted = apply_priority(self.config.realtime);
        *self
            .shared()
            .priority
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = granted;
        let period = self.config.period;
        let mut k: u32 = 1;
        let mut window_busy = Duration::ZERO;
        let mut window_periods = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            let mut deadline = self.epoch + period * k;
            let woke = Instant::now();
            if woke < deadline {
                std::thread::sleep(deadline - woke);
            } else if woke > deadline + period * self.config.max_catch_up_periods {
                // Stalled too long (the host paused us): resume at the present
                // instead of bursting through every missed frame.
                let behind = ((woke - self.epoch).as_nanos() / period.as_nanos()) as u32;
                let skipped = behind.saturating_sub(k);
                add(&self.shared().skipped_periods, u64::from(skipped));
                k = behind;
                deadline = self.epoch + period * k;
            }
            self.adopt_commands();
            if self.shared().reset_requested.load(Ordering::Acquire) {
                self.shared().reset();
            }
            let now = deadline - self.epoch;
            let late_after = deadline + period;
            let started = Instant::now();
            self.tick_all(now, late_after);
            let finished = Instant::now();
            let busy = finished - started;
            let shared = self.shared();
            shared.busy_time.record(busy);
            add(&shared.periods, 1);
            if finished > late_after {
                add(&shared.late_periods, 1);
            }
            window_busy += busy;
            window_periods += 1;
            if window_periods >= self.config.window_periods {
                self.end_window(window_busy, window_periods);
                window_busy = Duration::ZERO;
                window_periods = 0;
            }
            k = k.saturating_add(1);
        }
        for entry in self.entries.drain(..) {
            self.disposer.dispose(entry.call);
        }
        // Calls added or migrated here that never got adopted.
        while let Ok(Command::Adopt(entry)) = self.rx.try_recv() {
            self.disposer.dispose(entry.call);
        }
        self.links[self.index]
            .shared
            .calls
            .store(0, Ordering::Relaxed);
    }

    fn adopt_commands(&mut self) {
        while let Ok(Command::Adopt(entry)) = self.rx.try_recv() {
            // Vec growth past `calls_per_worker` allocates: only when calls are
            // added, never in steady state.
            self.entries.push(entry);
        }
    }

    fn tick_all(&mut self, now: Duration, late_after: Instant) {
        let shared = &*self.links[self.index].shared;
        let mut i = 0;
        while i < self.entries.len() {
            let entry = &mut self.entries[i];
            if entry.removed.load(Ordering::Acquire) {
                let gone = self.entries.swap_remove(i);
                shared.calls.fetch_sub(1, Ordering::Relaxed);
                self.disposer.dispose(gone.call);
                continue;
            }
            // A call migrated from a worker that already ran this frame waits
            // for the next one: each call's `now` strictly increases.
            if entry.last_now.is_some_and(|last| last >= now) {
                i += 1;
                continue;
            }
            entry.last_now = Some(now);
            let t0 = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| entry.call.tick(now)));
            let t1 = Instant::now();
            let took = t1 - t0;
            shared.tick_time.record(took);
            shared
                .send_offset
                .record(t1.saturating_duration_since(late_after - self.config.period));
            add(&shared.ticks, 1);
            if t1 > late_after {
                add(&shared.late_ticks, 1);
            }
            entry.window_ns = entry
                .window_ns
                .saturating_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
            if result.is_err() {
                add(&shared.panics, 1);
                let gone = self.entries.swap_remove(i);
                gone.removed.store(true, Ordering::Release);
                shared.calls.fetch_sub(1, Ordering::Relaxed);
                self.disposer.dispose(gone.call);
                continue;
            }
            i += 1;
        }
    }

    /// Publishes this window's load and, when over budget, moves the call
    /// that best fits into the least loaded other worker.
    fn end_window(&mut self, busy: Duration, periods: u32) {
        let window = self.config.period.as_nanos() as f64 * f64::from(periods);
        let load = busy.as_nanos() as f64 / window;
        let shared = &*self.links[self.index].shared;
        shared
            .load_permille
            .store(permille(load), Ordering::Relaxed);
        if load > self.config.budget && self.entries.len() > 1 {
            self.shed_one(load, window);
        }
        for e in &mut self.entries {
            e.window_ns = 0;
        }
    }

    fn shed_one(&mut self, load: f64, window: f64) {
        let Some((target, target_load)) = self
            .links
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.index)
            .map(|(i, l)| {
                (
                    i,
                    f64::from(l.shared.load_permille.load(Ordering::Relaxed)) / 1000.0,
                )
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
        else {
            return;
        };
        // The largest call that fits under the target's budget and actually
        // narrows the gap (so two workers never just swap a call back and forth).
        let headroom = self.config.budget - target_load;
        let best = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.window_ns as f64 / window))
            .filter(|&(_, cost)| cost < headroom && target_load + cost < load - cost)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, cost)) = best else {
            return;
        };
        let entry = self.entries.swap_remove(i);
        let target_link = &self.links[target];
        match target_link.tx.try_send(Command::Adopt(entry)) {
            Ok(()) => {
                let shared = &self.links[self.index].shared;
                shared.calls.fetch_sub(1, Ordering::Relaxed);
                add(&shared.migrations_out, 1);
                target_link.shared.calls.fetch_add(1, Ordering::Relaxed);
                target_link
                    .shared
                    .load_permille
                    .fetch_add(permille(cost), Ordering::Relaxed);
                target_link
                    .shared
                    .migrations_in
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(Command::Adopt(back)))
            | Err(TrySendError::Disconnected(Command::Adopt(back))) => {
                // Target busy or stopping: keep the call.
                self.entries.push(back);
            }
        }
    }
}

fn permille(load: f64) -> u32 {
    (load * 1000.0).round().clamp(0.0, f64::from(u32::MAX)) as u32
}

/// Single-writer counter bump: a plain load + store, cheaper than `fetch_add`.
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Upper bound on any wait in these tests; they normally finish in well
    /// under a second. Reaching it fails the test instead of hanging.
    const PATIENCE: Duration = Duration::from_secs(10);

    fn fast(workers: usize) -> SchedulerConfig {
        SchedulerConfig {
            workers,
            period: Duration::from_millis(5),
            window_periods: 10,
            ..Default::default()
        }
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Records every `now` it is given and the instant it was ticked at.
    struct Recorder {
        log: Arc<Mutex<Vec<(Duration, Instant)>>>,
    }

    impl Tickable for Recorder {
        fn tick(&mut self, now: Duration) {
            // Tests may allocate; real calls must not.
            self.log.lock().unwrap().push((now, Instant::now()));
        }
    }

    struct Counter {
        ticks: Arc<AtomicU64>,
        dropped_on: Arc<Mutex<Option<String>>>,
    }

    impl Tickable for Counter {
        fn tick(&mut self, _now: Duration) {
            self.ticks.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Drop for Counter {
        fn drop(&mut self) {
            let name = std::thread::current().name().map(str::to_owned);
            *self.dropped_on.lock().unwrap() = name;
        }
    }

    fn counter() -> (Counter, Arc<AtomicU64>, Arc<Mutex<Option<String>>>) {
        let ticks = Arc::new(AtomicU64::new(0));
        let dropped_on = Arc::new(Mutex::new(None));
        (
            Counter {
                ticks: ticks.clone(),
                dropped_on: dropped_on.clone(),
            },
            ticks,
            dropped_on,
        )
    }

    #[test]
    fn ticks_on_an_absolute_grid_never_early_never_repeated() {
        let scheduler = Scheduler::start(fast(2)).unwrap();
        let logs: Vec<_> = (0..4).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
        for log in &logs {
            scheduler.add(Recorder { log: log.clone() }).unwrap();
        }
        wait_until("30 ticks per call", || {
            logs.iter().all(|l| l.lock().unwrap().len() >= 30)
        });
        let epoch = scheduler.epoch();
        let period = scheduler.config().period;
        let stats = scheduler.shutdown();
        for log in &logs {
            let log = log.lock().unwrap();
            for (now, at) in log.iter() {
                // `now` is a whole number of periods: no drift accumulates.
                assert_eq!(now.as_nanos() % period.as_nanos(), 0);
                assert!(*at >= epoch + *now, "ticked before its deadline");
            }
            assert!(
                log.windows(2).all(|w| w[0].0 < w[1].0),
                "now not increasing"
            );
        }
        assert!(stats.ticks() >= 120);
        assert!(stats.tick_time().count >= 120);
        assert_eq!(stats.tick_time().count, stats.ticks());
        assert_eq!(stats.calls(), 0, "shutdown drops every call");
        // Each tick's send time within its period: one per tick, never past a period
        // plus the catch-up allowance.
        let offsets = stats.send_offset();
        assert_eq!(offsets.count(), stats.ticks());
        assert!(offsets.max() < period * 6, "{:?}", offsets.max());
        assert!(
            stats
                .workers
                .iter()
                .all(|w| w.priority == WorkerPriority::Normal)
        );
    }

    #[test]
    fn real_time_priority_is_granted_or_its_refusal_reported() {
        let asked = RealtimePriority {
            policy: RealtimePolicy::Fifo,
            priority: 10,
        };
        let scheduler = Scheduler::start(SchedulerConfig {
            realtime: Some(asked),
            ..fast(1)
        })
        .unwrap();
        let (call, ticks, _) = counter();
        scheduler.add(call).unwrap();
        wait_until("ticks under the asked policy", || {
            ticks.load(Ordering::Relaxed) >= 5
        });
        let stats = scheduler.shutdown();
        // Root (or CAP_SYS_NICE / RLIMIT_RTPRIO) gets it; anyone else runs normally and
        // is told why. Either way the calls ran.
        match stats.workers[0].priority {
            WorkerPriority::Realtime(p) => assert_eq!(p, asked),
            WorkerPriority::Refused { asked: a, errno } => {
                assert_eq!(a, asked);
                assert_eq!(errno, libc::EPERM);
            }
            other => panic!("{other:?}"),
        }
        let refused = WorkerPriority::Refused {
            asked,
            errno: libc::EPERM,
        };
        let text = refused.to_string();
        assert!(text.starts_with("normal (SCHED_FIFO 10 refused"), "{text}");
    }

    #[test]
    fn removed_calls_stop_and_drop_on_the_disposer() {
        let scheduler = Scheduler::start(fast(1)).unwrap();
        let (keep, keep_ticks, _) = counter();
        let (gone, gone_ticks, gone_dropped_on) = counter();
        scheduler.add(keep).unwrap();
        let handle = scheduler.add(gone).unwrap();
        wait_until("both ticking", || gone_ticks.load(Ordering::Relaxed) >= 3);
        // Remove from another thread, as a signalling task would.
        let h2 = handle.clone();
        std::thread::spawn(move || h2.remove()).join().unwrap();
        assert!(handle.is_removed());
        wait_until("drop", || gone_dropped_on.lock().unwrap().is_some());
        assert_eq!(
            gone_dropped_on.lock().unwrap().as_deref(),
            Some("appmedia-disposer")
        );
        let frozen = gone_ticks.load(Ordering::Relaxed);
        let kept_before = keep_ticks.load(Ordering::Relaxed);
        wait_until("the other call goes on", || {
            keep_ticks.load(Ordering::Relaxed) >= kept_before + 5
        });
        assert_eq!(gone_ticks.load(Ordering::Relaxed), frozen);
        assert_eq!(scheduler.stats().calls(), 1);
        let before = scheduler.stats();
        assert!(scheduler.reset_stats(PATIENCE));
        let after = scheduler.stats();
        // Only the ticks since the reset remain.
        assert!(
            after.ticks() < before.ticks(),
            "reset did not zero the counters"
        );
        assert_eq!(after.calls(), 1, "reset keeps the calls");
    }

    struct Panicky {
        after: u32,
    }

    impl Tickable for Panicky {
        fn tick(&mut self, _now: Duration) {
            self.after = self.after.saturating_sub(1);
            assert!(self.after > 0, "deliberate test panic");
        }
    }

    enum Mixed {
        Panicky(Panicky),
        Counter(Counter),
    }

    impl Tickable for Mixed {
        fn tick(&mut self, now: Duration) {
            match self {
                Mixed::Panicky(p) => p.tick(now),
                Mixed::Counter(c) => c.tick(now),
            }
        }
    }

    #[test]
    fn a_panicking_call_is_removed_and_the_worker_goes_on() {
        let scheduler = Scheduler::start(fast(1)).unwrap();
        let (c, ticks, _) = counter();
        scheduler.add(Mixed::Counter(c)).unwrap();
        let bad = scheduler.add(Mixed::Panicky(Panicky { after: 3 })).unwrap();
        wait_until("panic", || bad.is_removed());
        let before = ticks.load(Ordering::Relaxed);
        wait_until("survivor ticks", || {
            ticks.load(Ordering::Relaxed) >= before + 5
        });
        let stats = scheduler.shutdown();
        assert_eq!(stats.workers[0].panics, 1);
    }

    /// Burns a fixed share of every period (spinning on the clock, so the cost
    /// is the same however busy the machine is).
    struct Heavy {
        cost: Duration,
        ticks: Arc<AtomicU64>,
    }

    impl Tickable for Heavy {
        fn tick(&mut self, _now: Duration) {
            let start = Instant::now();
            while start.elapsed() < self.cost {
                std::hint::spin_loop();
            }
            self.ticks.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn an_overloaded_worker_sheds_a_call_to_an_idle_one() {
        let config = SchedulerConfig {
            workers: 2,
            period: Duration::from_millis(10),
            window_periods: 5,
            ..Default::default()
        };
        let scheduler = Scheduler::start(config).unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        // Three calls of 40 % each pinned on worker 0: 120 % of its budget.
        for _ in 0..3 {
            let heavy = Heavy {
                cost: Duration::from_millis(4),
                ticks: ticks.clone(),
            };
            scheduler.add_to(0, heavy).unwrap();
        }
        wait_until("a migration", || scheduler.stats().migrations() >= 1);
        let stats = scheduler.shutdown();
        assert!(stats.workers[1].migrations_in >= 1);
        assert!(ticks.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn calls_spread_over_workers_and_bad_settings_are_refused() {
        let scheduler = Scheduler::start(fast(2)).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| scheduler.add(counter().0).unwrap())
            .collect();
        let ids: std::collections::HashSet<_> = handles.iter().map(CallHandle::id).collect();
        assert_eq!(ids.len(), 4);
        let stats = scheduler.stats();
        assert_eq!(stats.workers[0].calls, 2);
        assert_eq!(stats.workers[1].calls, 2);
        assert!(matches!(
            scheduler.add_to(7, counter().0),
            Err(SchedulerError::UnknownWorker {
                worker: 7,
                workers: 2
            })
        ));
        drop(scheduler);

        for bad in [
            SchedulerConfig {
                workers: 0,
                ..Default::default()
            },
            SchedulerConfig {
                period: Duration::ZERO,
                ..Default::default()
            },
            SchedulerConfig {
                budget: 1.5,
                ..Default::default()
            },
            SchedulerConfig {
                budget: f64::NAN,
                ..Default::default()
            },
            SchedulerConfig {
                window_periods: 0,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                Scheduler::<Counter>::start(bad),
                Err(SchedulerError::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn disposer_drops_on_its_thread_or_inline_when_full() {
        let disposer = Disposer::start(1).unwrap();
        let handle = disposer.handle();
        let (c, _, dropped_on) = counter();
        handle.dispose(Box::new(c));
        wait_until("disposal", || dropped_on.lock().unwrap().is_some());
        assert_eq!(
            dropped_on.lock().unwrap().as_deref(),
            Some("appmedia-disposer")
        );
        // A handle outliving the disposer must not hang its drop.
        drop(disposer);
        let (late, _, late_dropped_on) = counter();
        handle.dispose(Box::new(late));
        drop(handle);
        assert!(late_dropped_on.lock().unwrap().is_some());
    }
}
