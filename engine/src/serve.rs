//! `postwire serve`: configuration (file, environment, flags) and one process running the API
//! and the worker until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use ipnet::IpNet;
use postwire_plugins::{Allocator, Host, Limits};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{self, AppState};
use crate::plugins::Plugins;
use crate::retry::{Schedule, parse_duration};
use crate::sealed::{SecretKey, is_sealed};
use crate::send::{Guard, SendConfig, Sender};
use crate::store::{Durability, PluginQuota, Store};
use crate::worker::{Worker, WorkerConfig};

/// Options of `postwire serve`. Each comes from a flag, else the environment, else the config
/// file, else its default.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// A TOML file with any of these options (keys as the flags, with underscores).
    #[arg(long, env = "POSTWIRE_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// What this process does: `api` serves the HTTP API and stores events for workers in
    /// other processes to send; `worker` sends postbacks, serving only health, readiness and
    /// metrics on `--listen`; `all` does both. `api` and `worker` need a database processes share
    /// (PostgreSQL) [default: all].
    #[arg(long, env = "POSTWIRE_ROLE", value_enum)]
    pub role: Option<Role>,
    /// Address the API listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "POSTWIRE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Database URL [default: sqlite://postwire.db].
    #[arg(long, env = "POSTWIRE_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// `process`: commits survive a killed process; `power`: they survive power loss too (an
    /// fsync per commit) [default: process].
    #[arg(long, env = "POSTWIRE_DURABILITY", value_enum)]
    pub durability: Option<Durability>,
    /// Networks postbacks may reach although they are internal (loopback, private, link-local
    /// ...), e.g. 127.0.0.1/32; repeat or separate with commas [default: none].
    #[arg(
        long = "allow-destination",
        env = "POSTWIRE_ALLOW_DESTINATION",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allow_destination: Vec<IpNet>,
    /// Delays before each attempt [default: 0s,5s,5m,30m,2h,5h,10h,14h,20h,24h].
    #[arg(long, env = "POSTWIRE_RETRY_SCHEDULE", value_name = "LIST")]
    pub retry_schedule: Option<String>,
    /// Postbacks in flight at once [default: 256].
    #[arg(long, env = "POSTWIRE_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Postbacks one partner may have in flight at once, so that a partner whose receiver
    /// stalls holds no more than this many of the `--concurrency` slots (default: a quarter of
    /// `--concurrency`, at least 1).
    #[arg(long, env = "POSTWIRE_PARTNER_CONCURRENCY", value_name = "N")]
    pub partner_concurrency: Option<usize>,
    /// Time allowed for one exchange with a receiver [default: 15s].
    #[arg(long, env = "POSTWIRE_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Time allowed to connect to a receiver [default: 5s].
    #[arg(long, env = "POSTWIRE_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Time an API client has to send a request's head (line and headers); an idle kept-alive
    /// connection is closed after it too [default: 10s].
    #[arg(long, env = "POSTWIRE_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,
    /// Time an API request has, from its head to its answer, body included; past it the
    /// answer is 408 [default: 30s].
    #[arg(long, env = "POSTWIRE_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Fuel (roughly, instructions) a plugin call may use [default: 50000000].
    #[arg(long, env = "POSTWIRE_PLUGIN_FUEL")]
    pub plugin_fuel: Option<u64>,
    /// Linear memory a plugin may grow to, in MiB [default: 16].
    #[arg(long, env = "POSTWIRE_PLUGIN_MEMORY_MIB")]
    pub plugin_memory_mib: Option<usize>,
    /// Wall-clock time a plugin call may take [default: 100ms].
    #[arg(long, env = "POSTWIRE_PLUGIN_DEADLINE", value_name = "DURATION")]
    pub plugin_deadline: Option<String>,
    /// Largest plugin binary accepted, in MiB [default: 16].
    #[arg(long, env = "POSTWIRE_PLUGIN_BINARY_MIB")]
    pub plugin_binary_mib: Option<usize>,
    /// Folder for compiled plugin artifacts, kept by sha256 so a restart does not compile
    /// again [default: the database file's name with `.plugins` appended, or none in memory].
    #[arg(long, env = "POSTWIRE_PLUGIN_CACHE", value_name = "DIR")]
    pub plugin_cache: Option<PathBuf>,
    /// Plugins one partner may keep; an upload past it is refused (409) (default: 20).
    #[arg(long, env = "POSTWIRE_PLUGINS_PER_PARTNER", value_name = "N")]
    pub plugins_per_partner: Option<u64>,
    /// MiB of plugin binaries one partner may keep, all its plugins together; an upload past it
    /// is refused (409) (default: 64).
    #[arg(long, env = "POSTWIRE_PLUGIN_MIB_PER_PARTNER", value_name = "MIB")]
    pub plugin_mib_per_partner: Option<u64>,
    /// How many nice steps below the store's writer thread the API and postbacks run (0 to 19),
    /// so that a write never waits for a CPU behind postbacks; 0 runs them alike [default: 5].
    #[arg(long, env = "POSTWIRE_RUNTIME_NICENESS", value_name = "STEPS")]
    pub runtime_niceness: Option<i32>,
    /// The operator token (at least 32 characters), sent as `Authorization: Bearer <token>`
    /// [default: one made on the first start, printed once and stored hashed].
    #[arg(long, env = "POSTWIRE_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// How long finished deliveries (delivered or failed), their attempts and events are kept
    /// after their last activity, e.g. 30d or 12h; `0` or `off` keeps everything. Deliveries
    /// still on their way are never removed (default: 30d).
    #[arg(long, env = "POSTWIRE_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// How often retention removes what has grown older than its window (default: 1m).
    #[arg(long, env = "POSTWIRE_PRUNE_INTERVAL", value_name = "DURATION")]
    pub prune_interval: Option<String>,
    /// The key (32 random bytes in base64) that encrypts partners' signing secrets at rest
    /// (default: the key file beside the database, `<database file>.key`, made on the first start).
    #[arg(long, env = "POSTWIRE_SECRET_KEY", value_name = "BASE64", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Test postbacks and plugin dry runs each partner may make per minute, together; past it
    /// the API answers 429 with Retry-After (default: 10).
    #[arg(long, env = "POSTWIRE_TRIES_PER_MINUTE", value_name = "N")]
    pub tries_per_minute: Option<u32>,
    /// Let `GET /metrics` answer without the operator token, for scrapers that cannot send one;
    /// keep the API's address off public networks then (default: the operator token is needed).
    #[arg(long, env = "POSTWIRE_METRICS_PUBLIC")]
    #[serde(default)]
    pub metrics_public: bool,
    /// How log lines are written to standard error: `text` for people, `json` (one object per
    /// line) for log shippers (default: text).
    #[arg(long, env = "POSTWIRE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// An OpenTelemetry collector's OTLP/HTTP address (e.g. http://127.0.0.1:4318): each
    /// delivery attempt is exported to it as a span (default: no export).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// What one `serve` process does. Processes of several roles share one PostgreSQL database:
/// API processes store events and wake the workers, which send them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The HTTP API only: accepted events are stored for the workers, none is sent here.
    Api,
    /// Postbacks only: the listen address serves health, readiness and metrics, no API.
    Worker,
    /// The API and the worker in one process.
    #[default]
    All,
}

impl Role {
    /// Whether this process serves the API's routes.
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }

    /// Whether this process sends postbacks.
    pub fn sends(self) -> bool {
        self != Role::Api
    }

    /// The role's name, as `--role` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::All => "all",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people to read.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`) and
    /// the spans the line was written in.
    Json,
}

/// Shortest operator token accepted from the configuration.
pub const MIN_ADMIN_TOKEN: usize = 32;

/// How many nice steps below the store's writer thread `serve` runs its async threads unless
/// told otherwise: enough that the writer gets about three quarters of a CPU it shares with one
/// of them (CFS weights 1024 against 335).
pub const DEFAULT_RUNTIME_NICENESS: i32 = 5;

/// Test postbacks and plugin dry runs a partner may make per minute unless told otherwise: each
/// one makes a request to the partner's receiver or runs its plugin, on the engine's time.
pub const DEFAULT_TRIES_PER_MINUTE: u32 = 10;

/// Time an API client has to send a request's head unless told otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Time an API request has, body and handler, unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long finished deliveries are kept unless told otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// How often retention runs unless told otherwise.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Rows retention looks at in one transaction: a few milliseconds of the write connection,
/// which accepts and recordings wait for.
pub const PRUNE_BATCH: usize = 500;

/// While postbacks wait to be sent, retention takes one step of [`PRUNE_BATCH`] rows at most
/// this often (see [`Pace`](crate::store::Pace)).
pub const PRUNE_BUSY_GAP: Duration = Duration::from_secs(1);

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What this process does.
    pub role: Role,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The database URL.
    pub database: String,
    /// Commit durability.
    pub durability: Durability,
    /// SSRF allow-list.
    pub allow: Vec<IpNet>,
    /// The worker.
    pub worker: WorkerConfig,
    /// The sender.
    pub send: SendConfig,
    /// Time a client has to send a request's head, and an idle connection stays open.
    pub header_timeout: Duration,
    /// Time a request has from its head to its answer.
    pub request_timeout: Duration,
    /// Plugin sandbox limits.
    pub plugin_limits: Limits,
    /// Where compiled plugins are kept.
    pub plugin_cache: Option<PathBuf>,
    /// How many plugins, and bytes of them, each partner may keep.
    pub plugin_quota: PluginQuota,
    /// How plugin instances get their memory: the pooling allocator by default. Tools that
    /// cannot reserve its address space up front (valgrind) run with the on-demand one.
    pub plugin_allocator: Allocator,
    /// Nice steps the async runtime's threads run below the store's writer (see [`runtime`]).
    pub runtime_niceness: i32,
    /// Test postbacks and plugin dry runs each partner may make per minute.
    pub tries_per_minute: u32,
    /// SHA-256 of the configured operator token (the token itself is not kept).
    pub admin_token_hash: Option<String>,
    /// The configured key that seals signing secrets, if any.
    pub secret_key: Option<SecretKey>,
    /// How long finished deliveries are kept after their last activity; `None` keeps them.
    pub retention: Option<Duration>,
    /// How often retention runs.
    pub prune_interval: Duration,
    /// Where the key is kept when none is configured: beside the database file (none in memory,
    /// where a fresh key lives as long as the database).
    pub key_file: Option<PathBuf>,
    /// Whether `GET /metrics` answers without a credential.
    pub metrics_public: bool,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Where attempt spans are exported (OTLP/HTTP), if anywhere.
    pub otlp_endpoint: Option<String>,
}

impl ServeOptions {
    /// Merges flags and environment over the config file over defaults.
    pub fn resolve(self) -> Result<Config, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<ServeOptions>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => ServeOptions::default(),
        };
        let pick = |flag: Option<String>, file: Option<String>| flag.or(file);
        let duration = |name: &str, value: Option<String>, default: Duration| -> Result<Duration, String> {
            value.map_or(Ok(default), |v| parse_duration(&v).map_err(|e| format!("{name}: {e}")))
        };
        let mut worker = WorkerConfig::default();
        if let Some(schedule) = pick(self.retry_schedule, file.retry_schedule) {
            worker.schedule = schedule
                .parse::<Schedule>()
                .map_err(|e| format!("retry_schedule: {e}"))?;
        }
        if let Some(concurrency) = self.concurrency.or(file.concurrency) {
            if concurrency == 0 {
                return Err("concurrency: 0 would send nothing; use at least 1".into());
            }
            worker.concurrency = concurrency;
        }
        if let Some(per_partner) = self.partner_concurrency.or(file.partner_concurrency) {
            if per_partner == 0 {
                return Err("partner_concurrency: 0 would send nothing; use at least 1".into());
            }
            worker.partner_concurrency = Some(per_partner);
        }
        let defaults = SendConfig::default();
        let send = SendConfig {
            timeout: duration("timeout", pick(self.timeout, file.timeout), defaults.timeout)?,
            connect_timeout: duration(
                "connect_timeout",
                pick(self.connect_timeout, file.connect_timeout),
                defaults.connect_timeout,
            )?,
            ..defaults
        };
        let header_timeout = duration(
            "header_timeout",
            pick(self.header_timeout, file.header_timeout),
            DEFAULT_HEADER_TIMEOUT,
        )?;
        let request_timeout = duration(
            "request_timeout",
            pick(self.request_timeout, file.request_timeout),
            DEFAULT_REQUEST_TIMEOUT,
        )?;
        if header_timeout.is_zero() || request_timeout.is_zero() {
            return Err("header_timeout and request_timeout must be above zero".into());
        }
        let defaults = Limits::default();
        let plugin_limits = Limits {
            fuel: self.plugin_fuel.or(file.plugin_fuel).unwrap_or(defaults.fuel),
            memory: self
                .plugin_memory_mib
                .or(file.plugin_memory_mib)
                .map_or(defaults.memory, |m| m << 20),
            deadline: duration(
                "plugin_deadline",
                pick(self.plugin_deadline, file.plugin_deadline),
                defaults.deadline,
            )?,
            binary: self
                .plugin_binary_mib
                .or(file.plugin_binary_mib)
                .map_or(defaults.binary, |m| m << 20),
            ..defaults
        };
        if plugin_limits.fuel == 0 || plugin_limits.memory == 0 || plugin_limits.binary == 0 {
            return Err("plugin limits must be above zero".into());
        }
        let plugin_quota = PluginQuota {
            plugins: self
                .plugins_per_partner
                .or(file.plugins_per_partner)
                .unwrap_or(PluginQuota::DEFAULT_PLUGINS),
            bytes: match self.plugin_mib_per_partner.or(file.plugin_mib_per_partner) {
                None => PluginQuota::DEFAULT_BYTES,
                Some(mib) => mib.checked_mul(1 << 20).ok_or_else(|| {
                    format!("plugin_mib_per_partner: {mib} MiB is more bytes than can be counted; give a size in MiB")
                })?,
            },
        };
        let runtime_niceness = self
            .runtime_niceness
            .or(file.runtime_niceness)
            .unwrap_or(DEFAULT_RUNTIME_NICENESS);
        if !(0..=19).contains(&runtime_niceness) {
            return Err(format!(
                "runtime_niceness: {runtime_niceness} is outside 0 to 19; use 0 to run the async threads at the \
                 writer's priority, or up to 19 for the lowest"
            ));
        }
        let tries_per_minute = self
            .tries_per_minute
            .or(file.tries_per_minute)
            .unwrap_or(DEFAULT_TRIES_PER_MINUTE);
        if tries_per_minute == 0 {
            return Err(format!(
                "tries_per_minute: 0 would refuse every test postback and plugin dry run; use at least 1 \
                 (default: {DEFAULT_TRIES_PER_MINUTE})"
            ));
        }
        let retention = match pick(self.retention, file.retention) {
            None => Some(DEFAULT_RETENTION),
            Some(text) if text.trim() == "off" => None,
            Some(text) => {
                let window = parse_duration(text.trim())
                    .map_err(|e| format!("retention: {e}, or write 0 or off to keep finished deliveries for ever"))?;
                (!window.is_zero()).then_some(window)
            }
        };
        let prune_interval = duration(
            "prune_interval",
            pick(self.prune_interval, file.prune_interval),
            DEFAULT_PRUNE_INTERVAL,
        )?;
        if prune_interval.is_zero() {
            return Err("prune_interval: 0s would prune without a pause; use at least 1s, such as 1m".into());
        }
        let admin_token = pick(self.admin_token, file.admin_token);
        if let Some(token) = &admin_token
            && token.trim().chars().count() < MIN_ADMIN_TOKEN
        {
            return Err(format!(
                "admin_token: too short; use at least {MIN_ADMIN_TOKEN} random characters, or set none and let \
                 serve make one"
            ));
        }
        let admin_token_hash = admin_token.map(|token| crate::store::rules::token_hash(token.trim()));
        let database = pick(self.database, file.database).unwrap_or_else(|| "sqlite://postwire.db".into());
        let role = self.role.or(file.role).unwrap_or_default();
        if role != Role::All && database.starts_with("sqlite:") {
            return Err(format!(
                "role: {} needs a database that processes share (postgres://…); an SQLite database is one \
                 file for one process, so run it with --role all",
                role.name()
            ));
        }
        let database_file = database
            .strip_prefix("sqlite://")
            .or_else(|| database.strip_prefix("sqlite:"))
            .map(|path| path.split('?').next().unwrap_or(path))
            .filter(|path| !path.is_empty() && !path.contains(":memory:"));
        let plugin_cache = self
            .plugin_cache
            .or(file.plugin_cache)
            .or_else(|| database_file.map(|path| PathBuf::from(format!("{path}.plugins"))));
        let key_file = database_file.map(|path| PathBuf::from(format!("{path}.key")));
        let secret_key = pick(self.secret_key, file.secret_key)
            .map(|text| SecretKey::from_base64(&text))
            .transpose()?;
        let shared = database.starts_with("postgres:") || database.starts_with("postgresql:");
        if shared && secret_key.is_none() {
            // Each process would make a key of its own, and none could open what another sealed.
            return Err(
                "secret_key: required with a PostgreSQL database, the same in every process, since \
                        there is no file beside the database to keep it in; make one with `openssl rand -base64 \
                        32` and give it to each process as --secret-key or POSTWIRE_SECRET_KEY"
                    .into(),
            );
        }
        let otlp_endpoint = pick(self.otlp_endpoint, file.otlp_endpoint).filter(|url| !url.trim().is_empty());
        if let Some(url) = &otlp_endpoint {
            let parsed = url::Url::parse(url).map_err(|e| {
                format!(
                    "otlp_endpoint: {url} is not a URL ({e}); give the collector's address, e.g. http://127.0.0.1:4318"
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "otlp_endpoint: {url} is not an http(s) URL; give the collector's OTLP/HTTP address, e.g. \
                     http://127.0.0.1:4318"
                ));
            }
        }
        // A claim must outlast the longest a worker can hold a delivery: its wait for a rate
        // slot, two plugin calls, the exchange, and the recorder's commit.
        worker.fit_to(send.timeout, plugin_limits.deadline);
        worker.shutdown_grace = send.timeout + Duration::from_secs(5);
        Ok(Config {
            role,
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid address")),
            database,
            durability: self.durability.or(file.durability).unwrap_or_default(),
            allow: if self.allow_destination.is_empty() {
                file.allow_destination
            } else {
                self.allow_destination
            },
            worker,
            send,
            header_timeout,
            request_timeout,
            plugin_limits,
            plugin_cache,
            plugin_quota,
            plugin_allocator: Allocator::Pooling,
            runtime_niceness,
            tries_per_minute,
            admin_token_hash,
            secret_key,
            key_file,
            retention,
            prune_interval,
            metrics_public: self.metrics_public || file.metrics_public,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            otlp_endpoint,
        })
    }
}

/// The multi-thread runtime `serve` runs on, its threads `niceness` nice steps below the thread
/// that builds it (on Linux; elsewhere at the same priority).
///
/// Every write of the SQLite store goes through one thread, the store's writer, which a client
/// waits on while its events are accepted. When the runtime keeps every core busy with
/// postbacks, the scheduler shares the cores evenly among threads, and the writer, one thread
/// more than there are cores, gets about half of the core it shares: an accept then took twice
/// its CPU time in wall time. With the runtime's threads a few nice steps lower, the writer runs
/// whenever it has work, and the runtime still has every core the writer leaves. Without
/// contention, nice changes nothing.
///
/// Threads inherit the priority of the thread that starts them, so the store must be opened
/// from the thread that calls `block_on` (as `postwire serve` does), not from a task on the
/// runtime. Raising one's own priority takes privileges; lowering it does not, which is why
/// the runtime is lowered rather than the writer raised.
///
/// It also turns transparent huge pages off for the process: see `without_huge_pages` for why.
pub fn runtime(niceness: i32) -> std::io::Result<tokio::runtime::Runtime> {
    without_huge_pages();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || crate::priority::lower(niceness))
        .build()
}

/// Turns transparent huge pages off for this process.
///
/// mimalloc asks for huge pages on the regions it maps, and hands memory it has stopped using
/// back to the system; the next allocation there then faults in a whole 2 MiB page, zeroed by
/// the kernel, for a few bytes. Postbacks allocate and free small buffers at a high rate, so
/// with a plugin on every postback (a few more kilobytes each) the kernel spent about 3.5 % of
/// all CPU zeroing such pages (`clear_page_erms` under `do_huge_pmd_anonymous_page` in `perf`;
/// docs/performance.md, "Calls in the postback's own task, and small pages").
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE sets a flag of the calling process and touches no memory.
        let failed = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0;
        if failed {
            tracing::debug!(error = %std::io::Error::last_os_error(), "transparent huge pages stay as the system sets them");
        }
    }
}

/// Where the operator token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorToken {
    /// The configuration names it.
    Configured,
    /// One made on an earlier start is stored (hashed).
    Stored,
    /// None was configured or stored: this one was just made and stored hashed. It is shown
    /// this once.
    Created(String),
    /// None was configured or stored, and this worker process makes none: an API process makes
    /// it on its first start. Until then `/metrics` here answers only with `--metrics-public`.
    NotMade,
}

/// The operator token of a store: `Configured` when the configuration has one, else the stored
/// one, else a new one, stored by its hash. A worker process makes none, so that processes
/// starting together on a new database show one token, the API's.
async fn operator_token(
    store: &Store,
    configured: bool,
    role: Role,
) -> Result<OperatorToken, crate::store::StoreError> {
    use crate::store::{KeyKind, now_ms};
    if configured {
        return Ok(OperatorToken::Configured);
    }
    let stored = store.keys(KeyKind::Operator, None).await?;
    if stored.iter().any(|key| key.revoked_at.is_none()) {
        return Ok(OperatorToken::Stored);
    }
    if !role.serves_api() {
        return Ok(OperatorToken::NotMade);
    }
    let key = store.create_key(KeyKind::Operator, None, None, now_ms()).await?;
    Ok(OperatorToken::Created(key.token))
}

/// The key that seals signing secrets: the configured one, else the key file's, else a new one
/// written to the key file (readable by its owner only), else, in memory, a new one.
fn secret_key(config: &Config) -> Result<SecretKey, String> {
    if let Some(key) = &config.secret_key {
        return Ok(key.clone());
    }
    let Some(path) = &config.key_file else {
        return Ok(SecretKey::generate().0);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => SecretKey::from_base64(&text).map_err(|e| format!("{e} (in the key file {})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, text) = SecretKey::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options.open(path).and_then(|mut file| {
                std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes())?;
                file.sync_all()
            });
            written.map_err(|e| {
                format!(
                    "secret_key: none configured, and cannot create the key file {}: {e}",
                    path.display()
                )
            })?;
            info!(key_file = %path.display(), "created the key that encrypts signing secrets");
            Ok(key)
        }
        Err(e) => Err(format!(
            "secret_key: none configured, and cannot read the key file {}: {e}",
            path.display()
        )),
    }
}

/// Checks that `key` opens every sealed signing secret, and seals the ones stored in plain text
/// (from before sealing), so that a wrong key stops the start instead of every postback.
async fn seal_stored_secrets(store: &Store, key: &SecretKey) -> Result<(), String> {
    let stored = store
        .partner_secrets()
        .await
        .map_err(|e| format!("cannot read the signing secrets: {e}"))?;
    store
        .drop_previous_secrets(crate::store::now_ms())
        .await
        .map_err(|e| format!("cannot drop expired signing secrets: {e}"))?;
    for (partner_id, secret) in stored {
        if is_sealed(&secret) {
            key.open(&secret).map_err(|_| {
                format!(
                    "secret_key: the signing secret of partner {partner_id} cannot be decrypted; configure the key \
                     it was encrypted with (--secret-key, POSTWIRE_SECRET_KEY, secret_key, or the key file beside \
                     the database)"
                )
            })?;
        } else {
            store
                .set_partner_secret(&partner_id, &key.seal(&secret))
                .await
                .map_err(|e| format!("cannot encrypt the signing secret of partner {partner_id}: {e}"))?;
        }
    }
    Ok(())
}

/// A running engine: the API and the worker.
pub struct Running {
    /// The address the API listens on.
    pub addr: SocketAddr,
    /// Where the operator token comes from; a new one is in it, to show once.
    pub operator_token: OperatorToken,
    /// The store, for callers that run the engine in-process.
    pub store: Store,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Asks the engine to stop and waits until it has: no new claims, postbacks in flight
    /// finished or released, attempts committed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the engine stops (after `shutdown` is cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Opens the store, binds the API and starts the worker, as far as the configured [`Role`]
/// has them; stops when `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, String> {
    let store = Store::open_with(&config.database, config.durability, config.runtime_niceness)
        .await
        .map_err(|e| format!("cannot open {}: {e}", config.database))?;
    let operator_token = operator_token(&store, config.admin_token_hash.is_some(), config.role)
        .await
        .map_err(|e| format!("cannot set up the operator token: {e}"))?;
    let secret_key = secret_key(&config)?;
    seal_stored_secrets(&store, &secret_key).await?;
    let sender = Sender::new(Guard::new(config.allow.clone()), config.send.clone());
    let host = Host::with_allocator(
        config.plugin_limits.clone(),
        config.plugin_cache.clone(),
        config.plugin_allocator,
    )
    .map_err(|e| format!("cannot start the plugin host: {e}"))?;
    // One set of metrics per engine, shared by the worker, the plugins and the API.
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let plugins = Arc::new(Plugins::new(host, store.clone()).with_metrics(metrics.clone()));
    let worker_config = WorkerConfig {
        secret_key: Some(secret_key.clone()),
        metrics,
        ..config.worker.clone()
    };
    let worker = Worker::new(store.clone(), sender.clone(), plugins.clone(), worker_config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let auth = Arc::new(api::Auth::new(config.admin_token_hash.clone()).with_public_metrics(config.metrics_public));
    // Keys revoked and partners disabled by the other processes sharing the store are refused
    // here at once.
    let follower = auth.follow(&store, shutdown.clone());
    let state = AppState {
        store: store.clone(),
        worker: worker.clone(),
        sender,
        plugins,
        auth,
        secret_key,
        tries: Arc::new(api::Tries::per_minute(config.tries_per_minute)),
        plugin_quota: config.plugin_quota,
    };
    let app = if config.role.serves_api() {
        api::router(state.clone()).merge(crate::console::router(state))
    } else {
        api::probes(state)
    };
    let task = {
        let shutdown = shutdown.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let pace = {
                let worker = worker.clone();
                crate::store::Pace::yielding(move || worker.busy(), PRUNE_BUSY_GAP)
            };
            // An API process leaves sending, and retention with it, to the workers: its own
            // worker only stores what it accepts (its memory queue stays closed).
            let sends = config.role.sends();
            let worker_task = sends.then(|| {
                tokio::spawn({
                    let shutdown = shutdown.clone();
                    async move { worker.run(shutdown).await }
                })
            });
            let pruner = config.retention.filter(|_| sends).map(|window| {
                tokio::spawn(prune(
                    store.clone(),
                    window,
                    config.prune_interval,
                    pace,
                    shutdown.clone(),
                ))
            });
            serve_api(listener, app, &config, &shutdown).await;
            if let Some(worker_task) = worker_task {
                let _ = worker_task.await;
            }
            if let Some(pruner) = pruner {
                let _ = pruner.await;
            }
            if let Some(follower) = follower {
                let _ = follower.await;
            }
            store.close().await;
            info!("stopped");
        })
    };
    Ok(Running {
        addr,
        operator_token,
        store,
        shutdown,
        task,
    })
}

/// Every `interval` until `shutdown` is cancelled, removes the finished deliveries whose last
/// activity is older than `window`, their attempts and their events (see [`Store::prune`]).
///
/// A pass goes in short transactions that let accepts go first, and steps aside while
/// postbacks wait to be sent (`pace`), so it never stalls delivery; a failed pass is logged and
/// the next one tries again.
async fn prune(
    store: Store,
    window: Duration,
    interval: Duration,
    pace: crate::store::Pace,
    shutdown: CancellationToken,
) {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let older_than = crate::store::now_ms().saturating_sub(window_ms);
        tokio::select! {
            // A step under way finishes on the store's thread; the pass stops after it.
            () = shutdown.cancelled() => return,
            pruned = store.prune(older_than, PRUNE_BATCH, &pace) => match pruned {
                Ok(pruned) if !pruned.is_empty() => info!(
                    deliveries = pruned.deliveries,
                    attempts = pruned.attempts,
                    events = pruned.events,
                    "retention removed finished deliveries"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention could not remove finished deliveries; trying again later"),
            },
        }
    }
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets every connection finish
/// the request it is answering and waits until all are closed.
///
/// A connection of its own rather than `axum::serve`, for the timeouts that keep slow clients
/// from holding connections: a client has `header_timeout` to send each request's head (hyper
/// starts that clock when it waits for a head, so an idle kept-alive connection is closed after
/// it too), and a request has `request_timeout` from its head to its answer, body included.
async fn serve_api(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    config: &Config,
    shutdown: &CancellationToken,
) {
    use axum::response::IntoResponse;
    use hyper_util::rt::{TokioIo, TokioTimer};

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
    let request_timeout = config.request_timeout;
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // A connection that failed before it was accepted concerns that client
                    // only; anything else (out of file descriptors) may pass, so wait a little
                    // rather than spin.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        tracing::warn!(error = %e, "cannot accept API connections");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        let router = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut router = router.clone();
            async move {
                let answer = tower_service::Service::call(&mut router, request);
                Ok::<_, std::convert::Infallible>(match tokio::time::timeout(request_timeout, answer).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => api::ApiError::request_timeout(request_timeout).into_response(),
                })
            }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "API connection ended");
                    }
                    return;
                }
                () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        info!("shutting down: finishing postbacks in flight");
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's runtime comes with transparent huge pages off for the process.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_runtime_turns_transparent_huge_pages_off() {
        let _runtime = runtime(0).unwrap();
        // SAFETY: PR_GET_THP_DISABLE reads a flag of the calling process.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) }, 1);
    }

    fn example() -> ServeOptions {
        ServeOptions {
            config: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/postwire.toml"
            ))),
            ..ServeOptions::default()
        }
    }

    #[test]
    fn the_example_config_gives_the_defaults() {
        let config = example().resolve().unwrap();
        let defaults = ServeOptions::default().resolve().unwrap();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.database, defaults.database);
        assert_eq!(config.worker.schedule, defaults.worker.schedule);
        assert_eq!(config.send.timeout, defaults.send.timeout);
        assert_eq!(config.plugin_limits, defaults.plugin_limits);
        assert_eq!(config.plugin_quota, defaults.plugin_quota);
        assert_eq!(
            defaults.plugin_quota,
            PluginQuota {
                plugins: 20,
                bytes: 64 << 20
            }
        );
        assert_eq!(config.allow, vec!["127.0.0.1/32".parse::<IpNet>().unwrap()]);
        assert_eq!(config.plugin_cache, Some(PathBuf::from("postwire.db.plugins")));
        assert_eq!(config.runtime_niceness, defaults.runtime_niceness);
        assert_eq!(config.header_timeout, DEFAULT_HEADER_TIMEOUT);
        assert_eq!(config.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(defaults.header_timeout, DEFAULT_HEADER_TIMEOUT);
        assert_eq!(defaults.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(config.retention, defaults.retention);
        assert_eq!(config.prune_interval, defaults.prune_interval);
        assert_eq!(config.metrics_public, defaults.metrics_public);
        assert!(!defaults.metrics_public);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(defaults.log_format, LogFormat::Text);
        assert_eq!(config.otlp_endpoint, None);
    }

    #[test]
    fn flags_win_over_the_file_and_bad_values_are_named() {
        let config = ServeOptions {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            timeout: Some("2s".into()),
            ..example()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.send.timeout, Duration::from_secs(2));
        let config = ServeOptions {
            header_timeout: Some("300ms".into()),
            request_timeout: Some("2s".into()),
            ..example()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.header_timeout, Duration::from_millis(300));
        assert_eq!(config.request_timeout, Duration::from_secs(2));
        let refused = |options: ServeOptions| options.resolve().unwrap_err();
        let error = refused(ServeOptions {
            retry_schedule: Some("5 minutes".into()),
            ..ServeOptions::default()
        });
        assert!(error.starts_with("retry_schedule:"), "{error}");
        let error = refused(ServeOptions {
            concurrency: Some(0),
            ..ServeOptions::default()
        });
        assert!(error.starts_with("concurrency:"), "{error}");
        let error = refused(ServeOptions {
            partner_concurrency: Some(0),
            ..ServeOptions::default()
        });
        assert!(error.starts_with("partner_concurrency:"), "{error}");
        let error = refused(ServeOptions {
            header_timeout: Some("soon".into()),
            ..ServeOptions::default()
        });
        assert!(error.starts_with("header_timeout:"), "{error}");
        let error = refused(ServeOptions {
            request_timeout: Some("0s".into()),
            ..ServeOptions::default()
        });
        assert!(error.contains("request_timeout"), "{error}");
        let error = refused(ServeOptions {
            runtime_niceness: Some(20),
            ..ServeOptions::default()
        });
        assert!(error.starts_with("runtime_niceness: 20 "), "{error}");
        let error = refused(ServeOptions {
            admin_token: Some("short".into()),
            ..ServeOptions::default()
        });
        assert!(error.starts_with("admin_token: too short"), "{error}");
        let error = refused(ServeOptions {
            database: Some("postgres://postwire@db.example/postwire".into()),
            ..ServeOptions::default()
        });
        assert!(
            error.starts_with("secret_key: required with a PostgreSQL database"),
            "{error}"
        );
        let error = refused(ServeOptions {
            otlp_endpoint: Some("collector:4318".into()),
            ..ServeOptions::default()
        });
        assert!(error.starts_with("otlp_endpoint: collector:4318 is not"), "{error}");
        let error = refused(ServeOptions {
            otlp_endpoint: Some("ftp://127.0.0.1:4318".into()),
            ..ServeOptions::default()
        });
        assert!(
            error.starts_with("otlp_endpoint: ftp://127.0.0.1:4318 is not an http(s) URL"),
            "{error}"
        );
    }

    /// The plugin quota comes from its two options, in plugins and MiB; a size too large to
    /// count in bytes is refused naming the option.
    #[test]
    fn the_plugin_quota_takes_a_count_and_mib() {
        let config = ServeOptions {
            plugins_per_partner: Some(3),
            plugin_mib_per_partner: Some(2),
            ..example()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            config.plugin_quota,
            PluginQuota {
                plugins: 3,
                bytes: 2 << 20
            }
        );
        let error = ServeOptions {
            plugin_mib_per_partner: Some(u64::MAX),
            ..ServeOptions::default()
        }
        .resolve()
        .unwrap_err();
        assert!(error.starts_with("plugin_mib_per_partner:"), "{error}");
    }

    /// Retention keeps 30 days unless told otherwise; `0` and `off` turn it off, and a value
    /// that is no duration is refused naming the option and the way to turn it off.
    #[test]
    fn retention_takes_a_window_or_off() {
        let resolved = |retention: Option<&str>, interval: Option<&str>| {
            ServeOptions {
                retention: retention.map(str::to_owned),
                prune_interval: interval.map(str::to_owned),
                ..ServeOptions::default()
            }
            .resolve()
        };
        let defaults = resolved(None, None).unwrap();
        assert_eq!(defaults.retention, Some(DEFAULT_RETENTION));
        assert_eq!(defaults.prune_interval, DEFAULT_PRUNE_INTERVAL);
        assert_eq!(DEFAULT_RETENTION, Duration::from_secs(30 * 86_400));
        let short = resolved(Some("2s"), Some("100ms")).unwrap();
        assert_eq!(short.retention, Some(Duration::from_secs(2)));
        assert_eq!(short.prune_interval, Duration::from_millis(100));
        assert_eq!(
            resolved(Some("12h"), None).unwrap().retention,
            Some(Duration::from_secs(43_200))
        );
        assert_eq!(resolved(Some("0"), None).unwrap().retention, None);
        assert_eq!(resolved(Some("off"), None).unwrap().retention, None);
        let error = resolved(Some("a month"), None).unwrap_err();
        assert!(error.starts_with("retention: \"a month\""), "{error}");
        assert!(error.contains("0 or off"), "{error}");
        let error = resolved(None, Some("0s")).unwrap_err();
        assert!(error.starts_with("prune_interval:"), "{error}");
        let error = resolved(None, Some("often")).unwrap_err();
        assert!(error.starts_with("prune_interval:"), "{error}");
    }

    /// The role is `all` unless told otherwise, from a flag over the environment over the file;
    /// `api` and `worker` are refused on SQLite, naming the role and the way out.
    #[test]
    fn a_role_other_than_all_needs_a_shared_database() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("postwire.toml");
        let key = SecretKey::generate().1;
        std::fs::write(
            &file,
            format!("role = \"worker\"\ndatabase = \"postgres://pw@db/postwire\"\nsecret_key = \"{key}\"\n"),
        )
        .unwrap();
        let resolved = |role: Option<Role>, config: Option<PathBuf>, database: Option<&str>| {
            ServeOptions {
                role,
                config,
                database: database.map(str::to_owned),
                ..ServeOptions::default()
            }
            .resolve()
        };
        assert_eq!(resolved(None, None, None).unwrap().role, Role::All);
        assert_eq!(example().resolve().unwrap().role, Role::All);
        assert_eq!(resolved(None, Some(file.clone()), None).unwrap().role, Role::Worker);
        assert_eq!(resolved(Some(Role::Api), Some(file), None).unwrap().role, Role::Api);
        for (role, name) in [(Role::Api, "api"), (Role::Worker, "worker")] {
            let error = resolved(Some(role), None, None).unwrap_err();
            assert!(error.starts_with(&format!("role: {name} needs a database")), "{error}");
            assert!(error.contains("--role all"), "{error}");
            let error = resolved(Some(role), None, Some("sqlite://other.db")).unwrap_err();
            assert!(error.starts_with("role:"), "{error}");
        }
        assert!(resolved(Some(Role::All), None, Some("sqlite://other.db")).is_ok());
        let error = resolved(Some(Role::Api), None, Some("postgres://pw@db/postwire")).unwrap_err();
        assert!(
            error.starts_with("secret_key: required with a PostgreSQL database") && error.contains("--secret-key"),
            "{error}"
        );
        assert!(Role::Api.serves_api() && !Role::Api.sends());
        assert!(!Role::Worker.serves_api() && Role::Worker.sends());
        assert!(Role::All.serves_api() && Role::All.sends());
    }

    /// The operator token is kept as its hash only, from a flag over the file.
    #[test]
    fn the_admin_token_is_kept_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("postwire.toml");
        std::fs::write(&file, "admin_token = \"pw_live_fromthefile0123456789abcdefghij\"\n").unwrap();
        let from_file = ServeOptions {
            config: Some(file.clone()),
            ..ServeOptions::default()
        }
        .resolve()
        .unwrap();
        let hash = crate::store::rules::token_hash("pw_live_fromthefile0123456789abcdefghij");
        assert_eq!(from_file.admin_token_hash.as_deref(), Some(hash.as_str()));
        assert!(!format!("{from_file:?}").contains("fromthefile"));
        let flag = ServeOptions {
            config: Some(file),
            admin_token: Some("pw_live_fromtheflag0123456789abcdefghij".into()),
            ..ServeOptions::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            flag.admin_token_hash,
            Some(crate::store::rules::token_hash(
                "pw_live_fromtheflag0123456789abcdefghij"
            ))
        );
        assert_eq!(ServeOptions::default().resolve().unwrap().admin_token_hash, None);
    }

    /// Without a configured token, the first start makes one and later starts find it.
    #[tokio::test]
    async fn the_first_start_makes_an_operator_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("pw.db").display());
        let store = Store::open(&url, Durability::Process).await.unwrap();
        let OperatorToken::Created(token) = operator_token(&store, false, Role::All).await.unwrap() else {
            panic!("a first start makes a token");
        };
        assert!(token.starts_with("pw_live_"));
        assert_eq!(
            operator_token(&store, false, Role::All).await.unwrap(),
            OperatorToken::Stored
        );
        assert_eq!(
            operator_token(&store, true, Role::All).await.unwrap(),
            OperatorToken::Configured
        );
        let other = Store::open(
            &format!("sqlite://{}", dir.path().join("other.db").display()),
            Durability::Process,
        )
        .await
        .unwrap();
        assert_eq!(
            operator_token(&other, false, Role::Worker).await.unwrap(),
            OperatorToken::NotMade,
            "a worker makes no token"
        );
        assert!(
            other
                .keys(crate::store::KeyKind::Operator, None)
                .await
                .unwrap()
                .is_empty()
        );
        other.close().await;
        let key = store.authenticate(&token).await.unwrap().unwrap();
        assert_eq!(key.kind, crate::store::KeyKind::Operator);
        store.close().await;
    }

    /// The runtime's threads, workers and blocking ones, run below the thread that built it,
    /// and a thread started from that thread (as the store's writer is) keeps its priority.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_runtime_runs_below_the_thread_that_builds_it() {
        use crate::priority::current as nice;
        // On a thread of its own: the test harness's threads are shared.
        std::thread::spawn(|| {
            let base = nice();
            let runtime = runtime(3).unwrap();
            let (worker, blocking) = runtime.block_on(async {
                let worker = tokio::spawn(async { nice() }).await.unwrap();
                let blocking = tokio::task::spawn_blocking(nice).await.unwrap();
                (worker, blocking)
            });
            assert_eq!(worker, (base + 3).min(19));
            assert_eq!(blocking, (base + 3).min(19));
            let writer = runtime.block_on(async { std::thread::spawn(nice).join().unwrap() });
            assert_eq!(
                writer, base,
                "a thread started from block_on keeps the builder's priority"
            );
            let alike = super::runtime(0).unwrap();
            assert_eq!(
                alike.block_on(async { tokio::spawn(async { nice() }).await.unwrap() }),
                base
            );
        })
        .join()
        .unwrap();
    }
}
