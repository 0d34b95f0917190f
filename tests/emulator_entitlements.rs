//! `GetEntitlements` through the AWS SDK for Rust's Entitlement Service
//! client, which speaks Smithy RPC v2 CBOR (boto3 speaks AWS JSON 1.1 to the
//! same server: `tests/emulator_server.rs`): filters, every value type, the
//! expiration, paging with the SDK's paginator, and the modeled errors.

#![cfg(feature = "test-util")]

use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_marketplaceentitlement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
use aws_sdk_marketplaceentitlement::{Client, Config};
use tower_resolve_customer::emulator::{Entitlement, EntitlementValue, Fault, MeteringEmulator};

fn client(emulator: &MeteringEmulator) -> Client {
    Client::from_conf(
        Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(emulator.endpoint_url())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDRUST",
                "rust-secret",
                None,
                None,
                "test",
            ))
            .retry_config(aws_sdk_marketplaceentitlement::config::retry::RetryConfig::disabled())
            .build(),
    )
}

#[tokio::test]
async fn the_rust_sdk_lists_entitlements_over_rpc_v2_cbor() {
    let emulator = MeteringEmulator::start().await.unwrap();
    let license = "arn:aws:license-manager::210987654321:license:l-rust";
    let expires = UNIX_EPOCH + Duration::from_secs(1_893_456_000);
    for (dimension, value) in [
        ("Users", EntitlementValue::Integer(25)),
        ("Storage", EntitlementValue::Double(1.5)),
        ("Premium", EntitlementValue::Boolean(true)),
        ("Tier", EntitlementValue::String("gold".into())),
    ] {
        emulator.add_entitlement(
            Entitlement::new("prod-rust", dimension)
                .with_customer_aws_account_id("210987654321")
                .with_license_arn(license)
                .with_value(value)
                .with_expiration(expires),
        );
    }
    for i in 0..30 {
        emulator.add_entitlement(
            Entitlement::new("prod-many", format!("D{i:02}")).with_customer_identifier("cust-many"),
        );
    }
    let client = client(&emulator);
    let answer = client
        .get_entitlements()
        .product_code("prod-rust")
        .filter(
            GetEntitlementFilterName::LicenseArn,
            vec![license.to_owned()],
        )
        .send()
        .await
        .expect("entitlements");
    let listed = answer.entitlements();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].dimension(), Some("Users"));
    let value = |i: usize| listed[i].value().expect("a value");
    assert_eq!(value(0).integer_value(), Some(25));
    assert_eq!(value(1).double_value(), Some(1.5));
    assert_eq!(value(2).boolean_value(), Some(true));
    assert_eq!(value(3).string_value(), Some("gold"));
    assert_eq!(value(0).string_value(), None);
    assert_eq!(listed[0].customer_aws_account_id(), Some("210987654321"));
    assert_eq!(listed[0].license_arn(), Some(license));
    assert_eq!(
        listed[0].expiration_date().map(|d| d.secs()),
        Some(1_893_456_000)
    );

    let pages: Vec<usize> = client
        .get_entitlements()
        .product_code("prod-many")
        .max_results(7)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("every page")
        .iter()
        .map(|page| page.entitlements().len())
        .collect();
    assert_eq!(pages, [7, 7, 7, 7, 2]);

    let both = client
        .get_entitlements()
        .product_code("prod-rust")
        .filter(
            GetEntitlementFilterName::CustomerIdentifier,
            vec!["c".into()],
        )
        .filter(
            GetEntitlementFilterName::CustomerAwsAccountId,
            vec!["1".into()],
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(both.is_invalid_parameter_exception(), "{both:?}");

    emulator.inject_entitlement_faults(Fault::Throttle, 1);
    emulator.inject_entitlement_faults(Fault::InternalError, 1);
    let throttled = client
        .get_entitlements()
        .product_code("prod-rust")
        .send()
        .await;
    assert!(
        throttled
            .unwrap_err()
            .into_service_error()
            .is_throttling_exception()
    );
    let internal = client
        .get_entitlements()
        .product_code("prod-rust")
        .send()
        .await;
    assert!(
        internal
            .unwrap_err()
            .into_service_error()
            .is_internal_service_error_exception()
    );
    assert!(emulator.entitlement_calls() >= 9);
}
