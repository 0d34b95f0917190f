//! [`Answer`]: what one redemption of a token found, as the cache, the single
//! flight and the store protocol carry it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::customer::ResolvedCustomer;
use crate::entitlements::Entitlements;
use crate::error::ResolveError;
use crate::redemption::Redemption;

/// A resolved customer, when its token was redeemed, and its entitlements.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) customer: ResolvedCustomer,
    pub(crate) redeemed_at: SystemTime,
    /// Whether the run that delivered this answer made it: it redeemed the
    /// token, or fetched the entitlements of a customer no request was
    /// accepted with yet (as opposed to finding the answer in the store or a
    /// cache). The request that started that run is the redemption's first.
    pub(crate) made_here: bool,
    pub(crate) entitlements: Entitled,
    /// When the answer stops being true, if earlier than a fresh lifetime
    /// would say: the answer completes a customer found earlier.
    pub(crate) true_until: Option<Instant>,
}

/// Where the entitlement step stands for an answer.
#[derive(Clone, Debug)]
pub(crate) enum Entitled {
    /// Not fetched: the step is off, or the answer was published without
    /// them.
    NotFetched,
    Fetched(Entitlements),
    /// The last fetch failed; the next request for the token tries again.
    Failed(ResolveError),
}

/// The customer of an answer that still lacks its entitlements: what an
/// entitlement-only run starts from. No request was accepted with it (with
/// the entitlement step on, only complete answers are).
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub(crate) customer: ResolvedCustomer,
    pub(crate) redeemed_at: SystemTime,
    /// When the customer stops being true: the answer that completes it
    /// lives no longer.
    pub(crate) true_until: Instant,
}

impl Answer {
    /// Whether the answer is all a request needs (`wants_entitlements`: the
    /// entitlement step is on).
    pub(crate) fn is_complete(&self, wants_entitlements: bool) -> bool {
        !wants_entitlements || matches!(self.entitlements, Entitled::Fetched(_))
    }

    /// The customer to start from, for an answer that is not complete and
    /// stays true until `true_until`.
    pub(crate) fn known(&self, true_until: Instant) -> Known {
        Known {
            customer: self.customer.clone(),
            redeemed_at: self.redeemed_at,
            true_until,
        }
    }

    /// The [`Redemption`] of a request that obtained this answer, where
    /// `started` says whether that request started the run that delivered it.
    pub(crate) fn redemption(&self, started: bool) -> Redemption {
        if started && self.made_here {
            Redemption::First {
                redeemed_at: self.redeemed_at,
            }
        } else {
            Redemption::Replay {
                redeemed_at: self.redeemed_at,
            }
        }
    }

    /// The entitlements, if fetched.
    pub(crate) fn entitlements(&self) -> Option<&Entitlements> {
        match &self.entitlements {
            Entitled::Fetched(entitlements) => Some(entitlements),
            _ => None,
        }
    }
}

/// Milliseconds since the epoch (zero before it).
pub(crate) fn millis_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `time`, to the millisecond, as stores keep it: so that a redemption's
/// time reads the same from the cache that made it and from the store.
pub(crate) fn to_millis(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis_of(time))
}
