//! Integration tests over real HTTP, against a real redis-server started per test and against
//! the embedded store.

mod helpers;

mod admin;
mod breaker;
mod cardinality;
mod cluster;
mod delivery;
mod deploy;
mod export;
mod faults;
mod hostile;
mod ivt;
mod keys;
mod logs;
mod migrate;
mod multi_instance;
mod on_cluster;
mod ops;
mod optimize;
mod serve;
mod shutdown;
mod standalone;
mod stats;
mod store;
mod targeting;
mod tracking;
mod traffic_bounds;
mod unsafe_settings;
mod validation;
