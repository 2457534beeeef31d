// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Envelope} from "./lib/Envelope.sol";
import {TaskPayloads} from "./lib/TaskPayloads.sol";
import {Gateway} from "./Gateway.sol";
import {ITesseraReceiver} from "./interfaces/ITesseraReceiver.sol";

/// Tessera AI tasks, protocol v2, on an EVM chain (docs/TASKS.md, "Task protocol v2"; payloads in
/// docs/PROTOCOL.md, "AI-task payloads v2"). One contract plays both roles.
///
/// Requester side: `requestTask` escrows exactly `maxFee` (the gateway fee is what the caller
/// pays above it, fixed in that transaction) and sends a TASK_REQUEST v2 to a serving board. A
/// TASK_RESULT v2 from that board and the committee's verdict on it (PROOF_ATTESTATION v2, from
/// the committee domain) settle the task in whichever order they arrive: a valid verdict on a
/// result submitted by the deadline (serving chain's clock) pays the claim price to the payout
/// and refunds the rest to the requester; a refused one drops that result and the task waits for
/// the next. With neither by `deadline + settlementGrace`, the requester reclaims the escrow.
///
/// Serving side: a delivered request opens a reverse Dutch auction on this chain's clock; a worker
/// `claim`s it at the current price with the bond the request names, and only that account, with
/// the claim's payout and price, can `submitResult` until the claim deadline. The committee's
/// verdict returns the bond (valid) or sends it to the request's refund address and re-opens the
/// task until its deadline (refused); an expired claim forfeits the same way.
///
/// `handleMessage` never reverts on content (the gateway would mark the delivery failed) and
/// never drops a message because of the order it arrives in. It has its own reentrancy guard,
/// apart from the one of the user functions, so a delivery made from inside a refund callback is
/// handled normally.
contract TaskBoardV2 is ITesseraReceiver {
    enum TaskState {
        None,
        Open,
        Completed,
        Refunded
    }

    enum ServeState {
        None,
        Open, // claimable until the deadline
        Claimed, // one claimant may submit until claimDeadline
        Answered, // result sent; waiting for the committee's verdict
        Closed // bond returned or forfeited for the last time
    }

    /// Requester side: a request this board sent.
    struct Task {
        address requester;
        uint64 deadline;
        uint32 dstDomain;
        uint128 maxFee;
        bytes16 executor;
        bytes32 workerBoard;
        TaskState state;
    }

    /// Requester side: a TASK_RESULT v2 received, by its message id.
    struct ResultRecord {
        bytes32 requestId;
        bytes32 fieldsHash; // TaskPayloads.resultFieldsHash: what its verdict must repeat
        bytes32 payout;
        uint128 price;
        bool received;
        bool refused;
    }

    /// Requester side: the committee's verdict on a result, kept until the result is here too.
    struct VerdictRecord {
        bytes32 fieldsHash;
        uint64 submittedAt;
        uint8 verdict; // 0 none yet
        uint8 reason;
    }

    /// Serving side: a request delivered to this board and its current claim.
    struct Serving {
        uint32 srcDomain;
        uint64 deadline;
        uint64 auctionStart; // block time of the delivery
        uint32 auctionWindow;
        uint16 startBps;
        uint32 claimWindow;
        ServeState state;
        bytes16 executor;
        uint128 maxFee;
        bytes32 srcBoard; // the requester's board: where the result goes
        uint128 bond;
        uint128 price; // of the current claim
        address refundTo;
        address claimant;
        uint64 claimDeadline;
        bytes32 payout; // of the current claim, on the requester's chain
        bytes32 resultId; // of the result waiting for a verdict
    }

    /// Gas forwarded to a payout, refund or bond transfer made inside the handler; a recipient
    /// that needs more (or reverts) is credited instead and collects with `withdraw`.
    uint256 public constant PAYOUT_GAS = 30_000;
    /// Default settlement grace (docs/TASKS.md): Ethereum's ~13 min finality on the serving side,
    /// the committee's checks, and delivering result and verdict, with room for retries.
    uint64 public constant DEFAULT_SETTLEMENT_GRACE = 1800;

    Gateway public immutable gateway;
    /// The only (src_domain, src_sender) whose verdicts count: the committee (0, 0).
    uint32 public immutable attestationDomain;
    bytes32 public immutable attestationSender;
    /// Seconds after a deadline before the requester may reclaim (requester side) or a claimant
    /// with no verdict may take its bond back (serving side).
    uint64 public immutable settlementGrace;

    mapping(bytes32 requestId => Task) internal _tasks;
    mapping(bytes32 resultId => ResultRecord) internal _results;
    mapping(bytes32 resultId => VerdictRecord) internal _verdicts;
    mapping(bytes32 requestId => Serving) internal _serving;
    mapping(address account => uint256) public credits;

    bool private transient _userLock; // requestTask, reclaim, withdraw, claim, submitResult, …
    bool private transient _handling; // handleMessage only

    // requester side
    event TaskRequested(
        bytes32 indexed requestId,
        address indexed requester,
        uint32 indexed dstDomain,
        bytes32 workerBoard,
        uint256 maxFee,
        uint256 gatewayFee,
        uint64 deadline
    );
    event TaskResultReceived(
        bytes32 indexed requestId, bytes32 indexed resultId, bytes32 claimant, bytes32 payout, uint256 price
    );
    event TaskVerdictReceived(
        bytes32 indexed requestId, bytes32 indexed resultId, uint8 verdict, uint8 reason, bool resultHere
    );
    event TaskResultRefused(bytes32 indexed requestId, bytes32 indexed resultId, uint8 reason);
    event TaskCompleted(
        bytes32 indexed requestId, bytes32 indexed resultId, address indexed payout, uint256 price, uint256 refund
    );
    event TaskRefunded(bytes32 indexed requestId, address indexed requester, uint256 amount);
    // serving side
    event TaskReceived(
        bytes32 indexed requestId, uint32 indexed srcDomain, bytes32 srcBoard, uint64 deadline, bytes payload
    );
    event TaskClaimed(
        bytes32 indexed requestId,
        address indexed claimant,
        bytes32 payout,
        uint256 price,
        uint64 claimDeadline,
        uint256 bond
    );
    event ClaimExpired(bytes32 indexed requestId, address indexed claimant, address refundTo, uint256 bond);
    event TaskResultSent(bytes32 indexed requestId, bytes32 indexed resultId, address indexed claimant);
    event BondReturned(bytes32 indexed requestId, bytes32 indexed resultId, address indexed claimant, uint256 bond);
    event BondForfeited(
        bytes32 indexed requestId, bytes32 indexed resultId, address indexed claimant, address refundTo, uint256 bond
    );
    event BondReleased(bytes32 indexed requestId, address indexed claimant, uint256 bond);
    event TaskReopened(bytes32 indexed requestId);
    // both
    event TaskMessageIgnored(bytes32 indexed messageId, string reason);
    event PayoutCredited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    error NotGateway(address caller);
    error ZeroAddress();
    error Reentrancy();
    error HandlerReentered();
    error GatewayFeeAboveLimit(uint256 fee, uint256 paid);
    error DeadlineNotInFuture(uint64 deadline, uint256 now_);
    error UnknownTask(bytes32 requestId);
    error TaskNotRefundable(bytes32 requestId, TaskState state);
    error DeadlineNotPassed(bytes32 requestId, uint256 refundableAfter);
    error NothingToWithdraw(address account);
    error TransferFailed(address to, uint256 amount);
    error UnknownRequest(bytes32 requestId);
    error RequestExpired(bytes32 requestId, uint64 deadline, uint256 now_);
    error AlreadyClaimed(bytes32 requestId, address claimant, uint64 claimDeadline);
    error ResultPending(bytes32 requestId, bytes32 resultId);
    error RequestClosed(bytes32 requestId);
    error WrongBond(uint256 paid, uint256 bond);
    error ZeroPayout();
    error NotClaimed(bytes32 requestId);
    error ResultAlreadySubmitted(bytes32 requestId);
    error NotClaimant(bytes32 requestId, address caller, address claimant);
    error ClaimDeadlinePassed(bytes32 requestId, uint64 claimDeadline, uint256 now_);
    error ClaimNotExpired(bytes32 requestId, uint64 claimDeadline);
    error ClaimMismatch(bytes32 requestId, string field);
    error ExecutorMismatch(bytes32 requestId, bytes16 requested, bytes16 result);
    error ValueBelowGatewayFee(uint256 value, uint256 fee);
    error NoResultPending(bytes32 requestId);
    error VerdictWaitNotOver(bytes32 requestId, uint256 releasableAfter);

    modifier nonReentrant() {
        if (_userLock || _handling) revert Reentrancy();
        _userLock = true;
        _;
        _userLock = false;
    }

    constructor(address gateway_, uint32 attestationDomain_, bytes32 attestationSender_, uint64 settlementGrace_) {
        if (gateway_ == address(0)) revert ZeroAddress();
        gateway = Gateway(gateway_);
        attestationDomain = attestationDomain_;
        attestationSender = attestationSender_;
        settlementGrace = settlementGrace_;
    }

    // === requester side =======================================================================

    /// Inline input (at most 410 bytes). Escrows exactly `maxFee`; the gateway fee is
    /// msg.value − maxFee, at least gateway.fee() (else GatewayFeeAboveLimit: a fee raised while
    /// the transaction was pending never comes out of the escrow).
    function requestTask(
        uint32 dstDomain,
        bytes32 workerBoard,
        string calldata executor,
        bytes calldata input,
        uint128 maxFee,
        uint64 deadline,
        TaskPayloads.AuctionTerms calldata terms
    ) external payable nonReentrant returns (bytes32) {
        bytes memory payload = TaskPayloads.encodeRequestV2Inline(executor, maxFee, deadline, terms, input);
        return _send(dstDomain, workerBoard, executor, payload, maxFee, deadline);
    }

    /// Input by reference: its keccak256 and a URI (https://, http://, ipfs://, ar://; ≤ 256 bytes).
    function requestTaskByReference(
        uint32 dstDomain,
        bytes32 workerBoard,
        string calldata executor,
        bytes32 inputHash,
        string calldata inputUri,
        uint128 maxFee,
        uint64 deadline,
        TaskPayloads.AuctionTerms calldata terms
    ) external payable nonReentrant returns (bytes32) {
        bytes memory payload =
            TaskPayloads.encodeRequestV2ByReference(executor, maxFee, deadline, terms, inputHash, inputUri);
        return _send(dstDomain, workerBoard, executor, payload, maxFee, deadline);
    }

    /// After deadline + settlementGrace with the task still open, the escrow goes back to the
    /// requester. Anyone may call it; the money goes to the requester only.
    function reclaim(bytes32 requestId) external nonReentrant {
        Task storage task = _tasks[requestId];
        TaskState state = task.state;
        if (state == TaskState.None) revert UnknownTask(requestId);
        if (state != TaskState.Open) revert TaskNotRefundable(requestId, state);
        uint256 after_ = uint256(task.deadline) + settlementGrace;
        if (block.timestamp <= after_) revert DeadlineNotPassed(requestId, after_);
        task.state = TaskState.Refunded;
        uint256 amount = task.maxFee;
        address requester = task.requester;
        emit TaskRefunded(requestId, requester, amount);
        if (amount != 0) {
            (bool ok,) = requester.call{value: amount}("");
            if (!ok) revert TransferFailed(requester, amount);
        }
    }

    function taskOf(bytes32 requestId) external view returns (Task memory) {
        return _tasks[requestId];
    }

    function resultOf(bytes32 resultId) external view returns (ResultRecord memory) {
        return _results[resultId];
    }

    function verdictOf(bytes32 resultId) external view returns (VerdictRecord memory) {
        return _verdicts[resultId];
    }

    // === serving side =========================================================================

    /// Claims a delivered request at the current auction price, posting exactly its bond.
    /// The caller becomes the only account that can submit a result, with this payout (an
    /// address on the requester's chain) and this price, until the returned claim deadline
    /// (claim_window from now, capped at the task deadline). A claim whose deadline passed
    /// without a result is forfeited first (its bond to the request's refund address).
    function claim(bytes32 requestId, bytes32 payout)
        external
        payable
        nonReentrant
        returns (uint128 price, uint64 claimDeadline)
    {
        Serving storage s = _serving[requestId];
        ServeState state = s.state;
        if (state == ServeState.None) revert UnknownRequest(requestId);
        if (block.timestamp > s.deadline) revert RequestExpired(requestId, s.deadline, block.timestamp);
        if (state == ServeState.Claimed) {
            if (block.timestamp <= s.claimDeadline) revert AlreadyClaimed(requestId, s.claimant, s.claimDeadline);
            _expireClaim(requestId, s);
        } else if (state == ServeState.Answered) {
            revert ResultPending(requestId, s.resultId);
        } else if (state == ServeState.Closed) {
            revert RequestClosed(requestId);
        }
        if (payout == bytes32(0)) revert ZeroPayout();
        if (msg.value != s.bond) revert WrongBond(msg.value, s.bond);
        price = TaskPayloads.auctionPrice(s.maxFee, s.startBps, s.auctionWindow, s.auctionStart, block.timestamp);
        uint256 until = block.timestamp + s.claimWindow;
        claimDeadline = until > s.deadline ? s.deadline : uint64(until);
        s.state = ServeState.Claimed;
        s.claimant = msg.sender;
        s.claimDeadline = claimDeadline;
        s.price = price;
        s.payout = payout;
        emit TaskClaimed(requestId, msg.sender, payout, price, claimDeadline, msg.value);
    }

    /// Forfeits a claim whose deadline passed without a result: the bond goes to the request's
    /// refund address and the task is open again (claims are refused after its deadline).
    function expireClaim(bytes32 requestId) external nonReentrant {
        Serving storage s = _serving[requestId];
        if (s.state != ServeState.Claimed) revert NotClaimed(requestId);
        if (block.timestamp <= s.claimDeadline) revert ClaimNotExpired(requestId, s.claimDeadline);
        _expireClaim(requestId, s);
    }

    /// Sends `resultPayload` (a TASK_RESULT v2) to the requesting board. Only the claimant, before
    /// its claim deadline, with the claim's claimant (msg.sender), payout and price in the payload.
    /// msg.value must cover gateway.fee() and all of it goes to the gateway.
    function submitResult(bytes calldata resultPayload) external payable nonReentrant returns (bytes32 resultId) {
        ResultFields memory r = _resultFields(resultPayload);
        bytes32 requestId = r.requestId;
        Serving storage s = _serving[requestId];
        ServeState state = s.state;
        if (state == ServeState.None) revert UnknownRequest(requestId);
        if (state == ServeState.Answered || state == ServeState.Closed) revert ResultAlreadySubmitted(requestId);
        if (state != ServeState.Claimed) revert NotClaimed(requestId);
        if (msg.sender != s.claimant) revert NotClaimant(requestId, msg.sender, s.claimant);
        if (block.timestamp > s.claimDeadline) {
            revert ClaimDeadlinePassed(requestId, s.claimDeadline, block.timestamp);
        }
        if (r.claimant != bytes32(uint256(uint160(msg.sender)))) revert ClaimMismatch(requestId, "claimant");
        if (r.payout != s.payout) revert ClaimMismatch(requestId, "payout");
        if (r.price != s.price) revert ClaimMismatch(requestId, "price");
        if (r.executor != s.executor) revert ExecutorMismatch(requestId, s.executor, r.executor);
        uint256 fee = gateway.fee();
        if (msg.value < fee) revert ValueBelowGatewayFee(msg.value, fee);
        s.state = ServeState.Answered; // before the external call: one result per claim
        (resultId,) =
            gateway.send{value: msg.value}(s.srcDomain, s.srcBoard, Envelope.KIND_TASK_RESULT, resultPayload);
        s.resultId = resultId;
        emit TaskResultSent(requestId, resultId, msg.sender);
    }

    /// The committee gave no verdict on the submitted result by deadline + settlementGrace (it
    /// abstains when it cannot check, e.g. the requester's input is unreachable): the bond goes
    /// back to the claimant, since nothing shows it at fault.
    function releaseBond(bytes32 requestId) external nonReentrant {
        Serving storage s = _serving[requestId];
        if (s.state != ServeState.Answered) revert NoResultPending(requestId);
        uint256 after_ = uint256(s.deadline) + settlementGrace;
        if (block.timestamp <= after_) revert VerdictWaitNotOver(requestId, after_);
        s.state = ServeState.Closed;
        address claimant = s.claimant;
        uint256 bond = s.bond;
        emit BondReleased(requestId, claimant, bond);
        _pay(claimant, bond);
    }

    /// The auction price now (what `claim` would fix in this block).
    function currentPrice(bytes32 requestId) external view returns (uint128) {
        Serving storage s = _serving[requestId];
        if (s.state == ServeState.None) revert UnknownRequest(requestId);
        return TaskPayloads.auctionPrice(s.maxFee, s.startBps, s.auctionWindow, s.auctionStart, block.timestamp);
    }

    function servingOf(bytes32 requestId) external view returns (Serving memory) {
        return _serving[requestId];
    }

    // === both =================================================================================

    /// Pays out a credit (a transfer that failed inside the handler or an expiry). Anyone may call
    /// it; the money goes to `account` only.
    function withdraw(address account) external nonReentrant {
        uint256 amount = credits[account];
        if (amount == 0) revert NothingToWithdraw(account);
        credits[account] = 0;
        emit Withdrawn(account, amount);
        (bool ok,) = account.call{value: amount}("");
        if (!ok) revert TransferFailed(account, amount);
    }

    function handleMessage(
        bytes32 messageId,
        uint32 srcDomain,
        bytes32 srcSender,
        uint8 kind,
        uint64,
        bytes calldata payload
    ) external {
        if (msg.sender != address(gateway)) revert NotGateway(msg.sender);
        // Not the user lock: a delivery made from a refund callback is handled, not failed.
        if (_handling) revert HandlerReentered();
        _handling = true;
        if (kind == Envelope.KIND_TASK_REQUEST) {
            _onRequest(messageId, srcDomain, srcSender, payload);
        } else if (kind == Envelope.KIND_TASK_RESULT) {
            _onResult(messageId, srcDomain, srcSender, payload);
        } else if (kind == Envelope.KIND_PROOF_ATTESTATION) {
            _onVerdict(messageId, srcDomain, srcSender, payload);
        } else {
            emit TaskMessageIgnored(messageId, "kind not handled by the task board");
        }
        _handling = false;
    }

    /// The fields of a TASK_RESULT v2 the boards use (a static struct: its ABI code is small).
    struct ResultFields {
        bytes32 requestId;
        bytes16 executor;
        bytes32 outputHash;
        bytes32 worker;
        bytes32 claimant;
        bytes32 payout;
        uint128 price;
    }

    /// External so the handler can catch a malformed payload (the library reverts) and ignore it.
    /// They return static values only: ABI-encoding the whole payload structs would not fit the
    /// contract in the 24,576-byte limit.
    function decodeRequestTerms(bytes calldata payload)
        external
        pure
        returns (bytes16 executor, uint128 maxFee, uint64 deadline, TaskPayloads.AuctionTerms memory terms)
    {
        TaskPayloads.TaskRequestV2 memory r = TaskPayloads.decodeRequestV2(payload);
        return (r.executor, r.maxFee, r.deadline, r.terms);
    }

    function decodeResultFields(bytes calldata payload) external pure returns (ResultFields memory) {
        return _resultFields(payload);
    }

    function decodeVerdict(bytes calldata payload) external pure returns (TaskPayloads.Verdict memory) {
        return TaskPayloads.decodeVerdict(payload);
    }

    // === internals ============================================================================

    function _send(
        uint32 dstDomain,
        bytes32 workerBoard,
        string calldata executor,
        bytes memory payload,
        uint128 maxFee,
        uint64 deadline
    ) private returns (bytes32 requestId) {
        if (deadline <= block.timestamp) revert DeadlineNotInFuture(deadline, block.timestamp);
        uint256 fee = gateway.fee();
        uint256 gatewayFee = msg.value > maxFee ? msg.value - maxFee : 0;
        if (msg.value < maxFee || gatewayFee < fee) revert GatewayFeeAboveLimit(fee, gatewayFee);
        (requestId,) = gateway.send{value: gatewayFee}(dstDomain, workerBoard, Envelope.KIND_TASK_REQUEST, payload);
        Task storage task = _tasks[requestId];
        task.requester = msg.sender;
        task.deadline = deadline;
        task.dstDomain = dstDomain;
        task.maxFee = maxFee;
        task.executor = TaskPayloads.encodeExecutorId(executor);
        task.workerBoard = workerBoard;
        task.state = TaskState.Open;
        emit TaskRequested(requestId, msg.sender, dstDomain, workerBoard, maxFee, gatewayFee, deadline);
    }

    function _onRequest(bytes32 messageId, uint32 srcDomain, bytes32 srcSender, bytes calldata payload) private {
        bytes16 executor;
        uint128 maxFee;
        uint64 deadline;
        TaskPayloads.AuctionTerms memory terms;
        try this.decodeRequestTerms(payload) returns (
            bytes16 executor_, uint128 maxFee_, uint64 deadline_, TaskPayloads.AuctionTerms memory terms_
        ) {
            (executor, maxFee, deadline, terms) = (executor_, maxFee_, deadline_, terms_);
        } catch {
            emit TaskMessageIgnored(messageId, "malformed TASK_REQUEST v2");
            return;
        }
        bytes32 refundTo = terms.refundTo;
        if (uint256(refundTo) >> 160 != 0) {
            emit TaskMessageIgnored(messageId, "refund_to is not an EVM address");
            return;
        }
        Serving storage s = _serving[messageId];
        s.srcDomain = srcDomain;
        s.deadline = deadline;
        s.auctionStart = uint64(block.timestamp);
        s.auctionWindow = terms.auctionWindow;
        s.startBps = terms.startBps;
        s.claimWindow = terms.claimWindow;
        s.state = ServeState.Open;
        s.executor = executor;
        s.maxFee = maxFee;
        s.srcBoard = srcSender;
        s.bond = terms.bond;
        s.refundTo = address(uint160(uint256(refundTo)));
        emit TaskReceived(messageId, srcDomain, srcSender, deadline, payload);
    }

    function _onResult(bytes32 messageId, uint32 srcDomain, bytes32 srcSender, bytes calldata payload) private {
        ResultFields memory r;
        try this.decodeResultFields(payload) returns (ResultFields memory decoded) {
            r = decoded;
        } catch {
            emit TaskMessageIgnored(messageId, "malformed TASK_RESULT v2");
            return;
        }
        Task storage task = _tasks[r.requestId];
        string memory reason;
        if (task.state == TaskState.None) {
            reason = "result for an unknown request";
        } else if (srcDomain != task.dstDomain || srcSender != task.workerBoard) {
            reason = "result not from the worker board the request was sent to";
        } else if (task.state != TaskState.Open) {
            reason = "task already completed or refunded";
        } else if (r.executor != task.executor) {
            reason = "result names another executor than the request";
        }
        if (bytes(reason).length != 0) {
            emit TaskMessageIgnored(messageId, reason);
            return;
        }
        // No deadline check here: the verdict carries the result's block time on the serving
        // chain, and that clock decides (a result on time there may arrive here late).
        ResultRecord storage rec = _results[messageId];
        rec.requestId = r.requestId;
        rec.fieldsHash =
            TaskPayloads.resultFieldsHash(r.requestId, r.outputHash, r.worker, r.claimant, r.payout, r.price);
        rec.payout = r.payout;
        rec.price = r.price;
        rec.received = true;
        emit TaskResultReceived(r.requestId, messageId, r.claimant, r.payout, r.price);
        if (_verdicts[messageId].verdict != 0) _settle(messageId);
    }

    function _onVerdict(bytes32 messageId, uint32 srcDomain, bytes32 srcSender, bytes calldata payload) private {
        if (srcDomain != attestationDomain || srcSender != attestationSender) {
            emit TaskMessageIgnored(messageId, "verdict not from the attestation source");
            return;
        }
        TaskPayloads.Verdict memory v;
        try this.decodeVerdict(payload) returns (TaskPayloads.Verdict memory decoded) {
            v = decoded;
        } catch {
            emit TaskMessageIgnored(messageId, "malformed PROOF_ATTESTATION v2");
            return;
        }
        if (_serving[v.requestId].state != ServeState.None) {
            _servingVerdict(messageId, v);
        } else if (_tasks[v.requestId].state != TaskState.None) {
            _requesterVerdict(messageId, v);
        } else {
            emit TaskMessageIgnored(messageId, "verdict for an unknown request");
        }
    }

    /// Requester side: kept whatever arrives first; settles once the result is here too.
    function _requesterVerdict(bytes32 messageId, TaskPayloads.Verdict memory v) private {
        if (_tasks[v.requestId].state != TaskState.Open) {
            emit TaskMessageIgnored(messageId, "task already completed or refunded");
            return;
        }
        VerdictRecord storage rec = _verdicts[v.resultId];
        if (rec.verdict != 0) {
            emit TaskMessageIgnored(messageId, "a verdict on this result is already recorded");
            return;
        }
        rec.fieldsHash = TaskPayloads.resultFieldsHash(v.requestId, v.outputHash, v.worker, v.claimant, v.payout, v.price);
        rec.submittedAt = v.submittedAt;
        rec.verdict = v.verdict;
        rec.reason = v.reason;
        bool resultHere = _results[v.resultId].received;
        emit TaskVerdictReceived(v.requestId, v.resultId, v.verdict, v.reason, resultHere);
        if (resultHere) _settle(v.resultId);
    }

    function _settle(bytes32 resultId) private {
        ResultRecord storage r = _results[resultId];
        VerdictRecord storage v = _verdicts[resultId];
        bytes32 requestId = r.requestId;
        Task storage task = _tasks[requestId];
        string memory reason;
        if (v.fieldsHash != r.fieldsHash) {
            reason = "verdict does not match its result";
        } else if (v.verdict == TaskPayloads.VERDICT_REFUSED) {
            r.refused = true;
            emit TaskResultRefused(requestId, resultId, v.reason);
            return;
        } else if (v.submittedAt > task.deadline) {
            reason = "result submitted after the deadline";
        } else if (r.price > task.maxFee) {
            reason = "claim price above max_fee";
        } else if (uint256(r.payout) >> 160 != 0 || r.payout == bytes32(0)) {
            reason = "payout is not an EVM address";
        }
        if (bytes(reason).length != 0) {
            emit TaskMessageIgnored(resultId, reason);
            return;
        }
        task.state = TaskState.Completed; // before any transfer: a re-entrant payout finds it closed
        address payout = address(uint160(uint256(r.payout)));
        uint256 price = r.price;
        uint256 refund = uint256(task.maxFee) - price;
        emit TaskCompleted(requestId, resultId, payout, price, refund);
        _pay(payout, price);
        _pay(task.requester, refund);
    }

    /// Serving side: returns or forfeits the bond of the result waiting for this verdict.
    function _servingVerdict(bytes32 messageId, TaskPayloads.Verdict memory v) private {
        Serving storage s = _serving[v.requestId];
        string memory reason;
        if (s.state != ServeState.Answered || s.resultId != v.resultId) {
            reason = "verdict is not on the result waiting for one";
        } else if (
            v.claimant != bytes32(uint256(uint160(s.claimant))) || v.payout != s.payout || v.price != s.price
        ) {
            reason = "verdict does not match the claim";
        }
        if (bytes(reason).length != 0) {
            emit TaskMessageIgnored(messageId, reason);
            return;
        }
        address claimant = s.claimant;
        uint256 bond = s.bond;
        if (v.verdict == TaskPayloads.VERDICT_VALID) {
            s.state = ServeState.Closed;
            emit BondReturned(v.requestId, v.resultId, claimant, bond);
            _pay(claimant, bond);
            return;
        }
        address refundTo = s.refundTo;
        emit BondForfeited(v.requestId, v.resultId, claimant, refundTo, bond);
        if (block.timestamp <= s.deadline) {
            _reopen(s);
            emit TaskReopened(v.requestId);
        } else {
            s.state = ServeState.Closed;
        }
        _pay(refundTo, bond);
    }

    function _expireClaim(bytes32 requestId, Serving storage s) private {
        address claimant = s.claimant;
        address refundTo = s.refundTo;
        uint256 bond = s.bond;
        _reopen(s);
        emit ClaimExpired(requestId, claimant, refundTo, bond);
        _pay(refundTo, bond);
    }

    function _reopen(Serving storage s) private {
        s.state = ServeState.Open;
        s.claimant = address(0);
        s.claimDeadline = 0;
        s.price = 0;
        s.payout = bytes32(0);
        s.resultId = bytes32(0);
    }

    function _resultFields(bytes memory payload) private pure returns (ResultFields memory f) {
        TaskPayloads.TaskResultV2 memory r = TaskPayloads.decodeResultV2(payload);
        return ResultFields(r.requestId, r.executor, r.outputHash, r.worker, r.claimant, r.payout, r.price);
    }

    /// A bounded-gas transfer that never reverts: a recipient that refuses is credited.
    function _pay(address to, uint256 amount) private {
        if (amount == 0) return;
        bool ok;
        uint256 gasLimit = PAYOUT_GAS;
        assembly ("memory-safe") {
            // No return data copied: a recipient cannot make the caller pay for a huge one.
            ok := call(gasLimit, to, amount, 0, 0, 0, 0)
        }
        if (!ok) {
            credits[to] += amount;
            emit PayoutCredited(to, amount);
        }
    }
}
