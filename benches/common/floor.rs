//! The floor: the least work any middleware must do to hand a handler a
//! cached customer from a token header, as a plain tower middleware. Find
//! the header, take its keyed 128-bit hash, read the clock, look the key up
//! under a read lock, insert the customer and its `Redemption` into the
//! request's extensions, call the inner service with the request as it
//! came. No body wrappers, no rejections, no configuration: what
//! `ResolveCustomerLayer` adds beyond it is the cost of being a complete
//! middleware. `benches/e2e.sh` and `cargo bench --bench layer` measure it
//! next to the layer.
//!
//! A request without the header goes on untouched: on that path the floor
//! costs what any middleware with shared state costs, a look for the header
//! and the reference count of its state, taken for each clone of the
//! service.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::Request;
use siphasher::sip128::{Hasher128, SipHasher13};
use tokio::time::Instant;
use tower::{Layer, Service};
use tower_resolve_customer::{Redemption, ResolvedCustomer, TOKEN_HEADER};

/// What the middleware inserts.
#[derive(Debug, Clone, Copy)]
pub enum Extensions {
    CustomerAndRedemption,
    CustomerOnly,
}

/// One cached customer: what a cache entry must hold to answer a hit.
struct Entry {
    customer: ResolvedCustomer,
    redeemed_at: SystemTime,
    expires_at: Instant,
}

/// The keys are keyed hashes already: the map takes their low bits as they
/// are.
#[derive(Default)]
struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes.iter().take(8) {
            self.0 = self.0 << 8 | u64::from(byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

struct Cache {
    keys: (u64, u64),
    entries: RwLock<HashMap<u128, Entry, BuildHasherDefault<KeyBits>>>,
    extensions: Extensions,
}

impl Cache {
    fn key(&self, token: &[u8]) -> u128 {
        let mut hasher = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        hasher.write(token);
        hasher.finish128().as_u128()
    }
}

#[derive(Clone)]
pub struct FloorLayer {
    cache: Arc<Cache>,
}

impl FloorLayer {
    /// A cache holding `token`, fresh for an hour.
    pub fn new(extensions: Extensions, token: &str) -> Self {
        let random = RandomState::new();
        let mut cache = Cache {
            keys: (random.hash_one(0u8), random.hash_one(1u8)),
            entries: RwLock::default(),
            extensions,
        };
        let key = cache.key(token.as_bytes());
        cache.entries.get_mut().expect("lock").insert(
            key,
            Entry {
                customer: ResolvedCustomer::new("123456789012", "prod-bench"),
                redeemed_at: SystemTime::now(),
                expires_at: Instant::now() + Duration::from_secs(3600),
            },
        );
        Self {
            cache: Arc::new(cache),
        }
    }
}

impl<S> Layer<S> for FloorLayer {
    type Service = Floor<S>;

    fn layer(&self, inner: S) -> Floor<S> {
        Floor {
            inner,
            cache: Arc::clone(&self.cache),
        }
    }
}

#[derive(Clone)]
pub struct Floor<S> {
    inner: S,
    cache: Arc<Cache>,
}

impl<S, B> Service<Request<B>> for Floor<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        let mut key = None;
        for value in request.headers().get_all(TOKEN_HEADER) {
            key = Some(self.cache.key(value.as_bytes()));
        }
        let Some(key) = key else {
            return self.inner.call(request);
        };
        let now = Instant::now();
        let found = {
            let entries = self.cache.entries.read().expect("lock");
            entries
                .get(&key)
                .filter(|entry| now < entry.expires_at)
                .map(|entry| (entry.customer.clone(), entry.redeemed_at))
        };
        // The benchmark sends the cached token only: a miss is a bug.
        let (customer, redeemed_at) = found.expect("the token is cached");
        if let Extensions::CustomerAndRedemption = self.cache.extensions {
            request
                .extensions_mut()
                .insert(Redemption::Replay { redeemed_at });
        }
        request.extensions_mut().insert(customer);
        self.inner.call(request)
    }
}
