//! The registration token a buyer's browser carries from AWS Marketplace.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::store::TokenDigest;

/// The form field (and, by convention, header and metadata key) that carries the
/// registration token: `x-amzn-marketplace-token`.
pub const TOKEN_FIELD: &str = "x-amzn-marketplace-token";

/// [`TOKEN_FIELD`] as a header name, for [`TokenSource::header`](crate::TokenSource::header)
/// (gRPC metadata keys are header names).
pub const TOKEN_HEADER: http::HeaderName = http::HeaderName::from_static(TOKEN_FIELD);

/// The default upper bound on a token's length, in bytes (4 KiB).
///
/// Real tokens are about 184 characters of standard base64.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 4 * 1024;

/// A syntactically valid AWS Marketplace registration token.
///
/// The token is a bearer credential: whoever redeems it first learns who the buyer
/// is. Its [`Debug`] and [`Display`](fmt::Display) implementations therefore never
/// show it, and nothing in this crate logs it. Use [`expose`](Self::expose) where
/// the raw value is genuinely needed (to send it to `ResolveCustomer`).
///
/// # Syntax
///
/// A token is non-empty, at most a configurable number of bytes long
/// ([`DEFAULT_MAX_TOKEN_LEN`] by default), and follows the `token68` grammar of
/// RFC 9110 §11.2, the alphabet of standard and URL-safe base64: ASCII letters
/// and digits and `+ / - . _ ~`, then optional `=` padding at the end only.
/// Whitespace, control characters, `%` (a sign of a missing or doubled
/// percent-decoding), anything outside visible ASCII and a `=` before the end
/// are rejected before any upstream call is made.
///
/// ```
/// use tower_resolve_customer::RegistrationToken;
///
/// let token = RegistrationToken::new("+tFn41ej/k5vVEuX=").unwrap();
/// assert_eq!(token.expose(), "+tFn41ej/k5vVEuX=");
/// assert_eq!(format!("{token:?}"), "RegistrationToken(<redacted, 17 bytes>)");
///
/// assert!(RegistrationToken::new("").is_err());
/// assert!(RegistrationToken::new("has space").is_err());
/// assert!(RegistrationToken::new("a%2Bb").is_err());
/// assert!(RegistrationToken::new("a=b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrationToken(Box<str>);

impl RegistrationToken {
    /// Validates `token` with the default length limit.
    pub fn new(token: impl Into<String>) -> Result<Self, TokenError> {
        Self::with_max_len(token, DEFAULT_MAX_TOKEN_LEN)
    }

    /// Validates `token`, allowing at most `max_len` bytes.
    pub fn with_max_len(token: impl Into<String>, max_len: usize) -> Result<Self, TokenError> {
        let token = token.into();
        validate(token.as_bytes(), max_len)?;
        Ok(Self(token.into_boxed_str()))
    }

    /// A token [`validate`]d already.
    pub(crate) fn validated(token: String) -> Self {
        Self(token.into_boxed_str())
    }

    /// The raw token. Handle with care: it is a bearer credential.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 128 bits of the token's SHA-256: how caches and
    /// [stores](crate::ResolutionStore) name the token without holding it.
    pub fn digest(&self) -> TokenDigest {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        TokenDigest::new(u128::from_le_bytes(first))
    }

    /// The token's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: an empty token is rejected on construction.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Checks `token` against the syntax described on [`RegistrationToken`]
/// (so a valid token is ASCII).
pub(crate) fn validate(token: &[u8], max_len: usize) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.len() > max_len {
        return Err(TokenError::TooLong { max_len });
    }
    // token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=":
    // `=` is padding, only at the end and never the whole token.
    let unpadded = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    if unpadded == 0 || !all_token_bytes(&token[..unpadded]) {
        return Err(TokenError::InvalidCharacter);
    }
    Ok(())
}

/// Whether every byte is in the token68 alphabet, padding excluded.
/// Branch-free comparisons over the whole token, which the compiler turns
/// into vector instructions: a token is checked 16 or 32 bytes at a time.
fn all_token_bytes(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(32);
    let mut all = true;
    for block in blocks.by_ref() {
        let mut block_ok = true;
        for &b in block {
            block_ok &= is_token_byte(b);
        }
        all &= block_ok;
    }
    blocks
        .remainder()
        .iter()
        .fold(all, |all, &b| all & is_token_byte(b))
}

fn is_token_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (b == b'+')
        | (b == b'/')
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
}

impl fmt::Debug for RegistrationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistrationToken(<redacted, {} bytes>)", self.0.len())
    }
}

impl fmt::Display for RegistrationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted registration token>")
    }
}

/// Why a candidate token was refused before reaching the resolver.
///
/// None of the variants carries the offending value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is empty.
    Empty,
    /// The token is longer than the configured limit.
    TooLong {
        /// The limit in bytes.
        max_len: usize,
    },
    /// The token holds a character outside the `token68` alphabet (whitespace,
    /// control characters, `%`, non-ASCII, ...), or `=` anywhere but in the
    /// padding at its end.
    InvalidCharacter,
    /// The carrier could not be decoded: a header value with obs-text, a body that
    /// is not valid UTF-8 where the token sits, and the like.
    Undecodable,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the registration token is empty"),
            Self::TooLong { max_len } => {
                write!(f, "the registration token is longer than {max_len} bytes")
            }
            Self::InvalidCharacter => {
                f.write_str("the registration token contains a character that is not allowed")
            }
            Self::Undecodable => f.write_str("the registration token could not be decoded"),
        }
    }
}

impl std::error::Error for TokenError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_is_token68() {
        for b in 0..=255u8 {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'.' | b'_' | b'~');
            assert_eq!(is_token_byte(b), expected, "{b:#04x}");
            assert_eq!(
                all_token_bytes(&[b'a'; 40].map(|_| b)),
                expected,
                "{b:#04x}"
            );
        }
    }

    #[test]
    fn accepts_base64_alphabets() {
        let std_b64 = "+tFn41ejk5vVEuXXa2T2mLcwLL5tFz5iUaR4fHV0oR8y6t2UhvTBYZlBKw8hz2LO4b/ab==";
        assert!(RegistrationToken::new(std_b64).is_ok());
        assert!(RegistrationToken::new("abc-_DEF.~09").is_ok());
        assert!(RegistrationToken::new("a=").is_ok());
        assert!(RegistrationToken::new("a==").is_ok());
    }

    #[test]
    fn rejects_bad_syntax() {
        assert_eq!(RegistrationToken::new(""), Err(TokenError::Empty));
        for bad in [
            "a b",
            "a\tb",
            "a\nb",
            "a\u{7f}b",
            "a\u{0}b",
            "é",
            "a%2B",
            "a\u{200b}b",
            "a\"b",
            "a;b",
            "=",
            "==",
            "=abc",
            "a=b",
            "ab=c=",
        ] {
            assert_eq!(
                RegistrationToken::new(bad),
                Err(TokenError::InvalidCharacter),
                "{bad:?}"
            );
        }
        assert_eq!(
            RegistrationToken::with_max_len("abcd", 3),
            Err(TokenError::TooLong { max_len: 3 })
        );
        assert!(RegistrationToken::with_max_len("abc", 3).is_ok());
    }

    #[test]
    fn never_shows_the_token() {
        let t = RegistrationToken::new("secretTOKEN").unwrap();
        assert_eq!(format!("{t:?}"), "RegistrationToken(<redacted, 11 bytes>)");
        assert_eq!(format!("{t}"), "<redacted registration token>");
        assert!(!format!("{t:#?}").contains("secret"));
        assert_eq!((t.len(), t.is_empty()), (11, false));
    }

    #[test]
    fn the_default_length_limit_is_4_kib() {
        assert!(RegistrationToken::new("A".repeat(4096)).is_ok());
        assert_eq!(
            RegistrationToken::new("A".repeat(4097)),
            Err(TokenError::TooLong { max_len: 4096 })
        );
    }

    #[test]
    fn errors_say_what_is_wrong_without_the_value() {
        for (error, message) in [
            (TokenError::Empty, "the registration token is empty"),
            (
                TokenError::TooLong { max_len: 8 },
                "the registration token is longer than 8 bytes",
            ),
            (
                TokenError::InvalidCharacter,
                "the registration token contains a character that is not allowed",
            ),
            (
                TokenError::Undecodable,
                "the registration token could not be decoded",
            ),
        ] {
            assert_eq!(error.to_string(), message);
        }
    }
}
