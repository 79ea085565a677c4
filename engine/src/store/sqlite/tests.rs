//! Tests of the SQLite backend's own machinery: its threads, checkpoints, the borrowed handle,
//! the stretches of a recording, and the SQL forms of the rules its statements render. What
//! shows only in its rows is tested in `rows`; the store's behaviour through [`Store`] alone
//! is tested in the store's `tests`, on every backend.

mod rows;

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::SqlitePool;

use super::SqliteStore;
use super::direct::transaction;
use super::record::{RECORD_STRETCH, record};
use crate::store::rules;
use crate::store::tests::{Backend, delivered, events, partner};
use crate::store::{Durability, Pace, Status, Store, now_ms};

/// A fresh SQLite store.
async fn store() -> (tempfile::TempDir, Store) {
    crate::store::tests::open(Backend::Sqlite).await
}

/// The SQLite backend of `store`.
fn sqlite(store: &Store) -> &SqliteStore {
    match store {
        Store::Sqlite(sqlite) => sqlite,
        Store::Postgres(_) => panic!("not an SQLite store"),
    }
}

/// The write connection's pool of `store`, to look at rows.
fn write(store: &Store) -> &SqlitePool {
    &sqlite(store).write
}

/// Accepts run at the opener's priority; recordings, claims and give-backs below it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn background_writes_run_below_accepts() {
    use crate::priority::current as nice;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("threads.db").display());
    let store = Store::open_with(&url, Durability::Process, 4)
        .await
        .expect("the store opens");
    let base = nice();
    let accepting = sqlite(&store).on_writer(async { Ok(nice()) }).await.expect("runs");
    let background = sqlite(&store).on_handle(|_| Ok(nice())).await.expect("runs");
    assert_eq!(accepting, base);
    assert_eq!(background, (base + 4).min(19));
    store.close().await;
}

/// The write connection checkpoints the log in short steps (see `CHECKPOINT_PAGES`).
#[tokio::test]
async fn the_writer_checkpoints_in_short_steps() {
    let (_dir, store) = store().await;
    let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(write(&store))
        .await
        .expect("the setting");
    assert_eq!(pages, i64::from(super::CHECKPOINT_PAGES));
    store.close().await;
}

/// The statements prepared on the borrowed handle are finalized with each transaction, so
/// sqlx can still close its connection: the last one to close checkpoints the log and
/// removes it, leaving one clean database file.
#[tokio::test]
async fn closing_after_direct_writes_leaves_a_clean_file() {
    let (dir, store) = store().await;
    let partner = partner(&store).await;
    let events = events(&partner, &[("c1", "created", "i1"), ("c2", "created", "i2")]);
    store.accept(&events, now_ms()).await.expect("accepted");
    let claimed = store.claim(now_ms(), 60_000, 10).await.expect("claimed");
    assert_eq!(claimed.len(), 2);
    let outcomes = delivered(&claimed);
    store.record(outcomes.into(), now_ms()).await.expect("recorded");
    let wal = dir.path().join("batch.db-wal");
    assert!(wal.exists(), "the log is in use while the store is open");
    store.close().await;
    assert!(!wal.exists(), "every connection closed, the last one removed the log");
}

/// A recording stops after a stretch when an accept waits; the next one goes on from there.
#[tokio::test]
async fn a_recording_stops_for_a_waiting_accept() {
    let (_dir, store) = store().await;
    let partner = partner(&store).await;
    let n = RECORD_STRETCH * 2 + 10;
    let rows: Vec<(String, &str, String)> = (0..n).map(|i| (format!("c{i}"), "created", format!("i{i}"))).collect();
    let rows: Vec<(&str, &str, &str)> = rows.iter().map(|(e, k, q)| (e.as_str(), *k, q.as_str())).collect();
    store
        .accept(&events(&partner, &rows), now_ms())
        .await
        .expect("accepted");
    let claimed = store.claim(now_ms(), 60_000, n as i64).await.expect("claimed");
    let outcomes = delivered(&claimed);
    let waiting = AtomicUsize::new(1);
    let first = transaction(
        write(&store),
        || {},
        |tx| record(tx, &outcomes, now_ms(), Some(&waiting)),
    )
    .await
    .expect("recorded");
    assert_eq!(first, (0, RECORD_STRETCH), "one stretch, then the accept goes");
    waiting.store(0, Ordering::Release);
    let rest = transaction(
        write(&store),
        || {},
        |tx| record(tx, &outcomes[RECORD_STRETCH..], now_ms(), Some(&waiting)),
    )
    .await
    .expect("recorded");
    assert_eq!(rest, (0, n - RECORD_STRETCH), "nobody waits: the rest at once");
    let delivered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'")
        .fetch_one(write(&store))
        .await
        .expect("a count");
    assert_eq!(delivered as usize, n);
}

/// The SQL forms of the rules that the statements render pick the rows the rules pick, for
/// every combination of the facts they decide on.
#[test]
fn the_sql_forms_agree_with_the_rules() {
    let db = rusqlite::Connection::open_in_memory().expect("a database");
    db.execute_batch("CREATE TABLE deliveries (status TEXT, attempts INTEGER, leased_until INTEGER, next_at INTEGER)")
        .expect("a table");
    let all = [
        Status::Pending,
        Status::Blocked,
        Status::Held,
        Status::Delivered,
        Status::Failed,
    ];
    for status in all {
        for attempts in [0, 1] {
            for leased_until in [None, Some(99), Some(100), Some(101)] {
                for next_at in [99, 100, 101] {
                    db.execute(
                        "INSERT INTO deliveries VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![status.as_str(), attempts, leased_until, next_at],
                    )
                    .expect("a row");
                }
            }
        }
    }
    let now = 100;
    type Facts = (Status, i64, Option<i64>, i64);
    let check = |sql: &str, rule: &dyn Fn(Facts) -> bool| {
        let mut select = db
            .prepare(&format!(
                "SELECT status, attempts, leased_until, next_at, {sql} FROM deliveries"
            ))
            .expect("the SQL form reads");
        let rows = select
            .query_map([], |row| {
                let status: String = row.get(0)?;
                let facts = (
                    Status::parse(&status).expect("a status"),
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                );
                Ok((facts, row.get::<_, bool>(4)?))
            })
            .expect("rows")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("rows");
        assert_eq!(rows.len(), 120);
        for (facts, picked) in rows {
            assert_eq!(picked, rule(facts), "{sql} for {facts:?}");
        }
    };
    check(&rules::on_its_way_sql(), &|(status, ..)| rules::on_its_way(status));
    check(&rules::untried_sql("100"), &|(status, attempts, leased_until, _)| {
        rules::untried(status, attempts, leased_until, now)
    });
    check(&rules::due_sql("100"), &|(status, _, leased_until, next_at)| {
        rules::due(status, next_at, leased_until, now)
    });
    check(&rules::may_retry_sql("100"), &|(status, _, leased_until, _)| {
        rules::may_retry(status, leased_until, now)
    });
    // The rows' `next_at` stands for `updated_at`.
    check(&rules::prunable_sql("100").replace("updated_at", "next_at"), &|(
        status,
        _,
        _,
        next_at,
    )| {
        rules::prunable(status, next_at, now)
    });
    let held = Status::Held.as_str();
    check(
        &format!("{} = '{held}'", rules::pending_unless_disabled_sql("attempts = 1")),
        &|(_, attempts, ..)| rules::pending_unless_disabled(attempts == 1) == Status::Held,
    );
}

/// A partner's filtered listing and a replay read deliveries through an index, whatever the
/// filters: no plan step scans the table.
#[tokio::test]
async fn filtered_listings_and_replays_use_an_index() {
    use super::queries::{Bind, bind_all, listing_sql, replay_sql};
    use crate::store::DeliveryFilter;
    use sqlx::Row;
    let (_dir, store) = store().await;
    let p = partner(&store).await;
    store
        .accept(
            &events(&p, &[("e1", "created", "i1"), ("e2", "resolved", "i1")]),
            now_ms(),
        )
        .await
        .unwrap();
    let now = now_ms();
    let filters = [
        DeliveryFilter::default(),
        DeliveryFilter {
            status: Some(Status::Failed),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            event_type: Some("action_inquiry.created".into()),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            since: Some(now - 1000),
            until: Some(now),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            inquiry_id: Some("i1".into()),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            order_id: Some("O-1".into()),
            status: Some(Status::Delivered),
            since: Some(now - 1000),
            ..DeliveryFilter::default()
        },
    ];
    for filter in &filters {
        let statements: [(String, Vec<Bind>); 3] = [
            listing_sql(&p, filter, None, 50),
            listing_sql(&p, filter, Some("dlv_01"), 50),
            replay_sql(&p, filter, Some("dlv_01"), 10_000, now),
        ];
        for (sql, binds) in statements {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let plan: Vec<String> = bind_all!(sqlx::query(&explain), binds)
                .fetch_all(write(&store))
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            assert!(
                !plan.iter().any(|step| step.starts_with("SCAN")),
                "{filter:?}\n{sql}\n{plan:#?}"
            );
            assert!(
                plan.iter()
                    .any(|step| step.starts_with("SEARCH deliveries USING INDEX deliveries_by_")),
                "{filter:?}\n{sql}\n{plan:#?}"
            );
        }
    }
}

/// Fencing costs recording nothing: each statement that moves a delivery finds it through its
/// primary key and checks the lease number on the row found.
#[tokio::test]
async fn a_fenced_recording_seeks_its_delivery_by_id() {
    use sqlx::Row;
    let (_dir, store) = store().await;
    for sql in super::record::fenced_statements() {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(write(&store))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        assert_eq!(
            plan.first().map(String::as_str),
            Some("SEARCH deliveries USING INDEX sqlite_autoindex_deliveries_1 (id=?)"),
            "{sql}\n{plan:#?}"
        );
        assert!(!plan.iter().any(|step| step.starts_with("SCAN")), "{sql}\n{plan:#?}");
    }
}

/// A delivery's attempts and every statement of retention seek through an index; none reads a
/// whole table of deliveries, attempts or events, whatever its size. (The listings: see
/// `filtered_listings_and_replays_use_an_index`.)
#[tokio::test]
async fn retention_and_the_attempt_log_go_through_indexes() {
    use sqlx::Row;
    let (_dir, store) = store().await;
    let partner = partner(&store).await;
    let accepted = store
        .accept(
            &events(&partner, &[("c1", "created", "i1"), ("c2", "created", "i2")]),
            now_ms(),
        )
        .await
        .expect("accepted");
    assert_eq!(accepted.len(), 2);
    let statements = [
        super::queries::ATTEMPTS,
        super::prune::NEXT_DELIVERIES,
        super::prune::DELETE_DELIVERY.as_str(),
        "DELETE FROM attempts WHERE delivery_id = ?1",
        super::prune::EVENT_HAS_DELIVERIES,
        "DELETE FROM events WHERE partner_id = ?1 AND id = ?2",
        super::prune::NEXT_EVENTS,
        "DELETE FROM events WHERE rowid = ?1",
    ];
    for sql in statements {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(write(&store))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        assert!(!plan.is_empty(), "{sql}");
        for step in &plan {
            assert!(
                !["deliveries", "attempts", "events"]
                    .iter()
                    .any(|table| step.starts_with(&format!("SCAN {table}"))),
                "{sql}\nreads a whole table: {plan:?}"
            );
        }
    }
}

/// A claim, the earliest due time and the count of due deliveries find partners and their due
/// deliveries through the partner index, skipping from one partner to the next: no step scans
/// the deliveries, whatever their number.
#[tokio::test]
async fn claims_find_due_deliveries_partner_by_partner_through_an_index() {
    use sqlx::Row;
    let (_dir, store) = store().await;
    for _ in 0..2 {
        let partner = partner(&store).await;
        store
            .accept(
                &events(&partner, &[("c1", "created", "i1"), ("c2", "created", "i2")]),
                now_ms(),
            )
            .await
            .expect("accepted");
    }
    let statements = [
        super::claim::HEADS.as_str(),
        super::claim::PARTNER_DUE.as_str(),
        super::claim::LEASE,
        &format!("SELECT MIN(first) FROM ({}) AS h", *super::claim::HEADS),
    ];
    for sql in statements {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(write(&store))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        assert!(
            !plan
                .iter()
                .any(|step| step.starts_with("SCAN deliveries") || step.contains("TEMP B-TREE")),
            "{sql}\n{plan:#?}"
        );
        assert!(
            plan.iter().any(|step| step.starts_with("SEARCH deliveries")),
            "{sql}\n{plan:#?}"
        );
    }
    // And they find what is due: two partners, two deliveries each.
    assert_eq!(store.due(now_ms() + 1).await.expect("due").0, 4);
    assert_eq!(store.claim(now_ms() + 1, 60_000, 3).await.expect("claimed").len(), 3);
}

/// Retention runs without SQLite's foreign key checks and keeps every reference whole itself;
/// the write connection has its checks back afterwards.
#[tokio::test]
async fn retention_keeps_references_whole_and_the_checks_on() {
    let (_dir, store) = store().await;
    let partner = partner(&store).await;
    let now = now_ms();
    store
        .accept(
            &events(
                &partner,
                &[
                    ("c1", "created", "i1"),
                    ("c2", "created", "i2"),
                    ("r2", "resolved", "i2"),
                ],
            ),
            now,
        )
        .await
        .expect("accepted");
    let claimed = store.claim(now, 60_000, 10).await.expect("claimed");
    assert_eq!(claimed.len(), 2, "r2 waits for c2");
    let outcomes = delivered(&claimed[..1]);
    store.record(outcomes.into(), now).await.expect("recorded");
    let pruned = store.prune(now + 60_000, 1, &Pace::unpaced()).await.expect("pruned");
    assert_eq!((pruned.deliveries, pruned.events), (1, 1));
    let broken: Vec<sqlx::sqlite::SqliteRow> = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(write(&store))
        .await
        .expect("checked");
    assert!(broken.is_empty(), "{} rows name missing ones", broken.len());
    let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(write(&store))
        .await
        .expect("the setting");
    assert_eq!(on, 1);
    // And the checks hold: an attempt of no delivery is refused.
    let ghost = vec![crate::store::Outcome {
        attempt: crate::store::tests::attempt(&"dlv_ghost".into(), None),
        next: crate::store::Next::Delivered,
        lease_seq: 1,
    }];
    assert!(store.record(ghost.into(), now).await.is_err());
}

/// The delivery rates read only the span's attempts, along the attempts' primary key, and each
/// one's delivery by its own: no table is read whole, however long the attempts' log is.
#[tokio::test]
async fn delivery_rates_seek_the_spans_attempts_by_id() {
    use sqlx::Row;
    let (_dir, store) = store().await;
    let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", super::queries::OUTCOME_COUNTS))
        .bind(0_i64)
        .bind(60_000_i64)
        .bind(crate::store::rules::attempts_from(0))
        .fetch_all(write(&store))
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect();
    assert_eq!(
        plan.first().map(String::as_str),
        Some("SEARCH a USING INDEX sqlite_autoindex_attempts_1 (id>?)"),
        "{plan:#?}"
    );
    assert!(
        plan.iter()
            .any(|step| step == "SEARCH d USING INDEX sqlite_autoindex_deliveries_1 (id=?)"),
        "{plan:#?}"
    );
    assert!(!plan.iter().any(|step| step.starts_with("SCAN")), "{plan:#?}");
}
