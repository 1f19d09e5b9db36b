//! The cost of a frequency state the browser keeps, per decision: opening what the client
//! sent, checking a campaign's cap, counting its view and sealing the state for the answer.
//! A new viewer sends an empty state (nothing to verify); a returning one, a state of a few
//! campaigns.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use regie::inventory::CampaignId;
use regie::serving::FrequencyState;
use regie::store::FrequencyCap;
use regie::tracking::Signer;
use secrecy::SecretString;

const NOW_MS: i64 = 1_764_547_200_000;

fn decision(signer: &Signer, sent: &str, campaign: &CampaignId, cap: FrequencyCap) -> String {
    let mut state = FrequencyState::open(signer, sent, NOW_MS);
    if state.allows(campaign, cap, NOW_MS) {
        state.record(campaign, cap, NOW_MS);
    }
    state.seal(signer)
}

fn kept_state(c: &mut Criterion) {
    let signer = Signer::from_setting(&SecretString::from(
        "k1:0123456789abcdef0123456789abcdef".to_owned(),
    ))
    .unwrap();
    let cap = FrequencyCap {
        max: 3,
        window_ms: 86_400_000,
    };
    let campaign = CampaignId::parse("3vision-visitez").unwrap();
    // A viewer served three other capped campaigns twice each over the last hours.
    let mut returning = FrequencyState::default();
    for other in [
        "atelier-noel",
        "3vision-en-savoir-plus",
        "librairie-du-port",
    ] {
        let other = CampaignId::parse(other).unwrap();
        for hours in [5, 2] {
            returning.record(&other, cap, NOW_MS - hours * 3_600_000);
        }
    }
    let returning = returning.seal(&signer);

    let mut group = c.benchmark_group("frequency_state");
    group.bench_function("new_viewer", |b| {
        b.iter(|| decision(&signer, black_box(""), &campaign, cap))
    });
    group.bench_function("returning_viewer_3_campaigns", |b| {
        b.iter(|| decision(&signer, black_box(&returning), &campaign, cap))
    });
    group.finish();
}

criterion_group!(benches, kept_state);
criterion_main!(benches);
