//! Instructions per request on the hot paths, counted by Valgrind's
//! cachegrind: bare, layered, and the comparisons of `benches/layer.rs`
//! (tower-http's body limit on pass-through, the floor on a header hit).
//!
//! ```sh
//! cargo bench --bench instructions
//! ```
//!
//! Timings on a shared VM swing by ±10–20 % between runs; instruction
//! counts do not. Each row runs its path twice under
//! `valgrind --tool=cachegrind --cache-sim=no`, with 2,000 and 12,000
//! requests after a warm-up, and reports the difference divided by 10,000:
//! the count per request, free of start-up and warm-up. The requests are
//! made one at a time on a current-thread runtime, each through a fresh
//! clone of the service, as axum makes them. Under `cargo test --benches`
//! (or without `valgrind`) each path runs natively once, as a smoke test.

mod common;

use std::convert::Infallible;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_resolve_customer::{ResolveCustomerLayer, TokenSource};

/// The rows: the path, and the service on it.
const ROWS: [(&str, &str); 8] = [
    ("pass-through", "bare"),
    ("pass-through", "layered"),
    ("pass-through", "body_limit"),
    ("pass-through", "floor"),
    ("header hit", "bare"),
    ("header hit", "layered"),
    ("header hit", "floor"),
    ("header hit", "floor_one_extension"),
];

async fn run<S, B>(service: S, requests: usize, make: impl Fn() -> Request<Full<Bytes>>)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
{
    for _ in 0..requests {
        let response = service.clone().oneshot(make()).await.expect("infallible");
        assert_eq!(response.status(), 200);
    }
}

/// Runs `requests` requests of one row, after 1,000 to warm up.
fn run_row(path: &str, variant: &str, requests: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let header = || header_request(TOKEN);
        let layered = ResolveCustomerLayer::new(CountingResolver::new(Duration::ZERO))
            .token_source(TokenSource::header(HEADER))
            .layer(handler());
        for requests in [1_000, requests] {
            match (path, variant) {
                ("pass-through", "bare") => run(handler(), requests, plain_get).await,
                ("pass-through", "layered") => {
                    run(pass_through_layer().layer(handler()), requests, plain_get).await
                }
                ("pass-through", "body_limit") => {
                    run(body_limit().layer(handler()), requests, plain_get).await
                }
                ("header hit", "bare") => run(handler(), requests, header).await,
                ("header hit", "layered") => run(layered.clone(), requests, header).await,
                (path, floor) => {
                    let extensions = match floor {
                        "floor" => floor::Extensions::CustomerAndRedemption,
                        "floor_one_extension" => floor::Extensions::CustomerOnly,
                        _ => panic!("no row {path}/{variant}"),
                    };
                    let service = floor::FloorLayer::new(extensions, TOKEN).layer(handler());
                    match path {
                        "pass-through" => run(service, requests, plain_get).await,
                        _ => run(service, requests, header).await,
                    }
                }
            }
        }
    });
}

/// The instructions cachegrind counts for one run of a row.
fn instructions(path: &str, variant: &str, requests: usize) -> u64 {
    let exe = std::env::current_exe().expect("current exe");
    let output = Command::new("valgrind")
        .args([
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(exe)
        .args(["--row", path, variant, &requests.to_string()])
        .output()
        .expect("valgrind");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "valgrind failed: {stderr}");
    stderr
        .lines()
        .find_map(|line| {
            let (_, count) = line.split_once("I   refs:")?;
            count.trim().replace(',', "").parse().ok()
        })
        .unwrap_or_else(|| panic!("no instruction count in: {stderr}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, path, variant, requests] = &args[..]
        && flag == "--row"
    {
        run_row(path, variant, requests.parse().expect("a request count"));
        return;
    }
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    if !args.iter().any(|a| a == "--bench") || !valgrind {
        if !valgrind {
            println!("valgrind not found: each path runs once, natively, uncounted");
        }
        for (path, variant) in ROWS {
            run_row(path, variant, 100);
        }
        return;
    }
    println!("instructions per request (cachegrind, 12,000 minus 2,000 requests)");
    println!("| path | middleware | instructions | added over bare |");
    println!("|---|---|---|---|");
    let mut bare = 0.0;
    for (path, variant) in ROWS {
        let count =
            instructions(path, variant, 12_000) as f64 - instructions(path, variant, 2_000) as f64;
        let per_request = count / 10_000.0;
        if variant == "bare" {
            bare = per_request;
        }
        println!(
            "| {path} | {variant} | {per_request:.0} | {:+.0} |",
            per_request - bare
        );
    }
}
