//! Building and running the application: used by `main` and by every test.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::{watch_redis, Catalog, LoadError};
use crate::clock::{ReportingZone, SharedClock, SystemClock};
use crate::counting::{Flusher, Recorder};
use crate::delivery::{Budgets, Releaser};
use crate::metrics::{EventLabels, Metrics};
use crate::render::Renderer;
use crate::routes;
use crate::serving::ViewerKeys;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{
    durability, redis_target, redis_timeouts, MarkLifetimes, MemoryStore, RedisStore, Store,
    StoreError,
};
use crate::tracking::{share_through_store, KeysError, Signer};

/// The application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The tracking keys are invalid.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The store cannot be set up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The inventory file cannot be loaded.
    #[error(transparent)]
    Inventory(#[from] LoadError),
}

/// A built application, bound to its port, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    /// The operations listener's port and server, when `REGIE_OPS_LISTEN` is set.
    ops: Option<(u16, Server)>,
    state: web::Data<AppState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    flusher: JoinHandle<()>,
    budget_task: JoinHandle<()>,
    shutdown_timeout: Duration,
    drain_delay: Duration,
    stop_requested: Arc<tokio::sync::Notify>,
}

/// A handle to stop a running application, as a signal would.
#[derive(Clone)]
pub struct StopHandle(Arc<tokio::sync::Notify>);

impl StopHandle {
    /// Starts a graceful shutdown.
    pub fn stop(&self) {
        self.0.notify_one();
    }
}

impl Application {
    /// Builds the application on the system clock.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Builds the application with an injected clock (tests move it to check expiry, flights,
    /// daily counters without sleeping).
    pub async fn build_with_clock(
        settings: Settings,
        clock: SharedClock,
    ) -> Result<Self, StartError> {
        let (listener, port) = bind(&settings.listen)?;
        let ops_listener = settings.ops_listen.as_deref().map(bind).transpose()?;
        let metrics =
            Metrics::with_event_labels(EventLabels::from_setting(settings.metrics_campaign_labels));
        let store = match redis_target(&settings) {
            Some(target) => Store::Redis(Arc::new(RedisStore::connect(
                &target,
                &settings.key_prefix,
                redis_timeouts(&settings),
                durability(&settings),
                metrics.clone(),
            )?)),
            None => {
                metrics.store_up.set(1);
                Store::Memory(Arc::new(MemoryStore::with_max_histories(
                    settings.max_viewer_histories,
                    metrics.viewer_histories_evicted.clone(),
                )))
            }
        };
        let catalog = Arc::new(Catalog::new(store.clone(), metrics.clone()));
        catalog.start(&settings.inventory_seed()).await?;

        let signer = Arc::new(match &settings.tracking_keys {
            Some(keys) => Signer::from_setting(keys)?,
            None => Signer::random(),
        });
        let public_url = settings.public_url.clone().unwrap_or_else(|| {
            let host = settings
                .listen
                .rsplit_once(':')
                .map_or("127.0.0.1", |(h, _)| h);
            format!("http://{host}:{port}")
        });
        let recorder = Arc::new(Recorder::new(settings.max_pending_events, metrics.clone()));
        let budgets = Arc::new(Budgets::new(
            store.clone(),
            clock.clone(),
            ReportingZone(settings.timezone()),
            settings.lease_block,
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (releaser, release_task) = Releaser::start(store.clone(), shutdown_rx.clone());
        let state = web::Data::new(AppState {
            viewers: ViewerKeys::new(settings.viewer_key.as_ref(), signer.clone()),
            releaser,
            store: store.clone(),
            catalog: catalog.clone(),
            signer: signer.clone(),
            recorder: recorder.clone(),
            budgets: budgets.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            renderer: Renderer::new(public_url.trim_end_matches('/'), metrics.clone()),
            public_url: public_url.trim_end_matches('/').to_owned(),
            admin_token: settings.admin_token.clone(),
            zone: ReportingZone(settings.timezone()),
            country_header: settings.country_header(),
            impression_ttl_secs: settings.impression_token_ttl_secs,
            click_ttl_secs: settings.click_token_ttl_secs,
            draining: Default::default(),
            ivt: crate::ivt::Ivt::new(settings.ivt(), clock.clone()),
        });

        let shares_key = match (&settings.tracking_keys, &store) {
            (Some(_), _) => None,
            (None, Store::Redis(_)) => {
                share_through_store(signer.clone(), store.clone(), shutdown_rx.clone()).await
            }
            (None, Store::Memory(_)) => {
                tracing::warn!("REGIE_TRACKING_KEYS is unset: signing with a random key, valid for this process only");
                None
            }
        };
        let mut tasks = vec![
            release_task,
            tokio::spawn(state.ivt.limits.clone().run_sweeper(shutdown_rx.clone())),
            tokio::spawn(
                catalog
                    .clone()
                    .run(settings.poll_interval(), shutdown_rx.clone()),
            ),
        ];
        tasks.extend(shares_key);
        if let Store::Redis(redis) = &store {
            tasks.push(tokio::spawn(watch_redis(
                catalog.clone(),
                redis.pubsub_clients().to_vec(),
                redis.changes_channel(),
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(crate::optimize::run(
            catalog.clone(),
            store.clone(),
            settings.optimize_refresh(),
            shutdown_rx.clone(),
        )));
        let budget_task = tokio::spawn(budgets.run(catalog.clone(), shutdown_rx.clone()));
        // De-duplication marks outlive every token of their kind that could repeat them.
        let mark_ttl = MarkLifetimes::for_tokens(
            settings.impression_token_ttl_secs,
            settings.click_token_ttl_secs,
        );
        let flusher = Flusher::new(recorder, store, clock, metrics, mark_ttl);
        let flusher = tokio::spawn(flusher.run(
            settings.flush_interval(),
            shutdown_rx,
            settings.shutdown_timeout(),
        ));

        let server_state = state.clone();
        // With an ops listener, the service listener answers 404 on the operations routes.
        let service_routes = if ops_listener.is_some() {
            routes::configure_service
        } else {
            routes::configure
        };
        let mut server = HttpServer::new(move || {
            // Called on each worker's thread, in its runtime: the worker's own connection to
            // Redis opens now, before its first request.
            if let Store::Redis(redis) = &server_state.store {
                actix_web::rt::spawn({
                    let redis = redis.clone();
                    async move { redis.connect_this_thread().await }
                });
            }
            App::new()
                .app_data(server_state.clone())
                .app_data(routes::json_config())
                .app_data(routes::query_config())
                .app_data(routes::path_config())
                .configure(service_routes)
                .default_service(routes::default_service())
        })
        .disable_signals()
        .shutdown_timeout((settings.shutdown_timeout_secs / 2).max(1)); // the rest is for the final flush
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Listen {
                address: settings.listen.clone(),
                source,
            })?
            .run();
        let ops = match ops_listener {
            Some((listener, ops_port)) => {
                let ops_state = state.clone();
                let ops_server = HttpServer::new(move || {
                    App::new()
                        .app_data(ops_state.clone())
                        .app_data(routes::query_config())
                        .app_data(routes::path_config())
                        .configure(routes::configure_ops)
                        .default_service(routes::default_service())
                })
                .disable_signals()
                // A scrape or a probe at a time: one worker is plenty, and it stays off the
                // service's cores.
                .workers(1)
                .listen(listener)
                .map_err(|source| StartError::Listen {
                    address: settings.ops_listen.clone().unwrap_or_default(),
                    source,
                })?
                .run();
                tracing::info!(
                    port = ops_port,
                    "operations listener: /metrics, /healthz, /readyz"
                );
                Some((ops_port, ops_server))
            }
            None => None,
        };
        tracing::info!(port, store = state.store.kind(), public_url = %state.public_url, "regie is listening");
        Ok(Self {
            port,
            server,
            ops,
            state,
            shutdown,
            tasks,
            flusher,
            budget_task,
            shutdown_timeout: settings.shutdown_timeout(),
            drain_delay: Duration::from_millis(settings.drain_delay_ms)
                .min(settings.shutdown_timeout() / 2),
            stop_requested: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operations listener's bound port, when `REGIE_OPS_LISTEN` is set.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops.as_ref().map(|(port, _)| *port)
    }

    /// The state its handlers share: for tests that drive the domain below HTTP where HTTP
    /// would only add time (e.g. counting events for a hundred thousand campaigns).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The base of its tracking URLs, without a trailing slash (`REGIE_PUBLIC_URL`, or
    /// `http://` + the bound address).
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    /// A handle that stops the application gracefully, as SIGTERM does.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop_requested.clone())
    }

    /// Serves until SIGTERM, SIGINT or the stop handle; then drains: `/readyz` answers 503,
    /// in-flight requests finish, counters are flushed, all within the shutdown timeout.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle: ServerHandle = self.server.handle();
        let state = self.state.clone();
        let stop_requested = self.stop_requested.clone();
        let server = tokio::spawn(self.server);
        let ops = self.ops.map(|(_, ops)| (ops.handle(), tokio::spawn(ops)));
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("signal received; draining"),
            _ = stop_requested.notified() => tracing::info!("stop requested; draining"),
        }
        let started = Instant::now();
        state.draining.store(true, Ordering::Relaxed);
        // Still serving, but no longer ready: load balancers move traffic away first.
        tokio::time::sleep(self.drain_delay).await;
        handle.stop(true).await;
        let served = server.await.map_err(std::io::Error::other)?;
        // The ops listener answers (`/readyz`: 503) until the service has stopped.
        if let Some((ops_handle, ops_server)) = ops {
            ops_handle.stop(true).await;
            if let Ok(Err(e)) = ops_server.await {
                tracing::warn!(error = %e, "the operations listener failed");
            }
        }
        let _ = self.shutdown.send(true);
        let remaining = self
            .shutdown_timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        // Counters and unserved budget units go back to the store concurrently.
        let (flushed, released) = tokio::join!(
            tokio::time::timeout(remaining, self.flusher),
            tokio::time::timeout(remaining, self.budget_task)
        );
        if flushed.is_err() {
            tracing::error!("the final flush did not finish within the shutdown timeout");
        }
        if released.is_err() {
            tracing::warn!("unserved budget units were not all given back before the deadline");
        }
        for task in self.tasks {
            task.abort();
        }
        tracing::info!("stopped");
        served
    }
}

/// Binds a listener, with its port (useful with port 0).
fn bind(address: &str) -> Result<(TcpListener, u16), StartError> {
    let listen_error = |source| StartError::Listen {
        address: address.to_owned(),
        source,
    };
    let listener = TcpListener::bind(address).map_err(listen_error)?;
    let port = listener.local_addr().map_err(listen_error)?.port();
    Ok((listener, port))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
