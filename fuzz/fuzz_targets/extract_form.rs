//! Any bytes as an urlencoded form body, in one or two frames.
#![no_main]

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_resolve_customer::TokenSource;
use tower_resolve_customer_fuzz::check;

fuzz_target!(|body: &[u8]| {
    let body = Bytes::copy_from_slice(body);
    check(TokenSource::form(), || {
        Request::post("/register")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(body.clone()))
            .unwrap()
    });
});
