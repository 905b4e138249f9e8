//! Test harness: a real Redis Cluster per test (3 masters, 3 replicas) on free loopback ports.
//!
//! ```no_run
//! let cluster = integration_tests::cluster::RedisCluster::start();
//! cache_runtime::Config::new().redis_cluster(cluster.urls()).install().unwrap();
//! // ... calls ...
//! assert_eq!(cluster.calls("get"), 1); // summed over the masters
//! ```
//!
//! Six `redis-server --cluster-enabled yes` children (from `$REDIS_SERVER` or `PATH`), each in
//! a directory of its own with its cluster config file, no persistence, and a node timeout of
//! 1 s (failovers within seconds); joined with `redis-cli --cluster create ...
//! --cluster-replicas 1` (`$REDIS_CLI` or `PATH`); ready once every node says
//! `cluster_state:ok` and sees the same three masters. Every child is killed on drop.
//! [`kill`](RedisCluster::kill), [`restart`](RedisCluster::restart),
//! [`freeze`](RedisCluster::freeze) and [`reshard`](RedisCluster::reshard) are for fault
//! tests; the `wait_*` helpers poll the cluster's own view (`CLUSTER INFO`, `CLUSTER NODES`).

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the `wait_*` helpers wait before failing the test.
const PATIENCE: Duration = Duration::from_secs(60);

/// One node of the cluster: its client and bus ports, its process.
struct Node {
    port: u16,
    bus: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A node as `CLUSTER NODES` shows it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node id.
    pub id: String,
    /// The client port.
    pub port: u16,
    /// A master (else a replica).
    pub master: bool,
    /// Flagged `fail` or `fail?` by the node asked.
    pub failing: bool,
    /// For a replica, its master's id.
    pub master_id: Option<String>,
    /// The slot ranges it serves (masters), inclusive.
    pub slots: Vec<(u16, u16)>,
}

/// Six `redis-server` children forming a cluster, stopped on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    root: PathBuf,
}

impl RedisCluster {
    /// Starts 3 masters and 3 replicas and waits until the cluster is up on every node.
    ///
    /// # Panics
    ///
    /// With a message saying how to install them, when `redis-server` or `redis-cli` cannot
    /// be found; when the cluster does not form within a minute.
    pub fn start() -> Self {
        let root = std::env::temp_dir().join(format!(
            "cache-runtime-cluster-{}-{}",
            std::process::id(),
            unique()
        ));
        let ports = free_ports(12);
        let mut nodes = Vec::new();
        for i in 0..6 {
            let (port, bus) = (ports[2 * i], ports[2 * i + 1]);
            let dir = root.join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("a node directory");
            nodes.push(Node {
                port,
                bus,
                dir,
                child: None,
            });
        }
        let mut cluster = RedisCluster { nodes, root };
        for i in 0..cluster.nodes.len() {
            // A port taken by another process since it was found free: try others.
            let mut attempts = 0;
            while !cluster.spawn(i) {
                attempts += 1;
                assert!(attempts < 5, "no free ports for a cluster node");
                let fresh = free_ports(2);
                cluster.nodes[i].port = fresh[0];
                cluster.nodes[i].bus = fresh[1];
            }
        }
        let mut create = Command::new(redis_cli());
        create.args(["--cluster", "create"]);
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}", missing("redis-cli", e)));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until_ok();
        cluster
    }

    /// Starts node `i` and waits until it answers; `false` when it exited at once (its port
    /// was taken).
    fn spawn(&mut self, i: usize) -> bool {
        let node = &mut self.nodes[i];
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--port", &node.port.to_string()])
            .args(["--cluster-port", &node.bus.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &node.dir.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}", missing(&binary, e)));
        node.child = Some(child);
        let port = node.port;
        let started = Instant::now();
        while try_connection(port).is_none() {
            let child = node.child.as_mut().expect("just started");
            if child.try_wait().ok().flatten().is_some() {
                node.child = None;
                return false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "cluster node on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Every node's URL (`redis://127.0.0.1:{port}/`), for `Config::redis_cluster`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// The client ports of the nodes that are running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// A direct (non-cluster) connection to the node on `port`.
    pub fn connection(&self, port: u16) -> redis::Connection {
        try_connection(port)
            .unwrap_or_else(|| panic!("cluster node on port {port} is not answering"))
    }

    /// The cluster as the first running node that answers sees it.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        for port in self.live_ports() {
            if let Some(text) = try_query::<String>(port, redis::cmd("CLUSTER").arg("NODES")) {
                return parse_nodes(&text);
            }
        }
        panic!("no cluster node answers CLUSTER NODES")
    }

    /// The ports of the masters serving slots.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes()
            .into_iter()
            .filter(|n| n.master && !n.failing && !n.slots.is_empty())
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master that serves `key` (asked of the cluster: `CLUSTER KEYSLOT`).
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        self.nodes()
            .into_iter()
            .find(|n| {
                n.master && !n.failing && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            })
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The slot of `key`, as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.connection(port))
            .expect("CLUSTER KEYSLOT")
    }

    /// The value under `key`, read from its master.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let port = self.master_of(key);
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.connection(port))
            .expect("GET")
    }

    /// Calls of one command (lowercase) since the last [`reset_stats`](Self::reset_stats),
    /// summed over the masters (replicas run the masters' writes again: not counted).
    pub fn calls(&self, command: &str) -> u64 {
        self.masters()
            .into_iter()
            .map(|port| {
                command_counts(&mut self.connection(port))
                    .get(command)
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Calls of one command on each master, by port.
    pub fn calls_by_master(&self, command: &str) -> HashMap<u16, u64> {
        self.masters()
            .into_iter()
            .map(|port| {
                let n = command_counts(&mut self.connection(port))
                    .get(command)
                    .copied()
                    .unwrap_or(0);
                (port, n)
            })
            .collect()
    }

    /// Error replies with this code (`MOVED`, `ASK`, ...) the running nodes sent since the last
    /// [`reset_stats`](Self::reset_stats), from `INFO errorstats`.
    pub fn errors(&self, code: &str) -> u64 {
        let wanted = format!("errorstat_{code}:count=");
        self.live_ports()
            .into_iter()
            .filter_map(|port| try_query::<String>(port, redis::cmd("INFO").arg("errorstats")))
            .map(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix(&wanted)?.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Zeroes `INFO commandstats` and `INFO errorstats` on every running node.
    pub fn reset_stats(&self) {
        for port in self.live_ports() {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query(&mut self.connection(port))
                .expect("CONFIG RESETSTAT");
        }
    }

    /// Keys on every master.
    pub fn key_count(&self) -> u64 {
        self.masters()
            .into_iter()
            .map(|port| {
                redis::cmd("DBSIZE")
                    .query::<u64>(&mut self.connection(port))
                    .expect("DBSIZE")
            })
            .sum()
    }

    fn index(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Kills the node on `port` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, port: u16) {
        let i = self.index(port);
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again, with its cluster config file (it rejoins as the same
    /// node; its data is gone: nothing is persisted).
    pub fn restart(&mut self, port: u16) {
        self.kill(port);
        let i = self.index(port);
        assert!(
            self.spawn(i),
            "the node on port {port} could not start again"
        );
    }

    /// Stops the node on `port` (SIGSTOP): its sockets stay open and nothing answers.
    pub fn freeze(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    /// Resumes a [`freeze`](Self::freeze)d node (SIGCONT).
    pub fn thaw(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    fn signal(&self, port: u16, signal: &str) {
        let i = self.index(port);
        let pid = self.nodes[i]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("node on port {port} is not running"))
            .id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// The replica of the master on `port`, once it is linked and in sync with it.
    pub fn synced_replica_of(&self, port: u16) -> u16 {
        let master = self
            .nodes()
            .into_iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        let started = Instant::now();
        loop {
            let replica = self
                .nodes()
                .into_iter()
                .find(|n| n.master_id.as_deref() == Some(&master.id));
            if let Some(replica) = replica {
                let info: Option<String> =
                    try_query(replica.port, redis::cmd("INFO").arg("replication"));
                if info.is_some_and(|i| i.contains("master_link_status:up")) {
                    return replica.port;
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the master on port {port} has no replica in sync"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running node says `cluster_state:ok`, sees three masters serving
    /// all 16384 slots, and none of them failing.
    pub fn wait_until_ok(&self) {
        self.wait_for("the cluster to be ok on every node", |cluster| {
            cluster.live_ports().into_iter().all(|port| {
                let info: Option<String> = try_query(port, redis::cmd("CLUSTER").arg("INFO"));
                let nodes: Option<String> = try_query(port, redis::cmd("CLUSTER").arg("NODES"));
                let (Some(info), Some(nodes)) = (info, nodes) else {
                    return false;
                };
                let nodes = parse_nodes(&nodes);
                let serving: Vec<_> = nodes
                    .iter()
                    .filter(|n| n.master && !n.slots.is_empty())
                    .collect();
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && serving.len() == 3
                    && serving.iter().all(|n| !n.failing)
            })
        });
    }

    /// Waits until `port` no longer serves slots and another (running) master serves them:
    /// its replica was promoted. Returns the new master's port.
    pub fn wait_for_failover(&self, port: u16, slot: u16) -> u16 {
        let mut promoted = 0;
        self.wait_for("a replica to take over", |cluster| {
            let alive = cluster.live_ports();
            let nodes = cluster.nodes();
            match nodes.iter().find(|n| {
                n.master
                    && !n.failing
                    && n.port != port
                    && alive.contains(&n.port)
                    && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            }) {
                Some(n) => {
                    promoted = n.port;
                    true
                }
                None => false,
            }
        });
        promoted
    }

    /// Polls `done` (every 20 ms) until it holds.
    ///
    /// # Panics
    ///
    /// When it does not within a minute.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(started.elapsed() < PATIENCE, "waited a minute for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `redis-cli --cluster reshard` moving `slots` slots from the master on `from`
    /// to the master on `to` (keys migrated one by one: clients see `MOVED` and `ASK`).
    pub fn reshard(&self, from: u16, to: u16, slots: u32) -> Child {
        let nodes = self.nodes();
        let id = |port: u16| {
            nodes
                .iter()
                .find(|n| n.port == port)
                .map(|n| n.id.clone())
                .unwrap_or_else(|| panic!("no node on port {port}"))
        };
        Command::new(redis_cli())
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .args(["--cluster-pipeline", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}", missing("redis-cli", e)))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A frozen node ignores nothing but SIGKILL; make sure it is not stopped.
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `CLUSTER NODES` text, one [`NodeInfo`] a line.
pub fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let address = fields[1].split('@').next()?;
            let port = address.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = fields[2].split(',').collect();
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let one = s.parse().ok()?;
                        Some((one, one))
                    }
                })
                .collect();
            Some(NodeInfo {
                id: fields[0].to_owned(),
                port,
                master: flags.contains(&"master"),
                failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
            })
        })
        .collect()
}

fn command_counts(conn: &mut redis::Connection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO commandstats");
    cache_runtime::testing::parse_command_counts(&info)
}

fn try_connection(port: u16) -> Option<redis::Connection> {
    let addr = format!("127.0.0.1:{port}");
    TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(200)).ok()?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    redis::cmd("PING").query::<String>(&mut conn).ok()?;
    Some(conn)
}

fn try_query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    cmd.query(&mut try_connection(port)?).ok()
}

fn redis_cli() -> String {
    std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

fn missing(binary: &str, e: std::io::Error) -> String {
    format!(
        "could not start `{binary}` ({e}). The cluster tests need a real Redis and its \
         command-line tool: install them (`apt-get install redis-server redis-tools`, \
         `brew install redis`) or point $REDIS_SERVER / $REDIS_CLI at the binaries"
    )
}

/// `count` different ports, all free now (held together while they are picked).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("port").port())
        .collect()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
