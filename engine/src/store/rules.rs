//! The delivery rules, the same for every backend.
//!
//! Each rule is plain Rust over the facts it decides on. A backend calls it, or, where the rule
//! has to run inside a bulk statement for speed (a `WHERE` clause that picks the rows of an
//! `UPDATE`), renders its SQL form defined next to it here: standard SQL that SQLite and
//! PostgreSQL both read, with the backend's placeholders passed in. Changing a rule means
//! changing it here, in both forms, and the tests below keep the two in step.

use std::collections::HashSet;

use super::{ApiKey, Canary, CanaryState, KeyKind, Next, Partner, Status};
use crate::event::{Event, EventType};
use crate::id::PartnerId;
use crate::settings::NotificationSettings;

// What an event creates.

/// Whether a partner's settings ask for a postback of this event: one delivery per event of a
/// type the settings list, none otherwise.
pub fn wants(settings: &NotificationSettings, event_type: EventType) -> bool {
    settings.events.contains(&event_type)
}

/// When a new delivery is due: `min_delay_secs` after its event occurred, and never before now.
pub fn due_at(occurred_at: i64, min_delay_secs: u64, now: i64) -> i64 {
    (occurred_at + min_delay_secs as i64 * 1000).max(now)
}

/// The type of the delivery of the same inquiry that a new delivery of `event_type` waits for
/// while that one is [on its way](ON_ITS_WAY): a resolved postback waits for the created one,
/// so that a receiver never learns of a resolution before the inquiry.
pub fn waits_for(event_type: EventType) -> Option<EventType> {
    match event_type {
        EventType::ActionInquiryResolved => Some(EventType::ActionInquiryCreated),
        EventType::ActionInquiryCreated => None,
    }
}

/// The type of the deliveries of the same inquiry that a new delivery of `event_type` goes
/// before when they are [untried]: a created postback arriving second still goes first, and the
/// resolved ones wait for it (status [`Status::Blocked`]).
pub fn goes_before(event_type: EventType) -> Option<EventType> {
    match event_type {
        EventType::ActionInquiryCreated => Some(EventType::ActionInquiryResolved),
        EventType::ActionInquiryResolved => None,
    }
}

/// The statuses of a delivery that is still on its way, so that another may wait for it:
/// not delivered and not failed for good.
pub const ON_ITS_WAY: [Status; 3] = [Status::Pending, Status::Blocked, Status::Held];

/// Whether a delivery is on its way (see [`ON_ITS_WAY`]).
pub fn on_its_way(status: Status) -> bool {
    ON_ITS_WAY.contains(&status)
}

/// The SQL form of [`on_its_way`].
pub fn on_its_way_sql() -> String {
    format!("status IN ({})", statuses_sql(&ON_ITS_WAY))
}

/// The statuses of a delivery that another may still go before, when it is [untried].
pub const UNTRIED: [Status; 2] = [Status::Pending, Status::Held];

/// Whether a delivery has not been tried yet and no worker holds it, so that a delivery arriving
/// later may still go before it.
pub fn untried(status: Status, attempts: i64, leased_until: Option<i64>, now: i64) -> bool {
    UNTRIED.contains(&status) && attempts == 0 && !leased(leased_until, now)
}

/// The SQL form of [`untried`]; `now` is the backend's placeholder for the current time.
pub fn untried_sql(now: &str) -> String {
    format!(
        "attempts = 0 AND status IN ({}) AND {}",
        statuses_sql(&UNTRIED),
        not_leased_sql(now)
    )
}

/// Whether a worker holds a delivery now: it claimed it, or it was leased to it at accept, and
/// the lease has not ended.
pub fn leased(leased_until: Option<i64>, now: i64) -> bool {
    leased_until.is_some_and(|until| until > now)
}

/// The SQL form of `!`[`leased`]; `now` is the backend's placeholder for the current time.
pub fn not_leased_sql(now: &str) -> String {
    format!("(leased_until IS NULL OR leased_until <= {now})")
}

/// The status of a new delivery: waiting behind another, held while its endpoint is disabled,
/// or pending.
pub fn initial_status(blocked: bool, endpoint_disabled: bool) -> Status {
    match (blocked, endpoint_disabled) {
        (true, _) => Status::Blocked,
        (false, true) => Status::Held,
        (false, false) => Status::Pending,
    }
}

/// Whether a new delivery may be leased to the accepting worker at once (within the number the
/// worker has room for): only one that is pending and due now.
pub fn lease_at_accept(status: Status, due: i64, now: i64) -> bool {
    status == Status::Pending && due <= now
}

/// True when no two events share an id or an inquiry: then no event of the batch bears on how
/// another is recorded, and every new delivery that is due may be leased at once. Otherwise
/// none is: the later events are recorded knowing the earlier, and the worker claims their
/// deliveries from the store in order.
pub fn independent<'a>(events: impl IntoIterator<Item = &'a Event>) -> bool {
    let mut ids = HashSet::new();
    let mut inquiries = HashSet::new();
    events.into_iter().all(|event| {
        ids.insert((event.partner_id.as_str(), event.id.as_str()))
            && inquiries.insert((event.partner_id.as_str(), event.action_inquiry_id()))
    })
}

// Claims.

/// Whether a delivery is due for a claim: pending, its time has come, and no worker holds it.
///
/// A leased delivery is not due until its lease ends. SQLite's claim also moves `next_at` to
/// the lease's end (its one writer pays nothing for that); PostgreSQL's leaves `next_at`, the
/// pending index's key, alone, so that a lease writes no index entry (a HOT update) and the
/// claim passes over the leased rows at the front of a partner's range instead.
pub fn due(status: Status, next_at: i64, leased_until: Option<i64>, now: i64) -> bool {
    status == Status::Pending && next_at <= now && !leased(leased_until, now)
}

/// The SQL form of [`due`]; `now` is the backend's placeholder for the current time.
pub fn due_sql(now: &str) -> String {
    format!(
        "status = '{}' AND next_at <= {now} AND {}",
        Status::Pending.as_str(),
        not_leased_sql(now)
    )
}

// Fencing.

/// The lease number (fencing token) of a new delivery: 1 when it is leased at accept (that
/// lease is its first), 0 when it waits for a claim. Every claim adds one.
pub fn first_lease_seq(leased_at_accept: bool) -> i64 {
    i64::from(leased_at_accept)
}

/// Whether the lease an attempt was made under still holds its delivery, so that recording
/// the attempt's outcome may move the delivery: no claim was made since (a lease that lapsed
/// is claimed again with the next number). Otherwise the attempt is logged and counted,
/// superseded, and the delivery keeps the newer claim's outcome, whichever of the two is
/// recorded first.
pub fn holds_lease(lease_seq: i64, attempt_lease_seq: i64) -> bool {
    lease_seq == attempt_lease_seq
}

/// The SQL form of [`holds_lease`]; `token` is the backend's placeholder for the attempt's
/// lease number.
pub fn holds_lease_sql(token: &str) -> String {
    format!("lease_seq = {token}")
}

// Disabled endpoints.

/// An SQL condition, on a row of `deliveries`, that is true while its endpoint may not send:
/// its settings are disabled or deleted, or its partner is disabled. Such a delivery is held,
/// not failed, so that it goes once the endpoint can send again. It names no placeholder, so
/// every backend renders it as it is.
pub const ENDPOINT_DISABLED_SQL: &str = "(NOT EXISTS (SELECT 1 FROM settings s \
     WHERE s.partner_id = deliveries.partner_id AND s.disabled_at IS NULL) \
     OR EXISTS (SELECT 1 FROM partners p WHERE p.id = deliveries.partner_id AND p.disabled_at IS NOT NULL))";

/// The status of a delivery that goes on (a retry, or one released by the delivery it waited
/// for): held while its endpoint is disabled, pending otherwise.
pub fn pending_unless_disabled(endpoint_disabled: bool) -> Status {
    if endpoint_disabled {
        Status::Held
    } else {
        Status::Pending
    }
}

/// The SQL form of [`pending_unless_disabled`]; `disabled` is an SQL condition that is true
/// while the endpoint is disabled.
pub fn pending_unless_disabled_sql(disabled: &str) -> String {
    format!(
        "CASE WHEN {disabled} THEN '{}' ELSE '{}' END",
        Status::Held.as_str(),
        Status::Pending.as_str()
    )
}

/// The status of the deliveries that disabling an endpoint holds: the pending ones. A blocked
/// delivery keeps waiting; it is held when it is released.
pub const HELD_ON_DISABLE: Status = Status::Pending;

/// Enabling an endpoint again (or saving its settings) makes its held deliveries
/// [`Status::Pending`], due at once.
pub const RELEASED_ON_ENABLE: Status = Status::Held;

// Manual retries.

/// The statuses of a delivery that may always be retried by hand: it is done.
pub const RETRYABLE: [Status; 2] = [Status::Delivered, Status::Failed];

/// Whether a delivery may be made due now again by hand (a retry or a replay): when it is done,
/// or pending and no worker is sending it right now. A blocked one waits on another and a held
/// one on its endpoint, so neither is.
pub fn may_retry(status: Status, leased_until: Option<i64>, now: i64) -> bool {
    RETRYABLE.contains(&status) || (status == Status::Pending && !leased(leased_until, now))
}

/// The SQL form of [`may_retry`]; `now` is the backend's placeholder for the current time.
pub fn may_retry_sql(now: &str) -> String {
    format!(
        "(status IN ({}) OR (status = '{}' AND {}))",
        statuses_sql(&RETRYABLE),
        Status::Pending.as_str(),
        not_leased_sql(now)
    )
}

/// The statuses a replay takes: the done ones. Pending, blocked and held deliveries are on
/// their way already, so a replay leaves them be and never sends a postback twice at once.
pub const REPLAYABLE: [Status; 2] = RETRYABLE;

/// Most deliveries one replay queues; a replay that matches more answers where to go on from.
pub const MAX_REPLAY: i64 = 10_000;

/// How far a delivery's id time may lie from its `created_at`: the id is made in the accepting
/// transaction a moment after the time it records, and a wall clock can step back.
pub const ID_TIME_SLACK_MS: i64 = 60_000;

/// Bounds on delivery ids for a time range on `created_at` (`since` included, `until` not):
/// ids sort by the time they were made, so a listing walking a partner's ids in order can stop
/// at the range's end instead of reading every older delivery. The bounds are wider than the
/// range by [`ID_TIME_SLACK_MS`]; the exact range is checked on `created_at` itself.
pub fn id_bounds(since: Option<i64>, until: Option<i64>) -> (Option<String>, Option<String>) {
    let id_at = |ms: i64| {
        let ms = ms.clamp(0, (1_i64 << 48) - 1) as u64;
        format!("{}_{}", crate::id::DeliveryId::PREFIX, ulid::Ulid::from_parts(ms, 0))
    };
    (
        since.map(|s| id_at(s.saturating_sub(ID_TIME_SLACK_MS))),
        until.map(|u| id_at(u.saturating_add(ID_TIME_SLACK_MS))),
    )
}

// Recorded outcomes.

/// What recording an attempt does to its delivery (besides counting the attempt, keeping its
/// error and ending its lease), when the attempt's lease [still holds](holds_lease) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle<'a> {
    /// Done for good with this status; the deliveries that waited for it go on (see
    /// [`released_due`]).
    Done(Status),
    /// Due again at this time, [pending unless the endpoint is disabled](pending_unless_disabled).
    RetryAt(i64),
    /// Held, its endpoint disabled for this reason, and the endpoint's
    /// [pending deliveries](HELD_ON_DISABLE) held with it.
    Disable(&'a str),
}

/// What an attempt's [`Next`] does to its delivery.
pub fn settle(next: &Next) -> Settle<'_> {
    match next {
        Next::Delivered => Settle::Done(Status::Delivered),
        Next::Failed => Settle::Done(Status::Failed),
        Next::RetryAt(at) => Settle::RetryAt(*at),
        Next::Disable(reason) => Settle::Disable(reason),
    }
}

/// When a delivery released by the one it waited for is due: at its own time, and not before
/// now. It goes on [pending unless its endpoint is disabled](pending_unless_disabled).
pub fn released_due(next_at: i64, now: i64) -> i64 {
    next_at.max(now)
}

/// The PostgreSQL form of [`released_due`] (SQLite's is its two-argument `MAX`); `next_at` and
/// `now` are SQL expressions.
pub fn released_due_pg_sql(next_at: &str, now: &str) -> String {
    format!("GREATEST({next_at}, {now})")
}

// Retention.

/// The statuses of a delivery that retention may remove once its last activity is older than
/// the window: done for good. A delivery still on its way (pending, blocked or held) is never
/// removed, however old: an undelivered postback must not vanish.
pub const PRUNABLE: [Status; 2] = [Status::Delivered, Status::Failed];

/// Whether retention removes a delivery, with its attempts, at the cutoff `older_than` (Unix
/// ms): it is [done](PRUNABLE) and nothing happened to it since before the cutoff. Its event
/// goes with the last of its deliveries; an event that made none goes once it was received
/// before the cutoff.
pub fn prunable(status: Status, updated_at: i64, older_than: i64) -> bool {
    PRUNABLE.contains(&status) && updated_at < older_than
}

/// The SQL form of [`prunable`]; `older_than` is the backend's placeholder for the cutoff.
pub fn prunable_sql(older_than: &str) -> String {
    format!(
        "(status IN ({}) AND updated_at < {older_than})",
        statuses_sql(&PRUNABLE)
    )
}

// Partners.

/// A new partner named `name`, with a fresh id and a fresh Standard Webhooks signing secret
/// (`whsec_` and 32 random bytes in base64).
pub fn new_partner(name: &str, now: i64) -> Partner {
    Partner {
        id: PartnerId::generate(),
        name: name.to_owned(),
        secret: crate::sign::new_secret(),
        created_at: now,
        disabled_at: None,
    }
}

// API keys.

/// What every token starts with, so that secret scanners recognise a leaked one.
pub const TOKEN_PREFIX: &str = "pw_live_";

/// Characters of a token shown in listings to tell keys apart (after [`TOKEN_PREFIX`]).
pub const SHOWN_CHARS: usize = 8;

/// Random characters of a new token: 43 base62 characters carry 256 bits.
const TOKEN_CHARS: usize = 43;

/// A new token: [`TOKEN_PREFIX`] and 43 random base62 characters.
pub fn new_token() -> String {
    use rand::Rng;
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_CHARS);
    token.push_str(TOKEN_PREFIX);
    for _ in 0..TOKEN_CHARS {
        token.push(BASE62[rng.random_range(0..BASE62.len())] as char);
    }
    token
}

/// What is stored of a token, and what it is looked up by: its SHA-256 in lowercase hex. A
/// token is 256 random bits, so a plain hash cannot be reversed or guessed; a slow hash would
/// only slow every request.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    hex
}

/// The part of a token shown to tell keys apart.
pub fn shown_prefix(token: &str) -> String {
    let rest = token.strip_prefix(TOKEN_PREFIX).unwrap_or(token);
    rest.chars().take(SHOWN_CHARS).collect()
}

/// A new key of `kind` with a fresh token; `partner_id` for partner keys, `partners` for ingest
/// keys limited to some partners.
pub fn new_key(
    kind: KeyKind,
    partner_id: Option<PartnerId>,
    partners: Option<Vec<PartnerId>>,
    now: i64,
) -> (ApiKey, String) {
    let token = new_token();
    let key = ApiKey {
        id: crate::id::KeyId::generate(),
        kind,
        partner_id,
        partners,
        prefix: shown_prefix(&token),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
    };
    (key, token)
}

/// Whether a stored key lets its holder in: a revoked key never does.
pub fn authenticates(key: &ApiKey) -> bool {
    key.revoked_at.is_none()
}

/// Whether `key` may post events for `partner`: the operator and unlimited ingest keys for any,
/// a limited ingest key for the partners it names, a partner key for none.
pub fn may_post_for(key: &ApiKey, partner: &str) -> bool {
    match key.kind {
        KeyKind::Operator => true,
        KeyKind::Ingest => key
            .partners
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|p| p == partner)),
        KeyKind::Partner => false,
    }
}

/// How long a key's recorded last use may lag behind: it is written at most this often per
/// key, so that authenticating costs no write per request.
pub const LAST_USE_EVERY_MS: i64 = 60_000;

/// Statuses as an SQL list of their stored names: `'pending', 'held'`.
pub fn statuses_sql(statuses: &[Status]) -> String {
    statuses
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

// Canaries.

/// Whether a canary's candidate serves this attempt: only first attempts, so that a postback
/// the candidate failed is retried with the attached version; and of those, the deliveries
/// whose id falls in the candidate's share, so that the choice is the same in every process.
pub fn canary_serves(canary: &Canary, delivery_id: &str, number: i64) -> bool {
    canary.state == CanaryState::Running && number == 1 && share_point(delivery_id) < canary.share_percent as u64 * 100
}

/// Where a delivery id falls among 10,000 points (FNV-1a): ids are random past their time
/// prefix, so each point is as likely as any other.
fn share_point(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % 10_000
}

/// A Unix ms time as RFC 3339 text, UTC.
fn unix_ms_text(at: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| at.to_string())
}

/// What a canary's counts call for at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryStep {
    /// The window goes on.
    Keep,
    /// The window is over and the candidate did well enough: a new window begins, counted
    /// afresh.
    NextWindow,
    /// The candidate failed more often than the attached version by more than the margin: it
    /// is detached, for the reason given.
    Detach(String),
}

/// Judges a running canary at the end of its window: once the candidate has made at least
/// `min_calls` calls in it, its failure rate is compared with the attached version's (0 when
/// the attached version made no calls). A window ended without enough calls goes on until
/// there are.
pub fn canary_step(canary: &Canary, now: i64) -> CanaryStep {
    if canary.state != CanaryState::Running
        || now < canary.window_started_at + canary.window_ms
        || canary.candidate_calls < canary.min_calls
    {
        return CanaryStep::Keep;
    }
    let rate = |failures: i64, calls: i64| {
        if calls == 0 {
            0.0
        } else {
            failures as f64 * 100.0 / calls as f64
        }
    };
    let candidate = rate(canary.candidate_failures, canary.candidate_calls);
    let attached = rate(canary.attached_failures, canary.attached_calls);
    if candidate > attached + canary.margin_percent as f64 {
        CanaryStep::Detach(format!(
            "the candidate failed {} of its {} calls ({candidate:.1} %) in the window of {} s that began at {}, \
             against {} of {} ({attached:.1} %) for the attached version: more than the margin of {} percentage \
             points; its failed postbacks are retried with the attached version",
            canary.candidate_failures,
            canary.candidate_calls,
            canary.window_ms / 1000,
            unix_ms_text(canary.window_started_at),
            canary.attached_failures,
            canary.attached_calls,
            canary.margin_percent,
        ))
    } else {
        CanaryStep::NextWindow
    }
}

// Delivery rates.

/// How long before `since` an attempt's id may have been made and its attempt still have
/// started at `since` or later: an id is made after its attempt starts, on the clock of the
/// process that made it, and processes sharing a store may disagree by this much.
pub const ATTEMPT_ID_SKEW_MS: i64 = 300_000;

/// The smallest attempt id of an attempt started at `since` or later. Attempt ids sort by the
/// time they were made, so a range of the attempts' primary key from it holds every attempt
/// of the span: the rates are read along that index, without one on `started_at`.
pub fn attempts_from(since: i64) -> String {
    let at = u64::try_from(since - ATTEMPT_ID_SKEW_MS).unwrap_or(0);
    format!("{}_{}", crate::id::AttemptId::PREFIX, ulid::Ulid::from_parts(at, 0))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::tests::event;

    const ALL: [Status; 5] = [
        Status::Pending,
        Status::Blocked,
        Status::Held,
        Status::Delivered,
        Status::Failed,
    ];

    #[test]
    fn tokens_are_long_recognisable_and_hashed() {
        let token = new_token();
        assert!(token.starts_with("pw_live_") && token.len() == 8 + 43, "{token}");
        assert!(token[8..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(token, new_token());
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (key, token) = new_key(KeyKind::Ingest, None, Some(vec!["p1".into()]), 5);
        assert_eq!(key.prefix, token[8..16]);
        assert!(authenticates(&key) && may_post_for(&key, "p1") && !may_post_for(&key, "p2"));
        let revoked = ApiKey {
            revoked_at: Some(6),
            ..key
        };
        assert!(!authenticates(&revoked));
        let (partner_key, _) = new_key(KeyKind::Partner, Some("p1".into()), None, 5);
        assert!(!may_post_for(&partner_key, "p1"));
    }

    #[test]
    fn independence() {
        let a = event("p", "e1", "created", "i1");
        let b = event("p", "e2", "resolved", "i1");
        let c = event("p", "e1", "created", "i2");
        let d = event("q", "e1", "created", "i1");
        assert!(independent(&[a.clone(), d.clone()]));
        assert!(!independent(&[a.clone(), b]));
        assert!(!independent(&[a, c]));
    }

    #[test]
    fn what_an_event_creates() {
        let settings = NotificationSettings::validate(&json!({
            "url": "https://partner.example/hook",
            "body_template": "{}",
            "events": ["action_inquiry.created"],
        }))
        .expect("valid settings");
        let settings = settings.settings();
        assert!(wants(settings, EventType::ActionInquiryCreated));
        assert!(!wants(settings, EventType::ActionInquiryResolved));
        assert_eq!(due_at(1_000, 60, 0), 61_000);
        assert_eq!(due_at(1_000, 60, 90_000), 90_000, "never before now");
        assert_eq!(
            waits_for(EventType::ActionInquiryResolved),
            Some(EventType::ActionInquiryCreated)
        );
        assert_eq!(waits_for(EventType::ActionInquiryCreated), None);
        assert_eq!(
            goes_before(EventType::ActionInquiryCreated),
            Some(EventType::ActionInquiryResolved)
        );
        assert_eq!(goes_before(EventType::ActionInquiryResolved), None);
        assert_eq!(initial_status(true, true), Status::Blocked);
        assert_eq!(initial_status(false, true), Status::Held);
        assert_eq!(initial_status(false, false), Status::Pending);
        assert!(lease_at_accept(Status::Pending, 5, 5));
        assert!(!lease_at_accept(Status::Pending, 6, 5), "delayed");
        assert!(!lease_at_accept(Status::Held, 5, 5));
        assert!(!lease_at_accept(Status::Blocked, 5, 5));
    }

    #[test]
    fn who_waits_and_who_goes_first() {
        let on: Vec<Status> = ALL.into_iter().filter(|s| on_its_way(*s)).collect();
        assert_eq!(on, [Status::Pending, Status::Blocked, Status::Held]);
        assert!(untried(Status::Pending, 0, None, 10));
        assert!(untried(Status::Held, 0, Some(10), 10), "the lease ended");
        assert!(!untried(Status::Pending, 0, Some(11), 10), "a worker holds it");
        assert!(!untried(Status::Pending, 1, None, 10), "tried");
        assert!(!untried(Status::Blocked, 0, None, 10));
        assert!(!untried(Status::Delivered, 0, None, 10));
    }

    #[test]
    fn claims_disabling_and_retries() {
        assert!(due(Status::Pending, 10, None, 10));
        assert!(!due(Status::Pending, 11, None, 10));
        assert!(!due(Status::Held, 0, None, 10));
        assert!(!due(Status::Pending, 0, Some(11), 10), "leased");
        assert!(due(Status::Pending, 0, Some(10), 10), "the lease ended");
        assert_eq!(pending_unless_disabled(true), Status::Held);
        assert_eq!(pending_unless_disabled(false), Status::Pending);
        assert!(may_retry(Status::Delivered, None, 10));
        assert!(may_retry(Status::Failed, Some(99), 10));
        assert!(may_retry(Status::Pending, None, 10));
        assert!(may_retry(Status::Pending, Some(10), 10));
        assert!(!may_retry(Status::Pending, Some(11), 10), "being sent");
        assert!(!may_retry(Status::Blocked, None, 10));
        assert!(!may_retry(Status::Held, None, 10));
    }

    #[test]
    fn id_bounds_enclose_the_time_range() {
        let made = crate::id::DeliveryId::generate();
        let now = crate::store::now_ms();
        let (low, high) = id_bounds(Some(now - 1_000), Some(now + 1_000));
        let (low, high) = (low.unwrap(), high.unwrap());
        assert!(
            low.as_str() < made.as_str() && made.as_str() < high.as_str(),
            "{low} {made} {high}"
        );
        let (past, _) = id_bounds(Some(now + ID_TIME_SLACK_MS + 10_000), None);
        assert!(past.unwrap().as_str() > made.as_str());
        let (_, before) = id_bounds(None, Some(now - ID_TIME_SLACK_MS - 10_000));
        assert!(before.unwrap().as_str() < made.as_str());
        assert_eq!(
            id_bounds(Some(i64::MIN), None).0.unwrap(),
            "dlv_00000000000000000000000000"
        );
        assert!(REPLAYABLE.iter().all(|s| may_retry(*s, None, 0)));
    }

    #[test]
    fn what_an_outcome_does() {
        assert_eq!(settle(&Next::Delivered), Settle::Done(Status::Delivered));
        assert_eq!(settle(&Next::Failed), Settle::Done(Status::Failed));
        assert_eq!(settle(&Next::RetryAt(7)), Settle::RetryAt(7));
        assert_eq!(settle(&Next::Disable("410".into())), Settle::Disable("410"));
        assert_eq!(released_due(5, 9), 9);
        assert_eq!(released_due(15, 9), 15);
    }

    #[test]
    fn only_the_lease_still_held_moves_a_delivery() {
        assert_eq!(first_lease_seq(true), 1);
        assert_eq!(first_lease_seq(false), 0);
        assert!(holds_lease(3, 3));
        assert!(!holds_lease(3, 2), "claimed again after the lease lapsed");
        assert_eq!(holds_lease_sql("?5"), "lease_seq = ?5");
    }

    #[test]
    fn a_new_partner_gets_its_own_secret() {
        let (a, b) = (new_partner("a", 1), new_partner("b", 2));
        assert!(a.id.starts_with("ptn_") && a.secret.starts_with("whsec_"));
        assert_ne!(a.id, b.id);
        assert_ne!(a.secret, b.secret);
        assert_eq!((a.name.as_str(), a.created_at), ("a", 1));
    }

    #[test]
    fn sql_forms() {
        assert_eq!(on_its_way_sql(), "status IN ('pending', 'blocked', 'held')");
        assert_eq!(
            untried_sql("?4"),
            "attempts = 0 AND status IN ('pending', 'held') AND (leased_until IS NULL OR leased_until <= ?4)"
        );
        assert_eq!(
            due_sql("?1"),
            "status = 'pending' AND next_at <= ?1 AND (leased_until IS NULL OR leased_until <= ?1)"
        );
        assert_eq!(
            may_retry_sql("?3"),
            "(status IN ('delivered', 'failed') OR (status = 'pending' AND (leased_until IS NULL OR leased_until <= ?3)))"
        );
        assert_eq!(released_due_pg_sql("next_at", "$2"), "GREATEST(next_at, $2)");
        assert_eq!(
            pending_unless_disabled_sql("x"),
            "CASE WHEN x THEN 'held' ELSE 'pending' END"
        );
    }
    /// A canary's candidate serves first attempts only, and about its share of them, the same
    /// deliveries in every process.
    #[test]
    fn a_canary_serves_its_share_of_first_attempts() {
        let canary = |share_percent| crate::store::Canary {
            slot: crate::store::PluginSlot::Transform,
            plugin_id: "plg_c".into(),
            share_percent,
            window_ms: 1000,
            margin_percent: 10,
            min_calls: 1,
            state: CanaryState::Running,
            reason: None,
            started_at: 0,
            window_started_at: 0,
            candidate_calls: 0,
            candidate_failures: 0,
            attached_calls: 0,
            attached_failures: 0,
            ended_at: None,
        };
        let ids: Vec<String> = (0..4000)
            .map(|_| crate::id::DeliveryId::generate().into_string())
            .collect();
        let served = |share, number| {
            ids.iter()
                .filter(|id| canary_serves(&canary(share), id, number))
                .count()
        };
        assert_eq!(served(100, 1), ids.len());
        assert_eq!(served(100, 2), 0, "retries go with the attached version");
        let five = served(5, 1);
        assert!((100..=300).contains(&five), "about 5 % of 4000: {five}");
        assert_eq!(served(5, 1), five, "the same deliveries each time");
        let mut stopped = canary(100);
        stopped.state = CanaryState::Stopped;
        assert!(!canary_serves(&stopped, &ids[0], 1));
    }
}
