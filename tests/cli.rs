//! The `resolve_customer` example run as a process against the emulator: output
//! formats, AWS CLI error lines and exit codes, and no token in any output.
#![cfg(feature = "test-util")]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tower_resolve_customer::ResolvedCustomer;
use tower_resolve_customer::emulator::{Fault, MeteringEmulator};

const NO_RETRY: &[(&str, &str)] = &[("AWS_MAX_ATTEMPTS", "1")];

/// Loopback only: static credentials, no metadata service, no config files.
const ENV: [(&str, &str); 6] = [
    ("AWS_ACCESS_KEY_ID", "AKIDCLITEST"),
    ("AWS_SECRET_ACCESS_KEY", "cli-test-secret"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/config"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
];

/// The example binary. `cargo test --test cli` does not build examples, so it
/// is built here (a no-op after a plain `cargo test`) with this run's features,
/// in the shared target directory.
fn example() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let build = || {
        let axum = if cfg!(feature = "axum") { ",axum" } else { "" };
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "--example", "resolve_customer"]);
        cargo.args(["--features", &format!("test-util{axum}")]);
        cargo.args(["--manifest-path", manifest]);
        cargo.args(cfg!(not(debug_assertions)).then_some("--release"));
        // What cargo exported for this test run looks like changed inputs to
        // some build scripts, which would rebuild every dependency.
        for (key, _) in std::env::vars() {
            if key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_MANIFEST_") {
                cargo.env_remove(key);
            }
        }
        assert!(cargo.status().unwrap().success(), "cargo build failed");
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
        let name = format!("resolve_customer{}", std::env::consts::EXE_SUFFIX);
        profile_dir.join("examples").join(name)
    };
    PATH.get_or_init(build).clone()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the example and checks that neither `secrets` nor anything shaped like
/// a token (100 or more base64 characters in a row) shows on stdout or stderr.
async fn run(args: &[&str], env: &[(&str, &str)], secrets: &[&str]) -> Run {
    let exe = tokio::task::spawn_blocking(example).await.unwrap();
    let mut command = tokio::process::Command::new(exe);
    command.args(args).env_clear().envs(ENV);
    command.envs(env.iter().copied());
    let output = command.output().await.expect("run the example");
    let text = |bytes| String::from_utf8(bytes).unwrap();
    let (stdout, stderr) = (text(output.stdout), text(output.stderr));
    for out in [&stdout, &stderr] {
        let leaked = secrets.iter().any(|s| out.contains(s));
        let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=".contains(c);
        let longest = out.split(|c| !base64(c)).map(str::len).max();
        assert!(!leaked, "{args:?} printed the token:\n{out}");
        assert!(longest < Some(100), "{args:?} printed a token:\n{out}");
    }
    let code = output.status.code();
    Run {
        code,
        stdout,
        stderr,
    }
}

/// Resolves `token` at `url`, with `extra` arguments.
async fn resolve(url: &str, token: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let args = ["--endpoint-url", url, "--registration-token", token];
    run(&[&args[..], extra].concat(), env, &[token]).await
}

/// Checks the exit code and the end of stderr.
fn expect(run: &Run, code: i32, stderr_end: &str) {
    assert_eq!(run.code, Some(code), "{}", run.stderr);
    assert!(run.stderr.ends_with(stderr_end), "{}", run.stderr);
}

async fn emulator_with_customer() -> (MeteringEmulator, String, String) {
    let emulator = MeteringEmulator::start().await.unwrap();
    let token = MeteringEmulator::mint_token();
    let customer = ResolvedCustomer::new("123456789012", "prod-cli")
        .with_customer_identifier("cust-cli")
        .with_license_arn("arn:aws:license-manager::123456789012:license:l-0abc")
        .with_agreement_id("agmt-cli");
    emulator.register(&token, customer);
    let url = emulator.endpoint_url();
    (emulator, token, url)
}

/// What the AWS CLI prints for the emulator's customer (the table at the
/// width it assumes for a pipe, 80 columns).
const JSON: &str = r#"{
    "CustomerIdentifier": "cust-cli",
    "ProductCode": "prod-cli",
    "CustomerAWSAccountId": "123456789012",
    "LicenseArn": "arn:aws:license-manager::123456789012:license:l-0abc",
    "Metadata": {
        "AgreementId": "agmt-cli"
    }
}
"#;
/// The output skeleton: each string set to its member name.
const SKELETON: &str = r#"{
    "CustomerIdentifier": "CustomerIdentifier",
    "ProductCode": "ProductCode",
    "CustomerAWSAccountId": "CustomerAWSAccountId",
    "LicenseArn": "LicenseArn",
    "Metadata": {
        "AgreementId": "AgreementId"
    }
}
"#;
const TEXT: &str =
    "123456789012\tcust-cli\tarn:aws:license-manager::123456789012:license:l-0abc\tprod-cli
METADATA\tagmt-cli
";
const TABLE: &str = "\
----------------------------------------------------------------------------------
|                                 ResolveCustomer                                |
+-----------------------+--------------------------------------------------------+
|  CustomerAWSAccountId |  123456789012                                          |
|  CustomerIdentifier   |  cust-cli                                              |
|  LicenseArn           |  arn:aws:license-manager::123456789012:license:l-0abc  |
|  ProductCode          |  prod-cli                                              |
+-----------------------+--------------------------------------------------------+
||                                   Metadata                                   ||
|+------------------------------------------+-----------------------------------+|
||  AgreementId                             |  agmt-cli                         ||
|+------------------------------------------+-----------------------------------+|
";

#[tokio::test]
async fn json_text_and_table_outputs() {
    let (_emulator, token, url) = emulator_with_customer().await;
    let json = resolve(&url, &token, &["--debug"], &[]).await;
    expect(&json, 0, "");
    assert_eq!(json.stdout, JSON);
    let value: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["Metadata"]["AgreementId"], "agmt-cli");
    assert!(
        json.stderr
            .contains("{'RegistrationToken': '<redacted, 184 bytes>'}")
    );
    assert!(json.stderr.contains("HTTP 200, x-amzn-RequestId: 0000"));

    let text = resolve(&url, &token, &["--output", "text"], &[]).await;
    assert_eq!((text.code, text.stdout.as_str()), (Some(0), TEXT));
    let table = resolve(&url, &token, &["--output", "table"], &[]).await;
    assert_eq!((table.code, table.stdout.as_str()), (Some(0), TABLE));
}

#[tokio::test]
async fn service_errors_exit_254() {
    let (emulator, _, url) = emulator_with_customer().await;
    let unknown = MeteringEmulator::mint_token();
    let invalid = resolve(&url, &unknown, &["--debug"], &[]).await;
    let operation = "when calling the ResolveCustomer operation";
    let message = format!("(InvalidTokenException) {operation}: Registration token is invalid.\n");
    expect(&invalid, 254, &format!("\nAn error occurred {message}"));
    assert!(invalid.stdout.is_empty());

    // Retried until the attempts run out, reported as botocore does.
    emulator.inject_times(Fault::Throttle, 2);
    let throttled = resolve(&url, &unknown, &[], &[("AWS_MAX_ATTEMPTS", "2")]).await;
    let retried = "(reached max retries: 1): Rate exceeded\n";
    let message = format!("\nAn error occurred (ThrottlingException) {operation} {retried}");
    assert_eq!((throttled.code, throttled.stderr), (Some(254), message));
}

#[tokio::test]
async fn transport_failures_exit_255() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let token = MeteringEmulator::mint_token();
    let refused = resolve(&closed, &token, &["--debug"], NO_RETRY).await;
    let message = format!("\nCould not connect to the endpoint URL: \"{closed}/\"\n");
    expect(&refused, 255, &message);

    let (emulator, token, url) = emulator_with_customer().await;
    emulator.inject(Fault::Latency(Duration::from_secs(30)));
    let slow = resolve(&url, &token, &["--cli-read-timeout", "1"], NO_RETRY).await;
    let message = format!("\nRead timeout on endpoint URL: \"{url}/\"\n");
    assert_eq!((slow.code, slow.stderr), (Some(255), message));
}

#[tokio::test]
async fn usage_errors_exit_252() {
    let missing = run(&[], &[], &[]).await;
    expect(
        &missing,
        252,
        "arguments are required: --registration-token\n",
    );
    let empty = run(&["--cli-input-json", "{}"], &[], &[]).await;
    let message = "Missing required parameter in input: \"RegistrationToken\"\n";
    expect(&empty, 252, message);

    let token = MeteringEmulator::mint_token();
    let unclosed = format!("{{\"RegistrationToken\": \"{token}\"");
    let broken = run(&["--cli-input-json", &unclosed], &[], &[&token]).await;
    let parsing = "\nError parsing parameter 'cli-input-json': Invalid JSON";
    assert!(broken.code == Some(252) && broken.stderr.starts_with(parsing));

    // Real AWS only when asked for.
    let nowhere = run(&["--registration-token", &token], &[], &[&token]).await;
    expect(
        &nowhere,
        252,
        "Choose where to send the request: --aws for AWS Marketplace itself, --emulator to run offline, or --endpoint-url <value>.\n",
    );

    // A token pasted without its flag is not echoed back.
    assert_eq!(run(&[&token], &[], &[&token]).await.code, Some(252));
}

#[tokio::test]
async fn cli_input_json_inline_from_a_file_and_overridden() {
    let (emulator, token, url) = emulator_with_customer().await;
    let input = format!("{{\"RegistrationToken\": \"{token}\"}}");
    let args = ["--endpoint-url", &url, "--cli-input-json"];
    let inline = run(&[&args[..], &[&input]].concat(), &[], &[&token]).await;
    expect(&inline, 0, "");

    let name = format!("resolve-customer-cli-{}.json", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, &input).unwrap();
    let file = format!("file://{}", path.display());
    let from_file = run(&[&args[..], &[&file]].concat(), &[], &[&token]).await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!((from_file.code, from_file.stdout), (Some(0), inline.stdout));

    // The explicit flag wins over the JSON.
    let other = MeteringEmulator::mint_token();
    let overridden = resolve(&url, &other, &["--cli-input-json", &input], &[]).await;
    assert_eq!(overridden.code, Some(254));
    let calls = (emulator.calls_for(&other), emulator.calls_for(&token));
    assert_eq!(calls, (1, 2));
}

#[tokio::test]
async fn skeletons_call_nothing() {
    let input = run(&["--generate-cli-skeleton"], &[], &[]).await;
    assert_eq!(input.stdout, "{\n    \"RegistrationToken\": \"\"\n}\n");
    let explicit = run(&["--generate-cli-skeleton", "input"], &[], &[]).await;
    assert_eq!((input.code, explicit.stdout), (Some(0), input.stdout));

    // Like the AWS CLI, `output` validates the inputs first.
    let unvalidated = run(&["--generate-cli-skeleton", "output"], &[], &[]).await;
    assert_eq!(unvalidated.code, Some(252));
    let output = run(
        &[
            "--generate-cli-skeleton",
            "output",
            "--registration-token",
            "x",
        ],
        &[],
        &[],
    );
    assert_eq!(output.await.stdout, SKELETON);
}

#[tokio::test]
async fn emulator_mode_needs_nothing_else() {
    let offline = run(&["--emulator"], &[], &[]).await;
    expect(&offline, 0, "");
    let value: Value = serde_json::from_str(&offline.stdout).unwrap();
    assert_eq!(value["CustomerAWSAccountId"], "123456789012");
    assert_eq!(value["ProductCode"], "prod-demo123");
    let arn = value["LicenseArn"].as_str().unwrap();
    assert!(arn.starts_with("arn:aws:license-manager::123456789012:license:l-"));
    assert!(value["Metadata"]["AgreementId"].is_string());

    let debug = run(&["--emulator", "--debug", "--output", "table"], &[], &[]).await;
    let last = "HTTP 200, x-amzn-RequestId: 00000000-0000-4000-8000-000000000001\n";
    expect(&debug, 0, last);
    assert!(
        debug.stdout.contains("|  prod-demo123 "),
        "{}",
        debug.stdout
    );
    assert!(debug.stderr.contains("<redacted, 184 bytes>"));
}

/// The AWS CLI (v1, from PyPI) that `.ci/run` installs into
/// `target/aws-clients-venv`, to compare outputs with; `None` where it is not
/// installed (the expectations below were taken from it).
fn aws_cli() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/aws-clients-venv/bin/aws");
    path.is_file().then_some(path)
}

/// The AWS CLI's stdout and stderr for `resolve-customer` at `url`.
async fn aws(cli: &PathBuf, url: &str, token: &str, extra: &[&str]) -> (String, String) {
    let output = tokio::process::Command::new(cli)
        .args([
            "meteringmarketplace",
            "resolve-customer",
            "--endpoint-url",
            url,
        ])
        .args(["--registration-token", token])
        .args(extra)
        .env_clear()
        .envs(ENV)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .await
        .unwrap();
    let text = |bytes| String::from_utf8(bytes).unwrap();
    (text(output.stdout), text(output.stderr))
}

#[tokio::test]
async fn query_results_print_as_the_aws_cli_prints_them() {
    let (_emulator, token, url) = emulator_with_customer().await;
    let cases: [(&str, &str, &str); 12] = [
        ("CustomerAWSAccountId", "json", "\"123456789012\"\n"),
        ("CustomerAWSAccountId", "text", "123456789012\n"),
        (
            "CustomerAWSAccountId",
            "table",
            "-----------------\n|ResolveCustomer|\n+---------------+\n",
        ),
        (
            "[ProductCode,CustomerAWSAccountId]",
            "json",
            "[\n    \"prod-cli\",\n    \"123456789012\"\n]\n",
        ),
        (
            "[ProductCode,CustomerAWSAccountId]",
            "text",
            "prod-cli\t123456789012\n",
        ),
        (
            "[ProductCode,CustomerAWSAccountId]",
            "table",
            "------------------\n| ResolveCustomer|\n+----------------+\n|  prod-cli      |\n|  123456789012  |\n+----------------+\n",
        ),
        (
            "{a:ProductCode,b:CustomerAWSAccountId}",
            "json",
            "{\n    \"a\": \"prod-cli\",\n    \"b\": \"123456789012\"\n}\n",
        ),
        (
            "{a:ProductCode,b:CustomerAWSAccountId}",
            "text",
            "prod-cli\t123456789012\n",
        ),
        ("Nope", "json", "null\n"),
        ("Nope", "text", "None\n"),
        ("Nope", "table", ""),
        ("length(ProductCode)", "text", "8\n"),
    ];
    let cli = aws_cli();
    for (query, output, expected) in cases {
        let args = ["--query", query, "--output", output];
        let twin = resolve(&url, &token, &args, &[]).await;
        assert_eq!(
            (twin.code, twin.stdout.as_str()),
            (Some(0), expected),
            "{query} {output}"
        );
        if let Some(cli) = &cli {
            let (stdout, stderr) = aws(cli, &url, &token, &args).await;
            assert_eq!(stdout, expected, "the AWS CLI, {query} {output}: {stderr}");
        }
    }
    // Metadata is in the twin's output model (the AWS CLI v1 1.46 model
    // lacks it).
    let agreement = resolve(&url, &token, &["--query", "Metadata.AgreementId"], &[]).await;
    assert_eq!(agreement.stdout, "\"agmt-cli\"\n");

    let bad = resolve(&url, &token, &["--query", "["], &[]).await;
    assert_eq!(bad.code, Some(252));
    assert!(
        bad.stderr.contains("Bad value for --query ["),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn no_sign_request_sends_no_signature() {
    let (emulator, token, url) = emulator_with_customer().await;
    let line = "An error occurred (MissingAuthenticationToken) when calling the ResolveCustomer operation: Missing Authentication Token\n";
    let unsigned = resolve(&url, &token, &["--no-sign-request"], &[]).await;
    expect(&unsigned, 254, line);
    if let Some(cli) = aws_cli() {
        let (_, stderr) = aws(&cli, &url, &token, &["--no-sign-request"]).await;
        assert!(stderr.ends_with(line), "the AWS CLI: {stderr}");
    }
    assert_eq!(
        emulator.calls_for(&token),
        0,
        "refused before the operation"
    );
}

#[tokio::test]
async fn color_on_styles_table_values_as_the_aws_cli_does() {
    let (_emulator, token, url) = emulator_with_customer().await;
    let styled = |out: &str| -> Vec<String> {
        regex::Regex::new("\x1b\\[1m\x1b\\[34m([^\x1b]*)\x1b\\[0m")
            .unwrap()
            .captures_iter(out)
            .map(|c| c[1].to_owned())
            .collect()
    };
    let args = [
        "--output",
        "table",
        "--query",
        "{a:ProductCode,b:CustomerAWSAccountId}",
    ];
    let on = resolve(&url, &token, &[&args[..], &["--color", "on"]].concat(), &[]).await;
    assert_eq!(styled(&on.stdout), ["prod-cli", "123456789012"]);
    if let Some(cli) = aws_cli() {
        let (stdout, _) = aws(
            &cli,
            &url,
            &token,
            &[&args[..], &["--color", "on"]].concat(),
        )
        .await;
        assert_eq!(
            styled(&stdout),
            styled(&on.stdout),
            "the AWS CLI:\n{stdout}"
        );
    }
    let nested = resolve(&url, &token, &["--output", "table", "--color", "on"], &[]).await;
    assert!(
        nested.stdout.contains("\x1b[2m\x1b[33m|\x1b[0m"),
        "{}",
        nested.stdout
    );
    for color in ["off", "auto"] {
        let plain = resolve(
            &url,
            &token,
            &[&args[..], &["--color", color]].concat(),
            &[],
        )
        .await;
        assert!(!plain.stdout.contains('\x1b'), "{color}: {}", plain.stdout);
    }
}

#[tokio::test]
async fn cli_input_yaml_inline_from_a_file_and_refused() {
    let (_emulator, token, url) = emulator_with_customer().await;
    let input = format!("RegistrationToken: '{token}'\n");
    let args = ["--endpoint-url", &url, "--cli-input-yaml"];
    let inline = run(&[&args[..], &[&input]].concat(), &[], &[&token]).await;
    expect(&inline, 0, "");
    assert_eq!(inline.stdout, JSON);

    let name = format!("resolve-customer-cli-{}.yaml", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, &input).unwrap();
    let file = format!("file://{}", path.display());
    let from_file = run(&[&args[..], &[&file]].concat(), &[], &[&token]).await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        (from_file.code, from_file.stdout),
        (Some(0), JSON.to_owned())
    );

    let unknown = run(
        &[&args[..], &["Colour: red\nRegistrationToken: x"]].concat(),
        &[],
        &[],
    )
    .await;
    expect(
        &unknown,
        252,
        "Unknown parameter in input: \"Colour\", must be one of: RegistrationToken\n",
    );
    let garbage = run(&[&args[..], &["[unclosed"]].concat(), &[], &[]).await;
    assert_eq!(garbage.code, Some(252));
    assert!(
        garbage
            .stderr
            .contains("Error parsing parameter 'cli-input-yaml': Invalid YAML")
    );
    let both = run(
        &[
            "--cli-input-json",
            "{}",
            "--cli-input-yaml",
            "{}",
            "--endpoint-url",
            &url,
        ],
        &[],
        &[],
    )
    .await;
    assert_eq!(both.code, Some(252), "{}", both.stderr);

    let skeleton = run(&["--generate-cli-skeleton", "yaml-input"], &[], &[]).await;
    assert_eq!(skeleton.code, Some(0));
    assert!(
        skeleton
            .stdout
            .starts_with("RegistrationToken: '' # [REQUIRED] "),
        "{}",
        skeleton.stdout
    );
    let parsed: Value = serde_yaml_ng::from_str(&skeleton.stdout).unwrap();
    assert_eq!(parsed, serde_json::json!({"RegistrationToken": ""}));
}

/// Over HTTPS with a certificate from a CA of the test's own: refused as
/// the AWS CLI refuses it, accepted with `--ca-bundle` or `AWS_CA_BUNDLE`,
/// and with `--no-verify-ssl` (and its warning); the AWS CLI agrees.
#[tokio::test]
async fn tls_certificates_are_verified_against_the_ca_bundle() {
    use common::certificates::{certificates, installed, scratch_dir};
    if !installed("openssl", "version") {
        return;
    }
    let dir = scratch_dir("cli-tls");
    let (ca, certificate, key) =
        tokio::task::spawn_blocking(move || certificates(&dir, "localhost"))
            .await
            .unwrap();
    let emulator = MeteringEmulator::bind_tls(
        "127.0.0.1:0".parse().unwrap(),
        &std::fs::read(&certificate).unwrap(),
        &std::fs::read(&key).unwrap(),
    )
    .await
    .unwrap();
    let token = MeteringEmulator::mint_token();
    emulator.register(&token, ResolvedCustomer::new("123456789012", "prod-tls"));
    let url = emulator.endpoint_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = ca.to_str().unwrap().to_owned();
    let query = ["--query", "CustomerAWSAccountId"];

    let refused = resolve(&url, &token, &query, &[]).await;
    assert_eq!(refused.code, Some(255), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "SSL validation failed for {url}/ [SSL: CERTIFICATE_VERIFY_FAILED]"
        )),
        "{}",
        refused.stderr
    );
    let bundled = resolve(
        &url,
        &token,
        &[&query[..], &["--ca-bundle", &ca]].concat(),
        &[],
    )
    .await;
    assert_eq!(
        (bundled.code, bundled.stdout.as_str()),
        (Some(0), "\"123456789012\"\n"),
        "{}",
        bundled.stderr
    );
    let from_env = resolve(&url, &token, &query, &[("AWS_CA_BUNDLE", &ca)]).await;
    assert_eq!(from_env.stdout, bundled.stdout, "{}", from_env.stderr);
    let unverified = resolve(
        &url,
        &token,
        &[&query[..], &["--no-verify-ssl"]].concat(),
        &[],
    )
    .await;
    assert_eq!(unverified.stdout, bundled.stdout, "{}", unverified.stderr);
    assert!(
        unverified.stderr.contains(
            "InsecureRequestWarning: Unverified HTTPS request is being made to host '127.0.0.1'"
        ),
        "{}",
        unverified.stderr
    );

    if let Some(cli) = aws_cli() {
        let (stdout, stderr) = aws(
            &cli,
            &url,
            &token,
            &[&query[..], &["--ca-bundle", &ca]].concat(),
        )
        .await;
        assert_eq!(stdout, bundled.stdout, "the AWS CLI: {stderr}");
        let (stdout, stderr) = aws(
            &cli,
            &url,
            &token,
            &[&query[..], &["--no-verify-ssl"]].concat(),
        )
        .await;
        assert_eq!(stdout, bundled.stdout, "the AWS CLI: {stderr}");
        assert!(
            stderr.contains("InsecureRequestWarning"),
            "the AWS CLI: {stderr}"
        );
        let (_, stderr) = aws(&cli, &url, &token, &query).await;
        assert!(
            stderr.contains(&format!("SSL validation failed for {url}/")),
            "the AWS CLI: {stderr}"
        );
    }
}
