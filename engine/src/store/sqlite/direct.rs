//! The pipeline's hot writes (accepting events, recording attempts) on the write connection's
//! SQLite handle itself, on the store's thread.
//!
//! Through sqlx, every statement is a round trip to the connection's own thread, and every row
//! a statement returns is a message of its own: for the few microseconds SQLite spends on a row,
//! two threads wake each other several times. Here the store's thread borrows the connection's
//! handle from sqlx ([`sqlx::sqlite::LockedSqliteHandle`]) for one transaction and runs it
//! straight through, statement after statement, with rusqlite (built on the same SQLite library).
//! The connection stays sqlx's: its settings, migrations and every other query are unchanged.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sqlx::SqlitePool;

use super::{ForAccept, PENDING_UNLESS_DISABLED, Result};
use crate::event::{Event, EventType};
use crate::settings::NotificationSettings;
use crate::store::{ACTION_INQUIRY, Accepted, Lease, Leased, Next, Outcome, Status, StoreError, new_id};

/// Runs `work` in one transaction (`BEGIN IMMEDIATE` to `COMMIT`) on the write connection's
/// handle; an error rolls it back. `taken` runs once the connection is this caller's.
pub(super) async fn transaction<T>(
    write: &SqlitePool,
    taken: impl FnOnce(),
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut connection = write.acquire().await?;
    taken();
    let mut locked = connection.lock_handle().await?;
    // SAFETY: while `locked` lives, sqlx's connection thread waits and nothing else uses the
    // handle, which stays open. The wrapper made here does not close the handle, and dropping
    // it (before `locked`) finalizes the statements it prepared, so sqlx's connection can be
    // closed later as usual.
    let mut db = unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) }?;
    let result = (|| {
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = work(&tx)?;
        tx.commit()?;
        Ok(out)
    })();
    drop(db);
    drop(locked);
    result
}

/// Records events and their deliveries, event after event (see
/// [`Store::accept_leasing`](super::Store::accept_leasing)). Up to `lease.max` of the new
/// deliveries that are pending and due now are leased to the caller. `bodies` are the events'
/// texts to store.
pub(super) fn accept(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    bodies: &[String],
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
    let mut earlier = tx.prepare_cached("SELECT id FROM deliveries WHERE partner_id = ?1 AND event_id = ?2")?;
    // A created postback goes before resolved ones of its inquiry that have not been tried and
    // that no worker holds.
    let mut block_resolved = tx.prepare_cached(
        "UPDATE deliveries SET status = 'blocked', blocked_by = ?3
         WHERE partner_id = ?1 AND inquiry_id = ?2 AND event_type = ?4 AND attempts = 0
             AND status IN ('pending', 'held') AND (leased_until IS NULL OR leased_until <= ?5)",
    )?;
    // A resolved postback waits for the created one of its inquiry while that is on its way.
    // Without the hint SQLite walks the partner's deliveries newest first (an index that spares
    // the sort) and, when no created postback is on its way, reads all of them.
    let mut created_on_its_way = tx.prepare_cached(
        "SELECT id FROM deliveries INDEXED BY deliveries_by_inquiry
         WHERE partner_id = ?1 AND inquiry_id = ?2 AND event_type = ?3
             AND status IN ('pending', 'blocked', 'held')
         ORDER BY id DESC LIMIT 1",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (id, partner_id, event_id, event_type, inquiry_id, status, next_at,
             blocked_by, created_at, updated_at, leased_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
    )?;

    let mut accepted = Vec::with_capacity(events.len());
    let mut leased = Vec::new();
    for (at, (event, body)) in events.iter().zip(bodies).enumerate() {
        let occurred_at = event.occurred_at.timestamp_millis();
        let inserted = insert_event.execute(params![
            event.partner_id,
            event.id,
            event.event_type.as_str(),
            occurred_at,
            body,
            now
        ])?;
        if inserted == 0 {
            let delivery_ids = earlier
                .query_map(params![event.partner_id, event.id], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            accepted.push(Accepted {
                event_id: event.id.clone(),
                delivery_ids,
                duplicate: true,
            });
            continue;
        }
        let mut delivery_ids = Vec::new();
        if let Some(Some(endpoint)) = endpoints.get(event.partner_id.as_str())
            && endpoint.settings.events.contains(&event.event_type)
        {
            let id = new_id("dlv");
            let inquiry = event.action_inquiry_id();
            let due = (occurred_at + endpoint.settings.min_delay_secs as i64 * 1000).max(now);
            let blocked_by: Option<String> = match event.event_type {
                EventType::ActionInquiryResolved => created_on_its_way
                    .query_row(
                        params![event.partner_id, inquiry, EventType::ActionInquiryCreated.as_str()],
                        |row| row.get(0),
                    )
                    .optional()?,
                EventType::ActionInquiryCreated => {
                    block_resolved.execute(params![
                        event.partner_id,
                        inquiry,
                        id,
                        EventType::ActionInquiryResolved.as_str(),
                        now
                    ])?;
                    None
                }
            };
            let status = match (&blocked_by, endpoint.disabled) {
                (Some(_), _) => Status::Blocked,
                (None, true) => Status::Held,
                (None, false) => Status::Pending,
            };
            let lease_it = status == Status::Pending && due <= now && leased.len() < lease.max;
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
            ])?;
            if lease_it {
                leased.push(Leased {
                    event: at,
                    delivery_id: id.clone(),
                    settings_version: endpoint.version,
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

/// The partner's settings, or `None` without settings.
fn load_for_accept(tx: &rusqlite::Transaction<'_>, partner_id: &str) -> Result<Option<ForAccept>> {
    let known = tx
        .prepare_cached("SELECT 1 FROM partners WHERE id = ?1")?
        .query_row([partner_id], |_| Ok(()))
        .optional()?;
    if known.is_none() {
        return Err(StoreError::UnknownPartner(partner_id.to_owned()));
    }
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
            disabled,
            version,
        })
    }))
}

/// Records attempts and moves their deliveries on, outcome after outcome. Returns how many
/// deliveries that waited for the finished ones may go now.
pub(super) fn record(tx: &rusqlite::Transaction<'_>, outcomes: &[Outcome], now: i64) -> Result<u64> {
    let mut insert_attempt = tx.prepare_cached(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request, response_status,
             response_headers, response_body, verdict, error, plugins)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut finish = tx.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = attempts + 1, last_error = ?3, updated_at = ?4,
             leased_until = NULL
         WHERE id = ?1",
    )?;
    // Postbacks that waited for a finished one go now.
    let mut release = tx.prepare_cached(&format!(
        "UPDATE deliveries SET status = {PENDING_UNLESS_DISABLED}, blocked_by = NULL,
             next_at = MAX(next_at, ?2), updated_at = ?2
         WHERE blocked_by = ?1 AND status = 'blocked'"
    ))?;
    let mut retry = tx.prepare_cached(&format!(
        "UPDATE deliveries SET status = {PENDING_UNLESS_DISABLED}, next_at = ?2, attempts = attempts + 1,
             last_error = ?3, updated_at = ?4, leased_until = NULL
         WHERE id = ?1"
    ))?;
    let mut released = 0;
    for Outcome { attempt, next } in outcomes {
        insert_attempt.execute(params![
            attempt.id,
            attempt.delivery_id,
            attempt.number,
            attempt.started_at,
            attempt.duration_ms,
            attempt.request.get(),
            attempt.response_status,
            attempt.response_headers.as_ref().map(|h| h.get()),
            attempt.response_body,
            attempt.verdict,
            attempt.error,
            attempt.plugins.as_ref().map(ToString::to_string),
        ])?;
        let id = &attempt.delivery_id;
        match next {
            Next::Delivered | Next::Failed => {
                let status = if matches!(next, Next::Delivered) {
                    Status::Delivered
                } else {
                    Status::Failed
                };
                finish.execute(params![id, status.as_str(), attempt.error, now])?;
                released += release.execute(params![id, now])? as u64;
            }
            Next::RetryAt(at) => {
                retry.execute(params![id, at, attempt.error, now])?;
            }
            Next::Disable(reason) => disable(tx, id, reason, now)?,
        }
    }
    Ok(released)
}

/// Records that an attempt disabled its endpoint: the delivery and every pending one of its
/// partner are held until the endpoint is enabled again.
fn disable(tx: &rusqlite::Transaction<'_>, id: &str, reason: &str, now: i64) -> Result<()> {
    let partner_id: String = tx
        .prepare_cached(
            "UPDATE deliveries SET status = 'held', attempts = attempts + 1, last_error = ?2, updated_at = ?3,
                 leased_until = NULL
             WHERE id = ?1 RETURNING partner_id",
        )?
        .query_row(params![id, reason, now], |row| row.get(0))?;
    tx.prepare_cached("UPDATE settings SET disabled_reason = ?2, disabled_at = ?3 WHERE partner_id = ?1")?
        .execute(params![partner_id, reason, now])?;
    tx.prepare_cached(
        "UPDATE deliveries SET status = 'held', updated_at = ?2 WHERE partner_id = ?1 AND status = 'pending'",
    )?
    .execute(params![partner_id, now])?;
    Ok(())
}
