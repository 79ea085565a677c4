//! The pipeline's hot writes (accepting events, recording attempts, claiming deliveries and
//! giving them back) on the write connection's SQLite handle itself, on the store's thread.
//!
//! Through sqlx, every statement is a round trip to the connection's own thread, and every row
//! a statement returns is a message of its own: for the few microseconds SQLite spends on a row,
//! two threads wake each other several times. Here the store's thread borrows the connection's
//! handle from sqlx ([`sqlx::sqlite::LockedSqliteHandle`]) for one transaction and runs it
//! straight through, statement after statement, with rusqlite (built on the same SQLite library).
//! The connection stays sqlx's: its settings, migrations and every other query are unchanged.
//! Statements are prepared once per transaction and finalized with it, so nothing of rusqlite's
//! outlives the borrow. Their texts are rendered once per process from the delivery
//! [`rules`](crate::store::rules).
//!
//! The statements themselves are in `accept`, `claim` and `record`.

use rusqlite::TransactionBehavior;
use sqlx::SqlitePool;

use super::Result;
use crate::store::StoreError;

/// Runs `work` in one transaction (`BEGIN IMMEDIATE` to `COMMIT`) on the write connection's
/// handle; an error rolls it back. `taken` runs once the connection is this caller's.
pub(super) async fn transaction<T>(
    write: &SqlitePool,
    taken: impl FnOnce(),
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    transaction_with(write, taken, true, work).await
}

/// [`transaction`] with SQLite's foreign key checks off until it ends, for deletes that keep
/// every reference whole themselves (see `prune`): deleting an event makes SQLite look for
/// deliveries naming it, and with no index on that pair (see migration 0003) it reads every
/// delivery of the partner, for each event deleted.
pub(super) async fn unchecked_transaction<T>(
    write: &SqlitePool,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    transaction_with(write, || {}, false, work).await
}

async fn transaction_with<T>(
    write: &SqlitePool,
    taken: impl FnOnce(),
    foreign_keys: bool,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut connection = write.acquire().await?;
    taken();
    let mut locked = connection.lock_handle().await?;
    // SAFETY: while `locked` lives, sqlx's connection thread waits and nothing else uses the
    // handle, which stays open. The wrapper made here does not close the handle, and dropping
    // it (before `locked`) finalizes the statements it prepared, so sqlx's connection can be
    // closed later as usual.
    let mut db = unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) }?;
    // The setting is the connection's and is ignored inside a transaction, so it is turned off
    // before `BEGIN` and back on after the end, whatever the end was.
    let unchecked = !foreign_keys;
    if unchecked {
        db.execute_batch("PRAGMA foreign_keys = OFF")?;
    }
    let mut result = (|| {
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = work(&tx)?;
        tx.commit()?;
        Ok(out)
    })();
    let restored = !unchecked || db.execute_batch("PRAGMA foreign_keys = ON").is_ok();
    drop(db);
    drop(locked);
    if !restored {
        // A connection left without the checks must not serve another write: the pool opens
        // a fresh one, with the options it was given.
        connection.close_on_drop();
        result = result.and(Err(StoreError::backend(
            "database error",
            "foreign key checks could not be turned back on",
        )));
    }
    result
}

/// The statement in `slot`, prepared from `sql` the first time it is asked for: most
/// transactions never run some statements, and preparing one costs as much as running it a few
/// times.
pub(super) fn prepared<'s, 'c>(
    slot: &'s mut Option<rusqlite::CachedStatement<'c>>,
    tx: &'c rusqlite::Transaction<'_>,
    sql: &str,
) -> Result<&'s mut rusqlite::CachedStatement<'c>> {
    if slot.is_none() {
        *slot = Some(tx.prepare_cached(sql)?);
    }
    Ok(slot.as_mut().expect("prepared above"))
}
