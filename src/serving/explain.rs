//! `explain=1`: why each campaign of a slot was or was not eligible, and how the draw would go.
//! A dry run: nothing is counted, no budget is taken, no frequency reservation is made.

use serde_json::{json, Value};

use super::budget::RequestDelivery;
use super::{draw_order, eligibility, Context, PageRequest};
use crate::snapshot::{CompiledSlot, SlotMember, Snapshot};
use crate::targeting::SizeChoice;

fn entry(snapshot: &Snapshot, member: &SlotMember, ctx: &Context<'_>) -> (bool, Value) {
    let campaign = &snapshot.campaign_at(member.campaign).campaign;
    let verdict = eligibility(snapshot, member, ctx);
    let value = json!({
        "campaign_id": campaign.id.as_str(),
        "weight": campaign.weight.get(),
        "eligible": verdict.is_ok(),
        "reason": verdict.err(),
    });
    (verdict.is_ok(), value)
}

/// The explanation of one slot's decision for this request.
pub(super) fn explain(
    snapshot: &Snapshot,
    slot: &CompiledSlot,
    size: SizeChoice,
    page: &PageRequest<'_>,
    delivery: &RequestDelivery<'_>,
) -> Value {
    let shown = page.shown();
    let ctx = Context {
        page,
        excluded: &page.excluded,
        shown: &shown,
        size,
        delivery: Some(delivery),
        house_only: false,
    };
    let mut chosen_tier: Option<&str> = None;
    let tiers: Vec<Value> = slot
        .tiers
        .iter()
        .map(|tier| {
            let entries: Vec<(bool, Value)> = tier
                .members
                .iter()
                .map(|m| entry(snapshot, m, &ctx))
                .collect();
            let eligible_weight: u64 = entries
                .iter()
                .filter(|(ok, _)| *ok)
                .map(|(_, v)| v["weight"].as_u64().unwrap_or(0))
                .sum();
            if eligible_weight > 0 && chosen_tier.is_none() {
                chosen_tier = Some(tier.priority.as_str());
            }
            let eligible: Vec<bool> = entries.iter().map(|(ok, _)| *ok).collect();
            let thompson = tier
                .rotation
                .thompson()
                .map(|rotation| crate::optimize::explain_shares(rotation, &eligible));
            let campaigns: Vec<Value> = entries
                .into_iter()
                .enumerate()
                .map(|(m, (ok, mut v))| {
                    let share = if ok && eligible_weight > 0 {
                        v["weight"].as_u64().unwrap_or(0) as f64 / eligible_weight as f64
                    } else {
                        0.0
                    };
                    v["probability"] = json!(share);
                    if let Some((rotation, estimate)) =
                        tier.rotation.thompson().zip(thompson.as_ref())
                    {
                        estimate.describe(rotation, m, &mut v);
                    }
                    v
                })
                .collect();
            let mut tier_value = json!({
                "priority": tier.priority.as_str(),
                "considered": chosen_tier.is_none() || chosen_tier == Some(tier.priority.as_str()),
                "eligible_weight": eligible_weight,
                "campaigns": campaigns,
            });
            if let Some(estimate) = &thompson {
                tier_value["share_estimate"] = estimate.method();
            }
            tier_value
        })
        .collect();
    let fallback = slot.fallback.as_ref().map(|m| entry(snapshot, m, &ctx).1);
    if chosen_tier.is_none() && fallback.as_ref().is_some_and(|f| f["eligible"] == true) {
        chosen_tier = Some("fallback");
    }
    // The draw itself, without taking budget, counting anything or moving a smooth rotation.
    let preview = draw_order(snapshot, slot, &ctx, &mut rand::rng(), 1, |_| true)
        .pop()
        .map(|choice| {
            let campaign = &snapshot.campaign_at(choice.campaign).campaign;
            json!({
                "campaign_id": campaign.id.as_str(),
                "creative_id": campaign.creatives[choice.creative].id.as_str(),
                "tier": choice.tier.map_or("fallback", |t| t.as_str()),
            })
        });
    json!({
        "decision": preview,
        "dry_run": true,
        "explain": {
            "slot": slot.slot.name.as_str(),
            "rotation": slot.slot.rotation,
            "now": page.now,
            "keywords": page.keywords,
            "excluded": page.excluded.iter().map(|&i| snapshot.campaign_at(i).campaign.id.as_str()).collect::<Vec<_>>(),
            "excluded_advertisers": page.excluded_advertisers.iter().filter_map(|&i| snapshot.advertiser_id(i)).map(|id| id.as_str()).collect::<Vec<_>>(),
            "country": page.country,
            "size": match size {
                SizeChoice::Any => Value::Null,
                SizeChoice::Size(k) => json!(slot.sizes[k].label()),
                SizeChoice::NoneFits => json!("none_fits"),
            },
            "tracking_refused": page.viewer.refused_tracking,
            "frequency_capping": delivery.frequency_checked(),
            "chosen_tier": chosen_tier,
            "tiers": tiers,
            "fallback": fallback,
        }
    })
}
