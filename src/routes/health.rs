//! Operations: liveness, readiness and Prometheus metrics.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::errors::allow;
use crate::state::AppState;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/healthz")
            .route(web::get().to(healthz))
            .default_service(allow("GET")),
    )
    .service(
        super::resource("/readyz")
            .route(web::get().to(readyz))
            .default_service(allow("GET")),
    )
    .service(
        super::resource("/metrics")
            .route(web::get().to(metrics))
            .default_service(allow("GET")),
    );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 when an inventory is loaded and the process is not draining; the body says whether the
/// store is reachable, since an instance serves its last good inventory without it.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.catalog.snapshot();
    let status = if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        "draining"
    } else if snapshot.is_none() {
        "not_ready"
    } else {
        "ready"
    };
    let body = json!({
        "status": status,
        "inventory_version": snapshot.map(|s| s.version),
        "store": state.catalog.status(),
    });
    let mut response = if status == "ready" {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.insert_header(super::no_store()).json(body)
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Some(age) = state.catalog.age() {
        state
            .metrics
            .inventory_age_seconds
            .set(age.as_secs() as i64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
