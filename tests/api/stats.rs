//! Advertisers' stats: reporting days, click-through rate, and who may see what.

use chrono::{Duration, TimeZone, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    eventually, redis_for, spawn_app, spawn_app_with, AppOptions, StoreKind, TestApp,
};
use crate::on_both_stores;

on_both_stores!(
    days_are_cut_at_midnight_of_the_reporting_time_zone,
    ctr_is_clicks_over_impressions_and_zero_without_impressions,
    an_advertiser_sees_only_its_own_campaigns,
    bad_ranges_are_a_400,
);

async fn key_for(app: &TestApp, advertiser: &str) -> String {
    let response = app
        .admin(Method::PUT, &format!("/v1/admin/advertisers/{advertiser}"))
        .json(&json!({ "name": advertiser }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Serves the house ad in the banner (the page excludes the paid campaign, so the fallback
/// comes), fires its impression, returns the decision.
async fn house_impression(app: &TestApp) -> Value {
    let decision: Value = app
        .get("/v1/slots/banner/ad?exclude=3vision-visitez")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(decision["campaign_id"], "house-annonceurs");
    app.fire(decision["impression_url"].as_str().unwrap()).await;
    decision
}

async fn days_are_cut_at_midnight_of_the_reporting_time_zone(kind: StoreKind) {
    let redis = redis_for(kind);
    let mut options = AppOptions::new(redis.as_ref().map(|r| r.url()));
    options.tweak = Box::new(|s| s.reporting_timezone = "Europe/Paris".into());
    // 23:30 in Paris on 30 November.
    options
        .clock
        .set(Utc.with_ymd_and_hms(2026, 11, 30, 22, 30, 0).unwrap());
    let app = spawn_app_with(options).await;

    house_impression(&app).await;
    app.clock.advance(Duration::hours(1)); // 00:30 in Paris on 1 December, still 30 Nov in UTC
    house_impression(&app).await;

    let query = "?from=2026-11-30&to=2026-12-01";
    let stats = eventually(std::time::Duration::from_secs(5), || async {
        let stats = app.stats("house-annonceurs", query).await;
        (stats["totals"]["impressions"] == 2).then_some(stats)
    })
    .await
    .expect("both impressions counted");
    let days = stats["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["date"], "2026-11-30");
    assert_eq!(days[0]["impressions"], 1);
    assert_eq!(days[1]["date"], "2026-12-01");
    assert_eq!(days[1]["impressions"], 1);
    assert_eq!(stats["slots"][0]["slot"], "banner");
    assert_eq!(stats["slots"][0]["impressions"], 2);
    assert!(stats["totals"]["served"].as_u64().unwrap() >= 2);
}

async fn ctr_is_clicks_over_impressions_and_zero_without_impressions(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;

    // Served, never shown: ctr 0.
    let _ = app.decision("Publicité 3").await;
    let stats = eventually(std::time::Duration::from_secs(5), || async {
        let stats = app.stats("3vision-visitez", "").await;
        let served = stats["totals"]["served"].as_u64().unwrap()
            + app.stats("3vision-en-savoir-plus", "").await["totals"]["served"]
                .as_u64()
                .unwrap();
        (served == 1).then_some(stats)
    })
    .await
    .expect("the served decision is counted");
    assert_eq!(stats["totals"]["ctr"], 0.0);
    assert_eq!(stats["totals"]["impressions"], 0);

    // Two impressions, one click: ctr 0.5.
    let first = house_impression(&app).await;
    house_impression(&app).await;
    app.clock.advance(Duration::seconds(2)); // the reader looks before clicking
    app.fire(first["click_url"].as_str().unwrap()).await;
    let stats = eventually(std::time::Duration::from_secs(5), || async {
        let stats = app.stats("house-annonceurs", "").await;
        (stats["totals"]["clicks"] == 1 && stats["totals"]["impressions"] == 2).then_some(stats)
    })
    .await
    .expect("impressions and click counted");
    assert_eq!(stats["totals"]["ctr"], 0.5);
    let today = stats["days"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["date"], "2026-11-30");
    assert_eq!(today["ctr"], 0.5);
    assert_eq!(
        stats["days"].as_array().unwrap().len(),
        30,
        "the last 30 days by default"
    );
}

async fn an_advertiser_sees_only_its_own_campaigns(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let vision = key_for(&app, "3vision").await;
    let atelier = key_for(&app, "atelier-du-bois").await;

    let own = app
        .get_as("/v1/campaigns/3vision-visitez/stats", &vision)
        .await;
    assert_eq!(own.status(), 200);
    let other = app
        .get_as("/v1/campaigns/3vision-visitez/stats", &atelier)
        .await;
    assert_eq!(other.status(), 404);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_campaign");
    assert_eq!(
        app.get("/v1/campaigns/3vision-visitez/stats")
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_as("/v1/campaigns/3vision-visitez/stats", "rk_made_up")
            .await
            .status(),
        401
    );

    let mine: Value = app
        .get_as("/v1/advertisers/me/campaigns", &vision)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = mine["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["campaign_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["3vision-visitez", "3vision-en-savoir-plus"]);
    assert_eq!(mine["advertiser_id"], "3vision");
    assert_eq!(mine["campaigns"][0]["totals"]["ctr"], 0.0);
}

async fn bad_ranges_are_a_400(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    for query in [
        "?from=yesterday",
        "?from=2026-12-01&to=2026-11-01",
        "?from=2020-01-01&to=2026-11-30",
        "?to=2026-13-01",
    ] {
        let response = app
            .get_as(
                &format!("/v1/campaigns/3vision-visitez/stats{query}"),
                crate::helpers::ADMIN_TOKEN,
            )
            .await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]["code"]
                .as_str()
                .unwrap()
                .starts_with("invalid_"),
            "{query}"
        );
    }
}
