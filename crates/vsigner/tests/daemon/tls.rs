//! The README's walkthrough over TLS, then credentials that rotate, as an operator runs them:
//! a private CA signs the coordinator's and the signers' certificates; the coordinator serves
//! HTTPS (`--tls-cert`, `--tls-key`), the signers reach it trusting only that CA
//! (`APICACert`) and serve their own API over HTTPS (`TLSCertFile`, `TLSKeyFile`) with two
//! overlapping `SignerAPIToken`s, and the CLI trusts the CA (`VSIGNER_CA_CERT`). A 2-of-2
//! secp256k1 vault is created and signs. Then an operator client is created, its secret
//! rotated (the old one works for the overlap, then is refused) and revoked (its secret and
//! its token are refused at once), and the last operator client cannot be revoked.

use std::time::Duration;

use serde_json::{json, Value};

use super::harness::*;
use super::{eip191, verify_secp256k1_parts, KEYGEN};

/// A reqwest client that trusts only `ca` (or the platform's roots).
fn https_client(ca: Option<&std::path::Path>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        b = b.tls_certs_only(vsigner_https::ca_certificates(ca).unwrap());
    }
    b.build().unwrap()
}

/// `POST /oauth/token` with `id` and `secret`: the access token, or the HTTP status.
async fn token(http: &reqwest::Client, url: &str, id: &str, secret: &str) -> Result<String, u16> {
    let r = http
        .post(format!("{url}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let body: Value = r.json().await.unwrap();
    Ok(body["access_token"].as_str().unwrap().to_owned())
}

/// GraphQL `{ me { clientId } }` with a bearer token: the error code, if refused.
async fn me(http: &reqwest::Client, url: &str, token: &str) -> Result<String, String> {
    let body: Value = http
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": "{ me { clientId } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => Err(code.to_owned()),
        None => Ok(body["data"]["me"]["clientId"].as_str().unwrap().to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_runs_over_tls_and_api_clients_rotate_and_revoke() {
    let root = tempfile::tempdir().unwrap();
    let pki = pki(&root.path().join("pki"));
    let (_broker, broker_url) = start_broker();
    let (coordinator, plain_url, org) = start_coordinator(
        root.path(),
        &broker_url,
        &[
            "--tls-cert",
            pki.cert.to_str().unwrap(),
            "--tls-key",
            pki.key.to_str().unwrap(),
        ],
    );
    let url = plain_url.replacen("http://", "https://", 1);
    let webhook = start_webhook();
    let mut signers = Signer::one_device_each(
        root.path(),
        &org,
        &url,
        &broker_url,
        &webhook,
        &["tls-1", "tls-2"],
        &[(0, 1), (1, 1)],
    );
    let (old_token, new_token) = (API_TOKEN, "the-next-api-token-0123456789");
    for s in &signers {
        s.tweak(|cfg| {
            cfg["APICACert"] = json!(pki.ca);
            cfg["TLSCertFile"] = json!(pki.cert);
            cfg["TLSKeyFile"] = json!(pki.key);
            cfg["SignerAPIToken"] = json!([old_token, new_token]);
        });
    }
    for s in &mut signers {
        s.start();
    }

    // The CLI, trusting the CA: the devices, a vault, a signature.
    let ca = pki.ca.to_str().unwrap();
    let trust = [("VSIGNER_CA_CERT", ca)];
    let cli = Cli {
        url: url.clone(),
        id: org.operator.0.clone(),
        secret: org.operator.1.clone(),
    };
    let mut devices = Vec::new();
    let start = std::time::Instant::now();
    while devices.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "devices did not register: {devices:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        devices = cli
            .run_with(&["device", "list"], &trust)
            .await
            .as_array()
            .unwrap()
            .clone();
    }
    let ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let created = cli
        .run_with(
            &[
                "vault",
                "create",
                "--name",
                "treasury",
                "--curve",
                "secp256k1",
                "--threshold",
                "2",
                "--signers",
                &ids.join(","),
                "--wait",
            ],
            &trust,
        )
        .await;
    assert_eq!(created["state"], "Completed", "{created}");
    let vault = created["vaultId"].as_str().unwrap().to_owned();
    let listed = cli.run_with(&["vault", "list"], &trust).await;
    assert!(
        listed.as_array().unwrap().iter().any(|v| v["id"] == json!(vault)),
        "{listed}"
    );
    let public_key = created["result"]["publicKey"].as_str().unwrap().to_owned();
    let signed = tokio::time::timeout(
        KEYGEN,
        cli.run_with(&["vault", "sign", &vault, "--text", "hello", "--wait"], &trust),
    )
    .await
    .unwrap();
    assert_eq!(signed["state"], "Completed", "{signed}");
    verify_secp256k1_parts(
        &public_key,
        &eip191(b"hello"),
        signed["result"]["signature"].as_str().unwrap(),
        signed["result"]["recoveryId"].as_u64().unwrap() as u8,
    );

    // Without the CA the CLI refuses the coordinator's certificate, saying so.
    let out = std::process::Command::new(bin())
        .args(["device", "list", "--coordinator", &url])
        .env("VSIGNER_CLIENT_ID", &org.operator.0)
        .env("VSIGNER_CLIENT_SECRET", &org.operator.1)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    // The signers' API over HTTPS: both tokens work, another does not; plain HTTP gets nothing.
    let http = https_client(Some(&pki.ca));
    let signer_api = format!("https://127.0.0.1:{}", signers[0].port);
    for (token, status) in [
        (old_token, 200),
        (new_token, 200),
        ("not-a-token-of-this-signer", 401),
    ] {
        let r = http
            .get(format!("{signer_api}/version"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{token}");
    }
    assert!(https_client(None)
        .get(format!("http://127.0.0.1:{}/version", signers[0].port))
        .bearer_auth(old_token)
        .send()
        .await
        .is_err());

    // API clients: a second operator client, rotated with a 3 s overlap, then revoked.
    let made = cli
        .run_with(&["client", "create", "--role", "operator"], &trust)
        .await;
    let (id, first) = (
        made["clientId"].as_str().unwrap().to_owned(),
        made["clientSecret"].as_str().unwrap().to_owned(),
    );
    let held = token(&http, &url, &id, &first).await.unwrap();
    let rotated = cli
        .run_with(&["client", "rotate", &id, "--overlap-secs", "3"], &trust)
        .await;
    let second = rotated["clientSecret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    token(&http, &url, &id, &second).await.unwrap();
    token(&http, &url, &id, &first)
        .await
        .expect("the old secret works during the overlap");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        token(&http, &url, &id, &first).await,
        Err(401),
        "the old secret after the overlap"
    );
    let fresh = token(&http, &url, &id, &second).await.unwrap();
    assert_eq!(me(&http, &url, &fresh).await, Ok(id.clone()));
    assert_eq!(
        me(&http, &url, &held).await,
        Ok(id.clone()),
        "a token outlives a rotation"
    );

    let revoked = cli.run_with(&["client", "revoke", &id], &trust).await;
    assert!(revoked["revokedAt"].is_string(), "{revoked}");
    assert_eq!(token(&http, &url, &id, &second).await, Err(401));
    assert_eq!(me(&http, &url, &fresh).await, Err("UNAUTHENTICATED".to_owned()));
    let listed = cli.run_with(&["client", "list"], &trust).await;
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == json!(id))
        .unwrap();
    assert!(entry["revokedAt"].is_string(), "{listed}");

    // The organisation's last operator client cannot be revoked (nobody could manage it).
    let out = std::process::Command::new(bin())
        .args(["client", "revoke", &org.operator.0, "--coordinator", &url])
        .env("VSIGNER_CLIENT_ID", &org.operator.0)
        .env("VSIGNER_CLIENT_SECRET", &org.operator.1)
        .env("VSIGNER_CA_CERT", ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("last operator client"));

    // Every change is in the audit log.
    let audit = cli.run_with(&["audit", "export"], &trust).await;
    let events: Vec<&str> = audit["auditLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for event in ["api_client_created", "api_client_rotated", "api_client_revoked"] {
        assert!(events.contains(&event), "no {event} in {events:?}");
    }
    drop(coordinator);
}
