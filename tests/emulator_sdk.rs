//! The real SDK client against the emulator over TCP: wire protocol, retries,
//! timeouts and error mapping, and the layer on top.

#![cfg(feature = "test-util")]

mod common;

use std::time::Duration;

use aws_sdk_marketplacemetering::Client;
use aws_sdk_marketplacemetering::config::retry::RetryConfig;
use aws_sdk_marketplacemetering::config::timeout::TimeoutConfig;
use common::*;
use tower_resolve_customer::emulator::{Fault, MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{
    AwsMarketplaceResolver, RegistrationToken, Resolutions, ResolveCustomerLayer, ResolveError,
    ResolvedCustomer, Resolver,
};

fn full_customer() -> ResolvedCustomer {
    ResolvedCustomer::new("123456789012", "prod-emulated")
        .with_customer_identifier("cust-1")
        .with_license_arn("arn:aws:license-manager::123456789012:license:l-0abc")
        .with_agreement_id("agmt-0abc")
}

async fn emulator_with_token() -> (MeteringEmulator, String) {
    let emulator = MeteringEmulator::start().await.unwrap();
    let token = MeteringEmulator::mint_token();
    emulator.register(&token, full_customer());
    (emulator, token)
}

async fn resolve(
    resolver: &AwsMarketplaceResolver,
    token: &str,
) -> Result<ResolvedCustomer, ResolveError> {
    resolver
        .resolve(&RegistrationToken::new(token).unwrap())
        .await
}

#[tokio::test]
async fn success_carries_every_field() {
    let (emulator, token) = emulator_with_token().await;
    let customer = resolve(&emulator.resolver(), &token).await.unwrap();
    assert_eq!(customer, full_customer());
    assert_eq!(emulator.calls_for(&token), 1);
    assert_eq!(emulator.attempts_seen(), vec![1]);

    // Fields AWS omits stay absent.
    let minimal = MeteringEmulator::mint_token();
    emulator.register(
        &minimal,
        ResolvedCustomer::new("210987654321", "prod-emulated"),
    );
    let customer = resolve(&emulator.resolver(), &minimal).await.unwrap();
    assert_eq!(customer.customer_identifier(), None);
    assert_eq!(customer.license_arn(), None);
    assert_eq!(customer.agreement_id(), None);
}

#[tokio::test]
async fn each_modeled_error_maps_to_its_resolve_error_and_response() {
    let (emulator, token) = emulator_with_token().await;
    let resolver = emulator.resolver();

    // InvalidTokenException: an unregistered token.
    assert_eq!(
        resolve(&resolver, "unregistered").await,
        Err(ResolveError::InvalidToken)
    );

    // ExpiredTokenException: past its validity.
    let old = MeteringEmulator::mint_token();
    emulator.register_for(&old, full_customer(), Duration::ZERO);
    assert_eq!(
        resolve(&resolver, &old).await,
        Err(ResolveError::ExpiredToken)
    );

    // DisabledApiException (not retried by the SDK).
    emulator.inject(Fault::DisabledApi);
    assert_eq!(
        resolve(&resolver, &token).await,
        Err(ResolveError::ApiDisabled)
    );

    // ThrottlingException on every attempt.
    emulator.inject_times(Fault::Throttle, 3);
    assert_eq!(
        resolve(&resolver, &token).await,
        Err(ResolveError::Throttled)
    );

    // InternalServiceErrorException on every attempt.
    emulator.inject_times(Fault::InternalError, 3);
    let error = resolve(&resolver, &token).await.unwrap_err();
    assert!(
        matches!(&error, ResolveError::Unavailable(m) if m.contains("InternalServiceErrorException")),
        "{error:?}"
    );

    // Through the layer: each error's response.
    let h = Harness::new(ResolveCustomerLayer::new(emulator.resolver()));
    let cases: Vec<(Option<Fault>, &str, u16, &str)> = vec![
        (None, "unregistered", 400, "invalid-token"),
        (None, old.as_str(), 400, "expired-token"),
        (
            Some(Fault::DisabledApi),
            token.as_str(),
            503,
            "api-disabled",
        ),
        (Some(Fault::Throttle), token.as_str(), 503, "throttled"),
        (
            Some(Fault::InternalError),
            token.as_str(),
            503,
            "unavailable",
        ),
    ];
    for (fault, token, status, code) in cases {
        if let Some(fault) = fault {
            emulator.inject_times(fault, 3);
        }
        let response = h.send(token_post(token)).await;
        assert_eq!(response.status(), status, "{code}");
        if status == 503 {
            assert!(response.headers().contains_key("retry-after"));
        }
        assert!(text(response).await.contains(code));
        emulator.clear_faults();
    }
    assert_eq!(h.handled(), 0);
}

#[tokio::test]
async fn throttling_is_retried_then_succeeds() {
    let (emulator, token) = emulator_with_token().await;
    emulator.inject_times(Fault::Throttle, 2);
    let customer = resolve(&emulator.resolver(), &token).await.unwrap();
    assert_eq!(customer, full_customer());
    assert_eq!(emulator.attempts_seen(), vec![1, 2, 3]);
    assert_eq!(emulator.redemptions_of(&token), 1);
}

#[tokio::test]
async fn internal_errors_are_retried_up_to_the_configured_attempts_then_503() {
    let (emulator, token) = emulator_with_token().await;
    let client = Client::from_conf(
        emulator
            .config_builder()
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(4)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .build(),
    );
    emulator.inject_times(Fault::InternalError, 10);
    let h = Harness::new(ResolveCustomerLayer::new(AwsMarketplaceResolver::new(
        client,
    )));
    assert_eq!(h.send(token_post(&token)).await.status(), 503);
    assert_eq!(emulator.attempts_seen(), vec![1, 2, 3, 4]);
    assert_eq!(emulator.calls_for(&token), 4);

    // Not cached: once AWS recovers, the next request succeeds.
    emulator.clear_faults();
    assert_eq!(h.send(token_post(&token)).await.status(), 200);
}

#[tokio::test]
async fn read_and_operation_timeouts_are_timeout_errors() {
    let (emulator, token) = emulator_with_token().await;
    let limit = Duration::from_millis(100);
    for (kind, timeouts) in [
        ("read", TimeoutConfig::builder().read_timeout(limit)),
        (
            "operation",
            TimeoutConfig::builder().operation_timeout(limit),
        ),
    ] {
        let client = Client::from_conf(
            emulator
                .config_builder()
                .retry_config(RetryConfig::standard().with_max_attempts(1))
                .timeout_config(timeouts.build())
                .build(),
        );
        emulator.inject(Fault::Latency(Duration::from_secs(5)));
        let error = resolve(&AwsMarketplaceResolver::new(client), &token).await;
        assert_eq!(error, Err(ResolveError::Timeout), "{kind} timeout");
    }

    // Through the layer, with its own timeout: 504.
    emulator.inject(Fault::Latency(Duration::from_secs(5)));
    let h = Harness::new(
        Resolutions::builder(emulator.resolver())
            .resolve_timeout(Duration::from_millis(100))
            .build()
            .layer(),
    );
    assert_eq!(h.send(token_post(&token)).await.status(), 504);
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    // Bind then drop a listener: nothing listens on that loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let emulator = MeteringEmulator::start().await.unwrap();
    let client = Client::from_conf(
        emulator
            .config_builder()
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .build(),
    );
    let error = resolve(&AwsMarketplaceResolver::new(client), "anything")
        .await
        .unwrap_err();
    assert!(matches!(&error, ResolveError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn malformed_or_missing_answers_are_errors_not_panics() {
    let (emulator, token) = emulator_with_token().await;
    let resolver = emulator.resolver();

    emulator.inject(Fault::GarbageBody);
    let error = resolve(&resolver, &token).await.unwrap_err();
    assert!(
        matches!(&error, ResolveError::Unavailable(m) if m.contains("unreadable response")),
        "{error:?}"
    );

    // A dropped connection is retried by the SDK; on every attempt it fails.
    emulator.inject_times(Fault::CloseConnection, 3);
    let error = resolve(&resolver, &token).await.unwrap_err();
    assert!(matches!(&error, ResolveError::Unavailable(_)), "{error:?}");
    assert_eq!(emulator.attempts_seen().len(), 4);

    // Once, then answered: the retry succeeds.
    emulator.inject(Fault::CloseConnection);
    assert_eq!(resolve(&resolver, &token).await.unwrap(), full_customer());
}

#[tokio::test]
async fn emulator_answers_bad_requests_like_aws() {
    let emulator = MeteringEmulator::start().await.unwrap();
    let http = |target: &'static str, content_type: &'static str, body: &'static str| {
        let addr = emulator.local_addr();
        async move {
            let host = addr.to_string();
            let headers = [
                ("host", host.as_str()),
                ("content-type", content_type),
                ("x-amz-target", target),
            ];
            let signature =
                common::signing::Signer::default().headers(&host, &headers, body.as_bytes());
            let headers = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .chain(signature);
            common::signing::raw_post(addr, headers, body).await
        }
    };
    let json = "application/x-amz-json-1.1";
    let response = http("AWSMPMeteringService.MeterUsage", json, "{}").await;
    assert!(
        response.starts_with("HTTP/1.1 400") && response.contains("UnknownOperationException"),
        "{response}"
    );
    let response = http("AWSMPMeteringService.ResolveCustomer", json, "{not json").await;
    assert!(
        response.starts_with("HTTP/1.1 400") && response.contains("SerializationException"),
        "{response}"
    );
    let response = http("AWSMPMeteringService.ResolveCustomer", json, "{}").await;
    assert!(
        response.starts_with("HTTP/1.1 400") && response.contains("ValidationException"),
        "{response}"
    );
    let response = http(
        "AWSMPMeteringService.ResolveCustomer",
        json,
        r#"{"RegistrationToken":"nope"}"#,
    )
    .await;
    assert!(
        response.contains("InvalidTokenException")
            && response.to_ascii_lowercase().contains("x-amzn-requestid"),
        "{response}"
    );
}

#[tokio::test]
async fn single_use_double_submit_sequential_reaches_the_handler_twice_with_one_redemption() {
    let (emulator, token) = emulator_with_token().await;
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let h = Harness::new(ResolveCustomerLayer::new(emulator.resolver()));
    for _ in 0..2 {
        assert_eq!(h.send(token_post(&token)).await.status(), 200);
    }
    assert_eq!(h.handled(), 2);
    assert_eq!(emulator.redemptions_of(&token), 1);
    assert_eq!(emulator.calls_for(&token), 1);
    // Without the layer's cache, the resubmission would have been refused.
    assert_eq!(
        resolve(&emulator.resolver(), &token).await,
        Err(ResolveError::ExpiredToken)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_use_hundred_concurrent_submits_one_redemption() {
    let (emulator, token) = emulator_with_token().await;
    emulator.set_policy(RedemptionPolicy::SingleUse);
    // Slow the upstream down so the requests really overlap.
    emulator.inject(Fault::Latency(Duration::from_millis(50)));
    let h = Harness::new(ResolveCustomerLayer::new(emulator.resolver()));
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(h.send(token_post(&token))))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().status(), 200);
    }
    assert_eq!(h.handled(), 100);
    assert!(
        h.requests()
            .iter()
            .all(|r| r.customer.as_ref() == Some(&full_customer()))
    );
    assert_eq!(emulator.calls_for(&token), 1);
    assert_eq!(emulator.redemptions_of(&token), 1);
}

/// Runs a double submit and an invalid token through the layer and the real SDK
/// under `filter`, and returns everything logged.
async fn logs_of_a_registration(filter: &str, token: &str, emulator: &MeteringEmulator) -> String {
    let (capture, _guard) = Capture::logs(filter);
    let h = Harness::new(ResolveCustomerLayer::new(emulator.resolver()));
    for t in [token, token, "unregisteredButWellFormed"] {
        h.send(token_post(t)).await;
    }
    capture.contents()
}

#[tokio::test]
async fn trace_logs_never_hold_the_token() {
    let (emulator, token) = emulator_with_token().await;
    let fragment = &token[..48];

    // The crate's own logs, at the most verbose level.
    let ours = logs_of_a_registration("tower_resolve_customer=trace", &token, &emulator).await;
    assert!(ours.contains("resolve_customer"), "{ours}");
    assert!(
        !ours.contains(fragment),
        "token in the crate's logs:\n{ours}"
    );

    // Everything at TRACE with the SDK's request logging filtered, as the README
    // advises: safe even where `LOG_SIGNABLE_BODY=true` makes `aws_sigv4` print
    // the signed body.
    let token2 = MeteringEmulator::mint_token();
    emulator.register(&token2, full_customer());
    let filtered = logs_of_a_registration(
        "trace,aws_smithy_runtime=info,aws_sigv4=info",
        &token2,
        &emulator,
    )
    .await;
    assert!(filtered.contains("resolve_customer"));
    assert!(
        !filtered.contains(&token2[..48]),
        "token in filtered TRACE logs"
    );

    // Unfiltered TRACE: the SDK redacts the body unless told otherwise.
    if std::env::var_os("LOG_SIGNABLE_BODY").is_none() {
        let token3 = MeteringEmulator::mint_token();
        emulator.register(&token3, full_customer());
        let all = logs_of_a_registration("trace", &token3, &emulator).await;
        assert!(all.contains("aws_sigv4"), "SDK logs captured");
        assert!(
            !all.contains(&token3[..48]),
            "token in unfiltered TRACE logs"
        );
    }
}

#[tokio::test]
async fn emulator_stops_when_dropped() {
    let emulator = MeteringEmulator::start().await.unwrap();
    let addr = emulator.local_addr();
    tokio::net::TcpStream::connect(addr).await.unwrap();
    drop(emulator);
    // The server task is cancelled the next time the runtime gets to it.
    let mut refused = false;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the emulator still accepts connections after drop");
}

/// One fault per call: a latency delays its call, which is then answered;
/// the next fault is the next call's.
#[tokio::test]
async fn each_call_meets_one_fault() {
    let (emulator, token) = emulator_with_token().await;
    emulator.inject(Fault::Latency(Duration::from_millis(1)));
    emulator.inject(Fault::Throttle);
    let resolver = emulator.in_process_resolver();
    let token = tower_resolve_customer::RegistrationToken::new(token.as_str()).unwrap();
    let call = || tower_resolve_customer::Resolver::resolve(&resolver, &token);
    assert!(call().await.is_ok());
    assert_eq!(call().await, Err(ResolveError::Throttled));
    assert!(call().await.is_ok());
}
