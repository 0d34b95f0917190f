//! Any bytes as the token header's values (split on NUL into several headers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_resolve_customer::{TOKEN_HEADER, TokenSource};
use tower_resolve_customer_fuzz::{check, header_values, with_headers};

fuzz_target!(|data: &[u8]| {
    let values = header_values(data);
    check(TokenSource::header(TOKEN_HEADER), || {
        with_headers(TOKEN_HEADER, &values)
    });
});
