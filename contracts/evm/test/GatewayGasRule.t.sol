// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {Gateway} from "../src/Gateway.sol";
import {GasSensitiveReceiver} from "../src/test/GasSensitiveReceiver.sol";
import {NoopReceiver} from "../src/test/NoopReceiver.sol";
import {RecordingReceiver} from "../src/test/RecordingReceiver.sol";
import {ReentrantReceiver} from "../src/test/ReentrantReceiver.sol";

interface VmGas {
    function etch(address target, bytes calldata code) external;
    function snapshotState() external returns (uint256);
    function revertToState(uint256 id) external returns (bool);
    function parseJsonBytesArray(string calldata json, string calldata key) external pure returns (bytes[] memory);
    function parseJsonBytes32Array(string calldata json, string calldata key) external pure returns (bytes32[] memory);
}

/// The gateway's gas rule: a handler failure is recorded only if the handler was offered all of
/// MAX_HANDLER_GAS; one that fails having been offered less reverts the whole delivery with
/// InsufficientGasForHandler (nothing consumed). The receivers of the signed fixtures are replaced
/// (vm.etch) by a GasSensitiveReceiver that reverts at once when handed less than it wants — the
/// receiver a caller's gas limit could otherwise get recorded failed.
abstract contract GasRuleBase is Test {
    VmGas internal constant vmg = VmGas(address(uint160(uint256(keccak256("hevm cheat code")))));

    Gateway internal gateway;

    /// Turns `target` into a GasSensitiveReceiver wanting `minGas` at entry.
    function _makeSensitive(address target, uint256 minGas) internal {
        GasSensitiveReceiver model = new GasSensitiveReceiver(address(gateway), minGas, 0);
        vmg.etch(target, address(model).code);
    }

    function _handled(address target) internal view returns (uint256) {
        return GasSensitiveReceiver(target).handled();
    }
}

/// Single deliver (test/fixtures/gateway.json, the same deployment order as Gateway.t.sol).
contract GatewayGasRuleSingleTest is GasRuleBase {
    uint32 internal constant DOMAIN = 31337;

    string internal fixture;
    RecordingReceiver internal receiver;

    function setUp() public {
        fixture = vm.readFile("test/fixtures/gateway.json");
        CommitteeVerifier verifier = new CommitteeVerifier(DOMAIN, 1, 4, 3, vm.parseJsonBytes(fixture, ".group_key"));
        gateway = new Gateway(DOMAIN, address(verifier), 0.001 ether, address(0x0A11CE));
        receiver = new RecordingReceiver(address(gateway));
        new ReentrantReceiver(address(gateway));
        assertEq(address(receiver), vm.parseJsonAddress(fixture, ".receiver"), "fixture receiver");
    }

    function _env(string memory name) internal view returns (bytes memory) {
        return vm.parseJsonBytes(fixture, string.concat(".", name, ".envelope"));
    }

    function _sig(string memory name) internal view returns (bytes memory) {
        return vm.parseJsonBytes(fixture, string.concat(".", name, ".signature"));
    }

    function test_earlyRevertingReceiverOfferedLessThanMaxRevertsTheDelivery() public {
        bytes memory envelope = _env("first");
        bytes32 id = keccak256(envelope);
        _makeSensitive(address(receiver), 1_500_000);
        // Offered ~1M: the receiver reverts at once (NotEnoughGas), using almost nothing — the old
        // rule (ran out of gas) would have recorded it failed.
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliver{gas: 1_200_000}(envelope, 1, _sig("first"));
        assertEq(gateway.deliveryStatus(id), 0, "nothing consumed");
        // The same message with enough gas is handled.
        uint256 before = _handled(address(receiver));
        gateway.deliver{gas: 2_500_000}(envelope, 1, _sig("first"));
        assertEq(gateway.deliveryStatus(id), 1, "handled");
        assertEq(_handled(address(receiver)), before + 1, "counted once");
    }

    function test_receiverFailingWhenOfferedMaxIsRecordedFailed() public {
        bytes memory envelope = _env("first");
        bytes32 id = keccak256(envelope);
        _makeSensitive(address(receiver), gateway.MAX_HANDLER_GAS() + 1); // never satisfied
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliver{gas: 1_900_000}(envelope, 1, _sig("first"));
        assertEq(gateway.deliveryStatus(id), 0, "offered less: not recorded");
        vm.expectEmit(true, false, false, false);
        emit Gateway.HandlerFailed(id, "");
        gateway.deliver{gas: 3_000_000}(envelope, 1, _sig("first"));
        assertEq(gateway.deliveryStatus(id), 2, "offered MAX: recorded failed");
    }

    function test_plainRevertingReceiverWithEnoughGasIsRecordedFailed() public {
        bytes memory envelope = _env("first");
        bytes32 id = keccak256(envelope);
        receiver.setFailing(true);
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliver{gas: 500_000}(envelope, 1, _sig("first"));
        assertEq(gateway.deliveryStatus(id), 0, "offered less: not recorded");
        gateway.deliver{gas: 2_500_000}(envelope, 1, _sig("first"));
        assertEq(gateway.deliveryStatus(id), 2, "failed");
    }

    /// A receiver without code is never called: failed at any gas that covers the delivery itself,
    /// never InsufficientGasForHandler.
    function test_receiverWithoutCodeIsFailedAtAnyGas() public {
        bytes memory envelope = _env("no_code");
        bytes memory signature = _sig("no_code");
        bytes32 id = keccak256(envelope);
        uint256 lowest;
        for (uint256 g = 150_000; g <= 1_000_000; g += 10_000) {
            uint256 snap = vmg.snapshotState();
            (bool ok, bytes memory ret) =
                address(gateway).call{gas: g}(abi.encodeCall(Gateway.deliver, (envelope, 1, signature)));
            if (ok) {
                assertEq(gateway.deliveryStatus(id), 2, "failed, not handled");
                if (lowest == 0) lowest = g;
            } else {
                assertTrue(lowest == 0, "reverted above a limit that worked");
                assertTrue(ret.length < 4 || bytes4(ret) != Gateway.InsufficientGasForHandler.selector, "gas rule hit");
            }
            vmg.revertToState(snap);
        }
        assertTrue(lowest != 0 && lowest < 1_000_000, "recorded failed well below MAX_HANDLER_GAS");
        gateway.deliver{gas: lowest}(envelope, 1, signature);
        assertEq(gateway.deliveryStatus(id), 2, "failed");
    }

    /// EIP-150: "offered" is what the callee really gets. A receiver wanting MAX_HANDLER_GAS less
    /// its own entry overhead is, at every gas limit across the boundary, either handled or the
    /// delivery reverts — never recorded failed (which it would be if the 63/64 cap gave it less
    /// than the handlerGas the gateway asked for).
    function test_theHandlerReallyReceivesWhatItIsOffered() public {
        bytes memory envelope = _env("first");
        bytes memory signature = _sig("first");
        bytes32 id = keccak256(envelope);
        _makeSensitive(address(receiver), gateway.MAX_HANDLER_GAS() - 1_000);
        uint256 lowest;
        for (uint256 g = 2_000_000; g <= 2_400_000; g += 2_000) {
            uint256 snap = vmg.snapshotState();
            (bool ok,) = address(gateway).call{gas: g}(abi.encodeCall(Gateway.deliver, (envelope, 1, signature)));
            uint8 status = gateway.deliveryStatus(id);
            assertTrue(status != 2, "recorded failed although offered");
            if (ok) {
                assertEq(status, 1, "handled");
                if (lowest == 0) lowest = g;
            } else {
                assertTrue(lowest == 0, "reverted above a limit that worked");
            }
            vmg.revertToState(snap);
        }
        assertTrue(lowest != 0, "handled somewhere in the range");
    }
}

/// deliverBatch and deliverWithProof (test/fixtures/batch.json, the same deployment order as
/// Batch.t.sol).
contract GatewayGasRuleBatchTest is GasRuleBase {
    uint32 internal constant DOMAIN = 31337;
    uint32 internal constant EPOCH = 1;
    uint32 internal constant SRC = 424242;

    string internal fixture;
    RecordingReceiver internal receiver;

    function setUp() public {
        fixture = vm.readFile("test/fixtures/batch.json");
        CommitteeVerifier verifier = new CommitteeVerifier(DOMAIN, EPOCH, 4, 3, vm.parseJsonBytes(fixture, ".group_key"));
        gateway = new Gateway(DOMAIN, address(verifier), 0, address(this));
        receiver = new RecordingReceiver(address(gateway));
        new NoopReceiver();
    }

    function _envs(string memory name) internal view returns (bytes[] memory) {
        return vmg.parseJsonBytesArray(fixture, string.concat(".", name, ".envelopes"));
    }

    function _root(string memory name) internal view returns (bytes32) {
        return vm.parseJsonBytes32(fixture, string.concat(".", name, ".root"));
    }

    function _sig(string memory name) internal view returns (bytes memory) {
        return vm.parseJsonBytes(fixture, string.concat(".", name, ".signature"));
    }

    function _proof(string memory name, uint256 i) internal view returns (bytes32[] memory) {
        return vmg.parseJsonBytes32Array(fixture, string.concat(".", name, ".proofs[", vm.toString(i), "]"));
    }

    function _statusesAre(bytes[] memory envs, uint8 want) internal view {
        for (uint256 i = 0; i < envs.length; ++i) {
            assertEq(gateway.deliveryStatus(keccak256(envs[i])), want, "status");
        }
    }

    function test_batchWithAnEarlyRevertingReceiverOfferedLessThanMaxReverts() public {
        bytes[] memory envs = _envs("a");
        _makeSensitive(address(receiver), 1_500_000);
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliverBatch{gas: 1_200_000}(_root("a"), EPOCH, _sig("a"), envs);
        _statusesAre(envs, 0);
        (, uint32 leafCount,) = gateway.verifiedRoots(_root("a"));
        assertEq(leafCount, 0, "root not kept either");
    }

    function test_batchReceiverFailingWhenOfferedMaxIsRecordedFailed() public {
        bytes[] memory envs = _envs("a");
        _makeSensitive(address(receiver), gateway.MAX_HANDLER_GAS() + 1);
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliverBatch{gas: 1_900_000}(_root("a"), EPOCH, _sig("a"), envs);
        _statusesAre(envs, 0);
        // It reverts at once using almost nothing, so each member is offered MAX in turn under 3M.
        gateway.deliverBatch{gas: 3_000_000}(_root("a"), EPOCH, _sig("a"), envs);
        _statusesAre(envs, 2);
    }

    function test_batchPlainRevertingReceiverWithEnoughGasIsRecordedFailed() public {
        bytes[] memory envs = _envs("a");
        receiver.setFailing(true);
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliverBatch{gas: 1_000_000}(_root("a"), EPOCH, _sig("a"), envs);
        _statusesAre(envs, 0);
        gateway.deliverBatch{gas: 2_500_000 * envs.length}(_root("a"), EPOCH, _sig("a"), envs);
        _statusesAre(envs, 2);
    }

    function test_deliverWithProofFollowsTheSameRule() public {
        bytes[] memory envs = _envs("a");
        bytes32 root = _root("a");
        gateway.verifyRoot(root, SRC, uint32(envs.length), EPOCH, _sig("a"));
        _makeSensitive(address(receiver), 1_500_000);
        bytes32 id = keccak256(envs[1]);
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliverWithProof{gas: 1_000_000}(envs[1], 1, _proof("a", 1), root);
        assertEq(gateway.deliveryStatus(id), 0, "nothing consumed");
        gateway.deliverWithProof{gas: 2_500_000}(envs[1], 1, _proof("a", 1), root);
        assertEq(gateway.deliveryStatus(id), 1, "handled with enough gas");

        _makeSensitive(address(receiver), gateway.MAX_HANDLER_GAS() + 1);
        id = keccak256(envs[2]);
        vm.expectPartialRevert(Gateway.InsufficientGasForHandler.selector);
        gateway.deliverWithProof{gas: 1_500_000}(envs[2], 2, _proof("a", 2), root);
        assertEq(gateway.deliveryStatus(id), 0, "offered less: not recorded");
        gateway.deliverWithProof{gas: 2_500_000}(envs[2], 2, _proof("a", 2), root);
        assertEq(gateway.deliveryStatus(id), 2, "offered MAX: recorded failed");
    }
}
