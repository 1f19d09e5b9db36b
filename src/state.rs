//! The handles every request shares, built once at start-up.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::catalog::Catalog;
use crate::clock::ReportingZone;
use crate::clock::SharedClock;
use crate::counting::Recorder;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tracking::{EventKind, Signer};

/// Shared application state, handed to handlers as `web::Data<AppState>`.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The served inventory.
    pub catalog: Arc<Catalog>,
    /// Signs and verifies tracking tokens.
    pub signer: Arc<Signer>,
    /// Hashes viewer ids before they reach the store.
    pub viewers: crate::serving::ViewerKeys,
    /// Cancels unused frequency reservations in the background.
    pub releaser: crate::delivery::Releaser,
    /// Budgets of capped campaigns.
    pub budgets: Arc<crate::delivery::Budgets>,
    /// Counts events in memory until they are flushed.
    pub recorder: Arc<Recorder>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The clock.
    pub clock: SharedClock,
    /// Base of the tracking URLs, without a trailing slash.
    pub public_url: String,
    /// Writes decision answers.
    pub renderer: crate::render::Renderer,
    /// The admin token, if the admin API is enabled.
    pub admin_token: Option<SecretString>,
    /// Reporting time zone.
    pub zone: ReportingZone,
    /// The header that carries the reader's country (`REGIE_COUNTRY_HEADER`).
    pub country_header: actix_web::http::header::HeaderName,
    /// Life of impression and viewable tokens, in seconds.
    pub impression_ttl_secs: u64,
    /// Life of click tokens, in seconds.
    pub click_ttl_secs: u64,
    /// Set when the process begins to shut down: `/readyz` answers 503 from then on.
    pub draining: std::sync::atomic::AtomicBool,
    /// The invalid-traffic rules: known bots, client addresses, rate limits, click delay.
    pub ivt: crate::ivt::Ivt,
}

impl AppState {
    /// Whether `given` is the admin token, compared in constant time (of the digests, so the
    /// comparison leaks neither content nor length).
    pub fn is_admin_token(&self, given: &str) -> bool {
        let Some(expected) = &self.admin_token else {
            return false;
        };
        let a = Sha256::digest(given.as_bytes());
        let b = Sha256::digest(expected.expose_secret().as_bytes());
        a.ct_eq(&b).into()
    }

    /// Today's reporting day.
    pub fn today(&self) -> chrono::NaiveDate {
        self.zone.day(self.clock.now())
    }

    /// How long tokens of this kind are valid, in seconds.
    pub fn token_ttl(&self, kind: EventKind) -> u64 {
        match kind {
            EventKind::Impression | EventKind::Viewable => self.impression_ttl_secs,
            EventKind::Click => self.click_ttl_secs,
        }
    }
}
