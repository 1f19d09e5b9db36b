//! What grows with traffic is bounded, and viewer ids are kept private: de-duplication marks
//! live as long as their kind's token, and viewer ids reach the store as a keyed hash that
//! every instance computes alike. (A replayed token during an outage: `faults.rs`; the
//! embedded store's viewer histories: `src/store/memory.rs`.)

use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{
    ad_path, inventory_file, redis_for, settled_total, spawn_app, spawn_app_with, AppOptions,
    RedisServer, StoreKind,
};
use crate::on_both_stores;

on_both_stores!(a_click_late_in_its_tokens_life_is_counted_as_valid);

/// The keys Redis holds that match `pattern`.
fn keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut redis.connection())
        .unwrap()
}

fn ttl(redis: &RedisServer, key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query(&mut redis.connection())
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kinds_de_duplication_marks_live_as_long_as_the_tokens_that_need_them_and_ten_minutes()
{
    let redis = RedisServer::start();
    let app = spawn_app_with(AppOptions::new(Some(redis.url()))).await;
    let decision = app.decision("banner").await;
    let campaign = decision["campaign_id"].as_str().unwrap().to_owned();
    let id = decision["decision_id"].as_str().unwrap().to_owned();

    app.fire(decision["impression_url"].as_str().unwrap()).await;
    app.fire(decision["viewable_url"].as_str().unwrap()).await;
    app.clock.advance(chrono::Duration::seconds(2));
    app.fire(decision["click_url"].as_str().unwrap()).await;
    assert_eq!(settled_total(&app, &campaign, "clicks", 1).await, 1);

    let life = |counter: &str| ttl(&redis, &format!("regie:{{d:{id}}}:seen:{counter}"));
    // Impression and viewable tokens live an hour, click tokens a day (the defaults); a click
    // checks its impression's mark, so impression marks live as long as click tokens.
    for (counter, token_life) in [
        ("impressions", 86_400),
        ("viewable", 3_600),
        ("clicks", 86_400),
    ] {
        let ttl = life(counter);
        assert!(
            (token_life + 600 - 30..=token_life + 600).contains(&ttl),
            "{counter}: {ttl} s"
        );
    }
}

/// A click checks that its impression was counted: its impression's mark outlives the
/// impression token for that (the embedded store expires marks by the app's clock).
async fn a_click_late_in_its_tokens_life_is_counted_as_valid(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let decision = app.decision("banner").await;
    let campaign = decision["campaign_id"].as_str().unwrap().to_owned();
    app.fire(decision["impression_url"].as_str().unwrap()).await;
    assert_eq!(settled_total(&app, &campaign, "impressions", 1).await, 1);

    // Past the impression token's life (an hour) and its marks' margin, within the click's.
    app.clock.advance(chrono::Duration::hours(20));
    let click = app.fire(decision["click_url"].as_str().unwrap()).await;

    assert_eq!(click.status(), 302);
    assert_eq!(settled_total(&app, &campaign, "clicks", 1).await, 1);
}

/// One slot whose only campaign is shown at most `max` times a day to one viewer.
fn frequency_capped(max: u32) -> Value {
    json!({
        "slots": [{ "name": "Publicité 2" }],
        "advertisers": [{ "id": "adv", "name": "Advertiser" }],
        "campaigns": [{
            "id": "freq", "advertiser_id": "adv", "slots": ["Publicité 2"], "weight": 1,
            "frequency": { "max": max, "per_seconds": 86400 },
            "creatives": [{ "id": "t", "format": "text", "title": "Freq",
                            "landing_url": "https://freq.example/" }]
        }]
    })
}

const VIEWER_KEY: &str = "a-viewer-key-of-thirty-two-bytes-or-more";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_ids_are_stored_as_a_keyed_hash_not_their_plain_sha256() {
    let redis = RedisServer::start();
    let file = inventory_file(&frequency_capped(3));
    let mut options = AppOptions::new(Some(redis.url()));
    options.inventory = file.path().to_owned();
    options.tweak = Box::new(|s| s.viewer_key = Some(SecretString::from(VIEWER_KEY.to_owned())));
    let app = spawn_app_with(options).await;

    let response = app
        .get(&format!("{}?uid=reader-42", ad_path("Publicité 2")))
        .await;
    assert_eq!(response.status(), 200);

    let stored = keys(&redis, "regie:{v:*}:freq:freq");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let viewer = stored[0]
        .strip_prefix("regie:{v:")
        .and_then(|rest| rest.strip_suffix("}:freq:freq"))
        .unwrap();
    assert_ne!(viewer, hex(&Sha256::digest(b"reader-42")[..16]));
    let mut keyed = Hmac::<Sha256>::new_from_slice(VIEWER_KEY.as_bytes()).unwrap();
    keyed.update(b"reader-42");
    assert_eq!(viewer, hex(&keyed.finalize().into_bytes()[..16]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_without_any_key_set_enforce_one_frequency_cap_together() {
    let redis = RedisServer::start();
    let file = inventory_file(&frequency_capped(3));
    let without_keys = || {
        let mut options = AppOptions::new(Some(redis.url()));
        options.inventory = file.path().to_owned();
        options.tweak = Box::new(|s| {
            s.tracking_keys = None;
            s.viewer_key = None;
        });
        options
    };
    let a = spawn_app_with(without_keys()).await;
    let b = spawn_app_with(without_keys()).await;
    let path = format!("{}?uid=reader-42", ad_path("Publicité 2"));

    let mut statuses = Vec::new();
    for app in [&a, &b, &a, &b, &a, &b] {
        statuses.push(app.get(&path).await.status().as_u16());
    }

    assert_eq!(statuses, [200, 200, 200, 204, 204, 204]);
    // Both hashed the viewer alike: one history in the store.
    let stored = keys(&redis, "regie:{v:*}:freq:freq");
    assert_eq!(stored.len(), 1, "{stored:?}");
}
