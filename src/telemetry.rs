//! Logging setup and the per-request middleware: every line logged during a request carries
//! its request id, method and route pattern ([`request`]); a latency histogram by route
//! pattern. Raw paths are never logged, since tracking paths carry tokens.

pub mod request;

use std::cell::Cell;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::Histogram;
use tracing_subscriber::{fmt, EnvFilter};

use crate::metrics::{shard, Metrics, SHARDS};
use crate::settings::LogFormat;
use crate::state::AppState;

/// Installs the global subscriber; `RUST_LOG` overrides `default_filter`. Safe to call twice
/// (tests do): the second call changes nothing.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only on a terminal: in a file or a collector they are noise, and cost time.
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Json => builder
            .event_format(request::JsonWithRequest(
                fmt::format().json().flatten_event(true).with_target(false),
            ))
            .try_init(),
        LogFormat::Pretty => builder
            .event_format(request::CompactWithRequest(
                fmt::format().compact().with_target(false),
            ))
            .try_init(),
    };
}

/// Request ids: unique within the process, cheap to make. Each thread takes a block of
/// [`ID_BLOCK`] at a time, so that making one writes no cache line the other workers write.
static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Request ids a thread takes at a time.
const ID_BLOCK: u64 = 1 << 20;

thread_local! {
    /// The next id of this thread's block, and the block's end.
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A request id no other request of the process has.
fn next_request_id() -> u64 {
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = REQUEST_IDS.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

/// The label of a method: a closed set, so a made-up method adds no series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The route pattern of a resource, for the request metrics and logs: resource data, so that
/// the request middleware need not match the path a second time. It also keeps the latency
/// histogram of the route's first successful kind of answer (method and status), in each
/// shard of [`Metrics::http_duration`]: almost always its usual one, so that most requests
/// neither hash their labels nor take the vector's lock.
#[derive(Debug)]
pub struct RouteLabel {
    pattern: &'static str,
    usual: [OnceLock<(&'static str, StatusCode, Histogram)>; SHARDS],
}

impl RouteLabel {
    /// The label of a resource with this pattern.
    pub fn new(pattern: &'static str) -> Self {
        Self {
            pattern,
            usual: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Observes a request's latency in this route's histogram for `method` and `status`, in
    /// the calling thread's shard; borrowed, since a clone of the handle would be one more
    /// atomic count that the cores pass back and forth.
    fn observe(&self, metrics: &Metrics, method: &'static str, status: StatusCode, secs: f64) {
        let usual = &self.usual[shard()];
        if let Some((m, s, histogram)) = usual.get() {
            if *m == method && *s == status {
                return histogram.observe(secs);
            }
        }
        let histogram = metrics.http_duration.local().with_label_values(&[
            self.pattern,
            method,
            status.as_str(),
        ]);
        histogram.observe(secs);
        if status.is_success() {
            let _ = usual.set((method, status, histogram));
        }
    }
}

/// Runs a request with its context (request id, method, route) and observes its latency by
/// route. The route is the matched pattern, never the raw path: `/v1/i/{token}`, not the
/// token. This wraps each resource and the default service rather than the whole application,
/// so that the route is known when the request starts.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .app_data::<RouteLabel>()
        .map_or("unmatched", |r| r.pattern);
    let context = request::RequestContext {
        id: next_request_id(),
        method,
        route,
    };
    // The whole observation runs within the context, so that the last line carries it.
    let observed = async move {
        let response = next.call(req).await?;
        let status = response.status();
        let elapsed = started.elapsed();
        // Borrowed from the answered request: a clone of the handle would be one more atomic
        // count that the workers' cores pass back and forth.
        if let Some(state) = response.request().app_data::<web::Data<AppState>>() {
            let secs = elapsed.as_secs_f64();
            match response.request().app_data::<RouteLabel>() {
                Some(label) => label.observe(&state.metrics, method, status, secs),
                None => state
                    .metrics
                    .http_duration
                    .local()
                    .with_label_values(&[route, method, status.as_str()])
                    .observe(secs),
            }
        }
        tracing::debug!(
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1_000.0,
            "answered"
        );
        Ok(response)
    };
    request::within(context, observed).await
}
