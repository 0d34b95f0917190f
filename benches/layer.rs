//! The layer's cost against the bare service, side by side in each group.
//!
//! ```sh
//! cargo bench --bench layer
//! ```

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_resolve_customer::{Resolutions, ResolveCustomerLayer, TokenSource};

fn pass_through(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("1_pass_through_no_token");
    let make = plain_get;
    bench_service(&mut group, &rt, "bare", handler(), make);
    let layered = pass_through_layer().layer(handler());
    bench_service(&mut group, &rt, "layered", layered, make);
    // For scale: a familiar middleware that also wraps both bodies.
    let limited = body_limit().layer(handler());
    bench_service(&mut group, &rt, "body_limit", limited, make);
    // And one with shared state that wraps nothing (see `common/floor.rs`).
    let floor = floor::FloorLayer::new(floor::Extensions::CustomerAndRedemption, TOKEN);
    bench_service(&mut group, &rt, "floor", floor.layer(handler()), make);
    group.finish();
}

/// A cache hit with the token where `source` looks, against the bare
/// service; the resolver is called once, to warm the cache.
fn cache_hit(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    source: TokenSource,
    make: impl Fn() -> Request<Full<Bytes>> + Copy,
) {
    let rt = runtime();
    bench_service(group, &rt, "bare", handler(), make);
    let resolver = CountingResolver::new(Duration::ZERO);
    let layered = ResolveCustomerLayer::new(resolver.clone())
        .token_source(source)
        .layer(handler());
    rt.block_on(layered.clone().oneshot(make()))
        .expect("warm up");
    bench_service(group, &rt, "layered", layered, make);
    assert_eq!(resolver.calls.load(Ordering::Relaxed), 1);
}

fn header_cache_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("2_cache_hit_header");
    cache_hit(&mut group, TokenSource::header(HEADER), || {
        header_request(TOKEN)
    });
    // The least any middleware can do here (see `common/floor.rs`).
    let rt = runtime();
    for (name, extensions) in [
        ("floor", floor::Extensions::CustomerAndRedemption),
        ("floor_one_extension", floor::Extensions::CustomerOnly),
    ] {
        let service = floor::FloorLayer::new(extensions, TOKEN).layer(handler());
        bench_service(&mut group, &rt, name, service, || header_request(TOKEN));
    }
    #[cfg(feature = "test-util")]
    header_cache_hit_with_store(&mut group, &rt);
    group.finish();
}

/// The header hit with a shared store configured (with `--features
/// test-util`, which brings `MemoryStore`): the same path, and no store
/// round trip.
#[cfg(feature = "test-util")]
fn header_cache_hit_with_store(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
) {
    let store = tower_resolve_customer::MemoryStore::new();
    let resolutions = Resolutions::builder(CountingResolver::new(Duration::ZERO))
        .store(store.link())
        .build();
    let layered = resolutions
        .layer()
        .token_source(TokenSource::header(HEADER))
        .layer(handler());
    rt.block_on(async {
        layered
            .clone()
            .oneshot(header_request(TOKEN))
            .await
            .expect("warm up");
        // The run publishes and releases after it answered.
        while resolutions.stats().store_lookups > 0 {
            tokio::task::yield_now().await;
        }
    });
    let calls = store.total_calls();
    bench_service(group, rt, "layered_with_store", layered, || {
        header_request(TOKEN)
    });
    assert_eq!(
        store.total_calls(),
        calls,
        "a cache hit makes no store round trip"
    );
}

fn browser_header_cache_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("2c_cache_hit_header_among_browser_headers");
    cache_hit(&mut group, TokenSource::header(HEADER), || {
        browser_header_request(TOKEN)
    });
    group.finish();
}

fn cookie_cache_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("2b_cache_hit_cookie");
    cache_hit(&mut group, TokenSource::cookie("registration"), || {
        cookie_request(TOKEN)
    });
    group.finish();
}

fn form_cache_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("3_cache_hit_form_1kib");
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let make = || form_request(BODY.get_or_init(form_body));
    group.throughput(Throughput::Bytes(
        make().body().size_hint().exact().unwrap_or(0),
    ));
    cache_hit(&mut group, TokenSource::form(), make);
    group.finish();
}

fn cache_miss(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("4_cache_miss_instant_resolver");
    static N: AtomicUsize = AtomicUsize::new(0);
    let make = || header_request(&format!("token{}", N.fetch_add(1, Ordering::Relaxed)));
    bench_service(&mut group, &rt, "bare", handler(), make);
    let layered = ResolveCustomerLayer::from_resolutions(
        Resolutions::builder(CountingResolver::new(Duration::ZERO))
            .cache_capacity(100_000)
            .build(),
    )
    .token_source(TokenSource::header(HEADER))
    .layer(handler());
    bench_service(&mut group, &rt, "layered", layered, make);
    group.finish();
}

/// `n` concurrent requests with the same token through `service`, each in a
/// task of its own, all answered 200.
async fn burst_of<S>(service: &S, n: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<BurstBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(service.clone().oneshot(header_request(TOKEN))))
        .collect();
    for task in tasks {
        let response = task.await.expect("task").expect("infallible");
        assert_eq!(response.status(), 200);
    }
}

type BurstBody = tower_resolve_customer::ResponseBody<Full<Bytes>>;

/// `cold`: a fresh layer per burst, so every burst starts with a miss and waits
/// for one 50 ms resolve. `warm`: the same burst against a layer that already
/// holds the answer, which measures spawning and answering `n` requests alone.
fn burst(c: &mut Criterion) {
    let rt = runtime();
    let latency = Duration::from_millis(50);
    let mut group = c.benchmark_group("5_burst_same_token_50ms_resolver");
    group.sample_size(10);
    let layer = |resolver: &CountingResolver| {
        ResolveCustomerLayer::new(resolver.clone())
            .token_source(TokenSource::header(HEADER))
            .layer(handler())
    };
    for n in [10usize, 100, 1_000, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("cold", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iterations| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let resolver = CountingResolver::new(latency);
                    let service = layer(&resolver);
                    let started = Instant::now();
                    burst_of(&service, n).await;
                    total += started.elapsed();
                    let calls = resolver.calls.load(Ordering::Relaxed);
                    assert_eq!(calls, 1, "one upstream call");
                }
                total
            })
        });
        let resolver = CountingResolver::new(latency);
        let warm = layer(&resolver);
        rt.block_on(burst_of(&warm, 1));
        group.bench_with_input(BenchmarkId::new("warm", n), &n, |b, &n| {
            b.to_async(&rt).iter(|| burst_of(&warm, n))
        });
        assert_eq!(
            resolver.calls.load(Ordering::Relaxed),
            1,
            "one upstream call"
        );
    }
    group.finish();
}

fn distinct_tokens(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("6_distinct_tokens_1ms_resolver");
    group.sample_size(10);
    const BATCH: usize = 1_000;
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| distinct_batch(handler(), BATCH))
    });
    // A concurrency bound that admits the whole batch: every request is a
    // miss that goes upstream (after 1 ms), none is refused as `overloaded`.
    let resolver = CountingResolver::new(Duration::from_millis(1));
    let layered = ResolveCustomerLayer::from_resolutions(
        Resolutions::builder(resolver.clone())
            .cache_capacity(1_000_000)
            .max_concurrent_resolves(BATCH)
            .build(),
    )
    .token_source(TokenSource::header(HEADER))
    .layer(handler());
    let before = resolver.calls.load(Ordering::Relaxed);
    let mut batches = 0;
    group.bench_function("layered", |b| {
        b.to_async(&rt).iter(|| {
            batches += 1;
            distinct_batch(layered.clone(), BATCH)
        })
    });
    group.finish();
    assert_eq!(
        resolver.calls.load(Ordering::Relaxed) - before,
        batches * BATCH,
        "every request went upstream once"
    );
}

/// `n` concurrent requests, each with a token never seen before, through
/// `service`; every one must be answered 200.
async fn distinct_batch<S, B>(service: S, n: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    static N: AtomicUsize = AtomicUsize::new(0);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let token = format!("distinct{}", N.fetch_add(1, Ordering::Relaxed));
            tokio::spawn(service.clone().oneshot(header_request(&token)))
        })
        .collect();
    for task in tasks {
        let response = task.await.expect("task").expect("infallible");
        assert_eq!(response.status(), 200, "a request was refused");
    }
}

criterion_group!(
    benches,
    pass_through,
    header_cache_hit,
    cookie_cache_hit,
    browser_header_cache_hit,
    form_cache_hit,
    cache_miss,
    burst,
    distinct_tokens
);
criterion_main!(benches);
