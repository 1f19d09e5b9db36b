//! End-to-end tests in headless Chromium: the publisher tag on the demo page and on another
//! origin, the iframe ad, and the advertiser dashboard.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`). Run with `cargo test --test browser`; screenshots of the demo and
//! the dashboard land in `target/artifacts/`. No test leaves 127.0.0.1: creatives and landing
//! pages are served by the test itself.

mod dashboard;
mod demo;
mod harness;
mod pages;
mod publisher;
mod targeting;

// regie is started exactly as the API tests start it; this binary uses part of the helpers.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
