// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {ITesseraReceiver} from "../interfaces/ITesseraReceiver.sol";

/// Test receiver (deployed by forge and e2e tests, never in production): records every message it
/// handles; `setFailing(true)` makes it revert so the gateway's failed/retry path can be exercised.
contract RecordingReceiver is ITesseraReceiver {
    struct Record {
        bytes32 messageId;
        uint32 srcDomain;
        bytes32 srcSender;
        uint8 kind;
        uint64 nonce;
        bytes payload;
    }

    address public immutable gateway;
    bool public failing;
    /// Gas burnt on every call: lets tests check that eth_estimateGas covers a heavy handler.
    uint256 public burn;
    Record[] internal _records;

    error NotGateway(address caller);
    error ReceiverFailing(bytes32 messageId);

    event Handled(bytes32 indexed messageId, uint64 nonce);

    constructor(address gateway_) {
        gateway = gateway_;
    }

    function setFailing(bool value) external {
        failing = value;
    }

    function setBurn(uint256 iterations) external {
        burn = iterations;
    }

    function handleMessage(
        bytes32 messageId,
        uint32 srcDomain,
        bytes32 srcSender,
        uint8 kind,
        uint64 nonce,
        bytes calldata payload
    ) external {
        if (msg.sender != gateway) revert NotGateway(msg.sender);
        if (failing) revert ReceiverFailing(messageId);
        uint256 acc;
        for (uint256 i = 0; i < burn; ++i) {
            acc = uint256(keccak256(abi.encode(acc, i)));
        }
        _records.push(Record(messageId, srcDomain, srcSender, kind, nonce, payload));
        emit Handled(messageId, nonce);
    }

    function count() external view returns (uint256) {
        return _records.length;
    }

    function record(uint256 index) external view returns (Record memory) {
        return _records[index];
    }
}
