//! HTTPS for the emulator: a rustls acceptor from PEM files.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// An acceptor serving `certificate_chain` with `private_key` (both PEM), on
/// the aws-lc-rs provider (whatever the process installed as its default).
pub(crate) fn acceptor(certificate_chain: &[u8], private_key: &[u8]) -> io::Result<TlsAcceptor> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let chain = CertificateDer::pem_slice_iter(certificate_chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("the certificate chain", &e))?;
    if chain.is_empty() {
        return Err(invalid("the certificate chain", &"no certificate"));
    }
    let key =
        PrivateKeyDer::from_pem_slice(private_key).map_err(|e| invalid("the private key", &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid("TLS", &e))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| invalid("the certificate and key", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
