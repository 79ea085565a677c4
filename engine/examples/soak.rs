//! A soak run: the real `postwire serve` binary under sustained load for a given time, its
//! resident memory and queue sampled every few seconds; fails when memory keeps growing.
//!
//! ```sh
//! cargo run --release -p postwire --example soak -- --minutes 10
//! ```
//!
//! It builds the `postwire` binary with the same profile (or runs the one `--bin` names), starts
//! it as a child process on a fresh SQLite database in a temporary folder, with a receiver of its
//! own on 127.0.0.1 and a fast retry schedule, and sends batches of events at a steady rate to
//! several partners: most with a receiver that answers 200, one whose receiver always answers
//! 500 (every postback retried through the schedule, then failed) and one whose receiver answers
//! 500 to one request in three (retried, then delivered). Retention runs every 10 s with a 1 min
//! window, so the database, too, reaches a steady size.
//!
//! Every `--sample-secs` it prints a row: the child's `VmRSS` and `RssAnon` (from
//! `/proc/PID/status`), the queue (`postwire_queue_depth` from `/metrics`) and the deliveries'
//! outcomes so far. When the load stops, it waits for the queue to drain, stops the child with
//! SIGTERM, and judges:
//!
//! - **memory**: the least-squares slope of `VmRSS` over the second half of the load, in MiB per
//!   minute, must not exceed `--max-slope` (default: 2). The first half is warm-up: pools,
//!   caches and the allocator's arenas fill, and retention's first passes start. A leak of a few
//!   hundred bytes per postback at the default rate passes this slope within minutes; noise
//!   does not, since a steady process's samples scatter around a flat line;
//! - **nothing lost or stuck**: once drained, every accepted event's delivery is delivered or
//!   failed, and the receiver saw at least one request per delivered postback;
//! - **a clean stop**: the child exits 0 on SIGTERM.
//!
//! Any failure exits non-zero. Linux only (it reads `/proc`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The operator token the child is started with.
const TOKEN: &str = "pw_live_SoakOperatorToken0123456789abcdefghijklmn";

/// The retry schedule: a failing postback takes five attempts and about 18 s to fail.
const SCHEDULE: &str = "0s,1s,2s,5s,10s";

#[derive(Debug, clap::Parser)]
#[command(about = "Sustained load on `postwire serve`, sampling its memory and queue")]
struct Options {
    /// Minutes of load.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Events per second, all partners together.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Events per batch request.
    #[arg(long, default_value_t = 50)]
    batch: u32,
    /// Partners whose receiver answers 200 (besides the failing and the flaky one).
    #[arg(long, default_value_t = 4)]
    healthy: u32,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5)]
    sample_secs: u64,
    /// Largest growth of resident memory accepted over the second half, in MiB per minute.
    #[arg(long, default_value_t = 2.0)]
    max_slope: f64,
    /// Seconds the queue has to drain once the load stops.
    #[arg(long, default_value_t = 90)]
    drain_secs: u64,
    /// The `postwire` binary (default: built now with cargo, with this example's profile).
    #[arg(long)]
    bin: Option<PathBuf>,
}

/// What the receiver saw, by path.
#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    fail: AtomicU64,
    flaky: AtomicU64,
}

/// One sample.
struct Sample {
    secs: f64,
    rss_kib: u64,
    anon_kib: u64,
    metrics: Metrics,
}

/// The series of `/metrics` the run reads.
#[derive(Default, Clone, Copy)]
struct Metrics {
    due_store: f64,
    due_memory: f64,
    delivered: f64,
    retry: f64,
    failed: f64,
}

fn main() {
    let options = <Options as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let code = runtime.block_on(run(options));
    std::process::exit(code);
}

async fn run(options: Options) -> i32 {
    let bin = match &options.bin {
        Some(bin) => bin.clone(),
        None => match build() {
            Ok(bin) => bin,
            Err(e) => {
                eprintln!("soak: {e}");
                return 2;
            }
        },
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let seen = Arc::new(Seen::default());
    let receiver = receiver(seen.clone()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(&bin)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--database",
            &format!("sqlite://{}", dir.path().join("soak.db").display()),
        ])
        .args(["--allow-destination", "127.0.0.1/32"])
        .args(["--retry-schedule", SCHEDULE])
        .args(["--timeout", "2s", "--retention", "1m", "--prune-interval", "10s"])
        .args(["--admin-token", TOKEN])
        .env("POSTWIRE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let code = match soak(&options, &http, &base, &receiver, &seen, &mut child).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("soak: FAILED: {e}");
            1
        }
    };
    let stopped = stop(&mut child);
    if let Err(e) = &stopped {
        eprintln!("soak: FAILED: {e}");
    }
    if code != 0 || stopped.is_err() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        eprintln!("soak: the last lines of the engine's log:");
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        return 1;
    }
    println!("soak: PASSED");
    0
}

/// Builds the `postwire` binary with cargo, in the profile this example was built with, and
/// answers its path.
fn build() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/examples/soak
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot tell the target folder from this example's path")?;
    let release = profile_dir.file_name().is_some_and(|name| name == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // With the example among the targets, features resolve as they did for it (dev-dependencies
    // included), so the libraries it was built with are reused rather than built again.
    command.args(["build", "-p", "postwire", "--bin", "postwire", "--example", "soak"]);
    if release {
        command.arg("--release");
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build postwire: {e}"))?;
    if !status.success() {
        return Err("cargo could not build postwire".into());
    }
    Ok(profile_dir.join("postwire"))
}

/// A receiver on 127.0.0.1: `/ok` answers 200, `/fail` 500, `/flaky` 500 to every third
/// request and 200 otherwise. Answers its base URL.
async fn receiver(seen: Arc<Seen>) -> String {
    use axum::http::StatusCode;
    use axum::routing::post;
    let app = axum::Router::new()
        .route(
            "/ok",
            post({
                let seen = seen.clone();
                move || async move {
                    seen.ok.fetch_add(1, Relaxed);
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/fail",
            post({
                let seen = seen.clone();
                move || async move {
                    seen.fail.fetch_add(1, Relaxed);
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }),
        )
        .route(
            "/flaky",
            post(move || async move {
                if seen.flaky.fetch_add(1, Relaxed).is_multiple_of(3) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Starts the load, samples until it ends, drains and judges.
async fn soak(
    options: &Options,
    http: &reqwest::Client,
    base: &str,
    receiver: &str,
    seen: &Seen,
    child: &mut Child,
) -> Result<(), String> {
    ready(http, base, child).await?;
    let mut partners = Vec::new();
    let paths = (0..options.healthy).map(|_| "/ok").chain(["/fail", "/flaky"]);
    for path in paths {
        let partner = call(http, reqwest::Method::POST, &format!("{base}/v1/partners"), json!({})).await?;
        let id = partner["id"].as_str().ok_or("no partner id")?.to_owned();
        let settings = json!({
            "url": format!("{receiver}{path}"),
            "method": "POST",
            "body_format": "json",
            "body_template": "{\"event\": \"{EventType}\", \"inquiry\": \"{ActionInquiryId}\", \"order\": \"{OrderId}\"}",
        });
        call(
            http,
            reqwest::Method::PUT,
            &format!("{base}/v1/partners/{id}/settings/action-inquiry"),
            settings,
        )
        .await?;
        partners.push((id, path));
    }
    let pid = child.id();
    let duration = Duration::from_secs_f64(options.minutes * 60.0);
    println!(
        "soak: {} partners ({} healthy, 1 failing, 1 flaky), {} events/s in batches of {}, for {:.1} min; engine pid {pid}",
        partners.len(),
        options.healthy,
        options.rate,
        options.batch,
        options.minutes
    );
    let accepted = Arc::new(AtomicU64::new(0));
    let to_ok = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(load(
        http.clone(),
        base.to_owned(),
        partners,
        options.rate,
        options.batch,
        duration,
        accepted.clone(),
        to_ok.clone(),
    ));
    println!(
        "{:>7} {:>9} {:>8} {:>8} {:>7} {:>7} {:>10} {:>8} {:>7}",
        "secs", "accepted", "rss_mib", "anon_mib", "due_db", "due_mem", "delivered", "retry", "failed"
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(options.sample_secs.max(1)));
    loop {
        tick.tick().await;
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the engine exited during the load: {status}"));
        }
        let sample = sample(http, base, pid, started).await?;
        print_row(&sample, accepted.load(Relaxed));
        samples.push(sample);
        if load.is_finished() {
            break;
        }
    }
    load.await.map_err(|e| e.to_string())??;
    let load_secs = duration.as_secs_f64();

    // Drain: every accepted event's delivery delivered or failed.
    let accepted = accepted.load(Relaxed) as f64;
    let deadline = Instant::now() + Duration::from_secs(options.drain_secs);
    let drained = loop {
        let now = sample(http, base, pid, started).await?;
        let m = now.metrics;
        let done = m.delivered + m.failed >= accepted && m.due_store + m.due_memory == 0.0;
        if done || Instant::now() > deadline {
            print_row(&now, accepted as u64);
            samples.push(now);
            break m;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    let judged: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.secs >= load_secs / 2.0 && s.secs <= load_secs)
        .collect();
    let slope = slope(&judged);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let first = samples.first().map_or(0, |s| s.rss_kib);
    let last = samples.last().map_or(0, |s| s.rss_kib);
    let quarter = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|s| s.secs >= load_secs * from && s.secs < load_secs * to)
            .map(|s| s.rss_kib)
            .max()
            .unwrap_or(0)
    };
    let stuck = (accepted - drained.delivered - drained.failed).max(0.0);
    println!(
        "soak: {accepted} events accepted in {:.1} min ({:.0}/s); delivered {}, failed for good {}, stuck {stuck}",
        load_secs / 60.0,
        accepted / load_secs,
        drained.delivered,
        drained.failed,
    );
    println!(
        "soak: receiver saw {} on /ok, {} on /fail, {} on /flaky",
        seen.ok.load(Relaxed),
        seen.fail.load(Relaxed),
        seen.flaky.load(Relaxed)
    );
    println!(
        "soak: VmRSS {:.1} MiB at the start, {:.1} MiB at the end; max {:.1} MiB in the second quarter, {:.1} MiB in the last",
        mib(first),
        mib(last),
        mib(quarter(0.25, 0.5)),
        mib(quarter(0.75, 1.01)),
    );
    let mut failures = Vec::new();
    match slope {
        Some(slope) => {
            println!(
                "soak: VmRSS slope over the second half: {slope:+.3} MiB/min over {} samples (at most {:.3})",
                judged.len(),
                options.max_slope
            );
            if slope > options.max_slope {
                failures.push(format!(
                    "resident memory grew {slope:.3} MiB/min over the second half, more than {:.3}",
                    options.max_slope
                ));
            }
        }
        None => failures.push(format!(
            "only {} samples in the second half: run longer or sample more often (--sample-secs)",
            judged.len()
        )),
    }
    if accepted == 0.0 {
        failures.push("no event was accepted".into());
    }
    if stuck > 0.0 {
        failures.push(format!(
            "{stuck} deliveries neither delivered nor failed {} s after the load stopped",
            options.drain_secs
        ));
    }
    if (seen.ok.load(Relaxed) as f64) < to_ok.load(Relaxed) as f64 {
        failures.push(format!(
            "the healthy receiver saw {} requests for {} events",
            seen.ok.load(Relaxed),
            to_ok.load(Relaxed)
        ));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Waits until the engine answers `/readyz`.
async fn ready(http: &reqwest::Client, base: &str, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the engine exited at start: {status}"));
        }
        if let Ok(answer) = http.get(format!("{base}/readyz")).send().await
            && answer.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the engine was not ready within 60 s".into())
}

/// Sends `body` with the operator token; an answer that is not 2xx is an error.
async fn call(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Value) -> Result<Value, String> {
    let answer = http
        .request(method, url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = answer.status();
    let text = answer.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {text}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends batches of events round the partners at `rate` events per second for `duration`.
#[allow(clippy::too_many_arguments, reason = "the load's parameters and its two counters")]
async fn load(
    http: reqwest::Client,
    base: String,
    partners: Vec<(String, &'static str)>,
    rate: u32,
    batch: u32,
    duration: Duration,
    accepted: Arc<AtomicU64>,
    to_ok: Arc<AtomicU64>,
) -> Result<(), String> {
    let template: Value =
        serde_json::from_str(include_str!("../../examples/events/created.json")).map_err(|e| e.to_string())?;
    let period = Duration::from_secs_f64(f64::from(batch) / f64::from(rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut n: u64 = 0;
    for round in 0.. {
        tick.tick().await;
        if started.elapsed() >= duration {
            return Ok(());
        }
        let (partner, path) = &partners[round % partners.len()];
        let events: Vec<Value> = (0..batch)
            .map(|_| {
                n += 1;
                let mut event = template.clone();
                event["id"] = format!("evt_soak{n}").into();
                event["partner_id"] = partner.as_str().into();
                event["data"]["ActionInquiryId"] = format!("{n}").into();
                event
            })
            .collect();
        call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/v1/events/batch"),
            json!({ "events": events }),
        )
        .await?;
        accepted.fetch_add(u64::from(batch), Relaxed);
        if *path == "/ok" {
            to_ok.fetch_add(u64::from(batch), Relaxed);
        }
    }
    Ok(())
}

/// The child's memory and the engine's metrics now.
async fn sample(http: &reqwest::Client, base: &str, pid: u32, started: Instant) -> Result<Sample, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .map_err(|e| format!("/metrics: {e}"))?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(Sample {
        secs: started.elapsed().as_secs_f64(),
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        metrics: Metrics {
            due_store: value("postwire_queue_depth{place=\"store\"} "),
            due_memory: value("postwire_queue_depth{place=\"memory\"} "),
            delivered: value("postwire_deliveries_total{outcome=\"delivered\"} "),
            retry: value("postwire_deliveries_total{outcome=\"retry\"} "),
            failed: value("postwire_deliveries_total{outcome=\"failed\"} "),
        },
    })
}

fn print_row(sample: &Sample, accepted: u64) {
    let m = sample.metrics;
    println!(
        "{:>7.0} {:>9} {:>8.1} {:>8.1} {:>7} {:>7} {:>10} {:>8} {:>7}",
        sample.secs,
        accepted,
        sample.rss_kib as f64 / 1024.0,
        sample.anon_kib as f64 / 1024.0,
        m.due_store,
        m.due_memory,
        m.delivered,
        m.retry,
        m.failed
    );
}

/// The least-squares slope of `VmRSS` against time, in MiB per minute; `None` for fewer than
/// five samples.
fn slope(samples: &[&Sample]) -> Option<f64> {
    if samples.len() < 5 {
        return None;
    }
    let n = samples.len() as f64;
    let xs: Vec<f64> = samples.iter().map(|s| s.secs / 60.0).collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Stops the child with SIGTERM and waits for it (at most 60 s); it must exit 0.
fn stop(child: &mut Child) -> Result<(), String> {
    // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the engine exited with {status} on SIGTERM")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the engine did not stop within 60 s of SIGTERM".into());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
