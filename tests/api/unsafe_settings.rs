//! Unsafe settings: regie refuses to start, with exit status 2 and one line naming the
//! setting; instances sharing a store without configured keys verify each other's tokens.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{
    free_port, settled_total, spawn_app_with, AppOptions, Binary, RedisServer, ADMIN_TOKEN,
};

/// Runs the binary with only `settings` (and `PATH`) until it exits, at most ten seconds;
/// answers its exit code and standard error.
fn run_until_exit(settings: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regie"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REGIE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .envs(settings.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_refused(settings: &[(&str, &str)], variable: &str) {
    let (code, stderr) = run_until_exit(settings);

    assert_eq!(code, Some(2), "exit status; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(variable), "{variable} named: {stderr}");
}

#[test]
fn an_admin_token_shorter_than_32_bytes_is_refused() {
    assert_refused(&[("REGIE_ADMIN_TOKEN", "ten-bytes!")], "REGIE_ADMIN_TOKEN");
    assert_refused(
        &[("REGIE_ADMIN_TOKEN", "thirty-one-bytes-is-not-enough!")],
        "REGIE_ADMIN_TOKEN",
    );
}

#[test]
fn a_tracking_secret_shorter_than_32_bytes_is_refused() {
    let long = "k1:0123456789abcdef0123456789abcdef";
    assert_refused(
        &[("REGIE_TRACKING_KEYS", "k1:short")],
        "REGIE_TRACKING_KEYS",
    );
    assert_refused(
        &[("REGIE_TRACKING_KEYS", &format!("{long},k2:short-old-key"))],
        "REGIE_TRACKING_KEYS",
    );
}

#[test]
fn a_viewer_key_shorter_than_32_bytes_is_refused() {
    assert_refused(
        &[("REGIE_VIEWER_KEY", "thirty-one-bytes-is-not-enough!")],
        "REGIE_VIEWER_KEY",
    );
}

#[test]
fn production_without_a_public_url_is_refused() {
    assert_refused(&[("REGIE_ENVIRONMENT", "production")], "REGIE_PUBLIC_URL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_with_a_public_url_and_long_secrets_starts() {
    let binary = Binary::start(
        &[
            ("REGIE_ENVIRONMENT", "production"),
            ("REGIE_PUBLIC_URL", "https://ads.example"),
            ("REGIE_ADMIN_TOKEN", ADMIN_TOKEN),
            ("REGIE_DRAIN_DELAY_MS", "0"),
        ],
        Stdio::null(),
    )
    .await;

    let decision = binary.decision("/v1/slots/banner/ad").await;

    assert!(decision["impression_url"]
        .as_str()
        .unwrap()
        .starts_with("https://ads.example/v1/i/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_without_tracking_keys_count_each_others_beacons() {
    let redis = RedisServer::start();
    let without_keys = || {
        let mut options = AppOptions::new(Some(redis.url()));
        options.tweak = Box::new(|s| s.tracking_keys = None);
        options
    };
    let a = spawn_app_with(without_keys()).await;
    let b = spawn_app_with(without_keys()).await;

    let decision = a.decision("Publicité 4").await;
    let campaign = decision["campaign_id"].as_str().unwrap().to_owned();
    let on_b = |url: &str| url.replace(&a.address, &b.address);
    b.fire(&on_b(decision["impression_url"].as_str().unwrap()))
        .await;
    // The reader clicks two seconds after the decision, as a person does.
    b.clock.advance(chrono::Duration::seconds(2));
    let click = b.fire(&on_b(decision["click_url"].as_str().unwrap())).await;

    assert_eq!(click.status(), 302, "B redirects A's click");
    assert_eq!(settled_total(&a, &campaign, "impressions", 1).await, 1);
    assert_eq!(settled_total(&a, &campaign, "clicks", 1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_redis_was_down_adopts_the_shared_key_once_it_is_back() {
    let mut redis = RedisServer::start();
    let without_keys = |url: String| {
        let mut options = AppOptions::new(Some(url));
        options.tweak = Box::new(|s| s.tracking_keys = None);
        options
    };
    redis.stop();
    let a = spawn_app_with(without_keys(redis.url())).await;
    redis.restart(true);
    let b = spawn_app_with(without_keys(redis.url())).await;

    let verified_by_b = crate::helpers::eventually(Duration::from_secs(10), || async {
        let response = a.get(&crate::helpers::ad_path("banner")).await;
        if response.status() != 200 {
            return None;
        }
        let decision: serde_json::Value = response.json().await.ok()?;
        let click = decision["click_url"]
            .as_str()?
            .replace(&a.address, &b.address);
        (b.fire(&click).await.status() == 302).then_some(())
    })
    .await;

    assert!(
        verified_by_b.is_some(),
        "A's tokens verify on B once A reaches the store"
    );
}
