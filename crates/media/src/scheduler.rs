//! The scheduler: W worker threads that tick many calls every 20 ms.
//!
//! This is the one part of the media core that owns threads and a clock; the
//! per-call pipeline knows nothing about it (it only implements [`Tickable`]).
//! The shape follows songbird's scheduler, with work stealing within the period:
//!
//! * Every worker ticks calls against the same **absolute deadlines**
//!   `epoch + k · period`, so sleeping overshoot never accumulates into drift.
//!   Every call is told the *nominal* time of its frame (`k · period`), so its
//!   clock is exact even when a thread wakes a little late.
//! * Calls live in one shared table of slots. Each call has a **home** worker
//!   (the one with the fewest calls when it was added) that ticks it first, in
//!   table order, for cache affinity. A worker done with its own calls for the
//!   period **steals** the ones other workers have not reached yet, from the far
//!   end of the table: a worker that is preempted, or whose calls cost more this
//!   period, no longer makes its remaining calls late while another worker idles.
//!   Each slot's state word (the last period it was ticked for, and a busy bit)
//!   is claimed with one compare-and-swap, so a call is ticked once per period,
//!   by one thread at a time, with `now` strictly increasing.
//! * Calls are added from any thread straight into a free slot (no channel);
//!   they are removed through their [`CallHandle`] (an atomic flag the worker
//!   that next claims the slot checks).
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

use std::cell::UnsafeCell;
use std::sync::OnceLock;

use crossbeam_channel::{RecvTimeoutError, Sender, TrySendError};

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
    /// Periods per load window (default 50 = 1 s at 20 ms): [`WorkerStats::load`].
    pub window_periods: u32,
    /// How many periods a stalled worker catches up by ticking back to back
    /// before it skips ahead to the present (default 5).
    pub max_catch_up_periods: u32,
    /// Call slots made at start, per worker (default 256); more are made, 64 at a
    /// time, when calls are added (never on the tick).
    pub calls_per_worker: usize,
    /// The most calls the scheduler holds (default 16,384); [`Scheduler::add`] past it
    /// is [`SchedulerError::Full`].
    pub max_calls: usize,
    /// Whether a worker done with its own calls ticks the ones other workers have not
    /// reached yet within the period (default `true`). `false` keeps each call on its
    /// home worker: only for measuring what stealing buys.
    pub steal: bool,
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
            window_periods: 50,
            max_catch_up_periods: 5,
            calls_per_worker: 256,
            max_calls: 16_384,
            steal: true,
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
    /// The scheduler holds [`SchedulerConfig::max_calls`] calls already.
    #[error("the scheduler holds its maximum of {max_calls} calls; call not added")]
    Full {
        /// The limit.
        max_calls: usize,
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
}

/// Slots per chunk of the call table.
const CHUNK: usize = 64;
/// A slot's state word when it holds no call.
const EMPTY: u64 = u64::MAX;
/// The busy bit of a slot's state word; the rest is the last period it was ticked for
/// (`period << 1`). A call being installed is busy at period 0.
const BUSY: u64 = 1;

/// One call's place in the table. Whoever sets the busy bit (by compare-and-swap) has the
/// entry to itself until it clears the bit.
struct Slot<T> {
    state: AtomicU64,
    /// The worker that ticks this call first (an affinity hint; stealing may tick it).
    home: AtomicUsize,
    entry: UnsafeCell<Option<Entry<T>>>,
}

// SAFETY: `entry` is only touched by the thread that holds the slot's busy bit (taken with
// an Acquire compare-and-swap, given back with a Release store), or through `&mut` when no
// worker runs; the call itself is `Send`.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> Slot<T> {
    fn new() -> Self {
        Self {
            state: AtomicU64::new(EMPTY),
            home: AtomicUsize::new(0),
            entry: UnsafeCell::new(None),
        }
    }

    /// Takes the slot for period `k` if it holds a call not yet ticked for `k` that no
    /// one else holds now.
    fn claim(&self, k: u64) -> bool {
        let state = self.state.load(Ordering::Relaxed);
        state != EMPTY
            && state & BUSY == 0
            && state >> 1 < k
            && self
                .state
                .compare_exchange(state, (k << 1) | BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// The entry of a slot this thread has claimed.
    ///
    /// # Safety
    /// The caller holds the slot's busy bit (a successful [`Slot::claim`] or install) and
    /// has not released it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn held(&self) -> &mut Option<Entry<T>> {
        // SAFETY: the busy bit gives this thread the only access (see the caller's contract).
        unsafe { &mut *self.entry.get() }
    }

    /// Gives the slot back after ticking it for period `k`.
    fn release(&self, k: u64) {
        self.state.store(k << 1, Ordering::Release);
    }
}

type Chunk<T> = Box<[Slot<T>]>;

/// The call table: chunks of slots made on demand and never moved or freed while the
/// scheduler lives, so workers walk it without a lock. Chunks are made in order;
/// `chunks` counts those published.
struct Table<T> {
    chunk_slots: Box<[OnceLock<Chunk<T>>]>,
    chunks: AtomicUsize,
}

impl<T: Tickable> Table<T> {
    fn new(max_calls: usize, initial_calls: usize) -> Self {
        let max_chunks = max_calls.div_ceil(CHUNK).max(1);
        let table = Self {
            chunk_slots: (0..max_chunks).map(|_| OnceLock::new()).collect(),
            chunks: AtomicUsize::new(0),
        };
        while table.chunks.load(Ordering::Relaxed) * CHUNK < initial_calls.min(max_calls) {
            table.grow();
        }
        table
    }

    /// Publishes one more chunk; false at the limit.
    fn grow(&self) -> bool {
        let n = self.chunks.load(Ordering::Acquire);
        let Some(cell) = self.chunk_slots.get(n) else {
            return false;
        };
        cell.get_or_init(|| (0..CHUNK).map(|_| Slot::new()).collect());
        // Another adder may have published it already; the count only goes up.
        self.chunks.fetch_max(n + 1, Ordering::Release);
        true
    }

    /// The published slots, in table order.
    fn slots(&self) -> impl DoubleEndedIterator<Item = &Slot<T>> {
        let n = self.chunks.load(Ordering::Acquire);
        self.chunk_slots[..n]
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|chunk| chunk.iter())
    }

    /// Puts `entry` into a free slot homed on `home`; gives it back if the table is full.
    fn install(&self, entry: Entry<T>, home: usize) -> Result<(), Entry<T>> {
        loop {
            for slot in self.slots() {
                if slot
                    .state
                    .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    slot.home.store(home, Ordering::Relaxed);
                    // SAFETY: the compare-and-swap above gave this thread the busy bit.
                    unsafe { *slot.held() = Some(entry) };
                    // Period 0: ticked from the next period any worker runs.
                    slot.release(0);
                    return Ok(());
                }
            }
            if !self.grow() {
                return Err(entry);
            }
        }
    }

    /// Takes every call out (once no worker runs) and hands it to `dispose`.
    fn drain(&mut self, mut dispose: impl FnMut(Entry<T>)) {
        for chunk in self.chunk_slots.iter_mut().filter_map(OnceLock::get_mut) {
            for slot in chunk.iter_mut() {
                if let Some(entry) = slot.entry.get_mut().take() {
                    dispose(entry);
                }
                *slot.state.get_mut() = EMPTY;
            }
        }
    }
}

/// Counters one worker publishes (written by the worker only, but for `calls`).
#[derive(Default)]
struct WorkerShared {
    /// Calls homed on this worker: raised by adders, lowered by whichever worker vacates.
    calls: AtomicUsize,
    ticks: AtomicU64,
    late_ticks: AtomicU64,
    periods: AtomicU64,
    late_periods: AtomicU64,
    skipped_periods: AtomicU64,
    steals: AtomicU64,
    panics: AtomicU64,
    /// Busy share of the last window, in per-mille.
    load_permille: AtomicU32,
    tick_time: LatencyHistogram,
    busy_time: LatencyHistogram,
    send_offset: LatencyHistogram,
    wake_delay: LatencyHistogram,
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
            &self.steals,
            &self.panics,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.tick_time.reset();
        self.busy_time.reset();
        self.send_offset.reset();
        self.wake_delay.reset();
        self.reset_requested.store(false, Ordering::Release);
    }
}

/// Per-worker statistics.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: usize,
    /// Calls whose home it is now.
    pub calls: usize,
    /// Call ticks run (its own calls' and stolen ones).
    pub ticks: u64,
    /// Call ticks that finished after their frame's period had ended.
    pub late_ticks: u64,
    /// Periods (wake-ups) run.
    pub periods: u64,
    /// Periods whose work finished after the period ended.
    pub late_periods: u64,
    /// Periods skipped after a stall longer than the catch-up limit.
    pub skipped_periods: u64,
    /// Call ticks it ran for calls homed on another worker, which that worker had not
    /// reached yet in the period.
    pub steals: u64,
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
    /// How long after each period's start the worker began it: the OS's wake-up latency, or
    /// how far behind it was. When both workers begin a period late, no stealing can make up
    /// for it (the host paused the whole machine).
    pub wake_delay: HistogramSnapshot,
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

    /// Call ticks run by a worker other than the call's home, over all workers.
    pub fn steals(&self) -> u64 {
        self.workers.iter().map(|w| w.steals).sum()
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

    /// How late the workers began their periods, over all workers
    /// ([`WorkerStats::wake_delay`]).
    pub fn wake_delay(&self) -> HistogramSnapshot {
        let mut all = HistogramSnapshot::default();
        for w in &self.workers {
            all.merge(&w.wake_delay);
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
    table: Arc<Table<T>>,
    workers: Arc<[WorkerShared]>,
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
        if config.window_periods == 0 {
            return invalid("window_periods", config.window_periods.to_string());
        }
        if config.max_calls == 0 {
            return invalid("max_calls", config.max_calls.to_string());
        }
        let disposer = Disposer::start(1024)?;
        let disposer_handle = disposer.handle();
        let table = Arc::new(Table::new(
            config.max_calls,
            config.calls_per_worker.saturating_mul(config.workers),
        ));
        let workers: Arc<[WorkerShared]> = (0..config.workers)
            .map(|_| WorkerShared::default())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let mut scheduler = Self {
            config: config.clone(),
            epoch,
            table: table.clone(),
            workers: workers.clone(),
            threads: Vec::with_capacity(config.workers),
            stop: stop.clone(),
            next_id: AtomicU64::new(1),
            disposer_handle: disposer_handle.clone(),
            disposer: Some(disposer),
        };
        for index in 0..config.workers {
            let worker = Worker {
                index,
                config: config.clone(),
                epoch,
                table: table.clone(),
                workers: workers.clone(),
                stop: stop.clone(),
                disposer: disposer_handle.clone(),
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
        self.workers.len()
    }

    /// The settings in use.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Adds a call homed on the worker with the fewest calls. It is ticked from the next
    /// period on.
    pub fn add(&self, call: T) -> Result<CallHandle, SchedulerError> {
        let worker = self
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.calls.load(Ordering::Relaxed))
            .map_or(0, |(i, _)| i);
        self.add_to(worker, call)
    }

    /// Adds a call homed on a given worker (for tests and experiments; other workers
    /// still steal it when they are done first).
    pub fn add_to(&self, worker: usize, call: T) -> Result<CallHandle, SchedulerError> {
        if self.stop.load(Ordering::Acquire) {
            return Err(SchedulerError::Stopped);
        }
        let shared = self
            .workers
            .get(worker)
            .ok_or(SchedulerError::UnknownWorker {
                worker,
                workers: self.workers.len(),
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let removed = Arc::new(AtomicBool::new(false));
        let entry = Entry {
            call: Box::new(call),
            removed: removed.clone(),
        };
        // Counted first, so that a worker removing it at once never takes the count below
        // 0, and so that two adders racing for the last place cannot both get it.
        shared.calls.fetch_add(1, Ordering::Relaxed);
        let held: usize = self
            .workers
            .iter()
            .map(|w| w.calls.load(Ordering::Relaxed))
            .sum();
        let installed = if held > self.config.max_calls {
            Err(entry)
        } else {
            self.table.install(entry, worker)
        };
        match installed {
            Ok(()) => Ok(CallHandle { id, removed }),
            Err(entry) => {
                shared.calls.fetch_sub(1, Ordering::Relaxed);
                // The call's drop may be costly; the caller's thread is not the tick.
                drop(entry);
                Err(SchedulerError::Full {
                    max_calls: self.config.max_calls,
                })
            }
        }
    }

    /// A handle to the scheduler's disposer, for the calls' own costly drops.
    pub fn disposer(&self) -> DisposerHandle {
        self.disposer_handle.clone()
    }

    /// Current statistics (allocates; call it off the tick).
    pub fn stats(&self) -> SchedulerStats {
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(worker, s)| WorkerStats {
                worker,
                calls: s.calls.load(Ordering::Relaxed),
                ticks: s.ticks.load(Ordering::Relaxed),
                late_ticks: s.late_ticks.load(Ordering::Relaxed),
                periods: s.periods.load(Ordering::Relaxed),
                late_periods: s.late_periods.load(Ordering::Relaxed),
                skipped_periods: s.skipped_periods.load(Ordering::Relaxed),
                steals: s.steals.load(Ordering::Relaxed),
                panics: s.panics.load(Ordering::Relaxed),
                load: f64::from(s.load_permille.load(Ordering::Relaxed)) / 1000.0,
                tick_time: s.tick_time.snapshot(),
                busy_time: s.busy_time.snapshot(),
                send_offset: s.send_offset.snapshot(),
                wake_delay: s.wake_delay.snapshot(),
                priority: *s.priority.lock().unwrap_or_else(|p| p.into_inner()),
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
        for w in self.workers.iter() {
            w.reset_requested.store(true, Ordering::Release);
        }
        let start = Instant::now();
        loop {
            let pending = self
                .workers
                .iter()
                .any(|w| w.reset_requested.load(Ordering::Acquire));
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
        // No worker runs now: every call left goes to the disposer.
        let disposer = &self.disposer_handle;
        if let Some(table) = Arc::get_mut(&mut self.table) {
            table.drain(|entry| disposer.dispose(entry.call));
        }
        for w in self.workers.iter() {
            w.calls.store(0, Ordering::Relaxed);
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
            .field("workers", &self.workers.len())
            .field("period", &self.config.period)
            .finish()
    }
}

struct Worker<T: Tickable> {
    index: usize,
    config: SchedulerConfig,
    epoch: Instant,
    table: Arc<Table<T>>,
    workers: Arc<[WorkerShared]>,
    stop: Arc<AtomicBool>,
    disposer: DisposerHandle,
}

impl<T: Tickable> Worker<T> {
    fn shared(&self) -> &WorkerShared {
        &self.workers[self.index]
    }

    fn run(self) {
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
            if self.shared().reset_requested.load(Ordering::Acquire) {
                self.shared().reset();
            }
            let late_after = deadline + period;
            let started = Instant::now();
            self.shared()
                .wake_delay
                .record(started.saturating_duration_since(deadline));
            self.tick_period(u64::from(k), late_after);
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
                let window = period.as_nanos() as f64 * f64::from(window_periods);
                let load = window_busy.as_nanos() as f64 / window;
                shared
                    .load_permille
                    .store(permille(load), Ordering::Relaxed);
                window_busy = Duration::ZERO;
                window_periods = 0;
            }
            k = k.saturating_add(1);
        }
    }

    /// Ticks period `k`: this worker's own calls in table order, then, when stealing, the
    /// calls other workers have not reached yet, from the far end of the table.
    fn tick_period(&self, k: u64, late_after: Instant) {
        let now = self.config.period * u32::try_from(k).unwrap_or(u32::MAX);
        for slot in self.table.slots() {
            if slot.home.load(Ordering::Relaxed) == self.index {
                self.tick_slot(slot, k, now, late_after);
            }
        }
        if self.config.steal {
            for slot in self.table.slots().rev() {
                if slot.home.load(Ordering::Relaxed) != self.index
                    && self.tick_slot(slot, k, now, late_after)
                {
                    add(&self.shared().steals, 1);
                }
            }
        }
    }

    /// Claims `slot` for period `k` and ticks its call (or drops it if removed); whether
    /// a tick ran.
    fn tick_slot(&self, slot: &Slot<T>, k: u64, now: Duration, late_after: Instant) -> bool {
        if !slot.claim(k) {
            return false;
        }
        // SAFETY: `claim` gave this thread the slot's busy bit; released below.
        let held = unsafe { slot.held() };
        let Some(entry) = held.as_mut() else {
            // Not reachable (a slot with a state other than EMPTY holds a call); give it back.
            slot.release(k);
            return false;
        };
        if entry.removed.load(Ordering::Acquire) {
            self.vacate(slot, held);
            return false;
        }
        let shared = self.shared();
        let t0 = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| entry.call.tick(now)));
        let t1 = Instant::now();
        shared.tick_time.record(t1 - t0);
        shared
            .send_offset
            .record(t1.saturating_duration_since(late_after - self.config.period));
        add(&shared.ticks, 1);
        if t1 > late_after {
            add(&shared.late_ticks, 1);
        }
        if result.is_err() {
            add(&shared.panics, 1);
            entry.removed.store(true, Ordering::Release);
            self.vacate(slot, held);
            return true;
        }
        slot.release(k);
        true
    }

    /// Empties a slot this thread holds: its call goes to the disposer.
    fn vacate(&self, slot: &Slot<T>, held: &mut Option<Entry<T>>) {
        if let Some(gone) = held.take() {
            let home = slot.home.load(Ordering::Relaxed);
            if let Some(w) = self.workers.get(home) {
                w.calls.fetch_sub(1, Ordering::Relaxed);
            }
            self.disposer.dispose(gone.call);
        }
        slot.state.store(EMPTY, Ordering::Release);
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
        // One wake-up noted per period run.
        let periods: u64 = stats.workers.iter().map(|w| w.periods).sum();
        assert_eq!(stats.wake_delay().count(), periods);
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

    /// Sleeps through most of every period: a worker ticking it is off the CPU, as a
    /// preempted worker is.
    struct Stall {
        for_: Duration,
        on: Arc<Mutex<Vec<TickedOn>>>,
    }

    /// Records which thread ticked it for which period, and when.
    struct Light {
        on: Arc<Mutex<Vec<TickedOn>>>,
    }

    type TickedOn = (Duration, String, Instant);

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    enum Load {
        Stall(Stall),
        Light(Light),
    }

    impl Tickable for Load {
        fn tick(&mut self, now: Duration) {
            match self {
                Load::Stall(s) => {
                    s.on.lock()
                        .unwrap()
                        .push((now, thread_name(), Instant::now()));
                    std::thread::sleep(s.for_);
                }
                Load::Light(l) => {
                    l.on.lock()
                        .unwrap()
                        .push((now, thread_name(), Instant::now()))
                }
            }
        }
    }

    /// Of the light calls' ticks, the share that did not wait behind the stalled call's tick
    /// of the same period (ran on the other thread, or before it).
    fn share_not_behind_the_stall(steal: bool) -> (f64, SchedulerStats) {
        let config = SchedulerConfig {
            workers: 2,
            period: Duration::from_millis(20),
            steal,
            ..Default::default()
        };
        let scheduler = Scheduler::start(config).unwrap();
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let lights = Arc::new(Mutex::new(Vec::new()));
        // All on worker 0, the stalling call first in its order.
        scheduler
            .add_to(
                0,
                Load::Stall(Stall {
                    for_: Duration::from_millis(14),
                    on: stalls.clone(),
                }),
            )
            .unwrap();
        for _ in 0..4 {
            let light = Load::Light(Light { on: lights.clone() });
            scheduler.add_to(0, light).unwrap();
        }
        wait_until("40 periods", || stalls.lock().unwrap().len() >= 40);
        let stats = scheduler.shutdown();
        let stalls = stalls.lock().unwrap();
        let lights = lights.lock().unwrap();
        let apart = lights
            .iter()
            .filter(|(now, thread, at)| {
                stalls
                    .iter()
                    .find(|(n, _, _)| n == now)
                    .is_some_and(|(_, stalled, stalled_at)| stalled != thread || at < stalled_at)
            })
            .count();
        (apart as f64 / lights.len().max(1) as f64, stats)
    }

    #[test]
    fn a_stalled_worker_s_other_calls_are_ticked_by_the_idle_worker() {
        // Without stealing, every light call waits 14 ms behind the stall, every period.
        let (apart, stats) = share_not_behind_the_stall(false);
        assert_eq!(apart, 0.0);
        assert_eq!(stats.steals(), 0);
        assert_eq!(stats.workers[1].ticks, 0, "worker 1 has no call of its own");
        // With it, the idle worker takes them while worker 0 is stalled. (Not every period
        // on a loaded host: a worker woken 14 ms late finds them done by the other.)
        let (apart, stats) = share_not_behind_the_stall(true);
        assert!(apart > 0.5, "{apart}");
        assert!(stats.steals() > 0);
        assert_eq!(
            stats.late_ticks(),
            stats.workers.iter().map(|w| w.late_ticks).sum()
        );
    }

    #[test]
    fn every_call_is_ticked_once_per_period_by_one_thread_at_a_time() {
        // Many calls on 2 workers with stealing: no period ticked twice for a call, none
        // run concurrently (each `now` strictly increases per call).
        struct Exclusive {
            log: Arc<Mutex<Vec<Duration>>>,
            in_tick: AtomicBool,
        }
        impl Tickable for Exclusive {
            fn tick(&mut self, now: Duration) {
                // `&mut self` already says so to the compiler; this says so at run time
                // (a second thread inside would panic, counted below).
                assert!(
                    !self.in_tick.swap(true, Ordering::SeqCst),
                    "two threads in one call"
                );
                self.log.lock().unwrap().push(now);
                std::thread::yield_now();
                self.in_tick.store(false, Ordering::SeqCst);
            }
        }
        let scheduler = Scheduler::start(fast(2)).unwrap();
        let logs: Vec<_> = (0..40).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
        for (i, log) in logs.iter().enumerate() {
            let call = Exclusive {
                log: log.clone(),
                in_tick: AtomicBool::new(false),
            };
            scheduler.add_to(i % 2, call).unwrap();
        }
        wait_until("20 ticks per call", || {
            logs.iter().all(|l| l.lock().unwrap().len() >= 20)
        });
        let stats = scheduler.shutdown();
        for log in &logs {
            let log = log.lock().unwrap();
            assert!(log.windows(2).all(|w| w[0] < w[1]), "now not increasing");
        }
        assert_eq!(stats.workers.iter().map(|w| w.panics).sum::<u64>(), 0);
        assert_eq!(stats.calls(), 0);
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

        // The limit is exact (the table itself grows 64 slots at a time), and a removed
        // call's place is free again.
        let scheduler = Scheduler::start(SchedulerConfig {
            max_calls: 3,
            ..fast(2)
        })
        .unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| scheduler.add(counter().0).unwrap())
            .collect();
        let (extra, _, extra_dropped) = counter();
        assert!(matches!(
            scheduler.add(extra),
            Err(SchedulerError::Full { max_calls: 3 })
        ));
        assert!(
            extra_dropped.lock().unwrap().is_some(),
            "the refused call is dropped"
        );
        held[0].remove();
        wait_until("the removal", || scheduler.stats().calls() == 2);
        scheduler.add(counter().0).unwrap();
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
                max_calls: 0,
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
