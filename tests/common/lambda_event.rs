//! AWS Lambda's HTTP events, as API Gateway (REST and HTTP APIs), function
//! URLs and Application Load Balancers deliver a request to a function, and
//! the fields of the answers Lambda gives back for them.

use serde_json::{Value, json};
use tower_resolve_customer::TOKEN_FIELD;

/// The kinds of event that carry an HTTP request to a Lambda function.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// API Gateway REST API, payload format 1.0, stage `prod`.
    RestApi,
    /// API Gateway HTTP API, payload format 2.0.
    HttpApi,
    /// A Lambda function URL (payload format 2.0, its own domain).
    FunctionUrl,
    /// An Application Load Balancer target group.
    Alb,
}

pub const KINDS: [Kind; 4] = [Kind::RestApi, Kind::HttpApi, Kind::FunctionUrl, Kind::Alb];

/// A request as `kind`'s event: `body` base64-encoded, `cookie` (if any) as
/// that kind sends cookies.
pub fn event(
    kind: Kind,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    cookie: Option<&str>,
) -> Value {
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        header_map.insert((*name).to_owned(), json!(value));
    }
    let encoded = aws_smithy_types::base64::encode(body);
    match kind {
        Kind::RestApi => {
            header_map.insert(
                "Host".into(),
                json!("abc123.execute-api.us-east-1.amazonaws.com"),
            );
            if let Some(cookie) = cookie {
                header_map.insert("Cookie".into(), json!(cookie));
            }
            let multi: serde_json::Map<String, Value> = header_map
                .iter()
                .map(|(name, value)| (name.clone(), json!([value])))
                .collect();
            json!({
                "resource": "/{proxy+}",
                "path": path,
                "httpMethod": method,
                "headers": header_map,
                "multiValueHeaders": multi,
                "queryStringParameters": null,
                "pathParameters": {"proxy": path.trim_start_matches('/')},
                "requestContext": {
                    "accountId": "111122223333",
                    "resourceId": "abc123",
                    "stage": "prod",
                    "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                    "requestTimeEpoch": 1_700_000_000_000_u64,
                    "identity": {"sourceIp": "198.51.100.7", "userAgent": "Mozilla/5.0"},
                    "resourcePath": "/{proxy+}",
                    "httpMethod": method,
                    "path": format!("/prod{path}"),
                    "apiId": "abc123"
                },
                "body": encoded,
                "isBase64Encoded": true
            })
        }
        Kind::HttpApi | Kind::FunctionUrl => {
            let domain = match kind {
                Kind::HttpApi => "abc123.execute-api.us-east-1.amazonaws.com",
                _ => "abc123xyz.lambda-url.us-east-1.on.aws",
            };
            header_map.insert("host".into(), json!(domain));
            json!({
                "version": "2.0",
                "routeKey": "$default",
                "rawPath": path,
                "rawQueryString": "",
                "cookies": cookie.map(|c| vec![c]).unwrap_or_default(),
                "headers": header_map,
                "requestContext": {
                    "accountId": "111122223333",
                    "apiId": "abc123",
                    "domainName": domain,
                    "domainPrefix": domain.split('.').next().unwrap(),
                    "http": {
                        "method": method,
                        "path": path,
                        "protocol": "HTTP/1.1",
                        "sourceIp": "198.51.100.7",
                        "userAgent": "Mozilla/5.0"
                    },
                    "requestId": "JKJaXmPLvHcESHA=",
                    "routeKey": "$default",
                    "stage": "$default",
                    "time": "14/Nov/2023:22:13:20 +0000",
                    "timeEpoch": 1_700_000_000_000_u64
                },
                "body": encoded,
                "isBase64Encoded": true
            })
        }
        Kind::Alb => {
            header_map.insert(
                "host".into(),
                json!("registration-123.us-east-1.elb.amazonaws.com"),
            );
            if let Some(cookie) = cookie {
                header_map.insert("cookie".into(), json!(cookie));
            }
            json!({
                "requestContext": {"elb": {"targetGroupArn":
                    "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/registration/6d0ecf831eec9f09"}},
                "httpMethod": method,
                "path": path,
                "queryStringParameters": {},
                "headers": header_map,
                "body": encoded,
                "isBase64Encoded": true
            })
        }
    }
}

/// The Marketplace form POST, as `kind` delivers it.
pub fn form_event(kind: Kind, token: &str) -> Value {
    let body = format!(
        "{TOKEN_FIELD}={}&x-amzn-marketplace-offer-type=free-trial",
        urlencode(token)
    );
    event(
        kind,
        "POST",
        "/register",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
        None,
    )
}

pub fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A response header, however `response`'s kind carries it (names are
/// compared without case).
pub fn header(response: &Value, name: &str) -> Option<String> {
    for field in ["headers", "multiValueHeaders"] {
        if let Some(map) = response[field].as_object() {
            for (key, value) in map {
                if key.eq_ignore_ascii_case(name) {
                    return match value {
                        Value::Array(values) => values.first().and_then(Value::as_str),
                        value => value.as_str(),
                    }
                    .map(str::to_owned);
                }
            }
        }
    }
    None
}

/// The session cookie the response sets (`name=value`).
pub fn session_cookie(response: &Value) -> Option<String> {
    let set = response["cookies"]
        .as_array()
        .and_then(|cookies| cookies.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| header(response, "set-cookie"))?;
    Some(set.split(';').next()?.to_owned())
}

/// The response's body as bytes.
pub fn body(response: &Value) -> Vec<u8> {
    let text = response["body"].as_str().unwrap_or("");
    if response["isBase64Encoded"].as_bool() == Some(true) {
        aws_smithy_types::base64::decode(text).expect("base64")
    } else {
        text.as_bytes().to_vec()
    }
}

pub fn status(response: &Value) -> u64 {
    response["statusCode"].as_u64().expect("a status code")
}
