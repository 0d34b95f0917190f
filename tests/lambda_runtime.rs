//! The AWS Lambda example's binary (`examples/lambda_registration`, built by
//! `cargo test --all-features`), run as Lambda runs it: a process per
//! execution environment, configured by environment variables only, talking
//! to a Lambda Runtime API (the test's own, on loopback) that hands it events
//! and freezes it between invocations. Its AWS clients reach the emulator and
//! a DynamoDB-compatible server through the SDK's per-service endpoint
//! variables (`AWS_ENDPOINT_URL_MARKETPLACE_METERING`,
//! `AWS_ENDPOINT_URL_DYNAMODB`), with static credentials: nothing leaves
//! loopback.
//!
//! Under `CI=true` a missing binary or DynamoDB-compatible server fails the
//! tests; elsewhere they are skipped with a note.

#![cfg(all(feature = "axum", feature = "dynamodb", feature = "test-util"))]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dynamodb_server::DynamoDbServer;
use common::lambda_event::{Kind, body, event, form_event, header, session_cookie, status};
use common::lambda_runtime_api::{Answer, RuntimeApi};
use common::{customer_for, missing_service, within};
use serde_json::Value;
use tower_resolve_customer::emulator::MeteringEmulator;
use tower_resolve_customer::{DynamoDbStore, RegistrationToken, ResolutionStore};

/// The example's binary: `$LAMBDA_REGISTRATION_BIN` (say, a release build),
/// or the one `cargo test` built beside this test.
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("LAMBDA_REGISTRATION_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            let test = std::env::current_exe().ok()?;
            Some(
                test.parent()?
                    .parent()?
                    .join("examples/lambda_registration"),
            )
        })?;
    if path.is_file() {
        return Some(path);
    }
    missing_service(&format!(
        "the lambda_registration example's binary at {} (run the whole `cargo test --all-features`)",
        path.display()
    ));
    None
}

/// One execution environment: the function's process and its Runtime API.
struct Environment {
    process: Child,
    api: RuntimeApi,
    started: Instant,
}

impl Environment {
    /// Starts the function as Lambda would, and waits until it is initialised
    /// (asks for its first event); gives the initialisation time too.
    async fn start(
        binary: &PathBuf,
        emulator: &MeteringEmulator,
        dynamodb: SocketAddr,
        table: &str,
    ) -> (Self, Duration) {
        let api = RuntimeApi::start().await.expect("the Runtime API starts");
        let started = Instant::now();
        let process = Command::new(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", "registration")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/registration")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/26/[$LATEST]test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDLAMBDATEST")
            .env("AWS_SECRET_ACCESS_KEY", "lambda-test-secret")
            .env("AWS_SESSION_TOKEN", "lambda-test-session")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            )
            .env(
                "AWS_ENDPOINT_URL_MARKETPLACE_METERING",
                emulator.endpoint_url(),
            )
            .env("AWS_ENDPOINT_URL_DYNAMODB", format!("http://{dynamodb}"))
            .env("REGISTRATION_TABLE", table)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the function starts");
        let environment = Self {
            process,
            api,
            started,
        };
        within(
            "the function's initialisation",
            environment.api.wait_for_poll(1),
        )
        .await;
        let init = environment.started.elapsed();
        (environment, init)
    }

    /// One invocation: the function's answer (the JSON Lambda returns).
    async fn invoke(&self, event: Value) -> Value {
        match within("the invocation", self.api.invoke(event)).await {
            Answer::Response(response) => response,
            Answer::Error(error) => panic!("the function failed: {error}"),
        }
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.api.thaw();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn setup(
    tokens: usize,
) -> Option<(
    PathBuf,
    DynamoDbServer,
    String,
    MeteringEmulator,
    Vec<String>,
)> {
    let binary = binary()?;
    let (server, table) = DynamoDbServer::start_with_table().await?;
    let (emulator, tokens) = common::single_use_emulator(tokens).await;
    Some((binary, server, table, emulator, tokens))
}

/// The function, configured as on Lambda, registers a buyer from an HTTP API
/// event and shows the welcome page; its initialisation and first
/// invocations are timed (printed with `--nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_registers_a_buyer_under_the_lambda_runtime_api() {
    let Some((binary, server, table, emulator, tokens)) = setup(2).await else {
        return;
    };
    let (function, init) = Environment::start(&binary, &emulator, server.addr(), &table).await;
    let mut timings = Vec::new();
    let mut cookie = None;
    for token in &tokens {
        let started = Instant::now();
        let registered = function.invoke(form_event(Kind::HttpApi, token)).await;
        timings.push(started.elapsed());
        assert_eq!(status(&registered), 303, "{registered}");
        assert_eq!(header(&registered, "location").as_deref(), Some("welcome"));
        cookie = session_cookie(&registered);
    }
    let started = Instant::now();
    let resubmitted = function.invoke(form_event(Kind::RestApi, &tokens[1])).await;
    let hit = started.elapsed();
    assert_eq!(status(&resubmitted), 303, "{resubmitted}");
    let welcome = function
        .invoke(event(
            Kind::FunctionUrl,
            "GET",
            "/welcome",
            &[],
            b"",
            cookie.as_deref(),
        ))
        .await;
    assert_eq!(status(&welcome), 200, "{welcome}");
    let page = String::from_utf8(body(&welcome)).unwrap();
    assert!(page.contains(customer_for(&tokens[1]).customer_aws_account_id()));
    for token in &tokens {
        assert_eq!(emulator.redemptions_of(token), 1);
    }
    eprintln!(
        "cold start: initialisation {init:?}; first registration {:?}; second (new token) {:?}; \
         resubmission (cache hit) {hit:?}",
        timings[0], timings[1]
    );
}

/// Two execution environments, each frozen whenever it waits for an event:
/// the buyer's registration on the first, which is frozen as soon as it has
/// answered; the answer is in the table by then, so the double submit on the
/// second gets the customer without a second redemption. Thawed, the first
/// serves the welcome page of the session the second opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_environment_has_published_before_the_double_submit_lands_elsewhere() {
    let Some((binary, server, table, emulator, tokens)) = setup(1).await else {
        return;
    };
    let token = &tokens[0];
    let (first, _) = Environment::start(&binary, &emulator, server.addr(), &table).await;
    let (second, _) = Environment::start(&binary, &emulator, server.addr(), &table).await;
    first.api.freeze_when_idle(first.process.id());
    let registered = first.invoke(form_event(Kind::HttpApi, token)).await;
    assert_eq!(status(&registered), 303, "{registered}");
    within(
        "the first environment to freeze",
        first.api.wait_for_poll(2),
    )
    .await;
    assert!(first.api.is_frozen());

    let stored = DynamoDbStore::new(server.client(), &table)
        .read(RegistrationToken::new(token.as_str()).unwrap().digest())
        .await
        .expect("the table answers")
        .expect("published before the response");
    assert_eq!(stored.customer(), Some(&customer_for(token)));

    let resubmitted = second.invoke(form_event(Kind::RestApi, token)).await;
    assert_eq!(status(&resubmitted), 303, "{resubmitted}");
    assert_eq!(emulator.redemptions_of(token), 1);
    assert_eq!(emulator.calls_for(token), 1);

    first.api.thaw();
    let cookie = session_cookie(&resubmitted).expect("a session");
    let welcome = first
        .invoke(event(Kind::Alb, "GET", "/welcome", &[], b"", Some(&cookie)))
        .await;
    assert_eq!(status(&welcome), 200, "{welcome}");
}
