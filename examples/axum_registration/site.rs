//! The registration site: routes, pages and the in-memory account store.
//!
//! Shared by `main.rs`, the browser test (`tests/registration_site.rs`) and
//! the AWS Lambda example (its pages).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use tower_resolve_customer::{
    OFFER_TYPE_FIELD, OfferType, Redemption, Rejection, ResolveCustomerLayer, ResolveError,
    ResolvedCustomer, TOKEN_FIELD,
};

/// The session cookie: an opaque random id, never the token.
pub const SESSION_COOKIE: &str = "registration_session";

/// How long after its first redemption a token still opens the buyer's
/// onboarding: long enough for a double submit, a refresh, or a retry after
/// a slow answer; much shorter than the cache and AWS keep answering it.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Whether a registration request may continue the buyer's onboarding (and
/// be given a session): the request that redeemed the token, or a replay
/// within `window` of that redemption. A later replay of the token, which
/// anyone who copied it could send, is asked to sign in instead.
pub fn may_onboard(redemption: &Redemption, window: Duration) -> bool {
    redemption.is_first() || redemption.age() < window
}

/// A registered buyer.
#[derive(Debug, Clone)]
pub struct Account {
    pub customer: ResolvedCustomer,
    pub offer_type: Option<String>,
}

/// Accounts keyed by (AWS account id, license ARN or product code), and
/// sessions pointing at them.
pub struct Store {
    accounts: Mutex<HashMap<(String, String), Account>>,
    sessions: Mutex<HashMap<String, (String, String)>>,
    replay_window: Duration,
}

impl Default for Store {
    fn default() -> Self {
        Self::with_replay_window(REPLAY_WINDOW)
    }
}

impl Store {
    /// A store whose registration page onboards replays of a token only
    /// within `window` of its first redemption.
    pub fn with_replay_window(window: Duration) -> Self {
        Self {
            accounts: Mutex::default(),
            sessions: Mutex::default(),
            replay_window: window,
        }
    }

    /// How many distinct accounts registered.
    pub fn accounts(&self) -> usize {
        self.accounts.lock().unwrap().len()
    }

    fn upsert(&self, account: Account) -> String {
        let customer = &account.customer;
        let key = (
            customer.customer_aws_account_id().to_owned(),
            customer
                .license_arn()
                .unwrap_or(customer.product_code())
                .to_owned(),
        );
        self.accounts.lock().unwrap().insert(key.clone(), account);
        let session = new_session_id();
        self.sessions.lock().unwrap().insert(session.clone(), key);
        session
    }

    fn by_session(&self, session: &str) -> Option<Account> {
        let key = self.sessions.lock().unwrap().get(session)?.clone();
        self.accounts.lock().unwrap().get(&key).cloned()
    }
}

/// 128 random bits, hex: an opaque session id.
pub fn new_session_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let state = RandomState::new();
    let (a, b) = (state.hash_one(n), state.hash_one(!n));
    format!("{a:016x}{b:016x}")
}

/// The app: `POST /register` behind the layer, `/welcome`, and (offline) the
/// Marketplace simulator page submitting `simulator_token`.
pub fn app(
    layer: ResolveCustomerLayer,
    store: Arc<Store>,
    simulator_token: Option<String>,
) -> Router {
    // The layer answers failed registrations with pages for the buyer.
    let layer = layer.rejection(error_page);
    let mut app = Router::new()
        .route("/", get(index))
        .route("/register", post(register).layer(layer))
        .route("/welcome", get(welcome));
    if let Some(token) = simulator_token {
        app = app.route(
            "/marketplace-simulator",
            get(move || std::future::ready(simulator_page(token.clone()))),
        );
    }
    app.with_state(store).layer(
        // Outermost first: trace everything, cap every body, then (on the
        // registration route) resolve the token.
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(RequestBodyLimitLayer::new(64 * 1024)),
    )
}

async fn register(
    State(store): State<Arc<Store>>,
    customer: ResolvedCustomer,
    redemption: Redemption,
    offer: Option<OfferType>,
) -> Response<axum::body::Body> {
    if !may_onboard(&redemption, store.replay_window) {
        // A registration link used a while ago: whoever posts it now gets
        // no session for the buyer's account.
        tracing::info!(
            account = customer.customer_aws_account_id(),
            "late replay of a registration token"
        );
        return sign_in_page().into_response();
    }
    let session = store.upsert(Account {
        customer,
        offer_type: offer.map(|offer| offer.to_string()),
    });
    // 303: the browser follows with a GET, so a refresh of the welcome page
    // never re-posts the form.
    let mut headers = HeaderMap::new();
    headers.insert(LOCATION, HeaderValue::from_static("/welcome"));
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        headers.insert(SET_COOKIE, cookie);
    }
    (StatusCode::SEE_OTHER, headers).into_response()
}

/// What a late replay of a registration link gets: no session, an
/// invitation to sign in.
pub fn sign_in_page() -> (StatusCode, Html<String>) {
    (
        StatusCode::OK,
        page(
            "Sign in",
            "<p>This registration link was already used to set up the subscription.</p>\
             <p>Sign in to your account to continue.</p>",
        ),
    )
}

pub fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_owned())
        })
}

async fn welcome(
    State(store): State<Arc<Store>>,
    headers: HeaderMap,
) -> Response<axum::body::Body> {
    let Some(account) = session_of(&headers).and_then(|s| store.by_session(&s)) else {
        return (
            StatusCode::UNAUTHORIZED,
            page("Not registered", "<p>Open this product from AWS Marketplace and choose <b>Set up your account</b>.</p>"),
        )
            .into_response();
    };
    let c = &account.customer;
    let body = format!(
        "<p>Your subscription is set up.</p>\
         <dl><dt>AWS account</dt><dd id=\"account\">{}</dd>\
         <dt>Product</dt><dd id=\"product\">{}</dd>\
         <dt>Offer</dt><dd>{}</dd>\
         <dt>License</dt><dd>{}</dd>\
         <dt>Agreement</dt><dd>{}</dd></dl>",
        escape(c.customer_aws_account_id()),
        escape(c.product_code()),
        escape(account.offer_type.as_deref().unwrap_or("standard")),
        escape(c.license_arn().unwrap_or("-")),
        escape(c.agreement_id().unwrap_or("-")),
    );
    page("Welcome", &body).into_response()
}

async fn index() -> Html<String> {
    page(
        "SaaS registration",
        "<p>Buyers arrive here from AWS Marketplace at <code>POST /register</code>.</p>\
         <p>Offline, open <a href=\"/marketplace-simulator\">the Marketplace simulator</a>.</p>",
    )
}

/// What AWS Marketplace does: an HTML form posted to the registration URL as
/// soon as the page loads.
pub fn simulator_page(token: String) -> Html<String> {
    page(
        "AWS Marketplace (simulated)",
        &format!(
            "<p>Redirecting to the seller's registration page&hellip;</p>\
             <form id=\"marketplace\" method=\"post\" action=\"/register\">\
             <input type=\"hidden\" name=\"{TOKEN_FIELD}\" value=\"{}\">\
             <input type=\"hidden\" name=\"{OFFER_TYPE_FIELD}\" value=\"free-trial\">\
             <noscript><button>Set up your account</button></noscript></form>\
             <script>document.getElementById('marketplace').submit();</script>",
            escape(&token)
        ),
    )
}

/// The layer's rejection: a page for the buyer, with the right status.
pub fn error_page(error: &Rejection) -> Response<String> {
    let (title, advice) = match error {
        Rejection::Resolve(ResolveError::ExpiredToken) => (
            "Registration link expired",
            "Go back to AWS Marketplace, open your subscription and choose <b>Set up your account</b> again.",
        ),
        _ if error.is_retryable() => (
            "Please try again",
            "We could not confirm your subscription with AWS Marketplace just now. Please try again in a moment.",
        ),
        Rejection::ProductMismatch => (
            "Wrong product",
            "This registration page does not serve the product you subscribed to.",
        ),
        Rejection::MissingToken
        | Rejection::Resolve(ResolveError::InvalidToken)
        | Rejection::MalformedToken(_) => (
            "Registration link not recognised",
            "Open this product from AWS Marketplace and choose <b>Set up your account</b>.",
        ),
        _ => (
            "Registration failed",
            "Please start again from AWS Marketplace.",
        ),
    };
    let Html(html) = page(title, &format!("<p>{advice}</p>"));
    let mut response = Response::new(html);
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Some(after) = error.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(after.as_secs()));
    }
    response
}

pub fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    ))
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// How long the demo keeps tokens valid.
pub const DEMO_TOKEN_VALIDITY: Duration = Duration::from_secs(60 * 60);
