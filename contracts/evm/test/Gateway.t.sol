// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Owned2Step} from "../src/lib/Owned2Step.sol";
import {Test} from "./utils/Test.sol";
import {BN254} from "../src/lib/BN254.sol";
import {Envelope} from "../src/lib/Envelope.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {Gateway} from "../src/Gateway.sol";
import {RecordingReceiver} from "../src/test/RecordingReceiver.sol";
import {ReentrantReceiver} from "../src/test/ReentrantReceiver.sol";

/// Cheatcodes this file needs beyond test/utils/Test.sol's subset (same cheatcode address).
interface VmExtra {
    function deal(address account, uint256 newBalance) external;
}

/// Gateway send/deliver/retry, with envelopes signed by a 3-of-4 committee
/// (test/fixtures/generate_gateway.py writes test/fixtures/gateway.json).
contract GatewayTest is Test {
    VmExtra internal constant vmx = VmExtra(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint32 internal constant DOMAIN = 31337;
    uint32 internal constant REMOTE = 424242;
    uint256 internal constant FEE = 0.001 ether;
    address internal constant OWNER = address(0x0A11CE);

    string internal fixture;
    CommitteeVerifier internal verifier;
    Gateway internal gateway;
    RecordingReceiver internal receiver;
    ReentrantReceiver internal reentrant;

    function setUp() public {
        fixture = vm.readFile("test/fixtures/gateway.json");
        verifier = new CommitteeVerifier(DOMAIN, 1, 4, 3, vm.parseJsonBytes(fixture, ".group_key"));
        gateway = new Gateway(DOMAIN, address(verifier), FEE, OWNER);
        receiver = new RecordingReceiver(address(gateway));
        reentrant = new ReentrantReceiver(address(gateway));
        vmx.deal(address(this), 10 ether);
    }

    receive() external payable {}

    function _env(string memory name) internal view returns (bytes memory) {
        return vm.parseJsonBytes(fixture, string.concat(".", name, ".envelope"));
    }

    function _sig(string memory name) internal view returns (bytes memory) {
        return vm.parseJsonBytes(fixture, string.concat(".", name, ".signature"));
    }

    function test_fixtureAddressesTheseReceivers() public view {
        assertEq(address(receiver), vm.parseJsonAddress(fixture, ".receiver"), "regenerate test/fixtures/gateway.json");
        assertEq(address(reentrant), vm.parseJsonAddress(fixture, ".reentrant"), "regenerate test/fixtures/gateway.json");
    }

    // --- send ----------------------------------------------------------------------------

    function test_sendAssignsConsecutiveNoncesAndEmitsTheEnvelope() public {
        bytes32 to = bytes32(uint256(0xBEEF));
        for (uint64 i = 0; i < 3; ++i) {
            bytes memory payload = abi.encodePacked("task ", vm.toString(uint256(i)));
            bytes memory expected = abi.encodePacked(
                uint8(1), uint8(1), i, DOMAIN, bytes32(uint256(uint160(address(this)))), REMOTE, to, payload
            );
            vm.expectEmit();
            emit Gateway.MessageSent(keccak256(expected), i, REMOTE, expected);
            (bytes32 id, uint64 nonce) = gateway.send{value: FEE}(REMOTE, to, 1, payload);
            assertEq(nonce, i, "nonce");
            assertEq(id, keccak256(expected), "message id is keccak256(envelope)");
        }
        assertEq(gateway.nextNonce(), 3, "next nonce");
    }

    function test_sendRefusesBadInput() public {
        bytes32 to = bytes32(uint256(0xBEEF));
        vm.expectRevert(abi.encodeWithSelector(Gateway.KindNotSendable.selector, uint8(5)));
        gateway.send{value: FEE}(REMOTE, to, 5, "");
        vm.expectRevert(abi.encodeWithSelector(Gateway.KindNotSendable.selector, uint8(0)));
        gateway.send{value: FEE}(REMOTE, to, 0, "");
        bytes memory big = new bytes(513);
        vm.expectRevert(abi.encodeWithSelector(Gateway.PayloadTooLong.selector, uint256(513), uint256(512)));
        gateway.send{value: FEE}(REMOTE, to, 4, big);
        vm.expectRevert(abi.encodeWithSelector(Gateway.SameDomain.selector, DOMAIN));
        gateway.send{value: FEE}(DOMAIN, to, 4, "");
        vm.expectRevert(Gateway.ZeroReceiver.selector);
        gateway.send{value: FEE}(REMOTE, bytes32(0), 4, "");
        vm.expectRevert(abi.encodeWithSelector(Gateway.FeeTooLow.selector, FEE - 1, FEE));
        gateway.send{value: FEE - 1}(REMOTE, to, 4, "");
        // A failed send must not consume a nonce.
        (, uint64 nonce) = gateway.send{value: FEE}(REMOTE, to, 4, new bytes(512));
        assertEq(nonce, 0, "refused sends consumed a nonce");
    }

    /// v1 kept overpayments and paid the fees to whoever the owner named at withdrawal; now the
    /// fee accrues to the beneficiary, overpayment goes back to the payer, only the beneficiary claims.
    function test_feesAccrueToTheBeneficiaryAndOverpaymentIsRefunded() public {
        gateway.send{value: FEE}(REMOTE, bytes32(uint256(1)), 1, "");
        uint256 before = address(this).balance;
        gateway.send{value: 3 * FEE}(REMOTE, bytes32(uint256(1)), 1, "");
        assertEq(before - address(this).balance, FEE, "overpayment refunded to the payer");
        assertEq(address(gateway).balance, 2 * FEE, "fees held");
        assertEq(gateway.accruedFees(), 2 * FEE, "fees accrued");
        vm.expectRevert(abi.encodeWithSelector(Gateway.NotBeneficiary.selector, address(this), OWNER));
        gateway.claimFees();
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, address(this)));
        gateway.setFee(0);
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, address(this)));
        gateway.setBeneficiary(address(this));

        address payable to = payable(address(0xFEE5));
        vm.prank(OWNER);
        gateway.setBeneficiary(to);
        vm.prank(to);
        gateway.claimFees();
        assertEq(to.balance, 2 * FEE, "claimed");
        assertEq(address(gateway).balance, 0, "emptied");
        vm.prank(to);
        vm.expectRevert(Gateway.NothingToClaim.selector);
        gateway.claimFees();

        vm.prank(OWNER);
        gateway.setFee(0);
        gateway.send(REMOTE, bytes32(uint256(1)), 1, ""); // free now
        assertEq(gateway.fee(), 0, "fee");
    }

    /// v1 let the owner raise the fee at once, so whoever had committed to sending later (a task
    /// claimant bound to a claim deadline, a requester whose transaction was pending) paid it or
    /// lost out. An increase now waits FEE_INCREASE_DELAY; `feeAt` shows it in advance.
    function test_feeIncreaseWaitsForItsNotice() public {
        uint256 t0 = block.timestamp;
        uint256 delay = gateway.FEE_INCREASE_DELAY();
        vm.expectEmit();
        emit Gateway.FeeIncreaseScheduled(5 * FEE, uint64(t0 + delay));
        vm.prank(OWNER);
        gateway.setFee(5 * FEE);
        assertEq(gateway.fee(), FEE, "still the old fee");
        assertEq(gateway.feeAt(t0 + delay), 5 * FEE, "announced");
        gateway.send{value: FEE}(REMOTE, bytes32(uint256(1)), 1, ""); // old fee accepted during the notice
        vm.warp(t0 + delay);
        assertEq(gateway.fee(), 5 * FEE, "in force after the notice");
        vm.expectRevert(abi.encodeWithSelector(Gateway.FeeTooLow.selector, FEE, 5 * FEE));
        gateway.send{value: FEE}(REMOTE, bytes32(uint256(1)), 1, "");
        // A second increase counts from its own announcement, from the fee now in force.
        vm.prank(OWNER);
        gateway.setFee(6 * FEE);
        assertEq(gateway.fee(), 5 * FEE, "the first increase stays in force");
        assertEq(gateway.feeAt(t0 + 2 * delay), 6 * FEE, "the second is announced");
    }

    function test_feeDecreaseAppliesAtOnceAndCancelsAnAnnouncedIncrease() public {
        vm.prank(OWNER);
        gateway.setFee(9 * FEE);
        vm.expectEmit();
        emit Gateway.FeeChanged(FEE / 2);
        vm.prank(OWNER);
        gateway.setFee(FEE / 2);
        assertEq(gateway.fee(), FEE / 2, "lower at once");
        assertEq(gateway.pendingFeeAt(), 0, "increase cancelled");
        assertEq(gateway.feeAt(block.timestamp + 365 days), FEE / 2, "nothing announced");
    }

    // --- deliver -------------------------------------------------------------------------

    function test_deliverCommitteeSignedEnvelope() public {
        bytes memory envelope = _env("first");
        bytes memory signature = _sig("first");
        bytes32 id = keccak256(envelope);
        assertEq(gateway.deliveryStatus(id), 0, "status before");
        vm.expectEmit();
        emit Gateway.MessageDelivered(id, REMOTE, 0, true);
        gateway.deliver(envelope, 1, signature);
        assertEq(gateway.deliveryStatus(id), 1, "status after");
        assertEq(receiver.count(), 1, "receiver called once");
        RecordingReceiver.Record memory r = receiver.record(0);
        assertEq(r.messageId, id, "message id");
        assertEq(r.srcDomain, REMOTE, "src domain");
        assertEq(r.srcSender, bytes32(uint256(0x005e4de75e4de75e4de75e4de75e4de75e4de75e4d)), "src sender");
        assertEq(r.kind, 1, "kind");
        assertEq(r.nonce, 0, "nonce");
        assertEq(r.payload, bytes("summarise: the quick brown fox"), "payload");
    }

    /// While paused (owner's switch), committee-signed deliveries and retries are refused; after
    /// unpause the same envelope lands.
    function test_deliverWhilePausedIsRefused() public {
        bytes memory envelope = _env("first");
        bytes memory signature = _sig("first");
        vm.prank(OWNER);
        gateway.pause();
        vm.expectRevert(Gateway.GatewayPaused.selector);
        gateway.deliver(envelope, 1, signature);
        vm.expectRevert(Gateway.GatewayPaused.selector);
        gateway.deliverWithHint(envelope, 1, signature, 0, 1, 1);
        vm.expectRevert(Gateway.GatewayPaused.selector);
        gateway.retryFailed(envelope);
        bytes[] memory batch = new bytes[](1);
        batch[0] = envelope;
        vm.expectRevert(Gateway.GatewayPaused.selector);
        gateway.deliverBatch(keccak256(envelope), 1, signature, batch);
        vm.expectRevert(Gateway.GatewayPaused.selector);
        gateway.deliverWithProof(envelope, 0, new bytes32[](0), keccak256(envelope));
        assertEq(gateway.deliveryStatus(keccak256(envelope)), 0, "nothing delivered while paused");
        vm.prank(OWNER);
        gateway.unpause();
        gateway.deliver(envelope, 1, signature);
        assertEq(gateway.deliveryStatus(keccak256(envelope)), 1, "delivered after unpause");
    }

    function test_refusesForgedSignatures() public {
        bytes memory envelope = _env("forged");
        bytes memory outsider = _sig("forged");
        bytes memory twoOfFour = _sig("signed_by_two");
        vm.expectRevert(BN254.InvalidSignature.selector);
        gateway.deliver(envelope, 1, outsider);
        vm.expectRevert(BN254.InvalidSignature.selector);
        gateway.deliver(envelope, 1, twoOfFour); // below the threshold
        bytes memory signature = _sig("second"); // a valid signature of another envelope
        vm.expectRevert(BN254.InvalidSignature.selector);
        gateway.deliver(envelope, 1, signature);
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.UnknownEpoch.selector, uint32(2), uint32(1)));
        gateway.deliver(envelope, 2, _sig("first"));
        assertEq(gateway.deliveryStatus(keccak256(envelope)), 0, "nothing recorded");
        assertEq(receiver.count(), 0, "receiver not called");
    }

    function test_refusesReplay() public {
        bytes memory envelope = _env("first");
        bytes memory signature = _sig("first");
        gateway.deliver(envelope, 1, signature);
        vm.expectRevert(abi.encodeWithSelector(Gateway.AlreadyDelivered.selector, keccak256(envelope), uint8(1)));
        gateway.deliver(envelope, 1, signature);
        assertEq(receiver.count(), 1, "handled once");
    }

    function test_refusesEnvelopeForAnotherDomain() public {
        bytes memory envelope = _env("other_domain");
        bytes memory signature = _sig("other_domain");
        vm.expectRevert(abi.encodeWithSelector(Gateway.WrongDomain.selector, DOMAIN + 1, DOMAIN));
        gateway.deliver(envelope, 1, signature);
    }

    function test_refusesCommitteeRotationKind() public {
        bytes memory envelope = _env("rotation_kind");
        bytes memory signature = _sig("rotation_kind");
        vm.expectRevert(Gateway.RotationNotDeliverable.selector);
        gateway.deliver(envelope, 1, signature);
    }

    function test_revertingReceiverIsFailedThenRetried() public {
        bytes memory envelope = _env("second");
        bytes memory signature = _sig("second");
        bytes32 id = keccak256(envelope);
        receiver.setFailing(true);

        vm.expectEmit();
        emit Gateway.HandlerFailed(id, abi.encodeWithSelector(RecordingReceiver.ReceiverFailing.selector, id));
        vm.expectEmit();
        emit Gateway.MessageDelivered(id, REMOTE, 1, false);
        gateway.deliver(envelope, 1, signature);
        assertEq(gateway.deliveryStatus(id), 2, "failed");

        vm.expectRevert(abi.encodeWithSelector(Gateway.AlreadyDelivered.selector, id, uint8(2)));
        gateway.deliver(envelope, 1, signature);

        bytes memory reason = abi.encodeWithSelector(RecordingReceiver.ReceiverFailing.selector, id);
        vm.expectRevert(abi.encodeWithSelector(Gateway.HandlerStillFailing.selector, id, reason));
        gateway.retryFailed(envelope);
        assertEq(gateway.deliveryStatus(id), 2, "still failed");

        receiver.setFailing(false);
        vm.expectEmit();
        emit Gateway.FailedMessageHandled(id);
        vm.prank(address(0xA770));
        gateway.retryFailed(envelope); // anyone may retry
        assertEq(gateway.deliveryStatus(id), 1, "handled after retry");
        assertEq(receiver.count(), 1, "handled once");
        assertEq(receiver.record(0).nonce, 1, "nonce");

        vm.expectRevert(abi.encodeWithSelector(Gateway.NotFailed.selector, id, uint8(1)));
        gateway.retryFailed(envelope);
        bytes memory undelivered = _env("first");
        vm.expectRevert(abi.encodeWithSelector(Gateway.NotFailed.selector, keccak256(undelivered), uint8(0)));
        gateway.retryFailed(undelivered);
    }

    function test_receiverWithoutCodeCountsAsFailed() public {
        bytes memory envelope = _env("no_code");
        bytes memory signature = _sig("no_code");
        bytes32 id = keccak256(envelope);
        bytes32 dead = bytes32(uint256(0xdEaD));
        vm.expectEmit();
        emit Gateway.HandlerFailed(id, abi.encodeWithSelector(Gateway.ReceiverNotAContract.selector, dead));
        gateway.deliver(envelope, 1, signature);
        assertEq(gateway.deliveryStatus(id), 2, "failed, not reverted");
    }

    function test_reentrantReceiverCannotDeliverTwice() public {
        bytes memory envelope = _env("reentrant_message");
        bytes memory signature = _sig("reentrant_message");
        reentrant.arm(envelope, 1, signature);
        gateway.deliver(envelope, 1, signature);
        assertEq(reentrant.handled(), 1, "handler entered once");
        assertEq(reentrant.reentrySucceeded(), 0, "a re-entrant deliver/retry got through");
        assertEq(gateway.deliveryStatus(keccak256(envelope)), 1, "handled");
    }

    function test_starvedHandlerRevertsTheDeliveryInsteadOfFailingIt() public {
        bytes memory envelope = _env("first");
        bytes memory signature = _sig("first");
        receiver.setBurn(3000); // a handler that needs several hundred thousand gas
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliver{gas: 400_000}(envelope, 1, signature);
        assertEq(gateway.deliveryStatus(keccak256(envelope)), 0, "a starved delivery must not count");
        gateway.deliver{gas: 2_000_000}(envelope, 1, signature);
        assertEq(gateway.deliveryStatus(keccak256(envelope)), 1, "handled with enough gas");
    }

    // --- deliverWithHint -----------------------------------------------------------------

    struct Hint {
        uint8 k;
        uint256 y;
        uint256 ySqrt;
    }

    /// The hint a relayer sends: the try-and-increment point (here from the verifier itself) and
    /// a square root of its y.
    function _hint(bytes memory envelope) internal view returns (Hint memory) {
        (, uint256 y, uint256 k) = verifier.hashToG1(Envelope.digest(1, keccak256(envelope)));
        bytes memory input = abi.encodePacked(uint256(32), uint256(32), uint256(32), y, BN254.SQRT_EXPONENT, BN254.P);
        (bool ok, bytes memory out) = address(5).staticcall(input);
        assertTrue(ok, "modexp");
        uint256 root = abi.decode(out, (uint256));
        assertEq(mulmod(root, root, BN254.P), y, "y is the principal root");
        return Hint(uint8(k), y, root);
    }

    function test_deliverWithHint() public {
        bytes memory envelope = _env("first");
        bytes memory signature = _sig("first");
        Hint memory h = _hint(envelope);
        bytes32 id = keccak256(envelope);
        vm.expectEmit();
        emit Gateway.MessageDelivered(id, REMOTE, 0, true);
        gateway.deliverWithHint(envelope, 1, signature, h.k, h.y, h.ySqrt);
        assertEq(gateway.deliveryStatus(id), 1, "status after");
        assertEq(receiver.count(), 1, "receiver called once");
        assertEq(receiver.record(0).messageId, id, "message id");
        assertEq(receiver.record(0).payload, bytes("summarise: the quick brown fox"), "payload");
    }

    function test_deliverWithHintRefusesBadHints() public {
        bytes memory envelope = _env("first");
        bytes memory signature = _sig("first");
        Hint memory h = _hint(envelope);
        bytes32 digest = Envelope.digest(1, keccak256(envelope));
        (uint256 sx, uint256 sy) = abi.decode(signature, (uint256, uint256));
        bytes memory negSig = abi.encodePacked(sx, BN254.P - sy);

        vm.expectRevert(abi.encodeWithSelector(BN254.HintNotOnCurve.selector, digest, uint8(h.k + 1)));
        gateway.deliverWithHint(envelope, 1, signature, h.k + 1, h.y, h.ySqrt);
        vm.expectRevert(BN254.HintNotCanonical.selector); // the negation attack (-sigma, -y)
        gateway.deliverWithHint(envelope, 1, negSig, h.k, BN254.P - h.y, h.ySqrt);
        vm.expectRevert(BN254.HintNotCanonical.selector);
        gateway.deliverWithHint(envelope, 1, signature, h.k, h.y, h.y);
        vm.expectRevert(BN254.HintOutOfRange.selector);
        gateway.deliverWithHint(envelope, 1, signature, h.k, h.y + BN254.P, h.ySqrt);
        vm.expectRevert(BN254.InvalidSignature.selector);
        gateway.deliverWithHint(envelope, 1, _sig("second"), h.k, h.y, h.ySqrt);
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.UnknownEpoch.selector, uint32(2), uint32(1)));
        gateway.deliverWithHint(envelope, 2, signature, h.k, h.y, h.ySqrt);
        assertEq(gateway.deliveryStatus(keccak256(envelope)), 0, "nothing recorded");
        assertEq(receiver.count(), 0, "receiver not called");

        // The refusals left nothing behind: the right hint still delivers.
        gateway.deliverWithHint(envelope, 1, signature, h.k, h.y, h.ySqrt);
        assertEq(gateway.deliveryStatus(keccak256(envelope)), 1, "delivered");
    }

    function test_deliverWithHintRefusesReplay() public {
        bytes memory envelope = _env("first");
        bytes memory signature = _sig("first");
        Hint memory h = _hint(envelope);
        bytes32 id = keccak256(envelope);
        gateway.deliverWithHint(envelope, 1, signature, h.k, h.y, h.ySqrt);
        vm.expectRevert(abi.encodeWithSelector(Gateway.AlreadyDelivered.selector, id, uint8(1)));
        gateway.deliverWithHint(envelope, 1, signature, h.k, h.y, h.ySqrt);
        vm.expectRevert(abi.encodeWithSelector(Gateway.AlreadyDelivered.selector, id, uint8(1)));
        gateway.deliver(envelope, 1, signature);

        // And the other way round: a hinted delivery of what `deliver` already accepted.
        bytes memory second = _env("second");
        bytes memory sig2 = _sig("second");
        Hint memory h2 = _hint(second);
        gateway.deliver(second, 1, sig2);
        vm.expectRevert(abi.encodeWithSelector(Gateway.AlreadyDelivered.selector, keccak256(second), uint8(1)));
        gateway.deliverWithHint(second, 1, sig2, h2.k, h2.y, h2.ySqrt);
        assertEq(receiver.count(), 2, "each handled once");
    }

    function test_deliverWithHintSharesTheDeliveryChecks() public {
        bytes memory other = _env("other_domain");
        Hint memory h = _hint(other);
        vm.expectRevert(abi.encodeWithSelector(Gateway.WrongDomain.selector, DOMAIN + 1, DOMAIN));
        gateway.deliverWithHint(other, 1, _sig("other_domain"), h.k, h.y, h.ySqrt);
        bytes memory rotation = _env("rotation_kind");
        h = _hint(rotation);
        vm.expectRevert(Gateway.RotationNotDeliverable.selector);
        gateway.deliverWithHint(rotation, 1, _sig("rotation_kind"), h.k, h.y, h.ySqrt);

        // A failing receiver is recorded as failed, exactly as with deliver.
        bytes memory envelope = _env("second");
        bytes32 id = keccak256(envelope);
        h = _hint(envelope);
        receiver.setFailing(true);
        vm.expectEmit();
        emit Gateway.HandlerFailed(id, abi.encodeWithSelector(RecordingReceiver.ReceiverFailing.selector, id));
        gateway.deliverWithHint(envelope, 1, _sig("second"), h.k, h.y, h.ySqrt);
        assertEq(gateway.deliveryStatus(id), 2, "failed");

        // And a starved handler reverts the delivery instead of failing it.
        bytes memory first = _env("first");
        bytes memory firstSig = _sig("first");
        h = _hint(first);
        receiver.setFailing(false);
        receiver.setBurn(3000);
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliverWithHint{gas: 400_000}(first, 1, firstSig, h.k, h.y, h.ySqrt);
        assertEq(gateway.deliveryStatus(keccak256(first)), 0, "a starved delivery must not count");
    }
}
