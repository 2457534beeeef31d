// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {Envelope} from "../src/lib/Envelope.sol";
import {TaskPayloads} from "../src/lib/TaskPayloads.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {Gateway} from "../src/Gateway.sol";
import {TaskBoardV2} from "../src/TaskBoardV2.sol";

interface VmV2Extra {
    function deal(address account, uint256 newBalance) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
}

/// Attack 4: a requester contract reclaims an expired task and, in the refund callback, delivers
/// another task's TASK_RESULT through the gateway (in v1 the shared lock failed that delivery).
contract ReclaimingRequester {
    TaskBoardV2 internal immutable board;
    Gateway internal immutable gateway;
    bytes internal _envelope;
    bytes internal _signature;

    constructor(TaskBoardV2 board_, Gateway gateway_) {
        board = board_;
        gateway = gateway_;
    }

    function request(bytes32 workerBoard, uint32 dst, uint128 maxFee, uint64 deadline, TaskPayloads.AuctionTerms memory t)
        external
        payable
        returns (bytes32)
    {
        return board.requestTask{value: msg.value}(dst, workerBoard, "echo", "tiny", maxFee, deadline, t);
    }

    function arm(bytes calldata envelope, bytes calldata signature) external {
        _envelope = envelope;
        _signature = signature;
    }

    function reclaim(bytes32 requestId) external {
        board.reclaim(requestId);
    }

    receive() external payable {
        if (_envelope.length == 0) return;
        bytes memory envelope = _envelope;
        delete _envelope;
        gateway.deliver(envelope, 1, _signature);
    }
}

/// A payout that refuses every transfer: it is credited and withdraws later.
contract RefusingPayout {
    bool public open;

    function setOpen(bool open_) external {
        open = open_;
    }

    receive() external payable {
        require(open, "closed");
    }
}

/// Task protocol v2 across two chains simulated side by side: chain A (the requester's board
/// behind gateway A) and chain B (the serving board behind gateway B), both trusting one committee
/// (a one-member key; σ = sk·H(digest) with the ecMul precompile). Requests, results and the
/// committee's verdicts travel as the real envelopes, delivered through the real gateways.
/// The test_attackN_* tests perform the attacks of issue 12 and show they now do no harm.
contract TaskBoardV2Test is Test {
    VmV2Extra internal constant vmx = VmV2Extra(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint32 internal constant DOMAIN_A = 31337;
    uint32 internal constant DOMAIN_B = 424242;
    uint32 internal constant EPOCH = 1;
    uint256 internal constant FEE = 0.001 ether;
    uint128 internal constant MAX_FEE = 1 ether;
    uint128 internal constant BOND = 0.1 ether;
    uint64 internal constant GRACE = 1800;
    uint32 internal constant WINDOW = 100;
    uint16 internal constant START_BPS = 5000;
    uint32 internal constant CLAIM_WINDOW = 60;
    uint64 internal constant T0 = 1_800_000_000;
    address internal constant OWNER = address(0x0A11CE);
    address internal constant REFUND = address(0x5EF0D); // the requester's account on chain B
    address internal constant WORKER1 = address(0x1111);
    address internal constant WORKER2 = address(0x2222);
    address internal constant SNIPER = address(0x5111);
    address internal constant PAYOUT1 = address(0xA1);
    address internal constant PAYOUT2 = address(0xA2);
    bytes32 internal constant WORKER_KEY = keccak256("worker ed25519 key");
    uint256 internal constant SK = 0x0b689e06a54cf1b5a8cd88281c8643c39ebe0fe8352f75d18b097fc8cbef4162;
    bytes internal constant GROUP_KEY =
        hex"2e6ac04722c6fb4b3e90febffff400d9e0d627730519ef3b221c1572c4951c9325997c73e9319510496a71539159c4d603c78e9dcc1e35ad6d0abfe652bbea8f0b708682657e718abc26ee4f0a1f1e7f7b085572e32ff5dad965a2443a77cb2d04cfb73512515778963e0477f0bc06edc4c5b59e3836b8667255b9bc7ebee0f5";

    CommitteeVerifier internal verifierA;
    CommitteeVerifier internal verifierB;
    Gateway internal gwA;
    Gateway internal gwB;
    TaskBoardV2 internal boardA; // requester side
    TaskBoardV2 internal boardB; // serving side

    // The task in flight (kept in storage: fewer stack slots than locals).
    bytes32 internal requestId;
    bytes internal requestEnvelope;
    bytes32 internal resultId;
    bytes internal resultEnvelope;
    bytes internal resultPayload;

    function setUp() public {
        vm.warp(T0);
        verifierA = new CommitteeVerifier(DOMAIN_A, EPOCH, 1, 1, GROUP_KEY);
        verifierB = new CommitteeVerifier(DOMAIN_B, EPOCH, 1, 1, GROUP_KEY);
        gwA = new Gateway(DOMAIN_A, address(verifierA), FEE, OWNER);
        gwB = new Gateway(DOMAIN_B, address(verifierB), FEE, OWNER);
        boardA = new TaskBoardV2(address(gwA), Envelope.COMMITTEE_DOMAIN, bytes32(0), GRACE);
        boardB = new TaskBoardV2(address(gwB), Envelope.COMMITTEE_DOMAIN, bytes32(0), GRACE);
        // Task boards pay the gateway's flat, delayed fee (Gateway: flatFeeSender), as deployed.
        vm.prank(OWNER);
        gwA.setFlatFeeSender(address(boardA), true);
        vm.prank(OWNER);
        gwB.setFlatFeeSender(address(boardB), true);
        vmx.deal(address(this), 100 ether);
        vmx.deal(WORKER1, 10 ether);
        vmx.deal(WORKER2, 10 ether);
        vmx.deal(SNIPER, 10 ether);
    }

    receive() external payable {}

    // --- helpers -----------------------------------------------------------------------------

    function _terms() internal pure returns (TaskPayloads.AuctionTerms memory) {
        return TaskPayloads.AuctionTerms(WINDOW, START_BPS, CLAIM_WINDOW, BOND, bytes32(uint256(uint160(REFUND))));
    }

    function _b32(address a) internal pure returns (bytes32) {
        return bytes32(uint256(uint160(a)));
    }

    function _sign(bytes memory envelope) internal view returns (bytes memory) {
        (uint256 x, uint256 y,) = verifierA.hashToG1(Envelope.digest(EPOCH, keccak256(envelope)));
        (bool ok, bytes memory out) = address(7).staticcall(abi.encode(x, y, SK));
        assertTrue(ok && out.length == 64, "ecMul precompile");
        return out;
    }

    /// Delivers on the envelope's destination chain and requires the handler to have succeeded.
    function _deliver(bytes memory envelope) internal {
        Gateway gw = Envelope.decode(envelope).dstDomain == DOMAIN_A ? gwA : gwB;
        gw.deliver(envelope, EPOCH, _sign(envelope));
        assertEq(gw.deliveryStatus(keccak256(envelope)), 1, "the board must never fail a delivery");
    }

    /// requestTask on chain A, and the envelope gateway A emitted for it.
    function _request(uint64 deadline) internal returns (bytes32) {
        uint64 nonce = gwA.nextNonce();
        requestId = boardA.requestTask{value: FEE + MAX_FEE}(
            DOMAIN_B, _b32(address(boardB)), "echo", "hello", MAX_FEE, deadline, _terms()
        );
        bytes memory payload = TaskPayloads.encodeRequestV2Inline("echo", MAX_FEE, deadline, _terms(), "hello");
        requestEnvelope = abi.encodePacked(
            Envelope.VERSION,
            Envelope.KIND_TASK_REQUEST,
            nonce,
            DOMAIN_A,
            _b32(address(boardA)),
            DOMAIN_B,
            _b32(address(boardB)),
            payload
        );
        assertEq(keccak256(requestEnvelope), requestId, "request id = message id of the emitted envelope");
        return requestId;
    }

    /// A request from A delivered to B (the auction starts now on B's clock).
    function _requestDelivered(uint64 deadline) internal returns (bytes32 id) {
        id = _request(deadline);
        _deliver(requestEnvelope);
    }

    function _claim(address worker, address payout) internal returns (uint128 price) {
        vm.prank(worker);
        (price,) = boardB.claim{value: BOND}(requestId, _b32(payout));
    }

    function _resultPayloadFor(address claimant, address payout, uint128 price, bytes memory output)
        internal
        view
        returns (bytes memory)
    {
        return bytes.concat(
            abi.encodePacked(requestId, TaskPayloads.PAYLOAD_V2, bytes16("echo"), keccak256(output), WORKER_KEY),
            abi.encodePacked(_b32(claimant), _b32(payout), price, new bytes(64)),
            abi.encodePacked(uint8(0), uint16(0), uint8(0), uint16(output.length), output)
        );
    }

    /// submitResult on B by `claimant`; keeps the payload, result id and the emitted envelope.
    function _submit(address claimant, address payout, uint128 price, bytes memory output) internal {
        resultPayload = _resultPayloadFor(claimant, payout, price, output);
        uint64 nonce = gwB.nextNonce();
        vm.prank(claimant);
        resultId = boardB.submitResult{value: FEE}(resultPayload);
        resultEnvelope = abi.encodePacked(
            Envelope.VERSION,
            Envelope.KIND_TASK_RESULT,
            nonce,
            DOMAIN_B,
            _b32(address(boardB)),
            DOMAIN_A,
            _b32(address(boardA)),
            resultPayload
        );
        assertEq(keccak256(resultEnvelope), resultId, "result id = message id of the emitted envelope");
    }

    /// The committee's verdict on the result in flight, as the envelope for one destination.
    function _verdict(uint32 dstDomain, uint8 verdict, uint8 reason, uint64 submittedAt)
        internal
        view
        returns (bytes memory)
    {
        TaskPayloads.TaskResultV2 memory r = TaskPayloads.decodeResultV2(resultPayload);
        bytes memory payload = bytes.concat(
            abi.encodePacked(r.requestId, TaskPayloads.PAYLOAD_V2, resultId, r.outputHash, r.worker, r.claimant),
            abi.encodePacked(r.payout, r.price, uint8(1), verdict, reason, submittedAt)
        );
        address dst = dstDomain == DOMAIN_A ? address(boardA) : address(boardB);
        return abi.encodePacked(
            Envelope.VERSION,
            Envelope.KIND_PROOF_ATTESTATION,
            uint64(0),
            Envelope.COMMITTEE_DOMAIN,
            bytes32(0),
            dstDomain,
            _b32(dst),
            payload
        );
    }

    function _taskState(bytes32 id) internal view returns (uint256) {
        return uint256(boardA.taskOf(id).state);
    }

    function _serveState(bytes32 id) internal view returns (uint256) {
        return uint256(boardB.servingOf(id).state);
    }

    // --- the whole flow ----------------------------------------------------------------------

    /// Three workers, three prices: the first to claim once the auction reaches its price wins and
    /// is paid exactly that price; the requester gets the rest; the bond comes back.
    function test_cheapestClaimServesPaysClaimPriceRefundsRest() public {
        _requestDelivered(T0 + 600);
        uint256 requesterBefore = address(this).balance;
        assertEq(boardB.currentPrice(requestId), MAX_FEE / 2, "auction starts at start_bps");
        vm.warp(T0 + 20); // price 0.6 ether: WORKER1 (min 0.6) claims; WORKER2 (min 0.8) would wait
        uint128 price = _claim(WORKER1, PAYOUT1);
        assertEq(price, 0.6 ether, "price rose linearly on B's clock");
        vm.prank(WORKER2);
        vm.expectRevert(
            abi.encodeWithSelector(TaskBoardV2.AlreadyClaimed.selector, requestId, WORKER1, uint64(T0 + 80))
        );
        boardB.claim{value: BOND}(requestId, _b32(PAYOUT2));
        _submit(WORKER1, PAYOUT1, price, "hello");
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0 + 20));
        _deliver(_verdict(DOMAIN_B, 1, 0, T0 + 20));
        assertEq(PAYOUT1.balance, 0.6 ether, "payout gets the claim price");
        assertEq(address(this).balance - requesterBefore, 0.4 ether, "requester refunded the rest");
        assertEq(WORKER1.balance, 10 ether - FEE, "bond back; only the gateway fee spent");
        assertEq(_taskState(requestId), uint256(TaskBoardV2.TaskState.Completed), "completed");
        assertEq(_serveState(requestId), uint256(TaskBoardV2.ServeState.Closed), "closed on B");
    }

    // --- attack 1: attestation before its result ---------------------------------------------

    function test_attack1_earlyVerdictIsKeptAndPaysWhenResultArrives() public {
        _requestDelivered(T0 + 600);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        // Anyone delivers the (public) verdict before the result: kept, not consumed for nothing.
        vm.expectEmit();
        emit TaskBoardV2.TaskVerdictReceived(requestId, resultId, 1, 0, false);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0));
        assertEq(_taskState(requestId), uint256(TaskBoardV2.TaskState.Open), "not paid without the result");
        assertEq(boardA.verdictOf(resultId).verdict, 1, "verdict kept");
        // The result arrives: the kept verdict settles it.
        vm.expectEmit();
        emit TaskBoardV2.TaskCompleted(requestId, resultId, PAYOUT1, price, MAX_FEE - price);
        _deliver(resultEnvelope);
        assertEq(PAYOUT1.balance, price, "paid");
    }

    // --- attack 3: sniping -------------------------------------------------------------------

    function test_attack3_copiedResultCannotBeSubmittedOrPaid() public {
        _requestDelivered(T0 + 600);
        uint128 price = _claim(WORKER1, PAYOUT1);
        bytes memory honest = _resultPayloadFor(WORKER1, PAYOUT1, price, "hello");
        // The sniper copies the pending payload as is …
        vm.prank(SNIPER);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.NotClaimant.selector, requestId, SNIPER, WORKER1));
        boardB.submitResult{value: FEE}(honest);
        // … or with its own account and payout …
        vm.prank(SNIPER);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.NotClaimant.selector, requestId, SNIPER, WORKER1));
        boardB.submitResult{value: FEE}(_resultPayloadFor(SNIPER, SNIPER, price, "hello"));
        // … or tries to claim over the claimant.
        vm.prank(SNIPER);
        vm.expectRevert(
            abi.encodeWithSelector(TaskBoardV2.AlreadyClaimed.selector, requestId, WORKER1, uint64(T0 + 60))
        );
        boardB.claim{value: BOND}(requestId, _b32(SNIPER));
        // Even the claimant cannot redirect the pay: the claim fixed payout and price.
        vm.prank(WORKER1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.ClaimMismatch.selector, requestId, "payout"));
        boardB.submitResult{value: FEE}(_resultPayloadFor(WORKER1, SNIPER, price, "hello"));
        vm.prank(WORKER1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.ClaimMismatch.selector, requestId, "price"));
        boardB.submitResult{value: FEE}(_resultPayloadFor(WORKER1, PAYOUT1, MAX_FEE, "hello"));
        _submit(WORKER1, PAYOUT1, price, "hello");
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0));
        assertEq(PAYOUT1.balance, price, "the claimant is paid");
        assertEq(SNIPER.balance, 10 ether, "the sniper got nothing and lost nothing but gas");
    }

    // --- attack 4: reentrant reclaim ---------------------------------------------------------

    function test_attack4_deliveryFromReclaimCallbackIsHandledNotFailed() public {
        ReclaimingRequester attacker = new ReclaimingRequester(boardA, gwA);
        vmx.deal(address(attacker), 1 ether);
        bytes32 tiny =
            attacker.request{value: FEE + 1}(_b32(address(boardB)), DOMAIN_B, 1, T0 + 10, _terms());
        // An honest task whose result is on its way.
        _requestDelivered(T0 + 600);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        attacker.arm(resultEnvelope, _sign(resultEnvelope));
        vm.warp(T0 + 10 + GRACE + 1);
        attacker.reclaim(tiny); // the refund callback delivers the honest result
        assertEq(_taskState(tiny), uint256(TaskBoardV2.TaskState.Refunded), "tiny task refunded");
        assertEq(gwA.deliveryStatus(resultId), 1, "delivered from the callback and handled, not failed");
        assertTrue(boardA.resultOf(resultId).received, "result recorded");
        _deliver(_verdict(DOMAIN_A, 1, 0, T0));
        assertEq(PAYOUT1.balance, price, "the honest worker is paid");
    }

    // --- attack 5: on time on B, late on A -----------------------------------------------------

    function test_attack5_onTimeResultDeliveredLateIsPaid() public {
        uint64 deadline = T0 + 600;
        _requestDelivered(deadline);
        vm.warp(deadline - 30);
        uint128 price = _claim(WORKER1, PAYOUT1);
        vm.warp(deadline); // submitted at the deadline on B's clock
        _submit(WORKER1, PAYOUT1, price, "hello");
        vm.warp(deadline + GRACE - 100); // finality and relaying took long
        vm.expectRevert(
            abi.encodeWithSelector(TaskBoardV2.DeadlineNotPassed.selector, requestId, uint256(deadline) + GRACE)
        );
        boardA.reclaim(requestId);
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, deadline));
        assertEq(PAYOUT1.balance, price, "paid: on time by the serving chain's clock");
    }

    function test_verdictOnAResultAfterTheDeadlineDoesNotPay() public {
        uint64 deadline = T0 + 600;
        _requestDelivered(deadline);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        _deliver(resultEnvelope);
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(resultId, "result submitted after the deadline");
        _deliver(_verdict(DOMAIN_A, 1, 0, deadline + 1));
        assertEq(_taskState(requestId), uint256(TaskBoardV2.TaskState.Open), "not paid");
    }

    // --- attack 8: bogus first result --------------------------------------------------------

    function test_attack8_bogusResultForfeitsBondReopensAndHonestWorkerIsPaid() public {
        _requestDelivered(T0 + 600);
        uint128 bogusPrice = _claim(SNIPER, SNIPER);
        _submit(SNIPER, SNIPER, bogusPrice, "garbage");
        bytes32 bogusId = resultId;
        _deliver(resultEnvelope);
        // The committee refuses it (re-execution gives other bytes), to both boards.
        vm.expectEmit();
        emit TaskBoardV2.TaskResultRefused(requestId, bogusId, 4);
        _deliver(_verdict(DOMAIN_A, 2, 4, T0));
        vm.expectEmit();
        emit TaskBoardV2.BondForfeited(requestId, bogusId, SNIPER, REFUND, BOND);
        _deliver(_verdict(DOMAIN_B, 2, 4, T0));
        assertEq(REFUND.balance, BOND, "the bond goes to the requester's refund address on B");
        assertEq(_serveState(requestId), uint256(TaskBoardV2.ServeState.Open), "re-opened");
        assertTrue(boardA.resultOf(bogusId).refused, "bogus result dropped on A");
        // An honest worker claims and completes.
        vm.warp(T0 + 50);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0 + 50));
        _deliver(_verdict(DOMAIN_B, 1, 0, T0 + 50));
        assertEq(PAYOUT1.balance, price, "honest worker paid its claim price");
        assertEq(SNIPER.balance, 10 ether - BOND - FEE, "the bogus claimant lost its bond");
        assertEq(WORKER1.balance, 10 ether - FEE, "honest bond returned");
    }

    // --- a claimant that never answers --------------------------------------------------------

    function test_expiredClaimForfeitsBondAndAnotherWorkerCompletes() public {
        _requestDelivered(T0 + 600);
        _claim(WORKER2, PAYOUT2);
        vm.warp(T0 + CLAIM_WINDOW + 1);
        // The next claim forfeits the expired one first.
        vm.expectEmit();
        emit TaskBoardV2.ClaimExpired(requestId, WORKER2, REFUND, BOND);
        uint128 price = _claim(WORKER1, PAYOUT1);
        assertEq(REFUND.balance, BOND, "expired bond forfeited to the refund address");
        _submit(WORKER1, PAYOUT1, price, "hello");
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0 + CLAIM_WINDOW + 1));
        assertEq(PAYOUT1.balance, price, "second worker paid");
        assertEq(WORKER2.balance, 10 ether - BOND, "silent claimant lost its bond");
    }

    function test_expireClaim() public {
        _requestDelivered(T0 + 600);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.NotClaimed.selector, requestId));
        boardB.expireClaim(requestId);
        _claim(WORKER2, PAYOUT2);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.ClaimNotExpired.selector, requestId, uint64(T0 + 60)));
        boardB.expireClaim(requestId);
        vm.warp(T0 + 61);
        boardB.expireClaim(requestId);
        assertEq(REFUND.balance, BOND, "forfeited");
        assertEq(_serveState(requestId), uint256(TaskBoardV2.ServeState.Open), "open again");
    }

    // --- attack 9: the gateway owner raises the fee --------------------------------------------

    function test_attack9_feeRaiseNeverShrinksEscrowNorStrandsAClaimant() public {
        _requestDelivered(T0 + 3 days);
        uint128 price = _claim(WORKER1, PAYOUT1);
        // Both owners announce a 100× fee.
        vm.prank(OWNER);
        gwA.setFee(100 * FEE);
        vm.prank(OWNER);
        gwB.setFee(100 * FEE);
        // The claimant still submits at the fee it claimed under (the increase waits a day).
        _submit(WORKER1, PAYOUT1, price, "hello");
        // Once the increase applies, a request signed for the old fee reverts instead of paying
        // the gateway out of the escrow.
        vm.warp(T0 + 1 days);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.GatewayFeeAboveLimit.selector, 100 * FEE, FEE));
        boardA.requestTask{value: FEE + MAX_FEE}(
            DOMAIN_B, _b32(address(boardB)), "echo", "x", MAX_FEE, T0 + 2 days, _terms()
        );
        assertEq(boardA.taskOf(requestId).maxFee, MAX_FEE, "pending escrow untouched");
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0));
        assertEq(PAYOUT1.balance, price, "paid in full");
    }

    // --- refusals: requester side -------------------------------------------------------------

    function test_requestEscrowsExactlyMaxFee() public {
        uint256 gwBefore = address(gwA).balance;
        vm.expectEmit(false, true, true, false);
        emit TaskBoardV2.TaskRequested(bytes32(0), address(this), DOMAIN_B, bytes32(0), 0, 0, 0);
        bytes32 id = boardA.requestTask{value: 3 * FEE + MAX_FEE}(
            DOMAIN_B, _b32(address(boardB)), "echo", "hello", MAX_FEE, T0 + 600, _terms()
        );
        assertEq(boardA.taskOf(id).maxFee, MAX_FEE, "escrow is maxFee");
        assertEq(address(boardA).balance, MAX_FEE, "board holds the escrow only");
        assertEq(address(gwA).balance - gwBefore, 3 * FEE, "the rest is the gateway fee the caller chose");
        bytes32 ref = boardA.requestTaskByReference{value: FEE}(
            DOMAIN_B, _b32(address(boardB)), "echo", keccak256("x"), "https://a.example/x", 0, T0 + 600, _terms()
        );
        assertEq(_taskState(ref), uint256(TaskBoardV2.TaskState.Open), "by reference");
    }

    function test_requestRefusals() public {
        bytes32 wb = _b32(address(boardB));
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.DeadlineNotInFuture.selector, T0, T0));
        boardA.requestTask{value: FEE + MAX_FEE}(DOMAIN_B, wb, "echo", "x", MAX_FEE, T0, _terms());
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.GatewayFeeAboveLimit.selector, FEE, FEE - 1));
        boardA.requestTask{value: FEE - 1 + MAX_FEE}(DOMAIN_B, wb, "echo", "x", MAX_FEE, T0 + 1, _terms());
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.GatewayFeeAboveLimit.selector, FEE, 0));
        boardA.requestTask{value: MAX_FEE - 1}(DOMAIN_B, wb, "echo", "x", MAX_FEE, T0 + 1, _terms());
        TaskPayloads.AuctionTerms memory bad = _terms();
        bad.claimWindow = 0;
        vm.expectPartialRevert(TaskPayloads.InvalidAuctionTerms.selector);
        boardA.requestTask{value: FEE + MAX_FEE}(DOMAIN_B, wb, "echo", "x", MAX_FEE, T0 + 1, bad);
        vm.expectPartialRevert(TaskPayloads.InputTooLong.selector);
        boardA.requestTask{value: FEE}(DOMAIN_B, wb, "echo", new bytes(411), 0, T0 + 1, _terms());
    }

    function test_reclaimOnlyAfterDeadlinePlusGraceAndOnce() public {
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.UnknownTask.selector, bytes32(0)));
        boardA.reclaim(bytes32(0));
        bytes32 id = _request(T0 + 600);
        vm.warp(T0 + 600 + GRACE);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.DeadlineNotPassed.selector, id, uint256(T0 + 600 + GRACE)));
        boardA.reclaim(id);
        vm.warp(T0 + 600 + GRACE + 1);
        uint256 before = address(this).balance;
        boardA.reclaim(id);
        assertEq(address(this).balance - before, MAX_FEE, "escrow back");
        vm.expectRevert(
            abi.encodeWithSelector(TaskBoardV2.TaskNotRefundable.selector, id, TaskBoardV2.TaskState.Refunded)
        );
        boardA.reclaim(id);
    }

    function test_lateVerdictAfterReclaimIsIgnored() public {
        _requestDelivered(T0 + 600);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        vm.warp(T0 + 600 + GRACE + 1);
        boardA.reclaim(requestId);
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(resultId, "task already completed or refunded");
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0));
        assertEq(PAYOUT1.balance, 0, "nothing paid twice");
    }

    function test_requesterSideIgnoresWhatItMustNotApply() public {
        _requestDelivered(T0 + 600);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        // A verdict not from the committee domain.
        bytes memory forged = _verdict(DOMAIN_A, 1, 0, T0);
        forged[14] = 0x01; // src_domain 0x01000000
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(keccak256(forged), "verdict not from the attestation source");
        _deliver(forged);
        // A result from another board than the one the request went to.
        bytes memory other = resultEnvelope;
        other[45] = 0xEE; // last byte of src_sender
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(keccak256(other), "result not from the worker board the request was sent to");
        _deliver(other);
        // A malformed result, a verdict on an unknown request, a DATA message.
        bytes memory malformed = bytes.concat(resultEnvelope, hex"00");
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(keccak256(malformed), "malformed TASK_RESULT v2");
        _deliver(malformed);
        bytes memory stray = _verdict(DOMAIN_A, 1, 0, T0);
        stray[Envelope.HEADER_LEN] ^= 0xff; // the payload's request_id: nobody asked for it
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(keccak256(stray), "verdict for an unknown request");
        _deliver(stray);
        // The honest pair still settles.
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0));
        assertEq(PAYOUT1.balance, price, "paid");
    }

    function test_refusedPayoutIsCreditedAndWithdrawn() public {
        RefusingPayout payout = new RefusingPayout();
        _requestDelivered(T0 + 600);
        uint128 price = _claim(WORKER1, address(payout));
        _submit(WORKER1, address(payout), price, "hello");
        _deliver(resultEnvelope);
        _deliver(_verdict(DOMAIN_A, 1, 0, T0));
        assertEq(boardA.credits(address(payout)), price, "credited, delivery not failed");
        payout.setOpen(true);
        boardA.withdraw(address(payout));
        assertEq(address(payout).balance, price, "withdrawn");
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.NothingToWithdraw.selector, address(payout)));
        boardA.withdraw(address(payout));
    }

    function test_onlyTheGatewayCallsHandleMessage() public {
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.NotGateway.selector, address(this)));
        boardA.handleMessage(bytes32(0), 0, bytes32(0), 3, 0, "");
    }

    // --- refusals: serving side ---------------------------------------------------------------

    function test_claimRefusals() public {
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.UnknownRequest.selector, bytes32(0)));
        boardB.claim{value: BOND}(bytes32(0), _b32(PAYOUT1));
        _requestDelivered(T0 + 600);
        vm.prank(WORKER1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.WrongBond.selector, BOND - 1, BOND));
        boardB.claim{value: BOND - 1}(requestId, _b32(PAYOUT1));
        vm.prank(WORKER1);
        vm.expectRevert(TaskBoardV2.ZeroPayout.selector);
        boardB.claim{value: BOND}(requestId, bytes32(0));
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        vm.prank(WORKER2);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.ResultPending.selector, requestId, resultId));
        boardB.claim{value: BOND}(requestId, _b32(PAYOUT2));
        _deliver(_verdict(DOMAIN_B, 1, 0, T0));
        vm.prank(WORKER2);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.RequestClosed.selector, requestId));
        boardB.claim{value: BOND}(requestId, _b32(PAYOUT2));
        vm.warp(T0 + 601);
        vm.prank(WORKER2);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.RequestExpired.selector, requestId, T0 + 600, T0 + 601));
        boardB.claim{value: BOND}(requestId, _b32(PAYOUT2));
    }

    function test_claimDeadlineIsCappedAtTheTaskDeadline() public {
        _requestDelivered(T0 + 600);
        vm.warp(T0 + 590);
        vm.prank(WORKER1);
        (uint128 price, uint64 claimDeadline) = boardB.claim{value: BOND}(requestId, _b32(PAYOUT1));
        assertEq(claimDeadline, T0 + 600, "capped");
        assertEq(price, MAX_FEE, "auction over: max_fee");
    }

    function test_submitRefusals() public {
        _requestDelivered(T0 + 600);
        bytes memory early = _resultPayloadFor(WORKER1, PAYOUT1, 0, "hello");
        vm.prank(WORKER1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.NotClaimed.selector, requestId));
        boardB.submitResult{value: FEE}(early);
        uint128 price = _claim(WORKER1, PAYOUT1);
        vm.prank(WORKER1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.ClaimMismatch.selector, requestId, "claimant"));
        boardB.submitResult{value: FEE}(_resultPayloadFor(WORKER2, PAYOUT1, price, "hello"));
        bytes memory wrongExecutor = _resultPayloadFor(WORKER1, PAYOUT1, price, "hello");
        wrongExecutor[33] = "f"; // "fcho"
        vm.prank(WORKER1);
        vm.expectPartialRevert(TaskBoardV2.ExecutorMismatch.selector);
        boardB.submitResult{value: FEE}(wrongExecutor);
        vm.prank(WORKER1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.ValueBelowGatewayFee.selector, FEE - 1, FEE));
        boardB.submitResult{value: FEE - 1}(_resultPayloadFor(WORKER1, PAYOUT1, price, "hello"));
        vm.prank(WORKER1);
        vm.expectPartialRevert(TaskPayloads.UnsupportedPayloadVersion.selector);
        boardB.submitResult{value: FEE}(bytes.concat(bytes32(0), hex"01", new bytes(300)));
        bytes32 unknown = requestId;
        requestId = keccak256("other");
        bytes memory stray = _resultPayloadFor(WORKER1, PAYOUT1, price, "hello");
        requestId = unknown;
        vm.prank(WORKER1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.UnknownRequest.selector, keccak256("other")));
        boardB.submitResult{value: FEE}(stray);
        vm.warp(T0 + CLAIM_WINDOW + 1);
        vm.prank(WORKER1);
        vm.expectRevert(
            abi.encodeWithSelector(TaskBoardV2.ClaimDeadlinePassed.selector, requestId, T0 + 60, T0 + 61)
        );
        boardB.submitResult{value: FEE}(_resultPayloadFor(WORKER1, PAYOUT1, price, "hello"));
        vm.warp(T0);
        _submit(WORKER1, PAYOUT1, price, "hello");
        vm.prank(WORKER1);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.ResultAlreadySubmitted.selector, requestId));
        boardB.submitResult{value: FEE}(resultPayload);
    }

    function test_servingSideIgnoresVerdictsNotOnThePendingResult() public {
        _requestDelivered(T0 + 600);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        bytes32 real = resultId;
        resultId = keccak256("another result");
        bytes memory wrong = _verdict(DOMAIN_B, 2, 4, T0);
        resultId = real;
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(keccak256(wrong), "verdict is not on the result waiting for one");
        _deliver(wrong);
        assertEq(_serveState(requestId), uint256(TaskBoardV2.ServeState.Answered), "still waiting");
    }

    function test_refusalAfterTheDeadlineClosesInsteadOfReopening() public {
        _requestDelivered(T0 + 600);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "garbage");
        vm.warp(T0 + 601);
        _deliver(_verdict(DOMAIN_B, 2, 4, T0));
        assertEq(_serveState(requestId), uint256(TaskBoardV2.ServeState.Closed), "closed");
        assertEq(REFUND.balance, BOND, "forfeited");
    }

    function test_releaseBondWhenNoVerdictComes() public {
        _requestDelivered(T0 + 600);
        vm.expectRevert(abi.encodeWithSelector(TaskBoardV2.NoResultPending.selector, requestId));
        boardB.releaseBond(requestId);
        uint128 price = _claim(WORKER1, PAYOUT1);
        _submit(WORKER1, PAYOUT1, price, "hello");
        vm.warp(T0 + 600 + GRACE);
        vm.expectRevert(
            abi.encodeWithSelector(TaskBoardV2.VerdictWaitNotOver.selector, requestId, uint256(T0 + 600 + GRACE))
        );
        boardB.releaseBond(requestId);
        vm.warp(T0 + 600 + GRACE + 1);
        boardB.releaseBond(requestId);
        assertEq(WORKER1.balance, 10 ether - FEE, "bond back: the committee never found fault");
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(
            keccak256(_verdict(DOMAIN_B, 2, 4, T0)), "verdict is not on the result waiting for one"
        );
        _deliver(_verdict(DOMAIN_B, 2, 4, T0));
    }

    function test_requestWithANonEvmRefundAddressIsIgnoredOnAnEvmServingBoard() public {
        TaskPayloads.AuctionTerms memory t = _terms();
        t.refundTo = keccak256("a solana key");
        bytes memory payload = TaskPayloads.encodeRequestV2Inline("echo", MAX_FEE, T0 + 600, t, "hello");
        bytes memory envelope = abi.encodePacked(
            Envelope.VERSION,
            Envelope.KIND_TASK_REQUEST,
            uint64(77),
            DOMAIN_A,
            _b32(address(boardA)),
            DOMAIN_B,
            _b32(address(boardB)),
            payload
        );
        vm.expectEmit();
        emit TaskBoardV2.TaskMessageIgnored(keccak256(envelope), "refund_to is not an EVM address");
        _deliver(envelope);
    }
}
