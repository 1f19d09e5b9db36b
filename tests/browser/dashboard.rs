//! The advertiser dashboard shows what the stats API says.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{json, Value};

use crate::harness::{campaign_of, eventually, exclusive, Browser, TestApp, CAMPAIGNS};

/// Page views as a tag would make them, without a browser: every slot served and shown, some
/// seen, some clicked.
async fn seed_traffic(app: &TestApp) {
    let slots: Vec<_> = CAMPAIGNS.iter().map(|(slot, _)| *slot).collect();
    let mut unseen_viewable = String::new();
    for view in 0..3 {
        let answer: Value = app
            .http
            .post(format!("{}/v1/decisions", app.url))
            .json(&json!({ "slots": slots, "uid": format!("viewer-{view}"), "keywords": [] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for decision in answer["decisions"].as_array().unwrap() {
            let slot = decision["slot"].as_str().unwrap();
            let hit = |field: &str| decision[field].as_str().unwrap().to_owned();
            app.http.get(hit("impression_url")).send().await.unwrap();
            if slot == "Publicité 2" && view == 0 {
                unseen_viewable = hit("viewable_url");
            }
            if slot == "banner" || (slot == "Publicité 2" && view > 0) {
                app.http.get(hit("viewable_url")).send().await.unwrap();
            }
            if (slot == "banner" && view == 0) || slot == "Publicité 3" {
                app.reader_looks_at_the_page();
                app.http.get(hit("click_url")).send().await.unwrap();
            }
        }
    }
    // A crawler loads a viewable pixel the reader never sent: counted apart, as invalid.
    let crawler = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)")
        .build()
        .unwrap();
    crawler.get(&unseen_viewable).send().await.unwrap();
    app.expect_total(campaign_of("Publicité 3"), "clicks", 3)
        .await;
    app.expect_total(campaign_of("Publicité 2"), "viewable", 2)
        .await;
}

/// Opens the dashboard and submits `key` in its sign-in form.
async fn sign_in(browser: &Browser, app: &TestApp, key: &str) {
    browser
        .client
        .goto(&format!("{}/dashboard", app.url))
        .await
        .unwrap();
    let key_field = browser
        .client
        .wait()
        .for_element(Locator::Id("api-key"))
        .await
        .unwrap();
    key_field.send_keys(key).await.unwrap();
    browser
        .client
        .find(Locator::Css("#login-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_dashboard_shows_the_stats_api_numbers_for_the_advertiser() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    seed_traffic(&app).await;
    let browser = Browser::start().await;

    sign_in(&browser, &app, &app.api_key).await;
    eventually(
        "the dashboard's numbers",
        Duration::from_secs(10),
        || async {
            let loaded = browser
                .js("return document.body.hasAttribute('data-loaded')")
                .await;
            (loaded == true).then_some(())
        },
    )
    .await;

    let shown = browser
        .js(
            "const out = {};
             for (const c of document.querySelectorAll('section[data-campaign]')) {
               const totals = {};
               for (const m of c.querySelectorAll('[data-totals] [data-metric]')) totals[m.dataset.metric] = Number(m.dataset.value);
               const slots = {};
               for (const r of c.querySelectorAll('tr[data-slot]')) {
                 slots[r.dataset.slot] = {};
                 for (const m of r.querySelectorAll('[data-metric]')) slots[r.dataset.slot][m.dataset.metric] = Number(m.dataset.value);
               }
               const invalid = {};
               for (const m of c.querySelectorAll('[data-invalid] [data-metric]')) invalid[m.dataset.metric] = Number(m.dataset.value);
               out[c.dataset.campaign] = { totals, slots, invalid, days: c.querySelectorAll('svg [data-date]').length };
             }
             return out;",
        )
        .await;
    for (slot, campaign) in CAMPAIGNS {
        let api: Value = app
            .http
            .get(format!("{}/v1/campaigns/{campaign}/stats", app.url))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = &shown[campaign];
        for metric in ["served", "impressions", "viewable", "clicks"] {
            assert_eq!(
                page["totals"][metric], api["totals"][metric],
                "{campaign} {metric}"
            );
            assert_eq!(
                page["invalid"][metric], api["totals"]["invalid"][metric],
                "{campaign} invalid {metric}"
            );
            assert_eq!(
                page["slots"][slot][metric], api["slots"][0][metric],
                "{campaign} {slot} {metric}"
            );
        }
        let ctr = |v: &Value| v.as_f64().unwrap();
        assert!(
            (ctr(&page["totals"]["ctr"]) - ctr(&api["totals"]["ctr"])).abs() < 1e-9,
            "{campaign} ctr"
        );
        assert_eq!(
            page["days"],
            json!(api_days(&api)),
            "{campaign}: one chart column a day"
        );
    }
    // The numbers are the seeded ones, not zeros that would match an empty API.
    assert_eq!(shown[campaign_of("banner")]["totals"]["impressions"], 3);
    assert_eq!(shown[campaign_of("banner")]["totals"]["clicks"], 1);
    assert_eq!(shown[campaign_of("Publicité 2")]["invalid"]["viewable"], 1);
    assert_eq!(shown[campaign_of("Publicité 3")]["totals"]["clicks"], 3);
    // Tall enough to show every campaign.
    browser.client.set_window_size(1280, 2400).await.unwrap();
    browser.screenshot("dashboard.png").await;
    browser.close().await;
}

/// Days from `from` to `to`, both included.
fn api_days(stats: &Value) -> i64 {
    let day = |field: &str| {
        chrono::NaiveDate::parse_from_str(stats[field].as_str().unwrap(), "%Y-%m-%d").unwrap()
    };
    (day("to") - day("from")).num_days() + 1
}

#[tokio::test]
async fn the_dashboard_refuses_a_wrong_key() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;

    sign_in(&browser, &app, "not-a-key").await;

    let message = eventually("the refusal", Duration::from_secs(5), || async {
        let text = browser
            .js("return document.getElementById('message').textContent")
            .await;
        text.as_str()
            .filter(|t| t.contains("refusée"))
            .map(str::to_owned)
    })
    .await;
    assert!(message.contains("Clé d'API refusée"), "{message}");
    let state = browser
        .js("return [document.getElementById('login-panel').hidden, sessionStorage.getItem('regie.apiKey'), document.querySelectorAll('[data-campaign]').length]")
        .await;
    assert_eq!(state, json!([false, null, 0]));
    browser.close().await;
}
