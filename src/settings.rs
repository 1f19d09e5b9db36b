//! Typed settings, loaded in layers: the defaults compiled into the binary (`config/base.toml`
//! and `config/{local,production}.toml` as they were at build time), then the files of the
//! configuration directory when they exist (`REGIE_CONFIG_DIR`, else `config/`): `base.toml`
//! and `{REGIE_ENVIRONMENT}.toml` (`local` unless set), then the contract's `REGIE_…`
//! environment variables. So the binary runs from any directory, with no file at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Shortest admin token accepted (contract section 9): 256 bits when it is random bytes.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// The defaults of every setting, compiled in: the binary needs no file to start.
const BASE_DEFAULTS: &str = include_str!("../config/base.toml");

/// The compiled-in settings of the environments the project ships.
const ENVIRONMENT_DEFAULTS: [(&str, &str); 2] = [
    ("local", include_str!("../config/local.toml")),
    ("production", include_str!("../config/production.toml")),
];

/// The environment of a developer's machine, the default.
pub const LOCAL: &str = "local";

/// Where the inventory file is looked for when `REGIE_INVENTORY` is not set.
pub const DEFAULT_INVENTORY: &str = "config/inventory.json";

/// Everything regie can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Address and port to listen on (`REGIE_LISTEN`).
    pub listen: String,
    /// Address and port of the operations listener (`REGIE_OPS_LISTEN`): when set, `/metrics`,
    /// `/healthz` and `/readyz` are answered there only (404 on `listen`), so that a private
    /// network can reach them and the public cannot. Unset: they are answered on `listen`.
    #[serde(default)]
    pub ops_listen: Option<String>,
    /// Base of the absolute tracking URLs (`REGIE_PUBLIC_URL`); default `http://` + listen.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The Redis store's URL (`REGIE_REDIS_URL`); unset means the embedded store. Secret because
    /// it may carry a password.
    #[serde(default)]
    pub redis_url: Option<SecretString>,
    /// A Redis Cluster's seed nodes, `redis://host:port,…` (`REGIE_REDIS_CLUSTER`), set instead
    /// of `redis_url`. Secret because the URLs may carry a password.
    #[serde(default)]
    pub redis_cluster: Option<SecretString>,
    /// Replicas that must acknowledge a write that counts (a flush, a budget lease) before
    /// regie lets go of it (`REGIE_REDIS_WAIT_REPLICAS`); default 1 on a cluster, 0 on one
    /// Redis.
    #[serde(default)]
    pub redis_wait_replicas: Option<u32>,
    /// How long to wait for those replicas, in milliseconds; a write not acknowledged in time
    /// is kept and written again.
    pub redis_wait_timeout_ms: u64,
    /// Prefix of every Redis key (`REGIE_KEY_PREFIX`).
    pub key_prefix: String,
    /// The environment whose settings were loaded (`REGIE_ENVIRONMENT`): `local` (the
    /// default), `production`, or another name with its own file.
    #[serde(default = "local")]
    pub environment: String,
    /// Inventory file loaded into the embedded store, and into an empty Redis (`REGIE_INVENTORY`).
    /// Unset: [`DEFAULT_INVENTORY`] when it exists, else the demo inventory compiled into the
    /// binary; see [`Settings::inventory_seed`].
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    /// Bearer token of the admin API; unset disables it (`REGIE_ADMIN_TOKEN`).
    #[serde(default)]
    pub admin_token: Option<SecretString>,
    /// Tracking signing keys, `id:secret,id:secret`; the first signs (`REGIE_TRACKING_KEYS`).
    #[serde(default)]
    pub tracking_keys: Option<SecretString>,
    /// The key of the hash of viewer ids (`REGIE_VIEWER_KEY`, at least 32 bytes); unset, a
    /// key derived from the tracking signing key.
    #[serde(default)]
    pub viewer_key: Option<SecretString>,
    /// How long an impression or viewable token stays valid, in seconds.
    pub impression_token_ttl_secs: u64,
    /// How long a click token stays valid, in seconds.
    pub click_token_ttl_secs: u64,
    /// The request header holding the reader's country as an ISO 3166-1 alpha-2 code, set by
    /// the CDN or proxy in front of regie (`REGIE_COUNTRY_HEADER`).
    pub country_header: String,
    /// IANA time zone in which reporting days and daily caps are counted.
    pub reporting_timezone: String,
    /// How often counters are written to the store, in milliseconds.
    pub flush_interval_ms: u64,
    /// How often the inventory version is polled, in milliseconds.
    pub poll_interval_ms: u64,
    /// How often the `optimize` rotation reads its counts from the store, in milliseconds.
    pub optimize_refresh_ms: u64,
    /// Counter events kept in memory while the store is unreachable; past this they are dropped
    /// (and counted as dropped).
    pub max_pending_events: usize,
    /// Viewer histories (one per viewer and frequency-capped campaign) the embedded store
    /// keeps at most; past it, the least recently seen are forgotten.
    pub max_viewer_histories: usize,
    /// Time given to in-flight requests and the final flush on shutdown, in seconds.
    pub shutdown_timeout_secs: u64,
    /// On shutdown, how long `/readyz` answers 503 while requests are still served, so that
    /// load balancers stop sending traffic before connections are refused, in milliseconds.
    /// Part of the shutdown timeout.
    pub drain_delay_ms: u64,
    /// Largest block of a capped campaign's budget an instance leases at once. Smaller blocks
    /// share a budget more evenly between instances; larger ones cost fewer round trips.
    pub lease_block: u64,
    /// Redis connection timeout, in milliseconds.
    pub redis_connect_timeout_ms: u64,
    /// Redis response timeout, in milliseconds.
    pub redis_response_timeout_ms: u64,
    /// The longest a public request waits for the store, in milliseconds
    /// (`REGIE_STORE_REQUEST_TIMEOUT_MS`): past it, or while the store is known to be
    /// unreachable, what needs the store (frequency caps) is skipped.
    pub store_request_timeout_ms: u64,
    /// HTTP worker threads; default one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// `pretty` for people, `json` for log collectors.
    pub log_format: LogFormat,
    /// Default log filter (overridden by `RUST_LOG`).
    pub log_level: String,
    /// Label the counted-event metrics by campaign as well as by slot
    /// (`REGIE_METRICS_CAMPAIGN_LABELS`): one series per campaign and slot, for deployments
    /// with few campaigns.
    pub metrics_campaign_labels: bool,
    /// Proxies whose `X-Forwarded-For` is believed, comma-separated CIDRs
    /// (`REGIE_TRUSTED_PROXIES`); empty trusts none.
    #[serde(default)]
    pub trusted_proxies: String,
    /// Decision requests per second and client address; above, 429 (0 disables).
    pub decisions_per_second: u32,
    /// Impressions, and viewable impressions, per minute and client address; above, invalid
    /// (`rate`; 0 disables).
    pub ivt_impressions_per_minute: u32,
    /// Clicks per minute and client address; above, invalid (`rate`; 0 disables).
    pub ivt_clicks_per_minute: u32,
    /// A click sooner than this after its decision is invalid (`too_fast`), in milliseconds.
    pub min_click_delay_ms: u64,
}

fn local() -> String {
    LOCAL.to_owned()
}

/// What seeds the store's inventory at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventorySeed {
    /// An inventory file: `REGIE_INVENTORY`, or [`DEFAULT_INVENTORY`] when it exists.
    File(PathBuf),
    /// The demo inventory compiled into the binary ([`crate::inventory::DEMO_INVENTORY`]).
    Demo,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Readable lines.
    Pretty,
    /// One JSON object a line.
    Json,
}

/// Settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file or variable could not be read or has the wrong type.
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    /// A value has the right type but is unusable.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The setting's name.
        name: &'static str,
        /// Why it is unusable.
        reason: String,
    },
}

impl Settings {
    /// Loads the settings: compiled-in defaults, the files of `REGIE_CONFIG_DIR` (which must
    /// then be a directory) or of `config/` under the working directory when they exist, and
    /// the environment.
    pub fn load() -> Result<Self, SettingsError> {
        let environment = std::env::var("REGIE_ENVIRONMENT").unwrap_or_else(|_| local());
        let dir = match std::env::var_os("REGIE_CONFIG_DIR") {
            // Named on purpose: a typo must not silently run on the defaults.
            Some(dir) if !Path::new(&dir).is_dir() => {
                return Err(SettingsError::Invalid {
                    name: "REGIE_CONFIG_DIR",
                    reason: format!("{} is not a directory", Path::new(&dir).display()),
                })
            }
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from("config"),
        };
        let settings = Self::load_from(&dir, &environment, true)?;
        settings.check_safety(&environment)?;
        Ok(settings)
    }

    /// Loads the compiled-in defaults, the files of `dir` that exist (`base.toml`, then
    /// `{environment}.toml`) and, if asked, the process environment. Tests pass `false` so
    /// that the developer's variables do not leak in.
    pub fn load_from(dir: &Path, environment: &str, with_env: bool) -> Result<Self, SettingsError> {
        use config::{File, FileFormat};
        let mut builder =
            config::Config::builder().add_source(File::from_str(BASE_DEFAULTS, FileFormat::Toml));
        if let Some((_, defaults)) = ENVIRONMENT_DEFAULTS
            .iter()
            .find(|(name, _)| *name == environment)
        {
            builder = builder.add_source(File::from_str(defaults, FileFormat::Toml));
        }
        builder = builder
            .add_source(File::from(dir.join("base.toml")).required(false))
            .add_source(File::from(dir.join(format!("{environment}.toml"))).required(false))
            .set_override("environment", environment)?;
        if with_env {
            builder = builder.add_source(
                config::Environment::with_prefix("REGIE")
                    .prefix_separator("_")
                    .try_parsing(true),
            );
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.drop_empty_values();
        settings.check()?;
        Ok(settings)
    }

    /// An empty variable (`REGIE_REDIS_URL=`) means unset, as in most deployment tools.
    fn drop_empty_values(&mut self) {
        let empty =
            |s: &Option<SecretString>| s.as_ref().is_some_and(|v| v.expose_secret().is_empty());
        if empty(&self.redis_url) {
            self.redis_url = None;
        }
        if empty(&self.redis_cluster) {
            self.redis_cluster = None;
        }
        if empty(&self.admin_token) {
            self.admin_token = None;
        }
        if empty(&self.tracking_keys) {
            self.tracking_keys = None;
        }
        if empty(&self.viewer_key) {
            self.viewer_key = None;
        }
        if self.public_url.as_deref() == Some("") {
            self.public_url = None;
        }
        if self.ops_listen.as_deref() == Some("") {
            self.ops_listen = None;
        }
        if self
            .inventory
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.inventory = None;
        }
    }

    /// Refuses values regie cannot work with, each named by its variable.
    fn check(&self) -> Result<(), SettingsError> {
        let invalid = |name, reason: String| Err(SettingsError::Invalid { name, reason });
        if self.reporting_timezone.parse::<chrono_tz::Tz>().is_err() {
            return invalid(
                "REGIE_REPORTING_TIMEZONE",
                format!("{:?} is not an IANA time zone", self.reporting_timezone),
            );
        }
        if actix_web::http::header::HeaderName::try_from(self.country_header.as_str()).is_err() {
            return Err(SettingsError::Invalid {
                name: "REGIE_COUNTRY_HEADER",
                reason: format!("{:?} is not an HTTP header name", self.country_header),
            });
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(
                    "REGIE_PUBLIC_URL",
                    "must start with http:// or https://".into(),
                );
            }
        }
        if let Err(e) = crate::ivt::TrustedProxies::parse(&self.trusted_proxies) {
            return Err(SettingsError::Invalid {
                name: "trusted_proxies",
                reason: e.to_string(),
            });
        }
        if self.redis_url.is_some() && self.redis_cluster.is_some() {
            return Err(SettingsError::Invalid {
                name: "redis_cluster",
                reason: "set either REGIE_REDIS_URL or REGIE_REDIS_CLUSTER, not both".into(),
            });
        }
        if self.key_prefix.contains(['{', '}']) {
            return Err(SettingsError::Invalid {
                name: "key_prefix",
                reason: "must not contain braces (they mark Redis Cluster hash tags)".into(),
            });
        }
        for (name, value) in [
            ("REGIE_FLUSH_INTERVAL_MS", self.flush_interval_ms),
            ("REGIE_POLL_INTERVAL_MS", self.poll_interval_ms),
            ("REGIE_OPTIMIZE_REFRESH_MS", self.optimize_refresh_ms),
            (
                "REGIE_IMPRESSION_TOKEN_TTL_SECS",
                self.impression_token_ttl_secs,
            ),
            ("REGIE_CLICK_TOKEN_TTL_SECS", self.click_token_ttl_secs),
            (
                "REGIE_STORE_REQUEST_TIMEOUT_MS",
                self.store_request_timeout_ms,
            ),
            // `WAIT n 0` would block forever.
            ("REGIE_REDIS_WAIT_TIMEOUT_MS", self.redis_wait_timeout_ms),
        ] {
            if value == 0 {
                return invalid(name, "must be positive".into());
            }
        }
        // A write waiting for replicas is one Redis answer: it must come before the client
        // gives up on it, or every acknowledged write would look like a failure.
        if self.redis_wait_timeout_ms >= self.redis_response_timeout_ms {
            return invalid(
                "REGIE_REDIS_WAIT_TIMEOUT_MS",
                "must be shorter than REGIE_REDIS_RESPONSE_TIMEOUT_MS".into(),
            );
        }
        Ok(())
    }

    /// What contract section 9 refuses at start: secrets short enough to guess (and a short
    /// `REGIE_VIEWER_KEY`), and a production deployment whose tracking URLs would point at its
    /// own listen address.
    /// [`Settings::load`] applies it to what the process was given.
    pub fn check_safety(&self, environment: &str) -> Result<(), SettingsError> {
        if let Some(token) = &self.admin_token {
            let len = token.expose_secret().len();
            if len < MIN_ADMIN_TOKEN_BYTES {
                return Err(SettingsError::Invalid {
                    name: "REGIE_ADMIN_TOKEN",
                    reason: format!(
                        "must be at least {MIN_ADMIN_TOKEN_BYTES} bytes (it is {len}); \
                         e.g. `openssl rand -base64 32`"
                    ),
                });
            }
        }
        if let Some(keys) = &self.tracking_keys {
            if let Err(e) = crate::tracking::Signer::from_setting(keys) {
                return Err(SettingsError::Invalid {
                    name: "REGIE_TRACKING_KEYS",
                    reason: e.reason().to_owned(),
                });
            }
        }
        if let Some(key) = &self.viewer_key {
            let len = key.expose_secret().len();
            if len < crate::tracking::MIN_SECRET_BYTES {
                return Err(SettingsError::Invalid {
                    name: "REGIE_VIEWER_KEY",
                    reason: format!(
                        "must be at least {} bytes (it is {len}); e.g. `openssl rand -base64 32`",
                        crate::tracking::MIN_SECRET_BYTES
                    ),
                });
            }
        }
        if environment == "production" && self.public_url.is_none() {
            return Err(SettingsError::Invalid {
                name: "REGIE_PUBLIC_URL",
                reason: "must be set when REGIE_ENVIRONMENT=production: tracking URLs are \
                         absolute and browsers must reach them"
                    .into(),
            });
        }
        Ok(())
    }

    /// Whether this is a developer's machine (`REGIE_ENVIRONMENT` unset or `local`).
    pub fn is_local(&self) -> bool {
        self.environment == LOCAL
    }

    /// What seeds the store's inventory. A `REGIE_INVENTORY` that is set names a file that
    /// must exist (a typo must not serve the demo); unset, [`DEFAULT_INVENTORY`] is used when
    /// it exists, else the demo inventory compiled into the binary.
    pub fn inventory_seed(&self) -> InventorySeed {
        match &self.inventory {
            Some(file) => InventorySeed::File(file.clone()),
            None if Path::new(DEFAULT_INVENTORY).is_file() => {
                InventorySeed::File(PathBuf::from(DEFAULT_INVENTORY))
            }
            None => InventorySeed::Demo,
        }
    }

    /// The reporting time zone.
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.reporting_timezone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The header carrying the reader's country (checked to be a header name at load).
    pub fn country_header(&self) -> actix_web::http::header::HeaderName {
        actix_web::http::header::HeaderName::try_from(self.country_header.as_str())
            .unwrap_or_else(|_| actix_web::http::header::HeaderName::from_static("cf-ipcountry"))
    }

    /// The flush interval.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    /// The inventory poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// How often the `optimize` rotation's counts are read.
    pub fn optimize_refresh(&self) -> Duration {
        Duration::from_millis(self.optimize_refresh_ms)
    }

    /// The invalid-traffic rules' settings.
    pub fn ivt(&self) -> crate::ivt::IvtSettings {
        crate::ivt::IvtSettings {
            trusted_proxies: crate::ivt::TrustedProxies::parse(&self.trusted_proxies)
                .unwrap_or_default(),
            limits: crate::ivt::LimitSettings {
                decisions_per_second: self.decisions_per_second,
                impressions_per_minute: self.ivt_impressions_per_minute,
                clicks_per_minute: self.ivt_clicks_per_minute,
            },
            min_click_delay_ms: self.min_click_delay_ms,
        }
    }

    /// The shutdown timeout.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_settings_are_refused_by_their_variable() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |tweak: &dyn Fn(&mut Settings), environment: &str| {
            let mut settings = Settings::load_from(dir.path(), environment, false).unwrap();
            tweak(&mut settings);
            match settings.check_safety(environment) {
                Err(SettingsError::Invalid { name, .. }) => Some(name),
                _ => None,
            }
        };
        let token = |t: &str| Some(SecretString::from(t.to_owned()));

        assert_eq!(refused(&|_| {}, "local"), None);
        assert_eq!(
            refused(
                &|s| s.admin_token = token("0123456789abcdef0123456789abcde"),
                "local"
            ),
            Some("REGIE_ADMIN_TOKEN")
        );
        assert_eq!(
            refused(
                &|s| s.admin_token = token("0123456789abcdef0123456789abcdef"),
                "local"
            ),
            None
        );
        assert_eq!(
            refused(&|s| s.tracking_keys = token("k1:0123456789abcdef"), "local"),
            Some("REGIE_TRACKING_KEYS")
        );
        assert_eq!(
            refused(
                &|s| s.viewer_key = token("0123456789abcdef0123456789abcde"),
                "local"
            ),
            Some("REGIE_VIEWER_KEY")
        );
        assert_eq!(
            refused(
                &|s| s.viewer_key = token("0123456789abcdef0123456789abcdef"),
                "local"
            ),
            None
        );
        assert_eq!(refused(&|_| {}, "production"), Some("REGIE_PUBLIC_URL"));
        assert_eq!(
            refused(
                &|s| s.public_url = Some("https://ads.example".into()),
                "production"
            ),
            None
        );
    }

    #[test]
    fn every_setting_has_a_compiled_in_default() {
        let empty = tempfile::tempdir().unwrap();

        let local = Settings::load_from(empty.path(), "local", false).unwrap();
        let production = Settings::load_from(empty.path(), "production", false).unwrap();

        assert_eq!(local.listen, "127.0.0.1:8080");
        assert_eq!(local.log_format, LogFormat::Pretty);
        assert!(local.is_local());
        assert!(!local.metrics_campaign_labels);
        assert_eq!(production.listen, "0.0.0.0:8080");
        assert_eq!(production.log_format, LogFormat::Json);
        assert!(!production.is_local());
    }

    #[test]
    fn files_of_the_directory_override_the_compiled_in_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "key_prefix = \"shop\"\n").unwrap();
        std::fs::write(
            dir.path().join("staging.toml"),
            "metrics_campaign_labels = true\n",
        )
        .unwrap();

        let staging = Settings::load_from(dir.path(), "staging", false).unwrap();

        assert_eq!(staging.key_prefix, "shop");
        assert!(staging.metrics_campaign_labels);
        assert_eq!(staging.environment, "staging");
        assert_eq!(staging.listen, "127.0.0.1:8080", "the rest stays default");
    }

    #[test]
    fn a_named_inventory_file_is_used_even_when_it_is_missing() {
        let mut settings = Settings::load_from(Path::new("config"), "local", false).unwrap();
        settings.inventory = Some(PathBuf::from("no/such/inventory.json"));

        assert_eq!(
            settings.inventory_seed(),
            InventorySeed::File(PathBuf::from("no/such/inventory.json"))
        );
    }

    #[test]
    fn unnamed_the_inventory_is_config_inventory_json_when_it_exists() {
        // Tests run in the crate's directory, which has config/inventory.json.
        let settings = Settings::load_from(Path::new("config"), "local", false).unwrap();

        assert_eq!(settings.inventory, None);
        assert_eq!(
            settings.inventory_seed(),
            InventorySeed::File(PathBuf::from(DEFAULT_INVENTORY))
        );
    }

    #[test]
    fn redis_settings_that_cannot_work_are_refused_naming_the_setting() {
        let refused = |base: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("base.toml"), base).unwrap();
            match Settings::load_from(dir.path(), "local", false) {
                Err(SettingsError::Invalid { name, .. }) => name,
                other => panic!("{base:?} was not refused: {other:?}"),
            }
        };

        assert_eq!(
            refused("redis_url = \"redis://a\"\nredis_cluster = \"redis://b\"\n"),
            "redis_cluster"
        );
        assert_eq!(refused("key_prefix = \"re{gie}\"\n"), "key_prefix");
        assert_eq!(
            refused("redis_wait_timeout_ms = 0\n"),
            "REGIE_REDIS_WAIT_TIMEOUT_MS"
        );
        assert_eq!(
            refused("redis_wait_timeout_ms = 1000\nredis_response_timeout_ms = 1000\n"),
            "REGIE_REDIS_WAIT_TIMEOUT_MS"
        );
    }
}
