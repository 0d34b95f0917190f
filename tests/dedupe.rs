//! One upstream call per token: concurrency, cancellation, negative and
//! transient answers, expiry.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tower_resolve_customer::{Resolutions, ResolveCustomerLayer, ResolveError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_same_token_one_call() {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));
    let token = realistic_token(1);

    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(h.send(token_post(&token))))
        .collect();
    within("the 1,000 submits of one token", async {
        resolver.wait_started(1).await;
        resolver.release(1);
        for task in tasks {
            assert_eq!(task.await.unwrap().status(), 200);
        }
    })
    .await;
    assert_eq!(resolver.calls(), 1);
    assert_eq!(h.handled(), 1000);
    let expected = customer_for(&token);
    assert!(
        h.requests()
            .iter()
            .all(|r| r.customer.as_ref() == Some(&expected))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_tokens_one_call_each() {
    const K: usize = 50;
    let resolver = TestResolver::ok();
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));
    let tokens: Vec<String> = (0..K).map(|i| format!("tok{i}")).collect();
    let tasks: Vec<_> = tokens
        .iter()
        .flat_map(|t| [t, t, t])
        .map(|token| tokio::spawn(h.send(token_post(token))))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().status(), 200);
    }
    assert_each_request_got_its_own_customer(&h, 3 * K);
    assert_eq!(resolver.calls(), K);
    for t in &tokens {
        assert_eq!(resolver.calls_for(t), 1);
    }
}

/// Concurrent buyers with distinct tokens, whose answers come back in an
/// order unrelated to their arrival, each get their own customer: on the
/// resolve they started, on the resolves they joined, and from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_released_in_shuffled_order_reach_their_own_buyers() {
    const K: usize = 40;
    const SUBMITS: usize = 5;
    let resolver = TestResolver::gated_per_token(|t| Ok(customer_for(t)));
    let h = Harness::new(
        Resolutions::builder(resolver.clone())
            .max_concurrent_resolves(K)
            .build()
            .layer(),
    );
    // Anagrams too: the same characters in another order are another buyer.
    let mut tokens: Vec<String> = (0..K as u8 / 2).map(realistic_token).collect();
    let anagrams: Vec<String> = tokens
        .iter()
        .map(|t| t[..t.len() - 2].chars().rev().chain("==".chars()).collect())
        .collect();
    tokens.extend(anagrams);
    let customers: std::collections::HashSet<_> = tokens.iter().map(|t| customer_for(t)).collect();
    assert_eq!(
        customers.len(),
        K,
        "the fixture gives every token its own customer"
    );

    let tasks: Vec<_> = (0..SUBMITS)
        .flat_map(|_| tokens.iter())
        .map(|token| tokio::spawn(h.send(token_post(token))))
        .collect();
    within("the buyers with shuffled answers", async {
        // Each token starts a resolve of its own. Should a bug merge two
        // tokens' resolves, fewer start: carry on, so that the check below
        // names the failure (a buyer handed another buyer's customer).
        let all_started = Duration::from_secs(5);
        let _ = tokio::time::timeout(all_started, resolver.wait_started(K as u32)).await;
        for i in shuffled(K, 0x5eed) {
            resolver.release_token(&tokens[i]);
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().status(), 200);
        }
    })
    .await;
    assert_each_request_got_its_own_customer(&h, SUBMITS * K);
    assert_eq!(resolver.calls(), K);

    // The same buyers again, now answered from the cache.
    for i in shuffled(K, 0xcafe) {
        assert_eq!(h.send(token_post(&tokens[i])).await.status(), 200);
    }
    assert_each_request_got_its_own_customer(&h, (SUBMITS + 1) * K);
    assert_eq!(resolver.calls(), K);
}

/// Every request the handler saw carries the customer of the token in its
/// own body, and there were `expected` of them.
fn assert_each_request_got_its_own_customer(h: &Harness, expected: usize) {
    let requests = h.requests();
    assert_eq!(requests.len(), expected);
    for request in requests.iter() {
        let token = token_in(&request.body).expect("the body carries the token");
        assert_eq!(
            request.customer.as_ref(),
            Some(&customer_for(&token)),
            "a buyer was handed another buyer's customer"
        );
    }
}

#[tokio::test]
async fn dropped_first_caller_still_feeds_waiters_and_cache() {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));
    let token = realistic_token(2);
    let send = || tokio::spawn(h.send(token_post(&token)));

    let first = send();
    resolver.wait_started(1).await;
    let waiters: Vec<_> = (0..5).map(|_| send()).collect();
    // Let the waiters reach the in-flight resolve, then disconnect the first.
    tokio::task::yield_now().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    resolver.release(1);
    within("the waiters of the dropped caller", async {
        for w in waiters {
            assert_eq!(w.await.unwrap().status(), 200);
        }
    })
    .await;
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(resolver.calls(), 1);
    assert_eq!(h.handled(), 6);
}

#[tokio::test]
async fn dropped_only_caller_still_completes_into_the_cache() {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));
    let token = realistic_token(3);

    let first = tokio::spawn(h.send(token_post(&token)));
    resolver.wait_started(1).await;
    first.abort();
    let _ = first.await;
    resolver.release(1);

    assert_eq!(h.send(token_post(&token)).await.status(), 200);
    assert_eq!(resolver.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn invalid_token_is_negatively_cached_for_the_negative_ttl() {
    let resolver = TestResolver::with(|_| Err(ResolveError::InvalidToken));
    let h = Harness::new(
        Resolutions::builder(resolver.clone())
            .negative_cache_ttl(Duration::from_secs(30))
            .build()
            .layer(),
    );
    let go = || h.send(token_post("junk"));

    assert_eq!(go().await.status(), 400);
    assert_eq!(go().await.status(), 400);
    assert_eq!(resolver.calls(), 1);

    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(go().await.status(), 400);
    assert_eq!(resolver.calls(), 1);

    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(go().await.status(), 400);
    assert_eq!(resolver.calls(), 2);
    assert_eq!(h.handled(), 0);
}

#[tokio::test]
async fn transient_errors_are_not_cached() {
    for error in [
        ResolveError::Throttled,
        ResolveError::unavailable("InternalServiceErrorException"),
        ResolveError::Timeout,
    ] {
        let status = error.status();
        let resolver = TestResolver::with(move |_| Err(error.clone()));
        let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));
        for expected_calls in 1..=3 {
            assert_eq!(h.send(token_post("tok")).await.status(), status);
            assert_eq!(resolver.calls(), expected_calls);
        }
    }
}

#[tokio::test]
async fn transient_failure_then_success() {
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    let resolver = TestResolver::with(move |t| {
        if attempt.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(ResolveError::Throttled)
        } else {
            Ok(customer_for(t))
        }
    });
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));
    let go = || h.send(token_post("tok"));
    let throttled = go().await;
    assert_eq!(throttled.status(), 503);
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(go().await.status(), 200);
    assert_eq!(go().await.status(), 200);
    assert_eq!(resolver.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn success_is_kept_for_the_ttl_even_if_upstream_would_now_refuse() {
    // Single-use semantics upstream: the second redemption would be "expired".
    let redeemed = std::sync::atomic::AtomicBool::new(false);
    let resolver = TestResolver::with(move |t| {
        if redeemed.swap(true, Ordering::SeqCst) {
            Err(ResolveError::ExpiredToken)
        } else {
            Ok(customer_for(t))
        }
    });
    let h = Harness::new(
        Resolutions::builder(resolver.clone())
            .cache_ttl(Duration::from_secs(600))
            .build()
            .layer(),
    );
    let go = || h.send(token_post("tok"));

    assert_eq!(go().await.status(), 200);
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(go().await.status(), 200, "refresh within the TTL");
    assert_eq!(resolver.calls(), 1);

    tokio::time::advance(Duration::from_secs(2)).await;
    let response = go().await;
    assert_eq!(
        response.status(),
        400,
        "after the TTL the upstream is asked again"
    );
    assert!(text(response).await.contains("expired-token"));
    assert_eq!(resolver.calls(), 2);
}

/// A gated resolver behind a layer with a 3 s resolve timeout.
fn gated_with_timeout() -> (Arc<TestResolver>, Harness) {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let layer = Resolutions::builder(resolver.clone())
        .resolve_timeout(Duration::from_secs(3))
        .build()
        .layer();
    (resolver, Harness::new(layer))
}

#[tokio::test(start_paused = true)]
async fn timed_out_request_leaves_the_resolve_running_for_the_retry() {
    let (resolver, h) = gated_with_timeout();
    let go = || h.send(token_post("tok"));

    // Time is paused: the timer fires once every task is idle.
    let response = go().await;
    assert_eq!(response.status(), 504);
    assert!(text(response).await.contains("timeout"));

    // The upstream answers late; the retry gets that answer, no second call
    // (which a single-use token would fail as expired).
    resolver.release(1);
    assert_eq!(go().await.status(), 200);
    assert_eq!(resolver.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn hung_upstream_is_abandoned_after_twice_the_timeout_and_not_cached() {
    let (resolver, h) = gated_with_timeout();
    let go = || h.send(token_post("tok"));

    assert_eq!(go().await.status(), 504);
    // Still within the upstream's own deadline: the retry joins the same call.
    assert_eq!(go().await.status(), 504);
    assert_eq!(resolver.calls(), 1);
    // Past it: the call was abandoned and a new one starts.
    tokio::time::advance(Duration::from_secs(1)).await;
    resolver.release(1);
    assert_eq!(go().await.status(), 200);
    assert_eq!(resolver.calls(), 2);
}

#[tokio::test]
async fn single_flight_holds_with_no_cache_capacity_at_all() {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let h = Harness::new(
        Resolutions::builder(resolver.clone())
            .cache_capacity(0)
            .negative_cache_capacity(0)
            .build()
            .layer(),
    );
    let tasks: Vec<_> = (0..200)
        .map(|_| tokio::spawn(h.send(token_post("tok"))))
        .collect();
    resolver.wait_started(1).await;
    // Single-threaded runtime: yielding lets every request task run up to its
    // wait on the resolve under way.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    // Enough permits that an (incorrect) second call would not hang the test.
    resolver.release(10);
    within("the 200 submits without a cache", async {
        for t in tasks {
            assert_eq!(t.await.unwrap().status(), 200);
        }
    })
    .await;
    assert_eq!(resolver.calls(), 1);
    assert_eq!(h.handled(), 200);

    // Nothing is remembered afterwards, by configuration.
    assert_eq!(h.send(token_post("tok")).await.status(), 200);
    assert_eq!(resolver.calls(), 2);
}

#[tokio::test]
async fn junk_tokens_do_not_evict_resolved_customers() {
    let resolver = junk_is_invalid();
    let h = Harness::new(
        Resolutions::builder(resolver.clone())
            .cache_capacity(10)
            .negative_cache_capacity(10)
            .build()
            .layer(),
    );

    assert_eq!(h.send(token_post("buyer")).await.status(), 200);
    for i in 0..500 {
        assert_eq!(h.send(token_post(&format!("junk{i}"))).await.status(), 400);
    }
    assert_eq!(h.send(token_post("buyer")).await.status(), 200);
    assert_eq!(resolver.calls_for("buyer"), 1);
}

#[tokio::test]
async fn panicking_resolver_fails_its_waiters_with_500_and_the_layer_keeps_working() {
    let resolver = TestResolver::gated(|t| {
        if t.starts_with("boom") {
            panic!("resolver bug");
        }
        Ok(customer_for(t))
    });
    let h = Harness::new(ResolveCustomerLayer::new(resolver.clone()));

    let waiters: Vec<_> = (0..10)
        .map(|_| tokio::spawn(h.send(token_post("boom1"))))
        .collect();
    resolver.wait_started(1).await;
    resolver.release(1);
    for waiter in waiters {
        let response = waiter.await.unwrap();
        assert_eq!(response.status(), 500);
        assert!(text(response).await.contains("internal"));
    }
    assert_eq!(resolver.calls(), 1);
    assert_eq!(h.handled(), 0);

    // Nothing was cached and nothing is stuck: the same token is tried again,
    // and other tokens resolve.
    resolver.release(2);
    assert_eq!(h.send(token_post("boom1")).await.status(), 500);
    assert_eq!(h.send(token_post("fine")).await.status(), 200);
    assert_eq!(resolver.calls(), 3);
    let stats = h.layer.resolutions().stats();
    assert_eq!((stats.resolving, stats.upstream_calls), (0, 0));
}

/// An answer is fresh strictly before its lifetime ends: at exactly
/// `cache_ttl` (or `negative_cache_ttl`) after it was stored, the upstream
/// is asked again.
#[tokio::test(start_paused = true)]
async fn answers_expire_exactly_at_their_lifetime() {
    let resolver = junk_is_invalid();
    let h = Harness::new(
        Resolutions::builder(resolver.clone())
            .cache_ttl(Duration::from_secs(600))
            .negative_cache_ttl(Duration::from_secs(30))
            .build()
            .layer(),
    );
    for (token, lifetime, status) in [("buyer", 600, 200), ("junk", 30, 400)] {
        assert_eq!(h.send(token_post(token)).await.status(), status);
        tokio::time::advance(Duration::from_secs(lifetime) - Duration::from_nanos(1)).await;
        assert_eq!(h.send(token_post(token)).await.status(), status);
        assert_eq!(resolver.calls_for(token), 1, "{token}: still fresh");
        tokio::time::advance(Duration::from_nanos(1)).await;
        assert_eq!(h.send(token_post(token)).await.status(), status);
        assert_eq!(
            resolver.calls_for(token),
            2,
            "{token}: expired at its lifetime"
        );
    }
}

/// A resolver for which tokens starting with `junk` are invalid, and every
/// other token is its own customer.
fn junk_is_invalid() -> std::sync::Arc<TestResolver> {
    TestResolver::with(|t| {
        if t.starts_with("junk") {
            Err(ResolveError::InvalidToken)
        } else {
            Ok(customer_for(t))
        }
    })
}
