//! Request bodies read up to a cap that each route names, refused past it with a 413 problem.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::ApiError;

/// The whole body of a request, at most `MAX` bytes. A declared `Content-Length` past the cap
/// is refused before a byte of the body is read; a body without one is read until it passes
/// the cap.
pub(crate) struct Body<const MAX: usize>(pub Bytes);

impl<S: Send + Sync, const MAX: usize> FromRequest<S> for Body<MAX> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX as u64) {
            return Err(ApiError::too_large(MAX));
        }
        match Limited::new(request.into_body(), MAX).collect().await {
            Ok(collected) => Ok(Body(collected.to_bytes())),
            Err(error) if error.is::<LengthLimitError>() => Err(ApiError::too_large(MAX)),
            Err(error) => Err(ApiError::bad_request(format!("the body could not be read: {error}"))),
        }
    }
}
