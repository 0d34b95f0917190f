//! The short-lived, single-flight cache in front of the resolver.
//!
//! Each entry is a [`Slot`]: created by the first request for a token, completed
//! by a spawned task that calls the resolver once, awaited by every request for
//! the same token. The slot is in the cache from the moment the resolve starts,
//! so concurrent requests join it rather than calling again; the resolve runs in
//! its own task, so it finishes (and feeds the cache) even when the request that
//! started it is dropped.
//!
//! Entries are keyed by the first 128 bits of the token's SHA-256, never by the
//! token itself. Freshness is judged on tokio's clock, so tests can pause time;
//! moka's own expiry only reclaims memory.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::customer::ResolvedCustomer;
use crate::error::ResolveError;
use crate::resolver::Resolver;
use crate::token::RegistrationToken;

type Outcome = Result<ResolvedCustomer, ResolveError>;

/// The cache key: a digest of the token.
type TokenKey = u128;

fn key_of(token: &RegistrationToken) -> TokenKey {
    let digest = Sha256::digest(token.expose().as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

/// How a request's answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// A finished answer was in the cache.
    Hit,
    /// Another request's resolve was under way; this one waited for it.
    Joined,
    /// This request started the resolve.
    Miss,
}

impl CacheStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Joined => "joined",
            Self::Miss => "miss",
        }
    }
}

/// Lifetimes of answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) ttl: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) timeout: Duration,
}

impl Policy {
    fn lifetime(&self, outcome: &Outcome) -> Duration {
        match outcome {
            Ok(_) => self.ttl,
            Err(e) if e.is_definitive() => self.negative_ttl,
            Err(_) => Duration::ZERO,
        }
    }
}

/// One resolve, shared by every request for the same token.
pub(crate) struct Slot {
    done: OnceLock<Done>,
    ready: Notify,
}

struct Done {
    outcome: Outcome,
    expires_at: Instant,
    lifetime: Duration,
}

impl Slot {
    fn new() -> Self {
        Self {
            done: OnceLock::new(),
            ready: Notify::new(),
        }
    }

    fn is_stale(&self, now: Instant) -> bool {
        self.done.get().is_some_and(|d| now >= d.expires_at)
    }

    fn is_done(&self) -> bool {
        self.done.get().is_some()
    }

    /// Records the outcome (first writer wins) and wakes every waiter.
    fn complete(&self, outcome: Outcome, lifetime: Duration) {
        let _ = self.done.set(Done {
            outcome,
            expires_at: Instant::now() + lifetime,
            lifetime,
        });
        self.ready.notify_waiters();
    }

    async fn wait(&self) -> Outcome {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(done) = self.done.get() {
                return done.outcome.clone();
            }
            notified.await;
        }
    }
}

/// Tells moka when to reclaim an entry's memory.
struct SlotExpiry {
    policy: Policy,
}

impl SlotExpiry {
    fn lifetime(&self, slot: &Slot) -> Duration {
        match slot.done.get() {
            Some(done) => done.lifetime,
            // Pending: the resolve ends within the timeout, then the entry is
            // re-inserted with its real lifetime.
            None => self.policy.ttl.max(self.policy.negative_ttl) + self.policy.timeout,
        }
    }
}

impl Expiry<TokenKey, Arc<Slot>> for SlotExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        slot: &Arc<Slot>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.lifetime(slot))
    }

    fn expire_after_update(
        &self,
        _key: &TokenKey,
        slot: &Arc<Slot>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.lifetime(slot))
    }
}

/// The single-flight cache and the resolver behind it.
pub(crate) struct DedupeCache<R> {
    cache: Cache<TokenKey, Arc<Slot>>,
    resolver: Arc<R>,
    policy: Policy,
}

impl<R: Resolver> DedupeCache<R> {
    pub(crate) fn new(resolver: Arc<R>, policy: Policy, capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(SlotExpiry { policy })
            .build();
        Self {
            cache,
            resolver,
            policy,
        }
    }

    /// The answer for `token`: from the cache, from a resolve under way, or from a
    /// new resolve.
    pub(crate) async fn resolve(&self, token: &RegistrationToken) -> (Outcome, CacheStatus) {
        let (slot, status) = self.slot_for(token).await;
        (slot.wait().await, status)
    }

    async fn slot_for(&self, token: &RegistrationToken) -> (Arc<Slot>, CacheStatus) {
        let key = key_of(token);
        let now = Instant::now();
        if let Some(slot) = self.cache.get(&key).await
            && !slot.is_stale(now)
        {
            let status = if slot.is_done() {
                CacheStatus::Hit
            } else {
                CacheStatus::Joined
            };
            return (slot, status);
        }

        // Absent or stale: decide under moka's per-key lock so that exactly one
        // request starts the resolve. The closure runs without yielding, so the
        // task is spawned if and only if its slot is offered for insertion.
        let result = self
            .cache
            .entry(key)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(entry) if !entry.value().is_stale(Instant::now()) => Op::Nop,
                    _ => Op::Put(self.start(key, token.clone())),
                };
                std::future::ready(op)
            })
            .await;
        match result {
            CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) => {
                (entry.into_value(), CacheStatus::Miss)
            }
            CompResult::Unchanged(entry) => {
                let slot = entry.into_value();
                let status = if slot.is_done() {
                    CacheStatus::Hit
                } else {
                    CacheStatus::Joined
                };
                (slot, status)
            }
            // Neither is produced by `Op::Put` / `Op::Nop` on a present entry;
            // answer with a resolve of our own rather than panic.
            CompResult::StillNone(_) | CompResult::Removed(_) => {
                (self.start(key, token.clone()), CacheStatus::Miss)
            }
        }
    }

    /// Creates a slot and spawns the one resolver call that completes it.
    fn start(&self, key: TokenKey, token: RegistrationToken) -> Arc<Slot> {
        let slot = Arc::new(Slot::new());
        let completion = Completion {
            slot: Arc::clone(&slot),
            cache: self.cache.clone(),
            key,
            policy: self.policy,
            finished: false,
        };
        let resolver = Arc::clone(&self.resolver);
        let timeout = self.policy.timeout;
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(timeout, resolver.resolve(&token)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(ResolveError::Timeout),
            };
            drop(token);
            tracing::debug!(
                outcome = match &outcome {
                    Ok(_) => "ok",
                    Err(e) => e.kind(),
                },
                upstream_latency_us = started.elapsed().as_micros() as u64,
                "registration token resolved upstream"
            );
            completion.finish(outcome).await;
        });
        slot
    }
}

/// Completes a slot exactly once, even if the resolve task panics or is
/// cancelled (then with [`ResolveError::Unavailable`]).
struct Completion {
    slot: Arc<Slot>,
    cache: Cache<TokenKey, Arc<Slot>>,
    key: TokenKey,
    policy: Policy,
    finished: bool,
}

impl Completion {
    async fn finish(mut self, outcome: Outcome) {
        let lifetime = self.policy.lifetime(&outcome);
        self.slot.complete(outcome, lifetime);
        self.finished = true;
        let keep = lifetime > Duration::ZERO;
        let slot = Arc::clone(&self.slot);
        // Re-insert to give moka the real lifetime, or drop a transient failure,
        // unless a newer slot has taken the key meanwhile.
        self.cache
            .entry(self.key)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(entry) if Arc::ptr_eq(entry.value(), &slot) => {
                        if keep {
                            Op::Put(slot)
                        } else {
                            Op::Remove
                        }
                    }
                    None if keep => Op::Put(slot),
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.finished {
            // Stale at once, so the next request for this token starts afresh.
            self.slot.complete(
                Err(ResolveError::unavailable(
                    "the resolve task ended without an answer",
                )),
                Duration::ZERO,
            );
        }
    }
}
