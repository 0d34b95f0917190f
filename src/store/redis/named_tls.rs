//! A TLS connection to one Redis node whose certificate is checked against a
//! name other than the address connected to (see
//! [`RedisStore::tls_server_name`](super::RedisStore::tls_server_name)).
//!
//! The `redis` crate takes the TLS server name from the URL's host, so this
//! makes the TCP and TLS connection itself (rustls, with the given or the
//! system's roots) and hands the stream to a `MultiplexedConnection`. A
//! connection that failed is made again by the next call.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{
    AsyncConnectionConfig, Cmd, Pipeline, RedisConnectionInfo, RedisError, RedisFuture,
    RedisResult, Value,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One node, reached at `host:port`, its certificate checked for `name`.
#[derive(Clone)]
pub(crate) struct NamedTls {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    port: u16,
    name: ServerName<'static>,
    tls: TlsConnector,
    settings: RedisConnectionInfo,
    connect_timeout: Duration,
    current: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl NamedTls {
    /// Checks `name` and the roots (`pem`, or the system's) now; connects on
    /// first use.
    pub(crate) fn new(
        host: String,
        port: u16,
        name: &str,
        pem: Option<&[u8]>,
        settings: RedisConnectionInfo,
        connect_timeout: Duration,
    ) -> Result<Self, &'static str> {
        let name =
            ServerName::try_from(name.to_owned()).map_err(|_| "an invalid TLS server name")?;
        let mut roots = rustls::RootCertStore::empty();
        match pem {
            Some(pem) => {
                for certificate in CertificateDer::pem_slice_iter(pem) {
                    let certificate = certificate.map_err(|_| "an unreadable PEM certificate")?;
                    roots
                        .add(certificate)
                        .map_err(|_| "an unusable root certificate")?;
                }
            }
            None => {
                for certificate in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(certificate);
                }
            }
        }
        if roots.is_empty() {
            return Err("no root certificate to verify the server with");
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            inner: Arc::new(Inner {
                host,
                port,
                name,
                tls: TlsConnector::from(Arc::new(config)),
                settings,
                connect_timeout,
                current: tokio::sync::Mutex::default(),
            }),
        })
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let inner = &self.inner;
        let mut current = inner.current.lock().await;
        if let Some(connection) = &*current {
            return Ok(connection.clone());
        }
        let connect = async {
            let tcp = TcpStream::connect((inner.host.as_str(), inner.port)).await?;
            tcp.set_nodelay(true)?;
            inner.tls.connect(inner.name.clone(), tcp).await
        };
        let stream = tokio::time::timeout(inner.connect_timeout, connect)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "connecting to Redis timed out")
            })??;
        // Every call is bounded by the store timeout.
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        let (connection, driver) =
            MultiplexedConnection::new_with_config(&inner.settings, stream, config).await?;
        tokio::spawn(driver);
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets a connection that failed, so the next call makes a new one.
    async fn check(&self, error: &RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error() {
            *self.inner.current.lock().await = None;
        }
    }
}

impl ConnectionLike for NamedTls {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let reply = connection.req_packed_command(cmd).await;
            if let Err(error) = &reply {
                self.check(error).await;
            }
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let reply = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            if let Err(error) = &reply {
                self.check(error).await;
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.settings.db()
    }
}
