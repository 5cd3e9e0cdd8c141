//! The deletion budget (`--max-deletions` per `--deletion-window`): how many parameters this
//! process deleted lately, and which deleted connections wait for room. Held by the context,
//! spent by [`super::cleanup`].

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The deletions of parameters this process made lately, against its budget.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    window: Duration,
    made: Mutex<VecDeque<Instant>>,
    held: Mutex<HashSet<String>>,
}

impl Budget {
    /// At most `max` deletions in any `window` (0: no limit).
    pub fn new(max: usize, window: Duration) -> Budget {
        Budget {
            max,
            window,
            made: Mutex::default(),
            held: Mutex::default(),
        }
    }

    /// Takes one deletion for `uid` at `now`, or says no (and counts `uid` as held).
    pub fn take(&self, uid: &str, now: Instant) -> bool {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        while made
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            made.pop_front();
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if self.max == 0 || made.len() < self.max {
            made.push_back(now);
            held.remove(uid);
            true
        } else {
            held.insert(uid.to_owned());
            false
        }
    }

    /// Forgets that `uid` was held (it went another way).
    pub fn release(&self, uid: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// How many connections wait for room in the budget.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_max_deletions_per_window_and_counts_who_waits() {
        let budget = Budget::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(budget.take("a", t0));
        assert!(budget.take("b", t0 + Duration::from_secs(1)));
        assert!(
            !budget.take("c", t0 + Duration::from_secs(2)),
            "a burst is held"
        );
        assert!(!budget.take("d", t0 + Duration::from_secs(3)));
        assert_eq!(budget.held(), 2);
        assert!(
            !budget.take("c", t0 + Duration::from_secs(59)),
            "still within the window"
        );
        assert!(budget.take("c", t0 + Duration::from_secs(60)), "room again");
        assert_eq!(budget.held(), 1);
        budget.release("d");
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_budget_of_zero_is_no_limit() {
        let budget = Budget::new(0, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!((0..1000).all(|i| budget.take(&i.to_string(), t0)));
        assert_eq!(budget.held(), 0);
    }
}
