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
//!    simply asked for again. Taking it also records this run's *attempt* at
//!    redeeming the token, remembered for as long as the run may be at work.
//! 3. Lease held by another replica: **poll** (read, then try the lease again)
//!    with backoff, until an answer appears, the lease is free, or the
//!    request's resolve timeout passes (then a retryable timeout).
//! 4. Lease held here: a **re-check** of the store (the previous holder may
//!    have published and released in between), admission by the **upstream
//!    limits**, then the **upstream call**, while the lease is **renewed**
//!    every quarter of its length. An "expired" answer is **settled** against
//!    the store: the run records its attempt as ended, a customer found by
//!    another redemption wins, and while another attempt is still under way
//!    (it may yet publish a customer), the run waits for it. The answer is
//!    **delivered** to the local waiters, **published** (tried again until it
//!    lands or the resolve timeout passes, still renewing), and the lease
//!    **released**; an attempt that has no customer to publish is recorded as
//!    ended, so that no one waits for it.
//! 5. When three looks in a row fail, the store counts as unavailable: resolve
//!    without it or refuse, as configured ([`StoreUnavailable`]). A call that
//!    timed out may still have been applied, so a replica that resolves
//!    without the store still renews (or takes) the lease, publishes and
//!    releases, best-effort, under its holder id.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::{
    DynStore, LeaseGrant, LeaseHolder, LeaseTerms, StoreFailure, StoredAnswer, TokenDigest,
};
use crate::answer::Known;
use crate::cache::{Outcome, Policy};
use crate::error::ResolveError;
use crate::rejection::Rejection;
use crate::upstream_limit::UpstreamLimit;

/// First pause between two looks at a lease held by another replica.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// Longest pause between two looks.
const MAX_POLL: Duration = Duration::from_millis(100);
/// Consecutive failed polls, while waiting on another replica, before the
/// store counts as unavailable.
const MAX_POLL_FAILURES: u32 = 3;
/// A lease lasts at least this many store timeouts: with renewals a quarter
/// of a lease (at least one store timeout) apart, two in a row may time out
/// and the third still lands before the lease lapses.
const MIN_LEASE_IN_TIMEOUTS: u32 = 4;
/// Renewals per lease length: with renewals a quarter of a lease apart
/// (counted from the last successful send), two in a row may fail.
const RENEWALS_PER_LEASE: u32 = 4;

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
    /// Publish before answering the local requests (for hosts that freeze
    /// the process once the response is sent, like AWS Lambda).
    pub(crate) publish_first: bool,
}

/// An answer and how long the local cache keeps it (`None`: not at all).
pub(crate) type Delivered = (Outcome, Option<Duration>);

/// The pauses between two tries of a store call: 10 ms, doubling up to
/// 100 ms.
struct Backoff {
    pause: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { pause: FIRST_POLL }
    }

    /// Whether the next pause ends by `deadline`.
    fn fits_before(&self, deadline: Instant) -> bool {
        Instant::now() + self.pause <= deadline
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_POLL);
    }
}

/// Whether a look at the store found an answer, won the lease, or saw it held.
enum Look {
    Answer(StoredAnswer),
    Leased,
    HeldElsewhere,
}

impl SharedStore {
    /// The lease length for `timeout` and a configured `lease`: at least
    /// [`MIN_LEASE_IN_TIMEOUTS`] store timeouts, which is the default.
    pub(crate) fn lease_for(timeout: Duration, lease: Option<Duration>) -> Duration {
        let floor = timeout.saturating_mul(MIN_LEASE_IN_TIMEOUTS);
        lease
            .unwrap_or(floor)
            .max(floor)
            .max(Duration::from_millis(4))
    }

    /// Gets the answer for `digest` across the fleet and hands it to
    /// `deliver` as soon as it is known; publishing and releasing go on after.
    /// `upstream` is the resolver's call (and the entitlement step's), run at
    /// most once, only under the lease (or without the store, as configured)
    /// and only once `limit` admits it; it is given the customer when only
    /// the entitlements are missing (`known` locally, or found in the store).
    pub(crate) async fn resolve<F: Future<Output = Outcome>>(
        &self,
        digest: TokenDigest,
        policy: &Policy,
        limit: &UpstreamLimit,
        known: Option<Known>,
        upstream: impl FnOnce(Option<Known>) -> F,
        deliver: impl FnOnce(Delivered),
    ) {
        let run = Run {
            store: self,
            digest,
            holder: LeaseHolder::unique(),
            policy,
            give_up: Instant::now() + policy.timeout,
            in_doubt: AtomicBool::new(false),
            attempt: Mutex::new(Attempt::None),
            held_since: Mutex::new(None),
            known: Mutex::new(known),
        };
        let mut backoff = Backoff::new();
        // Looks in a row that failed.
        let mut failures = 0;
        loop {
            match run.look().await {
                Ok(Look::Answer(answer)) => {
                    run.hand_over(deliver, from_store(answer)).await;
                    return run.close().await;
                }
                Ok(Look::Leased) => return run.hold(limit, upstream, deliver).await,
                Ok(Look::HeldElsewhere) => failures = 0,
                Err(error) => {
                    // A slow reply is not an outage: only several failed
                    // looks in a row count as the store being unavailable.
                    failures += 1;
                    if failures >= MAX_POLL_FAILURES {
                        return run.without_store(&error, limit, upstream, deliver).await;
                    }
                }
            }
            if !backoff.fits_before(run.give_up) {
                // The holder is still at work: the buyer's retry will find
                // its answer.
                let timeout = (Err(Rejection::Resolve(ResolveError::Timeout)), None);
                run.hand_over(deliver, timeout).await;
                return run.close().await;
            }
            backoff.pause().await;
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

/// One run of the protocol for one token on this replica.
struct Run<'a> {
    store: &'a SharedStore,
    digest: TokenDigest,
    holder: LeaseHolder,
    policy: &'a Policy,
    /// When waiting replicas give up: the request's resolve timeout.
    give_up: Instant,
    /// Whether the store may not know of another redemption of the token
    /// (one under way or done): this run lost its lease, could not re-check
    /// the store, or resolved without it. An "expired" answer is then not
    /// taken at its word.
    in_doubt: AtomicBool,
    /// What the store may record of this run's attempt.
    attempt: Mutex<Attempt>,
    /// When the lease call or renewal that last confirmed this run's lease
    /// was sent: the lease lasts at least until then plus its length.
    held_since: Mutex<Option<Instant>>,
    /// The customer, when only its entitlements are missing.
    known: Mutex<Option<Known>>,
}

impl Run<'_> {
    fn store(&self) -> &dyn DynStore {
        &*self.store.store
    }

    /// A stored answer this run can deliver: any but a customer still
    /// missing entitlements the requests want, which is kept as the known
    /// customer instead, and a refusal once a customer is known.
    fn usable(&self, answer: Option<StoredAnswer>) -> Option<StoredAnswer> {
        let answer = answer?;
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match answer.customer() {
            Some(customer) if self.policy.wants_entitlements && answer.entitlements().is_none() => {
                let true_until = Instant::now() + answer.lifetime();
                let true_until = known
                    .as_ref()
                    .map_or(true_until, |known| known.true_until.min(true_until));
                *known = Some(Known {
                    customer: customer.clone(),
                    redeemed_at: answer.redeemed_at().unwrap_or(std::time::UNIX_EPOCH),
                    true_until,
                });
                None
            }
            // Another redemption's "expired" must not hide the customer.
            None if known.is_some() => None,
            _ => Some(answer),
        }
    }

    /// One look: a stored answer, the lease won, or the lease held elsewhere.
    async fn look(&self) -> Result<Look, StoreFailure> {
        let (digest, terms) = (self.digest, self.terms());
        if let Some(answer) = self.usable(self.store.call(self.store().read(digest)).await?) {
            return Ok(Look::Answer(answer));
        }
        // Taking the lease is idempotent for one holder: a reply lost on the
        // way back is asked for again once.
        let mut sent = Instant::now();
        let mut attempt = self
            .store
            .call(self.store().try_lease(digest, &self.holder, terms))
            .await;
        if attempt.is_err() {
            // Perhaps applied: the lease may be held, the attempt recorded.
            self.set_attempt(Attempt::Open);
            sent = Instant::now();
            attempt = self
                .store
                .call(self.store().try_lease(digest, &self.holder, terms))
                .await;
        }
        Ok(match attempt? {
            LeaseGrant::Taken => {
                self.held(sent);
                self.set_attempt(Attempt::Open);
                Look::Leased
            }
            LeaseGrant::HeldElsewhere => Look::HeldElsewhere,
        })
    }

    fn set_attempt(&self, attempt: Attempt) {
        *self.attempt.lock().unwrap_or_else(|e| e.into_inner()) = attempt;
    }

    fn attempt(&self) -> Attempt {
        *self.attempt.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn doubt(&self) {
        self.in_doubt.store(true, Ordering::Relaxed);
    }

    /// Records that a call sent at `sent` confirmed this run's lease.
    fn held(&self, sent: Instant) {
        *self.held_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent);
    }

    /// Whether this run's lease may have lapsed (or never been known held),
    /// so that another replica may have taken it and redeemed the token.
    fn lease_may_have_lapsed(&self) -> bool {
        let since = *self.held_since.lock().unwrap_or_else(|e| e.into_inner());
        since.is_none_or(|since| Instant::now() >= since + self.store.lease)
    }

    /// This run's lease terms: a holder may still be at work after taking
    /// the lease for its re-check (three store calls), its upstream call (the
    /// upstream deadline), then publishing (the resolve timeout and a store
    /// call), and the lease may outlive it by its length: its attempt is
    /// remembered for all of that, with a margin of a few store calls.
    fn terms(&self) -> LeaseTerms {
        let store_calls = self.store.timeout.saturating_mul(8);
        LeaseTerms {
            lease: self.store.lease,
            remember: self.policy.upstream_deadline()
                + self.policy.timeout
                + self.store.lease
                + store_calls,
        }
    }

    /// This run holds the lease: re-check, call upstream while renewing,
    /// deliver, publish, release.
    async fn hold<F: Future<Output = Outcome>>(
        &self,
        limit: &UpstreamLimit,
        upstream: impl FnOnce(Option<Known>) -> F,
        deliver: impl FnOnce(Delivered),
    ) {
        let work = async {
            // The previous holder may have published and released between our
            // read and our lease.
            match self.recheck().await.map(|answer| self.usable(answer)) {
                Ok(Some(answer)) => return self.hand_over(deliver, from_store(answer)).await,
                Ok(None) => {}
                Err(error) => {
                    if self.store.on_unavailable == StoreUnavailable::FailClosed {
                        tracing::warn!(%error, "shared store unavailable: refusing to resolve");
                        return self.hand_over(deliver, store_unavailable()).await;
                    }
                    // The lease is ours: the others wait for this replica.
                    tracing::warn!(%error, "shared store unavailable for the re-check: resolving under the lease");
                    self.doubt();
                }
            }
            self.redeem(limit, upstream, deliver).await;
        };
        self.renewing(false, work).await;
        self.close().await;
    }

    /// The store could not be reached: resolve without it, or refuse.
    async fn without_store<F: Future<Output = Outcome>>(
        &self,
        error: &StoreFailure,
        limit: &UpstreamLimit,
        upstream: impl FnOnce(Option<Known>) -> F,
        deliver: impl FnOnce(Delivered),
    ) {
        match self.store.on_unavailable {
            StoreUnavailable::FailClosed => {
                tracing::warn!(%error, "shared store unavailable: refusing to resolve");
                self.hand_over(deliver, store_unavailable()).await;
            }
            StoreUnavailable::ResolveLocally => {
                tracing::warn!(%error, "shared store unavailable: resolving without it");
                self.doubt();
                let work = self.redeem(limit, upstream, deliver);
                // A lease attempt that timed out may have been applied: keep
                // that lease alive (or take it, once the store answers) while
                // resolving, then end it.
                self.renewing(true, work).await;
            }
        }
        // Whatever the store did with calls that timed out, leave no lease
        // (and no attempt under way, unless there is a customer to publish).
        self.close().await;
    }

    /// Calls upstream once `limit` admits it (holding the admission only for
    /// the call), then settles, delivers and publishes the outcome.
    async fn redeem<F: Future<Output = Outcome>>(
        &self,
        limit: &UpstreamLimit,
        upstream: impl FnOnce(Option<Known>) -> F,
        deliver: impl FnOnce(Delivered),
    ) {
        let permit = match limit.admit() {
            Ok(permit) => permit,
            Err(refused) => return self.hand_over(deliver, (Err(refused), None)).await,
        };
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner()).take();
        let outcome = upstream(known).await;
        drop(permit);
        if let Err(Rejection::Resolve(ResolveError::InvalidToken)) = &outcome {
            // No one hears "expired" for an invalid token, so no one waits.
            self.set_attempt(Attempt::Kept);
        }
        self.finish(outcome, deliver).await;
    }

    /// Settles an upstream outcome against the store, delivers it, and
    /// publishes it for the other replicas.
    async fn finish(&self, outcome: Outcome, deliver: impl FnOnce(Delivered)) {
        let outcome = match outcome {
            Err(Rejection::Resolve(ResolveError::ExpiredToken)) => {
                match self.settle_expired().await {
                    Settled::Customer(answer) => {
                        return self.hand_over(deliver, from_store(answer)).await;
                    }
                    Settled::Unknown(retryable) => {
                        let unknown = (Err(Rejection::Resolve(retryable)), None);
                        return self.hand_over(deliver, unknown).await;
                    }
                    Settled::Expired => Err(Rejection::Resolve(ResolveError::ExpiredToken)),
                }
            }
            outcome => outcome,
        };
        let lifetime = self.policy.lifetime_of(&outcome);
        // A customer still without its entitlements is published too: the
        // store may have missed it (a publish that gave up), and it never
        // replaces a customer stored.
        let answer = lifetime
            .and_then(|lifetime| StoredAnswer::new(&outcome, lifetime))
            .filter(|answer| !answer.lifetime().is_zero());
        if answer.as_ref().is_some_and(StoredAnswer::is_customer) {
            // Until it is published, others wait for this run.
            self.set_attempt(Attempt::Kept);
        }
        if self.store.publish_first {
            if let Some(answer) = &answer {
                self.publish(answer).await;
            }
            return self.hand_over(deliver, (outcome, lifetime)).await;
        }
        deliver((outcome, lifetime));
        if let Some(answer) = &answer {
            self.publish(answer).await;
        }
    }

    /// AWS answered "expired": the token may have been used up by another
    /// redemption of this very token (a lease that lapsed, a replica that
    /// resolved without the store), whose customer then wins. This run's
    /// attempt redeemed nothing: it is recorded as ended, and the store says
    /// whether another attempt is still under way, one that may yet publish.
    async fn settle_expired(&self) -> Settled {
        let in_doubt = self.in_doubt.load(Ordering::Relaxed) || self.lease_may_have_lapsed();
        let mut backoff = Backoff::new();
        loop {
            let others = self.end_attempt().await;
            match self.store.call(self.store().read(self.digest)).await {
                Ok(Some(answer)) if answer.is_customer() => return Settled::Customer(answer),
                Ok(_) if !in_doubt && matches!(others, Ok(false)) => return Settled::Expired,
                // Another redemption may still publish, or the store cannot
                // say yet: wait for it, as long as the request would.
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "could not check an expired token"),
            }
            if let Err(error) = others {
                tracing::debug!(%error, "could not end an attempt");
            }
            if !backoff.fits_before(self.give_up) {
                // Not known: the buyer's retry settles it.
                return Settled::Unknown(ResolveError::Timeout);
            }
            backoff.pause().await;
        }
    }

    /// Hands `delivered` to the local requests. A host that freezes the
    /// process once they are answered (`publish_first`) may never run what
    /// comes after, so an attempt with no customer to publish is ended
    /// first.
    async fn hand_over(&self, deliver: impl FnOnce(Delivered), delivered: Delivered) {
        if self.store.publish_first {
            self.end_open_attempt().await;
        }
        deliver(delivered);
    }

    /// Ends this run's attempt if it may be under way with no customer to
    /// publish, asked twice if the first call fails.
    async fn end_open_attempt(&self) {
        if self.attempt() != Attempt::Open {
            return;
        }
        for _ in 0..2 {
            match self.end_attempt().await {
                Ok(_) => return,
                Err(error) => tracing::debug!(%error, "could not end an attempt"),
            }
        }
    }

    /// Records this run's attempt as ended; whether another holder's is
    /// still under way.
    async fn end_attempt(&self) -> Result<bool, StoreFailure> {
        let terms = self.terms();
        let others = self
            .store
            .call(self.store().end_attempt(self.digest, &self.holder, terms))
            .await?;
        self.set_attempt(Attempt::Ended);
        Ok(others)
    }

    /// The stored answer, asked up to [`MAX_POLL_FAILURES`] times if the store
    /// fails.
    async fn recheck(&self) -> Result<Option<StoredAnswer>, StoreFailure> {
        let mut backoff = Backoff::new();
        let mut failures = 0;
        loop {
            match self.store.call(self.store().read(self.digest)).await {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    failures += 1;
                    if failures >= MAX_POLL_FAILURES {
                        return Err(error);
                    }
                }
            }
            backoff.pause().await;
        }
    }

    /// Publishes `answer`, trying again with backoff (publishing is
    /// idempotent) until it lands or the resolve timeout has passed: while a
    /// holder keeps trying, its lease is renewed and the others wait for the
    /// answer instead of redeeming the token again.
    async fn publish(&self, answer: &StoredAnswer) {
        let give_up = Instant::now() + self.policy.timeout;
        let mut backoff = Backoff::new();
        loop {
            let error = match self
                .store
                .call(self.store().publish(self.digest, answer))
                .await
            {
                Ok(()) => return,
                Err(error) => error,
            };
            if !backoff.fits_before(give_up) {
                tracing::warn!(%error, "could not publish a resolution to the shared store");
                if let Some(customer) = answer.without_entitlements() {
                    // Too large for the store, perhaps: the customer alone
                    // still spares the token a second redemption.
                    let _ = self
                        .store
                        .call(self.store().publish(self.digest, &customer))
                        .await;
                }
                return;
            }
            tracing::debug!(%error, "publishing a resolution again");
            backoff.pause().await;
        }
    }

    /// Runs `work` while keeping this run's lease: renewed every quarter of
    /// its length, counted from when the last renewal that succeeded was
    /// sent, so that two renewals in a row can fail before it lapses. A lease
    /// found free (it lapsed, or the store lost it) is taken again; one found
    /// held by another replica is given up, and the run is in doubt.
    /// `at_once`: the first renewal goes out now (the lease, if any, was
    /// asked for a while ago).
    async fn renewing(&self, at_once: bool, work: impl Future<Output = ()>) {
        let renewals = async {
            let lease = self.store.lease;
            let every = lease / RENEWALS_PER_LEASE;
            let since = *self.held_since.lock().unwrap_or_else(|e| e.into_inner());
            let mut next = match since {
                Some(since) if !at_once => since + every,
                _ => Instant::now(),
            };
            loop {
                tokio::time::sleep_until(next).await;
                let sent = Instant::now();
                let extended = self
                    .store
                    .call(self.store().extend_lease(self.digest, &self.holder, lease))
                    .await;
                let kept = match extended {
                    Ok(true) => Ok(LeaseGrant::Taken),
                    Ok(false) => {
                        // The lease lapsed (or the store lost it): another
                        // replica may have taken it meanwhile.
                        if self
                            .held_since
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .is_some()
                        {
                            self.doubt();
                        }
                        if self.attempt() == Attempt::None {
                            // Perhaps applied, whatever the reply.
                            self.set_attempt(Attempt::Open);
                        }
                        self.store
                            .call(
                                self.store()
                                    .try_lease(self.digest, &self.holder, self.terms()),
                            )
                            .await
                    }
                    Err(error) => Err(error),
                };
                match kept {
                    Ok(LeaseGrant::Taken) => {
                        self.held(sent);
                        next = sent + every;
                    }
                    Ok(LeaseGrant::HeldElsewhere) => {
                        if !at_once {
                            tracing::warn!(
                                "another replica took the lease while its holder was resolving"
                            );
                        }
                        self.doubt();
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "could not renew a lease");
                        next = (sent + every).max(Instant::now());
                    }
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

    /// Ends this run's lease and, unless it has a customer to publish, its
    /// attempt, each asked twice if the first call fails: a lease that could
    /// not be released ends on its own, and an attempt is forgotten in time.
    async fn close(&self) {
        if self.attempt() == Attempt::None {
            // No lease call of this run can have been applied.
            return;
        }
        self.end_open_attempt().await;
        for _ in 0..2 {
            match self
                .store
                .call(self.store().release_lease(self.digest, &self.holder))
                .await
            {
                Ok(_) => return,
                Err(error) => tracing::debug!(%error, "could not release a lease"),
            }
        }
    }
}

/// What the store may record of a run's attempt at redeeming its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Nothing: no lease call of this run can have been applied.
    None,
    /// Under way, perhaps: a lease call may have recorded it.
    Open,
    /// Left as recorded: the run has a customer to publish, or heard the
    /// token is invalid (no one hears "expired" for such a token, so no one
    /// waits for an attempt on it).
    Kept,
    /// Recorded as ended.
    Ended,
}

/// What an "expired" answer turned out to be.
enum Settled {
    /// Another redemption found the customer.
    Customer(StoredAnswer),
    /// Expired indeed: no other redemption was in sight.
    Expired,
    /// Another redemption may have found the customer, but it is not known
    /// yet: a retryable answer.
    Unknown(ResolveError),
}

fn from_store(answer: StoredAnswer) -> Delivered {
    (answer.to_outcome(), Some(answer.lifetime()))
}

fn store_unavailable() -> Delivered {
    let unavailable = ResolveError::unavailable("the shared resolution store is unavailable");
    (Err(Rejection::Resolve(unavailable)), None)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_at_least_four_store_timeouts() {
        let timeout = Duration::from_millis(500);
        assert_eq!(
            SharedStore::lease_for(timeout, None),
            Duration::from_secs(2)
        );
        assert_eq!(
            SharedStore::lease_for(timeout, Some(Duration::from_millis(1_500))),
            Duration::from_secs(2)
        );
        assert_eq!(
            SharedStore::lease_for(timeout, Some(Duration::from_secs(9))),
            Duration::from_secs(9)
        );
    }
}
