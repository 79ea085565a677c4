//! Retention end to end: an engine started in-process with a window of seconds and a short
//! prune interval, delivering to real receivers on 127.0.0.1. Finished postbacks older than the
//! window disappear from the API; postbacks still on their way stay, however old.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

/// The window: long enough that a postback just delivered is still listed when the test reads
/// it, short enough that the test waits seconds for the older ones to go.
const WINDOW: &str = "2s";

/// The ids of a partner's deliveries as listed.
async fn listed(engine: &Engine, partner: &Partner) -> Vec<String> {
    engine
        .deliveries(partner, None)
        .await
        .iter()
        .map(|d| d["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// `GET .../deliveries/{id}` answers 404.
async fn gone(engine: &Engine, partner: &Partner, delivery_id: &str) -> bool {
    let answer = engine
        .get(&format!("/v1/partners/{}/deliveries/{delivery_id}", partner.id))
        .await;
    match answer.status {
        StatusCode::NOT_FOUND => true,
        StatusCode::OK => false,
        other => panic!("unexpected answer {other}: {answer:?}"),
    }
}

/// A delivered postback goes once its last activity is older than the window (its delivery
/// answers 404 and leaves the listing); a held one (its endpoint answered 410), a pending one
/// (delayed 30 days) and a resolved one blocked behind it stay, with their attempts; a newer
/// delivered one is listed; the event of a removed postback, sent again, is new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_postbacks_older_than_the_window_disappear_and_undelivered_ones_stay() {
    let ok = Receiver::always(Reply::ok("ok")).await;
    let gone_receiver = Receiver::always(Reply::status(410)).await;
    let engine = Engine::start_with(|options| {
        options.retention = Some(WINDOW.into());
        options.prune_interval = Some("100ms".into());
    })
    .await;
    let partner = engine
        .partner_with("kept briefly", &simple_settings(&ok.url("/hook")))
        .await;
    let disabled = engine
        .partner_with("gone", &simple_settings(&gone_receiver.url("/hook")))
        .await;
    let mut delayed_settings = simple_settings(&ok.url("/later"));
    delayed_settings["min_delay_secs"] = json!(30 * 24 * 3600);
    let delayed = engine.partner_with("delayed", &delayed_settings).await;

    // On their way: held, pending, blocked.
    let held = engine.send_event(&created(&disabled, "evt_held", "inq-held")).await;
    engine.wait_status(&disabled, &held, "held").await;
    let now = chrono::Utc::now().to_rfc3339();
    let mut waiting_event = created(&delayed, "evt_pending", "inq-wait");
    waiting_event["occurred_at"] = Value::String(now.clone());
    let pending = engine.send_event(&waiting_event).await;
    let mut blocked_event = resolved(&delayed, "evt_blocked", "inq-wait");
    blocked_event["occurred_at"] = Value::String(now);
    let blocked = engine.send_event(&blocked_event).await;
    engine.wait_status(&delayed, &blocked, "blocked").await;

    // Delivered, then removed.
    let old_event = created(&partner, "evt_old", "inq-old");
    let old = engine.send_event(&old_event).await;
    let delivered = engine.wait_status(&partner, &old, "delivered").await;
    assert_eq!(attempts(&delivered).len(), 1);
    eventually(&format!("delivery {old} removed"), async || {
        gone(&engine, &partner, &old).await.then_some(())
    })
    .await;
    assert!(!listed(&engine, &partner).await.contains(&old));

    // Older than the window by now, and kept.
    let kept = engine.delivery(&disabled, &held).await;
    assert_eq!(kept["delivery"]["status"], "held", "{kept}");
    assert_eq!(attempts(&kept).len(), 1, "{kept}");
    assert_eq!(verdicts(&kept), ["disable"]);
    let kept = engine.delivery(&delayed, &pending).await;
    assert_eq!(kept["delivery"]["status"], "pending", "{kept}");
    let kept = engine.delivery(&delayed, &blocked).await;
    assert_eq!(kept["delivery"]["status"], "blocked", "{kept}");
    assert_eq!(listed(&engine, &delayed).await.len(), 2);
    assert_eq!(listed(&engine, &disabled).await, [held.as_str()]);

    // A newer one is listed; the removed event, sent again, makes a new delivery.
    let newer = engine.send_event(&created(&partner, "evt_new", "inq-new")).await;
    engine.wait_status(&partner, &newer, "delivered").await;
    assert!(listed(&engine, &partner).await.contains(&newer));
    let again = engine.send_event(&old_event).await;
    assert_ne!(again, old);
    engine.wait_status(&partner, &again, "delivered").await;
    assert_eq!(ok.hits().iter().filter(|hit| hit.webhook_id() == old).count(), 1);

    engine.assert_healthy().await;
    engine.stop().await;
}
