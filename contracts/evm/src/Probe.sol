// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// Smallest contract that exercises the toolchain end to end: forge build through solcjs,
/// deployment from Python, a state change, an event and a pure call.
contract Probe {
    uint256 public value;

    event ValueSet(address indexed setter, uint256 value);

    function set(uint256 newValue) external {
        value = newValue;
        emit ValueSet(msg.sender, newValue);
    }

    function hash(bytes calldata data) external pure returns (bytes32) {
        return keccak256(data);
    }
}
