//! Integration tests over real HTTP, against a real redis-server started per test and against
//! the embedded store.

mod helpers;

mod admin;
mod delivery;
mod faults;
mod ivt;
mod logs;
mod multi_instance;
mod ops;
mod serve;
mod shutdown;
mod stats;
mod store;
mod tracking;
