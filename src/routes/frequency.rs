//! Per-viewer frequency caps for one request: one store round trip checks every
//! frequency-capped campaign the request could be served and reserves a view of those under
//! their cap; reservations not used by a decision are cancelled in the background.
//!
//! Without a `uid` no frequency cap applies: regie cannot tell viewers apart. Viewer ids are
//! hashed before they reach the store. When the store cannot be reached, frequency-capped
//! campaigns are not served (the cap is a promise to the advertiser); others are.

use sha2::{Digest, Sha256};
use ulid::Ulid;

use super::serve::in_flight;
use crate::inventory::Id;
use crate::snapshot::{CompiledSlot, Snapshot};
use crate::state::AppState;
use crate::store::{FrequencyItem, FrequencyRelease};

/// The most frequency-capped campaigns checked for one request.
const MAX_CHECKED: usize = 1_000;

/// What a request's viewer may still see.
pub(crate) struct FrequencyGrant {
    viewer: String,
    reservation: String,
    /// Frequency-capped campaigns reserved for this request, by snapshot index.
    reserved: Vec<(usize, Id)>,
    /// `None` without a viewer id: no frequency cap applies.
    allowed: Option<Vec<usize>>,
}

impl FrequencyGrant {
    /// The frequency-capped campaigns the viewer may see; `None` when caps do not apply.
    pub fn allowed(&self) -> Option<&[usize]> {
        self.allowed.as_deref()
    }

    /// Cancels the reservations of campaigns that were not chosen.
    pub fn release_unused(&self, state: &AppState, chosen: impl Iterator<Item = usize>) {
        let chosen: Vec<usize> = chosen.collect();
        let unused: Vec<Id> = self
            .reserved
            .iter()
            .filter(|(index, _)| !chosen.contains(index))
            .map(|(_, id)| id.clone())
            .collect();
        self.release(state, unused);
    }

    /// Cancels every reservation (a dry run).
    pub fn release_all(&self, state: &AppState) {
        self.release(
            state,
            self.reserved.iter().map(|(_, id)| id.clone()).collect(),
        );
    }

    fn release(&self, state: &AppState, campaigns: Vec<Id>) {
        if campaigns.is_empty() {
            return;
        }
        state.releaser.release(FrequencyRelease {
            viewer: self.viewer.clone(),
            reservation: self.reservation.clone(),
            campaigns,
        });
    }
}

/// The stored form of a viewer id: the first 128 bits of its SHA-256, in hex.
fn viewer_key(uid: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(uid.as_bytes());
    let mut key = String::with_capacity(32);
    for byte in &digest[..16] {
        key.push(HEX[usize::from(byte >> 4)] as char);
        key.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    key
}

/// Checks and reserves the viewer's frequency allowances for the campaigns `slots` could serve.
pub(crate) async fn reserve_frequency(
    state: &AppState,
    snapshot: &Snapshot,
    slots: &[&CompiledSlot],
    uid: Option<&str>,
) -> FrequencyGrant {
    let mut grant = FrequencyGrant {
        viewer: String::new(),
        reservation: String::new(),
        reserved: Vec::new(),
        allowed: None,
    };
    let Some(uid) = uid else { return grant };
    let now = state.clock.now();
    let mut candidates: Vec<usize> = Vec::new();
    let members = slots.iter().flat_map(|slot| {
        slot.tiers
            .iter()
            .flat_map(|t| t.members.iter())
            .chain(slot.fallback.iter())
    });
    for member in members {
        let index = member.campaign;
        if snapshot.campaigns[index].campaign.frequency.is_some()
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
        grant.allowed = Some(Vec::new());
        return grant;
    }
    grant.viewer = viewer_key(uid);
    grant.reservation = Ulid::new().to_string();
    let items: Vec<FrequencyItem> = candidates
        .iter()
        .map(|&index| {
            let campaign = &snapshot.campaigns[index].campaign;
            let frequency = campaign.frequency.as_ref().expect("filtered on frequency");
            FrequencyItem {
                campaign: campaign.id.clone(),
                max: frequency.max,
                window_ms: (frequency.per_seconds as i64).saturating_mul(1_000),
            }
        })
        .collect();
    let now_ms = now.timestamp_millis();
    match state
        .store
        .frequency_reserve(&grant.viewer, now_ms, &grant.reservation, &items)
        .await
    {
        Ok(flags) => {
            let allowed: Vec<usize> = candidates
                .iter()
                .zip(&flags)
                .filter(|(_, ok)| **ok)
                .map(|(i, _)| *i)
                .collect();
            grant.reserved = allowed
                .iter()
                .map(|&i| (i, snapshot.campaigns[i].campaign.id.clone()))
                .collect();
            grant.allowed = Some(allowed);
        }
        Err(e) => {
            tracing::warn!(error = %e, "frequency caps unavailable; frequency-capped campaigns are not served");
            grant.allowed = Some(Vec::new());
        }
    }
    grant
}
