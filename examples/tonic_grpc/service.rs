//! The gRPC service of the `tonic_grpc` example, shared with
//! `tests/tonic_grpc.rs` (which includes this file as a module).
//!
//! No build script and no `protoc`: the messages and the server and client glue
//! are written by hand, the way `tonic-build` would generate them from
//!
//! ```proto
//! syntax = "proto3";
//! package registration;
//!
//! service Registration {
//!   // Who the registration token in the call's metadata belongs to.
//!   rpc WhoAmI(WhoAmIRequest) returns (WhoAmIReply);
//! }
//!
//! message WhoAmIRequest {}
//!
//! message WhoAmIReply {
//!   string customer_aws_account_id = 1;
//!   string product_code = 2;
//!   optional string license_arn = 3;
//! }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower_resolve_customer::{
    Resolutions, ResolveCustomerLayer, ResolvedCustomer, TokenSource, grpc_status,
};

/// The metadata key calls carry the registration token in (`TOKEN_FIELD`), and
/// the same name as the header the layer reads (`TOKEN_HEADER`).
pub use tower_resolve_customer::{TOKEN_FIELD, TOKEN_HEADER};

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;
type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// `registration.WhoAmIRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoAmIRequest {}

/// `registration.WhoAmIReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoAmIReply {
    /// The buyer's AWS account id.
    #[prost(string, tag = "1")]
    pub customer_aws_account_id: String,
    /// The product the buyer subscribed to.
    #[prost(string, tag = "2")]
    pub product_code: String,
    /// The buyer's license, when AWS returned one.
    #[prost(string, optional, tag = "3")]
    pub license_arn: Option<String>,
}

/// The layer the example uses, over `resolutions`: the token from the
/// `x-amzn-marketplace-token` metadata, rejections as gRPC statuses. Further
/// settings can be chained.
pub fn layer(resolutions: Resolutions) -> ResolveCustomerLayer {
    ResolveCustomerLayer::from_resolutions(resolutions)
        .token_source(TokenSource::header(TOKEN_HEADER))
        .rejection(grpc_status)
}

/// Serves the `Registration` service behind `layer` on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    layer: ResolveCustomerLayer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(layer)
        .add_service(registration_server::RegistrationServer::new(Registrar))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

/// A request for `WhoAmI` carrying `token` in its metadata.
pub fn who_am_i_request(token: &str) -> tonic::Request<WhoAmIRequest> {
    let mut request = tonic::Request::new(WhoAmIRequest {});
    let value = token.parse().expect("a token is valid metadata");
    request.metadata_mut().insert(TOKEN_FIELD, value);
    request
}

/// The implementation: answers with the customer the layer resolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registrar;

impl registration_server::Registration for Registrar {
    async fn who_am_i(
        &self,
        request: tonic::Request<WhoAmIRequest>,
    ) -> Result<tonic::Response<WhoAmIReply>, tonic::Status> {
        // Tonic carries the HTTP request's extensions over to the
        // `tonic::Request`.
        let customer = request
            .extensions()
            .get::<ResolvedCustomer>()
            .ok_or_else(|| tonic::Status::internal("ResolveCustomerLayer is not installed"))?;
        Ok(tonic::Response::new(WhoAmIReply {
            customer_aws_account_id: customer.customer_aws_account_id().to_owned(),
            product_code: customer.product_code().to_owned(),
            license_arn: customer.license_arn().map(str::to_owned),
        }))
    }
}

/// Server glue, as `tonic-build` generates it.
pub mod registration_server {
    use super::*;

    /// The `registration.Registration` service.
    pub trait Registration: Send + Sync + 'static {
        /// `WhoAmI`.
        fn who_am_i(
            &self,
            request: tonic::Request<WhoAmIRequest>,
        ) -> impl Future<Output = Result<tonic::Response<WhoAmIReply>, tonic::Status>> + Send;
    }

    /// The HTTP service routing `registration.Registration` calls to `T`.
    #[derive(Debug)]
    pub struct RegistrationServer<T> {
        inner: Arc<T>,
    }

    impl<T> RegistrationServer<T> {
        /// Serves `inner`.
        pub fn new(inner: T) -> Self {
            Self {
                inner: Arc::new(inner),
            }
        }
    }

    impl<T> Clone for RegistrationServer<T> {
        fn clone(&self) -> Self {
            Self {
                inner: Arc::clone(&self.inner),
            }
        }
    }

    impl<T, B> tower::Service<http::Request<B>> for RegistrationServer<T>
    where
        T: Registration,
        B: http_body::Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<B>) -> Self::Future {
            match request.uri().path() {
                "/registration.Registration/WhoAmI" => {
                    struct WhoAmISvc<T>(Arc<T>);
                    impl<T: Registration> tonic::server::UnaryService<WhoAmIRequest> for WhoAmISvc<T> {
                        type Response = WhoAmIReply;
                        type Future = BoxFuture<tonic::Response<WhoAmIReply>, tonic::Status>;

                        fn call(&mut self, request: tonic::Request<WhoAmIRequest>) -> Self::Future {
                            let inner = Arc::clone(&self.0);
                            Box::pin(async move { inner.who_am_i(request).await })
                        }
                    }

                    let inner = Arc::clone(&self.inner);
                    Box::pin(async move {
                        let codec = tonic_prost::ProstCodec::default();
                        let mut grpc = tonic::server::Grpc::new(codec);
                        Ok(grpc.unary(WhoAmISvc(inner), request).await)
                    })
                }
                _ => Box::pin(async move {
                    let mut response = http::Response::new(tonic::body::Body::default());
                    let headers = response.headers_mut();
                    headers.insert(
                        tonic::Status::GRPC_STATUS,
                        (tonic::Code::Unimplemented as i32).into(),
                    );
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        tonic::metadata::GRPC_CONTENT_TYPE,
                    );
                    Ok(response)
                }),
            }
        }
    }

    /// The fully qualified service name.
    pub const SERVICE_NAME: &str = "registration.Registration";

    impl<T> tonic::server::NamedService for RegistrationServer<T> {
        const NAME: &'static str = SERVICE_NAME;
    }
}

/// Client glue, as `tonic-build` generates it.
pub mod registration_client {
    use super::*;

    use http::uri::PathAndQuery;
    use tonic::client::GrpcService;

    /// A `registration.Registration` client.
    #[derive(Debug, Clone)]
    pub struct RegistrationClient<T> {
        inner: tonic::client::Grpc<T>,
    }

    impl RegistrationClient<tonic::transport::Channel> {
        /// Connects to `dst`, e.g. `http://127.0.0.1:50051`.
        pub async fn connect<D>(dst: D) -> Result<Self, tonic::transport::Error>
        where
            D: TryInto<tonic::transport::Endpoint>,
            D::Error: Into<StdError>,
        {
            let channel = tonic::transport::Endpoint::new(dst)?.connect().await?;
            Ok(Self::new(channel))
        }
    }

    impl<T> RegistrationClient<T>
    where
        T: GrpcService<tonic::body::Body>,
        T::Error: Into<StdError>,
        T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        <T::ResponseBody as http_body::Body>::Error: Into<StdError> + Send,
    {
        /// A client over `inner`.
        pub fn new(inner: T) -> Self {
            Self {
                inner: tonic::client::Grpc::new(inner),
            }
        }

        /// `WhoAmI`.
        pub async fn who_am_i(
            &mut self,
            request: impl tonic::IntoRequest<WhoAmIRequest>,
        ) -> Result<tonic::Response<WhoAmIReply>, tonic::Status> {
            self.inner.ready().await.map_err(|e| {
                tonic::Status::unknown(format!("Service was not ready: {}", e.into()))
            })?;
            let codec = tonic_prost::ProstCodec::default();
            let path = PathAndQuery::from_static("/registration.Registration/WhoAmI");
            let mut request = request.into_request();
            request.extensions_mut().insert(tonic::GrpcMethod::new(
                registration_server::SERVICE_NAME,
                "WhoAmI",
            ));
            self.inner.unary(request, path, codec).await
        }
    }
}
