//! Shipping a plugin version safely from its page: a replay diff against the attached version
//! ([`crate::api::replay_diff`], nothing sent), canaries ([`crate::api::canary_start`],
//! [`crate::api::canary_stop`], [`crate::api::canary_promote`]) and the rollback to the previous
//! version ([`crate::api::roll_back`]). Each is the API's own function, so the checks, defaults
//! and messages are the API's; an error that names a field is shown beside that field.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::html::{self, esc};
use super::plugins::{self, own_plugin};
use super::session::PartnerPage;
use super::{Console, Failure, Fields};
use crate::api::{
    ApiError, CANARY_DEFAULTS, canary_promote, canary_start, canary_status, canary_stop, replay_diff, roll_back,
};
use crate::store::{PluginRecord, PluginSlot};

pub(super) fn router() -> Router<Console> {
    Router::new()
        .route("/console/plugins/{plugin_id}/diff", get(diff_form).post(diff))
        .route("/console/plugins/{plugin_id}/canary", post(start))
        .route("/console/plugins/{plugin_id}/canary/stop", post(stop))
        .route("/console/plugins/{plugin_id}/canary/promote", post(promote))
        .route("/console/plugins/{plugin_id}/rollback", post(rollback))
}

/// Deliveries a diff takes unless told otherwise (the API's default).
const DIFF_LAST: &str = "50";

/// The rollout forms' fields as sent, and the errors to show beside them.
#[derive(Debug, Default)]
pub(super) struct RolloutForms {
    last: Option<String>,
    canary: BTreeMap<&'static str, String>,
    /// Errors by form field; `diff`, `canary` and `rollback` for the forms' own, above them.
    errors: BTreeMap<&'static str, Vec<String>>,
}

/// The canary form's number fields: name, label, the API's default, and help.
fn canary_fields() -> [(&'static str, &'static str, i64, &'static str); 4] {
    let d = &CANARY_DEFAULTS;
    [
        (
            "share_percent",
            "Share of first attempts (%)",
            d.share_percent,
            "1 to 100: the postbacks' first attempts this version serves; a postback it fails is retried with the attached version.",
        ),
        (
            "window_secs",
            "Window (seconds)",
            d.window_secs,
            "The failure rates are compared at the end of each window.",
        ),
        (
            "margin_percent",
            "Margin (percentage points)",
            d.margin_percent,
            "Detached when its failure rate exceeds the attached version's by more than this.",
        ),
        (
            "min_calls",
            "Calls before a window is judged",
            d.min_calls,
            "A window with fewer calls of this version is not judged.",
        ),
    ]
}

impl RolloutForms {
    /// `error` of the API placed beside its field of `form` (`diff`, `canary` or `rollback`),
    /// or above that form.
    fn failed(form: &'static str, error: &ApiError) -> RolloutForms {
        let mut forms = RolloutForms::default();
        for problem in super::dry_run::problems(error) {
            let field = match (form, problem.field.as_str()) {
                ("diff", "last") => "last",
                ("canary", f) => canary_fields()
                    .into_iter()
                    .map(|(name, ..)| name)
                    .find(|name| *name == f)
                    .unwrap_or("canary"),
                _ => form,
            };
            let shown = if field == form {
                if problem.field.is_empty() {
                    problem.message.clone()
                } else {
                    problem.to_string()
                }
            } else {
                problem.message.clone()
            };
            forms.errors.entry(field).or_default().push(shown);
        }
        forms
    }

    /// The errors of `field`, as a paragraph the input points at.
    fn beside(&self, field: &str) -> String {
        html::field_errors(field, self.errors.get(field))
    }

    /// The attributes that mark an input invalid and point at its errors.
    fn marks(&self, field: &str) -> String {
        html::invalid_marks(field, self.errors.contains_key(field))
    }

    /// A form's own errors, as an alert at its top.
    fn above(&self, form: &str) -> String {
        match self.errors.get(form) {
            None => String::new(),
            Some(messages) => html::notice("error", &messages.join("; ")),
        }
    }
}

/// What the rollout forms need to know of the partner: its plugins, saved settings and canary.
pub(super) struct Rollout {
    plugins: Vec<PluginRecord>,
    settings: Option<Value>,
    canary: Option<Value>,
}

impl Rollout {
    pub(super) async fn of(console: &Console, partner_id: &str) -> Result<Rollout, Failure> {
        let store = &console.app.store;
        let plugins = store.plugins(partner_id).await.map_err(ApiError::from)?;
        let settings = store
            .settings(partner_id)
            .await
            .map_err(ApiError::from)?
            .and_then(|record| serde_json::from_str(&record.body).ok());
        let canary = canary_status(&console.app, partner_id).await?;
        Ok(Rollout {
            plugins,
            settings,
            canary,
        })
    }

    /// The partner's plugins, versions of one name together, oldest version first.
    pub(super) fn plugins(&self) -> Vec<&PluginRecord> {
        let mut sorted: Vec<&PluginRecord> = self.plugins.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
        sorted
    }

    fn attached(&self, slot: PluginSlot) -> Option<&str> {
        self.settings.as_ref()?.get(slot.field())?.as_str()
    }

    /// The running canary, if one is.
    fn running(&self) -> Option<&Value> {
        self.canary.as_ref().filter(|c| c["state"] == "running")
    }

    /// Whether a running canary tries `plugin_id`: its slot's name.
    pub(super) fn canary_of(&self, plugin_id: &str) -> Option<&str> {
        self.running()
            .filter(|c| c["plugin_id"] == plugin_id)
            .and_then(|c| c["slot"].as_str())
    }

    /// For each slot attaching a version that has an earlier one: the slot, the attached version
    /// and the version a rollback attaches (what [`crate::api::roll_back`] picks).
    fn rollbacks(&self) -> Vec<(PluginSlot, &PluginRecord, &PluginRecord)> {
        [PluginSlot::Transform, PluginSlot::Classify]
            .into_iter()
            .filter_map(|slot| {
                let id = self.attached(slot)?;
                let current = self.plugins.iter().find(|p| p.id.as_str() == id)?;
                let previous = self
                    .plugins
                    .iter()
                    .filter(|p| p.name == current.name && p.version < current.version)
                    .filter(|p| p.exports.iter().any(|e| e == slot.export()))
                    .max_by_key(|p| p.version)?;
                Some((slot, current, previous))
            })
            .collect()
    }
}

/// The partner-wide part shown above the plugins list: the canary, and a rollback button for
/// each slot whose attached version has an earlier one.
pub(super) fn overview(csrf: &str, rollout: &Rollout, forms: &RolloutForms) -> String {
    let mut out = String::new();
    out.push_str(&canary_panel(csrf, rollout));
    out.push_str(&rollback_forms(csrf, rollout, forms, None));
    out
}

/// How the partner's canary stands: running with its window's counts and its stop and promote
/// buttons, or how the last one ended (a detached one as an alert).
fn canary_panel(csrf: &str, rollout: &Rollout) -> String {
    let Some(canary) = &rollout.canary else {
        return String::new();
    };
    let text = |key: &str| canary[key].as_str().unwrap_or("-").to_owned();
    let number = |key: &str| canary[key].as_i64().unwrap_or(0);
    let candidate = text("candidate");
    let attached = canary["attached"].as_str().unwrap_or("no plugin");
    let slot = text("slot");
    let reason = canary["reason"].as_str().unwrap_or("");
    let ended = canary["ended_at"].as_i64().map_or_else(|| "-".into(), html::time);
    let mut out = String::from("<section class=\"canary\" aria-labelledby=\"canary-title\">");
    match canary["state"].as_str().unwrap_or_default() {
        "running" => {
            let plugin_id = esc(canary["plugin_id"].as_str().unwrap_or_default());
            let _ = write!(
                out,
                "<h2 id=\"canary-title\">Canary running</h2><dl class=\"facts canary-facts\">\
                 <dt>Candidate</dt><dd class=\"canary-candidate\">{}</dd><dt>Attached</dt><dd>{}</dd>\
                 <dt>Slot</dt><dd>{}</dd><dt>Share</dt><dd>{}% of first attempts</dd>\
                 <dt>This window</dt><dd class=\"canary-counts\">candidate {} calls, {} failed; attached {} calls, {} failed</dd>\
                 <dt>Window ends</dt><dd>{}</dd><dt>Judged</dt><dd>at each window's end with at least {} calls of the \
                 candidate; detached when its failure rate exceeds the attached version's by more than {} points</dd>\
                 <dt>Started</dt><dd>{}</dd></dl><div class=\"actions\">\
                 <form method=\"post\" action=\"/console/plugins/{plugin_id}/canary/promote\">{csrf_field}\
                 <button type=\"submit\" class=\"primary\">Promote {0}: attach it</button></form>\
                 <form method=\"post\" action=\"/console/plugins/{plugin_id}/canary/stop\">{csrf_field}\
                 <button type=\"submit\">Stop the canary</button></form></div>",
                esc(&candidate),
                esc(attached),
                esc(&slot),
                number("share_percent"),
                number("candidate_calls"),
                number("candidate_failures"),
                number("attached_calls"),
                number("attached_failures"),
                html::time(number("window_ends_at")),
                number("min_calls"),
                number("margin_percent"),
                html::time(number("started_at")),
                csrf_field = html::csrf_field(csrf),
            );
        }
        "detached" => {
            let _ = write!(
                out,
                "<h2 id=\"canary-title\">Last canary</h2><div class=\"notice error canary-ended\" role=\"alert\">\
                 <p><strong>Canary of {} detached</strong> at {}: {}</p><p>Every postback runs {} again.</p></div>",
                esc(&candidate),
                esc(&ended),
                esc(reason),
                esc(attached)
            );
        }
        state => {
            let _ = write!(
                out,
                "<h2 id=\"canary-title\">Last canary</h2><p class=\"notice ok canary-ended\" role=\"status\">\
                 Canary of {} {} at {}: {}</p>",
                esc(&candidate),
                esc(state),
                esc(&ended),
                esc(reason)
            );
        }
    }
    out.push_str("</section>");
    out
}

/// The rollback buttons, of every slot or of the slots attaching `only`.
fn rollback_forms(csrf: &str, rollout: &Rollout, forms: &RolloutForms, only: Option<&str>) -> String {
    let mut out = String::new();
    for (slot, current, previous) in rollout.rollbacks() {
        if only.is_some_and(|id| id != current.id.as_str()) {
            continue;
        }
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/console/plugins/{}/rollback\" class=\"rollback\">{}\
             <input type=\"hidden\" name=\"slot\" value=\"{}\">\
             <p>Attached as {}: <span class=\"from-to\">{} → {}</span></p>\
             <button type=\"submit\">Roll back to the previous version</button></form>",
            esc(&current.id),
            html::csrf_field(csrf),
            slot.export(),
            slot.export(),
            esc(&current.label()),
            esc(&previous.label()),
        );
    }
    if out.is_empty() && !forms.errors.contains_key("rollback") {
        return out;
    }
    format!(
        "<section class=\"rollbacks\" aria-labelledby=\"rollback-title\"><h2 id=\"rollback-title\">Roll back</h2>{}{out}</section>",
        forms.above("rollback")
    )
}

/// The rollout section of a plugin version's page: the diff form, the canary and its start
/// form, and the rollback button when this version is attached over an earlier one.
pub(super) fn section(csrf: &str, plugin: &PluginRecord, rollout: &Rollout, forms: &RolloutForms) -> String {
    let mut out = String::from(
        "<section class=\"rollout\" aria-labelledby=\"rollout-title\"><h2 id=\"rollout-title\">Ship this version safely</h2>",
    );
    out.push_str(&diff_form_html(csrf, plugin, forms));
    out.push_str(&canary_panel(csrf, rollout));
    let attached_here = [PluginSlot::Transform, PluginSlot::Classify]
        .into_iter()
        .any(|slot| rollout.attached(slot) == Some(plugin.id.as_str()));
    if !attached_here && rollout.canary_of(&plugin.id).is_none() {
        out.push_str(&start_form(csrf, plugin, rollout, forms));
    } else if forms.errors.contains_key("canary") {
        out.push_str(&forms.above("canary"));
    }
    out.push_str(&rollback_forms(csrf, rollout, forms, Some(&plugin.id)));
    out.push_str("</section>");
    out
}

fn diff_form_html(csrf: &str, plugin: &PluginRecord, forms: &RolloutForms) -> String {
    format!(
        "<form method=\"post\" action=\"/console/plugins/{}/diff\" class=\"narrow diff-form\">{}\
         <h3>Diff against the attached version</h3>{}<p class=\"help\">Runs {} and the attached version on \
         your last deliveries' stored events, side by side, and sends nothing.</p><div class=\"field\">\
         <label for=\"last\">Last deliveries</label><input id=\"last\" name=\"last\" type=\"number\" min=\"1\" \
         max=\"500\" value=\"{}\"{}>{}</div><button type=\"submit\" class=\"primary\">Diff against the attached version</button></form>",
        esc(&plugin.id),
        html::csrf_field(csrf),
        forms.above("diff"),
        esc(&plugin.label()),
        esc(forms.last.as_deref().unwrap_or(DIFF_LAST)),
        forms.marks("last"),
        forms.beside("last"),
    )
}

fn start_form(csrf: &str, plugin: &PluginRecord, rollout: &Rollout, forms: &RolloutForms) -> String {
    let replaces = if rollout.running().is_some() {
        " It replaces the running canary."
    } else {
        ""
    };
    let mut out = format!(
        "<form method=\"post\" action=\"/console/plugins/{}/canary\" class=\"narrow canary-form\">{}\
         <h3>Start a canary of {}</h3>{}<p class=\"help\">This version serves a share of postbacks beside the \
         attached version, and is detached by itself when it fails more often than the margin allows.{replaces}</p>",
        esc(&plugin.id),
        html::csrf_field(csrf),
        esc(&plugin.label()),
        forms.above("canary"),
    );
    for (name, label, default, help) in canary_fields() {
        let value = forms.canary.get(name).cloned().unwrap_or_else(|| default.to_string());
        let _ = write!(
            out,
            "<div class=\"field\"><label for=\"{name}\">{label}</label><input id=\"{name}\" name=\"{name}\" \
             inputmode=\"numeric\" value=\"{}\"{}><p class=\"help\">{help}</p>{}</div>",
            esc(&value),
            forms.marks(name),
            forms.beside(name)
        );
    }
    out.push_str("<button type=\"submit\" class=\"primary\">Start the canary</button></form>");
    out
}

/// The diff page: the plugin, the form, and `result`.
fn diff_page(
    page_of: &PartnerPage,
    plugin: &PluginRecord,
    status: StatusCode,
    forms: &RolloutForms,
    result: &str,
) -> Response {
    let body = format!(
        "<p><a href=\"/console/plugins/{}\">Back to {}</a></p>{}{result}",
        esc(&plugin.id),
        esc(&plugin.label()),
        diff_form_html(&page_of.signed.session.csrf, plugin, forms)
    );
    let title = format!("Diff of {}", plugin.label());
    plugins::titled_response(status, page_of, &title, &body)
}

async fn diff_form(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    Ok(diff_page(
        &page_of,
        &plugin,
        StatusCode::OK,
        &RolloutForms::default(),
        "",
    ))
}

/// Runs the replay diff (field `last`) and shows it.
async fn diff(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    let fields = Fields::parse(&body);
    let last_text = fields.text("last").trim().to_owned();
    let mut input = json!({"candidate": plugin.id});
    if !last_text.is_empty() {
        // A number goes as a number; anything else as the text it is, for the API to name.
        input["last"] = last_text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(last_text.clone()));
    }
    let (status, mut forms, result) = match replay_diff(&console.app, &page_of.partner.id, &input).await {
        Ok(out) => (StatusCode::OK, RolloutForms::default(), diff_result(&out)),
        Err(e) => (e.status(), RolloutForms::failed("diff", &e), String::new()),
    };
    forms.last = Some(last_text);
    Ok(diff_page(&page_of, &plugin, status, &forms, &result))
}

/// A replay diff as [`crate::api::replay_diff`] answers it: the counts, then each delivery
/// that is not identical with what differs, and fuel and time for both versions.
fn diff_result(out: &Value) -> String {
    let count = |key: &str| out[key].as_u64().unwrap_or(0);
    let attached = out["attached"]
        .as_str()
        .map_or_else(|| "none: the settings without a plugin".to_owned(), str::to_owned);
    let results = out["results"].as_array().cloned().unwrap_or_default();
    let skipped = results.iter().filter(|r| r["outcome"] == "skipped").count();
    let mut html_out = format!(
        "<section class=\"outcome diff-outcome\" aria-labelledby=\"diff-title\"><h2 id=\"diff-title\">Diff result</h2>\
         <p class=\"help\">Nothing was sent.</p><dl class=\"facts diff-summary\"><dt>Candidate</dt><dd>{}</dd>\
         <dt>Attached</dt><dd>{}</dd><dt>Slot</dt><dd>{}</dd><dt>Deliveries</dt><dd class=\"diff-deliveries\">{}</dd>\
         <dt>Identical</dt><dd class=\"diff-identical\">{}</dd><dt>Changed</dt><dd class=\"diff-changed\">{}</dd>\
         <dt>Failed</dt><dd class=\"diff-failed\">{}</dd><dt>Skipped</dt><dd>{skipped}</dd></dl>",
        esc(out["candidate"].as_str().unwrap_or_default()),
        esc(&attached),
        esc(out["slot"].as_str().unwrap_or_default()),
        count("deliveries"),
        count("identical"),
        count("changed"),
        count("failed"),
    );
    if count("deliveries") == 0 {
        html_out.push_str("<p>There are no deliveries yet to compare on.</p>");
    }
    for result in results.iter().filter(|r| r["outcome"] != "identical") {
        html_out.push_str(&one_result(result));
    }
    html_out.push_str("</section>");
    html_out
}

fn one_result(result: &Value) -> String {
    let outcome = result["outcome"].as_str().unwrap_or_default();
    let mut out = format!(
        "<article class=\"diff-delivery {}\"><h3><code>{}</code> {} <span class=\"verdict {}\">{}</span></h3>\
         <p class=\"help\">Event <code>{}</code></p>",
        esc(outcome),
        esc(result["delivery_id"].as_str().unwrap_or_default()),
        esc(result["event_type"].as_str().unwrap_or_default()),
        if outcome == "failed" { "fail" } else { "retry" },
        esc(outcome),
        esc(result["event_id"].as_str().unwrap_or_default()),
    );
    if outcome == "skipped" {
        let _ = write!(
            out,
            "<p>{}</p></article>",
            esc(result["reason"].as_str().unwrap_or_default())
        );
        return out;
    }
    if let Some(error) = result["candidate"]["error"].as_str() {
        let _ = write!(
            out,
            "<p class=\"errors\">The candidate failed:</p><pre class=\"candidate-error\">{}</pre>",
            esc(error)
        );
    }
    if let Some(error) = result["attached"]["error"].as_str() {
        let _ = write!(out, "<p>The attached version failed:</p><pre>{}</pre>", esc(error));
    }
    let diff = &result["diff"];
    for key in ["method", "url"] {
        if diff[key].is_object() {
            let _ = write!(
                out,
                "<p>{}: <code>{}</code> → <code>{}</code></p>",
                if key == "url" { "URL" } else { "Method" },
                esc(&plain(&diff[key]["attached"])),
                esc(&plain(&diff[key]["candidate"]))
            );
        }
    }
    if diff["headers"].is_object() {
        out.push_str("<h4>Header changes</h4><ul class=\"header-changes\">");
        for (which, sign) in [("removed", "−"), ("added", "+")] {
            for pair in diff["headers"][which].as_array().into_iter().flatten() {
                let _ = write!(
                    out,
                    "<li class=\"{which}\">{sign} {which} <code>{}: {}</code></li>",
                    esc(pair[0].as_str().unwrap_or_default()),
                    esc(pair[1].as_str().unwrap_or_default())
                );
            }
        }
        out.push_str("</ul>");
    }
    if let Some(unified) = diff["body"]["unified"].as_str() {
        out.push_str("<h4>Body</h4><pre class=\"unified-diff\">");
        for line in unified.lines() {
            let class = match line.chars().next() {
                Some('+') if !line.starts_with("+++") => "add",
                Some('-') if !line.starts_with("---") => "del",
                Some('@') => "hunk",
                _ => "same",
            };
            let _ = writeln!(out, "<span class=\"{class}\">{}</span>", esc(line));
        }
        out.push_str("</pre>");
    }
    if result["candidate"]["verdict"].is_object() || result["attached"]["verdict"].is_object() {
        let _ = write!(
            out,
            "<p>Verdicts on the answer {}: attached <code>{}</code>, candidate <code>{}</code></p>",
            result["response_status"],
            esc(&result["attached"]["verdict"].to_string()),
            esc(&result["candidate"]["verdict"].to_string())
        );
    }
    out.push_str(
        "<table class=\"cost\"><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">Fuel</th>\
         <th scope=\"col\">Time (µs)</th><th scope=\"col\">Peak memory (bytes)</th></tr></thead><tbody>",
    );
    for side in ["attached", "candidate"] {
        let s = &result[side];
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{} {}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            side,
            esc(s["version"].as_str().unwrap_or("(no plugin)")),
            esc(&plain(&s["fuel_used"])),
            esc(&plain(&s["duration_us"])),
            esc(&plain(&s["peak_memory"])),
        );
    }
    out.push_str("</tbody></table></article>");
    out
}

/// A JSON value as text: a string as itself, nothing as `-`.
fn plain(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Starts a canary of the plugin with the form's numbers.
async fn start(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    let fields = Fields::parse(&body);
    let mut input = json!({"candidate": plugin.id});
    let mut sent = BTreeMap::new();
    for (name, ..) in canary_fields() {
        let text = fields.text(name).trim().to_owned();
        if !text.is_empty() {
            input[name] = text
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(text.clone()));
        }
        sent.insert(name, text);
    }
    match canary_start(&console.app, &page_of.partner.id, &input).await {
        Ok(canary) => {
            let notice = html::notice(
                "ok",
                &format!(
                    "Canary started: {} serves {}% of first attempts beside {}.",
                    canary["candidate"].as_str().unwrap_or_default(),
                    canary["share_percent"],
                    canary["attached"].as_str().unwrap_or("no plugin")
                ),
            );
            plugins::show_page(
                &console,
                &page_of,
                &plugin,
                StatusCode::OK,
                &notice,
                &RolloutForms::default(),
            )
            .await
        }
        Err(e) => {
            let mut forms = RolloutForms::failed("canary", &e);
            forms.canary = sent;
            let notice = html::notice("error", "Not started: see the canary form below.");
            plugins::show_page(&console, &page_of, &plugin, e.status(), &notice, &forms).await
        }
    }
}

/// Stops the running canary, from the plugins list or a version's page.
async fn stop(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    let (status, notice) = match canary_stop(&console.app, &page_of.partner.id).await {
        Ok(canary) => (
            StatusCode::OK,
            html::notice(
                "ok",
                &format!(
                    "Canary of {} stopped: every postback runs {} again.",
                    canary["candidate"].as_str().unwrap_or_default(),
                    canary["attached"].as_str().unwrap_or("no plugin")
                ),
            ),
        ),
        Err(e) => (
            e.status(),
            html::notice("error", &format!("Not stopped: {}", e.detail())),
        ),
    };
    plugins::show_page(&console, &page_of, &plugin, status, &notice, &RolloutForms::default()).await
}

/// Promotes the running canary: its candidate is attached in its slot.
async fn promote(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    let (status, notice) = match canary_promote(&console.app, &page_of.partner.id).await {
        Ok(canary) => (
            StatusCode::OK,
            html::notice(
                "ok",
                &format!(
                    "Promoted: {}.",
                    canary["reason"].as_str().unwrap_or("the candidate was attached")
                ),
            ),
        ),
        Err(e) => {
            let message = super::dry_run::problems(&e)
                .iter()
                .map(|p| {
                    if p.field.is_empty() {
                        p.message.clone()
                    } else {
                        p.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            (e.status(), html::notice("error", &format!("Not promoted: {message}")))
        }
    };
    plugins::show_page(&console, &page_of, &plugin, status, &notice, &RolloutForms::default()).await
}

/// Rolls the slot (field `slot`) that attaches this version back to the previous version.
async fn rollback(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    let fields = Fields::parse(&body);
    let mut input = json!({});
    if let Some(slot) = fields.get("slot").filter(|s| !s.is_empty()) {
        input["slot"] = json!(slot);
    }
    match roll_back(&console.app, &page_of.partner.id, &input).await {
        Ok(done) => {
            let notice = html::notice(
                "ok",
                &format!(
                    "Rolled back the {}: {} → {}. The next postback runs {2}.",
                    done["slot"].as_str().unwrap_or_default(),
                    done["from"].as_str().unwrap_or_default(),
                    done["to"].as_str().unwrap_or_default()
                ),
            );
            plugins::list_page(&console, &page_of, StatusCode::OK, &notice, &RolloutForms::default()).await
        }
        Err(e) => {
            let forms = RolloutForms::failed("rollback", &e);
            let notice = html::notice("error", "Not rolled back: see below.");
            plugins::show_page(&console, &page_of, &plugin, e.status(), &notice, &forms).await
        }
    }
}
