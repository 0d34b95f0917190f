//! A `redis-server` of a test's own, for the tests that need Redis.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::missing_service;

/// A `redis-server` of the test's own, on a free loopback port, without
/// persistence; killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            missing_service("redis-server");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server starts");
        let stdout = child.stdout.take().expect("redis-server's stdout is piped");
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        assert!(ready, "redis-server did not start");
        Some(Self { child, port })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr())
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("the test's own connection to redis-server")
    }

    /// Every key, its value and its remaining time to live in milliseconds,
    /// sorted by key.
    pub fn keys(&self) -> Vec<(String, String, i64)> {
        let mut connection = self.connection();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut connection)
            .expect("KEYS");
        keys.sort();
        keys.into_iter()
            .map(|key| {
                let value: String = redis::cmd("GET")
                    .arg(&key)
                    .query(&mut connection)
                    .expect("GET");
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(&key)
                    .query(&mut connection)
                    .expect("PTTL");
                (key, value, ttl)
            })
            .collect()
    }

    /// Every key but the lease takers (`<prefix>taker:<digest>`, remembered
    /// for a while after each lease), with its value and time to live.
    pub fn keys_but_takers(&self) -> Vec<(String, String, i64)> {
        let (takers, others): (Vec<_>, Vec<_>) = self
            .keys()
            .into_iter()
            .partition(|(key, _, _)| key.contains(":taker:"));
        for (key, _, ttl) in takers {
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
