//! Everything that can go wrong with a plugin, in words its author understands.

use crate::limits::{bytes, thousands};

/// Why a plugin was refused at upload or produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// Nothing was uploaded.
    #[error("the upload is empty; send the .wasm file as the request body")]
    Empty,
    /// The binary is over the size cap.
    #[error("the binary is {}, over the {} limit", bytes(*size), bytes(*limit))]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary (it does not start with \\0asm)")]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "this is a core WebAssembly module, not a component; build the plugin for wasm32-wasip2 \
         (cargo build --target wasm32-wasip2) or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// Wasmtime could not compile it.
    #[error("not a valid component: {0}")]
    Invalid(String),
    /// Compiling it would cost more time or memory than an upload may (too many functions,
    /// locals or blocks), found before compiling.
    #[error("too costly to compile: {0}")]
    TooCostly(String),
    /// Compiling took longer than the compile deadline.
    #[error(
        "compiling took longer than {0} ms; make the plugin smaller (fewer and smaller functions, \
         build with opt-level \"s\")"
    )]
    CompileDeadline(u128),
    /// Its instances can never fit the sandbox: more memories, tables or core instances than
    /// a call may have, or more initial memory than the cap.
    #[error("can never run within the sandbox's limits: {0}")]
    NeverFits(String),
    /// It imports something plugins may not have.
    #[error(
        "it imports {0}, which plugins may not use: plugins get no filesystem, network, environment, \
         real clock or randomness; they may import only postwire:plugin/log and the capability-free \
         WASI interfaces Rust's std needs"
    )]
    ForbiddenImport(String),
    /// It exports neither function of the contract.
    #[error("it exports neither postwire:plugin/transform nor postwire:plugin/classify (version 0.2.0)")]
    NoExports,
    /// It was built against another version of the contract (the one named).
    #[error(
        "it was built against postwire:plugin@{0}, and this host speaks postwire:plugin@0.2.0: rebuild it \
         with postwire-sdk 0.2.0 (Rust) or @postwire/plugin-sdk 0.2.0 (TypeScript, JavaScript); the \
         plugin's own code needs no change"
    )]
    OtherContract(String),
    /// Its export does not have the contract's shape.
    #[error("its export {0} does not match the contract in sdk/wit/postwire.wit")]
    BadExport(String),
    /// The plugin lacks the function the call needs.
    #[error("the plugin does not export {0}")]
    MissingExport(&'static str),
    /// The input is over the input cap.
    #[error("the input is {}, over the {} limit", bytes(*size), bytes(*limit))]
    InputTooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The plugin read more of the event than the input cap, counting every value each time it
    /// was read.
    #[error(
        "it read {} of the event, over the {} input limit (every value counts each time it is read: \
         read a field once and keep it)",
        bytes(*size),
        bytes(*limit)
    )]
    ReadTooMuch {
        /// Bytes read so far, the one that crossed the cap included.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The output is over the output cap.
    #[error("the plugin's output is {}, over the {} limit", bytes(*size), bytes(*limit))]
    OutputTooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// Fuel ran out.
    #[error("ran out of fuel after {} instructions", thousands(*limit))]
    OutOfFuel {
        /// The budget.
        limit: u64,
    },
    /// Memory grew past the cap.
    #[error("grew memory past {}", bytes(*limit))]
    OutOfMemory {
        /// The cap.
        limit: usize,
    },
    /// The wall-clock deadline passed.
    #[error("ran past its {0} ms deadline")]
    Deadline(u128),
    /// The call stack overflowed.
    #[error("overflowed its stack (recursion too deep)")]
    StackOverflow,
    /// The plugin panicked.
    #[error("panicked: {0}")]
    Panic(String),
    /// Another trap.
    #[error("trapped: {0}")]
    Trap(String),
    /// The component could not be instantiated within a call's limits.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The plugin returned an error.
    #[error("the plugin refused: {0}")]
    Refused(String),
    /// The host could not run it (pool exhausted, artifact unreadable, ...).
    #[error("the plugin could not be run: {0}")]
    Host(String),
}

impl PluginError {
    /// True for failures of the host rather than of the plugin, worth retrying as they are.
    pub fn is_host_failure(&self) -> bool {
        matches!(self, PluginError::Host(_))
    }
}
