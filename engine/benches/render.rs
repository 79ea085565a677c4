//! Rendering a typical postback: a 10-field JSON body, a URL with a placeholder and one
//! templated header, from compiled settings.
//!
//! Run with `cargo bench -p postwire --bench render`. The baseline in the same run formats the
//! same 10 values into the same JSON shape with `serde_json` (no templates, no escaping choices),
//! so the figure can be read as a ratio on a noisy machine.

use criterion::{Criterion, criterion_group, criterion_main};
use postwire::event::{Event, EventType};
use postwire::settings::NotificationSettings;
use std::hint::black_box;

const SETTINGS: &str = r#"{
  "url": "https://partner.example/postbacks?inquiry={ActionInquiryId}",
  "headers": {"X-Partner": "{MediaPartnerId}"},
  "body_template": "{\"inquiry\":\"{ActionInquiryId}\",\"order\":\"{OrderId}\",\"campaign\":\"{CampaignName}\",\"amount\":{TransactionAmount},\"currency\":\"{Currency}\",\"payout\":{ExpectedPayout},\"type\":\"{InquiryType}\",\"date\":\"{TransactionDate}\",\"notes\":\"{InquiryNotes}\",\"sub1\":\"{SubId1}\"}"
}"#;

fn render(c: &mut Criterion) {
    let settings = NotificationSettings::from_json(SETTINGS).expect("valid settings");
    let event = Event::sample(EventType::ActionInquiryCreated, "ptn_bench");
    let mut group = c.benchmark_group("render");
    group.bench_function("postwire_10_field_json", |b| {
        b.iter(|| black_box(settings.render(black_box(&event))))
    });
    group.bench_function("baseline_serde_json_10_fields", |b| {
        b.iter(|| {
            let e = black_box(&event);
            let text = |name| {
                let mut s = String::new();
                if let Some(v) = e.get(name) {
                    v.write_text(&mut s);
                }
                s
            };
            let body = serde_json::json!({
                "inquiry": text("ActionInquiryId"), "order": text("OrderId"), "campaign": text("CampaignName"),
                "amount": text("TransactionAmount"), "currency": text("Currency"), "payout": text("ExpectedPayout"),
                "type": text("InquiryType"), "date": text("TransactionDate"), "notes": text("InquiryNotes"),
                "sub1": text("SubId1"),
            });
            black_box(serde_json::to_string(&body).expect("serializes"))
        })
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
