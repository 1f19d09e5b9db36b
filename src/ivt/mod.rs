//! Invalid traffic (contract section 8): known bots, rate limits per client address and the
//! click rules. Invalid decisions and events are answered as usual but counted apart, by
//! reason, and count toward no total, cap, pacing or frequency cap.
//!
//! - [`bots`]: the known-bots matcher, compiled once from `config/bots.txt`.
//! - [`client`]: the client's address behind trusted proxies.
//! - [`limits`]: keyed rate limiters per client address, with bounded memory.
//!
//! The reasons decided here, on the request, are `bot`, `rate` and `too_fast`; `no_impression`
//! is decided by the store when it counts a click, since only the store knows whether the
//! decision's impression was counted (by any instance).

pub mod bots;
pub mod client;
pub mod limits;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::HttpRequest;

pub use bots::BotMatcher;
pub use client::{BadProxyRange, TrustedProxies};
pub use limits::{LimitSettings, Limited, Limits};

use crate::clock::SharedClock;
use crate::tracking::EventKind;

/// Why a decision or an event is invalid: a closed set, also the `reason` label of
/// `regie_invalid_traffic_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A known crawler, monitor, HTTP library or headless browser, or no user agent at all.
    Bot,
    /// The client address is over its limit for that kind of request.
    Rate,
    /// A click on a decision whose impression was never counted.
    NoImpression,
    /// A click sooner than `REGIE_MIN_CLICK_DELAY_MS` after its decision was issued.
    TooFast,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 4] = [
        Reason::Bot,
        Reason::Rate,
        Reason::NoImpression,
        Reason::TooFast,
    ];

    /// The reason's name, in stats keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Bot => "bot",
            Reason::Rate => "rate",
            Reason::NoImpression => "no_impression",
            Reason::TooFast => "too_fast",
        }
    }

    /// The reason of a name.
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// The `kind` label of `regie_invalid_traffic_total`: decision requests (bots answered from
/// the house tier, and requests refused over the rate limit), and each kind of event.
pub const METRIC_KINDS: [&str; 4] = ["decision", "impression", "viewable", "click"];

/// The (kind, reason) pairs that can happen, registered at start so every series shows 0.
pub fn metric_series() -> impl Iterator<Item = (&'static str, Reason)> {
    METRIC_KINDS.into_iter().flat_map(|kind| {
        Reason::ALL.into_iter().filter_map(move |reason| {
            let applies = match reason {
                Reason::Bot | Reason::Rate => true,
                Reason::NoImpression | Reason::TooFast => kind == "click",
            };
            applies.then_some((kind, reason))
        })
    })
}

/// Settings of the invalid-traffic rules.
#[derive(Debug, Clone)]
pub struct IvtSettings {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Rate limits per client address.
    pub limits: LimitSettings,
    /// A click sooner than this after its decision is `too_fast`, in milliseconds.
    pub min_click_delay_ms: u64,
}

/// The invalid-traffic rules of one instance, built once at start-up.
#[derive(Debug)]
pub struct Ivt {
    bots: BotMatcher,
    proxies: TrustedProxies,
    /// The rate limiters (swept by a background task).
    pub limits: Arc<Limits>,
    min_click_delay_ms: i64,
}

impl Ivt {
    /// The rules for these settings, with limiters reading `clock`.
    pub fn new(settings: IvtSettings, clock: SharedClock) -> Self {
        Self {
            bots: BotMatcher::new(),
            proxies: settings.trusted_proxies,
            limits: Arc::new(Limits::new(settings.limits, clock)),
            min_click_delay_ms: i64::try_from(settings.min_click_delay_ms).unwrap_or(i64::MAX),
        }
    }

    /// The request's client address (contract section 8).
    pub fn client(&self, req: &HttpRequest) -> IpAddr {
        // Without a peer (a test request built in memory), one shared address stands in.
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        if self.proxies.is_empty() {
            return peer;
        }
        self.proxies.client(
            peer,
            req.headers()
                .get_all(header::X_FORWARDED_FOR)
                .map(|v| v.as_bytes())
                .collect::<Vec<_>>()
                .into_iter(),
        )
    }

    /// Whether the request comes from a known bot.
    pub fn is_bot(&self, req: &HttpRequest) -> bool {
        self.bots
            .is_bot(req.headers().get(header::USER_AGENT).map(|v| v.as_bytes()))
    }

    /// Takes one decision request from the client's allowance; `Err` carries how long until
    /// the next one would be allowed.
    pub fn check_decision(&self, req: &HttpRequest) -> Result<(), Duration> {
        self.limits.check(Limited::Decision, self.client(req))
    }

    /// Why a tracking event carried by a valid token is invalid, as far as the request tells:
    /// a bot, over the client's limit for that kind, or (a click) too soon after its decision
    /// was issued at `issued_ms`, judged at `now_ms` (Unix milliseconds).
    pub fn event_reason(
        &self,
        req: &HttpRequest,
        kind: EventKind,
        issued_ms: i64,
        now_ms: i64,
    ) -> Option<Reason> {
        if self.is_bot(req) {
            return Some(Reason::Bot);
        }
        let limited = match kind {
            EventKind::Impression => Limited::Impression,
            EventKind::Viewable => Limited::Viewable,
            EventKind::Click => Limited::Click,
        };
        if self.limits.check(limited, self.client(req)).is_err() {
            return Some(Reason::Rate);
        }
        if kind == EventKind::Click && now_ms - issued_ms < self.min_click_delay_ms {
            return Some(Reason::TooFast);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_stable_names_that_parse_back() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("robot"), None);
    }

    #[test]
    fn only_clicks_have_click_reasons_in_the_metric() {
        let series: Vec<(&str, Reason)> = metric_series().collect();
        assert_eq!(series.len(), 10);
        assert!(series.contains(&("click", Reason::TooFast)));
        assert!(!series.contains(&("impression", Reason::NoImpression)));
        assert!(series.contains(&("decision", Reason::Rate)));
    }
}
