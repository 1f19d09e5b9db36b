//! The store's circuit breaker (contract section 9): while Redis is frozen, public requests
//! skip it at once, frequency-capped campaigns are not served and the rest is; a background
//! probe brings it back, and the outage is logged once.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    ad_path, eventually, inventory_file, json_log_lines, reader_client, spawn_app_with, AppOptions,
    Binary, RedisServer, SlowConnects,
};

/// The capped campaign of the `banner` slot; the slot's other campaign is the house ad.
const CAPPED: &str = "3vision-visitez";
const HOUSE: &str = "house-annonceurs";
/// Without the breaker, a request would wait this long for a frozen Redis.
const RESPONSE_TIMEOUT_MS: &str = "30000";
/// How long the test lets one request take before calling it stuck: far below the response
/// timeout, far above the 50 ms budget.
const STUCK: Duration = Duration::from_secs(5);

/// The repository's inventory with a frequency cap on the `banner` slot's paid campaign,
/// high enough never to be reached.
fn capped_inventory() -> tempfile::NamedTempFile {
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read("config/inventory.json").unwrap()).unwrap();
    let campaigns = doc["campaigns"].as_array_mut().unwrap();
    let capped = campaigns.iter_mut().find(|c| c["id"] == CAPPED).unwrap();
    capped["frequency"] = json!({ "max": 1_000_000, "per_seconds": 3600 });
    inventory_file(&doc)
}

/// Waits until the capped campaign is served to a reader with a `uid`: a request that comes
/// while its worker is still connecting to Redis may wait for the connection longer than the
/// breaker allows.
async fn until_capped_is_served(base: &str) {
    let served = eventually(Duration::from_secs(10), || async {
        (banner_for(base, Some("before")).await == CAPPED).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "the capped campaign is served while Redis answers"
    );
}

/// The campaign a reader with `uid` gets on `banner`, asserting the answer came in time.
async fn banner_for(base: &str, uid: Option<&str>) -> String {
    let query = uid.map_or_else(String::new, |uid| format!("?uid={uid}"));
    let response = tokio::time::timeout(
        STUCK,
        reader_client()
            .get(format!("{base}{}{query}", ad_path("banner")))
            .send(),
    )
    .await
    .expect("a decision waited on the frozen store")
    .unwrap();
    assert_eq!(response.status(), 200);
    let decision: Value = response.json().await.unwrap();
    decision["campaign_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_frozen_capped_campaigns_are_skipped_at_once_and_the_rest_is_served() {
    let redis = RedisServer::start();
    let inventory = capped_inventory();
    let mut options = AppOptions::new(Some(redis.url()));
    options.inventory = inventory.path().to_owned();
    options.tweak = Box::new(|s| {
        s.store_request_timeout_ms = 50;
        s.redis_response_timeout_ms = RESPONSE_TIMEOUT_MS.parse().unwrap();
    });
    let app = spawn_app_with(options).await;
    until_capped_is_served(&app.address).await;

    redis.freeze();
    let mut during = Vec::new();
    for i in 0..20 {
        during.push(banner_for(&app.address, Some(&format!("reader-{i}"))).await);
    }
    let without_uid = banner_for(&app.address, None).await;
    redis.thaw();

    assert!(
        during.iter().all(|c| c == HOUSE),
        "a frequency-capped campaign was served without its store: {during:?}"
    );
    assert_eq!(
        without_uid, CAPPED,
        "no frequency cap applies without a uid"
    );
    let back = eventually(Duration::from_secs(10), || async {
        (banner_for(&app.address, Some("after")).await == CAPPED).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "the breaker did not close once Redis answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_when_it_begins_and_once_when_it_ends() {
    let redis = RedisServer::start();
    let inventory = capped_inventory();
    let log = tempfile::NamedTempFile::new().unwrap();
    let url = redis.url();
    let regie = Binary::on_redis(
        &url,
        inventory.path(),
        &[("REGIE_REDIS_RESPONSE_TIMEOUT_MS", RESPONSE_TIMEOUT_MS)],
        Stdio::from(log.reopen().unwrap()),
    )
    .await;
    until_capped_is_served(&regie.base).await;
    // Lines logged before the outage (a first call that took too long) are not its lines.
    // Told apart by their time rather than by a count of the file's lines taken here: such a
    // line was once counted as the outage's.
    let frozen_at = chrono::Utc::now();

    redis.freeze();
    for i in 0..30 {
        assert_eq!(
            banner_for(&regie.base, Some(&format!("reader-{i}"))).await,
            HOUSE
        );
    }
    redis.thaw();
    let back = eventually(Duration::from_secs(10), || async {
        (banner_for(&regie.base, Some("after")).await == CAPPED).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "the breaker did not close once Redis answered"
    );
    assert!(regie.terminate(Duration::from_secs(15)).await.success());

    let text = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<Value> = json_log_lines(&text)
        .into_iter()
        .filter(|l| {
            l["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .is_some_and(|t| t >= frozen_at)
        })
        .collect();
    let count = |start: &str| {
        lines
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(start)))
            .count()
    };
    assert_eq!(count("store slow or unreachable"), 1, "{text}");
    assert_eq!(count("store answers again"), 1, "{text}");
    assert_eq!(
        count("frequency caps unavailable"),
        0,
        "logged per request: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_connect_to_redis_as_they_start_so_a_slow_connect_does_not_open_the_breaker() {
    const WORKERS: usize = 2;
    let redis = RedisServer::start();
    // Each new connection takes four times the request budget to open; the budget is still
    // far more than a round trip takes on an open connection, even in a debug build on a
    // loaded machine.
    let proxy = SlowConnects::start(redis.port(), Duration::from_millis(1_000)).await;
    let inventory = capped_inventory();
    let mut options = AppOptions::new(Some(proxy.redis_url()));
    options.inventory = inventory.path().to_owned();
    options.tweak = Box::new(|s| {
        s.workers = Some(WORKERS);
        s.store_request_timeout_ms = 250;
        s.redis_connect_timeout_ms = 5_000;
    });
    let app = spawn_app_with(options).await;

    // No request has been made: the workers opened their connections on their own.
    let connected = format!("regie_store_roundtrips_total{{op=\"connect\"}} {WORKERS}");
    let ready = eventually(Duration::from_secs(10), || async {
        app.metrics().await.contains(&connected).then_some(())
    })
    .await;
    assert!(ready.is_some(), "{}", app.metrics().await);

    // Enough readers for both workers: every first request of a worker finds its connection
    // open and gets the capped campaign within the budget.
    for i in 0..20 {
        assert_eq!(
            banner_for(&app.address, Some(&format!("reader-{i}"))).await,
            CAPPED,
            "reader {i}"
        );
    }
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("regie_store_errors_total{op="),
        "a store call failed: {metrics}"
    );
}
