//! Where the token is found, and what the handler receives.

mod common;

use bytes::Bytes;
use common::*;
use http::header::{CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderValue, Request};
use http_body::Frame;
use tower_resolve_customer::{ResolveCustomerLayer, ResolvedCustomer, TokenSource};

use tower_resolve_customer::TOKEN_HEADER as HEADER;

#[tokio::test]
async fn form_token_with_base64_punctuation_survives_decoding_once() {
    let resolver = TestResolver::ok();
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));

    let token = realistic_token(1);
    assert!(token.contains('+') && token.contains('/') && token.ends_with("=="));
    let body = form_with_token(&token);
    assert!(body.contains("%2B") && body.contains("%2F") && body.contains("%3D"));

    let response = h.send(form_post(body.clone())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        resolver.calls_for(&token),
        1,
        "resolver got the decoded token"
    );
    let seen = h.requests();
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
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));

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

    let response = h.send(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(resolver.calls_for(&token), 1);
    let seen = h.requests();
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(seen[0].trailers.as_ref(), Some(&trailers));
    let fields: Vec<(String, String)> =
        form_urlencoded::parse(&seen[0].body).into_owned().collect();
    assert!(fields.contains(&("x-amzn-marketplace-offer-type".into(), "free-trial".into())));
}

/// `TokenSource::form_field` reads the named field, urlencoded, and only it:
/// the default field name is just another field there.
#[tokio::test]
async fn form_field_source_reads_the_named_field_only() {
    let resolver = TestResolver::ok();
    let h = Harness::new(
        ResolveCustomerLayer::new(resolver.clone())
            .token_source(TokenSource::form_field("registration")),
    );
    let token = realistic_token(7);
    let decoy = realistic_token(8);
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("plan", "pro")
        .append_pair(tower_resolve_customer::TOKEN_FIELD, &decoy)
        .append_pair("registration", &token)
        .finish();

    let response = h.send(form_post(body.clone())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        resolver.calls_for(&token),
        1,
        "the named field was resolved"
    );
    assert_eq!(resolver.calls(), 1, "the default field was not read");
    {
        let seen = h.requests();
        assert_eq!(seen[0].customer.as_ref(), Some(&customer_for(&token)));
        assert_eq!(seen[0].body, body.as_bytes());
    }

    // Only the default field: no token for this source.
    let response = h.send(token_post(&decoy)).await;
    assert_eq!(response.status(), 400);
    assert!(text(response).await.contains("missing-token"));
    assert_eq!(resolver.calls(), 1);
}

#[tokio::test]
async fn header_source() {
    let resolver = TestResolver::ok();
    let h = Harness::new(
        ResolveCustomerLayer::new(resolver.clone()).token_source(TokenSource::header(HEADER)),
    );
    let token = realistic_token(3);
    let request = Request::get("/")
        .header(HEADER, &token)
        .body(String::from("untouched"))
        .unwrap();
    let response = h.send(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(resolver.calls_for(&token), 1);
    assert_eq!(text(response).await, "untouched");
    assert_eq!(
        h.requests()[0].customer.as_ref(),
        Some(&customer_for(&token))
    );
}

#[tokio::test]
async fn query_source_decodes_once() {
    let resolver = TestResolver::ok();
    let h = Harness::new(
        ResolveCustomerLayer::new(resolver.clone()).token_source(TokenSource::query("token")),
    );
    let token = realistic_token(4);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("a", "1")
        .append_pair("token", &token)
        .finish();
    let request = Request::get(format!("/register?{query}"))
        .body(String::new())
        .unwrap();
    assert_eq!(h.send(request).await.status(), 200);
    assert_eq!(resolver.calls_for(&token), 1);
}

#[tokio::test]
async fn cookie_source_verbatim_and_quoted() {
    let resolver = TestResolver::ok();
    let h = Harness::new(
        ResolveCustomerLayer::new(resolver.clone()).token_source(TokenSource::cookie("mp_token")),
    );
    let token = realistic_token(5);
    for cookie in [
        format!("session=abc; mp_token={token}; theme=dark"),
        format!("mp_token=\"{token}\""),
    ] {
        let request = Request::get("/")
            .header(COOKIE, cookie)
            .body(String::new())
            .unwrap();
        assert_eq!(h.send(request).await.status(), 200);
    }
    assert_eq!(
        resolver.calls_for(&token),
        1,
        "second request served by the cache"
    );
    assert_eq!(h.handled(), 2);
}

#[tokio::test]
async fn ordered_list_first_match_wins_and_agreement_is_required() {
    let resolver = TestResolver::ok();
    let h = Harness::new(
        ResolveCustomerLayer::new(resolver.clone()).token_source(
            TokenSource::form()
                .or(TokenSource::header(HEADER))
                .or(TokenSource::query("token")),
        ),
    );
    let token = realistic_token(6);
    let other = realistic_token(7);
    // The form post carrying `token`, with `header` in the header as well.
    let form_and_header = |header: &str| {
        let mut request = token_post(&token);
        request
            .headers_mut()
            .insert(HEADER, header.parse().unwrap());
        request
    };

    // Header only (a GET: no form to read); then form and header agree.
    let header_only = Request::get("/")
        .header(HEADER, &token)
        .body(String::new())
        .unwrap();
    for request in [header_only, form_and_header(&token)] {
        assert_eq!(h.send(request).await.status(), 200);
    }

    // Form and header disagree: ambiguous, nobody called.
    let response = h.send(form_and_header(&other)).await;
    assert_eq!(response.status(), 400);
    assert!(text(response).await.contains("ambiguous-token"));

    assert_eq!(resolver.calls(), 1);
    assert_eq!(resolver.calls_for(&other), 0);
    assert_eq!(h.handled(), 2);
}

#[tokio::test]
async fn duplicate_field_same_value_is_fine_different_is_ambiguous() {
    let resolver = TestResolver::ok();
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));
    let (a, b) = (realistic_token(8), realistic_token(9));

    let same = format!("{}&{}", form_with_token(&a), form_with_token(&a));
    assert_eq!(h.send(form_post(same)).await.status(), 200);

    let different = format!("{}&{}", form_with_token(&a), form_with_token(&b));
    assert_eq!(h.send(form_post(different)).await.status(), 400);
    assert_eq!(resolver.calls_for(&b), 0);
    assert_eq!(h.handled(), 1);
}

#[tokio::test]
async fn required_rejects_missing_token_without_calling_inner() {
    let resolver = TestResolver::ok();
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));

    for request in [
        form_post("x-amzn-marketplace-offer-type=free-trial"),
        Request::get("/register").body(String::new()).unwrap(),
        Request::post("/register")
            .header(CONTENT_TYPE, "application/json")
            .body(String::from(r#"{"x-amzn-marketplace-token":"abc"}"#))
            .unwrap(),
    ] {
        let response = h.send(request).await;
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(text(response).await.contains("missing-token"));
    }
    assert_eq!(h.handled(), 0);
    assert_eq!(resolver.calls(), 0);
}

#[tokio::test]
async fn optional_passes_through_untouched_without_extension() {
    let resolver = TestResolver::ok();
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()).optional());

    let form = "plan=pro&x-amzn-marketplace-offer-type=free-trial";
    let response = h.send(form_post(form)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, form);

    let request = Request::put("/x").body(String::from("raw bytes")).unwrap();
    assert_eq!(text(h.send(request).await).await, "raw bytes");

    // A token that is present but malformed is still refused.
    let response = h
        .send(form_post("x-amzn-marketplace-token=has+space"))
        .await;
    assert_eq!(response.status(), 400);
    assert!(text(response).await.contains("malformed-token"));

    let seen_requests = h.requests();
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
    let h =
        Harness::new(ResolveCustomerLayer::new(resolver.clone()).allowed_product_codes(["prod-a"]));

    assert_eq!(h.send(token_post("Aaaa")).await.status(), 200);
    let response = h.send(token_post("Bbbb")).await;
    assert_eq!(response.status(), 403);
    let body = text(response).await;
    assert!(body.contains("product-mismatch"), "{body}");
    assert!(!body.contains("Bbbb"));
    assert_eq!(h.handled(), 1);
}

#[tokio::test]
async fn custom_rejection_responder() {
    let h = Harness::new(
        ResolveCustomerLayer::new(|_: tower_resolve_customer::RegistrationToken| async {
            Err(tower_resolve_customer::ResolveError::ExpiredToken)
        })
        .rejection(|e: &tower_resolve_customer::Rejection| {
            let mut r = http::Response::new(format!("<p>{}</p>", e.kind()));
            *r.status_mut() = e.status();
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }),
    );
    let response = h.send(token_post("abc")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html");
    assert_eq!(text(response).await, "<p>expired-token</p>");
    assert_eq!(h.handled(), 0);
}

/// A token another route already resolved (so a cache hit here) is still
/// held to this route's own length limit, in every source.
#[tokio::test]
async fn a_cached_token_is_held_to_each_routes_length_limit() {
    let resolver = TestResolver::ok();
    let resolutions = tower_resolve_customer::Resolutions::new(resolver.clone());
    let token = realistic_token(5);
    let tight = |source: TokenSource| {
        Harness::new(
            resolutions
                .layer()
                .token_source(source)
                .max_token_len(token.len() - 1),
        )
    };
    let roomy = Harness::new(
        resolutions
            .layer()
            .token_source(TokenSource::header(HEADER)),
    );
    let by_header = Request::get("/")
        .header(HEADER, &token)
        .body(String::new())
        .unwrap();
    assert_eq!(roomy.send(by_header).await.status(), 200);
    assert_eq!(resolver.calls_for(&token), 1);

    let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let cases = [
        (
            tight(TokenSource::header(HEADER)),
            Request::get("/")
                .header(HEADER, &token)
                .body(String::new())
                .unwrap(),
        ),
        (
            tight(TokenSource::cookie("registration")),
            Request::get("/")
                .header(COOKIE, format!("registration={token}"))
                .body(String::new())
                .unwrap(),
        ),
        (
            tight(TokenSource::query("token")),
            Request::get(format!("/?token={encoded}"))
                .body(String::new())
                .unwrap(),
        ),
        (tight(TokenSource::form()), token_post(&token)),
    ];
    for (harness, request) in cases {
        let response = harness.send(request).await;
        assert_eq!(response.status(), 400);
        let body = text(response).await;
        assert!(body.contains("\"code\":\"malformed-token\""), "{body}");
        assert_eq!(harness.handled(), 0);
    }
    assert_eq!(resolver.calls_for(&token), 1);
}
