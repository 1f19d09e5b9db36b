//! Impressions, viewable impressions and clicks: signed tokens, exact counts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Duration;
use regie::inventory::{CampaignId, CreativeId, SlotName};
use regie::tracking::{Signer, TokenPayload};
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::{redis_for, settled_total, spawn_app, StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(
    repeated_beacons_count_each_decision_once,
    a_click_redirects_to_the_landing_url_and_counts_once,
    forged_tampered_and_expired_tokens_count_nothing_and_never_redirect,
    head_requests_count_nothing,
);

fn token_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// `url` with the first character of its token percent-encoded: the same URL to a browser.
fn escaped(url: &str) -> String {
    let (base, token) = url.rsplit_once('/').unwrap();
    format!("{base}/%{:02X}{}", token.as_bytes()[0], &token[1..])
}

/// Decisions for the banner: served by 3vision-visitez or the house ad.
async fn banner_decisions(app: &TestApp, n: usize) -> Vec<Value> {
    let mut decisions = Vec::new();
    for _ in 0..n {
        decisions.push(app.decision("banner").await);
    }
    decisions
}

async fn repeated_beacons_count_each_decision_once(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let decisions = banner_decisions(&app, 30).await;
    let visitez: Vec<&Value> = decisions
        .iter()
        .filter(|d| d["campaign_id"] == "3vision-visitez")
        .collect();

    for (i, decision) in visitez.iter().enumerate() {
        // Every decision's impression fires 1 to 3 times, some with an escape in the token
        // as a proxy may write it; every other one is viewable too.
        let url = decision["impression_url"].as_str().unwrap();
        let url = if i % 3 == 1 {
            escaped(url)
        } else {
            url.to_owned()
        };
        for _ in 0..=(i % 3) {
            let response = app.fire(&url).await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "image/gif");
            assert_eq!(response.headers()["cache-control"], "no-store");
            assert_eq!(response.bytes().await.unwrap().len(), 43);
        }
        if i % 2 == 0 {
            app.fire(decision["viewable_url"].as_str().unwrap()).await;
            app.fire(decision["viewable_url"].as_str().unwrap()).await;
        }
    }

    let impressions =
        settled_total(&app, "3vision-visitez", "impressions", visitez.len() as u64).await;
    assert_eq!(impressions, visitez.len() as u64);
    let viewable = settled_total(
        &app,
        "3vision-visitez",
        "viewable",
        visitez.len().div_ceil(2) as u64,
    )
    .await;
    assert_eq!(viewable, visitez.len().div_ceil(2) as u64);
    let stats = app.stats("3vision-visitez", "").await;
    assert_eq!(stats["totals"]["served"], visitez.len() as u64);
    let metrics = app.metrics().await;
    // Only 3vision-visitez's impressions were fired; the metric is by slot.
    let line = format!(
        "regie_impressions_total{{slot=\"banner\"}} {}",
        visitez.len()
    );
    assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
}

async fn a_click_redirects_to_the_landing_url_and_counts_once(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let decision = app.decision("Publicité 4").await;
    let campaign = decision["campaign_id"].as_str().unwrap().to_owned();
    let landing = {
        let inventory = app.inventory().await;
        let c = inventory["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == campaign.as_str())
            .unwrap()
            .clone();
        let creative = c["creatives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == decision["creative"]["id"])
            .unwrap()
            .clone();
        creative["landing_url"].as_str().unwrap().to_owned()
    };

    // The reader saw the ad, and clicks a few seconds later.
    app.fire(decision["impression_url"].as_str().unwrap()).await;
    settled_total(&app, &campaign, "impressions", 1).await;
    app.clock.advance(Duration::seconds(2));
    let click_url = decision["click_url"].as_str().unwrap();
    for url in [
        escaped(click_url),
        click_url.to_owned(),
        click_url.to_owned(),
    ] {
        let response = app.fire(&url).await;
        assert_eq!(response.status(), 302);
        assert_eq!(response.headers()["location"], landing.as_str());
    }

    assert_eq!(settled_total(&app, &campaign, "clicks", 1).await, 1);
}

async fn forged_tampered_and_expired_tokens_count_nothing_and_never_redirect(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let decision = app.decision("banner").await;
    let campaign = decision["campaign_id"].as_str().unwrap().to_owned();
    let token = token_of(decision["click_url"].as_str().unwrap()).to_owned();

    let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = URL_SAFE_NO_PAD.encode(&bytes);
    let stranger = Signer::from_setting(&SecretString::from(
        "zz:a-key-this-deployment-never-had-at-all".to_owned(),
    ))
    .unwrap();
    let unknown_key = stranger.sign(&TokenPayload {
        decision_id: ulid::Ulid::new(),
        issued_at: app.clock.now_secs(),
        campaign: CampaignId::parse(&campaign).unwrap(),
        creative: CreativeId::parse(decision["creative"]["id"].as_str().unwrap()).unwrap(),
        slot: SlotName::parse("banner").unwrap(),
    });

    for bad in [
        tampered.as_str(),
        unknown_key.as_str(),
        "not-a-token",
        "AAAA",
    ] {
        let response = app.get(&format!("/v1/c/{bad}")).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert!(response.headers().get("location").is_none());
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let response = app.get(&format!("/v1/i/{bad}")).await;
        assert_eq!(response.status(), 200, "a beacon always answers the pixel");
    }

    // 24 hours and a second later, the click token has expired; the impression long before.
    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    let response = app.fire(decision["click_url"].as_str().unwrap()).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    app.fire(decision["impression_url"].as_str().unwrap()).await;

    // A valid beacon afterwards proves the flusher ran; the bad ones added nothing.
    let fresh = app.decision("banner").await;
    app.fire(fresh["impression_url"].as_str().unwrap()).await;
    let fresh_campaign = fresh["campaign_id"].as_str().unwrap().to_owned();
    assert_eq!(
        settled_total(&app, &fresh_campaign, "impressions", 1).await,
        1
    );
    let stats = app.stats(&campaign, "").await;
    assert_eq!(stats["totals"]["clicks"], 0);
    let metrics = app.metrics().await;
    for reason in ["bad_signature", "unknown_key", "malformed", "expired"] {
        assert!(
            metrics.contains(&format!(
                "regie_tracking_rejected_total{{kind=\"click\",reason=\"{reason}\"}}"
            )),
            "no rejection counted for {reason}"
        );
    }
}

async fn head_requests_count_nothing(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let decision = app.decision("banner").await;
    let campaign = decision["campaign_id"].as_str().unwrap().to_owned();

    for field in ["impression_url", "viewable_url", "click_url"] {
        let response = app
            .client
            .head(decision[field].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{field}");
        assert!(response.headers().get("location").is_none());
    }

    // A real impression of another decision shows the flush went through.
    let other = app.decision("banner").await;
    let other_campaign = other["campaign_id"].as_str().unwrap().to_owned();
    app.fire(other["impression_url"].as_str().unwrap()).await;
    settled_total(&app, &other_campaign, "impressions", 1).await;
    let stats = app.stats(&campaign, "").await;
    let expected_impressions = u64::from(other_campaign == campaign);
    assert_eq!(stats["totals"]["impressions"], expected_impressions);
    assert_eq!(stats["totals"]["viewable"], 0);
    assert_eq!(stats["totals"]["clicks"], 0);
}
