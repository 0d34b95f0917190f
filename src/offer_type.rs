//! [`OfferType`]: the kind of offer the buyer accepted, as the Marketplace
//! form says it.

use std::fmt;

/// The form field AWS Marketplace adds to the registration form for some
/// offers: `x-amzn-marketplace-offer-type`.
pub const OFFER_TYPE_FIELD: &str = "x-amzn-marketplace-offer-type";

/// The offer the buyer accepted, from the registration form's
/// [`OFFER_TYPE_FIELD`], put in the request's extensions next to the
/// [`ResolvedCustomer`](crate::ResolvedCustomer) when the form has it (AWS
/// Marketplace sends it for free trials; a form without it is a standard
/// offer). Read in the same pass over the body as the token.
///
/// ```
/// use tower_resolve_customer::OfferType;
///
/// assert_eq!(OfferType::from_field("free-trial"), OfferType::FreeTrial);
/// assert!(OfferType::from_field("free-trial").is_free_trial());
/// // A value AWS may add later is passed through, never refused.
/// let other = OfferType::from_field("private-offer");
/// assert_eq!(other.as_str(), "private-offer");
/// assert!(!other.is_free_trial());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OfferType {
    /// `free-trial`.
    FreeTrial,
    /// Any other value, as the form had it.
    Other(String),
}

impl OfferType {
    /// The offer a form field's (decoded) value names.
    pub fn from_field(value: &str) -> Self {
        match value {
            "free-trial" => Self::FreeTrial,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The value as the form had it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::FreeTrial => "free-trial",
            Self::Other(value) => value,
        }
    }

    /// Whether the buyer accepted a free trial.
    pub fn is_free_trial(&self) -> bool {
        matches!(self, Self::FreeTrial)
    }
}

impl fmt::Display for OfferType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
