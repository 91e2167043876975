//! A cheap monotonic millisecond clock shared by the breaker and health code, so state can be
//! kept in plain atomics instead of `Instant`s behind locks.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process.
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// Milliseconds since `epoch` for an instant already read (saves a second clock read).
pub fn ms_at(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_millis() as u64
}

/// `now_ms` as of the supervisor's last sweep (at most one sweep period old); a plain load
/// for the request path, which only needs it for the header timeout.
static COARSE: AtomicU64 = AtomicU64::new(0);

pub fn coarse_ms() -> u64 {
    COARSE.load(Ordering::Relaxed)
}

/// Reads the clock and publishes it as the coarse time.
pub fn tick_coarse() -> u64 {
    let now = now_ms();
    COARSE.fetch_max(now, Ordering::Relaxed);
    now
}

/// Formats a UNIX time in milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_ms / 1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        unix_ms % 1000
    )
}

/// `log_yyyy_mm_dd_HH.log` for the hour containing `unix_secs` (UTC).
pub fn hourly_file_name(unix_secs: u64) -> String {
    let (y, mo, d, h, _, _) = civil(unix_secs);
    format!("log_{y:04}_{mo:02}_{d:02}_{h:02}.log")
}

/// Current UNIX time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Splits UNIX seconds into a UTC civil date and time (Howard Hinnant's days-to-civil).
fn civil(unix_secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
        assert_eq!(hourly_file_name(1_709_210_096), "log_2024_02_29_12.log");
    }
}
