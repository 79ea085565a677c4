//! The sandbox's caps hold against components built to get around them: memory spread over
//! many instances, compile bombs of both shapes, floods of empty log lines. Each is refused at
//! upload or contained, in words its author understands, and a well-behaved plugin's calls go
//! on meanwhile.

use std::time::Duration;

use postwire_plugins::types::{Event, Request};
use postwire_plugins::{Host, Limits, PluginError};
use postwire_test_plugins::bytes;
use postwire_test_plugins::hostile::{self, PAGE};

fn event() -> Event {
    Event {
        id: "evt_1".into(),
        event_type: "action_inquiry.created".into(),
        partner_id: "ptn_1".into(),
        occurred_at: "2026-11-20T14:03:00Z".into(),
        data: vec![("OrderId".into(), "ORD-1".into())],
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

fn host() -> Host {
    Host::new(Limits::default(), None).expect("the host starts")
}

/// Resident memory of this process, from /proc/self/statm.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Many core instances, each with a memory of its own, can never fit a call: refused at
/// upload, naming the count and the limit.
#[test]
fn many_instances_each_with_a_memory_are_refused_at_upload() {
    let host = host();
    let wasm = hostile::with_memories(&bytes("trivial"), 64, 256);
    let error = host.load(&wasm).err().expect("refused");
    assert!(matches!(error, PluginError::NeverFits(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("can never run within the sandbox's limits: it creates")
            && text.contains("core instances, and a call may have 16"),
        "{text}"
    );
}

/// Memories count together: a second memory that alone is under the cap but with the plugin's
/// own is over it is refused at upload; one that fits is counted in the call's peak.
#[test]
fn a_calls_memories_count_together() {
    let host = host();
    let trivial = bytes("trivial");
    let plain = host.load(&trivial).unwrap();
    let alone = host.transform(&plain, event(), &request(), "{}");
    assert!(alone.result.is_ok(), "{:?}", alone.result);
    assert!(alone.peak_memory > 0);

    // 4 MiB more in a memory of its own: the call's peak says so.
    let extra = 64;
    let plugin = host.load(&hostile::with_memories(&trivial, 1, extra)).unwrap();
    let run = host.transform(&plugin, event(), &request(), "{}");
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(run.peak_memory as u64, alone.peak_memory as u64 + extra * PAGE);

    // 16 MiB in a memory of its own is within the per-memory size, but not with the plugin's
    // own memory beside it.
    let error = host
        .load(&hostile::with_memories(&trivial, 1, 256))
        .err()
        .expect("refused");
    assert!(matches!(error, PluginError::NeverFits(_)), "{error:?}");
    assert!(error.to_string().contains("over the 16 MiB a call may have"), "{error}");
}

/// More memories than a call may have, even small ones, are refused at upload.
#[test]
fn more_memories_than_a_call_may_have_are_refused() {
    let host = host();
    let error = host
        .load(&hostile::with_memories(&bytes("trivial"), 4, 1))
        .err()
        .expect("refused");
    assert!(error.to_string().contains("memories, and a call may have 2"), "{error}");
}

/// 150,000 empty functions: refused before compiling, naming the count and the limit.
#[test]
fn a_component_of_150000_functions_is_refused_before_compiling() {
    let host = host();
    let wasm = hostile::many_functions(150_000);
    let error = host.load(&wasm).err().expect("refused");
    assert_eq!(
        error.to_string(),
        "too costly to compile: it defines 150,000 functions; the limit is 50,000"
    );
    assert_eq!(
        host.cache_stats().compiles.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Under the limit the same shape compiles (and is then refused for what it exports).
    let small = host.load(&hostile::many_functions(1_000)).err().expect("refused");
    assert_eq!(small, PluginError::NoExports);
}

/// One function with thousands of locals and join points: refused before compiling.
#[test]
fn a_function_of_many_locals_and_blocks_is_refused_before_compiling() {
    let host = host();
    let error = host.load(&hostile::many_locals(20_000, 1)).err().expect("refused");
    assert_eq!(
        error.to_string(),
        "too costly to compile: a function declares 20,000 locals; the limit is 10,000 per function"
    );
    let wasm = hostile::many_locals(5_000, 5_000);
    let error = host.load(&wasm).err().expect("refused");
    assert_eq!(
        error.to_string(),
        "too costly to compile: a function's locals times its blocks is 25,005,000; the limit is 10,000,000"
    );
    assert_eq!(
        host.cache_stats().compiles.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// A compile past its deadline is refused with the reason.
#[test]
fn a_compile_past_its_deadline_is_refused() {
    let host = Host::new(
        Limits {
            compile_deadline: Duration::from_millis(1),
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let error = host.load(&bytes("reshape")).err().expect("refused");
    assert_eq!(error, PluginError::CompileDeadline(1));
    assert!(
        error.to_string().starts_with("compiling took longer than 1 ms"),
        "{error}"
    );
}

/// Past the line cap the call goes on, its further lines counted in one last line.
#[test]
fn past_the_line_cap_the_call_goes_on() {
    let host = Host::new(
        Limits {
            log_lines: 0,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let plugin = host.load(&bytes("reshape")).unwrap();
    let run = host.transform(&plugin, event(), &request(), "{}");
    assert!(run.result.is_ok(), "the call goes on: {:?}", run.result);
    assert_eq!(run.logs.len(), 1, "{:?}", run.logs);
    assert_eq!(run.logs[0].level, "host");
    assert_eq!(
        run.logs[0].message,
        "[1 more log lines dropped: a call keeps at most 0 lines and 4 KiB]"
    );
}

/// While hostile uploads are refused and a plugin that spreads memory over the most memories it
/// may runs, another partner's plugin calls all succeed, and the process's resident memory stays
/// bounded. The figures are printed (run with --nocapture), not asserted, except a generous
/// bound on resident growth.
#[test]
fn hostile_plugins_leave_the_others_alone() {
    // What is under test is the pool and the caps, not the clock: a deadline no loaded machine
    // reaches keeps a slow call from failing for a reason that is not the hostile plugins'.
    let host = std::sync::Arc::new(
        Host::new(
            Limits {
                deadline: Duration::from_secs(10),
                ..Limits::default()
            },
            None,
        )
        .expect("the host starts"),
    );
    let trivial = bytes("trivial");
    let wide = host.load(&hostile::with_memories(&trivial, 1, 128)).unwrap();
    let reshape = host.load(&bytes("reshape")).unwrap();
    let before = resident_bytes();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hostile_threads = Vec::new();
    for n in 0..2 {
        let (host, wide, stop) = (host.clone(), wide.clone(), stop.clone());
        let trivial = trivial.clone();
        hostile_threads.push(std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if n == 0 {
                    for wasm in [
                        hostile::with_memories(&trivial, 64, 256),
                        hostile::many_functions(150_000),
                        hostile::many_locals(5_000, 5_000),
                    ] {
                        assert!(host.load(&wasm).is_err());
                    }
                } else {
                    let run = host.transform(&wide, event(), &request(), "{}");
                    assert!(run.result.is_ok(), "{:?}", run.result);
                }
                rounds += 1;
            }
            rounds
        }));
    }
    let mut peak = before;
    for _ in 0..300 {
        let run = host.transform(&reshape, event(), &request(), "{}");
        assert!(run.result.is_ok(), "{:?}", run.result);
        peak = peak.max(resident_bytes());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds: Vec<u32> = hostile_threads.into_iter().map(|t| t.join().unwrap()).collect();
    let after = resident_bytes();
    eprintln!(
        "resident memory: {} MiB before, {} MiB at most, {} MiB after; hostile rounds {rounds:?}; 300 calls of \
         the other plugin succeeded",
        before >> 20,
        peak >> 20,
        after >> 20
    );
    assert!(
        peak - before < 512 << 20,
        "resident memory grew by {} MiB",
        (peak - before) >> 20
    );
}
