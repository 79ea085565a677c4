//! The plugin host against real components built from `plugins/guests`: well-behaved plugins
//! do their job; hostile ones are refused at upload or contained at run time, with a reason.

use std::time::Duration;

use postwire_plugins::types::{Event, Request, Response, Verdict};
use postwire_plugins::{Host, Limits, PluginError};
use postwire_test_plugins::bytes;

fn event() -> Event {
    Event {
        id: "evt_1".into(),
        event_type: "action_inquiry.resolved".into(),
        partner_id: "ptn_1".into(),
        occurred_at: "2026-11-20T14:03:00Z".into(),
        data: vec![
            ("ActionInquiryId".into(), "1000123".into()),
            ("OrderId".into(), "ORD-1".into()),
            ("TransactionAmount".into(), "149.90".into()),
            ("Currency".into(), "USD".into()),
            ("ResolutionStatus".into(), "VALID".into()),
        ],
    }
}

fn request() -> Request {
    Request {
        method: "POST".into(),
        url: "https://partner.example/pb".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: r#"{"order":"ORD-1"}"#.into(),
    }
}

fn response(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        duration_ms: 12,
    }
}

fn host() -> Host {
    Host::new(Limits::default(), None).expect("the host starts")
}

#[test]
fn a_transform_reshapes_the_body() {
    let host = host();
    let plugin = host.load(&bytes("reshape")).unwrap();
    assert!(plugin.exports().transform && !plugin.exports().classify);
    let run = host.transform(&plugin, event(), &request(), "{}");
    let out = run.result.unwrap();
    let body: serde_json::Value = serde_json::from_str(&out.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"inquiry": {"id": "1000123", "order": "ORD-1"},
                           "money": {"amount_cents": 14990, "currency": "USD"}, "status": "VALID"})
    );
    assert!(out.headers.contains(&("X-Reshaped".into(), "1".into())));
    assert!(run.fuel_used > 0 && run.fuel_used < Limits::default().fuel);
    assert!(run.peak_memory > 0);
    assert_eq!(run.logs.len(), 1, "{:?}", run.logs);
    assert_eq!(run.logs[0].level, "info");
    let prefixed = host
        .transform(&plugin, event(), &request(), r#"{"key_prefix":"x_"}"#)
        .result
        .unwrap();
    assert!(prefixed.body.contains("\"x_inquiry\""), "{}", prefixed.body);
    let refused = host.transform(
        &plugin,
        event(),
        &Request {
            body: "not json".into(),
            ..request()
        },
        "{}",
    );
    assert!(matches!(refused.result, Err(PluginError::Refused(ref m)) if m.starts_with("body is not JSON")));
}

#[test]
fn a_classifier_reads_a_json_acknowledgement() {
    let host = host();
    let plugin = host.load(&bytes("json-ack")).unwrap();
    let classify = |status, body: &str| {
        host.classify(&plugin, &request(), &response(status, body), "{}")
            .result
            .unwrap()
    };
    assert_eq!(classify(200, r#"{"status":"ok"}"#), Verdict::Success);
    assert!(matches!(
        classify(200, r#"{"status":"error","retryable":true,"retry_after":30}"#),
        Verdict::Retry {
            after_secs: Some(30),
            ..
        }
    ));
    assert!(
        matches!(classify(200, r#"{"status":"error","retryable":false,"message":"unknown order"}"#),
        Verdict::Fail(ref m) if m.contains("unknown order"))
    );
    assert!(matches!(classify(502, "<html>"), Verdict::Retry { .. }));
    let missing = host.transform(&plugin, event(), &request(), "{}");
    assert_eq!(missing.result.unwrap_err(), PluginError::MissingExport("transform"));
}

#[test]
fn a_plugin_may_export_both() {
    let host = host();
    let plugin = host.load(&bytes("both")).unwrap();
    assert!(plugin.exports().transform && plugin.exports().classify);
    assert!(host.transform(&plugin, event(), &request(), "{}").result.is_ok());
    assert_eq!(
        host.classify(&plugin, &request(), &response(204, ""), "{}")
            .result
            .unwrap(),
        Verdict::Success
    );
}

#[test]
fn hostile_plugins_are_contained_with_a_reason() {
    // Each cap but the deadline is under test here (the deadline has a test of its own): a
    // deadline far past what any of them needs keeps a loaded machine from stopping a plugin
    // by the clock before its cap does.
    let host = Host::new(
        Limits {
            deadline: Duration::from_secs(10),
            ..Limits::default()
        },
        None,
    )
    .expect("the host starts");
    let run = |name: &str| {
        let plugin = host.load(&bytes(name)).unwrap();
        let run = host.transform(&plugin, event(), &request(), "{}");
        let error = run.result.clone().expect_err(name);
        (error.to_string(), run)
    };
    let (spin, _) = run("spin");
    assert_eq!(spin, "ran out of fuel after 50,000,000 instructions");
    let (grow, grow_run) = run("grow");
    assert_eq!(grow, "grew memory past 16 MiB");
    assert!(grow_run.peak_memory <= 16 << 20);
    let (recurse, _) = run("recurse");
    assert!(
        recurse == "overflowed its stack (recursion too deep)"
            || recurse
                == "trapped: accessed memory out of bounds; recursion too deep overflows a plugin's stack this way",
        "{recurse}"
    );
    let (bloat, _) = run("bloat");
    assert_eq!(bloat, "the plugin's output is 2.0 MiB, over the 1 MiB limit");
    let (panic, panic_run) = run("panic");
    assert_eq!(panic, "panicked: plugin panicked on purpose");
    assert!(
        panic_run
            .logs
            .iter()
            .any(|l| l.level == "stderr" && l.message.contains("on purpose"))
    );
}

#[test]
fn a_deadline_stops_a_plugin_with_fuel_to_spare() {
    let host = Host::new(
        Limits {
            fuel: u64::MAX / 2,
            deadline: Duration::from_millis(50),
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let plugin = host.load(&bytes("spin")).unwrap();
    let run = host.transform(&plugin, event(), &request(), "{}");
    assert_eq!(run.result.unwrap_err().to_string(), "ran past its 50 ms deadline");
    assert!(run.duration < Duration::from_secs(5), "{:?}", run.duration);
}

#[test]
fn uploads_that_are_not_plugins_are_refused() {
    let host = host();
    let refuse = |bytes: &[u8]| host.load(bytes).err().expect("refused").to_string();
    assert!(
        refuse(&bytes("socket")).starts_with("it imports wasi:sockets/"),
        "{}",
        refuse(&bytes("socket"))
    );
    assert!(refuse(b"\0asm\x01\0\0\0").contains("core WebAssembly module, not a component"));
    assert_eq!(
        refuse(b"\x13\x37 random bytes \xff\xfe"),
        "not a WebAssembly binary (it does not start with \\0asm)"
    );
    assert_eq!(
        refuse(b""),
        "the upload is empty; send the .wasm file as the request body"
    );
    let mut truncated = bytes("trivial");
    truncated.truncate(truncated.len() / 2);
    assert!(refuse(&truncated).starts_with("not a valid component"));
    let small = Host::new(
        Limits {
            binary: 1024,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    assert!(
        small
            .load(&bytes("trivial"))
            .err()
            .unwrap()
            .to_string()
            .ends_with("over the 1 KiB limit")
    );
}

#[test]
fn inputs_over_the_limit_are_refused_before_running() {
    let host = Host::new(
        Limits {
            input: 1024,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let plugin = host.load(&bytes("trivial")).unwrap();
    let big = Request {
        body: "x".repeat(2048),
        ..request()
    };
    let run = host.transform(&plugin, event(), &big, "{}");
    assert!(matches!(
        run.result,
        Err(PluginError::InputTooLarge { limit: 1024, .. })
    ));
    assert_eq!(run.fuel_used, 0);
}

#[test]
fn a_restart_loads_the_precompiled_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = bytes("reshape");
    let first = Host::new(Limits::default(), Some(dir.path().to_owned())).unwrap();
    let plugin = first.load(&wasm).unwrap();
    assert_eq!(
        first.cache_stats().compiles.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(dir.path().join(format!("{}.cwasm", plugin.sha256())).exists());
    drop(first);
    let second = Host::new(Limits::default(), Some(dir.path().to_owned())).unwrap();
    let plugin = second.load(&wasm).unwrap();
    assert_eq!(second.cache_stats().hits.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        second.cache_stats().compiles.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(second.transform(&plugin, event(), &request(), "{}").result.is_ok());
}

#[test]
fn the_same_input_gives_the_same_output() {
    let host = host();
    let plugin = host.load(&bytes("reshape")).unwrap();
    let a = host.transform(&plugin, event(), &request(), "{}");
    let b = host.transform(&plugin, event(), &request(), "{}");
    assert_eq!(a.result.unwrap(), b.result.unwrap());
    assert_eq!(a.fuel_used, b.fuel_used);
}

/// The artifact of `wasm` in the cache folder `dir`.
fn artifact(dir: &std::path::Path, wasm: &[u8]) -> std::path::PathBuf {
    dir.join(format!("{}.cwasm", Host::sha256(wasm)))
}

/// A cached artifact is checked against the SHA-256 recorded when it was compiled before it
/// is deserialized: a flipped byte, a cut file or a file of another format is never loaded; the
/// plugin is compiled again, works, and its artifact is rewritten whole.
#[test]
fn a_damaged_artifact_is_never_loaded_and_the_plugin_is_compiled_again() {
    use postwire_plugins::Origin;
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let wasm = bytes("reshape");
    let first = Host::new(Limits::default(), Some(dir.path().to_owned())).unwrap();
    assert_eq!(first.load(&wasm).unwrap().origin(), &Origin::Compiled);
    drop(first);
    let path = artifact(dir.path(), &wasm);
    let good = std::fs::read(&path).unwrap();
    assert!(good.starts_with(b"postwire-artifact sha256="));

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let mut cut = good.clone();
    cut.truncate(good.len() / 2);
    let unheaded = good[good.iter().position(|b| *b == b'\n').unwrap() + 1..].to_vec();
    for (damaged, why) in [
        (flipped, "not the"),
        (cut, "not the"),
        (unheaded, "does not start with the artifact header"),
        (b"postwire-artifact sha256=00".to_vec(), "cut short"),
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let host = Host::new(Limits::default(), Some(dir.path().to_owned())).unwrap();
        let plugin = host.load(&wasm).unwrap();
        match plugin.origin() {
            Origin::Recompiled(reason) => assert!(reason.contains(why), "{reason}"),
            other => panic!("the damaged artifact was not refused: {other:?}"),
        }
        let stats = host.cache_stats();
        assert_eq!(
            (
                stats.hits.load(Relaxed),
                stats.rejected.load(Relaxed),
                stats.compiles.load(Relaxed)
            ),
            (0, 1, 1),
            "refused, not loaded, and compiled again"
        );
        let run = host.transform(&plugin, event(), &request(), "{}");
        assert!(run.result.is_ok(), "{:?}", run.result);
        // The artifact was rewritten, and passes its check again.
        assert_eq!(std::fs::read(&path).unwrap().len(), good.len());
        let again = Host::new(Limits::default(), Some(dir.path().to_owned())).unwrap();
        assert_eq!(again.load(&wasm).unwrap().origin(), &Origin::Cached);
    }
}

/// The cache folder keeps at most its size of artifacts: writing one past it removes the
/// least recently used others, and a plugin whose artifact was removed is compiled again.
#[test]
fn the_artifact_cache_stays_within_its_size_dropping_the_least_recently_used() {
    use std::sync::atomic::Ordering::Relaxed;
    let [a, b, c] = ["trivial", "json-ack", "both"].map(bytes);
    // The artifacts' sizes, from a folder of their own.
    let sizing = tempfile::tempdir().unwrap();
    let unbounded = Host::new(Limits::default(), Some(sizing.path().to_owned())).unwrap();
    let size = |wasm: &[u8]| {
        unbounded.load(wasm).unwrap();
        std::fs::metadata(artifact(sizing.path(), wasm)).unwrap().len()
    };
    let (size_a, size_b, size_c) = (size(&a), size(&b), size(&c));
    let bound = size_a + size_b + size_c - 1;

    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(Limits::default(), Some(dir.path().to_owned()))
        .unwrap()
        .with_cache_bytes(bound);
    let on_disk = || -> u64 {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum()
    };
    let pause = || std::thread::sleep(Duration::from_millis(20));
    host.load(&a).unwrap();
    pause();
    host.load(&b).unwrap();
    pause();
    // A is used again (loaded from its artifact), so B is now the least recently used.
    host.load(&a).unwrap();
    assert_eq!(host.cache_stats().hits.load(Relaxed), 1);
    pause();
    host.load(&c).unwrap();
    assert!(on_disk() <= bound, "{} bytes on disk, over {bound}", on_disk());
    assert_eq!(host.cache_stats().evicted.load(Relaxed), 1);
    assert!(artifact(dir.path(), &a).exists(), "the recently used one stays");
    assert!(!artifact(dir.path(), &b).exists(), "the least recently used one goes");
    assert!(artifact(dir.path(), &c).exists(), "the new one stays");
    // B still loads: compiled again, its artifact written, and the cache within its size.
    let plugin = host.load(&b).unwrap();
    assert_eq!(plugin.origin(), &postwire_plugins::Origin::Compiled);
    assert!(on_disk() <= bound, "{} bytes on disk, over {bound}", on_disk());
    assert!(artifact(dir.path(), &b).exists());
}

/// The event's side of a call, recording what the host asked it for.
struct Recorded {
    event: Event,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorded {
    fn ask(&self, what: &str) {
        self.asked.lock().unwrap().push(what.to_owned());
    }
}

impl postwire_plugins::EventSource for Recorded {
    fn id(&self) -> String {
        self.ask("id");
        self.event.id()
    }

    fn event_type(&self) -> String {
        self.ask("event-type");
        self.event.event_type()
    }

    fn partner_id(&self) -> String {
        self.ask("partner-id");
        self.event.partner_id()
    }

    fn occurred_at(&self) -> String {
        self.ask("occurred-at");
        self.event.occurred_at()
    }

    fn field(&self, name: &str) -> Option<String> {
        self.ask(name);
        self.event.field(name)
    }

    fn fields(&self) -> Vec<(String, String)> {
        self.ask("fields");
        self.event.fields()
    }
}

fn recorded() -> (Recorded, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let asked = std::sync::Arc::default();
    (
        Recorded {
            event: event(),
            asked: std::sync::Arc::clone(&asked),
        },
        asked,
    )
}

/// A plugin is handed the values it reads and no others: nothing for one that reads nothing.
#[test]
fn a_call_hands_over_only_what_the_plugin_reads() {
    use postwire_plugins::EventSource as _;
    let host = host();
    let trivial = host.load(&bytes("trivial")).unwrap();
    let (source, asked) = recorded();
    assert_eq!(
        host.transform(&trivial, source, &request(), "{}").result.unwrap(),
        request()
    );
    assert!(asked.lock().unwrap().is_empty(), "{:?}", asked.lock().unwrap());

    let reshape = host.load(&bytes("reshape")).unwrap();
    let (source, asked) = recorded();
    let out = host.transform(&reshape, source, &request(), "{}").result.unwrap();
    assert!(out.body.contains("\"amount_cents\":14990"), "{}", out.body);
    let mut asked = asked.lock().unwrap().clone();
    asked.sort();
    assert_eq!(
        asked,
        [
            "ActionInquiryId",
            "Currency",
            "OrderId",
            "ResolutionStatus",
            "TransactionAmount",
            "id"
        ]
    );

    let foreign = host.load(&bytes("foreign")).unwrap();
    let euro = Event {
        data: vec![("Currency".into(), "EUR".into())],
        ..event()
    };
    assert_eq!(euro.field("Currency").as_deref(), Some("EUR"));
    let out = host.transform(&foreign, euro, &request(), "{}").result.unwrap();
    assert!(
        out.headers.contains(&("X-Foreign-Currency".into(), "EUR".into())),
        "{:?}",
        out.headers
    );
}

/// What a plugin reads counts against the input limit each time it reads it: a plugin cannot
/// make the host copy the event a million times.
#[test]
fn reading_the_event_past_the_input_limit_ends_the_call() {
    let host = Host::new(
        Limits {
            input: 64 << 10,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let reread = host.load(&bytes("reread")).unwrap();
    let out = host.transform(&reread, event(), &request(), "3").result.unwrap();
    assert!(
        out.headers.contains(&("X-Read".into(), "5x3".into())),
        "{:?}",
        out.headers
    );
    let run = host.transform(&reread, event(), &request(), "1000000");
    match run.result {
        Err(PluginError::ReadTooMuch { size, limit }) => {
            assert_eq!(limit, 64 << 10);
            assert!(size > limit && size < limit + 1024, "{size}");
        }
        other => panic!("expected ReadTooMuch, got {other:?}"),
    }
    let message = host
        .transform(&reread, event(), &request(), "1000000")
        .result
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("of the event, over the 64 KiB input limit"),
        "{message}"
    );
}

/// A plugin built against version 0.1.0 of the contract is refused, naming the version to
/// rebuild with.
#[test]
fn a_plugin_built_against_the_old_contract_is_refused_naming_the_version() {
    let error = host().load(&bytes("contract-0-1")).err().expect("refused");
    assert_eq!(error, PluginError::OtherContract("0.1.0".into()));
    let message = error.to_string();
    assert!(
        message.contains("built against postwire:plugin@0.1.0")
            && message.contains("rebuild it with postwire-sdk 0.2.0 (Rust) or @postwire/plugin-sdk 0.2.0"),
        "{message}"
    );
}
