//! The server `benches/e2e.sh` loads: an axum app on 127.0.0.1, with or without
//! `ResolveCustomerLayer` (header token, an instant in-process resolver), so the
//! two can be compared under the same load generator. `--body-limit` applies
//! tower-http's `RequestBodyLimitLayer` instead: a familiar, minimal middleware
//! that also wraps the request and response bodies, for scale.
//!
//! ```sh
//! cargo run --release --example bench_server -- --port 8080            # bare
//! cargo run --release --example bench_server -- --port 8081 --layered   # with the layer
//! cargo run --release --example bench_server -- --port 8082 --body-limit  # tower-http limit
//! ```
//!
//! `--worker-threads N` sets the runtime's worker threads (default: one per
//! CPU).
//!
//! `--floor` puts a hand-written middleware in front instead: only the work
//! any layer must do to hand a handler a cached customer from a token header
//! (find the header, take its keyed 128-bit hash, read the clock, look the
//! key up under a read lock, insert the customer and its `Redemption` into
//! the request's extensions), with no body wrappers, no rejections and no
//! configuration. It bounds from below what `ResolveCustomerLayer` can cost
//! on this path. `--floor-one-extension` inserts the customer only.

use axum::Router;
use axum::routing::get;
use tower_resolve_customer::{
    RegistrationToken, ResolveCustomerLayer, ResolvedCustomer, TOKEN_HEADER, TokenSource,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 0u16;
    let mut layered = false;
    let mut body_limit = false;
    let mut floor = None;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            "--layered" => layered = true,
            "--body-limit" => body_limit = true,
            "--floor" => floor = Some(floor::Extensions::CustomerAndRedemption),
            "--floor-one-extension" => floor = Some(floor::Extensions::CustomerOnly),
            "--worker-threads" => {
                runtime.worker_threads(
                    args.next()
                        .ok_or("--worker-threads needs a value")?
                        .parse()?,
                );
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    runtime
        .enable_all()
        .build()?
        .block_on(serve(port, layered, body_limit, floor))
}

async fn serve(
    port: u16,
    layered: bool,
    body_limit: bool,
    floor: Option<floor::Extensions>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut app = Router::new().route("/", get(|| async { "ok" }));
    if layered {
        app = app.layer(
            ResolveCustomerLayer::new(|_: RegistrationToken| async {
                Ok(ResolvedCustomer::new("123456789012", "prod-bench"))
            })
            .token_source(TokenSource::header(TOKEN_HEADER)),
        );
    }
    if body_limit {
        app = app.layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024));
    }
    if let Some(extensions) = floor {
        let token = std::env::var("E2E_TOKEN").unwrap_or_default();
        app = app.layer(floor::FloorLayer::new(extensions, &token));
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "listening on http://{} (layered: {layered}, body limit: {body_limit}, floor: {floor:?})",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

#[path = "../benches/common/floor.rs"]
mod floor;
