//! Heap allocations per request on each path, bare and layered, counted by
//! a global allocator.
//!
//! ```sh
//! cargo bench --bench allocations
//! ```
//!
//! Each path runs 10,000 requests (100 under `cargo test --benches`) one at
//! a time on a current-thread runtime, after a warm-up, and reports the
//! allocations (and reallocations) counted per request, for the bare
//! service and through the layer; the difference is the layer's.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_resolve_customer::{Resolutions, ResolveCustomerLayer, ResponseBody, TokenSource};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator, only counting calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations per request for `requests` made by `make` through `service`.
async fn per_request<S, B>(
    service: S,
    requests: usize,
    make: impl Fn(usize) -> Request<Full<Bytes>>,
) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
{
    for i in 0..100 {
        service.clone().oneshot(make(i)).await.expect("infallible");
    }
    // The request itself is built outside the count.
    let built: Vec<_> = (0..requests).map(&make).collect();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for request in built {
        let response = service.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), 200);
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / requests as f64
}

type Layered = ResponseBody<Full<Bytes>>;

fn layered(
    source: TokenSource,
    optional: bool,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Layered>, Error = Infallible, Future: Send>
+ Clone {
    let resolutions = Resolutions::builder(CountingResolver::new(Duration::ZERO))
        .cache_capacity(1_000_000)
        .build();
    let layer = ResolveCustomerLayer::from_resolutions(resolutions).token_source(source);
    let layer = if optional { layer.optional() } else { layer };
    layer.layer(handler())
}

fn main() {
    let requests = if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        100
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let form = |_| form_request(BODY.get_or_init(form_body));
    let get = |_| plain_get();
    static MISSES: AtomicUsize = AtomicUsize::new(0);
    let fresh_token = |_| {
        header_request(&format!(
            "{:0>182}==",
            MISSES.fetch_add(1, Ordering::Relaxed)
        ))
    };
    rt.block_on(async {
        let rows = [
            (
                "pass-through, no token (optional layer)",
                per_request(handler(), requests, get).await,
                per_request(
                    layered(TokenSource::form().or(TokenSource::header(HEADER)), true),
                    requests,
                    get,
                )
                .await,
            ),
            (
                "cache hit, token in a header",
                per_request(handler(), requests, |_| header_request(TOKEN)).await,
                per_request(
                    layered(TokenSource::header(HEADER), false),
                    requests,
                    |_| header_request(TOKEN),
                )
                .await,
            ),
            (
                "cache hit, token in a cookie",
                per_request(handler(), requests, |_| cookie_request(TOKEN)).await,
                per_request(
                    layered(TokenSource::cookie("registration"), false),
                    requests,
                    |_| cookie_request(TOKEN),
                )
                .await,
            ),
            (
                "cache hit, 1 KiB form",
                per_request(handler(), requests, form).await,
                per_request(layered(TokenSource::form(), false), requests, form).await,
            ),
            (
                "cache miss, new token, instant resolver",
                per_request(handler(), requests, fresh_token).await,
                per_request(
                    layered(TokenSource::header(HEADER), false),
                    requests,
                    fresh_token,
                )
                .await,
            ),
        ];
        println!("allocations per request ({requests} requests each)");
        println!("| path | bare | layered | added |");
        println!("|---|---|---|---|");
        for (path, bare, layered) in rows {
            println!(
                "| {path} | {bare:.1} | {layered:.1} | {:+.1} |",
                layered - bare
            );
        }
    });
}
