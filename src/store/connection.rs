//! Connections to Redis: one primary (`REGIE_REDIS_URL`) or a Redis Cluster
//! (`REGIE_REDIS_CLUSTER`), behind one interface so that the store has one code path.
//!
//! - [`Connections::conn`] is a connection for commands and scripts whose keys share one hash
//!   slot: the cluster client routes them by their first key.
//! - [`Connections::by_node`] sends commands of many slots as one pipeline per node, all nodes
//!   at once, and can end each pipeline with `WAIT`: the writes that count are acknowledged by
//!   a replica of the node that took them, on the connection that sent them.
//!
//! Writes that wait for replicas go through connections of their own: `WAIT` blocks the
//! connection it is sent on, and the serve path must not queue behind it.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use parking_lot::Mutex;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, RedisError, RedisFuture, RedisResult, Value};

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One primary, by URL (`REGIE_REDIS_URL`).
    Single(String),
    /// A Redis Cluster, by seed nodes (`REGIE_REDIS_CLUSTER`).
    Cluster(Vec<String>),
}

/// How writes that count are made durable: `WAIT replicas timeout` after them. With 0
/// replicas nothing is waited for (a single Redis without replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas that must acknowledge a write that counts.
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16_384;

/// The hash slot of a key, as Redis Cluster computes it: CRC16 of the hash tag (the part
/// between the first `{` and the next `}`, when not empty), or of the whole key.
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &bytes[open + 1..open + 1 + close])
        })
        .unwrap_or(bytes);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// A command with the slot of its keys.
pub struct SlotCmd {
    /// The hash slot of every key of the command.
    pub slot: u16,
    /// The command.
    pub cmd: Cmd,
}

impl SlotCmd {
    /// A command on keys of the slot of `key`.
    pub fn new(key: &str, cmd: Cmd) -> Self {
        Self {
            slot: slot_of(key),
            cmd,
        }
    }
}

/// Which slots each primary serves, as `CLUSTER SLOTS` last said.
#[derive(Default)]
struct SlotMap {
    /// Slot ranges and the address of the primary serving them.
    ranges: Vec<(u16, u16, String)>,
}

impl SlotMap {
    fn node_of(&self, slot: u16) -> Option<&str> {
        self.ranges
            .iter()
            .find(|(from, to, _)| *from <= slot && slot <= *to)
            .map(|(_, _, node)| node.as_str())
    }

    fn parse(value: Value) -> Option<Self> {
        let Value::Array(ranges) = value else {
            return None;
        };
        let mut map = Self::default();
        for range in ranges {
            let Value::Array(fields) = range else {
                return None;
            };
            let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return None;
            };
            let host = match primary.first()? {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let Some(Value::Int(port)) = primary.get(1) else {
                return None;
            };
            map.ranges
                .push((*from as u16, *to as u16, format!("{host}:{port}")));
        }
        Some(map)
    }
}

static NEXT_STORE_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's connection to each single-node store.
    static CONNECTIONS: std::cell::RefCell<Vec<(usize, ConnectionManager)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A connection to either kind of deployment.
#[derive(Clone)]
pub enum Conn {
    /// To one primary.
    Single(ConnectionManager),
    /// To a cluster: commands are routed by their keys' slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

enum Kind {
    Single(Box<Single>),
    Cluster {
        serving: ClusterConnection,
        durable: ClusterConnection,
        slots: Mutex<SlotMap>,
    },
}

/// Connections to one primary.
struct Single {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Distinguishes stores in the per-thread connection table (tests run several).
    id: usize,
    durable: ConnectionManager,
}

/// The connections of one store.
pub struct Connections {
    kind: Kind,
    /// The scripts sent in pipelines, by hash, to load them where a node lacks them.
    scripts: HashMap<String, &'static str>,
    /// Clients for the pub/sub connection of the inventory watcher, one per known node.
    pubsub_clients: Vec<redis::Client>,
}

/// Timeouts of the Redis connections.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
    /// Time allowed to connect.
    pub connect: Duration,
    /// Time allowed for an answer.
    pub response: Duration,
    /// Time a public request waits for an answer, at most ([`super::breaker`]).
    pub request: Duration,
}

/// An answer regie cannot use (a short pipeline, a write no replica acknowledged): the store
/// answered, so it is not an outage, and the request path's breaker stays closed.
fn failure(description: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::Client, description, detail))
}

impl Connections {
    /// Connections to `target`, made lazily: regie starts while the store is down. `scripts`
    /// are the Lua sources sent by [`Self::by_node`], loaded on a node that lacks them.
    pub fn new(
        target: &RedisTarget,
        timeouts: RedisTimeouts,
        scripts: &[&'static str],
    ) -> RedisResult<Self> {
        let scripts = scripts
            .iter()
            .map(|code| (redis::Script::new(code).get_hash().to_owned(), *code))
            .collect();
        let kind = match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeouts.connect))
                    .set_response_timeout(Some(timeouts.response))
                    // Fail fast and let regie's own loops retry: a request must not hang.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let durable =
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
                Kind::Single(Box::new(Single {
                    client,
                    config,
                    id: NEXT_STORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    durable,
                }))
            }
            RedisTarget::Cluster(seeds) => {
                let client = redis::cluster::ClusterClient::builder(seeds.clone())
                    .connection_timeout(timeouts.connect)
                    .response_timeout(timeouts.response)
                    // A failover takes the node timeout and an election: retry moved slots
                    // and lost nodes a few times, quickly; regie's loops retry beyond that.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(timeouts.connect)
                    .set_response_timeout(timeouts.response);
                Kind::Cluster {
                    serving: client.get_pending_async_connection_with_config(config.clone()),
                    durable: client.get_pending_async_connection_with_config(config),
                    slots: Mutex::new(SlotMap::default()),
                }
            }
        };
        let pubsub_clients = match target {
            RedisTarget::Single(url) => vec![redis::Client::open(url.as_str())?],
            RedisTarget::Cluster(seeds) => seeds
                .iter()
                .map(|s| redis::Client::open(s.as_str()))
                .collect::<RedisResult<_>>()?,
        };
        Ok(Self {
            kind,
            scripts,
            pubsub_clients,
        })
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster { .. })
    }

    /// Clients for subscribing to notifications: in a cluster, a message published on any
    /// node reaches the subscribers of every node, so any one will do.
    pub fn pubsub_clients(&self) -> &[redis::Client] {
        &self.pubsub_clients
    }

    /// A connection for the serve path and reads. On one primary, this thread's own: each
    /// actix worker runs its own single-threaded runtime, and a connection driven by another
    /// thread's runtime would cost two cross-thread wake-ups per command. Never a connection
    /// per request.
    pub fn conn(&self) -> Conn {
        match &self.kind {
            Kind::Single(single) => CONNECTIONS.with(|connections| {
                let Single {
                    client, config, id, ..
                } = &**single;
                let mut connections = connections.borrow_mut();
                if let Some((_, conn)) = connections.iter().find(|(i, _)| i == id) {
                    return Conn::Single(conn.clone());
                }
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .expect("the configuration was checked when the store was built");
                connections.push((*id, conn.clone()));
                Conn::Single(conn)
            }),
            Kind::Cluster { serving, .. } => Conn::Cluster(serving.clone()),
        }
    }

    /// The connection of writes that wait for replicas.
    pub fn durable(&self) -> Conn {
        match &self.kind {
            Kind::Single(single) => Conn::Single(single.durable.clone()),
            Kind::Cluster { durable, .. } => Conn::Cluster(durable.clone()),
        }
    }

    /// Sends `cmds` as one pipeline per node, to every node at once, and answers their
    /// replies in order. With `wait`, each pipeline ends with `WAIT`, and a node whose
    /// replicas did not acknowledge is an error: the caller keeps what it sent and sends it
    /// again. A command's error is the call's error. `durable` picks the connections of
    /// writes that count. Also answers how many pipelines (round trips) were sent.
    pub async fn by_node(
        &self,
        cmds: Vec<SlotCmd>,
        durable: bool,
        wait: Option<Durability>,
    ) -> (usize, RedisResult<Vec<Value>>) {
        if cmds.is_empty() {
            return (0, Ok(Vec::new()));
        }
        let wait = wait.filter(|w| w.replicas > 0);
        match &self.kind {
            Kind::Single(_) => {
                let mut conn = if durable { self.durable() } else { self.conn() };
                let indices: Vec<usize> = (0..cmds.len()).collect();
                (
                    1,
                    self.send_group(&mut conn, None, &cmds, &indices, wait)
                        .await,
                )
            }
            Kind::Cluster {
                serving,
                durable: durable_conn,
                slots,
            } => {
                let conn = if durable { durable_conn } else { serving };
                if slots.lock().ranges.is_empty() {
                    if let Err(e) = self.refresh_slots(conn).await {
                        return (1, Err(e));
                    }
                }
                // Commands grouped by the node serving their slot; each group is sent to the
                // node of its first command's slot.
                let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
                {
                    let map = slots.lock();
                    for (i, c) in cmds.iter().enumerate() {
                        let node = map.node_of(c.slot).unwrap_or("?").to_owned();
                        match groups.iter_mut().find(|(n, _)| *n == node) {
                            Some((_, members)) => members.push(i),
                            None => groups.push((node, vec![i])),
                        }
                    }
                }
                let sends = groups.iter().map(|(_, members)| {
                    let mut conn = Conn::Cluster(conn.clone());
                    let route = Route::new(cmds[members[0]].slot, SlotAddr::Master);
                    let cmds = &cmds;
                    async move {
                        self.send_group(&mut conn, Some(route), cmds, members, wait)
                            .await
                    }
                });
                let answers = join_all(sends).await;
                let mut values = vec![Value::Nil; cmds.len()];
                let mut first_error = None;
                for ((_, members), answer) in groups.iter().zip(answers) {
                    match answer {
                        Ok(group_values) => {
                            for (&i, v) in members.iter().zip(group_values) {
                                values[i] = v;
                            }
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                let result = match first_error {
                    None => Ok(values),
                    Some(e) => {
                        // The topology may have changed (a failover, a moved slot).
                        let _ = self.refresh_slots(conn).await;
                        Err(e)
                    }
                };
                (groups.len(), result)
            }
        }
    }

    /// Sends the commands `members` of `cmds` as one pipeline (to the primary of `route` on a
    /// cluster), loading scripts the node lacks and sending again once.
    async fn send_group(
        &self,
        conn: &mut Conn,
        route: Option<Route>,
        cmds: &[SlotCmd],
        members: &[usize],
        wait: Option<Durability>,
    ) -> RedisResult<Vec<Value>> {
        let mut pipe = redis::pipe();
        for &i in members {
            pipe.add_command(cmds[i].cmd.clone());
        }
        if let Some(w) = wait {
            pipe.cmd("WAIT")
                .arg(w.replicas)
                .arg(w.timeout.as_millis() as u64);
        }
        let mut loaded = false;
        loop {
            let mut values = send_pipeline(conn, route, &pipe).await?;
            if values.len() != pipe.len() {
                return Err(failure("unexpected answer", "pipeline length".into()));
            }
            let missing_script = values
                .iter()
                .any(|v| matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT"));
            if missing_script && !loaded {
                // A promoted replica or a restarted node has an empty script cache.
                for code in self.scripts.values() {
                    let mut load = redis::cmd("SCRIPT");
                    load.arg("LOAD").arg(*code);
                    send_command(conn, route, &load).await?;
                }
                loaded = true;
                continue;
            }
            if let Some(w) = wait {
                let acknowledged = match values.pop() {
                    Some(Value::Int(n)) => n,
                    _ => -1,
                };
                if acknowledged < i64::from(w.replicas) {
                    return Err(failure(
                        "not acknowledged by a replica",
                        format!(
                            "WAIT {} {}ms answered {acknowledged}",
                            w.replicas,
                            w.timeout.as_millis()
                        ),
                    ));
                }
            }
            for v in &values {
                if let Value::ServerError(e) = v {
                    return Err(e.clone().into());
                }
            }
            return Ok(values);
        }
    }

    async fn refresh_slots(&self, conn: &ClusterConnection) -> RedisResult<()> {
        let Kind::Cluster { slots, .. } = &self.kind else {
            return Ok(());
        };
        let mut conn = conn.clone();
        let answer = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                redis::cluster_routing::RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let map = SlotMap::parse(answer)
            .ok_or_else(|| failure("unexpected answer", "CLUSTER SLOTS".into()))?;
        *slots.lock() = map;
        Ok(())
    }
}

async fn send_pipeline(
    conn: &mut Conn,
    route: Option<Route>,
    pipe: &redis::Pipeline,
) -> RedisResult<Vec<Value>> {
    match (conn, route) {
        (Conn::Cluster(c), Some(route)) => {
            c.route_pipeline(
                pipe.clone(),
                0,
                pipe.len(),
                SingleNodeRoutingInfo::SpecificNode(route),
            )
            .await
        }
        (conn, _) => conn.req_packed_commands(pipe, 0, pipe.len()).await,
    }
}

async fn send_command(conn: &mut Conn, route: Option<Route>, cmd: &Cmd) -> RedisResult<Value> {
    match (conn, route) {
        (Conn::Cluster(c), Some(route)) => {
            c.route_command(
                cmd.clone(),
                redis::cluster_routing::RoutingInfo::SingleNode(
                    SingleNodeRoutingInfo::SpecificNode(route),
                ),
            )
            .await
        }
        (conn, _) => conn.req_packed_command(cmd).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_the_same_hash_tag_share_a_slot_and_slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` of a Redis 7 server.
        assert_eq!(slot_of("foo"), 12_182);
        assert_eq!(slot_of("{foo}bar"), 12_182);
        assert_eq!(slot_of("regie:{foo}:totals"), 12_182);
        assert_eq!(slot_of("{}foo"), slot_of("{}foo"));
        assert_ne!(
            slot_of("{}foo"),
            slot_of("foo"),
            "an empty tag hashes the whole key"
        );
    }
}
