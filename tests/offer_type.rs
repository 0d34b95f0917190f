//! The offer type of the Marketplace form (`x-amzn-marketplace-offer-type`),
//! read in the same pass over the body as the token and handed to the
//! handler next to the customer: `free-trial`, absent, unknown values passed
//! through, and the body still reaching the handler byte for byte.

mod common;

use common::{Harness, TestResolver, form_post, realistic_token};
use tower_resolve_customer::{OfferType, ResolveCustomerLayer, TokenSource};

fn encoded(token: &str) -> String {
    form_urlencoded::byte_serialize(token.as_bytes()).collect()
}

#[tokio::test]
async fn the_offer_type_reaches_the_handler_next_to_the_customer() {
    let token = realistic_token(1);
    let harness = Harness::new(ResolveCustomerLayer::new(TestResolver::ok()));
    let t = encoded(&token);
    for (body, expected) in [
        (
            format!("x-amzn-marketplace-token={t}&x-amzn-marketplace-offer-type=free-trial"),
            Some(OfferType::FreeTrial),
        ),
        (
            format!("x-amzn-marketplace-offer-type=free-trial&x-amzn-marketplace-token={t}"),
            Some(OfferType::FreeTrial),
        ),
        (format!("x-amzn-marketplace-token={t}"), None),
        (
            format!("x-amzn-marketplace-token={t}&x-amzn-marketplace-offer-type=private+offer%21"),
            Some(OfferType::Other("private offer!".into())),
        ),
        // An encoded name is the same field; the first value counts.
        (
            format!(
                "x%2Damzn-marketplace-offer-type=free-trial&x-amzn-marketplace-token={t}&x-amzn-marketplace-offer-type=other"
            ),
            Some(OfferType::FreeTrial),
        ),
    ] {
        let response = harness.send(form_post(body.clone())).await;
        assert_eq!(response.status(), 200, "{body}");
        let seen = harness.requests().pop().unwrap();
        assert_eq!(seen.offer, expected, "{body}");
        assert!(seen.customer.is_some());
        assert_eq!(
            seen.body,
            body.as_bytes(),
            "the body reached the handler as sent"
        );
    }
}

#[tokio::test]
async fn a_token_from_a_header_leaves_the_offer_type_unread() {
    let token = realistic_token(2);
    let layer = ResolveCustomerLayer::new(TestResolver::ok())
        .token_source(TokenSource::header(tower_resolve_customer::TOKEN_HEADER));
    let harness = Harness::new(layer);
    let request = http::Request::post("/register")
        .header(tower_resolve_customer::TOKEN_HEADER, token.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x-amzn-marketplace-offer-type=free-trial".to_owned())
        .unwrap();
    assert_eq!(harness.send(request).await.status(), 200);
    assert_eq!(harness.requests().pop().unwrap().offer, None);
}

#[tokio::test]
async fn an_optional_layer_without_a_token_still_hands_on_the_offer_type() {
    let harness = Harness::new(ResolveCustomerLayer::new(TestResolver::ok()).optional());
    let response = harness
        .send(form_post(
            "x-amzn-marketplace-offer-type=free-trial&plan=pro",
        ))
        .await;
    assert_eq!(response.status(), 200);
    let seen = harness.requests().pop().unwrap();
    assert_eq!(
        (seen.customer, seen.offer),
        (None, Some(OfferType::FreeTrial))
    );
}
