//! The memory queue: deliveries leased to this worker, waiting for a send slot.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::debug;

use crate::id::PartnerId;
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

/// A job's place among its partner's postbacks in flight, from [`Queue::take`] until
/// [`Queue::done`].
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight(usize);

/// Deliveries leased to this worker and waiting in memory for a send slot: those accepted by
/// this process a moment ago, leased in the transaction that recorded them (they skip the claim,
/// a store write, and the reading back of their event), and those the claimer took from the
/// store ahead of need, so that sending never waits for a claim. Should the process die, their
/// leases expire and any worker claims them from the store again.
///
/// Each partner's jobs wait in a line of their own, and the lines take turns: a partner sends at
/// most `per_partner` postbacks at once, and while it is at that cap its line waits aside, so
/// that the jobs of a partner whose receiver stalls never stand in front of another partner's.
/// Within a line, jobs go in the order they were queued.
///
/// A line holds at most three quarters of the room the other lines leave (see
/// [`QueueState::line_limit`]): a partner whose receiver stalls, and whose burst would fill the
/// queue, leaves the rest of it to the others, and its jobs beyond that wait in the store. Jobs
/// waiting aside in a line at its cap do not count for the low mark ([`Queue::takeable`]), so
/// the claimer goes on claiming for the other partners, skipping those whose lines are full
/// ([`Queue::full_partners`]).
///
/// Its room follows the pace of sending: it holds at most what the worker takes in `horizon`
/// at the rate measured over the last [`PACE_WINDOW`], between [`QUEUE_FLOOR`] and its capacity.
/// A burst that outruns sending for a while stays in memory instead of going the long way
/// through the store (a claim and a reading back of the event for every delivery), while behind
/// slow receivers the queue stays short enough for every job to be sent within its lease.
pub(super) struct Queue {
    state: Mutex<QueueState>,
    /// Jobs were queued, or a partner at its cap has room again.
    pub(super) ready: Notify,
    /// The queue fell below its low mark.
    pub(super) drained: Notify,
    /// Below this many jobs the claimer claims more.
    pub(super) low: usize,
    /// The queue holds what the worker takes in this long.
    horizon: Duration,
    /// Postbacks one partner may have in flight at once.
    per_partner: usize,
}

/// The room the queue has at least, whatever the pace of sending.
const QUEUE_FLOOR: usize = 4096;

/// How long the pace of sending is measured over before it counts.
const PACE_WINDOW: Duration = Duration::from_millis(250);

/// One partner's jobs and postbacks in flight.
struct Line {
    partner_id: PartnerId,
    jobs: VecDeque<Job>,
    in_flight: usize,
    /// Whether the line is in `QueueState::turns`.
    queued_for_turn: bool,
}

struct QueueState {
    /// Only a running worker takes jobs.
    open: bool,
    /// The partners' lines, by index; freed lines are kept for reuse, with their room.
    lines: Vec<Line>,
    free: Vec<usize>,
    /// Each partner with jobs or postbacks in flight, to its line.
    by_partner: HashMap<PartnerId, usize>,
    /// The lines with jobs and room under the cap, in turn.
    turns: VecDeque<usize>,
    /// Jobs in all lines.
    jobs: usize,
    /// Jobs in lines at their cap, which cannot be taken until one of theirs is done.
    aside: usize,
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

    /// How many jobs a partner's line holding `line_jobs` may hold now: three quarters of the
    /// room the other lines leave, so that a stalled partner's burst leaves a quarter of the
    /// queue to the others (each further one, a quarter of what is left), while a partner sending
    /// alone keeps most of the queue for its bursts; and at least four times the partner's cap,
    /// so that a partner sending fast never waits for a claim.
    fn line_limit(&self, horizon: Duration, per_partner: usize, line_jobs: usize) -> usize {
        let limit = self.limit(horizon);
        let others = self.jobs - line_jobs;
        (limit.saturating_sub(others) / 4 * 3)
            .max(per_partner.saturating_mul(4))
            .min(limit)
    }

    /// The line of `partner_id`, made (or reused) if it has none.
    fn line(&mut self, partner_id: &PartnerId) -> usize {
        if let Some(&line) = self.by_partner.get(partner_id) {
            return line;
        }
        let line = match self.free.pop() {
            Some(line) => {
                self.lines[line].partner_id = partner_id.clone();
                line
            }
            None => {
                self.lines.push(Line {
                    partner_id: partner_id.clone(),
                    jobs: VecDeque::new(),
                    in_flight: 0,
                    queued_for_turn: false,
                });
                self.lines.len() - 1
            }
        };
        self.by_partner.insert(partner_id.clone(), line);
        line
    }

    /// Frees a line with no jobs and nothing in flight.
    fn free_if_idle(&mut self, line: usize) {
        let idle = &self.lines[line];
        if idle.jobs.is_empty() && idle.in_flight == 0 && !idle.queued_for_turn {
            self.by_partner.remove(&idle.partner_id);
            self.free.push(line);
        }
    }
}

impl Queue {
    /// A queue of at most `capacity` jobs (see [`Queue`]), whose claimer claims below `low`,
    /// holding what the worker sends in `horizon`, that lets a partner have at most
    /// `per_partner` postbacks in flight.
    pub(super) fn new(capacity: usize, low: usize, horizon: Duration, per_partner: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                open: false,
                lines: Vec::new(),
                free: Vec::new(),
                by_partner: HashMap::new(),
                turns: VecDeque::new(),
                jobs: 0,
                aside: 0,
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
            per_partner: per_partner.max(1),
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
            .saturating_sub(state.jobs + state.reserved)
            .min(want);
        state.reserved += room;
        room
    }

    /// [`Queue::reserve`] for jobs all of `partner_id`: no more places than its line has room
    /// for, so that what an accept leases is queued rather than given back; says too whether the
    /// line's room was less than `want`.
    pub(super) fn reserve_for(&self, want: usize, partner_id: &PartnerId) -> (usize, bool) {
        let line_room = {
            let state = self.state();
            let jobs = state
                .by_partner
                .get(partner_id)
                .map_or(0, |&at| state.lines[at].jobs.len());
            state
                .line_limit(self.horizon, self.per_partner, jobs)
                .saturating_sub(jobs)
        };
        (self.reserve(want.min(line_room)), line_room < want)
    }

    pub(super) fn release(&self, reserved: usize) {
        self.state().reserved -= reserved;
    }

    /// Queues `jobs` in `reserved` promised places, each at the end of its partner's line, and
    /// returns those it leaves out, for the caller to give back to the store: those beyond their
    /// partner's [line limit](QueueState::line_limit), or all of them when the worker has stopped.
    pub(super) fn fill(&self, reserved: usize, jobs: Vec<Job>) -> Vec<Job> {
        let mut state = self.state();
        state.reserved -= reserved;
        if !state.open {
            return jobs;
        }
        let cap = self.per_partner;
        let state = &mut *state;
        let mut queued = false;
        let mut left_out = Vec::new();
        for job in jobs {
            let at = state.line(&job.claimed.partner_id);
            if state.lines[at].jobs.len() >= state.line_limit(self.horizon, cap, state.lines[at].jobs.len()) {
                left_out.push(job);
                state.free_if_idle(at);
                continue;
            }
            let line = &mut state.lines[at];
            line.jobs.push_back(job);
            if line.in_flight >= cap {
                state.aside += 1;
            } else if !line.queued_for_turn {
                line.queued_for_turn = true;
                state.turns.push_back(at);
            }
            state.jobs += 1;
            queued = true;
        }
        if queued {
            self.ready.notify_one();
        }
        left_out
    }

    /// Jobs queued or promised.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        let state = self.state();
        state.jobs + state.reserved
    }

    /// Jobs queued, without the places promised to claims under way.
    pub(super) fn queued(&self) -> usize {
        self.state().jobs
    }

    /// Jobs queued that can be taken (those of partners below their cap), or promised: what the
    /// claimer compares with its low mark, so that the jobs of a partner whose receiver stalls
    /// never stop claims for the others.
    pub(super) fn takeable(&self) -> usize {
        let state = self.state();
        state.jobs - state.aside + state.reserved
    }

    /// How many jobs [`Queue::take`] would give now, counting to `max` at most: those of lines
    /// taking turns, each up to its partner's room under the cap. The sender takes no more
    /// send slots than that, so that a partner alone at its cap does not make it take and give
    /// back every free slot for each postback that ends.
    pub(super) fn ready_now(&self, max: usize) -> usize {
        let state = self.state();
        let mut ready = 0;
        for &at in &state.turns {
            let line = &state.lines[at];
            ready += line.jobs.len().min(self.per_partner.saturating_sub(line.in_flight));
            if ready >= max {
                return max;
            }
        }
        ready
    }

    /// The partners whose lines hold as many jobs as a line may: a claim leaves their due
    /// deliveries in the store, since the queue would only give them back.
    pub(super) fn full_partners(&self) -> Vec<PartnerId> {
        let state = self.state();
        state
            .by_partner
            .iter()
            .filter(|(_, at)| {
                let jobs = state.lines[**at].jobs.len();
                jobs > 0 && jobs >= state.line_limit(self.horizon, self.per_partner, jobs)
            })
            .map(|(partner_id, _)| partner_id.clone())
            .collect()
    }

    /// Up to `max` queued jobs whose leases last at least until `sendable_until`, one from each
    /// partner's line in turn, from the lines of partners below their cap. The jobs left behind
    /// at the front of a line for want of time are left to the store, which hands them out
    /// again when their leases end. Each job taken counts in its partner's postbacks in flight
    /// until it is [done](Queue::done).
    pub(super) fn take(&self, max: usize, sendable_until: i64) -> Vec<(Job, InFlight)> {
        let mut state = self.state();
        let cap = self.per_partner;
        let state = &mut *state;
        let mut jobs = Vec::with_capacity(max.min(state.jobs));
        while jobs.len() < max {
            let Some(at) = state.turns.pop_front() else { break };
            let line = &mut state.lines[at];
            line.queued_for_turn = false;
            let mut next = None;
            while let Some(job) = line.jobs.pop_front() {
                state.jobs -= 1;
                if job.until >= sendable_until {
                    next = Some(job);
                    break;
                }
                debug!(delivery = %job.claimed.delivery_id, "waited in memory too long; left to the store");
            }
            let Some(job) = next else {
                state.free_if_idle(at);
                continue;
            };
            line.in_flight += 1;
            if line.in_flight < cap {
                if !line.jobs.is_empty() {
                    line.queued_for_turn = true;
                    state.turns.push_back(at);
                }
            } else if line.in_flight == cap {
                state.aside += line.jobs.len();
            }
            jobs.push((job, InFlight(at)));
        }
        state.taken += jobs.len();
        let elapsed = state.window_start.elapsed();
        if elapsed >= PACE_WINDOW {
            state.pace = state.taken as f64 / elapsed.as_secs_f64();
            state.taken = 0;
            state.window_start = Instant::now();
        }
        let low = state.jobs - state.aside + state.reserved < self.low;
        if low {
            self.drained.notify_one();
        }
        jobs
    }

    /// Ends a job [taken](Queue::take): its partner has one postback fewer in flight, and its
    /// line takes turns again if it waited at the cap.
    pub(super) fn done(&self, in_flight: InFlight) {
        let mut state = self.state();
        let state = &mut *state;
        let at = in_flight.0;
        let line = &mut state.lines[at];
        if line.in_flight == self.per_partner {
            state.aside -= line.jobs.len();
        }
        line.in_flight -= 1;
        let resumed = line.in_flight < self.per_partner && !line.jobs.is_empty() && !line.queued_for_turn;
        if resumed {
            line.queued_for_turn = true;
            state.turns.push_back(at);
        }
        state.free_if_idle(at);
        if resumed {
            self.ready.notify_one();
        }
    }

    pub(super) fn open(&self) {
        self.state().open = true;
    }

    /// Stops taking jobs; returns those still queued.
    pub(super) fn close(&self) -> Vec<Job> {
        let mut state = self.state();
        state.open = false;
        let state = &mut *state;
        let mut jobs = Vec::with_capacity(state.jobs);
        state.turns.clear();
        let lines: Vec<usize> = state.by_partner.values().copied().collect();
        for at in lines {
            let line = &mut state.lines[at];
            line.queued_for_turn = false;
            jobs.extend(line.jobs.drain(..));
            state.free_if_idle(at);
        }
        state.jobs = 0;
        state.aside = 0;
        jobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::DeliveryId;
    use crate::store::ClaimedEvent;

    fn job(n: usize, until: i64) -> Job {
        partner_job("ptn_q", n, until)
    }

    fn partner_job(partner: &str, n: usize, until: i64) -> Job {
        Job {
            claimed: Claimed {
                delivery_id: format!("dlv_{n}").into(),
                partner_id: partner.into(),
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
        let queue = Queue::new(32_768, 512, Duration::from_secs(9), 64);
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
        let small = Queue::new(100, 10, Duration::from_secs(9), 64);
        small.open();
        assert_eq!(small.reserve(1_000), 100);

        // The pace is measured from the jobs taken over a window (one partner, without a cap).
        let queue = Queue::new(32_768, 512, Duration::from_secs(9), usize::MAX);
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
        let queue = Queue::new(100, 10, Duration::from_secs(9), 64);
        queue.open();
        let room = queue.reserve(3);
        assert!(queue.fill(room, vec![job(1, 50), job(2, 200), job(3, 100)]).is_empty());
        let taken: Vec<DeliveryId> = queue
            .take(3, 100)
            .into_iter()
            .map(|(j, _)| j.claimed.delivery_id)
            .collect();
        assert_eq!(taken, ["dlv_2", "dlv_3"]);
        assert_eq!(queue.len(), 0);
    }

    fn ids(jobs: &[(Job, InFlight)]) -> Vec<&str> {
        jobs.iter().map(|(j, _)| j.claimed.delivery_id.as_str()).collect()
    }

    /// Partners' jobs take turns, whatever order they were queued in; a partner at its cap
    /// waits aside without holding up the others, and takes turns again as its postbacks end.
    #[test]
    fn partners_take_turns_and_one_at_its_cap_waits_aside() {
        let queue = Queue::new(100, 10, Duration::from_secs(9), 2);
        queue.open();
        let mut jobs: Vec<Job> = (1..=5).map(|n| partner_job("ptn_a", n, i64::MAX)).collect();
        jobs.extend((6..=8).map(|n| partner_job("ptn_b", n, i64::MAX)));
        let room = queue.reserve(jobs.len());
        assert!(queue.fill(room, jobs).is_empty());
        assert_eq!(queue.ready_now(100), 4, "two of each partner's, under their cap of 2");
        assert_eq!(queue.ready_now(3), 3);
        let first = queue.take(1, 0);
        assert_eq!(ids(&first), ["dlv_1"]);
        assert_eq!(queue.ready_now(100), 3);
        let taken = queue.take(100, 0);
        // Each line in turn, one job at a time; both partners stop at their cap of 2.
        assert_eq!(ids(&taken), ["dlv_6", "dlv_2", "dlv_7"]);
        assert_eq!(queue.ready_now(100), 0);
        assert!(queue.take(100, 0).is_empty(), "both partners are at their cap");
        assert_eq!(queue.queued(), 4);
        // One of b's postbacks ends: b goes on, a still waits.
        queue.done(taken[0].1);
        assert_eq!(ids(&queue.take(100, 0)), ["dlv_8"]);
        queue.done(first[0].1);
        queue.done(taken[1].1);
        assert_eq!(ids(&queue.take(100, 0)), ["dlv_3", "dlv_4"]);
        assert!(queue.take(100, 0).is_empty());
        assert_eq!(queue.close().len(), 1, "dlv_5 is given back");
    }

    /// A partner's line holds at most three quarters of the room the others leave: the rest of a
    /// burst is left out, to be given back to the store, and the partner counts as full for
    /// claims. Jobs waiting aside in a line at its cap do not count for the low mark, so the
    /// claimer claims for the others while a stalled partner's line is full.
    #[test]
    fn a_partner_s_line_is_bounded_and_jobs_aside_do_not_hold_claims() {
        let queue = Queue::new(32_768, 512, Duration::from_secs(9), 64);
        queue.open();
        let limit = QUEUE_FLOOR / 4 * 3;
        assert_eq!(queue.state().line_limit(queue.horizon, 64, 0), limit);
        let room = queue.reserve(4_000);
        assert_eq!(room, 4_000);
        let left_out = queue.fill(room, (0..4_000).map(|n| partner_job("ptn_a", n, i64::MAX)).collect());
        assert_eq!(left_out.len(), 4_000 - limit, "a's burst beyond its line limit");
        assert_eq!(left_out[0].claimed.delivery_id.as_str(), format!("dlv_{limit}"));
        assert_eq!(queue.queued(), limit);
        assert_eq!(queue.full_partners(), [PartnerId::from("ptn_a")]);
        assert_eq!(queue.takeable(), limit, "below its cap, a's jobs can be taken");
        assert_eq!(
            queue.reserve_for(100, &"ptn_a".into()),
            (0, true),
            "no room in a's line"
        );
        assert_eq!(queue.reserve_for(100, &"ptn_b".into()), (100, false));
        queue.release(100);

        // a's receiver stalls: it reaches its cap, and its jobs wait aside.
        let taken = queue.take(1_000, 0);
        assert_eq!(taken.len(), 64);
        assert_eq!(queue.queued(), limit - 64);
        assert_eq!(queue.takeable(), 0, "nothing a line at its cap holds can be taken");
        // The line has room for a few more of a's, and is full again.
        let room = queue.reserve(100);
        let left_out = queue.fill(
            room,
            (0..100).map(|n| partner_job("ptn_a", 10_000 + n, i64::MAX)).collect(),
        );
        assert_eq!(left_out.len(), 100 - 64);
        assert_eq!(queue.takeable(), 0);

        // b's jobs queue and count, and are taken while a waits.
        let room = queue.reserve(50);
        assert_eq!(room, 50);
        assert!(
            queue
                .fill(room, (0..50).map(|n| partner_job("ptn_b", n, i64::MAX)).collect())
                .is_empty()
        );
        assert_eq!(queue.takeable(), 50);
        assert_eq!(queue.full_partners(), [PartnerId::from("ptn_a")]);
        // b's line may hold three quarters of the quarter a leaves.
        assert_eq!(
            queue.state().line_limit(queue.horizon, 64, 50),
            (QUEUE_FLOOR - limit) / 4 * 3
        );
        assert_eq!(queue.take(1_000, 0).len(), 50);

        // One of a's postbacks ends: its line takes turns again and its jobs count once more.
        queue.done(taken[0].1);
        assert_eq!(queue.takeable(), limit);
        assert_eq!(queue.take(1_000, 0).len(), 1);
        assert_eq!(queue.takeable(), 0);
        assert_eq!(queue.close().len(), limit - 1);
        assert_eq!(queue.takeable(), 0);
    }

    /// A partner's line is let go once it has no jobs and nothing in flight, and reused by the
    /// next partner: partners that come and go leave nothing behind.
    #[test]
    fn lines_of_partners_gone_are_reused() {
        let queue = Queue::new(100, 10, Duration::from_secs(9), 4);
        queue.open();
        for round in 0..50 {
            let partner = format!("ptn_{round}");
            let room = queue.reserve(2);
            assert!(
                queue
                    .fill(
                        room,
                        vec![partner_job(&partner, 1, i64::MAX), partner_job(&partner, 2, i64::MAX)]
                    )
                    .is_empty()
            );
            let taken = queue.take(10, 0);
            assert_eq!(taken.len(), 2);
            for (_, in_flight) in taken {
                queue.done(in_flight);
            }
        }
        let state = queue.state();
        assert!(state.by_partner.is_empty());
        assert_eq!(state.lines.len(), 1);
    }
}
