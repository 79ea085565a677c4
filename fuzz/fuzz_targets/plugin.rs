//! Plugin upload validation: the checks made of an upload before it is compiled (that it is a
//! component, and what compiling and instantiating it would cost) take any bytes; an upload
//! that passes them and is valid WebAssembly is then loaded as the API loads it (compiled,
//! linked, instantiated once under a call's limits), and whatever it is, it is either accepted
//! or refused as the plugin's fault, never reported as a failure of the host.
//!
//! The seed corpus holds real components (the test and example plugins) for libFuzzer to mutate.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use postwire_plugins::validate::{check_binary, check_shape};
use postwire_plugins::{Host, Limits, PluginError};

static HOST: LazyLock<Host> = LazyLock::new(|| Host::new(Limits::default(), None).expect("the plugin host starts"));

fuzz_target!(|data: &[u8]| {
    let limits = HOST.limits();
    if check_binary(data, limits.binary).is_err() || check_shape(data, limits).is_err() {
        return;
    }
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::default());
    if validator.validate_all(data).is_err() {
        return;
    }
    if let Err(PluginError::Host(reason)) = HOST.load(data) {
        panic!("a plugin upload failed as a host failure: {reason}");
    }
});
