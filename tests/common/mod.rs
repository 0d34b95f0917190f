//! Shared test fixtures: a counting, gateable resolver, an echoing inner
//! service and a harness that sends requests through a layer to it.
#![allow(dead_code, unreachable_pub)]

pub mod certificates;
#[cfg(feature = "dynamodb")]
pub mod dynamodb_server;
pub mod fault_proxy;
#[cfg(feature = "dynamodb")]
pub mod lambda_event;
#[cfg(feature = "dynamodb")]
pub mod lambda_runtime_api;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "test-util")]
pub mod signing;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_resolve_customer::{
    RegistrationToken, RequestBody, ResolveCustomerLayer, ResolveError, ResolvedCustomer, Resolver,
    ResponseBody,
};

type Answer = Box<dyn Fn(&str) -> Result<ResolvedCustomer, ResolveError> + Send + Sync>;

pub const FORM: &str = "application/x-www-form-urlencoded";

/// A resolver that counts its calls (per token too), can hold every call until
/// released, and answers from a script.
pub struct TestResolver {
    calls: AtomicUsize,
    per_token: Mutex<HashMap<String, usize>>,
    started: Semaphore,
    gate: Option<Gate>,
    answer: Answer,
}

/// How a gated resolver holds its calls.
enum Gate {
    /// Every call waits for a permit of one semaphore, in arrival order.
    All(Semaphore),
    /// Each call waits for its own token's release.
    PerToken(Mutex<HashMap<String, Arc<Semaphore>>>),
}

impl Gate {
    fn of_token(gates: &Mutex<HashMap<String, Arc<Semaphore>>>, token: &str) -> Arc<Semaphore> {
        Arc::clone(
            gates
                .lock()
                .unwrap()
                .entry(token.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(0))),
        )
    }
}

impl TestResolver {
    /// Resolves every token to `customer_for(token)`.
    pub fn ok() -> Arc<Self> {
        Self::with(|t| Ok(customer_for(t)))
    }

    pub fn with(
        answer: impl Fn(&str) -> Result<ResolvedCustomer, ResolveError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::build(None, Box::new(answer))
    }

    /// Like [`with`](Self::with), but every call waits for [`release`](Self::release).
    pub fn gated(
        answer: impl Fn(&str) -> Result<ResolvedCustomer, ResolveError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::build(Some(Gate::All(Semaphore::new(0))), Box::new(answer))
    }

    /// Like [`with`](Self::with), but each call waits until its own token is
    /// released with [`release_token`](Self::release_token), so answers can
    /// be released in any order.
    pub fn gated_per_token(
        answer: impl Fn(&str) -> Result<ResolvedCustomer, ResolveError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::build(Some(Gate::PerToken(Mutex::default())), Box::new(answer))
    }

    fn build(gate: Option<Gate>, answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            per_token: Mutex::new(HashMap::new()),
            started: Semaphore::new(0),
            gate,
            answer,
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn calls_for(&self, token: &str) -> usize {
        self.per_token
            .lock()
            .unwrap()
            .get(token)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `n` more calls have started.
    pub async fn wait_started(&self, n: u32) {
        self.started.acquire_many(n).await.unwrap().forget();
    }

    /// Lets `n` held calls answer.
    pub fn release(&self, n: usize) {
        match &self.gate {
            Some(Gate::All(gate)) => gate.add_permits(n),
            _ => panic!("release needs a resolver made by `gated`"),
        }
    }

    /// Lets the held call for `token` answer (and a later one, if it is
    /// already released before it starts).
    pub fn release_token(&self, token: &str) {
        match &self.gate {
            Some(Gate::PerToken(gates)) => Gate::of_token(gates, token).add_permits(1),
            _ => panic!("release_token needs a resolver made by `gated_per_token`"),
        }
    }
}

impl Resolver for TestResolver {
    async fn resolve(&self, token: &RegistrationToken) -> Result<ResolvedCustomer, ResolveError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self
            .per_token
            .lock()
            .unwrap()
            .entry(token.expose().to_owned())
            .or_default() += 1;
        self.started.add_permits(1);
        match &self.gate {
            Some(Gate::All(gate)) => gate.acquire().await.unwrap().forget(),
            Some(Gate::PerToken(gates)) => {
                let gate = Gate::of_token(gates, token.expose());
                gate.acquire().await.unwrap().forget();
            }
            None => {}
        }
        (self.answer)(token.expose())
    }
}

/// Holds every call of an inner resolver until released, counting the calls
/// that started.
pub struct Held<R> {
    inner: Arc<R>,
    pub started: Arc<Semaphore>,
    pub gate: Arc<Semaphore>,
}

impl<R> Held<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner: Arc::new(inner),
            started: Arc::new(Semaphore::new(0)),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

impl<R> Clone for Held<R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            started: Arc::clone(&self.started),
            gate: Arc::clone(&self.gate),
        }
    }
}

impl<R: Resolver> Resolver for Held<R> {
    async fn resolve(&self, token: &RegistrationToken) -> Result<ResolvedCustomer, ResolveError> {
        self.started.add_permits(1);
        self.gate.acquire().await.unwrap().forget();
        self.inner.resolve(token).await
    }
}

/// The customer a token stands for in these tests: every field is derived
/// from the token's SHA-256, so two tokens (even anagrams of each other) get
/// customers that differ in every field, and an answer handed to the wrong
/// buyer is caught. No field shows the token.
pub fn customer_for(token: &str) -> ResolvedCustomer {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    let high = u64::from_be_bytes(digest[..8].try_into().unwrap());
    let low = u64::from_be_bytes(digest[8..16].try_into().unwrap());
    ResolvedCustomer::new(format!("{:012}", high % 1_000_000_000_000), "prod-test")
        .with_customer_identifier(format!("cust-{low:016x}"))
        .with_license_arn(format!(
            "arn:aws:license-manager::111122223333:license:l-{high:016x}"
        ))
        .with_agreement_id(format!("agmt-{low:016x}"))
}

/// The token a recorded form body carries, decoded.
pub fn token_in(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(name, _)| name == tower_resolve_customer::TOKEN_FIELD)
        .map(|(_, value)| value.into_owned())
}

/// What the echo service saw.
#[derive(Default)]
pub struct Seen {
    pub calls: AtomicUsize,
    pub requests: Mutex<Vec<SeenRequest>>,
}

pub struct SeenRequest {
    pub customer: Option<ResolvedCustomer>,
    pub offer: Option<tower_resolve_customer::OfferType>,
    pub redemption: Option<tower_resolve_customer::Redemption>,
    pub entitlements: Option<tower_resolve_customer::Entitlements>,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

/// An inner service that records the customer, the body bytes and trailers it
/// receives, and answers 200 with the body echoed.
pub fn echo<B>(
    seen: Arc<Seen>,
) -> impl tower::Service<
    Request<RequestBody<B>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
where
    B: Body + Send + 'static,
    B::Error: std::fmt::Debug,
{
    tower::service_fn(move |request: Request<RequestBody<B>>| {
        let seen = Arc::clone(&seen);
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            let customer = request.extensions().get::<ResolvedCustomer>().cloned();
            let offer = request
                .extensions()
                .get::<tower_resolve_customer::OfferType>()
                .cloned();
            let redemption = request.extensions().get().copied();
            let entitlements = request.extensions().get().cloned();
            let collected = request.into_body().collect().await.expect("body");
            let trailers = collected.trailers().cloned();
            let body = collected.to_bytes();
            seen.requests.lock().unwrap().push(SeenRequest {
                customer,
                offer,
                redemption,
                entitlements,
                body: body.clone(),
                trailers,
            });
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        }
    })
}

/// A layer in front of [`echo`], and what the echo service saw.
///
/// Every [`send`](Self::send) layers a fresh `echo` over the same layer, so all
/// requests share the layer's cache and in-flight resolves, and all are
/// recorded in the same [`Seen`].
pub struct Harness {
    pub layer: ResolveCustomerLayer,
    pub seen: Arc<Seen>,
}

impl Harness {
    pub fn new(layer: ResolveCustomerLayer) -> Self {
        Self {
            layer,
            seen: Arc::default(),
        }
    }

    /// Sends `request` through the layer to a fresh `echo`. The service is
    /// made now and the returned future owns it, so it can be spawned.
    pub fn send<B>(
        &self,
        request: Request<B>,
    ) -> impl Future<Output = Response<ResponseBody<Full<Bytes>>>> + Send + use<B>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Debug,
    {
        let service = self.layer.layer(echo(Arc::clone(&self.seen)));
        async move { service.oneshot(request).await.unwrap() }
    }

    /// How many requests reached the echo service.
    pub fn handled(&self) -> usize {
        self.seen.calls.load(Ordering::SeqCst)
    }

    /// The requests the echo service received, in order.
    pub fn requests(&self) -> MutexGuard<'_, Vec<SeenRequest>> {
        self.seen.requests.lock().unwrap()
    }
}

/// A body made of given frames, optionally failing after them.
pub struct FrameBody {
    frames: VecDeque<Frame<Bytes>>,
    fail_at_end: bool,
    hang_at_end: bool,
    pub polled: Arc<AtomicUsize>,
}

impl FrameBody {
    pub fn new(frames: Vec<Frame<Bytes>>) -> Self {
        Self {
            frames: frames.into(),
            fail_at_end: false,
            hang_at_end: false,
            polled: Arc::default(),
        }
    }

    pub fn chunks(chunks: &[&[u8]]) -> Self {
        Self::new(
            chunks
                .iter()
                .map(|c| Frame::data(Bytes::copy_from_slice(c)))
                .collect(),
        )
    }

    /// Never ends after its frames (a slowloris client).
    pub fn hanging(mut self) -> Self {
        self.hang_at_end = true;
        self
    }

    pub fn failing(mut self) -> Self {
        self.fail_at_end = true;
        self
    }
}

#[derive(Debug)]
pub struct BodyFailed;
impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body failed")
    }
}
impl std::error::Error for BodyFailed {}

impl Body for FrameBody {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        self.polled.fetch_add(1, Ordering::SeqCst);
        match self.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None if self.fail_at_end => {
                self.fail_at_end = false;
                Poll::Ready(Some(Err(BodyFailed)))
            }
            None if self.hang_at_end => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

/// A form POST as AWS Marketplace's redirect sends it.
pub fn form_post(body: impl Into<String>) -> Request<String> {
    form_post_body(body.into())
}

/// A form POST to `/register` with any body type.
pub fn form_post_body<B>(body: B) -> Request<B> {
    Request::post("/register")
        .header(http::header::CONTENT_TYPE, FORM)
        .body(body)
        .unwrap()
}

/// The form POST carrying `token`: `form_post(form_with_token(token))`.
pub fn token_post(token: &str) -> Request<String> {
    form_post(form_with_token(token))
}

/// `x-amzn-marketplace-token=<token, urlencoded>`.
pub fn form_with_token(token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair(tower_resolve_customer::TOKEN_FIELD, token)
        .finish()
}

/// The response body as text.
pub async fn text<B: Body>(response: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A realistic token: 184 characters of standard base64 with `+`, `/` and `=`.
pub fn realistic_token(seed: u8) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s: String = (0..182u32)
        .map(|i| ALPHABET[((i * 7 + u32::from(seed) * 13) % 64) as usize] as char)
        .collect();
    s.push_str("==");
    s
}

/// A log writer that keeps everything written to it.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Captures everything logged on this thread, at the levels `filter`
    /// allows and with every span event, until the guard is dropped. The
    /// runtime must be single-threaded for spawned tasks' logs to be seen.
    pub fn logs(filter: &str) -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `0..n` in an order fixed by `seed` (a Fisher-Yates shuffle driven by a
/// xorshift generator): reproducible, and unrelated to arrival order.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

/// The longest a test waits for a single flight, a lease or an event to be
/// released before it counts the code under test as stuck.
pub const STUCK: std::time::Duration = std::time::Duration::from_secs(20);

/// `future`'s output, or a failure naming `what` if it takes longer than
/// [`STUCK`]: a single flight or a lease that a bug leaves unreleased fails
/// the test instead of hanging it.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STUCK, future)
        .await
        .unwrap_or_else(|_| panic!("stuck for {STUCK:?}: {what}"))
}

/// The test suite's own idea of a valid token, independent of the crate's
/// validator: RFC 9110 §11.2 `token68`
/// (`1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`), at most
/// `max_len` bytes.
pub fn is_token68(candidate: &str, max_len: usize) -> bool {
    static TOKEN68: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\A[A-Za-z0-9\-._~+/]+=*\z").unwrap());
    candidate.len() <= max_len && TOKEN68.is_match(candidate)
}

/// A test needs `service` (a binary `.ci/run` installs) and it is missing:
/// under `CI=true` the test fails, elsewhere it is skipped with a note.
pub fn missing_service(service: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{service} is required under CI=true (.ci/run installs it)"
    );
    eprintln!("skipping: {service} is not installed (required under CI=true)");
}

/// The emulator in single-use mode, with `tokens` fresh tokens registered to
/// [`customer_for`] each.
#[cfg(feature = "test-util")]
pub async fn single_use_emulator(
    tokens: usize,
) -> (
    tower_resolve_customer::emulator::MeteringEmulator,
    Vec<String>,
) {
    use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};
    let emulator = MeteringEmulator::start()
        .await
        .expect("the emulator starts");
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let tokens: Vec<String> = (0..tokens)
        .map(|_| MeteringEmulator::mint_token())
        .collect();
    for token in &tokens {
        emulator.register(token, customer_for(token));
    }
    (emulator, tokens)
}
