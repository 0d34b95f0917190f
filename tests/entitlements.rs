//! The entitlement step through the real SDK clients against the emulator:
//! `ResolveCustomer` then every page of `GetEntitlements` (RPC v2 CBOR),
//! filtered by the customer's license, or by account without one; values of
//! every type; the required policy; faults; and one round of calls per token
//! across two replicas sharing a store.

#![cfg(all(feature = "entitlements", feature = "test-util"))]

mod common;

use std::time::{Duration, SystemTime};

use common::{Harness, customer_for, single_use_emulator, text, token_post};
use http::StatusCode;
use tower_resolve_customer::emulator::{Entitlement, EntitlementValue, Fault, MeteringEmulator};
use tower_resolve_customer::{
    EntitlementPolicy, MemoryStore, Redemption, RegistrationToken, ResolutionStore, Resolutions,
    ResolvedCustomer, StoreCall, StoreFault, StoredAnswer, TokenDigest,
};

fn replica(
    emulator: &MeteringEmulator,
    policy: EntitlementPolicy,
    store: Option<impl ResolutionStore>,
) -> Harness {
    let mut builder = Resolutions::builder(emulator.resolver())
        .entitlements(emulator.entitlements(), policy)
        .resolve_timeout(Duration::from_secs(5));
    if let Some(store) = store {
        builder = builder.store(store);
    }
    Harness::new(builder.build().layer())
}

/// What `customer`'s license grants: one entitlement of each value type.
fn grant(emulator: &MeteringEmulator, customer: &ResolvedCustomer) {
    let license = customer.license_arn().unwrap();
    let account = customer.customer_aws_account_id();
    let values = [
        ("Users", EntitlementValue::Integer(25)),
        ("Premium", EntitlementValue::Boolean(true)),
        ("Tier", EntitlementValue::String("gold".into())),
        ("Storage", EntitlementValue::Double(1.5)),
    ];
    for (dimension, value) in values {
        emulator.add_entitlement(
            Entitlement::new(customer.product_code(), dimension)
                .with_customer_aws_account_id(account)
                .with_license_arn(license)
                .with_value(value),
        );
    }
}

#[tokio::test]
async fn entitlements_of_the_resolved_license_reach_the_handler() {
    let (emulator, tokens) = single_use_emulator(1).await;
    let token = &tokens[0];
    let customer = customer_for(token);
    grant(&emulator, &customer);
    // The same buyer's other agreement for the product, and another
    // product's entitlement: neither is this registration's.
    emulator.add_entitlement(
        Entitlement::new(customer.product_code(), "Users")
            .with_customer_aws_account_id(customer.customer_aws_account_id())
            .with_license_arn("arn:aws:license-manager::111122223333:license:l-other")
            .with_value(EntitlementValue::Integer(1000)),
    );
    emulator.add_entitlement(
        Entitlement::new("prod-elsewhere", "Users")
            .with_customer_aws_account_id(customer.customer_aws_account_id())
            .with_license_arn(customer.license_arn().unwrap())
            .with_value(EntitlementValue::Integer(7)),
    );
    let site = replica(
        &emulator,
        EntitlementPolicy::Informational,
        None::<MemoryStore>,
    );

    let response = site.send(token_post(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (seen, redemption) = {
        let requests = site.requests();
        (requests[0].entitlements.clone(), requests[0].redemption)
    };
    let seen = seen.expect("entitlements attached");
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen.iter()
            .all(|e| e.license_arn() == customer.license_arn())
    );
    let value = |dimension| seen.dimension(dimension).next().unwrap().value().cloned();
    assert_eq!(value("Users"), Some(EntitlementValue::Integer(25)));
    assert_eq!(value("Premium"), Some(EntitlementValue::Boolean(true)));
    assert_eq!(value("Tier"), Some(EntitlementValue::String("gold".into())));
    assert_eq!(value("Storage"), Some(EntitlementValue::Double(1.5)));
    assert!(matches!(redemption, Some(Redemption::First { .. })));
    assert_eq!(emulator.entitlement_calls(), 1);

    // The double submit: from the cache, no call of either kind.
    let again = site.send(token_post(token)).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(site.requests()[1].entitlements, Some(seen));
    assert!(matches!(
        site.requests()[1].redemption,
        Some(Redemption::Replay { .. })
    ));
    assert_eq!(emulator.redemptions_of(token), 1);
    assert_eq!(emulator.calls_for(token), 1);
    assert_eq!(emulator.entitlement_calls(), 1);
}

#[tokio::test]
async fn every_page_is_read_and_a_customer_without_a_license_is_found_by_account() {
    let emulator = MeteringEmulator::start().await.unwrap();
    let token = MeteringEmulator::mint_token();
    let customer = ResolvedCustomer::new("123456789012", "prod-pages");
    emulator.register(&token, customer.clone());
    for i in 0..60 {
        emulator.add_entitlement(
            Entitlement::new("prod-pages", format!("Feature{i:02}"))
                .with_customer_aws_account_id("123456789012")
                .with_value(EntitlementValue::Boolean(true)),
        );
    }
    emulator.add_entitlement(
        Entitlement::new("prod-pages", "Feature99").with_customer_aws_account_id("999999999999"),
    );
    let site = replica(
        &emulator,
        EntitlementPolicy::Informational,
        None::<MemoryStore>,
    );

    assert_eq!(site.send(token_post(&token)).await.status(), StatusCode::OK);
    let seen = site.requests()[0].entitlements.clone().unwrap();
    assert_eq!(seen.len(), 60);
    let mut dimensions: Vec<&str> = seen.iter().map(|e| e.dimension()).collect();
    dimensions.sort_unstable();
    dimensions.dedup();
    assert_eq!(dimensions.len(), 60);
    assert!(
        seen.iter()
            .all(|e| e.customer_aws_account_id() == Some("123456789012"))
    );
    // 25 a page at most.
    assert_eq!(emulator.entitlement_calls(), 3);
}

#[tokio::test]
async fn the_required_policy_rejects_a_customer_without_a_current_entitlement() {
    let (emulator, tokens) = single_use_emulator(3).await;
    let (entitled, lapsed, none) = (&tokens[0], &tokens[1], &tokens[2]);
    grant(&emulator, &customer_for(entitled));
    let lapsed_customer = customer_for(lapsed);
    emulator.add_entitlement(
        Entitlement::new(lapsed_customer.product_code(), "Users")
            .with_customer_aws_account_id(lapsed_customer.customer_aws_account_id())
            .with_license_arn(lapsed_customer.license_arn().unwrap())
            .with_value(EntitlementValue::Integer(5))
            .with_expiration(SystemTime::now() - Duration::from_secs(60)),
    );
    let site = replica(&emulator, EntitlementPolicy::Required, None::<MemoryStore>);

    assert_eq!(
        site.send(token_post(entitled)).await.status(),
        StatusCode::OK
    );
    for token in [lapsed, none] {
        let response = site.send(token_post(token)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = text(response).await;
        assert!(body.contains("\"code\":\"not-entitled\""), "{body}");
        // Remembered: the resubmission is refused again without a call.
        let calls = emulator.entitlement_calls();
        let again = site.send(token_post(token)).await;
        assert_eq!(again.status(), StatusCode::FORBIDDEN);
        assert_eq!(emulator.entitlement_calls(), calls);
        assert_eq!(emulator.redemptions_of(token), 1);
    }
    assert_eq!(site.handled(), 1);

    // Informational: the same customers reach the handler, with what they have.
    let (emulator, tokens) = single_use_emulator(1).await;
    let site = replica(
        &emulator,
        EntitlementPolicy::Informational,
        None::<MemoryStore>,
    );
    assert_eq!(
        site.send(token_post(&tokens[0])).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        site.requests()[0].entitlements.as_ref().map(|e| e.len()),
        Some(0)
    );
}

#[tokio::test]
async fn a_failed_fetch_is_retryable_and_the_retry_fetches_only_the_entitlements() {
    let (emulator, tokens) = single_use_emulator(1).await;
    let token = &tokens[0];
    grant(&emulator, &customer_for(token));
    let site = replica(
        &emulator,
        EntitlementPolicy::Informational,
        None::<MemoryStore>,
    );

    for (fault, status, code) in [
        (
            Fault::Throttle,
            StatusCode::SERVICE_UNAVAILABLE,
            "entitlements-throttled",
        ),
        (
            Fault::InternalError,
            StatusCode::SERVICE_UNAVAILABLE,
            "entitlements-unavailable",
        ),
    ] {
        // Three attempts: every SDK retry fails.
        emulator.inject_entitlement_faults(fault, 3);
        let response = site.send(token_post(token)).await;
        assert_eq!(response.status(), status);
        assert!(response.headers().contains_key(http::header::RETRY_AFTER));
        let body = text(response).await;
        assert!(body.contains(&format!("\"code\":\"{code}\"")), "{body}");
    }
    assert_eq!(site.handled(), 0);

    let response = site.send(token_post(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let requests = site.requests();
    assert_eq!(requests[0].entitlements.as_ref().map(|e| e.len()), Some(4));
    // The token was redeemed by the first submission, which was turned
    // away: the retry that completes the answer is the first accepted, so it
    // is the redemption's first.
    let redemption = requests[0].redemption.unwrap();
    assert!(redemption.is_first());
    assert!(redemption.age() < Duration::from_secs(60));
    assert_eq!(
        emulator.redemptions_of(token),
        1,
        "the token is redeemed once"
    );
    assert_eq!(emulator.calls_for(token), 1);
    assert_eq!(emulator.entitlement_calls(), 7);
}

/// A buyer's submission and double submit land on two replicas at once: one
/// `ResolveCustomer` and one `GetEntitlements` fleet-wide; a third submission
/// on the second replica is answered from the store, entitlements included.
async fn two_replicas_make_one_round_of_calls_per_token<S: ResolutionStore>(
    link: impl Fn() -> S,
    stored: impl Fn(TokenDigest) -> Option<StoredAnswer>,
) {
    let (emulator, tokens) = single_use_emulator(1).await;
    let token = &tokens[0];
    grant(&emulator, &customer_for(token));
    let a = replica(&emulator, EntitlementPolicy::Required, Some(link()));
    let b = replica(&emulator, EntitlementPolicy::Required, Some(link()));

    let (first, second) = tokio::join!(a.send(token_post(token)), b.send(token_post(token)));
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(b.send(token_post(token)).await.status(), StatusCode::OK);
    assert_eq!(emulator.redemptions_of(token), 1);
    assert_eq!(emulator.calls_for(token), 1);
    assert_eq!(emulator.entitlement_calls(), 1);

    let seen: Vec<_> = a
        .requests()
        .iter()
        .chain(b.requests().iter())
        .map(|r| (r.redemption.unwrap(), r.entitlements.clone().unwrap()))
        .collect();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen.iter().filter(|(r, _)| r.is_first()).count(), 1);
    let at = seen[0].0.redeemed_at();
    assert!(
        seen.iter()
            .all(|(r, e)| r.redeemed_at() == at && e.len() == 4)
    );
    let digest = RegistrationToken::new(token.as_str()).unwrap().digest();
    let stored = stored(digest).expect("the answer is in the store");
    assert_eq!(stored.entitlements().map(|e| e.len()), Some(4));
    assert_eq!(stored.redeemed_at(), Some(at));
}

#[tokio::test]
async fn two_replicas_on_a_memory_store_make_one_round_of_calls() {
    let store = MemoryStore::new();
    two_replicas_make_one_round_of_calls_per_token(|| store.link(), |digest| store.answer(digest))
        .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_redis_make_one_round_of_calls() {
    use tower_resolve_customer::RedisStore;
    let Some(redis) = common::redis_server::RedisServer::start() else {
        return;
    };
    let store = || RedisStore::new(&redis.url()).expect("a valid Redis URL");
    let reader = store();
    let runtime = tokio::runtime::Handle::current();
    two_replicas_make_one_round_of_calls_per_token(store, |digest| {
        tokio::task::block_in_place(|| runtime.block_on(reader.read(digest)).unwrap())
    })
    .await;
}

/// Replica A redeems the token but cannot fetch the entitlements; the
/// buyer's retry lands on replica B, which fetches only the entitlements
/// (the customer is in the store) and publishes them; A's next request is
/// then answered from the store.
#[tokio::test]
async fn after_a_failed_fetch_another_replica_completes_the_answer() {
    let (emulator, tokens) = single_use_emulator(1).await;
    let token = &tokens[0];
    grant(&emulator, &customer_for(token));
    let store = MemoryStore::new();
    let a = replica(
        &emulator,
        EntitlementPolicy::Informational,
        Some(store.link()),
    );
    let b = replica(
        &emulator,
        EntitlementPolicy::Informational,
        Some(store.link()),
    );

    emulator.inject_entitlement_faults(Fault::Throttle, 3);
    let response = a.send(token_post(token)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let stored = store.answers();
    assert!(stored[0].1.is_customer() && stored[0].1.entitlements().is_none());

    assert_eq!(b.send(token_post(token)).await.status(), StatusCode::OK);
    assert_eq!(emulator.entitlement_calls(), 4);
    assert_eq!(
        store.answers()[0].1.entitlements().map(|e| e.len()),
        Some(4)
    );

    assert_eq!(a.send(token_post(token)).await.status(), StatusCode::OK);
    assert_eq!(emulator.entitlement_calls(), 4, "A found them in the store");
    assert_eq!(emulator.redemptions_of(token), 1);
    assert_eq!(emulator.calls_for(token), 1);
    // B completed the answer: its request is the first accepted; A's later
    // one replays it.
    let (on_a, on_b) = (
        a.requests()[0].redemption.unwrap(),
        b.requests()[0].redemption.unwrap(),
    );
    assert!(on_b.is_first() && on_a.is_replay());
    assert_eq!(on_a.redeemed_at(), on_b.redeemed_at());
}

/// An entitlement source that fails (`Err`, or a panic) for its first
/// `failures` calls, then grants one seat.
fn flaky_source(
    failures: usize,
    panic: bool,
) -> (
    impl tower_resolve_customer::EntitlementSource,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let source = move |customer: ResolvedCustomer| {
        let call = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if call < failures {
                if panic {
                    panic!("an entitlement source bug");
                }
                return Err(tower_resolve_customer::ResolveError::Throttled);
            }
            Ok(vec![
                Entitlement::new(customer.product_code(), "Users")
                    .with_value(EntitlementValue::Integer(1)),
            ]
            .into())
        }
    };
    (source, calls)
}

/// A panicking entitlement source is a failed fetch (503, retryable), not a
/// lost customer: the retry fetches only the entitlements.
#[tokio::test]
async fn a_panicking_source_keeps_the_customer() {
    let (emulator, tokens) = single_use_emulator(1).await;
    let token = &tokens[0];
    let (source, calls) = flaky_source(1, true);
    let resolutions = Resolutions::builder(emulator.resolver())
        .entitlements(source, EntitlementPolicy::Informational)
        .build();
    let site = Harness::new(resolutions.layer());

    let response = site.send(token_post(token)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(response).await.contains("entitlements-unavailable"));
    assert_eq!(site.send(token_post(token)).await.status(), StatusCode::OK);
    assert_eq!(emulator.redemptions_of(token), 1);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Replica A redeems a single-use token but can neither fetch the
/// entitlements nor publish the customer. Later, replica B redeems the token
/// again, hears "expired", and (no other redemption in sight any more)
/// publishes that refusal. A, which knows the customer, must not be hidden
/// from it by B's "expired": its retry fetches the entitlements and serves
/// the customer.
#[tokio::test(start_paused = true)]
async fn a_known_customer_is_not_hidden_by_another_replicas_expired() {
    let (emulator, tokens) = single_use_emulator(1).await;
    let token = &tokens[0];
    let store = MemoryStore::new();
    let (a_link, b_link) = (store.link(), store.link());
    let (source, _calls) = flaky_source(1, false);
    let source = std::sync::Arc::new(source);
    let replica = |link: MemoryStore| {
        Harness::new(
            Resolutions::builder(emulator.in_process_resolver())
                .entitlements(
                    std::sync::Arc::clone(&source),
                    EntitlementPolicy::Informational,
                )
                .resolve_timeout(Duration::from_secs(1))
                .store(link)
                .build()
                .layer(),
        )
    };
    let (a, b) = (replica(a_link.clone()), replica(b_link));
    for _ in 0..100 {
        a_link.fail_next(StoreCall::Publish, StoreFault::Refused);
    }

    assert_eq!(
        a.send(token_post(token)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        store.answers().is_empty(),
        "A's customer never reached the store"
    );

    tokio::time::advance(Duration::from_secs(120)).await;
    let response = b.send(token_post(token)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(text(response).await.contains("expired-token"));
    assert_eq!(emulator.calls_for(token), 2);
    assert!(!store.answers()[0].1.is_customer());

    let response = a.send(token_post(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        a.requests()[0].customer.as_ref(),
        Some(&customer_for(token))
    );
    assert_eq!(emulator.calls_for(token), 2, "A did not redeem again");
}
