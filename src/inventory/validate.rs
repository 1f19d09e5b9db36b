//! Parsing and validation of an inventory document, reporting every bad field by its path.

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use unicode_normalization::UnicodeNormalization;

use super::document::{Campaign, Creative, Format, Inventory, ScheduleWindow, Slot};
use crate::targeting::{parse_time_of_day, Country};

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

/// Parses and validates a JSON inventory document.
///
/// Each array element is decoded on its own so that one bad campaign does not hide the
/// problems of the next; cross references are checked once every element decoded.
pub fn parse_inventory(bytes: &[u8]) -> Result<ParsedInventory, InvalidInventory> {
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
    let (campaigns, campaign_at) = decode_array(&mut root, "campaigns", &mut errors);
    let decoded_cleanly = errors.is_empty();
    let inventory = Inventory {
        slots,
        advertisers,
        campaigns,
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

fn decode_array<T: DeserializeOwned>(
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
        if let Some(value) = decode_element(item, &format!("{field}[{i}]"), errors) {
            decoded.push(value);
            positions.push(i);
        }
    }
    (decoded, positions)
}

/// Most decoding errors reported for one element.
const MAX_ERRORS_PER_ELEMENT: usize = 32;

/// Decodes one element, reporting every bad field: serde stops at the first error, so the
/// offending field is taken out and the element decoded again, until it decodes or a
/// required field is missing. An element with any error is left out (`None`).
fn decode_element<T: DeserializeOwned>(
    mut item: Value,
    prefix: &str,
    errors: &mut Errors,
) -> Option<T> {
    let mut reported: Vec<String> = Vec::new();
    for _ in 0..MAX_ERRORS_PER_ELEMENT {
        let e = match serde_path_to_error::deserialize::<_, T>(item.clone()) {
            Ok(value) => return reported.is_empty().then_some(value),
            Err(e) => e,
        };
        let (path, message) = describe_decode_error(prefix, &e);
        // A field taken out was required: what follows would only repeat it.
        if reported.contains(&path) {
            return None;
        }
        errors.push(path.clone(), message);
        reported.push(path);
        if !take_out(&mut item, e.path()) {
            return None;
        }
    }
    None
}

/// Removes the value at `path` from `item` (an array element becomes `null`). False when
/// there is nothing to remove there (e.g. a missing field).
fn take_out(item: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = item;
    for segment in parents {
        node = match (segment, node) {
            (Segment::Map { key }, Value::Object(map)) => match map.get_mut(key.as_str()) {
                Some(child) => child,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(items)) => match items.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, Value::Object(map)) => map.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Array(items)) => match items.get_mut(*index) {
            Some(slot) if !slot.is_null() => {
                *slot = Value::Null;
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Turns serde's error into a path and a message, pointing at the offending field itself for
/// unknown and missing fields (serde reports those on the enclosing object).
fn describe_decode_error(
    prefix: &str,
    e: &serde_path_to_error::Error<serde_json::Error>,
) -> (String, String) {
    let inner = e.path().to_string();
    let mut path = if inner == "." || inner.is_empty() {
        prefix.to_owned()
    } else if inner.starts_with('[') {
        format!("{prefix}{inner}")
    } else {
        format!("{prefix}.{inner}")
    };
    let message = e.inner().to_string();
    // serde_json appends " at line L column C", meaningless once the element was split out.
    let message = match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    };
    // The path already names an unknown field; a missing one is reported on its object.
    if message.starts_with("unknown field `") {
        return (path, "is not a known field".to_owned());
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some(name) = rest.split('`').next() {
            path = format!("{path}.{name}");
            return (path, "is required".to_owned());
        }
    }
    (path, message)
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
        if let Some(size) = &slot.size {
            if parse_size(size).is_none() {
                errors.push(
                    format!("slots[{i}].size"),
                    "must be WIDTHxHEIGHT, e.g. 300x250",
                );
            }
        }
        check_sizes(slot, &format!("slots[{i}]"), errors);
    }
    let mut advertiser_ids = HashSet::new();
    for (advertiser, &i) in inventory.advertisers.iter().zip(&at.advertisers) {
        if !advertiser_ids.insert(&advertiser.id) {
            errors.push(
                format!("advertisers[{i}].id"),
                "duplicates another advertiser's id",
            );
        }
        check_text(
            &advertiser.name,
            &format!("advertisers[{i}].name"),
            true,
            errors,
        );
    }
    let mut campaign_ids = HashSet::new();
    for (campaign, &i) in inventory.campaigns.iter().zip(&at.campaigns) {
        let at = format!("campaigns[{i}]");
        if !campaign_ids.insert(&campaign.id) {
            errors.push(format!("{at}.id"), "duplicates another campaign's id");
        }
        check_campaign(campaign, &at, errors);
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

fn check_creative(creative: &Creative, at: &str, errors: &mut Errors) {
    if !is_web_url(&creative.landing_url) {
        errors.push(
            format!("{at}.landing_url"),
            "must be an absolute http or https URL",
        );
    }
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
            match &creative.image_url {
                None => errors.push(format!("{at}.image_url"), "is required for an image creative"),
                Some(url) if !is_web_url(url) && !is_own_path(url) => errors.push(
                    format!("{at}.image_url"),
                    "must be an absolute http or https URL, or a path on regie itself starting with /",
                ),
                Some(_) => {}
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

fn is_web_url(raw: &str) -> bool {
    url::Url::parse(raw)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false)
}

/// A root-relative path (`/creatives/x.svg`): an image regie serves itself, made absolute with
/// the public URL when a decision is answered.
pub fn is_own_path(raw: &str) -> bool {
    raw.starts_with('/')
        && !raw.starts_with("//")
        && !raw.contains('\\')
        && !raw.chars().any(char::is_control)
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
}
