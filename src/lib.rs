//! Tower middleware that redeems AWS Marketplace SaaS registration tokens.
//!
//! When a buyer subscribes to a SaaS product on AWS Marketplace, their browser
//! `POST`s an urlencoded form with the field `x-amzn-marketplace-token` to the
//! seller's registration URL. The seller must redeem that token at once with the
//! Marketplace Metering API's `ResolveCustomer` to learn who the buyer is.
//!
//! [`ResolveCustomerLayer`] does that in front of any tower service (axum routes,
//! tonic and hyper services):
//!
//! - it finds the token ([`TokenSource`]: the form field by default, or a header,
//!   query parameter or cookie), buffering a form body within a limit and handing
//!   it on byte for byte, trailers included;
//! - it redeems the token through a [`Resolver`] ([`AwsMarketplaceResolver`] with
//!   the default `aws` feature, or any async closure) behind a short-lived,
//!   single-flight cache: concurrent and repeated requests with one token make one
//!   upstream call, so a buyer's double submit or refresh is never turned away by
//!   a single-use token;
//! - it inserts the [`ResolvedCustomer`] into the request's extensions, or answers
//!   with an RFC 9457 problem response ([`problem_details`]) without calling the
//!   inner service.
//!
//! The token is never logged, never shown by `Debug`, never put in a rejection,
//! and never used as a cache key (a keyed hash is; stores see its SHA-256).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::post};
//! use http::{Request, header::CONTENT_TYPE};
//! use tower::ServiceExt;
//! use tower_resolve_customer::{RegistrationToken, ResolveCustomerLayer, ResolveError, ResolvedCustomer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In production: `AwsMarketplaceResolver::from_conf(&aws_config)`.
//! let resolver = |token: RegistrationToken| async move {
//!     match token.expose() {
//!         "demo+token/==" => Ok(ResolvedCustomer::new("123456789012", "prod-abc123")),
//!         _ => Err(ResolveError::InvalidToken),
//!     }
//! };
//!
//! let app = Router::new()
//!     .route(
//!         "/register",
//!         post(|request: Request<axum::body::Body>| async move {
//!             let customer = request.extensions().get::<ResolvedCustomer>().unwrap();
//!             format!("welcome, {}", customer.customer_aws_account_id())
//!         }),
//!     )
//!     .layer(ResolveCustomerLayer::new(resolver));
//!
//! // What the buyer's browser sends.
//! let request = Request::post("/register")
//!     .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
//!     .body(axum::body::Body::from("x-amzn-marketplace-token=demo%2Btoken%2F%3D%3D"))
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```
//!
//! # What handlers receive
//!
//! Next to the [`ResolvedCustomer`], every accepted request carries a
//! [`Redemption`]: whether this request's resolve redeemed the token, or it
//! replays an earlier redemption (a double submit, a refresh, someone else's
//! copy of the token), and when that first redemption happened, fleet-wide.
//! A form post from AWS Marketplace for a free trial also carries an
//! [`OfferType`]. With the entitlement step on
//! ([`ResolutionsBuilder::entitlements`]), the buyer's [`Entitlements`] come
//! too, fetched once per token in the same single flight.
//!
//! # Features
//!
//! - `aws` (default): [`AwsMarketplaceResolver`], on `aws-sdk-marketplacemetering`.
//! - `entitlements`: [`AwsEntitlements`], the entitlement step
//!   ([`ResolutionsBuilder::entitlements`]) on `aws-sdk-marketplaceentitlement`.
//! - `axum`: [`ResolvedCustomer`], [`Redemption`], [`Entitlements`] and
//!   [`OfferType`] are axum extractors (and their `Option`s).
//! - `dynamodb`: [`DynamoDbStore`], a [`ResolutionStore`] on one DynamoDB
//!   table, for fleets without Redis (AWS Lambda above all).
//! - `grpc`: [`grpc_status`], rejections as gRPC statuses for tonic and other
//!   gRPC servers.
//! - `redis`: [`RedisStore`], a [`ResolutionStore`] on Redis (one node or a
//!   cluster, over TCP or TLS, or the application's own connection), so a
//!   token is redeemed once per deployment.
//! - `test-util`: [`emulator::MeteringEmulator`], a local Marketplace Metering API
//!   that speaks the real wire protocol, for tests and offline development, and
//!   `MemoryStore`, an in-process [`ResolutionStore`] with fault injection.
//!
//! # Several routes, several replicas
//!
//! [`Resolutions`] is the shared state (the resolver, the caches, the single
//! flight, the flood limits and an optional store), built once and cheap to
//! clone: every layer made from one `Resolutions` shares its cache and budget,
//! so a token is redeemed once across routes. Replicas of a deployment share
//! resolutions through a [`ResolutionStore`] (`RedisStore`, `DynamoDbStore`, or
//! your own): a lease lets one replica redeem the token while the others wait
//! for its answer. The README's "Running several replicas" states what holds under
//! which failure.
//!
//! # Flood protection
//!
//! At most [`DEFAULT_MAX_CONCURRENT_RESOLVES`] tokens are resolved upstream at
//! once (see [`ResolutionsBuilder::max_concurrent_resolves`]), and
//! [`ResolutionsBuilder::miss_rate_limit`] can cap how fast new tokens go
//! upstream: the excess is refused with [`Rejection::Overloaded`] (503)
//! before any call, so junk tokens cannot exhaust the seller's quota.
//!
//! # Runtime
//!
//! Resolves run in tasks of their own (so a client that disconnects does not
//! cancel the upstream call others are waiting for): the layer must be used
//! inside a tokio runtime.

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod answer;
mod cache;
mod customer;
mod entitlements;
mod error;
mod form;
mod future;
mod layer;
mod offer_type;
mod problem_details;
mod redemption;
mod rejection;
mod request_body;
mod resolutions;
mod resolver;
mod response_body;
mod service;
mod source;
mod store;
mod token;
mod upstream_limit;
mod urlencoded;

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "axum")]
mod axum;
#[cfg(feature = "test-util")]
pub mod emulator;
#[cfg(feature = "grpc")]
mod grpc;

/// The README's Rust examples, compiled (and, unless marked `no_run`, run) as
/// doc-tests, so the README cannot drift from the API.
#[cfg(all(
    doctest,
    feature = "aws",
    feature = "entitlements",
    feature = "axum",
    feature = "dynamodb",
    feature = "grpc",
    feature = "redis",
    feature = "test-util"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "aws")]
pub use crate::aws::{AwsMarketplaceResolver, PublishingAccount};
#[cfg(feature = "axum")]
pub use crate::axum::MissingResolvedCustomer;
pub use crate::cache::CacheStats;
pub use crate::customer::ResolvedCustomer;
#[cfg(feature = "entitlements")]
pub use crate::entitlements::aws::{AwsEntitlements, ENTITLEMENT_SERVICE_REGION};
pub use crate::entitlements::{
    Entitlement, EntitlementPolicy, EntitlementSource, EntitlementValue, Entitlements,
};
pub use crate::error::ResolveError;
pub use crate::future::ResponseFuture;
#[cfg(feature = "grpc")]
pub use crate::grpc::{GrpcCode, grpc_status};
pub use crate::layer::{DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES, ResolveCustomerLayer};
pub use crate::offer_type::{OFFER_TYPE_FIELD, OfferType};
pub use crate::problem_details::problem_details;
pub use crate::redemption::Redemption;
pub use crate::rejection::Rejection;
pub use crate::request_body::RequestBody;
pub use crate::resolutions::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, DEFAULT_MAX_CONCURRENT_RESOLVES,
    DEFAULT_NEGATIVE_CACHE_TTL, DEFAULT_RESOLVE_TIMEOUT, DEFAULT_STORE_TIMEOUT, Resolutions,
    ResolutionsBuilder,
};
pub use crate::resolver::Resolver;
pub use crate::response_body::ResponseBody;
pub use crate::service::ResolveCustomer;
pub use crate::source::TokenSource;
#[cfg(feature = "dynamodb")]
pub use crate::store::dynamodb::{
    DEFAULT_DYNAMODB_ATTEMPT_TIMEOUT, DEFAULT_DYNAMODB_CALL_TIMEOUT, DEFAULT_DYNAMODB_KEY_PREFIX,
    DEFAULT_DYNAMODB_MAX_ATTEMPTS, DEFAULT_DYNAMODB_PARTITION_KEY, DEFAULT_DYNAMODB_TTL_ATTRIBUTE,
    DynamoDbStore, DynamoDbStoreError,
};
#[cfg(feature = "test-util")]
pub use crate::store::memory::{MemoryStore, MemoryStoreError, StoreCall, StoreFault};
pub use crate::store::protocol::StoreUnavailable;
#[cfg(feature = "redis")]
pub use crate::store::redis::{
    DEFAULT_REDIS_CONNECT_TIMEOUT, DEFAULT_REDIS_KEY_PREFIX, InvalidRedisUrl, RedisStore,
    RedisStoreError,
};
pub use crate::store::{
    LeaseGrant, LeaseHolder, LeaseTerms, ResolutionStore, STORED_CUSTOMER_PREFIX,
    STORED_ENTITLED_PREFIX, StoredAnswer, TokenDigest,
};
pub use crate::token::{
    DEFAULT_MAX_TOKEN_LEN, RegistrationToken, TOKEN_FIELD, TOKEN_HEADER, TokenError,
};
