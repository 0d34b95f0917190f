//! Shared harness of the fuzz targets: runs one request through a required
//! and an optional layer and checks what must hold for any input.

use std::cell::RefCell;
use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;
use tower_resolve_customer::{
    RegistrationToken, RequestBody, Resolutions, ResolveCustomerLayer, ResolvedCustomer,
    TokenSource,
};

/// The token length limit of the layers under test.
pub const MAX_TOKEN_LEN: usize = 512;
/// The fuzz targets' own idea of a valid token, independent of the crate's
/// validator: RFC 9110 §11.2 `token68`, at most [`MAX_TOKEN_LEN`] bytes.
fn is_token68(candidate: &str) -> bool {
    static TOKEN68: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\A[A-Za-z0-9\-._~+/]+=*\z").unwrap());
    candidate.len() <= MAX_TOKEN_LEN && TOKEN68.is_match(candidate)
}

/// The form body limit of the layers under test.
pub const MAX_BODY_BYTES: usize = 4096;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    /// Every token the resolver was asked about during the current input.
    static RESOLVED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn layer(source: TokenSource, required: bool) -> ResolveCustomerLayer {
    let resolutions = Resolutions::builder(|token: RegistrationToken| async move {
        RESOLVED.with(|r| r.borrow_mut().push(token.expose().to_owned()));
        Ok(ResolvedCustomer::new("123456789012", "prod-fuzz"))
    })
    // Each input stands alone: nothing is remembered between inputs.
    .cache_capacity(0)
    .negative_cache_capacity(0)
    .build();
    let layer = ResolveCustomerLayer::from_resolutions(resolutions)
        .token_source(source)
        .max_token_len(MAX_TOKEN_LEN)
        .max_body_bytes(MAX_BODY_BYTES);
    if required {
        layer.required()
    } else {
        layer.optional()
    }
}

/// What the handler saw: the body, and whether a customer was attached.
async fn handler(
    request: Request<RequestBody<Full<Bytes>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let customer = request.extensions().get::<ResolvedCustomer>().is_some();
    let body = request
        .into_body()
        .collect()
        .await
        .expect("replayed body")
        .to_bytes();
    let mut response = Response::new(Full::new(body));
    if customer {
        response
            .headers_mut()
            .insert("x-customer", http::HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// Any bytes as header values: split on NUL, values `http` refuses dropped.
pub fn header_values(data: &[u8]) -> Vec<http::HeaderValue> {
    data.split(|&b| b == 0)
        .filter_map(|v| http::HeaderValue::from_bytes(v).ok())
        .collect()
}

/// A request to the registration route carrying `values` under `name`.
pub fn with_headers(name: http::HeaderName, values: &[http::HeaderValue]) -> Request<Full<Bytes>> {
    let mut request = Request::post("/register")
        .body(Full::new(Bytes::new()))
        .unwrap();
    for value in values {
        request.headers_mut().append(name.clone(), value.clone());
    }
    request
}

/// Sends `make()` through a required and an optional layer reading `source`,
/// and checks: no panic; only 200, 400 or 413; the resolver only ever sees
/// valid tokens; a request that reaches the handler carries its body exactly
/// as sent (and, in required mode, a customer).
pub fn check(source: TokenSource, make: impl Fn() -> Request<Full<Bytes>>) {
    let sent = RUNTIME
        .with(|rt| rt.block_on(async { make().into_body().collect().await.unwrap().to_bytes() }));
    for required in [true, false] {
        RESOLVED.with(|r| r.borrow_mut().clear());
        let service = layer(source.clone(), required).layer(service_fn(handler));
        let response = RUNTIME
            .with(|rt| rt.block_on(service.oneshot(make())))
            .unwrap();
        let status = response.status().as_u16();
        assert!(matches!(status, 200 | 400 | 413), "status {status}");
        for token in RESOLVED.with(|r| r.borrow().clone()) {
            assert!(
                is_token68(&token),
                "the resolver was given an invalid token"
            );
        }
        if status == 200 {
            let customer = response.headers().contains_key("x-customer");
            assert!(
                customer || !required,
                "required mode passed a request without a customer"
            );
            let body = RUNTIME
                .with(|rt| rt.block_on(response.into_body().collect()))
                .unwrap()
                .to_bytes();
            assert_eq!(body, sent, "the handler saw a different body");
        } else {
            assert!(RESOLVED.with(|r| r.borrow().len()) <= 1);
        }
    }
}
