// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {CommitteeVerifier} from "../CommitteeVerifier.sol";
import {Batch} from "../lib/Batch.sol";
import {Owned2Step} from "../lib/Owned2Step.sol";

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
/// Several feeds at once (`updateFeeds`, docs/FEEDS.md "One signature per round"): the committee signs
/// one root over a round's reports (docs/PROTOCOL.md "Feed roots"); the signature is checked once
/// and each report, shown to be in the root, is applied with the rules above — a report that is not
/// newer is skipped without reverting the others, and with none newer there is no pairing at all.
///
/// Ownership (registering feeds) moves in two steps, as the Gateway's: `transferOwnership` proposes,
/// the proposed account takes over with `acceptOwnership`, `transferOwnership(address(0))` cancels.
///
/// Times: reports carry milliseconds; rounds store seconds (`startedAt` = observed_at / 1000,
/// `updatedAt` = published_at / 1000, rounded down) because AggregatorV3Interface consumers compare
/// them with `block.timestamp`. The millisecond values are in the `FeedUpdated` event.
contract FeedStore is Owned2Step {
    uint256 public constant REPORT_LEN = 122;
    uint8 public constant MAX_DECIMALS = 18;
    bytes15 internal constant TAG_FEED = "TESSERA/v1/FEED";
    /// ms; relay.feeds.aggregate.MAX_OBSERVED_AFTER_PUBLISHED_MS and the Solana program use the same.
    uint256 public constant MAX_OBSERVED_AFTER_PUBLISHED_MS = 60_000;
    /// ms; relay.feeds.aggregate.MAX_AHEAD_OF_CHAIN_MS and the Solana program use the same.
    uint256 public constant MAX_AHEAD_OF_CHAIN_MS = 120_000;
    /// relay.feeds.multi: leaf = keccak256(0x02 ‖ report); digest = keccak256(TAG_FEED_ROOT ‖ epoch ‖ leaf_count ‖ root).
    bytes19 internal constant TAG_FEED_ROOT = "TESSERA/v1/FEEDROOT";
    uint256 public constant MAX_FEEDS_PER_ROOT = 64;

    /// The committee's signature over a feed root. `y == 0` means no hint (the contract hashes the
    /// digest to G1 itself, with a modexp); otherwise (k, y, ySqrt) is the hint for the root's digest
    /// as for `updateWithHint` (no point has y = 0, so the value is free to mean "none").
    struct RootSignature {
        bytes32 root;
        uint32 leafCount;
        uint32 epoch;
        bytes signature;
        uint8 k;
        uint256 y;
        uint256 ySqrt;
    }

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
    /// One per `updateFeeds` that stored at least one report (the root's signature was checked).
    event FeedRootApplied(bytes32 indexed root, uint32 epoch, uint32 leafCount, uint256 updated, uint256 skipped);

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
    error EmptyFeedBatch();
    error FeedRootSizeInvalid(uint256 leafCount);
    error FeedBatchShapeInvalid(uint256 reports, uint256 indices, uint256 proofs);
    error ReportNotInRoot(uint256 position);
    error FeedRootMismatch(bytes32 computed, bytes32 signed);

    constructor(CommitteeVerifier verifier_, address owner_) Owned2Step(owner_) {
        if (address(verifier_) == address(0)) revert ZeroAddress();
        verifier = verifier_;
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

    /// Several feeds under one committee signature over their root (docs/PROTOCOL.md "Feed roots").
    /// Either `indices` and `proofs` are empty and `reports` are every leaf of the root in order (the
    /// root is recomputed), or each report comes with its leaf index and Merkle proof (any subset, any
    /// order). Every report is checked as by `update` (registered feed, decimals, observations,
    /// confidence, time bounds: these revert the whole call); a report not newer than its feed's
    /// latest is skipped. The signature is verified once, and only when some report is newer: a
    /// replayed root costs no pairing and changes nothing. Returns how many feeds were updated.
    function updateFeeds(
        RootSignature calldata sig,
        bytes[] calldata reports,
        uint256[] calldata indices,
        bytes32[][] calldata proofs
    ) external returns (uint256 updated) {
        (Report[] memory rs, uint256 fresh) = _collect(sig, reports, indices, proofs);
        if (fresh == 0) return 0;
        _verifyRoot(sig);
        updated = _applyFresh(rs, fresh, sig.epoch);
        emit FeedRootApplied(sig.root, sig.epoch, sig.leafCount, updated, rs.length - updated);
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
        Feed memory f = _validate(r);
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

    /// Every check of a report except its signature and ordering; returns its feed.
    function _validate(Report memory r) private view returns (Feed memory f) {
        // A registered id passed _validFeedId, so this also rejects every malformed id.
        f = _feeds[r.feedId];
        if (!f.registered) revert UnknownFeed(r.feedId);
        if (r.decimals != f.decimals) revert WrongDecimals(r.feedId, r.decimals, f.decimals);
        if (r.observations == 0) revert NoObservations();
        if (r.confidence > type(uint120).max) revert ConfidenceTooLarge(r.confidence);
        _checkTimes(r);
    }

    /// updateFeeds' checks before the signature: shape, each report valid and in the root. Returns
    /// the decoded reports and a bit per report that is newer than its feed's stored round.
    function _collect(
        RootSignature calldata sig,
        bytes[] calldata reports,
        uint256[] calldata indices,
        bytes32[][] calldata proofs
    ) private view returns (Report[] memory rs, uint256 fresh) {
        bool full = _checkShape(sig.leafCount, reports.length, indices.length, proofs.length);
        rs = new Report[](reports.length);
        bytes32[] memory leaves = new bytes32[](reports.length);
        for (uint256 i = 0; i < reports.length; ++i) {
            bool newer;
            (rs[i], leaves[i], newer) = _checkLeaf(reports[i]);
            // forge-lint: disable-next-line(incorrect-shift)
            if (newer) fresh |= 1 << i;
        }
        if (full) {
            bytes32 computed = _rootOfLeaves(leaves);
            if (computed != sig.root) revert FeedRootMismatch(computed, sig.root);
        } else {
            for (uint256 i = 0; i < leaves.length; ++i) {
                if (_rootFromLeaf(leaves[i], indices[i], sig.leafCount, proofs[i]) != sig.root) revert ReportNotInRoot(i);
            }
        }
    }

    /// True when `reports` are every leaf in order (no indices, no proofs); reverts on any other shape
    /// than that or one index and proof per report.
    function _checkShape(uint256 leafCount, uint256 n, uint256 nIndices, uint256 nProofs) private pure returns (bool full) {
        if (n == 0) revert EmptyFeedBatch();
        if (leafCount == 0 || leafCount > MAX_FEEDS_PER_ROOT) revert FeedRootSizeInvalid(leafCount);
        full = nIndices == 0 && nProofs == 0;
        if (full ? n != leafCount : (n > MAX_FEEDS_PER_ROOT || nIndices != n || nProofs != n)) {
            revert FeedBatchShapeInvalid(n, nIndices, nProofs);
        }
    }

    /// A report of updateFeeds: decoded and checked, its leaf, and whether it is newer than its feed.
    function _checkLeaf(bytes calldata report) private view returns (Report memory r, bytes32 leaf, bool newer) {
        r = _decode(report);
        Feed memory f = _validate(r);
        leaf = keccak256(abi.encodePacked(bytes1(0x02), report));
        newer = r.round > f.latestRound && r.observedAt >= f.latestObservedAt;
    }

    function _verifyRoot(RootSignature calldata sig) private view {
        bytes32 digest = keccak256(abi.encodePacked(TAG_FEED_ROOT, sig.epoch, sig.leafCount, sig.root));
        if (sig.y == 0) verifier.verifyDigest(digest, sig.epoch, sig.signature);
        else verifier.verifyDigestWithHint(digest, sig.epoch, sig.signature, sig.k, sig.y, sig.ySqrt);
    }

    function _applyFresh(Report[] memory rs, uint256 fresh, uint32 epoch) private returns (uint256 updated) {
        for (uint256 i = 0; i < rs.length; ++i) {
            // forge-lint: disable-next-line(incorrect-shift)
            if (fresh & (1 << i) == 0) continue;
            Report memory r = rs[i];
            // Re-read: an earlier report of this call may have been of the same feed.
            Feed memory f = _feeds[r.feedId];
            if (r.round <= f.latestRound || r.observedAt < f.latestObservedAt) continue;
            _store(r, epoch);
            ++updated;
        }
    }

    /// The batch tree (lib/Batch.sol) over feed leaves: the root a proof leads to, or zero for an
    /// index or a proof length that does not fit the position (then no root matches).
    function _rootFromLeaf(bytes32 node, uint256 index, uint256 width, bytes32[] calldata proof)
        private
        pure
        returns (bytes32)
    {
        if (index >= width) return bytes32(0);
        uint256 used;
        while (width > 1) {
            if (index & 1 == 1 || index + 1 < width) {
                if (used == proof.length) return bytes32(0);
                node = index & 1 == 1 ? Batch.nodeHash(proof[used], node) : Batch.nodeHash(node, proof[used]);
                ++used;
            }
            index >>= 1;
            width = (width + 1) >> 1;
        }
        return used == proof.length ? node : bytes32(0);
    }

    /// The root over all leaves in order (overwrites `leaves`).
    function _rootOfLeaves(bytes32[] memory leaves) private pure returns (bytes32) {
        uint256 width = leaves.length;
        while (width > 1) {
            uint256 half = width >> 1;
            for (uint256 i = 0; i < half; ++i) {
                leaves[i] = Batch.nodeHash(leaves[2 * i], leaves[2 * i + 1]);
            }
            if (width & 1 == 1) {
                leaves[half] = leaves[width - 1]; // promoted
                width = half + 1;
            } else {
                width = half;
            }
        }
        return leaves[0];
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
