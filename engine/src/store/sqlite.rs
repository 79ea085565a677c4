//! The SQLite backend: one file in WAL mode, one writer connection, a few readers.
//!
//! SQLite allows one writer at a time; giving writes a pool of exactly one connection queues
//! them in the process instead of having connections spin on `SQLITE_BUSY`. Readers (the API's
//! listings) use their own pool and never wait for the writer.

mod direct;
mod plugins;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use super::{
    ACTION_INQUIRY, Accepted, Attempt, AttemptVerdict, Claimed, Delivery, Durability, Endpoint, Lease, Leased, Outcome,
    Partner, SettingsRecord, Status, StoreError, new_id,
};
use crate::event::Event;
use crate::settings::NotificationSettings;

type Result<T> = std::result::Result<T, StoreError>;

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    write: SqlitePool,
    read: SqlitePool,
    writer: Arc<WriterThread>,
    /// Recordings, claims and give-backs, which no client waits for (see [`Store::open_with`]).
    background: Arc<WriterThread>,
    accepts: Arc<Accepts>,
}

/// Accepts waiting for the write connection. The client of an accept waits for its answer, so
/// an accept goes before the recording of attempts, which nobody waits for and which only grows
/// by waiting (more attempts in one transaction).
#[derive(Debug, Default)]
struct Accepts {
    waiting: std::sync::atomic::AtomicUsize,
    none: tokio::sync::Notify,
}

/// Longest a recording lets accepts go first.
const RECORD_YIELD: Duration = Duration::from_millis(100);

/// A thread of the store's own that drives writes of the pipeline (see [`Store::on_writer`]).
#[derive(Debug)]
struct WriterThread {
    handle: tokio::runtime::Handle,
    /// Dropped with the last clone of the store, which ends the thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WriterThread {
    /// Starts the thread `name`, `niceness` nice steps below the thread that starts it.
    fn start(name: &str, niceness: i32) -> std::io::Result<WriterThread> {
        let (handle_sender, handle) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            crate::priority::lower(niceness);
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return drop(handle_sender.send(Err(e))),
            };
            let _ = handle_sender.send(Ok(runtime.handle().clone()));
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        let handle = handle
            .recv()
            .map_err(|_| std::io::Error::other("the store's thread stopped while starting"))??;
        Ok(WriterThread { handle, _stop: stop })
    }

    /// Runs `work` on this thread and waits for its result.
    async fn run<T: Send + 'static>(&self, work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        match self.handle.spawn(work).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolClosed)),
        }
    }
}

/// The page size of new database files, in bytes.
const PAGE_SIZE: u32 = 16_384;

/// Pages in the write-ahead log at which a commit checkpoints it (4 MiB of 16 KiB pages).
const CHECKPOINT_PAGES: u32 = 250;

/// Counts an accept off [`Accepts::waiting`] when dropped.
struct Waiting(Arc<Accepts>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

/// `status` for deliveries of a partner whose endpoint may be disabled: held while it is.
const PENDING_UNLESS_DISABLED: &str = "CASE WHEN EXISTS (SELECT 1 FROM settings s WHERE s.partner_id = deliveries.partner_id \
     AND s.disabled_at IS NOT NULL) THEN 'held' ELSE 'pending' END";

impl Store {
    /// Opens (creating if needed) the database at `url` (`sqlite://FILE`) and migrates it.
    pub async fn open(url: &str, durability: Durability) -> Result<Store> {
        Store::open_with(url, durability, 0).await
    }

    /// [`Store::open`], with recordings, claims and give-backs run `background_niceness` nice
    /// steps below the thread that accepts events.
    ///
    /// Both threads take turns on the one write connection. A client waits for its accept;
    /// nobody waits for a recording, which only holds more outcomes for having waited. `serve`
    /// runs the background thread at its async runtime's priority (its `runtime_niceness`
    /// setting): recordings share the CPUs evenly with the postbacks they record, and accepts
    /// go ahead of both (in the
    /// pipeline bench, 2-3 points more of the baseline than with recordings at the accepts'
    /// priority; see docs/performance.md).
    pub async fn open_with(url: &str, durability: Durability, background_niceness: i32) -> Result<Store> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Unsupported(url.to_owned()));
        }
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
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
        };
        let writer = thread("postwire-store", 0)?;
        let background = thread("postwire-store-bg", background_niceness)?;
        Ok(Store {
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
    /// background thread (see `direct` and [`Store::open_with`]).
    async fn on_handle<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let write = self.write.clone();
        self.background
            .run(async move { direct::transaction(&write, || {}, work).await })
            .await
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

    /// Creates a partner with a fresh signing secret.
    pub async fn create_partner(&self, name: &str) -> Result<Partner> {
        let partner = Partner {
            id: new_id("ptn"),
            name: name.to_owned(),
            secret: crate::sign::new_secret(),
            created_at: super::now_ms(),
        };
        sqlx::query("INSERT INTO partners (id, name, secret, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(&partner.id)
            .bind(&partner.name)
            .bind(&partner.secret)
            .bind(partner.created_at)
            .execute(&self.write)
            .await?;
        Ok(partner)
    }

    /// A partner by id.
    pub async fn partner(&self, id: &str) -> Result<Option<Partner>> {
        let row = sqlx::query("SELECT id, name, secret, created_at FROM partners WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.write)
            .await?;
        Ok(row.map(|row| Partner {
            id: row.get(0),
            name: row.get(1),
            secret: row.get(2),
            created_at: row.get(3),
        }))
    }

    /// Saves validated settings; saving re-enables a disabled endpoint and releases its held
    /// deliveries, since a partner saving settings has looked at them. Returns the new version.
    pub async fn put_settings(&self, partner_id: &str, body: &str, now: i64) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO settings (partner_id, family, body, version, updated_at) VALUES (?1, ?2, ?3, 1, ?4)
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
             WHERE partner_id = ?1 AND family = ?2",
        )
        .bind(partner_id)
        .bind(ACTION_INQUIRY)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.map(|row| SettingsRecord {
            body: row.get(0),
            version: row.get(1),
            disabled_reason: row.get(2),
            disabled_at: row.get(3),
            updated_at: row.get(4),
        }))
    }

    /// Re-enables a disabled endpoint and releases its held deliveries; returns how many.
    pub async fn enable(&self, partner_id: &str, now: i64) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE settings SET disabled_reason = NULL, disabled_at = NULL WHERE partner_id = ?1")
            .bind(partner_id)
            .execute(&mut *tx)
            .await?;
        let released = release_held(&mut tx, partner_id, now).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Records events and their deliveries in one transaction: all of them, or none.
    ///
    /// An event whose id the partner sent before is not recorded again; its first deliveries are
    /// returned. A `resolved` postback waits (status `blocked`) while the `created` postback of
    /// the same inquiry is still on its way, and a `created` postback that arrives second goes
    /// before a `resolved` one that has not been tried yet.
    pub async fn accept(&self, events: &[Event], now: i64) -> Result<Vec<Accepted>> {
        Ok(self
            .accept_leasing(Arc::new(events.to_vec()), now, Lease::NONE)
            .await?
            .0)
    }

    /// [`Store::accept`], leasing up to `lease.max` of the new deliveries that are due now to the
    /// caller in the same transaction, so that it can send them without claiming them.
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
        // Where events bear on each other (the same id twice, or two events of one inquiry),
        // none is leased: the later ones are recorded knowing the earlier, and the worker claims
        // them from the store in order.
        let lease = if direct::independent(&events) {
            lease
        } else {
            Lease::NONE
        };
        let (write, accepts) = (self.write.clone(), self.accepts.clone());
        accepts.waiting.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        // Counted off once the connection is taken, or if taking it fails.
        let waiting = Waiting(accepts);
        self.on_writer(async move {
            direct::transaction(
                &write,
                move || drop(waiting),
                |tx| direct::accept(tx, &events, &bodies, now, lease),
            )
            .await
        })
        .await
    }

    /// Claims up to `limit` due deliveries for `lease_ms`: until the lease ends no other worker
    /// claims them, and if this worker dies they become due again when it does.
    pub async fn claim(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
        self.on_handle(move |tx| direct::claim(tx, now, lease_ms, limit)).await
    }

    /// When the earliest pending delivery is due, if any is.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let write = self.write.clone();
        self.on_writer(async move {
            Ok(
                sqlx::query_scalar("SELECT MIN(next_at) FROM deliveries WHERE status = 'pending'")
                    .fetch_one(&write)
                    .await?,
            )
        })
        .await
    }

    /// A partner's settings and secret for sending.
    pub async fn endpoint(&self, partner_id: &str) -> Result<Option<Endpoint>> {
        let (write, partner_id) = (self.write.clone(), partner_id.to_owned());
        let row = self
            .on_writer(async move {
                Ok(sqlx::query(
                    "SELECT s.body, s.version, p.secret FROM settings s JOIN partners p ON p.id = s.partner_id
                     WHERE s.partner_id = ?1 AND s.family = ?2",
                )
                .bind(partner_id)
                .bind(ACTION_INQUIRY)
                .fetch_optional(&write)
                .await?)
            })
            .await?;
        Ok(row.map(|row| Endpoint {
            settings: row.get(0),
            version: row.get(1),
            secret: row.get(2),
        }))
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
                .on_handle(move |tx| direct::record(tx, &outcomes[done..], now, yield_to.as_ref().map(|a| &a.waiting)))
                .await?;
            released += more;
            done += recorded;
        }
        Ok(released)
    }

    /// Moves claimed deliveries to new due times without counting an attempt (rate limiting,
    /// shutdown).
    pub async fn reschedule(&self, due: &[(String, i64)]) -> Result<()> {
        if due.is_empty() {
            return Ok(());
        }
        let due = due.to_vec();
        self.on_handle(move |tx| direct::reschedule(tx, &due)).await
    }

    /// A partner's deliveries, newest first, `limit` at a time after the cursor `before`.
    pub async fn deliveries(
        &self,
        partner_id: &str,
        status: Option<Status>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE partner_id = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?4"
        ))
        .bind(partner_id)
        .bind(status.map(Status::as_str))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(delivery).collect())
    }

    /// One delivery with its attempts, oldest attempt first.
    pub async fn delivery(&self, partner_id: &str, id: &str) -> Result<Option<(Delivery, Vec<Attempt>)>> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE partner_id = ?1 AND id = ?2"
        ))
        .bind(partner_id)
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let attempts = sqlx::query(
            "SELECT id, delivery_id, number, started_at, duration_ms, request, response_status, response_headers,
                    response_body, verdict, error, plugins
             FROM attempts WHERE delivery_id = ?1 ORDER BY number, started_at",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        let attempts = attempts
            .into_iter()
            .map(|row| Attempt {
                id: row.get(0),
                delivery_id: row.get(1),
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
            })
            .collect();
        Ok(Some((delivery(&row), attempts)))
    }

    /// Makes a delivery due now again (a manual retry or replay). Refused (`Ok(None)`) for
    /// deliveries that wait on another, whose endpoint is disabled, or that a worker is sending
    /// right now.
    pub async fn retry(&self, partner_id: &str, id: &str, now: i64) -> Result<Option<Delivery>> {
        let row = sqlx::query(&format!(
            "UPDATE deliveries SET status = 'pending', next_at = ?3, updated_at = ?3
             WHERE partner_id = ?1 AND id = ?2
                 AND (status IN ('delivered', 'failed')
                      OR (status = 'pending' AND (leased_until IS NULL OR leased_until <= ?3)))
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(partner_id)
        .bind(id)
        .bind(now)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(delivery))
    }
}

const DELIVERY_COLUMNS: &str = "id, partner_id, event_id, event_type, inquiry_id, status, attempts, next_at, \
     blocked_by, last_error, created_at, updated_at";

fn delivery(row: &sqlx::sqlite::SqliteRow) -> Delivery {
    Delivery {
        id: row.get(0),
        partner_id: row.get(1),
        event_id: row.get(2),
        event_type: row.get(3),
        inquiry_id: row.get(4),
        status: Status::parse(row.get(5)).unwrap_or(Status::Pending),
        attempts: row.get(6),
        next_at: row.get(7),
        blocked_by: row.get(8),
        last_error: row.get(9),
        created_at: row.get(10),
        updated_at: row.get(11),
    }
}

fn raw_json(text: String) -> Box<serde_json::value::RawValue> {
    match serde_json::from_str::<&serde_json::value::RawValue>(&text) {
        Ok(raw) => raw.to_owned(),
        Err(_) => serde_json::value::to_raw_value(&text).expect("a string serializes"),
    }
}

fn parse_json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

async fn release_held(tx: &mut Transaction<'_, Sqlite>, partner_id: &str, now: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE deliveries SET status = 'pending', next_at = ?2, updated_at = ?2 WHERE partner_id = ?1 AND status = 'held'",
    )
    .bind(partner_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// A partner's settings as accepting events needs them.
struct ForAccept {
    settings: NotificationSettings,
    /// The endpoint is disabled.
    disabled: bool,
    version: i64,
}
