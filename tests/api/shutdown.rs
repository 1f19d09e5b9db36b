//! Graceful shutdown of the real binary: SIGTERM right after a burst loses nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{free_port, RedisServer, TRACKING_KEYS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_a_burst_flushes_every_count_before_exit() {
    let redis = RedisServer::start();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_regie"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REGIE_LISTEN", format!("127.0.0.1:{port}"))
        .env("REGIE_REDIS_URL", redis.url())
        .env("REGIE_TRACKING_KEYS", TRACKING_KEYS)
        // Nothing is flushed on the way: every count below must come from the final flush.
        .env("REGIE_FLUSH_INTERVAL_MS", "600000")
        .env("REGIE_SHUTDOWN_TIMEOUT_SECS", "10")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = async {
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), ready)
        .await
        .expect("regie became ready");

    let mut served = 0u64;
    let mut impressions = 0u64;
    for _ in 0..100 {
        let decision: serde_json::Value = client
            .get(format!("{base}/v1/slots/Publicit%C3%A9%204/ad"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        served += 1;
        client
            .get(decision["impression_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        impressions += 1;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "regie did not exit within its shutdown timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");

    let mut conn = redis.connection();
    let (mut total_served, mut total_impressions) = (0u64, 0u64);
    for campaign in ["3vision-en-savoir-plus", "atelier-noel", "house-annonceurs"] {
        let key = format!("regie:totals:{campaign}");
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
