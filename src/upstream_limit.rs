//! How many tokens may go upstream: a bound on concurrent resolves and an
//! optional token bucket on cache misses.
//!
//! `ResolveCustomer` quotas are per seller account, so a flood of junk tokens
//! that reached AWS would throttle real buyers. Only a request that would start
//! a new upstream call is counted: requests answered from the cache, and
//! requests that join a resolve already under way, never are.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::rejection::Rejection;

/// How long a request refused for want of a free upstream slot is told to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A token-bucket rate: `per_second` new tokens a second on average, bursts of
/// up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MissRate {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
}

/// The admission check for upstream calls.
pub(crate) struct UpstreamLimit {
    max_concurrent: usize,
    slots: Arc<Semaphore>,
    bucket: Option<Mutex<Bucket>>,
}

impl UpstreamLimit {
    pub(crate) fn new(max_concurrent: usize, rate: Option<MissRate>) -> Self {
        let max_concurrent = max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            max_concurrent,
            slots: Arc::new(Semaphore::new(max_concurrent)),
            bucket: rate.map(|rate| Mutex::new(Bucket::new(rate))),
        }
    }

    /// Lets one more token go upstream, or says when to try again. Never
    /// waits; the permit is held until the upstream call ends.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, Rejection> {
        let permit =
            Arc::clone(&self.slots)
                .try_acquire_owned()
                .map_err(|_| Rejection::Overloaded {
                    retry_after: BUSY_RETRY_AFTER,
                })?;
        if let Some(bucket) = &self.bucket {
            let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
            bucket.take(Instant::now())?;
        }
        Ok(permit)
    }

    /// Upstream calls under way.
    pub(crate) fn in_use(&self) -> usize {
        self.max_concurrent - self.slots.available_permits()
    }
}

/// A token bucket on tokio's clock (so tests can pause time).
struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(rate: MissRate) -> Self {
        let burst = f64::from(rate.burst.max(1));
        Self {
            per_second: f64::from(rate.per_second.max(1)),
            burst,
            tokens: burst,
            refilled: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> Result<(), Rejection> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.per_second;
            Err(Rejection::Overloaded {
                retry_after: Duration::from_secs_f64(wait),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_burst_then_rate() {
        let limit = UpstreamLimit::new(
            1_000,
            Some(MissRate {
                per_second: 10,
                burst: 5,
            }),
        );
        let mut permits = Vec::new();
        for _ in 0..5 {
            permits.push(limit.admit().expect("within the burst"));
        }
        let Err(Rejection::Overloaded { retry_after }) = limit.admit() else {
            panic!("the sixth miss must be refused");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(100)).await;
        permits.push(limit.admit().expect("one token refilled"));
        assert!(limit.admit().is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            permits.push(limit.admit().expect("refilled up to the burst"));
        }
        assert!(limit.admit().is_err(), "never more than the burst");
    }

    #[tokio::test]
    async fn concurrency_bound_releases_with_the_permit() {
        let limit = UpstreamLimit::new(2, None);
        let first = limit.admit().expect("first");
        let _second = limit.admit().expect("second");
        assert_eq!(limit.in_use(), 2);
        assert!(matches!(
            limit.admit(),
            Err(Rejection::Overloaded { retry_after }) if retry_after == BUSY_RETRY_AFTER
        ));
        drop(first);
        assert!(limit.admit().is_ok());
    }
}
