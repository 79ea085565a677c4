//! The API's OpenAPI 3.1 document, served at `GET /openapi.json`.
//!
//! Each route is described by `#[utoipa::path]` on its handler, listed in its module's `Doc`
//! next to the module's router; this module merges the modules' documents and adds what every
//! route shares: the three bearer credentials and the problem answers. `tests/openapi.rs` checks
//! that the document and the routers hold the same routes, that answers match it, and that it
//! is a valid OpenAPI 3.1 document.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Header, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse};

/// The security scheme of the operator token.
const OPERATOR: &str = "operator_token";
/// The security scheme of partner keys.
const PARTNER: &str = "partner_key";
/// The security scheme of ingest keys.
const INGEST: &str = "ingest_key";

/// The whole document.
pub(super) fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Root::openapi();
    for part in [
        super::partners::Doc::openapi(),
        super::keys::Doc::openapi(),
        super::plugins::Doc::openapi(),
        super::rollout::Doc::openapi(),
        super::settings::Doc::openapi(),
        super::events::Doc::openapi(),
        super::deliveries::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    Shared.modify(&mut doc);
    doc
}

/// The document as served, made once.
static TEXT: LazyLock<String> = LazyLock::new(|| document().to_pretty_json().expect("the OpenAPI document serializes"));

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "health",
    responses((status = 200, description = "This OpenAPI 3.1 document.", content_type = "application/json", body = Object)),
)]
pub(super) async fn serve() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], TEXT.as_str())
}

/// The routes of `api/mod.rs`, the document's info, the shared responses and the tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Postwire",
        description = "Postbacks (webhooks) to partners: partners, their keys, settings and plugins; \
events in; the delivery log. Every route but the health probes and this document needs a bearer \
token: the operator token, an ingest key or a partner key, as each operation's `security` says.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(super::health, super::healthz, super::readyz, super::metrics, serve),
    components(
        schemas(super::error::Problem),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, Unprocessable, TooManyRequests, Unavailable),
    ),
    tags(
        (name = "partners", description = "Partners (tenants) and their signing secrets."),
        (name = "keys", description = "Partner keys and ingest keys (the operator only)."),
        (name = "settings", description = "A partner's postback settings for action inquiries."),
        (name = "plugins", description = "A partner's WebAssembly plugins."),
        (name = "events", description = "Events in: each request is one transaction."),
        (name = "deliveries", description = "The delivery log, retries and replays."),
        (name = "health", description = "Probes and this document; no credential."),
    ),
)]
struct Root;

/// The partner of a partner-scoped route.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path parameter in the OpenAPI document")]
pub(super) struct PartnerPath {
    /// The partner's id, `ptn_…`. A partner key of another partner gets 404, as if it did not exist.
    partner_id: String,
}

/// Problem answers shared by many routes, each a response component with the `Problem` body.
macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident = $description:literal;)*) => {$(
        $(#[$doc])*
        pub(super) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem(stringify!($name), $description).into())
            }
        }
    )*};
}

problems! {
    /// 400.
    BadRequest = "The request could not be read: the body is not JSON, or a query parameter is malformed.";
    /// 401.
    Unauthorized = "No credential, or an unknown or revoked one (answered with `WWW-Authenticate: Bearer`).";
    /// 403.
    Forbidden = "A known credential that may not use this route (or an ingest key posting for a partner it does not name).";
    /// 404.
    NotFound = "No such resource, or one of another partner.";
    /// 409.
    Conflict = "The request conflicts with the resource's state; `detail` says how to resolve it.";
    /// 413.
    TooLarge = "The body is larger than this route accepts; `detail` names the limit.";
    /// 429.
    TooManyRequests = "Too many test postbacks and plugin dry runs for this partner (`--tries-per-minute`); `Retry-After` says when to try again.";
    /// 422.
    Unprocessable = "Invalid input: `errors` names every field at fault, its value and the fix.";
    /// 503.
    Unavailable = "The store cannot answer now; nothing was changed, try again.";
}

/// A response with a `Problem` body; 401 names the scheme to authenticate with.
fn problem(name: &str, description: &str) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    if name == "Unauthorized" {
        let mut header = Header::new(Object::with_type(Type::String));
        header.description = Some("`Bearer`".into());
        response = response.header("WWW-Authenticate", header);
    }
    if name == "TooManyRequests" {
        let mut header = Header::new(Object::with_type(Type::Integer));
        header.description = Some("Seconds until the next try is allowed.".into());
        response = response.header("Retry-After", header);
    }
    response.build()
}

/// What every route shares: the security schemes, and the answers of every route that takes a
/// credential (401, 403, 503), so that handlers list only their own.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                OPERATOR,
                "The operator token (`--admin-token`, or the one `serve` prints on its first start): \
                 every route.",
            ),
            (
                PARTNER,
                "A partner key (`POST /v1/partners/{partner_id}/keys`): the routes under its own \
                 `/v1/partners/{partner_id}/` but its keys, `disable`, `enable` and `DELETE`.",
            ),
            (
                INGEST,
                "An ingest key (`POST /v1/ingest-keys`): posting events, for every partner or those \
                 it names; nothing else.",
            ),
        ] {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.bearer_format = Some("pw_live_…".into());
            http.description = Some(description.into());
            components.add_security_scheme(name, SecurityScheme::Http(http));
        }
        for item in doc.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                if operation.security.as_ref().is_none_or(Vec::is_empty) {
                    continue;
                }
                for (status, name) in [("401", "Unauthorized"), ("403", "Forbidden"), ("503", "Unavailable")] {
                    operation
                        .responses
                        .responses
                        .entry(status.into())
                        .or_insert_with(|| Ref::from_response_name(name).into());
                }
            }
        }
    }
}
