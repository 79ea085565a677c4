//! Harness of the end-to-end pipeline tests: an engine started in-process on a temporary
//! database, talked to through its real HTTP API, and real receivers on 127.0.0.1 whose answers
//! each test scripts and which record every request they get. [`process`] runs the real
//! binary instead, for the tests that kill it or run several at once.
//!
//! Nothing here connects anywhere but 127.0.0.1.

#![allow(dead_code)]

pub mod process;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use postwire::serve::{Running, ServeOptions};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any wait in these tests may last before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The retry schedule of test engines: four attempts, 200 ms apart.
pub const SCHEDULE: &str = "0s,200ms,200ms,200ms";

/// The operator token of test engines, which [`Engine`] sends unless told otherwise.
pub const TOKEN: &str = "pw_live_TestOperatorToken0123456789abcdefghijklmn";

/// Headers that send [`TOKEN`], for tests' own HTTP clients.
pub fn operator_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().expect("a header value"),
    );
    headers
}

/// Attempts [`SCHEDULE`] allows.
pub const ATTEMPTS: usize = 4;

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `probe` every 25 ms until it yields a value; panics with `what` after [`DEADLINE`].
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `future` with a deadline, so that a test never hangs.
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

// ---------------------------------------------------------------------------------------------
// The engine

/// A partner as `POST /v1/partners` created it.
#[derive(Debug, Clone)]
pub struct Partner {
    /// `ptn_…`
    pub id: String,
    /// `whsec_…`
    pub secret: String,
}

/// An API answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `Content-Type`.
    pub content_type: String,
    /// The body as JSON (`Value::String` of the text when it is not JSON).
    pub json: Value,
}

impl Answer {
    /// The field names of a problem+json answer's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The problem+json error about `field`, if there is one.
    pub fn error_about(&self, field: &str) -> Option<&Value> {
        self.json["errors"].as_array()?.iter().find(|e| e["field"] == field)
    }
}

/// The database an engine under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A database file in the engine's temporary directory.
    Sqlite,
    /// A fresh schema in the PostgreSQL database at [`POSTGRES_URL`].
    Postgres,
}

/// The environment variable with the URL of a PostgreSQL database the tests may create schemas
/// in (`.ci/run` sets it).
pub const POSTGRES_URL: &str = "POSTWIRE_TEST_POSTGRES";

/// The key test engines on PostgreSQL seal signing secrets with (one is required there).
pub const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The PostgreSQL database's URL for the tests, or `None` after saying the test is skipped.
/// Under CI (`CI` set) a missing URL fails the test instead: the suites must run on both
/// backends there.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{POSTGRES_URL} is not set: under CI the PostgreSQL tests must run (.ci/run sets it)")
        }
        _ => {
            eprintln!("skipped on PostgreSQL: set {POSTGRES_URL} to a database URL to run it");
            None
        }
    }
}

/// A fresh, empty schema in the PostgreSQL database at `url`, and the URL that opens it.
pub async fn postgres_schema(url: &str) -> String {
    use sqlx::Connection;
    let schema = format!("pw_e2e_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("the PostgreSQL server at {url} answers ({e})"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("a schema");
    let _ = admin.close().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// Runs each named test (an `async fn(Backend)`) once per backend: `mod sqlite` and
/// `mod postgres`, the latter skipped, saying so, without [`POSTGRES_URL`].
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if $crate::common::postgres_url().is_some() {
                        super::$test($crate::common::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

/// An engine running in-process on its own temporary database.
pub struct Engine {
    running: Running,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Engine {
    /// The test options: a temporary database, 127.0.0.1 allowed, [`SCHEDULE`], a 1 s timeout.
    pub fn options(dir: &tempfile::TempDir) -> ServeOptions {
        ServeOptions {
            listen: Some("127.0.0.1:0".parse().expect("an address")),
            database: Some(format!("sqlite://{}", dir.path().join("pw.db").display())),
            allow_destination: vec!["127.0.0.1/32".parse().expect("a network")],
            retry_schedule: Some(SCHEDULE.into()),
            timeout: Some("1s".into()),
            connect_timeout: Some("1s".into()),
            admin_token: Some(TOKEN.into()),
            ..ServeOptions::default()
        }
    }

    /// Starts an engine with the test options.
    pub async fn start() -> Engine {
        Engine::start_with(|_| {}).await
    }

    /// Starts an engine with the test options as changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut ServeOptions)) -> Engine {
        Engine::start_on_with(Backend::Sqlite, configure).await
    }

    /// Starts an engine with the test options on `backend` (see [`on_both_backends`]).
    pub async fn start_on(backend: Backend) -> Engine {
        Engine::start_on_with(backend, |_| {}).await
    }

    /// Starts an engine with the test options on `backend`, as changed by `configure`.
    pub async fn start_on_with(backend: Backend, configure: impl FnOnce(&mut ServeOptions)) -> Engine {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut options = Engine::options(&dir);
        if backend == Backend::Postgres {
            let url = postgres_url().expect("the caller checked that PostgreSQL is configured");
            options.database = Some(postgres_schema(&url).await);
            options.secret_key = Some(SECRET_KEY.into());
        }
        configure(&mut options);
        let config = options.resolve().expect("the test configuration resolves");
        let running = postwire::serve::start(config, CancellationToken::new())
            .await
            .expect("the engine starts");
        let base = format!("http://{}", running.addr);
        // Long enough for a plugin upload, which compiles the component, in a debug build on a
        // busy machine; a request that hangs still fails the test.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        Engine {
            running,
            base,
            http,
            _dir: dir,
        }
    }

    /// The folder holding the engine's database files.
    pub fn database_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Stops the engine and waits until it has.
    pub async fn stop(self) {
        bounded("the engine stops", self.running.stop()).await;
    }

    /// Sends a request to the API with the operator token; `body` is sent as is, with
    /// `Content-Type: application/json`.
    pub async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> Answer {
        self.raw_as(Some(TOKEN), method, path, body).await
    }

    /// [`Engine::raw`] with `token` as the credential, or none.
    pub async fn raw_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await.expect("the API's body");
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            content_type,
            json,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.raw(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.raw(reqwest::Method::POST, path, Some(body.to_string().into_bytes()))
            .await
    }

    /// `GET path` with `token`.
    pub async fn get_as(&self, token: &str, path: &str) -> Answer {
        self.raw_as(Some(token), reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body and `token`.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> Answer {
        self.raw_as(
            Some(token),
            reqwest::Method::POST,
            path,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// A new key of `partner` (made with the operator token); returns its token.
    pub async fn partner_key(&self, partner: &Partner) -> String {
        let answer = self
            .post(&format!("/v1/partners/{}/keys", partner.id), &json!({}))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.json["token"].as_str().expect("a token").to_owned()
    }

    /// A new ingest key for the events of `partners`, or of all partners; returns its token.
    pub async fn ingest_key(&self, partners: Option<&[&Partner]>) -> String {
        let body = match partners {
            Some(partners) => json!({"partners": partners.iter().map(|p| p.id.clone()).collect::<Vec<_>>()}),
            None => json!({}),
        };
        let answer = self.post("/v1/ingest-keys", &body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.json["token"].as_str().expect("a token").to_owned()
    }

    /// `POST path` without a body.
    pub async fn post_empty(&self, path: &str) -> Answer {
        self.raw(reqwest::Method::POST, path, None).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        self.raw(reqwest::Method::PUT, path, Some(body.to_string().into_bytes()))
            .await
    }

    /// Creates a partner.
    pub async fn create_partner(&self, name: &str) -> Partner {
        let answer = self.post("/v1/partners", &json!({"name": name})).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        let id = answer.json["id"].as_str().expect("an id").to_owned();
        let secret = answer.json["secret"].as_str().expect("a secret").to_owned();
        assert!(id.starts_with("ptn_"), "{id}");
        assert!(secret.starts_with("whsec_"), "{secret}");
        Partner { id, secret }
    }

    /// `PUT /v1/partners/{id}/settings/action-inquiry`.
    pub async fn put_settings(&self, partner: &Partner, settings: &Value) -> Answer {
        self.put(&settings_path(partner), settings).await
    }

    /// Creates a partner with `settings`, which must be accepted.
    pub async fn partner_with(&self, name: &str, settings: &Value) -> Partner {
        let partner = self.create_partner(name).await;
        let answer = self.put_settings(&partner, settings).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.json["enabled"], true, "{answer:?}");
        partner
    }

    /// `GET .../settings/action-inquiry`.
    pub async fn settings(&self, partner: &Partner) -> Value {
        let answer = self.get(&settings_path(partner)).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.json
    }

    /// `POST /v1/events`.
    pub async fn post_event(&self, event: &Value) -> Answer {
        self.post("/v1/events", event).await
    }

    /// Posts an event that must be accepted and make exactly one delivery; returns its id.
    pub async fn send_event(&self, event: &Value) -> String {
        let answer = self.post_event(event).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
        assert_eq!(answer.json["duplicate"], false, "{answer:?}");
        let ids = answer.json["delivery_ids"].as_array().expect("delivery ids");
        assert_eq!(ids.len(), 1, "{answer:?}");
        ids[0].as_str().expect("a delivery id").to_owned()
    }

    /// `POST /v1/events/batch` with `{"events": [...]}`.
    pub async fn post_batch(&self, events: &[Value]) -> Answer {
        self.post("/v1/events/batch", &json!({"events": events})).await
    }

    /// A partner's deliveries (first page of up to 500), optionally of one status.
    pub async fn deliveries(&self, partner: &Partner, status: Option<&str>) -> Vec<Value> {
        let query = match status {
            Some(status) => format!("?status={status}&limit=500"),
            None => "?limit=500".into(),
        };
        let answer = self
            .get(&format!("/v1/partners/{}/deliveries{query}", partner.id))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.json["data"].as_array().expect("a list").clone()
    }

    /// The ids of a partner's deliveries of one status.
    pub async fn delivery_ids(&self, partner: &Partner, status: &str) -> Vec<String> {
        self.deliveries(partner, Some(status))
            .await
            .iter()
            .map(|d| d["id"].as_str().expect("an id").to_owned())
            .collect()
    }

    /// `GET .../deliveries/{id}`: `{"delivery": ..., "attempts": [...]}`.
    pub async fn delivery(&self, partner: &Partner, delivery_id: &str) -> Value {
        let answer = self
            .get(&format!("/v1/partners/{}/deliveries/{delivery_id}", partner.id))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.json
    }

    /// Waits until the delivery satisfies `done`; returns it with its attempts.
    pub async fn wait_delivery(
        &self,
        partner: &Partner,
        delivery_id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(&format!("delivery {delivery_id}: {what}"), async || {
            let delivery = self.delivery(partner, delivery_id).await;
            done(&delivery).then_some(delivery)
        })
        .await
    }

    /// Waits until the delivery has the status `status`; returns it with its attempts.
    pub async fn wait_status(&self, partner: &Partner, delivery_id: &str, status: &str) -> Value {
        self.wait_delivery(partner, delivery_id, &format!("status {status}"), |d| {
            d["delivery"]["status"] == status
        })
        .await
    }

    /// Waits until the delivery has at least `n` attempts recorded.
    pub async fn wait_attempts(&self, partner: &Partner, delivery_id: &str, n: usize) -> Value {
        self.wait_delivery(partner, delivery_id, &format!("{n} attempts"), |d| {
            d["attempts"].as_array().is_some_and(|a| a.len() >= n)
        })
        .await
    }

    /// `GET /health` answers `ok`.
    pub async fn assert_healthy(&self) {
        let answer = self.get("/health").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json["status"], "ok", "{answer:?}");
    }
}

/// The settings path of a partner.
pub fn settings_path(partner: &Partner) -> String {
    format!("/v1/partners/{}/settings/action-inquiry", partner.id)
}

/// The attempts of a delivery as returned by [`Engine::delivery`].
pub fn attempts(delivery: &Value) -> &Vec<Value> {
    delivery["attempts"].as_array().expect("attempts")
}

/// The verdicts of a delivery's attempts, in order.
pub fn verdicts(delivery: &Value) -> Vec<String> {
    attempts(delivery)
        .iter()
        .map(|a| a["verdict"].as_str().expect("a verdict").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Events and settings

/// The sample created event, for `partner`, with its own event id and inquiry id.
pub fn created(partner: &Partner, event_id: &str, inquiry: &str) -> Value {
    let mut event: Value =
        serde_json::from_str(include_str!("../../examples/events/created.json")).expect("the sample parses");
    event["id"] = event_id.into();
    event["partner_id"] = partner.id.as_str().into();
    event["data"]["ActionInquiryId"] = inquiry.into();
    event
}

/// The sample resolved event, for `partner`, with its own event id and inquiry id.
pub fn resolved(partner: &Partner, event_id: &str, inquiry: &str) -> Value {
    let mut event: Value =
        serde_json::from_str(include_str!("../../examples/events/resolved.json")).expect("the sample parses");
    event["id"] = event_id.into();
    event["partner_id"] = partner.id.as_str().into();
    event["data"]["ActionInquiryId"] = inquiry.into();
    event
}

/// Plain JSON settings posting to `url`: the event type, inquiry and order.
pub fn simple_settings(url: &str) -> Value {
    json!({
        "url": url,
        "method": "POST",
        "body_format": "json",
        "body_template": "{\"event\": \"{EventType}\", \"inquiry\": \"{ActionInquiryId}\", \"order\": \"{OrderId}\"}",
    })
}

/// The sample JSON settings (`examples/settings/json.json`) posting to `url`.
pub fn sample_settings(url: &str) -> Value {
    let mut settings: Value =
        serde_json::from_str(include_str!("../../examples/settings/json.json")).expect("the sample parses");
    settings["url"] = url.into();
    settings
}

/// The request the engine's renderer makes of `settings` and `event`.
pub fn rendered(settings: &Value, event: &Value) -> postwire::request::Request {
    let compiled = postwire::settings::NotificationSettings::validate(settings).expect("the settings are valid");
    let event = postwire::event::Event::from_value(event).expect("the event is valid");
    compiled.render(&event)
}

// ---------------------------------------------------------------------------------------------
// Signatures

/// The Standard Webhooks signature of `id.timestamp.body` with a `whsec_` secret, computed here
/// independently of the engine.
pub fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("the secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Asserts that `hit` carries a valid Standard Webhooks signature for `secret`, with its
/// `webhook-id` equal to `delivery_id` and a timestamp within a minute of now.
pub fn assert_signed(hit: &Hit, secret: &str, delivery_id: &str) {
    let id = hit.header("webhook-id").expect("webhook-id");
    assert_eq!(id, delivery_id, "webhook-id is the delivery id");
    let timestamp = hit.header("webhook-timestamp").expect("webhook-timestamp");
    let seconds: i64 = timestamp.parse().expect("the timestamp is Unix seconds");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - 60..=now + 1).contains(&seconds),
        "timestamp {seconds}, now {now}"
    );
    let signature = hit.header("webhook-signature").expect("webhook-signature");
    assert_eq!(
        signature,
        expected_signature(secret, id, timestamp, hit.body.as_bytes()),
        "the signature verifies"
    );
}

// ---------------------------------------------------------------------------------------------
// Receivers

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// When it arrived (before any scripted delay).
    pub at: Instant,
}

impl Hit {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `webhook-id`.
    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id").expect("a webhook-id")
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: &str) -> Reply {
        Reply::status(200).body(body)
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// With this body.
    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }

    /// With this header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answered only after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Script = dyn Fn(&Hit, &[Hit]) -> Reply + Send + Sync;

struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    script: Box<Script>,
}

/// A real HTTP receiver (axum on 127.0.0.1) answering as its script says and recording every
/// request. The script sees the request and every request that came before it.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering by `script(request, earlier requests)`.
    pub async fn start(script: impl Fn(&Hit, &[Hit]) -> Reply + Send + Sync + 'static) -> Receiver {
        let state = Arc::new(ReceiverState {
            hits: Mutex::new(Vec::new()),
            script: Box::new(script),
        });
        let app = axum::Router::new().fallback(answer).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state, task }
    }

    /// A receiver that always answers `reply`.
    pub async fn always(reply: Reply) -> Receiver {
        Receiver::start(move |_, _| reply.clone()).await
    }

    /// A receiver that answers the first requests with `first`, one each, then `then`.
    pub async fn sequence(first: Vec<Reply>, then: Reply) -> Receiver {
        Receiver::start(move |_, earlier| first.get(earlier.len()).cloned().unwrap_or_else(|| then.clone())).await
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().expect("not poisoned").clone()
    }

    /// Waits until at least `n` requests came; returns them all.
    pub async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        eventually(&format!("{n} requests at the receiver"), async || {
            let hits = self.hits();
            (hits.len() >= n).then_some(hits)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hit = Hit {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let reply = {
        let mut hits = state.hits.lock().expect("not poisoned");
        let reply = (state.script)(&hit, &hits);
        hits.push(hit);
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).expect("a valid status"), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            axum::http::HeaderValue::from_str(&value).expect("a header value"),
        );
    }
    response
}

/// A "receiver" that accepts connections, reads what the client sends and resets the
/// connection (`SO_LINGER` 0) without answering.
pub struct Resetter {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Instant>>>,
    task: JoinHandle<()>,
}

impl Resetter {
    /// Starts one.
    pub async fn start() -> Resetter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let hits = hits.clone();
            async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let hits = hits.clone();
                    tokio::spawn(async move {
                        let mut buffer = [0u8; 4096];
                        // Wait for the request to start arriving, then reset.
                        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
                        if matches!(read, Ok(Ok(n)) if n > 0) {
                            hits.lock().expect("not poisoned").push(Instant::now());
                        }
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    });
                }
            }
        });
        Resetter { addr, hits, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests it reset.
    pub fn count(&self) -> usize {
        self.hits.lock().expect("not poisoned").len()
    }
}

impl Drop for Resetter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One partner with one of each resource (a delivered postback, a plugin with a canary running, a
/// partner key), for filling route templates.
pub struct Tenant {
    pub partner: Partner,
    pub key: String,
    pub key_id: String,
    pub delivery_id: String,
    pub plugin_id: String,
}

/// Makes [`Tenant`] `name`: its events and inquiries are `evt_{name}` and `inq-{name}`.
pub async fn tenant(engine: &Engine, receiver: &Receiver, name: &str) -> Tenant {
    let partner = engine.partner_with(name, &simple_settings(&receiver.url("/pb"))).await;
    let delivery_id = engine
        .send_event(&created(&partner, &format!("evt_{name}"), &format!("inq-{name}")))
        .await;
    engine.wait_status(&partner, &delivery_id, "delivered").await;
    let upload = engine
        .raw(
            Method::POST,
            &format!("/v1/partners/{}/plugins?name=ack", partner.id),
            Some(postwire_test_plugins::bytes("trivial")),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{upload:?}");
    // A canary of that plugin on a share of its postbacks, so that the canary's routes have
    // one to show.
    let canary = engine
        .put(
            &format!("{}/canary", settings_path(&partner)),
            &json!({"candidate": "ack", "share_percent": 1}),
        )
        .await;
    assert_eq!(canary.status, StatusCode::OK, "{canary:?}");
    let key = engine
        .post(&format!("/v1/partners/{}/keys", partner.id), &json!({}))
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{key:?}");
    Tenant {
        key: key.json["token"].as_str().unwrap().to_owned(),
        key_id: key.json["id"].as_str().unwrap().to_owned(),
        delivery_id,
        plugin_id: upload.json["id"].as_str().unwrap().to_owned(),
        partner,
    }
}

/// Whether Node.js and npm are on the PATH, for the tests that build JavaScript plugins (`what`
/// names them in the messages). Without them those tests say that they were skipped; under CI
/// (`CI` set) their absence fails the test instead.
pub fn node_and_npm(what: &str) -> bool {
    let found = ["node", "npm"].iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    });
    match found {
        true => true,
        false if std::env::var_os("CI").is_some() => {
            panic!("node and npm are not installed: under CI {what} must run")
        }
        false => {
            eprintln!("skipped: {what} need Node.js 20+ and npm on the PATH");
            false
        }
    }
}

/// The standard output of a command that must have succeeded; both outputs otherwise.
pub fn succeeded(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
