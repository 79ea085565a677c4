//! *Operator*: the queue's depth, the delivery rates (postbacks delivered, failed and retried
//! per minute over the last 5 minutes and the last hour, across partners and for the busiest
//! partners, from [`crate::store::Store::outcome_counts`]), the partners (create one, pick one to act for), and each
//! partner's keys (create, revoke). Only the operator reaches these pages. A partner is created
//! as `POST /v1/partners` creates it ([`crate::api::create_partner`]), its signing secret shown
//! this once.

use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::html::{self, Nav, Who, esc};
use super::session::{self, SignedIn};
use super::{Console, Failure, Fields, page};
use crate::api::{ApiError, create_partner, partner_for};
use crate::store::{KeyKind, OutcomeCount, now_ms};

pub(super) fn router() -> Router<Console> {
    Router::new()
        .route("/console/operator", get(overview))
        .route("/console/operator/pick", post(pick))
        .route("/console/operator/partners", post(create))
        .route(
            "/console/operator/partners/{partner_id}/keys",
            get(keys).post(create_key),
        )
        .route(
            "/console/operator/partners/{partner_id}/keys/{key_id}/revoke",
            post(revoke_key),
        )
}

/// Most partners the overview lists.
const PARTNERS: i64 = 500;

/// Partners the delivery rates name one by one: the busiest of the last hour.
const TOP_PARTNERS: usize = 10;

const MINUTE_MS: i64 = 60_000;

fn operator_only(signed: &SignedIn) -> Result<(), Failure> {
    if signed.operator() {
        Ok(())
    } else {
        Err(Failure::page(
            StatusCode::FORBIDDEN,
            "These pages are the operator's; sign in with the operator token to use them.",
        ))
    }
}

fn who(signed: &SignedIn) -> Who<'_> {
    Who {
        partner: None,
        operator: true,
        csrf: &signed.session.csrf,
    }
}

async fn overview(State(console): State<Console>, signed: SignedIn) -> Result<Response, Failure> {
    operator_only(&signed)?;
    let body = overview_page(&console, &signed, "", "", "").await?;
    Ok(page(html::page("Operator", Nav::Operator, Some(&who(&signed)), &body)).into_response())
}

/// The overview: `notice` above it, and the create-partner form with `name` and its `error`.
async fn overview_page(
    console: &Console,
    signed: &SignedIn,
    notice: &str,
    name: &str,
    error: &str,
) -> Result<String, Failure> {
    let store = &console.app.store;
    let (due, oldest) = store.due(now_ms()).await.map_err(ApiError::from)?;
    let partners = store.partners(None, PARTNERS).await.map_err(ApiError::from)?;
    let now = now_ms();
    let counts = store
        .outcome_counts(now - 60 * MINUTE_MS, MINUTE_MS)
        .await
        .map_err(ApiError::from)?;
    let names: std::collections::HashMap<&str, &str> =
        partners.iter().map(|p| (p.id.as_str(), p.name.as_str())).collect();
    let rates = rates(&counts, now, &names);
    let csrf = html::csrf_field(&signed.session.csrf);
    let (marks, beside) = if error.is_empty() {
        (String::new(), String::new())
    } else {
        (
            " aria-invalid=\"true\" aria-describedby=\"partner_name-error\"".to_owned(),
            format!("<p class=\"field-error\" id=\"partner_name-error\">{}</p>", esc(error)),
        )
    };
    let mut out = format!(
        "{notice}<h2>Queue</h2><dl class=\"facts\"><dt>Postbacks due now</dt><dd class=\"queue-depth\">{due}</dd>\
         <dt>Oldest due since</dt><dd>{}</dd><dt>In this process's memory</dt><dd>{}</dd></dl>{rates}\
         <form method=\"post\" action=\"/console/operator/partners\" class=\"narrow\">{csrf}<h2>Create a partner</h2>\
         <div class=\"field\"><label for=\"partner_name\">Name</label><input id=\"partner_name\" name=\"name\" \
         value=\"{}\"{marks}>{beside}<p class=\"help\">Up to 200 bytes; its signing secret is shown once, when it is \
         created.</p></div><button type=\"submit\" class=\"primary\">Create partner</button></form><h2>Partners</h2>",
        oldest.map_or_else(|| "-".into(), html::time),
        console.app.worker.queued(),
        esc(name)
    );
    if partners.is_empty() {
        out.push_str("<p>No partners yet: create one above.</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table class=\"partners\"><thead><tr><th scope=\"col\">Partner</th><th scope=\"col\">Id</th>\
             <th scope=\"col\">State</th><th scope=\"col\">Act for</th><th scope=\"col\">Keys</th></tr></thead><tbody>",
        );
        for partner in &partners {
            let _ = write!(
                out,
                "<tr><td>{name}</td><td><code>{id}</code></td><td>{state}</td><td><form method=\"post\" \
                 action=\"/console/operator/pick\">{csrf}<input type=\"hidden\" name=\"partner_id\" value=\"{id}\">\
                 <button type=\"submit\">Open {name}</button></form></td>\
                 <td><a href=\"/console/operator/partners/{id}/keys\">Keys of {name}</a></td></tr>",
                name = esc(&partner.name),
                id = esc(&partner.id),
                state = if partner.disabled_at.is_some() {
                    "disabled"
                } else {
                    "enabled"
                },
            );
        }
        out.push_str("</tbody></table></div>");
    }
    Ok(out)
}

/// Creates a partner (field `name`) and shows its signing secret, this once.
async fn create(State(console): State<Console>, signed: SignedIn, body: Bytes) -> Result<Response, Failure> {
    operator_only(&signed)?;
    let fields = Fields::parse(&body);
    let name = fields.text("name").trim();
    let (status, body) = match create_partner(&console.app, &serde_json::json!({"name": name})).await {
        Ok((partner, secret)) => {
            let notice = format!(
                "<div class=\"notice ok\" role=\"status\"><p>Partner {} <code>{}</code> created. Copy its \
                 signing secret now: it is shown this once.</p><pre class=\"secret\">{}</pre>\
                 <p><a href=\"/console/operator/partners/{1}/keys\">Create its first key</a></p></div>",
                esc(&partner.name),
                esc(&partner.id),
                esc(&secret)
            );
            (
                StatusCode::CREATED,
                overview_page(&console, &signed, &notice, "", "").await?,
            )
        }
        Err(e) if !e.errors().is_empty() => {
            let error = e
                .errors()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let notice = html::notice("error", "Not created: fix the name and create it again.");
            (
                e.status(),
                overview_page(&console, &signed, &notice, name, &error).await?,
            )
        }
        Err(e) => return Err(e.into()),
    };
    Ok((
        status,
        page(html::page("Operator", Nav::Operator, Some(&who(&signed)), &body)),
    )
        .into_response())
}

/// Acts for a partner from now on: the session keeps it.
async fn pick(
    State(console): State<Console>,
    signed: SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    operator_only(&signed)?;
    let fields = Fields::parse(&body);
    let partner = partner_for(&console.app, &signed.caller, fields.text("partner_id")).await?;
    let mut session = signed.session.clone();
    session.partner = Some(partner.id.to_string());
    let cookie = session::cookie(&console, &session, session::over_https(&headers));
    let mut response = Failure::redirect("/console/settings").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

async fn keys(
    State(console): State<Console>,
    signed: SignedIn,
    Path(partner_id): Path<String>,
) -> Result<Response, Failure> {
    operator_only(&signed)?;
    let body = keys_page(&console, &signed, &partner_id, String::new()).await?;
    Ok(page(html::page("Partner keys", Nav::Operator, Some(&who(&signed)), &body)).into_response())
}

async fn keys_page(console: &Console, signed: &SignedIn, partner_id: &str, notice: String) -> Result<String, Failure> {
    let partner = partner_for(&console.app, &signed.caller, partner_id).await?;
    let keys = console
        .app
        .store
        .keys(KeyKind::Partner, Some(&partner.id))
        .await
        .map_err(ApiError::from)?;
    let csrf = html::csrf_field(&signed.session.csrf);
    let mut out = format!(
        "<p><a href=\"/console/operator\">Back to the partners</a></p>{notice}<h2>{} <code>{}</code></h2>",
        esc(&partner.name),
        esc(&partner.id)
    );
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/console/operator/partners/{}/keys\">{csrf}\
         <button type=\"submit\" class=\"primary\">Create a key</button></form>",
        esc(&partner.id)
    );
    out.push_str(
        "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Key</th><th scope=\"col\">Starts with</th>\
         <th scope=\"col\">Created</th><th scope=\"col\">Last used</th><th scope=\"col\">State</th></tr></thead><tbody>",
    );
    for key in &keys {
        let state = match key.revoked_at {
            Some(at) => format!("revoked {}", html::time(at)),
            None => format!(
                "<form method=\"post\" action=\"/console/operator/partners/{}/keys/{}/revoke\">{csrf}\
                 <button type=\"submit\">Revoke {}</button></form>",
                esc(&partner.id),
                esc(&key.id),
                esc(&key.prefix)
            ),
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{state}</td></tr>",
            esc(&key.id),
            esc(&key.prefix),
            html::time(key.created_at),
            key.last_used_at.map_or_else(|| "never".into(), html::time)
        );
    }
    out.push_str("</tbody></table></div>");
    Ok(out)
}

async fn create_key(
    State(console): State<Console>,
    signed: SignedIn,
    Path(partner_id): Path<String>,
) -> Result<Response, Failure> {
    operator_only(&signed)?;
    let partner = partner_for(&console.app, &signed.caller, &partner_id).await?;
    let key = console
        .app
        .store
        .create_key(KeyKind::Partner, Some(&partner.id), None, now_ms())
        .await
        .map_err(ApiError::from)?;
    let notice = format!(
        "<div class=\"notice ok\" role=\"status\"><p>Key created. Copy its token now: it is shown this once.</p>\
         <pre class=\"token\">{}</pre></div>",
        esc(&key.token)
    );
    let body = keys_page(&console, &signed, &partner.id, notice).await?;
    Ok((
        StatusCode::CREATED,
        page(html::page("Partner keys", Nav::Operator, Some(&who(&signed)), &body)),
    )
        .into_response())
}

async fn revoke_key(
    State(console): State<Console>,
    signed: SignedIn,
    Path((partner_id, key_id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    operator_only(&signed)?;
    let partner = partner_for(&console.app, &signed.caller, &partner_id).await?;
    let done = console
        .app
        .store
        .revoke_key(KeyKind::Partner, Some(&partner.id), &key_id, now_ms())
        .await
        .map_err(ApiError::from)?;
    console.app.revoked_everywhere(&key_id).await;
    let notice = if done {
        html::notice(
            "ok",
            &format!("Key {key_id} is revoked: its sessions end on their next request."),
        )
    } else {
        html::notice(
            "error",
            &format!("No key {key_id} of this partner that is not revoked."),
        )
    };
    let body = keys_page(&console, &signed, &partner.id, notice).await?;
    Ok(page(html::page("Partner keys", Nav::Operator, Some(&who(&signed)), &body)).into_response())
}

/// Attempts' outcomes summed over some minutes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    delivered: i64,
    failed: i64,
    retried: i64,
}

impl Tally {
    fn add(&mut self, count: &OutcomeCount) {
        self.delivered += count.delivered;
        self.failed += count.failed;
        self.retried += count.retried;
    }

    fn total(&self) -> i64 {
        self.delivered + self.failed + self.retried
    }

    /// The three rates per minute over `minutes`, as table cells.
    fn cells(&self, minutes: i64) -> String {
        let rate = |n: i64| format!("{:.1}", n as f64 / minutes as f64);
        format!(
            "<td class=\"delivered\">{}</td><td class=\"failed\">{}</td><td class=\"retried\">{}</td>",
            rate(self.delivered),
            rate(self.failed),
            rate(self.retried)
        )
    }
}

/// The delivery rates' section from the last hour's counts per partner and minute (the store's
/// spans start an hour before `now`, so the last five are the last five minutes): across
/// partners, then the busiest partners, each per minute over the last 5 minutes and the hour.
fn rates(counts: &[OutcomeCount], now: i64, names: &std::collections::HashMap<&str, &str>) -> String {
    let recent_from = now - 5 * MINUTE_MS;
    let (mut hour, mut recent) = (Tally::default(), Tally::default());
    let mut by_partner: std::collections::BTreeMap<&str, (Tally, Tally)> = std::collections::BTreeMap::new();
    for count in counts {
        let partner = by_partner.entry(count.partner_id.as_str()).or_default();
        hour.add(count);
        partner.0.add(count);
        if count.at >= recent_from {
            recent.add(count);
            partner.1.add(count);
        }
    }
    let head = "<thead><tr><th scope=\"col\">{}</th><th scope=\"col\">Delivered / min</th>\
                <th scope=\"col\">Failed / min</th><th scope=\"col\">Retried / min</th></tr></thead>";
    let mut out = format!(
        "<h2>Delivery rates</h2><p class=\"help\">Postback attempts per minute, by what they meant, across \
         partners; updated when the page loads.</p><div class=\"scroll\"><table class=\"rates all-rates\">\
         <caption>All partners</caption>{}<tbody><tr><th scope=\"row\">Last 5 minutes</th>{}</tr>\
         <tr><th scope=\"row\">Last hour</th>{}</tr></tbody></table></div>",
        head.replace("{}", "Over"),
        recent.cells(5),
        hour.cells(60)
    );
    let mut busiest: Vec<_> = by_partner.into_iter().filter(|(_, (h, _))| h.total() > 0).collect();
    busiest.sort_by(|a, b| b.1.0.total().cmp(&a.1.0.total()).then(a.0.cmp(b.0)));
    if busiest.is_empty() {
        out.push_str("<p>No postbacks were attempted in the last hour.</p>");
        return out;
    }
    let _ = write!(
        out,
        "<div class=\"scroll\"><table class=\"rates partner-rates\"><caption>Busiest partners, last hour \
         (last 5 minutes below each)</caption>{}<tbody>",
        head.replace("{}", "Partner")
    );
    for (id, (hour, recent)) in busiest.into_iter().take(TOP_PARTNERS) {
        let name = names.get(id).copied().unwrap_or(id);
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{} <code>{}</code></th>{}</tr><tr class=\"recent\"><td>last 5 minutes</td>{}</tr>",
            esc(name),
            esc(id),
            hour.cells(60),
            recent.cells(5)
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(partner: &str, at: i64, delivered: i64, failed: i64, retried: i64) -> OutcomeCount {
        OutcomeCount {
            partner_id: partner.into(),
            at,
            delivered,
            failed,
            retried,
        }
    }

    #[test]
    fn rates_are_per_minute_over_the_hour_and_the_last_five_minutes_busiest_first() {
        let now = 10 * 3_600_000;
        let since = now - 60 * MINUTE_MS;
        let counts = [
            count("ptn_a", since, 60, 0, 0),
            count("ptn_b", now - MINUTE_MS - 1, 10, 5, 30),
            count("ptn_a", now - MINUTE_MS - 1, 0, 0, 0),
        ];
        let names = std::collections::HashMap::from([("ptn_b", "<Bravo>")]);
        let html = rates(&counts, now, &names);
        // Across partners: the hour's 105 attempts over 60 minutes, the last 5 minutes' 45 over 5.
        assert!(html.contains("Last 5 minutes</th><td class=\"delivered\">2.0</td><td class=\"failed\">1.0</td><td class=\"retried\">6.0</td>"), "{html}");
        assert!(html.contains("Last hour</th><td class=\"delivered\">1.2</td><td class=\"failed\">0.1</td><td class=\"retried\">0.5</td>"), "{html}");
        // Busiest first (b made 45 attempts, a 60: a first), names escaped, ids as given.
        let (a, b) = (html.find("ptn_a").unwrap(), html.find("&lt;Bravo&gt;").unwrap());
        assert!(a < b, "{html}");
        assert!(!html.contains("<Bravo>"));
        assert!(rates(&[], now, &names).contains("No postbacks were attempted"));
    }
}
