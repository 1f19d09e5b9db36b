//! HTTP routes: one module per group, registered in [`configure`].

mod admin;
mod auth;
mod body;
mod creatives;
mod errors;
mod health;
mod page_inputs;
mod pages;
mod rate;
mod serve;
mod stats;
mod tracking;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::web;

pub use body::is_identity;
pub use errors::{json_config, not_found, path_config, query_config};

/// Largest inventory document the admin API takes.
pub const MAX_INVENTORY_BYTES: usize = 64 * 1024 * 1024;

/// The answer to a path no route matches, its body guarded and its request observed as every
/// other.
pub fn default_service() -> actix_web::Route {
    web::to(not_found)
        .wrap(from_fn(body::guard))
        .wrap(from_fn(crate::telemetry::observe))
}

/// Registers every route: the service's and the operations' on one listener.
pub fn configure(cfg: &mut web::ServiceConfig) {
    configure_service(cfg);
    configure_ops(cfg);
}

/// Registers the routes of publishers, advertisers and administrators: everything but
/// [`configure_ops`].
pub fn configure_service(cfg: &mut web::ServiceConfig) {
    serve::configure(cfg);
    tracking::configure(cfg);
    stats::configure(cfg);
    admin::configure(cfg);
    creatives::configure(cfg);
    pages::configure(cfg);
}

/// Registers the operations routes, `/metrics`, `/healthz` and `/readyz`: on the service
/// listener, or alone on the ops listener (`REGIE_OPS_LISTEN`).
pub fn configure_ops(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
}

/// A resource labelled with its pattern for the request metrics and logs, its requests each
/// observed in their span ([`crate::telemetry::observe`]), their bodies guarded
/// ([`body::guard`]).
pub(crate) fn resource(path: &'static str) -> actix_web::Resource<impl ResourceFactory> {
    web::resource(path)
        .app_data(crate::telemetry::RouteLabel::new(path))
        .wrap(from_fn(body::guard))
        .wrap(from_fn(crate::telemetry::observe))
}

/// A [`resource`] of the admin API, whose requests without the admin token are answered 401
/// before anything else is done, their body read included: no one without the token can make
/// regie take in an inventory-sized body.
pub(crate) fn admin_resource(path: &'static str) -> actix_web::Resource<impl ResourceFactory> {
    web::resource(path)
        .app_data(crate::telemetry::RouteLabel::new(path))
        .wrap(from_fn(auth::admin_only))
        .wrap(from_fn(body::guard))
        .wrap(from_fn(crate::telemetry::observe))
}

/// A [`resource`] that publisher pages call from their own origin: CORS inside the
/// observation, so that preflights are measured too.
pub(crate) fn public_resource(path: &'static str) -> actix_web::Resource<impl ResourceFactory> {
    web::resource(path)
        .app_data(crate::telemetry::RouteLabel::new(path))
        .wrap(from_fn(body::guard))
        .wrap(cors())
        .wrap(from_fn(crate::telemetry::observe))
}

/// A [`public_resource`] of decisions, whose `method` requests are rate-limited per client:
/// [`rate::gate`] in place of the body guard, which it includes.
pub(crate) fn decision_resource(
    path: &'static str,
    method: Method,
) -> actix_web::Resource<impl ResourceFactory> {
    web::resource(path)
        .app_data(crate::telemetry::RouteLabel::new(path))
        .app_data(rate::DecisionMethod(method))
        .wrap(from_fn(rate::gate))
        .wrap(cors())
        .wrap(from_fn(crate::telemetry::observe))
}

/// What a resource wrapped in middleware is.
pub(crate) trait ResourceFactory:
    ServiceFactory<
    ServiceRequest,
    Config = (),
    Response = ServiceResponse<Self::Body>,
    Error = actix_web::Error,
    InitError = (),
>
{
    /// The body of its responses.
    type Body: MessageBody;
}

impl<T, B> ResourceFactory for T
where
    T: ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
        InitError = (),
    >,
    B: MessageBody,
{
    type Body = B;
}

/// `Cache-Control: no-store`, for answers no cache may keep or share. Typed constants: the
/// name and value are not parsed again on every answer.
pub(crate) fn no_store() -> (HeaderName, HeaderValue) {
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

/// `Content-Type: application/json`, as [`no_store`].
pub(crate) fn json_content() -> (HeaderName, HeaderValue) {
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )
}

/// CORS for the public endpoints that publisher pages call from their own origin.
fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "POST"])
        .allowed_header(actix_web::http::header::CONTENT_TYPE)
        .max_age(86_400)
}
