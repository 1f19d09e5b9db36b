//! The tracking endpoints: impression and viewable beacons, and the click redirect.
//!
//! A beacon always answers the 1×1 GIF (a page cannot do anything with an error); what it
//! counted shows in the stats and in `regie_tracking_rejected_total`. A click with a bad token
//! answers a short HTML page and never redirects: the landing URL comes from the inventory,
//! never from the request.

use std::sync::Arc;

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use ulid::Ulid;

use super::errors::{method_not_allowed, no_such_endpoint};
use super::{no_store, segment, state_of};
use crate::inventory::{Campaign, SlotName};
use crate::state::AppState;
use crate::store::Event;
use crate::tracking::{EventKind, TokenError, CLOCK_SKEW_SECS};

/// The transparent 1×1 GIF, 43 bytes.
pub const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    for (prefix, pattern, kind) in [
        ("/v1/i", "/v1/i/{token}", EventKind::Impression),
        ("/v1/v", "/v1/v/{token}", EventKind::Viewable),
    ] {
        cfg.service(
            super::public_segment_scope(prefix, pattern)
                .default_service(web::to(move |req| beacon(req, kind))),
        );
    }
    cfg.service(super::segment_scope("/v1/c", "/v1/c/{token}").default_service(web::to(click)));
}

fn pixel() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/gif")
        .insert_header(no_store())
        .body(PIXEL_GIF.as_slice())
}

/// What a valid token points at in the served inventory.
struct Verified {
    /// The decision.
    decision_id: Ulid,
    /// When the decision was made, in Unix milliseconds.
    issued_at_ms: i64,
    /// The campaign it names, as the served inventory describes it.
    campaign: Arc<Campaign>,
    /// The creative it names, an index of the campaign's creatives.
    creative: usize,
    /// The slot it names, as the served inventory does.
    slot: SlotName,
}

impl Verified {
    /// Where a click on the creative leads.
    fn landing_url(&self) -> &str {
        self.campaign.creatives[self.creative].landing_url.as_str()
    }
}

/// Verifies the token's signature, age and that its campaign, creative and slot still exist.
/// The names come from the inventory, where the token's are looked up: only names the
/// inventory holds, all of them valid, reach the counters and metric labels.
fn verify(state: &AppState, token: &str, kind: EventKind) -> Result<Verified, TokenError> {
    let signed = state.signer.verify_signature(token)?;
    let now = state.clock.now().timestamp();
    let age = now - signed.issued_at;
    if age > state.token_ttl(kind) as i64 || age < -CLOCK_SKEW_SECS {
        return Err(TokenError::Expired);
    }
    let snapshot = state.catalog.served().ok_or(TokenError::UnknownCampaign)?;
    let campaign = snapshot
        .campaign(signed.campaign())
        .ok_or(TokenError::UnknownCampaign)?;
    let creative = campaign
        .campaign
        .creatives
        .iter()
        .position(|c| c.id.as_str() == signed.creative())
        .ok_or(TokenError::UnknownCampaign)?;
    let slot = snapshot
        .slot(signed.slot())
        .ok_or(TokenError::UnknownCampaign)?;
    Ok(Verified {
        decision_id: signed.decision_id,
        issued_at_ms: signed.issued_at_ms(),
        campaign: Arc::clone(&campaign.campaign),
        creative,
        slot: slot.slot.name.clone(),
    })
}

/// Counts the event, valid or, when the request shows it is invalid traffic, apart.
fn record(req: &HttpRequest, state: &AppState, verified: Verified, kind: EventKind) {
    let now_ms = state.clock.now().timestamp_millis();
    let invalid = state
        .ivt
        .event_reason(req, kind, verified.issued_at_ms, now_ms);
    state.recorder.event(Event {
        kind,
        decision_id: verified.decision_id,
        campaign: verified.campaign.id.clone(),
        slot: verified.slot,
        day: state.today(),
        invalid,
    });
}

fn reject(state: &AppState, kind: EventKind, reason: TokenError) {
    state
        .metrics
        .tracking_rejected
        .with_label_values(&[kind.as_str(), reason.label()])
        .inc();
}

/// `GET` and `HEAD /v1/i/{token}` and `/v1/v/{token}`, routed by [`super::segment_scope`].
async fn beacon(req: HttpRequest, kind: EventKind) -> HttpResponse {
    let Some(token) = segment(&req, "") else {
        return no_such_endpoint();
    };
    match *req.method() {
        Method::GET => {}
        Method::HEAD => return pixel(),
        _ => return method_not_allowed("GET, HEAD"),
    }
    // Borrowed, not extracted: see `state_of`.
    let state = state_of(&req);
    match verify(state, &token, kind) {
        Ok(verified) => record(&req, state, verified, kind),
        Err(reason) => reject(state, kind, reason),
    }
    pixel()
}

/// A valid token always redirects to its landing page, an invalid click's too: the person
/// (or bot) lands where the ad leads, only the count differs.
///
/// `GET` and `HEAD /v1/c/{token}`, routed by [`super::segment_scope`].
async fn click(req: HttpRequest) -> HttpResponse {
    let Some(token) = segment(&req, "") else {
        return no_such_endpoint();
    };
    match *req.method() {
        Method::GET => {}
        Method::HEAD => return HttpResponse::Ok().insert_header(no_store()).finish(),
        _ => return method_not_allowed("GET, HEAD"),
    }
    let state = state_of(&req);
    match verify(state, &token, EventKind::Click) {
        Ok(verified) => {
            let landing_url = verified.landing_url().to_owned();
            record(&req, state, verified, EventKind::Click);
            HttpResponse::Found()
                .insert_header((header::LOCATION, landing_url))
                .insert_header(no_store())
                .insert_header((header::REFERRER_POLICY, "no-referrer-when-downgrade"))
                .finish()
        }
        Err(reason) => {
            reject(state, EventKind::Click, reason);
            HttpResponse::BadRequest()
                .content_type("text/html; charset=utf-8")
                .insert_header(no_store())
                .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'"))
                .body(INVALID_CLICK_PAGE)
        }
    }
}

const INVALID_CLICK_PAGE: &str =
    "<!doctype html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\">\
<title>Lien publicitaire invalide</title></head><body>\
<h1>Ce lien publicitaire n'est plus valide</h1>\
<p>The link of this ad is invalid or has expired. You can close this page.</p>\
</body></html>\n";
