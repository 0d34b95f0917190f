//! Where the token is found, and what the handler receives.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::*;
use http::header::{CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body::Frame;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_resolve_customer::{ResolveCustomerLayer, ResolvedCustomer, TokenSource};

const HEADER: HeaderName = HeaderName::from_static("x-amzn-marketplace-token");

#[tokio::test]
async fn form_token_with_base64_punctuation_survives_decoding_once() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let svc = ResolveCustomerLayer::from_arc(resolver.clone()).layer(echo(seen.clone()));

    let token = realistic_token(1);
    assert!(token.contains('+') && token.contains('/') && token.ends_with("=="));
    let body = form_with_token(&token);
    assert!(body.contains("%2B") && body.contains("%2F") && body.contains("%3D"));

    let response = svc.oneshot(form_post(body.clone())).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        resolver.calls_for(&token),
        1,
        "resolver got the decoded token"
    );
    let seen = seen.requests.lock().unwrap();
    assert_eq!(seen[0].customer.as_ref(), Some(&customer_for(&token)));
    assert_eq!(
        seen[0].body,
        body.as_bytes(),
        "body reinstated byte for byte"
    );
}

#[tokio::test]
async fn body_and_trailers_reinstated_when_token_is_not_first() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let svc = ResolveCustomerLayer::from_arc(resolver.clone()).layer(echo(seen.clone()));

    let token = realistic_token(2);
    let body = format!(
        "x-amzn-marketplace-offer-type=free-trial&plan=pro%20plan&{}&note=a%26b",
        form_with_token(&token)
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("abc"));
    // Split into uneven chunks, one boundary inside the token's percent-escape.
    let (a, rest) = body.as_bytes().split_at(40);
    let (b, c) = rest.split_at(57);
    let frames = vec![
        Frame::data(Bytes::copy_from_slice(a)),
        Frame::data(Bytes::copy_from_slice(b)),
        Frame::data(Bytes::copy_from_slice(c)),
        Frame::trailers(trailers.clone()),
    ];
    let request = Request::post("/register")
        .header(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(FrameBody::new(frames))
        .unwrap();

    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(resolver.calls_for(&token), 1);
    let seen = seen.requests.lock().unwrap();
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(seen[0].trailers.as_ref(), Some(&trailers));
    let fields: Vec<(String, String)> =
        form_urlencoded::parse(&seen[0].body).into_owned().collect();
    assert!(fields.contains(&("x-amzn-marketplace-offer-type".into(), "free-trial".into())));
}

#[tokio::test]
async fn header_source() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let svc = ResolveCustomerLayer::from_arc(resolver.clone())
        .token_source(TokenSource::header(HEADER))
        .layer(echo(seen.clone()));
    let token = realistic_token(3);
    let request = Request::get("/")
        .header(HEADER, &token)
        .body(String::from("untouched"))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(resolver.calls_for(&token), 1);
    assert_eq!(text(response).await, "untouched");
    assert_eq!(
        seen.requests.lock().unwrap()[0].customer.as_ref(),
        Some(&customer_for(&token))
    );
}

#[tokio::test]
async fn query_source_decodes_once() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let svc = ResolveCustomerLayer::from_arc(resolver.clone())
        .token_source(TokenSource::query("token"))
        .layer(echo::<String>(seen.clone()));
    let token = realistic_token(4);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("a", "1")
        .append_pair("token", &token)
        .finish();
    let request = Request::get(format!("/register?{query}"))
        .body(String::new())
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(resolver.calls_for(&token), 1);
}

#[tokio::test]
async fn cookie_source_verbatim_and_quoted() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let layer = ResolveCustomerLayer::from_arc(resolver.clone())
        .token_source(TokenSource::cookie("mp_token"));
    let token = realistic_token(5);
    for cookie in [
        format!("session=abc; mp_token={token}; theme=dark"),
        format!("mp_token=\"{token}\""),
    ] {
        let request = Request::get("/")
            .header(COOKIE, cookie)
            .body(String::new())
            .unwrap();
        let response = layer
            .layer(echo(seen.clone()))
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        resolver.calls_for(&token),
        1,
        "second request served by the cache"
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn ordered_list_first_match_wins_and_agreement_is_required() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let layer = ResolveCustomerLayer::from_arc(resolver.clone()).token_source(
        TokenSource::form()
            .or(TokenSource::header(HEADER))
            .or(TokenSource::query("token")),
    );
    let token = realistic_token(6);
    let other = realistic_token(7);

    // Header only (a GET: no form to read).
    let request = Request::get("/")
        .header(HEADER, &token)
        .body(String::new())
        .unwrap();
    assert_eq!(
        layer
            .layer(echo(seen.clone()))
            .oneshot(request)
            .await
            .unwrap()
            .status(),
        200
    );

    // Form and header agree.
    let mut request = form_post(form_with_token(&token));
    request.headers_mut().insert(HEADER, token.parse().unwrap());
    assert_eq!(
        layer
            .layer(echo(seen.clone()))
            .oneshot(request)
            .await
            .unwrap()
            .status(),
        200
    );

    // Form and header disagree: ambiguous, nobody called.
    let mut request = form_post(form_with_token(&token));
    request.headers_mut().insert(HEADER, other.parse().unwrap());
    let response = layer
        .layer(echo(seen.clone()))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(text(response).await.contains("ambiguous-token"));

    assert_eq!(resolver.calls(), 1);
    assert_eq!(resolver.calls_for(&other), 0);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn duplicate_field_same_value_is_fine_different_is_ambiguous() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let layer = ResolveCustomerLayer::from_arc(resolver.clone());
    let (a, b) = (realistic_token(8), realistic_token(9));

    let same = format!("{}&{}", form_with_token(&a), form_with_token(&a));
    let response = layer
        .layer(echo(seen.clone()))
        .oneshot(form_post(same))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let different = format!("{}&{}", form_with_token(&a), form_with_token(&b));
    let response = layer
        .layer(echo(seen.clone()))
        .oneshot(form_post(different))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(resolver.calls_for(&b), 0);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn required_rejects_missing_token_without_calling_inner() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let layer = ResolveCustomerLayer::from_arc(resolver.clone());

    for request in [
        form_post("x-amzn-marketplace-offer-type=free-trial"),
        Request::get("/register").body(String::new()).unwrap(),
        Request::post("/register")
            .header(CONTENT_TYPE, "application/json")
            .body(String::from(r#"{"x-amzn-marketplace-token":"abc"}"#))
            .unwrap(),
    ] {
        let response = layer
            .layer(echo(seen.clone()))
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(text(response).await.contains("missing-token"));
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    assert_eq!(resolver.calls(), 0);
}

#[tokio::test]
async fn optional_passes_through_untouched_without_extension() {
    let resolver = TestResolver::ok();
    let seen = Arc::new(Seen::default());
    let layer = ResolveCustomerLayer::from_arc(resolver.clone()).optional();

    let form = "plan=pro&x-amzn-marketplace-offer-type=free-trial";
    let response = layer
        .layer(echo(seen.clone()))
        .oneshot(form_post(form))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, form);

    let request = Request::put("/x").body(String::from("raw bytes")).unwrap();
    let response = layer
        .layer(echo(seen.clone()))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(text(response).await, "raw bytes");

    // A token that is present but malformed is still refused.
    let response = layer
        .layer(echo(seen.clone()))
        .oneshot(form_post("x-amzn-marketplace-token=has+space"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(text(response).await.contains("malformed-token"));

    let seen_requests = seen.requests.lock().unwrap();
    assert_eq!(seen_requests.len(), 2);
    assert!(seen_requests.iter().all(|r| r.customer.is_none()));
    assert_eq!(resolver.calls(), 0);
}

#[tokio::test]
async fn product_allowlist_rejects_other_products_with_403() {
    let resolver = TestResolver::with(|t| {
        Ok(ResolvedCustomer::new(
            "123456789012",
            if t.starts_with('A') {
                "prod-a"
            } else {
                "prod-b"
            },
        ))
    });
    let seen = Arc::new(Seen::default());
    let layer = ResolveCustomerLayer::from_arc(resolver.clone()).allowed_product_codes(["prod-a"]);

    let response = layer
        .layer(echo(seen.clone()))
        .oneshot(form_post(form_with_token("Aaaa")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = layer
        .layer(echo(seen.clone()))
        .oneshot(form_post(form_with_token("Bbbb")))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body = text(response).await;
    assert!(body.contains("product-mismatch"), "{body}");
    assert!(!body.contains("Bbbb"));
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn custom_rejection_responder() {
    let seen = Arc::new(Seen::default());
    let svc = ResolveCustomerLayer::new(|_: tower_resolve_customer::RegistrationToken| async {
        Err(tower_resolve_customer::ResolveError::ExpiredToken)
    })
    .rejection(|e: &tower_resolve_customer::ResolveError| {
        let mut r = http::Response::new(format!("<p>{}</p>", e.kind()));
        *r.status_mut() = e.status();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        r
    })
    .layer(echo(seen.clone()));
    let response = svc
        .oneshot(form_post(form_with_token("abc")))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html");
    assert_eq!(text(response).await, "<p>expired-token</p>");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}
