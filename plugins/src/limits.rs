//! The sandbox's limits, configurable by the operator.

use std::time::Duration;

/// What one plugin call may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Instructions (fuel units) per call.
    pub fuel: u64,
    /// Linear memory, in bytes: all of a call's memories together.
    pub memory: usize,
    /// Wall-clock time per call.
    pub deadline: Duration,
    /// Size of an uploaded binary.
    pub binary: usize,
    /// Size of the input (event, request, response and config together).
    pub input: usize,
    /// Size of the output (the transformed request, or the verdict's reason).
    pub output: usize,
    /// Bytes of log lines (including what the plugin writes to stdout and stderr).
    pub logs: usize,
    /// Log lines, empty ones included; past this or `logs` the call goes on and its further
    /// lines are counted, not kept.
    pub log_lines: usize,
    /// Linear memories one call may create, across all of its component's core instances.
    pub memories: u32,
    /// Tables one call may create.
    pub tables: u32,
    /// Core module instances one call may create.
    pub core_instances: u32,
    /// Functions an upload may define, across all of its modules; compiling costs time and
    /// memory by the function.
    pub functions: u32,
    /// Locals one function may declare.
    pub locals: u32,
    /// Locals times control-flow blocks in one function: compiling needs memory growing with
    /// their product.
    pub locals_by_blocks: u64,
    /// Wall-clock time one compile may take.
    pub compile_deadline: Duration,
    /// Compiles that may run at once; more wait their turn.
    pub compiles: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 50_000_000,
            memory: 16 << 20,
            deadline: Duration::from_millis(100),
            binary: 16 << 20,
            input: 1 << 20,
            output: 1 << 20,
            logs: 4 << 10,
            log_lines: 100,
            memories: 2,
            tables: 4,
            core_instances: 16,
            functions: 50_000,
            locals: 10_000,
            locals_by_blocks: 10_000_000,
            compile_deadline: Duration::from_secs(20),
            compiles: 2,
        }
    }
}

/// `16 MiB`, `4 KiB`, `2.5 MiB`, `512 bytes`.
pub fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / (1 << 10) as f64)
    } else {
        format!("{n} bytes")
    }
}

/// `50,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
