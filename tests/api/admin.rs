//! The administration API.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    ad_path, add_bulk_campaigns, redis_for, spawn_app, spawn_app_with, urlencode, AppOptions,
    StoreKind,
};
use crate::on_both_stores;

on_both_stores!(
    an_inventory_put_is_served_at_once_and_versions_increase,
    a_document_of_megabytes_is_stored_whole,
    a_put_based_on_an_old_version_is_a_409,
    an_invalid_inventory_is_a_422_naming_every_bad_field,
    the_admin_api_requires_the_admin_token,
    one_campaign_can_be_read_replaced_and_deleted,
    one_slot_can_be_created_and_deleted,
    an_advertiser_gets_a_new_key_that_replaces_the_old_one,
);

fn only_campaign(doc: &mut Value, id: &str) {
    let campaigns = doc["campaigns"].as_array_mut().unwrap();
    campaigns.retain(|c| c["id"] == id);
    for slot in doc["slots"].as_array_mut().unwrap() {
        slot.as_object_mut().unwrap().remove("fallback");
    }
}

async fn an_inventory_put_is_served_at_once_and_versions_increase(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let mut doc = app.inventory().await;
    let version = doc["version"].as_u64().unwrap();
    only_campaign(&mut doc, "atelier-noel");

    let response = app.put_inventory(&doc).await;

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["version"], version + 1);
    for _ in 0..20 {
        assert_eq!(
            app.decision("Publicité 2").await["campaign_id"],
            "atelier-noel"
        );
    }
    assert_eq!(
        app.get(&ad_path("banner")).await.status(),
        204,
        "banner has nothing left"
    );
    assert_eq!(app.inventory().await["version"], version + 1);
}

async fn a_document_of_megabytes_is_stored_whole(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let mut doc = app.inventory().await;
    let version = doc["version"].as_u64().unwrap();
    // The Redis store writes a document of more than a megabyte in parts, which must come
    // back as one.
    add_bulk_campaigns(&mut doc, 3_000);
    assert!(doc.to_string().len() > 2 * 1024 * 1024);

    let response = app.put_inventory(&doc).await;

    assert_eq!(response.status(), 200);
    doc["version"] = json!(version + 1);
    // The admin API reads the document back from the store.
    assert!(
        app.inventory().await == doc,
        "the document came back changed"
    );
}

async fn a_put_based_on_an_old_version_is_a_409(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let doc = app.inventory().await;
    assert_eq!(
        app.put_inventory(&doc).await.status(),
        200,
        "the first editor wins"
    );

    let response = app.put_inventory(&doc).await;

    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "version_conflict");
}

async fn an_invalid_inventory_is_a_422_naming_every_bad_field(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let mut doc = app.inventory().await;
    doc["campaigns"][0]["weight"] = json!(0);
    doc["campaigns"][1]["creatives"][0]["landing_url"] = json!("javascript:alert(1)");
    doc["slots"][0]["colour"] = json!("blue");

    let response = app.put_inventory(&doc).await;

    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_inventory");
    let paths: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "slots[0].colour",
            "campaigns[0].weight",
            "campaigns[1].creatives[0].landing_url"
        ]
    );
    assert_eq!(
        body["error"]["details"][1]["message"],
        "must be between 1 and 1000000"
    );
    assert_eq!(
        app.inventory().await["version"],
        doc["version"],
        "nothing was written"
    );
}

async fn the_admin_api_requires_the_admin_token(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    for token in [None, Some("wrong"), Some("test-admin-token-012345678")] {
        let mut request = app
            .client
            .get(format!("{}/v1/admin/inventory", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    // Without a configured token the admin API is disabled.
    let mut options = AppOptions::new(redis.as_ref().map(|r| r.url()));
    options.tweak = Box::new(|s| s.admin_token = None);
    let closed = spawn_app_with(options).await;
    let response = closed
        .admin(Method::GET, "/v1/admin/inventory")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

async fn one_campaign_can_be_read_replaced_and_deleted(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let path = "/v1/admin/campaigns/atelier-noel";
    let mut campaign: Value = app
        .admin(Method::GET, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(campaign["id"], "atelier-noel");

    campaign["status"] = json!("paused");
    let response = app
        .admin(Method::PUT, path)
        .json(&campaign)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for _ in 0..30 {
        assert_ne!(
            app.decision("Publicité 2").await["campaign_id"],
            "atelier-noel"
        );
    }

    campaign["weight"] = json!(-1);
    let response = app
        .admin(Method::PUT, path)
        .json(&campaign)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["details"][0]["path"], "weight",
        "paths are relative to the campaign"
    );

    let response = app.admin(Method::DELETE, path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.admin(Method::GET, path).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        app.admin(Method::DELETE, path)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // The fallback of every slot cannot be deleted while slots name it.
    let response = app
        .admin(Method::DELETE, "/v1/admin/campaigns/house-annonceurs")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
}

async fn one_slot_can_be_created_and_deleted(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let path = format!("/v1/admin/slots/{}", urlencode("Publicité 5"));

    let response = app
        .admin(Method::PUT, &path)
        .json(&json!({ "rotation": "smooth", "fallback": "house-annonceurs" }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(
        app.decision("Publicité 5").await["campaign_id"],
        "house-annonceurs"
    );
    assert_eq!(
        app.admin(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.get(&ad_path("Publicité 5")).await.status(), 404);
}

async fn an_advertiser_gets_a_new_key_that_replaces_the_old_one(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let put = || async {
        let response = app
            .admin(Method::PUT, "/v1/admin/advertisers/3vision")
            .json(&json!({ "name": "3Vision Group" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["id"], "3vision");
        body["api_key"].as_str().unwrap().to_owned()
    };
    let first = put().await;
    assert_eq!(
        app.get_as("/v1/advertisers/me/campaigns", &first)
            .await
            .status(),
        200
    );

    let second = put().await;

    assert_ne!(first, second);
    assert_eq!(
        app.get_as("/v1/advertisers/me/campaigns", &first)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_as("/v1/advertisers/me/campaigns", &second)
            .await
            .status(),
        200
    );
}
