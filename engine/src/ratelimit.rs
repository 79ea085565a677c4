//! `max_requests_per_sec`, enforced per partner endpoint with GCRA.
//!
//! Each endpoint keeps one number, its theoretical arrival time (TAT). A request reserves the
//! slot `max(now, TAT)` and pushes TAT on by one emission interval (1 s / rate), so requests
//! leave evenly spaced and no one-second window sees more than the limit. Nothing busy-waits:
//! a caller sleeps until its slot, and a slot too far ahead is not taken at all; the delivery
//! goes back to the store due at that time, so a burst queues in the store, not in memory, and
//! other endpoints are never behind it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rate limiters of every endpoint.
#[derive(Debug, Default)]
pub struct RateLimits {
    tat: Mutex<HashMap<String, Instant>>,
}

impl RateLimits {
    /// Reserves a send slot for `key` at `rate` per second: `Ok(at)` to send at `at` (at most
    /// `horizon` from `now`), or `Err(at)` when the first free slot is further away; then no slot
    /// is taken and the caller should come back at `at`.
    pub fn reserve(&self, key: &str, rate: u32, now: Instant, horizon: Duration) -> Result<Instant, Instant> {
        let interval = Duration::from_secs(1) / rate.max(1);
        let mut tat = self.tat.lock().expect("the limiter lock is never poisoned");
        let slot = match tat.get(key) {
            Some(&t) if t > now => t,
            _ => now,
        };
        if slot > now + horizon {
            return Err(slot);
        }
        tat.insert(key.to_owned(), slot + interval);
        Ok(slot)
    }

    /// Forgets endpoints idle since before `now` (their state is no different from new).
    pub fn prune(&self, now: Instant) {
        self.tat
            .lock()
            .expect("the limiter lock is never poisoned")
            .retain(|_, t| *t > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_requests_evenly_and_defers_far_slots() {
        let limits = RateLimits::default();
        let now = Instant::now();
        let horizon = Duration::from_millis(400);
        let slots: Vec<_> = (0..9).map(|_| limits.reserve("a", 20, now, horizon)).collect();
        for (i, slot) in slots.iter().enumerate() {
            assert_eq!(*slot.as_ref().unwrap(), now + Duration::from_millis(50) * i as u32);
        }
        assert_eq!(
            limits.reserve("a", 20, now, horizon),
            Err(now + Duration::from_millis(450))
        );
        assert_eq!(
            limits.reserve("b", 20, now, horizon),
            Ok(now),
            "other endpoints are not held back"
        );
        let later = now + Duration::from_secs(2);
        assert_eq!(
            limits.reserve("a", 20, later, horizon),
            Ok(later),
            "idle time is not saved up"
        );
    }
}
