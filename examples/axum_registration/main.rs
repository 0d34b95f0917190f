//! An AWS Marketplace SaaS registration site with axum.
//!
//! When a buyer subscribes to your SaaS product, AWS Marketplace sends their
//! browser to your registration URL with an urlencoded `POST` holding the field
//! `x-amzn-marketplace-token`. `ResolveCustomerLayer` redeems that token with
//! `ResolveCustomer` and hands the handler a `ResolvedCustomer`; the handler
//! records the account, sets an opaque session cookie and redirects (303) to
//! `/welcome`.
//!
//! Offline by default: the real SDK-backed resolver talks to the crate's embedded
//! Marketplace Metering emulator on 127.0.0.1 (single-use tokens, as the API
//! reference describes), and `/marketplace-simulator` plays AWS Marketplace's
//! part: a page that auto-submits the registration form.
//!
//! ```sh
//! # Run a buyer's registration (and a double submit) over HTTP, print what
//! # happened, and exit:
//! cargo run --example axum_registration --features axum,test-util -- --demo
//! # Serve until Ctrl-C; open the printed simulator URL in a browser:
//! cargo run --example axum_registration --features axum,test-util
//! # Against real AWS (region, profile, credentials and AWS_ENDPOINT_URL from
//! # the usual AWS configuration chain):
//! cargo run --example axum_registration --features axum,test-util -- --aws
//! ```

mod site;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{AwsMarketplaceResolver, ResolveCustomerLayer, ResolvedCustomer};
use tracing_subscriber::EnvFilter;

use site::{DEMO_TOKEN_VALIDITY, Store};

#[derive(Parser)]
#[command(about = "An AWS Marketplace SaaS registration site")]
struct Args {
    /// Resolve tokens with real AWS (the default AWS configuration chain)
    /// instead of the embedded emulator.
    #[arg(long)]
    aws: bool,
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Run a simulated buyer's registration over HTTP, print it, and exit
    /// (offline mode only).
    #[arg(long, conflicts_with = "aws")]
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

    let store = Arc::new(Store::default());
    let mut emulator = None;
    let app = if args.aws {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        site::app(
            ResolveCustomerLayer::new(AwsMarketplaceResolver::from_conf(&config)),
            Arc::clone(&store),
            None,
        )
    } else {
        let local = MeteringEmulator::start().await?;
        local.set_policy(RedemptionPolicy::SingleUse);
        let token = MeteringEmulator::mint_token();
        local.register_for(&token, demo_customer(), DEMO_TOKEN_VALIDITY);
        let layer =
            ResolveCustomerLayer::new(local.resolver()).allowed_product_codes(["prod-demo123"]);
        emulator = Some((local, token.clone()));
        site::app(layer, Arc::clone(&store), Some(token))
    };

    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;
    println!("Registration site listening on http://{addr}/ (POST /register)");
    if let Some((local, _)) = &emulator {
        println!("Marketplace Metering emulator at {}", local.endpoint_url());
        println!("Open http://{addr}/marketplace-simulator to subscribe as a buyer would.");
    }

    if args.demo {
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let (local, token) = emulator.as_ref().expect("--demo runs offline");
        demo(addr).await?;
        println!(
            "Accounts registered: {}; ResolveCustomer calls for the buyer's token: {}, redemptions: {}",
            store.accounts(),
            local.calls_for(token),
            local.redemptions_of(token),
        );
        server.abort();
        return Ok(());
    }

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn demo_customer() -> ResolvedCustomer {
    ResolvedCustomer::new("123456789012", "prod-demo123")
        .with_license_arn("arn:aws:license-manager::123456789012:license:l-0123456789abcdef0")
        .with_agreement_id("agmt-demo0123456789")
}

/// A buyer's browser, by hand: load the simulator, post its form, follow the
/// redirect with the cookie, then post the same form again (a double submit).
async fn demo(addr: SocketAddr) -> Result<(), Error> {
    let page = http(addr, "GET", "/marketplace-simulator", &[], "").await?;
    let form = simulator_form(&page.body).ok_or("the simulator page has no form")?;

    for step in [
        "1. The buyer arrives from AWS Marketplace",
        "2. The same form posted again (double submit)",
    ] {
        println!("{step}");
        let posted = http(
            addr,
            "POST",
            "/register",
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await?;
        println!("   POST /register -> {}", posted.status_line);
        let cookie = posted
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .ok_or("no session cookie")?
            .to_owned();
        let location = posted.header("location").ok_or("no redirect")?.to_owned();
        let welcome = http(addr, "GET", &location, &[("cookie", &cookie)], "").await?;
        println!("   GET {location} -> {}", welcome.status_line);
        let account = between(&welcome.body, "<dd id=\"account\">", "</dd>").unwrap_or("?");
        let product = between(&welcome.body, "<dd id=\"product\">", "</dd>").unwrap_or("?");
        println!("   welcome page: AWS account {account}, product {product}");
    }
    Ok(())
}

/// The simulator's form fields, urlencoded as a browser would.
fn simulator_form(html: &str) -> Option<String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    let mut rest = html;
    while let Some(start) = rest.find("<input type=\"hidden\" name=\"") {
        rest = &rest[start..];
        let name = between(rest, "name=\"", "\"")?;
        let value = between(rest, "value=\"", "\"")?;
        form.append_pair(name, value);
        rest = &rest[1..];
    }
    Some(form.finish())
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

struct Reply {
    status_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 exchange on a fresh connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, Error> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("malformed response")?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status_line,
        headers,
        body: body.to_owned(),
    })
}
