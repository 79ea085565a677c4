//! The default response classifier: what a receiver's answer means for a postback.
//!
//! A pure function of the response and the settings' `success_response` / `error_response`, so
//! the pipeline, the test-postback endpoint and the tests all agree.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::send::SendError;

/// What happened when a postback was sent.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The receiver answered.
    Response(Response<'a>),
    /// No answer: connect error, reset, timeout, TLS failure...
    Transport(&'a SendError),
}

/// A receiver's answer, as far as classification needs it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers, in the order received.
    pub headers: &'a [(String, String)],
    /// The response body, possibly cut at the capture limit.
    pub body: &'a [u8],
}

impl Response<'_> {
    /// The first header named `name` (ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The classifier's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Delivered.
    Success,
    /// This attempt failed; try again on the schedule, or after `after` when the receiver asked.
    Retry {
        /// The receiver's `Retry-After`, when it gave one.
        #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
        after: Option<Duration>,
        /// Why, in words a partner understands.
        reason: String,
    },
    /// Give up on this postback for good.
    Fail {
        /// Why.
        reason: String,
    },
    /// The endpoint is gone (410): give up and disable the endpoint until it is re-enabled.
    Disable {
        /// Why.
        reason: String,
    },
}

mod opt_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

/// Classifies `outcome` by the default rules.
///
/// - 2xx is success, unless `success_response` is set and missing from the body, or
///   `error_response` is set and present in it;
/// - 410 Gone disables the endpoint;
/// - 3xx fails the attempt (redirects are never followed) and is retried, so that a partner who
///   fixes the URL gets the postback;
/// - every other status and every transport error is retried; `Retry-After` on 429 and 503 is
///   returned as a hint.
///
/// `now` turns an HTTP-date `Retry-After` into a delay.
pub fn classify(
    outcome: Outcome<'_>,
    success_response: Option<&str>,
    error_response: Option<&str>,
    now: DateTime<Utc>,
) -> Verdict {
    let response = match outcome {
        Outcome::Transport(error) => {
            return Verdict::Retry {
                after: None,
                reason: error.to_string(),
            };
        }
        Outcome::Response(response) => response,
    };
    let status = response.status;
    let body = String::from_utf8_lossy(response.body);
    let retry = |reason: String| Verdict::Retry { after: None, reason };
    match status {
        200..=299 => {
            if let Some(error) = error_response.filter(|e| body.contains(e)) {
                retry(format!(
                    "status {status}, but the body holds the error response {error:?}"
                ))
            } else if let Some(success) = success_response.filter(|s| !body.contains(s)) {
                retry(format!(
                    "status {status}, but the body lacks the success response {success:?}"
                ))
            } else {
                Verdict::Success
            }
        }
        410 => Verdict::Disable {
            reason: "the receiver answered 410 Gone; the endpoint is disabled until it is re-enabled".into(),
        },
        300..=399 => retry(match response.header("location") {
            Some(location) => format!("status {status}: redirect to {location} not followed; update the url"),
            None => format!("status {status}: redirects are not followed; update the url"),
        }),
        429 | 503 => Verdict::Retry {
            after: response.header("retry-after").and_then(|v| retry_after(v, now)),
            reason: format!("status {status}"),
        },
        _ => retry(format!("status {status}")),
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let delay = at.with_timezone(&Utc) - now;
    Some(delay.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str, ok: Option<&str>, err: Option<&str>) -> Verdict {
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let response = Response {
            status,
            headers: &headers,
            body: body.as_bytes(),
        };
        classify(Outcome::Response(response), ok, err, now())
    }

    fn is_retry(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::Retry { .. })
    }

    #[test]
    fn two_hundreds_and_response_texts() {
        assert_eq!(answer(200, &[], "", None, None), Verdict::Success);
        assert_eq!(answer(204, &[], "", None, None), Verdict::Success);
        assert_eq!(answer(200, &[], "status=OK", Some("OK"), None), Verdict::Success);
        assert!(is_retry(&answer(200, &[], "status=FAIL", Some("OK"), None)));
        assert!(is_retry(&answer(200, &[], "ERROR: bad", None, Some("ERROR"))));
        assert!(is_retry(&answer(200, &[], "OK ERROR", Some("OK"), Some("ERROR"))));
    }

    #[test]
    fn other_statuses() {
        assert!(matches!(answer(410, &[], "", None, None), Verdict::Disable { .. }));
        let redirect = answer(301, &[("Location", "https://x/")], "", None, None);
        assert!(matches!(&redirect, Verdict::Retry { reason, .. } if reason.contains("https://x/ not followed")));
        for status in [400, 401, 404, 500, 502] {
            assert_eq!(
                answer(status, &[], "", None, None),
                Verdict::Retry {
                    after: None,
                    reason: format!("status {status}")
                }
            );
        }
        assert!(is_retry(&classify(
            Outcome::Transport(&SendError::Connect("connection reset".into())),
            None,
            None,
            now()
        )));
    }

    #[test]
    fn retry_after_hints() {
        let hint = |status, value| match answer(status, &[("retry-after", value)], "", None, None) {
            Verdict::Retry { after, .. } => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(hint(429, "120"), Some(Duration::from_secs(120)));
        assert_eq!(
            hint(503, "Fri, 20 Nov 2026 14:01:30 GMT"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(hint(503, "soon"), None);
        assert_eq!(hint(500, "120"), None);
    }
}
