//! [`AwsEntitlements`]: `GetEntitlements` through
//! `aws-sdk-marketplaceentitlement`.

use std::time::SystemTime;

use aws_sdk_marketplaceentitlement::Client;
use aws_sdk_marketplaceentitlement::operation::get_entitlements::GetEntitlementsError;
use aws_sdk_marketplaceentitlement::types::{self, GetEntitlementFilterName};

use super::{Entitlement, EntitlementSource, EntitlementValue, Entitlements};
use crate::aws::{PublishingAccount, map_failure, unmodeled};
use crate::customer::ResolvedCustomer;
use crate::error::ResolveError;

/// The only region the AWS Marketplace Entitlement Service runs in.
pub const ENTITLEMENT_SERVICE_REGION: &str = "us-east-1";

/// The most pages of `GetEntitlements` one customer is read for (25
/// entitlements each): past it, the answer is
/// [`ResolveError::Unavailable`] rather than a partial list.
const MAX_PAGES: usize = 200;

/// Fetches a resolved customer's entitlements with the AWS Marketplace
/// Entitlement Service's `GetEntitlements`, for
/// [`ResolutionsBuilder::entitlements`](crate::ResolutionsBuilder::entitlements).
///
/// It asks for the resolved product, filtered by the customer's
/// `LicenseArn` when `ResolveCustomer` returned one (a buyer may hold
/// several concurrent agreements for one product: only this registration's
/// license counts), otherwise by `CustomerAWSAccountId`, and reads every page.
///
/// The Entitlement Service runs in `us-east-1` only: [`from_conf`](Self::from_conf)
/// and [`for_publishing_account`](Self::for_publishing_account) pin that
/// region whatever the application's. The caller needs
/// `aws-marketplace:GetEntitlements`.
///
/// Errors map as for `ResolveCustomer`: `ThrottlingException` →
/// [`ResolveError::Throttled`], `InternalServiceErrorException`,
/// `InvalidParameterException`, other service errors, transport failures
/// and unreadable answers → [`ResolveError::Unavailable`], SDK timeouts →
/// [`ResolveError::Timeout`]: all retryable, none remembered.
///
/// ```no_run
/// # async fn run() {
/// use tower_resolve_customer::{AwsEntitlements, AwsMarketplaceResolver, EntitlementPolicy, Resolutions};
///
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let resolutions = Resolutions::builder(AwsMarketplaceResolver::from_conf(&config))
///     .entitlements(AwsEntitlements::from_conf(&config), EntitlementPolicy::Required)
///     .build();
/// # let _ = resolutions;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AwsEntitlements {
    client: Client,
}

impl AwsEntitlements {
    /// Uses an existing client, as configured (its region included).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Builds a client from a shared SDK configuration, in
    /// [`ENTITLEMENT_SERVICE_REGION`].
    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        Self::new(Client::from_conf(Self::builder(config).build()))
    }

    /// Builds a client that calls from the seller account that published the
    /// product, like
    /// [`AwsMarketplaceResolver::for_publishing_account`](crate::AwsMarketplaceResolver::for_publishing_account),
    /// in [`ENTITLEMENT_SERVICE_REGION`] (the account's region setting, for
    /// the Metering API, does not apply).
    pub async fn for_publishing_account(
        config: &aws_config::SdkConfig,
        account: &PublishingAccount,
    ) -> Self {
        let credentials = account.credentials_provider(config).await;
        let builder = Self::builder(config).credentials_provider(credentials);
        Self::new(Client::from_conf(builder.build()))
    }

    fn builder(config: &aws_config::SdkConfig) -> aws_sdk_marketplaceentitlement::config::Builder {
        aws_sdk_marketplaceentitlement::config::Builder::from(config)
            .region(aws_config::Region::from_static(ENTITLEMENT_SERVICE_REGION))
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl EntitlementSource for AwsEntitlements {
    async fn entitlements(
        &self,
        customer: &ResolvedCustomer,
    ) -> Result<Entitlements, ResolveError> {
        let (filter, value) = match customer.license_arn() {
            Some(arn) => (GetEntitlementFilterName::LicenseArn, arn),
            None => (
                GetEntitlementFilterName::CustomerAwsAccountId,
                customer.customer_aws_account_id(),
            ),
        };
        let mut entitlements = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .get_entitlements()
                .product_code(customer.product_code())
                .filter(filter.clone(), vec![value.to_owned()])
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|error| {
                    map_failure(error, |error, status| match error {
                        GetEntitlementsError::ThrottlingException(_) => ResolveError::Throttled,
                        other => unmodeled(&other, status),
                    })
                })?;
            entitlements.extend(page.entitlements().iter().filter_map(entitlement_from));
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(entitlements.into()),
            }
        }
        Err(ResolveError::unavailable(format!(
            "GetEntitlements answered more than {MAX_PAGES} pages"
        )))
    }
}

/// The SDK's entitlement as the crate's; `None` without a product code or
/// dimension, which AWS always sends.
fn entitlement_from(sdk: &types::Entitlement) -> Option<Entitlement> {
    let mut entitlement = Entitlement::new(sdk.product_code()?, sdk.dimension()?);
    entitlement.customer_aws_account_id = sdk.customer_aws_account_id().map(str::to_owned);
    entitlement.customer_identifier = sdk.customer_identifier().map(str::to_owned);
    entitlement.license_arn = sdk.license_arn().map(str::to_owned);
    entitlement.value = sdk.value().and_then(|value| {
        value
            .integer_value()
            .map(EntitlementValue::Integer)
            .or_else(|| value.double_value().map(EntitlementValue::Double))
            .or_else(|| value.boolean_value().map(EntitlementValue::Boolean))
            .or_else(|| {
                value
                    .string_value()
                    .map(|s| EntitlementValue::String(s.to_owned()))
            })
    });
    entitlement.expiration = sdk
        .expiration_date()
        .and_then(|date| SystemTime::try_from(*date).ok());
    Some(entitlement)
}
