//! Accepting events: the event rows and the deliveries they make, in one transaction, by the
//! [`rules`].
//!
//! Events go in layers of [independent](rules::independent) ones (see `distinct_layers`), a
//! few statements a layer: an event comes in a later layer than every earlier event of the batch
//! with its id or its inquiry, so a batch of created and resolved events takes two layers. Accepts in other processes are kept apart by a transaction-scoped advisory
//! lock per (partner, inquiry), taken in one order, so that a created and a resolved event of
//! one inquiry accepted at once by two processes are recorded one after the other; and a new
//! delivery that waits for another share-locks it, so that a recording finishing that one at
//! the same moment either sees the new one blocked behind it and releases it, or has finished
//! it before the new one looks.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::{PgPool, Postgres, Row, Transaction};

use super::super::Result;
use super::{DUE_CHANNEL, distinct_layers, plan_by_index};
use crate::event::{Event, Value};
use crate::id::DeliveryId;
use crate::settings::NotificationSettings;
use crate::store::{ACTION_INQUIRY, Accepted, Lease, Leased, Status, StoreError, rules};

/// A partner's settings as accepting events needs them.
struct ForAccept {
    settings: NotificationSettings,
    /// The endpoint is disabled.
    disabled: bool,
    version: i64,
}

/// Locks the inquiries of a batch, each once, in the order of their lock keys, so that two
/// accepts sharing inquiries never wait for each other in a circle.
const LOCK_INQUIRIES: &str = "SELECT COUNT(*) FROM (
         SELECT pg_advisory_xact_lock(k) FROM (
             SELECT DISTINCT hashtextextended(p || ' ' || q, 0) AS k
             FROM UNNEST($1::TEXT[], $2::TEXT[]) AS t(p, q)
             ORDER BY k) AS keys) AS locked";

/// Inserts the events of a run that were not recorded before; returns those it inserted.
const INSERT_EVENTS: &str = "INSERT INTO events (partner_id, id, event_type, occurred_at, body, received_at)
     SELECT p, e, k, o, b, $6 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[])
         AS t(p, e, k, o, b)
     ON CONFLICT DO NOTHING
     RETURNING partner_id, id";

/// The deliveries of an event sent before, found through its inquiry.
const EARLIER: &str = "SELECT id FROM deliveries
     WHERE partner_id = $1 AND inquiry_id = $2 AND event_id = $3 ORDER BY id";

/// Inserts the deliveries of a run, in its order (their `seq`).
const INSERT_DELIVERIES: &str = "INSERT INTO deliveries (id, partner_id, event_id, event_type, inquiry_id,
         status, next_at, blocked_by, created_at, updated_at, leased_until, order_id, lease_seq)
     SELECT d, p, e, k, q, s, n, b, $11, $11, l, o, f
     FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[],
                 $8::TEXT[], $9::BIGINT[], $10::TEXT[], $12::BIGINT[])
         WITH ORDINALITY AS t(d, p, e, k, q, s, n, b, l, o, f, at)
     ORDER BY at";

/// The statements that carry the rules of who waits for whom, rendered once.
struct Ordering {
    /// For each new delivery (partner, inquiry, type it [waits for](rules::waits_for)), the
    /// newest delivery of the inquiry of that type that is [on its way](rules::on_its_way),
    /// share-locked so that it stays on its way until this accept commits.
    earlier_on_its_way: String,
    /// Blocks the [untried](rules::untried) deliveries of each inquiry, of the type a new one
    /// [goes before](rules::goes_before), behind the new one.
    block_later: String,
}

static ORDERING: LazyLock<Ordering> = LazyLock::new(|| Ordering {
    earlier_on_its_way: format!(
        "SELECT t.at, w.id FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS t(p, q, k, at)
         CROSS JOIN LATERAL (
             SELECT id FROM deliveries
             WHERE partner_id = t.p AND inquiry_id = t.q AND event_type = t.k AND {}
             ORDER BY id DESC LIMIT 1 FOR SHARE) AS w",
        rules::on_its_way_sql()
    ),
    block_later: format!(
        "UPDATE deliveries SET status = '{}', blocked_by = t.b
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[]) AS t(p, q, k, b)
         WHERE partner_id = t.p AND inquiry_id = t.q AND event_type = t.k AND {}",
        Status::Blocked.as_str(),
        rules::untried_sql("$5")
    ),
});

/// Records events and their deliveries (see
/// [`Store::accept_leasing`](crate::store::Store::accept_leasing)). Up to `lease.max` of the new
/// deliveries that are pending and due now are leased to the caller.
pub(super) async fn accept(
    pool: &PgPool,
    events: &[Event],
    now: i64,
    lease: Lease,
) -> Result<(Vec<Accepted>, Vec<Leased>)> {
    if events.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut tx = pool.begin().await?;
    plan_by_index(&mut tx).await?;
    let (partners, inquiries): (Vec<&str>, Vec<&str>) = events
        .iter()
        .map(|event| (event.partner_id.as_str(), event.action_inquiry_id()))
        .unzip();
    sqlx::query(LOCK_INQUIRIES)
        .bind(&partners)
        .bind(&inquiries)
        .execute(&mut *tx)
        .await?;
    let endpoints = load_for_accept(&mut tx, events).await?;
    let mut done = Done {
        accepted: vec![None; events.len()],
        leased: Vec::new(),
        due_unleased: false,
    };
    let layers = distinct_layers(events, |event| {
        let partner = event.partner_id.as_str();
        [
            (partner, event.id.as_str(), true),
            (partner, event.action_inquiry_id(), false),
        ]
    });
    for layer in layers {
        accept_layer(&mut tx, events, &layer, now, lease, &endpoints, &mut done).await?;
    }
    if done.due_unleased {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(DUE_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let accepted = done
        .accepted
        .into_iter()
        .map(|answer| answer.expect("every event of the batch is in a layer"))
        .collect();
    Ok((accepted, done.leased))
}

/// What the layers of a batch have recorded so far.
struct Done {
    /// The answer for each event of the batch, in its place, once its layer is recorded.
    accepted: Vec<Option<Accepted>>,
    leased: Vec<Leased>,
    /// Whether a new delivery is due now and was not leased: a worker should claim it.
    due_unleased: bool,
}

/// A new delivery of a layer, before it is inserted.
struct New<'a> {
    /// The position of its event in the batch.
    at: usize,
    id: DeliveryId,
    event: &'a Event,
    due: i64,
    disabled: bool,
    version: i64,
    blocked_by: Option<String>,
}

/// Records the events at the positions `layer`, no two of which share an id or an inquiry.
async fn accept_layer(
    tx: &mut Transaction<'_, Postgres>,
    events: &[Event],
    layer: &[usize],
    now: i64,
    lease: Lease,
    endpoints: &HashMap<String, Option<ForAccept>>,
    done: &mut Done,
) -> Result<()> {
    let events_of_run: Vec<&Event> = layer.iter().map(|&at| &events[at]).collect();
    debug_assert!(rules::independent(events_of_run.iter().copied()));
    // The texts to store of events not read from text; the others are stored as sent.
    let bodies: Vec<Cow<'_, str>> = events_of_run
        .iter()
        .map(|event| match event.sent_text() {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(event.to_json_string()),
        })
        .collect();
    let inserted: HashSet<(String, String)> = sqlx::query_as(INSERT_EVENTS)
        .bind(events_of_run.iter().map(|e| e.partner_id.as_str()).collect::<Vec<_>>())
        .bind(events_of_run.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(events_of_run.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(
            events_of_run
                .iter()
                .map(|e| e.occurred_at.timestamp_millis())
                .collect::<Vec<_>>(),
        )
        .bind(bodies.iter().map(|b| b.as_ref()).collect::<Vec<&str>>())
        .bind(now)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();

    let mut new: Vec<New<'_>> = Vec::new();
    for (&at, &event) in layer.iter().zip(&events_of_run) {
        if !inserted.contains(&(event.partner_id.as_str().to_owned(), event.id.as_str().to_owned())) {
            done.accepted[at] = Some(Accepted {
                event_id: event.id.clone(),
                delivery_ids: earlier_deliveries(tx, event).await?,
                duplicate: true,
            });
            continue;
        }
        let mut delivery_ids = Vec::new();
        if let Some(Some(endpoint)) = endpoints.get(event.partner_id.as_str())
            && rules::wants(&endpoint.settings, event.event_type)
        {
            let id = DeliveryId::generate_at(now);
            delivery_ids.push(id.clone());
            new.push(New {
                at,
                id,
                event,
                due: rules::due_at(
                    event.occurred_at.timestamp_millis(),
                    endpoint.settings.min_delay_secs,
                    now,
                ),
                disabled: endpoint.disabled,
                version: endpoint.version,
                blocked_by: None,
            });
        }
        done.accepted[at] = Some(Accepted {
            event_id: event.id.clone(),
            delivery_ids,
            duplicate: false,
        });
    }
    if new.is_empty() {
        return Ok(());
    }

    let ordering = &*ORDERING;
    let waiting: Vec<(usize, &str)> = new
        .iter()
        .enumerate()
        .filter_map(|(n, d)| rules::waits_for(d.event.event_type).map(|first| (n, first.as_str())))
        .collect();
    if !waiting.is_empty() {
        let found: Vec<(i64, String)> = sqlx::query_as(&ordering.earlier_on_its_way)
            .bind(
                waiting
                    .iter()
                    .map(|(n, _)| new[*n].event.partner_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                waiting
                    .iter()
                    .map(|(n, _)| new[*n].event.action_inquiry_id())
                    .collect::<Vec<_>>(),
            )
            .bind(waiting.iter().map(|(_, kind)| *kind).collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await?;
        for (ordinal, id) in found {
            let (n, _) = waiting[usize::try_from(ordinal - 1).expect("an ordinal")];
            new[n].blocked_by = Some(id);
        }
    }
    let going_before: Vec<(usize, &str)> = new
        .iter()
        .enumerate()
        .filter_map(|(n, d)| rules::goes_before(d.event.event_type).map(|later| (n, later.as_str())))
        .collect();
    if !going_before.is_empty() {
        sqlx::query(&ordering.block_later)
            .bind(
                going_before
                    .iter()
                    .map(|(n, _)| new[*n].event.partner_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                going_before
                    .iter()
                    .map(|(n, _)| new[*n].event.action_inquiry_id())
                    .collect::<Vec<_>>(),
            )
            .bind(going_before.iter().map(|(_, kind)| *kind).collect::<Vec<_>>())
            .bind(
                going_before
                    .iter()
                    .map(|(n, _)| new[*n].id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }

    let mut statuses = Vec::with_capacity(new.len());
    let mut next_at = Vec::with_capacity(new.len());
    let mut leased_until = Vec::with_capacity(new.len());
    let mut lease_seqs = Vec::with_capacity(new.len());
    for delivery in &new {
        let status = rules::initial_status(delivery.blocked_by.is_some(), delivery.disabled);
        let due_now = rules::lease_at_accept(status, delivery.due, now);
        let lease_it = due_now && done.leased.len() < lease.max;
        done.due_unleased |= due_now && !lease_it;
        statuses.push(status.as_str());
        next_at.push(if lease_it { lease.until } else { delivery.due });
        leased_until.push(lease_it.then_some(lease.until));
        lease_seqs.push(rules::first_lease_seq(lease_it));
        if lease_it {
            done.leased.push(Leased {
                event: delivery.at,
                delivery_id: delivery.id.clone(),
                settings_version: delivery.version,
                lease_seq: rules::first_lease_seq(true),
            });
        }
    }
    sqlx::query(INSERT_DELIVERIES)
        .bind(new.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|d| d.event.partner_id.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|d| d.event.id.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|d| d.event.event_type.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|d| d.event.action_inquiry_id()).collect::<Vec<_>>())
        .bind(&statuses)
        .bind(&next_at)
        .bind(new.iter().map(|d| d.blocked_by.as_deref()).collect::<Vec<_>>())
        .bind(&leased_until)
        .bind(new.iter().map(|d| order_id(d.event)).collect::<Vec<_>>())
        .bind(now)
        .bind(&lease_seqs)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The deliveries an event sent before made: through its inquiry, or, sent again with other
/// data, through the inquiry it was first sent with.
async fn earlier_deliveries(tx: &mut Transaction<'_, Postgres>, event: &Event) -> Result<Vec<DeliveryId>> {
    let through = |inquiry: String| {
        sqlx::query_scalar::<_, String>(EARLIER)
            .bind(event.partner_id.as_str())
            .bind(inquiry)
            .bind(event.id.as_str())
    };
    let ids = through(event.action_inquiry_id().to_owned())
        .fetch_all(&mut **tx)
        .await?;
    if !ids.is_empty() {
        return Ok(ids.into_iter().map(DeliveryId::from).collect());
    }
    let first: String = sqlx::query_scalar("SELECT body FROM events WHERE partner_id = $1 AND id = $2")
        .bind(event.partner_id.as_str())
        .bind(event.id.as_str())
        .fetch_one(&mut **tx)
        .await?;
    let ids = match Event::from_json(&first) {
        Ok(first) if first.action_inquiry_id() != event.action_inquiry_id() => {
            through(first.action_inquiry_id().to_owned())
                .fetch_all(&mut **tx)
                .await?
        }
        _ => ids,
    };
    Ok(ids.into_iter().map(DeliveryId::from).collect())
}

/// The event's `OrderId` as text, to find its deliveries by.
fn order_id(event: &Event) -> Option<String> {
    match event.get("OrderId")? {
        Value::Text(text) => Some(text.as_str().to_owned()),
        other => {
            let mut text = String::new();
            other.write_text(&mut text);
            Some(text)
        }
    }
}

/// The settings of the batch's partners, `None` for a partner without settings; an unknown
/// partner fails the batch. A disabled partner's endpoint counts as disabled: its events are
/// accepted and their postbacks held until it is enabled again.
///
/// The partners' rows and their settings are share-locked until the accept commits, so that a
/// change of either (disabling the endpoint, which holds its pending deliveries) comes before
/// or after the accept, never halfway.
async fn load_for_accept(
    tx: &mut Transaction<'_, Postgres>,
    events: &[Event],
) -> Result<HashMap<String, Option<ForAccept>>> {
    let mut partners: Vec<&str> = events.iter().map(|e| e.partner_id.as_str()).collect();
    partners.sort_unstable();
    partners.dedup();
    let found: HashMap<String, bool> =
        sqlx::query_as("SELECT id, disabled_at IS NOT NULL FROM partners WHERE id = ANY($1) ORDER BY id FOR SHARE")
            .bind(&partners)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();
    if let Some(unknown) = events.iter().find(|e| !found.contains_key(e.partner_id.as_str())) {
        return Err(StoreError::UnknownPartner(unknown.partner_id.as_str().to_owned()));
    }
    let rows = sqlx::query(
        "SELECT partner_id, body, disabled_at IS NOT NULL, version FROM settings
         WHERE partner_id = ANY($1) AND family = $2 ORDER BY partner_id FOR SHARE",
    )
    .bind(&partners)
    .bind(ACTION_INQUIRY)
    .fetch_all(&mut **tx)
    .await?;
    let mut endpoints: HashMap<String, Option<ForAccept>> =
        found.keys().map(|partner| (partner.clone(), None)).collect();
    for row in rows {
        let partner: String = row.try_get(0)?;
        let body: String = row.try_get(1)?;
        let disabled: bool = row.try_get(2)?;
        let version: i64 = row.try_get(3)?;
        let endpoint = serde_json::from_str::<NotificationSettings>(&body)
            .ok()
            .map(|settings| ForAccept {
                settings,
                disabled: disabled || found.get(&partner).copied().unwrap_or(false),
                version,
            });
        endpoints.insert(partner, endpoint);
    }
    Ok(endpoints)
}
