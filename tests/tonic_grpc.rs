//! The `tonic_grpc` example's service behind `ResolveCustomerLayer` in a real
//! tonic server on loopback TCP, called by a real tonic client, resolving
//! through the SDK against the Marketplace Metering emulator.
#![cfg(all(feature = "grpc", feature = "test-util"))]

#[path = "../examples/tonic_grpc/service.rs"]
mod service;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use service::registration_client::RegistrationClient;
use service::{WhoAmIReply, WhoAmIRequest, who_am_i_request};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;
use tower_resolve_customer::emulator::{Fault, MeteringEmulator};
use tower_resolve_customer::{
    Rejection, Resolutions, ResolutionsBuilder, ResolveCustomerLayer, ResolveError,
    ResolvedCustomer,
};

const PRODUCT: &str = "prod-grpc";

/// A tonic server running the example's service, and the emulator behind it.
struct Running {
    emulator: MeteringEmulator,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    /// The example's layer, as is.
    async fn start() -> Self {
        Self::start_with(|resolutions| resolutions, |layer| layer).await
    }

    /// The example's layer over resolutions configured by `resolutions`,
    /// further configured by `configure`.
    async fn start_with(
        resolutions: impl FnOnce(ResolutionsBuilder) -> ResolutionsBuilder,
        configure: impl FnOnce(ResolveCustomerLayer) -> ResolveCustomerLayer,
    ) -> Self {
        let emulator = MeteringEmulator::start().await.unwrap();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let resolutions = resolutions(Resolutions::builder(emulator.resolver())).build();
        let layer = configure(service::layer(resolutions));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(service::serve(listener, layer, async {
            let _ = stopped.await;
        }));
        Self {
            emulator,
            addr,
            stop,
            server,
        }
    }

    /// A client on a fresh HTTP/2 connection.
    async fn client(&self) -> RegistrationClient<Channel> {
        RegistrationClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// A fresh token registered for `account`.
    fn token_for(&self, account: &str) -> String {
        let token = MeteringEmulator::mint_token();
        self.emulator.register(&token, customer(account));
        token
    }

    /// Stops the server once every client is gone, and waits for it.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

fn customer(account: &str) -> ResolvedCustomer {
    ResolvedCustomer::new(account, PRODUCT)
        .with_license_arn(format!("arn:aws:license-manager::{account}:license:l-1"))
}

/// The call's status, which must be an error.
async fn refused(
    client: &mut RegistrationClient<Channel>,
    request: tonic::Request<WhoAmIRequest>,
) -> tonic::Status {
    match client.who_am_i(request).await {
        Ok(reply) => panic!("expected a refusal, got {:?}", reply.into_inner()),
        Err(status) => status,
    }
}

/// Asserts `status` is what `grpc_status` makes of `error`: the code, and the
/// public message (never the token).
fn assert_status(status: &tonic::Status, code: Code, error: impl Into<Rejection>) {
    let error = error.into();
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), error.public_message());
}

#[tokio::test]
async fn resolved_customer_reaches_the_handler() {
    let running = Running::start().await;
    let token = running.token_for("123456789012");
    let mut client = running.client().await;

    for _ in 0..2 {
        let reply = client
            .who_am_i(who_am_i_request(&token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply,
            WhoAmIReply {
                customer_aws_account_id: "123456789012".into(),
                product_code: PRODUCT.into(),
                license_arn: Some("arn:aws:license-manager::123456789012:license:l-1".into()),
            }
        );
    }
    // The repeat was served from the cache.
    assert_eq!(running.emulator.calls_for(&token), 1);
    assert_eq!(running.emulator.redemptions_of(&token), 1);

    drop(client);
    running.stop().await;
}

#[tokio::test]
async fn concurrent_calls_on_one_connection_redeem_once() {
    let running = Running::start().await;
    let token = running.token_for("210987654321");
    let client = running.client().await;

    let calls: Vec<_> = (0..16)
        .map(|_| {
            let mut client = client.clone();
            let request = who_am_i_request(&token);
            tokio::spawn(async move { client.who_am_i(request).await })
        })
        .collect();
    for call in calls {
        let reply = call.await.unwrap().unwrap().into_inner();
        assert_eq!(reply.customer_aws_account_id, "210987654321");
    }
    assert_eq!(running.emulator.calls_for(&token), 1);
    assert_eq!(running.emulator.redemptions_of(&token), 1);

    drop(client);
    running.stop().await;
}

#[tokio::test]
async fn missing_token_is_unauthenticated() {
    let running = Running::start().await;
    let mut client = running.client().await;

    let status = refused(&mut client, tonic::Request::new(WhoAmIRequest {})).await;
    assert_status(&status, Code::Unauthenticated, Rejection::MissingToken);
    // A trailers-only response: the rest of its headers are the metadata.
    assert_eq!(
        status.metadata().get("content-type").unwrap(),
        "application/grpc"
    );
    assert_eq!(running.emulator.requests(), 0);
}

#[tokio::test]
async fn malformed_token_is_an_invalid_argument() {
    let running = Running::start().await;
    let mut client = running.client().await;

    let status = refused(&mut client, who_am_i_request("has space")).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(!status.message().contains("has space"));
    assert_eq!(running.emulator.requests(), 0);
}

#[tokio::test]
async fn unregistered_token_is_unauthenticated() {
    let running = Running::start().await;
    let mut client = running.client().await;
    let token = MeteringEmulator::mint_token();

    let status = refused(&mut client, who_am_i_request(&token)).await;
    assert_status(&status, Code::Unauthenticated, ResolveError::InvalidToken);
    assert!(!status.message().contains(&token));
    assert_eq!(running.emulator.calls_for(&token), 1);
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let running = Running::start().await;
    let mut client = running.client().await;
    let token = MeteringEmulator::mint_token();
    running
        .emulator
        .register_for(&token, customer("123456789012"), Duration::ZERO);

    let status = refused(&mut client, who_am_i_request(&token)).await;
    assert_status(&status, Code::Unauthenticated, ResolveError::ExpiredToken);
    assert_eq!(running.emulator.redemptions_of(&token), 0);
}

#[tokio::test]
async fn other_products_are_permission_denied() {
    let running = Running::start_with(
        |resolutions| resolutions,
        |layer| layer.allowed_product_codes(["prod-somethingelse"]),
    )
    .await;
    let token = running.token_for("123456789012");
    let mut client = running.client().await;

    let status = refused(&mut client, who_am_i_request(&token)).await;
    assert_status(&status, Code::PermissionDenied, Rejection::ProductMismatch);
    assert_eq!(running.emulator.redemptions_of(&token), 1);
}

#[tokio::test]
async fn throttling_is_unavailable_and_not_remembered() {
    let running = Running::start().await;
    let token = running.token_for("123456789012");
    let mut client = running.client().await;
    // Every attempt the SDK makes (3) is throttled.
    running.emulator.inject_times(Fault::Throttle, 3);

    let status = refused(&mut client, who_am_i_request(&token)).await;
    assert_status(&status, Code::Unavailable, ResolveError::Throttled);
    assert_eq!(running.emulator.calls_for(&token), 3);
    assert_eq!(running.emulator.redemptions_of(&token), 0);

    // A transient failure is not cached: the retry goes through.
    let reply = client.who_am_i(who_am_i_request(&token)).await.unwrap();
    assert_eq!(reply.into_inner().customer_aws_account_id, "123456789012");
    assert_eq!(running.emulator.redemptions_of(&token), 1);
}

#[tokio::test]
async fn slow_resolve_is_deadline_exceeded() {
    let running = Running::start_with(
        |resolutions| resolutions.resolve_timeout(Duration::from_millis(100)),
        |layer| layer,
    )
    .await;
    let token = running.token_for("123456789012");
    let mut client = running.client().await;
    // Far longer than the resolve timeout (and the upstream limit, twice it):
    // the emulator never answers in time.
    running
        .emulator
        .inject(Fault::Latency(Duration::from_secs(3600)));

    let status = refused(&mut client, who_am_i_request(&token)).await;
    assert_status(&status, Code::DeadlineExceeded, ResolveError::Timeout);
    assert_eq!(running.emulator.redemptions_of(&token), 0);
}

/// A rejection on the wire: HTTP 200, `content-type: application/grpc`,
/// `grpc-status` and `grpc-message` in the headers, no body (trailers-only).
#[tokio::test]
async fn rejection_is_a_trailers_only_grpc_response_on_the_wire() {
    let running = Running::start().await;
    let token = running.token_for("123456789012");
    let stream = TcpStream::connect(running.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);

    // An empty `WhoAmIRequest`: uncompressed, zero length.
    let call = |token: Option<&str>| {
        let mut request = http::Request::post(format!(
            "http://{}/registration.Registration/WhoAmI",
            running.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
        if let Some(token) = token {
            request = request.header(service::TOKEN_FIELD, token);
        }
        request
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap()
    };

    let response = sender.send_request(call(None)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "16");
    assert!(response.headers().contains_key("grpc-message"));
    let collected = response.into_body().collect().await.unwrap();
    assert!(collected.trailers().is_none());
    assert!(collected.to_bytes().is_empty());

    // For comparison, an accepted call: a message, then `grpc-status: 0` in the
    // trailers.
    let response = sender.send_request(call(Some(&token))).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("grpc-status"));
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    let framed = collected.to_bytes();
    assert_eq!(framed[0], 0, "uncompressed");
    let length = u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize;
    let reply = WhoAmIReply::decode(&framed[5..5 + length]).unwrap();
    assert_eq!(reply.customer_aws_account_id, "123456789012");
}

/// The layer on one service only, so that the others (here tonic's health
/// service) need no token: tonic's `named_layer` keeps the service's name for
/// routing.
#[tokio::test]
async fn the_layer_can_wrap_a_single_service() {
    use tonic::service::LayerExt;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<service::registration_server::RegistrationServer<service::Registrar>>()
        .await;

    let emulator = MeteringEmulator::start().await.unwrap();
    let token = MeteringEmulator::mint_token();
    emulator.register(&token, customer("123456789012"));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let protected = service::layer(Resolutions::new(emulator.resolver())).named_layer(
        service::registration_server::RegistrationServer::new(service::Registrar),
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(protected)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let mut client = RegistrationClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let reply = client.who_am_i(who_am_i_request(&token)).await.unwrap();
    assert_eq!(reply.into_inner().customer_aws_account_id, "123456789012");
    let status = refused(&mut client, tonic::Request::new(WhoAmIRequest {})).await;
    assert_status(&status, Code::Unauthenticated, Rejection::MissingToken);

    // The health service, on the same server, answers without a token.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let check = health
        .check(HealthCheckRequest {
            service: "registration.Registration".to_owned(),
        })
        .await
        .expect("the unprotected service answers without a token");
    assert_eq!(check.into_inner().status(), ServingStatus::Serving);
    assert_eq!(emulator.requests(), 1, "the health check made no resolve");
}
