//! *Plugins*: upload a plugin (checked and compiled as the API's upload does,
//! [`crate::api::upload_plugin`]), and the partner's plugins with their exports, size and hash,
//! and which of them the settings attach. Dry runs go through the API for now
//! (`POST .../plugins/{plugin_id}/run`); attaching one is picking it on the settings page.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::html::{self, Nav, esc};
use super::session::PartnerPage;
use super::{Console, Failure, page};
use crate::api::{ApiError, upload_plugin};
use crate::settings::NotificationSettings;

pub(super) fn router() -> Router<Console> {
    Router::new().route("/console/plugins", get(list).post(upload))
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
            &format!("Uploaded {id}: pick it on the settings page to attach it."),
        ),
        None => String::new(),
    };
    let body = render(&console, &page_of, &notice).await?;
    Ok(page(html::page("Plugins", Nav::Plugins, Some(&page_of.who()), &body)).into_response())
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

async fn render(console: &Console, page_of: &PartnerPage, notice: &str) -> Result<String, Failure> {
    let store = &console.app.store;
    let partner = &page_of.partner.id;
    let plugins = store.plugins(partner).await.map_err(ApiError::from)?;
    let settings = store
        .settings(partner)
        .await
        .map_err(ApiError::from)?
        .and_then(|r| serde_json::from_str::<NotificationSettings>(&r.body).ok());
    let attached = |id: &str| {
        let mut roles = Vec::new();
        if let Some(settings) = &settings {
            if settings.transform_plugin.as_deref() == Some(id) {
                roles.push("transform");
            }
            if settings.classify_plugin.as_deref() == Some(id) {
                roles.push("classify");
            }
        }
        if roles.is_empty() {
            "-".to_owned()
        } else {
            roles.join(", ")
        }
    };
    let csrf = percent_encoding::utf8_percent_encode(&page_of.signed.session.csrf, percent_encoding::NON_ALPHANUMERIC);
    let mut out = format!(
        "{notice}<form method=\"post\" action=\"/console/plugins?csrf={}\" enctype=\"multipart/form-data\" \
         class=\"narrow\"><h2>Upload</h2><div class=\"field\"><label for=\"name\">Name</label>\
         <input id=\"name\" name=\"name\" maxlength=\"100\" required></div><div class=\"field\">\
         <label for=\"wasm\">Component (.wasm)</label><input id=\"wasm\" name=\"wasm\" type=\"file\" \
         accept=\".wasm,application/wasm\" required></div><button type=\"submit\" class=\"primary\">Upload</button></form>\
         <p class=\"help\">Try a plugin on an event with <code>POST /v1/partners/{}/plugins/{{plugin_id}}/run</code>; \
         attach it by picking it on the <a href=\"/console/settings\">settings page</a>.</p>",
        esc(&csrf.to_string()),
        esc(partner)
    );
    if plugins.is_empty() {
        out.push_str("<p>No plugins yet.</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table><caption>Your plugins</caption><thead><tr><th scope=\"col\">Name</th>\
             <th scope=\"col\">Id</th><th scope=\"col\">Exports</th><th scope=\"col\">Size</th>\
             <th scope=\"col\">SHA-256</th><th scope=\"col\">Attached as</th><th scope=\"col\">Uploaded</th>\
             </tr></thead><tbody>",
        );
        for plugin in &plugins {
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} KiB</td><td><code class=\"hash\">{}</code></td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&plugin.name),
                esc(&plugin.id),
                esc(&plugin.exports.join(", ")),
                (plugin.size + 1023) / 1024,
                esc(&plugin.sha256),
                attached(&plugin.id),
                html::time(plugin.created_at)
            );
        }
        out.push_str("</tbody></table></div>");
    }
    Ok(out)
}
