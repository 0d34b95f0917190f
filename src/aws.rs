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
/// [`resolve_timeout`](crate::ResolutionsBuilder::resolve_timeout).
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

    /// Builds a client that calls from the seller account that published the
    /// product: `config`'s credentials assume `account`'s role (STS
    /// `AssumeRole`, refreshed before they expire), and the Marketplace API
    /// is called in `account`'s region if one is set.
    ///
    /// ```no_run
    /// # async fn run() {
    /// use tower_resolve_customer::{AwsMarketplaceResolver, PublishingAccount};
    ///
    /// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    /// let account = PublishingAccount::role("arn:aws:iam::111122223333:role/MarketplaceRegistration")
    ///     .external_id("registration-app")
    ///     .region("us-east-1");
    /// let resolver = AwsMarketplaceResolver::for_publishing_account(&config, &account).await;
    /// # let _ = resolver;
    /// # }
    /// ```
    pub async fn for_publishing_account(
        config: &aws_config::SdkConfig,
        account: &PublishingAccount,
    ) -> Self {
        let credentials = account.credentials_provider(config).await;
        let mut builder = aws_sdk_marketplacemetering::config::Builder::from(config)
            .credentials_provider(credentials);
        if let Some(region) = &account.region {
            builder = builder.region(aws_config::Region::new(region.clone()));
        }
        Self::new(Client::from_conf(builder.build()))
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The seller account that published the product, which alone may resolve
/// its registration tokens, reached by assuming a role in it: see
/// [`AwsMarketplaceResolver::for_publishing_account`] and the README's
/// "Calling from the publishing account".
#[derive(Clone, Debug)]
pub struct PublishingAccount {
    role_arn: String,
    external_id: Option<String>,
    session_name: String,
    region: Option<String>,
}

impl PublishingAccount {
    /// The role to assume, in the publishing account.
    pub fn role(role_arn: impl Into<String>) -> Self {
        Self {
            role_arn: role_arn.into(),
            external_id: None,
            session_name: "tower-resolve-customer".into(),
            region: None,
        }
    }

    /// The external id the role's trust policy asks for.
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(id.into());
        self
    }

    /// The role session's name, as CloudTrail shows it (default
    /// `tower-resolve-customer`).
    pub fn session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = name.into();
        self
    }

    /// The region to call the Marketplace APIs in, whatever the application's
    /// (default: the SDK configuration's).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Credentials of the role, assumed with `config`'s credentials and
    /// refreshed before they expire.
    pub(crate) async fn credentials_provider(
        &self,
        config: &aws_config::SdkConfig,
    ) -> aws_config::sts::AssumeRoleProvider {
        let mut builder = aws_config::sts::AssumeRoleProvider::builder(&self.role_arn)
            .session_name(&self.session_name)
            .configure(config);
        if let Some(id) = &self.external_id {
            builder = builder.external_id(id);
        }
        builder.build().await
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
    map_failure(error, |error, status| match error {
        ResolveCustomerError::InvalidTokenException(_) => ResolveError::InvalidToken,
        ResolveCustomerError::ExpiredTokenException(_) => ResolveError::ExpiredToken,
        ResolveCustomerError::ThrottlingException(_) => ResolveError::Throttled,
        ResolveCustomerError::DisabledApiException(_) => ResolveError::ApiDisabled,
        ResolveCustomerError::InternalServiceErrorException(_) => {
            ResolveError::unavailable(format!("InternalServiceErrorException (HTTP {status})"))
        }
        other => unmodeled(&other, status),
    })
}

/// Maps an SDK failure of any Marketplace operation: the service's own
/// errors by `service` (given the HTTP status), the rest (timeouts,
/// transport, unreadable answers) alike for every operation.
pub(crate) fn map_failure<E>(
    error: SdkError<E, HttpResponse>,
    service: impl FnOnce(E, u16) -> ResolveError,
) -> ResolveError
where
    E: std::error::Error + Send + Sync + 'static,
{
    match error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            service(context.into_err(), status)
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

/// A service error this crate does not model (`InternalServiceErrorException`,
/// missing permissions, ...): unavailable, with its code and status.
pub(crate) fn unmodeled(error: &impl ProvideErrorMetadata, status: u16) -> ResolveError {
    ResolveError::unavailable(format!(
        "{} (HTTP {status})",
        error.code().unwrap_or("unrecognised service error")
    ))
}

#[cfg(test)]
mod tests {
    use aws_sdk_marketplacemetering::error::ErrorMetadata;
    use aws_sdk_marketplacemetering::operation::resolve_customer::ResolveCustomerOutput;
    use aws_sdk_marketplacemetering::types::Metadata;
    use aws_sdk_marketplacemetering::types::error::{
        DisabledApiException, ExpiredTokenException, InternalServiceErrorException,
        InvalidTokenException, ThrottlingException,
    };
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    fn service(error: ResolveCustomerError, status: u16) -> ResolveError {
        map_sdk_error(SdkError::service_error(error, response(status)))
    }

    #[test]
    fn maps_every_modeled_exception() {
        use ResolveCustomerError as E;
        let cases = [
            (
                E::InvalidTokenException(InvalidTokenException::builder().build()),
                400,
                ResolveError::InvalidToken,
            ),
            (
                E::ExpiredTokenException(ExpiredTokenException::builder().build()),
                400,
                ResolveError::ExpiredToken,
            ),
            (
                E::ThrottlingException(ThrottlingException::builder().build()),
                400,
                ResolveError::Throttled,
            ),
            (
                E::DisabledApiException(DisabledApiException::builder().build()),
                400,
                ResolveError::ApiDisabled,
            ),
        ];
        for (error, status, expected) in cases {
            assert_eq!(service(error, status), expected);
        }
        let internal = service(
            E::InternalServiceErrorException(InternalServiceErrorException::builder().build()),
            500,
        );
        assert_eq!(
            internal,
            ResolveError::unavailable("InternalServiceErrorException (HTTP 500)")
        );
        assert!(internal.is_retryable());
    }

    #[test]
    fn unmodeled_service_errors_are_unavailable_with_their_code() {
        let error = ResolveCustomerError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("User is not authorized")
                .build(),
        );
        assert_eq!(
            service(error, 400),
            ResolveError::unavailable("AccessDeniedException (HTTP 400)")
        );
        let error = ResolveCustomerError::generic(ErrorMetadata::builder().build());
        assert!(
            matches!(service(error, 502), ResolveError::Unavailable(m) if m.contains("HTTP 502"))
        );
    }

    #[test]
    fn timeouts_and_transport_failures() {
        assert_eq!(
            map_sdk_error(SdkError::timeout_error("operation timeout")),
            ResolveError::Timeout
        );
        assert_eq!(
            map_sdk_error(SdkError::dispatch_failure(ConnectorError::timeout(
                "read timeout".into()
            ))),
            ResolveError::Timeout
        );
        let refused = map_sdk_error(SdkError::dispatch_failure(ConnectorError::io(
            "connection refused".into(),
        )));
        assert!(
            matches!(&refused, ResolveError::Unavailable(m) if m.contains("connection refused")),
            "{refused:?}"
        );
        let unreadable = map_sdk_error(SdkError::response_error("bad json", response(200)));
        assert_eq!(
            unreadable,
            ResolveError::unavailable("unreadable response (HTTP 200)")
        );
        let unbuilt = map_sdk_error(SdkError::construction_failure("no credentials"));
        assert!(matches!(&unbuilt, ResolveError::Unavailable(m) if m.contains("no credentials")));
    }

    #[test]
    fn output_to_customer() {
        let output = ResolveCustomerOutput::builder()
            .customer_aws_account_id("123456789012")
            .product_code("prod-1")
            .customer_identifier("cust-1")
            .license_arn("arn:aws:license-manager::1:license:l-1")
            .metadata(Metadata::builder().agreement_id("agmt-1").build())
            .build();
        let customer = customer_from_output(&output).unwrap();
        assert_eq!(customer.customer_aws_account_id(), "123456789012");
        assert_eq!(customer.product_code(), "prod-1");
        assert_eq!(customer.customer_identifier(), Some("cust-1"));
        assert_eq!(
            customer.license_arn(),
            Some("arn:aws:license-manager::1:license:l-1")
        );
        assert_eq!(customer.agreement_id(), Some("agmt-1"));

        let minimal = ResolveCustomerOutput::builder()
            .customer_aws_account_id("123456789012")
            .product_code("prod-1")
            .build();
        assert_eq!(customer_from_output(&minimal).unwrap().license_arn(), None);

        let broken = ResolveCustomerOutput::builder()
            .product_code("prod-1")
            .build();
        assert!(matches!(
            customer_from_output(&broken),
            Err(ResolveError::Unavailable(_))
        ));
    }
}
