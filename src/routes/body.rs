//! What every request body goes through before a handler: never decompressed, never larger
//! than its endpoint's limit, and refused in the contract's error shape.
//!
//! A compressed body is refused whatever it holds: a few kilobytes of gzip can inflate to
//! gigabytes, so regie never inflates anything a client sends (actix-web's decompression of
//! request bodies is not compiled in). A body over its endpoint's limit is refused by the
//! extractor that reads it; actix answers that in plain text, which this middleware turns
//! into the contract's JSON.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, ResponseError};
use futures_util::StreamExt;

use crate::error::ApiError;

/// Whether every coding the `Content-Encoding` headers name is `identity` (or none is named).
pub fn is_identity(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).all(|value| {
        value.to_str().is_ok_and(|codings| {
            codings
                .split(',')
                .map(str::trim)
                .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case("identity"))
        })
    })
}

/// Refuses encoded bodies (415) and writes body-size refusals (413) in the contract's shape.
pub(crate) async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(refused) = refusal(&req) {
        return Ok(req
            .into_response(refused.error_response())
            .map_into_right_body());
    }
    Ok(in_shape(next.call(req).await?))
}

/// The whole body of a request that may carry up to `limit` bytes, read into one buffer of the
/// size the request announces. Read through a buffer that doubles as it fills, as actix's
/// `Bytes` extractor does, a document of tens of megabytes is copied again at each doubling
/// and touches twice its size of fresh memory: a third of a second of an instance's first
/// inventory PUT.
pub(crate) async fn read_whole(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = BytesMut::with_capacity(announced.unwrap_or(8 * 1024));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("invalid_body", format!("the body could not be read: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Why [`guard`] refuses a request before it is handled, if it does.
pub(crate) fn refusal(req: &ServiceRequest) -> Option<ApiError> {
    (!is_identity(req.headers())).then_some(ApiError::UnsupportedEncoding)
}

/// The response of a request [`guard`] let through, a body-size refusal written in the
/// contract's shape.
pub(crate) fn in_shape<B>(response: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(response.headers()) {
        let (req, _) = response.into_parts();
        let response = ApiError::PayloadTooLarge.error_response();
        return ServiceResponse::new(req, response).map_into_right_body();
    }
    response.map_into_left_body()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(header::CONTENT_ENCODING, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn only_identity_or_no_coding_is_accepted() {
        assert!(is_identity(&headers(&[])));
        assert!(is_identity(&headers(&["identity"])));
        assert!(is_identity(&headers(&["Identity, identity"])));
        assert!(!is_identity(&headers(&["gzip"])));
        assert!(!is_identity(&headers(&["identity", "br"])));
        assert!(!is_identity(&headers(&["identity, deflate"])));
    }
}
