// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {Envelope} from "../src/lib/Envelope.sol";
import {EnvelopeHarness} from "./Vectors.t.sol";

/// Properties of the envelope codec beyond the shared vectors: round trips, and what is refused.
contract EnvelopeTest is Test {
    EnvelopeHarness internal harness;

    function setUp() public {
        harness = new EnvelopeHarness();
    }

    function _message(uint8 kind, uint64 nonce, bytes memory payload) internal pure returns (Envelope.Message memory) {
        return Envelope.Message(1, kind, nonce, 31337, bytes32(uint256(0xaa)), 900, bytes32(uint256(0xbb)), payload);
    }

    function testFuzz_roundTrip(
        uint8 kind,
        uint64 nonce,
        uint32 srcDomain,
        bytes32 srcSender,
        uint32 dstDomain,
        bytes32 dstReceiver,
        bytes memory payload
    ) public view {
        kind = uint8(1 + kind % 5);
        if (payload.length > Envelope.MAX_PAYLOAD_LEN) return;
        Envelope.Message memory m = Envelope.Message(1, kind, nonce, srcDomain, srcSender, dstDomain, dstReceiver, payload);
        bytes memory encoded = harness.encode(m);
        assertEq(encoded.length, Envelope.HEADER_LEN + payload.length, "encoded length");
        assertEq(
            encoded,
            abi.encodePacked(uint8(1), kind, nonce, srcDomain, srcSender, dstDomain, dstReceiver, payload),
            "packed big-endian layout"
        );
        assertEq(abi.encode(harness.decode(encoded)), abi.encode(m), "decode(encode(m)) == m");
    }

    function test_refusesShortEnvelope() public {
        bytes memory header = harness.encode(_message(4, 0, ""));
        bytes memory short = new bytes(81);
        for (uint256 i = 0; i < 81; i++) short[i] = header[i];
        vm.expectRevert(abi.encodeWithSelector(Envelope.EnvelopeTooShort.selector, 81));
        harness.decode(short);
    }

    function test_refusesOtherVersionsAndKinds() public {
        bytes memory encoded = harness.encode(_message(4, 1, "x"));
        encoded[0] = 0x02;
        vm.expectRevert(abi.encodeWithSelector(Envelope.UnsupportedVersion.selector, 2));
        harness.decode(encoded);
        encoded[0] = 0x01;
        encoded[1] = 0x06;
        vm.expectRevert(abi.encodeWithSelector(Envelope.UnknownKind.selector, 6));
        harness.decode(encoded);
        encoded[1] = 0x00;
        vm.expectRevert(abi.encodeWithSelector(Envelope.UnknownKind.selector, 0));
        harness.decode(encoded);
        vm.expectRevert(abi.encodeWithSelector(Envelope.UnknownKind.selector, 9));
        harness.encode(_message(9, 0, ""));
    }

    function test_payloadLimit() public {
        harness.decode(harness.encode(_message(1, 0, new bytes(512))));
        vm.expectRevert(abi.encodeWithSelector(Envelope.PayloadTooLong.selector, 513));
        harness.encode(_message(1, 0, new bytes(513)));
        bytes memory tooLong = bytes.concat(harness.encode(_message(1, 0, new bytes(512))), hex"00");
        vm.expectRevert(abi.encodeWithSelector(Envelope.PayloadTooLong.selector, 513));
        harness.decode(tooLong);
    }

    function test_digestLayout() public view {
        bytes memory encoded = harness.encode(_message(2, 3, "abc"));
        (bytes32 id, bytes32 digest) = harness.digest(7, encoded);
        assertEq(id, keccak256(encoded), "message id");
        assertEq(digest, keccak256(abi.encodePacked("TESSERA/v1/MSG", uint32(7), id)), "digest");
    }
}
