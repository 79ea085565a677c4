//! The delivery pipeline end to end: an engine started in-process on a temporary database, fed
//! through its HTTP API, delivering to real receivers on 127.0.0.1 that answer as each test
//! scripts. Every test checks both what the receiver got and what the attempt log says, on
//! each backend: an SQLite file, and PostgreSQL when `POSTWIRE_TEST_POSTGRES` names a database.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

crate::on_both_backends!(
    delivers_signed_postbacks_rendered_from_the_template,
    redacts_secrets_in_the_attempt_log,
    retries_a_500_on_the_schedule_with_the_same_webhook_id,
    fails_a_delivery_once_the_schedule_is_exhausted,
    gone_disables_the_endpoint_until_it_is_enabled,
    gone_stops_the_postbacks_waiting_in_memory,
    honours_retry_after_on_429,
    retries_timeouts_and_reset_connections,
    reads_success_and_error_texts_in_200_bodies,
    rate_limits_one_partner_without_holding_back_others,
    resolved_waits_for_created_to_succeed,
    deduplicates_events_and_accepts_batches_all_or_nothing,
    refuses_invalid_requests_with_problem_details,
    refuses_internal_destinations,
    retries_by_hand_and_sends_test_postbacks,
    nul_characters_are_refused_in_ids_and_replaced_in_answers,
);

/// Created and resolved postbacks arrive as the template renders them, signed with the
/// partner's secret, and the attempt log records the exchange.
async fn delivers_signed_postbacks_rendered_from_the_template(backend: Backend) {
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let engine = Engine::start_on(backend).await;
    let settings = sample_settings(&receiver.url("/postbacks/action-inquiry?inquiry={ActionInquiryId}"));
    let partner = engine.partner_with("happy", &settings).await;
    let created_event = created(&partner, "evt_created_1", "inq-1");
    let resolved_event = resolved(&partner, "evt_resolved_1", "inq-1");
    let created_id = engine.send_event(&created_event).await;
    let resolved_id = engine.send_event(&resolved_event).await;
    assert_ne!(created_id, resolved_id);

    let created_delivery = engine.wait_status(&partner, &created_id, "delivered").await;
    let resolved_delivery = engine.wait_status(&partner, &resolved_id, "delivered").await;
    let hits = receiver.wait_hits(2).await;
    assert_eq!(hits.len(), 2, "one request per postback: {hits:?}");
    assert_eq!(hits[0].webhook_id(), created_id, "created goes before resolved");

    for (delivery_id, event, delivery, event_type) in [
        (&created_id, &created_event, &created_delivery, "action_inquiry.created"),
        (
            &resolved_id,
            &resolved_event,
            &resolved_delivery,
            "action_inquiry.resolved",
        ),
    ] {
        let expected = rendered(&settings, event);
        let hit = hits
            .iter()
            .find(|h| h.webhook_id() == delivery_id)
            .expect("the receiver got the postback");

        // What the receiver got.
        assert_eq!(hit.method, "POST");
        assert_eq!(hit.path, "/postbacks/action-inquiry");
        assert_eq!(hit.query.as_deref(), Some("inquiry=inq-1"));
        assert_eq!(hit.body, expected.body, "the body is exactly the rendered template");
        assert_eq!(hit.header("content-type"), Some("application/json"));
        assert_eq!(hit.header("x-partner-id"), Some("88123"));
        assert!(hit.header("user-agent").is_some_and(|ua| ua.starts_with("Postwire/")));
        assert_signed(hit, &partner.secret, delivery_id);
        let body = hit.json();
        assert_eq!(body["event"], event_type);
        assert_eq!(body["inquiry_id"], "inq-1");
        assert_eq!(body["order_id"], "ORD-99812");
        assert_eq!(body["amount_cents"], 14990);
        assert_eq!(body["currency"], "USD");
        if event_type == "action_inquiry.created" {
            assert_eq!(body["status"], "OPEN");
            assert_eq!(
                body["notes"],
                "Customer used coupon \"FALL10\" & paid by card <visa>.\nClick was on Nov 1."
            );
        } else {
            assert_eq!(body["status"], "VALID");
            assert_eq!(body["payout"], json!(11.25));
        }

        // What the attempt log says.
        assert_eq!(delivery["delivery"]["id"], delivery_id.as_str());
        assert_eq!(delivery["delivery"]["partner_id"], partner.id.as_str());
        assert_eq!(delivery["delivery"]["event_type"], event_type);
        assert_eq!(delivery["delivery"]["inquiry_id"], "inq-1");
        assert_eq!(delivery["delivery"]["attempts"], 1);
        let log = attempts(delivery);
        assert_eq!(log.len(), 1, "{delivery:#}");
        let attempt = &log[0];
        assert_eq!(attempt["number"], 1);
        assert_eq!(attempt["verdict"], "success");
        assert_eq!(attempt["response_status"], 200);
        assert_eq!(attempt["response_body"], r#"{"ok":true}"#);
        assert!(attempt["error"].is_null(), "{attempt:#}");
        assert!(attempt["duration_ms"].as_i64().is_some_and(|ms| ms >= 0), "{attempt:#}");
        assert!(attempt["started_at"].as_i64().is_some_and(|at| at > 0), "{attempt:#}");
        assert_eq!(attempt["request"]["method"], "POST");
        assert_eq!(
            attempt["request"]["url"],
            receiver.url("/postbacks/action-inquiry?inquiry=inq-1")
        );
        assert_eq!(attempt["request"]["body"], expected.body);
        let headers = attempt["request"]["headers"].as_array().expect("headers");
        assert!(headers.contains(&json!(["webhook-id", delivery_id])), "{headers:?}");
        assert!(
            headers.contains(&json!(["webhook-signature", hit.header("webhook-signature").unwrap()])),
            "{headers:?}"
        );
    }

    let delivered: BTreeSet<String> = engine.delivery_ids(&partner, "delivered").await.into_iter().collect();
    assert_eq!(delivered, BTreeSet::from([created_id, resolved_id]));
    assert!(engine.delivery_ids(&partner, "pending").await.is_empty());
    engine.stop().await;
}

/// The receiver gets secret header values and query parameters as configured; the attempt log
/// shows them redacted.
async fn redacts_secrets_in_the_attempt_log(backend: Backend) {
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let engine = Engine::start_on(backend).await;
    let mut settings = sample_settings(&receiver.url("/hook?inquiry={ActionInquiryId}&api_key=k-123"));
    settings["headers"]["Authorization"] = json!("Bearer s3cret-token");
    settings["headers"]["X-Auth-Token"] = json!("t-{OrderId}");
    let partner = engine.partner_with("secrets", &settings).await;
    let id = engine.send_event(&created(&partner, "evt_secret_1", "inq-s")).await;
    let delivery = engine.wait_status(&partner, &id, "delivered").await;
    let hits = receiver.wait_hits(1).await;
    assert_eq!(hits[0].header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(hits[0].header("x-auth-token"), Some("t-ORD-99812"));
    assert_eq!(hits[0].query.as_deref(), Some("inquiry=inq-s&api_key=k-123"));

    let request = &attempts(&delivery)[0]["request"];
    let headers = request["headers"].as_array().expect("headers");
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|h| h[1].clone())
    };
    assert_eq!(value("authorization"), Some(json!("[redacted]")), "{headers:?}");
    assert_eq!(value("x-auth-token"), Some(json!("[redacted]")), "{headers:?}");
    assert!(value("webhook-signature").is_some_and(|v| v.as_str().is_some_and(|v| v.starts_with("v1,"))));
    let url = request["url"].as_str().expect("a url");
    assert!(url.contains("inquiry=inq-s") && !url.contains("k-123"), "{url}");
    let log = delivery.to_string();
    assert!(!log.contains("s3cret") && !log.contains("k-123"), "{log}");
    engine.stop().await;
}

/// A receiver failing with 500 gets the postback again on the schedule, with the same
/// `webhook-id` every time, until it accepts it.
async fn retries_a_500_on_the_schedule_with_the_same_webhook_id(backend: Backend) {
    let receiver = Receiver::sequence(vec![Reply::status(500).body("oops"), Reply::status(500)], Reply::ok("")).await;
    let engine = Engine::start_on(backend).await;
    let partner = engine
        .partner_with("retry", &simple_settings(&receiver.url("/pb")))
        .await;
    let id = engine.send_event(&created(&partner, "evt_1", "inq-1")).await;
    let delivery = engine.wait_status(&partner, &id, "delivered").await;

    let hits = receiver.wait_hits(3).await;
    assert_eq!(hits.len(), 3, "{hits:?}");
    for hit in &hits {
        assert_signed(hit, &partner.secret, &id);
        assert_eq!(hit.body, hits[0].body, "the same postback every time");
    }
    // The schedule waits 200 ms (±20 % jitter) between attempts: never less than 160 ms.
    for pair in hits.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(160), "retried after only {gap:?}");
    }

    assert_eq!(verdicts(&delivery), ["retry", "retry", "success"]);
    let log = attempts(&delivery);
    assert_eq!(
        log.iter().map(|a| a["number"].as_i64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(log[0]["response_status"], 500);
    assert_eq!(log[0]["response_body"], "oops");
    assert_eq!(log[0]["error"], "status 500");
    assert_eq!(log[1]["response_status"], 500);
    assert_eq!(log[2]["response_status"], 200);
    assert!(log[2]["error"].is_null());
    assert_eq!(delivery["delivery"]["attempts"], 3);
    engine.stop().await;
}

/// A receiver that always fails exhausts the schedule: the delivery fails after as many attempts
/// as the schedule has entries, and no more are made.
async fn fails_a_delivery_once_the_schedule_is_exhausted(backend: Backend) {
    let receiver = Receiver::always(Reply::status(500)).await;
    let engine = Engine::start_on(backend).await;
    let partner = engine
        .partner_with("exhausted", &simple_settings(&receiver.url("/pb")))
        .await;
    let id = engine.send_event(&created(&partner, "evt_1", "inq-1")).await;
    let delivery = engine.wait_status(&partner, &id, "failed").await;

    assert_eq!(verdicts(&delivery), vec!["retry"; ATTEMPTS]);
    assert_eq!(delivery["delivery"]["attempts"], ATTEMPTS);
    assert_eq!(delivery["delivery"]["last_error"], "status 500");
    assert!(attempts(&delivery).iter().all(|a| a["response_status"] == 500));
    assert_eq!(engine.delivery_ids(&partner, "failed").await, [id.as_str()]);
    assert!(engine.delivery_ids(&partner, "delivered").await.is_empty());
    assert!(engine.delivery_ids(&partner, "pending").await.is_empty());

    // Longer than the schedule's last delay: nothing more is sent.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), ATTEMPTS, "{hits:?}");
    assert!(hits.iter().all(|h| h.webhook_id() == id));
    assert_eq!(attempts(&engine.delivery(&partner, &id).await).len(), ATTEMPTS);
    engine.stop().await;
}

/// 410 Gone disables the endpoint: the delivery and every later one are held until the partner
/// re-enables it, then they are all delivered.
async fn gone_disables_the_endpoint_until_it_is_enabled(backend: Backend) {
    let receiver = Receiver::sequence(vec![Reply::status(410).body("gone")], Reply::ok("")).await;
    let engine = Engine::start_on(backend).await;
    let partner = engine
        .partner_with("gone", &simple_settings(&receiver.url("/pb")))
        .await;
    let first = engine.send_event(&created(&partner, "evt_1", "inq-1")).await;
    let held = engine.wait_status(&partner, &first, "held").await;
    assert_eq!(verdicts(&held), ["disable"]);
    assert_eq!(attempts(&held)[0]["response_status"], 410);
    assert_eq!(attempts(&held)[0]["response_body"], "gone");
    assert!(
        held["delivery"]["last_error"].as_str().unwrap().contains("410"),
        "{held:#}"
    );

    let settings = engine.settings(&partner).await;
    assert_eq!(settings["enabled"], false, "{settings:#}");
    assert!(
        settings["disabled_reason"].as_str().unwrap().contains("410 Gone"),
        "{settings:#}"
    );
    assert!(settings["disabled_at"].as_i64().is_some(), "{settings:#}");

    // Later events are recorded but held.
    let second = engine.send_event(&created(&partner, "evt_2", "inq-2")).await;
    let third = engine.send_event(&created(&partner, "evt_3", "inq-3")).await;
    for id in [&second, &third] {
        assert_eq!(engine.delivery(&partner, id).await["delivery"]["status"], "held");
    }
    let conflict = engine
        .post_empty(&format!("/v1/partners/{}/deliveries/{second}/retry", partner.id))
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{conflict:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.hits().len(),
        1,
        "nothing is sent while the endpoint is disabled"
    );
    let held_ids: BTreeSet<String> = engine.delivery_ids(&partner, "held").await.into_iter().collect();
    assert_eq!(held_ids, BTreeSet::from([first.clone(), second.clone(), third.clone()]));

    let enabled = engine.post_empty(&format!("{}/enable", settings_path(&partner))).await;
    assert_eq!(enabled.status, StatusCode::OK, "{enabled:?}");
    assert_eq!(enabled.json["enabled"], true);
    assert_eq!(enabled.json["released_deliveries"], 3);
    for id in [&first, &second, &third] {
        engine.wait_status(&partner, id, "delivered").await;
    }
    let hits = receiver.wait_hits(4).await;
    assert_eq!(hits.len(), 4, "{hits:?}");
    let resent: BTreeSet<&str> = hits[1..].iter().map(|h| h.webhook_id()).collect();
    assert_eq!(
        resent,
        BTreeSet::from([first.as_str(), second.as_str(), third.as_str()])
    );
    assert_eq!(
        verdicts(&engine.delivery(&partner, &first).await),
        ["disable", "success"]
    );
    let settings = engine.settings(&partner).await;
    assert_eq!(settings["enabled"], true);
    assert!(settings["disabled_reason"].is_null());
    engine.stop().await;
}

/// Postbacks waiting in memory when an attempt disables the endpoint are not sent: they are
/// held with the endpoint's other deliveries and go once it is enabled again.
async fn gone_stops_the_postbacks_waiting_in_memory(backend: Backend) {
    const N: usize = 40;
    let gone = Reply::status(410).body("gone").after(Duration::from_millis(200));
    let receiver = Receiver::sequence(vec![gone.clone(), gone], Reply::ok("")).await;
    // Two in flight, both for the one partner: both of the receiver's 410s are met at once.
    let engine = Engine::start_on_with(backend, |options| {
        options.concurrency = Some(2);
        options.partner_concurrency = Some(2);
    })
    .await;
    let partner = engine
        .partner_with("gone-queued", &simple_settings(&receiver.url("/pb")))
        .await;
    let events: Vec<Value> = (0..N)
        .map(|i| created(&partner, &format!("evt_q{i}"), &format!("inq-q{i}")))
        .collect();
    let answer = engine.post_batch(&events).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    let ids: Vec<String> = answer.json["accepted"]
        .as_array()
        .expect("accepted")
        .iter()
        .map(|a| a["delivery_ids"][0].as_str().expect("a delivery").to_owned())
        .collect();
    for id in &ids {
        engine.wait_status(&partner, id, "held").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = receiver.hits().len();
    assert!(
        (1..=2).contains(&sent),
        "only the postbacks in flight when the endpoint said 410 were sent: {sent}"
    );

    let enabled = engine.post_empty(&format!("{}/enable", settings_path(&partner))).await;
    assert_eq!(enabled.json["released_deliveries"], N, "{enabled:?}");
    for id in &ids {
        engine.wait_status(&partner, id, "delivered").await;
    }
    let hits = receiver.wait_hits(sent + N).await;
    assert_eq!(hits.len(), sent + N, "each postback once more after the enable");
    engine.stop().await;
}

/// 429 with `Retry-After: 1`: the next attempt waits at least that long.
async fn honours_retry_after_on_429(backend: Backend) {
    let receiver = Receiver::sequence(
        vec![Reply::status(429).header("retry-after", "1").body("slow down")],
        Reply::ok(""),
    )
    .await;
    let engine = Engine::start_on(backend).await;
    let partner = engine
        .partner_with("throttled", &simple_settings(&receiver.url("/pb")))
        .await;
    let id = engine.send_event(&created(&partner, "evt_1", "inq-1")).await;
    let delivery = engine.wait_status(&partner, &id, "delivered").await;

    let hits = receiver.wait_hits(2).await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "the retry came {gap:?} after the 429, before its Retry-After of 1 s"
    );
    assert_eq!(verdicts(&delivery), ["retry", "success"]);
    let first = &attempts(&delivery)[0];
    assert_eq!(first["response_status"], 429);
    assert_eq!(first["error"], "status 429");
    assert!(
        first["response_headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["retry-after", "1"])),
        "{first:#}"
    );
    engine.stop().await;
}

/// A receiver slower than the timeout and one that resets the connection both make attempts
/// that are retried with the failure in words; the engine keeps working.
async fn retries_timeouts_and_reset_connections(backend: Backend) {
    let receiver = Receiver::start(|hit, earlier| {
        let seen = earlier.iter().filter(|h| h.path == hit.path).count();
        if hit.path == "/slow" && seen == 0 {
            Reply::ok("too late").after(Duration::from_secs(3))
        } else {
            Reply::ok("")
        }
    })
    .await;
    let resetter = Resetter::start().await;
    let engine = Engine::start_on(backend).await;
    let slow = engine
        .partner_with("slow", &simple_settings(&receiver.url("/slow")))
        .await;
    let reset = engine
        .partner_with("reset", &simple_settings(&resetter.url("/reset")))
        .await;
    let slow_id = engine.send_event(&created(&slow, "evt_slow", "inq-1")).await;
    let reset_id = engine.send_event(&created(&reset, "evt_reset", "inq-1")).await;

    let delivery = engine.wait_status(&slow, &slow_id, "delivered").await;
    assert_eq!(verdicts(&delivery), ["retry", "success"]);
    let timed_out = &attempts(&delivery)[0];
    assert!(
        timed_out["error"].as_str().unwrap().contains("timed out"),
        "{timed_out:#}"
    );
    assert!(timed_out["response_status"].is_null());
    let hits = receiver.wait_hits(2).await;
    assert!(hits.iter().all(|h| h.webhook_id() == slow_id));

    let delivery = engine.wait_status(&reset, &reset_id, "failed").await;
    assert_eq!(verdicts(&delivery), vec!["retry"; ATTEMPTS]);
    for attempt in attempts(&delivery) {
        let error = attempt["error"].as_str().expect("an error text");
        assert!(
            error.to_lowercase().contains("connection") && !error.contains("timed out"),
            "{attempt:#}"
        );
        assert!(attempt["response_status"].is_null());
    }
    assert_eq!(resetter.count(), ATTEMPTS, "every attempt reached the receiver");

    // Still serving, still delivering.
    engine.assert_healthy().await;
    let again = engine.send_event(&created(&slow, "evt_slow_2", "inq-2")).await;
    let delivery = engine.wait_status(&slow, &again, "delivered").await;
    assert_eq!(verdicts(&delivery), ["success"]);
    engine.stop().await;
}

/// `success_response` and `error_response` decide what a 200 means.
async fn reads_success_and_error_texts_in_200_bodies(backend: Backend) {
    let receiver = Receiver::sequence(
        vec![
            Reply::ok("received, pending review"),
            Reply::ok("REJECTED: duplicate order"),
        ],
        Reply::ok("status=ACCEPTED"),
    )
    .await;
    let engine = Engine::start_on(backend).await;
    let mut settings = simple_settings(&receiver.url("/pb"));
    settings["success_response"] = "ACCEPTED".into();
    settings["error_response"] = "REJECTED".into();
    let partner = engine.partner_with("texts", &settings).await;
    let id = engine.send_event(&created(&partner, "evt_1", "inq-1")).await;
    let delivery = engine.wait_status(&partner, &id, "delivered").await;

    assert_eq!(receiver.wait_hits(3).await.len(), 3);
    assert_eq!(verdicts(&delivery), ["retry", "retry", "success"]);
    let log = attempts(&delivery);
    assert!(log.iter().all(|a| a["response_status"] == 200), "{delivery:#}");
    let lacks = log[0]["error"].as_str().unwrap();
    assert!(lacks.contains("lacks the success response \"ACCEPTED\""), "{lacks}");
    let holds = log[1]["error"].as_str().unwrap();
    assert!(holds.contains("holds the error response \"REJECTED\""), "{holds}");
    assert_eq!(log[2]["response_body"], "status=ACCEPTED");
    engine.stop().await;
}

/// `max_requests_per_sec` spaces a partner's postbacks; other partners are not held back.
async fn rate_limits_one_partner_without_holding_back_others(backend: Backend) {
    let receiver = Receiver::always(Reply::ok("")).await;
    let engine = Engine::start_on(backend).await;
    let mut limited = simple_settings(&receiver.url("/a"));
    limited["max_requests_per_sec"] = 20.into();
    let a = engine.partner_with("a", &limited).await;
    let b = engine.partner_with("b", &simple_settings(&receiver.url("/b"))).await;

    let events: Vec<Value> = (0..100)
        .map(|i| created(&a, &format!("evt_a_{i}"), &format!("inq-a-{i}")))
        .collect();
    let answer = engine.post_batch(&events).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    assert_eq!(answer.json["accepted"].as_array().unwrap().len(), 100);
    let mut b_ids = Vec::new();
    for i in 0..20 {
        b_ids.push(
            engine
                .send_event(&created(&b, &format!("evt_b_{i}"), &format!("inq-b-{i}")))
                .await,
        );
    }

    let hits = receiver.wait_hits(120).await;
    let mut a_times: Vec<_> = hits.iter().filter(|h| h.path == "/a").map(|h| h.at).collect();
    let b_times: Vec<_> = hits.iter().filter(|h| h.path == "/b").map(|h| h.at).collect();
    assert_eq!(a_times.len(), 100);
    assert_eq!(b_times.len(), 20);
    let a_ids: HashSet<&str> = hits.iter().filter(|h| h.path == "/a").map(|h| h.webhook_id()).collect();
    assert_eq!(a_ids.len(), 100, "each of A's postbacks arrived once");

    a_times.sort();
    let busiest = (0..a_times.len())
        .map(|i| {
            a_times[i..]
                .iter()
                .take_while(|&&t| t - a_times[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        busiest <= 21,
        "{busiest} of A's requests arrived within one second; the limit is 20/s"
    );
    let a_done = *a_times.last().unwrap();
    let b_done = *b_times.iter().max().unwrap();
    assert!(b_done < a_done, "B's postbacks waited behind A's rate limit");

    let a_delivered = eventually("A's 100 deliveries are delivered", async || {
        let ids = engine.delivery_ids(&a, "delivered").await;
        (ids.len() == 100).then_some(ids)
    })
    .await;
    assert_eq!(a_delivered.len(), 100);
    let b_delivered: HashSet<String> = engine.delivery_ids(&b, "delivered").await.into_iter().collect();
    assert_eq!(b_delivered, b_ids.into_iter().collect());
    engine.stop().await;
}

/// An inquiry's resolved postback never overtakes its created postback, even while the created
/// one is being retried.
async fn resolved_waits_for_created_to_succeed(backend: Backend) {
    let receiver = Receiver::start(|hit, earlier| {
        let created = |h: &Hit| h.body.contains("action_inquiry.created");
        if created(hit) && earlier.iter().filter(|h| created(h)).count() < 2 {
            Reply::status(500)
        } else {
            Reply::ok("")
        }
    })
    .await;
    // Retries half a second apart: the created postback cannot succeed before the resolved
    // event is posted.
    let engine = Engine::start_on_with(backend, |o| o.retry_schedule = Some("0s,500ms,500ms,500ms".into())).await;
    let partner = engine
        .partner_with("ordered", &simple_settings(&receiver.url("/pb")))
        .await;
    let created_id = engine.send_event(&created(&partner, "evt_c", "inq-1")).await;
    let resolved_id = engine.send_event(&resolved(&partner, "evt_r", "inq-1")).await;
    let waiting = engine.delivery(&partner, &resolved_id).await;
    assert_eq!(waiting["delivery"]["status"], "blocked", "{waiting:#}");
    assert_eq!(waiting["delivery"]["blocked_by"], created_id.as_str());

    let created_delivery = engine.wait_status(&partner, &created_id, "delivered").await;
    let resolved_delivery = engine.wait_status(&partner, &resolved_id, "delivered").await;
    assert_eq!(verdicts(&created_delivery), ["retry", "retry", "success"]);
    assert_eq!(verdicts(&resolved_delivery), ["success"]);

    let hits = receiver.wait_hits(4).await;
    assert_eq!(hits.len(), 4, "{hits:?}");
    let order: Vec<&str> = hits.iter().map(|h| h.webhook_id()).collect();
    assert_eq!(
        order,
        [
            created_id.as_str(),
            created_id.as_str(),
            created_id.as_str(),
            resolved_id.as_str()
        ]
    );
    assert!(hits[3].at >= hits[2].at);
    let created_success = attempts(&created_delivery)[2]["started_at"].as_i64().unwrap();
    let resolved_start = attempts(&resolved_delivery)[0]["started_at"].as_i64().unwrap();
    assert!(resolved_start >= created_success);
    engine.stop().await;
}

/// An event id sent twice is one postback; a batch with an invalid event records nothing.
async fn deduplicates_events_and_accepts_batches_all_or_nothing(backend: Backend) {
    let receiver = Receiver::always(Reply::ok("")).await;
    let engine = Engine::start_on(backend).await;
    let partner = engine
        .partner_with("idem", &simple_settings(&receiver.url("/pb")))
        .await;
    let event = created(&partner, "evt_dup", "inq-dup");
    let first = engine.post_event(&event).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    assert_eq!(first.json["duplicate"], false);
    let ids = first.json["delivery_ids"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 1);
    let id = ids[0].as_str().unwrap().to_owned();
    let second = engine.post_event(&event).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{second:?}");
    assert_eq!(second.json["duplicate"], true);
    assert_eq!(second.json["delivery_ids"], ids);
    assert_eq!(second.json["event_id"], "evt_dup");

    engine.wait_status(&partner, &id, "delivered").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits().len(), 1, "the receiver gets the event once");
    assert_eq!(engine.deliveries(&partner, None).await.len(), 1);

    // One invalid event: nothing of the batch is recorded.
    let mut invalid = created(&partner, "evt_b1", "inq-b1");
    invalid["data"]["TransactionAmount"] = "12,50".into();
    let valid = [
        created(&partner, "evt_b0", "inq-b0"),
        created(&partner, "evt_b2", "inq-b2"),
    ];
    let answer = engine.post_batch(&[valid[0].clone(), invalid, valid[1].clone()]).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:?}");
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.error_fields(), ["events[1].data.TransactionAmount"]);
    assert_eq!(
        answer.error_about("events[1].data.TransactionAmount").unwrap()["value"],
        "12,50"
    );
    assert_eq!(engine.deliveries(&partner, None).await.len(), 1, "nothing recorded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 1, "nothing sent");

    // The valid events were not recorded: sent again, they are new. A repeat inside a batch is a
    // duplicate too.
    let answer = engine.post_batch(&[valid[0].clone(), valid[1].clone(), event]).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    let accepted = answer.json["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 3);
    assert_eq!(accepted[0]["duplicate"], false);
    assert_eq!(accepted[1]["duplicate"], false);
    assert_eq!(accepted[2]["duplicate"], true);
    assert_eq!(accepted[2]["delivery_ids"], ids);
    for item in &accepted[..2] {
        let id = item["delivery_ids"][0].as_str().unwrap();
        engine.wait_status(&partner, id, "delivered").await;
    }
    assert_eq!(receiver.wait_hits(3).await.len(), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 3);
    engine.stop().await;
}

/// Invalid requests get problem details naming the field at fault; the server keeps serving.
async fn refuses_invalid_requests_with_problem_details(backend: Backend) {
    let receiver = Receiver::always(Reply::ok("")).await;
    let engine = Engine::start_on(backend).await;
    let partner = engine.create_partner("strict").await;

    // An unknown placeholder, with the name it probably meant.
    let mut settings = simple_settings(&receiver.url("/pb"));
    settings["body_template"] = "{\"order\": \"{OrderID}\"}".into();
    let answer = engine.put_settings(&partner, &settings).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:?}");
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.json["status"], 422);
    let error = answer
        .error_about("body_template")
        .expect("an error about body_template");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("{OrderID}") && message.contains("did you mean {OrderId}?"),
        "{message}"
    );
    assert_eq!(
        engine.get(&settings_path(&partner)).await.status,
        StatusCode::NOT_FOUND,
        "nothing was saved"
    );

    // An event for a partner that does not exist.
    let mut event = created(&partner, "evt_1", "inq-1");
    event["partner_id"] = "ptn_unknown".into();
    let answer = engine.post_event(&event).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:?}");
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.error_fields(), ["partner_id"]);
    assert_eq!(answer.error_about("partner_id").unwrap()["value"], "ptn_unknown");

    // Bodies that are not JSON.
    for (method, path) in [
        (reqwest::Method::POST, "/v1/events".to_owned()),
        (reqwest::Method::POST, "/v1/events/batch".to_owned()),
        (reqwest::Method::PUT, settings_path(&partner)),
        (reqwest::Method::POST, "/v1/partners".to_owned()),
    ] {
        let answer = engine
            .raw(method.clone(), &path, Some(b"{\"id\": evt_1".to_vec()))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method} {path}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json");
        assert!(
            answer.json["detail"].as_str().unwrap().contains("not valid JSON"),
            "{answer:?}"
        );
    }

    // Partners that do not exist.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/partners/ptn_nope".to_owned()),
        (reqwest::Method::GET, "/v1/partners/ptn_nope/deliveries".to_owned()),
        (
            reqwest::Method::GET,
            "/v1/partners/ptn_nope/deliveries/dlv_x".to_owned(),
        ),
        (
            reqwest::Method::GET,
            "/v1/partners/ptn_nope/settings/action-inquiry".to_owned(),
        ),
        (
            reqwest::Method::POST,
            "/v1/partners/ptn_nope/settings/action-inquiry/enable".to_owned(),
        ),
    ] {
        let answer = engine.raw(method.clone(), &path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json");
    }
    let answer = engine
        .put(
            "/v1/partners/ptn_nope/settings/action-inquiry",
            &simple_settings(&receiver.url("/pb")),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{answer:?}");

    // Still serving.
    engine.assert_healthy().await;
    let answer = engine
        .put_settings(&partner, &simple_settings(&receiver.url("/pb")))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let id = engine.send_event(&created(&partner, "evt_1", "inq-1")).await;
    engine.wait_status(&partner, &id, "delivered").await;
    assert_eq!(receiver.wait_hits(1).await.len(), 1);
    engine.stop().await;
}

/// Internal destinations are refused before any connection unless allow-listed.
async fn refuses_internal_destinations(backend: Backend) {
    // 127.0.0.1 is allowed, 10.0.0.0/8 is not.
    let engine = Engine::start_on(backend).await;
    let partner = engine
        .partner_with("private", &simple_settings("http://10.255.255.1/pb"))
        .await;
    let id = engine.send_event(&created(&partner, "evt_1", "inq-1")).await;
    let delivery = engine.wait_attempts(&partner, &id, 1).await;
    let attempt = &attempts(&delivery)[0];
    assert_eq!(attempt["verdict"], "retry");
    assert!(attempt["response_status"].is_null());
    let error = attempt["error"].as_str().unwrap();
    assert!(
        error.contains("destination 10.255.255.1 is a private address") && error.contains("may not go there"),
        "{error}"
    );
    // The test postback is guarded too.
    let test = engine.post_empty(&format!("{}/test", settings_path(&partner))).await;
    assert_eq!(test.status, StatusCode::OK, "{test:?}");
    assert!(test.json["response"].is_null(), "{test:?}");
    assert!(
        test.json["error"].as_str().unwrap().contains("10.255.255.1"),
        "{test:?}"
    );
    engine.stop().await;

    // Nothing allowed: a name that resolves to loopback is refused, and so is the literal.
    let receiver = Receiver::always(Reply::ok("")).await;
    let engine = Engine::start_on_with(backend, |o| o.allow_destination.clear()).await;
    let by_name = engine
        .partner_with(
            "by-name",
            &simple_settings(&format!("http://localhost:{}/pb", receiver.addr.port())),
        )
        .await;
    let by_ip = engine
        .partner_with("by-ip", &simple_settings(&receiver.url("/pb")))
        .await;
    let name_id = engine.send_event(&created(&by_name, "evt_1", "inq-1")).await;
    let ip_id = engine.send_event(&created(&by_ip, "evt_1", "inq-1")).await;
    let delivery = engine.wait_status(&by_name, &name_id, "failed").await;
    for attempt in attempts(&delivery) {
        let error = attempt["error"].as_str().unwrap();
        assert!(
            error.contains("localhost") && error.contains("loopback address") && error.contains("may not go there"),
            "{error}"
        );
    }
    let delivery = engine.wait_status(&by_ip, &ip_id, "failed").await;
    for attempt in attempts(&delivery) {
        let error = attempt["error"].as_str().unwrap();
        assert!(error.contains("destination 127.0.0.1 is a loopback address"), "{error}");
    }
    assert!(
        receiver.hits().is_empty(),
        "the receiver was reached: {:?}",
        receiver.hits()
    );
    engine.stop().await;
}

/// A failed delivery retried by hand gets one more attempt; a test postback reports the
/// receiver's answer and the verdict.
async fn retries_by_hand_and_sends_test_postbacks(backend: Backend) {
    let receiver = Receiver::start(|hit, earlier| {
        let seen = earlier.iter().filter(|h| h.path == hit.path).count();
        match hit.path.as_str() {
            "/pb" if seen < ATTEMPTS => Reply::status(500),
            "/down" => Reply::status(500).body("maintenance"),
            _ => Reply::ok("OK thanks"),
        }
    })
    .await;
    let engine = Engine::start_on(backend).await;
    let partner = engine
        .partner_with("manual", &simple_settings(&receiver.url("/pb")))
        .await;
    let id = engine.send_event(&created(&partner, "evt_1", "inq-1")).await;
    engine.wait_status(&partner, &id, "failed").await;
    assert_eq!(receiver.hits().len(), ATTEMPTS);

    let retry_path = format!("/v1/partners/{}/deliveries/{id}/retry", partner.id);
    let answer = engine.post_empty(&retry_path).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    assert_eq!(answer.json["id"], id.as_str());
    assert_eq!(answer.json["status"], "pending");
    let delivery = engine.wait_status(&partner, &id, "delivered").await;
    let mut expected = vec!["retry"; ATTEMPTS];
    expected.push("success");
    assert_eq!(verdicts(&delivery), expected);
    assert_eq!(attempts(&delivery)[ATTEMPTS]["number"], ATTEMPTS + 1);
    assert_eq!(delivery["delivery"]["attempts"], ATTEMPTS + 1);
    let hits = receiver.wait_hits(ATTEMPTS + 1).await;
    assert_eq!(hits.len(), ATTEMPTS + 1);
    assert_signed(&hits[ATTEMPTS], &partner.secret, &id);
    let unknown = engine
        .post_empty(&format!("/v1/partners/{}/deliveries/dlv_nope/retry", partner.id))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");

    // A test postback, sent now, answered in full.
    let test = engine
        .post_empty(&format!(
            "{}/test?type=action_inquiry.resolved",
            settings_path(&partner)
        ))
        .await;
    assert_eq!(test.status, StatusCode::OK, "{test:?}");
    assert_eq!(test.json["response"]["status"], 200, "{test:?}");
    assert_eq!(test.json["response"]["body"], "OK thanks");
    assert_eq!(test.json["verdict"], "success", "{test:?}");
    assert!(test.json["error"].is_null());
    assert_eq!(test.json["event"]["type"], "action_inquiry.resolved");
    let hits = receiver.wait_hits(ATTEMPTS + 2).await;
    let hit = &hits[ATTEMPTS + 1];
    assert_eq!(hit.json()["event"], "action_inquiry.resolved");
    assert_eq!(test.json["request"]["body"], hit.body.as_str());
    let test_id = hit.webhook_id().to_owned();
    assert!(test_id.starts_with("test_"), "{test_id}");
    assert_signed(hit, &partner.secret, &test_id);
    assert_eq!(
        engine.deliveries(&partner, None).await.len(),
        1,
        "a test postback is no delivery"
    );

    // A receiver that still fails: the retry is one attempt, not a new schedule.
    let down = engine
        .partner_with("down", &simple_settings(&receiver.url("/down")))
        .await;
    let down_id = engine.send_event(&created(&down, "evt_1", "inq-1")).await;
    engine.wait_status(&down, &down_id, "failed").await;
    let answer = engine
        .post_empty(&format!("/v1/partners/{}/deliveries/{down_id}/retry", down.id))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    let delivery = engine
        .wait_delivery(&down, &down_id, "failed after one more attempt", |d| {
            d["delivery"]["status"] == "failed" && attempts(d).len() == ATTEMPTS + 1
        })
        .await;
    assert_eq!(verdicts(&delivery), vec!["retry"; ATTEMPTS + 1]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(attempts(&engine.delivery(&down, &down_id).await).len(), ATTEMPTS + 1);
    let down_hits = receiver.hits().iter().filter(|h| h.path == "/down").count();
    assert_eq!(down_hits, ATTEMPTS + 1);

    // A failing receiver: the test says so.
    let test = engine.post_empty(&format!("{}/test", settings_path(&down))).await;
    assert_eq!(test.status, StatusCode::OK, "{test:?}");
    assert_eq!(test.json["response"]["status"], 500);
    assert_eq!(test.json["response"]["body"], "maintenance");
    assert_eq!(test.json["verdict"], "retry", "{test:?}");
    assert_eq!(test.json["error"], "status 500");
    engine.stop().await;
}

/// A NUL character, which PostgreSQL's text cannot hold, is refused in an id as invalid input
/// naming the field, and replaced by U+FFFD in a receiver's answer, so that the attempt is
/// recorded like any other on either backend.
async fn nul_characters_are_refused_in_ids_and_replaced_in_answers(backend: Backend) {
    let receiver = Receiver::always(Reply::status(500).body("broken\0answer")).await;
    let engine = Engine::start_on(backend).await;
    let partner = engine.partner_with("nul", &simple_settings(&receiver.url("/pb"))).await;
    let mut event = created(&partner, "evt_nul_1", "inq-nul");
    event["data"]["ActionInquiryId"] = json!("inq\u{0}nul");
    let refused = engine.post_event(&event).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{refused:?}");
    let error = refused
        .error_about("data.ActionInquiryId")
        .unwrap_or_else(|| panic!("the field is named: {refused:?}"));
    assert!(error.to_string().contains("NUL"), "{error}");
    engine.assert_healthy().await;

    let id = engine.send_event(&created(&partner, "evt_nul_2", "inq-nul")).await;
    let delivery = engine.wait_attempts(&partner, &id, 1).await;
    assert_eq!(
        attempts(&delivery)[0]["response_body"],
        "broken\u{FFFD}answer",
        "{delivery:#}"
    );
    engine.stop().await;
}
