//! Example plugin (classify): for a receiver that acknowledges in plain text,
//! `success=true;` or `success=false; err_msg=<why>;`.
//!
//! The body is read as `key=value` pairs separated by `;` (keys any case, spaces around
//! ignored); `err_msg` runs to the end of the body, so it may itself contain `;`.
//!
//! | answer | verdict |
//! |---|---|
//! | not 2xx | retry |
//! | `success=true` (or `1`, `yes`) | success |
//! | `success=false` and `err_msg` looks temporary | retry, with `err_msg` |
//! | `success=false` otherwise | fail, with `err_msg` (or `receiver said success=false`) |
//! | no `success` pair, or another value | retry: the postback is not dropped on an answer nobody understood |
//!
//! **The rule for "temporary"**: `err_msg` contains, in any case, one of `temporar` (temporary,
//! temporarily), `timeout`, `timed out`, `try again`, `retry`, `unavailable`, `busy`,
//! `rate limit` or `too many requests`. `plugin_config` can replace that list:
//! `{"retry_on": ["maintenance", "locked"]}` (an empty list makes every `success=false` final).

use postwire_sdk::{Classify, Config, Request, Response, Verdict, info};

/// Words in `err_msg` that make a refusal temporary, unless `plugin_config` has `retry_on`.
const TEMPORARY: &[&str] = &[
    "temporar",
    "timeout",
    "timed out",
    "try again",
    "retry",
    "unavailable",
    "busy",
    "rate limit",
    "too many requests",
];

struct PlainAck;

impl Classify for PlainAck {
    fn classify(_request: &Request, response: &Response, config: &Config) -> Verdict {
        let words = config
            .get::<Vec<String>>("retry_on")
            .unwrap_or_else(|| TEMPORARY.iter().map(|w| w.to_string()).collect());
        let verdict = decide(response, &words);
        info!("HTTP {}: {verdict}", response.status());
        verdict
    }
}

postwire_sdk::export_classify!(PlainAck);

fn decide(response: &Response, temporary: &[String]) -> Verdict {
    if !response.is_success() {
        return Verdict::retry(format!("receiver answered HTTP {}", response.status()));
    }
    let body = response.text();
    let ack = Ack::parse(&body);
    match ack.success.map(str::to_ascii_lowercase).as_deref() {
        Some("true" | "1" | "yes") => Verdict::success(),
        Some("false" | "0" | "no") => {
            let message = ack
                .err_msg
                .filter(|m| !m.is_empty())
                .unwrap_or("receiver said success=false");
            let lower = message.to_lowercase();
            if temporary
                .iter()
                .any(|word| !word.is_empty() && lower.contains(&word.to_lowercase()))
            {
                Verdict::retry(message)
            } else {
                Verdict::fail(message)
            }
        }
        Some(other) => Verdict::retry(format!("unknown success value {other:?}")),
        None => {
            let start: String = body.chars().take(80).collect();
            Verdict::retry(format!("no success=true/false in the answer: {start:?}"))
        }
    }
}

/// The pairs this plugin reads.
#[derive(Debug, Default, PartialEq)]
struct Ack<'a> {
    success: Option<&'a str>,
    err_msg: Option<&'a str>,
}

impl<'a> Ack<'a> {
    fn parse(body: &'a str) -> Ack<'a> {
        let mut ack = Ack::default();
        let mut rest = body.trim();
        while !rest.is_empty() {
            let (pair, after) = rest.split_once(';').unwrap_or((rest, ""));
            if let Some((key, value)) = pair.split_once('=') {
                let key = key.trim();
                if key.eq_ignore_ascii_case("err_msg") {
                    // The message runs to the end of the body, less the closing `;`.
                    let message = rest.split_once('=').map_or("", |(_, m)| m).trim();
                    ack.err_msg = Some(message.strip_suffix(';').unwrap_or(message).trim_end());
                    break;
                }
                if key.eq_ignore_ascii_case("success") && ack.success.is_none() {
                    ack.success = Some(value.trim());
                }
            }
            rest = after.trim_start();
        }
        ack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str, config: &str) -> Verdict {
        let request = Request::new("PUT", "https://partner.example/inbox");
        PlainAck::classify(&request, &Response::new(status).with_body(body), &Config::new(config))
    }

    fn ok(body: &str) -> Verdict {
        classify(200, body, "{}")
    }

    #[test]
    fn parses_pairs() {
        assert_eq!(
            Ack::parse("success=true;"),
            Ack {
                success: Some("true"),
                err_msg: None
            }
        );
        assert_eq!(
            Ack::parse(" Success = false ; ERR_MSG= order; unknown ;\n"),
            Ack {
                success: Some("false"),
                err_msg: Some("order; unknown")
            }
        );
        assert_eq!(
            Ack::parse("id=7;success=false;err_msg=;"),
            Ack {
                success: Some("false"),
                err_msg: Some("")
            }
        );
        assert_eq!(Ack::parse("OK"), Ack::default());
        assert_eq!(Ack::parse(""), Ack::default());
    }

    #[test]
    fn success() {
        assert_eq!(ok("success=true;"), Verdict::success());
        assert_eq!(ok("success=TRUE"), Verdict::success());
        assert_eq!(ok("success=1; id=42;"), Verdict::success());
    }

    #[test]
    fn final_refusals_fail() {
        assert_eq!(
            ok("success=false; err_msg=Invalid order id;"),
            Verdict::fail("Invalid order id")
        );
        assert_eq!(ok("success=false;"), Verdict::fail("receiver said success=false"));
        assert_eq!(
            ok("success=false; err_msg=;"),
            Verdict::fail("receiver said success=false")
        );
    }

    #[test]
    fn temporary_refusals_are_retried() {
        assert_eq!(
            ok("success=false; err_msg=Temporary database error;"),
            Verdict::retry("Temporary database error")
        );
        assert_eq!(
            ok("success=false; err_msg=Service temporarily unavailable"),
            Verdict::retry("Service temporarily unavailable")
        );
        assert_eq!(ok("success=false; err_msg=Server BUSY;"), Verdict::retry("Server BUSY"));
        assert_eq!(
            ok("success=false; err_msg=Rate limit exceeded;"),
            Verdict::retry("Rate limit exceeded")
        );
    }

    #[test]
    fn the_config_replaces_the_rule() {
        let config = r#"{"retry_on": ["maintenance"]}"#;
        assert_eq!(
            classify(200, "success=false; err_msg=Down for maintenance;", config),
            Verdict::retry("Down for maintenance")
        );
        assert_eq!(
            classify(200, "success=false; err_msg=Temporary error;", config),
            Verdict::fail("Temporary error")
        );
        assert_eq!(
            classify(200, "success=false; err_msg=Temporary error;", r#"{"retry_on": []}"#),
            Verdict::fail("Temporary error")
        );
    }

    #[test]
    fn other_answers_are_retried() {
        assert_eq!(
            classify(502, "success=true;", "{}"),
            Verdict::retry("receiver answered HTTP 502")
        );
        assert_eq!(ok("OK"), Verdict::retry("no success=true/false in the answer: \"OK\""));
        assert_eq!(ok("success=maybe;"), Verdict::retry("unknown success value \"maybe\""));
    }

    /// The answers the README runs.
    #[test]
    fn the_readme_answers() {
        assert_eq!(ok("success=true;"), Verdict::success());
        assert_eq!(
            ok("success=false; err_msg=Temporary database error, try again later;"),
            Verdict::retry("Temporary database error, try again later")
        );
        assert_eq!(
            ok("success=false; err_msg=Unknown order ORD-99812;"),
            Verdict::fail("Unknown order ORD-99812")
        );
    }
}
