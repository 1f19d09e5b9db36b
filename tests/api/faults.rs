//! Counting through a Redis outage, and idempotent flushes.

use std::time::Duration;

use chrono::NaiveDate;
use regie::inventory::{CampaignId, SlotName};
use regie::metrics::Metrics;
use regie::store::{Backend, Batch, Event, MarkLifetimes, RedisStore, ServedCount, Store};
use regie::tracking::EventKind;
use ulid::Ulid;

use crate::helpers::{
    eventually, settled_total, spawn_app, spawn_app_with, AppOptions, RedisServer, StoreKind,
    TestApp,
};

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn impressions_of(app: &TestApp, campaign: &str, n: usize) -> Vec<String> {
    let mut urls = Vec::new();
    while urls.len() < n {
        let decision = app.decision("banner").await;
        if decision["campaign_id"] == campaign {
            urls.push(decision["impression_url"].as_str().unwrap().to_owned());
        }
    }
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_wait_for_redis_and_are_exact_once_it_returns() {
    let mut redis = RedisServer::start();
    let app = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let urls = impressions_of(&app, "3vision-visitez", 40).await;

    redis.stop();
    for url in &urls {
        app.fire(url).await;
        app.fire(url).await;
    }
    let pending = eventually(Duration::from_secs(5), || async {
        let metrics = app.metrics().await;
        (gauge(&metrics, "regie_store_up") == 0.0
            && gauge(&metrics, "regie_events_pending") >= 40.0)
            .then_some(())
    })
    .await;
    assert!(
        pending.is_some(),
        "the outage shows in regie_store_up and the pending gauge"
    );

    redis.restart(true);

    assert_eq!(
        settled_total(&app, "3vision-visitez", "impressions", 40).await,
        40
    );
    let metrics = app.metrics().await;
    assert_eq!(gauge(&metrics, "regie_events_pending"), 0.0);
    assert_eq!(gauge(&metrics, "regie_events_dropped_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_events_are_dropped_and_counted_as_dropped() {
    let mut redis = RedisServer::start();
    let mut options = AppOptions::new(Some(redis.url()));
    options.tweak = Box::new(|s| s.max_pending_events = 10);
    let app = spawn_app_with(options).await;
    let urls = impressions_of(&app, "3vision-visitez", 15).await;
    // Let the served decisions reach Redis, so that only beacons wait.
    settled_total(&app, "3vision-visitez", "served", 15).await;

    redis.stop();
    for url in &urls {
        app.fire(url).await;
    }
    let metrics = app.metrics().await;
    assert_eq!(gauge(&metrics, "regie_events_pending"), 10.0);
    assert_eq!(gauge(&metrics, "regie_events_dropped_total"), 5.0);

    redis.restart(true);
    assert_eq!(
        settled_total(&app, "3vision-visitez", "impressions", 10).await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_replayed_during_an_outage_does_not_crowd_real_events_out() {
    let mut redis = RedisServer::start();
    let mut options = AppOptions::new(Some(redis.url()));
    options.tweak = Box::new(|s| s.max_pending_events = 20);
    let app = spawn_app_with(options).await;
    let urls = impressions_of(&app, "3vision-visitez", 11).await;
    let (replayed, real) = urls.split_first().unwrap();
    settled_total(&app, "3vision-visitez", "served", 11).await;

    redis.stop();
    for _ in 0..200 {
        app.fire(replayed).await;
    }
    for url in real {
        app.fire(url).await;
    }
    let metrics = app.metrics().await;
    assert_eq!(gauge(&metrics, "regie_events_pending"), 11.0);
    assert_eq!(gauge(&metrics, "regie_events_dropped_total"), 0.0);
    redis.restart(true);

    assert_eq!(
        settled_total(&app, "3vision-visitez", "impressions", 11).await,
        11,
        "the replayed impression once, and every real one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_retried_after_a_lost_answer_is_not_counted_twice() {
    let redis = RedisServer::start();
    let timeouts = crate::helpers::store_timeouts();
    let store = Store::Redis(std::sync::Arc::new(
        RedisStore::new(&redis.url(), "regie", timeouts, Metrics::new()).unwrap(),
    ));
    let campaign = CampaignId::parse("c1").unwrap();
    let slot = SlotName::parse("Publicité 2").unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let batch = Batch {
        id: Ulid::new(),
        served: vec![ServedCount {
            campaign: campaign.clone(),
            slot: slot.clone(),
            day,
            count: 5,
            invalid: None,
        }],
        events: vec![Event {
            kind: EventKind::Impression,
            decision_id: Ulid::new(),
            campaign: campaign.clone(),
            slot,
            day,
            invalid: None,
        }],
        mark_ttl: MarkLifetimes::uniform(3_600),
        now_secs: 0,
    };

    let first = store.flush(&batch).await.unwrap();
    let retry = store.flush(&batch).await.unwrap();

    assert_eq!(first.counted, vec![regie::store::Counted::Valid]);
    assert!(retry.already_applied);
    let totals = store.totals(std::slice::from_ref(&campaign)).await.unwrap();
    assert_eq!((totals[0].served, totals[0].impressions), (5, 1));
}
