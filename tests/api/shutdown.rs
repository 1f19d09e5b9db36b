//! Graceful shutdown of the real binary: SIGTERM right after a burst loses nothing, and
//! leased budget units go back to the store.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    ad_path, eventually, inventory_file, json_log_lines, Binary, RedisServer, TRACKING_KEYS,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_a_burst_flushes_every_count_before_exit() {
    let redis = RedisServer::start();
    let redis_url = redis.url();
    let regie = Binary::start(
        &[
            ("REGIE_REDIS_URL", redis_url.as_str()),
            ("REGIE_TRACKING_KEYS", TRACKING_KEYS),
            // Nothing is flushed on the way: every count below must come from the final flush.
            ("REGIE_FLUSH_INTERVAL_MS", "600000"),
            ("REGIE_SHUTDOWN_TIMEOUT_SECS", "10"),
            ("RUST_LOG", "warn"),
        ],
        Stdio::null(),
    )
    .await;
    let client = crate::helpers::reader_client();

    let mut served = 0u64;
    let mut impressions = 0u64;
    for _ in 0..100 {
        let decision = regie.decision("/v1/slots/Publicit%C3%A9%204/ad").await;
        served += 1;
        client
            .get(decision["impression_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        impressions += 1;
    }
    let status = regie.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");

    let mut conn = redis.connection();
    let (mut total_served, mut total_impressions) = (0u64, 0u64);
    for campaign in ["3vision-en-savoir-plus", "atelier-noel", "house-annonceurs"] {
        let key = format!("regie:{{c:{campaign}}}:totals");
        let n: Option<u64> = redis::cmd("HGET")
            .arg(&key)
            .arg("served")
            .query(&mut conn)
            .unwrap();
        total_served += n.unwrap_or(0);
        let n: Option<u64> = redis::cmd("HGET")
            .arg(&key)
            .arg("impressions")
            .query(&mut conn)
            .unwrap();
        total_impressions += n.unwrap_or(0);
    }
    assert_eq!(total_served, served);
    assert_eq!(total_impressions, impressions);
}

/// `n` campaigns of slot "Publicité 2", each capped at 1 000 decisions over its life.
fn capped_campaigns(n: usize) -> Value {
    let campaigns: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("capped-{i:02}"), "advertiser_id": "adv", "slots": ["Publicité 2"],
                "priority": "standard", "weight": 1, "caps": { "total_impressions": 1000 },
                "creatives": [{ "id": "t", "format": "text", "title": format!("capped {i}"),
                                "landing_url": "https://adv.example/" }]
            })
        })
        .collect();
    json!({
        "slots": [{ "name": "Publicité 2" }],
        "advertisers": [{ "id": "adv", "name": "Adv" }],
        "campaigns": campaigns,
    })
}

/// More than two of a walk's batches of leases (and of a shutdown's give-backs).
const CAPPED: usize = 70;
const BLOCK: u64 = 10;

/// What every instance has leased of the campaign's budget, as the store keeps it.
fn leased(redis: &RedisServer, campaign: &str) -> u64 {
    let leased: Option<u64> = redis::cmd("GET")
        .arg(format!("regie:{{c:{campaign}}}:lease"))
        .query(&mut redis.connection())
        .unwrap();
    leased.unwrap_or(0)
}

/// Starts regie on `redis` with [`CAPPED`] capped campaigns, its log to `log`, and waits until
/// it has leased a block of each.
async fn leasing_instance(redis: &RedisServer, log: &tempfile::NamedTempFile) -> Binary {
    let inventory = inventory_file(&capped_campaigns(CAPPED));
    let block = BLOCK.to_string();
    let regie = Binary::on_redis(
        &redis.url(),
        inventory.path(),
        &[
            ("REGIE_LEASE_BLOCK", block.as_str()),
            ("REGIE_SHUTDOWN_TIMEOUT_SECS", "10"),
        ],
        Stdio::from(log.reopen().unwrap()),
    )
    .await;
    let all_leased = || async {
        (0..CAPPED)
            .all(|i| leased(redis, &format!("capped-{i:02}")) == BLOCK)
            .then_some(())
    };
    assert!(
        eventually(Duration::from_secs(10), all_leased)
            .await
            .is_some(),
        "a block of each budget is leased"
    );
    regie
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_gives_back_every_leased_unit_it_did_not_serve() {
    let redis = RedisServer::start();
    let log = tempfile::NamedTempFile::new().unwrap();
    let regie = leasing_instance(&redis, &log).await;
    let mut served = std::collections::HashMap::<String, u64>::new();
    for _ in 0..50 {
        let decision = regie.decision(&ad_path("Publicité 2")).await;
        *served
            .entry(decision["campaign_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }

    assert!(regie.terminate(Duration::from_secs(15)).await.success());

    // What stays leased is what was served: the rest went back for other instances.
    for i in 0..CAPPED {
        let campaign = format!("capped-{i:02}");
        assert_eq!(
            leased(&redis, &campaign),
            served.get(&campaign).copied().unwrap_or(0),
            "{campaign}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_a_shutdown_cannot_give_back_while_redis_is_down_are_logged_in_one_line() {
    let mut redis = RedisServer::start();
    let log = tempfile::NamedTempFile::new().unwrap();
    let regie = leasing_instance(&redis, &log).await;

    redis.stop();
    assert!(regie.terminate(Duration::from_secs(15)).await.success());

    let text = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<Value> = json_log_lines(&text)
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot give back leased units"))
        })
        .collect();
    assert_eq!(lines.len(), 1, "one line for every budget: {text}");
    assert_eq!(lines[0]["campaigns"], CAPPED, "{text}");
    assert_eq!(lines[0]["units"], CAPPED as u64 * BLOCK, "{text}");
}
