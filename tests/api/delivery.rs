//! Delivery controls: caps, pacing, frequency caps, keywords and explain.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::{
    ad_path, eventually, inventory_file, json_log_lines, redis_for, spawn_app_with, AppOptions,
    Binary, RedisServer, StoreKind, TestApp, ADMIN_TOKEN,
};
use crate::on_both_stores;

on_both_stores!(
    a_daily_cap_stops_delivery_and_resets_at_midnight_of_the_reporting_zone,
    even_pacing_holds_a_campaign_to_its_delivery_line,
    a_frequency_cap_limits_what_one_viewer_sees,
    a_page_shows_each_frequency_capped_campaign_within_its_cap,
    a_frequency_state_kept_by_the_browser_holds_its_cap_on_every_instance,
    a_page_with_a_kept_frequency_state_shows_each_campaign_within_its_cap,
    a_kept_frequency_state_that_does_not_verify_is_a_new_viewer_and_a_long_one_an_error,
    keywords_select_and_exclude_campaigns,
    explain_gives_each_reason_and_needs_the_admin_token,
);

fn text_campaign(id: &str, slots: &[&str], priority: &str, extra: Value) -> Value {
    let mut campaign = json!({
        "id": id, "advertiser_id": "adv", "slots": slots, "priority": priority, "weight": 1,
        "creatives": [{ "id": "t", "format": "text", "title": id, "landing_url": format!("https://{id}.example/") }]
    });
    for (key, value) in extra.as_object().unwrap() {
        campaign[key] = value.clone();
    }
    campaign
}

/// One slot "Publicité 2" with the campaign under test in the sponsorship tier, and an
/// uncapped standard campaign "filler" that takes over when it is not eligible.
fn inventory_with(campaign: Value) -> Value {
    json!({
        "slots": [{ "name": "Publicité 2" }],
        "advertisers": [{ "id": "adv", "name": "Advertiser" }],
        "campaigns": [campaign, text_campaign("filler", &["Publicité 2"], "standard", json!({}))],
    })
}

/// [`inventory_with`] a sponsorship "freq" with a frequency cap of `max` per `per_seconds`.
fn frequency_capped(max: u32, per_seconds: u64) -> Value {
    inventory_with(text_campaign(
        "freq",
        &["Publicité 2"],
        "sponsorship",
        json!({ "frequency": { "max": max, "per_seconds": per_seconds } }),
    ))
}

/// [`inventory_with`] a sponsorship "capped" at 100 000 decisions, never reached in a test.
fn capped_inventory() -> Value {
    inventory_with(text_campaign(
        "capped",
        &["Publicité 2"],
        "sponsorship",
        json!({ "caps": { "total_impressions": 100000 } }),
    ))
}

async fn app_with(
    kind: StoreKind,
    redis: Option<&RedisServer>,
    doc: &Value,
    tweak: impl FnOnce(&mut AppOptions),
) -> (TestApp, tempfile::NamedTempFile) {
    let file = inventory_file(doc);
    let mut options = AppOptions::new(match kind {
        StoreKind::Memory => None,
        StoreKind::Redis => Some(redis.unwrap().url()),
    });
    options.inventory = file.path().to_owned();
    tweak(&mut options);
    (spawn_app_with(options).await, file)
}

/// Campaign ids served for `n` requests of `path`.
async fn served(app: &TestApp, path: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let decision: Value = response.json().await.unwrap();
        *counts
            .entry(decision["campaign_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

/// How many slots of a batch answer were filled.
fn filled(body: &Value) -> usize {
    body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["campaign_id"].is_string())
        .count()
}

/// Serves until the campaign has been served `target` times, allowing for budget refills.
async fn drain(apps: &[&TestApp], campaign: &str, target: usize, max_requests: usize) -> usize {
    let mut count = 0;
    let mut requests = 0;
    while count < target && requests < max_requests {
        for app in apps {
            let decision = app.decision("Publicité 2").await;
            if decision["campaign_id"] == campaign {
                count += 1;
            }
            requests += 1;
        }
        if requests % 50 == 0 {
            // Leave the refill task a moment when the local lease ran dry.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_drain_a_cap_of_one_thousand_without_overshoot() {
    let redis = RedisServer::start();
    let doc = inventory_with(text_campaign(
        "capped",
        &["Publicité 2"],
        "sponsorship",
        json!({ "caps": { "total_impressions": 1000 } }),
    ));
    let (a, _f1) = app_with(StoreKind::Redis, Some(&redis), &doc, |_| {}).await;
    let (b, _f2) = app_with(StoreKind::Redis, Some(&redis), &doc, |_| {}).await;

    let count = drain(&[&a, &b], "capped", 1000, 20_000).await;

    assert_eq!(count, 1000, "the whole budget is delivered");
    // Every unit was leased; none is left for anyone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_a = served(&a, &ad_path("Publicité 2"), 100).await;
    let after_b = served(&b, &ad_path("Publicité 2"), 100).await;
    assert_eq!(after_a.get("capped"), None, "overshoot on A: {after_a:?}");
    assert_eq!(after_b.get("capped"), None, "overshoot on B: {after_b:?}");
    let mut conn = redis.connection();
    let leased: u64 = redis::cmd("GET")
        .arg("regie:{c:capped}:lease")
        .query(&mut conn)
        .unwrap();
    assert_eq!(leased, 1000);
    let stats = eventually(Duration::from_secs(5), || async {
        let stats = a.stats("capped", "").await;
        (stats["totals"]["served"] == 1000).then_some(stats)
    })
    .await;
    assert!(
        stats.is_some(),
        "served decisions in the stats match the cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_campaign_stops_with_its_lease_while_redis_is_down_and_others_keep_serving() {
    let mut redis = RedisServer::start();
    let doc = capped_inventory();
    let (app, _f) = app_with(StoreKind::Redis, Some(&redis), &doc, |o| {
        o.tweak = Box::new(|s| s.lease_block = 20);
    })
    .await;
    assert_eq!(
        drain(&[&app], "capped", 5, 1_000).await,
        5,
        "the campaign serves while Redis is up"
    );

    redis.stop();
    let during = served(&app, &ad_path("Publicité 2"), 200).await;

    assert!(
        during.get("capped").copied().unwrap_or(0) <= 20,
        "at most one lease block: {during:?}"
    );
    assert!(
        during.get("filler").copied().unwrap_or(0) >= 180,
        "uncapped campaigns keep serving: {during:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_failing_while_redis_is_down_are_logged_once_when_it_begins_and_once_when_it_ends() {
    let mut redis = RedisServer::start();
    let doc = capped_inventory();
    let inventory = inventory_file(&doc);
    let log = tempfile::NamedTempFile::new().unwrap();
    let regie = Binary::on_redis(
        &redis.url(),
        inventory.path(),
        &[("REGIE_LEASE_BLOCK", "5")],
        Stdio::from(log.reopen().unwrap()),
    )
    .await;
    let path = ad_path("Publicité 2");
    let serves_capped =
        || async { (regie.decision(&path).await["campaign_id"] == "capped").then_some(()) };
    assert!(
        eventually(Duration::from_secs(10), serves_capped)
            .await
            .is_some(),
        "the capped campaign serves while Redis is up"
    );

    redis.stop();
    // Its block of 5 runs dry within the first decisions; every later one finds it dry, asks
    // for a lease, and the lease fails.
    let mut capped = 0;
    for _ in 0..100 {
        if regie.decision(&path).await["campaign_id"] == "capped" {
            capped += 1;
        }
    }
    assert!(capped <= 5, "at most one block without Redis: {capped}");
    redis.restart(false);
    assert!(
        eventually(Duration::from_secs(20), serves_capped)
            .await
            .is_some(),
        "the capped campaign serves again once Redis is back"
    );
    assert!(regie.terminate(Duration::from_secs(15)).await.success());

    let text = std::fs::read_to_string(log.path()).unwrap();
    let lines = json_log_lines(&text);
    let count = |start: &str| {
        lines
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(start)))
            .count()
    };
    assert_eq!(count("cannot lease budgets"), 1, "{text}");
    assert_eq!(count("budgets lease again"), 1, "{text}");
}

async fn a_daily_cap_stops_delivery_and_resets_at_midnight_of_the_reporting_zone(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = inventory_with(text_campaign(
        "daily",
        &["Publicité 2"],
        "sponsorship",
        json!({ "caps": { "daily_impressions": 5 } }),
    ));
    let (app, _f) = app_with(kind, redis.as_ref(), &doc, |o| {
        o.tweak = Box::new(|s| s.reporting_timezone = "Europe/Paris".into());
        o.clock
            .set(Utc.with_ymd_and_hms(2026, 11, 30, 22, 0, 0).unwrap()); // 23:00 in Paris
    })
    .await;

    assert_eq!(drain(&[&app], "daily", 5, 2_000).await, 5);
    let rest = served(&app, &ad_path("Publicité 2"), 50).await;
    assert_eq!(rest.get("daily"), None, "the daily cap holds: {rest:?}");

    app.clock.advance(chrono::Duration::hours(1)); // midnight in Paris, 23:00 in UTC
    assert_eq!(
        drain(&[&app], "daily", 5, 2_000).await,
        5,
        "a new day, a new budget"
    );
    let rest = served(&app, &ad_path("Publicité 2"), 50).await;
    assert_eq!(rest.get("daily"), None, "{rest:?}");
}

async fn even_pacing_holds_a_campaign_to_its_delivery_line(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = inventory_with(text_campaign(
        "paced",
        &["Publicité 2"],
        "sponsorship",
        json!({ "caps": { "daily_impressions": 1000 }, "pacing": "even" }),
    ));
    let (app, _f) = app_with(kind, redis.as_ref(), &doc, |o| {
        o.clock
            .set(Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()); // a quarter of the day
    })
    .await;

    // The line is at 250 (plus a slack of 1% of the goal): the campaign yields past it.
    let first = drain(&[&app], "paced", 1000, 800).await;
    assert!((250..=261).contains(&first), "served {first} by 06:00");

    app.clock.advance(chrono::Duration::hours(6)); // half the day: the line is at 500
    let second = drain(&[&app], "paced", 1000, 800).await;
    assert!(
        (first + second) <= 511 && (first + second) >= 500,
        "served {} by 12:00",
        first + second
    );
}

async fn a_frequency_cap_limits_what_one_viewer_sees(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = frequency_capped(3, 86400);
    let (a, _f1) = app_with(kind, redis.as_ref(), &doc, |_| {}).await;
    // On Redis a second instance shares the viewer's history; on the embedded store, one.
    let (b, _f2) = match kind {
        StoreKind::Redis => {
            let (b, f) = app_with(kind, redis.as_ref(), &doc, |o| o.clock = a.clock.clone()).await;
            (Some(b), Some(f))
        }
        StoreKind::Memory => (None, None),
    };
    let apps: Vec<&TestApp> = match &b {
        Some(b) => vec![&a, b],
        None => vec![&a],
    };
    let path = format!("{}?uid=viewer-42", ad_path("Publicité 2"));

    let mut seen = Vec::new();
    for i in 0..8 {
        let app = apps[i % apps.len()];
        seen.push(
            app.decision_at(&path).await["campaign_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    assert_eq!(
        seen,
        ["freq", "freq", "freq", "filler", "filler", "filler", "filler", "filler"]
    );
    let other = format!("{}?uid=viewer-7", ad_path("Publicité 2"));
    assert_eq!(
        a.decision_at(&other).await["campaign_id"],
        "freq",
        "another viewer has their own count"
    );
    assert_eq!(
        a.decision("Publicité 2").await["campaign_id"],
        "freq",
        "without a uid no frequency cap applies"
    );
    a.clock.advance(chrono::Duration::days(1));
    assert_eq!(
        apps[apps.len() - 1].decision_at(&path).await["campaign_id"],
        "freq",
        "the window has passed"
    );
}

/// Four slots and three campaigns for all of them: "once" (at most once an hour), "twice"
/// (twice an hour) and "filler", each of its own advertiser, since a page never shows two
/// campaigns of one advertiser.
fn page_of_capped_campaigns() -> ([&'static str; 4], Value) {
    let slots = ["banner", "Publicité 2", "Publicité 3", "Publicité 4"];
    let doc = json!({
        "slots": slots.iter().map(|s| json!({ "name": s })).collect::<Vec<_>>(),
        "advertisers": [{ "id": "adv", "name": "Advertiser" }, { "id": "adv-2", "name": "Advertiser 2" },
                        { "id": "adv-3", "name": "Advertiser 3" }],
        "campaigns": [
            text_campaign("once", &slots, "sponsorship", json!({ "frequency": { "max": 1, "per_seconds": 3600 } })),
            text_campaign("twice", &slots, "sponsorship", json!({ "frequency": { "max": 2, "per_seconds": 3600 }, "advertiser_id": "adv-2" })),
            text_campaign("filler", &slots, "standard", json!({ "advertiser_id": "adv-3" })),
        ],
    });
    (slots, doc)
}

/// The campaigns of a batch answer, sorted.
fn shown_on(body: &Value) -> Vec<String> {
    let mut shown: Vec<String> = body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["campaign_id"].as_str().map(str::to_owned))
        .collect();
    shown.sort();
    shown
}

async fn a_page_shows_each_frequency_capped_campaign_within_its_cap(kind: StoreKind) {
    let redis = redis_for(kind);
    let (slots, doc) = page_of_capped_campaigns();
    let (app, _file) = app_with(kind, redis.as_ref(), &doc, |_| {}).await;
    let page = |uid: &str| json!({ "slots": slots, "uid": uid });

    let mut pages = Vec::new();
    for _ in 0..4 {
        let response = app.batch(page("viewer-1")).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        pages.push(shown_on(&body));
    }

    // Three campaigns for four slots, never one twice on a page; then the capped ones drop out
    // as the viewer reaches their caps, and the uncapped one is left.
    assert_eq!(
        pages,
        [
            vec!["filler", "once", "twice"],
            vec!["filler", "twice"],
            vec!["filler"],
            vec!["filler"],
        ]
    );
    let response = app.batch(page("viewer-2")).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(filled(&body), 3, "another viewer starts afresh: {body}");
}

/// The campaign of one decision of `path` with the frequency state `kept`, and the state the
/// answer carries.
async fn decision_keeping(app: &TestApp, path: &str, kept: &str) -> (String, String) {
    let decision = app
        .decision_at(&format!("{path}&fs={}", crate::helpers::urlencode(kept)))
        .await;
    (
        decision["campaign_id"].as_str().unwrap().to_owned(),
        decision["frequency_state"].as_str().unwrap().to_owned(),
    )
}

/// The frequency round trips an instance made to its store.
fn frequency_round_trips(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("regie_store_roundtrips_total{op=\"frequency"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

async fn a_frequency_state_kept_by_the_browser_holds_its_cap_on_every_instance(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = frequency_capped(3, 86400);
    // Two instances, on one Redis or each on its own embedded store: the state is the
    // browser's, so either answers alike.
    let (a, _f1) = app_with(kind, redis.as_ref(), &doc, |_| {}).await;
    let (b, _f2) = app_with(kind, redis.as_ref(), &doc, |o| o.clock = a.clock.clone()).await;
    let path = format!("{}?uid=viewer-42", ad_path("Publicité 2"));

    let mut kept = String::new();
    let mut seen = Vec::new();
    for i in 0..6 {
        let app = [&a, &b][i % 2];
        let (campaign, next) = decision_keeping(app, &path, &kept).await;
        seen.push(campaign);
        kept = next;
    }

    assert_eq!(seen, ["freq", "freq", "freq", "filler", "filler", "filler"]);
    for app in [&a, &b] {
        assert_eq!(
            frequency_round_trips(&app.metrics().await),
            0,
            "nothing of the viewer is read or stored"
        );
    }
    assert_eq!(
        a.decision_at(&path).await["campaign_id"],
        "freq",
        "the same uid without the state is checked in the store, apart"
    );
    let (fresh, _) = decision_keeping(&b, &path, "").await;
    assert_eq!(fresh, "freq", "an empty state is a new viewer");
    a.clock.advance(chrono::Duration::days(1));
    let (after, _) = decision_keeping(&b, &path, &kept).await;
    assert_eq!(after, "freq", "the window has passed");

    // Without consent the state is neither read nor answered.
    let refused = a
        .decision_at(&format!(
            "{path}&consent=0&fs={}",
            crate::helpers::urlencode(&kept)
        ))
        .await;
    assert!(refused.get("frequency_state").is_none(), "{refused}");
}

async fn a_page_with_a_kept_frequency_state_shows_each_campaign_within_its_cap(kind: StoreKind) {
    let redis = redis_for(kind);
    let (slots, doc) = page_of_capped_campaigns();
    let (app, _file) = app_with(kind, redis.as_ref(), &doc, |_| {}).await;

    let mut kept = String::new();
    let mut pages = Vec::new();
    for _ in 0..4 {
        let response = app
            .batch(json!({ "slots": slots, "frequency_state": kept }))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        pages.push(shown_on(&body));
        kept = body["frequency_state"].as_str().unwrap().to_owned();
    }

    assert_eq!(
        pages,
        [
            vec!["filler", "once", "twice"],
            vec!["filler", "twice"],
            vec!["filler"],
            vec!["filler"],
        ]
    );
    app.clock.advance(chrono::Duration::minutes(61));
    let body: Value = app
        .batch(json!({ "slots": slots, "frequency_state": kept }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filled(&body), 3, "an hour later the caps are free: {body}");
    let without: Value = app
        .batch(json!({ "slots": slots }))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        without.get("frequency_state").is_none(),
        "no state asked, none answered: {without}"
    );
}

async fn a_kept_frequency_state_that_does_not_verify_is_a_new_viewer_and_a_long_one_an_error(
    kind: StoreKind,
) {
    let redis = redis_for(kind);
    let doc = frequency_capped(1, 86400);
    let (app, _file) = app_with(kind, redis.as_ref(), &doc, |_| {}).await;
    let path = format!("{}?uid=viewer-42", ad_path("Publicité 2"));
    let (first, kept) = decision_keeping(&app, &path, "").await;
    assert_eq!(first, "freq");
    assert_eq!(decision_keeping(&app, &path, &kept).await.0, "filler");

    // Altered (one character changed) or not a state at all: a viewer seen nowhere yet, as
    // a browser that lost its state is.
    let mut altered = kept.clone().into_bytes();
    let last = altered.len() - 3;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(decision_keeping(&app, &path, &altered).await.0, "freq");
    assert_eq!(decision_keeping(&app, &path, "not-a-state").await.0, "freq");

    let long = "A".repeat(2_049);
    let response = app.get(&format!("{path}&fs={long}")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_frequency_state", "{body}");
    let response = app
        .batch(json!({ "slots": ["Publicité 2"], "frequency_state": long }))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_frequency_state", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_keeps_only_the_views_served_when_concurrent_requests_race_for_a_cap() {
    let redis = RedisServer::start();
    let doc = inventory_with(text_campaign(
        "capped",
        &["Publicité 2"],
        "sponsorship",
        json!({ "caps": { "total_impressions": 5 },
                "frequency": { "max": 1000, "per_seconds": 86400 } }),
    ));
    let (app, _file) = app_with(StoreKind::Redis, Some(&redis), &doc, |_| {}).await;
    let url = format!("{}{}?uid=viewer-1", app.address, ad_path("Publicité 2"));

    // Concurrent requests of one viewer: several may draw "capped" and reserve a view of it
    // before one of them takes the budget's last leased unit; the others are served "filler"
    // and their reservations must be cancelled.
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let (client, url) = (app.client.clone(), url.clone());
        requests.spawn(async move {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let decision: Value = response.json().await.unwrap();
            decision["campaign_id"].as_str().unwrap().to_owned()
        });
    }
    let mut capped = 0u64;
    while let Some(campaign) = requests.join_next().await {
        if campaign.unwrap() == "capped" {
            capped += 1;
        }
    }
    assert!(capped <= 5, "the cap of 5 was overshot: {capped}");

    let viewer = app.state.viewers.key("viewer-1");
    let key = format!("regie:{{v:{viewer}}}:freq:capped");
    let views = eventually(Duration::from_secs(5), || {
        let mut conn = redis.connection();
        let key = key.clone();
        async move {
            let views: u64 = redis::cmd("ZCARD").arg(&key).query(&mut conn).unwrap();
            (views == capped).then_some(views)
        }
    })
    .await;
    assert_eq!(views, Some(capped), "views recorded for the viewer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_costs_a_store_round_trip_only_when_the_draw_reaches_a_frequency_cap() {
    let redis = RedisServer::start();
    let doc = json!({
        "slots": [{ "name": "Publicité 2" }, { "name": "banner" }],
        "advertisers": [{ "id": "adv", "name": "Advertiser" }],
        "campaigns": [
            text_campaign("sponsor", &["Publicité 2"], "sponsorship", json!({})),
            text_campaign("freq", &["Publicité 2", "banner"], "standard", json!({ "frequency": { "max": 100, "per_seconds": 3600 } })),
        ],
    });
    let (app, _file) = app_with(StoreKind::Redis, Some(&redis), &doc, |_| {}).await;
    let round_trips = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with("regie_store_roundtrips_total{op=\"frequency\"}"))
            .map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };

    // The uncapped sponsorship is drawn first: the frequency cap below it is never consulted.
    for n in 0..20 {
        let path = format!("{}?uid=viewer-{n}", ad_path("Publicité 2"));
        assert_eq!(app.decision_at(&path).await["campaign_id"], "sponsor");
    }
    assert_eq!(round_trips(&app.metrics().await), 0);

    // On "banner" the frequency-capped campaign comes first: one round trip per request.
    for n in 0..20 {
        let path = format!("{}?uid=viewer-{n}", ad_path("banner"));
        assert_eq!(app.decision_at(&path).await["campaign_id"], "freq");
    }
    assert_eq!(round_trips(&app.metrics().await), 20);
}

async fn keywords_select_and_exclude_campaigns(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = inventory_with(text_campaign(
        "ukraine",
        &["Publicité 2"],
        "sponsorship",
        json!({ "targeting": { "keywords_any": ["Ukraine", "Kyiv"], "keywords_none": ["Sport"] } }),
    ));
    let (app, _f) = app_with(kind, redis.as_ref(), &doc, |_| {}).await;
    let ad = |kw: &str| {
        format!(
            "{}?kw={}",
            ad_path("Publicité 2"),
            crate::helpers::urlencode(kw)
        )
    };

    assert_eq!(
        app.decision_at(&ad("UKRAINE")).await["campaign_id"],
        "ukraine",
        "case-insensitive"
    );
    assert_eq!(
        app.decision_at(&ad("économie,kyiv")).await["campaign_id"],
        "ukraine",
        "any one keyword"
    );
    assert_eq!(
        app.decision_at(&ad("ukraine,sport")).await["campaign_id"],
        "filler",
        "keywords_none wins"
    );
    assert_eq!(app.decision_at(&ad("météo")).await["campaign_id"], "filler");
    assert_eq!(
        app.decision("Publicité 2").await["campaign_id"],
        "filler",
        "no keyword, no match"
    );
    let body: Value = app
        .batch(json!({ "slots": ["Publicité 2"], "keywords": ["Ukraine"] }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["decisions"][0]["campaign_id"], "ukraine");
}

async fn explain_gives_each_reason_and_needs_the_admin_token(kind: StoreKind) {
    let redis = redis_for(kind);
    let both = ["Publicité 2", "warm-up"];
    let doc = json!({
        "slots": [{ "name": "Publicité 2", "fallback": "house" }, { "name": "warm-up" }],
        // The three warm-up campaigns are shown on one page: one advertiser each.
        "advertisers": [{ "id": "adv", "name": "Advertiser" }, { "id": "adv-2", "name": "Advertiser 2" },
                        { "id": "adv-3", "name": "Advertiser 3" }, { "id": "adv-4", "name": "Advertiser 4" }],
        "campaigns": [
            text_campaign("paused", &["Publicité 2"], "standard", json!({ "status": "paused" })),
            text_campaign("future", &["Publicité 2"], "standard", json!({ "start": "2026-12-25T00:00:00Z" })),
            text_campaign("over", &["Publicité 2"], "standard", json!({ "end": "2026-11-01T00:00:00Z" })),
            text_campaign("sport", &["Publicité 2"], "standard", json!({ "targeting": { "keywords_any": ["sport"] } })),
            text_campaign("on-page", &["Publicité 2"], "standard", json!({})),
            text_campaign("capped", &both, "standard", json!({ "caps": { "total_impressions": 1 }, "advertiser_id": "adv-2" })),
            text_campaign("paced", &both, "standard", json!({ "caps": { "daily_impressions": 100 }, "pacing": "even", "advertiser_id": "adv-3" })),
            text_campaign("seen", &both, "standard", json!({ "frequency": { "max": 1, "per_seconds": 3600 }, "advertiser_id": "adv-4" })),
            text_campaign("ok", &["Publicité 2"], "standard", json!({ "weight": 1 })),
            text_campaign("house", &["Publicité 2"], "house", json!({})),
        ],
    });
    let (app, _f) = app_with(kind, redis.as_ref(), &doc, |o| {
        // Midnight: the even-delivery line is at zero, so one decision puts "paced" ahead.
        o.clock
            .set(Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap());
    })
    .await;
    // Budgets come from the store in leases: wait until capped, paced and seen may all be
    // served (explain is a dry run, and another viewer's), since a page that got only some of
    // them would use up what the others need to be served together.
    let probe = format!("{}?explain=1&uid=probe", ad_path("Publicité 2"));
    let ready = eventually(Duration::from_secs(10), || async {
        let body: Value = app.get_as(&probe, ADMIN_TOKEN).await.json().await.ok()?;
        let campaigns = body["explain"]["tiers"][0]["campaigns"].as_array()?.clone();
        let eligible = |id: &str| {
            campaigns
                .iter()
                .any(|c| c["campaign_id"] == id && c["reason"].is_null())
        };
        ["capped", "paced", "seen"]
            .into_iter()
            .all(eligible)
            .then_some(())
    })
    .await;
    assert!(ready.is_some(), "capped, paced and seen never all eligible");
    // Serve each of capped, paced and seen once (three slots of a page, never twice).
    let body: Value = app
        .batch(json!({ "slots": ["warm-up", "warm-up", "warm-up"], "uid": "viewer-1" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        filled(&body),
        3,
        "the three warm-up campaigns served once each: {body}"
    );
    let path = format!(
        "{}?explain=1&uid=viewer-1&kw=culture&exclude=on-page",
        ad_path("Publicité 2")
    );

    assert_eq!(app.get(&path).await.status(), 403);
    assert_eq!(app.get_as(&path, "wrong").await.status(), 403);
    let response = app.get_as(&path, ADMIN_TOKEN).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let standard = &body["explain"]["tiers"][0];
    assert_eq!(standard["priority"], "standard");
    let reasons: HashMap<String, Value> = standard["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["campaign_id"].as_str().unwrap().to_owned(),
                c["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(reasons["paused"], "paused");
    assert_eq!(reasons["future"], "not_started");
    assert_eq!(reasons["over"], "ended");
    assert_eq!(reasons["sport"], "keywords");
    assert_eq!(reasons["on-page"], "excluded");
    assert_eq!(reasons["capped"], "capped");
    assert_eq!(reasons["paced"], "paced");
    assert_eq!(reasons["seen"], "frequency_capped");
    assert_eq!(reasons["ok"], Value::Null);
    assert_eq!(standard["eligible_weight"], 1);
    assert_eq!(body["explain"]["chosen_tier"], "standard");
    assert_eq!(body["decision"]["campaign_id"], "ok");
    assert_eq!(body["explain"]["tiers"][1]["priority"], "house");
    // A dry run: the explained decision was not counted.
    let stats = app.stats("ok", "").await;
    assert_eq!(stats["totals"]["served"], 0);
}
