//! Requests: EIP-1559 decoding, JSON shape, contract ABI encoding.
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use alloy::primitives::{address, keccak256, U256};
use alloy::sol_types::SolValue as _;
use vsigner_approval::contract::{abi, encode_request, ContractCall};
use vsigner_approval::request::RequestClass;
use vsigner_approval::{ContractLayout, EthTransaction, RequestError};

use common::*;

#[test]
fn eip1559_transaction_is_decoded() {
    let raw = eth_call_raw(5 * ONE_ETH, &[0xca, 0xfe]);
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
    assert_eq!(j["signingData"]["dataHex"], hex::encode([0xab; 32]));
    // A digest may authorise anything: its amount is unknown, never zero.
    assert!(j["amountOriginal"].is_null());
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
fn vsigner_v3_contract_arguments_decode_as_the_documented_structs() {
    let ContractCall::Tx(b) =
        encode_request(&sign_tx("treasury", 3 * ONE_ETH), ContractLayout::VsignerV3).unwrap()
    else {
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

    let ContractCall::KeygenReshare(b) =
        encode_request(&reshare("treasury", 3), ContractLayout::VsignerV3).unwrap()
    else {
        panic!()
    };
    let r = abi::KeygenReshareRequestSC::abi_decode(&b).unwrap();
    assert_eq!((r.oldThreshold, r.newThreshold), (U256::from(2), U256::from(3)));
    assert_eq!((r.oldSigners.len(), r.newSigners.len()), (3, 4));
    assert_eq!(r.newSigners[3].id, "dev-3");
    assert_eq!(r.newSigners[3].recordHash, hex::encode([103u8; 32]));

    let ContractCall::KeygenReshare(b) =
        encode_request(&create_vault("treasury"), ContractLayout::VsignerV3).unwrap()
    else {
        panic!()
    };
    let r = abi::KeygenReshareRequestSC::abi_decode(&b).unwrap();
    assert_eq!(r.typename, "OperationCreateVault");
    assert_eq!(
        (r.oldThreshold, r.oldSigners.len(), r.newThreshold),
        (U256::ZERO, 0, U256::from(2))
    );

    let ContractCall::SignOp(b) =
        encode_request(&sign_message("ops", b"hello"), ContractLayout::VsignerV3).unwrap()
    else {
        panic!()
    };
    let s = abi::SignOpRequestSC::abi_decode(&b).unwrap();
    assert_eq!(
        (s.contentType.as_str(), s.data.as_ref(), s.curve.as_str()),
        ("message", &b"hello"[..], "ed25519")
    );
}

/// io.finnet's handlers read these paths with these types (their samples and docs): one body
/// serves a handler written for io.finnet and one written for vsigner.
#[test]
fn json_is_iofinnets_shape() {
    let j = create_vault("treasury").to_json();
    assert_eq!(j["__typename"], "OperationCreateVault_v3");
    assert_eq!(j["details"]["__typename"], "OperationCreateVaultDetails");
    assert_eq!(j["details"]["vault"]["details"]["name"], "treasury");
    assert_eq!(j["voting"]["votes"][0]["device"]["id"], "dev-0");
    assert_eq!(j["cDetails"]["threshold"], 2);
    assert_eq!(j["amountOriginal"], "0");

    let j = reshare("treasury", 3).to_json();
    assert_eq!(j["__typename"], "OperationReshare_v3");
    assert_eq!(j["rDetails"]["newThreshold"], 3);
    assert_eq!(j["rDetails"]["originalThreshold"], 2);

    // A text message is text, with its content type; the bytes are in dataHex too.
    let j = sign_message("ops", b"pay the malicious party").to_json();
    assert_eq!(j["__typename"], "OperationSign");
    assert_eq!(j["signingData"]["data"], "pay the malicious party");
    assert_eq!(j["signingData"]["contentType"], "text/plain");
    assert_eq!(j["signingData"]["payloadKind"], "message");
    assert_eq!(
        j["signingData"]["dataHex"],
        hex::encode(b"pay the malicious party")
    );
    // Bytes that are not text stay hex.
    let j = sign_message("ops", &[0xff, 0x00, 0x01]).to_json();
    assert_eq!(j["signingData"]["data"], "ff0001");
    assert_eq!(j["signingData"]["contentType"], "application/octet-stream");
    // Text that would not read as what is signed is hex: control characters, a carriage
    // return, bidi overrides, zero-width and other invisible characters.
    for hidden in [
        "bell\x07",
        "line\rover",
        "pay \u{202e}tnuocca",
        "mal\u{200b}icious",
        "\u{feff}x",
        "tag\u{e0041}",
    ] {
        let j = sign_message("ops", hidden.as_bytes()).to_json();
        assert_eq!(
            j["signingData"]["contentType"], "application/octet-stream",
            "{hidden:?}"
        );
        assert_eq!(j["signingData"]["data"], hex::encode(hidden.as_bytes()));
    }
    // Letters of any script are text.
    let j = sign_message("ops", "payé 100 €\n明细".as_bytes()).to_json();
    assert_eq!(j["signingData"]["data"], "payé 100 €\n明细");

    // A transaction is a transfer: amount in wei as a decimal string, recipient, chain.
    let j = sign_tx("treasury", 3 * ONE_ETH).to_json();
    assert_eq!(j["__typename"], "OperationTransferOut_v3");
    assert_eq!(j["amountOriginal"], (3 * ONE_ETH).to_string());
    assert_eq!(
        j["receivingAddress"],
        "0x000000000000000000000000000000000000dEaD"
    );
    assert_eq!(
        j["transaction"]["toAddress"],
        "0x000000000000000000000000000000000000dEaD"
    );
    assert_eq!(j["networkId"], "1");
    assert_eq!(j["transaction"]["value"], (3 * ONE_ETH).to_string());
    assert!(j["asset"].is_null(), "the chain's own coin");
    assert_eq!(j["signingData"]["contentType"], "eth_tx");
}

/// io.finnet's published structs (`Approval.sol`), field for field.
#[test]
fn iofinnet_contract_arguments_decode_as_the_published_structs() {
    use vsigner_approval::contract::iofinnet::abi as io;
    let call = |r| encode_request(&r, ContractLayout::IoFinnet).unwrap();

    let ContractCall::KeygenReshare(b) = call(reshare("treasury", 3)) else {
        panic!()
    };
    let r = io::KeygenReshareRequestSC::abi_decode(&b).unwrap();
    assert_eq!(r.Typename, "OperationReshare_v3");
    assert_eq!((r.Id.as_str(), r.OrganisationId.as_str()), ("op-123", "org-9"));
    assert_eq!(r.VaultName, "treasury");
    assert_eq!(r.ReshareRequestStatus, "VOTING");
    assert_eq!(r.NewThreshold, U256::from(3));
    assert_eq!(r.ReshareNonce, U256::from(4));
    assert_eq!((r.OriginalSigners.len(), r.NewSigners.len()), (3, 4));
    assert_eq!(
        (r.NewSigners[3].Id.as_str(), r.NewSigners[3].Weight),
        ("dev-3", U256::from(1))
    );

    let ContractCall::KeygenReshare(b) = call(create_vault("treasury")) else {
        panic!()
    };
    let r = io::KeygenReshareRequestSC::abi_decode(&b).unwrap();
    assert_eq!(r.Typename, "OperationCreateVault_v3");
    assert_eq!(
        (r.OriginalSigners.len(), r.NewSigners.len(), r.NewThreshold),
        (0, 3, U256::from(2))
    );

    let ContractCall::Tx(b) = call(sign_tx("treasury", 3 * ONE_ETH)) else {
        panic!()
    };
    let t = io::SigningTransactionRequestSC::abi_decode(&b).unwrap();
    assert_eq!(t.Typename, "OperationTransferOut_v3");
    assert_eq!(t.AmountOriginal, (3 * ONE_ETH).to_string());
    assert_eq!(t.ReceivingAddress, "0x000000000000000000000000000000000000dEaD");
    assert_eq!(t.NetworkId, "1");
    assert_eq!(
        t.RawTransaction,
        format!("0x{}", hex::encode(eth_tx_raw(3 * ONE_ETH)))
    );
    assert_eq!(t.Metadata.ContractData, "0x");
    // The sending key's path, in io.finnet's field for the sending address.
    assert_eq!(t.SendingAddressId, "m/0/1");

    let ContractCall::SignOp(b) = call(sign_message("ops", b"do fail the test")) else {
        panic!()
    };
    let s = io::NodeOpSignRequestSC::abi_decode(&b).unwrap();
    // The message is an ed25519 vault's: signed as it is, which the content type says, so
    // that a policy written for secp256k1's hashed messages does not approve it unaware.
    assert_eq!(
        (s.Data.as_str(), s.ContentType.as_str()),
        ("do fail the test", "text/plain; scheme=ed25519")
    );
    let ContractCall::SignOp(b) = call(sign_digest("ops")) else {
        panic!()
    };
    let d = io::NodeOpSignRequestSC::abi_decode(&b).unwrap();
    assert_eq!((d.ContentType.as_str(), d.Data.len()), ("digest", 64));
    assert_eq!((s.VaultName.as_str(), s.ChainId), ("ops", U256::ZERO));
    assert_eq!(s.Typename, "OperationSign");

    // The other layout's bytes do not decode as these structs: a mismatch is seen.
    let ContractCall::SignOp(b) = encode_request(
        &sign_message("ops", b"do fail the test"),
        ContractLayout::VsignerV3,
    )
    .unwrap() else {
        panic!()
    };
    assert!(io::NodeOpSignRequestSC::abi_decode(&b).map_or(true, |s| s.Data != "do fail the test"));
}

/// An approver's amount rules read what a transaction transfers: the value of a plain
/// transfer, the amount and recipient of an ERC-20 transfer, and for any other call an
/// unknown amount (never "0", which a limit would pass).
#[test]
fn transfers_are_read_as_amount_rules_need() {
    use vsigner_approval::contract::iofinnet::{abi as io, UNKNOWN};
    let recipient = [0x11u8; 20];
    // ERC-20 transfer of 5,000,000 units (5 USDC) on the token at 0x…dEaD.
    let j = sign_call("treasury", 0, &erc20_transfer(recipient, 5_000_000)).to_json();
    assert_eq!(j["__typename"], "OperationTransferOut_v3");
    assert_eq!(j["amountOriginal"], "5000000");
    assert_eq!(
        j["receivingAddress"],
        "0x1111111111111111111111111111111111111111"
    );
    assert_eq!(
        j["transaction"]["toAddress"],
        "0x1111111111111111111111111111111111111111"
    );
    assert_eq!(
        j["asset"]["contractAddress"],
        "0x000000000000000000000000000000000000dEaD"
    );
    let ContractCall::Tx(b) = encode_request(
        &sign_call("treasury", 0, &erc20_transfer(recipient, 5_000_000)),
        ContractLayout::IoFinnet,
    )
    .unwrap() else {
        panic!()
    };
    let t = io::SigningTransactionRequestSC::abi_decode(&b).unwrap();
    assert_eq!(
        (t.AmountOriginal.as_str(), t.AssetId.as_str()),
        ("5000000", "0x000000000000000000000000000000000000dEaD")
    );

    // Any other call (an approval, value attached to a token transfer, unknown data): the
    // amount and recipient are unknown.
    let approve = [&[0x09u8, 0x5e, 0xa7, 0xb3][..], &[0; 64][..]].concat();
    for (value, data) in [
        (0, approve),
        (1, erc20_transfer(recipient, 5)),
        (0, vec![0xca, 0xfe]),
    ] {
        let r = sign_call("treasury", value, &data);
        let j = r.to_json();
        assert!(j["amountOriginal"].is_null(), "{j}");
        assert!(j["receivingAddress"].is_null(), "{j}");
        let ContractCall::Tx(b) = encode_request(&r, ContractLayout::IoFinnet).unwrap() else {
            panic!()
        };
        let t = io::SigningTransactionRequestSC::abi_decode(&b).unwrap();
        assert_eq!(t.AmountOriginal, UNKNOWN);
        assert_eq!(t.ReceivingAddress, "");
    }
    // Nothing moves in a vault creation or a reshare.
    assert_eq!(create_vault("v").to_json()["amountOriginal"], "0");
    assert_eq!(reshare("v", 3).to_json()["amountOriginal"], "0");
}
