//! `postwire demo`: the engine, a receiver and two postbacks, in one command.
//!
//! It starts the engine on a temporary database and a receiver on 127.0.0.1, configures a
//! partner from the samples in `examples/`, sends an action inquiry's created and resolved
//! events, and prints each postback as the receiver got it, then the attempt log. The receiver
//! answers the very first postback with 503, so the demo also shows a retry, and the resolved
//! postback waiting for the created one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::serve::{self, ServeOptions};

const SETTINGS: &str = include_str!("../../examples/settings/json.json");
const CREATED: &str = include_str!("../../examples/events/created.json");
const RESOLVED: &str = include_str!("../../examples/events/resolved.json");

/// What the receiver saw.
struct Received {
    number: usize,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    status: StatusCode,
}

#[derive(Clone)]
struct Receiver {
    count: Arc<AtomicUsize>,
    seen: mpsc::UnboundedSender<Received>,
}

async fn receive(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let number = receiver.count.fetch_add(1, Ordering::SeqCst) + 1;
    let (status, answer) = if number == 1 {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"ok":false,"error":"warming up"}"#)
    } else {
        (StatusCode::OK, r#"{"ok":true}"#)
    };
    let _ = receiver.seen.send(Received {
        number,
        method,
        uri,
        headers,
        body,
        status,
    });
    (status, answer.to_owned())
}

/// Runs the demo; returns a message on failure.
pub async fn run() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("postwire-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = demo(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn demo(dir: &std::path::Path) -> Result<(), String> {
    let (seen, mut arrivals) = mpsc::unbounded_channel();
    let receiver = Receiver {
        count: Arc::new(AtomicUsize::new(0)),
        seen,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let receiver_addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().fallback(receive).with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let operator = crate::store::rules::new_token();
    let config = ServeOptions {
        listen: Some("127.0.0.1:0".parse().expect("valid address")),
        database: Some(format!("sqlite://{}", dir.join("demo.db").display())),
        allow_destination: vec!["127.0.0.1/32".parse().expect("valid network")],
        retry_schedule: Some("0s,2s,10s".into()),
        timeout: Some("5s".into()),
        // The demo's own operator token, for this run only.
        admin_token: Some(operator.clone()),
        ..ServeOptions::default()
    }
    .resolve()?;
    let shutdown = CancellationToken::new();
    let engine = serve::start(config, shutdown).await?;
    let api = format!("http://{}", engine.addr);
    let http = reqwest::Client::new();

    println!("Postwire demo");
    println!("  engine    {api}  (temporary SQLite database)");
    println!("  receiver  http://{receiver_addr}/postbacks  (answers the first postback with 503)\n");

    let partner: Value = call(
        &http,
        &operator,
        reqwest::Method::POST,
        &format!("{api}/v1/partners"),
        json!({"name": "Trail Deals"}),
    )
    .await?;
    let partner_id = partner["id"].as_str().ok_or("no partner id")?.to_owned();
    let secret = partner["secret"].as_str().ok_or("no secret")?.to_owned();
    println!("1. Created partner {partner_id}; it verifies postbacks with its secret {secret}");
    let key = |path: String| {
        let (http, operator) = (&http, &operator);
        async move {
            let key = call(http, operator, reqwest::Method::POST, &path, json!({})).await?;
            key["token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{path}: no token"))
        }
    };
    let partner_key = key(format!("{api}/v1/partners/{partner_id}/keys")).await?;
    let ingest_key = key(format!("{api}/v1/ingest-keys")).await?;
    println!(
        "   With the operator token, made a partner key (POST /v1/partners/{{id}}/keys) and an ingest key (POST /v1/ingest-keys)"
    );

    let mut settings: Value = serde_json::from_str(SETTINGS).map_err(|e| e.to_string())?;
    settings["url"] = json!(format!("http://{receiver_addr}/postbacks"));
    call(
        &http,
        &partner_key,
        reqwest::Method::PUT,
        &format!("{api}/v1/partners/{partner_id}/settings/action-inquiry"),
        settings.clone(),
    )
    .await?;
    println!(
        "2. Saved its settings (examples/settings/json.json): POST {} with a JSON body template",
        settings["url"].as_str().unwrap_or_default()
    );

    let mut ids = Vec::new();
    for (name, text) in [("created", CREATED), ("resolved", RESOLVED)] {
        let mut event: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        event["partner_id"] = json!(partner_id);
        let accepted = call(
            &http,
            &ingest_key,
            reqwest::Method::POST,
            &format!("{api}/v1/events"),
            event,
        )
        .await?;
        let delivery = accepted["delivery_ids"][0].as_str().ok_or("no delivery")?.to_owned();
        println!(
            "3. Posted the {name} event {} -> delivery {delivery}",
            accepted["event_id"].as_str().unwrap_or_default()
        );
        ids.push(delivery);
    }
    println!("\nPostbacks as the receiver got them:\n");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut delivered = 0;
    while delivered < ids.len() {
        let arrival = tokio::time::timeout_at(deadline, arrivals.recv())
            .await
            .map_err(|_| "the postbacks did not arrive within 30 s")?
            .ok_or("the receiver stopped")?;
        print_arrival(&arrival, &secret);
        if arrival.status.is_success() {
            delivered += 1;
        }
    }

    // The receiver has answered; give the worker a moment to commit the attempts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("Attempt log (GET /v1/partners/{partner_id}/deliveries/{{id}}):\n");
    for id in &ids {
        let log = call(
            &http,
            &partner_key,
            reqwest::Method::GET,
            &format!("{api}/v1/partners/{partner_id}/deliveries/{id}"),
            Value::Null,
        )
        .await?;
        let delivery = &log["delivery"];
        println!(
            "  {id}  {}  {}",
            delivery["event_type"].as_str().unwrap_or_default(),
            delivery["status"].as_str().unwrap_or_default()
        );
        for attempt in log["attempts"].as_array().into_iter().flatten() {
            println!(
                "    attempt {}  status {}  {:>4} ms  {}{}",
                attempt["number"],
                attempt["response_status"],
                attempt["duration_ms"],
                attempt["verdict"].as_str().unwrap_or_default(),
                attempt["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default(),
            );
        }
    }
    println!("\nNext: run `postwire serve` and follow the curl walkthrough in README.md.");
    engine.stop().await;
    Ok(())
}

fn print_arrival(arrival: &Received, secret: &str) {
    let header = |name: &str| {
        arrival
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    println!(
        "  #{} {} {}  -> answered {}",
        arrival.number, arrival.method, arrival.uri, arrival.status
    );
    for (name, value) in &arrival.headers {
        println!("     {name}: {}", value.to_str().unwrap_or("<binary>"));
    }
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or_default();
    let expected = crate::sign::signature(secret, header("webhook-id"), timestamp, &arrival.body).unwrap_or_default();
    let verified = header("webhook-signature").split(' ').any(|s| s == expected);
    println!(
        "     (signature {})",
        if verified {
            "verified with the partner's secret"
        } else {
            "DOES NOT VERIFY"
        }
    );
    let body = String::from_utf8_lossy(&arrival.body);
    for line in body.lines() {
        println!("     | {line}");
    }
    println!();
}

/// One API call with `token` as its credential.
async fn call(
    http: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: &str,
    body: Value,
) -> Result<Value, String> {
    let mut request = http.request(method, url).bearer_auth(token);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
}
