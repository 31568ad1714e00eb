//! `SmartContract` mode against a real EVM node: `examples/approval-contract/Approval.sol`
//! compiled with solc-js and deployed on anvil. Skipped, with a message, when
//! `VSIGNER_TEST_ANVIL` / `VSIGNER_TEST_SOLCJS` are unset (`.ci/run` sets them).
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/evm.rs"]
mod evm;

use sha2::Digest as _;
use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use serde_json::json;
use url::Url;
use vsigner_approval::{ApprovalMode, ContractApprover, ContractConfig, ContractLayout, Decision, Vote};

use common::*;
use evm::{compile, deploy, rpc, start_anvil};

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
        layout: ContractLayout::VsignerV3,
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
    let Some((anvil_bin, solcjs)) = evm::tools() else {
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
    let approval: Address = deploy(&anvil.url, &bins["Approval"], &limit.to_be_bytes::<32>())
        .await
        .parse()
        .unwrap();
    let weird: Address = deploy(&anvil.url, &bins["Weird"], &[]).await.parse().unwrap();
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

/// io.finnet's drop-in promise: a policy contract written to io.finnet's published structs
/// decides vsigner's requests on the fields the sample decides on, approve, reject and
/// abstain for each of its three functions. Before [compat] vsigner sent its own structs:
/// `approvedKeygenReshare` and `approvedTx` reverted on `abi.decode`, and `approvedSignOp`
/// read the vault name as `Data` and approved "do fail the test".
#[tokio::test]
async fn published_layout_contract_on_anvil() {
    let Some((anvil_bin, solcjs)) = evm::tools() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bins = compile(&solcjs, &[root.join("tests/contracts/PublishedLayout.sol")]);
    let anvil = start_anvil(&anvil_bin).await;
    let address: Address = deploy(&anvil.url, &bins["PublishedLayout"], &[])
        .await
        .parse()
        .unwrap();
    let config = |layout| ContractConfig {
        rpc_url: Url::parse(&anvil.url).unwrap(),
        address,
        chain_id: None,
        code_hash: None,
        layout,
    };
    let a = ContractApprover::new(config(ContractLayout::IoFinnet), Duration::from_secs(5), 1);

    // approvedKeygenReshare decides on NewThreshold: of a new vault, and of a reshare.
    let vault_of = |t| {
        let mut r = create_vault("treasury");
        r.vault.threshold = t;
        r
    };
    answered(&a.decide(&vault_of(2)).await, Vote::Approve);
    answered(&a.decide(&vault_of(7)).await, Vote::Reject);
    answered(&a.decide(&vault_of(9)).await, Vote::Abstain);
    answered(&a.decide(&reshare("treasury", 3)).await, Vote::Approve);
    answered(&a.decide(&reshare("treasury", 7)).await, Vote::Reject);
    answered(&a.decide(&reshare("treasury", 9)).await, Vote::Abstain);

    // approvedTx decides on AmountOriginal (wei, a decimal string).
    answered(&a.decide(&sign_tx("treasury", ONE_ETH)).await, Vote::Approve);
    answered(
        &a.decide(&sign_tx("treasury", 6_660_000_000_000_000)).await,
        Vote::Reject,
    );
    answered(
        &a.decide(&sign_tx("treasury", 9_990_000_000_000_000)).await,
        Vote::Abstain,
    );

    // approvedSignOp decides on Data: a text message as text.
    answered(&a.decide(&sign_message("ops", b"hello")).await, Vote::Approve);
    answered(
        &a.decide(&sign_message("ops", b"do fail the test")).await,
        Vote::Reject,
    );
    answered(
        &a.decide(&sign_message("ops", b"do abstain")).await,
        Vote::Abstain,
    );
    answered(&a.decide(&sign_digest("ops")).await, Vote::Approve);

    // The same contract asked with vsigner's own structs (`ApprovalContractLayout` =
    // `vsigner-v3`, for contracts written to them): keygen and transaction revert, which is
    // not an approval. (Its sign op would decode with every field one slot out of place:
    // the reason io.finnet's structs are the default.)
    let v3 = ContractApprover::new(config(ContractLayout::VsignerV3), Duration::from_secs(5), 1);
    failed(&v3.decide(&vault_of(2)).await, "approvedKeygenReshare failed");
    failed(
        &v3.decide(&sign_tx("treasury", ONE_ETH)).await,
        "approvedTx failed",
    );
}
