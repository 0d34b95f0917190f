//! The emulator checks Signature Version 4 as AWS does, before any operation:
//! requests from the Rust SDK with the right credentials pass, and each way
//! of getting the signature wrong gets the error AWS answers for it (see
//! `src/emulator/signature.rs` for where each comes from).

#![cfg(feature = "test-util")]

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_marketplacemetering::config::Credentials;
use aws_sdk_marketplacemetering::error::ProvideErrorMetadata;
use aws_smithy_async::time::StaticTimeSource;
use common::signing::Signer;
use tower_resolve_customer::ResolvedCustomer;
use tower_resolve_customer::emulator::MeteringEmulator;

const ACCESS_KEY: &str = "AKIDEMULATOREXAMPLE";
const SECRET: &str = "emulator-secret-access-key";

async fn emulator() -> (MeteringEmulator, String) {
    let emulator = MeteringEmulator::start().await.unwrap();
    let token = MeteringEmulator::mint_token();
    emulator.register(&token, ResolvedCustomer::new("123456789012", "prod-sig"));
    (emulator, token)
}

/// The error code and HTTP status of one `ResolveCustomer` call made with a
/// client built from `configure(emulator.config_builder())` (one attempt).
async fn call(
    emulator: &MeteringEmulator,
    token: &str,
    configure: impl FnOnce(
        aws_sdk_marketplacemetering::config::Builder,
    ) -> aws_sdk_marketplacemetering::config::Builder,
) -> Result<String, (String, u16)> {
    let config = configure(emulator.config_builder())
        .retry_config(aws_sdk_marketplacemetering::config::retry::RetryConfig::disabled())
        .build();
    let client = aws_sdk_marketplacemetering::Client::from_conf(config);
    match client
        .resolve_customer()
        .registration_token(token)
        .send()
        .await
    {
        Ok(output) => Ok(output
            .customer_aws_account_id()
            .unwrap_or_default()
            .to_owned()),
        Err(error) => {
            let status = error.raw_response().map_or(0, |r| r.status().as_u16());
            let code = error.code().unwrap_or("<none>").to_owned();
            Err((code, status))
        }
    }
}

#[tokio::test]
async fn the_sdk_signature_verifies_against_the_accepted_secret() {
    let (emulator, token) = emulator().await;
    emulator.accept_credentials(ACCESS_KEY, SECRET);
    assert_eq!(
        call(&emulator, &token, |b| b).await,
        Ok("123456789012".into())
    );
}

#[tokio::test]
async fn a_wrong_secret_does_not_match_and_an_unknown_key_is_invalid() {
    let (emulator, token) = emulator().await;
    // Before any credentials are given, any well-formed signature passes.
    let wrong_secret = Credentials::new(ACCESS_KEY, "not-the-secret", None, None, "test");
    assert!(
        call(&emulator, &token, |b| b
            .credentials_provider(wrong_secret.clone()))
        .await
        .is_ok()
    );
    emulator.accept_credentials(ACCESS_KEY, SECRET);
    assert_eq!(
        call(&emulator, &token, |b| b.credentials_provider(wrong_secret)).await,
        Err(("SignatureDoesNotMatch".into(), 403))
    );
    let unknown = Credentials::new("AKIDUNKNOWN", SECRET, None, None, "test");
    assert_eq!(
        call(&emulator, &token, |b| b.credentials_provider(unknown)).await,
        Err(("InvalidClientTokenId".into(), 403))
    );
    assert_eq!(
        emulator.calls_for(&token),
        1,
        "refused before the operation"
    );
}

#[tokio::test]
async fn a_clock_off_by_more_than_15_minutes_is_expired() {
    let (emulator, token) = emulator().await;
    for offset in [-20i64, 20] {
        let skewed = if offset < 0 {
            SystemTime::now() - Duration::from_secs(20 * 60)
        } else {
            SystemTime::now() + Duration::from_secs(20 * 60)
        };
        assert_eq!(
            call(&emulator, &token, |b| b
                .time_source(StaticTimeSource::new(skewed)))
            .await,
            Err(("RequestExpired".into(), 400)),
            "{offset} minutes"
        );
    }
    let close = SystemTime::now() - Duration::from_secs(10 * 60);
    assert!(
        call(&emulator, &token, |b| b
            .time_source(StaticTimeSource::new(close)))
        .await
        .is_ok()
    );
}

/// Hand-written requests: unsigned, malformed, and signed for another
/// service.
#[tokio::test]
async fn missing_malformed_and_misscoped_signatures_are_refused() {
    let (emulator, token) = emulator().await;
    let host = emulator.local_addr().to_string();
    let body = format!(r#"{{"RegistrationToken":"{token}"}}"#);
    let base = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "AWSMPMeteringService.ResolveCustomer"),
    ];
    let send = |extra: Vec<(String, String)>| {
        let headers: Vec<(String, String)> = base
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain(extra)
            .collect();
        let (addr, body) = (emulator.local_addr(), body.clone());
        async move {
            let response = common::signing::raw_post(addr, headers, &body).await;
            let status: u16 = response[9..12].parse().unwrap();
            let json: serde_json::Value =
                serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
            (
                status,
                json["__type"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    assert_eq!(
        send(vec![]).await,
        (403, "MissingAuthenticationToken".into())
    );
    let now = Signer::default().headers(&host, &base, body.as_bytes());
    let date = now.iter().find(|(n, _)| n == "x-amz-date").unwrap().clone();
    for garbage in [
        "AWS4-HMAC-SHA256 garbage",
        "Basic dXNlcjpwYXNzd29yZA==",
        "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/aws-marketplace/aws4_request, SignedHeaders=host;x-amz-date",
    ] {
        assert_eq!(
            send(vec![("authorization".into(), garbage.into()), date.clone()]).await,
            (400, "IncompleteSignature".into()),
            "{garbage}"
        );
    }
    let other_service = Signer {
        service: "execute-api",
        ..Signer::default()
    };
    assert_eq!(
        send(other_service.headers(&host, &base, body.as_bytes())).await,
        (400, "IncompleteSignature".into())
    );
    assert_eq!(send(now).await.0, 200, "signed as the SDK signs: accepted");
    assert_eq!(emulator.calls_for(&token), 1);
}

/// A signature covers the body it was made for: the same headers with
/// another body are refused, whatever `x-amz-content-sha256` claims.
#[tokio::test]
async fn a_body_other_than_the_signed_one_does_not_match() {
    let (emulator, token) = emulator().await;
    emulator.accept_credentials("AKIDEXAMPLE", "example-secret");
    let host = emulator.local_addr().to_string();
    let signed_body = format!(r#"{{"RegistrationToken":"{token}"}}"#);
    let other_body = r#"{"RegistrationToken":"someone-elses-token"}"#;
    let base = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "AWSMPMeteringService.ResolveCustomer"),
    ];
    let signature = Signer::default().headers(&host, &base, signed_body.as_bytes());
    let headers = |claimed: Option<String>| {
        base.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain(signature.clone())
            .chain(claimed.map(|c| ("x-amz-content-sha256".to_owned(), c)))
            .collect::<Vec<_>>()
    };
    let status = |response: String| response[9..12].to_owned();
    let addr = emulator.local_addr();
    let honest = common::signing::raw_post(addr, headers(None), &signed_body).await;
    assert_eq!(status(honest), "200");
    let signed_hash = {
        use sha2::Digest;
        sha2::Sha256::digest(signed_body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for claimed in [None, Some(signed_hash), Some("UNSIGNED-PAYLOAD".to_owned())] {
        let tampered = common::signing::raw_post(addr, headers(claimed.clone()), other_body).await;
        assert!(
            tampered.contains("SignatureDoesNotMatch"),
            "{claimed:?}: {tampered}"
        );
    }
}

/// Another service's SDK client (DynamoDB's, signing for `dynamodb`) pointed
/// at the emulator: its credential scope is refused before anything else.
#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn another_services_sdk_client_is_refused_for_its_scope() {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
    let (emulator, _) = emulator().await;
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint_url())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            ACCESS_KEY, SECRET, None, None, "test",
        ))
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let error = aws_sdk_dynamodb::Client::from_conf(config)
        .list_tables()
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("IncompleteSignature"), "{error:?}");
    let status = error.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(400));
}
