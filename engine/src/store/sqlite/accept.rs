//! Accepting events: the event rows and the deliveries they make, in one transaction on the
//! SQLite handle (see `direct`), by the [`rules`].

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{OptionalExtension, params};

use super::Result;
use crate::event::{Event, Value};
use crate::id::DeliveryId;
use crate::settings::NotificationSettings;
use crate::store::{ACTION_INQUIRY, Accepted, Lease, Leased, Status, StoreError, rules};

/// A partner's settings as accepting events needs them.
struct ForAccept {
    settings: NotificationSettings,
    /// The endpoint is disabled.
    disabled: bool,
    version: i64,
}

/// The statements that carry the rules of who waits for whom, rendered once.
struct Ordering {
    /// Whether there are deliveries of the inquiry, of a type the new one
    /// [goes before](rules::goes_before), that are [untried](rules::untried). They are looked
    /// for before the update: an UPDATE opens every index of the table even when no row
    /// matches, which costs several times the look.
    untried_later: String,
    /// Blocks them behind the new delivery.
    block_later: String,
    /// The newest delivery of the inquiry, of the type the new one
    /// [waits for](rules::waits_for), that is [on its way](rules::on_its_way). Without the hint
    /// SQLite walks the partner's deliveries newest first (an index that spares the sort) and,
    /// when none is on its way, reads all of them.
    earlier_on_its_way: String,
}

static ORDERING: LazyLock<Ordering> = LazyLock::new(|| {
    let untried = format!(
        "partner_id = ?1 AND inquiry_id = ?2 AND event_type = ?3 AND {}",
        rules::untried_sql("?4")
    );
    Ordering {
        untried_later: format!("SELECT 1 FROM deliveries INDEXED BY deliveries_by_inquiry WHERE {untried} LIMIT 1"),
        block_later: format!(
            "UPDATE deliveries SET status = '{}', blocked_by = ?5 WHERE {untried}",
            Status::Blocked.as_str()
        ),
        earlier_on_its_way: format!(
            "SELECT id FROM deliveries INDEXED BY deliveries_by_inquiry
             WHERE partner_id = ?1 AND inquiry_id = ?2 AND event_type = ?3 AND {}
             ORDER BY id DESC LIMIT 1",
            rules::on_its_way_sql()
        ),
    }
});

/// Records events and their deliveries, event after event (see
/// [`Store::accept_leasing`](crate::store::Store::accept_leasing)). Up to `lease.max` of the new
/// deliveries that are pending and due now are leased to the caller. `bodies` are the texts to
/// store of the events that keep no [text as sent](Event::sent_text).
pub(super) fn accept(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    bodies: &[Option<String>],
    now: i64,
    lease: Lease,
) -> Result<(Vec<Accepted>, Vec<Leased>)> {
    let mut endpoints: HashMap<&str, Option<ForAccept>> = HashMap::new();
    for event in events {
        if !endpoints.contains_key(event.partner_id.as_str()) {
            endpoints.insert(&event.partner_id, load_for_accept(tx, &event.partner_id)?);
        }
    }
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (partner_id, id, event_type, occurred_at, body, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    )?;
    // The deliveries of an event sent before, found through its inquiry.
    let mut earlier = tx.prepare_cached(
        "SELECT id FROM deliveries INDEXED BY deliveries_by_inquiry
         WHERE partner_id = ?1 AND inquiry_id = ?2 AND event_id = ?3 ORDER BY id",
    )?;
    let ordering = &*ORDERING;
    let mut untried_later = tx.prepare_cached(&ordering.untried_later)?;
    let mut block_later = tx.prepare_cached(&ordering.block_later)?;
    let mut earlier_on_its_way = tx.prepare_cached(&ordering.earlier_on_its_way)?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (id, partner_id, event_id, event_type, inquiry_id, status, next_at,
             blocked_by, created_at, updated_at, leased_until, order_id, lease_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12)",
    )?;

    let mut accepted = Vec::with_capacity(events.len());
    let mut leased = Vec::new();
    for (at, (event, body)) in events.iter().zip(bodies).enumerate() {
        let occurred_at = event.occurred_at.timestamp_millis();
        let body = body
            .as_deref()
            .or_else(|| event.sent_text())
            .expect("an event keeps its text or has it written");
        let inserted = insert_event.execute(params![
            event.partner_id,
            event.id,
            event.event_type.as_str(),
            occurred_at,
            body,
            now
        ])?;
        if inserted == 0 {
            let mut deliveries_through = |inquiry: &str| {
                earlier
                    .query_map(params![event.partner_id, inquiry, event.id], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<DeliveryId>>>()
            };
            let mut delivery_ids = deliveries_through(event.action_inquiry_id())?;
            if delivery_ids.is_empty() {
                // Sent again with other data: the inquiry is the one the event was first sent with.
                let first: String = tx
                    .prepare_cached("SELECT body FROM events WHERE partner_id = ?1 AND id = ?2")?
                    .query_row(params![event.partner_id, event.id], |row| row.get(0))?;
                if let Ok(first) = Event::from_json(&first)
                    && first.action_inquiry_id() != event.action_inquiry_id()
                {
                    delivery_ids = deliveries_through(first.action_inquiry_id())?;
                }
            }
            accepted.push(Accepted {
                event_id: event.id.clone(),
                delivery_ids,
                duplicate: true,
            });
            continue;
        }
        let mut delivery_ids = Vec::new();
        if let Some(Some(endpoint)) = endpoints.get(event.partner_id.as_str())
            && rules::wants(&endpoint.settings, event.event_type)
        {
            let id = DeliveryId::generate_at(now);
            let inquiry = event.action_inquiry_id();
            let due = rules::due_at(occurred_at, endpoint.settings.min_delay_secs, now);
            let blocked_by: Option<String> = match rules::waits_for(event.event_type) {
                Some(first) => earlier_on_its_way
                    .query_row(params![event.partner_id, inquiry, first.as_str()], |row| row.get(0))
                    .optional()?,
                None => None,
            };
            if let Some(later) = rules::goes_before(event.event_type)
                && untried_later.exists(params![event.partner_id, inquiry, later.as_str(), now])?
            {
                block_later.execute(params![event.partner_id, inquiry, later.as_str(), now, id])?;
            }
            let status = rules::initial_status(blocked_by.is_some(), endpoint.disabled);
            let lease_it = rules::lease_at_accept(status, due, now) && leased.len() < lease.max;
            insert_delivery.execute(params![
                id,
                event.partner_id,
                event.id,
                event.event_type.as_str(),
                inquiry,
                status.as_str(),
                if lease_it { lease.until } else { due },
                blocked_by,
                now,
                lease_it.then_some(lease.until),
                order_id(event).as_deref(),
                rules::first_lease_seq(lease_it),
            ])?;
            if lease_it {
                leased.push(Leased {
                    event: at,
                    delivery_id: id.clone(),
                    settings_version: endpoint.version,
                    lease_seq: rules::first_lease_seq(true),
                });
            }
            delivery_ids.push(id);
        }
        accepted.push(Accepted {
            event_id: event.id.clone(),
            delivery_ids,
            duplicate: false,
        });
    }
    Ok((accepted, leased))
}

/// The event's `OrderId` as text, to find its deliveries by.
fn order_id(event: &Event) -> Option<std::borrow::Cow<'_, str>> {
    match event.get("OrderId")? {
        Value::Text(text) => Some(text.as_str().into()),
        other => {
            let mut text = String::new();
            other.write_text(&mut text);
            Some(text.into())
        }
    }
}

/// The partner's settings, or `None` without settings. A disabled partner's endpoint counts as
/// disabled: its events are accepted and their postbacks held until it is enabled again.
fn load_for_accept(tx: &rusqlite::Transaction<'_>, partner_id: &str) -> Result<Option<ForAccept>> {
    let partner_disabled: bool = tx
        .prepare_cached("SELECT disabled_at IS NOT NULL FROM partners WHERE id = ?1")?
        .query_row([partner_id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::UnknownPartner(partner_id.to_owned()))?;
    let row = tx
        .prepare_cached(
            "SELECT body, disabled_at IS NOT NULL, version FROM settings WHERE partner_id = ?1 AND family = ?2",
        )?
        .query_row(params![partner_id, ACTION_INQUIRY], |row| {
            Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    Ok(row.and_then(|(body, disabled, version)| {
        Some(ForAccept {
            settings: serde_json::from_str::<NotificationSettings>(&body).ok()?,
            disabled: disabled || partner_disabled,
            version,
        })
    }))
}
