//! What the tag does for readers who refuse tracking or whose browser keeps no cookie, for
//! frequency caps, for narrow screens and for slots far below the fold: no cookie and no
//! viewer id, the frequency state it keeps, the width of each slot, and lazy loading.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{campaign_of, eventually, exclusive, Browser, TestApp, ADVERTISER};

/// The decision requests the tag made on the publisher's test page, as their JSON bodies.
async fn decision_requests(browser: &Browser) -> Vec<Value> {
    browser
        .js("return window.decisionRequests")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits for two animation frames, by which time the page's intersection observers have
/// reported what they see.
async fn settle(browser: &Browser) {
    browser
        .js_async("requestAnimationFrame(() => requestAnimationFrame(() => done(true)));")
        .await;
}

async fn a_refusal_means_no_cookie_and_no_viewer_id(page: &str) {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;

    let fill = browser
        .open_and_fill(&format!("{}/publisher/page/{page}", app.site.url))
        .await;

    assert!(fill.iter().all(|s| s["state"] == "filled"), "{fill:?}");
    let cookie = browser.js("return document.cookie").await;
    assert_eq!(cookie, "", "no cookie at all");
    let requests = decision_requests(&browser).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    for body in &requests {
        assert!(body.get("uid").is_none(), "{body}");
        assert!(body.get("frequency_state").is_none(), "{body}");
        assert_eq!(body["consent"], false, "{body}");
    }
    let kept = browser.js("return localStorage.getItem('regie_fs')").await;
    assert_eq!(kept, Value::Null, "no frequency state kept");
    // The ads are still counted when shown.
    app.expect_total(campaign_of("banner"), "impressions", 1)
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_page_that_refuses_consent_on_the_tag_sets_no_cookie_and_sends_no_viewer_id() {
    a_refusal_means_no_cookie_and_no_viewer_id("consent").await;
}

#[tokio::test]
async fn global_privacy_control_sets_no_cookie_and_sends_no_viewer_id() {
    a_refusal_means_no_cookie_and_no_viewer_id("gpc").await;
}

#[tokio::test]
async fn a_browser_that_keeps_no_cookie_is_sent_no_viewer_id_however_often_the_page_fills() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;

    let first = browser
        .open_and_fill(&format!("{}/publisher/page/nocookie", app.site.url))
        .await;
    let second = browser.js_async("window.regie.refresh().then(done);").await;

    for fill in [&first, second.as_array().unwrap()] {
        assert!(fill.iter().all(|s| s["state"] == "filled"), "{fill:?}");
    }
    let requests = decision_requests(&browser).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    for body in &requests {
        // A new id for each view would be a new viewer for regie each time.
        assert!(body.get("uid").is_none(), "{body}");
        assert!(
            body.get("consent").is_none(),
            "the reader did not refuse: {body}"
        );
    }
    app.expect_total(campaign_of("banner"), "impressions", 2)
        .await;
    browser.close().await;
}

/// The banner's image on the demo page at this window width: its `width` attribute.
async fn banner_at(browser: &Browser, app: &TestApp, width: u32) -> Value {
    browser.client.set_window_size(width, 900).await.unwrap();
    let fill = browser.open_and_fill(&format!("{}/demo", app.url)).await;
    assert_eq!(fill[0]["slot"], "banner");
    assert_eq!(fill[0]["state"], "filled", "{fill:?}");
    browser
        .js("return document.querySelector('[data-regie-slot=\"banner\"] img').getAttribute('width')")
        .await
}

#[tokio::test]
async fn the_demo_banner_changes_creative_between_a_desktop_and_a_phone() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;

    let desktop = banner_at(&browser, &app, 1280).await;
    browser.screenshot("demo-desktop-banner.png").await;
    let phone = banner_at(&browser, &app, 400).await;
    browser.screenshot("demo-phone-banner.png").await;

    assert_eq!(desktop, "728");
    assert_eq!(phone, "320");
    // Both shown in full inside the window.
    let fits = browser
        .js("const r = document.querySelector('[data-regie-slot=\"banner\"] img').getBoundingClientRect(); return r.width <= window.innerWidth && r.width === 320;")
        .await;
    assert_eq!(fits, true);
    browser.close().await;
}

#[tokio::test]
async fn a_lazy_slot_far_below_the_fold_is_asked_for_only_when_scrolled_to() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;

    let fill = browser
        .open_and_fill(&format!("{}/publisher/page/lazy", app.site.url))
        .await;
    settle(&browser).await;

    let states: Vec<_> = fill.iter().map(|s| s["state"].clone()).collect();
    assert_eq!(states, [json!("filled"), json!("lazy"), json!("lazy")]);
    let requests = decision_requests(&browser).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["slots"], json!(["banner"]));
    assert!(
        requests[0]["widths"][0].as_u64().unwrap() > 0,
        "{requests:?}"
    );
    app.expect_settled_total(campaign_of("Publicité 2"), "served", 0)
        .await;

    browser
        .js("document.getElementById('p2').scrollIntoView(); return true;")
        .await;
    eventually("the lazy slots", Duration::from_secs(5), || async {
        let states = browser
            .js("return ['p2', 'p3'].map((id) => document.getElementById(id).dataset.regieState)")
            .await;
        (states == json!(["filled", "filled"])).then_some(())
    })
    .await;

    // Both lazy slots came into view together: one request, kept apart from the banner.
    let requests = decision_requests(&browser).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1]["slots"], json!(["Publicité 2", "Publicité 3"]));
    assert_eq!(requests[1]["exclude_advertisers"], json!([ADVERTISER]));
    app.expect_total(campaign_of("Publicité 2"), "served", 1)
        .await;
    browser.close().await;
}

#[tokio::test]
async fn the_tag_keeps_the_frequency_state_of_each_answer_and_a_capped_ad_is_not_shown_again() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    app.cap_frequency(campaign_of("banner"), 1, 3_600).await;
    let browser = Browser::start().await;
    let state_of = |fill: &Value, slot: &str| {
        fill.as_array()
            .unwrap()
            .iter()
            .find(|s| s["slot"] == slot)
            .map(|s| s["state"].clone())
            .unwrap()
    };

    let first = browser
        .open_and_fill(&format!("{}/publisher/page/plain", app.site.url))
        .await;
    let kept = browser.js("return localStorage.getItem('regie_fs')").await;
    let second = browser.js_async("window.regie.refresh().then(done);").await;

    assert_eq!(state_of(&Value::from(first), "banner"), "filled");
    assert_eq!(state_of(&second, "banner"), "empty", "one view an hour");
    assert_eq!(state_of(&second, "Publicité 2"), "filled");
    let requests = decision_requests(&browser).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0]["frequency_state"], "",
        "a new viewer's state is empty"
    );
    assert!(kept.as_str().is_some_and(|k| !k.is_empty()), "{kept}");
    assert_eq!(
        requests[1]["frequency_state"], kept,
        "the first answer's state"
    );
    assert!(requests[1]["uid"].is_string(), "{:?}", requests[1]);

    // The cap was kept in the browser's state, not under its id: without the state, the same
    // id is a viewer regie has not seen.
    browser
        .js("localStorage.removeItem('regie_fs'); return true")
        .await;
    let third = browser.js_async("window.regie.refresh().then(done);").await;
    assert_eq!(state_of(&third, "banner"), "filled");
    browser.close().await;
}
