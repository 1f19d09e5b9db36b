//! Graceful shutdown of the real binary: SIGTERM right after a burst loses nothing.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Binary, RedisServer, TRACKING_KEYS};

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
