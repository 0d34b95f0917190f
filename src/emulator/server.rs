//! The AWS JSON 1.1 wire protocol of `ResolveCustomer`, served over HTTP/1.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value, json};

use super::registry::{Fault, Operation, Registry, Verdict};
use super::{admin, entitlements, rpc_v2_cbor, signature, sts};

const JSON_1_1: &str = "application/x-amz-json-1.1";
const TARGET: &str = "AWSMPMeteringService.ResolveCustomer";
const ENTITLEMENTS_TARGET: &str = "AWSMPEntitlementService.GetEntitlements";
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Returned by the handler to make hyper drop the connection unanswered.
#[derive(Debug)]
pub(crate) struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by fault injection")
    }
}

impl std::error::Error for CloseConnection {}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

pub(crate) fn request_id() -> String {
    let n = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
    if let Ok(id) = HeaderValue::from_str(&request_id()) {
        headers.insert("x-amzn-RequestId", id);
    }
    response
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    json_response(status, json!({ "__type": kind, "message": message }))
}

/// `amz-sdk-request: attempt=2; max=3` → `2`.
fn attempt_number<B>(request: &Request<B>) -> Option<u32> {
    let value = request.headers().get("amz-sdk-request")?.to_str().ok()?;
    value
        .split(';')
        .find_map(|part| part.trim().strip_prefix("attempt="))
        .and_then(|n| n.trim().parse().ok())
}

/// The wire protocol of a request, which its answer speaks too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// AWS JSON 1.1 (`POST /`, `X-Amz-Target`).
    Json,
    /// Smithy RPC v2 CBOR (`POST /service/<service>/operation/<operation>`).
    Cbor,
}

impl Wire {
    fn of(path: &str) -> Self {
        if path.starts_with(rpc_v2_cbor::PATH_PREFIX) {
            Self::Cbor
        } else {
            Self::Json
        }
    }

    fn answer(self, status: StatusCode, body: Value) -> Response<Full<Bytes>> {
        match self {
            Self::Json => json_response(status, body),
            Self::Cbor => rpc_v2_cbor::response(status, &body),
        }
    }

    fn error(self, status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
        match self {
            Self::Json => error(status, kind, message),
            Self::Cbor => rpc_v2_cbor::error(status, kind, message),
        }
    }
}

/// What a scripted fault answers, or `None` once a latency has passed (the
/// call is then answered normally: one fault per call).
async fn faulted(
    fault: Fault,
    wire: Wire,
) -> Option<Result<Response<Full<Bytes>>, CloseConnection>> {
    Some(match fault {
        Fault::Latency(delay) => {
            tokio::time::sleep(delay).await;
            return None;
        }
        Fault::Throttle => Ok(wire.error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded",
        )),
        Fault::InternalError => Ok(wire.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServiceErrorException",
            "An internal error has occurred.",
        )),
        Fault::DisabledApi => Ok(wire.error(
            StatusCode::BAD_REQUEST,
            "DisabledApiException",
            "The API is disabled in the Region.",
        )),
        Fault::CloseConnection => Err(CloseConnection),
        Fault::GarbageBody => {
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"<html>upstream gone</html>")));
            let content_type = match wire {
                Wire::Json => JSON_1_1,
                Wire::Cbor => "application/cbor",
            };
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            Ok(response)
        }
    })
}

/// Answers a well-formed `GetEntitlements` request, decoded from `wire`.
async fn get_entitlements(
    registry: &Registry,
    request: Result<Value, String>,
    wire: Wire,
) -> Result<Response<Full<Bytes>>, CloseConnection> {
    let Ok(request) = request else {
        return Ok(wire.error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "The request body could not be decoded.",
        ));
    };
    registry.record_entitlement_call();
    if let Some(fault) = registry.next_fault(Operation::GetEntitlements)
        && let Some(faulted) = faulted(fault, wire).await
    {
        return faulted;
    }
    Ok(
        match entitlements::get_entitlements(&registry.entitlements(), &request) {
            Ok(answer) => wire.answer(StatusCode::OK, answer),
            Err(entitlements::InvalidParameter(message)) => wire.error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
                &message,
            ),
        },
    )
}

/// Answers one HTTP request as the Marketplace Metering service would.
pub(crate) async fn handle<B>(
    registry: Arc<Registry>,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, CloseConnection>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if request.uri().path().starts_with(admin::PREFIX) {
        return Ok(admin::handle(&registry, request).await);
    }
    let attempt = attempt_number(&request);
    registry.record_request(attempt);

    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "The request body could not be read.",
            ));
        }
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let query = parts.uri.path() == "/" && sts::is_query(content_type);
    let wire = Wire::of(parts.uri.path());
    let service = if query {
        sts::SIGNING_NAME
    } else {
        signature::SIGNING_NAME
    };
    // Authentication comes first, as at AWS: an unsigned request learns
    // nothing about operations.
    let access_key = match signature::check(
        &parts,
        &body,
        service,
        |key| registry.secret_for(key),
        std::time::SystemTime::now(),
    ) {
        Ok(access_key) => access_key,
        Err(refused) if query => {
            return Ok(sts::error(refused.status, refused.kind, &refused.message));
        }
        Err(refused) => {
            return Ok(wire.error(refused.status, refused.kind, &refused.message));
        }
    };
    if query {
        let (response, issued) = sts::assume_role(
            &body,
            |role| registry.role(role),
            std::time::SystemTime::now(),
        );
        if let Some((access_key, issued)) = issued {
            registry.record_issued(access_key, issued);
        }
        return Ok(response);
    }
    let session_token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if !registry.may_call(&access_key, session_token) {
        // The Metering API reference's Common Errors: 400.
        return Ok(wire.error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "You do not have sufficient access to perform this action: \
             call from the account that published the product.",
        ));
    }
    if wire == Wire::Cbor {
        return match rpc_v2_cbor::operation(parts.uri.path()) {
            Some(("AWSMPEntitlementService", "GetEntitlements"))
                if parts.method == http::Method::POST =>
            {
                get_entitlements(&registry, rpc_v2_cbor::decode(&body), Wire::Cbor).await
            }
            _ => Ok(Wire::Cbor.error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                "The requested operation is not supported.",
            )),
        };
    }

    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let known = [TARGET, ENTITLEMENTS_TARGET].contains(&target);
    if parts.method != http::Method::POST || parts.uri.path() != "/" || !known {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "The requested operation is not supported.",
        ));
    }
    if !content_type.starts_with(JSON_1_1) {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "Content-Type must be application/x-amz-json-1.1.",
        ));
    }

    if target == ENTITLEMENTS_TARGET {
        let request = serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string());
        return get_entitlements(&registry, request, Wire::Json).await;
    }

    let token = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fields)) => match fields.get("RegistrationToken") {
            Some(Value::String(token)) if !token.is_empty() => token.clone(),
            Some(Value::String(_)) | None => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    "1 validation error detected: Value at 'registrationToken' failed to satisfy constraint: Member must not be null or empty",
                ));
            }
            Some(_) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "SerializationException",
                    "RegistrationToken must be a string.",
                ));
            }
        },
        _ => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "The request body is not a JSON object.",
            ));
        }
    };
    registry.record_call(&token, attempt);

    if let Some(fault) = registry.next_fault(Operation::ResolveCustomer)
        && let Some(faulted) = faulted(fault, Wire::Json).await
    {
        return faulted;
    }

    Ok(match registry.redeem(&token) {
        Verdict::Resolved(customer) => {
            let mut fields = Map::new();
            fields.insert(
                "CustomerAWSAccountId".into(),
                customer.customer_aws_account_id().into(),
            );
            fields.insert("ProductCode".into(), customer.product_code().into());
            if let Some(id) = customer.customer_identifier() {
                fields.insert("CustomerIdentifier".into(), id.into());
            }
            if let Some(arn) = customer.license_arn() {
                fields.insert("LicenseArn".into(), arn.into());
            }
            if let Some(agreement) = customer.agreement_id() {
                fields.insert("Metadata".into(), json!({ "AgreementId": agreement }));
            }
            json_response(StatusCode::OK, Value::Object(fields))
        }
        Verdict::InvalidToken => error(
            StatusCode::BAD_REQUEST,
            "InvalidTokenException",
            "Registration token is invalid.",
        ),
        Verdict::ExpiredToken => error(
            StatusCode::BAD_REQUEST,
            "ExpiredTokenException",
            "The submitted registration token has expired.",
        ),
    })
}
