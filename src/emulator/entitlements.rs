//! `GetEntitlements` of the AWS Marketplace Entitlement Service, on the same
//! server (AWS JSON 1.1, `X-Amz-Target: AWSMPEntitlementService.GetEntitlements`,
//! signing name `aws-marketplace`): the product code, the `Filter` map
//! (values of one key united, keys intersected), `MaxResults` (1 to 25) and
//! `NextToken` paging.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use crate::entitlements::{Entitlement, EntitlementValue};

impl Entitlement {
    /// The entitlement as `GetEntitlements` answers it (AWS JSON 1.1: the
    /// expiration in epoch seconds).
    pub(crate) fn to_json(&self) -> Value {
        let mut fields = Map::new();
        fields.insert("ProductCode".into(), self.product_code.clone().into());
        fields.insert("Dimension".into(), self.dimension.clone().into());
        let optional = [
            ("CustomerIdentifier", &self.customer_identifier),
            ("CustomerAWSAccountId", &self.customer_aws_account_id),
            ("LicenseArn", &self.license_arn),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                fields.insert(name.into(), value.clone().into());
            }
        }
        if let Some(value) = &self.value {
            let value = match value {
                EntitlementValue::Integer(n) => json!({ "IntegerValue": n }),
                EntitlementValue::Double(x) => json!({ "DoubleValue": x }),
                EntitlementValue::Boolean(b) => json!({ "BooleanValue": b }),
                EntitlementValue::String(s) => json!({ "StringValue": s }),
            };
            fields.insert("Value".into(), value);
        }
        if let Some(expiration) = self.expiration {
            let seconds = expiration
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            fields.insert("ExpirationDate".into(), json!(seconds));
        }
        Value::Object(fields)
    }

    /// Reads an entitlement in the admin API's shape (the fields
    /// `GetEntitlements` answers with; `ExpirationDate` in epoch seconds).
    pub(crate) fn from_json(value: &Value) -> Result<Self, String> {
        const FIELDS: &[&str] = &[
            "ProductCode",
            "Dimension",
            "CustomerIdentifier",
            "CustomerAWSAccountId",
            "LicenseArn",
            "Value",
            "ExpirationDate",
        ];
        let Value::Object(fields) = value else {
            return Err("an entitlement must be a JSON object".into());
        };
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "unknown field {unknown:?}; expected one of {}",
                FIELDS.join(", ")
            ));
        }
        let text = |name: &str| -> Result<Option<String>, String> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(format!("{name} must be a non-empty string")),
            }
        };
        let product = text("ProductCode")?.ok_or("ProductCode is required")?;
        let dimension = text("Dimension")?.ok_or("Dimension is required")?;
        let mut entitlement = Self::new(product, dimension);
        entitlement.customer_identifier = text("CustomerIdentifier")?;
        entitlement.customer_aws_account_id = text("CustomerAWSAccountId")?;
        entitlement.license_arn = text("LicenseArn")?;
        if entitlement.customer_identifier.is_none()
            && entitlement.customer_aws_account_id.is_none()
        {
            return Err("CustomerAWSAccountId or CustomerIdentifier is required".into());
        }
        entitlement.value = match fields.get("Value") {
            None | Some(Value::Null) => None,
            Some(Value::Object(value)) => Some(entitlement_value(value)?),
            Some(_) => return Err("Value must be an object with one of IntegerValue, DoubleValue, BooleanValue, StringValue".into()),
        };
        entitlement.expiration = match fields.get("ExpirationDate") {
            None | Some(Value::Null) => None,
            Some(seconds) => {
                let seconds = seconds
                    .as_f64()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e11)
                    .ok_or("ExpirationDate must be epoch seconds")?;
                Some(UNIX_EPOCH + Duration::from_secs_f64(seconds))
            }
        };
        Ok(entitlement)
    }

    fn matches(&self, filter: &Filter) -> bool {
        let any = |values: &Option<Vec<String>>, field: &Option<String>| {
            values
                .as_ref()
                .is_none_or(|values| field.as_ref().is_some_and(|field| values.contains(field)))
        };
        any(&filter.customer_identifier, &self.customer_identifier)
            && any(
                &filter.customer_aws_account_id,
                &self.customer_aws_account_id,
            )
            && any(&filter.license_arn, &self.license_arn)
            && filter
                .dimension
                .as_ref()
                .is_none_or(|values| values.contains(&self.dimension))
    }
}

fn entitlement_value(value: &Map<String, Value>) -> Result<EntitlementValue, String> {
    let mut members = value.iter();
    let (Some((name, member)), None) = (members.next(), members.next()) else {
        return Err(
            "Value must have exactly one of IntegerValue, DoubleValue, BooleanValue, StringValue"
                .into(),
        );
    };
    match (name.as_str(), member) {
        ("IntegerValue", Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(EntitlementValue::Integer)
            .ok_or_else(|| "IntegerValue must be a 32-bit integer".into()),
        ("DoubleValue", Value::Number(n)) => n
            .as_f64()
            .map(EntitlementValue::Double)
            .ok_or_else(|| "DoubleValue must be a number".into()),
        ("BooleanValue", Value::Bool(b)) => Ok(EntitlementValue::Boolean(*b)),
        ("StringValue", Value::String(s)) => Ok(EntitlementValue::String(s.clone())),
        (name, _) => Err(format!(
            "Value member {name:?} is unknown or of the wrong type"
        )),
    }
}

/// `GetEntitlements`' `Filter`: the values of each key, if given.
#[derive(Default)]
struct Filter {
    customer_identifier: Option<Vec<String>>,
    customer_aws_account_id: Option<Vec<String>>,
    dimension: Option<Vec<String>>,
    license_arn: Option<Vec<String>>,
}

/// A `GetEntitlements` request the service refuses: `InvalidParameterException`.
pub(crate) struct InvalidParameter(pub(crate) String);

const DEFAULT_PAGE: usize = 25;
const MAX_PAGE: u64 = 25;

/// Answers one `GetEntitlements` request body from `entitlements`.
pub(crate) fn get_entitlements(
    entitlements: &[Entitlement],
    body: &Value,
) -> Result<Value, InvalidParameter> {
    let invalid = |message: String| InvalidParameter(message);
    let Value::Object(fields) = body else {
        return Err(invalid("The request body must be a JSON object.".into()));
    };
    let product = match fields.get("ProductCode") {
        Some(Value::String(code)) if !code.is_empty() => code.clone(),
        _ => return Err(invalid("ProductCode is required.".into())),
    };
    let mut filter = Filter::default();
    match fields.get("Filter") {
        None | Some(Value::Null) => {}
        Some(Value::Object(keys)) => {
            for (key, values) in keys {
                let slot = match key.as_str() {
                    "CUSTOMER_IDENTIFIER" => &mut filter.customer_identifier,
                    "CUSTOMER_AWS_ACCOUNT_ID" => &mut filter.customer_aws_account_id,
                    "DIMENSION" => &mut filter.dimension,
                    "LICENSE_ARN" => &mut filter.license_arn,
                    other => return Err(invalid(format!("Filter name {other} is not valid."))),
                };
                let values: Option<Vec<String>> = values.as_array().and_then(|values| {
                    values
                        .iter()
                        .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                        .collect()
                });
                match values {
                    Some(values) if !values.is_empty() => *slot = Some(values),
                    _ => {
                        return Err(invalid(format!(
                            "Filter {key} must be a non-empty list of non-empty strings."
                        )));
                    }
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                "Filter must be a map of filter names to lists of values.".into(),
            ));
        }
    }
    if filter.customer_identifier.is_some() && filter.customer_aws_account_id.is_some() {
        return Err(invalid(
            "CUSTOMER_IDENTIFIER and CUSTOMER_AWS_ACCOUNT_ID are mutually exclusive.".into(),
        ));
    }
    let page = match fields.get("MaxResults") {
        None | Some(Value::Null) => DEFAULT_PAGE,
        Some(n) => match n.as_u64().filter(|n| (1..=MAX_PAGE).contains(n)) {
            Some(n) => usize::try_from(n).unwrap_or(DEFAULT_PAGE),
            None => {
                return Err(invalid(
                    "MaxResults must be an integer from 1 to 25.".into(),
                ));
            }
        },
    };
    let query = fingerprint(&product, fields.get("Filter").filter(|f| !f.is_null()));
    let start = match fields.get("NextToken") {
        None | Some(Value::Null) => 0,
        Some(Value::String(token)) => parse_next_token(token, &query)
            .ok_or_else(|| invalid("NextToken is not valid for this request.".into()))?,
        Some(_) => return Err(invalid("NextToken must be a string.".into())),
    };
    let matching: Vec<&Entitlement> = entitlements
        .iter()
        .filter(|e| e.product_code == product && e.matches(&filter))
        .collect();
    if start > matching.len() {
        return Err(invalid("NextToken is not valid for this request.".into()));
    }
    let end = start.saturating_add(page).min(matching.len());
    let listed: Vec<Value> = matching
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_json())
        .collect();
    let mut answer = Map::new();
    answer.insert("Entitlements".into(), Value::Array(listed));
    if end < matching.len() {
        answer.insert("NextToken".into(), next_token(end, &query).into());
    }
    Ok(Value::Object(answer))
}

/// What a `NextToken` is valid for: the product and the filter.
fn fingerprint(product: &str, filter: Option<&Value>) -> String {
    let filter = filter.map(Value::to_string).unwrap_or_default();
    let digest = Sha256::new()
        .chain_update(product.as_bytes())
        .chain_update([0])
        .chain_update(filter.as_bytes())
        .finalize();
    super::hex(&digest[..8])
}

fn next_token(offset: usize, query: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{query}:{offset}"))
}

fn parse_next_token(token: &str, query: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let rest = text.strip_prefix("v1:")?;
    let (fingerprint, offset) = rest.split_once(':')?;
    (fingerprint == query).then(|| offset.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(answer: &Value) -> Vec<&str> {
        answer["Entitlements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Dimension"].as_str().unwrap())
            .collect()
    }

    fn invalid(entitlements: &[Entitlement], request: Value) -> String {
        match get_entitlements(entitlements, &request) {
            Err(InvalidParameter(message)) => message,
            Ok(answer) => panic!("accepted: {answer}"),
        }
    }

    #[test]
    fn filters_unite_values_and_intersect_keys() {
        let entitlements = [
            Entitlement::new("p", "a").with_customer_aws_account_id("1"),
            Entitlement::new("p", "b").with_customer_aws_account_id("2"),
            Entitlement::new("p", "c").with_customer_aws_account_id("1"),
            Entitlement::new("q", "a").with_customer_aws_account_id("1"),
        ];
        let answer = get_entitlements(
            &entitlements,
            &json!({"ProductCode": "p", "Filter": {
                "CUSTOMER_AWS_ACCOUNT_ID": ["1", "2"], "DIMENSION": ["a", "b"]}}),
        );
        assert_eq!(listed(&answer.ok().unwrap()), ["a", "b"]);
        let answer = get_entitlements(&entitlements, &json!({"ProductCode": "p"}));
        assert_eq!(listed(&answer.ok().unwrap()), ["a", "b", "c"]);
    }

    #[test]
    fn bad_parameters_are_refused_with_what_is_wrong() {
        let none: [Entitlement; 0] = [];
        for (request, expected) in [
            (json!({}), "ProductCode is required"),
            (json!({"ProductCode": "p", "MaxResults": 26}), "MaxResults"),
            (json!({"ProductCode": "p", "MaxResults": 0}), "MaxResults"),
            (
                json!({"ProductCode": "p", "Filter": {"COLOUR": ["red"]}}),
                "COLOUR",
            ),
            (
                json!({"ProductCode": "p", "Filter": {"DIMENSION": []}}),
                "non-empty list",
            ),
            (
                json!({"ProductCode": "p", "Filter": {"DIMENSION": "a"}}),
                "non-empty list",
            ),
            (json!({"ProductCode": "p", "NextToken": "x"}), "NextToken"),
        ] {
            let message = invalid(&none, request.clone());
            assert!(message.contains(expected), "{request}: {message}");
        }
    }

    #[test]
    fn a_next_token_is_valid_only_for_its_own_query() {
        let entitlements: Vec<Entitlement> = (0..3)
            .map(|i| Entitlement::new("p", format!("d{i}")).with_customer_identifier("c"))
            .collect();
        let first = get_entitlements(&entitlements, &json!({"ProductCode": "p", "MaxResults": 2}))
            .ok()
            .unwrap();
        let token = first["NextToken"].as_str().unwrap().to_owned();
        let second = get_entitlements(
            &entitlements,
            &json!({"ProductCode": "p", "MaxResults": 2, "NextToken": token}),
        )
        .ok()
        .unwrap();
        assert_eq!(listed(&second), ["d2"]);
        assert!(second.get("NextToken").is_none());
        let elsewhere = invalid(
            &entitlements,
            json!({"ProductCode": "p", "Filter": {"DIMENSION": ["d0"]}, "NextToken": token}),
        );
        assert!(elsewhere.contains("NextToken"), "{elsewhere}");
        // A filter of `null` is no filter: the token stays valid.
        let with_null = get_entitlements(
            &entitlements,
            &json!({"ProductCode": "p", "Filter": null, "MaxResults": 2, "NextToken": token}),
        );
        assert!(with_null.is_ok());
        // An offset past the end, forged: refused, never an overflow.
        let query = fingerprint("p", None);
        for offset in [4, usize::MAX] {
            let forged = next_token(offset, &query);
            let refused = invalid(
                &entitlements,
                json!({"ProductCode": "p", "MaxResults": 25, "NextToken": forged}),
            );
            assert!(refused.contains("NextToken"), "{offset}: {refused}");
        }
    }
}
