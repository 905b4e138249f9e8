//! A private Redis Cluster for the cluster bench: 3 masters and 3 replicas on free loopback
//! ports (`redis-server --cluster-enabled yes` ×6, joined by `redis-cli --cluster create`),
//! killed on drop. The behaviour tests have a fuller harness (`integration_tests::cluster`);
//! this one only starts a cluster and waits until every node says `cluster_state:ok`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Six `redis-server` children forming a cluster.
pub struct Cluster {
    children: Vec<Child>,
    ports: Vec<u16>,
    root: PathBuf,
}

impl Cluster {
    /// Starts the nodes, creates the cluster and waits for it.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is missing, or the cluster is not up within 30 s.
    pub fn start() -> Self {
        let root = std::env::temp_dir().join(format!("cache-bench-cluster-{}", std::process::id()));
        let server = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut cluster = Cluster {
            children: Vec::new(),
            ports: Vec::new(),
            root: root.clone(),
        };
        for i in 0..6 {
            let (port, bus) = (free_port(), free_port());
            let dir = root.join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("a node directory");
            let child = Command::new(&server)
                .args([
                    "--port",
                    &port.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--dir", &dir.to_string_lossy()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start `{server}`: {e}; install redis-server"));
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            cluster.wait(|| query(port, "PING").is_some_and(|pong| pong == "PONG"));
        }
        let cli = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let status = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run `{cli}`: {e}; install redis-tools"));
        assert!(status.success(), "redis-cli --cluster create failed");
        for &port in &cluster.ports {
            cluster.wait(|| {
                query(port, "CLUSTER INFO").is_some_and(|info| info.contains("cluster_state:ok"))
            });
        }
        cluster
    }

    fn wait(&self, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the cluster did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn query(port: u16, command: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(200))
        .ok()?;
    let mut words = command.split(' ');
    let mut cmd = redis::cmd(words.next()?);
    for word in words {
        cmd.arg(word);
    }
    cmd.query(&mut conn).ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
