//! *Plugins*: upload a plugin (checked and compiled as the API's upload does,
//! [`crate::api::upload_plugin`]), the partner's plugins with their exports, size and hash and
//! which of them the settings attach, and each plugin's page: a dry run on a sample or pasted
//! event (the API's own, [`crate::api::run_plugin`], in `dry_run`) and buttons that attach it
//! as the transform or the classifier by saving the settings with it
//! ([`crate::api::save_settings`], so that its checks are the settings page's and the API's).
//! The list keeps the versions of one name together; a version's page ends with its rollout
//! forms (`rollout`).

use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::dry_run::{self, RunErrors, RunForm};
use super::html::{self, Nav, esc};
use super::rollout::{self, Rollout, RolloutForms};
use super::session::PartnerPage;
use super::{Console, Failure, Fields, page};
use crate::api::{ApiError, run_plugin, save_settings, upload_plugin};
use crate::settings::NotificationSettings;
use crate::store::PluginRecord;

pub(super) fn router() -> Router<Console> {
    Router::new()
        .route("/console/plugins", get(list).post(upload))
        .route("/console/plugins/{plugin_id}", get(show))
        .route("/console/plugins/{plugin_id}/run", post(run))
        .route("/console/plugins/{plugin_id}/attach", post(attach))
}

#[derive(Deserialize)]
struct Uploaded {
    uploaded: Option<String>,
}

async fn list(
    State(console): State<Console>,
    page_of: PartnerPage,
    Query(uploaded): Query<Uploaded>,
) -> Result<Response, Failure> {
    let notice = match uploaded.uploaded {
        Some(id) => html::notice(
            "ok",
            &format!("Uploaded {id}: dry-run it on its page, or attach it with its buttons below."),
        ),
        None => String::new(),
    };
    list_page(&console, &page_of, StatusCode::OK, &notice, &RolloutForms::default()).await
}

/// The plugins list with `notice` above it, answered with `status`.
pub(super) async fn list_page(
    console: &Console,
    page_of: &PartnerPage,
    status: StatusCode,
    notice: &str,
    forms: &RolloutForms,
) -> Result<Response, Failure> {
    let body = render(console, page_of, notice, forms).await?;
    Ok(titled_response(status, page_of, "Plugins", &body))
}

/// A plugins page titled `title`, answered with `status`.
pub(super) fn titled_response(status: StatusCode, page_of: &PartnerPage, title: &str, body: &str) -> Response {
    (
        status,
        page(html::page(title, Nav::Plugins, Some(&page_of.who()), body)),
    )
        .into_response()
}

/// Uploads the form's component: fields `name` and `wasm` (the file).
async fn upload(
    State(console): State<Console>,
    page_of: PartnerPage,
    mut form: Multipart,
) -> Result<Response, Failure> {
    let (mut name, mut wasm) = (String::new(), Vec::new());
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                return Err(Failure::page(
                    StatusCode::BAD_REQUEST,
                    format!("the upload could not be read: {e}"),
                ));
            }
        };
        let which = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| Failure::page(StatusCode::BAD_REQUEST, format!("the upload could not be read: {e}")))?;
        match which.as_str() {
            "name" => name = String::from_utf8_lossy(&bytes).trim().to_owned(),
            "wasm" => wasm = bytes.to_vec(),
            _ => {}
        }
    }
    let outcome = if wasm.is_empty() {
        Err(ApiError::invalid(
            crate::error::FieldError::new("wasm", None, "choose the plugin's .wasm file").into(),
            "",
        ))
    } else {
        upload_plugin(&console.app, &page_of.partner.id, &name, &wasm).await
    };
    match outcome {
        Ok(record) => Ok(Failure::redirect(&format!("/console/plugins?uploaded={}", record.id)).into_response()),
        Err(e) => {
            let message = match e.errors().first() {
                Some(error) => error.to_string(),
                None => e.detail().to_owned(),
            };
            let body = render(
                &console,
                &page_of,
                &html::notice("error", &format!("Not uploaded: {message}")),
                &RolloutForms::default(),
            )
            .await?;
            Ok((
                e.status(),
                page(html::page("Plugins", Nav::Plugins, Some(&page_of.who()), &body)),
            )
                .into_response())
        }
    }
}

async fn render(
    console: &Console,
    page_of: &PartnerPage,
    notice: &str,
    forms: &RolloutForms,
) -> Result<String, Failure> {
    let partner = &page_of.partner.id;
    let rollout = Rollout::of(console, partner).await?;
    let plugins = rollout.plugins();
    let attached = Attached::of(console, partner).await?;
    let csrf = percent_encoding::utf8_percent_encode(&page_of.signed.session.csrf, percent_encoding::NON_ALPHANUMERIC);
    let mut out = format!(
        "{notice}<form method=\"post\" action=\"/console/plugins?csrf={}\" enctype=\"multipart/form-data\" \
         class=\"narrow\"><h2>Upload</h2><div class=\"field\"><label for=\"name\">Name</label>\
         <input id=\"name\" name=\"name\" maxlength=\"100\" required></div><div class=\"field\">\
         <label for=\"wasm\">Component (.wasm)</label><input id=\"wasm\" name=\"wasm\" type=\"file\" \
         accept=\".wasm,application/wasm\" required></div><button type=\"submit\" class=\"primary\">Upload</button></form>\
         <p class=\"help\">Open a plugin to dry-run it on an event. Attach one with its buttons here, or by \
         picking it on the <a href=\"/console/settings\">settings page</a>. A version's page diffs it \
         against the attached version and starts a canary of it.</p>{}",
        esc(&csrf.to_string()),
        rollout::overview(&page_of.signed.session.csrf, &rollout, forms),
    );
    if plugins.is_empty() {
        out.push_str("<p>No plugins yet.</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table class=\"plugins\"><caption>Your plugins</caption><thead><tr>\
             <th scope=\"col\">Name</th><th scope=\"col\">Id</th><th scope=\"col\">Exports</th>\
             <th scope=\"col\">Size</th><th scope=\"col\">SHA-256</th><th scope=\"col\">Attached as</th>\
             <th scope=\"col\">Uploaded</th><th scope=\"col\">Try, diff or attach</th></tr></thead><tbody>",
        );
        for plugin in plugins {
            let mut roles = attached.roles(&plugin.id);
            if let Some(slot) = rollout.canary_of(&plugin.id) {
                roles = if roles == "-" {
                    format!("canary ({slot})")
                } else {
                    format!("{roles}, canary ({slot})")
                };
            }
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} KiB</td><td><code class=\"hash\">{}</code></td>\
                 <td class=\"roles\">{}</td><td>{}</td><td><a href=\"/console/plugins/{1}\">Dry run {0}</a> \
                 <a href=\"/console/plugins/{1}/diff\">Diff {0}</a>{}</td></tr>",
                esc(&plugin.label()),
                esc(&plugin.id),
                esc(&plugin.exports.join(", ")),
                (plugin.size + 1023) / 1024,
                esc(&plugin.sha256),
                esc(&roles),
                html::time(plugin.created_at),
                attach_forms(&page_of.signed.session.csrf, plugin, &attached)
            );
        }
        out.push_str("</tbody></table></div>");
    }
    Ok(out)
}

/// Which plugins the partner's settings attach, if it has settings.
struct Attached {
    settings: Option<NotificationSettings>,
}

impl Attached {
    async fn of(console: &Console, partner_id: &str) -> Result<Attached, Failure> {
        let record = console.app.store.settings(partner_id).await.map_err(ApiError::from)?;
        Ok(Attached {
            settings: record.and_then(|r| serde_json::from_str::<NotificationSettings>(&r.body).ok()),
        })
    }

    /// Whether the settings attach `plugin_id` as `role` (`transform` or `classify`).
    fn is(&self, role: &str, plugin_id: &str) -> bool {
        let Some(settings) = &self.settings else { return false };
        let attached = match role {
            "transform" => &settings.transform_plugin,
            _ => &settings.classify_plugin,
        };
        attached.as_deref() == Some(plugin_id)
    }

    fn roles(&self, plugin_id: &str) -> String {
        let roles: Vec<_> = ["transform", "classify"]
            .into_iter()
            .filter(|role| self.is(role, plugin_id))
            .collect();
        if roles.is_empty() { "-".into() } else { roles.join(", ") }
    }
}

/// The roles a plugin can take, by its export, and the buttons' words.
const ROLES: [(&str, &str); 2] = [
    ("transform", "Attach as transform"),
    ("classify", "Attach as classifier"),
];

/// A button for each export of `plugin` that the settings do not attach yet.
fn attach_forms(csrf: &str, plugin: &PluginRecord, attached: &Attached) -> String {
    let mut out = String::new();
    for (role, label) in ROLES {
        if !plugin.exports.iter().any(|e| e == role) || attached.is(role, &plugin.id) {
            continue;
        }
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/console/plugins/{}/attach\" class=\"attach\">{}\
             <input type=\"hidden\" name=\"as\" value=\"{role}\"><button type=\"submit\" value=\"{role}\">{label}</button></form>",
            esc(&plugin.id),
            html::csrf_field(csrf)
        );
    }
    out
}

/// The partner's plugin `id`, or a 404 page that does not repeat the id asked for.
pub(super) async fn own_plugin(console: &Console, page_of: &PartnerPage, id: &str) -> Result<PluginRecord, Failure> {
    console
        .app
        .store
        .plugin(&page_of.partner.id, id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| {
            Failure::page(
                StatusCode::NOT_FOUND,
                "There is no such plugin of yours; pick one from your plugins page.",
            )
        })
}

fn classifies(plugin: &PluginRecord) -> bool {
    plugin.exports.iter().any(|e| e == "classify")
}

/// A plugin's page with `notice` and the rollout forms as sent, answered with `status`.
pub(super) async fn show_page(
    console: &Console,
    page_of: &PartnerPage,
    plugin: &PluginRecord,
    status: StatusCode,
    notice: &str,
    forms: &RolloutForms,
) -> Result<Response, Failure> {
    let body = plugin_page(
        console,
        page_of,
        plugin,
        notice,
        &RunForm::default(),
        &RunErrors::none(),
        "",
        forms,
    )
    .await?;
    Ok(plugin_response(status, page_of, plugin, &body))
}

/// A plugin's page: what it is, its attach buttons, a dry run's `result`, the dry-run form,
/// and its rollout forms.
#[allow(clippy::too_many_arguments)]
async fn plugin_page(
    console: &Console,
    page_of: &PartnerPage,
    plugin: &PluginRecord,
    notice: &str,
    form: &RunForm,
    errors: &RunErrors,
    result: &str,
    forms: &RolloutForms,
) -> Result<String, Failure> {
    let attached = Attached::of(console, &page_of.partner.id).await?;
    let csrf = &page_of.signed.session.csrf;
    let mut out = format!(
        "<p><a href=\"/console/plugins\">Back to your plugins</a></p>{notice}{}<dl class=\"facts\">\
         <dt>Name</dt><dd class=\"plugin-name\">{}</dd><dt>Id</dt><dd><code>{}</code></dd>\
         <dt>Exports</dt><dd>{}</dd><dt>Size</dt><dd>{} bytes</dd><dt>SHA-256</dt><dd><code class=\"hash\">{}</code></dd>\
         <dt>Uploaded</dt><dd>{}</dd><dt>Attached as</dt><dd class=\"attached\">{}</dd></dl>",
        errors.general(),
        esc(&plugin.label()),
        esc(&plugin.id),
        esc(&plugin.exports.join(", ")),
        plugin.size,
        esc(&plugin.sha256),
        html::time(plugin.created_at),
        attached.roles(&plugin.id),
    );
    let buttons = attach_forms(csrf, plugin, &attached);
    if !buttons.is_empty() {
        let _ = write!(out, "<div class=\"actions\">{buttons}</div>");
    }
    out.push_str(
        "<p><a class=\"to-rollout\" href=\"#rollout-title\">Ship this version safely: diff it against the \
         attached version, run it as a canary, roll back</a></p>",
    );
    out.push_str(result);
    out.push_str(&dry_run::form(csrf, &plugin.id, classifies(plugin), form, errors));
    let rollout = Rollout::of(console, &page_of.partner.id).await?;
    out.push_str(&rollout::section(csrf, plugin, &rollout, forms));
    Ok(out)
}

fn plugin_response(status: StatusCode, page_of: &PartnerPage, plugin: &PluginRecord, body: &str) -> Response {
    let title = format!("Plugin {}", plugin.label());
    (
        status,
        page(html::page(&title, Nav::Plugins, Some(&page_of.who()), body)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Shown {
    attached: Option<String>,
}

async fn show(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    let notice = match shown.attached.as_deref() {
        Some("transform") => html::notice(
            "ok",
            "Attached as the transform: postbacks go through it from now on, pending retries included.",
        ),
        Some("classify") => html::notice(
            "ok",
            "Attached as the classifier: it judges the receivers' answers from now on.",
        ),
        _ => String::new(),
    };
    let body = plugin_page(
        &console,
        &page_of,
        &plugin,
        &notice,
        &RunForm::default(),
        &RunErrors::none(),
        "",
        &RolloutForms::default(),
    )
    .await?;
    Ok(plugin_response(StatusCode::OK, &page_of, &plugin, &body))
}

/// A dry run from the plugin's page; the page again with the form as sent and what the run did.
async fn run(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    let form = RunForm::read(&Fields::parse(&body));
    let outcome = match form.to_json() {
        Err(problems) => Err((StatusCode::UNPROCESSABLE_ENTITY, problems)),
        Ok(input) => {
            let input = serde_json::to_vec(&input).expect("JSON serializes");
            run_plugin(&console.app, &page_of.partner.id, &plugin.id, &input)
                .await
                .map_err(|e| (e.status(), dry_run::problems(&e)))
        }
    };
    let (status, errors, result) = match outcome {
        Ok(out) => (StatusCode::OK, RunErrors::none(), dry_run::result(&out)),
        Err((status, problems)) => (status, RunErrors::of(&problems, classifies(&plugin)), String::new()),
    };
    let notice = if status.is_success() || !errors.general().is_empty() {
        String::new()
    } else {
        html::notice("error", "Not run: fix the fields marked below and run it again.")
    };
    let body = plugin_page(
        &console,
        &page_of,
        &plugin,
        &notice,
        &form,
        &errors,
        &result,
        &RolloutForms::default(),
    )
    .await?;
    Ok(plugin_response(status, &page_of, &plugin, &body))
}

/// Attaches the plugin as the transform or the classifier (field `as`): the saved settings
/// with it, saved as the settings page and the API save them.
async fn attach(
    State(console): State<Console>,
    page_of: PartnerPage,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let plugin = own_plugin(&console, &page_of, &id).await?;
    let fields = Fields::parse(&body);
    let role = fields.text("as");
    let field = match role {
        "transform" => "transform_plugin",
        "classify" => "classify_plugin",
        other => {
            return Err(Failure::page(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("as: {other:?} is not a role; attach a plugin as transform or classify"),
            ));
        }
    };
    let partner = &page_of.partner.id;
    let record = console.app.store.settings(partner).await.map_err(ApiError::from)?;
    let failed = |status: StatusCode, message: String| (status, html::notice("error", &message));
    let (status, notice) = match record {
        None => failed(
            StatusCode::CONFLICT,
            "Not attached: you have no settings yet. Fill in and save the settings page first, then attach              the plugin."
                .into(),
        ),
        Some(record) => {
            let mut input: Value = serde_json::from_str(&record.body).map_err(|e| {
                Failure::page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the saved settings could not be read ({e}); save them again on the settings page"),
                )
            })?;
            input[field] = Value::String(plugin.id.to_string());
            match save_settings(&console.app, partner, &input).await {
                Ok(_) => {
                    return Ok(
                        Failure::redirect(&format!("/console/plugins/{}?attached={role}", plugin.id)).into_response(),
                    );
                }
                Err(e) => {
                    let messages: Vec<_> = dry_run::problems(&e)
                        .iter()
                        .map(|p| if p.field.is_empty() { p.message.clone() } else { p.to_string() })
                        .collect();
                    failed(e.status(), format!("Not attached: {}", messages.join("; ")))
                }
            }
        }
    };
    let body = plugin_page(
        &console,
        &page_of,
        &plugin,
        &notice,
        &RunForm::default(),
        &RunErrors::none(),
        "",
        &RolloutForms::default(),
    )
    .await?;
    Ok(plugin_response(status, &page_of, &plugin, &body))
}
