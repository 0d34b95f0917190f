//! `marketplace-emulator`: the crate's AWS Marketplace Metering emulator as a
//! standalone server, for sellers testing in any language (feature
//! `emulator-server`).
//!
//! ```sh
//! cargo install tower-resolve-customer --features emulator-server --bin marketplace-emulator
//! marketplace-emulator --policy single-use
//! ```
//!
//! Point an SDK or the AWS CLI at the printed endpoint
//! (`AWS_ENDPOINT_URL_MARKETPLACE_METERING`), with any credentials and
//! region; register tokens with the admin API (`POST /_emulator/tokens`) or
//! `--tokens FILE`. See the README's "Testing without AWS".

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tower_resolve_customer::ResolvedCustomer;
use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};

/// The default port: fixed, so that configuration written once keeps working.
const DEFAULT_PORT: u16 = 4599;

#[derive(Parser)]
#[command(
    name = "marketplace-emulator",
    version,
    about = "A local AWS Marketplace Metering API (ResolveCustomer) for testing SaaS registration in any language"
)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The port to listen on (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// How often a token may be redeemed.
    #[arg(long, value_enum, default_value_t = Policy::Reusable)]
    policy: Policy,
    /// A JSON file of tokens to register at start: an array of objects with
    /// the fields of `POST /_emulator/tokens`.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// An access key and its secret to accept (repeatable). Once given, other
    /// keys get InvalidClientTokenId and signatures are verified; without,
    /// any well-formed signature is accepted.
    #[arg(long, value_name = "ACCESS_KEY:SECRET", value_parser = credentials)]
    credentials: Vec<(String, String)>,
    /// Serves HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_certificate: Option<PathBuf>,
    /// The private key (PEM) of --tls-certificate.
    #[arg(long, value_name = "FILE", requires = "tls_certificate")]
    tls_key: Option<PathBuf>,
}

fn credentials(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((key, secret)) if !key.is_empty() && !secret.is_empty() => {
            Ok((key.to_owned(), secret.to_owned()))
        }
        _ => Err("expected ACCESS_KEY:SECRET".to_owned()),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    /// Every redemption until the token expires succeeds (the seller guide).
    Reusable,
    /// The first redemption succeeds, later ones get ExpiredTokenException
    /// (the API reference).
    SingleUse,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("marketplace-emulator: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = shutdown_signal()?;
    let addr = SocketAddr::new(args.host, args.port);
    let emulator = match (&args.tls_certificate, &args.tls_key) {
        (Some(certificate), Some(key)) => {
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
            };
            MeteringEmulator::bind_tls(addr, &read(certificate)?, &read(key)?).await
        }
        _ => MeteringEmulator::bind(addr).await,
    }
    .map_err(|e| format!("cannot serve on {addr}: {e}"))?;
    emulator.set_policy(match args.policy {
        Policy::Reusable => RedemptionPolicy::ReusableUntilExpiry,
        Policy::SingleUse => RedemptionPolicy::SingleUse,
    });
    for (access_key, secret) in &args.credentials {
        emulator.accept_credentials(access_key, secret);
    }
    if let Some(path) = &args.tokens {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let count = emulator
            .preload(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        say(format_args!(
            "Registered {count} tokens from {}",
            path.display()
        ));
    }
    let demo = MeteringEmulator::mint_token();
    emulator.register(
        &demo,
        ResolvedCustomer::new("123456789012", "prod-demo123")
            .with_customer_identifier("cust-demo")
            .with_license_arn("arn:aws:license-manager::123456789012:license:l-demo")
            .with_agreement_id("agmt-demo"),
    );
    say(format_args!("Endpoint: {}", emulator.endpoint_url()));
    say(format_args!(
        "Demo token (account 123456789012, product prod-demo123): {demo}"
    ));
    say(format_args!(
        "Admin API: {}/_emulator/",
        emulator.endpoint_url()
    ));

    shutdown.await;
    say(format_args!("Stopped."));
    Ok(())
}

/// A line on stdout; a closed stdout (the test runner went away) is not an
/// error worth dying for.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM; the handlers are installed at once,
/// so a signal that arrives before the wait begins is not missed.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
