//! A plugin author's path, as docs/plugins.md tells it: scaffold, build, run locally, upload,
//! attach, and see the effect at a receiver and in the attempt log. And the local runner agrees
//! with the server's dry run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn postwire(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postwire"))
        .args(args)
        .current_dir(dir)
        // Scaffolded crates build into one cache folder kept between runs.
        .env("CARGO_TARGET_DIR", authoring_target())
        .output()
        .expect("the postwire binary runs")
}

fn authoring_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("authoring-target")
}

fn ok(output: &Output) -> String {
    succeeded(output)
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The dry-run JSON without what differs between two runs of the same call (its wall time).
fn comparable(mut run: Value) -> Value {
    for step in ["transform", "classify"] {
        if let Some(report) = run.get_mut(step).and_then(Value::as_object_mut) {
            report.remove("duration_us");
            report.remove("plugin");
        }
    }
    run.as_object_mut().map(|o| o.remove("plugin"));
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_path_from_scaffold_to_attempt_log() {
    let work = tempfile::tempdir().unwrap();
    let engine = Engine::start().await;
    // The sample settings expect `"ok":true` in a successful answer.
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let partner = engine.create_partner("Author").await;
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join("settings/json.json")).unwrap()).unwrap();
    assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);

    // 1. Write.
    ok(&postwire(
        &["plugin", "new", "my-plugin", "--kind", "transform"],
        work.path(),
    ));
    let crate_dir = work.path().join("my-plugin");
    let test = Command::new("cargo")
        .args(["test", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", authoring_target())
        .output()
        .unwrap();
    ok(&test);

    // 2. Build, checked with the upload rules.
    let built = ok(&postwire(&["plugin", "build", "my-plugin"], work.path()));
    assert!(built.contains("exports  transform"), "{built}");
    let wasm = authoring_target().join("wasm32-wasip2/release/my_plugin.wasm");
    assert!(wasm.exists());

    // 3. Run locally, on an event of this partner.
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join("events/created.json")).unwrap()).unwrap();
    event["partner_id"] = json!(partner.id);
    let event_file = work.path().join("event.json");
    std::fs::write(&event_file, event.to_string()).unwrap();
    let wasm_arg = wasm.to_str().unwrap();
    let local = ok(&postwire(
        &[
            "plugin",
            "run",
            wasm_arg,
            "--event",
            event_file.to_str().unwrap(),
            "--json",
        ],
        work.path(),
    ));
    let local: Value = serde_json::from_str(&local).unwrap();
    assert!(
        local["transform"]["output"]["headers"]
            .to_string()
            .contains("X-Order-Id"),
        "{local}"
    );
    let human = ok(&postwire(
        &["plugin", "run", wasm_arg, "--event", event_file.to_str().unwrap()],
        work.path(),
    ));
    assert!(
        human.contains("request after transform:") && human.contains("X-Order-Id: ORD-99812"),
        "{human}"
    );

    // 4. Upload and attach with the CLI; the server's dry run agrees with the local run.
    let uploaded = ok(&postwire(
        &[
            "plugin",
            "upload",
            wasm_arg,
            "--server",
            &engine.base,
            "--partner",
            &partner.id,
            "--token",
            TOKEN,
            "--attach",
            "transform",
        ],
        work.path(),
    ));
    let record: Value = serde_json::from_str(&uploaded).unwrap();
    let plugin_id = record["id"].as_str().unwrap().to_owned();
    assert_eq!(
        engine.settings(&partner).await["settings"]["transform_plugin"],
        plugin_id
    );
    let dry = engine
        .post(
            &format!("/v1/partners/{}/plugins/{plugin_id}/run", partner.id),
            &json!({"event": event}),
        )
        .await;
    assert_eq!(dry.status, StatusCode::OK, "{dry:?}");
    assert_eq!(
        comparable(dry.json),
        comparable(local),
        "the local runner and the server agree"
    );

    // 5. Its effect at a receiver and in the attempt log.
    let mut live = settings.clone();
    live["url"] = json!(receiver.url("/pb"));
    live["transform_plugin"] = json!(plugin_id);
    assert_eq!(engine.put_settings(&partner, &live).await.status, StatusCode::OK);
    let delivery_id = engine.send_event(&event).await;
    let delivery = engine.wait_status(&partner, &delivery_id, "delivered").await;
    let hits = receiver.wait_hits(1).await;
    assert_eq!(hits[0].header("x-order-id"), Some("ORD-99812"));
    let attempt = &attempts(&delivery)[0];
    assert_eq!(attempt["plugins"]["transform"]["plugin"], plugin_id);
    assert_eq!(
        attempt["plugins"]["transform"]["logs"][0]["message"],
        format!("transformed event {}", event["id"].as_str().unwrap())
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_classifier_run_matches_the_servers_dry_run() {
    let work = tempfile::tempdir().unwrap();
    let engine = Engine::start().await;
    let partner = engine.create_partner("Classifier").await;
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join("settings/json.json")).unwrap()).unwrap();
    assert_eq!(engine.put_settings(&partner, &settings).await.status, StatusCode::OK);
    let wasm = postwire_test_plugins::path("json-ack");
    let upload = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name=ack", partner.id),
            Some(std::fs::read(&wasm).unwrap()),
        )
        .await;
    let plugin_id = upload.json["id"].as_str().unwrap().to_owned();
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join("events/created.json")).unwrap()).unwrap();
    event["partner_id"] = json!(partner.id);
    let event_file = work.path().join("event.json");
    std::fs::write(&event_file, event.to_string()).unwrap();

    for body in [
        r#"{"status":"ok"}"#,
        r#"{"status":"error","retryable":true,"retry_after":30}"#,
        r#"{"status":"error","retryable":false,"message":"no"}"#,
    ] {
        let local = ok(&postwire(
            &[
                "plugin",
                "classify",
                wasm.to_str().unwrap(),
                "--status",
                "200",
                "--body",
                body,
                "--header",
                "content-type:application/json",
                "--event",
                event_file.to_str().unwrap(),
                "--json",
            ],
            work.path(),
        ));
        let local: Value = serde_json::from_str(&local).unwrap();
        let response = json!({"status": 200, "headers": [["content-type", "application/json"]], "body": body});
        let dry = engine
            .post(
                &format!("/v1/partners/{}/plugins/{plugin_id}/run", partner.id),
                &json!({"event": event, "response": response}),
            )
            .await;
        assert_eq!(dry.status, StatusCode::OK, "{dry:?}");
        assert_eq!(comparable(dry.json.clone()), comparable(local.clone()), "{body}");
        assert!(local["classify"]["fuel_used"].as_u64().unwrap() > 0);
    }
    let failing = postwire(
        &["plugin", "run", postwire_test_plugins::path("spin").to_str().unwrap()],
        work.path(),
    );
    assert!(!failing.status.success());
    assert!(String::from_utf8_lossy(&failing.stderr).contains("ran out of fuel after 50,000,000 instructions"));
    engine.stop().await;
}
