//! Example plugin (classify): for a receiver that answers `200 OK` even when it did not take the
//! postback, and says what happened in a JSON body:
//! `{"status": "ok"}` or `{"status": "error", "retryable": true, "retry_after": 30, "message": "..."}`.
//!
//! | answer | verdict |
//! |---|---|
//! | not 2xx | retry (after `Retry-After` seconds, if the header has a number) |
//! | 2xx, `status` `ok` or `success` (any case) | success |
//! | 2xx, `status` `error`, `retryable: false` | fail, with `message` |
//! | 2xx, `status` `error`, `retryable` `true` or absent | retry, after `retry_after` seconds if given (a number or a numeric string), with `message` |
//! | 2xx, body not a JSON object, or another `status` | retry: the postback is not dropped on an answer nobody understood |
//!
//! `plugin_config` is not used.

use postwire_sdk::serde_json::Value;
use postwire_sdk::{Classify, Config, Request, Response, Verdict, info};
use serde::Deserialize;

/// The receiver's acknowledgement.
#[derive(Debug, Deserialize)]
struct Ack {
    status: Option<String>,
    retryable: Option<bool>,
    retry_after: Option<Value>,
    message: Option<String>,
}

struct JsonStatus;

impl Classify for JsonStatus {
    fn classify(_request: &Request, response: &Response, _config: &Config) -> Verdict {
        let verdict = decide(response);
        info!("HTTP {}: {verdict}", response.status());
        verdict
    }
}

postwire_sdk::export_classify!(JsonStatus);

fn decide(response: &Response) -> Verdict {
    let status = response.status();
    if !response.is_success() {
        let reason = format!("receiver answered HTTP {status}");
        return match response.header("Retry-After").and_then(|secs| secs.trim().parse().ok()) {
            Some(secs) => Verdict::retry_after(secs, reason),
            None => Verdict::retry(reason),
        };
    }
    let ack: Ack = match response.json() {
        Ok(ack) => ack,
        Err(_) => {
            let start: String = response.text().chars().take(80).collect();
            return Verdict::retry(format!("HTTP {status} without a JSON acknowledgement: {start:?}"));
        }
    };
    let message = ack.message.filter(|m| !m.trim().is_empty());
    match ack.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("ok" | "success") => Verdict::success(),
        Some("error") if ack.retryable == Some(false) => {
            Verdict::fail(message.unwrap_or_else(|| "receiver refused the postback".into()))
        }
        Some("error") => {
            let reason = message.unwrap_or_else(|| "receiver asked to retry".into());
            match ack.retry_after.as_ref().and_then(seconds) {
                Some(secs) => Verdict::retry_after(secs, reason),
                None => Verdict::retry(reason),
            }
        }
        Some(other) => Verdict::retry(format!("unknown acknowledgement status {other:?}")),
        None => Verdict::retry("acknowledgement without a status"),
    }
}

/// `30` or `"30"` as seconds; `None` for anything else (negative, fractional, text).
fn seconds(value: &Value) -> Option<u32> {
    let secs = match value {
        Value::Number(number) => number.as_u64()?,
        Value::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    Some(u32::try_from(secs).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(response: Response) -> Verdict {
        let request = Request::new("POST", "https://partner.example/postbacks/action-inquiry");
        JsonStatus::classify(&request, &response, &Config::default())
    }

    fn ok(body: &str) -> Verdict {
        classify(Response::new(200).with_body(body))
    }

    #[test]
    fn ok_is_success() {
        assert_eq!(ok(r#"{"status":"ok"}"#), Verdict::success());
        assert_eq!(ok(r#"{"status":"OK","message":"stored"}"#), Verdict::success());
        assert_eq!(ok(r#"{"status":"success"}"#), Verdict::success());
        assert_eq!(
            classify(Response::new(201).with_body(r#"{"status":"ok"}"#)),
            Verdict::success()
        );
    }

    #[test]
    fn retryable_errors_are_retried() {
        assert_eq!(
            ok(r#"{"status":"error","retryable":true,"retry_after":30,"message":"database busy"}"#),
            Verdict::retry_after(30, "database busy")
        );
        assert_eq!(
            ok(r#"{"status":"error","retryable":true,"retry_after":"120"}"#),
            Verdict::retry_after(120, "receiver asked to retry")
        );
        assert_eq!(
            ok(r#"{"status":"error","message":"try later"}"#),
            Verdict::retry("try later")
        );
        assert_eq!(
            ok(r#"{"status":"error","retryable":true,"retry_after":-5,"message":"m"}"#),
            Verdict::retry("m")
        );
        assert_eq!(
            ok(r#"{"status":"error","retry_after":99999999999,"message":"m"}"#),
            Verdict::retry_after(u32::MAX, "m")
        );
    }

    #[test]
    fn final_errors_fail() {
        assert_eq!(
            ok(r#"{"status":"error","retryable":false,"message":"unknown order ORD-1"}"#),
            Verdict::fail("unknown order ORD-1")
        );
        assert_eq!(
            ok(r#"{"status":"error","retryable":false,"message":" "}"#),
            Verdict::fail("receiver refused the postback")
        );
    }

    #[test]
    fn other_answers_are_retried() {
        assert_eq!(
            classify(Response::new(503).with_header("retry-after", "60")),
            Verdict::retry_after(60, "receiver answered HTTP 503")
        );
        assert_eq!(
            classify(Response::new(500).with_body(r#"{"status":"ok"}"#)),
            Verdict::retry("receiver answered HTTP 500")
        );
        assert_eq!(
            classify(Response::new(429).with_header("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT")),
            Verdict::retry("receiver answered HTTP 429")
        );
        assert_eq!(
            ok("<html>OK</html>"),
            Verdict::retry("HTTP 200 without a JSON acknowledgement: \"<html>OK</html>\"")
        );
        assert_eq!(
            ok(r#"{"status":"queued"}"#),
            Verdict::retry("unknown acknowledgement status \"queued\"")
        );
        assert_eq!(ok("{}"), Verdict::retry("acknowledgement without a status"));
        assert!(matches!(ok("[]"), Verdict::Retry { .. }));
        assert!(matches!(ok(r#"{"status":5}"#), Verdict::Retry { .. }));
    }

    /// The answers the README runs.
    #[test]
    fn the_readme_answers() {
        assert_eq!(ok(r#"{"status":"ok"}"#), Verdict::success());
        assert_eq!(
            ok(r#"{"status":"error","retryable":true,"retry_after":30,"message":"database busy"}"#),
            Verdict::retry_after(30, "database busy")
        );
        assert_eq!(
            ok(r#"{"status":"error","retryable":false,"message":"unknown order ORD-99812"}"#),
            Verdict::fail("unknown order ORD-99812")
        );
    }
}
