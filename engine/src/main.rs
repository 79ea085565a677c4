//! The `postwire` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use postwire::catalogue::CATALOGUE;
use postwire::event::Event;
use postwire::serve::ServeOptions;
use postwire::settings::NotificationSettings;
use tokio_util::sync::CancellationToken;

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
    /// Run the API and the delivery worker (SQLite by default).
    Serve(Box<ServeOptions>),
    /// See Postwire work: an engine, a receiver and two postbacks on a temporary database.
    Demo,
    /// List the placeholders templates may use.
    Placeholders {
        /// Print the catalogue as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render { settings, event, json } => render(&settings, &event, json),
        Command::Serve(options) => serve(*options),
        Command::Demo => {
            init_logs_at("warn");
            runtime().block_on(postwire::demo::run())
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

fn init_logs() {
    init_logs_at("info,sqlx=warn");
}

fn init_logs_at(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTWIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn serve(options: ServeOptions) -> Result<(), String> {
    let config = options.resolve()?;
    init_logs();
    runtime().block_on(async {
        let shutdown = CancellationToken::new();
        postwire::serve::cancel_on_signal(shutdown.clone());
        let running = postwire::serve::start(config.clone(), shutdown).await?;
        println!(
            "postwire listening on http://{} (database {})",
            running.addr, config.database
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        running.wait().await;
        Ok(())
    })
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
