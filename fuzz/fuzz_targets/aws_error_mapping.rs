//! Any HTTP answer to `ResolveCustomer` (status, error-type header, body), fed
//! to the real SDK and the crate's error mapping: never a panic, an error
//! status is never taken for a customer, and only an error answer that names
//! `InvalidTokenException` / `ExpiredTokenException` is taken for an invalid or
//! expired token. Those two are cached, so anything else taken for them
//! (garbage, an HTML 500, `AccessDeniedException`, an unknown `__type`) would
//! lock the buyer out.
#![no_main]

use std::cell::RefCell;

use aws_sdk_marketplacemetering::config::retry::RetryConfig;
use aws_sdk_marketplacemetering::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_marketplacemetering::{Client, Config};
use aws_smithy_http_client::test_util::infallible_client_fn;
use libfuzzer_sys::fuzz_target;
use tower_resolve_customer::{AwsMarketplaceResolver, RegistrationToken, ResolveError, Resolver};

thread_local! {
    static ANSWER: RefCell<(u16, Option<String>, Vec<u8>)> = const { RefCell::new((200, None, Vec::new())) };
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    static RESOLVER: AwsMarketplaceResolver = {
        let http_client = infallible_client_fn(|_request| {
            let (status, error_type, body) = ANSWER.with(|a| a.borrow().clone());
            let mut response = http::Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.1");
            if let Some(error_type) = error_type {
                response = response.header("x-amzn-errortype", error_type);
            }
            response.body(body).unwrap()
        });
        let config = Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDFUZZ", "fuzz-secret", None, None, "fuzz"))
            .retry_config(RetryConfig::disabled())
            .http_client(http_client)
            .build();
        AwsMarketplaceResolver::new(Client::from_conf(config))
    };
}

const ERROR_TYPES: [&str; 10] = [
    "InvalidTokenException",
    "ExpiredTokenException",
    "ThrottlingException",
    "InternalServiceErrorException",
    "DisabledApiException",
    "AccessDeniedException",
    "com.amazonaws.marketplace#InvalidTokenException:http://internal",
    "SomethingNewException",
    "",
    "InvalidToken",
];

fuzz_target!(|data: &[u8]| {
    let [a, b, c, body @ ..] = data else { return };
    let status = 200 + u16::from_le_bytes([*a, *b]) % 400;
    let error_type = ERROR_TYPES.get(usize::from(*c)).map(|s| s.to_string());
    ANSWER.with(|answer| *answer.borrow_mut() = (status, error_type.clone(), body.to_vec()));
    let token = RegistrationToken::new("fuzzToken+/=").unwrap();
    let outcome =
        RUNTIME.with(|rt| RESOLVER.with(|resolver| rt.block_on(resolver.resolve(&token))));
    if outcome.is_ok() {
        assert!(status < 300, "HTTP {status} taken for a customer");
    }
    // The oracle, independent of the SDK's parsing: the answer must at least
    // name the exception somewhere, in the error-type header or the body.
    let names = |exception: &str| {
        error_type.as_deref().is_some_and(|t| t.contains(exception))
            || body
                .windows(exception.len())
                .any(|w| w == exception.as_bytes())
    };
    for (refusal, exception) in [
        (ResolveError::InvalidToken, "InvalidTokenException"),
        (ResolveError::ExpiredToken, "ExpiredTokenException"),
    ] {
        if outcome.as_ref().err() == Some(&refusal) {
            assert!(status >= 300, "HTTP {status} taken for {refusal:?}");
            assert!(
                names(exception),
                "an answer without {exception} taken for {refusal:?}"
            );
        }
    }
});
