//! Retention: removing deliveries done for good, their attempts and their events once their
//! last activity is older than the window, by the rule [`rules::prunable`], in steps of about
//! `batch` rows, each a transaction of its own.
//!
//! As on SQLite, no index is added for it:
//! - deliveries are walked by id, which is a ULID: every delivery made before the cutoff sorts
//!   below `dlv_` and the cutoff's ULID, so the walk is a range of the primary key that stops
//!   where the window starts. A step removes the prunable ones of its range, their attempts,
//!   and their events when no delivery is left to them, in one statement;
//! - events that made no delivery are walked by their primary key, and those received before
//!   the cutoff without a delivery (looked for through the inquiry index) are removed. Unlike
//!   SQLite's rowid, the key does not follow the time events came in, so this walk reads every
//!   event, `batch` at a time.

use std::sync::LazyLock;

use sqlx::PgPool;

use super::super::Result;
use crate::event::Event;
use crate::store::{Pruned, rules};

/// One step over deliveries: the next ones made before the cutoff (`$2`) after the cursor
/// (`$1`), at most `$3`; the [prunable](rules::prunable) ones (`$4` the cutoff) removed with
/// their attempts, and their events when no delivery is left to them. Answers how many it
/// looked at, the last one, and what it removed.
static DELIVERIES_STEP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH step AS (
             SELECT id FROM deliveries WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3),
         gone AS (
             DELETE FROM deliveries WHERE id IN (SELECT id FROM step) AND {}
             RETURNING id, partner_id, event_id, inquiry_id),
         gone_attempts AS (
             DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone) RETURNING 1),
         gone_events AS (
             DELETE FROM events e USING gone g
             WHERE e.partner_id = g.partner_id AND e.id = g.event_id
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries d
                   WHERE d.partner_id = g.partner_id AND d.inquiry_id = g.inquiry_id AND d.event_id = g.event_id
                     AND d.id NOT IN (SELECT id FROM gone))
             RETURNING 1)
         SELECT (SELECT COUNT(*) FROM step), (SELECT MAX(id) FROM step),
             (SELECT COUNT(*) FROM gone), (SELECT COUNT(*) FROM gone_attempts),
             (SELECT COUNT(*) FROM gone_events)",
        rules::prunable_sql("$4")
    )
});

/// The next events after the cursor, in key order.
const NEXT_EVENTS: &str = "SELECT partner_id, id, body, received_at FROM events
     WHERE (partner_id, id) > ($1, $2) ORDER BY partner_id, id LIMIT $3";

/// Removes the events given that have no delivery: found through the inquiry index when the
/// inquiry is known, through the partner's deliveries otherwise.
const DELETE_EVENTS: &str = "DELETE FROM events e
     USING UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS t(p, event, inquiry)
     WHERE e.partner_id = t.p AND e.id = t.event
       AND (t.inquiry IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries d
            WHERE d.partner_id = t.p AND d.inquiry_id = t.inquiry AND d.event_id = t.event))
       AND (t.inquiry IS NOT NULL OR NOT EXISTS (SELECT 1 FROM deliveries d
            WHERE d.partner_id = t.p AND d.event_id = t.event))";

/// The lowest delivery id made at `older_than` (Unix ms): every id made before sorts below it.
fn delivery_bound(older_than: i64) -> String {
    let ms = u64::try_from(older_than).unwrap_or(0);
    format!("{}_{}", crate::id::DeliveryId::PREFIX, ulid::Ulid::from_parts(ms, 0))
}

/// One step of a walk.
pub(super) struct Step<C> {
    /// What was removed.
    pub(super) pruned: Pruned,
    /// Where the next step starts; `None` when the walk is done.
    pub(super) cursor: Option<C>,
}

/// Looks at up to `batch` deliveries made before the cutoff, after `after`, and removes the
/// prunable ones with their attempts, and their events when no delivery is left to them.
pub(super) async fn deliveries(pool: &PgPool, older_than: i64, after: &str, batch: usize) -> Result<Step<String>> {
    let (looked, last, deliveries, attempts, events): (i64, Option<String>, i64, i64, i64) =
        sqlx::query_as(&DELIVERIES_STEP)
            .bind(after)
            .bind(delivery_bound(older_than))
            .bind(batch as i64)
            .bind(older_than)
            .fetch_one(pool)
            .await?;
    Ok(Step {
        pruned: Pruned {
            deliveries: deliveries as u64,
            attempts: attempts as u64,
            events: events as u64,
        },
        cursor: last.filter(|_| looked as usize >= batch),
    })
}

/// Looks at up to `batch` events after the key `after` and removes those received before the
/// cutoff that have no delivery.
pub(super) async fn events(
    pool: &PgPool,
    older_than: i64,
    after: Option<&(String, String)>,
    batch: usize,
) -> Result<Step<(String, String)>> {
    // Every key sorts after the empty one.
    let (after_partner, after_id) = after.map_or(("", ""), |(p, e)| (p.as_str(), e.as_str()));
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(NEXT_EVENTS)
        .bind(after_partner)
        .bind(after_id)
        .bind(batch as i64)
        .fetch_all(pool)
        .await?;
    let cursor = rows
        .last()
        .filter(|_| rows.len() >= batch)
        .map(|(partner, id, ..)| (partner.clone(), id.clone()));
    let old: Vec<&(String, String, String, i64)> = rows.iter().filter(|row| row.3 < older_than).collect();
    let mut pruned = Pruned::default();
    if !old.is_empty() {
        // A stored event always reads; should one not, its deliveries are looked for the slow
        // way rather than it being kept for ever or removed under them.
        let inquiries: Vec<Option<String>> = old
            .iter()
            .map(|(_, _, body, _)| Event::from_json(body).ok().map(|e| e.action_inquiry_id().to_owned()))
            .collect();
        pruned.events = sqlx::query(DELETE_EVENTS)
            .bind(old.iter().map(|row| row.0.as_str()).collect::<Vec<_>>())
            .bind(old.iter().map(|row| row.1.as_str()).collect::<Vec<_>>())
            .bind(&inquiries)
            .execute(pool)
            .await?
            .rows_affected();
    }
    Ok(Step { pruned, cursor })
}
