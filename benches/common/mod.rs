//! Requests, handler and resolver shared by the benches.

#![allow(dead_code)]

pub mod floor;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt, service_fn};
use tower_resolve_customer::{RegistrationToken, ResolveError, ResolvedCustomer, Resolver};

pub use tower_resolve_customer::TOKEN_HEADER as HEADER;
pub const TOKEN: &str = "+tFn41ejk5vVEuXXa2T2mLcwLL5tFz5iUaR4fHV0oR8y6t2UhvTBYZlBKw8hz2LO4b/abcdEFGHijklMNOPqrstUVWXyz0123456789+/ABCDefghIJKLmnopQRSTuvwxYZ01234567890abcdefghijklmnopqrstuvwxyzABCDEFGHIJ==";

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The handler: reads the whole body, as a registration handler does.
pub fn handler<B>()
-> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    service_fn(|request: Request<B>| async move {
        let body = request
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
            body.len().to_string(),
        ))))
    })
}

/// Answers at once, or after `latency`, counting calls.
#[derive(Clone)]
pub struct CountingResolver {
    pub calls: Arc<AtomicUsize>,
    latency: Duration,
}

impl CountingResolver {
    pub fn new(latency: Duration) -> Self {
        Self {
            calls: Arc::default(),
            latency,
        }
    }
}

impl Resolver for CountingResolver {
    async fn resolve(&self, _token: &RegistrationToken) -> Result<ResolvedCustomer, ResolveError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(ResolvedCustomer::new("123456789012", "prod-bench"))
    }
}

/// A `GET /` with no token and no body: what the pass-through rows send.
pub fn plain_get() -> Request<Full<Bytes>> {
    Request::get("/")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// The middleware the layer is set next to for scale: tower-http's body
/// limit, which also wraps both bodies, at 64 KiB.
pub fn body_limit() -> tower_http::limit::RequestBodyLimitLayer {
    tower_http::limit::RequestBodyLimitLayer::new(64 * 1024)
}

/// The pass-through rows' layer: optional, looking in the form and then in
/// the token header, over a resolver never called.
pub fn pass_through_layer() -> tower_resolve_customer::ResolveCustomerLayer {
    use tower_resolve_customer::{ResolveCustomerLayer, TokenSource};
    ResolveCustomerLayer::new(CountingResolver::new(Duration::ZERO))
        .token_source(TokenSource::form().or(TokenSource::header(HEADER)))
        .optional()
}

pub fn header_request(token: &str) -> Request<Full<Bytes>> {
    Request::post("/register")
        .header(HEADER, token)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// The token in a header, among the twelve other headers a browser's
/// `fetch` from a single-page app sends.
pub fn browser_header_request(token: &str) -> Request<Full<Bytes>> {
    Request::post("/register")
        .header("host", "registration.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        )
        .header("accept", "application/json")
        .header("accept-language", "en-US,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .header("referer", "https://registration.example.com/register")
        .header("content-type", "application/json")
        .header(HEADER, token)
        .header("origin", "https://registration.example.com")
        .header("connection", "keep-alive")
        .header("sec-fetch-dest", "empty")
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-site", "same-origin")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// A 1 KiB urlencoded form whose token is the last field.
pub fn form_body() -> Bytes {
    let token_field = form_urlencoded::Serializer::new(String::new())
        .append_pair(tower_resolve_customer::TOKEN_FIELD, TOKEN)
        .finish();
    let mut body = String::new();
    let mut i = 0;
    while body.len() + token_field.len() + 1 < 1024 {
        let field = form_urlencoded::Serializer::new(String::new())
            .append_pair(&format!("field{i:02}"), "some value & more")
            .finish();
        body.push_str(&field);
        body.push('&');
        i += 1;
    }
    body.push_str(&token_field);
    assert!((1024..1060).contains(&body.len()), "{}", body.len());
    Bytes::from(body)
}

pub fn form_request(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("/register")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(body.clone()))
        .expect("request")
}

/// A browser's `Cookie` header: five unrelated cookies, then the token.
pub fn cookie_request(token: &str) -> Request<Full<Bytes>> {
    Request::post("/register")
        .header(
            http::header::COOKIE,
            format!(
                "_ga=GA1.2.1234567890.1700000000; session=0f3c9a7e5b2d4c1a8e6f; \
                 theme=dark; consent=\"analytics=1&ads=0\"; _gid=GA1.2.987654321.1700000000; \
                 registration={token}"
            ),
        )
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// Times `make()` requests through `service`, one at a time.
pub fn bench_service<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    service: S,
    make: impl Fn() -> Request<Full<Bytes>> + Copy,
) where
    S: Service<Request<Full<Bytes>>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            let service = service.clone();
            async move { service.oneshot(make()).await.expect("infallible") }
        })
    });
}
