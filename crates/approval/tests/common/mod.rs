//! Shared test fixtures: sample requests, keys, free ports.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use alloy::consensus::{SignableTransaction, TxEip1559};
use alloy::primitives::{address, Bytes, TxKind, U256};
use ed25519_dalek::SigningKey;
use vsigner_approval::{ApprovalRequest, Curve, EthTransaction, Operation, SignPayload, Signer, Vault};

pub const DEVICE_ID: &str = "dev-a1b2c3";
pub const ONE_ETH: u128 = 1_000_000_000_000_000_000;

pub fn device_signing_key() -> SigningKey {
    SigningKey::from_bytes(&[0x42; 32])
}

pub fn signers(n: usize) -> Vec<Signer> {
    (0..n)
        .map(|i| Signer {
            id: format!("dev-{i}"),
            name: format!("device {i}"),
            weight: 1,
            identity_public_key_hex: hex::encode([i as u8; 32]),
            record_hash_hex: hex::encode([i as u8 + 100; 32]),
        })
        .collect()
}

pub fn vault(name: &str, curve: Curve) -> Vault {
    Vault {
        id: "vault-1".into(),
        name: name.into(),
        curve,
        threshold: 2,
        signers: signers(3),
        public_key: Some("02".to_owned() + &"ab".repeat(32)),
        key_generation: 4,
    }
}

fn request(vault: Vault, operation: Operation) -> ApprovalRequest {
    ApprovalRequest {
        operation_id: "op-123".into(),
        organisation_id: "org-9".into(),
        vault,
        expires_at: "2026-11-25T12:00:00Z".into(),
        operation,
    }
}

pub fn create_vault(name: &str) -> ApprovalRequest {
    request(vault(name, Curve::Secp256k1), Operation::CreateVault)
}

pub fn reshare(name: &str, new_threshold: u32) -> ApprovalRequest {
    request(
        vault(name, Curve::Secp256k1),
        Operation::Reshare {
            new_threshold,
            new_signers: signers(4),
        },
    )
}

/// A plain transfer of `value_wei` to 0x…dEaD (no call data).
pub fn eth_tx_raw(value_wei: u128) -> Vec<u8> {
    eth_call_raw(value_wei, &[])
}

/// A transaction to 0x…dEaD with `value_wei` and call data `input`.
pub fn eth_call_raw(value_wei: u128, input: &[u8]) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id: 1,
        nonce: 7,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(address!("0x000000000000000000000000000000000000dEaD")),
        value: U256::from(value_wei),
        access_list: Default::default(),
        input: Bytes::copy_from_slice(input),
    };
    tx.encoded_for_signing()
}

/// ERC-20 `transfer(to, amount)` call data.
pub fn erc20_transfer(to: [u8; 20], amount: u128) -> Vec<u8> {
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(&[0; 12]);
    data.extend_from_slice(&to);
    data.extend_from_slice(&U256::from(amount).to_be_bytes::<32>());
    data
}

pub fn sign_tx(vault_name: &str, value_wei: u128) -> ApprovalRequest {
    sign_call(vault_name, value_wei, &[])
}

/// Signing of a transaction with call data.
pub fn sign_call(vault_name: &str, value_wei: u128, input: &[u8]) -> ApprovalRequest {
    let tx = EthTransaction::decode(&eth_call_raw(value_wei, input)).unwrap();
    request(
        vault(vault_name, Curve::Secp256k1),
        Operation::Sign {
            payload: SignPayload::EthereumTransaction(tx),
            derivation_path: Some("m/0/1".into()),
            taproot: None,
        },
    )
}

pub fn sign_message(vault_name: &str, message: &[u8]) -> ApprovalRequest {
    request(
        vault(vault_name, Curve::Ed25519),
        Operation::Sign {
            payload: SignPayload::Message(message.to_vec()),
            derivation_path: None,
            taproot: None,
        },
    )
}

pub fn sign_digest(vault_name: &str) -> ApprovalRequest {
    request(
        vault(vault_name, Curve::Secp256k1),
        Operation::Sign {
            payload: SignPayload::Digest([0xab; 32]),
            derivation_path: None,
            taproot: None,
        },
    )
}

/// A port nobody listens on (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A Python process, killed when dropped.
pub struct Py(pub std::process::Child);

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether python3 with the `cryptography` package can run (the Python webhooks need it).
pub fn python_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
