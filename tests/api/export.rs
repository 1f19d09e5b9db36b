//! The stats export for spreadsheets: `GET /v1/campaigns/{id}/stats.csv`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    ad_path, eventually, inventory_file, redis_for, spawn_app_with, AppOptions, StoreKind, TestApp,
    ADMIN_TOKEN,
};
use crate::on_both_stores;

on_both_stores!(
    the_csv_has_a_line_per_day_and_slot_with_the_numbers_of_the_json_stats,
    the_csv_answers_only_to_the_campaign_s_advertiser_with_the_json_s_errors,
);

/// A slot name that needs quoting: a comma, quotes and an accent.
const QUOTED_SLOT: &str = "Publicité 2, \"haut de page\"";
const PLAIN_SLOT: &str = "bannière";

fn inventory() -> Value {
    let campaign = |id: &str, advertiser: &str| {
        json!({ "id": id, "advertiser_id": advertiser, "slots": [QUOTED_SLOT, PLAIN_SLOT],
                "creatives": [{ "id": "t", "format": "text", "title": id,
                                "landing_url": format!("https://{id}.example/") }] })
    };
    json!({
        "slots": [{ "name": QUOTED_SLOT }, { "name": PLAIN_SLOT }],
        "advertisers": [{ "id": "littoral", "name": "Littoral" }, { "id": "other", "name": "Other" }],
        "campaigns": [campaign("eoliennes", "littoral"), campaign("concurrent", "other")],
    })
}

async fn key_for(app: &TestApp, advertiser: &str) -> String {
    let response = app
        .admin(Method::PUT, &format!("/v1/admin/advertisers/{advertiser}"))
        .json(&json!({ "name": advertiser }))
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Serves `slot` excluding the other advertiser's campaign, fires the impression and, if
/// asked, the click.
async fn view(app: &TestApp, slot: &str, click: bool) {
    let decision = app
        .decision_at(&format!("{}?exclude=concurrent", ad_path(slot)))
        .await;
    assert_eq!(decision["campaign_id"], "eoliennes");
    app.fire(decision["impression_url"].as_str().unwrap()).await;
    if click {
        // The reader looks at the ad before clicking: a click within a second of its
        // decision is too fast to count.
        app.clock.advance(chrono::Duration::seconds(2));
        app.fire(decision["click_url"].as_str().unwrap()).await;
    }
}

async fn the_csv_has_a_line_per_day_and_slot_with_the_numbers_of_the_json_stats(kind: StoreKind) {
    let redis = redis_for(kind);
    let file = inventory_file(&inventory());
    let app = spawn_app_with(AppOptions {
        inventory: file.path().to_owned(),
        ..AppOptions::new(redis.as_ref().map(|r| r.url()))
    })
    .await;
    let key = key_for(&app, "littoral").await;
    for click in [true, false, false] {
        view(&app, QUOTED_SLOT, click).await;
    }
    view(&app, PLAIN_SLOT, false).await;
    let query = "?from=2026-11-29&to=2026-11-30";
    let json = eventually(Duration::from_secs(5), || async {
        let stats = app.stats("eoliennes", query).await;
        (stats["totals"]["impressions"] == 4 && stats["totals"]["clicks"] == 1).then_some(stats)
    })
    .await
    .expect("the events are counted");

    let response = app
        .get_as(&format!("/v1/campaigns/eoliennes/stats.csv{query}"), &key)
        .await;

    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        header("content-disposition"),
        "attachment; filename=\"regie-eoliennes-2026-11-29-2026-11-30.csv\""
    );
    assert_eq!(header("cache-control"), "no-store");
    let body = response.text().await.unwrap();
    // Written as RFC 4180 says: the slot with a comma and quotes is quoted, quotes doubled.
    assert!(
        body.contains("2026-11-30,\"Publicité 2, \"\"haut de page\"\"\",3,3,0,1,0.3333,0,0\r\n"),
        "{body}"
    );
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "date",
            "slot",
            "served",
            "impressions",
            "viewable",
            "clicks",
            "ctr",
            "invalid_impressions",
            "invalid_clicks"
        ]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    // Two days, two slots each: the day without traffic has its zero lines too.
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("2026-11-29", QUOTED_SLOT),
            ("2026-11-29", PLAIN_SLOT),
            ("2026-11-30", QUOTED_SLOT),
            ("2026-11-30", PLAIN_SLOT),
        ]
    );
    assert!(rows[..2].iter().all(|r| r[2..6] == ["0", "0", "0", "0"]));
    // The numbers are the JSON stats' numbers, slot by slot.
    for row in &rows[2..] {
        let slot = json["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["slot"] == row[1])
            .unwrap();
        for (i, metric) in ["served", "impressions", "viewable", "clicks"]
            .iter()
            .enumerate()
        {
            assert_eq!(row[2 + i], slot[metric].to_string(), "{} {metric}", row[1]);
        }
    }
    assert_eq!(rows[3][3], "1");
    assert_eq!(rows[3][6], "0.0000");
}

async fn the_csv_answers_only_to_the_campaign_s_advertiser_with_the_json_s_errors(kind: StoreKind) {
    let redis = redis_for(kind);
    let file = inventory_file(&inventory());
    let app = spawn_app_with(AppOptions {
        inventory: file.path().to_owned(),
        ..AppOptions::new(redis.as_ref().map(|r| r.url()))
    })
    .await;
    let own = key_for(&app, "littoral").await;
    let other = key_for(&app, "other").await;
    let path = "/v1/campaigns/eoliennes/stats.csv";

    let cases = [
        (app.get(path).await, 401, "unauthorized"),
        (app.get_as(path, "not-a-key").await, 401, "unauthorized"),
        (app.get_as(path, &other).await, 404, "unknown_campaign"),
        (
            app.get_as("/v1/campaigns/nope/stats.csv", &own).await,
            404,
            "unknown_campaign",
        ),
        (
            app.get_as(&format!("{path}?from=2026-12-01&to=2026-11-01"), &own)
                .await,
            400,
            "invalid_range",
        ),
        (
            app.get_as(&format!("{path}?from=hier"), &own).await,
            400,
            "invalid_date",
        ),
    ];
    for (response, status, code) in cases {
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    assert_eq!(app.get_as(path, &own).await.status(), 200);
    assert_eq!(app.get_as(path, ADMIN_TOKEN).await.status(), 200);
}
