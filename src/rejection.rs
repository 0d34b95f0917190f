//! [`Rejection`]: why the layer answered a request itself instead of passing
//! it on with a customer.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::error::ResolveError;
use crate::token::TokenError;

/// Why a registration request did not reach its handler with a
/// [`ResolvedCustomer`](crate::ResolvedCustomer): what a rejection responder
/// ([`problem_details`](crate::problem_details) by default,
/// [`rejection`](crate::ResolveCustomerLayer::rejection) to replace it)
/// receives.
///
/// The layer's own reasons (no token, a malformed one, a body it cannot read,
/// a product this route does not serve, a flood refused) are variants of
/// their own; the resolver's answers are [`Resolve`](Self::Resolve). No
/// variant ever holds the token.
///
/// | variant | status | retryable |
/// |---|---|---|
/// | `MissingToken`, `MalformedToken`, `AmbiguousToken`, `MalformedBody` | 400 | no |
/// | `ProductMismatch`, `NotEntitled` | 403 | no |
/// | `BodyTimeout` | 408 | yes |
/// | `BodyTooLarge` | 413 | no |
/// | `Internal` | 500 | no |
/// | `Overloaded` | 503 + `Retry-After` | yes |
/// | `Resolve(error)`, `Entitlements(error)` | as [`ResolveError`] | as [`ResolveError`] |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The request carries no registration token.
    MissingToken,
    /// A token was found but is not syntactically valid.
    MalformedToken(TokenError),
    /// The request carries two different tokens (twice in one source, or in two
    /// sources that disagree).
    AmbiguousToken,
    /// The form body could not be read: the stream failed or ended early.
    MalformedBody,
    /// The form body did not arrive within the body timeout.
    BodyTimeout,
    /// The form body is larger than the configured limit.
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The token resolved to a product this endpoint does not serve.
    ProductMismatch,
    /// The token was not looked up: too many new tokens are being resolved
    /// (or looked up in the shared store) at once, or new tokens arrive faster
    /// than the configured rate (see
    /// [`max_concurrent_resolves`](crate::ResolutionsBuilder::max_concurrent_resolves),
    /// [`miss_rate_limit`](crate::ResolutionsBuilder::miss_rate_limit) and
    /// [`max_concurrent_store_lookups`](crate::ResolutionsBuilder::max_concurrent_store_lookups)).
    /// This protects the seller's `ResolveCustomer` quota (and the store) from
    /// floods of junk tokens; the buyer's retry after `retry_after` is
    /// resolved normally.
    Overloaded {
        /// When a new token is likely to be accepted again.
        retry_after: Duration,
    },
    /// The resolver failed without an answer: it panicked. A bug, reported as
    /// 500 to the requests waiting on it; nothing is cached.
    Internal,
    /// The resolver's answer, or the lack of one in time.
    Resolve(ResolveError),
    /// The customer has no current entitlement to the product, and the
    /// entitlement step's policy is
    /// [`Required`](crate::EntitlementPolicy::Required).
    NotEntitled,
    /// The customer's entitlements could not be fetched (throttled, an
    /// outage, no answer in time): the customer is kept, and the buyer's
    /// retry fetches only the entitlements. Its kind is the error's, prefixed
    /// with `entitlements-`.
    Entitlements(ResolveError),
}

impl Rejection {
    /// The HTTP status the default rejection uses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken
            | Self::MalformedToken(_)
            | Self::AmbiguousToken
            | Self::MalformedBody => StatusCode::BAD_REQUEST,
            Self::ProductMismatch | Self::NotEntitled => StatusCode::FORBIDDEN,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Resolve(error) | Self::Entitlements(error) => error.status(),
        }
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::BodyTimeout | Self::Overloaded { .. } => true,
            Self::Resolve(error) | Self::Entitlements(error) => error.is_retryable(),
            _ => false,
        }
    }

    /// The `Retry-After` the default rejection advertises, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Overloaded { retry_after } => Some(*retry_after),
            Self::Resolve(error) | Self::Entitlements(error) => error.retry_after(),
            _ => None,
        }
    }

    /// A short, stable, machine-readable name: used in problem types and
    /// tracing. A resolver's answer keeps its own
    /// ([`ResolveError::kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing-token",
            Self::MalformedToken(_) => "malformed-token",
            Self::AmbiguousToken => "ambiguous-token",
            Self::MalformedBody => "malformed-body",
            Self::BodyTimeout => "body-timeout",
            Self::BodyTooLarge { .. } => "body-too-large",
            Self::ProductMismatch => "product-mismatch",
            Self::Overloaded { .. } => "overloaded",
            Self::Internal => "internal",
            Self::Resolve(error) => error.kind(),
            Self::NotEntitled => "not-entitled",
            Self::Entitlements(error) => match error {
                ResolveError::Throttled => "entitlements-throttled",
                ResolveError::Timeout => "entitlements-timeout",
                ResolveError::ApiDisabled => "entitlements-api-disabled",
                ResolveError::Unavailable(_) => "entitlements-unavailable",
                _ => "entitlements-refused",
            },
        }
    }

    /// A sentence fit for the buyer: never holds the token or upstream detail.
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::MissingToken => {
                "The request does not carry an AWS Marketplace registration token."
            }
            Self::MalformedToken(_) => "The AWS Marketplace registration token is malformed.",
            Self::AmbiguousToken => "The request carries more than one registration token.",
            Self::MalformedBody => "The request body could not be read.",
            Self::BodyTimeout => "The request body did not arrive in time.",
            Self::BodyTooLarge { .. } => "The request body is too large.",
            Self::ProductMismatch => {
                "This registration page does not serve the subscribed product."
            }
            Self::Overloaded { .. } => {
                "Too many registrations are being processed. Please try again shortly."
            }
            Self::Internal => "The registration could not be processed.",
            Self::Resolve(error) => error.public_message(),
            Self::NotEntitled => {
                "The AWS Marketplace subscription carries no current entitlement to this product."
            }
            Self::Entitlements(error) if error.is_retryable() => {
                "The subscription's entitlements could not be checked right now. Please try again shortly."
            }
            Self::Entitlements(_) => "The subscription's entitlements could not be checked.",
        }
    }

    /// The resolver's answer, if that is what this is.
    pub fn resolve_error(&self) -> Option<&ResolveError> {
        match self {
            Self::Resolve(error) => Some(error),
            _ => None,
        }
    }
}

/// `"ok"`, or the rejection's [`kind`](Rejection::kind): for tracing.
pub(crate) fn outcome_kind<T>(outcome: &Result<T, Rejection>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedToken(e) => write!(f, "malformed registration token: {e}"),
            Self::BodyTooLarge { limit } => write!(f, "request body exceeds {limit} bytes"),
            Self::Resolve(error) => error.fmt(f),
            Self::Entitlements(error) => write!(f, "entitlements not fetched: {error}"),
            other => f.write_str(other.public_message()),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MalformedToken(e) => Some(e),
            Self::Resolve(e) | Self::Entitlements(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TokenError> for Rejection {
    fn from(e: TokenError) -> Self {
        Self::MalformedToken(e)
    }
}

impl From<ResolveError> for Rejection {
    fn from(e: ResolveError) -> Self {
        Self::Resolve(e)
    }
}
