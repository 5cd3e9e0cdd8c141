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
