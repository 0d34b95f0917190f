//! Signature Version 4 for requests a test writes by hand, with the AWS
//! SDK's own signer (`aws-sigv4`), so that a test can sign as any client
//! would, or deliberately wrongly (another secret, service or clock).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

/// How to sign.
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

impl Default for Signer<'_> {
    fn default() -> Self {
        Self {
            access_key: "AKIDEXAMPLE",
            secret: "example-secret",
            service: "aws-marketplace",
            time: SystemTime::now(),
        }
    }
}

impl Signer<'_> {
    /// The headers to add to a `POST /` to `host` with `headers` (which must
    /// include `host`) and `body`: `authorization` and `x-amz-date`.
    pub fn headers(
        &self,
        host: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let identity = Credentials::new(self.access_key, self.secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(self.service)
            .time(self.time)
            .settings(SigningSettings::default())
            .build()
            .expect("signing parameters")
            .into();
        let request = SignableRequest::new(
            "POST",
            format!("http://{host}/"),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .expect("a signable request");
        let (instructions, _) = sign(request, &params).expect("signed").into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .iter()
            .map(|header| (header.name().to_owned(), header.value().to_owned()))
            .collect()
    }
}
