//! Reading an urlencoded form body with a limit, to be replayed afterwards.

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::rejection::Rejection;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body read into memory: its bytes and its trailers.
pub(crate) struct BufferedBody {
    pub(crate) data: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

/// Refuses, before reading anything, a body whose declared length is over `limit`.
pub(crate) fn check_content_length(parts: &Parts, limit: usize) -> Result<(), Rejection> {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => Err(Rejection::BodyTooLarge {
            limit: limit as u64,
        }),
        _ => Ok(()),
    }
}

/// Reads the whole body, failing as soon as it grows past `limit` bytes.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<BufferedBody, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            Ok(BufferedBody {
                data: collected.to_bytes(),
                trailers,
            })
        }
        Err(e) if e.is::<LengthLimitError>() => Err(Rejection::BodyTooLarge {
            limit: limit as u64,
        }),
        Err(_) => Err(Rejection::MalformedBody),
    }
}
