//! The real binary's logs with the production settings: one JSON line per event, each request in
//! its own span (request id, method, route pattern), tokens never written.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{json_log_lines, Binary, TRACKING_KEYS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_logs_in_its_own_span_by_route_pattern_without_its_token() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let regie = Binary::start(
        &[
            ("REGIE_ENVIRONMENT", "production"),
            ("REGIE_TRACKING_KEYS", TRACKING_KEYS),
            ("REGIE_DRAIN_DELAY_MS", "0"),
            // The "answered" line of every request is at debug level.
            ("RUST_LOG", "debug"),
        ],
        Stdio::from(log.reopen().unwrap()),
    )
    .await;
    let base = regie.base.clone();
    let client = crate::helpers::reader_client();

    let decision = regie.decision("/v1/slots/Publicit%C3%A9%202/ad").await;
    let impression_url = decision["impression_url"].as_str().unwrap();
    let token = impression_url.rsplit('/').next().unwrap().to_owned();
    assert!(client
        .get(impression_url)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let unknown = client
        .get(format!("{base}/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    assert!(regie.terminate(Duration::from_secs(15)).await.success());

    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains('\u{1b}'), "colour codes in a log file");
    assert!(!text.contains(&token), "a token reached the log");
    let lines = json_log_lines(&text);
    let answered: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "answered")
        .collect();
    let routes: Vec<(&str, &str)> = answered
        .iter()
        .map(|l| {
            (
                l["span"]["route"].as_str().unwrap(),
                l["span"]["method"].as_str().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("/v1/slots/{slot}/ad", "GET"),
        ("/v1/i/{token}", "GET"),
        ("unmatched", "GET"),
    ] {
        assert!(routes.contains(&expected), "{expected:?} not in {routes:?}");
    }
    let ids: HashSet<u64> = answered
        .iter()
        .map(|l| l["span"]["request_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), answered.len(), "request ids repeat");
    // A line logged outside any request carries none, even after requests ran on its thread.
    let outside: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "regie is listening" || l["message"] == "stopped")
        .collect();
    assert!(!outside.is_empty(), "{text}");
    for line in outside {
        assert!(line.get("span").is_none(), "{line}");
    }
}
