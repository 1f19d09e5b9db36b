//! Invalid traffic (contract section 8): crawlers, floods from one address, readers behind a
//! trusted proxy, clicks without impressions or too fast; counted apart, exactly.

use chrono::Duration;
use regie::settings::Settings;
use serde_json::{json, Value};

use crate::helpers::{
    eventually, inventory_file, redis_for, spawn_app_with, AppOptions, StoreKind, TestApp,
};
use crate::on_both_stores;

on_both_stores!(
    a_crawler_is_answered_from_the_house_tier_only_and_counted_apart,
    a_slot_without_a_house_campaign_answers_a_crawler_with_no_fill,
    bots_take_nothing_from_caps_or_frequency_caps,
    a_crawlers_events_are_counted_apart_as_bot_and_its_click_still_lands,
    a_request_without_a_user_agent_is_a_bot,
    impressions_past_the_limit_of_one_address_are_invalid_for_rate,
    clicks_past_the_limit_of_one_address_are_invalid_for_rate,
    decisions_past_the_limit_of_one_address_answer_429_with_retry_after,
    readers_behind_a_trusted_proxy_are_limited_by_their_own_address,
    a_click_without_an_impression_or_too_fast_is_invalid_but_lands,
    invalid_counts_show_in_each_day_and_the_lifetime_totals,
);

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// Two slots, one paid campaign in both and a house ad in the banner only, so every count
/// below is exactly known.
fn inventory() -> Value {
    inventory_with_house(json!({}))
}

/// The inventory above, with `house` merged into the house campaign (caps, frequency).
fn inventory_with_house(house: Value) -> Value {
    let mut maison = json!({ "id": "maison", "advertiser_id": "house", "slots": ["banner"],
        "weight": 1, "priority": "house",
        "creatives": [{ "id": "m", "format": "text", "title": "Maison",
                        "landing_url": "https://maison.example/" }] });
    for (key, value) in house.as_object().unwrap() {
        maison[key] = value.clone();
    }
    json!({
        "slots": [{ "name": "banner", "fallback": "maison" }, { "name": "colonne" }],
        "advertisers": [{ "id": "adv", "name": "Annonceur" }, { "id": "house", "name": "Maison" }],
        "campaigns": [
            { "id": "payante", "advertiser_id": "adv", "slots": ["banner", "colonne"],
              "weight": 1,
              "creatives": [{ "id": "t", "format": "text", "title": "Payante",
                              "landing_url": "https://payante.example/" }] },
            maison
        ]
    })
}

/// An app on `kind` with the inventory above and the settings changed by `tweak`.
async fn app_with(
    redis: Option<&crate::helpers::RedisServer>,
    tweak: impl FnOnce(&mut Settings) + Send + 'static,
) -> (TestApp, tempfile::NamedTempFile) {
    app_on(inventory(), redis, tweak).await
}

async fn app_on(
    doc: Value,
    redis: Option<&crate::helpers::RedisServer>,
    tweak: impl FnOnce(&mut Settings) + Send + 'static,
) -> (TestApp, tempfile::NamedTempFile) {
    let file = inventory_file(&doc);
    let mut options = AppOptions::new(redis.map(|r| r.url()));
    options.inventory = file.path().to_owned();
    options.tweak = Box::new(tweak);
    (spawn_app_with(options).await, file)
}

/// A client that sends `user_agent` (or none at all), redirects not followed.
fn client_as(user_agent: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(ua) = user_agent {
        builder = builder.user_agent(ua);
    }
    builder.build().unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

/// A reader's decision for the paid campaign.
async fn paid_decision(app: &TestApp) -> Value {
    let decision = app.decision("banner").await;
    assert_eq!(decision["campaign_id"], "payante");
    decision
}

fn url(decision: &Value, field: &str) -> String {
    decision[field].as_str().unwrap().to_owned()
}

/// The paid campaign's stats once `ready` holds for them (the flusher runs in the background).
async fn stats_when(app: &TestApp, ready: impl Fn(&Value) -> bool) -> Value {
    let found = eventually(std::time::Duration::from_secs(5), || async {
        let stats = app.stats("payante", "").await;
        ready(&stats).then_some(stats)
    })
    .await;
    // Two more flush intervals, so a count that would wrongly come later shows too.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let last = app.stats("payante", "").await;
    assert!(found.is_some(), "stats never got there: {last}");
    last
}

/// The value of one series of /metrics.
async fn metric(app: &TestApp, series: &str) -> u64 {
    let text = app.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
}

fn invalid_series(kind: &str, reason: &str) -> String {
    format!("regie_invalid_traffic_total{{kind=\"{kind}\",reason=\"{reason}\"}}")
}

/// A campaign's stats once `ready` holds for them.
async fn campaign_stats_when(
    app: &TestApp,
    campaign: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let found = eventually(std::time::Duration::from_secs(5), || async {
        let stats = app.stats(campaign, "").await;
        ready(&stats).then_some(stats)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let last = app.stats(campaign, "").await;
    assert!(
        found.is_some(),
        "{campaign}'s stats never got there: {last}"
    );
    last
}

async fn a_crawler_is_answered_from_the_house_tier_only_and_counted_apart(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |_| {}).await;
    let crawler = client_as(Some(GOOGLEBOT));

    for _ in 0..5 {
        let answer = get(&crawler, &format!("{}/v1/slots/banner/ad", app.address)).await;
        assert_eq!(answer.status(), 200);
        let decision: Value = answer.json().await.unwrap();
        assert_eq!(
            decision["campaign_id"], "maison",
            "a bot never sees a paid ad"
        );
        assert!(decision["impression_url"]
            .as_str()
            .unwrap()
            .starts_with("http"));
    }
    let batch: Value = crawler
        .post(format!("{}/v1/decisions", app.address))
        .json(&json!({ "slots": ["colonne", "banner"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch["decisions"][0]["decision"], Value::Null);
    assert_eq!(batch["decisions"][1]["campaign_id"], "maison");
    let reader = paid_decision(&app).await;

    let maison =
        campaign_stats_when(&app, "maison", |s| s["totals"]["invalid"]["served"] == 6).await;
    assert_eq!(
        maison["totals"]["served"], 0,
        "bots' decisions are not served ones"
    );
    assert_eq!(maison["totals"]["invalid"]["reasons"]["bot"]["served"], 6);
    assert_eq!(
        maison["days"].as_array().unwrap().last().unwrap()["invalid"]["served"],
        6
    );
    let payante = stats_when(&app, |s| s["totals"]["served"] == 1).await;
    assert_eq!(payante["totals"]["invalid"]["served"], 0);
    assert_eq!(metric(&app, &invalid_series("decision", "bot")).await, 6);
    assert_eq!(
        reader["campaign_id"], "payante",
        "a reader still sees the paid ad"
    );
}

async fn a_slot_without_a_house_campaign_answers_a_crawler_with_no_fill(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |_| {}).await;
    let monitor = client_as(Some(
        "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    ));

    let answer = get(&monitor, &format!("{}/v1/slots/colonne/ad", app.address)).await;

    assert_eq!(answer.status(), 204);
    let reader = app.get("/v1/slots/colonne/ad").await;
    assert_eq!(reader.status(), 200, "a reader is served the paid ad there");
}

async fn bots_take_nothing_from_caps_or_frequency_caps(kind: StoreKind) {
    let redis = redis_for(kind);
    let house = json!({ "caps": { "total_impressions": 3 },
                        "frequency": { "max": 1, "per_seconds": 3600 } });
    let (app, _file) = app_on(inventory_with_house(house), redis.as_ref(), |_| {}).await;
    let crawler = client_as(Some("python-requests/2.32.3"));
    // Readers who asked not to see the paid campaign get the capped house ad.
    let reader_gets_maison = |uid: &'static str| {
        let app = &app;
        async move {
            let answer = app
                .get(&format!("/v1/slots/banner/ad?exclude=payante&uid={uid}"))
                .await;
            if answer.status() != 200 {
                return None;
            }
            let decision: Value = answer.json().await.unwrap();
            (decision["campaign_id"] == "maison").then_some(())
        }
    };
    let wait = std::time::Duration::from_secs(5);
    eventually(wait, || reader_gets_maison("r0"))
        .await
        .expect("the first reader sees the house ad");

    let mut served_to_bots = 0;
    for _ in 0..10 {
        let answer = get(
            &crawler,
            &format!("{}/v1/slots/banner/ad?exclude=payante&uid=r1", app.address),
        )
        .await;
        if answer.status() == 200 {
            let decision: Value = answer.json().await.unwrap();
            assert_eq!(decision["campaign_id"], "maison");
            served_to_bots += 1;
        } else {
            assert_eq!(answer.status(), 204);
        }
    }

    // Had the bot taken units or views, the cap of 3 or r1's frequency cap would stop these.
    eventually(wait, || reader_gets_maison("r1"))
        .await
        .expect("the bot's requests left r1's frequency cap alone");
    eventually(wait, || reader_gets_maison("r2"))
        .await
        .expect("the bot's requests left the cap alone");
    for _ in 0..3 {
        assert!(
            reader_gets_maison("r3").await.is_none(),
            "the cap of 3 is reached"
        );
    }
    let stats = campaign_stats_when(&app, "maison", |s| {
        s["totals"]["served"] == 3 && s["totals"]["invalid"]["served"] == served_to_bots
    })
    .await;
    assert_eq!(stats["totals"]["served"], 3);
    assert!(served_to_bots > 0, "the crawler was answered");
}

async fn a_crawlers_events_are_counted_apart_as_bot_and_its_click_still_lands(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |_| {}).await;
    let crawler = client_as(Some(GOOGLEBOT));
    let decision = paid_decision(&app).await;

    assert_eq!(
        get(&crawler, &url(&decision, "impression_url"))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&crawler, &url(&decision, "viewable_url"))
            .await
            .status(),
        200
    );
    app.clock.advance(Duration::seconds(5));
    let click = get(&crawler, &url(&decision, "click_url")).await;

    assert_eq!(click.status(), 302);
    assert_eq!(click.headers()["location"], "https://payante.example/");
    let stats = stats_when(&app, |s| s["totals"]["invalid"]["clicks"] == 1).await;
    let totals = &stats["totals"];
    assert_eq!(
        (
            &totals["impressions"],
            &totals["viewable"],
            &totals["clicks"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "nothing a crawler did counts: {totals}"
    );
    assert_eq!(
        totals["invalid"],
        json!({ "served": 0, "impressions": 1, "viewable": 1, "clicks": 1,
                "reasons": {
                    "bot": { "served": 0, "impressions": 1, "viewable": 1, "clicks": 1 },
                    "rate": { "served": 0, "impressions": 0, "viewable": 0, "clicks": 0 },
                    "no_impression": { "served": 0, "impressions": 0, "viewable": 0, "clicks": 0 },
                    "too_fast": { "served": 0, "impressions": 0, "viewable": 0, "clicks": 0 } } })
    );
    assert_eq!(totals["served"], 1, "the reader's decision");
    for kind in ["impression", "viewable", "click"] {
        assert_eq!(
            metric(&app, &invalid_series(kind, "bot")).await,
            1,
            "{kind}"
        );
    }
    assert_eq!(
        metric(&app, &invalid_series("click", "no_impression")).await,
        0
    );
}

async fn a_request_without_a_user_agent_is_a_bot(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |_| {}).await;
    let decision = paid_decision(&app).await;
    let other = paid_decision(&app).await;

    get(&client_as(None), &url(&decision, "impression_url")).await;
    get(&client_as(Some("")), &url(&other, "impression_url")).await;

    let stats = stats_when(&app, |s| s["totals"]["invalid"]["impressions"] == 2).await;
    assert_eq!(stats["totals"]["impressions"], 0);
    assert_eq!(
        stats["totals"]["invalid"]["reasons"]["bot"]["impressions"],
        2
    );
}

async fn impressions_past_the_limit_of_one_address_are_invalid_for_rate(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |s| {
        s.ivt_impressions_per_minute = 3;
    })
    .await;
    let mut decisions = Vec::new();
    for _ in 0..6 {
        decisions.push(paid_decision(&app).await);
    }

    for decision in &decisions[..5] {
        assert_eq!(
            app.fire(&url(decision, "impression_url")).await.status(),
            200
        );
        app.fire(&url(decision, "viewable_url")).await;
    }
    // Three a minute: one more allowed every 20 seconds.
    app.clock.advance(Duration::seconds(20));
    app.fire(&url(&decisions[5], "impression_url")).await;

    let stats = stats_when(&app, |s| s["totals"]["impressions"] == 4).await;
    let totals = &stats["totals"];
    assert_eq!(totals["impressions"], 4);
    assert_eq!(
        totals["viewable"], 3,
        "viewable impressions have their own allowance"
    );
    assert_eq!(totals["invalid"]["reasons"]["rate"]["impressions"], 2);
    assert_eq!(totals["invalid"]["reasons"]["rate"]["viewable"], 2);
    assert_eq!(metric(&app, &invalid_series("impression", "rate")).await, 2);
    assert_eq!(metric(&app, &invalid_series("viewable", "rate")).await, 2);
}

async fn clicks_past_the_limit_of_one_address_are_invalid_for_rate(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |s| s.ivt_clicks_per_minute = 1).await;
    let first = paid_decision(&app).await;
    let second = paid_decision(&app).await;
    app.fire(&url(&first, "impression_url")).await;
    app.fire(&url(&second, "impression_url")).await;
    stats_when(&app, |s| s["totals"]["impressions"] == 2).await;
    app.clock.advance(Duration::seconds(2));

    assert_eq!(app.fire(&url(&first, "click_url")).await.status(), 302);
    assert_eq!(app.fire(&url(&second, "click_url")).await.status(), 302);

    let stats = stats_when(&app, |s| s["totals"]["invalid"]["clicks"] == 1).await;
    assert_eq!(stats["totals"]["clicks"], 1);
    assert_eq!(stats["totals"]["invalid"]["reasons"]["rate"]["clicks"], 1);
    assert_eq!(metric(&app, &invalid_series("click", "rate")).await, 1);
}

async fn decisions_past_the_limit_of_one_address_answer_429_with_retry_after(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |s| s.decisions_per_second = 3).await;

    for _ in 0..3 {
        assert_eq!(app.get("/v1/slots/banner/ad").await.status(), 200);
    }
    let refused = app
        .client
        .get(format!("{}/v1/slots/banner/ad", app.address))
        .header("Origin", "https://journal.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        refused
            .headers()
            .contains_key("access-control-allow-origin"),
        "the publisher's script can read the answer"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"].as_str().unwrap().len() > 10);
    let batch = app.batch(json!({ "slots": ["banner"] })).await;
    assert_eq!(batch.status(), 429, "batches share the allowance");

    app.clock.advance(Duration::seconds(1));
    assert_eq!(app.get("/v1/slots/banner/ad").await.status(), 200);
    assert_eq!(metric(&app, &invalid_series("decision", "rate")).await, 2);
    let stats = stats_when(&app, |s| s["totals"]["served"] == 4).await;
    assert_eq!(
        stats["totals"]["served"], 4,
        "refused requests serve nothing"
    );
    assert_eq!(stats["totals"]["invalid"]["served"], 0);
}

async fn readers_behind_a_trusted_proxy_are_limited_by_their_own_address(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |s| {
        s.decisions_per_second = 2;
        s.trusted_proxies = "127.0.0.0/8, ::1".into();
    })
    .await;
    let app = &app;
    let from = |forwarded: &'static str| async move {
        app.client
            .get(format!("{}/v1/slots/banner/ad", app.address))
            .header("X-Forwarded-For", forwarded)
            .send()
            .await
            .unwrap()
            .status()
    };

    for _ in 0..2 {
        assert_eq!(from("203.0.113.1").await, 200);
        assert_eq!(from("2001:db8:1:2::1").await, 200);
    }
    assert_eq!(from("203.0.113.1").await, 429);
    assert_eq!(
        from("2001:db8:1:2::77").await,
        429,
        "one IPv6 /64 is one reader"
    );
    // A reader who writes someone else's address first is still known by the proxy's entry.
    assert_eq!(from("198.51.100.5, 203.0.113.1").await, 429);
    assert_eq!(from("198.51.100.5").await, 200, "another reader");
    assert_eq!(
        from("203.0.113.2, 127.0.0.1").await,
        200,
        "trusted hops are skipped"
    );
}

async fn a_click_without_an_impression_or_too_fast_is_invalid_but_lands(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |_| {}).await;
    let unseen = paid_decision(&app).await;
    let hasty = paid_decision(&app).await;
    let genuine = paid_decision(&app).await;
    app.fire(&url(&hasty, "impression_url")).await;
    app.fire(&url(&genuine, "impression_url")).await;
    stats_when(&app, |s| s["totals"]["impressions"] == 2).await;

    app.clock.advance(Duration::milliseconds(999));
    let too_fast = app.fire(&url(&hasty, "click_url")).await;
    app.clock.advance(Duration::milliseconds(1));
    let without_impression = app.fire(&url(&unseen, "click_url")).await;
    let counted = app.fire(&url(&genuine, "click_url")).await;

    for response in [&too_fast, &without_impression, &counted] {
        assert_eq!(response.status(), 302);
        assert_eq!(response.headers()["location"], "https://payante.example/");
    }
    let stats = stats_when(&app, |s| s["totals"]["invalid"]["clicks"] == 2).await;
    let totals = &stats["totals"];
    assert_eq!(totals["clicks"], 1);
    assert_eq!(totals["ctr"], 0.5);
    assert_eq!(totals["invalid"]["reasons"]["too_fast"]["clicks"], 1);
    assert_eq!(totals["invalid"]["reasons"]["no_impression"]["clicks"], 1);
    assert_eq!(metric(&app, &invalid_series("click", "too_fast")).await, 1);
    assert_eq!(
        metric(&app, &invalid_series("click", "no_impression")).await,
        1
    );
    assert_eq!(metric(&app, "regie_clicks_total{slot=\"banner\"}").await, 1);

    // The impression arriving late does not make the invalid click valid, nor count twice.
    app.fire(&url(&unseen, "impression_url")).await;
    app.fire(&url(&unseen, "click_url")).await;
    let stats = stats_when(&app, |s| s["totals"]["impressions"] == 3).await;
    assert_eq!(stats["totals"]["clicks"], 1);
    assert_eq!(stats["totals"]["invalid"]["clicks"], 2);
}

async fn invalid_counts_show_in_each_day_and_the_lifetime_totals(kind: StoreKind) {
    let redis = redis_for(kind);
    let (app, _file) = app_with(redis.as_ref(), |_| {}).await;
    let crawler = client_as(Some("curl/8.5.0"));
    let today = paid_decision(&app).await;
    get(&crawler, &url(&today, "impression_url")).await;
    stats_when(&app, |s| s["totals"]["invalid"]["impressions"] == 1).await;
    app.clock.advance(Duration::days(1));
    let tomorrow = paid_decision(&app).await;
    get(&crawler, &url(&tomorrow, "impression_url")).await;
    app.fire(&url(&tomorrow, "viewable_url")).await;

    let stats = stats_when(&app, |s| s["totals"]["invalid"]["impressions"] == 2).await;
    let days = stats["days"].as_array().unwrap();
    let day = |date: &str| days.iter().find(|d| d["date"] == date).unwrap().clone();
    assert_eq!(
        day("2026-11-30")["invalid"],
        json!({ "served": 0, "impressions": 1, "viewable": 0, "clicks": 0 })
    );
    assert_eq!(
        day("2026-12-01")["invalid"],
        json!({ "served": 0, "impressions": 1, "viewable": 0, "clicks": 0 })
    );
    assert_eq!(day("2026-12-01")["viewable"], 1, "the reader's own event");
    assert_eq!(day("2026-11-29")["invalid"]["impressions"], 0);
    assert_eq!(stats["slots"][0]["invalid"]["impressions"], 2);
    let csv = app
        .get_as(
            "/v1/campaigns/payante/stats.csv",
            crate::helpers::ADMIN_TOKEN,
        )
        .await
        .text()
        .await
        .unwrap();
    let line = |date: &str| {
        csv.lines()
            .find(|l| l.starts_with(&format!("{date},banner,")))
            .unwrap_or_else(|| panic!("no {date} banner line in:\n{csv}"))
            .to_owned()
    };
    assert!(
        line("2026-11-30").ends_with(",1,0"),
        "{}",
        line("2026-11-30")
    );
    assert!(
        line("2026-12-01").ends_with(",1,0"),
        "{}",
        line("2026-12-01")
    );

    let key = app
        .admin(reqwest::Method::PUT, "/v1/admin/advertisers/adv")
        .json(&json!({ "name": "Annonceur" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine: Value = app
        .get_as("/v1/advertisers/me/campaigns", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["campaigns"][0]["totals"]["invalid"]["impressions"], 2);
}
