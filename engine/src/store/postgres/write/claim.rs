//! Claiming due deliveries and giving claims back.
//!
//! A claim takes turns between partners exactly as the SQLite claim does (see its module): the
//! partners with due deliveries are found by skipping from one partner to the next along the
//! `deliveries_pending_by_partner` index, and each gets an equal share of the claim, earliest
//! due first within a partner (ties in the order they were recorded, `seq`); a partner with
//! fewer due leaves its share to the others. A round of shares is one statement for all
//! partners, which locks the rows it reads with `FOR UPDATE SKIP LOCKED`: claimers in other
//! processes never take the same delivery nor wait for each other. The last partners of a round
//! may be locked a share that the claim then leaves them (fewer than a partner each); those rows
//! are free again when the claim commits.

use std::sync::LazyLock;

use sqlx::{PgPool, Row};

use super::super::Result;
use super::distinct_runs;
use crate::id::PartnerId;
use crate::store::{ACTION_INQUIRY, Claimed, ClaimedEvent, GiveBack, Status, rules};

/// Each partner with pending deliveries and when its earliest one is due, one index seek each.
pub(super) static HEADS: LazyLock<String> = LazyLock::new(|| {
    let pending = Status::Pending.as_str();
    format!(
        "WITH RECURSIVE heads(partner_id) AS (
             SELECT (SELECT MIN(partner_id) FROM deliveries WHERE status = '{pending}')
             UNION ALL
             SELECT (SELECT d.partner_id FROM deliveries d
                     WHERE d.status = '{pending}' AND d.partner_id > heads.partner_id
                     ORDER BY d.partner_id LIMIT 1)
             FROM heads WHERE heads.partner_id IS NOT NULL)
         SELECT partner_id,
             (SELECT d.next_at FROM deliveries d
              WHERE d.status = '{pending}' AND d.partner_id = heads.partner_id ORDER BY d.next_at LIMIT 1) AS first
         FROM heads WHERE partner_id IS NOT NULL"
    )
});

/// For each partner of a round (`$1`), up to a share (`$4`) of its [due](rules::due)
/// deliveries after its place in due order (`$2`, `$3`), earliest first, locked; rows locked by
/// another claim are passed over.
static ROUND: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.turn, d.id, d.next_at, d.seq
         FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) WITH ORDINALITY
             AS t(p, after_at, after_seq, turn)
         CROSS JOIN LATERAL (
             SELECT id, next_at, seq FROM deliveries
             WHERE partner_id = t.p AND {} AND (next_at, seq) > (t.after_at, t.after_seq)
             ORDER BY next_at, seq LIMIT $4
             FOR UPDATE SKIP LOCKED) AS d
         ORDER BY t.turn, d.next_at, d.seq",
        rules::due_sql("$5")
    )
});

/// Leases the picked deliveries and reads what sending them needs; each lease gets its
/// delivery's next lease number (its fencing token, see [`rules::holds_lease`]).
const LEASE: &str = "UPDATE deliveries SET next_at = $2, leased_until = $2, updated_at = $1, lease_seq = lease_seq + 1
     FROM UNNEST($3::TEXT[]) WITH ORDINALITY AS t(picked, at)
     WHERE id = t.picked
     RETURNING t.at, id, partner_id, attempts,
         (SELECT e.body FROM events e WHERE e.partner_id = deliveries.partner_id AND e.id = deliveries.event_id),
         COALESCE((SELECT s.version FROM settings s
                   WHERE s.partner_id = deliveries.partner_id AND s.family = $4), 0),
         lease_seq";

/// Moves claimed deliveries to new due times and ends their leases, each if it is still
/// pending and its lease still holds it.
static RESCHEDULE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET next_at = t.due, leased_until = NULL
         FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS t(back, due, token)
         WHERE id = t.back AND status = '{}' AND {}",
        Status::Pending.as_str(),
        rules::holds_lease_sql("t.token")
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
pub(super) async fn claim(
    pool: &PgPool,
    now: i64,
    lease_ms: i64,
    limit: i64,
    skip: &[PartnerId],
) -> Result<Vec<Claimed>> {
    let limit = usize::try_from(limit).unwrap_or(0);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let mut heads: Vec<(i64, String)> = sqlx::query_as::<_, (String, i64)>(&HEADS)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(partner_id, first)| (first, partner_id))
        .collect();
    heads.retain(|(first, partner_id)| *first <= now && !skip.iter().any(|s| s.as_str() == partner_id));
    heads.sort_unstable();
    let mut turns: Vec<Turn> = heads
        .into_iter()
        .map(|(_, partner_id)| Turn {
            partner_id,
            after: (i64::MIN, i64::MIN),
        })
        .collect();
    let mut picked: Vec<String> = Vec::with_capacity(limit);
    // Each round shares what is left of the claim between the partners that filled their last
    // share; one that did not has nothing more due (or nothing another claim has not locked).
    while picked.len() < limit && !turns.is_empty() {
        let share = (limit - picked.len()).div_ceil(turns.len());
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(&ROUND)
            .bind(turns.iter().map(|t| t.partner_id.as_str()).collect::<Vec<_>>())
            .bind(turns.iter().map(|t| t.after.0).collect::<Vec<_>>())
            .bind(turns.iter().map(|t| t.after.1).collect::<Vec<_>>())
            .bind(share as i64)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let mut rows = rows.into_iter().peekable();
        let mut more = Vec::with_capacity(turns.len());
        for (at, mut turn) in turns.into_iter().enumerate() {
            // As the SQLite claim's round: the partners in turn take their share of what is
            // left, the last ones less when the claim runs out.
            let want = share.min(limit - picked.len());
            if want == 0 {
                break;
            }
            let mut took = 0;
            while let Some((_, id, next_at, seq)) = rows.next_if(|row| row.0 == at as i64 + 1) {
                if took < want {
                    turn.after = (next_at, seq);
                    picked.push(id);
                    took += 1;
                }
            }
            if took == want {
                more.push(turn);
            }
        }
        turns = more;
    }
    if picked.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let rows = sqlx::query(LEASE)
        .bind(now)
        .bind(now + lease_ms)
        .bind(&picked)
        .bind(ACTION_INQUIRY)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        claimed.push((
            row.try_get::<i64, _>(0)?,
            Claimed {
                delivery_id: row.try_get::<String, _>(1)?.into(),
                partner_id: row.try_get::<String, _>(2)?.into(),
                attempts: row.try_get(3)?,
                event: ClaimedEvent::Stored(row.try_get(4)?),
                settings_version: row.try_get(5)?,
                lease_seq: row.try_get(6)?,
            },
        ));
    }
    claimed.sort_unstable_by_key(|(at, _)| *at);
    Ok(claimed.into_iter().map(|(_, claimed)| claimed).collect())
}

/// Moves pending deliveries to new due times and ends their leases, in order: the last time
/// given for a delivery wins.
pub(super) async fn reschedule(pool: &PgPool, due: &[GiveBack]) -> Result<()> {
    let mut tx = pool.begin().await?;
    for run in distinct_runs(due, |back| [back.delivery_id.as_str()]) {
        let due = &due[run];
        sqlx::query(&RESCHEDULE)
            .bind(due.iter().map(|b| b.delivery_id.as_str()).collect::<Vec<_>>())
            .bind(due.iter().map(|b| b.due).collect::<Vec<_>>())
            .bind(due.iter().map(|b| b.lease_seq).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
