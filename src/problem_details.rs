//! [`problem_details`]: the default rejection, an RFC 9457 problem response.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response};

use crate::rejection::Rejection;

/// A shared rejection responder.
pub(crate) type Responder = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;

/// The default rejection: an RFC 9457 `application/problem+json` response.
///
/// The body has `type` (`urn:tower-resolve-customer:<kind>`), `title`, `status`,
/// `detail` (a sentence fit for the buyer) and `code` (the [`Rejection::kind`]).
/// It never holds the token or upstream diagnostics. `503` responses carry
/// `Retry-After`, and every rejection carries `Cache-Control: no-store`.
///
/// Use it from a custom responder to keep the default for some errors:
///
/// ```
/// use tower_resolve_customer::{problem_details, Rejection, ResolveError};
///
/// let response = problem_details(&Rejection::Resolve(ResolveError::Throttled));
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "1");
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// let body = std::str::from_utf8(response.body()).unwrap();
/// assert!(body.contains(r#""type":"urn:tower-resolve-customer:throttled""#));
/// assert!(body.contains(r#""status":503"#));
/// ```
pub fn problem_details(error: &Rejection) -> Response<Bytes> {
    let status = error.status();
    let mut body = String::with_capacity(256);
    body.push_str("{\"type\":\"urn:tower-resolve-customer:");
    body.push_str(error.kind());
    body.push_str("\",\"title\":");
    push_json_string(&mut body, status.canonical_reason().unwrap_or("Error"));
    body.push_str(",\"status\":");
    body.push_str(status.as_str());
    body.push_str(",\"detail\":");
    push_json_string(&mut body, error.public_message());
    body.push_str(",\"code\":\"");
    body.push_str(error.kind());
    body.push_str("\"}");

    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(after) = error.retry_after() {
        // Whole seconds, rounded up, at least one.
        let seconds = (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1);
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#""a\"b\\c\u000ad""#);
    }

    #[test]
    fn expired_detail_is_valid_json_text() {
        let r = problem_details(&Rejection::Resolve(crate::ResolveError::ExpiredToken));
        let body = std::str::from_utf8(r.body()).unwrap();
        assert!(
            body.contains(r#"choose \"Set up your account\" again"#),
            "{body}"
        );
        assert_eq!(r.status(), 400);
        assert!(r.headers().get(RETRY_AFTER).is_none());
    }
}
