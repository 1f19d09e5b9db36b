//! Decoding one element of the document (a slot, an advertiser, a campaign) so that every bad
//! field of it is reported, not only the first.
//!
//! serde stops at the first error. The element is decoded again with the offending value left
//! out, and again, until it decodes. A value the element cannot do without is not left out
//! but stood in for by a placeholder of the right type: a required field, or an item of a
//! list (leaving it out would renumber the items after it, and their paths with them). What
//! finally decodes is then checked like any element, and [`Repairs::keeps`] drops the findings
//! that are about a value already reported or about a placeholder.

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use serde_path_to_error::Segment;

use super::Errors;
use crate::inventory::Day;

/// Most decoding attempts for one element: each bad value takes one or two.
const MAX_ATTEMPTS_PER_ELEMENT: usize = 32;

/// The placeholder identifier, slot name and advertiser name: valid as each, and unlike any
/// an operator would choose, so that it does not make a real element look like a duplicate.
const PLACEHOLDER_NAME: &str = "regie.placeholder";
const PLACEHOLDER_URL: &str = "https://placeholder.invalid/";

/// What became of one element.
pub(super) enum Decoded<T> {
    /// It decoded as written.
    Clean(T),
    /// It decoded once its bad values were left out or stood in for; they were reported.
    Repaired(T, Repairs),
    /// Nothing could be made of it (not an object, or too many errors); what was found was
    /// reported.
    Failed,
}

/// How an element was made to decode, to tell which findings about it are real.
pub(super) struct Repairs {
    /// Paths whose decoding errors were reported: what stands there now says nothing.
    reported: Vec<String>,
    /// Objects in which a required field is a placeholder.
    stood_in: Vec<String>,
    /// Every path that holds a value in the element as written.
    written: HashSet<String>,
}

impl Repairs {
    /// Whether a finding at `path` on the repaired element is about what was written: not
    /// about a value already reported (or inside one), and not about a field missing next to a
    /// placeholder, since which fields an object needs can depend on it (an image creative
    /// needs a `width`, a text creative a `title`).
    pub(super) fn keeps(&self, path: &str) -> bool {
        let within = |outer: &str| {
            path.strip_prefix(outer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        let beside = |object: &str| {
            path.strip_prefix(object)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|field| !field.contains(['.', '[']))
        };
        !self.reported.iter().any(|r| within(r))
            && (self.written.contains(path) || !self.stood_in.iter().any(|o| beside(o)))
    }
}

/// Decodes the element found at `prefix` in the document, reporting each bad value by its
/// path.
pub(super) fn decode_element<T: DeserializeOwned>(
    mut item: Value,
    prefix: &str,
    errors: &mut Errors,
) -> Decoded<T> {
    let mut error = match serde_path_to_error::deserialize::<_, T>(&item) {
        Ok(value) => return Decoded::Clean(value),
        Err(e) => e,
    };
    let mut repairs = Repairs {
        reported: Vec::new(),
        stood_in: Vec::new(),
        written: written_paths(&item, prefix),
    };
    let mut placeholders: Vec<String> = Vec::new();
    for _ in 0..MAX_ATTEMPTS_PER_ELEMENT {
        let problem = Problem::of(&error);
        let path = render(prefix, &problem.at);
        let fresh = !repairs.reported.contains(&path);
        if fresh {
            errors.push(path.clone(), problem.message);
            repairs.reported.push(path.clone());
        }
        let repaired = match problem.fix {
            Fix::LeaveOut if fresh => leave_out(&mut item, &problem.at),
            // A second error at a placeholder: the placeholder does not fit.
            Fix::StandIn if !placeholders.contains(&path) => {
                placeholders.push(path);
                stand_in(&mut item, &problem.at)
            }
            _ => false,
        };
        if repaired {
            if let Some((Step::Key(_), object)) = problem.at.split_last() {
                if problem.fix == Fix::StandIn {
                    repairs.stood_in.push(render(prefix, object));
                }
            }
        } else {
            // What cannot be mended in place (a creative written as a list) may be inside a
            // list item that can be stood in for as a whole; nothing in it is checked then.
            let Some(list_item) = stand_in_enclosing_item(&mut item, &problem.at, |at| {
                !placeholders.contains(&render(prefix, at))
            }) else {
                return Decoded::Failed;
            };
            let list_item = render(prefix, &problem.at[..list_item]);
            placeholders.push(list_item.clone());
            repairs.reported.push(list_item);
        }
        error = match serde_path_to_error::deserialize::<_, T>(&item) {
            Ok(value) => return Decoded::Repaired(value, repairs),
            Err(e) => e,
        };
    }
    Decoded::Failed
}

/// One step of a path inside an element.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    /// A step serde could not name: nothing can be changed there.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fix {
    /// Remove the field: its default takes its place.
    LeaveOut,
    /// Put a placeholder there.
    StandIn,
}

/// A decoding error, as a path, a message and what to change so that decoding goes on.
struct Problem {
    at: Vec<Step>,
    message: String,
    fix: Fix,
}

impl Problem {
    fn of(e: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let mut at: Vec<Step> = e
            .path()
            .iter()
            .map(|segment| match segment {
                Segment::Seq { index } => Step::Index(*index),
                Segment::Map { key } => Step::Key(key.clone()),
                _ => Step::Unknown,
            })
            .collect();
        let message = e.inner().to_string();
        // serde_json appends " at line L column C" when it reads text; meaningless here.
        let message = match message.find(" at line ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        // serde names a missing field on its object: point at the field itself.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            at.push(Step::Key(name.to_owned()));
            return Self {
                at,
                message: "is required".to_owned(),
                fix: Fix::StandIn,
            };
        }
        let message = if message.starts_with("unknown field `") {
            "is not a known field".to_owned()
        } else {
            message
        };
        let fix = match at.last() {
            Some(Step::Index(_)) => Fix::StandIn,
            _ => Fix::LeaveOut,
        };
        Self { at, message, fix }
    }
}

/// The path of a step list below `prefix`, written as the document's paths are:
/// `campaigns[0].creatives[1].landing_url`.
fn render(prefix: &str, steps: &[Step]) -> String {
    let mut path = prefix.to_owned();
    for step in steps {
        match step {
            Step::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Index(index) => path.push_str(&format!("[{index}]")),
            Step::Unknown => path.push_str(".?"),
        }
    }
    path
}

/// Every path below `prefix` that holds a value in `value`.
fn written_paths(value: &Value, prefix: &str) -> HashSet<String> {
    fn walk(value: &Value, path: String, out: &mut HashSet<String>) {
        match value {
            Value::Object(fields) => {
                for (key, child) in fields {
                    walk(child, format!("{path}.{key}"), out);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    walk(child, format!("{path}[{index}]"), out);
                }
            }
            _ => {}
        }
        out.insert(path);
    }
    let mut out = HashSet::new();
    walk(value, prefix.to_owned(), &mut out);
    out
}

/// Removes the field at `at`; false when there is no field there.
fn leave_out(item: &mut Value, at: &[Step]) -> bool {
    let Some((Step::Key(key), parents)) = at.split_last() else {
        return false;
    };
    match node_at(item, parents) {
        Some(Value::Object(fields)) => fields.remove(key).is_some(),
        _ => false,
    }
}

/// Puts a placeholder at `at`: a required field's, or a list item's that differs from the
/// other items (so that no duplicate is made). False when none is known for that place.
fn stand_in(item: &mut Value, at: &[Step]) -> bool {
    let Some((last, parents)) = at.split_last() else {
        return false;
    };
    let list_name = match parents.last() {
        Some(Step::Key(name)) => name.clone(),
        _ => String::new(),
    };
    match (last, node_at(item, parents)) {
        (Step::Key(name), Some(Value::Object(fields))) => match field_placeholder(name) {
            Some(placeholder) => {
                fields.insert(name.clone(), placeholder);
                true
            }
            None => false,
        },
        (Step::Index(index), Some(Value::Array(items))) if *index < items.len() => {
            let free = item_placeholders(&list_name)
                .into_iter()
                .find(|candidate| !items.contains(candidate));
            match free {
                Some(placeholder) => {
                    items[*index] = placeholder;
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

/// Stands in for the innermost list item that holds `at` and was not stood in for yet
/// (`untried`); answers the length of its path.
fn stand_in_enclosing_item(
    item: &mut Value,
    at: &[Step],
    untried: impl Fn(&[Step]) -> bool,
) -> Option<usize> {
    (1..at.len())
        .rev()
        .map(|end| end + 1)
        .filter(|&end| matches!(at[end - 1], Step::Index(_)) && untried(&at[..end]))
        .find(|&end| stand_in(item, &at[..end]))
}

fn node_at<'a>(item: &'a mut Value, at: &[Step]) -> Option<&'a mut Value> {
    at.iter().try_fold(item, |node, step| match (step, node) {
        (Step::Key(key), Value::Object(fields)) => fields.get_mut(key.as_str()),
        (Step::Index(index), Value::Array(items)) => items.get_mut(*index),
        _ => None,
    })
}

/// A value that decodes as the required field `name` of whichever object of the document has
/// such a field.
fn field_placeholder(name: &str) -> Option<Value> {
    Some(match name {
        "id" | "advertiser_id" | "name" => json!(PLACEHOLDER_NAME),
        "slots" | "creatives" => json!([]),
        "format" => json!("text"),
        "landing_url" => json!(PLACEHOLDER_URL),
        "max" | "per_seconds" => json!(1),
        "from" => json!("00:00"),
        "to" => json!("24:00"),
        _ => return None,
    })
}

/// Values that decode as an item of the document's lists called `list`, in order of
/// preference.
fn item_placeholders(list: &str) -> Vec<Value> {
    match list {
        "slots" => vec![json!(PLACEHOLDER_NAME)],
        "creatives" => vec![json!({
            "id": PLACEHOLDER_NAME, "format": "text", "landing_url": PLACEHOLDER_URL
        })],
        "schedule" => vec![json!({ "from": "00:00", "to": "24:00" })],
        "days" => Day::ALL
            .iter()
            .map(|day| serde_json::to_value(day).expect("a day serialises"))
            .collect(),
        "keywords_any" | "keywords_none" | "countries" | "exclusion_labels" | "sizes" => {
            vec![json!("")]
        }
        _ => Vec::new(),
    }
}
