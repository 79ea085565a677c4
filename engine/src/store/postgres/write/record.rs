//! Recording attempts: each attempt's row and what its outcome does to the delivery (see
//! [`rules::settle`]), in one transaction.
//!
//! The transaction first share-locks the deliveries' partners and their settings. The outcomes
//! then go in runs of distinct deliveries (see `distinct_runs`; one run unless a delivery comes
//! twice), two statements a run when no outcome disables its endpoint (the usual case): the
//! deliveries move, each matched by id and by the attempt's lease number
//! ([`rules::holds_lease`]), the superseded attempts are counted and the attempts inserted,
//! each logged as which moved says; then the deliveries that waited for the finished ones are
//! released. A run that disables an endpoint goes statement by statement, the endpoint disabled
//! and its pending deliveries held between the moves and the releases.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::super::Result;
use super::{distinct_runs, plan_by_index};
use crate::store::rules::{self, Settle};
use crate::store::{Outcome, Status};

/// The statements that carry the rules of what an outcome does, rendered once.
struct Statements {
    /// Moves each delivery whose attempt's lease (`token`) still holds it: done for good, to its
    /// retry time [pending unless disabled](rules::pending_unless_disabled), or held; counts
    /// the attempt, keeps its error and ends the lease. Returns the deliveries moved.
    settle: String,
    /// Lets the deliveries that waited for the finished ones (`$1`) go on, pending unless
    /// disabled, due at [`rules::released_due`].
    release: String,
    /// Holds the [pending deliveries](rules::HELD_ON_DISABLE) of the endpoints disabled.
    hold_pending: String,
    /// A run none of whose outcomes disables its endpoint, in one statement: `settle`, the
    /// attempts of the deliveries it did not move counted (superseded), and the attempts
    /// inserted (`$8` on, as [`INSERT_ATTEMPTS`] takes them, less `superseded`, which the
    /// statement works out). Returns the deliveries it finished, for `release`.
    at_once: String,
}

/// What a moved outcome was, as `settle` reads it.
const DONE: &str = "done";
const RETRY: &str = "retry";
const HOLD: &str = "hold";

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| {
    let pending_unless_disabled = rules::pending_unless_disabled_sql(rules::ENDPOINT_DISABLED_SQL);
    Statements {
        settle: format!(
            "UPDATE deliveries SET
                 status = CASE WHEN o.kind = '{RETRY}' THEN {pending_unless_disabled} ELSE o.new_status END,
                 next_at = CASE WHEN o.kind = '{RETRY}' THEN o.retry_at ELSE next_at END,
                 attempts = attempts + 1, last_error = o.error, updated_at = $7, leased_until = NULL
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::BIGINT[])
                 AS o(outcome_of, kind, new_status, retry_at, error, token)
             WHERE id = o.outcome_of AND {}
             RETURNING id, partner_id",
            rules::holds_lease_sql("o.token")
        ),
        release: format!(
            "UPDATE deliveries SET status = {pending_unless_disabled}, blocked_by = NULL,
                 next_at = {}, updated_at = $2
             WHERE blocked_by = ANY($1) AND status = '{}'",
            rules::released_due_pg_sql("next_at", "$2"),
            Status::Blocked.as_str()
        ),
        hold_pending: format!(
            "UPDATE deliveries SET status = '{}', updated_at = $2 WHERE partner_id = ANY($1) AND status = '{}'",
            Status::Held.as_str(),
            rules::HELD_ON_DISABLE.as_str()
        ),
        // The parts see one snapshot and change disjoint rows: a moved delivery is not
        // superseded, and only the deliveries left over (usually none) are looked up again. The
        // attempts' foreign key is checked once the parts have run (each runs to its end, read
        // or not). Releasing is left to a statement of its own, with a snapshot
        // taken after this one's moves: an accept that blocked a new delivery behind one of
        // them, and that this statement waited for, is seen there.
        at_once: format!(
            "WITH moved AS (
                 UPDATE deliveries SET
                     status = CASE WHEN o.kind = '{RETRY}' THEN {pending_unless_disabled} ELSE o.new_status END,
                     next_at = CASE WHEN o.kind = '{RETRY}' THEN o.retry_at ELSE next_at END,
                     attempts = attempts + 1, last_error = o.error, updated_at = $7, leased_until = NULL
                 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::BIGINT[])
                     AS o(outcome_of, kind, new_status, retry_at, error, token)
                 WHERE id = o.outcome_of AND {holds}
                 RETURNING deliveries.id, o.kind),
             superseded AS (
                 UPDATE deliveries SET attempts = attempts + 1
                 WHERE id = ANY(ARRAY(SELECT UNNEST($1::TEXT[]) COLLATE \"C\" EXCEPT SELECT id FROM moved))),
             inserted AS (
                 INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request,
                     response_status, response_headers, response_body, verdict, error, plugins, superseded)
                 SELECT a.id, a.delivery_id, a.number, a.started_at, a.duration_ms, a.request, a.response_status,
                     a.response_headers, a.response_body, a.verdict, a.error, a.plugins,
                     CASE WHEN a.delivery_id IN (SELECT id FROM moved) THEN 0 ELSE 1 END
                 FROM UNNEST($8::TEXT[], $9::TEXT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[], $13::TEXT[],
                     $14::BIGINT[], $15::TEXT[], $16::TEXT[], $17::TEXT[], $18::TEXT[], $19::TEXT[])
                     AS a(id, delivery_id, number, started_at, duration_ms, request, response_status,
                         response_headers, response_body, verdict, error, plugins))
             SELECT id FROM moved WHERE kind = '{DONE}'",
            holds = rules::holds_lease_sql("o.token"),
        ),
    }
});

/// Inserts the attempts of a run.
const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request,
         response_status, response_headers, response_body, verdict, error, plugins, superseded)
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[],
         $7::BIGINT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::BIGINT[])";

/// Share-locks the deliveries' partners before anything else, as an accept does: a partner
/// disabled meanwhile is disabled before the recording reads it, or after it commits. Returns
/// them, for the settings' locks.
const LOCK_PARTNERS: &str = "SELECT id FROM partners
     WHERE id IN (SELECT partner_id FROM deliveries WHERE id = ANY($1))
     ORDER BY id FOR SHARE";

/// Locks the settings of the deliveries' partners (`$1`) before any delivery, as an accept
/// does, so that a recording that disables an endpoint and an accept for it never wait for each
/// other in a circle.
const LOCK_SETTINGS: &str = "SELECT 1 FROM settings
     WHERE partner_id = ANY($1)
     ORDER BY partner_id, family FOR NO KEY UPDATE";

/// [`LOCK_SETTINGS`] for a recording that disables no endpoint: an endpoint disabled (or its
/// settings deleted) by the API meanwhile is so before the recording reads whether it is, or
/// after the recording commits. Without it, a retry's statement could read the settings as
/// they were when it began, after waiting for the delivery's row the disabling held, and make
/// the delivery pending again behind the disabled endpoint.
const SHARE_SETTINGS: &str = "SELECT 1 FROM settings
     WHERE partner_id = ANY($1)
     ORDER BY partner_id, family FOR SHARE";

/// Records attempts and moves their deliveries on, in order, in one transaction. Returns how
/// many deliveries that waited for the finished ones may go now.
pub(super) async fn record(pool: &PgPool, outcomes: &[Outcome], now: i64) -> Result<u64> {
    if outcomes.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    plan_by_index(&mut tx).await?;
    let all: Vec<&str> = outcomes.iter().map(|o| o.attempt.delivery_id.as_str()).collect();
    let partners: Vec<String> = sqlx::query_scalar(LOCK_PARTNERS).bind(&all).fetch_all(&mut *tx).await?;
    let disabling = outcomes
        .iter()
        .any(|o| matches!(rules::settle(&o.next), Settle::Disable(_)));
    if !disabling {
        sqlx::query(SHARE_SETTINGS).bind(&partners).execute(&mut *tx).await?;
    } else {
        // All in one statement, in the order an accept locks them (a disabling outcome is rare:
        // the other partners' settings are locked harder than they need for once).
        sqlx::query(LOCK_SETTINGS).bind(&partners).execute(&mut *tx).await?;
    }
    let mut released = 0;
    for run in distinct_runs(outcomes, |o| [o.attempt.delivery_id.as_str()]) {
        released += if disabling {
            record_run(&mut tx, &outcomes[run], now).await?
        } else {
            record_run_at_once(&mut tx, &outcomes[run], now).await?
        };
    }
    tx.commit().await?;
    Ok(released)
}

/// How each outcome moves its delivery, as `settle` and `at_once` take it: its kind, the status
/// it is done with, and its retry time.
fn kinds(outcomes: &[Outcome]) -> (Vec<&'static str>, Vec<&'static str>, Vec<Option<i64>>) {
    let mut kinds = Vec::with_capacity(outcomes.len());
    let mut new_statuses = Vec::with_capacity(outcomes.len());
    let mut retry_at = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let (kind, status, at) = match rules::settle(&outcome.next) {
            Settle::Done(status) => (DONE, status, None),
            // The status is the rule's, decided in the statement.
            Settle::RetryAt(at) => (RETRY, Status::Pending, Some(at)),
            Settle::Disable(_) => (HOLD, Status::Held, None),
        };
        kinds.push(kind);
        new_statuses.push(status.as_str());
        retry_at.push(at);
    }
    (kinds, new_statuses, retry_at)
}

/// Binds what each outcome does to its delivery (`$1` to `$7`: the delivery, how it moves, its
/// new status, its retry time, its error, the lease it was made under, and `now`).
fn bind_moves<'q>(
    query: Query<'q, Postgres, PgArguments>,
    outcomes: &'q [Outcome],
    now: i64,
) -> Query<'q, Postgres, PgArguments> {
    let (kinds, new_statuses, retry_at) = kinds(outcomes);
    query
        .bind(
            outcomes
                .iter()
                .map(|o| o.attempt.delivery_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(kinds)
        .bind(new_statuses)
        .bind(retry_at)
        .bind(outcomes.iter().map(|o| o.attempt.error.as_deref()).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.lease_seq).collect::<Vec<_>>())
        .bind(now)
}

/// Binds the attempts' columns of `outcomes`, in the order of the `attempts` table from `id` to
/// `plugins`, as the next parameters of `query`.
fn bind_attempts<'q>(
    query: Query<'q, Postgres, PgArguments>,
    outcomes: &'q [Outcome],
) -> Query<'q, Postgres, PgArguments> {
    let attempts = || outcomes.iter().map(|o| &o.attempt);
    query
        .bind(attempts().map(|a| a.id.as_str()).collect::<Vec<_>>())
        .bind(attempts().map(|a| a.delivery_id.as_str()).collect::<Vec<_>>())
        .bind(attempts().map(|a| a.number).collect::<Vec<_>>())
        .bind(attempts().map(|a| a.started_at).collect::<Vec<_>>())
        .bind(attempts().map(|a| a.duration_ms).collect::<Vec<_>>())
        .bind(attempts().map(|a| a.request.get()).collect::<Vec<_>>())
        .bind(attempts().map(|a| a.response_status).collect::<Vec<_>>())
        .bind(
            attempts()
                .map(|a| a.response_headers.as_ref().map(|h| h.get()))
                .collect::<Vec<_>>(),
        )
        .bind(attempts().map(|a| a.response_body.as_deref()).collect::<Vec<_>>())
        .bind(attempts().map(|a| a.verdict.as_str()).collect::<Vec<_>>())
        .bind(attempts().map(|a| a.error.as_deref()).collect::<Vec<_>>())
        .bind(
            attempts()
                .map(|a| a.plugins.as_ref().map(ToString::to_string))
                .collect::<Vec<_>>(),
        )
}

/// Records outcomes of distinct deliveries, none of which disables its endpoint, in one
/// statement.
async fn record_run_at_once(tx: &mut Transaction<'_, Postgres>, outcomes: &[Outcome], now: i64) -> Result<u64> {
    let query = bind_moves(sqlx::query(&STATEMENTS.at_once), outcomes, now);
    let finished: Vec<String> = bind_attempts(query, outcomes)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    if finished.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(&STATEMENTS.release)
        .bind(&finished)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Records outcomes of distinct deliveries, statement by statement.
async fn record_run(tx: &mut Transaction<'_, Postgres>, outcomes: &[Outcome], now: i64) -> Result<u64> {
    let statements = &*STATEMENTS;
    let moved: HashMap<String, String> = bind_moves(sqlx::query(&statements.settle), outcomes, now)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<std::result::Result<_, sqlx::Error>>()?;

    // An endpoint disabled twice keeps the later reason, as one after another.
    let mut disabled: Vec<(&str, &str)> = Vec::new();
    let mut finished: Vec<&str> = Vec::new();
    let mut superseded: Vec<&str> = Vec::new();
    for outcome in outcomes {
        let id = outcome.attempt.delivery_id.as_str();
        let Some(partner) = moved.get(id) else {
            // Gone (its attempt breaks the foreign key and the recording fails) or claimed
            // again: logged as superseded, and counted, so that the count is still the
            // requests its receiver saw.
            superseded.push(id);
            continue;
        };
        match rules::settle(&outcome.next) {
            Settle::Done(_) => finished.push(id),
            Settle::RetryAt(_) => {}
            Settle::Disable(reason) => {
                disabled.retain(|(p, _)| p != partner);
                disabled.push((partner, reason));
            }
        }
    }
    if !disabled.is_empty() {
        sqlx::query(
            "UPDATE settings SET disabled_reason = t.reason, disabled_at = $3
             FROM UNNEST($1::TEXT[], $2::TEXT[]) AS t(disabled, reason) WHERE partner_id = t.disabled",
        )
        .bind(disabled.iter().map(|(p, _)| *p).collect::<Vec<_>>())
        .bind(disabled.iter().map(|(_, r)| *r).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        sqlx::query(&statements.hold_pending)
            .bind(disabled.iter().map(|(p, _)| *p).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    let mut released = 0;
    if !finished.is_empty() {
        released = sqlx::query(&statements.release)
            .bind(&finished)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    if !superseded.is_empty() {
        sqlx::query("UPDATE deliveries SET attempts = attempts + 1 WHERE id = ANY($1)")
            .bind(&superseded)
            .execute(&mut **tx)
            .await?;
    }
    let superseded: HashSet<&str> = superseded.into_iter().collect();
    let attempts = outcomes.iter().map(|o| &o.attempt);
    bind_attempts(sqlx::query(INSERT_ATTEMPTS), outcomes)
        .bind(
            attempts
                .map(|a| i64::from(superseded.contains(a.delivery_id.as_str())))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    Ok(released)
}
