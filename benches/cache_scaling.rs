//! A cache hit's cost as the cache grows, and from two threads at once,
//! against the bare service.
//!
//! ```sh
//! cargo bench --bench cache_scaling
//! ```

mod common;

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

use tower_layer::Layer;
use tower_resolve_customer::{Resolutions, ResolveCustomerLayer, TokenSource};

/// The `i`th of the tokens a scaling run fills the cache with: 184
/// characters, like a real one.
fn filler_token(i: usize) -> String {
    format!("{i:0>182}==")
}

/// A header-source layer over resolutions holding `cached` customers (and
/// [`TOKEN`]'s).
fn filled(
    rt: &Runtime,
    cached: usize,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<tower_resolve_customer::ResponseBody<Full<Bytes>>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    let resolver = CountingResolver::new(Duration::ZERO);
    let layered = ResolveCustomerLayer::from_resolutions(
        Resolutions::builder(resolver.clone())
            .cache_capacity(cached as u64 + 10)
            .max_concurrent_resolves(1_000)
            .build(),
    )
    .token_source(TokenSource::header(HEADER))
    .layer(handler());
    rt.block_on(async {
        for batch in (0..cached).collect::<Vec<_>>().chunks(1_000) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|&i| tokio::spawn(layered.clone().oneshot(header_request(&filler_token(i)))))
                .collect();
            for task in tasks {
                let response = task.await.expect("task").expect("infallible");
                assert_eq!(response.status(), 200);
            }
        }
        layered
            .clone()
            .oneshot(header_request(TOKEN))
            .await
            .expect("warm up");
    });
    assert_eq!(resolver.calls.load(Ordering::Relaxed), cached + 1);
    layered
}

/// Whether criterion runs for timings (`cargo bench`) rather than once as a
/// test (`cargo test --benches`), where a million-entry fill is not worth
/// its time.
fn timing() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A cache hit's cost does not grow with what is cached: the header hit
/// with 10, 10,000 and 1,000,000 other customers cached.
fn header_hit_by_cache_size(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("cache_hit_header_by_cached_customers");
    let make = || header_request(TOKEN);
    bench_service(&mut group, &rt, "bare", handler(), make);
    let sizes: &[usize] = if timing() {
        &[10, 10_000, 1_000_000]
    } else {
        &[10, 10_000]
    };
    for &cached in sizes {
        let layered = filled(&rt, cached);
        bench_service(&mut group, &rt, &format!("layered_{cached}"), layered, make);
    }
    group.finish();
}

/// Two threads hitting the cache at once: both with one token (one entry,
/// one shard), or each with its own 1,000 tokens (distinct entries). The
/// time is per request, over both threads.
fn header_hit_two_threads(c: &mut Criterion) {
    const PER_THREAD: usize = 1_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("cache_hit_header_two_threads");
    let layered = filled(&rt, 2 * PER_THREAD);
    let tokens: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new((0..2 * PER_THREAD).map(filler_token).collect());
    for (name, distinct, bare) in [
        ("bare_same", false, true),
        ("layered_same", false, false),
        ("bare_distinct", true, true),
        ("layered_distinct", true, false),
    ] {
        let layered = layered.clone();
        let tokens = std::sync::Arc::clone(&tokens);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iterations| {
                let layered = layered.clone();
                let tokens = std::sync::Arc::clone(&tokens);
                async move {
                    let started = Instant::now();
                    let threads: Vec<_> = (0..2)
                        .map(|thread| {
                            let layered = layered.clone();
                            let tokens = std::sync::Arc::clone(&tokens);
                            tokio::spawn(async move {
                                for i in 0..iterations as usize {
                                    let token = if distinct {
                                        tokens[thread * PER_THREAD + i % PER_THREAD].as_str()
                                    } else {
                                        TOKEN
                                    };
                                    let request = header_request(token);
                                    let status = if bare {
                                        handler()
                                            .oneshot(request)
                                            .await
                                            .expect("infallible")
                                            .status()
                                    } else {
                                        layered
                                            .clone()
                                            .oneshot(request)
                                            .await
                                            .expect("infallible")
                                            .status()
                                    };
                                    assert_eq!(status, 200);
                                }
                            })
                        })
                        .collect();
                    for thread in threads {
                        thread.await.expect("thread");
                    }
                    // Per request: two ran at a time.
                    started.elapsed() / 2
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, header_hit_by_cache_size, header_hit_two_threads);
criterion_main!(benches);
