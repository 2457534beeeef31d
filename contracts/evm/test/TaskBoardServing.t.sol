// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {Envelope} from "../src/lib/Envelope.sol";
import {TaskPayloads} from "../src/lib/TaskPayloads.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {Gateway} from "../src/Gateway.sol";
import {TaskBoard} from "../src/TaskBoard.sol";

interface VmServingExtra {
    function deal(address account, uint256 newBalance) external;
    function expectEmit(address emitter) external;
}

/// The serving side of the task board: TASK_REQUESTs delivered through the real Gateway (signed
/// by a one-member committee, as in TaskBoard.t.sol), and results sent back with submitResult.
contract TaskBoardServingTest is Test {
    VmServingExtra internal constant vmx = VmServingExtra(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint32 internal constant DOMAIN = 31337;
    uint32 internal constant REMOTE = 424242;
    uint32 internal constant EPOCH = 1;
    uint256 internal constant FEE = 0.001 ether;
    bytes32 internal constant REQUESTER_BOARD = bytes32(uint256(0x5EB0A2D));
    bytes32 internal constant WORKER = keccak256("worker ed25519 key");
    bytes32 internal constant PAYOUT = bytes32(uint256(uint160(0x70997970C51812dc3A010C7d01b50e0d17dc79C8)));
    address internal constant SUBMITTER = address(0x5B317);
    /// The same test committee as TaskBoard.t.sol: sk and sk·G2.
    uint256 internal constant SK = 0x0b689e06a54cf1b5a8cd88281c8643c39ebe0fe8352f75d18b097fc8cbef4162;
    bytes internal constant GROUP_KEY =
        hex"2e6ac04722c6fb4b3e90febffff400d9e0d627730519ef3b221c1572c4951c9325997c73e9319510496a71539159c4d603c78e9dcc1e35ad6d0abfe652bbea8f0b708682657e718abc26ee4f0a1f1e7f7b085572e32ff5dad965a2443a77cb2d04cfb73512515778963e0477f0bc06edc4c5b59e3836b8667255b9bc7ebee0f5";

    CommitteeVerifier internal verifier;
    Gateway internal gateway;
    TaskBoard internal board;
    uint64 internal remoteNonce;

    function setUp() public {
        vm.warp(1_800_000_000);
        verifier = new CommitteeVerifier(DOMAIN, EPOCH, 1, 1, GROUP_KEY);
        gateway = new Gateway(DOMAIN, address(verifier), FEE, address(0x0A11CE));
        board = new TaskBoard(address(gateway), Envelope.COMMITTEE_DOMAIN, bytes32(0), 300);
        vm.prank(address(0x0A11CE)); // task boards pay the flat fee (Gateway: flatFeeSender), as deployed
        gateway.setFlatFeeSender(address(board), true);
        vmx.deal(SUBMITTER, 10 ether);
    }

    // --- helpers -----------------------------------------------------------------------------

    function _requestEnvelope(bytes memory payload) internal returns (bytes memory) {
        return abi.encodePacked(
            uint8(1),
            Envelope.KIND_TASK_REQUEST,
            remoteNonce++,
            REMOTE,
            REQUESTER_BOARD,
            DOMAIN,
            bytes32(uint256(uint160(address(board)))),
            payload
        );
    }

    function _deliver(bytes memory envelope) internal returns (bytes32 id) {
        id = keccak256(envelope);
        (uint256 x, uint256 y,) = verifier.hashToG1(Envelope.digest(EPOCH, id));
        (bool ok, bytes memory sig) = address(7).staticcall(abi.encode(x, y, SK));
        assertTrue(ok && sig.length == 64, "ecMul precompile");
        gateway.deliver(envelope, EPOCH, sig);
        assertEq(uint256(gateway.deliveryStatus(id)), 1, "handler must not fail");
    }

    function _receive(string memory executor, uint64 deadline) internal returns (bytes32) {
        return _deliver(_requestEnvelope(TaskPayloads.encodeRequestInline(executor, 1 ether, deadline, "hello")));
    }

    function _result(bytes32 requestId, bytes16 executor, bytes memory output) internal pure returns (bytes memory) {
        return abi.encodePacked(
            requestId,
            executor,
            keccak256(output),
            WORKER,
            PAYOUT,
            new bytes(64),
            uint8(0),
            uint16(0),
            uint8(0),
            uint16(output.length),
            output
        );
    }

    function _submit(bytes memory payload) internal returns (bytes32) {
        vm.prank(SUBMITTER);
        return board.submitResult{value: FEE}(payload);
    }

    // --- receiving ---------------------------------------------------------------------------

    function test_requestReceivedIsRecordedAndAnnounced() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes memory payload = TaskPayloads.encodeRequestInline("sentiment", 1 ether, deadline, "I love it");
        bytes memory envelope = _requestEnvelope(payload);
        vm.expectEmit();
        emit TaskBoard.TaskReceived(keccak256(envelope), REMOTE, REQUESTER_BOARD, bytes16("sentiment"), deadline, payload);
        bytes32 id = _deliver(envelope);
        (uint32 srcDomain, uint64 dl, bytes16 executor, bool received, bool answered, bytes32 srcBoard) =
            board.incoming(id);
        assertEq(uint256(srcDomain), REMOTE, "src domain");
        assertEq(uint256(dl), deadline, "deadline");
        assertEq(bytes32(executor), bytes32(bytes16("sentiment")), "executor");
        assertTrue(received && !answered, "received, not answered");
        assertEq(srcBoard, REQUESTER_BOARD, "requester board");
        assertTrue(!board.resultAnswered(id), "resultAnswered false");
        // The requester side is untouched: an incoming request is not one of our tasks.
        assertEq(uint256(board.taskState(id)), 0, "no requester-side task");
    }

    function test_requestByReferenceReceived() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes memory payload =
            TaskPayloads.encodeRequestByReference("http", 7, deadline, keccak256("doc"), "ipfs://bafyabc");
        bytes memory envelope = _requestEnvelope(payload);
        vm.expectEmit();
        emit TaskBoard.TaskReceived(keccak256(envelope), REMOTE, REQUESTER_BOARD, bytes16("http"), deadline, payload);
        _deliver(envelope);
    }

    function test_malformedRequestIsIgnoredNotReverted() public {
        bytes memory good = TaskPayloads.encodeRequestInline("echo", 1, uint64(block.timestamp + 600), "hi");
        bytes memory truncated = new bytes(40);
        bytes memory trailing = abi.encodePacked(good, uint8(0));
        bytes memory badMode = abi.encodePacked(good);
        badMode[40] = 0x07;
        bytes memory badExecutor = abi.encodePacked(good);
        badExecutor[0] = 0x20; // a space
        bytes[5] memory bad = [new bytes(0), truncated, trailing, badMode, badExecutor];
        for (uint256 i = 0; i < bad.length; i++) {
            bytes memory envelope = _requestEnvelope(bad[i]);
            vm.expectEmit();
            emit TaskBoard.TaskMessageIgnored(keccak256(envelope), "malformed TASK_REQUEST");
            bytes32 id = _deliver(envelope);
            (,,, bool received,,) = board.incoming(id);
            assertTrue(!received, "malformed request not recorded");
        }
    }

    // --- submitting --------------------------------------------------------------------------

    function test_submitResultSendsTaskResultToTheRequesterBoard() public {
        bytes32 id = _receive("echo", uint64(block.timestamp + 600));
        bytes memory payload = _result(id, bytes16("echo"), "hello back");
        uint64 nonce = gateway.nextNonce();
        bytes memory expected = abi.encodePacked(
            uint8(1),
            Envelope.KIND_TASK_RESULT,
            nonce,
            DOMAIN,
            bytes32(uint256(uint160(address(board)))),
            REMOTE,
            REQUESTER_BOARD,
            payload
        );
        vmx.expectEmit(address(gateway));
        emit Gateway.MessageSent(keccak256(expected), nonce, REMOTE, expected);
        vmx.expectEmit(address(board));
        emit TaskBoard.TaskResultSent(id, keccak256(expected), SUBMITTER);
        bytes32 resultId = _submit(payload);
        assertEq(resultId, keccak256(expected), "result id is the TASK_RESULT envelope's message id");
        assertTrue(board.resultAnswered(id), "answered");
        assertEq(address(gateway).balance, FEE, "gateway fee paid");
        assertEq(address(board).balance, 0, "board keeps nothing");
    }

    function test_secondResultRefused() public {
        bytes32 id = _receive("echo", uint64(block.timestamp + 600));
        _submit(_result(id, bytes16("echo"), "first"));
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.ResultAlreadySubmitted.selector, id));
        _submit(_result(id, bytes16("echo"), "second"));
    }

    function test_expiredRefused() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = _receive("echo", deadline);
        vm.warp(uint256(deadline) + 1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.RequestExpired.selector, id, deadline, uint256(deadline) + 1));
        _submit(_result(id, bytes16("echo"), "late"));
        assertTrue(!board.resultAnswered(id), "not answered");
        // At the deadline itself a result is still on time.
        bytes32 id2 = _receive("echo", uint64(block.timestamp));
        _submit(_result(id2, bytes16("echo"), "just in time"));
        assertTrue(board.resultAnswered(id2), "answered at the deadline");
    }

    function test_executorMismatchRefused() public {
        bytes32 id = _receive("sentiment", uint64(block.timestamp + 600));
        vm.expectRevert(
            abi.encodeWithSelector(TaskBoard.ExecutorMismatch.selector, id, bytes16("sentiment"), bytes16("echo"))
        );
        _submit(_result(id, bytes16("echo"), "x"));
    }

    function test_unknownRequestRefused() public {
        bytes32 id = keccak256("never delivered");
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.UnknownRequest.selector, id));
        _submit(_result(id, bytes16("echo"), "x"));
    }

    function test_malformedResultAndLowFeeRefused() public {
        bytes32 id = _receive("echo", uint64(block.timestamp + 600));
        bytes memory bad = _result(id, bytes16("echo"), "x");
        bad[bad.length - 1] = "y"; // output no longer matches output_hash
        vm.expectPartialRevert(TaskPayloads.OutputHashMismatch.selector);
        _submit(bad);
        vm.expectPartialRevert(TaskPayloads.PayloadTruncated.selector);
        _submit(new bytes(100));
        vm.prank(SUBMITTER);
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.ValueBelowGatewayFee.selector, FEE - 1, FEE));
        board.submitResult{value: FEE - 1}(_result(id, bytes16("echo"), "x"));
        assertTrue(!board.resultAnswered(id), "refusals answer nothing");
        _submit(_result(id, bytes16("echo"), "x"));
        assertTrue(board.resultAnswered(id), "a valid result still goes through");
    }

    function test_handleRequestGas() public {
        bytes memory payload = TaskPayloads.encodeRequestInline("echo", 1 ether, uint64(block.timestamp + 600), "hello");
        vm.prank(address(gateway));
        uint256 before = gasleft();
        board.handleMessage(keccak256("id"), REMOTE, REQUESTER_BOARD, Envelope.KIND_TASK_REQUEST, 0, payload);
        uint256 used = before - gasleft();
        // Decode (an external self-call, so a malformed payload is caught) + two new slots + the event.
        assertTrue(used < 75_000, string.concat("handleMessage(TASK_REQUEST) gas ", vm.toString(used)));
    }

    function test_submitGas() public {
        bytes32 id = _receive("echo", uint64(block.timestamp + 600));
        bytes memory payload = _result(id, bytes16("echo"), "hello back");
        vm.prank(SUBMITTER);
        uint256 before = gasleft();
        board.submitResult{value: FEE}(payload);
        uint256 used = before - gasleft();
        // A budget, so a regression shows: decode + two slots + the gateway's send and event.
        assertTrue(used < 80_000, string.concat("submitResult gas ", vm.toString(used)));
    }
}
