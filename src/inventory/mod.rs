//! The inventory: what can be served, as the contract's JSON document, and its validation.

mod document;
mod names;
mod urls;
mod validate;

pub use document::{
    Advertiser, Campaign, Caps, Creative, Day, Format, Frequency, Inventory, Pacing, Priority,
    Rotation, ScheduleWindow, Slot, Status, Targeting,
};
pub use names::{
    AdvertiserId, CampaignId, CreativeId, SlotName, Weight, MAX_ID_BYTES, MAX_SLOT_NAME_BYTES,
    MAX_WEIGHT,
};
pub use urls::{ImageUrl, LandingUrl};
/// The demo inventory (`config/inventory.json` at build time), compiled in: it seeds the store
/// when no inventory file is given or found, so the binary serves the demo page from anywhere.
pub const DEMO_INVENTORY: &str = include_str!("../../config/inventory.json");

pub use validate::{
    normalize_label, parse_inventory, parse_size, validate, FieldError, InvalidInventory,
    ParsedInventory,
};
