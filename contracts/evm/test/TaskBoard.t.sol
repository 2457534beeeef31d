// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {Envelope} from "../src/lib/Envelope.sol";
import {TaskPayloads} from "../src/lib/TaskPayloads.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {Gateway} from "../src/Gateway.sol";
import {TaskBoard} from "../src/TaskBoard.sol";

/// Cheatcodes this file needs beyond test/utils/Test.sol's subset (same cheatcode address).
interface VmTaskExtra {
    function deal(address account, uint256 newBalance) external;
}

/// A payout or requester that tries to take the money a second time from inside the transfer.
/// Counters start at 1 so the re-entrant attempts fit in the handler's PAYOUT_GAS (no 0 → 1 SSTORE).
contract GreedyReceiver {
    TaskBoard internal immutable board;
    bytes32 public requestId;
    bool public refuseFirst; // revert every transfer while set (forces the credit path)
    uint256 public received = 1;
    uint256 public reentrySucceeded = 1;

    constructor(TaskBoard board_) {
        board = board_;
    }

    function arm(bytes32 requestId_, bool refuseFirst_) external {
        requestId = requestId_;
        refuseFirst = refuseFirst_;
    }

    function request(uint32 dst, bytes32 workerBoard, uint64 deadline) external payable returns (bytes32 id) {
        id = board.requestTask{value: msg.value}(dst, workerBoard, "echo", "hi", deadline);
        requestId = id;
    }

    receive() external payable {
        if (refuseFirst) revert("not now");
        received += 1;
        try board.withdraw(address(this)) {
            reentrySucceeded += 1;
        } catch {}
        try board.reclaim(requestId) {
            reentrySucceeded += 1;
        } catch {}
    }
}

/// The task board against the real Gateway and CommitteeVerifier: requests go out through
/// Gateway.send, results and attestations come in through Gateway.deliver with envelopes signed
/// here by a one-member committee (σ = sk·H(digest) with the ecMul precompile).
contract TaskBoardTest is Test {
    VmTaskExtra internal constant vmx = VmTaskExtra(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint32 internal constant DOMAIN = 31337;
    uint32 internal constant REMOTE = 424242;
    uint32 internal constant EPOCH = 1;
    uint256 internal constant FEE = 0.001 ether;
    uint256 internal constant ESCROW = 1 ether;
    uint64 internal constant GRACE = 1 hours;
    address internal constant OWNER = address(0x0A11CE);
    bytes32 internal constant WORKER_BOARD = bytes32(uint256(0xB0A2D));
    bytes32 internal constant WORKER = keccak256("worker ed25519 key");
    address internal constant PAYOUT = 0x70997970C51812dc3A010C7d01b50e0d17dc79C8;
    /// sk = keccak256("tessera task board test key") mod r; GROUP_KEY = sk·G2 (x_im ‖ x_re ‖ y_im ‖ y_re),
    /// computed with py_ecc.optimized_bn128.
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
        gateway = new Gateway(DOMAIN, address(verifier), FEE, OWNER);
        // Attestations count only from the committee domain (0, 0): no chain gateway can stamp that.
        board = new TaskBoard(address(gateway), Envelope.COMMITTEE_DOMAIN, bytes32(0), GRACE);
        vm.prank(OWNER); // task boards pay the flat fee (Gateway: flatFeeSender), as deployed
        gateway.setFlatFeeSender(address(board), true);
        vmx.deal(address(this), 100 ether);
    }

    receive() external payable {}

    // --- helpers -----------------------------------------------------------------------------

    function _request(uint64 deadline) internal returns (bytes32) {
        return board.requestTask{value: FEE + ESCROW}(REMOTE, WORKER_BOARD, "echo", "hello", deadline);
    }

    function _envelope(uint8 kind, uint32 srcDomain, bytes32 srcSender, bytes memory payload)
        internal
        returns (bytes memory)
    {
        return abi.encodePacked(
            uint8(1),
            kind,
            remoteNonce++,
            srcDomain,
            srcSender,
            DOMAIN,
            bytes32(uint256(uint160(address(board)))),
            payload
        );
    }

    /// The committee's signature: sk·H(digest), H from the verifier's own hash to G1.
    function _sign(bytes memory envelope) internal view returns (bytes memory) {
        (uint256 x, uint256 y,) = verifier.hashToG1(Envelope.digest(EPOCH, keccak256(envelope)));
        (bool ok, bytes memory out) = address(7).staticcall(abi.encode(x, y, SK));
        assertTrue(ok && out.length == 64, "ecMul precompile");
        return out;
    }

    /// Delivers through the real gateway and requires the handler to have succeeded: the task
    /// board must never leave a delivery failed (retryable forever).
    function _deliver(bytes memory envelope) internal returns (bytes32 id) {
        id = keccak256(envelope);
        gateway.deliver(envelope, EPOCH, _sign(envelope));
        assertEq(uint256(gateway.deliveryStatus(id)), 1, "handler must not fail");
    }

    function _deliverIgnored(bytes memory envelope, string memory reason) internal returns (bytes32 id) {
        vm.expectEmit();
        emit TaskBoard.TaskMessageIgnored(keccak256(envelope), reason);
        return _deliver(envelope);
    }

    function _resultPayload(bytes32 requestId, bytes16 executor, bytes memory output, bytes32 payout)
        internal
        pure
        returns (bytes memory)
    {
        // Layout of docs/PROTOCOL.md TASK_RESULT; the signature is not checked on-chain (attesters do).
        return abi.encodePacked(
            requestId,
            executor,
            keccak256(output),
            WORKER,
            payout,
            new bytes(64),
            uint8(0),
            uint16(0),
            uint8(0),
            uint16(output.length),
            output
        );
    }

    function _resultEnvelope(bytes32 requestId) internal returns (bytes memory) {
        return _envelope(
            Envelope.KIND_TASK_RESULT,
            REMOTE,
            WORKER_BOARD,
            _resultPayload(requestId, bytes16("echo"), "hello", bytes32(uint256(uint160(PAYOUT))))
        );
    }

    function _attestation(bytes32 requestId, bytes32 resultId, bytes32 outputHash, bytes32 worker, bytes32 payout)
        internal
        pure
        returns (bytes memory)
    {
        return
            abi.encodePacked(requestId, resultId, outputHash, worker, payout, uint8(1), uint8(1), uint64(1_800_000_123));
    }

    function _attestationEnvelope(bytes32 requestId, bytes32 resultId) internal returns (bytes memory) {
        return _envelope(
            Envelope.KIND_PROOF_ATTESTATION,
            0,
            bytes32(0),
            _attestation(requestId, resultId, keccak256("hello"), WORKER, bytes32(uint256(uint160(PAYOUT))))
        );
    }

    function _state(bytes32 id) internal view returns (uint256) {
        return uint256(board.taskState(id));
    }

    // --- the builders above follow the vectors' layout ----------------------------------------

    function test_payloadBuildersMatchVectors() public view {
        string memory json = vm.readFile("../../tests/vectors/tasks_v1.json");
        bytes memory result = _resultPayload(
            vm.parseJsonBytes32(json, ".task_results[0].request_id"),
            bytes16("sentiment"),
            vm.parseJsonBytes(json, ".task_results[0].output"),
            vm.parseJsonBytes32(json, ".task_results[0].payout")
        );
        bytes memory vector = vm.parseJsonBytes(json, ".task_results[0].encoded");
        // Same bytes except worker (80..112) and signature (144..208), which the builder fixes.
        for (uint256 i = 0; i < vector.length; i++) {
            if ((i >= 80 && i < 112) || (i >= 144 && i < 208)) continue;
            assertTrue(result[i] == vector[i], string.concat("TASK_RESULT byte ", vm.toString(i)));
        }
        assertEq(result.length, vector.length, "TASK_RESULT length");
        assertEq(
            _attestation(
                vm.parseJsonBytes32(json, ".proof_attestations[0].request_id"),
                vm.parseJsonBytes32(json, ".proof_attestations[0].result_id"),
                vm.parseJsonBytes32(json, ".proof_attestations[0].output_hash"),
                vm.parseJsonBytes32(json, ".proof_attestations[0].worker"),
                vm.parseJsonBytes32(json, ".proof_attestations[0].payout")
            ),
            vm.parseJsonBytes(json, ".proof_attestations[0].encoded"),
            "PROOF_ATTESTATION bytes"
        );
    }

    // --- full flow ---------------------------------------------------------------------------

    function test_requestResultAttestationPayout() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes memory payload = TaskPayloads.encodeRequestInline("echo", uint128(ESCROW), deadline, "hello");
        bytes memory expected = abi.encodePacked(
            uint8(1),
            uint8(1),
            uint64(0),
            DOMAIN,
            bytes32(uint256(uint160(address(board)))),
            REMOTE,
            WORKER_BOARD,
            payload
        );
        vm.expectEmit();
        emit Gateway.MessageSent(keccak256(expected), 0, REMOTE, expected);
        vm.expectEmit();
        emit TaskBoard.TaskRequested(
            keccak256(expected), address(this), REMOTE, WORKER_BOARD, bytes16("echo"), ESCROW, deadline
        );
        bytes32 id = _request(deadline);
        assertEq(id, keccak256(expected), "request id is the TASK_REQUEST envelope's message id");
        assertEq(address(gateway).balance, FEE, "gateway fee forwarded");
        assertEq(address(board).balance, ESCROW, "escrow held");
        assertEq(_state(id), 1, "Open");

        bytes memory result = _resultEnvelope(id);
        bytes32 resultId = keccak256(result);
        vm.expectEmit();
        emit TaskBoard.TaskResultReceived(id, resultId, WORKER, PAYOUT, keccak256("hello"));
        _deliver(result);
        assertEq(_state(id), 2, "ResultReceived");
        (,,,,,,, address payout, bytes32 rid, bytes32 outputHash, bytes32 worker) = board.tasks(id);
        assertEq(payout, PAYOUT, "payout recorded");
        assertEq(rid, resultId, "result id recorded");
        assertEq(outputHash, keccak256("hello"), "output hash recorded");
        assertEq(worker, WORKER, "worker recorded");

        uint256 before = PAYOUT.balance;
        vm.expectEmit();
        emit TaskBoard.TaskCompleted(id, resultId, PAYOUT, ESCROW);
        _deliver(_attestationEnvelope(id, resultId));
        assertEq(PAYOUT.balance - before, ESCROW, "worker paid the escrow");
        assertEq(address(board).balance, 0, "escrow released");
        assertEq(_state(id), 3, "Completed");

        // Attested twice (another committee envelope with the same statement): nothing more.
        _deliverIgnored(_attestationEnvelope(id, resultId), "task already completed or refunded");
        assertEq(PAYOUT.balance - before, ESCROW, "paid once");
    }

    function test_requestByReference() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 inputHash = keccak256("a long document");
        bytes32 id = board.requestTaskByReference{value: FEE + 5}(
            REMOTE, WORKER_BOARD, "http", inputHash, "https://example.org/in/1.txt", deadline
        );
        bytes memory payload =
            TaskPayloads.encodeRequestByReference("http", 5, deadline, inputHash, "https://example.org/in/1.txt");
        bytes memory expected = abi.encodePacked(
            uint8(1),
            uint8(1),
            uint64(0),
            DOMAIN,
            bytes32(uint256(uint160(address(board)))),
            REMOTE,
            WORKER_BOARD,
            payload
        );
        assertEq(id, keccak256(expected), "request id");
        (address requester,,, uint128 escrow, bytes16 executor,,,,,,) = board.tasks(id);
        assertEq(requester, address(this), "requester");
        assertEq(uint256(escrow), 5, "escrow = value - gateway fee");
        assertEq(bytes32(executor), bytes32(bytes16("http")), "executor");
    }

    function test_requestRefusals() public {
        uint64 deadline = uint64(block.timestamp + 600);
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.ValueBelowGatewayFee.selector, FEE - 1, FEE));
        board.requestTask{value: FEE - 1}(REMOTE, WORKER_BOARD, "echo", "x", deadline);
        vm.expectRevert(
            abi.encodeWithSelector(TaskBoard.DeadlineNotInFuture.selector, uint64(block.timestamp), block.timestamp)
        );
        board.requestTask{value: FEE}(REMOTE, WORKER_BOARD, "echo", "x", uint64(block.timestamp));
        vm.expectPartialRevert(TaskPayloads.InvalidExecutorId.selector);
        board.requestTask{value: FEE}(REMOTE, WORKER_BOARD, "two words", "x", deadline);
        vm.expectPartialRevert(TaskPayloads.InvalidURI.selector);
        board.requestTaskByReference{value: FEE}(REMOTE, WORKER_BOARD, "echo", bytes32(0), "ftp://x", deadline);
        vm.expectPartialRevert(TaskPayloads.InputTooLong.selector);
        board.requestTask{value: FEE}(REMOTE, WORKER_BOARD, "echo", new bytes(470), deadline);
        vm.expectRevert(abi.encodeWithSelector(Gateway.SameDomain.selector, DOMAIN));
        board.requestTask{value: FEE}(DOMAIN, WORKER_BOARD, "echo", "x", deadline);
        // A zero max fee is allowed (the protocol allows it): only the gateway fee is paid.
        bytes32 id = board.requestTask{value: FEE}(REMOTE, WORKER_BOARD, "echo", "x", deadline);
        assertEq(_state(id), 1, "free task open");
        assertEq(address(board).balance, 0, "nothing escrowed");
    }

    // --- attestations ------------------------------------------------------------------------

    function test_wrongAttestationNotPaid() public {
        bytes32 id = _request(uint64(block.timestamp + 600));
        bytes32 resultId = _deliver(_resultEnvelope(id));
        bytes32 payout = bytes32(uint256(uint160(PAYOUT)));
        bytes32 oh = keccak256("hello");
        bytes32 other = keccak256("other");
        bytes[5] memory wrong = [
            _attestation(id, other, oh, WORKER, payout),
            _attestation(id, resultId, other, WORKER, payout),
            _attestation(id, resultId, oh, other, payout),
            _attestation(id, resultId, oh, WORKER, bytes32(uint256(0xBAD))),
            _attestation(id, resultId, oh, WORKER, bytes32(uint256(uint160(PAYOUT)) | (uint256(1) << 200)))
        ];
        for (uint256 i = 0; i < wrong.length; i++) {
            _deliverIgnored(
                _envelope(Envelope.KIND_PROOF_ATTESTATION, 0, bytes32(0), wrong[i]),
                "attestation does not match the recorded result"
            );
        }
        // Right statement, wrong author: any chain user can send a kind-3 envelope via a gateway.
        bytes memory good = _attestation(id, resultId, oh, WORKER, payout);
        _deliverIgnored(
            _envelope(Envelope.KIND_PROOF_ATTESTATION, REMOTE, WORKER_BOARD, good),
            "attestation not from the attestation source"
        );
        // Verdict 0 (and anything else the decoder refuses) is malformed.
        bytes memory verdict0 = bytes.concat(good);
        verdict0[161] = 0x00;
        _deliverIgnored(
            _envelope(Envelope.KIND_PROOF_ATTESTATION, 0, bytes32(0), verdict0), "malformed PROOF_ATTESTATION"
        );
        // Unknown request.
        _deliverIgnored(
            _envelope(
                Envelope.KIND_PROOF_ATTESTATION, 0, bytes32(0), _attestation(other, resultId, oh, WORKER, payout)
            ),
            "attestation for an unknown request"
        );
        assertEq(PAYOUT.balance, 0, "nothing paid");
        assertEq(address(board).balance, ESCROW, "escrow still held");
        assertEq(_state(id), 2, "still ResultReceived");

        _deliver(_envelope(Envelope.KIND_PROOF_ATTESTATION, 0, bytes32(0), good));
        assertEq(PAYOUT.balance, ESCROW, "the matching attestation pays");
    }

    function test_attestationBeforeResultIgnored() public {
        bytes32 id = _request(uint64(block.timestamp + 600));
        bytes memory result = _resultEnvelope(id);
        bytes32 resultId = keccak256(result);
        _deliverIgnored(_attestationEnvelope(id, resultId), "attestation before any result");
        assertEq(_state(id), 1, "still Open");
        assertEq(PAYOUT.balance, 0, "nothing paid");
        // The early attestation is spent (delivered, ignored); a later one after the result pays.
        _deliver(result);
        _deliver(_attestationEnvelope(id, resultId));
        assertEq(PAYOUT.balance, ESCROW, "paid on the attestation after the result");
    }

    // --- results -----------------------------------------------------------------------------

    function test_badResultsIgnored() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = _request(deadline);
        bytes32 payout = bytes32(uint256(uint160(PAYOUT)));
        bytes memory good = _resultPayload(id, bytes16("echo"), "hello", payout);

        _deliverIgnored(
            _envelope(Envelope.KIND_TASK_RESULT, REMOTE, bytes32(uint256(0xE71E)), good),
            "result not from the worker board the request was sent to"
        );
        _deliverIgnored(
            _envelope(Envelope.KIND_TASK_RESULT, REMOTE + 1, WORKER_BOARD, good),
            "result not from the worker board the request was sent to"
        );
        _deliverIgnored(
            _envelope(
                Envelope.KIND_TASK_RESULT,
                REMOTE,
                WORKER_BOARD,
                _resultPayload(keccak256("nope"), bytes16("echo"), "x", payout)
            ),
            "result for an unknown request"
        );
        _deliverIgnored(
            _envelope(
                Envelope.KIND_TASK_RESULT, REMOTE, WORKER_BOARD, _resultPayload(id, bytes16("sentiment"), "x", payout)
            ),
            "result names another executor than the request"
        );
        _deliverIgnored(
            _envelope(
                Envelope.KIND_TASK_RESULT,
                REMOTE,
                WORKER_BOARD,
                _resultPayload(id, bytes16("echo"), "x", keccak256("solana key"))
            ),
            "payout is not an EVM address"
        );
        _deliverIgnored(
            _envelope(Envelope.KIND_TASK_RESULT, REMOTE, WORKER_BOARD, bytes.concat(good, hex"00")),
            "malformed TASK_RESULT"
        );
        _deliverIgnored(
            _envelope(Envelope.KIND_TASK_REQUEST, REMOTE, WORKER_BOARD, "anything"), "malformed TASK_REQUEST"
        );
        _deliverIgnored(_envelope(Envelope.KIND_DATA, REMOTE, WORKER_BOARD, ""), "kind not handled by the task board");
        assertEq(_state(id), 1, "still Open");

        _deliver(_envelope(Envelope.KIND_TASK_RESULT, REMOTE, WORKER_BOARD, good));
        assertEq(_state(id), 2, "the good result is recorded");
        // A second result for the same request (another worker): the first stands.
        _deliverIgnored(
            _envelope(
                Envelope.KIND_TASK_RESULT, REMOTE, WORKER_BOARD, _resultPayload(id, bytes16("echo"), "2nd", payout)
            ),
            "request already has a result or is closed"
        );
    }

    function test_lateResultIgnored() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = _request(deadline);
        vm.warp(deadline + 1);
        _deliverIgnored(_resultEnvelope(id), "result after the deadline");
        assertEq(_state(id), 1, "still Open");
    }

    function test_resultAtTheDeadlineAccepted() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = _request(deadline);
        vm.warp(deadline);
        _deliver(_resultEnvelope(id));
        assertEq(_state(id), 2, "ResultReceived");
    }

    // --- refunds -----------------------------------------------------------------------------

    function test_deadlineRefundOnce() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = _request(deadline);
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.DeadlineNotPassed.selector, id, uint256(deadline)));
        board.reclaim(id);
        vm.warp(deadline + 1);
        uint256 before = address(this).balance;
        vm.expectEmit();
        emit TaskBoard.TaskRefunded(id, address(this), ESCROW);
        vm.prank(address(0xCAFE)); // anyone may trigger it; the money goes to the requester
        board.reclaim(id);
        assertEq(address(this).balance - before, ESCROW, "escrow refunded to the requester");
        assertEq(_state(id), 4, "Refunded");

        vm.expectRevert(abi.encodeWithSelector(TaskBoard.TaskNotRefundable.selector, id, TaskBoard.State.Refunded));
        board.reclaim(id);
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.UnknownTask.selector, bytes32(uint256(1))));
        board.reclaim(bytes32(uint256(1)));
        // A result arriving after the refund changes nothing.
        _deliverIgnored(_resultEnvelope(id), "request already has a result or is closed");
        assertEq(address(board).balance, 0, "nothing left");
    }

    function test_reclaimWithResultWaitsForTheGrace() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = _request(deadline);
        bytes32 resultId = _deliver(_resultEnvelope(id));
        vm.warp(deadline + GRACE);
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.DeadlineNotPassed.selector, id, uint256(deadline) + GRACE));
        board.reclaim(id);
        vm.warp(deadline + GRACE + 1);
        board.reclaim(id);
        assertEq(_state(id), 4, "Refunded");
        _deliverIgnored(_attestationEnvelope(id, resultId), "task already completed or refunded");
        assertEq(PAYOUT.balance, 0, "attestation after the refund pays nothing");
    }

    function test_reclaimAfterCompletionRefused() public {
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = _request(deadline);
        _deliver(_attestationEnvelope(id, _deliver(_resultEnvelope(id))));
        assertEq(_state(id), 3, "Completed");
        vm.warp(deadline + GRACE + 1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.TaskNotRefundable.selector, id, TaskBoard.State.Completed));
        board.reclaim(id);
        assertEq(PAYOUT.balance, ESCROW, "paid once, not refunded");
    }

    // --- access and re-entrancy --------------------------------------------------------------

    function test_onlyTheGatewayCallsHandleMessage() public {
        bytes32 id = _request(uint64(block.timestamp + 600));
        bytes memory payload = _resultPayload(id, bytes16("echo"), "hello", bytes32(uint256(uint160(PAYOUT))));
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.NotGateway.selector, address(this)));
        board.handleMessage(keccak256("m"), REMOTE, WORKER_BOARD, Envelope.KIND_TASK_RESULT, 0, payload);
        assertEq(_state(id), 1, "still Open");
        vm.prank(address(gateway));
        board.handleMessage(keccak256("m"), REMOTE, WORKER_BOARD, Envelope.KIND_TASK_RESULT, 0, payload);
        assertEq(_state(id), 2, "the gateway's call is handled");
    }

    function test_reentrantPayoutDoesNotDoublePay() public {
        // The worker is also the requester, and the attestation lands after deadline + grace
        // (nobody reclaimed yet): its receive re-enters reclaim and withdraw while being paid.
        GreedyReceiver greedy = new GreedyReceiver(board);
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = greedy.request{value: FEE + ESCROW}(REMOTE, WORKER_BOARD, deadline);
        // A second task keeps money in the board that a double payment could take.
        _request(deadline);
        bytes32 payout = bytes32(uint256(uint160(address(greedy))));
        bytes32 resultId = _deliver(
            _envelope(
                Envelope.KIND_TASK_RESULT, REMOTE, WORKER_BOARD, _resultPayload(id, bytes16("echo"), "hello", payout)
            )
        );
        vm.warp(deadline + GRACE + 1);
        _deliver(
            _envelope(
                Envelope.KIND_PROOF_ATTESTATION,
                0,
                bytes32(0),
                _attestation(id, resultId, keccak256("hello"), WORKER, payout)
            )
        );
        assertEq(address(greedy).balance, ESCROW, "paid exactly once");
        assertEq(greedy.received() - 1, 1, "one transfer");
        assertEq(greedy.reentrySucceeded() - 1, 0, "re-entrant withdraw/reclaim refused");
        assertEq(_state(id), 3, "Completed");
        assertEq(address(board).balance, ESCROW, "the other task's escrow untouched");
    }

    function test_refusedPayoutIsCreditedAndWithdrawnOnce() public {
        GreedyReceiver greedy = new GreedyReceiver(board);
        bytes32 id = _request(uint64(block.timestamp + 600));
        _request(uint64(block.timestamp + 600));
        greedy.arm(id, true); // the transfer reverts: the handler credits instead of failing
        bytes32 payout = bytes32(uint256(uint160(address(greedy))));
        bytes32 resultId = _deliver(
            _envelope(
                Envelope.KIND_TASK_RESULT, REMOTE, WORKER_BOARD, _resultPayload(id, bytes16("echo"), "hello", payout)
            )
        );
        vm.expectEmit();
        emit TaskBoard.PayoutCredited(address(greedy), ESCROW);
        _deliver(
            _envelope(
                Envelope.KIND_PROOF_ATTESTATION,
                0,
                bytes32(0),
                _attestation(id, resultId, keccak256("hello"), WORKER, payout)
            )
        );
        assertEq(_state(id), 3, "Completed even though the transfer was refused");
        assertEq(board.credits(address(greedy)), ESCROW, "credited");

        greedy.arm(id, false);
        board.withdraw(address(greedy)); // its receive re-enters withdraw and reclaim
        assertEq(address(greedy).balance, ESCROW, "withdrawn exactly once");
        assertEq(greedy.reentrySucceeded() - 1, 0, "re-entrant calls refused");
        assertEq(board.credits(address(greedy)), 0, "credit spent");
        vm.expectRevert(abi.encodeWithSelector(TaskBoard.NothingToWithdraw.selector, address(greedy)));
        board.withdraw(address(greedy));
        assertEq(address(board).balance, ESCROW, "the other task's escrow untouched");
    }

    function test_reentrantRequesterRefundedOnce() public {
        GreedyReceiver greedy = new GreedyReceiver(board);
        vmx.deal(address(greedy), 0);
        uint64 deadline = uint64(block.timestamp + 600);
        bytes32 id = greedy.request{value: FEE + ESCROW}(REMOTE, WORKER_BOARD, deadline);
        _request(deadline);
        vm.warp(deadline + 1);
        board.reclaim(id); // greedy's receive re-enters reclaim and withdraw
        assertEq(address(greedy).balance, ESCROW, "refunded exactly once");
        assertEq(greedy.reentrySucceeded() - 1, 0, "re-entrant calls refused");
        assertEq(address(board).balance, ESCROW, "the other task's escrow untouched");
    }
}
