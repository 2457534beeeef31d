// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Envelope} from "./lib/Envelope.sol";
import {TaskPayloads} from "./lib/TaskPayloads.sol";
import {Gateway} from "./Gateway.sol";
import {ITesseraReceiver} from "./interfaces/ITesseraReceiver.sol";

/// The requester's side of Tessera AI tasks on an EVM chain (docs/TASKS.md).
///
/// `requestTask` escrows the max fee and sends a TASK_REQUEST through the gateway to a worker
/// board on another chain; the request id is that envelope's message id. The first TASK_RESULT
/// for it from that domain and board, before the deadline, is recorded. A PROOF_ATTESTATION from
/// the configured attestation source that matches the recorded result pays the escrow to the
/// result's payout address. Without one, the requester reclaims the escrow after the deadline
/// (after deadline + attestationGrace once a result was recorded, so a worker who answered in
/// time is not raced out of an attestation that is on its way).
///
/// The same contract is the serving side on its own chain: a TASK_REQUEST delivered to it is
/// recorded (keyed by its message id) and announced in `TaskReceived` with the whole payload, so a
/// worker reads the input from the log; `submitResult` sends the first valid TASK_RESULT for it
/// back through the gateway to the requester's board, with this board as the envelope's sender.
/// It is permissionless: what makes a result worth paying is the worker's Ed25519 signature and
/// the committee's PROOF_ATTESTATION, not who submitted it.
///
/// `handleMessage` never reverts on bad input: the gateway would record the delivery as failed
/// and anyone could retry it forever. Messages that change nothing emit TaskMessageIgnored.
contract TaskBoard is ITesseraReceiver {
    enum State {
        None, // no such request
        Open,
        ResultReceived,
        Completed,
        Refunded
    }

    struct Task {
        address requester;
        uint64 deadline;
        uint32 dstDomain;
        uint128 escrow;
        bytes16 executor;
        bytes32 workerBoard;
        State state;
        address payout;
        bytes32 resultId;
        bytes32 outputHash;
        bytes32 worker;
    }

    /// Gas forwarded when paying a worker from inside the handler. A payout contract that needs
    /// more (or reverts) is credited instead and collects with `withdraw`.
    uint256 public constant PAYOUT_GAS = 30_000;

    Gateway public immutable gateway;
    /// The only (src_domain, src_sender) whose PROOF_ATTESTATION messages count. Gateways stamp
    /// their own domain and the caller on what users send, so with (0, 0) — the committee domain,
    /// as for rotations — only the committee itself can author an attestation; any chain user can
    /// otherwise send a kind-3 envelope through a gateway.
    uint32 public immutable attestationDomain;
    bytes32 public immutable attestationSender;
    /// Seconds after a task's deadline during which a recorded result can still be attested
    /// before the requester may reclaim.
    uint64 public immutable attestationGrace;

    /// A TASK_REQUEST delivered here (serving side); fits two storage slots.
    struct Incoming {
        uint32 srcDomain;
        uint64 deadline;
        bytes16 executor;
        bool received;
        bool answered;
        bytes32 srcBoard; // the requester's board: where the result goes
    }

    mapping(bytes32 requestId => Task) public tasks;
    /// Serving side: requests delivered to this board, by request id (their message id).
    mapping(bytes32 requestId => Incoming) public incoming;
    /// Payouts whose transfer failed inside the handler, claimable with `withdraw`.
    mapping(address account => uint256) public credits;

    bool private transient _locked;

    event TaskRequested(
        bytes32 indexed requestId,
        address indexed requester,
        uint32 indexed dstDomain,
        bytes32 workerBoard,
        bytes16 executor,
        uint256 maxFee,
        uint64 deadline
    );
    event TaskResultReceived(
        bytes32 indexed requestId, bytes32 indexed resultId, bytes32 worker, address payout, bytes32 outputHash
    );
    event TaskCompleted(bytes32 indexed requestId, bytes32 indexed resultId, address indexed payout, uint256 amount);
    event TaskRefunded(bytes32 indexed requestId, address indexed requester, uint256 amount);
    event TaskReceived(
        bytes32 indexed requestId,
        uint32 indexed srcDomain,
        bytes32 srcBoard,
        bytes16 executor,
        uint64 deadline,
        bytes payload
    );
    event TaskResultSent(bytes32 indexed requestId, bytes32 indexed resultId, address indexed submitter);
    event TaskMessageIgnored(bytes32 indexed messageId, string reason);
    event PayoutCredited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    error NotGateway(address caller);
    error ZeroAddress();
    error ValueBelowGatewayFee(uint256 value, uint256 fee);
    error DeadlineNotInFuture(uint64 deadline, uint256 now_);
    error UnknownTask(bytes32 requestId);
    error TaskNotRefundable(bytes32 requestId, State state);
    error DeadlineNotPassed(bytes32 requestId, uint256 refundableAfter);
    error NothingToWithdraw(address account);
    error TransferFailed(address to, uint256 amount);
    error Reentrancy();
    error UnknownRequest(bytes32 requestId);
    error ResultAlreadySubmitted(bytes32 requestId);
    error RequestExpired(bytes32 requestId, uint64 deadline, uint256 now_);
    error ExecutorMismatch(bytes32 requestId, bytes16 requested, bytes16 result);

    modifier nonReentrant() {
        if (_locked) revert Reentrancy();
        _locked = true;
        _;
        _locked = false;
    }

    constructor(address gateway_, uint32 attestationDomain_, bytes32 attestationSender_, uint64 attestationGrace_) {
        if (gateway_ == address(0)) revert ZeroAddress();
        gateway = Gateway(gateway_);
        attestationDomain = attestationDomain_;
        attestationSender = attestationSender_;
        attestationGrace = attestationGrace_;
    }

    // --- requester ---------------------------------------------------------------------------

    /// Inline input (at most 469 bytes). msg.value = gateway.fee() + the max fee held in escrow.
    function requestTask(
        uint32 dstDomain,
        bytes32 workerBoard,
        string calldata executor,
        bytes calldata input,
        uint64 deadline
    ) external payable nonReentrant returns (bytes32 requestId) {
        (uint256 fee, uint128 maxFee) = _split(deadline);
        bytes memory payload = TaskPayloads.encodeRequestInline(executor, maxFee, deadline, input);
        return _send(dstDomain, workerBoard, executor, payload, fee, maxFee, deadline);
    }

    /// Input by reference: its keccak256 and a URI (https://, http://, ipfs://, ar://; ≤ 256 bytes).
    function requestTaskByReference(
        uint32 dstDomain,
        bytes32 workerBoard,
        string calldata executor,
        bytes32 inputHash,
        string calldata inputUri,
        uint64 deadline
    ) external payable nonReentrant returns (bytes32 requestId) {
        (uint256 fee, uint128 maxFee) = _split(deadline);
        bytes memory payload = TaskPayloads.encodeRequestByReference(executor, maxFee, deadline, inputHash, inputUri);
        return _send(dstDomain, workerBoard, executor, payload, fee, maxFee, deadline);
    }

    /// After the deadline with no attested result (deadline + attestationGrace once a result was
    /// recorded), the escrow goes back to the requester. Anyone may call it; the money goes to
    /// the requester only.
    function reclaim(bytes32 requestId) external nonReentrant {
        Task storage task = tasks[requestId];
        State state = task.state;
        if (state == State.None) revert UnknownTask(requestId);
        if (state != State.Open && state != State.ResultReceived) revert TaskNotRefundable(requestId, state);
        uint256 after_ = uint256(task.deadline) + (state == State.ResultReceived ? attestationGrace : 0);
        if (block.timestamp <= after_) revert DeadlineNotPassed(requestId, after_);
        task.state = State.Refunded;
        uint256 amount = task.escrow;
        address requester = task.requester;
        emit TaskRefunded(requestId, requester, amount);
        if (amount != 0) {
            (bool ok,) = requester.call{value: amount}("");
            if (!ok) revert TransferFailed(requester, amount);
        }
    }

    /// Pays out a credit (a payout whose transfer failed in the handler). Anyone may call it; the
    /// money goes to `account` only.
    function withdraw(address account) external nonReentrant {
        uint256 amount = credits[account];
        if (amount == 0) revert NothingToWithdraw(account);
        credits[account] = 0;
        emit Withdrawn(account, amount);
        (bool ok,) = account.call{value: amount}("");
        if (!ok) revert TransferFailed(account, amount);
    }

    function taskState(bytes32 requestId) external view returns (State) {
        return tasks[requestId].state;
    }

    // --- serving side ------------------------------------------------------------------------

    /// Sends `resultPayload` (an encoded TASK_RESULT) to the board that requested it. msg.value
    /// must cover gateway.fee(); all of it goes to the gateway (which keeps any excess, as
    /// Gateway.send does). Reverts with the payload library's error when the payload is
    /// malformed, or with UnknownRequest / ResultAlreadySubmitted / RequestExpired /
    /// ExecutorMismatch; the first valid result wins.
    function submitResult(bytes calldata resultPayload) external payable nonReentrant returns (bytes32 resultId) {
        TaskPayloads.TaskResult memory r = TaskPayloads.decodeResult(resultPayload);
        Incoming storage req = incoming[r.requestId];
        if (!req.received) revert UnknownRequest(r.requestId);
        if (req.answered) revert ResultAlreadySubmitted(r.requestId);
        uint64 deadline = req.deadline;
        if (block.timestamp > deadline) revert RequestExpired(r.requestId, deadline, block.timestamp);
        if (r.executor != req.executor) revert ExecutorMismatch(r.requestId, req.executor, r.executor);
        uint256 fee = gateway.fee();
        if (msg.value < fee) revert ValueBelowGatewayFee(msg.value, fee);
        req.answered = true; // before the external call: one result per request, whatever happens next
        (resultId,) =
            gateway.send{value: msg.value}(req.srcDomain, req.srcBoard, Envelope.KIND_TASK_RESULT, resultPayload);
        emit TaskResultSent(r.requestId, resultId, msg.sender);
    }

    function resultAnswered(bytes32 requestId) external view returns (bool) {
        return incoming[requestId].answered;
    }

    // --- gateway -----------------------------------------------------------------------------

    function handleMessage(
        bytes32 messageId,
        uint32 srcDomain,
        bytes32 srcSender,
        uint8 kind,
        uint64,
        bytes calldata payload
    ) external nonReentrant {
        if (msg.sender != address(gateway)) revert NotGateway(msg.sender);
        if (kind == Envelope.KIND_TASK_REQUEST) {
            _onRequest(messageId, srcDomain, srcSender, payload);
        } else if (kind == Envelope.KIND_TASK_RESULT) {
            _onResult(messageId, srcDomain, srcSender, payload);
        } else if (kind == Envelope.KIND_PROOF_ATTESTATION) {
            _onAttestation(messageId, srcDomain, srcSender, payload);
        } else {
            emit TaskMessageIgnored(messageId, "kind not handled by the task board");
        }
    }

    /// External so the handler can catch a malformed payload (the library reverts) and ignore it.
    function decodeRequest(bytes calldata payload) external pure returns (TaskPayloads.TaskRequest memory) {
        return TaskPayloads.decodeRequest(payload);
    }

    function decodeResult(bytes calldata payload) external pure returns (TaskPayloads.TaskResult memory) {
        return TaskPayloads.decodeResult(payload);
    }

    function decodeAttestation(bytes calldata payload) external pure returns (TaskPayloads.ProofAttestation memory) {
        return TaskPayloads.decodeAttestation(payload);
    }

    // --- internals ---------------------------------------------------------------------------

    function _split(uint64 deadline) private view returns (uint256 fee, uint128 maxFee) {
        if (deadline <= block.timestamp) revert DeadlineNotInFuture(deadline, block.timestamp);
        fee = gateway.fee();
        if (msg.value < fee) revert ValueBelowGatewayFee(msg.value, fee);
        maxFee = uint128(msg.value - fee); // total ether supply is far below 2^128 wei
    }

    function _send(
        uint32 dstDomain,
        bytes32 workerBoard,
        string calldata executor,
        bytes memory payload,
        uint256 fee,
        uint128 maxFee,
        uint64 deadline
    ) private returns (bytes32 requestId) {
        (requestId,) = gateway.send{value: fee}(dstDomain, workerBoard, Envelope.KIND_TASK_REQUEST, payload);
        Task storage task = tasks[requestId];
        task.requester = msg.sender;
        task.deadline = deadline;
        task.dstDomain = dstDomain;
        task.escrow = maxFee;
        task.executor = TaskPayloads.encodeExecutorId(executor);
        task.workerBoard = workerBoard;
        task.state = State.Open;
        emit TaskRequested(requestId, msg.sender, dstDomain, workerBoard, task.executor, maxFee, deadline);
    }

    function _onRequest(bytes32 messageId, uint32 srcDomain, bytes32 srcSender, bytes calldata payload) private {
        TaskPayloads.TaskRequest memory r;
        try this.decodeRequest(payload) returns (TaskPayloads.TaskRequest memory decoded) {
            r = decoded;
        } catch {
            emit TaskMessageIgnored(messageId, "malformed TASK_REQUEST");
            return;
        }
        Incoming storage req = incoming[messageId];
        // The gateway delivers a message id once; this only guards against a future second path.
        if (req.received) {
            emit TaskMessageIgnored(messageId, "request already received");
            return;
        }
        req.srcDomain = srcDomain;
        req.deadline = r.deadline;
        req.executor = r.executor;
        req.received = true;
        req.srcBoard = srcSender;
        emit TaskReceived(messageId, srcDomain, srcSender, r.executor, r.deadline, payload);
    }

    function _onResult(bytes32 messageId, uint32 srcDomain, bytes32 srcSender, bytes calldata payload) private {
        TaskPayloads.TaskResult memory r;
        try this.decodeResult(payload) returns (TaskPayloads.TaskResult memory decoded) {
            r = decoded;
        } catch {
            emit TaskMessageIgnored(messageId, "malformed TASK_RESULT");
            return;
        }
        Task storage task = tasks[r.requestId];
        string memory reason;
        if (task.state == State.None) {
            reason = "result for an unknown request";
        } else if (srcDomain != task.dstDomain || srcSender != task.workerBoard) {
            reason = "result not from the worker board the request was sent to";
        } else if (task.state != State.Open) {
            reason = "request already has a result or is closed";
        } else if (block.timestamp > task.deadline) {
            reason = "result after the deadline";
        } else if (r.executor != task.executor) {
            reason = "result names another executor than the request";
        } else if (uint256(r.payout) >> 160 != 0 || r.payout == bytes32(0)) {
            reason = "payout is not an EVM address";
        }
        if (bytes(reason).length != 0) {
            emit TaskMessageIgnored(messageId, reason);
            return;
        }
        address payout = address(uint160(uint256(r.payout)));
        task.state = State.ResultReceived;
        task.payout = payout;
        task.resultId = messageId;
        task.outputHash = r.outputHash;
        task.worker = r.worker;
        emit TaskResultReceived(r.requestId, messageId, r.worker, payout, r.outputHash);
    }

    function _onAttestation(bytes32 messageId, uint32 srcDomain, bytes32 srcSender, bytes calldata payload) private {
        if (srcDomain != attestationDomain || srcSender != attestationSender) {
            emit TaskMessageIgnored(messageId, "attestation not from the attestation source");
            return;
        }
        TaskPayloads.ProofAttestation memory a;
        try this.decodeAttestation(payload) returns (TaskPayloads.ProofAttestation memory decoded) {
            a = decoded;
        } catch {
            emit TaskMessageIgnored(messageId, "malformed PROOF_ATTESTATION");
            return;
        }
        Task storage task = tasks[a.requestId];
        State state = task.state;
        string memory reason;
        if (state == State.None) {
            reason = "attestation for an unknown request";
        } else if (state == State.Open) {
            reason = "attestation before any result";
        } else if (state != State.ResultReceived) {
            reason = "task already completed or refunded";
        } else if (
            a.resultId != task.resultId || a.outputHash != task.outputHash || a.worker != task.worker
                || a.payout != bytes32(uint256(uint160(task.payout)))
        ) {
            reason = "attestation does not match the recorded result";
        }
        if (bytes(reason).length != 0) {
            emit TaskMessageIgnored(messageId, reason);
            return;
        }
        task.state = State.Completed; // before the transfer: a re-entrant payout finds it closed
        address payout = task.payout;
        uint256 amount = task.escrow;
        emit TaskCompleted(a.requestId, a.resultId, payout, amount);
        if (amount == 0) return;
        bool ok;
        uint256 gasLimit = PAYOUT_GAS;
        assembly ("memory-safe") {
            // No return data copied: a payout contract cannot make the handler pay for a huge one.
            ok := call(gasLimit, payout, amount, 0, 0, 0, 0)
        }
        if (!ok) {
            credits[payout] += amount;
            emit PayoutCredited(payout, amount);
        }
    }
}
