//! Shipping plugin changes safely, through the API with real compiled plugins and a real
//! receiver: versions of one name, the replay diff of a candidate against stored deliveries,
//! a rollback, and a canary that is detached when it fails.
//!
//! The versions of `rollout` are three guests: v1 `trivial` (the request unchanged), v2
//! `foreign` (changes only the postbacks of events in a currency other than USD) and v3
//! `panic` (fails every call).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

crate::on_both_backends!(
    a_replay_diff_reports_exactly_what_a_new_version_changes_and_sends_nothing,
    a_rollback_brings_the_earlier_version_back_for_the_next_postback,
    a_canary_that_fails_is_detached_and_its_postbacks_go_with_the_attached_version,
    a_classifier_diff_replays_the_stored_answers_and_compares_verdicts,
);

/// Runs the `postwire` binary with `args`; its standard output, once it succeeded.
fn postwire(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_postwire"))
        .args(args)
        .output()
        .expect("the postwire binary runs");
    succeeded(&output)
}

/// Uploads guest `guest` as a version of the plugin `name`.
async fn upload_version(engine: &Engine, partner: &Partner, name: &str, guest: &str) -> Value {
    let answer = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name={name}", partner.id),
            Some(postwire_test_plugins::bytes(guest)),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.json
}

/// The three versions of `rollout`, checked to be numbered 1, 2, 3.
async fn three_versions(engine: &Engine, partner: &Partner) -> [String; 3] {
    let mut ids = Vec::new();
    for (version, guest) in [(1, "trivial"), (2, "foreign"), (3, "panic")] {
        let record = upload_version(engine, partner, "rollout", guest).await;
        assert_eq!(record["name"], "rollout");
        assert_eq!(record["version"], version, "{record}");
        ids.push(record["id"].as_str().unwrap().to_owned());
    }
    ids.try_into().unwrap()
}

/// An event of `partner` in `currency`.
fn event_in(partner: &Partner, n: usize, currency: &str) -> Value {
    let mut event = created(partner, &format!("evt_r{n}"), &format!("inq-r{n}"));
    event["data"]["Currency"] = json!(currency);
    event
}

async fn a_replay_diff_reports_exactly_what_a_new_version_changes_and_sends_nothing(backend: Backend) {
    let engine = Engine::start_on(backend).await;
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Diffed").await;
    let [v1, v2, _] = three_versions(&engine, &partner).await;

    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!("rollout@1");
    let saved = engine.put_settings(&partner, &settings).await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    assert_eq!(
        saved.json["settings"]["transform_plugin"], v1,
        "name@version is pinned to its id"
    );

    // 50 deliveries; every fifth event is in euros, and only those does v2 change.
    let (mut all, mut foreign) = (Vec::new(), BTreeSet::new());
    for n in 0..50usize {
        let currency = if n.is_multiple_of(5) { "EUR" } else { "USD" };
        let delivery_id = engine.send_event(&event_in(&partner, n, currency)).await;
        if currency == "EUR" {
            foreign.insert(delivery_id.clone());
        }
        all.push(delivery_id);
    }
    for id in &all {
        engine.wait_status(&partner, id, "delivered").await;
    }
    assert_eq!(receiver.wait_hits(50).await.len(), 50);

    let path = format!("/v1/partners/{}/plugins/diff", partner.id);
    let diff = engine.post(&path, &json!({"candidate": "rollout@2", "last": 50})).await;
    assert_eq!(diff.status, StatusCode::OK, "{diff:?}");
    let diff = diff.json;
    assert_eq!(diff["candidate"], "rollout@2");
    assert_eq!(diff["candidate_id"], v2);
    assert_eq!(diff["attached"], "rollout@1");
    assert_eq!(diff["slot"], "transform");
    assert_eq!(
        (
            &diff["deliveries"],
            &diff["identical"],
            &diff["changed"],
            &diff["failed"]
        ),
        (&json!(50), &json!(40), &json!(10), &json!(0)),
        "{diff}"
    );
    let results = diff["results"].as_array().unwrap();
    let changed: BTreeSet<String> = results
        .iter()
        .filter(|r| r["outcome"] == "changed")
        .map(|r| r["delivery_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(changed, foreign, "exactly the deliveries of events in euros change");
    for result in results {
        for side in ["attached", "candidate"] {
            assert!(result[side]["fuel_used"].as_u64().unwrap() > 0, "{result}");
            assert!(result[side]["duration_us"].as_u64().is_some(), "{result}");
        }
        if result["outcome"] != "changed" {
            assert!(result.get("diff").is_none(), "{result}");
            continue;
        }
        let change = &result["diff"];
        assert!(
            change.get("method").is_none() && change.get("url").is_none(),
            "{change}"
        );
        assert_eq!(
            change["headers"]["added"],
            json!([["x-foreign-currency", "EUR"]]),
            "{change}"
        );
        assert_eq!(change["headers"]["removed"], json!([]), "{change}");
        let before: Value = serde_json::from_str(change["body"]["attached"].as_str().unwrap()).unwrap();
        let mut after: Value = serde_json::from_str(change["body"]["candidate"].as_str().unwrap()).unwrap();
        assert_eq!(after["foreign"], true);
        after.as_object_mut().unwrap().remove("foreign");
        assert_eq!(before, after, "nothing else in the body changes");
        let unified = change["body"]["unified"].as_str().unwrap();
        assert!(unified.starts_with("--- attached\n+++ candidate\n"), "{unified}");
        let added: Vec<&str> = unified
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .collect();
        assert!(added.iter().any(|l| l.contains("\"foreign\": true")), "{unified}");
    }

    // The same through the command line, as people read it.
    let cli = postwire(&[
        "plugin",
        "diff",
        "--server",
        &engine.base,
        "--partner",
        &partner.id,
        "--token",
        TOKEN,
        "--candidate",
        "rollout@2",
        "--last",
        "50",
    ]);
    eprintln!("{cli}");
    assert!(
        cli.starts_with(
            "rollout@2 against rollout@1 (transform) on the last 50 deliveries: 40 identical, 10 changed, 0 failed\n"
        ),
        "{cli}"
    );
    assert_eq!(cli.matches("\nchanged: dlv_").count(), 10, "{cli}");
    assert_eq!(cli.matches("  + header x-foreign-currency: EUR\n").count(), 10, "{cli}");
    assert!(cli.contains("  +  \"foreign\": true,\n"), "{cli}");

    // A version that fails every call shows its failures, and what it failed with.
    let failing = engine.post(&path, &json!({"candidate": "rollout@3", "last": 20})).await;
    assert_eq!(failing.status, StatusCode::OK, "{failing:?}");
    assert_eq!(
        (&failing.json["failed"], &failing.json["deliveries"]),
        (&json!(20), &json!(20))
    );
    for result in failing.json["results"].as_array().unwrap() {
        assert_eq!(result["outcome"], "failed");
        let error = result["candidate"]["error"].as_str().unwrap();
        assert!(error.contains("panicked"), "{error}");
        assert!(result["attached"].get("error").is_none(), "{result}");
    }

    // Mistakes are named.
    let unknown = engine.post(&path, &json!({"candidate": "rollout@9"})).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY, "{unknown:?}");
    assert!(unknown.error_about("candidate").is_some(), "{unknown:?}");
    let too_many = engine
        .post(&path, &json!({"candidate": "rollout@2", "last": 100000}))
        .await;
    assert!(too_many.error_about("last").is_some(), "{too_many:?}");

    // Nothing was sent by any diff, and nothing changed the deliveries.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 50, "a diff sends nothing");
    assert_eq!(engine.delivery_ids(&partner, "delivered").await.len(), 50);
    engine.assert_healthy().await;
}

async fn a_rollback_brings_the_earlier_version_back_for_the_next_postback(backend: Backend) {
    let engine = Engine::start_on(backend).await;
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Rolled back").await;
    let v1 = upload_version(&engine, &partner, "rollout", "trivial").await["id"].clone();
    let v2 = upload_version(&engine, &partner, "rollout", "foreign").await["id"].clone();

    // A name alone attaches its latest version, pinned: a later upload changes nothing.
    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!("rollout");
    let saved = engine.put_settings(&partner, &settings).await;
    assert_eq!(saved.json["settings"]["transform_plugin"], v2, "{saved:?}");
    let v3 = upload_version(&engine, &partner, "rollout", "panic").await;
    assert_eq!(engine.settings(&partner).await["settings"]["transform_plugin"], v2);

    let first = engine.send_event(&event_in(&partner, 1, "EUR")).await;
    engine.wait_status(&partner, &first, "delivered").await;
    assert_eq!(receiver.wait_hits(1).await[0].header("x-foreign-currency"), Some("EUR"));
    let delivery = engine.delivery(&partner, &first).await;
    assert_eq!(attempts(&delivery)[0]["plugins"]["transform"]["version"], "rollout@2");

    // An attached version cannot be deleted; one that is not attached can.
    let plugin = |id: &Value| format!("/v1/partners/{}/plugins/{}", partner.id, id.as_str().unwrap());
    let refused = engine.raw(reqwest::Method::DELETE, &plugin(&v2), None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert!(
        refused.json["detail"].as_str().unwrap().contains("rollout@2"),
        "{refused:?}"
    );
    let deleted = engine.raw(reqwest::Method::DELETE, &plugin(&v3["id"]), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");

    // One call rolls back to the version before.
    let path = format!("{}/rollback", settings_path(&partner));
    let rolled = engine.post(&path, &json!({})).await;
    assert_eq!(rolled.status, StatusCode::OK, "{rolled:?}");
    assert_eq!(
        (&rolled.json["slot"], &rolled.json["from"], &rolled.json["to"]),
        (&json!("transform"), &json!("rollout@2"), &json!("rollout@1"))
    );
    assert_eq!(rolled.json["settings"]["settings"]["transform_plugin"], v1);

    let second = engine.send_event(&event_in(&partner, 2, "EUR")).await;
    engine.wait_status(&partner, &second, "delivered").await;
    let hits = receiver.wait_hits(2).await;
    let hit = hits
        .iter()
        .find(|h| h.webhook_id() == second)
        .expect("the second postback");
    assert_eq!(hit.header("x-foreign-currency"), None, "the earlier version sent it");
    let delivery = engine.delivery(&partner, &second).await;
    assert_eq!(attempts(&delivery)[0]["plugins"]["transform"]["version"], "rollout@1");

    // There is nothing before the first version; a version named is attached as asked.
    let nothing = engine.post(&path, &json!({})).await;
    assert_eq!(nothing.status, StatusCode::CONFLICT, "{nothing:?}");
    assert!(
        nothing.json["detail"].as_str().unwrap().contains("earliest"),
        "{nothing:?}"
    );
    let forward = postwire(&[
        "plugin",
        "rollback",
        "--server",
        &engine.base,
        "--partner",
        &partner.id,
        "--token",
        TOKEN,
        "--to",
        "rollout@2",
    ]);
    eprintln!("{forward}");
    assert!(
        forward.starts_with("transform: rollout@1 -> rollout@2 (settings version "),
        "{forward}"
    );
    assert_eq!(engine.settings(&partner).await["settings"]["transform_plugin"], v2);
    let missing = engine.post(&path, &json!({"to": "rollout@3"})).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY, "{missing:?}");
    engine.assert_healthy().await;
}

async fn a_canary_that_fails_is_detached_and_its_postbacks_go_with_the_attached_version(backend: Backend) {
    let engine = Engine::start_on(backend).await;
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Canaried").await;
    let [_, v2, v3] = three_versions(&engine, &partner).await;
    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!("rollout@2");
    engine.put_settings(&partner, &settings).await;

    let path = format!("{}/canary", settings_path(&partner));
    let started = engine
        .put(
            &path,
            &json!({"candidate": "rollout@3", "share_percent": 100, "window_secs": 1, "min_calls": 3, "margin_percent": 10}),
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    assert_eq!(started.json["state"], "running");
    assert_eq!(started.json["candidate"], "rollout@3");
    assert_eq!(started.json["attached"], "rollout@2");
    assert_eq!(started.json["plugin_id"], v3);
    // While it runs, the candidate cannot be deleted.
    let refused = engine
        .raw(
            reqwest::Method::DELETE,
            &format!("/v1/partners/{}/plugins/{v3}", partner.id),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");

    // Its window's first postbacks: each fails with the candidate, and goes with v2.
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(engine.send_event(&event_in(&partner, n, "EUR")).await);
    }
    for id in &ids {
        engine.wait_status(&partner, id, "delivered").await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Past the window: the next postbacks' counts detach the canary.
    for n in 3..6 {
        ids.push(engine.send_event(&event_in(&partner, n, "EUR")).await);
    }
    for id in &ids {
        engine.wait_status(&partner, id, "delivered").await;
    }
    let canary = eventually("the canary to be detached", async || {
        let canary = engine.get(&path).await.json;
        (canary["state"] == "detached").then_some(canary)
    })
    .await;
    let reason = canary["reason"].as_str().unwrap();
    assert!(reason.contains("the candidate failed"), "{reason}");
    assert!(reason.contains("(100.0 %)"), "{reason}");
    assert!(canary["ended_at"].is_i64(), "{canary}");

    // Every postback reached the receiver once, transformed by the attached version.
    let hits = receiver.wait_hits(6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 6, "{:?}", receiver.hits());
    for hit in &hits {
        assert_eq!(hit.header("x-foreign-currency"), Some("EUR"));
    }
    // The attempt log says which version served each attempt.
    for id in &ids[..3] {
        let delivery = engine.delivery(&partner, id).await;
        let tries = attempts(&delivery);
        assert_eq!(tries.len(), 2, "{delivery}");
        let (canaried, attached) = (&tries[0]["plugins"]["transform"], &tries[1]["plugins"]["transform"]);
        assert_eq!(
            (&canaried["version"], &canaried["canary"]),
            (&json!("rollout@3"), &json!(true))
        );
        assert_eq!(tries[0]["verdict"], "fail");
        assert_eq!(
            (&attached["version"], &attached["plugin"]),
            (&json!("rollout@2"), &json!(v2))
        );
        assert!(attached.get("canary").is_none(), "{attached}");
        assert_eq!(tries[1]["verdict"], "success");
    }
    // Once detached, postbacks run the attached version at their first attempt.
    let after = engine.send_event(&event_in(&partner, 9, "EUR")).await;
    let delivery = engine.wait_status(&partner, &after, "delivered").await;
    let tries = attempts(&delivery);
    assert_eq!(tries.len(), 1, "{delivery}");
    assert_eq!(tries[0]["plugins"]["transform"]["version"], "rollout@2");

    // Nothing runs now: stopping says so; a new canary can be started and promoted.
    let stopped = engine.raw(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(stopped.status, StatusCode::CONFLICT, "{stopped:?}");
    let again = engine
        .put(&path, &json!({"candidate": "rollout@1", "share_percent": 5}))
        .await;
    assert_eq!(again.json["state"], "running", "{again:?}");
    let promoted = engine.post_empty(&format!("{path}/promote")).await;
    assert_eq!(promoted.json["state"], "promoted", "{promoted:?}");
    assert_eq!(
        engine.settings(&partner).await["settings"]["transform_plugin"],
        again.json["plugin_id"]
    );
    // The attached version itself is no candidate.
    let same = engine.put(&path, &json!({"candidate": "rollout@1"})).await;
    assert_eq!(same.status, StatusCode::UNPROCESSABLE_ENTITY, "{same:?}");
    engine.assert_healthy().await;
}

async fn a_classifier_diff_replays_the_stored_answers_and_compares_verdicts(backend: Backend) {
    let engine = Engine::start_on(backend).await;
    // Every fourth postback is acknowledged with `"status": "success"`, the others with "ok".
    let receiver = Receiver::start(|hit, _| {
        let inquiry = hit.json()["inquiry_id"].as_str().unwrap_or_default().to_owned();
        let n: usize = inquiry.trim_start_matches("inq-r").parse().unwrap_or(1);
        Reply::ok(if n.is_multiple_of(4) {
            r#"{"status":"success"}"#
        } else {
            r#"{"status":"ok"}"#
        })
    })
    .await;
    let partner = engine.create_partner("Classified").await;
    // Version 1 takes only "ok" for a success; version 2 takes "success" too.
    for (plugin, version) in [
        (postwire_test_plugins::bytes("json-ack"), 1),
        (postwire_test_plugins::example_bytes("json-status"), 2),
    ] {
        let answer = engine
            .raw(
                reqwest::Method::POST,
                &format!("/v1/partners/{}/plugins?name=acks", partner.id),
                Some(plugin),
            )
            .await;
        assert_eq!(answer.json["version"], version, "{answer:?}");
    }
    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["classify_plugin"] = json!("acks@1");
    assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);
    let mut ids = Vec::new();
    for n in 0..12usize {
        ids.push(engine.send_event(&event_in(&partner, n, "USD")).await);
    }
    for id in &ids {
        engine.wait_attempts(&partner, id, 1).await;
    }

    let diff = engine
        .post(
            &format!("/v1/partners/{}/plugins/diff", partner.id),
            &json!({"candidate": "acks", "last": 12}),
        )
        .await;
    assert_eq!(diff.status, StatusCode::OK, "{diff:?}");
    let diff = diff.json;
    assert_eq!(
        (&diff["slot"], &diff["candidate"], &diff["attached"]),
        (&json!("classify"), &json!("acks@2"), &json!("acks@1"))
    );
    assert_eq!(
        (&diff["identical"], &diff["changed"], &diff["failed"]),
        (&json!(9), &json!(3), &json!(0)),
        "{diff}"
    );
    for result in diff["results"].as_array().unwrap() {
        let n = ids
            .iter()
            .position(|id| result["delivery_id"] == **id)
            .expect("one of the deliveries");
        assert_eq!(result["response_status"], 200, "{result}");
        if n.is_multiple_of(4) {
            assert_eq!(result["outcome"], "changed", "{result}");
            assert_eq!(result["attached"]["verdict"]["verdict"], "retry", "{result}");
            assert_eq!(result["candidate"]["verdict"]["verdict"], "success", "{result}");
        } else {
            assert_eq!(result["outcome"], "identical", "{result}");
            assert_eq!(result["candidate"]["verdict"]["verdict"], "success", "{result}");
        }
        assert!(result["candidate"]["fuel_used"].as_u64().unwrap() > 0, "{result}");
    }
    engine.assert_healthy().await;
}
