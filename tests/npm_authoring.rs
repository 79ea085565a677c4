//! A TypeScript or JavaScript plugin author's path, as docs/plugins.md tells it, with the
//! `postwire` binary, real npm and real components: `postwire plugin new --lang ts|js`, the
//! project's own `npm test`, `postwire plugin build`, then `postwire plugin run` and
//! `classify` on the component it built. And the mistakes an author can make, each refused
//! with a message naming the fix.
//!
//! The two builds need Node.js 20+ and npm, and packages from the npm registry: without node
//! and npm they say that they were skipped; under CI (`CI` set) they must run. Each builds a
//! new component (componentize-js never gives the same bytes twice) and compiles it once, in
//! minutes in a debug build; the run after the build finds it compiled in `--plugin-cache`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A debug build of postwire compiles a 12 MiB JavaScript component in minutes; a release
/// build, as a server runs, within the upload's 20 s.
const DEBUG_COMPILE_DEADLINE: &str = "30m";

fn postwire(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postwire"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the postwire binary runs")
}

fn ok(output: &Output) -> String {
    common::succeeded(output)
}

/// The error a failed command printed.
fn refused(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure; stdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether Node.js and npm are installed; under CI their absence fails the test.
fn node_and_npm() -> bool {
    common::node_and_npm("the TypeScript and JavaScript scaffold tests")
}

/// Held by every npm run and build of these tests, so that they take turns: each may install
/// the SDK's own packages the first time (the SDK takes a lock for that too), and they compile
/// large components.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs npm in `dir`, one npm or build at a time (see [`ONE_AT_A_TIME`]).
fn npm(dir: &Path, args: &[&str]) -> String {
    let _lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ok(&Command::new("npm")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("npm runs"))
}

/// `postwire plugin build` of `project`, one npm or build at a time (see [`ONE_AT_A_TIME`]).
fn build(work: &Path, project: &str, cache: &Path) -> String {
    let _lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ok(&postwire(
        &[
            "plugin",
            "build",
            project,
            "--compile-deadline",
            DEBUG_COMPILE_DEADLINE,
            "--plugin-cache",
            cache.to_str().unwrap(),
        ],
        work,
    ))
}

fn package(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap()
}

#[test]
fn a_typescript_transform_from_scaffold_to_a_local_run() {
    if !node_and_npm() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("compiled");
    let created = ok(&postwire(
        &["plugin", "new", "order-header", "--lang", "ts"],
        work.path(),
    ));
    assert!(created.contains("npm install; npm test"), "{created}");
    let project = work.path().join("order-header");
    for file in [
        "src/plugin.ts",
        "test/plugin.test.ts",
        "tsconfig.json",
        "README.md",
        ".gitignore",
    ] {
        assert!(project.join(file).is_file(), "{file} is scaffolded");
    }
    let manifest = package(&project);
    assert_eq!(manifest["postwire"]["output"], "dist/order-header.wasm");
    let sdk = repo().join("sdk/js").canonicalize().unwrap();
    assert_eq!(
        manifest["devDependencies"]["@postwire/plugin-sdk"],
        format!("file:{}", sdk.display())
    );

    // Its own test passes as generated, and checks what the plugin does.
    npm(&project, &["install", "--no-audit", "--no-fund"]);
    let tested = npm(&project, &["test"]);
    assert!(tested.contains("# pass 1") && tested.contains("# fail 0"), "{tested}");
    let source = project.join("src/plugin.ts");
    let original = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, original.replace("'X-Order-Id', order", "'X-Order', order")).unwrap();
    let broken = Command::new("npm").arg("test").current_dir(&project).output().unwrap();
    assert!(!broken.status.success(), "the scaffolded test notices a broken plugin");
    std::fs::write(&source, original).unwrap();

    // Built with npm, checked with the upload rules.
    let built = build(work.path(), "order-header", &cache);
    let wasm = project.join("dist/order-header.wasm");
    assert_eq!(
        built.lines().next(),
        Some("order-header/dist/order-header.wasm"),
        "{built}"
    );
    assert!(built.contains("exports  transform\n"), "{built}");
    let sha256 = postwire_plugins::Host::sha256(&std::fs::read(&wasm).unwrap());
    assert!(built.contains(&format!("sha256   {sha256}")), "{built}");

    // Run as the server would, on the sample event, with a plugin_config.
    let config = work.path().join("config.json");
    std::fs::write(&config, r#"{"tag":"spring"}"#).unwrap();
    let event = repo().join("examples/events/created.json");
    let run = ok(&postwire(
        &[
            "plugin",
            "run",
            "order-header/dist/order-header.wasm",
            "--event",
            event.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--plugin-cache",
            cache.to_str().unwrap(),
            "--json",
        ],
        work.path(),
    ));
    let run: Value = serde_json::from_str(&run).unwrap();
    let headers = run["transform"]["output"]["headers"].to_string();
    assert!(headers.contains(r#"["X-Order-Id","ORD-99812"]"#), "{run}");
    assert!(headers.contains(r#"["X-Tag","spring"]"#), "{run}");
    assert_eq!(
        run["transform"]["logs"][0]["message"], "transformed event evt_01JD7Y3M4W1Q9",
        "{run}"
    );
}

#[test]
fn a_javascript_classifier_from_scaffold_to_a_local_run() {
    if !node_and_npm() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("compiled");
    ok(&postwire(
        &["plugin", "new", "says_error", "--lang", "js", "--kind", "classify"],
        work.path(),
    ));
    let project = work.path().join("says_error");
    assert!(project.join("src/plugin.js").is_file());
    assert!(!project.join("tsconfig.json").exists());
    assert_eq!(package(&project)["scripts"]["test"], "node --test test/plugin.test.js");

    npm(&project, &["install", "--no-audit", "--no-fund"]);
    let tested = npm(&project, &["test"]);
    assert!(tested.contains("# pass 1") && tested.contains("# fail 0"), "{tested}");

    // Built from inside the project, as `postwire plugin build` with no path.
    let built = build(&project, ".", &cache);
    assert!(built.contains("exports  classify\n"), "{built}");

    let classify = |body: &str| -> Value {
        let out = ok(&postwire(
            &[
                "plugin",
                "classify",
                "dist/says_error.wasm",
                "--status",
                "200",
                "--body",
                body,
                "--plugin-cache",
                cache.to_str().unwrap(),
                "--json",
            ],
            &project,
        ));
        serde_json::from_str(&out).unwrap()
    };
    let fine = classify(r#"{"ok":true}"#);
    assert_eq!(fine["classify"]["output"]["verdict"], "success", "{fine}");
    let error = classify(r#"{"error":"busy"}"#);
    assert_eq!(error["classify"]["output"]["verdict"], "retry", "{error}");
    assert_eq!(error["classify"]["output"]["reason"], "status 200", "{error}");
    assert_eq!(
        error["classify"]["logs"][0]["message"], "status 200 -> retry: status 200",
        "{error}"
    );
}

#[test]
fn names_folders_and_sdks_that_cannot_be_used_are_refused() {
    let work = tempfile::tempdir().unwrap();
    for lang in ["ts", "js", "rust"] {
        let error = refused(&postwire(&["plugin", "new", "my plugin!", "--lang", lang], work.path()));
        assert!(
            error.contains("\"my plugin!\" is not a plugin name: use letters, digits, - and _"),
            "{lang}: {error}"
        );
    }
    std::fs::create_dir(work.path().join("taken")).unwrap();
    for lang in ["ts", "js", "rust"] {
        let error = refused(&postwire(&["plugin", "new", "taken", "--lang", lang], work.path()));
        assert!(
            error.contains("taken already exists; choose a new folder"),
            "{lang}: {error}"
        );
    }
    let not_sdk = work.path().join("taken");
    let error = refused(&postwire(
        &["plugin", "new", "p", "--lang", "ts", "--sdk", not_sdk.to_str().unwrap()],
        work.path(),
    ));
    assert!(
        error.contains("no package.json of @postwire/plugin-sdk there; pass --sdk PATH/TO/postwire/sdk/js"),
        "{error}"
    );
    assert!(!work.path().join("p").exists(), "nothing is written for a refused SDK");

    let error = refused(&postwire(&["plugin", "build", "taken"], work.path()));
    assert!(
        error.contains(
            "has neither a package.json (a TypeScript or JavaScript plugin) nor a Cargo.toml (a Rust plugin)"
        ),
        "{error}"
    );
}

#[test]
fn building_without_node_or_npm_says_what_is_missing_and_where_to_get_it() {
    let work = tempfile::tempdir().unwrap();
    ok(&postwire(&["plugin", "new", "no-node", "--lang", "ts"], work.path()));
    let empty = work.path().join("bin-without-node");
    std::fs::create_dir(&empty).unwrap();
    let without = |path: &Path| {
        Command::new(env!("CARGO_BIN_EXE_postwire"))
            .args(["plugin", "build", "no-node"])
            .current_dir(work.path())
            .env("PATH", path)
            .output()
            .unwrap()
    };
    let error = refused(&without(&empty));
    assert!(
        error.contains("node is not on the PATH, and no-node is a TypeScript or JavaScript plugin: install Node.js 20 or later, which comes with npm, from https://nodejs.org"),
        "{error}"
    );
    assert!(!work.path().join("no-node/node_modules").exists());

    // Node without npm: a folder holding only a link to this machine's node.
    #[cfg(unix)]
    if let Some(node) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("node"))
            .find(|node| node.is_file())
    }) {
        let only_node = work.path().join("bin-only-node");
        std::fs::create_dir(&only_node).unwrap();
        std::os::unix::fs::symlink(&node, only_node.join("node")).unwrap();
        let error = refused(&without(&only_node));
        assert!(
            error.contains("npm is not on the PATH, and no-node is a TypeScript or JavaScript plugin"),
            "{error}"
        );
    }
}
