//! [`MemoryStore`]: an in-process [`ResolutionStore`] with fault injection, for
//! testing several replicas in one process (feature `test-util`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{LeaseGrant, LeaseHolder, LeaseTerms, ResolutionStore, StoredAnswer, TokenDigest};

/// One kind of store call, to aim a fault at or to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreCall {
    /// [`ResolutionStore::read`].
    Read,
    /// [`ResolutionStore::try_lease`].
    TryLease,
    /// [`ResolutionStore::end_attempt`].
    EndAttempt,
    /// [`ResolutionStore::extend_lease`].
    ExtendLease,
    /// [`ResolutionStore::publish`].
    Publish,
    /// [`ResolutionStore::release_lease`].
    ReleaseLease,
}

impl StoreCall {
    /// Every kind of call.
    pub const ALL: [Self; 6] = [
        Self::Read,
        Self::TryLease,
        Self::EndAttempt,
        Self::ExtendLease,
        Self::Publish,
        Self::ReleaseLease,
    ];
}

/// What goes wrong with one store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreFault {
    /// The call is applied, but its reply never arrives (the caller's timeout
    /// fires): a slow link.
    AppliedLate,
    /// The call is lost before it is applied, and no reply arrives.
    Lost,
    /// The call fails at once without being applied (a refused connection).
    Refused,
    /// The call reaches the store after this delay, is applied then, and is
    /// answered at once: past the caller's timeout, it is applied after the
    /// caller gave up on it.
    Delayed(Duration),
}

/// The error of a [`MemoryStore`] call that was [`StoreFault::Refused`] or
/// made while the store was [down](MemoryStore::set_down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryStoreError;

impl fmt::Display for MemoryStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the memory store refused the call")
    }
}

impl std::error::Error for MemoryStoreError {}

/// An in-process [`ResolutionStore`] (feature `test-util`): answers and leases
/// in a map, expiring on tokio's clock (so tests can pause time), reached
/// through *links* that can each be made to misbehave.
///
/// [`MemoryStore::new`] makes the store and a first link; [`link`](Self::link)
/// makes another link to the same data. Give each replica its own link, and a
/// fault aimed at one link hits that replica only, as a bad network path would:
///
/// - [`fail_next`](Self::fail_next): the next call of a kind is applied but
///   answered too late, lost, refused, or delayed on its way to the store;
/// - [`set_down`](Self::set_down): every call on the link is refused until the
///   link is up again;
/// - [`lapse_leases`](Self::lapse_leases): every lease ends now, as if its
///   holder's renewals had been lost;
/// - [`calls`](Self::calls) and [`wait_for_calls`](Self::wait_for_calls):
///   what reached the store, to count round trips and to synchronise on.
///
/// ```
/// use tower_resolve_customer::{MemoryStore, RegistrationToken, Resolutions, ResolvedCustomer, StoreCall, StoreFault};
///
/// let store = MemoryStore::new();
/// let (link_a, link_b) = (store.link(), store.link());
/// let resolver = |_: RegistrationToken| async { Ok(ResolvedCustomer::new("123456789012", "prod-abc123")) };
/// let a = Resolutions::builder(resolver).store(link_a.clone()).build();
/// let b = Resolutions::builder(resolver).store(link_b.clone()).build();
/// // A's next lease call is applied, but its reply comes too late.
/// link_a.fail_next(StoreCall::TryLease, StoreFault::AppliedLate);
/// # let _ = (a, b);
/// ```
///
/// Clones of a link are the same link; faults set on `store` itself hit only
/// what uses `store` (or its clones).
#[derive(Clone)]
pub struct MemoryStore {
    data: Arc<Data>,
    link: Arc<Mutex<Link>>,
}

#[derive(Default)]
struct Data {
    state: Mutex<State>,
    called: Notify,
}

#[derive(Default)]
struct State {
    answers: HashMap<TokenDigest, (StoredAnswer, Instant)>,
    leases: HashMap<TokenDigest, (LeaseHolder, Instant)>,
    attempts: HashMap<TokenDigest, HashMap<LeaseHolder, Attempt>>,
    calls: HashMap<StoreCall, u64>,
}

/// A holder's attempt at redeeming a token.
#[derive(Clone, Copy)]
struct Attempt {
    /// Until when the store remembers it.
    until: Instant,
    under_way: bool,
}

#[derive(Default)]
struct Link {
    down: bool,
    faults: HashMap<StoreCall, VecDeque<StoreFault>>,
    calls: HashMap<StoreCall, u64>,
    faults_met: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryStore")
            .field("answers", &state.answers.len())
            .field("leases", &state.leases.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store, and a first link to it.
    pub fn new() -> Self {
        Self {
            data: Arc::default(),
            link: Arc::default(),
        }
    }

    /// Another link to the same store, with faults of its own.
    pub fn link(&self) -> Self {
        Self {
            data: Arc::clone(&self.data),
            link: Arc::default(),
        }
    }

    /// The next call of kind `call` on this link meets `fault`; queued faults
    /// are met in order.
    pub fn fail_next(&self, call: StoreCall, fault: StoreFault) {
        self.link_state()
            .faults
            .entry(call)
            .or_default()
            .push_back(fault);
    }

    /// Takes this link down (every call refused at once) or back up.
    pub fn set_down(&self, down: bool) {
        self.link_state().down = down;
    }

    /// Ends every lease now, as if its holder's renewals had not arrived.
    pub fn lapse_leases(&self) {
        self.state().leases.clear();
    }

    /// How many calls of kind `call` reached the store through any link
    /// (refused and lost calls not included).
    pub fn calls(&self, call: StoreCall) -> u64 {
        self.state().calls.get(&call).copied().unwrap_or(0)
    }

    /// Every call that reached the store, of any kind, through any link.
    pub fn total_calls(&self) -> u64 {
        self.state().calls.values().sum()
    }

    /// How many calls of kind `call` were made on this link, whatever became
    /// of them.
    pub fn link_calls(&self, call: StoreCall) -> u64 {
        self.link_state().calls.get(&call).copied().unwrap_or(0)
    }

    /// How many calls on this link met a fault (a queued one, or the link
    /// being down).
    pub fn faults_met(&self) -> u64 {
        self.link_state().faults_met
    }

    /// Waits until at least `count` calls of kind `call` reached the store.
    pub async fn wait_for_calls(&self, call: StoreCall, count: u64) {
        loop {
            let called = self.data.called.notified();
            tokio::pin!(called);
            called.as_mut().enable();
            if self.calls(call) >= count {
                return;
            }
            called.await;
        }
    }

    /// The answer stored for `token` now, with its remaining lifetime.
    pub fn answer(&self, token: TokenDigest) -> Option<StoredAnswer> {
        let now = Instant::now();
        let state = self.state();
        let (answer, expires) = state.answers.get(&token)?;
        (now < *expires).then(|| answer.clone().with_lifetime(*expires - now))
    }

    /// Every unexpired answer held, by digest.
    pub fn answers(&self) -> Vec<(TokenDigest, StoredAnswer)> {
        let now = Instant::now();
        let mut answers: Vec<_> = self
            .state()
            .answers
            .iter()
            .filter(|(_, (_, expires))| now < *expires)
            .map(|(token, (answer, expires))| {
                (*token, answer.clone().with_lifetime(*expires - now))
            })
            .collect();
        answers.sort_by_key(|(token, _)| *token);
        answers
    }

    /// The unexpired leases held now: digest and holder.
    pub fn leases(&self) -> Vec<(TokenDigest, LeaseHolder)> {
        let now = Instant::now();
        let mut leases: Vec<_> = self
            .state()
            .leases
            .iter()
            .filter(|(_, (_, expires))| now < *expires)
            .map(|(token, (holder, _))| (*token, holder.clone()))
            .collect();
        leases.sort_by_key(|(token, _)| *token);
        leases
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.data.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn link_state(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `apply` on the store as `call`, through this link's faults.
    async fn run<T>(
        &self,
        call: StoreCall,
        apply: impl FnOnce(&mut State, Instant) -> T,
    ) -> Result<T, MemoryStoreError> {
        let fault = {
            let mut link = self.link_state();
            *link.calls.entry(call).or_default() += 1;
            if link.down {
                link.faults_met += 1;
                return Err(MemoryStoreError);
            }
            let fault = link.faults.get_mut(&call).and_then(VecDeque::pop_front);
            link.faults_met += u64::from(fault.is_some());
            fault
        };
        if fault == Some(StoreFault::Refused) {
            return Err(MemoryStoreError);
        }
        match fault {
            Some(StoreFault::Lost) => return std::future::pending().await,
            Some(StoreFault::Delayed(delay)) => tokio::time::sleep(delay).await,
            _ => {}
        }
        let reply = {
            let mut state = self.state();
            *state.calls.entry(call).or_default() += 1;
            apply(&mut state, Instant::now())
        };
        self.data.called.notify_waiters();
        if fault == Some(StoreFault::AppliedLate) {
            return std::future::pending().await;
        }
        Ok(reply)
    }
}

fn expiry(now: Instant, lifetime: Duration) -> Instant {
    now.checked_add(lifetime)
        .unwrap_or(now + Duration::from_secs(365 * 24 * 60 * 60))
}

/// The holder of `token`'s unexpired lease.
fn holder_of(state: &State, token: TokenDigest, now: Instant) -> Option<&LeaseHolder> {
    state
        .leases
        .get(&token)
        .filter(|(_, expires)| now < *expires)
        .map(|(holder, _)| holder)
}

/// The attempts on `token` still remembered at `now`.
fn attempts_of(
    state: &mut State,
    token: TokenDigest,
    now: Instant,
) -> &mut HashMap<LeaseHolder, Attempt> {
    let attempts = state.attempts.entry(token).or_default();
    attempts.retain(|_, attempt| now < attempt.until);
    attempts
}

impl ResolutionStore for MemoryStore {
    type Error = MemoryStoreError;

    async fn read(&self, token: TokenDigest) -> Result<Option<StoredAnswer>, MemoryStoreError> {
        self.run(StoreCall::Read, |state, now| {
            let (answer, expires) = state.answers.get(&token)?;
            (now < *expires).then(|| answer.clone().with_lifetime(*expires - now))
        })
        .await
    }

    async fn try_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
    ) -> Result<LeaseGrant, MemoryStoreError> {
        self.run(StoreCall::TryLease, |state, now| {
            if holder_of(state, token, now).is_some_and(|current| current != holder) {
                return LeaseGrant::HeldElsewhere;
            }
            state
                .leases
                .insert(token, (holder.clone(), expiry(now, terms.lease)));
            // Forget the attempts no longer remembered, on every token.
            state.attempts.retain(|_, attempts| {
                attempts.retain(|_, attempt| now < attempt.until);
                !attempts.is_empty()
            });
            // Under way for `remember` from now, unless it ended.
            let until = expiry(now, terms.attempt_lifetime());
            let attempt = state
                .attempts
                .entry(token)
                .or_default()
                .entry(holder.clone())
                .or_insert(Attempt {
                    until,
                    under_way: true,
                });
            if attempt.under_way {
                attempt.until = attempt.until.max(until);
            }
            LeaseGrant::Taken
        })
        .await
    }

    async fn end_attempt(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
    ) -> Result<bool, MemoryStoreError> {
        self.run(StoreCall::EndAttempt, |state, now| {
            let attempts = attempts_of(state, token, now);
            attempts.insert(
                holder.clone(),
                Attempt {
                    until: expiry(now, terms.attempt_lifetime()),
                    under_way: false,
                },
            );
            attempts
                .iter()
                .any(|(other, attempt)| other != holder && attempt.under_way)
        })
        .await
    }

    async fn extend_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        duration: Duration,
    ) -> Result<bool, MemoryStoreError> {
        self.run(StoreCall::ExtendLease, |state, now| {
            if holder_of(state, token, now) != Some(holder) {
                return false;
            }
            state
                .leases
                .insert(token, (holder.clone(), expiry(now, duration)));
            true
        })
        .await
    }

    async fn publish(
        &self,
        token: TokenDigest,
        answer: &StoredAnswer,
    ) -> Result<(), MemoryStoreError> {
        self.run(StoreCall::Publish, |state, now| {
            let kept = state
                .answers
                .get(&token)
                .is_some_and(|(stored, expires)| now < *expires && !answer.may_replace(stored));
            if !kept {
                let expires = expiry(now, answer.lifetime());
                state.answers.insert(token, (answer.clone(), expires));
            }
        })
        .await
    }

    async fn release_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
    ) -> Result<bool, MemoryStoreError> {
        self.run(StoreCall::ReleaseLease, |state, now| {
            if holder_of(state, token, now) != Some(holder) {
                return false;
            }
            state.leases.remove(&token);
            true
        })
        .await
    }
}
