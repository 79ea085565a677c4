//! Claiming due deliveries and giving claims back, on the SQLite handle (see `direct`).

use std::sync::LazyLock;

use rusqlite::params;

use super::Result;
use crate::store::{ACTION_INQUIRY, Claimed, ClaimedEvent, GiveBack, Status, rules};

/// Leases the [due](rules::due) deliveries, earliest first, and reads what sending them needs,
/// in one statement; each lease gets the delivery's next lease number (its fencing token, see
/// [`rules::holds_lease`]).
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET next_at = ?2, leased_until = ?2, updated_at = ?1, lease_seq = lease_seq + 1
         WHERE id IN (SELECT id FROM deliveries WHERE {}
                      ORDER BY next_at LIMIT ?3)
         RETURNING id, partner_id, attempts,
             (SELECT e.body FROM events e WHERE e.partner_id = deliveries.partner_id AND e.id = deliveries.event_id),
             COALESCE((SELECT s.version FROM settings s
                       WHERE s.partner_id = deliveries.partner_id AND s.family = ?4), 0),
             lease_seq",
        rules::due_sql("?1")
    )
});

/// Moves a claimed delivery to a new due time and ends its lease, if it is still pending and
/// the lease (`?3`) still holds it.
static RESCHEDULE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET next_at = ?2, leased_until = NULL WHERE id = ?1 AND status = '{}' AND {}",
        Status::Pending.as_str(),
        rules::holds_lease_sql("?3")
    )
});

/// Claims up to `limit` due deliveries for `lease_ms` (see
/// [`Store::claim`](crate::store::Store::claim)).
pub(super) fn claim(tx: &rusqlite::Transaction<'_>, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
    let mut claim = tx.prepare_cached(&CLAIM)?;
    let claimed = claim
        .query_map(params![now, now + lease_ms, limit, ACTION_INQUIRY], |row| {
            Ok(Claimed {
                delivery_id: row.get(0)?,
                partner_id: row.get(1)?,
                attempts: row.get(2)?,
                event: ClaimedEvent::Stored(row.get(3)?),
                settings_version: row.get(4)?,
                lease_seq: row.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<Claimed>>>()?;
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
