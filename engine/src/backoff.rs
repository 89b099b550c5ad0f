//! How long to wait before retrying a transaction that lost a conflict.
//!
//! A commit is validated against the newest *committed* version of each key
//! but a new transaction only sees versions up to the *visible* sequence,
//! which lags while the winner waits for its fdatasync (see
//! [`crate::mvcc`]). A loser that retries at once therefore often begins on
//! the same stale snapshot and loses again: under load, a tight retry loop
//! can spin through every attempt while the winner is not yet visible.
//! Waiting a little — longer after each loss, with jitter so that losers do
//! not retry in lockstep — lets the winner publish first.
//!
//! The policy is a plain value: it hands out delays and does not sleep, so
//! blocking callers use `std::thread::sleep` and async callers their
//! runtime's timer.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The delay after the first lost attempt.
const FIRST: Duration = Duration::from_micros(50);

/// No single wait is longer than this.
const LONGEST: Duration = Duration::from_millis(20);

/// Exponential backoff with jitter between attempts of one retried
/// transaction.
#[derive(Debug, Default)]
pub struct Backoff {
    losses: u32,
    jitter: RandomState,
}

impl Backoff {
    /// A policy for a transaction that has not lost yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many attempts have lost so far.
    pub fn losses(&self) -> u32 {
        self.losses
    }

    /// Records one more lost attempt and returns how long to wait before
    /// the next: a random time between half and all of
    /// `FIRST · 2^(losses-1)`, capped at `LONGEST`.
    pub fn next_delay(&mut self) -> Duration {
        let doubled = FIRST.saturating_mul(1u32 << self.losses.min(16));
        self.losses = self.losses.saturating_add(1);
        let full = doubled.min(LONGEST);
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        let random = self.jitter.hash_one(self.losses) % nanos;
        half + Duration::from_nanos(random)
    }

    /// Records a lost attempt and sleeps the thread for the next delay.
    pub fn wait(&mut self) {
        std::thread::sleep(self.next_delay());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stay_under_the_cap() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= FIRST / 2 && first <= FIRST, "{first:?}");
        let mut last = first;
        for _ in 0..40 {
            last = b.next_delay();
            assert!(last <= LONGEST, "{last:?}");
        }
        assert!(last >= LONGEST / 2, "{last:?}");
        assert_eq!(b.losses(), 41);
    }
}
