//! Hostile components, crafted byte by byte: shapes a compiler would never emit, meant to
//! sidestep the sandbox's caps or to make compiling cost far more than the upload's size.
//!
//! [`with_memories`] extends a real plugin (so that it still exports `transform` and runs)
//! with core instances of its own; the compile bombs are bare components, refused before
//! anything would read their exports.

use wasm_encoder::{
    CodeSection, Component, Function, FunctionSection, InstanceSection, Instruction, MemorySection, MemoryType, Module,
    ModuleArg, ModuleSection, TypeSection, ValType,
};

/// A WebAssembly page.
pub const PAGE: u64 = 64 << 10;

/// `plugin` (a component's bytes) with `instances` more core instances, each of a module
/// defining one memory of `pages` pages: a plugin that spreads memory over many memories.
pub fn with_memories(plugin: &[u8], instances: u32, pages: u64) -> Vec<u8> {
    let mut module = Module::new();
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let index = core_modules(plugin);
    let mut added = Component::new();
    added.section(&ModuleSection(&module));
    let mut section = InstanceSection::new();
    for _ in 0..instances {
        section.instantiate(index, Vec::<(&str, ModuleArg)>::new());
    }
    added.section(&section);
    // A component is a header and sections in any order: the new sections go after the
    // plugin's, its module takes the next index, and nothing of the plugin's changes.
    let mut bytes = plugin.to_vec();
    bytes.extend_from_slice(&added.finish()[8..]);
    bytes
}

/// The core modules `component` defines at its top level (the next module's index).
pub fn core_modules(component: &[u8]) -> u32 {
    let mut depth = 0usize;
    let mut modules = 0;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload.expect("a valid component") {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ModuleSection { .. } if depth == 1 => modules += 1,
            _ => {}
        }
    }
    modules
}

/// A component of one core module of `count` empty functions: tiny per function, and
/// compiling each costs the same as a real one.
pub fn many_functions(count: u32) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..count {
        functions.function(0);
        let mut body = Function::new([]);
        body.instruction(&Instruction::End);
        code.function(&body);
    }
    module.section(&functions);
    module.section(&code);
    component_of(&module)
}

/// A component of one core module with one function declaring `locals` locals and `blocks`
/// nested blocks, each a join point that reads a local: compiling it needs memory growing with
/// locals times blocks.
pub fn many_locals(locals: u32, blocks: u32) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], []);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut body = Function::new([(locals, ValType::I32)]);
    for n in 0..blocks {
        body.instruction(&Instruction::Block(wasm_encoder::BlockType::Empty));
        body.instruction(&Instruction::LocalGet(0));
        body.instruction(&Instruction::BrIf(0));
        body.instruction(&Instruction::I32Const(n as i32));
        body.instruction(&Instruction::LocalSet(1 + n % locals.max(1)));
        body.instruction(&Instruction::End);
    }
    body.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&body);
    module.section(&code);
    component_of(&module)
}

fn component_of(module: &Module) -> Vec<u8> {
    let mut component = Component::new();
    component.section(&ModuleSection(module));
    component.finish()
}
