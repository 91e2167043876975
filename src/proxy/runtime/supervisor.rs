//! Client connection deadlines without a timer per connection or per request.
//!
//! Every client connection shares a small [`ConnWatch`] with the [`Supervisor`]. One task
//! wakes every `period`, reads the clock once and walks the registered connections: idle
//! timeout (no bytes moved either way), request header timeout (a request head not complete
//! in time, counted from accept or from the end of the previous response, so it also bounds
//! HTTP/1 keep-alive idle time), the response deadline of the HTTP/1 request in flight, and
//! graceful shutdown. When something is due it sets a flag on the connection and wakes its
//! task, which acts on it (see `listener`).
//!
//! Why: a tokio timer per request (hyper's header-read timer is a boxed `Sleep` created for
//! every request, `tokio::time::timeout` registers and cancels a wheel entry for every
//! upstream exchange) and an interval polled on every wake-up of every connection cost about
//! 2,500 instructions per proxied request, more than anything the proxy itself decides. Here
//! the request path only does plain atomic loads and stores. The price is precision: a
//! deadline fires up to one period late (never early), and the period is an eighth of the
//! shortest timeout in use, between 5 and 100 ms (a sweep of a thousand connections takes
//! a few microseconds, so ten a second cost nothing measurable).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::Duration;

use crate::proxy::base::clock;
use crate::proxy::runtime::state::Shared;

/// Flag: finish the request in flight, then close (idle timeout, shutdown).
pub const GRACEFUL: u8 = 1;
/// Flag: close now (header timeout, or still idle after a graceful request).
pub const CLOSE: u8 = 2;
/// Flag: quiet between requests: drop hyper's per-connection state (two 8 KiB buffers and
/// the request slot) and wait for the next request with the bare socket.
pub const PARK: u8 = 4;

/// Quiet time between requests after which an HTTP/1 connection is parked.
const PARK_AFTER_MS: u64 = 200;

/// `deadline` value once the supervisor found it passed.
const EXPIRED: u64 = u64::MAX;

/// What a client connection shares with the supervisor.
#[derive(Default)]
pub struct ConnWatch {
    /// Bumped by every read or write that moved bytes; only the connection's task writes it.
    activity: AtomicU32,
    /// Coarse time (ms) since which the connection waits for a request head; 0 while a request
    /// is being handled.
    head_since: AtomicU64,
    /// Deadline (ms) of the upstream response of the HTTP/1 request in flight; 0 for none,
    /// `EXPIRED` once passed.
    deadline: AtomicU64,
    /// `GRACEFUL` / `CLOSE` / `PARK`, set by the supervisor.
    signal: AtomicU8,
    /// Set while the connection parks: its socket must not be shut down when hyper finishes.
    parking: AtomicBool,
    /// Whether parking applies (HTTP/1).
    parkable: AtomicBool,
    /// Parked (no hyper state) since the supervisor last looked.
    parked: AtomicBool,
    /// Bytes were read since the last response: a request head may be half in, and parking
    /// then would make hyper answer it with `Connection: close`.
    read_since_response: AtomicBool,
    /// The connection task's waker, stored on its first poll (a spawned task's waker does not
    /// change, so one copy serves for its whole life).
    waker: OnceLock<Waker>,
}

impl ConnWatch {
    /// Called from the socket wrapper when bytes moved.
    #[inline]
    pub fn touch(&self) {
        // Single writer: a load and a store, no locked read-modify-write.
        let v = self.activity.load(Ordering::Relaxed);
        self.activity.store(v.wrapping_add(1), Ordering::Relaxed);
    }

    /// Called from the socket wrapper when bytes were read.
    #[inline]
    pub fn touch_read(&self) {
        self.touch();
        self.read_since_response.store(true, Ordering::Relaxed);
    }

    /// A request head is complete: the header timeout stops.
    #[inline]
    pub fn request_started(&self) {
        self.head_since.store(0, Ordering::Relaxed);
    }

    /// The response is done: the wait for the next head starts (HTTP/1 only).
    #[inline]
    pub fn response_done(&self) {
        self.read_since_response.store(false, Ordering::Relaxed);
        self.head_since
            .store(clock::coarse_ms().max(1), Ordering::Relaxed);
    }

    /// Stores the task's waker on the first poll.
    pub fn register(&self, waker: &Waker) {
        if self.waker.get().is_none() {
            let _ = self.waker.set(waker.clone());
            // Pairs with the fence in `raise`: either the supervisor sees the waker, or this
            // task sees the flag it set before it looked for the waker.
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    /// Flags raised by the supervisor.
    #[inline]
    pub fn signals(&self) -> u8 {
        self.signal.load(Ordering::Acquire)
    }

    /// Takes a pending `PARK` request.
    pub fn take_park(&self) -> bool {
        self.signal.fetch_and(!PARK, Ordering::AcqRel) & PARK != 0
    }

    pub fn set_parkable(&self) {
        self.parkable.store(true, Ordering::Relaxed);
    }

    /// While true, the socket wrapper ignores hyper's shutdown (see `listener`).
    pub fn set_parking(&self, on: bool) {
        self.parking.store(on, Ordering::Relaxed);
    }

    pub fn parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// The connection dropped its hyper state (`true`) or took it up again.
    pub fn set_parked(&self, on: bool) {
        self.parked.store(on, Ordering::Relaxed);
        if on {
            crate::proxy::base::memory::note_freed();
        }
    }

    /// Starts the response deadline (absolute, on `clock::now_ms`).
    #[inline]
    pub fn arm(&self, deadline_ms: u64) {
        self.deadline.store(deadline_ms.max(1), Ordering::Relaxed);
    }

    /// True once the supervisor found the armed deadline passed.
    #[inline]
    pub fn expired(&self) -> bool {
        self.deadline.load(Ordering::Acquire) == EXPIRED
    }

    #[inline]
    pub fn disarm(&self) {
        self.deadline.store(0, Ordering::Relaxed);
    }

    fn raise(&self, flags: u8) {
        self.signal.fetch_or(flags, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if let Some(w) = self.waker.get() {
            w.wake_by_ref();
        }
    }
}

/// The supervisor's bookkeeping for one connection.
struct Entry {
    watch: Arc<ConnWatch>,
    seen: u32,
    quiet_since: u64,
    closing: bool,
}

/// Timeouts the supervisor applies, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub header_ms: u64,
    pub idle_ms: u64,
}

pub struct Supervisor {
    limits: Limits,
    /// Shortest route response timeout of the running config (sets the period).
    shortest_response_ms: AtomicU64,
    slots: Mutex<Slots>,
    shutting_down: AtomicBool,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

/// Removes its connection from the supervisor when dropped.
pub struct Registration {
    supervisor: Arc<Supervisor>,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut slots = self.supervisor.lock();
        if let Some(slot) = slots.entries.get_mut(self.key) {
            *slot = None;
            slots.free.push(self.key);
            // Many closed connections since the last trim: worth giving memory back.
            if slots.free.len().is_multiple_of(256) {
                crate::proxy::base::memory::note_freed();
            }
        }
    }
}

impl Supervisor {
    pub fn new(limits: Limits, shortest_response_ms: u64) -> Arc<Self> {
        clock::tick_coarse();
        Arc::new(Self {
            limits,
            shortest_response_ms: AtomicU64::new(shortest_response_ms),
            slots: Mutex::default(),
            shutting_down: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The bookkeeping stays consistent even if a holder panicked: keep using it.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching a new connection: its header timeout runs from now.
    pub fn register(self: &Arc<Self>, watch: Arc<ConnWatch>) -> Registration {
        let now = clock::coarse_ms();
        watch.head_since.store(now.max(1), Ordering::Relaxed);
        if self.shutting_down.load(Ordering::Relaxed) {
            watch.signal.fetch_or(GRACEFUL, Ordering::SeqCst);
        }
        let entry = Entry {
            seen: watch.activity.load(Ordering::Relaxed),
            watch,
            // `now` is coarse (up to a period old): start the idle clock a period later so
            // the idle timeout never fires early either.
            quiet_since: now + self.period().as_millis() as u64,
            closing: false,
        };
        let mut slots = self.lock();
        let key = match slots.free.pop() {
            Some(k) => {
                slots.entries[k] = Some(entry);
                k
            }
            None => {
                slots.entries.push(Some(entry));
                slots.entries.len() - 1
            }
        };
        drop(slots);
        Registration {
            supervisor: self.clone(),
            key,
        }
    }

    /// A reload changed the shortest route response timeout.
    pub fn set_shortest_response_ms(&self, ms: u64) {
        self.shortest_response_ms.store(ms, Ordering::Relaxed);
    }

    /// The sweep period: an eighth of the shortest timeout, 5 to 100 ms.
    pub fn period(&self) -> Duration {
        let shortest = self
            .limits
            .header_ms
            .min(self.limits.idle_ms)
            .min(self.shortest_response_ms.load(Ordering::Relaxed));
        Duration::from_millis((shortest / 8).clamp(5, 100))
    }

    /// Asks every connection to finish its request and close; later ones are asked at once.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for e in self.lock().entries.iter().flatten() {
            e.watch.raise(GRACEFUL);
        }
    }

    /// One pass over all connections at time `now` (ms on `clock::now_ms`).
    pub fn sweep(&self, now: u64, period_ms: u64) {
        let Limits { header_ms, idle_ms } = self.limits;
        let shutting_down = self.shutting_down.load(Ordering::Relaxed);
        let mut slots = self.lock();
        for e in slots.entries.iter_mut().flatten() {
            let w = &*e.watch;
            let mut flags = 0;
            let act = w.activity.load(Ordering::Relaxed);
            if act != e.seen {
                e.seen = act;
                e.quiet_since = now;
            } else if now.saturating_sub(e.quiet_since) >= idle_ms {
                // Asked politely one idle period ago and still silent: close.
                flags |= if e.closing { CLOSE } else { GRACEFUL };
                e.closing = true;
                e.quiet_since = now;
            }
            // `head_since` is coarse (up to one period old), so allow one more period: the
            // timeout never fires early.
            let head = w.head_since.load(Ordering::Relaxed);
            if head != 0 && now >= head + header_ms + period_ms {
                flags |= CLOSE;
            }
            if shutting_down {
                flags |= GRACEFUL;
            }
            if flags == 0
                && head != 0
                && !e.closing
                && w.parkable.load(Ordering::Relaxed)
                && !w.parked.load(Ordering::Relaxed)
                && !w.read_since_response.load(Ordering::Relaxed)
                && w.signal.load(Ordering::Relaxed) & PARK == 0
                && now.saturating_sub(e.quiet_since) >= PARK_AFTER_MS
            {
                flags |= PARK;
            }
            let deadline = w.deadline.load(Ordering::Relaxed);
            // Compare-and-swap so a deadline the request replaced or cleared meanwhile is
            // left alone.
            let expired = deadline != 0
                && deadline != EXPIRED
                && now >= deadline
                && w.deadline
                    .compare_exchange(deadline, EXPIRED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok();
            if flags != 0 {
                w.raise(flags);
            } else if expired {
                w.wake();
            }
        }
    }

    /// The supervisor task: sweeps every period until the process ends; follows reloads of
    /// the route timeouts.
    pub async fn run(self: Arc<Self>, shared: Arc<Shared>) {
        let mut period = self.period();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock::tick_coarse();
            self.sweep(now, period.as_millis() as u64);
            crate::proxy::base::memory::maybe_trim(now);
            self.set_shortest_response_ms(shared.snapshot.load().shortest_response_ms);
            let wanted = self.period();
            if wanted != period {
                period = wanted;
                tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
        }
    }

    pub fn connections(&self) -> usize {
        let slots = self.lock();
        slots.entries.len() - slots.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sup() -> Arc<Supervisor> {
        Supervisor::new(
            Limits {
                header_ms: 1_000,
                idle_ms: 5_000,
            },
            30_000,
        )
    }

    #[test]
    fn period_follows_the_shortest_timeout() {
        let s = sup();
        assert_eq!(s.period(), Duration::from_millis(100));
        s.set_shortest_response_ms(80);
        assert_eq!(s.period(), Duration::from_millis(10));
        s.set_shortest_response_ms(1);
        assert_eq!(s.period(), Duration::from_millis(5));
    }

    #[test]
    fn header_timeout_runs_from_accept_and_from_each_response() {
        let s = sup();
        let w = Arc::new(ConnWatch::default());
        let _reg = s.register(w.clone());
        let head = w.head_since.load(Ordering::Relaxed);
        w.touch();
        s.sweep(head + 1_000, 100);
        assert_eq!(w.signals(), 0, "not before header timeout + one period");
        w.touch();
        s.sweep(head + 1_100, 100);
        assert_eq!(w.signals() & CLOSE, CLOSE);

        let w = Arc::new(ConnWatch::default());
        let _reg = s.register(w.clone());
        w.request_started();
        w.touch();
        s.sweep(head + 50_000, 100);
        assert_eq!(
            w.signals(),
            0,
            "no header timeout while a request is handled"
        );
        w.response_done();
        let since = w.head_since.load(Ordering::Relaxed);
        assert!(since > 0);
        w.touch();
        s.sweep(since + 1_100, 100);
        assert_eq!(w.signals() & CLOSE, CLOSE);
    }

    #[test]
    fn idle_asks_politely_then_closes() {
        let s = sup();
        let w = Arc::new(ConnWatch::default());
        let _reg = s.register(w.clone());
        w.request_started();
        let t0 = 1_000_000;
        w.touch();
        s.sweep(t0, 125);
        s.sweep(t0 + 4_999, 125);
        assert_eq!(w.signals(), 0);
        s.sweep(t0 + 5_000, 125);
        assert_eq!(w.signals(), GRACEFUL);
        s.sweep(t0 + 9_999, 125);
        assert_eq!(w.signals(), GRACEFUL);
        s.sweep(t0 + 10_000, 125);
        assert_eq!(w.signals(), GRACEFUL | CLOSE);
    }

    #[test]
    fn a_new_connection_is_not_idle_before_its_time() {
        let s = sup();
        let w = Arc::new(ConnWatch::default());
        let _reg = s.register(w.clone());
        w.request_started();
        // Registered at a coarse time up to one period old: the idle clock starts a period
        // later, so a sweep exactly `idle` after the coarse time does not fire.
        s.sweep(clock::coarse_ms() + 5_000, 125);
        assert_eq!(w.signals(), 0);
    }

    #[test]
    fn deadlines_expire_once_and_never_early() {
        let s = sup();
        let w = Arc::new(ConnWatch::default());
        let reg = s.register(w.clone());
        w.request_started();
        w.arm(10_000);
        s.sweep(9_999, 100);
        assert!(!w.expired());
        s.sweep(10_000, 100);
        assert!(w.expired());
        w.disarm();
        s.sweep(20_000, 100);
        assert!(!w.expired());
        assert_eq!(s.connections(), 1);
        drop(reg);
        assert_eq!(s.connections(), 0);
    }

    #[test]
    fn quiet_http1_connections_are_parked_between_requests_only() {
        let s = sup();
        let w = Arc::new(ConnWatch::default());
        let _reg = s.register(w.clone());
        w.set_parkable();
        let t0 = 1_000_000;
        w.request_started();
        w.touch();
        s.sweep(t0, 125);
        s.sweep(t0 + 1_000, 125);
        assert!(!w.take_park(), "not while a request is handled");
        w.response_done();
        // The sweeps below run on made-up times; put the response at one of them.
        w.head_since.store(t0 + 1_000, Ordering::Relaxed);
        w.touch();
        s.sweep(t0 + 1_100, 125);
        s.sweep(t0 + 1_200, 125);
        assert!(!w.take_park(), "not before 200 ms of quiet");
        s.sweep(t0 + 1_300, 125);
        assert!(w.take_park());
        assert!(!w.take_park(), "taken once");
        w.set_parked(true);
        s.sweep(t0 + 1_400, 125);
        assert!(!w.take_park(), "not again while parked");
        w.set_parked(false);
        w.touch_read();
        s.sweep(t0 + 1_500, 125);
        s.sweep(t0 + 2_000, 125);
        assert!(!w.take_park(), "not with a request head partly read");

        let h2 = Arc::new(ConnWatch::default());
        let _reg = s.register(h2.clone());
        h2.head_since.store(t0 + 4_900, Ordering::Relaxed);
        h2.touch();
        s.sweep(t0 + 4_900, 125);
        s.sweep(t0 + 5_500, 125);
        assert_eq!(h2.signals(), 0);
        assert!(!h2.take_park(), "only HTTP/1 connections park");
    }

    #[test]
    fn shutdown_reaches_current_and_later_connections() {
        let s = sup();
        let a = Arc::new(ConnWatch::default());
        let _ra = s.register(a.clone());
        s.shutdown();
        assert_eq!(a.signals(), GRACEFUL);
        let b = Arc::new(ConnWatch::default());
        let _rb = s.register(b.clone());
        assert_eq!(b.signals(), GRACEFUL);
    }
}
