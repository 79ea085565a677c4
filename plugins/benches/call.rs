//! The cost of one plugin call, instantiation included: a fresh store, the instance, the call,
//! the output read back. Run with `cargo bench -p postwire-plugins --bench call`.
//!
//! Measured in the same run: the trivial transform (returns its input) with the pooling
//! allocator, which is how Postwire runs plugins, against the same call with on-demand
//! allocation (new memory mappings per instance) as the baseline, plus a realistic transform
//! (`reshape`: parses and rewrites the JSON body), and the trivial transform called by two
//! threads at once (each call's time while another runs beside it, as in a server).
//!
//! With `PW_BENCH_JS` set to a JavaScript component of `examples/plugins-ts/nested-json` (the
//! TypeScript tests keep the ones they build in `$CARGO_TARGET_DIR/typescript-plugins/`), the
//! same call of it against the Rust `nested-json` example, on the sample event.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use postwire_plugins::types::{Event, Request};
use postwire_plugins::{Allocator, Host, Limits};

fn event() -> Event {
    Event {
        id: "evt_1".into(),
        event_type: "action_inquiry.created".into(),
        partner_id: "ptn_1".into(),
        occurred_at: "2026-11-20T14:03:00Z".into(),
        data: vec![
            ("ActionInquiryId".into(), "1000123".into()),
            ("OrderId".into(), "ORD-99812".into()),
            ("TransactionAmount".into(), "149.90".into()),
            ("Currency".into(), "USD".into()),
        ],
    }
}

fn request() -> Request {
    Request {
        method: "POST".into(),
        url: "https://partner.example/postbacks".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: r#"{"inquiry":"1000123","order":"ORD-99812","amount":149.90,"currency":"USD"}"#.into(),
    }
}

fn calls(c: &mut Criterion) {
    let (event, request) = (event(), request());
    let mut group = c.benchmark_group("plugin_call");
    for (label, allocator) in [
        ("pooling", Allocator::Pooling),
        ("on_demand_baseline", Allocator::OnDemand),
    ] {
        let host = Host::with_allocator(Limits::default(), None, allocator).expect("the host starts");
        let plugin = host
            .load(&postwire_test_plugins::bytes("trivial"))
            .expect("trivial loads");
        assert!(host.transform(&plugin, event.clone(), &request, "{}").result.is_ok());
        group.bench_function(format!("trivial_transform_{label}"), |b| {
            b.iter(|| {
                black_box(
                    host.transform(&plugin, black_box(event.clone()), black_box(&request), "{}")
                        .result
                        .is_ok(),
                )
            })
        });
    }
    let host = Host::new(Limits::default(), None).expect("the host starts");
    let trivial = host
        .load(&postwire_test_plugins::bytes("trivial"))
        .expect("trivial loads");
    // Two threads calling at once, as an engine's two runtime threads do: the time is that of
    // `iters` calls on each, so against `trivial_transform_pooling` it shows what a call costs
    // while another runs beside it.
    group.bench_function("trivial_transform_pooling_two_threads", |b| {
        b.iter_custom(|iters| {
            let started = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            black_box(
                                host.transform(&trivial, black_box(event.clone()), black_box(&request), "{}")
                                    .result
                                    .is_ok(),
                            );
                        }
                    });
                }
            });
            started.elapsed()
        })
    });
    let reshape = host
        .load(&postwire_test_plugins::bytes("reshape"))
        .expect("reshape loads");
    group.bench_function("reshape_transform_pooling", |b| {
        b.iter(|| {
            black_box(
                host.transform(&reshape, black_box(event.clone()), black_box(&request), "{}")
                    .result
                    .is_ok(),
            )
        })
    });
    if let Some(path) = std::env::var_os("PW_BENCH_JS") {
        let js = std::fs::read(&path).expect("PW_BENCH_JS names a readable component");
        let js = host.load(&js).expect("the JavaScript component loads");
        let rust = host
            .load(&postwire_test_plugins::example_bytes("nested-json"))
            .expect("nested-json loads");
        let (event, request) = (sample_event(), sample_request());
        for (label, plugin) in [("rust", &rust), ("typescript", &js)] {
            let first = host.transform(plugin, event.clone(), &request, "{}");
            assert!(first.result.is_ok(), "{label}: {:?}", first.result);
            let again = host.transform(plugin, event.clone(), &request, "{}");
            eprintln!(
                "nested_json_{label}: {} fuel, peak memory {} KiB, {:?} a call",
                again.fuel_used,
                again.peak_memory >> 10,
                again.duration
            );
            group.bench_function(format!("nested_json_{label}_pooling"), |b| {
                b.iter(|| {
                    black_box(
                        host.transform(plugin, black_box(event.clone()), black_box(&request), "{}")
                            .result
                            .is_ok(),
                    )
                })
            });
        }
    } else {
        eprintln!("PW_BENCH_JS is not set: the TypeScript nested-json call is not measured");
    }
    group.finish();
}

/// The sample event of `examples/events/created.json`, every data field as text.
fn sample_event() -> Event {
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../../examples/events/created.json")).expect("the sample parses");
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    Event {
        id: text(&sample["id"]),
        event_type: text(&sample["type"]),
        partner_id: text(&sample["partner_id"]),
        occurred_at: text(&sample["occurred_at"]),
        data: sample["data"]
            .as_object()
            .expect("data is an object")
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect(),
    }
}

/// What the sample JSON settings render for the sample event: a flat JSON body.
fn sample_request() -> Request {
    Request {
        method: "POST".into(),
        url: "https://partner.example/postbacks".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: r#"{"event":"action_inquiry.created","inquiry_id":"1000123","order_id":"ORD-99812","amount":149.9,"currency":"USD","status":"OPEN","payout":12.5,"sub_id":"spring"}"#.into(),
    }
}

criterion_group!(benches, calls);
criterion_main!(benches);
