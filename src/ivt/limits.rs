//! Rate limits per client address, one keyed GCRA limiter (`governor`) per kind of request.
//!
//! Each limiter keeps one small state per address, in a map whose size is bounded: a flood of
//! distinct addresses cannot grow memory without end. Past the bound, a new address is judged
//! as a fresh one without being remembered, until the sweep ([`Limits::sweep`], every few
//! seconds) forgets the addresses that are back to a full allowance. Limits are per instance.
//!
//! The limiters read the injected clock, so tests move time rather than sleep.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::watch;

use crate::clock::SharedClock;

/// Addresses remembered per limiter at most: about 40 bytes each, so a few megabytes.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// How often addresses back to a full allowance are forgotten.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Decision requests (`REGIE_DECISIONS_PER_SECOND`).
    Decision,
    /// Impression beacons (`REGIE_IVT_IMPRESSIONS_PER_MINUTE`).
    Impression,
    /// Viewable beacons (`REGIE_IVT_IMPRESSIONS_PER_MINUTE`, counted apart from impressions).
    Viewable,
    /// Clicks (`REGIE_IVT_CLICKS_PER_MINUTE`).
    Click,
}

/// The limits, per client address; 0 disables one.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Decision requests per second.
    pub decisions_per_second: u32,
    /// Impressions per minute, and viewable impressions per minute.
    pub impressions_per_minute: u32,
    /// Clicks per minute.
    pub clicks_per_minute: u32,
}

/// The key of a client: its address, IPv4 as mapped IPv6, and IPv6 cut to its /64, the block
/// one subscriber line usually holds (an address a client can change at will is no key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(u128);

impl From<IpAddr> for ClientKey {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(u128::from(v4.to_ipv6_mapped())),
                None => Self(u128::from(v6) & !((1u128 << 64) - 1)),
            },
        }
    }
}

/// The injected clock as the limiters read it: nanoseconds since the limiter was built.
#[derive(Debug, Clone)]
struct InjectedClock {
    clock: SharedClock,
    origin: DateTime<Utc>,
}

impl Clock for InjectedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let elapsed = (self.clock.now() - self.origin)
            .num_nanoseconds()
            .unwrap_or(i64::MAX)
            .max(0);
        Nanos::from(elapsed as u64)
    }
}

type Hasher = hashbrown::DefaultHashBuilder;

/// governor's concurrent map of states, with a bound on how many addresses it holds.
#[derive(Debug)]
struct Bounded {
    map: DashMapStateStore<ClientKey, Hasher>,
    /// Addresses held, counted on insertion and refreshed by every sweep.
    held: AtomicUsize,
    max: usize,
}

impl StateStore for Bounded {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if !self.map.contains_key(key) {
            if self.held.load(Ordering::Relaxed) >= self.max {
                // Full: judged as a fresh address, and not remembered.
                return f(None).map(|(outcome, _)| outcome);
            }
            self.held.fetch_add(1, Ordering::Relaxed);
        }
        self.map.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<ClientKey> for Bounded {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.retain_recent(drop_below);
        self.held.store(self.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.map);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.map)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&self.map)
    }
}

type Keyed = RateLimiter<ClientKey, Bounded, InjectedClock, NoOpMiddleware<Nanos>>;

/// The limiters of one instance.
#[derive(Debug)]
pub struct Limits {
    clock: InjectedClock,
    decisions: Option<Keyed>,
    impressions: Option<Keyed>,
    viewable: Option<Keyed>,
    clicks: Option<Keyed>,
}

impl Limits {
    /// Limiters for these settings, reading `clock`.
    pub fn new(settings: LimitSettings, clock: SharedClock) -> Self {
        Self::with_capacity(settings, clock, MAX_TRACKED_ADDRESSES)
    }

    fn with_capacity(settings: LimitSettings, clock: SharedClock, max: usize) -> Self {
        let clock = InjectedClock {
            origin: clock.now(),
            clock,
        };
        let keyed = |quota: Option<Quota>| {
            quota.map(|quota| {
                let store = Bounded {
                    map: DashMapStateStore::with_hasher(Hasher::default()),
                    held: AtomicUsize::new(0),
                    max,
                };
                RateLimiter::new(quota, store, clock.clone())
            })
        };
        let per_minute = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        let decisions =
            keyed(NonZeroU32::new(settings.decisions_per_second).map(Quota::per_second));
        let impressions = keyed(per_minute(settings.impressions_per_minute));
        let viewable = keyed(per_minute(settings.impressions_per_minute));
        let clicks = keyed(per_minute(settings.clicks_per_minute));
        Self {
            clock,
            decisions,
            impressions,
            viewable,
            clicks,
        }
    }

    fn limiter(&self, kind: Limited) -> Option<&Keyed> {
        match kind {
            Limited::Decision => self.decisions.as_ref(),
            Limited::Impression => self.impressions.as_ref(),
            Limited::Viewable => self.viewable.as_ref(),
            Limited::Click => self.clicks.as_ref(),
        }
    }

    /// Takes one request of `kind` from the client's allowance. `Err` carries how long until
    /// the next request of that kind would be allowed.
    pub fn check(&self, kind: Limited, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = self.limiter(kind) else {
            return Ok(());
        };
        limiter
            .check_key(&ClientKey::from(client))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets the addresses whose allowance is full again, and gives back their memory.
    pub fn sweep(&self) {
        for limiter in [
            &self.decisions,
            &self.impressions,
            &self.viewable,
            &self.clicks,
        ]
        .into_iter()
        .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Addresses remembered by the limiter of `kind`.
    pub fn tracked(&self, kind: Limited) -> usize {
        self.limiter(kind).map_or(0, |l| l.len())
    }

    /// Sweeps every [`SWEEP_INTERVAL`] until `shutdown`.
    pub async fn run_sweeper(self: std::sync::Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.sweep(),
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn limits(decisions: u32, impressions: u32, clicks: u32) -> (Limits, ManualClock) {
        let clock = ManualClock::new(chrono::Utc::now());
        let limits = Limits::new(
            LimitSettings {
                decisions_per_second: decisions,
                impressions_per_minute: impressions,
                clicks_per_minute: clicks,
            },
            Arc::new(clock.clone()),
        );
        (limits, clock)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_gets_its_allowance_then_waits_for_the_clock() {
        let (limits, clock) = limits(100, 300, 10);
        let reader = ip("203.0.113.7");
        for _ in 0..100 {
            assert!(limits.check(Limited::Decision, reader).is_ok());
        }
        let wait = limits.check(Limited::Decision, reader).unwrap_err();
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        assert!(
            limits.check(Limited::Decision, ip("203.0.113.8")).is_ok(),
            "another address has its own allowance"
        );
        clock.advance(chrono::Duration::milliseconds(10));
        assert!(limits.check(Limited::Decision, reader).is_ok());
        assert!(limits.check(Limited::Decision, reader).is_err());
    }

    #[test]
    fn impressions_viewable_and_clicks_have_allowances_of_their_own() {
        let (limits, clock) = limits(100, 3, 2);
        let reader = ip("198.51.100.1");
        for _ in 0..3 {
            assert!(limits.check(Limited::Impression, reader).is_ok());
            assert!(limits.check(Limited::Viewable, reader).is_ok());
        }
        assert!(limits.check(Limited::Impression, reader).is_err());
        assert!(limits.check(Limited::Viewable, reader).is_err());
        assert!(limits.check(Limited::Click, reader).is_ok());
        assert!(limits.check(Limited::Click, reader).is_ok());
        let wait = limits.check(Limited::Click, reader).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(30),
            "two a minute: one every 30 s"
        );
        clock.advance(chrono::Duration::seconds(30));
        assert!(limits.check(Limited::Click, reader).is_ok());
    }

    #[test]
    fn zero_disables_a_limit() {
        let (limits, _clock) = limits(0, 0, 0);
        for _ in 0..10_000 {
            assert!(limits.check(Limited::Decision, ip("192.0.2.1")).is_ok());
            assert!(limits.check(Limited::Click, ip("192.0.2.1")).is_ok());
        }
        assert_eq!(limits.tracked(Limited::Decision), 0);
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_an_allowance() {
        let (limits, _clock) = limits(2, 300, 10);
        assert!(limits
            .check(Limited::Decision, ip("2001:db8:1:2::1"))
            .is_ok());
        assert!(limits
            .check(Limited::Decision, ip("2001:db8:1:2::ffff"))
            .is_ok());
        assert!(limits
            .check(Limited::Decision, ip("2001:db8:1:2:abcd::9"))
            .is_err());
        assert!(limits
            .check(Limited::Decision, ip("2001:db8:1:3::1"))
            .is_ok());
        assert_eq!(
            ClientKey::from(ip("::ffff:192.0.2.1")),
            ClientKey::from(ip("192.0.2.1"))
        );
    }

    #[test]
    fn a_flood_of_distinct_addresses_keeps_memory_bounded_and_the_sweep_forgets_them() {
        let clock = ManualClock::new(chrono::Utc::now());
        let limits = Limits::with_capacity(
            LimitSettings {
                decisions_per_second: 5,
                impressions_per_minute: 0,
                clicks_per_minute: 0,
            },
            Arc::new(clock.clone()),
            1_000,
        );
        for n in 0..50_000u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert!(limits.check(Limited::Decision, address).is_ok());
        }
        assert_eq!(limits.tracked(Limited::Decision), 1_000);
        clock.advance(chrono::Duration::seconds(2));
        limits.sweep();
        assert_eq!(limits.tracked(Limited::Decision), 0);
        assert!(limits.check(Limited::Decision, ip("10.9.9.9")).is_ok());
        assert_eq!(limits.tracked(Limited::Decision), 1, "room again");
    }
}
