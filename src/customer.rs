//! The buyer a registration token resolved to.

use std::fmt;
use std::sync::Arc;

/// Who the buyer is, as `ResolveCustomer` answered.
///
/// Inserted into the request's extensions by the layer. Cloning is an atomic
/// reference-count increment.
///
/// `CustomerAWSAccountId` and `ProductCode` are always returned by AWS. The
/// others may be absent: integrations onboarded after 2024 receive no
/// `CustomerIdentifier`, and older API versions return no `LicenseArn` or
/// agreement.
///
/// ```
/// use tower_resolve_customer::ResolvedCustomer;
///
/// let customer = ResolvedCustomer::new("123456789012", "prod-abc123")
///     .with_license_arn("arn:aws:license-manager::123456789012:license:l-1")
///     .with_agreement_id("agmt-1");
/// assert_eq!(customer.customer_aws_account_id(), "123456789012");
/// assert_eq!(customer.product_code(), "prod-abc123");
/// assert_eq!(customer.customer_identifier(), None);
/// assert_eq!(customer.agreement_id(), Some("agmt-1"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResolvedCustomer {
    inner: Arc<Fields>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Fields {
    customer_aws_account_id: Box<str>,
    product_code: Box<str>,
    customer_identifier: Option<Box<str>>,
    license_arn: Option<Box<str>>,
    agreement_id: Option<Box<str>>,
}

impl ResolvedCustomer {
    /// A customer with the two fields AWS always returns.
    pub fn new(
        customer_aws_account_id: impl Into<String>,
        product_code: impl Into<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Fields {
                customer_aws_account_id: customer_aws_account_id.into().into_boxed_str(),
                product_code: product_code.into().into_boxed_str(),
                customer_identifier: None,
                license_arn: None,
                agreement_id: None,
            }),
        }
    }

    /// Sets `CustomerIdentifier`, the legacy per-product customer id.
    pub fn with_customer_identifier(mut self, id: impl Into<String>) -> Self {
        self.fields_mut().customer_identifier = Some(id.into().into_boxed_str());
        self
    }

    /// Sets `LicenseArn`.
    pub fn with_license_arn(mut self, arn: impl Into<String>) -> Self {
        self.fields_mut().license_arn = Some(arn.into().into_boxed_str());
        self
    }

    /// Sets `Metadata.AgreementId`.
    pub fn with_agreement_id(mut self, id: impl Into<String>) -> Self {
        self.fields_mut().agreement_id = Some(id.into().into_boxed_str());
        self
    }

    fn fields_mut(&mut self) -> &mut Fields {
        Arc::make_mut(&mut self.inner)
    }

    /// `CustomerAWSAccountId`: the buyer's AWS account id. Use it (with the product
    /// code or license ARN) as the customer's key in new integrations.
    pub fn customer_aws_account_id(&self) -> &str {
        &self.inner.customer_aws_account_id
    }

    /// `ProductCode`: the product the buyer subscribed to.
    pub fn product_code(&self) -> &str {
        &self.inner.product_code
    }

    /// `CustomerIdentifier`: the legacy customer id used with `BatchMeterUsage`,
    /// absent for newer integrations.
    pub fn customer_identifier(&self) -> Option<&str> {
        self.inner.customer_identifier.as_deref()
    }

    /// `LicenseArn`: the buyer's license in AWS License Manager.
    pub fn license_arn(&self) -> Option<&str> {
        self.inner.license_arn.as_deref()
    }

    /// `Metadata.AgreementId`: the agreement the subscription belongs to.
    pub fn agreement_id(&self) -> Option<&str> {
        self.inner.agreement_id.as_deref()
    }
}

impl fmt::Debug for ResolvedCustomer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedCustomer")
            .field("customer_aws_account_id", &self.customer_aws_account_id())
            .field("product_code", &self.product_code())
            .field("customer_identifier", &self.customer_identifier())
            .field("license_arn", &self.license_arn())
            .field("agreement_id", &self.agreement_id())
            .finish()
    }
}
