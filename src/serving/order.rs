//! The order in which a slot's candidates are served: tiers, highest first, each drawn by the
//! slot's rotation among its eligible campaigns, then the fallback.
//!
//! Pure and synchronous like [`crate::selection`]: everything that depends on the outside world
//! (time, the page's exclusions, delivery budgets) comes in through [`Context`].

use rand::Rng;
use smallvec::SmallVec;

use super::eligibility::{eligibility, Context};
use crate::inventory::Priority;
use crate::snapshot::{CampaignIndex, CompiledSlot, SlotMember, Snapshot};

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The chosen campaign.
    pub campaign: CampaignIndex,
    /// Index of the chosen creative in the campaign.
    pub creative: usize,
    /// The tier it was drawn from; `None` when it is the slot's fallback.
    pub tier: Option<Priority>,
    /// Where it was drawn: the tier's index in the slot and the member's in the tier; `None`
    /// for the fallback.
    pub drawn: Option<(usize, usize)>,
}

/// The candidates of a slot, in the order they would be served: the first two without
/// allocating, as most slots need no more.
pub type Drawn = SmallVec<[Choice; 2]>;

/// Chooses a campaign for the slot: the highest tier with an eligible campaign, drawn by the
/// slot's rotation, else the fallback when it is eligible itself, else nothing (no fill).
pub fn choose<R: Rng + ?Sized>(
    snapshot: &Snapshot,
    slot: &CompiledSlot,
    ctx: &Context<'_>,
    rng: &mut R,
) -> Option<Choice> {
    let choice = draw_order(snapshot, slot, ctx, rng, 1, |_| true).pop()?;
    commit(snapshot, slot, ctx, &choice, &[]);
    Some(choice)
}

/// Draws the slot's candidates one after another, each as [`choose`] would among the eligible
/// campaigns not drawn before it, until `enough` says so of the last one drawn or `limit` are
/// drawn; the fallback comes last when it is eligible and was not drawn from a tier. Nothing
/// is recorded: a smooth rotation is only peeked at (see [`commit`]).
///
/// Serving the first candidate that passes a check made later (a viewer's frequency cap, in
/// the store) is the same as drawing among the campaigns that pass it: a weighted draw without
/// replacement visits the members of any subset in proportion to their weights.
pub fn draw_order<R: Rng + ?Sized>(
    snapshot: &Snapshot,
    slot: &CompiledSlot,
    ctx: &Context<'_>,
    rng: &mut R,
    limit: usize,
    mut enough: impl FnMut(&Choice) -> bool,
) -> Drawn {
    let mut drawn = Drawn::new();
    'tiers: for (t, tier) in slot.tiers.iter().enumerate() {
        if ctx.house_only && tier.priority != Priority::House {
            continue;
        }
        let mut draw = tier.rotation.draw();
        loop {
            if drawn.len() >= limit {
                break 'tiers;
            }
            let picked = draw.next(rng, |m| {
                let member = &tier.members[m];
                !drawn.iter().any(|c| c.campaign == member.campaign)
                    && eligibility(snapshot, member, ctx).is_ok()
            });
            let Some(m) = picked else { break };
            let Some(choice) = choice(&tier.members[m], ctx, Some((t, tier.priority, m)), rng)
            else {
                break;
            };
            drawn.push(choice);
            if enough(&choice) {
                return drawn;
            }
        }
    }
    if let Some(fallback) = &slot.fallback {
        if !drawn.iter().any(|c| c.campaign == fallback.campaign)
            && eligibility(snapshot, fallback, ctx).is_ok()
        {
            drawn.extend(choice(fallback, ctx, None, rng));
        }
    }
    drawn
}

/// Records that `choice`, drawn by [`draw_order`], is served: a smooth rotation moves on, as
/// if it had picked it among the campaigns eligible in `ctx` except those `passed_over`
/// (drawn before it and refused).
pub fn commit(
    snapshot: &Snapshot,
    slot: &CompiledSlot,
    ctx: &Context<'_>,
    choice: &Choice,
    passed_over: &[CampaignIndex],
) {
    let Some((t, member)) = choice.drawn else {
        return;
    };
    let tier = &slot.tiers[t];
    tier.rotation.commit(member, |m| {
        let member = &tier.members[m];
        !passed_over.contains(&member.campaign) && eligibility(snapshot, member, ctx).is_ok()
    });
}

/// The member as chosen, with one of its creatives for the request's size (it has one: its
/// eligibility says so).
fn choice<R: Rng + ?Sized>(
    member: &SlotMember,
    ctx: &Context<'_>,
    drawn: Option<(usize, Priority, usize)>,
    rng: &mut R,
) -> Option<Choice> {
    let (creatives, table) = member.creatives_for(ctx.size)?;
    Some(Choice {
        campaign: member.campaign,
        creative: creatives[table.sample(rng)],
        tier: drawn.map(|(_, priority, _)| priority),
        drawn: drawn.map(|(t, _, m)| (t, m)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{parse_inventory, SlotName};
    use crate::serving::{PageRequest, Viewer};
    use crate::targeting::{LocalMoment, PageShown, SizeChoice};
    use chrono::{DateTime, TimeZone, Utc};
    use rand::{rngs::StdRng, SeedableRng};
    use serde_json::json;

    fn campaign(id: &str, priority: &str, weight: u32) -> serde_json::Value {
        json!({ "id": id, "advertiser_id": "a", "slots": ["Publicité 2"], "priority": priority,
                "weight": weight, "creatives": [{ "id": "c", "format": "text", "title": id,
                "landing_url": "https://a.example/" }] })
    }

    fn snapshot_of(campaigns: Vec<serde_json::Value>, advertisers: &[&str]) -> Snapshot {
        let doc = json!({
            "slots": [{ "name": "Publicité 2" }],
            "advertisers": advertisers.iter().map(|a| json!({ "id": a, "name": a })).collect::<Vec<_>>(),
            "campaigns": campaigns,
        });
        Snapshot::compile(
            1,
            parse_inventory(doc.to_string().as_bytes())
                .unwrap()
                .inventory,
        )
    }

    fn snapshot(campaigns: Vec<serde_json::Value>, fallback: Option<&str>) -> Snapshot {
        let mut house = campaign("house-ad", "house", 1);
        house["slots"] = json!(["banner"]);
        let mut all = campaigns;
        all.push(house);
        let doc = json!({
            "slots": [{ "name": "Publicité 2", "fallback": fallback }, { "name": "banner" }],
            "advertisers": [{ "id": "a", "name": "A" }],
            "campaigns": all,
        });
        let parsed = parse_inventory(doc.to_string().as_bytes()).unwrap();
        Snapshot::compile(1, parsed.inventory)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn decide(
        snapshot: &Snapshot,
        excluded: &[CampaignIndex],
        keywords: &[String],
        rng: &mut StdRng,
    ) -> Option<String> {
        let slot = snapshot
            .slot(&SlotName::parse("Publicité 2").unwrap())
            .unwrap();
        let page = page(keywords);
        let shown = PageShown::default();
        let ctx = Context {
            page: &page,
            excluded,
            shown: &shown,
            size: SizeChoice::Any,
            delivery: None,
            house_only: false,
        };
        choose(snapshot, slot, &ctx, rng)
            .map(|c| snapshot.campaign_at(c.campaign).campaign.id.to_string())
    }

    #[test]
    fn a_higher_tier_is_always_chosen_while_it_has_an_eligible_campaign() {
        let snap = snapshot(
            vec![
                campaign("sponsor", "sponsorship", 1),
                campaign("standard", "standard", 1_000_000),
            ],
            None,
        );
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1_000 {
            assert_eq!(
                decide(&snap, &[], &[], &mut rng).as_deref(),
                Some("sponsor")
            );
        }
        // With the sponsorship excluded, the standard tier is considered.
        let sponsor = snap.campaign_index[&crate::inventory::CampaignId::parse("sponsor").unwrap()];
        assert_eq!(
            decide(&snap, &[sponsor], &[], &mut rng).as_deref(),
            Some("standard")
        );
    }

    #[test]
    fn the_fallback_is_served_only_when_nothing_else_is_eligible() {
        let mut paused = campaign("paused", "standard", 1);
        paused["status"] = json!("paused");
        let snap = snapshot(vec![paused], Some("house-ad"));
        let mut rng = StdRng::seed_from_u64(2);
        assert_eq!(
            decide(&snap, &[], &[], &mut rng).as_deref(),
            Some("house-ad")
        );

        let snap = snapshot(vec![campaign("live", "standard", 1)], Some("house-ad"));
        for _ in 0..100 {
            assert_eq!(decide(&snap, &[], &[], &mut rng).as_deref(), Some("live"));
        }
    }

    #[test]
    fn no_eligible_campaign_and_no_fallback_is_no_fill() {
        let mut paused = campaign("paused", "standard", 1);
        paused["status"] = json!("paused");
        let snap = snapshot(vec![paused], None);
        assert_eq!(decide(&snap, &[], &[], &mut StdRng::seed_from_u64(3)), None);
    }

    #[test]
    fn paused_and_out_of_flight_campaigns_are_never_served() {
        let mut paused = campaign("paused", "standard", 1_000);
        paused["status"] = json!("paused");
        let mut future = campaign("future", "standard", 1_000);
        future["start"] = json!("2026-12-01T00:00:00Z");
        let mut ended = campaign("ended", "standard", 1_000);
        ended["end"] = json!("2026-11-30T12:00:00Z"); // the end is exclusive
        let snap = snapshot(
            vec![paused, future, ended, campaign("live", "standard", 1)],
            None,
        );
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 0..2_000 {
            assert_eq!(decide(&snap, &[], &[], &mut rng).as_deref(), Some("live"));
        }
    }

    #[test]
    fn keyword_targeting_requires_any_and_forbids_none() {
        let mut targeted = campaign("ukraine", "sponsorship", 1);
        targeted["targeting"] = json!({ "keywords_any": ["Ukraine"], "keywords_none": ["sport"] });
        let snap = snapshot(vec![targeted, campaign("other", "standard", 1)], None);
        let mut rng = StdRng::seed_from_u64(5);
        let kw = |words: &[&str]| {
            words
                .iter()
                .map(|w| crate::snapshot::normalize_keyword(w))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            decide(&snap, &[], &kw(&["UKRAINE"]), &mut rng).as_deref(),
            Some("ukraine")
        );
        assert_eq!(
            decide(&snap, &[], &kw(&["ukraine", "Sport"]), &mut rng).as_deref(),
            Some("other")
        );
        assert_eq!(
            decide(&snap, &[], &kw(&["politique"]), &mut rng).as_deref(),
            Some("other")
        );
    }
    /// A page request at [`now`] with these keywords, asking for no slot in particular.
    fn page(keywords: &[String]) -> PageRequest<'static> {
        PageRequest {
            slots: &[],
            sizes: SmallVec::new(),
            viewer: Viewer::default(),
            keywords: keywords.to_vec(),
            excluded: Vec::new(),
            excluded_advertisers: Vec::new(),
            country: None,
            now: now(),
            local: LocalMoment::at(now(), chrono_tz::UTC),
            today: now().date_naive(),
        }
    }

    static NOTHING_SHOWN: PageShown = PageShown::new();

    /// No keywords, no exclusion, no delivery rules.
    fn plain_context<'a>(page: &'a PageRequest<'a>) -> Context<'a> {
        Context {
            page,
            excluded: &[],
            shown: &NOTHING_SHOWN,
            size: SizeChoice::Any,
            delivery: None,
            house_only: false,
        }
    }

    #[test]
    fn weights_hold_among_the_campaigns_a_page_keeps_apart_from_what_it_shows() {
        // Two slots of one page: when the first shows "a-big", the second draws among the
        // campaigns of other advertisers only, "b" and "c", still 3:1.
        let mut campaigns = vec![
            campaign("a-big", "standard", 4),
            campaign("a-small", "standard", 2),
            campaign("b", "standard", 3),
            campaign("c", "standard", 1),
        ];
        for (c, advertiser) in campaigns.iter_mut().zip(["a", "a", "b", "c"]) {
            c["advertiser_id"] = json!(advertiser);
        }
        let snap = snapshot_of(campaigns, &["a", "b", "c"]);
        let slot = snap.slot(&SlotName::parse("Publicité 2").unwrap()).unwrap();
        let page = page(&[]);
        let a_big = snap.campaign_index[&crate::inventory::CampaignId::parse("a-big").unwrap()];
        let mut rng = StdRng::seed_from_u64(0x5e9a);
        let mut counts: std::collections::HashMap<String, u64> = Default::default();
        let mut pages = 0;
        while pages < 20_000 {
            let mut shown = PageShown::default();
            let ctx = Context {
                shown: &shown,
                ..plain_context(&page)
            };
            let first = choose(&snap, slot, &ctx, &mut rng).unwrap();
            if first.campaign != a_big {
                continue;
            }
            pages += 1;
            shown.show(snap.campaign_at(first.campaign));
            let excluded = [first.campaign];
            let ctx = Context {
                excluded: &excluded,
                shown: &shown,
                ..plain_context(&page)
            };
            let second = choose(&snap, slot, &ctx, &mut rng).unwrap();
            *counts
                .entry(snap.campaign_at(second.campaign).campaign.id.to_string())
                .or_default() += 1;
        }
        assert!(!counts.contains_key("a-small"), "{counts:?}");
        let (b, c) = (counts["b"] as f64, counts["c"] as f64);
        let n = b + c;
        let chi2 = (b - n * 0.75).powi(2) / (n * 0.75) + (c - n * 0.25).powi(2) / (n * 0.25);
        // 1 degree of freedom, p = 0.001; the seed is fixed, so the test is deterministic.
        assert!(chi2 < 10.828, "chi2 = {chi2:.2}, counts = {counts:?}");
    }

    #[test]
    fn country_schedule_and_size_rules_set_campaigns_aside() {
        let mut fr = campaign("fr", "sponsorship", 1);
        fr["targeting"] = json!({ "countries": ["FR"] });
        let mut mornings = campaign("mornings", "sponsorship", 1);
        // 2026-11-30 is a Monday; the test's time is 12:00 UTC.
        mornings["targeting"] =
            json!({ "schedule": [{ "days": ["mon"], "from": "07:00", "to": "10:00" }] });
        let snap = snapshot(vec![fr, mornings, campaign("other", "standard", 1)], None);
        let slot = snap.slot(&SlotName::parse("Publicité 2").unwrap()).unwrap();
        let verdicts = |page: &PageRequest<'_>| {
            let ctx = plain_context(page);
            slot.tiers[0]
                .members
                .iter()
                .map(|m| super::eligibility(&snap, m, &ctx).err())
                .collect::<Vec<_>>()
        };
        use crate::serving::Ineligible;
        let mut p = page(&[]);
        assert_eq!(
            verdicts(&p),
            [Some(Ineligible::Country), Some(Ineligible::Schedule)]
        );
        p.country = crate::targeting::Country::parse(b"FR");
        p.local = LocalMoment::at(now() - chrono::Duration::hours(3), chrono_tz::UTC);
        assert_eq!(verdicts(&p), [None, None]);
        p.country = crate::targeting::Country::parse(b"BE");
        assert_eq!(verdicts(&p), [Some(Ineligible::Country), None]);
    }

    fn ids(snapshot: &Snapshot, choices: &[Choice]) -> Vec<String> {
        choices
            .iter()
            .map(|c| snapshot.campaign_at(c.campaign).campaign.id.to_string())
            .collect()
    }

    #[test]
    fn candidates_are_drawn_tier_by_tier_then_the_fallback() {
        let snap = snapshot(
            vec![
                campaign("sponsor", "sponsorship", 1),
                campaign("one", "standard", 1),
                campaign("two", "standard", 1),
            ],
            Some("house-ad"),
        );
        let slot = snap.slot(&SlotName::parse("Publicité 2").unwrap()).unwrap();
        let page = page(&[]);
        let ctx = plain_context(&page);
        let mut rng = StdRng::seed_from_u64(9);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..50 {
            let order = ids(
                &snap,
                &draw_order(&snap, slot, &ctx, &mut rng, 10, |_| false),
            );
            assert_eq!(order.len(), 4, "{order:?}");
            assert_eq!(order[0], "sponsor");
            assert_eq!(order[3], "house-ad");
            orders.insert(order);
        }
        assert_eq!(orders.len(), 2, "both orders of the standard tier occur");

        // Drawing stops where asked, and a truncated draw still ends with the fallback.
        let first = draw_order(&snap, slot, &ctx, &mut rng, 10, |_| true);
        assert_eq!(ids(&snap, &first), ["sponsor"]);
        let truncated = draw_order(&snap, slot, &ctx, &mut rng, 2, |_| false);
        assert_eq!(ids(&snap, &truncated)[2], "house-ad");
    }

    #[test]
    fn serving_the_first_candidate_that_passes_a_later_check_keeps_the_weights() {
        // "capped" stands for a campaign the viewer has seen too often, found out only after
        // the draw: the others must still be served in proportion 3:2.
        let snap = snapshot(
            vec![
                campaign("capped", "standard", 5),
                campaign("three", "standard", 3),
                campaign("two", "standard", 2),
            ],
            None,
        );
        let slot = snap.slot(&SlotName::parse("Publicité 2").unwrap()).unwrap();
        let page = page(&[]);
        let ctx = plain_context(&page);
        let capped = snap.campaign_index[&crate::inventory::CampaignId::parse("capped").unwrap()];
        let mut rng = StdRng::seed_from_u64(0xf00d);
        let mut counts: std::collections::HashMap<String, u64> = Default::default();
        for _ in 0..50_000 {
            let order = draw_order(&snap, slot, &ctx, &mut rng, 10, |c| c.campaign != capped);
            let served = order.iter().find(|c| c.campaign != capped).unwrap();
            *counts
                .entry(snap.campaign_at(served.campaign).campaign.id.to_string())
                .or_default() += 1;
        }
        let (three, two) = (counts["three"] as f64, counts["two"] as f64);
        let n = three + two;
        let chi2 = (three - n * 0.6).powi(2) / (n * 0.6) + (two - n * 0.4).powi(2) / (n * 0.4);
        // 1 degree of freedom, p = 0.001; the seed is fixed, so the test is deterministic.
        assert!(chi2 < 10.828, "chi2 = {chi2:.2}, counts = {counts:?}");
        assert!(!counts.contains_key("capped"));
    }

    #[test]
    fn in_an_optimize_slot_the_first_candidate_that_passes_a_later_check_is_thompson_among_those_that_pass(
    ) {
        use crate::selection::{ThompsonRotation, Trials};
        // "capped" has the best evidence and is refused after the draw (a frequency cap): what
        // is served must be exactly Thompson sampling between the two others, whose
        // posteriors overlap (so re-drawing at each step instead would not give it).
        let doc = json!({
            "slots": [{ "name": "Publicité 2", "rotation": "optimize" }],
            "advertisers": [{ "id": "a", "name": "A" }],
            "campaigns": [campaign("capped", "standard", 1), campaign("eight", "standard", 1),
                          campaign("five", "standard", 1)],
        });
        let snap = Snapshot::compile(
            1,
            parse_inventory(doc.to_string().as_bytes())
                .unwrap()
                .inventory,
        );
        let trials = [(100, 10), (100, 8), (100, 5)].map(|(impressions, clicks)| Trials {
            impressions,
            clicks,
        });
        let slot = snap.slot(&SlotName::parse("Publicité 2").unwrap()).unwrap();
        slot.tiers[0].rotation.set_trials(&trials);
        let page = page(&[]);
        let ctx = plain_context(&page);
        let capped = snap.campaign_index[&crate::inventory::CampaignId::parse("capped").unwrap()];
        let mut rng = StdRng::seed_from_u64(0x7405);

        let decisions = 50_000;
        let mut eight = 0;
        for _ in 0..decisions {
            let order = draw_order(&snap, slot, &ctx, &mut rng, 10, |c| c.campaign != capped);
            let served = order.iter().find(|c| c.campaign != capped).unwrap();
            eight += usize::from(snap.campaign_at(served.campaign).campaign.id.as_str() == "eight");
        }

        let pair = ThompsonRotation::new(&[1, 1]);
        pair.update(&trials[1..]);
        let expected = pair.shares(&mut rng, 400_000, |_| true)[0];
        let observed = eight as f64 / decisions as f64;
        // Standard errors 0.0022 (observed) and 0.0008 (expected): 0.01 is over four of them.
        assert!(
            (observed - expected).abs() < 0.01,
            "observed {observed:.4}, Thompson between the two {expected:.4}"
        );
    }
}
