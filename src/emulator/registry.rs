//! What the emulator knows: registered tokens, scripted faults, counters.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::entitlements::Entitlement;
use super::signature::Secret;
use super::sts::{Issued, Role};
use crate::customer::ResolvedCustomer;

/// How often a registered token may be redeemed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedemptionPolicy {
    /// Every redemption until the token expires succeeds, as the AWS Marketplace
    /// seller guide describes. The default.
    #[default]
    ReusableUntilExpiry,
    /// The first redemption succeeds; later ones get `ExpiredTokenException`, as
    /// the `ResolveCustomer` API reference describes for a resubmitted token.
    SingleUse,
}

/// A failure the emulator produces instead of (or before) answering a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `ThrottlingException`, HTTP 400.
    Throttle,
    /// `InternalServiceErrorException`, HTTP 500.
    InternalError,
    /// `DisabledApiException`, HTTP 400.
    DisabledApi,
    /// Waits this long, then answers normally.
    Latency(Duration),
    /// Closes the connection without answering.
    CloseConnection,
    /// Answers HTTP 200 with a body that is not JSON.
    GarbageBody,
}

struct Registration {
    customer: ResolvedCustomer,
    expires_at: Instant,
    redeemed: bool,
}

/// An operation the emulator serves, with faults of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    ResolveCustomer = 0,
    GetEntitlements = 1,
}

impl Operation {
    pub(crate) const ALL: [Operation; 2] = [Self::ResolveCustomer, Self::GetEntitlements];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ResolveCustomer => "ResolveCustomer",
            Self::GetEntitlements => "GetEntitlements",
        }
    }
}

/// What a `ResolveCustomer` call is answered with.
pub(crate) enum Verdict {
    Resolved(ResolvedCustomer),
    InvalidToken,
    ExpiredToken,
}

#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    /// Who may call, and how: configuration, kept across resets.
    access: Mutex<Access>,
}

#[derive(Default)]
struct Access {
    /// Access keys and their secrets; empty: any well-formed signature.
    accepted: HashMap<String, String>,
    /// Roles that may be assumed.
    roles: HashMap<String, Role>,
    /// Temporary credentials issued by `AssumeRole`, by access key.
    issued: HashMap<String, Issued>,
    /// Marketplace calls must be signed with credentials of this role.
    required_role: Option<String>,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, Registration>,
    policy: RedemptionPolicy,
    /// Faults still to come, per operation.
    faults: [VecDeque<Fault>; 2],
    calls: HashMap<String, usize>,
    redemptions: HashMap<String, usize>,
    token_attempts: HashMap<String, Vec<u32>>,
    attempts: Vec<u32>,
    requests: usize,
    entitlements: Vec<Entitlement>,
    entitlement_calls: usize,
}

/// What the emulator counted for one token.
pub(crate) struct TokenCounters {
    pub(crate) registered: bool,
    pub(crate) calls: usize,
    pub(crate) redemptions: usize,
    pub(crate) attempts: Vec<u32>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self, token: String, customer: ResolvedCustomer, valid_for: Duration) {
        let now = Instant::now();
        let expires_at = now.checked_add(valid_for).unwrap_or(now);
        self.lock().tokens.insert(
            token,
            Registration {
                customer,
                expires_at,
                redeemed: false,
            },
        );
    }

    pub(crate) fn set_policy(&self, policy: RedemptionPolicy) {
        self.lock().policy = policy;
    }

    fn access(&self) -> std::sync::MutexGuard<'_, Access> {
        self.access.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn accept_credentials(&self, access_key: String, secret: String) {
        self.access().accepted.insert(access_key, secret);
    }

    /// What is known of `access_key`'s secret: issued credentials are always
    /// verified; other keys only once some were accepted.
    pub(crate) fn secret_for(&self, access_key: &str) -> Secret {
        let access = self.access();
        if let Some(issued) = access.issued.get(access_key) {
            return Secret::Known(issued.secret.clone());
        }
        if access.accepted.is_empty() {
            return Secret::Unchecked;
        }
        access
            .accepted
            .get(access_key)
            .map_or(Secret::Unknown, |secret| Secret::Known(secret.clone()))
    }

    pub(crate) fn allow_role(&self, role_arn: String, external_id: Option<String>) {
        self.access().roles.insert(role_arn, Role { external_id });
    }

    pub(crate) fn role(&self, role_arn: &str) -> Option<Role> {
        self.access().roles.get(role_arn).cloned()
    }

    pub(crate) fn record_issued(&self, access_key: String, issued: Issued) {
        self.access().issued.insert(access_key, issued);
    }

    pub(crate) fn require_role(&self, role_arn: String) {
        self.access().required_role = Some(role_arn);
    }

    /// Whether a Marketplace call signed by `access_key` with
    /// `session_token` may go on: always, unless a role is required; then
    /// only with that role's temporary credentials and their session token.
    pub(crate) fn may_call(&self, access_key: &str, session_token: Option<&str>) -> bool {
        let access = self.access();
        let Some(required) = &access.required_role else {
            return true;
        };
        access.issued.get(access_key).is_some_and(|issued| {
            &issued.role_arn == required && Some(issued.session_token.as_str()) == session_token
        })
    }

    pub(crate) fn policy(&self) -> RedemptionPolicy {
        self.lock().policy
    }

    /// Forgets every token, fault and counter, and restores the default
    /// policy.
    pub(crate) fn reset(&self) {
        *self.lock() = Inner::default();
    }

    /// The faults still to come for `operation`, in order.
    pub(crate) fn pending_faults(&self, operation: Operation) -> Vec<Fault> {
        self.lock().faults[operation as usize]
            .iter()
            .cloned()
            .collect()
    }

    pub(crate) fn counters_for(&self, token: &str) -> TokenCounters {
        let inner = self.lock();
        TokenCounters {
            registered: inner.tokens.contains_key(token),
            calls: inner.calls.get(token).copied().unwrap_or(0),
            redemptions: inner.redemptions.get(token).copied().unwrap_or(0),
            attempts: inner.token_attempts.get(token).cloned().unwrap_or_default(),
        }
    }

    /// Makes each of the next `times` calls of `operation` meet `fault`.
    pub(crate) fn push_faults(&self, operation: Operation, fault: Fault, times: usize) {
        self.lock().faults[operation as usize].extend(std::iter::repeat_n(fault, times));
    }

    pub(crate) fn clear_faults(&self) {
        for faults in &mut self.lock().faults {
            faults.clear();
        }
    }

    /// The fault the next call of `operation` meets, if any.
    pub(crate) fn next_fault(&self, operation: Operation) -> Option<Fault> {
        self.lock().faults[operation as usize].pop_front()
    }

    pub(crate) fn add_entitlements(&self, entitlements: impl IntoIterator<Item = Entitlement>) {
        self.lock().entitlements.extend(entitlements);
    }

    pub(crate) fn entitlements(&self) -> Vec<Entitlement> {
        self.lock().entitlements.clone()
    }

    pub(crate) fn clear_entitlements(&self) {
        self.lock().entitlements.clear();
    }

    /// Counts a well-formed `GetEntitlements` call, faulted or not.
    pub(crate) fn record_entitlement_call(&self) {
        self.lock().entitlement_calls += 1;
    }

    pub(crate) fn entitlement_calls(&self) -> usize {
        self.lock().entitlement_calls
    }

    /// Counts an HTTP request and its `amz-sdk-request` attempt number.
    pub(crate) fn record_request(&self, attempt: Option<u32>) {
        let mut inner = self.lock();
        inner.requests += 1;
        if let Some(attempt) = attempt {
            inner.attempts.push(attempt);
        }
    }

    /// Counts a well-formed `ResolveCustomer` call for `token`, faulted or not,
    /// and its `amz-sdk-request` attempt number.
    pub(crate) fn record_call(&self, token: &str, attempt: Option<u32>) {
        let mut inner = self.lock();
        *inner.calls.entry(token.to_owned()).or_default() += 1;
        if let Some(attempt) = attempt {
            inner
                .token_attempts
                .entry(token.to_owned())
                .or_default()
                .push(attempt);
        }
    }

    /// Answers one well-formed `ResolveCustomer` call for `token`.
    pub(crate) fn redeem(&self, token: &str) -> Verdict {
        let mut inner = self.lock();
        let policy = inner.policy;
        let Some(registration) = inner.tokens.get_mut(token) else {
            return Verdict::InvalidToken;
        };
        if Instant::now() >= registration.expires_at
            || (policy == RedemptionPolicy::SingleUse && registration.redeemed)
        {
            return Verdict::ExpiredToken;
        }
        registration.redeemed = true;
        let customer = registration.customer.clone();
        *inner.redemptions.entry(token.to_owned()).or_default() += 1;
        Verdict::Resolved(customer)
    }

    pub(crate) fn calls_for(&self, token: &str) -> usize {
        self.lock().calls.get(token).copied().unwrap_or(0)
    }

    pub(crate) fn redemptions_of(&self, token: &str) -> usize {
        self.lock().redemptions.get(token).copied().unwrap_or(0)
    }

    pub(crate) fn attempts(&self) -> Vec<u32> {
        self.lock().attempts.clone()
    }

    pub(crate) fn requests(&self) -> usize {
        self.lock().requests
    }
}
