//! Signature Version 4, checked as AWS checks it before any operation runs.
//!
//! By default any well-formed signature is accepted (any access key, any
//! secret), so that a client configured with made-up credentials works; with
//! [`MeteringEmulator::accept_credentials`](super::MeteringEmulator::accept_credentials)
//! only the given access keys are known, and their signatures are verified.
//!
//! The errors, and where each comes from:
//! - no `Authorization` header: `MissingAuthenticationToken`, 403 (the
//!   API reference's Common Errors; the IAM guide's "Troubleshoot Signature
//!   Version 4 signing" names its message, "Missing Authentication Token");
//! - a malformed `Authorization` header or `X-Amz-Date`, or a credential
//!   scoped to another service than `aws-marketplace`: `IncompleteSignature`,
//!   400 (Common Errors: "The request signature does not conform to AWS
//!   standards");
//! - an `X-Amz-Date` more than 15 minutes from the emulator's clock:
//!   `RequestExpired`, 400 (Common Errors);
//! - an access key the emulator does not know: `InvalidClientTokenId`, 403
//!   (Common Errors: "The X.509 certificate or AWS access key ID provided
//!   does not exist in our records");
//! - a signature that does not match: `SignatureDoesNotMatch`, 403 (the IAM
//!   guide's "Troubleshoot Signature Version 4 signing": "HTTP 403
//!   SignatureDoesNotMatch", "The request signature we calculated does not
//!   match the signature you provided").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::StatusCode;
use http::request::Parts;
use sha2::{Digest, Sha256};

use super::hex;

/// The signing name of the Marketplace Metering and Entitlement services.
pub(crate) const SIGNING_NAME: &str = "aws-marketplace";
/// How far a request's date may be from the emulator's clock.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// A request the signature check refuses: status, `__type` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

fn refused(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        status,
        kind,
        message: message.into(),
    }
}

fn incomplete(message: impl Into<String>) -> Refused {
    refused(StatusCode::BAD_REQUEST, "IncompleteSignature", message)
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Refused> {
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        return Err(incomplete(format!(
            "Authorization header requires the {ALGORITHM} algorithm."
        )));
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| incomplete(format!("Authorization header is malformed at {part:?}.")))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => continue,
        };
        *slot = Some(value);
    }
    let credential = require(credential, "Credential")?;
    let signed = require(signed, "SignedHeaders")?;
    let signature = require(signature, "Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!(
            "Credential should be of the form <key>/<date>/<region>/<service>/aws4_request, not {credential:?}."
        )));
    };
    if terminator != "aws4_request" || access_key.is_empty() || region.is_empty() {
        return Err(incomplete(format!(
            "Credential should be of the form <key>/<date>/<region>/<service>/aws4_request, not {credential:?}."
        )));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal digits."));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || *h != h.to_ascii_lowercase())
    {
        return Err(incomplete(
            "SignedHeaders must be lowercase names separated by ';'.",
        ));
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// A parameter the `Authorization` header must have.
fn require<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, Refused> {
    value.ok_or_else(|| incomplete(format!("Authorization header requires '{name}' parameter.")))
}

/// `20261126T083000Z` as seconds since the epoch.
fn parse_amz_date(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm); `None` before the epoch.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let year = i64::try_from(year).ok()? - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::try_from(month).ok()?;
    let day_of_year =
        (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::try_from(day).ok()? - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    u64::try_from(era * 146_097 + day_of_era - 719_468).ok()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The canonical query string: parameters sorted, each name and value
/// URI-encoded as SigV4 requires.
fn canonical_query(query: Option<&str>) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let encode = |text: &str| -> String {
        percent_decode(text)
            .iter()
            .map(|&b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(name), encode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(&[high, low]) = bytes.get(i + 1..i + 3)
            && let (Some(high), Some(low)) = (hex_value(high), hex_value(low))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// What the emulator knows of an access key's secret.
pub(crate) enum Secret {
    /// The secret to verify the signature with.
    Known(String),
    /// Not a key the emulator accepts.
    Unknown,
    /// Any well-formed signature will do (no credentials were given).
    Unchecked,
}

/// Checks the signature of a request (its head and body) for `service`,
/// with the secrets `secret_for` knows, at `now`; gives the access key that
/// signed it.
pub(crate) fn check(
    parts: &Parts,
    body: &[u8],
    service: &str,
    secret_for: impl Fn(&str) -> Secret,
    now: SystemTime,
) -> Result<String, Refused> {
    let Some(authorization) = parts.headers.get(http::header::AUTHORIZATION) else {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Missing Authentication Token",
        ));
    };
    let authorization = authorization
        .to_str()
        .map_err(|_| incomplete("Authorization header is not text."))?;
    let auth = parse_authorization(authorization)?;
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        })?;
    let Some(signed_at) = parse_amz_date(amz_date) else {
        return Err(incomplete(format!(
            "X-Amz-Date {amz_date:?} is not of the form YYYYMMDD'T'HHMMSS'Z'."
        )));
    };
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'.",
            auth.date,
            &amz_date[..8]
        )));
    }
    if auth.service != service {
        return Err(incomplete(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(incomplete(format!("'{required}' must be a signed header.")));
        }
    }
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if now_secs.abs_diff(signed_at) > MAX_SKEW.as_secs() {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "RequestExpired",
            format!(
                "Signature expired: {amz_date} is more than 15 minutes from the server's time."
            ),
        ));
    }
    let secret = match secret_for(auth.access_key) {
        Secret::Unchecked => return Ok(auth.access_key.to_owned()),
        Secret::Unknown => {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ));
        }
        Secret::Known(secret) => secret,
    };

    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> = parts
            .headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // The body as received, whatever `x-amz-content-sha256` claims: a
    // signature covers the body it was made for.
    let payload_hash = hex(&Sha256::digest(body));
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        parts.uri.path(),
        canonical_query(parts.uri.query()),
        canonical_headers,
        auth.signed_headers.join(";"),
        payload_hash
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = [auth.date, auth.region, auth.service, "aws4_request"]
        .iter()
        .fold(format!("AWS4{secret}").into_bytes(), |key, part| {
            hmac(&key, part.as_bytes())
        });
    let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
    let matches = expected
        .bytes()
        .zip(auth.signature.to_ascii_lowercase().bytes())
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0;
    if matches {
        Ok(auth.access_key.to_owned())
    } else {
        Err(refused(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_are_read_exactly() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20000301T000000Z"), Some(951_868_800));
        assert_eq!(parse_amz_date("20261126T083000Z"), Some(1_795_681_800));
        for bad in [
            "",
            "2026-11-26T08:30:00Z",
            "20261326T083000Z",
            "20261126T083000",
            "2026112xT083000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    /// The example of the SigV4 documentation's "Examples of how to derive a
    /// signing key".
    #[test]
    fn the_signing_key_matches_the_documented_example() {
        let key = ["20120215", "us-east-1", "iam", "aws4_request"]
            .iter()
            .fold(
                b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_vec(),
                |key, part| hmac(&key, part.as_bytes()),
            );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn malformed_authorization_headers_are_incomplete() {
        for bad in [
            "Basic dXNlcjpwYXNz",
            "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/aws-marketplace/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 garbage",
        ] {
            let refused = parse_authorization(bad).err().unwrap();
            assert_eq!(refused.kind, "IncompleteSignature", "{bad}");
        }
    }
}
