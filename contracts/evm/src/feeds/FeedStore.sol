// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {CommitteeVerifier} from "../CommitteeVerifier.sol";

/// Committee-signed feed reports (docs/FEEDS.md), one history per feed.
///
/// Anyone may submit a report: `update` (or `updateWithHint`, the same with a hash-to-curve hint,
/// no modexp on-chain) decodes the 122-byte v1 report strictly, checks the committee signed its
/// FEED digest for `epoch`, and stores it as a new round when it is newer than the feed's latest
/// (higher round, observed no earlier). `tryUpdate*` return false instead of reverting when the
/// report is merely not newer, so a pull consumer racing the pusher with the same report does not
/// fail its whole transaction.
///
/// Time bounds (docs/FEEDS.md "Time bounds"): observed_at may follow published_at by at most
/// MAX_OBSERVED_AFTER_PUBLISHED_MS, and neither may be more than MAX_AHEAD_OF_CHAIN_MS ahead of
/// block.timestamp. Without them one report with observed_at = 2^64 - 1 would freeze the feed for ever
/// (every later report would be "observed earlier"); with them such a report is refused, and the
/// furthest a stored observed_at can lead the chain's clock is MAX_AHEAD_OF_CHAIN_MS.
///
/// Times: reports carry milliseconds; rounds store seconds (`startedAt` = observed_at / 1000,
/// `updatedAt` = published_at / 1000, rounded down) because AggregatorV3Interface consumers compare
/// them with `block.timestamp`. The millisecond values are in the `FeedUpdated` event.
contract FeedStore {
    uint256 public constant REPORT_LEN = 122;
    uint8 public constant MAX_DECIMALS = 18;
    bytes15 internal constant TAG_FEED = "TESSERA/v1/FEED";
    /// ms; relay.feeds.aggregate.MAX_OBSERVED_AFTER_PUBLISHED_MS and the Solana program use the same.
    uint256 public constant MAX_OBSERVED_AFTER_PUBLISHED_MS = 60_000;
    /// ms; relay.feeds.aggregate.MAX_AHEAD_OF_CHAIN_MS and the Solana program use the same.
    uint256 public constant MAX_AHEAD_OF_CHAIN_MS = 120_000;

    struct Feed {
        bool registered;
        uint8 decimals;
        uint64 latestRound;
        /// ms: observed_at of the latest round (a newer report may not have been observed earlier).
        uint64 latestObservedAt;
    }

    /// Two slots per round. Confidence is kept to 120 bits (1.3e36, far above any price interval
    /// at ≤ 18 decimals); a report with a wider one is refused (ConfidenceTooLarge), not truncated.
    struct Round {
        int256 answer;
        uint64 startedAt; // s
        uint64 updatedAt; // s
        uint8 observations;
        uint120 confidence;
    }

    CommitteeVerifier public immutable verifier;
    address public owner;

    mapping(bytes32 feedId => Feed) internal _feeds;
    mapping(bytes32 feedId => string) internal _descriptions;
    mapping(bytes32 feedId => mapping(uint80 roundId => Round)) internal _rounds;

    event FeedRegistered(bytes32 indexed feedId, uint8 decimals, string description);
    event FeedUpdated(
        bytes32 indexed feedId,
        uint80 indexed roundId,
        int256 answer,
        uint256 confidence,
        uint8 observations,
        uint64 observedAtMs,
        uint64 publishedAtMs,
        uint32 epoch
    );
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error ZeroAddress();
    error BadFeedId(bytes32 feedId);
    error BadDecimals(uint8 decimals);
    error FeedAlreadyRegistered(bytes32 feedId);
    error UnknownFeed(bytes32 feedId);
    error BadReportLength(uint256 length);
    error WrongDecimals(bytes32 feedId, uint8 reportDecimals, uint8 feedDecimals);
    error NoObservations();
    error ConfidenceTooLarge(uint256 confidence);
    error StaleReport(bytes32 feedId, uint64 round, uint64 latestRound);
    error ObservedAfterPublished(uint64 observedAtMs, uint64 publishedAtMs);
    error ReportFromTheFuture(uint64 observedAtMs, uint64 publishedAtMs, uint256 blockTimestamp);
    error NoDataPresent(bytes32 feedId, uint80 roundId);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(CommitteeVerifier verifier_, address owner_) {
        if (address(verifier_) == address(0) || owner_ == address(0)) revert ZeroAddress();
        verifier = verifier_;
        owner = owner_;
    }

    // --- admin ---------------------------------------------------------------------------

    /// `feedId`: 1..32 printable ASCII bytes, zero-padded on the right (relay.feeds.encode_feed_id).
    function registerFeed(bytes32 feedId, uint8 decimals_, string calldata description_) external onlyOwner {
        if (!_validFeedId(feedId)) revert BadFeedId(feedId);
        if (decimals_ > MAX_DECIMALS) revert BadDecimals(decimals_);
        if (_feeds[feedId].registered) revert FeedAlreadyRegistered(feedId);
        _feeds[feedId] = Feed(true, decimals_, 0, 0);
        _descriptions[feedId] = description_;
        emit FeedRegistered(feedId, decimals_, description_);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    // --- updates -------------------------------------------------------------------------

    function update(bytes calldata report, uint32 epoch, bytes calldata signature) external {
        _update(report, epoch, signature, false, 0, 0, 0, true);
    }

    /// `update` with the hash to G1 of the report digest given as a hint (see
    /// CommitteeVerifier.verifyDigestWithHint; adapters.evm.hash_to_g1_hint computes it).
    function updateWithHint(bytes calldata report, uint32 epoch, bytes calldata signature, uint8 k, uint256 y, uint256 ySqrt)
        external
    {
        _update(report, epoch, signature, true, k, y, ySqrt, true);
    }

    /// Like `update`, but returns false (and changes nothing) when the report is valid in form but
    /// not newer than the stored one. Every other problem still reverts.
    function tryUpdate(bytes calldata report, uint32 epoch, bytes calldata signature) external returns (bool) {
        return _update(report, epoch, signature, false, 0, 0, 0, false);
    }

    function tryUpdateWithHint(
        bytes calldata report,
        uint32 epoch,
        bytes calldata signature,
        uint8 k,
        uint256 y,
        uint256 ySqrt
    ) external returns (bool) {
        return _update(report, epoch, signature, true, k, y, ySqrt, false);
    }

    // --- reads ---------------------------------------------------------------------------

    function feed(bytes32 feedId)
        external
        view
        returns (bool registered, uint8 decimals_, uint64 latestRoundId, uint64 latestObservedAtMs)
    {
        Feed memory f = _feeds[feedId];
        return (f.registered, f.decimals, f.latestRound, f.latestObservedAt);
    }

    function decimals(bytes32 feedId) external view returns (uint8) {
        Feed memory f = _feeds[feedId];
        if (!f.registered) revert UnknownFeed(feedId);
        return f.decimals;
    }

    function description(bytes32 feedId) external view returns (string memory) {
        if (!_feeds[feedId].registered) revert UnknownFeed(feedId);
        return _descriptions[feedId];
    }

    function latestRound(bytes32 feedId) external view returns (uint80) {
        return _feeds[feedId].latestRound;
    }

    /// Reverts NoDataPresent for a round that was never stored (rounds the pusher skipped included).
    function getRound(bytes32 feedId, uint80 roundId)
        public
        view
        returns (int256 answer, uint256 startedAt, uint256 updatedAt, uint256 confidence, uint8 observations)
    {
        Round memory r = _rounds[feedId][roundId];
        if (r.observations == 0) revert NoDataPresent(feedId, roundId);
        return (r.answer, r.startedAt, r.updatedAt, r.confidence, r.observations);
    }

    function latestRoundData(bytes32 feedId)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        roundId = _feeds[feedId].latestRound;
        (answer, startedAt, updatedAt,,) = getRound(feedId, roundId);
        answeredInRound = roundId;
    }

    // --- internals -----------------------------------------------------------------------

    /// A decoded v1 report (memory: the update path has too many locals for the stack).
    struct Report {
        bytes32 feedId;
        uint64 round;
        int256 price;
        uint256 confidence;
        uint8 decimals;
        uint8 observations;
        uint64 observedAt; // ms
        uint64 publishedAt; // ms
    }

    function _update(
        bytes calldata report,
        uint32 epoch,
        bytes calldata signature,
        bool hinted,
        uint8 k,
        uint256 y,
        uint256 ySqrt,
        bool revertIfStale
    ) private returns (bool) {
        Report memory r = _decode(report);
        // A registered id passed _validFeedId, so this also rejects every malformed id.
        Feed memory f = _feeds[r.feedId];
        if (!f.registered) revert UnknownFeed(r.feedId);
        if (r.decimals != f.decimals) revert WrongDecimals(r.feedId, r.decimals, f.decimals);
        if (r.observations == 0) revert NoObservations();
        if (r.confidence > type(uint120).max) revert ConfidenceTooLarge(r.confidence);
        _checkTimes(r);
        if (r.round <= f.latestRound || r.observedAt < f.latestObservedAt) {
            if (revertIfStale) revert StaleReport(r.feedId, r.round, f.latestRound);
            return false;
        }

        bytes32 digest = keccak256(abi.encodePacked(TAG_FEED, epoch, keccak256(report)));
        if (hinted) verifier.verifyDigestWithHint(digest, epoch, signature, k, y, ySqrt);
        else verifier.verifyDigest(digest, epoch, signature);

        _store(r, epoch);
        return true;
    }

    /// The time bounds (contract comment). Sums in uint256: a uint64 near 2^64 is refused, not wrapped.
    function _checkTimes(Report memory r) private view {
        if (uint256(r.observedAt) > uint256(r.publishedAt) + MAX_OBSERVED_AFTER_PUBLISHED_MS) {
            revert ObservedAfterPublished(r.observedAt, r.publishedAt);
        }
        uint256 latestMs = block.timestamp * 1000 + MAX_AHEAD_OF_CHAIN_MS;
        if (r.observedAt > latestMs || r.publishedAt > latestMs) {
            revert ReportFromTheFuture(r.observedAt, r.publishedAt, block.timestamp);
        }
    }

    function _store(Report memory r, uint32 epoch) private {
        _feeds[r.feedId] = Feed(true, r.decimals, r.round, r.observedAt);
        _rounds[r.feedId][uint80(r.round)] =
            Round(r.price, r.observedAt / 1000, r.publishedAt / 1000, r.observations, uint120(r.confidence));
        emit FeedUpdated(
            r.feedId, uint80(r.round), r.price, r.confidence, r.observations, r.observedAt, r.publishedAt, epoch
        );
    }

    function _decode(bytes calldata report) private pure returns (Report memory r) {
        if (report.length != REPORT_LEN) revert BadReportLength(report.length);
        // Packed big-endian: feed_id 32 ‖ round 8 ‖ price 32 ‖ confidence 32 ‖ decimals 1 ‖
        // observations 1 ‖ observed_at 8 ‖ published_at 8.
        r.feedId = bytes32(report[0:32]);
        r.round = uint64(bytes8(report[32:40]));
        r.price = int256(uint256(bytes32(report[40:72])));
        r.confidence = uint256(bytes32(report[72:104]));
        r.decimals = uint8(report[104]);
        r.observations = uint8(report[105]);
        r.observedAt = uint64(bytes8(report[106:114]));
        r.publishedAt = uint64(bytes8(report[114:122]));
    }

    function _validFeedId(bytes32 feedId) private pure returns (bool) {
        // Printable ASCII (0x20..0x7e) then only zero bytes, at least one character.
        bool padding;
        for (uint256 i = 0; i < 32; i++) {
            uint8 c = uint8(feedId[i]);
            if (c == 0) {
                if (i == 0) return false;
                padding = true;
            } else if (padding || c < 0x20 || c > 0x7e) {
                return false;
            }
        }
        return true;
    }
}
