//! [`ResolveCustomerLayer`]: configuration, and the state its services share.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use tower_layer::Layer;

use crate::problem_details::{Responder, problem_details};
use crate::rejection::Rejection;
use crate::resolutions::{MAX_DURATION, Resolutions};
use crate::resolver::Resolver;
use crate::service::ResolveCustomer;
use crate::source::TokenSource;
use crate::token::DEFAULT_MAX_TOKEN_LEN;

/// Default for [`ResolveCustomerLayer::max_body_bytes`]: 16 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// Default for [`ResolveCustomerLayer::body_timeout`]: 10 seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Puts a [`ResolvedCustomer`](crate::ResolvedCustomer) in front of a service.
///
/// The layer finds the registration token (see [`TokenSource`]), redeems it once
/// through its [`Resolutions`] (the resolver behind a short-lived single-flight
/// cache, and optionally a store shared with other replicas), and inserts the
/// [`ResolvedCustomer`](crate::ResolvedCustomer) into the request's
/// extensions. Requests that cannot be given a customer are answered by the
/// rejection responder ([`problem_details`] by default) without reaching the
/// inner service.
///
/// The layer holds only per-route options; changing them never touches the
/// shared [`Resolutions`]. Every layer made from one `Resolutions` (and every
/// clone of a layer) shares one cache and one flood budget, so a buyer's double
/// submit is deduplicated across routes and connections.
///
/// ```
/// use tower_resolve_customer::{RegistrationToken, ResolveCustomerLayer, ResolvedCustomer};
///
/// let layer = ResolveCustomerLayer::new(|_token: RegistrationToken| async {
///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
/// })
/// .allowed_product_codes(["prod-abc123"]);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct ResolveCustomerLayer {
    shared: Arc<Shared>,
}

/// What the services read on every request.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) source: TokenSource,
    pub(crate) required: bool,
    pub(crate) allowed_products: Option<Arc<HashSet<Box<str>>>>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_token_len: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) responder: Responder,
}

/// The state shared by every service a layer makes: its route's options and
/// the resolutions.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) resolutions: Resolutions,
}

impl Shared {
    pub(crate) fn reject(&self, error: &Rejection) -> Response<Bytes> {
        (self.config.responder)(error)
    }
}

impl ResolveCustomerLayer {
    /// A layer that redeems tokens with `resolver`, over [`Resolutions`] of its
    /// own with every default (see [`Resolutions::new`]), and the default
    /// per-route options: token from the Marketplace form post, required, any
    /// product, 16 KiB body limit read within 10 s, `application/problem+json`
    /// rejections.
    ///
    /// To share one cache between several layers, or to change the cache,
    /// limits or store, build [`Resolutions`] and use
    /// [`from_resolutions`](Self::from_resolutions).
    pub fn new<R: Resolver>(resolver: R) -> Self {
        Self::from_resolutions(Resolutions::new(resolver))
    }

    /// A layer over `resolutions`, shared with every other layer made from
    /// them, with the default per-route options.
    pub fn from_resolutions(resolutions: Resolutions) -> Self {
        Self {
            shared: Arc::new(Shared {
                config: Config {
                    source: TokenSource::default(),
                    required: true,
                    allowed_products: None,
                    max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                    max_token_len: DEFAULT_MAX_TOKEN_LEN,
                    body_timeout: DEFAULT_BODY_TIMEOUT,
                    responder: Arc::new(problem_details),
                },
                resolutions,
            }),
        }
    }

    /// The resolutions this layer's services share (for
    /// [`stats`](Resolutions::stats), or to make another layer over them).
    pub fn resolutions(&self) -> &Resolutions {
        &self.shared.resolutions
    }

    fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut Arc::make_mut(&mut self.shared).config);
        self
    }

    /// Where to look for the token (default: [`TokenSource::form`]).
    pub fn token_source(self, source: TokenSource) -> Self {
        self.configure(|c| c.source = source)
    }

    /// Requests without a token are rejected with
    /// [`Rejection::MissingToken`] and never reach the inner service. The
    /// default.
    pub fn required(self) -> Self {
        self.configure(|c| c.required = true)
    }

    /// Requests without a token pass through without a
    /// [`ResolvedCustomer`](crate::ResolvedCustomer) extension. A token that is
    /// present but malformed, ambiguous or refused is still rejected, and so is an
    /// urlencoded form `POST` over [`max_body_bytes`](Self::max_body_bytes) when
    /// the form is a token source (the layer cannot tell whether it carries one).
    pub fn optional(self) -> Self {
        self.configure(|c| c.required = false)
    }

    /// Only customers of these products reach the inner service; others are
    /// rejected with [`Rejection::ProductMismatch`] (403).
    pub fn allowed_product_codes<I, S>(self, codes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let codes = codes
            .into_iter()
            .map(|c| c.into().into_boxed_str())
            .collect();
        self.configure(|c| c.allowed_products = Some(Arc::new(codes)))
    }

    /// The largest form body read to find the token (default 16 KiB). A larger
    /// `Content-Length` is refused before reading; a streamed body is refused as
    /// soon as it grows past the limit. Either way: 413.
    pub fn max_body_bytes(self, limit: usize) -> Self {
        self.configure(|c| c.max_body_bytes = limit)
    }

    /// The longest token accepted, in bytes (default 4 KiB).
    pub fn max_token_len(self, limit: usize) -> Self {
        self.configure(|c| c.max_token_len = limit)
    }

    /// How long reading a form body may take (default 10 s); past it the request
    /// gets [`Rejection::BodyTimeout`] (408).
    pub fn body_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.body_timeout = timeout.min(MAX_DURATION))
    }

    /// Replaces the default [`problem_details`] rejection.
    ///
    /// The body may be anything convertible to [`Bytes`]: `String`, `Vec<u8>`,
    /// `&'static str`, ...
    ///
    /// ```
    /// use http::{Response, StatusCode};
    /// use tower_resolve_customer::{RegistrationToken, Rejection, ResolveCustomerLayer, ResolvedCustomer};
    ///
    /// let layer = ResolveCustomerLayer::new(|_: RegistrationToken| async {
    ///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
    /// })
    /// .rejection(|error: &Rejection| {
    ///     let mut page = Response::new(format!("<h1>{}</h1>", error.public_message()));
    ///     *page.status_mut() = error.status();
    ///     page
    /// });
    /// # let _ = layer;
    /// ```
    pub fn rejection<F, T>(self, responder: F) -> Self
    where
        F: Fn(&Rejection) -> Response<T> + Send + Sync + 'static,
        T: Into<Bytes>,
    {
        let responder: Responder = Arc::new(move |e: &Rejection| responder(e).map(Into::into));
        self.configure(|c| c.responder = responder)
    }
}

impl fmt::Debug for ResolveCustomerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        f.debug_struct("ResolveCustomerLayer")
            .field("source", &config.source)
            .field("required", &config.required)
            .field("allowed_products", &config.allowed_products)
            .field("max_body_bytes", &config.max_body_bytes)
            .field("max_token_len", &config.max_token_len)
            .field("body_timeout", &config.body_timeout)
            .field("resolutions", &self.shared.resolutions)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ResolveCustomerLayer {
    type Service = ResolveCustomer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveCustomer::new(inner, Arc::clone(&self.shared))
    }
}
