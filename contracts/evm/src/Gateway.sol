// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Envelope} from "./lib/Envelope.sol";
import {Batch} from "./lib/Batch.sol";
import {CommitteeVerifier} from "./CommitteeVerifier.sol";
import {ITesseraReceiver} from "./interfaces/ITesseraReceiver.sol";
import {Owned2Step} from "./lib/Owned2Step.sol";

/// The reads of FeedStore (src/feeds/FeedStore.sol) that a quote needs.
interface IPriceFeeds {
    function feed(bytes32 feedId)
        external
        view
        returns (bool registered, uint8 decimals_, uint64 latestRoundId, uint64 latestObservedAtMs);

    function latestRoundData(bytes32 feedId)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}

/// Tessera's messaging endpoint on an EVM chain.
///
/// Outbound: `send` stamps this chain's domain, the caller and the next nonce (0, 1, 2, … with no
/// gaps) on a v1 envelope and emits it in `MessageSent`; attesters watch that event.
/// Inbound: `deliver` (or `deliverWithHint`, the same with a hash-to-curve hint) accepts an
/// envelope addressed to this domain once, if the committee signed it, and hands it to the
/// receiver. A receiver that reverts does not undo the delivery: the message is stored as failed
/// and anyone can re-run it with `retryFailed`.
///
/// Gas: the handler gets `min(gasleft() - GAS_RESERVE, MAX_HANDLER_GAS)`, so the gateway always
/// keeps enough to record the outcome (the EIP-150 63/64 rule alone would leave it only 1/64).
/// A handler failure is recorded (status Failed, `HandlerFailed`) only if the handler was offered
/// all of MAX_HANDLER_GAS. A handler that fails having been offered less — whether it ran out of
/// gas or reverted early because gasleft() was below what it wants — reverts the whole delivery
/// (`InsufficientGasForHandler(handlerGas)`): nothing is consumed and the message stays
/// deliverable. So the gas limit chosen by whoever calls deliver / deliverBatch /
/// deliverWithProof (anyone: the committee's signatures are public), or shrunk by a front-run that
/// makes an earlier handler of a batch burn more, can never decide that a genuine message failed.
/// It also makes `eth_estimateGas` (a search for the lowest limit that does not revert) return a
/// limit at which the handler really gets its full share. A receiver address without code is
/// failed at any gas (it is never called, so gas cannot change the outcome).
/// "Offered" is what the callee really receives: the CALL asks for handlerGas, and EIP-150 caps
/// that at 63/64 of the gas left after the call's own cost. With `available` = gasleft() just
/// before, handlerGas = available - GAS_RESERVE below the cap needs available/64 plus the few
/// hundred gas between the gasleft() and the CALL to fit in GAS_RESERVE: available < 2.05M there,
/// so available/64 < 32,100 < 50,000. At the cap (available >= MAX_HANDLER_GAS + GAS_RESERVE =
/// 2.05M) 63/64 of what is left is >= 2.017M > MAX_HANDLER_GAS. So the callee gets exactly
/// handlerGas in every case (Gateway.t.sol measures it at the boundary).
///
/// Fees: a decrease applies at once, an increase only FEE_INCREASE_DELAY after it is announced
/// (`FeeIncreaseScheduled`), so whoever commits to sending later — a task claimant who must
/// submit its result before a claim deadline and forfeits its bond otherwise — knows the most it
/// will pay (`feeAt`). Task boards fix the requester's side themselves: the escrow is named in the
/// request, the gateway fee is what the caller pays above it (docs/TASKS.md).
///
/// Delivery fees (docs/PROTOCOL.md "Fees"): `quote(dst, payloadLength)` is the
/// flat `fee()` plus the destination's delivery cost — (baseGas + gasPerByte × length) × the gas
/// price the owner posts for that destination — converted into this chain's token with prices
/// from Tessera's own committee-signed feeds (a FeedStore), times (1 + margin). A stale or missing
/// price refuses the quote (and so the send): never a zero fee. `send` charges the quote, refunds
/// any overpayment to the caller, and accrues the fee to `beneficiary` (the relayer operator), who
/// takes it with `claimFees`. A destination without a posted config costs the flat fee only.
/// Senders the owner marks `flatFeeSender` (the task boards) pay `fee()` with no refund: their
/// claimants committed to `feeAt(deadline)` (FEE_INCREASE_DELAY), which a market-priced quote
/// could not honour, and their gateway fee is what the task escrow's caller paid (docs/TASKS.md).
///
/// Pause: the owner can `pause()`; then `send`, every delivery and `retryFailed` revert
/// `GatewayPaused`, until `unpause()`.
///
/// Ownership moves in two steps (lib/Owned2Step.sol, as OpenZeppelin's Ownable2Step):
/// `transferOwnership(newOwner)` only proposes; the owner keeps every power until the proposed
/// account calls `acceptOwnership()`. There is no renounce.
///
/// Batches (docs/PROTOCOL.md, "Batch attestations"): `deliverBatch` checks one committee signature
/// over the Merkle root of a lane's batch and delivers every envelope in it; the root is remembered
/// (`verifiedRoots`), so `deliverWithProof` can later deliver a message of it with its Merkle proof
/// and no pairing. Replay protection and failed handlers are per message, as for `deliver`.
contract Gateway is Owned2Step {
    enum Status {
        None,
        Handled,
        Failed
    }

    /// Kept back from the handler call to record the outcome (status, two events with a bounded
    /// reason). Recording costs < 15k; the rest is margin for the call's own overhead.
    uint256 public constant GAS_RESERVE = 50_000;
    /// Most gas a handler is given; a handler is recorded failed only if offered all of it.
    uint256 public constant MAX_HANDLER_GAS = 2_000_000;
    /// Revert reasons of failed handlers are kept (in the event) up to this many bytes, so a
    /// receiver returning megabytes cannot make the gateway run out of gas copying them.
    uint256 public constant MAX_REASON_LEN = 256;
    /// Notice before a fee increase takes effect.
    uint256 public constant FEE_INCREASE_DELAY = 1 days;
    /// Margins are in basis points of the delivery cost; at most 100 % (10,000).
    uint256 public constant MAX_MARGIN_BPS = 10_000;

    uint32 public immutable localDomain;
    CommitteeVerifier public immutable verifier;

    // Owned2Step's owner (slot 0) and pendingOwner (slot 1) come first; `paused` shares slot 1:
    // one cold read on send and delivery.
    bool public paused;
    uint256 internal _fee;
    /// An announced increase: `pendingFee` applies from `pendingFeeAt` (0: none).
    uint256 public pendingFee;
    uint64 public pendingFeeAt;
    uint64 public nextNonce;
    mapping(bytes32 messageId => Status) internal _status;
    /// Batch roots whose committee signature was checked: their lane's source and their size
    /// (leafCount 0: never verified). A root fixes its leaves, so it is never verified twice.
    struct VerifiedRoot {
        uint32 srcDomain;
        uint32 leafCount;
        uint32 epoch;
    }

    mapping(bytes32 root => VerifiedRoot) public verifiedRoots;

    /// What a delivery to one destination costs: `(baseGas + gasPerByte × payloadLength) × gasPrice`
    /// in the destination token's base units (wei, lamports: `dstDecimals` 18 or 9), priced with the
    /// `dstPriceFeed` feed (destination token in USD) and `maxPriceAge` seconds of staleness at most.
    /// gasPrice 0: no config (the flat fee only).
    struct DestinationFee {
        uint128 gasPrice;
        uint32 baseGas;
        uint32 gasPerByte;
        uint8 dstDecimals;
        uint16 marginBps;
        uint32 maxPriceAge;
        bytes32 dstPriceFeed;
    }

    mapping(uint32 dstDomain => DestinationFee) public destinationFees;
    /// The FeedStore the quote reads, and its feed of this chain's token in USD.
    IPriceFeeds public priceFeeds;
    bytes32 public nativePriceFeed;
    /// Who the fees are paid to (`claimFees`). The gateway holds nothing else: refunds leave in
    /// the send that overpaid, so its balance is the fees accrued since the last claim.
    address public beneficiary;
    mapping(address sender => bool) public flatFeeSender;
    bool private transient _locked;

    event MessageSent(bytes32 indexed messageId, uint64 indexed nonce, uint32 indexed dstDomain, bytes envelope);
    event MessageDelivered(bytes32 indexed messageId, uint32 indexed srcDomain, uint64 nonce, bool handled);
    event HandlerFailed(bytes32 indexed messageId, bytes reason);
    event FailedMessageHandled(bytes32 indexed messageId);
    event FeeChanged(uint256 fee);
    event FeeIncreaseScheduled(uint256 fee, uint64 effectiveAt);
    event FeesClaimed(address indexed beneficiary, uint256 amount);
    /// One per send, in the same transaction as its MessageSent: what the sender paid for it
    /// (relayers read it to decide whether to deliver) and what was refunded.
    event FeePaid(bytes32 indexed messageId, address indexed payer, uint256 fee, uint256 refund);
    event DestinationFeeSet(uint32 indexed dstDomain, DestinationFee config);
    event PriceFeedsSet(address indexed store, bytes32 nativePriceFeed);
    event BeneficiarySet(address indexed beneficiary);
    event FlatFeeSenderSet(address indexed sender, bool flat);
    event Paused(address indexed by);
    event Unpaused(address indexed by);
    event RootVerified(bytes32 indexed root, uint32 indexed srcDomain, uint32 epoch, uint32 leafCount);

    error KindNotSendable(uint8 kind);
    error PayloadTooLong(uint256 length, uint256 max);
    error SameDomain(uint32 domain);
    error ZeroReceiver();
    error FeeTooLow(uint256 paid, uint256 fee);
    error WrongDomain(uint32 dstDomain, uint32 localDomain);
    error RotationNotDeliverable();
    error AlreadyDelivered(bytes32 messageId, uint8 status);
    error NotFailed(bytes32 messageId, uint8 status);
    error InsufficientGasForHandler(uint256 handlerGas);
    error HandlerStillFailing(bytes32 messageId, bytes reason);
    error WithdrawFailed(address to, uint256 amount);
    error NotBeneficiary(address caller, address beneficiary);
    error NothingToClaim();
    error RefundFailed(address payer, uint256 amount);
    error Reentrancy();
    error GatewayPaused();
    error NotPaused();
    /// No FeedStore set (`setPriceFeeds`) while a destination has a fee config.
    error PriceFeedsNotSet();
    /// The feed is not registered or has no round yet: push a price before quoting.
    error PriceMissing(bytes32 feedId);
    /// The feed's latest round is older than the destination's maxPriceAge: push a fresh price.
    error PriceStale(bytes32 feedId, uint256 updatedAt, uint256 maxAge, uint256 blockTimestamp);
    error PriceNotPositive(bytes32 feedId, int256 answer);
    error MarginTooHigh(uint16 marginBps, uint256 max);
    error BadDestinationFee(uint32 dstDomain, string reason);
    /// Recorded as a failed handler's reason (not thrown): dst_receiver has no code, or is not a
    /// left-padded 20-byte address.
    error ReceiverNotAContract(bytes32 receiver);
    /// A batch envelope from another source domain than the batch's first (or the root's lane).
    error LaneMismatch(uint32 srcDomain, uint32 laneSrcDomain);
    /// The envelopes' tree does not have the root named.
    error RootMismatch(bytes32 computed, bytes32 root);
    /// deliverWithProof on a root that no verifyRoot / deliverBatch has verified.
    error RootNotVerified(bytes32 root);
    /// The proof leads to another root than the one named.
    error InvalidProof(bytes32 messageId, bytes32 root);

    modifier whenNotPaused() {
        if (paused) revert GatewayPaused();
        _;
    }

    modifier nonReentrant() {
        if (_locked) revert Reentrancy();
        _locked = true;
        _;
        _locked = false;
    }

    constructor(uint32 localDomain_, address verifier_, uint256 fee_, address owner_) Owned2Step(owner_) {
        if (verifier_ == address(0)) revert ZeroAddress();
        localDomain = localDomain_;
        verifier = CommitteeVerifier(verifier_);
        _fee = fee_;
        beneficiary = owner_;
        emit FeeChanged(fee_);
    }

    // --- outbound ------------------------------------------------------------------------

    function send(uint32 dstDomain, bytes32 receiver, uint8 kind, bytes calldata payload)
        external
        payable
        whenNotPaused
        nonReentrant
        returns (bytes32 messageId, uint64 nonce)
    {
        // COMMITTEE_ROTATION comes from the committee (domain 0), never from a chain's user.
        if (kind < Envelope.KIND_TASK_REQUEST || kind > Envelope.KIND_DATA) revert KindNotSendable(kind);
        if (payload.length > Envelope.MAX_PAYLOAD_LEN) revert PayloadTooLong(payload.length, Envelope.MAX_PAYLOAD_LEN);
        if (dstDomain == localDomain) revert SameDomain(dstDomain);
        if (receiver == bytes32(0)) revert ZeroReceiver();
        (uint256 charged, uint256 refund) = _charge(dstDomain, payload.length);
        (messageId, nonce) = _emitSent(dstDomain, receiver, kind, payload);
        emit FeePaid(messageId, msg.sender, charged, refund);
        if (refund != 0) {
            // Last, to the caller only (no refund address to redirect it); the lock refuses a
            // re-entrant send or claim from the payer's receive().
            (bool ok,) = payable(msg.sender).call{value: refund}("");
            if (!ok) revert RefundFailed(msg.sender, refund);
        }
    }

    // --- inbound -------------------------------------------------------------------------

    function deliver(bytes calldata envelope, uint32 epoch, bytes calldata signature) external whenNotPaused {
        (Envelope.Message memory m, bytes32 messageId) = _admit(envelope);
        verifier.verify(envelope, epoch, signature); // reverts unless the committee signed it
        _accept(messageId, m);
    }

    /// `deliver` with the relayer's hash-to-curve hint (k, y, ySqrt; adapters.evm.hash_to_g1_hint):
    /// the verifier checks the hinted point instead of hashing with modexps, ~4.5k gas less per
    /// increment. Same checks and outcome as `deliver`; a bad hint reverts with the verifier's
    /// Hint* error (or InvalidSignature) and records nothing.
    function deliverWithHint(
        bytes calldata envelope,
        uint32 epoch,
        bytes calldata signature,
        uint8 k,
        uint256 y,
        uint256 ySqrt
    ) external whenNotPaused {
        (Envelope.Message memory m, bytes32 messageId) = _admit(envelope);
        verifier.verifyWithHint(envelope, epoch, signature, k, y, ySqrt);
        _accept(messageId, m);
    }

    // --- batches -------------------------------------------------------------------------

    /// Checks the committee's signature over a batch root once and remembers it, so the batch's
    /// messages can then be delivered one by one with `deliverWithProof` (no pairing each).
    /// Idempotent: a root verified before returns at once.
    function verifyRoot(bytes32 root, uint32 srcDomain, uint32 leafCount, uint32 epoch, bytes calldata signature)
        external
    {
        if (verifiedRoots[root].leafCount != 0) return;
        if (leafCount == 0 || leafCount > Batch.MAX_SIZE) revert Batch.BatchSizeInvalid(leafCount);
        _verifyRoot(root, srcDomain, leafCount, epoch, signature);
    }

    /// Delivers every envelope of a batch of one lane (source domain → this domain) whose root the
    /// committee signed: the signature is checked once (not at all if the root was verified
    /// before), then each message as `deliver` would (a failed handler is recorded as failed and
    /// retryable). A message delivered before (by another relayer, or in another batch) is skipped,
    /// not re-run: the rest of its batch still lands. Returns how many were delivered now.
    function deliverBatch(bytes32 root, uint32 epoch, bytes calldata signature, bytes[] calldata envelopes)
        external
        whenNotPaused
        returns (uint256 delivered)
    {
        uint256 n = envelopes.length;
        if (n == 0 || n > Batch.MAX_SIZE) revert Batch.BatchSizeInvalid(n);
        bytes32[] memory tree = new bytes32[](n);
        uint32 lane;
        for (uint256 i = 0; i < n; ++i) {
            bytes calldata e = envelopes[i];
            (uint32 src, bytes32 id) = _laneOf(e);
            if (i == 0) lane = src;
            else if (src != lane) revert LaneMismatch(src, lane);
            tree[i] = id;
        }
        // The ids are read again below: rootInPlace overwrites the array.
        bytes32 computed = Batch.rootInPlace(tree);
        if (computed != root) revert RootMismatch(computed, root);
        VerifiedRoot memory known = verifiedRoots[root];
        if (known.leafCount == 0) _verifyRoot(root, lane, uint32(n), epoch, signature);
        for (uint256 i = 0; i < n; ++i) {
            bytes calldata e = envelopes[i];
            bytes32 messageId = keccak256(e);
            if (_status[messageId] != Status.None) continue;
            _accept(messageId, Envelope.decode(e));
            ++delivered;
        }
    }

    /// Delivers one message of a verified root with its Merkle proof (relay.batch.merkle_proof:
    /// siblings from the leaf up) and its index in the batch. No pairing: the root's signature was
    /// checked by verifyRoot or deliverBatch. Same checks and outcome as `deliver` otherwise.
    function deliverWithProof(bytes calldata envelope, uint32 index, bytes32[] calldata proof, bytes32 root)
        external
        whenNotPaused
    {
        VerifiedRoot memory known = verifiedRoots[root];
        if (known.leafCount == 0) revert RootNotVerified(root);
        (Envelope.Message memory m, bytes32 messageId) = _admit(envelope);
        if (m.srcDomain != known.srcDomain) revert LaneMismatch(m.srcDomain, known.srcDomain);
        if (Batch.rootFromProof(messageId, index, known.leafCount, proof) != root) revert InvalidProof(messageId, root);
        _accept(messageId, m);
    }

    /// Re-runs the handler of a delivered message whose handler failed (anyone may call it; the
    /// envelope is what was delivered, so its keccak is the stored message id). Reverts with the
    /// handler's reason if it fails again, leaving the message failed.
    function retryFailed(bytes calldata envelope) external whenNotPaused {
        bytes32 messageId = keccak256(envelope);
        Status status = _status[messageId];
        if (status != Status.Failed) revert NotFailed(messageId, uint8(status));
        Envelope.Message memory m = Envelope.decode(envelope);
        _status[messageId] = Status.Handled; // before the call, as in deliver
        (bool ok, bytes memory reason,) = _callHandler(messageId, m);
        if (!ok) revert HandlerStillFailing(messageId, reason);
        emit FailedMessageHandled(messageId);
    }

    /// 0 never delivered, 1 delivered and handled, 2 delivered but the handler failed (retryable).
    function deliveryStatus(bytes32 messageId) external view returns (uint8) {
        return uint8(_status[messageId]);
    }

    // --- fees and ownership ----------------------------------------------------------------

    /// The fee `send` charges now.
    function fee() public view returns (uint256) {
        return feeAt(block.timestamp);
    }

    /// The fee in force at time `t` as far as is known now (an announced increase included).
    function feeAt(uint256 t) public view returns (uint256) {
        uint64 at = pendingFeeAt;
        return at != 0 && t >= at ? pendingFee : _fee;
    }

    /// A lower fee applies at once (and cancels an announced increase); a higher one after
    /// FEE_INCREASE_DELAY, replacing any increase announced before.
    function setFee(uint256 fee_) external onlyOwner {
        uint256 current = fee();
        _fee = current;
        if (fee_ <= current) {
            _fee = fee_;
            pendingFee = 0;
            pendingFeeAt = 0;
            emit FeeChanged(fee_);
        } else {
            uint64 at = uint64(block.timestamp + FEE_INCREASE_DELAY);
            pendingFee = fee_;
            pendingFeeAt = at;
            emit FeeIncreaseScheduled(fee_, at);
        }
    }

    /// What `send` charges a (non flat-fee) sender for `payloadLength` bytes to `dstDomain`: the flat
    /// fee plus the destination's delivery cost in this chain's wei (0 without a config). Reverts
    /// PriceMissing / PriceStale / PriceNotPositive / PriceFeedsNotSet instead of quoting without a
    /// price. Rounded up.
    function quote(uint32 dstDomain, uint256 payloadLength) public view returns (uint256) {
        return fee() + deliveryCost(dstDomain, payloadLength);
    }

    /// The destination's delivery cost alone, converted and with the margin (see `quote`).
    function deliveryCost(uint32 dstDomain, uint256 payloadLength) public view returns (uint256) {
        DestinationFee memory c = destinationFees[dstDomain];
        if (c.gasPrice == 0) return 0;
        IPriceFeeds store = priceFeeds;
        if (address(store) == address(0)) revert PriceFeedsNotSet();
        (uint256 srcPrice, uint8 srcFeedDecimals) = _price(store, nativePriceFeed, c.maxPriceAge);
        (uint256 dstPrice, uint8 dstFeedDecimals) = _price(store, c.dstPriceFeed, c.maxPriceAge);
        uint256 cost = (uint256(c.baseGas) + uint256(c.gasPerByte) * payloadLength) * c.gasPrice;
        // cost [dst base units] × dstPrice / 10^(dstDecimals + dstFeedDecimals) = USD;
        // USD × 10^(18 + srcFeedDecimals) / srcPrice = wei here.
        uint256 num = cost * dstPrice * (10 ** (18 + uint256(srcFeedDecimals))) * (MAX_MARGIN_BPS + c.marginBps);
        uint256 den = srcPrice * (10 ** (uint256(c.dstDecimals) + dstFeedDecimals)) * MAX_MARGIN_BPS;
        return (num + den - 1) / den;
    }

    /// Posts (or, with gasPrice 0, removes) the delivery cost of one destination.
    function setDestinationFee(uint32 dstDomain, DestinationFee calldata config) external onlyOwner {
        if (dstDomain == localDomain) revert SameDomain(dstDomain);
        if (config.marginBps > MAX_MARGIN_BPS) revert MarginTooHigh(config.marginBps, MAX_MARGIN_BPS);
        if (config.gasPrice != 0) {
            if (config.dstPriceFeed == bytes32(0)) revert BadDestinationFee(dstDomain, "dstPriceFeed is zero");
            if (config.maxPriceAge == 0) revert BadDestinationFee(dstDomain, "maxPriceAge is zero");
            if (config.dstDecimals > 36) revert BadDestinationFee(dstDomain, "dstDecimals above 36");
        }
        destinationFees[dstDomain] = config;
        emit DestinationFeeSet(dstDomain, config);
    }

    function setPriceFeeds(address store, bytes32 nativePriceFeed_) external onlyOwner {
        if (store == address(0)) revert ZeroAddress();
        priceFeeds = IPriceFeeds(store);
        nativePriceFeed = nativePriceFeed_;
        emit PriceFeedsSet(store, nativePriceFeed_);
    }

    function setBeneficiary(address beneficiary_) external onlyOwner {
        if (beneficiary_ == address(0)) revert ZeroAddress();
        beneficiary = beneficiary_;
        emit BeneficiarySet(beneficiary_);
    }

    /// Marks a sender (a task board) as paying the flat, delayed `fee()` instead of the quote.
    function setFlatFeeSender(address sender, bool flat) external onlyOwner {
        flatFeeSender[sender] = flat;
        emit FlatFeeSenderSet(sender, flat);
    }

    /// Fees accrued since the last claim (the gateway's balance).
    function accruedFees() public view returns (uint256) {
        return address(this).balance;
    }

    /// Pays every accrued fee to the beneficiary; only the beneficiary may call it. The lock
    /// refuses a claim re-entered from the beneficiary's receive() (it would find 0 anyway).
    function claimFees() external nonReentrant returns (uint256 amount) {
        address to = beneficiary;
        if (msg.sender != to) revert NotBeneficiary(msg.sender, to);
        amount = address(this).balance;
        if (amount == 0) revert NothingToClaim();
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert WithdrawFailed(to, amount);
        emit FeesClaimed(to, amount);
    }

    function pause() external onlyOwner {
        if (paused) revert GatewayPaused();
        paused = true;
        emit Paused(msg.sender);
    }

    function unpause() external onlyOwner {
        if (!paused) revert NotPaused();
        paused = false;
        emit Unpaused(msg.sender);
    }

    // --- internals -----------------------------------------------------------------------

    /// The fee of a send (the quote, or `fee()` for a flat-fee sender), accrued to the beneficiary,
    /// and the overpayment to refund (none to a flat-fee sender: what a task board forwards is its fee).
    function _charge(uint32 dstDomain, uint256 payloadLength) private returns (uint256 charged, uint256 refund) {
        bool flat = flatFeeSender[msg.sender];
        uint256 fee_ = flat ? fee() : quote(dstDomain, payloadLength);
        if (msg.value < fee_) revert FeeTooLow(msg.value, fee_);
        refund = flat ? 0 : msg.value - fee_;
        charged = msg.value - refund;
    }

    function _emitSent(uint32 dstDomain, bytes32 receiver, uint8 kind, bytes calldata payload)
        private
        returns (bytes32 messageId, uint64 nonce)
    {
        nonce = nextNonce++;
        bytes memory envelope = abi.encodePacked(
            Envelope.VERSION,
            kind,
            nonce,
            localDomain,
            bytes32(uint256(uint160(msg.sender))),
            dstDomain,
            receiver,
            payload
        );
        messageId = keccak256(envelope);
        emit MessageSent(messageId, nonce, dstDomain, envelope);
    }

    function _price(IPriceFeeds store, bytes32 feedId, uint256 maxAge) private view returns (uint256, uint8) {
        (bool registered, uint8 feedDecimals, uint64 latest,) = store.feed(feedId);
        if (!registered || latest == 0) revert PriceMissing(feedId);
        (, int256 answer,, uint256 updatedAt,) = store.latestRoundData(feedId);
        if (answer <= 0) revert PriceNotPositive(feedId, answer);
        if (updatedAt + maxAge < block.timestamp) revert PriceStale(feedId, updatedAt, maxAge, block.timestamp);
        return (uint256(answer), feedDecimals);
    }

    /// The checks of a delivery that come before the signature: decodable (version 1), addressed
    /// to this domain, not a rotation, not delivered before.
    function _admit(bytes calldata envelope) private view returns (Envelope.Message memory m, bytes32 messageId) {
        m = Envelope.decode(envelope); // reverts on a version other than 1
        if (m.dstDomain != localDomain) revert WrongDomain(m.dstDomain, localDomain);
        if (m.kind == Envelope.KIND_COMMITTEE_ROTATION) revert RotationNotDeliverable();
        messageId = keccak256(envelope);
        Status status = _status[messageId];
        if (status != Status.None) revert AlreadyDelivered(messageId, uint8(status));
    }

    /// A batch envelope's source domain and message id, after the checks `_admit` makes before the
    /// signature (long enough, version 1, a deliverable kind, addressed to this domain).
    function _laneOf(bytes calldata e) private view returns (uint32 src, bytes32 id) {
        if (e.length < Envelope.HEADER_LEN) revert Envelope.EnvelopeTooShort(e.length);
        if (e.length > Envelope.HEADER_LEN + Envelope.MAX_PAYLOAD_LEN) {
            revert Envelope.PayloadTooLong(e.length - Envelope.HEADER_LEN);
        }
        uint8 version = uint8(e[0]);
        uint8 kind = uint8(e[1]);
        if (version != Envelope.VERSION) revert Envelope.UnsupportedVersion(version);
        if (kind < Envelope.KIND_TASK_REQUEST || kind > Envelope.KIND_COMMITTEE_ROTATION) revert Envelope.UnknownKind(kind);
        if (kind == Envelope.KIND_COMMITTEE_ROTATION) revert RotationNotDeliverable();
        src = uint32(bytes4(e[10:14]));
        uint32 dst = uint32(bytes4(e[46:50]));
        if (dst != localDomain) revert WrongDomain(dst, localDomain);
        id = keccak256(e);
    }

    function _verifyRoot(bytes32 root, uint32 srcDomain, uint32 leafCount, uint32 epoch, bytes calldata signature)
        private
    {
        verifier.verifyDigest(Batch.digest(epoch, srcDomain, localDomain, leafCount, root), epoch, signature);
        verifiedRoots[root] = VerifiedRoot(srcDomain, leafCount, epoch);
        emit RootVerified(root, srcDomain, epoch, leafCount);
    }

    /// A verified delivery: recorded, then handed to the receiver.
    function _accept(bytes32 messageId, Envelope.Message memory m) private {
        // Accepted before the receiver runs: a re-entrant deliver of the same envelope is refused.
        _status[messageId] = Status.Handled;
        (bool ok, bytes memory reason, uint256 handlerGas) = _callHandler(messageId, m);
        if (!ok) {
            // Recorded failed only when offered all of MAX_HANDLER_GAS; handlerGas 0 is a receiver
            // without code, which was never called and fails at any gas.
            if (handlerGas != 0 && handlerGas < MAX_HANDLER_GAS) revert InsufficientGasForHandler(handlerGas);
            _status[messageId] = Status.Failed;
            emit HandlerFailed(messageId, reason);
        }
        emit MessageDelivered(messageId, m.srcDomain, m.nonce, ok);
    }

    function _callHandler(bytes32 messageId, Envelope.Message memory m)
        private
        returns (bool ok, bytes memory reason, uint256 handlerGas)
    {
        address target = address(uint160(uint256(m.dstReceiver)));
        // Solidity's own extcodesize check would revert the whole delivery (uncatchable), so an
        // account without code is caught here and counts as a failed handler.
        if (uint256(m.dstReceiver) >> 160 != 0 || target.code.length == 0) {
            return (false, abi.encodeWithSelector(ReceiverNotAContract.selector, m.dstReceiver), 0);
        }
        bytes memory data = abi.encodeCall(
            ITesseraReceiver.handleMessage, (messageId, m.srcDomain, m.srcSender, m.kind, m.nonce, m.payload)
        );
        uint256 available = gasleft();
        if (available <= GAS_RESERVE) revert InsufficientGasForHandler(0);
        handlerGas = available - GAS_RESERVE;
        if (handlerGas > MAX_HANDLER_GAS) handlerGas = MAX_HANDLER_GAS;
        // A low-level call instead of try/catch: try/catch copies the whole revert data, and a
        // receiver returning a huge reason could then exhaust the reserve.
        uint256 maxReason = MAX_REASON_LEN;
        assembly ("memory-safe") {
            ok := call(handlerGas, target, 0, add(data, 32), mload(data), 0, 0)
            let size := returndatasize()
            if gt(size, maxReason) { size := maxReason }
            reason := mload(0x40)
            mstore(reason, size)
            returndatacopy(add(reason, 32), 0, size)
            mstore(0x40, add(add(reason, 32), and(add(size, 31), not(31))))
        }
        if (ok) reason = "";
    }
}
