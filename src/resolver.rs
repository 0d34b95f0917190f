//! Turning a registration token into a customer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::customer::ResolvedCustomer;
use crate::error::ResolveError;
use crate::token::RegistrationToken;

/// Redeems a registration token.
///
/// [`AwsMarketplaceResolver`](crate::AwsMarketplaceResolver) (feature `aws`) calls
/// the real `ResolveCustomer` API. For tests and local development, any async
/// closure taking a [`RegistrationToken`] is a resolver, and so is `Arc<R>` for any
/// resolver `R`.
///
/// The layer calls the resolver at most once per distinct token at a time, in a
/// task of its own, so an implementation does not need to deduplicate, cache or
/// survive cancellation. It must not log the token.
pub trait Resolver: Send + Sync + 'static {
    /// Redeems `token`.
    fn resolve(
        &self,
        token: &RegistrationToken,
    ) -> impl Future<Output = Result<ResolvedCustomer, ResolveError>> + Send;
}

impl<R: Resolver> Resolver for Arc<R> {
    fn resolve(
        &self,
        token: &RegistrationToken,
    ) -> impl Future<Output = Result<ResolvedCustomer, ResolveError>> + Send {
        (**self).resolve(token)
    }
}

/// Any `Fn(RegistrationToken) -> impl Future<Output = Result<ResolvedCustomer, ResolveError>>`
/// is a resolver; the closure receives its own copy of the token.
///
/// ```
/// use tower_resolve_customer::{RegistrationToken, ResolveError, ResolvedCustomer, Resolver};
///
/// let resolver = |token: RegistrationToken| async move {
///     match token.expose() {
///         "demo-token" => Ok(ResolvedCustomer::new("123456789012", "prod-demo")),
///         _ => Err(ResolveError::InvalidToken),
///     }
/// };
/// # fn assert_resolver(_: &impl Resolver) {}
/// # assert_resolver(&resolver);
/// ```
impl<F, Fut> Resolver for F
where
    F: Fn(RegistrationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ResolvedCustomer, ResolveError>> + Send,
{
    fn resolve(
        &self,
        token: &RegistrationToken,
    ) -> impl Future<Output = Result<ResolvedCustomer, ResolveError>> + Send {
        self(token.clone())
    }
}

/// A resolver's answer, boxed.
pub(crate) type BoxedResolve<'a> =
    Pin<Box<dyn Future<Output = Result<ResolvedCustomer, ResolveError>> + Send + 'a>>;

/// [`Resolver`] behind a pointer: what [`Resolutions`](crate::Resolutions)
/// keeps, so it needs no type parameter for its resolver. Only cache misses
/// pay for the box.
pub(crate) trait DynResolver: Send + Sync + 'static {
    fn resolve_boxed<'a>(&'a self, token: &'a RegistrationToken) -> BoxedResolve<'a>;
}

impl<R: Resolver> DynResolver for R {
    fn resolve_boxed<'a>(&'a self, token: &'a RegistrationToken) -> BoxedResolve<'a> {
        Box::pin(self.resolve(token))
    }
}
