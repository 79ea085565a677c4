//! The PostgreSQL backend: one database shared by every API and worker process.
//!
//! Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`, so that processes claiming at
//! once never wait for each other nor take the same delivery; the lease and its fencing token
//! (`lease_seq`) work as on SQLite (see [`rules::holds_lease`](super::rules::holds_lease)).
//! Migrations run under sqlx's advisory lock, so that processes starting together apply each
//! one once. Processes wake each other's workers with `NOTIFY`, and share the partners' rate
//! limits in a table (see `shared`).
//!
//! The API's statements (`queries`, `keys`, `plugins`) are the SQLite backend's in PostgreSQL's
//! words, under the same [`rules`](super::rules). Where SQLite's one writer made a statement
//! safe by itself, here the statement checks its condition again on the rows it changes, or the
//! transaction locks the partner's row first. Ids are text in the "C" collation, so that they
//! sort byte by byte as on SQLite and cursors walk them the same way.

mod canaries;
mod keys;
mod plugins;
mod queries;
mod shared;
#[cfg(test)]
mod tests;
mod write;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{Durability, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// The store on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Connections each process keeps to the database at most.
const MAX_CONNECTIONS: u32 = 16;

/// The migrations this build applies, embedded.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl PgStore {
    /// Connects to the database at `url` (`postgres://…` or `postgresql://…`) and migrates it.
    /// With [`Durability::Process`], commits do not wait for the server's log to reach its disk
    /// (`synchronous_commit = off`): a crash of the database server, not of Postwire, can lose
    /// the last moment's commits, as SQLite's `synchronous = NORMAL` does on a power loss.
    pub async fn open(url: &str, durability: Durability) -> Result<PgStore> {
        let mut options = PgConnectOptions::from_str(url)?.application_name("postwire");
        if durability == Durability::Process {
            options = options.options([("synchronous_commit", "off")]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        // During a rolling upgrade, a process of the earlier version may start (or restart)
        // after a newer one applied migrations it does not know: those only add, so it runs.
        let mut migrator = sqlx::migrate!("migrations/postgres");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(PgStore { pool })
    }

    /// Whether the database answers and every migration this build embeds is applied.
    pub async fn ready(&self) -> Result<()> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await?;
        let missing = MIGRATOR.iter().filter(|m| !applied.contains(&m.version)).count();
        if missing > 0 {
            return Err(StoreError::backend(
                "migrations not applied",
                format!("{missing} migrations of this build are not applied"),
            ));
        }
        Ok(())
    }

    /// Closes the pool, waiting for queries under way.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
