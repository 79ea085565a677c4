//! The fast path: a valid envelope read and written without a JSON tree in between.
//!
//! Events are read on every accept and on every attempt, so the common case is kept cheap;
//! the values go through the same checks as in [`Event::from_value`], and anything unusual
//! falls back to it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use chrono::DateTime;
use serde_json::Value as Json;

use super::validate::{parse_value, valid_id};
use super::{Event, EventType, MAX_KEPT_TEXT, Sent, Value, format_timestamp};
use crate::catalogue::{self, CATALOGUE, Source};

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

impl Event {
    /// The event when `text` is a valid envelope, read without building a JSON tree; `None`
    /// for anything else, including valid envelopes written unusually (a key twice, a `null`
    /// field), which [`Event::from_value`] then reads or explains.
    ///
    /// Events are read on every accept and on every attempt, so the common case is kept
    /// cheap; the values go through the same checks as in [`Event::from_value`].
    pub fn from_valid_json(text: &str) -> Option<Event> {
        let envelope: Envelope = serde_json::from_str(text).ok()?;
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
                Scalar::Null => return None,
                Scalar::Text(text) => Json::String(text.into_owned()),
                Scalar::Number(number) => Json::Number(number),
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
            id: id.into(),
            event_type,
            partner_id: envelope.partner_id.into_owned().into(),
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
}
