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

/// The longest envelope text kept as it was sent (see [`Event::from_valid_json_kept`]); an
/// event with every field of the catalogue is about 1 KiB.
pub const MAX_KEPT_TEXT: usize = 8 * 1024;

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

    /// The event when `text` is a valid envelope, read without building a JSON tree; `None`
    /// for anything else, including valid envelopes written unusually (a key twice, a `null`
    /// field), which [`Event::from_value`] then reads or explains.
    ///
    /// Events are read on every accept and on every attempt, so the common case is kept
    /// cheap; the values go through the same checks as in [`Event::from_value`].
    pub fn from_valid_json(text: &str) -> Option<Event> {
        let envelope: fast::Envelope = serde_json::from_str(text).ok()?;
        let event_type = EventType::parse(&envelope.event_type)?;
        if !valid_id(&envelope.id) || !valid_id(&envelope.partner_id) {
            return None;
        }
        let occurred_at = DateTime::parse_from_rfc3339(&envelope.occurred_at).ok()?;
        let mut values = vec![None; CATALOGUE.len()];
        for (name, scalar) in envelope.data.0 {
            let field = catalogue::lookup(&name)?;
            let placeholder = &CATALOGUE[field];
            if placeholder.source != Source::Data || values[field].is_some() {
                return None;
            }
            let json = match scalar {
                fast::Scalar::Null => return None,
                fast::Scalar::Text(text) => Json::String(text.into_owned()),
                fast::Scalar::Number(number) => Json::Number(number),
            };
            values[field] = Some(parse_value("", placeholder.ty, json).ok()?);
        }
        for name in event_type.required() {
            values[catalogue::lookup(name).expect("required fields are in the catalogue")].as_ref()?;
        }
        let id = envelope.id.into_owned();
        values[catalogue::EVENT_ID] = Some(Value::Text(id.clone()));
        values[catalogue::EVENT_TYPE] = Some(Value::Text(event_type.as_str().to_owned()));
        values[catalogue::EVENT_DATE] = Some(Value::Timestamp(occurred_at));
        Some(Event {
            id,
            event_type,
            partner_id: envelope.partner_id.into_owned(),
            occurred_at,
            values,
            sent: Sent::default(),
        })
    }

    /// [`Event::from_valid_json`], keeping `text` to be stored as it was sent (see
    /// [`Event::sent_text`]): writing the envelope again costs about half as much as reading it.
    /// A text longer than [`MAX_KEPT_TEXT`] is not kept: its event is written compactly, so that
    /// whitespace cannot make an event take more room than its values.
    pub fn from_valid_json_kept(text: &str) -> Option<Event> {
        let mut event = Event::from_valid_json(text)?;
        if text.len() <= MAX_KEPT_TEXT {
            event.sent = Sent(Some(text.into()));
        }
        Some(event)
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
            sent: Sent::default(),
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
            if valid_id(id) {
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

fn valid_id(id: &str) -> bool {
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
fn parse_value(path: &str, ty: FieldType, json: Json) -> Result<Value, FieldError> {
    match ty {
        FieldType::Text => match json {
            Json::String(text) if text.len() <= MAX_TEXT_LEN => Ok(Value::Text(text)),
            Json::String(text) => Err(FieldError::new(
                path,
                Some(&text),
                format!("is {} bytes long; the limit is {MAX_TEXT_LEN}", text.len()),
            )),
            other => Err(mistyped(path, &other, "a string")),
        },
        FieldType::Id => match json {
            Json::String(id) if !id.is_empty() && id.len() <= MAX_ID_LEN * 2 => Ok(Value::Text(id)),
            Json::String(id) => Err(FieldError::new(
                path,
                Some(&id),
                format!("must hold 1 to {} bytes", MAX_ID_LEN * 2),
            )),
            Json::Number(n) if n.is_u64() || n.is_i64() => Ok(Value::Text(n.to_string())),
            other => Err(mistyped(path, &other, "a string or an integer id")),
        },
        FieldType::Amount => {
            let text = match json {
                Json::String(text) => text,
                Json::Number(n) => n.to_string(),
                other => return Err(mistyped(path, &other, "a decimal amount such as 149.90")),
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
            other => Err(mistyped(path, &other, "a currency code such as \"USD\"")),
        },
        FieldType::Timestamp => parse_timestamp(path, &json).map(Value::Timestamp),
        FieldType::Enum(words) => match json {
            Json::String(word) if words.contains(&word.as_str()) => Ok(Value::Text(word)),
            Json::String(word) => Err(FieldError::new(
                path,
                Some(&word),
                format!("is not one of {}", words.join(", ")),
            )),
            other => Err(mistyped(path, &other, &format!("one of {}", words.join(", ")))),
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

/// The envelope read and written without a JSON tree in between.
mod fast {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, Deserializer, MapAccess, Visitor};
    use serde::ser::{SerializeMap, Serializer};
    use serde::{Deserialize, Serialize};

    use super::{CATALOGUE, Event, Source, Value, format_timestamp};

    /// The envelope with its strings borrowed from the text where they need no unescaping.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Envelope<'a> {
        #[serde(borrow)]
        pub id: Cow<'a, str>,
        #[serde(rename = "type", borrow)]
        pub event_type: Cow<'a, str>,
        #[serde(borrow)]
        pub partner_id: Cow<'a, str>,
        #[serde(borrow)]
        pub occurred_at: Cow<'a, str>,
        #[serde(borrow)]
        pub data: Data<'a>,
    }

    /// `data`'s entries in order; anything but an object of scalars is refused.
    pub(super) struct Data<'a>(pub Vec<(Cow<'a, str>, Scalar<'a>)>);

    /// A value in `data`.
    pub(super) enum Scalar<'a> {
        Null,
        Text(Cow<'a, str>),
        Number(serde_json::Number),
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Entries<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> Visitor<'de> for Entries<'a> {
                type Value = Data<'a>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object of scalars")
                }
                fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Data<'a>, M::Error> {
                    let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                    while let Some(key) = map.next_key::<Cow<'a, str>>()? {
                        entries.push((key, map.next_value::<Scalar<'a>>()?));
                    }
                    Ok(Data(entries))
                }
            }
            deserializer.deserialize_map(Entries(std::marker::PhantomData))
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct One<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> Visitor<'de> for One<'a> {
                type Value = Scalar<'a>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string, a number or null")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                    Ok(Scalar::Text(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'a>, E> {
                    Ok(Scalar::Text(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'a>, E> {
                    Ok(Scalar::Text(Cow::Owned(v)))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'a>, E> {
                    Ok(Scalar::Number(v.into()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'a>, E> {
                    Ok(Scalar::Number(v.into()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'a>, E> {
                    serde_json::Number::from_f64(v)
                        .map(Scalar::Number)
                        .ok_or_else(|| E::custom("not a finite number"))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Scalar<'a>, E> {
                    Ok(Scalar::Null)
                }
            }
            deserializer.deserialize_any(One(std::marker::PhantomData))
        }
    }

    /// Writes what [`Event::to_json`] builds, in the same key order.
    pub(super) struct Canonical<'a>(pub &'a Event);

    impl Serialize for Canonical<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let event = self.0;
            let mut map = serializer.serialize_map(Some(5))?;
            map.serialize_entry("id", &event.id)?;
            map.serialize_entry("type", event.event_type.as_str())?;
            map.serialize_entry("partner_id", &event.partner_id)?;
            map.serialize_entry("occurred_at", &format_timestamp(&event.occurred_at))?;
            map.serialize_entry("data", &DataOf(event))?;
            map.end()
        }
    }

    struct DataOf<'a>(&'a Event);

    impl Serialize for DataOf<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(None)?;
            for (field, value) in self.0.values.iter().enumerate() {
                if let (Some(value), Source::Data) = (value, CATALOGUE[field].source) {
                    map.serialize_entry(CATALOGUE[field].name, &Text(value))?;
                }
            }
            map.end()
        }
    }

    /// A value as the text [`Value::write_text`] gives.
    struct Text<'a>(&'a Value);

    impl Serialize for Text<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Value::Text(text) => serializer.serialize_str(text),
                Value::Amount(amount) => serializer.collect_str(amount),
                Value::Timestamp(at) => serializer.serialize_str(&format_timestamp(at)),
            }
        }
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

    /// What the fast reading and writing of envelopes give is what the JSON-tree ones give.
    mod fast_path {
        use proptest::prelude::*;

        use super::*;

        fn scalar() -> impl Strategy<Value = Json> {
            prop_oneof![
                Just(Json::Null),
                any::<u32>().prop_map(Json::from),
                any::<i64>().prop_map(Json::from),
                (-1e9f64..1e9).prop_map(Json::from),
                "[A-Z]{3}".prop_map(Json::from),
                "[0-9]{1,6}(\\.[0-9]{1,3})?".prop_map(Json::from),
                "2026-(0[1-9]|1[0-2])-1[0-9]T1[0-9]:00:00(Z|\\+02:00|\\.5Z)".prop_map(Json::from),
                prop::sample::select(vec!["UNTRACKED", "VALID", "DECLINED", "", "x\"\\\u{1}<&>é"]).prop_map(Json::from),
                any::<String>().prop_map(Json::from),
                Just(json!(true)),
                Just(json!([1])),
            ]
        }

        fn envelope() -> impl Strategy<Value = Json> {
            let names: Vec<&'static str> = CATALOGUE.iter().map(|p| p.name).chain(["Unknown", "orderid"]).collect();
            (
                prop::sample::select(vec!["evt_1", "evt 2", "", "a:b.c-d_e"]),
                prop::sample::select(vec!["action_inquiry.created", "action_inquiry.resolved", "other"]),
                prop::sample::select(vec!["2026-11-20T14:03:00Z", "2026-11-20T14:03:00.250+05:30", "today"]),
                prop::collection::vec((prop::sample::select(names), scalar()), 0..12),
                any::<bool>(),
            )
                .prop_map(|(id, ty, at, data, with_id)| {
                    let mut data: Map<String, Json> = data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    if with_id {
                        data.insert("ActionInquiryId".into(), json!("1000123"));
                    }
                    json!({"id": id, "type": ty, "partner_id": "ptn_1", "occurred_at": at, "data": data})
                })
        }

        /// A value its field accepts.
        fn valid(ty: FieldType) -> BoxedStrategy<Json> {
            match ty {
                FieldType::Text => ".{0,40}".prop_map(Json::from).boxed(),
                FieldType::Id => prop_oneof!["[A-Za-z0-9\"\\ -]{1,20}".prop_map(Json::from), any::<u64>().prop_map(Json::from)]
                    .boxed(),
                FieldType::Amount => prop_oneof![
                    "-?[0-9]{1,7}(\\.[0-9]{1,4})?".prop_map(Json::from),
                    (-1e7f64..1e7).prop_map(Json::from),
                    any::<i32>().prop_map(Json::from)
                ]
                .boxed(),
                FieldType::Currency => "[A-Z]{3}".prop_map(Json::from).boxed(),
                FieldType::Timestamp => "20[0-9]{2}-0[1-9]-(1[0-9]|2[0-8])T[01][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]0[0-9]:[03]0)"
                    .prop_map(Json::from)
                    .boxed(),
                FieldType::Enum(words) => prop::sample::select(words.to_vec()).prop_map(Json::from).boxed(),
            }
        }

        /// A valid resolved event with any of the data fields.
        fn valid_envelope() -> impl Strategy<Value = Json> {
            let fields: Vec<BoxedStrategy<Option<(&'static str, Json)>>> = CATALOGUE
                .iter()
                .filter(|p| p.source == Source::Data)
                .map(|p| {
                    let name = p.name;
                    let required = matches!(name, "ActionInquiryId" | "ResolutionStatus");
                    let value = valid(p.ty).prop_map(move |v| Some((name, v)));
                    if required {
                        value.boxed()
                    } else {
                        prop_oneof![Just(None), value].boxed()
                    }
                })
                .collect();
            fields.prop_map(|fields| {
                let data: Map<String, Json> = fields.into_iter().flatten().map(|(k, v)| (k.to_owned(), v)).collect();
                json!({"id": "evt_1", "type": "action_inquiry.resolved", "partner_id": "ptn_1",
                       "occurred_at": "2026-11-20T14:03:00+01:00", "data": data})
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            #[test]
            fn reads_valid_events_fast(json in valid_envelope()) {
                // Both readings start from the text, as the API's do.
                let text = json.to_string();
                let slow = Event::from_value(&serde_json::from_str(&text).unwrap()).map_err(|e| e.to_string());
                prop_assert!(slow.is_ok(), "{:?}", slow);
                prop_assert_eq!(Event::from_valid_json(&text).ok_or_else(String::new), slow);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(600))]
            #[test]
            fn agrees_with_the_tree(json in envelope()) {
                let text = json.to_string();
                let json: Json = serde_json::from_str(&text).unwrap();
                let slow = Event::from_value(&json);
                match Event::from_valid_json(&text) {
                    Some(fast) => prop_assert_eq!(Ok(fast), slow.map_err(|e| e.to_string())),
                    // Only nulls in data may send a valid event the long way.
                    None => prop_assert!(slow.is_err() || text.contains("null"), "{}", text),
                }
                if let Ok(event) = Event::from_value(&json) {
                    let canonical = event.to_json_string();
                    prop_assert_eq!(&canonical, &event.to_json().to_string());
                    prop_assert_eq!(Event::from_valid_json(&canonical), Some(event));
                }
            }
        }

        #[test]
        fn unusual_envelopes_take_the_long_way() {
            let valid = r#"{"id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1"}}"#;
            assert!(Event::from_valid_json(valid).is_some());
            for text in [
                r#"{"id":"e","id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1"}}"#,
                r#"{"id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1","ActionInquiryId":"2"}}"#,
                r#"{"id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1","EventId":"x"}}"#,
                r#"{"id":"e","type":"action_inquiry.created","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1"},"x":1}"#,
                r#"{"id":"e","type":"action_inquiry.resolved","partner_id":"p","occurred_at":"2026-11-20T14:03:00Z","data":{"ActionInquiryId":"1"}}"#,
                r#"[]"#,
                r#"{"id":"e""#,
            ] {
                assert_eq!(Event::from_valid_json(text), None, "{text}");
            }
            // Escaped strings are read like any other.
            let escaped = valid.replace(r#""1""#, r#""\u0031\"""#);
            let event = Event::from_valid_json(&escaped).expect("valid");
            assert_eq!(event.action_inquiry_id(), "1\"");
        }
    }

    #[test]
    fn samples_are_valid() {
        for ty in EventType::ALL {
            let sample = Event::sample(ty, "ptn_demo");
            assert_eq!(sample.event_type, ty);
        }
    }
}
