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

/// Sends `POST /` with `headers` (each as given, `host` among them) and
/// `body` over a connection of its own to `addr`, and gives the raw response.
pub async fn raw_post(
    addr: std::net::SocketAddr,
    headers: impl IntoIterator<Item = (String, String)>,
    body: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = String::from("POST / HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
