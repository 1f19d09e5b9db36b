//! The operations kit in `deploy/`, against live instances: every metric that the Grafana
//! dashboard and the alert rules query is one regie exports, and a real Prometheus (Debian's
//! `prometheus`, own port and data directory, killed on drop) scrapes two instances and
//! answers with their decision counters. The static checks (compose file, `promtool check` and
//! `promtool test rules`) are in `scripts/deploy-check.sh`.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::parser::{self, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value;

use crate::helpers::{
    eventually, free_port, spawn_app, spawn_app_with, AppOptions, RedisServer, StoreKind, TestApp,
};

/// Metrics the dashboard or the alerts may query before regie exports them: none.
const NOT_YET_EXPORTED: &[&str] = &[];

/// Series that Prometheus makes itself for every target it scrapes.
const MADE_BY_PROMETHEUS: &[&str] = &["up"];

/// A reader's browser, so that no invalid-traffic rule takes the test's requests for a bot's.
const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";

const DASHBOARD: &str = "deploy/grafana/regie.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_one_regie_exports() {
    let mut redis = RedisServer::start();
    let app = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let exported = exercised_metric_names(&app, &mut redis).await;

    let queries = dashboard_queries();
    let used = metric_names(&queries);

    assert!(queries.len() >= 20, "only {} queries found", queries.len());
    assert_all_exported("the dashboard", &used, &exported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_two_instances_and_answers_with_their_decision_counts() {
    let redis = RedisServer::start();
    // As deploy/compose.yaml runs them: Prometheus scrapes the operations listeners.
    let a = spawn_with_ops_listener(&redis).await;
    let b = spawn_with_ops_listener(&redis).await;
    let prometheus = Prometheus::start(&[scrape_target(&a), scrape_target(&b)]).await;

    for _ in 0..7 {
        a.decision("banner").await;
    }
    for _ in 0..5 {
        b.decision("banner").await;
    }
    let decided = unix_now();

    // Wait for a scrape of each instance that began after the last decision: from then on,
    // Prometheus holds the final counts.
    let stamps = r#"min by (instance) (timestamp(regie_decisions_total{job="regie"}))"#;
    let fresh = eventually(Duration::from_secs(20), || async {
        let rows = prometheus.query(stamps).await?;
        (rows.len() == 2 && rows.iter().all(|row| row.value > decided)).then_some(())
    })
    .await;
    assert!(
        fresh.is_some(),
        "Prometheus did not scrape both instances within 20 s: {:?}",
        prometheus.query(stamps).await
    );

    let rows = prometheus
        .query(r#"sum by (instance) (regie_decisions_total{job="regie",slot="banner"})"#)
        .await
        .expect("Prometheus answers");
    let value_of = |target: &str| {
        rows.iter()
            .find(|row| row.labels["instance"] == target)
            .map(|row| row.value)
    };
    assert_eq!(value_of(&scrape_target(&a)), Some(7.0));
    assert_eq!(value_of(&scrape_target(&b)), Some(5.0));
    let total = prometheus
        .query(r#"sum(regie_decisions_total{job="regie",slot="banner"})"#)
        .await
        .expect("Prometheus answers");
    assert_eq!(total.len(), 1);
    assert_eq!(total[0].value, 12.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_loads_the_alert_rules_and_runs_every_dashboard_query() {
    let mut redis = RedisServer::start();
    let app = spawn_app(StoreKind::Redis, Some(&redis)).await;
    let exported = exercised_metric_names(&app, &mut redis).await;
    let prometheus = Prometheus::start(&[scrape_target(&app)]).await;

    // Every rule evaluated at least once, and without error.
    let rules = eventually(Duration::from_secs(20), || async {
        let rules = prometheus.rules().await?;
        let evaluated = !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown");
        evaluated.then_some(rules)
    })
    .await
    .expect("Prometheus evaluates the rules");
    let names: Vec<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "RegieInstanceNotReady",
            "RegieStoreDown",
            "RegieEventsDropped",
            "RegieEventsPendingGrowing",
            "RegieInventoryStale",
            "RegieFillRateCollapse",
            "RegieLatencyP99High",
        ]
    );
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
        assert_eq!(rule["type"], "alerting");
        assert!(
            rule["annotations"]["runbook"]
                .as_str()
                .is_some_and(|text| text.len() > 100),
            "{} has no runbook",
            rule["name"]
        );
    }
    let rule_queries: Vec<String> = rules
        .iter()
        .map(|r| r["query"].as_str().unwrap().to_owned())
        .collect();
    assert_all_exported(ALERTS, &metric_names(&rule_queries), &exported);

    // Every query of the dashboard, as Grafana would send it, is one Prometheus accepts.
    prometheus.wait_for_a_scrape().await;
    for query in dashboard_queries() {
        let answer = prometheus.api("query", &query).await;
        assert_eq!(answer["status"], "success", "{query}: {answer}");
    }
}

/// The names of the metrics that an instance exports once it has done each thing that makes
/// a series: a decision, an impression, a viewable impression, a click, a refused token and a
/// failed store operation (Redis is stopped for that, at the end).
async fn exercised_metric_names(app: &TestApp, redis: &mut RedisServer) -> BTreeSet<String> {
    let decision = app.decision("banner").await;
    for url in ["impression_url", "viewable_url", "click_url"] {
        if url == "click_url" {
            // The reader looks at the ad before clicking: a click within a second of its
            // decision is too fast to count.
            app.clock.advance(chrono::Duration::seconds(2));
        }
        let url = decision[url].as_str().unwrap();
        let response = app
            .client
            .get(url)
            .header("user-agent", BROWSER_UA)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success() || response.status().is_redirection());
    }
    app.get("/v1/i/forged").await;
    // Counted events reach the metrics when they are flushed.
    eventually(Duration::from_secs(5), || async {
        let metrics = app.metrics().await;
        metrics.contains("regie_clicks_total{").then_some(())
    })
    .await
    .expect("the click is counted");

    redis.stop();
    let metrics = eventually(Duration::from_secs(5), || async {
        let metrics = app.metrics().await;
        metrics
            .contains("regie_store_errors_total{")
            .then_some(metrics)
    })
    .await
    .expect("a failed store operation is counted");
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            line[..end].to_owned()
        })
        .collect()
}

/// Asserts that every name is exported, allowed while pending, or made by Prometheus.
fn assert_all_exported(what: &str, used: &BTreeSet<String>, exported: &BTreeSet<String>) {
    let unknown: Vec<&String> = used
        .iter()
        .filter(|name| {
            !exported.contains(*name)
                && !NOT_YET_EXPORTED.contains(&name.as_str())
                && !MADE_BY_PROMETHEUS.contains(&name.as_str())
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} queries metrics regie does not export: {unknown:?}\nexported: {exported:?}"
    );
}

/// Every PromQL query of the dashboard (panels and template variables), with Grafana's
/// variables replaced by what Grafana would send.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(DASHBOARD).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    collect_exprs(&dashboard["panels"], &mut queries);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            // `label_values(selector, label)` is Grafana's; the selector is PromQL.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map(|(selector, _)| selector.to_owned())
                .unwrap_or_else(|| panic!("unexpected variable query {query}"));
            queries.push(inner);
        }
    }
    queries.iter().map(|q| grafana_to_promql(q)).collect()
}

fn collect_exprs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => into.push(expr.clone()),
                    _ => collect_exprs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, into)),
        _ => {}
    }
}

/// Replaces the dashboard's variables by values Grafana could send; any other `$` is an
/// unknown variable and fails the test.
fn grafana_to_promql(query: &str) -> String {
    let replaced = query
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
        .replace("$slot", ".*");
    assert!(!replaced.contains('$'), "unknown variable in {query}");
    replaced
}

/// The metric names that PromQL queries select, parsed by a PromQL parser. A selector without
/// a literal name (`{__name__=~"…"}`) fails the test, since it cannot be checked.
fn metric_names(queries: &[String]) -> BTreeSet<String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            let selector = match expr {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            let name = selector
                .name
                .clone()
                .ok_or_else(|| format!("a selector without a metric name: {expr}"))?;
            self.0.insert(name);
            Ok(true)
        }
    }
    let mut names = Names(BTreeSet::new());
    for query in queries {
        let expr = parser::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        walk_expr(&mut names, &expr).unwrap_or_else(|e| panic!("{query}: {e}"));
    }
    names.0
}

/// `host:port` that Prometheus scrapes for an app's metrics.
/// An app on `redis` with its own operations listener (`REGIE_OPS_LISTEN`).
async fn spawn_with_ops_listener(redis: &RedisServer) -> TestApp {
    let mut options = AppOptions::new(Some(redis.url()));
    options.tweak = Box::new(|s| s.ops_listen = Some("127.0.0.1:0".into()));
    spawn_app_with(options).await
}

/// Where Prometheus scrapes an app: its operations listener.
fn scrape_target(app: &TestApp) -> String {
    app.ops_address.trim_start_matches("http://").to_owned()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One sample of an instant query's answer.
#[derive(Debug)]
struct Row {
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// A Prometheus server owned by one test: its own port and data directory, scraping the given
/// targets every second as job `regie`, with the repository's alert rules; killed on drop.
struct Prometheus {
    address: String,
    client: reqwest::Client,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(targets: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let alerts = std::fs::canonicalize(ALERTS).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{alerts:?}]\n\
             scrape_configs:\n  - job_name: regie\n    static_configs:\n      - targets: {targets:?}\n"
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus must be installed (Debian's prometheus package; the README's test command installs it)");
        let prometheus = Self {
            address: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            child,
            _dir: dir,
        };
        prometheus.wait_until_ready().await;
        prometheus
    }

    async fn wait_until_ready(&self) {
        let url = format!("{}/-/ready", self.address);
        let ready = eventually(Duration::from_secs(15), || async {
            let response = self.client.get(&url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "prometheus did not become ready on {}",
            self.address
        );
    }

    /// GET /api/v1/{endpoint}?query=….
    async fn api(&self, endpoint: &str, query: &str) -> Value {
        self.client
            .get(format!("{}/api/v1/{endpoint}", self.address))
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// An instant query's vector, or `None` if Prometheus refused it.
    async fn query(&self, query: &str) -> Option<Vec<Row>> {
        let answer = self.api("query", query).await;
        if answer["status"] != "success" {
            return None;
        }
        let rows = answer["data"]["result"].as_array()?;
        rows.iter()
            .map(|row| {
                // [evaluation time, "value"]
                let sample = row["value"].as_array()?;
                Some(Row {
                    labels: row["metric"].as_object()?.clone(),
                    value: sample[1].as_str()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// Every rule of every group, as /api/v1/rules describes them.
    async fn rules(&self) -> Option<Vec<Value>> {
        let answer: Value = self
            .client
            .get(format!("{}/api/v1/rules", self.address))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let groups = answer["data"]["groups"].as_array()?;
        Some(
            groups
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect(),
        )
    }

    /// Waits until the targets have been scraped at least twice, so that rates have samples.
    async fn wait_for_a_scrape(&self) {
        let scraped = eventually(Duration::from_secs(20), || async {
            let rows = self.query("count_over_time(up[1m])").await?;
            (!rows.is_empty() && rows.iter().all(|r| r.value >= 2.0)).then_some(())
        })
        .await;
        assert!(scraped.is_some(), "prometheus did not scrape twice");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
