//! The event a postback is about.

use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::str::FromStr;

use crate::__private::transformer::postwire::plugin::types as wit;
use crate::parse;

/// The event a postback is about: its envelope (id, type, partner, time) and the data fields
/// it carries, by placeholder name (`OrderId`, `TransactionAmount`, ...), in text form:
/// amounts as decimals (`149.90`), timestamps as RFC 3339 (`2026-11-20T14:03:00Z`).
///
/// [`get`](Event::get) and the typed getters also answer the envelope's placeholders
/// `EventId`, `EventType` and `EventDate`.
///
/// ```
/// use postwire_sdk::Event;
///
/// let event = Event::new("evt_1", "action_inquiry.created")
///     .with_occurred_at("2026-11-20T14:03:00Z")
///     .with_field("OrderId", "ORD-99812")
///     .with_field("TransactionAmount", "149.90");
/// assert_eq!(event.get("OrderId"), Some("ORD-99812"));
/// assert_eq!(event.cents("TransactionAmount"), Some(14990));
/// assert_eq!(event.timestamp_unix("EventDate"), Some(1_795_183_380));
/// assert_eq!(event.get("SubId1"), None);
/// ```
#[derive(Default)]
pub struct Event {
    id: String,
    event_type: String,
    partner_id: String,
    occurred_at: String,
    data: Vec<(String, String)>,
    /// The host's event, when this is the event of a call.
    host: Option<HostEvent>,
}

/// The host's event and what was read from it. A plugin fetches only the values it reads, each
/// once: values are only ever added here, each in a box of its own, so a `&str` handed out
/// stays valid as long as the event does.
struct HostEvent {
    handle: std::mem::ManuallyDrop<wit::Event>,
    envelope: [OnceCell<String>; 4],
    read: RefCell<Vec<Read>>,
    fields: OnceCell<Vec<(String, String)>>,
}

/// A field asked for by name, and its value if the event carries it.
type Read = (Box<str>, Option<Box<str>>);

const ID: usize = 0;
const EVENT_TYPE: usize = 1;
const PARTNER_ID: usize = 2;
const OCCURRED_AT: usize = 3;

impl Event {
    /// An event with this id and type, no partner, no time and no data: for tests.
    pub fn new(id: impl Into<String>, event_type: impl Into<String>) -> Event {
        Event {
            id: id.into(),
            event_type: event_type.into(),
            ..Event::default()
        }
    }

    /// The same event with this partner.
    pub fn with_partner_id(mut self, partner_id: impl Into<String>) -> Event {
        self.own();
        self.partner_id = partner_id.into();
        self
    }

    /// The same event with this time (RFC 3339).
    pub fn with_occurred_at(mut self, occurred_at: impl Into<String>) -> Event {
        self.own();
        self.occurred_at = occurred_at.into();
        self
    }

    /// The same event with this data field added (replacing one of the same name).
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Event {
        self.own();
        let (name, value) = (name.into(), value.into());
        match self.data.iter_mut().find(|(n, _)| *n == name) {
            Some(field) => field.1 = value,
            None => self.data.push((name, value)),
        }
        self
    }

    /// The event of a call, read through the handle the host lent it.
    ///
    /// # Safety
    ///
    /// The event must not outlive the call `event` was lent for, since it uses the handle
    /// without owning it. (A clone copies every value out, and may.)
    pub(crate) unsafe fn lent(event: &wit::Event) -> Event {
        // SAFETY: the caller keeps this event within the call; `ManuallyDrop` keeps the handle
        // from being dropped, which only its owner, the host, may do.
        let handle = std::mem::ManuallyDrop::new(unsafe { wit::Event::from_handle(event.handle()) });
        Event {
            host: Some(HostEvent {
                handle,
                envelope: Default::default(),
                read: RefCell::new(Vec::new()),
                fields: OnceCell::new(),
            }),
            ..Event::default()
        }
    }

    /// Copies every value out of the host's event, which this one then no longer uses.
    fn own(&mut self) {
        if self.host.is_some() {
            *self = self.owned();
        }
    }

    /// The same event with every value copied out of the host's.
    fn owned(&self) -> Event {
        Event {
            id: self.id().to_owned(),
            event_type: self.event_type().to_owned(),
            partner_id: self.partner_id().to_owned(),
            occurred_at: self.occurred_at().to_owned(),
            data: self
                .fields()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            host: None,
        }
    }

    fn envelope(&self, which: usize, fetch: fn(&wit::Event) -> String) -> &str {
        match &self.host {
            Some(host) => host.envelope[which].get_or_init(|| fetch(&host.handle)),
            None => [&self.id, &self.event_type, &self.partner_id, &self.occurred_at][which],
        }
    }

    /// The platform's event id (`EventId`): the same on every retry of its postback.
    pub fn id(&self) -> &str {
        self.envelope(ID, wit::Event::id)
    }

    /// `action_inquiry.created` or `action_inquiry.resolved` (`EventType`).
    pub fn event_type(&self) -> &str {
        self.envelope(EVENT_TYPE, wit::Event::event_type)
    }

    /// The partner the postback is for.
    pub fn partner_id(&self) -> &str {
        self.envelope(PARTNER_ID, wit::Event::partner_id)
    }

    /// When it happened, RFC 3339 (`EventDate`).
    pub fn occurred_at(&self) -> &str {
        self.envelope(OCCURRED_AT, wit::Event::occurred_at)
    }

    /// When it happened, in seconds since 1970.
    pub fn occurred_at_unix(&self) -> Option<i64> {
        parse::unix_seconds(self.occurred_at())
    }

    /// The value of the placeholder `name` (case-sensitive, as in templates), if the event
    /// carries it: a data field, or `EventId`, `EventType`, `EventDate`.
    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "EventId" => return Some(self.id()),
            "EventType" => return Some(self.event_type()),
            "EventDate" => return Some(self.occurred_at()),
            _ => {}
        }
        let Some(host) = &self.host else {
            return self
                .data
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.as_str());
        };
        if let Some(fields) = host.fields.get() {
            return fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.as_str());
        }
        let mut read = host.read.borrow_mut();
        let index = match read.iter().position(|(field, _)| &**field == name) {
            Some(index) => index,
            None => {
                read.push((name.into(), host.handle.get(name).map(String::into_boxed_str)));
                read.len() - 1
            }
        };
        let value: *const str = read[index].1.as_deref()?;
        // SAFETY: the value is in a box of its own that is never changed or dropped before
        // `self` (entries are only added), so it outlives the borrow of `self` it is tied to.
        Some(unsafe { &*value })
    }

    /// The data fields, in the order the event carries them (envelope fields not included).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        let fields = match &self.host {
            Some(host) => host.fields.get_or_init(|| {
                host.handle
                    .fields()
                    .into_iter()
                    .map(|field| (field.name, field.value))
                    .collect()
            }),
            None => &self.data,
        };
        fields.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The value of `name` parsed with [`FromStr`]; `None` if absent or not parsable.
    pub fn parse<T: FromStr>(&self, name: &str) -> Option<T> {
        self.get(name)?.trim().parse().ok()
    }

    /// An amount as a float (`149.90` → `149.9`). For money prefer [`cents`](Event::cents),
    /// which is exact.
    pub fn amount(&self, name: &str) -> Option<f64> {
        self.parse::<f64>(name).filter(|amount| amount.is_finite())
    }

    /// An amount in minor units, exactly (`149.90` → `14990`); see [`parse::cents`].
    pub fn cents(&self, name: &str) -> Option<i64> {
        parse::cents(self.get(name)?)
    }

    /// A timestamp in seconds since 1970 (`2026-11-20T14:03:00Z` → `1795183380`); see
    /// [`parse::unix_seconds`].
    pub fn timestamp_unix(&self, name: &str) -> Option<i64> {
        parse::unix_seconds(self.get(name)?)
    }

    /// The same as [`timestamp_unix`](Event::timestamp_unix): `event.unix("EventDate")`.
    pub fn unix(&self, name: &str) -> Option<i64> {
        self.timestamp_unix(name)
    }
}

impl Clone for Event {
    /// A copy of every value: a clone of a call's event no longer reads the host's.
    fn clone(&self) -> Event {
        match &self.host {
            Some(_) => self.owned(),
            None => Event {
                id: self.id.clone(),
                event_type: self.event_type.clone(),
                partner_id: self.partner_id.clone(),
                occurred_at: self.occurred_at.clone(),
                data: self.data.clone(),
                host: None,
            },
        }
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.id() == other.id()
            && self.event_type() == other.event_type()
            && self.partner_id() == other.partner_id()
            && self.occurred_at() == other.occurred_at()
            && self.fields().eq(other.fields())
    }
}

impl Eq for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("event_type", &self.event_type())
            .field("partner_id", &self.partner_id())
            .field("occurred_at", &self.occurred_at())
            .field("data", &self.fields().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::new("evt_01JD7Y3M4W1Q9", "action_inquiry.created")
            .with_partner_id("ptn_demo")
            .with_occurred_at("2026-11-20T14:03:00Z")
            .with_field("OrderId", "ORD-99812")
            .with_field("TransactionAmount", "149.90")
            .with_field("TransactionDate", "2026-11-02T18:22:10Z")
            .with_field("CampaignId", "4521")
            .with_field("SubId1", "")
    }

    #[test]
    fn envelope_and_fields() {
        let event = event();
        assert_eq!(event.id(), "evt_01JD7Y3M4W1Q9");
        assert_eq!(event.event_type(), "action_inquiry.created");
        assert_eq!(event.partner_id(), "ptn_demo");
        assert_eq!(event.occurred_at(), "2026-11-20T14:03:00Z");
        assert_eq!(event.occurred_at_unix(), Some(1_795_183_380));
        assert_eq!(event.get("EventId"), Some("evt_01JD7Y3M4W1Q9"));
        assert_eq!(event.get("EventType"), Some("action_inquiry.created"));
        assert_eq!(event.get("EventDate"), Some("2026-11-20T14:03:00Z"));
        assert_eq!(event.get("OrderId"), Some("ORD-99812"));
        assert_eq!(event.get("orderid"), None);
        assert_eq!(event.get("SubId1"), Some(""));
        assert_eq!(event.get("SubId2"), None);
        assert_eq!(event.fields().count(), 5);
        assert_eq!(event.fields().next(), Some(("OrderId", "ORD-99812")));
    }

    #[test]
    fn typed_getters() {
        let event = event();
        assert_eq!(event.cents("TransactionAmount"), Some(14990));
        assert_eq!(event.amount("TransactionAmount"), Some(149.9));
        assert_eq!(event.parse::<u32>("CampaignId"), Some(4521));
        assert_eq!(event.parse::<u32>("OrderId"), None);
        assert_eq!(event.timestamp_unix("TransactionDate"), Some(1_793_643_730));
        assert_eq!(event.timestamp_unix("EventDate"), Some(1_795_183_380));
        assert_eq!(event.unix("EventDate"), Some(1_795_183_380));
        assert_eq!(event.timestamp_unix("OrderId"), None);
        assert_eq!(event.cents("SubId1"), None);
        assert_eq!(event.cents("Missing"), None);
        assert_eq!(event.amount("OrderId"), None);
    }

    #[test]
    fn with_field_replaces() {
        let event = Event::new("e", "t").with_field("A", "1").with_field("A", "2");
        assert_eq!(event.get("A"), Some("2"));
        assert_eq!(event.fields().count(), 1);
    }
}
