//! The entitlement step: what the buyer bought, fetched once per token right
//! after the resolve, inside the same single flight and shared through the
//! same store.
//!
//! [`ResolutionsBuilder::entitlements`](crate::ResolutionsBuilder::entitlements)
//! turns it on with an [`EntitlementSource`] ([`AwsEntitlements`](crate::AwsEntitlements)
//! with the `entitlements` feature, or any async closure) and an
//! [`EntitlementPolicy`]; handlers then find the buyer's [`Entitlements`] in
//! the request's extensions, next to the [`ResolvedCustomer`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use crate::customer::ResolvedCustomer;
use crate::error::ResolveError;

#[cfg(feature = "entitlements")]
pub(crate) mod aws;
mod entitlement;

pub use self::entitlement::{Entitlement, EntitlementValue};

/// The buyer's entitlements to the resolved product: every page of
/// `GetEntitlements` for the customer's license (or, without one, their AWS
/// account). Inserted into the request's extensions next to the
/// [`ResolvedCustomer`] when the entitlement step is on. Cloning is a
/// reference-count increment.
///
/// ```
/// use std::time::SystemTime;
/// use tower_resolve_customer::{Entitlement, EntitlementValue, Entitlements};
///
/// let entitlements: Entitlements = [
///     Entitlement::new("prod-abc123", "Users").with_value(EntitlementValue::Integer(25)),
///     Entitlement::new("prod-abc123", "Premium").with_value(EntitlementValue::Boolean(true)),
/// ]
/// .into_iter()
/// .collect();
/// assert_eq!(entitlements.len(), 2);
/// let users = entitlements.dimension("Users").next().unwrap();
/// assert_eq!(users.value(), Some(&EntitlementValue::Integer(25)));
/// assert!(entitlements.has_current_at(SystemTime::now()));
/// ```
#[derive(Clone, PartialEq)]
pub struct Entitlements {
    entries: Arc<[Entitlement]>,
    /// When the last of them ends (`None`: one never does; the epoch: there
    /// are none), so that a required-policy check is one comparison.
    current_until: Option<SystemTime>,
}

impl Default for Entitlements {
    fn default() -> Self {
        Self::none()
    }
}

impl Entitlements {
    /// No entitlement.
    pub fn none() -> Self {
        Self::from(Vec::new())
    }

    /// Every entitlement, as the service listed them.
    pub fn iter(&self) -> std::slice::Iter<'_, Entitlement> {
        self.entries.iter()
    }

    /// How many entitlements there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entitlements to `dimension` (one per license that grants it).
    pub fn dimension<'a>(&'a self, dimension: &'a str) -> impl Iterator<Item = &'a Entitlement> {
        self.iter().filter(move |e| e.dimension() == dimension)
    }

    /// The entitlements that have not ended at `now`.
    pub fn current_at(&self, now: SystemTime) -> impl Iterator<Item = &Entitlement> {
        self.iter().filter(move |e| e.is_current_at(now))
    }

    /// Whether any entitlement has not ended at `now`.
    pub fn has_current_at(&self, now: SystemTime) -> bool {
        self.current_until.is_none_or(|until| now < until)
    }
}

impl FromIterator<Entitlement> for Entitlements {
    fn from_iter<I: IntoIterator<Item = Entitlement>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl From<Vec<Entitlement>> for Entitlements {
    fn from(entries: Vec<Entitlement>) -> Self {
        let mut current_until = Some(std::time::UNIX_EPOCH);
        for entitlement in &entries {
            current_until = match (current_until, entitlement.expiration()) {
                (Some(until), Some(end)) => Some(until.max(end)),
                _ => None,
            };
        }
        Self {
            entries: entries.into(),
            current_until,
        }
    }
}

impl<'a> IntoIterator for &'a Entitlements {
    type Item = &'a Entitlement;
    type IntoIter = std::slice::Iter<'a, Entitlement>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Entitlements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What the layer does with a customer's entitlements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntitlementPolicy {
    /// Attach them; a customer with none (a free trial not started, a
    /// contract that ended) still reaches the handler, which decides.
    #[default]
    Informational,
    /// A customer with no current entitlement to the product is rejected
    /// with [`Rejection::NotEntitled`](crate::Rejection::NotEntitled) (403,
    /// `not-entitled`); the handler sees only entitled customers.
    Required,
}

/// Fetches a resolved customer's entitlements.
///
/// [`AwsEntitlements`](crate::AwsEntitlements) (feature `entitlements`) calls
/// `GetEntitlements`; any async closure taking a [`ResolvedCustomer`] is a
/// source too, and so is `Arc<S>`. Like a [`Resolver`](crate::Resolver), it
/// is called at most once per token at a time, in a task of its own, only
/// after a successful resolve. Errors mean what they mean for a resolve:
/// throttling, an outage and a timeout are retryable and never remembered.
pub trait EntitlementSource: Send + Sync + 'static {
    /// The entitlements of `customer` to `customer.product_code()`.
    fn entitlements(
        &self,
        customer: &ResolvedCustomer,
    ) -> impl Future<Output = Result<Entitlements, ResolveError>> + Send;
}

impl<S: EntitlementSource> EntitlementSource for Arc<S> {
    fn entitlements(
        &self,
        customer: &ResolvedCustomer,
    ) -> impl Future<Output = Result<Entitlements, ResolveError>> + Send {
        (**self).entitlements(customer)
    }
}

/// Any `Fn(ResolvedCustomer) -> impl Future<Output = Result<Entitlements, ResolveError>>`
/// is a source; the closure receives its own copy of the customer.
impl<F, Fut> EntitlementSource for F
where
    F: Fn(ResolvedCustomer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Entitlements, ResolveError>> + Send,
{
    fn entitlements(
        &self,
        customer: &ResolvedCustomer,
    ) -> impl Future<Output = Result<Entitlements, ResolveError>> + Send {
        self(customer.clone())
    }
}

type BoxedEntitlements<'a> =
    Pin<Box<dyn Future<Output = Result<Entitlements, ResolveError>> + Send + 'a>>;

/// [`EntitlementSource`] behind a pointer, as [`Resolutions`](crate::Resolutions)
/// keeps it.
pub(crate) trait DynEntitlementSource: Send + Sync + 'static {
    fn entitlements_boxed<'a>(&'a self, customer: &'a ResolvedCustomer) -> BoxedEntitlements<'a>;
}

impl<S: EntitlementSource> DynEntitlementSource for S {
    fn entitlements_boxed<'a>(&'a self, customer: &'a ResolvedCustomer) -> BoxedEntitlements<'a> {
        Box::pin(self.entitlements(customer))
    }
}

/// The entitlement step as configured.
#[derive(Clone)]
pub(crate) struct EntitlementStep {
    pub(crate) source: Arc<dyn DynEntitlementSource>,
    pub(crate) policy: EntitlementPolicy,
}

impl EntitlementStep {
    /// The entitlements of `customer`, given at most `deadline`. The source
    /// runs in a task of its own, so that a panicking source is a failed
    /// fetch, not a lost customer.
    pub(crate) async fn fetch(
        &self,
        customer: &ResolvedCustomer,
        deadline: std::time::Duration,
    ) -> Result<Entitlements, ResolveError> {
        let source = Arc::clone(&self.source);
        let customer = customer.clone();
        let mut task = AbortOnDrop(tokio::spawn(async move {
            source.entitlements_boxed(&customer).await
        }));
        match tokio::time::timeout(deadline, &mut task.0).await {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(failed)) if failed.is_panic() => {
                Err(ResolveError::unavailable("the entitlement source panicked"))
            }
            Ok(Err(_)) => Err(ResolveError::unavailable(
                "the entitlement fetch was cancelled",
            )),
            Err(_) => Err(ResolveError::Timeout),
        }
    }
}

/// Aborts a task that is no longer waited for.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
