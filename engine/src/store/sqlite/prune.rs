//! Retention: removing deliveries done for good, their attempts and their events once their
//! last activity is older than the window, by the rule [`rules::prunable`], in short
//! transactions on the SQLite handle (see `direct`).
//!
//! No index is added for it, so that accepting and recording cost what they cost without
//! retention:
//! - deliveries are walked by id, which is a ULID: every delivery made before the cutoff sorts
//!   below `dlv_` and the cutoff's ULID, so the walk is a range of the primary key that stops
//!   where the window starts. Deliveries in that range still on their way are read again on
//!   every pass, and stay;
//! - an event goes with the last of its deliveries, found through the inquiry index;
//! - events that made no delivery are walked by rowid, the order they were recorded in, up to
//!   the first one received after the cutoff. Every pass starts from the first: a rowid freed
//!   at the end of the table is given again, so a remembered place could skip a new event.
//!
//! So a pass reads again what stays: the deliveries older than the window that are still on
//! their way, and their events. Those are few unless an endpoint stays disabled for longer than
//! the window; each is a row read and an index probe, in steps of the batch size.
//!
//! The transactions run without SQLite's foreign key checks (see
//! `direct::unchecked_transaction`): an event is deleted only when no delivery names it, and a
//! delivery only with its attempts.

use std::sync::LazyLock;

use rusqlite::{OptionalExtension, params};

use super::Result;
use crate::event::Event;
use crate::store::{Pruned, Status, rules};

/// Deletes a delivery if it is [prunable](rules::prunable) (`?2` the cutoff).
pub(super) static DELETE_DELIVERY: LazyLock<String> =
    LazyLock::new(|| format!("DELETE FROM deliveries WHERE id = ?1 AND {}", rules::prunable_sql("?2")));

/// The next deliveries made before the cutoff, after the cursor, in id order.
pub(super) const NEXT_DELIVERIES: &str = "SELECT id, partner_id, event_id, inquiry_id, status, updated_at
     FROM deliveries WHERE id > ?1 AND id < ?2 ORDER BY id LIMIT ?3";

/// Whether deliveries of an event remain: they share its partner and the inquiry it named.
pub(super) const EVENT_HAS_DELIVERIES: &str = "SELECT 1 FROM deliveries INDEXED BY deliveries_by_inquiry
     WHERE partner_id = ?1 AND inquiry_id = ?2 AND event_id = ?3 LIMIT 1";

/// The next events after the cursor, in the order they were recorded.
pub(super) const NEXT_EVENTS: &str =
    "SELECT rowid, partner_id, id, body, received_at FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?2";

/// The lowest delivery id made at `older_than` (Unix ms): every id made before sorts below it.
pub(super) fn delivery_bound(older_than: i64) -> String {
    let ms = u64::try_from(older_than).unwrap_or(0);
    format!("{}_{}", crate::id::DeliveryId::PREFIX, ulid::Ulid::from_parts(ms, 0))
}

/// One step of the walk over deliveries.
pub(super) struct DeliveriesStep {
    /// What was removed.
    pub(super) pruned: Pruned,
    /// The last delivery looked at, where the next step starts; `None` when the walk is done.
    pub(super) cursor: Option<String>,
}

/// Looks at up to `batch` deliveries made before the cutoff, after `after`, and removes the
/// [prunable](rules::prunable) ones with their attempts, and their events when no delivery
/// is left to them.
pub(super) fn deliveries(
    tx: &rusqlite::Transaction<'_>,
    older_than: i64,
    after: &str,
    batch: usize,
) -> Result<DeliveriesStep> {
    let bound = delivery_bound(older_than);
    let rows = tx
        .prepare_cached(NEXT_DELIVERIES)?
        .query_map(params![after, bound, batch as i64], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut pruned = Pruned::default();
    let mut delete = tx.prepare_cached(&DELETE_DELIVERY)?;
    let mut attempts = tx.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?;
    let mut remaining = tx.prepare_cached(EVENT_HAS_DELIVERIES)?;
    let mut event = tx.prepare_cached("DELETE FROM events WHERE partner_id = ?1 AND id = ?2")?;
    for (id, partner_id, event_id, inquiry_id, status, updated_at) in &rows {
        let Some(status) = Status::parse(status) else { continue };
        if !rules::prunable(status, *updated_at, older_than) || delete.execute(params![id, older_than])? == 0 {
            continue;
        }
        pruned.deliveries += 1;
        pruned.attempts += attempts.execute(params![id])? as u64;
        if !remaining.exists(params![partner_id, inquiry_id, event_id])? {
            pruned.events += event.execute(params![partner_id, event_id])? as u64;
        }
    }
    let cursor = (rows.len() >= batch)
        .then(|| rows.last().map(|row| row.0.clone()))
        .flatten();
    Ok(DeliveriesStep { pruned, cursor })
}

/// One step of the walk over events.
pub(super) struct EventsStep {
    /// Events removed.
    pub(super) pruned: u64,
    /// The last event passed (its rowid), where the next step starts.
    pub(super) cursor: i64,
    /// Whether the walk reached an event received after the cutoff, or the last event.
    pub(super) done: bool,
}

/// Looks at up to `batch` events after the rowid `after`, up to the first one received at or
/// after the cutoff, and removes those that have no delivery.
pub(super) fn events(tx: &rusqlite::Transaction<'_>, older_than: i64, after: i64, batch: usize) -> Result<EventsStep> {
    let rows = tx
        .prepare_cached(NEXT_EVENTS)?
        .query_map(params![after, batch as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut remaining = tx.prepare_cached(EVENT_HAS_DELIVERIES)?;
    let mut delete = tx.prepare_cached("DELETE FROM events WHERE rowid = ?1")?;
    let mut step = EventsStep {
        pruned: 0,
        cursor: after,
        done: rows.len() < batch,
    };
    for (rowid, partner_id, id, body, received_at) in &rows {
        if *received_at >= older_than {
            step.done = true;
            break;
        }
        let has_deliveries = match Event::from_json(body) {
            Ok(event) => remaining.exists(params![partner_id, event.action_inquiry_id(), id])?,
            // A stored event always reads; should one not, it is looked for the slow way
            // rather than kept for ever or removed under its deliveries.
            Err(_) => tx
                .prepare_cached("SELECT 1 FROM deliveries WHERE partner_id = ?1 AND event_id = ?2 LIMIT 1")?
                .query_row(params![partner_id, id], |_| Ok(()))
                .optional()?
                .is_some(),
        };
        if !has_deliveries {
            step.pruned += delete.execute(params![rowid])? as u64;
        }
        step.cursor = *rowid;
    }
    Ok(step)
}
