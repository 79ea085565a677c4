//! Set-based statements through sqlx (giving claims back): one statement writes many rows
//! instead of one statement per row.
//!
//! Every statement the SQLite driver runs is a round trip to the connection's own thread, which
//! costs tens of microseconds, far more than SQLite's work on one row. Writing rows in statements
//! of up to 64 turns the thousands of round trips of a large batch into dozens. Statement sizes
//! come from a fixed set (64, 32, 16, 8, 4, 2 and 1 rows), so only a few statement texts are ever
//! prepared, and they stay in the connection's statement cache.

use std::collections::HashSet;

use sqlx::{Sqlite, Transaction};

use super::Result;
use crate::event::Event;

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

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sqlx::Row;

    use super::*;
    use crate::settings::NotificationSettings;
    use crate::store::{Attempt, Durability, Lease, Next, Outcome, Store, new_id, now_ms};

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
