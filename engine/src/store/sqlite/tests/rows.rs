//! Tests of what shows only in the SQLite backend's rows: stored event texts, leases, an
//! endpoint disabled by hand, the rows a batch leaves behind.

use serde_json::json;
use sqlx::Row;

use crate::id::DeliveryId;

use super::{store, write};
use crate::event::Event;
use crate::settings::NotificationSettings;
use crate::store::tests::{attempt, event, events, lease_of, partner};
use crate::store::{GiveBack, Lease, Next, Outcome, Store, StoreError, now_ms};

/// Per delivery: its event, status, the event of the delivery it waits for, attempts,
/// whether it is leased.
async fn deliveries(store: &Store, partner: &str) -> Vec<(String, String, Option<String>, i64, bool)> {
    sqlx::query(
        "SELECT d.event_id, d.status, b.event_id, d.attempts, d.leased_until IS NOT NULL
         FROM deliveries d LEFT JOIN deliveries b ON b.id = d.blocked_by
         WHERE d.partner_id = ?1 ORDER BY d.event_id",
    )
    .bind(partner)
    .fetch_all(write(store))
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
        .fetch_all(write(&store))
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
        .fetch_one(write(&store))
        .await
        .expect("the event");
    assert_eq!(body, event.to_json_string());
    assert!(body.len() < 1024, "{} bytes", body.len());
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
                .execute(write(&store))
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
    let mut ids: Vec<DeliveryId> = claimed.into_iter().map(|c| c.delivery_id).collect();
    ids.sort();
    let mut expected = vec![accepted[3].delivery_ids[0].clone()];
    expected.extend(
        sqlx::query_scalar::<_, DeliveryId>("SELECT id FROM deliveries WHERE event_id = 'c1'")
            .fetch_all(write(&store))
            .await
            .expect("c1"),
    );
    expected.sort();
    assert_eq!(ids, expected);

    // A delayed delivery and one of a disabled endpoint are never leased.
    let delayed = store
        .create_partner("delayed", str::to_owned)
        .await
        .expect("a partner")
        .id;
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
        .execute(write(&store))
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
        .fetch_one(write(&store))
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
            lease_seq: lease_of(&claimed, &id("c1")),
        },
        Outcome {
            attempt: attempt(&id("c2"), Some("gone")),
            next: Next::Failed,
            lease_seq: lease_of(&claimed, &id("c2")),
        },
        Outcome {
            attempt: attempt(&id("c3"), Some("busy")),
            next: Next::RetryAt(later),
            lease_seq: lease_of(&claimed, &id("c3")),
        },
        Outcome {
            attempt: attempt(&id("c4"), Some("busy")),
            next: Next::RetryAt(later),
            lease_seq: lease_of(&claimed, &id("c4")),
        },
        Outcome {
            attempt: attempt(&id("c4"), None),
            next: Next::Delivered,
            lease_seq: lease_of(&claimed, &id("c4")),
        },
        Outcome {
            attempt: attempt(&id("c5"), Some("410")),
            next: Next::Disable("410".into()),
            lease_seq: lease_of(&claimed, &id("c5")),
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
            .fetch_one(write(&store))
            .await
            .expect("a row");
    assert_eq!((attempts, last_error.as_deref(), next_at), (6, Some("busy"), later));
    let disabled: Option<String> = sqlx::query_scalar("SELECT disabled_reason FROM settings WHERE partner_id = ?1")
        .bind(&partner)
        .fetch_one(write(&store))
        .await
        .expect("settings");
    assert_eq!(disabled.as_deref(), Some("410"));

    // Giving claims back: the last time given for a delivery wins.
    store.enable(&partner, now_ms()).await.expect("enabled");
    let back = |event: &str, lease_seq: i64, due: i64| GiveBack {
        delivery_id: id(event),
        lease_seq,
        due,
    };
    let c3 = lease_of(&claimed, &id("c3"));
    // r1 was blocked when the others were claimed: it never had a lease, and gives back under
    // none; a lease that no longer holds its delivery gives nothing back.
    let due = [
        back("c3", c3, 5),
        back("c3", c3, 7),
        back("r1", 0, 9),
        back("r1", 1, 11),
    ];
    store.reschedule(&due).await.expect("rescheduled");
    let times: Vec<i64> = sqlx::query_scalar("SELECT next_at FROM deliveries WHERE id IN (?1, ?2) ORDER BY next_at")
        .bind(id("c3"))
        .bind(id("r1"))
        .fetch_all(write(&store))
        .await
        .expect("rows");
    assert_eq!(times, [7, 9]);
}
