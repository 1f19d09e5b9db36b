//! Store parity: the same cases, called through [`Backend`], against the embedded store and a
//! real redis-server. Every answer is checked against the value the operation's contract
//! gives, so both stores are held to the same behaviour.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use regie::inventory::{AdvertiserId, CampaignId, SlotName};
use regie::ivt::Reason;
use regie::metrics::Metrics;
use regie::store::{
    Backend, Batch, Counted, Durability, Event, FrequencyCap, FrequencyItem, FrequencyRelease,
    Lease, LeaseRequest, MarkLifetimes, MemoryStore, PutOutcome, RedisStore, RedisTarget,
    ServedCount, Store,
};
use regie::tracking::EventKind;
use ulid::Ulid;

use crate::cluster::RedisCluster;
use crate::helpers::RedisServer;

/// Runs a parity case once on each store: embedded, one Redis, and a Redis Cluster (shared by
/// the cases, each under its own prefix).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_the_embedded_store() {
                    super::$name(&super::memory()).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_redis() {
                    let redis = crate::helpers::RedisServer::start();
                    super::$name(&super::redis(&redis)).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_a_redis_cluster() {
                    let cluster = crate::cluster::RedisCluster::shared();
                    super::$name(&super::cluster(cluster, stringify!($name))).await
                }
            }
        )*
    };
}

on_both_backends!(
    inventory_writes_are_versioned_and_never_go_backwards,
    a_batch_is_counted_once_and_an_event_once_per_decision_and_kind,
    invalid_traffic_is_counted_apart_by_reason_and_a_click_needs_a_valid_impression,
    an_advertiser_has_one_api_key_at_a_time,
    a_revoked_key_finds_no_advertiser,
    nothing_asked_is_nothing_answered,
    concurrent_key_rotations_leave_exactly_one_working_key,
    the_tracking_secret_is_the_first_callers_for_every_caller,
    leases_grant_a_quarter_of_what_is_left_and_never_pass_the_caps,
    the_frequency_walk_serves_each_slot_its_first_campaign_under_its_cap,
    frequency_reservations_can_be_checked_and_cancelled,
    a_refused_view_leaves_nothing_behind_and_the_next_candidate_is_served,
    a_viewer_at_several_caps_is_served_the_first_campaign_left,
    slot_totals_add_up_every_day_s_counted_events_by_slot,
);

fn memory() -> Store {
    Store::Memory(Arc::new(MemoryStore::new()))
}

fn redis(server: &RedisServer) -> Store {
    let timeouts = crate::helpers::store_timeouts();
    Store::Redis(Arc::new(
        RedisStore::new(&server.url(), "regie", timeouts, Metrics::new()).unwrap(),
    ))
}

fn cluster(cluster: &RedisCluster, prefix: &str) -> Store {
    let timeouts = crate::helpers::store_timeouts();
    let durability = Durability {
        replicas: 1,
        timeout: Duration::from_secs(1),
    };
    let seeds = cluster.seeds().split(',').map(str::to_owned).collect();
    Store::Redis(Arc::new(
        RedisStore::connect(
            &RedisTarget::Cluster(seeds),
            prefix,
            timeouts,
            durability,
            Metrics::new(),
        )
        .unwrap(),
    ))
}

fn id(raw: &str) -> CampaignId {
    CampaignId::parse(raw).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

async fn inventory_writes_are_versioned_and_never_go_backwards(store: &Store) {
    assert_eq!(store.load_inventory().await.unwrap(), None);

    let first = store.put_inventory("{\"v\":1}", None, 0).await.unwrap();
    let stale = store.put_inventory("{\"v\":2}", Some(0), 0).await.unwrap();
    let second = store.put_inventory("{\"v\":2}", Some(1), 0).await.unwrap();
    let above_floor = store.put_inventory("{\"v\":3}", None, 10).await.unwrap();

    assert_eq!(first, PutOutcome::Written(1));
    assert_eq!(stale, PutOutcome::Conflict { current: 1 });
    assert_eq!(second, PutOutcome::Written(2));
    assert_eq!(above_floor, PutOutcome::Written(11));
    assert_eq!(store.inventory_version().await.unwrap(), Some(11));
    assert!(!store.restore_inventory("{\"old\":1}", 5).await.unwrap());
    assert!(store.restore_inventory("{\"new\":1}", 20).await.unwrap());
    let stored = store.load_inventory().await.unwrap().unwrap();
    assert_eq!((stored.version, stored.json.as_str()), (20, "{\"new\":1}"));
}

async fn a_batch_is_counted_once_and_an_event_once_per_decision_and_kind(store: &Store) {
    let campaign = id("c1");
    let slot = SlotName::parse("Publicité 2").unwrap();
    let decision = Ulid::new();
    let event = |kind| Event {
        kind,
        decision_id: decision,
        campaign: campaign.clone(),
        slot: slot.clone(),
        day: day(30),
        invalid: None,
    };
    let batch = |events: Vec<Event>| Batch {
        id: Ulid::new(),
        served: vec![ServedCount {
            campaign: campaign.clone(),
            slot: slot.clone(),
            day: day(30),
            count: 3,
            invalid: None,
        }],
        events,
        mark_ttl: MarkLifetimes::uniform(3_600),
        now_secs: 0,
    };
    let first = batch(vec![event(EventKind::Impression), event(EventKind::Click)]);

    let applied = store.flush(&first).await.unwrap();
    let retried = store.flush(&first).await.unwrap();
    let again = store
        .flush(&batch(vec![
            event(EventKind::Impression),
            event(EventKind::Viewable),
        ]))
        .await
        .unwrap();

    assert_eq!(applied.counted, [Counted::Valid, Counted::Valid]);
    assert!(!applied.already_applied);
    assert!(retried.already_applied);
    assert_eq!(retried.counted, [Counted::Duplicate, Counted::Duplicate]);
    assert_eq!(
        again.counted,
        [Counted::Duplicate, Counted::Valid],
        "the impression is a duplicate"
    );
    let totals = store.totals(&[campaign.clone(), id("none")]).await.unwrap();
    assert_eq!(
        (totals[0].served, totals[0].impressions, totals[0].viewable),
        (6, 1, 1)
    );
    assert_eq!(totals[0].clicks, 1);
    assert_eq!(totals[1], Default::default());
    let daily = store
        .daily_stats(&campaign, &[day(30), day(29)])
        .await
        .unwrap();
    assert_eq!(daily[0].len(), 1);
    assert_eq!(daily[0][0].0, "Publicité 2");
    assert_eq!(daily[0][0].1, totals[0]);
    assert!(daily[1].is_empty());
    // By slot over the campaign's life: tracking events only, not served decisions.
    let by_slot = store
        .slot_totals(&[campaign.clone(), id("none")])
        .await
        .unwrap();
    assert_eq!(by_slot[0].len(), 1);
    assert_eq!(by_slot[0][0].0, "Publicité 2");
    let events = by_slot[0][0].1;
    assert_eq!(
        (
            events.served,
            events.impressions,
            events.viewable,
            events.clicks
        ),
        (0, 1, 1, 1)
    );
    assert!(by_slot[1].is_empty());
}

async fn slot_totals_add_up_every_day_s_counted_events_by_slot(store: &Store) {
    let campaign = id("c1");
    let event = |kind, slot: &str, d: u32| Event {
        kind,
        decision_id: Ulid::new(),
        campaign: campaign.clone(),
        slot: SlotName::parse(slot).unwrap(),
        day: day(d),
        invalid: None,
    };
    let impression = event(EventKind::Impression, "Publicité 2", 29);
    let batch = |events: Vec<Event>| Batch {
        id: Ulid::new(),
        served: vec![ServedCount {
            campaign: campaign.clone(),
            slot: SlotName::parse("Publicité 2").unwrap(),
            day: day(30),
            count: 5,
            invalid: None,
        }],
        events,
        mark_ttl: MarkLifetimes::uniform(3_600),
        now_secs: 0,
    };

    store
        .flush(&batch(vec![
            impression.clone(),
            // The impression's click: a click without one would count apart, as invalid.
            Event {
                kind: EventKind::Click,
                ..impression.clone()
            },
            event(EventKind::Impression, "Publicité 2", 30),
            event(EventKind::Impression, "banner, haut", 30),
        ]))
        .await
        .unwrap();
    // A duplicate counts nowhere, the lifetime by slot included.
    store.flush(&batch(vec![impression])).await.unwrap();

    let mut totals = store
        .slot_totals(&[campaign.clone(), id("none")])
        .await
        .unwrap();
    totals[0].sort_by(|a, b| a.0.cmp(&b.0));
    let summary: Vec<(&str, u64, u64, u64)> = totals[0]
        .iter()
        .map(|(slot, c)| (slot.as_str(), c.served, c.impressions, c.clicks))
        .collect();
    // Served decisions are not part of it: the rotation needs impressions and clicks only.
    assert_eq!(
        summary,
        [("Publicité 2", 0, 2, 1), ("banner, haut", 0, 1, 0)]
    );
    assert!(totals[1].is_empty());
}

async fn invalid_traffic_is_counted_apart_by_reason_and_a_click_needs_a_valid_impression(
    store: &Store,
) {
    let campaign = id("c1");
    let slot = SlotName::parse("banner").unwrap();
    let (seen, unseen, crawled) = (Ulid::new(), Ulid::new(), Ulid::new());
    let event = |kind, decision_id, invalid| Event {
        kind,
        decision_id,
        campaign: campaign.clone(),
        slot: slot.clone(),
        day: day(30),
        invalid,
    };
    let batch = Batch {
        id: Ulid::new(),
        served: vec![
            ServedCount {
                campaign: campaign.clone(),
                slot: slot.clone(),
                day: day(30),
                count: 4,
                invalid: None,
            },
            ServedCount {
                campaign: campaign.clone(),
                slot: slot.clone(),
                day: day(30),
                count: 2,
                invalid: Some(Reason::Bot),
            },
        ],
        events: vec![
            event(EventKind::Impression, seen, None),
            event(EventKind::Impression, crawled, Some(Reason::Bot)),
            event(EventKind::Viewable, seen, Some(Reason::Rate)),
            event(EventKind::Click, seen, None),
            event(EventKind::Click, unseen, None),
            event(EventKind::Click, crawled, None),
        ],
        mark_ttl: MarkLifetimes::uniform(3_600),
        now_secs: 0,
    };

    let report = store.flush(&batch).await.unwrap();
    let late = store
        .flush(&Batch {
            id: Ulid::new(),
            served: Vec::new(),
            events: vec![
                event(EventKind::Impression, unseen, None),
                event(EventKind::Click, unseen, None),
            ],
            mark_ttl: MarkLifetimes::uniform(3_600),
            now_secs: 0,
        })
        .await
        .unwrap();

    assert_eq!(
        report.counted,
        [
            Counted::Valid,
            Counted::Invalid(Reason::Bot),
            Counted::Invalid(Reason::Rate),
            Counted::Valid,
            Counted::Invalid(Reason::NoImpression),
            Counted::Invalid(Reason::NoImpression),
        ],
        "a click counts only after its decision's valid impression"
    );
    assert_eq!(late.counted, [Counted::Valid, Counted::Duplicate]);
    let totals = store.totals(std::slice::from_ref(&campaign)).await.unwrap()[0];
    assert_eq!(
        (
            totals.served,
            totals.impressions,
            totals.viewable,
            totals.clicks
        ),
        (4, 2, 0, 1)
    );
    let bot = totals.invalid.reason(Reason::Bot);
    assert_eq!((bot.served, bot.impressions), (2, 1));
    assert_eq!(totals.invalid.reason(Reason::Rate).viewable, 1);
    assert_eq!(totals.invalid.reason(Reason::NoImpression).clicks, 2);
    assert_eq!(totals.invalid.total().clicks, 2);
    let daily = store.daily_stats(&campaign, &[day(30)]).await.unwrap();
    assert_eq!(daily[0].len(), 1, "one slot");
    assert_eq!(
        daily[0][0].1, totals,
        "the day holds every count of the lifetime"
    );
}

async fn an_advertiser_has_one_api_key_at_a_time(store: &Store) {
    let advertiser = AdvertiserId::parse("acme").unwrap();

    store.set_api_key(&advertiser, "hash-1").await.unwrap();
    let first = store.advertiser_for_key("hash-1").await.unwrap();
    store.set_api_key(&advertiser, "hash-2").await.unwrap();

    assert_eq!(first, Some(advertiser.clone()));
    assert_eq!(store.advertiser_for_key("hash-1").await.unwrap(), None);
    assert_eq!(
        store.advertiser_for_key("hash-2").await.unwrap(),
        Some(advertiser)
    );
    assert_eq!(store.advertiser_for_key("unknown").await.unwrap(), None);
}

async fn nothing_asked_is_nothing_answered(store: &Store) {
    assert!(store.totals(&[]).await.unwrap().is_empty());
    assert!(store
        .daily_stats(&id("acme"), &[])
        .await
        .unwrap()
        .is_empty());
}

async fn a_revoked_key_finds_no_advertiser(store: &Store) {
    let advertiser = AdvertiserId::parse("acme").unwrap();
    store.set_api_key(&advertiser, "hash-1").await.unwrap();

    let revoked = store.revoke_api_key(&advertiser).await.unwrap();
    let again = store.revoke_api_key(&advertiser).await.unwrap();

    assert!(revoked);
    assert!(!again, "nothing left to revoke");
    assert_eq!(store.advertiser_for_key("hash-1").await.unwrap(), None);
    store.set_api_key(&advertiser, "hash-2").await.unwrap();
    assert_eq!(
        store.advertiser_for_key("hash-2").await.unwrap(),
        Some(advertiser)
    );
}

async fn concurrent_key_rotations_leave_exactly_one_working_key(store: &Store) {
    let advertiser = AdvertiserId::parse("acme").unwrap();
    let hashes: Vec<String> = (0..64).map(|i| format!("hash-{i}")).collect();

    let rotations = hashes.iter().map(|hash| {
        let store = store.clone();
        let advertiser = advertiser.clone();
        let hash = hash.clone();
        tokio::spawn(async move { store.set_api_key(&advertiser, &hash).await.unwrap() })
    });
    futures_util::future::join_all(rotations).await;

    let mut working = 0;
    for hash in &hashes {
        if store.advertiser_for_key(hash).await.unwrap().is_some() {
            working += 1;
        }
    }
    assert_eq!(working, 1, "one key works after concurrent rotations");
    assert!(store.revoke_api_key(&advertiser).await.unwrap());
    for hash in &hashes {
        assert_eq!(store.advertiser_for_key(hash).await.unwrap(), None);
    }
}

async fn the_tracking_secret_is_the_first_callers_for_every_caller(store: &Store) {
    let first = store.tracking_secret("secret-of-instance-a").await.unwrap();
    let second = store.tracking_secret("secret-of-instance-b").await.unwrap();

    assert_eq!(first, "secret-of-instance-a");
    assert_eq!(second, "secret-of-instance-a");
}

async fn leases_grant_a_quarter_of_what_is_left_and_never_pass_the_caps(store: &Store) {
    let campaign = id("capped");
    let request = |day, wanted| LeaseRequest {
        campaign: &campaign,
        day,
        total_cap: Some(100),
        daily_cap: Some(40),
        wanted,
    };

    let first = store.lease(&request(day(30), 50)).await.unwrap();
    let second = store.lease(&request(day(30), 50)).await.unwrap();
    store.release(&campaign, day(30), 5).await.unwrap();
    let after_release = store.lease(&request(day(30), 2)).await.unwrap();
    let mut granted = first.granted + second.granted + after_release.granted - 5;
    loop {
        let more = store.lease(&request(day(30), 50)).await.unwrap().granted;
        if more == 0 {
            break;
        }
        granted += more;
    }
    let next_day = store.lease(&request(day(29), 50)).await.unwrap();

    // 40 left today: a quarter is 10; then 30 left: 7.
    assert_eq!(
        first,
        Lease {
            granted: 10,
            total_leased: 10,
            day_leased: 10
        }
    );
    assert_eq!(
        second,
        Lease {
            granted: 7,
            total_leased: 17,
            day_leased: 17
        }
    );
    assert_eq!(
        after_release,
        Lease {
            granted: 2,
            total_leased: 14,
            day_leased: 14
        }
    );
    assert_eq!(granted, 40, "never more than the daily cap");
    // Another day: the daily cap starts again, the lifetime cap counts 40 already.
    assert_eq!(
        next_day,
        Lease {
            granted: 10,
            total_leased: 50,
            day_leased: 10
        }
    );
}

fn item(campaign: &str, cap: Option<(u32, i64)>) -> FrequencyItem {
    FrequencyItem {
        campaign: id(campaign),
        cap: cap.map(|(max, window_ms)| FrequencyCap { max, window_ms }),
    }
}

async fn the_frequency_walk_serves_each_slot_its_first_campaign_under_its_cap(store: &Store) {
    let once_a_minute = Some((1, 60_000));
    let chains = vec![
        vec![item("a", once_a_minute), item("b", None)],
        vec![
            item("a", once_a_minute),
            item("c", once_a_minute),
            item("d", None),
        ],
        vec![item("b", None)],
    ];

    let first = store
        .frequency_pick("viewer", 1_000, "r1", &chains)
        .await
        .unwrap();
    let second = store
        .frequency_pick("viewer", 2_000, "r2", &chains)
        .await
        .unwrap();
    let other_viewer = store
        .frequency_pick("someone-else", 2_000, "r3", &chains)
        .await
        .unwrap();
    let after_the_window = store
        .frequency_pick("viewer", 61_001, "r4", &chains)
        .await
        .unwrap();

    // a for the first slot; the second slot cannot take a again, so c; b for the third.
    assert_eq!(first[..], [Some(0), Some(1), Some(0)]);
    // a and c are capped for this viewer now: b, then d, and nothing is left for the third.
    assert_eq!(second[..], [Some(1), Some(2), None]);
    assert_eq!(other_viewer, first);
    assert_eq!(after_the_window, first);
}

async fn a_refused_view_leaves_nothing_behind_and_the_next_candidate_is_served(store: &Store) {
    let chains = vec![vec![
        item("a", Some((1, 60_000))),
        item("b", Some((5, 60_000))),
    ]];

    let first = store.frequency_pick("viewer", 1_000, "r1", &chains).await;
    // a is at its cap: b instead.
    let second = store.frequency_pick("viewer", 2_000, "r2", &chains).await;
    // The view of 1 000 has left a's window; the refused request of 2 000 must not count.
    let after_the_first_view = store.frequency_pick("viewer", 61_001, "r3", &chains).await;

    assert_eq!(first.unwrap()[..], [Some(0)]);
    assert_eq!(second.unwrap()[..], [Some(1)]);
    assert_eq!(after_the_first_view.unwrap()[..], [Some(0)]);
}

async fn a_viewer_at_several_caps_is_served_the_first_campaign_left(store: &Store) {
    let once = Some((1, 60_000));
    let chains = vec![
        vec![
            item("a", once),
            item("b", once),
            item("c", once),
            item("d", once),
        ],
        vec![item("b", once), item("c", once), item("e", None)],
    ];
    // One view each of a, b and c, on pages of their own.
    for (n, campaign) in ["a", "b", "c"].into_iter().enumerate() {
        let alone = vec![vec![item(campaign, once)]];
        let reservation = format!("alone-{n}");
        let pick = store
            .frequency_pick("viewer", 1_000, &reservation, &alone)
            .await;
        assert_eq!(pick.unwrap()[..], [Some(0)], "{campaign}");
    }

    let page = store.frequency_pick("viewer", 2_000, "page", &chains).await;
    let again = store
        .frequency_pick("viewer", 3_000, "again", &chains)
        .await;

    // a, b and c are at their caps: d for the first slot, the uncapped e for the second.
    assert_eq!(page.unwrap()[..], [Some(3), Some(2)]);
    // d is now too; e is not capped and the first slot has nothing left.
    assert_eq!(again.unwrap()[..], [None, Some(2)]);
}

/// Picks of one viewer racing from two instances: never past the cap, and the refused ones
/// leave nothing behind that would hold the viewer back later.
mod racing_picks_of_one_viewer {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_the_embedded_store() {
        let store = memory();
        never_pass_the_cap_and_leave_nothing_behind([store.clone(), store]).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_redis() {
        let server = RedisServer::start();
        never_pass_the_cap_and_leave_nothing_behind([redis(&server), redis(&server)]).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_redis_cluster() {
        let shared = RedisCluster::shared();
        let prefix = "racing_picks_of_one_viewer";
        never_pass_the_cap_and_leave_nothing_behind([
            cluster(shared, prefix),
            cluster(shared, prefix),
        ])
        .await
    }
}

/// Each pick of `chains` for `viewer` at `now`, `count` at once, alternating between the
/// instances: how many were served the chain's first campaign.
async fn race(stores: &[Store; 2], chains: &[Vec<FrequencyItem>], now: i64, count: usize) -> usize {
    let mut picks = tokio::task::JoinSet::new();
    for n in 0..count {
        let (store, chains) = (stores[n % 2].clone(), chains.to_vec());
        picks.spawn(async move {
            let reservation = format!("race-{now}-{n}");
            store
                .frequency_pick("viewer", now, &reservation, &chains)
                .await
                .unwrap()
        });
    }
    let mut first = 0;
    while let Some(pick) = picks.join_next().await {
        if pick.unwrap()[..] == [Some(0)] {
            first += 1;
        }
    }
    first
}

/// [`race`], one pick after the other.
async fn one_by_one(
    stores: &[Store; 2],
    chains: &[Vec<FrequencyItem>],
    now: i64,
    count: usize,
) -> usize {
    let mut first = 0;
    for n in 0..count {
        first += race(stores, chains, now + n as i64, 1).await;
    }
    first
}

async fn never_pass_the_cap_and_leave_nothing_behind(stores: [Store; 2]) {
    let three_a_minute = Some((3, 60_000));
    let chains = vec![vec![item("a", three_a_minute), item("b", None)]];

    let early = race(&stores, &chains, 1_000, 60).await;
    let top_up = one_by_one(&stores, &chains, 2_000, 4).await;
    // At the cap: every one of these is refused, and must leave no trace.
    let refused = race(&stores, &chains, 30_000, 60).await;
    // The views of 1 000 and 2 000 have left the window; those of 30 000 were never served.
    let later = race(&stores, &chains, 63_000, 60).await;
    let later_top_up = one_by_one(&stores, &chains, 63_100, 4).await;

    assert!(early <= 3, "{early} views served under a cap of 3");
    assert_eq!(early + top_up, 3, "the cap fills exactly");
    assert_eq!(refused, 0);
    assert!(later <= 3, "{later} views served under a cap of 3");
    assert_eq!(
        later + later_top_up,
        3,
        "refused requests held the viewer back"
    );
}

async fn frequency_reservations_can_be_checked_and_cancelled(store: &Store) {
    let items = vec![
        item("a", Some((2, 60_000))),
        item("b", Some((1, 60_000))),
        item("c", None),
    ];
    let chains = vec![vec![items[1].clone()], vec![items[0].clone()]];

    let before = store
        .frequency_check("viewer", 1_000, &items)
        .await
        .unwrap();
    store
        .frequency_pick("viewer", 1_000, "r1", &chains)
        .await
        .unwrap();
    let after_pick = store
        .frequency_check("viewer", 1_000, &items)
        .await
        .unwrap();
    store
        .frequency_release(&[FrequencyRelease {
            viewer: "viewer".into(),
            reservation: "r1".into(),
            campaigns: vec![id("b")],
        }])
        .await
        .unwrap();
    let after_release = store
        .frequency_check("viewer", 1_000, &items)
        .await
        .unwrap();

    assert_eq!(before, [true, true, true]);
    // b allows one view, a two: only b is capped after one view of each.
    assert_eq!(after_pick, [true, false, true]);
    assert_eq!(after_release, [true, true, true]);
}
