//! Every example plugin of `examples/plugins` was built as a component that exports exactly what
//! its kind says and imports only what the host allows.

use std::fs;
use std::path::Path;

/// `\0asm`, then the component-model layer's version (a core module has `01 00 00 00`).
const COMPONENT_HEADER: [u8; 8] = [0x00, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];

const TRANSFORM: &str = "postwire:plugin/transform@0.2.0";
const CLASSIFY: &str = "postwire:plugin/classify@0.2.0";

/// What each example exports.
const KINDS: &[(&str, &[&str])] = &[
    ("hmac-header", &[TRANSFORM]),
    ("json-status", &[CLASSIFY]),
    ("nested-json", &[TRANSFORM]),
    ("plain-ack", &[CLASSIFY]),
    ("soap-envelope", &[TRANSFORM]),
];

/// Interface prefixes a plugin may import (the host's list, by package): the contract's `log`
/// and `types`, and the WASI interfaces Rust's std links.
const ALLOWED_IMPORTS: &[&str] = &[
    "postwire:plugin/log@",
    "postwire:plugin/types@",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

#[test]
fn every_example_is_a_component_exporting_what_its_kind_says() {
    for &(name, kind) in KINDS {
        let bytes = postwire_test_plugins::example_bytes(name);
        let path = postwire_test_plugins::example_path(name);
        assert!(
            bytes.starts_with(&COMPONENT_HEADER),
            "{} is not a component: it starts with {:02x?}",
            path.display(),
            &bytes[..bytes.len().min(8)]
        );
        let (imports, mut exports) =
            top_level_names(&bytes).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        exports.sort();
        let mut expected: Vec<String> = kind.iter().map(|e| e.to_string()).collect();
        expected.sort();
        assert_eq!(exports, expected, "the exports of {name}");
        assert!(
            imports.iter().any(|i| i.starts_with("postwire:plugin/types@0.2.0")),
            "{name} imports {imports:?}"
        );
        for import in &imports {
            assert!(
                ALLOWED_IMPORTS.iter().any(|allowed| import.starts_with(allowed)),
                "{name} imports {import}, which the host refuses"
            );
        }
    }
}

#[test]
fn the_list_of_examples_is_complete() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins");
    let mut crates: Vec<String> = fs::read_dir(&examples)
        .expect("examples/plugins")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .map(|dir| dir.file_name().expect("a crate folder").to_string_lossy().into_owned())
        .collect();
    crates.sort();
    assert_eq!(
        crates,
        postwire_test_plugins::EXAMPLES,
        "EXAMPLES in plugins/test-plugins/src/lib.rs"
    );
    let kinds: Vec<&str> = KINDS.iter().map(|(name, _)| *name).collect();
    assert_eq!(kinds, postwire_test_plugins::EXAMPLES, "KINDS in this test");
}

#[test]
fn the_reader_sees_the_guests_exports() {
    let (_, exports) = top_level_names(&postwire_test_plugins::bytes("both")).unwrap();
    assert_eq!(exports.len(), 2, "{exports:?}");
    assert!(exports.iter().any(|e| e == TRANSFORM) && exports.iter().any(|e| e == CLASSIFY));
    let (imports, _) = top_level_names(&postwire_test_plugins::bytes("socket")).unwrap();
    assert!(imports.iter().any(|i| i.starts_with("wasi:sockets/")), "{imports:?}");
}

/// The names of a component's own imports and exports (not those of the components and modules
/// nested in it), read from its top-level import (10) and export (11) sections.
fn top_level_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let mut reader = Reader {
        bytes,
        at: COMPONENT_HEADER.len(),
    };
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    while reader.at < bytes.len() {
        let id = reader.byte()?;
        let size = reader.u32()? as usize;
        let end = reader
            .at
            .checked_add(size)
            .filter(|&end| end <= bytes.len())
            .ok_or("section past the end")?;
        let mut section = Reader {
            bytes: &bytes[..end],
            at: reader.at,
        };
        match id {
            10 => {
                for _ in 0..section.u32()? {
                    imports.push(section.name()?);
                    section.extern_desc()?;
                }
            }
            11 => {
                for _ in 0..section.u32()? {
                    exports.push(section.name()?);
                    section.sort()?;
                    section.u32()?;
                    if section.byte()? == 0x01 {
                        section.extern_desc()?;
                    }
                }
            }
            _ => {}
        }
        reader.at = end;
    }
    Ok((imports, exports))
}

/// Reads the component binary format, as much of it as names need.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self.bytes.get(self.at).ok_or("unexpected end")?;
        self.at += 1;
        Ok(byte)
    }

    /// An unsigned LEB128 `u32`.
    fn u32(&mut self) -> Result<u32, String> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.byte()?;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("LEB128 too long".into())
    }

    /// An import or export name: `0x00` (or the older `0x01`), then a string.
    fn name(&mut self) -> Result<String, String> {
        match self.byte()? {
            0x00 | 0x01 => {}
            other => return Err(format!("unsupported name encoding {other:#04x}")),
        }
        let len = self.u32()? as usize;
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or("name past the end")?;
        let name = std::str::from_utf8(&self.bytes[self.at..end]).map_err(|e| e.to_string())?;
        self.at = end;
        Ok(name.to_owned())
    }

    /// A sort: one byte, two for a core sort (`0x00` then the core sort).
    fn sort(&mut self) -> Result<u8, String> {
        let sort = self.byte()?;
        if sort == 0x00 {
            self.byte()?;
        }
        Ok(sort)
    }

    /// An `externdesc`: a sort and what it refers to.
    fn extern_desc(&mut self) -> Result<(), String> {
        match self.sort()? {
            // core module, func, component, instance: a type index
            0x00 | 0x01 | 0x04 | 0x05 => {
                self.u32()?;
            }
            // type: `eq` a type index, or a fresh resource
            0x03 => {
                if self.byte()? == 0x00 {
                    self.u32()?;
                }
            }
            other => return Err(format!("unsupported extern descriptor sort {other:#04x}")),
        }
        Ok(())
    }
}
