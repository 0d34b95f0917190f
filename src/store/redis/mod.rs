//! [`RedisStore`]: a [`ResolutionStore`] on Redis (feature `redis`).
//!
//! Three keys per token, named by the token's digest (never the token) in a
//! hash tag, so that they share a slot on a Redis Cluster:
//!
//! - `<prefix>answer:{<digest>}`: the published answer
//!   ([`StoredAnswer::encode`]), expiring with its lifetime (`PX`);
//! - `<prefix>lease:{<digest>}`: the lease holder's id, expiring with the lease;
//! - `<prefix>attempts:{<digest>}`: a sorted set of the holders' attempts at
//!   redeeming the token, each scored by until when it is remembered (see
//!   [`LeaseTerms::remember`]), negated once the attempt ended; expiring with
//!   the last of them.
//!
//! Every write is a short Lua script run with `EVAL` (so a fresh or failed-over
//! server needs nothing loaded), atomic on the server: taking the lease when
//! free or already ours, extending or releasing it only while ours, recording
//! attempts on the server's clock (`TIME`, read before any write), and
//! publishing without ever replacing a stored customer by a refusal.

mod connection;
mod named_tls;
mod reconnecting;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{RedisError, Value};

use self::connection::Connector;

use super::{LeaseGrant, LeaseHolder, LeaseTerms, ResolutionStore, StoredAnswer, TokenDigest};

/// Default for [`RedisStore::key_prefix`].
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "tower-resolve-customer:";
/// Default for [`RedisStore::connect_timeout`].
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Leases and lifetimes longer than this are clamped (Redis refuses absurd
/// expiries).
const MAX_EXPIRY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The answer and its remaining time to live, or nil.
const READ: &str = r#"
local answer = redis.call("GET", KEYS[1])
if not answer then return false end
return {answer, redis.call("PTTL", KEYS[1])}
"#;

/// `$script` preceded by effects replication (the default since Redis 5,
/// asked for explicitly on servers that offer the choice) and `now`, the
/// server's time in milliseconds, read before any write: a script that fails
/// there has changed nothing.
macro_rules! after_now {
    ($script:literal) => {
        concat!(
            r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local time = redis.call("TIME")
local now = time[1] * 1000 + math.floor(time[2] / 1000)
"#,
            $script
        )
    };
}

/// Takes the lease (`KEYS[1]`) if free, renews it if already this holder's,
/// and records the holder's attempt (`KEYS[2]`) as under way for `ARGV[3]`
/// from now, unless it ended (an ended attempt stays ended): 0 held
/// elsewhere, 1 taken.
const TRY_LEASE: &str = after_now!(
    r#"
local holder = redis.call("GET", KEYS[1])
if holder == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
elseif holder then
  return 0
else
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
end
redis.call("ZREMRANGEBYSCORE", KEYS[2], -now, now)
local expires = now + ARGV[3]
local recorded = redis.call("ZSCORE", KEYS[2], ARGV[1])
if not recorded or (tonumber(recorded) > 0 and tonumber(recorded) < expires) then
  redis.call("ZADD", KEYS[2], expires, ARGV[1])
end
if redis.call("PTTL", KEYS[2]) < tonumber(ARGV[3]) then
  redis.call("PEXPIRE", KEYS[2], ARGV[3])
end
return 1
"#
);

/// Records the holder's attempt (`KEYS[1]`) as ended, and counts the
/// attempts still under way.
const END_ATTEMPT: &str = after_now!(
    r#"
redis.call("ZREMRANGEBYSCORE", KEYS[1], -now, now)
redis.call("ZADD", KEYS[1], -(now + ARGV[2]), ARGV[1])
if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[2]) then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return redis.call("ZCOUNT", KEYS[1], "(" .. now, "+inf")
"#
);

/// Extends the lease only while this holder has it.
const EXTEND_LEASE: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"#;

/// Stores the answer, unless the stored one starts with the guard
/// (`StoredAnswer::publish_guard`).
const PUBLISH: &str = r#"
local stored = redis.call("GET", KEYS[1])
if stored and string.sub(stored, 1, string.len(ARGV[3])) == ARGV[3] then return 0 end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1
"#;

/// Deletes the lease only while this holder has it.
const RELEASE_LEASE: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// The Redis URL (or the TLS settings given with it) cannot be used.
#[derive(Debug)]
pub struct InvalidRedisUrl(Reason);

#[derive(Debug)]
enum Reason {
    Redis(RedisError),
    Message(&'static str),
}

impl InvalidRedisUrl {
    fn redis(error: RedisError) -> Self {
        Self(Reason::Redis(error))
    }

    fn message(message: &'static str) -> Self {
        Self(Reason::Message(message))
    }
}

impl fmt::Display for InvalidRedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Reason::Redis(error) => write!(f, "invalid Redis URL or TLS settings: {error}"),
            Reason::Message(message) => write!(f, "invalid Redis settings: {message}"),
        }
    }
}

impl std::error::Error for InvalidRedisUrl {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Reason::Redis(error) => Some(error),
            Reason::Message(_) => None,
        }
    }
}

/// A Redis command failed: the connection, the server, or its reply.
#[derive(Debug)]
pub struct RedisStoreError(RedisError);

impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redis: {}", self.0)
    }
}

impl std::error::Error for RedisStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<InvalidRedisUrl> for RedisStoreError {
    fn from(error: InvalidRedisUrl) -> Self {
        match error.0 {
            Reason::Redis(error) => Self(error),
            Reason::Message(message) => Self(RedisError::from((
                ::redis::ErrorKind::InvalidClientConfig,
                message,
            ))),
        }
    }
}

/// A [`ResolutionStore`] on Redis, shared by the replicas of a deployment,
/// for [`ResolutionsBuilder::store`](crate::ResolutionsBuilder::store): one
/// node or a cluster (ElastiCache, MemoryDB, Valkey or Redis OSS), over TCP or
/// TLS, or over a connection the application already holds.
///
/// ```
/// use std::time::Duration;
/// use tower_resolve_customer::{RedisStore, RegistrationToken, Resolutions, ResolvedCustomer, StoreUnavailable};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379/0")?.key_prefix("registration:");
/// let resolutions = Resolutions::builder(|_: RegistrationToken| async {
///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
/// })
/// .store(store)
/// .store_timeout(Duration::from_millis(250))
/// .on_store_unavailable(StoreUnavailable::FailClosed)
/// .build();
/// # let _ = resolutions;
///
/// // ElastiCache Serverless: TLS, cluster mode.
/// let serverless = RedisStore::cluster([
///     "rediss://my-cache-abc123.serverless.use1.cache.amazonaws.com:6379",
/// ])?;
/// # let _ = serverless;
/// # Ok::<(), tower_resolve_customer::InvalidRedisUrl>(())
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connector: Connector,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: it is not shown.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connection", &self.connector.describe())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis node at `url`: `redis://[user:password@]host:port/db`,
    /// or `rediss://...` for TLS, verified against the system's root
    /// certificates (see [`tls_root_certificate`](Self::tls_root_certificate)).
    /// Nothing is connected until the first call; a lost connection is
    /// re-established.
    pub fn new(url: &str) -> Result<Self, InvalidRedisUrl> {
        Ok(Self::with(Connector::node(
            url,
            DEFAULT_REDIS_CONNECT_TIMEOUT,
        )?))
    }

    /// A store on a Redis Cluster (cluster mode enabled: ElastiCache Serverless,
    /// ElastiCache or MemoryDB with cluster mode, Valkey or Redis OSS
    /// clusters), found through any of `nodes` (`redis://` or `rediss://`, all
    /// the same). The cluster's topology is discovered and followed through
    /// failovers and resharding; a token's keys share one slot.
    pub fn cluster<I, S>(nodes: I) -> Result<Self, InvalidRedisUrl>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self::with(Connector::cluster(
            nodes,
            DEFAULT_REDIS_CONNECT_TIMEOUT,
        )?))
    }

    /// A store over a connection the application already holds: a
    /// `redis::aio::ConnectionManager`, `MultiplexedConnection` or
    /// `redis::cluster_async::ClusterConnection` (any `redis` 1.x async
    /// connection that is cheap to clone). It is used as it is: its TLS,
    /// authentication, timeouts and reconnection are the application's.
    pub fn from_connection<C>(connection: C) -> Self
    where
        C: ::redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self::with(Connector::given(connection))
    }

    fn with(connector: Connector) -> Self {
        Self {
            connector,
            prefix: Arc::from(DEFAULT_REDIS_KEY_PREFIX),
        }
    }

    /// Trusts `pem` (one or more PEM-encoded CA certificates) instead of the
    /// system's roots, for `rediss://` URLs. Refused for `redis://` URLs (a
    /// store never falls back to plain TCP) and for a connection handed in.
    pub fn tls_root_certificate(
        mut self,
        pem: impl Into<Vec<u8>>,
    ) -> Result<Self, InvalidRedisUrl> {
        self.connector.set_root_certificate(pem.into())?;
        Ok(self)
    }

    /// Checks the node's TLS certificate for `name` instead of the URL's
    /// host: for reaching a node by an address its certificate does not name
    /// (an IP address, a tunnel, a private endpoint). One node over
    /// `rediss://` only; refused otherwise.
    pub fn tls_server_name(mut self, name: &str) -> Result<Self, InvalidRedisUrl> {
        self.connector.set_server_name(name)?;
        Ok(self)
    }

    /// Prefix of every key this store writes (default
    /// `tower-resolve-customer:`); replicas of one deployment must agree on it.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// How long (re)connecting may take (default 500 ms). Each command is
    /// bounded by the resolutions'
    /// [`store_timeout`](crate::ResolutionsBuilder::store_timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connector.set_connect_timeout(timeout);
        self
    }

    // The digest is a hash tag (`{...}`): a token's keys share one slot, as
    // a script that touches two of them needs on a Redis Cluster.

    fn answer_key(&self, token: TokenDigest) -> String {
        format!("{}answer:{{{token}}}", self.prefix)
    }

    fn lease_key(&self, token: TokenDigest) -> String {
        format!("{}lease:{{{token}}}", self.prefix)
    }

    fn attempts_key(&self, token: TokenDigest) -> String {
        format!("{}attempts:{{{token}}}", self.prefix)
    }

    /// Runs `script` on `keys` with `args`.
    async fn eval<T: ::redis::FromRedisValue>(
        &self,
        script: &str,
        keys: &[String],
        args: &[&str],
    ) -> Result<T, RedisStoreError> {
        let mut connection = self.connector.connection().await?;
        let mut command = ::redis::cmd("EVAL");
        command.arg(script).arg(keys.len()).arg(keys);
        for arg in args {
            command.arg(*arg);
        }
        command
            .query_async(&mut connection)
            .await
            .map_err(RedisStoreError)
    }
}

impl ResolutionStore for RedisStore {
    type Error = RedisStoreError;

    async fn read(&self, token: TokenDigest) -> Result<Option<StoredAnswer>, RedisStoreError> {
        let reply: Value = self.eval(READ, &[self.answer_key(token)], &[]).await?;
        let (text, ttl): (String, i64) = match reply {
            Value::Nil => return Ok(None),
            reply => ::redis::from_redis_value(reply).map_err(|e| RedisStoreError(e.into()))?,
        };
        // A key without an expiry (-1) was not written by this crate; one that
        // expired between the two reads (-2) is gone.
        let Ok(ttl) = u64::try_from(ttl) else {
            return Ok(None);
        };
        let answer = StoredAnswer::decode(&text, Duration::from_millis(ttl));
        if answer.is_none() {
            tracing::warn!("ignoring an unreadable resolution in Redis");
        }
        Ok(answer)
    }

    async fn try_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
    ) -> Result<LeaseGrant, RedisStoreError> {
        let (lease, remember) = (millis(terms.lease), millis(terms.attempt_lifetime()));
        let keys = [self.lease_key(token), self.attempts_key(token)];
        let grant: i64 = self
            .eval(TRY_LEASE, &keys, &[holder.as_str(), &lease, &remember])
            .await?;
        Ok(if grant == 0 {
            LeaseGrant::HeldElsewhere
        } else {
            LeaseGrant::Taken
        })
    }

    async fn end_attempt(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
    ) -> Result<bool, RedisStoreError> {
        let remember = millis(terms.attempt_lifetime());
        let under_way: i64 = self
            .eval(
                END_ATTEMPT,
                &[self.attempts_key(token)],
                &[holder.as_str(), &remember],
            )
            .await?;
        Ok(under_way > 0)
    }

    async fn extend_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        duration: Duration,
    ) -> Result<bool, RedisStoreError> {
        let millis = millis(duration);
        let extended: i64 = self
            .eval(
                EXTEND_LEASE,
                &[self.lease_key(token)],
                &[holder.as_str(), &millis],
            )
            .await?;
        Ok(extended == 1)
    }

    async fn publish(
        &self,
        token: TokenDigest,
        answer: &StoredAnswer,
    ) -> Result<(), RedisStoreError> {
        let millis = millis(answer.lifetime());
        let text = answer.encode();
        let _: i64 = self
            .eval(
                PUBLISH,
                &[self.answer_key(token)],
                &[&text, &millis, answer.publish_guard()],
            )
            .await?;
        Ok(())
    }

    async fn release_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
    ) -> Result<bool, RedisStoreError> {
        let released: i64 = self
            .eval(RELEASE_LEASE, &[self.lease_key(token)], &[holder.as_str()])
            .await?;
        Ok(released == 1)
    }
}

/// `duration` in whole milliseconds, at least 1, at most a year.
fn millis(duration: Duration) -> String {
    duration.min(MAX_EXPIRY).as_millis().max(1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_the_digest_not_the_token() {
        let store = RedisStore::new("redis://127.0.0.1:1/")
            .unwrap()
            .key_prefix("p:");
        let digest = TokenDigest::new(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let hex = "0123456789abcdef0011223344556677";
        assert_eq!(store.answer_key(digest), format!("p:answer:{{{hex}}}"));
        assert_eq!(store.lease_key(digest), format!("p:lease:{{{hex}}}"));
        assert_eq!(store.attempts_key(digest), format!("p:attempts:{{{hex}}}"));
    }

    #[test]
    fn expiries_are_whole_milliseconds_within_bounds() {
        assert_eq!(millis(Duration::ZERO), "1");
        assert_eq!(millis(Duration::from_micros(2_500)), "2");
        assert_eq!(millis(Duration::MAX), MAX_EXPIRY.as_millis().to_string());
    }
}
