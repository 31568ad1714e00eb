// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.20;

/// A sample approval policy for vsigner (ApprovalMode = SmartContract).
///
/// vsigner calls these functions with a read-only eth_call; the argument is
/// `abi.encode(request)` of the version-3 structs below (see README.md). Result:
/// 0 approve, 1 reject, 2 abstain.
///
/// Policy (the same as examples/approval-webhook/server.py):
/// - reject a transaction whose value is above `maxValueWei`;
/// - reject when the vault name, or the signed message, contains "REJECT";
/// - abstain when the vault name, or the signed message, contains "ABSTAIN";
/// - reject a keygen/reshare whose new threshold is 0 or above the new set's total weight;
/// - reject a request of another struct version;
/// - approve otherwise.
contract Approval {
    uint8 public constant APPROVE = 0;
    uint8 public constant REJECT = 1;
    uint8 public constant ABSTAIN = 2;
    uint8 public constant VERSION = 3;

    uint256 public immutable maxValueWei;

    struct SignerSC {
        string id;
        string name;
        uint256 weight;
        string identityPublicKeyHex;
        string recordHash; // SHA-256 of the device's signed record of its keys (hex)
    }

    struct KeygenReshareRequestSC {
        uint8 version;
        string typename; // "OperationCreateVault" | "OperationReshare"
        string id;
        string organisationId;
        string expiresAt; // RFC 3339
        string vaultId;
        string vaultName;
        string curve; // "secp256k1" | "secp256r1" | "ed25519" | "bip340"
        string vaultPublicKey; // hex; "" for a vault creation
        uint256 keyGeneration; // the generation replaced (reshare); 0 for a creation
        uint256 oldThreshold; // 0 for a vault creation
        SignerSC[] oldSigners; // empty for a vault creation
        uint256 newThreshold;
        SignerSC[] newSigners;
    }

    struct TxRequestSC {
        uint8 version;
        string typename; // "OperationSign"
        string id;
        string organisationId;
        string expiresAt;
        string vaultId;
        string vaultName;
        string curve;
        string vaultPublicKey; // hex
        uint256 keyGeneration; // the key generation that signs
        string derivationPath; // "" when none
        uint256 chainId;
        uint256 nonce;
        address to; // zero when isCreate
        bool isCreate;
        uint256 value; // wei
        bytes data;
        uint256 gasLimit;
        uint256 maxFeePerGas;
        uint256 maxPriorityFeePerGas;
        bytes rawTransaction; // 0x02 || rlp(...), the EIP-1559 signing payload
    }

    struct SignOpRequestSC {
        uint8 version;
        string typename; // "OperationSign"
        string id;
        string organisationId;
        string expiresAt;
        string vaultId;
        string vaultName;
        string curve;
        string vaultPublicKey; // hex
        uint256 keyGeneration; // the key generation that signs
        string derivationPath;
        string contentType; // "digest" | "message"
        bytes data; // the 32-byte digest or the message
    }

    constructor(uint256 maxValueWei_) {
        maxValueWei = maxValueWei_;
    }

    function approvedKeygenReshare(bytes memory encodedKeygenReshare) public pure returns (uint8) {
        KeygenReshareRequestSC memory r = abi.decode(encodedKeygenReshare, (KeygenReshareRequestSC));
        if (r.version != VERSION) return REJECT;
        uint8 m = markers(bytes(r.vaultName));
        if (m != APPROVE) return m;
        uint256 total = 0;
        for (uint256 i = 0; i < r.newSigners.length; i++) {
            total += r.newSigners[i].weight;
        }
        if (r.newThreshold == 0 || r.newThreshold > total) return REJECT;
        return APPROVE;
    }

    function approvedTx(bytes memory encodedTx) public view returns (uint8) {
        TxRequestSC memory r = abi.decode(encodedTx, (TxRequestSC));
        if (r.version != VERSION) return REJECT;
        if (r.value > maxValueWei) return REJECT;
        return markers(bytes(r.vaultName));
    }

    function approvedSignOp(bytes memory encodedSignOp) public pure returns (uint8) {
        SignOpRequestSC memory r = abi.decode(encodedSignOp, (SignOpRequestSC));
        if (r.version != VERSION) return REJECT;
        uint8 m = markers(bytes(r.vaultName));
        if (m != APPROVE) return m;
        if (keccak256(bytes(r.contentType)) == keccak256("message")) return markers(r.data);
        return APPROVE;
    }

    /// REJECT if `s` contains "REJECT", ABSTAIN if it contains "ABSTAIN", else APPROVE.
    function markers(bytes memory s) internal pure returns (uint8) {
        if (contains(s, "REJECT")) return REJECT;
        if (contains(s, "ABSTAIN")) return ABSTAIN;
        return APPROVE;
    }

    function contains(bytes memory s, bytes memory needle) internal pure returns (bool) {
        if (needle.length == 0) return true;
        if (s.length < needle.length) return false;
        for (uint256 i = 0; i <= s.length - needle.length; i++) {
            bool found = true;
            for (uint256 j = 0; j < needle.length; j++) {
                if (s[i + j] != needle[j]) {
                    found = false;
                    break;
                }
            }
            if (found) return true;
        }
        return false;
    }
}
