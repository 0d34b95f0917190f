//! [`ResolveCustomer`]: the middleware service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, Request, Response};
use http_body::Body;
use tower_service::Service;
use tracing::Instrument;

use std::time::SystemTime;

use crate::answer::{Answer, Entitled};
use crate::cache::{CacheStatus, Outcome, TokenKey};
use crate::customer::ResolvedCustomer;
use crate::entitlements::{EntitlementPolicy, Entitlements};
use crate::error::ResolveError;
use crate::form::{check_content_length, read_limited};
use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::redemption::Redemption;
use crate::rejection::{Rejection, outcome_kind};
use crate::request_body::RequestBody;
use crate::response_body::ResponseBody;
use crate::source::Candidate;
use crate::token::RegistrationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The boxed work of a request that needs a resolve: the request to pass on, or
/// the rejection to answer with.
pub(crate) type Resolving<B> =
    Pin<Box<dyn Future<Output = Result<Request<RequestBody<B>>, Response<Bytes>>> + Send>>;

/// Resolves the registration token of each request before calling the inner
/// service. Made by [`ResolveCustomerLayer`](crate::ResolveCustomerLayer).
pub struct ResolveCustomer<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ResolveCustomer<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The resolutions this service shares with its layer's other services.
    pub fn resolutions(&self) -> &crate::Resolutions {
        &self.shared.resolutions
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> ResolveCustomer<S> {
    /// The inner service that was polled ready, for a request that calls it
    /// later; a fresh clone stays behind for the next `poll_ready`.
    ///
    /// Requests answered at once (no token, a cached answer) call `self.inner`
    /// directly and skip the clone.
    fn take_ready_inner(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

impl<S: Clone> Clone for ResolveCustomer<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ResolveCustomer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveCustomer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResolveCustomer<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let config = &shared.config;

        // The request is taken apart only for a future: requests answered
        // at once (no token, a cached answer) go on as they came.
        let found = match config.source.find_in_head(&request, config.max_token_len) {
            Ok(found) => found,
            Err(error) => return ResponseFuture::reject(reject(shared, &error)),
        };

        if config.source.wants_body(&request) {
            let found = found
                .map(|candidate| candidate.into_checked(config.max_token_len))
                .transpose()
                .and_then(|found| {
                    check_content_length(request.headers(), config.max_body_bytes)?;
                    Ok(found)
                });
            let found = match found {
                Ok(found) => found,
                Err(error) => return ResponseFuture::reject(reject(shared, &error)),
            };
            let (parts, body) = request.into_parts();
            let resolving = read_form_boxed(Arc::clone(shared), parts, body, found);
            return ResponseFuture::resolve(resolving, self.take_ready_inner());
        }

        match found {
            Some(candidate) => {
                let key = candidate.key();
                let cached = match cached_answer(shared, &candidate) {
                    Ok(cached) => cached,
                    Err(error) => return ResponseFuture::reject(reject(shared, &error)),
                };
                // A cached answer is settled here, without boxing a future or
                // copying the token.
                if let Some(outcome) = cached {
                    drop(candidate);
                    let mut request = request;
                    return match settle_hit(shared, request.extensions_mut(), outcome) {
                        Ok(()) => {
                            ResponseFuture::call(self.inner.call(request.map(RequestBody::new)))
                        }
                        Err(rejection) => ResponseFuture::reject(rejection),
                    };
                }
                let token = candidate.into_token();
                let (parts, body) = request.into_parts();
                let body = RequestBody::new(body);
                let resolving = resolve_boxed(Arc::clone(shared), parts, body, key, token);
                ResponseFuture::resolve(resolving, self.take_ready_inner())
            }
            None if config.required => {
                ResponseFuture::reject(reject(shared, &Rejection::MissingToken))
            }
            None => ResponseFuture::call(self.inner.call(request.map(RequestBody::new))),
        }
    }
}

fn reject(shared: &Shared, error: &Rejection) -> Response<Bytes> {
    tracing::debug!(error = error.kind(), "registration request rejected");
    shared.reject(error)
}

/// Reads the form body, looks for the token in it, then resolves; the body is
/// reinstated as read.
async fn read_form_then_resolve<B>(
    shared: Arc<Shared>,
    parts: Parts,
    body: B,
    found: Option<Candidate<'static>>,
) -> Result<Request<RequestBody<B>>, Response<Bytes>>
where
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let config = &shared.config;
    let mut read = std::pin::pin!(read_limited(body, config.max_body_bytes));
    // A body that has arrived whole is read without starting a timer.
    let buffered = match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
        Poll::Ready(read) => read,
        Poll::Pending => tokio::time::timeout(config.body_timeout, read)
            .await
            .unwrap_or(Err(Rejection::BodyTimeout)),
    }
    .map_err(|e| reject(&shared, &e))?;
    let (found, offer) = config
        .source
        .find_in_form(&buffered.data, found, config.max_token_len)
        .map_err(|e| reject(&shared, &e))?;
    let mut parts = parts;
    if let Some(offer) = offer {
        parts.extensions.insert(offer);
    }
    // The candidate borrows the buffered data: the body is put back once it
    // is dropped.
    let Some(candidate) = found else {
        let body = RequestBody::buffered(buffered.data, buffered.trailers);
        return match config.required {
            true => Err(reject(&shared, &Rejection::MissingToken)),
            false => Ok(Request::from_parts(parts, body)),
        };
    };
    let key = candidate.key();
    if let Some(outcome) = cached_answer(&shared, &candidate).map_err(|e| reject(&shared, &e))? {
        drop(candidate);
        settle_hit(&shared, &mut parts.extensions, outcome)?;
        let body = RequestBody::buffered(buffered.data, buffered.trailers);
        return Ok(Request::from_parts(parts, body));
    }
    let token = candidate.into_token();
    let body = RequestBody::buffered(buffered.data, buffered.trailers);
    // Boxed apart, so the resolve's state makes this future (boxed on every
    // form request) no larger.
    resolve_boxed(Arc::clone(&shared), parts, body, key, token).await
}

/// What the cache answers for a token found in a request (the customer to
/// accept the request with, or the rejection), once the token is checked:
/// after the lookup, so that a hit checks only the token's length (see
/// [`Candidate::validate`]).
///
/// The answer is read in place, under the cache's read lock: a hit copies
/// only what goes into the request's extensions.
#[inline]
fn cached_answer(
    shared: &Shared,
    candidate: &Candidate<'_>,
) -> Result<Option<Result<Accepted, Rejection>>, Rejection> {
    let cached = shared
        .resolutions
        .cache()
        .cached_with(candidate.key(), |cached| match cached {
            Ok(answer) => accept(shared, answer, false),
            Err(refusal) => Err(Rejection::Resolve(refusal.clone())),
        });
    candidate.validate(shared.config.max_token_len, cached.is_some())?;
    Ok(cached)
}

/// [`read_form_then_resolve`], boxed. Out of line: the future is built in a
/// stack frame of its own, so `call`'s stays small for the requests that
/// need no future.
#[inline(never)]
fn read_form_boxed<B>(
    shared: Arc<Shared>,
    parts: Parts,
    body: B,
    found: Option<Candidate<'static>>,
) -> Resolving<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Box::pin(read_form_then_resolve(shared, parts, body, found))
}

/// [`resolve_and_pass_on`], boxed, out of line for the same reason.
#[inline(never)]
fn resolve_boxed<B>(
    shared: Arc<Shared>,
    parts: Parts,
    body: RequestBody<B>,
    key: TokenKey,
    token: RegistrationToken,
) -> Resolving<B>
where
    B: Send + 'static,
{
    Box::pin(resolve_and_pass_on(shared, parts, body, key, token))
}

/// Resolves `token` and, if the customer is acceptable, returns the request with
/// the customer in its extensions.
async fn resolve_and_pass_on<B>(
    shared: Arc<Shared>,
    mut parts: Parts,
    body: RequestBody<B>,
    key: TokenKey,
    token: RegistrationToken,
) -> Result<Request<RequestBody<B>>, Response<Bytes>>
where
{
    let trace = ResolveTrace::begin();
    let (outcome, status) = shared
        .resolutions
        .cache()
        .resolve(key, &token)
        .instrument(trace.span())
        .await;
    drop(token);
    settle(&shared, &mut parts.extensions, outcome, status, &trace)
        .map_err(|error| trace.reject(&shared, &error))?;
    Ok(Request::from_parts(parts, body))
}

/// Settles an answer found in the cache: the request goes on with it, or the
/// rejection to answer with.
#[expect(
    clippy::result_large_err,
    reason = "the rejection is the response itself, moved once, as everywhere in this module"
)]
#[inline]
fn settle_hit(
    shared: &Shared,
    extensions: &mut Extensions,
    outcome: Result<Accepted, Rejection>,
) -> Result<(), Response<Bytes>> {
    let trace = ResolveTrace::begin();
    trace.record(CacheStatus::Hit, &outcome);
    match outcome {
        Ok(accepted) => {
            accepted.insert_into(extensions);
            Ok(())
        }
        Err(error) => Err(trace.reject(shared, &error)),
    }
}

/// Settles a resolve's answer: [`accept`]s it, records it on the request's
/// span, and puts an accepted customer in the request's extensions.
fn settle(
    shared: &Shared,
    extensions: &mut Extensions,
    outcome: Outcome,
    status: CacheStatus,
    trace: &ResolveTrace,
) -> Result<(), Rejection> {
    let outcome = outcome.and_then(|answer| accept(shared, &answer, status == CacheStatus::Miss));
    trace.record(status, &outcome);
    outcome?.insert_into(extensions);
    Ok(())
}

/// What a request is accepted with: the customer, with its
/// [`Redemption`](crate::Redemption) and, if fetched, its
/// [`Entitlements`](crate::Entitlements), for its extensions.
struct Accepted {
    customer: ResolvedCustomer,
    redemption: Redemption,
    entitlements: Option<Entitlements>,
}

impl Accepted {
    #[inline]
    fn insert_into(self, extensions: &mut Extensions) {
        extensions.insert(self.redemption);
        if let Some(entitlements) = self.entitlements {
            extensions.insert(entitlements);
        }
        extensions.insert(self.customer);
    }
}

/// Applies the product allowlist and the entitlement policy to an answer
/// (`started`: the request started the run that delivered it).
#[inline]
fn accept(shared: &Shared, answer: &Answer, started: bool) -> Result<Accepted, Rejection> {
    if let Some(allowed) = &shared.config.allowed_products
        && !allowed.contains(answer.customer.product_code())
    {
        return Err(Rejection::ProductMismatch);
    }
    if let Some(policy) = shared.resolutions.entitlement_policy() {
        match &answer.entitlements {
            Entitled::Fetched(entitlements) => {
                if policy == EntitlementPolicy::Required
                    && !entitlements.has_current_at(SystemTime::now())
                {
                    return Err(Rejection::NotEntitled);
                }
            }
            Entitled::Failed(error) => return Err(Rejection::Entitlements(error.clone())),
            Entitled::NotFetched => {
                // Another redemption's customer, published without them:
                // the retry fetches them.
                return Err(Rejection::Entitlements(ResolveError::unavailable(
                    "the entitlements are not fetched yet",
                )));
            }
        }
    }
    Ok(Accepted {
        customer: answer.customer.clone(),
        redemption: answer.redemption(started),
        entitlements: answer.entitlements().cloned(),
    })
}

/// The `resolve_customer` span of one request, if anyone listens.
struct ResolveTrace {
    traced: Option<Traced>,
}

struct Traced {
    span: tracing::Span,
    /// When the span began, if it is enabled (no clock reads otherwise).
    started: Option<tokio::time::Instant>,
}

impl ResolveTrace {
    #[inline]
    fn begin() -> Self {
        // No subscriber yet: no span. A disabled span still costs a cache
        // hit a tenth of what the layer adds (more with `tracing`'s `log`
        // fallback compiled in, as axum's default features do).
        if !tracing::dispatcher::has_been_set() {
            return Self { traced: None };
        }
        Self::traced()
    }

    /// Out of line, so that `begin` stays small where no one listens.
    #[inline(never)]
    fn traced() -> Self {
        let span = tracing::debug_span!(
            "resolve_customer",
            cache = tracing::field::Empty,
            outcome = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        let started = (!span.is_disabled()).then(tokio::time::Instant::now);
        Self {
            traced: Some(Traced { span, started }),
        }
    }

    /// The span, to instrument the resolve with.
    fn span(&self) -> tracing::Span {
        self.traced
            .as_ref()
            .map_or_else(tracing::Span::none, |traced| traced.span.clone())
    }

    /// Records how the request was answered on the span.
    #[inline]
    fn record<T>(&self, status: CacheStatus, outcome: &Result<T, Rejection>) {
        if let Some(Traced {
            span,
            started: Some(started),
        }) = &self.traced
        {
            span.record("cache", status.as_str());
            span.record("outcome", outcome_kind(outcome));
            span.record("latency_us", started.elapsed().as_micros() as u64);
        }
    }

    /// The rejection for `error`, logged within the span.
    fn reject(&self, shared: &Shared, error: &Rejection) -> Response<Bytes> {
        match &self.traced {
            Some(traced) => traced.span.in_scope(|| reject(shared, error)),
            None => reject(shared, error),
        }
    }
}
