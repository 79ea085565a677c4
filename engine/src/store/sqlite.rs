//! The SQLite backend: one file in WAL mode, one writer connection, a few readers.
//!
//! SQLite allows one writer at a time; giving writes a pool of exactly one connection queues
//! them in the process instead of having connections spin on `SQLITE_BUSY`. Readers (the API's
//! listings) use their own pool and never wait for the writer.
//!
//! The hot writes (accept, claim, record, reschedule) run on the write connection's SQLite
//! handle directly (see `direct`), one file per statement group: `accept`, `claim`, `record`;
//! so does retention (`prune`).
//! The API's other queries go through sqlx (`queries`, `plugins`, `keys`). The delivery rules they
//! apply are the store's [`rules`](super::rules).

mod accept;
mod canaries;
mod claim;
mod direct;
mod ids;
mod keys;
mod plugins;
mod prune;
mod queries;
mod record;
#[cfg(test)]
mod tests;
mod threads;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{Accepted, Claimed, Durability, Endpoint, GiveBack, Lease, Leased, Outcome, Pruned, StoreError};
use crate::event::Event;
use crate::id::PartnerId;
use threads::{Accepts, Waiting, WriterThread};

type Result<T> = std::result::Result<T, StoreError>;

/// The store on an SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    writer: Arc<WriterThread>,
    /// Recordings, claims and give-backs, which no client waits for (see
    /// [`SqliteStore::open_with`]).
    background: Arc<WriterThread>,
    accepts: Arc<Accepts>,
}

/// Longest a recording lets accepts go first.
const RECORD_YIELD: Duration = Duration::from_millis(100);

/// The page size of new database files, in bytes.
const PAGE_SIZE: u32 = 16_384;

/// Pages in the write-ahead log at which a commit checkpoints it (4 MiB of 16 KiB pages).
const CHECKPOINT_PAGES: u32 = 250;

/// What failed, for [`StoreError::Backend`].
const DATABASE: &str = "database error";

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        match error {
            sqlx::Error::PoolClosed => StoreError::Closed,
            other => StoreError::backend(DATABASE, other),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::backend(DATABASE, error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::backend("database migration failed", error)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://FILE`) and migrates it, with
    /// recordings, claims and give-backs run `background_niceness` nice steps below the thread
    /// that accepts events.
    ///
    /// Both threads take turns on the one write connection. A client waits for its accept;
    /// nobody waits for a recording, which only holds more outcomes for having waited. `serve`
    /// runs the background thread at its async runtime's priority: recordings share the CPUs
    /// evenly with the postbacks they record, and accepts go ahead of both (in the pipeline
    /// bench, 2-3 points more of the baseline than with recordings at the accepts' priority;
    /// see docs/performance.md).
    pub async fn open_with(url: &str, durability: Durability, background_niceness: i32) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // For a new database file; one made before keeps its page size. Larger pages mean
            // fewer pages to log, copy and sync for the same rows: in the pipeline bench's store
            // path, recording an outcome measured 25-40 % cheaper than with 4 KiB pages, and
            // accepting an event 5-25 %.
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Process => SqliteSynchronous::Normal,
                Durability::Power => SqliteSynchronous::Full,
            })
            // A checkpoint copies the log into the database file and syncs both, in the commit
            // that crosses this many pages, and every write waits for it. SQLite's default
            // (1,000 pages, 16 MiB here) held the writer for 20-30 ms at a time under load;
            // a quarter of it keeps each wait short for the same pages copied.
            .pragma("wal_autocheckpoint", CHECKPOINT_PAGES.to_string())
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Room for the batched statements' few sizes (see `batch`) besides the others.
            .statement_cache_capacity(256);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A file in this process does not drop connections: no ping round trip before
            // every write.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let thread = |name, niceness| {
            WriterThread::start(name, niceness)
                .map(Arc::new)
                .map_err(|e| StoreError::backend("the store's thread did not start", e))
        };
        let writer = thread("postwire-store", 0)?;
        let background = thread("postwire-store-bg", background_niceness)?;
        Ok(SqliteStore {
            write,
            read,
            writer,
            background,
            accepts: Arc::default(),
        })
    }

    /// Runs `work`, which uses the write connection, on the store's own thread.
    ///
    /// There is one write connection, and a transaction holds it from `BEGIN` to `COMMIT`: for
    /// the hot writes, while this thread runs SQLite on the handle (see `direct`); for the
    /// others, across a round trip per statement to sqlx's connection thread. Driven by a busy
    /// runtime, every step would also wait for the task's turn among hundreds of postbacks, with
    /// the connection idle and every other write queued behind it. On a thread that does
    /// nothing else, the connection is handed on as soon as SQLite is done.
    async fn on_writer<T: Send + 'static>(&self, work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        self.writer.run(work).await
    }

    /// Runs `work` in one transaction on the write connection's SQLite handle, on the store's
    /// background thread (see `direct` and [`SqliteStore::open_with`]).
    async fn on_handle<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let write = self.write.clone();
        self.background
            .run(async move { direct::transaction(&write, || {}, work).await })
            .await
    }

    /// [`SqliteStore::on_handle`] without SQLite's foreign key checks (see
    /// `direct::unchecked_transaction`).
    async fn on_handle_unchecked<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let write = self.write.clone();
        self.background
            .run(async move { direct::unchecked_transaction(&write, work).await })
            .await
    }

    /// Waits until no accept waits for the write connection, or `RECORD_YIELD` has passed.
    async fn after_accepts(&self) {
        let until = tokio::time::Instant::now() + RECORD_YIELD;
        loop {
            let none = self.accepts.none.notified();
            if self.accepts.waiting.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            tokio::select! {
                () = none => {}
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }

    /// Removes what retention lets go at the cutoff `older_than` (see
    /// [`Store::prune`](crate::store::Store::prune) and `prune`): a step of `batch` rows a
    /// transaction on the background thread, each after the accepts that wait, so that the
    /// write connection is never held for more than one step.
    pub async fn prune(&self, older_than: i64, batch: usize, pace: &crate::store::Pace) -> Result<Pruned> {
        let batch = batch.max(1);
        let mut pruned = Pruned::default();
        let mut after = String::new();
        let mut last_step = None;
        loop {
            pace.before_step(&mut last_step).await;
            self.after_accepts().await;
            let from = std::mem::take(&mut after);
            let step = self
                .on_handle_unchecked(move |tx| prune::deliveries(tx, older_than, &from, batch))
                .await?;
            pruned += step.pruned;
            match step.cursor {
                Some(cursor) => after = cursor,
                None => break,
            }
        }
        let mut after = 0;
        loop {
            pace.before_step(&mut last_step).await;
            self.after_accepts().await;
            let step = self
                .on_handle_unchecked(move |tx| prune::events(tx, older_than, after, batch))
                .await?;
            pruned.events += step.pruned;
            after = step.cursor;
            if step.done {
                break;
            }
        }
        Ok(pruned)
    }

    /// Whether a read connection answers and the migrations this build embeds are all applied
    /// (see [`Store::ready`](crate::store::Store::ready)).
    pub async fn ready(&self) -> Result<()> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.read)
            .await?;
        let missing = sqlx::migrate!("migrations/sqlite")
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count();
        if missing > 0 {
            return Err(StoreError::backend(
                "migrations not applied",
                format!("{missing} migrations of this build are not applied"),
            ));
        }
        Ok(())
    }

    /// Closes both pools, waiting for queries under way.
    pub async fn close(&self) {
        // The write connection closes last: only it can checkpoint the log into the database
        // file and remove it, which leaves one clean file behind.
        self.read.close().await;
        // A connection goes back to its pool in a task of its own; closing the pool while one
        // is on its way can leave it open, idle. So the write connection is taken (waiting for
        // its return), the pool marked closed so that none replaces it, and then it is closed.
        let held = self.write.acquire().await.ok();
        let closing = self.write.close();
        if let Some(connection) = held {
            let _ = connection.close().await;
        }
        closing.await;
    }

    /// Records events and their deliveries in one transaction (see
    /// [`Store::accept_leasing`](crate::store::Store::accept_leasing)).
    pub async fn accept_leasing(
        &self,
        events: Arc<Vec<Event>>,
        now: i64,
        lease: Lease,
    ) -> Result<(Vec<Accepted>, Vec<Leased>)> {
        // The texts to store of events not read from text, written here rather than on the
        // store's thread; the others are stored as they were sent.
        let bodies: Vec<Option<String>> = events
            .iter()
            .map(|event| event.sent_text().is_none().then(|| event.to_json_string()))
            .collect();
        let lease = if super::rules::independent(events.iter()) {
            lease
        } else {
            Lease::NONE
        };
        let write = self.write.clone();
        // Counted off once the connection is taken, or if taking it fails.
        let waiting = Waiting::start(self.accepts.clone());
        self.on_writer(async move {
            direct::transaction(
                &write,
                move || drop(waiting),
                |tx| accept::accept(tx, &events, &bodies, now, lease),
            )
            .await
        })
        .await
    }

    /// Claims up to `limit` due deliveries for `lease_ms`, none of the partners in `skip`.
    pub async fn claim(&self, now: i64, lease_ms: i64, limit: i64, skip: &[PartnerId]) -> Result<Vec<Claimed>> {
        let skip = skip.to_vec();
        self.on_handle(move |tx| claim::claim(tx, now, lease_ms, limit, &skip))
            .await
    }

    /// When the earliest pending delivery is due, if any is.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let write = self.write.clone();
        self.on_writer(async move { queries::next_due(&write).await }).await
    }

    /// How many pending deliveries are due at `now` and when the earliest fell due (see
    /// [`Store::due`](crate::store::Store::due)).
    pub async fn due(&self, now: i64) -> Result<(i64, Option<i64>)> {
        queries::due(&self.read, now).await
    }

    /// A partner's settings and secret for sending.
    pub async fn endpoint(&self, partner_id: &str) -> Result<Option<Endpoint>> {
        let (write, partner_id) = (self.write.clone(), partner_id.to_owned());
        self.on_writer(async move { queries::endpoint(&write, &partner_id).await })
            .await
    }

    /// Records attempts and moves their deliveries on, outcome after outcome, in order.
    ///
    /// Accepts go first: a recording starts once no accept waits for the write connection (or
    /// after `RECORD_YIELD`, 100 ms), and a long one commits what it has done and lets them in
    /// when one starts waiting. Returns how many deliveries that waited for the finished ones may go now.
    pub async fn record(&self, outcomes: Arc<Vec<Outcome>>, now: i64) -> Result<u64> {
        let mut released = 0;
        let mut done = 0;
        let until = tokio::time::Instant::now() + RECORD_YIELD;
        while done < outcomes.len() {
            loop {
                let none = self.accepts.none.notified();
                if self.accepts.waiting.load(std::sync::atomic::Ordering::Acquire) == 0 {
                    break;
                }
                tokio::select! {
                    () = none => {}
                    () = tokio::time::sleep_until(until) => break,
                }
            }
            let outcomes = outcomes.clone();
            // Past the yield time, the rest goes in one transaction whoever waits.
            let yield_to = (tokio::time::Instant::now() < until).then(|| self.accepts.clone());
            let (more, recorded) = self
                .on_handle(move |tx| record::record(tx, &outcomes[done..], now, yield_to.as_ref().map(|a| &a.waiting)))
                .await?;
            released += more;
            done += recorded;
        }
        Ok(released)
    }

    /// Moves claimed deliveries to new due times without counting an attempt.
    pub async fn reschedule(&self, due: &[GiveBack]) -> Result<()> {
        if due.is_empty() {
            return Ok(());
        }
        let due = due.to_vec();
        self.on_handle(move |tx| claim::reschedule(tx, &due)).await
    }
}
