//! Events: the envelope the platform posts, validated field by field into typed values.
//!
//! ```json
//! {"id": "evt_1", "type": "action_inquiry.created", "partner_id": "ptn_1",
//!  "occurred_at": "2026-11-20T14:03:00Z", "data": {"ActionInquiryId": "1000123", "OrderId": "ORD-1"}}
//! ```
//!
//! `data` keys are the placeholder names of the [catalogue](crate::catalogue). Values are checked
//! against their type here, once, so rendering never meets a malformed value.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::catalogue::{self, CATALOGUE, FieldId, FieldType, MAX_TEXT_LEN, Source};
use crate::error::{FieldError, Invalid, Problems};

/// The kinds of event Postwire delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A partner opened an action inquiry.
    #[serde(rename = "action_inquiry.created")]
    ActionInquiryCreated,
    /// The brand resolved an action inquiry.
    #[serde(rename = "action_inquiry.resolved")]
    ActionInquiryResolved,
}

impl EventType {
    /// Every event type, in the order they happen to an inquiry.
    pub const ALL: [EventType; 2] = [EventType::ActionInquiryCreated, EventType::ActionInquiryResolved];

    /// The wire name, e.g. `action_inquiry.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ActionInquiryCreated => "action_inquiry.created",
            EventType::ActionInquiryResolved => "action_inquiry.resolved",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Data fields this type of event must carry.
    fn required(self) -> &'static [&'static str] {
        match self {
            EventType::ActionInquiryCreated => &["ActionInquiryId"],
            EventType::ActionInquiryResolved => &["ActionInquiryId", "ResolutionStatus"],
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed value of one placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text, ids, currency codes and enum words.
    Text(String),
    /// A decimal amount; keeps the scale it was sent with (`12.50` stays `12.50`).
    Amount(Decimal),
    /// A point in time with the offset it was sent with.
    Timestamp(DateTime<FixedOffset>),
}

impl Value {
    /// The default text form: amounts as sent, timestamps in RFC 3339.
    pub fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Value::Text(text) => out.push_str(text),
            Value::Amount(amount) => {
                let _ = write!(out, "{amount}");
            }
            Value::Timestamp(at) => out.push_str(&format_timestamp(at)),
        }
    }
}

/// RFC 3339 with `Z` for UTC and fractional seconds only when present.
pub fn format_timestamp(at: &DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The longest event or partner id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The platform's id of the event; with `partner_id`, the idempotency key.
    pub id: String,
    /// What happened.
    pub event_type: EventType,
    /// The partner whose postback this is.
    pub partner_id: String,
    /// When it happened.
    pub occurred_at: DateTime<FixedOffset>,
    /// Values by [`FieldId`]; `None` where the event does not carry the field.
    values: Vec<Option<Value>>,
}

impl Event {
    /// Parses and validates an envelope from JSON text.
    pub fn from_json(text: &str) -> Result<Event, crate::Error> {
        let json: Json = serde_json::from_str(text).map_err(|source| crate::Error::Json {
            what: "the event".into(),
            source,
        })?;
        Ok(Event::from_value(&json)?)
    }

    /// Validates an envelope, reporting every problem at once.
    pub fn from_value(json: &Json) -> Result<Event, Invalid> {
        let Some(object) = json.as_object() else {
            return Err(FieldError::new(
                "event",
                Some(&json.to_string()),
                "must be a JSON object with id, type, partner_id, occurred_at and data",
            )
            .into());
        };
        let mut problems = Problems::default();
        for key in object.keys() {
            if !["id", "type", "partner_id", "occurred_at", "data"].contains(&key.as_str()) {
                problems.push(FieldError::new(
                    key.as_str(),
                    None,
                    "is not a field of the event envelope; it has id, type, partner_id, occurred_at and data",
                ));
            }
        }
        let id = read_id(object, "id", &mut problems);
        let partner_id = read_id(object, "partner_id", &mut problems);
        let event_type = match object.get("type") {
            None | Some(Json::Null) => {
                problems.push(FieldError::missing(
                    "type",
                    "use action_inquiry.created or action_inquiry.resolved",
                ));
                None
            }
            Some(Json::String(name)) => {
                let parsed = EventType::parse(name);
                if parsed.is_none() {
                    problems.push(FieldError::new(
                        "type",
                        Some(name),
                        "is not a known event type; use action_inquiry.created or action_inquiry.resolved",
                    ));
                }
                parsed
            }
            Some(other) => {
                problems.push(mistyped("type", other, "a string such as \"action_inquiry.created\""));
                None
            }
        };
        let occurred_at = match object.get("occurred_at") {
            None | Some(Json::Null) => {
                problems.push(FieldError::missing(
                    "occurred_at",
                    "give an RFC 3339 timestamp such as \"2026-11-20T14:03:00Z\"",
                ));
                None
            }
            Some(value) => parse_timestamp("occurred_at", value).map_err(|e| problems.push(e)).ok(),
        };
        let mut values = vec![None; CATALOGUE.len()];
        match object.get("data") {
            None | Some(Json::Null) => problems.push(FieldError::missing(
                "data",
                "give an object of the inquiry's fields, e.g. {\"ActionInquiryId\": \"1000123\"}",
            )),
            Some(Json::Object(data)) => read_data(data, &mut values, &mut problems),
            Some(other) => problems.push(mistyped("data", other, "an object of the inquiry's fields")),
        }
        if let Some(event_type) = event_type {
            for name in event_type.required() {
                let field = catalogue::lookup(name).expect("required fields are in the catalogue");
                if values[field].is_none()
                    && object
                        .get("data")
                        .is_none_or(|d| d.get(*name).is_none_or(Json::is_null))
                {
                    problems.push(FieldError::missing(
                        format!("data.{name}"),
                        &format!("every {event_type} event carries it"),
                    ));
                }
            }
        }
        let (Some(id), Some(event_type), Some(partner_id), Some(occurred_at)) =
            (id, event_type, partner_id, occurred_at)
        else {
            return Err(Invalid(problems_into_vec(problems)));
        };
        values[catalogue::EVENT_ID] = Some(Value::Text(id.clone()));
        values[catalogue::EVENT_TYPE] = Some(Value::Text(event_type.as_str().to_owned()));
        values[catalogue::EVENT_DATE] = Some(Value::Timestamp(occurred_at));
        problems.finish(Event {
            id,
            event_type,
            partner_id,
            occurred_at,
            values,
        })
    }

    /// A sample event of the given type built from the catalogue's examples; used to test-render
    /// templates when settings are saved and to send test postbacks.
    pub fn sample(event_type: EventType, partner_id: &str) -> Event {
        let mut data = Map::new();
        for placeholder in CATALOGUE.iter().filter(|p| p.source == Source::Data) {
            let resolution_only = matches!(
                placeholder.name,
                "ResolutionStatus" | "RejectReason" | "FinalPayout" | "ResolutionDate"
            );
            if resolution_only && event_type == EventType::ActionInquiryCreated {
                continue;
            }
            data.insert(placeholder.name.into(), Json::String(placeholder.example.into()));
        }
        let envelope = serde_json::json!({
            "id": format!("evt_sample_{}", event_type.as_str().replace('.', "_")),
            "type": event_type.as_str(),
            "partner_id": partner_id,
            "occurred_at": "2026-11-20T14:03:00Z",
            "data": data,
        });
        Event::from_value(&envelope).expect("catalogue examples are valid values")
    }

    /// The value of a placeholder, if the event carries it.
    pub fn value(&self, field: FieldId) -> Option<&Value> {
        self.values.get(field).and_then(Option::as_ref)
    }

    /// The value of a placeholder by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        catalogue::lookup(name).and_then(|field| self.value(field))
    }

    /// The action inquiry this event is about.
    pub fn action_inquiry_id(&self) -> &str {
        match self.get("ActionInquiryId") {
            Some(Value::Text(id)) => id,
            _ => unreachable!("validation requires ActionInquiryId"),
        }
    }

    /// The envelope as JSON, in the shape [`Event::from_value`] reads.
    pub fn to_json(&self) -> Json {
        let mut data = Map::new();
        for (field, value) in self.values.iter().enumerate() {
            let placeholder = &CATALOGUE[field];
            if placeholder.source != Source::Data {
                continue;
            }
            if let Some(value) = value {
                let mut text = String::new();
                value.write_text(&mut text);
                data.insert(placeholder.name.into(), Json::String(text));
            }
        }
        serde_json::json!({
            "id": self.id,
            "type": self.event_type.as_str(),
            "partner_id": self.partner_id,
            "occurred_at": format_timestamp(&self.occurred_at),
            "data": data,
        })
    }
}

fn problems_into_vec(problems: Problems) -> Vec<FieldError> {
    match problems.finish(()) {
        Ok(()) => Vec::new(),
        Err(Invalid(errors)) => errors,
    }
}

fn mistyped(field: &str, value: &Json, expected: &str) -> FieldError {
    FieldError::new(
        field,
        Some(&value.to_string()),
        format!("has the wrong type; expected {expected}"),
    )
}

/// Ids go into headers (`webhook-id`) and signatures, so they are kept to a safe alphabet.
fn read_id(object: &Map<String, Json>, field: &str, problems: &mut Problems) -> Option<String> {
    const FIX: &str = "use 1 to 128 characters from A-Z a-z 0-9 _ - . :";
    match object.get(field) {
        None | Some(Json::Null) => {
            problems.push(FieldError::missing(field, FIX));
            None
        }
        Some(Json::String(id)) => {
            let ok = !id.is_empty()
                && id.len() <= MAX_ID_LEN
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
            if ok {
                Some(id.clone())
            } else {
                problems.push(FieldError::new(field, Some(id), format!("is not a valid id; {FIX}")));
                None
            }
        }
        Some(other) => {
            problems.push(mistyped(field, other, "a string id"));
            None
        }
    }
}

fn read_data(data: &Map<String, Json>, values: &mut [Option<Value>], problems: &mut Problems) {
    for (name, json) in data {
        let path = format!("data.{name}");
        let Some(field) = catalogue::lookup(name) else {
            let hint = match catalogue::suggest(name) {
                Some(known) => format!("did you mean {known}?"),
                None => "see `postwire placeholders` for the known names".into(),
            };
            problems.push(FieldError::new(path, None, format!("is not a known field; {hint}")));
            continue;
        };
        let placeholder = &CATALOGUE[field];
        if placeholder.source == Source::Envelope {
            problems.push(FieldError::new(
                path,
                None,
                "is set from the envelope (id, type, occurred_at); remove it from data",
            ));
            continue;
        }
        if json.is_null() {
            continue;
        }
        match parse_value(&path, placeholder.ty, json) {
            Ok(value) => values[field] = Some(value),
            Err(error) => problems.push(error),
        }
    }
}

fn parse_value(path: &str, ty: FieldType, json: &Json) -> Result<Value, FieldError> {
    match ty {
        FieldType::Text => match json {
            Json::String(text) if text.len() <= MAX_TEXT_LEN => Ok(Value::Text(text.clone())),
            Json::String(text) => Err(FieldError::new(
                path,
                Some(text),
                format!("is {} bytes long; the limit is {MAX_TEXT_LEN}", text.len()),
            )),
            other => Err(mistyped(path, other, "a string")),
        },
        FieldType::Id => match json {
            Json::String(id) if !id.is_empty() && id.len() <= MAX_ID_LEN * 2 => Ok(Value::Text(id.clone())),
            Json::String(id) => Err(FieldError::new(
                path,
                Some(id),
                format!("must hold 1 to {} bytes", MAX_ID_LEN * 2),
            )),
            Json::Number(n) if n.is_u64() || n.is_i64() => Ok(Value::Text(n.to_string())),
            other => Err(mistyped(path, other, "a string or an integer id")),
        },
        FieldType::Amount => {
            let text = match json {
                Json::String(text) => text.clone(),
                Json::Number(n) => n.to_string(),
                other => return Err(mistyped(path, other, "a decimal amount such as 149.90")),
            };
            Decimal::from_str(text.trim())
                .or_else(|_| Decimal::from_scientific(text.trim()))
                .map(Value::Amount)
                .map_err(|_| {
                    FieldError::new(
                        path,
                        Some(&text),
                        "is not an amount; write a decimal number with a dot, such as 149.90",
                    )
                })
        }
        FieldType::Currency => match json {
            Json::String(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) => {
                Ok(Value::Text(code.clone()))
            }
            Json::String(code) => Err(FieldError::new(
                path,
                Some(code),
                "is not a currency code; use three upper-case letters (ISO 4217) such as USD",
            )),
            other => Err(mistyped(path, other, "a currency code such as \"USD\"")),
        },
        FieldType::Timestamp => parse_timestamp(path, json).map(Value::Timestamp),
        FieldType::Enum(words) => match json {
            Json::String(word) if words.contains(&word.as_str()) => Ok(Value::Text(word.clone())),
            Json::String(word) => Err(FieldError::new(
                path,
                Some(word),
                format!("is not one of {}", words.join(", ")),
            )),
            other => Err(mistyped(path, other, &format!("one of {}", words.join(", ")))),
        },
    }
}

fn parse_timestamp(path: &str, json: &Json) -> Result<DateTime<FixedOffset>, FieldError> {
    const FIX: &str = "use RFC 3339 with an offset, such as \"2026-11-20T14:03:00Z\"";
    match json {
        Json::String(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| FieldError::new(path, Some(text), format!("is not a valid timestamp ({e}); {FIX}"))),
        other => Err(mistyped(path, other, &format!("a string timestamp; {FIX}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(data: Json) -> Json {
        json!({"id": "evt_1", "type": "action_inquiry.created", "partner_id": "ptn_1",
               "occurred_at": "2026-11-20T14:03:00Z", "data": data})
    }

    fn errors(json: Json) -> Vec<String> {
        Event::from_value(&json)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn reads_a_valid_event() {
        let event = Event::from_value(&envelope(json!({
            "ActionInquiryId": 1000123, "TransactionAmount": 149.9, "ExpectedPayout": "12.50",
            "InquiryType": "UNTRACKED", "TransactionDate": "2026-11-02T18:22:10+02:00", "SubId1": null
        })))
        .unwrap();
        assert_eq!(event.action_inquiry_id(), "1000123");
        assert_eq!(event.get("ExpectedPayout"), Some(&Value::Amount(Decimal::new(1250, 2))));
        assert_eq!(
            event.get("TransactionAmount"),
            Some(&Value::Amount(Decimal::new(1499, 1)))
        );
        assert_eq!(event.get("SubId1"), None);
        assert_eq!(event.get("EventId"), Some(&Value::Text("evt_1".into())));
        let roundtrip = Event::from_value(&event.to_json()).unwrap();
        assert_eq!(roundtrip, event);
    }

    #[test]
    fn names_every_problem() {
        let errors = errors(json!({"id": "evt 1", "type": "action_inquiry.updated", "partner_id": 7,
            "occurred_at": "yesterday", "extra": 1,
            "data": {"OrderID": "1", "TransactionAmount": "12,50", "InquiryType": "LOST"}}));
        let all = errors.join("\n");
        for needle in [
            "extra: is not a field of the event envelope",
            "id: \"evt 1\" is not a valid id",
            "type: \"action_inquiry.updated\" is not a known event type",
            "partner_id: \"7\" has the wrong type",
            "occurred_at: \"yesterday\" is not a valid timestamp",
            "data.OrderID: is not a known field; did you mean OrderId?",
            "data.TransactionAmount: \"12,50\" is not an amount",
            "data.InquiryType: \"LOST\" is not one of UNTRACKED, INCORRECT, DECLINED",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn requires_fields_by_type() {
        let mut json = envelope(json!({"ActionInquiryId": "1"}));
        json["type"] = "action_inquiry.resolved".into();
        assert_eq!(
            errors(json),
            ["data.ResolutionStatus: is required; every action_inquiry.resolved event carries it"]
        );
        assert!(errors(envelope(json!({})))[0].starts_with("data.ActionInquiryId: is required"));
        assert!(errors(envelope(json!({"ActionInquiryId": null})))[0].starts_with("data.ActionInquiryId: is required"));
    }

    #[test]
    fn refuses_envelope_fields_in_data() {
        let errors = errors(envelope(json!({"ActionInquiryId": "1", "EventId": "x"})));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("data.EventId: is set from the envelope"));
    }

    #[test]
    fn samples_are_valid() {
        for ty in EventType::ALL {
            let sample = Event::sample(ty, "ptn_demo");
            assert_eq!(sample.event_type, ty);
        }
    }
}
