//! Bare and layered, alternated: the same three paths as criterion groups 1,
//! 2 and 3 of `benches/layer.rs` (pass-through, header hit, 1 KiB form hit),
//! each timed in rounds that run a block of bare requests and a block of
//! layered ones back to back (their order swapped every round), and reported
//! as the median of the per-round differences.
//!
//! Criterion times the bare service and then the layered one, seconds apart:
//! on a shared VM a slow spell that falls on one of the two moves the added
//! cost by ±10–20 ns. Pairing each layered block with a bare block a few
//! milliseconds away cancels that drift.
//!
//! ```sh
//! cargo bench --bench paired           # 31 rounds of 100,000 requests per side
//! cargo bench --bench paired -- form   # only the rows whose name holds "form"
//! ```

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_resolve_customer::{ResolveCustomerLayer, TokenSource};

/// Nanoseconds per request over `n` requests through clones of `service`.
async fn per_request<S, B>(service: &S, make: impl Fn() -> Request<Full<Bytes>>, n: u32) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = std::convert::Infallible>
        + Clone,
    B: Body,
{
    let started = Instant::now();
    for _ in 0..n {
        let response = service.clone().oneshot(make()).await.expect("infallible");
        std::hint::black_box(response);
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

/// Whether the row `name` is wanted: all, or those holding the first
/// argument that is not a flag.
fn wanted(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .is_none_or(|only| name.contains(&only))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One row: the medians of the bare and layered blocks (`layered`: the
/// layer, or a middleware it is compared with) and of their per-round
/// differences, and the middle half of the differences.
async fn row<S1, S2, B1, B2>(
    name: &str,
    bare: S1,
    layered: S2,
    make: impl Fn() -> Request<Full<Bytes>> + Copy,
    rounds: usize,
    block: u32,
) where
    S1: Service<Request<Full<Bytes>>, Response = Response<B1>, Error = std::convert::Infallible>
        + Clone,
    S2: Service<Request<Full<Bytes>>, Response = Response<B2>, Error = std::convert::Infallible>
        + Clone,
    B1: Body,
    B2: Body,
{
    if !wanted(name) {
        return;
    }
    // Warm both: caches, allocator, branch predictors.
    per_request(&bare, make, block).await;
    per_request(&layered, make, block).await;
    let (mut bares, mut layereds, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (b, l) = if round % 2 == 0 {
            let b = per_request(&bare, make, block).await;
            (b, per_request(&layered, make, block).await)
        } else {
            let l = per_request(&layered, make, block).await;
            (per_request(&bare, make, block).await, l)
        };
        bares.push(b);
        layereds.push(l);
        added.push(l - b);
    }
    let middle = median(&mut added);
    let (low, high) = (added[rounds / 4], added[rounds * 3 / 4]);
    println!(
        "| {name} | {:.0} ns | {:.0} ns | **{middle:+.0} ns** | {low:+.0} to {high:+.0} ns |",
        median(&mut bares),
        median(&mut layereds),
    );
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    // In `cargo test --benches`: a smoke run.
    let (rounds, block) = if benching { (31, 100_000) } else { (3, 100) };
    let rt = runtime();
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let header = || header_request(TOKEN);
    let form = || form_request(BODY.get_or_init(form_body));

    println!("{rounds} rounds of {block} requests per side, bare and layered alternated");
    println!("| Path | Bare | Middleware | Added (median) | Added (middle half) |");
    println!("|---|---|---|---|---|");
    rt.block_on(async {
        let pass_through = pass_through_layer().layer(handler());
        row(
            "pass-through, no token",
            handler(),
            pass_through,
            plain_get,
            rounds,
            block,
        )
        .await;
        // For scale, as in `benches/layer.rs`: tower-http's body limit
        // (wraps both bodies, no shared state) and the floor (shared state,
        // wraps nothing).
        row(
            "pass-through, no token: body limit",
            handler(),
            body_limit().layer(handler()),
            plain_get,
            rounds,
            block,
        )
        .await;
        let floor = floor::FloorLayer::new(floor::Extensions::CustomerAndRedemption, TOKEN);
        row(
            "pass-through, no token: floor",
            handler(),
            floor.layer(handler()),
            plain_get,
            rounds,
            block,
        )
        .await;
        row(
            "cache hit, header: floor",
            handler(),
            floor.layer(handler()),
            header,
            rounds,
            block,
        )
        .await;
        for (name, source, make) in [
            (
                "cache hit, header",
                TokenSource::header(HEADER),
                header as fn() -> _,
            ),
            ("cache hit, 1 KiB form", TokenSource::form(), form),
        ] {
            let resolver = CountingResolver::new(Duration::ZERO);
            let layered = ResolveCustomerLayer::new(resolver.clone())
                .token_source(source)
                .layer(handler());
            layered.clone().oneshot(make()).await.expect("warm up");
            row(name, handler(), layered, make, rounds, block).await;
            assert_eq!(resolver.calls.load(Ordering::Relaxed), 1, "{name}");
        }
    });
}
