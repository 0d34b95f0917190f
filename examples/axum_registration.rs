//! An AWS Marketplace SaaS registration endpoint with axum, run fully offline.
//!
//! When a buyer subscribes to your SaaS product, AWS Marketplace sends their
//! browser to your registration URL with an urlencoded `POST` holding the field
//! `x-amzn-marketplace-token`. [`ResolveCustomerLayer`] redeems that token with
//! `ResolveCustomer` and hands your handler a [`ResolvedCustomer`].
//!
//! This example runs the real `AwsMarketplaceResolver` (the AWS SDK client)
//! against the crate's embedded Marketplace Metering emulator on 127.0.0.1, with
//! single-use tokens, and pushes simulated Marketplace posts through the app with
//! `tower::ServiceExt::oneshot`: no AWS account or credentials are needed.
//!
//! ```sh
//! cargo run --example axum_registration --features axum,test-util
//! ```
//!
//! In production, build the resolver from the seller account's AWS configuration
//! instead:
//!
//! ```ignore
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let resolver = tower_resolve_customer::AwsMarketplaceResolver::from_conf(&config);
//! ```

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Request, header::CONTENT_TYPE};
use axum::routing::post;
use axum::{Form, Router};
use tower::ServiceExt;
use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{ResolveCustomerLayer, ResolvedCustomer, TOKEN_FIELD};

/// The form field AWS Marketplace adds for free-trial offers (`free-trial`).
const OFFER_TYPE_FIELD: &str = "x-amzn-marketplace-offer-type";

/// The one token the emulator knows. Real tokens look alike: standard
/// base64, so `+`, `/` and `=` must be percent-encoded in the form body.
const DEMO_TOKEN: &str = "ZGVtbyB0b2tlbg+/Zm9yIG9mZmxpbmU+dXNl/ZXhhbXBsZQ==";

/// A well-formed token that AWS would not recognise.
const UNKNOWN_TOKEN: &str = "dW5rbm93bi10b2tlbg+/==";

/// The registration handler: it runs only once the token has been redeemed.
///
/// `ResolvedCustomer` comes from the request extensions the layer filled in. The
/// form body reaches the handler byte for byte, so it can still read the other
/// Marketplace fields (it deliberately ignores the token itself).
async fn register(
    customer: ResolvedCustomer,
    Form(fields): Form<HashMap<String, String>>,
) -> String {
    let offer_type = fields.get(OFFER_TYPE_FIELD).map_or("-", String::as_str);

    // A real handler would create or look up the account keyed by the buyer's AWS
    // account id and product code (or the license ARN), then redirect the browser
    // to your sign-up or welcome page.
    format!(
        "registered AWS account {}\nproduct:   {}\noffer:     {offer_type}\nlicense:   {}\nagreement: {}",
        customer.customer_aws_account_id(),
        customer.product_code(),
        customer.license_arn().unwrap_or("-"),
        customer.agreement_id().unwrap_or("-"),
    )
}

/// The body a buyer's browser posts: urlencoded exactly as a browser would.
fn marketplace_form(token: Option<&str>, offer_type: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    if let Some(token) = token {
        form.append_pair(TOKEN_FIELD, token);
    }
    if let Some(offer_type) = offer_type {
        form.append_pair(OFFER_TYPE_FIELD, offer_type);
    }
    form.finish()
}

/// Sends one simulated Marketplace `POST /register` through the app and prints
/// the answer.
async fn submit(app: &Router, step: &str, form: String) -> Result<(), Box<dyn std::error::Error>> {
    let request = Request::post("/register")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))?;
    let response = app.clone().oneshot(request).await?;

    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" ({v})"))
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;

    println!("{step}");
    println!("  -> {status}{content_type}");
    for line in String::from_utf8_lossy(&body).lines() {
        println!("     {line}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A local Marketplace Metering API that knows one token and, like the API
    // reference describes, refuses it as expired once it has been redeemed.
    let emulator = MeteringEmulator::start().await?;
    emulator.set_policy(RedemptionPolicy::SingleUse);
    emulator.register(
        DEMO_TOKEN,
        ResolvedCustomer::new("123456789012", "prod-demo123")
            .with_license_arn("arn:aws:license-manager::123456789012:license:l-0123456789abcdef0")
            .with_agreement_id("agmt-demo0123456789"),
    );
    // The real SDK-backed resolver, pointed at the emulator's loopback endpoint
    // with static test credentials.
    let resolver = emulator.resolver();

    // The registration app. `Router::layer` also wraps the router's fallback, so
    // it suits a router that serves only registration. In a larger app, use
    // `.route_layer(...)` instead: otherwise requests for unknown paths would be
    // answered "400 missing-token" rather than 404.
    let app = Router::new()
        .route("/register", post(register))
        .layer(ResolveCustomerLayer::new(resolver).allowed_product_codes(["prod-demo123"]));

    let calls = || emulator.calls_for(DEMO_TOKEN);

    submit(
        &app,
        "1. Marketplace POST with the demo token (free trial)",
        marketplace_form(Some(DEMO_TOKEN), Some("free-trial")),
    )
    .await?;
    println!("     upstream ResolveCustomer calls so far: {}", calls());

    submit(
        &app,
        "2. The same POST again (double submit or refresh)",
        marketplace_form(Some(DEMO_TOKEN), Some("free-trial")),
    )
    .await?;
    println!(
        "     upstream ResolveCustomer calls so far: {} (answered from the cache; the \
         single-use token would now be refused upstream)",
        calls()
    );

    submit(
        &app,
        "3. POST with a token AWS does not know",
        marketplace_form(Some(UNKNOWN_TOKEN), None),
    )
    .await?;

    submit(
        &app,
        "4. POST without a token",
        marketplace_form(None, Some("free-trial")),
    )
    .await?;

    Ok(())
}
