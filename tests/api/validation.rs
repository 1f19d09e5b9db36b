//! Inventory validation through the admin API: URLs are kept normalised and refused with
//! control characters, and every bad field of an element is named.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{ad_path, redis_for, spawn_app, StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(
    a_control_character_in_a_url_is_a_422_naming_the_field,
    an_element_with_several_bad_fields_gets_each_one_named,
    urls_are_stored_served_and_redirected_in_normalised_form,
);

const CONTROL_CHARACTERS: &str = "must not contain control characters (CR, LF, tab…)";

/// The `(path, message)` pairs of a 422 answer.
async fn details(response: reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_inventory");
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_owned(),
                d["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn put_campaign(app: &TestApp, campaign: &Value) -> reqwest::Response {
    let path = format!("/v1/admin/campaigns/{}", campaign["id"].as_str().unwrap());
    app.admin(Method::PUT, &path)
        .json(campaign)
        .send()
        .await
        .unwrap()
}

async fn a_control_character_in_a_url_is_a_422_naming_the_field(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let mut doc = app.inventory().await;
    let bad = [
        (
            "/campaigns/0/creatives/0/landing_url",
            "https://3vision.example/\r\nSet-Cookie: x=1",
        ),
        (
            "/campaigns/0/creatives/1/landing_url",
            "https://3vision.example/\tx",
        ),
        ("/campaigns/0/creatives/2/image_url", "/creatives/x.svg\0"),
        (
            "/campaigns/1/creatives/0/landing_url",
            "https://3vision.example/\u{7f}",
        ),
        (
            "/campaigns/2/creatives/0/landing_url",
            "https://atelier.example/\u{85}",
        ),
    ];
    for (pointer, url) in bad {
        *doc.pointer_mut(pointer).unwrap() = json!(url);
    }

    let found = details(app.put_inventory(&doc).await).await;

    let expected: Vec<(String, String)> = [
        "campaigns[0].creatives[0].landing_url",
        "campaigns[0].creatives[1].landing_url",
        "campaigns[0].creatives[2].image_url",
        "campaigns[1].creatives[0].landing_url",
        "campaigns[2].creatives[0].landing_url",
    ]
    .into_iter()
    .map(|path| (path.to_owned(), CONTROL_CHARACTERS.to_owned()))
    .collect();
    assert_eq!(found, expected);
    assert_eq!(
        app.inventory().await["version"],
        doc["version"],
        "nothing was written"
    );

    // One campaign at a time: the same refusal, relative to the campaign.
    let mut campaign = doc["campaigns"][2].clone();
    campaign["creatives"][0]["landing_url"] = json!("https://atelier.example/\r\n");
    let found = details(put_campaign(&app, &campaign).await).await;
    assert_eq!(
        found,
        vec![(
            "creatives[0].landing_url".to_owned(),
            CONTROL_CHARACTERS.to_owned()
        )]
    );
}

async fn an_element_with_several_bad_fields_gets_each_one_named(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let mut doc = app.inventory().await;
    let campaign = &mut doc["campaigns"][1];
    campaign["weight"] = json!("heavy");
    campaign["creatives"][0]["landing_url"] = json!("javascript:alert(1)");
    campaign["creatives"][0]["image_url"] = json!("https://cdn.example/a.png\r\n");

    let found = details(app.put_inventory(&doc).await).await;

    let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "campaigns[1].creatives[0].image_url",
            "campaigns[1].creatives[0].landing_url",
            "campaigns[1].weight",
        ],
        "{found:?}"
    );
    assert_eq!(found[0].1, CONTROL_CHARACTERS);
    assert_eq!(found[1].1, "must be an absolute http or https URL");
}

async fn urls_are_stored_served_and_redirected_in_normalised_form(kind: StoreKind) {
    let redis = redis_for(kind);
    let app = spawn_app(kind, redis.as_ref()).await;
    let doc = app.inventory().await;
    let mut campaign = doc["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "atelier-noel")
        .unwrap()
        .clone();
    let mut image = campaign["creatives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["format"] == "image")
        .unwrap()
        .clone();
    image["landing_url"] = json!("HTTPS://Journal.Example/a b?q=é");
    image["image_url"] = json!("https://CDN.Bücher.example:443/jouets en bois.png");
    campaign["creatives"] = json!([image]);
    assert_eq!(put_campaign(&app, &campaign).await.status(), 200);
    let landing = "https://journal.example/a%20b?q=%C3%A9";
    let image_url = "https://cdn.xn--bcher-kva.example/jouets%20en%20bois.png";

    let stored = app.inventory().await["campaigns"][2].clone();
    // The other campaigns of the slot are on the page already: atelier-noel is served.
    let decision = app
        .decision_at(&format!(
            "{}?exclude=3vision-visitez,house-annonceurs",
            ad_path("Publicité 2")
        ))
        .await;
    let click = app.fire(decision["click_url"].as_str().unwrap()).await;

    assert_eq!(stored["id"], "atelier-noel");
    assert_eq!(stored["creatives"][0]["landing_url"], landing);
    assert_eq!(stored["creatives"][0]["image_url"], image_url);
    assert_eq!(decision["campaign_id"], "atelier-noel");
    assert_eq!(decision["creative"]["image_url"], image_url);
    assert_eq!(click.status(), 302);
    assert_eq!(click.headers()["location"], landing);
}
