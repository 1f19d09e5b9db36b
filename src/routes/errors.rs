//! Extractor errors and unmatched routes, answered in the contract's error shape.

use actix_web::{error, web, HttpRequest, HttpResponse, ResponseError};

use crate::error::ApiError;

/// JSON bodies: a malformed body is a 400, an oversized one a 413, in the contract's shape.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|err, _req| {
            let api = match &err {
                error::JsonPayloadError::OverflowKnownLength { .. }
                | error::JsonPayloadError::Overflow { .. }
                | error::JsonPayloadError::Payload(error::PayloadError::Overflow) => {
                    ApiError::PayloadTooLarge
                }
                error::JsonPayloadError::ContentType => ApiError::bad_request(
                    "unsupported_media_type",
                    "the body must be application/json",
                ),
                _ => ApiError::bad_request(
                    "invalid_body",
                    format!("the JSON body is invalid: {err}"),
                ),
            };
            error::InternalError::from_response(err, api.error_response()).into()
        })
}

/// Query strings: a malformed one is a 400 in the contract's shape.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let api = ApiError::bad_request(
            "invalid_query",
            format!("the query string is invalid: {err}"),
        );
        error::InternalError::from_response(err, api.error_response()).into()
    })
}

/// Path parameters: a malformed one is a 400 in the contract's shape.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        let api = ApiError::bad_request("invalid_path", format!("the path is invalid: {err}"));
        error::InternalError::from_response(err, api.error_response()).into()
    })
}

/// The answer to a path no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let _ = req;
    no_such_endpoint()
}

/// The 404 of a path no route matches.
pub fn no_such_endpoint() -> HttpResponse {
    ApiError::not_found("not_found", "no such endpoint").error_response()
}

/// The default service of a resource: [`method_not_allowed`].
pub fn allow(methods: &'static str) -> actix_web::Route {
    web::to(move || async move { method_not_allowed(methods) })
}

/// 405 in the contract's shape, with the `Allow` header naming the methods the route answers.
pub fn method_not_allowed(methods: &'static str) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(methods),
    );
    response
}
