//! The delivery rules of one request: budgets and pacing from [`Budgets`], and the viewer's
//! frequency allowances when they were read beforehand (`explain`).

use chrono::{DateTime, NaiveDate, Utc};

use super::eligibility::{DeliveryCheck, Ineligible};
use super::PageRequest;
use crate::delivery::{Budgets, Held};
use crate::inventory::Campaign;
use crate::snapshot::{CampaignIndex, CompiledCampaign};

/// The delivery rules of one request, for its time.
pub(super) struct RequestDelivery<'a> {
    budgets: &'a Budgets,
    now: DateTime<Utc>,
    today: NaiveDate,
    /// Frequency-capped campaigns this viewer may still see (indexes into the snapshot); the
    /// others with a frequency cap may not. `None`: not checked here (no viewer id, or the
    /// store checks the caps as it serves the candidates, see [`super::frequency`]).
    frequency_allowed: Option<&'a [CampaignIndex]>,
}

impl<'a> RequestDelivery<'a> {
    pub(super) fn new(
        budgets: &'a Budgets,
        page: &PageRequest<'_>,
        frequency_allowed: Option<&'a [CampaignIndex]>,
    ) -> Self {
        Self {
            budgets,
            now: page.now,
            today: page.today,
            frequency_allowed,
        }
    }

    /// Whether the viewer's frequency caps were read for this request.
    pub(super) fn frequency_checked(&self) -> bool {
        self.frequency_allowed.is_some()
    }

    /// Takes one unit of the chosen campaign's budget; false when another request took the
    /// last one first (the caller chooses again without it).
    pub(super) fn take(&self, campaign: &Campaign) -> bool {
        self.budgets.take(campaign, self.today)
    }
}

impl DeliveryCheck for RequestDelivery<'_> {
    fn check(&self, index: CampaignIndex, compiled: &CompiledCampaign) -> Result<(), Ineligible> {
        let campaign = &compiled.campaign;
        if campaign.frequency.is_some() {
            if let Some(allowed) = self.frequency_allowed {
                if !allowed.contains(&index) {
                    return Err(Ineligible::FrequencyCapped);
                }
            }
        }
        self.budgets
            .check(campaign, self.today, self.now)
            .map_err(|held| match held {
                Held::Capped => Ineligible::Capped,
                Held::Paced => Ineligible::Paced,
            })
    }
}
