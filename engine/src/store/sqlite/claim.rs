//! Claiming due deliveries and giving claims back, on the SQLite handle (see `direct`).
//!
//! A claim takes turns between partners: it finds the partners with due deliveries by skipping
//! from one partner to the next along the `deliveries_pending_by_partner` index, and gives each
//! an equal share of the claim, earliest due first within a partner; a partner with fewer due
//! leaves its share to the others. So one partner's backlog, however large and old, never keeps
//! another's due deliveries out of a claim, and a claim reads about as many index entries as it
//! takes, plus two per partner with pending deliveries.

use std::sync::LazyLock;

use rusqlite::params;

use super::Result;
use crate::id::PartnerId;
use crate::store::{ACTION_INQUIRY, Claimed, ClaimedEvent, GiveBack, Status, rules};

/// Each partner with pending deliveries and when its earliest one is due, one index seek each.
pub(super) static HEADS: LazyLock<String> = LazyLock::new(|| {
    let pending = Status::Pending.as_str();
    format!(
        "WITH RECURSIVE heads(partner_id) AS (
             SELECT (SELECT MIN(partner_id) FROM deliveries INDEXED BY deliveries_pending_by_partner
                     WHERE status = '{pending}')
             UNION ALL
             SELECT (SELECT partner_id FROM deliveries INDEXED BY deliveries_pending_by_partner
                     WHERE status = '{pending}' AND partner_id > heads.partner_id
                     ORDER BY partner_id LIMIT 1)
             FROM heads WHERE heads.partner_id IS NOT NULL)
         SELECT partner_id,
             (SELECT next_at FROM deliveries INDEXED BY deliveries_pending_by_partner
              WHERE status = '{pending}' AND partner_id = heads.partner_id ORDER BY next_at LIMIT 1) AS first
         FROM heads WHERE partner_id IS NOT NULL"
    )
});

/// A partner's [due](rules::due) deliveries after a place in due order (`next_at`, `rowid`),
/// earliest first.
pub(super) static PARTNER_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT rowid, next_at FROM deliveries INDEXED BY deliveries_pending_by_partner
         WHERE partner_id = ?1 AND {} AND (next_at, rowid) > (?3, ?4)
         ORDER BY next_at, rowid LIMIT ?5",
        rules::due_sql("?2")
    )
});

/// Leases one delivery and reads what sending it needs; the lease gets the delivery's next
/// lease number (its fencing token, see [`rules::holds_lease`]).
pub(super) const LEASE: &str =
    "UPDATE deliveries SET next_at = ?2, leased_until = ?2, updated_at = ?1, lease_seq = lease_seq + 1
     WHERE rowid = ?3
     RETURNING id, partner_id, attempts,
         (SELECT e.body FROM events e WHERE e.partner_id = deliveries.partner_id AND e.id = deliveries.event_id),
         COALESCE((SELECT s.version FROM settings s
                   WHERE s.partner_id = deliveries.partner_id AND s.family = ?4), 0),
         lease_seq";

/// Moves a claimed delivery to a new due time and ends its lease, if it is still pending and
/// the lease (`?3`) still holds it.
static RESCHEDULE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET next_at = ?2, leased_until = NULL WHERE id = ?1 AND status = '{}' AND {}",
        Status::Pending.as_str(),
        rules::holds_lease_sql("?3")
    )
});

/// A partner with due deliveries, and where its next share starts.
struct Turn {
    partner_id: String,
    after: (i64, i64),
}

/// Claims up to `limit` due deliveries for `lease_ms`, partners taking turns (see the module
/// docs and [`Store::claim`](crate::store::Store::claim)). Within a partner they come earliest
/// first; partners come in the order their earliest due deliveries fell due. The partners in
/// `skip` take no turn.
pub(super) fn claim(
    tx: &rusqlite::Transaction<'_>,
    now: i64,
    lease_ms: i64,
    limit: i64,
    skip: &[PartnerId],
) -> Result<Vec<Claimed>> {
    let limit = usize::try_from(limit).unwrap_or(0);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut heads: Vec<(i64, String)> = tx
        .prepare_cached(&HEADS)?
        .query_map([], |row| Ok((row.get::<_, i64>(1)?, row.get::<_, String>(0)?)))?
        .collect::<rusqlite::Result<_>>()?;
    heads.retain(|(first, partner_id)| *first <= now && !skip.iter().any(|s| s.as_str() == partner_id));
    heads.sort_unstable();
    let mut turns: Vec<Turn> = heads
        .into_iter()
        .map(|(_, partner_id)| Turn {
            partner_id,
            after: (i64::MIN, i64::MIN),
        })
        .collect();
    let mut due = tx.prepare_cached(&PARTNER_DUE)?;
    let mut picked: Vec<i64> = Vec::with_capacity(limit);
    // Each round shares what is left of the claim between the partners that filled their last
    // share; one that did not has nothing more due.
    while picked.len() < limit && !turns.is_empty() {
        let share = (limit - picked.len()).div_ceil(turns.len());
        let mut more = Vec::with_capacity(turns.len());
        for mut turn in turns {
            let want = share.min(limit - picked.len());
            if want == 0 {
                break;
            }
            let before = picked.len();
            let mut rows = due.query(params![turn.partner_id, now, turn.after.0, turn.after.1, want as i64])?;
            while let Some(row) = rows.next()? {
                let rowid: i64 = row.get(0)?;
                turn.after = (row.get(1)?, rowid);
                picked.push(rowid);
            }
            if picked.len() - before == want {
                more.push(turn);
            }
        }
        turns = more;
    }
    let mut lease = tx.prepare_cached(LEASE)?;
    let mut claimed = Vec::with_capacity(picked.len());
    for rowid in picked {
        claimed.push(
            lease.query_row(params![now, now + lease_ms, rowid, ACTION_INQUIRY], |row| {
                Ok(Claimed {
                    delivery_id: row.get(0)?,
                    partner_id: row.get(1)?,
                    attempts: row.get(2)?,
                    event: ClaimedEvent::Stored(row.get(3)?),
                    settings_version: row.get(4)?,
                    lease_seq: row.get(5)?,
                })
            })?,
        );
    }
    Ok(claimed)
}

/// Moves pending deliveries to new due times, one after another, and ends their leases.
pub(super) fn reschedule(tx: &rusqlite::Transaction<'_>, due: &[GiveBack]) -> Result<()> {
    let mut reschedule = tx.prepare_cached(&RESCHEDULE)?;
    for back in due {
        reschedule.execute(params![back.delivery_id, back.due, back.lease_seq])?;
    }
    Ok(())
}
