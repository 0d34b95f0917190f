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

use crate::customer::ResolvedCustomer;
use crate::error::ResolveError;
use crate::rejection::Rejection;

#[cfg(feature = "dynamodb")]
pub(crate) mod dynamodb;
#[cfg(feature = "test-util")]
pub(crate) mod memory;
pub(crate) mod protocol;
#[cfg(feature = "redis")]
pub(crate) mod redis;

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
///   `holder` already does. A store also remembers who *first* took the
///   lease, for `terms.remember` from then (longer than a lease: as long as
///   that holder may still be at work after its lease lapsed), and says
///   whether that was another holder: see [`LeaseGrant`].
/// - [`extend_lease`](Self::extend_lease): resets the lease's remaining time
///   to `duration` only if `holder` still holds it; `false` otherwise.
/// - [`publish`](Self::publish): stores `answer` for its
///   [`lifetime`](StoredAnswer::lifetime), except that a stored customer is
///   never replaced by a refusal (a late "expired" from a second redemption
///   must not hide the customer the first one found).
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
///     takers: Mutex<HashMap<TokenDigest, LeaseHolder>>,
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
///         let mut takers = self.takers.lock().unwrap();
///         let first = takers.entry(token).or_insert_with(|| holder.clone());
///         Ok(if first == holder { LeaseGrant::Taken } else { LeaseGrant::TakenAfterAnother })
///     }
///     async fn extend_lease(&self, token: TokenDigest, holder: &LeaseHolder, _: Duration) -> Result<bool, Infallible> {
///         Ok(self.leases.lock().unwrap().get(&token) == Some(holder))
///     }
///     async fn publish(&self, token: TokenDigest, answer: &StoredAnswer) -> Result<(), Infallible> {
///         let mut answers = self.answers.lock().unwrap();
///         if !answers.get(&token).is_some_and(StoredAnswer::is_customer) {
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

    /// Extends the lease on `token` while `holder` still holds it.
    fn extend_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        duration: Duration,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Stores `answer` for its lifetime; a stored customer is never replaced by
    /// a refusal.
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

/// How long a lease lasts, and how long a store remembers who took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    /// How long the lease lasts unless extended.
    pub lease: Duration,
    /// How long the store remembers the holder that first took the lease (at
    /// least `lease`): as long as a holder whose lease lapsed may still be at
    /// work.
    pub remember: Duration,
}

/// The answer to [`ResolutionStore::try_lease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseGrant {
    /// The holder holds the lease (taken now, or already its own), and it is
    /// the first to have taken it within [`LeaseTerms::remember`].
    Taken,
    /// The holder holds the lease (taken now, or already its own), but
    /// another holder first took it, less than [`LeaseTerms::remember`] ago:
    /// that holder's redemption of the token may still be under way, or may
    /// have succeeded unpublished. A holder asking again gets this answer
    /// again.
    TakenAfterAnother,
    /// Another holder holds the lease.
    HeldElsewhere,
}

impl LeaseGrant {
    /// Whether the caller holds the lease.
    pub fn is_taken(self) -> bool {
        !matches!(self, Self::HeldElsewhere)
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

/// A definitive answer about a token (a customer, or an invalid or expired
/// token) and how long it stays true: the lifetime to keep it for, when
/// published; the lifetime left, when read.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    outcome: Result<ResolvedCustomer, ResolveError>,
    lifetime: Duration,
}

/// What [`StoredAnswer::encode`] starts a customer with, so a store can tell a
/// customer from a refusal without decoding.
pub const STORED_CUSTOMER_PREFIX: &str = "kind=customer&";

impl StoredAnswer {
    /// `outcome`, to be kept for `lifetime`; `None` for an outcome that is not
    /// definitive (throttling, an outage, a timeout), which is never stored.
    pub(crate) fn new(
        outcome: &Result<ResolvedCustomer, Rejection>,
        lifetime: Duration,
    ) -> Option<Self> {
        let outcome = match outcome {
            Ok(customer) => Ok(customer.clone()),
            Err(Rejection::Resolve(refusal)) if refusal.is_definitive() => Err(refusal.clone()),
            Err(_) => return None,
        };
        Some(Self { outcome, lifetime })
    }

    pub(crate) fn outcome(&self) -> &Result<ResolvedCustomer, ResolveError> {
        &self.outcome
    }

    /// The customer, if the answer is one.
    pub fn customer(&self) -> Option<&ResolvedCustomer> {
        self.outcome.as_ref().ok()
    }

    /// Whether the answer is a customer (not a refusal).
    pub fn is_customer(&self) -> bool {
        self.outcome.is_ok()
    }

    /// How long the answer stays true.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The same answer with another lifetime: a store that reads one back
    /// gives it the lifetime it has left.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The answer as text, for stores that keep strings (the lifetime is not
    /// included: stores keep it as an expiry). A customer starts with
    /// [`STORED_CUSTOMER_PREFIX`].
    pub fn encode(&self) -> String {
        let mut text = form_urlencoded::Serializer::new(String::new());
        match &self.outcome {
            Ok(customer) => {
                text.append_pair("kind", "customer")
                    .append_pair("account", customer.customer_aws_account_id())
                    .append_pair("product", customer.product_code());
                if let Some(id) = customer.customer_identifier() {
                    text.append_pair("customer_identifier", id);
                }
                if let Some(arn) = customer.license_arn() {
                    text.append_pair("license_arn", arn);
                }
                if let Some(agreement) = customer.agreement_id() {
                    text.append_pair("agreement_id", agreement);
                }
            }
            Err(refusal) => {
                text.append_pair("kind", refusal.kind());
                if let ResolveError::Refused(reason) = refusal {
                    text.append_pair("reason", reason);
                }
            }
        }
        text.finish()
    }

    /// Reads back what [`encode`](Self::encode) wrote, giving it `lifetime`;
    /// `None` for anything else.
    pub fn decode(text: &str, lifetime: Duration) -> Option<Self> {
        let mut kind = None;
        let mut account = None;
        let mut product = None;
        let mut customer_identifier = None;
        let mut license_arn = None;
        let mut agreement_id = None;
        let mut reason = None;
        for (name, value) in form_urlencoded::parse(text.as_bytes()) {
            let field = match &*name {
                "kind" => &mut kind,
                "account" => &mut account,
                "product" => &mut product,
                "customer_identifier" => &mut customer_identifier,
                "license_arn" => &mut license_arn,
                "agreement_id" => &mut agreement_id,
                "reason" => &mut reason,
                _ => return None,
            };
            if field.replace(value.into_owned()).is_some() {
                return None;
            }
        }
        let outcome = match kind?.as_str() {
            "customer" if reason.is_none() => {
                let mut customer = ResolvedCustomer::new(account?, product?);
                if let Some(id) = customer_identifier {
                    customer = customer.with_customer_identifier(id);
                }
                if let Some(arn) = license_arn {
                    customer = customer.with_license_arn(arn);
                }
                if let Some(agreement) = agreement_id {
                    customer = customer.with_agreement_id(agreement);
                }
                Ok(customer)
            }
            refusal => {
                let fields = [
                    account,
                    product,
                    customer_identifier,
                    license_arn,
                    agreement_id,
                ];
                if fields.iter().any(Option::is_some) {
                    return None;
                }
                match (refusal, reason) {
                    ("invalid-token", None) => Err(ResolveError::InvalidToken),
                    ("expired-token", None) => Err(ResolveError::ExpiredToken),
                    ("refused", Some(reason)) => Err(ResolveError::Refused(reason.into())),
                    _ => return None,
                }
            }
        };
        Some(Self { outcome, lifetime })
    }
}

impl fmt::Debug for StoredAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAnswer")
            .field("outcome", &self.outcome)
            .field("lifetime", &self.lifetime)
            .finish()
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
    fn answers_round_trip_through_their_encoding() {
        let full = ResolvedCustomer::new("123456789012", "prod-abc")
            .with_customer_identifier("cust-1")
            .with_license_arn("arn:aws:license-manager::1:license:l-1")
            .with_agreement_id("agmt-1");
        let odd = ResolvedCustomer::new("210987654321", "prod-\"quoted\"\n&kind=x=");
        let lifetime = Duration::from_millis(1234);
        for outcome in [
            Ok(full),
            Ok(odd),
            Err(Rejection::Resolve(ResolveError::InvalidToken)),
            Err(Rejection::Resolve(ResolveError::ExpiredToken)),
            Err(Rejection::Resolve(ResolveError::refused(
                "barred & banned=yes",
            ))),
        ] {
            let answer = StoredAnswer::new(&outcome, lifetime).expect("definitive");
            let text = answer.encode();
            assert_eq!(text.starts_with(STORED_CUSTOMER_PREFIX), outcome.is_ok());
            assert_eq!(StoredAnswer::decode(&text, lifetime), Some(answer));
        }
        for junk in [
            "",
            "kind=throttled",
            "kind=customer&account=1",
            "kind=customer&account=1&product=p&account=2",
            "kind=expired-token&account=1",
            "kind=customer&account=1&product=p&extra=1",
            "kind=refused",
            "kind=invalid-token&reason=x",
        ] {
            assert_eq!(StoredAnswer::decode(junk, lifetime), None, "{junk}");
        }
    }

    #[test]
    fn transient_outcomes_are_never_stored() {
        for transient in [
            Rejection::Resolve(ResolveError::Throttled),
            Rejection::Resolve(ResolveError::Timeout),
            Rejection::Resolve(ResolveError::unavailable("down")),
            Rejection::Overloaded {
                retry_after: Duration::from_secs(1),
            },
            Rejection::Internal,
        ] {
            assert!(StoredAnswer::new(&Err(transient), Duration::from_secs(1)).is_none());
        }
    }

    #[test]
    fn digests_show_as_hex_and_holders_are_unique() {
        let digest = TokenDigest::new(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(digest.to_string(), "0123456789abcdef0011223344556677");
        let a = LeaseHolder::unique();
        let b = LeaseHolder::unique();
        assert_ne!(a, b);
    }
}
