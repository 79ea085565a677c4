//! Thread priorities: the server runs the threads no client waits on (the async runtime, the
//! store's background writer) a few nice steps below the store thread that accepts events.

/// Lowers the calling thread's priority by `steps` nice steps, at most to the lowest (19).
#[cfg(target_os = "linux")]
pub(crate) fn lower(steps: i32) {
    if steps <= 0 {
        return;
    }
    // SAFETY: getpriority and setpriority on the calling thread's own id; errno is the calling
    // thread's, cleared first because -1 is also a valid priority.
    let result = unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        let failed = (current == -1 && *libc::__errno_location() != 0)
            || libc::setpriority(libc::PRIO_PROCESS, tid, (current + steps).min(19)) != 0;
        if failed {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // Once: the runtime starts blocking threads as it needs them, and each would say the same.
    static WARNED: std::sync::Once = std::sync::Once::new();
    if let Err(e) = result {
        WARNED.call_once(|| {
            tracing::warn!(error = %e, "cannot lower a thread's priority; such threads run at the priority of the thread that started them");
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower(_steps: i32) {}

/// The calling thread's nice value.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn current() -> i32 {
    // SAFETY: getpriority on the calling thread's own id.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}
