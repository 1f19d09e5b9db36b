//! `regie migrate-keys`: a Redis written with the layout without hash tags keeps its
//! inventory, counters and keys under the current layout.

use std::process::Command;

use crate::helpers::{spawn_app, RedisServer, StoreKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_of_the_untagged_layout_keeps_its_inventory_and_counters_after_migrate_keys() {
    let redis = RedisServer::start();
    let inventory = std::fs::read_to_string("config/inventory.json").unwrap();
    let mut conn = redis.connection();
    redis::pipe()
        .set("regie:inventory", &inventory)
        .set("regie:inventory:version", 7)
        .hset("regie:totals:3vision-visitez", "served", 5)
        .hset("regie:totals:3vision-visitez", "impressions", 4)
        .hset(
            "regie:stats:3vision-visitez:2026-11-30",
            "served|Publicité 2",
            5,
        )
        .hset(
            "regie:stats:3vision-visitez:2026-11-30",
            "impressions|Publicité 2",
            4,
        )
        .set("regie:apikey:ab12", "3vision")
        .set("regie:advertiser-key:3vision", "ab12")
        .set("other:totals:3vision-visitez", 1)
        .exec(&mut conn)
        .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_regie"))
        .arg("migrate-keys")
        .env_clear()
        .env("REGIE_REDIS_URL", redis.url())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "renamed 6 keys\n");
    let app = spawn_app(StoreKind::Redis, Some(&redis)).await;
    assert_eq!(app.inventory().await["version"], 7);
    let stats = app
        .stats("3vision-visitez", "?from=2026-11-30&to=2026-11-30")
        .await;
    assert_eq!(stats["totals"]["served"], 5);
    assert_eq!(stats["totals"]["impressions"], 4);
    assert_eq!(stats["days"][0]["date"], "2026-11-30", "{stats}");
    assert_eq!(stats["days"][0]["impressions"], 4);
    let advertiser: Option<String> = redis::cmd("GET")
        .arg("regie:{keys}:apikey:ab12")
        .query(&mut conn)
        .unwrap();
    assert_eq!(advertiser.as_deref(), Some("3vision"));
    let other: Option<u64> = redis::cmd("GET")
        .arg("other:totals:3vision-visitez")
        .query(&mut conn)
        .unwrap();
    assert_eq!(other, Some(1), "another prefix's keys are left alone");
}
