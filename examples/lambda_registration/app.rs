//! The registration flow as one AWS Lambda function: the routes, and the
//! seller's accounts and sessions in the same DynamoDB table as the
//! resolutions (each execution environment has its own memory, so nothing
//! the flow needs may live there).
//!
//! Shared by `main.rs` and the Lambda event tests (`tests/lambda_events.rs`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use axum::Router;
use axum::extract::State;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tower_resolve_customer::{
    DEFAULT_DYNAMODB_PARTITION_KEY, DEFAULT_DYNAMODB_TTL_ATTRIBUTE, DynamoDbStore, OfferType,
    Redemption, Resolutions, ResolveCustomerLayer, ResolvedCustomer, Resolver, TOKEN_HEADER,
    TokenSource,
};

use crate::site::{
    REPLAY_WINDOW, SESSION_COOKIE, error_page, escape, may_onboard, new_session_id, page,
    session_of, sign_in_page,
};

/// How long a session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A registered buyer, as the welcome page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub customer: ResolvedCustomer,
    pub offer_type: Option<String>,
}

/// The seller's accounts and sessions, as items of the registration table:
/// `account#<AWS account id>#<license ARN or product code>` and
/// `session#<opaque id>` (which expires with the session).
#[derive(Clone)]
pub struct Accounts {
    client: Client,
    table: String,
}

/// A DynamoDB call of the account store failed.
pub type AccountError = Box<dyn std::error::Error + Send + Sync>;

impl Accounts {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Records the account (idempotently: a double submit writes the same
    /// item) and opens a session on it.
    pub async fn register(&self, account: &Account) -> Result<String, AccountError> {
        let customer = &account.customer;
        let key = format!(
            "account#{}#{}",
            customer.customer_aws_account_id(),
            customer.license_arn().unwrap_or(customer.product_code())
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(&key, account, None)))
            .send()
            .await?;
        let session = new_session_id();
        let expires = SystemTime::now().duration_since(UNIX_EPOCH)? + SESSION_LIFETIME;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(
                &format!("session#{session}"),
                account,
                Some(expires.as_secs()),
            )))
            .send()
            .await?;
        Ok(session)
    }

    /// The account a live session points at.
    pub async fn by_session(&self, session: &str) -> Result<Option<Account>, AccountError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                DEFAULT_DYNAMODB_PARTITION_KEY,
                AttributeValue::S(format!("session#{session}")),
            )
            .consistent_read(true)
            .send()
            .await?;
        let Some(item) = read.item else {
            return Ok(None);
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let expires: Option<u64> = item
            .get(DEFAULT_DYNAMODB_TTL_ATTRIBUTE)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok());
        if expires.is_some_and(|expires| expires <= now) {
            return Ok(None);
        }
        let (Some(account), Some(product)) = (text("account"), text("product")) else {
            return Ok(None);
        };
        let mut customer = ResolvedCustomer::new(account, product);
        if let Some(arn) = text("license_arn") {
            customer = customer.with_license_arn(arn);
        }
        if let Some(agreement) = text("agreement_id") {
            customer = customer.with_agreement_id(agreement);
        }
        if let Some(id) = text("customer_identifier") {
            customer = customer.with_customer_identifier(id);
        }
        Ok(Some(Account {
            customer,
            offer_type: text("offer_type"),
        }))
    }
}

fn item(key: &str, account: &Account, expires: Option<u64>) -> HashMap<String, AttributeValue> {
    let customer = &account.customer;
    let mut item = HashMap::from([
        (
            DEFAULT_DYNAMODB_PARTITION_KEY.to_owned(),
            AttributeValue::S(key.to_owned()),
        ),
        (
            "account".to_owned(),
            AttributeValue::S(customer.customer_aws_account_id().to_owned()),
        ),
        (
            "product".to_owned(),
            AttributeValue::S(customer.product_code().to_owned()),
        ),
    ]);
    let optional = [
        ("license_arn", customer.license_arn()),
        ("agreement_id", customer.agreement_id()),
        ("customer_identifier", customer.customer_identifier()),
        ("offer_type", account.offer_type.as_deref()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), AttributeValue::S(value.to_owned()));
        }
    }
    if let Some(expires) = expires {
        item.insert(
            DEFAULT_DYNAMODB_TTL_ATTRIBUTE.to_owned(),
            AttributeValue::N(expires.to_string()),
        );
    }
    item
}

/// The function's one `Resolutions`, shared by its routes: `store` shared
/// with the other execution environments, and every new answer published
/// before it is answered (Lambda freezes the environment once the response is
/// returned, so nothing may be left to do after it).
pub fn resolutions(resolver: impl Resolver, store: DynamoDbStore) -> Resolutions {
    Resolutions::builder(resolver)
        .store(store)
        .publish_before_answering(true)
        .build()
}

/// The function's routes: `POST /register` (the Marketplace form, answered
/// with a 303 to `/welcome` or an HTML error page), `POST /api/register` (the
/// token in the `x-amzn-marketplace-token` header, answered with JSON), and
/// `GET /welcome`. Both registration routes' layers are made from the
/// function's one `Resolutions`, so they share its cache and store.
/// `product`, if given, is the only product code accepted.
pub fn routes(resolutions: &Resolutions, accounts: Accounts, product: Option<&str>) -> Router {
    let mut form = resolutions.layer().rejection(error_page);
    let mut header = ResolveCustomerLayer::from_resolutions(resolutions.clone())
        .token_source(TokenSource::header(TOKEN_HEADER));
    if let Some(product) = product {
        form = form.allowed_product_codes([product]);
        header = header.allowed_product_codes([product]);
    }
    Router::new()
        .route("/register", post(register).layer(form))
        .route("/api/register", post(register_api).layer(header))
        .route("/welcome", get(welcome))
        .with_state(accounts)
}

/// The function as Lambda runs it: `routes` behind the one adjustment API
/// Gateway REST APIs need (their requests' paths start with the stage, which
/// the routes do not know).
pub fn function(
    routes: Router,
) -> impl tower::Service<
    lambda_http::Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::ServiceBuilder::new()
        .map_request(without_stage)
        .service(routes)
}

/// The request with its path relative to its REST API stage.
fn without_stage(mut request: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|stage| stage != "$default") else {
        return request;
    };
    let uri = request.uri().clone();
    let Some(path) = uri
        .path()
        .strip_prefix(&format!("/{stage}"))
        .filter(|path| path.starts_with('/'))
    else {
        return request;
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.into_parts();
    if let Ok(path_and_query) = path_and_query.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

async fn register(
    State(accounts): State<Accounts>,
    customer: ResolvedCustomer,
    redemption: Redemption,
    offer: Option<OfferType>,
) -> Response {
    // The same policy as the axum site: only the redeeming request, and
    // replays shortly after it, get a session (the store carries the
    // redemption's time across execution environments).
    if !may_onboard(&redemption, REPLAY_WINDOW) {
        return sign_in_page().into_response();
    }
    let account = Account {
        customer,
        offer_type: offer.map(|offer| offer.to_string()),
    };
    let session = match accounts.register(&account).await {
        Ok(session) => session,
        Err(error) => return unavailable(&error),
    };
    let mut headers = HeaderMap::new();
    // Relative: behind an API Gateway REST API's own domain the page is at
    // `/<stage>/welcome`, behind a custom domain at `/welcome`.
    headers.insert(LOCATION, HeaderValue::from_static("welcome"));
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Lax"
    )) {
        headers.insert(SET_COOKIE, cookie);
    }
    (StatusCode::SEE_OTHER, headers).into_response()
}

async fn register_api(customer: ResolvedCustomer) -> Response {
    axum::Json(serde_json::json!({
        "CustomerAWSAccountId": customer.customer_aws_account_id(),
        "ProductCode": customer.product_code(),
    }))
    .into_response()
}

async fn welcome(State(accounts): State<Accounts>, headers: HeaderMap) -> Response {
    let account = match session_of(&headers) {
        Some(session) => accounts.by_session(&session).await,
        None => Ok(None),
    };
    let account = match account {
        Ok(Some(account)) => account,
        Ok(None) => {
            return (
                StatusCode::UNAUTHORIZED,
                page(
                    "Not registered",
                    "<p>Open this product from AWS Marketplace and choose <b>Set up your account</b>.</p>",
                ),
            )
                .into_response();
        }
        Err(error) => return unavailable(&error),
    };
    let c = &account.customer;
    let body = format!(
        "<p>Your subscription is set up.</p>\
         <dl><dt>AWS account</dt><dd id=\"account\">{}</dd>\
         <dt>Product</dt><dd id=\"product\">{}</dd>\
         <dt>Offer</dt><dd>{}</dd></dl>",
        escape(c.customer_aws_account_id()),
        escape(c.product_code()),
        escape(account.offer_type.as_deref().unwrap_or("standard")),
    );
    page("Welcome", &body).into_response()
}

/// The account store failed: a page asking the buyer to retry (the token's
/// answer is cached and shared, so the retry costs no second redemption).
fn unavailable(error: &AccountError) -> Response {
    tracing::warn!(%error, "account store unavailable");
    let Html(html) = page(
        "Please try again",
        "<p>We could not record your account just now. Please try again in a moment.</p>",
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(html)).into_response()
}
