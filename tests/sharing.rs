//! Processes sharing one PostgreSQL database tell each other what they changed: a key revoked
//! or a partner disabled through one API process is refused by another, and an endpoint a
//! receiver disabled is announced to every process's workers.
//!
//! Two engines run in this test process over one fresh schema, each with its own store, caches
//! and listener: they share nothing but the database, as separate processes would.
//!
//! Needs `POSTWIRE_TEST_POSTGRES`; skipped without it, and failing without it under `CI`.

mod common;

use common::*;
use reqwest::StatusCode;

/// Two engines over one fresh schema; `None` after saying the test is skipped.
async fn two_engines() -> Option<(Engine, Engine)> {
    let url = postgres_url()?;
    let schema = postgres_schema(&url).await;
    let first = Engine::start_on_with(Backend::Postgres, |o| o.database = Some(schema.clone())).await;
    let second = Engine::start_on_with(Backend::Postgres, |o| o.database = Some(schema.clone())).await;
    Some((first, second))
}

/// Two engines over one schema, and a partner with settings and a key made through the first.
struct Shared {
    first: Engine,
    second: Engine,
    partner: Partner,
    /// The partner key's token.
    token: String,
    _receiver: Receiver,
}

/// [`Shared`], or `None` after saying the test is skipped.
async fn shared() -> Option<Shared> {
    let (first, second) = two_engines().await?;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let partner = first
        .partner_with("acme", &simple_settings(&receiver.url("/hook")))
        .await;
    let token = first.partner_key(&partner).await;
    Some(Shared {
        first,
        second,
        partner,
        token,
        _receiver: receiver,
    })
}

/// The id of the key of `token`, found by the prefix its listing at `path` shows.
async fn key_id(engine: &Engine, path: &str, token: &str) -> String {
    let listing = engine.get(path).await;
    let shown = &token[8..16];
    listing.json["keys"]
        .as_array()
        .expect("a list of keys")
        .iter()
        .find(|k| k["prefix"] == shown)
        .and_then(|k| k["id"].as_str())
        .unwrap_or_else(|| panic!("the key is listed: {listing:?}"))
        .to_owned()
}

/// A partner-scoped read with `token` on `engine`.
async fn settings_as(engine: &Engine, token: &str, partner: &Partner) -> StatusCode {
    engine.get_as(token, &settings_path(partner)).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_process_is_refused_by_the_others() {
    let Some(Shared {
        first,
        second,
        partner,
        token,
        _receiver,
    }) = shared().await
    else {
        return;
    };
    let kept = first.partner_key(&partner).await;
    // The second process reads the key once and keeps it in memory.
    assert_eq!(settings_as(&second, &token, &partner).await, StatusCode::OK);
    assert_eq!(settings_as(&second, &token, &partner).await, StatusCode::OK);

    let partner_key = key_id(&first, &format!("/v1/partners/{}/keys", partner.id), &token).await;
    let revoked = first
        .raw(
            reqwest::Method::DELETE,
            &format!("/v1/partners/{}/keys/{partner_key}", partner.id),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{revoked:?}");
    assert_eq!(settings_as(&first, &token, &partner).await, StatusCode::UNAUTHORIZED);
    eventually("the other process refuses the revoked key", async || {
        (settings_as(&second, &token, &partner).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(
        settings_as(&second, &kept, &partner).await,
        StatusCode::OK,
        "the partner's other key still works"
    );

    // An ingest key revoked in the second process stops posting through the first.
    let ingest = second.ingest_key(None).await;
    let event = created(&partner, "evt_shared_1", "inq_shared_1");
    assert_eq!(
        first.post_as(&ingest, "/v1/events", &event).await.status,
        StatusCode::ACCEPTED
    );
    let ingest_id = key_id(&second, "/v1/ingest-keys", &ingest).await;
    let revoked = second
        .raw(reqwest::Method::DELETE, &format!("/v1/ingest-keys/{ingest_id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{revoked:?}");
    let later = created(&partner, "evt_shared_2", "inq_shared_2");
    eventually("the other process refuses the revoked ingest key", async || {
        (first.post_as(&ingest, "/v1/events", &later).await.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_disabled_through_one_process_is_refused_by_the_others() {
    let Some(Shared {
        first,
        second,
        partner,
        token,
        _receiver,
    }) = shared().await
    else {
        return;
    };
    assert_eq!(settings_as(&second, &token, &partner).await, StatusCode::OK);

    let disabled = first.post_empty(&format!("/v1/partners/{}/disable", partner.id)).await;
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    eventually("the other process refuses the disabled partner's key", async || {
        (settings_as(&second, &token, &partner).await == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    let enabled = second.post_empty(&format!("/v1/partners/{}/enable", partner.id)).await;
    assert_eq!(enabled.status, StatusCode::OK, "{enabled:?}");
    assert_eq!(settings_as(&second, &token, &partner).await, StatusCode::OK);
    eventually(
        "the first process lets the enabled partner's key in again",
        async || (settings_as(&first, &token, &partner).await == StatusCode::OK).then_some(()),
    )
    .await;

    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_a_receiver_disabled_is_announced_to_every_process() {
    let Some(url) = postgres_url() else { return };
    let schema = postgres_schema(&url).await;
    let engine = Engine::start_on_with(Backend::Postgres, |o| o.database = Some(schema.clone())).await;
    // What the other processes' workers and API hear: the channels are the database's.
    let mut listener = sqlx::postgres::PgListener::connect(&schema).await.expect("a listener");
    listener.listen("postwire_partners").await.expect("listening");

    let receiver = Receiver::always(Reply::status(410)).await;
    let partner = engine
        .partner_with("acme", &simple_settings(&receiver.url("/hook")))
        .await;
    let id = engine.send_event(&created(&partner, "evt_gone_1", "inq_gone_1")).await;
    engine.wait_status(&partner, &id, "held").await;

    let expected = format!("held:{}", partner.id);
    bounded("the disabled endpoint is announced", async {
        loop {
            let notice = listener.recv().await.expect("a notice");
            if notice.payload() == expected {
                break;
            }
        }
    })
    .await;
    drop(listener);
    engine.stop().await;
}
