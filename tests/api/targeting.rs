//! Targeting, page rules and privacy (contract section 11): countries, day-parting,
//! competitive separation, consent and responsive sizes, on both stores.

use std::collections::{HashMap, HashSet};

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::{
    ad_path, inventory_file, redis_for, spawn_app_with, AppOptions, RedisServer, StoreKind,
    TestApp, ADMIN_TOKEN,
};
use crate::on_both_stores;

on_both_stores!(
    a_campaign_with_countries_is_served_only_to_readers_from_them,
    the_country_header_can_be_renamed,
    a_schedule_follows_the_wall_clock_of_the_reporting_zone,
    a_page_never_shows_two_campaigns_of_one_advertiser_or_sharing_a_label,
    a_page_asking_slot_by_slot_excludes_advertisers_already_shown,
    a_reader_who_refuses_tracking_is_neither_read_nor_stored,
    the_width_selects_the_largest_size_that_fits_and_its_creatives,
    explain_names_country_schedule_separation_and_size,
);

/// A text campaign of its own advertiser (named after it unless `extra` says otherwise).
fn campaign(id: &str, slots: &[&str], priority: &str, extra: Value) -> Value {
    let mut campaign = json!({
        "id": id, "advertiser_id": id, "slots": slots, "priority": priority, "weight": 1,
        "creatives": [{ "id": "t", "format": "text", "title": id,
                        "landing_url": format!("https://{id}.example/") }]
    });
    for (key, value) in extra.as_object().unwrap() {
        campaign[key] = value.clone();
    }
    campaign
}

/// An inventory of these slots and campaigns, with every advertiser they name.
fn inventory(slots: Value, campaigns: Vec<Value>) -> Value {
    let advertisers: HashSet<String> = campaigns
        .iter()
        .map(|c| c["advertiser_id"].as_str().unwrap().to_owned())
        .collect();
    json!({
        "slots": slots,
        "advertisers": advertisers.iter().map(|a| json!({ "id": a, "name": a })).collect::<Vec<_>>(),
        "campaigns": campaigns,
    })
}

async fn app_with(
    redis: Option<&RedisServer>,
    doc: &Value,
    tweak: impl FnOnce(&mut AppOptions),
) -> (TestApp, tempfile::NamedTempFile) {
    let file = inventory_file(doc);
    let mut options = AppOptions::new(redis.map(|r| r.url()));
    options.inventory = file.path().to_owned();
    tweak(&mut options);
    (spawn_app_with(options).await, file)
}

/// The campaign served for `path` with these headers; `None` for no fill.
async fn served_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Option<String> {
    let mut request = app.client.get(format!("{}{path}", app.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    match response.status().as_u16() {
        204 => None,
        200 => {
            let decision: Value = response.json().await.unwrap();
            Some(decision["campaign_id"].as_str().unwrap().to_owned())
        }
        status => panic!("{path}: {status} {}", response.text().await.unwrap()),
    }
}

/// The campaigns of a batch answer, in slot order (`None` for an unfilled slot).
fn campaigns_of(body: &Value) -> Vec<Option<String>> {
    body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["campaign_id"].as_str().map(str::to_owned))
        .collect()
}

async fn a_campaign_with_countries_is_served_only_to_readers_from_them(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = inventory(
        json!([{ "name": "Publicité 2" }]),
        vec![
            campaign(
                "benelux-fr",
                &["Publicité 2"],
                "sponsorship",
                json!({ "targeting": { "countries": ["FR", "BE", "LU"] } }),
            ),
            campaign("everywhere", &["Publicité 2"], "standard", json!({})),
        ],
    );
    let (app, _f) = app_with(redis.as_ref(), &doc, |_| {}).await;
    let path = ad_path("Publicité 2");

    for country in ["FR", "be", " LU "] {
        assert_eq!(
            served_with(&app, &path, &[("CF-IPCountry", country)])
                .await
                .as_deref(),
            Some("benelux-fr"),
            "{country:?}"
        );
    }
    // Another country, an unknown one (Cloudflare's XX, Tor's T1), a malformed header or none.
    for country in ["DE", "XX", "T1", "FRA", "F", ""] {
        assert_eq!(
            served_with(&app, &path, &[("CF-IPCountry", country)])
                .await
                .as_deref(),
            Some("everywhere"),
            "{country:?}"
        );
    }
    assert_eq!(
        served_with(&app, &path, &[]).await.as_deref(),
        Some("everywhere")
    );
    // In a batch too.
    let response = app
        .client
        .post(format!("{}/v1/decisions", app.address))
        .header("CF-IPCountry", "FR")
        .json(&json!({ "slots": ["Publicité 2"] }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(campaigns_of(&body), [Some("benelux-fr".to_owned())]);
}

async fn the_country_header_can_be_renamed(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = inventory(
        json!([{ "name": "Publicité 2" }]),
        vec![
            campaign(
                "fr",
                &["Publicité 2"],
                "sponsorship",
                json!({ "targeting": { "countries": ["FR"] } }),
            ),
            campaign("everywhere", &["Publicité 2"], "standard", json!({})),
        ],
    );
    let (app, _f) = app_with(redis.as_ref(), &doc, |o| {
        o.tweak = Box::new(|s| s.country_header = "X-Country-Code".into());
    })
    .await;
    let path = ad_path("Publicité 2");

    assert_eq!(
        served_with(&app, &path, &[("X-Country-Code", "FR")])
            .await
            .as_deref(),
        Some("fr")
    );
    assert_eq!(
        served_with(&app, &path, &[("CF-IPCountry", "FR")])
            .await
            .as_deref(),
        Some("everywhere"),
        "only the configured header is trusted"
    );
}

async fn a_schedule_follows_the_wall_clock_of_the_reporting_zone(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = inventory(
        json!([{ "name": "Publicité 2" }]),
        vec![
            campaign(
                "breakfast",
                &["Publicité 2"],
                "sponsorship",
                json!({ "targeting": { "schedule": [
                { "days": ["mon", "tue", "wed", "thu", "fri", "sun"], "from": "07:00", "to": "10:00" }
            ] } }),
            ),
            campaign(
                "late",
                &["Publicité 2"],
                "sponsorship",
                json!({ "targeting": { "schedule": [
                { "days": ["sat"], "from": "22:00", "to": "02:00" }
            ] } }),
            ),
            campaign("any-time", &["Publicité 2"], "standard", json!({})),
        ],
    );
    let (app, _f) = app_with(redis.as_ref(), &doc, |o| {
        o.tweak = Box::new(|s| s.reporting_timezone = "Europe/Paris".into());
    })
    .await;
    let path = ad_path("Publicité 2");
    let at = |y, mo, d, h, mi| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
    let cases = [
        // Monday 2026-11-30, winter time (UTC+1): 07:00 to 10:00 local is 06:00 to 09:00 UTC.
        (at(2026, 11, 30, 5, 59), "any-time"),
        (at(2026, 11, 30, 6, 0), "breakfast"),
        (at(2026, 11, 30, 8, 59), "breakfast"),
        (at(2026, 11, 30, 9, 0), "any-time"),
        // Saturday night into Sunday, across midnight.
        (at(2026, 11, 28, 20, 59), "any-time"),
        (at(2026, 11, 28, 21, 0), "late"),
        (at(2026, 11, 29, 0, 59), "late"),
        (at(2026, 11, 29, 1, 0), "any-time"),
        // Sunday 2026-03-29, the day clocks go forward: 07:00 local is already 05:00 UTC.
        (at(2026, 3, 29, 4, 59), "any-time"),
        (at(2026, 3, 29, 5, 0), "breakfast"),
        (at(2026, 3, 29, 7, 59), "breakfast"),
        (at(2026, 3, 29, 8, 0), "any-time"),
        // Sunday 2026-10-25, the day clocks go back: 07:00 local is 06:00 UTC again.
        (at(2026, 10, 25, 5, 0), "any-time"),
        (at(2026, 10, 25, 6, 0), "breakfast"),
        (at(2026, 10, 25, 9, 0), "any-time"),
    ];
    for (now, expected) in cases {
        app.clock.set(now);
        assert_eq!(
            served_with(&app, &path, &[]).await.as_deref(),
            Some(expected),
            "at {now}"
        );
    }
}

/// Six slots, and campaigns in every one of them: two of advertiser "a", two sharing the
/// label "automobile" (one written in capitals), one more, and two house campaigns of the
/// publisher. A frequency cap on one of them makes pages with a viewer id go through the
/// store.
fn crowded_inventory() -> (Value, Vec<&'static str>) {
    let slots = vec!["s1", "s2", "s3", "s4", "s5", "s6"];
    let doc = inventory(
        json!(slots
            .iter()
            .map(|s| json!({ "name": s }))
            .collect::<Vec<_>>()),
        vec![
            campaign(
                "a-one",
                &slots,
                "standard",
                json!({ "advertiser_id": "a", "weight": 3 }),
            ),
            campaign(
                "a-two",
                &slots,
                "standard",
                json!({ "advertiser_id": "a",
                "frequency": { "max": 1000, "per_seconds": 3600 } }),
            ),
            campaign(
                "renault",
                &slots,
                "standard",
                json!({ "exclusion_labels": ["automobile"], "weight": 2 }),
            ),
            campaign(
                "peugeot",
                &slots,
                "standard",
                json!({ "exclusion_labels": ["Automobile", "france"] }),
            ),
            campaign("bakery", &slots, "standard", json!({})),
            campaign(
                "house-one",
                &slots,
                "house",
                json!({ "advertiser_id": "publisher" }),
            ),
            campaign(
                "house-two",
                &slots,
                "house",
                json!({ "advertiser_id": "publisher" }),
            ),
        ],
    );
    (doc, slots)
}

async fn a_page_never_shows_two_campaigns_of_one_advertiser_or_sharing_a_label(kind: StoreKind) {
    let redis = redis_for(kind);
    let (doc, slots) = crowded_inventory();
    let (app, _f) = app_with(redis.as_ref(), &doc, |_| {}).await;

    for n in 0..40 {
        // Half the pages with a viewer id (the frequency walk in the store), half without.
        let body = if n % 2 == 0 {
            json!({ "slots": slots, "uid": format!("viewer-{n}") })
        } else {
            json!({ "slots": slots })
        };
        let answer: Value = app.batch(body).await.json().await.unwrap();
        let shown: Vec<String> = campaigns_of(&answer).into_iter().flatten().collect();

        // One of "a", one of the automobile label, the bakery, and both house campaigns:
        // five slots filled, the sixth empty.
        assert_eq!(shown.len(), 5, "{shown:?}");
        let a = shown.iter().filter(|c| c.starts_with("a-")).count();
        let auto = shown
            .iter()
            .filter(|c| *c == "renault" || *c == "peugeot")
            .count();
        assert_eq!((a, auto), (1, 1), "{shown:?}");
        assert!(shown.contains(&"bakery".to_owned()), "{shown:?}");
        assert!(
            shown.contains(&"house-one".to_owned()) && shown.contains(&"house-two".to_owned()),
            "{shown:?}"
        );
    }
}

async fn a_page_asking_slot_by_slot_excludes_advertisers_already_shown(kind: StoreKind) {
    let redis = redis_for(kind);
    let (doc, slots) = crowded_inventory();
    let (app, _f) = app_with(redis.as_ref(), &doc, |_| {}).await;
    let path = format!("{}?exclude_advertisers=a,bakery,publisher", ad_path("s1"));

    let mut shown = HashSet::new();
    for _ in 0..40 {
        shown.insert(served_with(&app, &path, &[]).await.unwrap());
    }
    // House campaigns are the publisher's own: they are never kept apart.
    let expected: HashSet<String> = ["renault", "peugeot", "house-one", "house-two"]
        .map(String::from)
        .into();
    let paid: HashSet<String> = shown
        .iter()
        .filter(|c| !c.starts_with("house"))
        .cloned()
        .collect();
    assert_eq!(
        paid,
        expected
            .iter()
            .filter(|c| !c.starts_with("house"))
            .cloned()
            .collect()
    );

    // The batch body takes them too, and an unknown advertiser is no error.
    let answer: Value = app
        .batch(json!({ "slots": slots, "exclude_advertisers": ["a", "renault", "nobody"] }))
        .await
        .json()
        .await
        .unwrap();
    let shown: HashSet<String> = campaigns_of(&answer).into_iter().flatten().collect();
    let expected: HashSet<String> = ["peugeot", "bakery", "house-one", "house-two"]
        .map(String::from)
        .into();
    assert_eq!(shown, expected);

    // A malformed id is a 400 in the contract's shape.
    let response = app
        .get(&format!("{}?exclude_advertisers=a%20b", ad_path("s1")))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_exclude_advertisers");
}

async fn a_reader_who_refuses_tracking_is_neither_read_nor_stored(kind: StoreKind) {
    let redis = redis_for(kind);
    let doc = inventory(
        json!([{ "name": "Publicité 2" }]),
        vec![
            campaign(
                "once",
                &["Publicité 2"],
                "sponsorship",
                json!({ "frequency": { "max": 1, "per_seconds": 3600 } }),
            ),
            campaign("filler", &["Publicité 2"], "standard", json!({})),
        ],
    );
    let (app, _f) = app_with(redis.as_ref(), &doc, |_| {}).await;
    let path = |query: &str| format!("{}?{query}", ad_path("Publicité 2"));

    // Refused three ways: the frequency cap cannot apply, as without an id.
    for _ in 0..3 {
        assert_eq!(
            served_with(&app, &path("uid=reader-1&consent=0"), &[])
                .await
                .as_deref(),
            Some("once")
        );
        assert_eq!(
            served_with(&app, &path("uid=reader-1"), &[("Sec-GPC", "1")])
                .await
                .as_deref(),
            Some("once")
        );
        let answer: Value = app
            .batch(json!({ "slots": ["Publicité 2"], "uid": "reader-1", "consent": false }))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(campaigns_of(&answer), [Some("once".to_owned())]);
    }
    // Not even read: a malformed id is ignored rather than refused.
    let long = "x".repeat(500);
    assert_eq!(
        served_with(&app, &path(&format!("uid={long}&consent=0")), &[])
            .await
            .as_deref(),
        Some("once")
    );
    // Nothing was stored for the reader.
    if let Some(redis) = &redis {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut redis.connection())
            .unwrap();
        let viewer = app.state.viewers.key("reader-1");
        assert!(!keys.iter().any(|k| k.contains(&viewer)), "{keys:?}");
    }
    // With consent, the same reader's first view is the first counted one.
    assert_eq!(
        served_with(&app, &path("uid=reader-1&consent=1"), &[])
            .await
            .as_deref(),
        Some("once")
    );
    assert_eq!(
        served_with(&app, &path("uid=reader-1"), &[])
            .await
            .as_deref(),
        Some("filler")
    );
    if let Some(redis) = &redis {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut redis.connection())
            .unwrap();
        assert!(
            keys.iter()
                .any(|k| k.contains(&app.state.viewers.key("reader-1"))),
            "{keys:?}"
        );
    }
    let response = app.get(&path("consent=maybe")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_consent");
}

fn image(id: &str, w: u32, h: u32) -> Value {
    json!({ "id": id, "format": "image", "image_url": format!("https://cdn.example/{id}.png"),
            "alt": id, "width": w, "height": h, "landing_url": "https://shop.example/" })
}

async fn the_width_selects_the_largest_size_that_fits_and_its_creatives(kind: StoreKind) {
    let redis = redis_for(kind);
    let mut shop = campaign("shop", &["banner"], "standard", json!({}));
    shop["creatives"] = json!([
        image("shop-970", 970, 250),
        image("shop-728", 728, 90),
        image("shop-320", 320, 50)
    ]);
    let mut desktop_only = campaign("desktop-only", &["banner"], "sponsorship", json!({}));
    desktop_only["creatives"] = json!([image("wide", 970, 250)]);
    let doc = inventory(
        json!([{ "name": "banner", "sizes": ["320x50", "728x90", "970x250"], "fallback": "house" }]),
        vec![
            shop,
            desktop_only,
            campaign("house", &["banner"], "house", json!({})),
        ],
    );
    let (app, _f) = app_with(redis.as_ref(), &doc, |_| {}).await;
    let creative = |d: &Value| d["creative"]["id"].as_str().unwrap_or_default().to_owned();

    // The widest size fits: the sponsorship, which has only that size, is served.
    let wide = app
        .decision_at(&format!("{}?w=1200", ad_path("banner")))
        .await;
    assert_eq!(
        (
            wide["campaign_id"].as_str().unwrap(),
            creative(&wide).as_str()
        ),
        ("desktop-only", "wide")
    );
    // Narrower: the sponsorship has nothing of that size, the standard campaign has.
    for (w, expected) in [
        (969, "shop-728"),
        (728, "shop-728"),
        (727, "shop-320"),
        (320, "shop-320"),
    ] {
        let d = app
            .decision_at(&format!("{}?w={w}", ad_path("banner")))
            .await;
        assert_eq!(d["campaign_id"], "shop", "w={w}");
        assert_eq!(creative(&d), expected, "w={w}");
        assert_eq!(
            d["creative"]["width"],
            expected[5..].parse::<u32>().unwrap(),
            "w={w}"
        );
    }
    // Narrower than every size: only a creative that adapts (the house text) is left.
    let tiny = app
        .decision_at(&format!("{}?w=200", ad_path("banner")))
        .await;
    assert_eq!(tiny["campaign_id"], "house");
    // Without a width, the largest size.
    assert_eq!(creative(&app.decision("banner").await), "wide");
    // In a batch, one width per slot.
    let answer: Value = app
        .batch(json!({ "slots": ["banner", "banner"], "widths": [400, null] }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["decisions"][0]["creative"]["id"], "shop-320");
    assert_eq!(answer["decisions"][1]["creative"]["id"], "wide");

    for path in [
        format!("{}?w=0", ad_path("banner")),
        format!("{}?w=wide", ad_path("banner")),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_width");
    }
    let response = app
        .batch(json!({ "slots": ["banner", "banner"], "widths": [400] }))
        .await;
    assert_eq!(response.status(), 400);
}

async fn explain_names_country_schedule_separation_and_size(kind: StoreKind) {
    let redis = redis_for(kind);
    let mut wide = campaign("wide", &["banner"], "standard", json!({}));
    wide["creatives"] = json!([image("wide", 728, 90)]);
    let doc = inventory(
        json!([{ "name": "banner", "sizes": ["728x90", "320x50"] }]),
        vec![
            campaign(
                "fr",
                &["banner"],
                "standard",
                json!({ "targeting": { "countries": ["FR"] } }),
            ),
            campaign(
                "nights",
                &["banner"],
                "standard",
                json!({ "targeting": { "schedule": [{ "from": "22:00", "to": "06:00" }] } }),
            ),
            campaign("rival", &["banner"], "standard", json!({})),
            wide,
            campaign("ok", &["banner"], "standard", json!({})),
        ],
    );
    let (app, _f) = app_with(redis.as_ref(), &doc, |_| {}).await;
    let path = format!(
        "{}?explain=1&w=400&exclude_advertisers=rival&consent=0&uid=someone",
        ad_path("banner")
    );

    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("CF-IPCountry", "DE")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let reasons: HashMap<String, Value> = body["explain"]["tiers"][0]["campaigns"]
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
    assert_eq!(reasons["fr"], "country");
    assert_eq!(reasons["nights"], "schedule");
    assert_eq!(reasons["rival"], "separation");
    assert_eq!(reasons["wide"], "size");
    assert_eq!(reasons["ok"], Value::Null);
    assert_eq!(body["decision"]["campaign_id"], "ok");
    let explained = &body["explain"];
    assert_eq!(explained["country"], "DE");
    assert_eq!(explained["size"], "320x50");
    assert_eq!(explained["excluded_advertisers"], json!(["rival"]));
    assert_eq!(explained["tracking_refused"], true);
    assert_eq!(explained["frequency_capping"], false);
}
