//! What an upload must be, checked before and after compiling.

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::limits::thousands;
use crate::{Exports, Limits, PluginError};

/// The contract's package, as export and import names carry it.
pub const PACKAGE: &str = "postwire:plugin";
/// The contract's version.
pub const VERSION: &str = "0.2.0";

/// The version of the contract a `postwire:plugin` import or export name carries, when it is
/// not this host's.
fn other_version(name: &str) -> Option<&str> {
    let (interface, version) = name.split_once('@')?;
    (interface.starts_with(PACKAGE) && version != VERSION).then_some(version)
}

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

/// What compiling and instantiating a component will cost, read from its bytes without
/// compiling them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// Functions defined, in all of its core modules.
    pub functions: u32,
    /// The most locals one function declares.
    pub most_locals: u32,
    /// The largest product of one function's locals and its control-flow blocks.
    pub most_locals_by_blocks: u64,
    /// Core module instances its own instance sections create (nested components counted once).
    pub core_instances: u32,
    /// Linear memories those instances define.
    pub memories: u32,
    /// Tables those instances define.
    pub tables: u32,
    /// The initial size of those memories together, in bytes.
    pub initial_memory: u64,
}

/// What one core module defines.
#[derive(Default, Clone, Copy)]
struct ModuleShape {
    memories: u32,
    tables: u32,
    initial_memory: u64,
}

/// Where the walk over nested modules and components is.
enum Frame {
    Component { modules: Vec<ModuleShape> },
    Module(ModuleShape),
}

/// Reads a component's cost before it is compiled, and refuses one over `limits`: too many
/// functions, a function with too many locals or too many locals times blocks (compiling it
/// would need time or memory out of proportion to its size), or instances that could never
/// fit a call's memories, tables, core instances or memory.
pub fn check_shape(bytes: &[u8], limits: &Limits) -> Result<Shape, PluginError> {
    let shape = shape(bytes).map_err(|e| PluginError::Invalid(e.to_string()))?;
    let over = |what: String, limit: String| format!("{what}; the limit is {limit}");
    if shape.functions > limits.functions {
        return Err(PluginError::TooCostly(over(
            format!("it defines {} functions", thousands(shape.functions.into())),
            thousands(limits.functions.into()),
        )));
    }
    if shape.most_locals > limits.locals {
        return Err(PluginError::TooCostly(over(
            format!("a function declares {} locals", thousands(shape.most_locals.into())),
            format!("{} per function", thousands(limits.locals.into())),
        )));
    }
    if shape.most_locals_by_blocks > limits.locals_by_blocks {
        return Err(PluginError::TooCostly(over(
            format!(
                "a function's locals times its blocks is {}",
                thousands(shape.most_locals_by_blocks)
            ),
            thousands(limits.locals_by_blocks),
        )));
    }
    let never = |what: &str, count: u32, limit: u32| {
        PluginError::NeverFits(format!(
            "it creates {count} {what}, and a call may have {limit}; a plugin built for wasm32-wasip2 \
             needs one or two"
        ))
    };
    if shape.core_instances > limits.core_instances {
        return Err(never("core instances", shape.core_instances, limits.core_instances));
    }
    if shape.memories > limits.memories {
        return Err(never("memories", shape.memories, limits.memories));
    }
    if shape.tables > limits.tables {
        return Err(never("tables", shape.tables, limits.tables));
    }
    if shape.initial_memory > limits.memory as u64 {
        return Err(PluginError::NeverFits(format!(
            "its memories start at {} together, over the {} a call may have",
            bytes_text(shape.initial_memory),
            bytes_text(limits.memory as u64)
        )));
    }
    Ok(shape)
}

fn bytes_text(n: u64) -> String {
    crate::limits::bytes(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Walks every section of `bytes`, nested modules and components included.
fn shape(bytes: &[u8]) -> wasmparser::Result<Shape> {
    use wasmparser::{ComponentAlias, ComponentOuterAliasKind, ComponentTypeRef, Instance, Operator, Payload};

    let mut shape = Shape::default();
    let mut stack: Vec<Frame> = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::Version { encoding, .. } => stack.push(match encoding {
                wasmparser::Encoding::Component => Frame::Component { modules: Vec::new() },
                wasmparser::Encoding::Module => Frame::Module(ModuleShape::default()),
            }),
            Payload::End(_) => {
                if let (Some(Frame::Module(module)), Some(Frame::Component { modules })) =
                    (stack.pop(), stack.last_mut())
                {
                    modules.push(module);
                }
            }
            Payload::MemorySection(reader) => {
                if let Some(Frame::Module(module)) = stack.last_mut() {
                    for memory in reader {
                        let memory = memory?;
                        module.memories += 1;
                        let page = 1u64 << memory.page_size_log2.unwrap_or(16).min(32);
                        module.initial_memory = module
                            .initial_memory
                            .saturating_add(memory.initial.saturating_mul(page));
                    }
                }
            }
            Payload::TableSection(reader) => {
                if let Some(Frame::Module(module)) = stack.last_mut() {
                    module.tables += reader.count();
                }
            }
            Payload::CodeSectionStart { count, .. } => shape.functions = shape.functions.saturating_add(count),
            Payload::CodeSectionEntry(body) => {
                let mut locals = 0u32;
                for declared in body.get_locals_reader()? {
                    locals = locals.saturating_add(declared?.0);
                }
                let mut blocks = 1u64;
                let mut operators = body.get_operators_reader()?;
                while !operators.eof() {
                    if let Operator::Block { .. }
                    | Operator::Loop { .. }
                    | Operator::If { .. }
                    | Operator::Else
                    | Operator::TryTable { .. } = operators.read()?
                    {
                        blocks += 1;
                    }
                }
                shape.most_locals = shape.most_locals.max(locals);
                shape.most_locals_by_blocks = shape.most_locals_by_blocks.max(u64::from(locals) * blocks);
            }
            // Core modules that are not defined here still take an index.
            Payload::ComponentAliasSection(reader) => {
                if let Some(Frame::Component { modules }) = stack.last_mut() {
                    for alias in reader {
                        if let ComponentAlias::Outer {
                            kind: ComponentOuterAliasKind::CoreModule,
                            ..
                        } = alias?
                        {
                            modules.push(ModuleShape::default());
                        }
                    }
                }
            }
            Payload::ComponentImportSection(reader) => {
                if let Some(Frame::Component { modules }) = stack.last_mut() {
                    for import in reader {
                        if let ComponentTypeRef::Module(_) = import?.ty {
                            modules.push(ModuleShape::default());
                        }
                    }
                }
            }
            Payload::InstanceSection(reader) => {
                if let Some(Frame::Component { modules }) = stack.last() {
                    for instance in reader {
                        if let Instance::Instantiate { module_index, .. } = instance? {
                            let module = modules.get(module_index as usize).copied().unwrap_or_default();
                            shape.core_instances = shape.core_instances.saturating_add(1);
                            shape.memories = shape.memories.saturating_add(module.memories);
                            shape.tables = shape.tables.saturating_add(module.tables);
                            shape.initial_memory = shape.initial_memory.saturating_add(module.initial_memory);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(shape)
}

/// Checks a compiled component's imports and exports; returns what it exports.
pub fn check_component(engine: &Engine, component: &Component) -> Result<Exports, PluginError> {
    let ty = component.component_type();
    // A plugin built against another version of the contract is named as such, before its
    // imports could be taken for forbidden ones or its exports for missing ones.
    let names: Vec<&str> = ty
        .imports(engine)
        .chain(ty.exports(engine))
        .map(|(name, _)| name)
        .collect();
    if let Some(version) = names.iter().find_map(|name| other_version(name)) {
        return Err(PluginError::OtherContract(version.to_owned()));
    }
    for (name, _) in ty.imports(engine) {
        let interface = name.split('@').next().unwrap_or(name);
        if !ALLOWED_IMPORTS.contains(&interface) {
            return Err(PluginError::ForbiddenImport(name.to_owned()));
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

    #[test]
    fn names_the_contract_version_of_another_build() {
        assert_eq!(other_version("postwire:plugin/transform@0.1.0"), Some("0.1.0"));
        assert_eq!(other_version("postwire:plugin/log@0.3.0-rc1"), Some("0.3.0-rc1"));
        assert_eq!(other_version("postwire:plugin/transform@0.2.0"), None);
        assert_eq!(other_version("wasi:io/streams@0.2.6"), None);
        assert_eq!(other_version("postwire:plugin/transform"), None);
    }
}
