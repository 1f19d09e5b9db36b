//! The demo page, as a reader's browser sees it: the tag fills every slot and the tracking
//! follows what the reader really saw and clicked.

use std::collections::HashSet;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::Value;

use crate::harness::{campaign_of, eventually, exclusive, Browser, TestApp, CAMPAIGNS};

fn decision_ids(fill: &[Value]) -> Vec<String> {
    fill.iter()
        .map(|s| s["decision_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Top of a slot relative to the viewport, in CSS pixels.
async fn top_of(browser: &Browser, slot: &str) -> f64 {
    browser
        .js(&format!(
            "return document.querySelector('[data-regie-slot=\"{slot}\"]').getBoundingClientRect().top"
        ))
        .await
        .as_f64()
        .unwrap()
}

/// Waits for the tab the ad opened, switches to it and waits until it shows the landing page
/// of the campaign served in `slot`; answers that page's URL.
async fn switch_to_landing_tab(
    browser: &Browser,
    demo_window: &fantoccini::wd::WindowHandle,
    app: &TestApp,
    slot: &str,
) -> String {
    let landing = eventually("the landing tab", Duration::from_secs(5), || async {
        let windows = browser.client.windows().await.ok()?;
        windows.into_iter().find(|w| w != demo_window)
    })
    .await;
    browser.client.switch_to_window(landing).await.unwrap();
    let expected = format!("{}/landing/{}", app.site.url, campaign_of(slot));
    eventually("the landing page", Duration::from_secs(5), || async {
        let url = browser.client.current_url().await.ok()?;
        (url.as_str() == expected).then_some(())
    })
    .await;
    expected
}

#[tokio::test]
async fn every_slot_of_the_demo_page_shows_an_ad_counted_as_one_impression() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;

    let fill = browser.open_and_fill(&format!("{}/demo", app.url)).await;

    assert_eq!(fill.len(), 4, "{fill:?}");
    assert!(fill.iter().all(|s| s["state"] == "filled"), "{fill:?}");
    let ids: HashSet<_> = decision_ids(&fill).into_iter().collect();
    assert_eq!(ids.len(), 4, "one decision per slot: {fill:?}");
    // Each format is rendered as the tag promises, with what the server sent as data only.
    let rendered = browser
        .js(
            "const q = (s, sel) => document.querySelector(`[data-regie-slot=\"${s}\"] ${sel}`);
             return {
               banner: q('banner', 'a[rel~=sponsored][target=_blank] > img[width=\"728\"]') !== null,
               pave: q('Publicité 2', 'a > img[alt]') !== null,
               texte: q('Publicité 3', 'a.regie-text strong').textContent,
               html: q('Publicité 4', 'iframe[sandbox=\"allow-popups allow-popups-to-escape-sandbox\"]') !== null,
             };",
        )
        .await;
    assert_eq!(rendered["banner"], true);
    assert_eq!(rendered["pave"], true);
    assert_eq!(
        rendered["texte"],
        "Littoral Énergies recrute 40 techniciens"
    );
    assert_eq!(rendered["html"], true);
    // Nothing came from elsewhere than regie and the advertiser's site.
    let origins = browser
        .js("return [...new Set(performance.getEntriesByType('resource').map(r => new URL(r.name).origin))]")
        .await;
    for origin in origins.as_array().unwrap() {
        assert!(
            origin == &app.url || origin == &app.site.url,
            "loaded from {origin}"
        );
    }
    // The demo places "Publicité 4" below the fold of a 1280×800 window.
    assert!(top_of(&browser, "Publicité 4").await > 800.0);
    for (_, campaign) in CAMPAIGNS {
        app.expect_total(campaign, "impressions", 1).await;
    }
    browser.screenshot("demo.png").await;
    for (_, campaign) in CAMPAIGNS {
        app.expect_settled_total(campaign, "impressions", 1).await;
        assert_eq!(app.total(campaign, "served").await, 1);
    }
    browser.close().await;
}

#[tokio::test]
async fn viewable_impressions_count_only_ads_kept_half_in_view_for_a_second() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;
    browser.open_and_fill(&format!("{}/demo", app.url)).await;
    for (_, campaign) in CAMPAIGNS {
        app.expect_total(campaign, "impressions", 1).await;
    }
    // The banner and "Publicité 2" are in view from the start.
    app.expect_total(campaign_of("banner"), "viewable", 1).await;
    app.expect_total(campaign_of("Publicité 2"), "viewable", 1)
        .await;

    // "Publicité 4" is scrolled into view for 400 ms only: not viewable.
    browser
        .js_async(
            "document.querySelector('[data-regie-slot=\"Publicité 4\"]').scrollIntoView({block: 'center'});
             setTimeout(() => { window.scrollTo(0, 0); setTimeout(done, 100); }, 400);",
        )
        .await;
    // "Publicité 3" is kept in view for 1.5 s: viewable.
    browser
        .js("document.querySelector('[data-regie-slot=\"Publicité 3\"]').scrollIntoView({block: 'center'})")
        .await;
    assert!(
        top_of(&browser, "Publicité 4").await > 800.0,
        "Publicité 4 must stay out of view"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    app.expect_total(campaign_of("Publicité 3"), "viewable", 1)
        .await;
    app.expect_settled_total(campaign_of("Publicité 4"), "viewable", 0)
        .await;
    for slot in ["banner", "Publicité 2", "Publicité 3"] {
        assert_eq!(app.total(campaign_of(slot), "viewable").await, 1, "{slot}");
    }
    browser.close().await;
}

#[tokio::test]
async fn a_click_reaches_the_landing_page_and_is_counted_once() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;
    browser.open_and_fill(&format!("{}/demo", app.url)).await;
    let demo_window = browser.client.window().await.unwrap();
    app.reader_looks_at_the_page();

    browser
        .client
        .find(Locator::Css("[data-regie-slot=\"banner\"] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The ad opens in a new tab, through the click URL, on the advertiser's landing page.
    let expected = switch_to_landing_tab(&browser, &demo_window, &app, "banner").await;
    assert_eq!(app.site.landing_hits(campaign_of("banner")), 1);
    app.expect_total(campaign_of("banner"), "clicks", 1).await;

    // Following the same ad link again still lands, but is not a second click.
    browser.client.switch_to_window(demo_window).await.unwrap();
    let href = browser
        .js("return document.querySelector('[data-regie-slot=\"banner\"] a').href")
        .await;
    browser.client.goto(href.as_str().unwrap()).await.unwrap();
    assert_eq!(
        browser.client.current_url().await.unwrap().as_str(),
        expected
    );
    assert_eq!(app.site.landing_hits(campaign_of("banner")), 2);
    app.expect_settled_total(campaign_of("banner"), "clicks", 1)
        .await;
    for slot in ["Publicité 2", "Publicité 3", "Publicité 4"] {
        assert_eq!(app.total(campaign_of(slot), "clicks").await, 0, "{slot}");
    }
    browser.close().await;
}

#[tokio::test]
async fn a_link_in_an_html_creative_goes_through_the_click_url() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;
    browser.open_and_fill(&format!("{}/demo", app.url)).await;
    let demo_window = browser.client.window().await.unwrap();

    // The creative's markup wrote %%CLICK_URL%% where its link goes; it runs sandboxed.
    let frame = browser
        .client
        .find(Locator::Css("[data-regie-slot=\"Publicité 4\"] iframe"))
        .await
        .unwrap();
    browser
        .js("document.querySelector('[data-regie-slot=\"Publicité 4\"]').scrollIntoView()")
        .await;
    frame.enter_frame().await.unwrap();
    app.reader_looks_at_the_page();
    browser
        .client
        .find(Locator::Id("cta"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    switch_to_landing_tab(&browser, &demo_window, &app, "Publicité 4").await;
    app.expect_total(campaign_of("Publicité 4"), "clicks", 1)
        .await;
    browser.close().await;
}

#[tokio::test]
async fn the_refresh_button_fills_the_slots_again_with_new_decisions() {
    let _one = exclusive().await;
    let app = TestApp::start().await;
    let browser = Browser::start().await;
    let first = browser.open_and_fill(&format!("{}/demo", app.url)).await;
    for (_, campaign) in CAMPAIGNS {
        app.expect_total(campaign, "impressions", 1).await;
    }

    browser
        .client
        .find(Locator::Id("refresh-ads"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let again = eventually("a second fill", Duration::from_secs(5), || async {
        let fill = browser.ready().await;
        (decision_ids(&fill) != decision_ids(&first)).then_some(fill)
    })
    .await;

    assert!(again.iter().all(|s| s["state"] == "filled"), "{again:?}");
    let before: HashSet<_> = decision_ids(&first).into_iter().collect();
    assert!(
        decision_ids(&again).iter().all(|id| !before.contains(id)),
        "new decisions"
    );
    // The old ads are gone: one ad element per slot, carrying the new decision.
    let ads_per_slot = browser
        .js("return [...document.querySelectorAll('[data-regie-slot]')].map(s => s.querySelectorAll('.regie-ad').length)")
        .await;
    assert_eq!(ads_per_slot, serde_json::json!([1, 1, 1, 1]));
    for (_, campaign) in CAMPAIGNS {
        app.expect_total(campaign, "impressions", 2).await;
        app.expect_total(campaign, "served", 2).await;
    }
    browser.close().await;
}

#[tokio::test]
async fn a_slot_without_an_ad_is_collapsed() {
    let _one = exclusive().await;
    let app = TestApp::start_without(&["Publicité 3"]).await;
    let browser = Browser::start().await;

    let fill = browser.open_and_fill(&format!("{}/demo", app.url)).await;

    let states: Vec<_> = fill
        .iter()
        .map(|s| (s["slot"].clone(), s["state"].clone()))
        .collect();
    assert!(
        states.contains(&("Publicité 3".into(), "empty".into())),
        "{states:?}"
    );
    let box_height = browser
        .js("return document.querySelector('[data-regie-slot=\"Publicité 3\"]').getBoundingClientRect().height")
        .await;
    assert_eq!(box_height.as_f64(), Some(0.0));
    assert_eq!(fill.iter().filter(|s| s["state"] == "filled").count(), 3);
    browser.close().await;
}
