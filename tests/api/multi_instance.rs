//! Several instances sharing one Redis.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{eventually, settled_total, spawn_app, RedisServer, StoreKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_put_through_one_instance_is_served_by_another_within_one_second() {
    let redis = RedisServer::start();
    let a = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let b = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let mut doc = a.inventory().await;
    for campaign in doc["campaigns"].as_array_mut().unwrap() {
        if campaign["id"] != "atelier-noel" {
            campaign["status"] = "paused".into();
        }
    }

    assert_eq!(a.put_inventory(&doc).await.status(), 200);
    let written = Instant::now();

    let served = eventually(Duration::from_secs(1), || async {
        let mut all_atelier = true;
        for _ in 0..10 {
            let decision = b.decision("Publicité 2").await;
            all_atelier &= decision["campaign_id"] == "atelier-noel";
        }
        all_atelier.then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "instance B did not serve the change within one second"
    );
    assert!(written.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_keep_serving_the_last_good_inventory_when_redis_restarts_empty() {
    let mut redis = RedisServer::start();
    let a = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let b = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let mut doc = a.inventory().await;
    doc["campaigns"][1]["weight"] = 7.into();
    assert_eq!(a.put_inventory(&doc).await.status(), 200);
    let version = eventually(Duration::from_secs(2), || async {
        let ready: Value = b.get("/readyz").await.json().await.unwrap();
        (ready["inventory_version"] == 2).then_some(())
    })
    .await;
    assert!(version.is_some());

    redis.restart(false);

    for app in [&a, &b] {
        for slot in ["banner", "Publicité 2", "Publicité 3", "Publicité 4"] {
            app.decision(slot).await;
        }
    }
    // The instances write their inventory back, under its version, and say so.
    let restored = eventually(Duration::from_secs(5), || async {
        let mut conn = redis.connection();
        let stored: Option<u64> = redis::cmd("GET")
            .arg("regie:{inventory}:version")
            .query(&mut conn)
            .ok()?;
        (stored == Some(2)).then_some(())
    })
    .await;
    assert!(
        restored.is_some(),
        "the inventory was not written back to Redis"
    );
    let ready: Value = a.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["inventory_version"], 2);
    let doc_after = a.inventory().await;
    assert_eq!(doc_after["campaigns"][1]["weight"], 7);
    // A write after the restart still moves the version forward.
    let response: Value = a.put_inventory(&doc_after).await.json().await.unwrap();
    assert_eq!(response["version"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_token_fired_at_two_instances_is_counted_once() {
    let redis = RedisServer::start();
    let a = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let b = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let decision = a.decision("Publicité 4").await;
    let campaign = decision["campaign_id"].as_str().unwrap().to_owned();
    let token_path = decision["impression_url"]
        .as_str()
        .unwrap()
        .split_once("/v1/")
        .unwrap()
        .1
        .to_owned();
    let click_path = decision["click_url"]
        .as_str()
        .unwrap()
        .split_once("/v1/")
        .unwrap()
        .1
        .to_owned();

    // The impression is counted before the reader clicks, two seconds later.
    assert_eq!(a.get(&format!("/v1/{token_path}")).await.status(), 200);
    settled_total(&b, &campaign, "impressions", 1).await;
    a.clock.advance(chrono::Duration::seconds(2));
    b.clock.advance(chrono::Duration::seconds(2));
    for app in [&a, &b, &a, &b] {
        assert_eq!(app.get(&format!("/v1/{token_path}")).await.status(), 200);
        assert_eq!(app.get(&format!("/v1/{click_path}")).await.status(), 302);
    }

    assert_eq!(settled_total(&b, &campaign, "impressions", 1).await, 1);
    assert_eq!(settled_total(&a, &campaign, "clicks", 1).await, 1);
    let stats = b.stats(&campaign, "").await;
    assert_eq!(
        stats["totals"]["served"], 1,
        "served decisions are visible on every instance"
    );
}
