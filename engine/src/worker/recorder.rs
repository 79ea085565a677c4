//! The recorder: attempts and the deliveries' next states, committed in batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::Worker;
use crate::id::PartnerId;
use crate::metrics;
use crate::store::{GiveBack, Next, Notice, Outcome, now_ms};

/// What the recorder writes.
pub(super) enum Record {
    /// An outcome, with the partner of its delivery.
    Outcome(Box<Outcome>, PartnerId),
    /// Back to the store due at its time, no attempt counted.
    Later(GiveBack),
}

/// The recorder: commits outcomes in batches, retrying the store for a while when it fails.
/// A commit that made deliveries due now (an inquiry's resolved postback once its created one is
/// done, an immediate retry, a delivery given back) wakes the claimer.
pub(super) async fn record(worker: Worker, mut receiver: mpsc::Receiver<Record>) {
    let store = &worker.inner.store;
    let metrics = &*worker.inner.config.metrics;
    let mut outcomes = Vec::new();
    let mut partners = Vec::new();
    let mut later = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Record::Outcome(outcome, partner) => {
                    outcomes.push(*outcome);
                    partners.push(partner);
                }
                Record::Later(back) => later.push(back),
            }
            next = if outcomes.len() + later.len() < 1024 {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        let now = now_ms();
        let due_now = outcomes
            .iter()
            .any(|o| matches!(o.next, Next::RetryAt(at) if at <= now))
            || later.iter().any(|back| back.due <= now);
        // Handed over whole and taken back after, so that the buffer is allocated once.
        let batch = Arc::new(std::mem::take(&mut outcomes));
        let unblocked = persist("recording attempts", || {
            let started = Instant::now();
            let commit = store.record(without_gone(&worker, &batch, &partners), now);
            async move {
                let done = commit.await;
                if done.is_ok() {
                    metrics.store_commit(started.elapsed());
                }
                done
            }
        })
        .await;
        outcomes = Arc::try_unwrap(batch).unwrap_or_default();
        // Counted once committed, so that an outcome the store lost (the delivery is sent
        // again) is not counted twice.
        if unblocked.is_some() {
            let mut disabled: Vec<&PartnerId> = Vec::new();
            for (outcome, partner) in outcomes.iter().zip(&partners) {
                metrics.delivery(match outcome.next {
                    Next::Delivered => metrics::Outcome::Delivered,
                    Next::RetryAt(_) => metrics::Outcome::Retry,
                    Next::Failed => metrics::Outcome::Failed,
                    Next::Disable(_) => {
                        if !disabled.contains(&partner) {
                            disabled.push(partner);
                        }
                        metrics::Outcome::Disabled
                    }
                });
            }
            // The other processes' workers may hold the disabled endpoints' postbacks in
            // memory; the store holds them now.
            if store.is_shared() {
                for partner in disabled {
                    if let Err(e) = store.notify(&Notice::Held(partner.clone())).await {
                        warn!(error = %e, partner = %partner, "cannot tell the other processes' workers that the endpoint was disabled");
                    }
                }
            }
        }
        persist("giving deliveries back", || store.reschedule(&later)).await;
        if due_now || unblocked.is_some_and(|n| n > 0) {
            worker.wake();
        }
        outcomes.clear();
        partners.clear();
        later.clear();
    }
}

/// The batch without the outcomes of deleted partners, whose deliveries went with them. Looked
/// at on every try: a partner deleted while a recording waited fails that try, and the next
/// one leaves its outcomes out.
fn without_gone(worker: &Worker, batch: &Arc<Vec<Outcome>>, partners: &[PartnerId]) -> Arc<Vec<Outcome>> {
    let gone = worker.inner.gone.lock().expect("never poisoned");
    if gone.is_empty() || !partners.iter().any(|p| gone.contains(p)) {
        return batch.clone();
    }
    Arc::new(
        batch
            .iter()
            .zip(partners)
            .filter(|(_, partner)| !gone.contains(*partner))
            .map(|(outcome, _)| outcome.clone())
            .collect(),
    )
}

/// Runs a store write, retrying with backoff for a while; if the store stays down, the leases
/// of the deliveries concerned expire and they are sent again.
async fn persist<T, F, Fut>(what: &str, mut write: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    for round in 0..10u32 {
        match write().await {
            Ok(done) => return Some(done),
            Err(e) => {
                warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 << round.min(4))).await;
            }
        }
    }
    error!("{what} failed for good; the leases expire and the postbacks are sent again");
    None
}
