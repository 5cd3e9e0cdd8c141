//! Exponential backoff with full jitter, so retries from many connections spread out instead of
//! arriving together.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `attempt` (1-based): a random duration between half and all of
/// `base * 2^(attempt-1)`, capped at `max`.
pub fn jittered(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = exp.min(max);
    let floor = ceiling / 2;
    let spread = (ceiling - floor).as_millis() as u64;
    floor + Duration::from_millis(rand::rng().random_range(0..=spread))
}

/// `interval` spread by ±10%, so periodic checks of many connections do not line up.
pub fn spread(interval: Duration) -> Duration {
    let tenth = interval.as_millis() as u64 / 10;
    let offset = rand::rng().random_range(0..=2 * tenth);
    interval - Duration::from_millis(tenth) + Duration::from_millis(offset)
}

/// Backoff of the watches after an error, reset on success. kube-runtime backs off the merged
/// stream of all a controller's watches, so when the API server comes back and each watch meets
/// one `410 Expired` and relists, those one-off errors would stack growing delays. So the first
/// error of each watch retries after 100-200 ms; after that the delay doubles from 500 ms to a
/// 5 s cap (kube-runtime's default: 800 ms to 30 s), jittered.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    watches: u32,
    attempt: u32,
}

impl WatchBackoff {
    /// A backoff for a controller that merges `watches` watches.
    pub fn new(watches: u32) -> WatchBackoff {
        WatchBackoff {
            watches,
            attempt: 0,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.attempt = self.attempt.saturating_add(1);
        Some(match self.attempt.checked_sub(self.watches) {
            None | Some(0) => jittered(1, Duration::from_millis(200), Duration::from_secs(5)),
            Some(n) => jittered(n, Duration::from_millis(500), Duration::from_secs(5)),
        })
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for _ in 0..100 {
            let d1 = jittered(1, base, max);
            assert!(d1 >= Duration::from_millis(50) && d1 <= base, "{d1:?}");
            let d4 = jittered(4, base, max);
            assert!(
                d4 >= Duration::from_millis(400) && d4 <= Duration::from_millis(800),
                "{d4:?}"
            );
            let d30 = jittered(30, base, max);
            assert!(d30 >= max / 2 && d30 <= max, "{d30:?}");
        }
        let samples: std::collections::BTreeSet<_> =
            (0..50).map(|_| jittered(5, base, max)).collect();
        assert!(samples.len() > 10, "jitter spreads retries");
    }

    #[test]
    fn watch_backoff_is_capped_at_five_seconds_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::new(4);
        for _ in 0..4 {
            let quick = b.next().unwrap();
            assert!(
                quick <= Duration::from_millis(200),
                "one quick retry per watch: {quick:?}"
            );
        }
        let fifth = b.next().unwrap();
        assert!(
            fifth >= Duration::from_millis(250) && fifth <= Duration::from_millis(500),
            "{fifth:?}"
        );
        let late = b.by_ref().take(20).last().unwrap();
        assert!(
            late <= Duration::from_secs(5) && late >= Duration::from_millis(2500),
            "{late:?}"
        );
        b.reset();
        assert!(b.next().unwrap() <= Duration::from_millis(200));
    }

    #[test]
    fn spread_stays_within_ten_percent() {
        let i = Duration::from_secs(300);
        for _ in 0..100 {
            let d = spread(i);
            assert!(
                d >= Duration::from_secs(270) && d <= Duration::from_secs(330),
                "{d:?}"
            );
        }
    }
}
