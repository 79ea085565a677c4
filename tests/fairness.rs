//! Fair sharing between partners, end to end through the API: a partner whose receiver accepts
//! connections and never answers holds no more than its own cap of postbacks in flight, and
//! another partner's postbacks go out meanwhile as if it were not there.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Engine, Partner, Receiver, Reply, created, eventually, simple_settings};
use postwire::serve::ServeOptions;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A receiver on 127.0.0.1 that accepts every connection, reads the request and never
/// answers. It counts the requests open at once (head received, connection not closed yet).
struct Staller {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    listener: JoinHandle<()>,
}

impl Staller {
    async fn start() -> Staller {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        let open = Arc::new(AtomicUsize::new(0));
        let most_open = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accepting = {
            let (open, most_open, requests, connections) =
                (open.clone(), most_open.clone(), requests.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let (open, most_open, requests) = (open.clone(), most_open.clone(), requests.clone());
                    let connection = tokio::spawn(async move {
                        let mut seen = Vec::new();
                        let mut buf = [0u8; 4096];
                        let mut counted = false;
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                            if !counted && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                counted = true;
                                requests.fetch_add(1, Ordering::SeqCst);
                                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                                most_open.fetch_max(now, Ordering::SeqCst);
                            }
                        }
                        if counted {
                            open.fetch_sub(1, Ordering::SeqCst);
                        }
                    });
                    connections.lock().expect("not poisoned").push(connection);
                }
            })
        };
        Staller {
            addr,
            open,
            most_open,
            requests,
            connections,
            listener: accepting,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/stall", self.addr)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests are open at once, `what` naming whose.
    async fn wait_open(&self, what: &str, n: usize) {
        eventually(what, async || (self.open() >= n).then_some(())).await;
    }

    /// Stops listening and closes every connection, so that the engine's requests end at once.
    fn close(&self) {
        self.listener.abort();
        for connection in self.connections.lock().expect("not poisoned").drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Staller {
    fn drop(&mut self) {
        self.close();
    }
}

/// A partner named `name` whose postbacks, of the events' type, inquiry and order, go to `url`.
async fn partner(engine: &Engine, name: &str, url: &str) -> Partner {
    engine.partner_with(name, &simple_settings(url)).await
}

/// An engine with `places` postbacks in flight at most, all of which one partner may hold, as
/// changed further by `configure`.
async fn engine_with_places(places: usize, configure: impl FnOnce(&mut ServeOptions)) -> Engine {
    Engine::start_with(|options| {
        options.concurrency = Some(places);
        options.partner_concurrency = Some(places);
        configure(options);
    })
    .await
}

/// The requests `receiver` got at `path`.
fn hits_at(receiver: &Receiver, path: &str) -> usize {
    receiver.hits().iter().filter(|hit| hit.path == path).count()
}

/// A partner's cap of postbacks in flight by default: a quarter of the default 256 places.
const DEFAULT_CAP: usize = 256 / 4;

/// Partner A, whose receiver accepts connections and never answers, and partner B, whose
/// receiver answers 200 at once, on an engine with the default places and the default 15 s per
/// exchange, so that A's postbacks hold their places for the whole test.
struct StalledAndHealthy {
    engine: Engine,
    stalled: Staller,
    healthy: Receiver,
    a: Partner,
    b: Partner,
}

impl StalledAndHealthy {
    async fn start() -> StalledAndHealthy {
        let stalled = Staller::start().await;
        let healthy = Receiver::always(Reply::ok("")).await;
        let engine = Engine::start_with(|options| {
            // The defaults: 256 in flight, a quarter of them per partner, 15 s per exchange.
            options.timeout = None;
            options.connect_timeout = None;
        })
        .await;
        let a = partner(&engine, "stalled", &stalled.url()).await;
        let b = partner(&engine, "healthy", &healthy.url("/pb")).await;
        StalledAndHealthy {
            engine,
            stalled,
            healthy,
            a,
            b,
        }
    }

    /// Posts A's `n` postbacks and waits until A holds its cap, then posts B's 50 and waits until
    /// they all arrived. Returns the time from A's first post to B's, and the time B's took to
    /// arrive.
    async fn post_a_then_b(&self, n: usize) -> (Duration, Duration) {
        let burst = Instant::now();
        post_events(&self.engine, &self.a, "a", n).await;
        self.stalled.wait_open("partner A at its cap", DEFAULT_CAP).await;
        let posted = Instant::now();
        post_events(&self.engine, &self.b, "b", 50).await;
        self.healthy.wait_hits(50).await;
        (posted - burst, posted.elapsed())
    }
}

/// Posts `n` created events for `partner` in batches of 1,000; each must make one delivery.
async fn post_events(engine: &Engine, partner: &Partner, prefix: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| created(partner, &format!("evt_{prefix}{i}"), &format!("inq-{prefix}{i}")))
        .collect();
    for chunk in events.chunks(1_000) {
        let answer = engine.post_batch(chunk).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    }
}

/// The case: partner A has 2,000 postbacks due to a receiver that accepts connections
/// and never answers, with the default 15 s timeout, so that A's postbacks hold their places
/// for the whole test. Partner B's 50 postbacks (healthy receiver) all arrive within 5 s of
/// being posted, and A never has more than its cap (a quarter of the default 256) in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_partner_costs_the_others_nothing() {
    let run = StalledAndHealthy::start().await;
    let (_, took) = run.post_a_then_b(2_000).await;
    println!(
        "B's 50 arrived in {:.2} s, with A's 2,000 stalled ({} of A's requests open, at most {})",
        took.as_secs_f64(),
        run.stalled.open(),
        run.stalled.most_open()
    );
    assert!(took < Duration::from_secs(5), "B's 50 took {took:?}");
    assert_eq!(run.stalled.most_open(), DEFAULT_CAP, "A's requests open at once");
    run.stalled.close();
    run.engine.stop().await;
}

/// A stalled partner's burst larger than the memory queue's room (at least 4,096) does not fill
/// it: A posts 6,000 postbacks in one burst to a receiver that never answers, and B's 50, posted
/// right after, still all arrive within 5 s. A's line holds three quarters of the queue, the rest of
/// its burst waits in the store, and the claimer claims B's (posted while the store has due
/// deliveries of A's before them) while skipping A's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_partner_s_huge_burst_costs_the_others_nothing() {
    let run = StalledAndHealthy::start().await;
    let (a_posted, took) = run.post_a_then_b(6_000).await;
    println!(
        "B's 50 arrived in {:.2} s, after A's 6,000 stalled, posted in {:.2} s ({} of A's requests open)",
        took.as_secs_f64(),
        a_posted.as_secs_f64(),
        run.stalled.open(),
    );
    assert!(took < Duration::from_secs(5), "B's 50 took {took:?}");
    assert_eq!(run.stalled.most_open(), DEFAULT_CAP, "A's requests open at once");
    run.stalled.close();
    run.engine.stop().await;
}

/// Each partner's postbacks in flight stay at its cap (`--partner-concurrency`), counted at its
/// receiver as requests open at once, with many more due and free places in `--concurrency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_never_has_more_in_flight_than_its_cap() {
    const CAP: usize = 3;
    let (one, two) = (Staller::start().await, Staller::start().await);
    let engine = Engine::start_with(|options| {
        options.partner_concurrency = Some(CAP);
        // Longer than the test, so that no request ends and makes room for another.
        options.timeout = Some("60s".into());
    })
    .await;
    let a = partner(&engine, "one", &one.url()).await;
    let b = partner(&engine, "two", &two.url()).await;
    post_events(&engine, &a, "a", 40).await;
    post_events(&engine, &b, "b", 40).await;
    for staller in [&one, &two] {
        staller.wait_open("a partner at its cap", CAP).await;
    }
    // Time for any postback beyond the cap to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for staller in [&one, &two] {
        assert_eq!(staller.most_open(), CAP);
        assert_eq!(
            staller.requests.load(Ordering::SeqCst),
            CAP,
            "no request beyond the cap"
        );
    }
    one.close();
    two.close();
    engine.stop().await;
}

/// A partner whose plugin is slow holds its own places, not the shared ones: with no more
/// places in all than that partner may hold, another partner's postbacks still go out while
/// the slow partner's wait for their plugin lane (two calls at once, each running until its
/// 100 ms deadline), instead of taking turns with them for the places those hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_holds_no_shared_place() {
    let engine = engine_with_places(4, |options| {
        // Every call of the spinning plugin runs until its deadline.
        options.plugin_fuel = Some(1_000_000_000_000);
    })
    .await;
    let receiver = Receiver::always(Reply::ok("")).await;
    let slow = engine.create_partner("slow").await;
    let upload = engine
        .raw(
            reqwest::Method::POST,
            &format!("/v1/partners/{}/plugins?name=spin", slow.id),
            Some(postwire_test_plugins::bytes("spin")),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{upload:?}");
    let mut settings = simple_settings(&receiver.url("/slow"));
    settings["transform_plugin"] = upload.json["id"].clone();
    assert_eq!(engine.put_settings(&slow, &settings).await.status, StatusCode::OK);
    let calm = partner(&engine, "calm", &receiver.url("/calm")).await;

    post_events(&engine, &slow, "s", 100).await;
    let failed_before = eventually("the slow plugin to be running", async || {
        let failed = engine.delivery_ids(&slow, "failed").await.len();
        (failed > 0).then_some(failed)
    })
    .await;
    post_events(&engine, &calm, "c", 20).await;
    eventually("the calm partner's 20 postbacks", async || {
        (hits_at(&receiver, "/calm") == 20).then_some(())
    })
    .await;
    // Sharing the places with the slow partner's, the calm ones would each have waited for one
    // of its plugin calls to end: 20 of them, two at a time, 100 ms each.
    let failed_meanwhile = engine.delivery_ids(&slow, "failed").await.len() - failed_before;
    println!("the calm partner's 20 went out while {failed_meanwhile} slow plugin calls ended");
    assert!(
        failed_meanwhile < 10,
        "the calm postbacks waited for {failed_meanwhile} slow plugin calls"
    );
    assert!(receiver.hits().iter().all(|hit| hit.path == "/calm"));
    engine.stop().await;
}

/// A postback waiting for its endpoint's rate limit slot holds no shared place. With two places,
/// both of which partner A (one request a second) may use, A's first postback goes out and the
/// next two wait in memory for their slots, 1 s and 2 s later. Partner B's 10 postbacks, posted
/// right after A's first arrived, all arrive before A's second: holding the places, A's waits
/// would have kept B's out until A's second went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_waiting_for_its_rate_limit_holds_no_shared_place() {
    let engine = engine_with_places(2, |_| {}).await;
    let receiver = Receiver::always(Reply::ok("")).await;
    let mut limited = simple_settings(&receiver.url("/limited"));
    limited["max_requests_per_sec"] = 1.into();
    let a = engine.partner_with("limited", &limited).await;
    let b = partner(&engine, "free", &receiver.url("/free")).await;
    let from = |path: &str| hits_at(&receiver, path);

    post_events(&engine, &a, "a", 5).await;
    eventually("A's first postback", async || (from("/limited") == 1).then_some(())).await;
    post_events(&engine, &b, "b", 10).await;
    eventually("B's 10 postbacks", async || (from("/free") == 10).then_some(())).await;
    assert_eq!(from("/limited"), 1, "B's postbacks waited for A's second");
    eventually("A's second postback", async || (from("/limited") == 2).then_some(())).await;
    engine.stop().await;
}
