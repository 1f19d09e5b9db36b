//! The `optimize` rotation learns from real tracking events, on both stores and across
//! instances.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    ad_path, eventually, inventory_file, redis_for, spawn_app_with, AppOptions, RedisServer,
    StoreKind, TestApp, ADMIN_TOKEN,
};
use crate::on_both_stores;

on_both_stores!(an_optimize_slot_learns_which_campaign_readers_click);

/// A reader's browser: invalid-traffic rules treat a missing user agent as a bot.
const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";

const SLOT: &str = "Publicité 2";

/// One `optimize` slot with two campaigns of equal weight.
fn inventory() -> Value {
    let campaign = |id: &str| {
        json!({ "id": id, "advertiser_id": "adv", "slots": [SLOT], "weight": 1,
                "creatives": [{ "id": "t", "format": "text", "title": id,
                                "landing_url": format!("https://{id}.example/") }] })
    };
    json!({
        "slots": [{ "name": SLOT, "rotation": "optimize" }],
        "advertisers": [{ "id": "adv", "name": "Advertiser" }],
        "campaigns": [campaign("clicked"), campaign("ignored")],
    })
}

async fn spawn(redis_url: Option<String>, file: &tempfile::NamedTempFile) -> TestApp {
    spawn_app_with(AppOptions {
        inventory: file.path().to_owned(),
        // The background read of the counts, fast so that the test is.
        tweak: Box::new(|s| s.optimize_refresh_ms = 50),
        ..AppOptions::new(redis_url)
    })
    .await
}

fn reader() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(BROWSER_UA)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `n` readers each get a decision and see the ad; readers of "clicked" click every other
/// time, readers of "ignored" never. Returns the campaigns served, in order.
async fn readers(app: &TestApp, n: usize) -> Vec<String> {
    let client = reader();
    let mut served = Vec::with_capacity(n);
    for i in 0..n {
        let decision: Value = client
            .get(format!("{}{}", app.address, ad_path(SLOT)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let campaign = decision["campaign_id"].as_str().unwrap().to_owned();
        let fire = |field: &str| client.get(decision[field].as_str().unwrap()).send();
        assert_eq!(fire("impression_url").await.unwrap().status(), 200);
        if campaign == "clicked" && i % 2 == 0 {
            // The reader looks at the ad before clicking: a click within a second of its
            // decision is too fast to count.
            app.clock.advance(chrono::Duration::seconds(2));
            assert_eq!(fire("click_url").await.unwrap().status(), 302);
        }
        served.push(campaign);
    }
    served
}

/// How many impressions the slot's rotation has counted, as `explain=1` shows them.
async fn counted(app: &TestApp) -> u64 {
    let e = explain(app).await;
    ["clicked", "ignored"]
        .iter()
        .map(|c| explained(&e, c)["impressions"].as_u64().unwrap())
        .sum()
}

/// `rounds` rounds of 50 readers; after each, waits until the rotation has their events (the
/// flush and the background read take a few tens of milliseconds, more on a loaded machine:
/// waiting makes the number of rounds, not the machine's speed, what the rotation learns from).
async fn rounds_of_readers(app: &TestApp, rounds: u64) -> Vec<String> {
    let mut served = Vec::new();
    for round in 1..=rounds {
        served.extend(readers(app, 50).await);
        eventually(Duration::from_secs(10), || async {
            (counted(app).await == round * 50).then_some(())
        })
        .await
        .expect("the round's impressions reach the rotation");
    }
    served
}

fn share_of(served: &[String], campaign: &str) -> f64 {
    served.iter().filter(|c| *c == campaign).count() as f64 / served.len() as f64
}

/// The explanation of the slot, with the admin token.
async fn explain(app: &TestApp) -> Value {
    let response = app
        .get_as(&format!("{}?explain=1", ad_path(SLOT)), ADMIN_TOKEN)
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn explained<'a>(explanation: &'a Value, campaign: &str) -> &'a Value {
    explanation["explain"]["tiers"][0]["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["campaign_id"] == campaign)
        .unwrap()
}

async fn an_optimize_slot_learns_which_campaign_readers_click(kind: StoreKind) {
    let redis = redis_for(kind);
    let file = inventory_file(&inventory());
    let app = spawn(redis.as_ref().map(|r| r.url()), &file).await;

    // Nothing counted yet: the same uniform prior for both, so even shares.
    let before = explain(&app).await;
    assert_eq!(explained(&before, "clicked")["posterior_mean"], 0.5);
    let even = explained(&before, "clicked")["share"].as_f64().unwrap();
    assert!((even - 0.5).abs() < 0.03, "share before any event: {even}");

    let served = rounds_of_readers(&app, 8).await;

    // Decisions 301 to 400: the clicked campaign (50 % CTR) has the slot almost to itself.
    let late = share_of(&served[300..], "clicked");
    assert!(
        late > 0.8,
        "share of the clicked campaign, decisions 301-400: {late}"
    );
    // The ignored one was tried, not dropped at once.
    assert!(served.iter().any(|c| c == "ignored"));

    // explain=1 shows the evidence: posterior means (clicks + 1) / (impressions + 2) and the
    // shares the campaigns would get now.
    let after = explain(&app).await;
    let clicked = explained(&after, "clicked");
    let ignored = explained(&after, "ignored");
    let mean = |c: &Value| {
        (c["clicks"].as_f64().unwrap() + 1.0) / (c["impressions"].as_f64().unwrap() + 2.0)
    };
    assert!((clicked["posterior_mean"].as_f64().unwrap() - mean(clicked)).abs() < 1e-12);
    assert!((ignored["posterior_mean"].as_f64().unwrap() - mean(ignored)).abs() < 1e-12);
    assert_eq!(ignored["clicks"], 0);
    assert!(clicked["share"].as_f64().unwrap() > 0.95, "{after}");
    assert_eq!(
        after["explain"]["tiers"][0]["share_estimate"],
        json!({ "method": "monte_carlo", "draws": 10_000 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_instance_counted_steers_the_decisions_of_another() {
    let redis = RedisServer::start();
    let file = inventory_file(&inventory());
    let a = spawn(Some(redis.url()), &file).await;
    let b = spawn(Some(redis.url()), &file).await;

    // Every reader comes through instance A.
    rounds_of_readers(&a, 6).await;

    // Instance B served none of them, and still knows.
    eventually(Duration::from_secs(5), || async {
        (counted(&b).await == 300).then_some(())
    })
    .await
    .expect("instance B reads the counts instance A wrote");
    let explanation = explain(&b).await;
    assert!(
        explained(&explanation, "clicked")["share"]
            .as_f64()
            .unwrap()
            > 0.9
    );
    let client = reader();
    let mut clicked = 0;
    for _ in 0..100 {
        let decision: Value = client
            .get(format!("{}{}", b.address, ad_path(SLOT)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        clicked += usize::from(decision["campaign_id"] == "clicked");
    }
    assert!(
        clicked > 80,
        "instance B served the clicked campaign {clicked} times in 100"
    );
}
