//! The binary runs anywhere: compiled-in defaults, demo inventory and pages, optional
//! configuration files, and, on a developer's machine only, an admin token made up at start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{eventually, Binary};

const DEMO: &str = include_str!("../../config/inventory.json");

/// Readers are people: invalid-traffic rules treat an HTTP library's user agent as a bot.
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                       Chrome/124.0 Safari/537.36";

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(BROWSER)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Runs the binary with `args` and only `PATH` from the environment, in `dir`, and returns its
/// exit status and output; fails the test if it is still running after ten seconds.
fn run_to_exit(dir: &Path, args: &[&str], settings: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regie"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(settings.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("regie {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The lines a running binary has written to `log` so far.
fn lines(log: &tempfile::NamedTempFile) -> Vec<String> {
    std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_and_version_answer() {
    let empty = tempfile::tempdir().unwrap();

    let (help_status, help) = run_to_exit(empty.path(), &["--help"], &[]);
    let (version_status, version) = run_to_exit(empty.path(), &["--version"], &[]);

    assert_eq!(help_status, 0, "{help}");
    assert!(help.contains("Usage: regie"), "{help}");
    for word in ["serve", "check", "healthcheck", "REGIE_CONFIG_DIR"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    assert_eq!(version_status, 0, "{version}");
    assert_eq!(
        version.trim(),
        format!("regie {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_from_an_empty_directory_it_serves_the_demo_page_and_its_ads() {
    let empty = tempfile::tempdir().unwrap();
    let regie = Binary::start_in(empty.path(), &[], Stdio::null()).await;
    let client = browser();

    let demo = client
        .get(format!("{}/demo", regie.base))
        .send()
        .await
        .unwrap();
    assert_eq!(demo.status(), 200);
    assert!(demo.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = demo.text().await.unwrap();
    assert!(page.contains("Publicité 2"), "the demo page's slots");
    for script in ["/tag.js", "/demo.js"] {
        let response = client
            .get(format!("{}{script}", regie.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{script}");
    }

    let ad = client
        .get(format!("{}/v1/slots/Publicit%C3%A9%202/ad", regie.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ad.status(), 200);
    let decision: Value = ad.json().await.unwrap();
    let demo_inventory: Value =
        serde_json::from_str(regie::inventory::DEMO_INVENTORY).expect("the demo parses");
    assert!(
        demo_inventory["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == decision["campaign_id"]),
        "{decision} is not from the demo inventory"
    );
    let impression = client
        .get(decision["impression_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(impression.status(), 200);
    if let Some(image) = decision["creative"]["image_url"].as_str() {
        let image = client.get(image).send().await.unwrap();
        assert_eq!(
            image.status(),
            200,
            "the demo's creatives are in the binary"
        );
    }
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "regie wrote into its working directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_instance_without_an_admin_token_prints_one_ready_to_use_with_curl() {
    let empty = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let regie = Binary::start_in(empty.path(), &[], Stdio::from(log.reopen().unwrap())).await;

    let curl = eventually(Duration::from_secs(10), || async {
        lines(&log)
            .into_iter()
            .find(|l| l.trim_start().starts_with("curl "))
    })
    .await
    .expect("a curl line");
    let token = curl
        .split("Bearer ")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the token in the curl line");
    let url = curl.rsplit(' ').next().unwrap();

    assert!(token.len() >= 32, "{token}");
    assert_eq!(url, format!("{}/v1/admin/inventory", regie.base));
    let client = reqwest::Client::new();
    let with_token = client.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(with_token.status(), 200);
    let inventory: Value = with_token.json().await.unwrap();
    assert!(inventory["version"].as_u64().is_some());
    let without = client.get(url).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let mentions = lines(&log).iter().filter(|l| l.contains(token)).count();
    assert_eq!(
        mentions, 3,
        "the token is printed once: the variable, the curl line, the README's ADMIN line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_never_makes_up_an_admin_token() {
    let empty = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let regie = Binary::start_in(
        empty.path(),
        &[
            ("REGIE_ENVIRONMENT", "production"),
            ("REGIE_PUBLIC_URL", "http://127.0.0.1"),
            ("REGIE_DRAIN_DELAY_MS", "0"),
        ],
        Stdio::from(log.reopen().unwrap()),
    )
    .await;

    let inventory = reqwest::Client::new()
        .get(format!("{}/v1/admin/inventory", regie.base))
        .send()
        .await
        .unwrap();

    assert_eq!(inventory.status(), 401);
    assert!(regie.terminate(Duration::from_secs(15)).await.success());
    let printed = lines(&log);
    assert!(!printed.is_empty(), "the production logs");
    assert!(
        printed
            .iter()
            .all(|l| !l.contains("Bearer") && !l.contains("REGIE_ADMIN_TOKEN=")),
        "{printed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_config_override_the_compiled_in_defaults_when_present() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/local.toml"),
        "metrics_campaign_labels = true\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config/inventory.json"),
        r#"{"slots":[{"name":"ici"}],"advertisers":[{"id":"a","name":"A"}],
            "campaigns":[{"id":"seule","advertiser_id":"a","slots":["ici"],
              "creatives":[{"id":"t","format":"text","title":"T","landing_url":"https://a.example/"}]}]}"#,
    )
    .unwrap();
    let regie = Binary::start_in(dir.path(), &[], Stdio::null()).await;
    let client = browser();

    let decision: Value = client
        .get(format!("{}/v1/slots/ici/ad", regie.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(decision["campaign_id"], "seule");
    client
        .get(decision["impression_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();

    let line = r#"regie_impressions_total{campaign="seule",slot="ici"} 1"#;
    let metrics = eventually(Duration::from_secs(10), || async {
        let text = client
            .get(format!("{}/metrics", regie.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(line).then_some(text)
    })
    .await;
    assert!(metrics.is_some(), "{line} never showed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_campaign_labels_variable_turns_per_campaign_series_on() {
    let empty = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("base.toml"), "flush_interval_ms = 50\n").unwrap();
    let regie = Binary::start_in(
        empty.path(),
        &[
            ("REGIE_METRICS_CAMPAIGN_LABELS", "true"),
            ("REGIE_CONFIG_DIR", config.path().to_str().unwrap()),
        ],
        Stdio::null(),
    )
    .await;
    let client = browser();

    let decision: Value = client
        .get(format!("{}/v1/slots/banner/ad", regie.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    client
        .get(decision["impression_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();

    let line = format!(
        "regie_impressions_total{{campaign=\"{}\",slot=\"banner\"}} 1",
        decision["campaign_id"].as_str().unwrap()
    );
    let shown = eventually(Duration::from_secs(10), || async {
        let text = client
            .get(format!("{}/metrics", regie.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(&line).then_some(())
    })
    .await;
    assert!(shown.is_some(), "{line} never showed");
}

#[test]
fn an_inventory_or_config_directory_that_is_named_but_missing_stops_the_start() {
    let empty = tempfile::tempdir().unwrap();

    let (inventory_status, inventory_output) = run_to_exit(
        empty.path(),
        &[],
        &[
            ("REGIE_INVENTORY", "missing.json"),
            ("REGIE_LISTEN", "127.0.0.1:0"),
        ],
    );
    let (config_status, config_output) = run_to_exit(
        empty.path(),
        &[],
        &[
            ("REGIE_CONFIG_DIR", "no-such-dir"),
            ("REGIE_LISTEN", "127.0.0.1:0"),
        ],
    );

    assert_ne!(inventory_status, 0, "{inventory_output}");
    assert!(
        inventory_output.contains("missing.json"),
        "{inventory_output}"
    );
    assert_eq!(config_status, 2, "{config_output}");
    assert!(
        config_output.contains("REGIE_CONFIG_DIR"),
        "{config_output}"
    );
}

#[test]
fn check_prints_every_bad_field_of_an_inventory_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc: Value = serde_json::from_str(DEMO).unwrap();
    let campaign = &mut doc["campaigns"][1];
    campaign["weight"] = serde_json::json!("heavy");
    campaign["creatives"][0]["landing_url"] = serde_json::json!("javascript:alert(1)");
    campaign["creatives"][0]["image_url"] = serde_json::json!("https://cdn.example/a.png\r\n");
    std::fs::write(dir.path().join("bad.json"), doc.to_string()).unwrap();
    std::fs::write(dir.path().join("good.json"), DEMO).unwrap();

    let (bad_status, bad) = run_to_exit(dir.path(), &["check", "bad.json"], &[]);
    let (good_status, good) = run_to_exit(dir.path(), &["check", "good.json"], &[]);

    assert_eq!(bad_status, 1, "{bad}");
    assert_eq!(
        bad.lines().collect::<Vec<_>>(),
        vec![
            "campaigns[1].creatives[0].image_url: must not contain control characters (CR, LF, tab…)",
            "campaigns[1].creatives[0].landing_url: must be an absolute http or https URL",
            "campaigns[1].weight: invalid type: string \"heavy\", expected u64",
        ]
    );
    assert_eq!(good_status, 0, "{good}");
    assert!(good.contains("good.json: valid"), "{good}");
}
