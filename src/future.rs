//! [`ResponseFuture`]: resolve, then call the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::request_body::RequestBody;
use crate::response_body::ResponseBody;
use crate::service::Resolving;

pin_project! {
    /// The response future of [`ResolveCustomer`](crate::ResolveCustomer).
    ///
    /// Requests that pass through without a token go straight to the inner
    /// service's future, with no allocation.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        Resolve {
            resolving: Resolving<B>,
            inner: Option<S>,
        },
        Call {
            #[pin]
            future: S::Future,
        },
        Reject {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    pub(crate) fn resolve(resolving: Resolving<B>, inner: S) -> Self {
        Self {
            state: State::Resolve {
                resolving,
                inner: Some(inner),
            },
        }
    }

    pub(crate) fn call(future: S::Future) -> Self {
        Self {
            state: State::Call { future },
        }
    }

    pub(crate) fn reject(response: Response<Bytes>) -> Self {
        Self {
            state: State::Reject {
                response: Some(response),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Resolve { resolving, inner } => {
                    match ready!(resolving.as_mut().poll(cx)) {
                        Ok(request) => {
                            let mut inner = inner
                                .take()
                                .expect("ResponseFuture polled after completion");
                            let future = inner.call(request);
                            this.state.set(State::Call { future });
                        }
                        Err(response) => {
                            this.state.set(State::Reject { response: None });
                            return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                        }
                    }
                }
                StateProj::Call { future } => {
                    return future
                        .poll(cx)
                        .map(|result| result.map(|response| response.map(ResponseBody::inner)));
                }
                StateProj::Reject { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
            }
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
