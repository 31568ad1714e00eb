//! HTTPS with a private CA, as an operator deploys it: the server's certificate chain and key
//! from PEM files, a client that trusts the CA's PEM file. A client that does not trust the
//! CA, or speaks plain HTTP, gets nothing; bad files are refused naming the file; shutdown
//! lets a request in flight finish.

// Tests may unwrap (see clippy.toml); helpers outside #[test] fns too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use vsigner_https::{ca_certificates, serve, ServerTls, TlsError};

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, as PEM files.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
        other_key: write("other.key", KeyPair::generate().unwrap().serialize_pem()),
        _dir: dir,
    }
}

fn client(ca: Option<&Path>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        b = b.tls_certs_only(ca_certificates(ca).unwrap());
    }
    b.build().unwrap()
}

fn router() -> Router {
    Router::new().route("/hello", get(|| async { "hello" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "slow"
        }),
    )
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_gets_an_answer_and_no_one_else_does() {
    let pki = pki();
    let tls = ServerTls::from_pem_files(&pki.cert, &pki.key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router(), Some(tls), async move {
        let _ = stopped.await;
    }));

    let trusting = client(Some(&pki.ca));
    for host in ["localhost", "127.0.0.1"] {
        let r = trusting
            .get(format!("https://{host}:{port}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "hello");
    }
    // The platform's roots do not know the private CA; plain HTTP gets no answer.
    let e = client(None)
        .get(format!("https://localhost:{port}/hello"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(client(None)
        .get(format!("http://localhost:{port}/hello"))
        .send()
        .await
        .is_err());

    // Shutdown: a request in flight finishes; then nothing is accepted.
    let slow = tokio::spawn({
        let trusting = trusting.clone();
        async move {
            trusting
                .get(format!("https://localhost:{port}/slow"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    assert_eq!(slow.await.unwrap(), "slow");
    server.await.unwrap().unwrap();
    assert!(trusting
        .get(format!("https://localhost:{port}/hello"))
        .send()
        .await
        .is_err());
}

#[test]
fn bad_files_are_refused_naming_the_file() {
    let pki = pki();
    // A key of another certificate.
    let e = ServerTls::from_pem_files(&pki.cert, &pki.other_key).unwrap_err();
    assert!(matches!(e, TlsError::Config { .. }), "{e}");
    assert!(e.to_string().contains("other.key"), "{e}");
    // A certificate where the key should be, a key where the certificate should be, a
    // missing file.
    let e = ServerTls::from_pem_files(&pki.cert, &pki.cert).unwrap_err();
    assert!(
        e.to_string().contains("server.pem") && e.to_string().contains("no PRIVATE KEY"),
        "{e}"
    );
    let e = ServerTls::from_pem_files(&pki.key, &pki.key).unwrap_err();
    assert!(
        e.to_string().contains("server.key") && e.to_string().contains("no CERTIFICATE"),
        "{e}"
    );
    let missing = pki.ca.with_file_name("missing.pem");
    let e = ServerTls::from_pem_files(&missing, &pki.key).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    // The key's content never appears in an error.
    let key = std::fs::read_to_string(&pki.key).unwrap();
    let body = key.lines().nth(1).unwrap();
    assert!(!e.to_string().contains(body));
    let e = ca_certificates(&pki.key).unwrap_err();
    assert!(e.to_string().contains("server.key"), "{e}");
}

/// A slow or idle client cannot hold the server: headers not sent within the limit close the
/// connection, and connections beyond the limit wait until one closes.
#[tokio::test]
async fn slow_clients_are_cut_and_connections_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = vsigner_https::Limits {
        max_connections: 1,
        header_read_timeout: Duration::from_millis(300),
        ..vsigner_https::Limits::default()
    };
    tokio::spawn(vsigner_https::serve_with(
        listener,
        router(),
        None,
        limits,
        std::future::pending(),
    ));

    // A client that sends half a request and waits holds the only slot…
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = client(None)
            .get(format!("http://{addr}/hello"))
            .send()
            .await
            .unwrap();
        (r.text().await.unwrap(), started.elapsed())
    });
    // …until the server closes it for not finishing its headers in time.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the server must close a connection whose headers never come"
    );
    let (body, waited) = waiting.await.unwrap();
    assert_eq!(body, "hello");
    assert!(
        waited >= Duration::from_millis(150),
        "the second connection waited for the slot: {waited:?}"
    );
}
