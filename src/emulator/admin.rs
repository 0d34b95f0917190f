//! The emulator's admin API, under `/_emulator/`: JSON in and out, with AWS's
//! own field names where AWS has one, for tests written in any language.
//!
//! | Request | Effect |
//! |---|---|
//! | `GET /_emulator/` | the resources below |
//! | `POST /_emulator/tokens` | registers a token (`201`) |
//! | `GET /_emulator/policy`, `PUT /_emulator/policy` | the redemption policy |
//! | `POST /_emulator/faults`, `GET`, `DELETE` | scripted faults |
//! | `POST /_emulator/entitlements`, `GET`, `DELETE` | what `GetEntitlements` answers |
//! | `GET /_emulator/counters[?RegistrationToken=...]` | counters, overall or per token |
//! | `POST /_emulator/reset` | forgets everything (`204`) |
//!
//! Bad input gets `400` with `{"Error": "<what is wrong>"}`; an unknown path
//! `404`, a known path with another method `405`, both with the same shape.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value, json};

use super::entitlements::Entitlement;
use super::registry::{Fault, Operation, RedemptionPolicy, Registry};
use crate::customer::ResolvedCustomer;

/// Where the admin API lives.
pub(crate) const PREFIX: &str = "/_emulator/";

const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest validity a token may be registered with: ten years.
const MAX_VALIDITY_SECONDS: u64 = 10 * 365 * 24 * 60 * 60;
/// The longest scripted latency: ten minutes.
const MAX_LATENCY_MILLIS: u64 = 10 * 60 * 1000;
/// The most calls one fault request may script.
const MAX_FAULT_COUNT: u64 = 100_000;

type Answer = Response<Full<Bytes>>;

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn empty(status: StatusCode) -> Answer {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A request the admin API refuses: its status and what is wrong.
struct Refusal(StatusCode, String);

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }

    fn into_answer(self) -> Answer {
        json_answer(self.0, &json!({ "Error": self.1 }))
    }
}

/// Answers one admin request.
pub(crate) async fn handle<B>(registry: &Registry, request: Request<B>) -> Answer
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let method = request.method().clone();
    let route = &path[PREFIX.len()..];
    let allowed: &[Method] = match route {
        "" => &[Method::GET],
        "tokens" | "reset" => &[Method::POST],
        "policy" => &[Method::GET, Method::PUT],
        "faults" | "entitlements" => &[Method::GET, Method::POST, Method::DELETE],
        "counters" => &[Method::GET],
        _ => {
            return Refusal(
                StatusCode::NOT_FOUND,
                format!("no admin resource at {path}; see the README's admin API"),
            )
            .into_answer();
        }
    };
    if !allowed.contains(&method) {
        let mut answer = Refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )
        .into_answer();
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
            answer.headers_mut().insert(ALLOW, value);
        }
        return answer;
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Refusal::bad(format!(
                "the body could not be read (at most {MAX_BODY_BYTES} bytes)"
            ))
            .into_answer();
        }
    };
    let answered = match (route, method) {
        ("", _) => Ok(json_answer(
            StatusCode::OK,
            &json!({ "Resources": ["tokens", "policy", "faults", "entitlements", "counters", "reset"] }),
        )),
        ("tokens", _) => register_token(registry, &body),
        ("reset", _) => {
            registry.reset();
            Ok(empty(StatusCode::NO_CONTENT))
        }
        ("policy", Method::GET) => Ok(policy(registry)),
        ("policy", _) => set_policy(registry, &body),
        ("faults", Method::GET) => Ok(faults(registry)),
        ("faults", Method::DELETE) => {
            registry.clear_faults();
            Ok(empty(StatusCode::NO_CONTENT))
        }
        ("faults", _) => push_faults(registry, &body),
        ("entitlements", Method::GET) => Ok(entitlements(registry)),
        ("entitlements", Method::DELETE) => {
            registry.clear_entitlements();
            Ok(empty(StatusCode::NO_CONTENT))
        }
        ("entitlements", _) => add_entitlements(registry, &body),
        _ => counters(registry, query.as_deref()),
    };
    answered.unwrap_or_else(Refusal::into_answer)
}

/// The body as a JSON object whose fields are all among `known`.
fn object(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad(format!("the body is not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(Refusal::bad("the body must be a JSON object"));
    };
    check_fields(&fields, known)?;
    Ok(fields)
}

/// What is wrong with a field, as a message.
fn field<T>(result: Result<T, Refusal>) -> Result<T, String> {
    result.map_err(|Refusal(_, message)| message)
}

/// Refuses a field not among `known`.
fn check_fields(fields: &Map<String, Value>, known: &[&str]) -> Result<(), Refusal> {
    match fields.keys().find(|name| !known.contains(&name.as_str())) {
        Some(unknown) => Err(Refusal::bad(format!(
            "unknown field {unknown:?}; expected one of {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A string field: `Ok(None)` when absent, refused when not a non-empty
/// string.
fn string_field(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, Refusal> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
        Some(Value::String(_)) => Err(Refusal::bad(format!("{name} must not be empty"))),
        Some(_) => Err(Refusal::bad(format!("{name} must be a string"))),
    }
}

fn required_string(fields: &Map<String, Value>, name: &str) -> Result<String, Refusal> {
    string_field(fields, name)?.ok_or_else(|| Refusal::bad(format!("{name} is required")))
}

/// A whole-number field within `1..=max`: `Ok(None)` when absent.
fn count_field(fields: &Map<String, Value>, name: &str, max: u64) -> Result<Option<u64>, Refusal> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Refusal::bad(format!(
                "{name} must be a whole number from 1 to {max}"
            ))),
        },
    }
}

const TOKEN_FIELDS: &[&str] = &[
    "RegistrationToken",
    "CustomerAWSAccountId",
    "ProductCode",
    "CustomerIdentifier",
    "LicenseArn",
    "AgreementId",
    "ValidForSeconds",
];

fn register_token(registry: &Registry, body: &[u8]) -> Result<Answer, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad(format!("the body is not JSON: {e}")))?;
    let (token, customer, valid_for) = registration(&value).map_err(Refusal::bad)?;
    registry.register(token.clone(), customer, valid_for);
    Ok(json_answer(
        StatusCode::CREATED,
        &json!({
            "RegistrationToken": token,
            "ValidForSeconds": valid_for.as_secs(),
        }),
    ))
}

/// A token registration in the admin API's shape: the token, its customer
/// and its validity; or what is wrong with it.
pub(crate) fn registration(value: &Value) -> Result<(String, ResolvedCustomer, Duration), String> {
    let Value::Object(fields) = value else {
        return Err("a token must be a JSON object".into());
    };
    field(check_fields(fields, TOKEN_FIELDS))?;
    let token = field(required_string(fields, "RegistrationToken"))?;
    let account = field(required_string(fields, "CustomerAWSAccountId"))?;
    let product = field(required_string(fields, "ProductCode"))?;
    let mut customer = ResolvedCustomer::new(account, product);
    if let Some(id) = field(string_field(fields, "CustomerIdentifier"))? {
        customer = customer.with_customer_identifier(id);
    }
    if let Some(arn) = field(string_field(fields, "LicenseArn"))? {
        customer = customer.with_license_arn(arn);
    }
    if let Some(agreement) = field(string_field(fields, "AgreementId"))? {
        customer = customer.with_agreement_id(agreement);
    }
    let valid_for = match fields.get("ValidForSeconds") {
        None | Some(Value::Null) => super::DEFAULT_TOKEN_VALIDITY,
        // 0 registers a token that has already expired.
        Some(seconds) => match seconds.as_u64().filter(|s| *s <= MAX_VALIDITY_SECONDS) {
            Some(seconds) => Duration::from_secs(seconds),
            None => {
                return Err(format!(
                    "ValidForSeconds must be a whole number from 0 to {MAX_VALIDITY_SECONDS}"
                ));
            }
        },
    };
    Ok((token, customer, valid_for))
}

fn policy_name(policy: RedemptionPolicy) -> &'static str {
    match policy {
        RedemptionPolicy::ReusableUntilExpiry => "ReusableUntilExpiry",
        RedemptionPolicy::SingleUse => "SingleUse",
    }
}

fn policy(registry: &Registry) -> Answer {
    json_answer(
        StatusCode::OK,
        &json!({ "RedemptionPolicy": policy_name(registry.policy()) }),
    )
}

fn set_policy(registry: &Registry, body: &[u8]) -> Result<Answer, Refusal> {
    let fields = object(body, &["RedemptionPolicy"])?;
    let policy = match required_string(&fields, "RedemptionPolicy")?.as_str() {
        "ReusableUntilExpiry" => RedemptionPolicy::ReusableUntilExpiry,
        "SingleUse" => RedemptionPolicy::SingleUse,
        other => {
            return Err(Refusal::bad(format!(
                "RedemptionPolicy {other:?} is not one of SingleUse, ReusableUntilExpiry"
            )));
        }
    };
    registry.set_policy(policy);
    Ok(json_answer(
        StatusCode::OK,
        &json!({ "RedemptionPolicy": policy_name(policy) }),
    ))
}

/// The admin API's name for a fault, and its latency if it has one.
fn fault_name(fault: &Fault) -> (&'static str, Option<Duration>) {
    match fault {
        Fault::Throttle => ("ThrottlingException", None),
        Fault::InternalError => ("InternalServiceErrorException", None),
        Fault::DisabledApi => ("DisabledApiException", None),
        Fault::Latency(delay) => ("Latency", Some(*delay)),
        Fault::CloseConnection => ("CloseConnection", None),
        Fault::GarbageBody => ("GarbageBody", None),
    }
}

const FAULT_NAMES: &str = "ThrottlingException, InternalServiceErrorException, DisabledApiException, Latency, CloseConnection, GarbageBody";

fn push_faults(registry: &Registry, body: &[u8]) -> Result<Answer, Refusal> {
    let fields = object(body, &["Fault", "Count", "LatencyMillis", "Operation"])?;
    let operation = match string_field(&fields, "Operation")? {
        None => Operation::ResolveCustomer,
        Some(name) => Operation::ALL
            .into_iter()
            .find(|operation| operation.name() == name)
            .ok_or_else(|| {
                Refusal::bad(format!(
                    "Operation {name:?} is not one of ResolveCustomer, GetEntitlements"
                ))
            })?,
    };
    let name = required_string(&fields, "Fault")?;
    let latency = count_field(&fields, "LatencyMillis", MAX_LATENCY_MILLIS)?;
    let fault = match (name.as_str(), latency) {
        ("Latency", Some(millis)) => Fault::Latency(Duration::from_millis(millis)),
        ("Latency", None) => return Err(Refusal::bad("a Latency fault needs LatencyMillis")),
        (_, Some(_)) => return Err(Refusal::bad("LatencyMillis is for Latency faults only")),
        ("ThrottlingException", None) => Fault::Throttle,
        ("InternalServiceErrorException", None) => Fault::InternalError,
        ("DisabledApiException", None) => Fault::DisabledApi,
        ("CloseConnection", None) => Fault::CloseConnection,
        ("GarbageBody", None) => Fault::GarbageBody,
        (other, None) => {
            return Err(Refusal::bad(format!(
                "Fault {other:?} is not one of {FAULT_NAMES}"
            )));
        }
    };
    if operation == Operation::GetEntitlements && fault == Fault::DisabledApi {
        return Err(Refusal::bad(
            "DisabledApiException is not an error of GetEntitlements",
        ));
    }
    let count = usize::try_from(count_field(&fields, "Count", MAX_FAULT_COUNT)?.unwrap_or(1))
        .unwrap_or(usize::MAX);
    registry.push_faults(operation, fault, count);
    Ok(faults_answer(registry, StatusCode::CREATED))
}

fn faults(registry: &Registry) -> Answer {
    faults_answer(registry, StatusCode::OK)
}

/// The faults still to come, in order, for each operation.
fn faults_answer(registry: &Registry, status: StatusCode) -> Answer {
    let listed = |faults: Vec<Fault>, operation: &str| -> Vec<Value> {
        faults
            .iter()
            .map(|fault| match fault_name(fault) {
                (name, Some(delay)) => json!({
                    "Operation": operation,
                    "Fault": name,
                    "LatencyMillis": delay.as_millis(),
                }),
                (name, None) => json!({ "Operation": operation, "Fault": name }),
            })
            .collect()
    };
    let pending: Vec<Value> = Operation::ALL
        .into_iter()
        .flat_map(|operation| listed(registry.pending_faults(operation), operation.name()))
        .collect();
    json_answer(status, &json!({ "PendingFaults": pending }))
}

/// Adds one entitlement (an object) or several (an array of them), all or
/// none.
fn add_entitlements(registry: &Registry, body: &[u8]) -> Result<Answer, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad(format!("the body is not JSON: {e}")))?;
    let entries = match value {
        Value::Array(entries) => entries,
        single => vec![single],
    };
    let added = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            Entitlement::from_json(entry)
                .map_err(|message| Refusal::bad(format!("entitlement {index}: {message}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = added.len();
    registry.add_entitlements(added);
    Ok(json_answer(StatusCode::CREATED, &json!({ "Added": count })))
}

fn entitlements(registry: &Registry) -> Answer {
    let listed: Vec<Value> = registry
        .entitlements()
        .iter()
        .map(Entitlement::to_json)
        .collect();
    json_answer(StatusCode::OK, &json!({ "Entitlements": listed }))
}

fn counters(registry: &Registry, query: Option<&str>) -> Result<Answer, Refusal> {
    let mut token = None;
    // A `+` is a `+` here (tokens have them), not a form's space.
    let query = query.unwrap_or("").replace('+', "%2B");
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "RegistrationToken" if token.is_none() => token = Some(value.into_owned()),
            "RegistrationToken" => return Err(Refusal::bad("RegistrationToken given twice")),
            other => {
                return Err(Refusal::bad(format!(
                    "unknown query parameter {other:?}; expected RegistrationToken"
                )));
            }
        }
    }
    let body = match token {
        Some(token) => {
            let counters = registry.counters_for(&token);
            json!({
                "RegistrationToken": token,
                "Registered": counters.registered,
                "Calls": counters.calls,
                "Redemptions": counters.redemptions,
                "Attempts": counters.attempts,
            })
        }
        None => json!({
            "Requests": registry.requests(),
            "Attempts": registry.attempts(),
        }),
    };
    Ok(json_answer(StatusCode::OK, &body))
}
