//! `ResolveCustomerLayer` in front of a plain hyper 1 service, no framework.
//!
//! The handler is a `tower::service_fn`; `tower::ServiceBuilder` puts the layer
//! in front of it, and `hyper_util::service::TowerToHyperService` hands the
//! result to hyper's connection builder (HTTP/1.1, or HTTP/2 with prior
//! knowledge). The token is taken from the Marketplace form post or from an
//! `x-amzn-marketplace-token` header; forms are read up to 1 KiB.
//!
//! Offline: tokens are redeemed by the real SDK-backed resolver against the
//! crate's embedded Marketplace Metering emulator on 127.0.0.1, with a demo
//! buyer registered under a freshly minted token (printed at start-up, with
//! `curl` commands that use it).
//!
//! ```sh
//! cargo run --example hyper_service --features test-util
//! cargo run --example hyper_service --features test-util -- --port 3000
//! ```

mod server;

use clap::Parser;
use tower_resolve_customer::ResolvedCustomer;
use tower_resolve_customer::emulator::MeteringEmulator;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(about = "ResolveCustomerLayer in front of a plain hyper service")]
struct Args {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The largest form body read to find the token.
    #[arg(long, default_value_t = 1024)]
    max_body_bytes: usize,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    // The SDK logs signed requests, token included, at TRACE: keep it quiet.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn"))
        .add_directive("aws_smithy_runtime=info".parse()?)
        .add_directive("aws_sigv4=info".parse()?);
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let emulator = MeteringEmulator::start().await?;
    let token = MeteringEmulator::mint_token();
    emulator.register(
        &token,
        ResolvedCustomer::new("123456789012", "prod-demo123"),
    );

    let (listener, addr) = server::bind(args.port).await?;
    let url = format!("http://{addr}{}", server::REGISTER_PATH);
    println!("Listening on {url} (Ctrl-C to stop)");
    println!(
        "Marketplace Metering emulator at {}",
        emulator.endpoint_url()
    );
    println!("Try, with the demo buyer's emulator token:");
    println!("  curl -i --data-urlencode 'x-amzn-marketplace-token={token}' {url}");
    println!(
        "  curl -i -H '{}: {token}' {url}",
        server::TOKEN_HEADER.as_str()
    );
    println!("  curl -i -X POST {url}    # no token: 400 problem+json");

    server::serve(
        listener,
        server::layer(emulator.resolver(), args.max_body_bytes),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await?;
    println!(
        "Stopped; the demo token was redeemed {} time(s).",
        emulator.redemptions_of(&token)
    );
    Ok(())
}
