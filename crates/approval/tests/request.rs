//! Requests: EIP-1559 decoding, JSON shape, contract ABI encoding.
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use alloy::primitives::{address, keccak256, U256};
use alloy::sol_types::SolValue as _;
use vsigner_approval::contract::{abi, encode_request, ContractCall};
use vsigner_approval::request::RequestClass;
use vsigner_approval::{EthTransaction, RequestError};

use common::*;

#[test]
fn eip1559_transaction_is_decoded() {
    let raw = eth_tx_raw(5 * ONE_ETH);
    let tx = EthTransaction::decode(&raw).unwrap();
    assert_eq!(tx.chain_id(), 1);
    assert_eq!(
        tx.to(),
        Some(address!("0x000000000000000000000000000000000000dEaD"))
    );
    assert_eq!(tx.value(), U256::from(5 * ONE_ETH));
    assert_eq!(tx.transaction().nonce, 7);
    assert_eq!(tx.transaction().gas_limit, 21_000);
    assert_eq!(tx.transaction().input.as_ref(), &[0xca, 0xfe]);
    assert_eq!(tx.raw(), raw.as_slice());
    assert_eq!(tx.signing_hash(), keccak256(&raw));
}

#[test]
fn other_bytes_are_not_a_transaction() {
    let raw = eth_tx_raw(1);
    let bad = |b: &[u8]| matches!(EthTransaction::decode(b), Err(RequestError::EthTransaction(_)));
    assert!(bad(&[]));
    assert!(bad(&raw[1..])); // no type byte (looks like a legacy RLP list)
    let mut t = raw.clone();
    t[0] = 0x01; // EIP-2930
    assert!(bad(&t));
    assert!(bad(&raw[..raw.len() - 1])); // truncated
    let mut t = raw.clone();
    t.push(0); // trailing byte
    assert!(bad(&t));
    assert!(bad(&[0x02, 0xc0])); // empty list
}

#[test]
fn json_and_routing() {
    assert_eq!(create_vault("v").class(), RequestClass::KeygenReshare);
    assert_eq!(reshare("v", 3).class(), RequestClass::KeygenReshare);
    assert_eq!(sign_digest("v").class(), RequestClass::Transaction);
    let j = sign_digest("v").to_json();
    assert_eq!(j["__typename"], "OperationSign");
    assert_eq!(j["signingData"]["contentType"], "digest");
    assert_eq!(j["signingData"]["data"], hex::encode([0xab; 32]));
    assert_eq!(
        j["details"]["vault"]["publicKey"],
        "02".to_owned() + &"ab".repeat(32)
    );
    assert_eq!(j["details"]["vault"]["keyGeneration"], 4);
    assert!(j.get("transaction").is_none());
    // The reshare vote list holds each device of both sets once.
    let j = reshare("v", 3).to_json();
    assert_eq!(j["voting"]["votes"].as_array().unwrap().len(), 4);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reshare("v", 3).to_json_bytes()).unwrap(),
        j
    );
}

#[test]
fn contract_arguments_decode_as_the_documented_structs() {
    let ContractCall::Tx(b) = encode_request(&sign_tx("treasury", 3 * ONE_ETH)) else {
        panic!()
    };
    let t = abi::TxRequestSC::abi_decode(&b).unwrap();
    assert_eq!(t.version, 3);
    // The vault's key and the generation that signs (version 3).
    assert_eq!(t.vaultPublicKey, "02".to_owned() + &"ab".repeat(32));
    assert_eq!(t.keyGeneration, U256::from(4));
    assert_eq!(t.typename, "OperationSign");
    assert_eq!((t.id.as_str(), t.organisationId.as_str()), ("op-123", "org-9"));
    assert_eq!(
        (t.vaultName.as_str(), t.curve.as_str()),
        ("treasury", "secp256k1")
    );
    assert_eq!(t.derivationPath, "m/0/1");
    assert_eq!(t.value, U256::from(3 * ONE_ETH));
    assert_eq!(t.to, address!("0x000000000000000000000000000000000000dEaD"));
    assert!(!t.isCreate);
    assert_eq!(t.chainId, U256::from(1));
    assert_eq!(t.rawTransaction.as_ref(), eth_tx_raw(3 * ONE_ETH).as_slice());

    let ContractCall::KeygenReshare(b) = encode_request(&reshare("treasury", 3)) else {
        panic!()
    };
    let r = abi::KeygenReshareRequestSC::abi_decode(&b).unwrap();
    assert_eq!((r.oldThreshold, r.newThreshold), (U256::from(2), U256::from(3)));
    assert_eq!((r.oldSigners.len(), r.newSigners.len()), (3, 4));
    assert_eq!(r.newSigners[3].id, "dev-3");
    assert_eq!(r.newSigners[3].recordHash, hex::encode([103u8; 32]));

    let ContractCall::KeygenReshare(b) = encode_request(&create_vault("treasury")) else {
        panic!()
    };
    let r = abi::KeygenReshareRequestSC::abi_decode(&b).unwrap();
    assert_eq!(r.typename, "OperationCreateVault");
    assert_eq!(
        (r.oldThreshold, r.oldSigners.len(), r.newThreshold),
        (U256::ZERO, 0, U256::from(2))
    );

    let ContractCall::SignOp(b) = encode_request(&sign_message("ops", b"hello")) else {
        panic!()
    };
    let s = abi::SignOpRequestSC::abi_decode(&b).unwrap();
    assert_eq!(
        (s.contentType.as_str(), s.data.as_ref(), s.curve.as_str()),
        ("message", &b"hello"[..], "ed25519")
    );
}
