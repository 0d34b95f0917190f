//! A multiplexed connection to one Redis node that is made again whenever it
//! fails, for every way of reaching one node (the `redis` crate's client, or a
//! TLS connection checked for another name).
//!
//! - A connect runs in a task of its own, bounded by the connect timeout, so
//!   a caller whose store timeout fires does not cancel it: the next caller
//!   finds it done or joins it.
//! - A connect that failed is not kept: the next call tries again.
//! - A connection is forgotten when a call on it fails with a connection error
//!   or `READONLY` (a primary demoted by a failover), and when three calls in
//!   a row are abandoned by their callers before a reply (a half-open
//!   connection that would otherwise last until TCP gives up).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::watch;

/// Calls abandoned in a row (by their callers' timeouts) before the
/// connection is taken for dead.
const ABANDONED_LIMIT: u32 = 3;

/// Makes a new connection (and the task that drives it).
pub(crate) type Dial = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = RedisResult<MultiplexedConnection>> + Send>>
        + Send
        + Sync,
>;

/// One node's connection, remade on failure; cheap to clone.
#[derive(Clone)]
pub(crate) struct Reconnecting {
    inner: Arc<Inner>,
}

struct Inner {
    dial: Dial,
    db: i64,
    state: Mutex<State>,
    abandoned: AtomicU32,
}

#[derive(Default)]
struct State {
    /// The connection in use, and its generation.
    current: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    /// A connect under way: its outcome, once known.
    connecting: Option<watch::Receiver<Option<RedisResult<()>>>>,
}

impl Reconnecting {
    pub(crate) fn new(dial: Dial, db: i64) -> Self {
        Self {
            inner: Arc::new(Inner {
                dial,
                db,
                state: Mutex::default(),
                abandoned: AtomicU32::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current connection, or a new one.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        let mut outcome = {
            let mut state = self.state();
            if let Some((generation, connection)) = &state.current {
                return Ok((*generation, connection.clone()));
            }
            match &state.connecting {
                Some(outcome) => outcome.clone(),
                None => {
                    let (done, outcome) = watch::channel(None);
                    state.connecting = Some(outcome.clone());
                    let this = self.clone();
                    tokio::spawn(async move {
                        let made = (this.inner.dial)().await;
                        let result = {
                            let mut state = this.state();
                            state.connecting = None;
                            made.map(|connection| {
                                state.generation += 1;
                                state.current = Some((state.generation, connection));
                                this.inner.abandoned.store(0, Ordering::Relaxed);
                            })
                        };
                        let _ = done.send(Some(result));
                    });
                    outcome
                }
            }
        };
        let result = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RedisError::from((ErrorKind::Io, "the Redis connect task ended")))?
            .clone()
            .expect("waited for an outcome");
        result?;
        let state = self.state();
        state
            .current
            .as_ref()
            .map(|(generation, connection)| (*generation, connection.clone()))
            .ok_or_else(|| RedisError::from((ErrorKind::Io, "the Redis connection was lost")))
    }

    /// Forgets connection `generation` (if still current).
    fn forget(&self, generation: u64) {
        let mut state = self.state();
        if state
            .current
            .as_ref()
            .is_some_and(|(g, _)| *g == generation)
        {
            state.current = None;
        }
    }

    /// Runs `call` on the connection, keeping track of how it ended.
    async fn run<T>(
        &self,
        call: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let (generation, mut connection) = self.connection().await?;
        let mut abandoned = Abandoned {
            owner: self,
            generation,
            armed: true,
        };
        let reply = call(&mut connection).await;
        abandoned.armed = false;
        match &reply {
            Ok(_) => self.inner.abandoned.store(0, Ordering::Relaxed),
            Err(error) if is_fatal(error) => self.forget(generation),
            Err(_) => {}
        }
        reply
    }
}

/// Counts a call dropped before its reply; three in a row forget the
/// connection.
struct Abandoned<'a> {
    owner: &'a Reconnecting,
    generation: u64,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed
            && self.owner.inner.abandoned.fetch_add(1, Ordering::Relaxed) + 1 >= ABANDONED_LIMIT
        {
            self.owner.inner.abandoned.store(0, Ordering::Relaxed);
            self.owner.forget(self.generation);
        }
    }
}

/// Whether `error` means the connection itself is no good.
fn is_fatal(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || error.code() == Some("READONLY")
}

impl ConnectionLike for Reconnecting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.run(async |connection: &mut MultiplexedConnection| {
                connection.req_packed_command(cmd).await
            })
            .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.run(async |connection: &mut MultiplexedConnection| {
                connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}
