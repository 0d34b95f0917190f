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
/// One vector scan finds every `&` and `=`; a name is compared only when it
/// could decode to one of `names` (it is at least as long as the shortest),
/// and decoded only when it contains `%` or `+`. So the other fields of a
/// registration form (often dozens) cost a few comparisons each, never a
/// decoding or an allocation.
pub(crate) fn fields<'a, 'n, N: AsRef<str>>(
    input: &'a [u8],
    names: &'n [N],
) -> impl Iterator<Item = (&'n str, &'a [u8])> {
    let shortest = names
        .iter()
        .map(|name| name.as_ref().len())
        .min()
        .unwrap_or(0);
    let mut separators = memchr::memchr2_iter(b'&', b'=', input);
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            // The end of this pair, and its first `=`.
            let mut equals = None;
            let end = loop {
                match separators.next() {
                    Some(at) if input[at] == b'=' => {
                        equals.get_or_insert(at);
                    }
                    Some(at) => break at,
                    None => {
                        done = true;
                        break input.len();
                    }
                }
            };
            let pair = start..end;
            start = end + 1;
            let name_end = equals.unwrap_or(end);
            let raw_name = &input[pair.start..name_end];
            let value = &input[(name_end + 1).min(end)..end];
            // An empty pair (`&&`) is no field, as for `form_urlencoded`.
            if pair.is_empty() || raw_name.len() < shortest {
                continue;
            }
            let found = if memchr::memchr2(b'%', b'+', raw_name).is_none() {
                names
                    .iter()
                    .find(|name| raw_name == name.as_ref().as_bytes())
            } else {
                let decoded = decode(raw_name);
                names
                    .iter()
                    .find(|name| *String::from_utf8_lossy(&decoded) == *name.as_ref())
            };
            if let Some(name) = found {
                return Some((name.as_ref(), value));
            }
        }
        None
    })
}

/// Decodes one urlencoded name or value; borrowed when it holds no `%` or
/// `+`.
pub(crate) fn decode(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr2(b'%', b'+', raw) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut rest = &raw[first..];
    loop {
        match rest {
            [b'+', tail @ ..] => {
                out.push(b' ');
                rest = tail;
            }
            [b'%', high, low, tail @ ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                out.push(hex(*high) << 4 | hex(*low));
                rest = tail;
            }
            [b'%', tail @ ..] => {
                out.push(b'%');
                rest = tail;
            }
            _ => {}
        }
        match memchr::memchr2(b'%', b'+', rest) {
            Some(next) => {
                out.extend_from_slice(&rest[..next]);
                rest = &rest[next..];
            }
            None => {
                out.extend_from_slice(rest);
                return Cow::Owned(out);
            }
        }
    }
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
}
