//! Why a request was not given a resolved customer.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::token::TokenError;

/// Everything that can stop a registration request from reaching its handler with
/// a [`ResolvedCustomer`](crate::ResolvedCustomer).
///
/// It is both what a [`Resolver`](crate::Resolver) returns and what a rejection
/// responder receives. No variant ever holds the token. The `String`s carried by
/// [`Unavailable`](Self::Unavailable) are diagnostics for operators (an AWS error
/// code, a transport failure) and are not put in default rejection bodies.
///
/// | variant | status | retryable |
/// |---|---|---|
/// | `MissingToken`, `MalformedToken`, `AmbiguousToken`, `InvalidToken`, `ExpiredToken`, `MalformedBody` | 400 | no |
/// | `ProductMismatch` | 403 | no |
/// | `BodyTimeout` | 408 | yes |
/// | `BodyTooLarge` | 413 | no |
/// | `Internal` | 500 | no |
/// | `Throttled`, `Unavailable`, `Overloaded` | 503 + `Retry-After` | yes |
/// | `ApiDisabled` | 503 + `Retry-After` | no |
/// | `Timeout` | 504 | yes |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
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
    /// `InvalidTokenException`: AWS does not know the token.
    InvalidToken,
    /// `ExpiredTokenException`: the token has expired or was already redeemed.
    /// The buyer must return to AWS Marketplace and choose "Set up your account"
    /// again.
    ExpiredToken,
    /// `ThrottlingException`: the seller account's `ResolveCustomer` quota is
    /// exhausted for now.
    Throttled,
    /// `DisabledApiException`: the API is disabled in the region.
    ApiDisabled,
    /// The upstream could not answer: `InternalServiceErrorException`, a 5xx, a
    /// transport failure, an unparseable response, or an AWS error this crate does
    /// not model (for example missing permissions).
    Unavailable(Cow<'static, str>),
    /// No answer arrived within the resolve timeout.
    Timeout,
    /// The token resolved to a product this endpoint does not serve.
    ProductMismatch,
    /// The token was not sent upstream: too many new tokens are being resolved
    /// at once, or new tokens arrive faster than the configured rate (see
    /// [`max_concurrent_resolves`](crate::ResolutionsBuilder::max_concurrent_resolves)
    /// and [`miss_rate_limit`](crate::ResolutionsBuilder::miss_rate_limit)).
    /// This protects the seller's `ResolveCustomer` quota from floods of junk
    /// tokens; the buyer's retry after `retry_after` is resolved normally.
    Overloaded {
        /// When a new token is likely to be accepted again.
        retry_after: Duration,
    },
    /// The resolver failed without an answer: it panicked. A bug, reported as
    /// 500 to the requests waiting on it; nothing is cached.
    Internal,
}

impl ResolveError {
    /// Builds [`ResolveError::Unavailable`] from any diagnostic text.
    pub fn unavailable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable(reason.into())
    }

    /// The HTTP status the default rejection uses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken
            | Self::MalformedToken(_)
            | Self::AmbiguousToken
            | Self::MalformedBody
            | Self::InvalidToken
            | Self::ExpiredToken => StatusCode::BAD_REQUEST,
            Self::ProductMismatch => StatusCode::FORBIDDEN,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Throttled
            | Self::Unavailable(_)
            | Self::ApiDisabled
            | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the same request may succeed if tried again later.
    ///
    /// Retryable errors are never cached.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled
                | Self::Unavailable(_)
                | Self::Timeout
                | Self::BodyTimeout
                | Self::Overloaded { .. }
        )
    }

    /// The `Retry-After` the default rejection advertises, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled => Some(Duration::from_secs(1)),
            Self::Unavailable(_) => Some(Duration::from_secs(5)),
            Self::ApiDisabled => Some(Duration::from_secs(300)),
            Self::Overloaded { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether AWS gave a definitive "no" about the token itself (invalid or
    /// expired), an answer worth remembering for the negative-cache TTL.
    pub(crate) fn is_definitive(&self) -> bool {
        matches!(self, Self::InvalidToken | Self::ExpiredToken)
    }

    /// A short, stable, machine-readable name: used in problem types and tracing.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing-token",
            Self::MalformedToken(_) => "malformed-token",
            Self::AmbiguousToken => "ambiguous-token",
            Self::MalformedBody => "malformed-body",
            Self::BodyTimeout => "body-timeout",
            Self::BodyTooLarge { .. } => "body-too-large",
            Self::InvalidToken => "invalid-token",
            Self::ExpiredToken => "expired-token",
            Self::Throttled => "throttled",
            Self::ApiDisabled => "api-disabled",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout => "timeout",
            Self::ProductMismatch => "product-mismatch",
            Self::Overloaded { .. } => "overloaded",
            Self::Internal => "internal",
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
            Self::InvalidToken => "The AWS Marketplace registration token is not valid.",
            Self::ExpiredToken => {
                "The AWS Marketplace registration token has expired. Return to AWS Marketplace and choose \"Set up your account\" again."
            }
            Self::Throttled => {
                "Too many registrations are being processed. Please try again shortly."
            }
            Self::ApiDisabled => "Registration through AWS Marketplace is unavailable right now.",
            Self::Unavailable(_) => {
                "AWS Marketplace could not be reached. Please try again shortly."
            }
            Self::Timeout => "AWS Marketplace did not answer in time. Please try again.",
            Self::ProductMismatch => {
                "This registration page does not serve the subscribed product."
            }
            Self::Overloaded { .. } => {
                "Too many registrations are being processed. Please try again shortly."
            }
            Self::Internal => "The registration could not be processed.",
        }
    }
}

/// `"ok"`, or the error's [`kind`](ResolveError::kind): for tracing.
pub(crate) fn outcome_kind<T>(outcome: &Result<T, ResolveError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedToken(e) => write!(f, "malformed registration token: {e}"),
            Self::BodyTooLarge { limit } => write!(f, "request body exceeds {limit} bytes"),
            Self::Unavailable(reason) => write!(f, "ResolveCustomer unavailable: {reason}"),
            other => f.write_str(other.public_message()),
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MalformedToken(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TokenError> for ResolveError {
    fn from(e: TokenError) -> Self {
        Self::MalformedToken(e)
    }
}
