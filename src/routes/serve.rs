//! The decision endpoints: `GET /v1/slots/{slot}/ad` and `POST /v1/decisions`.

use std::cell::RefCell;

use actix_web::http::Method;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::auth::is_admin;
use super::errors::{allow, method_not_allowed, no_such_endpoint};
use super::page_inputs;
use super::{segment, state_of};
use crate::catalog::Served;
use crate::error::ApiError;
use crate::inventory::{CampaignId, SlotName};
use crate::render::Prepared;
use crate::serving::{Choice, FrequencyState, PageRequest, Serving, Viewer, MAX_STATE_CHARS};
use crate::snapshot::{normalize_keyword, CampaignIndex, CompiledSlot, Snapshot};
use crate::state::AppState;
use crate::targeting::{Country, LocalMoment};

/// Most slots in one batch request (the contract's limit).
pub const MAX_BATCH_SLOTS: usize = 20;
const MAX_KEYWORDS: usize = 32;
const MAX_KEYWORD_BYTES: usize = 64;
const MAX_EXCLUDED: usize = 50;
const MAX_UID_BYTES: usize = 128;

/// What follows the slot's name in the path of its decisions.
const AD_SUFFIX: &str = "/ad";

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::decision_segment_scope("/v1/slots", AD_SUFFIX, "/v1/slots/{slot}/ad", Method::GET)
            .default_service(web::to(slot_ad)),
    )
    .service(
        super::decision_resource("/v1/decisions", Method::POST)
            .route(web::post().to(post_decisions))
            .default_service(allow("POST")),
    );
}

/// Query parameters of `GET /v1/slots/{slot}/ad`.
#[derive(Debug, Deserialize)]
struct AdQuery {
    uid: Option<String>,
    /// The frequency state the client keeps ([`FrequencyState`]); empty for a new viewer.
    fs: Option<String>,
    kw: Option<String>,
    exclude: Option<String>,
    exclude_advertisers: Option<String>,
    consent: Option<String>,
    w: Option<String>,
    explain: Option<String>,
}

/// Body of `POST /v1/decisions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    slots: Vec<String>,
    #[serde(default)]
    uid: Option<String>,
    /// As `fs` of [`AdQuery`].
    #[serde(default)]
    frequency_state: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    exclude_advertisers: Vec<String>,
    #[serde(default)]
    consent: Option<bool>,
    #[serde(default)]
    widths: Vec<Option<u32>>,
}

/// The request's targeting inputs, validated.
struct Inputs {
    viewer: Viewer,
    /// The frequency state the client sent, opened with the request's time.
    kept: Option<String>,
    keywords: Vec<String>,
    excluded: Vec<CampaignIndex>,
    excluded_advertisers: Vec<usize>,
    country: Option<Country>,
}

impl Inputs {
    /// The page request for these slots, each given its width (or none), at the time of the
    /// call.
    fn page<'a>(
        self,
        req: &HttpRequest,
        state: &AppState,
        slots: &'a [&'a CompiledSlot],
        widths: &[Option<u32>],
    ) -> PageRequest<'a> {
        let now = state.clock.now();
        let mut viewer = self.viewer;
        if state.ivt.is_bot(req) {
            // A bot is nobody to count views for: nothing about it is read or stored.
            viewer.uid = None;
            viewer.bot = true;
        } else if let Some(kept) = self.kept {
            let opened = FrequencyState::open(&state.signer, &kept, now.timestamp_millis());
            viewer.kept = Some(RefCell::new(opened));
        }
        PageRequest {
            slots,
            sizes: slots
                .iter()
                .zip(widths)
                .map(|(slot, width)| slot.size_for(*width))
                .collect(),
            viewer,
            keywords: self.keywords,
            excluded: self.excluded,
            excluded_advertisers: self.excluded_advertisers,
            country: self.country,
            now,
            local: LocalMoment::of_wall_clock(state.zone.wall_clock_secs(now)),
            today: state.zone.day(now),
        }
    }
}

/// What a request says about its reader and its page besides slots and keywords.
struct Reader {
    uid: Option<String>,
    kept: Option<String>,
    refused_tracking: bool,
    country: Option<Country>,
}

impl Reader {
    fn parse(
        state: &AppState,
        req: &HttpRequest,
        (uid, kept): (Option<String>, Option<String>),
        consent_query: Option<&str>,
        consent_body: Option<bool>,
    ) -> Result<Self, ApiError> {
        let refused_tracking =
            page_inputs::tracking_refused(consent_query, consent_body, req.headers())?;
        Ok(Self {
            // Without consent the id and the state are not even looked at.
            uid: if refused_tracking { None } else { uid },
            kept: if refused_tracking { None } else { kept },
            refused_tracking,
            country: page_inputs::country(req.headers(), &state.country_header),
        })
    }
}

fn parse_inputs(
    snapshot: &Snapshot,
    reader: Reader,
    keywords: impl Iterator<Item = String>,
    exclude: impl Iterator<Item = String>,
    exclude_advertisers: impl Iterator<Item = String>,
) -> Result<Inputs, ApiError> {
    let uid = reader.uid;
    if reader
        .kept
        .as_ref()
        .is_some_and(|k| k.len() > MAX_STATE_CHARS)
    {
        return Err(ApiError::bad_request(
            "invalid_frequency_state",
            format!("a frequency state is at most {MAX_STATE_CHARS} characters, as answered"),
        ));
    }
    if let Some(uid) = &uid {
        if uid.is_empty() || uid.len() > MAX_UID_BYTES || uid.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_uid",
                format!("uid must be 1 to {MAX_UID_BYTES} bytes without control characters"),
            ));
        }
    }
    let mut normalized = Vec::new();
    for keyword in keywords {
        let keyword = normalize_keyword(&keyword);
        if keyword.is_empty() {
            continue;
        }
        if keyword.len() > MAX_KEYWORD_BYTES || keyword.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_keywords",
                format!("each keyword must be at most {MAX_KEYWORD_BYTES} bytes without control characters"),
            ));
        }
        normalized.push(keyword);
        if normalized.len() > MAX_KEYWORDS {
            return Err(ApiError::bad_request(
                "invalid_keywords",
                format!("at most {MAX_KEYWORDS} keywords"),
            ));
        }
    }
    let mut excluded = Vec::new();
    for (n, raw) in exclude.enumerate() {
        let raw = raw.trim().to_owned();
        if raw.is_empty() {
            continue;
        }
        if n >= MAX_EXCLUDED {
            return Err(ApiError::bad_request(
                "invalid_exclude",
                format!("at most {MAX_EXCLUDED} excluded campaigns"),
            ));
        }
        let id = CampaignId::parse(&raw).map_err(|e| {
            ApiError::bad_request("invalid_exclude", format!("exclude: {raw:?} {e}"))
        })?;
        // A campaign the inventory no longer has cannot be chosen anyway.
        if let Some(&index) = snapshot.campaign_index.get(&id) {
            excluded.push(index);
        }
    }
    Ok(Inputs {
        viewer: Viewer {
            uid,
            kept: None,
            refused_tracking: reader.refused_tracking,
            bot: false,
        },
        kept: reader.kept,
        keywords: normalized,
        excluded,
        excluded_advertisers: page_inputs::excluded_advertisers(snapshot, exclude_advertisers)?,
        country: reader.country,
    })
}

/// Finds the slot a request names: malformed is 400, unknown is 404.
fn parse_slot<'s>(raw: &str, snapshot: &'s Snapshot) -> Result<&'s CompiledSlot, ApiError> {
    // A name the inventory holds as it is was valid and normalised when the inventory was
    // validated: most requests name their slot so, and need no check of their own.
    if let Some(slot) = snapshot.slot(raw) {
        return Ok(slot);
    }
    let name = SlotName::normalize(raw)
        .map_err(|e| ApiError::bad_request("invalid_slot", format!("slot name {e}")))?;
    snapshot.slot(name.as_ref()).ok_or_else(|| {
        ApiError::not_found("unknown_slot", format!("there is no slot named {name:?}"))
    })
}

fn current_snapshot(state: &AppState) -> Result<Served, ApiError> {
    state.catalog.served().ok_or(ApiError::NotReady)
}

/// What choosing campaigns needs, borrowed from the application state.
fn serving<'a>(state: &'a AppState, snapshot: &'a Snapshot) -> Serving<'a> {
    Serving {
        snapshot,
        store: &state.store,
        budgets: &state.budgets,
        releaser: &state.releaser,
        viewers: &state.viewers,
    }
}

/// Counts one slot's decision and writes its answer.
fn answer(
    state: &AppState,
    snapshot: &Snapshot,
    prepared: &Prepared,
    compiled: &CompiledSlot,
    choice: Option<Choice>,
    page: &PageRequest<'_>,
) -> Option<Vec<u8>> {
    let counters = prepared.counters(compiled.position);
    let Some(choice) = choice else {
        counters.no_fill.inc();
        return None;
    };
    if choice.tier.is_some() {
        counters.filled.inc();
    } else {
        counters.fallback.inc();
    }
    let campaign = &snapshot.campaign_at(choice.campaign).campaign;
    if page.viewer.bot {
        // Answered as usual, counted apart (contract section 8).
        state.recorder.invalid_served(
            &campaign.id,
            &compiled.slot.name,
            page.today,
            crate::ivt::Reason::Bot,
        );
        state.metrics.invalid("decision", crate::ivt::Reason::Bot);
    } else {
        state
            .recorder
            .served(&campaign.id, &compiled.slot.name, page.today);
    }
    let creative = &campaign.creatives[choice.creative];
    // The id's time is the decision's, read once per request rather than again here.
    let decision_id = Ulid::from_datetime(page.now.into());
    let slot = compiled.slot.name.as_str();
    let fields = [campaign.id.as_str(), creative.id.as_str(), slot];
    Some(
        state
            .signer
            .with_signed(decision_id, page.now.timestamp(), fields, |token| {
                state.renderer.decision(
                    snapshot,
                    prepared,
                    slot,
                    (choice.campaign, choice.creative),
                    decision_id,
                    token,
                )
            }),
    )
}

/// The frequency state to answer, with the views of this decision counted, when the client
/// sent one (base64url: nothing to escape in JSON).
fn sealed_state(state: &AppState, page: &PageRequest<'_>) -> Option<String> {
    let kept = page.viewer.kept.as_ref()?;
    Some(kept.borrow().seal(&state.signer))
}

/// The items of a comma-separated query parameter; nothing, without allocating, when it is
/// absent (as it is on most requests).
fn split_list(raw: Option<String>) -> impl Iterator<Item = String> {
    raw.map(|raw| raw.split(',').map(str::to_owned).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
}

/// `GET /v1/slots/{slot}/ad`, routed by [`super::segment_scope`].
async fn slot_ad(req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    let Some(slot) = segment(&req, AD_SUFFIX) else {
        return Ok(no_such_endpoint());
    };
    if req.method() != Method::GET {
        return Ok(method_not_allowed("GET"));
    }
    let query = web::Query::<AdQuery>::extract(&req).await?.into_inner();
    Ok(get_ad(&req, &slot, query).await?)
}

async fn get_ad(req: &HttpRequest, slot: &str, query: AdQuery) -> Result<HttpResponse, ApiError> {
    // Borrowed, not extracted: see `state_of`.
    let state = state_of(req);
    let explain = match query.explain.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_explain",
                "explain must be 1 or 0",
            ))
        }
    };
    if explain && !is_admin(req, state) {
        return Err(ApiError::Forbidden("explain needs the admin token".into()));
    }
    let snapshot = current_snapshot(state)?;
    let compiled = parse_slot(slot, &snapshot)?;
    let reader = Reader::parse(
        state,
        req,
        (query.uid, query.fs),
        query.consent.as_deref(),
        None,
    )?;
    let width = page_inputs::width(query.w.as_deref())?;
    let inputs = parse_inputs(
        &snapshot,
        reader,
        split_list(query.kw),
        split_list(query.exclude),
        split_list(query.exclude_advertisers),
    )?;
    let slots = [compiled];
    if explain {
        let page = inputs.page(req, state, &slots, &[width]);
        // Boxed, as the viewer's decisions are (see `Serving::decide`): rare, and large.
        let body = Box::pin(serving(state, &snapshot).explain(&page))
            .await
            .pop();
        return Ok(HttpResponse::Ok()
            .insert_header(super::no_store())
            .json(body));
    }
    let timer = state.metrics.decision_duration.local().start_timer();
    let page = inputs.page(req, state, &slots, &[width]);
    let choice = serving(state, &snapshot)
        .decide(&page)
        .await
        .pop()
        .flatten();
    let prepared = state.renderer.prepared(snapshot.arc());
    let mut decided = answer(state, &snapshot, &prepared, compiled, choice, &page);
    if let (Some(decision), Some(kept)) = (&mut decided, sealed_state(state, &page)) {
        // The decision is a JSON object: the state is its last field.
        debug_assert_eq!(decision.last(), Some(&b'}'));
        decision.pop();
        decision.extend_from_slice(b",\"frequency_state\":\"");
        decision.extend_from_slice(kept.as_bytes());
        decision.extend_from_slice(b"\"}");
    }
    timer.observe_duration();
    Ok(match decided {
        Some(decision) => HttpResponse::Ok()
            .insert_header(super::no_store())
            .insert_header(super::json_content())
            .body(decision),
        None => HttpResponse::NoContent()
            .insert_header(super::no_store())
            .finish(),
    })
}

/// A batch entry without a decision: `{"slot": …, "decision": null}`, with the error of an
/// unknown slot.
#[derive(Serialize)]
struct EmptyEntry<'a> {
    slot: &'a str,
    decision: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

async fn post_decisions(
    req: HttpRequest,
    body: web::Json<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let state = state_of(&req);
    let snapshot = current_snapshot(state)?;
    let body = body.into_inner();
    if body.slots.is_empty() || body.slots.len() > MAX_BATCH_SLOTS {
        return Err(ApiError::bad_request(
            "invalid_slots",
            format!("slots must hold 1 to {MAX_BATCH_SLOTS} slot names"),
        ));
    }
    let names = body
        .slots
        .iter()
        .map(|raw| {
            SlotName::parse(raw).map_err(|e| {
                ApiError::bad_request("invalid_slot", format!("slot name {raw:?} {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let widths = page_inputs::widths(body.widths, names.len())?;
    let reader = Reader::parse(
        state,
        &req,
        (body.uid, body.frequency_state),
        None,
        body.consent,
    )?;
    let inputs = parse_inputs(
        &snapshot,
        reader,
        body.keywords.into_iter(),
        body.exclude.into_iter(),
        body.exclude_advertisers.into_iter(),
    )?;
    let timer = state.metrics.decision_duration.local().start_timer();
    let (known, known_widths): (Vec<&CompiledSlot>, Vec<Option<u32>>) = names
        .iter()
        .zip(widths)
        .filter_map(|(n, w)| snapshot.slot(n).map(|slot| (slot, w)))
        .unzip();
    let page = inputs.page(&req, state, &known, &known_widths);
    // Campaigns chosen for earlier slots of this page are excluded from the later ones.
    let mut choices = serving(state, &snapshot).decide(&page).await.into_iter();
    let prepared = state.renderer.prepared(snapshot.arc());
    // Decisions come written already; the answer is written around them.
    let mut out = Vec::with_capacity(1_024 * names.len());
    out.extend_from_slice(b"{\"decisions\":[");
    for (n, name) in names.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let (decision, error) = match snapshot.slot(name) {
            Some(compiled) => {
                let choice = choices.next().flatten();
                let decision = answer(state, &snapshot, &prepared, compiled, choice, &page);
                (decision, None)
            }
            None => (None, Some("unknown_slot")),
        };
        match decision {
            Some(decision) => out.extend_from_slice(&decision),
            None => {
                let empty = EmptyEntry {
                    slot: name.as_str(),
                    decision: None,
                    error,
                };
                serde_json::to_writer(&mut out, &empty).expect("answers serialise");
            }
        }
    }
    out.push(b']');
    if let Some(kept) = sealed_state(state, &page) {
        out.extend_from_slice(b",\"frequency_state\":\"");
        out.extend_from_slice(kept.as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    timer.observe_duration();
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .insert_header(super::json_content())
        .body(out))
}
