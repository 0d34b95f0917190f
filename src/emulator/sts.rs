//! STS `AssumeRole` (the AWS Query protocol: a form body in, XML out), so a
//! resolver configured to assume a role in the publishing seller account can
//! be tested offline end to end.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::expand;
use super::server::request_id;

/// The signing name of STS.
pub(crate) const SIGNING_NAME: &str = "sts";
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// How long issued credentials last unless `DurationSeconds` says otherwise.
const DEFAULT_DURATION: Duration = Duration::from_secs(60 * 60);

/// Temporary credentials issued for a role.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) secret: String,
    pub(crate) session_token: String,
    pub(crate) role_arn: String,
}

/// Whether a request is in the Query protocol (a form body).
pub(crate) fn is_query(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|essence| {
        essence
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

/// An STS error, as the Query protocol writes it.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{kind}</Type><Code>{}</Code>\
             <Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            xml_escape(code),
            xml_escape(message),
            request_id()
        ),
    )
}

/// `count` characters from `alphabet`, derived from `seed`.
fn derived(seed: &[u8], alphabet: &[u8], count: usize) -> String {
    expand(seed, count)
        .into_iter()
        .map(|byte| alphabet[usize::from(byte) % alphabet.len()] as char)
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `time`.
fn iso8601(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// A role the emulator lets callers assume, and the external id it wants.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub(crate) external_id: Option<String>,
}

/// Answers `AssumeRole`: checks the role and external id and issues
/// credentials (returned with the response, for the registry to keep).
pub(crate) fn assume_role(
    body: &[u8],
    role_for: impl Fn(&str) -> Option<Role>,
    now: SystemTime,
) -> (Response<Full<Bytes>>, Option<(String, Issued)>) {
    let mut params = std::collections::HashMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    let get = |name: &str| params.get(name).map(String::as_str);
    match get("Action") {
        Some("AssumeRole") => {}
        Some(other) => {
            let message = format!("Could not find operation {other} for version 2011-06-15");
            return (
                error(StatusCode::BAD_REQUEST, "InvalidAction", &message),
                None,
            );
        }
        None => {
            return (
                error(StatusCode::BAD_REQUEST, "MissingAction", "Missing Action"),
                None,
            );
        }
    }
    let (Some(role_arn), Some(session)) = (get("RoleArn"), get("RoleSessionName")) else {
        let message = "1 validation error detected: RoleArn and RoleSessionName are required";
        return (
            error(StatusCode::BAD_REQUEST, "ValidationError", message),
            None,
        );
    };
    let denied = || {
        let message =
            format!("User is not authorized to perform: sts:AssumeRole on resource: {role_arn}");
        (error(StatusCode::FORBIDDEN, "AccessDenied", &message), None)
    };
    let Some(role) = role_for(role_arn) else {
        return denied();
    };
    if role
        .external_id
        .as_deref()
        .is_some_and(|expected| get("ExternalId") != Some(expected))
    {
        return denied();
    }
    let duration = get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .filter(|d| (900..=43_200).contains(d))
        .map_or(DEFAULT_DURATION, Duration::from_secs);
    let nonce = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seed = format!("{role_arn}\0{session}\0{nonce}");
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const ANY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let access_key = format!("ASIA{}", derived(seed.as_bytes(), UPPER, 16));
    let issued = Issued {
        secret: derived(format!("{seed}secret").as_bytes(), ANY, 40),
        session_token: derived(format!("{seed}token").as_bytes(), ANY, 356),
        role_arn: role_arn.to_owned(),
    };
    let role_name = role_arn.rsplit('/').next().unwrap_or(role_arn);
    let account = role_arn.split(':').nth(4).unwrap_or("000000000000");
    let body = format!(
        "<AssumeRoleResponse xmlns=\"{XMLNS}\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>{access_key}</AccessKeyId>\
         <SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken>\
         <Expiration>{}</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>AROA{}:{}</AssumedRoleId>\
         <Arn>arn:aws:sts::{}:assumed-role/{}/{}</Arn></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\
         </AssumeRoleResponse>",
        xml_escape(&issued.secret),
        xml_escape(&issued.session_token),
        iso8601(now + duration),
        derived(role_arn.as_bytes(), UPPER, 17),
        xml_escape(session),
        xml_escape(account),
        xml_escape(role_name),
        xml_escape(session),
        request_id(),
    );
    (xml(StatusCode::OK, body), Some((access_key, issued)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_are_iso_8601_utc() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(1_795_681_800)),
            "2026-11-26T08:30:00Z"
        );
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(951_868_800)),
            "2000-03-01T00:00:00Z"
        );
    }

    #[test]
    fn roles_are_checked_before_credentials_are_issued() {
        let role = |arn: &str| {
            (arn == "arn:aws:iam::111122223333:role/Marketplace").then(|| Role {
                external_id: Some("ext-1".into()),
            })
        };
        let now = SystemTime::now();
        let ok = b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2FMarketplace&RoleSessionName=s&ExternalId=ext-1";
        let (response, issued) = assume_role(ok, role, now);
        assert_eq!(response.status(), 200);
        let (key, issued) = issued.unwrap();
        assert!(key.starts_with("ASIA") && key.len() == 20);
        assert_eq!(
            issued.role_arn,
            "arn:aws:iam::111122223333:role/Marketplace"
        );
        for denied in [
            &b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2FOther&RoleSessionName=s"[..],
            b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2FMarketplace&RoleSessionName=s&ExternalId=wrong",
        ] {
            let (response, issued) = assume_role(denied, role, now);
            assert_eq!(response.status(), 403);
            assert!(issued.is_none());
        }
        let (response, _) = assume_role(b"Action=GetCallerIdentity", role, now);
        assert_eq!(response.status(), 400);
    }
}
