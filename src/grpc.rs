//! gRPC-correct rejections (feature `grpc`).

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};

use crate::error::ResolveError;
use crate::rejection::Rejection;

/// gRPC status codes used by [`grpc_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcCode {
    /// `INVALID_ARGUMENT` (3).
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED` (4).
    DeadlineExceeded = 4,
    /// `PERMISSION_DENIED` (7).
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED` (8).
    ResourceExhausted = 8,
    /// `INTERNAL` (13).
    Internal = 13,
    /// `UNAVAILABLE` (14).
    Unavailable = 14,
    /// `UNAUTHENTICATED` (16).
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code for `rejection`.
    ///
    /// | `Rejection` | gRPC status |
    /// |---|---|
    /// | `MissingToken`, `Resolve(InvalidToken)`, `Resolve(ExpiredToken)` | `UNAUTHENTICATED` |
    /// | `MalformedToken`, `AmbiguousToken`, `MalformedBody` | `INVALID_ARGUMENT` |
    /// | `ProductMismatch`, `NotEntitled`, `Resolve(Refused)` | `PERMISSION_DENIED` |
    /// | `BodyTooLarge` | `RESOURCE_EXHAUSTED` |
    /// | `Overloaded`, `Resolve(Throttled)`, `Resolve(Unavailable)`, `Resolve(ApiDisabled)` | `UNAVAILABLE` |
    /// | `Internal` | `INTERNAL` |
    /// | `BodyTimeout`, `Resolve(Timeout)` | `DEADLINE_EXCEEDED` |
    /// | `Entitlements(error)` | as `Resolve(error)`, but `PERMISSION_DENIED` for a definitive error |
    pub fn of(rejection: &Rejection) -> Self {
        match rejection {
            Rejection::MissingToken => Self::Unauthenticated,
            Rejection::MalformedToken(_) | Rejection::AmbiguousToken | Rejection::MalformedBody => {
                Self::InvalidArgument
            }
            Rejection::ProductMismatch | Rejection::NotEntitled => Self::PermissionDenied,
            Rejection::BodyTooLarge { .. } => Self::ResourceExhausted,
            Rejection::Overloaded { .. } => Self::Unavailable,
            Rejection::Internal => Self::Internal,
            Rejection::BodyTimeout => Self::DeadlineExceeded,
            Rejection::Entitlements(error) if error.is_definitive() => Self::PermissionDenied,
            Rejection::Resolve(error) | Rejection::Entitlements(error) => match error {
                ResolveError::InvalidToken | ResolveError::ExpiredToken => Self::Unauthenticated,
                ResolveError::Refused(_) => Self::PermissionDenied,
                ResolveError::Throttled
                | ResolveError::Unavailable(_)
                | ResolveError::ApiDisabled => Self::Unavailable,
                ResolveError::Timeout => Self::DeadlineExceeded,
            },
        }
    }
}

/// A gRPC rejection: a trailers-only response, as gRPC servers send for a call
/// that fails before any message.
///
/// HTTP 200, `content-type: application/grpc`, `grpc-status` (see
/// [`GrpcCode::of`]) and a percent-encoded `grpc-message` fit for the caller
/// (never the token), and an empty body. Use it as the layer's rejection in
/// front of a tonic (or any gRPC) server, so clients see a proper `Status`
/// instead of a bare HTTP error:
///
/// ```
/// use http::HeaderName;
/// use tower_resolve_customer::{grpc_status, RegistrationToken, ResolveCustomerLayer, ResolvedCustomer, TokenSource};
///
/// let layer = ResolveCustomerLayer::new(|_: RegistrationToken| async {
///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
/// })
/// .token_source(TokenSource::header(HeaderName::from_static("x-amzn-marketplace-token")))
/// .rejection(grpc_status);
/// # let _ = layer;
///
/// use tower_resolve_customer::{Rejection, ResolveError};
/// let response = grpc_status(&Rejection::Resolve(ResolveError::ExpiredToken));
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["grpc-status"], "16");
/// assert_eq!(response.headers()["content-type"], "application/grpc");
/// ```
pub fn grpc_status(error: &Rejection) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(GrpcCode::of(error) as u16));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(error.public_message())) {
        headers.insert("grpc-message", message);
    }
    response
}

/// Percent-encodes as the gRPC spec asks of `grpc-message`: every byte outside
/// printable ASCII, and `%`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_encoding() {
        assert_eq!(percent_encode("50% done: é"), "50%25 done: %C3%A9");
    }

    #[test]
    fn every_error_has_a_grpc_answer() {
        for error in [
            Rejection::MissingToken,
            Rejection::Resolve(ResolveError::ExpiredToken),
            Rejection::Resolve(ResolveError::Throttled),
            Rejection::Resolve(ResolveError::Timeout),
            Rejection::ProductMismatch,
        ] {
            let response = grpc_status(&error);
            assert_eq!(response.status(), 200);
            assert!(response.body().is_empty());
            assert!(response.headers().contains_key("grpc-message"));
        }
    }
}
