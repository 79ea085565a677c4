//! Every example plugin of `examples/plugins`, built for wasm32-wasip2 during the test build:
//! run by the local runner with the output its README shows, and through a full postback to a
//! receiver.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README's run command (without the build step) and its output block.
fn readme(name: &str) -> (Vec<String>, String) {
    let text = std::fs::read_to_string(repo().join(format!("examples/plugins/{name}/README.md"))).unwrap();
    let run = &text[text.find("## Run it").expect("a Run it section")..];
    let block = &run[run.find("```sh").unwrap() + 5..];
    let block = &block[..block.find("```").unwrap()];
    let command: String = block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("postwire plugin build"))
        .map(|l| l.trim_end_matches('\\').trim())
        .collect::<Vec<_>>()
        .join(" ");
    let output = &text[text.find("## Output").expect("an Output section")..];
    let output = &output[output.find("```text\n").expect("an output block") + 8..];
    let output = &output[..output.find("\n```").unwrap()];
    (shell_words(&command), output.to_owned())
}

/// Splits a command line the way a shell does for the simple quoting the READMEs use.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Output with the wall-clock time, the one figure that differs between runs, blanked.
fn steady(output: &str) -> String {
    output
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("time ") {
                "  time         (varies)"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

#[test]
fn each_example_runs_locally_with_the_output_its_readme_shows() {
    for name in postwire_test_plugins::EXAMPLES {
        let (mut command, expected) = readme(name);
        assert_eq!(command[0], "postwire", "{name}: {command:?}");
        let wasm = postwire_test_plugins::example_path(name);
        for word in &mut command {
            if word.starts_with("examples/plugins/target/") {
                *word = wasm.to_str().unwrap().to_owned();
            }
        }
        let output = Command::new(env!("CARGO_BIN_EXE_postwire"))
            .args(&command[1..])
            .current_dir(repo())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            steady(&stdout),
            steady(&expected),
            "{name}: the README's output is out of date"
        );
    }
}

fn sample_settings_file(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join(format!("examples/settings/{name}.json"))).unwrap())
        .unwrap()
}

/// Sends one created event through an engine whose settings use the example as `field`, to a
/// receiver answering `answer`; returns what the receiver got and the delivery.
async fn postback(name: &str, field: &str, settings: Value, config: Value, answer: Reply) -> (Hit, Value) {
    let engine = Engine::start().await;
    let receiver = Receiver::always(answer).await;
    let partner = engine.create_partner(name).await;
    let upload = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name={name}", partner.id),
            Some(postwire_test_plugins::example_bytes(name)),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{upload:?}");
    let mut settings = settings;
    settings["url"] = json!(receiver.url("/pb"));
    settings[field] = upload.json["id"].clone();
    settings["plugin_config"] = config;
    let saved = engine.put_settings(&partner, &settings).await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    let delivery_id = engine.send_event(&created(&partner, "evt_x1", "inq-x1")).await;
    let delivery = engine.wait_status(&partner, &delivery_id, "delivered").await;
    let hit = receiver.wait_hits(1).await.remove(0);
    engine.stop().await;
    (hit, delivery)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_json_reshapes_a_real_postback() {
    let (hit, delivery) = postback(
        "nested-json",
        "transform_plugin",
        sample_settings_file("json"),
        json!({}),
        Reply::ok(r#"{"ok":true}"#),
    )
    .await;
    let body = hit.json();
    assert!(body.is_object() && body.get("order_id").is_none(), "reshaped: {body}");
    assert_eq!(attempts(&delivery)[0]["request"]["body"], hit.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_envelope_sends_xml() {
    let (hit, _) = postback(
        "soap-envelope",
        "transform_plugin",
        sample_settings_file("xml"),
        json!({}),
        Reply::ok("<ok/>"),
    )
    .await;
    assert_eq!(hit.header("content-type"), Some("text/xml; charset=utf-8"));
    assert!(hit.header("soapaction").is_some());
    assert!(
        hit.body.contains("soap:Envelope") && hit.body.contains("<ActionInquiryId>inq-x1</ActionInquiryId>"),
        "{}",
        hit.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_header_signs_the_body_it_sends() {
    let (hit, _) = postback(
        "hmac-header",
        "transform_plugin",
        sample_settings_file("json"),
        json!({"hmac_key": "demo-secret"}),
        Reply::ok(r#"{"ok":true}"#),
    )
    .await;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"demo-secret").unwrap();
    mac.update(hit.body.as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hit.header("x-signature"), Some(format!("sha256={hex}").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_status_classifies_a_real_answer() {
    let (_, delivery) = postback(
        "json-status",
        "classify_plugin",
        sample_settings_file("json"),
        json!({}),
        Reply::ok(r#"{"status":"ok"}"#),
    )
    .await;
    assert_eq!(
        attempts(&delivery)[0]["plugins"]["classify"]["output"]["verdict"],
        "success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ack_classifies_a_real_answer() {
    let (_, delivery) = postback(
        "plain-ack",
        "classify_plugin",
        sample_settings_file("text"),
        json!({}),
        Reply::ok("success=true;"),
    )
    .await;
    assert_eq!(
        attempts(&delivery)[0]["plugins"]["classify"]["output"]["verdict"],
        "success"
    );
}
