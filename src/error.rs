//! The API's errors and their one mapping to HTTP: the contract's JSON shape for clients, the
//! cause chain for the log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::inventory::{FieldError, InvalidInventory};
use crate::store::StoreError;

/// Everything a JSON endpoint can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{message}")]
    BadRequest {
        /// The snake_case code.
        code: &'static str,
        /// For a person.
        message: String,
    },
    /// No valid credentials (401).
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// Valid credentials, not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there for this caller (404).
    #[error("{message}")]
    NotFound {
        /// The snake_case code.
        code: &'static str,
        /// For a person.
        message: String,
    },
    /// The method is not supported on this path (405).
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// The request body is larger than the endpoint takes (413).
    #[error("the request body is too large for this endpoint")]
    PayloadTooLarge,
    /// The request body is compressed (415): regie never inflates what a client sends.
    #[error("request bodies must not be compressed (Content-Encoding: identity only)")]
    UnsupportedEncoding,
    /// An inventory write based on an old version (409).
    #[error("the inventory is at version {current}; reload it and apply your change again")]
    VersionConflict {
        /// The current version.
        current: u64,
    },
    /// An invalid inventory (422).
    #[error(transparent)]
    InvalidInventory(#[from] InvalidInventory),
    /// The client address is over its decision limit (429); it may ask again after the
    /// given number of seconds (`Retry-After`).
    #[error("too many ad requests from this address; try again in {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until a request would be allowed, at least 1.
        retry_after_secs: u64,
    },
    /// No inventory is loaded yet (503).
    #[error("no inventory is loaded yet")]
    NotReady,
    /// The store failed (503): the client did nothing wrong and may retry.
    #[error("the store is unavailable; try again shortly")]
    Store(#[from] StoreError),
}

impl ApiError {
    /// A 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 404 with a code and message.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::NotFound { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedEncoding => "unsupported_encoding",
            ApiError::VersionConflict { .. } => "version_conflict",
            ApiError::InvalidInventory(_) => "invalid_inventory",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::NotReady => "not_ready",
            ApiError::Store(_) => "store_unavailable",
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a [FieldError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::VersionConflict { .. } => StatusCode::CONFLICT,
            ApiError::InvalidInventory(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotReady | ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Store(e) = self {
            tracing::error!(error = %e, "store error answered as 503");
        }
        let details = match self {
            ApiError::InvalidInventory(e) => Some(e.details.as_slice()),
            _ => None,
        };
        let current_version = match self {
            ApiError::VersionConflict { current } => Some(*current),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::RateLimited { retry_after_secs } = self {
            response.insert_header((actix_web::http::header::RETRY_AFTER, *retry_after_secs));
        }
        // No cache may keep an error: the same request may succeed a moment later.
        response
            .insert_header((
                actix_web::http::header::CACHE_CONTROL,
                actix_web::http::header::HeaderValue::from_static("no-store"),
            ))
            .json(Body {
                error: ErrorBody {
                    code: self.code(),
                    message: self.to_string(),
                    details,
                    current_version,
                },
            })
    }
}
