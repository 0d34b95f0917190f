//! `redis-server`s of a test's own, for the tests that need Redis: one
//! plain-TCP node, one TLS-only node (with a CA and a server certificate made
//! for the test by `openssl`), or a cluster (`redis-cli --cluster create`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::certificates::{certificates, installed, scratch_dir};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Starts `redis-server` with `args` and waits until it accepts connections;
/// `None` if it exits first (its port was taken, say).
fn try_spawn_redis(args: &[String]) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(args)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-server starts");
    let stdout = child.stdout.take().expect("redis-server's stdout is piped");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("Ready to accept connections"));
    if ready {
        Some(child)
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

/// Starts `redis-server` with `args` and waits until it accepts connections.
fn spawn_redis(args: &[String]) -> Child {
    try_spawn_redis(args).expect("redis-server did not start")
}

/// Starts `redis-server` with `args(port)` on a free port, trying another
/// when the one chosen is taken before the server binds it (tests running in
/// parallel bind ports too; a cluster node also needs its bus port, +10000).
fn spawn_redis_on_a_free_port(args: impl Fn(u16) -> Vec<String>) -> (Child, u16) {
    for _ in 0..10 {
        let port = free_port();
        if let Some(child) = try_spawn_redis(&args(port)) {
            return (child, port);
        }
    }
    panic!("redis-server did not start on any of 10 free ports");
}

/// A `redis-server` of the test's own, on a free loopback port, without
/// persistence; killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    /// For a TLS-only server: the CA certificate (PEM) that signed its own.
    ca: Option<Vec<u8>>,
}

impl RedisServer {
    pub fn start() -> Option<Self> {
        if !installed("redis-server", "--version") {
            return None;
        }
        let (child, port) =
            spawn_redis_on_a_free_port(|port| vec!["--port".into(), port.to_string()]);
        Some(Self {
            child,
            port,
            ca: None,
        })
    }

    /// A server that speaks TLS only (`--port 0`, `--tls-port`), with a
    /// certificate for `localhost` signed by a CA made for the test.
    pub fn start_tls() -> Option<Self> {
        Self::start_tls_for("localhost")
    }

    /// A TLS-only server whose certificate names `name` only.
    pub fn start_tls_for(name: &str) -> Option<Self> {
        if !installed("redis-server", "--version") || !installed("openssl", "version") {
            return None;
        }
        let dir = scratch_dir("tls");
        let (ca, cert, key) = certificates(&dir, name);
        let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
        let (child, port) = spawn_redis_on_a_free_port(|port| {
            vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(&cert),
                "--tls-key-file".into(),
                path(&key),
                "--tls-ca-cert-file".into(),
                path(&ca),
                "--tls-auth-clients".into(),
                "no".into(),
            ]
        });
        let ca = std::fs::read(&ca).expect("the CA certificate");
        Some(Self {
            child,
            port,
            ca: Some(ca),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>/`, or for a TLS server
    /// `rediss://localhost:<port>/` (the name its certificate is for).
    pub fn url(&self) -> String {
        match self.ca {
            None => format!("redis://{}/", self.addr()),
            Some(_) => format!("rediss://localhost:{}/", self.port),
        }
    }

    /// The CA certificate of a TLS server.
    pub fn ca(&self) -> &[u8] {
        self.ca.as_deref().expect("a TLS server")
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the plain server and starts it again on the same port, empty:
    /// every connection to it is cut.
    pub fn restart(&mut self) {
        assert!(self.ca.is_none(), "restart is for plain servers");
        self.stop();
        self.child = spawn_redis(&["--port".into(), self.port.to_string()]);
    }

    pub fn connection(&self) -> redis::Connection {
        let client = match &self.ca {
            None => redis::Client::open(self.url()),
            Some(ca) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
        };
        client
            .and_then(|client| client.get_connection())
            .expect("the test's own connection to redis-server")
    }

    /// `EVAL` calls the server has run: every `RedisStore` call is one.
    pub fn store_calls(&self) -> u64 {
        eval_calls(&mut self.connection())
    }

    /// Every key, its value and its remaining time to live in milliseconds,
    /// sorted by key. The value of an attempts key (a sorted set) is its
    /// members and scores, `holder=score` joined by spaces.
    pub fn keys(&self) -> Vec<(String, String, i64)> {
        let mut connection = self.connection();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut connection)
            .expect("KEYS");
        keys.sort();
        keys.into_iter()
            .map(|key| {
                let value = if key.contains(":attempts:") {
                    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query(&mut connection)
                        .expect("ZRANGE");
                    members
                        .iter()
                        .map(|(holder, score)| format!("{holder}={score}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    redis::cmd("GET")
                        .arg(&key)
                        .query(&mut connection)
                        .expect("GET")
                };
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(&key)
                    .query(&mut connection)
                    .expect("PTTL");
                (key, value, ttl)
            })
            .collect()
    }

    /// Every key but the attempts (`<prefix>attempts:<digest>`, remembered
    /// for a while after each lease), with its value and time to live.
    pub fn keys_but_attempts(&self) -> Vec<(String, String, i64)> {
        let (attempts, others): (Vec<_>, Vec<_>) = self
            .keys()
            .into_iter()
            .partition(|(key, _, _)| key.contains(":attempts:"));
        for (key, _, ttl) in attempts {
            assert!(ttl > 0, "{key} has no time to live");
        }
        others
    }

    /// The lease keys held now: key and holder.
    pub fn leases(&self) -> Vec<(String, String)> {
        self.keys()
            .into_iter()
            .filter(|(key, _, _)| key.contains(":lease:"))
            .map(|(key, holder, _)| (key, holder))
            .collect()
    }

    /// Makes `key` expire now, as its time to live running out would.
    pub fn expire_now(&self, key: &str) {
        let set: bool = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(1)
            .query(&mut self.connection())
            .expect("PEXPIRE");
        assert!(set, "{key} was not there to expire");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `EVAL` calls a server has run, from `INFO commandstats`.
fn eval_calls(connection: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .expect("INFO commandstats");
    info.lines()
        .filter(|line| line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            let calls = line.split("calls=").nth(1)?;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// A Redis Cluster of the test's own: `primaries` primaries with `replicas`
/// replicas each, on loopback, made by `redis-cli --cluster create`; killed
/// on drop.
pub struct RedisCluster {
    nodes: Vec<(u16, Option<Child>)>,
}

impl RedisCluster {
    pub fn start(primaries: usize, replicas: usize) -> Option<Self> {
        if !installed("redis-server", "--version") || !installed("redis-cli", "--version") {
            return None;
        }
        let nodes: Vec<(u16, Option<Child>)> = (0..primaries * (1 + replicas))
            .map(|_| {
                let (child, port) = spawn_redis_on_a_free_port(|port| {
                    // A fresh directory for each try: a node that failed to
                    // start may have written its cluster configuration.
                    let dir = scratch_dir("cluster");
                    vec![
                        "--port".into(),
                        port.to_string(),
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-node-timeout".into(),
                        "1000".into(),
                        // Replicas sync at once, so that they can take over.
                        "--repl-diskless-sync-delay".into(),
                        "0".into(),
                        "--dir".into(),
                        dir.to_str().expect("a UTF-8 path").to_owned(),
                    ]
                });
                (port, Some(child))
            })
            .collect();
        let cluster = Self { nodes };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for (port, _) in &cluster.nodes {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        cluster.wait_until_ok();
        Some(cluster)
    }

    /// `redis://127.0.0.1:<port>/` of every node still running.
    pub fn urls(&self) -> Vec<String> {
        self.running()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect()
    }

    fn running(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|(_, child)| child.is_some())
            .map(|(port, _)| *port)
    }

    fn connection(port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|client| client.get_connection())
            .expect("a connection to a cluster node")
    }

    /// Waits (at most 30 s) until every running node sees the cluster as
    /// healthy and every replica is in sync with its primary.
    pub fn wait_until_ok(&self) {
        let started = Instant::now();
        loop {
            let states: Vec<bool> = self
                .running()
                .map(|port| {
                    let mut connection = Self::connection(port);
                    let cluster: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query(&mut connection)
                        .unwrap_or_default();
                    let replication: String = redis::cmd("INFO")
                        .arg("replication")
                        .query(&mut connection)
                        .unwrap_or_default();
                    cluster.contains("cluster_state:ok")
                        && (!replication.contains("role:slave")
                            && !replication.contains("role:replica")
                            || replication.contains("master_link_status:up"))
                })
                .collect();
            if states.iter().all(|ok| *ok) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the cluster did not become healthy: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port of the primary that serves `key`.
    pub fn primary_for(&self, key: &str) -> u16 {
        let port = self.running().next().expect("a running node");
        let mut connection = Self::connection(port);
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut connection)
            .expect("CLUSTER KEYSLOT");
        let shards: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut connection)
            .expect("CLUSTER SLOTS");
        for shard in shards {
            let redis::Value::Array(fields) = shard else {
                continue;
            };
            let range: (i64, i64) = (
                redis::from_redis_value(fields[0].clone()).unwrap(),
                redis::from_redis_value(fields[1].clone()).unwrap(),
            );
            if (range.0..=range.1).contains(&slot) {
                let redis::Value::Array(primary) = &fields[2] else {
                    panic!("CLUSTER SLOTS without a primary");
                };
                return redis::from_redis_value::<i64>(primary[1].clone()).unwrap() as u16;
            }
        }
        panic!("no shard serves slot {slot}")
    }

    /// Waits (at most 30 s) until a node other than `dead` serves `key`'s
    /// slot: the failover is over.
    pub fn wait_for_failover(&self, key: &str, dead: u16) {
        let started = Instant::now();
        while self.primary_for(key) == dead {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no replica took over from {dead}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_until_ok();
    }

    /// Kills the node on `port`, as a crashed primary.
    pub fn kill(&mut self, port: u16) {
        for (node, child) in &mut self.nodes {
            if *node == port
                && let Some(mut child) = child.take()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// `EVAL` calls every running node has run.
    pub fn store_calls(&self) -> u64 {
        self.running()
            .map(|port| eval_calls(&mut Self::connection(port)))
            .sum()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
