// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {BN254} from "../src/lib/BN254.sol";
import {Envelope} from "../src/lib/Envelope.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";

/// Rotation and grace-period behaviour, with envelopes signed by py-ecc
/// (test/fixtures/generate.py writes test/fixtures/rotation.json).
contract CommitteeVerifierTest is Test {
    event CommitteeRotated(
        uint32 indexed previousEpoch, uint32 indexed newEpoch, uint16 n, uint16 t, bytes groupKey, uint64 previousValidUntil
    );

    uint32 internal constant DOMAIN = 31337;
    uint256 internal constant START = 1_800_000_000;

    string internal fixture;
    CommitteeVerifier internal verifier;
    bytes internal key1;
    bytes internal key2;
    bytes internal key3;

    function setUp() public {
        fixture = vm.readFile("test/fixtures/rotation.json");
        key1 = vm.parseJsonBytes(fixture, ".keys.1");
        key2 = vm.parseJsonBytes(fixture, ".keys.2");
        key3 = vm.parseJsonBytes(fixture, ".keys.3");
        vm.warp(START);
        verifier = new CommitteeVerifier(DOMAIN, 1, 4, 3, key1);
    }

    function _envelope(string memory path) internal view returns (bytes memory) {
        return vm.parseJsonBytes(fixture, string.concat(path, ".envelope"));
    }

    function _signature(string memory path) internal view returns (bytes memory) {
        return vm.parseJsonBytes(fixture, string.concat(path, ".signature"));
    }

    function _rotateTo2() internal {
        verifier.rotate(_envelope(".rotate_1_to_2"), _signature(".rotate_1_to_2"));
    }

    function test_fixtureAddressesThisVerifier() public view {
        // Rotation envelopes name their verifier; the fixture assumes forge's deterministic address.
        assertEq(address(verifier), vm.parseJsonAddress(fixture, ".verifier"), "regenerate test/fixtures/rotation.json");
    }

    function test_initialCommittee() public view {
        (uint32 epoch, uint16 n, uint16 t, bytes memory key) = verifier.currentCommittee();
        assertEq(epoch, 1, "epoch");
        assertEq(n, 4, "n");
        assertEq(t, 3, "t");
        assertEq(key, key1, "group key");
        assertEq(verifier.domain(), DOMAIN, "domain");
    }

    function test_verifyMessageOfCurrentEpoch() public view {
        bytes memory envelope = vm.parseJsonBytes(fixture, ".message.envelope");
        bytes32 id = verifier.verify(envelope, 1, vm.parseJsonBytes(fixture, ".message.signature_epoch_1"));
        assertEq(id, keccak256(envelope), "message id");
    }

    function test_verifyRefusesWrongEpochOrSignature() public {
        bytes memory envelope = vm.parseJsonBytes(fixture, ".message.envelope");
        bytes memory sig1 = vm.parseJsonBytes(fixture, ".message.signature_epoch_1");
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.UnknownEpoch.selector, uint32(2), uint32(1)));
        verifier.verify(envelope, 2, sig1);
        vm.expectRevert(BN254.InvalidSignature.selector);
        verifier.verify(bytes.concat(envelope, hex"00"), 1, sig1);
        vm.expectRevert(abi.encodeWithSelector(BN254.BadPointLength.selector, 64, 63));
        verifier.verify(envelope, 1, _slice(sig1, 63));
    }

    function test_rotationAccepted() public {
        bytes memory envelope = _envelope(".rotate_1_to_2");
        vm.expectEmit();
        emit CommitteeRotated(1, 2, 4, 3, key2, uint64(START + 3600));
        verifier.rotate(envelope, _signature(".rotate_1_to_2"));

        (uint32 epoch,,, bytes memory key) = verifier.currentCommittee();
        assertEq(epoch, 2, "new epoch");
        assertEq(key, key2, "new key");
        (uint32 prevEpoch,,, bytes memory prevKey, uint64 validUntil) = verifier.previousCommittee();
        assertEq(prevEpoch, 1, "previous epoch");
        assertEq(prevKey, key1, "previous key");
        assertEq(validUntil, START + 3600, "grace end");

        bytes memory message = vm.parseJsonBytes(fixture, ".message.envelope");
        verifier.verify(message, 2, vm.parseJsonBytes(fixture, ".message.signature_epoch_2"));
    }

    function test_rotationCannotBeReplayed() public {
        _rotateTo2();
        bytes memory envelope = _envelope(".rotate_1_to_2");
        bytes memory sig = _signature(".rotate_1_to_2");
        // Now signed under the wrong epoch for the current committee: refused before the epoch check.
        vm.expectRevert(BN254.InvalidSignature.selector);
        verifier.rotate(envelope, sig);
    }

    function test_rotationChains() public {
        _rotateTo2();
        verifier.rotate(_envelope(".rotate_2_to_3"), _signature(".rotate_2_to_3"));
        (uint32 epoch,,, bytes memory key) = verifier.currentCommittee();
        assertEq(epoch, 3, "epoch after two rotations");
        assertEq(key, key3, "key after two rotations");
        // Only one previous committee is kept: epoch 1 is gone even inside its grace period.
        bytes memory message = vm.parseJsonBytes(fixture, ".message.envelope");
        bytes memory sig1 = vm.parseJsonBytes(fixture, ".message.signature_epoch_1");
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.UnknownEpoch.selector, uint32(1), uint32(3)));
        verifier.verify(message, 1, sig1);
        verifier.verify(message, 2, vm.parseJsonBytes(fixture, ".message.signature_epoch_2"));
    }

    function test_rotationRefused() public {
        bytes4[10] memory expected = [
            BN254.InvalidSignature.selector, // signed by the incoming committee
            BN254.InvalidSignature.selector, // signed by an outsider
            BN254.InvalidSignature.selector, // signed by committee 1 under epoch 2
            CommitteeVerifier.WrongDestination.selector, // another domain
            CommitteeVerifier.WrongDestination.selector, // another verifier
            CommitteeVerifier.NotARotation.selector, // kind DATA
            CommitteeVerifier.NonConsecutiveEpoch.selector, // 1 -> 3
            CommitteeVerifier.NonConsecutiveEpoch.selector, // 1 -> 1
            CommitteeVerifier.RotationNotFromCommittee.selector, // from a chain domain
            CommitteeVerifier.RotationNotFromCommittee.selector // from a user address
        ];
        for (uint256 i = 0; i < expected.length; i++) {
            string memory path = string.concat(".refused[", vm.toString(i), "]");
            vm.expectPartialRevert(expected[i]);
            verifier.rotate(_envelope(path), _signature(path));
        }
        assertTrue(!vm.keyExistsJson(fixture, ".refused[10]"), "fixture has refusals this test does not cover");
        assertEq(verifier.currentEpoch(), 1, "epoch unchanged");
    }

    function test_rotationRefusesTamperedSignature() public {
        bytes memory sig = _signature(".rotate_1_to_2");
        sig[63] ^= 0x01; // off the curve
        vm.expectRevert(BN254.G1PointNotOnCurve.selector);
        verifier.rotate(_envelope(".rotate_1_to_2"), sig);
        vm.expectRevert(BN254.PointAtInfinity.selector);
        verifier.rotate(_envelope(".rotate_1_to_2"), new bytes(64));
    }

    function test_oldKeyValidDuringGraceOnly() public {
        _rotateTo2();
        bytes memory message = vm.parseJsonBytes(fixture, ".message.envelope");
        bytes memory sig1 = vm.parseJsonBytes(fixture, ".message.signature_epoch_1");

        verifier.verify(message, 1, sig1);
        vm.warp(START + 3600);
        verifier.verify(message, 1, sig1); // the last second of the grace period
        vm.warp(START + 3601);
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.EpochExpired.selector, uint32(1), uint64(START + 3600)));
        verifier.verify(message, 1, sig1);
        // The new committee is unaffected.
        verifier.verify(message, 2, vm.parseJsonBytes(fixture, ".message.signature_epoch_2"));
    }

    function test_constructorRefusesBadKeys() public {
        vm.expectRevert(BN254.PointAtInfinity.selector);
        new CommitteeVerifier(DOMAIN, 1, 4, 3, new bytes(128));
        bytes memory offCurve = bytes.concat(key1);
        offCurve[127] ^= 0x01;
        vm.expectRevert(BN254.G2PointNotOnCurve.selector);
        new CommitteeVerifier(DOMAIN, 1, 4, 3, offCurve);
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.BadThreshold.selector, uint16(2), uint16(3)));
        new CommitteeVerifier(DOMAIN, 1, 2, 3, key1);
    }

    function test_constructorRefusesKeyOutsideSubgroup() public {
        bytes memory outside = _vectorKey("invalid: group key on the twist but outside the G2 subgroup");
        vm.expectRevert(BN254.G2PointNotInSubgroup.selector);
        new CommitteeVerifier(DOMAIN, 1, 4, 3, outside);
    }

    /// Regression guard. This message needs k = 2 increments (3 modexps); measured 139.7k for the
    /// call from here (cold account access included). Whole transactions: bench/evm_verify_gas.py.
    function test_verifyGas() public view {
        bytes memory message = vm.parseJsonBytes(fixture, ".message.envelope");
        bytes memory sig1 = vm.parseJsonBytes(fixture, ".message.signature_epoch_1");
        uint256 before = gasleft();
        verifier.verify(message, 1, sig1);
        uint256 used = before - gasleft();
        assertTrue(used <= 142_000, string.concat("verify call costs ", vm.toString(used), " gas"));
    }

    function _vectorKey(string memory name) internal view returns (bytes memory) {
        string memory json = vm.readFile("../../tests/vectors/bls_bn254.json");
        for (uint256 i = 0; vm.keyExistsJson(json, string.concat(".cases[", vm.toString(i), "]")); i++) {
            string memory prefix = string.concat(".cases[", vm.toString(i), "]");
            if (keccak256(bytes(vm.parseJsonString(json, string.concat(prefix, ".name")))) == keccak256(bytes(name))) {
                return vm.parseJsonBytes(json, string.concat(prefix, ".group_key"));
            }
        }
        revert("vector case not found in tests/vectors/bls_bn254.json");
    }

    function _slice(bytes memory data, uint256 len) internal pure returns (bytes memory out) {
        out = new bytes(len);
        for (uint256 i = 0; i < len; i++) out[i] = data[i];
    }
}
