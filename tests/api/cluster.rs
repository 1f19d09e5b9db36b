//! A real Redis Cluster for the tests: six `redis-server` processes in cluster mode (three
//! primaries, three replicas), each on its own ports and in its own directory, made into one
//! cluster with `redis-cli --cluster create` and killed on drop. A short node timeout makes a
//! replica take over from a killed primary within a couple of seconds.
//!
//! Tests that only read and write share one cluster ([`RedisCluster::shared`]), each under its
//! own key prefix, so the suite starts six processes once; tests that kill nodes start their
//! own.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::free_port;

/// How long a primary may be unreachable before the cluster fails it over, in milliseconds.
/// Small so that a failover test takes seconds; production clusters use several seconds.
const NODE_TIMEOUT_MS: u64 = 1_000;

/// How long the harness waits for the cluster to form or to fail over.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

/// One node of the cluster.
struct Node {
    port: u16,
    bus_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Node {
    fn start() -> Self {
        let mut node = Self {
            port: free_port(),
            bus_port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        node.launch();
        node
    }

    /// Kills the server when the test process exits, for a node never dropped (the shared
    /// cluster lives in a static). The watchdog also ends when the server does.
    // The watchdog must outlive the test process, so it is not waited for; init reaps it.
    #[allow(clippy::zombie_processes)]
    fn watch_for_exit(&self) {
        let Some(child) = &self.child else { return };
        let script = format!(
            "while kill -0 {test} 2>/dev/null && kill -0 {server} 2>/dev/null; do sleep 0.5; done; \
             kill -0 {test} 2>/dev/null || kill {server} 2>/dev/null",
            test = std::process::id(),
            server = child.id()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            // The bus port is chosen, not derived (port + 10000 may be taken or out of range).
            .args(["--cluster-port", &self.bus_port.to_string()])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_connection().is_some_and(|mut c| {
                redis::cmd("PING")
                    .query::<String>(&mut c)
                    .is_ok_and(|p| p == "PONG")
            }) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://{}/", self.address())).ok()?;
        client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()
    }

    fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A line of `CLUSTER NODES`, as one node sees the cluster.
#[derive(Debug, Clone)]
struct NodeView {
    id: String,
    port: u16,
    primary: bool,
    failed: bool,
    /// The id of its primary, for a replica.
    primary_id: Option<String>,
    /// The slot ranges it serves, for a primary.
    slots: Vec<(u16, u16)>,
}

fn parse_cluster_nodes(text: &str) -> Vec<NodeView> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            // `127.0.0.1:7000@17000` (Redis 7 may add `,hostname`).
            let port = fields[1]
                .split(['@', ','])
                .next()?
                .rsplit_once(':')?
                .1
                .parse()
                .ok()?;
            let flags = fields[2];
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|range| {
                    let (from, to) = range.split_once('-').unwrap_or((range, range));
                    Some((from.parse().ok()?, to.parse().ok()?))
                })
                .collect();
            Some(NodeView {
                id: fields[0].to_owned(),
                port,
                primary: flags.contains("master"),
                failed: flags.contains("fail"),
                primary_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
            })
        })
        .collect()
}

/// A Redis Cluster of three primaries, each with one replica, owned by one test.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node sees it whole: every
    /// slot served, every primary with a replica attached.
    pub fn start() -> Self {
        let nodes: Vec<Node> = (0..6).map(|_| Node::start()).collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(Node::address))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli must be installed (it comes with redis-server)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_until_whole("the cluster did not form");
        cluster
    }

    /// A cluster shared by the tests of this process that neither kill nor restart nodes;
    /// each test keeps to its own key prefix. Started on first use, killed when the process
    /// exits.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let cluster = RedisCluster::start();
            for node in &cluster.nodes {
                node.watch_for_exit();
            }
            cluster
        })
    }

    /// The seed nodes, as `REGIE_REDIS_CLUSTER` takes them: `redis://host:port,…`.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://{}", n.address()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `CLUSTER NODES` as a running node sees it.
    fn view(&self) -> Option<Vec<NodeView>> {
        self.nodes.iter().filter(|n| n.is_running()).find_map(|n| {
            let mut conn = n.try_connection()?;
            let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
            Some(parse_cluster_nodes(&text))
        })
    }

    /// Whether every running node says `cluster_state:ok`, agrees that the running primaries
    /// serve all 16 384 slots, and every running primary has an online replica.
    fn is_whole(&self) -> bool {
        let running: Vec<&Node> = self.nodes.iter().filter(|n| n.is_running()).collect();
        for node in &running {
            let Some(mut conn) = node.try_connection() else {
                return false;
            };
            let info: String = match redis::cmd("CLUSTER").arg("INFO").query(&mut conn) {
                Ok(info) => info,
                Err(_) => return false,
            };
            if !info.contains("cluster_state:ok") {
                return false;
            }
        }
        let Some(view) = self.view() else {
            return false;
        };
        let running_ports: Vec<u16> = running.iter().map(|n| n.port).collect();
        let primaries: Vec<&NodeView> = view
            .iter()
            .filter(|n| n.primary && !n.failed && running_ports.contains(&n.port))
            .collect();
        let served: u32 = primaries
            .iter()
            .flat_map(|p| &p.slots)
            .map(|(from, to)| u32::from(to - from) + 1)
            .sum();
        if served != 16_384 {
            return false;
        }
        // Writes are acknowledged by a replica (WAIT 1), so each primary needs one online.
        primaries.iter().all(|p| {
            let Some(node) = running.iter().find(|n| n.port == p.port) else {
                return false;
            };
            let Some(mut conn) = node.try_connection() else {
                return false;
            };
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn)
                .unwrap_or_default();
            info.lines()
                .any(|l| l.starts_with("slave0:") && l.contains("state=online"))
        })
    }

    fn wait_until_whole(&self, failure: &str) {
        let deadline = Instant::now() + CONVERGE_WITHIN;
        while Instant::now() < deadline {
            if self.is_whole() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{failure} within {CONVERGE_WITHIN:?}: {:?}", self.view());
    }

    /// The port of the primary serving `key` now.
    pub fn primary_port_for(&self, key: &str) -> u16 {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node");
        let mut conn = node.try_connection().expect("a connection");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .unwrap();
        let view = self.view().expect("a view of the cluster");
        view.iter()
            .find(|n| {
                n.primary && !n.failed && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
            })
            .map(|n| n.port)
            .expect("a primary serves every slot")
    }

    /// Kills the primary serving `key`, as a crash would, and waits until its replica has
    /// taken over its slots: the cluster answers for every slot again. Returns the port of
    /// the killed node.
    pub fn kill_primary_for(&mut self, key: &str) -> u16 {
        let port = self.primary_port_for(key);
        self.kill_node(port);
        port
    }

    /// Kills the node on `port` (without waiting for a failover).
    pub fn kill_node(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
            .kill();
    }

    /// Starts a killed node again, with its cluster configuration: it rejoins as a replica of
    /// the primary that took over its slots. Waits until every primary has an online replica.
    pub fn restart_node(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
            .launch();
        self.wait_until_whole("the restarted node did not rejoin as a replica");
    }

    /// Waits until the replica of a killed primary has been promoted and the cluster serves
    /// every slot again. The new primary has no replica of its own, so this does not ask for
    /// one there.
    pub fn wait_for_failover(&self, killed_port: u16) {
        let deadline = Instant::now() + CONVERGE_WITHIN;
        while Instant::now() < deadline {
            if self.failed_over(killed_port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no replica took over from the primary on port {killed_port} within \
             {CONVERGE_WITHIN:?}: {:?}",
            self.view()
        );
    }

    fn failed_over(&self, killed_port: u16) -> bool {
        let mut views: HashMap<u16, Vec<NodeView>> = HashMap::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Some(mut conn) = node.try_connection() else {
                return false;
            };
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut conn)
                .unwrap_or_default();
            if !info.contains("cluster_state:ok") {
                return false;
            }
            let text: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut conn)
                .unwrap_or_default();
            views.insert(node.port, parse_cluster_nodes(&text));
        }
        // Every running node agrees that the killed node serves no slot any more.
        views.values().all(|view| {
            let served: u32 = view
                .iter()
                .filter(|n| n.primary && !n.failed && n.port != killed_port)
                .flat_map(|p| &p.slots)
                .map(|(from, to)| u32::from(to - from) + 1)
                .sum();
            served == 16_384
                && view
                    .iter()
                    .filter(|n| n.port == killed_port)
                    .all(|n| n.failed || n.slots.is_empty())
        })
    }

    /// The port of the replica attached to the primary on `primary_port`.
    pub fn replica_of(&self, primary_port: u16) -> u16 {
        let view = self.view().expect("a view of the cluster");
        let primary = view
            .iter()
            .find(|n| n.port == primary_port)
            .expect("a node of this cluster");
        view.iter()
            .find(|n| n.primary_id.as_deref() == Some(primary.id.as_str()))
            .map(|n| n.port)
            .expect("the primary has a replica")
    }
}
