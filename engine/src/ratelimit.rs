//! `max_requests_per_sec`, enforced per partner endpoint with GCRA.
//!
//! Each endpoint keeps one number, its theoretical arrival time (TAT). A request reserves the
//! slot `max(now, TAT)` and pushes TAT on by one emission interval (1 s / rate), so requests
//! leave evenly spaced and no one-second window sees more than the limit. Nothing busy-waits:
//! a caller sleeps until its slot, and a slot too far ahead is not taken at all; the delivery
//! goes back to the store due at that time, so a burst queues in the store, not in memory, and
//! other endpoints are never behind it. A second check counts what actually left in the last
//! second, so slots reached late together (a stalled machine) cannot bunch into a burst.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rate limiters of every endpoint.
#[derive(Debug, Default)]
pub struct RateLimits {
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

#[derive(Debug)]
struct Endpoint {
    /// GCRA's theoretical arrival time: the next free slot.
    tat: Instant,
    /// When the last `rate` postbacks actually left, oldest first.
    sent: VecDeque<Instant>,
}

impl RateLimits {
    fn with<T>(&self, key: &str, now: Instant, f: impl FnOnce(&mut Endpoint) -> T) -> T {
        let mut endpoints = self.endpoints.lock().expect("the limiter lock is never poisoned");
        let endpoint = endpoints.entry(key.to_owned()).or_insert_with(|| Endpoint {
            tat: now,
            sent: VecDeque::new(),
        });
        f(endpoint)
    }

    /// Reserves a send slot for `key` at `rate` per second: `Ok(at)` to send at `at` (at most
    /// `horizon` from `now`), or `Err(at)` when the first free slot is further away; then no slot
    /// is taken and the caller should come back at `at`.
    pub fn reserve(&self, key: &str, rate: u32, now: Instant, horizon: Duration) -> Result<Instant, Instant> {
        let interval = Duration::from_secs(1) / rate.max(1);
        self.with(key, now, |endpoint| {
            let slot = endpoint.tat.max(now);
            if slot > now + horizon {
                return Err(slot);
            }
            endpoint.tat = slot + interval;
            Ok(slot)
        })
    }

    /// Admits a postback whose slot has come: `None` to send it now (and it is counted), or
    /// `Some(until)` when `rate` postbacks already left in the last second, which happens when
    /// several slots were reached late together (a busy machine); the caller waits and asks again.
    /// So however late slots are reached, no second sees more than `rate` postbacks leave.
    pub fn admit(&self, key: &str, rate: u32, now: Instant) -> Option<Instant> {
        let rate = rate.max(1) as usize;
        self.with(key, now, |endpoint| {
            while endpoint.sent.len() >= rate {
                let oldest = *endpoint.sent.front().expect("not empty");
                if oldest + Duration::from_secs(1) > now {
                    return Some(oldest + Duration::from_secs(1));
                }
                endpoint.sent.pop_front();
            }
            endpoint.sent.push_back(now);
            None
        })
    }

    /// Forgets endpoints idle for a second or more (their state is no different from new).
    pub fn prune(&self, now: Instant) {
        self.endpoints
            .lock()
            .expect("the limiter lock is never poisoned")
            .retain(|_, e| e.tat > now || e.sent.back().is_some_and(|t| *t + Duration::from_secs(1) > now));
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

    #[test]
    fn late_slots_cannot_burst() {
        let limits = RateLimits::default();
        let now = Instant::now();
        for i in 0..3 {
            assert_eq!(limits.admit("a", 3, now + Duration::from_millis(i)), None);
        }
        let fourth = now + Duration::from_millis(10);
        assert_eq!(limits.admit("a", 3, fourth), Some(now + Duration::from_secs(1)));
        assert_eq!(
            limits.admit("a", 3, now + Duration::from_secs(1)),
            None,
            "a second after the first"
        );
        assert_eq!(limits.admit("b", 3, fourth), None, "other endpoints are not held back");
    }
}
