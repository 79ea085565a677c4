//! What a classifier decides.

use std::fmt;

/// What a receiver's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Success,
    /// Failed this time; try again.
    Retry {
        /// Wait at least this long; the partner's retry schedule decides when `None`.
        after_secs: Option<u32>,
        /// Why, shown with the attempt.
        reason: String,
    },
    /// Failed for good, with the reason.
    Fail(String),
}

impl Verdict {
    /// Delivered.
    pub fn success() -> Verdict {
        Verdict::Success
    }

    /// Try again when the retry schedule says.
    pub fn retry(reason: impl Into<String>) -> Verdict {
        Verdict::Retry {
            after_secs: None,
            reason: reason.into(),
        }
    }

    /// Try again, not before `secs` seconds.
    pub fn retry_after(secs: u32, reason: impl Into<String>) -> Verdict {
        Verdict::Retry {
            after_secs: Some(secs),
            reason: reason.into(),
        }
    }

    /// Give up, with the reason.
    pub fn fail(reason: impl Into<String>) -> Verdict {
        Verdict::Fail(reason.into())
    }

    /// Whether this is [`Verdict::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Verdict::Success)
    }
}

/// `success`, `retry: reason`, `retry after 30 s: reason` or `fail: reason`.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Success => f.write_str("success"),
            Verdict::Retry {
                after_secs: None,
                reason,
            } => write!(f, "retry: {reason}"),
            Verdict::Retry {
                after_secs: Some(secs),
                reason,
            } => write!(f, "retry after {secs} s: {reason}"),
            Verdict::Fail(reason) => write!(f, "fail: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_display() {
        assert_eq!(Verdict::success(), Verdict::Success);
        assert!(Verdict::success().is_success());
        assert_eq!(
            Verdict::retry("busy"),
            Verdict::Retry {
                after_secs: None,
                reason: "busy".into()
            }
        );
        assert_eq!(Verdict::retry_after(30, "busy").to_string(), "retry after 30 s: busy");
        assert_eq!(Verdict::retry("busy").to_string(), "retry: busy");
        assert_eq!(Verdict::fail("bad order"), Verdict::Fail("bad order".into()));
        assert_eq!(Verdict::fail("bad order").to_string(), "fail: bad order");
        assert!(!Verdict::fail("x").is_success());
    }
}
