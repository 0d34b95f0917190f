//! An AWS Marketplace SaaS registration site with axum, run as several
//! replicas that share one resolution store.
//!
//! When a buyer subscribes to your SaaS product, AWS Marketplace sends their
//! browser to your registration URL with an urlencoded `POST` holding the field
//! `x-amzn-marketplace-token`. `ResolveCustomerLayer` redeems that token with
//! `ResolveCustomer` and hands the handler a `ResolvedCustomer`; the handler
//! records the account, sets an opaque session cookie and redirects (303) to
//! `/welcome`.
//!
//! Behind a load balancer, a buyer's double submit may reach another replica
//! than the first submission did. So this example starts `--replicas N` copies
//! of the site in one process (2 by default), each on its own port with its own
//! `Resolutions` (its own cache), all sharing one `ResolutionStore` (an
//! in-process `MemoryStore`, each replica on its own link, or Redis with
//! `--redis-url`) and one account database (the seller's, so an account
//! registered on one replica is seen by all). The store lets the fleet redeem a
//! token once. Every response carries an `x-replica` header naming the replica
//! that answered.
//!
//! Offline by default: the real SDK-backed resolver talks to the crate's embedded
//! Marketplace Metering emulator on 127.0.0.1 (single-use tokens, as the API
//! reference describes), and `/marketplace-simulator` on each replica plays AWS
//! Marketplace's part: a page that auto-submits the registration form to that
//! replica.
//!
//! ```sh
//! # The buyer's registration on replica 1 and a double submit on replica 2,
//! # over HTTP; print what happened and exit (non-zero unless the token was
//! # redeemed exactly once):
//! cargo run --example axum_registration --features axum,test-util -- --demo
//! # Three replicas, free ports:
//! cargo run --example axum_registration --features axum,test-util -- --demo --replicas 3 --port 0
//! # The replicas sharing Redis instead of the memory store:
//! cargo run --example axum_registration --features axum,test-util,redis -- --demo --redis-url redis://127.0.0.1:6379/
//! # Serve until Ctrl-C; open the printed simulator URLs in a browser:
//! cargo run --example axum_registration --features axum,test-util
//! # Against real AWS (region, profile, credentials and AWS_ENDPOINT_URL from
//! # the usual AWS configuration chain):
//! cargo run --example axum_registration --features axum,test-util -- --aws
//! ```

mod site;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::http::HeaderValue;
use axum::middleware::map_response;
use axum::response::Response;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_resolve_customer::emulator::{MeteringEmulator, RedemptionPolicy};
use tower_resolve_customer::{
    AwsMarketplaceResolver, MemoryStore, Resolutions, ResolutionsBuilder, ResolvedCustomer,
};
use tracing_subscriber::EnvFilter;

use site::{DEMO_TOKEN_VALIDITY, Store};

/// The response header naming the replica that answered (1, 2, ...).
const REPLICA_HEADER: &str = "x-replica";

/// The demo buyer's product, the only one the offline site accepts.
const DEMO_PRODUCT: &str = "prod-demo123";
/// The demo buyer's AWS account.
const DEMO_ACCOUNT: &str = "123456789012";

#[derive(Parser)]
#[command(about = "An AWS Marketplace SaaS registration site, run as several replicas")]
struct Args {
    /// Resolve tokens with real AWS (the default AWS configuration chain)
    /// instead of the embedded emulator.
    #[arg(long)]
    aws: bool,
    /// Port of the first replica, on 127.0.0.1; the others take the next
    /// ports (0 picks free ones).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// How many replicas of the site to run, each with its own cache, all
    /// sharing one resolution store and one account database.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..))]
    replicas: u16,
    /// Share resolutions through the Redis server at URL instead of an
    /// in-process memory store (needs the `redis` feature).
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Run a simulated buyer's registration and double submit over HTTP (on
    /// replicas 1 and 2), print it, and exit (offline mode only).
    #[arg(long, conflicts_with = "aws")]
    demo: bool,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    // The SDK logs signed requests, token included, at TRACE: keep it quiet.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn"))
        .add_directive("aws_smithy_runtime=info".parse()?)
        .add_directive("aws_sigv4=info".parse()?);
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let shared = SharedStore::from_args(args.redis_url.as_deref())?;
    // The seller's database: one for the whole fleet, like a real deployment's.
    let accounts = Arc::new(Store::default());

    // Real AWS, or the emulator with one registered (single-use) token that
    // every replica's simulator page submits.
    let (aws, emulator) = if args.aws {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        (Some(AwsMarketplaceResolver::from_conf(&config)), None)
    } else {
        let local = MeteringEmulator::start().await?;
        local.set_policy(RedemptionPolicy::SingleUse);
        let token = MeteringEmulator::mint_token();
        local.register_for(&token, demo_customer(), DEMO_TOKEN_VALIDITY);
        (None, Some((local, token)))
    };

    let mut replicas = Vec::with_capacity(usize::from(args.replicas));
    for number in 1..=args.replicas {
        let resolver = match (&aws, &emulator) {
            (Some(aws), _) => aws.clone(),
            (None, Some((local, _))) => local.resolver(),
            (None, None) => unreachable!("either AWS or the emulator"),
        };
        // Each replica: its own resolutions (cache, single flight, limits)
        // over its own connection to the shared store.
        let resolutions = shared.attach(Resolutions::builder(resolver)).await?.build();
        let mut layer = resolutions.layer();
        if emulator.is_some() {
            layer = layer.allowed_product_codes([DEMO_PRODUCT]);
        }
        let simulator_token = emulator.as_ref().map(|(_, token)| token.clone());
        let app = site::app(layer, Arc::clone(&accounts), simulator_token).layer(map_response(
            move |mut response: Response| async move {
                response
                    .headers_mut()
                    .insert(REPLICA_HEADER, HeaderValue::from(number));
                response
            },
        ));

        let port = match args.port {
            0 => 0,
            first => first
                .checked_add(number - 1)
                .ok_or("--port plus --replicas runs past port 65535")?,
        };
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("replica {number}: cannot listen on 127.0.0.1:{port}: {e}"))?;
        let addr = listener.local_addr()?;
        println!("Replica {number} listening on http://{addr}/ (POST /register)");
        replicas.push(Replica {
            addr,
            listener,
            app,
        });
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    println!(
        "Shared by {}: one account database and one resolution store ({})",
        replicas_text(addrs.len()),
        shared.describe()
    );
    if let Some((local, _)) = &emulator {
        println!("Marketplace Metering emulator at {}", local.endpoint_url());
        println!(
            "Open http://{}/marketplace-simulator to subscribe as a buyer would.",
            addrs[0]
        );
        if let Some(second) = addrs.get(1) {
            println!(
                "Then open http://{second}/marketplace-simulator: the same token, submitted to replica 2 (a double submit)."
            );
        }
    }

    if args.demo {
        let (local, token) = emulator.as_ref().expect("--demo runs offline");
        let servers: Vec<_> = replicas
            .into_iter()
            .map(|r| tokio::spawn(async move { axum::serve(r.listener, r.app).await }))
            .collect();
        println!();
        let outcome = demo(&addrs).await;
        let (calls, redemptions) = (local.calls_for(token), local.redemptions_of(token));
        println!(
            "Accounts registered: {}; ResolveCustomer calls for the buyer's token: {calls}, redemptions: {redemptions}",
            accounts.accounts(),
        );
        println!(
            "Resolution store: {}, shared by {}",
            shared.describe(),
            replicas_text(addrs.len())
        );
        for server in servers {
            server.abort();
        }
        outcome?;
        if (calls, redemptions) != (1, 1) {
            return Err(format!(
                "expected exactly 1 ResolveCustomer call and 1 redemption for the buyer's token, \
                 got {calls} and {redemptions}"
            )
            .into());
        }
        return Ok(());
    }

    // Serve every replica until Ctrl-C.
    let mut servers = tokio::task::JoinSet::new();
    for r in replicas {
        servers.spawn(async move {
            axum::serve(r.listener, r.app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
        });
    }
    while let Some(served) = servers.join_next().await {
        served??;
    }
    Ok(())
}

/// One replica of the site, bound and ready to serve.
struct Replica {
    addr: SocketAddr,
    listener: TcpListener,
    app: Router,
}

/// The resolution store the replicas share.
enum SharedStore {
    /// An in-process store; each replica gets its own link to it.
    Memory(MemoryStore),
    /// The Redis server at this URL; each replica gets its own `RedisStore`.
    #[cfg(feature = "redis")]
    Redis(String),
}

/// The prefix of the example's Redis keys, the same on every replica.
#[cfg(feature = "redis")]
const REDIS_KEY_PREFIX: &str = "axum-registration-example:";

impl SharedStore {
    fn from_args(redis_url: Option<&str>) -> Result<Self, Error> {
        match redis_url {
            None => Ok(Self::Memory(MemoryStore::new())),
            #[cfg(feature = "redis")]
            Some(url) => {
                // Parse it once up front, so a typo fails before anything starts.
                tower_resolve_customer::RedisStore::new(url)?;
                Ok(Self::Redis(url.to_owned()))
            }
            #[cfg(not(feature = "redis"))]
            Some(_) => Err("--redis-url needs the `redis` feature: \
                 cargo run --example axum_registration --features axum,test-util,redis -- --redis-url URL"
                .into()),
        }
    }

    /// What to print: never the password of a Redis URL.
    fn describe(&self) -> String {
        match self {
            Self::Memory(_) => "memory store".to_owned(),
            #[cfg(feature = "redis")]
            Self::Redis(url) => format!("Redis at {}", without_password(url)),
        }
    }

    /// One replica's own connection to the store, set on its `builder`.
    async fn attach(&self, builder: ResolutionsBuilder) -> Result<ResolutionsBuilder, Error> {
        match self {
            Self::Memory(store) => Ok(builder.store(store.link())),
            #[cfg(feature = "redis")]
            Self::Redis(url) => {
                use std::time::Duration;
                use tower_resolve_customer::{RedisStore, RegistrationToken, ResolutionStore};

                let store = RedisStore::new(url)?.key_prefix(REDIS_KEY_PREFIX);
                // Fail at start-up, not at the buyer's first submission, when
                // the server does not answer.
                let probe = RegistrationToken::new("reachability0probe")?.digest();
                let where_ = self.describe();
                match tokio::time::timeout(Duration::from_secs(2), store.read(probe)).await {
                    Ok(Ok(_)) => Ok(builder.store(store)),
                    Ok(Err(e)) => Err(format!("{where_}: {e}").into()),
                    Err(_) => Err(format!("{where_} did not answer within 2 s").into()),
                }
            }
        }
    }
}

/// `url` with its password (in the user info, or a `pass`/`password` query
/// parameter) replaced by `***`.
#[cfg(feature = "redis")]
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<a URL that did not parse>".to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) =
        before_query.split_at(before_query.find('/').unwrap_or(before_query.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let mut shown = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if key.eq_ignore_ascii_case("pass") || key.eq_ignore_ascii_case("password") =>
                {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

/// "1 replica", "2 replicas".
fn replicas_text(count: usize) -> String {
    match count {
        1 => "1 replica".to_owned(),
        n => format!("{n} replicas"),
    }
}

fn demo_customer() -> ResolvedCustomer {
    ResolvedCustomer::new(DEMO_ACCOUNT, DEMO_PRODUCT)
        .with_license_arn("arn:aws:license-manager::123456789012:license:l-0123456789abcdef0")
        .with_agreement_id("agmt-demo0123456789")
}

/// A buyer's browser, by hand: load replica 1's simulator, post its form to
/// replica 1 and follow the redirect with the cookie, then post the same form
/// to replica 2 (a double submit that the load balancer sent elsewhere) and
/// follow that redirect too.
async fn demo(replicas: &[SocketAddr]) -> Result<(), Error> {
    let second = if replicas.len() > 1 { 2 } else { 1 };

    println!("1. The buyer arrives from AWS Marketplace, at replica 1");
    let page = step(replicas, 1, "GET", "/marketplace-simulator", &[], "", 200).await?;
    let form = simulator_form(&page.body).ok_or("the simulator page has no form")?;
    register(replicas, 1, &form).await?;

    println!("2. The same form posted again (double submit), at replica {second}");
    register(replicas, second, &form).await
}

/// Posts the registration form to `replica`, follows its redirect with its
/// session cookie, and checks the welcome page shows the buyer.
async fn register(replicas: &[SocketAddr], replica: usize, form: &str) -> Result<(), Error> {
    let form_type = [("content-type", "application/x-www-form-urlencoded")];
    let posted = step(
        replicas,
        replica,
        "POST",
        "/register",
        &form_type,
        form,
        303,
    )
    .await?;
    let cookie = posted
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .ok_or("no session cookie")?
        .to_owned();
    let location = posted.header("location").ok_or("no redirect")?.to_owned();
    let welcome = step(
        replicas,
        replica,
        "GET",
        &location,
        &[("cookie", &cookie)],
        "",
        200,
    )
    .await?;
    let account = between(&welcome.body, "<dd id=\"account\">", "</dd>").unwrap_or("?");
    let product = between(&welcome.body, "<dd id=\"product\">", "</dd>").unwrap_or("?");
    println!("   welcome page: AWS account {account}, product {product}");
    if (account, product) != (DEMO_ACCOUNT, DEMO_PRODUCT) {
        return Err(format!("replica {replica}'s welcome page does not show the buyer").into());
    }
    Ok(())
}

/// One request to replica `replica` (1-based), printed with the status and the
/// replica that answered; an error unless the status is `expected` and the
/// answer came from that replica.
async fn step(
    replicas: &[SocketAddr],
    replica: usize,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    expected: u16,
) -> Result<Reply, Error> {
    let reply = http(replicas[replica - 1], method, path, headers, body).await?;
    let answered_by = reply.header(REPLICA_HEADER).unwrap_or("?").to_owned();
    println!(
        "   {method} {path} -> {}, from replica {answered_by}",
        reply.status_line
    );
    let status = reply.status_line.split_whitespace().nth(1);
    if status != Some(expected.to_string().as_str()) {
        return Err(format!("{method} {path} on replica {replica}: expected {expected}").into());
    }
    if answered_by != replica.to_string() {
        return Err(format!("{method} {path} was sent to replica {replica}").into());
    }
    Ok(reply)
}

/// The simulator's form fields, urlencoded as a browser would.
fn simulator_form(html: &str) -> Option<String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    let mut rest = html;
    while let Some(start) = rest.find("<input type=\"hidden\" name=\"") {
        rest = &rest[start..];
        let name = between(rest, "name=\"", "\"")?;
        let value = between(rest, "value=\"", "\"")?;
        form.append_pair(name, value);
        rest = &rest[1..];
    }
    Some(form.finish())
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

struct Reply {
    status_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 exchange on a fresh connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, Error> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("malformed response")?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status_line,
        headers,
        body: body.to_owned(),
    })
}
