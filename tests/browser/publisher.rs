//! A publisher's own pages, on another origin than regie: the tag across origins (CORS) and the
//! iframe ad.

use std::time::Duration;

use serde_json::json;

use crate::harness::{campaign_of, eventually, exclusive, Browser, TestApp};

#[tokio::test]
async fn a_publisher_page_on_another_origin_gets_its_ads_from_the_tag() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;

    let fill = browser
        .open_and_fill(&format!("{}/publisher/article", app.site.url))
        .await;

    let states: Vec<_> = fill.iter().map(|s| s["state"].clone()).collect();
    assert_eq!(states, vec![json!("filled"), json!("filled")], "{fill:?}");
    // The viewer id is a first-party cookie of the publisher's page.
    let cookie = browser.js("return document.cookie").await;
    assert!(cookie.as_str().unwrap().contains("regie_uid="), "{cookie}");
    app.expect_total(campaign_of("banner"), "impressions", 1)
        .await;
    app.expect_total(campaign_of("Publicité 2"), "impressions", 1)
        .await;
    app.expect_total(campaign_of("banner"), "viewable", 1).await;
    browser.close().await;
}

#[tokio::test]
async fn an_iframe_ad_counts_its_impression_and_its_viewable_impression() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;

    browser
        .client
        .goto(&format!("{}/publisher/iframe", app.site.url))
        .await
        .unwrap();
    let frame = browser
        .client
        .find(fantoccini::Locator::Id("ad"))
        .await
        .unwrap();
    frame.enter_frame().await.unwrap();
    let state = eventually("the frame's ad", Duration::from_secs(5), || async {
        let state = browser
            .js("const s = document.querySelector('[data-regie-slot]'); return s && s.dataset.regieState")
            .await;
        (state != "loading" && !state.is_null()).then_some(state)
    })
    .await;

    assert_eq!(state, "filled");
    let slot = browser
        .js("return document.querySelector('[data-regie-slot]').dataset.regieSlot")
        .await;
    assert_eq!(slot, "Publicité 2");
    app.expect_total(campaign_of("Publicité 2"), "impressions", 1)
        .await;
    app.expect_total(campaign_of("Publicité 2"), "viewable", 1)
        .await;
    browser.close().await;
}
