//! A real EVM node for tests: anvil (from `VSIGNER_TEST_ANVIL`), contracts compiled with
//! solc-js (`VSIGNER_TEST_SOLCJS`) and deployed from anvil's first account. Used by this
//! crate's contract tests and, included by path, by the daemon tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The paths of anvil and solc-js (`VSIGNER_TEST_ANVIL`, `VSIGNER_TEST_SOLCJS`), or `None`
/// after saying that the test is skipped.
pub(crate) fn tools() -> Option<(String, String)> {
    match (
        std::env::var("VSIGNER_TEST_ANVIL"),
        std::env::var("VSIGNER_TEST_SOLCJS"),
    ) {
        (Ok(anvil), Ok(solcjs)) => Some((anvil, solcjs)),
        _ => {
            println!("SKIPPED: VSIGNER_TEST_ANVIL and VSIGNER_TEST_SOLCJS must be set (.ci/run sets them)");
            None
        }
    }
}

/// Kills anvil when dropped.
pub(crate) struct Anvil {
    child: Option<Child>,
    pub(crate) url: String,
}

impl Anvil {
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) async fn rpc(url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let r: Value = http_client()
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    match r.get("result") {
        Some(v) => Ok(v.clone()),
        None => Err(format!("{method}: {r}")),
    }
}

pub(crate) async fn start_anvil(bin: &str) -> Anvil {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let anvil = Anvil {
        child: Some(child),
        url: format!("http://127.0.0.1:{port}"),
    };
    let start = Instant::now();
    while rpc(&anvil.url, "eth_chainId", json!([])).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "anvil did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anvil
}

/// Compiles with solc-js; returns the creation bytecode (hex) of each contract by name.
pub(crate) fn compile(solcjs: &str, files: &[PathBuf]) -> std::collections::HashMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::copy(f, dir.path().join(&name)).unwrap();
        names.push(name);
    }
    let out = Command::new("node")
        .arg(solcjs)
        .args(["--bin", "--optimize", "-o", "out"])
        .args(&names)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "solc-js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bins = std::collections::HashMap::new();
    for e in std::fs::read_dir(dir.path().join("out")).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_str().unwrap().to_owned();
        if let Some(stem) = n.strip_suffix(".bin") {
            let contract = stem.rsplit('_').next().unwrap().to_owned();
            bins.insert(contract, std::fs::read_to_string(&p).unwrap().trim().to_owned());
        }
    }
    bins
}

/// Deploys `bytecode ‖ args` from anvil's first (unlocked) account.
/// Returns the contract's address (`0x…`).
pub(crate) async fn deploy(url: &str, bytecode: &str, args: &[u8]) -> String {
    let from = rpc(url, "eth_accounts", json!([])).await.unwrap()[0].clone();
    let data = format!("0x{bytecode}{}", hex::encode(args));
    let hash = rpc(
        url,
        "eth_sendTransaction",
        json!([{"from": from, "data": data, "gas": "0x1000000"}]),
    )
    .await
    .unwrap();
    // Anvil mines on its own task: under load the receipt can lag the hash by a moment.
    let start = Instant::now();
    let receipt = loop {
        let receipt = rpc(url, "eth_getTransactionReceipt", json!([hash]))
            .await
            .unwrap();
        if !receipt.is_null() || start.elapsed() > Duration::from_secs(20) {
            break receipt;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(receipt["status"], "0x1", "deployment failed: {receipt}");
    receipt["contractAddress"].as_str().unwrap().to_owned()
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
