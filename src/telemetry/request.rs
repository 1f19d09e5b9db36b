//! The request a line is logged for: its id, method and route, carried by the thread that
//! polls the request rather than by a `tracing` span.
//!
//! A span per request cost 3 000 of a decision's 36 300 instructions (made in the
//! subscriber's registry, its fields formatted as JSON when it is made, entered and left at
//! every poll, closed), for lines that are rarely logged. Here the request's future sets a
//! thread-local value of three words while it is polled, and the event formatter reads it
//! only when a line is written. The JSON lines keep the shape the span gave them: a `span`
//! object and a `spans` list of one, `{"method","request_id","route","name":"request"}`.
//!
//! Like a span, the context does not follow work a request hands to another task or thread.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::pin;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Compact, Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// What identifies a request in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    /// Unique within the process.
    pub id: u64,
    /// The method's label (a closed set).
    pub method: &'static str,
    /// The route pattern, never the raw path.
    pub route: &'static str,
}

thread_local! {
    /// The request being polled on this thread, if any.
    static CURRENT: Cell<Option<RequestContext>> = const { Cell::new(None) };
}

/// The request being polled on this thread.
pub fn current() -> Option<RequestContext> {
    CURRENT.with(Cell::get)
}

/// Sets the context for one poll and puts the previous one back after it, even when the poll
/// panics.
struct Entered(Option<RequestContext>);

impl Entered {
    fn new(context: RequestContext) -> Self {
        Self(CURRENT.with(|c| c.replace(Some(context))))
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Runs `future` with `context` as the current request at each of its polls.
pub async fn within<F: Future>(context: RequestContext, future: F) -> F::Output {
    let mut future = pin!(future);
    std::future::poll_fn(move |cx| {
        let _entered = Entered::new(context);
        future.as_mut().poll(cx)
    })
    .await
}

/// JSON lines (production): the JSON event format, with the current request's `span` and
/// `spans` members added to the object.
pub struct JsonWithRequest(pub Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithRequest
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(request) = current() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let object = line.trim_end();
        let Some(open) = object.strip_suffix('}') else {
            return writer.write_str(&line);
        };
        let span = format!(
            r#"{{"method":{},"request_id":{},"route":{},"name":"request"}}"#,
            json_string(request.method),
            request.id,
            json_string(request.route),
        );
        writeln!(writer, r#"{open},"span":{span},"spans":[{span}]}}"#)
    }
}

/// Human-readable lines (local runs): the compact format after the request's context.
pub struct CompactWithRequest(pub Format<Compact>);

impl<S, N> FormatEvent<S, N> for CompactWithRequest
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if let Some(request) = current() {
            write!(
                writer,
                "request{{request_id={} method={} route={}}} ",
                request.id, request.method, request.route
            )?;
        }
        self.0.format_event(ctx, writer, event)
    }
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECISION: RequestContext = RequestContext {
        id: 7,
        method: "GET",
        route: "/v1/slots/{slot}/ad",
    };

    #[test]
    fn the_context_is_set_only_while_the_request_is_polled() {
        assert_eq!(current(), None);
        let seen = futures_util::FutureExt::now_or_never(within(DECISION, async { current() }));
        assert_eq!(seen, Some(Some(DECISION)));
        assert_eq!(current(), None);
    }

    #[test]
    fn an_inner_request_puts_the_outer_one_back() {
        let other = RequestContext { id: 8, ..DECISION };
        let seen = futures_util::FutureExt::now_or_never(within(DECISION, async {
            let inner = within(other, async { current() }).await;
            (inner, current())
        }));
        assert_eq!(seen, Some((Some(other), Some(DECISION))));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
