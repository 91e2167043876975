//! Giving memory back after bursts.
//!
//! glibc's malloc keeps freed chunks in the middle of its heap resident; only the top of the
//! heap is trimmed. After a burst (hundreds of client connections, or upstream connections
//! beyond the idle pool) the proxy's RSS would stay at the burst's peak, although the memory
//! is free. The supervisor calls [`maybe_trim`] after each sweep: when something large was
//! freed since the last trim, it asks malloc to return free pages.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A trim walks the heap under the allocator's lock (well under a millisecond for the
/// proxy's heap), so at most four a second, and only after something large was freed.
const MIN_INTERVAL_MS: u64 = 250;

static FREED: AtomicBool = AtomicBool::new(false);
static LAST_TRIM_MS: AtomicU64 = AtomicU64::new(0);

/// Something large was released (a connection and its buffers).
pub fn note_freed() {
    FREED.store(true, Ordering::Relaxed);
}

/// Trims the heap if memory was noted free and the last trim is `MIN_INTERVAL_MS` old.
pub fn maybe_trim(now_ms: u64) {
    if !FREED.load(Ordering::Relaxed)
        || now_ms.saturating_sub(LAST_TRIM_MS.load(Ordering::Relaxed)) < MIN_INTERVAL_MS
    {
        return;
    }
    FREED.store(false, Ordering::Relaxed);
    LAST_TRIM_MS.store(now_ms, Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel; it takes the allocator's
    // own locks and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
