//! A local Marketplace Metering API for tests and offline development (feature
//! `test-util`).
//!
//! Nobody can mint a real registration token outside AWS Marketplace, and the
//! usual AWS emulators do not implement `ResolveCustomer`. [`MeteringEmulator`]
//! does: a real HTTP/1.1 server on `127.0.0.1` that speaks the AWS JSON 1.1
//! protocol exactly as `aws-sdk-marketplacemetering` sends it, so tests exercise
//! the SDK's serialization, signing, retries and error parsing, not a stub.
//!
//! ```
//! use tower_resolve_customer::ResolvedCustomer;
//! use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let emulator = MeteringEmulator::start().await?;
//! emulator.set_policy(RedemptionPolicy::SingleUse);
//! let token = MeteringEmulator::mint_token();
//! emulator.register(&token, ResolvedCustomer::new("123456789012", "prod-demo"));
//!
//! let client = emulator.client(); // loopback endpoint, static test credentials
//! let output = client.resolve_customer().registration_token(&token).send().await.unwrap();
//! assert_eq!(output.customer_aws_account_id(), Some("123456789012"));
//!
//! // Resubmitted: a single-use token is now "expired".
//! let again = client.resolve_customer().registration_token(&token).send().await;
//! assert!(again.unwrap_err().into_service_error().is_expired_token_exception());
//! assert_eq!(emulator.redemptions_of(&token), 1);
//! # Ok(())
//! # }
//! ```

mod admin;
mod entitlements;
mod registry;
mod rpc_v2_cbor;
mod server;
mod signature;
mod sts;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_marketplacemetering::config::retry::RetryConfig;
use aws_sdk_marketplacemetering::config::{BehaviorVersion, Builder, Credentials, Region};
use aws_sdk_marketplacemetering::{Client, Config};
use base64::Engine;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use self::entitlements::{Entitlement, EntitlementValue};
pub use self::registry::{Fault, RedemptionPolicy};
use self::registry::{Operation, Registry, Verdict};
use crate::aws::AwsMarketplaceResolver;
use crate::customer::ResolvedCustomer;

/// How long a registered token stays valid unless told otherwise: one hour.
pub const DEFAULT_TOKEN_VALIDITY: Duration = Duration::from_secs(60 * 60);

/// The region the emulator's clients are configured with.
pub const EMULATOR_REGION: &str = "us-east-1";

/// A local Marketplace Metering API serving `ResolveCustomer`.
///
/// - `POST /` with `Content-Type: application/x-amz-json-1.1`,
///   `X-Amz-Target: AWSMPMeteringService.ResolveCustomer` and
///   `{"RegistrationToken": "..."}`.
/// - Success: `CustomerIdentifier` (when registered), `CustomerAWSAccountId`,
///   `ProductCode`, `LicenseArn` (when registered), `Metadata.AgreementId`
///   (when registered), and an `x-amzn-RequestId` header.
/// - Errors: `{"__type": "...", "message": "..."}`, HTTP 400 for
///   `InvalidTokenException` (unregistered token), `ExpiredTokenException`
///   (expired, or resubmitted under [`RedemptionPolicy::SingleUse`]),
///   `ThrottlingException` and `DisabledApiException`; HTTP 500 for
///   `InternalServiceErrorException`. An unknown target gets
///   `UnknownOperationException`, a malformed body `SerializationException`, a
///   missing token `ValidationException`.
/// - [`Fault`]s scripted with [`inject`](Self::inject) replace the answers of
///   the next calls, one fault per call, retries included.
///
/// The server stops when the emulator is dropped.
pub struct MeteringEmulator {
    addr: SocketAddr,
    tls: bool,
    registry: Arc<Registry>,
    server: tokio::task::JoinHandle<()>,
}

impl MeteringEmulator {
    /// Starts a server on `127.0.0.1` on a free port. Needs a tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a server on `addr` (port 0 for a free one). Needs a tokio
    /// runtime.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Self::serve_on(addr, None).await
    }

    /// Starts an HTTPS server on `addr` (port 0 for a free one) with
    /// `certificate_chain` and `private_key` (PEM), for clients that must be
    /// shown a certificate: a custom CA bundle, or checks turned off.
    pub async fn bind_tls(
        addr: SocketAddr,
        certificate_chain: &[u8],
        private_key: &[u8],
    ) -> std::io::Result<Self> {
        let acceptor = tls::acceptor(certificate_chain, private_key)?;
        Self::serve_on(addr, Some(acceptor)).await
    }

    async fn serve_on(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let is_tls = tls.is_some();
        let registry = Arc::new(Registry::default());
        let server = tokio::spawn(serve(listener, tls, Arc::clone(&registry)));
        Ok(Self {
            addr,
            tls: is_tls,
            registry,
            server,
        })
    }

    /// The base URL to configure an SDK client with: `http://127.0.0.1:<port>`
    /// (`https://` for a server started with [`bind_tls`](Self::bind_tls)).
    pub fn endpoint_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The server's socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A fresh, unique token of the real shape: 184 characters of standard
    /// base64 (with `+`, `/` and `=` likely).
    pub fn mint_token() -> String {
        static MINTED: AtomicU64 = AtomicU64::new(0);
        let n = MINTED.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = [
            &n.to_le_bytes()[..],
            &nanos.to_le_bytes(),
            &std::process::id().to_le_bytes(),
        ]
        .concat();
        base64::engine::general_purpose::STANDARD.encode(expand(&seed, 137))
    }

    /// Registers `token` as resolving to `customer` for
    /// [`DEFAULT_TOKEN_VALIDITY`].
    pub fn register(&self, token: &str, customer: ResolvedCustomer) {
        self.register_for(token, customer, DEFAULT_TOKEN_VALIDITY);
    }

    /// Registers `token` as resolving to `customer` until `valid_for` has passed
    /// (on tokio's clock, so a paused test can let it expire).
    pub fn register_for(&self, token: &str, customer: ResolvedCustomer, valid_for: Duration) {
        self.registry
            .register(token.to_owned(), customer, valid_for);
    }

    /// Registers every token in `json`: a JSON array of objects with the
    /// fields of the admin API's `POST /_emulator/tokens`
    /// (`RegistrationToken`, `CustomerAWSAccountId`, `ProductCode`, and
    /// optionally `CustomerIdentifier`, `LicenseArn`, `AgreementId`,
    /// `ValidForSeconds`). Nothing is registered unless all of them are
    /// valid; the error says which one is not, and why.
    pub fn preload(&self, json: &str) -> Result<usize, PreloadError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| PreloadError(format!("not JSON: {e}")))?;
        let serde_json::Value::Array(entries) = value else {
            return Err(PreloadError("expected a JSON array of tokens".into()));
        };
        let mut registrations = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let registration = admin::registration(entry)
                .map_err(|message| PreloadError(format!("token {index}: {message}")))?;
            registrations.push(registration);
        }
        let count = registrations.len();
        for (token, customer, valid_for) in registrations {
            self.registry.register(token, customer, valid_for);
        }
        Ok(count)
    }

    /// Knows `access_key` from now on, with `secret`: once any access key is
    /// given, requests signed with another get `InvalidClientTokenId` (403),
    /// and a signature that does not match its secret `SignatureDoesNotMatch`
    /// (403). Until then any well-formed signature is accepted. Either way a
    /// request without a signature gets `MissingAuthenticationToken` (403), a
    /// malformed one or one scoped to another service than `aws-marketplace`
    /// `IncompleteSignature` (400), and one dated more than 15 minutes from
    /// now `RequestExpired` (400).
    pub fn accept_credentials(&self, access_key: impl Into<String>, secret: impl Into<String>) {
        self.registry
            .accept_credentials(access_key.into(), secret.into());
    }

    /// Adds `entitlement` to those `GetEntitlements` answers with (the
    /// Entitlement Service's API on the same endpoint).
    pub fn add_entitlement(&self, entitlement: Entitlement) {
        self.registry.add_entitlements([entitlement]);
    }

    /// Makes each of the next `times` `GetEntitlements` calls fail with
    /// `fault` (a [`Fault::Latency`] delays them instead;
    /// [`Fault::DisabledApi`] is not an Entitlement Service error and answers
    /// `DisabledApiException` all the same).
    pub fn inject_entitlement_faults(&self, fault: Fault, times: usize) {
        self.registry
            .push_faults(Operation::GetEntitlements, fault, times);
    }

    /// Well-formed `GetEntitlements` calls, faulted or not.
    pub fn entitlement_calls(&self) -> usize {
        self.registry.entitlement_calls()
    }

    /// Lets callers assume `role_arn` with STS `AssumeRole` (served on the same
    /// endpoint, in the AWS Query protocol), if they give `external_id` when
    /// one is set; the emulator issues temporary credentials (an `ASIA...`
    /// access key, a secret and a session token) and verifies signatures made
    /// with them.
    pub fn allow_role(&self, role_arn: impl Into<String>, external_id: Option<&str>) {
        self.registry
            .allow_role(role_arn.into(), external_id.map(str::to_owned));
    }

    /// Accepts Marketplace calls (ResolveCustomer, GetEntitlements) only when
    /// signed with temporary credentials of `role_arn` and their session
    /// token, as when only the seller account that published the product may
    /// resolve its tokens; other callers get `AccessDeniedException` (400).
    pub fn require_role(&self, role_arn: impl Into<String>) {
        self.registry.require_role(role_arn.into());
    }

    /// Chooses how often a token may be redeemed.
    pub fn set_policy(&self, policy: RedemptionPolicy) {
        self.registry.set_policy(policy);
    }

    /// Makes the next call fail with `fault` (a [`Fault::Latency`] delays it
    /// instead).
    pub fn inject(&self, fault: Fault) {
        self.inject_times(fault, 1);
    }

    /// Makes each of the next `times` calls fail with `fault`.
    pub fn inject_times(&self, fault: Fault, times: usize) {
        self.registry
            .push_faults(Operation::ResolveCustomer, fault, times);
    }

    /// Drops the faults not used yet.
    pub fn clear_faults(&self) {
        self.registry.clear_faults();
    }

    /// Well-formed `ResolveCustomer` calls made with `token`, faulted or not.
    pub fn calls_for(&self, token: &str) -> usize {
        self.registry.calls_for(token)
    }

    /// Successful redemptions of `token`.
    pub fn redemptions_of(&self, token: &str) -> usize {
        self.registry.redemptions_of(token)
    }

    /// The `amz-sdk-request` attempt numbers seen, in order (1 for a first try,
    /// 2 for the first retry, ...).
    pub fn attempts_seen(&self) -> Vec<u32> {
        self.registry.attempts()
    }

    /// Every HTTP request received, well-formed or not.
    pub fn requests(&self) -> usize {
        self.registry.requests()
    }

    /// An SDK configuration builder pointed at the emulator: loopback endpoint,
    /// static test credentials, [`EMULATOR_REGION`], standard retries (3
    /// attempts) with millisecond backoff. Adjust it (timeouts, retries) and
    /// build a client with `Client::from_conf(builder.build())`.
    pub fn config_builder(&self) -> Builder {
        Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint_url())
            .region(Region::new(EMULATOR_REGION))
            .credentials_provider(test_credentials())
            .retry_config(test_retries())
    }

    /// An [`AwsEntitlements`](crate::AwsEntitlements) calling this emulator's
    /// `GetEntitlements` through the AWS SDK (RPC v2 CBOR), configured like
    /// [`config_builder`](Self::config_builder) (feature `entitlements`).
    #[cfg(feature = "entitlements")]
    pub fn entitlements(&self) -> crate::AwsEntitlements {
        use aws_sdk_marketplaceentitlement as entitlement;
        let config = entitlement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint_url())
            .region(Region::new(EMULATOR_REGION))
            .credentials_provider(test_credentials())
            .retry_config(test_retries())
            .build();
        crate::AwsEntitlements::new(entitlement::Client::from_conf(config))
    }

    /// A client built from [`config_builder`](Self::config_builder).
    pub fn client(&self) -> Client {
        Client::from_conf(self.config_builder().build())
    }

    /// An [`AwsMarketplaceResolver`] using [`client`](Self::client).
    pub fn resolver(&self) -> AwsMarketplaceResolver {
        AwsMarketplaceResolver::new(self.client())
    }

    /// A resolver that redeems tokens in this emulator's registry without the
    /// wire: the answers [`resolver`](Self::resolver) would give (the same
    /// redemption policy, counters and scripted faults, mapped as the AWS
    /// resolver maps them, with no SDK retries), on tokio's clock.
    ///
    /// For tests that pause time (many replicas, scripted interleavings),
    /// where a real socket would let paused time jump past a store timeout.
    /// The wire protocol itself is covered by [`resolver`](Self::resolver).
    pub fn in_process_resolver(&self) -> InProcessResolver {
        InProcessResolver {
            registry: Arc::clone(&self.registry),
        }
    }
}

/// The static credentials the emulator's SDK configurations sign with.
fn test_credentials() -> Credentials {
    Credentials::new(
        "AKIDEMULATOREXAMPLE",
        "emulator-secret-access-key",
        None,
        None,
        "metering-emulator",
    )
}

/// Standard retries (3 attempts) with millisecond backoff.
fn test_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(20))
}

/// Tokens given to [`MeteringEmulator::preload`] that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreloadError(String);

impl std::fmt::Display for PreloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PreloadError {}

/// Redeems tokens in a [`MeteringEmulator`]'s registry without the wire; made
/// by [`MeteringEmulator::in_process_resolver`].
#[derive(Clone)]
pub struct InProcessResolver {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for InProcessResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessResolver").finish_non_exhaustive()
    }
}

impl crate::Resolver for InProcessResolver {
    async fn resolve(
        &self,
        token: &crate::RegistrationToken,
    ) -> Result<ResolvedCustomer, crate::ResolveError> {
        use crate::ResolveError;
        self.registry.record_request(None);
        self.registry.record_call(token.expose(), None);
        // One fault per call; a latency delays the call, then it is answered.
        if let Some(fault) = self.registry.next_fault(Operation::ResolveCustomer) {
            let error = match fault {
                Fault::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    None
                }
                Fault::Throttle => Some(ResolveError::Throttled),
                Fault::InternalError => {
                    Some(ResolveError::unavailable("InternalServiceErrorException"))
                }
                Fault::DisabledApi => Some(ResolveError::ApiDisabled),
                Fault::CloseConnection => Some(ResolveError::unavailable("connection closed")),
                Fault::GarbageBody => Some(ResolveError::unavailable("unparseable response")),
            };
            if let Some(error) = error {
                return Err(error);
            }
        }
        match self.registry.redeem(token.expose()) {
            Verdict::Resolved(customer) => Ok(customer),
            Verdict::InvalidToken => Err(ResolveError::InvalidToken),
            Verdict::ExpiredToken => Err(ResolveError::ExpiredToken),
        }
    }
}

impl Drop for MeteringEmulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for MeteringEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteringEmulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// `len` bytes that look random, derived from `seed` (SHA-256 in counter
/// mode): tokens and credentials of the emulator's own making.
pub(crate) fn expand(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = 0u32;
    while out.len() < len {
        let digest = Sha256::new()
            .chain_update(seed)
            .chain_update(block.to_le_bytes())
            .finalize();
        out.extend_from_slice(&digest);
        block += 1;
    }
    out.truncate(len);
    out
}

/// `bytes` as lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long a connection may take to send a request's head (or finish its TLS
/// handshake).
const IDLE_CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Accepts connections until aborted; dropping the set closes them all.
async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    registry: Arc<Registry>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors, say: let connections close
                    // rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let registry = Arc::clone(&registry);
                let tls = tls.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        server::handle(Arc::clone(&registry), request)
                    });
                    // Errors here are the client's going away, a failed
                    // handshake or an injected close: nothing to report.
                    // A client that opens a connection and sends nothing is
                    // let go after a while.
                    let mut http = http1::Builder::new();
                    http.timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(IDLE_CONNECTION_TIMEOUT);
                    match tls {
                        None => {
                            let _ = http
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(tls) => {
                            let handshake =
                                tokio::time::timeout(IDLE_CONNECTION_TIMEOUT, tls.accept(stream));
                            if let Ok(Ok(stream)) = handshake.await {
                                let _ = http
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_the_real_shape() {
        let a = MeteringEmulator::mint_token();
        let b = MeteringEmulator::mint_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 184);
        assert!(a.ends_with('='));
        assert!(crate::RegistrationToken::new(a).is_ok());
    }
}
