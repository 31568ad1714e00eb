//! `SmartContract` mode against a real EVM node: `examples/approval-contract/Approval.sol`
//! compiled with solc-js and deployed on anvil. Skipped, with a message, when
//! `VSIGNER_TEST_ANVIL` / `VSIGNER_TEST_SOLCJS` are unset (`.ci/run` sets them).
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use serde_json::{json, Value};
use url::Url;
use vsigner_approval::{ApprovalMode, ContractApprover, ContractConfig, Decision, Vote};

use common::*;

/// Kills anvil when dropped.
struct Anvil {
    child: Option<Child>,
    url: String,
}

impl Anvil {
    fn stop(&mut self) {
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

async fn rpc(url: &str, method: &str, params: Value) -> Result<Value, String> {
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

async fn start_anvil(bin: &str) -> Anvil {
    let port = free_port();
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
fn compile(solcjs: &str, files: &[PathBuf]) -> std::collections::HashMap<String, String> {
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
async fn deploy(url: &str, bytecode: &str, args: &[u8]) -> Address {
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
    receipt["contractAddress"].as_str().unwrap().parse().unwrap()
}

fn approver(url: &str, address: Address) -> ContractApprover {
    pinned(url, address, None, None)
}

fn pinned(
    url: &str,
    address: Address,
    chain_id: Option<u64>,
    code_hash: Option<[u8; 32]>,
) -> ContractApprover {
    let config = ContractConfig {
        rpc_url: Url::parse(url).unwrap(),
        address,
        chain_id,
        code_hash,
    };
    ContractApprover::new(config, Duration::from_secs(5), 1)
}

fn answered(d: &Decision, vote: Vote) {
    assert_eq!(
        (d.vote, d.failed, d.mode),
        (vote, false, ApprovalMode::SmartContract),
        "{d:?}"
    );
}

fn failed(d: &Decision, reason_part: &str) {
    assert!(!d.is_approval() && d.failed && d.vote == Vote::Reject, "{d:?}");
    assert!(
        d.reason.contains(reason_part),
        "reason {:?} should contain {reason_part:?}",
        d.reason
    );
}

#[tokio::test]
async fn approval_contract_on_anvil() {
    let (Ok(anvil_bin), Ok(solcjs)) = (
        std::env::var("VSIGNER_TEST_ANVIL"),
        std::env::var("VSIGNER_TEST_SOLCJS"),
    ) else {
        println!("SKIPPED: VSIGNER_TEST_ANVIL and VSIGNER_TEST_SOLCJS must be set (.ci/run sets them)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bins = compile(
        &solcjs,
        &[
            root.join("../../examples/approval-contract/Approval.sol"),
            root.join("tests/contracts/Weird.sol"),
        ],
    );
    let mut anvil = start_anvil(&anvil_bin).await;
    let limit = U256::from(ONE_ETH);
    let approval = deploy(&anvil.url, &bins["Approval"], &limit.to_be_bytes::<32>()).await;
    let weird = deploy(&anvil.url, &bins["Weird"], &[]).await;
    let a = approver(&anvil.url, approval);

    // approvedKeygenReshare
    answered(&a.decide(&create_vault("treasury")).await, Vote::Approve);
    answered(&a.decide(&reshare("treasury", 3)).await, Vote::Approve);
    answered(&a.decide(&reshare("treasury", 5)).await, Vote::Reject); // above the new set's weight (4)
    answered(&a.decide(&create_vault("REJECT me")).await, Vote::Reject);
    answered(&a.decide(&reshare("ABSTAIN please", 3)).await, Vote::Abstain);
    let d = a.decide(&create_vault("REJECT me")).await;
    assert!(
        d.reason
            .contains("rejected the operation (approvedKeygenReshare)"),
        "{d:?}"
    );

    // approvedTx: the decoded value and vault name reach the contract.
    answered(&a.decide(&sign_tx("treasury", ONE_ETH)).await, Vote::Approve);
    answered(&a.decide(&sign_tx("treasury", ONE_ETH + 1)).await, Vote::Reject);
    answered(&a.decide(&sign_tx("ABSTAIN fund", 1)).await, Vote::Abstain);

    // approvedSignOp: message and digest.
    answered(&a.decide(&sign_message("ops", b"hello")).await, Vote::Approve);
    answered(
        &a.decide(&sign_message("ops", b"please REJECT")).await,
        Vote::Reject,
    );
    answered(&a.decide(&sign_message("ops", b"ABSTAIN")).await, Vote::Abstain);
    answered(&a.decide(&sign_digest("ops")).await, Vote::Approve);
    answered(&a.decide(&sign_digest("REJECT")).await, Vote::Reject);

    // Answers that are not 0, 1 or 2, a revert, and no contract at all: not approvals.
    let w = approver(&anvil.url, weird);
    failed(&w.decide(&sign_tx("treasury", 1)).await, "approvedTx returned 7");
    failed(
        &w.decide(&sign_message("ops", b"hi")).await,
        "approvedSignOp returned 256",
    );
    let d = w.decide(&create_vault("treasury")).await;
    println!("revert: {}", d.reason);
    failed(&d, "approvedKeygenReshare failed");
    let nobody = approver(&anvil.url, Address::repeat_byte(0x77));
    failed(
        &nobody.decide(&sign_tx("treasury", 1)).await,
        "there is no contract at",
    );

    // Finding 4 of [trust-identity]: one RPC's answer is all a decision rests on, so the
    // node's chain and the contract's code are checked before every decision: against
    // ApprovalChainId / ApprovalContractCodeHash, or else against what the first check saw.
    let chain: u64 = u64::from_str_radix(
        rpc(&anvil.url, "eth_chainId", json!([]))
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let code = rpc(&anvil.url, "eth_getCode", json!([approval.to_string(), "latest"]))
        .await
        .unwrap();
    let code_hash: [u8; 32] =
        sha2::Sha256::digest(hex::decode(code.as_str().unwrap().trim_start_matches("0x")).unwrap()).into();
    let exact = pinned(&anvil.url, approval, Some(chain), Some(code_hash));
    answered(&exact.decide(&sign_tx("treasury", 1)).await, Vote::Approve);
    exact.check_backend().await.unwrap();
    let other_chain = pinned(&anvil.url, approval, Some(chain + 1), None);
    failed(
        &other_chain.decide(&sign_tx("treasury", 1)).await,
        &format!(
            "the approval node is on chain {chain}, not chain {} (ApprovalChainId)",
            chain + 1
        ),
    );
    assert!(matches!(
        other_chain.check_backend().await,
        Err(vsigner_approval::contract::BackendProblem::Refused(_))
    ));
    let other_code = pinned(&anvil.url, approval, None, Some([0; 32]));
    failed(
        &other_code.decide(&sign_tx("treasury", 1)).await,
        "(ApprovalContractCodeHash)",
    );
    // The contract at the address is replaced (anvil_setCode) under an approver that pinned
    // nothing: the code it saw first no longer decides.
    let weird_code = rpc(&anvil.url, "eth_getCode", json!([weird.to_string(), "latest"]))
        .await
        .unwrap();
    rpc(
        &anvil.url,
        "anvil_setCode",
        json!([approval.to_string(), weird_code]),
    )
    .await
    .unwrap();
    failed(
        &a.decide(&sign_tx("treasury", 1)).await,
        "(the code it had at start)",
    );
    failed(
        &exact.decide(&sign_tx("treasury", 1)).await,
        "(ApprovalContractCodeHash)",
    );
    rpc(&anvil.url, "anvil_setCode", json!([approval.to_string(), code]))
        .await
        .unwrap();
    answered(&a.decide(&sign_tx("treasury", 1)).await, Vote::Approve);

    // Node down.
    anvil.stop();
    let d = a.decide(&sign_tx("treasury", 1)).await;
    println!("node down: {}", d.reason);
    failed(&d, "unreachable after 2 attempt(s)");
    assert!(d.reason.contains("Connection refused"), "{d:?}");
    // An API key in the RPC URL's path or query is not shown.
    let keyed = approver(&format!("{}/v3/s3cret?key=s3cret", anvil.url), approval);
    let d = keyed.decide(&sign_message("ops", b"hi")).await;
    failed(&d, "unreachable after 2 attempt(s)");
    assert!(!d.reason.contains("s3cret"), "{d:?}");
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
