//! Any bytes as a query string (inputs that are not a valid URI are skipped).
#![no_main]

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_resolve_customer::{TOKEN_FIELD, TokenSource};
use tower_resolve_customer_fuzz::check;

fuzz_target!(|query: &[u8]| {
    let mut path = b"/register?".to_vec();
    path.extend_from_slice(query);
    let Ok(uri) = Uri::try_from(path) else { return };
    check(TokenSource::query(TOKEN_FIELD), || {
        Request::get(uri.clone())
            .body(Full::new(Bytes::new()))
            .unwrap()
    });
});
