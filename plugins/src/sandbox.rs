//! The per-call sandbox: the store's state, its memory limiter, the `log` import, and the
//! translation of traps into [`PluginError`]s.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::StoreContextMut;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::postwire::plugin::log;
use crate::types::LogLine;
use crate::{Limits, PluginError};

/// Everything a call's store holds.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    logs: Vec<LogLine>,
    log_bytes: usize,
    log_cap: usize,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl CallState {
    pub(crate) fn new(limits: &Limits) -> CallState {
        let stdout = MemoryOutputPipe::new(limits.logs);
        let stderr = MemoryOutputPipe::new(limits.logs);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(StdRng::seed_from_u64(0))
            .insecure_random(StdRng::seed_from_u64(1))
            .insecure_random_seed(2)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter {
                cap: limits.memory,
                peak: 0,
                exceeded: false,
            },
            logs: Vec::new(),
            log_bytes: 0,
            log_cap: limits.logs,
            stdout,
            stderr,
        }
    }

    /// The logs, with what the plugin wrote to stdout and stderr as lines of their own.
    pub(crate) fn into_logs(mut self) -> Vec<LogLine> {
        for (level, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = String::from_utf8_lossy(&pipe.contents()).into_owned();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                push_log(&mut self.logs, &mut self.log_bytes, self.log_cap, level, line);
            }
        }
        self.logs
    }

    /// What the plugin wrote to stderr (where Rust prints panic messages).
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}

fn push_log(logs: &mut Vec<LogLine>, used: &mut usize, cap: usize, level: &'static str, message: &str) {
    const CUT: &str = "[logs cut: over the limit]";
    if *used >= cap {
        return;
    }
    let room = cap - *used;
    if message.len() <= room {
        *used += message.len();
        logs.push(LogLine {
            level,
            message: message.to_owned(),
        });
    } else {
        *used = cap;
        let mut end = room;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        logs.push(LogLine {
            level,
            message: format!("{}… {CUT}", &message[..end]),
        });
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for CallState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        push_log(&mut self.logs, &mut self.log_bytes, self.log_cap, level, &message);
    }
}

impl crate::bindings::postwire::plugin::types::Host for CallState {}

/// Caps linear memory and remembers the peak.
pub(crate) struct MemoryLimiter {
    cap: usize,
    pub(crate) peak: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.exceeded = true;
            return Err(wasmtime::format_err!("memory limit exceeded"));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Clocks frozen at the epoch: plugins cannot tell time, so the same input gives the same output.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// The monotonic clock's interface name, as wasmtime-wasi links it.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Links WASI and the contract's imports. Timers of `wasi:clocks/monotonic-clock` are replaced
/// by ones that are ready at once: the clock is frozen anyway, and a real timer would let a
/// plugin block its thread in the host, where neither fuel nor the epoch deadline reach it.
pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    crate::bindings::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, CallState>, (_,): (u64,)| ready_now(&mut store.data_mut().table),
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, CallState>, (_,): (u64,)| ready_now(&mut store.data_mut().table),
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn ready_now(table: &mut ResourceTable) -> wasmtime::Result<(Resource<DynPollable>,)> {
    let ready = table.push(ReadyNow)?;
    Ok((subscribe(table, ready)?,))
}

/// A pollable that is always ready.
struct ReadyNow;

#[async_trait::async_trait]
impl Pollable for ReadyNow {
    async fn ready(&mut self) {}
}

/// Turns what a failed call left behind into an error its author understands.
pub(crate) fn explain(error: wasmtime::Error, state: &CallState, limits: &Limits) -> PluginError {
    if state.memory.exceeded {
        return PluginError::OutOfMemory { limit: limits.memory };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::OutOfFuel { limit: limits.fuel },
        Some(Trap::Interrupt) => PluginError::Deadline(limits.deadline.as_millis()),
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        // Rust and C keep their stack in linear memory, below the data; recursing too deep runs
        // it off the bottom of memory, which traps as an out-of-bounds access.
        Some(Trap::MemoryOutOfBounds) => PluginError::Trap(
            "accessed memory out of bounds; recursion too deep overflows a plugin's stack this way".into(),
        ),
        Some(Trap::UnreachableCodeReached) => {
            let stderr = state.stderr_text();
            match stderr.lines().find_map(|l| l.split_once("panicked at ")) {
                Some((_, rest)) => {
                    let message = rest.split_once(":\n").map_or(rest, |(_, m)| m);
                    let mut lines = stderr.lines().skip_while(|l| !l.contains("panicked at "));
                    let _ = lines.next();
                    let detail = lines.next().unwrap_or(message).trim().to_owned();
                    PluginError::Panic(detail)
                }
                None => PluginError::Trap("hit unreachable code (a panic or an explicit abort)".into()),
            }
        }
        Some(trap) => PluginError::Trap(trap.to_string()),
        None => PluginError::Trap(format!("{error:#}")),
    }
}
