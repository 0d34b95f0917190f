//! Reading an urlencoded form body with a limit, to be replayed afterwards.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Body;
use http_body_util::BodyExt;

use crate::rejection::Rejection;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body read into memory: its bytes and its trailers.
pub(crate) struct BufferedBody {
    pub(crate) data: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

/// Refuses, before reading anything, a body whose declared length is over `limit`.
pub(crate) fn check_content_length(headers: &HeaderMap, limit: usize) -> Result<(), Rejection> {
    let declared = headers
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

/// Reads the whole body, failing as soon as it grows past `limit` bytes. A
/// body of one data frame (the usual form post) is kept as it came, without
/// a copy.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<BufferedBody, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let too_large = || Rejection::BodyTooLarge {
        limit: limit as u64,
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut trailers: Option<HeaderMap> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Rejection::MalformedBody)?;
        let frame = match frame.into_data() {
            Ok(mut data) => {
                len = len.saturating_add(data.remaining());
                if len > limit {
                    return Err(too_large());
                }
                let data = data.copy_to_bytes(data.remaining());
                match (&mut first, &mut joined) {
                    (_, Some(joined)) => joined.extend_from_slice(&data),
                    (Some(earlier), None) => {
                        let mut both = BytesMut::with_capacity(len);
                        both.extend_from_slice(earlier);
                        both.extend_from_slice(&data);
                        joined = Some(both);
                    }
                    (None, None) => first = Some(data),
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(more) = frame.into_trailers() {
            match &mut trailers {
                Some(trailers) => trailers.extend(more),
                None => trailers = Some(more),
            }
        }
    }
    let data = match joined {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    };
    Ok(BufferedBody { data, trailers })
}
