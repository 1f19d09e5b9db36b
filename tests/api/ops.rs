//! Operations: Prometheus metrics, their cardinality, health and readiness.

use std::io::Write;
use std::process::{Command, Stdio};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;

use crate::helpers::{
    ad_path, eventually, free_port, redis_for, spawn_app, spawn_app_with, urlencode, AppOptions,
    StoreKind,
};
use crate::on_both_stores;

on_both_stores!(
    metrics_pass_promtool_check,
    requests_for_unknown_slots_and_paths_add_no_series
);

/// The series in a Prometheus text exposition (every line that is not a comment).
fn series(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(name, _)| name).to_owned())
        .collect()
}

async fn metrics_pass_promtool_check(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let decision = app.decision("Publicité 2").await;
    app.fire(decision["impression_url"].as_str().unwrap()).await;
    app.get("/v1/i/forged").await;
    app.get(&ad_path("nope")).await;

    let metrics = app.metrics().await;

    for name in [
        "regie_decisions_total",
        "regie_http_request_duration_seconds_bucket",
        "regie_decision_duration_seconds_bucket",
        "regie_inventory_version",
        "regie_inventory_age_seconds",
        "regie_store_up",
        "regie_events_pending",
        "regie_events_dropped_total",
        "regie_tracking_rejected_total",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian's prometheus package; the README's test command installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn requests_for_unknown_slots_and_paths_add_no_series(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let mut rng = StdRng::seed_from_u64(10_000);
    let random_name = |rng: &mut StdRng| -> String {
        let len = rng.random_range(1..40);
        (0..len).map(|_| rng.random_range('a'..='z')).collect()
    };
    // One of each kind of answer first, so that their (closed-set) series exist.
    app.get(&ad_path("warm-up")).await;
    app.get("/warm/up").await;
    app.get("/v1/slots/%07/ad").await;
    app.get("/v1/i/warm-up").await;
    app.get("/v1/c/warm-up").await;
    app.metrics().await; // the scrape's own latency series
    let before = series(&app.metrics().await);

    for i in 0..10_000 {
        let name = random_name(&mut rng);
        let path = match i % 5 {
            0 => ad_path(&format!("Publicité {name}")),
            1 => format!("/{name}/{}", random_name(&mut rng)),
            2 => format!("/v1/slots/{}%07/ad", urlencode(&name)),
            3 => format!("/v1/i/{name}"),
            _ => format!("/v1/c/{name}"),
        };
        let status = app.get(&path).await.status().as_u16();
        assert!(
            (400..500).contains(&status) || status == 200,
            "{path}: {status}"
        );
    }

    let after = series(&app.metrics().await);
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(new.is_empty(), "new series appeared: {new:?}");
    assert_eq!(before.len(), after.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_until_an_inventory_is_loaded_and_says_why() {
    // A Redis that is not there: the instance starts, stays alive, and is not ready.
    let nowhere = format!("redis://127.0.0.1:{}/0", free_port());
    let app = spawn_app_with(AppOptions::new(Some(nowhere))).await;

    assert_eq!(app.get("/healthz").await.status(), 200);
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["inventory_version"], Value::Null);
    assert_eq!(body["store"]["kind"], "redis");
    assert_eq!(body["store"]["reachable"], false);
    let response = app.get(&ad_path("banner")).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_draining_once_a_shutdown_begins_while_ads_are_still_served() {
    let mut options = AppOptions::new(None);
    options.tweak = Box::new(|s| s.drain_delay_ms = 3_000);
    let app = spawn_app_with(options).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    app.begin_shutdown();

    let draining = eventually(std::time::Duration::from_secs(2), || async {
        let response = app.get("/readyz").await;
        let status = response.status();
        let body: Value = response.json().await.ok()?;
        (status == 503 && body["status"] == "draining").then_some(())
    })
    .await;
    assert!(draining.is_some(), "/readyz did not say draining");
    assert_eq!(
        app.get(&ad_path("banner")).await.status(),
        200,
        "still serving while draining"
    );
}

/// An app with its own operations listener (`REGIE_OPS_LISTEN`) on a free port.
async fn spawn_with_ops_listener(mut options: AppOptions) -> crate::helpers::TestApp {
    let earlier = std::mem::replace(&mut options.tweak, Box::new(|_| {}));
    options.tweak = Box::new(move |s| {
        earlier(s);
        s.ops_listen = Some("127.0.0.1:0".into());
    });
    spawn_app_with(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_ops_listener_metrics_health_and_readiness_are_answered_there_only() {
    let app = spawn_with_ops_listener(AppOptions::new(None)).await;
    assert_ne!(app.ops_address, app.address);
    app.decision("banner").await;

    for path in ["/metrics", "/healthz", "/readyz"] {
        let public = app.get(path).await;
        assert_eq!(public.status(), 404, "{path} on the service listener");
        let body: Value = public.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");

        let ops = app
            .client
            .get(format!("{}{path}", app.ops_address))
            .send()
            .await
            .unwrap();
        assert_eq!(ops.status(), 200, "{path} on the ops listener");
    }
    assert!(app
        .metrics()
        .await
        .contains(r#"regie_decisions_total{outcome="filled",slot="banner"} 1"#));
    let ad_on_ops = app
        .client
        .get(format!("{}{}", app.ops_address, ad_path("banner")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ad_on_ops.status(),
        404,
        "ads are not served on the ops listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_listener_says_draining_while_the_service_listener_still_serves() {
    let mut options = AppOptions::new(None);
    options.tweak = Box::new(|s| s.drain_delay_ms = 3_000);
    let app = spawn_with_ops_listener(options).await;
    let readyz = format!("{}/readyz", app.ops_address);
    assert_eq!(app.client.get(&readyz).send().await.unwrap().status(), 200);

    app.begin_shutdown();

    let draining = eventually(std::time::Duration::from_secs(2), || async {
        let response = app.client.get(&readyz).send().await.ok()?;
        let status = response.status();
        let body: Value = response.json().await.ok()?;
        (status == 503 && body["status"] == "draining").then_some(())
    })
    .await;
    assert!(
        draining.is_some(),
        "/readyz on the ops listener did not say draining"
    );
    assert_eq!(app.get(&ad_path("banner")).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_healthcheck_passes_on_the_ops_port_and_fails_on_the_service_port() {
    let ops_port = free_port().to_string();
    let ops_address = format!("127.0.0.1:{ops_port}");
    let regie =
        crate::helpers::Binary::start(&[("REGIE_OPS_LISTEN", ops_address.as_str())], Stdio::null())
            .await;
    let healthcheck = |address: &str| {
        Command::new(env!("CARGO_BIN_EXE_regie"))
            .args(["healthcheck", "--address", address])
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };

    assert!(healthcheck(&ops_address).success());
    let service = regie.base.trim_start_matches("http://").to_owned();
    assert!(
        !healthcheck(&service).success(),
        "/healthz answered on the service port"
    );
}
