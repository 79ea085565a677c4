//! Every guest of `plugins/guests` was built, as a component (not a core module).

use std::fs;
use std::path::Path;

/// `\0asm`, then the component-model layer's version (a core module has `01 00 00 00`).
const COMPONENT_HEADER: [u8; 8] = [0x00, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];

#[test]
fn every_guest_is_built_as_a_component() {
    for name in postwire_test_plugins::GUESTS {
        let bytes = postwire_test_plugins::bytes(name);
        assert!(
            bytes.starts_with(&COMPONENT_HEADER),
            "{} is not a component: it starts with {:02x?}",
            postwire_test_plugins::path(name).display(),
            &bytes[..bytes.len().min(8)]
        );
    }
}

#[test]
fn the_list_of_guests_is_complete() {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests");
    let mut crates: Vec<String> = fs::read_dir(&guests)
        .expect("plugins/guests")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .map(|dir| dir.file_name().expect("a crate folder").to_string_lossy().into_owned())
        .collect();
    crates.sort();
    assert_eq!(
        crates,
        postwire_test_plugins::GUESTS,
        "GUESTS in plugins/test-plugins/src/lib.rs"
    );
}
