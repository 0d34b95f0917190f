//! Every rejection, provoked the way it happens in production, as the client
//! sees it: status, problem code, `Retry-After`, `Cache-Control: no-store`, a
//! body that parses as RFC 9457 problem details, and (feature `grpc`) the gRPC
//! status. The README's error and gRPC tables are checked against the same
//! table, so the documentation cannot drift from the behaviour.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Response;
use http_body_util::BodyExt;
use tower_resolve_customer::{
    EntitlementPolicy, Entitlements, Rejection, Resolutions, ResolveCustomerLayer, ResolveError,
    ResolvedCustomer,
};

/// One rejection, and what the client must see.
struct Case {
    error: Rejection,
    code: &'static str,
    status: u16,
    retry_after: Option<&'static str>,
    /// The gRPC status name `grpc_status` answers with.
    grpc: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |error, code, status, retry_after, grpc| Case {
        error,
        code,
        status,
        retry_after,
        grpc,
    };
    use Rejection::*;
    use ResolveError::{ApiDisabled, ExpiredToken, InvalidToken, Throttled, Timeout};
    vec![
        case(MissingToken, "missing-token", 400, None, "UNAUTHENTICATED"),
        case(
            MalformedToken(tower_resolve_customer::TokenError::InvalidCharacter),
            "malformed-token",
            400,
            None,
            "INVALID_ARGUMENT",
        ),
        case(
            AmbiguousToken,
            "ambiguous-token",
            400,
            None,
            "INVALID_ARGUMENT",
        ),
        case(
            MalformedBody,
            "malformed-body",
            400,
            None,
            "INVALID_ARGUMENT",
        ),
        case(BodyTimeout, "body-timeout", 408, None, "DEADLINE_EXCEEDED"),
        case(
            ProductMismatch,
            "product-mismatch",
            403,
            None,
            "PERMISSION_DENIED",
        ),
        case(
            BodyTooLarge { limit: 1024 },
            "body-too-large",
            413,
            None,
            "RESOURCE_EXHAUSTED",
        ),
        case(
            Overloaded {
                retry_after: Duration::from_secs(1),
            },
            "overloaded",
            503,
            Some("1"),
            "UNAVAILABLE",
        ),
        case(Internal, "internal", 500, None, "INTERNAL"),
        case(
            Resolve(InvalidToken),
            "invalid-token",
            400,
            None,
            "UNAUTHENTICATED",
        ),
        case(
            Resolve(ExpiredToken),
            "expired-token",
            400,
            None,
            "UNAUTHENTICATED",
        ),
        case(
            Resolve(ResolveError::refused("barred by the seller's records")),
            "refused",
            403,
            None,
            "PERMISSION_DENIED",
        ),
        case(
            Resolve(Throttled),
            "throttled",
            503,
            Some("1"),
            "UNAVAILABLE",
        ),
        case(
            Resolve(ResolveError::unavailable("InternalServiceErrorException")),
            "unavailable",
            503,
            Some("5"),
            "UNAVAILABLE",
        ),
        case(
            Resolve(ApiDisabled),
            "api-disabled",
            503,
            Some("300"),
            "UNAVAILABLE",
        ),
        case(Resolve(Timeout), "timeout", 504, None, "DEADLINE_EXCEEDED"),
        case(NotEntitled, "not-entitled", 403, None, "PERMISSION_DENIED"),
        case(
            Entitlements(Throttled),
            "entitlements-throttled",
            503,
            Some("1"),
            "UNAVAILABLE",
        ),
        case(
            Entitlements(ResolveError::unavailable("InternalServiceErrorException")),
            "entitlements-unavailable",
            503,
            Some("5"),
            "UNAVAILABLE",
        ),
        case(
            Entitlements(Timeout),
            "entitlements-timeout",
            504,
            None,
            "DEADLINE_EXCEEDED",
        ),
    ]
}

/// The variant's name as written in the README (`BodyTooLarge`,
/// `Resolve(Unavailable)`).
fn variant_name(error: &Rejection) -> String {
    fn first_word(debug: &str) -> &str {
        debug.split(['(', ' ', '{']).next().unwrap()
    }
    match error {
        Rejection::Resolve(inner) => format!("Resolve({})", first_word(&format!("{inner:?}"))),
        Rejection::Entitlements(inner) => {
            format!("Entitlements({})", first_word(&format!("{inner:?}")))
        }
        other => first_word(&format!("{other:?}")).to_owned(),
    }
}

/// Sends the request that makes the layer (configured by `configure`) reject
/// with `case.error`, and returns the response and how often the inner
/// service was called.
async fn provoke(
    case: &Case,
    configure: impl Fn(ResolveCustomerLayer) -> ResolveCustomerLayer,
) -> (Response<Bytes>, usize) {
    let token = realistic_token(1);
    let resolver = match &case.error {
        Rejection::Resolve(ResolveError::Timeout) => TestResolver::gated(|t| Ok(customer_for(t))),
        Rejection::Resolve(answer) => {
            let answer = answer.clone();
            TestResolver::with(move |_| Err(answer.clone()))
        }
        Rejection::Internal => TestResolver::with(|_| panic!("resolver bug")),
        Rejection::ProductMismatch => {
            TestResolver::with(|_| Ok(ResolvedCustomer::new("123456789012", "prod-other")))
        }
        _ => TestResolver::ok(),
    };
    let mut resolutions = Resolutions::builder(resolver)
        .resolve_timeout(Duration::from_secs(1))
        .miss_rate_limit(1, 1);
    // The entitlement step: none for this customer (required), or failing.
    match &case.error {
        Rejection::NotEntitled => {
            let none = |_: ResolvedCustomer| async { Ok(Entitlements::none()) };
            resolutions = resolutions.entitlements(none, EntitlementPolicy::Required);
        }
        Rejection::Entitlements(error) => {
            let error = error.clone();
            let failing = move |_: ResolvedCustomer| std::future::ready(Err(error.clone()));
            resolutions = resolutions.entitlements(failing, EntitlementPolicy::Informational);
        }
        _ => {}
    }
    let resolutions = resolutions.build();
    let layer = ResolveCustomerLayer::from_resolutions(resolutions)
        .allowed_product_codes(["prod-test"])
        .max_body_bytes(1024)
        .body_timeout(Duration::from_secs(1));
    let layer = configure(layer);
    let h = Harness::new(layer.clone());
    let form = form_with_token(&token);
    let response = match &case.error {
        Rejection::MissingToken => h.send(form_post("plan=basic")).await,
        Rejection::MalformedToken(_) => h.send(form_post(format!("{form}%20"))).await,
        Rejection::AmbiguousToken => {
            let other = form_with_token(&realistic_token(2));
            h.send(form_post(format!("{form}&{other}"))).await
        }
        Rejection::MalformedBody => {
            h.send(form_post_body(
                FrameBody::chunks(&[form.as_bytes()]).failing(),
            ))
            .await
        }
        Rejection::BodyTimeout => {
            h.send(form_post_body(
                FrameBody::chunks(&[form.as_bytes()]).hanging(),
            ))
            .await
        }
        Rejection::BodyTooLarge { .. } => {
            h.send(form_post(format!("{form}&padding={}", "x".repeat(1024))))
                .await
        }
        Rejection::Overloaded { .. } => {
            // The miss-rate bucket, shared by the layer's clones, holds one new
            // token: another buyer takes it, and this token is refused.
            let first = Harness::new(layer).send(token_post(&realistic_token(3)));
            assert_eq!(first.await.status(), 200);
            h.send(token_post(&token)).await
        }
        _ => h.send(token_post(&token)).await,
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, body), h.handled())
}

#[tokio::test(start_paused = true)]
async fn every_rejection_is_a_problem_response_with_its_status_code_and_headers() {
    for case in cases() {
        let name = variant_name(&case.error);
        let (response, handled) = provoke(&case, |layer| layer).await;
        assert_eq!(handled, 0, "{name}: the handler was called");
        assert_eq!(response.status(), case.status, "{name}");
        let headers = response.headers();
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{name}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{name}");
        assert_eq!(
            headers.get("retry-after").map(|v| v.to_str().unwrap()),
            case.retry_after,
            "{name}: Retry-After"
        );

        let problem: serde_json::Value = serde_json::from_slice(response.body())
            .unwrap_or_else(|e| panic!("{name}: the body is not JSON ({e})"));
        let object = problem.as_object().expect("a JSON object");
        let mut members: Vec<&str> = object.keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(
            members,
            ["code", "detail", "status", "title", "type"],
            "{name}"
        );
        assert_eq!(problem["code"], case.code, "{name}");
        assert_eq!(
            problem["type"],
            format!("urn:tower-resolve-customer:{}", case.code),
            "{name}"
        );
        assert_eq!(problem["status"], case.status, "{name}");
        assert_eq!(
            problem["title"],
            response.status().canonical_reason().unwrap(),
            "{name}"
        );
        assert_eq!(problem["detail"], case.error.public_message(), "{name}");
        assert_eq!(case.error.kind(), case.code, "{name}");
        assert_eq!(case.error.status(), case.status, "{name}");
    }
}

#[cfg(feature = "grpc")]
#[tokio::test(start_paused = true)]
async fn every_rejection_is_a_grpc_status_with_its_code_and_message() {
    use tower_resolve_customer::grpc_status;

    for case in cases() {
        let name = variant_name(&case.error);
        let (response, handled) = provoke(&case, |layer| layer.rejection(grpc_status)).await;
        assert_eq!(handled, 0, "{name}: the handler was called");
        assert_eq!(response.status(), 200, "{name}: trailers-only gRPC answer");
        assert!(response.body().is_empty(), "{name}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/grpc", "{name}");
        assert_eq!(
            headers["grpc-status"],
            grpc_code(case.grpc).to_string(),
            "{name}: expected {}",
            case.grpc
        );
        let message = headers["grpc-message"].to_str().unwrap();
        assert_eq!(
            percent_decode(message),
            case.error.public_message(),
            "{name}"
        );
    }
}

/// The numeric value of a gRPC status name (gRPC's `doc/statuscodes.md`).
#[cfg(feature = "grpc")]
fn grpc_code(name: &str) -> u16 {
    match name {
        "INVALID_ARGUMENT" => 3,
        "DEADLINE_EXCEEDED" => 4,
        "PERMISSION_DENIED" => 7,
        "RESOURCE_EXHAUSTED" => 8,
        "INTERNAL" => 13,
        "UNAVAILABLE" => 14,
        "UNAUTHENTICATED" => 16,
        other => panic!("no such gRPC status in this table: {other}"),
    }
}

#[cfg(feature = "grpc")]
fn percent_decode(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The rows of the README table whose header row starts with `header`, as
/// cells without their backticks.
fn readme_table(header: &str) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut lines = readme.lines().skip_while(|line| !line.starts_with(header));
    assert!(lines.next().is_some(), "README has no table {header}");
    lines
        .skip(1) // the |---| row
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().replace('`', ""))
                .collect()
        })
        .collect()
}

#[test]
fn the_readme_error_table_matches_the_behaviour() {
    let rows = readme_table("| `Rejection` | `code` | Status |");
    let cases = cases();
    assert_eq!(
        rows.len(),
        cases.len(),
        "one README row per error: {rows:?}"
    );
    for case in &cases {
        let name = variant_name(&case.error);
        let row = rows
            .iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("README's error table has no row for {name}"));
        assert_eq!(row[1], case.code, "{name}");
        assert_eq!(row[2], case.status.to_string(), "{name}");
        match case.retry_after {
            None => assert_eq!(row[3], "-", "{name}: Retry-After"),
            Some(seconds) => assert!(
                row[3].starts_with(&format!("{seconds} s"))
                    || row[3].contains(&format!("({seconds} s ")),
                "{name}: README says Retry-After {:?}, the layer sends {seconds}",
                row[3]
            ),
        }
        let retryable = if case.error.is_retryable() {
            "yes"
        } else {
            "no"
        };
        assert_eq!(row[4], retryable, "{name}: retryable");
    }
}

#[test]
fn the_readme_grpc_table_matches_the_behaviour() {
    let rows = readme_table("| `Rejection` | gRPC status |");
    for case in cases() {
        let name = variant_name(&case.error);
        let listed: Vec<&Vec<String>> = rows
            .iter()
            .filter(|row| row[0].split(", ").any(|variant| variant == name))
            .collect();
        assert_eq!(
            listed.len(),
            1,
            "README's gRPC table lists {name} {} times",
            listed.len()
        );
        assert_eq!(listed[0][1], case.grpc, "{name}");
    }
}
