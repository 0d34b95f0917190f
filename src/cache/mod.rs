//! The short-lived, single-flight cache in front of the resolver.
//!
//! Two structures work together:
//!
//! - the *in-flight map*: one [`Slot`] per token being resolved right now. It is
//!   never evicted, so every request for a token whose resolve is under way joins
//!   that resolve, however full the caches are. It is guarded by sharded mutexes
//!   that are never held across an await.
//! - two caches of finished answers ([`fresh`]): successes (`answers`, the
//!   positive TTL) and definitive refusals (`refusals`, invalid or expired
//!   tokens, the negative TTL), bounded separately so a flood of junk tokens
//!   cannot push real customers out. Both evict with CLOCK (an approximation
//!   of least recently used) and never the entry just stored, so a new
//!   customer is always admitted. Transient failures are never stored.
//!
//! With a shared [`ResolutionStore`](crate::ResolutionStore), a local miss
//! runs the fleet protocol ([`crate::store::protocol`]) inside the single
//! flight instead of calling the resolver directly.
//!
//! A resolve runs in a task of its own: it finishes (and feeds the cache) even
//! when every request waiting for it has gone, and a request that times out
//! leaves it running, so a token AWS has already redeemed is not thrown away.
//!
//! Entries are keyed by the token's keyed 128-bit hash ([`key`]), never by the
//! token itself. Freshness is judged on tokio's clock, so tests can pause time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::Instrument;

use crate::answer::{Answer, Entitled, Known, to_millis};
use crate::entitlements::EntitlementStep;
use crate::error::ResolveError;
use crate::rejection::{Rejection, outcome_kind};
use crate::resolver::DynResolver;
use crate::store::protocol::SharedStore;
use crate::token::RegistrationToken;
use crate::upstream_limit::{MissRate, UpstreamLimit};

mod fresh;
mod key;

use self::fresh::FreshCache;
pub(crate) use self::key::{TokenKey, key_of};

pub(crate) type Outcome = Result<Answer, Rejection>;

const SHARDS: usize = 64;

/// How a request's answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// A finished answer was in the cache.
    Hit,
    /// Another request's resolve was under way; this one waited for it.
    Joined,
    /// This request started the resolve.
    Miss,
    /// The resolve this request needed was not started: the store-lookup or
    /// upstream limit was reached.
    Refused,
}

impl CacheStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Joined => "joined",
            Self::Miss => "miss",
            Self::Refused => "refused",
        }
    }
}

/// Sizes and lifetimes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) ttl: Duration,
    pub(crate) capacity: u64,
    pub(crate) negative_ttl: Duration,
    pub(crate) negative_capacity: u64,
    /// How long a request waits for an answer.
    pub(crate) timeout: Duration,
    /// How many upstream calls may run at once.
    pub(crate) max_concurrent: usize,
    /// How fast new tokens may go upstream, if limited.
    pub(crate) miss_rate: Option<MissRate>,
    /// How many tokens may be looked up in a shared store at once.
    pub(crate) max_store_lookups: usize,
    /// How fast new tokens may be looked up in a shared store, if limited.
    pub(crate) store_lookup_rate: Option<MissRate>,
    /// Whether an answer needs the customer's entitlements to be complete.
    pub(crate) wants_entitlements: bool,
}

/// A snapshot of a [`Resolutions`](crate::Resolutions)' cache, store lookups and
/// upstream calls, for metrics and tests, from
/// [`Resolutions::stats`](crate::Resolutions::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Resolved customers held (at most the cache capacity).
    pub customers: u64,
    /// Refused tokens held (at most the negative cache capacity).
    pub refusals: u64,
    /// Tokens being resolved right now, each shared by all its requests.
    pub resolving: usize,
    /// Upstream calls running right now (at most the concurrency bound).
    pub upstream_calls: usize,
    /// Tokens being looked up in the shared store right now (at most the
    /// store-lookup bound; zero without a store).
    pub store_lookups: usize,
}

impl Policy {
    /// How long the upstream call itself may run: past the requests' own
    /// timeout, so a late answer still reaches the cache for the buyer's retry.
    pub(crate) fn upstream_deadline(&self) -> Duration {
        self.timeout.saturating_mul(2)
    }

    /// How long `outcome` is remembered: successes for the TTL, definitive
    /// refusals for the negative TTL, transient failures not at all.
    pub(crate) fn lifetime_of(&self, outcome: &Outcome) -> Option<Duration> {
        match outcome {
            Ok(Answer {
                true_until: Some(until),
                ..
            }) => Some(
                self.ttl
                    .min(until.saturating_duration_since(Instant::now())),
            ),
            Ok(_) => Some(self.ttl),
            Err(Rejection::Resolve(refusal)) if refusal.is_definitive() => Some(self.negative_ttl),
            Err(_) => None,
        }
    }
}

/// One resolve under way, shared by every request for the same token.
struct Slot {
    done: OnceLock<Outcome>,
    ready: Notify,
}

impl Slot {
    fn new() -> Self {
        Self {
            done: OnceLock::new(),
            ready: Notify::new(),
        }
    }

    /// Records the outcome (first writer wins) and wakes every waiter.
    fn complete(&self, outcome: Outcome) {
        let _ = self.done.set(outcome);
        self.ready.notify_waiters();
    }

    async fn wait(&self) -> Outcome {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.done.get() {
                return outcome.clone();
            }
            notified.await;
        }
    }
}

#[derive(Default)]
struct Shard {
    inflight: Mutex<HashMap<TokenKey, Arc<Slot>>>,
    /// Bumped (under the mutex) each time a resolve leaves the in-flight map,
    /// after its answer was stored.
    completions: AtomicU64,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, HashMap<TokenKey, Arc<Slot>>> {
        // The map stays consistent even if a holder panicked: every critical
        // section is a single insert, lookup or removal.
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    answers: FreshCache<Answer>,
    refusals: FreshCache<ResolveError>,
    shards: Box<[Shard]>,
    resolver: Arc<dyn DynResolver>,
    entitlements: Option<EntitlementStep>,
    policy: Policy,
    limit: UpstreamLimit,
    /// Resolutions shared with other replicas, if any.
    store: Option<SharedStore>,
    /// Admission to the store: a bound of its own, taken before the first
    /// store round trip of a token not already in flight here.
    lookups: UpstreamLimit,
}

/// The single-flight cache and the resolver (and store) behind it.
#[derive(Clone)]
pub(crate) struct DedupeCache {
    inner: Arc<Inner>,
}

impl DedupeCache {
    pub(crate) fn new(
        resolver: Arc<dyn DynResolver>,
        entitlements: Option<EntitlementStep>,
        policy: Policy,
        store: Option<SharedStore>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                answers: FreshCache::new(policy.capacity),
                refusals: FreshCache::new(policy.negative_capacity),
                shards: (0..SHARDS).map(|_| Shard::default()).collect(),
                resolver,
                entitlements,
                policy,
                limit: UpstreamLimit::new(policy.max_concurrent, policy.miss_rate),
                lookups: UpstreamLimit::new(policy.max_store_lookups, policy.store_lookup_rate),
                store,
            }),
        }
    }

    /// Whether `self` and `other` are one cache.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    pub(crate) fn store(&self) -> Option<&SharedStore> {
        self.inner.store.as_ref()
    }

    pub(crate) fn entitlement_policy(&self) -> Option<crate::entitlements::EntitlementPolicy> {
        self.inner.entitlements.as_ref().map(|step| step.policy)
    }

    /// What the cache holds and runs right now.
    pub(crate) fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        CacheStats {
            customers: inner.answers.len(),
            refusals: inner.refusals.len(),
            resolving: inner.shards.iter().map(|s| s.lock().len()).sum(),
            upstream_calls: inner.limit.in_use(),
            store_lookups: if inner.store.is_some() {
                inner.lookups.in_use()
            } else {
                0
            },
        }
    }

    /// What `f` makes of the fresh finished answer for `key` (a customer, or
    /// the error a refused token got), if the cache holds one; read in place,
    /// under the cache's read lock, so `f` must not call back into the cache.
    /// Never waits.
    #[inline]
    pub(crate) fn cached_with<R>(
        &self,
        key: TokenKey,
        f: impl FnOnce(Result<&Answer, &ResolveError>) -> R,
    ) -> Option<R> {
        self.inner.cached_with(key, f)
    }

    /// The answer for `token` (whose key is `key`): from the cache, from a
    /// resolve under way, or from a new resolve.
    ///
    /// The only way answers enter the cache, always under the key of a
    /// [`RegistrationToken`], whose syntax was checked: a cache hit on the
    /// request path checks only the token's length (see
    /// `Candidate::validate`).
    pub(crate) async fn resolve(
        &self,
        key: TokenKey,
        token: &RegistrationToken,
    ) -> (Outcome, CacheStatus) {
        let shard = self.inner.shard(key);
        loop {
            let seen = shard.completions.load(Ordering::Acquire);
            if let Some(outcome) = self.inner.cached(key) {
                return (outcome, CacheStatus::Hit);
            }
            // `launch`: the resolve this request must start, with its permit.
            let (slot, status, launch) = {
                let mut inflight = shard.lock();
                if let Some(slot) = inflight.get(&key) {
                    (Arc::clone(slot), CacheStatus::Joined, None)
                } else if shard.completions.load(Ordering::Acquire) != seen {
                    // A resolve finished since the cache was read: its answer
                    // may be there now.
                    continue;
                } else {
                    // With a shared store, this admits the token to the store
                    // only: the upstream limits apply once this replica holds
                    // the lease, so an answer another replica already has is
                    // served without spending the upstream budget.
                    let limit = match self.inner.store {
                        Some(_) => &self.inner.lookups,
                        None => &self.inner.limit,
                    };
                    let permit = match limit.admit() {
                        Ok(permit) => permit,
                        Err(refused) => return (Err(refused), CacheStatus::Refused),
                    };
                    let slot = Arc::new(Slot::new());
                    inflight.insert(key, Arc::clone(&slot));
                    (slot, CacheStatus::Miss, Some(permit))
                }
            };
            // Spawned only once the shard's lock is released: a runtime that is
            // shutting down drops the task on this thread, and its drop guard
            // takes that lock.
            if let Some(permit) = launch {
                Inner::launch(&self.inner, key, token.clone(), permit, Arc::clone(&slot));
            }
            let outcome = tokio::time::timeout(self.inner.policy.timeout, slot.wait())
                .await
                .unwrap_or(Err(Rejection::Resolve(ResolveError::Timeout)));
            // Through a store, the upstream limits are met only under the lease.
            let status = match (&outcome, status) {
                (Err(Rejection::Overloaded { .. }), CacheStatus::Miss) => CacheStatus::Refused,
                (_, status) => status,
            };
            return (outcome, status);
        }
    }
}

impl Inner {
    /// The in-flight shard that owns `key`.
    fn shard(&self, key: TokenKey) -> &Shard {
        &self.shards[(key % SHARDS as u128) as usize]
    }

    fn cached(&self, key: TokenKey) -> Option<Outcome> {
        self.cached_with(key, |cached| match cached {
            Ok(answer) => Ok(answer.clone()),
            Err(refusal) => Err(Rejection::Resolve(refusal.clone())),
        })
    }

    #[inline]
    fn cached_with<R>(
        &self,
        key: TokenKey,
        f: impl FnOnce(Result<&Answer, &ResolveError>) -> R,
    ) -> Option<R> {
        let now = Instant::now();
        let wants_entitlements = self.policy.wants_entitlements;
        // Taken by whichever map holds the key.
        let mut f = Some(f);
        let answered = self.answers.get_with(key, now, |answer, _| {
            // An answer still waiting for its entitlements is not a hit: the
            // next resolve fetches them (and only them).
            match answer.is_complete(wants_entitlements) {
                true => f.take().map(|f| f(Ok(answer))),
                false => None,
            }
        });
        match (answered, f) {
            (Some(answered), _) => answered,
            (None, Some(f)) => self
                .refusals
                .get_with(key, now, |refusal, _| f(Err(refusal))),
            (None, None) => None,
        }
    }
}

impl Inner {
    /// The customer of a fresh cached answer that still lacks its
    /// entitlements.
    fn known(&self, key: TokenKey) -> Option<Known> {
        let (answer, expires_at) = self.answers.get(key, Instant::now())?;
        Some(answer.known(expires_at))
    }

    /// The answer for `token`, given at most `deadline`: the resolver's
    /// (unless the customer is `known` already), then the entitlement step's.
    async fn redeem(
        &self,
        token: &RegistrationToken,
        known: Option<Known>,
        deadline: Duration,
    ) -> Outcome {
        let started = Instant::now();
        let (customer, redeemed_at, true_until) = match known {
            Some(known) => (known.customer, known.redeemed_at, Some(known.true_until)),
            None => {
                let outcome = tokio::time::timeout(deadline, self.resolver.resolve_boxed(token))
                    .await
                    .unwrap_or(Err(ResolveError::Timeout))
                    .map_err(Rejection::Resolve);
                tracing::debug!(
                    outcome = outcome_kind(&outcome),
                    upstream_latency_us = started.elapsed().as_micros() as u64,
                    "registration token resolved upstream"
                );
                (outcome?, to_millis(std::time::SystemTime::now()), None)
            }
        };
        let entitlements = match &self.entitlements {
            None => Entitled::NotFetched,
            Some(step) => {
                let left = deadline.saturating_sub(started.elapsed());
                let fetched = step.fetch(&customer, left).await;
                if let Err(error) = &fetched {
                    tracing::debug!(error = error.kind(), "entitlements not fetched");
                }
                fetched.map_or_else(Entitled::Failed, Entitled::Fetched)
            }
        };
        // A customer found earlier was given to no request (only complete
        // answers are): the run that completes it makes the redemption's
        // first answer.
        let made_here = true_until.is_none() || matches!(entitlements, Entitled::Fetched(_));
        Ok(Answer {
            customer,
            redeemed_at,
            made_here,
            entitlements,
            true_until,
        })
    }

    /// Spawns the one resolve that completes `slot`, holding `permit` (the
    /// upstream or store-lookup admission) until it ends.
    fn launch(
        this: &Arc<Self>,
        key: TokenKey,
        token: RegistrationToken,
        permit: OwnedSemaphorePermit,
        slot: Arc<Slot>,
    ) {
        let completion = Completion {
            inner: Arc::clone(this),
            slot: Arc::clone(&slot),
            key,
        };
        let inner = Arc::clone(this);
        let span = tracing::debug_span!("resolve_customer_upstream");
        tokio::spawn(
            async move {
                let deadline = inner.policy.upstream_deadline();
                let local = inner.known(key);
                // Stores name tokens by their SHA-256, which replicas agree on.
                let digest = inner.store.as_ref().map(|_| token.digest());
                let upstream = |known: Option<Known>| async {
                    let outcome = inner.redeem(&token, known, deadline).await;
                    drop(token);
                    outcome
                };
                match (&inner.store, digest) {
                    (Some(store), Some(digest)) => {
                        let deliver =
                            move |(outcome, lifetime)| completion.finish(outcome, lifetime);
                        store
                            .resolve(
                                digest,
                                &inner.policy,
                                &inner.limit,
                                local,
                                upstream,
                                deliver,
                            )
                            .await;
                    }
                    _ => {
                        let outcome = upstream(local).await;
                        let lifetime = inner.policy.lifetime_of(&outcome);
                        completion.finish(outcome, lifetime);
                    }
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Completes a slot, stores the answer, and takes the slot out of the in-flight
/// map; if dropped unfinished (the resolver panicked, the runtime is shutting
/// down), completes it with [`ResolveError::Unavailable`] instead.
struct Completion {
    inner: Arc<Inner>,
    slot: Arc<Slot>,
    key: TokenKey,
}

impl Completion {
    /// Hands `outcome` to every waiter and keeps it for `lifetime`, if any.
    fn finish(self, outcome: Outcome, lifetime: Option<Duration>) {
        // Cached before the waiters wake, so whatever they do next (another
        // request, a look at the stats) finds it there.
        if let Some(lifetime) = lifetime.filter(|l| !l.is_zero()) {
            // An answer from the store keeps the lifetime it has left, but
            // never more than this replica's own settings.
            let policy = &self.inner.policy;
            match &outcome {
                Ok(answer) => {
                    let lifetime = lifetime.min(policy.ttl);
                    self.inner
                        .answers
                        .insert(self.key, answer.clone(), lifetime);
                }
                Err(Rejection::Resolve(refusal)) => {
                    let lifetime = lifetime.min(policy.negative_ttl);
                    self.inner
                        .refusals
                        .insert(self.key, refusal.clone(), lifetime);
                }
                Err(_) => {}
            }
        }
        self.slot.complete(outcome);
        // Dropping `self` now leaves the in-flight map.
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if self.slot.done.get().is_none() {
            // Unwinding: the resolver panicked, a bug (500). Otherwise the task
            // was dropped unfinished, as when the runtime shuts down (503).
            self.slot.complete(Err(if std::thread::panicking() {
                Rejection::Internal
            } else {
                Rejection::Resolve(ResolveError::unavailable(
                    "the resolve task ended without an answer",
                ))
            }));
        }
        let shard = self.inner.shard(self.key);
        let mut inflight = shard.lock();
        if inflight
            .get(&self.key)
            .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
        {
            inflight.remove(&self.key);
        }
        shard.completions.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::ResolvedCustomer;

    fn policy() -> Policy {
        Policy {
            ttl: Duration::from_secs(60),
            capacity: 100,
            negative_ttl: Duration::from_secs(60),
            negative_capacity: 100,
            timeout: Duration::from_secs(1),
            max_concurrent: 4,
            miss_rate: None,
            max_store_lookups: 16,
            store_lookup_rate: None,
            wants_entitlements: false,
        }
    }

    /// Keys are digests: no 16-byte window of either token (the bytes a
    /// careless key would copy) is a key, and no stored value shows a token.
    #[tokio::test]
    async fn the_cache_holds_digests_not_tokens() {
        let good = RegistrationToken::new("GoodTokenGoodTokenGoodToken+/==").unwrap();
        let junk = RegistrationToken::new("JunkTokenJunkTokenJunkToken+/==").unwrap();
        let good_raw = good.expose().to_owned();
        let resolver = move |token: RegistrationToken| {
            let good = token.expose() == good_raw;
            async move {
                if good {
                    Ok(ResolvedCustomer::new("123456789012", "prod-abc"))
                } else {
                    Err(ResolveError::InvalidToken)
                }
            }
        };
        let cache = DedupeCache::new(Arc::new(resolver), None, policy(), None);
        for token in [&good, &junk] {
            let (outcome, status) = cache
                .resolve(key_of(token.expose().as_bytes()), token)
                .await;
            assert_eq!(status, CacheStatus::Miss);
            assert_eq!(outcome.is_ok(), token == &good);
            assert_eq!(
                cache.cached_with(key_of(token.expose().as_bytes()), |o| o.is_ok()),
                Some(token == &good)
            );
        }

        let inner = &cache.inner;
        let mut keys: Vec<TokenKey> = inner.answers.keys();
        keys.extend(inner.refusals.keys());
        keys.sort_unstable();
        let mut expected = vec![
            key_of(good.expose().as_bytes()),
            key_of(junk.expose().as_bytes()),
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert!(inner.shards.iter().all(|s| s.lock().is_empty()));

        for token in [&good, &junk] {
            for window in token.expose().as_bytes().windows(16) {
                let copied = u128::from_le_bytes(window.try_into().unwrap());
                assert!(!keys.contains(&copied));
            }
            let values = format!("{:?} {:?}", inner.answers.values(), inner.refusals.values());
            assert!(!values.contains(&token.expose()[..16]), "{values}");
        }
    }
}
