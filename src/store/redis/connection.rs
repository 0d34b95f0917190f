//! How a [`RedisStore`](super::RedisStore) reaches Redis: one node or a
//! cluster, over TCP or TLS, or a connection the application hands in.
//!
//! The connection is made on first use and shared by every clone of the
//! store; each call works on a cheap clone of it (the multiplexed connection
//! manager, the cluster connection, or the application's own).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture,
    TlsCertificates, Value,
};
use tokio::sync::OnceCell;

use super::named_tls::NamedTls;
use super::{InvalidRedisUrl, RedisStoreError};

/// Where the store connects, and the connection once made.
#[derive(Clone)]
pub(crate) struct Connector {
    target: Target,
    connect_timeout: Duration,
    /// Trusted instead of the system's roots, for TLS.
    root_certificate: Option<Arc<[u8]>>,
    /// The name a single node's certificate is checked for, if not its host.
    server_name: Option<Arc<str>>,
    established: Arc<OnceCell<Connection>>,
}

#[derive(Clone)]
enum Target {
    Node(Box<ConnectionInfo>),
    Cluster(Vec<ConnectionInfo>),
    /// The application's own connection: used as it is.
    Given,
}

impl Connector {
    /// One node at `url` (`redis://` or `rediss://`).
    pub(crate) fn node(url: &str, connect_timeout: Duration) -> Result<Self, InvalidRedisUrl> {
        let info = url.into_connection_info().map_err(InvalidRedisUrl::redis)?;
        if !matches!(
            info.addr(),
            ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. }
        ) {
            return Err(InvalidRedisUrl::message(
                "only redis:// and rediss:// URLs are supported",
            ));
        }
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
        let established = OnceCell::new_with(Some(Connection(Box::new(connection))));
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
        let tls = match &self.target {
            Target::Node(info) => is_tls(info),
            Target::Cluster(nodes) => nodes.iter().all(is_tls),
            Target::Given => {
                return Err(InvalidRedisUrl::message(
                    "a connection handed in brings its own TLS settings",
                ));
            }
        };
        if !tls {
            return Err(InvalidRedisUrl::message(
                "a TLS root certificate needs rediss:// URLs",
            ));
        }
        self.root_certificate = Some(Arc::from(pem));
        // Building the client checks the certificate now, not at first use.
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
        self.named_tls().map(drop)
    }

    /// The connection for a TLS node checked for another name, if one is set.
    fn named_tls(&self) -> Result<Option<NamedTls>, InvalidRedisUrl> {
        let (Some(name), Target::Node(info)) = (&self.server_name, &self.target) else {
            return Ok(None);
        };
        let ConnectionAddr::TcpTls { host, port, .. } = info.addr() else {
            return Ok(None);
        };
        ensure_crypto_provider();
        NamedTls::new(
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
        match &self.target {
            Target::Node(info) if is_tls(info) => "one node, TLS",
            Target::Node(_) => "one node",
            Target::Cluster(nodes) if nodes.iter().all(is_tls) => "cluster, TLS",
            Target::Cluster(_) => "cluster",
            Target::Given => "a connection handed in",
        }
    }

    /// A connection for one call: made on first use, then shared.
    pub(crate) async fn connection(&self) -> Result<Connection, RedisStoreError> {
        let connection = self
            .established
            .get_or_try_init(|| async {
                if let Some(named) = self.named_tls()? {
                    return Ok(Connection(Box::new(named)));
                }
                match self.client()? {
                    Built::Node(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.connect_timeout))
                            // Every call is bounded by the store timeout.
                            .set_response_timeout(None)
                            .set_number_of_retries(1);
                        let manager = ConnectionManager::new_lazy_with_config(*client, config)
                            .map_err(RedisStoreError)?;
                        Ok::<_, RedisStoreError>(Connection(Box::new(manager)))
                    }
                    Built::Cluster(client) => {
                        let connection = client
                            .get_async_connection()
                            .await
                            .map_err(RedisStoreError)?;
                        Ok(Connection(Box::new(connection)))
                    }
                    Built::Given => unreachable!("a connection handed in is established"),
                }
            })
            .await?;
        Ok(connection.clone())
    }

    fn client(&self) -> Result<Built, InvalidRedisUrl> {
        let certificates = self.root_certificate.as_ref().map(|pem| TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        });
        let tls = match &self.target {
            Target::Node(info) => is_tls(info),
            Target::Cluster(nodes) => nodes.iter().all(is_tls),
            Target::Given => return Ok(Built::Given),
        };
        if tls {
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
