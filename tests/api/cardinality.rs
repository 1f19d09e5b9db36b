//! The size of `/metrics` does not depend on the number of campaigns: counted events are
//! labelled by slot, unless per-campaign series are asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::{Duration, Instant};

use regie::inventory::{CampaignId, SlotName};
use regie::store::Event;
use regie::tracking::EventKind;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app_with, AppOptions, TestApp};

/// Readers are people: invalid-traffic rules treat an HTTP library's user agent as a bot.
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                       Chrome/124.0 Safari/537.36";

const SLOTS: [&str; 4] = ["banner", "Publicité 2", "Publicité 3", "Publicité 4"];

const EVENT_FAMILIES: [&str; 3] = [
    "regie_impressions_total",
    "regie_viewable_impressions_total",
    "regie_clicks_total",
];

/// An inventory file of `campaigns` campaigns spread over the four slots, campaign `i` in slot
/// `i % 4` and of advertiser `adv{i % 4}` (a page never shows two campaigns of one advertiser). Written as text: a `serde_json::Value` of 100 000 campaigns takes seconds to build
/// in a debug build.
fn inventory_file(campaigns: usize) -> tempfile::NamedTempFile {
    let slots = serde_json::to_string(&SLOTS.map(|s| json!({ "name": s }))).unwrap();
    let mut text = format!(
        r#"{{"slots":{slots},"advertisers":[{{"id":"adv0","name":"A0"}},{{"id":"adv1","name":"A1"}},{{"id":"adv2","name":"A2"}},{{"id":"adv3","name":"A3"}}],"campaigns":["#
    );
    for i in 0..campaigns {
        if i > 0 {
            text.push(',');
        }
        let slot = SLOTS[i % SLOTS.len()];
        let advertiser = i % SLOTS.len();
        write!(
            text,
            r#"{{"id":"c{i}","advertiser_id":"adv{advertiser}","slots":["{slot}"],"creatives":[{{"id":"t","format":"text","title":"Annonce","landing_url":"https://adv.example/"}}]}}"#
        )
        .unwrap();
    }
    text.push_str("]}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// Every series of a Prometheus text exposition, by name and labels, with its value.
fn series(metrics: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.parse().unwrap_or(f64::NAN)))
        .collect()
}

/// The series of one family (`name` or `name{…}`), by their labels.
fn family(metrics: &str, name: &str) -> BTreeMap<String, f64> {
    series(metrics)
        .into_iter()
        .filter_map(|(s, v)| {
            let labels = s.strip_prefix(name)?;
            (labels.is_empty() || labels.starts_with('{')).then(|| (labels.to_owned(), v))
        })
        .collect()
}

fn total(metrics: &str, name: &str) -> u64 {
    family(metrics, name).values().sum::<f64>() as u64
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(BROWSER)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What one app was asked to count, by kind.
#[derive(Debug, Default, PartialEq)]
struct Counted {
    impressions: u64,
    viewable: u64,
    clicks: u64,
}

/// Serves `pages` pages of the four slots over HTTP and fires each decision's impression and
/// viewable URLs, and the click URL of the first `clicks` of them.
async fn serve_pages(app: &TestApp, pages: usize, clicks: usize) -> Counted {
    let client = browser();
    let mut decisions = Vec::new();
    for page in 0..pages {
        let answer: Value = client
            .post(format!("{}/v1/decisions", app.address))
            .json(&json!({ "slots": SLOTS, "uid": format!("reader-{page}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        decisions.extend(answer["decisions"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(decisions.len(), pages * SLOTS.len());
    for decision in &decisions {
        for url in ["impression_url", "viewable_url"] {
            let fired = client
                .get(decision[url].as_str().expect("every slot is filled"))
                .send()
                .await
                .unwrap();
            assert_eq!(fired.status(), 200);
        }
    }
    // A click counts only well after its decision and after its impression.
    app.clock.advance(chrono::Duration::seconds(5));
    for decision in decisions.iter().take(clicks) {
        let fired = client
            .get(decision["click_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(fired.status(), 302);
    }
    Counted {
        impressions: decisions.len() as u64,
        viewable: decisions.len() as u64,
        clicks: clicks as u64,
    }
}

/// Counts an impression, a viewable impression and a click for every campaign of
/// `inventory_file(campaigns)`, each in its own decision, through the app's own recorder, flusher,
/// store and metrics: what the tracking endpoints do once a token is verified. Over HTTP, the
/// 300 000 requests would take minutes in a debug build and add nothing to what is measured
/// here, which is what the counting leaves in `/metrics`.
fn count_for_every_campaign(app: &TestApp, campaigns: usize) -> Counted {
    let slots: Vec<SlotName> = SLOTS.iter().map(|s| SlotName::parse(s).unwrap()).collect();
    let day = app.state.today();
    for i in 0..campaigns {
        let campaign = CampaignId::parse(&format!("c{i}")).unwrap();
        let decision_id = ulid::Ulid::new();
        for kind in EventKind::ALL {
            app.state.recorder.event(Event {
                kind,
                decision_id,
                campaign: campaign.clone(),
                slot: slots[i % slots.len()].clone(),
                day,
                invalid: None,
            });
        }
    }
    Counted {
        impressions: campaigns as u64,
        viewable: campaigns as u64,
        clicks: campaigns as u64,
    }
}

/// Starts an app on `inventory_file(campaigns)`, counts events for every campaign, and returns
/// `/metrics` after every event shows in it.
async fn metrics_after_counting_every_campaign(campaigns: usize, campaign_labels: bool) -> String {
    let file = inventory_file(campaigns);
    let mut options = AppOptions::new(None);
    options.inventory = file.path().to_owned();
    options.tweak = Box::new(move |s| s.metrics_campaign_labels = campaign_labels);
    let started = Instant::now();
    let app = spawn_app_with(options).await;
    eprintln!("{campaigns} campaigns: started in {:?}", started.elapsed());

    let over_http = serve_pages(&app, 25, 5).await;
    let direct = count_for_every_campaign(&app, campaigns);
    let expected = Counted {
        impressions: over_http.impressions + direct.impressions,
        viewable: over_http.viewable + direct.viewable,
        clicks: over_http.clicks + direct.clicks,
    };

    let counted = |metrics: &str| Counted {
        impressions: total(metrics, "regie_impressions_total"),
        viewable: total(metrics, "regie_viewable_impressions_total"),
        clicks: total(metrics, "regie_clicks_total"),
    };
    let settled = eventually(Duration::from_secs(60), || async {
        let metrics = app.metrics().await;
        (counted(&metrics) == expected).then_some(metrics)
    })
    .await;
    eprintln!("{campaigns} campaigns: counted in {:?}", started.elapsed());
    match settled {
        // Scraped once more: the latency series of `/metrics` itself appear once an earlier
        // scrape has been answered, which the wait above may or may not have done.
        Some(_) => app.metrics().await,
        None => {
            let metrics = app.metrics().await;
            panic!("counted {:?}, expected {expected:?}", counted(&metrics))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_the_same_series_with_a_hundred_thousand_campaigns_as_with_ten() {
    let ten = metrics_after_counting_every_campaign(10, false).await;
    let hundred_thousand = metrics_after_counting_every_campaign(100_000, false).await;

    let (small, large) = (series(&ten), series(&hundred_thousand));
    let (small, large): (BTreeSet<&String>, BTreeSet<&String>) =
        (small.keys().collect(), large.keys().collect());
    assert_eq!(
        large.difference(&small).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "series only with 100 000 campaigns"
    );
    assert_eq!(small, large);
    // Labelled by slot: one series per slot and kind.
    for name in EVENT_FAMILIES {
        let labels: Vec<String> = family(&hundred_thousand, name).into_keys().collect();
        let expected: Vec<String> = {
            let mut l: Vec<String> = SLOTS.iter().map(|s| format!("{{slot=\"{s}\"}}")).collect();
            l.sort();
            l
        };
        assert_eq!(labels, expected, "{name}");
    }
    eprintln!(
        "/metrics: {} series, {} bytes with 10 campaigns; {} series, {} bytes with 100 000",
        small.len(),
        ten.len(),
        large.len(),
        hundred_thousand.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_campaign_labels_setting_gives_one_series_per_campaign_and_slot() {
    let campaigns = 10;

    let metrics = metrics_after_counting_every_campaign(campaigns, true).await;

    for name in EVENT_FAMILIES {
        let by_labels = family(&metrics, name);
        let expected: BTreeSet<String> = (0..campaigns)
            .map(|i| format!("{{campaign=\"c{i}\",slot=\"{}\"}}", SLOTS[i % SLOTS.len()]))
            .collect();
        assert_eq!(
            by_labels.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{name}"
        );
    }
}
