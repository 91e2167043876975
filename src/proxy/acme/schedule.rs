//! When to renew and when to retry, as pure functions of the certificate, the CA's answers
//! and the clock: renewal when a third of the lifetime is left (Let's Encrypt's advice), or at
//! a random point of the CA's ARI window (RFC 9773); after a failure an exponential backoff,
//! never earlier than the CA's `Retry-After`.

use std::time::{Duration, SystemTime};

/// First retry delay after a failed order; doubled per consecutive failure.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Least wait after a `rateLimited` answer that carried no `Retry-After`.
pub(crate) const RATE_LIMITED_MIN: Duration = Duration::from_secs(15 * 60);

/// Renewal time without ARI: when a third of the lifetime is left.
pub(crate) fn third_left(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_after.checked_sub(lifetime / 3).unwrap_or(not_before)
}

/// A point of the ARI window `[start, end)` chosen by `fraction` (0..1, random per
/// certificate so a fleet does not renew at once); a window already open means now.
pub(crate) fn in_window(
    start: SystemTime,
    end: SystemTime,
    now: SystemTime,
    fraction: f64,
) -> SystemTime {
    if start <= now {
        return now;
    }
    let span = end.duration_since(start).unwrap_or_default();
    start + span.mul_f64(fraction.clamp(0.0, 1.0))
}

/// Delay before retry number `failures` (1 = after the first failure).
pub(crate) fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

/// When to try again after a failure: the backoff, pushed back to the CA's `Retry-After`,
/// and for a rate limit without one, to at least [`RATE_LIMITED_MIN`].
pub(crate) fn retry_at(
    now: SystemTime,
    failures: u32,
    retry_after: Option<SystemTime>,
    rate_limited: bool,
) -> SystemTime {
    let mut at = now + backoff(failures);
    if let Some(ra) = retry_after {
        at = at.max(ra);
    } else if rate_limited {
        at = at.max(now + RATE_LIMITED_MIN);
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_when_a_third_is_left() {
        // 90 days: renew at day 60.
        assert_eq!(third_left(t(0), t(90 * 86_400)), t(60 * 86_400));
        assert_eq!(third_left(t(100), t(130)), t(120));
        assert_eq!(third_left(t(100), t(50)), t(50), "nonsense validity: now");
    }

    #[test]
    fn ari_window_point() {
        let now = t(1_000);
        assert_eq!(
            in_window(t(500), t(2_000), now, 0.5),
            now,
            "open window: now"
        );
        assert_eq!(in_window(t(2_000), t(3_000), now, 0.25), t(2_250));
        assert_eq!(in_window(t(2_000), t(3_000), now, 7.0), t(3_000));
    }

    #[test]
    fn backoff_doubles_up_to_an_hour_and_yields_to_the_ca() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(40), BACKOFF_MAX);
        let now = t(1_000);
        assert_eq!(retry_at(now, 1, None, false), t(1_005));
        assert_eq!(retry_at(now, 1, Some(t(1_600)), true), t(1_600));
        assert_eq!(retry_at(now, 3, Some(t(1_001)), false), t(1_020));
        assert_eq!(retry_at(now, 1, None, true), t(1_900));
    }
}
