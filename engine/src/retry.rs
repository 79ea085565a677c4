//! When to try a failed postback again.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

/// Delays before each attempt: the first entry before the first attempt (usually zero), the
/// second before the first retry, and so on. When the schedule runs out the delivery fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Vec<Duration>);

/// The shortest and longest delay a receiver's `Retry-After` can ask for.
pub const RETRY_AFTER_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(24 * 3600));

impl Default for Schedule {
    /// Immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h: about three days.
    fn default() -> Self {
        "0s,5s,5m,30m,2h,5h,10h,14h,20h,24h"
            .parse()
            .expect("the default schedule parses")
    }
}

impl Schedule {
    /// The delay before the next attempt, after `attempts` attempts failed; `None` when the
    /// schedule is exhausted. `retry_after` (the receiver's wish) replaces the scheduled delay,
    /// within [`RETRY_AFTER_BOUNDS`]. Scheduled delays get ±20% jitter so that retries of many
    /// postbacks that failed together do not come back together.
    pub fn next_delay(&self, attempts: usize, retry_after: Option<Duration>) -> Option<Duration> {
        let scheduled = *self.0.get(attempts)?;
        if let Some(wish) = retry_after {
            return Some(wish.clamp(RETRY_AFTER_BOUNDS.0, RETRY_AFTER_BOUNDS.1));
        }
        Some(scheduled.mul_f64(rand::rng().random_range(0.8..1.2)))
    }

    /// How many attempts the schedule allows.
    pub fn attempts(&self) -> usize {
        self.0.len()
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// A comma-separated list of durations such as `0s,5s,5m,2h,1d`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let delays = text
            .split(',')
            .map(|part| parse_duration(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err("the retry schedule needs at least one entry".into());
        }
        Ok(Schedule(delays))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|d| format!("{}s", d.as_secs())).collect();
        f.write_str(&parts.join(","))
    }
}

/// `90s`, `5m`, `2h`, `1d`, or `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write a number and a unit, such as 30s, 5m, 2h or 1d"))?;
    let unit = match unit {
        "ms" => Duration::from_millis(1),
        "s" | "" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86400),
        _ => return Err(format!("{text:?} has an unknown unit; use ms, s, m, h or d")),
    };
    Ok(unit * n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_spans_about_three_days() {
        let schedule = Schedule::default();
        assert_eq!(schedule.attempts(), 10);
        let total: u64 = schedule.0.iter().map(Duration::as_secs).sum();
        assert_eq!(total, 5 + 300 + 1800 + 3600 * (2 + 5 + 10 + 14 + 20 + 24));
        assert_eq!(schedule.next_delay(0, None), Some(Duration::ZERO));
        let second = schedule.next_delay(1, None).unwrap();
        assert!((4000..=6000).contains(&second.as_millis()), "{second:?}");
        assert_eq!(schedule.next_delay(10, None), None);
    }

    #[test]
    fn retry_after_is_bounded() {
        let schedule: Schedule = "0s,1h".parse().unwrap();
        assert_eq!(
            schedule.next_delay(1, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            schedule.next_delay(1, Some(Duration::ZERO)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            schedule.next_delay(1, Some(Duration::from_secs(864000))),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(schedule.next_delay(2, Some(Duration::from_secs(30))), None);
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("2 weeks").is_err());
        assert!("".parse::<Schedule>().is_err());
    }
}
