//! The WebAssembly plugin host of Postwire.
//!
//! Partners upload WebAssembly components that transform a postback before it is sent or
//! classify the receiver's answer. The contract is `sdk/wit/postwire.wit`, read here by
//! `bindgen!` and by guests through `wit-bindgen`, so the two sides cannot drift.
//!
//! # Layout
//!
//! The lifecycle, in the order it happens:
//!
//! - [`Host`]: one wasmtime `Engine` per process, with fuel, epoch interruption and a pooling
//!   allocator with copy-on-write memory images; a thread ticks the epoch for deadlines.
//! - [`validate`]: what an upload must be: a component, within the size cap, within the caps
//!   on functions, locals and blocks that bound what compiling it costs, with instances that
//!   can fit a call, exporting the contract's `transform` and/or `classify`, importing nothing
//!   but `log` and capability-free WASI.
//! - [`Host::load`]: compile once (a few at a time, under a deadline), keep the artifact by
//!   sha256 so a restart does not compile again (with its own SHA-256 in its header, checked
//!   before wasmtime deserializes it; the folder kept within a size, least recently used out),
//!   resolve imports once (`InstancePre`), and instantiate once under a call's limits so that a
//!   component that can never fit is refused.
//! - `sandbox`: per call, a fresh `Store` with a fuel budget, one memory cap for all of the
//!   call's memories, caps on its memories, tables and core instances, a deadline, no
//!   filesystem, network or environment, fixed clocks and seeded randomness, logs capped by
//!   lines and bytes.
//! - [`Host::transform`] and [`Host::classify`]: one call each, returning the output with the
//!   fuel used, peak memory, time and logs, or a [`PluginError`] a partner understands. Their
//!   `_async` forms run the call on a fiber in the caller's task, which gives its thread back
//!   every 100,000 instructions and at each epoch tick, so a server runs calls among its other
//!   tasks without handing them to another thread.
//!
//! This crate knows nothing of postbacks' storage or HTTP; the engine talks to it only through
//! the plain types in [`types`].
//!
//! ```no_run
//! # fn main() -> Result<(), postwire_plugins::PluginError> {
//! use postwire_plugins::{Host, Limits, types::*};
//!
//! let host = Host::new(Limits::default(), None)?;
//! let plugin = host.load(&std::fs::read("reshape.wasm").unwrap())?;
//! let event = Event { id: "evt_1".into(), event_type: "action_inquiry.created".into(),
//!     partner_id: "ptn_1".into(), occurred_at: "2026-11-20T14:03:00Z".into(), data: vec![] };
//! let request = Request { method: "POST".into(), url: "https://p.example/".into(),
//!     headers: vec![], body: "{}".into() };
//! let run = host.transform(&plugin, event, &request, "{}");
//! println!("{:?} fuel {} logs {:?}", run.result, run.fuel_used, run.logs);
//! # Ok(()) }
//! ```

mod error;
mod host;
mod limits;
mod sandbox;
pub mod types;
pub mod validate;

pub use error::PluginError;
pub use host::{Allocator, CacheStats, DEFAULT_CACHE_BYTES, Host, Origin, Plugin};
pub use limits::Limits;
pub use types::{EventSource, Exports, Run};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "plugin",
        // The event lives in the call's resource table as the value the host was given.
        with: { "postwire:plugin/types.event": crate::sandbox::EventHandle },
        // Reading the event may end the call: past the input cap, or with a stale handle.
        imports: { "postwire:plugin/types": trappable },
        // Calls run on a fiber, so that a call yields its thread at each epoch tick.
        exports: { default: async },
    });
}
