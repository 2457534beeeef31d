// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Owned2Step} from "../src/lib/Owned2Step.sol";
import {Test} from "./utils/Test.sol";
import {BN254} from "../src/lib/BN254.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {FeedStore} from "../src/feeds/FeedStore.sol";
import {TesseraAggregator} from "../src/feeds/TesseraAggregator.sol";
import {PullConsumer} from "../src/feeds/PullConsumer.sol";

/// FeedStore, TesseraAggregator and PullConsumer against tests/vectors/feeds_v1.json: the signed
/// round (3-of-4 committee, epoch 1) that the Python and Solana readers also check.
contract FeedsStoreTest is Test {
    string internal constant VECTORS = "../../tests/vectors/feeds_v1.json";
    bytes32 internal constant ETH_USD = bytes32("ETH/USD");
    uint256 internal constant P = 0x30644e72e131a029b85045b68181585d97816a916871ca8d3c208c16d87cfd47;

    CommitteeVerifier internal verifier;
    FeedStore internal store;
    TesseraAggregator internal aggregator;
    bytes internal report;
    bytes internal signature;
    string internal json;

    function setUp() public {
        json = vm.readFile(VECTORS);
        verifier = new CommitteeVerifier(31337, 1, 4, 3, vm.parseJsonBytes(json, ".signed_round.committee.group_key"));
        store = new FeedStore(verifier, address(this));
        store.registerFeed(ETH_USD, 8, "Ether in US dollars");
        aggregator = new TesseraAggregator(store, ETH_USD);
        report = vm.parseJsonBytes(json, ".signed_round.report.encoded");
        signature = vm.parseJsonBytes(json, ".signed_round.signature");
        vm.warp(PUBLISHED_S); // the chain's clock at the report's published_at
    }

    uint64 internal constant OBSERVED_MS = 1795431722700;
    uint64 internal constant PUBLISHED_MS = 1795431723000;
    uint256 internal constant PUBLISHED_S = 1795431723;

    /// The report with other times (its signature then no longer verifies: the time checks come first).
    function _withTimes(bytes memory r, uint64 observedMs, uint64 publishedMs) internal pure returns (bytes memory out) {
        out = bytes.concat(r);
        for (uint256 i = 0; i < 8; i++) {
            out[106 + i] = bytes1(uint8(observedMs >> (56 - 8 * i)));
            out[114 + i] = bytes1(uint8(publishedMs >> (56 - 8 * i)));
        }
    }

    function _digest(bytes memory r, uint32 epoch) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("TESSERA/v1/FEED", epoch, keccak256(r)));
    }

    /// (k, y, ySqrt) as adapters.evm.hash_to_g1_hint gives them.
    function _hint(bytes32 digest) internal view returns (uint8 k, uint256 y, uint256 ySqrt) {
        (, uint256 hy, uint256 increments) = verifier.hashToG1(digest);
        (bool ok, bytes memory out) = address(5).staticcall(abi.encode(32, 32, 32, hy, (P + 1) / 4, P));
        assertTrue(ok, "modexp");
        return (uint8(increments), hy, abi.decode(out, (uint256)));
    }

    function _checkSignedRound() internal view {
        (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound) =
            aggregator.latestRoundData();
        assertEq(roundId, 11, "roundId");
        assertEq(uint256(answer), 345650000000, "answer");
        assertEq(startedAt, 1795431722, "startedAt = observed_at / 1000");
        assertEq(updatedAt, 1795431723, "updatedAt = published_at / 1000");
        assertEq(answeredInRound, 11, "answeredInRound");
        (,,, uint256 confidence, uint8 observations) = store.getRound(ETH_USD, 11);
        assertEq(confidence, 50000000, "confidence");
        assertEq(observations, 4, "observations");
    }

    function test_vectorDigestsMatch() public view {
        assertEq(_digest(report, 1), vm.parseJsonBytes32(json, ".signed_round.report.digests.1"), "digest epoch 1");
        assertEq(_digest(report, 0), vm.parseJsonBytes32(json, ".signed_round.report.digests.0"), "digest epoch 0");
    }

    function test_signedRoundUpdates() public {
        vm.expectEmit();
        emit FeedStore.FeedUpdated(ETH_USD, 11, 345650000000, 50000000, 4, 1795431722700, 1795431723000, 1);
        store.update(report, 1, signature);
        _checkSignedRound();
        (bool registered, uint8 decimals_, uint64 latest, uint64 observedAt) = store.feed(ETH_USD);
        assertTrue(registered && decimals_ == 8 && latest == 11 && observedAt == 1795431722700, "feed state");
    }

    function test_signedRoundUpdatesWithHint() public {
        (uint8 k, uint256 y, uint256 ySqrt) = _hint(_digest(report, 1));
        store.updateWithHint(report, 1, signature, k, y, ySqrt);
        _checkSignedRound();
    }

    function test_gasOfUpdates() public {
        uint256 before = gasleft();
        store.update(report, 1, signature);
        uint256 plain = before - gasleft();
        FeedStore other = new FeedStore(verifier, address(this));
        other.registerFeed(ETH_USD, 8, "");
        (uint8 k, uint256 y, uint256 ySqrt) = _hint(_digest(report, 1));
        before = gasleft();
        other.updateWithHint(report, 1, signature, k, y, ySqrt);
        uint256 hinted = before - gasleft();
        assertTrue(hinted < plain, "the hint must make the update cheaper");
        emit log_named_uint("update gas (first round, cold, in-test)", plain);
        emit log_named_uint("updateWithHint gas (first round, cold, in-test)", hinted);
    }

    event log_named_uint(string key, uint256 val);

    function test_tamperedReportRejected() public {
        bytes memory tampered = bytes.concat(report);
        tampered[71] = bytes1(uint8(tampered[71]) ^ 1); // last byte of the price
        vm.expectRevert(BN254.InvalidSignature.selector);
        store.update(tampered, 1, signature);
        (uint8 k, uint256 y, uint256 ySqrt) = _hint(_digest(tampered, 1));
        vm.expectRevert(BN254.InvalidSignature.selector);
        store.updateWithHint(tampered, 1, signature, k, y, ySqrt);
        vm.expectRevert(BN254.InvalidSignature.selector);
        store.tryUpdate(tampered, 1, signature);
    }

    function test_tamperedSignatureRejected() public {
        bytes memory sig = bytes.concat(signature);
        sig[63] = bytes1(uint8(sig[63]) ^ 1);
        vm.expectRevert();
        store.update(report, 1, sig);
    }

    function test_hintOfAnotherDigestRejected() public {
        (uint8 k, uint256 y, uint256 ySqrt) = _hint(_digest(report, 0));
        vm.expectRevert();
        store.updateWithHint(report, 1, signature, k, y, ySqrt);
    }

    function test_wrongEpochRejected() public {
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.UnknownEpoch.selector, uint32(2), uint32(1)));
        store.update(report, 2, signature);
        // The committee is epoch 1's, so epoch 0 is unknown too: the digest binds the epoch anyway.
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.UnknownEpoch.selector, uint32(0), uint32(1)));
        store.update(report, 0, signature);
    }

    function test_wrongFeedDecimalsRejected() public {
        FeedStore other = new FeedStore(verifier, address(this));
        other.registerFeed(ETH_USD, 6, "six decimals");
        vm.expectRevert(abi.encodeWithSelector(FeedStore.WrongDecimals.selector, ETH_USD, uint8(8), uint8(6)));
        other.update(report, 1, signature);
    }

    function test_unregisteredFeedRejected() public {
        FeedStore other = new FeedStore(verifier, address(this));
        vm.expectRevert(abi.encodeWithSelector(FeedStore.UnknownFeed.selector, ETH_USD));
        other.update(report, 1, signature);
    }

    function test_oldRoundRejectedAndTryUpdateReturnsFalse() public {
        store.update(report, 1, signature);
        vm.expectRevert(abi.encodeWithSelector(FeedStore.StaleReport.selector, ETH_USD, uint64(11), uint64(11)));
        store.update(report, 1, signature);
        (uint8 k, uint256 y, uint256 ySqrt) = _hint(_digest(report, 1));
        vm.expectRevert(abi.encodeWithSelector(FeedStore.StaleReport.selector, ETH_USD, uint64(11), uint64(11)));
        store.updateWithHint(report, 1, signature, k, y, ySqrt);
        assertTrue(!store.tryUpdate(report, 1, signature), "tryUpdate of the same round returns false");
        assertTrue(!store.tryUpdateWithHint(report, 1, signature, k, y, ySqrt), "hinted tryUpdate too");
        _checkSignedRound();
    }

    /// The feed-freeze attack: observed_at = 2^64 - 1 would make every later report "older". Refused
    /// before the signature is even checked, so it is refused whoever signed it (the anvil e2e test
    /// tests/e2e/test_evm_feed_time_bounds.py pushes the same reports signed by a real committee).
    function test_reportObservedFarInTheFutureIsRefused() public {
        uint64 max = type(uint64).max;
        bytes memory frozen = _withTimes(report, max, PUBLISHED_MS);
        vm.expectRevert(abi.encodeWithSelector(FeedStore.ObservedAfterPublished.selector, max, PUBLISHED_MS));
        store.update(frozen, 1, signature);
        vm.expectRevert(abi.encodeWithSelector(FeedStore.ObservedAfterPublished.selector, max, PUBLISHED_MS));
        store.tryUpdate(frozen, 1, signature); // not "merely old": tryUpdate reverts too
        bytes memory bothMax = _withTimes(report, max, max);
        vm.expectRevert(abi.encodeWithSelector(FeedStore.ReportFromTheFuture.selector, max, max, PUBLISHED_S));
        store.update(bothMax, 1, signature);
        (, , uint64 latest, uint64 observedAt) = store.feed(ETH_USD);
        assertTrue(latest == 0 && observedAt == 0, "nothing stored");
    }

    function test_observedAtMayFollowPublishedAtByTheSkewOnly() public {
        uint64 limit = PUBLISHED_MS + uint64(store.MAX_OBSERVED_AFTER_PUBLISHED_MS());
        vm.warp(PUBLISHED_S + 3600);
        vm.expectRevert(abi.encodeWithSelector(FeedStore.ObservedAfterPublished.selector, limit + 1, PUBLISHED_MS));
        store.update(_withTimes(report, limit + 1, PUBLISHED_MS), 1, signature);
        // At the limit the time checks pass: what refuses it is the signature (the times changed).
        vm.expectRevert(BN254.InvalidSignature.selector);
        store.update(_withTimes(report, limit, PUBLISHED_MS), 1, signature);
    }

    function test_signedReportAheadOfTheChainClockIsRefusedUntilTheClockCatchesUp() public {
        uint256 tolerance = store.MAX_AHEAD_OF_CHAIN_MS() / 1000;
        vm.warp(PUBLISHED_S - tolerance - 1);
        vm.expectRevert(
            abi.encodeWithSelector(FeedStore.ReportFromTheFuture.selector, OBSERVED_MS, PUBLISHED_MS, PUBLISHED_S - tolerance - 1)
        );
        store.update(report, 1, signature);
        vm.expectRevert(
            abi.encodeWithSelector(FeedStore.ReportFromTheFuture.selector, OBSERVED_MS, PUBLISHED_MS, PUBLISHED_S - tolerance - 1)
        );
        store.tryUpdate(report, 1, signature);
        vm.warp(PUBLISHED_S - tolerance); // published_at is exactly at the tolerance now
        store.update(report, 1, signature);
        _checkSignedRound();
    }

    function test_invalidReportVectorsRejected() public {
        uint256 n;
        while (vm.keyExistsJson(json, string.concat(".invalid_reports[", vm.toString(n), "]"))) n++;
        assertTrue(n >= 8, "fewer invalid reports than expected");
        for (uint256 i = 0; i < n; i++) {
            string memory key = string.concat(".invalid_reports[", vm.toString(i), "]");
            bytes memory bad = vm.parseJsonBytes(json, string.concat(key, ".encoded"));
            string memory field = vm.parseJsonString(json, string.concat(key, ".field"));
            bytes4 expected = _expectedError(field);
            try store.update(bad, 1, signature) {
                revert AssertionFailed(string.concat("accepted invalid report: ", vm.parseJsonString(json, string.concat(key, ".name"))));
            } catch (bytes memory reason) {
                assertTrue(bytes4(reason) == expected, string.concat("wrong error for ", field));
            }
        }
    }

    function _expectedError(string memory field) internal pure returns (bytes4) {
        bytes32 f = keccak256(bytes(field));
        if (f == keccak256("length")) return FeedStore.BadReportLength.selector;
        // Only valid ids can be registered, so a malformed one is an unknown feed.
        if (f == keccak256("feed_id")) return FeedStore.UnknownFeed.selector;
        if (f == keccak256("decimals")) return FeedStore.WrongDecimals.selector;
        if (f == keccak256("observations")) return FeedStore.NoObservations.selector;
        revert AssertionFailed(string.concat("no expectation for field ", field));
    }

    function test_registerFeedChecks() public {
        vm.expectRevert(abi.encodeWithSelector(FeedStore.FeedAlreadyRegistered.selector, ETH_USD));
        store.registerFeed(ETH_USD, 8, "");
        vm.expectRevert(abi.encodeWithSelector(FeedStore.BadFeedId.selector, bytes32(0)));
        store.registerFeed(bytes32(0), 8, "");
        bytes32 nulInside = bytes32(bytes.concat("ETH", bytes1(0), "USD"));
        vm.expectRevert(abi.encodeWithSelector(FeedStore.BadFeedId.selector, nulInside));
        store.registerFeed(nulInside, 8, "");
        bytes32 control = bytes32(bytes.concat("ETH", bytes1(0x0a)));
        vm.expectRevert(abi.encodeWithSelector(FeedStore.BadFeedId.selector, control));
        store.registerFeed(control, 8, "");
        vm.expectRevert(abi.encodeWithSelector(FeedStore.BadDecimals.selector, uint8(19)));
        store.registerFeed(bytes32("BTC/USD"), 19, "");
        vm.prank(address(0xBEEF));
        vm.expectRevert(abi.encodeWithSelector(Owned2Step.NotOwner.selector, address(0xBEEF)));
        store.registerFeed(bytes32("BTC/USD"), 8, "");
        store.registerFeed(bytes32("BTC/USD"), 8, "Bitcoin");
        assertEq(store.decimals(bytes32("BTC/USD")), 8, "registered");
    }

    function test_aggregatorFunctions() public {
        assertEq(aggregator.decimals(), 8, "decimals");
        assertEq(bytes(aggregator.description()), bytes("Ether in US dollars"), "description");
        assertEq(aggregator.version(), 1, "version");
        vm.expectRevert(bytes("No data present"));
        aggregator.latestRoundData();
        store.update(report, 1, signature);
        (uint80 roundId, int256 answer,,,) = aggregator.getRoundData(11);
        assertTrue(roundId == 11 && answer == 345650000000, "getRoundData(11)");
        vm.expectRevert(bytes("No data present"));
        aggregator.getRoundData(10);
        vm.expectRevert(bytes("No data present"));
        aggregator.getRoundData(12);
    }

    function test_aggregatorNeedsRegisteredFeed() public {
        vm.expectRevert(abi.encodeWithSelector(FeedStore.UnknownFeed.selector, bytes32("XAU/USD")));
        new TesseraAggregator(store, bytes32("XAU/USD"));
    }

    function test_pullConsumerSubmitsAndReadsInOneCall() public {
        PullConsumer consumer = new PullConsumer(store, ETH_USD, 3600);
        vm.warp(1795431723 + 10);
        (uint8 k, uint256 y, uint256 ySqrt) = _hint(_digest(report, 1));
        vm.expectEmit();
        emit PullConsumer.PriceUsed(ETH_USD, 11, 345650000000, true);
        (int256 price, uint80 roundId) = consumer.settle(report, 1, signature, k, y, ySqrt);
        assertTrue(price == 345650000000 && roundId == 11, "settled price");
        assertTrue(consumer.lastPrice() == 345650000000, "stored price");
        _checkSignedRound();
        // Someone already pushed it: the consumer still settles, on the stored round.
        vm.expectEmit();
        emit PullConsumer.PriceUsed(ETH_USD, 11, 345650000000, false);
        consumer.settle(report, 1, signature, k, y, ySqrt);
        // A tampered report is not "merely old": it reverts the consumer's transaction.
        bytes memory tampered = bytes.concat(report);
        tampered[39] = bytes1(uint8(12)); // round 12
        (k, y, ySqrt) = _hint(_digest(tampered, 1));
        vm.expectRevert(BN254.InvalidSignature.selector);
        consumer.settle(tampered, 1, signature, k, y, ySqrt);
        vm.warp(1795431723 + 3601);
        (k, y, ySqrt) = _hint(_digest(report, 1));
        vm.expectRevert(abi.encodeWithSelector(PullConsumer.PriceTooOld.selector, uint256(1795431723), uint256(3600)));
        consumer.settle(report, 1, signature, k, y, ySqrt);
    }
}
