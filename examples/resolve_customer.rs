//! `resolve_customer`: a command-line twin of `aws meteringmarketplace
//! resolve-customer`, for sellers debugging an AWS Marketplace registration
//! token.
//!
//! It takes the AWS CLI v2's options and prints what the AWS CLI prints: the
//! same JSON, text and table output, the same error lines and exit codes (252
//! usage, 253 configuration, 254 service error, 255 anything else). The token
//! itself is never printed, not even by `--debug`.
//!
//! Fully offline, against the crate's embedded Marketplace Metering emulator
//! (a demo customer with a freshly minted token):
//!
//! ```sh
//! cargo run --example resolve_customer --features test-util -- --emulator
//! cargo run --example resolve_customer --features test-util -- --emulator --output table --debug
//! ```
//!
//! Against AWS, with the seller account's credentials from the usual sources
//! (environment, `--profile`, SSO, instance roles, ...):
//!
//! ```sh
//! cargo run --example resolve_customer --features test-util -- \
//!     --aws --region us-east-1 --registration-token "$TOKEN"
//! cargo run --example resolve_customer --features test-util -- \
//!     --aws --cli-input-json file://input.json --output text
//! cargo run --example resolve_customer --features test-util -- --generate-cli-skeleton
//! cargo run --example resolve_customer --features test-util -- \
//!     --emulator --query '{Account: CustomerAWSAccountId, Agreement: Metadata.AgreementId}' --output table
//! ```

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_marketplacemetering::Client;
use aws_sdk_marketplacemetering::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_marketplacemetering::config::timeout::TimeoutConfig;
use aws_sdk_marketplacemetering::config::{
    Builder, ConfigBag, Intercept, ProvideCredentials, Region, RuntimeComponents, SharedHttpClient,
};
use aws_sdk_marketplacemetering::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_marketplacemetering::operation::resolve_customer::{
    ResolveCustomerError, ResolveCustomerOutput,
};
use aws_sdk_marketplacemetering::types::Metadata;
use clap::{Parser, ValueEnum};
use serde_json::Value;
use tower_resolve_customer::ResolvedCustomer;
use tower_resolve_customer::emulator::MeteringEmulator;

const OPERATION: &str = "ResolveCustomer";

/// Resolves an AWS Marketplace SaaS registration token to the buyer's AWS
/// account id, product code, license ARN and agreement id, like `aws
/// meteringmarketplace resolve-customer`.
#[derive(Parser)]
#[command(name = "resolve_customer", version)]
struct Cli {
    /// The registration token the buyer's browser posted to your registration
    /// URL (form field `x-amzn-marketplace-token`).
    #[arg(long, value_name = "value")]
    registration_token: Option<String>,
    /// `{"RegistrationToken": "..."}`, inline or as `file://path`;
    /// --registration-token overrides it.
    #[arg(long, value_name = "value")]
    cli_input_json: Option<String>,
    /// `RegistrationToken: ...` as YAML, inline or as `file://path`;
    /// --registration-token overrides it.
    #[arg(long, value_name = "value", conflicts_with = "cli_input_json")]
    cli_input_yaml: Option<String>,
    /// Prints a sample input (JSON, the default, or YAML) or output without
    /// calling AWS.
    #[arg(long, value_name = "value", value_enum, num_args = 0..=1, default_missing_value = "input")]
    generate_cli_skeleton: Option<Skeleton>,
    /// A JMESPath query to filter the response data.
    #[arg(long, value_name = "value")]
    query: Option<String>,
    /// Does not sign requests: no credentials are loaded.
    #[arg(long)]
    no_sign_request: bool,
    /// The CA certificate bundle (PEM) to verify TLS certificates with
    /// instead of the system's roots; also `AWS_CA_BUNDLE`.
    #[arg(long, value_name = "value")]
    ca_bundle: Option<String>,
    /// Does not verify TLS certificates (a warning says so on each request).
    #[arg(long)]
    no_verify_ssl: bool,
    /// Turns on/off color output (table row values and nesting bars).
    #[arg(long, value_name = "value", value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Logs what is happening to stderr (the token is always redacted).
    #[arg(long)]
    debug: bool,
    /// Overrides the service endpoint, for example `http://127.0.0.1:4566`.
    #[arg(long, value_name = "value")]
    endpoint_url: Option<String>,
    /// The region to use. Overrides config/env settings.
    #[arg(long, value_name = "value")]
    region: Option<String>,
    /// Uses a specific profile from your config and credentials files.
    #[arg(long, value_name = "value")]
    profile: Option<String>,
    /// The formatting style for command output.
    #[arg(long, value_name = "value", value_enum, default_value_t = Output::Json)]
    output: Output,
    /// The maximum socket read time in seconds; 0 waits forever.
    #[arg(long, value_name = "value", default_value_t = 60)]
    cli_read_timeout: u64,
    /// The maximum socket connect time in seconds; 0 waits forever.
    #[arg(long, value_name = "value", default_value_t = 60)]
    cli_connect_timeout: u64,
    /// Starts the embedded Marketplace Metering emulator on 127.0.0.1 with a demo
    /// customer, and resolves its demo token unless a token is given.
    #[arg(long, conflicts_with_all = ["endpoint_url", "profile", "aws"])]
    emulator: bool,
    /// Sends the request to AWS Marketplace itself (the default endpoint of the
    /// region). Without it, give --emulator or --endpoint-url.
    #[arg(long)]
    aws: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Skeleton {
    Input,
    YamlInput,
    Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Color {
    On,
    Off,
    Auto,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Json,
    Text,
    Table,
}

/// The AWS CLI's exit codes.
const PARAM_ERROR: u8 = 252;
const CONFIG_ERROR: u8 = 253;
const SERVICE_ERROR: u8 = 254;
const GENERAL_ERROR: u8 = 255;

/// A failed run: the exit code and what to print on stderr.
struct Failure(u8, String);

/// A failure printed as the AWS CLI prints its errors: after an empty line.
fn fail(code: u8, message: impl fmt::Display) -> Failure {
    Failure(code, format!("\n{message}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_failure(&error),
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let log = Log(cli.debug);
    let color = match cli.color {
        Color::On => true,
        Color::Off => false,
        Color::Auto => io::stdout().is_terminal(),
    };
    match cli.generate_cli_skeleton {
        Some(Skeleton::Input) => {
            let skeleton = Node::Map(vec![("RegistrationToken".into(), Node::Str(String::new()))]);
            emit(&render(&skeleton, Output::Json, false));
            return Ok(());
        }
        Some(Skeleton::YamlInput) => {
            emit(YAML_INPUT_SKELETON);
            return Ok(());
        }
        _ => {}
    }
    let query = match cli.query.as_deref() {
        Some(expression) => Some(jmespath::compile(expression).map_err(|e| {
            fail(
                PARAM_ERROR,
                format_args!("Bad value for --query {expression}: {e}"),
            )
        })?),
        None => None,
    };

    let input = match (&cli.cli_input_json, &cli.cli_input_yaml) {
        (Some(json), _) => Some((json.as_str(), InputFormat::Json)),
        (None, Some(yaml)) => Some((yaml.as_str(), InputFormat::Yaml)),
        (None, None) => None,
    };
    if cli.registration_token.is_none() && input.is_none() && !cli.emulator {
        return Err(Failure(
            PARAM_ERROR,
            "usage: resolve_customer --registration-token <value> [options]\n\
             To see help text, you can run:\n\n  resolve_customer --help\n\n\
             resolve_customer: error: the following arguments are required: --registration-token"
                .into(),
        ));
    }
    let token = match input {
        Some((input, format)) => {
            token_from_cli_input(input, format, cli.registration_token.clone(), cli.emulator)?
        }
        None => cli.registration_token.clone(),
    };
    if cli.generate_cli_skeleton == Some(Skeleton::Output) {
        // Like the AWS CLI: inputs are validated, nothing is sent.
        let skeleton = ResolveCustomerOutput::builder()
            .customer_identifier("CustomerIdentifier")
            .product_code("ProductCode")
            .customer_aws_account_id("CustomerAWSAccountId")
            .license_arn("LicenseArn")
            .metadata(Metadata::builder().agreement_id("AgreementId").build())
            .build();
        emit(&render(&output_tree(&skeleton), cli.output, color));
        return Ok(());
    }

    if !cli.emulator && !cli.aws && cli.endpoint_url.is_none() {
        return Err(fail(
            PARAM_ERROR,
            "Choose where to send the request: --aws for AWS Marketplace itself, \
             --emulator to run offline, or --endpoint-url <value>.",
        ));
    }

    let observer = Observer {
        debug: cli.debug,
        attempts: Arc::default(),
    };
    let (builder, token, emulator) = if cli.emulator {
        let emulator = MeteringEmulator::start()
            .await
            .map_err(|e| fail(GENERAL_ERROR, format!("Could not start the emulator: {e}")))?;
        let demo_token = MeteringEmulator::mint_token();
        emulator.register(&demo_token, demo_customer());
        log.line(format_args!(
            "Started the Marketplace Metering emulator at {}; demo token {} resolves to account 123456789012",
            emulator.endpoint_url(),
            redacted(&demo_token)
        ));
        let mut builder = emulator.config_builder();
        if let Some(region) = &cli.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if cli.no_sign_request {
            builder = unsigned(builder);
        }
        (builder, token.unwrap_or(demo_token), Some(emulator))
    } else {
        let token = token.unwrap_or_default();
        (aws_builder(&cli, &log).await?, token, None)
    };

    let mut timeouts = TimeoutConfig::builder();
    let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    timeouts
        .set_connect_timeout(seconds(cli.cli_connect_timeout))
        .set_read_timeout(seconds(cli.cli_read_timeout));
    let mut builder = builder.timeout_config(timeouts.build());
    if let Some(client) = tls_client(&cli)? {
        builder = builder.http_client(client);
    }
    let config = builder.interceptor(observer.clone()).build();
    let endpoint = match (&emulator, &cli.endpoint_url) {
        (Some(emulator), _) => emulator.endpoint_url(),
        (None, url) => url
            .clone()
            .unwrap_or_else(|| "(resolved from the region)".into()),
    };
    log.line(format_args!(
        "Region: {}; endpoint: {endpoint}; timeouts (seconds, 0 = none): connect {}, read {}",
        config.region().map_or("(none)", |r| r.as_ref()),
        cli.cli_connect_timeout,
        cli.cli_read_timeout,
    ));
    let max_attempts = config.retry_config().map_or(1, |r| r.max_attempts());
    let client = Client::from_conf(config);

    log.line(format_args!(
        "Making request for {OPERATION} with params: {{'RegistrationToken': '{}'}}",
        redacted(&token)
    ));
    let result = client
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await;
    match result {
        Ok(output) => {
            let tree = output_tree(&output);
            let shown = match &query {
                Some(query) => {
                    let found = query
                        .search(tree.to_json())
                        .map_err(|e| fail(GENERAL_ERROR, e))?;
                    Node::from_query(&found)
                }
                None => tree,
            };
            emit(&render(&shown, cli.output, color));
            Ok(())
        }
        Err(error) => Err(describe(&error, &observer, max_attempts)),
    }
}

/// The SDK configuration from the usual AWS sources and the overrides given.
async fn aws_builder(cli: &Cli, log: &Log) -> Result<Builder, Failure> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &cli.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &cli.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &cli.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if cli.no_sign_request {
        loader = loader.no_credentials();
    }
    let sdk_config = loader.load().await;
    if sdk_config.region().is_none() {
        return Err(fail(
            CONFIG_ERROR,
            "You must specify a region. You can also configure your region by running \"aws configure\".",
        ));
    }
    if cli.no_sign_request {
        log.line(format_args!("Not signing the request (--no-sign-request)"));
        return Ok(unsigned(Builder::from(&sdk_config)));
    }
    // Resolve the credentials once, up front, as the AWS CLI does: a missing
    // credential is a configuration error, not a failed call.
    let no_credentials = || {
        fail(
            CONFIG_ERROR,
            "Unable to locate credentials. You can configure credentials by running \"aws configure\".",
        )
    };
    let provider = sdk_config
        .credentials_provider()
        .ok_or_else(no_credentials)?;
    let credentials = provider.provide_credentials().await.map_err(|e| {
        log.line(format_args!("No credentials: {}", chain(&e)));
        no_credentials()
    })?;
    log.line(format_args!("Found credentials"));
    Ok(Builder::from(&sdk_config).credentials_provider(credentials))
}

/// How `--cli-input-json` / `--cli-input-yaml` is written.
#[derive(Clone, Copy)]
enum InputFormat {
    Json,
    Yaml,
}

impl InputFormat {
    fn option(self) -> &'static str {
        match self {
            Self::Json => "cli-input-json",
            Self::Yaml => "cli-input-yaml",
        }
    }
}

/// What `--generate-cli-skeleton yaml-input` prints: the input, with the
/// member's documentation as the AWS CLI v2 writes it.
const YAML_INPUT_SKELETON: &str = "RegistrationToken: '' # [REQUIRED] When a buyer visits your website during the registration process, the buyer submits a registration token through the browser.\n";

/// The HTTP client for `--no-verify-ssl` or `--ca-bundle` (or
/// `AWS_CA_BUNDLE`); `None` for the SDK's default.
fn tls_client(cli: &Cli) -> Result<Option<SharedHttpClient>, Failure> {
    if cli.no_verify_ssl {
        return Ok(Some(insecure::client()));
    }
    let bundle = cli.ca_bundle.clone().or_else(|| {
        std::env::var("AWS_CA_BUNDLE")
            .ok()
            .filter(|b| !b.is_empty())
    });
    let Some(bundle) = bundle else {
        return Ok(None);
    };
    let pem = std::fs::read(&bundle).map_err(|e| {
        fail(
            CONFIG_ERROR,
            format_args!("Could not read the CA bundle {bundle}: {e}"),
        )
    })?;
    use aws_smithy_http_client::tls;
    let context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
        .build()
        .map_err(|e| {
            fail(
                CONFIG_ERROR,
                format_args!("Invalid CA bundle {bundle}: {e}"),
            )
        })?;
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https();
    Ok(Some(client))
}

/// `--no-verify-ssl`: an HTTP client that accepts any server certificate,
/// and says so on stderr at every request, as the AWS CLI does.
mod insecure {
    use std::sync::Arc;

    use aws_sdk_marketplacemetering::config::{RuntimeComponents, SharedHttpClient};
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
    use hyper_util::rt::TokioExecutor;
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    type Https = hyper_rustls::HttpsConnector<TcpConnector>;

    pub(super) fn client() -> SharedHttpClient {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("the provider's protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        SharedHttpClient::new(Insecure(Client::builder(TokioExecutor::new()).build(https)))
    }

    #[derive(Debug, Clone)]
    struct Insecure(Client<Https, SdkBody>);

    impl HttpConnector for Insecure {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let client = self.0.clone();
            HttpConnectorFuture::new(async move {
                let request = request
                    .try_into_http1x()
                    .map_err(|e| ConnectorError::other(e.into(), None))?;
                if let Some(host) = request.uri().host() {
                    eprintln!(
                        "InsecureRequestWarning: Unverified HTTPS request is being made to host '{host}'. \
                         Adding certificate verification is strongly advised."
                    );
                }
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| ConnectorError::io(e.into()))?;
                let (parts, body) = response.into_parts();
                let response = http::Response::from_parts(parts, SdkBody::from_body_1_x(body));
                response
                    .try_into()
                    .map_err(|e: aws_smithy_runtime_api::http::HttpError| {
                        ConnectorError::other(e.into(), None)
                    })
            })
        }
    }

    impl HttpClient for Insecure {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    /// Accepts every certificate; checks only that signatures are well formed.
    #[derive(Debug)]
    struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            certificate: &CertificateDer<'_>,
            signature: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                certificate,
                signature,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            certificate: &CertificateDer<'_>,
            signature: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                certificate,
                signature,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// `builder`, sending requests without a signature (`--no-sign-request`),
/// whatever credentials it has.
fn unsigned(builder: Builder) -> Builder {
    use aws_smithy_runtime_api::client::auth::AuthSchemeId;
    builder
        .allow_no_auth()
        .auth_scheme_preference([AuthSchemeId::new("noAuth")])
}

/// Reads `--cli-input-json` or `--cli-input-yaml` (inline or `file://path`)
/// and validates the parameters as botocore does; `explicit`
/// (`--registration-token`) wins.
fn token_from_cli_input(
    input: &str,
    format: InputFormat,
    explicit: Option<String>,
    emulator: bool,
) -> Result<Option<String>, Failure> {
    let parse_error = |name: &str, detail: &dyn fmt::Display| {
        fail(
            PARAM_ERROR,
            format!("Error parsing parameter '{name}': {detail}"),
        )
    };
    let text = match input.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            let detail = match e.raw_os_error() {
                Some(n) => format!(
                    "[Errno {n}] {}: '{path}'",
                    e.to_string().replace(&format!(" (os error {n})"), "")
                ),
                None => e.to_string(),
            };
            parse_error(
                &format!("--{}", format.option()),
                &format!("Unable to load paramfile {input}: {detail}"),
            )
        })?,
        None => input.to_owned(),
    };
    // Unlike the AWS CLI, never quote the input back: it holds the token.
    let invalid = |detail: &dyn fmt::Display| {
        let kind = match format {
            InputFormat::Json => "Invalid JSON",
            InputFormat::Yaml => "Invalid YAML",
        };
        parse_error(format.option(), &format!("{kind}: {detail}"))
    };
    let parsed: Value = match format {
        InputFormat::Json => serde_json::from_str(&text).map_err(|e| invalid(&e))?,
        InputFormat::Yaml => serde_yaml_ng::from_str(&text).map_err(|e| invalid(&e))?,
    };
    let Value::Object(mut fields) = parsed else {
        return Err(invalid(&"expected a mapping of parameters"));
    };
    let mut errors = Vec::new();
    let token = match (explicit, fields.remove("RegistrationToken")) {
        (Some(token), _) | (None, Some(Value::String(token))) => Some(token),
        (None, Some(other)) => {
            let (value, class) = match &other {
                Value::Null => ("None".into(), "NoneType"),
                Value::Bool(b) => ((if *b { "True" } else { "False" }).into(), "bool"),
                Value::Number(n) => (n.to_string(), if n.is_f64() { "float" } else { "int" }),
                Value::Array(_) => ("[...]".into(), "list"),
                _ => ("{...}".into(), "dict"),
            };
            errors.push(format!(
                "Invalid type for parameter RegistrationToken, value: {value}, type: <class '{class}'>, valid types: <class 'str'>"
            ));
            None
        }
        (None, None) => {
            if !emulator {
                errors.push("Missing required parameter in input: \"RegistrationToken\"".into());
            }
            None
        }
    };
    errors.extend(fields.keys().map(|key| {
        format!("Unknown parameter in input: \"{key}\", must be one of: RegistrationToken")
    }));
    if errors.is_empty() {
        Ok(token)
    } else {
        Err(fail(
            PARAM_ERROR,
            format!("Parameter validation failed:\n{}", errors.join("\n")),
        ))
    }
}

/// The AWS CLI's message and exit code for a failed call.
fn describe(
    error: &SdkError<ResolveCustomerError>,
    observer: &Observer,
    max_attempts: u32,
) -> Failure {
    let (attempts, url) = observer.snapshot();
    let url = url.unwrap_or_else(|| "(unresolved)".into());
    let retries = if attempts > 1 && attempts >= max_attempts {
        format!(" (reached max retries: {})", attempts - 1)
    } else {
        String::new()
    };
    let status = error.raw_response().map(|r| r.status().as_u16());
    match error {
        // Like botocore: an error without a code is named by its HTTP status.
        SdkError::ServiceError(_) | SdkError::ResponseError(_)
            if status.is_some_and(|s| s >= 300) =>
        {
            let status = status.map(|s| s.to_string()).unwrap_or_default();
            fail(
                SERVICE_ERROR,
                format_args!(
                    "An error occurred ({}) when calling the {OPERATION} operation{retries}: {}",
                    error.code().unwrap_or(&status),
                    error.message().unwrap_or_default(),
                ),
            )
        }
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            let connect = chain(error).contains("connect timeout");
            let phase = if connect { "Connect" } else { "Read" };
            fail(
                GENERAL_ERROR,
                format_args!("{phase} timeout on endpoint URL: \"{url}\""),
            )
        }
        SdkError::TimeoutError(_) => fail(
            GENERAL_ERROR,
            format_args!("Read timeout on endpoint URL: \"{url}\""),
        ),
        SdkError::DispatchFailure(_) if tls_refused(error) => fail(
            GENERAL_ERROR,
            format_args!(
                "SSL validation failed for {url} [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {}",
                tls_cause(error)
            ),
        ),
        SdkError::DispatchFailure(failure) if failure.is_io() && !connection_dropped(error) => {
            fail(
                GENERAL_ERROR,
                format_args!("Could not connect to the endpoint URL: \"{url}\""),
            )
        }
        SdkError::DispatchFailure(_) => fail(
            GENERAL_ERROR,
            format_args!(
                "Connection was closed before we received a valid response from endpoint URL: \"{url}\"."
            ),
        ),
        other => fail(GENERAL_ERROR, chain(other)),
    }
}

/// An error and its causes, `: `-separated, without the SDK's debug dump.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Whether the server's TLS certificate was refused.
fn tls_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        source = cause.source();
    }
    chain(error).contains("invalid peer certificate")
}

/// What rustls said about the certificate.
fn tls_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return tls.to_string();
        }
        source = cause.source();
    }
    "invalid peer certificate".into()
}

/// Whether an I/O failure happened on an established connection.
fn connection_dropped(error: &(dyn std::error::Error + 'static)) -> bool {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

fn demo_customer() -> ResolvedCustomer {
    ResolvedCustomer::new("123456789012", "prod-demo123")
        .with_customer_identifier("cust-demo-7yh6gW2c8Dy")
        .with_license_arn(
            "arn:aws:license-manager::123456789012:license:l-0123456789abcdef0123456789abcdef",
        )
        .with_agreement_id("agmt-0demo123456789abcdefghij")
}

fn redacted(token: &str) -> String {
    format!("<redacted, {} bytes>", token.len())
}

/// `--debug` lines on stderr.
struct Log(bool);

impl Log {
    fn line(&self, message: fmt::Arguments<'_>) {
        if self.0 {
            eprintln!("resolve_customer - DEBUG - {message}");
        }
    }
}

/// Counts attempts, remembers the request URL for error messages, and logs each
/// attempt's status and request id under `--debug`. It never reads bodies.
#[derive(Debug, Clone)]
struct Observer {
    debug: bool,
    attempts: Arc<Mutex<(u32, Option<String>)>>,
}

impl Observer {
    fn snapshot(&self) -> (u32, Option<String>) {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn attempt(&self) -> u32 {
        self.snapshot().0
    }
}

impl Intercept for Observer {
    fn name(&self) -> &'static str {
        "resolve_customer::Observer"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let url = request.uri().to_string();
        let attempt = {
            let mut state = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 += 1;
            state.1 = Some(url.clone());
            state.0
        };
        Log(self.debug).line(format_args!(
            "Attempt {attempt}: {} {url}",
            request.method()
        ));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        Log(self.debug).line(format_args!(
            "Attempt {}: HTTP {}, x-amzn-RequestId: {}",
            self.attempt(),
            response.status().as_u16(),
            response
                .headers()
                .get("x-amzn-RequestId")
                .unwrap_or("(none)"),
        ));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(error)) = context.output_or_error() {
            Log(self.debug).line(format_args!(
                "Attempt {} failed: {}",
                self.attempt(),
                chain(error)
            ));
        }
        Ok(())
    }
}

/// A response as the AWS CLI sees it, members in model order; or what a
/// `--query` made of it.
enum Node {
    Str(String),
    /// A number, as JSON writes it.
    Num(String),
    Bool(bool),
    Null,
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn to_json(&self) -> Value {
        match self {
            Node::Str(s) => Value::from(s.as_str()),
            Node::Num(n) => serde_json::from_str(n).unwrap_or(Value::Null),
            Node::Bool(b) => Value::Bool(*b),
            Node::Null => Value::Null,
            Node::List(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Map(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, value)| (key.clone(), value.to_json()))
                    .collect(),
            ),
        }
    }

    /// What a JMESPath search found (objects with their keys sorted).
    fn from_query(found: &jmespath::Variable) -> Node {
        use jmespath::Variable;
        match found {
            Variable::String(s) => Node::Str(s.clone()),
            Variable::Number(n) => Node::Num(n.to_string()),
            Variable::Bool(b) => Node::Bool(*b),
            Variable::Null | Variable::Expref(_) => Node::Null,
            Variable::Array(items) => {
                Node::List(items.iter().map(|i| Node::from_query(i)).collect())
            }
            Variable::Object(fields) => Node::Map(
                fields
                    .iter()
                    .map(|(key, value)| (key.clone(), Node::from_query(value)))
                    .collect(),
            ),
        }
    }

    /// A scalar as Python's `str()` writes it.
    fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Num(n) => Some(n.clone()),
            Node::Bool(true) => Some("True".into()),
            Node::Bool(false) => Some("False".into()),
            Node::Null => Some("None".into()),
            Node::List(_) | Node::Map(_) => None,
        }
    }
}

fn output_tree(output: &ResolveCustomerOutput) -> Node {
    let member =
        |name: &str, value: Option<&str>| value.map(|v| (name.to_owned(), Node::Str(v.to_owned())));
    let mut fields: Vec<_> = [
        member("CustomerIdentifier", output.customer_identifier()),
        member("ProductCode", output.product_code()),
        member("CustomerAWSAccountId", output.customer_aws_account_id()),
        member("LicenseArn", output.license_arn()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(metadata) = output.metadata() {
        let agreement = member("AgreementId", metadata.agreement_id());
        fields.push((
            "Metadata".into(),
            Node::Map(agreement.into_iter().collect()),
        ));
    }
    Node::Map(fields)
}

fn render(node: &Node, output: Output, color: bool) -> String {
    let mut out = String::new();
    match output {
        Output::Json => {
            write_json(&mut out, node, 0);
            out.push('\n');
        }
        Output::Text => write_text(&mut out, node, None, None),
        Output::Table => {
            let mut sections = Vec::new();
            table_sections(&mut sections, OPERATION, node, 0);
            if !sections.is_empty() {
                out = render_table(sections, terminal_width(), color);
            }
        }
    }
    out
}

/// Python's `json.dumps(value, indent=4, ensure_ascii=False)`.
fn write_json(out: &mut String, node: &Node, indent: usize) {
    match node {
        Node::Str(s) => out.push_str(&Value::from(s.as_str()).to_string()),
        Node::Num(n) => out.push_str(n),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Null => out.push_str("null"),
        Node::List(items) if items.is_empty() => out.push_str("[]"),
        Node::List(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&format!("{:1$}", "", indent + 4));
                write_json(out, item, indent + 4);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&format!("{:indent$}]", ""));
        }
        Node::Map(fields) if fields.is_empty() => out.push_str("{}"),
        Node::Map(fields) => {
            out.push_str("{\n");
            for (i, (key, value)) in fields.iter().enumerate() {
                out.push_str(&format!("{:1$}\"{key}\": ", "", indent + 4));
                write_json(out, value, indent + 4);
                out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
            }
            out.push_str(&format!("{:indent$}}}", ""));
        }
    }
}

/// Members by name, borrowed from a [`Node::Map`].
type Members<'a, T> = Vec<(&'a str, T)>;

/// A structure's scalar members (as text) and the others, each sorted by
/// name.
fn partition(fields: &[(String, Node)]) -> (Members<'_, String>, Members<'_, &Node>) {
    let mut sorted: Vec<_> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut scalars, mut nested) = (Vec::new(), Vec::new());
    for (key, value) in sorted {
        match value.scalar_text() {
            Some(text) => scalars.push((key.as_str(), text)),
            None => nested.push((key.as_str(), value)),
        }
    }
    (scalars, nested)
}

/// The AWS CLI's text format (`awscli/text.py`): a structure's scalars on one
/// tab-separated line (prefixed by its upper-cased member name when nested),
/// then its other members; a list of scalars on one line; a scalar alone.
fn write_text(out: &mut String, node: &Node, identifier: Option<&str>, keys: Option<&[String]>) {
    match node {
        Node::Map(fields) => {
            let (scalars, nested): (Vec<String>, Vec<(&str, &Node)>) = match keys {
                None => {
                    let (scalars, nested) = partition(fields);
                    (scalars.into_iter().map(|(_, v)| v).collect(), nested)
                }
                Some(keys) => {
                    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v);
                    let scalars = keys
                        .iter()
                        .map(|key| get(key).and_then(Node::scalar_text).unwrap_or_default())
                        .collect();
                    let mut rest: Vec<&(String, Node)> =
                        fields.iter().filter(|(k, _)| !keys.contains(k)).collect();
                    rest.sort_by(|a, b| a.0.cmp(&b.0));
                    (
                        scalars,
                        rest.into_iter().map(|(k, v)| (k.as_str(), v)).collect(),
                    )
                }
            };
            if !scalars.is_empty() {
                let upper = identifier.map(str::to_uppercase);
                let line: Vec<&str> = upper
                    .as_deref()
                    .into_iter()
                    .chain(scalars.iter().map(String::as_str))
                    .collect();
                out.push_str(&line.join("\t"));
                out.push('\n');
            }
            for (key, value) in nested {
                write_text(out, value, Some(key), None);
            }
        }
        Node::List(items) if items.is_empty() => {}
        Node::List(items) if items.iter().any(|i| matches!(i, Node::Map(_))) => {
            let mut keys: Vec<String> = items
                .iter()
                .filter_map(|i| match i {
                    Node::Map(fields) => Some(fields),
                    _ => None,
                })
                .flatten()
                .filter(|(_, v)| v.scalar_text().is_some())
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort();
            keys.dedup();
            for item in items {
                write_text(out, item, identifier, Some(&keys));
            }
        }
        Node::List(items) => {
            let scalars: Vec<String> = items.iter().filter_map(Node::scalar_text).collect();
            if !scalars.is_empty() {
                match identifier {
                    Some(identifier) => {
                        for scalar in &scalars {
                            out.push_str(&format!("{}\t{scalar}\n", identifier.to_uppercase()));
                        }
                    }
                    None => {
                        out.push_str(&scalars.join("\t"));
                        out.push('\n');
                    }
                }
            }
            for item in items.iter().filter(|i| i.scalar_text().is_none()) {
                write_text(out, item, identifier, None);
            }
        }
        scalar => {
            out.push_str(&scalar.scalar_text().unwrap_or_default());
            out.push('\n');
        }
    }
}

/// One titled box of an AWS CLI table.
struct Section {
    title: String,
    indent: usize,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Section {
    fn column_widths(&self) -> Vec<usize> {
        let mut widths = Vec::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            widths.resize(widths.len().max(row.len()), 0);
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    fn total_width(&self) -> usize {
        let columns: usize = self.column_widths().iter().map(|w| w + 4).sum();
        (self.title.chars().count() + 2).max(columns + 2) + 2 * self.indent
    }
}

/// The AWS CLI's table formatter: a structure with several scalars is one
/// header row and one value row, one scalar is a `key | value` row, nested
/// structures are indented sub-tables.
fn table_sections(sections: &mut Vec<Section>, title: &str, node: &Node, indent: usize) {
    let mut section = Section {
        title: title.into(),
        indent,
        headers: vec![],
        rows: vec![],
    };
    match node {
        Node::Null => return,
        Node::Map(fields) if fields.is_empty() => return,
        Node::List(items) if items.is_empty() => return,
        // Like the AWS CLI: a list of scalars is a column, a scalar a title.
        Node::List(items) => {
            section.rows = items
                .iter()
                .filter_map(Node::scalar_text)
                .map(|text| vec![text])
                .collect();
            sections.push(section);
            return;
        }
        Node::Map(fields) => {
            let (scalars, nested) = partition(fields);
            match scalars.as_slice() {
                [] => {}
                [(key, value)] => section.rows.push(vec![(*key).into(), value.clone()]),
                many => {
                    section.headers = many.iter().map(|(k, _)| (*k).into()).collect();
                    section
                        .rows
                        .push(many.iter().map(|(_, v)| v.clone()).collect());
                }
            }
            sections.push(section);
            for (key, value) in nested {
                table_sections(sections, key, value, indent + 1);
            }
            return;
        }
        _scalar => {}
    }
    sections.push(section);
}

/// What `--color on` adds (colorama's codes, as the AWS CLI's table styler
/// uses them): bright blue values, dim yellow nesting bars.
const VALUE_STYLE: &str = "\x1b[1m\x1b[34m";
const BAR_STYLE: &str = "\x1b[2m\x1b[33m";
const RESET: &str = "\x1b[0m";

fn render_table(mut sections: Vec<Section>, terminal_width: usize, color: bool) -> String {
    let max_width =
        |sections: &[Section]| sections.iter().map(Section::total_width).max().unwrap_or(0);
    if max_width(&sections) > terminal_width {
        // Too wide: one-row sections turn into `key | value` rows.
        for section in sections
            .iter_mut()
            .filter(|s| s.rows.len() == 1 && !s.headers.is_empty())
        {
            let values = section.rows.pop().unwrap_or_default();
            let headers = std::mem::take(&mut section.headers);
            section.rows = headers
                .into_iter()
                .zip(values)
                .map(|(k, v)| vec![k, v])
                .collect();
        }
    }
    let width = max_width(&sections);
    let mut out = format!("{}\n", "-".repeat(width));
    for section in &sections {
        let inner = width - 2 * section.indent;
        let bar = if color {
            format!("{BAR_STYLE}|{RESET}").repeat(section.indent)
        } else {
            "|".repeat(section.indent)
        };
        let mut line = |text: String| out.push_str(&format!("{bar}{text}{bar}\n"));
        if !section.title.is_empty() {
            line(center(&section.title, inner, "|"));
            if section.headers.is_empty() && section.rows.is_empty() {
                line(format!("+{}+", "-".repeat(inner.saturating_sub(2))));
            }
        }
        let widths = scale(&section.column_widths(), inner);
        let edge = |i: usize| if i == 0 { "|" } else { "" };
        if !section.headers.is_empty() {
            line(rule(&widths));
            let cells = section.headers.iter().zip(&widths).enumerate();
            line(cells.map(|(i, (h, &w))| center(h, w, edge(i))).collect());
        }
        if !section.rows.is_empty() {
            line(rule(&widths));
            for row in &section.rows {
                let cells = row.iter().zip(&widths).enumerate();
                line(
                    cells
                        .map(|(i, (c, &w))| align_left(c, w, edge(i), color))
                        .collect(),
                );
            }
            line(rule(&widths));
        }
    }
    out
}

/// Column widths (text plus 4 of padding) scaled to fill `total`, rounded and
/// then corrected exactly as the AWS CLI does.
fn scale(widths: &[usize], total: usize) -> Vec<usize> {
    let padded: Vec<f64> = widths.iter().map(|w| (w + 4) as f64).collect();
    if padded.is_empty() {
        return Vec::new();
    }
    let factor = total as f64 / padded.iter().sum::<f64>();
    let mut scaled: Vec<i64> = padded
        .iter()
        .map(|w| (factor * w).round_ties_even() as i64)
        .collect();
    let mut off_by = scaled.iter().sum::<i64>() - total as i64;
    while off_by != 0 {
        let n = scaled.len();
        for k in 0..n {
            if off_by > 0 {
                scaled[k] -= 1;
                off_by -= 1;
            } else {
                scaled[n - 1 - k] += 1;
                off_by += 1;
            }
            if off_by == 0 {
                break;
            }
        }
    }
    scaled.into_iter().map(|w| w.max(0) as usize).collect()
}

/// `+-----+-------+`
fn rule(widths: &[usize]) -> String {
    let cell = |(i, w): (usize, &usize)| match i {
        0 => format!("+{}+", "-".repeat(w.saturating_sub(2))),
        _ => format!("{}+", "-".repeat(w.saturating_sub(1))),
    };
    widths.iter().enumerate().map(cell).collect()
}

fn spaces(n: i64) -> String {
    " ".repeat(n.max(0) as usize)
}

/// `|   text   |`, `length` wide including the edges.
fn center(text: &str, length: usize, left: &str) -> String {
    let (length, text_len) = (length as i64, text.chars().count() as i64);
    let start = length / 2 - text_len / 2 - 1;
    let right = length - 1 - (left.len() as i64 + start + text_len);
    format!("{left}{}{text}{}|", spaces(start), spaces(right))
}

/// `|  text      |`, `length` wide including the edges; the text styled as a
/// value under `--color on`.
fn align_left(text: &str, length: usize, left: &str, color: bool) -> String {
    let text_len = text.chars().count();
    let padding = if length > text_len + 2 + left.len() {
        2
    } else {
        0
    };
    let right = length as i64 - (left.len() + padding + text_len + 1) as i64;
    let text = if color {
        format!("{VALUE_STYLE}{text}{RESET}")
    } else {
        text.to_owned()
    };
    format!("{left}{}{text}{}|", spaces(padding as i64), spaces(right))
}

/// The AWS CLI measures the terminal; a pipe or file counts as 80 columns.
fn terminal_width() -> usize {
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    match columns {
        Some(columns) if io::stdout().is_terminal() => columns,
        _ => 80,
    }
}

/// Writes to stdout, ignoring a closed pipe as the AWS CLI does.
fn emit(text: &str) {
    let mut stdout = io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Usage errors exit 252 (help and version 0). A token pasted in the wrong
/// place would be quoted back by clap, so any long argument is redacted.
fn clap_failure(error: &clap::Error) -> ExitCode {
    if !error.use_stderr() {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let mut message = error.render().to_string();
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy();
        let value = match arg.split_once('=') {
            Some((_, value)) if arg.starts_with('-') => value,
            _ => &arg,
        };
        if value.len() >= 16 && !value.starts_with('-') {
            message = message.replace(value, &redacted(value));
        }
    }
    eprint!("{message}");
    ExitCode::from(PARAM_ERROR)
}
