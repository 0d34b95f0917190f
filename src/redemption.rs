//! [`Redemption`]: whether a request's token was redeemed for it, or replays
//! an earlier redemption.

use std::time::{Duration, SystemTime};

/// Whether this request's registration token was redeemed upstream for it,
/// or replays an earlier redemption, and when that first redemption happened.
///
/// Inserted into the request's extensions next to the
/// [`ResolvedCustomer`](crate::ResolvedCustomer). A registration token is a
/// bearer credential for as long as it keeps resolving (AWS's own window and
/// this crate's cache): whoever posts it gets the buyer's identity. Exactly
/// one request per redemption is [`First`](Self::First), fleet-wide when the
/// replicas share a [`ResolutionStore`](crate::ResolutionStore): the one
/// whose own resolve called `ResolveCustomer` and got the customer (with the
/// entitlement step on, when that request was turned away because the
/// entitlements could not be fetched, the buyer's retry that fetched them is
/// the first, since it is the first request to reach a handler). Every
/// other request with the token (a double submit that joined that resolve, a
/// refresh answered from the cache, a request on another replica answered
/// from the store, an attacker's replay) is a [`Replay`](Self::Replay) that
/// carries the first redemption's time.
///
/// A sound policy: give the first request, and replays shortly after it (a
/// double submit, a refresh, a retry after a timeout), the buyer's
/// onboarding; ask later replays to sign in instead of handing them a
/// session. See the README's "Security notes".
///
/// ```
/// use std::time::Duration;
/// use tower_resolve_customer::Redemption;
///
/// fn may_continue_onboarding(redemption: &Redemption) -> bool {
///     redemption.is_first() || redemption.age() <= Duration::from_secs(5 * 60)
/// }
/// # let _ = may_continue_onboarding;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Redemption {
    /// This request's own resolve redeemed the token upstream (or completed
    /// a redemption no request had been accepted with).
    First {
        /// When `ResolveCustomer` answered.
        redeemed_at: SystemTime,
    },
    /// The token had been redeemed for another request; this one was given
    /// that redemption's answer.
    Replay {
        /// When the first redemption's `ResolveCustomer` answered.
        redeemed_at: SystemTime,
    },
}

impl Redemption {
    /// Whether this request redeemed the token.
    pub fn is_first(&self) -> bool {
        matches!(self, Self::First { .. })
    }

    /// Whether this request replays an earlier redemption.
    pub fn is_replay(&self) -> bool {
        !self.is_first()
    }

    /// When the token was first redeemed, on the clock of the replica that
    /// redeemed it.
    pub fn redeemed_at(&self) -> SystemTime {
        match *self {
            Self::First { redeemed_at } | Self::Replay { redeemed_at } => redeemed_at,
        }
    }

    /// How long ago the token was first redeemed, by this replica's clock
    /// (zero if that is in the future).
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.redeemed_at())
            .unwrap_or_default()
    }
}
