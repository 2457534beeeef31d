// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {ITesseraReceiver} from "../interfaces/ITesseraReceiver.sol";

interface IGatewayDeliver {
    function deliver(bytes calldata envelope, uint32 epoch, bytes calldata signature) external;
    function retryFailed(bytes calldata envelope) external;
}

/// Test receiver that tries to have its message delivered (and retried) a second time from inside
/// its own handler, with the same envelope and signature. It records how often it was entered and
/// whether any re-entrant call got through.
contract ReentrantReceiver is ITesseraReceiver {
    IGatewayDeliver public immutable gateway;
    bytes internal _envelope;
    uint32 internal _epoch;
    bytes internal _signature;
    uint256 public handled;
    uint256 public reentrySucceeded;

    constructor(address gateway_) {
        gateway = IGatewayDeliver(gateway_);
    }

    function arm(bytes calldata envelope, uint32 epoch, bytes calldata signature) external {
        _envelope = envelope;
        _epoch = epoch;
        _signature = signature;
    }

    function handleMessage(bytes32, uint32, bytes32, uint8, uint64, bytes calldata) external {
        require(msg.sender == address(gateway), "not the gateway");
        handled += 1;
        try gateway.deliver(_envelope, _epoch, _signature) {
            reentrySucceeded += 1;
        } catch {}
        try gateway.retryFailed(_envelope) {
            reentrySucceeded += 1;
        } catch {}
    }
}
