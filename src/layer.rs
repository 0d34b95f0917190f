//! [`ResolveCustomerLayer`]: configuration, and the state its services share.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use tower_layer::Layer;

use crate::cache::{CacheStats, DedupeCache, Policy};
use crate::error::ResolveError;
use crate::rejection::{Responder, problem_details};
use crate::resolver::Resolver;
use crate::service::ResolveCustomer;
use crate::source::TokenSource;
use crate::token::DEFAULT_MAX_TOKEN_LEN;
use crate::upstream_limit::MissRate;

/// Default for [`ResolveCustomerLayer::max_body_bytes`]: 16 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// Default for [`ResolveCustomerLayer::cache_ttl`]: 30 minutes.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30 * 60);
/// Default for [`ResolveCustomerLayer::negative_cache_ttl`]: 30 seconds.
pub const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(30);
/// Default for [`ResolveCustomerLayer::cache_capacity`]: 10,000 entries.
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
/// Default for [`ResolveCustomerLayer::resolve_timeout`]: 10 seconds.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ResolveCustomerLayer::body_timeout`]: 10 seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ResolveCustomerLayer::max_concurrent_resolves`].
pub const DEFAULT_MAX_CONCURRENT_RESOLVES: usize = 32;

/// The longest duration any setting accepts: one year. Longer values are
/// clamped to it.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Puts a [`ResolvedCustomer`](crate::ResolvedCustomer) in front of a service.
///
/// The layer finds the registration token (see [`TokenSource`]), redeems it once
/// through the [`Resolver`] behind a short-lived single-flight cache, and inserts
/// the [`ResolvedCustomer`](crate::ResolvedCustomer) into the request's
/// extensions. Requests that cannot be given a customer are answered by the
/// rejection responder ([`problem_details`] by default) without reaching the
/// inner service.
///
/// Every service made by one layer value (and by its clones) shares one cache
/// and one resolver, so a buyer's double submit is deduplicated across routes
/// and connections. Builder methods start a fresh cache: configure first, then
/// layer.
///
/// ```
/// use std::time::Duration;
/// use tower_resolve_customer::{RegistrationToken, ResolveCustomerLayer, ResolvedCustomer};
///
/// let layer = ResolveCustomerLayer::new(|_token: RegistrationToken| async {
///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
/// })
/// .allowed_product_codes(["prod-abc123"])
/// .cache_ttl(Duration::from_secs(600))
/// .resolve_timeout(Duration::from_secs(5));
/// # let _ = layer;
/// ```
pub struct ResolveCustomerLayer<R> {
    resolver: Arc<R>,
    config: Config,
    shared: Arc<OnceLock<Arc<Shared<R>>>>,
}

/// What the services read on every request.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) source: TokenSource,
    pub(crate) required: bool,
    pub(crate) allowed_products: Option<Arc<HashSet<Box<str>>>>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_token_len: usize,
    pub(crate) body_timeout: Duration,
    /// Sizes and lifetimes of the cache, and the resolve timeout.
    pub(crate) cache: Policy,
    pub(crate) responder: Responder,
    /// Resolutions shared with other replicas (feature `redis`).
    #[cfg(feature = "redis")]
    pub(crate) store: Option<crate::redis_store::RedisStore>,
}

/// The state shared by every service a layer makes.
pub(crate) struct Shared<R> {
    pub(crate) config: Config,
    pub(crate) cache: DedupeCache<R>,
}

impl<R> Shared<R> {
    pub(crate) fn reject(&self, error: &ResolveError) -> Response<Bytes> {
        (self.config.responder)(error)
    }
}

impl<R: Resolver> ResolveCustomerLayer<R> {
    /// A layer that redeems tokens with `resolver`, with the defaults: token from
    /// the Marketplace form post, required, any product, 16 KiB body limit read
    /// within 10 s, 30 min cache TTL for 10,000 customers, 30 s negative TTL for
    /// 10,000 refused tokens, 10 s resolve timeout, `application/problem+json`
    /// rejections.
    pub fn new(resolver: R) -> Self {
        Self::from_arc(Arc::new(resolver))
    }

    /// Like [`new`](Self::new), for a resolver already shared elsewhere.
    pub fn from_arc(resolver: Arc<R>) -> Self {
        Self {
            resolver,
            config: Config {
                source: TokenSource::default(),
                required: true,
                allowed_products: None,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                max_token_len: DEFAULT_MAX_TOKEN_LEN,
                body_timeout: DEFAULT_BODY_TIMEOUT,
                cache: Policy {
                    ttl: DEFAULT_CACHE_TTL,
                    capacity: DEFAULT_CACHE_CAPACITY,
                    negative_ttl: DEFAULT_NEGATIVE_CACHE_TTL,
                    negative_capacity: DEFAULT_CACHE_CAPACITY,
                    timeout: DEFAULT_RESOLVE_TIMEOUT,
                    max_concurrent: DEFAULT_MAX_CONCURRENT_RESOLVES,
                    miss_rate: None,
                },
                responder: Arc::new(problem_details),
                #[cfg(feature = "redis")]
                store: None,
            },
            shared: Arc::default(),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self.shared = Arc::default();
        self
    }

    /// Where to look for the token (default: [`TokenSource::form`]).
    pub fn token_source(self, source: TokenSource) -> Self {
        self.configure(|c| c.source = source)
    }

    /// Requests without a token are rejected with
    /// [`ResolveError::MissingToken`] and never reach the inner service. The
    /// default.
    pub fn required(self) -> Self {
        self.configure(|c| c.required = true)
    }

    /// Requests without a token pass through without a
    /// [`ResolvedCustomer`](crate::ResolvedCustomer) extension. A token that is
    /// present but malformed, ambiguous or refused is still rejected, and so is an
    /// urlencoded form `POST` over [`max_body_bytes`](Self::max_body_bytes) when
    /// the form is a token source (the layer cannot tell whether it carries one).
    pub fn optional(self) -> Self {
        self.configure(|c| c.required = false)
    }

    /// Only customers of these products reach the inner service; others are
    /// rejected with [`ResolveError::ProductMismatch`] (403).
    pub fn allowed_product_codes<I, S>(self, codes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let codes = codes
            .into_iter()
            .map(|c| c.into().into_boxed_str())
            .collect();
        self.configure(|c| c.allowed_products = Some(Arc::new(codes)))
    }

    /// The largest form body read to find the token (default 16 KiB). A larger
    /// `Content-Length` is refused before reading; a streamed body is refused as
    /// soon as it grows past the limit. Either way: 413.
    pub fn max_body_bytes(self, limit: usize) -> Self {
        self.configure(|c| c.max_body_bytes = limit)
    }

    /// The longest token accepted, in bytes (default 4 KiB).
    pub fn max_token_len(self, limit: usize) -> Self {
        self.configure(|c| c.max_token_len = limit)
    }

    /// How long a successful resolution is remembered (default 30 minutes). For
    /// that long, the same token keeps resolving to the same customer without an
    /// upstream call, even if AWS would now call it expired.
    ///
    /// Durations over a year are clamped to a year.
    pub fn cache_ttl(self, ttl: Duration) -> Self {
        self.configure(|c| c.cache.ttl = ttl.min(MAX_DURATION))
    }

    /// How many resolved customers are remembered at most (default 10,000); the
    /// least recently used go first. Resolves under way are tracked apart and
    /// never evicted, so concurrent requests for one token always share one
    /// upstream call, whatever the capacity.
    pub fn cache_capacity(self, entries: u64) -> Self {
        self.configure(|c| c.cache.capacity = entries)
    }

    /// How long an `InvalidToken` / `ExpiredToken` answer is remembered (default
    /// 30 seconds). Transient failures (throttling, unavailability, timeouts)
    /// are never remembered.
    pub fn negative_cache_ttl(self, ttl: Duration) -> Self {
        self.configure(|c| c.cache.negative_ttl = ttl.min(MAX_DURATION))
    }

    /// How many refused tokens are remembered at most (default 10,000). Kept
    /// apart from resolved customers, so junk tokens never evict real buyers.
    pub fn negative_cache_capacity(self, entries: u64) -> Self {
        self.configure(|c| c.cache.negative_capacity = entries)
    }

    /// How long a request waits for its token to be resolved, SDK retries
    /// included (default 10 s); past it the request gets
    /// [`ResolveError::Timeout`] (504).
    ///
    /// The upstream call itself is given twice as long: an answer that arrives
    /// late is still cached, so the buyer's retry is served from it instead of
    /// redeeming the token a second time.
    pub fn resolve_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.cache.timeout = timeout.min(MAX_DURATION))
    }

    /// How many distinct tokens may be resolved upstream at once (default 32,
    /// at least 1).
    ///
    /// A request whose token is neither cached nor being resolved, arriving
    /// when all slots are busy, is refused at once with
    /// [`ResolveError::Overloaded`] (503, `Retry-After: 1`) without an upstream
    /// call. Requests for a token already being resolved join that resolve and
    /// are never refused, so a buyer's double submit is not affected.
    ///
    /// `ResolveCustomer` quotas belong to the seller's AWS account: this bound
    /// keeps a flood of junk tokens from throttling real buyers.
    pub fn max_concurrent_resolves(self, limit: usize) -> Self {
        self.configure(|c| c.cache.max_concurrent = limit.max(1))
    }

    /// Limits how fast new tokens go upstream: on average `per_second` a second,
    /// in bursts of at most `burst` (a token bucket; both at least 1). Off by
    /// default.
    ///
    /// Only cache misses that would start an upstream call take from the
    /// bucket. Past the rate they are refused with [`ResolveError::Overloaded`]
    /// (503, with a `Retry-After` of when the next token is due).
    ///
    /// ```
    /// use tower_resolve_customer::{RegistrationToken, ResolveCustomerLayer, ResolvedCustomer};
    ///
    /// // At most 20 new registrations a second, 50 at once, 16 in flight.
    /// let layer = ResolveCustomerLayer::new(|_: RegistrationToken| async {
    ///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
    /// })
    /// .miss_rate_limit(20, 50)
    /// .max_concurrent_resolves(16);
    /// # let _ = layer;
    /// ```
    pub fn miss_rate_limit(self, per_second: u32, burst: u32) -> Self {
        let rate = MissRate {
            per_second: per_second.max(1),
            burst: burst.max(1),
        };
        self.configure(|c| c.cache.miss_rate = Some(rate))
    }

    /// Shares resolutions with the other replicas of a deployment through Redis
    /// (feature `redis`), so a buyer's resubmission that lands on another
    /// replica is answered without a second `ResolveCustomer` call. See
    /// [`RedisStore`](crate::RedisStore) for the protocol and its failure modes.
    #[cfg(feature = "redis")]
    pub fn shared_store(self, store: crate::RedisStore) -> Self {
        self.configure(|c| c.store = Some(store))
    }

    /// How long reading a form body may take (default 10 s); past it the request
    /// gets [`ResolveError::BodyTimeout`] (408).
    pub fn body_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.body_timeout = timeout.min(MAX_DURATION))
    }

    /// Replaces the default [`problem_details`] rejection.
    ///
    /// The body may be anything convertible to [`Bytes`]: `String`, `Vec<u8>`,
    /// `&'static str`, ...
    ///
    /// ```
    /// use http::{Response, StatusCode};
    /// use tower_resolve_customer::{RegistrationToken, ResolveCustomerLayer, ResolveError, ResolvedCustomer};
    ///
    /// let layer = ResolveCustomerLayer::new(|_: RegistrationToken| async {
    ///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
    /// })
    /// .rejection(|error: &ResolveError| {
    ///     let mut page = Response::new(format!("<h1>{}</h1>", error.public_message()));
    ///     *page.status_mut() = error.status();
    ///     page
    /// });
    /// # let _ = layer;
    /// ```
    pub fn rejection<F, T>(self, responder: F) -> Self
    where
        F: Fn(&ResolveError) -> Response<T> + Send + Sync + 'static,
        T: Into<Bytes>,
    {
        let responder: Responder = Arc::new(move |e: &ResolveError| responder(e).map(Into::into));
        self.configure(|c| c.responder = responder)
    }

    /// What the cache shared by this layer's services holds and runs right now
    /// (all zero before the layer has made a service).
    pub fn cache_stats(&self) -> CacheStats {
        self.shared
            .get()
            .map(|shared| shared.cache.stats())
            .unwrap_or_default()
    }

    fn shared(&self) -> Arc<Shared<R>> {
        Arc::clone(self.shared.get_or_init(|| {
            let cache = DedupeCache::new(Arc::clone(&self.resolver), self.config.cache);
            #[cfg(feature = "redis")]
            let cache = cache.with_store(self.config.store.clone());
            Arc::new(Shared {
                config: self.config.clone(),
                cache,
            })
        }))
    }
}

impl<R> Clone for ResolveCustomerLayer<R> {
    fn clone(&self) -> Self {
        Self {
            resolver: Arc::clone(&self.resolver),
            config: self.config.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<R> fmt::Debug for ResolveCustomerLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveCustomerLayer")
            .field("source", &self.config.source)
            .field("required", &self.config.required)
            .field("allowed_products", &self.config.allowed_products)
            .field("max_body_bytes", &self.config.max_body_bytes)
            .field("max_token_len", &self.config.max_token_len)
            .field("body_timeout", &self.config.body_timeout)
            .field("cache_ttl", &self.config.cache.ttl)
            .field("cache_capacity", &self.config.cache.capacity)
            .field("negative_cache_ttl", &self.config.cache.negative_ttl)
            .field(
                "negative_cache_capacity",
                &self.config.cache.negative_capacity,
            )
            .field("resolve_timeout", &self.config.cache.timeout)
            .field("max_concurrent_resolves", &self.config.cache.max_concurrent)
            .field("miss_rate_limit", &self.config.cache.miss_rate)
            .finish_non_exhaustive()
    }
}

impl<S, R: Resolver> Layer<S> for ResolveCustomerLayer<R> {
    type Service = ResolveCustomer<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveCustomer::new(inner, self.shared())
    }
}
