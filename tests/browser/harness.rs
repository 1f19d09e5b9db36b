//! What every browser test needs: regie itself, an advertiser's web site on 127.0.0.1 (creative
//! images, landing pages, a publisher's page on another origin), and headless Chromium driven
//! through ChromeDriver.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

use crate::helpers::{self, AppOptions, ADMIN_TOKEN};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The advertiser of every campaign of the browser tests' inventory.
pub const ADVERTISER: &str = "littoral-energies";

/// Browser tests run one at a time: timing assertions (one second in view) would be flaky with
/// several Chromiums sharing two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the browser-test lock for the rest of the test.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// Waits until `check` returns `Some`, polling every 50 ms, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free port on 127.0.0.1 (for processes that cannot be handed a bound listener).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where screenshots go: `target/artifacts/`, never committed.
pub fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// The advertiser's and the other publisher's web site.

/// A small site on 127.0.0.1 that plays everything outside regie: the advertisers' CDN and
/// landing pages, and a publisher on another origin.
pub struct Site {
    pub url: String,
    landings: Arc<Mutex<HashMap<String, usize>>>,
    regie_url: Arc<OnceLock<String>>,
}

impl Site {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let landings = Arc::new(Mutex::new(HashMap::new()));
        let regie_url = Arc::new(OnceLock::new());
        let data = (landings.clone(), regie_url.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .route("/creative/{w}x{h}.svg", web::get().to(creative))
                .route("/landing/{name}", web::get().to(landing))
                .route("/publisher/article", web::get().to(publisher_article))
                .route("/publisher/iframe", web::get().to(publisher_iframe))
                .route("/publisher/page/{kind}", web::get().to(publisher_page))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            url,
            landings,
            regie_url,
        }
    }

    /// How many times the landing page `name` was opened.
    pub fn landing_hits(&self, name: &str) -> usize {
        self.landings
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

type SiteData = web::Data<(Arc<Mutex<HashMap<String, usize>>>, Arc<OnceLock<String>>)>;

/// An SVG "image creative" of the requested size.
async fn creative(path: web::Path<(u32, u32)>) -> HttpResponse {
    let (w, h) = path.into_inner();
    HttpResponse::Ok().content_type("image/svg+xml").body(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"><rect width="100%" height="100%" fill="#0b4f8a"/><text x="50%" y="50%" fill="#fff" font-family="sans-serif" font-size="18" text-anchor="middle" dominant-baseline="middle">Littoral Énergies {w}×{h}</text></svg>"##
    ))
}

async fn landing(name: web::Path<String>, data: SiteData) -> HttpResponse {
    *data.0.lock().unwrap().entry(name.clone()).or_default() += 1;
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>Landing {name}</title><h1 id=landing>{name}</h1>"
        ))
}

/// A publisher's article on another origin, with the tag loaded from regie.
async fn publisher_article(data: SiteData) -> HttpResponse {
    let regie = data
        .1
        .get()
        .expect("regie's URL is set before pages are asked for");
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            r#"<!doctype html><html lang="fr"><meta charset="utf-8"><title>Autre éditeur</title>
<div data-regie-slot="banner" id="banner"></div>
<p>Un autre site d'information.</p>
<div data-regie-slot="Publicité 2" id="p2"></div>
<script async src="{regie}/tag.js"></script>"#
        ))
}

/// A publisher's page that embeds regie's iframe ad.
async fn publisher_iframe(data: SiteData) -> HttpResponse {
    let regie = data
        .1
        .get()
        .expect("regie's URL is set before pages are asked for");
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            r#"<!doctype html><html lang="fr"><meta charset="utf-8"><title>Iframe</title>
<iframe id="ad" src="{regie}/v1/slots/Publicit%C3%A9%202/frame?kw=energie" width="300" height="250"
 style="border:0"></iframe>"#
        ))
}

/// A publisher's page for the privacy and lazy-loading tests, which records the body of every
/// decision request the tag makes (`window.decisionRequests`). `kind`: `consent` (the tag's
/// `data-regie-consent="0"`), `gpc` (the browser's Global Privacy Control), `nocookie` (a
/// browser that keeps no cookie: writes to `document.cookie` are dropped without an error),
/// `plain` (the banner and the pavé, nothing else) or `lazy` (a slot in view and two far below the fold, lazy).
async fn publisher_page(kind: web::Path<String>, data: SiteData) -> HttpResponse {
    let regie = data
        .1
        .get()
        .expect("regie's URL is set before pages are asked for");
    let record = r#"<script>window.decisionRequests = []; const realFetch = window.fetch.bind(window);
window.fetch = (url, options) => { if (String(url).includes('/v1/decisions')) window.decisionRequests.push(JSON.parse(options.body)); return realFetch(url, options); };</script>"#;
    let (before, slots, tag) = match kind.as_str() {
        "consent" => ("", BANNER_AND_PAVE, format!(r#"<script async src="{regie}/tag.js" data-regie-consent="0"></script>"#)),
        "gpc" => (
            "<script>Object.defineProperty(navigator, 'globalPrivacyControl', { value: true });</script>",
            BANNER_AND_PAVE,
            format!(r#"<script async src="{regie}/tag.js"></script>"#),
        ),
        "nocookie" => (
            "<script>Object.defineProperty(document, 'cookie', { get: () => '', set: () => {} });</script>",
            BANNER_AND_PAVE,
            format!(r#"<script async src="{regie}/tag.js"></script>"#),
        ),
        "plain" => ("", BANNER_AND_PAVE, format!(r#"<script async src="{regie}/tag.js"></script>"#)),
        _ => (
            "",
            r#"<div data-regie-slot="banner" id="banner"></div>
<div style="height:5000px">Un long article.</div>
<div data-regie-slot="Publicité 2" id="p2" data-regie-lazy></div>
<div data-regie-slot="Publicité 3" id="p3" data-regie-lazy></div>"#,
            format!(r#"<script async src="{regie}/tag.js" data-regie-lazy-margin="100"></script>"#),
        ),
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            r#"<!doctype html><html lang="fr"><meta charset="utf-8"><title>Éditeur</title>
{record}{before}
{slots}
{tag}"#
        ))
}

const BANNER_AND_PAVE: &str = r#"<div data-regie-slot="banner" id="banner"></div>
<div data-regie-slot="Publicité 2" id="p2"></div>"#;

// ---------------------------------------------------------------------------------------------
// regie.

/// regie running for one test, with the browser tests' inventory.
pub struct TestApp {
    pub url: String,
    pub site: Site,
    pub http: reqwest::Client,
    /// The seeded advertiser's API key.
    pub api_key: String,
    _app: helpers::TestApp,
    _inventory: tempfile::NamedTempFile,
}

/// One campaign per demo slot, so that each slot's counters are its campaign's.
pub const CAMPAIGNS: [(&str, &str); 4] = [
    ("banner", "le-banner"),
    ("Publicité 2", "le-pave"),
    ("Publicité 3", "le-texte"),
    ("Publicité 4", "le-html"),
];

/// The campaign served in `slot`.
pub fn campaign_of(slot: &str) -> &'static str {
    CAMPAIGNS
        .iter()
        .find(|(s, _)| *s == slot)
        .map(|(_, c)| *c)
        .unwrap()
}

/// The advertiser of a campaign: [`ADVERTISER`] for all of them when `one_advertiser` (the
/// dashboard's tests), else one each, since a page never shows two campaigns of one
/// advertiser.
fn advertiser_of(campaign: &str, one_advertiser: bool) -> String {
    if one_advertiser || campaign == campaign_of("banner") {
        ADVERTISER.to_owned()
    } else {
        format!("{ADVERTISER}-{campaign}")
    }
}

/// The browser tests' inventory: every demo slot has its own campaign and format, with images
/// and landing pages on the test's own site; the banner has two sizes, 728x90 and 320x50.
/// `without` leaves a slot's campaign out.
pub fn inventory(site: &str, without: &[&str], one_advertiser: bool) -> Value {
    let creative = |slot: &str| -> Value {
        let landing = format!("{site}/landing/{}", campaign_of(slot));
        match slot {
            "banner" => {
                json!({ "id": "leaderboard", "format": "image", "title": "Littoral Énergies",
                "image_url": format!("{site}/creative/728x90.svg"), "alt": "Littoral Énergies",
                "width": 728, "height": 90, "landing_url": landing })
            }
            "Publicité 2" => {
                json!({ "id": "pave", "format": "image", "title": "L'éolien près de chez vous",
                "image_url": format!("{site}/creative/300x250.svg"), "alt": "L'éolien près de chez vous",
                "width": 300, "height": 250, "landing_url": landing })
            }
            "Publicité 3" => json!({ "id": "texte", "format": "text",
                "title": "Littoral Énergies recrute 40 techniciens",
                "body": "CDI à Saint-Aubin-sur-Mer, formation assurée.", "landing_url": landing }),
            _ => json!({ "id": "riche", "format": "html", "width": 300, "height": 250,
                "html": "<div style=\"font:16px sans-serif;background:#ffe066;height:230px;padding:10px\">\
                         <b>Portes ouvertes</b><p><a id=\"cta\" href=\"%%CLICK_URL%%\">Inscrivez-vous</a></p></div>",
                "landing_url": landing }),
        }
    };
    let campaigns: Vec<Value> = CAMPAIGNS
        .iter()
        .filter(|(slot, _)| !without.contains(slot))
        .map(|(slot, id)| {
            let mut creatives = vec![creative(slot)];
            if *slot == "banner" {
                creatives.push(json!({ "id": "mobile", "format": "image", "title": "Littoral Énergies",
                    "image_url": format!("{site}/creative/320x50.svg"), "alt": "Littoral Énergies",
                    "width": 320, "height": 50, "landing_url": format!("{site}/landing/{id}") }));
            }
            json!({ "id": id, "advertiser_id": advertiser_of(id, one_advertiser), "status": "active",
                    "slots": [slot], "weight": 1, "priority": "standard", "pacing": "asap",
                    "creatives": creatives })
        })
        .collect();
    let mut advertisers: Vec<Value> = CAMPAIGNS
        .iter()
        .map(|(_, id)| advertiser_of(id, one_advertiser))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| json!({ "id": id, "name": "Littoral Énergies" }))
        .collect();
    advertisers.sort_by_key(|a| a["id"].as_str().map(str::to_owned));
    json!({
        "slots": CAMPAIGNS.iter().map(|(slot, _)| {
            if *slot == "banner" {
                json!({ "name": slot, "sizes": ["728x90", "320x50"] })
            } else {
                json!({ "name": slot })
            }
        }).collect::<Vec<_>>(),
        "advertisers": advertisers,
        "campaigns": campaigns,
    })
}

impl TestApp {
    /// Starts the site and regie with the browser tests' inventory (less the campaigns of
    /// `without`), and creates the advertiser's key.
    pub async fn start_without(without: &[&str]) -> Self {
        Self::start_with(without, false).await
    }

    /// Starts with every campaign of one advertiser, [`ADVERTISER`], whose key sees them all.
    pub async fn start_for_one_advertiser() -> Self {
        Self::start_with(&[], true).await
    }

    async fn start_with(without: &[&str], one_advertiser: bool) -> Self {
        let site = Site::start().await;
        let file = helpers::inventory_file(&inventory(&site.url, without, one_advertiser));
        let app = helpers::spawn_app_with(AppOptions {
            inventory: file.path().to_owned(),
            ..AppOptions::new(None)
        })
        .await;
        let url = app.address.clone();
        site.regie_url.set(url.clone()).unwrap();
        let http = helpers::reader_client();
        let created = http
            .put(format!("{url}/v1/admin/advertisers/{ADVERTISER}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": "Littoral Énergies" }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            created.status(),
            200,
            "advertiser key: {}",
            created.text().await.unwrap()
        );
        let created: Value = created.json().await.unwrap();
        let api_key = created["api_key"].as_str().expect("an api_key").to_owned();
        Self {
            url,
            site,
            http,
            api_key,
            _app: app,
            _inventory: file,
        }
    }

    pub async fn start() -> Self {
        Self::start_without(&[]).await
    }

    /// Moves regie's clock on by two seconds, as the time a reader takes to look at a page
    /// before clicking an ad: a click sooner after its decision is too fast to be counted.
    pub fn reader_looks_at_the_page(&self) {
        self._app.clock.advance(chrono::Duration::seconds(2));
    }

    /// Gives a campaign a frequency cap, through the admin API.
    pub async fn cap_frequency(&self, campaign: &str, max: u32, per_seconds: u64) {
        let url = format!("{}/v1/admin/campaigns/{campaign}", self.url);
        let mut doc: Value = self
            .http
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        doc["frequency"] = json!({ "max": max, "per_seconds": per_seconds });
        let put = self
            .http
            .put(&url)
            .bearer_auth(ADMIN_TOKEN)
            .json(&doc)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    }

    /// A campaign's stats, read with the admin token.
    pub async fn stats(&self, campaign: &str) -> Value {
        let res = self
            .http
            .get(format!("{}/v1/campaigns/{campaign}/stats", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// One counter of a campaign over the stats' default period: served, impressions, viewable
    /// or clicks.
    pub async fn total(&self, campaign: &str, metric: &str) -> u64 {
        self.stats(campaign).await["totals"][metric]
            .as_u64()
            .unwrap()
    }

    /// Waits until the campaign's `metric` reaches `expected` (the contract gives events two
    /// seconds to show in the stats), then checks it does not go past it.
    pub async fn expect_total(&self, campaign: &str, metric: &str, expected: u64) {
        let mut last = 0;
        let reached = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                last = self.total(campaign, metric).await;
                if last >= expected {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{campaign}: {metric} stayed at {last}, expected {expected}"
        );
        assert_eq!(last, expected, "{campaign}: {metric}");
    }

    /// Asserts that the campaign's `metric` is `expected` once every event sent so far had the
    /// time to be counted (many flush intervals).
    pub async fn expect_settled_total(&self, campaign: &str, metric: &str, expected: u64) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            self.total(campaign, metric).await,
            expected,
            "{campaign}: {metric}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The browser.

/// ChromeDriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: apt-get install -y chromium chromium-driver"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        eventually("chromedriver", Duration::from_secs(10), || {
            let status = status.clone();
            async move {
                reqwest::get(status)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        Self { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh headless Chromium (new profile) at 1280×800.
pub struct Browser {
    pub client: Client,
    _profile: tempfile::TempDir,
    _driver: Driver,
}

impl Browser {
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// A Chromium that saves downloads into `dir` without asking (ChromeDriver passes the
    /// preference on to headless Chromium).
    pub async fn start_with_downloads(dir: &std::path::Path) -> Self {
        Self::launch(Some(dir)).await
    }

    async fn launch(downloads: Option<&std::path::Path>) -> Self {
        let driver = Driver::start().await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,800",
            "--lang=fr-FR",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([
            format!("--user-data-dir={}", profile.path().display()),
            // Headless Chromium says "HeadlessChrome" in its user agent, which regie counts as a
            // bot; the browser tests stand for people, so it presents an ordinary one.
            format!("--user-agent={}", helpers::BROWSER_UA),
        ])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        let mut options = json!({ "binary": CHROMIUM, "args": args });
        if let Some(dir) = downloads {
            options["prefs"] = json!({
                "download.default_directory": dir.display().to_string(),
                "download.prompt_for_download": false,
            });
        }
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a Chromium session");
        Self {
            client,
            _profile: profile,
            _driver: driver,
        }
    }

    /// Opens `url` and waits for the tag's first fill; returns the fill's
    /// `[{slot, state, decision_id}]`.
    pub async fn open_and_fill(&self, url: &str) -> Vec<Value> {
        self.client.goto(url).await.unwrap();
        self.ready().await
    }

    /// Waits for the tag's latest fill (`regie.ready`).
    pub async fn ready(&self) -> Vec<Value> {
        let filled = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const wait = () => window.regie && window.regie.ready
                   ? window.regie.ready.then(done) : setTimeout(wait, 20);
                 wait();",
                vec![],
            )
            .await
            .unwrap();
        filled
            .as_array()
            .cloned()
            .expect("regie.ready resolves to the slots")
    }

    /// Runs `script` in the page and returns its result.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Runs `script` with a `done` callback and returns what it is called with.
    pub async fn js_async(&self, script: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1];\n{script}");
        self.client.execute_async(&script, vec![]).await.unwrap()
    }

    /// Saves a screenshot into `target/artifacts/`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(artifacts_dir().join(name), png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
