//! Canaries in the PostgreSQL store. Starting or ending one moves the settings' version, so that
//! every worker reads the endpoint again before its next postback and sees the change.

use sqlx::Row;

use super::{PgStore, Result};
use crate::store::rules::{CanaryStep, canary_step};
use crate::store::{ACTION_INQUIRY, Canary, CanarySpec, CanaryState, PluginSlot};

const COLUMNS: &str = "slot, plugin_id, share_percent, window_ms, margin_percent, min_calls, state, reason, started_at,
     window_started_at, candidate_calls, candidate_failures, attached_calls, attached_failures, ended_at";

fn canary(row: &sqlx::postgres::PgRow) -> Canary {
    Canary {
        slot: PluginSlot::parse(row.get(0)).unwrap_or(PluginSlot::Transform),
        plugin_id: row.get::<String, _>(1).into(),
        share_percent: row.get(2),
        window_ms: row.get(3),
        margin_percent: row.get(4),
        min_calls: row.get(5),
        state: CanaryState::parse(row.get(6)).unwrap_or(CanaryState::Stopped),
        reason: row.get(7),
        started_at: row.get(8),
        window_started_at: row.get(9),
        candidate_calls: row.get(10),
        candidate_failures: row.get(11),
        attached_calls: row.get(12),
        attached_failures: row.get(13),
        ended_at: row.get(14),
    }
}

/// Moves the partner's settings version, so that workers read the endpoint again; false when
/// it has no settings.
async fn touch_settings(tx: &mut sqlx::PgConnection, partner_id: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE settings SET version = version + 1
         WHERE partner_id = $1 AND family = $2",
    )
    .bind(partner_id)
    .bind(ACTION_INQUIRY)
    .execute(tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

impl PgStore {
    /// Starts a canary for the partner, in place of any earlier one; `None` when the partner
    /// has no settings.
    pub async fn start_canary(&self, partner_id: &str, spec: &CanarySpec, now: i64) -> Result<Option<Canary>> {
        let mut tx = self.pool.begin().await?;
        if !touch_settings(&mut tx, partner_id).await? {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "INSERT INTO canaries (partner_id, slot, plugin_id, share_percent, window_ms, margin_percent, min_calls,
                                   state, reason, started_at, window_started_at, candidate_calls, candidate_failures,
                                   attached_calls, attached_failures, ended_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', NULL, $8, $8, 0, 0, 0, 0, NULL)
             ON CONFLICT (partner_id) DO UPDATE SET slot = excluded.slot, plugin_id = excluded.plugin_id,
                 share_percent = excluded.share_percent, window_ms = excluded.window_ms,
                 margin_percent = excluded.margin_percent, min_calls = excluded.min_calls, state = 'running',
                 reason = NULL, started_at = excluded.started_at, window_started_at = excluded.window_started_at,
                 candidate_calls = 0, candidate_failures = 0, attached_calls = 0, attached_failures = 0,
                 ended_at = NULL
             RETURNING {COLUMNS}"
        ))
        .bind(partner_id)
        .bind(spec.slot.export())
        .bind(spec.plugin_id.as_str())
        .bind(spec.share_percent)
        .bind(spec.window_ms)
        .bind(spec.margin_percent)
        .bind(spec.min_calls)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(canary(&row)))
    }

    /// The partner's canary: the running one, or the last one with how it ended.
    pub async fn canary(&self, partner_id: &str) -> Result<Option<Canary>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM canaries WHERE partner_id = $1"))
            .bind(partner_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(canary))
    }

    /// Ends the partner's running canary as `state`, for `reason`. `None` when no canary runs.
    pub async fn end_canary(
        &self,
        partner_id: &str,
        state: CanaryState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Option<Canary>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE canaries SET state = $2, reason = $3, ended_at = $4 WHERE partner_id = $1 AND state = 'running'
             RETURNING {COLUMNS}"
        ))
        .bind(partner_id)
        .bind(state.as_str())
        .bind(reason)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        touch_settings(&mut tx, partner_id).await?;
        tx.commit().await?;
        Ok(Some(canary(&row)))
    }

    /// Counts one call of the canary started at `started_at` (the candidate's or the attached
    /// version's, failed or not) and judges it ([`canary_step`]): a window over starts the next,
    /// a candidate failing too often is detached. Returns the canary after, or `None` when that
    /// canary no longer runs.
    pub async fn tally_canary(
        &self,
        partner_id: &str,
        started_at: i64,
        candidate: bool,
        failed: bool,
        now: i64,
    ) -> Result<Option<Canary>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE canaries SET
                 candidate_calls = candidate_calls + $3, candidate_failures = candidate_failures + ($3 * $4),
                 attached_calls = attached_calls + (1 - $3), attached_failures = attached_failures + ((1 - $3) * $4)
             WHERE partner_id = $1 AND started_at = $2 AND state = 'running'
             RETURNING {COLUMNS}"
        ))
        .bind(partner_id)
        .bind(started_at)
        .bind(i64::from(candidate))
        .bind(i64::from(failed))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut counted = canary(&row);
        match canary_step(&counted, now) {
            CanaryStep::Keep => {}
            CanaryStep::NextWindow => {
                sqlx::query(
                    "UPDATE canaries SET window_started_at = $2, candidate_calls = 0, candidate_failures = 0,
                         attached_calls = 0, attached_failures = 0
                     WHERE partner_id = $1",
                )
                .bind(partner_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                counted.window_started_at = now;
                (counted.candidate_calls, counted.candidate_failures) = (0, 0);
                (counted.attached_calls, counted.attached_failures) = (0, 0);
            }
            CanaryStep::Detach(reason) => {
                sqlx::query("UPDATE canaries SET state = 'detached', reason = $2, ended_at = $3 WHERE partner_id = $1")
                    .bind(partner_id)
                    .bind(&reason)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                touch_settings(&mut tx, partner_id).await?;
                counted.state = CanaryState::Detached;
                counted.reason = Some(reason);
                counted.ended_at = Some(now);
            }
        }
        tx.commit().await?;
        Ok(Some(counted))
    }

    /// The stored text of one of a partner's events.
    pub async fn event_body(&self, partner_id: &str, event_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT body FROM events WHERE partner_id = $1 AND id = $2")
                .bind(partner_id)
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
