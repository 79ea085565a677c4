//! Test guest (classifier): reads a receiver's JSON acknowledgement body.
//!
//! Non-2xx → retry; 2xx with a body that is not JSON → retry; `{"status":"ok"}` → success;
//! `{"status":"error","retryable":false,"message":..}` → fail with the message;
//! `{"status":"error"}` otherwise → retry after `retry_after` seconds if present, with the
//! body's `message` or "receiver said retry" as reason; any other `status` → retry. Logs what it
//! decided.

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "classifier" });

use exports::postwire::plugin::classify::{Guest, Request, Response, Verdict};
use postwire::plugin::log::{Level, log};
use postwire::plugin::types::Retry;
use serde_json::Value;

struct JsonAck;

impl Guest for JsonAck {
    fn classify(_request: Request, response: Response, _config: String) -> Verdict {
        let verdict = decide(&response);
        let decided = match &verdict {
            Verdict::Success => "success".to_string(),
            Verdict::Retry(Retry {
                after_secs: Some(secs),
                reason,
            }) => format!("retry after {secs} s: {reason}"),
            Verdict::Retry(Retry {
                after_secs: None,
                reason,
            }) => format!("retry: {reason}"),
            Verdict::Fail(reason) => format!("fail: {reason}"),
        };
        log(Level::Info, &format!("HTTP {}: {decided}", response.status));
        verdict
    }
}

fn decide(response: &Response) -> Verdict {
    let status = response.status;
    if !(200..300).contains(&status) {
        return retry(None, format!("receiver answered HTTP {status}"));
    }
    let Ok(ack) = serde_json::from_slice::<Value>(&response.body) else {
        return retry(
            None,
            format!("receiver answered HTTP {status} with a body that is not JSON"),
        );
    };
    let message = ack.get("message").and_then(Value::as_str);
    match ack.get("status").and_then(Value::as_str) {
        Some("ok") => Verdict::Success,
        Some("error") if ack.get("retryable").and_then(Value::as_bool) == Some(false) => {
            Verdict::Fail(message.unwrap_or("receiver refused the postback").to_string())
        }
        Some("error") => {
            let after = ack
                .get("retry_after")
                .and_then(Value::as_u64)
                .map(|secs| u32::try_from(secs).unwrap_or(u32::MAX));
            retry(after, message.unwrap_or("receiver said retry").to_string())
        }
        other => retry(
            None,
            format!("receiver answered HTTP {status} with an unknown acknowledgement status {other:?}"),
        ),
    }
}

fn retry(after_secs: Option<u32>, reason: String) -> Verdict {
    Verdict::Retry(Retry { after_secs, reason })
}

export!(JsonAck);
