//! The host: one engine per process, plugins loaded once, a fresh sandbox per call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker, Resource};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

use crate::bindings::exports::postwire::plugin::{classify, transform};
use crate::bindings::postwire::plugin::types as wit;
use crate::sandbox::{CallState, EventHandle, explain};
use crate::types::{EventSource, Request, Response, Run, Verdict};
use crate::{Exports, Limits, PluginError, validate};

/// How often the epoch advances: at each tick a call's deadline is checked, and a running call
/// gives its thread back.
const TICK: Duration = Duration::from_millis(2);

/// Fuel (about as many instructions, some tens of microseconds) a call runs before it gives its
/// thread back to the runtime's other tasks; a call of a few thousand never does.
const YIELD_FUEL: u64 = 100_000;

/// Plugin instances that may exist at once; a call beyond that waits for a slot.
const POOL_INSTANCES: u32 = 128;

/// What an artifact file starts with; the hex SHA-256 of the serialized component follows, then
/// a line break and the serialized component itself.
const ARTIFACT_HEADER: &[u8] = b"postwire-artifact sha256=";

/// Bytes of artifacts the cache folder keeps unless told otherwise ([`Host::with_cache_bytes`]):
/// hundreds of plugins' worth.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// The serialized component of an artifact file, if its hash is the one recorded in its
/// header; otherwise why not.
fn checked_artifact(file: &[u8]) -> Result<&[u8], String> {
    let rest = file
        .strip_prefix(ARTIFACT_HEADER)
        .ok_or("it does not start with the artifact header")?;
    if rest.len() < 65 || rest[64] != b'\n' {
        return Err("its header is cut short".into());
    }
    let (recorded, serialized) = (&rest[..64], &rest[65..]);
    let actual = Host::sha256(serialized);
    if actual.as_bytes() != recorded {
        return Err(format!(
            "its SHA-256 is {actual}, not the {} recorded when it was compiled",
            String::from_utf8_lossy(recorded)
        ));
    }
    Ok(serialized)
}

/// Where a loaded plugin's compiled code came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now: there was no artifact of it (or no cache folder).
    Compiled,
    /// Deserialized from its artifact, whose hash was checked first.
    Cached,
    /// Its artifact failed its check (why, in words) and was not loaded; the plugin was
    /// compiled again and the artifact rewritten.
    Recompiled(String),
}

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Slots reserved up front and reused, memories reset copy-on-write: microseconds a call.
    Pooling,
    /// Fresh mappings for every instance.
    OnDemand,
}

/// Artifact cache counters.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Plugins loaded from a precompiled artifact.
    pub hits: AtomicU64,
    /// Plugins compiled.
    pub compiles: AtomicU64,
    /// Artifacts that failed their check (or that wasmtime refused) and were not loaded.
    pub rejected: AtomicU64,
    /// Artifacts removed to keep the cache folder within its size.
    pub evicted: AtomicU64,
}

/// The plugin host.
pub struct Host {
    engine: Engine,
    linker: Linker<CallState>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    /// Most bytes of artifacts the cache folder keeps.
    cache_bytes: u64,
    stats: CacheStats,
    ticking: Arc<AtomicBool>,
    /// The pool's instances: every call holds one, so a burst waits instead of failing.
    slots: tokio::sync::Semaphore,
    compiles: Arc<Gate>,
}

/// A counting semaphore for compiles: a compile's thread holds its permit until it ends, even
/// when the upload that started it stopped waiting at the compile deadline.
struct Gate {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Gate {
    fn new(permits: usize) -> Arc<Gate> {
        Arc::new(Gate {
            free: std::sync::Mutex::new(permits),
            freed: std::sync::Condvar::new(),
        })
    }

    fn enter(self: &Arc<Self>) -> Permit {
        let mut free = self.free.lock().expect("never poisoned");
        while *free == 0 {
            free = self.freed.wait(free).expect("never poisoned");
        }
        *free -= 1;
        Permit { gate: self.clone() }
    }
}

struct Permit {
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        *self.gate.free.lock().expect("never poisoned") += 1;
        self.gate.freed.notify_one();
    }
}

/// A loaded plugin, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Loaded>,
}

struct Loaded {
    sha256: String,
    size: usize,
    exports: Exports,
    origin: Origin,
    pre: InstancePre<CallState>,
    transform: Option<transform::GuestIndices>,
    classify: Option<classify::GuestIndices>,
}

impl Plugin {
    /// The sha256 of the binary, hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The binary's size.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// What it exports.
    pub fn exports(&self) -> Exports {
        self.inner.exports
    }

    /// Where its compiled code came from when it was loaded.
    pub fn origin(&self) -> &Origin {
        &self.inner.origin
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

impl Host {
    /// A host with `limits`, keeping precompiled artifacts in `cache_dir` when given.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Host, PluginError> {
        Host::with_allocator(limits, cache_dir, Allocator::Pooling)
    }

    /// A host with a chosen instance allocator; [`Host::new`] uses the pooling one, which is what
    /// makes a call cheap. The other exists to measure the difference.
    pub fn with_allocator(
        limits: Limits,
        cache_dir: Option<PathBuf>,
        allocator: Allocator,
    ) -> Result<Host, PluginError> {
        let strategy = match allocator {
            Allocator::Pooling => {
                let mut pool = PoolingAllocationConfig::new();
                // Every call holds a slot (`slots`), and no component may have more than the
                // per-component maxima: so the pool holds enough core instances, memories and
                // tables for every slot at its maximum, and one partner's plugin cannot take
                // what another's call needs.
                pool.total_component_instances(POOL_INSTANCES)
                    .max_core_instances_per_component(limits.core_instances)
                    .max_memories_per_component(limits.memories)
                    .max_tables_per_component(limits.tables)
                    .total_core_instances(POOL_INSTANCES * limits.core_instances)
                    .total_memories(POOL_INSTANCES * limits.memories)
                    .total_tables(POOL_INSTANCES * limits.tables)
                    .total_stacks(POOL_INSTANCES)
                    .max_memory_size(limits.memory)
                    // Reset a slot by rewriting only the pages the last call touched (found with
                    // Linux's PAGEMAP_SCAN) instead of unmapping them: the next call then takes
                    // no page faults and no TLB shootdowns. Where the ioctl is missing, memory
                    // is decommitted as usual.
                    .pagemap_scan(Enabled::Auto)
                    // What a slot keeps resident after a call, so that all the slots together
                    // keep at most what every call slot at its memory cap would.
                    .linear_memory_keep_resident(limits.memory / limits.memories.max(1) as usize)
                    .table_keep_resident(1 << 20)
                    .decommit_batch_size(64);
                InstanceAllocationStrategy::Pooling(pool)
            }
            Allocator::OnDemand => InstanceAllocationStrategy::OnDemand,
        };
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(strategy);
        let engine = Engine::new(&config).map_err(|e| PluginError::Host(format!("cannot start the engine: {e:#}")))?;
        let mut linker = Linker::<CallState>::new(&engine);
        crate::sandbox::link(&mut linker).map_err(|e| PluginError::Host(format!("cannot link WASI: {e:#}")))?;
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| PluginError::Host(format!("cannot create the artifact cache {}: {e}", dir.display())))?;
        }
        let ticking = Arc::new(AtomicBool::new(true));
        {
            let engine = engine.clone();
            let ticking = ticking.clone();
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while ticking.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PluginError::Host(e.to_string()))?;
        }
        Ok(Host {
            engine,
            linker,
            cache_dir,
            cache_bytes: DEFAULT_CACHE_BYTES,
            stats: CacheStats::default(),
            ticking,
            slots: tokio::sync::Semaphore::new(POOL_INSTANCES as usize),
            compiles: Gate::new(limits.compiles.max(1)),
            limits,
        })
    }

    /// Keeps at most `bytes` of artifacts in the cache folder (default: [`DEFAULT_CACHE_BYTES`]),
    /// removing the least recently used ones when a new one is written.
    pub fn with_cache_bytes(mut self, bytes: u64) -> Host {
        self.cache_bytes = bytes;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Artifact cache counters.
    pub fn cache_stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The hex sha256 of `bytes`, the plugin's content address.
    pub fn sha256(bytes: &[u8]) -> String {
        Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Validates, compiles (or loads the precompiled artifact of) and links a plugin, then
    /// instantiates it once under a call's limits: a component that cannot be instantiated
    /// within them never could, and is refused now rather than on every postback.
    pub fn load(&self, bytes: &[u8]) -> Result<Plugin, PluginError> {
        validate::check_binary(bytes, self.limits.binary)?;
        validate::check_shape(bytes, &self.limits)?;
        let sha256 = Host::sha256(bytes);
        let (component, origin) = self.component(bytes, &sha256)?;
        let exports = validate::check_component(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let transform = if exports.transform {
            Some(transform::GuestIndices::new(&pre).map_err(|e| PluginError::BadExport(format!("transform: {e:#}")))?)
        } else {
            None
        };
        let classify = if exports.classify {
            Some(classify::GuestIndices::new(&pre).map_err(|e| PluginError::BadExport(format!("classify: {e:#}")))?)
        } else {
            None
        };
        let plugin = Plugin {
            inner: Arc::new(Loaded {
                sha256,
                size: bytes.len(),
                exports,
                origin,
                pre,
                transform,
                classify,
            }),
        };
        match block_on(self.call(0, &plugin, async |_, _| Ok(()))).result {
            Ok(()) => Ok(plugin),
            Err(PluginError::Instantiate(reason)) => Err(PluginError::NeverFits(reason)),
            Err(PluginError::OutOfMemory { limit }) => Err(PluginError::NeverFits(format!(
                "its memories need more than the {} a call may have as soon as it starts",
                crate::limits::bytes(limit)
            ))),
            Err(error) => Err(error),
        }
    }

    /// The compiled component: from the artifact cache when this binary was compiled before
    /// by a compatible engine and its artifact passes its check, else compiled now and cached.
    fn component(&self, bytes: &[u8], sha256: &str) -> Result<(Component, Origin), PluginError> {
        let artifact = self.cache_dir.as_ref().map(|dir| dir.join(format!("{sha256}.cwasm")));
        let mut rejected = None;
        if let Some(path) = &artifact {
            match self.cached(path) {
                Ok(Some(component)) => {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, Origin::Cached));
                }
                Ok(None) => {}
                Err(reason) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    rejected = Some(reason);
                }
            }
        }
        let component = self.compile(bytes)?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = &artifact {
            let serialized = component.serialize().map_err(|e| PluginError::Host(e.to_string()))?;
            let mut file = Vec::with_capacity(ARTIFACT_HEADER.len() + 65 + serialized.len());
            file.extend_from_slice(ARTIFACT_HEADER);
            file.extend_from_slice(Host::sha256(&serialized).as_bytes());
            file.push(b'\n');
            file.extend_from_slice(&serialized);
            drop(serialized);
            let temporary = path.with_extension(format!("tmp{}", std::process::id()));
            // The modification time is set, finely, as the artifact's last use (see `evict`).
            std::fs::write(&temporary, &file)
                .and_then(|()| {
                    std::fs::File::options()
                        .write(true)
                        .open(&temporary)?
                        .set_modified(std::time::SystemTime::now())
                })
                .and_then(|()| std::fs::rename(&temporary, path))
                .map_err(|e| PluginError::Host(format!("cannot write the artifact {}: {e}", path.display())))?;
            self.evict(path);
        }
        Ok((component, rejected.map_or(Origin::Compiled, Origin::Recompiled)))
    }

    /// The artifact at `path` if there is one and it passes its check: `Ok(None)` when there is
    /// none, `Err(why)` when there is one that must not be loaded.
    ///
    /// The file is read whole and its bytes hashed before wasmtime sees them: deserializing
    /// trusts the bytes as machine code, so a flipped bit or a truncated write must never reach
    /// it. Deserializing from the bytes read (not from the file) means what was checked is what
    /// is loaded, whatever happens to the file meanwhile.
    fn cached(&self, path: &Path) -> Result<Option<Component>, String> {
        let file = match std::fs::read(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read it: {e}")),
        };
        let serialized = checked_artifact(&file)?;
        // SAFETY: these bytes hash to the SHA-256 recorded when `component` serialized them, so
        // they are what this host's engine wrote; wasmtime itself refuses artifacts from an
        // incompatible engine or version, in which case the plugin is compiled again.
        let component = unsafe { Component::deserialize(&self.engine, serialized) }
            .map_err(|e| format!("wasmtime refused it: {e}"))?;
        // The modification time is the artifact's last use, for the eviction of unused ones.
        let _ = std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(component))
    }

    /// Removes the least recently used artifacts (by modification time) until the cache holds
    /// at most [`Host::with_cache_bytes`] bytes; `keep`, just written, stays. Another process
    /// sharing the folder may remove what this one uses: it is read whole before it is loaded,
    /// so at worst it is compiled again.
    fn evict(&self, keep: &Path) {
        let Some(dir) = &self.cache_dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut artifacts: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
            .filter_map(|entry| {
                let meta = entry.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), entry.path()))
            })
            .collect();
        let mut total: u64 = artifacts.iter().map(|(_, len, _)| len).sum();
        if total <= self.cache_bytes {
            return;
        }
        artifacts.sort();
        for (_, len, path) in artifacts {
            if total <= self.cache_bytes {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Compiles on a thread of its own, a few at a time, and gives up waiting at the compile
    /// deadline. Wasmtime cannot stop a compile midway: one past its deadline runs to its end
    /// and keeps its permit until then, so slow compiles never pile up beyond `compiles`; what
    /// one may cost is bounded beforehand by [`validate::check_shape`].
    fn compile(&self, bytes: &[u8]) -> Result<Component, PluginError> {
        let permit = self.compiles.enter();
        let (done, result) = std::sync::mpsc::sync_channel(1);
        let engine = self.engine.clone();
        let bytes = bytes.to_vec();
        std::thread::Builder::new()
            .name("plugin-compile".into())
            .spawn(move || {
                let _permit = permit;
                let _ = done.send(Component::new(&engine, &bytes));
            })
            .map_err(|e| PluginError::Host(format!("cannot start a compile: {e}")))?;
        match result.recv_timeout(self.limits.compile_deadline) {
            Ok(compiled) => compiled.map_err(|e| PluginError::Invalid(format!("{e:#}"))),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(PluginError::CompileDeadline(self.limits.compile_deadline.as_millis()))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(PluginError::Host("the compiler stopped without an answer".into()))
            }
        }
    }

    /// Runs `transform`, blocking the thread until the call ends; on an async runtime use
    /// [`Host::transform_async`]. The plugin reads `event` value by value through its handle;
    /// what it reads counts against the input cap, as the request and `config` do.
    pub fn transform(&self, plugin: &Plugin, event: impl EventSource, request: &Request, config: &str) -> Run<Request> {
        block_on(self.transform_async(plugin, event, request.clone(), config))
    }

    /// [`Host::transform`] as a future: the call runs on the thread that polls it, giving the
    /// thread back every 100,000 instructions and at each epoch tick, so a slow plugin delays
    /// the others' tasks a slice at a time. It takes the request, which goes into the plugin's
    /// memory as it is.
    pub async fn transform_async(
        &self,
        plugin: &Plugin,
        event: impl EventSource,
        request: Request,
        config: &str,
    ) -> Run<Request> {
        let input = request_size(&request) + config.len();
        self.call(input, plugin, async |store, instance| {
            let indices = plugin
                .inner
                .transform
                .as_ref()
                .ok_or(PluginError::MissingExport("transform"))?;
            let guest = indices
                .load(&mut *store, instance)
                .map_err(|e| PluginError::BadExport(e.to_string()))?;
            let event = store
                .data_mut()
                .table
                .push(EventHandle(Box::new(event)))
                .map_err(|e| PluginError::Host(format!("cannot hand over the event: {e}")))?;
            // The handle is only lent: the table keeps the event, and the call's store goes with
            // the call.
            let borrowed = Resource::new_borrow(event.rep());
            // The rest of what it reads counts from here.
            store.data_mut().read = input;
            match guest
                .call_transform(&mut *store, borrowed, &into_wit(request), config)
                .await
            {
                Ok(Ok(out)) => {
                    let out = Request {
                        method: out.method,
                        url: out.url,
                        headers: out.headers,
                        body: out.body,
                    };
                    self.check_output(request_size(&out))?;
                    Ok(out)
                }
                Ok(Err(message)) => {
                    self.check_output(message.len())?;
                    Err(PluginError::Refused(message).into())
                }
                Err(e) => Err(CallError::Wasm(e)),
            }
        })
        .await
    }

    /// Runs `classify`, blocking the thread until the call ends; on an async runtime use
    /// [`Host::classify_async`].
    pub fn classify(&self, plugin: &Plugin, request: &Request, response: &Response, config: &str) -> Run<Verdict> {
        block_on(self.classify_async(plugin, request.clone(), response.clone(), config))
    }

    /// [`Host::classify`] as a future, run as [`Host::transform_async`] is. It takes the request
    /// and the response, which go into the plugin's memory as they are.
    pub async fn classify_async(
        &self,
        plugin: &Plugin,
        request: Request,
        response: Response,
        config: &str,
    ) -> Run<Verdict> {
        let input = request_size(&request)
            + response.body.len()
            + response.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
            + config.len();
        self.call(input, plugin, async |store, instance| {
            let indices = plugin
                .inner
                .classify
                .as_ref()
                .ok_or(PluginError::MissingExport("classify"))?;
            let guest = indices
                .load(&mut *store, instance)
                .map_err(|e| PluginError::BadExport(e.to_string()))?;
            let response = wit::Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
                duration_ms: response.duration_ms,
            };
            match guest
                .call_classify(&mut *store, &into_wit(request), &response, config)
                .await
            {
                Ok(wit::Verdict::Success) => Ok(Verdict::Success),
                Ok(wit::Verdict::Retry(retry)) => {
                    self.check_output(retry.reason.len())?;
                    Ok(Verdict::Retry {
                        after_secs: retry.after_secs,
                        reason: retry.reason,
                    })
                }
                Ok(wit::Verdict::Fail(reason)) => {
                    self.check_output(reason.len())?;
                    Ok(Verdict::Fail(reason))
                }
                Err(e) => Err(CallError::Wasm(e)),
            }
        })
        .await
    }

    fn check_output(&self, size: usize) -> Result<(), PluginError> {
        if size > self.limits.output {
            return Err(PluginError::OutputTooLarge {
                size,
                limit: self.limits.output,
            });
        }
        Ok(())
    }

    /// A fresh store from the pool, limits set, the plugin instantiated, `body` called; traps
    /// explained with what the store saw.
    async fn call<T>(
        &self,
        input: usize,
        plugin: &Plugin,
        body: impl AsyncFnOnce(&mut Store<CallState>, &wasmtime::component::Instance) -> Result<T, CallError>,
    ) -> Run<T> {
        let started = Instant::now();
        if input > self.limits.input {
            return Run {
                result: Err(PluginError::InputTooLarge {
                    size: input,
                    limit: self.limits.input,
                }),
                fuel_used: 0,
                peak_memory: 0,
                duration: started.elapsed(),
                logs: Vec::new(),
            };
        }
        // The semaphore is never closed.
        let _slot = self.slots.acquire().await.ok();
        let mut store = Store::new(&self.engine, CallState::new(&self.limits));
        store.limiter(|state| &mut state.memory);
        let fuel = self.limits.fuel;
        let _ = store.set_fuel(fuel);
        // A long call gives its thread back every slice of instructions as well as at each tick:
        // a task polled for a whole tick at a time would keep the runtime from looking at the
        // network for dozens of ticks, as its other tasks wait their turns behind it.
        let _ = store.fuel_async_yield_interval(Some(YIELD_FUEL));
        // At each tick the call gives its thread back to the other tasks, until its deadline,
        // counted from here: a wait for a pool slot is not the plugin's time.
        let deadline = Instant::now() + self.limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        let result = match plugin.inner.pre.instantiate_async(&mut store).await {
            Ok(instance) => body(&mut store, &instance).await,
            Err(e) if e.downcast_ref::<wasmtime::Trap>().is_some() || store.data().memory.exceeded => {
                Err(CallError::Wasm(e))
            }
            Err(e) => Err(CallError::Plugin(instantiation_failed(&e))),
        };
        let result = result.map_err(|error| match error {
            CallError::Wasm(e) => explain(e, store.data(), &self.limits),
            CallError::Plugin(e) => e,
        });
        let fuel_used = fuel - store.get_fuel().unwrap_or(0);
        let state = store.into_data();
        Run {
            result,
            fuel_used,
            peak_memory: state.memory.peak,
            duration: started.elapsed(),
            logs: state.into_logs(),
        }
    }
}

/// Polls `future` to its end on this thread, parking it while the future waits. Plugin calls
/// wait only for a pool slot; they yield at epoch ticks and fuel slices too, waking themselves
/// at once.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// Why an instance could not be made. The pool is sized so that every call slot fits the
/// largest component the limits allow, and uploads that cannot fit are refused, so what is
/// left is the component's own doing (more memories, tables or instances than a call may have,
/// a start function that fails), a plugin failure; only the operating system refusing memory
/// is the host's.
fn instantiation_failed(error: &wasmtime::Error) -> PluginError {
    let text = format!("{error:#}");
    let host = error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some())
        || text.contains("concurrent limit");
    if host {
        PluginError::Host(format!("instantiation failed: {text}"))
    } else {
        PluginError::Instantiate(text)
    }
}

/// How a call failed: by the plugin's own doing, or in wasmtime (explained once the store's
/// state, such as the memory limiter's record and stderr, can be read).
enum CallError {
    Plugin(PluginError),
    Wasm(wasmtime::Error),
}

impl From<PluginError> for CallError {
    fn from(error: PluginError) -> Self {
        CallError::Plugin(error)
    }
}

fn request_size(request: &Request) -> usize {
    request.method.len()
        + request.url.len()
        + request.body.len()
        + request.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
}

fn into_wit(request: Request) -> wit::Request {
    wit::Request {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
    }
}
