//! The layer's share of an AWS Lambda cold start (features `dynamodb` and
//! `test-util`): how long building the `Resolutions` and its layers takes in a
//! fresh process, and how the first requests compare with later ones, with a
//! `DynamoDbStore` on a DynamoDB-compatible server on loopback and the
//! emulator's in-process resolver (so the figures are the layer's and the
//! store's, not AWS's).
//!
//! ```sh
//! cargo bench --bench lambda_cold_start --features dynamodb,test-util
//! ```
//!
//! A cold start happens once per process, so this measures once per process:
//! run it a few times. Under `cargo test --benches` it runs the same steps to
//! check that they work. Without the DynamoDB-compatible server (see the
//! README's test section) it says so and exits (under `CI=true` it fails).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http::{Request, Response};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{
    DynamoDbStore, RequestBody, Resolutions, ResolveCustomerLayer, ResolvedCustomer, TOKEN_HEADER,
    TokenSource,
};

/// The tests' own DynamoDB-compatible server fixture.
#[allow(dead_code)]
#[path = "../tests/common/dynamodb_server.rs"]
mod dynamodb_server;

use dynamodb_server::DynamoDbServer;

/// Under `CI=true` a missing server fails the run; elsewhere it is skipped
/// with a note.
fn missing_service(service: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{service} is required under CI=true (.ci/run installs it)"
    );
    eprintln!("skipping: {service} is not installed (required under CI=true)");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let Some(server) = DynamoDbServer::start() else {
        return;
    };
    let table = DynamoDbServer::new_table_name();
    let client = server.client();
    DynamoDbStore::new(client.clone(), &table)
        .create_table()
        .await
        .expect("the table is created");
    let emulator = MeteringEmulator::start()
        .await
        .expect("the emulator starts");
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let tokens: Vec<String> = (0..4).map(|_| MeteringEmulator::mint_token()).collect();
    for token in &tokens {
        emulator.register(
            token,
            ResolvedCustomer::new("123456789012", "prod-demo123")
                .with_license_arn("arn:aws:license-manager::123456789012:license:l-demo")
                .with_agreement_id("agmt-demo"),
        );
    }

    // What a Lambda function builds at initialisation: the Resolutions over
    // the table, and its routes' layers.
    let started = Instant::now();
    let resolutions = Resolutions::builder(emulator.in_process_resolver())
        .store(DynamoDbStore::new(client.clone(), &table))
        .publish_before_answering(true)
        .build();
    let form = resolutions.layer();
    let header = ResolveCustomerLayer::from_resolutions(resolutions.clone())
        .token_source(TokenSource::header(TOKEN_HEADER));
    let build = started.elapsed();
    drop(form);

    let mut later_builds: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            let resolutions = Resolutions::builder(emulator.in_process_resolver())
                .store(DynamoDbStore::new(client.clone(), &table))
                .build();
            let _layer = resolutions.layer();
            started.elapsed()
        })
        .collect();
    later_builds.sort();

    let handler = tower::service_fn(|request: Request<RequestBody<String>>| async move {
        let mut response = Response::new(String::new());
        if request.extensions().get::<ResolvedCustomer>().is_none() {
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        }
        Ok::<_, Infallible>(response)
    });
    let service = header.layer(handler);
    let timed = |token: &str| {
        let request = Request::post("/api/register")
            .header(TOKEN_HEADER, token)
            .body(String::new())
            .expect("a request");
        let service = service.clone();
        async move {
            let started = Instant::now();
            let response = service.oneshot(request).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::OK, "no customer");
            started.elapsed()
        }
    };
    let first = timed(&tokens[0]).await;
    let second = timed(&tokens[1]).await;
    let third = timed(&tokens[2]).await;
    let hit = timed(&tokens[0]).await;

    println!(
        "Resolutions with a DynamoDbStore and two layers: first build in the process {build:?}, \
         later builds median {:?}",
        later_builds[later_builds.len() / 2]
    );
    println!(
        "new token (5 store calls on loopback, in-process resolver): first request {first:?}, \
         second {second:?}, third {third:?}; cache hit {hit:?}"
    );
}
