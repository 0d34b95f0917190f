//! [`StoredAnswer`]: a definitive answer about a token as a store keeps it,
//! and its text encoding.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::answer::{Answer, Entitled, millis_of, to_millis};
use crate::cache::Outcome;
use crate::customer::ResolvedCustomer;
use crate::entitlements::{Entitlement, EntitlementValue, Entitlements};
use crate::error::ResolveError;
use crate::rejection::Rejection;

/// A definitive answer about a token (a customer, or an invalid or expired
/// token) and how long it stays true: the lifetime to keep it for, when
/// published; the lifetime left, when read.
///
/// A customer carries when its token was first redeemed (for
/// [`Redemption`](crate::Redemption)) and, when the entitlement step is on,
/// the customer's [`Entitlements`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_resolve_customer::{ResolvedCustomer, StoredAnswer, STORED_CUSTOMER_PREFIX};
///
/// let customer = ResolvedCustomer::new("123456789012", "prod-abc123");
/// let answer = StoredAnswer::resolved(customer.clone(), SystemTime::now(), Duration::from_secs(60));
/// let text = answer.encode();
/// assert!(text.starts_with(STORED_CUSTOMER_PREFIX));
/// let read = StoredAnswer::decode(&text, Duration::from_secs(42)).unwrap();
/// assert_eq!(read.customer(), Some(&customer));
/// assert_eq!(read.lifetime(), Duration::from_secs(42));
/// ```
#[derive(Clone, PartialEq)]
pub struct StoredAnswer {
    outcome: Result<ResolvedCustomer, ResolveError>,
    /// When the customer's token was first redeemed (the epoch for refusals),
    /// to the millisecond.
    redeemed_at: SystemTime,
    entitlements: Option<Entitlements>,
    lifetime: Duration,
}

/// What [`StoredAnswer::encode`] starts a customer with, so a store can tell a
/// customer from a refusal without decoding.
pub const STORED_CUSTOMER_PREFIX: &str = "kind=customer&";

/// What [`StoredAnswer::encode`] starts a customer with entitlements with
/// (a longer form of [`STORED_CUSTOMER_PREFIX`]).
pub const STORED_ENTITLED_PREFIX: &str = "kind=customer&entitlements=";

impl StoredAnswer {
    /// A customer whose token was first redeemed at `redeemed_at`, to be
    /// kept for `lifetime`.
    pub fn resolved(
        customer: ResolvedCustomer,
        redeemed_at: SystemTime,
        lifetime: Duration,
    ) -> Self {
        Self {
            outcome: Ok(customer),
            redeemed_at: to_millis(redeemed_at),
            entitlements: None,
            lifetime,
        }
    }

    /// A refusal, to be kept for `lifetime`; `None` for an error that is not
    /// definitive (throttling, an outage, a timeout), which is never stored.
    pub fn refusal(error: ResolveError, lifetime: Duration) -> Option<Self> {
        error.is_definitive().then_some(Self {
            outcome: Err(error),
            redeemed_at: UNIX_EPOCH,
            entitlements: None,
            lifetime,
        })
    }

    /// The same customer with its entitlements.
    pub fn with_entitlements(mut self, entitlements: Entitlements) -> Self {
        if self.outcome.is_ok() {
            self.entitlements = Some(entitlements);
        }
        self
    }

    /// The same customer without its entitlements, if it has them.
    pub(crate) fn without_entitlements(&self) -> Option<Self> {
        self.entitlements.as_ref()?;
        Some(Self {
            entitlements: None,
            ..self.clone()
        })
    }

    /// `outcome`, to be kept for `lifetime`; `None` for an outcome that is not
    /// definitive, which is never stored. Entitlements that failed to arrive
    /// are left out.
    pub(crate) fn new(outcome: &Outcome, lifetime: Duration) -> Option<Self> {
        match outcome {
            Ok(answer) => {
                let stored = Self::resolved(answer.customer.clone(), answer.redeemed_at, lifetime);
                Some(match answer.entitlements() {
                    Some(entitlements) => stored.with_entitlements(entitlements.clone()),
                    None => stored,
                })
            }
            Err(Rejection::Resolve(refusal)) => Self::refusal(refusal.clone(), lifetime),
            Err(_) => None,
        }
    }

    /// The answer as the cache and the protocol carry it: found, not
    /// redeemed here.
    pub(crate) fn to_outcome(&self) -> Outcome {
        match &self.outcome {
            Ok(customer) => Ok(Answer {
                customer: customer.clone(),
                redeemed_at: self.redeemed_at,
                made_here: false,
                entitlements: match &self.entitlements {
                    Some(entitlements) => Entitled::Fetched(entitlements.clone()),
                    None => Entitled::NotFetched,
                },
                true_until: None,
            }),
            Err(refusal) => Err(Rejection::Resolve(refusal.clone())),
        }
    }

    /// Whether publishing `self` may replace `stored`, an unexpired answer:
    /// a refusal never replaces a customer (a late "expired" from a second
    /// redemption must not hide the customer the first one found), and a
    /// customer without entitlements never replaces one with them.
    pub fn may_replace(&self, stored: &StoredAnswer) -> bool {
        !stored.encode().starts_with(self.publish_guard())
    }

    /// The start of a stored answer's text that `self` must not replace:
    /// [`STORED_ENTITLED_PREFIX`] for a customer with entitlements,
    /// [`STORED_CUSTOMER_PREFIX`] otherwise. Stores that keep the text
    /// compare it atomically with what they hold (a script, a condition).
    pub fn publish_guard(&self) -> &'static str {
        if self.entitlements.is_some() {
            STORED_ENTITLED_PREFIX
        } else {
            STORED_CUSTOMER_PREFIX
        }
    }

    /// The customer, if the answer is one.
    pub fn customer(&self) -> Option<&ResolvedCustomer> {
        self.outcome.as_ref().ok()
    }

    /// The refusal, if the answer is one.
    pub fn refused(&self) -> Option<&ResolveError> {
        self.outcome.as_ref().err()
    }

    /// Whether the answer is a customer (not a refusal).
    pub fn is_customer(&self) -> bool {
        self.outcome.is_ok()
    }

    /// When a customer's token was first redeemed (to the millisecond).
    pub fn redeemed_at(&self) -> Option<SystemTime> {
        self.is_customer().then_some(self.redeemed_at)
    }

    /// A customer's entitlements, if they were fetched.
    pub fn entitlements(&self) -> Option<&Entitlements> {
        self.entitlements.as_ref()
    }

    /// How long the answer stays true.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The same answer with another lifetime: a store that reads one back
    /// gives it the lifetime it has left.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The answer as text, for stores that keep strings (the lifetime is not
    /// included: stores keep it as an expiry). A customer starts with
    /// [`STORED_CUSTOMER_PREFIX`].
    pub fn encode(&self) -> String {
        let mut text = form_urlencoded::Serializer::new(String::new());
        match &self.outcome {
            Ok(customer) => {
                text.append_pair("kind", "customer");
                // Right after the kind: stores compare prefixes.
                if let Some(entitlements) = &self.entitlements {
                    text.append_pair("entitlements", &entitlements.len().to_string());
                }
                text.append_pair("account", customer.customer_aws_account_id())
                    .append_pair("product", customer.product_code())
                    .append_pair("redeemed_at", &millis_of(self.redeemed_at).to_string());
                append_present(
                    &mut text,
                    [
                        ("customer_identifier", customer.customer_identifier()),
                        ("license_arn", customer.license_arn()),
                        ("agreement_id", customer.agreement_id()),
                    ],
                );
                if let Some(entitlements) = &self.entitlements {
                    for entitlement in entitlements {
                        text.append_pair("entitlement", &encode_entitlement(entitlement));
                    }
                }
            }
            Err(refusal) => {
                text.append_pair("kind", refusal.kind());
                if let ResolveError::Refused(reason) = refusal {
                    text.append_pair("reason", reason);
                }
            }
        }
        text.finish()
    }

    /// Reads back what [`encode`](Self::encode) wrote, giving it `lifetime`;
    /// `None` for anything else.
    pub fn decode(text: &str, lifetime: Duration) -> Option<Self> {
        let mut fields = Fields::<8>::new([
            "kind",
            "account",
            "product",
            "redeemed_at",
            "customer_identifier",
            "license_arn",
            "agreement_id",
            "reason",
        ]);
        let mut count = None;
        let mut entitlements = Vec::new();
        for (position, (name, value)) in form_urlencoded::parse(text.as_bytes()).enumerate() {
            // The kind first, the count of entitlements next: what stores
            // compare as prefixes must be where they look.
            if (position == 0) != (name == "kind") {
                return None;
            }
            match &*name {
                "entitlements" if position != 1 => return None,
                "entitlements" => {
                    if count.replace(value.parse::<usize>().ok()?).is_some() {
                        return None;
                    }
                }
                "entitlement" => entitlements.push(decode_entitlement(&value)?),
                _ => fields.set(&name, value.into_owned())?,
            }
        }
        // Every field but the kind and the reason belongs to a customer.
        let customer_fields = fields.values[1..7].iter().any(Option::is_some);
        let [
            kind,
            account,
            product,
            redeemed_at,
            identifier,
            license,
            agreement,
            reason,
        ] = fields.values;
        if kind.as_deref() != Some("customer") {
            let refusal = match (kind?.as_str(), reason) {
                ("invalid-token", None) => ResolveError::InvalidToken,
                ("expired-token", None) => ResolveError::ExpiredToken,
                ("refused", Some(reason)) => ResolveError::Refused(reason.into()),
                _ => return None,
            };
            if customer_fields || count.is_some() || !entitlements.is_empty() {
                return None;
            }
            return Self::refusal(refusal, lifetime);
        }
        if reason.is_some() {
            return None;
        }
        let mut customer = ResolvedCustomer::new(account?, product?);
        if let Some(id) = identifier {
            customer = customer.with_customer_identifier(id);
        }
        if let Some(arn) = license {
            customer = customer.with_license_arn(arn);
        }
        if let Some(agreement) = agreement {
            customer = customer.with_agreement_id(agreement);
        }
        let redeemed_at = from_millis(&redeemed_at?)?;
        let answer = Self::resolved(customer, redeemed_at, lifetime);
        match count {
            Some(count) if count == entitlements.len() => {
                Some(answer.with_entitlements(entitlements.into()))
            }
            None if entitlements.is_empty() => Some(answer),
            _ => None,
        }
    }
}

impl fmt::Debug for StoredAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAnswer")
            .field("outcome", &self.outcome)
            .field("redeemed_at", &self.redeemed_at())
            .field("entitlements", &self.entitlements)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Named fields of an encoding, each present at most once.
struct Fields<const N: usize> {
    names: [&'static str; N],
    values: [Option<String>; N],
}

impl<const N: usize> Fields<N> {
    fn new(names: [&'static str; N]) -> Self {
        Self {
            names,
            values: std::array::from_fn(|_| None),
        }
    }

    /// Sets field `name`; `None` for an unknown or repeated field.
    fn set(&mut self, name: &str, value: String) -> Option<()> {
        let i = self.names.iter().position(|n| *n == name)?;
        self.values[i].replace(value).is_none().then_some(())
    }
}

/// Appends the fields that have a value.
fn append_present<const N: usize>(
    text: &mut form_urlencoded::Serializer<'_, String>,
    fields: [(&str, Option<&str>); N],
) {
    for (name, value) in fields {
        if let Some(value) = value {
            text.append_pair(name, value);
        }
    }
}

/// Milliseconds since the epoch, as written by `millis_of`.
fn from_millis(text: &str) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(text.parse().ok()?))
}

fn encode_entitlement(entitlement: &Entitlement) -> String {
    let mut text = form_urlencoded::Serializer::new(String::new());
    text.append_pair("product", entitlement.product_code())
        .append_pair("dimension", entitlement.dimension());
    append_present(
        &mut text,
        [
            ("account", entitlement.customer_aws_account_id()),
            ("customer_identifier", entitlement.customer_identifier()),
            ("license_arn", entitlement.license_arn()),
        ],
    );
    match entitlement.value() {
        Some(EntitlementValue::Integer(n)) => text.append_pair("integer", &n.to_string()),
        Some(EntitlementValue::Double(x)) => text.append_pair("double", &x.to_string()),
        Some(EntitlementValue::Boolean(b)) => text.append_pair("boolean", &b.to_string()),
        Some(EntitlementValue::String(s)) => text.append_pair("string", s),
        None => &mut text,
    };
    if let Some(expiration) = entitlement.expiration() {
        text.append_pair("expires_at", &millis_of(expiration).to_string());
    }
    text.finish()
}

fn decode_entitlement(text: &str) -> Option<Entitlement> {
    let mut fields = Fields::<10>::new([
        "product",
        "dimension",
        "account",
        "customer_identifier",
        "license_arn",
        "integer",
        "double",
        "boolean",
        "string",
        "expires_at",
    ]);
    for (name, value) in form_urlencoded::parse(text.as_bytes()) {
        fields.set(&name, value.into_owned())?;
    }
    let [
        product,
        dimension,
        account,
        identifier,
        license,
        integer,
        double,
        boolean,
        string,
        expires_at,
    ] = fields.values;
    let mut entitlement = Entitlement::new(product?, dimension?);
    entitlement.customer_aws_account_id = account;
    entitlement.customer_identifier = identifier;
    entitlement.license_arn = license;
    entitlement.value = match (integer, double, boolean, string) {
        (None, None, None, None) => None,
        (Some(n), None, None, None) => Some(EntitlementValue::Integer(n.parse().ok()?)),
        (None, Some(x), None, None) => Some(EntitlementValue::Double(x.parse().ok()?)),
        (None, None, Some(b), None) => Some(EntitlementValue::Boolean(b.parse().ok()?)),
        (None, None, None, Some(s)) => Some(EntitlementValue::String(s)),
        _ => return None,
    };
    if let Some(millis) = expires_at {
        entitlement.expiration = Some(from_millis(&millis)?);
    }
    Some(entitlement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redeemed() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)
    }

    #[test]
    fn answers_round_trip_through_their_encoding() {
        let full = ResolvedCustomer::new("123456789012", "prod-abc")
            .with_customer_identifier("cust-1")
            .with_license_arn("arn:aws:license-manager::1:license:l-1")
            .with_agreement_id("agmt-1");
        let odd = ResolvedCustomer::new("210987654321", "prod-\"quoted\"\n&kind=x=");
        let entitlements: Entitlements = [
            Entitlement::new("prod-abc", "Users")
                .with_customer_aws_account_id("123456789012")
                .with_license_arn("arn:aws:license-manager::1:license:l-1")
                .with_value(EntitlementValue::Integer(-25))
                .with_expiration(redeemed() + Duration::from_secs(86_400)),
            Entitlement::new("prod-abc", "Storage&=").with_value(EntitlementValue::Double(0.1)),
            Entitlement::new("prod-abc", "Premium").with_value(EntitlementValue::Boolean(true)),
            Entitlement::new("prod-abc", "Tier")
                .with_customer_identifier("cust-1")
                .with_value(EntitlementValue::String("gold & silver=1".into())),
            Entitlement::new("prod-abc", "Plain"),
        ]
        .into_iter()
        .collect();
        let lifetime = Duration::from_millis(1234);
        let answers = [
            StoredAnswer::resolved(full.clone(), redeemed(), lifetime),
            StoredAnswer::resolved(full, redeemed(), lifetime).with_entitlements(entitlements),
            StoredAnswer::resolved(odd.clone(), redeemed(), lifetime)
                .with_entitlements(Entitlements::none()),
            StoredAnswer::refusal(ResolveError::InvalidToken, lifetime).unwrap(),
            StoredAnswer::refusal(ResolveError::ExpiredToken, lifetime).unwrap(),
            StoredAnswer::refusal(ResolveError::refused("barred & banned=yes"), lifetime).unwrap(),
        ];
        for answer in answers {
            let text = answer.encode();
            assert_eq!(
                text.starts_with(STORED_CUSTOMER_PREFIX),
                answer.is_customer()
            );
            assert_eq!(
                text.starts_with(STORED_ENTITLED_PREFIX),
                answer.entitlements().is_some()
            );
            let read = StoredAnswer::decode(&text, lifetime).expect(&text);
            assert_eq!(read, answer);
            assert_eq!(read.redeemed_at(), answer.customer().map(|_| redeemed()));
        }
        for junk in [
            "",
            "kind=throttled",
            "kind=customer&account=1&product=p",
            "kind=customer&account=1&redeemed_at=1",
            "kind=customer&account=1&product=p&redeemed_at=1&account=2",
            "kind=customer&account=1&product=p&redeemed_at=x",
            "kind=customer&account=1&product=p&redeemed_at=1&extra=1",
            "kind=customer&account=1&product=p&redeemed_at=1&entitlements=1",
            "kind=customer&account=1&product=p&redeemed_at=1&entitlement=product%3Dp%26dimension%3Dd",
            "kind=customer&account=1&product=p&redeemed_at=1&entitlements=1&entitlement=dimension%3Dd",
            "kind=customer&account=1&product=p&redeemed_at=1&entitlements=1&entitlement=product%3Dp%26dimension%3Dd%26integer%3D1%26boolean%3Dtrue",
            "kind=expired-token&account=1",
            "kind=expired-token&redeemed_at=1",
            "account=1&kind=customer&product=p&redeemed_at=1",
            "kind=customer&account=1&product=p&redeemed_at=1&entitlements=0",
            "kind=refused",
            "kind=invalid-token&reason=x",
        ] {
            assert_eq!(StoredAnswer::decode(junk, lifetime), None, "{junk}");
        }
    }

    #[test]
    fn what_may_replace_what() {
        let lifetime = Duration::from_secs(1);
        let customer = ResolvedCustomer::new("123456789012", "prod-abc");
        let partial = StoredAnswer::resolved(customer.clone(), redeemed(), lifetime);
        let entitled = partial.clone().with_entitlements(Entitlements::none());
        let expired = StoredAnswer::refusal(ResolveError::ExpiredToken, lifetime).unwrap();
        let invalid = StoredAnswer::refusal(ResolveError::InvalidToken, lifetime).unwrap();
        let may = |new: &StoredAnswer, stored: &StoredAnswer| new.may_replace(stored);
        assert!(may(&partial, &expired) && may(&entitled, &expired) && may(&invalid, &expired));
        assert!(may(&entitled, &partial));
        assert!(!may(&expired, &partial) && !may(&expired, &entitled));
        assert!(!may(&partial, &partial) && !may(&partial, &entitled));
        assert!(!may(&entitled, &entitled));
    }

    #[test]
    fn transient_outcomes_are_never_stored() {
        for transient in [
            Rejection::Resolve(ResolveError::Throttled),
            Rejection::Resolve(ResolveError::Timeout),
            Rejection::Resolve(ResolveError::unavailable("down")),
            Rejection::Overloaded {
                retry_after: Duration::from_secs(1),
            },
            Rejection::Internal,
        ] {
            assert!(StoredAnswer::new(&Err(transient), Duration::from_secs(1)).is_none());
        }
    }
}
