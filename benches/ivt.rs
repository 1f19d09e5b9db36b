//! The cost of the invalid-traffic checks per request: the known-bots matcher on typical user
//! agents, repeated (as an audience's few browsers repeat) and new each time, and a rate-limit
//! check for one address.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use regie::clock::SystemClock;
use regie::ivt::{BotMatcher, LimitSettings, Limited, Limits};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const CURL: &str = "curl/8.5.0";

fn bots(c: &mut Criterion) {
    let matcher = BotMatcher::new();
    let mut group = c.benchmark_group("bot_matcher");
    for (name, ua) in [
        ("chrome_desktop", CHROME),
        ("safari_iphone", IPHONE),
        ("googlebot", GOOGLEBOT),
        ("curl", CURL),
    ] {
        // The same user agent again: remembered by the thread after the first call.
        group.bench_function(format!("{name}_repeated"), |b| {
            b.iter(|| matcher.is_bot(black_box(Some(ua.as_bytes()))))
        });
        // A new user agent every call (a version number appended): the automaton runs.
        let mut n = 0u64;
        group.bench_function(format!("{name}_new"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    format!("{ua} v/{n}")
                },
                |agent| matcher.is_bot(black_box(Some(agent.as_bytes()))),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    c.bench_function("bot_matcher_build", |b| b.iter(BotMatcher::new));
}

fn limits(c: &mut Criterion) {
    let limits = Limits::new(
        LimitSettings {
            decisions_per_second: u32::MAX,
            impressions_per_minute: 300,
            clicks_per_minute: 10,
        },
        Arc::new(SystemClock),
    );
    let address = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    c.bench_function("rate_limit_check_one_address", |b| {
        b.iter(|| limits.check(Limited::Decision, black_box(address)))
    });
    let mut n = 0u32;
    c.bench_function("rate_limit_check_new_addresses", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            limits.check(Limited::Decision, IpAddr::V4(Ipv4Addr::from(n % 50_000)))
        })
    });
}

criterion_group!(benches, bots, limits);
criterion_main!(benches);
