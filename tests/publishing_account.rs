//! Calling from the seller account that published the product: the resolver
//! assumes a role there with STS `AssumeRole` (which the emulator serves, in
//! the AWS Query protocol), and the emulator, told that only that role may
//! resolve tokens, lets the role's temporary credentials through and turns
//! the application's own credentials away as AWS does.

#![cfg(feature = "test-util")]

mod common;

use aws_config::BehaviorVersion;
use aws_sdk_marketplacemetering::config::Credentials;
use tower_resolve_customer::emulator::MeteringEmulator;
use tower_resolve_customer::{
    AwsMarketplaceResolver, PublishingAccount, RegistrationToken, ResolveError, Resolver,
};

const ROLE: &str = "arn:aws:iam::111122223333:role/MarketplaceRegistration";

/// The application's configuration: its own (long-term) credentials, every
/// AWS call to the emulator.
async fn application_config(emulator: &MeteringEmulator) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint_url())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(
            "AKIDAPPLICATION",
            "application-secret",
            None,
            None,
            "application",
        ))
        .load()
        .await
}

async fn resolve(resolver: &AwsMarketplaceResolver, token: &str) -> Result<String, ResolveError> {
    let token = RegistrationToken::new(token).unwrap();
    resolver
        .resolve(&token)
        .await
        .map(|c| c.customer_aws_account_id().to_owned())
}

#[tokio::test]
async fn the_resolver_assumes_the_publishing_accounts_role() {
    let (emulator, tokens) = common::single_use_emulator(1).await;
    emulator.allow_role(ROLE, Some("registration-app"));
    emulator.require_role(ROLE);
    let config = application_config(&emulator).await;

    // Without the role: the application's own account is turned away, and the
    // token is not redeemed.
    let own = AwsMarketplaceResolver::from_conf(&config);
    let refused = resolve(&own, &tokens[0]).await.unwrap_err();
    assert!(
        matches!(&refused, ResolveError::Unavailable(reason) if reason.contains("AccessDeniedException")),
        "{refused:?}"
    );
    // A wrong external id: the role cannot be assumed.
    let wrong = PublishingAccount::role(ROLE).external_id("someone-else");
    let wrong = AwsMarketplaceResolver::for_publishing_account(&config, &wrong).await;
    let refused = resolve(&wrong, &tokens[0]).await.unwrap_err();
    assert!(
        matches!(refused, ResolveError::Unavailable(_)),
        "{refused:?}"
    );
    assert_eq!(emulator.redemptions_of(&tokens[0]), 0);

    // With it: through, with the role's temporary credentials and their
    // session token, in the region pinned for the Marketplace API.
    let account = PublishingAccount::role(ROLE)
        .external_id("registration-app")
        .session_name("registration")
        .region("us-east-1");
    let publishing = AwsMarketplaceResolver::for_publishing_account(&config, &account).await;
    assert_eq!(
        publishing.client().config().region().map(|r| r.as_ref()),
        Some("us-east-1")
    );
    assert_eq!(
        resolve(&publishing, &tokens[0]).await,
        Ok(common::customer_for(&tokens[0])
            .customer_aws_account_id()
            .to_owned())
    );
    assert_eq!(emulator.redemptions_of(&tokens[0]), 1);
}

/// The entitlement step calls from the publishing account too, always in
/// `us-east-1` (the Entitlement Service's only region), whatever the
/// application's region and the resolver's pinned one.
#[cfg(feature = "entitlements")]
#[tokio::test]
async fn the_entitlement_step_assumes_the_role_in_us_east_1() {
    use tower_resolve_customer::emulator::{Entitlement, EntitlementValue};
    use tower_resolve_customer::{AwsEntitlements, ENTITLEMENT_SERVICE_REGION, EntitlementSource};

    let emulator = MeteringEmulator::start().await.unwrap();
    emulator.allow_role(ROLE, None);
    emulator.require_role(ROLE);
    let customer = common::customer_for("EntitledToken");
    emulator.add_entitlement(
        Entitlement::new(customer.product_code(), "Users")
            .with_customer_aws_account_id(customer.customer_aws_account_id())
            .with_license_arn(customer.license_arn().unwrap())
            .with_value(EntitlementValue::Integer(10)),
    );
    let config = application_config(&emulator).await;

    let own = AwsEntitlements::from_conf(&config);
    assert_eq!(
        own.client().config().region().map(|r| r.as_ref()),
        Some(ENTITLEMENT_SERVICE_REGION)
    );
    let refused = own.entitlements(&customer).await.unwrap_err();
    assert!(
        matches!(&refused, ResolveError::Unavailable(reason) if reason.contains("AccessDeniedException")),
        "{refused:?}"
    );

    let account = PublishingAccount::role(ROLE).region("eu-central-1");
    let publishing = AwsEntitlements::for_publishing_account(&config, &account).await;
    assert_eq!(
        publishing.client().config().region().map(|r| r.as_ref()),
        Some(ENTITLEMENT_SERVICE_REGION)
    );
    let entitlements = publishing.entitlements(&customer).await.unwrap();
    assert_eq!(entitlements.len(), 1);
    assert_eq!(
        entitlements.dimension("Users").next().unwrap().value(),
        Some(&EntitlementValue::Integer(10))
    );
}
