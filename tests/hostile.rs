//! Hostile input over the real API: bodies past their cap, JSON nested a hundred thousand
//! deep, bytes that are not UTF-8, settings with a hundred thousand unknown fields or thousands
//! of headers, a body template that multiplies a long value into a huge body, very long URLs
//! and requests with thousands of headers. Each gets a clear 4xx; after each the engine still
//! answers `/healthz` and still delivers a normal postback.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Engine, Partner, Receiver, Reply, TOKEN, bounded};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An engine, a healthy receiver and a partner posting to it.
async fn setup() -> (Engine, Receiver, Partner) {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let partner = engine
        .partner_with("Hostile", &common::simple_settings(&receiver.url("/hook")))
        .await;
    (engine, receiver, partner)
}

/// `/healthz` answers 200 and a normal postback is still delivered.
async fn still_serving(engine: &Engine, receiver: &Receiver, partner: &Partner) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let answer = engine.get("/healthz").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let before = receiver.hits().len();
    let id = engine
        .send_event(&common::created(
            partner,
            &format!("evt_normal_{n}"),
            &format!("normal-{n}"),
        ))
        .await;
    engine.wait_status(partner, &id, "delivered").await;
    let hits = receiver.wait_hits(before + 1).await;
    assert!(hits.iter().any(|h| h.webhook_id() == id), "the normal postback arrived");
}

/// Sends `request` on a connection of its own and returns all the server sent back before it
/// closed the connection. The server may answer and close before it has read all of it.
async fn exchange(engine: &Engine, request: &[u8]) -> String {
    let mut client = TcpStream::connect(engine.base.trim_start_matches("http://"))
        .await
        .expect("a connection");
    let _ = client.write_all(request).await;
    let mut answer = Vec::new();
    let _ = bounded("the server answers or closes", client.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The answer is a problem+json client error of `status` whose text stays small.
fn assert_problem(answer: &common::Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert_eq!(answer.content_type, "application/problem+json", "{what}");
    let text = answer.json.to_string();
    assert!(text.len() < 64 << 10, "{what}: an answer of {} bytes", text.len());
}

/// The JSON routes that take a body, for a partner.
fn json_routes(partner: &Partner) -> Vec<(Method, String)> {
    vec![
        (Method::POST, "/v1/partners".into()),
        (Method::PUT, common::settings_path(partner)),
        (Method::POST, "/v1/events".into()),
        (Method::POST, "/v1/events/batch".into()),
        (Method::POST, "/v1/ingest-keys".into()),
    ]
}

#[tokio::test]
async fn bodies_past_their_cap_are_refused_with_413() {
    let (engine, receiver, partner) = setup().await;
    // Sent in full, as a client that ignores the limit would.
    for (method, path, cap) in [
        (Method::POST, "/v1/events".to_owned(), 1usize << 20),
        (Method::PUT, common::settings_path(&partner), 2 << 20),
    ] {
        let mut body = b"{\"id\": \"".to_vec();
        body.resize(cap + 1, b'x');
        let answer = engine.raw(method.clone(), &path, Some(body)).await;
        assert_problem(&answer, 413, &path);
        let detail = answer.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("({cap} bytes)")), "{path}: {detail}");
        still_serving(&engine, &receiver, &partner).await;
    }
    engine.stop().await;
}

#[tokio::test]
async fn json_nested_a_hundred_thousand_deep_is_a_400_not_a_crash() {
    let (engine, receiver, partner) = setup().await;
    for (method, path) in json_routes(&partner) {
        // A hundred thousand deep, or as deep as the routes with a 64 KiB cap take.
        let depth = if path == "/v1/partners" || path == "/v1/ingest-keys" {
            10_000
        } else {
            100_000
        };
        let arrays = "[".repeat(depth).into_bytes();
        let objects = "{\"a\":".repeat(depth).into_bytes();
        // Closed as well: a parser that recursed would overflow its stack before the end.
        let closed = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        let mut inside = b"{\"id\": \"evt_deep\", \"data\": ".to_vec();
        inside.extend_from_slice(&closed);
        inside.push(b'}');
        for body in [arrays, objects, closed, inside] {
            let answer = engine.raw(method.clone(), &path, Some(body)).await;
            assert_problem(&answer, 400, &path);
            let detail = answer.json["detail"].as_str().unwrap_or_default();
            assert!(!detail.is_empty(), "{path}: the answer says what is wrong: {answer:?}");
        }
    }
    still_serving(&engine, &receiver, &partner).await;
    engine.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_a_400() {
    let (engine, receiver, partner) = setup().await;
    let mut event = common::created(&partner, "evt_bytes", "bytes-1")
        .to_string()
        .into_bytes();
    // An invalid byte inside a string value, where a lenient parser might let it through.
    let at = event
        .windows(7)
        .position(|w| w == b"bytes-1")
        .expect("the inquiry id is in the event");
    event[at + 5] = 0xff;
    for (method, path) in json_routes(&partner) {
        for body in [
            event.clone(),
            vec![0xff, 0xfe, 0x00, 0x7b],
            b"{\"name\": \"\xc3\x28\"}".to_vec(),
        ] {
            let answer = engine.raw(method.clone(), &path, Some(body)).await;
            assert_problem(&answer, 400, &path);
        }
    }
    still_serving(&engine, &receiver, &partner).await;
    engine.stop().await;
}

#[tokio::test]
async fn a_hundred_thousand_unknown_settings_fields_answer_a_capped_422() {
    let (engine, receiver, partner) = setup().await;
    let mut settings = common::simple_settings(&receiver.url("/hook"));
    // Short names, so that the body stays under the route's 2 MiB cap.
    for i in 0..100_000 {
        settings[format!("u{i}")] = json!(0);
    }
    let answer = engine.put_settings(&partner, &settings).await;
    assert_problem(&answer, 422, "settings");
    let errors = answer.json["errors"].as_array().expect("an error list");
    assert_eq!(errors.len(), 101, "100 errors listed and one counting the others");
    assert!(
        errors[0]["field"].as_str().is_some_and(|f| f.starts_with('u')),
        "{}",
        errors[0]
    );
    let last = errors.last().expect("one")["message"].as_str().unwrap_or_default();
    assert!(last.starts_with("99900 more errors"), "{last}");
    // The settings saved before are still the ones in force.
    assert_eq!(
        engine.settings(&partner).await["settings"]["url"],
        receiver.url("/hook")
    );
    still_serving(&engine, &receiver, &partner).await;
    engine.stop().await;
}

#[tokio::test]
async fn thousands_of_headers_in_settings_answer_422() {
    let (engine, receiver, partner) = setup().await;
    let mut settings = common::simple_settings(&receiver.url("/hook"));
    let headers: serde_json::Map<String, Value> = (0..5000).map(|i| (format!("x-extra-{i}"), json!("v"))).collect();
    settings["headers"] = Value::Object(headers);
    let answer = engine.put_settings(&partner, &settings).await;
    assert_problem(&answer, 422, "settings");
    let error = answer.error_about("headers").unwrap_or_else(|| panic!("{answer:?}"));
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("32"), "the limit is named: {message}");
    still_serving(&engine, &receiver, &partner).await;
    engine.stop().await;
}

#[tokio::test]
async fn thousands_of_request_headers_are_refused() {
    let (engine, receiver, partner) = setup().await;
    let mut head = format!("GET /v1/partners HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n");
    for i in 0..5000 {
        head.push_str(&format!("x-extra-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let answer = exchange(&engine, head.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    still_serving(&engine, &receiver, &partner).await;
    engine.stop().await;
}

#[tokio::test]
async fn very_long_urls_are_refused_with_a_4xx() {
    let (engine, receiver, partner) = setup().await;
    let long = "a".repeat(100 << 10);
    // As the endpoint in settings.
    let answer = engine
        .put_settings(&partner, &common::simple_settings(&receiver.url(&format!("/{long}"))))
        .await;
    assert_problem(&answer, 422, "settings");
    let error = answer.error_about("url").unwrap_or_else(|| panic!("{answer:?}"));
    assert!(
        error["message"].as_str().unwrap_or_default().contains("2048"),
        "the limit is named: {error}"
    );
    // As the request's own path and query, on a raw socket: HTTP clients refuse to send them.
    for path in [
        format!("/v1/partners/{long}"),
        format!("/v1/partners/{}/deliveries?status={long}", partner.id),
        format!("/v1/partners/{}/deliveries?{long}=1", partner.id),
    ] {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        let answer = exchange(&engine, head.as_bytes()).await;
        let status: u16 = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!((400..500).contains(&status), "{}", &answer[..answer.len().min(300)]);
        assert!(answer.len() < 16 << 10, "the answer is bounded: {} bytes", answer.len());
    }
    still_serving(&engine, &receiver, &partner).await;
    engine.stop().await;
}

#[tokio::test]
async fn a_template_bomb_is_capped_and_fails_with_a_clear_reason() {
    let (engine, receiver, partner) = setup().await;
    let bomber = engine.create_partner("Bomb").await;
    // A 64 KiB template repeating the longest text placeholder: with notes of 4 KiB of
    // characters JSON escapes six times over, it would render to over 100 MiB.
    let unit = "{InquiryNotes}";
    let repeats = (60 << 10) / unit.len();
    let template = format!("{{\"notes\": \"{}\"}}", unit.repeat(repeats));
    let mut settings = common::simple_settings(&receiver.url("/bomb"));
    settings["body_template"] = template.into();
    let answer = engine.put_settings(&bomber, &settings).await;
    assert_eq!(
        answer.status, 200,
        "a long template of short samples is accepted: {answer:?}"
    );

    let mut event = common::created(&bomber, "evt_bomb", "bomb-1");
    event["data"]["InquiryNotes"] = "\u{1}".repeat(4096).into();
    // Previewed, the same event is refused rather than answered with the huge body.
    let answer = engine
        .post(
            &format!("{}/preview", common::settings_path(&bomber)),
            &json!({"settings": settings, "event": event}),
        )
        .await;
    assert_problem(&answer, 422, "preview");
    assert!(answer.error_about("settings.body_template").is_some(), "{answer:?}");
    let id = engine.send_event(&event).await;
    let delivery = engine.wait_status(&bomber, &id, "failed").await;
    let attempts = common::attempts(&delivery);
    assert_eq!(
        attempts.len(),
        1,
        "a body that can never fit is not retried: {attempts:?}"
    );
    let error = attempts[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("body") && error.contains(&(1usize << 20).to_string()),
        "the reason names the body and its limit: {error}"
    );
    assert!(error.len() < 1000, "the reason is short");
    assert_eq!(attempts[0]["request"], Value::Null, "no huge request is stored");
    assert!(
        delivery.to_string().len() < 64 << 10,
        "the attempt log stays small: {} bytes",
        delivery.to_string().len()
    );
    assert!(receiver.hits().iter().all(|h| h.path != "/bomb"), "nothing was sent");
    still_serving(&engine, &receiver, &partner).await;
    engine.stop().await;
}
