//! [`RedisStore`]: resolutions shared by several replicas through Redis
//! (feature `redis`).
//!
//! Each replica keeps its own cache and its own single flight. On a local miss,
//! before calling the resolver, the replica consults Redis:
//!
//! 1. `GET <prefix>answer:<digest>`: another replica's answer, if any.
//! 2. `SET <prefix>lease:<digest> <replica> NX PX <lease>`: the first replica to
//!    take the lease resolves (once its own upstream limits admit the call);
//!    it stores the answer (`SET ... PX <ttl>`, with the local TTL rules) and
//!    releases the lease.
//! 3. Replicas that did not get the lease poll for the answer (every 10 ms,
//!    backing off to 100 ms). If the lease ends without an answer (its holder
//!    died, or its resolve failed transiently), the next poll takes it over.
//!
//! Keys carry the first 128 bits of the token's SHA-256 in hex, never the token.
//! Every Redis call has a timeout; when Redis cannot be reached in time the
//! replica resolves on its own ([`RedisUnavailable::ResolveLocally`], the
//! default) or refuses with 503 ([`RedisUnavailable::FailClosed`]).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client, RedisError, Script};
use serde_json::{Value, json};

use crate::cache::{Outcome, Policy, TokenKey};
use crate::customer::ResolvedCustomer;
use crate::error::ResolveError;
use crate::upstream_limit::UpstreamLimit;

/// Default for [`RedisStore::key_prefix`].
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "tower-resolve-customer:";
/// Default for [`RedisStore::timeout`].
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(100);
/// Consecutive failed polls, while waiting on another replica, before Redis
/// counts as unavailable.
const MAX_POLL_FAILURES: u32 = 3;
/// Leases longer than this are clamped (Redis refuses absurd expiries).
const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// Deletes the lease only if this replica still holds it.
const RELEASE_LEASE: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

/// What a replica does when Redis does not answer in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisUnavailable {
    /// Resolve without the shared store, as a single replica would, and log a
    /// warning. A buyer whose double submit lands on two replicas during the
    /// outage may have the token resolved twice.
    #[default]
    ResolveLocally,
    /// Refuse with [`ResolveError::Unavailable`] (503, `Retry-After: 5`), so a
    /// token is never resolved without the cross-replica guarantee.
    FailClosed,
}

/// The Redis URL could not be parsed.
#[derive(Debug)]
pub struct InvalidRedisUrl(RedisError);

impl fmt::Display for InvalidRedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Redis URL: {}", self.0)
    }
}

impl std::error::Error for InvalidRedisUrl {}

/// A Redis-backed resolution store shared by several replicas, for
/// [`ResolveCustomerLayer::shared_store`](crate::ResolveCustomerLayer::shared_store).
///
/// ```
/// use std::time::Duration;
/// use tower_resolve_customer::{RedisStore, RedisUnavailable};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379/0")?
///     .key_prefix("registration:")
///     .timeout(Duration::from_millis(250))
///     .on_unavailable(RedisUnavailable::FailClosed);
/// # let _ = store;
/// # Ok::<(), tower_resolve_customer::InvalidRedisUrl>(())
/// ```
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    prefix: Arc<str>,
    lease: Option<Duration>,
    timeout: Duration,
    on_unavailable: RedisUnavailable,
    connection: Arc<OnceLock<ConnectionManager>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: it is not shown.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("timeout", &self.timeout)
            .field("on_unavailable", &self.on_unavailable)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis server at `url` (`redis://[user:password@]host:port/db`,
    /// or `rediss://` with the `redis` crate's TLS features). Nothing is
    /// connected until the first resolve; a lost connection is re-established.
    pub fn new(url: &str) -> Result<Self, InvalidRedisUrl> {
        Ok(Self {
            client: Client::open(url).map_err(InvalidRedisUrl)?,
            prefix: Arc::from(DEFAULT_REDIS_KEY_PREFIX),
            lease: None,
            timeout: DEFAULT_REDIS_TIMEOUT,
            on_unavailable: RedisUnavailable::default(),
            connection: Arc::default(),
        })
    }

    /// Prefix of every key this store writes (default
    /// `tower-resolve-customer:`); replicas of one deployment must agree on it.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// How long a replica's claim on a token lasts before another replica may
    /// take over (default: twice the layer's resolve timeout plus one second,
    /// the longest a resolve can run). Shorter leases recover faster from a
    /// replica that dies mid-resolve, but a lease shorter than a slow upstream
    /// call lets a second replica call AWS for the same token.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease.clamp(Duration::from_millis(1), MAX_LEASE));
        self
    }

    /// How long each Redis call may take (default 500 ms); past it, Redis
    /// counts as unavailable for this request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do when Redis does not answer in time (default
    /// [`RedisUnavailable::ResolveLocally`]).
    pub fn on_unavailable(mut self, behaviour: RedisUnavailable) -> Self {
        self.on_unavailable = behaviour;
        self
    }

    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(StoreError::Redis)?;
        Ok(self.connection.get_or_init(|| connection).clone())
    }

    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(StoreError::Redis),
            Err(_) => Err(StoreError::TimedOut),
        }
    }

    /// The answer for `key` across replicas: another replica's stored answer,
    /// the answer of the replica holding the lease, or `upstream`, run under
    /// this replica's lease (once `limit` admits it) and stored for the others.
    pub(crate) async fn resolve(
        &self,
        key: TokenKey,
        policy: &Policy,
        limit: &UpstreamLimit,
        upstream: impl Future<Output = Outcome>,
    ) -> Outcome {
        let keys = Keys::new(&self.prefix, key);
        let lease = self
            .lease
            .unwrap_or_else(|| policy.upstream_deadline() + Duration::from_secs(1));
        let give_up = tokio::time::Instant::now() + policy.upstream_deadline();
        let replica = replica_id();
        let mut pause = FIRST_POLL;
        // Whether Redis has answered this resolve at all, and how many polls
        // in a row have failed since.
        let mut reached = false;
        let mut failures = 0;
        loop {
            let error = match self.step(&keys, &replica, lease).await {
                Ok(Step::Answer(outcome)) => return outcome,
                Ok(Step::Leased) => {
                    let _permit = match limit.admit() {
                        Ok(permit) => permit,
                        Err(refused) => {
                            self.release_quietly(&keys, &replica).await;
                            return Err(refused);
                        }
                    };
                    let outcome = upstream.await;
                    self.publish(&keys, &replica, &outcome, policy).await;
                    return outcome;
                }
                Ok(Step::Wait) => {
                    reached = true;
                    failures = 0;
                    None
                }
                Err(error) => Some(error),
            };
            if let Some(error) = error {
                // Redis unreachable at first contact, or again and again while
                // waiting on another replica: resolve as configured. A single
                // failed poll just polls again.
                failures += 1;
                if !reached || failures >= MAX_POLL_FAILURES {
                    return self.unavailable(&error, limit, upstream).await;
                }
            }
            if tokio::time::Instant::now() + pause > give_up {
                return Err(ResolveError::Timeout);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Redis could not be used: resolve locally or refuse, as configured.
    async fn unavailable(
        &self,
        error: &StoreError,
        limit: &UpstreamLimit,
        upstream: impl Future<Output = Outcome>,
    ) -> Outcome {
        match self.on_unavailable {
            RedisUnavailable::ResolveLocally => {
                tracing::warn!(%error, "Redis unavailable: resolving without the shared store");
                let _permit = limit.admit()?;
                upstream.await
            }
            RedisUnavailable::FailClosed => {
                tracing::warn!(%error, "Redis unavailable: refusing to resolve");
                Err(ResolveError::unavailable(
                    "the shared resolution store is unavailable",
                ))
            }
        }
    }

    /// One look at Redis: an answer, the lease, or neither.
    async fn step(&self, keys: &Keys, replica: &str, lease: Duration) -> Result<Step, StoreError> {
        let mut connection = self.connection()?;
        if let Some(outcome) = self.stored(&mut connection, keys).await? {
            return Ok(Step::Answer(outcome));
        }
        let taken: Option<String> = self
            .call(
                ::redis::cmd("SET")
                    .arg(&keys.lease)
                    .arg(replica)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(lease))
                    .query_async(&mut connection),
            )
            .await?;
        if taken.is_none() {
            return Ok(Step::Wait);
        }
        // The lease is ours from here on: Redis errors no longer send this
        // request elsewhere. The previous holder may have stored its answer
        // and released the lease between the two calls above.
        match self.stored(&mut connection, keys).await {
            Ok(Some(outcome)) => {
                self.release_quietly(keys, replica).await;
                Ok(Step::Answer(outcome))
            }
            Ok(None) | Err(_) => Ok(Step::Leased),
        }
    }

    async fn stored(
        &self,
        connection: &mut ConnectionManager,
        keys: &Keys,
    ) -> Result<Option<Outcome>, StoreError> {
        let stored: Option<String> = self.call(connection.get(&keys.answer)).await?;
        Ok(stored.and_then(|value| {
            let outcome = decode(&value);
            if outcome.is_none() {
                tracing::warn!("ignoring an unreadable resolution in Redis");
            }
            outcome
        }))
    }

    /// Stores a definitive outcome for the other replicas (with the local
    /// cache's lifetimes), then releases the lease, whatever became of the
    /// store. Failures are logged, not returned: the outcome stands either way.
    async fn publish(&self, keys: &Keys, replica: &str, outcome: &Outcome, policy: &Policy) {
        if let Some(lifetime) = policy.lifetime_of(outcome).filter(|l| !l.is_zero())
            && let Err(error) = self.store_answer(keys, outcome, lifetime).await
        {
            tracing::warn!(%error, "could not share a resolution through Redis");
        }
        self.release_quietly(keys, replica).await;
    }

    async fn store_answer(
        &self,
        keys: &Keys,
        outcome: &Outcome,
        lifetime: Duration,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let value = encode(outcome);
        self.call(connection.pset_ex(&keys.answer, value, millis(lifetime)))
            .await
    }

    /// Releases the lease if this replica still holds it; a failure only
    /// delays other replicas until the lease expires.
    async fn release_quietly(&self, keys: &Keys, replica: &str) {
        if let Err(error) = self.release(keys, replica).await {
            tracing::warn!(%error, "could not release a Redis lease");
        }
    }

    async fn release(&self, keys: &Keys, replica: &str) -> Result<(), StoreError> {
        static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LEASE));
        let mut connection = self.connection()?;
        let mut invocation = RELEASE.key(&keys.lease);
        invocation.arg(replica);
        self.call(invocation.invoke_async::<i64>(&mut connection))
            .await
            .map(drop)
    }
}

enum Step {
    Answer(Outcome),
    Leased,
    Wait,
}

#[derive(Debug)]
enum StoreError {
    Redis(RedisError),
    TimedOut,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(error) => write!(f, "{error}"),
            Self::TimedOut => f.write_str("no answer within the Redis timeout"),
        }
    }
}

/// The Redis keys of one token.
struct Keys {
    answer: String,
    lease: String,
}

impl Keys {
    fn new(prefix: &str, key: TokenKey) -> Self {
        Self {
            answer: format!("{prefix}answer:{key:032x}"),
            lease: format!("{prefix}lease:{key:032x}"),
        }
    }
}

/// Identifies this process and this resolve as a lease holder.
fn replica_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PROCESS: OnceLock<u128> = OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        nanos ^ (u128::from(std::process::id()) << 64)
    });
    format!("{process:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn encode(outcome: &Outcome) -> String {
    match outcome {
        Ok(customer) => json!({
            "customer": {
                "account": customer.customer_aws_account_id(),
                "product": customer.product_code(),
                "customer_identifier": customer.customer_identifier(),
                "license_arn": customer.license_arn(),
                "agreement_id": customer.agreement_id(),
            }
        }),
        Err(refusal) => json!({ "refused": refusal.kind() }),
    }
    .to_string()
}

fn decode(value: &str) -> Option<Outcome> {
    let value: Value = serde_json::from_str(value).ok()?;
    if let Some(refused) = value.get("refused") {
        return match refused.as_str()? {
            "invalid-token" => Some(Err(ResolveError::InvalidToken)),
            "expired-token" => Some(Err(ResolveError::ExpiredToken)),
            _ => None,
        };
    }
    let customer = value.get("customer")?;
    let text = |field: &str| customer.get(field).and_then(Value::as_str);
    let mut resolved = ResolvedCustomer::new(text("account")?, text("product")?);
    if let Some(id) = text("customer_identifier") {
        resolved = resolved.with_customer_identifier(id);
    }
    if let Some(arn) = text("license_arn") {
        resolved = resolved.with_license_arn(arn);
    }
    if let Some(agreement) = text("agreement_id") {
        resolved = resolved.with_agreement_id(agreement);
    }
    Some(Ok(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_their_encoding() {
        let full = ResolvedCustomer::new("123456789012", "prod-abc")
            .with_customer_identifier("cust-1")
            .with_license_arn("arn:aws:license-manager::1:license:l-1")
            .with_agreement_id("agmt-1");
        let bare = ResolvedCustomer::new("210987654321", "prod-\"quoted\"\n");
        for outcome in [
            Ok(full),
            Ok(bare),
            Err(ResolveError::InvalidToken),
            Err(ResolveError::ExpiredToken),
        ] {
            assert_eq!(decode(&encode(&outcome)), Some(outcome));
        }
        for junk in [
            "",
            "{}",
            "[]",
            r#"{"refused":"throttled"}"#,
            r#"{"customer":{"account":"1"}}"#,
        ] {
            assert_eq!(decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn keys_hold_the_digest_not_the_token() {
        let keys = Keys::new("p:", 0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(keys.answer, "p:answer:0123456789abcdef0011223344556677");
        assert_eq!(keys.lease, "p:lease:0123456789abcdef0011223344556677");
    }
}
