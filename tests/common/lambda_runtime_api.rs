//! A Lambda Runtime API of a test's own, on a free loopback port: what AWS
//! Lambda serves to the function's process inside one execution environment
//! (`AWS_LAMBDA_RUNTIME_API`). The runtime in the process long-polls
//! `GET /2018-06-01/runtime/invocation/next` for an event and posts the
//! function's answer to `.../invocation/<id>/response` (or `.../error`).
//!
//! As on Lambda, the environment is frozen while it waits for its next event:
//! [`RuntimeApi::freeze_when_idle`] stops the process (`SIGSTOP`) as soon as
//! its runtime asks for the next event, and [`RuntimeApi::thaw`] resumes it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION: &str = "/2018-06-01/runtime/invocation/";

/// The runtime's answer to one invocation.
#[derive(Debug)]
pub enum Answer {
    /// The function's response (for HTTP events, the JSON Lambda returns).
    Response(Value),
    /// The function failed: the error document the runtime posted.
    Error(Value),
}

#[derive(Default)]
struct State {
    events: VecDeque<(String, Value)>,
    waiting: HashMap<String, oneshot::Sender<Answer>>,
    /// Requests for the next event so far.
    polls: u64,
    freeze: Option<u32>,
    frozen: Option<u32>,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    polled: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A Runtime API for one execution environment; stops when dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            changed: Notify::new(),
            polled: tokio::sync::watch::Sender::new(0),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` holds it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Waits until the runtime has asked for its `n`th event: the first time,
    /// the function's initialisation is over.
    pub async fn wait_for_poll(&self, n: u64) {
        let mut polled = self.shared.polled.subscribe();
        polled
            .wait_for(|polls| *polls >= n)
            .await
            .expect("the Runtime API outlives its handle");
    }

    /// Hands `event` to the runtime and waits for its answer.
    pub async fn invoke(&self, event: Value) -> Answer {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = format!(
            "8476a536-e9f4-11e8-9739-{:012x}",
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let (send, answer) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            state.waiting.insert(id.clone(), send);
            state.events.push_back((id, event));
        }
        self.shared.changed.notify_waiters();
        answer.await.expect("the runtime answers")
    }

    /// From now on, stops process `pid` (as Lambda freezes the environment)
    /// whenever its runtime asks for its next event.
    pub fn freeze_when_idle(&self, pid: u32) {
        self.shared.lock().freeze = Some(pid);
    }

    /// Resumes the process if it is frozen, and stops freezing it.
    pub fn thaw(&self) {
        let frozen = {
            let mut state = self.shared.lock();
            state.freeze = None;
            state.frozen.take()
        };
        if let Some(pid) = frozen {
            signal("-CONT", pid);
        }
    }

    /// Whether the process is frozen now.
    pub fn is_frozen(&self) -> bool {
        self.shared.lock().frozen.is_some()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn signal(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(request, &shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    if path == NEXT {
        return next_event(shared).await;
    }
    let Some(rest) = path.strip_prefix(INVOCATION) else {
        // Initialisation errors and anything else.
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        panic!(
            "the runtime reported {path}: {}",
            String::from_utf8_lossy(&body.unwrap_or_default())
        );
    };
    let (id, kind) = rest.split_once('/').expect("/invocation/<id>/<kind>");
    let (id, kind) = (id.to_owned(), kind.to_owned());
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let document: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = match kind.as_str() {
        "response" => Answer::Response(document),
        _ => Answer::Error(document),
    };
    if let Some(waiting) = shared.lock().waiting.remove(&id) {
        let _ = waiting.send(answer);
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"{\"status\":\"OK\"}")));
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// The next event, once there is one; the environment is frozen meanwhile
/// when asked to be.
async fn next_event(shared: &Shared) -> Response<Full<Bytes>> {
    {
        let mut state = shared.lock();
        state.polls += 1;
        let polls = state.polls;
        if let Some(pid) = state.freeze
            && state.frozen.is_none()
        {
            signal("-STOP", pid);
            state.frozen = Some(pid);
        }
        drop(state);
        shared.polled.send_replace(polls);
    }
    let (id, event) = loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        // Registered before the queue is looked at, so no event is missed.
        changed.as_mut().enable();
        if let Some(event) = shared.lock().events.pop_front() {
            break event;
        }
        changed.await;
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 30_000;
    Response::builder()
        .header("lambda-runtime-aws-request-id", &id)
        .header("lambda-runtime-deadline-ms", deadline.to_string())
        .header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:111122223333:function:registration",
        )
        .header(
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(event.to_string())))
        .expect("a valid response")
}
