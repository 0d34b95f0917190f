//! Reading a few named fields out of an `application/x-www-form-urlencoded`
//! string (a form body, a query) in one scan, decoding only those fields.
//!
//! Decoding follows [`form_urlencoded::parse`] exactly (`+` is a space,
//! `%` and two hex digits a byte, any other `%` itself), except that values
//! are returned as bytes: a registration token is ASCII, so bytes that are
//! not valid UTF-8 are refused by its validation as they are, instead of
//! being replaced first.

use std::borrow::Cow;

/// The pairs of `input` whose decoded name is one of `names`, as that name
/// and the raw (still encoded) value, in order.
///
/// Pairs are found with a vector search for each `&`. A pair's name is read
/// only when it could decode to one of `names`: it is at least as long as
/// the shortest, and it starts with the same byte as one of them or with an
/// escape (`%`, or `+` for a name that starts with a space). It is then read
/// eight bytes at a time, compared, and decoded only when it contains `%` or
/// `+` or is not ASCII. So each of the other fields of a registration form
/// (often dozens) costs a length check and a comparison of its first byte
/// with each wanted name's, never a decoding or an allocation.
pub(crate) fn fields<'a, 'n, N: AsRef<str>>(
    input: &'a [u8],
    names: &'n [N],
) -> impl Iterator<Item = (&'n str, &'a [u8])> {
    // No name can come from a shorter raw name, unless bytes that are not
    // UTF-8 grow into U+FFFD: then no length is ruled out.
    let shortest = match names.iter().all(|name| name.as_ref().is_ascii()) {
        true => names
            .iter()
            .map(|name| name.as_ref().len())
            .min()
            .unwrap_or(0),
        false => 0,
    };
    let could_start = move |first: u8| {
        first == b'%'
            || names
                .iter()
                .any(|name| match name.as_ref().as_bytes().first() {
                    None => true,
                    Some(&b' ') => first == b'+' || first == b' ',
                    // Bytes that are not UTF-8 may be read as U+FFFD, as
                    // `form_urlencoded` reads them.
                    Some(&byte) if !byte.is_ascii() => !first.is_ascii(),
                    Some(&byte) => first == byte,
                })
    };
    let mut ends = memchr::memchr_iter(b'&', input).chain(std::iter::once(input.len()));
    let mut start = 0;
    std::iter::from_fn(move || {
        for end in ends.by_ref() {
            let pair = &input[start..end];
            start = end + 1;
            // An empty pair (`&&`) is no field, as for `form_urlencoded`.
            let Some(&first) = pair.first() else {
                continue;
            };
            if pair.len() < shortest || !could_start(first) {
                continue;
            }
            // The name: up to the first `=`; the value: after it.
            let (name_end, escaped) = name_end(pair);
            let raw_name = &pair[..name_end];
            if raw_name.len() < shortest {
                continue;
            }
            let value = pair.get(name_end + 1..).unwrap_or_default();
            let found = if escaped || !raw_name.is_ascii() {
                let decoded = decode(raw_name);
                names
                    .iter()
                    .find(|name| *String::from_utf8_lossy(&decoded) == *name.as_ref())
            } else {
                names
                    .iter()
                    .find(|name| raw_name == name.as_ref().as_bytes())
            };
            if let Some(name) = found {
                return Some((name.as_ref(), value));
            }
        }
        None
    })
}

/// Eight bytes at once: `0x01` in every byte.
const ONES: u64 = 0x0101_0101_0101_0101;
/// Eight bytes at once: the high bit of every byte.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` equal to `byte`. Exact for the
/// lowest such byte; a byte just above it may be flagged falsely, which no
/// caller looks at.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Where a name ends in `pair` (its first `=`, or the end: a pair holds no
/// `&`), and whether a `%` or `+` comes before: names are scanned eight
/// bytes at a time.
fn name_end(pair: &[u8]) -> (usize, bool) {
    let mut escaped = false;
    let mut words = pair.chunks_exact(8);
    let mut offset = 0;
    for word in words.by_ref() {
        let word = u64::from_le_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        let ends = bytes_equal(word, b'=');
        let escapes = bytes_equal(word, b'%') | bytes_equal(word, b'+');
        if ends != 0 {
            let bit = ends.trailing_zeros();
            // Flags are high bits: those below the end's are earlier bytes'.
            escaped |= escapes & ((1u64 << bit) - 1) != 0;
            return (offset + bit as usize / 8, escaped);
        }
        escaped |= escapes != 0;
        offset += 8;
    }
    for (i, &b) in words.remainder().iter().enumerate() {
        match b {
            b'=' => return (offset + i, escaped),
            b'%' | b'+' => escaped = true,
            _ => {}
        }
    }
    (pair.len(), escaped)
}

/// Decodes one urlencoded name or value; borrowed when it holds no `%` or
/// `+`.
pub(crate) fn decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr2(b'%', b'+', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    decode_with(raw, |piece| out.extend_from_slice(piece));
    Cow::Owned(out)
}

/// Runs `f` on the decoding of `raw`, made on the stack when it is short (a
/// registration token always is): no allocation.
pub(crate) fn with_decoded<R>(raw: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const INLINE: usize = 256;
    if raw.len() > INLINE {
        return f(&decode(raw));
    }
    let mut buffer = [0u8; INLINE];
    let mut len = 0;
    // A decoding is never longer than what it decodes.
    decode_with(raw, |piece| {
        buffer[len..len + piece.len()].copy_from_slice(piece);
        len += piece.len();
    });
    f(&buffer[..len])
}

/// Decodes `raw`, handing `emit` its pieces in order: runs copied as they
/// are, and decoded bytes.
fn decode_with(raw: &[u8], mut emit: impl FnMut(&[u8])) {
    let mut rest = raw;
    while let Some(next) = memchr::memchr2(b'%', b'+', rest) {
        emit(&rest[..next]);
        rest = &rest[next..];
        match rest {
            [b'+', tail @ ..] => {
                emit(b" ");
                rest = tail;
            }
            [b'%', high, low, tail @ ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                emit(&[hex(*high) << 4 | hex(*low)]);
                rest = tail;
            }
            [_, tail @ ..] => {
                emit(b"%");
                rest = tail;
            }
            [] => {}
        }
    }
    emit(rest);
}

/// The value of an ASCII hex digit.
fn hex(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => (digit | 0x20) - b'a' + 10,
    }
}

/// A decoded value as text, as [`form_urlencoded::parse`] gives it.
pub(crate) fn decode_text(raw: &[u8]) -> Cow<'_, str> {
    match decode(raw) {
        Cow::Borrowed(bytes) => String::from_utf8_lossy(bytes),
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_like_form_urlencoded() {
        let inputs: [&[u8]; 12] = [
            b"a=1&tok=x%2By&b=2&tok=z",
            b"&&tok&tok=&=tok&tok==x",
            b"t%6Fk=encoded-name&to%6b=second",
            b"tok+=trailing-plus&tok=a+b&tok=%zz%2",
            b"tok=\xff\xfe&%74%6f%6b=%ff",
            b"x=1;tok=semicolon-is-not-a-separator",
            b"tok=%E2%82%AC&tok=%",
            b"to=short&tokk=long&tok",
            b"tok=%4&tok=%%41&tok=%4g1&tok=100%25",
            b"=&=&tok=a=b=c&",
            b"tok=+%2B+",
            b"",
        ];
        for input in inputs {
            let expected: Vec<_> = form_urlencoded::parse(input)
                .filter(|(k, _)| k == "tok")
                .map(|(_, v)| v.into_owned())
                .collect();
            let got: Vec<_> = fields(input, &["tok"])
                .map(|(_, value)| decode_text(value).into_owned())
                .collect();
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    /// Every short string over an alphabet of separators, escapes and the
    /// name's letters (a seeded sample), read as `form_urlencoded` reads it.
    #[test]
    fn fields_agree_with_form_urlencoded_on_generated_input() {
        const PIECES: &[&[u8]] = &[
            b"=",
            b"&",
            b"%",
            b"+",
            b"tok",
            b"t%6Fk",
            b"to+",
            b"2F",
            b"%2",
            b"a",
            b"\xff",
            b" ",
            b"%20",
            b"ok",
            b"%2Bok",
            b"t",
            b"\xc3\xa9",
            b"%C3%A9",
        ];
        // Names that start alike, with a space (written `+` or `%20`), with
        // a `+` (written `%2B`), the empty name, and names that are not
        // ASCII (one that bytes not UTF-8 decode to).
        const NAME_SETS: &[&[&str]] = &[
            &["tok"],
            &["t", "tok"],
            &[" ok", "tok"],
            &["+ok"],
            &[""],
            &["\u{FFFD}ok", "\u{e9}t"],
            &["\u{FFFD}ok"],
            &["t\u{FFFD}"],
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.extend_from_slice(PIECES[(state % PIECES.len() as u64) as usize]);
            }
            state = state.wrapping_add(0x9E37_79B9);
            for names in NAME_SETS {
                let expected: Vec<_> = form_urlencoded::parse(&input)
                    .filter(|(k, _)| names.contains(&k.as_ref()))
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let got: Vec<_> = fields(&input, names)
                    .map(|(name, value)| (name.to_owned(), decode_text(value).into_owned()))
                    .collect();
                assert_eq!(
                    got,
                    expected,
                    "{:?} for {names:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }

    #[test]
    fn several_names_in_one_scan() {
        let input = b"offer=free-trial&tok=abc&x=1&tok=abc&offer=other";
        let got: Vec<_> = fields(input, &["tok", "offer"])
            .map(|(name, value)| (name, decode_text(value).into_owned()))
            .collect();
        assert_eq!(
            got,
            [
                ("offer", "free-trial".to_owned()),
                ("tok", "abc".to_owned()),
                ("tok", "abc".to_owned()),
                ("offer", "other".to_owned()),
            ]
        );
    }

    #[test]
    fn values_without_escapes_are_borrowed() {
        assert!(matches!(decode(b"plain-token"), Cow::Borrowed(_)));
        assert_eq!(&*decode(b"a%2Bb%2f%3D"), b"a+b/=");
    }

    #[test]
    fn decoding_on_the_stack_is_the_same() {
        let long = [b"%2B".as_slice(); 100].concat();
        for raw in [b"".as_slice(), b"plain", b"a%2Bb%2f%3D+%zz%4%", &long] {
            assert_eq!(with_decoded(raw, <[u8]>::to_vec), decode(raw).into_owned());
        }
    }
}
