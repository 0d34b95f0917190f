//! [`Resolutions`]: the state every layer over it shares (the resolver, the
//! caches, the single flight, the flood limits, the resolve timeout and an
//! optional shared store), built once by [`ResolutionsBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheStats, DedupeCache, Policy};
use crate::entitlements::{EntitlementPolicy, EntitlementSource, EntitlementStep};
use crate::layer::ResolveCustomerLayer;
use crate::resolver::{DynResolver, Resolver};
use crate::store::ResolutionStore;
use crate::store::protocol::{SharedStore, StoreUnavailable};
use crate::upstream_limit::MissRate;

/// Default for [`ResolutionsBuilder::cache_ttl`]: 30 minutes.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30 * 60);
/// Default for [`ResolutionsBuilder::negative_cache_ttl`]: 30 seconds.
pub const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(30);
/// Default for [`ResolutionsBuilder::cache_capacity`]: 10,000 entries.
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
/// Default for [`ResolutionsBuilder::resolve_timeout`]: 10 seconds.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ResolutionsBuilder::max_concurrent_resolves`].
pub const DEFAULT_MAX_CONCURRENT_RESOLVES: usize = 32;
/// Default for [`ResolutionsBuilder::store_timeout`]: 500 ms.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest duration any setting accepts: one year. Longer values are
/// clamped to it.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Everything the layers of one service share: the [`Resolver`], the cache of
/// answers and refusals, the single flight, the flood limits, the resolve
/// timeout, and optionally a [`ResolutionStore`] shared with other replicas.
///
/// Built once with [`Resolutions::builder`] (or [`Resolutions::new`] for the
/// defaults) and cheap to clone: every clone, and every
/// [`ResolveCustomerLayer`] made from one, uses the same cache and the same
/// budget. So two routes that take the token from different places (a form
/// on one, a header on the other) still redeem a token once, and
/// [`stats`](Self::stats) sees both.
///
/// ```
/// use tower_resolve_customer::{RegistrationToken, ResolveCustomerLayer, ResolvedCustomer, Resolutions, TOKEN_HEADER, TokenSource};
///
/// let resolutions = Resolutions::builder(|_: RegistrationToken| async {
///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
/// })
/// .max_concurrent_resolves(16)
/// .build();
///
/// let form = ResolveCustomerLayer::from_resolutions(resolutions.clone());
/// let api = ResolveCustomerLayer::from_resolutions(resolutions.clone())
///     .token_source(TokenSource::header(TOKEN_HEADER));
/// assert!(form.resolutions().same_as(api.resolutions()));
/// assert_eq!(resolutions.stats().customers, 0);
/// ```
#[derive(Clone)]
pub struct Resolutions {
    cache: DedupeCache,
}

impl Resolutions {
    /// Resolutions through `resolver` with every default: a 30 min cache for
    /// 10,000 customers, a 30 s negative cache for 10,000 refused tokens, a
    /// 10 s resolve timeout, 32 upstream calls at once, no shared store.
    pub fn new<R: Resolver>(resolver: R) -> Self {
        Self::builder(resolver).build()
    }

    /// Starts configuring resolutions through `resolver`.
    pub fn builder<R: Resolver>(resolver: R) -> ResolutionsBuilder {
        ResolutionsBuilder {
            resolver: Arc::new(resolver),
            policy: Policy {
                ttl: DEFAULT_CACHE_TTL,
                capacity: DEFAULT_CACHE_CAPACITY,
                negative_ttl: DEFAULT_NEGATIVE_CACHE_TTL,
                negative_capacity: DEFAULT_CACHE_CAPACITY,
                timeout: DEFAULT_RESOLVE_TIMEOUT,
                max_concurrent: DEFAULT_MAX_CONCURRENT_RESOLVES,
                miss_rate: None,
                max_store_lookups: 0,
                store_lookup_rate: None,
                wants_entitlements: false,
            },
            entitlements: None,
            store: None,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            lease: None,
            on_store_unavailable: StoreUnavailable::default(),
            publish_before_answering: false,
        }
    }

    /// A [`ResolveCustomerLayer`] over these resolutions, with the default
    /// per-route options.
    pub fn layer(&self) -> ResolveCustomerLayer {
        ResolveCustomerLayer::from_resolutions(self.clone())
    }

    /// What the cache holds and runs right now: customers and refusals held,
    /// tokens being resolved, store lookups and upstream calls under way.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Whether `self` and `other` are one set of resolutions (clones of each
    /// other), sharing one cache and one budget.
    pub fn same_as(&self, other: &Self) -> bool {
        self.cache.same_as(&other.cache)
    }

    pub(crate) fn cache(&self) -> &DedupeCache {
        &self.cache
    }

    /// The entitlement policy, if the entitlement step is on.
    pub(crate) fn entitlement_policy(&self) -> Option<EntitlementPolicy> {
        self.cache.entitlement_policy()
    }
}

impl fmt::Debug for Resolutions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = self.cache.policy();
        let store = self.cache.store();
        f.debug_struct("Resolutions")
            .field("cache_ttl", &policy.ttl)
            .field("cache_capacity", &policy.capacity)
            .field("negative_cache_ttl", &policy.negative_ttl)
            .field("negative_cache_capacity", &policy.negative_capacity)
            .field("resolve_timeout", &policy.timeout)
            .field("max_concurrent_resolves", &policy.max_concurrent)
            .field("miss_rate_limit", &policy.miss_rate)
            .field("store", &store.is_some())
            .field("store_timeout", &store.map(|s| s.timeout))
            .field("lease", &store.map(|s| s.lease))
            .field("on_store_unavailable", &store.map(|s| s.on_unavailable))
            .field("publish_before_answering", &store.map(|s| s.publish_first))
            .field("max_concurrent_store_lookups", &policy.max_store_lookups)
            .field("store_lookup_rate_limit", &policy.store_lookup_rate)
            .field("entitlements", &self.entitlement_policy())
            .finish_non_exhaustive()
    }
}

/// Configures [`Resolutions`]; nothing is created until [`build`](Self::build).
#[must_use = "a builder does nothing until `build` is called"]
pub struct ResolutionsBuilder {
    resolver: Arc<dyn DynResolver>,
    policy: Policy,
    entitlements: Option<EntitlementStep>,
    store: Option<Arc<dyn crate::store::DynStore>>,
    store_timeout: Duration,
    lease: Option<Duration>,
    on_store_unavailable: StoreUnavailable,
    publish_before_answering: bool,
}

impl ResolutionsBuilder {
    /// How long a successful resolution is remembered (default 30 minutes). For
    /// that long, the same token keeps resolving to the same customer without an
    /// upstream call, even if AWS would now call it expired.
    ///
    /// Durations over a year are clamped to a year.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.policy.ttl = ttl.min(MAX_DURATION);
        self
    }

    /// How many resolved customers are remembered at most (default 10,000): when
    /// full, one not used since the others were goes first (CLOCK, an
    /// approximation of least recently used), never the one just stored. Resolves under way are tracked apart and
    /// never evicted, so concurrent requests for one token always share one
    /// upstream call, whatever the capacity.
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.policy.capacity = entries;
        self
    }

    /// How long an `InvalidToken` / `ExpiredToken` answer is remembered (default
    /// 30 seconds). Transient failures (throttling, unavailability, timeouts)
    /// are never remembered.
    pub fn negative_cache_ttl(mut self, ttl: Duration) -> Self {
        self.policy.negative_ttl = ttl.min(MAX_DURATION);
        self
    }

    /// How many refused tokens are remembered at most (default 10,000). Kept
    /// apart from resolved customers, so junk tokens never evict real buyers.
    pub fn negative_cache_capacity(mut self, entries: u64) -> Self {
        self.policy.negative_capacity = entries;
        self
    }

    /// How long a request waits for its token to be resolved, SDK retries
    /// included (default 10 s); past it the request gets
    /// [`ResolveError::Timeout`](crate::ResolveError::Timeout) (504). Replicas
    /// waiting on another replica's lease give up at the same point.
    ///
    /// The upstream call itself is given twice as long: an answer that arrives
    /// late is still cached (and published), so the buyer's retry is served
    /// from it instead of redeeming the token a second time.
    pub fn resolve_timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = timeout.min(MAX_DURATION);
        self
    }

    /// How many distinct tokens may be resolved upstream at once (default 32,
    /// at least 1).
    ///
    /// A request whose token is neither cached nor being resolved, arriving
    /// when all slots are busy, is refused at once with
    /// [`Rejection::Overloaded`](crate::Rejection::Overloaded) (503,
    /// `Retry-After: 1`) without an upstream call. Requests for a token already
    /// being resolved join that resolve and are never refused, so a buyer's
    /// double submit is not affected.
    ///
    /// `ResolveCustomer` quotas belong to the seller's AWS account: this bound
    /// keeps a flood of junk tokens from throttling real buyers.
    pub fn max_concurrent_resolves(mut self, limit: usize) -> Self {
        self.policy.max_concurrent = limit.max(1);
        self
    }

    /// Limits how fast new tokens go upstream: on average `per_second` a second,
    /// in bursts of at most `burst` (a token bucket; both at least 1). Off by
    /// default.
    ///
    /// Only cache misses that would start an upstream call take from the
    /// bucket. Past the rate they are refused with
    /// [`Rejection::Overloaded`](crate::Rejection::Overloaded) (503, with
    /// a `Retry-After` of when the next token is due).
    ///
    /// ```
    /// use tower_resolve_customer::{RegistrationToken, Resolutions, ResolvedCustomer};
    ///
    /// // At most 20 new registrations a second, 50 at once, 16 in flight.
    /// let resolutions = Resolutions::builder(|_: RegistrationToken| async {
    ///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
    /// })
    /// .miss_rate_limit(20, 50)
    /// .max_concurrent_resolves(16)
    /// .build();
    /// # let _ = resolutions;
    /// ```
    pub fn miss_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.policy.miss_rate = Some(MissRate {
            per_second: per_second.max(1),
            burst: burst.max(1),
        });
        self
    }

    /// Fetches each new customer's entitlements from `source`
    /// ([`AwsEntitlements`](crate::AwsEntitlements) with the `entitlements`
    /// feature) right after the resolve, in the same single flight and
    /// under the same store lease, and keeps them with the answer: handlers
    /// find [`Entitlements`](crate::Entitlements) next to the customer, and a
    /// double submit makes one `GetEntitlements` round fleet-wide.
    ///
    /// `policy` says whether a customer with no current entitlement reaches
    /// the handler ([`EntitlementPolicy::Informational`]) or is rejected
    /// ([`EntitlementPolicy::Required`]). A fetch that fails (throttled,
    /// unavailable, timed out) is answered like a resolve that did, with a
    /// retryable [`Rejection::Entitlements`](crate::Rejection::Entitlements);
    /// the customer is kept (the token is spent), and the buyer's retry
    /// fetches only the entitlements. The fetch shares the upstream deadline
    /// with the resolve.
    pub fn entitlements(
        mut self,
        source: impl EntitlementSource,
        policy: EntitlementPolicy,
    ) -> Self {
        self.entitlements = Some(EntitlementStep {
            source: Arc::new(source),
            policy,
        });
        self.policy.wants_entitlements = true;
        self
    }

    /// Shares resolutions with the other replicas of a deployment through
    /// `store` ([`RedisStore`](crate::RedisStore), or any [`ResolutionStore`]),
    /// so that a token is redeemed once per deployment and a buyer's
    /// resubmission that lands on another replica is answered from the store.
    /// See the README's "Running several replicas" for the guarantee.
    pub fn store(mut self, store: impl ResolutionStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// How long each store call may take (default 500 ms). A call past it
    /// counts as failed, and as possibly applied.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout.clamp(Duration::from_millis(1), MAX_DURATION);
        self
    }

    /// How long a lease lasts without renewal (default and least: four store
    /// timeouts). The holder renews it every quarter of its length while
    /// it works, so it only lapses when the holder dies or loses the store; a
    /// shorter lease lets the others take over sooner.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease.min(MAX_DURATION));
        self
    }

    /// What to do when the store does not answer in time (default
    /// [`StoreUnavailable::ResolveLocally`]).
    pub fn on_store_unavailable(mut self, behaviour: StoreUnavailable) -> Self {
        self.on_store_unavailable = behaviour;
        self
    }

    /// Publishes a new answer to the store before answering the requests
    /// that wait for it (default: after). Hosts that freeze the process once
    /// the response is sent, such as AWS Lambda, need it: otherwise the
    /// answer may stay unpublished until the next invocation thaws the
    /// process, and another execution environment would not find it. A run
    /// with nothing to publish (AWS throttled it, say) records the end of
    /// its attempt first instead, so that no one waits for it. Costs the
    /// publish round trip on a new token's response.
    pub fn publish_before_answering(mut self, first: bool) -> Self {
        self.publish_before_answering = first;
        self
    }

    /// How many tokens not already being resolved here may be looked up in the
    /// store at once (default four times
    /// [`max_concurrent_resolves`](Self::max_concurrent_resolves), at least 1).
    /// A token past the bound is refused with
    /// [`Rejection::Overloaded`](crate::Rejection::Overloaded) before any
    /// store round trip, so junk tokens cannot flood the store either.
    pub fn max_concurrent_store_lookups(mut self, limit: usize) -> Self {
        self.policy.max_store_lookups = limit.max(1);
        self
    }

    /// Limits how fast new tokens are looked up in the store: on average
    /// `per_second` a second, in bursts of at most `burst`. Off by default.
    pub fn store_lookup_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.policy.store_lookup_rate = Some(MissRate {
            per_second: per_second.max(1),
            burst: burst.max(1),
        });
        self
    }

    /// The resolutions, with one cache and one budget.
    pub fn build(self) -> Resolutions {
        let mut policy = self.policy;
        if policy.max_store_lookups == 0 {
            policy.max_store_lookups = policy.max_concurrent.saturating_mul(4);
        }
        let store = self.store.map(|store| SharedStore {
            store,
            timeout: self.store_timeout,
            lease: SharedStore::lease_for(self.store_timeout, self.lease),
            on_unavailable: self.on_store_unavailable,
            publish_first: self.publish_before_answering,
        });
        Resolutions {
            cache: DedupeCache::new(self.resolver, self.entitlements, policy, store),
        }
    }
}

impl fmt::Debug for ResolutionsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolutionsBuilder")
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}
