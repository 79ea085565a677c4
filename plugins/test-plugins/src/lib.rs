//! The guest plugins of `plugins/guests`, built as WebAssembly components (wasm32-wasip2) for
//! the plugin host's tests and benches.
//!
//! The build script compiles the guests' workspace with a nested cargo into
//! `<target>/wasm-guests`, so a test only asks for a plugin by its crate name:
//!
//! ```no_run
//! let component: Vec<u8> = postwire_test_plugins::bytes("json-ack");
//! ```
//!
//! Well behaved: `reshape`, `trivial`, `foreign`, `reread` (transformers), `json-ack` (classifier),
//! `both` (both); `contract-0-1` is built against version 0.1.0 of the contract, which the host refuses.
//! Hostile: `spin`, `grow`, `recurse`, `bloat`, `panic` and `socket` (imports `wasi:sockets`).
//!
//! The example plugins of `examples/plugins`, written with the SDK, are built the same way (into
//! `<target>/wasm-examples`) and asked for with [`example_bytes`]:
//!
//! ```no_run
//! let component: Vec<u8> = postwire_test_plugins::example_bytes("hmac-header");
//! ```
//!
//! Transformers: `hmac-header`, `nested-json`, `soap-envelope`; classifiers: `json-status`,
//! `plain-ack`.
//!
//! Components too hostile to write in Rust (thousands of instances, functions or locals) are
//! crafted in [`hostile`].

use std::path::PathBuf;

pub mod hostile;

/// The folder the guests' `.wasm` files are in.
const DIR: &str = env!("POSTWIRE_TEST_PLUGINS_DIR");

/// The folder the example plugins' `.wasm` files are in.
const EXAMPLES_DIR: &str = env!("POSTWIRE_EXAMPLE_PLUGINS_DIR");

/// The crate names of every guest in `plugins/guests`.
pub const GUESTS: &[&str] = &[
    "bloat",
    "both",
    "contract-0-1",
    "foreign",
    "grow",
    "json-ack",
    "panic",
    "recurse",
    "reread",
    "reshape",
    "socket",
    "spin",
    "trivial",
];

/// The crate names of every example plugin in `examples/plugins`.
pub const EXAMPLES: &[&str] = &[
    "hmac-header",
    "json-status",
    "nested-json",
    "plain-ack",
    "soap-envelope",
];

/// The component built from the guest crate `name` (for example `json-ack`).
pub fn path(name: &str) -> PathBuf {
    component(DIR, name)
}

/// The `.wasm` cargo names after crate `name` in `dir`.
fn component(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(dir).join(format!("{}.wasm", name.replace('-', "_")))
}

/// Reads a built component, or explains which workspace `name` should belong to.
fn read(path: PathBuf, name: &str, kind: &str, workspace: &str, known: &[&str]) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "no {kind} `{name}` at {} ({e}): is `{name}` a member of {workspace}/Cargo.toml? \
             (known: {}); if it is, its build output was removed: touch {workspace}/Cargo.toml and build again",
            path.display(),
            known.join(", ")
        )
    })
}

/// The bytes of the component built from the guest crate `name` (for example `json-ack`).
///
/// # Panics
///
/// If there is no such component: `name` is not a crate of `plugins/guests`, or its build output
/// was removed since the last build (touch `plugins/guests/Cargo.toml` and build again).
pub fn bytes(name: &str) -> Vec<u8> {
    read(path(name), name, "test plugin", "plugins/guests", GUESTS)
}

/// The component built from the example plugin `name` (for example `hmac-header`).
pub fn example_path(name: &str) -> PathBuf {
    component(EXAMPLES_DIR, name)
}

/// The bytes of the component built from the example plugin `name` (for example
/// `hmac-header`).
///
/// # Panics
///
/// If there is no such component: `name` is not a crate of `examples/plugins`, or its build
/// output was removed since the last build (touch `examples/plugins/Cargo.toml` and build again).
pub fn example_bytes(name: &str) -> Vec<u8> {
    read(example_path(name), name, "example plugin", "examples/plugins", EXAMPLES)
}
