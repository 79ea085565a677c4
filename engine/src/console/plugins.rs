//! *Plugins*: the partner's uploaded plugins with their exports, size and hash, and which of
//! them the settings attach. Uploads and dry runs go through the API for now
//! (`POST /v1/partners/{partner_id}/plugins`, `POST .../plugins/{plugin_id}/run`); attaching
//! one is picking it on the settings page.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::html::{self, Nav, esc};
use super::session::PartnerPage;
use super::{Console, Failure, page};
use crate::api::ApiError;
use crate::settings::NotificationSettings;

pub(super) fn router() -> Router<Console> {
    Router::new().route("/console/plugins", get(list))
}

async fn list(State(console): State<Console>, page_of: PartnerPage) -> Result<Response, Failure> {
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
    let mut out = format!(
        "<p class=\"help\">Upload a plugin (a WebAssembly component) with <code>POST /v1/partners/{}/plugins</code> \
         and try it with <code>POST …/plugins/{{plugin_id}}/run</code>; attach it by picking it on the \
         <a href=\"/console/settings\">settings page</a>.</p>",
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
    Ok(page(html::page("Plugins", Nav::Plugins, Some(&page_of.who()), &out)).into_response())
}
