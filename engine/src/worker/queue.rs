//! The memory queue: deliveries leased to this worker, waiting for a send slot.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::debug;

use crate::store::{Claimed, GiveBack};

/// A delivery on its way through the pipeline.
pub(super) struct Job {
    pub(super) claimed: Claimed,
    /// When it was leased (Unix ms).
    pub(super) leased_at: i64,
    /// When its lease ends (Unix ms).
    pub(super) until: i64,
}

impl Job {
    /// The job given back to the store, due at `due`, under its lease.
    pub(super) fn give_back(self, due: i64) -> GiveBack {
        GiveBack {
            delivery_id: self.claimed.delivery_id,
            lease_seq: self.claimed.lease_seq,
            due,
        }
    }
}

/// Deliveries leased to this worker and waiting in memory for a send slot: those accepted by
/// this process a moment ago, leased in the transaction that recorded them (they skip the claim,
/// a store write, and the reading back of their event), and those the claimer took from the
/// store ahead of need, so that sending never waits for a claim. Should the process die, their
/// leases expire and any worker claims them from the store again.
///
/// Its room follows the pace of sending: it holds at most what the worker takes in `horizon`
/// at the rate measured over the last [`PACE_WINDOW`], between [`QUEUE_FLOOR`] and its capacity. A burst that
/// outruns sending for a while stays in memory instead of going the long way through the store
/// (a claim and a reading back of the event for every delivery), while behind slow receivers
/// the queue stays short enough for every job to be sent within its lease.
pub(super) struct Queue {
    state: Mutex<QueueState>,
    /// Jobs were queued.
    pub(super) ready: Notify,
    /// The queue fell below its low mark.
    pub(super) drained: Notify,
    /// Below this many jobs the claimer claims more.
    pub(super) low: usize,
    /// The queue holds what the worker takes in this long.
    horizon: Duration,
}

/// The room the queue has at least, whatever the pace of sending.
const QUEUE_FLOOR: usize = 4096;

/// How long the pace of sending is measured over before it counts.
const PACE_WINDOW: Duration = Duration::from_millis(250);

struct QueueState {
    /// Only a running worker takes jobs.
    open: bool,
    jobs: VecDeque<Job>,
    /// Places promised to accepts and claims under way.
    reserved: usize,
    capacity: usize,
    /// Jobs taken since `window_start`.
    taken: usize,
    window_start: Instant,
    /// Jobs taken per second over the last full window.
    pace: f64,
}

impl QueueState {
    /// How many jobs the queue may hold now (see [`Queue`]).
    fn limit(&self, horizon: Duration) -> usize {
        let paced = (self.pace * horizon.as_secs_f64()) as usize;
        paced.clamp(QUEUE_FLOOR.min(self.capacity), self.capacity)
    }
}

impl Queue {
    pub(super) fn new(capacity: usize, low: usize, horizon: Duration) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                open: false,
                jobs: VecDeque::new(),
                reserved: 0,
                capacity,
                taken: 0,
                window_start: Instant::now(),
                pace: 0.0,
            }),
            ready: Notify::new(),
            drained: Notify::new(),
            low,
            horizon,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().expect("never poisoned")
    }

    /// Promises up to `want` places; the promise ends with [`Queue::fill`] or [`Queue::release`].
    pub(super) fn reserve(&self, want: usize) -> usize {
        let mut state = self.state();
        if !state.open {
            return 0;
        }
        let room = state
            .limit(self.horizon)
            .saturating_sub(state.jobs.len() + state.reserved)
            .min(want);
        state.reserved += room;
        room
    }

    pub(super) fn release(&self, reserved: usize) {
        self.state().reserved -= reserved;
    }

    /// Queues `jobs` in `reserved` promised places; gives them back when the worker has stopped.
    pub(super) fn fill(&self, reserved: usize, jobs: Vec<Job>) -> Vec<Job> {
        let mut state = self.state();
        state.reserved -= reserved;
        if !state.open {
            return jobs;
        }
        let any = !jobs.is_empty();
        state.jobs.extend(jobs);
        drop(state);
        if any {
            self.ready.notify_one();
        }
        Vec::new()
    }

    /// Jobs queued or promised.
    pub(super) fn len(&self) -> usize {
        let state = self.state();
        state.jobs.len() + state.reserved
    }

    /// Jobs queued, without the places promised to claims under way.
    pub(super) fn queued(&self) -> usize {
        self.state().jobs.len()
    }

    /// Up to `max` queued jobs whose leases last at least until `sendable_until`; the others
    /// are left to the store, which hands them out again when their leases end.
    pub(super) fn take(&self, max: usize, sendable_until: i64) -> Vec<Job> {
        let mut state = self.state();
        let mut jobs = Vec::with_capacity(max.min(state.jobs.len()));
        while jobs.len() < max {
            let Some(job) = state.jobs.pop_front() else { break };
            if job.until >= sendable_until {
                jobs.push(job);
            } else {
                debug!(delivery = %job.claimed.delivery_id, "waited in memory too long; left to the store");
            }
        }
        state.taken += jobs.len();
        let elapsed = state.window_start.elapsed();
        if elapsed >= PACE_WINDOW {
            state.pace = state.taken as f64 / elapsed.as_secs_f64();
            state.taken = 0;
            state.window_start = Instant::now();
        }
        let low = state.jobs.len() + state.reserved < self.low;
        drop(state);
        if low {
            self.drained.notify_one();
        }
        jobs
    }

    pub(super) fn open(&self) {
        self.state().open = true;
    }

    /// Stops taking jobs; returns those still queued.
    pub(super) fn close(&self) -> Vec<Job> {
        let mut state = self.state();
        state.open = false;
        state.jobs.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::DeliveryId;
    use crate::store::ClaimedEvent;

    fn job(n: usize, until: i64) -> Job {
        Job {
            claimed: Claimed {
                delivery_id: format!("dlv_{n}").into(),
                partner_id: "ptn_q".into(),
                attempts: 0,
                event: ClaimedEvent::Stored(String::new()),
                settings_version: 1,
                lease_seq: 1,
            },
            leased_at: 0,
            until,
        }
    }

    /// The queue's room follows the pace of sending: at least the floor, at most its capacity,
    /// and in between what the worker takes in the horizon.
    #[test]
    fn the_queue_holds_what_is_sent_in_its_horizon() {
        let queue = Queue::new(32_768, 512, Duration::from_secs(9));
        assert_eq!(queue.reserve(10), 0, "a closed queue takes nothing");
        queue.open();
        // No pace measured yet: the floor.
        assert_eq!(queue.reserve(100_000), QUEUE_FLOOR);
        queue.release(QUEUE_FLOOR);
        for (pace, limit) in [(10.0, QUEUE_FLOOR), (1_000.0, 9_000), (30_000.0, 32_768)] {
            queue.state().pace = pace;
            assert_eq!(queue.reserve(100_000), limit, "at {pace} jobs a second");
            queue.release(limit);
        }
        // A capacity below the floor is the limit.
        let small = Queue::new(100, 10, Duration::from_secs(9));
        small.open();
        assert_eq!(small.reserve(1_000), 100);

        // The pace is measured from the jobs taken over a window.
        let queue = Queue::new(32_768, 512, Duration::from_secs(9));
        queue.open();
        let room = queue.reserve(2_000);
        assert!(
            queue
                .fill(room, (0..2_000).map(|n| job(n, i64::MAX)).collect())
                .is_empty()
        );
        // The window began a full window ago, as if the jobs had been queued then.
        queue.state().window_start = Instant::now() - PACE_WINDOW;
        assert_eq!(queue.take(2_000, 0).len(), 2_000);
        let pace = queue.state().pace;
        assert!(pace > 0.0 && pace <= 2_000.0 / PACE_WINDOW.as_secs_f64(), "{pace}");
    }

    /// A job whose lease ends too soon to be sent is left to the store, not taken.
    #[test]
    fn the_queue_leaves_jobs_near_the_end_of_their_lease() {
        let queue = Queue::new(100, 10, Duration::from_secs(9));
        queue.open();
        let room = queue.reserve(3);
        assert!(queue.fill(room, vec![job(1, 50), job(2, 200), job(3, 100)]).is_empty());
        let taken: Vec<DeliveryId> = queue.take(3, 100).into_iter().map(|j| j.claimed.delivery_id).collect();
        assert_eq!(taken, ["dlv_2", "dlv_3"]);
        assert_eq!(queue.len(), 0);
    }
}
