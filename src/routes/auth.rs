//! Bearer credentials: the admin token and advertisers' API keys.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, ResponseError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::inventory::AdvertiserId;
use crate::state::AppState;
use crate::store::Backend;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator, holding the admin token: sees everything.
    Admin,
    /// An advertiser, by its API key: sees its own campaigns.
    Advertiser(AdvertiserId),
}

impl Caller {
    /// Whether the caller may see the campaigns of `advertiser`.
    pub fn may_see(&self, advertiser: &AdvertiserId) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Advertiser(own) => own == advertiser,
        }
    }
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Requires the admin token.
pub fn require_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match bearer(req) {
        Some(token) if state.is_admin_token(token) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Middleware of the admin API ([`super::admin_resource`]): 401 without the admin token, before
/// the handler's extractors read the body.
pub(crate) async fn admin_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let allowed = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| is_admin(req.request(), state));
    if !allowed {
        let response = ApiError::Unauthorized.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Whether the request carries the admin token.
pub fn is_admin(req: &HttpRequest, state: &AppState) -> bool {
    require_admin(req, state).is_ok()
}

/// The caller behind the admin token or an advertiser's key.
pub async fn caller(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    let token = bearer(req).ok_or(ApiError::Unauthorized)?;
    if state.is_admin_token(token) {
        return Ok(Caller::Admin);
    }
    // Keys are 256-bit random values, so a fast hash is enough; the lookup by hash does not
    // depend on how much of a key matches.
    if token.len() > 128 {
        return Err(ApiError::Unauthorized);
    }
    let Some(id) = state.store.advertiser_for_key(&hash_key(token)).await? else {
        return Err(ApiError::Unauthorized);
    };
    // The key of an advertiser the served inventory no longer has works nowhere, whichever
    // write removed it.
    let removed = state
        .catalog
        .snapshot()
        .is_some_and(|s| !s.document.advertisers.iter().any(|a| a.id == id));
    if removed {
        return Err(ApiError::Unauthorized);
    }
    Ok(Caller::Advertiser(id))
}

/// A new API key: a recognisable prefix and 256 random bits.
pub fn new_api_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("rk_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of an API key.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
