//! `Redemption`: exactly one request per redemption of a token is `First`
//! (the one whose own resolve redeemed it), every other request with the
//! token is a `Replay` carrying the first redemption's time, on one replica
//! and across replicas sharing a store.

#![cfg(feature = "test-util")]

mod common;

use std::time::{Duration, SystemTime};

use common::{Harness, TestResolver, customer_for, token_post};
use http::StatusCode;
use tower_resolve_customer::{MemoryStore, Redemption, Resolutions};

fn redemptions(site: &Harness) -> Vec<Redemption> {
    site.requests()
        .iter()
        .map(|r| r.redemption.expect("every accepted request has one"))
        .collect()
}

#[tokio::test]
async fn the_redeeming_request_is_first_and_joined_and_cached_ones_replay() {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let site = Harness::new(Resolutions::new(std::sync::Arc::clone(&resolver)).layer());
    let token = "RedemptionToken+/==";
    let before = SystemTime::now() - Duration::from_millis(1);

    let first = tokio::spawn(site.send(token_post(token)));
    resolver.wait_started(1).await;
    // The double submit arrives while the resolve is held: it joins it.
    let joined = tokio::spawn(site.send(token_post(token)));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(site.layer.resolutions().stats().resolving, 1);
    resolver.release(1);
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    assert_eq!(joined.await.unwrap().status(), StatusCode::OK);
    // A refresh, answered from the cache.
    assert_eq!(site.send(token_post(token)).await.status(), StatusCode::OK);
    assert_eq!(resolver.calls(), 1);

    let seen = redemptions(&site);
    assert_eq!(seen.iter().filter(|r| r.is_first()).count(), 1, "{seen:?}");
    assert!(seen[2].is_replay(), "the cached answer replays: {seen:?}");
    let at = seen[0].redeemed_at();
    assert!(seen.iter().all(|r| r.redeemed_at() == at));
    assert!(at >= before && at <= SystemTime::now(), "{at:?}");
    assert!(seen[2].age() < Duration::from_secs(60));
}

/// The request that started the resolve gave up waiting (its resolve timeout
/// passed); the resolve finished anyway, and the buyer's retry replays it.
#[tokio::test(start_paused = true)]
async fn a_retry_after_a_timeout_replays_the_late_redemption() {
    let resolver = TestResolver::gated(|t| Ok(customer_for(t)));
    let resolutions = Resolutions::builder(std::sync::Arc::clone(&resolver))
        .resolve_timeout(Duration::from_secs(1))
        .build();
    let site = Harness::new(resolutions.layer());
    let token = "SlowRedemptionToken+/==";

    let timed_out = tokio::spawn(site.send(token_post(token)));
    resolver.wait_started(1).await;
    assert_eq!(
        timed_out.await.unwrap().status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    resolver.release(1);
    while resolutions.stats().resolving > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(site.send(token_post(token)).await.status(), StatusCode::OK);
    let seen = redemptions(&site);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].is_replay());
    assert_eq!(resolver.calls(), 1);
}

/// Replica A redeems; replica B's first request for the token finds A's
/// answer in the store: a replay, with A's redemption time.
#[tokio::test]
async fn an_answer_from_the_store_is_a_replay_with_the_first_redemptions_time() {
    let resolver = TestResolver::ok();
    let store = MemoryStore::new();
    let replica = |store: MemoryStore| {
        Harness::new(
            Resolutions::builder(std::sync::Arc::clone(&resolver))
                .store(store)
                .build()
                .layer(),
        )
    };
    let (a, b) = (replica(store.link()), replica(store.link()));
    let token = "FleetRedemptionToken+/==";

    assert_eq!(a.send(token_post(token)).await.status(), StatusCode::OK);
    assert_eq!(b.send(token_post(token)).await.status(), StatusCode::OK);
    assert_eq!(b.send(token_post(token)).await.status(), StatusCode::OK);
    assert_eq!(resolver.calls(), 1);

    let on_a = redemptions(&a);
    let on_b = redemptions(&b);
    assert!(on_a[0].is_first());
    assert!(on_b.iter().all(Redemption::is_replay), "{on_b:?}");
    assert!(
        on_b.iter()
            .all(|r| r.redeemed_at() == on_a[0].redeemed_at())
    );
    let stored = store.answers();
    assert_eq!(stored[0].1.redeemed_at(), Some(on_a[0].redeemed_at()));
}
