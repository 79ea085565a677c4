//! Write Postwire plugins in plain Rust.
//!
//! # Layout
//!
//! - `wit/`: the plugin contract (WIT), the only place it is written; the host and every guest
//!   read it.
//! - this crate: typed access to the event, the request and the response, verdict constructors
//!   and `log!`, over the bindings generated from that contract.
