// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {BN254} from "../src/lib/BN254.sol";

contract BN254Harness {
    function hashToG1(bytes32 digest) external view returns (BN254.G1Point memory h, uint256 k) {
        return BN254.hashToG1(digest);
    }

    function decodeG1(bytes memory data) external pure returns (BN254.G1Point memory) {
        return BN254.decodeG1(data);
    }

    function decodeG2(bytes memory data) external pure returns (BN254.G2Point memory) {
        return BN254.decodeG2(data);
    }
}

contract BN254Test is Test {
    BN254Harness internal harness;

    // The G2 generator, EIP-197 order.
    uint256 internal constant G2_X_IM = 11559732032986387107991004021392285783925812861821192530917403151452391805634;
    uint256 internal constant G2_X_RE = 10857046999023057135944570762232829481370756359578518086990519993285655852781;
    uint256 internal constant G2_Y_IM = 4082367875863433681332203403145435568316851327593401208105741076214120093531;
    uint256 internal constant G2_Y_RE = 8495653923123431417604973247489272438418190587263600148770280649306958101930;

    function setUp() public {
        harness = new BN254Harness();
    }

    function testFuzz_hashToG1IsOnCurveAndFollowsTryAndIncrement(bytes32 digest) public view {
        (BN254.G1Point memory h, uint256 k) = harness.hashToG1(digest);
        assertTrue(BN254.isOnG1Curve(h.x, h.y), "hash is on the curve");
        assertEq(h.x, addmod(uint256(digest) % BN254.P, k, BN254.P), "x = digest mod p + k");
        assertTrue(h.y < BN254.P, "canonical y");
        // The principal root: y = beta^((p+1)/4) is itself a square (the exponent is even).
        assertEq(_pow(h.y, (BN254.P - 1) / 2), 1, "y is a quadratic residue");
        for (uint256 j = 0; j < k; j++) {
            uint256 x = addmod(uint256(digest) % BN254.P, j, BN254.P);
            uint256 beta = addmod(mulmod(mulmod(x, x, BN254.P), x, BN254.P), 3, BN254.P);
            assertEq(_pow(beta, (BN254.P - 1) / 2), BN254.P - 1, "skipped candidates are non-residues");
        }
    }

    function test_g1Decoding() public {
        BN254.G1Point memory g = harness.decodeG1(abi.encodePacked(uint256(1), uint256(2)));
        assertEq(g.x, 1, "generator x");
        vm.expectRevert(BN254.PointAtInfinity.selector);
        harness.decodeG1(new bytes(64));
        vm.expectRevert(BN254.G1PointNotOnCurve.selector);
        harness.decodeG1(abi.encodePacked(uint256(1), uint256(3)));
        vm.expectRevert(BN254.CoordinateNotCanonical.selector);
        harness.decodeG1(abi.encodePacked(uint256(1) + BN254.P, uint256(2)));
        vm.expectRevert(abi.encodeWithSelector(BN254.BadPointLength.selector, 64, 65));
        harness.decodeG1(new bytes(65));
    }

    function test_g2Decoding() public {
        BN254.G2Point memory g = harness.decodeG2(abi.encodePacked(G2_X_IM, G2_X_RE, G2_Y_IM, G2_Y_RE));
        assertEq(g.yRe, G2_Y_RE, "generator y_re");
        // -G2 is on the twist too.
        harness.decodeG2(abi.encodePacked(G2_X_IM, G2_X_RE, BN254.NEG_G2_Y_IM, BN254.NEG_G2_Y_RE));
        vm.expectRevert(BN254.G2PointNotOnCurve.selector);
        harness.decodeG2(abi.encodePacked(G2_X_RE, G2_X_IM, G2_Y_RE, G2_Y_IM)); // halves swapped
        vm.expectRevert(BN254.CoordinateNotCanonical.selector);
        harness.decodeG2(abi.encodePacked(G2_X_IM, G2_X_RE, G2_Y_IM + BN254.P, G2_Y_RE));
        vm.expectRevert(BN254.PointAtInfinity.selector);
        harness.decodeG2(new bytes(128));
        vm.expectRevert(abi.encodeWithSelector(BN254.BadPointLength.selector, 128, 64));
        harness.decodeG2(new bytes(64));
    }

    function _pow(uint256 base, uint256 exponent) internal view returns (uint256 result) {
        bytes memory input = abi.encodePacked(uint256(32), uint256(32), uint256(32), base, exponent, BN254.P);
        (bool ok, bytes memory out) = address(5).staticcall(input);
        assertTrue(ok, "modexp");
        result = abi.decode(out, (uint256));
    }
}
