//! Frequency caps kept by the client: the views of one browser, signed, sent back with its
//! next request (`fs` on `GET /v1/slots/{slot}/ad`, `frequency_state` in `POST
//! /v1/decisions`), so that checking and counting them takes no round trip to the store.
//!
//! `tag.js` keeps the state in the browser and sends one request at a time per browser (a
//! Web Lock held from reading the state to storing the answer's), so every decision sees the
//! views of the ones before it: a browser never sees a campaign more than `max` times per
//! window, whichever instance answers. An empty state is a viewer seen nowhere yet, as a new
//! `uid` is; a client that drops its state starts again, as one that drops its `uid` cookie
//! does. Requests that send only a `uid` are checked in the store ([`super::frequency`]).
//!
//! The state holds, per frequency-capped campaign (a 64-bit hash of its id), when its views
//! leave their window, in whole seconds rounded up, as at most [`MAX_BUCKETS`] buckets: past
//! that, the two that leave first are merged into the later one. A merged view is counted a
//! little longer than it was seen, never shorter, so a cap is never exceeded; with `max` up
//! to [`MAX_BUCKETS`] the count is exact. A view counts for the window in force when it was
//! served. At most [`MAX_ENTRIES`] campaigns are held: a campaign that would be the next one
//! is not served until one leaves its window, rather than forgetting views.
//!
//! Payload, sealed by [`Signer::seal`]: `entries (1) | per entry: hash (8, LE) | buckets (1)
//! | per bucket: leaves_at (4, Unix seconds, LE) | views (4, LE)`.

use smallvec::SmallVec;

use crate::inventory::CampaignId;
use crate::store::FrequencyCap;
use crate::tracking::Signer;

/// Most campaigns one state holds.
pub const MAX_ENTRIES: usize = 32;
/// Most buckets of one campaign's views.
pub const MAX_BUCKETS: usize = 4;
/// Longest state accepted, in characters: a full state seals to about 1 800.
pub const MAX_STATE_CHARS: usize = 2_048;

/// Views that leave their window at the same second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    /// When they stop counting, in Unix seconds.
    leaves_at: u32,
    views: u32,
}

/// The views of one campaign, buckets in the order they leave.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    campaign: u64,
    buckets: SmallVec<[Bucket; 2]>,
}

/// One browser's views of frequency-capped campaigns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrequencyState {
    entries: SmallVec<[Entry; 2]>,
}

/// A campaign's key in a state: FNV-1a of its id, stable across instances and versions. Two
/// ids with one hash would share their views: each counted more, never less.
fn campaign_hash(campaign: &CampaignId) -> u64 {
    campaign
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Whether views leaving at `leaves_at` still count at `now_ms`.
fn counts(leaves_at: u32, now_ms: i64) -> bool {
    i64::from(leaves_at) * 1_000 > now_ms
}

impl FrequencyState {
    /// The state a client sent: empty when it is empty or not one this service sealed (altered,
    /// or sealed with a key no longer held), as for a viewer seen nowhere yet. Views that left
    /// their window are dropped.
    pub fn open(signer: &Signer, sealed: &str, now_ms: i64) -> Self {
        if sealed.is_empty() {
            return Self::default();
        }
        let Some(mut state) = signer.open(sealed).as_deref().and_then(Self::decode) else {
            tracing::debug!("a frequency state that does not verify is taken as empty");
            return Self::default();
        };
        for entry in &mut state.entries {
            entry.buckets.retain(|b| counts(b.leaves_at, now_ms));
        }
        state.entries.retain(|e| !e.buckets.is_empty());
        state
    }

    /// The state, sealed for the client to send back.
    pub fn seal(&self, signer: &Signer) -> String {
        signer.seal(&self.encode())
    }

    /// Whether the viewer may see `campaign` once more under `cap`.
    pub fn allows(&self, campaign: &CampaignId, cap: FrequencyCap, now_ms: i64) -> bool {
        let hash = campaign_hash(campaign);
        match self.entries.iter().find(|e| e.campaign == hash) {
            Some(entry) => {
                let seen: u64 = entry
                    .buckets
                    .iter()
                    .filter(|b| counts(b.leaves_at, now_ms))
                    .map(|b| u64::from(b.views))
                    .sum();
                seen < u64::from(cap.max)
            }
            None => cap.max > 0 && self.entries.len() < MAX_ENTRIES,
        }
    }

    /// Counts a view of `campaign` served at `now_ms`, which [`Self::allows`] allowed.
    pub fn record(&mut self, campaign: &CampaignId, cap: FrequencyCap, now_ms: i64) {
        let hash = campaign_hash(campaign);
        let leaves_ms = now_ms.saturating_add(cap.window_ms);
        // Rounded up: a view counts at least as long as its window.
        let leaves_at = u32::try_from((leaves_ms + 999).div_euclid(1_000)).unwrap_or(u32::MAX);
        let index = match self.entries.iter().position(|e| e.campaign == hash) {
            Some(index) => index,
            None if self.entries.len() < MAX_ENTRIES => {
                self.entries.push(Entry {
                    campaign: hash,
                    buckets: SmallVec::new(),
                });
                self.entries.len() - 1
            }
            None => return,
        };
        let buckets = &mut self.entries[index].buckets;
        buckets.retain(|b| counts(b.leaves_at, now_ms));
        match buckets.iter().position(|b| b.leaves_at >= leaves_at) {
            Some(at) if buckets[at].leaves_at == leaves_at => {
                buckets[at].views = buckets[at].views.saturating_add(1);
            }
            Some(at) => buckets.insert(
                at,
                Bucket {
                    leaves_at,
                    views: 1,
                },
            ),
            None => buckets.push(Bucket {
                leaves_at,
                views: 1,
            }),
        }
        if buckets.len() > MAX_BUCKETS {
            // The two that leave first become one that leaves with the later of them.
            let first = buckets.remove(0);
            buckets[0].views = buckets[0].views.saturating_add(first.views);
        }
    }

    /// Whether the state holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + self.entries.len() * (9 + 8 * MAX_BUCKETS));
        bytes.push(self.entries.len() as u8);
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.campaign.to_le_bytes());
            bytes.push(entry.buckets.len() as u8);
            for bucket in &entry.buckets {
                bytes.extend_from_slice(&bucket.leaves_at.to_le_bytes());
                bytes.extend_from_slice(&bucket.views.to_le_bytes());
            }
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = bytes.split_at_checked(n)?;
            *bytes = rest;
            Some(head)
        }
        fn u32_of(bytes: &mut &[u8]) -> Option<u32> {
            Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?))
        }
        let mut rest = bytes;
        let entries = usize::from(*take(&mut rest, 1)?.first()?);
        if entries > MAX_ENTRIES {
            return None;
        }
        let mut state = Self::default();
        for _ in 0..entries {
            let campaign = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
            let count = usize::from(*take(&mut rest, 1)?.first()?);
            if count == 0 || count > MAX_BUCKETS {
                return None;
            }
            let mut buckets = SmallVec::new();
            for _ in 0..count {
                let leaves_at = u32_of(&mut rest)?;
                let views = u32_of(&mut rest)?;
                buckets.push(Bucket { leaves_at, views });
            }
            state.entries.push(Entry { campaign, buckets });
        }
        rest.is_empty().then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    const NOW: i64 = 1_764_547_200_000;

    fn signer() -> Signer {
        Signer::from_setting(&SecretString::from(
            "k1:0123456789abcdef0123456789abcdef".to_owned(),
        ))
        .unwrap()
    }

    fn id(s: &str) -> CampaignId {
        CampaignId::parse(s).unwrap()
    }

    fn cap(max: u32, seconds: i64) -> FrequencyCap {
        FrequencyCap {
            max,
            window_ms: seconds * 1_000,
        }
    }

    /// Serves `campaign` at each of `times` (ms after NOW) when allowed, through a sealed
    /// state each time, as a browser does; answers how many views were served.
    fn serve_at(campaign: &CampaignId, cap: FrequencyCap, times: &[i64]) -> usize {
        let signer = signer();
        let mut sealed = String::new();
        let mut served = 0;
        for &t in times {
            let mut state = FrequencyState::open(&signer, &sealed, NOW + t);
            if state.allows(campaign, cap, NOW + t) {
                state.record(campaign, cap, NOW + t);
                served += 1;
            }
            sealed = state.seal(&signer);
        }
        served
    }

    #[test]
    fn a_cap_is_held_within_its_window_and_frees_a_view_as_each_leaves_it() {
        let campaign = id("3vision-visitez");
        let cap = cap(3, 3_600);
        let mut state = FrequencyState::default();
        for minute in 0..3 {
            assert!(state.allows(&campaign, cap, NOW + minute * 60_000));
            state.record(&campaign, cap, NOW + minute * 60_000);
        }
        assert!(!state.allows(&campaign, cap, NOW + 10 * 60_000));
        assert!(!state.allows(&campaign, cap, NOW + 3_600_000 - 1));
        // The first view leaves its window an hour after it was served (to the second).
        assert!(state.allows(&campaign, cap, NOW + 3_601_000));
        state.record(&campaign, cap, NOW + 3_601_000);
        assert!(!state.allows(&campaign, cap, NOW + 3_600_000 + 59_000));
        // Then the second, a minute later.
        assert!(state.allows(&campaign, cap, NOW + 3_600_000 + 61_000));
        // Other campaigns are counted apart.
        assert!(state.allows(&id("atelier-noel"), cap, NOW));
    }

    #[test]
    fn through_sealed_states_a_browser_sees_a_campaign_at_most_max_times_per_window() {
        let campaign = id("3vision-visitez");
        // A request every ten minutes for two days, a cap of 2 per day: 2 views a day.
        let times: Vec<i64> = (0..288).map(|i| i * 600_000).collect();
        assert_eq!(serve_at(&campaign, cap(2, 86_400), &times), 4);
        // Past MAX_BUCKETS views in a window, merged buckets keep the cap, never exceed it.
        let every_minute: Vec<i64> = (0..600).map(|i| i * 60_000).collect();
        let served = serve_at(&campaign, cap(10, 3_600), &every_minute);
        assert!(
            served <= 10 * 10,
            "at most 10 an hour over 10 hours: {served}"
        );
        assert!(
            served >= 10 * 5,
            "merging costs views, not whole windows: {served}"
        );
        // With max up to MAX_BUCKETS, the count is exact.
        assert_eq!(serve_at(&campaign, cap(4, 3_600), &every_minute), 4 * 10);
    }

    #[test]
    fn a_merged_bucket_counts_its_views_until_the_later_one_leaves() {
        let campaign = id("c");
        let cap = cap(100, 1_000);
        let mut state = FrequencyState::default();
        for i in 0..=MAX_BUCKETS as i64 {
            state.record(&campaign, cap, NOW + i * 10_000);
        }
        let buckets = &state.entries[0].buckets;
        assert_eq!(buckets.len(), MAX_BUCKETS);
        assert_eq!(buckets[0].views, 2);
        assert_eq!(
            i64::from(buckets[0].leaves_at),
            (NOW + 10_000 + 1_000_000) / 1_000
        );
        // Rounded up to the second: a view counts at least as long as its window.
        let mut state = FrequencyState::default();
        state.record(&campaign, cap, NOW + 1);
        assert_eq!(
            i64::from(state.entries[0].buckets[0].leaves_at),
            (NOW + 1_000_000) / 1_000 + 1
        );
    }

    #[test]
    fn a_full_state_serves_no_new_capped_campaign_rather_than_forget_views() {
        let cap = cap(1, 3_600);
        let mut state = FrequencyState::default();
        for n in 0..MAX_ENTRIES {
            let campaign = id(&format!("campaign-{n}"));
            assert!(state.allows(&campaign, cap, NOW));
            state.record(&campaign, cap, NOW);
        }
        assert!(!state.allows(&id("one-more"), cap, NOW));
        assert!(!state.allows(&id("campaign-0"), cap, NOW));
        let sealed = state.seal(&signer());
        assert!(sealed.len() <= MAX_STATE_CHARS);
        // Once their window has passed, the entries are gone and there is room again.
        let later = FrequencyState::open(&signer(), &sealed, NOW + 3_601_000);
        assert!(later.is_empty());
        assert!(later.allows(&id("one-more"), cap, NOW + 3_601_000));
    }

    #[test]
    fn a_state_reads_back_as_sealed_and_an_altered_or_foreign_one_as_empty() {
        let signer = signer();
        let mut state = FrequencyState::default();
        for n in 0..MAX_ENTRIES {
            for i in 0..=MAX_BUCKETS as i64 {
                state.record(&id(&format!("c-{n}")), cap(9, 60), NOW + i * 1_000);
            }
        }
        let sealed = state.seal(&signer);
        assert!(sealed.len() <= MAX_STATE_CHARS, "{}", sealed.len());
        assert_eq!(FrequencyState::open(&signer, &sealed, NOW), state);
        let mut altered = sealed.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(FrequencyState::open(&signer, &altered, NOW).is_empty());
        assert!(FrequencyState::open(&Signer::random(), &sealed, NOW).is_empty());
        assert!(FrequencyState::open(&signer, "garbage", NOW).is_empty());
        assert!(FrequencyState::open(&signer, &signer.seal(b"\x01short"), NOW).is_empty());
    }

    #[test]
    fn campaign_hashes_are_stable() {
        // FNV-1a of "a": the same on every instance and version.
        assert_eq!(campaign_hash(&id("a")), 0xaf63_dc4c_8601_ec8c);
    }
}
