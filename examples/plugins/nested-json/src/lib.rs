//! Example plugin (transform): reshapes the flat JSON body of the default template
//! (`examples/settings/json.json`) into a partner's nested schema, with amounts in cents, dates
//! as unix seconds and the partner's key names.
//!
//! In (the template's body):
//!
//! ```json
//! {"event": "action_inquiry.created", "inquiry_id": "1000123", "order_id": "ORD-99812",
//!  "amount": 149.9, "amount_cents": 14990, "currency": "USD", "status": "OPEN", "payout": 12.50,
//!  "notes": "...", "happened_at": 1795183380, "sub_id": "spring"}
//! ```
//!
//! Out:
//!
//! ```json
//! {"type": "inquiry.created",
//!  "inquiry": {"id": "1000123", "order_ref": "ORD-99812", "status": "OPEN", "notes": "..."},
//!  "money": {"currency": "USD", "amount_cents": 14990, "payout_cents": 1250},
//!  "dates": {"occurred_unix": 1795183380, "transaction_unix": 1793643730},
//!  "tracking": {"event_id": "evt_01JD7Y3M4W1Q9", "sub_id": "spring"}}
//! ```
//!
//! Each value comes from the body when it has the key, else from the event: `amount` and
//! `payout` (numbers or decimal strings) become cents exactly, without float arithmetic;
//! `happened_at` may be unix seconds or RFC 3339; `transaction_unix` is the event's
//! `TransactionDate`. Empty strings and absent values become `null`. The body must be a JSON
//! object; other keys in it are dropped. `plugin_config` is not used.

use postwire_sdk::serde_json::Value;
use postwire_sdk::{Config, Event, Request, Transform, info, parse};
use serde::{Deserialize, Serialize};

/// The body the default JSON template produces; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Flat {
    event: Option<String>,
    inquiry_id: Option<String>,
    order_id: Option<String>,
    amount: Option<Value>,
    currency: Option<String>,
    status: Option<String>,
    payout: Option<Value>,
    notes: Option<String>,
    happened_at: Option<Value>,
    sub_id: Option<String>,
}

/// The partner's schema.
#[derive(Debug, Serialize)]
struct Nested {
    r#type: String,
    inquiry: Inquiry,
    money: Money,
    dates: Dates,
    tracking: Tracking,
}

#[derive(Debug, Serialize)]
struct Inquiry {
    id: Option<String>,
    order_ref: Option<String>,
    status: Option<String>,
    notes: Option<String>,
}

#[derive(Debug, Serialize)]
struct Money {
    currency: Option<String>,
    amount_cents: Option<i64>,
    payout_cents: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Dates {
    occurred_unix: Option<i64>,
    transaction_unix: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Tracking {
    event_id: String,
    sub_id: Option<String>,
}

struct NestedJson;

impl Transform for NestedJson {
    fn transform(event: &Event, mut request: Request, _config: &Config) -> Result<Request, String> {
        let flat: Flat = request
            .json()
            .map_err(|e| format!("{e} (nested-json expects the flat JSON of examples/settings/json.json)"))?;
        let nested = reshape(event, flat);
        request.set_json(&nested)?;
        request.set_header("Content-Type", "application/json");
        info!(
            "reshaped event {} into the nested schema ({} bytes)",
            event.id(),
            request.body.len()
        );
        Ok(request)
    }
}

postwire_sdk::export_transform!(NestedJson);

fn reshape(event: &Event, flat: Flat) -> Nested {
    let text = |from_body: Option<String>, field: &str| {
        from_body
            .or_else(|| event.get(field).map(str::to_owned))
            .filter(|value| !value.is_empty())
    };
    let event_type = text(flat.event, "EventType").unwrap_or_default();
    Nested {
        r#type: event_type.strip_prefix("action_").unwrap_or(&event_type).to_owned(),
        inquiry: Inquiry {
            id: text(flat.inquiry_id, "ActionInquiryId"),
            order_ref: text(flat.order_id, "OrderId"),
            status: text(flat.status, "ResolutionStatus"),
            notes: text(flat.notes, "InquiryNotes"),
        },
        money: Money {
            currency: text(flat.currency, "Currency"),
            amount_cents: flat
                .amount
                .as_ref()
                .and_then(cents)
                .or_else(|| event.cents("TransactionAmount")),
            payout_cents: flat
                .payout
                .as_ref()
                .and_then(cents)
                .or_else(|| event.cents("FinalPayout"))
                .or_else(|| event.cents("ExpectedPayout")),
        },
        dates: Dates {
            occurred_unix: flat
                .happened_at
                .as_ref()
                .and_then(unix)
                .or_else(|| event.occurred_at_unix()),
            transaction_unix: event.timestamp_unix("TransactionDate"),
        },
        tracking: Tracking {
            event_id: event.id().to_owned(),
            sub_id: text(flat.sub_id, "SubId1"),
        },
    }
}

/// An amount (`149.9` or `"149.90"`) in cents. A JSON number is read from its shortest decimal
/// form (`149.9`), so no float arithmetic rounds it.
fn cents(amount: &Value) -> Option<i64> {
    match amount {
        Value::Number(number) => parse::cents(&number.to_string()),
        Value::String(text) => parse::cents(text),
        _ => None,
    }
}

/// A time as unix seconds: a number already, or an RFC 3339 string.
fn unix(at: &Value) -> Option<i64> {
    match at {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => parse::unix_seconds(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use postwire_sdk::serde_json::{Value, json};

    use super::*;

    /// `postwire render --settings examples/settings/json.json --event examples/events/created.json`.
    const CREATED_BODY: &str = "{\n  \"event\": \"action_inquiry.created\",\n  \"inquiry_id\": \"1000123\",\n  \
        \"order_id\": \"ORD-99812\",\n  \"amount\": 149.9,\n  \"amount_cents\": 14990,\n  \"currency\": \"USD\",\n  \
        \"status\": \"OPEN\",\n  \"payout\": 12.50,\n  \"notes\": \"Customer used coupon \\\"FALL10\\\" & paid by \
        card <visa>.\\nClick was on Nov 1.\",\n  \"happened_at\": 1795183380,\n  \"sub_id\": \"spring\"\n}";

    fn created() -> Event {
        Event::new("evt_01JD7Y3M4W1Q9", "action_inquiry.created")
            .with_partner_id("ptn_demo")
            .with_occurred_at("2026-11-20T14:03:00Z")
            .with_field("ActionInquiryId", "1000123")
            .with_field("OrderId", "ORD-99812")
            .with_field("TransactionDate", "2026-11-02T18:22:10Z")
            .with_field("TransactionAmount", "149.90")
            .with_field("Currency", "USD")
            .with_field("ExpectedPayout", "12.50")
    }

    fn request(body: &str) -> Request {
        Request::new("POST", "https://partner.example/postbacks/action-inquiry")
            .with_header("Content-Type", "application/json")
            .with_header("X-Partner-Id", "88123")
            .with_body(body)
    }

    fn run(event: &Event, body: &str) -> Result<(Request, Value), String> {
        let out = NestedJson::transform(event, request(body), &Config::default())?;
        let body = out.json_value()?;
        Ok((out, body))
    }

    #[test]
    fn reshapes_the_default_template() {
        let (out, body) = run(&created(), CREATED_BODY).unwrap();
        assert_eq!(
            body,
            json!({
                "type": "inquiry.created",
                "inquiry": {
                    "id": "1000123",
                    "order_ref": "ORD-99812",
                    "status": "OPEN",
                    "notes": "Customer used coupon \"FALL10\" & paid by card <visa>.\nClick was on Nov 1.",
                },
                "money": {"currency": "USD", "amount_cents": 14990, "payout_cents": 1250},
                "dates": {"occurred_unix": 1_795_183_380_i64, "transaction_unix": 1_793_643_730_i64},
                "tracking": {"event_id": "evt_01JD7Y3M4W1Q9", "sub_id": "spring"},
            })
        );
        assert!(
            out.body
                .starts_with(r#"{"type":"inquiry.created","inquiry":{"id":"1000123""#),
            "{}",
            out.body
        );
        assert_eq!(out.header("content-type"), Some("application/json"));
        assert_eq!(out.header("X-Partner-Id"), Some("88123"));
        assert_eq!(out.method, "POST");
    }

    #[test]
    fn amounts_are_exact() {
        for (amount, expected) in [
            ("0.29", 29),
            ("\"0.29\"", 29),
            ("1.005", 101),
            ("19.99", 1999),
            ("7", 700),
        ] {
            let (_, body) = run(&created(), &format!(r#"{{"amount": {amount}}}"#)).unwrap();
            assert_eq!(body["money"]["amount_cents"], expected, "{amount}");
        }
    }

    #[test]
    fn falls_back_to_the_event() {
        let (_, body) = run(
            &created(),
            r#"{"happened_at": "2026-11-20T15:03:00+01:00", "notes": ""}"#,
        )
        .unwrap();
        assert_eq!(body["type"], "inquiry.created");
        assert_eq!(body["inquiry"]["id"], "1000123");
        assert_eq!(body["inquiry"]["status"], Value::Null);
        assert_eq!(body["inquiry"]["notes"], Value::Null);
        assert_eq!(body["money"]["amount_cents"], 14990);
        assert_eq!(body["money"]["payout_cents"], 1250);
        assert_eq!(body["dates"]["occurred_unix"], 1_795_183_380_i64);
        assert_eq!(body["tracking"]["sub_id"], Value::Null);
        let (_, body) = run(&created(), "{}").unwrap();
        assert_eq!(body["dates"]["occurred_unix"], 1_795_183_380_i64);
    }

    #[test]
    fn refuses_a_body_that_is_not_a_json_object() {
        let error = run(&created(), "order=ORD-1").unwrap_err();
        assert!(error.contains("nested-json expects the flat JSON"), "{error}");
        assert!(run(&created(), "[1, 2]").is_err());
    }
}
