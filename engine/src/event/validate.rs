//! Validation: an envelope read field by field, every problem named with its field, the
//! value and the fix.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde_json::{Map, Value as Json};

use super::{Event, EventType, MAX_ID_LEN, Sent, Value};
use crate::catalogue::{self, CATALOGUE, FieldType, MAX_TEXT_LEN, Source};
use crate::error::{FieldError, Invalid, Problems};

impl Event {
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
                problems.push(FieldError::mistyped(
                    "type",
                    other,
                    "a string such as \"action_inquiry.created\"",
                ));
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
            Some(other) => problems.push(FieldError::mistyped("data", other, "an object of the inquiry's fields")),
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
            id: id.into(),
            event_type,
            partner_id: partner_id.into(),
            occurred_at,
            values,
            sent: Sent::default(),
        })
    }
}

fn problems_into_vec(problems: Problems) -> Vec<FieldError> {
    match problems.finish(()) {
        Ok(()) => Vec::new(),
        Err(Invalid(errors)) => errors,
    }
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
            if valid_id(id) {
                Some(id.clone())
            } else {
                problems.push(FieldError::new(field, Some(id), format!("is not a valid id; {FIX}")));
                None
            }
        }
        Some(other) => {
            problems.push(FieldError::mistyped(field, other, "a string id"));
            None
        }
    }
}

// Inlined into the fast path, which runs for every event accepted and every event read back.
#[inline]
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
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
        match parse_value(&path, placeholder.ty, json.clone()) {
            Ok(value) => values[field] = Some(value),
            Err(error) => problems.push(error),
        }
    }
}

/// `json` read as a value of type `ty`; taken by value so that a text becomes the value without
/// a copy.
#[inline]
pub(super) fn parse_value(path: &str, ty: FieldType, json: Json) -> Result<Value, FieldError> {
    match ty {
        FieldType::Text => match json {
            Json::String(text) if text.len() <= MAX_TEXT_LEN => Ok(Value::Text(text)),
            Json::String(text) => Err(FieldError::new(
                path,
                Some(&text),
                format!("is {} bytes long; the limit is {MAX_TEXT_LEN}", text.len()),
            )),
            other => Err(FieldError::mistyped(path, &other, "a string")),
        },
        FieldType::Id => match json {
            Json::String(id) if !id.is_empty() && id.len() <= MAX_ID_LEN * 2 && !id.contains('\0') => {
                Ok(Value::Text(id))
            }
            // Ids are stored as text, which cannot hold NUL in every database.
            Json::String(id) if id.contains('\0') => Err(FieldError::new(
                path,
                Some(&id),
                "holds a NUL character (\\u0000), which no id may hold; remove it",
            )),
            Json::String(id) => Err(FieldError::new(
                path,
                Some(&id),
                format!("must hold 1 to {} bytes", MAX_ID_LEN * 2),
            )),
            Json::Number(n) if n.is_u64() || n.is_i64() => Ok(Value::Text(n.to_string())),
            other => Err(FieldError::mistyped(path, &other, "a string or an integer id")),
        },
        FieldType::Amount => {
            let text = match json {
                Json::String(text) => text,
                Json::Number(n) => n.to_string(),
                other => return Err(FieldError::mistyped(path, &other, "a decimal amount such as 149.90")),
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
                Ok(Value::Text(code))
            }
            Json::String(code) => Err(FieldError::new(
                path,
                Some(&code),
                "is not a currency code; use three upper-case letters (ISO 4217) such as USD",
            )),
            other => Err(FieldError::mistyped(path, &other, "a currency code such as \"USD\"")),
        },
        FieldType::Timestamp => parse_timestamp(path, &json).map(Value::Timestamp),
        FieldType::Enum(words) => match json {
            Json::String(word) if words.contains(&word.as_str()) => Ok(Value::Text(word)),
            Json::String(word) => Err(FieldError::new(
                path,
                Some(&word),
                format!("is not one of {}", words.join(", ")),
            )),
            other => Err(FieldError::mistyped(
                path,
                &other,
                &format!("one of {}", words.join(", ")),
            )),
        },
    }
}

fn parse_timestamp(path: &str, json: &Json) -> Result<DateTime<FixedOffset>, FieldError> {
    const FIX: &str = "use RFC 3339 with an offset, such as \"2026-11-20T14:03:00Z\"";
    match json {
        Json::String(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| FieldError::new(path, Some(text), format!("is not a valid timestamp ({e}); {FIX}"))),
        other => Err(FieldError::mistyped(path, other, &format!("a string timestamp; {FIX}"))),
    }
}
