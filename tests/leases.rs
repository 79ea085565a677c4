//! Leases end to end: a store that fails while a claimed postback's endpoint is loaded costs
//! the postback no attempt. It goes back to the store, is claimed again, and is delivered once
//! the store answers again, with one attempt in its log.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// A connection of the test's own to the engine's database file.
fn database(engine: &Engine) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(engine.database_dir().join("pw.db")).expect("the database opens");
    db.busy_timeout(Duration::from_secs(10)).expect("a busy timeout");
    db
}

/// The delivery's row: status, attempts, lease number, and whether a lease holds it.
fn row(db: &rusqlite::Connection, id: &str) -> (String, i64, i64, bool) {
    db.query_row(
        "SELECT status, attempts, lease_seq, leased_until IS NOT NULL FROM deliveries WHERE id = ?1",
        [id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )
    .expect("the delivery's row")
}

/// The partners table is out of reach (renamed away) while the postback is claimed: loading
/// its endpoint fails in the store. The postback is given back, its lease ended and no attempt
/// counted, rather than failed; once the table is back it is delivered, the receiver having
/// seen one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_loading_the_endpoint_gives_the_postback_back() {
    let receiver = Receiver::always(Reply::ok(r#"{"ok":true}"#)).await;
    let engine = Engine::start().await;
    let mut settings = simple_settings(&receiver.url("/hook"));
    // Due a moment after it is accepted, so that accepting it reads the partner before the
    // table goes away, and the worker claims it from the store after.
    settings["min_delay_secs"] = json!(2);
    let partner = engine.partner_with("store-fails", &settings).await;
    let mut event = created(&partner, "evt_store_fails", "inq-1");
    event["occurred_at"] = chrono::Utc::now().to_rfc3339().into();
    let id = engine.send_event(&event).await;

    let db = database(&engine);
    db.execute_batch("ALTER TABLE partners RENAME TO partners_away")
        .expect("the table is renamed");
    // A claim leases the delivery; only a give-back ends the lease of a pending delivery
    // without an attempt (a lapsed lease stays set until the next claim).
    let given_back = eventually("the postback given back after the store failed", async || {
        let (status, attempts, lease_seq, leased) = row(&db, &id);
        assert_eq!((status.as_str(), attempts), ("pending", 0), "no attempt is burnt");
        (lease_seq >= 1 && !leased).then_some(lease_seq)
    })
    .await;
    assert!(receiver.hits().is_empty(), "nothing was sent");
    db.execute_batch("ALTER TABLE partners_away RENAME TO partners")
        .expect("the table is back");

    let delivered = engine.wait_status(&partner, &id, "delivered").await;
    assert_eq!(verdicts(&delivered), ["success"], "{delivered}");
    assert_eq!(delivered["delivery"]["attempts"], 1, "{delivered}");
    assert_eq!(receiver.hits().len(), 1);
    let (_, _, lease_seq, _) = row(&db, &id);
    assert!(lease_seq > given_back, "claimed again after the give-back");
    engine.stop().await;
}
