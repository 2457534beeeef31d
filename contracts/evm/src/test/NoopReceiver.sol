// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {ITesseraReceiver} from "../interfaces/ITesseraReceiver.sol";

/// Test receiver (forge tests and bench/e2e.py's cost runs, never in production): accepts every
/// message and does nothing, so a delivery's gas is the gateway's own cost per message.
contract NoopReceiver is ITesseraReceiver {
    function handleMessage(bytes32, uint32, bytes32, uint8, uint64, bytes calldata) external {}
}
