//! [`ResolutionStore`]: where the replicas of a deployment share their
//! resolutions, and the lease that lets exactly one of them redeem a token.
//!
//! A store is a small key-value contract, keyed by a [`TokenDigest`] (never the
//! token). The protocol that uses it (local cache, local single flight, the
//! store's answer, the lease, a re-check, the upstream call, publish, release)
//! lives in one store-independent module, so every store gives the same
//! guarantee; see [`ResolutionStore`] for the contract and the README's
//! "Running several replicas" for what holds under which failure.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[cfg(feature = "dynamodb")]
pub(crate) mod dynamodb;
#[cfg(feature = "test-util")]
pub(crate) mod memory;
pub(crate) mod protocol;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod stored_answer;

pub use self::stored_answer::{STORED_CUSTOMER_PREFIX, STORED_ENTITLED_PREFIX, StoredAnswer};

/// A resolution store shared by the replicas of one deployment: Redis
/// ([`RedisStore`](crate::RedisStore)), DynamoDB
/// ([`DynamoDbStore`](crate::DynamoDbStore)), an in-process
/// [`MemoryStore`](crate::MemoryStore) for tests, or one of your own.
///
/// # Contract
///
/// Every method is keyed by the token's [`TokenDigest`]; a store never sees
/// the token. Each call may fail with the store's own [`Error`](Self::Error);
/// the protocol bounds every call with [`store_timeout`](crate::ResolutionsBuilder::store_timeout)
/// and treats a call that failed or timed out as one that *may have been
/// applied*. So every write below must be safe to repeat:
///
/// - [`read`](Self::read): the answer stored for `token`, with its
///   *remaining* lifetime, or `None` when nothing unexpired is stored.
/// - [`try_lease`](Self::try_lease): takes the lease on `token` for `holder`
///   for `terms.lease`, atomically, if no one holds it, or renews it if
///   `holder` already does. Taken or renewed, it also records `holder`'s
///   *attempt* at redeeming the token as under way for at least
///   [`terms.attempt_lifetime()`](LeaseTerms::attempt_lifetime) from now
///   (longer than a lease: as long as that holder may still be at work
///   after its lease lapsed). An attempt recorded as
///   ended stays ended.
/// - [`end_attempt`](Self::end_attempt): records `holder`'s attempt as ended
///   (it has no customer to publish), kept for `terms.attempt_lifetime()` so
///   that a late lease call cannot start it again, and tells whether an
///   attempt of *another* holder is still under way: not ended, and recorded
///   by a lease call less than its attempt lifetime ago.
/// - [`extend_lease`](Self::extend_lease): resets the lease's remaining time
///   to `duration` only if `holder` still holds it; `false` otherwise.
/// - [`publish`](Self::publish): stores `answer` for its
///   [`lifetime`](StoredAnswer::lifetime), unless the unexpired answer
///   stored may not be replaced by it ([`StoredAnswer::may_replace`]: a
///   customer is never replaced by a refusal, nor a customer with
///   entitlements by one without), atomically.
/// - [`release_lease`](Self::release_lease): ends the lease only if `holder`
///   still holds it; `false` otherwise.
///
/// Leases and lifetimes are measured on the store's clock. The protocol
/// assumes the clocks of the store and the replicas run at nearly the same
/// *rate* (their offsets do not matter). A store without a clock of its own
/// (such as [`DynamoDbStore`](crate::DynamoDbStore)) measures them on the
/// replicas' clocks, and then needs their offsets bounded too, well under a
/// lease.
///
/// # Example
///
/// A store over a map, with no expiry (a sketch: [`MemoryStore`](crate::MemoryStore)
/// is the complete version):
///
/// ```
/// use std::collections::HashMap;
/// use std::convert::Infallible;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use tower_resolve_customer::{LeaseGrant, LeaseHolder, LeaseTerms, ResolutionStore, StoredAnswer, TokenDigest};
///
/// #[derive(Default)]
/// struct MapStore {
///     answers: Mutex<HashMap<TokenDigest, StoredAnswer>>,
///     leases: Mutex<HashMap<TokenDigest, LeaseHolder>>,
///     // Each holder's attempt: `true` while under way.
///     attempts: Mutex<HashMap<TokenDigest, HashMap<LeaseHolder, bool>>>,
/// }
///
/// impl ResolutionStore for MapStore {
///     type Error = Infallible;
///
///     async fn read(&self, token: TokenDigest) -> Result<Option<StoredAnswer>, Infallible> {
///         Ok(self.answers.lock().unwrap().get(&token).cloned())
///     }
///     async fn try_lease(&self, token: TokenDigest, holder: &LeaseHolder, _: LeaseTerms) -> Result<LeaseGrant, Infallible> {
///         let mut leases = self.leases.lock().unwrap();
///         match leases.get(&token) {
///             Some(current) if current != holder => return Ok(LeaseGrant::HeldElsewhere),
///             Some(_) => {}
///             None => {
///                 leases.insert(token, holder.clone());
///             }
///         }
///         let mut attempts = self.attempts.lock().unwrap();
///         attempts.entry(token).or_default().entry(holder.clone()).or_insert(true);
///         Ok(LeaseGrant::Taken)
///     }
///     async fn end_attempt(&self, token: TokenDigest, holder: &LeaseHolder, _: LeaseTerms) -> Result<bool, Infallible> {
///         let mut attempts = self.attempts.lock().unwrap();
///         let attempts = attempts.entry(token).or_default();
///         attempts.insert(holder.clone(), false);
///         Ok(attempts.iter().any(|(other, under_way)| other != holder && *under_way))
///     }
///     async fn extend_lease(&self, token: TokenDigest, holder: &LeaseHolder, _: Duration) -> Result<bool, Infallible> {
///         Ok(self.leases.lock().unwrap().get(&token) == Some(holder))
///     }
///     async fn publish(&self, token: TokenDigest, answer: &StoredAnswer) -> Result<(), Infallible> {
///         let mut answers = self.answers.lock().unwrap();
///         if answers.get(&token).is_none_or(|stored| answer.may_replace(stored)) {
///             answers.insert(token, answer.clone());
///         }
///         Ok(())
///     }
///     async fn release_lease(&self, token: TokenDigest, holder: &LeaseHolder) -> Result<bool, Infallible> {
///         let mut leases = self.leases.lock().unwrap();
///         let held = leases.get(&token) == Some(holder);
///         if held {
///             leases.remove(&token);
///         }
///         Ok(held)
///     }
/// }
/// ```
pub trait ResolutionStore: Send + Sync + 'static {
    /// The store's own failure (a connection error, a refused command).
    type Error: Error + Send + Sync + 'static;

    /// The unexpired answer stored for `token`, with its remaining lifetime.
    fn read(
        &self,
        token: TokenDigest,
    ) -> impl Future<Output = Result<Option<StoredAnswer>, Self::Error>> + Send;

    /// Takes (or, for the same holder, renews) the lease on `token`.
    fn try_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
    ) -> impl Future<Output = Result<LeaseGrant, Self::Error>> + Send;

    /// Records `holder`'s attempt on `token` as ended, and tells whether an
    /// attempt of another holder is still under way.
    fn end_attempt(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Extends the lease on `token` while `holder` still holds it.
    fn extend_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        duration: Duration,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Stores `answer` for its lifetime, unless the answer stored may not be
    /// replaced by it ([`StoredAnswer::may_replace`]).
    fn publish(
        &self,
        token: TokenDigest,
        answer: &StoredAnswer,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Ends the lease on `token` if `holder` still holds it.
    fn release_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// The first 128 bits of a token's SHA-256: how stores and caches name a
/// token without holding it.
///
/// Shown (by `Display` and `Debug`) as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenDigest(u128);

impl TokenDigest {
    pub(crate) fn new(digest: u128) -> Self {
        Self(digest)
    }

    /// The digest as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({self})")
    }
}

/// How long a lease lasts, and how long a store remembers an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    /// How long the lease lasts unless extended.
    pub lease: Duration,
    /// How long the store remembers a holder's attempt at redeeming the
    /// token, from its latest lease call (at least `lease`): as long as that
    /// holder may still be at work, its lease lapsed or not.
    pub remember: Duration,
}

impl LeaseTerms {
    /// How long a store keeps an attempt from its holder's latest lease
    /// call, ended or not: [`remember`](Self::remember), but never less than
    /// the lease. What a store of your own should use.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_resolve_customer::LeaseTerms;
    ///
    /// let terms = LeaseTerms { lease: Duration::from_secs(15), remember: Duration::from_secs(10) };
    /// assert_eq!(terms.attempt_lifetime(), Duration::from_secs(15));
    /// ```
    pub fn attempt_lifetime(self) -> Duration {
        self.remember.max(self.lease)
    }
}

/// The answer to [`ResolutionStore::try_lease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseGrant {
    /// The holder holds the lease: taken now, or already its own.
    Taken,
    /// Another holder holds the lease.
    HeldElsewhere,
}

impl LeaseGrant {
    /// Whether the caller holds the lease.
    pub fn is_taken(self) -> bool {
        self == Self::Taken
    }
}

/// Who holds a lease: unique to one resolve in one process, so a replica can
/// only extend or release a lease it took itself (and a replica that lost its
/// lease to expiry cannot end its successor's).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeaseHolder(Arc<str>);

impl LeaseHolder {
    /// A holder id no other, in this process or another, uses.
    pub fn unique() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        static PROCESS: OnceLock<u128> = OnceLock::new();
        let process = PROCESS.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            // Randomly keyed per process by the standard library.
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            nanos ^ (u128::from(random) << 64) ^ u128::from(std::process::id())
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(Arc::from(format!("{process:x}-{n}")))
    }

    /// The id, as stores keep it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseHolder({})", self.0)
    }
}

/// A store's failure, as the protocol logs it.
pub(crate) type StoreFailure = Box<dyn Error + Send + Sync>;

type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreFailure>> + Send + 'a>>;

/// [`ResolutionStore`] behind a pointer: what [`Resolutions`](crate::Resolutions)
/// keeps, so it needs no type parameter for its store.
pub(crate) trait DynStore: Send + Sync + 'static {
    fn read(&self, token: TokenDigest) -> StoreFuture<'_, Option<StoredAnswer>>;
    fn try_lease<'a>(
        &'a self,
        token: TokenDigest,
        holder: &'a LeaseHolder,
        terms: LeaseTerms,
    ) -> StoreFuture<'a, LeaseGrant>;
    fn end_attempt<'a>(
        &'a self,
        token: TokenDigest,
        holder: &'a LeaseHolder,
        terms: LeaseTerms,
    ) -> StoreFuture<'a, bool>;
    fn extend_lease<'a>(
        &'a self,
        token: TokenDigest,
        holder: &'a LeaseHolder,
        duration: Duration,
    ) -> StoreFuture<'a, bool>;
    fn publish<'a>(&'a self, token: TokenDigest, answer: &'a StoredAnswer) -> StoreFuture<'a, ()>;
    fn release_lease<'a>(
        &'a self,
        token: TokenDigest,
        holder: &'a LeaseHolder,
    ) -> StoreFuture<'a, bool>;
}

fn erase<'a, T, E: Error + Send + Sync + 'static>(
    call: impl Future<Output = Result<T, E>> + Send + 'a,
) -> StoreFuture<'a, T> {
    Box::pin(async move { call.await.map_err(|e| Box::new(e) as StoreFailure) })
}

impl<S: ResolutionStore> DynStore for S {
    fn read(&self, token: TokenDigest) -> StoreFuture<'_, Option<StoredAnswer>> {
        erase(ResolutionStore::read(self, token))
    }
    fn try_lease<'a>(
        &'a self,
        token: TokenDigest,
        holder: &'a LeaseHolder,
        terms: LeaseTerms,
    ) -> StoreFuture<'a, LeaseGrant> {
        erase(ResolutionStore::try_lease(self, token, holder, terms))
    }
    fn end_attempt<'a>(
        &'a self,
        token: TokenDigest,
        holder: &'a LeaseHolder,
        terms: LeaseTerms,
    ) -> StoreFuture<'a, bool> {
        erase(ResolutionStore::end_attempt(self, token, holder, terms))
    }
    fn extend_lease<'a>(
        &'a self,
        token: TokenDigest,
        holder: &'a LeaseHolder,
        duration: Duration,
    ) -> StoreFuture<'a, bool> {
        erase(ResolutionStore::extend_lease(self, token, holder, duration))
    }
    fn publish<'a>(&'a self, token: TokenDigest, answer: &'a StoredAnswer) -> StoreFuture<'a, ()> {
        erase(ResolutionStore::publish(self, token, answer))
    }
    fn release_lease<'a>(
        &'a self,
        token: TokenDigest,
        holder: &'a LeaseHolder,
    ) -> StoreFuture<'a, bool> {
        erase(ResolutionStore::release_lease(self, token, holder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_show_as_hex_and_holders_are_unique() {
        let digest = TokenDigest::new(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(digest.to_string(), "0123456789abcdef0011223344556677");
        let a = LeaseHolder::unique();
        let b = LeaseHolder::unique();
        assert_ne!(a, b);
    }
}
