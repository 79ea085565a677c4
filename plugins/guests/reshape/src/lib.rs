//! Test guest (transformer): reshapes the JSON body the template produced into a nested schema.
//!
//! Output: `{"inquiry":{"id","order"},"money":{"amount_cents","currency"},"status"}`, each value
//! taken from the event's data field of that name (`ActionInquiryId`, `OrderId`,
//! `TransactionAmount`, `Currency`, `ResolutionStatus`), else from the body's key of that name,
//! else `null`. `amount_cents` is `TransactionAmount` × 100 as an integer. Adds `X-Reshaped: 1`
//! and logs once. With `{"key_prefix": "x"}` as config every key (at every level) gets the prefix;
//! with `{"headers": {"Name": "value"}}` the request also gets those headers, whatever their
//! names (so that tests can see what the engine does with headers it writes itself).

wit_bindgen::generate!({ path: "../../../sdk/wit", world: "transformer" });

use exports::postwire::plugin::transform::{Event, Guest, Request};
use postwire::plugin::log::{Level, log};
use serde_json::{Map, Value, json};

struct Reshape;

impl Guest for Reshape {
    fn transform(event: &Event, mut request: Request, config: String) -> Result<Request, String> {
        let body: Value = serde_json::from_str(&request.body).map_err(|e| format!("body is not JSON: {e}"))?;
        let value = |name: &str| -> Value {
            event
                .get(name)
                .map(Value::String)
                .or_else(|| body.get(name).cloned())
                .unwrap_or(Value::Null)
        };
        let mut shaped = json!({
            "inquiry": { "id": value("ActionInquiryId"), "order": value("OrderId") },
            "money": { "amount_cents": cents(&value("TransactionAmount")), "currency": value("Currency") },
            "status": value("ResolutionStatus"),
        });
        if let Some(prefix) = key_prefix(&config) {
            shaped = prefixed(shaped, &prefix);
        }
        request.body = shaped.to_string();
        request.headers.push(("X-Reshaped".to_string(), "1".to_string()));
        request.headers.extend(extra_headers(&config));
        log(
            Level::Info,
            &format!("reshaped the body of event {} ({} bytes)", event.id(), request.body.len()),
        );
        Ok(request)
    }
}

/// An amount (`"12.34"` or `12.34`) in cents (`1234`), `null` if it is not a number.
fn cents(amount: &Value) -> Value {
    let number = match amount {
        Value::String(text) => text.trim().parse::<f64>().ok(),
        Value::Number(number) => number.as_f64(),
        _ => None,
    };
    match number {
        Some(number) if number.is_finite() => Value::from((number * 100.0).round() as i64),
        _ => Value::Null,
    }
}

/// `key_prefix` from the partner's `plugin_config`, if it is a JSON object that has one.
fn key_prefix(config: &str) -> Option<String> {
    let config: Value = serde_json::from_str(config).ok()?;
    Some(config.get("key_prefix")?.as_str()?.to_string())
}

/// `headers` from the partner's `plugin_config`: an object of header names and string values.
fn extra_headers(config: &str) -> Vec<(String, String)> {
    let Ok(config) = serde_json::from_str::<Value>(config) else {
        return Vec::new();
    };
    match config.get("headers") {
        Some(Value::Object(headers)) => headers
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

/// `value` with `prefix` put before every object key, at every level.
fn prefixed(value: Value, prefix: &str) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (format!("{prefix}{key}"), prefixed(value, prefix)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|item| prefixed(item, prefix)).collect()),
        other => other,
    }
}

export!(Reshape);
