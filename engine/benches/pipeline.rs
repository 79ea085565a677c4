//! The delivery pipeline end to end, with a plain HTTP client as the baseline, and the cost of a
//! claim on a small and on a large backlog.
//!
//! Run with `cargo bench -p postwire --bench pipeline`. It prints figures (no criterion: a run is
//! seconds long and already averages thousands of postbacks):
//!
//! - BASELINE: a `reqwest` loop sending the rendered, signed postback to a loopback receiver with
//!   the worker's concurrency, so the figure is what HTTP alone costs on this machine;
//! - POSTWIRE: the engine in this process (`serve::start`, SQLite in a temporary directory), N
//!   events posted through `POST /v1/events/batch` (1000 a batch, one request at a time), timed
//!   from the first POST to the receiver having seen N postbacks; with durability `process` and
//!   `power`. Each run also reports the cores busy meanwhile and so the CPU time per postback;
//!   a run with retention pruning every 200 ms with a 1 s window, so that pruning removes most
//!   rows while the rest are delivered, compares against the process run;
//! - CLAIM COST: `Store::claim(now, lease, 100)` and giving the rows back (`Store::reschedule`)
//!   with 1,000 and with 1,000,000 due deliveries waiting (on PostgreSQL with `PW_BENCH_POSTGRES`);
//! - WORKERS (`PW_BENCH_ONLY=workers`, PostgreSQL only): 1, 2 and 4 (`PW_BENCH_WORKERS`) real
//!   `postwire serve --role worker` processes on a fresh schema; the partner and its settings are
//!   made through an API engine (`--role api`) in the bench's process, and the N events are
//!   accepted by the bench's own store (`Store::accept`, 1,000 a transaction, as an API process
//!   stores a batch) while the workers claim and send; timed from the first accept to the
//!   receiver having seen N postbacks. Reports the workers' CPU, the bench process's (receiver
//!   and accepts) and the PostgreSQL server's a postback;
//! - SCALE (`PW_BENCH_ONLY=scale`, needs `PW_BENCH_POSTGRES`): in one run, each round the
//!   baseline, SQLite in one process, PostgreSQL in one process (`--role all`) and with 1, 2 and
//!   4 worker processes; then the claim cost on PostgreSQL; one table of medians: postbacks/s,
//!   ratio to the baseline, CPU a postback outside the database and in it.
//!
//! Every PostgreSQL run uses a fresh schema and drops it afterwards.
//!
//! Each measurement runs 3 times; medians are reported. Knobs, from the environment:
//! `PW_BENCH_N` (postbacks per run, default 50000), `PW_BENCH_REPEATS` (3),
//! `PW_BENCH_CONCURRENCY` (256, for both sides), `PW_BENCH_INGEST_CONCURRENCY` (1, batch
//! requests under way at once), `PW_BENCH_MEMORY_QUEUE` (the worker's default; see
//! `WorkerConfig::memory_queue`), `PW_BENCH_CLAIM_BIG` (1000000), `PW_BENCH_CLAIM_ITERS` (300).
//! `PW_BENCH_VALGRIND` set runs the engine with the on-demand plugin allocator, whose address
//! space valgrind can reserve, to count instructions with `valgrind --tool=callgrind`.
//! `PW_BENCH_NICENESS` (the default of `serve --runtime-niceness`) sets how many nice steps the
//! runtime's threads run below the store's accepting thread. `PW_BENCH_POSTGRES`, a PostgreSQL
//! URL, runs the engine on a fresh schema there instead of SQLite, and reports the CPU the
//! database server's processes on this machine used meanwhile (for docs/deployment.md's sizing).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use postwire::event::{Event, EventType};
use postwire::request::Request;
use postwire::serve::ServeOptions;
use postwire::settings::NotificationSettings;
use postwire::store::{Attempt, AttemptVerdict, Durability, GiveBack, Next, Outcome, Store, now_ms};
use serde_json::{Value, json};
use sqlx::{Connection, Row};
use tokio_util::sync::CancellationToken;

/// The allocator of the `postwire` binary; the baseline runs in this process with it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A typical partner template: 10 fields in a JSON body, a placeholder in the URL and a header.
const BODY_TEMPLATE: &str = r#"{"inquiry":"{ActionInquiryId}","order":"{OrderId}","campaign":"{CampaignName}","amount":{TransactionAmount},"currency":"{Currency}","payout":{ExpectedPayout},"type":"{InquiryType}","date":"{TransactionDate}","notes":"{InquiryNotes}","sub1":"{SubId1}"}"#;

/// The retention window of the runs with pruning (`PW_BENCH_ONLY=process+prune`).
const PRUNE_WINDOW: &str = "1s";

/// How often those runs prune.
const PRUNE_INTERVAL: &str = "200ms";

/// Events per `POST /v1/events/batch`.
const BATCH: usize = 1000;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn settings_json(receiver: SocketAddr) -> Value {
    json!({
        "url": format!("http://{receiver}/hook?inquiry={{ActionInquiryId}}"),
        "method": "POST",
        "body_format": "json",
        "headers": {"X-Partner": "{MediaPartnerId}"},
        "body_template": BODY_TEMPLATE,
    })
}

/// CPU time this process has used so far (user and system, all threads), from `/proc`; zero
/// where there is no `/proc`.
fn cpu_time() -> Duration {
    process_cpu_time("self")
}

/// CPU time the process `pid` (or `self`) has used so far, from `/proc/<pid>/stat`; zero where
/// there is no such file.
fn process_cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, in clock ticks of 1/100 s on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU time the PostgreSQL server's processes on this machine have used so far (those running
/// now), from `/proc`: what the store costs the database when the bench runs on PostgreSQL.
fn postgres_cpu_time() -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let mut ticks = 0;
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        ticks += field(11) + field(12);
    }
    Duration::from_millis(ticks * 10)
}

/// A fresh schema in the PostgreSQL database at `url`: its name, and the URL that opens it.
async fn postgres_schema(url: &str) -> (String, String) {
    let schema = format!("pw_bench_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .expect("PW_BENCH_POSTGRES answers");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("a schema");
    let _ = admin.close().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let opened = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    (schema, opened)
}

/// Drops a schema [`postgres_schema`] made, with everything in it, once nothing uses it.
async fn drop_schema(url: &str, schema: &str) {
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .expect("PW_BENCH_POSTGRES answers");
    if let Err(e) = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
    {
        println!("    note: schema {schema} not dropped: {e}");
    }
    let _ = admin.close().await;
}

/// The count `sql` answers in the database at `url`, SQLite or PostgreSQL.
async fn count_rows(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(url).await.expect("the database opens");
        sqlx::query_scalar(sql).fetch_one(&mut db).await.expect("a count")
    } else {
        let mut db = sqlx::PgConnection::connect(url).await.expect("the database opens");
        sqlx::query_scalar(sql).fetch_one(&mut db).await.expect("a count")
    }
}

/// Cores busy on average between `cpu` and now, over `wall`.
fn cores_since(cpu: Duration, wall: Duration) -> f64 {
    cpu_time().saturating_sub(cpu).as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// (a) the receiver
// ---------------------------------------------------------------------------------------------

/// Answers 200 with a small body and counts requests.
async fn start_receiver() -> (Arc<AtomicUsize>, SocketAddr) {
    let count = Arc::new(AtomicUsize::new(0));
    async fn hook(State(count): State<Arc<AtomicUsize>>, _body: Bytes) -> &'static str {
        count.fetch_add(1, Ordering::Relaxed);
        r#"{"ok":true}"#
    }
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(count.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the receiver runs") });
    (count, addr)
}

/// Waits until `count` reaches `target` (polling every millisecond; bounded). With
/// `PW_BENCH_TRACE` set, prints how many arrived in each 250 ms.
async fn wait_count(count: &AtomicUsize, target: usize, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let trace = std::env::var_os("PW_BENCH_TRACE").is_some();
    let (mut mark, mut seen) = (Instant::now(), count.load(Ordering::Relaxed));
    while count.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        if trace && mark.elapsed() >= Duration::from_millis(250) {
            let now = count.load(Ordering::Relaxed);
            println!("    {:>6} postbacks in {:?}", now - seen, mark.elapsed());
            (mark, seen) = (Instant::now(), now);
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// (b) the baseline
// ---------------------------------------------------------------------------------------------

/// The postback the engine sends for a sample event: rendered from the same settings and signed,
/// with the same User-Agent.
fn baseline_request(receiver: SocketAddr) -> (Request, Vec<(&'static str, String)>) {
    let settings = NotificationSettings::from_json(&settings_json(receiver).to_string()).expect("valid settings");
    let request = settings.render(&Event::sample(EventType::ActionInquiryCreated, "ptn_bench"));
    let secret = postwire::sign::new_secret();
    let signature = postwire::sign::headers(
        &secret,
        &postwire::id::DeliveryId::generate(),
        now_ms() / 1000,
        request.body.as_bytes(),
    )
    .expect("a valid secret");
    (request, signature.into_iter().collect())
}

/// Sends `n` copies of the postback with `concurrency` requests in flight; requests per second
/// and the cores busy meanwhile.
async fn baseline(receiver: SocketAddr, count: &AtomicUsize, n: usize, concurrency: usize) -> (f64, f64) {
    let (request, signature) = baseline_request(receiver);
    let request = Arc::new(request);
    let signature = Arc::new(signature);
    // The same client configuration as `postwire::send::Sender`.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .user_agent(concat!("Postwire/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client");
    let next = Arc::new(AtomicUsize::new(0));
    let before = count.load(Ordering::Relaxed);
    let started = Instant::now();
    let cpu = cpu_time();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, request, signature, next) = (client.clone(), request.clone(), signature.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let mut builder = client.post(request.url.as_str());
                    for (name, value) in &request.headers {
                        builder = builder.header(name.as_str(), value.as_bytes());
                    }
                    for (name, value) in signature.iter() {
                        builder = builder.header(*name, value.as_str());
                    }
                    let mut response = builder
                        .body(request.body.clone())
                        .send()
                        .await
                        .expect("the receiver answers");
                    assert_eq!(response.status().as_u16(), 200);
                    let mut body = Vec::new();
                    while let Some(chunk) = response.chunk().await.expect("the answer reads") {
                        body.extend_from_slice(&chunk);
                    }
                    std::hint::black_box(body);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a baseline task");
    }
    let elapsed = started.elapsed();
    let cores = cores_since(cpu, elapsed);
    assert_eq!(
        count.load(Ordering::Relaxed) - before,
        n,
        "the receiver saw every request"
    );
    (n as f64 / elapsed.as_secs_f64(), cores)
}

// ---------------------------------------------------------------------------------------------
// (c) postwire end to end
// ---------------------------------------------------------------------------------------------

struct Run {
    /// Postbacks per second, from the first batch POST to the receiver having seen all.
    end_to_end: f64,
    /// Events accepted per second, from the first batch POST to the last 202.
    ingest: f64,
    /// Postbacks per second once every event was accepted: delivery without ingest beside it.
    after_ingest: f64,
    /// Cores busy on average from the first batch POST to the last postback.
    cores: f64,
    /// The PostgreSQL server's cores busy meanwhile, on PostgreSQL (`PW_BENCH_POSTGRES`).
    database_cores: Option<f64>,
    /// Runs with worker processes: this process's cores busy meanwhile (the receiver and the
    /// accepts); `cores` is then the worker processes'.
    bench_cores: Option<f64>,
}

impl Run {
    /// CPU a postback outside the database: the engine's processes, the receiver and the
    /// ingest, in microseconds.
    fn outside_us(&self) -> f64 {
        (self.cores + self.bench_cores.unwrap_or(0.0)) * 1e6 / self.end_to_end
    }

    /// The database server's CPU a postback, in microseconds (zero on SQLite).
    fn database_us(&self) -> f64 {
        self.database_cores.unwrap_or(0.0) * 1e6 / self.end_to_end
    }
}

/// `{"events": [...]}` bodies of `n` distinct events (every data field the catalogue has).
fn batches(partner: &str, n: usize) -> Vec<String> {
    let template = Event::sample(EventType::ActionInquiryCreated, partner).to_json();
    (0..n)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|chunk| {
            let events: Vec<Value> = chunk
                .iter()
                .map(|i| {
                    let mut event = template.clone();
                    event["id"] = json!(format!("evt_bench_{i:08}"));
                    event["data"]["ActionInquiryId"] = json!(format!("{}", 2_000_000 + i));
                    event["data"]["OrderId"] = json!(format!("ORD-{i}"));
                    event
                })
                .collect();
            json!({ "events": events }).to_string()
        })
        .collect()
}

/// The operator token of the engine under test.
const OPERATOR_TOKEN: &str = "pw_live_benchbenchbenchbenchbenchbenchbenchbench";

/// The secret key of the engines on PostgreSQL, the same in every process.
const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Creates the bench's partner through the API at `base`; returns its id.
async fn create_partner(client: &reqwest::Client, base: &str) -> String {
    let (status, partner) = api_call(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/partners"),
        r#"{"name":"bench"}"#.into(),
    )
    .await;
    assert_eq!(status, 201);
    partner["id"].as_str().expect("a partner id").to_owned()
}

async fn api_call(client: &reqwest::Client, method: reqwest::Method, url: String, body: String) -> (u16, Value) {
    let response = client
        .request(method, url)
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the API answers");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("the API answer reads");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// What a run's engine has besides the defaults.
#[derive(Default)]
struct Setup {
    durability: Durability,
    /// A transform plugin on every postback.
    transform: Option<Vec<u8>>,
    /// Retention pruning during the run.
    prune: bool,
    /// A PostgreSQL database to run on (a fresh schema in it), instead of SQLite.
    postgres: Option<String>,
}

/// The PostgreSQL database of `PW_BENCH_POSTGRES`, if set.
fn bench_postgres() -> Option<String> {
    std::env::var("PW_BENCH_POSTGRES").ok().filter(|url| !url.is_empty())
}

async fn postwire_run(
    receiver: SocketAddr,
    count: &AtomicUsize,
    n: usize,
    concurrency: usize,
    setup: Setup,
    ingest_concurrency: usize,
) -> Run {
    let Setup {
        durability,
        transform,
        prune,
        postgres,
    } = setup;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let schema = match &postgres {
        Some(url) => Some(postgres_schema(url).await),
        None => None,
    };
    let database = match &schema {
        Some((_, opened)) => opened.clone(),
        None => format!("sqlite://{}", dir.path().join("pw.db").display()),
    };
    let mut config = ServeOptions {
        listen: Some("127.0.0.1:0".parse().expect("an address")),
        database: Some(database.clone()),
        durability: Some(durability),
        allow_destination: vec!["127.0.0.1/32".parse().expect("a network")],
        concurrency: Some(concurrency),
        admin_token: Some(OPERATOR_TOKEN.into()),
        // Retention at the default (30 days) removes nothing during a run; with `prune`, a
        // window short enough that it removes most postbacks while the others are delivered.
        retention: prune.then(|| PRUNE_WINDOW.into()),
        prune_interval: prune.then(|| PRUNE_INTERVAL.into()),
        secret_key: postgres.is_some().then(|| SECRET_KEY.into()),
        ..Default::default()
    }
    .resolve()
    .expect("valid options");
    if let Ok(queue) = std::env::var("PW_BENCH_MEMORY_QUEUE") {
        config.worker.memory_queue = queue.parse().expect("PW_BENCH_MEMORY_QUEUE is a number");
    }
    if std::env::var_os("PW_BENCH_VALGRIND").is_some() {
        config.plugin_allocator = postwire_plugins::Allocator::OnDemand;
    }
    let running = postwire::serve::start(config, CancellationToken::new())
        .await
        .expect("the engine starts");
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let partner = create_partner(&client, &base).await;
    let mut settings = settings_json(receiver);
    if let Some(wasm) = transform {
        let answer = client
            .post(format!("{base}/v1/partners/{partner}/plugins?name=transform"))
            .bearer_auth(OPERATOR_TOKEN)
            .body(wasm)
            .send()
            .await
            .expect("the API answers");
        assert_eq!(answer.status().as_u16(), 201);
        let plugin: Value = answer.json().await.expect("a plugin");
        settings["transform_plugin"] = plugin["id"].clone();
    }
    let (status, answer) = api_call(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/partners/{partner}/settings/action-inquiry"),
        settings.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let bodies = batches(&partner, n);
    // Events go in as the platform posts them: with an ingest key.
    let (status, key) = api_call(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/ingest-keys"),
        String::new(),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let ingest_key = key["token"].as_str().expect("an ingest key").to_owned();

    let before = count.load(Ordering::Relaxed);
    let started = Instant::now();
    let cpu = cpu_time();
    let database_cpu = postgres.is_some().then(postgres_cpu_time);
    // Senders take the batches in turn, each posting its next one when the last is answered.
    let bodies = Arc::new(std::sync::Mutex::new(bodies.into_iter()));
    let senders: Vec<_> = (0..ingest_concurrency)
        .map(|_| {
            let (client, bodies, url) = (client.clone(), bodies.clone(), format!("{base}/v1/events/batch"));
            let ingest_key = ingest_key.clone();
            tokio::spawn(async move {
                loop {
                    let Some(body) = bodies.lock().expect("never poisoned").next() else {
                        break;
                    };
                    let response = client
                        .post(&url)
                        .bearer_auth(&ingest_key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("the API answers");
                    assert_eq!(response.status().as_u16(), 202);
                    response.bytes().await.expect("the answer reads");
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("a sender");
    }
    let ingest = started.elapsed();
    let arrived_during_ingest = count.load(Ordering::Relaxed) - before;
    if std::env::var_os("PW_BENCH_TRACE").is_some() {
        println!("    ingest done after {ingest:?}; {arrived_during_ingest} postbacks arrived by then");
    }
    assert!(
        wait_count(count, before + n, Duration::from_secs(600)).await,
        "the receiver saw {} of {n} postbacks within 10 minutes",
        count.load(Ordering::Relaxed) - before
    );
    let total = started.elapsed();
    let cores = cores_since(cpu, total);
    let database_cores =
        database_cpu.map(|before| postgres_cpu_time().saturating_sub(before).as_secs_f64() / total.as_secs_f64());
    // Retention steps aside while postbacks wait to be sent, and catches up once they are
    // sent: how long after the last postback it removed every delivery of the run.
    let caught_up = if prune {
        let idle = Instant::now();
        loop {
            let left = count_rows(&database, "SELECT COUNT(*) FROM deliveries").await;
            if left == 0 || idle.elapsed() > Duration::from_secs(120) {
                break Some((left, idle.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        None
    };
    running.stop().await;

    // Every delivery is recorded as delivered after one attempt.
    let delivered = count_rows(&database, "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'").await;
    let attempts = count_rows(&database, "SELECT COUNT(*) FROM attempts").await;
    if let Some((left, after)) = caught_up {
        println!(
            "    retention removed {} of {n} deliveries and {} of {n} attempts by {:.1} s after the last \
             postback arrived ({left} left)",
            n as i64 - delivered,
            n as i64 - attempts,
            after.as_secs_f64()
        );
    } else if delivered as usize != n || attempts as usize != n {
        println!("    note: {delivered} deliveries delivered and {attempts} attempts recorded for {n} events");
    }
    let received = count.load(Ordering::Relaxed) - before;
    if received != n {
        println!("    note: the receiver saw {received} postbacks for {n} events");
    }
    if let (Some(url), Some((schema, _))) = (&postgres, &schema) {
        drop_schema(url, schema).await;
    }
    Run {
        end_to_end: n as f64 / total.as_secs_f64(),
        ingest: n as f64 / ingest.as_secs_f64(),
        after_ingest: (n - arrived_during_ingest) as f64 / (total - ingest).as_secs_f64().max(1e-6),
        cores,
        database_cores,
        bench_cores: None,
    }
}

// ---------------------------------------------------------------------------------------------
// (c2) worker processes over PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A `postwire serve --role worker` process of the binary built with this bench, stopped
/// (SIGTERM, then SIGKILL after 10 s) when dropped.
struct WorkerProcess {
    child: std::process::Child,
}

impl WorkerProcess {
    /// Starts a worker on `database` and waits (up to 20 s) for its first line, which it prints
    /// once its store is open.
    fn start(database: &str, concurrency: usize) -> WorkerProcess {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut command = Command::new(env!("CARGO_BIN_EXE_postwire"));
        command
            .args([
                "serve",
                "--role",
                "worker",
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
            ])
            .args(["--allow-destination", "127.0.0.1/32", "--secret-key", SECRET_KEY])
            .args([
                "--admin-token",
                OPERATOR_TOKEN,
                "--concurrency",
                &concurrency.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("POSTWIRE_") {
                command.env_remove(var);
            }
        }
        command.env("POSTWIRE_LOG", "warn");
        let mut child = command.spawn().expect("the postwire binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines, first) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = lines.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut worker = WorkerProcess { child };
        match first.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with("postwire listening on") => worker,
            other => {
                worker.stop();
                panic!("a worker process did not start: {other:?}");
            }
        }
    }

    /// CPU time the process has used so far.
    fn cpu_time(&self) -> Duration {
        process_cpu_time(&self.child.id().to_string())
    }

    /// SIGTERM, and SIGKILL if it has not ended within 10 s; reaps it.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: `kill` with a child's pid and a signal number has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `workers` worker processes over a fresh schema of the PostgreSQL database `url`, N events
/// accepted meanwhile by this process's own store (`Store::accept`, 1,000 a transaction, one at a
/// time, as an API process stores a batch), timed from the first accept to the receiver having
/// seen N postbacks. The partner and its settings are made beforehand through an API engine
/// (`--role api`) in this process, stopped before the clock starts.
async fn workers_run(
    receiver: SocketAddr,
    count: &AtomicUsize,
    n: usize,
    workers: usize,
    concurrency: usize,
    url: &str,
) -> Run {
    let (schema, database) = postgres_schema(url).await;
    let config = ServeOptions {
        role: Some(postwire::serve::Role::Api),
        listen: Some("127.0.0.1:0".parse().expect("an address")),
        database: Some(database.clone()),
        allow_destination: vec!["127.0.0.1/32".parse().expect("a network")],
        admin_token: Some(OPERATOR_TOKEN.into()),
        secret_key: Some(SECRET_KEY.into()),
        ..Default::default()
    }
    .resolve()
    .expect("valid options");
    let api = postwire::serve::start(config, CancellationToken::new())
        .await
        .expect("the API engine starts");
    let base = format!("http://{}", api.addr);
    let client = reqwest::Client::new();
    let partner = create_partner(&client, &base).await;
    let (status, answer) = api_call(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/partners/{partner}/settings/action-inquiry"),
        settings_json(receiver).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    api.stop().await;

    let template = Event::sample(EventType::ActionInquiryCreated, &partner).to_json();
    let chunks: Vec<Arc<Vec<Event>>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|chunk| {
            Arc::new(
                chunk
                    .iter()
                    .map(|i| {
                        let mut event = template.clone();
                        event["id"] = json!(format!("evt_bench_{i:08}"));
                        event["data"]["ActionInquiryId"] = json!(format!("{}", 2_000_000 + i));
                        event["data"]["OrderId"] = json!(format!("ORD-{i}"));
                        Event::from_value(&event).expect("a valid event")
                    })
                    .collect(),
            )
        })
        .collect();
    let store = Store::open(&database, Durability::Process)
        .await
        .expect("the store opens");
    let mut processes: Vec<WorkerProcess> = (0..workers)
        .map(|_| WorkerProcess::start(&database, concurrency))
        .collect();

    let before = count.load(Ordering::Relaxed);
    let started = Instant::now();
    let cpu = cpu_time();
    let workers_cpu: Duration = processes.iter().map(WorkerProcess::cpu_time).sum();
    let database_cpu = postgres_cpu_time();
    for chunk in chunks {
        store
            .accept_leasing(chunk, now_ms(), postwire::store::Lease::NONE)
            .await
            .expect("events accepted");
    }
    let ingest = started.elapsed();
    let arrived_during_ingest = count.load(Ordering::Relaxed) - before;
    let arrived = wait_count(count, before + n, Duration::from_secs(300)).await;
    let total = started.elapsed();
    let per_second = |used: Duration| used.as_secs_f64() / total.as_secs_f64();
    let cores = per_second(
        processes
            .iter()
            .map(WorkerProcess::cpu_time)
            .sum::<Duration>()
            .saturating_sub(workers_cpu),
    );
    let database_cores = per_second(postgres_cpu_time().saturating_sub(database_cpu));
    let bench_cores = cores_since(cpu, total);
    for process in &mut processes {
        process.stop();
    }
    store.close().await;
    assert!(
        arrived,
        "the receiver saw {} of {n} postbacks within 5 minutes",
        count.load(Ordering::Relaxed) - before
    );
    let delivered = count_rows(&database, "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'").await;
    let attempts = count_rows(&database, "SELECT COUNT(*) FROM attempts").await;
    if delivered as usize != n || attempts as usize != n {
        println!("    note: {delivered} deliveries delivered and {attempts} attempts recorded for {n} events");
    }
    let received = count.load(Ordering::Relaxed) - before;
    if received != n {
        println!("    note: the receiver saw {received} postbacks for {n} events");
    }
    // The workers have exited, so their statistics are in: how many of the updates of
    // deliveries (leases and settles) wrote no index entry.
    let stats = "FROM pg_stat_user_tables WHERE relname = 'deliveries' AND schemaname = current_schema()";
    let updates = count_rows(&database, &format!("SELECT n_tup_upd {stats}")).await;
    let hot = count_rows(&database, &format!("SELECT n_tup_hot_upd {stats}")).await;
    println!("    deliveries: {updates} updates, {hot} of them HOT (no index entry written)");
    drop_schema(url, &schema).await;
    Run {
        end_to_end: n as f64 / total.as_secs_f64(),
        ingest: n as f64 / ingest.as_secs_f64(),
        after_ingest: (n - arrived_during_ingest) as f64 / (total - ingest).as_secs_f64().max(1e-6),
        cores,
        database_cores: Some(database_cores),
        bench_cores: Some(bench_cores),
    }
}

// ---------------------------------------------------------------------------------------------
// (d) claim cost
// ---------------------------------------------------------------------------------------------

struct ClaimCost {
    claim_us: f64,
    give_back_us: f64,
    both_us: f64,
    fill_secs: f64,
    plan: String,
}

/// A store with `due` due deliveries: the first 1000 through `Store::accept`, the rest inserted
/// in bulk with plain SQL in one transaction (rows as `accept` writes them). On SQLite in a
/// temporary folder, or on a fresh schema of the PostgreSQL database `postgres`.
async fn claim_cost(due: usize, iterations: usize, postgres: Option<&str>) -> ClaimCost {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let schema = match postgres {
        Some(url) => Some(postgres_schema(url).await),
        None => None,
    };
    let url = match &schema {
        Some((_, opened)) => opened.clone(),
        None => format!("sqlite://{}", dir.path().join("claim.db").display()),
    };
    let filled = Instant::now();
    let store = Store::open(&url, Durability::Process).await.expect("the store opens");
    let partner = store.create_partner("bench", str::to_owned).await.expect("a partner");
    let settings = NotificationSettings::validate(&settings_json("127.0.0.1:9".parse().expect("an address")))
        .expect("valid settings");
    let body = serde_json::to_string(settings.settings()).expect("settings serialize");
    let now = now_ms();
    store
        .put_settings(&partner.id, &body, now)
        .await
        .expect("settings saved");
    let sample = Event::sample(EventType::ActionInquiryCreated, &partner.id).to_json();
    let accepted = due.min(1000);
    let events: Vec<Event> = (0..accepted)
        .map(|i| {
            let mut event = sample.clone();
            event["id"] = json!(format!("evt_claim_{i}"));
            event["data"]["ActionInquiryId"] = json!(format!("{}", 3_000_000 + i));
            Event::from_value(&event).expect("a valid event")
        })
        .collect();
    store.accept(&events, now).await.expect("events accepted");
    // A smaller event body than the sample keeps the database small; the claim reads 100 bodies
    // whatever their size, so the backlog's size is what is measured.
    let small = json!({"id": "", "type": "action_inquiry.created", "partner_id": partner.id,
        "occurred_at": "2026-11-20T14:03:00Z", "data": {"ActionInquiryId": ""}})
    .to_string();
    let past = now - 3_700_000;
    let plan = if postgres.is_some() {
        let mut db = sqlx::PgConnection::connect(&url).await.expect("the database opens");
        if due > accepted {
            let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                .fetch_one(&mut db)
                .await
                .unwrap_or(false);
            let mut tx = db.begin().await.expect("a transaction");
            if superuser {
                // The rows reference each other correctly by construction: the bulk fill skips
                // the foreign keys' triggers (this transaction only), as a restore does.
                sqlx::query("SET LOCAL session_replication_role = replica")
                    .execute(&mut *tx)
                    .await
                    .expect("replica role");
            }
            sqlx::query(
                "INSERT INTO events (partner_id, id, event_type, occurred_at, body, received_at)
                 SELECT $2, 'evt_' || lpad(i::text, 8, '0'), 'action_inquiry.created', $3,
                        jsonb_set(jsonb_set($4::jsonb, '{id}', to_jsonb('evt_' || lpad(i::text, 8, '0'))),
                                  '{data,ActionInquiryId}', to_jsonb((10000000 + i)::text))::text,
                        $5
                 FROM generate_series(1, $1) AS i",
            )
            .bind((due - accepted) as i64)
            .bind(partner.id.as_str())
            .bind(past)
            .bind(&small)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("events inserted");
            sqlx::query(
                "INSERT INTO deliveries (id, partner_id, event_id, event_type, inquiry_id, status, next_at,
                     created_at, updated_at)
                 SELECT 'dlv_' || lpad(i::text, 8, '0'), $2, 'evt_' || lpad(i::text, 8, '0'),
                        'action_inquiry.created', (10000000 + i)::text, 'pending', $3 + (i % 3600000), $4, $4
                 FROM generate_series(1, $1) AS i",
            )
            .bind((due - accepted) as i64)
            .bind(partner.id.as_str())
            .bind(past)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("deliveries inserted");
            tx.commit().await.expect("committed");
        }
        sqlx::query("ANALYZE events, deliveries")
            .execute(&mut db)
            .await
            .expect("analyzed");
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .fetch_one(&mut db)
            .await
            .expect("a count");
        assert_eq!(pending as usize, due);
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN (COSTS OFF) SELECT id, next_at, seq FROM deliveries
             WHERE partner_id = 'bench' AND status = 'pending' AND next_at <= 0
             ORDER BY next_at, seq LIMIT 100 FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut db)
        .await
        .unwrap_or_default();
        let _ = db.close().await;
        plan.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ")
    } else {
        if due > accepted {
            let mut db = sqlx::SqliteConnection::connect(&url).await.expect("the database opens");
            let mut tx = db.begin().await.expect("a transaction");
            sqlx::query(
                "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
                 INSERT INTO events (partner_id, id, event_type, occurred_at, body, received_at)
                 SELECT ?2, printf('evt_%08d', i), 'action_inquiry.created', ?3,
                        json_set(?4, '$.id', printf('evt_%08d', i), '$.data.ActionInquiryId', printf('%d', 10000000 + i)),
                        ?5
                 FROM seq",
            )
            .bind((due - accepted) as i64)
            .bind(&partner.id)
            .bind(past)
            .bind(&small)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("events inserted");
            sqlx::query(
                "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
                 INSERT INTO deliveries (id, partner_id, event_id, event_type, inquiry_id, status, next_at,
                     created_at, updated_at)
                 SELECT printf('dlv_%08d', i), ?2, printf('evt_%08d', i), 'action_inquiry.created',
                        printf('%d', 10000000 + i), 'pending', ?3 + (i % 3600000), ?4, ?4
                 FROM seq",
            )
            .bind((due - accepted) as i64)
            .bind(&partner.id)
            .bind(past)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("deliveries inserted");
            tx.commit().await.expect("committed");
            db.close().await.expect("closed");
        }
        let mut db = sqlx::SqliteConnection::connect(&url).await.expect("the database opens");
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .fetch_one(&mut db)
            .await
            .expect("a count");
        assert_eq!(pending as usize, due);
        let plan: Vec<String> = sqlx::query(
            "EXPLAIN QUERY PLAN SELECT rowid, next_at FROM deliveries INDEXED BY deliveries_pending_by_partner
             WHERE partner_id = 'bench' AND status = 'pending' AND next_at <= 0 ORDER BY next_at, rowid LIMIT 100",
        )
        .fetch_all(&mut db)
        .await
        .map(|rows| rows.iter().map(|row| row.get::<String, _>(3)).collect())
        .unwrap_or_default();
        drop(db);
        plan.join("; ")
    };
    let fill_secs = filled.elapsed().as_secs_f64();

    let lease = 60_000;
    let mut claim = Vec::with_capacity(iterations);
    let mut give_back = Vec::with_capacity(iterations);
    let mut both = Vec::with_capacity(iterations);
    for i in 0..iterations + 20 {
        let now = now_ms();
        let started = Instant::now();
        let claimed = store.claim(now, lease, 100).await.expect("a claim");
        let claimed_in = started.elapsed();
        assert_eq!(claimed.len(), 100);
        let rows: Vec<GiveBack> = claimed
            .into_iter()
            .map(|c| GiveBack {
                delivery_id: c.delivery_id,
                lease_seq: c.lease_seq,
                due: now,
            })
            .collect();
        let given = Instant::now();
        store.reschedule(&rows).await.expect("given back");
        let given_in = given.elapsed();
        if i >= 20 {
            claim.push(claimed_in.as_secs_f64() * 1e6);
            give_back.push(given_in.as_secs_f64() * 1e6);
            both.push((claimed_in + given_in).as_secs_f64() * 1e6);
        }
    }
    store.close().await;
    if let (Some(admin), Some((schema, _))) = (postgres, &schema) {
        drop_schema(admin, schema).await;
    }
    ClaimCost {
        claim_us: median(&mut claim),
        give_back_us: median(&mut give_back),
        both_us: median(&mut both),
        fill_secs,
        plan,
    }
}

// ---------------------------------------------------------------------------------------------
// (e) the store's share of a postback
// ---------------------------------------------------------------------------------------------

/// Microseconds per event or delivery that each store step takes, in the sizes the API and the
/// worker use: accept (batches of 1000), claim (256 at a time), record (1024 outcomes a commit).
struct StorePath {
    accept_us: f64,
    claim_us: f64,
    record_us: f64,
}

async fn store_path(n: usize, durability: Durability) -> StorePath {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("path.db").display());
    let store = Store::open(&url, durability).await.expect("the store opens");
    let partner = store.create_partner("bench", str::to_owned).await.expect("a partner");
    let settings = NotificationSettings::validate(&settings_json("127.0.0.1:9".parse().expect("an address")))
        .expect("valid settings");
    let body = serde_json::to_string(settings.settings()).expect("settings serialize");
    store
        .put_settings(&partner.id, &body, now_ms())
        .await
        .expect("settings saved");
    let sample = Event::sample(EventType::ActionInquiryCreated, &partner.id);
    let template = sample.to_json();
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let mut event = template.clone();
            event["id"] = json!(format!("evt_path_{i}"));
            event["data"]["ActionInquiryId"] = json!(format!("{}", 4_000_000 + i));
            Event::from_value(&event).expect("a valid event")
        })
        .collect();

    let chunks: Vec<Arc<Vec<Event>>> = events.chunks(BATCH).map(|c| Arc::new(c.to_vec())).collect();
    let started = Instant::now();
    for chunk in chunks {
        store
            .accept_leasing(chunk, now_ms(), postwire::store::Lease::NONE)
            .await
            .expect("accepted");
    }
    let accept_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;

    let started = Instant::now();
    let mut claimed = Vec::with_capacity(n);
    while claimed.len() < n {
        let batch = store.claim(now_ms(), 60_000, 256).await.expect("claimed");
        assert!(!batch.is_empty(), "every delivery is due");
        claimed.extend(batch);
    }
    let claim_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;

    // Outcomes as the worker makes them: the request as sent (redacted), the receiver's answer.
    let (request, signature) = baseline_request("127.0.0.1:9".parse().expect("an address"));
    let signature: Vec<(&str, String)> = signature.iter().map(|(n, v)| (*n, v.clone())).collect();
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|c| Outcome {
            attempt: Attempt {
                id: postwire::id::AttemptId::generate(),
                delivery_id: c.delivery_id.clone(),
                number: 1,
                started_at: now_ms(),
                duration_ms: 1,
                request: postwire::redact::request(&request, &signature),
                response_status: Some(200),
                response_headers: Some(
                    serde_json::value::to_raw_value(&json!([
                        ["content-type", "text/plain; charset=utf-8"],
                        ["content-length", "11"]
                    ]))
                    .expect("json"),
                ),
                response_body: Some(r#"{"ok":true}"#.into()),
                verdict: AttemptVerdict::Success,
                error: None,
                plugins: None,
                superseded: false,
            },
            next: Next::Delivered,
            lease_seq: c.lease_seq,
        })
        .collect();
    let started = Instant::now();
    for chunk in outcomes.chunks(1024) {
        store
            .record(Arc::new(chunk.to_vec()), now_ms())
            .await
            .expect("recorded");
    }
    let record_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    store.close().await;
    StorePath {
        accept_us,
        claim_us,
        record_us,
    }
}

// ---------------------------------------------------------------------------------------------
// (f) scale-out: every backend and worker count in one table
// ---------------------------------------------------------------------------------------------

/// The knobs of a run, as `bench` reads them.
struct Knobs {
    n: usize,
    repeats: usize,
    concurrency: usize,
    ingest_concurrency: usize,
    claim_big: usize,
    claim_iterations: usize,
}

/// The worker processes of each run with workers: `PW_BENCH_WORKERS`, default `1,2,4`.
fn worker_counts() -> Vec<usize> {
    std::env::var("PW_BENCH_WORKERS")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .map(|w| {
            w.trim()
                .parse()
                .expect("PW_BENCH_WORKERS is a list of numbers, e.g. 1,2,4")
        })
        .collect()
}

/// `PW_BENCH_ONLY=scale`: in each round the baseline, the engine on SQLite (one process,
/// `--role all`), on PostgreSQL (one process, `--role all`) and with 1, 2 and 4 worker processes
/// (`PW_BENCH_WORKERS`); then the claim cost on PostgreSQL with 1,000 and `PW_BENCH_CLAIM_BIG`
/// due; one table of medians.
async fn scale(receiver: SocketAddr, count: &AtomicUsize, knobs: &Knobs) {
    let Some(url) = bench_postgres() else {
        panic!("PW_BENCH_ONLY=scale needs PW_BENCH_POSTGRES, a PostgreSQL URL the bench may make schemas in");
    };
    let worker_counts = worker_counts();
    let Knobs {
        n,
        repeats,
        concurrency,
        ingest_concurrency,
        ..
    } = *knobs;
    let mut base: Vec<(f64, f64)> = Vec::new();
    let mut sqlite: Vec<Run> = Vec::new();
    let mut all: Vec<Run> = Vec::new();
    let mut workers: Vec<Vec<Run>> = worker_counts.iter().map(|_| Vec::new()).collect();
    let show = |round: usize, what: &str, run: &Run| {
        println!(
            "  round {round}: {what:<26} {:>7.0} postbacks/s end to end, ingest {:>7.0} events/s; \
             {:.0} us of CPU a postback outside the database{}, {:.0} us in it",
            run.end_to_end,
            run.ingest,
            run.outside_us(),
            run.bench_cores.map_or(String::new(), |bench| format!(
                " ({:.0} the workers, {:.0} receiver and accepts)",
                run.cores * 1e6 / run.end_to_end,
                bench * 1e6 / run.end_to_end
            )),
            run.database_us()
        );
    };
    for round in 1..=repeats {
        let (rate, cores) = baseline(receiver, count, n, concurrency).await;
        println!(
            "  round {round}: baseline                   {rate:>7.0} requests/s, {:.0} us of CPU a request",
            cores * 1e6 / rate
        );
        base.push((rate, cores));
        let run = postwire_run(receiver, count, n, concurrency, Setup::default(), ingest_concurrency).await;
        show(round, "SQLite, --role all", &run);
        sqlite.push(run);
        let setup = Setup {
            postgres: Some(url.clone()),
            ..Setup::default()
        };
        let run = postwire_run(receiver, count, n, concurrency, setup, ingest_concurrency).await;
        show(round, "PostgreSQL, --role all", &run);
        all.push(run);
        for (runs, &w) in workers.iter_mut().zip(&worker_counts) {
            let run = workers_run(receiver, count, n, w, concurrency, &url).await;
            show(
                round,
                &format!("PostgreSQL, {w} worker{}", if w == 1 { "" } else { "s" }),
                &run,
            );
            runs.push(run);
        }
    }
    println!("  claim cost on PostgreSQL: filling schemas ...");
    let small = claim_cost(1000, knobs.claim_iterations, Some(&url)).await;
    let big = claim_cost(knobs.claim_big, knobs.claim_iterations, Some(&url)).await;
    println!(
        "  claim cost: filled in {:.1}s and {:.1}s; plan of a partner's due rows: {}",
        small.fill_secs, big.fill_secs, big.plan
    );

    let base_rate = median(&mut base.iter().map(|(rate, _)| *rate).collect::<Vec<_>>());
    let base_us = median(&mut base.iter().map(|(rate, cores)| cores * 1e6 / rate).collect::<Vec<_>>());
    println!();
    println!(
        "scale-out summary (medians of {repeats} rounds; N={n}, concurrency {concurrency} a process; \
         PostgreSQL on the same machine)"
    );
    println!("{:-<118}", "");
    println!(
        "{:<34} {:>12} {:>9} {:>16} {:>16}  per round (of the baseline)",
        "", "postbacks/s", "baseline", "CPU outside DB", "PostgreSQL CPU"
    );
    println!("{:-<118}", "");
    println!(
        "{:<34} {:>12.0} {:>8.0}% {:>13.0} us {:>16}",
        "baseline: reqwest loop (a request)", base_rate, 100.0, base_us, "-"
    );
    let mut one_worker = None;
    let line = |what: String, runs: &[Run]| {
        let rate = median(&mut runs.iter().map(|r| r.end_to_end).collect::<Vec<_>>());
        let ratios: Vec<String> = runs
            .iter()
            .zip(&base)
            .map(|(run, (rate, _))| format!("{:.0}%", 100.0 * run.end_to_end / rate))
            .collect();
        let mut ratio = runs
            .iter()
            .zip(&base)
            .map(|(run, (rate, _))| 100.0 * run.end_to_end / rate)
            .collect::<Vec<_>>();
        let database = median(&mut runs.iter().map(Run::database_us).collect::<Vec<_>>());
        println!(
            "{what:<34} {rate:>12.0} {:>8.0}% {:>13.0} us {:>16}  {}",
            median(&mut ratio),
            median(&mut runs.iter().map(Run::outside_us).collect::<Vec<_>>()),
            if runs.iter().any(|r| r.database_cores.is_some()) {
                format!("{database:.0} us")
            } else {
                "-".into()
            },
            ratios.join(", ")
        );
        rate
    };
    line("SQLite, one process (--role all)".into(), &sqlite);
    line("PostgreSQL, one process (all)".into(), &all);
    for (runs, &w) in workers.iter().zip(&worker_counts) {
        let rate = line(
            format!("PostgreSQL, {w} worker process{}", if w == 1 { "" } else { "es" }),
            runs,
        );
        if w == 1 {
            one_worker = Some(rate);
        }
    }
    let ratio = big.both_us / small.both_us;
    println!(
        "{:<34} {:>9.0} us {:>9}   claim {:.0} us + give back {:.0} us",
        "claim(100) + give back, 1,000 due", small.both_us, "1.00", small.claim_us, small.give_back_us
    );
    println!(
        "{:<34} {:>9.0} us {:>9.2}   claim {:.0} us + give back {:.0} us; flat (<= 2x): {}",
        format!("the same, {} due", knobs.claim_big),
        big.both_us,
        ratio,
        big.claim_us,
        big.give_back_us,
        if ratio <= 2.0 { "met" } else { "MISSED" }
    );
    println!("{:-<118}", "");
    if let Some(rate) = one_worker {
        println!(
            "one worker process over PostgreSQL: {rate:.0} postbacks/s; target >= 10000: {}",
            if rate >= 10_000.0 { "met" } else { "MISSED" }
        );
    }
    println!(
        "CPU outside DB: the engine's processes, the receiver and the ingest (in --role all runs, this \
         process; with workers, the workers and this process); PostgreSQL CPU: the server's processes"
    );
}

// ---------------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; a name filter is not supported: everything runs.
    // The runtime `postwire serve` runs on, with its threads below the store's writer.
    let niceness = std::env::var("PW_BENCH_NICENESS").map_or(postwire::serve::DEFAULT_RUNTIME_NICENESS, |n| {
        n.parse().expect("PW_BENCH_NICENESS is a number")
    });
    let runtime = postwire::serve::runtime(niceness).expect("the runtime starts");
    runtime.block_on(bench(niceness));
}

async fn bench(niceness: i32) {
    let n = knob("PW_BENCH_N", 50_000);
    let repeats = knob("PW_BENCH_REPEATS", 3).max(1);
    let concurrency = knob("PW_BENCH_CONCURRENCY", 256).max(1);
    let ingest_concurrency = knob("PW_BENCH_INGEST_CONCURRENCY", 1).max(1);
    let claim_big = knob("PW_BENCH_CLAIM_BIG", 1_000_000).max(1000);
    let claim_iterations = knob("PW_BENCH_CLAIM_ITERS", 300).max(1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "pipeline bench: N={n} postbacks a run, concurrency {concurrency} (baseline and worker), {repeats} runs each, \
         {threads} CPUs, tokio multi-thread runtime (its threads {niceness} nice steps below the store's writer)"
    );
    let (count, receiver) = start_receiver().await;

    // Warm up the receiver and the loopback path.
    baseline(receiver, &count, 2_000.min(n), concurrency).await;
    // CPU time per request or postback: the rates divided by the cores busy meanwhile, so a
    // figure that depends less on what else the machine runs.
    let per = |rate: f64, cores: f64| cores * 1e6 / rate;

    // For profiling one part alone: PW_BENCH_ONLY=baseline, process, power, plugin, prune, claim
    // or path (the store path alone, durability process, once); `plugin+process` runs the plugin
    // comparison alone, `process+prune` the comparison with retention pruning during the run.
    let only = std::env::var("PW_BENCH_ONLY").ok();
    if only.as_deref() == Some("scale") {
        let knobs = Knobs {
            n,
            repeats,
            concurrency,
            ingest_concurrency,
            claim_big,
            claim_iterations,
        };
        return scale(receiver, &count, &knobs).await;
    }
    let wanted = |part: &str| {
        only.as_deref()
            .is_none_or(|o| o == part || o.split('+').any(|p| p == part))
    };
    let mut base = Vec::new();
    let mut process = Vec::new();
    let mut power = Vec::new();
    let mut plugin = Vec::new();
    let mut pruning = Vec::new();
    // The run with the plugin goes second in odd rounds and first in even ones, so that neither
    // run of the comparison always inherits what the other left behind (the page cache's
    // writeback of its database, the allocator's freed memory).
    let plugin_run = async |round: usize| -> Run {
        let wasm = postwire_test_plugins::bytes("trivial");
        let setup = Setup {
            transform: Some(wasm),
            postgres: bench_postgres(),
            ..Setup::default()
        };
        let run = postwire_run(receiver, &count, n, concurrency, setup, ingest_concurrency).await;
        println!(
            "  round {round}: postwire process + trivial transform plugin {:>9.0} postbacks/s end to end; \
             {:.2} cores busy, {:.0} us of CPU a postback",
            run.end_to_end,
            run.cores,
            per(run.end_to_end, run.cores)
        );
        run
    };
    for round in 1..=repeats {
        if wanted("baseline") {
            let (rate, cores) = baseline(receiver, &count, n, concurrency).await;
            println!(
                "  round {round}: baseline           {rate:>9.0} requests/s, {cores:.2} cores busy, {:.0} us of CPU a request",
                per(rate, cores)
            );
            base.push(rate);
        }
        if wanted("plugin") && round % 2 == 0 {
            plugin.push(plugin_run(round).await);
        }
        for (durability, runs) in [(Durability::Process, &mut process), (Durability::Power, &mut power)]
            .into_iter()
            .filter(|(d, _)| wanted(&format!("{d:?}").to_lowercase()))
        {
            let setup = Setup {
                durability,
                postgres: bench_postgres(),
                ..Setup::default()
            };
            let run = postwire_run(receiver, &count, n, concurrency, setup, ingest_concurrency).await;
            println!(
                "  round {round}: postwire {:<8}  {:>9.0} postbacks/s end to end, ingest {:>9.0} events/s, \
                 after ingest {:>9.0} postbacks/s; {:.2} cores busy, {:.0} us of CPU a postback",
                format!("{durability:?}").to_lowercase(),
                run.end_to_end,
                run.ingest,
                run.after_ingest,
                run.cores,
                per(run.end_to_end, run.cores)
            );
            if let Some(database) = run.database_cores {
                println!(
                    "           the PostgreSQL server meanwhile: {database:.2} cores busy, {:.0} us of CPU a postback",
                    per(run.end_to_end, database)
                );
            }
            runs.push(run);
        }
        if wanted("prune") {
            let setup = Setup {
                prune: true,
                postgres: bench_postgres(),
                ..Setup::default()
            };
            let run = postwire_run(receiver, &count, n, concurrency, setup, ingest_concurrency).await;
            println!(
                "  round {round}: postwire process, pruning every {PRUNE_INTERVAL} with a {PRUNE_WINDOW} window \
                 {:>9.0} postbacks/s end to end, ingest {:>9.0} events/s",
                run.end_to_end, run.ingest
            );
            pruning.push(run);
        }
        if wanted("plugin") && round % 2 == 1 {
            plugin.push(plugin_run(round).await);
        }
        // Only when asked for by name: it needs PostgreSQL.
        if only.is_some() && wanted("workers") {
            let url = bench_postgres().expect("PW_BENCH_ONLY=workers needs PW_BENCH_POSTGRES");
            for w in worker_counts() {
                let run = workers_run(receiver, &count, n, w, concurrency, &url).await;
                println!(
                    "  round {round}: postgres, {w} worker process(es) {:>9.0} postbacks/s end to end, ingest {:>9.0} \
                     events/s; workers {:.0} us, receiver and accepts {:.0} us, PostgreSQL {:.0} us of CPU a postback",
                    run.end_to_end,
                    run.ingest,
                    run.cores * 1e6 / run.end_to_end,
                    run.bench_cores.unwrap_or(0.0) * 1e6 / run.end_to_end,
                    run.database_us()
                );
            }
        }
    }
    if only.as_deref() == Some("process+prune") {
        let with = median(&mut pruning.iter().map(|r| r.end_to_end).collect::<Vec<_>>());
        let without = median(&mut process.iter().map(|r| r.end_to_end).collect::<Vec<_>>());
        let ingest_with = median(&mut pruning.iter().map(|r| r.ingest).collect::<Vec<_>>());
        let ingest_without = median(&mut process.iter().map(|r| r.ingest).collect::<Vec<_>>());
        println!(
            "summary: medians of {repeats} runs: without pruning {without:.0} p/s (ingest {ingest_without:.0} e/s), \
             pruning every {PRUNE_INTERVAL} with a {PRUNE_WINDOW} window {with:.0} p/s (ingest {ingest_with:.0} e/s): \
             {:.0}% end to end, {:.0}% ingest",
            100.0 * with / without,
            100.0 * ingest_with / ingest_without
        );
        return;
    }
    if only.as_deref() == Some("plugin+process") {
        let with = median(&mut plugin.iter().map(|r| r.end_to_end).collect::<Vec<_>>());
        let without = median(&mut process.iter().map(|r| r.end_to_end).collect::<Vec<_>>());
        let rounds: Vec<String> = plugin
            .iter()
            .zip(&process)
            .map(|(with, without)| format!("{:.0}%", 100.0 * with.end_to_end / without.end_to_end))
            .collect();
        println!(
            "summary: medians of {repeats} runs: without a plugin {without:.0} p/s, with a trivial transform plugin {with:.0} p/s: {:.0}% (target >= 80%); per round: {}",
            100.0 * with / without,
            rounds.join(", ")
        );
        return;
    }

    if only.as_deref() == Some("path") {
        let path = store_path(n, Durability::Process).await;
        println!(
            "  store path, durability process  accept {:.1} us/event, claim {:.1} us/delivery, record {:.1} us/outcome",
            path.accept_us, path.claim_us, path.record_us
        );
        return;
    }
    if !wanted("claim") {
        return;
    }
    println!("  claim cost: filling stores ...");
    let small = claim_cost(1000, claim_iterations, bench_postgres().as_deref()).await;
    let big = claim_cost(claim_big, claim_iterations, bench_postgres().as_deref()).await;
    println!(
        "  claim cost: stores filled in {:.1}s and {:.1}s; plan of the due query: {}",
        small.fill_secs, big.fill_secs, big.plan
    );
    let mut paths = Vec::new();
    for durability in [Durability::Process, Durability::Power] {
        let mut accept = Vec::new();
        let mut claim = Vec::new();
        let mut record = Vec::new();
        for _ in 0..repeats {
            let path = store_path(n, durability).await;
            accept.push(path.accept_us);
            claim.push(path.claim_us);
            record.push(path.record_us);
        }
        let path = StorePath {
            accept_us: median(&mut accept),
            claim_us: median(&mut claim),
            record_us: median(&mut record),
        };
        println!(
            "  store path, durability {:<8} accept {:.1} us/event, claim {:.1} us/delivery, record {:.1} us/outcome",
            format!("{durability:?}").to_lowercase(),
            path.accept_us,
            path.claim_us,
            path.record_us
        );
        paths.push(path);
    }
    if only.is_some() {
        println!(
            "  claim cost: {:.0} us with 1000 due, {:.0} us with {claim_big} due",
            small.both_us, big.both_us
        );
        return;
    }

    let base_rate = median(&mut base.clone());
    let e2e = |runs: &[Run]| median(&mut runs.iter().map(|r| r.end_to_end).collect::<Vec<_>>());
    let ingest = |runs: &[Run]| median(&mut runs.iter().map(|r| r.ingest).collect::<Vec<_>>());
    let (process_e2e, power_e2e) = (e2e(&process), e2e(&power));
    let plugin_e2e = e2e(&plugin);
    let (process_ingest, power_ingest) = (ingest(&process), ingest(&power));
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };

    println!();
    println!("summary (medians of {repeats} runs; N={n}, concurrency {concurrency})");
    println!("{:-<100}", "");
    println!("{:<46} {:>16} {:>10}  target", "measure", "median", "ratio");
    println!("{:-<100}", "");
    println!(
        "{:<46} {:>12.0} r/s {:>10}",
        "baseline: reqwest loop, same requests", base_rate, "1.00"
    );
    println!(
        "{:<46} {:>12.0} p/s {:>9.0}%  >= 10000 p/s: {}; >= 50% of baseline: {}",
        "postwire end to end, durability process",
        process_e2e,
        100.0 * process_e2e / base_rate,
        verdict(process_e2e >= 10_000.0),
        verdict(process_e2e >= 0.5 * base_rate)
    );
    println!(
        "{:<46} {:>12.0} e/s",
        "postwire ingest, delivery beside it, process", process_ingest
    );
    let after = median(&mut process.iter().map(|r| r.after_ingest).collect::<Vec<_>>());
    println!(
        "{:<46} {:>12.0} p/s {:>9.0}%  (delivery once every event is in)",
        "postwire after ingest, durability process",
        after,
        100.0 * after / base_rate
    );
    // Each round runs the baseline and then the engine, so a round's ratio is the least
    // disturbed by the machine's load changing between rounds.
    let mut ratios: Vec<f64> = base
        .iter()
        .zip(&process)
        .map(|(b, p)| 100.0 * p.end_to_end / b)
        .collect();
    println!(
        "{:<46} {:>16} {:>9.0}%  per round: {}",
        "end to end / baseline, median of rounds",
        "",
        median(&mut ratios.clone()),
        ratios
            .iter_mut()
            .map(|r| format!("{r:.0}%"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<46} {:>12.0} p/s {:>9.0}%  >= 10000 p/s: {}; >= 50% of baseline: {}",
        "postwire end to end, durability power",
        power_e2e,
        100.0 * power_e2e / base_rate,
        verdict(power_e2e >= 10_000.0),
        verdict(power_e2e >= 0.5 * base_rate)
    );
    println!(
        "{:<46} {:>12.0} e/s",
        "postwire ingest, delivery beside it, power", power_ingest
    );
    println!(
        "{:<46} {:>12.0} p/s {:>9.0}%  of the run without a plugin; >= 80%: {}",
        "postwire + trivial transform plugin (process)",
        plugin_e2e,
        100.0 * plugin_e2e / process_e2e,
        verdict(plugin_e2e >= 0.8 * process_e2e)
    );
    let pruning_e2e = e2e(&pruning);
    println!(
        "{:<46} {:>12.0} p/s {:>9.0}%  of the run without pruning",
        format!("postwire pruning ({PRUNE_WINDOW} window, every {PRUNE_INTERVAL})"),
        pruning_e2e,
        100.0 * pruning_e2e / process_e2e
    );
    println!(
        "{:<46} {:>15.0}% {:>10}  (end to end), ingest {:+.0}%",
        "cost of durability power vs process",
        100.0 * (power_e2e / process_e2e - 1.0),
        "",
        100.0 * (power_ingest / process_ingest - 1.0)
    );
    println!(
        "{:<46} {:>13.0} us {:>10}  claim {:.0} us + give back {:.0} us",
        "claim(100) + give back, 1,000 due", small.both_us, "1.00", small.claim_us, small.give_back_us
    );
    let ratio = big.both_us / small.both_us;
    println!(
        "{:<46} {:>13.0} us {:>10.2}  flat (<= 2x): {}; claim {:.0} us + give back {:.0} us",
        format!("claim(100) + give back, {claim_big} due"),
        big.both_us,
        ratio,
        verdict(ratio <= 2.0),
        big.claim_us,
        big.give_back_us
    );
    // A delivery accepted with room in the worker's queue is leased at accept and needs no
    // claim; one that waited in the store (a backlog, a retry) is claimed as well.
    for (name, path) in ["process", "power"].iter().zip(&paths) {
        let handed = path.accept_us + path.record_us;
        println!(
            "{:<46} {:>13.1} us {:>10}  accept {:.1} + record {:.1}, handed over in memory ({:.0} p/s); \
             + claim {:.1} from the store ({:.0} p/s)",
            format!("store work per postback, durability {name}"),
            handed,
            "",
            path.accept_us,
            path.record_us,
            1e6 / handed,
            path.claim_us,
            1e6 / (handed + path.claim_us)
        );
    }
    println!("{:-<100}", "");
}
