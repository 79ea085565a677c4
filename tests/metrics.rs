//! Operability: `GET /metrics` in the Prometheus text format, with counters that move exactly
//! with the postbacks that flow; who may read it; JSON log lines from the real binary.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One scrape: every sample by its name and labels (`name{a="x",b="y"}`, labels sorted).
#[derive(Debug)]
struct Scrape {
    samples: HashMap<String, f64>,
}

impl Scrape {
    /// The sample `key` (`name` or `name{label="value",...}` with labels in sorted order).
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in the scrape: {:?}", self.keys()))
    }

    fn keys(&self) -> Vec<&String> {
        let mut keys: Vec<&String> = self.samples.keys().collect();
        keys.sort();
        keys
    }
}

/// Checks `text` against the Prometheus text format (version 0.0.4) line by line, strictly:
/// every family has one `# HELP` and one `# TYPE` before its samples, sample names belong to
/// the family declared last (with `_bucket`, `_sum` and `_count` for histograms, `le` on
/// buckets, the `+Inf` bucket equal to `_count`), label values are quoted and escaped, values
/// are numbers. Then parses it again with `prometheus-parse`, an independent reader, and checks
/// both readings agree.
fn parse(text: &str) -> Scrape {
    fn metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value(text: &str) -> f64 {
        match text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("{other:?} is not a sample value")),
        }
    }
    /// `name{labels} value` → (name, sorted labels, value).
    fn sample(line: &str) -> (String, Vec<(String, String)>, f64) {
        let (series, number) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let mut labels = Vec::new();
                let mut rest = inner;
                while !rest.is_empty() {
                    let (label, after) = rest
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("a label without =\" in {line:?}"));
                    assert!(
                        metric_name(label) && !label.contains(':'),
                        "label name {label:?} in {line:?}"
                    );
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, c @ ('\\' | '"'))) => value.push(c),
                                other => panic!("bad escape {other:?} in {line:?}"),
                            },
                            Some((i, '"')) => break i,
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label value in {line:?}"),
                        }
                    };
                    labels.push((label.to_owned(), value));
                    rest = &after[end + 1..];
                    rest = rest.strip_prefix(',').unwrap_or(rest);
                }
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(metric_name(name), "metric name {name:?} in {line:?}");
        let mut labels = labels;
        labels.sort();
        (name.to_owned(), labels, value(number))
    }
    fn key(name: &str, labels: &[(String, String)]) -> String {
        if labels.is_empty() {
            return name.to_owned();
        }
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", inner.join(","))
    }

    let mut samples = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut family: Option<(String, String)> = None;
    let mut families = std::collections::HashSet::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "an empty line in:\n{text}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            assert!(metric_name(name) && !help.is_empty(), "{line:?}");
            assert!(helped.insert(name.to_owned()), "a second HELP for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            assert!(families.insert(name.to_owned()), "a second TYPE for {name}");
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "an unknown comment {line:?}");
        let (name, labels, number) = sample(line);
        let (family_name, kind) = family.as_ref().unwrap_or_else(|| panic!("{line:?} before any TYPE"));
        let belongs = match kind.as_str() {
            "histogram" => {
                let suffix = name.strip_prefix(family_name.as_str());
                match suffix {
                    Some("_bucket") => {
                        assert!(labels.iter().any(|(k, _)| k == "le"), "a bucket without le: {line:?}");
                        true
                    }
                    Some("_sum" | "_count") => true,
                    _ => false,
                }
            }
            "counter" => {
                assert!(number >= 0.0, "a negative counter: {line:?}");
                &name == family_name
            }
            _ => &name == family_name,
        };
        assert!(belongs, "{name} is not of the family {family_name} ({kind})");
        assert!(
            samples.insert(key(&name, &labels), number).is_none(),
            "a second sample {line:?}"
        );
    }
    // Each histogram's +Inf bucket is its count.
    for (key, count) in &samples {
        if let Some(name) = key.split('{').next().and_then(|n| n.strip_suffix("_count")) {
            let labels = key.strip_prefix(&format!("{name}_count")).unwrap_or("");
            let inf = if labels.is_empty() {
                format!("{name}_bucket{{le=\"+Inf\"}}")
            } else {
                // Labels are sorted; `le` goes among them by name.
                let inner = &labels[1..labels.len() - 1];
                let mut parts: Vec<&str> = inner.split(',').collect();
                parts.push("le=\"+Inf\"");
                parts.sort();
                format!("{name}_bucket{{{}}}", parts.join(","))
            };
            assert_eq!(samples.get(&inf), Some(count), "{inf} against {key}");
        }
    }

    // An independent reader agrees on every sample.
    let mut buckets = HashMap::new();
    for (key, count) in &samples {
        let (name, _, _) = sample(&format!("{key} 0"));
        if let Some(family) = name.strip_suffix("_bucket") {
            let (_, labels, _) = sample(&format!("{key} 0"));
            let le = labels.iter().find(|(k, _)| k == "le").map(|(_, v)| value(v)).unwrap();
            let others: Vec<(String, String)> = labels.into_iter().filter(|(k, _)| k != "le").collect();
            buckets.insert((family.to_owned(), others, le.to_bits()), *count);
        }
    }
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("prometheus-parse reads the text");
    let mut seen = 0;
    for sample in &scrape.samples {
        let mut labels: Vec<(String, String)> = sample.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.sort();
        match &sample.value {
            // Histograms' `_sum` and `_count` are untyped samples to this reader.
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => {
                let name = &sample.metric;
                assert_eq!(samples.get(&key(name, &labels)), Some(v), "{name} {labels:?}");
                seen += 1;
            }
            prometheus_parse::Value::Histogram(counts) => {
                for bucket in counts {
                    let at = (sample.metric.clone(), labels.clone(), bucket.less_than.to_bits());
                    assert_eq!(buckets.get(&at), Some(&bucket.count), "{at:?}");
                    seen += 1;
                }
            }
            other => panic!("an unexpected sample kind {other:?}"),
        }
    }
    assert_eq!(seen, samples.len(), "both readers read every sample");
    Scrape { samples }
}

/// Scrapes the engine's `/metrics` with the operator token.
async fn scrape(engine: &Engine) -> Scrape {
    let answer = engine.raw(Method::GET, "/metrics", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(
        answer.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        answer.content_type
    );
    let Value::String(text) = &answer.json else {
        panic!("the metrics are text: {answer:?}");
    };
    parse(text)
}

/// Scrapes until `done` holds for the difference from `before`; returns that scrape.
async fn scrape_until(engine: &Engine, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    eventually(what, async || {
        let now = scrape(engine).await;
        done(&now).then_some(now)
    })
    .await
}

const DELIVERED: &str = "postwire_deliveries_total{outcome=\"delivered\"}";
const RETRIED: &str = "postwire_deliveries_total{outcome=\"retry\"}";
const FAILED: &str = "postwire_deliveries_total{outcome=\"failed\"}";
const SUCCESS: &str = "postwire_attempts_total{verdict=\"success\"}";
const RETRY: &str = "postwire_attempts_total{verdict=\"retry\"}";
const LATENCY: &str = "postwire_attempt_duration_seconds_count";
const COMMITS: &str = "postwire_store_commit_duration_seconds_count";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_move_exactly_with_the_postbacks() {
    const N: usize = 7;
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let partner = engine
        .partner_with("Counted", &simple_settings(&receiver.url("/pb")))
        .await;
    let before = scrape(&engine).await;
    for name in [DELIVERED, RETRIED, FAILED, SUCCESS, LATENCY] {
        assert_eq!(before.get(name), 0.0, "{name} on a new engine");
    }
    assert_eq!(before.get("postwire_queue_depth{place=\"store\"}"), 0.0);
    assert_eq!(before.get("postwire_queue_depth{place=\"memory\"}"), 0.0);
    assert_eq!(before.get("postwire_oldest_due_delivery_age_seconds"), 0.0);

    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            engine
                .send_event(&created(&partner, &format!("evt_m{i}"), &format!("inq-m{i}")))
                .await,
        );
    }
    for id in &ids {
        engine.wait_status(&partner, id, "delivered").await;
    }
    // The counters move after the commit the API reads, so they may lag it a moment.
    let after = scrape_until(&engine, "N delivered in the metrics", |s| s.get(DELIVERED) >= N as f64).await;
    assert_eq!(after.get(DELIVERED), N as f64);
    assert_eq!(after.get(SUCCESS), N as f64);
    assert_eq!(after.get(LATENCY), N as f64, "one latency per attempt that sent");
    assert_eq!(after.get(RETRIED), 0.0);
    assert_eq!(after.get(FAILED), 0.0);
    assert!(after.get(COMMITS) >= 1.0, "the recorder's commits are timed");
    assert_eq!(
        after.get("postwire_plugin_calls_total{function=\"transform\",result=\"ok\"}"),
        0.0,
        "no plugin ran"
    );
    assert_eq!(after.get("postwire_queue_depth{place=\"store\"}"), 0.0);

    // A receiver that always fails: every attempt of the schedule, then the delivery fails.
    let failing = Receiver::always(Reply::status(500)).await;
    let unlucky = engine
        .partner_with("Unlucky", &simple_settings(&failing.url("/pb")))
        .await;
    let id = engine.send_event(&created(&unlucky, "evt_f", "inq-f")).await;
    let failed = engine.wait_status(&unlucky, &id, "failed").await;
    let last = scrape_until(&engine, "the failure in the metrics", |s| s.get(FAILED) >= 1.0).await;
    assert_eq!(last.get(FAILED), 1.0);
    assert_eq!(last.get(RETRIED), (ATTEMPTS - 1) as f64);
    // Every attempt's verdict was a retry (a 500); the last one ended the schedule.
    assert_eq!(verdicts(&failed), vec!["retry"; ATTEMPTS]);
    assert_eq!(last.get(RETRY), ATTEMPTS as f64);
    assert_eq!(last.get("postwire_attempts_total{verdict=\"fail\"}"), 0.0);
    assert_eq!(last.get(LATENCY), (N + ATTEMPTS) as f64);
    assert_eq!(last.get(DELIVERED), N as f64, "nothing else was delivered");
    engine.stop().await;
}

/// A receiver that holds every request until the test opens it.
struct Gate {
    addr: std::net::SocketAddr,
    open: Arc<tokio::sync::Semaphore>,
    arrived: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start() -> Gate {
        let open = Arc::new(tokio::sync::Semaphore::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().fallback({
            let (open, arrived) = (open.clone(), arrived.clone());
            move || async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                open.acquire().await.expect("never closed").forget();
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Gate {
            addr,
            open,
            arrived,
            task,
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postbacks_waiting_for_a_send_slot_show_as_queue_depth() {
    const N: usize = 5;
    // One postback at a time, and the receiver holds it: the others wait in memory.
    let engine = Engine::start_with(|options| options.concurrency = Some(1)).await;
    let gate = Gate::start().await;
    let partner = engine
        .partner_with("Queued", &simple_settings(&format!("http://{}/pb", gate.addr)))
        .await;
    let events: Vec<Value> = (0..N)
        .map(|i| created(&partner, &format!("evt_q{i}"), &format!("inq-q{i}")))
        .collect();
    let answer = engine.post_batch(&events).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    eventually("the first postback at the receiver", async || {
        (gate.arrived.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let held = scrape(&engine).await;
    assert_eq!(held.get("postwire_queue_depth{place=\"memory\"}"), (N - 1) as f64);
    assert_eq!(held.get("postwire_queue_depth{place=\"store\"}"), 0.0);
    assert_eq!(held.get(DELIVERED), 0.0);

    gate.open.add_permits(N);
    let done = scrape_until(&engine, "every postback delivered", |s| s.get(DELIVERED) == N as f64).await;
    assert_eq!(done.get("postwire_queue_depth{place=\"memory\"}"), 0.0);
    assert_eq!(gate.arrived.load(Ordering::SeqCst), N);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_and_plugins_show_in_the_metrics() {
    let engine = Engine::start().await;
    let receiver = Receiver::always(Reply::ok(r#"{"status":"ok"}"#)).await;
    let partner = engine.create_partner("Limited").await;
    let ack = engine
        .raw(
            Method::POST,
            &format!("/v1/partners/{}/plugins?name=json-ack", partner.id),
            Some(postwire_test_plugins::bytes("json-ack")),
        )
        .await;
    assert_eq!(ack.status, StatusCode::CREATED, "{ack:?}");
    let mut settings = simple_settings(&receiver.url("/pb"));
    settings["classify_plugin"] = ack.json["id"].clone();
    settings["max_requests_per_sec"] = json!(2);
    let saved = engine.put_settings(&partner, &settings).await;
    assert_eq!(saved.status, StatusCode::OK, "{saved:?}");
    let ids: Vec<String> = {
        let answer = engine
            .post_batch(
                &(0..4)
                    .map(|i| created(&partner, &format!("evt_r{i}"), &format!("inq-r{i}")))
                    .collect::<Vec<_>>(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
        answer.json["accepted"]
            .as_array()
            .expect("the accepted events")
            .iter()
            .flat_map(|e| e["delivery_ids"].as_array().unwrap().clone())
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids.len(), 4);
    for id in &ids {
        engine.wait_status(&partner, id, "delivered").await;
    }
    let scrape = scrape_until(&engine, "4 delivered", |s| s.get(DELIVERED) >= 4.0).await;
    // Four postbacks at two a second: at least three of them waited for their slot, in memory
    // or back in the store.
    let waits = scrape.get("postwire_rate_limit_waits_total{where=\"memory\"}")
        + scrape.get("postwire_rate_limit_waits_total{where=\"store\"}");
    assert!(waits >= 3.0, "{waits} rate-limit waits");
    let calls = "postwire_plugin_calls_total{function=\"classify\",result=\"ok\"}";
    assert_eq!(scrape.get(calls), 4.0);
    assert_eq!(scrape.get("postwire_plugin_fuel_count{function=\"classify\"}"), 4.0);
    assert!(scrape.get("postwire_plugin_fuel_sum{function=\"classify\"}") > 0.0);
    assert_eq!(
        scrape.get("postwire_plugin_call_duration_seconds_count{function=\"classify\"}"),
        4.0
    );
    assert_eq!(scrape.get("postwire_plugin_fuel_count{function=\"transform\"}"), 0.0);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_need_the_operator_token_unless_made_public() {
    let engine = Engine::start().await;
    let none = engine.raw_as(None, Method::GET, "/metrics", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{none:?}");
    let partner = engine.create_partner("Curious").await;
    let key = engine.partner_key(&partner).await;
    let partner_key = engine.raw_as(Some(&key), Method::GET, "/metrics", None).await;
    assert_eq!(partner_key.status, StatusCode::FORBIDDEN, "{partner_key:?}");
    let ingest = engine.ingest_key(None).await;
    let ingest_key = engine.raw_as(Some(&ingest), Method::GET, "/metrics", None).await;
    assert_eq!(ingest_key.status, StatusCode::FORBIDDEN, "{ingest_key:?}");
    engine.stop().await;

    let public = Engine::start_with(|options| options.metrics_public = true).await;
    let anyone = public.raw_as(None, Method::GET, "/metrics", None).await;
    assert_eq!(anyone.status, StatusCode::OK, "{anyone:?}");
    let Value::String(text) = &anyone.json else {
        panic!("{anyone:?}")
    };
    parse(text);
    // Public metrics open nothing else.
    let other = public.raw_as(None, Method::GET, "/v1/ingest-keys", None).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    public.stop().await;
}

/// A `postwire serve` process on a temporary database, its standard error in a file, killed
/// (SIGKILL) when dropped unless it stopped.
struct Serve {
    child: std::process::Child,
    base: String,
    http: reqwest::Client,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Starts the binary with `args` after the test's own and `POSTWIRE_LOG` set to `filter`.
    fn start(args: &[&str], filter: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", dir.path().join("pw.db").display());
        let log = dir.path().join("stderr.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_postwire"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
            .args(["--allow-destination", "127.0.0.1/32", "--admin-token", TOKEN])
            .args(args)
            .env("POSTWIRE_LOG", filter)
            // Spans go to the test's collector on 127.0.0.1, never through a proxy.
            .env("NO_PROXY", "127.0.0.1")
            .env("no_proxy", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        for name in [
            "POSTWIRE_LOG_FORMAT",
            "POSTWIRE_CONFIG",
            "POSTWIRE_METRICS_PUBLIC",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            command.env_remove(name);
        }
        let mut child = command.spawn().expect("the binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        // Read to the end, so that the engine's later lines never meet a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let addr = first
            .strip_prefix("postwire listening on http://")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {first:?}: {}",
                    std::fs::read_to_string(&log).unwrap()
                )
            });
        let http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(operator_headers())
            .timeout(DEADLINE)
            .build()
            .unwrap();
        Serve {
            child,
            base: format!("http://{addr}"),
            http,
            log,
            _dir: dir,
        }
    }

    /// A partner whose postbacks go to `receiver`, and one event for it; returns the partner and
    /// the delivery's id.
    async fn post_one(&self, receiver: &Receiver, event_id: &str) -> (Partner, String) {
        let base = &self.base;
        let partner: Value = self
            .http
            .post(format!("{base}/v1/partners"))
            .json(&json!({"name": "Observed"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let partner = Partner {
            id: partner["id"].as_str().unwrap().to_owned(),
            secret: partner["secret"].as_str().unwrap().to_owned(),
        };
        let saved = self
            .http
            .put(format!("{base}{}", settings_path(&partner)))
            .json(&simple_settings(&receiver.url("/pb")))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), StatusCode::OK);
        let accepted: Value = self
            .http
            .post(format!("{base}/v1/events"))
            .json(&created(&partner, event_id, &format!("inq-{event_id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let delivery_id = accepted["delivery_ids"][0].as_str().unwrap().to_owned();
        (partner, delivery_id)
    }

    /// SIGTERM, then waits for a clean exit; returns standard error.
    async fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(started.elapsed() < DEADLINE, "postwire did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let text = std::fs::read_to_string(&self.log).unwrap();
        assert!(exit.success(), "{exit:?}: {text}");
        text
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `postwire serve --log-format json` writes one JSON object per line on standard error, with
/// the attempt's ids on the lines written in its span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_attempts_ids() {
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let serve = Serve::start(&["--log-format", "json"], "info,sqlx=warn,postwire::attempt=debug");
    let (partner, delivery_id) = serve.post_one(&receiver, "evt_log").await;
    receiver.wait_hits(1).await;
    let text = serve.stop().await;

    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}")))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&line["level"].as_str().unwrap_or("")),
            "{line}"
        );
        assert!(
            line["target"].as_str().is_some_and(|t| t.starts_with("postwire")),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "stopped"),
        "the stop is logged: {text}"
    );
    let attempt = lines
        .iter()
        .find(|l| l["span"]["name"] == "attempt")
        .unwrap_or_else(|| panic!("a line in the attempt's span: {text}"));
    assert_eq!(attempt["fields"]["message"], "attempt made", "{attempt}");
    assert_eq!(attempt["fields"]["verdict"], "success", "{attempt}");
    assert_eq!(attempt["span"]["delivery_id"], delivery_id.as_str(), "{attempt}");
    assert_eq!(attempt["span"]["partner_id"], partner.id.as_str(), "{attempt}");
    assert_eq!(attempt["span"]["event_id"], "evt_log", "{attempt}");
    assert_eq!(attempt["span"]["attempt"], 1, "{attempt}");
    assert!(!text.contains(TOKEN), "the operator token is not logged");
}

/// What an OpenTelemetry collector received: each request's path, content type and body.
type Received = Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A collector on 127.0.0.1 that takes every OTLP/HTTP request and answers 200 with an empty
/// protobuf `Export*ServiceResponse`.
async fn collector() -> (String, Received, tokio::task::JoinHandle<()>) {
    let received: Received = Arc::default();
    let app = axum::Router::new().fallback({
        let received = received.clone();
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            received
                .lock()
                .unwrap()
                .push((uri.path().to_owned(), content_type, body.to_vec()));
            ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received, task)
}

/// With `--otlp-endpoint`, each attempt's span reaches the collector, as protobuf at
/// `/v1/traces`, carrying the delivery's and the event's ids; the log filter does not hold it
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_spans_are_exported_to_an_otlp_collector() {
    let (url, received, task) = collector().await;
    let receiver = Receiver::always(Reply::ok("ok")).await;
    let serve = Serve::start(&["--otlp-endpoint", &url], "warn");
    let (partner, delivery_id) = serve.post_one(&receiver, "evt_traced").await;
    receiver.wait_hits(1).await;
    // Stopping sends the spans still in the batch.
    serve.stop().await;
    task.abort();
    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "the collector received nothing");
    for (path, content_type, _) in &received {
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
    }
    let contains = |needle: &str| {
        received
            .iter()
            .any(|(_, _, body)| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    for needle in [
        delivery_id.as_str(),
        "evt_traced",
        partner.id.as_str(),
        "attempt",
        "postwire",
    ] {
        assert!(contains(needle), "no exported span holds {needle:?}");
    }
}
