//! Builds the guest plugins of `plugins/guests` and the example plugins of `examples/plugins`
//! (two workspaces of their own) as WebAssembly components, each with a nested
//! `cargo build --release --target wasm32-wasip2`, and tells the crate where they are
//! (`POSTWIRE_TEST_PLUGINS_DIR`, `POSTWIRE_EXAMPLE_PLUGINS_DIR`).

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// Variables the outer build sets (or passes through) that must not reach the nested build:
/// they would compile the plugins with the outer build's flags, target, wrappers or jobserver.
const LEAKING: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
];
const LEAKING_PREFIXES: &[&str] = &["CARGO_CFG_", "CARGO_FEATURE_", "CARGO_PKG_", "CARGO_MANIFEST_"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo"));
    let repo = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("plugins/test-plugins is two levels below the repository root");
    let guests = repo.join("plugins").join("guests");
    let examples = repo.join("examples").join("plugins");
    let sdk = repo.join("sdk");

    // The guests read the WIT contract; the examples are built on the SDK, which reads it too.
    rerun_if_changed(&guests);
    rerun_if_changed(&examples);
    println!("cargo:rerun-if-changed={}", sdk.join("wit").display());
    println!("cargo:rerun-if-changed={}", sdk.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", sdk.join("src").display());
    ensure_target_installed();

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let outer = outer_target_dir(&out_dir);

    let guests_dir = outer.join("wasm-guests");
    build_workspace(&guests, &guests_dir, "plugins/guests");
    let plugins_dir = guests_dir.join(TARGET).join("release");
    println!("cargo:rustc-env=POSTWIRE_TEST_PLUGINS_DIR={}", plugins_dir.display());

    let examples_dir = outer.join("wasm-examples");
    build_workspace(&examples, &examples_dir, "examples/plugins");
    let plugins_dir = examples_dir.join(TARGET).join("release");
    println!("cargo:rustc-env=POSTWIRE_EXAMPLE_PLUGINS_DIR={}", plugins_dir.display());
}

/// Rebuild when a crate of the workspace at `root`, or the workspace itself, changes.
fn rerun_if_changed(root: &Path) {
    println!("cargo:rerun-if-changed={}", root.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    let mut crates: Vec<PathBuf> = fs::read_dir(root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    for crate_dir in crates {
        println!("cargo:rerun-if-changed={}", crate_dir.join("Cargo.toml").display());
        println!("cargo:rerun-if-changed={}", crate_dir.join("src").display());
    }
}

/// Makes sure the standard library for wasm32-wasip2 is installed, installing it with rustup if
/// not.
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{} --print sysroot`: {e}", rustc.to_string_lossy()));
    assert!(
        output.status.success(),
        "`{} --print sysroot` failed: {}",
        rustc.to_string_lossy(),
        String::from_utf8_lossy(&output.stderr)
    );
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if sysroot.join("lib").join("rustlib").join(TARGET).is_dir() {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with `rustup target add {TARGET}`");
    let installed = Command::new("rustup").args(["target", "add", TARGET]).status();
    match installed {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "the test plugins need the {TARGET} target, and `rustup target add {TARGET}` failed ({status}); \
             install it by hand and build again"
        ),
        Err(e) => panic!(
            "the test plugins need the {TARGET} target, which is not installed in {}, and rustup could not be \
             run ({e}); install the target for this toolchain and build again",
            sysroot.display()
        ),
    }
}

/// The outer build's target directory, found from `OUT_DIR`
/// (`<target>/[<triple>/]<profile>/build/<package>-<hash>/out`): the nearest ancestor cargo
/// marked with `CACHEDIR.TAG` (or its parent, if that is the `<triple>` level of a `--target`
/// build: cargo marks both), else four levels up (five with a `<triple>` level). So every
/// profile and target of the outer build shares one build of each workspace.
fn outer_target_dir(out_dir: &Path) -> PathBuf {
    let triple = env::var("TARGET").ok();
    let is_triple_level =
        |dir: &Path| triple.is_some() && dir.file_name().and_then(|n| n.to_str()) == triple.as_deref();
    let marked = |dir: &Path| dir.join("CACHEDIR.TAG").is_file();
    if let Some(dir) = out_dir.ancestors().skip(1).take(6).find(|dir| marked(dir)) {
        return match dir.parent() {
            Some(parent) if is_triple_level(dir) && marked(parent) => parent.to_path_buf(),
            _ => dir.to_path_buf(),
        };
    }
    let profile_parent = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or_else(|| panic!("unexpected OUT_DIR layout: {}", out_dir.display()));
    match profile_parent.parent() {
        Some(parent) if is_triple_level(profile_parent) => parent.to_path_buf(),
        _ => profile_parent.to_path_buf(),
    }
}

/// `cargo build --release --target wasm32-wasip2` in the workspace at `root` (`shown` as the
/// repository calls it), into `target_dir`.
fn build_workspace(root: &Path, target_dir: &Path, shown: &str) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if root.join("Cargo.lock").is_file() {
        command.arg("--locked");
    }
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if LEAKING.contains(&name) || LEAKING_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name);
        }
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    if !output.status.success() {
        panic!(
            "building the plugins of {shown} failed ({}): {command:?}\n\
             (if {shown}/Cargo.lock needs updating because a plugin or a dependency was added, run \
             `cargo update --workspace --manifest-path {shown}/Cargo.toml`)\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
