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

/// Runs `work` in one transaction (`BEGIN IMMEDIATE` to `COMMIT`) on the write connection's
/// handle; an error rolls it back. `taken` runs once the connection is this caller's.
pub(super) async fn transaction<T>(
    write: &SqlitePool,
    taken: impl FnOnce(),
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
    let result = (|| {
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = work(&tx)?;
        tx.commit()?;
        Ok(out)
    })();
    drop(db);
    drop(locked);
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
