//! Delivery controls that need state beyond the snapshot: lifetime and daily caps (leased
//! budgets), even pacing, click caps and per-viewer frequency caps.
//!
//! Caps count served decisions: a decision is the only event regie controls, so counting it
//! is what keeps delivery under the cap (impressions and clicks can only follow decisions).
//! Each instance leases blocks of a capped campaign's remaining budget from the store, serves
//! from them without a round trip, and leases again below a low-water mark. The store grants
//! at most what is left under the cap, and at most a quarter of it, so blocks shrink as the
//! budget runs out: served decisions never exceed the cap, whatever the number of instances.
//! Leased units an instance did not serve are given back at shutdown and at the day's end;
//! a crash loses at most the instance's last block (under-delivery, never overshoot).
//!
//! A decision that finds a budget low asks for that budget alone to be topped up: a large
//! inventory holds tens of thousands of capped campaigns, and walking them all each time one
//! runs low kept a core busy under load. Every budget is walked each second and at each new
//! inventory version (first leases, day changes, spent budgets asked about again), and the
//! budgets decisions wait for go between two of the walk's round trips. Click totals are read
//! more often, for the click-capped campaigns only.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use futures_util::future::join_all;
use hashbrown::HashMap;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::catalog::Catalog;
use crate::clock::{ReportingZone, SharedClock};
use crate::inventory::{Campaign, CampaignId, Pacing};
use crate::snapshot::{CompiledCampaign, Snapshot};
use crate::store::{Backend, FrequencyRelease, LeaseRequest, Store, StoreError};

/// How often every budget is walked: past days' units given back, low budgets topped up,
/// spent ones asked about again. Decisions ask for the budgets they need at once, so this is
/// a backstop, and walking tens of thousands of budgets costs an idle instance CPU.
const WALK_EVERY: Duration = Duration::from_secs(1);
/// How often the click totals of click-capped campaigns are read.
const CLICKS_EVERY: Duration = Duration::from_millis(100);
/// How often a campaign whose budget was found spent is asked about again (its daily cap may
/// reset, or an operator may raise the cap).
const SPENT_RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Budgets a walk asks the store about at once. Their round trips go out together (one write
/// on the store's multiplexed connection, one read for Redis) rather than one after the
/// other: a new inventory's tens of thousands of capped budgets lease in a fraction of the
/// time. Small enough that the budgets decisions wait for, which go between two batches, do
/// not wait long.
const WALK_BATCH: usize = 32;

/// [`Budget::day`] before the first lease.
const NO_DAY: i32 = i32::MIN;

/// What [`Budgets::top_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopUp {
    /// Nothing: the budget holds enough, or is spent and not due to be asked about again.
    Idle,
    /// It asked the store for a lease, which answered.
    Leased,
    /// The store did not answer: the rest waits for the next walk.
    Failed,
}

/// One capped campaign's local share of its budget.
#[derive(Debug)]
pub struct Budget {
    total_cap: Option<u64>,
    daily_cap: Option<u64>,
    click_cap: Option<u64>,
    /// Units leased and not yet served, for `day`.
    tokens: AtomicI64,
    /// The day `tokens` are for, as days from the common era; [`NO_DAY`] before the first
    /// lease. An atomic, not a lock: every decision that considers the campaign reads it.
    day: AtomicI32,
    /// What every instance had leased at the last lease: over the campaign's life, and today.
    total_leased: AtomicU64,
    day_leased: AtomicU64,
    /// Set when a lease came back empty; cleared by the periodic re-check.
    spent: AtomicBool,
    spent_since: Mutex<Option<std::time::Instant>>,
    clicks_reached: AtomicBool,
    /// Set while the budget waits in [`Budgets::wanted`], so that it is asked for once, not
    /// by every decision that finds it low.
    queued: AtomicBool,
}

impl Budget {
    fn new(campaign: &Campaign) -> Self {
        Self {
            total_cap: campaign.caps.total_impressions,
            daily_cap: campaign.caps.daily_impressions,
            click_cap: campaign.caps.total_clicks,
            tokens: AtomicI64::new(0),
            day: AtomicI32::new(NO_DAY),
            total_leased: AtomicU64::new(0),
            day_leased: AtomicU64::new(0),
            spent: AtomicBool::new(false),
            spent_since: Mutex::new(None),
            clicks_reached: AtomicBool::new(false),
            queued: AtomicBool::new(false),
        }
    }

    fn same_caps(&self, campaign: &Campaign) -> bool {
        self.total_cap == campaign.caps.total_impressions
            && self.daily_cap == campaign.caps.daily_impressions
            && self.click_cap == campaign.caps.total_clicks
    }

    fn leases(&self) -> bool {
        self.total_cap.is_some() || self.daily_cap.is_some()
    }

    fn day(&self) -> Option<NaiveDate> {
        match self.day.load(Ordering::Acquire) {
            NO_DAY => None,
            days => NaiveDate::from_num_days_from_ce_opt(days),
        }
    }

    fn set_day(&self, day: NaiveDate) {
        self.day.store(day.num_days_from_ce(), Ordering::Release);
    }

    /// Whether the units held are for `today`: days compared as numbers, since decisions ask
    /// for every capped candidate and the refill walk for every budget.
    fn is_for(&self, today: NaiveDate) -> bool {
        self.day.load(Ordering::Acquire) == today.num_days_from_ce()
    }

    fn available(&self, today: NaiveDate) -> bool {
        !self.leases() || (self.is_for(today) && self.tokens.load(Ordering::Acquire) > 0)
    }

    /// Takes one unit; false when none is left (another request took the last one).
    fn take(&self, today: NaiveDate) -> bool {
        if !self.leases() {
            return true;
        }
        if !self.is_for(today) {
            return false;
        }
        if self.tokens.fetch_sub(1, Ordering::AcqRel) > 0 {
            true
        } else {
            self.tokens.fetch_add(1, Ordering::AcqRel);
            false
        }
    }

    /// Whether the budget was found spent less than [`SPENT_RECHECK_EVERY`] ago, and is not
    /// asked about again yet.
    fn spent_recently(&self) -> bool {
        self.spent.load(Ordering::Acquire)
            && self
                .spent_since
                .lock()
                .is_some_and(|t| t.elapsed() < SPENT_RECHECK_EVERY)
    }

    /// Decisions served by every instance as far as this one knows: what was leased minus what
    /// this instance still holds (other instances' unspent units count as served, which errs
    /// on the side of pacing slower).
    fn delivered(&self, daily: bool) -> u64 {
        let leased = if daily {
            self.day_leased.load(Ordering::Acquire)
        } else {
            self.total_leased.load(Ordering::Acquire)
        };
        leased.saturating_sub(self.tokens.load(Ordering::Acquire).max(0) as u64)
    }
}

/// The budgets of every capped campaign of the served inventory.
pub struct Budgets {
    /// Looked up for every capped candidate of every decision: hashbrown's default hasher
    /// (the keys are the inventory's, not a client's) costs a fraction of SipHash's.
    by_campaign: ArcSwap<HashMap<CampaignId, Arc<Budget>>>,
    /// The budgets with a click cap, whose totals are read every [`CLICKS_EVERY`].
    click_capped: ArcSwap<Vec<(CampaignId, Arc<Budget>)>>,
    store: Store,
    clock: SharedClock,
    zone: ReportingZone,
    block: u64,
    /// Budgets that decisions found low, for the refill task to top up.
    wanted: Mutex<Vec<CampaignId>>,
    /// Wakes the refill task when a budget is wanted.
    wake: Notify,
    /// Set while leases fail, so that an outage is logged when it begins and when it ends,
    /// not once per budget and walk.
    leases_failing: AtomicBool,
    /// The inventory version the budgets were last matched with ([`NOT_SYNCED`] before the
    /// first): they are matched again only when it changes, not on every refill, since that
    /// walks every campaign of the inventory.
    synced_version: AtomicU64,
}

/// [`Budgets::synced_version`] before any inventory.
const NOT_SYNCED: u64 = u64::MAX;

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("campaigns", &self.by_campaign.load().len())
            .finish_non_exhaustive()
    }
}

impl Budgets {
    /// Budgets leased from `store` in blocks of at most `block` units.
    pub fn new(store: Store, clock: SharedClock, zone: ReportingZone, block: u64) -> Self {
        Self {
            by_campaign: ArcSwap::from_pointee(HashMap::new()),
            click_capped: ArcSwap::from_pointee(Vec::new()),
            store,
            clock,
            zone,
            block: block.max(1),
            wanted: Mutex::new(Vec::new()),
            wake: Notify::new(),
            leases_failing: AtomicBool::new(false),
            synced_version: AtomicU64::new(NOT_SYNCED),
        }
    }

    /// The budget of a campaign, if it is capped.
    pub fn get(&self, campaign: &CampaignId) -> Option<Arc<Budget>> {
        self.by_campaign.load().get(campaign).cloned()
    }

    /// The reporting day now.
    pub fn today(&self) -> NaiveDate {
        self.zone.day(self.clock.now())
    }

    /// Follows the inventory: a budget per capped campaign, kept across versions while its
    /// caps do not change (so its lease is not lost).
    fn sync_with(&self, campaigns: &[CompiledCampaign]) -> Vec<(CampaignId, Arc<Budget>)> {
        let current = self.by_campaign.load();
        let mut dropped: Vec<(CampaignId, Arc<Budget>)> = Vec::new();
        let mut next = HashMap::new();
        for compiled in campaigns {
            let campaign = &compiled.campaign;
            if !campaign.caps.any() {
                continue;
            }
            let budget = match current.get(&campaign.id) {
                Some(b) if b.same_caps(campaign) => b.clone(),
                Some(old) => {
                    dropped.push((campaign.id.clone(), old.clone()));
                    Arc::new(Budget::new(campaign))
                }
                None => Arc::new(Budget::new(campaign)),
            };
            next.insert(campaign.id.clone(), budget);
        }
        for (id, old) in current.iter() {
            if !next.contains_key(id) {
                dropped.push((id.clone(), old.clone()));
            }
        }
        let click_capped = next
            .iter()
            .filter(|(_, budget)| budget.click_cap.is_some())
            .map(|(id, budget)| (id.clone(), budget.clone()))
            .collect();
        self.by_campaign.store(Arc::new(next));
        self.click_capped.store(Arc::new(click_capped));
        dropped
    }

    /// Tops up every budget below its low-water mark and releases the units of a past day.
    pub async fn refill(&self, catalog: &Catalog) {
        if let Some(snapshot) = catalog.snapshot() {
            self.refill_for(&snapshot).await;
        }
    }

    /// [`Self::refill`] for the budgets of `snapshot`'s campaigns.
    async fn refill_for(&self, snapshot: &Snapshot) {
        if self.synced_version.swap(snapshot.version, Ordering::AcqRel) != snapshot.version {
            // A campaign removed, or whose caps changed, gives its units back.
            let dropped = self.sync_with(&snapshot.campaigns);
            let held: Vec<_> = dropped
                .iter()
                .filter_map(|(id, old)| Some((id, old, old.day()?)))
                .collect();
            for batch in held.chunks(WALK_BATCH) {
                join_all(
                    batch
                        .iter()
                        .map(|&(id, old, day)| self.give_back(old, id, day)),
                )
                .await;
            }
        }
        // Budgets put back by a failed lease are tried again first.
        self.refill_wanted().await;
        let today = self.today();
        let budgets = self.by_campaign.load_full();
        // Only the budgets with a round trip to make: most of a large inventory's hold enough.
        let mut due = budgets.iter().filter(|(_, budget)| self.due(budget, today));
        loop {
            let batch: Vec<_> = due.by_ref().take(WALK_BATCH).collect();
            if batch.is_empty() {
                return;
            }
            let done = join_all(
                batch
                    .into_iter()
                    .map(|(id, budget)| self.top_up(id, budget, today)),
            )
            .await;
            // The store is away: the next walk tries again, not every budget now.
            if done.contains(&TopUp::Failed) {
                return;
            }
            // A long walk (a new inventory's budgets, a new day's) must not hold back the
            // budgets decisions are waiting for: they go between two of its batches.
            self.refill_wanted().await;
        }
    }

    /// Reads the click totals of click-capped campaigns: a cap reached holds them back.
    async fn read_clicks(&self) {
        let click_capped = self.click_capped.load_full();
        if click_capped.is_empty() {
            return;
        }
        let ids: Vec<CampaignId> = click_capped.iter().map(|(id, _)| id.clone()).collect();
        if let Ok(totals) = self.store.totals(&ids).await {
            for ((_, budget), counts) in click_capped.iter().zip(totals) {
                let cap = budget.click_cap.unwrap_or(u64::MAX);
                budget
                    .clicks_reached
                    .store(counts.clicks >= cap, Ordering::Release);
            }
        }
    }

    /// Tops up the budgets that decisions found low since the last call. When the store does
    /// not answer, they stay wanted (decisions do not ask again) until the next walk.
    pub async fn refill_wanted(&self) {
        let wanted = std::mem::take(&mut *self.wanted.lock());
        if wanted.is_empty() {
            return;
        }
        let today = self.today();
        let budgets = self.by_campaign.load_full();
        for (i, ids) in wanted.chunks(WALK_BATCH).enumerate() {
            // A campaign the inventory dropped meanwhile has nothing to top up.
            let batch: Vec<_> = ids
                .iter()
                .filter_map(|id| Some((id, budgets.get(id)?)))
                .collect();
            // Cleared first: a decision finding one low again during the lease asks again.
            for (_, budget) in &batch {
                budget.queued.store(false, Ordering::Release);
            }
            let done = join_all(
                batch
                    .iter()
                    .map(|&(id, budget)| self.top_up(id, budget, today)),
            )
            .await;
            if done.contains(&TopUp::Failed) {
                let mut queue = self.wanted.lock();
                for ((id, budget), _) in batch
                    .iter()
                    .zip(&done)
                    .filter(|(_, d)| **d == TopUp::Failed)
                {
                    // Unless a decision asked for it again meanwhile (and queued it itself): a
                    // budget is in the queue once at most, however long the outage.
                    if !budget.queued.swap(true, Ordering::AcqRel) {
                        queue.push((*id).clone());
                    }
                }
                queue.extend_from_slice(wanted.get((i + 1) * WALK_BATCH..).unwrap_or_default());
                return;
            }
        }
    }

    /// Asks the refill task to top up a budget found low, once until it has.
    fn want(&self, id: &CampaignId, budget: &Budget) {
        // A load before the swap: decisions that find it queued already write nothing to the
        // cache line every worker reads.
        if budget.queued.load(Ordering::Acquire) || budget.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        self.wanted.lock().push(id.clone());
        self.wake.notify_one();
    }

    /// Releases a past day's units, then leases a block when the budget is below its
    /// low-water mark (a spent budget only once per [`SPENT_RECHECK_EVERY`]).
    async fn top_up(&self, id: &CampaignId, budget: &Budget, today: NaiveDate) -> TopUp {
        if !budget.leases() {
            return TopUp::Idle;
        }
        if !budget.is_for(today) {
            if let Some(past) = budget.day() {
                self.give_back(budget, id, past).await;
            }
            budget.set_day(today);
            budget.tokens.store(0, Ordering::Release);
            budget.spent.store(false, Ordering::Release);
        }
        let tokens = budget.tokens.load(Ordering::Acquire);
        if tokens >= self.low_water() || budget.spent_recently() {
            return TopUp::Idle;
        }
        let request = LeaseRequest {
            campaign: id,
            day: today,
            total_cap: budget.total_cap,
            daily_cap: budget.daily_cap,
            wanted: self.block - tokens.max(0) as u64,
        };
        match self.store.lease(&request).await {
            Ok(lease) => {
                budget
                    .tokens
                    .fetch_add(lease.granted as i64, Ordering::AcqRel);
                budget
                    .total_leased
                    .store(lease.total_leased, Ordering::Release);
                budget.day_leased.store(lease.day_leased, Ordering::Release);
                let spent = lease.granted == 0;
                budget.spent.store(spent, Ordering::Release);
                *budget.spent_since.lock() = spent.then(std::time::Instant::now);
                if self.leases_failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("budgets lease again");
                }
                TopUp::Leased
            }
            // The campaign serves what it holds and stops: no lease, no delivery.
            Err(e) => {
                if !self.leases_failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(campaign = %id, error = %e, "cannot lease budgets; capped campaigns serve what they hold until the store answers");
                }
                TopUp::Failed
            }
        }
    }

    /// Whether [`Self::top_up`] has a round trip to make for the budget: a past day's units to
    /// give back, or a block to lease.
    fn due(&self, budget: &Budget, today: NaiveDate) -> bool {
        budget.leases()
            && (!budget.is_for(today)
                || (budget.tokens.load(Ordering::Acquire) < self.low_water()
                    && !budget.spent_recently()))
    }

    /// Below this many units, a budget is topped up.
    fn low_water(&self) -> i64 {
        (self.block / 4).max(1) as i64
    }

    /// Gives back a budget's unserved units of `day`.
    async fn give_back(&self, budget: &Budget, id: &CampaignId, day: NaiveDate) {
        if let Err((units, e)) = self.try_give_back(budget, id, day).await {
            tracing::warn!(campaign = %id, units, error = %e, "cannot give back leased units");
        }
    }

    /// Gives back a budget's unserved units of `day`; on failure, the units that stay leased
    /// and the store's error.
    async fn try_give_back(
        &self,
        budget: &Budget,
        id: &CampaignId,
        day: NaiveDate,
    ) -> Result<(), (u64, StoreError)> {
        let units = budget.tokens.swap(0, Ordering::AcqRel).max(0) as u64;
        if units == 0 {
            return Ok(());
        }
        self.store
            .release(id, day, units)
            .await
            .map_err(|e| (units, e))
    }

    /// Gives back every unserved unit (shutdown), in batches as the walk leases. Stops at the
    /// first batch with a failure: with the store away, trying each of tens of thousands of
    /// budgets would spend the shutdown deadline on failed round trips and log a line for
    /// each. What stays leased is logged in one line.
    pub async fn release_all(&self) {
        let budgets = self.by_campaign.load_full();
        let held: Vec<_> = budgets
            .iter()
            .filter_map(|(id, budget)| Some((id, budget, budget.day()?)))
            .collect();
        for (i, batch) in held.chunks(WALK_BATCH).enumerate() {
            let done = join_all(
                batch
                    .iter()
                    .map(|&(id, budget, day)| self.try_give_back(budget, id, day)),
            )
            .await;
            let mut failed = done.into_iter().filter_map(Result::err);
            if let Some((units, e)) = failed.next() {
                let failed = failed.fold((1, units), |(campaigns, units), (more, _)| {
                    (campaigns + 1, units + more)
                });
                let rest = held.get((i + 1) * WALK_BATCH..).unwrap_or_default();
                let (campaigns, rest) =
                    rest.iter().fold(failed, |(campaigns, units), (_, b, _)| {
                        let left = b.tokens.load(Ordering::Acquire).max(0) as u64;
                        (campaigns + usize::from(left > 0), units + left)
                    });
                tracing::warn!(
                    campaigns,
                    units = rest,
                    error = %e,
                    "cannot give back leased units; they stay leased, and these campaigns may under-deliver by as much"
                );
                return;
            }
        }
    }

    /// Tops up budgets until `shutdown`, then gives back what is unserved: the budgets
    /// decisions ask for as soon as they do, every budget each [`WALK_EVERY`] and at each
    /// new inventory version, so that new caps lease without waiting; click totals each
    /// [`CLICKS_EVERY`].
    pub async fn run(self: Arc<Self>, catalog: Arc<Catalog>, mut shutdown: watch::Receiver<bool>) {
        let mut versions = catalog.versions();
        // Intervals, not sleeps made anew each turn: wanted budgets come faster than either
        // period under load, and the walk and the click totals must still come round.
        let mut walk = tokio::time::interval(WALK_EVERY);
        walk.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut clicks = tokio::time::interval(CLICKS_EVERY);
        clicks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = walk.tick() => self.refill(&catalog).await,
                _ = clicks.tick() => self.read_clicks().await,
                _ = self.wake.notified() => self.refill_wanted().await,
                Ok(()) = versions.changed() => self.refill(&catalog).await,
                _ = shutdown.changed() => break,
            }
        }
        self.release_all().await;
    }
}

/// Where a campaign stands against its even-delivery line, as a fraction of its goal.
fn ahead_of_line(
    campaign: &Campaign,
    budget: &Budget,
    now: DateTime<Utc>,
    zone: ReportingZone,
) -> bool {
    if campaign.pacing != Pacing::Even {
        return false;
    }
    // Pace within the day when there is a daily cap, else over the flight.
    let (goal, delivered, elapsed) = if let Some(daily) = budget.daily_cap {
        let seconds = zone.seconds_into_day(now) as f64;
        (daily, budget.delivered(true), (seconds / 86_400.0).min(1.0))
    } else if let (Some(total), Some(start), Some(end)) =
        (budget.total_cap, campaign.start, campaign.end)
    {
        let span = (end - start).num_seconds().max(1) as f64;
        let done = (now - start).num_seconds().max(0) as f64;
        (total, budget.delivered(false), (done / span).min(1.0))
    } else {
        // No goal to pace against (no daily cap, or no flight end): delivered as asap.
        return false;
    };
    // A little slack so that the first decisions of the period are not held back.
    let slack = (goal as f64 / 100.0).max(1.0);
    delivered as f64 >= goal as f64 * elapsed + slack
}

/// Why a campaign's budget holds it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A lifetime, daily or click cap is reached.
    Capped,
    /// It is ahead of its even-delivery line.
    Paced,
}

impl Budgets {
    /// Whether the campaign's budget and pacing let it be served at `now`, in the reporting
    /// day `today`.
    pub fn check(
        &self,
        campaign: &Campaign,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<(), Held> {
        // Without a cap there is no budget to look up: in an inventory of 100 000 campaigns
        // the lookup (hashing the id, comparing it, a cold entry) showed in the profile of
        // every draw.
        if !campaign.caps.any() {
            return Ok(());
        }
        // The map's guard, not a clone of the budget's `Arc`: no reference count to bump on a
        // cache line every worker shares.
        let budgets = self.by_campaign.load();
        let Some(budget) = budgets.get(&campaign.id) else {
            return Ok(());
        };
        if budget.clicks_reached.load(Ordering::Acquire) || !budget.available(today) {
            if budget.leases() && !budget.spent.load(Ordering::Acquire) {
                // Out of units but not spent: ask for more now rather than at the next walk.
                self.want(&campaign.id, budget);
            }
            return Err(Held::Capped);
        }
        if ahead_of_line(campaign, budget, now, self.zone) {
            return Err(Held::Paced);
        }
        Ok(())
    }

    /// Takes one unit of the chosen campaign's budget for `today`; false when another request
    /// took the last one first (the caller chooses again without it). A campaign without caps
    /// has no budget and is always let through, without a lookup (see [`Self::check`]).
    pub fn take(&self, campaign: &Campaign, today: NaiveDate) -> bool {
        if !campaign.caps.any() {
            return true;
        }
        let campaign = &campaign.id;
        match self.by_campaign.load().get(campaign) {
            Some(budget) => {
                let taken = budget.take(today);
                // A click cap alone leases nothing: nothing to ask for.
                if budget.leases() && budget.tokens.load(Ordering::Acquire) < self.low_water() {
                    self.want(campaign, budget);
                }
                taken
            }
            None => true,
        }
    }
}

/// Cancels, in the background and many at once, frequency reservations that were not served
/// after all: another request took the campaign's last leased unit in between.
#[derive(Debug, Clone)]
pub struct Releaser {
    queue: tokio::sync::mpsc::Sender<FrequencyRelease>,
}

/// Releases waiting for the background task; past this, a release is dropped and its
/// reservation counts as a view until its window ends (erring on the advertiser's side).
const RELEASE_QUEUE: usize = 65_536;
/// Most releases sent in one round trip.
const RELEASE_BATCH: usize = 1_024;

impl Releaser {
    /// Starts the background task, which drains the queue until `shutdown`.
    pub fn start(
        store: Store,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, mut pending) = tokio::sync::mpsc::channel::<FrequencyRelease>(RELEASE_QUEUE);
        let task = tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    next = pending.recv() => match next {
                        Some(release) => release,
                        None => return,
                    },
                    _ = shutdown.changed() => return,
                };
                let mut batch = vec![first];
                while batch.len() < RELEASE_BATCH {
                    match pending.try_recv() {
                        Ok(release) => batch.push(release),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.frequency_release(&batch).await {
                    tracing::warn!(error = %e, releases = batch.len(), "cannot cancel frequency reservations");
                }
            }
        });
        (Self { queue }, task)
    }

    /// Queues a release.
    pub fn release(&self, release: FrequencyRelease) {
        if self.queue.try_send(release).is_err() {
            tracing::debug!("frequency release queue full; the reservation stands");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::inventory::parse_inventory;
    use crate::store::MemoryStore;
    use chrono::TimeZone;
    use serde_json::json;

    fn capped_inventory() -> Snapshot {
        let campaign = |id: &str| {
            json!({ "id": id, "advertiser_id": "a", "slots": ["banner"],
                    "caps": { "total_impressions": 1000 },
                    "creatives": [{ "id": "c", "format": "text", "title": id,
                                    "landing_url": "https://a.example/" }] })
        };
        let doc = json!({
            "slots": [{ "name": "banner" }],
            "advertisers": [{ "id": "a", "name": "A" }],
            "campaigns": [campaign("low"), campaign("full"), {
                "id": "clicks", "advertiser_id": "a", "slots": ["banner"],
                "caps": { "total_clicks": 10 },
                "creatives": [{ "id": "c", "format": "text", "title": "clicks",
                                "landing_url": "https://a.example/" }] }],
        });
        Snapshot::compile(
            1,
            parse_inventory(doc.to_string().as_bytes())
                .unwrap()
                .inventory,
        )
    }

    fn budgets(block: u64) -> Budgets {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap());
        Budgets::new(
            Store::Memory(Arc::new(MemoryStore::new())),
            Arc::new(clock),
            ReportingZone(chrono_tz::UTC),
            block,
        )
    }

    fn tokens(budgets: &Budgets, id: &CampaignId) -> i64 {
        budgets.get(id).unwrap().tokens.load(Ordering::Acquire)
    }

    /// `n` campaigns, each capped at 1 000 decisions over its life.
    fn many_capped(n: usize) -> Snapshot {
        let campaigns: Vec<_> = (0..n)
            .map(|i| {
                json!({ "id": format!("c{i}"), "advertiser_id": "a", "slots": ["banner"],
                        "caps": { "total_impressions": 1000 },
                        "creatives": [{ "id": "c", "format": "text", "title": "t",
                                        "landing_url": "https://a.example/" }] })
            })
            .collect();
        let doc = json!({
            "slots": [{ "name": "banner" }],
            "advertisers": [{ "id": "a", "name": "A" }],
            "campaigns": campaigns,
        });
        Snapshot::compile(
            1,
            parse_inventory(doc.to_string().as_bytes())
                .unwrap()
                .inventory,
        )
    }

    #[tokio::test]
    async fn one_walk_leases_every_budget_and_a_shutdown_gives_every_unit_back() {
        let budgets = budgets(8);
        let n = 3 * WALK_BATCH + 5;
        let snapshot = many_capped(n);
        budgets.refill_for(&snapshot).await;
        let ids: Vec<_> = (0..n)
            .map(|i| CampaignId::parse(&format!("c{i}")).unwrap())
            .collect();
        assert!(
            ids.iter().all(|id| tokens(&budgets, id) == 8),
            "every batch leased"
        );

        budgets.release_all().await;
        assert!(ids.iter().all(|id| tokens(&budgets, id) == 0));
        // What the store counts as leased is back to nothing: a new lease is the only one.
        for id in &ids {
            let request = LeaseRequest {
                campaign: id,
                day: budgets.today(),
                total_cap: Some(1000),
                daily_cap: None,
                wanted: 1,
            };
            assert_eq!(
                budgets.store.lease(&request).await.unwrap().total_leased,
                1,
                "{id}"
            );
        }
    }

    #[tokio::test]
    async fn a_budget_found_low_is_asked_for_once_and_topped_up() {
        let budgets = budgets(8);
        let snapshot = capped_inventory();
        budgets.refill_for(&snapshot).await;
        let low = CampaignId::parse("low").unwrap();
        let full = CampaignId::parse("full").unwrap();
        let today = budgets.today();
        assert_eq!((tokens(&budgets, &low), tokens(&budgets, &full)), (8, 8));

        // Below the low-water mark (2 of 8) after the seventh, dry after the eighth; every
        // later decision that considers it finds it out of units.
        let campaign = &snapshot.campaigns[0].campaign;
        assert_eq!(campaign.id, low);
        for _ in 0..8 {
            assert!(budgets.take(campaign, today));
        }
        assert!(!budgets.take(campaign, today));
        for _ in 0..100 {
            assert_eq!(
                budgets.check(campaign, today, budgets.clock.now()),
                Err(Held::Capped)
            );
        }
        assert_eq!(
            *budgets.wanted.lock(),
            std::slice::from_ref(&low),
            "asked for once"
        );

        budgets.refill_wanted().await;
        assert_eq!((tokens(&budgets, &low), tokens(&budgets, &full)), (8, 8));
        assert!(budgets.wanted.lock().is_empty());
        assert_eq!(budgets.check(campaign, today, budgets.clock.now()), Ok(()));

        // A click cap alone leases nothing, so serving it asks for nothing.
        let clicks = &snapshot.campaigns[2].campaign;
        assert_eq!(clicks.id.as_str(), "clicks");
        for _ in 0..20 {
            assert!(budgets.take(clicks, today));
        }
        assert!(budgets.wanted.lock().is_empty());

        // Topped up, it may be asked for again.
        for _ in 0..7 {
            assert!(budgets.take(campaign, today));
        }
        assert_eq!(*budgets.wanted.lock(), [low]);
    }
}
