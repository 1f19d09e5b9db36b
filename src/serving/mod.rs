//! How a campaign is chosen for a page: the one home of the decision path.
//!
//! A page asks for one or more slots ([`PageRequest`]); [`Serving::decide`] answers each with
//! a campaign and a creative, or nothing (no fill), and [`Serving::explain`] shows, without
//! serving anything, why each campaign of a slot would or would not be.
//!
//! For each slot, in the page's order:
//! 1. [`eligibility`]: a campaign is set aside when it is paused or out of flight, excluded
//!    by the page or already chosen for an earlier slot, kept apart from what the page shows
//!    (its advertiser or an exclusion label), outside its countries or its schedule, not
//!    matching the keywords, without a creative for the slot's size at the page's width, or
//!    held back by its budget, its pacing or the viewer's frequency cap ([`Ineligible`]).
//! 2. Order (`order.rs`, [`draw_order`]): the highest tier with an eligible campaign is drawn
//!    by the slot's rotation (weighted random, smooth or optimize); the slot's fallback comes
//!    only when no tier has one.
//! 3. Frequency: with a state the client keeps (`frequency_state.rs`), frequency caps are
//!    checked in it with the rest of eligibility and each view served is counted in it, with
//!    no round trip; with a viewer id only (`frequency.rs`), they are checked in the store as
//!    the candidates are served, in one round trip for the whole page (more when the viewer
//!    is at a cap), only when the draw reaches a frequency-capped campaign.
//! 4. Budget: the chosen campaign takes one unit of its leased budget; when another request
//!    took the last one meanwhile, the slot is chosen again without it.
//!
//! Everything outside the inventory comes in through [`PageRequest`] (what the page sent and
//! when) and [`Serving`] (the store, budgets, the reservation releaser and the viewer-id
//! hash).

mod budget;
mod eligibility;
mod explain;
mod frequency;
mod frequency_state;
mod order;
mod viewer;

pub use self::eligibility::{eligibility, Context, DeliveryCheck, Ineligible};
pub use self::frequency_state::{FrequencyState, MAX_STATE_CHARS};
pub use self::order::{choose, commit, draw_order, Choice, Drawn};
pub use self::viewer::ViewerKeys;

use std::cell::RefCell;

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use smallvec::SmallVec;

use self::budget::{FrequencyRule, RequestDelivery};
use crate::delivery::{Budgets, Releaser};
use crate::snapshot::{CampaignIndex, CompiledSlot, Snapshot};
use crate::store::Store;
use crate::targeting::{Country, LocalMoment, PageShown, SizeChoice};

/// Who the page is shown to.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The viewer id the page sent, if any: frequency caps apply only with one, since
    /// without it regie cannot tell viewers apart. Always `None` when the reader refused
    /// tracking: the id is then ignored entirely.
    pub uid: Option<String>,
    /// The viewer's views as the client keeps them, when it sent its state: frequency caps
    /// are then checked and counted there, not in the store, and the decision answers the
    /// state with its views counted. `None` when the reader refused tracking.
    pub kept: Option<RefCell<FrequencyState>>,
    /// The reader refused tracking (`consent=0`, `"consent": false` or `Sec-GPC: 1`).
    pub refused_tracking: bool,
    /// A known bot (contract section 8): served from the `house` tier only, and taking
    /// nothing from any budget or frequency cap.
    pub bot: bool,
}

/// The choices for a page's slots, in their order; a page of one slot's without allocating.
pub type Choices = SmallVec<[Option<Choice>; 1]>;

/// The campaigns a page may not be served: those it excluded, then those chosen for it.
type Excluded = SmallVec<[CampaignIndex; 4]>;

/// A parsed page request: what a decision depends on besides the inventory.
#[derive(Debug)]
pub struct PageRequest<'a> {
    /// The slots asked for, in the page's order: a campaign chosen for a slot is not chosen
    /// for a later one, nor one of the same advertiser or sharing an exclusion label.
    pub slots: &'a [&'a CompiledSlot],
    /// The size each slot takes for the width the page gave it (as `slots`).
    pub sizes: SmallVec<[SizeChoice; 1]>,
    /// Who the page is shown to.
    pub viewer: Viewer,
    /// The page's keywords, normalised with [`crate::snapshot::normalize_keyword`].
    pub keywords: Vec<String>,
    /// Campaigns the page asked not to see.
    pub excluded: Vec<CampaignIndex>,
    /// Advertisers the page asked not to see (`exclude_advertisers`; indexes of
    /// [`Snapshot::advertiser_index`]).
    pub excluded_advertisers: Vec<usize>,
    /// The reader's country, from the CDN's header; `None` when unknown.
    pub country: Option<Country>,
    /// The time of the request.
    pub now: DateTime<Utc>,
    /// The same on the reporting time zone's wall clock, for day-parting.
    pub local: LocalMoment,
    /// Its reporting day.
    pub today: NaiveDate,
}

impl PageRequest<'_> {
    /// What the page excludes before any slot is chosen, for competitive separation.
    pub fn shown(&self) -> PageShown {
        PageShown::excluding(&self.excluded_advertisers)
    }
}

/// What choosing campaigns needs from the running application, borrowed for one request.
#[derive(Debug, Clone, Copy)]
pub struct Serving<'a> {
    /// The inventory version the request is served from.
    pub snapshot: &'a Snapshot,
    /// The store, which checks frequency caps.
    pub store: &'a Store,
    /// Budgets of capped campaigns.
    pub budgets: &'a Budgets,
    /// Cancels frequency reservations that were not served after all.
    pub releaser: &'a Releaser,
    /// Hashes viewer ids before they reach the store.
    pub viewers: &'a ViewerKeys,
}

impl Serving<'_> {
    /// Chooses a campaign for each slot of the page, never the same one twice, and takes a
    /// unit of its budget; a campaign whose last unit another request took meanwhile is set
    /// aside and its slot chosen again without it. One entry per slot, `None` for no fill.
    pub async fn decide(&self, page: &PageRequest<'_>) -> Choices {
        let mut rng = rand::rng();
        let delivery = RequestDelivery::new(self.budgets, page, FrequencyRule::Unchecked);
        if page.viewer.bot {
            return self.decide_for_bot(page, &delivery, &mut rng);
        }
        if let Some(kept) = &page.viewer.kept {
            let delivery = RequestDelivery::new(self.budgets, page, FrequencyRule::Kept(kept));
            return self.decide_without_viewer(page, &delivery, &mut rng);
        }
        match page.viewer.uid.as_deref() {
            // Boxed: its state (the store's round trips) is most of this future's size, which
            // every decision's future, viewer or not, would take and be copied with.
            Some(uid) => {
                Box::pin(frequency::decide_for_viewer(
                    self, page, &delivery, uid, &mut rng,
                ))
                .await
            }
            None => self.decide_without_viewer(page, &delivery, &mut rng),
        }
    }

    /// [`Serving::decide`] when no frequency cap applies, or the client keeps the viewer's
    /// (`delivery` checks and counts them): each slot in turn, without the campaigns chosen
    /// before it, and never a round trip.
    fn decide_without_viewer<R: Rng + ?Sized>(
        &self,
        page: &PageRequest<'_>,
        delivery: &RequestDelivery<'_>,
        rng: &mut R,
    ) -> Choices {
        let snapshot = self.snapshot;
        let mut excluded = Excluded::from_slice(&page.excluded);
        let mut shown = page.shown();
        let mut choose_one = |slot: &CompiledSlot, size: SizeChoice| loop {
            let ctx = Context {
                page,
                excluded: &excluded,
                shown: &shown,
                size,
                delivery: Some(delivery),
                house_only: false,
            };
            let choice = choose(snapshot, slot, &ctx, rng)?;
            // Set aside for the later slots, and for this one if its budget is spent.
            excluded.push(choice.campaign);
            let campaign = snapshot.campaign_at(choice.campaign);
            if delivery.take(campaign) {
                shown.show(campaign);
                return Some(choice);
            }
        };
        page.slots
            .iter()
            .zip(&page.sizes)
            .map(|(slot, size)| choose_one(slot, *size))
            .collect()
    }

    /// [`Serving::decide`] for a known bot: only `house` campaigns (the slot's fallback too,
    /// when it is one), still never one twice on a page and never one held back by its
    /// budget or pacing, but no unit is taken and no frequency cap is read or reserved.
    fn decide_for_bot<R: Rng + ?Sized>(
        &self,
        page: &PageRequest<'_>,
        delivery: &RequestDelivery<'_>,
        rng: &mut R,
    ) -> Choices {
        let snapshot = self.snapshot;
        let mut excluded = Excluded::from_slice(&page.excluded);
        let mut shown = page.shown();
        let mut choose_one = |slot: &CompiledSlot, size: SizeChoice| {
            let ctx = Context {
                page,
                excluded: &excluded,
                shown: &shown,
                size,
                delivery: Some(delivery),
                house_only: true,
            };
            let choice = choose(snapshot, slot, &ctx, rng)?;
            excluded.push(choice.campaign);
            shown.show(snapshot.campaign_at(choice.campaign));
            Some(choice)
        };
        page.slots
            .iter()
            .zip(&page.sizes)
            .map(|(slot, size)| choose_one(slot, *size))
            .collect()
    }

    /// `explain=1` for each slot of the page: why each campaign was or was not eligible, and
    /// how the draw would go. A dry run: nothing is counted, no budget is taken, no frequency
    /// reservation is made; the viewer's frequency caps are read from the state the client
    /// sent, or else from the store.
    pub async fn explain(&self, page: &PageRequest<'_>) -> Vec<serde_json::Value> {
        let mut explained = Vec::with_capacity(page.slots.len());
        for (slot, size) in page.slots.iter().zip(&page.sizes) {
            let allowed = match page.viewer.kept {
                Some(_) => None,
                None => frequency::allowed(self, slot, page).await,
            };
            let rule = match (&page.viewer.kept, &allowed) {
                (Some(kept), _) => FrequencyRule::Kept(kept),
                (None, Some(allowed)) => FrequencyRule::Allowed(allowed),
                (None, None) => FrequencyRule::Unchecked,
            };
            let delivery = RequestDelivery::new(self.budgets, page, rule);
            explained.push(explain::explain(
                self.snapshot,
                slot,
                *size,
                page,
                &delivery,
            ));
        }
        explained
    }
}
