//! The standalone `marketplace-emulator` binary, started as a process the way
//! a seller's test suite in any language starts it: its command line, its
//! admin API (good and bad input), its shutdown on SIGTERM, and real AWS
//! clients against it: boto3 and the AWS CLI (both from PyPI, pinned in
//! `tests/common/aws-clients-requirements.txt`, installed by `.ci/run` into
//! `target/aws-clients-venv`). Under `CI=true` missing clients fail the tests
//! that need them; elsewhere those tests are skipped with a note.

#![cfg(feature = "emulator-server")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::missing_service;
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_marketplace-emulator");

/// A running `marketplace-emulator`; killed when dropped.
struct Emulator {
    process: Child,
    stdout: BufReader<ChildStdout>,
    endpoint: String,
    demo_token: String,
}

impl Emulator {
    fn start(args: &[&str]) -> Self {
        let mut process = Command::new(BINARY)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("marketplace-emulator starts");
        let mut stdout = BufReader::new(process.stdout.take().expect("piped"));
        let (mut endpoint, mut demo_token) = (None, None);
        let mut line = String::new();
        while endpoint.is_none() || demo_token.is_none() {
            line.clear();
            let read = stdout.read_line(&mut line).expect("its output");
            assert!(read > 0, "marketplace-emulator exited before it was ready");
            if let Some(url) = line.trim().strip_prefix("Endpoint: ") {
                endpoint = Some(url.to_owned());
            } else if line.starts_with("Demo token") {
                demo_token = line.split_whitespace().last().map(str::to_owned);
            }
        }
        Self {
            process,
            stdout,
            endpoint: endpoint.unwrap(),
            demo_token: demo_token.unwrap(),
        }
    }

    /// One admin request: status and JSON body (`Null` when empty).
    fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        http(
            &self.endpoint,
            method,
            &format!("/_emulator/{path}"),
            &[],
            body.unwrap_or(""),
        )
    }

    /// One Marketplace Metering request, signed as an SDK signs it.
    fn metering(&self, target: &str, body: &str) -> (u16, Value) {
        let host = self.endpoint.trim_start_matches("http://");
        let headers = [
            ("host", host),
            ("x-amz-target", target),
            ("content-type", "application/x-amz-json-1.1"),
        ];
        let signature = common::signing::Signer::default().headers(host, &headers, body.as_bytes());
        let mut all: Vec<(&str, &str)> = headers[1..].to_vec();
        all.extend(signature.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        http(&self.endpoint, "POST", "/", &all, body)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A minimal HTTP/1.1 client (one request per connection), so that the test
/// sees exactly what any client would.
fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    use std::io::Read;
    let address = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("the emulator accepts");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).expect("UTF-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
    };
    (status, body)
}

fn venv_tool(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/aws-clients-venv/bin")
        .join(name);
    if path.is_file() {
        Some(path)
    } else {
        missing_service(&format!(
            "{name} (boto3 and awscli in target/aws-clients-venv: pip install -r tests/common/aws-clients-requirements.txt)"
        ));
        None
    }
}

/// Runs `tests/clients/<script>` with the venv's Python against `emulator`,
/// and gives the JSON it prints; `None` when the venv is missing.
fn python_client(script: &str, emulator: &Emulator) -> Option<Value> {
    let python = venv_tool("python")?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let output = aws_client(python)
        .arg(script)
        .arg(&emulator.endpoint)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("JSON from the script"))
}

/// A command for an AWS client: static credentials and region, no
/// configuration files, no instance metadata.
fn aws_client(program: PathBuf) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "AKIDCLIEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "cli-example-secret")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_PAGER", "");
    command
}

#[test]
fn the_admin_api_registers_tokens_and_scripts_the_emulator() {
    let emulator = Emulator::start(&[]);
    let (status, body) = emulator.admin(
        "POST",
        "tokens",
        Some(r#"{"RegistrationToken":"tok-1","CustomerAWSAccountId":"123456789012","ProductCode":"prod-1","CustomerIdentifier":"cust-1","LicenseArn":"arn:aws:license-manager::1:license:l-1","AgreementId":"agmt-1","ValidForSeconds":3600}"#),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"RegistrationToken": "tok-1", "ValidForSeconds": 3600})
    );

    let (status, resolved) = emulator.metering(
        "AWSMPMeteringService.ResolveCustomer",
        r#"{"RegistrationToken":"tok-1"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        resolved,
        json!({
            "CustomerAWSAccountId": "123456789012",
            "ProductCode": "prod-1",
            "CustomerIdentifier": "cust-1",
            "LicenseArn": "arn:aws:license-manager::1:license:l-1",
            "Metadata": {"AgreementId": "agmt-1"}
        })
    );

    // The admin API's root lists its resources.
    let (status, index) = emulator.admin("GET", "", None);
    assert_eq!(status, 200);
    assert!(
        index["Resources"]
            .as_array()
            .unwrap()
            .contains(&json!("tokens"))
    );

    // Policy: single use.
    assert_eq!(
        emulator.admin("GET", "policy", None),
        (200, json!({"RedemptionPolicy": "ReusableUntilExpiry"}))
    );
    assert_eq!(
        emulator.admin("PUT", "policy", Some(r#"{"RedemptionPolicy":"SingleUse"}"#)),
        (200, json!({"RedemptionPolicy": "SingleUse"}))
    );
    let (status, expired) = emulator.metering(
        "AWSMPMeteringService.ResolveCustomer",
        r#"{"RegistrationToken":"tok-1"}"#,
    );
    assert_eq!(
        (status, &expired["__type"]),
        (400, &json!("ExpiredTokenException"))
    );

    // Faults, in order, with a count.
    let (status, pending) = emulator.admin(
        "POST",
        "faults",
        Some(r#"{"Fault":"ThrottlingException","Count":2}"#),
    );
    assert_eq!(status, 201);
    assert_eq!(pending["PendingFaults"].as_array().unwrap().len(), 2);
    emulator.admin(
        "POST",
        "faults",
        Some(r#"{"Fault":"Latency","LatencyMillis":5}"#),
    );
    let (_, pending) = emulator.admin("GET", "faults", None);
    assert_eq!(
        pending,
        json!({"PendingFaults": [
            {"Operation": "ResolveCustomer", "Fault": "ThrottlingException"},
            {"Operation": "ResolveCustomer", "Fault": "ThrottlingException"},
            {"Operation": "ResolveCustomer", "Fault": "Latency", "LatencyMillis": 5}
        ]})
    );
    let (status, throttled) = emulator.metering(
        "AWSMPMeteringService.ResolveCustomer",
        r#"{"RegistrationToken":"tok-1"}"#,
    );
    assert_eq!(
        (status, &throttled["__type"]),
        (400, &json!("ThrottlingException"))
    );
    assert_eq!(emulator.admin("DELETE", "faults", None).0, 204);
    assert_eq!(
        emulator.admin("GET", "faults", None).1,
        json!({"PendingFaults": []})
    );

    // Counters, per token and overall.
    let (status, counters) = emulator.admin("GET", "counters?RegistrationToken=tok-1", None);
    assert_eq!(status, 200);
    assert_eq!(
        counters,
        json!({"RegistrationToken": "tok-1", "Registered": true, "Calls": 3, "Redemptions": 1, "Attempts": []})
    );
    let (_, overall) = emulator.admin("GET", "counters", None);
    assert_eq!(overall["Requests"], 3);

    // A token with `+`, `/` and `=` in it, unencoded in the query; and one
    // registered already expired.
    emulator.admin(
        "POST",
        "tokens",
        Some(r#"{"RegistrationToken":"a+b/c==","CustomerAWSAccountId":"1","ProductCode":"p","ValidForSeconds":0}"#),
    );
    let (_, counters) = emulator.admin("GET", "counters?RegistrationToken=a+b/c==", None);
    assert_eq!(counters["Registered"], true, "{counters}");
    let (status, expired) = emulator.metering(
        "AWSMPMeteringService.ResolveCustomer",
        r#"{"RegistrationToken":"a+b/c=="}"#,
    );
    assert_eq!(
        (status, &expired["__type"]),
        (400, &json!("ExpiredTokenException"))
    );

    // Reset forgets it all.
    assert_eq!(emulator.admin("POST", "reset", None).0, 204);
    let (_, counters) = emulator.admin("GET", "counters?RegistrationToken=tok-1", None);
    assert_eq!(counters["Registered"], false);
    assert_eq!(counters["Calls"], 0);
    assert_eq!(
        emulator.admin("GET", "policy", None).1["RedemptionPolicy"],
        "ReusableUntilExpiry"
    );
    let (status, unknown) = emulator.metering(
        "AWSMPMeteringService.ResolveCustomer",
        r#"{"RegistrationToken":"tok-1"}"#,
    );
    assert_eq!(
        (status, &unknown["__type"]),
        (400, &json!("InvalidTokenException"))
    );
}

#[test]
fn bad_admin_input_gets_a_400_that_says_what_is_wrong() {
    let emulator = Emulator::start(&[]);
    for (method, path, body, expected_status, expected) in [
        ("POST", "tokens", "", 400, "not JSON"),
        ("POST", "tokens", "[1]", 400, "must be a JSON object"),
        (
            "POST",
            "tokens",
            r#"{"CustomerAWSAccountId":"1","ProductCode":"p"}"#,
            400,
            "RegistrationToken is required",
        ),
        (
            "POST",
            "tokens",
            r#"{"RegistrationToken":"t","ProductCode":"p"}"#,
            400,
            "CustomerAWSAccountId is required",
        ),
        (
            "POST",
            "tokens",
            r#"{"RegistrationToken":"t","CustomerAWSAccountId":"1"}"#,
            400,
            "ProductCode is required",
        ),
        (
            "POST",
            "tokens",
            r#"{"RegistrationToken":"","CustomerAWSAccountId":"1","ProductCode":"p"}"#,
            400,
            "RegistrationToken must not be empty",
        ),
        (
            "POST",
            "tokens",
            r#"{"RegistrationToken":7,"CustomerAWSAccountId":"1","ProductCode":"p"}"#,
            400,
            "RegistrationToken must be a string",
        ),
        (
            "POST",
            "tokens",
            r#"{"RegistrationToken":"t","CustomerAWSAccountId":"1","ProductCode":"p","ValidForSeconds":1e12}"#,
            400,
            "ValidForSeconds must be a whole number",
        ),
        (
            "POST",
            "tokens",
            r#"{"RegistrationToken":"t","CustomerAWSAccountId":"1","ProductCode":"p","ValidForSeconds":-5}"#,
            400,
            "ValidForSeconds must be a whole number",
        ),
        (
            "POST",
            "tokens",
            r#"{"RegistrationToken":"t","CustomerAWSAccountId":"1","ProductCode":"p","Colour":"red"}"#,
            400,
            "unknown field \"Colour\"",
        ),
        (
            "PUT",
            "policy",
            r#"{"RedemptionPolicy":"Sometimes"}"#,
            400,
            "is not one of SingleUse",
        ),
        ("PUT", "policy", "{}", 400, "RedemptionPolicy is required"),
        (
            "POST",
            "faults",
            r#"{"Fault":"Meteor"}"#,
            400,
            "is not one of",
        ),
        (
            "POST",
            "faults",
            r#"{"Fault":"Latency"}"#,
            400,
            "needs LatencyMillis",
        ),
        (
            "POST",
            "faults",
            r#"{"Fault":"ThrottlingException","LatencyMillis":5}"#,
            400,
            "for Latency faults only",
        ),
        (
            "POST",
            "faults",
            r#"{"Fault":"ThrottlingException","Count":1e9}"#,
            400,
            "Count must be a whole number",
        ),
        (
            "GET",
            "counters?Colour=red",
            "",
            400,
            "unknown query parameter",
        ),
        ("GET", "nowhere", "", 404, "no admin resource"),
        ("DELETE", "tokens", "", 405, "DELETE is not allowed"),
    ] {
        let (status, answer) = emulator.admin(method, path, Some(body));
        assert_eq!(status, expected_status, "{method} {path} {body}: {answer}");
        let error = answer["Error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} {body}: {answer}"));
        assert!(error.contains(expected), "{method} {path} {body}: {error}");
    }
    // Still serving.
    assert_eq!(emulator.admin("GET", "policy", None).0, 200);
}

#[test]
fn tokens_are_preloaded_from_a_file_and_a_bad_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("marketplace-emulator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("tokens.json");
    std::fs::write(
        &good,
        r#"[{"RegistrationToken":"pre-1","CustomerAWSAccountId":"123456789012","ProductCode":"prod-1"},
            {"RegistrationToken":"pre-2","CustomerAWSAccountId":"210987654321","ProductCode":"prod-2","LicenseArn":"arn:l"}]"#,
    )
    .unwrap();
    let emulator = Emulator::start(&["--tokens", good.to_str().unwrap(), "--policy", "single-use"]);
    let (status, resolved) = emulator.metering(
        "AWSMPMeteringService.ResolveCustomer",
        r#"{"RegistrationToken":"pre-2"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(resolved["LicenseArn"], "arn:l");
    assert_eq!(
        emulator.admin("GET", "policy", None).1["RedemptionPolicy"],
        "SingleUse"
    );

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"[{"RegistrationToken":"pre-1","ProductCode":"p"}]"#).unwrap();
    let output = Command::new(BINARY)
        .args(["--port", "0", "--tokens", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("token 0: CustomerAWSAccountId is required"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn it_stops_cleanly_on_sigterm_and_sigint() {
    for signal in ["-TERM", "-INT"] {
        let mut emulator = Emulator::start(&[]);
        let status = Command::new("kill")
            .args([signal, &emulator.process.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = emulator.process.wait().unwrap();
        assert!(exit.success(), "{signal}: {exit:?}");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut emulator.stdout, &mut rest).unwrap();
        assert!(rest.contains("Stopped."), "{signal}: {rest}");
    }
}

/// boto3 resolves every field and surfaces every modeled error as botocore's
/// modeled exception class.
#[test]
fn boto3_resolves_customers_and_gets_modeled_errors() {
    let emulator = Emulator::start(&[]);
    let Some(results) = python_client("boto3_resolve_customer.py", &emulator) else {
        return;
    };
    assert_eq!(
        results["full"],
        json!({"Result": {
            "CustomerAWSAccountId": "210987654321",
            "ProductCode": "prod-boto3",
            "CustomerIdentifier": "cust-boto3",
            "LicenseArn": "arn:aws:license-manager::210987654321:license:l-boto3",
            "Metadata": {"AgreementId": "agmt-boto3"}
        }})
    );
    assert_eq!(
        results["minimal"],
        json!({"Result": {"CustomerAWSAccountId": "111122223333", "ProductCode": "prod-minimal"}})
    );
    assert_modeled_errors(
        &results,
        &[
            ("resubmitted", "ExpiredTokenException", 400),
            ("unknown", "InvalidTokenException", 400),
            ("throttled", "ThrottlingException", 400),
            ("internal", "InternalServiceErrorException", 500),
            ("disabled", "DisabledApiException", 400),
        ],
    );
}

/// The AWS CLI resolves a token through `AWS_ENDPOINT_URL_MARKETPLACE_METERING`
/// and `--endpoint-url`, in each output format.
#[test]
fn the_aws_cli_resolves_a_token_in_every_output_format() {
    let Some(aws) = venv_tool("aws") else {
        return;
    };
    let emulator = Emulator::start(&[]);
    let run = |format: &str, by_flag: bool| {
        let mut command = aws_client(aws.clone());
        command.args([
            "meteringmarketplace",
            "resolve-customer",
            "--registration-token",
            &emulator.demo_token,
            "--output",
            format,
        ]);
        if by_flag {
            command.args(["--endpoint-url", &emulator.endpoint]);
        } else {
            command.env("AWS_ENDPOINT_URL_MARKETPLACE_METERING", &emulator.endpoint);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run("json", false)).expect("JSON");
    assert_eq!(json["CustomerAWSAccountId"], "123456789012");
    assert_eq!(json["ProductCode"], "prod-demo123");
    assert_eq!(json["CustomerIdentifier"], "cust-demo");
    assert_eq!(
        json["LicenseArn"],
        "arn:aws:license-manager::123456789012:license:l-demo"
    );
    let text = run("text", true);
    assert_eq!(
        text.trim_end().split('\t').collect::<Vec<_>>(),
        [
            "123456789012",
            "cust-demo",
            "arn:aws:license-manager::123456789012:license:l-demo",
            "prod-demo123"
        ]
    );
    let table = run("table", true);
    assert!(table.contains("ResolveCustomer"), "{table}");
    assert!(
        table.contains("|  CustomerAWSAccountId |  123456789012"),
        "{table}"
    );
    assert!(!table.contains(&emulator.demo_token));

    // An unknown token: the CLI's modeled error, and its exit status for a
    // service error (255 from AWS CLI v1, 254 from v2).
    let mut command = aws_client(aws);
    let output = command
        .args([
            "meteringmarketplace",
            "resolve-customer",
            "--registration-token",
            "nope",
        ])
        .args(["--endpoint-url", &emulator.endpoint])
        .output()
        .unwrap();
    assert!(
        matches!(output.status.code(), Some(254 | 255)),
        "{:?}",
        output.status
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(InvalidTokenException)"), "{stderr}");
}

/// Started with `--credentials`, the emulator verifies signatures: the AWS
/// CLI's (botocore's) signature with the right secret passes, a wrong secret
/// gets `SignatureDoesNotMatch` and an unknown key `InvalidClientTokenId`.
#[test]
fn the_aws_cli_signature_verifies_against_given_credentials() {
    let Some(aws) = venv_tool("aws") else {
        return;
    };
    let emulator = Emulator::start(&["--credentials", "AKIDCLIEXAMPLE:cli-example-secret"]);
    let resolve = |key: &str, secret: &str| {
        aws_client(aws.clone())
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .args([
                "meteringmarketplace",
                "resolve-customer",
                "--output",
                "text",
            ])
            .args(["--registration-token", &emulator.demo_token])
            .args(["--endpoint-url", &emulator.endpoint])
            .output()
            .unwrap()
    };
    let right = resolve("AKIDCLIEXAMPLE", "cli-example-secret");
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    let wrong = resolve("AKIDCLIEXAMPLE", "not-the-secret");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("(SignatureDoesNotMatch)"));
    let unknown = resolve("AKIDUNKNOWN", "cli-example-secret");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("(InvalidClientTokenId)"));
}

/// boto3's `marketplace-entitlement` client lists entitlements: filters
/// (values of a key united, keys intersected), every value type, the
/// expiration, `MaxResults` and `NextToken` paging (by hand and with boto3's
/// paginator), and each modeled error as botocore's exception class.
#[test]
fn boto3_lists_entitlements_with_filters_paging_and_modeled_errors() {
    let emulator = Emulator::start(&[]);
    let Some(results) = python_client("boto3_get_entitlements.py", &emulator) else {
        return;
    };
    let account = "210987654321";
    let license_a = "arn:aws:license-manager::210987654321:license:l-a";
    let license_b = "arn:aws:license-manager::210987654321:license:l-b";
    assert_eq!(
        results["by_account"],
        json!([
            {"ProductCode": "prod-ent", "Dimension": "Users", "CustomerAWSAccountId": account,
             "LicenseArn": license_a, "Value": {"IntegerValue": 25},
             "ExpirationDate": "2030-01-01T00:00:00+00:00"},
            {"ProductCode": "prod-ent", "Dimension": "Storage", "CustomerAWSAccountId": account,
             "LicenseArn": license_a, "Value": {"DoubleValue": 1.5}},
            {"ProductCode": "prod-ent", "Dimension": "Premium", "CustomerAWSAccountId": account,
             "LicenseArn": license_b, "Value": {"BooleanValue": true}},
            {"ProductCode": "prod-ent", "Dimension": "Tier", "CustomerAWSAccountId": account,
             "LicenseArn": license_b, "Value": {"StringValue": "gold"}}
        ])
    );
    assert_eq!(results["by_license"], json!(["Premium", "Tier"]));
    assert_eq!(
        results["union_and_intersection"],
        json!([
            ["Tier", account],
            ["Users", "111122223333"],
            ["Users", account]
        ])
    );
    let pages: Vec<Vec<String>> = serde_json::from_value(results["pages"].clone()).unwrap();
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [7, 7, 7, 7, 2]
    );
    let all: Vec<String> = pages.concat();
    let expected: Vec<String> = (0..30).map(|i| format!("D{i:02}")).collect();
    assert_eq!(all, expected, "every entitlement once, in order");
    assert_eq!(results["paginator"], 30);
    assert_modeled_errors(
        &results,
        &[
            ("both_customer_filters", "InvalidParameterException", 400),
            ("foreign_next_token", "InvalidParameterException", 400),
            ("throttled", "ThrottlingException", 400),
            ("internal", "InternalServiceErrorException", 500),
        ],
    );
}

/// Each `(step, exception, status)`: boto3 raised its modeled exception for
/// that step, with that error code and HTTP status.
fn assert_modeled_errors(results: &serde_json::Value, expected: &[(&str, &str, u16)]) {
    for &(step, exception, status) in expected {
        assert_eq!(
            results[step],
            json!({"Exception": exception, "Code": exception, "Status": status, "Modeled": true}),
            "{step}"
        );
    }
}
