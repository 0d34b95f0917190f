//! [`Entitlement`]: one line of a buyer's entitlements, as `GetEntitlements`
//! answers it.

use std::time::SystemTime;

/// The value of an entitlement, as the Entitlement Service types it.
#[derive(Debug, Clone, PartialEq)]
pub enum EntitlementValue {
    /// `IntegerValue`: a quantity (users, seats, ...).
    Integer(i32),
    /// `DoubleValue`.
    Double(f64),
    /// `BooleanValue`: a feature that is on or off.
    Boolean(bool),
    /// `StringValue`.
    String(String),
}

/// What a buyer may use of one dimension of a product: an `Entitlement` of
/// the AWS Marketplace Entitlement Service.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_resolve_customer::{Entitlement, EntitlementValue};
///
/// let seats = Entitlement::new("prod-abc123", "Users")
///     .with_customer_aws_account_id("123456789012")
///     .with_value(EntitlementValue::Integer(25))
///     .with_expiration(SystemTime::now() + Duration::from_secs(3600));
/// assert_eq!(seats.dimension(), "Users");
/// assert_eq!(seats.value(), Some(&EntitlementValue::Integer(25)));
/// assert!(seats.is_current_at(SystemTime::now()));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Entitlement {
    pub(crate) product_code: String,
    pub(crate) dimension: String,
    pub(crate) customer_identifier: Option<String>,
    pub(crate) customer_aws_account_id: Option<String>,
    pub(crate) license_arn: Option<String>,
    pub(crate) value: Option<EntitlementValue>,
    pub(crate) expiration: Option<SystemTime>,
}

impl Entitlement {
    /// An entitlement to `dimension` of `product_code`, with no customer,
    /// value or expiration yet.
    pub fn new(product_code: impl Into<String>, dimension: impl Into<String>) -> Self {
        Self {
            product_code: product_code.into(),
            dimension: dimension.into(),
            customer_identifier: None,
            customer_aws_account_id: None,
            license_arn: None,
            value: None,
            expiration: None,
        }
    }

    /// Sets the buyer's AWS account.
    pub fn with_customer_aws_account_id(mut self, account: impl Into<String>) -> Self {
        self.customer_aws_account_id = Some(account.into());
        self
    }

    /// Sets the buyer's `CustomerIdentifier` (older listings).
    pub fn with_customer_identifier(mut self, id: impl Into<String>) -> Self {
        self.customer_identifier = Some(id.into());
        self
    }

    /// Sets the license the entitlement belongs to.
    pub fn with_license_arn(mut self, arn: impl Into<String>) -> Self {
        self.license_arn = Some(arn.into());
        self
    }

    /// Sets the entitlement's value.
    pub fn with_value(mut self, value: EntitlementValue) -> Self {
        self.value = Some(value);
        self
    }

    /// Sets when the entitlement ends.
    pub fn with_expiration(mut self, expiration: SystemTime) -> Self {
        self.expiration = Some(expiration);
        self
    }

    /// `ProductCode`.
    pub fn product_code(&self) -> &str {
        &self.product_code
    }

    /// `Dimension`: what is entitled (a pricing dimension's API name).
    pub fn dimension(&self) -> &str {
        &self.dimension
    }

    /// `CustomerIdentifier`, for older listings.
    pub fn customer_identifier(&self) -> Option<&str> {
        self.customer_identifier.as_deref()
    }

    /// `CustomerAWSAccountId`.
    pub fn customer_aws_account_id(&self) -> Option<&str> {
        self.customer_aws_account_id.as_deref()
    }

    /// `LicenseArn`: the license (one of the buyer's agreements) this
    /// entitlement belongs to.
    pub fn license_arn(&self) -> Option<&str> {
        self.license_arn.as_deref()
    }

    /// `Value`: how much of the dimension, absent for a plain "entitled".
    pub fn value(&self) -> Option<&EntitlementValue> {
        self.value.as_ref()
    }

    /// `ExpirationDate`: when the entitlement ends, if it does.
    pub fn expiration(&self) -> Option<SystemTime> {
        self.expiration
    }

    /// Whether the entitlement has not ended at `now`.
    pub fn is_current_at(&self, now: SystemTime) -> bool {
        self.expiration.is_none_or(|end| now < end)
    }
}
