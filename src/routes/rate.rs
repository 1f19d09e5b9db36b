//! The decision rate limit per client address (contract section 8): above it, 429
//! `rate_limited` with `Retry-After`, before the request is parsed or decided.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use super::body;

use crate::error::ApiError;
use crate::ivt::Reason;
use crate::state::AppState;

/// The method of a decision resource's decisions: resource data, read by [`gate`].
pub(crate) struct DecisionMethod(pub Method);

/// Middleware of the decision resources, in place of [`super::body::guard`]: guards the body
/// as it does, then takes one decision request (the resource's [`DecisionMethod`]) from the
/// client's allowance, or answers 429 and counts the request as invalid (`decision`, `rate`).
/// One layer rather than two, since every decision goes through it. It runs inside the
/// resource's CORS and observation, so a 429 carries CORS headers (the page's script can read
/// it) and shows in the request metrics; preflights are answered by CORS before it.
pub(crate) async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = body::refusal(&req).or_else(|| {
        let DecisionMethod(method) = req.app_data::<DecisionMethod>()?;
        if req.method() != method {
            return None;
        }
        let state = req.app_data::<web::Data<AppState>>()?;
        let wait = state.ivt.check_decision(req.request()).err()?;
        state.metrics.invalid("decision", Reason::Rate);
        // Rounded up: a client that waits what it is told is let in.
        let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Some(ApiError::RateLimited {
            retry_after_secs: retry_after_secs.max(1),
        })
    });
    if let Some(refused) = refused {
        return Ok(req
            .into_response(refused.error_response())
            .map_into_right_body());
    }
    Ok(body::in_shape(next.call(req).await?))
}
