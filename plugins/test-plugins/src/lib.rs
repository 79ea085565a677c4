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
//! Well behaved: `reshape`, `trivial` (transformers), `json-ack` (classifier), `both` (both).
//! Hostile: `spin`, `grow`, `recurse`, `bloat`, `panic` and `socket` (imports `wasi:sockets`).

use std::path::PathBuf;

/// The folder the guests' `.wasm` files are in.
const DIR: &str = env!("POSTWIRE_TEST_PLUGINS_DIR");

/// The crate names of every guest in `plugins/guests`.
pub const GUESTS: &[&str] = &[
    "bloat", "both", "grow", "json-ack", "panic", "recurse", "reshape", "socket", "spin", "trivial",
];

/// The component built from the guest crate `name` (for example `json-ack`).
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{}.wasm", name.replace('-', "_")))
}

/// The bytes of the component built from the guest crate `name` (for example `json-ack`).
///
/// # Panics
///
/// If there is no such component: `name` is not a crate of `plugins/guests`, or its build output
/// was removed since the last build (touch `plugins/guests/Cargo.toml` and build again).
pub fn bytes(name: &str) -> Vec<u8> {
    let path = path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "no test plugin `{name}` at {} ({e}): is `{name}` a member of plugins/guests/Cargo.toml? \
             (known: {}); if it is, its build output was removed: touch plugins/guests/Cargo.toml and build again",
            path.display(),
            GUESTS.join(", ")
        )
    })
}
