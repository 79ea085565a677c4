//! `postwire plugin ...`: the tools of plugin authors.
//!
//! - `new` scaffolds a plugin crate over the SDK, or an npm project over the JavaScript SDK
//!   ([`npm`]);
//! - `build` compiles it for wasm32-wasip2 (or builds the npm project) and validates the
//!   component with exactly the upload rules;
//! - `run` and `classify` run a plugin on this machine as the server would: the same engine
//!   configuration, limits and code path as the dry-run endpoint ([`crate::exchange::dry_run`]),
//!   so both print the same output, fuel and verdict for the same input, with secrets
//!   [redacted](crate::redact) alike;
//! - `upload` sends it to a server and can attach it to the partner's settings.

use std::path::{Path, PathBuf};
use std::process::Command;

use postwire_plugins::types::Response;
use postwire_plugins::{Host, Limits};
use serde_json::{Value, json};

use crate::event::Event;
use crate::exchange::{DryRun, dry_run};
use crate::plugins::Plugins;
use crate::request::Request;
use crate::settings::NotificationSettings;

pub mod npm;

/// Settings used when `--settings` is not given: the JSON sample of `examples/`.
const DEFAULT_SETTINGS: &str = include_str!("../../examples/settings/json.json");

/// What to run a plugin on.
pub struct Input {
    /// The component.
    pub wasm: PathBuf,
    /// An event envelope file; a sample event when absent.
    pub event: Option<PathBuf>,
    /// Notification settings to render the request with; the JSON sample when absent.
    pub settings: Option<PathBuf>,
    /// `plugin_config` as a JSON file; the settings' `plugin_config`, or `{}`, when absent.
    pub config: Option<PathBuf>,
    /// A receiver's answer to classify.
    pub response: Option<Response>,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Runs the plugin as the server would; returns the dry-run JSON and whether the plugin failed.
pub async fn run(input: Input, limits: Limits) -> Result<(Value, bool), String> {
    run_cached(input, limits, None).await
}

/// [`run`], keeping the compiled component in `cache` as the server keeps its artifacts, so
/// that running the same component again does not compile it again.
pub async fn run_cached(input: Input, limits: Limits, cache: Option<PathBuf>) -> Result<(Value, bool), String> {
    let wasm = std::fs::read(&input.wasm).map_err(|e| format!("cannot read {}: {e}", input.wasm.display()))?;
    let settings_text = match &input.settings {
        Some(path) => read(path)?,
        None => DEFAULT_SETTINGS.to_owned(),
    };
    let settings = NotificationSettings::from_json(&settings_text).map_err(|e| format!("the settings: {e}"))?;
    let event = match &input.event {
        Some(path) => Event::from_json(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Event::sample(crate::event::EventType::ActionInquiryCreated, "ptn_local"),
    };
    let event = std::sync::Arc::new(event);
    let config = match &input.config {
        Some(path) => {
            let text = read(path)?;
            serde_json::from_str::<Value>(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            text
        }
        None => crate::plugins::config_text(settings.settings().plugin_config.as_ref()),
    };
    let request: Request = settings.render(&event);
    let host = tokio::task::spawn_blocking(move || Host::new(limits, cache))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let plugins = Plugins::local(host);
    let plugin = plugins
        .compile(wasm)
        .await
        .map_err(|e| format!("{}: {e}", input.wasm.display()))?;
    let id = input
        .wasm
        .file_stem()
        .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
    plugins.remember(&id, plugin);
    let out = dry_run(
        &plugins,
        &event.partner_id,
        &id,
        DryRun {
            event: &event,
            request,
            response: input.response,
            config,
        },
    )
    .await?;
    let failed = ["transform", "classify"]
        .iter()
        .any(|step| out[*step].get("error").is_some());
    Ok((out, failed))
}

/// Prints a dry run for people.
pub fn print(out: &Value) {
    println!(
        "plugin {} (exports {})",
        out["plugin"].as_str().unwrap_or_default(),
        exports(out)
    );
    if let Some(transform) = out.get("transform") {
        println!("\nrequest before transform:");
        print_request(&transform["input"]);
        print_step("transform", transform);
        if let Some(output) = transform.get("output") {
            println!("\nrequest after transform:");
            print_request(output);
        }
    }
    if let Some(classify) = out.get("classify") {
        print_step("classify", classify);
        if let Some(verdict) = classify.get("output") {
            let reason = verdict["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
            let after = verdict["after_secs"]
                .as_u64()
                .map(|s| format!(" after {s} s"))
                .unwrap_or_default();
            println!(
                "verdict: {}{after}{reason}",
                verdict["verdict"].as_str().unwrap_or_default()
            );
        }
    }
}

fn exports(out: &Value) -> String {
    out["exports"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn print_step(step: &str, report: &Value) {
    let outcome = match report.get("error").and_then(Value::as_str) {
        Some(error) => format!("FAILED: {error}"),
        None => "ok".to_owned(),
    };
    println!(
        "\n{step}: {outcome}\n  fuel used    {}\n  peak memory  {}\n  time         {} µs",
        report["fuel_used"],
        memory(report["peak_memory"].as_u64().unwrap_or(0)),
        report["duration_us"]
    );
    let logs = report["logs"].as_array().cloned().unwrap_or_default();
    if logs.is_empty() {
        println!("  logs         (none)");
    } else {
        println!("  logs");
        for line in logs {
            println!(
                "    [{}] {}",
                line["level"].as_str().unwrap_or_default(),
                line["message"].as_str().unwrap_or_default()
            );
        }
    }
}

fn memory(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn print_request(request: &Value) {
    println!(
        "  {} {}",
        request["method"].as_str().unwrap_or_default(),
        request["url"].as_str().unwrap_or_default()
    );
    for header in request["headers"].as_array().into_iter().flatten() {
        println!(
            "  {}: {}",
            header[0].as_str().unwrap_or_default(),
            header[1].as_str().unwrap_or_default()
        );
    }
    let body = request["body"].as_str().unwrap_or_default();
    if !body.is_empty() {
        println!();
        for line in body.lines() {
            println!("  {line}");
        }
    }
}

/// Parses `--header name:value` flags.
pub fn parse_header(flag: &str) -> Result<(String, String), String> {
    let (name, value) = flag
        .split_once(':')
        .ok_or_else(|| format!("--header {flag:?}: write it as name:value"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// `postwire plugin build`: builds the plugin at `path`, an npm project (with a package.json,
/// see [`npm`]) or a crate (with a Cargo.toml) for wasm32-wasip2 (release), and validates the
/// component with the upload rules, keeping it compiled in `cache` when given. Returns the
/// component's path.
pub fn build(path: &Path, limits: Limits, cache: Option<PathBuf>) -> Result<PathBuf, String> {
    let wasm = if path.join("package.json").is_file() {
        npm::build(path)?
    } else if path.join("Cargo.toml").is_file() {
        build_crate(path)?
    } else if !path.is_dir() {
        return Err(format!("{} is not a folder; give the plugin's folder", path.display()));
    } else {
        return Err(format!(
            "{} has neither a package.json (a TypeScript or JavaScript plugin) nor a Cargo.toml (a Rust plugin); give the plugin's folder, or make one with `postwire plugin new`",
            path.display()
        ));
    };
    check(&wasm, limits, cache)?;
    Ok(wasm)
}

/// Validates the component at `wasm` with the upload rules and prints its size, sha256 and
/// exports.
fn check(wasm: &Path, limits: Limits, cache: Option<PathBuf>) -> Result<(), String> {
    let bytes = std::fs::read(wasm).map_err(|e| format!("cannot read {}: {e}", wasm.display()))?;
    let host = Host::new(limits, cache).map_err(|e| e.to_string())?;
    let plugin = host
        .load(&bytes)
        .map_err(|e| format!("{} would be refused at upload: {e}", wasm.display()))?;
    println!(
        "{}\n  size     {} bytes\n  sha256   {}\n  exports  {}",
        wasm.display(),
        bytes.len(),
        plugin.sha256(),
        plugin.exports().names().join(", ")
    );
    Ok(())
}

/// Compiles the crate at `path` for wasm32-wasip2 (release); returns the component's path.
fn build_crate(path: &Path) -> Result<PathBuf, String> {
    let manifest = path.join("Cargo.toml");
    let text = read(&manifest)?;
    let manifest_json: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let name = manifest_json
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| format!("{} has no [package] name", manifest.display()))?
        .replace('-', "_");
    ensure_wasm_target()?;
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    let target_dir = target_dir(&manifest)?;
    Ok(target_dir.join("wasm32-wasip2/release").join(format!("{name}.wasm")))
}

fn target_dir(manifest: &Path) -> Result<PathBuf, String> {
    let output = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(manifest)
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    let metadata: Value = serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata gave no target directory".to_owned())
}

/// Installs the wasm32-wasip2 target with rustup when it is missing.
pub fn ensure_wasm_target() -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot).join("lib/rustlib/wasm32-wasip2").exists() {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .map_err(|e| format!("the wasm32-wasip2 target is missing and rustup cannot be run to add it: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed".into())
    }
}

/// `postwire plugin upload`: sends the component to a server with `token` (the partner's key or
/// the operator token) as its credential; with `attach`, names it in the partner's settings as
/// its transform or classify plugin. Returns the plugin record.
pub async fn upload(
    server: &str,
    token: &str,
    partner: &str,
    wasm: &Path,
    name: &str,
    attach: Option<&str>,
) -> Result<Value, String> {
    let bytes = std::fs::read(wasm).map_err(|e| format!("cannot read {}: {e}", wasm.display()))?;
    let http = client(token)?;
    let base = server.trim_end_matches('/');
    let answer = http
        .post(format!("{base}/v1/partners/{partner}/plugins"))
        .query(&[("name", name)])
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("{base}: {e}"))?;
    let record = answer_json(answer).await?;
    let Some(kind) = attach else { return Ok(record) };
    let field = match kind {
        "transform" => "transform_plugin",
        "classify" => "classify_plugin",
        other => return Err(format!("--attach {other:?}: use transform or classify")),
    };
    let path = format!("{base}/v1/partners/{partner}/settings/action-inquiry");
    let current = answer_json(http.get(&path).send().await.map_err(|e| e.to_string())?).await?;
    let mut settings = current["settings"].clone();
    if settings
        .get("plugin_config")
        .is_some_and(|c| c.to_string().contains(crate::redact::REDACTED))
    {
        return Err("the settings' plugin_config holds secrets that the API shows redacted; attach the plugin with a PUT of the full settings instead".into());
    }
    settings[field] = json!(record["id"]);
    answer_json(
        http.put(&path)
            .json(&settings)
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await?;
    Ok(record)
}

/// An HTTP client that sends `token` as `Authorization: Bearer` on every request.
fn client(token: &str) -> Result<reqwest::Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut credential = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token is not a valid header value".to_owned())?;
    credential.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, credential);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| e.to_string())
}

/// `postwire plugin diff`: asks the server for the replay diff of `candidate` (`name@version`,
/// a name, or an id) on the partner's last `last` deliveries. Returns the server's JSON.
pub async fn diff(
    server: &str,
    token: &str,
    partner: &str,
    candidate: &str,
    last: Option<u32>,
    slot: Option<&str>,
) -> Result<Value, String> {
    let base = server.trim_end_matches('/');
    let mut body = json!({"candidate": candidate});
    if let Some(last) = last {
        body["last"] = json!(last);
    }
    if let Some(slot) = slot {
        body["slot"] = json!(slot);
    }
    let answer = client(token)?
        .post(format!("{base}/v1/partners/{partner}/plugins/diff"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{base}: {e}"))?;
    answer_json(answer).await
}

/// A replay diff as people read it: the counts, then each delivery that is not identical with
/// what differs (or why the candidate failed), then fuel and time for both versions.
pub fn diff_text(diff: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let attached = diff["attached"].as_str().unwrap_or("no plugin");
    let _ = writeln!(
        out,
        "{} against {attached} ({}) on the last {} deliveries: {} identical, {} changed, {} failed",
        diff["candidate"].as_str().unwrap_or("?"),
        diff["slot"].as_str().unwrap_or("?"),
        diff["deliveries"],
        diff["identical"],
        diff["changed"],
        diff["failed"],
    );
    let (mut fuel, mut micros) = ([0u64; 2], [0u64; 2]);
    for result in diff["results"].as_array().into_iter().flatten() {
        for (i, side) in ["attached", "candidate"].iter().enumerate() {
            fuel[i] += result[side]["fuel_used"].as_u64().unwrap_or(0);
            micros[i] += result[side]["duration_us"].as_u64().unwrap_or(0);
        }
        let outcome = result["outcome"].as_str().unwrap_or("?");
        if outcome == "identical" {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{outcome}: {} (event {}, {})",
            result["delivery_id"].as_str().unwrap_or("?"),
            result["event_id"].as_str().unwrap_or("?"),
            result["event_type"].as_str().unwrap_or("?"),
        );
        for side in ["attached", "candidate"] {
            if let Some(error) = result[side]["error"].as_str() {
                let _ = writeln!(out, "  {side} failed: {error}");
            }
            if let Some(verdict) = result[side].get("verdict") {
                let _ = writeln!(out, "  {side}: {verdict}");
            }
        }
        if let Some(reason) = result["reason"].as_str() {
            let _ = writeln!(out, "  {reason}");
        }
        let diff = &result["diff"];
        for key in ["method", "url"] {
            if let Some(change) = diff.get(key) {
                let _ = writeln!(out, "  {key}: {} -> {}", change["attached"], change["candidate"]);
            }
        }
        if let Some(headers) = diff.get("headers") {
            for (sign, key) in [("-", "removed"), ("+", "added")] {
                for pair in headers[key].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "  {sign} header {}: {}",
                        pair[0].as_str().unwrap_or(""),
                        pair[1].as_str().unwrap_or("")
                    );
                }
            }
        }
        if let Some(unified) = diff["body"]["unified"].as_str() {
            for line in unified.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let runs = diff["results"].as_array().map_or(0, Vec::len).max(1) as u64;
    let _ = writeln!(
        out,
        "\nper delivery: attached {} fuel, {} µs; candidate {} fuel, {} µs",
        fuel[0] / runs,
        micros[0] / runs,
        fuel[1] / runs,
        micros[1] / runs
    );
    out
}

/// `postwire plugin rollback`: attaches the version before the attached one (or `to`) in the
/// partner's settings. Returns the server's JSON.
pub async fn rollback(
    server: &str,
    token: &str,
    partner: &str,
    slot: Option<&str>,
    to: Option<&str>,
) -> Result<Value, String> {
    let base = server.trim_end_matches('/');
    let mut body = json!({});
    if let Some(slot) = slot {
        body["slot"] = json!(slot);
    }
    if let Some(to) = to {
        body["to"] = json!(to);
    }
    let answer = client(token)?
        .post(format!("{base}/v1/partners/{partner}/settings/action-inquiry/rollback"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{base}: {e}"))?;
    answer_json(answer).await
}

async fn answer_json(answer: reqwest::Response) -> Result<Value, String> {
    let status = answer.status();
    let text = answer.text().await.map_err(|e| e.to_string())?;
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(json)
    } else {
        Err(format!(
            "the server answered {status}: {}",
            json["detail"].as_str().map_or_else(|| json.to_string(), str::to_owned)
        ))
    }
}

/// What a scaffolded plugin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Transforms the request.
    Transform,
    /// Classifies the receiver's answer.
    Classify,
    /// Both.
    Both,
}

/// The language a scaffolded plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate over the Rust SDK (`sdk/`).
    Rust,
    /// An npm project in TypeScript over the JavaScript SDK (`sdk/js`).
    Ts,
    /// An npm project in JavaScript over the JavaScript SDK (`sdk/js`).
    Js,
}

/// The SDK of the Postwire checkout this binary was built from.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// `postwire plugin new`: a plugin in `lang` at `dir` that builds and passes its own test as
/// generated, over the SDK at `sdk` (by default the checkout's `sdk/`, or `sdk/js` for npm
/// projects).
pub fn new_plugin(dir: &Path, kind: Kind, lang: Lang, sdk: Option<&Path>) -> Result<(), String> {
    match lang {
        Lang::Rust => scaffold(dir, kind, sdk.unwrap_or(&default_sdk())),
        Lang::Ts | Lang::Js => {
            let name = plugin_name(dir)?;
            let script = match lang {
                Lang::Ts => npm::Script::TypeScript,
                _ => npm::Script::JavaScript,
            };
            npm::scaffold(dir, name, kind, script, sdk.unwrap_or(&npm::default_sdk()))
        }
    }
}

/// The plugin's name, the last part of `dir`: letters, digits, - and _, in a folder that does
/// not exist yet.
fn plugin_name(dir: &Path) -> Result<&str, String> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .ok_or_else(|| {
            format!(
                "{:?} is not a plugin name: use letters, digits, - and _",
                dir.display().to_string()
            )
        })?;
    if dir.exists() {
        return Err(format!("{} already exists; choose a new folder", dir.display()));
    }
    Ok(name)
}

/// `postwire plugin new --lang rust`: a plugin crate at `dir` that builds for wasm32-wasip2 and
/// passes its own test as generated.
pub fn scaffold(dir: &Path, kind: Kind, sdk: &Path) -> Result<(), String> {
    let name = plugin_name(dir)?;
    let sdk = sdk.canonicalize().map_err(|e| {
        format!(
            "the SDK is not at {} ({e}); pass --sdk PATH/TO/postwire/sdk",
            sdk.display()
        )
    })?;
    std::fs::create_dir_all(dir.join("src")).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sdk_path = sdk.display().to_string().replace('\\', "/");
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
postwire-sdk = {{ path = "{sdk_path}" }}

# Small, fast components: the sandbox counts every instruction and byte.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A plugin is a project of its own, not a member of an enclosing workspace.
[workspace]
"#
    );
    let source = match kind {
        Kind::Transform => TRANSFORM_TEMPLATE,
        Kind::Classify => CLASSIFY_TEMPLATE,
        Kind::Both => BOTH_TEMPLATE,
    };
    let readme = format!(
        "# {name}\n\nA Postwire plugin ({}).\n\n```sh\ncargo test                       # its own tests, on this machine\npostwire plugin build .          # target/wasm32-wasip2/release/{}.wasm\npostwire plugin run target/wasm32-wasip2/release/{}.wasm --event event.json\n```\n\nSee docs/plugins.md in Postwire for the whole lifecycle.\n",
        match kind {
            Kind::Transform => "transform",
            Kind::Classify => "classify",
            Kind::Both => "transform and classify",
        },
        name.replace('-', "_"),
        name.replace('-', "_"),
    );
    for (path, text) in [
        (dir.join("Cargo.toml"), manifest),
        (dir.join("src/lib.rs"), source.to_owned()),
        (dir.join("README.md"), readme),
        (dir.join(".gitignore"), "/target\n".to_owned()),
    ] {
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

const TRANSFORM_TEMPLATE: &str = r##"//! A Postwire transform plugin: gets the event and the request the template produced, returns
//! the request to send.

use postwire_sdk::{Config, Event, Request, Transform, info};

/// Adds the order id as a header and, when configured, a tag.
pub struct Plugin;

impl Transform for Plugin {
    fn transform(event: &Event, mut request: Request, config: &Config) -> Result<Request, String> {
        if let Some(order) = event.get("OrderId") {
            request.set_header("X-Order-Id", order);
        }
        if let Some(tag) = config.str("tag") {
            request.set_header("X-Tag", tag);
        }
        info!("transformed event {}", event.id());
        Ok(request)
    }
}

postwire_sdk::export_transform!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_order_id() {
        let event = Event::new("evt_1", "action_inquiry.created").with_field("OrderId", "ORD-1");
        let request = Request::new("POST", "https://partner.example/pb").with_body("{}");
        let out = Plugin::transform(&event, request, &Config::new(r#"{"tag":"spring"}"#)).unwrap();
        assert_eq!(out.header("X-Order-Id"), Some("ORD-1"));
        assert_eq!(out.header("X-Tag"), Some("spring"));
    }
}
"##;

const CLASSIFY_TEMPLATE: &str = r##"//! A Postwire classify plugin: reads the receiver's answer and decides what it means.

use postwire_sdk::{Classify, Config, Request, Response, Verdict, info};

/// Success on a 2xx whose body does not say "error"; retry otherwise.
pub struct Plugin;

impl Classify for Plugin {
    fn classify(_request: &Request, response: &Response, _config: &Config) -> Verdict {
        let verdict = if response.is_success() && !response.text().contains("error") {
            Verdict::success()
        } else {
            Verdict::retry(format!("status {}", response.status()))
        };
        info!("status {} -> {verdict:?}", response.status());
        verdict
    }
}

postwire_sdk::export_classify!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_answer() {
        let request = Request::new("POST", "https://partner.example/pb");
        let config = Config::new("{}");
        assert!(Plugin::classify(&request, &Response::new(200).with_body("ok"), &config).is_success());
        assert!(!Plugin::classify(&request, &Response::new(200).with_body("error"), &config).is_success());
        assert!(!Plugin::classify(&request, &Response::new(503), &config).is_success());
    }
}
"##;

const BOTH_TEMPLATE: &str = r##"//! A Postwire plugin that transforms the request and classifies the receiver's answer.

use postwire_sdk::{Classify, Config, Event, Request, Response, Transform, Verdict, info};

/// Adds the order id as a header; success on a 2xx whose body does not say "error".
pub struct Plugin;

impl Transform for Plugin {
    fn transform(event: &Event, mut request: Request, _config: &Config) -> Result<Request, String> {
        if let Some(order) = event.get("OrderId") {
            request.set_header("X-Order-Id", order);
        }
        info!("transformed event {}", event.id());
        Ok(request)
    }
}

impl Classify for Plugin {
    fn classify(_request: &Request, response: &Response, _config: &Config) -> Verdict {
        if response.is_success() && !response.text().contains("error") {
            Verdict::success()
        } else {
            Verdict::retry(format!("status {}", response.status()))
        }
    }
}

postwire_sdk::export_both!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_and_classifies() {
        let event = Event::new("evt_1", "action_inquiry.created").with_field("OrderId", "ORD-1");
        let request = Request::new("POST", "https://partner.example/pb");
        let out = Plugin::transform(&event, request, &Config::new("{}")).unwrap();
        assert_eq!(out.header("X-Order-Id"), Some("ORD-1"));
        assert!(Plugin::classify(&out, &Response::new(204), &Config::new("{}")).is_success());
    }
}
"##;
