//! Where in a request the registration token is looked for.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderName, Method, Request};

use crate::cache::{TokenKey, key_of};
use crate::offer_type::{OFFER_TYPE_FIELD, OfferType};
use crate::rejection::Rejection;
use crate::token::{RegistrationToken, TOKEN_FIELD, TokenError, validate};
use crate::urlencoded;

/// Where the layer looks for the registration token.
///
/// The default is [`TokenSource::form`]: the `x-amzn-marketplace-token` field of a
/// `POST` with `Content-Type: application/x-www-form-urlencoded`, exactly as AWS
/// Marketplace sends the buyer's browser. Sources combine with
/// [`or`](Self::or) / [`first_of`](Self::first_of): they are tried in order and the
/// first that carries a token supplies it, but every source is still checked and a
/// request carrying two *different* tokens (in one source or across sources) is
/// rejected as [ambiguous](crate::Rejection::AmbiguousToken).
///
/// Values are decoded once, as their carrier prescribes: form fields and query
/// parameters with `application/x-www-form-urlencoded` rules (so `%2B` becomes `+`
/// and a raw `+` becomes a space, which is then refused), headers and cookies
/// verbatim (a cookie value may be wrapped in double quotes).
///
/// ```
/// use http::HeaderName;
/// use tower_resolve_customer::TokenSource;
///
/// // The Marketplace form post, or a header set by a gRPC client or an SPA.
/// let source = TokenSource::form()
///     .or(TokenSource::header(HeaderName::from_static("x-amzn-marketplace-token")));
/// # let _ = source;
/// ```
#[derive(Clone, Debug)]
pub struct TokenSource {
    sources: Arc<[Source]>,
    /// The form fields to read in a body: the token's, then
    /// [`OFFER_TYPE_FIELD`].
    form_fields: Arc<[Cow<'static, str>]>,
}

#[derive(Clone, Debug)]
enum Source {
    Form(Cow<'static, str>),
    Header(HeaderName),
    Query(Cow<'static, str>),
    Cookie(Cow<'static, str>),
}

impl Default for TokenSource {
    fn default() -> Self {
        Self::form()
    }
}

impl TokenSource {
    fn one(source: Source) -> Self {
        Self::of(vec![source])
    }

    fn of(sources: Vec<Source>) -> Self {
        let form_fields: Vec<Cow<'static, str>> = sources
            .iter()
            .filter_map(|source| match source {
                Source::Form(name) => Some(name.clone()),
                _ => None,
            })
            .chain(std::iter::once(Cow::Borrowed(OFFER_TYPE_FIELD)))
            .collect();
        Self {
            sources: sources.into(),
            form_fields: form_fields.into(),
        }
    }

    /// The `x-amzn-marketplace-token` field of an urlencoded `POST` form.
    pub fn form() -> Self {
        Self::form_field(TOKEN_FIELD)
    }

    /// A named field of an urlencoded `POST` form.
    ///
    /// The body is buffered up to the layer's
    /// [`max_body_bytes`](crate::ResolveCustomerLayer::max_body_bytes) and handed
    /// on to the inner service unchanged, trailers included.
    pub fn form_field(name: impl Into<Cow<'static, str>>) -> Self {
        Self::one(Source::Form(name.into()))
    }

    /// A request header; a header present twice with different values is
    /// ambiguous. Header values with bytes outside visible ASCII are refused.
    pub fn header(name: HeaderName) -> Self {
        Self::one(Source::Header(name))
    }

    /// A query-string parameter.
    ///
    /// A token in a URL can end up in access logs, browser history and `Referer`
    /// headers: prefer the form or a header where the client allows it.
    pub fn query(name: impl Into<Cow<'static, str>>) -> Self {
        Self::one(Source::Query(name.into()))
    }

    /// A cookie. The value is taken verbatim (base64 is valid cookie content).
    pub fn cookie(name: impl Into<Cow<'static, str>>) -> Self {
        Self::one(Source::Cookie(name.into()))
    }

    /// Tries `self`, then `other`.
    pub fn or(self, other: TokenSource) -> Self {
        Self::first_of([self, other])
    }

    /// Tries each source in order.
    pub fn first_of(sources: impl IntoIterator<Item = TokenSource>) -> Self {
        let sources: Vec<Source> = sources
            .into_iter()
            .flat_map(|s| s.sources.iter().cloned().collect::<Vec<_>>())
            .collect();
        Self::of(sources)
    }

    /// Whether the body must be read: a form source is configured and the request
    /// is an urlencoded `POST`.
    ///
    /// The sources are asked first: a route that reads no form never looks
    /// up the request's `Content-Type`.
    pub(crate) fn wants_body<B>(&self, request: &Request<B>) -> bool {
        self.reads_form()
            && request.method() == Method::POST
            && is_urlencoded_form(request.headers())
    }

    /// Whether a form field is among the sources: the form fields to read
    /// hold more than [`OFFER_TYPE_FIELD`].
    fn reads_form(&self) -> bool {
        self.form_fields.len() > 1
    }

    /// Looks in every source that needs no body. The token found is not
    /// checked yet: see [`Candidate::validate`].
    pub(crate) fn find_in_head<'p, B>(
        &self,
        request: &'p Request<B>,
        max_len: usize,
    ) -> Result<Option<Candidate<'p>>, Rejection> {
        let mut found = Found::new(max_len);
        for source in self.sources.iter() {
            match source {
                Source::Form(_) => {}
                Source::Header(name) => {
                    for value in request.headers().get_all(name) {
                        found.offer(Repr::Header(value.as_bytes()))?;
                    }
                }
                Source::Query(name) => {
                    if let Some(query) = request.uri().query() {
                        let names = std::slice::from_ref(name);
                        for (_, value) in urlencoded::fields(query.as_bytes(), names) {
                            found.offer(Repr::Encoded(value))?;
                        }
                    }
                }
                Source::Cookie(name) => {
                    for header in request.headers().get_all(COOKIE) {
                        for value in cookie_values(header.as_bytes(), name.as_bytes()) {
                            found.offer(Repr::Cookie(value))?;
                        }
                    }
                }
            }
        }
        Ok(found.token)
    }

    /// Looks in the form fields of a buffered body, given what the other sources
    /// already found, and reads the offer type in the same pass. The token
    /// found is not checked yet: see [`Candidate::validate`].
    pub(crate) fn find_in_form<'b>(
        &self,
        body: &'b [u8],
        already: Option<Candidate<'b>>,
        max_len: usize,
    ) -> Result<(Option<Candidate<'b>>, Option<OfferType>), Rejection> {
        let mut found = Found {
            token: already,
            max_len,
        };
        let mut offer = None;
        let (token_fields, _) = self.form_fields.split_at(self.form_fields.len() - 1);
        for (name, value) in urlencoded::fields(body, &self.form_fields) {
            if name == OFFER_TYPE_FIELD {
                // The first one counts; the field is informational.
                offer.get_or_insert_with(|| OfferType::from_field(&urlencoded::decode_text(value)));
            }
            if token_fields.iter().any(|field| field == name) {
                found.offer(Repr::Encoded(value))?;
            }
        }
        Ok((found.token, offer))
    }
}

/// A token found in a request, with its cache key; still borrowed from the
/// request, and still encoded for a form or query value, where it could be:
/// a cache hit needs only the key, and never copies the token.
///
/// Its syntax is checked by [`validate`](Self::validate) once the cache has
/// been asked: a token the cache holds was checked when it was first
/// resolved (the key is a keyed 128-bit hash of exactly these bytes), so a
/// hit costs only a length check. A token found outside a form body that is
/// still to be read is checked in full as it is copied
/// ([`into_checked`](Self::into_checked)).
pub(crate) struct Candidate<'a> {
    repr: Repr<'a>,
    key: TokenKey,
    /// The token's length, decoded.
    len: usize,
}

/// Where a candidate's bytes are, and how they were carried.
enum Repr<'a> {
    /// A header value, as it is.
    Header(&'a [u8]),
    /// A cookie value, as it is.
    Cookie(&'a [u8]),
    /// A urlencoded value that decodes to the token.
    Encoded(&'a [u8]),
    /// The token, copied once it was found valid.
    Checked(Vec<u8>),
}

impl Repr<'_> {
    /// Runs `f` on the token's bytes, decoded on the stack if need be.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Repr::Header(bytes) | Repr::Cookie(bytes) => f(bytes),
            Repr::Encoded(raw) => urlencoded::with_decoded(raw, f),
            Repr::Checked(bytes) => f(bytes),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        match self {
            Repr::Header(bytes) | Repr::Cookie(bytes) => bytes.to_vec(),
            Repr::Encoded(raw) => urlencoded::decode(raw).into_owned(),
            Repr::Checked(bytes) => bytes,
        }
    }

    /// The token's syntax, checked. Bytes a header or cookie cannot carry as
    /// text are refused as undecodable whatever else is wrong.
    fn validate(&self, max_len: usize) -> Result<(), TokenError> {
        let undecodable = match self {
            Repr::Header(bytes) => !bytes.iter().all(|&b| b == b'\t' || (32..127).contains(&b)),
            Repr::Cookie(bytes) => std::str::from_utf8(bytes).is_err(),
            Repr::Encoded(_) | Repr::Checked(_) => false,
        };
        self.with_bytes(|bytes| validate(bytes, max_len))
            .map_err(|error| {
                if undecodable {
                    TokenError::Undecodable
                } else {
                    error
                }
            })
    }
}

impl Candidate<'_> {
    /// The token's key in this process's caches.
    pub(crate) fn key(&self) -> TokenKey {
        self.key
    }

    /// Checks the token's syntax against this route's length limit. A token
    /// `cached` (its key found in the cache) passed the same check when it
    /// was resolved: only its length is checked again.
    pub(crate) fn validate(&self, max_len: usize, cached: bool) -> Result<(), Rejection> {
        if (cached && self.len <= max_len) || matches!(self.repr, Repr::Checked(_)) {
            return Ok(());
        }
        Ok(self.repr.validate(max_len)?)
    }

    /// The token, owned. Call [`validate`](Self::validate) first.
    pub(crate) fn into_token(self) -> RegistrationToken {
        let bytes = self.repr.into_bytes();
        debug_assert!(
            validate(&bytes, usize::MAX).is_ok(),
            "a token not validated"
        );
        // Validated, so ASCII: the text is the bytes, taken as they are.
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
        RegistrationToken::validated(text)
    }

    /// The same candidate, validated against `max_len` and no longer
    /// borrowing the request.
    pub(crate) fn into_checked(self, max_len: usize) -> Result<Candidate<'static>, Rejection> {
        self.validate(max_len, false)?;
        Ok(Candidate {
            repr: Repr::Checked(self.repr.into_bytes()),
            key: self.key,
            len: self.len,
        })
    }
}

/// The token found so far; refuses disagreeing candidates.
struct Found<'a> {
    token: Option<Candidate<'a>>,
    max_len: usize,
}

impl<'a> Found<'a> {
    fn new(max_len: usize) -> Self {
        Self {
            token: None,
            max_len,
        }
    }

    /// Another place's token: the same as the one found (same key), a first
    /// one, or a different one (ambiguous, unless either is malformed).
    fn offer(&mut self, repr: Repr<'a>) -> Result<(), Rejection> {
        let (key, len) = repr.with_bytes(|bytes| (key_of(bytes), bytes.len()));
        match &self.token {
            Some(found) if found.key == key => Ok(()),
            Some(found) => {
                found.validate(self.max_len, false)?;
                repr.validate(self.max_len)?;
                Err(Rejection::AmbiguousToken)
            }
            None => {
                self.token = Some(Candidate { repr, key, len });
                Ok(())
            }
        }
    }
}

/// `application/x-www-form-urlencoded`, case-insensitively, with any parameters.
fn is_urlencoded_form(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let essence = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// The values of every `name=value` pair called `name` in one `Cookie` header
/// (RFC 6265 §4.2.1), with surrounding double quotes removed.
///
/// A scanner of its own rather than the `cookie` crate's parser, which builds
/// and validates every cookie of the header: on a cache hit with the token in
/// the sixth cookie of a browser's header, the crate made the layer add
/// 915 ns to the bare service instead of 569 ns (`cargo bench --bench layer --
/// '^2b'`, 2-vCPU machine).
fn cookie_values<'h>(header: &'h [u8], name: &[u8]) -> impl Iterator<Item = &'h [u8]> {
    header.split(|&b| b == b';').filter_map(move |pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        if key != name {
            return None;
        }
        Some(match value {
            [b'"', inner @ .., b'"'] => inner,
            other => other,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_pairs() {
        let h = b"a=1; tok=\"abc=\"; b=2;tok=abc=";
        let v: Vec<_> = cookie_values(h, b"tok").collect();
        assert_eq!(v, vec![&b"abc="[..], &b"abc="[..]]);
        assert_eq!(cookie_values(b"junk;;=;tok", b"tok").count(), 0);
    }

    #[test]
    fn content_type_essence() {
        let parts = |ct: &str| {
            http::Request::post("/")
                .header(CONTENT_TYPE, ct)
                .body(())
                .unwrap()
                .headers()
                .clone()
        };
        assert!(is_urlencoded_form(&parts(
            "application/x-www-form-urlencoded"
        )));
        assert!(is_urlencoded_form(&parts(
            "Application/X-WWW-Form-Urlencoded ; charset=UTF-8"
        )));
        assert!(!is_urlencoded_form(&parts(
            "multipart/form-data; boundary=x"
        )));
        assert!(!is_urlencoded_form(&parts("application/json")));
    }
}
