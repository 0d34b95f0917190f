//! Several replicas sharing resolutions through a real `redis-server` (started
//! by each test on a free loopback port) and one emulator in single-use mode:
//! a buyer's submissions are redeemed once however they are spread across
//! replicas, a replica dying mid-resolve is taken over, a failed resolve hands
//! the lease on at once, failed polls are retried before Redis counts as
//! unavailable, and a Redis outage degrades as configured without holding
//! requests.
//!
//! Replicas that need Redis to misbehave reach it through a
//! [`FaultProxy`](common::fault_proxy::FaultProxy) of their own. The tests wait
//! on events (a held resolver starting, the proxy seeing a request), never on
//! sleeps; where real time passes (the store's timeouts), the durations are
//! short and only behaviour is asserted. Every wait that a broken protocol
//! would make endless is bounded by [`within`].
//!
//! Under `CI=true` a missing `redis-server` fails these tests; elsewhere they
//! are skipped with a note.

#![cfg(all(feature = "redis", feature = "test-util"))]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::fault_proxy::{Action, FaultProxy};
use common::redis_server::RedisServer;
use common::{Harness, Held, text, token_post, within};
use http::Response;
use http_body_util::Full;
use tokio::task::JoinHandle;
use tower_resolve_customer::emulator::{Fault, MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{
    AwsMarketplaceResolver, RedisStore, Resolutions, ResolutionsBuilder, ResolvedCustomer,
    Resolver, ResponseBody, StoreUnavailable,
};

type Answer = Response<ResponseBody<Full<Bytes>>>;

/// A spawned request's response.
async fn answer_of(what: &str, task: JoinHandle<Answer>) -> Answer {
    within(what, task)
        .await
        .unwrap_or_else(|error| panic!("{what}: the request task failed: {error}"))
}

/// The `code` of a problem-details rejection.
async fn problem_code(response: Answer) -> String {
    let body = text(response).await;
    let problem: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not problem details: {body}"));
    problem["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {body}"))
        .to_owned()
}

fn customer() -> ResolvedCustomer {
    ResolvedCustomer::new("123456789012", "prod-replicated")
        .with_customer_identifier("cust-r")
        .with_license_arn("arn:aws:license-manager::123456789012:license:l-r")
        .with_agreement_id("agmt-r")
}

/// A single-use emulator that knows one token.
async fn single_use_emulator() -> (MeteringEmulator, String) {
    let emulator = MeteringEmulator::start()
        .await
        .expect("the emulator starts");
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let token = MeteringEmulator::mint_token();
    emulator.register(&token, customer());
    (emulator, token)
}

/// One replica: its own layer, cache and Redis connection.
fn replica<R: Resolver>(resolver: R, store: RedisStore) -> Harness {
    replica_with(resolver, store, |resolutions| resolutions)
}

/// One replica whose resolutions are further configured by `configure`.
fn replica_with<R: Resolver>(
    resolver: R,
    store: RedisStore,
    configure: impl FnOnce(ResolutionsBuilder) -> ResolutionsBuilder,
) -> Harness {
    Harness::new(
        configure(Resolutions::builder(resolver).store(store))
            .build()
            .layer(),
    )
}

/// Waits until `replica` has no store run under way. A replica answers its
/// buyers as soon as it knows the answer, then publishes it and releases its
/// lease; nothing signals the end of that, so this looks every few
/// milliseconds (bounded by [`within`]).
async fn settled(what: &str, replica: &Harness) {
    within(what, async {
        while replica.layer.resolutions().stats().store_lookups > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Whether a request the proxy saw is an attempt at a lease: `RedisStore`
/// runs every store call as an `EVAL` script, and the one run on a lease key
/// that may `SET` it is the attempt to take it (renewing and releasing a
/// lease never set it).
fn is_lease_attempt(request: &[String]) -> bool {
    request[0] == "EVAL"
        && request
            .get(1)
            .is_some_and(|script| script.contains("\"SET\""))
        && request.get(3).is_some_and(|key| key.contains("lease:"))
}

/// A store on the server itself.
fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::new(&redis.url()).expect("a valid Redis URL")
}

/// A store that reaches the server through `proxy`.
fn proxied(proxy: &FaultProxy) -> RedisStore {
    RedisStore::new(&proxy.url()).expect("a valid Redis URL")
}

/// A proxy in front of `redis`, for one replica.
async fn proxy_to(redis: &RedisServer) -> FaultProxy {
    FaultProxy::start(redis.addr())
        .await
        .expect("the fault proxy starts")
}

/// A resubmission on another replica is answered from the first replica's
/// resolution in Redis: both buyers get the customer, from one redemption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_submit_across_replicas_is_redeemed_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (emulator, token) = single_use_emulator().await;
    let a = replica(emulator.resolver(), store(&redis));
    let b = replica(emulator.resolver(), store(&redis));

    assert_eq!(within("A", a.send(token_post(&token))).await.status(), 200);
    assert_eq!(within("B", b.send(token_post(&token))).await.status(), 200);
    for replica in [&a, &b] {
        assert_eq!(replica.requests()[0].customer, Some(customer()));
    }
    assert_eq!(emulator.redemptions_of(&token), 1);
    assert_eq!(emulator.calls_for(&token), 1);
}

/// A hundred submissions of one token, half on each replica, while the lease
/// holder's upstream call is held until both replicas have looked at Redis:
/// every one gets the customer, from one upstream call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_submits_across_two_replicas_are_redeemed_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (emulator, token) = single_use_emulator().await;
    let held = Held::new(emulator.resolver());
    let (a_proxy, b_proxy) = (proxy_to(&redis).await, proxy_to(&redis).await);
    let a = replica(held.clone(), proxied(&a_proxy));
    let b = replica(held.clone(), proxied(&b_proxy));

    let tasks: Vec<_> = (0..50)
        .flat_map(|_| [a.send(token_post(&token)), b.send(token_post(&token))])
        .map(tokio::spawn)
        .collect();
    // One replica took the lease and is calling upstream; the other has tried
    // to take it too, so it is waiting on the first.
    within("an upstream call", held.started.acquire())
        .await
        .expect("open semaphore")
        .forget();
    within(
        "A's lease attempt",
        a_proxy.wait_for_where(is_lease_attempt, 1),
    )
    .await;
    within(
        "B's lease attempt",
        b_proxy.wait_for_where(is_lease_attempt, 1),
    )
    .await;
    // Enough permits that a second upstream call would answer (and, the token
    // being single-use, fail a request) rather than hang.
    held.gate.add_permits(100);
    for task in tasks {
        assert_eq!(answer_of("a submission", task).await.status(), 200);
    }
    for replica in [&a, &b] {
        assert_eq!(replica.handled(), 50);
        assert!(
            replica
                .requests()
                .iter()
                .all(|r| r.customer == Some(customer()))
        );
    }
    assert_eq!(held.started.available_permits(), 0, "one upstream call");
    assert_eq!(emulator.redemptions_of(&token), 1);
    assert_eq!(emulator.calls_for(&token), 1);
}

/// Replica A takes the lease (60 s) and dies before calling AWS. Replica B
/// finds the lease taken and keeps polling without calling upstream while it
/// lasts; when it ends (the test expires it in Redis, as its time running out
/// would), B's next poll takes the lease over and B resolves, once.
#[test]
fn a_replica_dying_mid_resolve_is_taken_over_when_its_lease_ends() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    };
    let main = runtime();
    let dying = runtime();
    let lease = Duration::from_secs(60);
    main.block_on(async {
        let (emulator, token) = single_use_emulator().await;

        // Replica A takes the lease, then dies before its call reaches AWS.
        let a_held = Held::new(emulator.resolver());
        let a = replica_with(a_held.clone(), store(&redis), |r| r.lease(lease));
        dying.spawn(a.send(token_post(&token)));
        within("A's upstream call", a_held.started.acquire())
            .await
            .expect("open semaphore")
            .forget();
        dying.shutdown_background();
        let [(lease_key, a_holder, ttl)] = <[_; 1]>::try_from(redis.keys_but_attempts())
            .unwrap_or_else(|keys| panic!("one key, A's lease: {keys:?}"));
        assert!(lease_key.contains(":lease:"), "{lease_key}");
        assert!(
            (1..=60_000).contains(&ttl),
            "the lease lasts what was configured: {ttl} ms"
        );

        // Replica B finds the lease taken, and keeps looking without calling
        // upstream: its second attempt at the lease means the first was refused.
        let proxy = proxy_to(&redis).await;
        let b_held = Held::new(emulator.resolver());
        let b = replica_with(b_held.clone(), proxied(&proxy), |r| r.lease(lease));
        let b_answer = tokio::spawn(b.send(token_post(&token)));
        within(
            "B's second look at the lease",
            proxy.wait_for_where(is_lease_attempt, 2),
        )
        .await;
        assert_eq!(b_held.started.available_permits(), 0, "B called upstream");
        assert_eq!(redis.leases(), [(lease_key.clone(), a_holder.clone())]);

        // A's lease ends: B's next poll takes it over and calls upstream.
        // (Expired by the test: 60 s running out would outlast `STUCK`.)
        redis.expire_now(&lease_key);
        within("B's upstream call", b_held.started.acquire())
            .await
            .expect("open semaphore")
            .forget();
        let leases = redis.leases();
        assert!(
            leases.len() == 1 && leases[0].0 == lease_key && leases[0].1 != a_holder,
            "B holds the lease now: {leases:?}"
        );
        b_held.gate.add_permits(1);
        let response = answer_of("B's answer", b_answer).await;
        assert_eq!(response.status(), 200);
        assert_eq!(b.requests()[0].customer, Some(customer()));
        assert_eq!(emulator.redemptions_of(&token), 1);
        // B answers first, then publishes and releases.
        settled("B's publish and release", &b).await;
        assert!(redis.leases().is_empty(), "B released the lease");
    });
}

/// Replica A takes the lease and AWS throttles every attempt (the SDK makes
/// three): A's buyer gets 503, and the lease is gone from Redis as soon as A
/// is done (right after answering). B's submission then takes the lease at
/// its first attempt and resolves, though the lease (60 s) has not expired:
/// waiting for it would have B time out (504) first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transiently_failed_resolve_releases_the_lease_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (emulator, token) = single_use_emulator().await;
    let lease = Duration::from_secs(60);
    let a = replica_with(emulator.resolver(), store(&redis), |r| r.lease(lease));
    let proxy = proxy_to(&redis).await;
    let b = replica_with(emulator.resolver(), proxied(&proxy), |r| r.lease(lease));

    emulator.inject_times(Fault::Throttle, 3);
    let failed = within("A's answer", a.send(token_post(&token))).await;
    assert_eq!(failed.status(), 503);
    assert_eq!(problem_code(failed).await, "throttled");
    assert_eq!(emulator.calls_for(&token), 3, "the SDK's three attempts");
    assert_eq!(emulator.redemptions_of(&token), 0);
    settled("A's release", &a).await;
    let keys = redis.keys_but_attempts();
    assert!(
        keys.is_empty(),
        "lease released, failure not stored: {keys:?}"
    );

    let response = within("B's answer", b.send(token_post(&token))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(b.requests()[0].customer, Some(customer()));
    assert_eq!(
        proxy.seen_where(is_lease_attempt),
        1,
        "B took the lease at its first attempt"
    );
    assert_eq!(emulator.redemptions_of(&token), 1);
}

/// Replica A holding the lease, its upstream call held, and replica B waiting
/// on A through a fault proxy.
struct BWaitsOnA {
    emulator: MeteringEmulator,
    token: String,
    a_held: Held<AwsMarketplaceResolver>,
    a: Harness,
    b: Harness,
    b_proxy: FaultProxy,
    a_answer: JoinHandle<Answer>,
    b_answer: JoinHandle<Answer>,
}

impl BWaitsOnA {
    /// A takes the lease and calls upstream, where its call is held; then B
    /// (store timeout 200 ms, `behaviour` when Redis is unavailable) submits
    /// the same token. B's first look at Redis (a read, then a lease attempt,
    /// refused) passes, so B waits on A; `faults` then meet B's next Redis
    /// requests.
    async fn start(
        redis: &RedisServer,
        behaviour: StoreUnavailable,
        faults: impl IntoIterator<Item = Action>,
    ) -> Self {
        let (emulator, token) = single_use_emulator().await;
        let a_held = Held::new(emulator.resolver());
        let a = replica(a_held.clone(), store(redis));
        let a_answer = tokio::spawn(a.send(token_post(&token)));
        within("A's upstream call", a_held.started.acquire())
            .await
            .expect("open semaphore")
            .forget();

        let b_proxy = proxy_to(redis).await;
        b_proxy.script([Action::Pass, Action::Pass].into_iter().chain(faults));
        let b = replica_with(emulator.resolver(), proxied(&b_proxy), |r| {
            r.store_timeout(Duration::from_millis(200))
                .on_store_unavailable(behaviour)
        });
        let b_answer = tokio::spawn(b.send(token_post(&token)));
        Self {
            emulator,
            token,
            a_held,
            a,
            b,
            b_proxy,
            a_answer,
            b_answer,
        }
    }
}

/// While B waits on A, a failed poll (the connection cut mid-request, or the
/// reply held past the store's timeout) is retried, and so are failures that
/// are not three in a row: B keeps polling, calls nothing upstream, and ends
/// with A's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_polls_short_of_three_in_a_row_keep_waiting_for_the_lease_holder() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    use Action::{Cut, Pass, Stall};
    let cases: [(&str, &[Action], usize); 3] = [
        ("a poll cut", &[Cut], 2),
        ("a reply past the timeout", &[Stall], 2),
        (
            "two failures, a good poll, two failures",
            &[Cut, Stall, Pass, Pass, Stall, Cut],
            3,
        ),
    ];
    for (case, faults, lease_attempts) in cases {
        let mut scene =
            BWaitsOnA::start(&redis, StoreUnavailable::ResolveLocally, faults.to_vec()).await;
        // B's lease attempts come after each good poll: once the last one is
        // seen, B has met every fault and is still waiting.
        tokio::select! {
            answer = &mut scene.b_answer => panic!(
                "{case}: B answered {:?} while A still held the lease",
                answer.map(|response| response.status()),
            ),
            () = within(case, scene.b_proxy.wait_for_where(is_lease_attempt, lease_attempts)) => {}
        }
        assert_eq!(
            scene.b_proxy.faults_met(),
            faults.iter().filter(|f| **f != Pass).count(),
            "{case}"
        );
        assert_eq!(scene.emulator.calls_for(&scene.token), 0, "{case}");

        scene.a_held.gate.add_permits(1);
        let a_response = answer_of("A's answer", scene.a_answer).await;
        let b_response = answer_of("B's answer", scene.b_answer).await;
        assert_eq!(a_response.status(), 200, "{case}: A");
        assert_eq!(b_response.status(), 200, "{case}: B");
        assert_eq!(scene.a.requests()[0].customer, Some(customer()), "{case}");
        assert_eq!(scene.b.requests()[0].customer, Some(customer()), "{case}");
        assert_eq!(scene.emulator.calls_for(&scene.token), 1, "{case}");
        assert_eq!(scene.emulator.redemptions_of(&scene.token), 1, "{case}");
    }
}

/// While B waits on A, three failed polls in a row (cut, past the timeout,
/// cut) make Redis unavailable for B, with A still holding the lease:
/// `FailClosed` refuses B's buyer with 503 `unavailable` and nothing upstream;
/// `ResolveLocally` resolves on B, so the single-use token is redeemed by B and
/// A's own call, released afterwards, finds it expired; A then finds the
/// customer B published, which wins over its refusal, and answers with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failed_polls_in_a_row_mean_redis_is_unavailable() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let faults = [Action::Cut, Action::Stall, Action::Cut];

    let scene = BWaitsOnA::start(&redis, StoreUnavailable::FailClosed, faults).await;
    let refused = answer_of("B's refusal", scene.b_answer).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(problem_code(refused).await, "unavailable");
    assert_eq!(scene.b_proxy.faults_met(), 3);
    assert_eq!(scene.emulator.calls_for(&scene.token), 0);
    scene.a_held.gate.add_permits(1);
    assert_eq!(answer_of("A's answer", scene.a_answer).await.status(), 200);
    assert_eq!(scene.emulator.calls_for(&scene.token), 1);
    assert_eq!(scene.emulator.redemptions_of(&scene.token), 1);

    let scene = BWaitsOnA::start(&redis, StoreUnavailable::ResolveLocally, faults).await;
    let resolved = answer_of("B's own resolve", scene.b_answer).await;
    assert_eq!(resolved.status(), 200);
    assert_eq!(scene.b.requests()[0].customer, Some(customer()));
    assert_eq!(scene.b_proxy.faults_met(), 3);
    assert_eq!(scene.emulator.calls_for(&scene.token), 1);
    assert_eq!(scene.emulator.redemptions_of(&scene.token), 1);
    // B answers first, then publishes: A's call is let go once B is done.
    settled("B's publish", &scene.b).await;
    scene.a_held.gate.add_permits(1);
    let late = answer_of("A's answer", scene.a_answer).await;
    assert_eq!(late.status(), 200);
    assert_eq!(scene.a.requests()[0].customer, Some(customer()));
    assert_eq!(scene.emulator.calls_for(&scene.token), 2);
    assert_eq!(scene.emulator.redemptions_of(&scene.token), 1);
}

/// Redis stops answering A, the lease holder, either right after A takes the
/// lease (before A checks for an answer stored meanwhile) or while A's
/// upstream call runs; A's store calls time out (200 ms). A still resolves
/// once and answers 200 with the customer. Once Redis is back, resubmissions
/// on A and on B get the customer too, with no further redemption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pausing_while_the_lease_holder_resolves_still_redeems_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    for pause_after_lease in [true, false] {
        let case = if pause_after_lease {
            "paused right after the lease"
        } else {
            "paused during the upstream call"
        };
        let (emulator, token) = single_use_emulator().await;
        let proxy = proxy_to(&redis).await;
        if pause_after_lease {
            // The read (no answer), the lease attempt (taken), then the pause.
            proxy.script([Action::Pass, Action::Pass, Action::Pause]);
        }
        // Each case has keys of its own.
        let prefix = format!("case-{pause_after_lease}:");
        let held = Held::new(emulator.resolver());
        let a = replica_with(held.clone(), proxied(&proxy).key_prefix(&prefix), |r| {
            r.store_timeout(Duration::from_millis(200))
                .lease(Duration::from_secs(60))
        });
        let b = replica(emulator.resolver(), store(&redis).key_prefix(&prefix));

        let a_answer = tokio::spawn(a.send(token_post(&token)));
        within("A's upstream call", held.started.acquire())
            .await
            .expect("open semaphore")
            .forget();
        if pause_after_lease {
            assert_eq!(proxy.faults_met(), 1, "{case}: paused before the call");
        } else {
            proxy.pause();
        }
        let leases = redis.leases();
        assert!(
            leases
                .iter()
                .filter(|(key, _)| key.starts_with(&prefix))
                .count()
                == 1,
            "{case}: A holds the lease: {leases:?}"
        );
        held.gate.add_permits(1);
        let response = answer_of("A's answer", a_answer).await;
        assert_eq!(response.status(), 200, "{case}");
        assert_eq!(a.requests()[0].customer, Some(customer()), "{case}");
        assert_eq!(emulator.redemptions_of(&token), 1, "{case}");
        proxy.resume();

        let again = within("A's second answer", a.send(token_post(&token))).await;
        assert_eq!(again.status(), 200, "{case}: A again");
        let elsewhere = within("B's answer", b.send(token_post(&token))).await;
        assert_eq!(elsewhere.status(), 200, "{case}: B");
        assert_eq!(b.requests()[0].customer, Some(customer()), "{case}");
        assert_eq!(emulator.calls_for(&token), 1, "{case}");
        assert_eq!(emulator.redemptions_of(&token), 1, "{case}");
    }
}

/// Redis stopped: `ResolveLocally` resolves without it, `FailClosed` refuses
/// with 503 `unavailable` and no upstream call, and answers already in a
/// replica's own cache are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_or_fails_closed_as_configured() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let emulator = MeteringEmulator::start()
        .await
        .expect("the emulator starts");
    let tokens: Vec<String> = (0..3).map(|_| MeteringEmulator::mint_token()).collect();
    for token in &tokens {
        emulator.register(token, customer());
    }
    let make = |behaviour| {
        replica_with(emulator.resolver(), store(&redis), |r| {
            r.resolve_timeout(Duration::from_secs(3))
                .store_timeout(Duration::from_millis(200))
                .on_store_unavailable(behaviour)
        })
    };
    let local = make(StoreUnavailable::ResolveLocally);
    let closed = make(StoreUnavailable::FailClosed);
    for replica in [&local, &closed] {
        assert_eq!(replica.send(token_post(&tokens[0])).await.status(), 200);
    }

    redis.stop();
    assert_eq!(local.send(token_post(&tokens[1])).await.status(), 200);
    assert_eq!(emulator.calls_for(&tokens[1]), 1);
    let refused = closed.send(token_post(&tokens[2])).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(problem_code(refused).await, "unavailable");
    assert_eq!(emulator.calls_for(&tokens[2]), 0);
    // Answers already in a replica's own cache are still served.
    assert_eq!(closed.send(token_post(&tokens[0])).await.status(), 200);
}

/// Redis accepts connections but answers nothing (every byte held by the
/// proxy): each store call gives up after the store's timeout and the replica
/// resolves on its own, well within the layer's resolve timeout, whose expiry
/// would answer 504 instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_never_holds_a_request_past_the_resolve_timeout() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (emulator, token) = single_use_emulator().await;
    let proxy = proxy_to(&redis).await;
    let r = replica_with(emulator.resolver(), proxied(&proxy), |r| {
        r.resolve_timeout(Duration::from_secs(3))
            .store_timeout(Duration::from_millis(200))
    });
    proxy.pause();
    let response = within("the answer", r.send(token_post(&token))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(r.requests()[0].customer, Some(customer()));
    assert_eq!(emulator.redemptions_of(&token), 1);
}

/// Redis holds one answer per token under the prefix, keyed and valued
/// without the token, with the local cache's lifetimes; leases are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_hold_no_token_and_expire() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (emulator, token) = single_use_emulator().await;
    let unknown = MeteringEmulator::mint_token();
    let r = replica_with(
        emulator.resolver(),
        store(&redis).key_prefix("registration:"),
        |r| {
            r.cache_ttl(Duration::from_secs(600))
                .negative_cache_ttl(Duration::from_secs(30))
        },
    );
    assert_eq!(r.send(token_post(&token)).await.status(), 200);
    assert_eq!(r.send(token_post(&unknown)).await.status(), 400);
    // The replica answers first, then publishes and releases.
    settled("the publishes and releases", &r).await;

    for (key, value, _) in redis.keys() {
        for raw in [&token, &unknown] {
            assert!(!key.contains(&raw[..16]) && !value.contains(&raw[..16]));
        }
    }
    let keys = redis.keys_but_attempts();
    assert_eq!(
        keys.len(),
        2,
        "one answer per token, leases released: {keys:?}"
    );
    for (key, value, ttl) in &keys {
        assert!(key.starts_with("registration:answer:"), "{key}");
        for raw in [&token, &unknown] {
            assert!(!key.contains(&raw[..16]) && !value.contains(&raw[..16]));
        }
        assert!(*ttl > 0, "{key} has no TTL");
    }
    let ttls: Vec<i64> = keys.iter().map(|(_, _, ttl)| *ttl).collect();
    assert!(
        ttls.iter().any(|t| (590_000..=600_000).contains(t)),
        "{ttls:?}"
    );
    assert!(
        ttls.iter().any(|t| (20_000..=30_000).contains(t)),
        "{ttls:?}"
    );
}

/// A replica whose upstream budget is spent still serves answers another
/// replica stored, and refuses only tokens it would have to resolve itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_out_of_upstream_budget_still_serves_answers_from_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (emulator, token) = single_use_emulator().await;
    let other = MeteringEmulator::mint_token();
    emulator.register(&other, customer());
    let a = replica(emulator.resolver(), store(&redis));
    let b = replica_with(emulator.resolver(), store(&redis), |r| {
        r.miss_rate_limit(1, 1)
    });

    assert_eq!(a.send(token_post(&token)).await.status(), 200);
    // B spends its only upstream call on another buyer...
    assert_eq!(b.send(token_post(&other)).await.status(), 200);
    // ...yet the first buyer's resubmission is answered from Redis, not refused.
    assert_eq!(b.send(token_post(&token)).await.status(), 200);
    assert_eq!(b.requests()[1].customer, Some(customer()));
    // A new token on B is refused before any upstream call.
    let fresh = MeteringEmulator::mint_token();
    assert_eq!(b.send(token_post(&fresh)).await.status(), 503);
    assert_eq!(emulator.calls_for(&fresh), 0);
    assert_eq!(emulator.redemptions_of(&token), 1);
}

/// The README's sizing ("Redis on AWS"): what a registration and a junk
/// token leave in Redis, with values shaped as AWS returns them (a current
/// listing's, and an older listing's, which adds `CustomerIdentifier`),
/// under the default prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_memory_per_registration_is_as_the_readme_says() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let emulator = MeteringEmulator::start()
        .await
        .expect("the emulator starts");
    let current = ResolvedCustomer::new("123456789012", "prod-a1b2c3d4e5f6g7h8i9j0k1l2m")
        .with_license_arn(
            "arn:aws:license-manager::123456789012:license:l-0123456789abcdef0123456789abcdef",
        )
        .with_agreement_id("agmt-0123456789abcdefghijklmno");
    let older = current.clone().with_customer_identifier("hr5Ad6bTfbJ");
    let r = replica(emulator.resolver(), store(&redis));
    for customer in [current, older] {
        let token = MeteringEmulator::mint_token();
        emulator.register(&token, customer);
        assert_eq!(r.send(token_post(&token)).await.status(), 200);
    }
    let junk = MeteringEmulator::mint_token();
    assert_eq!(r.send(token_post(&junk)).await.status(), 400);
    settled("the publishes and releases", &r).await;

    let mut connection = redis.connection();
    let mut measured = Vec::new();
    for (key, value, _) in redis.keys() {
        let usage: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query(&mut connection)
            .expect("MEMORY USAGE");
        let kind = if key.contains(":attempts:") {
            "attempts"
        } else if value.contains("kind=invalid-token") {
            "refusal"
        } else if value.contains("customer_identifier=") {
            "customer, older listing"
        } else {
            "customer"
        };
        measured.push((kind, key.len(), value.len(), usage));
    }
    measured.sort();
    println!("kind, key bytes, value bytes, Redis memory: {measured:?}");
    // As the README states them: key bytes, at most this many value bytes
    // (an attempt's holder id varies in length; shown as `holder=score`), and
    // Redis memory as Redis 7.0 with jemalloc counts it (another version may
    // count a little more: up to a tenth is allowed).
    let readme = [
        ("attempts", 66, 56, 184),
        ("attempts", 66, 56, 184),
        ("attempts", 66, 56, 184),
        ("customer", 64, 248, 376),
        ("customer, older listing", 64, 280, 440),
        ("refusal", 64, 18, 152),
    ];
    assert_eq!(measured.len(), readme.len(), "{measured:?}");
    for ((kind, key, value, usage), (want_kind, want_key, most_value, most)) in
        measured.iter().zip(readme)
    {
        assert_eq!((*kind, *key), (want_kind, want_key), "{measured:?}");
        assert!(
            *value <= most_value,
            "{kind}: {value} value bytes, {measured:?}"
        );
        assert!(
            *usage <= most + most / 10,
            "{kind}: {usage} bytes of memory, {measured:?}"
        );
    }
}
