//! The event a postback is about.

use std::str::FromStr;

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    id: String,
    event_type: String,
    partner_id: String,
    occurred_at: String,
    data: Vec<(String, String)>,
}

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
        self.partner_id = partner_id.into();
        self
    }

    /// The same event with this time (RFC 3339).
    pub fn with_occurred_at(mut self, occurred_at: impl Into<String>) -> Event {
        self.occurred_at = occurred_at.into();
        self
    }

    /// The same event with this data field added (replacing one of the same name).
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Event {
        let (name, value) = (name.into(), value.into());
        match self.data.iter_mut().find(|(n, _)| *n == name) {
            Some(field) => field.1 = value,
            None => self.data.push((name, value)),
        }
        self
    }

    pub(crate) fn from_parts(
        id: String,
        event_type: String,
        partner_id: String,
        occurred_at: String,
        data: Vec<(String, String)>,
    ) -> Event {
        Event {
            id,
            event_type,
            partner_id,
            occurred_at,
            data,
        }
    }

    /// The platform's event id (`EventId`): the same on every retry of its postback.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `action_inquiry.created` or `action_inquiry.resolved` (`EventType`).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The partner the postback is for.
    pub fn partner_id(&self) -> &str {
        &self.partner_id
    }

    /// When it happened, RFC 3339 (`EventDate`).
    pub fn occurred_at(&self) -> &str {
        &self.occurred_at
    }

    /// When it happened, in seconds since 1970.
    pub fn occurred_at_unix(&self) -> Option<i64> {
        parse::unix_seconds(&self.occurred_at)
    }

    /// The value of the placeholder `name` (case-sensitive, as in templates), if the event
    /// carries it: a data field, or `EventId`, `EventType`, `EventDate`.
    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "EventId" => Some(&self.id),
            "EventType" => Some(&self.event_type),
            "EventDate" => Some(&self.occurred_at),
            _ => self
                .data
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.as_str()),
        }
    }

    /// The data fields, in the order the event carries them (envelope fields not included).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.data.iter().map(|(name, value)| (name.as_str(), value.as_str()))
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
