//! One inventory version compiled for serving: lookup maps and per-slot, per-tier rotation
//! tables, built once when the version loads and shared read-only by every request.

use hashbrown::HashMap;
use std::borrow::Borrow;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;

use crate::inventory::{
    normalize_label, parse_size, AdvertiserId, Campaign, CampaignId, Format, Inventory, Priority,
    Slot, SlotName,
};
use crate::selection::{AliasTable, TierRotation};
use crate::targeting::size::sort_largest_first;
use crate::targeting::{Country, Schedule, Size, SizeChoice};

/// A compiled inventory version.
#[derive(Debug)]
pub struct Snapshot {
    /// The inventory version this was compiled from.
    pub version: u64,
    /// The document itself, as the admin API returns it.
    pub document: Arc<Inventory>,
    /// Campaigns in document order, with their targeting prepared.
    pub campaigns: Vec<CompiledCampaign>,
    /// Campaign index by id.
    pub campaign_index: HashMap<CampaignId, CampaignIndex>,
    /// Advertiser index (as in [`CompiledCampaign::advertiser`]) by id: the advertisers of the
    /// inventory, then any a campaign names that the list lacks.
    pub advertiser_index: HashMap<AdvertiserId, usize>,
    /// Slots by NFC name, looked up on every request: hashbrown's default hasher is several
    /// times faster than SipHash on short keys, and lookups cannot flood it (requests insert
    /// nothing).
    pub slots: HashMap<SlotName, CompiledSlot>,
}

/// A campaign's position in one snapshot's [`Snapshot::campaigns`]: meaningful for that
/// snapshot only, which is why requests carry it rather than an id (no lookup by id per
/// candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignIndex(usize);

impl CampaignIndex {
    /// The position itself, for tables laid out like [`Snapshot::campaigns`].
    pub fn get(self) -> usize {
        self.0
    }
}

/// A campaign with what the serve path needs precomputed.
#[derive(Debug)]
pub struct CompiledCampaign {
    /// The campaign as the inventory describes it (the inventory's own).
    pub campaign: Arc<Campaign>,
    /// `keywords_any`, lower-cased NFC.
    pub keywords_any: Vec<String>,
    /// `keywords_none`, lower-cased NFC.
    pub keywords_none: Vec<String>,
    /// `targeting.countries`; empty means every country, and an unknown one.
    pub countries: Vec<Country>,
    /// `targeting.schedule`; `None` means always.
    pub schedule: Option<Schedule>,
    /// Its advertiser, as an index of [`Snapshot::advertiser_index`].
    pub advertiser: usize,
    /// `exclusion_labels`, each as an index among the inventory's distinct labels.
    pub labels: Vec<usize>,
}

/// A slot with its tiers, highest priority first.
#[derive(Debug)]
pub struct CompiledSlot {
    /// The slot as the inventory describes it.
    pub slot: Slot,
    /// Its position in the inventory's list of slots.
    pub position: usize,
    /// Tiers that have at least one campaign, highest priority first.
    pub tiers: Vec<Tier>,
    /// The fallback campaign, served when nothing else is eligible.
    pub fallback: Option<SlotMember>,
    /// `size` or `sizes`, largest first (see [`crate::targeting::select`]).
    pub sizes: Vec<Size>,
    /// Whether the slot gave `sizes` (a responsive slot) rather than one `size`.
    pub responsive: bool,
}

impl CompiledSlot {
    /// The size this slot takes for a request giving `width` CSS pixels, or none.
    pub fn size_for(&self, width: Option<u32>) -> SizeChoice {
        crate::targeting::select(&self.sizes, self.responsive, width)
    }
}

/// The campaigns of one priority tier of one slot.
#[derive(Debug)]
pub struct Tier {
    /// The tier.
    pub priority: Priority,
    /// Its campaigns, in the order of the rotation's members.
    pub members: Vec<SlotMember>,
    /// The rotation over `members`.
    pub rotation: TierRotation,
}

/// A campaign as a member of one slot: its index and the creatives it may show there.
#[derive(Debug)]
pub struct SlotMember {
    /// The campaign.
    pub campaign: CampaignIndex,
    /// Indexes into the campaign's creatives that fit the slot.
    pub creatives: Vec<usize>,
    /// Rotation among `creatives` by their weights.
    pub creative_table: AliasTable,
    /// For each of the slot's sizes: the campaign's image creatives of that size and its text
    /// and html ones, or `None` when it has none of them (it is then not eligible).
    pub by_size: Vec<Option<CreativeSet>>,
    /// For a width below every size: the text and html creatives, if any.
    pub none_fits: Option<CreativeSet>,
}

/// Some of a campaign's creatives and the rotation among them.
#[derive(Debug)]
pub struct CreativeSet {
    /// Indexes into the campaign's creatives.
    pub creatives: Vec<usize>,
    /// Rotation among `creatives` by their weights.
    pub table: AliasTable,
}

impl CreativeSet {
    fn new(campaign: &Campaign, creatives: Vec<usize>) -> Option<Self> {
        let weights: Vec<u64> = creatives
            .iter()
            .map(|&i| u64::from(campaign.creatives[i].weight.get()))
            .collect();
        let table = AliasTable::new(&weights)?;
        Some(Self { creatives, table })
    }
}

impl SlotMember {
    /// The creatives the member may show for the request's size: `None` when it has none
    /// (the campaign is then not eligible in this slot for this request).
    pub fn creatives_for(&self, size: SizeChoice) -> Option<(&[usize], &AliasTable)> {
        let set = match size {
            SizeChoice::Any => return Some((&self.creatives, &self.creative_table)),
            SizeChoice::Size(k) => self.by_size.get(k)?.as_ref()?,
            SizeChoice::NoneFits => self.none_fits.as_ref()?,
        };
        Some((&set.creatives, &set.table))
    }
}

/// Lower-cases and NFC-normalises a keyword, the form in which keywords are compared.
pub fn normalize_keyword(raw: &str) -> String {
    raw.trim().nfc().flat_map(char::to_lowercase).collect()
}

impl Snapshot {
    /// Compiles a validated inventory.
    pub fn compile(version: u64, inventory: Inventory) -> Self {
        Self::compile_shared(version, Arc::new(inventory))
    }

    /// [`Self::compile`] for an inventory that something else reads meanwhile (the admin API
    /// writes it to the store while it compiles).
    pub fn compile_shared(version: u64, inventory: Arc<Inventory>) -> Self {
        let mut advertiser_index: HashMap<AdvertiserId, usize> = HashMap::new();
        let known = inventory.advertisers.iter().map(|a| &a.id);
        for id in known.chain(inventory.campaigns.iter().map(|c| &c.advertiser_id)) {
            let next = advertiser_index.len();
            advertiser_index.entry(id.clone()).or_insert(next);
        }
        let mut label_index: HashMap<String, usize> = HashMap::new();
        let campaigns: Vec<CompiledCampaign> = inventory
            .campaigns
            .iter()
            .map(|campaign| CompiledCampaign {
                countries: campaign
                    .targeting
                    .countries
                    .iter()
                    .filter_map(|code| Country::parse(code.as_bytes()))
                    .collect(),
                schedule: Schedule::compile(&campaign.targeting.schedule),
                advertiser: advertiser_index[&campaign.advertiser_id],
                labels: campaign
                    .exclusion_labels
                    .iter()
                    .map(|label| {
                        let next = label_index.len();
                        *label_index.entry(normalize_label(label)).or_insert(next)
                    })
                    .collect(),
                campaign: Arc::clone(campaign),
                keywords_any: campaign
                    .targeting
                    .keywords_any
                    .iter()
                    .map(|k| normalize_keyword(k))
                    .collect(),
                keywords_none: campaign
                    .targeting
                    .keywords_none
                    .iter()
                    .map(|k| normalize_keyword(k))
                    .collect(),
            })
            .collect();
        let campaign_index: HashMap<CampaignId, CampaignIndex> = campaigns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.campaign.id.clone(), CampaignIndex(i)))
            .collect();
        // Each slot's campaigns in document order, in one pass over the campaigns rather than
        // one per slot and tier (seconds, with 100 000 campaigns and a few dozen slots).
        let mut in_slot: HashMap<&SlotName, Vec<CampaignIndex>> = HashMap::new();
        for (i, campaign) in campaigns.iter().enumerate() {
            for name in &campaign.campaign.slots {
                let members = in_slot.entry(name).or_default();
                if members.last() != Some(&CampaignIndex(i)) {
                    members.push(CampaignIndex(i));
                }
            }
        }
        let slots = inventory
            .slots
            .iter()
            .enumerate()
            .map(|(position, slot)| {
                let members = in_slot.get(&slot.name).map_or(&[][..], Vec::as_slice);
                (
                    slot.name.clone(),
                    compile_slot(slot, position, &campaigns, members, &campaign_index),
                )
            })
            .collect();
        drop(in_slot);
        Self {
            version,
            document: inventory,
            campaigns,
            campaign_index,
            advertiser_index,
            slots,
        }
    }

    /// The slot of that name: a [`SlotName`], or NFC text (see [`SlotName::normalize`]).
    pub fn slot(&self, name: &(impl Borrow<str> + ?Sized)) -> Option<&CompiledSlot> {
        self.slots.get(Borrow::<str>::borrow(name))
    }

    /// The id of the advertiser at `index` of [`Self::advertiser_index`] (a scan: for
    /// `explain`, not the serve path).
    pub fn advertiser_id(&self, index: usize) -> Option<&AdvertiserId> {
        self.advertiser_index
            .iter()
            .find(|(_, &i)| i == index)
            .map(|(id, _)| id)
    }

    /// The campaign of that id: a [`CampaignId`], or its text.
    pub fn campaign(&self, id: &(impl Borrow<str> + ?Sized)) -> Option<&CompiledCampaign> {
        self.campaign_index
            .get(Borrow::<str>::borrow(id))
            .map(|&i| self.campaign_at(i))
    }

    /// The campaign at that index.
    pub fn campaign_at(&self, index: CampaignIndex) -> &CompiledCampaign {
        &self.campaigns[index.0]
    }
}

/// Compiles `slot`, whose campaigns are `in_slot`, in document order.
fn compile_slot(
    slot: &Slot,
    position: usize,
    campaigns: &[CompiledCampaign],
    in_slot: &[CampaignIndex],
    index: &HashMap<CampaignId, CampaignIndex>,
) -> CompiledSlot {
    let size = slot.size.as_deref().and_then(parse_size);
    let mut sizes: Vec<Size> = slot
        .size
        .iter()
        .chain(&slot.sizes)
        .filter_map(|s| Size::parse(s))
        .collect();
    sort_largest_first(&mut sizes);
    let tiers = Priority::ALL
        .iter()
        .filter_map(|&priority| {
            let in_tier = |i: &&CampaignIndex| campaigns[i.0].campaign.priority == priority;
            // Sized before it fills: a slot of a large inventory has tens of thousands of
            // members, which a growing vector would copy again and again.
            let mut members = Vec::with_capacity(in_slot.iter().filter(in_tier).count());
            members.extend(
                in_slot
                    .iter()
                    .filter(in_tier)
                    .map(|&i| member(i, &campaigns[i.0].campaign, size, &sizes)),
            );
            let weights = members
                .iter()
                .map(|m| u64::from(campaigns[m.campaign.0].campaign.weight.get()))
                .collect();
            let rotation = TierRotation::new(weights, slot.rotation)?;
            Some(Tier {
                priority,
                members,
                rotation,
            })
        })
        .collect();
    let fallback = slot
        .fallback
        .as_ref()
        .and_then(|id| index.get(id))
        .map(|&i| member(i, &campaigns[i.0].campaign, size, &sizes));
    CompiledSlot {
        slot: slot.clone(),
        position,
        tiers,
        fallback,
        responsive: !slot.sizes.is_empty(),
        sizes,
    }
}

/// Chooses the creatives a campaign shows in a slot: those that fit it (images of exactly the
/// slot's size; text and html, which adapt to any size), or all of them when none fits or the
/// slot has no size; and, for requests that give a width, those of each of the slot's sizes.
fn member(
    index: CampaignIndex,
    campaign: &Campaign,
    size: Option<(u32, u32)>,
    sizes: &[Size],
) -> SlotMember {
    let adapts = |i: &usize| campaign.creatives[*i].format != Format::Image;
    let of_size = |s: &Size| {
        let fitting = (0..campaign.creatives.len())
            .filter(|i| {
                let c = &campaign.creatives[*i];
                adapts(i) || (c.width == Some(s.width) && c.height == Some(s.height))
            })
            .collect();
        CreativeSet::new(campaign, fitting)
    };
    let by_size = sizes.iter().map(of_size).collect();
    let none_fits = CreativeSet::new(
        campaign,
        (0..campaign.creatives.len()).filter(adapts).collect(),
    );
    let fits = |i: &usize| {
        let c = &campaign.creatives[*i];
        match size {
            None => true,
            Some((w, h)) => {
                c.format != Format::Image || (c.width == Some(w) && c.height == Some(h))
            }
        }
    };
    let all: Vec<usize> = (0..campaign.creatives.len()).collect();
    let sized: Vec<usize> = all.iter().copied().filter(fits).collect();
    let creatives = if sized.is_empty() { all } else { sized };
    let weights: Vec<u64> = creatives
        .iter()
        .map(|&i| u64::from(campaign.creatives[i].weight.get()))
        .collect();
    let creative_table =
        AliasTable::new(&weights).expect("validation guarantees at least one creative");
    SlotMember {
        campaign: index,
        creatives,
        creative_table,
        by_size,
        none_fits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::parse_inventory;
    use serde_json::json;

    fn image(id: &str, w: u32, h: u32) -> serde_json::Value {
        json!({ "id": id, "format": "image", "image_url": "/creatives/x.svg", "width": w,
                "height": h, "landing_url": "https://a.example/" })
    }

    fn compile(doc: serde_json::Value) -> Snapshot {
        Snapshot::compile(
            1,
            parse_inventory(doc.to_string().as_bytes())
                .unwrap()
                .inventory,
        )
    }

    #[test]
    fn a_responsive_slot_keeps_each_campaigns_creatives_of_each_size() {
        let snap = compile(json!({
            "slots": [{ "name": "banner", "sizes": ["320x50", "728x90"] }],
            "advertisers": [{ "id": "a", "name": "A" }],
            "campaigns": [
                { "id": "both", "advertiser_id": "a", "slots": ["banner"],
                  "creatives": [image("big", 728, 90), image("small", 320, 50)] },
                { "id": "desktop", "advertiser_id": "a", "slots": ["banner"],
                  "creatives": [image("big", 728, 90)] },
                { "id": "text", "advertiser_id": "a", "slots": ["banner"],
                  "creatives": [{ "id": "t", "format": "text", "title": "T",
                                  "landing_url": "https://a.example/" }] }
            ]
        }));
        let slot = snap.slot("banner").unwrap();
        assert_eq!(
            slot.sizes.iter().map(Size::label).collect::<Vec<_>>(),
            ["728x90", "320x50"]
        );
        let members = &slot.tiers[0].members;
        let ids = |m: &SlotMember, size: SizeChoice| {
            m.creatives_for(size).map(|(creatives, _)| {
                creatives
                    .iter()
                    .map(|&i| {
                        snap.campaign_at(m.campaign).campaign.creatives[i]
                            .id
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
        };
        let phone = slot.size_for(Some(400));
        let desktop = slot.size_for(Some(1000));
        assert_eq!(ids(&members[0], desktop), Some(vec!["big".into()]));
        assert_eq!(ids(&members[0], phone), Some(vec!["small".into()]));
        assert_eq!(ids(&members[1], phone), None, "no creative of that size");
        assert_eq!(ids(&members[2], phone), Some(vec!["t".into()]));
        assert_eq!(
            ids(&members[2], slot.size_for(Some(100))),
            Some(vec!["t".into()])
        );
        assert_eq!(ids(&members[0], slot.size_for(Some(100))), None);
        assert_eq!(
            ids(&members[0], slot.size_for(None)),
            Some(vec!["big".into()])
        );
    }

    #[test]
    fn advertisers_and_labels_are_compiled_to_indexes() {
        let snap = compile(json!({
            "slots": [{ "name": "s" }],
            "advertisers": [{ "id": "a", "name": "A" }, { "id": "b", "name": "B" }],
            "campaigns": [
                { "id": "one", "advertiser_id": "b", "slots": ["s"], "exclusion_labels": ["Auto"],
                  "targeting": { "countries": ["fr", "BE"],
                                 "schedule": [{ "from": "07:00", "to": "10:00" }] },
                  "creatives": [image("i", 1, 1)] },
                { "id": "two", "advertiser_id": "a", "slots": ["s"],
                  "exclusion_labels": ["banque", "auto"], "creatives": [image("i", 1, 1)] }
            ]
        }));
        let (one, two) = (&snap.campaigns[0], &snap.campaigns[1]);
        assert_eq!(
            one.advertiser,
            snap.advertiser_index[&AdvertiserId::parse("b").unwrap()]
        );
        assert_ne!(one.advertiser, two.advertiser);
        assert_eq!(one.labels, [0]);
        assert_eq!(two.labels, [1, 0], "labels compare without case");
        assert_eq!(
            one.countries
                .iter()
                .map(Country::as_str)
                .collect::<Vec<_>>(),
            ["FR", "BE"]
        );
        assert!(one.schedule.is_some() && two.schedule.is_none());
    }
}
