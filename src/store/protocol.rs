//! The fleet protocol: how a replica that has no local answer for a token gets
//! one through a [`ResolutionStore`](super::ResolutionStore), so that the
//! token is redeemed upstream once across every replica sharing the store.
//!
//! It runs inside the local single flight (one run per token per replica at a
//! time), after the local cache missed, and only once the run was admitted by
//! the store-lookup bound. In order:
//!
//! 1. **Read** the store: an answer another replica published is served, with
//!    the lifetime it has left.
//! 2. **Lease**: take the token's lease under a holder id unique to this run.
//!    Taking is idempotent for one holder, so a reply lost on the way back is
//!    simply asked for again.
//! 3. Lease held by another replica: **poll** (read, then try the lease again)
//!    with backoff, until an answer appears, the lease is free, or the
//!    request's resolve timeout passes (then a retryable timeout).
//! 4. Lease held here: admission by the **upstream limits**, a **re-check**
//!    of the store (the previous holder may have published and released in
//!    between), then the **upstream call**, while the lease is **renewed**
//!    every third of its length. A definitive refusal is checked against the
//!    store once more (a customer found by another redemption wins), the
//!    answer is **delivered** to the local waiters, **published** (tried
//!    again until it lands or the resolve timeout passes, still renewing),
//!    and the lease **released**.
//! 5. When the store cannot be reached: resolve without it or refuse, as
//!    configured ([`StoreUnavailable`]). A call that timed out may still have
//!    been applied, so a replica that resolved without the store still renews,
//!    publishes and releases, best-effort, under its holder id.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::{DynStore, LeaseHolder, StoreFailure, StoredAnswer, TokenDigest};
use crate::cache::{Outcome, Policy};
use crate::error::ResolveError;
use crate::upstream_limit::UpstreamLimit;

/// First pause between two looks at a lease held by another replica.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// Longest pause between two looks.
const MAX_POLL: Duration = Duration::from_millis(100);
/// Consecutive failed polls, while waiting on another replica, before the
/// store counts as unavailable.
const MAX_POLL_FAILURES: u32 = 3;
/// A lease lasts at least this many store timeouts, so that a renewal sent a
/// third of the way through always lands before it ends.
const MIN_LEASE_IN_TIMEOUTS: u32 = 3;

/// What a replica does when the shared store does not answer in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUnavailable {
    /// Resolve without the store, as a single replica would, and log a
    /// warning; the answer is still published and any lease this replica may
    /// hold still released, best-effort. A buyer whose double submit lands on
    /// two replicas during the outage may have the token redeemed twice.
    #[default]
    ResolveLocally,
    /// Refuse with [`ResolveError::Unavailable`] (503, `Retry-After: 5`), so a
    /// token is never redeemed without the store's guarantee.
    FailClosed,
}

/// A shared store and how this replica uses it.
pub(crate) struct SharedStore {
    pub(crate) store: Arc<dyn DynStore>,
    /// The longest any one store call may take.
    pub(crate) timeout: Duration,
    /// How long a lease lasts without renewal.
    pub(crate) lease: Duration,
    pub(crate) on_unavailable: StoreUnavailable,
}

/// An answer and how long the local cache keeps it (`None`: not at all).
pub(crate) type Delivered = (Outcome, Option<Duration>);

/// Whether a look at the store found an answer, won the lease, or saw it held.
enum Look {
    Answer(StoredAnswer),
    Leased,
    HeldElsewhere,
}

impl SharedStore {
    /// The lease length for `timeout` and a configured `lease`: at least
    /// [`MIN_LEASE_IN_TIMEOUTS`] store timeouts; four by default.
    pub(crate) fn lease_for(timeout: Duration, lease: Option<Duration>) -> Duration {
        let floor = timeout.saturating_mul(MIN_LEASE_IN_TIMEOUTS);
        lease
            .unwrap_or_else(|| timeout.saturating_mul(4))
            .max(floor)
            .max(Duration::from_millis(3))
    }

    /// Gets the answer for `digest` across the fleet and hands it to
    /// `deliver` as soon as it is known; publishing and releasing go on after.
    /// `upstream` is the resolver's call, run at most once, only under the
    /// lease (or without the store, as configured) and only once `limit`
    /// admits it.
    pub(crate) async fn resolve(
        &self,
        digest: TokenDigest,
        policy: &Policy,
        limit: &UpstreamLimit,
        upstream: impl Future<Output = Outcome>,
        deliver: impl FnOnce(Delivered),
    ) {
        let holder = LeaseHolder::unique();
        let give_up = Instant::now() + policy.timeout;
        let mut pause = FIRST_POLL;
        // Whether the store has answered this run at all, and how many looks
        // in a row have failed since.
        let mut reached = false;
        let mut failures = 0;
        loop {
            match self.look(digest, &holder).await {
                Ok(Look::Answer(answer)) => return deliver(from_store(answer)),
                Ok(Look::Leased) => {
                    return self
                        .hold(digest, &holder, policy, limit, upstream, deliver)
                        .await;
                }
                Ok(Look::HeldElsewhere) => {
                    reached = true;
                    failures = 0;
                }
                Err(error) => {
                    // Unreachable at first contact, or again and again while
                    // waiting on another replica. A single failed poll just
                    // polls again.
                    failures += 1;
                    if !reached || failures >= MAX_POLL_FAILURES {
                        return self
                            .without_store(
                                digest, &holder, &error, policy, limit, upstream, deliver,
                            )
                            .await;
                    }
                }
            }
            if Instant::now() + pause > give_up {
                // The holder is still at work: the buyer's retry will find
                // its answer.
                return deliver((Err(ResolveError::Timeout), None));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// One look: a stored answer, the lease won, or the lease held elsewhere.
    async fn look(&self, digest: TokenDigest, holder: &LeaseHolder) -> Result<Look, StoreFailure> {
        if let Some(answer) = self.call(self.store.read(digest)).await? {
            return Ok(Look::Answer(answer));
        }
        // Taking the lease is idempotent for one holder: a reply lost on the
        // way back is asked for again once.
        let taken = match self
            .call(self.store.try_lease(digest, holder, self.lease))
            .await
        {
            Ok(taken) => taken,
            Err(_) => {
                self.call(self.store.try_lease(digest, holder, self.lease))
                    .await?
            }
        };
        Ok(if taken {
            Look::Leased
        } else {
            Look::HeldElsewhere
        })
    }

    /// This run holds the lease: re-check, call upstream while renewing,
    /// deliver, publish, release.
    async fn hold(
        &self,
        digest: TokenDigest,
        holder: &LeaseHolder,
        policy: &Policy,
        limit: &UpstreamLimit,
        upstream: impl Future<Output = Outcome>,
        deliver: impl FnOnce(Delivered),
    ) {
        let work = async {
            let permit = match limit.admit() {
                Ok(permit) => permit,
                Err(refused) => return deliver((Err(refused), None)),
            };
            // The previous holder may have published and released between our
            // read and our lease.
            match self.read_twice(digest).await {
                Ok(Some(answer)) => return deliver(from_store(answer)),
                Ok(None) => {}
                Err(error) => {
                    if self.on_unavailable == StoreUnavailable::FailClosed {
                        tracing::warn!(%error, "shared store unavailable: refusing to resolve");
                        return deliver(store_unavailable());
                    }
                    // The lease is ours: the others wait for this replica.
                    tracing::warn!(%error, "shared store unavailable for the re-check: resolving under the lease");
                }
            }
            let outcome = upstream.await;
            drop(permit);
            self.finish(digest, outcome, policy, deliver).await;
        };
        self.renewing(digest, holder, true, work).await;
        self.release(digest, holder).await;
    }

    /// The store could not be reached: resolve without it, or refuse.
    #[allow(clippy::too_many_arguments)]
    async fn without_store(
        &self,
        digest: TokenDigest,
        holder: &LeaseHolder,
        error: &StoreFailure,
        policy: &Policy,
        limit: &UpstreamLimit,
        upstream: impl Future<Output = Outcome>,
        deliver: impl FnOnce(Delivered),
    ) {
        match self.on_unavailable {
            StoreUnavailable::FailClosed => {
                tracing::warn!(%error, "shared store unavailable: refusing to resolve");
                deliver(store_unavailable());
            }
            StoreUnavailable::ResolveLocally => {
                tracing::warn!(%error, "shared store unavailable: resolving without it");
                let work = async {
                    let permit = match limit.admit() {
                        Ok(permit) => permit,
                        Err(refused) => return deliver((Err(refused), None)),
                    };
                    let outcome = upstream.await;
                    drop(permit);
                    self.finish(digest, outcome, policy, deliver).await;
                };
                // A lease call that timed out may have been applied: keep that
                // lease alive while resolving, then end it.
                self.renewing(digest, holder, false, work).await;
            }
        }
        // Whatever the store did with calls that timed out, leave no lease.
        self.release(digest, holder).await;
    }

    /// Settles an upstream outcome against the store, delivers it, and
    /// publishes it for the other replicas.
    async fn finish(
        &self,
        digest: TokenDigest,
        outcome: Outcome,
        policy: &Policy,
        deliver: impl FnOnce(Delivered),
    ) {
        if matches!(&outcome, Err(refusal) if refusal.is_definitive())
            && let Ok(Some(answer)) = self.call(self.store.read(digest)).await
            && answer.is_customer()
        {
            // Another redemption of this token found the customer (a lease
            // that lapsed, a replica that resolved without the store): the
            // refusal is this token being used up, not a wrong token.
            return deliver(from_store(answer));
        }
        let lifetime = policy.lifetime_of(&outcome);
        let answer = lifetime.and_then(|lifetime| StoredAnswer::new(&outcome, lifetime));
        deliver((outcome, lifetime));
        if let Some(answer) = answer.filter(|a| !a.lifetime().is_zero()) {
            self.publish(digest, &answer, policy.timeout).await;
        }
    }

    /// Publishes `answer`, trying again with backoff (publishing is
    /// idempotent) until it lands or `patience` has passed: while a holder
    /// keeps trying, its lease is renewed and the others wait for the answer
    /// instead of redeeming the token again.
    async fn publish(&self, digest: TokenDigest, answer: &StoredAnswer, patience: Duration) {
        let give_up = Instant::now() + patience;
        let mut pause = FIRST_POLL;
        loop {
            let error = match self.call(self.store.publish(digest, answer)).await {
                Ok(()) => return,
                Err(error) => error,
            };
            if Instant::now() + pause > give_up {
                tracing::warn!(%error, "could not publish a resolution to the shared store");
                return;
            }
            tracing::debug!(%error, "publishing a resolution again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Runs `work` while renewing `holder`'s lease every third of its length.
    /// `held`: whether the lease is known to be held (a lost lease is then
    /// worth a warning).
    async fn renewing(
        &self,
        digest: TokenDigest,
        holder: &LeaseHolder,
        held: bool,
        work: impl Future<Output = ()>,
    ) {
        let renewals = async {
            let every = self.lease / MIN_LEASE_IN_TIMEOUTS;
            loop {
                tokio::time::sleep(every).await;
                match self
                    .call(self.store.extend_lease(digest, holder, self.lease))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        if held {
                            tracing::warn!("a lease ended while its holder was resolving");
                        }
                        return;
                    }
                    Err(error) => tracing::debug!(%error, "could not renew a lease"),
                }
            }
        };
        let mut work = pin!(work);
        let mut renewals = pin!(renewals);
        let mut renewing = true;
        std::future::poll_fn(|cx| {
            if work.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if renewing && renewals.as_mut().poll(cx).is_ready() {
                renewing = false;
            }
            Poll::Pending
        })
        .await;
    }

    /// The stored answer, asked twice if the first call fails.
    async fn read_twice(&self, digest: TokenDigest) -> Result<Option<StoredAnswer>, StoreFailure> {
        match self.call(self.store.read(digest)).await {
            Ok(answer) => Ok(answer),
            Err(_) => self.call(self.store.read(digest)).await,
        }
    }

    /// Ends `holder`'s lease, asked twice if the first call fails; a lease
    /// that could not be released ends on its own.
    async fn release(&self, digest: TokenDigest, holder: &LeaseHolder) {
        for _ in 0..2 {
            match self.call(self.store.release_lease(digest, holder)).await {
                Ok(_) => return,
                Err(error) => tracing::debug!(%error, "could not release a lease"),
            }
        }
    }

    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, StoreFailure>>,
    ) -> Result<T, StoreFailure> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| Err(Box::new(TimedOut)))
    }
}

fn from_store(answer: StoredAnswer) -> Delivered {
    let lifetime = answer.lifetime();
    (answer.outcome().clone(), Some(lifetime))
}

fn store_unavailable() -> Delivered {
    (
        Err(ResolveError::unavailable(
            "the shared resolution store is unavailable",
        )),
        None,
    )
}

/// A store call that did not answer within the store timeout.
#[derive(Debug)]
struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no answer within the store timeout")
    }
}

impl std::error::Error for TimedOut {}
