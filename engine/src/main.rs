//! The `postwire` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use opentelemetry_sdk::trace::SdkTracerProvider;
use postwire::catalogue::CATALOGUE;
use postwire::event::Event;
use postwire::serve::{LogFormat, ServeOptions};
use postwire::settings::NotificationSettings;
use tokio_util::sync::CancellationToken;

/// The engine allocates and frees many small buffers per postback (JSON, headers, SQL
/// arguments); mimalloc's per-thread free lists serve that pattern far better than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Postwire: templated, signed, retried postbacks.
#[derive(Parser)]
#[command(name = "postwire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the request a postback would be: method, URL, headers and body.
    Render {
        /// Notification settings (JSON).
        #[arg(long, value_name = "FILE")]
        settings: PathBuf,
        /// An event envelope (JSON).
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// Print {"method","url","headers","body"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the API and the delivery worker (SQLite by default), or one of them (`--role`).
    Serve(Box<ServeOptions>),
    /// See Postwire work: an engine, a receiver and two postbacks on a temporary database.
    Demo,
    /// Write, build, run and upload plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// List the placeholders templates may use.
    Placeholders {
        /// Print the catalogue as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin (a crate, or an npm project in TypeScript or JavaScript) over the SDK
    /// that builds and passes its own test as generated.
    New {
        /// The plugin's folder (its last part is the plugin's name).
        path: PathBuf,
        /// What the plugin does.
        #[arg(long, value_enum, default_value = "transform")]
        kind: postwire::runner::Kind,
        /// The language: a Rust crate, or an npm project in TypeScript or JavaScript.
        #[arg(long, value_enum, default_value = "rust")]
        lang: postwire::runner::Lang,
        /// The SDK [default: sdk/ (Rust) or sdk/js (TypeScript, JavaScript) of the Postwire
        /// checkout this binary was built from].
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Build the plugin at PATH, an npm project (package.json) or a crate for wasm32-wasip2
    /// (Cargo.toml), and check the component with the upload rules.
    Build {
        /// The plugin's folder.
        #[arg(default_value = ".")]
        path: PathBuf,
        #[command(flatten)]
        compile: CompileOptions,
    },
    /// Run a plugin's transform (and classify, given a response) locally, exactly as the server would.
    Run {
        /// The component (.wasm).
        wasm: PathBuf,
        #[command(flatten)]
        inputs: RunInputs,
        #[command(flatten)]
        compile: CompileOptions,
    },
    /// Run a plugin's classify on a receiver's answer, exactly as the server would.
    Classify {
        /// The component (.wasm).
        wasm: PathBuf,
        /// The answer's status.
        #[arg(long)]
        status: u16,
        /// The answer's body.
        #[arg(long, default_value = "")]
        body: String,
        /// An answer header, name:value; repeat for more.
        #[arg(long = "header", value_name = "NAME:VALUE")]
        headers: Vec<String>,
        #[command(flatten)]
        inputs: RunInputs,
        #[command(flatten)]
        compile: CompileOptions,
    },
    /// Upload a plugin to a server, and optionally attach it to the partner's settings.
    Upload {
        /// The component (.wasm).
        wasm: PathBuf,
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "POSTWIRE_SERVER")]
        server: String,
        /// The partner's key (or the operator token), sent as `Authorization: Bearer`.
        #[arg(long, env = "POSTWIRE_TOKEN", hide_env_values = true)]
        token: String,
        /// The partner id (ptn_...).
        #[arg(long)]
        partner: String,
        /// The plugin's name [default: the file's name].
        #[arg(long)]
        name: Option<String>,
        /// Name it in the partner's settings as their transform or classify plugin.
        #[arg(long, value_name = "transform|classify")]
        attach: Option<String>,
    },
    /// Show what a candidate version would change on the partner's last deliveries, beside the
    /// attached version, without sending anything.
    Diff {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "POSTWIRE_SERVER")]
        server: String,
        /// The partner's key (or the operator token), sent as `Authorization: Bearer`.
        #[arg(long, env = "POSTWIRE_TOKEN", hide_env_values = true)]
        token: String,
        /// The partner id (ptn_...).
        #[arg(long)]
        partner: String,
        /// The candidate: NAME@VERSION, a name (its latest version) or a plugin id.
        #[arg(long)]
        candidate: String,
        /// How many of the partner's latest deliveries to replay [default: 50].
        #[arg(long)]
        last: Option<u32>,
        /// Which of the settings' plugins the candidate stands in for [default: by its exports].
        #[arg(long, value_name = "transform|classify")]
        slot: Option<String>,
        /// Print the server's JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Attach the version before the attached one (or the one named) in the partner's settings.
    Rollback {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "POSTWIRE_SERVER")]
        server: String,
        /// The partner's key (or the operator token), sent as `Authorization: Bearer`.
        #[arg(long, env = "POSTWIRE_TOKEN", hide_env_values = true)]
        token: String,
        /// The partner id (ptn_...).
        #[arg(long)]
        partner: String,
        /// Which of the settings' plugins to roll back [default: the one attached].
        #[arg(long, value_name = "transform|classify")]
        slot: Option<String>,
        /// The version to attach: NAME@VERSION or a plugin id [default: the one before].
        #[arg(long)]
        to: Option<String>,
    },
}

/// What `plugin run` and `plugin classify` run a plugin on.
#[derive(clap::Args)]
struct RunInputs {
    /// An event envelope (JSON) [default: a sample created event].
    #[arg(long, value_name = "FILE")]
    event: Option<PathBuf>,
    /// Notification settings (JSON) to render the request with [default: examples/settings/json.json].
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// plugin_config (JSON) [default: the settings' plugin_config, or {}].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the result as JSON, as the server's dry-run endpoint does.
    #[arg(long)]
    json: bool,
}

/// How `plugin build`, `run` and `classify` compile a component.
#[derive(clap::Args)]
struct CompileOptions {
    /// Give up compiling after this long, as an upload does [default: the server's 20s; a debug
    /// build of postwire compiles many times slower than the release build a server runs].
    #[arg(long, value_name = "DURATION", env = "POSTWIRE_COMPILE_DEADLINE", value_parser = postwire::retry::parse_duration)]
    compile_deadline: Option<std::time::Duration>,
    /// Keep compiled components in DIR, by sha256, so that the same component is compiled once
    /// (as a server keeps them in its --plugin-cache).
    #[arg(long, value_name = "DIR", env = "POSTWIRE_PLUGIN_CACHE")]
    plugin_cache: Option<PathBuf>,
}

impl CompileOptions {
    fn limits(&self) -> postwire_plugins::Limits {
        let mut limits = postwire_plugins::Limits::default();
        if let Some(deadline) = self.compile_deadline {
            limits.compile_deadline = deadline;
        }
        limits
    }
}

impl RunInputs {
    fn into_input(
        self,
        wasm: PathBuf,
        response: Option<postwire_plugins::types::Response>,
    ) -> (postwire::runner::Input, bool) {
        let input = postwire::runner::Input {
            wasm,
            event: self.event,
            settings: self.settings,
            config: self.config,
            response,
        };
        (input, self.json)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render { settings, event, json } => render(&settings, &event, json),
        Command::Serve(options) => serve(*options),
        Command::Plugin(command) => plugin(command),
        Command::Demo => {
            init_logs_at("warn");
            serve_runtime(postwire::serve::DEFAULT_RUNTIME_NICENESS).block_on(postwire::demo::run())
        }
        Command::Placeholders { json } => {
            placeholders(json);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
}

/// The runtime of `serve` and the demo: see [`postwire::serve::runtime`].
fn serve_runtime(niceness: i32) -> tokio::runtime::Runtime {
    postwire::serve::runtime(niceness).expect("the async runtime starts")
}

fn init_logs_at(default: &str) {
    init_logs(default, LogFormat::Text, None);
}

/// Log lines on standard error, filtered by `POSTWIRE_LOG` (else `default`), in `format`; and
/// with `spans`, the attempt spans exported to OpenTelemetry, whatever the log filter says.
fn init_logs(default: &str, format: LogFormat, spans: Option<&SdkTracerProvider>) {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTWIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).boxed(),
        // One object per line, the innermost span's fields (an attempt's ids) in `span`.
        LogFormat::Json => lines.json().with_current_span(true).with_span_list(false).boxed(),
    };
    let export = spans.map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        let exported = tracing_subscriber::filter::Targets::new()
            .with_target("postwire", tracing::Level::INFO)
            .with_target("postwire::attempt", tracing::Level::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("postwire"))
            .with_filter(exported)
    });
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(export)
        .init();
}

/// Exports spans to the OpenTelemetry collector at `endpoint` (its OTLP/HTTP base address),
/// `POST {endpoint}/v1/traces` with protobuf bodies, in batches from a thread of its own.
fn otlp(endpoint: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(&url)
        .build()
        .map_err(|e| format!("otlp_endpoint: cannot export to {url}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("postwire")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

fn serve(options: ServeOptions) -> Result<(), String> {
    let config = options.resolve()?;
    // Built before the runtime: the exporter's blocking HTTP client must not start inside it.
    let spans = config.otlp_endpoint.as_deref().map(otlp).transpose()?;
    init_logs("info,sqlx=warn", config.log_format, spans.as_ref());
    let served = serve_runtime(config.runtime_niceness).block_on(async {
        let shutdown = CancellationToken::new();
        postwire::serve::cancel_on_signal(shutdown.clone());
        let running = postwire::serve::start(config.clone(), shutdown).await?;
        println!(
            "postwire listening on http://{} (database {})",
            running.addr, config.database
        );
        match &running.operator_token {
            postwire::serve::OperatorToken::Created(token) => println!(
                "operator token (shown once): {token}\n  send it as Authorization: Bearer <token>; only its hash is stored"
            ),
            postwire::serve::OperatorToken::Stored => {
                println!("operator token: the one printed on the first start (stored hashed)")
            }
            postwire::serve::OperatorToken::Configured => println!("operator token: as configured"),
            postwire::serve::OperatorToken::NotMade => {
                println!("operator token: none yet; an API process makes one on its first start")
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        running.wait().await;
        Ok(())
    });
    // Sends the spans still waiting in the batch.
    if let Some(provider) = spans
        && let Err(e) = provider.shutdown()
    {
        eprintln!("warning: the last spans were not exported: {e}");
    }
    served
}

fn plugin(command: PluginCommand) -> Result<(), String> {
    use postwire::runner;
    let (input, json, compile) = match command {
        PluginCommand::Build { path, compile } => {
            return runner::build(&path, compile.limits(), compile.plugin_cache).map(|_| ());
        }
        PluginCommand::New { path, kind, lang, sdk } => {
            runner::new_plugin(&path, kind, lang, sdk.as_deref())?;
            let test = match lang {
                runner::Lang::Rust => format!("`cd {}; cargo test` runs its test", path.display()),
                runner::Lang::Ts | runner::Lang::Js => {
                    format!("`cd {}; npm install; npm test` runs its test", path.display())
                }
            };
            println!(
                "created {}: {test}, `postwire plugin build {}` builds it",
                path.display(),
                path.display()
            );
            return Ok(());
        }
        PluginCommand::Upload {
            wasm,
            server,
            token,
            partner,
            name,
            attach,
        } => {
            let name = name.unwrap_or_else(|| {
                wasm.file_stem()
                    .map_or("plugin".into(), |s| s.to_string_lossy().into_owned())
            });
            let record = runtime().block_on(runner::upload(
                &server,
                &token,
                &partner,
                &wasm,
                &name,
                attach.as_deref(),
            ))?;
            println!("{}", serde_json::to_string_pretty(&record).expect("JSON serializes"));
            return Ok(());
        }
        PluginCommand::Diff {
            server,
            token,
            partner,
            candidate,
            last,
            slot,
            json,
        } => {
            let diff = runtime().block_on(runner::diff(
                &server,
                &token,
                &partner,
                &candidate,
                last,
                slot.as_deref(),
            ))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&diff).expect("JSON serializes"));
            } else {
                print!("{}", runner::diff_text(&diff));
            }
            return Ok(());
        }
        PluginCommand::Rollback {
            server,
            token,
            partner,
            slot,
            to,
        } => {
            let done = runtime().block_on(runner::rollback(
                &server,
                &token,
                &partner,
                slot.as_deref(),
                to.as_deref(),
            ))?;
            println!(
                "{}: {} -> {} (settings version {})",
                done["slot"].as_str().unwrap_or("?"),
                done["from"].as_str().unwrap_or("?"),
                done["to"].as_str().unwrap_or("?"),
                done["settings"]["version"]
            );
            return Ok(());
        }
        PluginCommand::Run { wasm, inputs, compile } => {
            let (input, json) = inputs.into_input(wasm, None);
            (input, json, compile)
        }
        PluginCommand::Classify {
            wasm,
            status,
            body,
            headers,
            inputs,
            compile,
        } => {
            let headers = headers
                .iter()
                .map(|h| runner::parse_header(h))
                .collect::<Result<Vec<_>, _>>()?;
            let response = postwire_plugins::types::Response {
                status,
                headers,
                body: body.into_bytes(),
                duration_ms: 0,
            };
            let (input, json) = inputs.into_input(wasm, Some(response));
            (input, json, compile)
        }
    };
    let limits = compile.limits();
    let (out, failed) = runtime().block_on(runner::run_cached(input, limits, compile.plugin_cache))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON serializes"));
    } else {
        runner::print(&out);
    }
    if failed {
        let error = ["transform", "classify"]
            .iter()
            .find_map(|step| out[*step]["error"].as_str().map(|e| format!("{step}: {e}")))
            .unwrap_or_default();
        return Err(format!("the plugin failed: {error}"));
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Prefixes an input error with the file it came from.
fn in_file(path: &Path) -> impl Fn(postwire::Error) -> String + '_ {
    move |error| match error {
        postwire::Error::Invalid(invalid) => format!("{} is invalid:\n{invalid}", path.display()),
        other => format!("{}: {other}", path.display()),
    }
}

fn render(settings_path: &Path, event_path: &Path, json: bool) -> Result<(), String> {
    let settings = NotificationSettings::from_json(&read(settings_path)?).map_err(in_file(settings_path))?;
    let event = Event::from_json(&read(event_path)?).map_err(in_file(event_path))?;
    if !settings.settings().events.contains(&event.event_type) {
        return Err(format!(
            "{} sends no postback for {} events; add it to the settings' events",
            settings_path.display(),
            event.event_type
        ));
    }
    let request = settings.render(&event);
    if json {
        let headers: serde_json::Map<String, serde_json::Value> = request
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone().into()))
            .collect();
        let out = serde_json::json!({
            "method": request.method.as_str(),
            "url": request.url,
            "headers": headers,
            "body": request.body,
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON values serialize"));
    } else {
        println!("{request}");
    }
    Ok(())
}

fn placeholders(json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(CATALOGUE).expect("the catalogue serializes")
        );
        return;
    }
    let width = CATALOGUE.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in CATALOGUE {
        println!(
            "{:width$}  {:9}  {}  (e.g. {})",
            p.name,
            p.ty.name(),
            p.description,
            p.example
        );
    }
}
