//! [`Answer`]: what one redemption of a token found, as the cache, the single
//! flight and the store protocol carry it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::customer::ResolvedCustomer;
use crate::entitlements::Entitlements;
use crate::error::ResolveError;
use crate::redemption::Redemption;

/// A resolved customer, when its token was redeemed, and its entitlements.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) customer: ResolvedCustomer,
    pub(crate) redeemed_at: SystemTime,
    /// Whether the run that delivered this answer redeemed the token itself
    /// (as opposed to finding the answer in the store or a cache).
    pub(crate) redeemed_here: bool,
    pub(crate) entitlements: Entitled,
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
/// entitlement-only run starts from.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub(crate) customer: ResolvedCustomer,
    pub(crate) redeemed_at: SystemTime,
}

impl Answer {
    /// Whether the answer is all a request needs (`wants_entitlements`: the
    /// entitlement step is on).
    pub(crate) fn is_complete(&self, wants_entitlements: bool) -> bool {
        !wants_entitlements || matches!(self.entitlements, Entitled::Fetched(_))
    }

    /// The customer to start from, for an answer that is not complete.
    pub(crate) fn known(&self) -> Known {
        Known {
            customer: self.customer.clone(),
            redeemed_at: self.redeemed_at,
        }
    }

    /// The [`Redemption`] of a request that obtained this answer, where
    /// `started` says whether that request started the run that delivered it.
    pub(crate) fn redemption(&self, started: bool) -> Redemption {
        if started && self.redeemed_here {
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
