//! The pipeline's statements on PostgreSQL: accept, claim, record, give back, retention.

use std::sync::Arc;

use super::{PgStore, Result};
use crate::event::Event;
use crate::id::PartnerId;
use crate::store::{Accepted, Claimed, Endpoint, GiveBack, Lease, Leased, Outcome, Pace, Pruned};

impl PgStore {
    /// Records events and their deliveries in one transaction (see
    /// [`Store::accept_leasing`](crate::store::Store::accept_leasing)).
    pub async fn accept_leasing(
        &self,
        events: Arc<Vec<Event>>,
        now: i64,
        lease: Lease,
    ) -> Result<(Vec<Accepted>, Vec<Leased>)> {
        todo!("{:?} {now} {:?}", events.len(), lease.max)
    }

    /// Claims up to `limit` due deliveries for `lease_ms`, none of the partners in `skip`.
    pub async fn claim(&self, now: i64, lease_ms: i64, limit: i64, skip: &[PartnerId]) -> Result<Vec<Claimed>> {
        todo!("{now} {lease_ms} {limit} {}", skip.len())
    }

    /// When the earliest pending delivery is due, if any is.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        todo!()
    }

    /// How many pending deliveries are due at `now`, and when the earliest fell due.
    pub async fn due(&self, now: i64) -> Result<(i64, Option<i64>)> {
        todo!("{now}")
    }

    /// A partner's settings and secret for sending.
    pub async fn endpoint(&self, partner_id: &str) -> Result<Option<Endpoint>> {
        todo!("{partner_id}")
    }

    /// Records attempts and moves their deliveries on, in order.
    pub async fn record(&self, outcomes: Arc<Vec<Outcome>>, now: i64) -> Result<u64> {
        todo!("{} {now}", outcomes.len())
    }

    /// Moves claimed deliveries to new due times without counting an attempt.
    pub async fn reschedule(&self, due: &[GiveBack]) -> Result<()> {
        todo!("{}", due.len())
    }

    /// Removes what retention lets go at the cutoff `older_than`.
    pub async fn prune(&self, older_than: i64, batch: usize, pace: &Pace) -> Result<Pruned> {
        let _ = pace;
        todo!("{older_than} {batch}")
    }
}
