//! regie on a real Redis Cluster (contract section 10): inventory propagation, exact counts
//! and caps across two instances, and a primary failing over during traffic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::RedisCluster;
use crate::helpers::{
    add_bulk_campaigns, eventually, inventory_file, settled_total, spawn_app_with, AppOptions,
    TestApp,
};

/// A campaign of a text creative in `slots`.
fn text_campaign(id: &str, slots: &[&str], extra: Value) -> Value {
    let mut campaign = json!({
        "id": id, "advertiser_id": "adv", "slots": slots, "weight": 1,
        "creatives": [{ "id": "t", "format": "text", "title": id,
                        "landing_url": format!("https://{id}.example/") }]
    });
    campaign
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    campaign
}

/// An instance on `seeds` under `prefix`, serving `doc` (written to a file kept alive by the
/// returned handle).
async fn app_on_cluster(
    seeds: &str,
    prefix: &str,
    doc: Option<&Value>,
) -> (TestApp, Option<tempfile::NamedTempFile>) {
    let file = doc.map(inventory_file);
    let mut options = AppOptions::new(None);
    if let Some(file) = &file {
        options.inventory = file.path().to_owned();
    }
    let (seeds, prefix) = (seeds.to_owned(), prefix.to_owned());
    options.tweak = Box::new(move |settings| {
        settings.redis_cluster = Some(seeds.into());
        settings.key_prefix = prefix;
        // The failover test's cluster takes a couple of seconds to promote a replica.
        settings.shutdown_timeout_secs = 10;
    });
    (spawn_app_with(options).await, file)
}

/// The path of a tracking URL of this decision, to fire at any instance.
fn tracking_path(decision: &Value, field: &str) -> String {
    let url = decision[field].as_str().unwrap();
    format!("/v1/{}", url.split_once("/v1/").unwrap().1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_put_through_one_instance_is_served_by_another_within_one_second() {
    let cluster = RedisCluster::shared();
    let prefix = "propagation";
    let (a, _) = app_on_cluster(&cluster.seeds(), prefix, None).await;
    let (b, _) = app_on_cluster(&cluster.seeds(), prefix, None).await;
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
            all_atelier &= b.decision("Publicité 2").await["campaign_id"] == "atelier-noel";
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
async fn a_document_of_megabytes_put_through_one_instance_is_read_whole_by_another() {
    let cluster = RedisCluster::shared();
    let prefix = "megabytes";
    let (a, _) = app_on_cluster(&cluster.seeds(), prefix, None).await;
    let mut doc = a.inventory().await;
    add_bulk_campaigns(&mut doc, 3_000);

    let response = a.put_inventory(&doc).await;

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    doc["version"] = answer["version"].clone();
    // A new instance reads the document from the cluster.
    let (b, _) = app_on_cluster(&cluster.seeds(), prefix, None).await;
    assert!(b.inventory().await == doc, "the document came back changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_fired_at_two_instances_are_counted_exactly_once() {
    let cluster = RedisCluster::shared();
    let prefix = "exact";
    let slots = ["Publicité 2"];
    let doc = json!({
        "slots": [{ "name": "Publicité 2" }],
        "advertisers": [{ "id": "adv", "name": "Advertiser" }],
        "campaigns": (1..=6).map(|i| text_campaign(&format!("c{i}"), &slots, json!({})))
            .collect::<Vec<_>>(),
    });
    let (a, _f) = app_on_cluster(&cluster.seeds(), prefix, Some(&doc)).await;
    let (b, _g) = app_on_cluster(&cluster.seeds(), prefix, Some(&doc)).await;

    // Decisions from both instances; each impression fired at both (a replay), a click on
    // every third decision, fired at the instance that did not serve it.
    let mut expected: HashMap<String, (u64, u64)> = HashMap::new();
    for i in 0..60 {
        let (serving, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let decision = serving.decision("Publicité 2").await;
        let campaign = decision["campaign_id"].as_str().unwrap().to_owned();
        let impression = tracking_path(&decision, "impression_url");
        assert_eq!(serving.get(&impression).await.status(), 200);
        assert_eq!(other.get(&impression).await.status(), 200);
        let entry = expected.entry(campaign).or_default();
        entry.0 += 1;
        if i % 3 == 0 {
            // The reader looks at the ad before clicking: a click within a second of its
            // decision is too fast to count.
            for app in [&a, &b] {
                app.clock.advance(chrono::Duration::seconds(2));
            }
            let click = tracking_path(&decision, "click_url");
            assert_eq!(other.get(&click).await.status(), 302);
            entry.1 += 1;
        }
    }

    assert!(expected.len() > 1, "the decisions span several campaigns");
    for (campaign, (decisions, clicks)) in &expected {
        assert_eq!(
            settled_total(&a, campaign, "impressions", *decisions).await,
            *decisions,
            "impressions of {campaign}"
        );
        assert_eq!(
            settled_total(&b, campaign, "served", *decisions).await,
            *decisions,
            "served decisions of {campaign}"
        );
        assert_eq!(
            settled_total(&b, campaign, "clicks", *clicks).await,
            *clicks,
            "clicks of {campaign}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_a_capped_campaign_exactly_to_its_cap() {
    let cluster = RedisCluster::shared();
    let prefix = "caps";
    let slots = ["Publicité 2"];
    let doc = json!({
        "slots": [{ "name": "Publicité 2" }],
        "advertisers": [{ "id": "adv", "name": "Advertiser" }],
        "campaigns": [
            text_campaign("capped", &slots, json!({ "priority": "sponsorship",
                                                     "caps": { "total_impressions": 300 } })),
            text_campaign("filler", &slots, json!({})),
        ],
    });
    let (a, _f) = app_on_cluster(&cluster.seeds(), prefix, Some(&doc)).await;
    let (b, _g) = app_on_cluster(&cluster.seeds(), prefix, Some(&doc)).await;

    let mut capped = 0u64;
    let mut requests = 0;
    while capped < 300 && requests < 6_000 {
        for app in [&a, &b] {
            if app.decision("Publicité 2").await["campaign_id"] == "capped" {
                capped += 1;
            }
            requests += 1;
        }
        if requests % 50 == 0 {
            // Leave the refill task a moment when the local lease ran dry.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for _ in 0..100 {
        for app in [&a, &b] {
            if app.decision("Publicité 2").await["campaign_id"] == "capped" {
                capped += 1;
            }
        }
    }

    assert_eq!(capped, 300, "the whole budget is delivered, never more");
    assert_eq!(settled_total(&a, "capped", "served", 300).await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_fails_over_during_traffic_loses_no_counted_event() {
    let mut cluster = RedisCluster::start();
    let prefix = "failover";
    let slots = ["Publicité 2"];
    let doc = json!({
        "slots": [{ "name": "Publicité 2" }],
        "advertisers": [{ "id": "adv", "name": "Advertiser" }],
        "campaigns": [
            text_campaign("steady", &slots, json!({ "priority": "sponsorship" })),
            text_campaign("capped", &slots, json!({ "priority": "sponsorship", "weight": 1,
                                                     "caps": { "total_impressions": 150 } })),
        ],
    });
    let (a, _f) = app_on_cluster(&cluster.seeds(), prefix, Some(&doc)).await;
    let (b, _g) = app_on_cluster(&cluster.seeds(), prefix, Some(&doc)).await;
    let mut expected: HashMap<String, u64> = HashMap::new();
    let traffic = async |n: usize, expected: &mut HashMap<String, u64>| {
        for i in 0..n {
            let (serving, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let decision = serving.decision("Publicité 2").await;
            let impression = tracking_path(&decision, "impression_url");
            assert_eq!(other.get(&impression).await.status(), 200);
            *expected
                .entry(decision["campaign_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    };
    traffic(100, &mut expected).await;

    // The primary holding the steady campaign's counters dies; traffic goes on meanwhile.
    let killed = cluster.kill_primary_for(&format!("{prefix}:{{c:steady}}:totals"));
    traffic(100, &mut expected).await;
    cluster.wait_for_failover(killed);
    traffic(100, &mut expected).await;
    // Writes that count wait for a replica: the failed node comes back as the new primary's.
    cluster.restart_node(killed);
    traffic(100, &mut expected).await;

    let capped = expected.get("capped").copied().unwrap_or(0);
    assert!(capped <= 150, "the cap was overshot: {capped}");
    for (campaign, n) in &expected {
        assert_eq!(
            settled_total(&a, campaign, "served", *n).await,
            *n,
            "served decisions of {campaign}"
        );
        assert_eq!(
            settled_total(&b, campaign, "impressions", *n).await,
            *n,
            "impressions of {campaign}"
        );
    }
}

/// The value of a metric without labels in a Prometheus text exposition.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_stay_in_memory_until_a_replica_has_acknowledged_them() {
    let mut cluster = RedisCluster::start();
    let prefix = "acknowledged";
    let doc = json!({
        "slots": [{ "name": "Publicité 2" }],
        "advertisers": [{ "id": "adv", "name": "Advertiser" }],
        "campaigns": [text_campaign("steady", &["Publicité 2"], json!({}))],
    });
    let (app, _f) = app_on_cluster(&cluster.seeds(), prefix, Some(&doc)).await;
    let primary = cluster.primary_port_for(&format!("{prefix}:{{c:steady}}:totals"));
    let replica = cluster.replica_of(primary);

    // The campaign's primary loses its only replica: what it takes cannot be acknowledged.
    cluster.kill_node(replica);
    for _ in 0..20 {
        let decision = app.decision("Publicité 2").await;
        let impression = tracking_path(&decision, "impression_url");
        assert_eq!(app.get(&impression).await.status(), 200);
    }
    // Many flush intervals (50 ms) pass; the counts are still held, waiting.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let held = gauge(&app.metrics().await, "regie_events_pending").unwrap();

    cluster.restart_node(replica);

    assert!(
        held > 0.0,
        "the unacknowledged counts were dropped from memory"
    );
    assert_eq!(settled_total(&app, "steady", "served", 20).await, 20);
    assert_eq!(settled_total(&app, "steady", "impressions", 20).await, 20);
    let drained = eventually(Duration::from_secs(5), || async {
        (gauge(&app.metrics().await, "regie_events_pending") == Some(0.0)).then_some(())
    })
    .await;
    assert!(drained.is_some(), "acknowledged counts leave memory");
}
