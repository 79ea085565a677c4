//! Plugins written in TypeScript or JavaScript: npm projects over the JavaScript SDK
//! (`sdk/js`, `@postwire/plugin-sdk`), scaffolded by `postwire plugin new --lang ts|js` and
//! built by `postwire plugin build` with npm and the SDK's `postwire-plugin-build`.
//!
//! Where a project's component is: `"postwire": {"output": "…"}` in its package.json (the
//! scaffold writes it), else the `-o` (or `--out`) of its `build` script, else
//! `dist/<package name>.wasm`, where `postwire-plugin-build` puts it by default.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::Kind;

/// The language of a scaffolded npm project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// TypeScript: type-checked at build, with a tsconfig.json.
    TypeScript,
    /// JavaScript.
    JavaScript,
}

/// The oldest Node.js the SDK supports (its `engines`).
const NODE_MAJOR: u32 = 20;

/// Where to get Node.js and npm, in every message about them.
const GET_NODE: &str = "install Node.js 20 or later, which comes with npm, from https://nodejs.org";

/// The JavaScript SDK of the Postwire checkout this binary was built from.
pub fn default_sdk() -> PathBuf {
    super::default_sdk().join("js")
}

/// `postwire plugin new --lang ts|js`: an npm project at `dir` whose `npm test` passes as
/// generated and whose `npm run build` makes a component; `name` is checked by the caller.
pub fn scaffold(dir: &Path, name: &str, kind: Kind, script: Script, sdk: &Path) -> Result<(), String> {
    let sdk = sdk.canonicalize().map_err(|e| {
        format!(
            "the JavaScript SDK is not at {} ({e}); pass --sdk PATH/TO/postwire/sdk/js",
            sdk.display()
        )
    })?;
    let sdk_name = std::fs::read_to_string(sdk.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|package| package["name"].as_str().map(str::to_owned));
    if sdk_name.as_deref() != Some("@postwire/plugin-sdk") {
        return Err(format!(
            "--sdk {}: no package.json of @postwire/plugin-sdk there; pass --sdk PATH/TO/postwire/sdk/js",
            sdk.display()
        ));
    }
    let ext = match script {
        Script::TypeScript => "ts",
        Script::JavaScript => "js",
    };
    let (source, test) = templates(kind, script);
    let output = format!("dist/{name}.wasm");
    let test_script = match script {
        // Node cannot run TypeScript by itself: the SDK's runner bundles the tests first.
        Script::TypeScript => "postwire-plugin-test".to_owned(),
        Script::JavaScript => "node --test test/plugin.test.js".to_owned(),
    };
    let package = json!({
        // npm refuses capitals in package names.
        "name": name.to_ascii_lowercase(),
        "version": "0.1.0",
        "private": true,
        "type": "module",
        "scripts": {
            "build": format!("postwire-plugin-build src/plugin.{ext} -o {output}"),
            "test": test_script,
        },
        "postwire": { "output": output },
        "devDependencies": {
            "@postwire/plugin-sdk": format!("file:{}", sdk.display().to_string().replace('\\', "/")),
        },
    });
    let readme = format!(
        "# {name}\n\nA Postwire plugin ({what}) in {language}.\n\n```sh\nnpm install                      # the SDK, by path\nnpm test                         # its own tests, on this machine (node --test)\npostwire plugin build .          # {output}, checked with the upload rules\npostwire plugin run {output} --event event.json\n```\n\nNeeds Node.js 20 or later. See docs/plugins.md in Postwire for the whole lifecycle.\n",
        what = match kind {
            Kind::Transform => "transform",
            Kind::Classify => "classify",
            Kind::Both => "transform and classify",
        },
        language = match script {
            Script::TypeScript => "TypeScript",
            Script::JavaScript => "JavaScript",
        },
    );
    let mut files = vec![
        (
            dir.join("package.json"),
            serde_json::to_string_pretty(&package).expect("JSON serializes") + "\n",
        ),
        (dir.join(format!("src/plugin.{ext}")), source.to_owned()),
        (dir.join(format!("test/plugin.test.{ext}")), test.to_owned()),
        (dir.join("README.md"), readme),
        (dir.join(".gitignore"), "/node_modules\n/dist\n".to_owned()),
    ];
    if script == Script::TypeScript {
        files.push((dir.join("tsconfig.json"), TSCONFIG.to_owned()));
    }
    for folder in ["src", "test"] {
        std::fs::create_dir_all(dir.join(folder)).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    for (path, text) in files {
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

const TSCONFIG: &str = include_str!("../../templates/npm/tsconfig.json");

/// The plugin's source and its test.
fn templates(kind: Kind, script: Script) -> (&'static str, &'static str) {
    match (kind, script) {
        (Kind::Transform, Script::TypeScript) => (
            include_str!("../../templates/npm/transform.ts"),
            include_str!("../../templates/npm/transform.test.ts"),
        ),
        (Kind::Classify, Script::TypeScript) => (
            include_str!("../../templates/npm/classify.ts"),
            include_str!("../../templates/npm/classify.test.ts"),
        ),
        (Kind::Both, Script::TypeScript) => (
            include_str!("../../templates/npm/both.ts"),
            include_str!("../../templates/npm/both.test.ts"),
        ),
        (Kind::Transform, Script::JavaScript) => (
            include_str!("../../templates/npm/transform.js"),
            include_str!("../../templates/npm/transform.test.js"),
        ),
        (Kind::Classify, Script::JavaScript) => (
            include_str!("../../templates/npm/classify.js"),
            include_str!("../../templates/npm/classify.test.js"),
        ),
        (Kind::Both, Script::JavaScript) => (
            include_str!("../../templates/npm/both.js"),
            include_str!("../../templates/npm/both.test.js"),
        ),
    }
}

/// `postwire plugin build` of the npm project at `dir`: installs its packages when needed
/// (`npm ci` when it has a lock file and no node_modules, else `npm install`), runs
/// `npm run build` and returns where the component is. npm's own output goes to standard
/// error, so that standard output holds only the summary.
pub fn build(dir: &Path) -> Result<PathBuf, String> {
    let manifest = dir.join("package.json");
    let package: Value = serde_json::from_str(&super::read(&manifest)?)
        .map_err(|e| format!("{} is not JSON: {e}", manifest.display()))?;
    if package["scripts"]["build"].as_str().is_none() {
        return Err(format!(
            "{} has no \"build\" script; add \"scripts\": {{\"build\": \"postwire-plugin-build src/plugin.ts -o dist/plugin.wasm\"}}",
            manifest.display()
        ));
    }
    let output = output(&package).ok_or_else(|| {
        format!(
            "{}: cannot tell where the component is; add \"postwire\": {{\"output\": \"dist/plugin.wasm\"}}",
            manifest.display()
        )
    })?;
    tools(dir)?;
    let install: &[&str] = if dir.join("package-lock.json").exists() && !dir.join("node_modules").exists() {
        &["ci", "--no-audit", "--no-fund"]
    } else {
        &["install", "--no-audit", "--no-fund"]
    };
    npm(dir, install)?;
    npm(dir, &["run", "build"])?;
    let wasm = dir.join(&output);
    if !wasm.exists() {
        return Err(format!(
            "npm run build succeeded but {} is not there; make \"postwire\": {{\"output\": …}} in {} name the file the build writes",
            wasm.display(),
            manifest.display()
        ));
    }
    Ok(wasm)
}

/// Where the component is, by the rule of this module's documentation.
fn output(package: &Value) -> Option<String> {
    if let Some(output) = package["postwire"]["output"].as_str() {
        return Some(output.to_owned());
    }
    let script = package["scripts"]["build"].as_str()?;
    let words: Vec<&str> = script.split_whitespace().collect();
    if let Some(at) = words.iter().position(|w| *w == "-o" || *w == "--out") {
        return words.get(at + 1).map(|w| (*w).to_owned());
    }
    let name = package["name"].as_str()?;
    Some(format!("dist/{}.wasm", name.rsplit('/').next().unwrap_or(name)))
}

/// Node.js 20+ and npm, or a message naming what is missing and where to get it.
fn tools(dir: &Path) -> Result<(), String> {
    let needed = format!("{} is a TypeScript or JavaScript plugin", dir.display());
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .ok_or_else(|| format!("node is not on the PATH, and {needed}: {GET_NODE}"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < NODE_MAJOR) {
        return Err(format!("node is {version}, and {needed}: {GET_NODE}"));
    }
    let npm_found = Command::new(npm_program())
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !npm_found {
        return Err(format!("npm is not on the PATH, and {needed}: {GET_NODE}"));
    }
    Ok(())
}

fn npm_program() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

fn npm(dir: &Path, args: &[&str]) -> Result<(), String> {
    let status = Command::new(npm_program())
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`npm {}` failed in {} ({status}, above)",
            args.join(" "),
            dir.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_is_the_field_then_the_build_scripts_then_the_default() {
        let both = json!({"name": "a", "postwire": {"output": "out/x.wasm"},
            "scripts": {"build": "postwire-plugin-build -o dist/y.wasm"}});
        assert_eq!(output(&both).as_deref(), Some("out/x.wasm"));
        let script = json!({"name": "a", "scripts": {"build": "postwire-plugin-build src/p.ts --out dist/y.wasm"}});
        assert_eq!(output(&script).as_deref(), Some("dist/y.wasm"));
        let scoped = json!({"name": "@me/b", "scripts": {"build": "postwire-plugin-build"}});
        assert_eq!(output(&scoped).as_deref(), Some("dist/b.wasm"));
    }
}
