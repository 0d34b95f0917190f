//! The token never appears in logs, rejections or `Debug` output.

mod common;

use common::*;
use tower_layer::Layer;
use tower_resolve_customer::{
    RegistrationToken, Resolutions, ResolveCustomerLayer, ResolveError, ResolvedCustomer,
};

#[tokio::test]
async fn trace_logs_and_rejections_never_hold_the_token() {
    // Single-threaded runtime: the resolve task logs on this thread too.
    let (capture, _guard) = Capture::logs("trace");

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
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));
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
    let error = tower_resolve_customer::Rejection::MalformedToken(
        tower_resolve_customer::TokenError::InvalidCharacter,
    );
    for shown in [
        format!("{token:?}"),
        format!("{token}"),
        format!("{error:?}"),
        error.to_string(),
    ] {
        assert!(!shown.contains(&good[..20]), "{shown}");
    }
}

/// Every way a request can fail, each with its own realistic token, logged at
/// TRACE with span closes: no token, nor a 40-character slice of one, appears
/// in the logs, the rejection bodies or headers, or the `Debug` / `Display` of
/// the errors, the layer and the service.
#[tokio::test(start_paused = true)]
async fn no_failure_path_logs_or_shows_the_token() {
    let (capture, _guard) = Capture::logs("trace");

    let outcomes: Vec<(String, Option<ResolveError>)> = vec![
        (realistic_token(10), None),
        (realistic_token(11), Some(ResolveError::InvalidToken)),
        (realistic_token(12), Some(ResolveError::ExpiredToken)),
        (realistic_token(13), Some(ResolveError::Throttled)),
        (realistic_token(14), Some(ResolveError::ApiDisabled)),
        (
            realistic_token(15),
            Some(ResolveError::unavailable("InternalServiceErrorException")),
        ),
        (realistic_token(16), Some(ResolveError::Timeout)),
    ];
    let panics = realistic_token(17);
    let other_product = realistic_token(18);
    let script = outcomes.clone();
    let (panics_in, other_in) = (panics.clone(), other_product.clone());
    let resolver = TestResolver::with(move |t| {
        if t == panics_in {
            panic!("resolver bug");
        }
        if t == other_in {
            return Ok(ResolvedCustomer::new("123456789012", "prod-other"));
        }
        match script.iter().find(|(token, _)| token == t) {
            Some((_, Some(error))) => Err(error.clone()),
            _ => Ok(customer_for(t)),
        }
    });
    let layer = ResolveCustomerLayer::new(resolver.clone())
        .allowed_product_codes(["prod-test"])
        .max_body_bytes(1024)
        .body_timeout(std::time::Duration::from_secs(1));
    let h = Harness::new(layer.clone());
    let mut shown = String::new();
    // Rejections in full; for requests that reached the handler (which echoes
    // the body it was given), the response head only.
    let mut show = async |response: http::Response<_>| {
        shown.push_str(&format!("{response:?}"));
        if response.status() != 200 {
            shown.push_str(&text(response).await);
        }
    };

    for (token, _) in &outcomes {
        show(h.send(token_post(token)).await).await;
        show(h.send(token_post(token)).await).await; // cached or retried
    }
    show(h.send(token_post(&panics)).await).await;
    show(h.send(token_post(&other_product)).await).await;

    // Rejected before any resolve.
    let (a, b) = (realistic_token(19), realistic_token(20));
    let too_long = format!("{}&pad={}", form_with_token(&a), "x".repeat(2048));
    let requests = [
        form_post(format!("{}&{}", form_with_token(&a), form_with_token(&b))),
        form_post(format!("{}%20", form_with_token(&a))),
        form_post(too_long),
    ];
    for request in requests {
        show(h.send(request).await).await;
    }
    let hanging = form_post_body(FrameBody::chunks(&[form_with_token(&a).as_bytes()]).hanging());
    show(h.send(hanging).await).await;
    let failing = form_post_body(FrameBody::chunks(&[form_with_token(&b).as_bytes()]).failing());
    show(h.send(failing).await).await;

    // Over the miss rate: refused without going upstream.
    let limited = Harness::new(
        Resolutions::builder(resolver.clone())
            .miss_rate_limit(1, 1)
            .build()
            .layer(),
    );
    show(limited.send(token_post(&realistic_token(21))).await).await;
    show(limited.send(token_post(&realistic_token(22))).await).await;

    let mut tokens: Vec<String> = outcomes.iter().map(|(t, _)| t.clone()).collect();
    tokens.extend([
        panics,
        other_product,
        a,
        b,
        realistic_token(21),
        realistic_token(22),
    ]);
    let logs = capture.contents();
    for kind in [
        "invalid-token",
        "expired-token",
        "throttled",
        "api-disabled",
        "unavailable",
        "timeout",
        "internal",
        "product-mismatch",
        "ambiguous-token",
        "malformed-token",
        "body-too-large",
        "body-timeout",
        "malformed-body",
        "overloaded",
    ] {
        assert!(
            shown.contains(kind),
            "no {kind} rejection was produced:\n{shown}"
        );
    }
    let debug = format!(
        "{:?} {:?}",
        layer,
        h.layer.layer(tower::service_fn(|_: ()| async {
            Ok::<_, std::convert::Infallible>(())
        }))
    );
    for token in &tokens {
        for needle in [token.as_str(), &token[..40], &token[100..140]] {
            assert!(!logs.contains(needle), "token in logs:\n{logs}");
            assert!(!shown.contains(needle), "token in a rejection:\n{shown}");
            assert!(!debug.contains(needle), "token in Debug: {debug}");
        }
        let encoded = form_with_token(token);
        assert!(
            !logs.contains(&encoded[encoded.len() - 40..]),
            "encoded token in logs"
        );
    }
    for (_, error) in outcomes
        .iter()
        .filter_map(|(t, e)| e.as_ref().map(|e| (t, e)))
    {
        for text in [format!("{error:?}"), error.to_string()] {
            assert!(tokens.iter().all(|t| !text.contains(&t[..40])), "{text}");
        }
    }
}

/// The `resolve_customer` span records how each request was answered, under
/// the labels the README documents: `miss` (it started the resolve),
/// `joined` (it waited for another request's), `refused` (the flood limit
/// kept it from going upstream) and `hit` (from the cache).
#[tokio::test]
async fn the_resolve_span_records_the_cache_status_of_each_request() {
    let (capture, _guard) = Capture::logs("tower_resolve_customer=debug");
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let h = Harness::new(
        Resolutions::builder(resolver.clone())
            .max_concurrent_resolves(1)
            .build()
            .layer(),
    );
    let token = realistic_token(30);
    let mut seen = 0;
    let mut logged_since = |capture: &Capture| {
        let logs = capture.contents();
        let new = logs[seen..].to_owned();
        seen = logs.len();
        new
    };
    let labels = |logs: &str| -> Vec<&'static str> {
        ["miss", "joined", "refused", "hit"]
            .into_iter()
            .filter(|label| {
                logs.contains(&format!("cache=\"{label}\""))
                    || logs.contains(&format!("cache={label}"))
            })
            .collect()
    };

    let first = tokio::spawn(h.send(token_post(&token)));
    resolver.wait_started(1).await;
    let second = tokio::spawn(h.send(token_post(&token)));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // Another token while the only upstream slot is busy.
    let refused = h.send(token_post(&realistic_token(31))).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(labels(&logged_since(&capture)), ["refused"]);

    resolver.release(1);
    within("the miss and the joined request", async {
        assert_eq!(first.await.unwrap().status(), 200);
        assert_eq!(second.await.unwrap().status(), 200);
    })
    .await;
    assert_eq!(labels(&logged_since(&capture)), ["miss", "joined"]);

    assert_eq!(h.send(token_post(&token)).await.status(), 200);
    assert_eq!(labels(&logged_since(&capture)), ["hit"]);
    assert_eq!(resolver.calls(), 1);
}
