//! The postback log's chart: postbacks per hour over the last day, by outcome, drawn on the
//! server as SVG (no script, no image fetched from elsewhere).

use std::fmt::Write as _;

use crate::store::{DeliveryFilter, Status, Store, StoreError};

/// Hours the chart shows.
const HOURS: usize = 24;

/// Most deliveries read for the chart: enough for a day of most partners, bounded for the
/// busiest. Past it, the earliest hours show fewer than there were.
const MOST: usize = 5_000;

const HOUR_MS: i64 = 3_600_000;

/// Postbacks created in each of the last 24 hours, oldest first: delivered, failed, and still
/// on their way (pending, blocked, held).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hour {
    /// Delivered.
    pub delivered: u64,
    /// Failed for good.
    pub failed: u64,
    /// Still on their way.
    pub waiting: u64,
}

/// The last 24 hours of `partner`'s postbacks as of `now`, hour by hour.
pub async fn hours(store: &Store, partner: &str, now: i64) -> Result<Vec<Hour>, StoreError> {
    let start = (now / HOUR_MS - HOURS as i64 + 1) * HOUR_MS;
    let filter = DeliveryFilter {
        since: Some(start),
        ..DeliveryFilter::default()
    };
    let mut hours = vec![Hour::default(); HOURS];
    let (mut read, mut before) = (0, None::<String>);
    while read < MOST {
        let page = store.deliveries_where(partner, &filter, before.as_deref(), 500).await?;
        for d in &page {
            let Some(hour) = hours.get_mut(((d.created_at - start) / HOUR_MS) as usize) else {
                continue;
            };
            match d.status {
                Status::Delivered => hour.delivered += 1,
                Status::Failed => hour.failed += 1,
                _ => hour.waiting += 1,
            }
        }
        read += page.len();
        match page.last() {
            Some(last) if page.len() == 500 => before = Some(last.id.to_string()),
            _ => break,
        }
    }
    Ok(hours)
}

/// The chart: one stacked bar an hour, with a text summary for screen readers.
pub fn svg(hours: &[Hour]) -> String {
    let (width, height, bar) = (480, 120, 20);
    let top = hours
        .iter()
        .map(|h| h.delivered + h.failed + h.waiting)
        .max()
        .unwrap_or(0)
        .max(1);
    let total = |f: fn(&Hour) -> u64| hours.iter().map(f).sum::<u64>();
    let (delivered, failed, waiting) = (total(|h| h.delivered), total(|h| h.failed), total(|h| h.waiting));
    let mut out = format!(
        "<figure class=\"chart\"><svg viewBox=\"0 0 {width} {}\" role=\"img\" aria-labelledby=\"chart-caption\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        height + 16
    );
    for (i, hour) in hours.iter().enumerate() {
        let x = i * bar + 2;
        let mut y = height as u64;
        for (count, class) in [
            (hour.delivered, "delivered"),
            (hour.failed, "failed"),
            (hour.waiting, "pending"),
        ] {
            if count == 0 {
                continue;
            }
            let h = (count * (height as u64 - 4) / top).max(1);
            y -= h;
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{h}\"><title>{count} {class}</title></rect>",
                bar - 4
            );
        }
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"0\" y1=\"{height}\" x2=\"{width}\" y2=\"{height}\"/>\
         <text x=\"2\" y=\"{}\">24 h ago</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">now</text></svg>\
         <figcaption id=\"chart-caption\">Postbacks per hour, last 24 hours: \
         <span class=\"key delivered\">{delivered} delivered</span>, <span class=\"key failed\">{failed} failed</span>, \
         <span class=\"key pending\">{waiting} on their way</span> (highest hour: {top}).</figcaption></figure>",
        height + 14,
        width - 2,
        height + 14
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_by_outcome_and_scale_to_the_busiest_hour() {
        let mut hours = vec![Hour::default(); HOURS];
        hours[23] = Hour {
            delivered: 3,
            failed: 1,
            waiting: 0,
        };
        hours[0].failed = 2;
        let svg = svg(&hours);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("3 delivered, ") || svg.contains(">3 delivered<"), "{svg}");
        assert!(svg.contains("3 failed"), "{svg}");
        assert!(svg.contains("highest hour: 4"), "{svg}");
    }
}
