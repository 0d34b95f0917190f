//! Body limits, unreadable bodies, and the inner service's readiness.

mod common;

use std::sync::atomic::Ordering;
use std::task::Poll;

use bytes::Bytes;
use common::*;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::Full;
use tower_resolve_customer::{RequestBody, ResolveCustomerLayer, ResolvedCustomer};
use tower_test::mock;

#[tokio::test]
async fn content_length_over_limit_is_413_before_reading() {
    let resolver = TestResolver::ok();
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()).max_body_bytes(64));
    let body = FrameBody::chunks(&[b"x-amzn-marketplace-token=abc"]);
    let polled = body.polled.clone();
    let mut request = form_post_body(body);
    request
        .headers_mut()
        .insert(CONTENT_LENGTH, "65".parse().unwrap());
    let response = h.send(request).await;
    assert_eq!(response.status(), 413);
    assert!(text(response).await.contains("body-too-large"));
    assert_eq!(polled.load(Ordering::SeqCst), 0, "body never read");
    assert_eq!(resolver.calls(), 0);
    assert_eq!(h.handled(), 0);
}

#[tokio::test]
async fn streamed_body_growing_past_limit_is_413() {
    let resolver = TestResolver::ok();
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()).max_body_bytes(64));
    let chunk = [b'a'; 30];
    let body = FrameBody::chunks(&[b"x-amzn-marketplace-token=abc&pad=", &chunk, &chunk, &chunk]);
    assert_eq!(h.send(form_post_body(body)).await.status(), 413);
    assert_eq!(resolver.calls(), 0);
    assert_eq!(h.handled(), 0);
}

#[tokio::test]
async fn body_exactly_at_limit_is_accepted() {
    let resolver = TestResolver::ok();
    let body = form_with_token("abc");
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()).max_body_bytes(body.len()));
    assert_eq!(h.send(form_post(body)).await.status(), 200);
}

#[tokio::test]
async fn failing_body_stream_is_400_and_nothing_is_called() {
    let resolver = TestResolver::ok();
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()).optional());
    let body = FrameBody::chunks(&[b"x-amzn-marketplace-token=abc"]).failing();
    let response = h.send(form_post_body(body)).await;
    assert_eq!(response.status(), 400);
    assert!(text(response).await.contains("malformed-body"));
    assert_eq!(resolver.calls(), 0);
    assert_eq!(h.handled(), 0);
}

#[tokio::test(start_paused = true)]
async fn body_that_never_finishes_is_408_after_the_body_timeout() {
    let resolver = TestResolver::ok();
    let h = Harness::new(
        ResolveCustomerLayer::new(resolver.clone()).body_timeout(std::time::Duration::from_secs(5)),
    );
    let body = FrameBody::chunks(&[b"x-amzn-marketplace-token=abc&pad="]).hanging();
    let started = tokio::time::Instant::now();
    assert_eq!(h.send(form_post_body(body)).await.status(), 408);
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(5));
    assert_eq!(resolver.calls(), 0);
    assert_eq!(h.handled(), 0);
}

#[tokio::test]
async fn non_form_bodies_are_streamed_not_buffered() {
    // A body larger than the limit passes when the layer has no reason to read it.
    let resolver = TestResolver::ok();
    let h = Harness::new(
        ResolveCustomerLayer::new(resolver.clone())
            .max_body_bytes(8)
            .optional(),
    );
    let request = Request::post("/upload")
        .header(CONTENT_TYPE, "application/octet-stream")
        .body("0123456789abcdef".to_string())
        .unwrap();
    let response = h.send(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "0123456789abcdef");
}

type MockRequest = Request<RequestBody<String>>;
type MockResponse = Response<Full<Bytes>>;

#[tokio::test]
async fn readiness_is_forwarded_and_only_the_ready_instance_is_called() {
    let resolver = TestResolver::ok();
    let layer = ResolveCustomerLayer::new(resolver.clone());
    let (mut service, mut handle) = mock::spawn_layer::<MockRequest, MockResponse, _>(layer);

    // Not ready: neither are we.
    handle.allow(0);
    assert!(service.poll_ready().is_pending());

    // Ready: the instance that was polled ready is the one called (tower-test's
    // mock panics when a clone that was never polled ready is called).
    handle.allow(1);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    // The resolve happens inside the response future: drive it on its own task.
    let response = tokio::spawn(service.call(token_post("tok")));

    let (request, send) = handle.next_request().await.expect("inner called");
    assert_eq!(
        request.extensions().get::<ResolvedCustomer>(),
        Some(&customer_for("tok"))
    );
    send.send_response(Response::new(Full::new(Bytes::from_static(b"ok"))));
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "ok");

    // The slot left behind is a fresh clone that must be polled ready again.
    assert!(service.poll_ready().is_pending());
}

#[tokio::test]
async fn rejected_request_never_reaches_inner() {
    let resolver = TestResolver::ok();
    let layer = ResolveCustomerLayer::new(resolver.clone());
    let (mut service, mut handle) = mock::spawn_layer::<MockRequest, MockResponse, _>(layer);
    handle.allow(1);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    let response = service
        .call(Request::post("/register").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        tokio::time::timeout(std::time::Duration::ZERO, handle.next_request())
            .await
            .is_err()
    );
}
