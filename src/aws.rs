//! [`AwsMarketplaceResolver`]: `ResolveCustomer` through `aws-sdk-marketplacemetering`.

use aws_sdk_marketplacemetering::Client;
use aws_sdk_marketplacemetering::config::http::HttpResponse;
use aws_sdk_marketplacemetering::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_marketplacemetering::operation::resolve_customer::{
    ResolveCustomerError, ResolveCustomerOutput,
};

use crate::customer::ResolvedCustomer;
use crate::error::ResolveError;
use crate::resolver::Resolver;
use crate::token::RegistrationToken;

/// Redeems tokens with the Marketplace Metering API's `ResolveCustomer`.
///
/// Build the SDK client as usual: from the environment in production, with an
/// explicit endpoint, region and credentials in tests. The client's own retry and
/// timeout configuration applies inside the layer's
/// [`resolve_timeout`](crate::ResolveCustomerLayer::resolve_timeout).
///
/// ```no_run
/// # async fn run() {
/// use tower_resolve_customer::{AwsMarketplaceResolver, ResolveCustomerLayer};
///
/// // The seller account's credentials and region, from the usual AWS sources.
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let resolver = AwsMarketplaceResolver::from_conf(&config);
/// let layer = ResolveCustomerLayer::new(resolver);
/// # let _ = layer;
/// # }
/// ```
///
/// Errors map as follows: `InvalidTokenException` → [`ResolveError::InvalidToken`],
/// `ExpiredTokenException` → [`ResolveError::ExpiredToken`], `ThrottlingException`
/// → [`ResolveError::Throttled`], `DisabledApiException` →
/// [`ResolveError::ApiDisabled`], `InternalServiceErrorException`, other service
/// errors, transport failures and unparseable responses →
/// [`ResolveError::Unavailable`], SDK timeouts → [`ResolveError::Timeout`].
#[derive(Clone, Debug)]
pub struct AwsMarketplaceResolver {
    client: Client,
}

impl AwsMarketplaceResolver {
    /// Uses an existing client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Builds a client from a shared SDK configuration.
    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(config))
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Resolver for AwsMarketplaceResolver {
    async fn resolve(&self, token: &RegistrationToken) -> Result<ResolvedCustomer, ResolveError> {
        let output = self
            .client
            .resolve_customer()
            .registration_token(token.expose())
            .send()
            .await
            .map_err(map_sdk_error)?;
        customer_from_output(&output)
    }
}

/// Builds the customer from a `ResolveCustomer` answer; the account id and
/// product code are required.
pub(crate) fn customer_from_output(
    output: &ResolveCustomerOutput,
) -> Result<ResolvedCustomer, ResolveError> {
    let (Some(account), Some(product)) = (output.customer_aws_account_id(), output.product_code())
    else {
        return Err(ResolveError::unavailable(
            "ResolveCustomer answered without CustomerAWSAccountId or ProductCode",
        ));
    };
    let mut customer = ResolvedCustomer::new(account, product);
    if let Some(id) = output.customer_identifier() {
        customer = customer.with_customer_identifier(id);
    }
    if let Some(arn) = output.license_arn() {
        customer = customer.with_license_arn(arn);
    }
    if let Some(agreement) = output.metadata().and_then(|m| m.agreement_id()) {
        customer = customer.with_agreement_id(agreement);
    }
    Ok(customer)
}

/// Maps every SDK failure of `ResolveCustomer` to a [`ResolveError`].
pub(crate) fn map_sdk_error(error: SdkError<ResolveCustomerError, HttpResponse>) -> ResolveError {
    match error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            match context.into_err() {
                ResolveCustomerError::InvalidTokenException(_) => ResolveError::InvalidToken,
                ResolveCustomerError::ExpiredTokenException(_) => ResolveError::ExpiredToken,
                ResolveCustomerError::ThrottlingException(_) => ResolveError::Throttled,
                ResolveCustomerError::DisabledApiException(_) => ResolveError::ApiDisabled,
                ResolveCustomerError::InternalServiceErrorException(_) => {
                    ResolveError::unavailable(format!(
                        "InternalServiceErrorException (HTTP {status})"
                    ))
                }
                other => ResolveError::unavailable(format!(
                    "{} (HTTP {status})",
                    other.code().unwrap_or("unrecognised service error")
                )),
            }
        }
        SdkError::TimeoutError(_) => ResolveError::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ResolveError::Timeout,
        SdkError::ResponseError(context) => ResolveError::unavailable(format!(
            "unreadable response (HTTP {})",
            context.raw().status().as_u16()
        )),
        // Dispatch and construction failures: the SDK's error chain (connection
        // refused, no credentials, ...) is what an operator needs.
        other => ResolveError::unavailable(DisplayErrorContext(&other).to_string()),
    }
}
