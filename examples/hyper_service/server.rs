//! The server of the `hyper_service` example, shared with
//! `tests/hyper_service.rs` (which includes this file as a module).
//!
//! A plain hyper 1 server: the handler is a `tower::service_fn`, wrapped by
//! `ResolveCustomerLayer` with `tower::ServiceBuilder`, and handed to hyper
//! through `hyper_util::service::TowerToHyperService`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_resolve_customer::{
    RequestBody, ResolveCustomerLayer, ResolvedCustomer, Resolver, TokenSource,
};

/// The header a non-browser client may carry the token in.
pub use tower_resolve_customer::TOKEN_HEADER;

/// The path of the registration endpoint (every path is served the same way).
pub const REGISTER_PATH: &str = "/register";

/// The layer the example uses: the token from the Marketplace form post or from
/// the `x-amzn-marketplace-token` header, and forms of at most
/// `max_body_bytes`.
pub fn layer<R: Resolver>(resolver: R, max_body_bytes: usize) -> ResolveCustomerLayer {
    ResolveCustomerLayer::new(resolver)
        .token_source(TokenSource::form().or(TokenSource::header(TOKEN_HEADER)))
        .max_body_bytes(max_body_bytes)
}

/// The handler: who the buyer is, and how many body bytes arrived.
///
/// ```text
/// account: 123456789012
/// product: prod-demo
/// body-bytes: 201
/// ```
pub async fn handle(
    request: Request<RequestBody<Incoming>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // The layer only lets requests through with a customer (tokens are
    // required by default).
    let Some(customer) = request.extensions().get::<ResolvedCustomer>().cloned() else {
        return Ok(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no customer\n".into(),
        ));
    };
    let body_bytes = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes().len(),
        Err(_) => return Ok(text(StatusCode::BAD_REQUEST, "unreadable body\n".into())),
    };
    Ok(text(
        StatusCode::OK,
        format!(
            "account: {}\nproduct: {}\nbody-bytes: {body_bytes}\n",
            customer.customer_aws_account_id(),
            customer.product_code(),
        ),
    ))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Binds `127.0.0.1:port` (0 picks a free port).
pub async fn bind(port: u16) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on `listener` until `shutdown`
/// completes, then lets the open connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    layer: ResolveCustomerLayer,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // One service value: every connection gets a clone, and all share the
    // layer's single-flight cache.
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(handle));
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: try the next one.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's problem.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
