//! A counting global allocator, to prove that real-time code does not allocate.
//!
//! The media core promises that a steady-state tick allocates nothing; this module is how the
//! tests (and a bot developer checking their own frame handler) hold it to that. Counts are kept
//! per thread, so tests running in parallel do not disturb each other. Install it in a test
//! binary, then measure a closure:
//!
//! ```
//! use appmedia_media::alloc_count::{CountingAllocator, allocations_during};
//!
//! #[global_allocator]
//! static GLOBAL: CountingAllocator = CountingAllocator;
//!
//! let mut scratch = Vec::with_capacity(16);
//! let n = allocations_during(|| scratch.extend_from_slice(&[1u8, 2, 3]));
//! assert_eq!(n, 0, "pushing within capacity does not allocate");
//! assert!(allocations_during(|| drop(std::hint::black_box(vec![0u8; 64]))) > 0);
//! ```
//!
//! Without `#[global_allocator]` the counters stay at zero, so a test should also check that the
//! counter sees a known allocation (a guard that cannot fail proves nothing).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Wraps the system allocator; counts this thread's allocations and live heap bytes.
pub struct CountingAllocator;

thread_local! {
    // Const-initialised and without Drop: touching them never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn record(allocations: u64, bytes: isize) {
    // try_with: the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + allocations));
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + bytes));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(1, layout.size() as isize);
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(1, layout.size() as isize);
        // SAFETY: the caller upholds `alloc_zeroed`'s contract, forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(1, new_size as isize - layout.size() as isize);
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(0, -(layout.size() as isize));
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations (including reallocations) this thread made while `f` ran.
pub fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Allocations (including reallocations) this thread has made so far: for code that cannot
/// wrap the part to measure in a closure (a call ticked by the scheduler's worker compares it
/// from one tick to the next).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Heap bytes this thread has allocated and not yet freed (may go negative when a thread frees
/// what another allocated).
pub fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}
