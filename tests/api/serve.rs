//! Decisions: `GET /v1/slots/{slot}/ad` and `POST /v1/decisions`.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{
    ad_path, inventory_file, redis_for, spawn_app, spawn_app_with, wide_inventory, AppOptions,
    StoreKind,
};
use crate::on_both_stores;

on_both_stores!(
    a_percent_encoded_slot_name_is_served,
    a_slot_typed_with_a_combining_accent_is_the_same_slot,
    an_unknown_slot_is_a_404_in_the_contract_error_shape,
    malformed_input_is_a_400_in_the_contract_error_shape,
    a_twenty_slot_batch_holds_no_campaign_twice,
    excluded_campaigns_are_not_served,
    unknown_paths_and_methods_answer_in_the_error_shape,
    a_slot_named_with_a_slash_a_plus_and_a_percent_is_served,
    answers_to_a_page_of_another_origin_are_readable_there_and_kept_by_no_cache,
);

async fn a_percent_encoded_slot_name_is_served(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;

    let response = app.get("/v1/slots/Publicit%C3%A9%202/ad").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let decision: Value = response.json().await.unwrap();
    assert_eq!(decision["slot"], "Publicité 2");
    let eligible = ["3vision-visitez", "atelier-noel"];
    assert!(
        eligible.contains(&decision["campaign_id"].as_str().unwrap()),
        "{decision}"
    );
    assert!(decision["decision_id"].as_str().unwrap().len() >= 26);
    for field in ["impression_url", "viewable_url", "click_url"] {
        let url = decision[field].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/v1/", app.address)),
            "{field} = {url}"
        );
    }
    assert!(
        decision["creative"]["landing_url"].is_null(),
        "the landing URL is only behind the click URL"
    );
}

async fn a_slot_typed_with_a_combining_accent_is_the_same_slot(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;

    // "e" followed by U+0301 COMBINING ACUTE ACCENT.
    let response = app.get("/v1/slots/Publicite%CC%81%202/ad").await;

    assert_eq!(response.status(), 200);
    let decision: Value = response.json().await.unwrap();
    assert_eq!(decision["slot"], "Publicité 2");
}

async fn an_unknown_slot_is_a_404_in_the_contract_error_shape(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;

    let response = app.get(&ad_path("Publicité 99")).await;

    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_slot");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Publicité 99"));
    // No series for a slot that does not exist.
    assert!(!app.metrics().await.contains("Publicité 99"));
}

async fn malformed_input_is_a_400_in_the_contract_error_shape(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let long_name = "x".repeat(129);
    let long_uid = "u".repeat(500);
    let cases = [
        ("/v1/slots/ban%07ner/ad".to_owned(), "invalid_slot"),
        ("/v1/slots/%FF/ad".to_owned(), "invalid_slot"),
        (ad_path(&long_name), "invalid_slot"),
        (
            format!("{}?uid={long_uid}", ad_path("banner")),
            "invalid_uid",
        ),
        (
            format!("{}?exclude=a%20b", ad_path("banner")),
            "invalid_exclude",
        ),
        (
            format!("{}?kw={}", ad_path("banner"), "k".repeat(100)),
            "invalid_keywords",
        ),
    ];
    for (path, code) in cases {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
        assert!(body["error"]["message"].is_string());
    }
    for (body, code) in [
        (json!({ "slots": [] }), "invalid_slots"),
        (json!({ "slots": vec!["banner"; 21] }), "invalid_slots"),
        (
            json!({ "slots": ["banner"], "surprise": 1 }),
            "invalid_body",
        ),
        (json!({ "slots": "banner" }), "invalid_body"),
    ] {
        let response = app.batch(body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{body}");
    }
    let response = app
        .client
        .post(format!("{}/v1/decisions", app.address))
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "invalid_body");
}

async fn a_twenty_slot_batch_holds_no_campaign_twice(kind: StoreKind) {
    let redis = redis_for(kind);
    let inventory = inventory_file(&wide_inventory(20, 25));
    let mut options = AppOptions::new(redis.as_ref().map(|r| r.url()));
    options.inventory = inventory.path().to_owned();
    let app = spawn_app_with(options).await;
    let slots: Vec<String> = (1..=20).map(|i| format!("Publicité {i}")).collect();

    for _ in 0..20 {
        let response = app
            .batch(json!({ "slots": slots, "uid": "viewer-1" }))
            .await;

        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let decisions = body["decisions"].as_array().unwrap();
        assert_eq!(decisions.len(), 20);
        let mut seen = HashSet::new();
        for (decision, slot) in decisions.iter().zip(&slots) {
            assert_eq!(
                decision["slot"],
                slot.as_str(),
                "entries are in the requested order"
            );
            let campaign = decision["campaign_id"]
                .as_str()
                .expect("25 campaigns fill 20 slots");
            assert!(
                seen.insert(campaign.to_owned()),
                "{campaign} served twice in one answer"
            );
        }
    }
}

async fn excluded_campaigns_are_not_served(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;

    // Publicité 2 has two campaigns and the house fallback.
    for _ in 0..50 {
        let path = format!("{}?exclude=3vision-visitez", ad_path("Publicité 2"));
        let decision: Value = app.get(&path).await.json().await.unwrap();
        assert_eq!(decision["campaign_id"], "atelier-noel");
    }
    let path = format!(
        "{}?exclude=3vision-visitez,atelier-noel",
        ad_path("Publicité 2")
    );
    let decision: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(
        decision["campaign_id"], "house-annonceurs",
        "the fallback fills the slot"
    );
    let path = format!(
        "{}?exclude=3vision-visitez,atelier-noel,house-annonceurs",
        ad_path("Publicité 2")
    );
    assert_eq!(app.get(&path).await.status(), 204, "nothing left: no fill");

    // In a batch, the campaign already on the page is excluded from the next slots.
    let body: Value = app
        .batch(json!({ "slots": ["Publicité 2", "Publicité 2", "Publicité 2", "Publicité 2"] }))
        .await
        .json()
        .await
        .unwrap();
    let decisions = body["decisions"].as_array().unwrap();
    let filled: HashSet<&str> = decisions
        .iter()
        .filter_map(|d| d["campaign_id"].as_str())
        .collect();
    assert_eq!(
        filled,
        HashSet::from(["3vision-visitez", "atelier-noel", "house-annonceurs"])
    );
    assert_eq!(
        decisions[3],
        json!({ "slot": "Publicité 2", "decision": null })
    );

    // A slot the inventory does not have gets its own entry; the others are still served.
    let body: Value = app
        .batch(json!({ "slots": ["Publicité 99", "banner"] }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["decisions"][0],
        json!({ "slot": "Publicité 99", "decision": null, "error": "unknown_slot" })
    );
    assert_eq!(body["decisions"][1]["slot"], "banner");
    assert!(body["decisions"][1]["campaign_id"].is_string());
}

async fn unknown_paths_and_methods_answer_in_the_error_shape(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;

    let response = app.get("/no/such/path").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let response = app
        .client
        .delete(format!("{}{}", app.address, ad_path("banner")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    // Under the prefixes of the routes with a segment, paths of another shape are no route.
    for path in [
        "/v1/slots",
        "/v1/slots/",
        "/v1/slots/banner",
        "/v1/slots//ad",
        "/v1/slots/banner/ad/",
        "/v1/slots/banner/ad/more",
        "/v1/slots/a/banner/ad",
        "/v1/slotsbanner/ad",
        "/v1/slots/banner%2Fad",
        "/v1/slots/banner/frame/ad",
        "/v1/i",
        "/v1/i/",
        "/v1/i/token/more",
        "/v1/v/token/",
        "/v1/c/",
        "/v1/c/a/b",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    for (method, path, allowed) in [
        (reqwest::Method::POST, "/v1/i/token", "GET, HEAD"),
        (reqwest::Method::PUT, "/v1/v/token", "GET, HEAD"),
        (reqwest::Method::DELETE, "/v1/c/token", "GET, HEAD"),
        (reqwest::Method::HEAD, "/v1/slots/banner/ad", "GET"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allowed, "{method} {path}");
    }
    // The other route under the decisions' prefix is still found.
    let frame = app.get("/v1/slots/banner/frame").await;
    assert_eq!(frame.status(), 200);
    assert!(frame.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    for path in ["/v1/i/token", "/v1/c/token"] {
        let response = app
            .client
            .head(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "HEAD {path}");
    }
}

async fn a_slot_named_with_a_slash_a_plus_and_a_percent_is_served(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let name = "Rubrique 1/2 +50%";
    let mut doc = app.inventory().await;
    doc["slots"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": name }));
    let campaign = doc["campaigns"][0]["id"].clone();
    doc["campaigns"][0]["slots"]
        .as_array_mut()
        .unwrap()
        .push(json!(name));
    assert_eq!(app.put_inventory(&doc).await.status(), 200);

    // The name's `/`, `+` and `%` escaped, as a page's tag escapes them.
    let decision = app.decision(name).await;

    assert_eq!(decision["slot"], name);
    assert_eq!(decision["campaign_id"], campaign);
    let unescaped = app.get("/v1/slots/Rubrique 1/2 +50%/ad").await;
    assert_eq!(unescaped.status(), 404, "a bare `/` separates segments");
}

/// The CORS answers carry no `Vary: Origin` although they name the page's origin: that holds
/// because no cache keeps any of them.
async fn answers_to_a_page_of_another_origin_are_readable_there_and_kept_by_no_cache(
    kind: StoreKind,
) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let origin = "https://journal.example";
    let decision = app.decision("banner").await;
    let impression = decision["impression_url"].as_str().unwrap();
    let viewable = decision["viewable_url"].as_str().unwrap();

    for url in [
        format!("{}{}", app.address, ad_path("banner")),
        format!("{}{}", app.address, ad_path("Publicité 99")),
        format!("{}{}?w=x", app.address, ad_path("banner")),
        impression.to_owned(),
        viewable.to_owned(),
        format!("{}/v1/i/not-a-token", app.address),
    ] {
        let response = app
            .client
            .get(&url)
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], origin, "{url}");
        assert_eq!(headers["cache-control"], "no-store", "{url}");
    }
    let response = app
        .client
        .post(format!("{}/v1/decisions", app.address))
        .header("Origin", origin)
        .json(&json!({ "slots": ["banner"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], origin);
    assert_eq!(response.headers()["cache-control"], "no-store");

    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/decisions", app.address),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
}
