//! The placeholder catalogue: every value a postback template may name.
//!
//! The catalogue is data, not code scattered over the renderer: the event validator, the template
//! compiler, `postwire placeholders` and the docs all read this one table. A placeholder's position
//! in [`CATALOGUE`] is its [`FieldId`], so a compiled template refers to values by index and never
//! looks a name up while rendering.

use serde::Serialize;

/// What kind of value a placeholder holds; decides validation and default formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text, up to [`MAX_TEXT_LEN`] bytes.
    Text,
    /// An identifier: a JSON string or integer, kept as text.
    Id,
    /// A decimal amount such as `125.50`; a JSON number or a numeric string.
    Amount,
    /// A currency code: three upper-case letters (ISO 4217).
    Currency,
    /// An RFC 3339 / ISO 8601 timestamp with an offset, such as `2026-11-20T14:03:00Z`.
    Timestamp,
    /// One of a fixed list of upper-case words.
    Enum(&'static [&'static str]),
}

impl FieldType {
    /// The name shown to users, e.g. in `postwire placeholders`.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Id => "id",
            FieldType::Amount => "amount",
            FieldType::Currency => "currency",
            FieldType::Timestamp => "timestamp",
            FieldType::Enum(_) => "enum",
        }
    }
}

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The event envelope (`id`, `type`, `occurred_at`): present on every event.
    Envelope,
    /// The event's `data` object.
    Data,
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Placeholder {
    /// The name used in templates (`{OrderId}`) and as the key in an event's `data`.
    pub name: &'static str,
    /// The kind of value.
    #[serde(rename = "type", serialize_with = "serialize_type")]
    pub ty: FieldType,
    /// Where the value comes from.
    pub source: Source,
    /// What the value means, for people configuring postbacks.
    pub description: &'static str,
    /// A realistic value, used in docs and to test-render templates on save.
    pub example: &'static str,
}

fn serialize_type<S: serde::Serializer>(ty: &FieldType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(ty.name())
}

/// Index of a placeholder in [`CATALOGUE`].
pub type FieldId = usize;

/// The longest text value an event may carry in one field, in bytes.
pub const MAX_TEXT_LEN: usize = 4096;

/// Inquiry types, as the platform names them.
pub const INQUIRY_TYPES: &[&str] = &["UNTRACKED", "INCORRECT", "DECLINED"];
/// Resolution states, as the platform names them.
pub const RESOLUTION_STATUSES: &[&str] = &["UNRESOLVED", "VALID", "DECLINED", "INCOMPLETE"];

macro_rules! placeholder {
    ($name:literal, $ty:expr, $source:ident, $description:literal, $example:literal) => {
        Placeholder {
            name: $name,
            ty: $ty,
            source: Source::$source,
            description: $description,
            example: $example,
        }
    };
}

use FieldType::*;

/// Every placeholder, envelope fields first, then the action inquiry's data fields.
pub const CATALOGUE: &[Placeholder] = &[
    placeholder!(
        "EventId",
        Id,
        Envelope,
        "Unique id of the event; the same on every retry of its postback.",
        "evt_01JD7Y3M4W1Q9"
    ),
    placeholder!(
        "EventType",
        Text,
        Envelope,
        "`action_inquiry.created` or `action_inquiry.resolved`.",
        "action_inquiry.created"
    ),
    placeholder!(
        "EventDate",
        Timestamp,
        Envelope,
        "When the event happened (the envelope's `occurred_at`).",
        "2026-11-20T14:03:00Z"
    ),
    placeholder!(
        "ActionInquiryId",
        Id,
        Data,
        "The platform's id of the action inquiry.",
        "1000123"
    ),
    placeholder!(
        "MediaPartnerInquiryId",
        Id,
        Data,
        "The partner's own reference for the inquiry.",
        "INQ-7781"
    ),
    placeholder!("CampaignId", Id, Data, "Id of the brand's campaign (program).", "4521"),
    placeholder!(
        "CampaignName",
        Text,
        Data,
        "Name of the brand's campaign.",
        "Acme Outdoor US"
    ),
    placeholder!("OrderId", Id, Data, "The order the inquiry is about.", "ORD-99812"),
    placeholder!(
        "TransactionDate",
        Timestamp,
        Data,
        "When the customer's transaction happened.",
        "2026-11-02T18:22:10Z"
    ),
    placeholder!(
        "TransactionAmount",
        Amount,
        Data,
        "Sale amount of the transaction.",
        "149.90"
    ),
    placeholder!("Currency", Currency, Data, "Currency of the amounts (ISO 4217).", "USD"),
    placeholder!("CustomerId", Id, Data, "The brand's id of the customer.", "CUST-3321"),
    placeholder!(
        "InquiryDate",
        Timestamp,
        Data,
        "When the inquiry was opened.",
        "2026-11-20T14:03:00Z"
    ),
    placeholder!(
        "InquiryType",
        Enum(INQUIRY_TYPES),
        Data,
        "Why the inquiry was opened: UNTRACKED, INCORRECT or DECLINED.",
        "UNTRACKED"
    ),
    placeholder!(
        "ExpectedPayout",
        Amount,
        Data,
        "The payout the partner expects.",
        "12.50"
    ),
    placeholder!(
        "ResolutionDeadlineDate",
        Timestamp,
        Data,
        "When the brand must resolve the inquiry by.",
        "2026-12-20T00:00:00Z"
    ),
    placeholder!(
        "InquiryNotes",
        Text,
        Data,
        "Notes the partner wrote on the inquiry.",
        "Customer used a coupon; the click was on Nov 1."
    ),
    placeholder!(
        "TrackingLink",
        Text,
        Data,
        "The tracking link the customer followed.",
        "https://acme.example/c/123/456?subId1=spring"
    ),
    placeholder!(
        "ActionId",
        Id,
        Data,
        "The tracked action created or matched for the inquiry.",
        "19816.4410.221"
    ),
    placeholder!(
        "AutoApprovalDate",
        Timestamp,
        Data,
        "When the inquiry is approved automatically if the brand does nothing.",
        "2026-12-21T00:00:00Z"
    ),
    placeholder!(
        "ResolutionStatus",
        Enum(RESOLUTION_STATUSES),
        Data,
        "UNRESOLVED, VALID, DECLINED or INCOMPLETE.",
        "VALID"
    ),
    placeholder!(
        "RejectReason",
        Text,
        Data,
        "Why the brand declined the inquiry.",
        "Order was returned"
    ),
    placeholder!(
        "FinalPayout",
        Amount,
        Data,
        "The payout granted when the inquiry was resolved.",
        "11.25"
    ),
    placeholder!(
        "ResolutionDate",
        Timestamp,
        Data,
        "When the inquiry was resolved.",
        "2026-11-25T09:30:00Z"
    ),
    placeholder!(
        "CreationDate",
        Timestamp,
        Data,
        "When the inquiry record was created.",
        "2026-11-20T14:03:00Z"
    ),
    placeholder!("MediaPartnerId", Id, Data, "The partner's id on the platform.", "88123"),
    placeholder!(
        "MediaPartnerName",
        Text,
        Data,
        "The partner's name on the platform.",
        "Trail Deals"
    ),
    placeholder!("SubId1", Text, Data, "Sub id 1 of the tracking link.", "spring"),
    placeholder!("SubId2", Text, Data, "Sub id 2 of the tracking link.", "email"),
    placeholder!("SubId3", Text, Data, "Sub id 3 of the tracking link.", "b"),
    placeholder!(
        "SharedId",
        Text,
        Data,
        "Shared id of the tracking link.",
        "newsletter-11"
    ),
];

/// The [`FieldId`] of `EventId`.
pub const EVENT_ID: FieldId = 0;
/// The [`FieldId`] of `EventType`.
pub const EVENT_TYPE: FieldId = 1;
/// The [`FieldId`] of `EventDate`.
pub const EVENT_DATE: FieldId = 2;

/// Finds a placeholder by its exact (case-sensitive) name.
pub fn lookup(name: &str) -> Option<FieldId> {
    // Every field of every event read is looked up: only the few names of the same length are
    // compared.
    static BY_LENGTH: std::sync::LazyLock<Vec<Vec<(&'static str, FieldId)>>> = std::sync::LazyLock::new(|| {
        let longest = CATALOGUE.iter().map(|p| p.name.len()).max().unwrap_or(0);
        let mut by_length = vec![Vec::new(); longest + 1];
        for (id, placeholder) in CATALOGUE.iter().enumerate() {
            by_length[placeholder.name.len()].push((placeholder.name, id));
        }
        by_length
    });
    BY_LENGTH
        .get(name.len())?
        .iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|(_, id)| *id)
}

/// The known name closest to `name`, for "did you mean" hints; `None` when nothing is close.
pub fn suggest(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    CATALOGUE
        .iter()
        .map(|p| {
            let distance = strsim::levenshtein(&lower, &p.name.to_ascii_lowercase());
            (distance, p.name)
        })
        .filter(|(distance, candidate)| *distance <= 3.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_ids_match_their_names() {
        assert_eq!(lookup("EventId"), Some(EVENT_ID));
        assert_eq!(lookup("EventType"), Some(EVENT_TYPE));
        assert_eq!(lookup("EventDate"), Some(EVENT_DATE));
        for unknown in ["", "orderid", "OrderID", "OrderIdX", "Zzz", "AAA"] {
            assert_eq!(lookup(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn names_are_unique_and_pascal_case() {
        for (i, p) in CATALOGUE.iter().enumerate() {
            assert_eq!(lookup(p.name), Some(i), "duplicate name {}", p.name);
            assert!(p.name.chars().next().unwrap().is_ascii_uppercase(), "{}", p.name);
            assert!(p.name.chars().all(|c| c.is_ascii_alphanumeric()), "{}", p.name);
        }
    }

    #[test]
    fn suggests_the_nearest_name() {
        assert_eq!(suggest("OrderID"), Some("OrderId"));
        assert_eq!(suggest("orderid"), Some("OrderId"));
        assert_eq!(suggest("TransactionAmmount"), Some("TransactionAmount"));
        assert_eq!(suggest("SubId4"), Some("SubId1"));
        assert_eq!(suggest("Completely"), None);
    }
}
