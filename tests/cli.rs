//! The `postwire` command line, run as a user runs it, on the samples in `examples/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn postwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postwire"))
        .args(args)
        .current_dir(examples())
        .output()
        .expect("the postwire binary runs")
}

fn render_json(settings: &str, event: &str) -> serde_json::Value {
    let output = postwire(&["render", "--settings", settings, "--event", event, "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty());
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

#[test]
fn json_sample_renders_valid_json() {
    for event in ["events/created.json", "events/resolved.json"] {
        let request = render_json("settings/json.json", event);
        assert_eq!(request["method"], "POST");
        assert_eq!(request["url"], "https://partner.example/postbacks/action-inquiry");
        assert_eq!(request["headers"]["Content-Type"], "application/json");
        assert_eq!(request["headers"]["X-Partner-Id"], "88123");
        let body: serde_json::Value =
            serde_json::from_str(request["body"].as_str().unwrap()).expect("the body is JSON");
        assert_eq!(body["order_id"], "ORD-99812");
        assert_eq!(body["amount_cents"], 14990);
        if event.contains("created") {
            assert_eq!(body["status"], "OPEN");
            assert_eq!(body["payout"], serde_json::json!(12.5));
            assert_eq!(
                body["notes"],
                "Customer used coupon \"FALL10\" & paid by card <visa>.\nClick was on Nov 1."
            );
        } else {
            assert_eq!(body["status"], "VALID");
            assert_eq!(body["payout"], serde_json::json!(11.25));
            assert_eq!(body["notes"], "");
        }
    }
}

#[test]
fn every_sample_renders_the_right_request() {
    let created = "events/created.json";
    let xml = render_json("settings/xml.json", created);
    assert_eq!(xml["headers"]["Content-Type"], "application/xml");
    let body = xml["body"].as_str().unwrap();
    assert!(body.contains("<amount currency=\"USD\">149.90</amount>"), "{body}");
    assert!(
        body.contains("<![CDATA[Customer used coupon \"FALL10\" & paid by card <visa>."),
        "{body}"
    );

    let form = render_json("settings/form.json", created);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(form["body"].as_str().unwrap().as_bytes())
        .into_owned()
        .collect();
    let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["inquiry", "order", "amount", "status", "notes", "date"]);
    assert_eq!(
        pairs[4].1,
        "Customer used coupon \"FALL10\" & paid by card <visa>.\nClick was on Nov 1."
    );
    assert_eq!(pairs[5].1, "2026-11-20 14:03:00");

    let text = render_json("settings/text.json", "events/resolved.json");
    assert_eq!(text["method"], "PUT");
    assert_eq!(
        text["body"],
        "Inquiry 1000123 (action_inquiry.resolved) for order ORD-99812: VALID, 149.90 USD."
    );

    let get = render_json("settings/get.json", created);
    assert_eq!(get["method"], "GET");
    assert_eq!(get["body"], "");
    assert_eq!(get["headers"], serde_json::json!({}));
    let url = url::Url::parse(get["url"].as_str().unwrap()).unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(query[0], ("inquiry".into(), "1000123".into()));
    assert_eq!(
        query[5],
        (
            "link".into(),
            "https://acme.example/c/123/456?subId1=spring&sharedid=newsletter-11".into()
        )
    );
    assert_eq!(query.len(), 6);
}

#[test]
fn plain_output_is_the_request_on_the_wire() {
    let output = postwire(&[
        "render",
        "--settings",
        "settings/text.json",
        "--event",
        "events/created.json",
    ]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "PUT https://partner.example/inbox\nContent-Type: text/plain; charset=utf-8\nAuthorization: Bearer partner-secret-token\n\n\
         Inquiry 1000123 (action_inquiry.created) for order ORD-99812: OPEN, 149.90 USD.\n"
    );
}

fn write_temp(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("postwire-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn failure(settings: &str, event: &str) -> String {
    let settings = write_temp("settings.json", settings);
    let event = write_temp("event.json", event);
    let output = postwire(&[
        "render",
        "--settings",
        settings.to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "nothing but the error is printed");
    String::from_utf8(output.stderr).unwrap()
}

const EVENT: &str = include_str!("../examples/events/created.json");

#[test]
fn bad_input_exits_non_zero_with_the_error() {
    let error = failure(
        r#"{"url": "https://p.example/", "body_template": "{\n\"o\": \"{OrderID}\"}"}"#,
        EVENT,
    );
    assert!(
        error.contains("body_template: line 2, column 7: unknown placeholder {OrderID}; did you mean {OrderId}?"),
        "{error}"
    );

    let error = failure(
        r#"{"url": "https://p.example/", "body_template": "{{amount TransactionAmount"}"#,
        EVENT,
    );
    assert!(
        error.contains("body_template: line 1, column 27: this {{ is never closed; add }}"),
        "{error}"
    );

    let error = failure(
        r#"{"url": "https://p.example/"}"#,
        r#"{"id": "e1", "type": "action_inquiry.closed"}"#,
    );
    assert!(
        error.contains("type: \"action_inquiry.closed\" is not a known event type"),
        "{error}"
    );
    assert!(error.contains("partner_id: is required"), "{error}");

    let error = failure("{not json", EVENT);
    assert!(
        error.contains("the settings document is not valid JSON: key must be a string at line 1 column 2"),
        "{error}"
    );

    let output = postwire(&["render", "--settings", "missing.json", "--event", "events/created.json"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read missing.json"));
}

#[test]
fn placeholders_lists_the_catalogue() {
    let output = postwire(&["placeholders", "--json"]);
    assert!(output.status.success());
    let catalogue: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = catalogue.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in [
        "EventId",
        "EventType",
        "EventDate",
        "ActionInquiryId",
        "TransactionAmount",
        "SharedId",
    ] {
        assert!(names.contains(&name), "{name} missing");
    }
    assert!(
        catalogue
            .iter()
            .all(|p| p["description"].is_string() && p["example"].is_string() && p["type"].is_string())
    );
    let text = postwire(&["placeholders"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("TransactionAmount"));
}

/// `serve --help` shows the roles, and a role other than `all` on an SQLite database is refused
/// before anything starts, saying why and what to run instead.
#[test]
fn serve_roles_are_shown_and_refused_on_sqlite() {
    let help = postwire(&["serve", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--role <ROLE>"), "{help}");
    for value in ["- api:", "- worker:", "- all:", "[env: POSTWIRE_ROLE=]"] {
        assert!(help.contains(value), "{value} in {help}");
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = format!("sqlite://{}", dir.path().join("pw.db").display());
    for role in ["api", "worker"] {
        let output = Command::new(env!("CARGO_BIN_EXE_postwire"))
            .args([
                "serve",
                "--role",
                role,
                "--database",
                &database,
                "--listen",
                "127.0.0.1:0",
            ])
            .env_remove("POSTWIRE_CONFIG")
            .env_remove("POSTWIRE_ROLE")
            .output()
            .expect("the postwire binary runs");
        assert!(!output.status.success(), "--role {role} on SQLite is refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("role: {role} needs a database that processes share")),
            "{stderr}"
        );
        assert!(!dir.path().join("pw.db").exists(), "nothing was opened");
    }
}
