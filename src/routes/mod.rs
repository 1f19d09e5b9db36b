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

use std::borrow::Cow;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::guard;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest};
use percent_encoding::percent_decode_str;

use crate::state::AppState;

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

/// The application state, borrowed from the request. The `web::Data` extractor would clone
/// its handle: an atomic count on a cache line that every worker's core writes.
fn state_of(req: &HttpRequest) -> &AppState {
    req.app_data::<web::Data<AppState>>()
        .expect("the application registers its state")
}

// The layers of each kind of route, the same on a resource and on a segment scope.
macro_rules! plain_layers {
    ($route:expr, $pattern:expr) => {
        $route
            .app_data(crate::telemetry::RouteLabel::new($pattern))
            .wrap(from_fn(body::guard))
            .wrap(from_fn(crate::telemetry::observe))
    };
}
macro_rules! decision_layers {
    ($route:expr, $pattern:expr, $method:expr) => {
        $route
            .app_data(crate::telemetry::RouteLabel::new($pattern))
            .app_data(rate::DecisionMethod($method))
            .wrap(from_fn(rate::gate))
            .wrap(cors())
            .wrap(from_fn(crate::telemetry::observe))
    };
}

/// A resource labelled with its pattern for the request metrics and logs, its requests each
/// observed with their context ([`crate::telemetry::observe`]), their bodies guarded
/// ([`body::guard`]).
pub(crate) fn resource(path: &'static str) -> actix_web::Resource<impl ResourceFactory> {
    plain_layers!(web::resource(path), path)
}

/// A [`resource`] of the admin API, whose requests without the admin token are answered 401
/// before anything else is done, their body read included: no one without the token can make
/// regie take in an inventory-sized body.
pub(crate) fn admin_resource(path: &'static str) -> actix_web::Resource<impl ResourceFactory> {
    plain_layers!(web::resource(path).wrap(from_fn(auth::admin_only)), path)
}

/// A [`resource`] of decisions, which publisher pages call from their own origin: CORS inside
/// the observation, so that preflights are measured too, and the `method` requests
/// rate-limited per client: [`rate::gate`] in place of the body guard, which it includes.
pub(crate) fn decision_resource(
    path: &'static str,
    method: Method,
) -> actix_web::Resource<impl ResourceFactory> {
    decision_layers!(web::resource(path), path, method)
}

/// The routes of paths `{prefix}/{segment}{suffix}` whose requests are the service's busiest
/// (decisions of one slot, beacons, clicks): a scope of the static `prefix`, whose default
/// service finds the segment itself ([`segment`]) and answers every method. actix matches a
/// resource pattern with a parameter by a regular expression over the whole path: 1 500
/// instructions of a decision, and 7 900 of a beacon, whose token is long (callgrind). A path
/// under the prefix that is not of the pattern is answered 404 as any unmatched path, but
/// observed under the route's `pattern`; a scope with a suffix ([`decision_segment_scope`])
/// takes only the paths that end with it, and leaves the others under its prefix to the
/// routes registered after it.
pub(crate) fn segment_scope(
    prefix: &'static str,
    pattern: &'static str,
) -> actix_web::Scope<impl ResourceFactory> {
    plain_layers!(web::scope(prefix), pattern)
}

/// A [`segment_scope`] that publisher pages call from their own origin, with CORS as a
/// [`decision_resource`] has it but no rate limit.
pub(crate) fn public_segment_scope(
    prefix: &'static str,
    pattern: &'static str,
) -> actix_web::Scope<impl ResourceFactory> {
    web::scope(prefix)
        .app_data(crate::telemetry::RouteLabel::new(pattern))
        .wrap(from_fn(body::guard))
        .wrap(cors())
        .wrap(from_fn(crate::telemetry::observe))
}

/// A [`segment_scope`] with the layers of a [`decision_resource`], for the paths under
/// `prefix` that end with `suffix` (a string comparison of the raw path, in which no escape
/// makes a `/`): `/v1/slots/{slot}/frame` is another route's.
pub(crate) fn decision_segment_scope(
    prefix: &'static str,
    suffix: &'static str,
    pattern: &'static str,
    method: Method,
) -> actix_web::Scope<impl ResourceFactory> {
    decision_layers!(web::scope(prefix), pattern, method).guard(guard::fn_guard(move |ctx| {
        ctx.head().uri.path().ends_with(suffix)
    }))
}

/// The segment of a [`segment_scope`]'s request: what follows the scope's prefix and a `/`
/// and precedes `suffix`, non-empty and without a `/`, percent-decoded as `web::Path<String>`
/// decodes a parameter; `None` when the path is not of that shape (a 404). The router has
/// already decoded every escape but those of `%`, `/` and `+`, so a segment without `%` is
/// taken as it is, without the copy and the scan of every byte that `web::Path` makes.
fn segment<'r>(req: &'r HttpRequest, suffix: &str) -> Option<Cow<'r, str>> {
    let raw = req
        .match_info()
        .unprocessed()
        .strip_prefix('/')?
        .strip_suffix(suffix)?;
    if raw.is_empty() || raw.contains('/') {
        return None;
    }
    Some(if raw.contains('%') {
        percent_decode_str(raw).decode_utf8_lossy()
    } else {
        Cow::Borrowed(raw)
    })
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
///
/// Without `Vary`: the allowed origin echoes the request's, but every answer of these routes
/// is `no-store` (decisions, beacons, errors) or answers `OPTIONS`, which no HTTP cache keeps,
/// so no cache can hand one origin's answer to another. Adding it took a header insertion on
/// every decision and beacon.
fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "POST"])
        .allowed_header(actix_web::http::header::CONTENT_TYPE)
        .max_age(86_400)
        .disable_vary_header()
}
