//! Parsing and validation of an inventory document, reporting every bad field by its path.

use std::sync::Arc;

use hashbrown::HashSet;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use unicode_normalization::UnicodeNormalization;

use super::document::{Advertiser, Campaign, Creative, Format, Inventory, ScheduleWindow, Slot};
use crate::targeting::{parse_time_of_day, Country};

mod decode;
use decode::{decode_element, Decoded};

/// One problem in an inventory document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where, e.g. `campaigns[0].weight`; empty for the document itself.
    pub path: String,
    /// What is wrong, as a sentence fragment for a person.
    pub message: String,
}

/// Every problem found in an inventory document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the inventory has {} invalid field(s)", .details.len())]
pub struct InvalidInventory {
    /// The problems, in document order.
    pub details: Vec<FieldError>,
}

/// A parsed inventory and the optional `version` that came with it.
#[derive(Debug, Clone)]
pub struct ParsedInventory {
    /// The validated inventory.
    pub inventory: Inventory,
    /// The `version` field, when the document carried one (optimistic concurrency).
    pub version: Option<u64>,
}

impl ParsedInventory {
    /// The document's text as the store keeps it, given the `text` it was parsed from: that
    /// text, so that a large document is not serialised again, without its `version` field
    /// (the version its writer expected belongs to the write, not to the inventory). The
    /// inventory serialised when the text cannot be kept as it is (a top-level field written
    /// twice alongside a `version`).
    pub fn stored_text(&self, text: Vec<u8>) -> String {
        let kept = match self.version {
            None => String::from_utf8(text).ok(),
            Some(_) => std::str::from_utf8(&text).ok().and_then(without_version),
        };
        kept.unwrap_or_else(|| {
            serde_json::to_string(&self.inventory).expect("an inventory serialises")
        })
    }
}

/// `text`, a JSON object, without its `version` field: its other fields copied as written.
fn without_version(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow)]
        slots: Option<&'a RawValue>,
        #[serde(borrow)]
        advertisers: Option<&'a RawValue>,
        #[serde(borrow)]
        campaigns: Option<&'a RawValue>,
    }
    let fields: Fields = serde_json::from_str(text).ok()?;
    let mut kept = String::with_capacity(text.len());
    kept.push('{');
    for (name, value) in [
        ("slots", fields.slots),
        ("advertisers", fields.advertisers),
        ("campaigns", fields.campaigns),
    ] {
        if let Some(value) = value {
            if kept.len() > 1 {
                kept.push(',');
            }
            kept.push('"');
            kept.push_str(name);
            kept.push_str("\":");
            kept.push_str(value.get());
        }
    }
    kept.push('}');
    Some(kept)
}

const TOP_LEVEL_FIELDS: [&str; 4] = ["slots", "advertisers", "campaigns", "version"];
const MAX_KEYWORDS: usize = 100;
const MAX_KEYWORD_BYTES: usize = 64;
const MAX_CREATIVES: usize = 100;
const MAX_TEXT_BYTES: usize = 1_000;
const MAX_HTML_BYTES: usize = 64 * 1024;
const MAX_PIXELS: u32 = 10_000;
const MAX_FREQUENCY_WINDOW_SECS: u64 = 366 * 86_400;
const MAX_SLOT_SIZES: usize = 10;
const MAX_COUNTRIES: usize = 250;
const MAX_SCHEDULE_WINDOWS: usize = 50;
const MAX_EXCLUSION_LABELS: usize = 20;
const MAX_LABEL_BYTES: usize = 64;

/// Parses and validates a JSON inventory document; landing and image URLs come out
/// normalised.
///
/// Each array element is decoded on its own so that one bad campaign does not hide the
/// problems of the next, and each element reports every bad field (see `decode`); cross
/// references and duplicates are checked once every element decoded.
pub fn parse_inventory(bytes: &[u8]) -> Result<ParsedInventory, InvalidInventory> {
    // UTF-8 is checked once for the whole text, not string by string as `from_slice` does.
    let whole = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<WholeDocument>(text).ok());
    match whole {
        Some(whole) => check_whole(whole),
        None => parse_by_element(bytes),
    }
}

/// The document decoded in one pass, straight from its bytes, as a valid document decodes:
/// several times faster than through a [`Value`] on a large inventory. Whatever it refuses (a
/// bad value, an unknown or repeated field) goes through [`parse_by_element`], which reports
/// every problem; whatever it takes, that decoding takes as well, to the same inventory.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WholeDocument {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    slots: Option<Vec<Slot>>,
    #[serde(default)]
    advertisers: Option<Vec<Advertiser>>,
    #[serde(default)]
    campaigns: Option<Vec<Arc<Campaign>>>,
}

/// Validates a document that decoded whole: every element is where it was written.
fn check_whole(whole: WholeDocument) -> Result<ParsedInventory, InvalidInventory> {
    let inventory = Inventory {
        slots: whole.slots.unwrap_or_default(),
        advertisers: whole.advertisers.unwrap_or_default(),
        campaigns: whole.campaigns.unwrap_or_default(),
    };
    validate(&inventory).map(|()| ParsedInventory {
        inventory,
        version: whole.version,
    })
}

/// [`parse_inventory`], element by element through a [`Value`], reporting every bad field.
fn parse_by_element(bytes: &[u8]) -> Result<ParsedInventory, InvalidInventory> {
    let mut errors = Errors::default();
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            errors.push("", format!("is not valid JSON: {e}"));
            return Err(errors.finish());
        }
    };
    let Value::Object(mut root) = value else {
        errors.push("", "must be a JSON object");
        return Err(errors.finish());
    };
    for key in root.keys() {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            errors.push(key, "is not a known field");
        }
    }
    let version = match root.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => {
                errors.push("version", "must be a non-negative integer");
                None
            }
        },
    };
    let (slots, slot_at) = decode_array(&mut root, "slots", &mut errors);
    let (advertisers, advertiser_at) = decode_array(&mut root, "advertisers", &mut errors);
    let (campaigns, campaign_at) = decode_array::<Campaign>(&mut root, "campaigns", &mut errors);
    let decoded_cleanly = errors.is_empty();
    let inventory = Inventory {
        slots,
        advertisers,
        campaigns: campaigns.into_iter().map(Arc::new).collect(),
    };
    let positions = Positions {
        slots: slot_at,
        advertisers: advertiser_at,
        campaigns: campaign_at,
    };
    check_semantics(&inventory, &positions, decoded_cleanly, &mut errors);
    if errors.is_empty() {
        Ok(ParsedInventory { inventory, version })
    } else {
        Err(errors.finish())
    }
}

/// Validates an inventory built in code (e.g. after a single-campaign edit).
pub fn validate(inventory: &Inventory) -> Result<(), InvalidInventory> {
    let mut errors = Errors::default();
    let positions = Positions {
        slots: (0..inventory.slots.len()).collect(),
        advertisers: (0..inventory.advertisers.len()).collect(),
        campaigns: (0..inventory.campaigns.len()).collect(),
    };
    check_semantics(inventory, &positions, true, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.finish())
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

/// Where each decoded element stood in the document, so that paths stay right when an earlier
/// element failed to decode and was left out.
struct Positions {
    slots: Vec<usize>,
    advertisers: Vec<usize>,
    campaigns: Vec<usize>,
}

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn finish(self) -> InvalidInventory {
        InvalidInventory { details: self.0 }
    }
}

/// An element of one of the document's lists.
trait Element: DeserializeOwned {
    /// Reports what is wrong with the element on its own, apart from its relations to the
    /// other elements (duplicates, references).
    fn check_alone(&self, at: &str, errors: &mut Errors);
}

impl Element for Slot {
    fn check_alone(&self, at: &str, errors: &mut Errors) {
        if let Some(size) = &self.size {
            if parse_size(size).is_none() {
                errors.push(format!("{at}.size"), "must be WIDTHxHEIGHT, e.g. 300x250");
            }
        }
        check_sizes(self, at, errors);
    }
}

impl Element for Advertiser {
    fn check_alone(&self, at: &str, errors: &mut Errors) {
        check_text(&self.name, &format!("{at}.name"), true, errors);
    }
}

impl Element for Campaign {
    fn check_alone(&self, at: &str, errors: &mut Errors) {
        check_campaign(self, at, errors);
    }
}

/// Decodes the document's list `field`: the elements that decoded as written, and their
/// positions in the list. An element with bad fields is left out, once it has been checked as
/// far as it could be decoded.
fn decode_array<T: Element>(
    root: &mut serde_json::Map<String, Value>,
    field: &str,
    errors: &mut Errors,
) -> (Vec<T>, Vec<usize>) {
    let items = match root.remove(field) {
        None | Some(Value::Null) => return (Vec::new(), Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.push(field, "must be an array");
            return (Vec::new(), Vec::new());
        }
    };
    let mut decoded = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        match decode_element::<T>(item, &at, errors) {
            Decoded::Clean(value) => {
                decoded.push(value);
                positions.push(i);
            }
            Decoded::Repaired(value, repairs) => {
                let mut found = Errors::default();
                value.check_alone(&at, &mut found);
                errors
                    .0
                    .extend(found.0.into_iter().filter(|e| repairs.keeps(&e.path)));
            }
            Decoded::Failed => {}
        }
    }
    (decoded, positions)
}

fn check_semantics(
    inventory: &Inventory,
    at: &Positions,
    check_references: bool,
    errors: &mut Errors,
) {
    let mut slot_names = HashSet::new();
    for (slot, &i) in inventory.slots.iter().zip(&at.slots) {
        if !slot_names.insert(&slot.name) {
            errors.push(format!("slots[{i}].name"), "duplicates another slot's name");
        }
        slot.check_alone(&format!("slots[{i}]"), errors);
    }
    let mut advertiser_ids = HashSet::new();
    for (advertiser, &i) in inventory.advertisers.iter().zip(&at.advertisers) {
        if !advertiser_ids.insert(&advertiser.id) {
            errors.push(
                format!("advertisers[{i}].id"),
                "duplicates another advertiser's id",
            );
        }
        advertiser.check_alone(&format!("advertisers[{i}]"), errors);
    }
    let mut campaign_ids = HashSet::new();
    for (campaign, &i) in inventory.campaigns.iter().zip(&at.campaigns) {
        let at = format!("campaigns[{i}]");
        if !campaign_ids.insert(&campaign.id) {
            errors.push(format!("{at}.id"), "duplicates another campaign's id");
        }
        campaign.check_alone(&at, errors);
        if check_references {
            if !advertiser_ids.contains(&campaign.advertiser_id) {
                errors.push(
                    format!("{at}.advertiser_id"),
                    "names no advertiser of the inventory",
                );
            }
            for (j, slot) in campaign.slots.iter().enumerate() {
                if !slot_names.contains(slot) {
                    errors.push(format!("{at}.slots[{j}]"), "names no slot of the inventory");
                }
            }
        }
    }
    if check_references {
        for (slot, &i) in inventory.slots.iter().zip(&at.slots) {
            if let Some(fallback) = &slot.fallback {
                if !campaign_ids.contains(fallback) {
                    errors.push(
                        format!("slots[{i}].fallback"),
                        "names no campaign of the inventory",
                    );
                }
            }
        }
    }
}

fn check_campaign(campaign: &Campaign, at: &str, errors: &mut Errors) {
    if campaign.slots.is_empty() {
        errors.push(format!("{at}.slots"), "must name at least one slot");
    }
    let mut seen_slots = HashSet::new();
    for (j, slot) in campaign.slots.iter().enumerate() {
        if !seen_slots.insert(slot) {
            errors.push(format!("{at}.slots[{j}]"), "is listed twice");
        }
    }
    if let (Some(start), Some(end)) = (campaign.start, campaign.end) {
        if end <= start {
            errors.push(format!("{at}.end"), "must be after start");
        }
    }
    for (name, cap) in [
        ("total_impressions", campaign.caps.total_impressions),
        ("daily_impressions", campaign.caps.daily_impressions),
        ("total_clicks", campaign.caps.total_clicks),
    ] {
        if cap == Some(0) {
            errors.push(
                format!("{at}.caps.{name}"),
                "must be at least 1 (pause the campaign instead)",
            );
        }
    }
    if let Some(frequency) = &campaign.frequency {
        if frequency.max == 0 {
            errors.push(format!("{at}.frequency.max"), "must be at least 1");
        }
        if !(1..=MAX_FREQUENCY_WINDOW_SECS).contains(&frequency.per_seconds) {
            errors.push(
                format!("{at}.frequency.per_seconds"),
                format!("must be between 1 and {MAX_FREQUENCY_WINDOW_SECS}"),
            );
        }
    }
    for (list_name, list) in [
        ("keywords_any", &campaign.targeting.keywords_any),
        ("keywords_none", &campaign.targeting.keywords_none),
    ] {
        if list.len() > MAX_KEYWORDS {
            errors.push(
                format!("{at}.targeting.{list_name}"),
                format!("must hold at most {MAX_KEYWORDS} keywords"),
            );
        }
        for (k, keyword) in list.iter().enumerate() {
            let trimmed = keyword.trim();
            if trimmed.is_empty() || trimmed.len() > MAX_KEYWORD_BYTES || trimmed.contains(',') {
                errors.push(
                    format!("{at}.targeting.{list_name}[{k}]"),
                    format!("must be 1 to {MAX_KEYWORD_BYTES} bytes without commas"),
                );
            }
        }
    }
    check_countries(&campaign.targeting.countries, at, errors);
    check_schedule(&campaign.targeting.schedule, at, errors);
    check_labels(&campaign.exclusion_labels, at, errors);
    if campaign.creatives.is_empty() || campaign.creatives.len() > MAX_CREATIVES {
        errors.push(
            format!("{at}.creatives"),
            format!("must hold 1 to {MAX_CREATIVES} creatives"),
        );
    }
    let mut creative_ids = HashSet::new();
    for (j, creative) in campaign.creatives.iter().enumerate() {
        let at = format!("{at}.creatives[{j}]");
        if !creative_ids.insert(&creative.id) {
            errors.push(
                format!("{at}.id"),
                "duplicates another creative's id in this campaign",
            );
        }
        check_creative(creative, &at, errors);
    }
}

/// A slot's `sizes`: an alternative to `size`, each `WIDTHxHEIGHT`, none twice.
fn check_sizes(slot: &Slot, at: &str, errors: &mut Errors) {
    if slot.sizes.is_empty() {
        return;
    }
    if slot.size.is_some() {
        errors.push(format!("{at}.sizes"), "cannot be given together with size");
    }
    if slot.sizes.len() > MAX_SLOT_SIZES {
        errors.push(
            format!("{at}.sizes"),
            format!("must hold at most {MAX_SLOT_SIZES} sizes"),
        );
    }
    let mut seen = HashSet::new();
    for (k, size) in slot.sizes.iter().enumerate() {
        match parse_size(size) {
            None => errors.push(
                format!("{at}.sizes[{k}]"),
                "must be WIDTHxHEIGHT, e.g. 320x50",
            ),
            Some(parsed) if !seen.insert(parsed) => {
                errors.push(format!("{at}.sizes[{k}]"), "is listed twice")
            }
            Some(_) => {}
        }
    }
}

fn check_countries(countries: &[String], at: &str, errors: &mut Errors) {
    if countries.len() > MAX_COUNTRIES {
        errors.push(
            format!("{at}.targeting.countries"),
            format!("must hold at most {MAX_COUNTRIES} countries"),
        );
    }
    let mut seen = HashSet::new();
    for (k, code) in countries.iter().enumerate() {
        let path = format!("{at}.targeting.countries[{k}]");
        match Country::parse(code.as_bytes()) {
            None if code.eq_ignore_ascii_case("UK") => errors.push(
                path,
                "is not an ISO 3166-1 alpha-2 code (the United Kingdom is GB)",
            ),
            None => errors.push(path, "must be an ISO 3166-1 alpha-2 code, e.g. FR"),
            Some(country) if !seen.insert(country) => errors.push(path, "is listed twice"),
            Some(_) => {}
        }
    }
}

fn check_schedule(windows: &[ScheduleWindow], at: &str, errors: &mut Errors) {
    if windows.len() > MAX_SCHEDULE_WINDOWS {
        errors.push(
            format!("{at}.targeting.schedule"),
            format!("must hold at most {MAX_SCHEDULE_WINDOWS} windows"),
        );
    }
    for (k, window) in windows.iter().enumerate() {
        let at = format!("{at}.targeting.schedule[{k}]");
        if window.days.is_empty() {
            errors.push(format!("{at}.days"), "must name at least one day");
        }
        let mut seen = HashSet::new();
        for (d, day) in window.days.iter().enumerate() {
            if !seen.insert(day) {
                errors.push(format!("{at}.days[{d}]"), "is listed twice");
            }
        }
        let from = parse_time_of_day(&window.from, false);
        if from.is_none() {
            errors.push(format!("{at}.from"), "must be a time HH:MM, 00:00 to 23:59");
        }
        let to = parse_time_of_day(&window.to, true);
        if to.is_none() {
            errors.push(format!("{at}.to"), "must be a time HH:MM, 00:01 to 24:00");
        }
        if from.is_some() && from == to {
            errors.push(
                format!("{at}.to"),
                "must differ from from (a whole day is 00:00 to 24:00)",
            );
        }
    }
}

fn check_labels(labels: &[String], at: &str, errors: &mut Errors) {
    if labels.len() > MAX_EXCLUSION_LABELS {
        errors.push(
            format!("{at}.exclusion_labels"),
            format!("must hold at most {MAX_EXCLUSION_LABELS} labels"),
        );
    }
    let mut seen = HashSet::new();
    for (k, label) in labels.iter().enumerate() {
        let path = format!("{at}.exclusion_labels[{k}]");
        let normalized = normalize_label(label);
        if normalized.is_empty()
            || normalized.len() > MAX_LABEL_BYTES
            || normalized.chars().any(char::is_control)
        {
            errors.push(
                path,
                format!("must be 1 to {MAX_LABEL_BYTES} bytes without control characters"),
            );
        } else if !seen.insert(normalized) {
            errors.push(path, "is listed twice");
        }
    }
}

/// The form in which exclusion labels are compared: trimmed, NFC, lower case (as keywords).
pub fn normalize_label(raw: &str) -> String {
    raw.trim().nfc().flat_map(char::to_lowercase).collect()
}

/// Checks a creative; its URLs were checked when they were decoded (see `LandingUrl`).
fn check_creative(creative: &Creative, at: &str, errors: &mut Errors) {
    for (name, text) in [
        ("title", &creative.title),
        ("body", &creative.body),
        ("alt", &creative.alt),
    ] {
        if let Some(text) = text {
            check_text(text, &format!("{at}.{name}"), name == "title", errors);
        }
    }
    for (name, pixels) in [("width", creative.width), ("height", creative.height)] {
        if let Some(pixels) = pixels {
            if !(1..=MAX_PIXELS).contains(&pixels) {
                errors.push(
                    format!("{at}.{name}"),
                    format!("must be between 1 and {MAX_PIXELS}"),
                );
            }
        }
    }
    match creative.format {
        Format::Image => {
            if creative.image_url.is_none() {
                errors.push(
                    format!("{at}.image_url"),
                    "is required for an image creative",
                );
            }
            for (name, pixels) in [("width", creative.width), ("height", creative.height)] {
                if pixels.is_none() {
                    errors.push(format!("{at}.{name}"), "is required for an image creative");
                }
            }
        }
        Format::Text => {
            if creative.title.is_none() {
                errors.push(format!("{at}.title"), "is required for a text creative");
            }
        }
        Format::Html => match &creative.html {
            None => errors.push(format!("{at}.html"), "is required for an html creative"),
            Some(html) if html.is_empty() || html.len() > MAX_HTML_BYTES => errors.push(
                format!("{at}.html"),
                format!("must be 1 to {MAX_HTML_BYTES} bytes"),
            ),
            Some(_) => {}
        },
    }
}

fn check_text(text: &str, path: &str, required: bool, errors: &mut Errors) {
    if required && text.trim().is_empty() {
        errors.push(path, "must not be empty");
    } else if text.len() > MAX_TEXT_BYTES {
        errors.push(path, format!("must be at most {MAX_TEXT_BYTES} bytes"));
    }
}

/// Parses a `WIDTHxHEIGHT` slot size.
pub fn parse_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "slots": [{ "name": "Publicité 2", "rotation": "weighted_random", "size": "300x250",
                        "fallback": "house" }],
            "advertisers": [{ "id": "3vision", "name": "3Vision Group" },
                            { "id": "publisher", "name": "Le Journal" }],
            "campaigns": [
                { "id": "3vision-visitez", "advertiser_id": "3vision", "slots": ["Publicité 2"],
                  "weight": 3, "creatives": [{ "id": "c1", "format": "text", "title": "Visitez",
                  "landing_url": "https://3vision.example/" }] },
                { "id": "house", "advertiser_id": "publisher", "slots": ["Publicité 2"],
                  "priority": "house", "creatives": [{ "id": "h1", "format": "text",
                  "title": "Annoncez ici", "landing_url": "https://journal.example/pub" }] }
            ]
        })
    }

    /// Both decodings of `bytes`, the whole document's first.
    fn both_ways(bytes: &[u8]) -> (ParsedInventory, ParsedInventory) {
        let whole = serde_json::from_slice::<WholeDocument>(bytes).expect("decodes whole");
        let whole = check_whole(whole).expect("valid, decoded whole");
        let by_element = parse_by_element(bytes).expect("valid, element by element");
        (whole, by_element)
    }

    #[test]
    fn a_valid_document_decodes_whole_to_what_element_by_element_gives() {
        let mut versioned = valid();
        versioned["version"] = json!(7);
        let shipped = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/inventory.json"
        ))
        .expect("config/inventory.json");
        for bytes in [versioned.to_string().into_bytes(), shipped] {
            let (whole, by_element) = both_ways(&bytes);
            assert_eq!(whole.inventory, by_element.inventory);
            assert_eq!(whole.version, by_element.version);
        }
    }

    #[test]
    fn the_store_keeps_the_text_as_written_without_its_version() {
        // Spaces, an escaped character and a field order of the writer's own: kept as written.
        let campaigns = valid()["campaigns"]
            .to_string()
            .replace("Visitez", "Visit\\u00e9z");
        let slots = valid()["slots"].to_string();
        let advertisers = valid()["advertisers"].to_string();
        let text = format!(
            "{{ \"campaigns\" : {campaigns},\n \"slots\": {slots}, \"advertisers\":{advertisers} }}"
        );
        let parsed = parse_inventory(text.as_bytes()).expect("valid");
        assert_eq!(parsed.stored_text(text.clone().into_bytes()), text);

        let versioned = text.replacen("{", "{\"version\": 41, ", 1);
        let parsed = parse_inventory(versioned.as_bytes()).expect("valid");
        assert_eq!(parsed.version, Some(41));
        let stored = parsed.stored_text(versioned.into_bytes());
        assert_eq!(
            stored,
            format!(
                "{{\"slots\":{slots},\"advertisers\":{advertisers},\"campaigns\":{campaigns}}}"
            )
        );
        let read_back = parse_inventory(stored.as_bytes()).expect("valid");
        assert_eq!(read_back.inventory, parsed.inventory);
        assert_eq!(read_back.version, None);
    }

    #[test]
    fn a_versioned_text_that_repeats_a_field_is_stored_serialised() {
        let slots = valid()["slots"].to_string();
        let mut doc = valid();
        doc["version"] = json!(3);
        let text = doc
            .to_string()
            .replacen("{", &format!("{{\"slots\":{slots},"), 1);
        let parsed = parse_inventory(text.as_bytes()).expect("a repeated field keeps the last");
        let stored = parsed.stored_text(text.into_bytes());
        assert_eq!(stored, serde_json::to_string(&parsed.inventory).unwrap());
        let read_back = parse_inventory(stored.as_bytes()).expect("valid");
        assert_eq!(read_back.inventory, parsed.inventory);
        assert_eq!(read_back.version, None);
    }

    #[test]
    fn what_the_whole_decoding_refuses_is_read_element_by_element() {
        // A repeated key: serde's derive refuses it, a JSON object keeps the last one.
        let text = valid().to_string();
        let repeated = text.replacen("\"weight\":3", "\"weight\":5,\"weight\":3", 1);
        assert_ne!(repeated, text);
        assert!(serde_json::from_slice::<WholeDocument>(repeated.as_bytes()).is_err());
        let parsed = parse_inventory(repeated.as_bytes()).expect("valid");
        assert_eq!(
            parsed.inventory,
            parse_inventory(text.as_bytes()).unwrap().inventory
        );
        // Null arrays are empty both ways.
        let (whole, by_element) =
            both_ways(br#"{"slots": null, "advertisers": [], "campaigns": null}"#);
        assert_eq!(whole.inventory, by_element.inventory);
    }

    fn errors_of(doc: Value) -> Vec<(String, String)> {
        parse_inventory(doc.to_string().as_bytes())
            .expect_err("the document should be rejected")
            .details
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    fn paths_of(doc: Value) -> Vec<String> {
        errors_of(doc).into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn a_valid_document_parses() {
        let parsed = parse_inventory(valid().to_string().as_bytes()).unwrap();
        assert_eq!(parsed.inventory.campaigns.len(), 2);
        assert_eq!(parsed.version, None);
    }

    #[test]
    fn a_weight_out_of_range_is_named_by_its_path() {
        let mut doc = valid();
        doc["campaigns"][0]["weight"] = json!(0);
        assert_eq!(
            errors_of(doc),
            vec![(
                "campaigns[0].weight".to_owned(),
                "must be between 1 and 1000000".to_owned()
            )]
        );
    }

    #[test]
    fn every_bad_element_is_reported_not_only_the_first() {
        let mut doc = valid();
        doc["campaigns"][0]["weight"] = json!(2_000_000);
        doc["campaigns"][1]["creatives"][0]["landing_url"] = json!("javascript:alert(1)");
        doc["slots"][0]["surprise"] = json!(true);
        let paths = paths_of(doc);
        assert!(paths.contains(&"slots[0].surprise".to_owned()), "{paths:?}");
        assert!(
            paths.contains(&"campaigns[0].weight".to_owned()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"campaigns[1].creatives[0].landing_url".to_owned()),
            "{paths:?}"
        );
    }

    #[test]
    fn every_bad_field_of_one_element_is_reported() {
        let mut doc = valid();
        doc["campaigns"][0]["weight"] = json!(0);
        doc["campaigns"][0]["colour"] = json!("blue");
        doc["campaigns"][0]["priority"] = json!("urgent");
        doc["campaigns"][0]["creatives"][0]["surprise"] = json!(1);
        let mut paths = paths_of(doc);
        paths.sort();
        assert_eq!(
            paths,
            vec![
                "campaigns[0].colour".to_owned(),
                "campaigns[0].creatives[0].surprise".to_owned(),
                "campaigns[0].priority".to_owned(),
                "campaigns[0].weight".to_owned(),
            ]
        );
    }

    #[test]
    fn a_landing_url_with_a_line_break_is_refused_by_its_path() {
        let mut doc = valid();
        doc["campaigns"][0]["creatives"][0]["landing_url"] =
            json!("https://3vision.example/\r\nSet-Cookie: x=1");
        assert_eq!(
            errors_of(doc),
            vec![(
                "campaigns[0].creatives[0].landing_url".to_owned(),
                "must not contain control characters (CR, LF, tab…)".to_owned()
            )]
        );
    }

    #[test]
    fn every_bad_field_of_an_element_is_reported_even_when_one_fails_to_decode() {
        let mut doc = valid();
        let campaign = &mut doc["campaigns"][0];
        campaign["weight"] = json!("heavy");
        campaign["frequency"] = json!({ "max": 0, "per_seconds": 60 });
        campaign["creatives"][0]["landing_url"] = json!("javascript:alert(1)");
        campaign["creatives"][0]["image_url"] = json!("https://cdn.example/a.png\r\n");
        campaign["creatives"][0]["width"] = json!(0);

        let errors = errors_of(doc);

        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "campaigns[0].creatives[0].image_url",
                "campaigns[0].creatives[0].landing_url",
                "campaigns[0].weight",
                "campaigns[0].frequency.max",
                "campaigns[0].creatives[0].width",
            ],
            "{errors:?}"
        );
        assert_eq!(errors[1].1, "must be an absolute http or https URL");
    }

    #[test]
    fn values_that_cannot_be_left_out_are_reported_without_hiding_the_rest() {
        let mut doc = valid();
        let campaign = &mut doc["campaigns"][0];
        campaign["advertiser_id"] = json!("not valid!");
        campaign["slots"] = json!(["Publicité 2", 5, "Publicité 2"]);
        campaign["targeting"] = json!({
            "keywords_any": [7],
            "schedule": [{ "days": ["monday", "mon"], "from": "7h", "to": "10:00" }, "x"],
        });
        // A format that does not decode: which fields the creative needs is unknown, so the
        // missing title is not held against it.
        campaign["creatives"][0]["format"] = json!("video");
        campaign["creatives"][0]
            .as_object_mut()
            .unwrap()
            .remove("title");
        campaign["creatives"][0]["landing_url"] = json!(42);
        campaign["creatives"][0]["alt"] = json!("x".repeat(1_001));
        campaign["creatives"]
            .as_array_mut()
            .unwrap()
            .push(json!(["not", "a", "creative"]));

        let mut paths = paths_of(doc);
        paths.sort();

        assert_eq!(
            paths,
            vec![
                "campaigns[0].advertiser_id",
                "campaigns[0].creatives[0].alt",
                "campaigns[0].creatives[0].format",
                "campaigns[0].creatives[0].landing_url",
                "campaigns[0].creatives[1][1]",
                "campaigns[0].slots[1]",
                "campaigns[0].slots[2]",
                "campaigns[0].targeting.keywords_any[0]",
                "campaigns[0].targeting.schedule[0].days[0]",
                "campaigns[0].targeting.schedule[0].from",
                "campaigns[0].targeting.schedule[1]",
            ]
        );
    }

    #[test]
    fn an_element_written_as_an_empty_object_is_told_each_required_field() {
        let mut doc = valid();
        doc["slots"].as_array_mut().unwrap().push(json!({}));
        doc["advertisers"].as_array_mut().unwrap().push(json!({}));
        doc["campaigns"].as_array_mut().unwrap().push(json!({}));
        doc["campaigns"][0]["creatives"] = json!([{}]);
        doc["campaigns"][0]["frequency"] = json!({});
        doc["campaigns"][0]["targeting"] = json!({ "schedule": [{}] });

        let paths = paths_of(doc);

        assert_eq!(
            paths,
            vec![
                "slots[1].name",
                "advertisers[2].id",
                "advertisers[2].name",
                "campaigns[0].creatives[0].id",
                "campaigns[0].creatives[0].format",
                "campaigns[0].creatives[0].landing_url",
                "campaigns[0].frequency.max",
                "campaigns[0].frequency.per_seconds",
                "campaigns[0].targeting.schedule[0].from",
                "campaigns[0].targeting.schedule[0].to",
                "campaigns[2].id",
                "campaigns[2].advertiser_id",
                "campaigns[2].slots",
                "campaigns[2].creatives",
            ]
        );
    }

    #[test]
    fn urls_are_kept_in_normalised_form() {
        let mut doc = valid();
        doc["campaigns"][0]["creatives"][0]["landing_url"] =
            json!("HTTPS://Journal.Example:443/a b?q=é");
        doc["campaigns"][0]["creatives"][0]["image_url"] = json!("/creatives/une image.svg");
        doc["campaigns"][1]["creatives"][0]["image_url"] = json!("http://Bücher.example/x.png");

        let parsed = parse_inventory(doc.to_string().as_bytes()).unwrap();

        let out = serde_json::to_value(&parsed.inventory).unwrap();
        let creative = &out["campaigns"][0]["creatives"][0];
        assert_eq!(
            creative["landing_url"],
            "https://journal.example/a%20b?q=%C3%A9"
        );
        assert_eq!(creative["image_url"], "/creatives/une%20image.svg");
        assert_eq!(
            out["campaigns"][1]["creatives"][0]["image_url"],
            "http://xn--bcher-kva.example/x.png"
        );
    }

    #[test]
    fn a_bad_required_field_is_reported_once() {
        let mut doc = valid();
        doc["campaigns"][0]["advertiser_id"] = json!("not valid!");
        assert_eq!(paths_of(doc), vec!["campaigns[0].advertiser_id".to_owned()]);
    }

    #[test]
    fn unknown_fields_are_rejected_at_every_level() {
        let mut doc = valid();
        doc["extra"] = json!(1);
        doc["campaigns"][0]["caps"] = json!({ "total_impressions": 10, "weekly": 3 });
        let paths = paths_of(doc);
        assert_eq!(
            paths,
            vec!["extra".to_owned(), "campaigns[0].caps.weekly".to_owned()]
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        let mut doc = valid();
        doc["campaigns"][0]
            .as_object_mut()
            .unwrap()
            .remove("advertiser_id");
        assert_eq!(paths_of(doc), vec!["campaigns[0].advertiser_id".to_owned()]);
    }

    #[test]
    fn dangling_references_are_named() {
        let mut doc = valid();
        doc["campaigns"][0]["advertiser_id"] = json!("nobody");
        doc["campaigns"][0]["slots"] = json!(["Publicité 9"]);
        doc["slots"][0]["fallback"] = json!("missing");
        assert_eq!(
            paths_of(doc),
            vec![
                "campaigns[0].advertiser_id".to_owned(),
                "campaigns[0].slots[0]".to_owned(),
                "slots[0].fallback".to_owned()
            ]
        );
    }

    #[test]
    fn format_requirements_are_checked() {
        let mut doc = valid();
        doc["campaigns"][0]["creatives"][0] =
            json!({ "id": "img", "format": "image", "landing_url": "https://x.example/" });
        assert_eq!(
            paths_of(doc),
            vec![
                "campaigns[0].creatives[0].image_url".to_owned(),
                "campaigns[0].creatives[0].width".to_owned(),
                "campaigns[0].creatives[0].height".to_owned()
            ]
        );
    }

    #[test]
    fn a_slot_name_with_a_control_character_is_rejected() {
        let mut doc = valid();
        doc["slots"][0]["name"] = json!("ban\u{0007}ner");
        let errors = errors_of(doc);
        assert_eq!(errors[0].0, "slots[0].name");
        assert!(errors[0].1.contains("control"), "{errors:?}");
    }

    #[test]
    fn slot_names_are_compared_after_nfc_normalisation() {
        let mut doc = valid();
        // The campaign names the slot with a combining accent; the slot is precomposed.
        doc["campaigns"][0]["slots"] = json!(["Publicite\u{301} 2"]);
        doc["slots"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "name": "Publicite\u{301} 2" }));
        let errors = errors_of(doc);
        assert_eq!(
            errors,
            vec![(
                "slots[1].name".to_owned(),
                "duplicates another slot's name".to_owned()
            )]
        );
    }

    #[test]
    fn invalid_json_is_one_error_on_the_document() {
        let err = parse_inventory(b"{ not json").unwrap_err();
        assert_eq!(err.details.len(), 1);
        assert_eq!(err.details[0].path, "");
    }

    #[test]
    fn targeting_countries_schedule_and_labels_are_checked_by_path() {
        let mut doc = valid();
        doc["campaigns"][0]["targeting"] = json!({
            "countries": ["FR", "be", "UK", "XX", "FR", "FRA"],
            "schedule": [
                { "days": ["mon", "fri"], "from": "22:00", "to": "02:00" },
                { "days": [], "from": "7:00", "to": "24:01" },
                { "days": ["sat", "sat"], "from": "10:00", "to": "10:00" },
                { "from": "00:00", "to": "24:00" }
            ]
        });
        doc["campaigns"][0]["exclusion_labels"] =
            json!(["Automobile", "automobile ", "", "x".repeat(65)]);
        let errors = errors_of(doc);
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "campaigns[0].targeting.countries[2]",
                "campaigns[0].targeting.countries[3]",
                "campaigns[0].targeting.countries[4]",
                "campaigns[0].targeting.countries[5]",
                "campaigns[0].targeting.schedule[1].days",
                "campaigns[0].targeting.schedule[1].from",
                "campaigns[0].targeting.schedule[1].to",
                "campaigns[0].targeting.schedule[2].days[1]",
                "campaigns[0].targeting.schedule[2].to",
                "campaigns[0].exclusion_labels[1]",
                "campaigns[0].exclusion_labels[2]",
                "campaigns[0].exclusion_labels[3]",
            ],
            "{errors:?}"
        );
        assert!(errors[0].1.contains("GB"), "{errors:?}");
    }

    #[test]
    fn an_unknown_day_is_named_by_its_path() {
        let mut doc = valid();
        doc["campaigns"][0]["targeting"] =
            json!({ "schedule": [{ "days": ["monday"], "from": "07:00", "to": "10:00" }] });
        assert_eq!(
            paths_of(doc),
            vec!["campaigns[0].targeting.schedule[0].days[0]".to_owned()]
        );
    }

    #[test]
    fn a_slot_takes_size_or_sizes_not_both() {
        let mut doc = valid();
        doc["slots"][0]["sizes"] = json!(["728x90", "320x50"]);
        assert_eq!(paths_of(doc.clone()), vec!["slots[0].sizes".to_owned()]);
        doc["slots"][0].as_object_mut().unwrap().remove("size");
        let parsed = parse_inventory(doc.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.inventory.slots[0].sizes, ["728x90", "320x50"]);
        doc["slots"][0]["sizes"] = json!(["728x90", "big", "728x90"]);
        assert_eq!(
            paths_of(doc),
            vec![
                "slots[0].sizes[1]".to_owned(),
                "slots[0].sizes[2]".to_owned()
            ]
        );
    }

    #[test]
    fn the_new_fields_round_trip_and_stay_out_of_documents_without_them() {
        let mut doc = valid();
        doc["slots"][0].as_object_mut().unwrap().remove("size");
        doc["slots"][0]["sizes"] = json!(["728x90", "320x50"]);
        doc["campaigns"][0]["targeting"] = json!({
            "keywords_any": [], "keywords_none": [], "countries": ["FR"],
            "schedule": [{ "days": ["mon"], "from": "07:00", "to": "10:00" }]
        });
        doc["campaigns"][0]["exclusion_labels"] = json!(["automobile"]);
        let parsed = parse_inventory(doc.to_string().as_bytes()).unwrap();
        let out = serde_json::to_value(&parsed.inventory).unwrap();
        assert_eq!(out["slots"][0]["sizes"], doc["slots"][0]["sizes"]);
        assert_eq!(
            out["campaigns"][0]["targeting"],
            doc["campaigns"][0]["targeting"]
        );
        assert_eq!(
            out["campaigns"][0]["exclusion_labels"],
            json!(["automobile"])
        );
        let plain = serde_json::to_value(
            &parse_inventory(valid().to_string().as_bytes())
                .unwrap()
                .inventory,
        )
        .unwrap();
        assert!(plain["slots"][0].get("sizes").is_none());
        assert!(plain["campaigns"][0].get("exclusion_labels").is_none());
        assert!(plain["campaigns"][0]["targeting"]
            .get("countries")
            .is_none());
    }

    #[test]
    fn a_version_is_taken_from_the_document() {
        let mut doc = valid();
        doc["version"] = json!(7);
        assert_eq!(
            parse_inventory(doc.to_string().as_bytes()).unwrap().version,
            Some(7)
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Field names of the document at every level, and a few that are not.
        const KEYS: [&str; 36] = [
            "slots",
            "advertisers",
            "campaigns",
            "version",
            "name",
            "rotation",
            "size",
            "fallback",
            "id",
            "advertiser_id",
            "status",
            "weight",
            "priority",
            "start",
            "end",
            "caps",
            "total_impressions",
            "daily_impressions",
            "total_clicks",
            "pacing",
            "frequency",
            "max",
            "per_seconds",
            "targeting",
            "keywords_any",
            "keywords_none",
            "creatives",
            "format",
            "title",
            "body",
            "image_url",
            "alt",
            "width",
            "height",
            "html",
            "landing_url",
        ];

        fn any_leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(
                    |f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                ),
                any::<String>().prop_map(Value::from),
                prop_oneof![
                    Just("https://a.example/"),
                    Just("javascript:alert(1)"),
                    Just("https://a.example/\r\nSet-Cookie: x=1"),
                    Just("/creatives/a.svg"),
                    Just("image"),
                    Just("text"),
                    Just("html"),
                    Just("smooth"),
                    Just("house"),
                    Just("2026-11-01T00:00:00Z"),
                    Just("300x250"),
                    Just("Publicité 2"),
                ]
                .prop_map(Value::from),
            ]
        }

        /// JSON trees whose objects mostly use the document's own field names, so that the
        /// parser goes deep rather than stopping at the first unknown field.
        fn any_document() -> impl Strategy<Value = Value> {
            any_leaf().prop_recursive(5, 64, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::vec(
                        (prop_oneof![9 => proptest::sample::select(&KEYS[..]).prop_map(String::from), 1 => any::<String>()], inner),
                        0..8,
                    )
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                ]
            })
        }

        fn assert_valid_or_explained(bytes: &[u8]) -> Result<(), TestCaseError> {
            match parse_inventory(bytes) {
                Ok(parsed) => prop_assert!(validate(&parsed.inventory).is_ok()),
                Err(e) => {
                    prop_assert!(!e.details.is_empty());
                    for detail in &e.details {
                        prop_assert!(!detail.message.is_empty(), "{detail:?}");
                    }
                }
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn any_bytes_are_an_inventory_or_errors_with_messages(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                assert_valid_or_explained(&bytes)?;
            }

            #[test]
            fn any_json_tree_is_an_inventory_or_errors_with_messages(doc in any_document()) {
                assert_valid_or_explained(doc.to_string().as_bytes())?;
            }

            #[test]
            fn any_value_in_any_field_of_a_valid_campaign_is_accepted_or_named(
                field in proptest::sample::select(&KEYS[4..]),
                value in any_leaf(),
            ) {
                let mut doc = valid();
                doc["campaigns"][0]["creatives"][0][field] = value.clone();
                doc["campaigns"][0][field] = value;
                assert_valid_or_explained(doc.to_string().as_bytes())?;
            }
        }
    }
}
