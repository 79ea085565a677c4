//! Crash safety of the real binary: `postwire serve` is killed with SIGKILL while events are being
//! posted, while postbacks are in flight, right after events were accepted and right after a
//! restart; each time the same database is opened again (on a new port) and the test carries on.
//! In the end every event whose POST was answered `202 Accepted` must have reached the receiver at
//! least once. Duplicates are allowed (delivery is at least once) and reported.
//!
//! Run with `cargo test -p postwire --test crash -- --nocapture` to see the report.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use common::operator_headers;
use common::process::{Process, lease, start_receiver};
use serde_json::{Value, json};

/// Events the test tries to get accepted, over all runs.
const EVENTS: usize = 600;
/// Longest wait for anything but lease expiry (a POST, a kill point).
const STEP: Duration = Duration::from_secs(30);

/// Starts `postwire serve` on `dir/pw.db` with `extra` flags; every engine of a test logs to
/// `dir/engine.log`, one after the other.
fn start(dir: &Path, extra: &[&str]) -> Process {
    let database = format!("sqlite://{}", dir.join("pw.db").display());
    Process::start(
        &dir.join("engine.log"),
        &[&["--database", database.as_str()], extra].concat(),
    )
}

/// The partner's server: answers 200 after a short pause (so that postbacks stay in flight for a
/// while) and counts every event id it was sent.
#[derive(Default)]
struct Receiver {
    seen: Mutex<HashMap<String, u32>>,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    unreadable: AtomicUsize,
}

impl Receiver {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Accepted events the receiver has not seen yet.
    fn missing(&self, accepted: &HashSet<String>) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        let mut missing: Vec<String> = accepted.iter().filter(|id| !seen.contains_key(*id)).cloned().collect();
        missing.sort();
        missing
    }
}

/// Counts a request as in flight until its handler ends or is dropped (the client went away).
struct InFlight(Arc<Receiver>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn hook(State(receiver): State<Arc<Receiver>>, body: Bytes) -> &'static str {
    let n = receiver.requests.fetch_add(1, Ordering::SeqCst);
    receiver.in_flight.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(receiver.clone());
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("event_id").and_then(Value::as_str).map(str::to_owned));
    match id {
        Some(id) => *receiver.seen.lock().unwrap().entry(id).or_default() += 1,
        None => {
            receiver.unreadable.fetch_add(1, Ordering::SeqCst);
        }
    }
    // 40 to 190 ms: well under the engine's 1 s timeout.
    tokio::time::sleep(Duration::from_millis(40 + (n as u64 * 37) % 150)).await;
    "ok"
}

fn event_id(i: usize) -> String {
    format!("evt_crash_{i:04}")
}

/// Event `i`: mostly `created` events, each of its own inquiry; every fourth resolves an earlier
/// inquiry, so the ordering of an inquiry's postbacks is exercised across crashes. In the first
/// half it resolves the inquiry of the event just before (mostly in the same batch, which the
/// store records event by event), in the second half that of an event 51 places back (in an
/// earlier batch, so batches hold distinct inquiries and the store records them together).
fn event(partner: &str, i: usize) -> Value {
    if i % 4 == 3 {
        let created = if i < EVENTS / 2 { i - 1 } else { i - 51 };
        json!({
            "id": event_id(i), "type": "action_inquiry.resolved", "partner_id": partner,
            "occurred_at": "2026-11-25T09:30:00Z",
            "data": {"ActionInquiryId": format!("inq-{created}"), "ResolutionStatus": "VALID"},
        })
    } else {
        json!({
            "id": event_id(i), "type": "action_inquiry.created", "partner_id": partner,
            "occurred_at": "2026-11-20T14:03:00Z",
            "data": {"ActionInquiryId": format!("inq-{i}"), "OrderId": format!("ORD-{i}"), "TransactionAmount": "19.90"},
        })
    }
}

/// What the test knows about its events.
#[derive(Default)]
struct Ledger {
    /// Ids of events whose POST was answered 202.
    accepted: HashSet<String>,
    /// Events whose POST got no answer (the engine died): posted again after the restart.
    unanswered: Vec<usize>,
    /// Of those posted again, how many the engine had committed before it died.
    committed_unanswered: usize,
    /// The next event not posted yet.
    next: usize,
    /// POSTs cut off by a kill.
    cut_off: usize,
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    partner: String,
}

impl Api {
    /// POSTs events `idx` (one event alone to `/v1/events` when `single`): `Ok(duplicate flags)`
    /// on 202, `Err` when the engine did not answer (or answered 5xx).
    async fn post(&self, base: &str, idx: &[usize], single: bool) -> Result<Vec<bool>, String> {
        let (url, body) = if single {
            assert_eq!(idx.len(), 1);
            (format!("{base}/v1/events"), event(&self.partner, idx[0]))
        } else {
            let events: Vec<Value> = idx.iter().map(|&i| event(&self.partner, i)).collect();
            (format!("{base}/v1/events/batch"), json!({ "events": events }))
        };
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if status.is_server_error() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        assert_eq!(
            status.as_u16(),
            202,
            "events refused: {}",
            String::from_utf8_lossy(&bytes)
        );
        let json: Value = serde_json::from_slice(&bytes).expect("the answer is JSON");
        let items = if single {
            vec![json]
        } else {
            json["accepted"]
                .as_array()
                .expect("a batch answer lists the events")
                .clone()
        };
        assert_eq!(items.len(), idx.len());
        Ok(items
            .iter()
            .zip(idx)
            .map(|(item, &i)| {
                assert_eq!(item["event_id"], event_id(i).as_str());
                item["duplicate"].as_bool().expect("duplicate is a boolean")
            })
            .collect())
    }

    /// Posts events and books the outcome; `false` when the engine did not answer.
    async fn post_and_book(&self, base: &str, idx: Vec<usize>, single: bool, ledger: &Mutex<Ledger>) -> bool {
        let result = self.post(base, &idx, single).await;
        let mut ledger = ledger.lock().unwrap();
        match result {
            Ok(_) => {
                ledger.accepted.extend(idx.iter().map(|&i| event_id(i)));
                true
            }
            Err(_) => {
                ledger.cut_off += 1;
                ledger.unanswered.extend(idx);
                false
            }
        }
    }

    /// Posts again every event whose POST got no answer; the engine is up, so each is accepted
    /// now (as a duplicate when it had been committed before the kill).
    async fn post_unanswered(&self, base: &str, ledger: &Mutex<Ledger>) {
        let again = std::mem::take(&mut ledger.lock().unwrap().unanswered);
        for chunk in again.chunks(100) {
            let flags = self
                .post(base, chunk, false)
                .await
                .expect("a running engine accepts events posted again");
            let mut ledger = ledger.lock().unwrap();
            ledger.committed_unanswered += flags.iter().filter(|d| **d).count();
            ledger.accepted.extend(chunk.iter().map(|&i| event_id(i)));
        }
    }

    /// Posts the next events up to event `until`: batches of 25, and every third round two
    /// events alone through `POST /v1/events`. Stops at the first POST the engine does not answer.
    async fn post_until(&self, base: &str, until: usize, ledger: &Mutex<Ledger>) {
        let mut round = 0;
        loop {
            round += 1;
            let single = round % 3 == 0;
            let take = if single { 2 } else { 25 };
            let idx: Vec<usize> = {
                let mut ledger = ledger.lock().unwrap();
                let end = (ledger.next + take).min(until);
                let idx = (ledger.next..end).collect();
                ledger.next = end;
                idx
            };
            if idx.is_empty() {
                return;
            }
            let answered = if single {
                let mut answered = true;
                for (k, &i) in idx.iter().enumerate() {
                    if !self.post_and_book(base, vec![i], true, ledger).await {
                        // The rest was never posted: post it after the restart too.
                        ledger.lock().unwrap().unanswered.extend(&idx[k + 1..]);
                        answered = false;
                        break;
                    }
                }
                answered
            } else {
                self.post_and_book(base, idx, false, ledger).await
            };
            if !answered {
                return;
            }
        }
    }
}

/// Where the engine is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// While two clients are posting events.
    DuringIngest,
    /// While the receiver holds postbacks of this run.
    InFlight,
    /// Right after a batch POST was answered 202.
    AfterAccept,
    /// Right after the restart: the worker is claiming the backlog.
    AfterRestart,
}

/// Waits (bounded) until `done` holds.
async fn wait_for(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_event_is_lost_when_the_engine_is_killed() {
    let started = Instant::now();
    let lease = lease();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (receiver, server): (Arc<Receiver>, _) = start_receiver("/hook", hook).await;
    let hook_url = format!("{server}/hook");
    let http = reqwest::Client::builder()
        .timeout(STEP)
        .default_headers(operator_headers())
        .build()
        .unwrap();

    let engine = start(dir.path(), &[]);
    let partner = http
        .post(format!("{}/v1/partners", engine.base))
        .header("content-type", "application/json")
        .body(r#"{"name": "crash test"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(partner.status().as_u16(), 201);
    let partner: Value = serde_json::from_slice(&partner.bytes().await.unwrap()).unwrap();
    let partner = partner["id"].as_str().unwrap().to_owned();
    let settings = json!({
        "url": hook_url,
        "method": "POST",
        "body_format": "json",
        "body_template": "{\"event_id\":\"{EventId}\"}",
    });
    let saved = http
        .put(format!("{}/v1/partners/{partner}/settings/action-inquiry", engine.base))
        .header("content-type", "application/json")
        .body(settings.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        saved.status().as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&saved.bytes().await.unwrap())
    );
    let api = Api { http, partner };
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // Each run posts events up to its mark, then the engine is killed at the run's point.
    let plan = [
        (KillPoint::DuringIngest, 200),
        (KillPoint::InFlight, 300),
        (KillPoint::AfterAccept, 360),
        (KillPoint::AfterRestart, 360),
        (KillPoint::InFlight, 460),
    ];
    let mut report = Vec::new();
    let mut engine = Some(engine);
    let mut last_kill = Instant::now();
    for (run, (point, until)) in plan.into_iter().enumerate() {
        let mut engine_now = match engine.take() {
            Some(engine) => engine,
            None => start(dir.path(), &[]),
        };
        let base = engine_now.base.clone();
        let requests_before = receiver.requests();
        let accepted_before = ledger.lock().unwrap().accepted.len();
        let mut detail = String::new();
        if !matches!(point, KillPoint::AfterRestart) {
            api.post_unanswered(&base, &ledger).await;
        }
        match point {
            KillPoint::DuringIngest => {
                let posters: Vec<_> = (0..2)
                    .map(|_| {
                        let (api, base, ledger) = (api.clone(), base.clone(), ledger.clone());
                        tokio::spawn(async move { api.post_until(&base, until, &ledger).await })
                    })
                    .collect();
                let mark = accepted_before + (until - ledger.lock().unwrap().next.min(until)) / 3;
                wait_for("a third of the events to be accepted", STEP, || {
                    ledger.lock().unwrap().accepted.len() >= mark
                })
                .await;
                engine_now.kill();
                for poster in posters {
                    tokio::time::timeout(STEP, poster)
                        .await
                        .expect("posting stops once the engine is gone")
                        .unwrap();
                }
                let ledger = ledger.lock().unwrap();
                detail = format!(
                    "{} POSTs cut off ({} events unanswered)",
                    ledger.cut_off,
                    ledger.unanswered.len()
                );
            }
            KillPoint::InFlight => {
                api.post_until(&base, until, &ledger).await;
                wait_for("postbacks of this run in flight at the receiver", STEP, || {
                    receiver.requests() > requests_before && receiver.in_flight() >= 5
                })
                .await;
                let in_flight = receiver.in_flight();
                engine_now.kill();
                detail = format!("{in_flight} postbacks held by the receiver at the kill");
            }
            KillPoint::AfterAccept => {
                api.post_until(&base, until - 25, &ledger).await;
                let last: Vec<usize> = {
                    let mut ledger = ledger.lock().unwrap();
                    let idx = (ledger.next..until).collect();
                    ledger.next = until;
                    idx
                };
                let answered = api.post_and_book(&base, last, false, &ledger).await;
                engine_now.kill();
                assert!(answered, "the engine answered the last batch before the kill");
            }
            KillPoint::AfterRestart => {
                engine_now.kill();
            }
        }
        last_kill = Instant::now();
        let line = format!(
            "kill {} ({point:?}) at {:.1}s: {} events accepted in this run, {} requests at the receiver{}{}",
            run + 1,
            started.elapsed().as_secs_f64(),
            ledger.lock().unwrap().accepted.len() - accepted_before,
            receiver.requests() - requests_before,
            if detail.is_empty() { "" } else { "; " },
            detail
        );
        eprintln!("{line}");
        report.push(line);
    }

    // The last run: post what is left and wait until every accepted event has arrived. Claims of
    // the killed engines come back when their leases end; nothing else needs waiting for.
    let mut engine = start(dir.path(), &[]);
    api.post_unanswered(&engine.base, &ledger).await;
    api.post_until(&engine.base, EVENTS, &ledger).await;
    let accepted = ledger.lock().unwrap().accepted.clone();
    assert!(
        ledger.lock().unwrap().unanswered.is_empty(),
        "the last engine answered every POST"
    );
    assert_eq!(accepted.len(), EVENTS, "every event was accepted in the end");
    let bound = (last_kill + lease + Duration::from_secs(30)).saturating_duration_since(Instant::now());
    let deadline = Instant::now() + bound.max(STEP);
    loop {
        let missing = receiver.missing(&accepted);
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} of {} accepted events never reached the receiver (lease {lease:?}), e.g. {:?}\n{}",
                missing.len(),
                accepted.len(),
                &missing[..missing.len().min(10)],
                engine.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited_for_all = started.elapsed();
    engine.kill();

    let seen = receiver.seen.lock().unwrap().clone();
    let ledger = ledger.lock().unwrap();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    let extra = seen.keys().filter(|id| !accepted.contains(*id)).count();
    let requests = receiver.requests();
    assert_eq!(
        receiver.unreadable.load(Ordering::SeqCst),
        0,
        "every postback carries its event id"
    );
    assert_eq!(
        extra, 0,
        "every event that reached the receiver had been posted and accepted"
    );
    eprintln!("--- crash test summary ---");
    for line in &report {
        eprintln!("{line}");
    }
    eprintln!(
        "lease {lease:?}; {} events accepted ({} of them committed although their POST was cut off), \
         lost 0; {requests} postbacks received for {} distinct events: {} duplicate postbacks over {duplicated} \
         events (at least once); all arrived {:.1}s after the start",
        accepted.len(),
        ledger.committed_unanswered,
        seen.len(),
        requests - seen.len(),
        waited_for_all.as_secs_f64()
    );
}

/// SIGTERM is a graceful stop: the engine stops claiming, lets the postbacks in flight finish,
/// commits their attempts and exits 0; started again, it sends each remaining postback once and
/// none of the finished ones again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_postbacks_in_flight_and_sends_nothing_twice() {
    const N: usize = 100;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (receiver, server): (Arc<Receiver>, _) = start_receiver("/hook", hook).await;
    let hook_url = format!("{server}/hook");
    let http = reqwest::Client::builder()
        .timeout(STEP)
        .default_headers(operator_headers())
        .build()
        .unwrap();
    // Few postbacks in flight at once, so that most are still waiting when the stop comes.
    let mut engine = start(dir.path(), &["--concurrency", "8"]);
    let answer = http
        .post(format!("{}/v1/partners", engine.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let partner: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let partner = partner["id"].as_str().unwrap().to_owned();
    let settings = json!({"url": hook_url, "body_template": "{\"event_id\":\"{EventId}\"}"});
    let saved = http
        .put(format!("{}/v1/partners/{partner}/settings/action-inquiry", engine.base))
        .header("content-type", "application/json")
        .body(settings.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status().as_u16(), 200);
    // Created events only, each of its own inquiry, so none waits for another.
    let events: Vec<Value> = (0..N).map(|i| event(&partner, i * 4)).collect();
    let accepted = http
        .post(format!("{}/v1/events/batch", engine.base))
        .header("content-type", "application/json")
        .body(json!({ "events": events }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);

    wait_for("postbacks in flight", STEP, || receiver.in_flight() > 0).await;
    let status = Command::new("kill")
        .args(["-TERM", &engine.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + STEP;
    let exit = loop {
        if let Some(exit) = engine.try_wait() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "postwire did not stop within {STEP:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(exit.success(), "exit status {exit:?}\n{}", engine.log_tail());
    assert_eq!(
        receiver.in_flight(),
        0,
        "every postback in flight was answered before the exit"
    );
    let before_restart = receiver.requests();
    assert!(
        before_restart > 0 && before_restart < N,
        "{before_restart} of {N} sent before the stop"
    );

    let _engine = start(dir.path(), &[]);
    let ids: HashSet<String> = (0..N).map(|i| event_id(i * 4)).collect();
    wait_for("every postback after the restart", STEP, || {
        receiver.missing(&ids).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = receiver.seen.lock().unwrap().clone();
    let twice: Vec<&String> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    assert!(twice.is_empty(), "sent twice after a graceful stop: {twice:?}");
    assert_eq!(receiver.requests(), N);
}
