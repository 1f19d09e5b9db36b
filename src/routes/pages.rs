//! Browser-facing files: the publisher tag, the iframe ad, the demo page and the advertiser
//! dashboard.
//!
//! They are compiled into the binary from `static/` so a deployment is one file. regie's own
//! pages run no inline script and load nothing from other origins, which their
//! Content-Security-Policy enforces; the tag and the frame are meant for publishers' pages and
//! `<iframe>`s, so they stay embeddable.

use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{self, ContentType};
use actix_web::{guard, web, FromRequest, Handler, HttpResponse, Responder};
use serde::Deserialize;

use super::errors::allow;
use crate::inventory::SlotName;
use crate::state::AppState;

const TAG_JS: &str = include_str!("../../static/tag.js");
const DEMO_HTML: &str = include_str!("../../static/demo.html");
const DEMO_JS: &str = include_str!("../../static/demo.js");
const DASHBOARD_HTML: &str = include_str!("../../static/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../static/dashboard.js");
const FRAME_HTML: &str = include_str!("../../static/frame.html");

/// The most keyword text a frame URL may carry into its page.
const MAX_FRAME_KEYWORDS_BYTES: usize = 1024;

/// Registers the pages' routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/tag.js", tag))
        .service(get("/demo", demo))
        .service(get("/demo.js", demo_js))
        .service(get("/dashboard", dashboard))
        .service(get("/dashboard.js", dashboard_js))
        .service(get("/v1/slots/{slot}/frame", frame));
}

/// A resource answering GET and HEAD (actix drops the body of HEAD answers).
fn get<F, Args>(path: &'static str, handler: F) -> impl HttpServiceFactory
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    super::resource(path)
        .route(
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(handler),
        )
        .default_service(allow("GET, HEAD"))
}

/// What a page that shows ads may load: scripts, styles and requests from regie only, images
/// from anywhere on the web (advertisers' CDNs; plain `http:` too, for deployments and tests
/// without TLS), and regie's tracking URLs, whose origin may differ from the page's.
fn ad_page_policy(state: &AppState, frame_ancestors: &str) -> String {
    let tracking = origin_of(&state.public_url).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' https: http: data:; frame-src 'self'; connect-src 'self' {tracking}; \
         form-action 'self'; frame-ancestors {frame_ancestors}"
    )
}

/// The dashboard talks to this origin only and must not be framed (its buttons act with the
/// advertiser's key).
const DASHBOARD_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// `scheme://host[:port]` of an absolute URL, for a CSP source list.
fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization()).filter(|o| o != "null")
}

fn html(body: String, policy: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((header::CONTENT_SECURITY_POLICY, policy))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "strict-origin-when-cross-origin"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

fn script(body: &'static str, cache: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, cache))
        .body(body)
}

/// `GET /tag.js`. Publishers embed it on every page; a short cache keeps fixes rolling out
/// within minutes while sparing a request per page view.
async fn tag() -> HttpResponse {
    script(TAG_JS, "public, max-age=300")
}

async fn demo_js() -> HttpResponse {
    script(DEMO_JS, "no-cache")
}

async fn dashboard_js() -> HttpResponse {
    script(DASHBOARD_JS, "no-cache")
}

/// `GET /demo`: a news article with the demo inventory's slots.
async fn demo(state: web::Data<AppState>) -> HttpResponse {
    html(DEMO_HTML.to_owned(), &ad_page_policy(&state, "'self'"))
}

/// `GET /dashboard`: the advertiser's counters and charts.
async fn dashboard() -> HttpResponse {
    html(DASHBOARD_HTML.to_owned(), DASHBOARD_POLICY)
}

/// Query of `GET /v1/slots/{slot}/frame`.
#[derive(Debug, Deserialize)]
struct FrameQuery {
    /// Comma-separated keywords, as for `GET /v1/slots/{slot}/ad`.
    #[serde(default)]
    kw: Option<String>,
    /// The slot's width in CSS pixels, as for `GET /v1/slots/{slot}/ad`; without it the tag
    /// measures the frame.
    #[serde(default)]
    w: Option<String>,
}

/// `GET /v1/slots/{slot}/frame`: one ad for `<iframe>` embedding. The page is the tag plus one
/// slot, so the frame's tracking is the tag's. Any site may frame it.
async fn frame(
    state: web::Data<AppState>,
    slot: web::Path<String>,
    query: web::Query<FrameQuery>,
) -> HttpResponse {
    let known = SlotName::parse(&slot).ok().filter(|name| {
        state
            .catalog
            .snapshot()
            .is_some_and(|s| s.slot(name).is_some())
    });
    let Some(name) = known else {
        // Inside someone's page an error is best shown as nothing at all.
        return HttpResponse::NotFound()
            .content_type(ContentType::html())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body("<!doctype html><title>No ad</title>");
    };
    let keywords = query.kw.as_deref().unwrap_or_default();
    let keywords = truncate(keywords, MAX_FRAME_KEYWORDS_BYTES);
    // Only a width the decision endpoint would take; anything else is left to the tag.
    let width = query
        .w
        .as_deref()
        .and_then(|w| w.parse::<u32>().ok())
        .filter(|w| (1..=10_000).contains(w))
        .map(|w| w.to_string())
        .unwrap_or_default();
    let body = FRAME_HTML
        .replace("{{KEYWORDS}}", &escape_html(keywords))
        .replace("{{SLOT}}", &escape_html(name.as_str()))
        .replace("{{WIDTH}}", &width);
    html(body, &ad_page_policy(&state, "*"))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Escapes text for an HTML text node or a quoted attribute value.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // No value can then spell a placeholder of the template it goes into.
            '{' => out.push_str("&#123;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_a_slot_name_is_escaped() {
        assert_eq!(
            escape_html(r#"<b a="1">'x' & y</b>"#),
            "&lt;b a=&quot;1&quot;&gt;&#39;x&#39; &amp; y&lt;/b&gt;"
        );
        assert_eq!(escape_html("{{SLOT}}"), "&#123;&#123;SLOT}}");
    }

    #[test]
    fn truncation_never_splits_a_character() {
        assert_eq!(truncate("éé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn the_frame_template_has_its_placeholders() {
        assert!(FRAME_HTML.contains("{{SLOT}}") && FRAME_HTML.contains("{{KEYWORDS}}"));
        assert!(FRAME_HTML.contains("{{WIDTH}}"));
    }

    #[test]
    fn origin_of_drops_the_path() {
        assert_eq!(
            origin_of("https://ads.example/base/").as_deref(),
            Some("https://ads.example")
        );
        assert_eq!(origin_of("not a url"), None);
    }
}
