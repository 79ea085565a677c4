//! The API under abuse, against an engine on 127.0.0.1 through real sockets: clients that send
//! a request's head or body slowly and stall, bodies past their route's cap, answers to inputs
//! with thousands of errors or huge values, and the health endpoints.

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Engine, TOKEN, bounded};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The header timeout of these tests' engines.
const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

/// The request timeout of these tests' engines.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(600);

/// How much later than its timeout a connection may be closed or answered on a busy machine.
const SLACK: Duration = Duration::from_secs(5);

async fn engine() -> Engine {
    Engine::start_with(|options| {
        options.header_timeout = Some(format!("{}ms", HEADER_TIMEOUT.as_millis()));
        options.request_timeout = Some(format!("{}ms", REQUEST_TIMEOUT.as_millis()));
    })
    .await
}

fn addr(engine: &Engine) -> String {
    engine.base.trim_start_matches("http://").to_owned()
}

/// An answer read off a raw socket.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into()))
    }
}

/// Reads one answer (head, then `Content-Length` bytes of body) from `stream`.
async fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.expect("the answer can be read");
        assert!(
            n > 0,
            "the connection closed before an answer: {:?}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status = head[9..12].parse().expect("a status code");
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a Content-Length");
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.expect("the body can be read");
        assert!(n > 0, "the connection closed within the body");
        buffer.extend_from_slice(&chunk[..n]);
    }
    Raw {
        status,
        head,
        body: buffer[head_end..head_end + length].to_vec(),
    }
}

/// Waits until the server closes `stream` (end of file or a reset), and returns how long it took.
async fn closed(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match bounded("the server closes the connection", stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_client_stalled_in_its_head_is_cut_off_while_others_are_served() {
    let engine = engine().await;
    let mut slow = TcpStream::connect(addr(&engine)).await.unwrap();
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        .await
        .unwrap();
    // Served meanwhile, on connections of their own.
    for _ in 0..3 {
        assert_eq!(engine.get("/healthz").await.status, 200);
    }
    let waited = closed(&mut slow).await;
    assert!(waited < SLACK, "a stalled head held its connection {waited:?}");
    // A kept-alive connection that idles is closed after the header timeout too.
    let mut idle = TcpStream::connect(addr(&engine)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut idle).await.status, 200);
    let waited = closed(&mut idle).await;
    assert!(
        waited >= HEADER_TIMEOUT / 2,
        "closed after {waited:?}, before the timeout"
    );
    assert!(waited < SLACK, "an idle connection stayed open {waited:?}");
    engine.stop().await;
}

#[tokio::test]
async fn a_client_stalled_in_its_body_gets_408_while_others_are_served() {
    let engine = engine().await;
    let mut slow = TcpStream::connect(addr(&engine)).await.unwrap();
    let start = Instant::now();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\": \"evt_"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(engine.get("/healthz").await.status, 200);
    let answer = bounded("the stalled request is answered", read_answer(&mut slow)).await;
    let waited = start.elapsed();
    assert_eq!(answer.status, 408, "{}", answer.head);
    assert!(
        answer.head.to_ascii_lowercase().contains("application/problem+json"),
        "{}",
        answer.head
    );
    assert_eq!(answer.json()["status"], 408);
    assert!(
        waited >= REQUEST_TIMEOUT - Duration::from_millis(50),
        "answered after {waited:?}"
    );
    assert!(waited < REQUEST_TIMEOUT + SLACK, "answered after {waited:?}");
    closed(&mut slow).await;
    engine.stop().await;
}

#[tokio::test]
async fn a_batch_of_thousands_of_invalid_events_answers_a_capped_error_list() {
    let engine = Engine::start().await;
    let events: Vec<Value> = (0..3000).map(|i| json!({"id": format!("evt_{i}")})).collect();
    let answer = engine.post("/v1/events/batch", &json!({ "events": events })).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.content_type, "application/problem+json");
    let errors = answer.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 101, "100 errors listed and one counting the others");
    assert_eq!(
        errors[0]["field"].as_str().unwrap().split('.').next(),
        Some("events[0]")
    );
    let last = errors.last().unwrap()["message"].as_str().unwrap();
    let per_event = errors
        .iter()
        .filter(|e| e["field"].as_str().unwrap().starts_with("events[0]."))
        .count();
    let total = per_event * 3000;
    assert!(last.starts_with(&format!("{} more errors", total - 100)), "{last}");
    assert!(answer.json.to_string().len() < 64 << 10, "the answer is bounded");
    engine.stop().await;
}

#[tokio::test]
async fn no_error_echoes_more_than_a_bounded_part_of_a_bad_value() {
    let engine = Engine::start().await;
    let huge = "x".repeat(200_000);
    let partner = engine.create_partner("Bounds").await;
    // A huge value, a huge key in the event's data, and a huge header name in settings.
    let mut event = common::created(&partner, "evt_huge", "1");
    event["occurred_at"] = huge.clone().into();
    event["data"][huge.as_str()] = huge.clone().into();
    event["data"]["TransactionAmount"] = huge.clone().into();
    let mut settings = common::simple_settings("http://127.0.0.1:9/hook");
    settings["headers"] = json!({ huge.as_str(): huge.as_str() });
    settings["body_template"] = format!("{{{huge}}}").into();
    let answers = [
        engine.post("/v1/events", &event).await,
        engine.post("/v1/events/batch", &json!([event, event])).await,
        engine.put_settings(&partner, &settings).await,
    ];
    for answer in answers {
        assert!(answer.status.is_client_error(), "{}", answer.status);
        let text = answer.json.to_string();
        assert!(
            text.len() < 16 << 10,
            "an answer of {} bytes: {}",
            text.len(),
            &text[..2000]
        );
        for error in answer.json["errors"].as_array().into_iter().flatten() {
            // The bounds, each with room for the `…` that marks a cut.
            for (key, most) in [("field", 203), ("value", 123), ("message", 1003)] {
                let shown = error[key].as_str().unwrap_or_default();
                assert!(shown.len() <= most, "{key} of {} bytes", shown.len());
            }
        }
    }
    // A JSON syntax error names its line and column, not the input.
    let answer = engine
        .raw(
            reqwest::Method::POST,
            "/v1/events",
            Some(format!("{{\"id\": {huge}").into_bytes()),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.json.to_string().len() < 4 << 10);
    engine.stop().await;
}

#[tokio::test]
async fn bodies_past_their_cap_answer_413_problem_json_on_every_route() {
    let engine = Engine::start().await;
    let partner = engine.create_partner("Caps").await;
    let p = &partner.id;
    let routes = [
        ("POST", "/v1/partners".to_owned(), 64usize << 10),
        ("PUT", format!("/v1/partners/{p}/settings/action-inquiry"), 2 << 20),
        ("POST", "/v1/events".to_owned(), 1 << 20),
        ("POST", "/v1/events/batch".to_owned(), 32 << 20),
        ("POST", format!("/v1/partners/{p}/plugins?name=big"), 64 << 20),
        ("POST", format!("/v1/partners/{p}/plugins/plg_none/run"), 2 << 20),
    ];
    for (method, path, cap) in routes {
        // Only the head: the declared length alone is refused, before any of the body is sent.
        let mut client = TcpStream::connect(addr(&engine)).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            cap + 1
        );
        client.write_all(head.as_bytes()).await.unwrap();
        let answer = bounded("the oversized request is answered", read_answer(&mut client)).await;
        assert_eq!(answer.status, 413, "{method} {path}: {}", answer.head);
        assert!(
            answer.head.to_ascii_lowercase().contains("application/problem+json"),
            "{}",
            answer.head
        );
        let detail = answer.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains(&format!("({cap} bytes)")), "{method} {path}: {detail}");
    }
    // A body that says nothing of its length is cut off at the cap as it arrives.
    let answer = tokio::task::spawn_blocking({
        let addr = addr(&engine);
        move || chunked_past_the_cap(&addr, 64 << 10)
    })
    .await
    .unwrap();
    if let Some(answer) = answer {
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    // Just under the cap is read and judged on its content.
    let answer = engine
        .raw(reqwest::Method::POST, "/v1/partners", Some(vec![b' '; (64 << 10) - 1]))
        .await;
    assert_ne!(answer.status, 413);
    engine.stop().await;
}

/// Sends `POST /v1/partners` with a chunked body one byte past `cap`, and returns what the
/// server answered, if the answer arrived before the server closed the connection (a server
/// that stops reading may reset it, and the client's system then drops what it had received).
fn chunked_past_the_cap(addr: &str, cap: usize) -> Option<String> {
    use std::io::{Read, Write};
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    let head = format!(
        "POST /v1/partners HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let mut request = head.as_bytes().to_vec();
    let body = vec![b' '; cap + 1];
    request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    request.extend_from_slice(&body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    client.write_all(&request).ok()?;
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn healthz_and_readyz_answer_and_readyz_fails_when_the_store_is_closed() {
    let engine = Engine::start().await;
    let answer = engine.get("/healthz").await;
    assert_eq!(
        (answer.status.as_u16(), answer.json["status"].as_str()),
        (200, Some("ok"))
    );
    let answer = engine.get("/readyz").await;
    assert_eq!(
        (answer.status.as_u16(), answer.json["status"].as_str()),
        (200, Some("ready"))
    );
    assert_eq!(engine.get("/health").await.status, 200);
    engine.stop().await;

    // An engine of its own, whose store this test closes under it.
    let dir = tempfile::tempdir().unwrap();
    let config = Engine::options(&dir).resolve().unwrap();
    let running = postwire::serve::start(config, CancellationToken::new()).await.unwrap();
    let url = format!("http://{}", running.addr);
    let http = reqwest::Client::builder().no_proxy().timeout(DEADLINE).build().unwrap();
    running.store.close().await;
    let response = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let response = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the process is still up");
    bounded("the engine stops", running.stop()).await;
}
