//! Merges bursts of Docker events into one rescan: wait until the engine has been quiet for a
//! short while, but never longer than a bound, so a steady trickle of events cannot postpone
//! routing forever.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

/// Receives "something changed" nudges and hands them out in batches.
#[derive(Debug)]
pub struct Debouncer {
    rx: mpsc::UnboundedReceiver<()>,
    quiet: Duration,
    max_wait: Duration,
}

impl Debouncer {
    /// `quiet`: how long no event must arrive before a batch closes; `max_wait`: the longest a
    /// batch stays open after its first event.
    pub fn new(rx: mpsc::UnboundedReceiver<()>, quiet: Duration, max_wait: Duration) -> Self {
        Debouncer {
            rx,
            quiet,
            max_wait: max_wait.max(quiet),
        }
    }

    /// Waits for the next batch and returns how many nudges it merged; `None` once every sender
    /// is gone and nothing is pending.
    pub async fn next_batch(&mut self) -> Option<usize> {
        self.rx.recv().await?;
        let mut merged = 1;
        let deadline = Instant::now() + self.max_wait;
        loop {
            let until = (Instant::now() + self.quiet).min(deadline);
            match timeout_at(until, self.rx.recv()).await {
                Ok(Some(())) => merged += 1,
                // Closed or quiet: either way, this batch is complete.
                Ok(None) | Err(_) => return Some(merged),
            }
            if Instant::now() >= deadline {
                return Some(merged);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(quiet_ms: u64, max_ms: u64) -> (mpsc::UnboundedSender<()>, Debouncer) {
        let (tx, rx) = mpsc::unbounded_channel();
        let d = Debouncer::new(
            rx,
            Duration::from_millis(quiet_ms),
            Duration::from_millis(max_ms),
        );
        (tx, d)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_becomes_one_batch_after_the_quiet_period() {
        let (tx, mut d) = setup(200, 1000);
        for _ in 0..50 {
            tx.send(()).ok();
        }
        let start = Instant::now();
        assert_eq!(d.next_batch().await, Some(50));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_millis(250),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_trickle_is_cut_at_the_max_wait() {
        let (tx, mut d) = setup(200, 1000);
        let feeder = tokio::spawn(async move {
            for _ in 0..40 {
                if tx.send(()).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let start = Instant::now();
        let first = d.next_batch().await;
        let waited = start.elapsed();
        assert!(waited <= Duration::from_millis(1000), "{waited:?}");
        assert!(first.is_some_and(|n| (9..=11).contains(&n)), "{first:?}");
        let second = d.next_batch().await;
        assert!(second.is_some_and(|n| n >= 9), "{second:?}");
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn closed_channel_ends_the_stream() {
        let (tx, mut d) = setup(200, 1000);
        tx.send(()).ok();
        drop(tx);
        assert_eq!(d.next_batch().await, Some(1));
        assert_eq!(d.next_batch().await, None);
    }
}
