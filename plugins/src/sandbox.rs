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

use crate::bindings::postwire::plugin::{log, types};
use crate::limits::{bytes, thousands};
use crate::types::EventSource;
use crate::types::LogLine;
use crate::{Limits, PluginError};

/// The event of a `transform` call, in the call's resource table.
pub struct EventHandle(pub(crate) Box<dyn EventSource>);

/// Everything a call's store holds.
pub(crate) struct CallState {
    /// Made at the plugin's first WASI call: most plugins make none, and a context costs as
    /// much to build as a small plugin's whole call.
    wasi: Option<Box<Wasi>>,
    pub(crate) table: ResourceTable,
    /// Bytes of the event handed to the plugin so far, and the most it may be handed.
    pub(crate) read: usize,
    read_limit: usize,
    /// Set when the plugin read past `read_limit`, to explain the trap that ended the call.
    pub(crate) read_too_much: bool,
    pub(crate) memory: MemoryLimiter,
    logs: LogBook,
}

/// A call's WASI context and the pipes that catch its stdout and stderr.
struct Wasi {
    ctx: WasiCtx,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Wasi {
    /// No filesystem, network or environment; fixed clocks and seeded randomness; stdout and
    /// stderr kept, each up to `capacity` bytes.
    fn new(capacity: usize) -> Wasi {
        let stdout = MemoryOutputPipe::new(capacity);
        let stderr = MemoryOutputPipe::new(capacity);
        let ctx = WasiCtxBuilder::new()
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
        Wasi { ctx, stdout, stderr }
    }
}

impl CallState {
    pub(crate) fn new(limits: &Limits) -> CallState {
        CallState {
            wasi: None,
            table: ResourceTable::new(),
            read: 0,
            read_limit: limits.input,
            read_too_much: false,
            memory: MemoryLimiter::new(limits),
            logs: LogBook {
                lines: Vec::new(),
                bytes: 0,
                dropped: 0,
                max_bytes: limits.logs,
                max_lines: limits.log_lines,
            },
        }
    }

    /// The logs, with what the plugin wrote to stdout and stderr as lines of their own, and a
    /// last line saying how many were dropped, if any were.
    pub(crate) fn into_logs(mut self) -> Vec<LogLine> {
        if let Some(wasi) = self.wasi.take() {
            for (level, pipe) in [("stdout", &wasi.stdout), ("stderr", &wasi.stderr)] {
                let text = String::from_utf8_lossy(&pipe.contents()).into_owned();
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    self.logs.push(level, line);
                }
            }
        }
        self.logs.finish()
    }

    /// What the plugin wrote to stderr (where Rust prints panic messages).
    pub(crate) fn stderr_text(&self) -> String {
        self.wasi
            .as_ref()
            .map(|wasi| String::from_utf8_lossy(&wasi.stderr.contents()).into_owned())
            .unwrap_or_default()
    }
}

/// A call's log lines, capped by lines and by bytes. Every line counts against the line cap,
/// an empty one too: a plugin that logs nothing a million times must not store a million lines.
struct LogBook {
    lines: Vec<LogLine>,
    bytes: usize,
    dropped: u64,
    max_bytes: usize,
    max_lines: usize,
}

impl LogBook {
    fn push(&mut self, level: &'static str, message: &str) {
        if self.lines.len() >= self.max_lines || self.bytes >= self.max_bytes {
            self.dropped += 1;
            return;
        }
        let room = self.max_bytes - self.bytes;
        if message.len() <= room {
            self.bytes += message.len();
            self.lines.push(LogLine {
                level,
                message: message.to_owned(),
            });
        } else {
            self.bytes = self.max_bytes;
            let mut end = room;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            self.lines.push(LogLine {
                level,
                message: format!(
                    "{}… [cut: over the {} log limit]",
                    &message[..end],
                    bytes(self.max_bytes)
                ),
            });
        }
    }

    fn finish(mut self) -> Vec<LogLine> {
        if self.dropped > 0 {
            self.lines.push(LogLine {
                level: "host",
                message: format!(
                    "[{} more log lines dropped: a call keeps at most {} lines and {}]",
                    thousands(self.dropped),
                    self.max_lines,
                    bytes(self.max_bytes)
                ),
            });
        }
        self.lines
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let capacity = self.logs.max_bytes;
        WasiCtxView {
            ctx: &mut self.wasi.get_or_insert_with(|| Box::new(Wasi::new(capacity))).ctx,
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
        self.logs.push(level, &message);
    }
}

impl types::Host for CallState {}

impl CallState {
    /// Counts `bytes` of the event as handed over; past the cap, ends the call.
    fn hand(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.read = self.read.saturating_add(bytes);
        if self.read > self.read_limit {
            self.read_too_much = true;
            return Err(wasmtime::format_err!(
                "the plugin read more of the event than the input limit"
            ));
        }
        Ok(())
    }

    fn source(&self, event: &Resource<EventHandle>) -> wasmtime::Result<&dyn EventSource> {
        Ok(&*self.table.get(event)?.0)
    }

    fn text(&mut self, event: Resource<EventHandle>, read: fn(&dyn EventSource) -> String) -> wasmtime::Result<String> {
        let text = read(self.source(&event)?);
        self.hand(text.len())?;
        Ok(text)
    }
}

impl types::HostEvent for CallState {
    fn id(&mut self, event: Resource<EventHandle>) -> wasmtime::Result<String> {
        self.text(event, |source| source.id())
    }

    fn event_type(&mut self, event: Resource<EventHandle>) -> wasmtime::Result<String> {
        self.text(event, |source| source.event_type())
    }

    fn partner_id(&mut self, event: Resource<EventHandle>) -> wasmtime::Result<String> {
        self.text(event, |source| source.partner_id())
    }

    fn occurred_at(&mut self, event: Resource<EventHandle>) -> wasmtime::Result<String> {
        self.text(event, |source| source.occurred_at())
    }

    fn get(&mut self, event: Resource<EventHandle>, name: String) -> wasmtime::Result<Option<String>> {
        let source = self.source(&event)?;
        // The envelope's placeholders are answered here, so that every guest language reads
        // them the same way.
        let value = match name.as_str() {
            "EventId" => Some(source.id()),
            "EventType" => Some(source.event_type()),
            "EventDate" => Some(source.occurred_at()),
            _ => source.field(&name),
        };
        self.hand(value.as_ref().map_or(0, String::len))?;
        Ok(value)
    }

    fn fields(&mut self, event: Resource<EventHandle>) -> wasmtime::Result<Vec<types::Field>> {
        let fields = self.source(&event)?.fields();
        self.hand(fields.iter().map(|(name, value)| name.len() + value.len()).sum())?;
        Ok(fields
            .into_iter()
            .map(|(name, value)| types::Field { name, value })
            .collect())
    }

    fn drop(&mut self, event: Resource<EventHandle>) -> wasmtime::Result<()> {
        self.table.delete(event)?;
        Ok(())
    }
}

/// Table elements a call may have, all tables together.
const TABLE_ELEMENTS: usize = 100_000;

/// Caps a call's linear memory, all of its memories together, and counts the instances,
/// memories and tables it creates; remembers the peak of the total.
pub(crate) struct MemoryLimiter {
    cap: usize,
    /// Bytes of all the call's memories now.
    total: usize,
    /// The most `total` has been.
    pub(crate) peak: usize,
    table_elements: usize,
    pub(crate) exceeded: bool,
    instances: u32,
    memories: u32,
    tables: u32,
}

impl MemoryLimiter {
    fn new(limits: &Limits) -> MemoryLimiter {
        MemoryLimiter {
            cap: limits.memory,
            total: 0,
            peak: 0,
            table_elements: 0,
            exceeded: false,
            instances: limits.core_instances,
            memories: limits.memories,
            tables: limits.tables,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Called for each memory as it is created (from 0) and as it grows: the sum over calls
        // is the call's memory, however many memories it spreads it over.
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.cap {
            self.exceeded = true;
            return Err(wasmtime::format_err!("memory limit exceeded"));
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_elements.saturating_sub(current).saturating_add(desired);
        if total > TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances as usize
    }

    fn memories(&self) -> usize {
        self.memories as usize
    }

    fn tables(&self) -> usize {
        self.tables as usize
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
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
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
    if state.read_too_much {
        return PluginError::ReadTooMuch {
            size: state.read,
            limit: limits.input,
        };
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn book(max_lines: usize, max_bytes: usize) -> LogBook {
        LogBook {
            lines: Vec::new(),
            bytes: 0,
            dropped: 0,
            max_bytes,
            max_lines,
        }
    }

    /// Empty lines cost no bytes, and still count: 200,000 of them keep 100 and a note.
    #[test]
    fn every_line_counts_empty_ones_too() {
        let mut logs = book(100, 4 << 10);
        for _ in 0..200_000 {
            logs.push("info", "");
        }
        let lines = logs.finish();
        assert_eq!(lines.len(), 101);
        assert!(lines[..100].iter().all(|l| l.message.is_empty()));
        assert_eq!(
            lines[100].message,
            "[199,900 more log lines dropped: a call keeps at most 100 lines and 4 KiB]"
        );
    }

    /// The byte cap cuts the line that crosses it and drops the rest.
    #[test]
    fn the_byte_cap_cuts_and_drops() {
        let mut logs = book(100, 10);
        logs.push("info", "12345678");
        logs.push("warn", "a\u{e9}z");
        logs.push("info", "more");
        let lines = logs.finish();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[1].message, "a… [cut: over the 10 bytes log limit]");
        assert_eq!(
            lines[2].message,
            "[1 more log lines dropped: a call keeps at most 100 lines and 10 bytes]"
        );
    }

    /// A call's memories are capped and peaked together.
    #[test]
    fn memories_count_together() {
        let mut limiter = MemoryLimiter::new(&Limits {
            memory: 10 << 20,
            ..Limits::default()
        });
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        assert!(limiter.memory_growing(4 << 20, 7 << 20, None).is_err());
        assert!(limiter.exceeded);
        assert!(limiter.memory_growing(4 << 20, 5 << 20, None).unwrap());
        assert_eq!(limiter.peak, 9 << 20);
    }
}
