//! axum extractors for [`ResolvedCustomer`], [`Redemption`],
//! [`Entitlements`] and [`OfferType`] (feature `axum`).

use std::convert::Infallible;
use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::customer::ResolvedCustomer;
use crate::entitlements::Entitlements;
use crate::offer_type::OfferType;
use crate::redemption::Redemption;

/// The rejection of the [`ResolvedCustomer`], [`Redemption`] and
/// [`Entitlements`] extractors: the handler is not behind
/// [`ResolveCustomerLayer`](crate::ResolveCustomerLayer) (or, for
/// `Entitlements`, the entitlement step is off). A server bug, so 500.
#[derive(Debug, Clone, Copy, Default)]
pub struct MissingResolvedCustomer;

impl fmt::Display for MissingResolvedCustomer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "missing ResolvedCustomer request extension: is the handler behind ResolveCustomerLayer (with the entitlement step on, for Entitlements)?",
        )
    }
}

impl std::error::Error for MissingResolvedCustomer {}

impl IntoResponse for MissingResolvedCustomer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// `FromRequestParts` (failing with [`MissingResolvedCustomer`]) and
/// `OptionalFromRequestParts` (never failing) for a request extension the
/// layer inserts.
macro_rules! extension_extractor {
    ($(#[$doc:meta])* $type:ty) => {
        $(#[$doc])*
        impl<S: Send + Sync> FromRequestParts<S> for $type {
            type Rejection = MissingResolvedCustomer;

            async fn from_request_parts(
                parts: &mut Parts,
                _state: &S,
            ) -> Result<Self, Self::Rejection> {
                parts
                    .extensions
                    .get::<$type>()
                    .cloned()
                    .ok_or(MissingResolvedCustomer)
            }
        }

        impl<S: Send + Sync> OptionalFromRequestParts<S> for $type {
            type Rejection = Infallible;

            async fn from_request_parts(
                parts: &mut Parts,
                _state: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                Ok(parts.extensions.get::<$type>().cloned())
            }
        }
    };
}

extension_extractor!(
    /// Extracts the customer the layer resolved.
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use tower_resolve_customer::{RegistrationToken, ResolveCustomerLayer, ResolvedCustomer};
    ///
    /// async fn register(customer: ResolvedCustomer) -> String {
    ///     format!("welcome, account {}", customer.customer_aws_account_id())
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .route("/register", post(register))
    ///     .layer(ResolveCustomerLayer::new(|_: RegistrationToken| async {
    ///         Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
    ///     }));
    /// ```
    ///
    /// `Option<ResolvedCustomer>` extracts `None` instead of failing, for routes
    /// behind an [optional](crate::ResolveCustomerLayer::optional) layer.
    ResolvedCustomer
);

extension_extractor!(
    /// Extracts whether the request redeemed its token or replays an earlier
    /// redemption; `Option<Redemption>` for routes behind an optional layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::{Router, routing::post};
    /// use tower_resolve_customer::{Redemption, RegistrationToken, ResolveCustomerLayer, ResolvedCustomer};
    ///
    /// async fn register(customer: ResolvedCustomer, redemption: Redemption) -> String {
    ///     if redemption.is_first() || redemption.age() < Duration::from_secs(300) {
    ///         format!("welcome, account {}", customer.customer_aws_account_id())
    ///     } else {
    ///         "this registration link was used already: please sign in".to_owned()
    ///     }
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .route("/register", post(register))
    ///     .layer(ResolveCustomerLayer::new(|_: RegistrationToken| async {
    ///         Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
    ///     }));
    /// ```
    Redemption
);

extension_extractor!(
    /// Extracts the customer's entitlements, with the entitlement step on
    /// ([`ResolutionsBuilder::entitlements`](crate::ResolutionsBuilder::entitlements));
    /// `Option<Entitlements>` for routes behind an optional layer.
    Entitlements
);

/// `Option<OfferType>` extracts the offer type the layer read from the
/// registration form (`None` for a standard offer, or a form without the
/// field).
///
/// ```
/// use axum::{Router, routing::post};
/// use tower_resolve_customer::{OfferType, RegistrationToken, ResolveCustomerLayer, ResolvedCustomer};
///
/// async fn register(customer: ResolvedCustomer, offer: Option<OfferType>) -> String {
///     let trial = offer.is_some_and(|offer| offer.is_free_trial());
///     format!("account {}, trial: {trial}", customer.customer_aws_account_id())
/// }
///
/// let app: Router = Router::new()
///     .route("/register", post(register))
///     .layer(ResolveCustomerLayer::new(|_: RegistrationToken| async {
///         Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
///     }));
/// ```
impl<S: Send + Sync> OptionalFromRequestParts<S> for OfferType {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<OfferType>().cloned())
    }
}
