//! The TypeScript examples of `examples/plugins-ts`, built with the JavaScript SDK (`sdk/js`)
//! from packages installed from the npm registry: run through the plugin host side by side
//! with their Rust twins of `examples/plugins` on a corpus of requests and answers, and through
//! a full postback to a receiver on 127.0.0.1.
//!
//! Without Node.js and npm these tests say that they were skipped; under CI (`CI` set) they
//! must run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use postwire_plugins::types::{Event, Request, Response};
use postwire_plugins::{Host, Limits, Plugin};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where compiled artifacts are kept between runs: a JavaScript component is about 12 MiB, and
/// compiling it in a debug build takes minutes.
fn artifact_cache() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target.join("typescript-plugins")
}

/// `npm`, if Node.js and npm are installed; under CI their absence fails the test.
fn npm() -> Option<&'static str> {
    common::node_and_npm("the TypeScript plugin tests").then_some("npm")
}

/// The example's component: built (`npm ci` in the SDK and the example, then `npm run build`)
/// once per change of its sources, the SDK or the contract, and kept in [`artifact_cache`]
/// under their digest. componentize-js does not give the same bytes twice, and a new binary
/// costs minutes of compiling in a debug build.
fn built(name: &str) -> Option<Vec<u8>> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let npm = npm()?;
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let sdk = repo().join("sdk/js");
    let example = repo().join("examples/plugins-ts").join(name);
    let mut inputs = Vec::new();
    for file in [
        repo().join("sdk/wit/postwire.wit"),
        sdk.join("index.js"),
        sdk.join("guest.js"),
        sdk.join("bin/postwire-plugin-build.mjs"),
        sdk.join("package-lock.json"),
        example.join("src/plugin.ts"),
        example.join("package.json"),
        example.join("package-lock.json"),
        example.join("tsconfig.json"),
    ] {
        inputs.extend(std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())));
    }
    let kept = artifact_cache().join(format!("{name}-{}.wasm", &Host::sha256(&inputs)[..16]));
    if let Ok(bytes) = std::fs::read(&kept) {
        return Some(bytes);
    }
    for dir in [&sdk, &example] {
        run(Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir));
    }
    run(Command::new(npm).args(["run", "build"]).current_dir(&example));
    let path = example.join(format!("dist/{name}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::create_dir_all(artifact_cache()).expect("the cache folder");
    std::fs::write(&kept, &bytes).expect("the built component is kept");
    Some(bytes)
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One host for the run, with the server's limits but the time to compile a large component
/// in a debug build, and an artifact cache the engine's uploads below read too.
fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let limits = Limits {
            compile_deadline: Duration::from_secs(1800),
            ..Limits::default()
        };
        Host::new(limits, Some(artifact_cache())).expect("a plugin host")
    })
}

/// Loads one plugin at a time, so that a component is compiled once per run and then found
/// in the artifact cache.
fn load(host: &Host, bytes: &[u8]) -> Plugin {
    static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    host.load(bytes).expect("the plugin loads with the upload rules")
}

/// The sample events of `examples/events`, as the host passes them: every value in text form.
fn sample_events() -> Vec<Event> {
    ["created", "resolved"]
        .iter()
        .map(|name| {
            let path = repo().join(format!("examples/events/{name}.json"));
            let event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let data = event["data"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            Event {
                id: event["id"].as_str().unwrap().into(),
                event_type: event["type"].as_str().unwrap().into(),
                partner_id: event["partner_id"].as_str().unwrap().into(),
                occurred_at: event["occurred_at"].as_str().unwrap().into(),
                data,
            }
        })
        .collect()
}

const FLAT: &str = "{\n  \"event\": \"action_inquiry.created\",\n  \"inquiry_id\": \"1000123\",\n  \
    \"order_id\": \"ORD-99812\",\n  \"amount\": 149.9,\n  \"currency\": \"USD\",\n  \"status\": \"OPEN\",\n  \
    \"payout\": 12.50,\n  \"notes\": \"Customer used coupon \\\"FALL10\\\" & paid by card <visa>.\\nClick was \
    on Nov 1.\",\n  \"happened_at\": 1795183380,\n  \"sub_id\": \"spring\"\n}";

#[test]
fn nested_json_in_typescript_reshapes_as_the_rust_one_does() {
    let Some(ts) = built("nested-json") else { return };
    let host = host();
    let (rust, ts) = (
        load(host, &postwire_test_plugins::example_bytes("nested-json")),
        load(host, &ts),
    );
    let bodies = [
        FLAT,
        r#"{"amount": 0.29}"#,
        r#"{"amount": "0.29"}"#,
        r#"{"amount": 1.005, "payout": "-0.125"}"#,
        r#"{"amount": 19.99, "currency": null}"#,
        r#"{"amount": 7, "payout": "1e3"}"#,
        r#"{"happened_at": "2026-11-20T15:03:00+01:00", "notes": ""}"#,
        r#"{"happened_at": "2026-02-30T00:00:00Z", "sub_id": "a\"b\\c\u0001 é ✓ 😀"}"#,
        "{}",
    ];
    let mut compared = 0;
    for event in sample_events() {
        for body in bodies {
            let request = Request {
                method: "POST".into(),
                url: "https://partner.example/postbacks".into(),
                headers: vec![
                    ("content-type".into(), "text/plain".into()),
                    ("X-Partner-Id".into(), "88123".into()),
                ],
                body: body.into(),
            };
            let (a, b) = (
                host.transform(&rust, event.clone(), &request, "{}"),
                host.transform(&ts, event.clone(), &request, "{}"),
            );
            let a = a.result.unwrap_or_else(|e| panic!("rust on {body}: {e}"));
            let b = b.result.unwrap_or_else(|e| panic!("typescript on {body}: {e}"));
            assert_eq!(a, b, "{} with {body}", event.id);
            compared += 1;
        }
        // Not the flat JSON: both refuse it, naming what they expect.
        for body in ["order=ORD-1", "[1, 2]", r#"{"event": 5}"#] {
            let request = Request {
                method: "POST".into(),
                url: "https://partner.example/postbacks".into(),
                headers: vec![],
                body: body.into(),
            };
            for plugin in [&rust, &ts] {
                let error = host
                    .transform(plugin, event.clone(), &request, "{}")
                    .result
                    .unwrap_err();
                assert!(
                    error.to_string().contains("nested-json expects the flat JSON"),
                    "{body}: {error}"
                );
            }
        }
    }
    assert_eq!(compared, 18);
}

/// A receiver's answer: status, headers, body.
type Answer = (u16, &'static [(&'static str, &'static str)], &'static str);

#[test]
fn json_status_in_typescript_decides_as_the_rust_one_does() {
    let Some(ts) = built("json-status") else { return };
    let host = host();
    let (rust, ts) = (
        load(host, &postwire_test_plugins::example_bytes("json-status")),
        load(host, &ts),
    );
    let answers: &[Answer] = &[
        (200, &[], r#"{"status":"ok"}"#),
        (200, &[], r#"{"status":"OK","message":"stored"}"#),
        (201, &[], r#"{"status":"success"}"#),
        (
            200,
            &[],
            r#"{"status":"error","retryable":true,"retry_after":30,"message":"database busy"}"#,
        ),
        (200, &[], r#"{"status":"error","retryable":true,"retry_after":"120"}"#),
        (200, &[], r#"{"status":"error","message":"try later"}"#),
        (
            200,
            &[],
            r#"{"status":"error","retryable":true,"retry_after":-5,"message":"m"}"#,
        ),
        (
            200,
            &[],
            r#"{"status":"error","retry_after":99999999999,"message":"m"}"#,
        ),
        (
            200,
            &[],
            r#"{"status":"error","retryable":false,"message":"unknown order ORD-1"}"#,
        ),
        (200, &[], r#"{"status":"error","retryable":false,"message":" "}"#),
        (503, &[("retry-after", "60")], ""),
        (503, &[("Retry-After", "99999999999")], ""),
        (500, &[], r#"{"status":"ok"}"#),
        (429, &[("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT")], ""),
        (200, &[], "<html>OK</html>"),
        (200, &[], "line\n\t\"quoted\" \u{1} é"),
        (200, &[], r#"{"status":"queued"}"#),
        (200, &[], r#"{"status":"Ünknown"}"#),
        (200, &[], "{}"),
        (200, &[], "[]"),
        (200, &[], r#"{"status":5}"#),
    ];
    for (status, headers, body) in answers {
        let request = Request {
            method: "POST".into(),
            url: "https://partner.example/postbacks".into(),
            headers: vec![],
            body: "{}".into(),
        };
        let response = Response {
            status: *status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
            duration_ms: 12,
        };
        let a = host
            .classify(&rust, &request, &response, "{}")
            .result
            .expect("rust decides");
        let b = host
            .classify(&ts, &request, &response, "{}")
            .result
            .expect("typescript decides");
        assert_eq!(a, b, "HTTP {status} {headers:?} {body}");
    }
}

/// One created event through an engine whose settings use `bytes` as `field`, to a receiver
/// answering `answer`: what the receiver got and the delivery.
async fn postback(bytes: Vec<u8>, field: &str, answer: Reply, status: &str) -> (Hit, Value) {
    let engine = Engine::start_with(|options| options.plugin_cache = Some(artifact_cache())).await;
    let receiver = Receiver::always(answer).await;
    let partner = engine.create_partner("typescript").await;
    let upload = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name=ts", partner.id),
            Some(bytes),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{upload:?}");
    let mut settings: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/settings/json.json")).unwrap()).unwrap();
    settings["url"] = json!(receiver.url("/pb"));
    settings[field] = upload.json["id"].clone();
    let saved = engine.put_settings(&partner, &settings).await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    let delivery_id = engine.send_event(&created(&partner, "evt_ts1", "inq-ts1")).await;
    let delivery = engine.wait_status(&partner, &delivery_id, status).await;
    let hit = receiver.wait_hits(1).await.remove(0);
    engine.stop().await;
    (hit, delivery)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_plugins_run_in_a_real_postback_as_the_rust_ones_do() {
    let (Some(nested), Some(status)) = (built("nested-json"), built("json-status")) else {
        return;
    };
    // Compiled here first, so that the engine's uploads find the artifacts in the cache rather
    // than compile 12 MiB within an upload's deadline in a debug build.
    let host = host();
    load(host, &nested);
    load(host, &status);

    let ok = || Reply::ok(r#"{"ok":true}"#);
    let (ts, ts_delivery) = postback(nested, "transform_plugin", ok(), "delivered").await;
    let (rust, _) = postback(
        postwire_test_plugins::example_bytes("nested-json"),
        "transform_plugin",
        ok(),
        "delivered",
    )
    .await;
    assert!(ts.json()["money"]["amount_cents"] == 14990, "reshaped: {}", ts.body);
    assert_eq!(ts.body, rust.body);
    assert_eq!(ts.header("content-type"), Some("application/json"));
    let logs = &attempts(&ts_delivery)[0]["plugins"]["transform"]["logs"];
    assert!(logs.to_string().contains("into the nested schema"), "{logs}");

    let refused = Reply::ok(r#"{"status":"error","retryable":false,"message":"unknown order"}"#);
    let (_, delivery) = postback(status.clone(), "classify_plugin", refused, "failed").await;
    let verdict = &attempts(&delivery)[0]["plugins"]["classify"]["output"];
    assert_eq!(verdict["verdict"], "fail", "{verdict}");
    let (_, delivery) = postback(status, "classify_plugin", Reply::ok(r#"{"status":"ok"}"#), "delivered").await;
    assert_eq!(
        attempts(&delivery)[0]["plugins"]["classify"]["output"]["verdict"],
        "success"
    );
}
