//! A chaos run: thousands of postbacks against a receiver on 127.0.0.1 that fails most of the
//! ways a receiver can fail — 500s, answers that never come, connections reset mid-request,
//! 429 with `Retry-After` — chosen per request by a seeded hash, so a seed replays the same
//! faults for the same event. Every postback must end delivered, and the attempt log must hold
//! exactly one attempt per request the receiver saw, in the order it saw them.
//!
//! The run makes `PW_CHAOS_EVENTS` events per seed (default: [`DEFAULT_EVENTS`]).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Engine, Partner};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Events per seed unless `PW_CHAOS_EVENTS` says otherwise.
const DEFAULT_EVENTS: usize = 10_000;

/// Thirty attempts 20 ms apart: a postback fails them all with odds of about 2^-30.
const SCHEDULE_ATTEMPTS: usize = 30;

/// How long the engine waits for an answer; the receiver's hangs cost this much.
const SEND_TIMEOUT: &str = "1s";

/// How long the whole run of one seed may take before the test gives up on it.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    /// 500.
    Error,
    /// No answer; the connection stays open until the engine gives up on it.
    Hang,
    /// The connection is reset without an answer.
    Reset,
    /// 429 with `Retry-After: 0` or `1`.
    TooMany,
    /// 200: delivered.
    Ok,
}

impl Fault {
    /// The fault for the `attempt`-th request (from 0) of the postback about `inquiry`, under
    /// `seed`: 30 % 500, 10 % hang, 5 % reset, 5 % 429, 50 % 200.
    fn pick(seed: u64, inquiry: &str, attempt: usize) -> (Fault, u64) {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for byte in inquiry.bytes().chain((attempt as u64).to_le_bytes()) {
            h = splitmix(h ^ u64::from(byte));
        }
        let roll = h % 100;
        let fault = match roll {
            0..30 => Fault::Error,
            30..40 => Fault::Hang,
            40..45 => Fault::Reset,
            45..50 => Fault::TooMany,
            _ => Fault::Ok,
        };
        (fault, h >> 32)
    }

    /// The status the engine records for this fault, if the receiver answered.
    fn status(self) -> Option<i64> {
        match self {
            Fault::Error => Some(500),
            Fault::TooMany => Some(429),
            Fault::Ok => Some(200),
            Fault::Hang | Fault::Reset => None,
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The requests the receiver saw: per `webhook-id`, the fault it answered each with.
type Seen = Arc<Mutex<HashMap<String, Vec<Fault>>>>;

/// A receiver speaking just enough HTTP/1.1 (keep-alive, `Content-Length` bodies) to fail in
/// ways a framework would not let it: hanging and resetting mid-request.
struct ChaosReceiver {
    addr: SocketAddr,
    seen: Seen,
    task: JoinHandle<()>,
}

impl ChaosReceiver {
    async fn start(seed: u64) -> ChaosReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        let seen: Seen = Arc::default();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, seed, seen.clone()));
                }
            }
        });
        ChaosReceiver { addr, seen, task }
    }
}

impl Drop for ChaosReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the requests of one connection until it closes or a fault ends it.
async fn serve(mut stream: TcpStream, seed: u64, seen: Seen) {
    let mut buffer = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let id = header(&head, "webhook-id").unwrap_or_default().to_owned();
        let inquiry = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b["inquiry"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let (fault, extra) = {
            let mut seen = seen.lock().expect("not poisoned");
            let earlier = seen.entry(id).or_default();
            let (fault, extra) = Fault::pick(seed, &inquiry, earlier.len());
            earlier.push(fault);
            (fault, extra)
        };
        let answer = match fault {
            Fault::Error => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n".to_owned(),
            Fault::TooMany => format!(
                "HTTP/1.1 429 Too Many Requests\r\nretry-after: {}\r\ncontent-length: 0\r\n\r\n",
                extra % 2
            ),
            Fault::Ok => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned(),
            Fault::Hang => {
                // Until the engine gives up and closes its side.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Fault::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
        };
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request (head and `Content-Length` body) off `stream`; `None` once it closes.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        header(&head, "transfer-encoding").is_none(),
        "postbacks are sent with a Content-Length: {head}"
    );
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Some((head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every delivery of `partner`, through the API's pages.
async fn all_deliveries(engine: &Engine, partner: &Partner) -> Vec<Value> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let query = match &before {
            Some(cursor) => format!("?limit=500&before={cursor}"),
            None => "?limit=500".to_owned(),
        };
        let answer = engine
            .get(&format!("/v1/partners/{}/deliveries{query}", partner.id))
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        all.extend(answer.json["data"].as_array().expect("a list").iter().cloned());
        match answer.json["next"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// One attempt as the store's attempt log holds it.
#[derive(Debug, Clone)]
struct Recorded {
    /// The receiver's status, when an answer came.
    status: Option<i64>,
    /// Why it failed, when it did.
    error: Option<String>,
}

impl Recorded {
    fn timed_out(&self) -> bool {
        self.status.is_none() && self.error.as_deref().is_some_and(|e| e.starts_with("timed out"))
    }

    /// The connection failed under the exchange (the receiver reset it).
    fn reset(&self) -> bool {
        self.status.is_none()
            && self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("the exchange failed"))
    }
}

/// Per delivery id, its recorded attempts in order, read from the store's attempt log.
fn attempt_log(engine: &Engine) -> HashMap<String, Vec<Recorded>> {
    let db = rusqlite::Connection::open_with_flags(
        engine.database_dir().join("pw.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
    )
    .expect("the database opens");
    let mut query = db
        .prepare("SELECT delivery_id, response_status, error FROM attempts ORDER BY delivery_id, number")
        .expect("the query compiles");
    let mut log: HashMap<String, Vec<Recorded>> = HashMap::new();
    let rows = query
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                Recorded {
                    status: row.get(1)?,
                    error: row.get(2)?,
                },
            ))
        })
        .expect("the query runs");
    for row in rows {
        let (id, attempt) = row.expect("a row");
        log.entry(id).or_default().push(attempt);
    }
    log
}

/// How a delivery's recorded attempts account for the requests its receiver saw.
#[derive(Debug, Default, Clone, Copy)]
struct Accounting {
    /// Answers recorded with the status the receiver sent.
    answered: usize,
    /// Hangs recorded as timeouts, resets recorded as resets.
    faults: usize,
    /// Answers (or resets) the receiver sent after the engine's timeout, recorded as timeouts.
    late: usize,
    /// Timeouts before the receiver had read the request (a loaded machine).
    unread: usize,
}

/// Pairs each recorded attempt with the request it sent, in order: an attempt with a status
/// pairs with a request answered with that status, a reset with a request the receiver reset,
/// a timeout with a request it hung on, or answered or reset after the timeout, or had not
/// read yet.
/// `None` when no such pairing exists — an attempt without its request or the reverse.
fn account(seen: &[Fault], recorded: &[Recorded]) -> Option<Accounting> {
    // Sequences are at most 30 long and timeouts before a read are rare: plain recursion.
    fn go(seen: &[Fault], recorded: &[Recorded], mut tally: Accounting) -> Option<Accounting> {
        let Some((attempt, rest)) = recorded.split_first() else {
            return seen.is_empty().then_some(tally);
        };
        let request = seen.first().copied();
        if let Some(status) = attempt.status {
            if request?.status() != Some(status) {
                return None;
            }
            tally.answered += 1;
            return go(&seen[1..], rest, tally);
        }
        if attempt.reset() {
            if request? != Fault::Reset {
                return None;
            }
            tally.faults += 1;
            return go(&seen[1..], rest, tally);
        }
        if !attempt.timed_out() {
            return None;
        }
        let paired = match request {
            Some(Fault::Hang) => go(
                &seen[1..],
                rest,
                Accounting {
                    faults: tally.faults + 1,
                    ..tally
                },
            ),
            None => None,
            // A reset, or an answer, that came after the engine's timeout had fired: on a
            // loaded machine the receiver's side can lose that race for longer than the timeout.
            Some(_) => go(
                &seen[1..],
                rest,
                Accounting {
                    late: tally.late + 1,
                    ..tally
                },
            ),
        };
        paired.or_else(|| {
            go(
                seen,
                rest,
                Accounting {
                    unread: tally.unread + 1,
                    ..tally
                },
            )
        })
    }
    go(seen, recorded, Accounting::default())
}

async fn chaos(seed: u64) {
    let events: usize = std::env::var("PW_CHAOS_EVENTS")
        .ok()
        .map(|v| v.parse().expect("PW_CHAOS_EVENTS is a number"))
        .unwrap_or(DEFAULT_EVENTS);
    let receiver = ChaosReceiver::start(seed).await;
    let schedule = std::iter::once("0s")
        .chain(std::iter::repeat_n("20ms", SCHEDULE_ATTEMPTS - 1))
        .collect::<Vec<_>>()
        .join(",");
    let engine = Engine::start_with(|options| {
        options.retry_schedule = Some(schedule);
        options.timeout = Some(SEND_TIMEOUT.into());
    })
    .await;
    let partner = engine
        .partner_with(
            "Chaos",
            &common::simple_settings(&format!("http://{}/hook", receiver.addr)),
        )
        .await;

    let start = Instant::now();
    let all: Vec<Value> = (0..events)
        .map(|i| common::created(&partner, &format!("evt_chaos_{i}"), &format!("inq-{i}")))
        .collect();
    for batch in all.chunks(2000) {
        let answer = engine.post_batch(batch).await;
        assert_eq!(answer.status, 202, "{answer:?}");
    }

    // Until every delivery is done, or the run's deadline passes.
    let deliveries = loop {
        let deliveries = all_deliveries(&engine, &partner).await;
        let done = deliveries
            .iter()
            .filter(|d| d["status"] == "delivered" || d["status"] == "failed")
            .count();
        if done == events || start.elapsed() > RUN_DEADLINE {
            break deliveries;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let seconds = start.elapsed().as_secs_f64();
    let log = attempt_log(&engine);
    let seen = receiver.seen.lock().expect("not poisoned").clone();
    let mut faults: HashMap<Fault, usize> = HashMap::new();
    for fault in seen.values().flatten() {
        *faults.entry(*fault).or_default() += 1;
    }
    let requests: usize = seen.values().map(Vec::len).sum();
    let attempts: usize = log.values().map(Vec::len).sum();
    let delivered = deliveries.iter().filter(|d| d["status"] == "delivered").count();
    let lost = events - deliveries.len() + deliveries.iter().filter(|d| d["status"] == "failed").count();
    let stuck = deliveries
        .iter()
        .filter(|d| d["status"] != "delivered" && d["status"] != "failed")
        .count();
    println!(
        "chaos seed {seed}: {events} events, {attempts} attempts, {requests} requests seen; faults: \
         {} × 500, {} hangs, {} resets, {} × 429, {} × 200; delivered {delivered}, lost {lost}, \
         stuck {stuck}; {seconds:.1} s",
        faults.get(&Fault::Error).copied().unwrap_or(0),
        faults.get(&Fault::Hang).copied().unwrap_or(0),
        faults.get(&Fault::Reset).copied().unwrap_or(0),
        faults.get(&Fault::TooMany).copied().unwrap_or(0),
        faults.get(&Fault::Ok).copied().unwrap_or(0),
    );

    assert_eq!(deliveries.len(), events, "one delivery per event");
    assert_eq!((lost, stuck), (0, 0), "every postback is delivered");
    // Every request the receiver saw is one recorded attempt, in the same order, with the
    // status the receiver answered (none for hangs and resets); the only attempts it did not
    // see are timeouts before it read them, which a machine too loaded to answer within the
    // send timeout can cause.
    let mut total = Accounting::default();
    for delivery in &deliveries {
        let id = delivery["id"].as_str().expect("an id");
        let seen = seen.get(id).map(Vec::as_slice).unwrap_or_default();
        let recorded = log.get(id).map(Vec::as_slice).unwrap_or_default();
        let Some(tally) = account(seen, recorded) else {
            panic!("{id}: the attempts recorded {recorded:?} do not account for the requests seen {seen:?}");
        };
        total.answered += tally.answered;
        total.faults += tally.faults;
        total.late += tally.late;
        total.unread += tally.unread;
        assert_eq!(seen.last(), Some(&Fault::Ok), "{id} ends with its delivery");
        assert_eq!(
            recorded.last().and_then(|a| a.status),
            Some(200),
            "{id} ends with its delivery"
        );
        assert_eq!(delivery["attempts"], recorded.len(), "{id}: its attempt count");
    }
    println!(
        "chaos seed {seed}: attempts accounted for: {} answered, {} hangs and resets, {} answered \
         or reset after the timeout, {} timed out before the receiver read them",
        total.answered, total.faults, total.late, total.unread
    );
    assert_eq!(seen.len(), events, "the receiver saw only these postbacks");
    assert_eq!(attempts, requests + total.unread);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_seed_1() {
    chaos(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_seed_2() {
    chaos(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_seed_3() {
    chaos(3).await;
}
