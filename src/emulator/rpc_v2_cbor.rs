//! Smithy RPC v2 CBOR, the protocol the AWS SDKs generated from the
//! Entitlement Service's newer model speak (the Rust SDK among them):
//! `POST /service/<service>/operation/<operation>` with a CBOR body, answered
//! with a CBOR body and `smithy-protocol: rpc-v2-cbor`; errors carry their
//! shape id in `__type`; timestamps are epoch seconds under CBOR tag 1.

use bytes::Bytes;
use ciborium::Value as Cbor;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};

/// Where RPC v2 requests go.
pub(crate) const PATH_PREFIX: &str = "/service/";
/// The Entitlement Service's shape namespace, for error shape ids.
const ENTITLEMENT_NAMESPACE: &str = "com.amazonaws.marketplaceentitlementservice";
/// Output members that are timestamps.
const TIMESTAMPS: &[&str] = &["ExpirationDate"];

/// `/service/<service>/operation/<operation>` → `(service, operation)`.
pub(crate) fn operation(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(PATH_PREFIX)?;
    let (service, operation) = rest.split_once("/operation/")?;
    (!service.is_empty() && !operation.is_empty() && !operation.contains('/'))
        .then_some((service, operation))
}

/// A request body as JSON (an empty body is an empty structure).
pub(crate) fn decode(body: &[u8]) -> Result<Value, String> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Cbor = ciborium::from_reader(body).map_err(|e| e.to_string())?;
    to_json(value, 0)
}

fn to_json(value: Cbor, depth: usize) -> Result<Value, String> {
    if depth > 64 {
        return Err("nested too deeply".into());
    }
    Ok(match value {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Text(text) => Value::String(text),
        Cbor::Integer(n) => {
            let n = i128::from(n);
            i64::try_from(n).map_or_else(|_| Value::from(n as f64), Value::from)
        }
        Cbor::Float(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
        Cbor::Tag(_, inner) => to_json(*inner, depth + 1)?,
        Cbor::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| to_json(item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => {
            let mut fields = Map::new();
            for (key, value) in entries {
                let Cbor::Text(key) = key else {
                    return Err("map keys must be text".into());
                };
                fields.insert(key, to_json(value, depth + 1)?);
            }
            Value::Object(fields)
        }
        Cbor::Bytes(_) => return Err("blobs are not expected".into()),
        _ => return Err("unsupported CBOR value".into()),
    })
}

fn to_cbor(value: &Value, key: Option<&str>) -> Cbor {
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::String(text) => Cbor::Text(text.clone()),
        Value::Number(n) if key.is_some_and(|k| TIMESTAMPS.contains(&k)) => {
            Cbor::Tag(1, Box::new(Cbor::Float(n.as_f64().unwrap_or(0.0))))
        }
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Cbor::Integer(i.into()),
            (None, Some(x)) => Cbor::Float(x),
            (None, None) => Cbor::Null,
        },
        Value::Array(items) => Cbor::Array(items.iter().map(|item| to_cbor(item, None)).collect()),
        Value::Object(fields) => Cbor::Map(
            fields
                .iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v, Some(k))))
                .collect(),
        ),
    }
}

fn encoded(status: StatusCode, value: &Cbor) -> Response<Full<Bytes>> {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = ciborium::into_writer(value, &mut bytes);
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/cbor"));
    headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    response
}

/// An operation's output.
pub(crate) fn response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    encoded(status, &to_cbor(body, None))
}

/// An error: `kind` as a shape id of the Entitlement Service (the common
/// errors, such as the signature's, by name).
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let modeled = [
        "InvalidParameterException",
        "ThrottlingException",
        "InternalServiceErrorException",
    ];
    let kind = if modeled.contains(&kind) {
        format!("{ENTITLEMENT_NAMESPACE}#{kind}")
    } else {
        kind.to_owned()
    };
    encoded(
        status,
        &Cbor::Map(vec![
            (Cbor::Text("__type".into()), Cbor::Text(kind)),
            (Cbor::Text("message".into()), Cbor::Text(message.into())),
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_are_read_from_the_path() {
        assert_eq!(
            operation("/service/AWSMPEntitlementService/operation/GetEntitlements"),
            Some(("AWSMPEntitlementService", "GetEntitlements"))
        );
        for bad in [
            "/",
            "/service/",
            "/service/x/operation/",
            "/service//operation/y",
            "/service/x/operation/y/z",
        ] {
            assert_eq!(operation(bad), None, "{bad}");
        }
    }

    #[test]
    fn bodies_round_trip_and_timestamps_are_tagged() {
        let body = json!({"ProductCode": "p", "MaxResults": 3, "Filter": {"DIMENSION": ["a"]}});
        let mut bytes = Vec::new();
        ciborium::into_writer(&to_cbor(&body, None), &mut bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), body);
        let answer = to_cbor(&json!({"ExpirationDate": 1893456000.0}), None);
        let Cbor::Map(entries) = answer else { panic!() };
        assert!(matches!(&entries[0].1, Cbor::Tag(1, _)));
        assert!(decode(b"\xff\xff").is_err());
        assert_eq!(decode(b"").unwrap(), json!({}));
    }
}
