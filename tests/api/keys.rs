//! Advertisers' API keys: revoked at once on every instance, rotated atomically, and gone
//! with their advertiser.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{redis_for, spawn_app, RedisServer, StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(
    a_revoked_key_answers_401_and_a_second_revocation_204,
    deleting_an_advertiser_revokes_its_key_for_good,
    an_advertiser_dropped_by_an_inventory_put_loses_its_key,
    concurrent_key_rotations_leave_exactly_one_working_key,
);

async fn issue_key(app: &TestApp, advertiser: &str) -> String {
    let response = app
        .admin(Method::PUT, &format!("/v1/admin/advertisers/{advertiser}"))
        .json(&serde_json::json!({ "name": "Solo SARL" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn status_with(app: &TestApp, key: &str) -> u16 {
    app.get_as("/v1/advertisers/me/campaigns", key)
        .await
        .status()
        .as_u16()
}

async fn revoke(app: &TestApp, advertiser: &str) -> u16 {
    app.admin(
        Method::DELETE,
        &format!("/v1/admin/advertisers/{advertiser}/key"),
    )
    .send()
    .await
    .unwrap()
    .status()
    .as_u16()
}

async fn a_revoked_key_answers_401_and_a_second_revocation_204(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let key = issue_key(&app, "solo").await;
    assert_eq!(status_with(&app, &key).await, 200);

    assert_eq!(revoke(&app, "solo").await, 204);

    assert_eq!(status_with(&app, &key).await, 401);
    assert_eq!(revoke(&app, "solo").await, 204, "revoking is idempotent");
    assert_eq!(revoke(&app, "nobody").await, 404);
    let fresh = issue_key(&app, "solo").await;
    assert_eq!(status_with(&app, &fresh).await, 200);
}

async fn deleting_an_advertiser_revokes_its_key_for_good(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let key = issue_key(&app, "solo").await;

    let deleted = app
        .admin(Method::DELETE, "/v1/admin/advertisers/solo")
        .send()
        .await
        .unwrap();

    assert_eq!(deleted.status(), 200);
    assert_eq!(status_with(&app, &key).await, 401);
    issue_key(&app, "solo").await;
    assert_eq!(
        status_with(&app, &key).await,
        401,
        "the old key stays revoked"
    );
    let in_use = app
        .admin(Method::DELETE, "/v1/admin/advertisers/3vision")
        .send()
        .await
        .unwrap();
    assert_eq!(in_use.status(), 422, "campaigns still name it");
}

async fn an_advertiser_dropped_by_an_inventory_put_loses_its_key(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let key = issue_key(&app, "solo").await;
    let mut doc = app.inventory().await;
    let with_solo = doc.clone();
    doc["advertisers"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["id"] != "solo");
    doc.as_object_mut().unwrap().remove("version");

    assert_eq!(app.put_inventory(&doc).await.status(), 200);
    assert_eq!(status_with(&app, &key).await, 401);

    let mut again = with_solo;
    again.as_object_mut().unwrap().remove("version");
    assert_eq!(app.put_inventory(&again).await.status(), 200);
    assert_eq!(
        status_with(&app, &key).await,
        401,
        "adding the advertiser back does not revive its old key"
    );
}

async fn concurrent_key_rotations_leave_exactly_one_working_key(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    issue_key(&app, "solo").await;

    let keys = futures_util::future::join_all((0..16).map(|_| issue_key(&app, "solo"))).await;

    let mut working = 0;
    for key in &keys {
        if status_with(&app, key).await == 200 {
            working += 1;
        }
    }
    assert_eq!(working, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_instance_answers_401_on_another_at_once() {
    let redis = RedisServer::start();
    let a = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let b = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let key = issue_key(&a, "solo").await;
    // B serves the version with the new advertiser, as it does within a second.
    let served = crate::helpers::eventually(std::time::Duration::from_secs(2), || async {
        (status_with(&b, &key).await == 200).then_some(())
    })
    .await;
    assert!(served.is_some());

    assert_eq!(revoke(&a, "solo").await, 204);

    assert_eq!(status_with(&b, &key).await, 401);
}
