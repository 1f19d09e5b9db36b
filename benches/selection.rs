//! Criterion benchmarks of the pure serve path: one tier's rotation (`weighted_random`, `smooth`,
//! `optimize`) and a whole slot decision, with 10, 1 000 and 100 000 campaigns in the slot.

use chrono::{TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use regie::inventory::{parse_inventory, CampaignId, Rotation, SlotName};
use regie::selection::{TierRotation, Trials};
use regie::serving::{choose, Context, PageRequest, Viewer};
use regie::snapshot::Snapshot;
use regie::targeting::{Country, LocalMoment, PageShown, SizeChoice};
use serde_json::json;

const SIZES: [usize; 3] = [10, 1_000, 100_000];

fn snapshot(campaigns: usize) -> Snapshot {
    let doc = json!({
        "slots": [{ "name": "Publicité 2" }],
        "advertisers": [{ "id": "a", "name": "A" }],
        "campaigns": (0..campaigns).map(|i| json!({
            "id": format!("c{i}"), "advertiser_id": "a", "slots": ["Publicité 2"],
            "weight": 1 + (i % 100),
            "creatives": [{ "id": "t", "format": "text", "title": "T", "landing_url": "https://a.example/" }]
        })).collect::<Vec<_>>(),
    });
    let parsed = parse_inventory(doc.to_string().as_bytes()).expect("valid inventory");
    Snapshot::compile(1, parsed.inventory)
}

fn rotation(c: &mut Criterion) {
    let mut group = c.benchmark_group("tier_rotation");
    for &n in &SIZES {
        let weights: Vec<u64> = (0..n as u64).map(|i| 1 + i % 100).collect();
        let random = TierRotation::new(weights.clone(), Rotation::WeightedRandom).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        group.bench_with_input(BenchmarkId::new("weighted_random", n), &n, |b, _| {
            b.iter(|| random.pick(&mut rng, |_| true))
        });
        // Half the tier ineligible: rejection sampling, then the scan when unlucky.
        group.bench_with_input(
            BenchmarkId::new("weighted_random_half_eligible", n),
            &n,
            |b, _| b.iter(|| random.pick(&mut rng, |i| i % 2 == 0)),
        );
        if n <= 1_000 {
            // Smooth rotation is O(n) per pick by design; 100 000 members is not its use case.
            let smooth = TierRotation::new(weights.clone(), Rotation::Smooth).unwrap();
            group.bench_with_input(BenchmarkId::new("smooth", n), &n, |b, _| {
                b.iter(|| smooth.pick(&mut rng, |_| true))
            });
            // Thompson sampling draws one Beta variate per eligible member: O(n) too. The
            // counts stand for a slot that has run a while (1 000 to 100 000 impressions,
            // click-through rates of 0.1 % to 5 %), which is when the Beta sampler works hardest.
            let optimize = TierRotation::new(weights, Rotation::Optimize).unwrap();
            let trials: Vec<Trials> = (0..n as u64)
                .map(|i| {
                    let impressions = 1_000 + (i * 7_919) % 99_000;
                    Trials {
                        impressions,
                        clicks: impressions * (1 + i % 50) / 1_000,
                    }
                })
                .collect();
            optimize.set_trials(&trials);
            group.bench_with_input(BenchmarkId::new("optimize", n), &n, |b, _| {
                b.iter(|| optimize.pick(&mut rng, |_| true))
            });
        }
    }
    group.finish();
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("slot_decision");
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    let slot_name = SlotName::parse("Publicité 2").unwrap();
    for &n in &SIZES {
        let snap = snapshot(n);
        let slot = snap.slot(&slot_name).unwrap();
        let excluded: Vec<_> = ["c0", "c1", "c2"]
            .iter()
            .map(|id| snap.campaign_index[&CampaignId::parse(id).unwrap()])
            .collect();
        let page = PageRequest {
            slots: &[slot],
            sizes: [SizeChoice::Any].into(),
            viewer: Viewer::default(),
            keywords: vec!["politique".to_owned()],
            excluded: excluded.clone(),
            excluded_advertisers: Vec::new(),
            country: Country::parse(b"FR"),
            now,
            local: LocalMoment::at(now, chrono_tz::UTC),
            today: now.date_naive(),
        };
        let shown = PageShown::default();
        let ctx = Context {
            page: &page,
            excluded: &excluded,
            shown: &shown,
            size: SizeChoice::Any,
            delivery: None,
            house_only: false,
        };
        let mut rng = SmallRng::seed_from_u64(2);
        group.bench_with_input(BenchmarkId::new("choose", n), &n, |b, _| {
            b.iter(|| black_box(choose(&snap, slot, &ctx, &mut rng)))
        });
    }
    group.finish();
}

criterion_group!(benches, rotation, decision);
criterion_main!(benches);
