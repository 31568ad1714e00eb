//! `vsigner coordinator init` and `vsigner coordinator` through the library entry points.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clap::Parser;
use common::*;
use serde_json::json;
use vsigner_coordinator::{CoordinatorArgs, CoordinatorCommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(clap::Subcommand)]
enum Top {
    Coordinator(CoordinatorArgs),
}

#[test]
fn clap_parses_serve_and_init() {
    let Top::Coordinator(args) = Cli::try_parse_from([
        "vsigner",
        "coordinator",
        "--listen",
        "127.0.0.1:9999",
        "--database",
        "postgres://x/y",
        "--mqtt",
        "mqtt://127.0.0.1:1883",
        "--evm-rpc",
        "31337=http://127.0.0.1:8545",
        "--evm-rpc",
        "1=https://rpc.example",
    ])
    .unwrap()
    .cmd;
    assert!(args.command.is_none());
    assert_eq!(args.serve.listen.port(), 9999);
    assert_eq!(args.serve.evm_rpc.len(), 2);
    assert_eq!(args.serve.evm_rpc[0].chain_id, 31337);
    let Top::Coordinator(args) = Cli::try_parse_from([
        "vsigner",
        "coordinator",
        "init",
        "--database",
        "sqlite://a.db?mode=rwc",
        "--org",
        "acme",
    ])
    .unwrap()
    .cmd;
    match args.command {
        Some(CoordinatorCommand::Init(i)) => assert_eq!(i.org, "acme"),
        None => panic!("init not parsed"),
    }
    assert!(Cli::try_parse_from(["vsigner", "coordinator", "--evm-rpc", "x=http://a"]).is_err());
    assert!(Cli::try_parse_from(["vsigner", "coordinator", "--evm-rpc", "1=ftp://a"]).is_err());
    assert!(
        Cli::try_parse_from(["vsigner", "coordinator", "init"]).is_err(),
        "--org is required"
    );
}

per_backend!(init_then_run);

async fn init_then_run(db: Db) {
    let init = vsigner_coordinator::init(&vsigner_coordinator::InitArgs {
        database: db.url.clone(),
        org: "acme".into(),
    })
    .await
    .unwrap();
    // Secrets are redacted in Debug.
    assert!(!format!("{init:?}").contains(init.operator_client_secret.expose()));
    // Pick a free port, then run the coordinator as the binary would.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = serve_args(&db);
    serve.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let task = tokio::spawn(vsigner_coordinator::run(CoordinatorArgs { command: None, serve }));
    let base = format!("http://127.0.0.1:{port}");
    let http = http_client();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            up = r.status() == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "the coordinator did not come up");
    let resp: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", init.operator_client_id.as_str()),
            ("client_secret", init.operator_client_secret.expose()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["token_type"], "Bearer");
    let api = Api {
        http,
        url: format!("{base}/graphql"),
        token: Some(resp["access_token"].as_str().unwrap().to_owned()),
    };
    let me = api
        .ok("{ me { role organisationId } devices { id } }", json!({}))
        .await;
    assert_eq!(me["me"]["role"], "operator");
    assert_eq!(me["me"]["organisationId"], init.org_id.as_str());
    task.abort();
    let _ = task.await;
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
