//! The API's surface around partners, settings and deliveries: listing, disabling, enabling
//! and deleting partners; deleting, disabling and previewing settings; filtering and replaying
//! deliveries; and the per-partner limit on test postbacks and plugin dry runs.

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `event` with its `OrderId` set.
fn with_order(mut event: Value, order: &str) -> Value {
    event["data"]["OrderId"] = order.into();
    event
}

/// The ids in a listing's `data`.
fn ids(answer: &Answer) -> Vec<String> {
    answer.json["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a listing: {answer:?}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a problem answer of `status` whose errors name `field`.
fn assert_problem(answer: &Answer, status: StatusCode, field: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.content_type, "application/problem+json", "{answer:?}");
    assert!(answer.error_fields().iter().any(|f| f == field), "{field}: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_are_listed_disabled_enabled_and_deleted() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let a = engine.partner_with("a", &simple_settings(&receiver.url("/pb"))).await;
    let b = engine.partner_with("b", &simple_settings(&receiver.url("/pb"))).await;
    let c = engine.create_partner("c").await;

    // Listed page by page, each once, without secrets.
    let first = engine.get("/v1/partners?limit=2").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let next = first.json["next"].as_str().expect("a next page").to_owned();
    let rest = engine.get(&format!("/v1/partners?limit=2&before={next}")).await;
    assert!(rest.json["next"].is_null(), "{rest:?}");
    let listed: BTreeSet<String> = ids(&first).into_iter().chain(ids(&rest)).collect();
    let made: BTreeSet<String> = [&a, &b, &c].iter().map(|p| p.id.clone()).collect();
    assert_eq!(listed, made);
    for page in [&first, &rest] {
        let text = page.json.to_string();
        assert!(!text.contains("whsec_") && !text.contains("\"secret\""), "{text}");
    }
    assert_problem(
        &engine.get("/v1/partners?limit=0").await,
        StatusCode::BAD_REQUEST,
        "limit",
    );

    // Disabled: its key answers 403 saying why, its events are accepted and their postbacks
    // held; enabled: the key works and what was held is sent.
    let key = engine.partner_key(&a).await;
    let own = format!("/v1/partners/{}", a.id);
    assert_eq!(engine.get_as(&key, &own).await.status, StatusCode::OK);
    let disabled = engine.post_empty(&format!("{own}/disable")).await;
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    assert_eq!(disabled.json["enabled"], false);
    let refused = engine.get_as(&key, &format!("{own}/deliveries")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert!(
        refused.json["detail"].as_str().unwrap().contains("disabled"),
        "{refused:?}"
    );
    assert!(engine.get(&own).await.json["disabled_at"].is_i64());
    let held = engine.send_event(&created(&a, "evt_held", "inq-held")).await;
    assert_eq!(engine.delivery(&a, &held).await["delivery"]["status"], "held");
    let enabled = engine.post_empty(&format!("{own}/enable")).await;
    assert_eq!(enabled.status, StatusCode::OK, "{enabled:?}");
    assert_eq!(enabled.json["released_deliveries"], 1, "{enabled:?}");
    assert_eq!(engine.get_as(&key, &own).await.status, StatusCode::OK);
    engine.wait_status(&a, &held, "delivered").await;

    // Deleted: its data goes, its key answers 401 (it was in memory), its ids 404; nothing of
    // another partner's goes with it.
    let gone = engine.raw(Method::DELETE, &own, None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{gone:?}");
    assert_eq!(engine.get_as(&key, &own).await.status, StatusCode::UNAUTHORIZED);
    for path in [
        own.clone(),
        format!("{own}/deliveries"),
        format!("{own}/deliveries/{held}"),
    ] {
        assert_eq!(engine.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [format!("{own}/disable"), format!("{own}/enable")] {
        assert_eq!(engine.post_empty(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        engine.raw(Method::DELETE, &own, None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_problem(
        &engine.post_event(&created(&a, "evt_after", "inq-after")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "partner_id",
    );
    let after = engine.get("/v1/partners?limit=500").await;
    assert!(!ids(&after).contains(&a.id), "{after:?}");
    let still = engine.send_event(&created(&b, "evt_b", "inq-b")).await;
    engine.wait_status(&b, &still, "delivered").await;
    engine.assert_healthy().await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_disabled_deleted_and_previewed_without_losing_a_postback() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let settings = simple_settings(&receiver.url("/pb"));
    let p = engine.partner_with("p", &settings).await;
    let path = settings_path(&p);

    // Disabled by the partner, with a reason; its postbacks are held.
    assert_problem(
        &engine.post(&format!("{path}/disable"), &json!({"reason": 5})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "reason",
    );
    let disabled = engine
        .post(&format!("{path}/disable"), &json!({"reason": "moving servers"}))
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    let shown = engine.settings(&p).await;
    assert_eq!(
        (shown["enabled"].clone(), shown["disabled_reason"].clone()),
        (json!(false), json!("moving servers"))
    );
    let held = engine.send_event(&created(&p, "evt_1", "inq-1")).await;
    assert_eq!(engine.delivery(&p, &held).await["delivery"]["status"], "held");

    // Deleted: the held postback stays held, events make no deliveries, and saving settings
    // again sends what was held.
    let deleted = engine.raw(Method::DELETE, &path, None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    assert_eq!(engine.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        engine.raw(Method::DELETE, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        engine.post_empty(&format!("{path}/disable")).await.status,
        StatusCode::NOT_FOUND
    );
    let none = engine.post_event(&created(&p, "evt_2", "inq-2")).await;
    assert_eq!(none.status, StatusCode::ACCEPTED, "{none:?}");
    assert_eq!(none.json["delivery_ids"], json!([]), "{none:?}");
    assert_eq!(engine.delivery(&p, &held).await["delivery"]["status"], "held");
    assert_eq!(engine.put_settings(&p, &settings).await.status, StatusCode::OK);
    engine.wait_status(&p, &held, "delivered").await;
    assert_eq!(receiver.wait_hits(1).await[0].webhook_id(), held);

    // A preview validates and renders, saving and sending nothing.
    let version = engine.settings(&p).await["version"].clone();
    let mut other = simple_settings("https://partner.example/hook?order={OrderId}");
    other["headers"] = json!({"X-Inquiry": "{ActionInquiryId}"});
    let event = with_order(created(&p, "evt_preview", "inq-preview"), "ORD-77");
    let preview = engine
        .post(&format!("{path}/preview"), &json!({"settings": other, "event": event}))
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{preview:?}");
    let request = &preview.json["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], "https://partner.example/hook?order=ORD-77");
    assert!(request["headers"].to_string().contains("inq-preview"), "{request}");
    let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"event": "action_inquiry.created", "inquiry": "inq-preview", "order": "ORD-77"})
    );
    let sample = engine
        .post(
            &format!("{path}/preview"),
            &json!({"settings": other, "type": "action_inquiry.resolved"}),
        )
        .await;
    assert_eq!(sample.status, StatusCode::OK, "{sample:?}");
    assert_eq!(sample.json["event"]["type"], "action_inquiry.resolved");
    assert_problem(
        &engine
            .post(
                &format!("{path}/preview"),
                &json!({"settings": {"url": "ftp://x"}, "type": "nope"}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "type",
    );
    let bad = engine
        .post(&format!("{path}/preview"), &json!({"settings": {"url": "ftp://x"}}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    assert!(bad.error_fields().iter().all(|f| f.starts_with("settings.")), "{bad:?}");
    assert_problem(
        &engine.post(&format!("{path}/preview"), &json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "settings",
    );
    assert_eq!(engine.settings(&p).await["version"], version, "nothing saved");
    assert_eq!(receiver.hits().len(), 1, "nothing sent");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_filtered_paged_and_replayed() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let p = engine.partner_with("p", &simple_settings(&receiver.url("/pb"))).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut sent = Vec::new();
    for (n, order) in ["ORD-1", "ORD-2", "ORD-1", "ORD-3"].iter().enumerate() {
        let event = with_order(created(&p, &format!("evt_{n}"), &format!("inq-{n}")), order);
        sent.push(engine.send_event(&event).await);
    }
    let resolved_id = engine.send_event(&resolved(&p, "evt_r", "inq-0")).await;
    sent.push(resolved_id.clone());
    for id in &sent {
        engine.wait_status(&p, id, "delivered").await;
    }
    let list = format!("/v1/partners/{}/deliveries", p.id);
    let set = |answer: &Answer| ids(answer).into_iter().collect::<BTreeSet<_>>();
    let of = |indexes: &[usize]| indexes.iter().map(|i| sent[*i].clone()).collect::<BTreeSet<_>>();
    assert_eq!(set(&engine.get(&format!("{list}?order_id=ORD-1")).await), of(&[0, 2]));
    assert_eq!(set(&engine.get(&format!("{list}?inquiry_id=inq-0")).await), of(&[0, 4]));
    assert_eq!(
        set(&engine.get(&format!("{list}?event_type=action_inquiry.resolved")).await),
        of(&[4])
    );
    assert_eq!(
        set(&engine.get(&format!("{list}?status=delivered&order_id=ORD-3")).await),
        of(&[3])
    );
    let since = before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let until = (chrono::Utc::now() + chrono::Duration::seconds(1)).timestamp_millis();
    let ranged = engine.get(&format!("{list}?since={since}&until={until}")).await;
    assert_eq!(set(&ranged), of(&[0, 1, 2, 3, 4]), "{ranged:?}");
    let future = engine.get(&format!("{list}?since={}", until + 60_000)).await;
    assert!(ids(&future).is_empty(), "{future:?}");
    assert_problem(
        &engine.get(&format!("{list}?since=yesterday")).await,
        StatusCode::BAD_REQUEST,
        "since",
    );
    assert_problem(
        &engine.get(&format!("{list}?until=2026-13-01")).await,
        StatusCode::BAD_REQUEST,
        "until",
    );
    assert_problem(
        &engine.get(&format!("{list}?event_type=order.paid")).await,
        StatusCode::BAD_REQUEST,
        "event_type",
    );
    assert_problem(
        &engine.get(&format!("{list}?since={until}&until={until}")).await,
        StatusCode::BAD_REQUEST,
        "until",
    );

    // A cursor walks a filtered listing, each delivery once.
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = engine
            .get(&format!("{list}?event_type=action_inquiry.created&limit=1{cursor}"))
            .await;
        walked.extend(ids(&page));
        match page.json["next"].as_str() {
            Some(next) => cursor = format!("&before={next}"),
            None => break,
        }
    }
    assert_eq!(walked.len(), 4, "{walked:?}");
    assert_eq!(walked.iter().collect::<BTreeSet<_>>().len(), 4);

    // A replay sends the matching done deliveries again, with their own webhook-id, once.
    for (body, field) in [
        (json!({"status": "pending"}), "status"),
        (json!({"since": "soon"}), "since"),
        (json!({"event_type": 3}), "event_type"),
    ] {
        assert_problem(
            &engine.post(&format!("{list}/replay"), &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            field,
        );
    }
    let hits = receiver.hits().len();
    let replay = engine
        .post(
            &format!("{list}/replay"),
            &json!({"status": "delivered", "event_type": "action_inquiry.resolved", "since": since}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{replay:?}");
    assert_eq!(replay.json, json!({"queued": 1, "next": null}));
    let again = engine.wait_attempts(&p, &resolved_id, 2).await;
    assert_eq!(verdicts(&again), ["success", "success"]);
    let resent = receiver.wait_hits(hits + 1).await;
    assert_eq!(resent[hits].webhook_id(), resolved_id);
    engine.wait_status(&p, &resolved_id, "delivered").await;
    let all = engine.post(&format!("{list}/replay"), &json!({})).await;
    assert_eq!(all.json["queued"], 5, "{all:?}");
    for id in &sent {
        engine
            .wait_attempts(&p, id, if *id == resolved_id { 3 } else { 2 })
            .await;
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_postbacks_and_dry_runs_are_limited_per_partner() {
    let engine = Engine::start_with(|options| options.tries_per_minute = Some(2)).await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let p = engine.partner_with("p", &simple_settings(&receiver.url("/pb"))).await;
    let q = engine.partner_with("q", &simple_settings(&receiver.url("/pb"))).await;
    let upload = engine
        .raw(
            Method::POST,
            &format!("/v1/partners/{}/plugins?name=ack", p.id),
            Some(postwire_test_plugins::bytes("trivial")),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{upload:?}");
    let plugin = upload.json["id"].as_str().unwrap();
    let test = format!("{}/test", settings_path(&p));
    assert_eq!(engine.post_empty(&test).await.status, StatusCode::OK);
    let run = engine
        .post(&format!("/v1/partners/{}/plugins/{plugin}/run", p.id), &json!({}))
        .await;
    assert_eq!(run.status, StatusCode::OK, "{run:?}");
    for path in [test.clone(), format!("/v1/partners/{}/plugins/{plugin}/run", p.id)] {
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", engine.base))
            .bearer_auth(TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        let wait: u64 = answer.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["status"], 429);
        assert!(
            problem["detail"].as_str().unwrap().contains("try again in"),
            "{problem}"
        );
    }
    let other = engine.post_empty(&format!("{}/test", settings_path(&q))).await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "another partner is not limited: {other:?}"
    );
    assert_eq!(receiver.hits().len(), 2, "the refused test postback was not sent");
    engine.assert_healthy().await;
    engine.stop().await;
}
