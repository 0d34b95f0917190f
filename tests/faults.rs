//! Upstream faults through the layer and the real SDK, against the emulator:
//! nothing hangs, transient failures are never remembered, and under the
//! single-use policy every token is still redeemed exactly once.

#![cfg(feature = "test-util")]

mod common;

use std::time::Duration;

use aws_sdk_marketplacemetering::Client;
use aws_sdk_marketplacemetering::config::retry::RetryConfig;
use common::{Harness, Held, token_post};
use http::header::RETRY_AFTER;
use tower_resolve_customer::emulator::{Fault, MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{
    AwsMarketplaceResolver, Resolutions, ResolveCustomerLayer, ResolvedCustomer,
};

fn customer(i: usize) -> ResolvedCustomer {
    ResolvedCustomer::new(format!("{:012}", 100_000_000_000 + i), "prod-emulated")
}

/// An emulator with `n` registered tokens.
async fn emulator_with_tokens(n: usize) -> (MeteringEmulator, Vec<String>) {
    let emulator = MeteringEmulator::start().await.unwrap();
    let tokens = (0..n)
        .map(|i| {
            let token = MeteringEmulator::mint_token();
            emulator.register(&token, customer(i));
            token
        })
        .collect();
    (emulator, tokens)
}

/// The real SDK resolver, making a single attempt per call, so each injected
/// fault reaches the layer.
fn single_attempt(emulator: &MeteringEmulator) -> AwsMarketplaceResolver {
    AwsMarketplaceResolver::new(Client::from_conf(
        emulator
            .config_builder()
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_the_timeout_is_504_and_other_buyers_are_still_served() {
    let (emulator, tokens) = emulator_with_tokens(21).await;
    emulator.inject(Fault::Latency(Duration::from_secs(30)));
    let h = Harness::new(
        Resolutions::builder(single_attempt(&emulator))
            .resolve_timeout(Duration::from_millis(300))
            .build()
            .layer(),
    );

    // The first call hangs upstream: its buyer gets 504, not a hung request.
    let slow = h.send(token_post(&tokens[0])).await;
    assert_eq!(slow.status(), 504);

    // Everyone else is served meanwhile, concurrently.
    let others: Vec<_> = tokens[1..]
        .iter()
        .map(|token| tokio::spawn(h.send(token_post(token))))
        .collect();
    for task in others {
        assert_eq!(task.await.unwrap().status(), 200);
    }
    assert_eq!(h.handled(), 20);
}

#[tokio::test]
async fn flapping_upstream_failures_are_retryable_and_each_token_is_redeemed_once() {
    let (emulator, tokens) = emulator_with_tokens(6).await;
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let h = Harness::new(ResolveCustomerLayer::new(single_attempt(&emulator)));

    let faults = [
        (Fault::Throttle, "1"),
        (Fault::InternalError, "5"),
        (Fault::DisabledApi, "300"),
        (Fault::CloseConnection, "5"),
        (Fault::GarbageBody, "5"),
        (Fault::Throttle, "1"),
    ];
    for (token, (fault, retry_after)) in tokens.iter().zip(faults) {
        emulator.inject(fault.clone());
        let failed = h.send(token_post(token)).await;
        assert_eq!(failed.status(), 503, "{fault:?}");
        assert_eq!(failed.headers()[RETRY_AFTER], retry_after, "{fault:?}");
        // The failure was not remembered: the retry goes upstream and succeeds,
        // and the next submission is served from the cache.
        assert_eq!(h.send(token_post(token)).await.status(), 200, "{fault:?}");
        assert_eq!(h.send(token_post(token)).await.status(), 200, "{fault:?}");
        assert_eq!(emulator.redemptions_of(token), 1, "{fault:?}");
        assert_eq!(emulator.calls_for(token), 2, "{fault:?}");
    }
    assert_eq!(h.handled(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_disconnecting_mid_resolve_under_load_lose_no_redemption() {
    const TOKENS: usize = 20;
    const PER_TOKEN: usize = 10;
    let (emulator, tokens) = emulator_with_tokens(TOKENS).await;
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let held = Held::new(emulator.resolver());
    let h = Harness::new(ResolveCustomerLayer::new(held.clone()));

    let mut tasks = Vec::new();
    for token in &tokens {
        for _ in 0..PER_TOKEN {
            tasks.push(tokio::spawn(h.send(token_post(token))));
        }
    }
    // Every token's resolve is under way: now half the clients go away.
    held.started
        .acquire_many(TOKENS as u32)
        .await
        .unwrap()
        .forget();
    let (gone, staying): (Vec<_>, Vec<_>) =
        tasks.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, task) in &gone {
        task.abort();
    }
    held.gate.add_permits(TOKENS);

    for (_, task) in staying {
        assert_eq!(task.await.unwrap().status(), 200);
    }
    // Every buyer, including those whose first tab was closed, is served again
    // from the cache: under single use, a second redemption would have failed.
    for token in &tokens {
        assert_eq!(h.send(token_post(token)).await.status(), 200);
        assert_eq!(emulator.redemptions_of(token), 1);
        assert_eq!(emulator.calls_for(token), 1);
    }
    assert_eq!(h.layer.resolutions().stats().resolving, 0);
}
