// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {BN254} from "../src/lib/BN254.sol";
import {CommitteeVerifier} from "../src/CommitteeVerifier.sol";
import {FeedStore} from "../src/feeds/FeedStore.sol";

/// The array parsers of forge's Vm (not in utils/Test.sol's subset).
interface VmArrays {
    function parseJsonBytesArray(string calldata json, string calldata key) external pure returns (bytes[] memory);
    function parseJsonBytes32Array(string calldata json, string calldata key) external pure returns (bytes32[] memory);
}

/// FeedStore.updateFeeds against tests/vectors/feeds_multi_v1.json: committee-signed feed roots
/// (3-of-4, epoch 1, the committee of feeds_v1.json) of 1, 4 and 16 reports, the trees and the
/// proofs no verifier may accept; every refusal; gas per feed at 1/4/16 feeds per transaction.
contract FeedsMultiTest is Test {
    string internal constant VECTORS = "../../tests/vectors/feeds_multi_v1.json";
    string internal constant COMMITTEE = "../../tests/vectors/feeds_v1.json";
    uint256 internal constant P = 0x30644e72e131a029b85045b68181585d97816a916871ca8d3c208c16d87cfd47;
    uint256 internal constant NOW_S = 1795431723;
    VmArrays internal constant vmArrays = VmArrays(address(uint160(uint256(keccak256("hevm cheat code")))));

    // Indices of .signed_roots in the vectors.
    uint256 internal constant ONE = 0;
    uint256 internal constant FOUR = 1;
    uint256 internal constant FOUR_NEXT = 2;
    uint256 internal constant SIXTEEN = 3;
    uint256 internal constant AHEAD = 4;

    CommitteeVerifier internal verifier;
    FeedStore internal store;
    string internal json;

    event log_named_uint(string key, uint256 val);

    function setUp() public {
        json = vm.readFile(VECTORS);
        string memory c = vm.readFile(COMMITTEE);
        verifier = new CommitteeVerifier(31337, 1, 4, 3, vm.parseJsonBytes(c, ".signed_round.committee.group_key"));
        store = _newStore(64);
        vm.warp(NOW_S);
    }

    function _newStore(uint256 feeds) internal returns (FeedStore s) {
        s = new FeedStore(verifier, address(this));
        for (uint256 i = 0; i < feeds; i++) {
            s.registerFeed(_feedId(i), 8, "");
        }
    }

    function _feedId(uint256 i) internal pure returns (bytes32) {
        return bytes32(bytes.concat("FEED/", bytes1(uint8(48 + i / 10)), bytes1(uint8(48 + i % 10))));
    }

    function _key(uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".signed_roots[", vm.toString(i), "].", field);
    }

    function _reports(uint256 i) internal view returns (bytes[] memory) {
        return vmArrays.parseJsonBytesArray(json, _key(i, "reports"));
    }

    function _proofs(uint256 i) internal view returns (bytes32[][] memory proofs) {
        uint256 n = vm.parseJsonUint(json, _key(i, "leaf_count"));
        proofs = new bytes32[][](n);
        for (uint256 j = 0; j < n; j++) {
            proofs[j] = vmArrays.parseJsonBytes32Array(json, string.concat(_key(i, "proofs"), "[", vm.toString(j), "]"));
        }
    }

    function _indices(uint256 n) internal pure returns (uint256[] memory idx) {
        idx = new uint256[](n);
        for (uint256 j = 0; j < n; j++) idx[j] = j;
    }

    /// The signature of signed root `i`, with the hash-to-curve hint when `hinted`.
    function _sig(uint256 i, bool hinted) internal view returns (FeedStore.RootSignature memory s) {
        s.root = vm.parseJsonBytes32(json, _key(i, "root"));
        s.leafCount = uint32(vm.parseJsonUint(json, _key(i, "leaf_count")));
        s.epoch = 1;
        s.signature = vm.parseJsonBytes(json, _key(i, "signature"));
        if (hinted) (s.k, s.y, s.ySqrt) = _hint(vm.parseJsonBytes32(json, _key(i, "digest")));
    }

    function _hint(bytes32 digest) internal view returns (uint8 k, uint256 y, uint256 ySqrt) {
        (, uint256 hy, uint256 increments) = verifier.hashToG1(digest);
        (bool ok, bytes memory out) = address(5).staticcall(abi.encode(32, 32, 32, hy, (P + 1) / 4, P));
        assertTrue(ok, "modexp");
        return (uint8(increments), hy, abi.decode(out, (uint256)));
    }

    function _round(bytes32 feedId) internal view returns (uint64 latest) {
        (,, latest,) = store.feed(feedId);
    }

    function _none() internal pure returns (uint256[] memory idx, bytes32[][] memory proofs) {
        return (new uint256[](0), new bytes32[][](0));
    }

    // --- the digest, the tree ---------------------------------------------------------------

    function test_signedRootDigestsAreTheVectors() public view {
        for (uint256 i = 0; i <= AHEAD; i++) {
            FeedStore.RootSignature memory s = _sig(i, false);
            bytes32 digest = keccak256(abi.encodePacked("TESSERA/v1/FEEDROOT", s.epoch, s.leafCount, s.root));
            assertEq(digest, vm.parseJsonBytes32(json, _key(i, "digest")), "digest");
        }
    }

    /// Every tree of the vectors through updateFeeds with a signature that cannot verify: a root the
    /// contract computes equal to the vector's gets as far as the pairing (InvalidSignature), any
    /// other would revert FeedRootMismatch / ReportNotInRoot first.
    function test_vectorTreesAndProofsReachTheSignatureCheck() public {
        uint256 t;
        while (vm.keyExistsJson(json, string.concat(".trees[", vm.toString(t), "]"))) {
            string memory k = string.concat(".trees[", vm.toString(t), "]");
            bytes[] memory reports = vmArrays.parseJsonBytesArray(json, string.concat(k, ".reports"));
            FeedStore.RootSignature memory s;
            s.root = vm.parseJsonBytes32(json, string.concat(k, ".root"));
            s.leafCount = uint32(reports.length);
            s.epoch = 1;
            s.signature = vm.parseJsonBytes(json, _key(FOUR_NEXT, "signature")); // valid for no tree here
            (uint256[] memory none, bytes32[][] memory noProofs) = _none();
            vm.expectRevert(BN254.InvalidSignature.selector);
            store.updateFeeds(s, reports, none, noProofs);
            uint256 p;
            while (vm.keyExistsJson(json, string.concat(k, ".proofs[", vm.toString(p), "]"))) {
                string memory pk = string.concat(k, ".proofs[", vm.toString(p), "]");
                uint256 index = vm.parseJsonUint(json, string.concat(pk, ".index"));
                bytes[] memory one = new bytes[](1);
                one[0] = reports[index];
                uint256[] memory idx = new uint256[](1);
                idx[0] = index;
                bytes32[][] memory proofs = new bytes32[][](1);
                proofs[0] = vmArrays.parseJsonBytes32Array(json, string.concat(pk, ".proof"));
                vm.expectRevert(BN254.InvalidSignature.selector);
                store.updateFeeds(s, one, idx, proofs);
                p++;
            }
            t++;
        }
        assertTrue(t >= 9, "trees");
    }

    function test_invalidProofVectorsRefused() public {
        uint256 n;
        while (vm.keyExistsJson(json, string.concat(".invalid_proofs[", vm.toString(n), "]"))) {
            string memory k = string.concat(".invalid_proofs[", vm.toString(n), "]");
            FeedStore.RootSignature memory s = _sig(ONE, false);
            s.root = vm.parseJsonBytes32(json, string.concat(k, ".root"));
            s.leafCount = uint32(vm.parseJsonUint(json, string.concat(k, ".leaf_count")));
            bytes[] memory one = new bytes[](1);
            one[0] = vm.parseJsonBytes(json, string.concat(k, ".report"));
            uint256[] memory idx = new uint256[](1);
            idx[0] = vm.parseJsonUint(json, string.concat(k, ".index"));
            bytes32[][] memory proofs = new bytes32[][](1);
            proofs[0] = vmArrays.parseJsonBytes32Array(json, string.concat(k, ".proof"));
            vm.expectRevert(abi.encodeWithSelector(FeedStore.ReportNotInRoot.selector, uint256(0)));
            store.updateFeeds(s, one, idx, proofs);
            n++;
        }
        assertTrue(n >= 7, "invalid proofs");
    }

    // --- updates ----------------------------------------------------------------------------

    function test_fullRootUpdatesEveryFeed() public {
        (uint256[] memory none, bytes32[][] memory noProofs) = _none();
        FeedStore.RootSignature memory s = _sig(FOUR, false);
        vm.expectEmit();
        emit FeedStore.FeedRootApplied(s.root, 1, 4, 4, 0);
        assertEq(store.updateFeeds(s, _reports(FOUR), none, noProofs), 4, "updated");
        for (uint256 i = 0; i < 4; i++) {
            assertEq(_round(_feedId(i)), 11, "round");
            (int256 answer,,,, uint8 observations) = store.getRound(_feedId(i), 11);
            assertEq(uint256(answer), 100_000_000_000 + 1_234_567 * i + 11, "price");
            assertEq(observations, 4, "observations");
        }
        assertEq(_round(_feedId(4)), 0, "a feed outside the root is untouched");
    }

    function test_proofsUpdateASubsetWithHint() public {
        bytes[] memory all = _reports(SIXTEEN);
        bytes32[][] memory allProofs = _proofs(SIXTEEN);
        bytes[] memory some = new bytes[](3);
        uint256[] memory idx = new uint256[](3);
        bytes32[][] memory proofs = new bytes32[][](3);
        uint256[3] memory pick = [uint256(13), 2, 7]; // any order
        for (uint256 j = 0; j < 3; j++) {
            (some[j], idx[j], proofs[j]) = (all[pick[j]], pick[j], allProofs[pick[j]]);
        }
        assertEq(store.updateFeeds(_sig(SIXTEEN, true), some, idx, proofs), 3, "updated");
        assertEq(_round(_feedId(13)), 11, "13");
        assertEq(_round(_feedId(2)), 11, "2");
        assertEq(_round(_feedId(7)), 11, "7");
        assertEq(_round(_feedId(3)), 0, "3 not pushed");
    }

    function test_notNewerReportsAreSkippedNotReverted() public {
        (uint256[] memory none, bytes32[][] memory noProofs) = _none();
        assertEq(store.updateFeeds(_sig(ONE, true), _reports(ONE), none, noProofs), 1, "FEED/00 alone");
        FeedStore.RootSignature memory s = _sig(FOUR, true);
        vm.expectEmit();
        emit FeedStore.FeedRootApplied(s.root, 1, 4, 3, 1);
        assertEq(store.updateFeeds(s, _reports(FOUR), none, noProofs), 3, "the three others");
        // The same report twice in one call: the second is skipped.
        bytes[] memory twice = new bytes[](2);
        bytes[] memory next = _reports(FOUR_NEXT);
        (twice[0], twice[1]) = (next[1], next[1]);
        bytes32[][] memory nextProofs = _proofs(FOUR_NEXT);
        bytes32[][] memory proofs = new bytes32[][](2);
        (proofs[0], proofs[1]) = (nextProofs[1], nextProofs[1]);
        uint256[] memory idx = new uint256[](2);
        (idx[0], idx[1]) = (1, 1);
        assertEq(store.updateFeeds(_sig(FOUR_NEXT, true), twice, idx, proofs), 1, "once");
        assertEq(_round(_feedId(1)), 12, "round 12");
    }

    /// Replay of an old root: nothing is newer, nothing changes, and no pairing is paid.
    function test_replayOfAnOldRootChangesNothing() public {
        (uint256[] memory none, bytes32[][] memory noProofs) = _none();
        store.updateFeeds(_sig(FOUR_NEXT, true), _reports(FOUR_NEXT), none, noProofs);
        FeedStore.RootSignature memory old = _sig(FOUR, true);
        bytes[] memory oldReports = _reports(FOUR);
        uint256 before = gasleft();
        uint256 updated = store.updateFeeds(old, oldReports, none, noProofs);
        uint256 used = before - gasleft();
        assertEq(updated, 0, "an older root updates nothing");
        assertEq(store.updateFeeds(_sig(FOUR_NEXT, true), _reports(FOUR_NEXT), none, noProofs), 0, "nor the same root again");
        for (uint256 i = 0; i < 4; i++) assertEq(_round(_feedId(i)), 12, "still round 12");
        assertTrue(used < 60_000, "no pairing for a replay");
        emit log_named_uint("replayed 4-feed root gas (in-test)", used);
    }

    // --- refusals ---------------------------------------------------------------------------

    function test_forgedRootSignatureRefused() public {
        (uint256[] memory none, bytes32[][] memory noProofs) = _none();
        FeedStore.RootSignature memory s = _sig(FOUR, true);
        bytes memory sig = bytes.concat(s.signature);
        sig[63] = bytes1(uint8(sig[63]) ^ 1);
        s.signature = sig;
        vm.expectRevert();
        store.updateFeeds(s, _reports(FOUR), none, noProofs);
        // A real signature of another root (round 12) over this root's reports.
        s = _sig(FOUR, false);
        s.signature = _sig(FOUR_NEXT, false).signature;
        vm.expectRevert(BN254.InvalidSignature.selector);
        store.updateFeeds(s, _reports(FOUR), none, noProofs);
        // The signature of a single report is not a root signature.
        s.signature = vm.parseJsonBytes(vm.readFile(COMMITTEE), ".signed_round.signature");
        vm.expectRevert(BN254.InvalidSignature.selector);
        store.updateFeeds(s, _reports(FOUR), none, noProofs);
        // Another leaf count for the same root is another digest.
        s = _sig(FOUR, false);
        s.leafCount = 5;
        vm.expectRevert(abi.encodeWithSelector(FeedStore.FeedBatchShapeInvalid.selector, uint256(4), uint256(0), uint256(0)));
        store.updateFeeds(s, _reports(FOUR), none, noProofs);
        // (with proofs, a proof's length follows from the leaf count: ReportNotInRoot, tested below)
        // An epoch the verifier does not know.
        s = _sig(FOUR, false);
        s.epoch = 2;
        vm.expectRevert(abi.encodeWithSelector(CommitteeVerifier.UnknownEpoch.selector, uint32(2), uint32(1)));
        store.updateFeeds(s, _reports(FOUR), none, noProofs);
        for (uint256 i = 0; i < 4; i++) assertEq(_round(_feedId(i)), 0, "nothing stored");
    }

    function test_reportNotInTheRootRefused() public {
        (uint256[] memory none, bytes32[][] memory noProofs) = _none();
        bytes[] memory reports = _reports(FOUR);
        reports[2] = _reports(FOUR_NEXT)[2]; // round 12's report under round 11's root
        FeedStore.RootSignature memory s = _sig(FOUR, true);
        bytes32 computed = _computedRootWith(reports);
        vm.expectRevert(abi.encodeWithSelector(FeedStore.FeedRootMismatch.selector, computed, s.root));
        store.updateFeeds(s, reports, none, noProofs);
        // With proofs: the round-11 proof does not lead from the round-12 report to the root.
        vm.expectRevert(abi.encodeWithSelector(FeedStore.ReportNotInRoot.selector, uint256(2)));
        store.updateFeeds(s, reports, _indices(4), _proofs(FOUR));
        // A report of the root at another index.
        bytes32[][] memory proofs = _proofs(FOUR);
        uint256[] memory idx = _indices(4);
        idx[3] = 2;
        vm.expectRevert(abi.encodeWithSelector(FeedStore.ReportNotInRoot.selector, uint256(3)));
        store.updateFeeds(s, _reports(FOUR), idx, proofs);
        // In another order without proofs: another root.
        bytes[] memory swapped = _reports(FOUR);
        (swapped[0], swapped[1]) = (swapped[1], swapped[0]);
        vm.expectRevert(abi.encodeWithSelector(FeedStore.FeedRootMismatch.selector, _computedRootWith(swapped), s.root));
        store.updateFeeds(s, swapped, none, noProofs);
    }

    function _computedRootWith(bytes[] memory reports) internal pure returns (bytes32) {
        bytes32[] memory level = new bytes32[](reports.length);
        for (uint256 i = 0; i < reports.length; i++) level[i] = keccak256(abi.encodePacked(bytes1(0x02), reports[i]));
        uint256 width = level.length;
        while (width > 1) {
            uint256 half = width / 2;
            for (uint256 i = 0; i < half; i++) {
                level[i] = keccak256(abi.encodePacked(bytes1(0x01), level[2 * i], level[2 * i + 1]));
            }
            if (width % 2 == 1) {
                level[half] = level[width - 1];
                width = half + 1;
            } else {
                width = half;
            }
        }
        return level[0];
    }

    function test_reportTooFarAheadOfTheChainClockRefused() public {
        (uint256[] memory none, bytes32[][] memory noProofs) = _none();
        uint256 published = vm.parseJsonUint(json, _key(AHEAD, "published_at"));
        bytes[] memory reports = _reports(AHEAD);
        uint64 observed = uint64(bytes8(_slice(reports[0], 106)));
        FeedStore.RootSignature memory s = _sig(AHEAD, true);
        vm.expectRevert(
            abi.encodeWithSelector(FeedStore.ReportFromTheFuture.selector, observed, uint64(published), NOW_S)
        );
        store.updateFeeds(s, reports, none, noProofs);
        // At the tolerance (published_at 120 s ahead of the chain) it is accepted.
        vm.warp(published / 1000 - store.MAX_AHEAD_OF_CHAIN_MS() / 1000);
        assertEq(store.updateFeeds(s, reports, none, noProofs), 2, "accepted then");
        assertEq(_round(_feedId(0)), 13, "round 13");
    }

    function _slice(bytes memory b, uint256 at) internal pure returns (bytes8 out) {
        for (uint256 i = 0; i < 8; i++) out |= bytes8(b[at + i]) >> (8 * i);
    }

    function test_invalidReportInARootRevertsTheCall() public {
        (uint256[] memory none, bytes32[][] memory noProofs) = _none();
        FeedStore other = _newStore(3); // FEED/03 not registered
        FeedStore.RootSignature memory s = _sig(FOUR, true);
        bytes[] memory reports = _reports(FOUR);
        vm.expectRevert(abi.encodeWithSelector(FeedStore.UnknownFeed.selector, _feedId(3)));
        other.updateFeeds(s, reports, none, noProofs);
    }

    function test_shapeRefusals() public {
        (uint256[] memory none, bytes32[][] memory noProofs) = _none();
        FeedStore.RootSignature memory s = _sig(FOUR, false);
        vm.expectRevert(FeedStore.EmptyFeedBatch.selector);
        store.updateFeeds(s, new bytes[](0), none, noProofs);
        s.leafCount = 0;
        vm.expectRevert(abi.encodeWithSelector(FeedStore.FeedRootSizeInvalid.selector, uint256(0)));
        store.updateFeeds(s, _reports(FOUR), none, noProofs);
        s.leafCount = 65;
        vm.expectRevert(abi.encodeWithSelector(FeedStore.FeedRootSizeInvalid.selector, uint256(65)));
        store.updateFeeds(s, _reports(FOUR), none, noProofs);
        s.leafCount = 4;
        vm.expectRevert(abi.encodeWithSelector(FeedStore.FeedBatchShapeInvalid.selector, uint256(4), uint256(3), uint256(4)));
        uint256[] memory three = new uint256[](3);
        store.updateFeeds(s, _reports(FOUR), three, _proofs(FOUR));
        bytes[] memory bad = _reports(FOUR);
        bad[1] = bytes.concat(bad[1], hex"00");
        vm.expectRevert(abi.encodeWithSelector(FeedStore.BadReportLength.selector, uint256(123)));
        store.updateFeeds(s, bad, none, noProofs);
    }

    // --- gas ----------------------------------------------------------------------------------

    /// Gas per feed at 1, 4 and 16 feeds per transaction (first rounds: cold feeds, new round slots),
    /// with the hint as the pusher sends it, all leaves (no proofs) and with proofs; beside `update`.
    function test_gasPerFeed() public {
        uint256[3] memory which = [ONE, FOUR, SIXTEEN];
        for (uint256 w = 0; w < 3; w++) {
            uint256 i = which[w];
            bytes[] memory reports = _reports(i);
            uint256 n = reports.length;
            (uint256[] memory none, bytes32[][] memory noProofs) = _none();
            FeedStore fresh = _newStore(n);
            FeedStore.RootSignature memory s = _sig(i, true);
            uint256 before = gasleft();
            fresh.updateFeeds(s, reports, none, noProofs);
            uint256 full = before - gasleft();
            fresh = _newStore(n);
            uint256[] memory idx = _indices(n);
            bytes32[][] memory proofs = _proofs(i);
            before = gasleft();
            fresh.updateFeeds(s, reports, idx, proofs);
            uint256 proved = before - gasleft();
            emit log_named_uint(string.concat("updateFeeds, all leaves, gas per feed at ", vm.toString(n)), full / n);
            emit log_named_uint(string.concat("updateFeeds, with proofs, gas per feed at ", vm.toString(n)), proved / n);
            assertTrue(n == 1 || full / n < 100_000, "one pairing shared");
        }
        _singleUpdateGas();
    }

    /// updateWithHint of feeds_v1's signed round (a root's signature is no report signature), for
    /// comparison: the same shape of report into a cold feed.
    function _singleUpdateGas() internal {
        FeedStore single = _newStore(0);
        string memory c = vm.readFile(COMMITTEE);
        single.registerFeed(bytes32("ETH/USD"), 8, "");
        bytes memory signed = vm.parseJsonBytes(c, ".signed_round.report.encoded");
        bytes memory sig = vm.parseJsonBytes(c, ".signed_round.signature");
        (uint8 k, uint256 y, uint256 ySqrt) =
            _hint(keccak256(abi.encodePacked("TESSERA/v1/FEED", uint32(1), keccak256(signed))));
        uint256 before = gasleft();
        single.updateWithHint(signed, 1, sig, k, y, ySqrt);
        emit log_named_uint("updateWithHint (one report, for comparison) gas", before - gasleft());
    }
}
