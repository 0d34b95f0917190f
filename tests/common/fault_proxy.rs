//! A fault-injecting TCP proxy in front of a store's server (Redis, or a
//! DynamoDB-compatible HTTP server), one per replica: it cuts a connection at
//! a chosen request, holds a request until the client has given up on it,
//! applies a request but loses its reply, or holds all traffic (a paused
//! server), and counts the requests it sees so that tests can wait for them
//! instead of sleeping.
//!
//! For Redis ([`FaultProxy::start`]), requests are the RESP commands a client
//! sends (arrays of bulk strings, as every Redis client library sends them).
//! The commands a client sends while connecting (`CLIENT`, `HELLO`, `SELECT`,
//! `AUTH`) always pass and are not counted. For HTTP
//! ([`FaultProxy::start_http`]), requests are HTTP/1.1 requests with a
//! `Content-Length`; a request's "command" is its `X-Amz-Target` operation
//! (`GETITEM`, `UPDATEITEM`, ...) and its one argument its body.
//!
//! Scripted [`Action`]s apply to the data requests, one action per request,
//! in the order the proxy reads them. Every data request's arguments are kept,
//! so that tests can count requests by more than their command name (which
//! script an `EVAL` runs, on which key; which condition an `UpdateItem` has).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What becomes of one data request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forwarded as usual.
    Pass,
    /// Not forwarded: the client's connection is closed instead, so the client
    /// sees it drop mid-request (and reconnects for its next request).
    Cut,
    /// Held, with everything after it on its connection, until the client
    /// sends another data request through this proxy; then forwarded. A client
    /// that waits for each answer before its next request sends that request
    /// only once it has given up on this one: the reply arrives past the
    /// client's timeout, and is discarded by it.
    Stall,
    /// Held, with all traffic after it both ways on every connection, until
    /// [`FaultProxy::resume`]: the server seems paused from this request on.
    /// Held requests are delivered on resume, as a paused server would read
    /// them from its sockets.
    Pause,
    /// Forwarded, but the server's reply is never delivered: the connection
    /// is closed as the reply arrives, so the server applied the request and
    /// the client never learns it.
    LoseReply,
}

/// How requests are told apart on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Resp,
    Http,
}

/// A proxy on a free loopback port, forwarding to `upstream`; stops when
/// dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts forwarding Redis commands to `upstream`. The proxy runs on the
    /// current tokio runtime, which must outlive its use.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::start_framed(upstream, Framing::Resp).await
    }

    /// Starts forwarding HTTP/1.1 requests to `upstream`.
    pub async fn start_http(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::start_framed(upstream, Framing::Http).await
    }

    async fn start_framed(upstream: SocketAddr, framing: Framing) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            framing,
            state: Mutex::default(),
            changed: watch::Sender::new(0),
        });
        let server = tokio::spawn(serve(listener, upstream, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// `redis://<the proxy's address>/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many data requests clients have sent so far.
    pub fn data_requests(&self) -> usize {
        self.shared.lock().seen.len()
    }

    /// Appends `actions` to the script: the next data requests meet them in
    /// order; once the script is used up, requests pass.
    pub fn script(&self, actions: impl IntoIterator<Item = Action>) {
        self.shared.update(|state| state.script.extend(actions));
    }

    /// Holds all traffic, both ways, from now on, until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.shared.update(|state| state.paused = true);
    }

    /// Delivers the traffic held since the pause, and lets traffic through again.
    pub fn resume(&self) {
        self.shared.update(|state| state.paused = false);
    }

    /// How many `command` requests (`GET`, `EVAL`, ...) clients have sent so
    /// far, whatever became of them.
    pub fn seen(&self, command: &str) -> usize {
        let command = command.to_ascii_uppercase();
        self.seen_where(|request| request[0] == command)
    }

    /// Waits until clients have sent `n` `command` requests in all.
    pub async fn wait_for(&self, command: &str, n: usize) {
        let command = command.to_ascii_uppercase();
        self.wait_for_where(|request| request[0] == command, n)
            .await;
    }

    /// How many data requests that `matches` clients have sent so far,
    /// whatever became of them. `matches` is given a request's arguments: its
    /// command name in upper case, then the others as sent (as lossy UTF-8).
    pub fn seen_where(&self, matches: impl Fn(&[String]) -> bool) -> usize {
        self.shared.lock().seen_where(&matches)
    }

    /// Waits until clients have sent `n` data requests that `matches` in all.
    pub async fn wait_for_where(&self, matches: impl Fn(&[String]) -> bool, n: usize) {
        let mut changed = self.shared.changed.subscribe();
        changed
            .wait_for(|_| self.shared.lock().seen_where(&matches) >= n)
            .await
            .expect("the proxy outlives its handle");
    }

    /// How many scripted actions other than [`Action::Pass`] have been met.
    pub fn faults_met(&self) -> usize {
        self.shared.lock().faults_met
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the server drops its connections' tasks too.
        self.server.abort();
    }
}

struct Shared {
    framing: Framing,
    state: Mutex<State>,
    /// Bumped at every change of `state`, to wake the relays and the waiters.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    script: VecDeque<Action>,
    paused: bool,
    /// Data requests read so far; also the sequence number of the next one.
    data_requests: u64,
    /// The arguments of every data request read so far, in order.
    seen: Vec<Vec<String>>,
    faults_met: usize,
}

impl State {
    fn seen_where(&self, matches: &impl Fn(&[String]) -> bool) -> usize {
        self.seen.iter().filter(|request| matches(request)).count()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let result = change(&mut self.lock());
        self.changed.send_modify(|version| *version += 1);
        result
    }

    /// Counts a request just read and gives it its scripted action.
    fn admit(&self, bytes: Vec<u8>, arguments: Vec<String>) -> Request {
        if self.framing == Framing::Resp
            && matches!(
                arguments[0].as_str(),
                "CLIENT" | "HELLO" | "SELECT" | "AUTH"
            )
        {
            return Request {
                bytes,
                sequence: None,
                action: Action::Pass,
            };
        }
        self.update(|state| {
            let sequence = state.data_requests;
            state.data_requests += 1;
            state.seen.push(arguments);
            let action = state.script.pop_front().unwrap_or(Action::Pass);
            if action != Action::Pass {
                state.faults_met += 1;
            }
            if action == Action::Pause {
                state.paused = true;
            }
            Request {
                bytes,
                sequence: Some(sequence),
                action,
            }
        })
    }

    /// What to do now with `request`, the oldest one not yet forwarded on its
    /// connection.
    fn fate(&self, request: &Request) -> Fate {
        let state = self.lock();
        if state.paused {
            return Fate::Hold;
        }
        match request.action {
            Action::Pass | Action::Pause => Fate::Forward,
            Action::LoseReply => Fate::ForwardLosingReply,
            Action::Cut => Fate::Cut,
            Action::Stall => match request.sequence {
                Some(sequence) if state.data_requests > sequence + 1 => Fate::Forward,
                _ => Fate::Hold,
            },
        }
    }
}

struct Request {
    bytes: Vec<u8>,
    /// Among data requests; `None` for connection setup.
    sequence: Option<u64>,
    action: Action,
}

#[derive(PartialEq, Eq)]
enum Fate {
    Forward,
    ForwardLosingReply,
    Hold,
    Cut,
}

async fn serve(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut relays = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let shared = Arc::clone(&shared);
        relays.spawn(async move {
            // An unreachable upstream drops the client's connection.
            if let Ok(server) = TcpStream::connect(upstream).await {
                relay(client, server, &shared).await;
            }
        });
        // Reap finished relays so that the set does not grow.
        while relays.try_join_next().is_some() {}
    }
}

/// Relays one connection until either side closes it or a request cuts it;
/// then closes both. A client that closes its side while requests are held
/// (having given up on them) still has them delivered, as a server would read
/// them from its socket: the server's replies then go nowhere.
async fn relay(client: TcpStream, server: TcpStream, shared: &Shared) {
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    let lose_reply = AtomicBool::new(false);
    let requests = requests(from_client, to_server, shared, &lose_reply);
    let replies = replies(from_server, to_client, shared, &lose_reply);
    tokio::pin!(requests, replies);
    tokio::select! {
        ended = &mut requests => {
            if ended == Ended::ClientClosed {
                // The server answers what it was sent, then closes (its side
                // of the connection was shut down after the last request).
                let _ = tokio::time::timeout(Duration::from_secs(10), &mut replies).await;
            }
        }
        () = &mut replies => {}
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    ClientClosed,
    Cut,
}

/// Client to server, request by request, as the script and the pause allow.
async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    lose_reply: &AtomicBool,
) -> Ended {
    let mut changed = shared.changed.subscribe();
    let mut unread = Vec::new();
    let mut waiting: VecDeque<Request> = VecDeque::new();
    let mut chunk = vec![0; 16 * 1024];
    let mut client_open = true;
    loop {
        changed.borrow_and_update();
        while let Some((len, arguments)) = parse_request(shared.framing, &unread) {
            let bytes: Vec<u8> = unread.drain(..len).collect();
            waiting.push_back(shared.admit(bytes, arguments));
        }
        while let Some(request) = waiting.front() {
            match shared.fate(request) {
                fate @ (Fate::Forward | Fate::ForwardLosingReply) => {
                    if fate == Fate::ForwardLosingReply {
                        lose_reply.store(true, Ordering::SeqCst);
                    }
                    if to.write_all(&request.bytes).await.is_err() {
                        return Ended::Cut;
                    }
                    waiting.pop_front();
                }
                Fate::Hold => break,
                Fate::Cut => return Ended::Cut,
            }
        }
        if !client_open && waiting.is_empty() {
            let _ = to.shutdown().await;
            return Ended::ClientClosed;
        }
        tokio::select! {
            read = from.read(&mut chunk), if client_open => match read {
                Ok(0) | Err(_) => client_open = false,
                Ok(n) => unread.extend_from_slice(&chunk[..n]),
            },
            _ = changed.changed() => {}
        }
    }
}

/// Server to client, held while the proxy is paused; a reply to be lost
/// closes the connection instead. Replies the client no longer takes are
/// dropped.
async fn replies(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    lose_reply: &AtomicBool,
) {
    let mut changed = shared.changed.subscribe();
    let mut unsent = Vec::new();
    let mut chunk = vec![0; 16 * 1024];
    let mut client_open = true;
    loop {
        changed.borrow_and_update();
        if !unsent.is_empty() && !shared.lock().paused {
            if client_open && to.write_all(&unsent).await.is_err() {
                client_open = false;
            }
            unsent.clear();
        }
        tokio::select! {
            read = from.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) if lose_reply.load(Ordering::SeqCst) => return,
                Ok(n) => unsent.extend_from_slice(&chunk[..n]),
            },
            _ = changed.changed() => {}
        }
    }
}

/// The length of the first complete request in `buffer` and its arguments
/// (at least one: the command name, in upper case); `None` while it is
/// incomplete.
fn parse_request(framing: Framing, buffer: &[u8]) -> Option<(usize, Vec<String>)> {
    match framing {
        Framing::Resp => parse_resp_request(buffer),
        Framing::Http => parse_http_request(buffer),
    }
}

/// An HTTP/1.1 request with a `Content-Length` (as AWS SDKs send them): its
/// length, and its `X-Amz-Target` operation (upper case) and body.
fn parse_http_request(buffer: &[u8]) -> Option<(usize, Vec<String>)> {
    let head_end = buffer.windows(4).position(|four| four == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..head_end]);
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .map(|value| value.parse().expect("a Content-Length"))
        .unwrap_or(0);
    assert!(
        header("transfer-encoding").is_none(),
        "the fault proxy reads requests with a Content-Length only"
    );
    let end = head_end + length;
    if buffer.len() < end {
        return None;
    }
    let operation = header("x-amz-target")
        .and_then(|target| target.rsplit('.').next().map(str::to_ascii_uppercase))
        .unwrap_or_else(|| "HTTP".to_owned());
    let body = String::from_utf8_lossy(&buffer[head_end..end]).into_owned();
    Some((end, vec![operation, body]))
}

/// A RESP array of bulk strings: its length and its arguments.
fn parse_resp_request(buffer: &[u8]) -> Option<(usize, Vec<String>)> {
    let (count, mut at) = parse_header(buffer, 0, b'*')?;
    assert!(
        count > 0,
        "the fault proxy reads non-empty RESP arrays only"
    );
    let mut arguments = Vec::with_capacity(count);
    for index in 0..count {
        let (len, start) = parse_header(buffer, at, b'$')?;
        let end = start + len;
        if buffer.len() < end + 2 {
            return None;
        }
        let argument = String::from_utf8_lossy(&buffer[start..end]);
        arguments.push(if index == 0 {
            argument.to_ascii_uppercase()
        } else {
            argument.into_owned()
        });
        at = end + 2;
    }
    Some((at, arguments))
}

/// A `<marker><decimal>\r\n` line at `at`: the number and where the line ends.
fn parse_header(buffer: &[u8], at: usize, marker: u8) -> Option<(usize, usize)> {
    let rest = buffer.get(at..).filter(|rest| !rest.is_empty())?;
    assert_eq!(
        rest[0], marker,
        "the fault proxy reads RESP arrays of bulk strings only"
    );
    let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    let number = std::str::from_utf8(&rest[1..end])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .expect("a RESP length");
    Some((number, at + end + 2))
}
