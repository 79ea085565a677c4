//! What processes sharing the database tell each other: wake-ups when deliveries fall due
//! (`LISTEN`/`NOTIFY` on the accept's channel, [`DUE_CHANNEL`]), and the partners' rate limits,
//! held in the database so that a limit holds for every worker together.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::write::DUE_CHANNEL;
use super::{PgStore, Result};
use crate::store::{Notice, RateSlot};

/// The channel on which a process says what became of a partner or a key, `held:<partner id>`,
/// `gone:<partner id>` or `revoked:<key id>` (see [`Notice`]).
const PARTNERS_CHANNEL: &str = "postwire_partners";

/// A notice as sent: its channel and payload; `None` for one that is never sent.
fn encode(notice: &Notice) -> Option<(&'static str, String)> {
    Some(match notice {
        Notice::Due => (DUE_CHANNEL, String::new()),
        Notice::Held(partner) => (PARTNERS_CHANNEL, format!("held:{partner}")),
        Notice::Gone(partner) => (PARTNERS_CHANNEL, format!("gone:{partner}")),
        Notice::Revoked(key) => (PARTNERS_CHANNEL, format!("revoked:{key}")),
        Notice::Missed => return None,
    })
}

/// A notice as received, if it is one.
fn decode(channel: &str, payload: &str) -> Option<Notice> {
    if channel == DUE_CHANNEL {
        return Some(Notice::Due);
    }
    match payload.split_once(':')? {
        ("held", partner) if !partner.is_empty() => Some(Notice::Held(partner.into())),
        ("gone", partner) if !partner.is_empty() => Some(Notice::Gone(partner.into())),
        ("revoked", key) if !key.is_empty() => Some(Notice::Revoked(key.into())),
        _ => None,
    }
}

/// How long a listener that lost the database waits before connecting again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Takes a partner's next send slot if it is within the horizon: one statement, timed on the
/// database's clock (microseconds). A slot beyond the horizon writes nothing; the answer then
/// says when the first free slot is, as the statement's snapshot saw it.
const RESERVE: &str = "\
WITH clock AS (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now
), taken AS (
    INSERT INTO rate_limits AS r (partner_id, tat)
    SELECT $1, clock.now + $2 FROM clock
    ON CONFLICT (partner_id) DO UPDATE
        SET tat = GREATEST(r.tat, (SELECT now FROM clock)) + $2
        WHERE GREATEST(r.tat, (SELECT now FROM clock)) <= (SELECT now FROM clock) + $3
    RETURNING r.tat
)
SELECT clock.now, (SELECT tat FROM taken), (SELECT tat FROM rate_limits WHERE partner_id = $1)
FROM clock";

impl PgStore {
    /// Tells every listening worker `notice`; [`Notice::Due`] on the channel an accept that
    /// leaves deliveries due notifies too.
    pub async fn notify(&self, notice: &Notice) -> Result<()> {
        let Some((channel, payload)) = encode(notice) else {
            return Ok(());
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Calls `on` with every notice received until `shutdown` is cancelled.
    ///
    /// A lost connection is made again (after [`RECONNECT_AFTER`] when the database does not
    /// answer); notices sent meanwhile are lost, so `on` gets [`Notice::Missed`] whenever
    /// listening starts, the first time included.
    pub fn watch(
        &self,
        on: impl Fn(Notice) + Send + 'static,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut listening: Option<PgListener> = None;
            loop {
                let listener = match &mut listening {
                    Some(listener) => listener,
                    None => {
                        let connected = async {
                            let mut listener = PgListener::connect_with(&pool).await?;
                            listener.listen_all([DUE_CHANNEL, PARTNERS_CHANNEL]).await?;
                            Ok::<_, sqlx::Error>(listener)
                        };
                        let connected = tokio::select! {
                            () = shutdown.cancelled() => return,
                            connected = connected => connected,
                        };
                        match connected {
                            Ok(listener) => {
                                on(Notice::Missed);
                                listening.insert(listener)
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot listen for due deliveries; trying again");
                                tokio::select! {
                                    () = shutdown.cancelled() => return,
                                    () = tokio::time::sleep(RECONNECT_AFTER) => continue,
                                }
                            }
                        }
                    }
                };
                let received = tokio::select! {
                    () = shutdown.cancelled() => return,
                    received = listener.try_recv() => received,
                };
                match received {
                    Ok(Some(notification)) => {
                        if let Some(notice) = decode(notification.channel(), notification.payload()) {
                            on(notice);
                        }
                    }
                    // The connection was lost and made again: what was sent meanwhile is lost.
                    Ok(None) => on(Notice::Missed),
                    Err(e) => {
                        listening = None;
                        if shutdown.is_cancelled() {
                            return;
                        }
                        tracing::warn!(error = %e, "listening for due deliveries failed; listening again");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(RECONNECT_AFTER) => {}
                        }
                    }
                }
            }
        })
    }

    /// Takes `partner_id`'s next send slot at `rate` per second if it comes within `horizon`
    /// (see [`Store::reserve_rate_slot`](crate::store::Store::reserve_rate_slot)).
    pub async fn reserve_rate_slot(&self, partner_id: &str, rate: u32, horizon: Duration) -> Result<RateSlot> {
        let interval = 1_000_000 / i64::from(rate.max(1));
        let horizon = i64::try_from(horizon.as_micros()).unwrap_or(i64::MAX / 4);
        let (now, taken, tat): (i64, Option<i64>, Option<i64>) = sqlx::query_as(RESERVE)
            .bind(partner_id)
            .bind(interval)
            .bind(horizon)
            .fetch_one(&self.pool)
            .await?;
        let micros = |us: i64| Duration::from_micros(us.max(0) as u64);
        Ok(match taken {
            Some(tat) => RateSlot::Wait(micros(tat - interval - now)),
            // A row another worker inserted after this statement's snapshot: its slot is taken
            // and the next one is an interval away.
            None => RateSlot::Beyond(micros(tat.map_or(interval, |tat| tat - now))),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::store::Durability;
    use crate::store::tests::{postgres_schema, postgres_url};

    /// A store on a fresh schema, and its URL for more stores on the same schema.
    async fn store() -> Option<(PgStore, String)> {
        let url = postgres_schema(&postgres_url()?).await;
        let store = PgStore::open(&url, Durability::Process).await.expect("the store opens");
        Some((store, url))
    }

    /// Waits up to 5 s for `count` to pass `above`.
    async fn woken(count: &AtomicUsize, above: usize, what: &str) {
        let start = Instant::now();
        while count.load(Ordering::SeqCst) <= above {
            assert!(start.elapsed() < Duration::from_secs(5), "not woken: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The database's clock, in microseconds.
    async fn db_now(store: &PgStore) -> i64 {
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
            .fetch_one(&store.pool)
            .await
            .expect("the clock")
    }

    /// A process's notices reach the workers listening in another, and listening survives the
    /// database dropping the listener's connection.
    #[tokio::test]
    async fn a_notice_wakes_a_listener_in_another_process() {
        let Some((notifier, url)) = store().await else { return };
        let listener = PgStore::open(&url, Durability::Process).await.expect("the store opens");
        let wakes = Arc::new(AtomicUsize::new(0));
        let missed = Arc::new(AtomicUsize::new(0));
        let partners = Arc::new(std::sync::Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let watching = listener.watch(
            {
                let (wakes, missed, partners) = (wakes.clone(), missed.clone(), partners.clone());
                move |notice| match notice {
                    Notice::Due => {
                        wakes.fetch_add(1, Ordering::SeqCst);
                    }
                    Notice::Missed => {
                        missed.fetch_add(1, Ordering::SeqCst);
                    }
                    other => partners.lock().unwrap().push(other),
                }
            },
            shutdown.clone(),
        );
        woken(&missed, 0, "once listening, for what was sent before").await;
        let before = wakes.load(Ordering::SeqCst);
        notifier.notify(&Notice::Due).await.expect("a notice");
        woken(&wakes, before, "by a notice").await;

        // Other tests' listeners share the channels: only this test's partner ids count.
        let (held, gone, revoked) = (
            Notice::Held("ptn_notice_held".into()),
            Notice::Gone("ptn_notice_gone".into()),
            Notice::Revoked("key_notice_revoked".into()),
        );
        notifier.notify(&held).await.expect("a notice");
        notifier.notify(&gone).await.expect("a notice");
        notifier.notify(&revoked).await.expect("a notice");
        // Lost notices are only ever observed, never sent.
        notifier.notify(&Notice::Missed).await.expect("nothing to send");
        let start = Instant::now();
        loop {
            let got: Vec<Notice> = partners
                .lock()
                .unwrap()
                .iter()
                .filter(|n| **n == held || **n == gone || **n == revoked)
                .cloned()
                .collect();
            if got == [held.clone(), gone.clone(), revoked.clone()] {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "partner notices arrive in order: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            decode(PARTNERS_CHANNEL, "sent:ptn_x"),
            None,
            "an unknown notice is left out"
        );
        assert_eq!(decode(PARTNERS_CHANNEL, "held:"), None);

        // The server ends every listening connection (other tests' listeners reconnect too).
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN \"postwire_due\"%'",
        )
        .fetch_all(&notifier.pool)
        .await
        .expect("listeners ended");
        assert!(ended.contains(&true), "the listener's connection was found and ended");
        let before = missed.load(Ordering::SeqCst);
        woken(&missed, before, "once listening again, for what was sent meanwhile").await;
        // Listening again may take a moment after the wake; notices keep coming until one lands.
        let before = wakes.load(Ordering::SeqCst);
        let start = Instant::now();
        while wakes.load(Ordering::SeqCst) == before {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "a notice after the reconnection wakes"
            );
            notifier.notify(&Notice::Due).await.expect("a notice");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), watching)
            .await
            .expect("listening stops at shutdown")
            .expect("without a panic");
        listener.close().await;
        notifier.close().await;
    }

    /// Slots are spaced by the emission interval on the database's clock; one beyond the
    /// horizon is refused without being taken, and says when the first free slot is; other
    /// partners are not held back.
    #[tokio::test]
    async fn slots_are_spaced_and_far_ones_refused() {
        let Some((store, _)) = store().await else { return };
        // One a second, and room for three: wide enough for a loaded machine's statements.
        let horizon = Duration::from_millis(2_500);
        let start = Instant::now();
        let mut first_done = Duration::ZERO;
        for i in 0..3u32 {
            let sent = start.elapsed();
            let RateSlot::Wait(wait) = store.reserve_rate_slot("ptn_a", 1, horizon).await.expect("a slot") else {
                panic!("slot {i} is within the horizon");
            };
            let done = start.elapsed();
            if i == 0 {
                first_done = done;
            }
            // Each wait is counted from its own statement, which ran between `sent` and `done`,
            // and the first statement between 0 and `first_done`.
            let expected = Duration::from_secs(1) * i;
            assert!(
                wait + done + Duration::from_millis(2) >= expected
                    && (wait + sent).saturating_sub(first_done) <= expected + Duration::from_millis(2),
                "slot {i}: a wait of {wait:?} between {sent:?} and {done:?}, not {expected:?} after the first"
            );
        }
        let tat: i64 = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE partner_id = 'ptn_a'")
            .fetch_one(&store.pool)
            .await
            .expect("a row");
        let RateSlot::Beyond(after) = store.reserve_rate_slot("ptn_a", 1, horizon).await.expect("an answer") else {
            panic!("the fourth slot, 3 s on, is beyond the horizon");
        };
        assert!(after > horizon && after <= Duration::from_secs(3), "{after:?}");
        let unchanged: i64 = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE partner_id = 'ptn_a'")
            .fetch_one(&store.pool)
            .await
            .expect("a row");
        assert_eq!(unchanged, tat, "a refused slot is not taken");
        assert_eq!(
            store.reserve_rate_slot("ptn_b", 1, horizon).await.expect("a slot"),
            RateSlot::Wait(Duration::ZERO),
            "another partner is not held back"
        );
        store.close().await;
    }

    /// Workers of several processes taking slots at once each take a slot of their own: the
    /// partner's next free slot ends as far on as every slot taken, none lost.
    #[tokio::test]
    async fn slots_taken_at_once_by_many_processes_are_all_counted() {
        let Some((first, url)) = store().await else { return };
        let second = PgStore::open(&url, Durability::Process).await.expect("the store opens");
        let before = db_now(&first).await;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for n in 0..50 {
            let store = if n % 2 == 0 { first.clone() } else { second.clone() };
            tasks.push(tokio::spawn(async move {
                store
                    .reserve_rate_slot("ptn_busy", 10, Duration::from_secs(30))
                    .await
                    .expect("a slot")
            }));
        }
        let mut waits = Vec::new();
        for task in tasks {
            match task.await.expect("no panic") {
                RateSlot::Wait(wait) => waits.push(wait),
                beyond => panic!("every slot is within the horizon: {beyond:?}"),
            }
        }
        let took = started.elapsed();
        let after = db_now(&first).await;
        let tat: i64 = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE partner_id = 'ptn_busy'")
            .fetch_one(&first.pool)
            .await
            .expect("a row");
        assert!(
            tat >= before + 50 * 100_000 && tat <= after + 50 * 100_000,
            "50 slots 100 ms apart from the first: {} ms on",
            (tat - before) / 1000
        );
        // Each wait is counted from its own statement, all of them within `took`.
        waits.sort();
        assert!(
            waits[49] + took >= Duration::from_millis(4_900),
            "the last slot is 4.9 s after the first: waits {:?} after {took:?}",
            waits[49]
        );
        first.close().await;
        second.close().await;
    }
}
