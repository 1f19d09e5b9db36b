//! The inventory: what can be served, as the contract's JSON document, and its validation.

mod document;
mod names;
mod validate;

pub use document::{
    Advertiser, Campaign, Caps, Creative, Day, Format, Frequency, Inventory, Pacing, Priority,
    Rotation, ScheduleWindow, Slot, Status, Targeting,
};
pub use names::{Id, SlotName, Weight, MAX_ID_BYTES, MAX_SLOT_NAME_BYTES, MAX_WEIGHT};
pub use validate::{
    normalize_label, parse_inventory, parse_size, validate, FieldError, InvalidInventory,
    ParsedInventory,
};
