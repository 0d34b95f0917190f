//! Property tests of token extraction and body replay.
//!
//! - Extraction never panics, never answers a client's garbage with a 5xx and
//!   never sends an invalid token upstream, whatever the body, headers, cookies
//!   and query string, for every kind of token source.
//! - With the optional layer, any body, cut into any frames, reaches the
//!   handler byte for byte, trailers included; whether it passes, resolves or is
//!   refused follows a model built on `form_urlencoded::parse`.
//! - Any token68 token, form-encoded, reaches the resolver exactly as it was.
//!
//! Each property builds one current-thread runtime and drives every case on it.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http::header::{CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use tower_resolve_customer::{
    DEFAULT_MAX_TOKEN_LEN, ResolveCustomerLayer, TOKEN_FIELD, TOKEN_HEADER, TokenSource,
};

const COOKIE_NAME: &str = "mp_token";

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Shrunk failures are printed; nothing is written next to the tests.
        failure_persistence: None,
        ..Config::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every kind of source, and all of them at once.
fn sources() -> [(&'static str, TokenSource); 5] {
    [
        ("form", TokenSource::form()),
        ("header", TokenSource::header(TOKEN_HEADER)),
        ("query", TokenSource::query(TOKEN_FIELD)),
        ("cookie", TokenSource::cookie(COOKIE_NAME)),
        (
            "all",
            TokenSource::first_of([
                TokenSource::form(),
                TokenSource::header(TOKEN_HEADER),
                TokenSource::query(TOKEN_FIELD),
                TokenSource::cookie(COOKIE_NAME),
            ]),
        ),
    ]
}

/// A token68 token: `len` characters of the base64 alphabets, the last up
/// to two of them `=` padding when there is room. Anything `token68(0..)`
/// yields with length zero is empty, hence invalid.
fn token68(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> + Clone {
    let alphabet: Vec<char> =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-._~"
            .chars()
            .collect();
    (vec(prop::sample::select(alphabet), len), 0..=2usize).prop_map(|(chars, padding)| {
        let padding = padding.min(chars.len().saturating_sub(1));
        let mut token: String = chars.into_iter().collect();
        token.truncate(token.len() - padding);
        token.push_str(&"=".repeat(padding));
        token
    })
}

/// Bytes that look like what the extractor parses: arbitrary bytes mixed with
/// field names, separators, escapes (good and broken) and token-like runs.
fn junk(max_pieces: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    let piece = prop_oneof![
        3 => vec(any::<u8>(), 0..12),
        1 => Just(TOKEN_FIELD.as_bytes().to_vec()),
        2 => prop::sample::select(vec![
            "&", "=", ";", "; ", "%", "%2", "%zz", "%ff", "%2B", "%20", "%00", "+", "\"",
            " ", "\t", "mp_token", "mp_token=", "x-amzn-marketplace-token=", "%C3%A9",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => token68(1..=24).prop_map(String::into_bytes),
    ];
    vec(piece, 0..max_pieces).prop_map(|pieces| pieces.concat())
}

/// Bytes a `HeaderValue` accepts: HTAB, visible ASCII, SP and obs-text.
fn header_bytes(max_pieces: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    junk(max_pieces).prop_map(|bytes| {
        bytes
            .into_iter()
            .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            .collect()
    })
}

/// `bytes` cut into frames of the given sizes (empty frames included), the
/// rest in a last frame.
fn frames(bytes: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(Bytes::copy_from_slice(head));
        rest = tail;
    }
    out.push(Bytes::copy_from_slice(rest));
    out
}

fn frame_body(chunks: Vec<Bytes>, trailers: Option<HeaderMap>) -> FrameBody {
    let mut frames: Vec<Frame<Bytes>> = chunks.into_iter().map(Frame::data).collect();
    frames.extend(trailers.map(Frame::trailers));
    FrameBody::new(frames)
}

/// A resolver that answers every token and records any it should never have
/// been given: invalid, or longer than `max_len`.
fn checking_resolver(max_len: usize) -> (Arc<TestResolver>, Arc<Mutex<Vec<String>>>) {
    let bad = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&bad);
    let resolver = TestResolver::with(move |t| {
        if !is_token68(t, max_len) {
            record.lock().unwrap().push(t.to_owned());
        }
        Ok(customer_for(t))
    });
    (resolver, bad)
}

const CONTENT_TYPES: &[Option<&str>] = &[
    Some(FORM),
    Some(FORM),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("application/json"),
    Some("multipart/form-data; boundary=x"),
    None,
];

/// A request whose every part may be garbage; a valid token may be planted in
/// some of its parts (the same one in each), so that requests also get as far
/// as a resolve.
#[derive(Debug, Clone)]
struct Garbage {
    method: Method,
    query: Vec<u8>,
    content_type: Option<&'static str>,
    headers: Vec<Vec<u8>>,
    cookies: Vec<Vec<u8>>,
    body: Vec<u8>,
    sizes: Vec<usize>,
}

/// `junk`, maybe `plant`, more `junk`.
fn planted(
    junk: impl Strategy<Value = Vec<u8>> + Clone,
    plant: Vec<u8>,
) -> impl Strategy<Value = Vec<u8>> + Clone {
    (junk.clone(), any::<bool>(), junk).prop_map(move |(before, planting, after)| {
        let plant: &[u8] = if planting { &plant } else { b"" };
        [before.as_slice(), plant, &after].concat()
    })
}

fn garbage() -> impl Strategy<Value = Garbage> {
    token68(1..=24)
        .prop_flat_map(|token| {
            let field = format!("&{}&", form_with_token(&token)).into_bytes();
            let cookie = format!("; {COOKIE_NAME}={token}; ").into_bytes();
            let header = prop_oneof![
                2 => header_bytes(6),
                1 => Just(token.clone().into_bytes()),
            ];
            (
                prop::sample::select(vec![
                    Method::POST,
                    Method::POST,
                    Method::POST,
                    Method::GET,
                    Method::PUT,
                ]),
                planted(junk(6), field.clone()),
                prop::sample::select(CONTENT_TYPES.to_vec()),
                vec(header, 0..3),
                vec(planted(header_bytes(6), cookie), 0..3),
                planted(junk(16), field),
                vec(0usize..48, 0..8),
            )
        })
        .prop_map(
            |(method, query, content_type, headers, cookies, body, sizes)| Garbage {
                method,
                query,
                content_type,
                headers,
                cookies,
                body,
                sizes,
            },
        )
}

impl Garbage {
    fn request(&self) -> Request<FrameBody> {
        // Only what `Uri` accepts can be sent; otherwise the query is dropped.
        let uri = Uri::try_from([b"/register?".as_slice(), &self.query].concat().as_slice())
            .unwrap_or_else(|_| Uri::from_static("/register"));
        let mut builder = Request::builder().method(self.method.clone()).uri(uri);
        if let Some(ct) = self.content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        for value in &self.headers {
            builder = builder.header(TOKEN_HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        for value in &self.cookies {
            builder = builder.header(COOKIE, HeaderValue::from_bytes(value).unwrap());
        }
        let body = frame_body(frames(&self.body, &self.sizes), None);
        builder.body(body).unwrap()
    }
}

/// (a) Extraction never panics, never answers 5xx, never sends an invalid
/// token upstream, and never lets a rejected request through.
#[test]
fn extraction_never_panics_on_garbage() {
    const MAX_TOKEN: usize = 32;
    let rt = runtime();
    // How often each source ends each way: the generator must reach them all.
    let tally = Mutex::new(BTreeMap::<(&str, &str), usize>::new());
    proptest!(config(192), |(g in garbage())| {
        for (name, source) in sources() {
            for required in [true, false] {
                let (resolver, bad) = checking_resolver(MAX_TOKEN);
                let layer = ResolveCustomerLayer::new(Arc::clone(&resolver))
                    .token_source(source.clone())
                    .max_body_bytes(256)
                    .max_token_len(MAX_TOKEN);
                let layer = if required { layer.required() } else { layer.optional() };
                let h = Harness::new(layer);
                let response = rt.block_on(h.send(g.request()));
                let status = response.status().as_u16();
                let what = format!("{name} source, required: {required}, status {status}");
                prop_assert!(matches!(status, 200 | 400 | 413), "{}", what);
                prop_assert!(bad.lock().unwrap().is_empty(), "{}: resolver got an invalid token", what);
                prop_assert!(resolver.calls() <= 1, "{}: {} resolves", what, resolver.calls());
                let outcome = match status {
                    200 if resolver.calls() == 1 => "resolved",
                    200 => "passed",
                    413 => "too-large",
                    _ => "refused",
                };
                *tally.lock().unwrap().entry((name, outcome)).or_default() += 1;
                if status == 200 {
                    prop_assert_eq!(h.handled(), 1, "{}", what);
                    let seen = h.requests();
                    prop_assert_eq!(&seen[0].body[..], &g.body[..], "{}: body altered", what);
                    prop_assert!(!required || seen[0].customer.is_some(), "{}: no customer", what);
                    prop_assert_eq!(seen[0].customer.is_some(), resolver.calls() == 1, "{}", what);
                } else {
                    prop_assert_eq!(h.handled(), 0, "{}: rejected yet handled", what);
                    prop_assert_eq!(resolver.calls(), 0, "{}: rejected after a resolve", what);
                }
            }
        }
    });
    let tally = tally.into_inner().unwrap();
    eprintln!("outcomes: {tally:?}");
    for (name, _) in sources() {
        for outcome in ["resolved", "passed", "refused"] {
            assert!(
                tally.contains_key(&(name, outcome)),
                "no {name} case was {outcome}: {tally:?}"
            );
        }
    }
}

/// What the layer must do with a form body, by the model of
/// `form_urlencoded::parse`.
#[derive(Debug, PartialEq)]
enum Model {
    Pass,
    Resolved(String),
    Rejected,
}

fn model(body: &[u8], is_form: bool) -> Model {
    if !is_form {
        return Model::Pass;
    }
    let values: Vec<String> = form_urlencoded::parse(body)
        .filter(|(k, _)| k == TOKEN_FIELD)
        .map(|(_, v)| v.into_owned())
        .collect();
    match values.first() {
        None => Model::Pass,
        Some(first)
            if values.iter().all(|v| v == first) && is_token68(first, DEFAULT_MAX_TOKEN_LEN) =>
        {
            Model::Resolved(first.clone())
        }
        Some(_) => Model::Rejected,
    }
}

/// A body, maybe with a valid token inserted, cut into frames, maybe with
/// trailers.
#[derive(Debug, Clone)]
struct Replay {
    prefix: Vec<u8>,
    token: Option<String>,
    suffix: Vec<u8>,
    sizes: Vec<usize>,
    trailers: bool,
    content_type: Option<&'static str>,
    http2: bool,
}

fn replay() -> impl Strategy<Value = Replay> {
    let bytes = prop_oneof![vec(any::<u8>(), 0..1024), junk(64)];
    (
        bytes.clone(),
        // Mostly valid tokens; any other string is a present but malformed one.
        proptest::option::of(prop_oneof![3 => token68(1..=200), 1 => any::<String>()]),
        bytes,
        vec(0usize..200, 0..12),
        any::<bool>(),
        prop::sample::select(vec![
            Some(FORM),
            Some(FORM),
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            Some("application/octet-stream"),
            None,
        ]),
        any::<bool>(),
    )
        .prop_map(
            |(prefix, token, suffix, sizes, trailers, content_type, http2)| Replay {
                prefix,
                token,
                suffix,
                sizes,
                trailers,
                content_type,
                http2,
            },
        )
}

impl Replay {
    fn body(&self) -> Vec<u8> {
        match &self.token {
            Some(token) => [
                self.prefix.as_slice(),
                b"&",
                form_with_token(token).as_bytes(),
                b"&",
                &self.suffix,
            ]
            .concat(),
            None => [self.prefix.as_slice(), &self.suffix].concat(),
        }
    }

    fn trailers(&self) -> Option<HeaderMap> {
        self.trailers.then(|| {
            let mut map = HeaderMap::new();
            map.insert("x-checksum", HeaderValue::from_static("abc"));
            map.append("x-checksum", HeaderValue::from_static("def"));
            map
        })
    }
}

/// (b) The optional layer hands any body on byte for byte, however it is
/// framed, and passes, resolves or refuses as the model says.
#[test]
fn optional_layer_replays_any_body_byte_for_byte() {
    let rt = runtime();
    let tally = Mutex::new(BTreeMap::<&str, usize>::new());
    proptest!(config(256), |(r in replay())| {
        let resolver = TestResolver::ok();
        let h = Harness::new(ResolveCustomerLayer::new(Arc::clone(&resolver)).optional());
        let body = r.body();
        let mut builder = Request::post("/register").version(if r.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        });
        if let Some(ct) = r.content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        let request = builder
            .body(frame_body(frames(&body, &r.sizes), r.trailers()))
            .unwrap();
        let response = rt.block_on(h.send(request));
        let status = response.status().as_u16();
        let expected = model(&body, r.content_type.is_some_and(|ct| ct.starts_with(FORM)));
        let outcome = match &expected {
            Model::Pass => "passed",
            Model::Resolved(_) => "resolved",
            Model::Rejected => "refused",
        };
        *tally.lock().unwrap().entry(outcome).or_default() += 1;
        if let (Some(token), Model::Resolved(found)) = (&r.token, &expected) {
            prop_assert_eq!(token, found, "the model finds the inserted token");
        }
        match &expected {
            Model::Rejected => {
                prop_assert_eq!(status, 400);
                prop_assert_eq!(h.handled(), 0);
                prop_assert_eq!(resolver.calls(), 0);
            }
            Model::Pass | Model::Resolved(_) => {
                prop_assert_eq!(status, 200);
                let echoed = rt.block_on(response.into_body().collect()).unwrap().to_bytes();
                prop_assert_eq!(&echoed[..], &body[..], "echoed body");
                let seen = h.requests();
                prop_assert_eq!(seen.len(), 1);
                prop_assert_eq!(&seen[0].body[..], &body[..], "handler body");
                prop_assert_eq!(&seen[0].trailers, &r.trailers(), "handler trailers");
                match &expected {
                    Model::Resolved(token) => {
                        prop_assert_eq!(seen[0].customer.as_ref(), Some(&customer_for(token)));
                        prop_assert_eq!(resolver.calls(), 1);
                        prop_assert_eq!(resolver.calls_for(token), 1);
                    }
                    _ => {
                        prop_assert!(seen[0].customer.is_none());
                        prop_assert_eq!(resolver.calls(), 0);
                    }
                }
            }
        }
    });
    let tally = tally.into_inner().unwrap();
    eprintln!("outcomes: {tally:?}");
    for outcome in ["passed", "resolved", "refused"] {
        assert!(
            tally.contains_key(outcome),
            "no case was {outcome}: {tally:?}"
        );
    }
}

/// (c) Any token68 token, form-encoded by `form_urlencoded::Serializer`
/// among other fields, reaches the resolver exactly; so does the same
/// encoding in a query string.
#[test]
fn any_valid_token_round_trips_through_form_encoding() {
    let rt = runtime();
    let other = prop_oneof![token68(0..=20), any::<String>()];
    proptest!(config(256), |(
        token in token68(1..=300),
        before in other.clone(),
        after in other,
        cut in any::<prop::sample::Index>(),
    )| {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .append_pair("plan", &before)
            .append_pair(TOKEN_FIELD, &token)
            .append_pair("note", &after)
            .finish();

        // As a form post, cut in two frames anywhere.
        let resolver = TestResolver::ok();
        let h = Harness::new(ResolveCustomerLayer::new(Arc::clone(&resolver)));
        let (a, b) = encoded.as_bytes().split_at(cut.index(encoded.len() + 1));
        let body = frame_body(vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)], None);
        let response = rt.block_on(h.send(form_post_body(body)));
        prop_assert_eq!(response.status(), 200);
        prop_assert_eq!(resolver.calls(), 1);
        prop_assert_eq!(resolver.calls_for(&token), 1, "the resolver got another token");
        let seen = h.requests();
        prop_assert_eq!(seen[0].customer.as_ref(), Some(&customer_for(&token)));
        prop_assert_eq!(&seen[0].body[..], encoded.as_bytes());
        drop(seen);

        // As a query string.
        let resolver = TestResolver::ok();
        let h = Harness::new(
            ResolveCustomerLayer::new(Arc::clone(&resolver))
                .token_source(TokenSource::query(TOKEN_FIELD)),
        );
        let request = Request::get(format!("/register?{encoded}"))
            .body(String::new())
            .unwrap();
        prop_assert_eq!(rt.block_on(h.send(request)).status(), 200);
        prop_assert_eq!(resolver.calls(), 1);
        prop_assert_eq!(resolver.calls_for(&token), 1, "the resolver got another token");
    });
}
