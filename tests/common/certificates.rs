//! Certificates made by `openssl` for a test's own TLS servers, in a scratch
//! directory of the test's own.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::missing_service;

/// Whether `program` can be run; if not, says so as [`missing_service`] does.
pub fn installed(program: &str, version_flag: &str) -> bool {
    let found = Command::new(program).arg(version_flag).output().is_ok();
    if !found {
        missing_service(program);
    }
    found
}

/// A directory of the test's own under the system's temporary directory.
pub fn scratch_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tower-resolve-customer-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// A CA and a server certificate for `name` (and 127.0.0.1 when `name` is
/// `localhost`), made by `openssl` in `dir`: `(ca.crt, server.crt, server.key)`.
pub fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=tower-resolve-customer test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        &format!("/CN={name}"),
    ]);
    let san = if name == "localhost" {
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n".to_owned()
    } else {
        format!("subjectAltName=DNS:{name}\n")
    };
    std::fs::write(dir.join("san.cnf"), san).expect("san.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}
