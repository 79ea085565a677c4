//! Tests of what only PostgreSQL has: several processes writing one database at once. Each
//! opens stores of its own (as processes would) on one fresh schema, and says it was skipped
//! without a database (see `store::tests::postgres_url`).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use super::super::PgStore;
use super::{distinct_layers, distinct_runs};
use crate::id::DeliveryId;
use crate::settings::NotificationSettings;
use crate::store::tests::{attempt, event, postgres_schema, postgres_url};
use crate::store::{ACTION_INQUIRY, Durability, Next, Outcome, Status, now_ms};

/// `n` stores on one fresh schema, as `n` processes would open it, or `None` without a
/// database.
async fn stores(n: usize) -> Option<Vec<PgStore>> {
    let url = postgres_schema(&postgres_url()?).await;
    let mut stores = Vec::with_capacity(n);
    for _ in 0..n {
        stores.push(PgStore::open(&url, Durability::Process).await.expect("the store opens"));
    }
    Some(stores)
}

/// A partner with settings for every event, no delay, written as the API writes them.
async fn partner(store: &PgStore, id: &str) {
    let settings = NotificationSettings::validate(&json!({
        "url": "https://partner.example/hook",
        "body_template": "{\"id\":\"{EventId}\"}",
    }))
    .expect("valid settings");
    let body = serde_json::to_string(settings.settings()).expect("settings serialize");
    sqlx::query("INSERT INTO partners (id, name, secret, created_at) VALUES ($1, 'pg', 'whsec_test', 0)")
        .bind(id)
        .execute(&store.pool)
        .await
        .expect("a partner");
    sqlx::query("INSERT INTO settings (partner_id, family, body, version, updated_at) VALUES ($1, $2, $3, 1, 0)")
        .bind(id)
        .bind(ACTION_INQUIRY)
        .bind(body)
        .execute(&store.pool)
        .await
        .expect("settings");
}

/// Waits until another backend waits for the transaction `holder`: the one `waiting` runs on.
/// Should `waiting` end first, says how it ended, since nothing will wait then.
async fn until_blocked_by(
    holder: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    waiting: &mut tokio::task::JoinHandle<Result<u64, crate::store::StoreError>>,
) {
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut **holder)
        .await
        .expect("a pid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let blocked: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))")
                .bind(pid)
                .fetch_one(&mut **holder)
                .await
                .expect("a count");
        if blocked > 0 {
            return;
        }
        if waiting.is_finished() {
            let ended = waiting.await;
            panic!("the recording that was to wait for the holder ended first: {ended:?}");
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing waits for the holder");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A delivery's status and what it waits for.
async fn state(store: &PgStore, id: &DeliveryId) -> (Status, Option<String>) {
    let (status, blocked_by): (String, Option<String>) =
        sqlx::query_as("SELECT status, blocked_by FROM deliveries WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&store.pool)
            .await
            .expect("a delivery");
    (Status::parse(&status).expect("a status"), blocked_by)
}

#[test]
fn layers_put_each_item_after_the_earlier_ones_sharing_a_key() {
    assert_eq!(distinct_layers(&[1, 2, 3], |x| [*x]), [vec![0, 1, 2]]);
    assert_eq!(
        distinct_layers(&[1, 2, 1, 3, 3, 1], |x| [*x]),
        [vec![0, 1, 3], vec![2, 4], vec![5]]
    );
    assert!(distinct_layers(&[] as &[i32], |x| [*x]).is_empty());
    // Created and resolved events of many inquiries, in pairs: two layers, not one per pair.
    let pairs: Vec<(u32, u32)> = (0..50).map(|n| (n, n / 2 + 1000)).collect();
    let layers = distinct_layers(&pairs, |x| [x.0, x.1]);
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0], (0..50).step_by(2).collect::<Vec<usize>>());
    // An item sharing either key waits for the later of the two layers that hold them.
    assert_eq!(
        distinct_layers(&[(1, 10), (2, 20), (3, 10), (2, 30), (4, 30)], |x| [x.0, x.1]),
        [vec![0, 1], vec![2, 3], vec![4]]
    );
}

#[test]
fn runs_end_where_a_key_comes_again() {
    assert_eq!(
        distinct_runs(&[1, 2, 3], |x| [*x]),
        vec![std::ops::Range { start: 0, end: 3 }]
    );
    assert_eq!(distinct_runs(&[1, 2, 1, 3, 3], |x| [*x]), [0..2, 2..4, 4..5]);
    assert!(distinct_runs(&[] as &[i32], |x| [*x]).is_empty());
    // Either of an item's keys seen in the run ends it.
    assert_eq!(
        distinct_runs(&[(1, 10), (2, 20), (3, 10)], |x| [x.0, x.1]),
        [0..2, 2..3]
    );
}

/// Four processes claiming the same 500 due deliveries at once, a few at a time, never take
/// the same one, and between them take them all, each under its first lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_claiming_at_once_never_take_the_same_delivery() {
    let Some(stores) = stores(4).await else { return };
    let partners: Vec<String> = (0..5).map(|p| format!("ptn_claim{p}")).collect();
    for p in &partners {
        partner(&stores[0], p).await;
    }
    let now = now_ms();
    let mut all = HashSet::new();
    for p in &partners {
        let batch: Vec<_> = (0..100)
            .map(|i| event(p, &format!("e{i}"), "created", &format!("i{i}")))
            .collect();
        let accepted = stores[0]
            .accept_leasing(batch.into(), now, crate::store::Lease::NONE)
            .await
            .expect("accepted");
        all.extend(accepted.0.into_iter().map(|a| a.delivery_ids[0].clone()));
    }
    assert_eq!(all.len(), 500);

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(stores.len()));
    let mut claimers = tokio::task::JoinSet::new();
    for store in stores.clone() {
        let start = start.clone();
        claimers.spawn(async move {
            start.wait().await;
            let mut mine = Vec::new();
            // Until nothing is left due: a claim finding only rows another holds locked
            // answers nothing, and the other takes them.
            loop {
                let claimed = store.claim(now, 60_000, 7, &[]).await.expect("claimed");
                if claimed.is_empty() && store.due(now).await.expect("due").0 == 0 {
                    break;
                }
                for c in claimed {
                    assert_eq!(c.lease_seq, 1, "{} was claimed before", c.delivery_id);
                    mine.push(c.delivery_id);
                }
            }
            mine
        });
    }
    let mut taken = Vec::new();
    let mut claimers_that_took = 0;
    for mine in claimers.join_all().await {
        claimers_that_took += usize::from(!mine.is_empty());
        taken.extend(mine);
    }
    let distinct: HashSet<DeliveryId> = taken.iter().cloned().collect();
    assert_eq!(distinct.len(), taken.len(), "no delivery is claimed twice");
    assert_eq!(distinct, all, "every delivery is claimed");
    assert!(claimers_that_took > 1, "the claims ran side by side");
}

/// A created and a resolved event of one inquiry accepted at once by two processes are
/// recorded as if one came after the other, whichever it is: the resolved postback waits for
/// the created one until that is recorded, and goes then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_created_and_a_resolved_event_accepted_at_once_keep_their_order() {
    let Some(stores) = stores(3).await else { return };
    let p = "ptn_pair";
    partner(&stores[0], p).await;
    let pairs = 8;
    // A third process holds the partner's row, so that every accept waits at the same point
    // and they all go at once when it lets go.
    let mut holder = stores[2].pool.begin().await.expect("a transaction");
    sqlx::query("SELECT 1 FROM partners WHERE id = $1 FOR UPDATE")
        .bind(p)
        .execute(&mut *holder)
        .await
        .expect("locked");
    let mut accepts = tokio::task::JoinSet::new();
    for i in 0..pairs {
        for (kind, store) in [("created", stores[0].clone()), ("resolved", stores[1].clone())] {
            let event = event(p, &format!("{kind}{i}"), kind, &format!("i{i}"));
            accepts.spawn(async move {
                let (accepted, _) = store
                    .accept_leasing(vec![event].into(), now_ms(), crate::store::Lease::NONE)
                    .await
                    .expect("accepted");
                (i, kind, accepted[0].delivery_ids[0].clone())
            });
        }
    }
    // Until every accept waits for a lock (the partner's row, or its inquiry's).
    let waiting = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE application_name = 'postwire' AND wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .expect("a count")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while waiting(stores[2].pool.clone()).await < 2 * pairs && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.commit().await.expect("let go");
    let mut created = vec![None; pairs as usize];
    let mut resolved = vec![None; pairs as usize];
    for (i, kind, id) in accepts.join_all().await {
        let slot = if kind == "created" { &mut created } else { &mut resolved };
        slot[i as usize] = Some(id);
    }
    let created: Vec<DeliveryId> = created.into_iter().map(|id| id.expect("accepted")).collect();
    let resolved: Vec<DeliveryId> = resolved.into_iter().map(|id| id.expect("accepted")).collect();
    for i in 0..pairs as usize {
        assert_eq!(
            state(&stores[0], &resolved[i]).await,
            (Status::Blocked, Some(created[i].as_str().to_owned())),
            "pair {i}"
        );
        assert_eq!(
            state(&stores[0], &created[i]).await,
            (Status::Pending, None),
            "pair {i}"
        );
    }

    // Only the created postbacks go; each resolved one goes once its created one is recorded.
    let claimed = stores[1].claim(now_ms(), 60_000, 100, &[]).await.expect("claimed");
    let ids: HashSet<DeliveryId> = claimed.iter().map(|c| c.delivery_id.clone()).collect();
    assert_eq!(ids, created.iter().cloned().collect::<HashSet<_>>());
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|c| Outcome {
            attempt: attempt(&c.delivery_id, None),
            next: Next::Delivered,
            lease_seq: c.lease_seq,
        })
        .collect();
    let released = stores[0].record(outcomes.into(), now_ms()).await.expect("recorded");
    assert_eq!(released, pairs as u64);
    for id in &resolved {
        assert_eq!(state(&stores[0], id).await, (Status::Pending, None));
    }
    let claimed = stores[1].claim(now_ms(), 60_000, 100, &[]).await.expect("claimed");
    let ids: HashSet<DeliveryId> = claimed.iter().map(|c| c.delivery_id.clone()).collect();
    assert_eq!(ids, resolved.iter().cloned().collect::<HashSet<_>>());
}

/// An accept that leaves new deliveries due for a claim notifies the workers' channel; one
/// whose due deliveries are all leased to its caller does not.
#[tokio::test]
async fn an_accept_leaving_deliveries_due_notifies_the_workers() {
    use crate::store::Lease;
    let Some(url) = postgres_url() else { return };
    let url = postgres_schema(&url).await;
    let store = PgStore::open(&url, Durability::Process).await.expect("the store opens");
    partner(&store, "ptn_notify").await;
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.expect("a listener");
    listener.listen(super::DUE_CHANNEL).await.expect("listening");
    // The channel is the database's, which other tests share: the accepts go through a pool of
    // one connection, and only its notifications count.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("a pool");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("a pid");
    let mut notified = async |wait: Duration| {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(next) = tokio::time::timeout_at(deadline, listener.recv()).await {
            let notification = next.expect("a notification");
            if notification.process_id() == pid as u32 {
                assert_eq!(notification.channel(), super::DUE_CHANNEL);
                return true;
            }
        }
        false
    };
    let now = now_ms();
    let all_leased = Lease {
        until: now + 60_000,
        max: 10,
    };
    let (_, leased) = super::accept::accept(&pool, &[event("ptn_notify", "e1", "created", "i1")], now, all_leased)
        .await
        .expect("accepted");
    assert_eq!(leased.len(), 1);
    assert!(!notified(Duration::from_millis(500)).await, "nothing is left to claim");
    super::accept::accept(&pool, &[event("ptn_notify", "e2", "created", "i2")], now, Lease::NONE)
        .await
        .expect("accepted");
    assert!(notified(Duration::from_secs(10)).await, "e2 is left to claim");
    let same: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("a pid");
    assert_eq!(same, pid, "the accepts went through the one connection");
}

/// A resolved event accepted while a recording finishes its created postback, in another
/// process, is not left blocked behind it: the accept waits for the recording, and then sees
/// the created postback done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resolved_event_accepted_while_its_created_postback_is_recorded_goes() {
    use crate::store::Lease;
    let Some(stores) = stores(3).await else { return };
    let p = "ptn_race";
    partner(&stores[0], p).await;
    let now = now_ms();
    let (accepted, _) = stores[0]
        .accept_leasing(vec![event(p, "c1", "created", "i1")].into(), now, Lease::NONE)
        .await
        .expect("accepted");
    let c1 = accepted[0].delivery_ids[0].clone();
    let claimed = stores[0].claim(now, 60_000, 10, &[]).await.expect("claimed");
    assert_eq!(claimed.len(), 1);
    let outcome = Outcome {
        attempt: attempt(&c1, None),
        next: Next::Delivered,
        lease_seq: claimed[0].lease_seq,
    };
    // A third process writes the attempt's row first, uncommitted: the recording moves c1 and
    // then waits, before its commit, on that row.
    let mut holder = stores[2].pool.begin().await.expect("a transaction");
    sqlx::query(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request, verdict)
         VALUES ($1, $2, 1, 0, 0, '{}', 'success')",
    )
    .bind(outcome.attempt.id.as_str())
    .bind(c1.as_str())
    .execute(&mut *holder)
    .await
    .expect("a row");
    let mut recording = tokio::spawn({
        let store = stores[0].clone();
        async move { store.record(vec![outcome].into(), now_ms()).await }
    });
    until_blocked_by(&mut holder, &mut recording).await;
    assert!(!recording.is_finished(), "the recording waits for the attempt's row");
    let accepting = tokio::spawn({
        let store = stores[1].clone();
        async move {
            store
                .accept_leasing(vec![event(p, "r1", "resolved", "i1")].into(), now_ms(), Lease::NONE)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!accepting.is_finished(), "the accept waits for the recording of c1");
    holder.rollback().await.expect("let go");
    recording.await.expect("the recording ran").expect("recorded");
    let (accepted, _) = accepting.await.expect("the accept ran").expect("accepted");
    let r1 = accepted[0].delivery_ids[0].clone();
    assert_eq!(state(&stores[0], &c1).await, (Status::Delivered, None));
    assert_eq!(state(&stores[0], &r1).await, (Status::Pending, None), "r1 goes");
}

/// Give-backs and outcomes naming one delivery more than once in a batch take effect one
/// after another, in order: the last time given back wins, a lease that no longer holds gives
/// nothing back, and each outcome is logged and moves the delivery only under its lease.
#[tokio::test]
async fn batches_naming_a_delivery_twice_go_in_order() {
    use crate::store::{GiveBack, Lease};
    let Some(stores) = stores(1).await else { return };
    let store = &stores[0];
    let p = "ptn_twice";
    partner(store, p).await;
    let now = now_ms();
    let batch = vec![event(p, "c1", "created", "i1"), event(p, "c2", "created", "i2")];
    let (accepted, _) = store
        .accept_leasing(batch.into(), now, Lease::NONE)
        .await
        .expect("accepted");
    let (c1, c2) = (accepted[0].delivery_ids[0].clone(), accepted[1].delivery_ids[0].clone());
    let claimed = store.claim(now, 60_000, 10, &[]).await.expect("claimed");
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.lease_seq == 1));
    let back = |id: &DeliveryId, lease_seq: i64, due: i64| GiveBack {
        delivery_id: id.clone(),
        lease_seq,
        due,
    };
    store
        .reschedule(&[back(&c1, 1, 5), back(&c1, 1, 7), back(&c2, 0, 9), back(&c2, 1, 11)])
        .await
        .expect("given back");
    let rows: Vec<(i64, Option<i64>)> =
        sqlx::query_as("SELECT next_at, leased_until FROM deliveries WHERE id IN ($1, $2) ORDER BY next_at")
            .bind(c1.as_str())
            .bind(c2.as_str())
            .fetch_all(&store.pool)
            .await
            .expect("rows");
    assert_eq!(rows, [(7, None), (11, None)]);

    let claimed = store.claim(now, 60_000, 10, &[]).await.expect("claimed again");
    assert!(claimed.iter().all(|c| c.lease_seq == 2));
    let outcome = |lease_seq: i64, next: Next| Outcome {
        attempt: attempt(&c1, None),
        next,
        lease_seq,
    };
    let outcomes = vec![
        outcome(1, Next::Failed),
        outcome(2, Next::RetryAt(now + 3_600_000)),
        outcome(2, Next::Delivered),
    ];
    let ids: Vec<String> = outcomes.iter().map(|o| o.attempt.id.as_str().to_owned()).collect();
    store.record(outcomes.into(), now).await.expect("recorded");
    assert_eq!(state(store, &c1).await, (Status::Delivered, None));
    let (attempts, next_at): (i64, i64) = sqlx::query_as("SELECT attempts, next_at FROM deliveries WHERE id = $1")
        .bind(c1.as_str())
        .fetch_one(&store.pool)
        .await
        .expect("a row");
    assert_eq!(
        (attempts, next_at),
        (3, now + 3_600_000),
        "counted thrice, retried, then delivered"
    );
    let mut superseded = Vec::new();
    for id in &ids {
        let flag: i64 = sqlx::query_scalar("SELECT superseded FROM attempts WHERE id = $1")
            .bind(id)
            .fetch_one(&store.pool)
            .await
            .expect("an attempt");
        superseded.push(flag);
    }
    assert_eq!(superseded, [1, 0, 0]);
}

/// An event accepted while a recording disables its endpoint, in another process, is held
/// with the endpoint's other postbacks: the accept waits for the recording, and then sees the
/// endpoint disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_accepted_while_its_endpoint_is_disabled_is_held() {
    use crate::store::Lease;
    let Some(stores) = stores(3).await else { return };
    let p = "ptn_gone";
    partner(&stores[0], p).await;
    let now = now_ms();
    let (accepted, _) = stores[0]
        .accept_leasing(vec![event(p, "c1", "created", "i1")].into(), now, Lease::NONE)
        .await
        .expect("accepted");
    let c1 = accepted[0].delivery_ids[0].clone();
    let claimed = stores[0].claim(now, 60_000, 10, &[]).await.expect("claimed");
    let outcome = Outcome {
        attempt: attempt(&c1, Some("410")),
        next: Next::Disable("410".into()),
        lease_seq: claimed[0].lease_seq,
    };
    // As above: the recording disables the endpoint and then waits for the attempt's row.
    let mut holder = stores[2].pool.begin().await.expect("a transaction");
    sqlx::query(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request, verdict)
         VALUES ($1, $2, 1, 0, 0, '{}', 'disable')",
    )
    .bind(outcome.attempt.id.as_str())
    .bind(c1.as_str())
    .execute(&mut *holder)
    .await
    .expect("a row");
    let mut recording = tokio::spawn({
        let store = stores[0].clone();
        async move { store.record(vec![outcome].into(), now_ms()).await }
    });
    until_blocked_by(&mut holder, &mut recording).await;
    assert!(!recording.is_finished(), "the recording waits for the attempt's row");
    let accepting = tokio::spawn({
        let store = stores[1].clone();
        async move {
            store
                .accept_leasing(vec![event(p, "c2", "created", "i2")].into(), now_ms(), Lease::NONE)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!accepting.is_finished(), "the accept waits for the endpoint's settings");
    holder.rollback().await.expect("let go");
    recording.await.expect("the recording ran").expect("recorded");
    let (accepted, _) = accepting.await.expect("the accept ran").expect("accepted");
    let c2 = accepted[0].delivery_ids[0].clone();
    assert_eq!(state(&stores[0], &c1).await, (Status::Held, None));
    assert_eq!(
        state(&stores[0], &c2).await,
        (Status::Held, None),
        "c2 waits for the endpoint"
    );
}

/// A retry recorded while the API disables the endpoint leaves the delivery held: the
/// recording reads whether the endpoint is disabled only once the disabling has committed.
#[tokio::test]
async fn a_retry_recorded_while_its_endpoint_is_disabled_is_held() {
    use crate::store::Lease;
    let Some(stores) = stores(2).await else { return };
    let p = "ptn_off";
    partner(&stores[0], p).await;
    let now = now_ms();
    let (accepted, _) = stores[0]
        .accept_leasing(vec![event(p, "c1", "created", "i1")].into(), now, Lease::NONE)
        .await
        .expect("accepted");
    let c1 = accepted[0].delivery_ids[0].clone();
    let claimed = stores[0].claim(now, 60_000, 10, &[]).await.expect("claimed");
    let outcome = Outcome {
        attempt: attempt(&c1, Some("500")),
        next: Next::RetryAt(now + 60_000),
        lease_seq: claimed[0].lease_seq,
    };
    // The API's disabling, under way: the settings say disabled, the pending delivery held.
    let mut disabling = stores[1].pool.begin().await.expect("a transaction");
    sqlx::query("UPDATE settings SET disabled_reason = 'off', disabled_at = $2 WHERE partner_id = $1")
        .bind(p)
        .bind(now)
        .execute(&mut *disabling)
        .await
        .expect("disabled");
    sqlx::query("UPDATE deliveries SET status = 'held' WHERE partner_id = $1 AND status = 'pending'")
        .bind(p)
        .execute(&mut *disabling)
        .await
        .expect("held");
    let mut recording = tokio::spawn({
        let store = stores[0].clone();
        async move { store.record(vec![outcome].into(), now_ms()).await }
    });
    until_blocked_by(&mut disabling, &mut recording).await;
    disabling.commit().await.expect("committed");
    recording.await.expect("the recording ran").expect("recorded");
    assert_eq!(
        state(&stores[0], &c1).await,
        (Status::Held, None),
        "the retry waits behind the disabled endpoint"
    );
}

/// A claim's lease writes only columns no index holds, so PostgreSQL keeps the new versions on
/// their pages without index entries (HOT updates): `next_at` stays, and the deliveries are not
/// due again until the lease ends, when the next claim takes them under a newer lease.
#[tokio::test]
async fn a_lease_writes_no_index_entry_and_ends_on_time() {
    let Some(stores) = stores(2).await else { return };
    let (accepting, claiming) = (&stores[0], &stores[1]);
    partner(accepting, "ptn_hot").await;
    let now = now_ms();
    let batch: Vec<_> = (0..3)
        .map(|i| event("ptn_hot", &format!("e{i}"), "created", &format!("i{i}")))
        .collect();
    accepting
        .accept_leasing(batch.into(), now, crate::store::Lease::NONE)
        .await
        .expect("accepted");
    let claimed = claiming.claim(now, 60_000, 10, &[]).await.expect("claimed");
    assert_eq!(claimed.len(), 3);
    // The claiming process exits, which publishes its statistics.
    claiming.close().await;
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as("SELECT next_at, leased_until FROM deliveries")
        .fetch_all(&accepting.pool)
        .await
        .expect("rows");
    assert_eq!(
        rows,
        vec![(now, Some(now + 60_000)); 3],
        "next_at stays, the lease is marked"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (updated, hot) = loop {
        let (updated, hot): (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE relname = 'deliveries' AND schemaname = current_schema()",
        )
        .fetch_one(&accepting.pool)
        .await
        .expect("statistics");
        if updated >= 3 || tokio::time::Instant::now() > deadline {
            break (updated, hot);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((updated, hot), (3, 3), "every lease is a HOT update");

    assert_eq!(accepting.due(now).await.expect("due").0, 0, "leased: not due");
    assert_eq!(accepting.next_due().await.expect("next due"), None, "held by a worker");
    assert!(
        accepting
            .claim(now + 59_999, 60_000, 10, &[])
            .await
            .expect("claim")
            .is_empty()
    );
    let ended = now + 60_000;
    assert_eq!(accepting.due(ended).await.expect("due"), (3, Some(now)));
    let again = accepting.claim(ended, 60_000, 10, &[]).await.expect("claimed again");
    assert_eq!(again.len(), 3, "taken again once the lease ended");
    assert!(again.iter().all(|c| c.lease_seq == 2), "under a newer lease");
}

/// On a new database, whose few rows the planner would rather read whole than look up, the
/// pipeline's statements (accept, claim, record, give back, an endpoint disabled by an outcome)
/// still reach deliveries through their indexes only, so that what a postback costs does not
/// grow with the table (see `plan_by_index`).
#[tokio::test]
async fn the_pipeline_reads_deliveries_through_indexes_only() {
    let Some(stores) = stores(2).await else { return };
    let (watching, working) = (&stores[0], &stores[1]);
    partner(watching, "ptn_scan").await;
    let now = now_ms();
    let created: Vec<_> = (0..3)
        .map(|i| event("ptn_scan", &format!("c{i}"), "created", &format!("i{i}")))
        .collect();
    working
        .accept_leasing(created.into(), now, crate::store::Lease::NONE)
        .await
        .expect("accepted");
    let resolved = vec![event("ptn_scan", "r0", "resolved", "i0")];
    working
        .accept_leasing(resolved.into(), now, crate::store::Lease::NONE)
        .await
        .expect("accepted");
    let claimed = working.claim(now, 60_000, 10, &[]).await.expect("claimed");
    assert_eq!(claimed.len(), 3, "the resolved one waits for its created one");
    let outcome = |i: usize, next: Next| Outcome {
        attempt: attempt(&claimed[i].delivery_id, None),
        next,
        lease_seq: claimed[i].lease_seq,
    };
    let released = working
        .record(
            vec![outcome(0, Next::Delivered), outcome(1, Next::RetryAt(now))].into(),
            now,
        )
        .await
        .expect("recorded");
    assert_eq!(released, 1);
    working
        .reschedule(&[crate::store::GiveBack {
            delivery_id: claimed[2].delivery_id.clone(),
            lease_seq: claimed[2].lease_seq,
            due: now,
        }])
        .await
        .expect("given back");
    let again = working.claim(now, 60_000, 10, &[]).await.expect("claimed");
    assert_eq!(again.len(), 3, "the retry, the one given back and the released one");
    let outcomes: Vec<Outcome> = again
        .iter()
        .map(|c| Outcome {
            attempt: attempt(&c.delivery_id, None),
            next: Next::Disable("gone".into()),
            lease_seq: c.lease_seq,
        })
        .collect();
    working.record(outcomes.into(), now).await.expect("recorded");
    // Its backends exit, which publishes their statistics.
    working.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let read_whole = loop {
        let (inserted, updated, read_whole): (i64, i64, i64) = sqlx::query_as(
            "SELECT n_tup_ins, n_tup_upd, seq_tup_read FROM pg_stat_user_tables
             WHERE relname = 'deliveries' AND schemaname = current_schema()",
        )
        .fetch_one(&watching.pool)
        .await
        .expect("statistics");
        if (inserted >= 4 && updated >= 12) || tokio::time::Instant::now() > deadline {
            break read_whole;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(read_whole, 0, "no delivery read by a scan of the whole table");
}
