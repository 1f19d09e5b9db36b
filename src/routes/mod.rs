//! HTTP routes: one module per group, registered in [`configure`].

mod admin;
mod auth;
mod creatives;
mod errors;
mod explain;
mod frequency;
mod health;
mod pages;
mod serve;
mod stats;
mod tracking;

use actix_web::web;

pub use errors::{json_config, not_found, path_config, query_config};

/// Largest inventory document the admin API takes.
pub const MAX_INVENTORY_BYTES: usize = 16 * 1024 * 1024;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    serve::configure(cfg);
    tracking::configure(cfg);
    stats::configure(cfg);
    admin::configure(cfg);
    health::configure(cfg);
    creatives::configure(cfg);
    pages::configure(cfg);
}

/// A resource labelled with its pattern for the request metrics and logs.
pub(crate) fn resource(path: &'static str) -> actix_web::Resource {
    web::resource(path).app_data(crate::telemetry::RouteLabel::new(path))
}

/// CORS for the public endpoints that publisher pages call from their own origin.
pub(crate) fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "POST"])
        .allowed_header(actix_web::http::header::CONTENT_TYPE)
        .max_age(86_400)
}
