//! The axum registration site of `examples/axum_registration`: in a real
//! headless browser, and at the HTTP level.
#![cfg(all(feature = "axum", feature = "test-util"))]

mod common;

#[path = "../examples/axum_registration/site.rs"]
#[allow(dead_code)]
mod site;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::Request;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use tower::ServiceExt;
use tower_resolve_customer::emulator::{Fault, MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{ResolveCustomerLayer, ResolvedCustomer};

use common::{form_post_body, form_with_token, missing_service, text};
use site::Store;

fn customer() -> ResolvedCustomer {
    ResolvedCustomer::new("123456789012", "prod-site")
        .with_license_arn("arn:aws:license-manager::123456789012:license:l-0site")
        .with_agreement_id("agmt-site")
}

/// A single-use emulator with one registered token, and the site in front of it.
async fn site_with_token() -> (MeteringEmulator, String, Arc<Store>, axum::Router) {
    let emulator = MeteringEmulator::start().await.unwrap();
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let token = MeteringEmulator::mint_token();
    emulator.register(&token, customer());
    let store = Arc::new(Store::default());
    let layer = ResolveCustomerLayer::new(emulator.resolver()).allowed_product_codes(["prod-site"]);
    let app = site::app(layer, Arc::clone(&store), Some(token.clone()));
    (emulator, token, store, app)
}

/// Debian's Chromium; required under CI, skipped (loudly) elsewhere.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        });
    if found.is_none() {
        missing_service("chromium");
    }
    found
}

/// Loads `url` in headless Chromium, lets its scripts and navigations run, and
/// returns the final page's DOM.
async fn browse(chromium: &PathBuf, profile: &std::path::Path, url: &str) -> String {
    let mut command = tokio::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .kill_on_drop(true);
    // A guard against a wedged browser, not a synchronisation point.
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium finished")
        .expect("chromium ran");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_registers_in_a_real_browser_and_a_double_submit_still_lands() {
    let Some(chromium) = chromium() else { return };
    let (emulator, token, store, app) = site_with_token().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let profile = std::env::temp_dir().join(format!(
        "tower-resolve-customer-chromium-{}-{}",
        std::process::id(),
        addr.port()
    ));
    std::fs::create_dir_all(&profile).unwrap();
    let url = format!("http://{addr}/marketplace-simulator");
    for attempt in ["first visit", "the same submission again"] {
        let dom = browse(&chromium, &profile, &url).await;
        assert!(dom.contains("<h1>Welcome</h1>"), "{attempt}: {dom}");
        assert!(
            dom.contains("<dd id=\"account\">123456789012</dd>"),
            "{attempt}: {dom}"
        );
        assert!(
            dom.contains("<dd id=\"product\">prod-site</dd>"),
            "{attempt}: {dom}"
        );
        assert!(
            !dom.contains(&token[..40]),
            "the welcome page shows no token"
        );
    }
    assert_eq!(emulator.calls_for(&token), 1);
    assert_eq!(emulator.redemptions_of(&token), 1);
    assert_eq!(store.accounts(), 1);
    server.abort();
    let _ = std::fs::remove_dir_all(&profile);
}

/// What AWS Marketplace posts for a free trial.
fn marketplace_form(token: &str) -> String {
    format!(
        "{}&{}=free-trial",
        form_with_token(token),
        tower_resolve_customer::OFFER_TYPE_FIELD
    )
}

fn post_form(body: String) -> Request<Body> {
    form_post_body(Body::from(body))
}

#[tokio::test]
async fn registration_redirects_with_an_opaque_session_cookie() {
    let (_emulator, token, _store, app) = site_with_token().await;
    let response = app
        .clone()
        .oneshot(post_form(marketplace_form(&token)))
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/welcome");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    assert!(
        !cookie.contains(&token[..20]),
        "the cookie is not the token"
    );

    let session = cookie.split(';').next().unwrap();
    let welcome = app
        .oneshot(
            Request::get("/welcome")
                .header("cookie", session)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(welcome.status(), 200);
    let page = text(welcome).await;
    assert!(
        page.contains("123456789012") && page.contains("free-trial"),
        "{page}"
    );
}

#[tokio::test]
async fn failures_render_pages_for_the_buyer_with_the_right_status() {
    let (emulator, token, _store, app) = site_with_token().await;

    // Expired (here: redeemed elsewhere first, single-use).
    emulator
        .resolver()
        .client()
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await
        .unwrap();
    let response = app
        .clone()
        .oneshot(post_form(marketplace_form(&token)))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = text(response).await;
    assert!(
        page.contains("expired") && page.contains("Set up your account"),
        "{page}"
    );

    // Throttled upstream: try again later.
    let fresh = MeteringEmulator::mint_token();
    emulator.register(&fresh, customer());
    emulator.inject_times(Fault::Throttle, 3);
    let response = app
        .clone()
        .oneshot(post_form(marketplace_form(&fresh)))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key(RETRY_AFTER));
    assert!(text(response).await.contains("try again"));

    // No token at all; no session on the welcome page.
    let response = app.clone().oneshot(post_form(String::new())).await.unwrap();
    assert_eq!(response.status(), 400);
    let response = app
        .oneshot(Request::get("/welcome").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// The site's replay policy: the request that redeemed the token and replays
/// within the window (a double submit, a refresh) continue the onboarding
/// with a session; a later replay of the same token gets no session and is
/// asked to sign in.
#[tokio::test]
async fn a_late_replay_of_the_token_is_asked_to_sign_in() {
    let emulator = MeteringEmulator::start().await.unwrap();
    emulator.set_policy(RedemptionPolicy::SingleUse);
    let token = MeteringEmulator::mint_token();
    emulator.register(&token, customer());
    // Two sites over one layer (one cache): a lenient one with the default
    // window, and one whose window has already passed for any replay.
    let layer = ResolveCustomerLayer::new(emulator.resolver());
    let lenient = site::app(layer.clone(), Arc::new(Store::default()), None);
    let strict_store = Arc::new(Store::with_replay_window(Duration::ZERO));
    let strict = site::app(layer, Arc::clone(&strict_store), None);

    let first = strict
        .clone()
        .oneshot(post_form(marketplace_form(&token)))
        .await
        .unwrap();
    assert_eq!(first.status(), 303, "the redeeming request is onboarded");
    assert!(first.headers().contains_key(SET_COOKIE));
    assert_eq!(strict_store.accounts(), 1);

    let late = strict
        .oneshot(post_form(marketplace_form(&token)))
        .await
        .unwrap();
    assert_eq!(late.status(), 200);
    assert!(!late.headers().contains_key(SET_COOKIE), "no session");
    assert!(text(late).await.contains("Sign in"));

    let within = lenient
        .oneshot(post_form(marketplace_form(&token)))
        .await
        .unwrap();
    assert_eq!(within.status(), 303, "a replay within the window continues");
    assert!(within.headers().contains_key(SET_COOKIE));
    assert_eq!(emulator.redemptions_of(&token), 1);
}
