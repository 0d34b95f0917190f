//! A DynamoDB-compatible server of a test's own: moto's server (pinned by
//! `.ci/run`, which installs it into `target/dynamodb-venv`), on a free
//! loopback port, with a fresh table per store.
//!
//! The Python that runs it is `$DYNAMODB_SERVER_PYTHON` if set, else
//! `target/dynamodb-venv/bin/python`. Without either, the tests that need it
//! fail under `CI=true` and are skipped elsewhere.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tower_resolve_customer::DynamoDbStore;

use super::missing_service;

const LAUNCHER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/common/dynamodb_server.py"
);

/// The Python that has moto's server, if any.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("DYNAMODB_SERVER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dynamodb-venv/bin/python")
        });
    let found = Command::new(&python)
        .args(["-c", "import moto.server"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        missing_service("a DynamoDB-compatible server (moto[server] in target/dynamodb-venv)");
    }
    found.then_some(python)
}

/// A running server; stopped when dropped.
pub struct DynamoDbServer {
    child: Child,
    addr: SocketAddr,
}

impl DynamoDbServer {
    /// Starts a server, or `None` (after [`missing_service`]) when none is
    /// installed.
    pub fn start() -> Option<Self> {
        let python = python()?;
        let mut child = Command::new(python)
            .arg(LAUNCHER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the DynamoDB-compatible server starts");
        let stdout = child.stdout.take().expect("its stdout is piped");
        let port: u16 = BufReader::new(stdout)
            .lines()
            .next()
            .and_then(Result::ok)
            .and_then(|line| line.trim().parse().ok())
            .expect("the server prints its port");
        Some(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client for the server at `addr` (this one, or a proxy in front of
    /// it), with static test credentials.
    pub fn client_for(addr: SocketAddr) -> Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(format!("http://{addr}"))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDTEST",
                "test-secret",
                None,
                None,
                "test",
            ))
            .build();
        Client::from_conf(config)
    }

    /// A client for this server.
    pub fn client(&self) -> Client {
        Self::client_for(self.addr)
    }

    /// A new table's name, different at every call.
    pub fn new_table_name() -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        format!("registrations-{}", NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// A server and a new table on it, created (with TTL enabled) by the
    /// store's own helper; `None` as [`start`](Self::start).
    pub async fn start_with_table() -> Option<(Self, String)> {
        let server = Self::start()?;
        let table = Self::new_table_name();
        DynamoDbStore::new(server.client(), &table)
            .create_table()
            .await
            .expect("the table is created");
        Some((server, table))
    }
}

impl Drop for DynamoDbServer {
    fn drop(&mut self) {
        // Closing its standard input stops it; kill in case it hangs.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
