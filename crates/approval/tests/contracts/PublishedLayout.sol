// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.9;

/// A policy contract written the way io.finnet's published sample is: its three functions
/// take `bytes`, decode io.finnet's request structs (field order and types exactly as in
/// `smart_contract_approvals/Approval.sol` of IoFinnet/io-vault-virtual-signer-docs) and
/// return 0 (approve), 1 (reject) or 2 (abstain), deciding on the fields the sample decides
/// on: `NewThreshold`, `AmountOriginal`, `Data`. The rules (this test's own):
/// - keygen/reshare: NewThreshold 7 rejects, 9 abstains;
/// - transaction: AmountOriginal "6660000000000000" rejects, "9990000000000000" abstains;
/// - sign op: Data "do fail the test" rejects, "do abstain" abstains.
/// Everything else is approved.
contract PublishedLayout {
    uint8 public constant APPROVE = 0;
    uint8 public constant REJECT = 1;
    uint8 public constant ABSTAIN = 2;

    struct KeygenReshareRequestOriginalSignersSC {
        uint Weight;
        string Uiid;
        string Id;
    }

    struct KeygenReshareRequestNewSignersSC {
        uint Weight;
        string Uiid;
        string Id;
    }

    struct KeygenReshareRequestSC {
        string Typename;
        string Id;
        string ExpiresAt;
        string OrganisationId;
        string ReshareRequestStatus;
        string VaultId;
        string VaultName;
        uint ReshareNonce;
        uint NewThreshold;
        KeygenReshareRequestOriginalSignersSC[] OriginalSigners;
        KeygenReshareRequestNewSignersSC[] NewSigners;
    }

    struct SigningTransactionRequestMetadataSC {
        string MaxFees;
        uint MaxFeePerGas;
        uint MaxPriorityFeePerGas;
        string Source;
        string ContractData;
    }

    struct SigningTransactionRequestSC {
        string Typename;
        string Id;
        string CreatedAt;
        string UpdatedAt;
        string ExpiresAt;
        string CreatedByUserId;
        string AmountOriginal;
        string AmountUsd;
        string ReceivingAddress;
        string SendingAddressId;
        string VaultId;
        string VaultName;
        string AssetId;
        string OrganisationId;
        string RawTransaction;
        string Status;
        string AssetExecutionType;
        SigningTransactionRequestMetadataSC Metadata;
        string NetworkId;
    }

    struct NodeOpSignRequestSC {
        string Typename;
        string Id;
        string OrganisationId;
        string OperationSignStatus;
        string VaultId;
        string VaultName;
        string Data;
        string ContentType;
        uint ChainId;
    }

    function same(string memory a, string memory b) internal pure returns (bool) {
        return keccak256(bytes(a)) == keccak256(bytes(b));
    }

    function approvedKeygenReshare(bytes memory encoded) public pure returns (uint8) {
        KeygenReshareRequestSC memory r = abi.decode(encoded, (KeygenReshareRequestSC));
        if (r.NewThreshold == 7) return REJECT;
        if (r.NewThreshold == 9) return ABSTAIN;
        return APPROVE;
    }

    function approvedTx(bytes memory encoded) public pure returns (uint8) {
        SigningTransactionRequestSC memory r = abi.decode(encoded, (SigningTransactionRequestSC));
        if (same(r.AmountOriginal, "6660000000000000")) return REJECT;
        if (same(r.AmountOriginal, "9990000000000000")) return ABSTAIN;
        return APPROVE;
    }

    function approvedSignOp(bytes memory encoded) public pure returns (uint8) {
        NodeOpSignRequestSC memory r = abi.decode(encoded, (NodeOpSignRequestSC));
        if (same(r.Data, "do fail the test")) return REJECT;
        if (same(r.Data, "do abstain")) return ABSTAIN;
        return APPROVE;
    }
}
