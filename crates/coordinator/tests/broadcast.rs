//! A real EIP-1559 transfer signed through the coordinator and broadcast to anvil.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy_consensus::transaction::SignableTransaction;
use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, TxKind, U256};
use common::*;
use serde_json::{json, Value};

/// Kills anvil when dropped.
struct Anvil(Child);

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn rpc(http: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    let v: Value = http
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v.get("error").is_none(), "{method} failed: {v}");
    v["result"].clone()
}

/// The receipt of `hash`, polling until the node has mined it (fails after a generous bound).
async fn receipt(http: &reqwest::Client, url: &str, hash: &Value) -> Value {
    for _ in 0..1200 {
        let r = rpc(http, url, "eth_getTransactionReceipt", json!([hash])).await;
        if !r.is_null() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("transaction {hash} was never mined");
}

const DEV_ACCOUNT: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_tx_is_signed_assembled_and_broadcast() {
    let Ok(bin) = std::env::var("VSIGNER_TEST_ANVIL") else {
        eprintln!("skipping: VSIGNER_TEST_ANVIL is not set");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _anvil = Anvil(
        Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rpc_url = format!("http://127.0.0.1:{port}");
    let http = http_client();
    let mut up = false;
    for _ in 0..400 {
        let ok = http
            .post(&rpc_url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
            .send()
            .await
            .is_ok();
        if ok {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "anvil did not start");
    let chain_id = u64::from_str_radix(
        rpc(&http, &rpc_url, "eth_chainId", json!([]))
            .await
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();

    let db = Db::sqlite();
    let init = init_org(&db, "acme").await;
    let mut args = serve_args(&db);
    args.evm_rpc = vec![vsigner_coordinator::EvmRpc {
        chain_id,
        url: rpc_url.clone(),
    }];
    let c = Coord::start_with(args).await;
    let (operator, signer) = c.org(&init).await;

    // The test plays the devices: a local k256 key is the vault key.
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let v = operator
        .ok(
            "query($id: ID!) { vault(id: $id) { ethereumAddress } }",
            json!({"id": vault_id}),
        )
        .await;
    let from = v["vault"]["ethereumAddress"].as_str().unwrap().to_owned();
    let uncompressed = key.sk.verifying_key().to_encoded_point(false);
    let h = <sha3::Keccak256 as sha3::Digest>::digest(&uncompressed.as_bytes()[1..]);
    assert_eq!(from, format!("0x{}", hex::encode(&h[12..])));

    // Fund the vault address from anvil's dev account.
    let fund = rpc(
        &http,
        &rpc_url,
        "eth_sendTransaction",
        json!([{"from": DEV_ACCOUNT, "to": from, "value": "0xde0b6b3a7640000"}]),
    )
    .await;
    let funded = receipt(&http, &rpc_url, &fund).await;
    assert_eq!(funded["status"], "0x1");

    // An unsigned EIP-1559 transfer of 0.1 ETH to a fresh address.
    let to = Address::from(rand::random::<[u8; 20]>());
    let value = U256::from(100_000_000_000_000_000u128);
    let tx = TxEip1559 {
        chain_id,
        nonce: 0,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value,
        access_list: Default::default(),
        input: Default::default(),
    };
    let unsigned = tx.encoded_for_signing();
    assert_eq!(unsigned[0], 0x02);
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "ethTx": format!("0x{}", hex::encode(&unsigned))}}),
        )
        .await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    assert_eq!(s["requestSignature"]["sign"]["payloadKind"], "eth_tx");
    assert_eq!(
        s["requestSignature"]["sign"]["chainId"],
        chain_id.to_string().as_str()
    );
    let digest = <sha3::Keccak256 as sha3::Digest>::digest(&unsigned);
    assert_eq!(
        s["requestSignature"]["sign"]["signingDigest"],
        hex::encode(digest).as_str()
    );
    vote(&signer, &op, &devices[0], "approve").await;
    vote(&signer, &op, &devices[2], "approve").await;
    let (sig, rid) = key.sign_prehash(&digest);
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": op, "d": devices[2], "s": sig, "r": rid}))
        .await["submitSignature"]
        .clone();
    assert_eq!(done["state"], "Completed");
    let raw = done["result"]["rawTransaction"].as_str().unwrap();
    assert!(raw.starts_with("0x02"));
    assert!(
        done["result"]["broadcastError"].is_null(),
        "broadcast failed: {done}"
    );
    let hash = done["result"]["txHash"]
        .as_str()
        .expect("no tx hash recorded")
        .to_owned();

    // The node has the transfer.
    let receipt = receipt(&http, &rpc_url, &json!(hash)).await;
    assert_eq!(receipt["status"], "0x1", "receipt: {receipt}");
    assert_eq!(receipt["from"].as_str().unwrap().to_lowercase(), from);
    assert_eq!(receipt["to"].as_str().unwrap().to_lowercase(), format!("{to:#x}"));
    let balance = rpc(
        &http,
        &rpc_url,
        "eth_getBalance",
        json!([format!("{to:#x}"), "latest"]),
    )
    .await;
    assert_eq!(
        U256::from_str_radix(balance.as_str().unwrap().trim_start_matches("0x"), 16).unwrap(),
        value
    );
    c.running.shutdown().await.unwrap();
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
