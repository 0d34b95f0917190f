//! The token never appears in logs, rejections or `Debug` output.

mod common;

use common::*;
use tower_resolve_customer::{RegistrationToken, ResolveCustomerLayer, ResolveError};

#[tokio::test]
async fn trace_logs_and_rejections_never_hold_the_token() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Single-threaded runtime: the resolve task logs on this thread too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let good = realistic_token(1);
    let bad = realistic_token(2);
    let good_clone = good.clone();
    let resolver = TestResolver::with(move |t| {
        if t == good_clone {
            Ok(customer_for(t))
        } else {
            Err(ResolveError::InvalidToken)
        }
    });
    let h = Harness::new(ResolveCustomerLayer::from_arc(resolver.clone()));
    let mut bodies = String::new();
    for token in [&good, &good, &bad, &bad] {
        let response = h.send(token_post(token)).await;
        if response.status() != 200 {
            bodies.push_str(&format!("{:?}", response.headers()));
            bodies.push_str(&text(response).await);
        }
    }
    // Two malformed tokens, rejected before any resolve.
    for body in [
        "x-amzn-marketplace-token=secret%20part",
        "x-amzn-marketplace-token=a&x-amzn-marketplace-token=b",
    ] {
        bodies.push_str(&text(h.send(form_post(body)).await).await);
    }

    let logs = capture.contents();
    assert!(
        logs.contains("resolve_customer"),
        "the resolve span is logged:\n{logs}"
    );
    assert!(
        logs.contains("cache=\"hit\"") || logs.contains("cache=hit"),
        "{logs}"
    );
    assert!(logs.contains("invalid-token"), "{logs}");
    for needle in [
        good.as_str(),
        bad.as_str(),
        &good[..40],
        &bad[..40],
        "secret",
    ] {
        assert!(!logs.contains(needle), "token in logs:\n{logs}");
        assert!(!bodies.contains(needle), "token in a rejection: {bodies}");
    }
    let encoded = form_with_token(&good);
    assert!(!logs.contains(&encoded["x-amzn-marketplace-token=".len()..]));

    let token = RegistrationToken::new(good.clone()).unwrap();
    let error = ResolveError::MalformedToken(tower_resolve_customer::TokenError::InvalidCharacter);
    for shown in [
        format!("{token:?}"),
        format!("{token}"),
        format!("{error:?}"),
        error.to_string(),
    ] {
        assert!(!shown.contains(&good[..20]), "{shown}");
    }
}
