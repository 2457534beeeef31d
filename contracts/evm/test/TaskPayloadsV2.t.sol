// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {TaskPayloads} from "../src/lib/TaskPayloads.sol";

/// External wrappers so v2 payloads go through the library exactly as a contract uses it.
contract TaskPayloadsV2Harness {
    function encodeInline(
        string memory executor,
        uint128 maxFee,
        uint64 deadline,
        TaskPayloads.AuctionTerms memory terms,
        bytes memory input
    ) external pure returns (bytes memory) {
        return TaskPayloads.encodeRequestV2Inline(executor, maxFee, deadline, terms, input);
    }

    function encodeByReference(
        string memory executor,
        uint128 maxFee,
        uint64 deadline,
        TaskPayloads.AuctionTerms memory terms,
        bytes32 inputHash,
        string memory uri
    ) external pure returns (bytes memory) {
        return TaskPayloads.encodeRequestV2ByReference(executor, maxFee, deadline, terms, inputHash, uri);
    }

    function decodeRequest(bytes memory data) external pure returns (TaskPayloads.TaskRequestV2 memory) {
        return TaskPayloads.decodeRequestV2(data);
    }

    function decodeResult(bytes memory data) external pure returns (TaskPayloads.TaskResultV2 memory) {
        return TaskPayloads.decodeResultV2(data);
    }

    function decodeVerdict(bytes memory data) external pure returns (TaskPayloads.Verdict memory) {
        return TaskPayloads.decodeVerdict(data);
    }

    function price(uint128 maxFee, uint16 bps, uint32 window, uint64 start, uint256 now_)
        external
        pure
        returns (uint128)
    {
        return TaskPayloads.auctionPrice(maxFee, bps, window, start, now_);
    }

    function signingDigest(TaskPayloads.TaskResultV2 memory r) external pure returns (bytes32) {
        return TaskPayloads.resultSigningDigestV2(r.requestId, r.outputHash, r.executor, r.claimant, r.payout, r.price);
    }
}

/// Every case of tests/vectors/tasks_v2.json (written by tests/vectors/generate_tasks_v2.py from
/// relay/tasks/payloads.py): valid payloads decode to the vector's fields and requests re-encode
/// to the same bytes; auction prices agree; every invalid payload reverts with the error the
/// vector names (`error_name`).
contract TaskPayloadsV2Test is Test {
    string internal constant VECTORS = "../../tests/vectors/tasks_v2.json";

    TaskPayloadsV2Harness internal h;
    string internal json;

    function setUp() public {
        h = new TaskPayloadsV2Harness();
        json = vm.readFile(VECTORS);
    }

    function _key(string memory list, uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".", list, "[", vm.toString(i), "].", field);
    }

    function _count(string memory list) internal view returns (uint256 n) {
        while (vm.keyExistsJson(json, string.concat(".", list, "[", vm.toString(n), "]"))) n++;
    }

    function _bytes(string memory list, uint256 i, string memory field) internal view returns (bytes memory) {
        return vm.parseJsonBytes(json, _key(list, i, field));
    }

    function _b32(string memory list, uint256 i, string memory field) internal view returns (bytes32) {
        return vm.parseJsonBytes32(json, _key(list, i, field));
    }

    function _uint(string memory list, uint256 i, string memory field) internal view returns (uint256) {
        return vm.parseJsonUint(json, _key(list, i, field));
    }

    function _str(string memory list, uint256 i, string memory field) internal view returns (string memory) {
        return vm.parseJsonString(json, _key(list, i, field));
    }

    function test_requestVectors() public view {
        uint256 n = _count("task_requests");
        assertTrue(n >= 6, "tasks_v2.json has fewer task_requests than expected");
        for (uint256 i = 0; i < n; i++) {
            string memory name = _str("task_requests", i, "name");
            bytes memory encoded = _bytes("task_requests", i, "encoded");
            TaskPayloads.TaskRequestV2 memory r = h.decodeRequest(encoded);
            assertEq(bytes32(r.executor), bytes32(bytes16(_bytes("task_requests", i, "executor_bytes"))), name);
            assertEq(uint256(r.maxFee), _uint("task_requests", i, "max_fee"), string.concat("max_fee: ", name));
            assertEq(uint256(r.deadline), _uint("task_requests", i, "deadline"), string.concat("deadline: ", name));
            TaskPayloads.AuctionTerms memory t = r.terms;
            assertEq(t.auctionWindow, _uint("task_requests", i, "auction_window"), string.concat("window: ", name));
            assertEq(t.startBps, _uint("task_requests", i, "start_bps"), string.concat("start_bps: ", name));
            assertEq(t.claimWindow, _uint("task_requests", i, "claim_window"), string.concat("claim: ", name));
            assertEq(t.bond, _uint("task_requests", i, "bond"), string.concat("bond: ", name));
            assertEq(t.refundTo, _b32("task_requests", i, "refund_to"), string.concat("refund_to: ", name));
            string memory executor = _str("task_requests", i, "executor");
            bytes memory again;
            if (r.inputMode == TaskPayloads.MODE_INLINE) {
                assertEq(r.input, _bytes("task_requests", i, "input"), string.concat("input: ", name));
                again = h.encodeInline(executor, r.maxFee, r.deadline, t, r.input);
            } else {
                string memory uri = _str("task_requests", i, "input_uri");
                assertEq(bytes(r.inputUri), bytes(uri), string.concat("input_uri: ", name));
                again = h.encodeByReference(executor, r.maxFee, r.deadline, t, r.inputHash, uri);
            }
            assertEq(again, encoded, string.concat("re-encoding differs: ", name));
        }
    }

    function test_auctionPriceVectors() public view {
        uint256 n = _count("auction_prices");
        assertTrue(n >= 10, "tasks_v2.json has fewer auction_prices than expected");
        for (uint256 i = 0; i < n; i++) {
            uint128 got = h.price(
                uint128(_uint("auction_prices", i, "max_fee")),
                uint16(_uint("auction_prices", i, "start_bps")),
                uint32(_uint("auction_prices", i, "auction_window")),
                uint64(_uint("auction_prices", i, "auction_start")),
                _uint("auction_prices", i, "now")
            );
            assertEq(got, _uint("auction_prices", i, "price"), _str("auction_prices", i, "name"));
        }
    }

    function test_resultVectors() public view {
        uint256 n = _count("task_results");
        assertTrue(n >= 4, "tasks_v2.json has fewer task_results than expected");
        for (uint256 i = 0; i < n; i++) {
            string memory name = _str("task_results", i, "name");
            TaskPayloads.TaskResultV2 memory r = h.decodeResult(_bytes("task_results", i, "encoded"));
            assertEq(r.requestId, _b32("task_results", i, "request_id"), string.concat("request_id: ", name));
            assertEq(r.outputHash, _b32("task_results", i, "output_hash"), string.concat("output_hash: ", name));
            assertEq(r.worker, _b32("task_results", i, "worker"), string.concat("worker: ", name));
            assertEq(r.claimant, _b32("task_results", i, "claimant"), string.concat("claimant: ", name));
            assertEq(r.payout, _b32("task_results", i, "payout"), string.concat("payout: ", name));
            assertEq(r.price, _uint("task_results", i, "price"), string.concat("price: ", name));
            assertEq(r.signature, _bytes("task_results", i, "signature"), string.concat("signature: ", name));
            assertEq(r.proofKind, _uint("task_results", i, "proof_kind"), string.concat("proof_kind: ", name));
            assertEq(r.proof, _bytes("task_results", i, "proof"), string.concat("proof: ", name));
            if (r.outputMode == TaskPayloads.MODE_INLINE) {
                assertEq(r.output, _bytes("task_results", i, "output"), string.concat("output: ", name));
            } else {
                assertEq(bytes(r.outputUri), bytes(_str("task_results", i, "output_uri")), name);
            }
            assertEq(h.signingDigest(r), _b32("task_results", i, "signing_digest"), string.concat("digest: ", name));
            assertEq(
                keccak256(_bytes("task_results", i, "signing_message")),
                h.signingDigest(r),
                string.concat("signing message: ", name)
            );
        }
    }

    function test_verdictVectors() public view {
        uint256 n = _count("verdicts");
        assertTrue(n >= 4, "tasks_v2.json has fewer verdicts than expected");
        for (uint256 i = 0; i < n; i++) {
            string memory name = _str("verdicts", i, "name");
            TaskPayloads.Verdict memory v = h.decodeVerdict(_bytes("verdicts", i, "encoded"));
            assertEq(v.requestId, _b32("verdicts", i, "request_id"), string.concat("request_id: ", name));
            assertEq(v.resultId, _b32("verdicts", i, "result_id"), string.concat("result_id: ", name));
            assertEq(v.outputHash, _b32("verdicts", i, "output_hash"), string.concat("output_hash: ", name));
            assertEq(v.worker, _b32("verdicts", i, "worker"), string.concat("worker: ", name));
            assertEq(v.claimant, _b32("verdicts", i, "claimant"), string.concat("claimant: ", name));
            assertEq(v.payout, _b32("verdicts", i, "payout"), string.concat("payout: ", name));
            assertEq(v.price, _uint("verdicts", i, "price"), string.concat("price: ", name));
            assertEq(v.method, _uint("verdicts", i, "method"), string.concat("method: ", name));
            assertEq(v.verdict, _uint("verdicts", i, "verdict"), string.concat("verdict: ", name));
            assertEq(v.reason, _uint("verdicts", i, "reason"), string.concat("reason: ", name));
            assertEq(v.submittedAt, _uint("verdicts", i, "submitted_at"), string.concat("submitted_at: ", name));
        }
    }

    function test_envelopeIdsAndOneVerdictEnvelopePerDestination() public view {
        string[4] memory names = [
            ".request_envelope",
            ".result_envelope",
            ".verdict_envelopes.to_requester_board",
            ".verdict_envelopes.to_serving_board"
        ];
        for (uint256 i = 0; i < names.length; i++) {
            assertEq(
                keccak256(vm.parseJsonBytes(json, string.concat(names[i], ".encoded"))),
                vm.parseJsonBytes32(json, string.concat(names[i], ".message_id")),
                names[i]
            );
        }
        assertTrue(
            vm.parseJsonBytes32(json, ".verdict_envelopes.to_requester_board.message_id")
                != vm.parseJsonBytes32(json, ".verdict_envelopes.to_serving_board.message_id"),
            "one verdict, two envelopes, two ids"
        );
    }

    function test_invalidVectorsRevert() public {
        uint256 n = _count("invalid");
        assertTrue(n >= 25, "tasks_v2.json has fewer invalid cases than expected");
        for (uint256 i = 0; i < n; i++) {
            uint256 kind = _uint("invalid", i, "kind");
            bytes memory payload = _bytes("invalid", i, "payload");
            vm.expectPartialRevert(_selector(_str("invalid", i, "error_name"), _str("invalid", i, "name")));
            if (kind == 1) h.decodeRequest(payload);
            else if (kind == 2) h.decodeResult(payload);
            else if (kind == 3) h.decodeVerdict(payload);
            else revert AssertionFailed(string.concat("unknown kind in invalid case ", vm.toString(i)));
        }
    }

    function _selector(string memory errorName, string memory name) internal pure returns (bytes4) {
        bytes32 e = keccak256(bytes(errorName));
        if (e == keccak256("UnsupportedPayloadVersion")) return TaskPayloads.UnsupportedPayloadVersion.selector;
        if (e == keccak256("PayloadTruncated")) return TaskPayloads.PayloadTruncated.selector;
        if (e == keccak256("TrailingBytes")) return TaskPayloads.TrailingBytes.selector;
        if (e == keccak256("InvalidAuctionTerms")) return TaskPayloads.InvalidAuctionTerms.selector;
        if (e == keccak256("UnknownDataMode")) return TaskPayloads.UnknownDataMode.selector;
        if (e == keccak256("InvalidURI")) return TaskPayloads.InvalidURI.selector;
        if (e == keccak256("InvalidExecutorId")) return TaskPayloads.InvalidExecutorId.selector;
        if (e == keccak256("PayloadTooLarge")) return TaskPayloads.PayloadTooLarge.selector;
        if (e == keccak256("UnknownProofKind")) return TaskPayloads.UnknownProofKind.selector;
        if (e == keccak256("OutputHashMismatch")) return TaskPayloads.OutputHashMismatch.selector;
        if (e == keccak256("AttestationLength")) return TaskPayloads.AttestationLength.selector;
        if (e == keccak256("InvalidVerdict")) return TaskPayloads.InvalidVerdict.selector;
        if (e == keccak256("UnknownAttestationMethod")) return TaskPayloads.UnknownAttestationMethod.selector;
        revert AssertionFailed(string.concat("invalid vector '", name, "' names error '", errorName, "': map it"));
    }

    function test_encoderRefusals() public {
        TaskPayloads.AuctionTerms memory t = TaskPayloads.AuctionTerms(60, 5000, 30, 1, bytes32(uint256(1)));
        assertEq(h.encodeInline("echo", 1, 2, t, new bytes(TaskPayloads.MAX_INLINE_INPUT_LEN_V2)).length, 512, "max");
        vm.expectPartialRevert(TaskPayloads.InputTooLong.selector);
        h.encodeInline("echo", 1, 2, t, new bytes(TaskPayloads.MAX_INLINE_INPUT_LEN_V2 + 1));
        t.startBps = 10_001;
        vm.expectRevert(abi.encodeWithSelector(TaskPayloads.InvalidAuctionTerms.selector, "start_bps above 10000"));
        h.encodeInline("echo", 1, 2, t, "");
        t.startBps = 0;
        t.claimWindow = 0;
        vm.expectRevert(abi.encodeWithSelector(TaskPayloads.InvalidAuctionTerms.selector, "claim_window is 0"));
        h.encodeInline("echo", 1, 2, t, "");
        t.claimWindow = 1;
        t.refundTo = bytes32(0);
        vm.expectRevert(abi.encodeWithSelector(TaskPayloads.InvalidAuctionTerms.selector, "refund_to is zero"));
        h.encodeByReference("echo", 1, 2, t, bytes32(0), "https://a.example/x");
    }
}
