//! The advertiser dashboard shows what the stats API says.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{json, Value};

use crate::harness::{campaign_of, eventually, exclusive, Browser, TestApp, CAMPAIGNS};

/// Page views without a browser, slot by slot (all the campaigns are the advertiser's, and a
/// page shows one campaign per advertiser): every slot served and shown, some seen, some
/// clicked.
async fn seed_traffic(app: &TestApp) {
    let mut unseen_viewable = String::new();
    for view in 0..3 {
        for (slot, _) in CAMPAIGNS {
            let decision: Value = app
                .http
                .post(format!("{}/v1/decisions", app.url))
                .json(&json!({ "slots": [slot], "uid": format!("viewer-{view}"), "keywords": [] }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let decision = &decision["decisions"][0];
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
    let app = TestApp::start_for_one_advertiser().await;
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
               out[c.dataset.campaign] = { totals, slots, invalid, days: c.querySelectorAll('svg[data-chart] [data-date]').length };
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

/// Waits until the dashboard has shown the stats.
async fn loaded(browser: &Browser) {
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
}

#[tokio::test]
async fn the_csv_link_downloads_the_campaign_s_figures_with_the_key() {
    let _one = exclusive().await;
    let app = TestApp::start_for_one_advertiser().await;
    seed_traffic(&app).await;
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::start_with_downloads(downloads.path()).await;
    sign_in(&browser, &app, &app.api_key).await;
    loaded(&browser).await;
    let campaign = campaign_of("Publicité 2");

    browser
        .client
        .find(Locator::Css(&format!(
            "section[data-campaign='{campaign}'] a[data-csv]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Chromium writes a `.crdownload` first and renames it when the download is complete.
    let (name, body) = eventually("the downloaded CSV", Duration::from_secs(10), || async {
        std::fs::read_dir(downloads.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".csv"))
            .map(|n| {
                let body = std::fs::read_to_string(downloads.path().join(&n)).unwrap();
                (n, body)
            })
    })
    .await;
    let period = browser
        .js(&format!(
            "const p = document.querySelector(\"section[data-campaign='{campaign}'] .period\");
             return [p.dataset.from, p.dataset.to];"
        ))
        .await;
    let (from, to) = (period[0].as_str().unwrap(), period[1].as_str().unwrap());
    assert_eq!(name, format!("regie-{campaign}-{from}-{to}.csv"));
    // The very file the API gives the key for the page's period.
    let api = app
        .http
        .get(format!(
            "{}/v1/campaigns/{campaign}/stats.csv?from={from}&to={to}",
            app.url
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, api);
    // And it holds the seeded traffic: today's line of the slot with its three impressions.
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as i64, days_between(from, to), "one line a day");
    let today = rows.last().unwrap();
    assert_eq!(&today[0], to);
    assert_eq!(&today[1], "Publicité 2");
    assert_eq!((&today[3], &today[4], &today[5]), ("3", "2", "0"));
    browser.close().await;
}

#[tokio::test]
async fn the_ctr_chart_draws_a_line_per_slot_from_the_day_s_figures() {
    let _one = exclusive().await;
    let app = TestApp::start_for_one_advertiser().await;
    seed_traffic(&app).await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, &app.api_key).await;
    loaded(&browser).await;

    let chart = browser
        .js(
            "const out = {};
             for (const c of document.querySelectorAll('section[data-campaign]')) {
               const svg = c.querySelector('svg[data-ctr-chart]');
               out[c.dataset.campaign] = {
                 label: svg.getAttribute('aria-label'), role: svg.getAttribute('role'),
                 lines: [...svg.querySelectorAll('g[data-slot]')].map((g) => ({
                   slot: g.dataset.slot, title: g.querySelector('title').textContent,
                   points: [...g.querySelectorAll('circle')].map((p) => [p.dataset.date, Number(p.dataset.value)]),
                 })),
               };
             }
             return out;",
        )
        .await;
    let today = app.stats(campaign_of("banner")).await["to"].clone();
    // banner: 3 impressions, 1 click today; Publicité 3: 3 impressions, 3 clicks.
    for (slot, rate) in [("banner", 1.0 / 3.0), ("Publicité 3", 1.0)] {
        let shown = &chart[campaign_of(slot)];
        assert_eq!(shown["role"], "img");
        assert_eq!(shown["label"], "Taux de clic par emplacement et par jour");
        let lines = shown["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 1, "{slot}: one line, its only slot");
        assert_eq!(lines[0]["slot"], slot);
        // One point: the only day with impressions.
        let points = lines[0]["points"].as_array().unwrap();
        assert_eq!(points.len(), 1, "{slot}: {points:?}");
        assert_eq!(points[0][0], today);
        assert!((points[0][1].as_f64().unwrap() - rate).abs() < 1e-9);
    }
    browser.client.set_window_size(1280, 1300).await.unwrap();
    browser.screenshot("dashboard-ctr.png").await;
    browser.close().await;
}

/// Days from `from` to `to`, both included.
fn days_between(from: &str, to: &str) -> i64 {
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    (day(to) - day(from)).num_days() + 1
}
