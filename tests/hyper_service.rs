//! The `hyper_service` example's server, over real HTTP/1.1 on loopback TCP,
//! resolving through the SDK against the Marketplace Metering emulator.
#![cfg(feature = "test-util")]

#[path = "../examples/hyper_service/server.rs"]
mod server;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_resolve_customer::ResolvedCustomer;
use tower_resolve_customer::emulator::MeteringEmulator;

const MAX_BODY_BYTES: usize = 1024;

/// A running example server and the emulator behind it.
struct Running {
    emulator: MeteringEmulator,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start() -> Self {
        let emulator = MeteringEmulator::start().await.unwrap();
        let (listener, addr) = server::bind(0).await.unwrap();
        let layer = server::layer(emulator.resolver(), MAX_BODY_BYTES);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, layer, async {
            let _ = stopped.await;
        }));
        Self {
            emulator,
            addr,
            stop,
            server,
        }
    }

    /// A fresh token registered for `account`.
    fn token_for(&self, account: &str) -> String {
        let token = MeteringEmulator::mint_token();
        self.emulator
            .register(&token, ResolvedCustomer::new(account, "prod-hyper"));
        token
    }

    /// Stops accepting and waits for the server to wind down.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `request` in one piece on a fresh connection and reads one response.
///
/// The response is complete once its `Content-Length` bytes have arrived, so a
/// server that closes the connection right after answering (as it does when it
/// refuses a body) cannot make the reply go missing.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(reply) = parse(&raw) {
            return reply;
        }
        match stream.read(&mut buf).await {
            Ok(0) => panic!(
                "connection closed before a complete response: {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(error) => panic!("read failed: {error}"),
        }
    }
}

/// A complete `Content-Length` response, or `None` if more bytes are needed.
fn parse(raw: &[u8]) -> Option<Reply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("responses here have a Content-Length");
    let body = raw.get(end + 4..end + 4 + length)?;
    Some(Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    })
}

/// `x-amzn-marketplace-token=<token, urlencoded>&plan=gold`.
fn form(token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair(tower_resolve_customer::TOKEN_FIELD, token)
        .append_pair("plan", "gold")
        .finish()
}

fn form_post(body: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        server::REGISTER_PATH,
        body.len(),
    )
    .into_bytes()
}

/// `body` in `Transfer-Encoding: chunked`, one chunk per piece, terminated.
fn chunked_form_post(pieces: &[&[u8]]) -> Vec<u8> {
    let mut request = chunked_head();
    for piece in pieces {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

fn chunked_head() -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n",
        server::REGISTER_PATH,
    )
    .into_bytes()
}

fn expect_customer(reply: &Reply, account: &str, body_bytes: usize) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        format!("account: {account}\nproduct: prod-hyper\nbody-bytes: {body_bytes}\n"),
    );
}

fn expect_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert!(
        reply.body.contains(&format!(r#""code":"{code}""#)),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn form_token_resolves_once_despite_a_double_submit() {
    let running = Running::start().await;
    let token = running.token_for("111111111111");
    let body = form(&token);
    assert!(body.contains("%2B") || body.contains("%2F") || body.contains("%3D"));

    for _ in 0..2 {
        let reply = exchange(running.addr, &form_post(&body)).await;
        // The handler reads the whole form the layer buffered.
        expect_customer(&reply, "111111111111", body.len());
    }
    assert_eq!(running.emulator.calls_for(&token), 1);
    assert_eq!(running.emulator.redemptions_of(&token), 1);
    running.stop().await;
}

#[tokio::test]
async fn header_token_resolves() {
    let running = Running::start().await;
    let token = running.token_for("222222222222");

    let get = format!(
        "GET /anything HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{}: {token}\r\n\r\n",
        server::TOKEN_HEADER,
    );
    expect_customer(
        &exchange(running.addr, get.as_bytes()).await,
        "222222222222",
        0,
    );

    // A non-form body is streamed through untouched, whatever its size.
    let json = format!(r#"{{"note":"{}"}}"#, "x".repeat(4 * MAX_BODY_BYTES));
    let post = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{}: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        server::REGISTER_PATH,
        server::TOKEN_HEADER,
        json.len(),
    );
    expect_customer(
        &exchange(running.addr, post.as_bytes()).await,
        "222222222222",
        json.len(),
    );

    assert_eq!(running.emulator.calls_for(&token), 1);
    assert_eq!(running.emulator.redemptions_of(&token), 1);
    running.stop().await;
}

#[tokio::test]
async fn chunked_form_within_the_limit_resolves() {
    let running = Running::start().await;
    let token = running.token_for("333333333333");
    let body = form(&token);
    // The token split across chunks.
    let (a, rest) = body.as_bytes().split_at(40);
    let (b, c) = rest.split_at(100);

    let reply = exchange(running.addr, &chunked_form_post(&[a, b, c])).await;
    expect_customer(&reply, "333333333333", body.len());
    assert_eq!(running.emulator.redemptions_of(&token), 1);
    running.stop().await;
}

#[tokio::test]
async fn form_and_header_tokens_must_agree() {
    let running = Running::start().await;
    let token = running.token_for("444444444444");
    let other = running.token_for("555555555555");
    let body = form(&token);
    let request = |header_token: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{}: {header_token}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            server::TOKEN_HEADER,
            body.len(),
        )
    };

    let same = exchange(running.addr, request(&token).as_bytes()).await;
    expect_customer(&same, "444444444444", body.len());
    let different = exchange(running.addr, request(&other).as_bytes()).await;
    expect_problem(&different, 400, "ambiguous-token");

    assert_eq!(running.emulator.redemptions_of(&token), 1);
    assert_eq!(running.emulator.calls_for(&other), 0);
    running.stop().await;
}

#[tokio::test]
async fn missing_token_is_a_400_problem() {
    let running = Running::start().await;

    let empty_form = exchange(running.addr, &form_post("plan=gold")).await;
    expect_problem(&empty_form, 400, "missing-token");
    assert_eq!(empty_form.header("cache-control"), Some("no-store"));

    let bare = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    expect_problem(&exchange(running.addr, bare).await, 400, "missing-token");

    assert_eq!(running.emulator.requests(), 0);
    running.stop().await;
}

#[tokio::test]
async fn oversize_form_with_content_length_is_refused_before_reading() {
    let running = Running::start().await;
    let token = running.token_for("666666666666");
    let mut body = form(&token);
    body.push_str(&"&pad=".repeat(MAX_BODY_BYTES));
    assert!(body.len() > MAX_BODY_BYTES);

    // Only the head is sent: the 413 must come from `Content-Length` alone.
    let request = form_post(&body);
    let head_len = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let reply = exchange(running.addr, &request[..head_len]).await;
    expect_problem(&reply, 413, "body-too-large");

    assert_eq!(running.emulator.calls_for(&token), 0);
    running.stop().await;
}

#[tokio::test]
async fn oversize_chunked_form_is_refused_once_over_the_limit() {
    let running = Running::start().await;
    let token = running.token_for("777777777777");
    let body = format!("{}&pad={}", form(&token), "p".repeat(MAX_BODY_BYTES));

    // No Content-Length: the layer finds out while reading. The body is never
    // terminated, so the answer cannot wait for its end.
    let mut request = chunked_head();
    request.extend_from_slice(format!("{:x}\r\n{body}\r\n", body.len()).as_bytes());
    let reply = exchange(running.addr, &request).await;
    expect_problem(&reply, 413, "body-too-large");

    // The same, terminated and in small chunks.
    let pieces: Vec<&[u8]> = body.as_bytes().chunks(100).collect();
    let reply = exchange(running.addr, &chunked_form_post(&pieces)).await;
    expect_problem(&reply, 413, "body-too-large");

    assert_eq!(running.emulator.calls_for(&token), 0);
    running.stop().await;
}
