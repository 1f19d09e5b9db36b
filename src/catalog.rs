//! The inventory this instance serves, and how it follows the store.
//!
//! Requests read the current [`Snapshot`] through an `ArcSwap`: no lock, no store round trip.
//! A background task polls the store's version (the guarantee: a change is served within one
//! poll interval plus a load) and is woken early by a notification (Redis pub/sub, or the
//! admin API of this very instance). It never replaces a good snapshot by an older or empty
//! one: when the store comes back empty it writes the snapshot back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{watch, Notify};

use crate::inventory::{parse_inventory, DEMO_INVENTORY};
use crate::metrics::Metrics;
use crate::optimize::CtrStats;
use crate::settings::InventorySeed;
use crate::snapshot::Snapshot;
use crate::store::{Backend, Store, StoreError};

/// What this instance knows of its store, for `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// `memory` or `redis`.
    pub kind: &'static str,
    /// Whether the last call to the store succeeded.
    pub reachable: bool,
    /// A sentence on the state of the store's inventory.
    pub detail: String,
}

/// The served snapshot, held by a request: a guard of the `ArcSwap` rather than a clone of its
/// `Arc`, whose reference count sits on a cache line that every worker's core would write
/// twice per request. Meant to be dropped when the request is answered: a thread holds a few
/// such guards cheaply, and past those each costs what a clone does.
pub struct Served(arc_swap::Guard<Option<Arc<Snapshot>>>);

impl Served {
    /// The snapshot's `Arc`, for what compares or keeps it.
    pub fn arc(&self) -> &Arc<Snapshot> {
        self.0
            .as_ref()
            .expect("a Served is only made of a loaded snapshot")
    }
}

impl std::ops::Deref for Served {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        self.arc()
    }
}

/// The served snapshot and the state of its source.
pub struct Catalog {
    current: ArcSwapOption<Snapshot>,
    loaded_at: Mutex<Option<Instant>>,
    status: Mutex<StoreStatus>,
    store: Store,
    metrics: Metrics,
    /// Wakes the refresh task before its next poll.
    pub wake: Notify,
    /// The version served, for tasks that follow each new one.
    served: watch::Sender<u64>,
    /// The last counts of the `optimize` slots, handed to every snapshot installed.
    ctr_stats: ArcSwap<CtrStats>,
    /// Held while a new version is read, parsed and compiled: a refresh woken by the store's
    /// notification while the admin API installs the version it wrote (or two refreshes)
    /// would otherwise parse and compile the same large document twice at once.
    installing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("version", &self.current.load().as_ref().map(|s| s.version))
            .finish_non_exhaustive()
    }
}

/// The inventory could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The inventory file is unreadable.
    #[error("cannot read the inventory file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The inventory file is invalid.
    #[error("the inventory file {path} is invalid: {details}")]
    Invalid {
        /// The file.
        path: String,
        /// Every problem, one per line.
        details: String,
    },
}

impl Catalog {
    /// A catalog with nothing loaded yet.
    pub fn new(store: Store, metrics: Metrics) -> Self {
        let status = StoreStatus {
            kind: store.kind(),
            reachable: false,
            detail: "not contacted yet".into(),
        };
        Self {
            current: ArcSwapOption::empty(),
            loaded_at: Mutex::new(None),
            status: Mutex::new(status),
            store,
            metrics,
            wake: Notify::new(),
            served: watch::Sender::new(0),
            ctr_stats: ArcSwap::from_pointee(CtrStats::default()),
            installing: tokio::sync::Mutex::new(()),
        }
    }

    /// The snapshot being served, if one is loaded.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// The snapshot being served, held for one request: see [`Served`].
    pub fn served(&self) -> Option<Served> {
        let guard = self.current.load();
        guard.is_some().then(|| Served(guard))
    }

    /// The store's state, for `/readyz`.
    pub fn status(&self) -> StoreStatus {
        self.status.lock().clone()
    }

    /// Seconds since the served snapshot was loaded.
    pub fn age(&self) -> Option<Duration> {
        self.loaded_at.lock().map(|t| t.elapsed())
    }

    /// Marks each new version served, as it is installed.
    pub fn versions(&self) -> watch::Receiver<u64> {
        self.served.subscribe()
    }

    fn set_status(&self, reachable: bool, detail: impl Into<String>) {
        let mut status = self.status.lock();
        if reachable && !status.reachable {
            tracing::info!("store reachable");
        }
        status.reachable = reachable;
        status.detail = detail.into();
    }

    /// Keeps the `optimize` slots' latest counts and hands them to the served snapshot.
    pub fn set_ctr_stats(&self, stats: CtrStats) {
        self.ctr_stats.store(Arc::new(stats));
        if let Some(snapshot) = self.snapshot() {
            self.ctr_stats.load().apply(&snapshot);
        }
    }

    fn install(&self, snapshot: Snapshot) {
        let snapshot_version = snapshot.version;
        tracing::info!(version = snapshot.version, "serving inventory version");
        // A new version learns from the counts already read rather than from the prior.
        self.ctr_stats.load().apply(&snapshot);
        self.metrics.inventory_version.set(snapshot.version as i64);
        let previous = self.current.swap(Some(Arc::new(snapshot)));
        *self.loaded_at.lock() = Some(Instant::now());
        self.served.send_replace(snapshot_version);
        // Freeing a large inventory's snapshot takes a tenth of a second or more: not on the
        // worker, nor before the PUT that replaced it answers.
        if let (Some(previous), Ok(runtime)) = (previous, tokio::runtime::Handle::try_current()) {
            runtime.spawn_blocking(move || drop(previous));
        }
    }

    /// Seeds the store from the inventory file (or the compiled-in demo) when it holds no
    /// inventory (always so for the embedded store), then loads what the store holds. A store
    /// that cannot be reached is not an error: the refresh task keeps trying and `/readyz`
    /// says so.
    pub async fn start(&self, seed: &InventorySeed) -> Result<(), LoadError> {
        let (path, bytes) = match seed {
            InventorySeed::File(file) => {
                let path = file.display().to_string();
                let bytes = std::fs::read(file).map_err(|source| LoadError::File {
                    path: path.clone(),
                    source,
                })?;
                (path, std::borrow::Cow::Owned(bytes))
            }
            InventorySeed::Demo => (
                "(the compiled-in demo inventory)".to_owned(),
                std::borrow::Cow::Borrowed(DEMO_INVENTORY.as_bytes()),
            ),
        };
        let parsed = parse_inventory(&bytes).map_err(|e| LoadError::Invalid {
            path: path.clone(),
            details: e
                .details
                .iter()
                .map(|d| format!("{}: {}", d.path, d.message))
                .collect::<Vec<_>>()
                .join("\n"),
        })?;
        let json = parsed.stored_text(bytes.into_owned());
        match self.store.inventory_version().await {
            Ok(None) => match self.store.restore_inventory(&json, 1).await {
                Ok(written) => {
                    tracing::info!(file = %path, "store was empty: seeded it with the inventory");
                    if written {
                        // What the store now holds is what was just parsed: serve it without
                        // reading and parsing it back (seconds, on a large inventory).
                        self.install(compile(1, parsed.inventory).await);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot seed the store"),
            },
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(error = %e, "store unreachable at start; will keep trying"),
        }
        self.refresh().await;
        Ok(())
    }

    /// Compares the store's version with the served one and acts: load a newer inventory,
    /// restore an empty or older store, or note that the store is unreachable.
    pub async fn refresh(&self) {
        let _installing = self.installing.lock().await;
        let current = self.snapshot();
        let version = match self.store.inventory_version().await {
            Ok(v) => v,
            Err(e) => {
                self.note_unreachable(&e, current.is_some());
                return;
            }
        };
        match (version, current) {
            (Some(stored), Some(snapshot)) if stored == snapshot.version => {
                self.set_status(true, format!("in sync at version {stored}"));
            }
            (Some(stored), Some(snapshot)) if stored < snapshot.version => {
                self.restore(
                    &snapshot,
                    &format!("the store went back to version {stored}"),
                )
                .await;
            }
            (None, Some(snapshot)) => self.restore(&snapshot, "the store was empty").await,
            (None, None) => self.set_status(true, "the store holds no inventory"),
            (Some(_), _) => self.load().await,
        }
    }

    /// Holds off refreshes while this instance writes a version to the store, so that the
    /// store's notification of that write does not make it read the version back, parse it
    /// and compile it while [`Self::adopt`] compiles what the writer parsed (twice the work,
    /// on a large inventory, before it is served).
    pub async fn hold_refreshes(&self) -> RefreshHold<'_> {
        RefreshHold {
            _installing: self.installing.lock().await,
        }
    }

    /// Serves `inventory`, just written to the store as `version` by this instance, unless a
    /// version as new is already served: compiled from what the writer parsed, rather than
    /// read back from the store and parsed again.
    pub async fn adopt(&self, _held: &RefreshHold<'_>, snapshot: Snapshot) {
        let version = snapshot.version;
        if self.snapshot().is_some_and(|s| s.version >= version) {
            return;
        }
        self.install(snapshot);
        self.set_status(true, format!("in sync at version {version}"));
    }

    async fn load(&self) {
        let stored = match self.store.load_inventory().await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => return self.note_unreachable(&e, self.snapshot().is_some()),
        };
        if self.snapshot().is_some_and(|s| s.version >= stored.version) {
            return;
        }
        match parse_inventory(stored.json.as_bytes()) {
            Ok(parsed) => {
                self.install(compile(stored.version, parsed.inventory).await);
                self.set_status(true, format!("in sync at version {}", stored.version));
            }
            Err(e) => {
                // Written by something other than regie's admin API; keep the last good one.
                tracing::error!(version = stored.version, error = %e, "the store holds an invalid inventory; keeping the last good one");
                self.set_status(
                    true,
                    format!(
                        "the store's inventory version {} is invalid; serving the last good one",
                        stored.version
                    ),
                );
            }
        }
    }

    async fn restore(&self, snapshot: &Snapshot, why: &str) {
        let json =
            serde_json::to_string(snapshot.document.as_ref()).expect("an inventory serialises");
        match self.store.restore_inventory(&json, snapshot.version).await {
            Ok(_) => {
                tracing::warn!(
                    version = snapshot.version,
                    "{why}: wrote the served inventory back"
                );
                self.set_status(
                    true,
                    format!(
                        "{why}; restored version {} from this instance",
                        snapshot.version
                    ),
                );
            }
            Err(e) => self.note_unreachable(&e, true),
        }
    }

    fn note_unreachable(&self, e: &StoreError, serving: bool) {
        // Once per outage at warning level; every poll of it would flood the log.
        if self.status.lock().reachable {
            tracing::warn!(error = %e, "store unreachable");
        } else {
            tracing::debug!(error = %e, "store still unreachable");
        }
        let detail = if serving {
            "the store is unreachable; serving the last good inventory"
        } else {
            "the store is unreachable and no inventory is loaded"
        };
        self.set_status(false, detail);
    }

    /// Refreshes every `poll` or when woken, until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, poll: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            self.refresh().await;
        }
    }
}

/// Listens to the store's change notifications and wakes the catalog. Notifications are only
/// a shortcut: while this is disconnected the poll still finds every change. On a cluster a
/// message published on any node reaches every node's subscribers, so one node is listened
/// to, the next one when it fails.
pub async fn watch_redis(
    catalog: Arc<Catalog>,
    clients: Vec<redis::Client>,
    channel: String,
    mut shutdown: watch::Receiver<bool>,
) {
    use futures_util::StreamExt;
    for client in clients.iter().cycle() {
        let listen = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            let mut messages = pubsub.on_message();
            while messages.next().await.is_some() {
                catalog.wake.notify_one();
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            result = listen => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "inventory notifications disconnected");
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Compiles an inventory on a blocking thread: a large one takes long enough (a second or
/// more with 100 000 campaigns) that the worker running it would stop answering requests.
async fn compile(version: u64, inventory: crate::inventory::Inventory) -> Snapshot {
    tokio::task::spawn_blocking(move || Snapshot::compile(version, inventory))
        .await
        .expect("compiling a validated inventory does not panic")
}

/// Refreshes wait while this is held ([`Catalog::hold_refreshes`]).
pub struct RefreshHold<'a> {
    _installing: tokio::sync::MutexGuard<'a, ()>,
}
