//! `ResolveCustomerLayer` in front of a tonic gRPC server.
//!
//! Calls carry the registration token in the `x-amzn-marketplace-token`
//! metadata. The layer sits in `tonic::transport::Server::builder().layer(..)`,
//! takes the token from that header and answers refused calls with
//! `grpc_status`: trailers-only gRPC responses (`UNAUTHENTICATED`,
//! `INVALID_ARGUMENT`, `PERMISSION_DENIED`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`)
//! that any gRPC client reads as a `Status`. The handler finds the
//! `ResolvedCustomer` in `request.extensions()`.
//!
//! No build script or `protoc`: the messages and glue are hand-written in
//! `service.rs`. Offline: the real SDK-backed resolver talks to the crate's
//! embedded Marketplace Metering emulator on 127.0.0.1, with a demo buyer
//! registered under a freshly minted token.
//!
//! ```sh
//! # Make a few calls with the example's own client, print them, and exit:
//! cargo run --example tonic_grpc --features grpc,test-util -- --demo
//! # Serve until Ctrl-C (the demo token is printed, e.g. for grpcurl):
//! cargo run --example tonic_grpc --features grpc,test-util -- --port 50051
//! ```

mod service;

use std::net::SocketAddr;

use clap::Parser;
use service::registration_client::RegistrationClient;
use tokio::net::TcpListener;
use tower_resolve_customer::emulator::MeteringEmulator;
use tower_resolve_customer::{Resolutions, ResolvedCustomer};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(about = "ResolveCustomerLayer in front of a tonic gRPC server")]
struct Args {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Make a few calls with the example's client, print them, and exit.
    #[arg(long)]
    demo: bool,
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
        ResolvedCustomer::new("123456789012", "prod-demo123")
            .with_license_arn("arn:aws:license-manager::123456789012:license:l-0123456789abcdef0"),
    );

    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;
    let layer = service::layer(Resolutions::new(emulator.resolver()))
        .allowed_product_codes(["prod-demo123"]);

    if args.demo {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(service::serve(listener, layer, async {
            let _ = stopped.await;
        }));
        demo(addr, &token).await?;
        println!(
            "ResolveCustomer calls for the demo token: {}, redemptions: {}",
            emulator.calls_for(&token),
            emulator.redemptions_of(&token),
        );
        let _ = stop.send(());
        server.await??;
        return Ok(());
    }

    println!("gRPC server listening on http://{addr} (Ctrl-C to stop)");
    println!(
        "Marketplace Metering emulator at {}",
        emulator.endpoint_url()
    );
    println!("Demo buyer's token (metadata `{}`):", service::TOKEN_HEADER);
    println!("  {token}");
    service::serve(listener, layer, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// A client making one good call, a repeat, and refused ones.
async fn demo(addr: SocketAddr, token: &str) -> Result<(), Error> {
    let mut client = RegistrationClient::connect(format!("http://{addr}")).await?;
    let calls = [
        ("with the demo token", Some(token.to_owned())),
        ("with the demo token again (cached)", Some(token.to_owned())),
        ("without a token", None),
        ("with a malformed token", Some("not a token".to_owned())),
        (
            "with an unknown token",
            Some(MeteringEmulator::mint_token()),
        ),
    ];
    for (what, token) in calls {
        let request = match &token {
            Some(token) => service::who_am_i_request(token),
            None => tonic::Request::new(service::WhoAmIRequest {}),
        };
        match client.who_am_i(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                println!(
                    "WhoAmI {what}: OK, account {}, product {}, license {}",
                    reply.customer_aws_account_id,
                    reply.product_code,
                    reply.license_arn.as_deref().unwrap_or("-"),
                );
            }
            Err(status) => println!("WhoAmI {what}: {:?}: {}", status.code(), status.message()),
        }
    }
    Ok(())
}
