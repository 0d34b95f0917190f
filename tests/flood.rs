//! Floods of new tokens must not burn the seller's `ResolveCustomer` quota:
//! the concurrency bound and the miss rate limit refuse them with 503 before
//! any upstream call, and the caches stay within their capacities.

mod common;

use std::time::Duration;

use common::{Harness, TestResolver, customer_for, text};
use http::Request;
use http::header::RETRY_AFTER;
use tower_resolve_customer::{
    DEFAULT_MAX_CONCURRENT_RESOLVES, Resolutions, ResolutionsBuilder, ResolveCustomerLayer,
    ResolveError, TOKEN_HEADER, TokenSource,
};

fn header_request(token: &str) -> Request<String> {
    Request::post("/register")
        .header(TOKEN_HEADER, token)
        .body(String::new())
        .unwrap()
}

fn header_layer(resolutions: ResolutionsBuilder) -> ResolveCustomerLayer {
    ResolveCustomerLayer::from_resolutions(resolutions.build())
        .token_source(TokenSource::header(TOKEN_HEADER))
}

/// Deterministic pseudo-random tokens (xorshift64), base64-alphabet.
struct Tokens(u64);

impl Tokens {
    fn next_token(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..64)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ALPHABET[(self.0 % 64) as usize] as char
            })
            .collect()
    }
}

#[tokio::test]
async fn upstream_calls_are_bounded_and_joiners_are_never_refused() {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let harness = Harness::new(header_layer(
        Resolutions::builder(resolver.clone()).max_concurrent_resolves(4),
    ));

    let held: Vec<_> = (0..4)
        .map(|i| tokio::spawn(harness.send(header_request(&format!("held{i}")))))
        .collect();
    resolver.wait_started(4).await;
    assert_eq!(harness.layer.resolutions().stats().upstream_calls, 4);

    // Every slot is busy: new tokens are refused at once, without an upstream call.
    for i in 0..96 {
        let response = harness.send(header_request(&format!("new{i}"))).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert!(text(response).await.contains("overloaded"));
    }
    assert_eq!(resolver.calls(), 4);

    // A double submit of a token being resolved joins that resolve.
    let joiner = tokio::spawn(harness.send(header_request("held0")));
    tokio::task::yield_now().await;
    resolver.release(4);
    for task in held {
        assert_eq!(task.await.unwrap().status(), 200);
    }
    assert_eq!(joiner.await.unwrap().status(), 200);
    assert_eq!(resolver.calls(), 4);
    assert_eq!(harness.handled(), 5);

    // Slots are free again: a refused token now goes through.
    resolver.release(1);
    assert_eq!(harness.send(header_request("new0")).await.status(), 200);
    let stats = harness.layer.resolutions().stats();
    assert_eq!((stats.upstream_calls, stats.resolving), (0, 0));
}

#[tokio::test]
async fn default_bound_is_32() {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let harness = Harness::new(header_layer(Resolutions::builder(resolver.clone())));
    let held: Vec<_> = (0..DEFAULT_MAX_CONCURRENT_RESOLVES)
        .map(|i| tokio::spawn(harness.send(header_request(&format!("t{i}")))))
        .collect();
    resolver
        .wait_started(DEFAULT_MAX_CONCURRENT_RESOLVES as u32)
        .await;
    let refused = harness.send(header_request("one-too-many")).await;
    assert_eq!(refused.status(), 503);
    resolver.release(DEFAULT_MAX_CONCURRENT_RESOLVES);
    for task in held {
        assert_eq!(task.await.unwrap().status(), 200);
    }
    assert_eq!(resolver.calls(), DEFAULT_MAX_CONCURRENT_RESOLVES);
}

/// 100,000 random tokens over 10 simulated seconds against a limit of 50 new
/// tokens a second in bursts of 20: at most 20 + 50 × 10 upstream calls, every
/// other request refused with 503, caches within capacity, and a real buyer
/// served once the flood stops.
#[tokio::test(start_paused = true)]
async fn random_token_flood_stays_within_the_miss_rate() {
    const FLOOD: usize = 100_000;
    const BATCH: usize = 1_000;
    const STEP: Duration = Duration::from_millis(100);
    let resolver = TestResolver::with(|t| {
        if t == "real-buyer" {
            Ok(customer_for(t))
        } else {
            Err(ResolveError::InvalidToken)
        }
    });
    let harness = Harness::new(header_layer(
        Resolutions::builder(resolver.clone())
            .miss_rate_limit(50, 20)
            .cache_capacity(100)
            .negative_cache_capacity(1_000),
    ));

    let mut tokens = Tokens(0x9E37_79B9_7F4A_7C15);
    let started = tokio::time::Instant::now();
    let (mut invalid, mut refused) = (0usize, 0usize);
    for _ in 0..FLOOD / BATCH {
        let batch: Vec<_> = (0..BATCH)
            .map(|_| tokio::spawn(harness.send(header_request(&tokens.next_token()))))
            .collect();
        for task in batch {
            match task.await.unwrap().status().as_u16() {
                400 => invalid += 1,
                503 => refused += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        tokio::time::advance(STEP).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 20.0 + 50.0 * elapsed;
    println!(
        "{} upstream calls and {refused} refusals for {FLOOD} tokens in {elapsed:.1} simulated s (allowed {allowed})",
        resolver.calls()
    );

    assert_eq!(invalid + refused, FLOOD);
    assert_eq!(
        invalid,
        resolver.calls(),
        "every admitted token went upstream once"
    );
    assert!(
        resolver.calls() as f64 <= allowed,
        "{} upstream calls in {elapsed:.1} s, allowed {allowed}",
        resolver.calls()
    );
    assert!(
        resolver.calls() as f64 >= allowed - 60.0,
        "the limiter should not refuse more than its rate: {} calls, allowed {allowed}",
        resolver.calls()
    );
    assert_eq!(harness.handled(), 0, "no junk token reached the handler");

    let stats = harness.layer.resolutions().stats();
    assert!(
        stats.refusals <= 1_000,
        "negative cache over capacity: {stats:?}"
    );
    assert!(stats.customers <= 100, "{stats:?}");
    assert_eq!((stats.resolving, stats.upstream_calls), (0, 0), "{stats:?}");

    tokio::time::advance(Duration::from_secs(1)).await;
    let buyer = harness.send(header_request("real-buyer")).await;
    assert_eq!(buyer.status(), 200);
    assert_eq!(harness.handled(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_refusal_says_when_to_retry() {
    let resolver = TestResolver::ok();
    let harness = Harness::new(header_layer(
        Resolutions::builder(resolver.clone()).miss_rate_limit(1, 1),
    ));
    assert_eq!(harness.send(header_request("first")).await.status(), 200);
    let refused = harness.send(header_request("second")).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()[RETRY_AFTER], "1");
    // Cached answers never take from the bucket.
    assert_eq!(harness.send(header_request("first")).await.status(), 200);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(harness.send(header_request("second")).await.status(), 200);
    assert_eq!(resolver.calls(), 2);
}
