//! Claiming due deliveries and giving claims back.
//!
//! A claim takes turns between partners exactly as the SQLite claim does (see its module): the
//! partners with due deliveries are found by skipping from one partner to the next along the
//! `deliveries_pending_by_partner` index, and each gets an equal share of the claim, earliest
//! due first within a partner (ties in the order they were recorded, `seq`); a partner with
//! fewer due leaves its share to the others. A round of shares is one statement for all
//! partners, which locks the rows it reads with `FOR UPDATE SKIP LOCKED` (claimers in other
//! processes never take the same delivery nor wait for each other), leases those the claim
//! takes and reads their events, in a transaction of its own that first sets the planner to
//! index lookups (see `plan_by_index`); no other statement but the partners' heads.
//! The last partners of a round may be locked a share that the claim then leaves them (fewer
//! than a partner each); those rows are free again when the round commits.

use std::sync::LazyLock;

use sqlx::{PgPool, Row};

use super::super::Result;
use super::{distinct_runs, plan_by_index};
use crate::id::PartnerId;
use crate::store::{ACTION_INQUIRY, Claimed, ClaimedEvent, GiveBack, Status, rules};

/// Each partner with pending deliveries no worker holds at `$1`, when its earliest such one is
/// due, and that one's `seq`, one index seek each: the first entry of each partner in the
/// `deliveries_pending_by_partner` index (ordered as it is, so that no other index can serve it)
/// past its leased rows names the partner and its earliest due time at once. A lease leaves
/// `next_at` alone (see [`rules::due`]), so the leased rows sit at the front of their partner's
/// range: a partner's head walks over those in flight.
pub(super) static HEADS: LazyLock<String> = LazyLock::new(|| {
    let pending = Status::Pending.as_str();
    let free = rules::not_leased_sql("$1");
    format!(
        "WITH RECURSIVE heads(partner_id, first, first_seq) AS (
             (SELECT partner_id, next_at, seq FROM deliveries WHERE status = '{pending}' AND {free}
              ORDER BY partner_id, next_at, seq LIMIT 1)
             UNION ALL
             SELECT h.partner_id, h.next_at, h.seq FROM heads CROSS JOIN LATERAL (
                 SELECT d.partner_id, d.next_at, d.seq FROM deliveries d
                 WHERE d.status = '{pending}' AND {free} AND d.partner_id > heads.partner_id
                 ORDER BY d.partner_id, d.next_at, d.seq LIMIT 1) AS h)
         SELECT partner_id, first, first_seq FROM heads"
    )
});

/// One round of a claim in one statement: for each partner of the round (`$1`), up to a share
/// (`$4`) of its [due](rules::due) deliveries after its place in due order (`$2`, `$3`),
/// earliest first, locked (rows locked by another claim are passed over); the first `$6` of
/// them in turn order are leased until `$7`, each with its delivery's next lease number (its
/// fencing token, see [`rules::holds_lease`]), and come back with what sending them needs.
/// The lease writes no indexed column, so that it is a HOT update: no index entry, and the row's
/// new version on its own page while there is room (the table's `fillfactor`).
/// Rows locked beyond `$6` are free again when the round commits. The picked rows are leased
/// through arrays of them, so that the planner, whatever it makes of the picking, looks each up
/// by its key rather than scanning the table for them; the round's transaction leaves it no
/// other way (`plan_by_index`), since on a small table it found hashing a scan of the whole table
/// cheaper and kept that plan as the table grew.
static ROUND: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH picked AS (
             SELECT t.turn, d.id, d.next_at, d.seq
             FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) WITH ORDINALITY
                 AS t(p, after_at, after_seq, turn)
             CROSS JOIN LATERAL (
                 SELECT id, next_at, seq FROM deliveries
                 WHERE partner_id = t.p AND {} AND (next_at, seq) > (t.after_at, t.after_seq)
                 ORDER BY next_at, seq LIMIT $4
                 FOR UPDATE SKIP LOCKED) AS d
             ORDER BY t.turn, d.next_at, d.seq
             LIMIT $6),
         lists AS (
             SELECT array_agg(id) AS ids, array_agg(turn) AS turns, array_agg(next_at) AS ats,
                 array_agg(seq) AS seqs
             FROM picked)
         UPDATE deliveries SET leased_until = $7, updated_at = $5, lease_seq = lease_seq + 1
         FROM UNNEST((SELECT ids FROM lists), (SELECT turns FROM lists), (SELECT ats FROM lists),
             (SELECT seqs FROM lists)) AS picked(id, turn, next_at, seq)
         WHERE deliveries.id = picked.id
         RETURNING picked.turn, picked.next_at, picked.seq, deliveries.id, deliveries.partner_id,
             deliveries.attempts,
             (SELECT e.body FROM events e
              WHERE e.partner_id = deliveries.partner_id AND e.id = deliveries.event_id),
             COALESCE((SELECT s.version FROM settings s
                       WHERE s.partner_id = deliveries.partner_id AND s.family = $8), 0),
             deliveries.lease_seq",
        rules::due_sql("$5")
    )
});

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
///
/// Each round commits on its own: a round's leases hold whatever comes after, and a process
/// that dies between rounds leaves them to end as any lease does.
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
    plan_by_index(&mut tx).await?;
    let heads = sqlx::query_as::<_, (String, i64, i64)>(&HEADS)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut heads: Vec<(i64, i64, String)> = heads
        .into_iter()
        .map(|(partner_id, first, first_seq)| (first, first_seq, partner_id))
        .collect();
    heads.retain(|(first, _, partner_id)| *first <= now && !skip.iter().any(|s| s.as_str() == partner_id));
    heads.sort_unstable();
    // A partner's first share starts at its head, the earliest due delivery no worker held: the
    // index entries before it are of rows leased, or no longer pending and not yet removed by
    // vacuum, and the heads walked them already (deliveries accepted together share their due
    // time, so starting at the due time alone would walk the leased ones among them again). A
    // row made due before the head since is left to the next claim.
    let mut turns: Vec<Turn> = heads
        .into_iter()
        .map(|(first, first_seq, partner_id)| Turn {
            partner_id,
            after: (first, first_seq - 1),
        })
        .collect();
    let mut claimed: Vec<Claimed> = Vec::with_capacity(limit);
    // Each round shares what is left of the claim between the partners that filled their last
    // share; one that did not has nothing more due (or nothing another claim has not locked).
    // The partners in turn take their share of what is left, the last ones less when the claim
    // runs out, as the SQLite claim's round does.
    while claimed.len() < limit && !turns.is_empty() {
        let left = limit - claimed.len();
        let share = left.div_ceil(turns.len());
        // A transaction of its own, for the planner's settings: the round's leases commit with
        // it, before the next round.
        let mut tx = pool.begin().await?;
        plan_by_index(&mut tx).await?;
        let rows = sqlx::query(&ROUND)
            .bind(turns.iter().map(|t| t.partner_id.as_str()).collect::<Vec<_>>())
            .bind(turns.iter().map(|t| t.after.0).collect::<Vec<_>>())
            .bind(turns.iter().map(|t| t.after.1).collect::<Vec<_>>())
            .bind(share as i64)
            .bind(now)
            .bind(left as i64)
            .bind(now + lease_ms)
            .bind(ACTION_INQUIRY)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut round = Vec::with_capacity(rows.len());
        for row in rows {
            let turn: i64 = row.try_get(0)?;
            let place: (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
            round.push((
                (turn, place),
                Claimed {
                    delivery_id: row.try_get::<String, _>(3)?.into(),
                    partner_id: row.try_get::<String, _>(4)?.into(),
                    attempts: row.try_get(5)?,
                    event: ClaimedEvent::Stored(row.try_get(6)?),
                    settings_version: row.try_get(7)?,
                    lease_seq: row.try_get(8)?,
                },
            ));
        }
        round.sort_unstable_by_key(|(key, _)| *key);
        let mut took = vec![0usize; turns.len()];
        for ((turn, place), _) in &round {
            let at = usize::try_from(turn - 1).expect("a turn");
            took[at] += 1;
            turns[at].after = *place;
        }
        claimed.extend(round.into_iter().map(|(_, claimed)| claimed));
        turns = turns
            .into_iter()
            .zip(took)
            .filter(|(_, took)| *took == share)
            .map(|(turn, _)| turn)
            .collect();
    }
    Ok(claimed)
}

/// Moves pending deliveries to new due times and ends their leases, in order: the last time
/// given for a delivery wins.
pub(super) async fn reschedule(pool: &PgPool, due: &[GiveBack]) -> Result<()> {
    let runs = distinct_runs(due, |back| [back.delivery_id.as_str()]);
    let mut tx = pool.begin().await?;
    plan_by_index(&mut tx).await?;
    for run in runs {
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
