//! Plugins through the whole engine: uploaded over the API, attached to settings, run in the
//! pipeline against a real receiver, shown in the attempt log; hostile ones contained.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Uploads `name` (a crate of plugins/guests) for `partner`.
async fn upload(engine: &Engine, partner: &Partner, name: &str) -> Answer {
    engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name={name}", partner.id),
            Some(postwire_test_plugins::bytes(name)),
        )
        .await
}

async fn upload_ok(engine: &Engine, partner: &Partner, name: &str) -> String {
    let answer = upload(engine, partner, name).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.json["id"].as_str().expect("an id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_and_a_classifier_shape_a_postback_end_to_end() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok(r#"{"status":"ok"}"#)).await;
    let partner = engine.create_partner("Plugged").await;

    let answer = upload(&engine, &partner, "reshape").await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let wasm = postwire_test_plugins::bytes("reshape");
    assert_eq!(answer.json["sha256"], postwire_plugins::Host::sha256(&wasm));
    assert_eq!(answer.json["size"], wasm.len());
    assert_eq!(answer.json["exports"], json!(["transform"]));
    let reshape = answer.json["id"].as_str().unwrap().to_owned();
    assert!(reshape.starts_with("plg_"));
    let ack = upload_ok(&engine, &partner, "json-ack").await;
    let list = engine.get(&format!("/v1/partners/{}/plugins", partner.id)).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 2);
    let one = engine
        .get(&format!("/v1/partners/{}/plugins/{reshape}", partner.id))
        .await;
    assert_eq!(one.json["name"], "reshape");

    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!(reshape);
    settings["classify_plugin"] = json!(ack);
    settings["plugin_config"] = json!({"key_prefix": "p_", "api_key": "s3cret"});
    let saved = engine.put_settings(&partner, &settings).await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    assert_eq!(saved.json["settings"]["plugin_config"]["api_key"], "[redacted]");

    let event = created(&partner, "evt_p1", "inq-p1");
    let delivery_id = engine.send_event(&event).await;
    let delivery = engine.wait_status(&partner, &delivery_id, "delivered").await;

    let hits = receiver.wait_hits(1).await;
    let hit = &hits[0];
    assert_eq!(hit.header("x-reshaped"), Some("1"));
    let body = hit.json();
    assert_eq!(body["p_inquiry"]["p_id"], "inq-p1");
    assert!(body["p_money"]["p_amount_cents"].is_i64(), "{body}");
    assert_signed(hit, &partner.secret, &delivery_id);

    let attempt = &attempts(&delivery)[0];
    assert_eq!(attempt["verdict"], "success");
    let transform = &attempt["plugins"]["transform"];
    assert_eq!(transform["plugin"], reshape);
    assert!(transform["fuel_used"].as_u64().unwrap() > 0);
    assert!(transform["duration_us"].as_u64().is_some());
    assert_eq!(transform["logs"][0]["level"], "info");
    assert_eq!(
        attempt["request"]["body"], hit.body,
        "the request as sent is the transform's output"
    );
    let classify = &attempt["plugins"]["classify"];
    assert_eq!(classify["output"]["verdict"], "success");
    assert!(classify["fuel_used"].as_u64().unwrap() > 0);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classifier_decides_on_a_200_that_says_error() {
    let engine = Engine::start().await;
    let receiver = Receiver::sequence(
        vec![Reply::ok(r#"{"status":"error","retryable":true,"message":"busy"}"#)],
        Reply::ok(r#"{"status":"ok"}"#),
    )
    .await;
    let partner = engine.create_partner("Ack").await;
    let ack = upload_ok(&engine, &partner, "json-ack").await;
    let mut settings = simple_settings(&receiver.url("/pb"));
    settings["classify_plugin"] = json!(ack);
    assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);
    let delivery_id = engine.send_event(&created(&partner, "evt_a1", "inq-a1")).await;
    let delivery = engine.wait_status(&partner, &delivery_id, "delivered").await;
    assert_eq!(verdicts(&delivery), ["retry", "success"]);
    let first = &attempts(&delivery)[0];
    assert!(
        first["error"].as_str().unwrap().starts_with("classify plugin:"),
        "{first}"
    );
    assert_eq!(first["response_status"], 200);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_may_name_only_the_partners_own_plugins_with_the_right_export() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let partner = engine.create_partner("A").await;
    let other = engine.create_partner("B").await;
    let ack = upload_ok(&engine, &partner, "json-ack").await;
    let foreign = upload_ok(&engine, &other, "reshape").await;
    let mut settings = simple_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!(ack);
    let answer = engine.put_settings(&partner, &settings).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = answer.error_about("transform_plugin").expect("names the field");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("does not export transform"),
        "{error}"
    );

    settings["transform_plugin"] = json!(foreign);
    let answer = engine.put_settings(&partner, &settings).await;
    assert!(
        answer.error_about("transform_plugin").unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("names no plugin of this partner")
    );

    // A name names the latest version of that name, or nothing; an id must be one.
    settings["transform_plugin"] = json!("no-such-plugin");
    let answer = engine.put_settings(&partner, &settings).await;
    let message = answer.error_about("transform_plugin").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.starts_with("names no plugin of this partner"), "{message}");
    assert!(message.contains("name@version"), "{message}");
    settings["transform_plugin"] = json!("plg_not/an/id");
    let answer = engine.put_settings(&partner, &settings).await;
    assert!(
        answer.error_about("transform_plugin").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("not a plugin id")
    );

    // In use, a plugin cannot be deleted; once unused it can.
    settings["transform_plugin"] = Value::Null;
    settings["classify_plugin"] = json!(ack);
    assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);
    let path = format!("/v1/partners/{}/plugins/{ack}", partner.id);
    let refused = engine.raw(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    settings["classify_plugin"] = Value::Null;
    assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);
    assert_eq!(
        engine.raw(reqwest::Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(engine.get(&path).await.status, StatusCode::NOT_FOUND);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_that_are_not_plugins_are_refused_with_the_reason() {
    let engine = Engine::start().await;
    let partner = engine.create_partner("Uploader").await;
    let path = format!("/v1/partners/{}/plugins?name=x", partner.id);
    let refuse = async |bytes: Vec<u8>| {
        let answer = engine.raw(reqwest::Method::POST, &path, Some(bytes)).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:?}");
        answer.error_about("body").expect("names the body")["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        refuse(postwire_test_plugins::bytes("socket"))
            .await
            .starts_with("it imports wasi:sockets/")
    );
    assert!(
        refuse(b"\0asm\x01\0\0\0".to_vec())
            .await
            .contains("core WebAssembly module")
    );
    assert!(
        refuse(b"random bytes, not wasm".to_vec())
            .await
            .starts_with("not a WebAssembly binary")
    );
    assert!(refuse(Vec::new()).await.starts_with("the upload is empty"));
    let no_name = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins", partner.id),
            Some(postwire_test_plugins::bytes("trivial")),
        )
        .await;
    assert!(no_name.error_about("name").is_some(), "{no_name:?}");
    assert_eq!(
        engine.get(&format!("/v1/partners/{}/plugins", partner.id)).await.json["data"],
        json!([])
    );
    engine.assert_healthy().await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_plugin_fails_its_own_postbacks_while_others_flow() {
    // Fuel enough that every hostile call runs until its 100 ms deadline: 100 of them keep the
    // hostile partner's two sandboxes busy for seconds.
    let engine = Engine::start_with(|options| options.plugin_fuel = Some(1_000_000_000_000)).await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let hostile = engine.create_partner("Hostile").await;
    let spin = upload_ok(&engine, &hostile, "spin").await;
    let mut settings = simple_settings(&receiver.url("/hostile"));
    settings["transform_plugin"] = json!(spin);
    assert_eq!(engine.put_settings(&hostile, &settings).await.status, StatusCode::OK);
    let calm = engine
        .partner_with("Calm", &simple_settings(&receiver.url("/calm")))
        .await;

    // The hostile partner's flood first: its plugin burns its whole fuel budget on every call.
    let hostile_events: Vec<Value> = (0..100)
        .map(|i| created(&hostile, &format!("evt_h{i}"), &format!("inq-h{i}")))
        .collect();
    assert_eq!(engine.post_batch(&hostile_events).await.status, StatusCode::ACCEPTED);
    eventually("the hostile plugin to be running", async || {
        (!engine.delivery_ids(&hostile, "failed").await.is_empty()).then_some(())
    })
    .await;
    // While it runs, the calm partner's postbacks go out.
    let calm_events: Vec<Value> = (0..30)
        .map(|i| created(&calm, &format!("evt_c{i}"), &format!("inq-c{i}")))
        .collect();
    assert_eq!(engine.post_batch(&calm_events).await.status, StatusCode::ACCEPTED);
    eventually("the calm partner's postbacks", async || {
        let delivered = engine.delivery_ids(&calm, "delivered").await;
        (delivered.len() == 30).then_some(())
    })
    .await;
    let hostile_failed = engine.delivery_ids(&hostile, "failed").await.len();
    assert!(
        hostile_failed < 100,
        "the calm partner's postbacks waited until every hostile one had failed"
    );
    let failed = eventually("the hostile partner's postbacks to fail", async || {
        let failed = engine.delivery_ids(&hostile, "failed").await;
        (failed.len() == 100).then_some(failed)
    })
    .await;
    let delivery = engine.delivery(&hostile, &failed[0]).await;
    let attempt = &attempts(&delivery)[0];
    assert_eq!(
        attempt["error"],
        "transform plugin failed: ran past its 100 ms deadline"
    );
    assert!(attempt["plugins"]["transform"]["duration_us"].as_u64().unwrap() >= 100_000);
    assert!(
        receiver.hits().iter().all(|hit| hit.path == "/calm"),
        "nothing of the hostile partner was sent"
    );
    assert_eq!(receiver.hits().len(), 30);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_output_fuel_memory_time_and_logs() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let partner = engine.partner_with("Dry", &sample_settings(&receiver.url("/pb"))).await;
    let reshape = upload_ok(&engine, &partner, "reshape").await;
    let ack = upload_ok(&engine, &partner, "json-ack").await;

    let run = engine
        .post(
            &format!("/v1/partners/{}/plugins/{reshape}/run", partner.id),
            &json!({}),
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{run:?}");
    let transform = &run.json["transform"];
    assert_eq!(transform["input"]["url"], receiver.url("/pb"));
    let output: Value = serde_json::from_str(transform["output"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(output["inquiry"]["id"], "1000123");
    for key in ["fuel_used", "peak_memory", "duration_us"] {
        assert!(transform[key].as_u64().unwrap() > 0, "{key}: {transform}");
    }
    assert!(!transform["logs"].as_array().unwrap().is_empty());

    let body = json!({"response": {"status": 200, "body": "{\"status\":\"error\",\"retryable\":false,\"message\":\"unknown order\"}"}});
    let run = engine
        .post(&format!("/v1/partners/{}/plugins/{ack}/run", partner.id), &body)
        .await;
    assert_eq!(run.json["classify"]["output"]["verdict"], "fail", "{run:?}");
    assert!(
        run.json["classify"]["output"]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown order")
    );
    let missing = engine
        .post(&format!("/v1/partners/{}/plugins/{ack}/run", partner.id), &json!({}))
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(receiver.hits().is_empty(), "a dry run sends nothing");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_survive_a_restart_without_compiling_again() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let options = || {
        let mut options = Engine::options(&dir);
        options.plugin_cache = Some(dir.path().join("artifacts"));
        options
    };
    let start = async |options: postwire::serve::ServeOptions| {
        let config = options.resolve().unwrap();
        postwire::serve::start(config, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap()
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .default_headers(operator_headers())
        .build()
        .unwrap();
    let first = start(options()).await;
    let base = format!("http://{}", first.addr);
    let partner: Value = http
        .post(format!("{base}/v1/partners"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let partner_id = partner["id"].as_str().unwrap().to_owned();
    let plugin: Value = http
        .post(format!("{base}/v1/partners/{partner_id}/plugins?name=reshape"))
        .body(postwire_test_plugins::bytes("reshape"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = plugin["id"].clone();
    // No rate limit, so that the postbacks after the restart go out together.
    settings["max_requests_per_sec"] = Value::Null;
    let saved = http
        .put(format!("{base}/v1/partners/{partner_id}/settings/action-inquiry"))
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["plugin_cache"], json!({"hits": 0, "compiles": 1}));
    first.stop().await;

    let second = start(options()).await;
    let base = format!("http://{}", second.addr);
    // Twenty postbacks arriving together after the restart load the plugin once.
    let partner = Partner {
        id: partner_id.clone(),
        secret: String::new(),
    };
    let events: Vec<Value> = (0..20)
        .map(|i| created(&partner, &format!("evt_r{i}"), &format!("inq-r{i}")))
        .collect();
    let accepted = http
        .post(format!("{base}/v1/events/batch"))
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let hits = receiver.wait_hits(20).await;
    assert!(hits.iter().all(|hit| hit.header("x-reshaped") == Some("1")));
    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["plugin_cache"],
        json!({"hits": 1, "compiles": 0}),
        "the artifact was loaded, not compiled"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    second.stop().await;
}

/// The values a test of redaction hides: none may appear where Postwire shows a request or a
/// configuration.
const SECRETS: &[&str] = &[
    "pass-secret",
    "q-credential",
    "h-credential",
    "h-cookie",
    "c-credential",
    "c-cookie",
    "c-key",
    "p-token",
];

fn assert_hidden(shown: &Value, place: &str) {
    let text = shown.to_string();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{place} shows {secret}: {text}");
    }
}

/// The value of header `name` in a request as shown (`[[name, value], ...]`).
fn shown_header<'a>(request: &'a Value, name: &str) -> &'a Value {
    request["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .find(|h| h[0] == name)
        .map(|h| &h[1])
        .unwrap_or_else(|| panic!("no header {name} in {request}"))
}

/// The same secret-looking names (here with "credential", "cookie", "key" and "token") are
/// hidden by the same rules wherever Postwire shows a request or a configuration: the attempt
/// log, the test postback, settings as shown, the dry run and the local runner. A URL's
/// userinfo is hidden too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_hidden_by_the_same_rules_everywhere() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Secrets").await;
    let reshape = upload_ok(&engine, &partner, "reshape").await;
    let url = receiver
        .url("/pb?inquiry={ActionInquiryId}&credential=q-credential")
        .replacen("://", "://user:pass-secret@", 1);
    let mut settings = sample_settings(&url);
    settings["headers"]["X-Credential"] = json!("h-credential");
    settings["headers"]["X-Session-Cookie"] = json!("h-cookie");
    settings["transform_plugin"] = json!(reshape);
    settings["plugin_config"] = json!({
        "credential": "c-credential",
        "session_cookie": "c-cookie",
        "api_key": "c-key",
        "headers": {"X-Plugin-Token": "p-token", "X-Plugin-Tag": "visible"},
    });
    let saved = engine.put_settings(&partner, &settings).await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");

    // The receiver gets every value.
    let id = engine.send_event(&created(&partner, "evt_hidden_1", "inq-h")).await;
    let delivery = engine.wait_status(&partner, &id, "delivered").await;
    let hit = &receiver.wait_hits(1).await[0];
    assert_eq!(hit.header("x-credential"), Some("h-credential"));
    assert_eq!(hit.header("x-session-cookie"), Some("h-cookie"));
    assert_eq!(hit.header("x-plugin-token"), Some("p-token"));
    assert_eq!(hit.query.as_deref(), Some("inquiry=inq-h&credential=q-credential"));

    // The attempt log.
    let logged = &attempts(&delivery)[0]["request"];
    assert_hidden(logged, "the attempt log");
    for name in ["X-Credential", "X-Session-Cookie", "X-Plugin-Token"] {
        assert_eq!(shown_header(logged, name), "[redacted]", "{logged}");
    }
    assert_eq!(shown_header(logged, "X-Plugin-Tag"), "visible");
    let logged_url = logged["url"].as_str().expect("a url");
    assert!(logged_url.starts_with("http://[redacted]@127.0.0.1:"), "{logged_url}");
    assert!(logged_url.contains("inquiry=inq-h"), "{logged_url}");

    // The test postback.
    let test = engine.post_empty(&format!("{}/test", settings_path(&partner))).await;
    assert_eq!(test.json["verdict"], "success", "{test:?}");
    assert_hidden(&test.json["request"], "the test postback");
    assert_eq!(shown_header(&test.json["request"], "X-Credential"), "[redacted]");

    // Settings as shown.
    let shown = engine.settings(&partner).await;
    let config = &shown["settings"]["plugin_config"];
    assert_hidden(config, "the settings");
    for key in ["credential", "session_cookie", "api_key"] {
        assert_eq!(config[key], "[redacted]", "{config}");
    }
    assert_eq!(config["headers"]["X-Plugin-Token"], "[redacted]");
    assert_eq!(config["headers"]["X-Plugin-Tag"], "visible");

    // The dry run, with the saved settings and plugin_config.
    let dry = engine
        .post(
            &format!("/v1/partners/{}/plugins/{reshape}/run", partner.id),
            &json!({}),
        )
        .await;
    assert_eq!(dry.status, StatusCode::OK, "{dry:?}");
    assert_hidden(&dry.json, "the dry run");
    let transform = &dry.json["transform"];
    assert_eq!(shown_header(&transform["input"], "X-Credential"), "[redacted]");
    assert_eq!(shown_header(&transform["output"], "X-Plugin-Token"), "[redacted]");
    assert_eq!(shown_header(&transform["output"], "X-Plugin-Tag"), "visible");
    let dry_url = transform["input"]["url"].as_str().expect("a url");
    assert!(dry_url.starts_with("http://[redacted]@127.0.0.1:"), "{dry_url}");

    // The local runner, with the same settings and plugin_config.
    let dir = tempfile::tempdir().unwrap();
    let settings_file = dir.path().join("settings.json");
    std::fs::write(&settings_file, settings.to_string()).unwrap();
    let input = postwire::runner::Input {
        wasm: postwire_test_plugins::path("reshape"),
        event: None,
        settings: Some(settings_file),
        config: None,
        response: None,
    };
    let (local, failed) = postwire::runner::run(input, postwire_plugins::Limits::default())
        .await
        .expect("the runner runs");
    assert!(!failed, "{local}");
    assert_hidden(&local, "the local runner");
    for step in ["input", "output"] {
        assert_eq!(
            local["transform"][step]["headers"], transform[step]["headers"],
            "the runner and the dry run show the same {step} headers"
        );
        assert_eq!(local["transform"][step]["url"], transform[step]["url"]);
    }
    engine.stop().await;
}

/// A transform plugin that returns a header Postwire writes itself fails the postback with a
/// reason naming the header, and nothing is sent; the dry run and the test postback say the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_that_sets_a_header_postwire_writes_is_refused() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Reserved").await;
    let reshape = upload_ok(&engine, &partner, "reshape").await;
    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!(reshape);
    for (n, header) in ["Transfer-Encoding", "Content-Length"].into_iter().enumerate() {
        let mut headers = serde_json::Map::new();
        headers.insert(header.to_owned(), json!("1"));
        settings["plugin_config"] = json!({ "headers": headers });
        assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);
        let reason = format!("it set the header {header}, which Postwire writes itself; remove it");

        let event = created(&partner, &format!("evt_reserved_{n}"), &format!("inq-r{n}"));
        let id = engine.send_event(&event).await;
        let delivery = engine.wait_status(&partner, &id, "failed").await;
        let log = attempts(&delivery);
        assert_eq!(log.len(), 1, "{delivery:#}");
        assert_eq!(log[0]["verdict"], "fail");
        assert_eq!(log[0]["error"], format!("transform plugin failed: {reason}"));
        assert!(log[0]["request"].is_null(), "nothing was sent: {delivery:#}");
        assert_eq!(log[0]["plugins"]["transform"]["error"], reason.as_str());

        let dry = engine
            .post(
                &format!("/v1/partners/{}/plugins/{reshape}/run", partner.id),
                &json!({}),
            )
            .await;
        assert_eq!(dry.json["transform"]["error"], reason.as_str(), "{dry:?}");
        assert!(dry.json["transform"].get("output").is_none());

        let test = engine.post_empty(&format!("{}/test", settings_path(&partner))).await;
        assert_eq!(test.json["verdict"], "fail", "{test:?}");
        assert_eq!(test.json["error"], format!("transform plugin failed: {reason}"));
    }
    assert!(receiver.hits().is_empty(), "nothing was sent: {:?}", receiver.hits());
    engine.stop().await;
}

/// Hop-by-hop and proxy headers are refused from a transform exactly as settings refuse them
/// (one rule): the dry run names the header, settings naming it are refused, and a postback
/// whose transform sets one fails as the plugin's failure, not retried, with nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_may_not_set_hop_by_hop_or_proxy_headers() {
    // A dry run per header, more than a partner may make a minute by default.
    let engine = Engine::start_with(|options| options.tries_per_minute = Some(100)).await;
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Hop").await;
    let reshape = upload_ok(&engine, &partner, "reshape").await;
    for header in [
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Anything",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Host",
        "Content-Length",
        "webhook-signature",
    ] {
        // Settings may not name it.
        let mut settings = sample_settings(&receiver.url("/pb"));
        settings["headers"] = json!({ header: "x" });
        let refused = engine.put_settings(&partner, &settings).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{header}: {refused:?}"
        );
        assert!(
            refused.error_about(&format!("headers.{header}")).is_some(),
            "{refused:?}"
        );
        // Nor may the transform return it.
        let mut settings = sample_settings(&receiver.url("/pb"));
        settings["transform_plugin"] = json!(reshape);
        settings["plugin_config"] = json!({ "headers": { header: "gzip" } });
        assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);
        let dry = engine
            .post(
                &format!("/v1/partners/{}/plugins/{reshape}/run", partner.id),
                &json!({}),
            )
            .await;
        assert_eq!(
            dry.json["transform"]["error"],
            format!("it set the header {header}, which Postwire writes itself; remove it"),
            "{dry:?}"
        );
    }
    // The last settings (a transform that sets webhook-signature) stand; one with Connection:
    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!(reshape);
    settings["plugin_config"] = json!({ "headers": { "Connection": "upgrade" } });
    assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);
    let id = engine.send_event(&created(&partner, "evt_hop", "inq-hop")).await;
    let delivery = engine.wait_status(&partner, &id, "failed").await;
    let log = attempts(&delivery);
    assert_eq!(log.len(), 1, "failed at once, not retried: {delivery:#}");
    assert_eq!(log[0]["verdict"], "fail");
    assert!(receiver.hits().is_empty(), "nothing was sent: {:?}", receiver.hits());
    engine.stop().await;
}

/// Resident memory of this process (the engine runs in it), from /proc/self/statm.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Hostile uploads of every class are refused with the reason while another partner's
/// postbacks, through a transform plugin, are all delivered; the engine's resident memory is
/// measured around it (printed; asserted only against a generous bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_uploads_are_refused_and_other_partners_deliver() {
    use postwire_test_plugins::hostile;

    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let calm = engine.create_partner("Calm").await;
    let trivial_id = upload_ok(&engine, &calm, "trivial").await;
    let mut settings = sample_settings(&receiver.url("/pb"));
    settings["transform_plugin"] = json!(trivial_id);
    assert_eq!(engine.put_settings(&calm, &settings).await.status, StatusCode::OK);
    let hostile_partner = engine.create_partner("Hostile").await;
    let path = format!("/v1/partners/{}/plugins?name=bomb", hostile_partner.id);
    let before = resident_bytes();

    let trivial = postwire_test_plugins::bytes("trivial");
    let bombs = [
        (
            hostile::with_memories(&trivial, 64, 256),
            "can never run within the sandbox's limits: it creates",
        ),
        (
            hostile::with_memories(&trivial, 1, 256),
            "can never run within the sandbox's limits: its memories start at",
        ),
        (
            hostile::many_functions(150_000),
            "too costly to compile: it defines 150,000 functions; the limit is 50,000",
        ),
        (
            hostile::many_locals(5_000, 5_000),
            "too costly to compile: a function's locals times its blocks is 25,005,000",
        ),
    ];
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            engine
                .send_event(&created(&calm, &format!("evt_calm_{n}"), &format!("inq-c{n}")))
                .await,
        );
        let (wasm, reason) = &bombs[n % bombs.len()];
        let answer = engine.raw(reqwest::Method::POST, &path, Some(wasm.clone())).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:?}");
        let message = answer.error_about("body").expect("names the body")["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with(reason), "{message}");
    }
    for id in &ids {
        engine.wait_status(&calm, id, "delivered").await;
    }
    let after = resident_bytes();
    eprintln!(
        "engine resident memory: {} MiB before the hostile uploads, {} MiB after; 20 postbacks of the other \
         partner delivered",
        before >> 20,
        after >> 20
    );
    assert!(
        after.saturating_sub(before) < 512 << 20,
        "resident memory grew by {} MiB",
        (after - before) >> 20
    );
    engine.assert_healthy().await;
    engine.stop().await;
}

/// A partner keeps at most `--plugins-per-partner` plugins: the upload past it is refused (409)
/// naming the limit, the use and the fix, and stores nothing; deleting one makes room, and
/// another partner's quota is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_partners_plugin_count_are_refused() {
    let engine = Engine::start_with(|options| options.plugins_per_partner = Some(2)).await;
    let partner = engine.create_partner("Counted").await;
    let first = upload_ok(&engine, &partner, "trivial").await;
    upload_ok(&engine, &partner, "reshape").await;
    let refused = upload(&engine, &partner, "json-ack").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.content_type, "application/problem+json");
    let detail = refused.json["detail"].as_str().expect("a detail");
    for part in [
        format!("partner {} already keeps 2 plugins", partner.id),
        "it may keep 2 at most".to_owned(),
        format!("DELETE /v1/partners/{}/plugins/{{plugin_id}}", partner.id),
        "--plugins-per-partner".to_owned(),
    ] {
        assert!(detail.contains(part.as_str()), "{part:?} is missing from {detail:?}");
    }
    let list = engine.get(&format!("/v1/partners/{}/plugins", partner.id)).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 2, "nothing was stored");

    let other = engine.create_partner("Other").await;
    upload_ok(&engine, &other, "json-ack").await;

    let deleted = engine
        .raw(
            reqwest::Method::DELETE,
            &format!("/v1/partners/{}/plugins/{first}", partner.id),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    upload_ok(&engine, &partner, "json-ack").await;
    engine.assert_healthy().await;
    engine.stop().await;
}

/// A partner's plugins take at most `--plugin-mib-per-partner` MiB together: the upload that
/// would cross it is refused (409) with the sizes, its own and the partner's, and the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_partners_plugin_bytes_are_refused() {
    let engine = Engine::start_with(|options| {
        options.plugins_per_partner = Some(1000);
        options.plugin_mib_per_partner = Some(1);
    })
    .await;
    let partner = engine.create_partner("Weighed").await;
    let size = postwire_test_plugins::bytes("reshape").len();
    let fit = (1 << 20) / size;
    assert!(
        (1..100).contains(&fit),
        "reshape is {size} bytes: the test needs a few to fill 1 MiB"
    );
    for _ in 0..fit {
        upload_ok(&engine, &partner, "reshape").await;
    }
    let refused = upload(&engine, &partner, "reshape").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    let detail = refused.json["detail"].as_str().expect("a detail");
    for part in [
        format!("this plugin's {:.1} KiB", size as f64 / 1024.0),
        "over the 1 MiB they may take together".to_owned(),
        format!("in {fit} plugins now"),
        "--plugin-mib-per-partner".to_owned(),
    ] {
        assert!(detail.contains(part.as_str()), "{part:?} is missing from {detail:?}");
    }
    let list = engine.get(&format!("/v1/partners/{}/plugins", partner.id)).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), fit);
    // A smaller plugin may still fit in what is left.
    let left = (1 << 20) - fit * size;
    let trivial = postwire_test_plugins::bytes("trivial").len();
    let answer = upload(&engine, &partner, "trivial").await;
    if trivial <= left {
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    } else {
        assert_eq!(answer.status, StatusCode::CONFLICT, "{answer:?}");
    }
    engine.assert_healthy().await;
    engine.stop().await;
}

/// A cached artifact with a flipped byte is never loaded: after a restart the plugin is
/// compiled again from the binary in the database and still works, and `/metrics` counts the
/// rejected artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_artifact_is_compiled_again_and_the_plugin_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let options = || {
        let mut options = Engine::options(&dir);
        options.plugin_cache = Some(artifacts.clone());
        options
    };
    let start = async |options: postwire::serve::ServeOptions| {
        let config = options.resolve().unwrap();
        postwire::serve::start(config, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap()
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .default_headers(operator_headers())
        .build()
        .unwrap();
    let get = async |url: String| -> (StatusCode, String) {
        let answer = http.get(url).send().await.unwrap();
        (answer.status(), answer.text().await.unwrap())
    };
    let first = start(options()).await;
    let base = format!("http://{}", first.addr);
    let partner: Value = http
        .post(format!("{base}/v1/partners"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let partner_id = partner["id"].as_str().unwrap().to_owned();
    let wasm = postwire_test_plugins::bytes("reshape");
    let plugin: Value = http
        .post(format!("{base}/v1/partners/{partner_id}/plugins?name=reshape"))
        .body(wasm.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plugin_id = plugin["id"].as_str().unwrap().to_owned();
    first.stop().await;

    let path = artifacts.join(format!("{}.cwasm", postwire_plugins::Host::sha256(&wasm)));
    let mut artifact = std::fs::read(&path).unwrap();
    let middle = artifact.len() / 2;
    artifact[middle] ^= 0x40;
    std::fs::write(&path, &artifact).unwrap();

    let second = start(options()).await;
    let base = format!("http://{}", second.addr);
    let body = json!({"request": {"method": "POST", "url": "https://partner.example/pb", "body": "{}"}});
    let run = http
        .post(format!("{base}/v1/partners/{partner_id}/plugins/{plugin_id}/run"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), StatusCode::OK);
    let run: Value = run.json().await.unwrap();
    assert!(run["transform"]["output"]["body"].is_string(), "{run}");
    let (_, health) = get(format!("{base}/health")).await;
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["plugin_cache"],
        json!({"hits": 0, "compiles": 1}),
        "the damaged artifact was not loaded"
    );
    let (status, metrics) = get(format!("{base}/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "postwire_plugin_artifacts_total{result=\"rejected\"} 1",
        "postwire_plugin_artifacts_total{result=\"cached\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} is missing from:\n{metrics}");
    }
    assert_ne!(std::fs::read(&path).unwrap(), artifact, "the artifact was rewritten");
    second.stop().await;
}
