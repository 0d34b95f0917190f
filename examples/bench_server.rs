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

use axum::Router;
use axum::routing::get;
use tower_resolve_customer::{
    RegistrationToken, ResolveCustomerLayer, ResolvedCustomer, TOKEN_HEADER, TokenSource,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 0u16;
    let mut layered = false;
    let mut body_limit = false;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            "--layered" => layered = true,
            "--body-limit" => body_limit = true,
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
        .block_on(serve(port, layered, body_limit))
}

async fn serve(
    port: u16,
    layered: bool,
    body_limit: bool,
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
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "listening on http://{} (layered: {layered}, body limit: {body_limit})",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
