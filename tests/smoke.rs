use http::{Request, header::CONTENT_TYPE};
use http_body_util::BodyExt;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;
use tower_resolve_customer::{
    RegistrationToken, RequestBody, ResolveCustomerLayer, ResolvedCustomer,
};

#[tokio::test]
async fn form_token_resolves() {
    let layer = ResolveCustomerLayer::new(|t: RegistrationToken| async move {
        assert_eq!(t.expose(), "a+b/c==");
        Ok(ResolvedCustomer::new("123456789012", "prod-1"))
    });
    let svc = layer.layer(service_fn(|req: Request<RequestBody<String>>| async move {
        let c = req.extensions().get::<ResolvedCustomer>().cloned().unwrap();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, std::convert::Infallible>(http::Response::new(format!(
            "{} {}",
            c.customer_aws_account_id(),
            String::from_utf8(body.to_vec()).unwrap()
        )))
    }));
    let req = Request::post("/register")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            "x-amzn-marketplace-token=a%2Bb%2Fc%3D%3D&x-amzn-marketplace-offer-type=free-trial"
                .to_string(),
        )
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        b"123456789012 x-amzn-marketplace-token=a%2Bb%2Fc%3D%3D&x-amzn-marketplace-offer-type=free-trial"
    );
}
