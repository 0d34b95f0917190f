//! Why a request was not given a resolved customer.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// What a [`Resolver`](crate::Resolver) can answer instead of a customer.
///
/// The layer answers a request it cannot give a customer with a
/// [`Rejection`](crate::Rejection), which wraps this type for the resolver's
/// part. No variant ever holds the token. The `String`s carried by
/// [`Unavailable`](Self::Unavailable) and [`Refused`](Self::Refused) are
/// diagnostics for operators and are not put in default rejection bodies.
///
/// Definitive answers (`InvalidToken`, `ExpiredToken`, `Refused`) are
/// remembered for the negative-cache TTL and shared with other replicas;
/// the others are never remembered.
///
/// | variant | status | retryable |
/// |---|---|---|
/// | `InvalidToken`, `ExpiredToken` | 400 | no |
/// | `Refused` | 403 | no |
/// | `Throttled`, `Unavailable` | 503 + `Retry-After` | yes |
/// | `ApiDisabled` | 503 + `Retry-After` | no |
/// | `Timeout` | 504 | yes |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// `InvalidTokenException`: AWS does not know the token.
    InvalidToken,
    /// `ExpiredTokenException`: the token has expired or was already redeemed.
    /// The buyer must return to AWS Marketplace and choose "Set up your account"
    /// again.
    ExpiredToken,
    /// A custom resolver's definitive "no" for this token (say, a buyer your
    /// own records bar): remembered for the negative-cache TTL like an
    /// invalid token, and answered 403. The text is a diagnostic for
    /// operators, never shown to the buyer.
    Refused(Cow<'static, str>),
    /// `ThrottlingException`: the seller account's `ResolveCustomer` quota is
    /// exhausted for now.
    Throttled,
    /// `DisabledApiException`: the API is disabled in the region.
    ApiDisabled,
    /// The upstream could not answer: `InternalServiceErrorException`, a 5xx, a
    /// transport failure, an unparseable response, or an AWS error this crate does
    /// not model (for example missing permissions).
    Unavailable(Cow<'static, str>),
    /// No answer arrived in time.
    Timeout,
}

impl ResolveError {
    /// Builds [`ResolveError::Unavailable`] from any diagnostic text.
    pub fn unavailable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable(reason.into())
    }

    /// Builds [`ResolveError::Refused`] from any diagnostic text.
    pub fn refused(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Refused(reason.into())
    }

    /// The HTTP status the default rejection uses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidToken | Self::ExpiredToken => StatusCode::BAD_REQUEST,
            Self::Refused(_) => StatusCode::FORBIDDEN,
            Self::Throttled | Self::Unavailable(_) | Self::ApiDisabled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled | Self::Unavailable(_) | Self::Timeout)
    }

    /// The `Retry-After` the default rejection advertises, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled => Some(Duration::from_secs(1)),
            Self::Unavailable(_) => Some(Duration::from_secs(5)),
            Self::ApiDisabled => Some(Duration::from_secs(300)),
            _ => None,
        }
    }

    /// Whether this is a definitive "no" about the token itself (invalid,
    /// expired, or refused by the resolver): an answer remembered for the
    /// negative-cache TTL and shared with other replicas.
    pub fn is_definitive(&self) -> bool {
        matches!(
            self,
            Self::InvalidToken | Self::ExpiredToken | Self::Refused(_)
        )
    }

    /// A short, stable, machine-readable name: used in problem types and tracing.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid-token",
            Self::ExpiredToken => "expired-token",
            Self::Refused(_) => "refused",
            Self::Throttled => "throttled",
            Self::ApiDisabled => "api-disabled",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout => "timeout",
        }
    }

    /// A sentence fit for the buyer: never holds the token or upstream detail.
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::InvalidToken => "The AWS Marketplace registration token is not valid.",
            Self::ExpiredToken => {
                "The AWS Marketplace registration token has expired. Return to AWS Marketplace and choose \"Set up your account\" again."
            }
            Self::Refused(_) => "This registration cannot be accepted.",
            Self::Throttled => {
                "Too many registrations are being processed. Please try again shortly."
            }
            Self::ApiDisabled => "Registration through AWS Marketplace is unavailable right now.",
            Self::Unavailable(_) => {
                "AWS Marketplace could not be reached. Please try again shortly."
            }
            Self::Timeout => "AWS Marketplace did not answer in time. Please try again.",
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(reason) => write!(f, "ResolveCustomer unavailable: {reason}"),
            Self::Refused(reason) => write!(f, "registration refused: {reason}"),
            other => f.write_str(other.public_message()),
        }
    }
}

impl std::error::Error for ResolveError {}
