//! Signing in with a partner key or the operator token, and signing out.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::html::{self, Nav};
use super::session::{self, Session};
use super::{Console, Failure, Fields, page};
use crate::api::{Caller, caller_by_hash, partner_for};
use crate::store::{KeyKind, rules};

pub(super) fn router() -> Router<Console> {
    Router::new()
        .route("/console/sign-in", get(form).post(sign_in))
        .route("/console/sign-out", post(sign_out))
}

#[derive(Deserialize)]
struct Why {
    why: Option<String>,
}

/// The sign-in form. A visitor without a session gets an anonymous one, whose CSRF token the
/// form carries.
async fn form(State(console): State<Console>, headers: HeaderMap, Query(why): Query<Why>) -> Response {
    let existing = session::read(&console, &headers);
    if existing.as_ref().is_some_and(|s| s.hash.is_some()) {
        return Failure::redirect("/console/settings").into_response();
    }
    let session = existing.unwrap_or_else(|| Session::new(None, None));
    let notice = match why.why.as_deref() {
        Some("revoked") => html::notice("error", "Your key was revoked or is no longer known: sign in again."),
        Some("ingest") => html::notice("error", "An ingest key cannot sign in to the console."),
        Some("out") => html::notice("ok", "You are signed out."),
        _ => String::new(),
    };
    let mut response = shown(StatusCode::OK, &session, &notice);
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::cookie(&console, &session, session::over_https(&headers)),
    );
    response
}

fn shown(status: StatusCode, session: &Session, notice: &str) -> Response {
    let body = format!(
        "{notice}<form method=\"post\" action=\"/console/sign-in\" class=\"narrow\">{}\
         <label for=\"key\">Partner key or operator token</label>\
         <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"off\" required \
         aria-describedby=\"key-help\">\
         <p id=\"key-help\" class=\"help\">The <code>pw_live_…</code> token your platform gave you. \
         It is checked again on every page; revoking it signs you out.</p>\
         <button type=\"submit\">Sign in</button></form>",
        html::csrf_field(&session.csrf)
    );
    (status, page(html::page("Sign in", Nav::None, None, &body))).into_response()
}

async fn sign_in(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    // The guard let the POST through, so the anonymous session is there.
    let Some(current) = session::read(&console, &headers) else {
        return Failure::to_sign_in(None).into_response();
    };
    let fields = Fields::parse(&body);
    let key = fields.text("key").trim();
    if key.is_empty() {
        return shown(
            StatusCode::UNPROCESSABLE_ENTITY,
            &current,
            &html::notice("error", "key: is required; paste your pw_live_… key"),
        );
    }
    let hash = rules::token_hash(key);
    let caller = match caller_by_hash(&console.app, hash.clone()).await {
        Ok(caller) => caller,
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            return shown(
                StatusCode::UNAUTHORIZED,
                &current,
                &html::notice(
                    "error",
                    "key: this key is unknown or revoked; check it, or ask for a new one",
                ),
            );
        }
        Err(e) => return Failure::from(e).into_response(),
    };
    let partner = match &caller {
        Caller::Key(key) if key.kind == KeyKind::Ingest => {
            return shown(
                StatusCode::FORBIDDEN,
                &current,
                &html::notice(
                    "error",
                    "key: an ingest key posts events only; sign in with a partner key or the operator token",
                ),
            );
        }
        Caller::Key(key) if key.kind == KeyKind::Partner => key.partner_id.as_deref().map(str::to_owned),
        _ => None,
    };
    if let Some(id) = &partner
        && let Err(e) = partner_for(&console.app, &caller, id).await
    {
        return shown(e.status(), &current, &html::notice("error", e.detail()));
    }
    // A new session on signing in: nothing of the anonymous one (its id, its token) carries over.
    console.signed_out.add(&current);
    let next = if partner.is_some() {
        "/console/settings"
    } else {
        "/console/operator"
    };
    let session = Session::new(Some(hash), partner);
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, next.to_owned()),
            (
                header::SET_COOKIE,
                session::cookie(&console, &session, session::over_https(&headers))
                    .to_str()
                    .expect("header text")
                    .to_owned(),
            ),
        ],
    )
        .into_response()
}

async fn sign_out(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Some(current) = session::read(&console, &headers) {
        console.signed_out.add(&current);
    }
    Failure::to_sign_in(Some("out")).into_response()
}
