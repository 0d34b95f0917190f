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

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, RedisConnectionInfo};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::reconnecting::Dial;

/// Connects to `host:port` over TLS, checking the certificate for `name`
/// against `pem` (or the system's roots); the handshake with Redis
/// (`AUTH`, `SELECT`) follows, all within `connect_timeout`. The names and
/// roots are checked now.
pub(crate) fn dial(
    host: String,
    port: u16,
    name: &str,
    pem: Option<&[u8]>,
    settings: RedisConnectionInfo,
    connect_timeout: Duration,
) -> Result<Dial, &'static str> {
    let name = ServerName::try_from(name.to_owned()).map_err(|_| "an invalid TLS server name")?;
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
    // The application's crypto provider if it chose one, else aws-lc-rs;
    // nothing is installed process-wide.
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| "no TLS protocol version in common with the crypto provider")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = TlsConnector::from(Arc::new(config));
    let target = Arc::new((host, port, name, tls, settings));
    Ok(Arc::new(move || {
        let target = Arc::clone(&target);
        Box::pin(async move {
            let (host, port, name, tls, settings) = &*target;
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                let stream = tls.connect(name.clone(), tcp).await?;
                // Every call is bounded by the store timeout.
                let config = AsyncConnectionConfig::new().set_response_timeout(None);
                let (connection, driver) =
                    MultiplexedConnection::new_with_config(settings, stream, config).await?;
                tokio::spawn(driver);
                Ok::<_, ::redis::RedisError>(connection)
            };
            tokio::time::timeout(connect_timeout, connect)
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "connecting to Redis timed out")
                })?
        })
    }))
}
