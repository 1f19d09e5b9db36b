//! The inventory document of the contract (section 1), as serde types.
//!
//! Every struct rejects unknown fields: a typo in an operator's JSON must fail loudly, not
//! silently drop a cap.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::{AdvertiserId, CampaignId, CreativeId, SlotName, Weight};
use super::urls::{ImageUrl, LandingUrl};

/// The whole inventory: what `config/inventory.json` holds and the admin API reads and writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Ad slots, by the publisher's names.
    #[serde(default)]
    pub slots: Vec<Slot>,
    /// Advertisers owning campaigns.
    #[serde(default)]
    pub advertisers: Vec<Advertiser>,
    /// Campaigns that can be served; shared with the snapshots compiled from the inventory,
    /// so that compiling a large inventory copies none of them.
    #[serde(default)]
    pub campaigns: Vec<Arc<Campaign>>,
}

/// How a slot draws among its eligible campaigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// Each decision draws with probability weight / sum of eligible weights.
    #[default]
    WeightedRandom,
    /// Deterministic smooth weighted round robin (nginx's upstream rotation).
    Smooth,
    /// Thompson sampling on each campaign's click-through rate in the slot, times its weight.
    Optimize,
}

/// One ad slot of the publisher's pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// The editors' name of the slot.
    pub name: SlotName,
    /// The rotation mode.
    #[serde(default)]
    pub rotation: Rotation,
    /// The slot's size as `WIDTHxHEIGHT`; image creatives of that size are preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Instead of `size`: the sizes the slot can take (`["728x90", "320x50"]`); the request's
    /// width selects the largest that fits, and image creatives of that size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<String>,
    /// The campaign served when nothing else is eligible (usually the house ad).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<CampaignId>,
}

/// An advertiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advertiser {
    /// The advertiser's identifier.
    pub id: AdvertiserId,
    /// The advertiser's display name.
    pub name: String,
}

/// Whether a campaign may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Served when otherwise eligible.
    #[default]
    Active,
    /// Never served.
    Paused,
}

/// Priority tiers, highest first: a lower tier is considered only when no campaign of a higher
/// tier is eligible.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Sold sponsorships, served before anything else.
    Sponsorship,
    /// Ordinary paid campaigns.
    #[default]
    Standard,
    /// The publisher's own ads.
    House,
}

impl Priority {
    /// Every tier, highest first.
    pub const ALL: [Priority; 3] = [Priority::Sponsorship, Priority::Standard, Priority::House];

    /// The tier's name in the inventory document.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Sponsorship => "sponsorship",
            Priority::Standard => "standard",
            Priority::House => "house",
        }
    }
}

/// How a capped campaign spreads its delivery over its flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// As fast as the caps allow.
    #[default]
    Asap,
    /// Evenly over the flight: a campaign ahead of its line yields to the others.
    Even,
}

/// Delivery caps; `null` means uncapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    /// Lifetime cap on impressions (served decisions, see the README).
    #[serde(default)]
    pub total_impressions: Option<u64>,
    /// Cap per reporting day.
    #[serde(default)]
    pub daily_impressions: Option<u64>,
    /// Lifetime cap on clicks.
    #[serde(default)]
    pub total_clicks: Option<u64>,
}

impl Caps {
    /// Whether any cap applies: only such a campaign has a budget
    /// ([`crate::delivery::Budgets`]).
    pub fn any(&self) -> bool {
        self.total_impressions.is_some()
            || self.daily_impressions.is_some()
            || self.total_clicks.is_some()
    }
}

/// A frequency cap: at most `max` decisions per viewer per `per_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frequency {
    /// Decisions allowed in the window.
    pub max: u32,
    /// The window's length in seconds.
    pub per_seconds: u64,
}

/// Keyword targeting, matched case-insensitively after NFC normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Targeting {
    /// At least one of these must be among the request's keywords (empty: no requirement).
    #[serde(default)]
    pub keywords_any: Vec<String>,
    /// None of these may be among the request's keywords.
    #[serde(default)]
    pub keywords_none: Vec<String>,
    /// ISO 3166-1 alpha-2 codes: when given, the request's country must be one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Day-parting in the reporting time zone: when given, the campaign is served only inside
    /// one of these windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleWindow>,
}

/// A day of the week, as the inventory spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    /// Every day, Monday first.
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];
}

/// One day-parting window: from `from` (included) to `to` (excluded), local time, starting on
/// each of `days`. A `to` earlier than `from` runs across midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindow {
    /// The days on which the window opens; every day when left out.
    #[serde(default = "every_day")]
    pub days: Vec<Day>,
    /// Opening time, `HH:MM`.
    pub from: String,
    /// Closing time, `HH:MM` (or `24:00`), excluded.
    pub to: String,
}

fn every_day() -> Vec<Day> {
    Day::ALL.to_vec()
}

/// A campaign: what an advertiser bought.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// The campaign's identifier.
    pub id: CampaignId,
    /// The advertiser it belongs to.
    pub advertiser_id: AdvertiserId,
    /// `active` or `paused`.
    #[serde(default)]
    pub status: Status,
    /// The slots it may be served in.
    pub slots: Vec<SlotName>,
    /// Its weight in rotation among campaigns of the same tier.
    #[serde(default)]
    pub weight: Weight,
    /// Its priority tier.
    #[serde(default)]
    pub priority: Priority,
    /// Start of the flight; `null` means already started.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// End of the flight (exclusive); `null` means open-ended.
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    /// Delivery caps.
    #[serde(default)]
    pub caps: Caps,
    /// Pacing over the flight.
    #[serde(default)]
    pub pacing: Pacing,
    /// Per-viewer frequency cap.
    #[serde(default)]
    pub frequency: Option<Frequency>,
    /// Keyword, country and day-parting targeting.
    #[serde(default)]
    pub targeting: Targeting,
    /// Competitive separation: a page never shows two campaigns sharing one of these labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusion_labels: Vec<String>,
    /// The creatives, rotated by their own weights.
    pub creatives: Vec<Creative>,
}

/// The kind of a creative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// An image with a link.
    Image,
    /// A text ad.
    Text,
    /// HTML markup, served only inside a sandboxed iframe.
    Html,
}

/// One creative of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Creative {
    /// The creative's identifier, unique within its campaign.
    pub id: CreativeId,
    /// Its format.
    pub format: Format,
    /// A title (required for text creatives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Body text of a text creative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The image's URL (image creatives), normalised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    /// The image's alternative text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt: Option<String>,
    /// Width in CSS pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in CSS pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// HTML markup (html creatives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Where a click leads; `http` or `https` only, normalised.
    pub landing_url: LandingUrl,
    /// Weight among the campaign's creatives.
    #[serde(default)]
    pub weight: Weight,
}
