//! The real `postwire` binary as a child process, for the tests that kill it or run several at
//! once, and the partners' servers those tests record postbacks with.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::TOKEN;

/// `serve --timeout` of every process: short, so that the lease derived from it is as short as
/// the engine allows.
pub const TIMEOUT: &str = "1s";

/// Longest wait for a process to print the address it listens on.
pub const START: Duration = Duration::from_secs(30);

/// The lease `serve --timeout` [`TIMEOUT`] gives its claims, by the engine's own rule.
pub fn lease() -> Duration {
    postwire::serve::ServeOptions {
        timeout: Some(TIMEOUT.into()),
        ..Default::default()
    }
    .resolve()
    .expect("the options resolve")
    .worker
    .lease
}

/// A running `postwire serve`, killed with SIGKILL when dropped, so that a failing test leaves
/// no process behind.
pub struct Process {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: PathBuf,
}

impl Process {
    /// Starts `postwire serve` with `args` besides its listening on 127.0.0.1 (at a port of the
    /// system's choosing), sending to 127.0.0.1, [`TIMEOUT`] and the operator [`TOKEN`]; its log
    /// goes to the end of the file `log`. Reads its address from its first line.
    ///
    /// No `POSTWIRE_*` variable of the test's environment reaches it but the log filter, so
    /// that only `args` configure it.
    pub fn start(log: &Path, args: &[&str]) -> Process {
        let name = log
            .file_stem()
            .map_or_else(|| "postwire".into(), |s| s.to_string_lossy());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("the log file {} opens: {e}", log.display()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_postwire"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--allow-destination", "127.0.0.1/32", "--timeout", TIMEOUT])
            .args(["--admin-token", TOKEN])
            .args(args)
            .env("POSTWIRE_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(file));
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("POSTWIRE_") && var != "POSTWIRE_LOG" {
                command.env_remove(var);
            }
        }
        let mut child = command.spawn().expect("the postwire binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut process = Process {
            child,
            base: String::new(),
            log: log.to_owned(),
        };
        // The rest of stdout is read to its end, so that the process never blocks writing it.
        let (lines, first) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = lines.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = first
            .recv_timeout(START)
            .unwrap_or_else(|_| panic!("{name} printed no first line within {START:?}\n{}", process.log_tail()));
        let addr = line
            .strip_prefix("postwire listening on http://")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name}: unexpected first line {line:?}\n{}", process.log_tail()));
        process.base = format!("http://{addr}");
        process
    }

    /// The end of the process's log file, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} (last lines) ---\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the process's status reads")
    }

    /// SIGKILL (`Child::kill` sends SIGKILL on Unix), and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a partners' server on 127.0.0.1 answering `POST route` with `hook`, whose state is a
/// new `R` that records what it was sent; returns it and `http://127.0.0.1:PORT`. It serves for
/// as long as the test's runtime runs.
pub async fn start_receiver<R, H, T>(route: &str, hook: H) -> (Arc<R>, String)
where
    R: Default + Send + Sync + 'static,
    H: axum::handler::Handler<T, Arc<R>>,
    T: 'static,
{
    let receiver = Arc::new(R::default());
    let app = axum::Router::new()
        .route(route, axum::routing::post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, format!("http://{addr}"))
}
