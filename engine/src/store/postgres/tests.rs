//! Tests of the PostgreSQL backend's own concerns: ids in byte order whatever the database's
//! collation, partner scoping, and the API's statements on rows written as the pipeline writes
//! them, checked against the rules. Each test runs on a schema of its own, and says it was
//! skipped without a database (see `store::tests::postgres_url`).

use serde_json::json;

use super::PgStore;
use crate::id::DeliveryId;
use crate::store::tests::{postgres_schema, postgres_url};
use crate::store::{Durability, KeyKind, PluginQuota, Status, Store, StoreError, rules};

/// A store on a fresh schema and its URL, or `None` when the tests have no database.
async fn open() -> Option<(PgStore, String)> {
    let url = postgres_schema(&postgres_url()?).await;
    let store = PgStore::open(&url, Durability::Process).await.expect("the store opens");
    Some((store, url))
}

/// A partner with settings whose body is `body`.
async fn partner(store: &PgStore, body: serde_json::Value) -> String {
    let partner = store.create_partner("pg", str::to_owned).await.expect("a partner");
    store
        .put_settings(&partner.id, &body.to_string(), 1)
        .await
        .expect("settings saved");
    partner.id.into_string()
}

/// A delivery row as the pipeline writes one, with its event.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    status: Status,
    created_at: i64,
    leased_until: Option<i64>,
    inquiry: &'static str,
    order: Option<&'static str>,
}

impl Row {
    fn new(id: impl Into<String>, status: Status) -> Row {
        Row {
            id: id.into(),
            status,
            created_at: 1_000,
            leased_until: None,
            inquiry: "i1",
            order: None,
        }
    }
}

/// Writes `row` for `partner` (its event named after the delivery), due at 0 and tried once
/// unless pending.
async fn write(store: &PgStore, partner: &str, row: &Row) {
    let event = format!("e_{}", row.id);
    sqlx::query(
        "INSERT INTO events (partner_id, id, event_type, occurred_at, body, received_at)
         VALUES ($1, $2, 'action_inquiry.created', 0, '{}', $3)",
    )
    .bind(partner)
    .bind(&event)
    .bind(row.created_at)
    .execute(&store.pool)
    .await
    .expect("an event");
    sqlx::query(
        "INSERT INTO deliveries (id, partner_id, event_id, event_type, inquiry_id, status, next_at, attempts,
             created_at, updated_at, leased_until, order_id)
         VALUES ($1, $2, $3, 'action_inquiry.created', $4, $5, 0, $6, $7, $7, $8, $9)",
    )
    .bind(&row.id)
    .bind(partner)
    .bind(&event)
    .bind(row.inquiry)
    .bind(row.status.as_str())
    .bind(i64::from(row.status != Status::Pending))
    .bind(row.created_at)
    .bind(row.leased_until)
    .bind(row.order)
    .execute(&store.pool)
    .await
    .expect("a delivery");
}

/// The ids of `partner`'s deliveries as listed, `limit` at a time, page after page.
async fn walk(store: &PgStore, partner: &str, filter: &crate::store::DeliveryFilter, limit: i64) -> Vec<String> {
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .deliveries(partner, filter, cursor.as_deref(), limit)
            .await
            .expect("a page");
        walked.extend(page.iter().map(|d| d.id.as_str().to_owned()));
        if page.len() < limit as usize {
            return walked;
        }
        cursor = page.last().map(|d| d.id.as_str().to_owned());
    }
}

/// Ids are compared byte by byte, as SQLite compares text: an uppercase letter before every
/// lowercase one, `_` between them. The columns say so themselves, so that a database made with
/// a linguistic collation orders them the same.
#[tokio::test]
async fn ids_sort_in_byte_order_whatever_the_database_collation() {
    let Some((store, _)) = open().await else { return };
    let not_c: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, collation_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND data_type = 'text'
             AND column_name IN ('id', 'partner_id', 'event_id', 'delivery_id', 'blocked_by')
             AND collation_name IS DISTINCT FROM 'C'",
    )
    .fetch_all(&store.pool)
    .await
    .expect("the columns");
    assert!(not_c.is_empty(), "ids not in the C collation: {not_c:?}");

    let p = partner(&store, json!({})).await;
    let ids = ["dlv_b", "dlv_B", "dlv_a", "dlv_A", "dlv__", "dlv_0"];
    for id in ids {
        write(&store, &p, &Row::new(id, Status::Delivered)).await;
    }
    let mut bytewise: Vec<&str> = ids.to_vec();
    bytewise.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        walk(&store, &p, &Default::default(), 2).await,
        bytewise,
        "newest (greatest) first, in byte order, page after page"
    );
    let replayed = store
        .replay(&p, &Default::default(), Some("dlv_B"), 2, 5)
        .await
        .expect("replayed");
    let mut replayed: Vec<String> = replayed.into_iter().map(DeliveryId::into_string).collect();
    replayed.sort();
    assert_eq!(
        replayed,
        ["dlv__", "dlv_a"],
        "the oldest two after the cursor, in byte order"
    );
}

/// Listings, lookups, retries and replays see only the partner's own deliveries, and each
/// filter narrows the listing.
#[tokio::test]
async fn the_api_sees_only_the_partners_own_deliveries() {
    let Some((store, _)) = open().await else { return };
    let (p, other) = (partner(&store, json!({})).await, partner(&store, json!({})).await);
    // Ids made at their rows' times, as the pipeline makes them: a time range bounds the ids
    // too (see `rules::id_bounds`).
    let id = |at: i64| DeliveryId::generate_at(at).into_string();
    let (d1, d2, d3) = (id(1_000), id(2_000), id(3_000));
    let rows = [
        Row {
            order: Some("O-1"),
            ..Row::new(&d1, Status::Delivered)
        },
        Row {
            created_at: 2_000,
            inquiry: "i2",
            ..Row::new(&d2, Status::Failed)
        },
        Row {
            created_at: 3_000,
            ..Row::new(&d3, Status::Pending)
        },
    ];
    for row in &rows {
        write(&store, &p, row).await;
    }
    write(&store, &other, &Row::new("dlv_9", Status::Delivered)).await;

    let all = walk(&store, &p, &Default::default(), 100).await;
    assert_eq!(all, [d3.as_str(), d2.as_str(), d1.as_str()]);
    let by = |f: fn(&mut crate::store::DeliveryFilter)| {
        let mut filter = crate::store::DeliveryFilter::default();
        f(&mut filter);
        filter
    };
    assert_eq!(
        walk(&store, &p, &by(|f| f.status = Some(Status::Failed)), 1).await,
        [d2.as_str()]
    );
    assert_eq!(
        walk(&store, &p, &by(|f| f.order_id = Some("O-1".into())), 1).await,
        [d1.as_str()]
    );
    assert_eq!(
        walk(&store, &p, &by(|f| f.inquiry_id = Some("i2".into())), 1).await,
        [d2.as_str()]
    );
    assert_eq!(
        walk(&store, &p, &by(|f| (f.since, f.until) = (Some(2_000), Some(3_000))), 1).await,
        [d2.as_str()]
    );
    assert_eq!(walk(&store, &p, &by(|f| f.since = Some(2_001)), 1).await, [d3.as_str()]);

    assert!(store.delivery(&p, "dlv_9").await.expect("read").is_none());
    assert!(store.retry(&p, "dlv_9", 5).await.expect("retry").is_none());
    let replayed = store
        .replay(&p, &Default::default(), None, 100, 5)
        .await
        .expect("replayed");
    assert_eq!(replayed.len(), 2, "dlv_1 and dlv_2: {replayed:?}");
    let (untouched, _) = store.delivery(&other, "dlv_9").await.expect("read").expect("kept");
    assert_eq!(untouched.status, Status::Delivered);
}

/// A retry follows [`rules::may_retry`] row by row, and a replay takes only the done
/// deliveries, once, holding them while the endpoint may not send.
#[tokio::test]
async fn retries_and_replays_follow_the_rules() {
    let Some((store, _)) = open().await else { return };
    let p = partner(&store, json!({})).await;
    let now = 10_000;
    let cases = [
        Row::new("dlv_delivered", Status::Delivered),
        Row::new("dlv_failed", Status::Failed),
        Row::new("dlv_pending", Status::Pending),
        Row {
            leased_until: Some(now + 1),
            ..Row::new("dlv_leased", Status::Pending)
        },
        Row {
            leased_until: Some(now),
            ..Row::new("dlv_lapsed", Status::Pending)
        },
        Row::new("dlv_blocked", Status::Blocked),
        Row::new("dlv_held", Status::Held),
    ];
    for row in &cases {
        write(&store, &p, row).await;
    }
    for row in &cases {
        let retried = store.retry(&p, &row.id, now).await.expect("retry");
        let allowed = rules::may_retry(row.status, row.leased_until, now);
        assert_eq!(retried.is_some(), allowed, "{row:?}");
        if let Some(delivery) = retried {
            assert_eq!((delivery.status, delivery.next_at), (Status::Pending, now), "{row:?}");
        }
    }
    // Everything retried is on its way again: nothing is done, nothing replays.
    assert!(
        store
            .replay(&p, &Default::default(), None, 10, now)
            .await
            .expect("replay")
            .is_empty()
    );

    let q = partner(&store, json!({})).await;
    for id in ["dlv_q1", "dlv_q2", "dlv_q3"] {
        write(&store, &q, &Row::new(id, Status::Delivered)).await;
    }
    assert_eq!(
        store.disable_endpoint(&q, "maintenance", now).await.expect("disabled"),
        Some(0)
    );
    let first = store
        .replay(&q, &Default::default(), None, 2, now)
        .await
        .expect("replay");
    assert_eq!(first.len(), 2);
    let rest = store
        .replay(&q, &Default::default(), Some("dlv_q2"), 2, now)
        .await
        .expect("replay");
    assert_eq!(rest, [DeliveryId::from("dlv_q3")]);
    assert!(
        store
            .replay(&q, &Default::default(), None, 10, now)
            .await
            .expect("replay")
            .is_empty(),
        "once"
    );
    let held = crate::store::DeliveryFilter {
        status: Some(Status::Held),
        ..Default::default()
    };
    assert_eq!(
        walk(&store, &q, &held, 10).await.len(),
        3,
        "held while the endpoint is disabled"
    );
    assert_eq!(store.enable(&q, now + 1).await.expect("enabled"), 3);
    let (released, _) = store.delivery(&q, "dlv_q1").await.expect("read").expect("kept");
    assert_eq!((released.status, released.next_at), (Status::Pending, now + 1));
}

/// An attempt's stored JSON and flags read back as written, oldest attempt first.
#[tokio::test]
async fn a_deliverys_attempts_read_back_as_written() {
    let Some((store, _)) = open().await else { return };
    let p = partner(&store, json!({})).await;
    write(&store, &p, &Row::new("dlv_1", Status::Delivered)).await;
    for (id, number, superseded) in [("att_2", 2, 0_i64), ("att_1", 1, 1)] {
        sqlx::query(
            "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request, response_status,
                 response_headers, response_body, verdict, error, plugins, superseded)
             VALUES ($1, 'dlv_1', $2, 7, 3, '{\"method\":\"POST\"}', 200, '[[\"a\",\"b\"]]', 'ok', 'success',
                 NULL, '{\"fuel\":1}', $3)",
        )
        .bind(id)
        .bind(number)
        .bind(superseded)
        .execute(&store.pool)
        .await
        .expect("an attempt");
    }
    let (_, attempts) = store.delivery(&p, "dlv_1").await.expect("read").expect("exists");
    let read: Vec<(&str, bool)> = attempts.iter().map(|a| (a.id.as_str(), a.superseded)).collect();
    assert_eq!(read, [("att_1", true), ("att_2", false)]);
    assert_eq!(attempts[0].request.get(), r#"{"method":"POST"}"#);
    assert_eq!(
        attempts[0].response_headers.as_ref().map(|h| h.get()),
        Some(r#"[["a","b"]]"#)
    );
    assert_eq!(attempts[0].plugins, Some(json!({"fuel": 1})));
}

/// Disabling and enabling the endpoint or the partner holds the pending deliveries and releases
/// the held ones, and a partner's deletion takes all of its rows and no other's.
#[tokio::test]
async fn holding_releasing_and_deleting_a_partner() {
    let Some((store, _)) = open().await else { return };
    let (p, other) = (partner(&store, json!({})).await, partner(&store, json!({})).await);
    write(&store, &p, &Row::new("dlv_p1", Status::Pending)).await;
    write(&store, &p, &Row::new("dlv_p2", Status::Blocked)).await;
    write(&store, &other, &Row::new("dlv_o1", Status::Pending)).await;
    assert_eq!(
        store.set_partner_disabled(&p, true, 5).await.expect("disabled"),
        Some(1),
        "not the blocked one"
    );
    let first_disabled = store.partner(&p).await.expect("read").expect("exists").disabled_at;
    assert_eq!(
        store.set_partner_disabled(&p, true, 6).await.expect("disabled"),
        Some(0)
    );
    assert_eq!(
        store.partner(&p).await.expect("read").expect("exists").disabled_at,
        first_disabled
    );
    assert_eq!(
        store.enable(&p, 7).await.expect("enabled"),
        0,
        "the partner is still disabled"
    );
    assert_eq!(
        store.set_partner_disabled(&p, false, 8).await.expect("enabled"),
        Some(1)
    );
    let (other_row, _) = store.delivery(&other, "dlv_o1").await.expect("read").expect("kept");
    assert_eq!(other_row.status, Status::Pending, "another partner's are left be");

    let key = Store::Postgres(store.clone())
        .create_key(KeyKind::Partner, Some(p.as_str()), None, 9)
        .await
        .expect("a key");
    let plugin = store
        .create_plugin(&p, "x", "00", &["transform"], b"\0asm", 9, PluginQuota::default())
        .await
        .expect("stored")
        .expect("within the quota");
    sqlx::query(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request, verdict)
         VALUES ('att_p1', 'dlv_p1', 1, 9, 1, 'null', 'retry')",
    )
    .execute(&store.pool)
    .await
    .expect("an attempt");
    let deleted = store.delete_partner(&p).await.expect("deleted").expect("it existed");
    assert_eq!(deleted.deliveries, 2);
    assert_eq!(deleted.keys, [key.key.id]);
    assert_eq!(deleted.plugins, [plugin.id]);
    for table in [
        "attempts",
        "deliveries",
        "events",
        "settings",
        "api_keys",
        "plugins",
        "partners",
    ] {
        let left: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&store.pool)
            .await
            .expect("counted");
        let others = match table {
            "attempts" | "api_keys" | "plugins" => 0,
            _ => 1,
        };
        assert_eq!(left, others, "{table} keeps only the other partner's rows");
    }
    assert!(store.delete_partner(&p).await.expect("deleted").is_none());
}

/// Uploads racing from two processes (two pools on one database) keep within the quota; a
/// plugin named by settings is not deleted, and its binary reads back whole.
#[tokio::test]
async fn plugins_keep_the_quota_across_processes() {
    let Some((store, url)) = open().await else { return };
    let second = PgStore::open(&url, Durability::Process)
        .await
        .expect("a second process's store");
    let p = partner(&store, json!({})).await;
    let quota = PluginQuota {
        plugins: 3,
        bytes: 1 << 20,
    };
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (store, p) = (if i % 2 == 0 { store.clone() } else { second.clone() }, p.clone());
        racing.spawn(async move {
            store
                .create_plugin(&p, "x", "00", &["transform", "classify"], &[1, 2, 3], 1, quota)
                .await
                .expect("no error")
        });
    }
    let stored: Vec<_> = racing.join_all().await.into_iter().filter_map(Result::ok).collect();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0].exports, ["transform", "classify"]);
    let usage = store.plugin_usage(&p).await.expect("usage");
    assert_eq!((usage.plugins, usage.bytes), (3, 9));
    assert_eq!(
        store.plugin_wasm(&stored[0].id).await.expect("read"),
        Some(vec![1, 2, 3])
    );

    let named = stored[0].id.as_str();
    store
        .put_settings(&p, &json!({"transform_plugin": named}).to_string(), 2)
        .await
        .expect("saved");
    assert_eq!(store.delete_plugin(&p, named).await.expect("deleted"), Err(()));
    assert_eq!(store.delete_plugin(&p, &stored[1].id).await.expect("deleted"), Ok(true));
    assert_eq!(
        store.delete_plugin(&p, &stored[1].id).await.expect("deleted"),
        Ok(false)
    );
    let unknown = store
        .create_plugin("ptn_nope", "x", "00", &["transform"], &[1], 1, quota)
        .await;
    assert!(matches!(unknown, Err(StoreError::Backend { .. })), "{unknown:?}");
    second.close().await;
}

/// A process of an earlier version opens a database a newer one migrated further (a rolling
/// upgrade): migrations it does not know are left as they are, and its own are all applied.
#[tokio::test]
async fn an_earlier_build_opens_a_database_migrated_further() {
    let Some((store, url)) = open().await else { return };
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from a later version', true, '\\x00'::bytea, 0)",
    )
    .execute(&store.pool)
    .await
    .expect("a later migration recorded");
    store.close().await;
    let again = PgStore::open(&url, Durability::Process).await.expect("the store opens");
    again.ready().await.expect("every migration of this build is applied");
}
