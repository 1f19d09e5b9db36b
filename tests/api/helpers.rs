//! The test harness: a real `redis-server` per test (own port, own directory, killed on drop)
//! and `spawn_app`, which starts the real application on port 0 against it or against the
//! embedded store, with a manual clock.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use regie::clock::ManualClock;
use regie::settings::Settings;
use regie::startup::{Application, StopHandle};
use secrecy::SecretString;
use serde_json::{json, Value};

/// The admin token of every test app.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghij";
/// Tracking keys shared by the instances of a test, as a deployment shares them.
pub const TRACKING_KEYS: &str = "t1:test-tracking-secret-0123456789abcdefgh";

/// The user agent of an ordinary browser. The tests' readers are people, and a request with no
/// user agent or an HTTP library's is a bot's (contract section 8), so every reader's client
/// sends this one.
pub const BROWSER_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";

/// A reader's HTTP client: a browser's user agent, redirects not followed.
pub fn reader_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(BROWSER_UA)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Which store an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded in-memory store.
    Memory,
    /// A real redis-server started for the test.
    Redis,
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server owned by one test.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a redis-server on a free port with its own data directory. Append-only with
    /// fsync on every write, so a restart keeps what was written unless the test wipes it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = client.get_connection() {
                    if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (as a crash or an outage would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP), as a stalled host: connections stay open and nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts it again on the same port, keeping its data or not.
    pub fn restart(&mut self, keep_data: bool) {
        self.stop();
        if !keep_data {
            for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    std::fs::remove_dir_all(path).unwrap();
                } else {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        self.launch();
    }

    /// A synchronous connection for assertions on what Redis holds.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The fixed start of every test clock: inside the default inventory's flights.
pub fn test_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

/// A TCP proxy to a port on 127.0.0.1 that holds each new connection for a while before
/// connecting it, as a distant store or a busy host's accept queue would; once connected,
/// bytes pass as they come. Stops with the test's runtime.
pub struct SlowConnects {
    /// The port it listens on.
    pub port: u16,
}

impl SlowConnects {
    /// Starts it: every connection to `port` reaches `target` after `delay`.
    pub async fn start(target: u16, delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port }
    }

    /// A Redis URL through it.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// How to start an app.
pub struct AppOptions {
    /// The Redis URL, or `None` for the embedded store.
    pub redis_url: Option<String>,
    /// The inventory file.
    pub inventory: PathBuf,
    /// Adjusts the settings further.
    pub tweak: Box<dyn FnOnce(&mut Settings) + Send>,
    /// The clock (share one between instances to move them together).
    pub clock: ManualClock,
}

impl AppOptions {
    /// The defaults: the repository's inventory, the test epoch.
    pub fn new(redis_url: Option<String>) -> Self {
        Self {
            redis_url,
            inventory: PathBuf::from("config/inventory.json"),
            tweak: Box::new(|_| {}),
            clock: ManualClock::new(test_epoch()),
        }
    }
}

/// A running application.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The operations listener's `http://127.0.0.1:PORT`, when the test set `ops_listen`;
    /// else the same as `address`.
    pub ops_address: String,
    /// A client that does not follow redirects.
    pub client: reqwest::Client,
    /// The app's clock.
    pub clock: ManualClock,
    /// The state its handlers share, for driving the domain where HTTP would only add time.
    pub state: actix_web::web::Data<regie::state::AppState>,
    stop: StopHandle,
}

/// The Redis timeouts of stores a test builds itself: a second for everything, requests
/// included (a test of the request budget sets its own).
pub fn store_timeouts() -> regie::store::RedisTimeouts {
    regie::store::RedisTimeouts {
        connect: Duration::from_secs(1),
        response: Duration::from_secs(1),
        request: Duration::from_secs(1),
    }
}

/// Settings for a test: the repository's config files, none of the developer's variables.
pub fn test_settings(redis_url: Option<String>, inventory: PathBuf) -> Settings {
    let mut settings = Settings::load_from(std::path::Path::new("config"), "local", false).unwrap();
    settings.listen = "127.0.0.1:0".into();
    settings.redis_url = redis_url.map(SecretString::from);
    settings.inventory = Some(inventory);
    settings.admin_token = Some(SecretString::from(ADMIN_TOKEN.to_owned()));
    settings.tracking_keys = Some(SecretString::from(TRACKING_KEYS.to_owned()));
    settings.flush_interval_ms = 50;
    settings.poll_interval_ms = 100;
    settings.workers = Some(1);
    settings.shutdown_timeout_secs = 5;
    // Every reader of a test comes from 127.0.0.1, so the limits per client address are off
    // unless a test of invalid traffic turns them on.
    settings.decisions_per_second = 0;
    settings.ivt_impressions_per_minute = 0;
    settings.ivt_clicks_per_minute = 0;
    // A debug build on a loaded machine can take longer than the production budget of 50 ms
    // for a store call: tests of frequency caps must not see it skipped. Tests of the budget
    // set it back.
    settings.store_request_timeout_ms = 1_000;
    settings
}

/// Starts an app.
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    regie::telemetry::init(regie::settings::LogFormat::Pretty, "error");
    let mut settings = test_settings(options.redis_url, options.inventory);
    (options.tweak)(&mut settings);
    let app = Application::build_with_clock(settings, Arc::new(options.clock.clone()))
        .await
        .expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let ops_address = app.ops_port().map_or_else(
        || address.clone(),
        |port| format!("http://127.0.0.1:{port}"),
    );
    let stop = app.stop_handle();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let client = reader_client();
    TestApp {
        address,
        ops_address,
        client,
        clock: options.clock,
        state,
        stop,
    }
}

/// Starts an app on the given store with the defaults.
pub async fn spawn_app(kind: StoreKind, redis: Option<&RedisServer>) -> TestApp {
    let url = match kind {
        StoreKind::Memory => None,
        StoreKind::Redis => Some(redis.expect("a Redis app needs a server").url()),
    };
    spawn_app_with(AppOptions::new(url)).await
}

/// The decision path of a slot, percent-encoded.
pub fn ad_path(slot: &str) -> String {
    format!("/v1/slots/{}/ad", urlencode(slot))
}

/// Percent-encodes a path segment.
pub fn urlencode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl TestApp {
    /// GET a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    /// GET a path with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A request with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// Asks for an ad and returns the decision, asserting it was filled.
    pub async fn decision(&self, slot: &str) -> Value {
        let response = self.get(&ad_path(slot)).await;
        assert_eq!(response.status(), 200, "slot {slot} was not filled");
        response.json().await.unwrap()
    }

    /// GETs a decision path with a query, asserting it was filled.
    pub async fn decision_at(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path} was not filled");
        response.json().await.unwrap()
    }

    /// POSTs a batch of slots.
    pub async fn batch(&self, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/decisions", self.address))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// GETs an absolute tracking URL of this app.
    pub async fn fire(&self, url: &str) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }

    /// Stats of a campaign as the admin sees them.
    pub async fn stats(&self, campaign: &str, query: &str) -> Value {
        let response = self
            .get_as(
                &format!("/v1/campaigns/{campaign}/stats{query}"),
                ADMIN_TOKEN,
            )
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// The current inventory document with its version.
    pub async fn inventory(&self) -> Value {
        let response = self
            .admin(reqwest::Method::GET, "/v1/admin/inventory")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Replaces the inventory; returns the response.
    pub async fn put_inventory(&self, doc: &Value) -> reqwest::Response {
        self.admin(reqwest::Method::PUT, "/v1/admin/inventory")
            .json(doc)
            .send()
            .await
            .unwrap()
    }

    /// Starts a graceful shutdown, as SIGTERM would.
    pub fn begin_shutdown(&self) {
        self.stop.stop();
    }

    /// The text of /metrics.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.ops_address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// Polls `check` until it returns `Some` or `within` passes: for background work (flushes,
/// inventory propagation), never to wait for time-based logic.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the campaign's lifetime totals of `field` reach `expected`, then returns what
/// they are a little later (so an over-count would show). A store that is still reconnecting
/// (503) is asked again.
pub async fn settled_total(app: &TestApp, campaign: &str, field: &str, expected: u64) -> u64 {
    let read = || async {
        let response = app
            .get_as(&format!("/v1/campaigns/{campaign}/stats"), ADMIN_TOKEN)
            .await;
        if response.status() != 200 {
            return None;
        }
        let stats: Value = response.json().await.ok()?;
        stats["totals"][field].as_u64()
    };
    eventually(Duration::from_secs(5), || async {
        read().await.filter(|n| *n >= expected)
    })
    .await;
    // Two more flush intervals for anything that would wrongly come later.
    tokio::time::sleep(Duration::from_millis(150)).await;
    eventually(Duration::from_secs(5), read)
        .await
        .expect("the stats answer")
}

/// An inventory document with `slots` slots and `campaigns` campaigns each eligible in every
/// slot, weights 1..=n, each of its own advertiser (so that one page may show them all), and
/// no fallback.
pub fn wide_inventory(slots: usize, campaigns: usize) -> Value {
    let slot_names: Vec<String> = (1..=slots).map(|i| format!("Publicité {i}")).collect();
    serde_json::json!({
        "slots": slot_names.iter().map(|n| serde_json::json!({ "name": n })).collect::<Vec<_>>(),
        "advertisers": (1..=campaigns).map(|i| serde_json::json!({ "id": format!("adv{i}"), "name": format!("Advertiser {i}") })).collect::<Vec<_>>(),
        "campaigns": (1..=campaigns).map(|i| serde_json::json!({
            "id": format!("c{i}"), "advertiser_id": format!("adv{i}"), "slots": slot_names, "weight": i,
            "creatives": [{ "id": "t", "format": "text", "title": format!("Campagne {i}"),
                            "landing_url": format!("https://c{i}.example/") }]
        })).collect::<Vec<_>>(),
    })
}

/// Writes an inventory document to a temp file kept alive by the returned handle.
pub fn inventory_file(doc: &Value) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    file
}

/// Runs a behaviour test once on each store.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::StoreKind;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_the_embedded_store() {
                    super::$name(StoreKind::Memory).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_redis() {
                    super::$name(StoreKind::Redis).await
                }
            }
        )*
    };
}

/// The lines of a JSON log, each parsed; a line that is not JSON fails the test.
pub fn json_log_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A Redis server when the test runs on Redis.
pub fn redis_for(kind: StoreKind) -> Option<RedisServer> {
    (kind == StoreKind::Redis).then(RedisServer::start)
}

/// The real `regie` binary, running with only the settings a test gives it.
pub struct Binary {
    child: Child,
    /// Its base URL.
    pub base: String,
}

impl Binary {
    /// Starts the binary in the crate's directory with `settings` (and `PATH`, nothing else
    /// inherited) on a free port, its public URL that port's unless `settings` say otherwise,
    /// its standard output to `stdout`, and waits until it is ready.
    pub async fn start(settings: &[(&str, &str)], stdout: Stdio) -> Self {
        Self::start_in(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
            settings,
            stdout,
        )
        .await
    }

    /// As [`Binary::start`], in the working directory `dir`.
    pub async fn start_in(dir: &std::path::Path, settings: &[(&str, &str)], stdout: Stdio) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_regie"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REGIE_LISTEN", format!("127.0.0.1:{port}"))
            // As a deployment sets it (production refuses to start without it); a test may
            // give its own.
            .env("REGIE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .envs(settings.iter().copied())
            .current_dir(dir)
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let binary = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        // With an operations listener, readiness is answered there only.
        let ops_base = settings
            .iter()
            .find(|(name, _)| *name == "REGIE_OPS_LISTEN")
            .map_or_else(|| binary.base.clone(), |(_, ops)| format!("http://{ops}"));
        let ready = async {
            loop {
                if let Ok(r) = client.get(format!("{ops_base}/readyz")).send().await {
                    if r.status() == 200 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .expect("regie became ready");
        binary
    }

    /// Starts the binary as deployed (production settings, the test tracking keys, no drain
    /// delay) on the Redis at `redis_url` with the inventory file `inventory`, plus `extra`
    /// settings, its JSON log to `stdout`.
    pub async fn on_redis(
        redis_url: &str,
        inventory: &std::path::Path,
        extra: &[(&str, &str)],
        stdout: Stdio,
    ) -> Self {
        let inventory = inventory.to_str().unwrap();
        let mut settings = vec![
            ("REGIE_ENVIRONMENT", "production"),
            ("REGIE_TRACKING_KEYS", TRACKING_KEYS),
            ("REGIE_DRAIN_DELAY_MS", "0"),
            ("REGIE_REDIS_URL", redis_url),
            ("REGIE_INVENTORY", inventory),
        ];
        settings.extend_from_slice(extra);
        Self::start(&settings, stdout).await
    }

    /// The decision answered at `path` (`/v1/slots/{slot}/ad`).
    pub async fn decision(&self, path: &str) -> Value {
        reader_client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Sends SIGTERM and waits for the exit, at most `within`.
    pub async fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "regie did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds `n` copies of the document's first campaign, each with a title of about 600 bytes:
/// 3 000 make a document of more than two megabytes.
pub fn add_bulk_campaigns(doc: &mut Value, n: usize) {
    let model = doc["campaigns"][0].clone();
    let campaigns = doc["campaigns"].as_array_mut().unwrap();
    for i in 0..n {
        let mut campaign = model.clone();
        campaign["id"] = json!(format!("bulk-{i:04}"));
        campaign["creatives"][0]["title"] = json!(format!("{i:04} {}", "é".repeat(300)));
        campaigns.push(campaign);
    }
}
