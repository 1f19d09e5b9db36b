//! One inventory version compiled for serving: lookup maps and per-slot, per-tier rotation
//! tables, built once when the version loads and shared read-only by every request.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;

use crate::inventory::{
    parse_size, Campaign, CampaignId, Format, Inventory, Priority, Slot, SlotName,
};
use crate::selection::{AliasTable, TierRotation};

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
    /// Slots by NFC name, looked up on every request: hashbrown's default hasher is several
    /// times faster than SipHash on short keys, and lookups cannot flood it (requests insert
    /// nothing).
    pub slots: hashbrown::HashMap<SlotName, CompiledSlot>,
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
    /// The campaign as the inventory describes it.
    pub campaign: Campaign,
    /// `keywords_any`, lower-cased NFC.
    pub keywords_any: Vec<String>,
    /// `keywords_none`, lower-cased NFC.
    pub keywords_none: Vec<String>,
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
}

/// Lower-cases and NFC-normalises a keyword, the form in which keywords are compared.
pub fn normalize_keyword(raw: &str) -> String {
    raw.trim().nfc().flat_map(char::to_lowercase).collect()
}

impl Snapshot {
    /// Compiles a validated inventory.
    pub fn compile(version: u64, inventory: Inventory) -> Self {
        let campaigns: Vec<CompiledCampaign> = inventory
            .campaigns
            .iter()
            .map(|campaign| CompiledCampaign {
                campaign: campaign.clone(),
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
        let slots = inventory
            .slots
            .iter()
            .enumerate()
            .map(|(position, slot)| {
                (
                    slot.name.clone(),
                    compile_slot(slot, position, &campaigns, &campaign_index),
                )
            })
            .collect();
        Self {
            version,
            document: Arc::new(inventory),
            campaigns,
            campaign_index,
            slots,
        }
    }

    /// The slot of that name: a [`SlotName`], or NFC text (see [`SlotName::normalize`]).
    pub fn slot(&self, name: &(impl Borrow<str> + ?Sized)) -> Option<&CompiledSlot> {
        self.slots.get(Borrow::<str>::borrow(name))
    }

    /// The campaign of that id.
    pub fn campaign(&self, id: &CampaignId) -> Option<&CompiledCampaign> {
        self.campaign_index.get(id).map(|&i| self.campaign_at(i))
    }

    /// The campaign at that index.
    pub fn campaign_at(&self, index: CampaignIndex) -> &CompiledCampaign {
        &self.campaigns[index.0]
    }
}

fn compile_slot(
    slot: &Slot,
    position: usize,
    campaigns: &[CompiledCampaign],
    index: &HashMap<CampaignId, CampaignIndex>,
) -> CompiledSlot {
    let size = slot.size.as_deref().and_then(parse_size);
    let tiers = Priority::ALL
        .iter()
        .filter_map(|&priority| {
            let members: Vec<SlotMember> = campaigns
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.campaign.priority == priority && c.campaign.slots.contains(&slot.name)
                })
                .map(|(i, c)| member(CampaignIndex(i), &c.campaign, size))
                .collect();
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
        .map(|&i| member(i, &campaigns[i.0].campaign, size));
    CompiledSlot {
        slot: slot.clone(),
        position,
        tiers,
        fallback,
    }
}

/// Chooses the creatives a campaign shows in a slot: those that fit it (images of exactly the
/// slot's size; text and html, which adapt to any size), or all of them when none fits or the
/// slot has no size.
fn member(index: CampaignIndex, campaign: &Campaign, size: Option<(u32, u32)>) -> SlotMember {
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
    }
}
