//! How many test postbacks and plugin dry runs a partner may make: each one has the engine call
//! the partner's receiver or run its plugin on the spot, so a partner looping on them would
//! spend the engine's time and hammer a receiver. Counted per partner, whoever calls (GCRA: the
//! tries of a minute may come at once, then one more each `60 s / n`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tries left to each partner.
#[derive(Debug)]
pub struct Tries {
    /// Time between tries once a partner's burst is used up: a minute over the tries allowed.
    interval: Duration,
    /// How far ahead of now a partner's next try may be booked: the rest of the minute.
    burst: Duration,
    /// Per partner, when its tries' budget is back to full (GCRA's theoretical arrival time).
    full_at: Mutex<HashMap<String, Instant>>,
}

/// Partners remembered before those whose budget is full again are dropped.
const REMEMBERED: usize = 1024;

impl Tries {
    /// `per_minute` tries per partner per minute (at least 1).
    pub fn per_minute(per_minute: u32) -> Tries {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Tries {
            interval,
            burst: Duration::from_secs(60) - interval,
            full_at: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one of `partner`'s tries, or answers how long until it has one again.
    pub fn take(&self, partner: &str) -> Result<(), Duration> {
        self.take_at(partner, Instant::now())
    }

    fn take_at(&self, partner: &str, now: Instant) -> Result<(), Duration> {
        let mut full_at = self.full_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if full_at.len() >= REMEMBERED {
            full_at.retain(|_, at| *at > now);
        }
        let at = full_at.get(partner).copied().filter(|at| *at > now).unwrap_or(now);
        let ahead = at - now;
        if ahead > self.burst {
            return Err(ahead - self.burst);
        }
        full_at.insert(partner.to_owned(), at + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_gets_its_tries_then_waits_for_the_next() {
        let tries = Tries::per_minute(10);
        let start = Instant::now();
        for n in 0..10 {
            assert_eq!(tries.take_at("a", start), Ok(()), "try {n}");
        }
        let wait = tries.take_at("a", start).expect_err("the eleventh waits");
        assert_eq!(wait, Duration::from_secs(6));
        assert_eq!(tries.take_at("b", start), Ok(()), "another partner is not slowed");
        assert_eq!(tries.take_at("a", start + Duration::from_secs(6)), Ok(()));
        assert!(tries.take_at("a", start + Duration::from_secs(6)).is_err());
        assert_eq!(tries.take_at("a", start + Duration::from_secs(120)), Ok(()));
    }
}
