//! The decision rate limit per client address (contract section 8): above it, 429
//! `rate_limited` with `Retry-After`, before the request is parsed or decided.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::error::ApiError;
use crate::ivt::Reason;
use crate::state::AppState;

/// Middleware of the decision routes: takes one request from the client's allowance, or
/// answers 429 and counts the request as invalid (`decision`, `rate`). It wraps each route,
/// inside the resource's CORS and observation, so a 429 carries CORS headers (the page's
/// script can read it) and shows in the request metrics.
pub(crate) async fn limit_decisions(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limited = req.app_data::<web::Data<AppState>>().and_then(|state| {
        match state.ivt.check_decision(req.request()) {
            Ok(()) => None,
            Err(wait) => {
                state.metrics.invalid("decision", Reason::Rate);
                Some(wait)
            }
        }
    });
    match limited {
        None => Ok(next.call(req).await?.map_into_left_body()),
        Some(wait) => {
            // Rounded up: a client that waits what it is told is let in.
            let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let response = ApiError::RateLimited {
                retry_after_secs: retry_after_secs.max(1),
            }
            .error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}
