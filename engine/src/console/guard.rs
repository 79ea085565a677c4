//! The CSRF check every console POST passes before its handler runs: the form's `csrf` field
//! (or, for file uploads, the `csrf` query parameter) must equal the session's token. A page's
//! forms carry it; another site's forms cannot know it, and the cookie is SameSite=Strict too.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Console, Failure, Fields, session};

/// Largest console form: a plugin upload (the API takes 64 MiB) with room for its framing.
const MAX_FORM: usize = 65 << 20;

/// Refuses a POST without the session's CSRF token: 403 with a page that says what to do.
pub async fn csrf(State(console): State<Console>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(session) = session::read(&console, request.headers()) else {
        return refused("your console session has expired or was signed out");
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return Failure::page(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the form is larger than {} MiB; send a smaller file", MAX_FORM >> 20),
        )
        .into_response();
    };
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let sent = if form {
        Fields::parse(&bytes).get("csrf").map(str::to_owned)
    } else {
        Fields::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .get("csrf")
            .map(str::to_owned)
    };
    match sent {
        Some(token) if session::same(&token, &session.csrf) => {
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        _ => refused("the form did not carry this session's security token"),
    }
}

fn refused(why: &str) -> Response {
    Failure::page(
        StatusCode::FORBIDDEN,
        format!(
            "Refused: {why}. Nothing was changed. Open the page again from the console (sign in if \
             asked) and send the form from there."
        ),
    )
    .into_response()
}
