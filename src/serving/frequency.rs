//! Choosing the campaigns of one request, with per-viewer frequency caps.
//!
//! Each slot's candidates are drawn in the order they would be served
//! ([`super::draw_order`]), as far as the first campaign without a frequency cap
//! (for a page, one more per slot before it, since an earlier slot may take one). When serving
//! them reaches a frequency-capped campaign, the store walks the same order, serves each slot
//! its first candidate under its cap and reserves that view, never past a cap across
//! instances, in one round trip unless a capped choice is refused. When it does not (no `uid`, or an uncapped campaign drawn first), the request
//! costs no round trip at all. Nothing is reserved that is not served, so nothing has to be
//! given back, except in the rare case where a budget's last unit went to another request.
//!
//! Without a `uid` no frequency cap applies: regie cannot tell viewers apart. Viewer ids are
//! hashed with a key before they reach the store ([`super::ViewerKeys`]). When the store
//! cannot be reached, frequency-capped campaigns are not served (the cap is a promise to the
//! advertiser); others are.

use std::cell::OnceCell;

use rand::Rng;
use smallvec::SmallVec;
use ulid::Ulid;

use super::budget::RequestDelivery;
use super::eligibility::in_flight;
use super::{commit, draw_order, Choice, Choices, Context, Drawn, Excluded, PageRequest, Serving};
use crate::snapshot::{CampaignIndex, CompiledCampaign, CompiledSlot, Snapshot};
use crate::store::{
    first_allowed, Backend, FrequencyCap, FrequencyItem, FrequencyRelease, StoreError,
};
use crate::targeting::{PageShown, SizeChoice};

/// The most candidates drawn for one slot. A viewer who has reached the frequency cap of
/// every one of them is served the slot's fallback, or nothing.
const MAX_CANDIDATES: usize = 32;

/// The most frequency-capped campaigns `explain` checks.
const MAX_CHECKED: usize = 1_000;

/// Logs a failed frequency call: an outage at debug level, since the store's breaker logs it
/// once; anything else, an answer regie cannot use, as a warning.
fn log_unavailable(e: &StoreError) {
    if e.is_outage() {
        tracing::debug!(error = %e, "frequency caps unavailable");
    } else {
        tracing::warn!(error = %e, "frequency caps unavailable; frequency-capped campaigns are not served");
    }
}

/// A campaign's frequency cap, as the store and the client's state check it.
pub(super) fn cap_of(compiled: &CompiledCampaign) -> Option<FrequencyCap> {
    compiled
        .campaign
        .frequency
        .as_ref()
        .map(|frequency| FrequencyCap {
            max: frequency.max,
            window_ms: (frequency.per_seconds as i64).saturating_mul(1_000),
        })
}

/// [`cap_of`] the campaign at `index`.
fn cap_at(snapshot: &Snapshot, index: CampaignIndex) -> Option<FrequencyCap> {
    cap_of(snapshot.campaign_at(index))
}

/// The viewer of a request as the store knows it, with the request's reservation.
struct Reservation {
    /// The hashed viewer id.
    viewer: String,
    /// Marks the views this request reserves, so that they can be cancelled.
    id: String,
}

/// One request's frequency walk: what every [`Walk::pick`] of it shares.
struct Walk<'a> {
    serving: &'a Serving<'a>,
    page: &'a PageRequest<'a>,
    delivery: &'a RequestDelivery<'a>,
    uid: &'a str,
    /// Made when the walk first reaches a frequency-capped campaign: the viewer id's HMAC and
    /// a reservation id cost a decision with a `uid` 1 300 instructions besides SHA-256's
    /// rounds, for nothing when no candidate has a frequency cap.
    reservation: OnceCell<Reservation>,
}

impl Walk<'_> {
    fn reservation(&self) -> &Reservation {
        self.reservation.get_or_init(|| Reservation {
            viewer: self.serving.viewers.key(self.uid),
            id: Ulid::new().to_string(),
        })
    }
}

/// A campaign chosen for a slot.
struct Pick {
    choice: Choice,
    /// Whether a view of it was reserved under its frequency cap.
    reserved: bool,
}

/// [`Serving::decide`] for a page with a viewer id: each slot its first candidate under the
/// viewer's frequency caps, then a unit of its budget; a campaign whose last unit another
/// request took meanwhile gives its reservation back and its slot is chosen again without it.
pub(super) async fn decide_for_viewer<R: Rng + ?Sized>(
    serving: &Serving<'_>,
    page: &PageRequest<'_>,
    delivery: &RequestDelivery<'_>,
    uid: &str,
    rng: &mut R,
) -> Choices {
    let walk = Walk {
        serving,
        page,
        delivery,
        uid,
        reservation: OnceCell::new(),
    };
    let snapshot = serving.snapshot;
    let slots: SmallVec<[PageSlot; 1]> = page
        .slots
        .iter()
        .copied()
        .zip(page.sizes.iter().copied())
        .collect();
    let mut shown = page.shown();
    let picks = walk.pick(&slots, &page.excluded, &shown, rng).await;
    let mut excluded = Excluded::from_slice(&page.excluded);
    excluded.extend(picks.iter().flatten().map(|p| p.choice.campaign));
    let mut chosen = Choices::with_capacity(page.slots.len());
    for (slot, mut next) in slots.iter().zip(picks) {
        loop {
            let Some(p) = next else {
                chosen.push(None);
                break;
            };
            let campaign = snapshot.campaign_at(p.choice.campaign);
            // The slots were drawn together, each unaware of the campaigns the earlier ones
            // would get: one that must be kept apart from them is drawn again, as one whose
            // budget ran out is. Drawing again among what is left keeps the weights.
            if shown.admits(campaign) && delivery.take(campaign) {
                shown.show(campaign);
                chosen.push(Some(p.choice));
                break;
            }
            if p.reserved {
                serving.releaser.release(FrequencyRelease {
                    viewer: walk.reservation().viewer.clone(),
                    reservation: walk.reservation().id.clone(),
                    campaigns: vec![campaign.campaign.id.clone()],
                });
            }
            next = walk
                .pick(&[*slot], &excluded, &shown, rng)
                .await
                .pop()
                .flatten();
            excluded.extend(next.iter().map(|p| p.choice.campaign));
        }
    }
    chosen
}

/// A slot of the page and the size it takes for the request.
type PageSlot<'a> = (&'a CompiledSlot, SizeChoice);

impl Walk<'_> {
    /// Chooses a campaign for each slot, none twice and none of `excluded`, under the viewer's
    /// frequency caps, with one round trip when the draw reaches a frequency-capped campaign;
    /// takes no budget.
    async fn pick<R: Rng + ?Sized>(
        &self,
        slots: &[PageSlot<'_>],
        excluded: &[CampaignIndex],
        shown: &PageShown,
        rng: &mut R,
    ) -> SmallVec<[Option<Pick>; 1]> {
        let snapshot = self.serving.snapshot;
        let ctx = |size: SizeChoice| Context {
            page: self.page,
            excluded,
            shown,
            size,
            delivery: Some(self.delivery),
            house_only: false,
        };
        let capped = |index: CampaignIndex| cap_at(snapshot, index).is_some();
        let orders: SmallVec<[Drawn; 1]> = slots
            .iter()
            .enumerate()
            .map(|(before, &(slot, size))| {
                let mut uncapped = 0;
                draw_order(snapshot, slot, &ctx(size), rng, MAX_CANDIDATES, |choice| {
                    if !capped(choice.campaign) {
                        uncapped += 1;
                    }
                    uncapped > before
                })
            })
            .collect();
        let positions = match first_allowed(
            &orders,
            |c| c.campaign,
            |c| (!capped(c.campaign)).then_some(true),
        ) {
            Some(positions) => positions,
            None => {
                let chains: Vec<Vec<FrequencyItem>> = orders
                    .iter()
                    .map(|order| {
                        order
                            .iter()
                            .map(|c| FrequencyItem {
                                campaign: snapshot.campaign_at(c.campaign).campaign.id.clone(),
                                cap: cap_at(snapshot, c.campaign),
                            })
                            .collect()
                    })
                    .collect();
                let now_ms = self.page.now.timestamp_millis();
                let reservation = self.reservation();
                match self
                    .serving
                    .store
                    .frequency_pick(&reservation.viewer, now_ms, &reservation.id, &chains)
                    .await
                {
                    Ok(positions) => positions,
                    Err(e) => {
                        log_unavailable(&e);
                        first_allowed(&orders, |c| c.campaign, |c| Some(!capped(c.campaign)))
                            .expect("every verdict is known")
                    }
                }
            }
        };
        orders
            .iter()
            .zip(slots)
            .zip(positions)
            .map(|((order, &(slot, size)), position)| {
                let choice = *order.get(position?)?;
                let passed_over: SmallVec<[CampaignIndex; 4]> =
                    order[..position?].iter().map(|c| c.campaign).collect();
                commit(snapshot, slot, &ctx(size), &choice, &passed_over);
                Some(Pick {
                    choice,
                    reserved: capped(choice.campaign),
                })
            })
            .collect()
    }
}

/// For `explain`: the frequency-capped campaigns of the slot the viewer may still see, read
/// without reserving anything; `None` without a viewer id (no frequency cap applies).
pub(super) async fn allowed(
    serving: &Serving<'_>,
    slot: &CompiledSlot,
    page: &PageRequest<'_>,
) -> Option<Vec<CampaignIndex>> {
    let uid = page.viewer.uid.as_deref()?;
    let (snapshot, now) = (serving.snapshot, page.now);
    let mut candidates: Vec<CampaignIndex> = Vec::new();
    let members = slot
        .tiers
        .iter()
        .flat_map(|t| t.members.iter())
        .chain(slot.fallback.iter());
    for member in members {
        let index = member.campaign;
        if cap_at(snapshot, index).is_some()
            && !candidates.contains(&index)
            && in_flight(snapshot, index, now)
        {
            candidates.push(index);
            if candidates.len() == MAX_CHECKED {
                break;
            }
        }
    }
    if candidates.is_empty() {
        return Some(Vec::new());
    }
    let items: Vec<FrequencyItem> = candidates
        .iter()
        .map(|&index| FrequencyItem {
            campaign: snapshot.campaign_at(index).campaign.id.clone(),
            cap: cap_at(snapshot, index),
        })
        .collect();
    let checked = serving
        .store
        .frequency_check(&serving.viewers.key(uid), now.timestamp_millis(), &items)
        .await;
    Some(match checked {
        Ok(flags) => candidates
            .into_iter()
            .zip(flags)
            .filter_map(|(index, ok)| ok.then_some(index))
            .collect(),
        Err(e) => {
            log_unavailable(&e);
            Vec::new()
        }
    })
}
