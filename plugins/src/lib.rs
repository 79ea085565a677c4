//! The WebAssembly plugin host of Postwire.
//!
//! # Layout
//!
//! Partners upload WebAssembly components that transform a postback before it is sent or
//! classify the receiver's answer. This crate will hold everything that touches wasmtime:
//!
//! - `validate`: refuse anything that is not a component honouring the contract in `sdk/wit/`,
//!   or that imports a capability it may not have.
//! - `compile`: precompile at upload, cached by the binary's sha256.
//! - `sandbox`: fuel, memory, deadline and output limits for every call.
//! - `run`: instantiate from a pooling allocator and call `transform` or `classify`.
//!
//! It knows nothing of postbacks' storage or HTTP; the engine calls it through its API.
