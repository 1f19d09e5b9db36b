//! The administration API (admin token): the whole inventory, one campaign, one slot, and
//! advertisers with their API keys.
//!
//! Every write is a versioned compare-and-set of the whole document, so two editors cannot
//! overwrite each other; single-item edits retry on a concurrent change since they only touch
//! their item. Every write is validated as a whole document before it reaches the store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{hash_key, new_api_key};
use super::body::read_whole;
use super::errors::allow;
use super::MAX_INVENTORY_BYTES;
use crate::error::ApiError;
use crate::inventory::{
    parse_inventory, AdvertiserId, CampaignId, FieldError, InvalidInventory, Inventory, SlotName,
};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::{Backend, PutOutcome};

/// Attempts of a single-item edit racing other writers.
const EDIT_ATTEMPTS: usize = 5;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::admin_resource("/v1/admin/inventory")
            .route(web::get().to(get_inventory))
            .route(web::put().to(put_inventory))
            .default_service(allow("GET, PUT")),
    )
    .service(
        super::admin_resource("/v1/admin/campaigns/{id}")
            .route(web::get().to(get_campaign))
            .route(web::put().to(put_campaign))
            .route(web::delete().to(delete_campaign))
            .default_service(allow("GET, PUT, DELETE")),
    )
    .service(
        super::admin_resource("/v1/admin/slots/{slot}")
            .route(web::get().to(get_slot))
            .route(web::put().to(put_slot))
            .route(web::delete().to(delete_slot))
            .default_service(allow("GET, PUT, DELETE")),
    )
    .service(
        super::admin_resource("/v1/admin/advertisers/{id}")
            .route(web::put().to(put_advertiser))
            .route(web::delete().to(delete_advertiser))
            .default_service(allow("PUT, DELETE")),
    )
    .service(
        super::admin_resource("/v1/admin/advertisers/{id}/key")
            .route(web::delete().to(revoke_key))
            .default_service(allow("DELETE")),
    );
}

/// The latest inventory document and its version: the store's, or this instance's snapshot
/// when the store lost it.
async fn latest(state: &AppState) -> Result<(u64, Value), ApiError> {
    if let Some(stored) = state.store.load_inventory().await? {
        if let Ok(parsed) = parse_inventory(stored.json.as_bytes()) {
            let value = serde_json::to_value(&parsed.inventory).expect("an inventory serialises");
            return Ok((stored.version, value));
        }
    }
    let snapshot = state.catalog.snapshot().ok_or(ApiError::NotReady)?;
    let value = serde_json::to_value(snapshot.document.as_ref()).expect("an inventory serialises");
    Ok((snapshot.version, value))
}

/// Validates and writes `doc` if the store is still at `expected`; then makes this instance
/// serve it before answering.
async fn write(
    state: &AppState,
    doc: &Value,
    expected: Option<u64>,
) -> Result<PutOutcome, ApiError> {
    let bytes = serde_json::to_vec(doc).expect("a Value serialises");
    let parsed = parse_inventory(&bytes)?;
    let text = parsed.stored_text(bytes);
    write_inventory(state, parsed.inventory, text, expected).await
}

/// [`write`] for an inventory already validated, and `text`, the document as the store keeps
/// it (see [`crate::inventory::ParsedInventory::stored_text`]): each document is parsed once,
/// compiled once on this instance, and never serialised again.
async fn write_inventory(
    state: &AppState,
    inventory: Inventory,
    text: String,
    expected: Option<u64>,
) -> Result<PutOutcome, ApiError> {
    let started = Instant::now();
    let inventory = Arc::new(inventory);
    // Compiled on another thread while it is written: the version is known once written.
    let compiling = {
        let inventory = Arc::clone(&inventory);
        tokio::task::spawn_blocking(move || Snapshot::compile_shared(0, inventory))
    };
    let held = state.catalog.hold_refreshes().await;
    let served = state.catalog.snapshot();
    let floor = served.as_ref().map_or(0, |s| s.version);
    let outcome = state.store.put_inventory(&text, expected, floor).await?;
    drop(text);
    if let PutOutcome::Written(version) = outcome {
        tracing::info!(
            version,
            write_ms = started.elapsed().as_millis() as u64,
            "inventory written through the admin API"
        );
        // An advertiser the new version drops loses its key, so that adding it again later
        // does not bring an old key back to life. Kept ids in a set: inventories hold
        // thousands of advertisers.
        let kept: HashSet<&AdvertiserId> = inventory.advertisers.iter().map(|a| &a.id).collect();
        let removed: Vec<AdvertiserId> = served
            .iter()
            .flat_map(|s| s.document.advertisers.iter())
            .filter(|old| !kept.contains(&old.id))
            .map(|old| old.id.clone())
            .collect();
        let mut snapshot = compiling
            .await
            .expect("compiling a validated inventory does not panic");
        snapshot.version = version;
        state.catalog.adopt(&held, snapshot).await;
        drop(held);
        for advertiser in &removed {
            state.store.revoke_api_key(advertiser).await?;
        }
    }
    Ok(outcome)
}

/// Removes the element of the inventory's `list` whose `key` is `value`, as one edit, and
/// answers the new version; `missing` when there is no such element.
async fn remove(
    state: &AppState,
    list: &'static str,
    key: &'static str,
    value: &str,
    missing: impl Fn() -> ApiError,
) -> Result<u64, ApiError> {
    let (version, _) = edit(state, |doc| {
        let elements = array(doc, list);
        let index = position(elements, key, value).ok_or_else(&missing)?;
        elements.remove(index);
        Ok(((), None))
    })
    .await?;
    Ok(version)
}

/// Applies `edit` to the latest document and writes it, retrying when another write came
/// first. Errors inside `array[index]` are reported relative to the edited item.
async fn edit<T>(
    state: &AppState,
    mut edit: impl FnMut(&mut Value) -> Result<(T, Option<(&'static str, usize)>), ApiError>,
) -> Result<(u64, T), ApiError> {
    for _ in 0..EDIT_ATTEMPTS {
        let (version, mut doc) = latest(state).await?;
        let before = doc.clone();
        let (out, item) = edit(&mut doc)?;
        // Nothing changed (an advertiser given the name it has, to get a new key): no new
        // version, and nothing for concurrent editors to conflict over.
        if doc == before {
            return Ok((version, out));
        }
        match write(state, &doc, Some(version)).await {
            Ok(PutOutcome::Written(new_version)) => return Ok((new_version, out)),
            Ok(PutOutcome::Conflict { .. }) => continue,
            Err(ApiError::InvalidInventory(e)) => return Err(relative_to(e, item).into()),
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::VersionConflict {
        current: latest(state).await?.0,
    })
}

fn relative_to(e: InvalidInventory, item: Option<(&str, usize)>) -> InvalidInventory {
    let Some((array, index)) = item else { return e };
    let prefix = format!("{array}[{index}]");
    InvalidInventory {
        details: e
            .details
            .into_iter()
            .map(|d| FieldError {
                path: match d.path.strip_prefix(&prefix) {
                    Some(rest) => rest.trim_start_matches('.').to_owned(),
                    None => d.path,
                },
                message: d.message,
            })
            .collect(),
    }
}

fn array<'a>(doc: &'a mut Value, name: &str) -> &'a mut Vec<Value> {
    let field = &mut doc[name];
    if !field.is_array() {
        *field = json!([]);
    }
    field.as_array_mut().expect("just made an array")
}

/// Replaces the item of `doc[name]` whose `key` is `value` by `item`, or appends it; answers
/// its index.
fn upsert(doc: &mut Value, name: &str, key: &str, value: &str, item: &Value) -> usize {
    let items = array(doc, name);
    match position(items, key, value) {
        Some(i) => {
            items[i] = item.clone();
            i
        }
        None => {
            items.push(item.clone());
            items.len() - 1
        }
    }
}

fn position(items: &[Value], key: &str, value: &str) -> Option<usize> {
    items
        .iter()
        .position(|item| item[key].as_str() == Some(value))
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("the JSON body is invalid: {e}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

/// Puts the path's key into the body, or checks that the body's agrees.
fn with_key(mut body: Value, key: &str, value: &str) -> Result<Value, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => body[key] = json!(value),
        Some(given) if given.as_str() == Some(value) => {}
        Some(_) => {
            return Err(InvalidInventory {
                details: vec![FieldError {
                    path: key.to_owned(),
                    message: "must match the path".into(),
                }],
            }
            .into())
        }
    }
    Ok(body)
}

async fn get_inventory(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (version, mut doc) = latest(&state).await?;
    doc["version"] = json!(version);
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .json(doc))
}

async fn put_inventory(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_whole(&req, payload, MAX_INVENTORY_BYTES).await?;
    // Parsed and validated on a blocking thread: a large document takes a few tenths of a
    // second, which would stall every request on this worker.
    let started = Instant::now();
    let (parsed, text) = tokio::task::spawn_blocking(move || {
        let parsed = parse_inventory(&body)?;
        let text = parsed.stored_text(body.into());
        Ok::<_, InvalidInventory>((parsed, text))
    })
    .await
    .expect("parsing an inventory does not panic")?;
    tracing::info!(
        parse_ms = started.elapsed().as_millis() as u64,
        "inventory document parsed and validated"
    );
    match write_inventory(&state, parsed.inventory, text, parsed.version).await? {
        PutOutcome::Written(version) => Ok(HttpResponse::Ok().json(json!({ "version": version }))),
        PutOutcome::Conflict { current } => Err(ApiError::VersionConflict { current }),
    }
}

fn campaign_id(raw: &str) -> Result<CampaignId, ApiError> {
    CampaignId::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_id", format!("campaign id {e}")))
}

async fn get_campaign(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&id)?;
    let (_, mut doc) = latest(&state).await?;
    let campaigns = array(&mut doc, "campaigns");
    let index = position(campaigns, "id", id.as_str()).ok_or_else(|| no_campaign(&id))?;
    Ok(HttpResponse::Ok().json(campaigns[index].take()))
}

fn no_campaign(id: &CampaignId) -> ApiError {
    ApiError::not_found(
        "unknown_campaign",
        format!("there is no campaign {id:?}", id = id.as_str()),
    )
}

async fn put_campaign(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&id)?;
    let campaign = with_key(parse_body(&body)?, "id", id.as_str())?;
    let (version, _) = edit(&state, |doc| {
        let index = upsert(doc, "campaigns", "id", id.as_str(), &campaign);
        Ok(((), Some(("campaigns", index))))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "version": version })))
}

async fn delete_campaign(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&id)?;
    let version = remove(&state, "campaigns", "id", id.as_str(), || no_campaign(&id)).await?;
    Ok(HttpResponse::Ok().json(json!({ "version": version })))
}

fn slot_name(raw: &str) -> Result<SlotName, ApiError> {
    SlotName::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_slot", format!("slot name {e}")))
}

fn no_slot(name: &SlotName) -> ApiError {
    ApiError::not_found(
        "unknown_slot",
        format!("there is no slot named {:?}", name.as_str()),
    )
}

async fn get_slot(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = slot_name(&name)?;
    let (_, mut doc) = latest(&state).await?;
    let slots = array(&mut doc, "slots");
    let index = position(slots, "name", name.as_str()).ok_or_else(|| no_slot(&name))?;
    Ok(HttpResponse::Ok().json(slots[index].take()))
}

async fn put_slot(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = slot_name(&name)?;
    let mut slot = parse_body(&body)?;
    // The body may spell the name in another normalisation form; compare NFC forms.
    if let Some(given) = slot.get("name").and_then(Value::as_str) {
        if SlotName::parse(given).ok().as_ref() == Some(&name) {
            slot["name"] = json!(name.as_str());
        }
    }
    let slot = with_key(slot, "name", name.as_str())?;
    let (version, _) = edit(&state, |doc| {
        let index = upsert(doc, "slots", "name", name.as_str(), &slot);
        Ok(((), Some(("slots", index))))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "version": version })))
}

async fn delete_slot(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = slot_name(&name)?;
    let version = remove(&state, "slots", "name", name.as_str(), || no_slot(&name)).await?;
    Ok(HttpResponse::Ok().json(json!({ "version": version })))
}

fn advertiser_id(raw: &str) -> Result<AdvertiserId, ApiError> {
    AdvertiserId::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_id", format!("advertiser id {e}")))
}

fn no_advertiser(id: &AdvertiserId) -> ApiError {
    ApiError::not_found(
        "unknown_advertiser",
        format!("there is no advertiser {:?}", id.as_str()),
    )
}

/// Removes an advertiser from the inventory (422 while campaigns still name it) and revokes
/// its key.
async fn delete_advertiser(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = advertiser_id(&id)?;
    let version = remove(&state, "advertisers", "id", id.as_str(), || {
        no_advertiser(&id)
    })
    .await?;
    state.store.revoke_api_key(&id).await?;
    Ok(HttpResponse::Ok().json(json!({ "version": version })))
}

/// Revokes an advertiser's API key at once, on every instance (keys are read from the store
/// on every request, never cached). 204 also when it had no key; 404 for an advertiser the
/// inventory does not have and that had no key.
async fn revoke_key(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = advertiser_id(&id)?;
    let revoked = state.store.revoke_api_key(&id).await?;
    if !revoked {
        let (_, doc) = latest(&state).await?;
        let known = doc["advertisers"]
            .as_array()
            .is_some_and(|list| position(list, "id", id.as_str()).is_some());
        if !known {
            return Err(no_advertiser(&id));
        }
    }
    tracing::info!(advertiser = id.as_str(), revoked, "advertiser key revoked");
    Ok(HttpResponse::NoContent()
        .insert_header(super::no_store())
        .finish())
}

/// Body of `PUT /v1/admin/advertisers/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvertiserBody {
    name: String,
}

async fn put_advertiser(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = advertiser_id(&id)?;
    let body: AdvertiserBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("the body must be {{\"name\": \"…\"}}: {e}"),
        )
    })?;
    let advertiser = json!({ "id": id.as_str(), "name": body.name });
    edit(&state, |doc| {
        let index = upsert(doc, "advertisers", "id", id.as_str(), &advertiser);
        Ok(((), Some(("advertisers", index))))
    })
    .await?;
    let key = new_api_key();
    state.store.set_api_key(&id, &hash_key(&key)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .json(json!({ "id": id.as_str(), "api_key": key })))
}
