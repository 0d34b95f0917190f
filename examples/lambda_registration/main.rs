//! The AWS Marketplace registration flow as an AWS Lambda function behind API
//! Gateway (REST or HTTP API), a function URL or an Application Load
//! Balancer, with `DynamoDbStore`: every execution environment has its own
//! cache, and the table lets them redeem a token once.
//!
//! On Lambda (`AWS_LAMBDA_RUNTIME_API` is set), or with `--aws`, the function
//! resolves tokens with real AWS (the default AWS configuration chain) and
//! keeps resolutions, accounts and sessions in the table named by
//! `REGISTRATION_TABLE` (default `registrations`); `PRODUCT_CODE`, if set,
//! restricts it to one product.
//!
//! Locally (the default), the same routes serve HTTP on 127.0.0.1 against the
//! crate's embedded Marketplace Metering emulator (single-use tokens) and a
//! DynamoDB-compatible server you run (DynamoDB Local, or moto's server), with
//! a page playing AWS Marketplace's part:
//!
//! ```sh
//! # A DynamoDB-compatible server on 127.0.0.1:8000, for example:
//! python3 -m venv target/dynamodb-venv
//! target/dynamodb-venv/bin/pip install -r tests/common/dynamodb-server-requirements.txt
//! target/dynamodb-venv/bin/moto_server -p 8000 &
//! cargo run --example lambda_registration --features axum,dynamodb,test-util -- \
//!     --dynamodb-endpoint http://127.0.0.1:8000
//! # then open the printed simulator URL.
//!
//! # Built and deployed with cargo-lambda (see the README's "On AWS Lambda"):
//! cargo lambda build --release --example lambda_registration --features axum,dynamodb,test-util
//! ```

#[allow(dead_code)]
#[path = "../axum_registration/site.rs"]
mod site;

mod app;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use axum::response::Html;
use axum::routing::get;
use clap::Parser;
use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{AwsMarketplaceResolver, DynamoDbStore, ResolvedCustomer};
use tracing_subscriber::EnvFilter;

use app::Accounts;
use site::DEMO_TOKEN_VALIDITY;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "The AWS Marketplace registration flow as an AWS Lambda function")]
struct Args {
    /// Run as the Lambda function with real AWS (implied on Lambda).
    #[arg(long)]
    aws: bool,
    /// Locally: the DynamoDB-compatible server to use (DynamoDB Local, moto).
    #[arg(long, value_name = "URL")]
    dynamodb_endpoint: Option<String>,
    /// Locally: the table (created if absent).
    #[arg(long, default_value = "registrations")]
    table: String,
    /// Locally: the port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3000)]
    port: u16,
}

#[tokio::main]
async fn main() -> ExitCode {
    let on_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // CloudWatch adds its own timestamps.
        .without_time()
        .init();
    let ran = if on_lambda || args.aws {
        function().await
    } else {
        local(args).await
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The Lambda function: real AWS, the table named by `REGISTRATION_TABLE`.
async fn function() -> Result<(), Error> {
    let config = aws_config::load_from_env().await;
    let table = std::env::var("REGISTRATION_TABLE").unwrap_or_else(|_| "registrations".into());
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let resolutions = app::resolutions(
        AwsMarketplaceResolver::from_conf(&config),
        DynamoDbStore::new(dynamodb.clone(), &table),
    );
    let product = std::env::var("PRODUCT_CODE").ok();
    let routes = app::routes(
        &resolutions,
        Accounts::new(dynamodb, table),
        product.as_deref(),
    );
    lambda_http::run(app::function(routes)).await
}

/// The same routes over HTTP on 127.0.0.1, against the emulator and a local
/// DynamoDB-compatible server.
async fn local(args: Args) -> Result<(), Error> {
    let Some(endpoint) = args.dynamodb_endpoint else {
        return Err(
            "locally, give --dynamodb-endpoint (a DynamoDB-compatible server, \
                    such as DynamoDB Local or moto's server); on AWS Lambda, or with --aws, \
                    the function uses real AWS"
                .into(),
        );
    };
    let emulator = MeteringEmulator::start().await?;
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let token = MeteringEmulator::mint_token();
    emulator.register_for(
        &token,
        ResolvedCustomer::new("123456789012", "prod-demo123")
            .with_license_arn("arn:aws:license-manager::123456789012:license:l-demo")
            .with_agreement_id("agmt-demo"),
        DEMO_TOKEN_VALIDITY,
    );
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "local"))
            .build(),
    );
    let store = DynamoDbStore::new(dynamodb.clone(), &args.table);
    store.create_table().await?;
    let resolutions = app::resolutions(emulator.resolver(), store);
    let Html(simulator) = site::simulator_page(token);
    let simulator = Arc::new(simulator);
    let routes = app::routes(&resolutions, Accounts::new(dynamodb, &args.table), None).route(
        "/marketplace-simulator",
        get(move || std::future::ready(Html(simulator.to_string()))),
    );
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let addr = listener.local_addr()?;
    println!("Marketplace Metering emulator: {}", emulator.endpoint_url());
    println!("DynamoDB: {endpoint}, table {}", args.table);
    println!("Open http://{addr}/marketplace-simulator to register the demo buyer.");
    axum::serve(listener, routes)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
