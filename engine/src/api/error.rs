//! The API's one error type, answered as RFC 9457 problem details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{FieldError, Invalid};
use crate::store::StoreError;

/// An error answer: status, a title, details and, for invalid input, every field at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    errors: Vec<FieldError>,
}

impl ApiError {
    /// 400: the request could not be read.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 401: no credential, or one that is unknown or revoked (answered with
    /// `WWW-Authenticate: Bearer`).
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 403: a known credential that may not do this.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 409: the request conflicts with the resource's state.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 422 with field errors, each path prefixed with `prefix` (e.g. `events[3].`).
    pub fn invalid(invalid: Invalid, prefix: &str) -> ApiError {
        let errors: Vec<FieldError> = invalid
            .0
            .into_iter()
            .map(|mut e| {
                e.field = format!("{prefix}{}", e.field);
                e
            })
            .collect();
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail,
            errors,
        }
    }
}

impl ApiError {
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
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
