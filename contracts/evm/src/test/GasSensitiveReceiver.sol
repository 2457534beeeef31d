// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {ITesseraReceiver} from "../interfaces/ITesseraReceiver.sol";

/// Test receiver (e2e tests, never in production) whose outcome depends on the gas it is handed:
/// with less than `minGas` left it reverts at once, using almost nothing, so the gateway's
/// InsufficientGasForHandler rule (which catches a handler that ran out of gas) does not see it
/// starved and would record the message failed. With enough it burns `burn` iterations and counts
/// the message. tests/e2e/test_evm_gas_limits.py checks that a batch's gas limit never starves it.
contract GasSensitiveReceiver is ITesseraReceiver {
    address public immutable gateway;
    uint256 public immutable minGas;
    uint256 public immutable burn;
    uint256 public handled;

    error NotGateway(address caller);
    error NotEnoughGas(uint256 left, uint256 needed);

    constructor(address gateway_, uint256 minGas_, uint256 burn_) {
        gateway = gateway_;
        minGas = minGas_;
        burn = burn_;
    }

    function handleMessage(bytes32, uint32, bytes32, uint8, uint64, bytes calldata) external {
        if (msg.sender != gateway) revert NotGateway(msg.sender);
        uint256 left = gasleft();
        if (left < minGas) revert NotEnoughGas(left, minGas);
        uint256 acc;
        for (uint256 i = 0; i < burn; ++i) {
            acc = uint256(keccak256(abi.encode(acc, i)));
        }
        handled += 1;
    }
}
