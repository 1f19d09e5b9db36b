//! Competitive separation on a page: never two campaigns of one advertiser (house campaigns
//! excepted), never two campaigns that share an exclusion label.

use smallvec::SmallVec;

use crate::inventory::Priority;
use crate::snapshot::CompiledCampaign;

/// What a page shows already, or asked not to see, as far as separation goes. A page of a few
/// slots keeps it without allocating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageShown {
    /// Advertiser indexes ([`CompiledCampaign::advertiser`]).
    advertisers: SmallVec<[usize; 4]>,
    /// Exclusion label indexes ([`CompiledCampaign::labels`]).
    labels: SmallVec<[usize; 4]>,
}

impl PageShown {
    /// A page that shows nothing yet.
    pub const fn new() -> Self {
        Self {
            advertisers: SmallVec::new_const(),
            labels: SmallVec::new_const(),
        }
    }

    /// A page that shows nothing yet and excludes these advertisers (`exclude_advertisers`).
    pub fn excluding(advertisers: &[usize]) -> Self {
        Self {
            advertisers: SmallVec::from_slice(advertisers),
            labels: SmallVec::new(),
        }
    }

    /// Whether the campaign may join the page: its advertiser is not on it (unless it is a
    /// house campaign, which the publisher may repeat) and no label of its is.
    pub fn admits(&self, campaign: &CompiledCampaign) -> bool {
        let advertiser_ok = campaign.campaign.priority == Priority::House
            || !self.advertisers.contains(&campaign.advertiser);
        advertiser_ok && !campaign.labels.iter().any(|l| self.labels.contains(l))
    }

    /// Records that the campaign is shown on the page.
    pub fn show(&mut self, campaign: &CompiledCampaign) {
        if campaign.campaign.priority != Priority::House {
            self.advertisers.push(campaign.advertiser);
        }
        self.labels.extend_from_slice(&campaign.labels);
    }

    /// The advertisers excluded so far.
    pub fn advertisers(&self) -> &[usize] {
        &self.advertisers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::parse_inventory;
    use crate::snapshot::Snapshot;
    use serde_json::json;

    fn snapshot() -> Snapshot {
        let campaign = |id: &str, advertiser: &str, priority: &str, labels: &[&str]| {
            json!({ "id": id, "advertiser_id": advertiser, "slots": ["s"], "priority": priority,
                    "exclusion_labels": labels,
                    "creatives": [{ "id": "t", "format": "text", "title": id,
                                    "landing_url": "https://a.example/" }] })
        };
        let doc = json!({
            "slots": [{ "name": "s" }],
            "advertisers": [{ "id": "a", "name": "A" }, { "id": "b", "name": "B" },
                            { "id": "pub", "name": "Publisher" }],
            "campaigns": [
                campaign("a1", "a", "standard", &["auto"]),
                campaign("a2", "a", "sponsorship", &[]),
                campaign("b1", "b", "standard", &["Auto"]),
                campaign("b2", "b", "standard", &["banque"]),
                campaign("house1", "pub", "house", &[]),
                campaign("house2", "pub", "house", &[]),
            ],
        });
        Snapshot::compile(
            1,
            parse_inventory(doc.to_string().as_bytes())
                .unwrap()
                .inventory,
        )
    }

    #[test]
    fn a_page_admits_one_campaign_per_advertiser_and_per_label() {
        let snap = snapshot();
        let c = |i: usize| &snap.campaigns[i];
        let mut page = PageShown::default();
        assert!((0..6).all(|i| page.admits(c(i))));

        page.show(c(0)); // a1: advertiser a, label auto
        assert!(!page.admits(c(1)), "same advertiser");
        assert!(!page.admits(c(2)), "same label, whatever its case");
        assert!(page.admits(c(3)));

        page.show(c(4)); // a house campaign
        assert!(page.admits(c(5)), "house campaigns may repeat");
    }

    #[test]
    fn excluded_advertisers_are_not_admitted_except_for_house_campaigns() {
        let snap = snapshot();
        let b = snap.campaigns[2].advertiser;
        let publisher = snap.campaigns[4].advertiser;
        let page = PageShown::excluding(&[b, publisher]);
        assert!(!page.admits(&snap.campaigns[2]));
        assert!(!page.admits(&snap.campaigns[3]));
        assert!(page.admits(&snap.campaigns[0]));
        assert!(page.admits(&snap.campaigns[4]));
    }
}
