//! Store round trips and latency per request kind, for two replicas sharing a
//! real `redis-server` (features `redis` and `test-util`).
//!
//! ```sh
//! cargo bench --bench store_round_trips --features redis,test-util
//! ```
//!
//! Starts `redis-server` on a free loopback port (without persistence) and two
//! replicas, each its own `Resolutions` over its own `RedisStore`, in front of
//! the emulator's in-process resolver (so the figures are the layer's and the
//! store's, not AWS's). For each request kind it reports the Redis commands per
//! request (from `INFO commandstats`) and the median and 99th percentile
//! latency. Under `cargo test --benches` it runs a few iterations only, to
//! check that it works; without `redis-server` it says so and exits (under
//! `CI=true` it fails).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{
    RedisStore, RegistrationToken, RequestBody, Resolutions, ResolveCustomerLayer, ResolveError,
    ResolvedCustomer, Resolver,
};

#[allow(dead_code)]
#[path = "../tests/common/certificates.rs"]
mod certificates;
/// The tests' own `redis-server` fixture, and the certificates it makes.
#[allow(dead_code)]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use redis_server::RedisServer;

/// Under `CI=true` a missing `redis-server` fails the run; elsewhere it is
/// skipped with a note.
fn missing_service(service: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{service} is required under CI=true (.ci/run installs it)"
    );
    eprintln!("skipping: {service} is not installed (required under CI=true)");
}

/// The in-process emulator, after `delay`.
#[derive(Clone)]
struct Delayed<R> {
    inner: R,
    delay: Duration,
}

impl<R: Resolver> Resolver for Delayed<R> {
    async fn resolve(&self, token: &RegistrationToken) -> Result<ResolvedCustomer, ResolveError> {
        // A zero sleep would still wait for the timer's next millisecond tick.
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.resolve(token).await
    }
}

fn replica(redis: &RedisServer, resolver: impl Resolver) -> ResolveCustomerLayer {
    let store = RedisStore::new(&redis.url()).expect("a valid URL");
    Resolutions::builder(resolver).store(store).build().layer()
}

async fn submit(layer: &ResolveCustomerLayer, token: &str) -> StatusCode {
    let handler = tower::service_fn(|_: Request<RequestBody<String>>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair(tower_resolve_customer::TOKEN_FIELD, token)
        .finish();
    let request = Request::post("/register")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .unwrap();
    layer
        .layer(handler)
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

/// Waits until `layer`'s runs (publishing, releasing) are over.
async fn settled(layer: &ResolveCustomerLayer) {
    while layer.resolutions().stats().store_lookups > 0 {
        tokio::task::yield_now().await;
    }
}

struct Kind {
    name: &'static str,
    latencies: Vec<Duration>,
    commands: u64,
}

impl Kind {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            latencies: Vec::new(),
            commands: 0,
        }
    }

    fn report(&mut self) {
        self.latencies.sort();
        let n = self.latencies.len();
        let at = |q: f64| self.latencies[((n as f64 * q) as usize).min(n - 1)];
        println!(
            "| {} | {:.2} | {:.0} µs | {:.0} µs |",
            self.name,
            self.commands as f64 / n as f64,
            at(0.5).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6,
        );
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let iterations = if full { 2_000 } else { 20 };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let emulator = MeteringEmulator::start().await.unwrap();
        emulator.set_policy(RedemptionPolicy::SingleUse);
        let instant = |delay| Delayed {
            inner: emulator.in_process_resolver(),
            delay,
        };
        let a = replica(&redis, instant(Duration::ZERO));
        let b = replica(&redis, instant(Duration::ZERO));
        let slow_a = replica(&redis, instant(Duration::from_millis(50)));
        let slow_b = replica(&redis, instant(Duration::from_millis(50)));

        let mut kinds = [
            Kind::new("new token (replica A)"),
            Kind::new("cache hit (replica A)"),
            Kind::new("double submit on replica B, after A published"),
            Kind::new("double submit on replica B while A resolves (50 ms upstream)"),
            Kind::new("junk token (invalid)"),
        ];
        for i in 0..iterations {
            let token = MeteringEmulator::mint_token();
            emulator.register(&token, ResolvedCustomer::new("123456789012", "prod-bench"));
            for (kind, layer) in [(0, &a), (1, &a), (2, &b)] {
                let before = redis.store_calls();
                let started = Instant::now();
                assert_eq!(submit(layer, &token).await, StatusCode::OK);
                kinds[kind].latencies.push(started.elapsed());
                settled(layer).await;
                kinds[kind].commands += redis.store_calls() - before;
            }

            let token = MeteringEmulator::mint_token();
            emulator.register(&token, ResolvedCustomer::new("123456789012", "prod-bench"));
            let before = redis.store_calls();
            let first = tokio::spawn({
                let (slow_a, token) = (slow_a.clone(), token.clone());
                async move { submit(&slow_a, &token).await }
            });
            // Let A take the lease first.
            while slow_a.resolutions().stats().upstream_calls == 0 {
                tokio::task::yield_now().await;
            }
            let started = Instant::now();
            assert_eq!(submit(&slow_b, &token).await, StatusCode::OK);
            kinds[3].latencies.push(started.elapsed());
            assert_eq!(first.await.unwrap(), StatusCode::OK);
            settled(&slow_a).await;
            settled(&slow_b).await;
            // B's share: everything but A's five (read, lease, re-check,
            // publish, release; A's call is shorter than a renewal period).
            kinds[3].commands += redis.store_calls() - before - 5;

            let junk = format!("Junk{i}JunkJunkJunk");
            let before = redis.store_calls();
            let started = Instant::now();
            assert_eq!(submit(&a, &junk).await, StatusCode::BAD_REQUEST);
            kinds[4].latencies.push(started.elapsed());
            settled(&a).await;
            kinds[4].commands += redis.store_calls() - before;
        }
        println!("{iterations} iterations per kind");
        println!("| Request | Redis commands per request | p50 | p99 |");
        println!("|---|---|---|---|");
        for kind in &mut kinds {
            kind.report();
        }
    });
}
