//! The pipeline's hot writes (accepting events, recording attempts, claiming deliveries and
//! giving them back) on the write connection's SQLite handle itself, on the store's thread.
//!
//! Through sqlx, every statement is a round trip to the connection's own thread, and every row
//! a statement returns is a message of its own: for the few microseconds SQLite spends on a row,
//! two threads wake each other several times. Here the store's thread borrows the connection's
//! handle from sqlx ([`sqlx::sqlite::LockedSqliteHandle`]) for one transaction and runs it
//! straight through, statement after statement, with rusqlite (built on the same SQLite library).
//! The connection stays sqlx's: its settings, migrations and every other query are unchanged.
//! Statements are prepared once per transaction and finalized with it, so nothing of rusqlite's
//! outlives the borrow.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sqlx::SqlitePool;

use super::{ForAccept, PENDING_UNLESS_DISABLED, Result};
use crate::event::{Event, EventType};
use crate::settings::NotificationSettings;
use crate::store::{
    ACTION_INQUIRY, Accepted, Claimed, ClaimedEvent, Lease, Leased, Next, Outcome, Status, StoreError, new_id,
};

/// Runs `work` in one transaction (`BEGIN IMMEDIATE` to `COMMIT`) on the write connection's
/// handle; an error rolls it back. `taken` runs once the connection is this caller's.
pub(super) async fn transaction<T>(
    write: &SqlitePool,
    taken: impl FnOnce(),
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut connection = write.acquire().await?;
    taken();
    let mut locked = connection.lock_handle().await?;
    // SAFETY: while `locked` lives, sqlx's connection thread waits and nothing else uses the
    // handle, which stays open. The wrapper made here does not close the handle, and dropping
    // it (before `locked`) finalizes the statements it prepared, so sqlx's connection can be
    // closed later as usual.
    let mut db = unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) }?;
    let result = (|| {
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = work(&tx)?;
        tx.commit()?;
        Ok(out)
    })();
    drop(db);
    drop(locked);
    result
}

/// Records events and their deliveries, event after event (see
/// [`Store::accept_leasing`](super::Store::accept_leasing)). Up to `lease.max` of the new
/// deliveries that are pending and due now are leased to the caller. `bodies` are the texts to
/// store of the events that keep no [text as sent](Event::sent_text).
pub(super) fn accept(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    bodies: &[Option<String>],
    now: i64,
    lease: Lease,
) -> Result<(Vec<Accepted>, Vec<Leased>)> {
    let mut endpoints: HashMap<&str, Option<ForAccept>> = HashMap::new();
    for event in events {
        if !endpoints.contains_key(event.partner_id.as_str()) {
            endpoints.insert(&event.partner_id, load_for_accept(tx, &event.partner_id)?);
        }
    }
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (partner_id, id, event_type, occurred_at, body, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    )?;
    // The deliveries of an event sent before, found through its inquiry.
    let mut earlier = tx.prepare_cached(
        "SELECT id FROM deliveries INDEXED BY deliveries_by_inquiry
         WHERE partner_id = ?1 AND inquiry_id = ?2 AND event_id = ?3 ORDER BY id",
    )?;
    // A created postback goes before resolved ones of its inquiry that have not been tried and
    // that no worker holds. They are looked for before the update: an UPDATE opens every index
    // of the table even when no row matches, which costs several times the look.
    const UNTRIED_RESOLVED: &str = "partner_id = ?1 AND inquiry_id = ?2 AND event_type = ?3 AND attempts = 0
         AND status IN ('pending', 'held') AND (leased_until IS NULL OR leased_until <= ?4)";
    let mut resolved_to_block = tx.prepare_cached(&format!(
        "SELECT 1 FROM deliveries INDEXED BY deliveries_by_inquiry WHERE {UNTRIED_RESOLVED} LIMIT 1"
    ))?;
    let mut block_resolved = tx.prepare_cached(&format!(
        "UPDATE deliveries SET status = 'blocked', blocked_by = ?5 WHERE {UNTRIED_RESOLVED}"
    ))?;
    // A resolved postback waits for the created one of its inquiry while that is on its way.
    // Without the hint SQLite walks the partner's deliveries newest first (an index that spares
    // the sort) and, when no created postback is on its way, reads all of them.
    let mut created_on_its_way = tx.prepare_cached(
        "SELECT id FROM deliveries INDEXED BY deliveries_by_inquiry
         WHERE partner_id = ?1 AND inquiry_id = ?2 AND event_type = ?3
             AND status IN ('pending', 'blocked', 'held')
         ORDER BY id DESC LIMIT 1",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (id, partner_id, event_id, event_type, inquiry_id, status, next_at,
             blocked_by, created_at, updated_at, leased_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
    )?;

    let mut accepted = Vec::with_capacity(events.len());
    let mut leased = Vec::new();
    for (at, (event, body)) in events.iter().zip(bodies).enumerate() {
        let occurred_at = event.occurred_at.timestamp_millis();
        let body = body
            .as_deref()
            .or_else(|| event.sent_text())
            .expect("an event keeps its text or has it written");
        let inserted = insert_event.execute(params![
            event.partner_id,
            event.id,
            event.event_type.as_str(),
            occurred_at,
            body,
            now
        ])?;
        if inserted == 0 {
            let mut deliveries_through = |inquiry: &str| {
                earlier
                    .query_map(params![event.partner_id, inquiry, event.id], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            };
            let mut delivery_ids = deliveries_through(event.action_inquiry_id())?;
            if delivery_ids.is_empty() {
                // Sent again with other data: the inquiry is the one the event was first sent with.
                let first: String = tx
                    .prepare_cached("SELECT body FROM events WHERE partner_id = ?1 AND id = ?2")?
                    .query_row(params![event.partner_id, event.id], |row| row.get(0))?;
                if let Ok(first) = Event::from_json(&first)
                    && first.action_inquiry_id() != event.action_inquiry_id()
                {
                    delivery_ids = deliveries_through(first.action_inquiry_id())?;
                }
            }
            accepted.push(Accepted {
                event_id: event.id.clone(),
                delivery_ids,
                duplicate: true,
            });
            continue;
        }
        let mut delivery_ids = Vec::new();
        if let Some(Some(endpoint)) = endpoints.get(event.partner_id.as_str())
            && endpoint.settings.events.contains(&event.event_type)
        {
            let id = new_id("dlv");
            let inquiry = event.action_inquiry_id();
            let due = (occurred_at + endpoint.settings.min_delay_secs as i64 * 1000).max(now);
            let blocked_by: Option<String> = match event.event_type {
                EventType::ActionInquiryResolved => created_on_its_way
                    .query_row(
                        params![event.partner_id, inquiry, EventType::ActionInquiryCreated.as_str()],
                        |row| row.get(0),
                    )
                    .optional()?,
                EventType::ActionInquiryCreated => {
                    let resolved = EventType::ActionInquiryResolved.as_str();
                    if resolved_to_block.exists(params![event.partner_id, inquiry, resolved, now])? {
                        block_resolved.execute(params![event.partner_id, inquiry, resolved, now, id])?;
                    }
                    None
                }
            };
            let status = match (&blocked_by, endpoint.disabled) {
                (Some(_), _) => Status::Blocked,
                (None, true) => Status::Held,
                (None, false) => Status::Pending,
            };
            let lease_it = status == Status::Pending && due <= now && leased.len() < lease.max;
            insert_delivery.execute(params![
                id,
                event.partner_id,
                event.id,
                event.event_type.as_str(),
                inquiry,
                status.as_str(),
                if lease_it { lease.until } else { due },
                blocked_by,
                now,
                lease_it.then_some(lease.until),
            ])?;
            if lease_it {
                leased.push(Leased {
                    event: at,
                    delivery_id: id.clone(),
                    settings_version: endpoint.version,
                });
            }
            delivery_ids.push(id);
        }
        accepted.push(Accepted {
            event_id: event.id.clone(),
            delivery_ids,
            duplicate: false,
        });
    }
    Ok((accepted, leased))
}

/// The partner's settings, or `None` without settings.
fn load_for_accept(tx: &rusqlite::Transaction<'_>, partner_id: &str) -> Result<Option<ForAccept>> {
    let known = tx
        .prepare_cached("SELECT 1 FROM partners WHERE id = ?1")?
        .query_row([partner_id], |_| Ok(()))
        .optional()?;
    if known.is_none() {
        return Err(StoreError::UnknownPartner(partner_id.to_owned()));
    }
    let row = tx
        .prepare_cached(
            "SELECT body, disabled_at IS NOT NULL, version FROM settings WHERE partner_id = ?1 AND family = ?2",
        )?
        .query_row(params![partner_id, ACTION_INQUIRY], |row| {
            Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    Ok(row.and_then(|(body, disabled, version)| {
        Some(ForAccept {
            settings: serde_json::from_str::<NotificationSettings>(&body).ok()?,
            disabled,
            version,
        })
    }))
}

/// Outcomes a recording writes before it looks whether an accept waits.
const RECORD_STRETCH: usize = 128;

/// Records attempts and moves their deliveries on, outcome after outcome; stops early, at a
/// multiple of [`RECORD_STRETCH`], when `yield_to` counts a waiting accept. Returns how many
/// deliveries that waited for the finished ones may go now, and how many outcomes were recorded.
pub(super) fn record(
    tx: &rusqlite::Transaction<'_>,
    outcomes: &[Outcome],
    now: i64,
    yield_to: Option<&AtomicUsize>,
) -> Result<(u64, usize)> {
    let mut insert_attempt = tx.prepare_cached(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request, response_status,
             response_headers, response_body, verdict, error, plugins)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut finish = tx.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = attempts + 1, last_error = ?3, updated_at = ?4,
             leased_until = NULL
         WHERE id = ?1",
    )?;
    // Postbacks that waited for a finished one go now. Looked for before the update, which
    // opens every index of the table even when no row matches.
    const WAITING_FOR_IT: &str = "blocked_by = ?1 AND status = 'blocked'";
    let mut blocked_by_it = tx.prepare_cached(&format!("SELECT 1 FROM deliveries WHERE {WAITING_FOR_IT} LIMIT 1"))?;
    // Prepared when first needed: most recordings release nothing and retry nothing, and
    // preparing a statement costs as much as running it a few times.
    let mut release = None;
    let mut retry = None;
    let mut released = 0;
    for (i, Outcome { attempt, next }) in outcomes.iter().enumerate() {
        if i > 0 && i % RECORD_STRETCH == 0 && yield_to.is_some_and(|waiting| waiting.load(Ordering::Acquire) > 0) {
            return Ok((released, i));
        }
        insert_attempt.execute(params![
            attempt.id,
            attempt.delivery_id,
            attempt.number,
            attempt.started_at,
            attempt.duration_ms,
            attempt.request.get(),
            attempt.response_status,
            attempt.response_headers.as_ref().map(|h| h.get()),
            attempt.response_body,
            attempt.verdict.as_str(),
            attempt.error,
            attempt.plugins.as_ref().map(ToString::to_string),
        ])?;
        let id = &attempt.delivery_id;
        match next {
            Next::Delivered | Next::Failed => {
                let status = if matches!(next, Next::Delivered) {
                    Status::Delivered
                } else {
                    Status::Failed
                };
                finish.execute(params![id, status.as_str(), attempt.error, now])?;
                if blocked_by_it.exists(params![id])? {
                    let release = prepared(&mut release, tx, || {
                        format!(
                            "UPDATE deliveries SET status = {PENDING_UNLESS_DISABLED}, blocked_by = NULL,
                                 next_at = MAX(next_at, ?2), updated_at = ?2
                             WHERE {WAITING_FOR_IT}"
                        )
                    })?;
                    released += release.execute(params![id, now])? as u64;
                }
            }
            Next::RetryAt(at) => {
                let retry = prepared(&mut retry, tx, || {
                    format!(
                        "UPDATE deliveries SET status = {PENDING_UNLESS_DISABLED}, next_at = ?2,
                             attempts = attempts + 1, last_error = ?3, updated_at = ?4, leased_until = NULL
                         WHERE id = ?1"
                    )
                })?;
                retry.execute(params![id, at, attempt.error, now])?;
            }
            Next::Disable(reason) => disable(tx, id, reason, now)?,
        }
    }
    Ok((released, outcomes.len()))
}

/// The statement in `slot`, prepared from `sql` the first time it is asked for.
fn prepared<'s, 'c>(
    slot: &'s mut Option<rusqlite::CachedStatement<'c>>,
    tx: &'c rusqlite::Transaction<'_>,
    sql: impl FnOnce() -> String,
) -> Result<&'s mut rusqlite::CachedStatement<'c>> {
    if slot.is_none() {
        *slot = Some(tx.prepare_cached(&sql())?);
    }
    Ok(slot.as_mut().expect("prepared above"))
}

/// Records that an attempt disabled its endpoint: the delivery and every pending one of its
/// partner are held until the endpoint is enabled again.
fn disable(tx: &rusqlite::Transaction<'_>, id: &str, reason: &str, now: i64) -> Result<()> {
    let partner_id: String = tx
        .prepare_cached(
            "UPDATE deliveries SET status = 'held', attempts = attempts + 1, last_error = ?2, updated_at = ?3,
                 leased_until = NULL
             WHERE id = ?1 RETURNING partner_id",
        )?
        .query_row(params![id, reason, now], |row| row.get(0))?;
    tx.prepare_cached("UPDATE settings SET disabled_reason = ?2, disabled_at = ?3 WHERE partner_id = ?1")?
        .execute(params![partner_id, reason, now])?;
    tx.prepare_cached(
        "UPDATE deliveries SET status = 'held', updated_at = ?2 WHERE partner_id = ?1 AND status = 'pending'",
    )?
    .execute(params![partner_id, now])?;
    Ok(())
}

/// Claims up to `limit` due deliveries for `lease_ms` (see [`Store::claim`](super::Store::claim)):
/// one statement leases the rows and reads what sending them needs.
pub(super) fn claim(tx: &rusqlite::Transaction<'_>, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
    let mut claim = tx.prepare_cached(
        "UPDATE deliveries SET next_at = ?2, leased_until = ?2, updated_at = ?1
         WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_at <= ?1
                      ORDER BY next_at LIMIT ?3)
         RETURNING id, partner_id, attempts,
             (SELECT e.body FROM events e WHERE e.partner_id = deliveries.partner_id AND e.id = deliveries.event_id),
             COALESCE((SELECT s.version FROM settings s
                       WHERE s.partner_id = deliveries.partner_id AND s.family = ?4), 0)",
    )?;
    let claimed = claim
        .query_map(params![now, now + lease_ms, limit, ACTION_INQUIRY], |row| {
            Ok(Claimed {
                delivery_id: row.get(0)?,
                partner_id: row.get(1)?,
                attempts: row.get(2)?,
                event: ClaimedEvent::Stored(row.get(3)?),
                settings_version: row.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<Claimed>>>()?;
    Ok(claimed)
}

/// Moves pending deliveries to new due times, one after another, and ends their leases.
pub(super) fn reschedule(tx: &rusqlite::Transaction<'_>, due: &[(String, i64)]) -> Result<()> {
    let mut reschedule = tx.prepare_cached(
        "UPDATE deliveries SET next_at = ?2, leased_until = NULL WHERE id = ?1 AND status = 'pending'",
    )?;
    for (id, at) in due {
        reschedule.execute(params![id, at])?;
    }
    Ok(())
}

/// True when no two events share an id or an inquiry: then no event of the batch bears on how
/// another is recorded, and every new delivery that is due may be leased at once.
pub(super) fn independent(events: &[Event]) -> bool {
    let mut ids = HashSet::with_capacity(events.len());
    let mut inquiries = HashSet::with_capacity(events.len());
    events.iter().all(|event| {
        ids.insert((event.partner_id.as_str(), event.id.as_str()))
            && inquiries.insert((event.partner_id.as_str(), event.action_inquiry_id()))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sqlx::Row;

    use super::*;
    use crate::settings::NotificationSettings;
    use crate::store::{Attempt, AttemptVerdict, Durability, Lease, Next, Outcome, Store, new_id, now_ms};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("batch.db").display());
        let store = Store::open(&url, Durability::Process).await.expect("the store opens");
        (dir, store)
    }

    async fn partner(store: &Store) -> String {
        let partner = store.create_partner("batch").await.expect("a partner");
        let settings = NotificationSettings::validate(&json!({
            "url": "https://partner.example/hook",
            "body_template": "{\"id\":\"{EventId}\"}",
        }))
        .expect("valid settings");
        let body = serde_json::to_string(settings.settings()).expect("settings serialize");
        store.put_settings(&partner.id, &body, now_ms()).await.expect("saved");
        partner.id
    }

    fn event(partner: &str, id: &str, kind: &str, inquiry: &str) -> Event {
        let mut data = json!({"ActionInquiryId": inquiry});
        if kind == "resolved" {
            data["ResolutionStatus"] = json!("VALID");
        }
        Event::from_value(
            &json!({"id": id, "type": format!("action_inquiry.{kind}"), "partner_id": partner,
            "occurred_at": "2026-11-20T14:03:00Z", "data": data}),
        )
        .expect("a valid event")
    }

    /// Events of `partner` from (id, kind, inquiry) rows.
    fn events(partner: &str, rows: &[(&str, &str, &str)]) -> Vec<Event> {
        rows.iter()
            .map(|(id, kind, inquiry)| event(partner, id, kind, inquiry))
            .collect()
    }

    /// Per delivery: its event, status, the event of the delivery it waits for, attempts,
    /// whether it is leased.
    async fn deliveries(store: &Store, partner: &str) -> Vec<(String, String, Option<String>, i64, bool)> {
        sqlx::query(
            "SELECT d.event_id, d.status, b.event_id, d.attempts, d.leased_until IS NOT NULL
             FROM deliveries d LEFT JOIN deliveries b ON b.id = d.blocked_by
             WHERE d.partner_id = ?1 ORDER BY d.event_id",
        )
        .bind(partner)
        .fetch_all(&store.write)
        .await
        .expect("deliveries")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect()
    }

    /// Accepts `events` as one batch, or (`batched` false) one accept per event, in order.
    async fn accept_as(store: &Store, partner: &str, events: &[(&str, &str, &str)], batched: bool) -> Vec<String> {
        let events = self::events(partner, events);
        let accepted = if batched {
            store.accept(&events, now_ms()).await.expect("accepted")
        } else {
            let mut accepted = Vec::new();
            for event in events {
                accepted.extend(store.accept(&[event], now_ms()).await.expect("accepted"));
            }
            accepted
        };
        accepted
            .iter()
            .map(|a| {
                format!(
                    "{} duplicate={} deliveries={}",
                    a.event_id,
                    a.duplicate,
                    a.delivery_ids.len()
                )
            })
            .collect()
    }

    #[test]
    fn independence() {
        let a = event("p", "e1", "created", "i1");
        let b = event("p", "e2", "resolved", "i1");
        let c = event("p", "e1", "created", "i2");
        let d = event("q", "e1", "created", "i1");
        assert!(independent(&[a.clone(), d.clone()]));
        assert!(!independent(&[a.clone(), b]));
        assert!(!independent(&[a, c]));
    }

    /// An event read from valid text is stored as it was sent, and reads back as itself.
    #[tokio::test]
    async fn an_event_read_from_text_is_stored_as_sent_and_claimed_as_itself() {
        let (_dir, store) = store().await;
        let partner = partner(&store).await;
        // Valid, but not as the engine writes it: spaces and new lines, another key order, an
        // offset, an integer id.
        let sent = format!(
            r#"{{ "data": {{"OrderId": "ORD-1", "ActionInquiryId": 1000123}},
                "occurred_at": "2026-11-20T15:03:00+01:00", "partner_id": "{partner}",
                "type": "action_inquiry.created", "id": "evt_sent" }}"#
        );
        let kept = Event::from_valid_json_kept(&sent).expect("a valid envelope");
        assert_eq!(kept.sent_text(), Some(sent.as_str()));
        let written = event(&partner, "evt_written", "created", "1000124");
        assert_eq!(written.sent_text(), None);
        store
            .accept(&[kept.clone(), written.clone()], now_ms())
            .await
            .expect("accepted");
        let bodies: Vec<(String, String)> = sqlx::query_as("SELECT id, body FROM events ORDER BY id")
            .fetch_all(&store.write)
            .await
            .expect("events");
        assert_eq!(
            bodies,
            vec![
                ("evt_sent".to_owned(), sent.clone()),
                ("evt_written".to_owned(), written.to_json_string())
            ]
        );
        let mut claimed: Vec<Event> = store
            .claim(now_ms(), 30_000, 10)
            .await
            .expect("claimed")
            .into_iter()
            .map(|claimed| claimed.event.read().expect("a readable event"))
            .collect();
        claimed.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(claimed, vec![kept.clone(), written]);
        assert_eq!(claimed[0].to_json_string(), kept.to_json_string());
    }

    /// Whitespace cannot make a stored event larger than its values: a long text is not kept.
    #[tokio::test]
    async fn a_padded_event_is_stored_compactly() {
        let (_dir, store) = store().await;
        let partner = partner(&store).await;
        let padding = " ".repeat(crate::event::MAX_KEPT_TEXT);
        let sent = format!(
            r#"{{"id": "evt_padded",{padding}"type": "action_inquiry.created", "partner_id": "{partner}",
                "occurred_at": "2026-11-20T14:03:00Z", "data": {{"ActionInquiryId": "1000123"}}}}"#
        );
        let event = Event::from_valid_json_kept(&sent).expect("a valid envelope");
        assert_eq!(event.sent_text(), None);
        store
            .accept(std::slice::from_ref(&event), now_ms())
            .await
            .expect("accepted");
        let body: String = sqlx::query_scalar("SELECT body FROM events WHERE id = 'evt_padded'")
            .fetch_one(&store.write)
            .await
            .expect("the event");
        assert_eq!(body, event.to_json_string());
        assert!(body.len() < 1024, "{} bytes", body.len());
    }

    /// An event sent again answers with the deliveries it had, whatever data it is sent with
    /// this time, and gets no new one.
    #[tokio::test]
    async fn an_event_sent_again_answers_with_its_deliveries() {
        let (_dir, store) = store().await;
        let partner = partner(&store).await;
        let first = store
            .accept(
                &events(&partner, &[("c1", "created", "i1"), ("c2", "created", "i2")]),
                now_ms(),
            )
            .await
            .expect("accepted");
        // Again, once as it was, once naming another inquiry (and one with deliveries of its
        // own), and once as a resolved event of a third.
        for again in [
            ("c1", "created", "i1"),
            ("c1", "created", "i2"),
            ("c1", "resolved", "i9"),
        ] {
            let answer = store
                .accept(&events(&partner, &[again]), now_ms())
                .await
                .expect("accepted");
            assert_eq!(answer.len(), 1);
            assert!(answer[0].duplicate, "{again:?}");
            assert_eq!(answer[0].delivery_ids, first[0].delivery_ids, "{again:?}");
        }
        assert_eq!(first[0].delivery_ids.len(), 1);
        assert_eq!(deliveries(&store, &partner).await.len(), 2);
    }

    /// The batched accept writes what accepting the same events one by one writes.
    #[tokio::test]
    async fn batched_accept_matches_one_by_one() {
        let (_dir, store) = store().await;
        let (one, batched) = (partner(&store).await, partner(&store).await);
        let steps: [&[(&str, &str, &str)]; 4] = [
            &[
                ("c1", "created", "i1"),
                ("r2", "resolved", "i2"),
                ("c3", "created", "i3"),
            ],
            // r1 waits for c1; c2 goes before the untried r2; c3 again is a duplicate.
            &[
                ("r1", "resolved", "i1"),
                ("c2", "created", "i2"),
                ("c3", "created", "i3"),
                ("c4", "created", "i4"),
            ],
            // The endpoint is disabled from here on (see below).
            &[
                ("c5", "created", "i5"),
                ("r4", "resolved", "i4"),
                ("r7", "resolved", "i7"),
            ],
            // c7 goes before the held, untried r7.
            &[
                ("c7", "created", "i7"),
                ("r5", "resolved", "i5"),
                ("r3", "resolved", "i3"),
            ],
        ];
        for (i, step) in steps.iter().enumerate() {
            if i == 2 {
                sqlx::query("UPDATE settings SET disabled_at = 1, disabled_reason = 'test'")
                    .execute(&store.write)
                    .await
                    .expect("disabled");
            }
            let expected = accept_as(&store, &one, step, false).await;
            assert_eq!(accept_as(&store, &batched, step, true).await, expected, "step {i}");
        }
        let expected = deliveries(&store, &one).await;
        assert_eq!(deliveries(&store, &batched).await, expected);
        let status = |id: &str| expected.iter().find(|d| d.0 == id).cloned().expect("a delivery");
        assert_eq!(status("r1").1, "blocked");
        assert_eq!(status("r1").2.as_deref(), Some("c1"));
        assert_eq!(status("r2").2.as_deref(), Some("c2"));
        assert_eq!(status("c5").1, "held");
        assert_eq!(status("r7").1, "blocked");
        assert_eq!(status("r7").2.as_deref(), Some("c7"));
        assert_eq!(status("r3").2.as_deref(), Some("c3"));
        assert_eq!(expected.len(), 12);
    }

    fn attempt(delivery_id: &str, error: Option<&str>) -> Attempt {
        Attempt {
            id: new_id("att"),
            delivery_id: delivery_id.to_owned(),
            number: 1,
            started_at: now_ms(),
            duration_ms: 3,
            request: serde_json::value::to_raw_value(&json!({"method": "POST"})).expect("json"),
            response_status: Some(200),
            response_headers: Some(
                serde_json::value::to_raw_value(&json!([["content-type", "text/plain"]])).expect("json"),
            ),
            response_body: Some("ok".into()),
            verdict: AttemptVerdict::Success,
            error: error.map(str::to_owned),
            plugins: None,
        }
    }

    /// A successful first attempt for each claimed delivery.
    fn delivered(claimed: &[Claimed]) -> Vec<Outcome> {
        claimed
            .iter()
            .map(|c| Outcome {
                attempt: attempt(&c.delivery_id, None),
                next: Next::Delivered,
            })
            .collect()
    }

    /// An accept leases at most `max` of the deliveries due now, and only those: a blocked, a
    /// held or a delayed delivery waits in the store. A leased one is not claimed again until
    /// its lease ends.
    #[tokio::test]
    async fn accept_leases_only_deliveries_due_now() {
        let (_dir, store) = store().await;
        let ready = partner(&store).await;
        let now = now_ms();
        // c1 is recorded first, so r1 waits for it.
        store
            .accept(&[event(&ready, "c1", "created", "i1")], now)
            .await
            .expect("accepted");
        let events = events(
            &ready,
            &[
                ("r1", "resolved", "i1"),
                ("c2", "created", "i2"),
                ("c3", "created", "i3"),
                ("c4", "created", "i4"),
            ],
        );
        let lease = Lease {
            until: now + 60_000,
            max: 2,
        };
        let (accepted, leased) = store
            .accept_leasing(std::sync::Arc::new(events), now, lease)
            .await
            .expect("accepted");
        assert_eq!(accepted.len(), 4);
        let leased_events: Vec<usize> = leased.iter().map(|l| l.event).collect();
        assert_eq!(
            leased_events,
            [1, 2],
            "c2 and c3: r1 is blocked and the lease holds two"
        );
        assert!(leased.iter().all(|l| l.settings_version == 1));
        assert_eq!(leased[0].delivery_id, accepted[1].delivery_ids[0]);
        let rows = deliveries(&store, &ready).await;
        let is_leased = |event: &str| rows.iter().find(|d| d.0 == event).expect("a delivery").4;
        assert!(is_leased("c2") && is_leased("c3"));
        assert!(!is_leased("c1") && !is_leased("c4") && !is_leased("r1"));
        // Claims find c1 and c4 only; the leased ones are not due until their lease ends.
        let claimed = store.claim(now_ms(), 1_000, 100).await.expect("claimed");
        let mut ids: Vec<String> = claimed.into_iter().map(|c| c.delivery_id).collect();
        ids.sort();
        let mut expected = vec![accepted[3].delivery_ids[0].clone()];
        expected.extend(
            sqlx::query_scalar::<_, String>("SELECT id FROM deliveries WHERE event_id = 'c1'")
                .fetch_all(&store.write)
                .await
                .expect("c1"),
        );
        expected.sort();
        assert_eq!(ids, expected);

        // A delayed delivery and one of a disabled endpoint are never leased.
        let delayed = store.create_partner("delayed").await.expect("a partner").id;
        let settings = NotificationSettings::validate(&json!({
            "url": "https://partner.example/hook",
            "body_template": "{}",
            "min_delay_secs": 600,
        }))
        .expect("valid settings");
        let body = serde_json::to_string(settings.settings()).expect("settings serialize");
        store.put_settings(&delayed, &body, now).await.expect("saved");
        let held = partner(&store).await;
        sqlx::query("UPDATE settings SET disabled_at = 1, disabled_reason = 'test' WHERE partner_id = ?1")
            .bind(&held)
            .execute(&store.write)
            .await
            .expect("disabled");
        let recent = Event::from_value(
            &json!({"id": "d1", "type": "action_inquiry.created", "partner_id": delayed,
            "occurred_at": chrono::Utc::now().to_rfc3339(), "data": {"ActionInquiryId": "i1"}}),
        )
        .expect("a valid event");
        let events = vec![recent, event(&held, "h1", "created", "i1")];
        let (accepted, leased) = store
            .accept_leasing(std::sync::Arc::new(events), now_ms(), lease)
            .await
            .expect("accepted");
        assert!(accepted.iter().all(|a| a.delivery_ids.len() == 1));
        assert!(leased.is_empty(), "{leased:?}");
    }

    /// Accepts run at the opener's priority; recordings, claims and give-backs below it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_writes_run_below_accepts() {
        use crate::priority::current as nice;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("threads.db").display());
        let store = Store::open_with(&url, Durability::Process, 4)
            .await
            .expect("the store opens");
        let base = nice();
        let accepting = store.on_writer(async { Ok(nice()) }).await.expect("runs");
        let background = store.on_handle(|_| Ok(nice())).await.expect("runs");
        assert_eq!(accepting, base);
        assert_eq!(background, (base + 4).min(19));
        store.close().await;
    }

    /// The write connection checkpoints the log in short steps (see `CHECKPOINT_PAGES`).
    #[tokio::test]
    async fn the_writer_checkpoints_in_short_steps() {
        let (_dir, store) = store().await;
        let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&store.write)
            .await
            .expect("the setting");
        assert_eq!(pages, i64::from(super::super::CHECKPOINT_PAGES));
        store.close().await;
    }

    /// The statements prepared on the borrowed handle are finalized with each transaction, so
    /// sqlx can still close its connection: the last one to close checkpoints the log and
    /// removes it, leaving one clean database file.
    #[tokio::test]
    async fn closing_after_direct_writes_leaves_a_clean_file() {
        let (dir, store) = store().await;
        let partner = partner(&store).await;
        let events = events(&partner, &[("c1", "created", "i1"), ("c2", "created", "i2")]);
        store.accept(&events, now_ms()).await.expect("accepted");
        let claimed = store.claim(now_ms(), 60_000, 10).await.expect("claimed");
        assert_eq!(claimed.len(), 2);
        let outcomes = delivered(&claimed);
        store.record(outcomes.into(), now_ms()).await.expect("recorded");
        let wal = dir.path().join("batch.db-wal");
        assert!(wal.exists(), "the log is in use while the store is open");
        store.close().await;
        assert!(!wal.exists(), "every connection closed, the last one removed the log");
    }

    /// A batch naming a partner that does not exist is refused whole: the events of the known
    /// partner before it are not kept either.
    #[tokio::test]
    async fn a_batch_with_an_unknown_partner_records_nothing() {
        let (_dir, store) = store().await;
        let known = partner(&store).await;
        let mut batch = events(&known, &[("c1", "created", "i1")]);
        batch.extend(events("ptn_nobody", &[("c2", "created", "i2")]));
        let refused = store.accept(&batch, now_ms()).await;
        assert!(
            matches!(&refused, Err(StoreError::UnknownPartner(id)) if id == "ptn_nobody"),
            "{refused:?}"
        );
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&store.write)
            .await
            .expect("a count");
        assert_eq!(events, 0);
        // The connection is usable again: the next accept goes through.
        let accepted = store
            .accept(&self::events(&known, &[("c1", "created", "i1")]), now_ms())
            .await
            .expect("accepted");
        assert_eq!(accepted[0].delivery_ids.len(), 1);
    }

    /// A recording that fails halfway keeps nothing of what it did, and the next one is
    /// recorded.
    #[tokio::test]
    async fn a_failed_recording_is_rolled_back() {
        let (_dir, store) = store().await;
        let partner = partner(&store).await;
        store
            .accept(&events(&partner, &[("c1", "created", "i1")]), now_ms())
            .await
            .expect("accepted");
        let claimed = store.claim(now_ms(), 60_000, 10).await.expect("claimed");
        let real = Outcome {
            attempt: attempt(&claimed[0].delivery_id, None),
            next: Next::Delivered,
        };
        // No such delivery: its attempt breaks the foreign key, after the first was written.
        let ghost = Outcome {
            attempt: attempt("dlv_ghost", None),
            next: Next::Delivered,
        };
        let failed = store.record(vec![real.clone(), ghost].into(), now_ms()).await;
        assert!(failed.is_err(), "{failed:?}");
        let count = |sql: &'static str| {
            let write = store.write.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&write)
                    .await
                    .expect("a count")
            }
        };
        assert_eq!(count("SELECT COUNT(*) FROM attempts").await, 0);
        assert_eq!(
            count("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'").await,
            0
        );
        store.record(vec![real].into(), now_ms()).await.expect("recorded");
        assert_eq!(count("SELECT COUNT(*) FROM attempts").await, 1);
        assert_eq!(
            count("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'").await,
            1
        );
    }

    /// A recording stops after a stretch when an accept waits; the next one goes on from there.
    #[tokio::test]
    async fn a_recording_stops_for_a_waiting_accept() {
        let (_dir, store) = store().await;
        let partner = partner(&store).await;
        let n = RECORD_STRETCH * 2 + 10;
        let rows: Vec<(String, &str, String)> = (0..n).map(|i| (format!("c{i}"), "created", format!("i{i}"))).collect();
        let rows: Vec<(&str, &str, &str)> = rows.iter().map(|(e, k, q)| (e.as_str(), *k, q.as_str())).collect();
        store
            .accept(&events(&partner, &rows), now_ms())
            .await
            .expect("accepted");
        let claimed = store.claim(now_ms(), 60_000, n as i64).await.expect("claimed");
        let outcomes = delivered(&claimed);
        let waiting = AtomicUsize::new(1);
        let first = transaction(
            &store.write,
            || {},
            |tx| record(tx, &outcomes, now_ms(), Some(&waiting)),
        )
        .await
        .expect("recorded");
        assert_eq!(first, (0, RECORD_STRETCH), "one stretch, then the accept goes");
        waiting.store(0, Ordering::Release);
        let rest = transaction(
            &store.write,
            || {},
            |tx| record(tx, &outcomes[RECORD_STRETCH..], now_ms(), Some(&waiting)),
        )
        .await
        .expect("recorded");
        assert_eq!(rest, (0, n - RECORD_STRETCH), "nobody waits: the rest at once");
        let delivered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'")
            .fetch_one(&store.write)
            .await
            .expect("a count");
        assert_eq!(delivered as usize, n);
    }

    /// Outcomes move their deliveries on in the order they come, a second outcome of the same
    /// delivery and a disabling one included.
    #[tokio::test]
    async fn record_moves_deliveries_on_in_order() {
        let (_dir, store) = store().await;
        let partner = partner(&store).await;
        let events = events(
            &partner,
            &[
                ("c1", "created", "i1"),
                ("r1", "resolved", "i1"),
                ("c2", "created", "i2"),
                ("c3", "created", "i3"),
                ("c4", "created", "i4"),
                ("c5", "created", "i5"),
            ],
        );
        let accepted = store.accept(&events, now_ms()).await.expect("accepted");
        let id = |event: &str| {
            accepted
                .iter()
                .find(|a| a.event_id == event)
                .expect("accepted")
                .delivery_ids[0]
                .clone()
        };
        let claimed = store.claim(now_ms(), 60_000, 100).await.expect("claimed");
        assert_eq!(claimed.len(), 5, "all but the blocked r1");
        let later = now_ms() + 3_600_000;
        let outcomes = vec![
            Outcome {
                attempt: attempt(&id("c1"), None),
                next: Next::Delivered,
            },
            Outcome {
                attempt: attempt(&id("c2"), Some("gone")),
                next: Next::Failed,
            },
            Outcome {
                attempt: attempt(&id("c3"), Some("busy")),
                next: Next::RetryAt(later),
            },
            Outcome {
                attempt: attempt(&id("c4"), Some("busy")),
                next: Next::RetryAt(later),
            },
            Outcome {
                attempt: attempt(&id("c4"), None),
                next: Next::Delivered,
            },
            Outcome {
                attempt: attempt(&id("c5"), Some("410")),
                next: Next::Disable("410".into()),
            },
        ];
        store.record(outcomes.into(), now_ms()).await.expect("recorded");
        let state = deliveries(&store, &partner).await;
        let expect = |event: &str, status: &str, attempts: i64| {
            let row = state.iter().find(|d| d.0 == event).expect("a delivery");
            assert_eq!(
                (row.1.as_str(), row.2.clone(), row.3, row.4),
                (status, None, attempts, false),
                "{event}"
            );
        };
        expect("c1", "delivered", 1);
        // Released by c1, then held with every pending delivery when c5 disabled the endpoint.
        expect("r1", "held", 0);
        expect("c2", "failed", 1);
        expect("c3", "held", 1);
        expect("c4", "delivered", 2);
        expect("c5", "held", 1);
        let (attempts, last_error, next_at): (i64, Option<String>, i64) =
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM attempts), last_error, next_at FROM deliveries WHERE id = ?1")
                .bind(id("c3"))
                .fetch_one(&store.write)
                .await
                .expect("a row");
        assert_eq!((attempts, last_error.as_deref(), next_at), (6, Some("busy"), later));
        let disabled: Option<String> = sqlx::query_scalar("SELECT disabled_reason FROM settings WHERE partner_id = ?1")
            .bind(&partner)
            .fetch_one(&store.write)
            .await
            .expect("settings");
        assert_eq!(disabled.as_deref(), Some("410"));

        // Giving claims back: the last time given for a delivery wins.
        store.enable(&partner, now_ms()).await.expect("enabled");
        let due = [(id("c3"), 5), (id("c3"), 7), (id("r1"), 9)];
        store.reschedule(&due).await.expect("rescheduled");
        let times: Vec<i64> =
            sqlx::query_scalar("SELECT next_at FROM deliveries WHERE id IN (?1, ?2) ORDER BY next_at")
                .bind(id("c3"))
                .bind(id("r1"))
                .fetch_all(&store.write)
                .await
                .expect("rows");
        assert_eq!(times, [7, 9]);
    }
}
