//! [`DynamoDbStore`]: a [`ResolutionStore`] on one DynamoDB table (feature
//! `dynamodb`).
//!
//! Two items per token, named by the token's digest (never the token) under
//! the table's string partition key:
//!
//! - `<prefix>answer#<digest>`: the published answer ([`StoredAnswer::encode`])
//!   and its exact expiry in epoch milliseconds, which every read checks;
//! - `<prefix>lease#<digest>`: the lease holder's id and the lease's expiry,
//!   and one attribute per holder's attempt at redeeming the token
//!   (`attempt:<holder>`): until when it is remembered, in epoch
//!   milliseconds, negated once the attempt ended.
//!
//! Every item also carries a TTL attribute (epoch seconds) past its last
//! useful moment, so that a table with DynamoDB's TTL enabled cleans itself;
//! TTL deletion is lazy (often days late), so correctness never depends on it.
//!
//! Every write is one conditional write, made so that repeating it (the SDK
//! retrying an attempt whose reply was lost) gives the same result: a lease is
//! taken if it is free, lapsed *or already this holder's*, and extended only
//! while it is this holder's. Releasing is the one write that a repeat would
//! find already done: each release leaves a mark unique to the call, and a
//! repeat that finds its own mark knows the first attempt released the lease.

mod table;

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::{LeaseGrant, LeaseHolder, LeaseTerms, ResolutionStore, StoredAnswer, TokenDigest};

/// Default for [`DynamoDbStore::key_prefix`].
pub const DEFAULT_DYNAMODB_KEY_PREFIX: &str = "tower-resolve-customer#";
/// Default for [`DynamoDbStore::partition_key`].
pub const DEFAULT_DYNAMODB_PARTITION_KEY: &str = "pk";
/// Default for [`DynamoDbStore::ttl_attribute`].
pub const DEFAULT_DYNAMODB_TTL_ATTRIBUTE: &str = "expires_at";
/// Default for [`DynamoDbStore::attempt_timeout`].
pub const DEFAULT_DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);
/// Default for [`DynamoDbStore::call_timeout`].
pub const DEFAULT_DYNAMODB_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Default for [`DynamoDbStore::max_attempts`].
pub const DEFAULT_DYNAMODB_MAX_ATTEMPTS: u32 = 3;

/// How long past its last useful moment an item's TTL attribute points: a
/// margin for the replicas' clocks and for leases extended after they were
/// taken, so that TTL never deletes an item the protocol may still read.
const TTL_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

// Attribute names. Short, but readable in the console.
const ANSWER: &str = "answer";
const ANSWER_UNTIL: &str = "answer_until_ms";
const HOLDER: &str = "holder";
const LEASE_UNTIL: &str = "lease_until_ms";
/// Prefix of the attribute that records a holder's attempt.
const ATTEMPT: &str = "attempt:";
const RELEASED_BY: &str = "released_by";

/// Attempts no longer remembered that an item may keep before they are
/// removed (a write more, so not on every call).
const STALE_ATTEMPTS_KEPT: usize = 8;

/// A DynamoDB call failed: the connection, a timeout, the service's refusal
/// (throttling, a missing table, missing permissions), or its reply.
#[derive(Debug)]
pub struct DynamoDbStoreError {
    operation: &'static str,
    message: String,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl DynamoDbStoreError {
    fn sdk<E, R>(operation: &'static str, error: SdkError<E, R>) -> Self
    where
        E: Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        Self {
            operation,
            message: DisplayErrorContext(&error).to_string(),
            source: Some(Box::new(error)),
        }
    }

    fn invalid(operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            operation,
            message: message.into(),
            source: None,
        }
    }
}

impl fmt::Display for DynamoDbStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DynamoDB {}: {}", self.operation, self.message)
    }
}

impl Error for DynamoDbStoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// A [`ResolutionStore`] on one DynamoDB table, shared by the replicas of a
/// deployment (AWS Lambda execution environments, containers, hosts), for
/// [`ResolutionsBuilder::store`](crate::ResolutionsBuilder::store).
///
/// The table needs a string partition key (named `pk` unless
/// [`partition_key`](Self::partition_key) says otherwise) and no sort key;
/// it may be a table the application already uses, as long as the
/// [`key_prefix`](Self::key_prefix) keeps this store's items apart. Enable
/// DynamoDB's TTL on [`ttl_attribute`](Self::ttl_attribute) so the table
/// cleans itself; [`create_table`](Self::create_table) does all of that for
/// development.
///
/// Reads are strongly consistent. Every call is bounded by
/// [`call_timeout`](Self::call_timeout), each attempt by
/// [`attempt_timeout`](Self::attempt_timeout), and a call makes at most
/// [`max_attempts`](Self::max_attempts) attempts (the SDK's standard retries
/// with a short backoff); the resolutions'
/// [`store_timeout`](crate::ResolutionsBuilder::store_timeout) bounds the
/// whole call again.
///
/// # Clocks
///
/// DynamoDB has no clock of its own to compare with: lease and answer
/// expiries are written and checked with the replicas' clocks. A replica
/// whose clock runs ahead by *d* sees the others' leases lapse *d* early. The
/// holder renews its lease every quarter of its length, so a lease stays
/// exclusive while the replicas' clocks differ by less than about half the
/// lease, less the store timeout. With the defaults (a 2 s lease, a 500 ms
/// store timeout), up to about 500 ms; AWS Lambda and EC2 keep their clocks
/// within a millisecond or so of each other (Amazon Time Sync). Give the
/// [`lease`](crate::ResolutionsBuilder::lease) more room if yours do not.
/// Past that bound (or after a step in a replica's wall clock) a second
/// replica may take a live lease and redeem the token again.
///
/// Use a table in one region: a global table written from several regions
/// does not serialize conditional writes across them.
///
/// ```no_run
/// use tower_resolve_customer::{DynamoDbStore, RegistrationToken, Resolutions, ResolvedCustomer};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let config = aws_config::load_from_env().await;
/// let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&config), "registrations");
/// let resolutions = Resolutions::builder(|_: RegistrationToken| async {
///     Ok(ResolvedCustomer::new("123456789012", "prod-abc123"))
/// })
/// .store(store)
/// .build();
/// # let _ = resolutions;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: Arc<str>,
    partition_key: Arc<str>,
    ttl_attribute: Arc<str>,
    prefix: Arc<str>,
    call_timeout: Duration,
    attempt_timeout: Duration,
    max_attempts: u32,
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbStore")
            .field("table", &self.table)
            .field("partition_key", &self.partition_key)
            .field("ttl_attribute", &self.ttl_attribute)
            .field("prefix", &self.prefix)
            .field("call_timeout", &self.call_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl DynamoDbStore {
    /// A store on `table`, reached with `client` (its region, credentials and
    /// endpoint are the application's; its retry and timeout settings are
    /// replaced per call by this store's).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: Arc::from(table.into()),
            partition_key: Arc::from(DEFAULT_DYNAMODB_PARTITION_KEY),
            ttl_attribute: Arc::from(DEFAULT_DYNAMODB_TTL_ATTRIBUTE),
            prefix: Arc::from(DEFAULT_DYNAMODB_KEY_PREFIX),
            call_timeout: DEFAULT_DYNAMODB_CALL_TIMEOUT,
            attempt_timeout: DEFAULT_DYNAMODB_ATTEMPT_TIMEOUT,
            max_attempts: DEFAULT_DYNAMODB_MAX_ATTEMPTS,
        }
    }

    /// The name of the table's partition key, a string attribute (default
    /// `pk`).
    pub fn partition_key(mut self, name: impl Into<String>) -> Self {
        self.partition_key = Arc::from(name.into());
        self
    }

    /// The attribute that holds each item's expiry in epoch seconds, for
    /// DynamoDB's TTL (default `expires_at`).
    pub fn ttl_attribute(mut self, name: impl Into<String>) -> Self {
        self.ttl_attribute = Arc::from(name.into());
        self
    }

    /// Prefix of every partition key this store writes (default
    /// `tower-resolve-customer#`); replicas of one deployment must agree on it.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// How long one call may take, its retries included (default 1 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long one attempt of a call may take before it is abandoned and,
    /// if attempts remain, retried (default 300 ms).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How many attempts a call makes at most, the first included (default 3;
    /// at least 1). Throttling, server errors, timeouts and lost connections
    /// are retried; every write is safe to repeat.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn answer_key(&self, token: TokenDigest) -> AttributeValue {
        AttributeValue::S(format!("{}answer#{token}", self.prefix))
    }

    fn lease_key(&self, token: TokenDigest) -> AttributeValue {
        AttributeValue::S(format!("{}lease#{token}", self.prefix))
    }

    /// This store's retry and timeout settings, for one call.
    fn call_settings(&self) -> aws_sdk_dynamodb::config::Builder {
        aws_sdk_dynamodb::config::Builder::default()
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.max_attempts)
                    .with_initial_backoff(Duration::from_millis(10))
                    .with_max_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(self.call_timeout)
                    .operation_attempt_timeout(self.attempt_timeout)
                    .build(),
            )
    }

    /// A strongly consistent `GetItem` of the item at `key`.
    fn consistent_get(
        &self,
        key: AttributeValue,
    ) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
        self.client
            .get_item()
            .table_name(&*self.table)
            .key(&*self.partition_key, key)
            .consistent_read(true)
    }

    /// The lease item, read consistently (for a conditional write refused
    /// without the item in its reply).
    async fn lease_item(&self, token: TokenDigest) -> Result<Item, DynamoDbStoreError> {
        let read = self
            .consistent_get(self.lease_key(token))
            .customize()
            .config_override(self.call_settings())
            .send()
            .await
            .map_err(|e| DynamoDbStoreError::sdk("GetItem", e))?;
        Ok(Item(read.item.unwrap_or_default()))
    }

    /// An `UpdateItem` of `token`'s lease item with `#holder`, `#lease`,
    /// `:me` (`holder`) and `:now` bound, answering a refusal with the item
    /// as it stood.
    fn lease_update(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        now: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&*self.table)
            .key(&*self.partition_key, self.lease_key(token))
            .expression_attribute_names("#holder", HOLDER)
            .expression_attribute_names("#lease", LEASE_UNTIL)
            .expression_attribute_values(":me", AttributeValue::S(holder.as_str().to_owned()))
            .expression_attribute_values(":now", number(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// Takes, renews or re-takes the lease for `holder`, and records its
    /// attempt as under way until `remember` from now. With `refresh`, the
    /// write is refused if the attempt ended (and is still remembered) or is
    /// recorded until later already; without, it records a missing attempt
    /// and leaves one recorded as it is.
    async fn write_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
        now: u64,
        refresh: bool,
    ) -> Result<Written, DynamoDbStoreError> {
        let remember = terms.attempt_lifetime();
        // Ours already: only ever moved later, so an attempt that lands after
        // a later one (a stalled attempt of an abandoned call) changes
        // nothing.
        let mut condition = String::from(
            "(attribute_not_exists(#holder) OR #lease <= :now \
             OR (#holder = :me AND #lease <= :lease))",
        );
        let mut request = self
            .lease_update(token, holder, now)
            .expression_attribute_names("#released", RELEASED_BY)
            .expression_attribute_names("#ttl", &*self.ttl_attribute)
            .expression_attribute_names("#attempt", attempt_name(holder))
            .expression_attribute_values(":lease", number(until(now, terms.lease)))
            .expression_attribute_values(":attempt", number(until(now, remember)))
            .expression_attribute_values(":ttl", number(ttl_seconds(now, remember)));
        let attempt = if refresh {
            // Missing, under way until earlier, or ended and forgotten.
            condition.push_str(
                " AND (attribute_not_exists(#attempt) \
                 OR (#attempt > :zero AND #attempt < :attempt) \
                 OR (#attempt < :zero AND #attempt >= :forgotten))",
            );
            request = request
                .expression_attribute_values(":zero", number(0))
                .expression_attribute_values(":forgotten", negated(now));
            ":attempt"
        } else {
            "if_not_exists(#attempt, :attempt)"
        };
        let update = format!(
            "SET #holder = :me, #lease = :lease, #ttl = :ttl, #attempt = {attempt} \
             REMOVE #released"
        );
        let written = request
            .condition_expression(condition)
            .update_expression(update)
            .return_values(ReturnValue::AllNew)
            .customize()
            .config_override(self.call_settings())
            .send()
            .await;
        self.written(token, written).await
    }

    /// Removes, in the background, the attempts `item` holds that are no
    /// longer remembered, if there are more than a few, unless one changed
    /// meanwhile.
    fn prune(&self, token: TokenDigest, item: &Item, now: u64) {
        let stale: Vec<(String, AttributeValue)> = item
            .attempts()
            .filter(|a| a.until <= now)
            .map(|a| (a.name.to_owned(), a.value.clone()))
            .collect();
        if stale.len() <= STALE_ATTEMPTS_KEPT {
            return;
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key(&*self.partition_key, self.lease_key(token));
        let (mut condition, mut names) = (Vec::new(), Vec::new());
        for (i, (name, value)) in stale.into_iter().enumerate() {
            condition.push(format!("#a{i} = :a{i}"));
            names.push(format!("#a{i}"));
            request = request
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":a{i}"), value);
        }
        let request = request
            .condition_expression(condition.join(" AND "))
            .update_expression(format!("REMOVE {}", names.join(", ")))
            .customize()
            .config_override(self.call_settings());
        tokio::spawn(async move {
            if let Err(error) = request.send().await {
                tracing::debug!(error = %DisplayErrorContext(&error), "could not prune lease attempts");
            }
        });
    }

    /// A conditional update's outcome: done (with the item as it is now, if
    /// the update asked for it), or refused with the item as it stood (from
    /// the refusal, or read again if the refusal lacks it).
    async fn written<R>(
        &self,
        token: TokenDigest,
        written: Result<UpdateItemOutput, SdkError<UpdateItemError, R>>,
    ) -> Result<Written, DynamoDbStoreError>
    where
        R: fmt::Debug + Send + Sync + 'static,
    {
        match written {
            Ok(output) => Ok(Written::Done(Item(output.attributes.unwrap_or_default()))),
            Err(error) => match error.as_service_error().map(RefusedWrite::refused) {
                Some(Some(Some(item))) => Ok(Written::Refused(Item(item))),
                Some(Some(None)) => Ok(Written::Refused(self.lease_item(token).await?)),
                _ => Err(DynamoDbStoreError::sdk("UpdateItem", error)),
            },
        }
    }
}

/// What a conditional write came to.
enum Written {
    /// Done; the item as it is now, if the write asked for it.
    Done(Item),
    /// Its condition did not hold; the item as it stood.
    Refused(Item),
}

/// An item's attributes.
#[derive(Default)]
struct Item(std::collections::HashMap<String, AttributeValue>);

impl Item {
    fn string(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.as_s().ok().map(String::as_str)
    }

    fn number(&self, name: &str) -> Option<u64> {
        self.0.get(name)?.as_n().ok()?.parse().ok()
    }

    /// Whether `holder` holds the lease, unexpired.
    fn held_by(&self, holder: &LeaseHolder, now: u64) -> bool {
        self.string(HOLDER) == Some(holder.as_str())
            && self.number(LEASE_UNTIL).is_some_and(|until| until > now)
    }

    /// What a lease item that refused `holder`'s write (asking for the lease
    /// until `lease`) grants it as it stands, if no other write can change
    /// that: held by another holder; or already `holder`'s until `lease` or
    /// later (a later attempt landed first).
    fn grant_as_it_stands(&self, holder: &LeaseHolder, now: u64, lease: u64) -> Option<LeaseGrant> {
        let current = self.string(HOLDER)?;
        let until = self.number(LEASE_UNTIL).filter(|until| *until > now)?;
        if current != holder.as_str() {
            return Some(LeaseGrant::HeldElsewhere);
        }
        (until >= lease).then_some(LeaseGrant::Taken)
    }

    /// The attempts the item records.
    fn attempts(&self) -> impl Iterator<Item = Attempt<'_>> {
        self.0.iter().filter_map(|(name, value)| {
            let holder = name.strip_prefix(ATTEMPT)?;
            let recorded: i64 = value.as_n().ok()?.parse().ok()?;
            Some(Attempt {
                name,
                holder,
                value,
                under_way: recorded > 0,
                until: recorded.unsigned_abs(),
            })
        })
    }

    /// Whether the item records an attempt of a holder other than `holder`
    /// under way at `now`.
    fn another_under_way(&self, holder: &LeaseHolder, now: u64) -> bool {
        self.attempts()
            .any(|a| a.holder != holder.as_str() && a.under_way && a.until > now)
    }
}

/// A holder's attempt, as a lease item records it.
struct Attempt<'a> {
    name: &'a str,
    holder: &'a str,
    value: &'a AttributeValue,
    under_way: bool,
    /// Until when it is remembered, in epoch milliseconds.
    until: u64,
}

/// The error of an operation that writes conditionally.
trait RefusedWrite: Error + Send + Sync + 'static {
    /// `Some` if the write's condition did not hold, with the item as it
    /// stood if the reply had it.
    fn refused(&self) -> Option<Option<std::collections::HashMap<String, AttributeValue>>>;
}

impl RefusedWrite for UpdateItemError {
    fn refused(&self) -> Option<Option<std::collections::HashMap<String, AttributeValue>>> {
        match self {
            Self::ConditionalCheckFailedException(refused) => Some(refused.item.clone()),
            _ => None,
        }
    }
}

impl RefusedWrite for aws_sdk_dynamodb::operation::put_item::PutItemError {
    fn refused(&self) -> Option<Option<std::collections::HashMap<String, AttributeValue>>> {
        match self {
            Self::ConditionalCheckFailedException(refused) => Some(refused.item.clone()),
            _ => None,
        }
    }
}

impl ResolutionStore for DynamoDbStore {
    type Error = DynamoDbStoreError;

    async fn read(&self, token: TokenDigest) -> Result<Option<StoredAnswer>, DynamoDbStoreError> {
        let read = self
            .consistent_get(self.answer_key(token))
            .projection_expression("#answer, #until")
            .expression_attribute_names("#answer", ANSWER)
            .expression_attribute_names("#until", ANSWER_UNTIL)
            .customize()
            .config_override(self.call_settings())
            .send()
            .await
            .map_err(|e| DynamoDbStoreError::sdk("GetItem", e))?;
        let Some(item) = read.item else {
            return Ok(None);
        };
        let item = Item(item);
        let (Some(text), Some(until)) = (item.string(ANSWER), item.number(ANSWER_UNTIL)) else {
            tracing::warn!("ignoring an unreadable resolution in DynamoDB");
            return Ok(None);
        };
        let now = now_millis();
        if until <= now {
            return Ok(None);
        }
        let answer = StoredAnswer::decode(text, Duration::from_millis(until - now));
        if answer.is_none() {
            tracing::warn!("ignoring an unreadable resolution in DynamoDB");
        }
        Ok(answer)
    }

    async fn try_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
    ) -> Result<LeaseGrant, DynamoDbStoreError> {
        let now = now_millis();
        let lease = until(now, terms.lease);
        // Free, lapsed or ours, and the attempt not ended: one write.
        let stood = match self.write_lease(token, holder, terms, now, true).await? {
            Written::Done(item) => {
                self.prune(token, &item, now);
                return Ok(LeaseGrant::Taken);
            }
            Written::Refused(stood) => stood,
        };
        if let Some(grant) = stood.grant_as_it_stands(holder, now, lease) {
            return Ok(grant);
        }
        // Free, lapsed or ours, but the attempt ended (or is recorded until
        // later already): take the lease, and leave the attempt as it is
        // (recording it if it went missing since).
        Ok(
            match self.write_lease(token, holder, terms, now, false).await? {
                Written::Done(_) => LeaseGrant::Taken,
                Written::Refused(stood) => stood
                    .grant_as_it_stands(holder, now, lease)
                    .unwrap_or(LeaseGrant::HeldElsewhere),
            },
        )
    }

    async fn end_attempt(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        terms: LeaseTerms,
    ) -> Result<bool, DynamoDbStoreError> {
        let now = now_millis();
        let remember = terms.attempt_lifetime();
        let written = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key(&*self.partition_key, self.lease_key(token))
            .update_expression("SET #attempt = :ended, #ttl = :ttl")
            .expression_attribute_names("#attempt", attempt_name(holder))
            .expression_attribute_names("#ttl", &*self.ttl_attribute)
            .expression_attribute_values(":ended", negated(until(now, remember)))
            .expression_attribute_values(":ttl", number(ttl_seconds(now, remember)))
            .return_values(ReturnValue::AllNew)
            .customize()
            .config_override(self.call_settings())
            .send()
            .await
            .map_err(|e| DynamoDbStoreError::sdk("UpdateItem", e))?;
        Ok(Item(written.attributes.unwrap_or_default()).another_under_way(holder, now))
    }

    async fn extend_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
        duration: Duration,
    ) -> Result<bool, DynamoDbStoreError> {
        let now = now_millis();
        let lease = until(now, duration);
        // Only ever later (see `write_lease`). The TTL set when the lease was
        // taken already covers every renewal.
        let written = self
            .lease_update(token, holder, now)
            .condition_expression("#holder = :me AND #lease > :now AND #lease <= :lease")
            .update_expression("SET #lease = :lease")
            .expression_attribute_values(":lease", number(lease))
            .customize()
            .config_override(self.call_settings())
            .send()
            .await;
        Ok(match self.written(token, written).await? {
            Written::Done(_) => true,
            // Still ours, already until later than asked.
            Written::Refused(stood) => stood.held_by(holder, now),
        })
    }

    async fn publish(
        &self,
        token: TokenDigest,
        answer: &StoredAnswer,
    ) -> Result<(), DynamoDbStoreError> {
        let now = now_millis();
        let written = self
            .client
            .put_item()
            .table_name(&*self.table)
            .item(&*self.partition_key, self.answer_key(token))
            .item(ANSWER, AttributeValue::S(answer.encode()))
            .item(ANSWER_UNTIL, number(until(now, answer.lifetime())))
            .item(
                &*self.ttl_attribute,
                number(ttl_seconds(now, answer.lifetime())),
            )
            // Never over an answer this one may not replace.
            .condition_expression(
                "attribute_not_exists(#answer) OR #until <= :now OR NOT begins_with(#answer, :kept)",
            )
            .expression_attribute_names("#answer", ANSWER)
            .expression_attribute_names("#until", ANSWER_UNTIL)
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(
                ":kept",
                AttributeValue::S(answer.publish_guard().to_owned()),
            )
            .customize()
            .config_override(self.call_settings())
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error().and_then(RefusedWrite::refused) {
                // A customer is stored (perhaps by this very call, whose
                // first attempt's reply was lost): nothing to do.
                Some(_) => Ok(()),
                None => Err(DynamoDbStoreError::sdk("PutItem", error)),
            },
        }
    }

    async fn release_lease(
        &self,
        token: TokenDigest,
        holder: &LeaseHolder,
    ) -> Result<bool, DynamoDbStoreError> {
        let now = now_millis();
        let mark = release_mark(holder);
        let written = self
            .lease_update(token, holder, now)
            .condition_expression("#holder = :me AND #lease > :now")
            .update_expression("REMOVE #holder, #lease SET #released = :mark")
            .expression_attribute_names("#released", RELEASED_BY)
            .expression_attribute_values(":mark", AttributeValue::S(mark.clone()))
            .customize()
            .config_override(self.call_settings())
            .send()
            .await;
        Ok(match self.written(token, written).await? {
            Written::Done(_) => true,
            // Released by an earlier attempt of this very call, whose reply
            // was lost; otherwise not (or no longer) this holder's.
            Written::Refused(stood) => stood.string(RELEASED_BY) == Some(mark.as_str()),
        })
    }
}

/// The attribute that records `holder`'s attempt.
fn attempt_name(holder: &LeaseHolder) -> String {
    format!("{ATTEMPT}{}", holder.as_str())
}

/// A mark no other release call leaves.
fn release_mark(holder: &LeaseHolder) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}/{}",
        holder.as_str(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// `-value`: how an ended attempt's time (and the bound below which such
/// times are past) is written.
fn negated(value: u64) -> AttributeValue {
    let negated = i64::try_from(value).map_or(i64::MIN, |value| -value);
    AttributeValue::N(negated.to_string())
}

/// The replica's clock, in epoch milliseconds.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// `now` plus `duration` (at least 1 ms), in epoch milliseconds.
fn until(now: u64, duration: Duration) -> u64 {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    now.saturating_add(millis.max(1))
}

/// The TTL attribute for an item useful until `now` plus `duration`: whole
/// epoch seconds, past that by [`TTL_GRACE`].
fn ttl_seconds(now: u64, duration: Duration) -> u64 {
    until(now, duration.saturating_add(TTL_GRACE)).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> DynamoDbStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        DynamoDbStore::new(Client::from_conf(config), "t").key_prefix("p#")
    }

    #[test]
    fn keys_hold_the_digest_not_the_token() {
        let digest = TokenDigest::new(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let hex = "0123456789abcdef0011223344556677";
        let store = store();
        assert_eq!(
            store.answer_key(digest),
            AttributeValue::S(format!("p#answer#{hex}"))
        );
        assert_eq!(
            store.lease_key(digest),
            AttributeValue::S(format!("p#lease#{hex}"))
        );
    }

    #[test]
    fn expiries_are_exact_and_ttls_are_whole_seconds_past_them() {
        assert_eq!(until(1_000, Duration::ZERO), 1_001);
        assert_eq!(until(1_000, Duration::from_micros(2_500)), 1_002);
        assert_eq!(until(u64::MAX - 1, Duration::MAX), u64::MAX);
        let ttl = ttl_seconds(1_500, Duration::from_millis(1));
        assert_eq!(ttl, (1_501 + TTL_GRACE.as_millis() as u64).div_ceil(1000));
        assert!(ttl * 1000 >= 1_501 + TTL_GRACE.as_millis() as u64);
    }

    #[test]
    fn release_marks_are_unique() {
        let holder = LeaseHolder::unique();
        assert_ne!(release_mark(&holder), release_mark(&holder));
    }

    #[test]
    fn debug_shows_the_table_and_settings() {
        let shown = format!("{:?}", store().max_attempts(0).call_timeout(Duration::ZERO));
        assert!(shown.contains("table: \"t\""), "{shown}");
        assert!(shown.contains("max_attempts: 1"), "{shown}");
        assert!(shown.contains("call_timeout: 1ms"), "{shown}");
    }
}
