//! regie: an ad-slot serving microservice.
//!
//! A publisher's page asks for an ad per slot ("Publicité 2", "banner"); regie picks a campaign
//! from its inventory by weighted rotation, answers with the creative and signed tracking URLs,
//! and counts served decisions, impressions, viewable impressions and clicks.
//!
//! # Layout
//!
//! - [`inventory`]: the inventory document (contract section 1), its validated names (one
//!   type per kind of id: `CampaignId`, `AdvertiserId`, `CreativeId`), its URLs kept
//!   normalised (`LandingUrl`, `ImageUrl`) and its validation, which names every bad field by
//!   its path.
//! - [`selection`]: weighted rotation within one tier: alias tables (`weighted_random`),
//!   smooth weighted round robin (`smooth`) and Thompson sampling (`optimize`). Pure, seeded
//!   in tests.
//! - [`optimize`]: the `optimize` rotation's counts, read from the store in the background.
//! - [`snapshot`]: one inventory version compiled for serving: per-slot, per-tier tables;
//!   campaigns are referred to by their `CampaignIndex` in it.
//! - [`targeting`]: country, day-parting, responsive sizes and competitive separation, pure
//!   rules evaluated per request against the snapshot's compiled forms.
//! - [`serving`]: how a campaign is chosen for a page, in one place: the page request,
//!   eligibility (status, flight, exclusions, keywords, delivery checks), tier order and
//!   fallback, the frequency walk in the store (viewer ids hashed with a key), budget retry,
//!   and the `explain` dry run.
//! - [`delivery`]: caps (budgets leased from the store), even pacing, click caps, and the
//!   background release of unused frequency reservations.
//! - [`catalog`]: the served snapshot behind an `ArcSwap`, the task that follows the store,
//!   and a watch of the version served.
//! - [`store`]: the shared store: the `Backend` trait, implemented by Redis (one primary or a
//!   Redis Cluster; its Lua scripts in `src/store/lua/`, its keys named in one module, a
//!   circuit breaker that keeps public requests from waiting on it) and by an embedded
//!   in-memory store.
//! - [`tracking`]: signed tracking tokens.
//! - [`ivt`]: invalid traffic (known bots, client addresses behind trusted proxies, rate
//!   limits per address): what makes a decision or an event count apart.
//! - [`counting`]: counters buffered in memory and flushed to the store in idempotent batches.
//! - [`metrics`]: Prometheus metrics, owned by one struct.
//! - [`reporting`]: advertisers' counters by day and slot, and their CSV export.
//! - [`render`]: decision answers, with what an inventory version's decisions share
//!   serialised once.
//! - [`routes`]: the HTTP endpoints, one module per group; [`error`] maps errors to HTTP.
//! - [`local_admin`]: the admin token a developer's instance makes up when none is set.
//! - [`settings`], [`telemetry`], [`clock`], [`state`], [`startup`]: configuration, logs,
//!   injected time and the reporting time zone (where "today" is computed), shared handles,
//!   and [`startup::Application`], used by `main` and tests.
//!
//! Dependencies point one way: `routes` → `serving` → `delivery`, `snapshot`, `store` →
//! `inventory`; nothing below `routes` refers to it.

pub mod catalog;
pub mod clock;
pub mod counting;

pub mod delivery;
pub mod error;
pub mod inventory;
pub mod ivt;
pub mod local_admin;
pub mod metrics;
pub mod optimize;
pub mod render;
pub mod reporting;
pub mod routes;
pub mod selection;
pub mod serving;
pub mod settings;
pub mod snapshot;
pub mod startup;
pub mod state;
pub mod store;
pub mod targeting;
pub mod telemetry;
pub mod tracking;
