//! The PostgreSQL store's queries outside the pipeline: partners, settings, the API's listings,
//! replays and manual retries.
//!
//! Each statement is the SQLite backend's (`sqlite/queries.rs`) in PostgreSQL's words, with the
//! same rules ([`rules`]) rendered in it. Where SQLite's single writer made one statement safe
//! by itself and PostgreSQL's concurrent transactions do not, the statement re-checks its
//! condition on the rows it changes, or the transaction locks the partner's row first.

use std::sync::LazyLock;

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::{PgStore, Result};
use crate::id::DeliveryId;
use crate::store::rules::{self, ENDPOINT_DISABLED_SQL};
use crate::store::{
    ACTION_INQUIRY, Attempt, AttemptVerdict, Deleted, Delivery, DeliveryFilter, OutcomeCount, Partner, SettingsRecord,
    Status,
};

/// Binds `binds` to `query` in order.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(int) => query.bind(int),
            };
        }
        query
    }};
}

impl PgStore {
    /// The attempts started from `since` on, across partners, counted per partner and per span
    /// of `span_ms` by what they meant; attempts superseded by a newer claim are left out.
    /// Read along the attempts' primary key (see [`rules::attempts_from`]).
    pub async fn outcome_counts(&self, since: i64, span_ms: i64) -> Result<Vec<OutcomeCount>> {
        let rows = sqlx::query(
            "SELECT d.partner_id, $1 + (a.started_at - $1) / $2 * $2 AS at,
                    COUNT(*) FILTER (WHERE a.verdict = 'success'),
                    COUNT(*) FILTER (WHERE a.verdict IN ('fail', 'disable')),
                    COUNT(*) FILTER (WHERE a.verdict = 'retry')
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE a.id >= $3 AND a.started_at >= $1 AND a.superseded = 0
             GROUP BY d.partner_id, at ORDER BY at, d.partner_id",
        )
        .bind(since)
        .bind(span_ms.max(1))
        .bind(rules::attempts_from(since))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(OutcomeCount {
                    partner_id: row.try_get::<String, _>(0)?.into(),
                    at: row.try_get(1)?,
                    delivered: row.try_get(2)?,
                    failed: row.try_get(3)?,
                    retried: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Creates a partner (see [`rules::new_partner`]), its secret stored as `seal` makes it.
    pub async fn create_partner(&self, name: &str, seal: impl FnOnce(&str) -> String) -> Result<Partner> {
        let partner = rules::new_partner(name, crate::store::now_ms());
        sqlx::query("INSERT INTO partners (id, name, secret, created_at) VALUES ($1, $2, $3, $4)")
            .bind(partner.id.as_str())
            .bind(&partner.name)
            .bind(seal(&partner.secret))
            .bind(partner.created_at)
            .execute(&self.pool)
            .await?;
        Ok(partner)
    }

    /// Every partner's stored signing secret, in id order.
    pub async fn partner_secrets(&self) -> Result<Vec<(crate::id::PartnerId, String)>> {
        let rows = sqlx::query("SELECT id, secret FROM partners ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get::<String, _>(0).into(), row.get(1)))
            .collect())
    }

    /// Gives a partner a new signing secret, `stored`, keeping the current one as the previous
    /// secret until `previous_until` (Unix ms); a previous secret from an earlier rotation is
    /// dropped. Returns whether the partner exists.
    pub async fn rotate_secret(&self, partner_id: &str, stored: &str, previous_until: i64) -> Result<bool> {
        // The right-hand sides read the row as it was, so `previous_secret` gets the old secret.
        let done = sqlx::query(
            "UPDATE partners SET previous_secret = secret, previous_secret_until = $3, secret = $2 WHERE id = $1",
        )
        .bind(partner_id)
        .bind(stored)
        .bind(previous_until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Drops the previous signing secrets whose grace period ended by `now` (Unix ms); returns
    /// how many.
    pub async fn drop_previous_secrets(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE partners SET previous_secret = NULL, previous_secret_until = NULL
             WHERE previous_secret_until <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Replaces a partner's stored signing secret with `stored`.
    pub async fn set_partner_secret(&self, partner_id: &str, stored: &str) -> Result<()> {
        sqlx::query("UPDATE partners SET secret = $2 WHERE id = $1")
            .bind(partner_id)
            .bind(stored)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A partner by id.
    pub async fn partner(&self, id: &str) -> Result<Option<Partner>> {
        let row = sqlx::query(&format!("SELECT {PARTNER_COLUMNS} FROM partners WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(partner))
    }

    /// Partners, newest first (ids sort by creation time), `limit` at a time after the cursor
    /// `before`.
    pub async fn partners(&self, before: Option<&str>, limit: i64) -> Result<Vec<Partner>> {
        let rows = sqlx::query(&format!(
            "SELECT {PARTNER_COLUMNS} FROM partners WHERE ($1::text IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(partner).collect())
    }

    /// Disables a partner (`disabled` true) and holds its pending deliveries, or enables it and
    /// releases its held ones if its endpoint can send. Returns how many deliveries were held or
    /// released, or `None` without such a partner.
    pub async fn set_partner_disabled(&self, id: &str, disabled: bool, now: i64) -> Result<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        // Disabling a disabled partner keeps when it was first disabled.
        let found = sqlx::query(
            "UPDATE partners SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, $3) END WHERE id = $1",
        )
        .bind(id)
        .bind(disabled)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Ok(None);
        }
        let moved = if disabled {
            hold_pending(&mut tx, id, now).await?
        } else {
            release_held(&mut tx, id, now).await?
        };
        tx.commit().await?;
        Ok(Some(moved))
    }

    /// Deletes a partner and everything of it in one transaction: attempts, deliveries, events,
    /// settings, keys and plugins. `None` without such a partner.
    pub async fn delete_partner(&self, id: &str) -> Result<Option<Deleted>> {
        let mut tx = self.pool.begin().await?;
        // Locking the partner's row first makes accepts, uploads and key creations for it wait
        // (their foreign key checks share-lock that row) and then fail on the missing partner,
        // instead of adding rows behind the deletes that would keep the partner alive.
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM partners WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(None);
        }
        let keys: Vec<String> = sqlx::query_scalar("SELECT id FROM api_keys WHERE partner_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let plugins: Vec<String> = sqlx::query_scalar("SELECT id FROM plugins WHERE partner_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let mut deliveries = 0;
        // Children before parents, for the foreign keys.
        for statement in [
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE partner_id = $1)",
            "DELETE FROM deliveries WHERE partner_id = $1",
            "DELETE FROM events WHERE partner_id = $1",
            "DELETE FROM settings WHERE partner_id = $1",
            "DELETE FROM api_keys WHERE partner_id = $1",
            "DELETE FROM canaries WHERE partner_id = $1",
            "DELETE FROM plugins WHERE partner_id = $1",
            "DELETE FROM partners WHERE id = $1",
        ] {
            let done = sqlx::query(statement).bind(id).execute(&mut *tx).await?;
            if statement.starts_with("DELETE FROM deliveries") {
                deliveries = done.rows_affected();
            }
        }
        tx.commit().await?;
        Ok(Some(Deleted {
            keys: keys.into_iter().map(Into::into).collect(),
            plugins: plugins.into_iter().map(Into::into).collect(),
            deliveries,
        }))
    }

    /// Saves validated settings, re-enabling the endpoint and releasing its held deliveries;
    /// returns the new version.
    pub async fn put_settings(&self, partner_id: &str, body: &str, now: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO settings (partner_id, family, body, version, updated_at) VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (partner_id, family) DO UPDATE SET body = excluded.body, version = settings.version + 1,
                 updated_at = excluded.updated_at, disabled_reason = NULL, disabled_at = NULL
             RETURNING version",
        )
        .bind(partner_id)
        .bind(ACTION_INQUIRY)
        .bind(body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        release_held(&mut tx, partner_id, now).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// A partner's saved settings.
    pub async fn settings(&self, partner_id: &str) -> Result<Option<SettingsRecord>> {
        let row = sqlx::query(
            "SELECT body, version, disabled_reason, disabled_at, updated_at FROM settings
             WHERE partner_id = $1 AND family = $2",
        )
        .bind(partner_id)
        .bind(ACTION_INQUIRY)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| SettingsRecord {
            body: row.get(0),
            version: row.get(1),
            disabled_reason: row.get(2),
            disabled_at: row.get(3),
            updated_at: row.get(4),
        }))
    }

    /// Re-enables a disabled endpoint and releases its held deliveries if it can send; returns
    /// how many.
    pub async fn enable(&self, partner_id: &str, now: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE settings SET disabled_reason = NULL, disabled_at = NULL WHERE partner_id = $1")
            .bind(partner_id)
            .execute(&mut *tx)
            .await?;
        let released = release_held(&mut tx, partner_id, now).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Deletes a partner's settings and holds its pending deliveries until settings are saved
    /// again; returns how many were held, or `None` when it had no settings.
    pub async fn delete_settings(&self, partner_id: &str, now: i64) -> Result<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("DELETE FROM settings WHERE partner_id = $1 AND family = $2")
            .bind(partner_id)
            .bind(ACTION_INQUIRY)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if found == 0 {
            return Ok(None);
        }
        let held = hold_pending(&mut tx, partner_id, now).await?;
        tx.commit().await?;
        Ok(Some(held))
    }

    /// Disables a partner's endpoint with `reason` and holds its pending deliveries; returns
    /// how many were held, or `None` when it has no settings.
    pub async fn disable_endpoint(&self, partner_id: &str, reason: &str, now: i64) -> Result<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(
            "UPDATE settings SET disabled_reason = $3, disabled_at = $4 WHERE partner_id = $1 AND family = $2",
        )
        .bind(partner_id)
        .bind(ACTION_INQUIRY)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Ok(None);
        }
        let held = hold_pending(&mut tx, partner_id, now).await?;
        tx.commit().await?;
        Ok(Some(held))
    }

    /// A partner's deliveries that pass `filter`, newest first, `limit` at a time after the
    /// cursor `before`.
    pub async fn deliveries(
        &self,
        partner_id: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let (sql, binds) = listing_sql(partner_id, filter, before, limit);
        let rows = bind_all!(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(delivery).collect())
    }

    /// Makes a partner's done deliveries that pass `filter` due now again, oldest first, after
    /// the cursor `after`, at most `limit`; returns their ids. While the endpoint may not send
    /// they are held instead, and go when it can.
    pub async fn replay(
        &self,
        partner_id: &str,
        filter: &DeliveryFilter,
        after: Option<&str>,
        limit: i64,
        now: i64,
    ) -> Result<Vec<DeliveryId>> {
        let (sql, binds) = replay_sql(partner_id, filter, after, limit, now);
        let ids: Vec<String> = bind_all!(sqlx::query_scalar(&sql), binds).fetch_all(&self.pool).await?;
        Ok(ids.into_iter().map(Into::into).collect())
    }

    /// One of a partner's deliveries with its attempts, oldest attempt first.
    pub async fn delivery(&self, partner_id: &str, id: &str) -> Result<Option<(Delivery, Vec<Attempt>)>> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE partner_id = $1 AND id = $2"
        ))
        .bind(partner_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let attempts = sqlx::query(ATTEMPTS).bind(id).fetch_all(&self.pool).await?;
        let attempts = attempts
            .into_iter()
            .map(|row| Attempt {
                id: row.get::<String, _>(0).into(),
                delivery_id: row.get::<String, _>(1).into(),
                number: row.get(2),
                started_at: row.get(3),
                duration_ms: row.get(4),
                request: raw_json(row.get(5)),
                response_status: row.get(6),
                response_headers: row.get::<Option<String>, _>(7).map(raw_json),
                response_body: row.get(8),
                verdict: AttemptVerdict::parse(row.get(9)).unwrap_or(AttemptVerdict::Fail),
                error: row.get(10),
                plugins: row.get::<Option<String>, _>(11).map(parse_json),
                superseded: row.get(12),
            })
            .collect();
        Ok(Some((delivery(&row), attempts)))
    }

    /// Makes one of a partner's deliveries due now again, when [`rules::may_retry`] allows it;
    /// `None` otherwise, or without such a delivery.
    pub async fn retry(&self, partner_id: &str, id: &str, now: i64) -> Result<Option<Delivery>> {
        // One statement: a claim that takes the row meanwhile is waited for, and the condition
        // is checked again on the row it left, so a leased delivery is never retried.
        static RETRY: LazyLock<String> = LazyLock::new(|| {
            format!(
                "UPDATE deliveries SET status = '{pending}', next_at = $3, updated_at = $3
                 WHERE partner_id = $1 AND id = $2 AND {may_retry}
                 RETURNING {DELIVERY_COLUMNS}",
                pending = Status::Pending.as_str(),
                may_retry = rules::may_retry_sql("$3"),
            )
        });
        let row = sqlx::query(&RETRY)
            .bind(partner_id)
            .bind(id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(delivery))
    }
}

/// A delivery's attempts, oldest first, through `attempts_by_delivery`. `superseded` is stored
/// as 0 or 1, as on SQLite.
const ATTEMPTS: &str = "SELECT id, delivery_id, number, started_at, duration_ms, request, response_status,
         response_headers, response_body, verdict, error, plugins, superseded <> 0
     FROM attempts WHERE delivery_id = $1 ORDER BY number, started_at";

/// A delivery as the API shows it. A claim leaves `next_at` alone (see [`rules::due`]), so a
/// leased pending delivery is shown due at its lease's end, as on SQLite.
const DELIVERY_COLUMNS: &str = "id, partner_id, event_id, event_type, inquiry_id, status, attempts, \
     CASE WHEN status = 'pending' AND leased_until > next_at THEN leased_until ELSE next_at END, \
     blocked_by, last_error, created_at, updated_at, order_id";

fn delivery(row: &PgRow) -> Delivery {
    Delivery {
        id: row.get::<String, _>(0).into(),
        partner_id: row.get::<String, _>(1).into(),
        event_id: row.get::<String, _>(2).into(),
        event_type: row.get(3),
        inquiry_id: row.get(4),
        status: Status::parse(row.get(5)).unwrap_or(Status::Pending),
        attempts: row.get(6),
        next_at: row.get(7),
        blocked_by: row.get::<Option<String>, _>(8).map(Into::into),
        last_error: row.get(9),
        created_at: row.get(10),
        updated_at: row.get(11),
        order_id: row.get(12),
    }
}

const PARTNER_COLUMNS: &str = "id, name, secret, created_at, disabled_at";

fn partner(row: &PgRow) -> Partner {
    Partner {
        id: row.get::<String, _>(0).into(),
        name: row.get(1),
        secret: row.get(2),
        created_at: row.get(3),
        disabled_at: row.get(4),
    }
}

/// A value bound to a statement built at run time.
enum Bind {
    Text(String),
    Int(i64),
}

/// The conditions of `filter` on a partner's deliveries (`$1` is the partner), their values
/// appended to `binds`. A time range also bounds the ids ([`rules::id_bounds`]), so that the
/// walk along `deliveries_by_partner` stops at the range's end instead of reading every older
/// delivery.
fn filter_sql(filter: &DeliveryFilter, binds: &mut Vec<Bind>) -> String {
    let mut conditions = vec!["partner_id = $1".to_owned()];
    let mut add = |condition: &str, bind: Bind| {
        binds.push(bind);
        conditions.push(condition.replace('?', &format!("${}", binds.len())));
    };
    if let Some(status) = filter.status {
        add("status = ?", Bind::Text(status.as_str().to_owned()));
    }
    if let Some(event_type) = &filter.event_type {
        add("event_type = ?", Bind::Text(event_type.clone()));
    }
    if let Some(inquiry) = &filter.inquiry_id {
        add("inquiry_id = ?", Bind::Text(inquiry.clone()));
    }
    if let Some(order) = &filter.order_id {
        add("order_id = ?", Bind::Text(order.clone()));
    }
    if let Some(since) = filter.since {
        add("created_at >= ?", Bind::Int(since));
    }
    if let Some(until) = filter.until {
        add("created_at < ?", Bind::Int(until));
    }
    let (low, high) = rules::id_bounds(filter.since, filter.until);
    if let Some(low) = low {
        add("id >= ?", Bind::Text(low));
    }
    if let Some(high) = high {
        add("id < ?", Bind::Text(high));
    }
    conditions.join(" AND ")
}

/// The listing statement of [`PgStore::deliveries`] and its values.
fn listing_sql(partner_id: &str, filter: &DeliveryFilter, before: Option<&str>, limit: i64) -> (String, Vec<Bind>) {
    let mut binds = vec![Bind::Text(partner_id.to_owned())];
    let mut conditions = filter_sql(filter, &mut binds);
    if let Some(before) = before {
        binds.push(Bind::Text(before.to_owned()));
        conditions.push_str(&format!(" AND id < ${}", binds.len()));
    }
    binds.push(Bind::Int(limit));
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {conditions} ORDER BY id DESC LIMIT ${}",
        binds.len()
    );
    (sql, binds)
}

/// The replay statement of [`PgStore::replay`] and its values.
///
/// The rows are picked by a subquery and then updated; a delivery another transaction moved in
/// between (a replay or retry racing this one) is checked again on the row it left, so that
/// one already on its way is neither queued twice nor counted.
fn replay_sql(
    partner_id: &str,
    filter: &DeliveryFilter,
    after: Option<&str>,
    limit: i64,
    now: i64,
) -> (String, Vec<Bind>) {
    let mut binds = vec![Bind::Text(partner_id.to_owned())];
    let mut conditions = filter_sql(filter, &mut binds);
    let replayable = format!("status IN ({})", rules::statuses_sql(&rules::REPLAYABLE));
    conditions.push_str(&format!(" AND {replayable}"));
    if let Some(after) = after {
        binds.push(Bind::Text(after.to_owned()));
        conditions.push_str(&format!(" AND id > ${}", binds.len()));
    }
    binds.push(Bind::Int(limit));
    let limit_at = binds.len();
    binds.push(Bind::Int(now));
    let now_at = binds.len();
    let sql = format!(
        "UPDATE deliveries SET status = {status}, next_at = ${now_at}, updated_at = ${now_at}, leased_until = NULL
         WHERE id IN (SELECT id FROM deliveries WHERE {conditions} ORDER BY id LIMIT ${limit_at})
             AND partner_id = $1 AND {replayable}
         RETURNING id",
        status = rules::pending_unless_disabled_sql(ENDPOINT_DISABLED_SQL),
    );
    (sql, binds)
}

/// Stored JSON as it is; text that is not JSON (never written so) as a JSON string.
fn raw_json(text: String) -> Box<serde_json::value::RawValue> {
    match serde_json::from_str::<&serde_json::value::RawValue>(&text) {
        Ok(raw) => raw.to_owned(),
        Err(_) => serde_json::value::to_raw_value(&text).expect("a string serializes"),
    }
}

/// Stored JSON parsed; text that is not JSON as a JSON string.
fn parse_json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// Holds the partner's pending deliveries (see [`rules::HELD_ON_DISABLE`]); returns how many.
async fn hold_pending(tx: &mut Transaction<'_, Postgres>, partner_id: &str, now: i64) -> Result<u64> {
    static HOLD: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE deliveries SET status = '{}', updated_at = $2 WHERE partner_id = $1 AND status = '{}'",
            Status::Held.as_str(),
            rules::HELD_ON_DISABLE.as_str(),
        )
    });
    Ok(sqlx::query(&HOLD)
        .bind(partner_id)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Releases the endpoint's held deliveries, due now (see [`rules::RELEASED_ON_ENABLE`]), when
/// it can send: its settings exist and are enabled, and its partner is enabled. A lease taken
/// before the hold ends with it, so that the delivery is due at once; should that lease's worker
/// still record an attempt, the next claim's lease number fences it off ([`rules::holds_lease`]).
async fn release_held(tx: &mut Transaction<'_, Postgres>, partner_id: &str, now: i64) -> Result<u64> {
    static RELEASE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE deliveries SET status = '{}', next_at = $2, updated_at = $2, leased_until = NULL
             WHERE partner_id = $1 AND status = '{}' AND NOT {ENDPOINT_DISABLED_SQL}",
            Status::Pending.as_str(),
            rules::RELEASED_ON_ENABLE.as_str(),
        )
    });
    Ok(sqlx::query(&RELEASE)
        .bind(partner_id)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}
