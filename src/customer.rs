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

/// Every field in one string, back to back: one allocation per customer, which
/// matters when tens of thousands of them are cached.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Fields {
    text: Box<str>,
    /// Where each field ends in `text`.
    ends: [u32; FIELDS],
    /// Bit `i` is set when field `i` is present.
    present: u8,
}

const FIELDS: usize = 5;
const ACCOUNT: usize = 0;
const PRODUCT: usize = 1;
const IDENTIFIER: usize = 2;
const LICENSE: usize = 3;
const AGREEMENT: usize = 4;

impl Fields {
    fn pack(values: [Option<&str>; FIELDS]) -> Self {
        let mut text = String::with_capacity(values.iter().flatten().map(|v| v.len()).sum());
        let mut ends = [0; FIELDS];
        let mut present = 0;
        for (i, value) in values.iter().enumerate() {
            if let Some(value) = value {
                text.push_str(value);
                present |= 1 << i;
            }
            // Lengths come from AWS answers, far below 4 GiB; saturate regardless.
            ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        Self {
            text: text.into_boxed_str(),
            ends,
            present,
        }
    }

    fn get(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize)
    }

    fn all(&self) -> [Option<&str>; FIELDS] {
        std::array::from_fn(|i| self.get(i))
    }
}

impl ResolvedCustomer {
    /// A customer with the two fields AWS always returns.
    pub fn new(
        customer_aws_account_id: impl Into<String>,
        product_code: impl Into<String>,
    ) -> Self {
        let (account, product) = (customer_aws_account_id.into(), product_code.into());
        Self {
            inner: Arc::new(Fields::pack([
                Some(&account),
                Some(&product),
                None,
                None,
                None,
            ])),
        }
    }

    fn with(self, field: usize, value: String) -> Self {
        let mut values = self.inner.all();
        values[field] = Some(&value);
        Self {
            inner: Arc::new(Fields::pack(values)),
        }
    }

    /// Sets `CustomerIdentifier`, the legacy per-product customer id.
    pub fn with_customer_identifier(self, id: impl Into<String>) -> Self {
        self.with(IDENTIFIER, id.into())
    }

    /// Sets `LicenseArn`.
    pub fn with_license_arn(self, arn: impl Into<String>) -> Self {
        self.with(LICENSE, arn.into())
    }

    /// Sets `Metadata.AgreementId`.
    pub fn with_agreement_id(self, id: impl Into<String>) -> Self {
        self.with(AGREEMENT, id.into())
    }

    /// `CustomerAWSAccountId`: the buyer's AWS account id. Use it (with the product
    /// code or license ARN) as the customer's key in new integrations.
    pub fn customer_aws_account_id(&self) -> &str {
        self.inner.get(ACCOUNT).unwrap_or_default()
    }

    /// `ProductCode`: the product the buyer subscribed to.
    pub fn product_code(&self) -> &str {
        self.inner.get(PRODUCT).unwrap_or_default()
    }

    /// `CustomerIdentifier`: the legacy customer id used with `BatchMeterUsage`,
    /// absent for newer integrations.
    pub fn customer_identifier(&self) -> Option<&str> {
        self.inner.get(IDENTIFIER)
    }

    /// `LicenseArn`: the buyer's license in AWS License Manager.
    pub fn license_arn(&self) -> Option<&str> {
        self.inner.get(LICENSE)
    }

    /// `Metadata.AgreementId`: the agreement the subscription belongs to.
    pub fn agreement_id(&self) -> Option<&str> {
        self.inner.get(AGREEMENT)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_in_any_order() {
        let a = ResolvedCustomer::new("123456789012", "prod-1")
            .with_agreement_id("agmt")
            .with_customer_identifier("")
            .with_license_arn("arn:x");
        assert_eq!(a.customer_aws_account_id(), "123456789012");
        assert_eq!(a.product_code(), "prod-1");
        assert_eq!(a.customer_identifier(), Some(""));
        assert_eq!(a.license_arn(), Some("arn:x"));
        assert_eq!(a.agreement_id(), Some("agmt"));
        let b = ResolvedCustomer::new("123456789012", "prod-1")
            .with_license_arn("arn:x")
            .with_customer_identifier("")
            .with_agreement_id("agmt");
        assert_eq!(a, b);
        let plain = ResolvedCustomer::new("1", "p");
        assert_eq!(plain.customer_identifier(), None);
        assert_ne!(
            plain,
            ResolvedCustomer::new("1", "p").with_customer_identifier("")
        );
    }
}
