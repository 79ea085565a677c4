//! The API's one error type, answered as RFC 9457 problem details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{FieldError, Invalid, shorten};
use crate::store::StoreError;

/// Most field errors one answer lists; past it, one more entry says how many were left out, so
/// that a batch of thousands of bad events answers in kilobytes.
pub const MAX_ERRORS: usize = 100;

/// Longest `detail` an answer carries, in bytes: a detail can quote input (a path parameter, a
/// parser's message), and an answer must not echo more than a bounded part of it.
const MAX_DETAIL: usize = 2000;

/// An error answer: status, a title, details and, for invalid input, every field at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    errors: Vec<FieldError>,
    /// Seconds to wait before trying again, sent as `Retry-After`.
    retry_after: Option<u64>,
}

impl ApiError {
    /// 400: the request could not be read.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 401: no credential, or one that is unknown or revoked (answered with
    /// `WWW-Authenticate: Bearer`).
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 403: a known credential that may not do this.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 409: the request conflicts with the resource's state.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 503: the engine cannot serve now; trying again later may succeed.
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 429: the caller made too many such requests; it may try again after `retry_after`.
    pub fn too_many_requests(detail: impl Into<String>, retry_after: std::time::Duration) -> ApiError {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: Some(secs.max(1)),
        }
    }

    /// 400 naming the query parameter at fault, its value and the fix.
    pub fn bad_query(error: FieldError) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            detail: error.to_string(),
            errors: vec![error],
            retry_after: None,
        }
    }

    /// 408: the request did not arrive, or was not answered, within `limit`.
    pub fn request_timeout(limit: std::time::Duration) -> ApiError {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            detail: format!("the request was not received and answered within {limit:?}; send it again, whole"),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 413: the body is longer than the `limit` bytes its route accepts.
    pub fn too_large(limit: usize) -> ApiError {
        let shown = if limit.is_multiple_of(1 << 20) {
            format!("{} MiB", limit >> 20)
        } else if limit.is_multiple_of(1 << 10) {
            format!("{} KiB", limit >> 10)
        } else {
            format!("{limit} bytes")
        };
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            detail: format!("the body is larger than {shown} ({limit} bytes), the most this route accepts"),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 422 with field errors, each path prefixed with `prefix` (e.g. `events[3].`); at most
    /// 100 (`MAX_ERRORS`) of them, then one entry counting the others.
    pub fn invalid(invalid: Invalid, prefix: &str) -> ApiError {
        let total = invalid.0.len();
        let errors = invalid
            .0
            .into_iter()
            .take(MAX_ERRORS)
            .map(|mut e| {
                e.field = format!("{prefix}{}", e.field);
                e
            })
            .collect::<Vec<_>>();
        let left_out = total - errors.len();
        ApiError::invalid_counted(errors, left_out)
    }

    /// 422 with `errors` (paths complete), of which 100 (`MAX_ERRORS`) are listed, and `left_out`
    /// more that the caller found but did not keep.
    pub fn invalid_counted(mut errors: Vec<FieldError>, mut left_out: usize) -> ApiError {
        if errors.len() > MAX_ERRORS {
            left_out += errors.len() - MAX_ERRORS;
            errors.truncate(MAX_ERRORS);
        }
        let mut detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        if left_out > 0 {
            let more = FieldError {
                field: String::new(),
                value: None,
                message: format!("{left_out} more errors are not listed; fix these and send again to see them"),
            };
            detail = format!("{detail}; {}", more.message);
            errors.push(more);
        }
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail,
            errors,
            retry_after: None,
        }
    }
}

impl ApiError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong and how to fix it, in words.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The fields at fault, for invalid input.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The field errors, to merge several into one answer.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownPartner(id) => ApiError::invalid(
                FieldError::new(
                    "partner_id",
                    Some(&id),
                    "names no partner; create it with POST /v1/partners",
                )
                .into(),
                "",
            ),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    detail: "the store is unavailable; nothing was changed, try again".into(),
                    errors: Vec::new(),
                    retry_after: None,
                }
            }
        }
    }
}

/// The body of every error answer: RFC 9457 problem details, sent as `application/problem+json`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Problem {
    /// Always `about:blank`: the status tells the kind of problem.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    /// The status's reason phrase, e.g. `Unprocessable Entity`.
    #[schema(value_type = String)]
    title: &'static str,
    /// The HTTP status, repeated.
    status: u16,
    /// What went wrong and how to fix it, in words (at most 2,000 bytes).
    detail: String,
    /// For invalid input (422): every field at fault, with its value and the fix; at most 100,
    /// then one entry counting the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        // The last place before the wire: whatever built this answer, it echoes no more than a
        // bounded part of any input.
        if self.detail.len() > MAX_DETAIL {
            self.detail = shorten(&self.detail, MAX_DETAIL);
        }
        for error in &mut self.errors {
            error.bound();
        }
        let body = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
