//! The request body handed to the inner service.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The request body the inner service receives.
    ///
    /// Either the original body, streamed through untouched, or — when the layer
    /// had to read an urlencoded form to find the token — the same bytes and
    /// trailers replayed from memory. Either way the handler reads exactly what the
    /// client sent.
    pub struct RequestBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Streaming { #[pin] body: B },
        // Trailers are rare: boxed, they keep the body (and every future
        // that holds the request) small.
        Buffered { data: Option<Bytes>, trailers: Option<Box<HeaderMap>> },
    }
}

impl<B> RequestBody<B> {
    /// Wraps a body to be streamed through unchanged.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Streaming { body },
        }
    }

    /// A body replayed from memory.
    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers: trailers.map(Box::new),
            },
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Streaming { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map(|frame| frame.map_data(into_bytes)))),
            KindProj::Buffered { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(|t| Frame::trailers(*t)))
                    .map(Ok),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Streaming { body } => body.is_end_stream(),
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Streaming { body } => body.size_hint(),
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the content: it may hold the token.
        let kind = match &self.kind {
            Kind::Streaming { .. } => "streaming",
            Kind::Buffered { .. } => "buffered",
        };
        f.debug_struct("RequestBody").field("kind", &kind).finish()
    }
}

/// Turns any data chunk into `Bytes`; free when it already is `Bytes`.
pub(crate) fn into_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}
