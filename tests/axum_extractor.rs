//! The axum extractors and the layer inside an axum router.
#![cfg(feature = "axum")]

mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use common::*;
use http::Request;
use tower::ServiceExt;
use tower_resolve_customer::{ResolveCustomerLayer, ResolvedCustomer};

async fn register(customer: ResolvedCustomer) -> String {
    format!(
        "{} {}",
        customer.customer_aws_account_id(),
        customer.product_code()
    )
}

async fn maybe(customer: Option<ResolvedCustomer>) -> String {
    customer.map_or_else(
        || "anonymous".to_owned(),
        |c| c.customer_aws_account_id().to_owned(),
    )
}

fn form_request(uri: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header(http::header::CONTENT_TYPE, FORM)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn extractor_behind_the_layer() {
    let resolver = TestResolver::ok();
    let app = Router::new()
        .route("/register", post(register))
        .layer(ResolveCustomerLayer::new(resolver.clone()));
    let response = app
        .oneshot(form_request("/register", form_with_token("tok")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let expected = customer_for("tok");
    assert_eq!(
        text(response).await,
        format!("{} prod-test", expected.customer_aws_account_id())
    );
}

#[tokio::test]
async fn extractor_without_the_layer_is_a_500_naming_the_layer() {
    let app = Router::new().route("/register", post(register));
    let response = app
        .oneshot(form_request("/register", form_with_token("tok")))
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert!(text(response).await.contains("ResolveCustomerLayer"));
}

#[tokio::test]
async fn optional_extractor_with_optional_layer() {
    let resolver = TestResolver::ok();
    let app = Router::new()
        .route("/", get(maybe).post(maybe))
        .layer(ResolveCustomerLayer::new(resolver.clone()).optional());
    let response = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(text(response).await, "anonymous");
    let response = app
        .oneshot(form_request("/", form_with_token("tok")))
        .await
        .unwrap();
    assert_eq!(
        text(response).await,
        customer_for("tok").customer_aws_account_id()
    );
}

#[tokio::test]
async fn handler_reads_the_form_after_the_layer() {
    use std::collections::HashMap;
    let resolver = TestResolver::ok();
    let app = Router::new()
        .route(
            "/register",
            post(
                |customer: ResolvedCustomer,
                 axum::Form(form): axum::Form<HashMap<String, String>>| async move {
                    format!(
                        "{} {}",
                        customer.product_code(),
                        form["x-amzn-marketplace-offer-type"]
                    )
                },
            ),
        )
        .layer(ResolveCustomerLayer::new(resolver.clone()));
    let body = format!(
        "{}&x-amzn-marketplace-offer-type=free-trial",
        form_with_token(&realistic_token(1))
    );
    let response = app.oneshot(form_request("/register", body)).await.unwrap();
    assert_eq!(text(response).await, "prod-test free-trial");
}
