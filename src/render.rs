//! Decision answers, written without running a serializer over the whole answer per request.
//!
//! Most of a decision is fixed for an inventory version: the campaign and advertiser ids and
//! the creative. Those are serialised once per creative, the first time the creative is
//! served from a version (only what is served is kept), and each decision only adds its slot,
//! its id and its three tracking URLs around them.
//! Escaping every byte of an answer of about 750 bytes was the largest single cost of a
//! decision on the CPU (see the README's figures); the pieces written per request are either
//! escaped (the slot) or made of characters JSON never escapes (a ULID, base64url tokens,
//! the public URL escaped once).
//!
//! The same version also gets its per-slot decision counters resolved once, so that a
//! decision does not hash its metric labels.

use std::sync::{Arc, OnceLock, Weak};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use prometheus::IntCounter;
use serde::Serialize;
use ulid::Ulid;

use crate::inventory::{Creative, Format};
use crate::metrics::{shard, Metrics, SHARDS};
use crate::snapshot::{CampaignIndex, Snapshot};

/// The creative as the page renders it (no landing URL: clicks go through the click URL).
#[derive(Debug, Serialize)]
struct CreativeOut<'a> {
    id: &'a str,
    format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<&'a str>,
}

/// The fixed part of a decision for one creative.
#[derive(Serialize)]
struct FixedOut<'a> {
    campaign_id: &'a str,
    advertiser_id: &'a str,
    creative: CreativeOut<'a>,
}

/// The decision counters of one slot, by outcome.
pub struct SlotCounters {
    /// A campaign of a tier was served.
    pub filled: IntCounter,
    /// The fallback was served.
    pub fallback: IntCounter,
    /// Nothing was served.
    pub no_fill: IntCounter,
}

/// What one inventory version's decisions share.
pub struct Prepared {
    snapshot: Weak<Snapshot>,
    /// Per campaign, per creative: `"campaign_id":…,"advertiser_id":…,"creative":{…}`,
    /// written when first served.
    fixed: Vec<Vec<OnceLock<Box<str>>>>,
    /// Per slot, by [`crate::snapshot::CompiledSlot::position`], the counters of each shard
    /// of [`crate::metrics::Metrics::decisions`].
    counters: Vec<[SlotCounters; SHARDS]>,
}

impl Prepared {
    /// The decision counters of the slot at `position` in the inventory, for this thread.
    pub fn counters(&self, position: usize) -> &SlotCounters {
        &self.counters[position][shard()]
    }
}

/// A version's [`Prepared`], held by a request. Found in the renderer's cache, it is held by
/// a guard of it rather than a clone of its `Arc`, for the reason [`crate::catalog::Served`]
/// gives.
pub enum PreparedRef {
    /// Found in the cache, at that index.
    Cached(arc_swap::Guard<Arc<[Option<Arc<Prepared>>; 2]>>, usize),
    /// Prepared by this request.
    Fresh(Arc<Prepared>),
}

impl std::ops::Deref for PreparedRef {
    type Target = Prepared;

    fn deref(&self) -> &Prepared {
        match self {
            Self::Cached(cached, at) => cached[*at]
                .as_deref()
                .expect("a cached PreparedRef names a prepared version"),
            Self::Fresh(prepared) => prepared,
        }
    }
}

/// Writes decision answers, keeping what the served version's decisions share.
pub struct Renderer {
    /// The public URL, escaped for a JSON string once (a URL needs no escaping, but the
    /// setting is not checked to be one).
    base: String,
    /// The same, unescaped, for creatives whose image regie serves itself.
    public_url: String,
    metrics: Metrics,
    /// The version served now, and the one before it: requests that started on the previous
    /// version when it was replaced still find theirs, rather than preparing it again.
    prepared: ArcSwap<[Option<Arc<Prepared>>; 2]>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// A renderer for tracking URLs under `public_url` (no trailing slash).
    pub fn new(public_url: &str, metrics: Metrics) -> Self {
        let quoted = serde_json::to_string(public_url).expect("strings serialise");
        Self {
            base: quoted[1..quoted.len() - 1].to_owned(),
            public_url: public_url.to_owned(),
            metrics,
            prepared: ArcSwap::from_pointee([None, None]),
        }
    }

    /// What `snapshot`'s decisions share, prepared the first time it is asked for.
    pub fn prepared(&self, snapshot: &Arc<Snapshot>) -> PreparedRef {
        let cached = self.prepared.load();
        // The weak reference keeps the snapshot's allocation, so no other snapshot can have
        // the same address while it is held.
        let same = |p: &Option<Arc<Prepared>>| {
            p.as_ref()
                .is_some_and(|p| std::ptr::eq(p.snapshot.as_ptr(), Arc::as_ptr(snapshot)))
        };
        if let Some(at) = cached.iter().position(same) {
            return PreparedRef::Cached(cached, at);
        }
        let prepared = Arc::new(self.prepare(snapshot));
        self.prepared
            .store(Arc::new([Some(prepared.clone()), cached[0].clone()]));
        PreparedRef::Fresh(prepared)
    }

    fn prepare(&self, snapshot: &Arc<Snapshot>) -> Prepared {
        let fixed = snapshot
            .campaigns
            .iter()
            .map(|compiled| {
                (0..compiled.campaign.creatives.len())
                    .map(|_| OnceLock::new())
                    .collect()
            })
            .collect();
        let counters = snapshot
            .document
            .slots
            .iter()
            .map(|slot| {
                let name = slot.name.as_str();
                std::array::from_fn(|at| {
                    let decisions = &self.metrics.decisions.shards()[at];
                    let counter = |outcome| decisions.with_label_values(&[name, outcome]);
                    SlotCounters {
                        filled: counter("filled"),
                        fallback: counter("fallback"),
                        no_fill: counter("no_fill"),
                    }
                })
            })
            .collect();
        Prepared {
            snapshot: Arc::downgrade(snapshot),
            fixed,
            counters,
        }
    }

    /// The fixed part of a decision for one creative, without the object's braces.
    fn fixed(&self, snapshot: &Snapshot, campaign: CampaignIndex, creative: usize) -> Box<str> {
        let campaign = &snapshot.campaign_at(campaign).campaign;
        let out = FixedOut {
            campaign_id: campaign.id.as_str(),
            advertiser_id: campaign.advertiser_id.as_str(),
            creative: self.creative_out(&campaign.creatives[creative]),
        };
        let json = serde_json::to_string(&out).expect("answers serialise");
        json[1..json.len() - 1].into()
    }

    fn creative_out<'a>(&'a self, creative: &'a Creative) -> CreativeOut<'a> {
        CreativeOut {
            id: creative.id.as_str(),
            format: creative.format,
            title: creative.title.as_deref(),
            body: creative.body.as_deref(),
            image_url: creative.image_url.as_ref().map(|url| {
                // Images regie serves itself are named by path in the inventory.
                if url.is_own() {
                    std::borrow::Cow::Owned(format!("{}{url}", self.public_url))
                } else {
                    std::borrow::Cow::Borrowed(url.as_str())
                }
            }),
            alt: creative.alt.as_deref(),
            width: creative.width,
            height: creative.height,
            html: creative.html.as_deref(),
        }
    }

    /// One decision as the contract describes it, as JSON.
    pub fn decision(
        &self,
        snapshot: &Snapshot,
        prepared: &Prepared,
        slot: &str,
        (campaign, creative): (CampaignIndex, usize),
        decision_id: Ulid,
        token: &[u8],
    ) -> Vec<u8> {
        let fixed = prepared.fixed[campaign.get()][creative]
            .get_or_init(|| self.fixed(snapshot, campaign, creative));
        let token_len = base64::encoded_len(token.len(), false).expect("a token is short");
        let url_bytes = self.base.len() + "/v1/i/".len() + token_len;
        let mut out = Vec::with_capacity(fixed.len() + slot.len() + 3 * (url_bytes + 20) + 64);
        out.extend_from_slice(b"{\"slot\":");
        serde_json::to_writer(&mut out, slot).expect("strings serialise");
        out.extend_from_slice(b",\"decision_id\":\"");
        out.extend_from_slice(
            decision_id
                .array_to_str(&mut [0; ulid::ULID_LEN])
                .as_bytes(),
        );
        out.extend_from_slice(b"\",");
        out.extend_from_slice(fixed.as_bytes());
        let mut encoded = None;
        for (name, path) in [
            ("impression_url", "/v1/i/"),
            ("viewable_url", "/v1/v/"),
            ("click_url", "/v1/c/"),
        ] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(self.base.as_bytes());
            out.extend_from_slice(path.as_bytes());
            // Encoded once, in place, then copied: base64url, nothing to escape.
            match encoded.clone() {
                Some(range) => out.extend_from_within(range),
                None => {
                    let start = out.len();
                    out.resize(start + token_len, 0);
                    URL_SAFE_NO_PAD
                        .encode_slice(token, &mut out[start..])
                        .expect("sized by encoded_len");
                    encoded = Some(start..start + token_len);
                }
            }
            out.push(b'"');
        }
        out.push(b'}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::parse_inventory;
    use serde_json::{json, Value};

    fn snapshot() -> Arc<Snapshot> {
        let doc = json!({
            "slots": [{ "name": "Publicité \"2\"" }],
            "advertisers": [{ "id": "adv", "name": "A" }],
            "campaigns": [{
                "id": "camp", "advertiser_id": "adv", "slots": ["Publicité \"2\""],
                "creatives": [
                    { "id": "img", "format": "image", "title": "Visitez \"nous\"\n",
                      "image_url": "/creatives/a.svg", "alt": "<alt> & \\", "width": 300,
                      "height": 250, "landing_url": "https://a.example/" },
                    { "id": "html", "format": "html", "html": "<b>\u{2028}été</b>",
                      "landing_url": "https://a.example/" }
                ]
            }]
        });
        let parsed = parse_inventory(doc.to_string().as_bytes()).unwrap();
        Arc::new(Snapshot::compile(1, parsed.inventory))
    }

    #[test]
    fn a_decision_is_the_json_the_contract_describes_with_every_string_escaped() {
        let snapshot = snapshot();
        let renderer = Renderer::new("https://ads.example\"/x", Metrics::new());
        let prepared = renderer.prepared(&snapshot);
        let id = Ulid::new();
        let slot = "Publicité \"2\"";
        // Bytes whose base64url holds both of its own characters, `-` and `_`.
        let token = [0xfb, 0xef, 0xff, 0x01];
        let encoded = "--__AQ";
        let camp = snapshot.campaign_index[&crate::inventory::CampaignId::parse("camp").unwrap()];

        let image: Value = serde_json::from_slice(&renderer.decision(
            &snapshot,
            &prepared,
            slot,
            (camp, 0),
            id,
            &token,
        ))
        .expect("valid JSON");
        let base = "https://ads.example\"/x";
        assert_eq!(
            image,
            json!({
                "slot": slot,
                "decision_id": id.to_string(),
                "campaign_id": "camp",
                "advertiser_id": "adv",
                "creative": {
                    "id": "img", "format": "image", "title": "Visitez \"nous\"\n",
                    "image_url": format!("{base}/creatives/a.svg"), "alt": "<alt> & \\",
                    "width": 300, "height": 250
                },
                "impression_url": format!("{base}/v1/i/{encoded}"),
                "viewable_url": format!("{base}/v1/v/{encoded}"),
                "click_url": format!("{base}/v1/c/{encoded}"),
            })
        );
        let html: Value = serde_json::from_slice(&renderer.decision(
            &snapshot,
            &prepared,
            slot,
            (camp, 1),
            id,
            &[],
        ))
        .expect("valid JSON");
        assert_eq!(
            html["creative"],
            json!({ "id": "html", "format": "html", "html": "<b>\u{2028}été</b>" })
        );
    }

    #[test]
    fn a_version_is_prepared_once_and_the_one_before_is_kept_for_requests_still_on_it() {
        let renderer = Renderer::new("http://x", Metrics::new());
        let first = snapshot();
        let a = renderer.prepared(&first);
        assert!(std::ptr::eq(&*a, &*renderer.prepared(&first)));
        let second = snapshot();
        let b = renderer.prepared(&second);
        assert!(!std::ptr::eq(&*a, &*b));
        assert!(
            std::ptr::eq(&*a, &*renderer.prepared(&first)),
            "the previous one is kept"
        );
        assert!(std::ptr::eq(&*b, &*renderer.prepared(&second)));
        let third = snapshot();
        renderer.prepared(&third);
        assert!(
            !std::ptr::eq(&*a, &*renderer.prepared(&first)),
            "two versions back is gone"
        );
    }
}
