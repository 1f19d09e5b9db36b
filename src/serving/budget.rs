//! The delivery rules of one request: budgets and pacing from [`Budgets`], and the viewer's
//! frequency caps when they are known here: read beforehand (`explain`) or kept by the client
//! ([`FrequencyState`]).

use std::cell::RefCell;

use chrono::{DateTime, NaiveDate, Utc};

use super::eligibility::{DeliveryCheck, Ineligible};
use super::frequency::cap_of;
use super::frequency_state::FrequencyState;
use super::PageRequest;
use crate::delivery::{Budgets, Held};
use crate::snapshot::{CampaignIndex, CompiledCampaign};

/// How a request knows the viewer's frequency caps.
#[derive(Clone, Copy)]
pub(super) enum FrequencyRule<'a> {
    /// Not here: no viewer id, or the store checks the caps as it serves the candidates (see
    /// [`super::frequency`]).
    Unchecked,
    /// Frequency-capped campaigns this viewer may still see (indexes into the snapshot), read
    /// from the store beforehand; the others with a frequency cap may not.
    Allowed(&'a [CampaignIndex]),
    /// The viewer's views as the client keeps them; a view served is counted in them.
    Kept(&'a RefCell<FrequencyState>),
}

/// The delivery rules of one request, for its time.
pub(super) struct RequestDelivery<'a> {
    budgets: &'a Budgets,
    now: DateTime<Utc>,
    today: NaiveDate,
    frequency: FrequencyRule<'a>,
}

impl<'a> RequestDelivery<'a> {
    pub(super) fn new(
        budgets: &'a Budgets,
        page: &PageRequest<'_>,
        frequency: FrequencyRule<'a>,
    ) -> Self {
        Self {
            budgets,
            now: page.now,
            today: page.today,
            frequency,
        }
    }

    /// Whether the viewer's frequency caps are known to this request.
    pub(super) fn frequency_checked(&self) -> bool {
        !matches!(self.frequency, FrequencyRule::Unchecked)
    }

    /// Takes one unit of the chosen campaign's budget, and counts the view in the client's
    /// state when it keeps one; false when another request took the last unit first (the
    /// caller chooses again without it).
    pub(super) fn take(&self, compiled: &CompiledCampaign) -> bool {
        let campaign = &compiled.campaign;
        if !self.budgets.take(campaign, self.today) {
            return false;
        }
        if let (FrequencyRule::Kept(state), Some(cap)) = (self.frequency, cap_of(compiled)) {
            state
                .borrow_mut()
                .record(&campaign.id, cap, self.now.timestamp_millis());
        }
        true
    }
}

impl DeliveryCheck for RequestDelivery<'_> {
    fn check(&self, index: CampaignIndex, compiled: &CompiledCampaign) -> Result<(), Ineligible> {
        let campaign = &compiled.campaign;
        let allowed = match (self.frequency, cap_of(compiled)) {
            (_, None) | (FrequencyRule::Unchecked, _) => true,
            (FrequencyRule::Allowed(allowed), Some(_)) => allowed.contains(&index),
            (FrequencyRule::Kept(state), Some(cap)) => {
                state
                    .borrow()
                    .allows(&campaign.id, cap, self.now.timestamp_millis())
            }
        };
        if !allowed {
            return Err(Ineligible::FrequencyCapped);
        }
        self.budgets
            .check(campaign, self.today, self.now)
            .map_err(|held| match held {
                Held::Capped => Ineligible::Capped,
                Held::Paced => Ineligible::Paced,
            })
    }
}
