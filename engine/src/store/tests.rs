//! The store's tests, written against [`Store`] alone and run once per backend: adding a
//! backend means adding a [`Backend`] and its arm in [`open`], and a line in `suite!`.
//! Tests of one backend's own machinery live next to that backend.

use serde_json::json;

use super::{
    Attempt, AttemptVerdict, CanarySpec, CanaryState, Claimed, Durability, Next, Outcome, Pace, PluginQuota,
    PluginSlot, Status, Store, now_ms,
};
use crate::event::Event;
use crate::id::{AttemptId, DeliveryId, PartnerId};
use crate::settings::NotificationSettings;

/// A backend the suite runs on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Backend {
    /// A database file in a temporary directory.
    Sqlite,
    /// A schema of its own in the PostgreSQL database at [`POSTGRES_URL`].
    Postgres,
}

/// The environment variable with the URL of a PostgreSQL database the tests may create schemas
/// in (`.ci/run` sets it, to a database of its own).
pub(crate) const POSTGRES_URL: &str = "POSTWIRE_TEST_POSTGRES";

/// The PostgreSQL database's URL for the tests, or `None` after saying the test is skipped.
/// Under CI (`CI` set) a missing URL fails the test instead: the suite must run on both
/// backends there.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{POSTGRES_URL} is not set: under CI the PostgreSQL tests must run (.ci/run sets it)")
        }
        _ => {
            eprintln!("skipped on PostgreSQL: set {POSTGRES_URL} to a database URL to run it");
            None
        }
    }
}

/// A fresh, empty schema in the tests' PostgreSQL database, and the URL that opens the store
/// on it (its `search_path`).
pub(crate) async fn postgres_schema(url: &str) -> String {
    use sqlx::Connection;
    let schema = format!("pw_test_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("the PostgreSQL server at {url} answers ({e})"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("a schema");
    let _ = admin.close().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// A fresh, empty store on `backend`, with what keeps it alive (its temporary directory).
pub(super) async fn open(backend: Backend) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("batch.db").display()),
        Backend::Postgres => postgres_schema(&postgres_url().expect("checked by the suite")).await,
    };
    let store = Store::open(&url, Durability::Process).await.expect("the store opens");
    (dir, store)
}

/// A new partner with settings, all events, no delay.
pub(super) async fn partner(store: &Store) -> PartnerId {
    partner_with(store, json!({})).await
}

/// A new partner whose settings add `more` to the defaults of [`partner`].
pub(super) async fn partner_with(store: &Store, more: serde_json::Value) -> PartnerId {
    let partner = store.create_partner("batch", str::to_owned).await.expect("a partner");
    let mut settings = json!({
        "url": "https://partner.example/hook",
        "body_template": "{\"id\":\"{EventId}\"}",
    });
    for (key, value) in more.as_object().expect("an object") {
        settings[key] = value.clone();
    }
    let settings = NotificationSettings::validate(&settings).expect("valid settings");
    let body = serde_json::to_string(settings.settings()).expect("settings serialize");
    store.put_settings(&partner.id, &body, now_ms()).await.expect("saved");
    partner.id
}

/// An event of `partner`; `kind` is `created` or `resolved`.
pub(super) fn event(partner: &str, id: &str, kind: &str, inquiry: &str) -> Event {
    let mut data = json!({"ActionInquiryId": inquiry});
    if kind == "resolved" {
        data["ResolutionStatus"] = json!("VALID");
    }
    Event::from_value(
        &json!({"id": id, "type": format!("action_inquiry.{kind}"), "partner_id": partner,
        "occurred_at": "2026-11-20T14:03:00Z", "data": data}),
    )
    .expect("a valid event")
}

/// Events of `partner` from (id, kind, inquiry) rows.
pub(super) fn events(partner: &str, rows: &[(&str, &str, &str)]) -> Vec<Event> {
    rows.iter()
        .map(|(id, kind, inquiry)| event(partner, id, kind, inquiry))
        .collect()
}

/// An attempt at `delivery_id` that answered 200, with `error` if given.
pub(super) fn attempt(delivery_id: &DeliveryId, error: Option<&str>) -> Attempt {
    Attempt {
        id: AttemptId::generate(),
        delivery_id: delivery_id.clone(),
        number: 1,
        started_at: now_ms(),
        duration_ms: 3,
        request: serde_json::value::to_raw_value(&json!({"method": "POST"})).expect("json"),
        response_status: Some(200),
        response_headers: Some(
            serde_json::value::to_raw_value(&json!([["content-type", "text/plain"]])).expect("json"),
        ),
        response_body: Some("ok".into()),
        verdict: AttemptVerdict::Success,
        error: error.map(str::to_owned),
        plugins: None,
        superseded: false,
    }
}

/// The lease number under which `claimed` holds `id`.
pub(super) fn lease_of(claimed: &[Claimed], id: &DeliveryId) -> i64 {
    claimed
        .iter()
        .find(|c| &c.delivery_id == id)
        .expect("claimed")
        .lease_seq
}

/// A successful first attempt for each claimed delivery.
pub(super) fn delivered(claimed: &[Claimed]) -> Vec<Outcome> {
    claimed
        .iter()
        .map(|c| Outcome {
            attempt: attempt(&c.delivery_id, None),
            next: Next::Delivered,
            lease_seq: c.lease_seq,
        })
        .collect()
}

/// A partner's deliveries, as the API lists them.
async fn listed(store: &Store, partner: &str, status: Option<Status>) -> Vec<super::Delivery> {
    store
        .deliveries(partner, status, None, 1_000)
        .await
        .expect("deliveries")
}

/// The attempts recorded for a partner's deliveries.
async fn attempts(store: &Store, partner: &str) -> usize {
    let mut count = 0;
    for delivery in listed(store, partner, None).await {
        let (_, attempts) = store
            .delivery(partner, &delivery.id)
            .await
            .expect("a delivery")
            .expect("it exists");
        count += attempts.len();
    }
    count
}

/// Runs each test of the suite on every backend.
macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    if super::postgres_url().is_some() {
                        super::$test(super::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

suite!(
    an_event_sent_again_answers_with_its_deliveries,
    a_failed_recording_is_rolled_back,
    a_manual_retry_waits_for_what_is_under_way,
    a_disabled_endpoint_holds_its_deliveries_until_enabled,
    a_delivery_waits_for_its_delay,
    due_deliveries_are_counted_until_claimed,
    claims_take_turns_between_partners,
    a_claim_leaves_out_the_partners_it_skips,
    a_resolved_postback_waits_for_the_created_one,
    keys_authenticate_by_token_until_revoked,
    the_database_file_holds_no_token,
    a_disabled_partner_holds_its_postbacks_until_enabled,
    deleting_a_partner_removes_all_its_data_and_nothing_else,
    deleted_settings_hold_pending_deliveries_until_saved_again,
    deliveries_filter_by_every_field_and_page_under_filters,
    a_replay_queues_done_deliveries_once_in_bounded_steps,
    retention_removes_only_what_is_done_and_older_than_the_cutoff,
    a_delivery_claimed_again_keeps_the_newer_outcome_in_either_order,
    a_partners_plugins_stay_within_its_quota_even_racing,
    plugin_versions_count_per_name_and_a_canary_is_judged_per_window,
    delivery_rates_count_each_partners_attempts_by_outcome_and_minute,
);

/// An event of `partner` with an `OrderId` when `order` is given.
fn ordered(partner: &str, id: &str, kind: &str, inquiry: &str, order: Option<&str>) -> Event {
    let mut data = json!({"ActionInquiryId": inquiry});
    if kind == "resolved" {
        data["ResolutionStatus"] = json!("VALID");
    }
    if let Some(order) = order {
        data["OrderId"] = json!(order);
    }
    Event::from_value(
        &json!({"id": id, "type": format!("action_inquiry.{kind}"), "partner_id": partner,
        "occurred_at": "2026-11-20T14:03:00Z", "data": data}),
    )
    .expect("a valid event")
}

/// Partners list newest first, page by page; a disabled partner's pending postbacks are held,
/// and so are those of events accepted while it is disabled, even when its settings are saved;
/// enabling it releases them all.
async fn a_disabled_partner_holds_its_postbacks_until_enabled(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let (a, b) = (partner(&store).await, partner(&store).await);
    // Partners made in the same millisecond have no order among them; each is listed once.
    let first = store.partners(None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let rest = store.partners(Some(&first[0].id), 10).await.unwrap();
    let mut walked: Vec<_> = first.iter().chain(&rest).map(|p| p.id.clone()).collect();
    walked.sort();
    let mut made = vec![a.clone(), b.clone()];
    made.sort();
    assert_eq!(walked, made);

    store
        .accept(&events(&a, &[("e1", "created", "i1")]), now_ms())
        .await
        .unwrap();
    assert_eq!(store.disable_partner(&a, now_ms()).await.unwrap(), Some(1));
    assert!(store.partner(&a).await.unwrap().unwrap().disabled_at.is_some());
    store
        .accept(&events(&a, &[("e2", "created", "i2")]), now_ms())
        .await
        .unwrap();
    let body = store.settings(&a).await.unwrap().unwrap().body;
    store.put_settings(&a, &body, now_ms()).await.unwrap();
    assert_eq!(listed(&store, &a, Some(Status::Held)).await.len(), 2);
    assert!(store.claim(now_ms(), 60_000, 10).await.unwrap().is_empty());
    assert_eq!(store.enable_partner(&a, now_ms()).await.unwrap(), Some(2));
    assert!(store.partner(&a).await.unwrap().unwrap().disabled_at.is_none());
    assert_eq!(store.claim(now_ms(), 60_000, 10).await.unwrap().len(), 2);
    assert_eq!(store.disable_partner("ptn_nope", now_ms()).await.unwrap(), None);
    assert_eq!(store.enable_partner("ptn_nope", now_ms()).await.unwrap(), None);
}

/// Deleting a partner removes its events, deliveries, attempts, settings, keys and plugins in
/// one go, and nothing of another partner's.
async fn deleting_a_partner_removes_all_its_data_and_nothing_else(backend: Backend) {
    use super::KeyKind;
    let (_dir, store) = open(backend).await;
    let (a, b) = (partner(&store).await, partner(&store).await);
    let now = now_ms();
    store
        .accept(&events(&a, &[("e1", "created", "i1")]), now)
        .await
        .unwrap();
    store
        .accept(&events(&b, &[("e1", "created", "i1")]), now)
        .await
        .unwrap();
    let claimed = store.claim(now_ms(), 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store.record(delivered(&claimed).into(), now_ms()).await.unwrap();
    store
        .accept(&events(&a, &[("e2", "created", "i2")]), now)
        .await
        .unwrap();
    store
        .accept(&events(&b, &[("e2", "created", "i2")]), now)
        .await
        .unwrap();
    let on_the_wire = store.claim(now_ms(), 60_000, 10).await.unwrap();
    assert_eq!(on_the_wire.len(), 2);
    let key = store.create_key(KeyKind::Partner, Some(&a), None, now).await.unwrap();
    let plugin = store
        .create_plugin(&a, "p", "00", &["transform"], b"\0asm", now, PluginQuota::default())
        .await
        .unwrap()
        .expect("within the quota");

    let deleted = store.delete_partner(&a).await.unwrap().expect("it existed");
    assert_eq!(deleted.deliveries, 2);
    assert_eq!(deleted.keys, std::slice::from_ref(&key.key.id));
    assert_eq!(deleted.plugins, std::slice::from_ref(&plugin.id));
    assert!(store.partner(&a).await.unwrap().is_none());
    assert!(store.settings(&a).await.unwrap().is_none());
    assert!(listed(&store, &a, None).await.is_empty());
    assert!(store.authenticate(&key.token).await.unwrap().is_none());
    assert!(store.plugins(&a).await.unwrap().is_empty());
    assert!(store.plugin_wasm(&plugin.id).await.unwrap().is_none());
    assert!(store.delete_partner(&a).await.unwrap().is_none());

    let of_b: Vec<Claimed> = on_the_wire.into_iter().filter(|c| c.partner_id == b).collect();
    store.record(delivered(&of_b).into(), now_ms()).await.unwrap();
    assert_eq!(listed(&store, &b, Some(Status::Delivered)).await.len(), 2);
    assert_eq!(attempts(&store, &b).await, 2);
    // The same event ids are new for a partner made afresh.
    let c = partner(&store).await;
    let again = store
        .accept(&events(&c, &[("e1", "created", "i1")]), now)
        .await
        .unwrap();
    assert!(!again[0].duplicate);
}

/// Deleting settings holds the pending deliveries instead of failing them; events accepted
/// meanwhile make none; the endpoint can be neither disabled nor released without settings;
/// saving settings again releases what was held. A disabled endpoint keeps its reason.
async fn deleted_settings_hold_pending_deliveries_until_saved_again(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let p = partner(&store).await;
    store
        .accept(&events(&p, &[("e1", "created", "i1")]), now_ms())
        .await
        .unwrap();
    let body = store.settings(&p).await.unwrap().unwrap().body;
    assert_eq!(store.delete_settings(&p, now_ms()).await.unwrap(), Some(1));
    assert!(store.settings(&p).await.unwrap().is_none());
    assert_eq!(store.delete_settings(&p, now_ms()).await.unwrap(), None);
    assert_eq!(listed(&store, &p, Some(Status::Held)).await.len(), 1);
    let accepted = store
        .accept(&events(&p, &[("e2", "created", "i2")]), now_ms())
        .await
        .unwrap();
    assert!(accepted[0].delivery_ids.is_empty());
    assert_eq!(store.disable_endpoint(&p, "why", now_ms()).await.unwrap(), None);
    assert_eq!(store.enable(&p, now_ms()).await.unwrap(), 0, "nothing to send with");
    assert!(store.claim(now_ms(), 60_000, 10).await.unwrap().is_empty());
    store.put_settings(&p, &body, now_ms()).await.unwrap();
    assert_eq!(listed(&store, &p, Some(Status::Pending)).await.len(), 1);

    assert_eq!(
        store.disable_endpoint(&p, "maintenance", now_ms()).await.unwrap(),
        Some(1)
    );
    let settings = store.settings(&p).await.unwrap().unwrap();
    assert_eq!(settings.disabled_reason.as_deref(), Some("maintenance"));
    assert_eq!(listed(&store, &p, Some(Status::Held)).await.len(), 1);
    assert_eq!(store.enable(&p, now_ms()).await.unwrap(), 1);
}

/// Every filter of the listing narrows it, alone and together, and a cursor walks a filtered
/// listing without repeating or skipping a delivery.
async fn deliveries_filter_by_every_field_and_page_under_filters(backend: Backend) {
    use super::DeliveryFilter;
    let (_dir, store) = open(backend).await;
    let (p, other) = (partner(&store).await, partner(&store).await);
    let t0 = now_ms();
    let first = [
        ordered(&p, "c1", "created", "i1", Some("O-1")),
        ordered(&p, "r1", "resolved", "i1", Some("O-1")),
        ordered(&p, "c2", "created", "i2", Some("O-2")),
        ordered(&p, "c3", "created", "i3", None),
    ];
    store.accept(&first, t0).await.unwrap();
    let t1 = t0 + 10;
    let second = [
        ordered(&p, "c4", "created", "i4", Some("O-1")),
        ordered(&p, "c5", "created", "i5", None),
        ordered(&other, "c1", "created", "i1", Some("O-1")),
    ];
    store.accept(&second, t1).await.unwrap();
    // Events' ids, sorted: deliveries made in the same millisecond have no order among them.
    let count = async |filter: DeliveryFilter| {
        let mut ids = store
            .deliveries_where(&p, &filter, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.event_id.into_string())
            .collect::<Vec<_>>();
        ids.sort();
        ids
    };
    let all = count(DeliveryFilter::default()).await;
    assert_eq!(all, ["c1", "c2", "c3", "c4", "c5", "r1"], "only p's");
    let newest: Vec<String> = store
        .deliveries(&p, None, None, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.event_id.into_string())
        .collect();
    assert_eq!(newest.iter().collect::<std::collections::BTreeSet<_>>().len(), 2);
    assert!(
        newest.iter().all(|e| ["c4", "c5"].contains(&e.as_str())),
        "newest first: {newest:?}"
    );
    let by = |f: fn(&mut DeliveryFilter)| {
        let mut filter = DeliveryFilter::default();
        f(&mut filter);
        filter
    };
    assert_eq!(count(by(|f| f.inquiry_id = Some("i1".into()))).await, ["c1", "r1"]);
    assert_eq!(count(by(|f| f.order_id = Some("O-1".into()))).await, ["c1", "c4", "r1"]);
    assert_eq!(
        count(by(|f| f.event_type = Some("action_inquiry.resolved".into()))).await,
        ["r1"]
    );
    assert_eq!(count(by(|f| f.status = Some(Status::Blocked))).await, ["r1"]);
    let since = DeliveryFilter {
        since: Some(t1),
        ..DeliveryFilter::default()
    };
    assert_eq!(count(since).await, ["c4", "c5"]);
    let until = DeliveryFilter {
        until: Some(t1),
        order_id: Some("O-1".into()),
        ..DeliveryFilter::default()
    };
    assert_eq!(count(until).await, ["c1", "r1"]);
    let later = DeliveryFilter {
        since: Some(t1 + 1),
        ..DeliveryFilter::default()
    };
    assert!(count(later).await.is_empty());
    let listing = store.deliveries(&p, None, None, 100).await.unwrap();
    let order_of = |event: &str| listing.iter().find(|d| d.event_id == event).unwrap().order_id.clone();
    assert_eq!((order_of("c4"), order_of("c5")), (Some("O-1".into()), None));

    let created = by(|f| f.event_type = Some("action_inquiry.created".into()));
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .deliveries_where(&p, &created, cursor.as_deref(), 2)
            .await
            .unwrap();
        walked.extend(page.iter().map(|d| d.event_id.clone().into_string()));
        if page.len() < 2 {
            break;
        }
        cursor = page.last().map(|d| d.id.clone().into_string());
    }
    walked.sort();
    assert_eq!(walked, ["c1", "c2", "c3", "c4", "c5"], "each once");
}

/// A replay makes done deliveries due again, with their own ids, in steps of at most the limit
/// with a cursor; deliveries on their way are left be, so none is queued twice.
async fn a_replay_queues_done_deliveries_once_in_bounded_steps(backend: Backend) {
    use super::DeliveryFilter;
    let (_dir, store) = open(backend).await;
    let p = partner(&store).await;
    let rows: Vec<(String, String)> = (0..5).map(|i| (format!("e{i}"), format!("i{i}"))).collect();
    let batch: Vec<Event> = rows.iter().map(|(id, inq)| event(&p, id, "created", inq)).collect();
    store.accept(&batch, now_ms()).await.unwrap();
    let claimed = store.claim(now_ms(), 60_000, 3).await.unwrap();
    let mut outcomes = delivered(&claimed[..2]);
    outcomes.push(Outcome {
        attempt: attempt(&claimed[2].delivery_id, Some("no")),
        next: Next::Failed,
        lease_seq: claimed[2].lease_seq,
    });
    store.record(outcomes.into(), now_ms()).await.unwrap();
    let done = DeliveryFilter::default();
    let first = store.replay(&p, &done, None, 2, now_ms()).await.unwrap();
    assert_eq!(first.len(), 2);
    let cursor = first.iter().max().unwrap().clone();
    let rest = store.replay(&p, &done, Some(&cursor), 2, now_ms()).await.unwrap();
    assert_eq!(rest.len(), 1);
    let failed_only = DeliveryFilter {
        status: Some(Status::Failed),
        ..DeliveryFilter::default()
    };
    assert!(
        store
            .replay(&p, &failed_only, None, 10, now_ms())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store.replay(&p, &done, None, 10, now_ms()).await.unwrap().is_empty(),
        "all on their way"
    );
    let mut replayed: Vec<_> = first.into_iter().chain(rest).collect();
    replayed.sort();
    let mut was: Vec<_> = claimed.iter().map(|c| c.delivery_id.clone()).collect();
    was.sort();
    assert_eq!(replayed, was, "the same deliveries, the same ids");
    assert_eq!(listed(&store, &p, Some(Status::Pending)).await.len(), 5);
    assert_eq!(store.claim(now_ms(), 60_000, 10).await.unwrap().len(), 5);
}

/// A key authenticates with its token and nothing else, until it is revoked; listings scope by
/// kind and partner, and the last use is recorded.
async fn keys_authenticate_by_token_until_revoked(backend: Backend) {
    use super::KeyKind;
    let (_dir, store) = open(backend).await;
    let (a, b) = (partner(&store).await, partner(&store).await);
    let now = now_ms();
    let key_a = store.create_key(KeyKind::Partner, Some(&a), None, now).await.unwrap();
    let key_b = store.create_key(KeyKind::Partner, Some(&b), None, now).await.unwrap();
    let ingest = store
        .create_key(KeyKind::Ingest, None, Some(vec![a.clone()]), now)
        .await
        .unwrap();
    assert!(key_a.token.starts_with("pw_live_"));
    let found = store
        .authenticate(&key_a.token)
        .await
        .unwrap()
        .expect("the key authenticates");
    assert_eq!(
        (found.id.clone(), found.kind, found.partner_id),
        (key_a.key.id.clone(), KeyKind::Partner, Some(a.clone()))
    );
    let found = store.authenticate(&ingest.token).await.unwrap().unwrap();
    assert_eq!(found.partners, Some(vec![a.clone()]));
    assert!(store.authenticate("pw_live_nope").await.unwrap().is_none());
    assert!(
        store
            .authenticate(&key_a.token[..key_a.token.len() - 1])
            .await
            .unwrap()
            .is_none()
    );

    let listed = store.keys(KeyKind::Partner, Some(&a)).await.unwrap();
    assert_eq!(listed.iter().map(|k| &k.id).collect::<Vec<_>>(), vec![&key_a.key.id]);
    assert_eq!(store.keys(KeyKind::Ingest, None).await.unwrap().len(), 1);

    store.key_used(&key_a.key.id, now + 5).await.unwrap();
    store.key_used(&key_a.key.id, now + 1).await.unwrap();
    let listed = store.keys(KeyKind::Partner, Some(&a)).await.unwrap();
    assert_eq!(
        listed[0].last_used_at,
        Some(now + 5),
        "a late write never moves the last use back"
    );

    assert!(
        !store
            .revoke_key(KeyKind::Partner, Some(&b), &key_a.key.id, now)
            .await
            .unwrap(),
        "another partner's key"
    );
    assert!(
        !store
            .revoke_key(KeyKind::Ingest, None, &key_a.key.id, now)
            .await
            .unwrap(),
        "another kind"
    );
    assert!(
        store
            .revoke_key(KeyKind::Partner, Some(&a), &key_a.key.id, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_key(KeyKind::Partner, Some(&a), &key_a.key.id, now)
            .await
            .unwrap(),
        "already revoked"
    );
    assert!(
        store.authenticate(&key_a.token).await.unwrap().is_none(),
        "a revoked key never authenticates"
    );
    assert!(store.authenticate(&key_b.token).await.unwrap().is_some());
    let listed = store.keys(KeyKind::Partner, Some(&a)).await.unwrap();
    assert_eq!(listed[0].revoked_at, Some(now));
}

/// Only hashes of tokens are stored: the database file's bytes hold no token.
async fn the_database_file_holds_no_token(backend: Backend) {
    use super::KeyKind;
    let (dir, store) = open(backend).await;
    let a = partner(&store).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(
            store
                .create_key(KeyKind::Partner, Some(&a), None, now_ms())
                .await
                .unwrap()
                .token,
        );
        tokens.push(
            store
                .create_key(KeyKind::Ingest, None, None, now_ms())
                .await
                .unwrap()
                .token,
        );
    }
    store.close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for token in &tokens {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{token} is stored"
        );
        let random = &token.as_bytes()[8 + super::rules::SHOWN_CHARS..];
        assert!(
            !bytes.windows(random.len()).any(|w| w == random),
            "part of {token} is stored"
        );
    }
}

/// An event sent again answers with the deliveries it had, whatever data it is sent with
/// this time, and gets no new one.
async fn an_event_sent_again_answers_with_its_deliveries(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let partner = partner(&store).await;
    let first = store
        .accept(
            &events(&partner, &[("c1", "created", "i1"), ("c2", "created", "i2")]),
            now_ms(),
        )
        .await
        .expect("accepted");
    // Again, once as it was, once naming another inquiry (and one with deliveries of its
    // own), and once as a resolved event of a third.
    for again in [
        ("c1", "created", "i1"),
        ("c1", "created", "i2"),
        ("c1", "resolved", "i9"),
    ] {
        let answer = store
            .accept(&events(&partner, &[again]), now_ms())
            .await
            .expect("accepted");
        assert_eq!(answer.len(), 1);
        assert!(answer[0].duplicate, "{again:?}");
        assert_eq!(answer[0].delivery_ids, first[0].delivery_ids, "{again:?}");
    }
    assert_eq!(first[0].delivery_ids.len(), 1);
    assert_eq!(listed(&store, &partner, None).await.len(), 2);
}

/// A recording that fails halfway keeps nothing of what it did, and the next one is
/// recorded.
async fn a_failed_recording_is_rolled_back(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let partner = partner(&store).await;
    store
        .accept(&events(&partner, &[("c1", "created", "i1")]), now_ms())
        .await
        .expect("accepted");
    let claimed = store.claim(now_ms(), 60_000, 10).await.expect("claimed");
    let real = Outcome {
        attempt: attempt(&claimed[0].delivery_id, None),
        next: Next::Delivered,
        lease_seq: claimed[0].lease_seq,
    };
    // No such delivery: its attempt breaks the foreign key, after the first was written.
    let ghost = Outcome {
        attempt: attempt(&"dlv_ghost".into(), None),
        next: Next::Delivered,
        lease_seq: 1,
    };
    let failed = store.record(vec![real.clone(), ghost].into(), now_ms()).await;
    assert!(failed.is_err(), "{failed:?}");
    let delivered = || async { listed(&store, &partner, Some(Status::Delivered)).await.len() };
    assert_eq!(attempts(&store, &partner).await, 0);
    assert_eq!(delivered().await, 0);
    store.record(vec![real].into(), now_ms()).await.expect("recorded");
    assert_eq!(attempts(&store, &partner).await, 1);
    assert_eq!(delivered().await, 1);
}

/// A manual retry is refused while a worker sends the delivery or it waits on another, and
/// allowed once it is done or free.
async fn a_manual_retry_waits_for_what_is_under_way(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let partner = partner(&store).await;
    let accepted = store
        .accept(
            &events(&partner, &[("c1", "created", "i1"), ("r1", "resolved", "i1")]),
            now_ms(),
        )
        .await
        .expect("accepted");
    let (c1, r1) = (&accepted[0].delivery_ids[0], &accepted[1].delivery_ids[0]);
    let claimed = store.claim(now_ms(), 60_000, 10).await.expect("claimed");
    assert_eq!(claimed.len(), 1, "r1 waits for c1");
    let retry = |id: &str| {
        let (store, partner, id) = (store.clone(), partner.clone(), id.to_owned());
        async move { store.retry(&partner, &id, now_ms()).await.expect("retried") }
    };
    assert!(retry(c1).await.is_none(), "a worker sends c1");
    assert!(retry(r1).await.is_none(), "r1 is blocked");
    let released = store
        .record(delivered(&claimed).into(), now_ms())
        .await
        .expect("recorded");
    assert_eq!(released, 1);
    let again = retry(c1).await.expect("a delivered postback may be sent again");
    assert_eq!((again.status, again.attempts), (Status::Pending, 1));
    let free = retry(r1).await.expect("released and not claimed");
    assert_eq!((free.status, free.blocked_by), (Status::Pending, None));
}

/// An attempt that disables the endpoint holds its delivery and the pending ones; new ones
/// are held too; enabling the endpoint releases them all, due at once.
async fn a_disabled_endpoint_holds_its_deliveries_until_enabled(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let partner = partner(&store).await;
    store
        .accept(
            &events(&partner, &[("c1", "created", "i1"), ("c2", "created", "i2")]),
            now_ms(),
        )
        .await
        .expect("accepted");
    let claimed = store.claim(now_ms(), 60_000, 1).await.expect("claimed");
    let gone = Outcome {
        attempt: attempt(&claimed[0].delivery_id, Some("410")),
        next: Next::Disable("410".into()),
        lease_seq: claimed[0].lease_seq,
    };
    store.record(vec![gone].into(), now_ms()).await.expect("recorded");
    store
        .accept(&events(&partner, &[("c3", "created", "i3")]), now_ms())
        .await
        .expect("accepted");
    assert_eq!(listed(&store, &partner, Some(Status::Held)).await.len(), 3);
    let settings = store.settings(&partner).await.expect("settings").expect("saved");
    assert_eq!(settings.disabled_reason.as_deref(), Some("410"));
    assert!(store.claim(now_ms(), 60_000, 10).await.expect("claimed").is_empty());
    let now = now_ms();
    assert_eq!(store.enable(&partner, now).await.expect("enabled"), 3);
    let pending = listed(&store, &partner, Some(Status::Pending)).await;
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().all(|d| d.next_at == now));
    assert_eq!(store.claim(now_ms(), 60_000, 10).await.expect("claimed").len(), 3);
}

/// A delivery is due `min_delay_secs` after its event occurred, and not claimed before.
async fn a_delivery_waits_for_its_delay(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let partner = partner_with(&store, json!({"min_delay_secs": 600})).await;
    let occurred = chrono::Utc::now();
    let recent = Event::from_value(&json!({"id": "d1", "type": "action_inquiry.created",
        "partner_id": partner, "occurred_at": occurred.to_rfc3339(),
        "data": {"ActionInquiryId": "i1"}}))
    .expect("a valid event");
    store.accept(&[recent], now_ms()).await.expect("accepted");
    let due = occurred.timestamp_millis() + 600_000;
    assert_eq!(store.next_due().await.expect("next due"), Some(due));
    assert!(store.claim(now_ms(), 60_000, 10).await.expect("claimed").is_empty());
    assert_eq!(store.claim(due, 60_000, 10).await.expect("claimed").len(), 1);
}

/// A claim shares itself between the partners with due deliveries: one partner's older and
/// larger backlog does not keep another's out. Within a partner, the earliest go first; a
/// partner with fewer due leaves its share to the others.
async fn claims_take_turns_between_partners(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let (a, b) = (partner(&store).await, partner(&store).await);
    let later = partner(&store).await;
    let now = now_ms();
    let rows = |prefix: &str, n: usize| -> Vec<(String, &'static str, String)> {
        (0..n)
            .map(|i| (format!("{prefix}{i}"), "created", format!("{prefix}-i{i}")))
            .collect()
    };
    let accept = |partner: PartnerId, rows: Vec<(String, &'static str, String)>, at: i64| {
        let store = store.clone();
        async move {
            let rows: Vec<(&str, &str, &str)> = rows.iter().map(|(e, k, q)| (e.as_str(), *k, q.as_str())).collect();
            let accepted = store.accept(&events(&partner, &rows), at).await.expect("accepted");
            accepted
                .into_iter()
                .map(|a| a.delivery_ids[0].clone())
                .collect::<Vec<DeliveryId>>()
        }
    };
    // a's backlog fell due first, b's after it; `later`'s is not due.
    let a_ids = accept(a.clone(), rows("a", 30), now - 10_000).await;
    let b_ids = accept(b.clone(), rows("b", 3), now - 5_000).await;
    accept(later.clone(), rows("l", 3), now + 60_000).await;
    let claimed = store.claim(now, 60_000, 10).await.expect("claimed");
    let of = |partner: &PartnerId| -> Vec<DeliveryId> {
        claimed
            .iter()
            .filter(|c| &c.partner_id == partner)
            .map(|c| c.delivery_id.clone())
            .collect()
    };
    assert_eq!(of(&b), b_ids, "all of b's, though a's fell due before");
    assert_eq!(of(&a), a_ids[..7], "a's earliest fill the rest, in order");
    assert!(of(&later).is_empty());
    // The rest of a's, and nothing claimed twice.
    let rest = store.claim(now, 60_000, 100).await.expect("claimed");
    let rest: Vec<DeliveryId> = rest.into_iter().map(|c| c.delivery_id).collect();
    assert_eq!(rest, a_ids[7..]);
}

/// A claim that skips partners (those the worker has no room for in memory) leaves their due
/// deliveries in the store and takes the others', which a later claim then finds.
async fn a_claim_leaves_out_the_partners_it_skips(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let (a, b) = (partner(&store).await, partner(&store).await);
    let now = now_ms();
    let rows_a: Vec<(String, String)> = (0..5).map(|i| (format!("a{i}"), format!("a-i{i}"))).collect();
    let rows_a: Vec<(&str, &str, &str)> = rows_a
        .iter()
        .map(|(e, q)| (e.as_str(), "created", q.as_str()))
        .collect();
    store
        .accept(&events(&a, &rows_a), now - 10_000)
        .await
        .expect("accepted");
    store
        .accept(
            &events(&b, &[("b0", "created", "b-i0"), ("b1", "created", "b-i1")]),
            now - 5_000,
        )
        .await
        .expect("accepted");
    let claimed = store
        .claim_except(now, 60_000, 10, std::slice::from_ref(&a))
        .await
        .expect("claimed");
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.partner_id == b), "only b's");
    let rest = store.claim(now, 60_000, 10).await.expect("claimed");
    assert_eq!(rest.len(), 5);
    assert!(rest.iter().all(|c| c.partner_id == a), "a's, left in the store");
}

/// The due deliveries the metrics report: pending ones whose time has come, not the claimed
/// ones, with the earliest due time.
async fn due_deliveries_are_counted_until_claimed(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let partner = partner_with(&store, json!({"min_delay_secs": 600})).await;
    let occurred = chrono::Utc::now();
    let events: Vec<Event> = (0..3)
        .map(|i| {
            Event::from_value(&json!({"id": format!("q{i}"), "type": "action_inquiry.created",
                "partner_id": partner, "occurred_at": occurred.to_rfc3339(),
                "data": {"ActionInquiryId": format!("i{i}")}}))
            .expect("a valid event")
        })
        .collect();
    store.accept(&events, now_ms()).await.expect("accepted");
    let due = occurred.timestamp_millis() + 600_000;
    assert_eq!(store.due(now_ms()).await.expect("due"), (0, None), "none is due yet");
    assert_eq!(store.due(due + 5_000).await.expect("due"), (3, Some(due)));
    assert_eq!(store.claim(due + 5_000, 60_000, 2).await.expect("claimed").len(), 2);
    assert_eq!(
        store.due(due + 5_000).await.expect("due"),
        (1, Some(due)),
        "claimed ones are not due"
    );
}

/// A resolved postback waits for the created one of its inquiry while that is on its way; a
/// created one arriving second goes before an untried resolved one; once the created one is
/// done, the resolved one goes.
async fn a_resolved_postback_waits_for_the_created_one(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let partner = partner(&store).await;
    let rows = [
        ("c1", "created", "i1"),
        ("r1", "resolved", "i1"),
        ("r2", "resolved", "i2"),
        ("c2", "created", "i2"),
        ("c3", "created", "i3"),
    ];
    let accepted = store
        .accept(&events(&partner, &rows), now_ms())
        .await
        .expect("accepted");
    let id = |event: &str| {
        let at = rows.iter().position(|row| row.0 == event).expect("an event");
        accepted[at].delivery_ids[0].clone()
    };
    let state = |deliveries: Vec<super::Delivery>, event: &str| {
        let delivery = deliveries.into_iter().find(|d| d.id == id(event)).expect("a delivery");
        (delivery.status, delivery.blocked_by)
    };
    let now = listed(&store, &partner, None).await;
    assert_eq!(state(now.clone(), "r1"), (Status::Blocked, Some(id("c1"))));
    assert_eq!(state(now.clone(), "r2"), (Status::Blocked, Some(id("c2"))));
    assert_eq!(state(now.clone(), "c2"), (Status::Pending, None));
    assert_eq!(state(now, "c3"), (Status::Pending, None));
    let claimed = store.claim(now_ms(), 60_000, 10).await.expect("claimed");
    assert_eq!(claimed.len(), 3, "the created ones");
    // c3 resolved while its created postback is leased: it waits too.
    store
        .accept(&events(&partner, &[("r3", "resolved", "i3")]), now_ms())
        .await
        .expect("accepted");
    let outcomes = vec![
        Outcome {
            attempt: attempt(&id("c2"), Some("refused")),
            next: Next::Failed,
            lease_seq: lease_of(&claimed, &id("c2")),
        },
        Outcome {
            attempt: attempt(&id("c1"), None),
            next: Next::Delivered,
            lease_seq: lease_of(&claimed, &id("c1")),
        },
    ];
    let released = store.record(outcomes.into(), now_ms()).await.expect("recorded");
    assert_eq!(released, 2, "r1 and r2");
    let now = listed(&store, &partner, None).await;
    assert_eq!(state(now.clone(), "r1"), (Status::Pending, None));
    assert_eq!(state(now.clone(), "r2"), (Status::Pending, None));
    let r3 = now.iter().find(|d| d.event_id == "r3").expect("r3");
    assert_eq!((r3.status, r3.blocked_by.clone()), (Status::Blocked, Some(id("c3"))));
}

/// A URL of no backend is refused in words, before anything is opened.
#[tokio::test]
async fn a_url_of_no_backend_is_refused() {
    let refused = Store::open("mysql://localhost/postwire", Durability::Process).await;
    assert!(
        matches!(&refused, Err(super::StoreError::Unsupported(url)) if url == "mysql://localhost/postwire"),
        "{refused:?}"
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("sqlite://") && message.contains("postgres://"),
        "{message}"
    );
}

/// Retention removes deliveries done for good (delivered or failed) whose last activity is
/// before the cutoff, with their attempts and events, and events that made no delivery; it
/// keeps the newer ones and every delivery still on its way (pending, blocked, held), however
/// old, with its attempts.
async fn retention_removes_only_what_is_done_and_older_than_the_cutoff(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let partner = partner(&store).await;
    let gone = partner_with(&store, json!({})).await;
    let silent = store
        .create_partner("no settings", str::to_owned)
        .await
        .expect("a partner")
        .id;
    let now = now_ms();
    let later = now + 120_000;
    let ids = |accepted: &[super::Accepted]| -> Vec<DeliveryId> {
        accepted.iter().map(|a| a.delivery_ids[0].clone()).collect()
    };
    // Delivered and failed now; one attempt disables `gone`'s endpoint (held).
    let mut first = events(&partner, &[("c1", "created", "i1"), ("c2", "created", "i2")]);
    first.push(event(&gone, "g1", "created", "g1"));
    let first = ids(&store.accept(&first, now).await.expect("accepted"));
    let claimed = store.claim(now, 60_000, 10).await.expect("claimed");
    assert_eq!(claimed.len(), 3);
    let outcome = |claimed: &[Claimed], id: &DeliveryId, next: Next| Outcome {
        attempt: attempt(id, None),
        next,
        lease_seq: lease_of(claimed, id),
    };
    let outcomes = vec![
        outcome(&claimed, &first[0], Next::Delivered),
        outcome(&claimed, &first[1], Next::Failed),
        outcome(&claimed, &first[2], Next::Disable("410 Gone".into())),
    ];
    store.record(outcomes.into(), now).await.expect("recorded");
    // Delivered after the cutoff.
    let newer = ids(&store
        .accept(&events(&partner, &[("c3", "created", "i3")]), now)
        .await
        .expect("accepted"));
    let claimed = store.claim(now, 60_000, 10).await.expect("claimed");
    assert_eq!(claimed.len(), 1);
    store
        .record(vec![outcome(&claimed, &newer[0], Next::Delivered)].into(), later)
        .await
        .expect("recorded");
    // Pending, never claimed, and a resolved postback blocked behind it.
    let waiting = ids(&store
        .accept(
            &events(&partner, &[("c4", "created", "i4"), ("r4", "resolved", "i4")]),
            now,
        )
        .await
        .expect("accepted"));
    // An event that makes no delivery.
    let quiet = store
        .accept(&events(&silent, &[("s1", "created", "s1")]), now)
        .await
        .expect("accepted");
    assert!(quiet[0].delivery_ids.is_empty());

    let cutoff = now + 60_000;
    // Two rows a step, so that the walks take several.
    let pruned = store.prune(cutoff, 2, &Pace::unpaced()).await.expect("pruned");
    assert_eq!(
        (pruned.deliveries, pruned.attempts, pruned.events),
        (2, 2, 3),
        "c1 and c2 with their attempts and events, and s1"
    );
    for id in &first[..2] {
        assert!(
            store.delivery(&partner, id).await.expect("read").is_none(),
            "{id} is gone"
        );
    }
    // Sorted by id: ids made in the same millisecond are in no particular order.
    let statuses = |list: Vec<super::Delivery>| -> Vec<(DeliveryId, Status)> {
        let mut list: Vec<_> = list.into_iter().map(|d| (d.id, d.status)).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    };
    let sorted = |mut list: Vec<(DeliveryId, Status)>| {
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    };
    assert_eq!(
        statuses(listed(&store, &partner, None).await),
        sorted(vec![
            (waiting[1].clone(), Status::Blocked),
            (waiting[0].clone(), Status::Pending),
            (newer[0].clone(), Status::Delivered),
        ])
    );
    let (held, held_attempts) = store.delivery(&gone, &first[2]).await.expect("read").expect("kept");
    assert_eq!((held.status, held_attempts.len()), (Status::Held, 1));
    assert_eq!(attempts(&store, &partner).await, 1, "c3's attempt stays");
    assert!(
        store
            .prune(cutoff, 2, &Pace::unpaced())
            .await
            .expect("pruned")
            .is_empty(),
        "nothing more"
    );

    // An event is known as long as it is kept: sent again once removed, it is new.
    let again = store
        .accept(&events(&silent, &[("s1", "created", "s1")]), now)
        .await
        .expect("accepted");
    assert!(!again[0].duplicate);
    let again = store
        .accept(&events(&partner, &[("c3", "created", "i3")]), now)
        .await
        .expect("accepted");
    assert!(again[0].duplicate, "c3 is kept");

    // Past c3's last activity, it goes too; the deliveries on their way still stay.
    let pruned = store.prune(later + 1, 500, &Pace::unpaced()).await.expect("pruned");
    assert_eq!(
        (pruned.deliveries, pruned.attempts, pruned.events),
        (1, 1, 2),
        "c3 with its attempt and event, and s1 again"
    );
    assert_eq!(
        statuses(listed(&store, &partner, None).await),
        sorted(vec![
            (waiting[1].clone(), Status::Blocked),
            (waiting[0].clone(), Status::Pending)
        ])
    );
    assert!(store.delivery(&gone, &first[2]).await.expect("read").is_some());
}

/// Retention steps aside while delivery is busy, one step per gap at most, and goes on as soon
/// as delivery is idle.
#[tokio::test]
async fn a_pace_holds_steps_while_delivery_is_busy() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let busy = Arc::new(AtomicBool::new(true));
    let pace = Pace::yielding(
        {
            let busy = busy.clone();
            move || busy.load(Ordering::Acquire)
        },
        Duration::from_secs(3600),
    );
    let (stepped, mut steps) = tokio::sync::mpsc::unbounded_channel();
    let stepping = tokio::spawn(async move {
        let mut last = None;
        for step in 0..3 {
            pace.before_step(&mut last).await;
            stepped.send(step).expect("the test listens");
        }
    });
    assert_eq!(steps.recv().await, Some(0), "the first step of a pass goes at once");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), steps.recv())
            .await
            .is_err(),
        "the next waits while delivery is busy and its gap has not passed"
    );
    busy.store(false, Ordering::Release);
    for step in 1..3 {
        let next = tokio::time::timeout(Duration::from_secs(30), steps.recv()).await;
        assert_eq!(next.expect("steps go once delivery is idle"), Some(step));
    }
    stepping.await.expect("the steps ran");

    let mut last = None;
    let unpaced = Pace::unpaced();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(30), unpaced.before_step(&mut last))
            .await
            .expect("an unpaced pass never waits");
    }
}

/// A delivery whose lease lapsed is claimed again; the two attempts' outcomes are recorded in
/// both orders. The delivery keeps the newer claim's outcome whatever order they land in, both
/// attempts are in its log and its count, the older one marked superseded, and the older
/// outcome neither ends the newer lease nor disables the endpoint. The first lease is a claim,
/// or the lease at accept.
async fn a_delivery_claimed_again_keeps_the_newer_outcome_in_either_order(backend: Backend) {
    use super::{Lease, rules};
    let hour = 3_600_000;
    for older in [
        Next::Failed,
        Next::RetryAt(now_ms() + hour),
        Next::Disable("410".into()),
    ] {
        for (older_first, leased_at_accept) in [(true, false), (false, false), (true, true), (false, true)] {
            let case = format!("older {older:?}, older first {older_first}, leased at accept {leased_at_accept}");
            let (_dir, store) = open(backend).await;
            let partner = partner(&store).await;
            let start = now_ms();
            let lease = Lease {
                until: start + 1_000,
                max: usize::from(leased_at_accept),
            };
            let (accepted, leased) = store
                .accept_leasing(events(&partner, &[("c1", "created", "i1")]).into(), start, lease)
                .await
                .expect("accepted");
            let id = accepted[0].delivery_ids[0].clone();
            let first = if leased_at_accept {
                assert_eq!(leased.len(), 1, "{case}");
                leased[0].lease_seq
            } else {
                let claimed = store.claim(start, 1_000, 10).await.expect("claimed");
                assert_eq!(claimed.len(), 1, "{case}");
                claimed[0].lease_seq
            };
            // Nobody claims it while the first lease holds; once it lapses, the next claim does.
            assert!(
                store.claim(start + 999, 60_000, 10).await.expect("claimed").is_empty(),
                "{case}"
            );
            let second = store.claim(start + 1_000, 60_000, 10).await.expect("claimed");
            assert_eq!(second.len(), 1, "{case}");
            assert!(!rules::holds_lease(second[0].lease_seq, first), "{case}");
            let stale = Outcome {
                attempt: attempt(&id, Some("from the lapsed lease")),
                next: older.clone(),
                lease_seq: first,
            };
            let newer = Outcome {
                attempt: attempt(&id, None),
                next: Next::Delivered,
                lease_seq: second[0].lease_seq,
            };
            let (stale_id, newer_id) = (stale.attempt.id.clone(), newer.attempt.id.clone());
            if older_first {
                store.record(vec![stale].into(), now_ms()).await.expect("recorded");
                // The newer claim still holds the delivery: not due, not retried by hand.
                let (delivery, _) = store.delivery(&partner, &id).await.expect("read").expect("exists");
                assert_eq!((delivery.status, delivery.attempts), (Status::Pending, 1), "{case}");
                assert!(
                    store.retry(&partner, &id, now_ms()).await.expect("retry").is_none(),
                    "{case}"
                );
                assert!(
                    store.claim(now_ms(), 60_000, 10).await.expect("claimed").is_empty(),
                    "{case}"
                );
                store.record(vec![newer].into(), now_ms()).await.expect("recorded");
            } else {
                store.record(vec![newer].into(), now_ms()).await.expect("recorded");
                store.record(vec![stale].into(), now_ms()).await.expect("recorded");
            }
            let (delivery, log) = store.delivery(&partner, &id).await.expect("read").expect("exists");
            assert_eq!(
                (delivery.status, delivery.attempts, delivery.last_error.as_deref()),
                (Status::Delivered, 2, None),
                "{case}"
            );
            let superseded: Vec<(AttemptId, bool)> = log.iter().map(|a| (a.id.clone(), a.superseded)).collect();
            assert_eq!(superseded.len(), 2, "both attempts are logged: {case}");
            assert!(superseded.contains(&(stale_id, true)), "{case}: {superseded:?}");
            assert!(superseded.contains(&(newer_id, false)), "{case}: {superseded:?}");
            let settings = store.settings(&partner).await.expect("settings").expect("saved");
            assert_eq!(settings.disabled_at, None, "{case}");
        }
    }
}

/// A plugin is stored only if its partner's plugins, with it, stay within the quota on count
/// and bytes; a refusal answers what they use, and uploads racing each other never overshoot.
async fn a_partners_plugins_stay_within_its_quota_even_racing(backend: Backend) {
    use super::PluginUsage;
    let (_dir, store) = open(backend).await;
    let (a, b) = (partner(&store).await, partner(&store).await);
    let quota = PluginQuota { plugins: 2, bytes: 10 };
    let create = |partner: PartnerId, size: usize| {
        let store = store.clone();
        async move {
            store
                .create_plugin(&partner, "p", "00", &["transform"], &vec![0; size], now_ms(), quota)
                .await
                .unwrap()
        }
    };
    assert!(create(a.clone(), 4).await.is_ok());
    assert_eq!(
        create(a.clone(), 7).await.unwrap_err(),
        PluginUsage { plugins: 1, bytes: 4 },
        "4 + 7 bytes are over 10"
    );
    assert!(create(a.clone(), 6).await.is_ok(), "4 + 6 bytes are exactly 10");
    assert_eq!(
        create(a.clone(), 0).await.unwrap_err(),
        PluginUsage { plugins: 2, bytes: 10 },
        "a third plugin is over 2"
    );
    assert_eq!(
        store.plugin_usage(&a).await.unwrap(),
        PluginUsage { plugins: 2, bytes: 10 }
    );
    // Another partner's quota is its own; ten uploads at once leave exactly two.
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..10 {
        racing.spawn(create(b.clone(), 1));
    }
    let stored = racing.join_all().await.iter().filter(|r| r.is_ok()).count();
    assert_eq!(stored, 2);
    assert_eq!(
        store.plugin_usage(&b).await.unwrap(),
        PluginUsage { plugins: 2, bytes: 2 }
    );
    assert_eq!(store.plugins(&b).await.unwrap().len(), 2);
}

/// Uploads of one name are its versions, counted per partner and name; a canary counts both
/// versions' calls and is judged at its window's end: a new window when the candidate does well
/// enough, detached (the settings' version moving, so that workers read it again) when not.
async fn plugin_versions_count_per_name_and_a_canary_is_judged_per_window(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let (a, b) = (partner(&store).await, partner(&store).await);
    let upload = async |partner: &PartnerId, name: &str| {
        let quota = PluginQuota::default();
        let stored = store.create_plugin(partner, name, "00", &["transform"], b"\0asm", now_ms(), quota);
        stored.await.unwrap().unwrap()
    };
    let mut p = Vec::new();
    for _ in 0..3 {
        p.push(upload(&a, "p").await);
    }
    assert_eq!(p.iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!((upload(&a, "q").await.version, upload(&b, "p").await.version), (1, 1));
    let named = |name: &'static str, version| store.plugin_named(&a, name, version);
    assert_eq!(named("p", None).await.unwrap().unwrap().id, p[2].id);
    assert_eq!(named("p", Some(2)).await.unwrap().unwrap().id, p[1].id);
    assert!(named("p", Some(4)).await.unwrap().is_none());
    assert!(store.plugin_named(&b, "q", None).await.unwrap().is_none());

    let version = async || store.settings(&a).await.unwrap().unwrap().version;
    let before = version().await;
    let spec = CanarySpec {
        slot: PluginSlot::Transform,
        plugin_id: p[2].id.clone(),
        share_percent: 100,
        window_ms: 1000,
        margin_percent: 10,
        min_calls: 2,
    };
    let t = now_ms();
    let started = store.start_canary(&a, &spec, t).await.unwrap().unwrap();
    assert_eq!((started.state, started.window_started_at), (CanaryState::Running, t));
    assert_eq!(version().await, before + 1, "workers see the canary");
    assert_eq!(store.delete_plugin(&a, p[2].id.as_str()).await.unwrap(), Err(()));

    let tally = |candidate, failed, at| store.tally_canary(&a, t, candidate, failed, at);
    let one = tally(true, true, t + 10).await.unwrap().unwrap();
    assert_eq!((one.candidate_calls, one.candidate_failures), (1, 1));
    let two = tally(false, false, t + 20).await.unwrap().unwrap();
    assert_eq!(
        (two.attached_calls, two.attached_failures, two.state),
        (1, 0, CanaryState::Running)
    );
    // Past the window, with enough calls: 100 % against 0 %, over the margin.
    let judged = tally(true, true, t + 1500).await.unwrap().unwrap();
    assert_eq!(judged.state, CanaryState::Detached);
    assert!(
        judged.reason.as_deref().unwrap().contains("failed 2 of its 2 calls"),
        "{judged:?}"
    );
    assert_eq!(version().await, before + 2, "workers see it detached");
    assert!(
        tally(true, true, t + 1600).await.unwrap().is_none(),
        "a detached canary counts nothing"
    );
    assert_eq!(store.canary(&a).await.unwrap().unwrap().state, CanaryState::Detached);
    assert_eq!(store.delete_plugin(&a, p[2].id.as_str()).await.unwrap(), Ok(true));

    // A candidate within the margin starts a new window, counted afresh.
    let t2 = t + 10_000;
    let spec = CanarySpec {
        plugin_id: p[1].id.clone(),
        ..spec
    };
    store.start_canary(&a, &spec, t2).await.unwrap().unwrap();
    let tally = |candidate, failed, at| store.tally_canary(&a, t2, candidate, failed, at);
    tally(true, false, t2 + 1).await.unwrap().unwrap();
    tally(false, true, t2 + 2).await.unwrap().unwrap();
    let next = tally(true, false, t2 + 1100).await.unwrap().unwrap();
    assert_eq!(next.state, CanaryState::Running);
    assert_eq!(
        (next.window_started_at, next.candidate_calls, next.attached_calls),
        (t2 + 1100, 0, 0)
    );
    let stopped = store
        .end_canary(&a, CanaryState::Stopped, Some("stopped"), t2 + 2000)
        .await
        .unwrap();
    assert_eq!(stopped.unwrap().state, CanaryState::Stopped);
    assert!(
        store
            .end_canary(&a, CanaryState::Stopped, None, t2 + 2001)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.canary(&b).await.unwrap().is_none());
}

/// An SQLite store is one process's: it shares no rate limit (the worker keeps it in memory)
/// and has no other process to wake, so its notices do nothing and nobody listens.
#[tokio::test]
async fn a_store_of_one_process_shares_nothing() {
    let (_dir, store) = open(Backend::Sqlite).await;
    assert_eq!(
        store
            .reserve_rate_slot("ptn_a", 1, std::time::Duration::from_secs(1))
            .await
            .unwrap(),
        None
    );
    store.notify_due().await.unwrap();
    store.notify(&super::Notice::Gone("ptn_a".into())).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    assert!(store.watch(|_| {}, shutdown).is_none());
    store.close().await;
}

/// The operator's delivery rates: every partner's attempts since a time, per partner and per
/// span, as delivered, failed and retried; earlier attempts and superseded ones are left out.
async fn delivery_rates_count_each_partners_attempts_by_outcome_and_minute(backend: Backend) {
    let (_dir, store) = open(backend).await;
    let (a, b) = (partner(&store).await, partner(&store).await);
    let mut rows: Vec<Event> = events(
        &a,
        &[
            ("a1", "created", "i1"),
            ("a2", "created", "i2"),
            ("a3", "created", "i3"),
        ],
    );
    rows.extend(events(&b, &[("b1", "created", "i1"), ("b2", "created", "i2")]));
    store.accept(&rows, now_ms()).await.expect("accepted");
    let claimed = store.claim(now_ms(), 60_000, 10).await.expect("claimed");
    assert_eq!(claimed.len(), 5);
    let now = now_ms();
    let since = now - 120_000;
    let partner_of = |c: &Claimed| if c.partner_id == a { "a" } else { "b" };
    let mut outcomes = Vec::new();
    let (mut seen_a, mut seen_b) = (0, 0);
    for c in &claimed {
        let mut attempt = attempt(&c.delivery_id, None);
        // At `now`, not at the clock's time when the attempt is made, which may be later: the
        // counts from `now + 1` on must find none.
        attempt.started_at = now;
        // `a`: one delivered this minute, one retried a minute earlier, one before `since`;
        // `b`: one failed, one delivered, both this minute.
        let next = match partner_of(c) {
            "a" => {
                seen_a += 1;
                match seen_a {
                    1 => Next::Delivered,
                    2 => {
                        attempt.started_at = since + 30_000;
                        attempt.verdict = AttemptVerdict::Retry;
                        Next::RetryAt(now + 600_000)
                    }
                    _ => {
                        attempt.started_at = since - 1;
                        attempt.verdict = AttemptVerdict::Fail;
                        Next::Failed
                    }
                }
            }
            _ => {
                seen_b += 1;
                if seen_b == 1 {
                    attempt.verdict = AttemptVerdict::Fail;
                    Next::Failed
                } else {
                    Next::Delivered
                }
            }
        };
        outcomes.push(Outcome {
            attempt,
            next,
            lease_seq: c.lease_seq,
        });
    }
    store
        .record(std::sync::Arc::new(outcomes), now)
        .await
        .expect("recorded");
    let counts = store.outcome_counts(since, 60_000).await.expect("counts");
    let of = |partner: &PartnerId| -> Vec<(i64, i64, i64, i64)> {
        counts
            .iter()
            .filter(|c| &c.partner_id == partner)
            .map(|c| (c.at, c.delivered, c.failed, c.retried))
            .collect()
    };
    let this_minute = since + (now - since) / 60_000 * 60_000;
    assert_eq!(of(&a), vec![(since, 0, 0, 1), (this_minute, 1, 0, 0)], "{counts:?}");
    assert_eq!(of(&b), vec![(this_minute, 1, 1, 0)], "{counts:?}");
    assert!(store.outcome_counts(now + 1, 60_000).await.expect("counts").is_empty());
}
