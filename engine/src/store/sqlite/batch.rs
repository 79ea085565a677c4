//! Set-based statements for the store's hot paths (accepting events, recording attempts, giving
//! claims back): one statement writes many rows instead of one statement per row.
//!
//! Every statement the SQLite driver runs is a round trip to the connection's own thread, which
//! costs tens of microseconds, far more than SQLite's work on one row. Writing rows in statements
//! of up to 64 turns the thousands of round trips of a large batch into dozens. Statement sizes
//! come from a fixed set (64, 32, 16, 8, 4, 2 and 1 rows), so only a few statement texts are ever
//! prepared, and they stay in the connection's statement cache.

use std::collections::{HashMap, HashSet};

use sqlx::{Row, Sqlite, Transaction};

use super::{ForAccept, PENDING_UNLESS_DISABLED, Result, load_for_accept};
use crate::event::{Event, EventType};
use crate::store::{Accepted, Attempt, Lease, Leased, Next, Outcome, Status, new_id};

/// Rows per statement, largest first; every count of rows is a sum of these.
const SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// `rows` cut into slices of the sizes in [`SIZES`].
fn split<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = SIZES.into_iter().find(|size| *size <= rows.len())?;
        let (head, tail) = rows.split_at(size);
        rows = tail;
        Some(head)
    })
}

/// `(?, ?), (?, ?)`: `rows` rows of `columns` parameters.
fn values(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// `?, ?, ?`
fn list(items: usize) -> String {
    vec!["?"; items].join(", ")
}

/// Inserts attempts.
pub(super) async fn insert_attempts(tx: &mut Transaction<'_, Sqlite>, attempts: &[&Attempt]) -> Result<()> {
    for chunk in split(attempts) {
        let sql = format!(
            "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request, response_status,
                 response_headers, response_body, verdict, error, plugins)
             VALUES {}",
            values(chunk.len(), 12)
        );
        let mut query = sqlx::query(&sql);
        for attempt in chunk {
            query = query
                .bind(&attempt.id)
                .bind(&attempt.delivery_id)
                .bind(attempt.number)
                .bind(attempt.started_at)
                .bind(attempt.duration_ms)
                .bind(attempt.request.get())
                .bind(attempt.response_status)
                .bind(attempt.response_headers.as_ref().map(|h| h.get()))
                .bind(&attempt.response_body)
                .bind(&attempt.verdict)
                .bind(&attempt.error)
                .bind(attempt.plugins.as_ref().map(ToString::to_string));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Moves on the deliveries of outcomes that are delivered, failed or retried, no two of the same
/// delivery (their attempts are inserted already). The result is that of recording them one by
/// one with the delivered and failed ones first, an order the recorder might have met them in.
/// Returns how many deliveries that waited for the finished ones were released.
pub(super) async fn apply(tx: &mut Transaction<'_, Sqlite>, run: &[&Outcome], now: i64) -> Result<u64> {
    let mut released = 0;
    let mut finished = Vec::new();
    let mut retried = Vec::new();
    for outcome in run {
        let attempt = &outcome.attempt;
        match &outcome.next {
            Next::Delivered => finished.push((attempt, Status::Delivered)),
            Next::Failed => finished.push((attempt, Status::Failed)),
            Next::RetryAt(at) => retried.push((attempt, *at)),
            Next::Disable(_) => unreachable!("disabling outcomes are recorded one by one"),
        }
    }
    for chunk in split(&finished) {
        let sql = format!(
            "UPDATE deliveries SET status = j.column2, attempts = attempts + 1, last_error = j.column3,
                 updated_at = ?, leased_until = NULL
             FROM (VALUES {}) AS j WHERE deliveries.id = j.column1",
            values(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (attempt, status) in chunk {
            query = query
                .bind(&attempt.delivery_id)
                .bind(status.as_str())
                .bind(&attempt.error);
        }
        query.execute(&mut **tx).await?;
    }
    // Postbacks that waited for the finished ones go now.
    for chunk in split(&finished) {
        let sql = format!(
            "UPDATE deliveries SET status = {PENDING_UNLESS_DISABLED}, blocked_by = NULL,
                 next_at = MAX(next_at, ?), updated_at = ?
             WHERE blocked_by IN ({}) AND status = 'blocked'",
            list(chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(now).bind(now);
        for (attempt, _) in chunk {
            query = query.bind(&attempt.delivery_id);
        }
        released += query.execute(&mut **tx).await?.rows_affected();
    }
    for chunk in split(&retried) {
        let sql = format!(
            "UPDATE deliveries SET status = {PENDING_UNLESS_DISABLED}, next_at = j.column2, attempts = attempts + 1,
                 last_error = j.column3, updated_at = ?, leased_until = NULL
             FROM (VALUES {}) AS j WHERE deliveries.id = j.column1",
            values(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (attempt, at) in chunk {
            query = query.bind(&attempt.delivery_id).bind(*at).bind(&attempt.error);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(released)
}

/// Moves pending deliveries to new due times, no two of the same delivery.
pub(super) async fn reschedule(tx: &mut Transaction<'_, Sqlite>, due: &[(&str, i64)]) -> Result<()> {
    for chunk in split(due) {
        let sql = format!(
            "UPDATE deliveries SET next_at = j.column2, leased_until = NULL
             FROM (VALUES {}) AS j WHERE deliveries.id = j.column1 AND deliveries.status = 'pending'",
            values(chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (id, at) in chunk {
            query = query.bind(*id).bind(*at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// True when no two events share an id or an inquiry: then no event of the batch bears on how
/// another is recorded, and [`accept`] may record them together.
pub(super) fn independent(events: &[Event]) -> bool {
    let mut ids = HashSet::with_capacity(events.len());
    let mut inquiries = HashSet::with_capacity(events.len());
    events.iter().all(|event| {
        ids.insert((event.partner_id.as_str(), event.id.as_str()))
            && inquiries.insert((event.partner_id.as_str(), event.action_inquiry_id()))
    })
}

/// A new delivery, before it is inserted.
struct NewDelivery<'a> {
    /// Its event's position in the batch.
    at: usize,
    id: String,
    event: &'a Event,
    due: i64,
    disabled: bool,
    blocked_by: Option<String>,
    settings_version: i64,
}

/// [`Store::accept_leasing`](super::Store::accept_leasing) for [`independent`] events: the same
/// rows, written by a few statements for the whole batch. Since no two events share an id or an
/// inquiry, each event meets only rows that were there before the batch, whatever the order.
/// `bodies` are the events' texts to store.
pub(super) async fn accept(
    tx: &mut Transaction<'_, Sqlite>,
    events: &[Event],
    bodies: &[String],
    now: i64,
    lease: Lease,
) -> Result<(Vec<Accepted>, Vec<Leased>)> {
    let mut endpoints: HashMap<&str, Option<ForAccept>> = HashMap::new();
    for event in events {
        if !endpoints.contains_key(event.partner_id.as_str()) {
            let endpoint = load_for_accept(tx, &event.partner_id).await?;
            endpoints.insert(&event.partner_id, endpoint);
        }
    }

    // The events. Rows come back from SQLite one message at a time, so rather than have the
    // inserted ones returned, the few events sent before are looked up afterwards, and only
    // when some insert did nothing: new rows take rowids above the largest before the batch.
    let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM events")
        .fetch_one(&mut **tx)
        .await?;
    let rows: Vec<(&Event, &String)> = events.iter().zip(bodies).collect();
    let mut inserted = 0;
    for chunk in split(&rows) {
        let sql = format!(
            "INSERT INTO events (partner_id, id, event_type, occurred_at, body, received_at) VALUES {}
             ON CONFLICT DO NOTHING",
            values(chunk.len(), 6)
        );
        let mut query = sqlx::query(&sql);
        for (event, body) in chunk {
            query = query
                .bind(&event.partner_id)
                .bind(&event.id)
                .bind(event.event_type.as_str())
                .bind(event.occurred_at.timestamp_millis())
                .bind(body)
                .bind(now);
        }
        inserted += query.execute(&mut **tx).await?.rows_affected() as usize;
    }
    let mut sent_before: HashSet<(String, String)> = HashSet::new();
    if inserted < events.len() {
        for chunk in split(events) {
            let sql = format!(
                "SELECT partner_id, id FROM events WHERE rowid <= ? AND (partner_id, id) IN (VALUES {})",
                values(chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql).bind(before);
            for event in chunk {
                query = query.bind(&event.partner_id).bind(&event.id);
            }
            for row in query.fetch_all(&mut **tx).await? {
                sent_before.insert((row.get(0), row.get(1)));
            }
        }
    }

    let mut accepted: Vec<Option<Accepted>> = Vec::with_capacity(events.len());
    let mut new = Vec::new();
    for (at, event) in events.iter().enumerate() {
        if !sent_before.is_empty() && sent_before.contains(&(event.partner_id.clone(), event.id.clone())) {
            let delivery_ids = sqlx::query_scalar("SELECT id FROM deliveries WHERE partner_id = ?1 AND event_id = ?2")
                .bind(&event.partner_id)
                .bind(&event.id)
                .fetch_all(&mut **tx)
                .await?;
            accepted.push(Some(Accepted {
                event_id: event.id.clone(),
                delivery_ids,
                duplicate: true,
            }));
            continue;
        }
        accepted.push(None);
        if let Some(Some(endpoint)) = endpoints.get(event.partner_id.as_str())
            && endpoint.settings.events.contains(&event.event_type)
        {
            let occurred_at = event.occurred_at.timestamp_millis();
            new.push(NewDelivery {
                at,
                id: new_id("dlv"),
                event,
                due: (occurred_at + endpoint.settings.min_delay_secs as i64 * 1000).max(now),
                disabled: endpoint.disabled,
                blocked_by: None,
                settings_version: endpoint.version,
            });
        }
    }

    // A created postback goes before resolved ones of its inquiry that have not been tried yet.
    let created: Vec<&NewDelivery> = new
        .iter()
        .filter(|d| d.event.event_type == EventType::ActionInquiryCreated)
        .collect();
    for chunk in split(&created) {
        let sql = format!(
            "UPDATE deliveries SET status = 'blocked', blocked_by = j.column3
             FROM (VALUES {}) AS j
             WHERE deliveries.partner_id = j.column1 AND deliveries.inquiry_id = j.column2
                 AND deliveries.event_type = ? AND deliveries.attempts = 0 AND deliveries.status IN ('pending', 'held')
                 AND (deliveries.leased_until IS NULL OR deliveries.leased_until <= ?)",
            values(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for delivery in chunk {
            query = query
                .bind(&delivery.event.partner_id)
                .bind(delivery.event.action_inquiry_id())
                .bind(&delivery.id);
        }
        query
            .bind(EventType::ActionInquiryResolved.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    // A resolved postback waits for the created one of its inquiry while that is on its way.
    // (The index hint: see `order_after_created`.)
    let resolved: Vec<usize> = (0..new.len())
        .filter(|&i| new[i].event.event_type == EventType::ActionInquiryResolved)
        .collect();
    for chunk in split(&resolved) {
        let sql = format!(
            "SELECT j.column1, (SELECT d.id FROM deliveries d INDEXED BY deliveries_by_inquiry
                     WHERE d.partner_id = j.column2 AND d.inquiry_id = j.column3 AND d.event_type = ?
                         AND d.status IN ('pending', 'blocked', 'held')
                     ORDER BY d.id DESC LIMIT 1)
             FROM (VALUES {}) AS j",
            values(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql).bind(EventType::ActionInquiryCreated.as_str());
        for &i in chunk {
            query = query
                .bind(i as i64)
                .bind(&new[i].event.partner_id)
                .bind(new[i].event.action_inquiry_id());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let i: i64 = row.get(0);
            new[i as usize].blocked_by = row.get(1);
        }
    }

    // Deliveries due now go to the caller, leased, as many as it takes; the rest wait in the
    // store for a claim.
    let mut leased = Vec::new();
    for chunk in split(&new) {
        let sql = format!(
            "INSERT INTO deliveries (id, partner_id, event_id, event_type, inquiry_id, status, next_at,
                 blocked_by, created_at, updated_at, leased_until)
             VALUES {}",
            values(chunk.len(), 11)
        );
        let mut query = sqlx::query(&sql);
        for delivery in chunk {
            let status = match (&delivery.blocked_by, delivery.disabled) {
                (Some(_), _) => Status::Blocked,
                (None, true) => Status::Held,
                (None, false) => Status::Pending,
            };
            let lease_it = status == Status::Pending && delivery.due <= now && leased.len() < lease.max;
            if lease_it {
                leased.push(Leased {
                    event: delivery.at,
                    delivery_id: delivery.id.clone(),
                    settings_version: delivery.settings_version,
                });
            }
            query = query
                .bind(&delivery.id)
                .bind(&delivery.event.partner_id)
                .bind(&delivery.event.id)
                .bind(delivery.event.event_type.as_str())
                .bind(delivery.event.action_inquiry_id())
                .bind(status.as_str())
                .bind(if lease_it { lease.until } else { delivery.due })
                .bind(&delivery.blocked_by)
                .bind(now)
                .bind(now)
                .bind(lease_it.then_some(lease.until));
        }
        query.execute(&mut **tx).await?;
    }

    let mut delivery_ids: HashMap<usize, String> = new.into_iter().map(|d| (d.at, d.id)).collect();
    let accepted = accepted
        .into_iter()
        .zip(events)
        .enumerate()
        .map(|(at, (done, event))| {
            done.unwrap_or_else(|| Accepted {
                event_id: event.id.clone(),
                delivery_ids: delivery_ids.remove(&at).into_iter().collect(),
                duplicate: false,
            })
        })
        .collect();
    Ok((accepted, leased))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::settings::NotificationSettings;
    use crate::store::{Durability, Store, now_ms};

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

    /// Accepts `events` (ids and inquiries) for `partner`, in one batch or one by one.
    async fn accept_as(store: &Store, partner: &str, events: &[(&str, &str, &str)], batched: bool) -> Vec<String> {
        let events = self::events(partner, events);
        assert!(independent(&events), "the scenario keeps batches independent");
        let mut tx = store.write.begin().await.expect("a transaction");
        let bodies: Vec<String> = events.iter().map(Event::to_json_string).collect();
        let accepted = if batched {
            accept(&mut tx, &events, &bodies, now_ms(), Lease::NONE)
                .await
                .map(|(a, _)| a)
        } else {
            super::super::accept_one_by_one(&mut tx, &events, &bodies, now_ms()).await
        }
        .expect("accepted");
        tx.commit().await.expect("committed");
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
    fn statement_sizes_add_up() {
        let rows: Vec<usize> = (0..1000).collect();
        for n in [0, 1, 2, 3, 63, 64, 65, 100, 127, 1000] {
            let chunks: Vec<&[usize]> = split(&rows[..n]).collect();
            assert_eq!(chunks.concat(), rows[..n].to_vec());
            assert!(chunks.iter().all(|c| SIZES.contains(&c.len())));
        }
        assert_eq!(values(2, 3), "(?, ?, ?), (?, ?, ?)");
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
            verdict: "success".into(),
            error: error.map(str::to_owned),
            plugins: None,
        }
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

    /// Recording in runs gives what recording outcomes one after another gives.
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
