//! Events: the envelope the platform posts, validated field by field into typed values.
//!
//! ```json
//! {"id": "evt_1", "type": "action_inquiry.created", "partner_id": "ptn_1",
//!  "occurred_at": "2026-11-20T14:03:00Z", "data": {"ActionInquiryId": "1000123", "OrderId": "ORD-1"}}
//! ```
//!
//! `data` keys are the placeholder names of the [`crate::catalogue`]. Values are checked
//! against their type here, once, so rendering never meets a malformed value.

use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::catalogue::{self, CATALOGUE, FieldId, Source};
use crate::id::{EventId, PartnerId};

/// The kinds of event Postwire delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

/// The longest envelope text kept as it was sent (see [`Event::from_valid_json_kept`]); an
/// event with every field of the catalogue is about 1 KiB.
pub const MAX_KEPT_TEXT: usize = 8 * 1024;

/// The longest event or partner id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The platform's id of the event; with `partner_id`, the idempotency key.
    pub id: EventId,
    /// What happened.
    pub event_type: EventType,
    /// The partner whose postback this is.
    pub partner_id: PartnerId,
    /// When it happened.
    pub occurred_at: DateTime<FixedOffset>,
    /// Values by [`FieldId`]; `None` where the event does not carry the field.
    values: Vec<Option<Value>>,
    /// The valid envelope text the event was read from, when it was read from text.
    sent: Sent,
}

/// The envelope text an event was read from. It never tells two events apart: an event is its
/// values, however they were written.
#[derive(Clone, Default)]
struct Sent(Option<Box<str>>);

impl PartialEq for Sent {
    fn eq(&self, _: &Sent) -> bool {
        true
    }
}

impl fmt::Debug for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Sent(..)" } else { "Sent(None)" })
    }
}

impl Event {
    /// Parses and validates an envelope from JSON text.
    pub fn from_json(text: &str) -> Result<Event, crate::Error> {
        if let Some(event) = Event::from_valid_json(text) {
            return Ok(event);
        }
        let json: Json = serde_json::from_str(text).map_err(|source| crate::Error::Json {
            what: "the event".into(),
            source,
        })?;
        Ok(Event::from_value(&json)?)
    }

    /// The valid envelope text the event was read from by [`Event::from_valid_json_kept`]: it
    /// reads back to this same event, so it can be stored as it was sent.
    pub fn sent_text(&self) -> Option<&str> {
        self.sent.0.as_deref()
    }

    /// Lets go of the text the event was read from, once it is stored.
    pub fn forget_text(&mut self) {
        self.sent = Sent::default();
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

    /// The envelope as compact JSON text: exactly `to_json().to_string()`, written directly.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&fast::Canonical(self)).expect("an event always serializes")
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

mod fast;
#[cfg(test)]
mod tests;
mod validate;
