//! Bounded lock-free hand-off queues between the network side, the media
//! worker and the bot, where a full queue drops the **oldest** item.
//!
//! Real-time audio wants the newest data: when a consumer falls behind, a
//! packet or frame from 200 ms ago is worth less than the one just produced,
//! and a producer on the 20 ms tick must never wait for room. So
//! [`Producer::push`] never fails for lack of space: it evicts the oldest queued
//! item, hands it back to the caller, and counts it.
//!
//! ```
//! use appmedia_media::queue::{self, Push};
//!
//! let (tx, rx) = queue::bounded::<u32>(2);
//! assert_eq!(tx.push(1), Push::Queued);
//! assert_eq!(tx.push(2), Push::Queued);
//! assert_eq!(tx.push(3), Push::QueuedEvicting(1)); // full: the oldest goes
//! assert_eq!(rx.pop(), Some(2));
//! assert_eq!(rx.pop(), Some(3));
//! assert_eq!(rx.pop(), None);
//! assert_eq!(rx.stats().evicted, 1);
//! ```
//!
//! # Real-time guarantees
//!
//! Built on a `crossbeam-channel` bounded (array) channel, used only through
//! its non-blocking `try_send` / `try_recv`.
//!
//! * All memory is allocated in [`bounded`]. [`Producer::push`],
//!   [`Consumer::pop`], the length queries and [`Producer::stats`] /
//!   [`Consumer::stats`] never allocate, never make a system call and never
//!   block. They are lock-free (compare-and-swap with a short bounded spin
//!   under contention), not wait-free.
//! * crossbeam's internal waker takes a mutex only to wake a thread blocked in
//!   a blocking `recv`/`send`; this API offers no blocking call, so that lock
//!   is never taken.
//! * An evicted item is returned to the pusher rather than dropped inside the
//!   queue, so the caller decides where its `Drop` runs (recycle the buffer,
//!   send it to a disposer thread) — dropping e.g. a `Bytes` frees memory.
//!   (Exception: when several producers race on a full queue, one push may
//!   evict two items; the earlier one is dropped inside `push`.)
//! * With several producers racing on a full queue, a push retries eviction a
//!   bounded number of times; if it still finds no room it gives the *new*
//!   item back as [`Push::Rejected`] (counted) rather than spin on.
//! * Items come out in FIFO order per producer.
//!
//! Not real-time safe: [`bounded`], cloning a [`Producer`] and dropping the
//! handles (they touch reference counts and may free the buffer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

/// How many evict-and-retry rounds a push makes before giving up on a queue
/// that other producers keep refilling.
const MAX_PUSH_ATTEMPTS: usize = 4;

/// Outcome of [`Producer::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Push<T> {
    /// The item was queued; nothing was dropped.
    Queued,
    /// The queue was full: the oldest item was evicted (returned here, counted
    /// in [`QueueStats::evicted`]) and the new item queued.
    QueuedEvicting(T),
    /// Other producers refilled the queue faster than this push could evict;
    /// the new item comes back unqueued (counted in [`QueueStats::rejected`]).
    Rejected(T),
    /// The consumer is gone; the item comes back unqueued.
    Disconnected(T),
}

/// Counters of one queue, shared by both ends (monotonic, `Relaxed` snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items accepted into the queue.
    pub pushed: u64,
    /// Items taken out by the consumer.
    pub popped: u64,
    /// Oldest items evicted to make room for newer ones.
    pub evicted: u64,
    /// New items refused after [`MAX_PUSH_ATTEMPTS`] rounds of contention.
    pub rejected: u64,
}

#[derive(Debug, Default)]
struct Counters {
    pushed: AtomicU64,
    popped: AtomicU64,
    evicted: AtomicU64,
    rejected: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> QueueStats {
        QueueStats {
            pushed: self.pushed.load(Ordering::Relaxed),
            popped: self.popped.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// The sending end. `Clone` for several producers.
#[derive(Debug)]
pub struct Producer<T> {
    tx: Sender<T>,
    /// Used only to evict the oldest item when full.
    evictor: Receiver<T>,
    counters: Arc<Counters>,
    /// Counts live [`Consumer`]s: the evictor keeps the channel connected, so
    /// the channel itself cannot tell a producer that the consumer left.
    consumer_alive: Weak<()>,
    /// Held by every producer; the consumer counts them to know when input ended.
    producers_alive: Arc<()>,
}

/// The receiving end (one per queue).
#[derive(Debug)]
pub struct Consumer<T> {
    rx: Receiver<T>,
    counters: Arc<Counters>,
    _alive: Arc<()>,
    producers_alive: Weak<()>,
}

/// A queue holding at most `capacity` items (at least 1: a zero-capacity
/// rendezvous channel would make every push wait for a pop).
pub fn bounded<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let counters = Arc::new(Counters::default());
    let alive = Arc::new(());
    let producers_alive = Arc::new(());
    (
        Producer {
            tx,
            evictor: rx.clone(),
            counters: counters.clone(),
            consumer_alive: Arc::downgrade(&alive),
            producers_alive: producers_alive.clone(),
        },
        Consumer {
            rx,
            counters,
            _alive: alive,
            producers_alive: Arc::downgrade(&producers_alive),
        },
    )
}

impl<T> Producer<T> {
    /// Queues `item`, evicting the oldest item if the queue is full. Never blocks.
    pub fn push(&self, item: T) -> Push<T> {
        if !self.has_consumer() {
            return Push::Disconnected(item);
        }
        let mut item = item;
        let mut evicted = None;
        for _ in 0..MAX_PUSH_ATTEMPTS {
            match self.tx.try_send(item) {
                Ok(()) => {
                    self.counters.pushed.fetch_add(1, Ordering::Relaxed);
                    return match evicted {
                        Some(old) => Push::QueuedEvicting(old),
                        None => Push::Queued,
                    };
                }
                Err(TrySendError::Disconnected(back)) => return Push::Disconnected(back),
                Err(TrySendError::Full(back)) => {
                    item = back;
                    // The consumer may have emptied the queue in between; then
                    // there is nothing to evict and the next try_send succeeds.
                    if let Ok(old) = self.evictor.try_recv() {
                        self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                        if let Some(earlier) = evicted.replace(old) {
                            // Only under multi-producer contention: the caller
                            // gets the latest eviction back, this one drops here.
                            drop(earlier);
                        }
                    }
                }
            }
        }
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        Push::Rejected(item)
    }

    /// Whether the [`Consumer`] still exists.
    pub fn has_consumer(&self) -> bool {
        self.consumer_alive.strong_count() > 0
    }

    /// Items currently queued.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(1)
    }

    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.counters.snapshot()
    }
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            evictor: self.evictor.clone(),
            counters: self.counters.clone(),
            consumer_alive: self.consumer_alive.clone(),
            producers_alive: self.producers_alive.clone(),
        }
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest item, if any. Never blocks.
    pub fn pop(&self) -> Option<T> {
        match self.rx.try_recv() {
            Ok(item) => {
                self.counters.popped.fetch_add(1, Ordering::Relaxed);
                Some(item)
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }

    /// True once every [`Producer`] is dropped and the queue is drained.
    pub fn is_finished(&self) -> bool {
        // Producers first: once none is left nothing can be queued after the
        // emptiness check.
        self.producers_alive.strong_count() == 0 && self.rx.is_empty()
    }

    /// Items currently queued.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.rx.capacity().unwrap_or(1)
    }

    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_until_full_then_drops_oldest() {
        let (tx, rx) = bounded(3);
        for i in 0..3 {
            assert_eq!(tx.push(i), Push::Queued);
        }
        assert_eq!(tx.len(), 3);
        assert_eq!(tx.push(3), Push::QueuedEvicting(0));
        assert_eq!(tx.push(4), Push::QueuedEvicting(1));
        let got: Vec<_> = std::iter::from_fn(|| rx.pop()).collect();
        assert_eq!(got, vec![2, 3, 4]);
        assert_eq!(
            rx.stats(),
            QueueStats {
                pushed: 5,
                popped: 3,
                evicted: 2,
                rejected: 0
            }
        );
        assert!(rx.is_empty());
        assert_eq!(rx.capacity(), 3);
    }

    #[test]
    fn zero_capacity_means_one() {
        let (tx, rx) = bounded(0);
        assert_eq!(tx.capacity(), 1);
        assert_eq!(tx.push('a'), Push::Queued);
        assert_eq!(tx.push('b'), Push::QueuedEvicting('a'));
        assert_eq!(rx.pop(), Some('b'));
    }

    #[test]
    fn disconnection_is_reported_both_ways() {
        let (tx, rx) = bounded(2);
        assert!(tx.has_consumer());
        tx.push(1);
        assert!(!rx.is_finished());
        drop(tx);
        assert!(!rx.is_finished(), "one item still queued");
        assert_eq!(rx.pop(), Some(1));
        assert!(rx.is_finished());

        let (tx, rx) = bounded(2);
        let tx2 = tx.clone();
        drop(rx);
        assert!(!tx.has_consumer());
        assert_eq!(tx2.push(7), Push::Disconnected(7));
    }

    /// Two threads, a fixed number of items, a queue much smaller than the
    /// burst: every item is either popped exactly once, in order, or evicted.
    #[test]
    fn two_thread_stress_keeps_order_and_accounts_for_every_item() {
        const ITEMS: u64 = 50_000;
        let (tx, rx) = bounded::<u64>(16);
        let producer = std::thread::spawn(move || {
            let mut evicted = Vec::new();
            for i in 0..ITEMS {
                match tx.push(i) {
                    Push::Queued => {}
                    Push::QueuedEvicting(old) => evicted.push(old),
                    other => panic!("unexpected {other:?}"),
                }
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
            }
            evicted
        });
        let mut popped = Vec::new();
        // Bounded: the producer ends after ITEMS pushes, then the queue drains.
        while !rx.is_finished() {
            match rx.pop() {
                Some(v) => popped.push(v),
                None => std::thread::yield_now(),
            }
        }
        let evicted = producer.join().unwrap();
        assert!(popped.windows(2).all(|w| w[0] < w[1]), "order broken");
        assert!(evicted.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<u64> = popped.iter().chain(evicted.iter()).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..ITEMS).collect::<Vec<_>>(), "lost or duplicated");
        let stats = rx.stats();
        assert_eq!(stats.pushed, ITEMS);
        assert_eq!(stats.popped, popped.len() as u64);
        assert_eq!(stats.evicted, evicted.len() as u64);
        assert_eq!(*popped.last().unwrap(), ITEMS - 1, "newest item survives");
    }

    #[test]
    fn many_producers_never_lose_track() {
        const PER: u64 = 5_000;
        let (tx, rx) = bounded::<u64>(4);
        let handles: Vec<_> = (0..3)
            .map(|p| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let (mut evicted, mut rejected) = (0u64, 0u64);
                    for i in 0..PER {
                        match tx.push(p * PER + i) {
                            Push::Queued => {}
                            Push::QueuedEvicting(_) => evicted += 1,
                            Push::Rejected(_) => rejected += 1,
                            Push::Disconnected(_) => panic!("consumer alive"),
                        }
                    }
                    (evicted, rejected)
                })
            })
            .collect();
        drop(tx);
        let mut popped = 0u64;
        while !rx.is_finished() {
            match rx.pop() {
                Some(_) => popped += 1,
                None => std::thread::yield_now(),
            }
        }
        let stats = rx.stats();
        let rejected: u64 = handles.into_iter().map(|h| h.join().unwrap().1).sum();
        assert_eq!(stats.rejected, rejected);
        assert_eq!(stats.pushed + stats.rejected, 3 * PER);
        // Under contention one push may evict more than one item (only the
        // last comes back), so evictions are counted, not all returned.
        assert_eq!(stats.pushed, popped + stats.evicted);
    }
}
