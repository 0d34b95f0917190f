//! Any bytes as `Cookie` headers (split on NUL into several headers).
#![no_main]

use http::header::COOKIE;
use libfuzzer_sys::fuzz_target;
use tower_resolve_customer::TokenSource;
use tower_resolve_customer_fuzz::{check, header_values, with_headers};

fuzz_target!(|data: &[u8]| {
    let values = header_values(data);
    check(TokenSource::cookie("mp_token"), || {
        with_headers(COOKIE, &values)
    });
});
