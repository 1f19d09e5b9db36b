//! Typed settings, loaded in layers: `config/base.toml`, then `config/{REGIE_ENVIRONMENT}.toml`
//! (`local` unless set), then the contract's `REGIE_…` environment variables.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Everything regie can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Address and port to listen on (`REGIE_LISTEN`).
    pub listen: String,
    /// Base of the absolute tracking URLs (`REGIE_PUBLIC_URL`); default `http://` + listen.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The Redis store's URL (`REGIE_REDIS_URL`); unset means the embedded store. Secret because
    /// it may carry a password.
    #[serde(default)]
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key (`REGIE_KEY_PREFIX`).
    pub key_prefix: String,
    /// Inventory file loaded into the embedded store, and into an empty Redis (`REGIE_INVENTORY`).
    pub inventory: PathBuf,
    /// Bearer token of the admin API; unset disables it (`REGIE_ADMIN_TOKEN`).
    #[serde(default)]
    pub admin_token: Option<SecretString>,
    /// Tracking signing keys, `id:secret,id:secret`; the first signs (`REGIE_TRACKING_KEYS`).
    #[serde(default)]
    pub tracking_keys: Option<SecretString>,
    /// How long an impression or viewable token stays valid, in seconds.
    pub impression_token_ttl_secs: u64,
    /// How long a click token stays valid, in seconds.
    pub click_token_ttl_secs: u64,
    /// IANA time zone in which reporting days and daily caps are counted.
    pub reporting_timezone: String,
    /// How often counters are written to the store, in milliseconds.
    pub flush_interval_ms: u64,
    /// How often the inventory version is polled, in milliseconds.
    pub poll_interval_ms: u64,
    /// Counter events kept in memory while the store is unreachable; past this they are dropped
    /// (and counted as dropped).
    pub max_pending_events: usize,
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
    /// HTTP worker threads; default one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// `pretty` for people, `json` for log collectors.
    pub log_format: LogFormat,
    /// Default log filter (overridden by `RUST_LOG`).
    pub log_level: String,
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
    /// Loads the settings from `config/` under the working directory and the environment.
    pub fn load() -> Result<Self, SettingsError> {
        let dir = std::env::var("REGIE_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let environment = std::env::var("REGIE_ENVIRONMENT").unwrap_or_else(|_| "local".into());
        Self::load_from(Path::new(&dir), &environment, true)
    }

    /// Loads the settings from `dir`, the given environment file and, if asked, the process
    /// environment. Tests pass `false` so that the developer's variables do not leak in.
    pub fn load_from(dir: &Path, environment: &str, with_env: bool) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from(dir.join("base.toml")))
            .add_source(
                config::File::from(dir.join(format!("{environment}.toml"))).required(false),
            );
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
        if empty(&self.admin_token) {
            self.admin_token = None;
        }
        if empty(&self.tracking_keys) {
            self.tracking_keys = None;
        }
        if self.public_url.as_deref() == Some("") {
            self.public_url = None;
        }
    }

    fn check(&self) -> Result<(), SettingsError> {
        if self.reporting_timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(SettingsError::Invalid {
                name: "reporting_timezone",
                reason: format!("{:?} is not an IANA time zone", self.reporting_timezone),
            });
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SettingsError::Invalid {
                    name: "public_url",
                    reason: "must start with http:// or https://".into(),
                });
            }
        }
        if let Err(e) = crate::ivt::TrustedProxies::parse(&self.trusted_proxies) {
            return Err(SettingsError::Invalid {
                name: "trusted_proxies",
                reason: e.to_string(),
            });
        }
        for (name, value) in [
            ("flush_interval_ms", self.flush_interval_ms),
            ("poll_interval_ms", self.poll_interval_ms),
            ("impression_token_ttl_secs", self.impression_token_ttl_secs),
            ("click_token_ttl_secs", self.click_token_ttl_secs),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid {
                    name,
                    reason: "must be positive".into(),
                });
            }
        }
        Ok(())
    }

    /// The reporting time zone.
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.reporting_timezone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The flush interval.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    /// The inventory poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
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
