// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {Batch} from "../src/lib/Batch.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {Gateway} from "../src/Gateway.sol";
import {BN254} from "../src/lib/BN254.sol";
import {Envelope} from "../src/lib/Envelope.sol";
import {NoopReceiver} from "../src/test/NoopReceiver.sol";
import {RecordingReceiver} from "../src/test/RecordingReceiver.sol";

/// Cheatcodes this file needs beyond test/utils/Test.sol's subset (same cheatcode address).
interface VmBatch {
    function parseJsonBytesArray(string calldata json, string calldata key) external pure returns (bytes[] memory);
    function parseJsonBytes32Array(string calldata json, string calldata key)
        external
        pure
        returns (bytes32[] memory);
}

/// forge's console (`forge test -vv` prints it).
library console {
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function log(string memory label, uint256 value) internal view {
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,uint256)", label, value));
        ok;
    }
}

/// External wrappers so calldata proofs go through the library as the gateway uses it.
contract BatchHarness {
    function root(bytes32[] memory ids) external pure returns (bytes32) {
        return Batch.rootInPlace(ids);
    }

    function rootFromProof(bytes32 id, uint256 index, uint256 count, bytes32[] calldata proof)
        external
        pure
        returns (bytes32)
    {
        return Batch.rootFromProof(id, index, count, proof);
    }

    function digest(uint32 epoch, uint32 src, uint32 dst, uint32 count, bytes32 r) external pure returns (bytes32) {
        return Batch.digest(epoch, src, dst, count, r);
    }
}

/// The batch tree against the shared vectors (tests/vectors/batch_v1.json), and Gateway.deliverBatch /
/// verifyRoot / deliverWithProof with roots signed by gateway.json's 3-of-4 committee
/// (test/fixtures/generate_batch.py writes test/fixtures/batch.json).
contract BatchTest is Test {
    VmBatch internal constant vmb = VmBatch(address(uint160(uint256(keccak256("hevm cheat code")))));
    string internal constant VECTORS = "../../tests/vectors/batch_v1.json";
    uint32 internal constant DOMAIN = 31337;
    uint32 internal constant SRC = 424242;
    uint32 internal constant EPOCH = 1;

    string internal fixture;
    CommitteeVerifier internal verifier;
    Gateway internal gateway;
    RecordingReceiver internal receiver;
    NoopReceiver internal noop;
    BatchHarness internal harness;

    function setUp() public {
        fixture = vm.readFile("test/fixtures/batch.json");
        verifier = new CommitteeVerifier(DOMAIN, EPOCH, 4, 3, vm.parseJsonBytes(fixture, ".group_key"));
        gateway = new Gateway(DOMAIN, address(verifier), 0, address(this));
        receiver = new RecordingReceiver(address(gateway));
        noop = new NoopReceiver();
        harness = new BatchHarness();
    }

    function _envs(string memory name) internal view returns (bytes[] memory) {
        return vmb.parseJsonBytesArray(fixture, string.concat(".", name, ".envelopes"));
    }

    function _root(string memory name) internal view returns (bytes32) {
        return vm.parseJsonBytes32(fixture, string.concat(".", name, ".root"));
    }

    function _sig(string memory name) internal view returns (bytes memory) {
        return vm.parseJsonBytes(fixture, string.concat(".", name, ".signature"));
    }

    function _proof(string memory name, uint256 i) internal view returns (bytes32[] memory) {
        return vmb.parseJsonBytes32Array(fixture, string.concat(".", name, ".proofs[", vm.toString(i), "]"));
    }

    function test_fixtureAddressesTheseReceivers() public view {
        assertEq(address(receiver), vm.parseJsonAddress(fixture, ".receiver"), "regenerate test/fixtures/batch.json");
        assertEq(address(noop), vm.parseJsonAddress(fixture, ".noop"), "regenerate test/fixtures/batch.json");
    }

    // --- vectors -------------------------------------------------------------------------

    function test_treeVectors() public view {
        string memory json = vm.readFile(VECTORS);
        uint256 trees;
        while (vm.keyExistsJson(json, string.concat(".trees[", vm.toString(trees), "]"))) trees++;
        assertTrue(trees >= 14, "vectors read");
        for (uint256 t = 0; t < trees; ++t) {
            string memory base = string.concat(".trees[", vm.toString(t), "]");
            bytes32[] memory ids = vmb.parseJsonBytes32Array(json, string.concat(base, ".message_ids"));
            bytes32 root = vm.parseJsonBytes32(json, string.concat(base, ".root"));
            assertEq(harness.root(ids), root, string.concat("root of tree ", vm.toString(t)));
            for (uint256 p = 0; vm.keyExistsJson(json, string.concat(base, ".proofs[", vm.toString(p), "]")); ++p) {
                string memory pk = string.concat(base, ".proofs[", vm.toString(p), "]");
                uint256 index = vm.parseJsonUint(json, string.concat(pk, ".index"));
                bytes32[] memory proof = vmb.parseJsonBytes32Array(json, string.concat(pk, ".proof"));
                assertEq(harness.rootFromProof(ids[index], index, ids.length, proof), root, "proof");
            }
        }
    }

    function test_digestVectors() public view {
        string memory json = vm.readFile(VECTORS);
        for (uint256 i = 0; vm.keyExistsJson(json, string.concat(".digests[", vm.toString(i), "]")); ++i) {
            string memory b = string.concat(".digests[", vm.toString(i), "]");
            bytes32 d = harness.digest(
                uint32(vm.parseJsonUint(json, string.concat(b, ".epoch"))),
                uint32(vm.parseJsonUint(json, string.concat(b, ".src_domain"))),
                uint32(vm.parseJsonUint(json, string.concat(b, ".dst_domain"))),
                uint32(vm.parseJsonUint(json, string.concat(b, ".leaf_count"))),
                vm.parseJsonBytes32(json, string.concat(b, ".root"))
            );
            assertEq(d, vm.parseJsonBytes32(json, string.concat(b, ".digest")), "digest");
        }
    }

    /// Every invalid proof either reverts (wrong length, index out of range) or leads elsewhere.
    function test_invalidProofVectors() public view {
        string memory json = vm.readFile(VECTORS);
        uint256 n;
        for (; vm.keyExistsJson(json, string.concat(".invalid_proofs[", vm.toString(n), "]")); ++n) {
            string memory b = string.concat(".invalid_proofs[", vm.toString(n), "]");
            bytes32 root = vm.parseJsonBytes32(json, string.concat(b, ".root"));
            try harness.rootFromProof(
                vm.parseJsonBytes32(json, string.concat(b, ".message_id")),
                vm.parseJsonUint(json, string.concat(b, ".index")),
                vm.parseJsonUint(json, string.concat(b, ".leaf_count")),
                vmb.parseJsonBytes32Array(json, string.concat(b, ".proof"))
            ) returns (bytes32 got) {
                assertTrue(got != root, vm.parseJsonString(json, string.concat(b, ".reason")));
            } catch {}
        }
        assertEq(n, 10, "invalid cases read");
    }

    // --- deliverBatch --------------------------------------------------------------------

    function test_deliverBatchDeliversEveryMessageAndRemembersTheRoot() public {
        bytes[] memory envs = _envs("a");
        bytes32 root = _root("a");
        vm.expectEmit();
        emit Gateway.RootVerified(root, SRC, EPOCH, uint32(envs.length));
        uint256 delivered = gateway.deliverBatch(root, EPOCH, _sig("a"), envs);
        assertEq(delivered, envs.length, "delivered");
        assertEq(receiver.count(), envs.length, "handled");
        for (uint256 i = 0; i < envs.length; ++i) {
            assertEq(gateway.deliveryStatus(keccak256(envs[i])), 1, "status");
        }
        (uint32 src, uint32 count, uint32 epoch) = gateway.verifiedRoots(root);
        assertEq(src, SRC, "lane");
        assertEq(count, envs.length, "leaf count");
        assertEq(epoch, EPOCH, "epoch");
        // The same batch again: nothing is re-run, nothing reverts.
        assertEq(gateway.deliverBatch(root, EPOCH, _sig("a"), envs), 0, "re-delivered");
        assertEq(receiver.count(), envs.length, "handled twice");
    }

    function test_failedHandlerInABatchIsRecordedAndRetryable() public {
        bytes[] memory envs = _envs("a");
        receiver.setFailing(true);
        gateway.deliverBatch(_root("a"), EPOCH, _sig("a"), envs);
        assertEq(gateway.deliveryStatus(keccak256(envs[0])), 2, "failed");
        receiver.setFailing(false);
        gateway.retryFailed(envs[0]);
        assertEq(gateway.deliveryStatus(keccak256(envs[0])), 1, "handled on retry");
        assertEq(receiver.count(), 1, "one handled");
    }

    function test_forgedRootSignatureIsRefused() public {
        bytes[] memory envs = _envs("forged");
        vm.expectRevert(BN254.InvalidSignature.selector);
        gateway.deliverBatch(_root("forged"), EPOCH, _sig("forged"), envs);
        vm.expectRevert(BN254.InvalidSignature.selector);
        gateway.verifyRoot(_root("forged"), SRC, 1, EPOCH, _sig("forged"));
        // a's genuine signature does not cover another root
        vm.expectRevert(BN254.InvalidSignature.selector);
        gateway.deliverBatch(_root("forged"), EPOCH, _sig("a"), envs);
        (, uint32 count,) = gateway.verifiedRoots(_root("forged"));
        assertEq(count, 0, "forged root remembered");
    }

    function test_rootThatIsNotTheEnvelopesTreeIsRefused() public {
        bytes[] memory envs = _envs("a");
        bytes[] memory fewer = new bytes[](envs.length - 1);
        for (uint256 i = 0; i < fewer.length; ++i) fewer[i] = envs[i];
        bytes32 root = _root("a");
        vm.expectPartialRevert(Gateway.RootMismatch.selector);
        gateway.deliverBatch(root, EPOCH, _sig("a"), fewer);
        (envs[0], envs[1]) = (envs[1], envs[0]); // order is part of the tree
        vm.expectPartialRevert(Gateway.RootMismatch.selector);
        gateway.deliverBatch(root, EPOCH, _sig("a"), envs);
    }

    function test_messageReplayedThroughASecondBatchIsNotRunAgain() public {
        bytes[] memory a = _envs("a");
        bytes[] memory b = _envs("b");
        gateway.deliverBatch(_root("a"), EPOCH, _sig("a"), a);
        assertEq(keccak256(b[1]), keccak256(a[2]), "fixture: b carries a's message 2");
        assertEq(gateway.deliverBatch(_root("b"), EPOCH, _sig("b"), b), 2, "only b's new messages");
        assertEq(receiver.count(), a.length + 2, "a's message 2 ran twice");
        // and through b's verified root with a proof
        vm.expectPartialRevert(Gateway.AlreadyDelivered.selector);
        gateway.deliverWithProof(b[1], 1, _proof("b", 1), _root("b"));
    }

    function test_laneMismatchIsRefused() public {
        bytes[] memory mixed = vmb.parseJsonBytesArray(fixture, ".mixed");
        vm.expectRevert(abi.encodeWithSelector(Gateway.LaneMismatch.selector, uint32(777), SRC));
        gateway.deliverBatch(bytes32(0), EPOCH, "", mixed);
        // a root verified for lane 424242 -> here does not deliver a message from source 777
        gateway.verifyRoot(_root("a"), SRC, 5, EPOCH, _sig("a"));
        bytes[] memory other = _envs("other_lane");
        vm.expectRevert(abi.encodeWithSelector(Gateway.LaneMismatch.selector, uint32(777), SRC));
        gateway.deliverWithProof(other[0], 0, new bytes32[](0), _root("a"));
        // a root signed for lane 777 -> here, presented as lane 424242: the digest differs
        vm.expectRevert(BN254.InvalidSignature.selector);
        gateway.verifyRoot(_root("other_lane"), SRC, 1, EPOCH, _sig("other_lane"));
    }

    function test_batchSizeLimits() public {
        vm.expectRevert(abi.encodeWithSelector(Batch.BatchSizeInvalid.selector, uint256(0)));
        gateway.deliverBatch(bytes32(0), EPOCH, "", new bytes[](0));
        vm.expectRevert(abi.encodeWithSelector(Batch.BatchSizeInvalid.selector, uint256(65)));
        gateway.verifyRoot(bytes32(uint256(1)), SRC, 65, EPOCH, "");
    }

    // --- verifyRoot + deliverWithProof ----------------------------------------------------

    function test_deliverWithProofAfterVerifyRoot() public {
        bytes[] memory envs = _envs("a");
        bytes32 root = _root("a");
        vm.expectRevert(abi.encodeWithSelector(Gateway.RootNotVerified.selector, root));
        gateway.deliverWithProof(envs[3], 3, _proof("a", 3), root);
        gateway.verifyRoot(root, SRC, uint32(envs.length), EPOCH, _sig("a"));
        gateway.verifyRoot(root, SRC, uint32(envs.length), EPOCH, ""); // idempotent, no pairing
        for (uint256 i = envs.length; i > 0; --i) {
            gateway.deliverWithProof(envs[i - 1], uint32(i - 1), _proof("a", i - 1), root);
            assertEq(gateway.deliveryStatus(keccak256(envs[i - 1])), 1, "delivered");
        }
        assertEq(receiver.count(), envs.length, "handled");
        vm.expectPartialRevert(Gateway.AlreadyDelivered.selector);
        gateway.deliverWithProof(envs[0], 0, _proof("a", 0), root);
        // and the rest of the batch through deliverBatch is skipped, not re-run
        assertEq(gateway.deliverBatch(root, EPOCH, "", envs), 0, "re-delivered");
    }

    function test_proofForAnotherRootIsRefused() public {
        bytes[] memory a = _envs("a");
        bytes[] memory b = _envs("b");
        gateway.verifyRoot(_root("a"), SRC, uint32(a.length), EPOCH, _sig("a"));
        gateway.verifyRoot(_root("b"), SRC, uint32(b.length), EPOCH, _sig("b"));
        // b's message 0 with its (valid) proof, named against root a
        vm.expectPartialRevert(Batch.ProofLengthInvalid.selector); // a has 5 leaves, b 3: another shape
        gateway.deliverWithProof(b[0], 0, _proof("b", 0), _root("a"));
        // same shape: a's leaf 2's proof with b's message at index 2 of a
        vm.expectPartialRevert(Gateway.InvalidProof.selector);
        gateway.deliverWithProof(b[2], 2, _proof("a", 2), _root("a"));
        // right message and root, wrong index
        vm.expectPartialRevert(Gateway.InvalidProof.selector);
        gateway.deliverWithProof(a[1], 0, _proof("a", 1), _root("a"));
        // a tampered sibling
        bytes32[] memory p = _proof("a", 1);
        p[0] = bytes32(uint256(p[0]) ^ 1);
        vm.expectPartialRevert(Gateway.InvalidProof.selector);
        gateway.deliverWithProof(a[1], 1, p, _root("a"));
        assertEq(receiver.count(), 0, "nothing delivered");
    }

    // --- gas -----------------------------------------------------------------------------

    /// Whole-transaction gas per delivered message (21,000 + calldata + execution, as
    /// docs/BENCHMARKS.md counts deliverWithHint's 182.8k), 64-byte payloads to a no-op receiver.
    function test_gasPerMessage() public {
        uint256[4] memory sizes = [uint256(1), 8, 32, 64];
        for (uint256 s = 0; s < sizes.length; ++s) {
            string memory name = string.concat("gas", vm.toString(sizes[s]));
            bytes[] memory envs = _envs(name);
            bytes32 root = _root(name);
            bytes memory sig = _sig(name);
            bytes memory data = abi.encodeCall(Gateway.deliverBatch, (root, EPOCH, sig, envs));
            uint256 before = gasleft();
            (bool ok,) = address(gateway).call(data);
            uint256 used = before - gasleft();
            assertTrue(ok, "batch delivered");
            uint256 perMessage = (21_000 + _calldataGas(data) + used) / envs.length;
            console.log(string.concat("deliverBatch gas per message, batch ", vm.toString(sizes[s])), perMessage);
            if (sizes[s] == 32) assertTrue(perMessage <= 40_000, "target: <= 40k gas per message at batch 32");
        }
        // a later message of a verified root, with its proof (6 hashes at batch 64)
        string memory n64 = "gas64";
        bytes[] memory e64 = _envs(n64);
        bytes memory again = abi.encodeCall(Gateway.deliverBatch, (_root(n64), EPOCH, "", e64));
        (bool ok2,) = address(gateway).call(again); // all delivered already: skipped
        assertTrue(ok2, "re-run skipped");
    }

    function test_gasDeliverWithProof() public {
        bytes[] memory envs = _envs("gas64");
        bytes32 root = _root("gas64");
        gateway.verifyRoot(root, SRC, 64, EPOCH, _sig("gas64"));
        bytes memory data = abi.encodeCall(Gateway.deliverWithProof, (envs[37], 37, _proof("gas64", 37), root));
        uint256 before = gasleft();
        (bool ok,) = address(gateway).call(data);
        uint256 used = before - gasleft();
        assertTrue(ok, "delivered");
        console.log("deliverWithProof gas (batch 64, 6 proof hashes), whole transaction", 21_000 + _calldataGas(data) + used);
    }

    function _calldataGas(bytes memory data) internal pure returns (uint256 g) {
        for (uint256 i = 0; i < data.length; ++i) {
            g += data[i] == 0 ? 4 : 16;
        }
    }
}
