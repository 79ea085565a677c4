//! What an upload must be, checked before and after compiling.

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::{Exports, PluginError};

/// The contract's package, as export and import names carry it.
pub const PACKAGE: &str = "postwire:plugin";
/// The contract's version.
pub const VERSION: &str = "0.1.0";

/// Interfaces a plugin may import, without their `@version`. The WASI ones are those Rust's
/// std links on wasm32-wasip2; each is served capability-free: no preopened directories (so no
/// files), an empty environment and argument list, closed stdin, stdout and stderr captured as
/// bounded logs, clocks fixed at zero whose timers are ready at once (a plugin cannot sleep
/// past its deadline) and randomness from a fixed seed, so that a plugin given the same input
/// gives the same output.
pub const ALLOWED_IMPORTS: &[&str] = &[
    "postwire:plugin/log",
    "postwire:plugin/types",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Checks the bytes before compiling: not empty, within `limit`, a component.
pub fn check_binary(bytes: &[u8], limit: usize) -> Result<(), PluginError> {
    if bytes.is_empty() {
        return Err(PluginError::Empty);
    }
    if bytes.len() > limit {
        return Err(PluginError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if !bytes.starts_with(b"\0asm") || bytes.len() < 8 {
        return Err(PluginError::NotWasm);
    }
    // Bytes 4..8: a core module has version 1, layer 0; a component has layer 1.
    match bytes[4..8] {
        [0x01, 0x00, 0x00, 0x00] => Err(PluginError::CoreModule),
        [_, _, 0x01, 0x00] => Ok(()),
        _ => Err(PluginError::Invalid("unknown WebAssembly version or layer".into())),
    }
}

/// Checks a compiled component's imports and exports; returns what it exports.
pub fn check_component(engine: &Engine, component: &Component) -> Result<Exports, PluginError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let interface = name.split('@').next().unwrap_or(name);
        if !ALLOWED_IMPORTS.contains(&interface) {
            return Err(PluginError::ForbiddenImport(name.to_owned()));
        }
        if interface.starts_with(PACKAGE) && !name.ends_with(&format!("@{VERSION}")) {
            return Err(PluginError::Invalid(format!(
                "it imports {name}, but this host speaks {PACKAGE}@{VERSION}"
            )));
        }
    }
    let mut exports = Exports::default();
    for (name, _) in ty.exports(engine) {
        if name == format!("{PACKAGE}/transform@{VERSION}") {
            exports.transform = true;
        } else if name == format!("{PACKAGE}/classify@{VERSION}") {
            exports.classify = true;
        }
    }
    if !exports.transform && !exports.classify {
        return Err(PluginError::NoExports);
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_component() {
        assert_eq!(check_binary(b"", 100), Err(PluginError::Empty));
        assert_eq!(
            check_binary(&[0; 200], 100),
            Err(PluginError::TooLarge { size: 200, limit: 100 })
        );
        assert_eq!(check_binary(b"\x7fELF\x02\x01\x01\x00", 100), Err(PluginError::NotWasm));
        assert_eq!(check_binary(b"\0asm\x01\0\0\0", 100), Err(PluginError::CoreModule));
        assert_eq!(check_binary(b"\0asm\x0d\0\x01\0", 100), Ok(()));
    }
}
