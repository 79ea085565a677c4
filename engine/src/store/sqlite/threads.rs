//! The SQLite store's own threads, and the count of accepts waiting for the write connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Result;
use crate::store::StoreError;

/// Accepts waiting for the write connection. The client of an accept waits for its answer, so
/// an accept goes before the recording of attempts, which nobody waits for and which only grows
/// by waiting (more attempts in one transaction).
#[derive(Debug, Default)]
pub(super) struct Accepts {
    /// How many accepts wait.
    pub(super) waiting: AtomicUsize,
    /// Notified when the last one stops waiting.
    pub(super) none: tokio::sync::Notify,
}

/// Counts an accept on [`Accepts::waiting`] until dropped.
pub(super) struct Waiting(Arc<Accepts>);

impl Waiting {
    /// Counts an accept waiting.
    pub(super) fn start(accepts: Arc<Accepts>) -> Waiting {
        accepts.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(accepts)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

/// A thread of the store's own that drives writes of the pipeline (see
/// [`SqliteStore::on_writer`](super::SqliteStore::on_writer)).
#[derive(Debug)]
pub(super) struct WriterThread {
    handle: tokio::runtime::Handle,
    /// Dropped with the last clone of the store, which ends the thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WriterThread {
    /// Starts the thread `name`, `niceness` nice steps below the thread that starts it.
    pub(super) fn start(name: &str, niceness: i32) -> std::io::Result<WriterThread> {
        let (handle_sender, handle) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            crate::priority::lower(niceness);
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return drop(handle_sender.send(Err(e))),
            };
            let _ = handle_sender.send(Ok(runtime.handle().clone()));
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        let handle = handle
            .recv()
            .map_err(|_| std::io::Error::other("the store's thread stopped while starting"))??;
        Ok(WriterThread { handle, _stop: stop })
    }

    /// Runs `work` on this thread and waits for its result.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match self.handle.spawn(work).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }
}
