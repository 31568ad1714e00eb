// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.20;

/// Test-only: an "approval contract" whose answers vsigner must not take as approvals.
contract Weird {
    function approvedKeygenReshare(bytes memory) public pure returns (uint8) {
        revert("policy unavailable");
    }

    function approvedTx(bytes memory) public pure returns (uint8) {
        return 7;
    }

    function approvedSignOp(bytes memory) public pure returns (uint256) {
        return 256; // would be 0 (approve) if truncated to uint8
    }
}
