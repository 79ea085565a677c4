//! The pipeline's statements on PostgreSQL: accept, claim, record, give back, retention.
//!
//! Several processes run them at once on one database, so each keeps the rules of the SQLite
//! backend (which has one writer) with locks instead:
//! - an accept takes a transaction-scoped advisory lock per inquiry it records events of, and
//!   share-locks its partners' rows, their settings and the deliveries its new ones wait for, so
//!   that who waits for whom is decided as if accepts, recordings and endpoint changes ran one
//!   after another;
//! - a claim locks the rows it takes with `FOR UPDATE SKIP LOCKED`: claimers never wait for each
//!   other nor take the same delivery;
//! - a recording moves a delivery only under the lease its attempt was made under
//!   ([`rules::holds_lease`](crate::store::rules::holds_lease)).
//!
//! Rows go in batches (arrays unnested in one statement) rather than a round trip each: a
//! batch is cut into runs in which no two rows bear on each other, and the runs go in order,
//! so that a batch is recorded as its rows would be one after another.

mod accept;
mod claim;
mod prune;
mod record;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use sqlx::{Postgres, Row, Transaction};

use super::{PgStore, Result};
use crate::event::Event;
use crate::id::PartnerId;
use crate::store::{
    ACTION_INQUIRY, Accepted, Claimed, Endpoint, GiveBack, Lease, Leased, Outcome, Pace, Pruned, rules,
};

/// The channel a commit that leaves new deliveries due for a claim notifies, so that workers
/// waiting for work claim at once rather than at their next poll.
pub(crate) const DUE_CHANNEL: &str = "postwire_due";

/// Leaves the planner, for the rest of the transaction, no way to a row of the pipeline's
/// statements but through an index: no scan of a whole table, no hash or merge join.
///
/// Every statement of the pipeline reaches the rows it reads or changes by key (a batch's ids,
/// partners, inquiries), a few hundred or thousand at a time. While a table is small, or its
/// statistics are from when it was (a new database, the first minutes of a bench), the planner
/// may find reading the whole table cheaper, and a prepared statement keeps its generic plan for
/// the connection's life: claims and recordings then read every delivery on every batch as the
/// table grows (about 100 rows read a postback in the bench: docs/performance.md). Index lookups
/// cost the same at any size. The settings last until the transaction ends, and a prepared
/// statement is planned under them when every transaction that runs it begins with them.
const INDEX_PLANS: &str = "SELECT set_config('enable_seqscan', 'off', true),
     set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)";

/// Applies [`INDEX_PLANS`] to the transaction `tx` (one round trip).
async fn plan_by_index(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    sqlx::query(INDEX_PLANS).execute(&mut **tx).await?;
    Ok(())
}

/// `items` in layers in which no two share a key (each item has a few): an item goes one layer
/// after the latest layer holding an earlier item that shares one of its keys, or in the first.
/// So each item comes after every earlier one it shares a key with, and the rows of one layer
/// can go in one statement with the same effect as one after another. A batch of created and
/// resolved events makes two layers, where runs ([`distinct_runs`]) would make one per pair.
/// Each layer lists its items' positions in order.
fn distinct_layers<'a, T, K: Eq + Hash, I: IntoIterator<Item = K>>(
    items: &'a [T],
    keys: impl Fn(&'a T) -> I,
) -> Vec<Vec<usize>> {
    let mut layers: Vec<Vec<usize>> = Vec::new();
    // For each key, the layer of the latest item holding it.
    let mut last: HashMap<K, usize> = HashMap::new();
    for (at, item) in items.iter().enumerate() {
        let keys: Vec<K> = keys(item).into_iter().collect();
        let layer = keys
            .iter()
            .filter_map(|key| last.get(key))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        if layer == layers.len() {
            layers.push(Vec::new());
        }
        layers[layer].push(at);
        for key in keys {
            last.insert(key, layer);
        }
    }
    layers
}

/// Consecutive runs of `items` in which no two share a key (each item has a few), in order:
/// the rows of one run can go in one statement with the same effect as one after another.
fn distinct_runs<'a, T, K: Eq + Hash, I: IntoIterator<Item = K>>(
    items: &'a [T],
    keys: impl Fn(&'a T) -> I,
) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut seen = HashSet::new();
    for (at, item) in items.iter().enumerate() {
        let keys: Vec<K> = keys(item).into_iter().collect();
        if keys.iter().any(|key| seen.contains(key)) {
            runs.push(start..at);
            start = at;
            seen.clear();
        }
        seen.extend(keys);
    }
    if start < items.len() {
        runs.push(start..items.len());
    }
    runs
}

impl PgStore {
    /// Records events and their deliveries in one transaction (see
    /// [`Store::accept_leasing`](crate::store::Store::accept_leasing)).
    pub async fn accept_leasing(
        &self,
        events: Arc<Vec<Event>>,
        now: i64,
        lease: Lease,
    ) -> Result<(Vec<Accepted>, Vec<Leased>)> {
        let lease = if rules::independent(events.iter()) {
            lease
        } else {
            Lease::NONE
        };
        accept::accept(&self.pool, &events, now, lease).await
    }

    /// Claims up to `limit` due deliveries for `lease_ms`, none of the partners in `skip`.
    pub async fn claim(&self, now: i64, lease_ms: i64, limit: i64, skip: &[PartnerId]) -> Result<Vec<Claimed>> {
        claim::claim(&self.pool, now, lease_ms, limit, skip).await
    }

    /// When the earliest pending delivery that no worker holds is due, if any is: the earliest
    /// of each partner's, found partner by partner along the `deliveries_pending_by_partner`
    /// index. A lease that ends unrenewed (its worker died) is found by the idle poll.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        static NEXT_DUE: LazyLock<String> =
            LazyLock::new(|| format!("SELECT MIN(first) FROM ({}) AS h", *claim::HEADS));
        Ok(sqlx::query_scalar(&NEXT_DUE)
            .bind(crate::store::now_ms())
            .fetch_one(&self.pool)
            .await?)
    }

    /// How many pending deliveries are due at `now`, and when the earliest fell due (see
    /// [`Store::due`](crate::store::Store::due)). Claimed ones are not counted until their
    /// lease ends.
    pub async fn due(&self, now: i64) -> Result<(i64, Option<i64>)> {
        static DUE: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT COALESCE(SUM((SELECT COUNT(*) FROM deliveries
                                      WHERE partner_id = h.partner_id AND {})), 0)::BIGINT,
                     MIN(first)
                 FROM ({}) AS h WHERE first <= $1",
                rules::due_sql("$1"),
                *claim::HEADS
            )
        });
        let row = sqlx::query(&DUE).bind(now).fetch_one(&self.pool).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// A partner's settings and secret for sending.
    pub async fn endpoint(&self, partner_id: &str) -> Result<Option<Endpoint>> {
        let row = sqlx::query(
            "SELECT s.body, s.version, p.secret, p.previous_secret, p.previous_secret_until
             FROM settings s JOIN partners p ON p.id = s.partner_id
             WHERE s.partner_id = $1 AND s.family = $2",
        )
        .bind(partner_id)
        .bind(ACTION_INQUIRY)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Endpoint {
                settings: row.try_get(0)?,
                version: row.try_get(1)?,
                secret: row.try_get(2)?,
                previous_secret: row
                    .try_get::<Option<String>, _>(3)?
                    .zip(row.try_get::<Option<i64>, _>(4)?),
            })
        })
        .transpose()
    }

    /// Records attempts and moves their deliveries on, in order (see
    /// [`Store::record`](crate::store::Store::record)); returns how many deliveries that waited
    /// for the finished ones may go now.
    pub async fn record(&self, outcomes: Arc<Vec<Outcome>>, now: i64) -> Result<u64> {
        record::record(&self.pool, &outcomes, now).await
    }

    /// Moves claimed deliveries to new due times without counting an attempt; a delivery
    /// claimed again since is left to the newer claim.
    pub async fn reschedule(&self, due: &[GiveBack]) -> Result<()> {
        if due.is_empty() {
            return Ok(());
        }
        claim::reschedule(&self.pool, due).await
    }

    /// Removes what retention lets go at the cutoff `older_than` (see
    /// [`Store::prune`](crate::store::Store::prune)): a step of `batch` rows a transaction,
    /// each when `pace` lets it.
    pub async fn prune(&self, older_than: i64, batch: usize, pace: &Pace) -> Result<Pruned> {
        let batch = batch.max(1);
        let mut pruned = Pruned::default();
        let mut last_step = None;
        let mut after = String::new();
        loop {
            pace.before_step(&mut last_step).await;
            let step = prune::deliveries(&self.pool, older_than, &after, batch).await?;
            pruned += step.pruned;
            match step.cursor {
                Some(cursor) => after = cursor,
                None => break,
            }
        }
        let mut after = None;
        loop {
            pace.before_step(&mut last_step).await;
            let step = prune::events(&self.pool, older_than, after.as_ref(), batch).await?;
            pruned += step.pruned;
            match step.cursor {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        Ok(pruned)
    }
}
