//! A table of malformed registration requests, each run through a required
//! and an optional layer.
//!
//! For every case and mode the runner checks that nothing panics, that the
//! status (and problem `code`) is the one the table expects, that the resolver
//! is never called for a rejected request, that a rejected request never
//! reaches the inner service, and that a request passed on reaches the handler
//! with its body and trailers exactly as sent.
//!
//! The runtime's clock is paused: a body that never finishes meets the body
//! timeout at once, and every other case must finish without the clock moving.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use tower_resolve_customer::{ResolveCustomerLayer, TOKEN_FIELD, TOKEN_HEADER, TokenSource};

/// The layer's form body limit in these tests.
const MAX_BODY: usize = 256;
/// The layer's token length limit in these tests.
const MAX_TOKEN: usize = 64;
/// The layer's body timeout in these tests.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// The cookie the cookie source reads.
const COOKIE_NAME: &str = "mp_token";
/// A valid token with every punctuation character of the token68 alphabet.
const TOKEN: &str = "AbC+/9-._~==";
/// Another valid token.
const OTHER: &str = "ZyX-other";

/// Where the layer under test looks for the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Src {
    /// The default: the `x-amzn-marketplace-token` field of an urlencoded POST.
    Form,
    /// The `x-amzn-marketplace-token` header.
    Header,
    /// The `x-amzn-marketplace-token` query parameter.
    Query,
    /// The `mp_token` cookie.
    Cookie,
    /// The form, then the header.
    FormOrHeader,
}

impl Src {
    fn source(self) -> TokenSource {
        match self {
            Src::Form => TokenSource::form(),
            Src::Header => TokenSource::header(TOKEN_HEADER),
            Src::Query => TokenSource::query(TOKEN_FIELD),
            Src::Cookie => TokenSource::cookie(COOKIE_NAME),
            Src::FormOrHeader => TokenSource::form().or(TokenSource::header(TOKEN_HEADER)),
        }
    }
}

/// What the layer must do with a case.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Answer itself with this status and problem `code`; call neither the
    /// resolver nor the inner service.
    Reject(u16, &'static str),
    /// Pass the request on without a customer, body and trailers intact, and
    /// without calling the resolver.
    Pass,
    /// Resolve this token exactly once and pass the request on with its
    /// customer, body and trailers intact.
    Resolved(&'static str),
}

use Expect::{Pass, Reject, Resolved};

const MISSING: Expect = Reject(400, "missing-token");
const MALFORMED: Expect = Reject(400, "malformed-token");
const AMBIGUOUS: Expect = Reject(400, "ambiguous-token");
const TOO_LARGE: Expect = Reject(413, "body-too-large");
const BAD_BODY: Expect = Reject(400, "malformed-body");
const TIMED_OUT: Expect = Reject(408, "body-timeout");

/// How the request body ends after its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Complete,
    /// The stream fails (a reset connection).
    Fail,
    /// The stream never ends (a slowloris client).
    Hang,
}

/// A request, as data, so that each mode gets a fresh copy.
#[derive(Clone)]
struct Req {
    method: Method,
    uri: String,
    version: Version,
    headers: Vec<(HeaderName, Vec<u8>)>,
    chunks: Vec<Vec<u8>>,
    trailers: Option<HeaderMap>,
    end: End,
}

impl Req {
    /// `POST /register` with `Content-Type: application/x-www-form-urlencoded`
    /// and `body` in one frame.
    fn form(body: impl AsRef<[u8]>) -> Self {
        Self {
            method: Method::POST,
            uri: "/register".into(),
            version: Version::HTTP_11,
            headers: vec![(CONTENT_TYPE, FORM.into())],
            chunks: vec![body.as_ref().to_vec()],
            trailers: None,
            end: End::Complete,
        }
    }

    /// `GET uri` with a small body that is not a form.
    fn get(uri: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            uri: uri.into(),
            version: Version::HTTP_11,
            headers: Vec::new(),
            chunks: vec![b"untouched \xff body".to_vec()],
            trailers: None,
            end: End::Complete,
        }
    }

    /// `GET /` with one `name: value` header (raw bytes).
    fn get_with(name: HeaderName, value: impl AsRef<[u8]>) -> Self {
        Self::get("/").header(name, value)
    }

    /// Adds a header (raw bytes, which may be obs-text).
    fn header(mut self, name: HeaderName, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }

    /// Replaces the `Content-Type`, or removes it with `None`.
    fn content_type(mut self, value: Option<&str>) -> Self {
        self.headers.retain(|(n, _)| n != CONTENT_TYPE);
        if let Some(value) = value {
            self.headers.push((CONTENT_TYPE, value.into()));
        }
        self
    }

    fn content_length(self, value: impl ToString) -> Self {
        self.header(CONTENT_LENGTH, value.to_string())
    }

    /// Replaces the body with these frames.
    fn chunks(mut self, chunks: &[&[u8]]) -> Self {
        self.chunks = chunks.iter().map(|c| c.to_vec()).collect();
        self
    }

    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// An HTTP/2 request: no `Content-Length`, the body in several frames.
    fn http2(mut self, chunks: &[&[u8]]) -> Self {
        self.version = Version::HTTP_2;
        self.headers.retain(|(n, _)| n != CONTENT_LENGTH);
        self.chunks(chunks)
    }

    fn trailers(mut self, pairs: &[(&'static str, &'static str)]) -> Self {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        self.trailers = Some(map);
        self
    }

    fn failing(mut self) -> Self {
        self.end = End::Fail;
        self
    }

    fn hanging(mut self) -> Self {
        self.end = End::Hang;
        self
    }

    /// The body bytes as sent.
    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn build(&self) -> Request<FrameBody> {
        let mut frames: Vec<Frame<bytes::Bytes>> = self
            .chunks
            .iter()
            .map(|c| Frame::data(bytes::Bytes::copy_from_slice(c)))
            .collect();
        if let Some(trailers) = &self.trailers {
            frames.push(Frame::trailers(trailers.clone()));
        }
        let body = match self.end {
            End::Complete => FrameBody::new(frames),
            End::Fail => FrameBody::new(frames).failing(),
            End::Hang => FrameBody::new(frames).hanging(),
        };
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.as_str())
            .version(self.version);
        for (name, value) in &self.headers {
            let value = HeaderValue::from_bytes(value).expect("a valid header value");
            builder = builder.header(name, value);
        }
        builder.body(body).expect("a valid request")
    }
}

/// One row of the table.
struct Case {
    name: &'static str,
    src: Src,
    req: Req,
    required: Expect,
    optional: Expect,
}

/// A case with its expectation in each mode.
fn case(name: &'static str, src: Src, req: Req, required: Expect, optional: Expect) -> Case {
    Case {
        name,
        src,
        req,
        required,
        optional,
    }
}

/// A case with the same expectation in both modes.
fn both(name: &'static str, src: Src, req: Req, expect: Expect) -> Case {
    case(name, src, req, expect, expect)
}

/// A case that carries no token: refused when required, passed on untouched
/// when optional.
fn absent(name: &'static str, src: Src, req: Req) -> Case {
    case(name, src, req, MISSING, Pass)
}

/// `x-amzn-marketplace-token=<value>`, `value` as written (not encoded).
fn field(value: &str) -> String {
    format!("{TOKEN_FIELD}={value}")
}

/// `x-amzn-marketplace-token=<value>` with raw bytes in the value.
fn field_bytes(value: &[u8]) -> Vec<u8> {
    [TOKEN_FIELD.as_bytes(), b"=", value].concat()
}

/// `/register?<query>`.
fn query(query: &str) -> Req {
    Req::get(format!("/register?{query}"))
}

fn cases() -> Vec<Case> {
    use Src::*;
    let valid = form_with_token(TOKEN);
    let valid_other = form_with_token(OTHER);
    let pad = "p".repeat(MAX_BODY);
    let over_limit = format!("{valid}&pad={pad}");
    assert!(over_limit.len() > MAX_BODY);
    let at_max_len: &'static str = "A".repeat(MAX_TOKEN).leak();
    let over_max_len = "A".repeat(MAX_TOKEN + 1);
    let token_cookie = format!("{COOKIE_NAME}={TOKEN}");
    let other_cookie = format!("{COOKIE_NAME}={OTHER}");
    let encoded_name = format!("x%2Damzn-marketplace-token={OTHER}");

    let mut t = Vec::new();

    // Percent-encoding that does not decode: left as is, `%` is refused.
    t.push(both("pct_lone", Form, Req::form(field("%")), MALFORMED));
    t.push(both(
        "pct_bad_hex",
        Form,
        Req::form(field("%zz")),
        MALFORMED,
    ));
    t.push(both(
        "pct_truncated",
        Form,
        Req::form(field("%2")),
        MALFORMED,
    ));
    t.push(both(
        "pct_truncated_after_token",
        Form,
        Req::form(field("abc%2")),
        MALFORMED,
    ));
    t.push(both(
        "pct_double_encoded",
        Form,
        Req::form(field("abc%252B")),
        MALFORMED,
    ));

    // Invalid UTF-8: decoded lossily to U+FFFD, which is refused.
    t.push(both(
        "utf8_invalid_raw",
        Form,
        Req::form(field_bytes(b"ab\xffcd")),
        MALFORMED,
    ));
    t.push(both(
        "utf8_invalid_pct_ff",
        Form,
        Req::form(field("ab%ffcd")),
        MALFORMED,
    ));
    t.push(both(
        "utf8_overlong_pct",
        Form,
        Req::form(field("%C0%AF")),
        MALFORMED,
    ));
    t.push(both(
        "utf8_surrogate_pct",
        Form,
        Req::form(field("ab%ED%A0%80")),
        MALFORMED,
    ));
    t.push(both(
        "utf8_truncated_at_end_raw",
        Form,
        Req::form(field_bytes(b"abc\xe2\x82")),
        MALFORMED,
    ));

    // Whitespace and control characters.
    t.push(both(
        "space_pct20",
        Form,
        Req::form(field("ab%20cd")),
        MALFORMED,
    ));
    t.push(both(
        "raw_plus_decodes_to_space",
        Form,
        Req::form(field("ab+cd")),
        MALFORMED,
    ));
    t.push(both(
        "surrounding_plus_spaces",
        Form,
        Req::form(field("+abc+")),
        MALFORMED,
    ));
    t.push(both("tab", Form, Req::form(field("ab%09cd")), MALFORMED));
    t.push(both(
        "crlf_injection",
        Form,
        Req::form(field("abc%0D%0ASet-Cookie:%20x=1")),
        MALFORMED,
    ));
    t.push(both(
        "nul_pct",
        Form,
        Req::form(field("ab%00cd")),
        MALFORMED,
    ));
    t.push(both(
        "del_pct",
        Form,
        Req::form(field("ab%7Fcd")),
        MALFORMED,
    ));
    t.push(both(
        "control_byte_raw",
        Form,
        Req::form(field_bytes(b"ab\x01cd")),
        MALFORMED,
    ));

    // Characters that are not visible ASCII, or not token68.
    t.push(both(
        "non_ascii_latin",
        Form,
        Req::form(field("caf%C3%A9")),
        MALFORMED,
    ));
    t.push(both(
        "zero_width_space",
        Form,
        Req::form(field("ab%E2%80%8Bcd")),
        MALFORMED,
    ));
    t.push(both(
        "cyrillic_homoglyph",
        Form,
        Req::form(field("%D0%B0bc")),
        MALFORMED,
    ));
    t.push(both(
        "fullwidth_digit",
        Form,
        Req::form(field("%EF%BC%91")),
        MALFORMED,
    ));
    t.push(both(
        "raw_semicolon",
        Form,
        Req::form(field("ab;cd")),
        MALFORMED,
    ));
    t.push(both("quote", Form, Req::form(field("ab%22cd")), MALFORMED));

    // Empty tokens.
    t.push(both("empty_value", Form, Req::form(field("")), MALFORMED));
    t.push(both(
        "name_without_equals",
        Form,
        Req::form(TOKEN_FIELD),
        MALFORMED,
    ));

    // The field twice.
    t.push(both(
        "twice_different",
        Form,
        Req::form(format!("{valid}&{valid_other}")),
        AMBIGUOUS,
    ));
    t.push(both(
        "twice_same",
        Form,
        Req::form(format!("{valid}&plan=pro&{valid}")),
        Resolved(TOKEN),
    ));
    t.push(both(
        "twice_second_malformed",
        Form,
        Req::form(format!("{valid}&{}", field("a+b"))),
        MALFORMED,
    ));
    t.push(both(
        "twice_second_empty",
        Form,
        Req::form(format!("{valid}&{}", field(""))),
        MALFORMED,
    ));
    t.push(both(
        "twice_second_name_percent_encoded",
        Form,
        Req::form(format!("{valid}&{encoded_name}")),
        AMBIGUOUS,
    ));

    // Token length.
    t.push(both(
        "token_over_max_len",
        Form,
        Req::form(field(&over_max_len)),
        MALFORMED,
    ));
    t.push(both(
        "token_at_max_len",
        Form,
        Req::form(field(at_max_len)),
        Resolved(at_max_len),
    ));

    // Body size, honest and lying Content-Length.
    t.push(both(
        "content_length_over_limit",
        Form,
        Req::form(&over_limit).content_length(over_limit.len()),
        TOO_LARGE,
    ));
    t.push(both(
        "streamed_over_limit_without_content_length",
        Form,
        Req::form("").chunks(&[valid.as_bytes(), b"&pad=", pad.as_bytes(), pad.as_bytes()]),
        TOO_LARGE,
    ));
    t.push(both(
        "content_length_small_but_sends_over_limit",
        Form,
        Req::form(&over_limit).content_length(10),
        TOO_LARGE,
    ));
    // Within the limit the layer reads what the body yields and hands the
    // same bytes on (framing is the HTTP server's job).
    t.push(both(
        "content_length_small_but_sends_more_within_limit",
        Form,
        Req::form(format!("{valid}&note=more")).content_length(5),
        Resolved(TOKEN),
    ));
    t.push(both(
        "content_length_large_under_limit_but_body_small",
        Form,
        Req::form(&valid).content_length(MAX_BODY),
        Resolved(TOKEN),
    ));
    t.push(both(
        "content_length_over_limit_but_body_small",
        Form,
        Req::form(&valid).content_length(1_000_000_000u64),
        TOO_LARGE,
    ));
    t.push(both(
        "content_length_unparseable_body_over_limit",
        Form,
        Req::form(&over_limit).content_length("12abc"),
        TOO_LARGE,
    ));
    t.push(both(
        "content_length_overflowing_u64_body_small",
        Form,
        Req::form(&valid).content_length("99999999999999999999999"),
        Resolved(TOKEN),
    ));

    // Content types.
    let json = format!("{{\"{TOKEN_FIELD}\":\"{TOKEN}\"}}");
    t.push(absent(
        "content_type_json",
        Form,
        Req::form(&json).content_type(Some("application/json")),
    ));
    t.push(absent(
        "content_type_missing",
        Form,
        Req::form(&valid).content_type(None),
    ));
    t.push(absent(
        "content_type_empty",
        Form,
        Req::form(&valid).content_type(Some("")),
    ));
    t.push(absent(
        "content_type_text_plain",
        Form,
        Req::form(&valid).content_type(Some("text/plain")),
    ));
    t.push(absent(
        "content_type_lookalike_suffix",
        Form,
        Req::form(&valid).content_type(Some("application/x-www-form-urlencoded-evil")),
    ));
    t.push(both(
        "content_type_charset_utf8",
        Form,
        Req::form(&valid).content_type(Some("application/x-www-form-urlencoded; charset=UTF-8")),
        Resolved(TOKEN),
    ));
    t.push(both(
        "content_type_mixed_case_and_spaces",
        Form,
        Req::form(&valid).content_type(Some(
            " Application/X-WWW-Form-Urlencoded ; Charset=\"utf-8\"",
        )),
        Resolved(TOKEN),
    ));
    t.push(both(
        "content_type_charset_latin1_ascii_token",
        Form,
        Req::form(&valid).content_type(Some(
            "application/x-www-form-urlencoded; charset=ISO-8859-1",
        )),
        Resolved(TOKEN),
    ));
    let multipart = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"{TOKEN_FIELD}\"\r\n\r\n{TOKEN}\r\n--XyZ--\r\n"
    );
    t.push(absent(
        "multipart_form_data",
        Form,
        Req::form(&multipart).content_type(Some("multipart/form-data; boundary=XyZ")),
    ));

    // Bodies that fail or never end.
    t.push(both(
        "body_errors_midway",
        Form,
        Req::form("")
            .chunks(&[valid.as_bytes(), b"&pad=abc"])
            .failing(),
        BAD_BODY,
    ));
    t.push(both(
        "body_errors_before_any_data",
        Form,
        Req::form("").chunks(&[]).failing(),
        BAD_BODY,
    ));
    t.push(both(
        "slowloris_after_partial_token",
        Form,
        Req::form("")
            .chunks(&[b"x-amzn-marketplace-token=AbC", b"%2"])
            .hanging(),
        TIMED_OUT,
    ));
    t.push(both(
        "slowloris_no_bytes_at_all",
        Form,
        Req::form("").chunks(&[]).hanging(),
        TIMED_OUT,
    ));

    // Trailers and other fields are handed on as they came.
    t.push(both(
        "trailers_with_token",
        Form,
        Req::form(&valid).trailers(&[("x-checksum", "abc"), ("x-checksum", "def")]),
        Resolved(TOKEN),
    ));
    t.push(absent(
        "trailers_without_token",
        Form,
        Req::form("plan=pro").trailers(&[("x-checksum", "abc")]),
    ));
    t.push(both(
        "invalid_utf8_in_another_field",
        Form,
        Req::form(
            [
                b"note=\xff\xfe%ff&".as_slice(),
                valid.as_bytes(),
                b"&x=\x00",
            ]
            .concat(),
        ),
        Resolved(TOKEN),
    ));

    // Fields that are not the token field.
    t.push(absent(
        "field_name_wrong_case",
        Form,
        Req::form(format!("X-Amzn-Marketplace-Token={TOKEN}")),
    ));
    t.push(absent(
        "field_name_with_trailing_plus",
        Form,
        Req::form(format!("{TOKEN_FIELD}+={OTHER}")),
    ));
    t.push(absent("empty_body", Form, Req::form("")));
    t.push(absent("only_separators", Form, Req::form("&&&==&=&")));

    t.push(both(
        "unencoded_base64_padding",
        Form,
        Req::form(field("AbC+/9==").replace('+', "%2B")),
        Resolved("AbC+/9=="),
    ));
    t.push(absent(
        "token_only_in_query_of_form_post",
        Form,
        Req {
            uri: format!("/register?{valid}"),
            ..Req::form("plan=pro")
        },
    ));
    t.push(absent(
        "trailers_only_no_data",
        Form,
        Req::form("")
            .chunks(&[])
            .trailers(&[("x-amzn-marketplace-token", "AbC")]),
    ));
    t.push(absent(
        "content_type_twice_first_not_form",
        Form,
        Req::form(&valid)
            .content_type(Some("application/json"))
            .header(CONTENT_TYPE, FORM),
    ));

    // Methods that do not carry a form.
    t.push(absent(
        "get_with_form_body",
        Form,
        Req::form(&valid).method(Method::GET),
    ));
    t.push(absent(
        "head_with_form_body",
        Form,
        Req::form(&valid).method(Method::HEAD),
    ));
    t.push(absent(
        "options_with_form_body",
        Form,
        Req::form(&valid).method(Method::OPTIONS),
    ));
    t.push(absent(
        "put_with_form_body",
        Form,
        Req::form(&valid).method(Method::PUT),
    ));

    // HTTP/2-style requests: no Content-Length, the body in several frames.
    let (a, rest) = valid.as_bytes().split_at(TOKEN_FIELD.len() + 4);
    let (b, c) = rest.split_at(3);
    t.push(both(
        "http2_frames_split_inside_escape",
        Form,
        Req::form("").http2(&[b"plan=pro&", a, b, c, b"", b"&x=1"]),
        Resolved(TOKEN),
    ));
    t.push(both(
        "http2_frames_over_limit",
        Form,
        Req::form("").http2(&[valid.as_bytes(), b"&pad=", pad.as_bytes(), b"1"]),
        TOO_LARGE,
    ));
    t.push(both(
        "http2_frames_malformed_token",
        Form,
        Req::form("").http2(&[b"x-amzn-marketplace-token=ab", b"+c", b"d"]),
        MALFORMED,
    ));
    t.push(absent(
        "http2_frames_no_token",
        Form,
        Req::form("").http2(&[b"plan=", b"pro", b"&note=%ff"]),
    ));

    // Header source.
    t.push(both(
        "header_obs_text",
        Header,
        Req::get_with(TOKEN_HEADER, b"ab\x80cd"),
        MALFORMED,
    ));
    t.push(both(
        "header_obs_text_only",
        Header,
        Req::get_with(TOKEN_HEADER, b"\xff\xfe"),
        MALFORMED,
    ));
    t.push(both(
        "header_utf8_non_ascii",
        Header,
        Req::get_with(TOKEN_HEADER, "caf\u{e9}"),
        MALFORMED,
    ));
    t.push(both(
        "header_twice_same",
        Header,
        Req::get_with(TOKEN_HEADER, TOKEN).header(TOKEN_HEADER, TOKEN),
        Resolved(TOKEN),
    ));
    t.push(both(
        "header_twice_different",
        Header,
        Req::get_with(TOKEN_HEADER, TOKEN).header(TOKEN_HEADER, OTHER),
        AMBIGUOUS,
    ));
    t.push(both(
        "header_twice_second_obs_text",
        Header,
        Req::get_with(TOKEN_HEADER, TOKEN).header(TOKEN_HEADER, b"ab\xe9"),
        MALFORMED,
    ));
    t.push(both(
        "header_comma_joined",
        Header,
        Req::get_with(TOKEN_HEADER, format!("{TOKEN}, {OTHER}")),
        MALFORMED,
    ));
    t.push(both(
        "header_empty",
        Header,
        Req::get_with(TOKEN_HEADER, ""),
        MALFORMED,
    ));
    t.push(both(
        "header_inner_space",
        Header,
        Req::get_with(TOKEN_HEADER, "ab cd"),
        MALFORMED,
    ));
    t.push(both(
        "header_tab",
        Header,
        Req::get_with(TOKEN_HEADER, "ab\tcd"),
        MALFORMED,
    ));
    t.push(both(
        "header_leading_space",
        Header,
        Req::get_with(TOKEN_HEADER, format!(" {TOKEN}")),
        MALFORMED,
    ));
    t.push(both(
        "header_percent_encoded_is_verbatim",
        Header,
        Req::get_with(TOKEN_HEADER, "abc%2B"),
        MALFORMED,
    ));

    // Query source.
    t.push(both(
        "query_twice_same",
        Query,
        query(&format!("{valid}&a=1&{valid}")),
        Resolved(TOKEN),
    ));
    t.push(both(
        "query_twice_different",
        Query,
        query(&format!("{valid}&{valid_other}")),
        AMBIGUOUS,
    ));
    t.push(both(
        "query_pct_bad_hex",
        Query,
        query(&field("%zz")),
        MALFORMED,
    ));
    t.push(both("query_pct_lone", Query, query(&field("%")), MALFORMED));
    t.push(both(
        "query_pct_ff",
        Query,
        query(&field("ab%ffcd")),
        MALFORMED,
    ));
    t.push(both(
        "query_raw_plus",
        Query,
        query(&field("ab+cd")),
        MALFORMED,
    ));
    t.push(both(
        "query_empty_value",
        Query,
        query(&field("")),
        MALFORMED,
    ));
    t.push(both(
        "query_name_only",
        Query,
        query(TOKEN_FIELD),
        MALFORMED,
    ));
    t.push(absent("query_empty", Query, query("")));

    // Cookie source.
    t.push(absent(
        "cookie_bare_name",
        Cookie,
        Req::get_with(COOKIE, COOKIE_NAME),
    ));
    t.push(absent(
        "cookie_empty_name",
        Cookie,
        Req::get_with(COOKIE, "=x"),
    ));
    t.push(absent(
        "cookie_only_separators",
        Cookie,
        Req::get_with(COOKIE, ";;"),
    ));
    t.push(absent(
        "cookie_name_wrong_case",
        Cookie,
        Req::get_with(COOKIE, format!("MP_TOKEN={TOKEN}")),
    ));
    t.push(both(
        "cookie_unbalanced_open_quote",
        Cookie,
        Req::get_with(COOKIE, format!("{COOKIE_NAME}=\"{TOKEN}")),
        MALFORMED,
    ));
    t.push(both(
        "cookie_unbalanced_close_quote",
        Cookie,
        Req::get_with(COOKIE, format!("{COOKIE_NAME}={TOKEN}\"")),
        MALFORMED,
    ));
    t.push(both(
        "cookie_lone_quote",
        Cookie,
        Req::get_with(COOKIE, format!("{COOKIE_NAME}=\"")),
        MALFORMED,
    ));
    t.push(both(
        "cookie_empty_quoted",
        Cookie,
        Req::get_with(COOKIE, format!("{COOKIE_NAME}=\"\"")),
        MALFORMED,
    ));
    t.push(both(
        "cookie_empty_value",
        Cookie,
        Req::get_with(COOKIE, format!("a=1; {COOKIE_NAME}=; b=2")),
        MALFORMED,
    ));
    t.push(both(
        "cookie_twice_same",
        Cookie,
        Req::get_with(COOKIE, format!("{token_cookie}; a=1; {token_cookie}")),
        Resolved(TOKEN),
    ));
    t.push(both(
        "cookie_twice_different",
        Cookie,
        Req::get_with(COOKIE, format!("{token_cookie}; {other_cookie}")),
        AMBIGUOUS,
    ));
    t.push(both(
        "cookie_split_headers_different",
        Cookie,
        Req::get_with(COOKIE, &token_cookie).header(COOKIE, &other_cookie),
        AMBIGUOUS,
    ));
    t.push(both(
        "cookie_obs_text",
        Cookie,
        Req::get_with(COOKIE, [COOKIE_NAME.as_bytes(), b"=ab\xffcd"].concat()),
        MALFORMED,
    ));
    t.push(both(
        "cookie_obs_text_in_another_cookie",
        Cookie,
        Req::get_with(
            COOKIE,
            [b"junk=\xff\xfe; ".as_slice(), token_cookie.as_bytes()].concat(),
        ),
        Resolved(TOKEN),
    ));

    // Two sources.
    t.push(both(
        "form_and_header_disagree",
        FormOrHeader,
        Req::form(&valid).header(TOKEN_HEADER, OTHER),
        AMBIGUOUS,
    ));
    t.push(both(
        "header_obs_text_with_valid_form",
        FormOrHeader,
        Req::form(&valid).header(TOKEN_HEADER, b"\x80"),
        MALFORMED,
    ));

    t
}

/// Sends `case` through a layer in the given mode and checks every promise;
/// returns what went wrong.
async fn run(case: &Case, required: bool) -> Result<(), String> {
    let expect = if required {
        case.required
    } else {
        case.optional
    };
    let resolver = TestResolver::ok();
    let layer = ResolveCustomerLayer::new(Arc::clone(&resolver))
        .token_source(case.src.source())
        .max_body_bytes(MAX_BODY)
        .max_token_len(MAX_TOKEN)
        .body_timeout(BODY_TIMEOUT);
    let layer = if required {
        layer.required()
    } else {
        layer.optional()
    };
    let h = Harness::new(layer);

    let started = tokio::time::Instant::now();
    // Simulated time: a request that never ends (a hanging body passed on to
    // the handler) fails the case at once instead of hanging the test.
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::spawn(h.send(case.req.build())),
    )
    .await
    .map_err(|_| "no answer within 60 s".to_owned())?
    .map_err(|e| format!("panicked: {e}"))?;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let content_type = response.headers().get(CONTENT_TYPE).cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();

    let mut wrong = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    let body_text = String::from_utf8_lossy(&body);
    if case.req.end == End::Hang {
        check(
            elapsed == BODY_TIMEOUT,
            format!("answered after {elapsed:?}, not the body timeout"),
        );
    } else {
        check(elapsed.is_zero(), format!("the clock moved by {elapsed:?}"));
    }
    match expect {
        Reject(code, kind) => {
            check(
                status == code,
                format!("status {status}, expected {code} ({body_text})"),
            );
            check(
                body_text.contains(&format!("\"code\":\"{kind}\"")),
                format!("problem code is not {kind}: {body_text}"),
            );
            check(
                content_type
                    .as_ref()
                    .is_some_and(|v| v == "application/problem+json"),
                format!("content type {content_type:?}"),
            );
            check(
                resolver.calls() == 0,
                format!("resolver called {} times", resolver.calls()),
            );
            check(
                h.handled() == 0,
                format!("inner service called {} times", h.handled()),
            );
        }
        Pass | Resolved(_) => {
            check(status == 200, format!("status {status}: {body_text}"));
            check(
                h.handled() == 1,
                format!("inner service called {} times", h.handled()),
            );
            let sent = case.req.body();
            check(
                body == sent,
                format!(
                    "response echoes {:?}, sent {:?}",
                    body,
                    bytes::Bytes::from(sent.clone())
                ),
            );
            if let Some(seen) = h.requests().first() {
                check(
                    seen.body == sent,
                    format!(
                        "handler got {:?}, sent {:?}",
                        seen.body,
                        bytes::Bytes::from(sent)
                    ),
                );
                check(
                    seen.trailers == case.req.trailers,
                    format!(
                        "handler got trailers {:?}, sent {:?}",
                        seen.trailers, case.req.trailers
                    ),
                );
                let expected_customer = match expect {
                    Resolved(token) => Some(customer_for(token)),
                    _ => None,
                };
                check(
                    seen.customer == expected_customer,
                    format!("handler got customer {:?}", seen.customer),
                );
            }
            match expect {
                Resolved(token) => {
                    check(
                        resolver.calls() == 1 && resolver.calls_for(token) == 1,
                        format!(
                            "resolver called {} times, {} with the token",
                            resolver.calls(),
                            resolver.calls_for(token)
                        ),
                    );
                }
                _ => check(
                    resolver.calls() == 0,
                    format!("resolver called {} times", resolver.calls()),
                ),
            }
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

#[tokio::test(start_paused = true)]
async fn every_bad_input_gets_its_status_and_nothing_leaks_through() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        for required in [true, false] {
            if let Err(e) = run(case, required).await {
                let mode = if required { "required" } else { "optional" };
                failures.push(format!("{} [{mode}]: {e}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
}

#[test]
fn the_table_is_large_named_uniquely_and_covers_every_source() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut names = HashSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case {}", case.name);
    }
    let sources: HashSet<Src> = cases.iter().map(|c| c.src).collect();
    for src in [
        Src::Form,
        Src::Header,
        Src::Query,
        Src::Cookie,
        Src::FormOrHeader,
    ] {
        assert!(sources.contains(&src), "no case for {src:?}");
    }
    // A required layer never hands on a request without a customer.
    for case in &cases {
        if let Pass = case.required {
            panic!(
                "{}: a required layer never passes a request without a token",
                case.name
            );
        }
    }
}
