//! The AWS Lambda example's function (`examples/lambda_registration`), driven
//! by the events Lambda hands it: API Gateway REST APIs (payload 1.0), HTTP
//! APIs (payload 2.0), function URLs and Application Load Balancer target
//! groups, each with the Marketplace form base64-encoded as API Gateway
//! delivers form posts. Every event goes through `lambda_http`'s own adapter
//! (what `lambda_http::run` runs), and every answer is read back as the JSON
//! Lambda returns to the caller.
//!
//! Each "execution environment" is a function of its own (its own
//! `Resolutions` and cache) over one `DynamoDbStore` table on a
//! DynamoDB-compatible server the test starts on loopback; the emulator
//! redeems tokens once (single-use). Under `CI=true` a missing server fails
//! the tests; elsewhere they are skipped with a note.

#![cfg(all(feature = "axum", feature = "dynamodb", feature = "test-util"))]

mod common;

#[allow(dead_code)]
#[path = "../examples/axum_registration/site.rs"]
mod site;

#[allow(dead_code)]
#[path = "../examples/lambda_registration/app.rs"]
mod app;

use std::convert::Infallible;

use common::dynamodb_server::DynamoDbServer;
use common::lambda_event::{
    KINDS, Kind, body, event, form_event, header, session_cookie, status, urlencode,
};
use common::{customer_for, within};
use http::{Request, Response};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::Value;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};
use tower_resolve_customer::emulator::MeteringEmulator;
use tower_resolve_customer::{
    DynamoDbStore, RegistrationToken, RequestBody, ResolutionStore, ResolvedCustomer, TOKEN_FIELD,
    TOKEN_HEADER,
};

/// Runs `event` through `service` as `lambda_http::run` does, and gives the
/// JSON Lambda returns.
async fn invoke<S, B>(service: S, event: Value) -> Value
where
    S: Service<lambda_http::Request, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    let request: LambdaRequest = serde_json::from_value(event).expect("a Lambda HTTP event");
    let mut adapter = Adapter::from(service);
    let response = adapter
        .ready()
        .await
        .unwrap()
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(response).expect("a Lambda response")
}

/// One execution environment: its own `Resolutions` (and cache) and its own
/// DynamoDB client, over the shared table.
fn environment(server: &DynamoDbServer, table: &str, emulator: &MeteringEmulator) -> Function {
    let store = DynamoDbStore::new(server.client(), table);
    let resolutions = app::resolutions(emulator.in_process_resolver(), store);
    let routes = app::routes(
        &resolutions,
        app::Accounts::new(server.client(), table),
        None,
    );
    BoxCloneService::new(app::function(routes))
}

/// The example's function, as one execution environment runs it.
type Function = BoxCloneService<lambda_http::Request, axum::response::Response, Infallible>;

/// A server, a table, and the emulator in single-use mode with `tokens`
/// registered.
async fn setup(tokens: usize) -> Option<(DynamoDbServer, String, MeteringEmulator, Vec<String>)> {
    let (server, table) = DynamoDbServer::start_with_table().await?;
    let (emulator, tokens) = common::single_use_emulator(tokens).await;
    Some((server, table, emulator, tokens))
}

/// Every kind of event: the form POST gets a 303 to the welcome page with a
/// session cookie, and the welcome page (served by another execution
/// environment) shows the buyer's account and the free-trial offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marketplace_form_registers_the_buyer_through_every_kind_of_event() {
    let Some((server, table, emulator, tokens)) = setup(KINDS.len()).await else {
        return;
    };
    let first = environment(&server, &table, &emulator);
    let second = environment(&server, &table, &emulator);
    for (kind, token) in KINDS.into_iter().zip(&tokens) {
        let registered = invoke(first.clone(), form_event(kind, token)).await;
        assert_eq!(status(&registered), 303, "{kind:?}: {registered}");
        assert_eq!(
            header(&registered, "location").as_deref(),
            Some("welcome"),
            "{kind:?}"
        );
        if let Kind::Alb = kind {
            assert_eq!(registered["statusDescription"], "303 See Other");
        }
        let cookie = session_cookie(&registered).unwrap_or_else(|| panic!("{kind:?}: no cookie"));
        let welcome = invoke(
            second.clone(),
            event(kind, "GET", "/welcome", &[], b"", Some(&cookie)),
        )
        .await;
        assert_eq!(status(&welcome), 200, "{kind:?}: {welcome}");
        let page = String::from_utf8(body(&welcome)).unwrap();
        let account = customer_for(token).customer_aws_account_id().to_owned();
        assert!(
            page.contains(&format!("<dd id=\"account\">{account}</dd>")),
            "{kind:?}: {page}"
        );
        assert!(page.contains("free-trial"), "{kind:?}: {page}");
        assert!(!page.contains(token.as_str()) && !cookie.contains(token.as_str()));
        assert_eq!(emulator.redemptions_of(token), 1, "{kind:?}");
    }
}

/// The handler behind the registration layer reads the request body exactly
/// as the buyer's browser sent it (API Gateway base64-encodes it; `lambda_http`
/// decodes it), whatever the event's kind, with the customer beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_reads_the_body_byte_for_byte_from_every_kind_of_event() {
    let Some((server, table, emulator, tokens)) = setup(KINDS.len()).await else {
        return;
    };
    let store = DynamoDbStore::new(server.client(), &table);
    let resolutions = app::resolutions(emulator.in_process_resolver(), store);
    let echo = tower::service_fn(
        |request: Request<RequestBody<axum::body::Body>>| async move {
            let account = request
                .extensions()
                .get::<ResolvedCustomer>()
                .map(|c| c.customer_aws_account_id().to_owned())
                .unwrap_or_default();
            let bytes =
                axum::body::to_bytes(axum::body::Body::new(request.into_body()), usize::MAX)
                    .await
                    .unwrap();
            let mut response = Response::new(axum::body::Body::from(bytes));
            response
                .headers_mut()
                .insert("x-account", account.parse().unwrap());
            response
                .headers_mut()
                .insert("content-type", "application/octet-stream".parse().unwrap());
            Ok::<_, Infallible>(response)
        },
    );
    let layered = tower::ServiceBuilder::new()
        .map_request(|request: lambda_http::Request| request.map(axum::body::Body::new))
        .layer(resolutions.layer())
        .service(echo);
    for (kind, token) in KINDS.into_iter().zip(&tokens) {
        // Fields before and after the token, escapes, a `+`, bytes that are
        // not UTF-8, and a trailing newline.
        let mut sent = format!(
            "plan=pro+annual&note=caf%C3%A9%20%26%20more&{TOKEN_FIELD}={}&x-amzn-marketplace-offer-type=free-trial&raw=",
            urlencode(token)
        )
        .into_bytes();
        sent.extend_from_slice(&[0xff, 0xfe, b'\n']);
        let response = invoke(
            layered.clone(),
            event(
                kind,
                "POST",
                "/register",
                &[("content-type", "application/x-www-form-urlencoded")],
                &sent,
                None,
            ),
        )
        .await;
        assert_eq!(status(&response), 200, "{kind:?}: {response}");
        assert_eq!(body(&response), sent, "{kind:?}");
        assert_eq!(
            header(&response, "x-account").as_deref(),
            Some(customer_for(token).customer_aws_account_id()),
            "{kind:?}"
        );
    }
}

/// The header-token route answers JSON with the customer, from every kind of
/// event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_in_a_header_is_resolved_from_every_kind_of_event() {
    let Some((server, table, emulator, tokens)) = setup(KINDS.len()).await else {
        return;
    };
    let function = environment(&server, &table, &emulator);
    for (kind, token) in KINDS.into_iter().zip(&tokens) {
        let response = invoke(
            function.clone(),
            event(
                kind,
                "POST",
                "/api/register",
                &[(TOKEN_HEADER.as_str(), token)],
                b"",
                None,
            ),
        )
        .await;
        assert_eq!(status(&response), 200, "{kind:?}: {response}");
        let json: Value = serde_json::from_slice(&body(&response)).unwrap();
        assert_eq!(
            json["CustomerAWSAccountId"],
            customer_for(token).customer_aws_account_id(),
            "{kind:?}"
        );
    }
}

/// Refused registrations get the site's HTML pages with the layer's status,
/// from every kind of event: no token (400), a token AWS does not know
/// (400, `InvalidTokenException`), and a form too garbled to hold a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_pages_with_their_status_from_every_kind_of_event() {
    let Some((server, table, emulator, _)) = setup(0).await else {
        return;
    };
    let function = environment(&server, &table, &emulator);
    let unknown = MeteringEmulator::mint_token();
    for kind in KINDS {
        for (what, form, expected_status, expected_title) in [
            (
                "no token",
                "plan=pro".to_owned(),
                400,
                "Registration link not recognised",
            ),
            (
                "an unknown token",
                format!("{TOKEN_FIELD}={}", urlencode(&unknown)),
                400,
                "Registration link not recognised",
            ),
            (
                "two tokens",
                format!("{TOKEN_FIELD}=a{0}&{TOKEN_FIELD}=b{0}", urlencode(&unknown)),
                400,
                "Registration failed",
            ),
        ] {
            let response = invoke(
                function.clone(),
                event(
                    kind,
                    "POST",
                    "/register",
                    &[("content-type", "application/x-www-form-urlencoded")],
                    form.as_bytes(),
                    None,
                ),
            )
            .await;
            assert_eq!(
                status(&response),
                expected_status,
                "{kind:?}, {what}: {response}"
            );
            assert_eq!(
                header(&response, "content-type").as_deref(),
                Some("text/html; charset=utf-8"),
                "{kind:?}, {what}"
            );
            let page = String::from_utf8(body(&response)).unwrap();
            assert!(page.contains(expected_title), "{kind:?}, {what}: {page}");
            assert!(
                !page.contains(&unknown),
                "{kind:?}, {what}: the token shown"
            );
        }
    }
    assert_eq!(
        emulator.calls_for(&unknown),
        1,
        "the unknown token's refusal was shared"
    );
}

/// A buyer's registration and its double submit reach two execution
/// environments at once: both get the 303, and AWS redeemed the token once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_submit_across_two_execution_environments_is_redeemed_once() {
    let Some((server, table, emulator, tokens)) = setup(4).await else {
        return;
    };
    let first = environment(&server, &table, &emulator);
    let second = environment(&server, &table, &emulator);
    for (token, (kind_a, kind_b)) in tokens.iter().zip([
        (Kind::HttpApi, Kind::HttpApi),
        (Kind::RestApi, Kind::FunctionUrl),
        (Kind::Alb, Kind::HttpApi),
        (Kind::FunctionUrl, Kind::RestApi),
    ]) {
        let (a, b) = within(
            "both invocations",
            futures_join(
                invoke(first.clone(), form_event(kind_a, token)),
                invoke(second.clone(), form_event(kind_b, token)),
            ),
        )
        .await;
        assert_eq!(status(&a), 303, "{a}");
        assert_eq!(status(&b), 303, "{b}");
        assert_eq!(emulator.redemptions_of(token), 1);
        assert_eq!(emulator.calls_for(token), 1);
    }
}

async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

/// Lambda freezes an execution environment once its response is returned:
/// nothing the function left to do runs until the next invocation, if ever.
/// Environment A answers the buyer on a runtime of its own that is then
/// dropped (frozen for good); the answer is already in the table, so the
/// double submit on environment B gets the customer without a second
/// redemption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_is_in_the_table_before_the_response_leaves() {
    let Some((server, table, emulator, tokens)) = setup(1).await else {
        return;
    };
    let token = tokens[0].clone();
    let frozen = {
        let (server_addr, table) = (server.addr(), table.clone());
        let resolver = emulator.in_process_resolver();
        let token = token.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let response = runtime.block_on(async {
                let client = DynamoDbServer::client_for(server_addr);
                let store = DynamoDbStore::new(client.clone(), &table);
                let resolutions = app::resolutions(resolver, store);
                let routes = app::routes(&resolutions, app::Accounts::new(client, &table), None);
                // The header route answers as soon as the layer hands it the
                // customer (the form route's own account writes would give
                // a late publish time to land).
                let request = event(
                    Kind::HttpApi,
                    "POST",
                    "/api/register",
                    &[(TOKEN_HEADER.as_str(), &token)],
                    b"",
                    None,
                );
                invoke(app::function(routes), request).await
            });
            // The response has left: freeze the environment for good.
            drop(runtime);
            response
        })
    };
    let response = tokio::task::spawn_blocking(move || frozen.join().unwrap())
        .await
        .unwrap();
    assert_eq!(status(&response), 200, "{response}");

    let stored = DynamoDbStore::new(server.client(), &table)
        .read(
            RegistrationToken::new(token.as_str())
                .expect("a valid token")
                .digest(),
        )
        .await
        .expect("the table answers")
        .expect("the answer was published before the response");
    assert_eq!(stored.customer(), Some(&customer_for(&token)));

    let second = environment(&server, &table, &emulator);
    let resubmitted = invoke(second, form_event(Kind::RestApi, &token)).await;
    assert_eq!(status(&resubmitted), 303, "{resubmitted}");
    assert_eq!(emulator.redemptions_of(&token), 1);
}
