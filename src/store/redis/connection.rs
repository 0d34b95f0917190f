//! How a [`RedisStore`](super::RedisStore) reaches Redis: one node or a
//! cluster, over TCP or TLS, or a connection the application hands in.
//!
//! The connection is set up on first use and shared by every clone of the
//! store; each call works on a cheap clone of it. One node is reached over a
//! [`Reconnecting`] connection (remade whenever it fails), a cluster over the
//! `redis` crate's cluster connection (which follows the topology and
//! reconnects itself), and a connection handed in is used as it is.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::sync::OnceLock;

use ::redis::aio::ConnectionLike;
use ::redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    Pipeline, RedisFuture, TlsCertificates, Value,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::reconnecting::{Dial, Reconnecting};
use super::{InvalidRedisUrl, RedisStoreError, named_tls};

/// Where the store connects, and the connection once made.
#[derive(Clone)]
pub(crate) struct Connector {
    target: Target,
    connect_timeout: Duration,
    /// Trusted instead of the system's roots, for TLS.
    root_certificate: Option<Arc<[u8]>>,
    /// The name a single node's certificate is checked for, if not its host.
    server_name: Option<Arc<str>>,
    established: Arc<OnceLock<Connection>>,
}

#[derive(Clone)]
enum Target {
    Node(Box<ConnectionInfo>),
    Cluster(Vec<ConnectionInfo>),
    /// The application's own connection: used as it is.
    Given,
}

impl Target {
    /// Whether the store reaches its node or cluster over TLS (a connection
    /// handed in brings its own settings, and counts as not).
    fn is_tls(&self) -> bool {
        match self {
            Self::Node(info) => is_tls(info),
            Self::Cluster(nodes) => nodes.iter().all(is_tls),
            Self::Given => false,
        }
    }
}

impl Connector {
    /// One node at `url` (`redis://` or `rediss://`).
    pub(crate) fn node(url: &str, connect_timeout: Duration) -> Result<Self, InvalidRedisUrl> {
        let info = url.into_connection_info().map_err(InvalidRedisUrl::redis)?;
        check_addr(&info)?;
        Ok(Self::new(Target::Node(Box::new(info)), connect_timeout))
    }

    /// A cluster reached through any of `nodes`, which must agree on TLS.
    pub(crate) fn cluster<I, S>(
        nodes: I,
        connect_timeout: Duration,
    ) -> Result<Self, InvalidRedisUrl>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = nodes
            .into_iter()
            .map(|url| url.as_ref().into_connection_info())
            .collect::<Result<Vec<_>, _>>()
            .map_err(InvalidRedisUrl::redis)?;
        for node in &nodes {
            check_addr(node)?;
        }
        let Some(first) = nodes.first() else {
            return Err(InvalidRedisUrl::message(
                "a cluster needs at least one node",
            ));
        };
        let tls = is_tls(first);
        if nodes.iter().any(|node| is_tls(node) != tls) {
            return Err(InvalidRedisUrl::message(
                "the cluster's nodes mix redis:// and rediss:// URLs",
            ));
        }
        Ok(Self::new(Target::Cluster(nodes), connect_timeout))
    }

    /// The application's own `connection`.
    pub(crate) fn given<C>(connection: C) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let established = OnceLock::from(Connection(Box::new(connection)));
        Self {
            target: Target::Given,
            connect_timeout: Duration::ZERO,
            root_certificate: None,
            server_name: None,
            established: Arc::new(established),
        }
    }

    fn new(target: Target, connect_timeout: Duration) -> Self {
        Self {
            target,
            connect_timeout,
            root_certificate: None,
            server_name: None,
            established: Arc::default(),
        }
    }

    pub(crate) fn set_connect_timeout(&mut self, timeout: Duration) {
        self.connect_timeout = timeout;
    }

    /// Trusts `pem` (one or more PEM certificates) instead of the system's
    /// roots. Only for `rediss://` targets: a plain-TCP target is refused
    /// rather than left unprotected.
    pub(crate) fn set_root_certificate(&mut self, pem: Vec<u8>) -> Result<(), InvalidRedisUrl> {
        if let Target::Given = self.target {
            return Err(InvalidRedisUrl::message(
                "a connection handed in brings its own TLS settings",
            ));
        }
        if !self.target.is_tls() {
            return Err(InvalidRedisUrl::message(
                "a TLS root certificate needs rediss:// URLs",
            ));
        }
        let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        if !certificates.is_ok_and(|certificates| !certificates.is_empty()) {
            return Err(InvalidRedisUrl::message(
                "the TLS root certificate is not one or more PEM certificates",
            ));
        }
        self.root_certificate = Some(Arc::from(pem));
        // Building the connection checks the certificates now, not at first
        // use.
        self.dial_named().map(drop)?;
        self.client().map(drop)
    }

    /// Checks a single TLS node's certificate for `name` instead of the
    /// URL's host.
    pub(crate) fn set_server_name(&mut self, name: &str) -> Result<(), InvalidRedisUrl> {
        match &self.target {
            Target::Node(info) if is_tls(info) => {}
            Target::Node(_) => {
                return Err(InvalidRedisUrl::message(
                    "a TLS server name needs a rediss:// URL",
                ));
            }
            Target::Cluster(_) => {
                return Err(InvalidRedisUrl::message(
                    "a cluster's nodes are checked for the names the cluster gives them",
                ));
            }
            Target::Given => {
                return Err(InvalidRedisUrl::message(
                    "a connection handed in brings its own TLS settings",
                ));
            }
        }
        self.server_name = Some(Arc::from(name));
        // Checks the name and the roots now, not at first use.
        self.dial_named().map(drop)
    }

    /// How to reach a TLS node checked for another name, if one is set.
    fn dial_named(&self) -> Result<Option<Dial>, InvalidRedisUrl> {
        let (Some(name), Target::Node(info)) = (&self.server_name, &self.target) else {
            return Ok(None);
        };
        let ConnectionAddr::TcpTls { host, port, .. } = info.addr() else {
            return Ok(None);
        };
        named_tls::dial(
            host.clone(),
            *port,
            name,
            self.root_certificate.as_deref(),
            info.redis_settings().clone(),
            self.connect_timeout,
        )
        .map(Some)
        .map_err(InvalidRedisUrl::message)
    }

    /// How the store connects, for `Debug` (never the URL: it may hold a
    /// password).
    pub(crate) fn describe(&self) -> &'static str {
        match (&self.target, self.target.is_tls()) {
            (Target::Node(_), true) => "one node, TLS",
            (Target::Node(_), false) => "one node",
            (Target::Cluster(_), true) => "cluster, TLS",
            (Target::Cluster(_), false) => "cluster",
            (Target::Given, _) => "a connection handed in",
        }
    }

    /// A connection for one call: set up on first use (without waiting for
    /// the network), then shared.
    pub(crate) async fn connection(&self) -> Result<Connection, RedisStoreError> {
        if let Some(connection) = self.established.get() {
            return Ok(connection.clone());
        }
        let connection = self.set_up()?;
        Ok(self.established.get_or_init(|| connection).clone())
    }

    fn set_up(&self) -> Result<Connection, InvalidRedisUrl> {
        if let Some(dial) = self.dial_named()? {
            return Ok(Connection(Box::new(Reconnecting::new(dial, self.db()))));
        }
        match self.client()? {
            Built::Node(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    // Every call is bounded by the store timeout.
                    .set_response_timeout(None);
                let client = Arc::new(*client);
                let dial: Dial = Arc::new(move || {
                    let (client, config) = (Arc::clone(&client), config.clone());
                    Box::pin(async move {
                        client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await
                    })
                });
                Ok(Connection(Box::new(Reconnecting::new(dial, self.db()))))
            }
            Built::Cluster(client) => {
                // Connects in the background: nothing for a caller's timeout
                // to cancel half-way.
                let config = ClusterConfig::new().set_connection_timeout(self.connect_timeout);
                let connection = client.get_pending_async_connection_with_config(config);
                Ok(Connection(Box::new(connection)))
            }
            Built::Given => unreachable!("a connection handed in is set up already"),
        }
    }

    fn db(&self) -> i64 {
        match &self.target {
            Target::Node(info) => info.redis_settings().db(),
            _ => 0,
        }
    }

    fn client(&self) -> Result<Built, InvalidRedisUrl> {
        let certificates = self.root_certificate.as_ref().map(|pem| TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        });
        if self.target.is_tls() {
            ensure_crypto_provider();
        }
        match &self.target {
            Target::Node(info) => {
                let client = match certificates {
                    Some(certificates) => Client::build_with_tls((**info).clone(), certificates),
                    None => Client::open((**info).clone()),
                };
                client
                    .map(|client| Built::Node(Box::new(client)))
                    .map_err(InvalidRedisUrl::redis)
            }
            Target::Cluster(nodes) => {
                let mut builder = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(self.connect_timeout);
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                builder
                    .build()
                    .map(|client| Built::Cluster(Box::new(client)))
                    .map_err(InvalidRedisUrl::redis)
            }
            Target::Given => Ok(Built::Given),
        }
    }
}

enum Built {
    Node(Box<Client>),
    Cluster(Box<ClusterClient>),
    Given,
}

fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), ConnectionAddr::TcpTls { .. })
}

/// TCP or verified TLS only: no Unix sockets, and no `#insecure` (which turns
/// certificate checks off wherever the `redis` crate's insecure TLS feature
/// is compiled in).
fn check_addr(info: &ConnectionInfo) -> Result<(), InvalidRedisUrl> {
    match info.addr() {
        ConnectionAddr::Tcp(..) => Ok(()),
        ConnectionAddr::TcpTls {
            insecure: false, ..
        } => Ok(()),
        ConnectionAddr::TcpTls { insecure: true, .. } => Err(InvalidRedisUrl::message(
            "TLS certificate checks cannot be turned off (#insecure)",
        )),
        _ => Err(InvalidRedisUrl::message(
            "only redis:// and rediss:// URLs are supported",
        )),
    }
}

/// rustls needs a process-wide crypto provider; if the application chose
/// none, this installs aws-lc-rs (the one the AWS SDK uses).
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one at the same moment: either wins.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// A connection that every call clones.
pub(crate) struct Connection(Box<dyn SharedConnection>);

impl Clone for Connection {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connection")
    }
}

/// A Redis connection that can be shared by cloning.
trait SharedConnection: ConnectionLike + Send + Sync {
    fn clone_box(&self) -> Box<dyn SharedConnection>;
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> SharedConnection for C {
    fn clone_box(&self) -> Box<dyn SharedConnection> {
        Box::new(self.clone())
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}
