// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {Probe} from "../src/Probe.sol";

contract ProbeTest is Test {
    event ValueSet(address indexed setter, uint256 value);

    Probe internal probe;

    function setUp() public {
        probe = new Probe();
    }

    function test_initialValue() public view {
        assertEq(probe.value(), 0, "initial value");
    }

    function test_setEmits() public {
        vm.expectEmit();
        emit ValueSet(address(this), 42);
        probe.set(42);
        assertEq(probe.value(), 42, "stored value");
    }

    function test_hashIsKeccak() public view {
        assertEq(probe.hash(hex"74657373657261"), keccak256("tessera"), "keccak256");
    }
}
