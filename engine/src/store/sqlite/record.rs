//! Recording attempts: each attempt's row and what its outcome does to the delivery (see
//! [`rules::settle`]), in one transaction on the SQLite handle (see `direct`).
//!
//! Every statement that moves a delivery matches it by id and by the attempt's lease number
//! ([`rules::holds_lease`]), so that an outcome recorded after the delivery was claimed again
//! changes nothing but the log and the attempt count. The delivery goes first: whether it
//! moved says how the attempt is logged, without a statement of its own.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{OptionalExtension, params};

use super::Result;
use super::direct::prepared;
use crate::store::rules::{self, Settle};
use crate::store::{Outcome, Status};

/// Outcomes a recording writes before it looks whether an accept waits.
pub(super) const RECORD_STRETCH: usize = 128;

/// The statements that carry the rules of what an outcome does, rendered once.
struct Statements {
    /// Whether deliveries wait for the finished one (`?1`). Looked for before the update, which
    /// opens every index of the table even when no row matches.
    blocked_by_it: String,
    /// Lets them go on, [pending unless disabled](rules::pending_unless_disabled), due at
    /// [`rules::released_due`] (SQLite's two-argument `MAX`).
    release: String,
    /// Ends a delivery for good, if the attempt's lease (`?5`) still holds it.
    finish: String,
    /// Moves a delivery to its retry time, pending unless disabled, if the attempt's lease
    /// (`?5`) still holds it.
    retry: String,
    /// Holds the delivery whose attempt disabled its endpoint, if the attempt's lease (`?4`)
    /// still holds it; returns the partner.
    hold: String,
    /// Holds the endpoint's [other deliveries](rules::HELD_ON_DISABLE).
    hold_pending: String,
    /// Counts a superseded attempt, and moves nothing else.
    count: String,
}

/// [`rules::ENDPOINT_DISABLED_SQL`], which the other statements of this backend name too.
pub(super) const ENDPOINT_DISABLED: &str = rules::ENDPOINT_DISABLED_SQL;

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| {
    let waiting_for_it = format!("blocked_by = ?1 AND status = '{}'", Status::Blocked.as_str());
    let pending_unless_disabled = rules::pending_unless_disabled_sql(ENDPOINT_DISABLED);
    let held = Status::Held.as_str();
    let fenced = |token| format!("id = ?1 AND {}", rules::holds_lease_sql(token));
    Statements {
        blocked_by_it: format!("SELECT 1 FROM deliveries WHERE {waiting_for_it} LIMIT 1"),
        release: format!(
            "UPDATE deliveries SET status = {pending_unless_disabled}, blocked_by = NULL,
                 next_at = MAX(next_at, ?2), updated_at = ?2
             WHERE {waiting_for_it}"
        ),
        finish: format!(
            "UPDATE deliveries SET status = ?2, attempts = attempts + 1, last_error = ?3, updated_at = ?4,
                 leased_until = NULL
             WHERE {}",
            fenced("?5")
        ),
        retry: format!(
            "UPDATE deliveries SET status = {pending_unless_disabled}, next_at = ?2,
                 attempts = attempts + 1, last_error = ?3, updated_at = ?4, leased_until = NULL
             WHERE {}",
            fenced("?5")
        ),
        hold: format!(
            "UPDATE deliveries SET status = '{held}', attempts = attempts + 1, last_error = ?2, updated_at = ?3,
                 leased_until = NULL
             WHERE {} RETURNING partner_id",
            fenced("?4")
        ),
        hold_pending: format!(
            "UPDATE deliveries SET status = '{held}', updated_at = ?2 WHERE partner_id = ?1 AND status = '{}'",
            rules::HELD_ON_DISABLE.as_str()
        ),
        count: "UPDATE deliveries SET attempts = attempts + 1 WHERE id = ?1".to_owned(),
    }
});

/// The statements that move one delivery, each matched by id and lease number.
#[cfg(test)]
pub(super) fn fenced_statements() -> [&'static str; 3] {
    let statements = &*STATEMENTS;
    [&statements.finish, &statements.retry, &statements.hold]
}

/// Records attempts and moves their deliveries on, outcome after outcome; stops early, at a
/// multiple of [`RECORD_STRETCH`], when `yield_to` counts a waiting accept. Returns how many
/// deliveries that waited for the finished ones may go now, and how many outcomes were recorded.
pub(super) fn record(
    tx: &rusqlite::Transaction<'_>,
    outcomes: &[Outcome],
    now: i64,
    yield_to: Option<&AtomicUsize>,
) -> Result<(u64, usize)> {
    let statements = &*STATEMENTS;
    let mut insert_attempt = tx.prepare_cached(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request, response_status,
             response_headers, response_body, verdict, error, plugins, superseded)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut finish = tx.prepare_cached(&statements.finish)?;
    let mut blocked_by_it = tx.prepare_cached(&statements.blocked_by_it)?;
    // Prepared when first needed: most recordings release nothing, retry nothing and are
    // superseded by nothing.
    let mut release = None;
    let mut retry = None;
    let mut count = None;
    let mut released = 0;
    for (
        i,
        Outcome {
            attempt,
            next,
            lease_seq,
        },
    ) in outcomes.iter().enumerate()
    {
        if i > 0 && i % RECORD_STRETCH == 0 && yield_to.is_some_and(|waiting| waiting.load(Ordering::Acquire) > 0) {
            return Ok((released, i));
        }
        let id = &attempt.delivery_id;
        let moved = match rules::settle(next) {
            Settle::Done(status) => {
                let moved = finish.execute(params![id, status.as_str(), attempt.error, now, lease_seq])? > 0;
                if moved && blocked_by_it.exists(params![id])? {
                    let release = prepared(&mut release, tx, &statements.release)?;
                    released += release.execute(params![id, now])? as u64;
                }
                moved
            }
            Settle::RetryAt(at) => {
                let retry = prepared(&mut retry, tx, &statements.retry)?;
                retry.execute(params![id, at, attempt.error, now, lease_seq])? > 0
            }
            Settle::Disable(reason) => disable(tx, id, *lease_seq, reason, now)?,
        };
        // A delivery that did not move is gone (its attempt breaks the foreign key and the
        // recording fails) or was claimed again: the attempt is logged as superseded, and
        // counted, so that the count is still the requests its receiver saw.
        if !moved {
            prepared(&mut count, tx, &statements.count)?.execute(params![id])?;
        }
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
            attempt.verdict.as_str(),
            attempt.error,
            attempt.plugins.as_ref().map(ToString::to_string),
            !moved,
        ])?;
    }
    Ok((released, outcomes.len()))
}

/// Records that an attempt disabled its endpoint: the delivery and every pending one of its
/// partner are held until the endpoint is enabled again. An attempt whose lease no longer holds
/// its delivery disables nothing (the newer claim's attempt answers for the endpoint); returns
/// whether the delivery moved.
fn disable(tx: &rusqlite::Transaction<'_>, id: &str, lease_seq: i64, reason: &str, now: i64) -> Result<bool> {
    let statements = &*STATEMENTS;
    let partner_id: Option<String> = tx
        .prepare_cached(&statements.hold)?
        .query_row(params![id, reason, now, lease_seq], |row| row.get(0))
        .optional()?;
    let Some(partner_id) = partner_id else {
        return Ok(false);
    };
    tx.prepare_cached("UPDATE settings SET disabled_reason = ?2, disabled_at = ?3 WHERE partner_id = ?1")?
        .execute(params![partner_id, reason, now])?;
    tx.prepare_cached(&statements.hold_pending)?
        .execute(params![partner_id, now])?;
    Ok(true)
}
