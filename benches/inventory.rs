//! Criterion benchmarks of what an inventory write costs before it is served: parsing and
//! validating a 100 000-campaign document, and compiling it into a snapshot.
//!
//! The document is built here, in the shape of `scripts/gen-inventory.py`'s lean profile
//! (36 slots, 50 campaigns per advertiser, one short creative each, a frequency cap and caps on
//! some); `scripts/loadtest.sh` measures the whole PUT with the realistic profile.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use regie::inventory::parse_inventory;
use regie::snapshot::Snapshot;
use serde_json::{json, Value};

const CAMPAIGNS: usize = 100_000;
const SLOTS: usize = 36;

fn document() -> Vec<u8> {
    let slot = |i: usize| format!("section-{}-{}", i / 3, i % 3);
    let campaign = |i: usize| {
        let mut c = json!({
            "id": format!("c-{i}"),
            "advertiser_id": format!("a-{}", i / 50),
            "slots": [slot(i % SLOTS)],
            "weight": 1 + i % 100,
            "creatives": [{ "id": "t", "format": "text", "title": format!("Offre {i}"),
                            "landing_url": format!("https://a{}.example/offre/{i}", i / 50) }],
        });
        if i % 33 == 0 {
            c["frequency"] = json!({ "max": 3, "per_seconds": 86_400 });
            c["caps"] = json!({ "total_impressions": 100_000, "daily_impressions": 5_000 });
        }
        c
    };
    let doc = json!({
        "slots": (0..SLOTS).map(|i| json!({ "name": slot(i) })).collect::<Vec<Value>>(),
        "advertisers": (0..CAMPAIGNS / 50)
            .map(|a| json!({ "id": format!("a-{a}"), "name": format!("Annonceur {a}") }))
            .collect::<Vec<Value>>(),
        "campaigns": (0..CAMPAIGNS).map(campaign).collect::<Vec<Value>>(),
    });
    serde_json::to_vec(&doc).expect("serialises")
}

fn inventory(c: &mut Criterion) {
    let bytes = document();
    let mut group = c.benchmark_group("inventory_100000_campaigns");
    group.sample_size(10);
    group.bench_function("parse_and_validate", |b| {
        b.iter(|| parse_inventory(black_box(&bytes)).expect("valid"))
    });
    let inventory = parse_inventory(&bytes).expect("valid").inventory;
    group.bench_function("compile", |b| {
        b.iter_batched(
            || inventory.clone(),
            |inventory| Snapshot::compile(1, inventory),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, inventory);
criterion_main!(benches);
