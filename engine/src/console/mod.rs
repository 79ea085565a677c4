//! The partner console: web pages at `/console` for what partners otherwise do with the HTTP
//! API — settings with their placeholders and a preview, test postbacks, the postback log,
//! plugins with their dry runs, versions' replay diffs, canaries and rollbacks (`rollout`) —
//! and the operator's queue, delivery rates, partners and keys.
//!
//! The pages are another face of the API's operations: they call the same functions (settings'
//! validation and save, preview, test postbacks, retries, plugin uploads and dry runs, replay
//! diffs, canaries and rollbacks, creating partners) and act for a partner only once the API's
//! own check (`api::partner_for`) allows it. Pages are rendered on the server and work without
//! script; `console.js` adds placeholder insertion and a live preview. Every asset is inside
//! the binary.
//!
//! Safety: the session cookie is sealed (`session`); every POST must carry the session's CSRF
//! token (`guard`); every response carries the security headers (`secure`), a
//! Content-Security-Policy that allows no inline script or style included.

mod chart;
mod dry_run;
mod guard;
mod html;
mod log;
mod operator;
mod plugins;
mod rollout;
mod session;
mod settings;
mod sign_in;
mod test_page;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::{ApiError, AppState};

/// What the console's handlers share: the API's state, and the sessions signed out here.
#[derive(Clone)]
pub struct Console {
    /// The API's state: the console acts through the same store, worker and checks.
    pub app: AppState,
    /// Sessions signed out in this process.
    signed_out: session::SignedOut,
}

/// The console's pages, to merge beside the API's routes.
pub fn router(app: AppState) -> Router {
    let console = Console {
        app,
        signed_out: session::SignedOut::default(),
    };
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
        .route("/console/{*rest}", axum::routing::any(missing))
        .merge(sign_in::router())
        .merge(settings::router())
        .merge(test_page::router())
        .merge(log::router())
        .merge(operator::router())
        .merge(plugins::router())
        .merge(rollout::router())
        .layer(axum::middleware::from_fn_with_state(console.clone(), guard::csrf))
        .layer(axum::middleware::map_response(secure))
        .with_state(console)
}

/// `/console`: the settings page once signed in, else signing in.
async fn index() -> Response {
    Failure::redirect("/console/settings").into_response()
}

/// Any other path under `/console`: a 404 page, with the console's headers like every page.
async fn missing() -> Response {
    Failure::page(StatusCode::NOT_FOUND, "There is no such console page.").into_response()
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/console.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/console.js"))
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    )
        .into_response()
}

/// The Content-Security-Policy of every console response: only this origin's own script,
/// styles and images, no framing, forms posting here only.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Adds the security headers to every console response.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages show a partner's data: no shared cache may keep them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A page's answer when it cannot show itself: a redirect (to sign in, most often) or an
/// error page with the status and what to do.
#[derive(Debug)]
pub enum Failure {
    /// 303 to `location`; the session cookie is removed when `sign_out` is set.
    Redirect {
        /// Where to.
        location: String,
        /// Whether the session ends.
        sign_out: bool,
    },
    /// An error page.
    Page {
        /// Its status.
        status: StatusCode,
        /// What went wrong and how to fix it.
        message: String,
    },
}

impl Failure {
    /// 303 to `location`.
    pub fn redirect(location: &str) -> Failure {
        Failure::Redirect {
            location: location.to_owned(),
            sign_out: false,
        }
    }

    /// 303 to the sign-in page, ending the session; `why` names a notice the page shows.
    pub fn to_sign_in(why: Option<&str>) -> Failure {
        Failure::Redirect {
            location: match why {
                Some(why) => format!("/console/sign-in?why={why}"),
                None => "/console/sign-in".into(),
            },
            sign_out: why.is_some(),
        }
    }

    /// An error page with `status`.
    pub fn page(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure::Page {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure::page(error.status(), error.detail())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Redirect { location, sign_out } => {
                let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
                if sign_out {
                    response.headers_mut().insert(header::SET_COOKIE, session::removal());
                }
                response
            }
            Failure::Page { status, message } => {
                let title = status.canonical_reason().unwrap_or("Error");
                let body = format!(
                    "{}<p><a href=\"/console\">Back to the console</a></p>",
                    html::notice("error", &message)
                );
                (status, page(html::page(title, html::Nav::None, None, &body))).into_response()
            }
        }
    }
}

/// An HTML page answer.
pub fn page(text: String) -> axum::response::Html<String> {
    axum::response::Html(text)
}

/// The fields of a submitted form, in order (a field may repeat).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Reads an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or empty.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or_default()
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
