// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {TaskPayloads} from "../src/lib/TaskPayloads.sol";

/// External wrappers so payloads go through the library exactly as a contract uses it.
contract TaskPayloadsHarness {
    function encodeRequestInline(string memory executor, uint128 maxFee, uint64 deadline, bytes memory input)
        external
        pure
        returns (bytes memory)
    {
        return TaskPayloads.encodeRequestInline(executor, maxFee, deadline, input);
    }

    function encodeRequestByReference(
        string memory executor,
        uint128 maxFee,
        uint64 deadline,
        bytes32 inputHash,
        string memory uri
    ) external pure returns (bytes memory) {
        return TaskPayloads.encodeRequestByReference(executor, maxFee, deadline, inputHash, uri);
    }

    function decodeRequest(bytes memory data) external pure returns (TaskPayloads.TaskRequest memory) {
        return TaskPayloads.decodeRequest(data);
    }

    function decodeResult(bytes memory data) external pure returns (TaskPayloads.TaskResult memory) {
        return TaskPayloads.decodeResult(data);
    }

    function decodeAttestation(bytes memory data) external pure returns (TaskPayloads.ProofAttestation memory) {
        return TaskPayloads.decodeAttestation(data);
    }

    function checkUri(bytes memory uri) external pure {
        TaskPayloads.checkUri(uri);
    }

    function encodeExecutorId(string memory executor) external pure returns (bytes16) {
        return TaskPayloads.encodeExecutorId(executor);
    }

    function resultSigningDigest(bytes32 requestId, bytes32 outputHash, bytes16 executor, bytes32 payout)
        external
        pure
        returns (bytes32)
    {
        return TaskPayloads.resultSigningDigest(requestId, outputHash, executor, payout);
    }
}

/// Every case of tests/vectors/tasks_v1.json (written by tests/vectors/generate_tasks.py from
/// relay/tasks/payloads.py): valid payloads decode to the vector's fields and re-encode to the same
/// bytes; every invalid one reverts with the error matching the Python decoder's.
contract TaskPayloadsTest is Test {
    string internal constant VECTORS = "../../tests/vectors/tasks_v1.json";

    TaskPayloadsHarness internal h;
    string internal json;

    function setUp() public {
        h = new TaskPayloadsHarness();
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

    // --- TASK_REQUEST ----------------------------------------------------------------------

    function test_taskRequestVectors() public view {
        uint256 n = _count("task_requests");
        assertTrue(n >= 8, "tasks_v1.json has fewer task_requests than expected");
        for (uint256 i = 0; i < n; i++) {
            string memory name = _str("task_requests", i, "name");
            bytes memory encoded = _bytes("task_requests", i, "encoded");
            TaskPayloads.TaskRequest memory r = h.decodeRequest(encoded);
            string memory executor = _str("task_requests", i, "executor");
            uint128 maxFee = uint128(_uint("task_requests", i, "max_fee"));
            uint64 deadline = uint64(_uint("task_requests", i, "deadline"));
            assertEq(bytes32(r.executor), bytes32(bytes16(_bytes("task_requests", i, "executor_bytes"))), name);
            assertEq(uint256(r.maxFee), maxFee, string.concat("max_fee: ", name));
            assertEq(uint256(r.deadline), deadline, string.concat("deadline: ", name));
            assertEq(uint256(r.inputMode), _uint("task_requests", i, "input_mode"), string.concat("mode: ", name));
            bytes memory again;
            if (r.inputMode == TaskPayloads.MODE_INLINE) {
                assertEq(r.input, _bytes("task_requests", i, "input"), string.concat("input: ", name));
                again = h.encodeRequestInline(executor, maxFee, deadline, r.input);
            } else {
                assertEq(r.inputHash, _b32("task_requests", i, "input_hash"), string.concat("input_hash: ", name));
                string memory uri = _str("task_requests", i, "input_uri");
                assertEq(bytes(r.inputUri), bytes(uri), string.concat("input_uri: ", name));
                again = h.encodeRequestByReference(executor, maxFee, deadline, r.inputHash, uri);
            }
            assertEq(again, encoded, string.concat("re-encoding differs: ", name));
            assertEq(bytes32(h.encodeExecutorId(executor)), bytes32(r.executor), string.concat("executor id: ", name));
        }
    }

    // --- TASK_RESULT -----------------------------------------------------------------------

    function test_taskResultVectors() public view {
        uint256 n = _count("task_results");
        assertTrue(n >= 5, "tasks_v1.json has fewer task_results than expected");
        for (uint256 i = 0; i < n; i++) {
            string memory name = _str("task_results", i, "name");
            TaskPayloads.TaskResult memory r = h.decodeResult(_bytes("task_results", i, "encoded"));
            assertEq(r.requestId, _b32("task_results", i, "request_id"), string.concat("request_id: ", name));
            assertEq(
                bytes32(r.executor),
                bytes32(h.encodeExecutorId(_str("task_results", i, "executor"))),
                string.concat("executor: ", name)
            );
            assertEq(r.outputHash, _b32("task_results", i, "output_hash"), string.concat("output_hash: ", name));
            assertEq(r.worker, _b32("task_results", i, "worker"), string.concat("worker: ", name));
            assertEq(r.payout, _b32("task_results", i, "payout"), string.concat("payout: ", name));
            assertEq(r.signature, _bytes("task_results", i, "signature"), string.concat("signature: ", name));
            assertEq(uint256(r.proofKind), _uint("task_results", i, "proof_kind"), string.concat("proof_kind: ", name));
            assertEq(r.proof, _bytes("task_results", i, "proof"), string.concat("proof: ", name));
            assertEq(uint256(r.outputMode), _uint("task_results", i, "output_mode"), string.concat("mode: ", name));
            if (r.outputMode == TaskPayloads.MODE_INLINE) {
                assertEq(r.output, _bytes("task_results", i, "output"), string.concat("output: ", name));
            } else {
                assertEq(bytes(r.outputUri), bytes(_str("task_results", i, "output_uri")), string.concat("uri: ", name));
            }
            assertEq(
                keccak256(_bytes("task_results", i, "output_bytes")),
                r.outputHash,
                string.concat("output bytes: ", name)
            );
            assertEq(
                h.resultSigningDigest(r.requestId, r.outputHash, r.executor, r.payout),
                _b32("task_results", i, "signing_digest"),
                string.concat("signing digest: ", name)
            );
        }
    }

    // --- PROOF_ATTESTATION -----------------------------------------------------------------

    function test_proofAttestationVectors() public view {
        uint256 n = _count("proof_attestations");
        assertTrue(n >= 3, "tasks_v1.json has fewer proof_attestations than expected");
        for (uint256 i = 0; i < n; i++) {
            string memory name = _str("proof_attestations", i, "name");
            TaskPayloads.ProofAttestation memory a = h.decodeAttestation(_bytes("proof_attestations", i, "encoded"));
            assertEq(a.requestId, _b32("proof_attestations", i, "request_id"), string.concat("request_id: ", name));
            assertEq(a.resultId, _b32("proof_attestations", i, "result_id"), string.concat("result_id: ", name));
            assertEq(a.outputHash, _b32("proof_attestations", i, "output_hash"), string.concat("output_hash: ", name));
            assertEq(a.worker, _b32("proof_attestations", i, "worker"), string.concat("worker: ", name));
            assertEq(a.payout, _b32("proof_attestations", i, "payout"), string.concat("payout: ", name));
            assertEq(uint256(a.method), _uint("proof_attestations", i, "method"), string.concat("method: ", name));
            assertEq(uint256(a.verdict), _uint("proof_attestations", i, "verdict"), string.concat("verdict: ", name));
            assertEq(uint256(a.checkedAt), _uint("proof_attestations", i, "checked_at"), string.concat("at: ", name));
        }
    }

    function test_vectorIdsAreEnvelopeMessageIds() public view {
        assertEq(
            keccak256(vm.parseJsonBytes(json, ".request_envelope.encoded")),
            vm.parseJsonBytes32(json, ".request_envelope.message_id"),
            "request id"
        );
        assertEq(
            keccak256(vm.parseJsonBytes(json, ".result_envelope.encoded")),
            vm.parseJsonBytes32(json, ".result_envelope.message_id"),
            "result id"
        );
    }

    // --- invalid payloads ------------------------------------------------------------------

    function test_invalidVectorsRevert() public {
        uint256 n = _count("invalid");
        assertTrue(n >= 14, "tasks_v1.json has fewer invalid cases than expected");
        for (uint256 i = 0; i < n; i++) {
            uint256 kind = _uint("invalid", i, "kind");
            bytes memory payload = _bytes("invalid", i, "payload");
            vm.expectPartialRevert(_expectedError(_str("invalid", i, "error"), _str("invalid", i, "name")));
            if (kind == 1) h.decodeRequest(payload);
            else if (kind == 2) h.decodeResult(payload);
            else if (kind == 3) h.decodeAttestation(payload);
            else revert AssertionFailed(string.concat("unknown kind in invalid case ", vm.toString(i)));
        }
    }

    /// The Python error fragment each invalid vector names, as this library's error.
    function _expectedError(string memory fragment, string memory name) internal pure returns (bytes4) {
        bytes32 f = keccak256(bytes(fragment));
        if (f == keccak256("truncated")) return TaskPayloads.PayloadTruncated.selector;
        if (f == keccak256("trailing")) return TaskPayloads.TrailingBytes.selector;
        if (f == keccak256("input mode 2") || f == keccak256("output mode 7")) {
            return TaskPayloads.UnknownDataMode.selector;
        }
        if (f == keccak256("scheme")) return TaskPayloads.InvalidURI.selector;
        if (f == keccak256("zero byte")) return TaskPayloads.InvalidExecutorId.selector;
        if (f == keccak256("limit is 512")) return TaskPayloads.PayloadTooLarge.selector;
        if (f == keccak256("proof kind 4")) return TaskPayloads.UnknownProofKind.selector;
        if (f == keccak256("output_hash")) return TaskPayloads.OutputHashMismatch.selector;
        if (f == keccak256("verdict 0")) return TaskPayloads.InvalidVerdict.selector;
        if (f == keccak256("method 4")) return TaskPayloads.UnknownAttestationMethod.selector;
        if (f == keccak256("must be 170")) return TaskPayloads.AttestationLength.selector;
        revert AssertionFailed(string.concat(
                "invalid vector '", name, "' names error '", fragment, "': map it in _expectedError"
            ));
    }

    // --- edge cases beyond the vectors (each refused or accepted by relay/tasks/payloads.py too) ---

    function test_uriRules() public {
        h.checkUri("ar://x");
        h.checkUri(bytes(string.concat("https://e.example/", unicode"é")));
        h.checkUri(hex"68747470733a2f2f61f09f9880"); // https://a + U+1F600 (4-byte UTF-8)
        bytes[12] memory bad = [
            bytes("https://"), // nothing after the scheme
            bytes("HTTPS://a"), // schemes are lower case
            bytes("ftp://a"),
            bytes("https://a b"),
            bytes("https://a\tb"),
            bytes("https://a\x7f"),
            hex"68747470733a2f2f61c2a0", // U+00A0 no-break space (str.isspace)
            hex"68747470733a2f2f61e38080", // U+3000 ideographic space
            hex"68747470733a2f2f61c2", // truncated 2-byte sequence
            hex"68747470733a2f2f61c0af", // overlong '/'
            hex"68747470733a2f2f61eda080", // surrogate U+D800
            hex"68747470733a2f2f61f4908080" // above U+10FFFF
        ];
        for (uint256 i = 0; i < bad.length; i++) {
            vm.expectPartialRevert(TaskPayloads.InvalidURI.selector);
            h.checkUri(bad[i]);
        }
        bytes memory long = new bytes(257);
        for (uint256 i = 0; i < long.length; i++) {
            long[i] = "a";
        }
        bytes memory scheme = "https://";
        for (uint256 i = 0; i < scheme.length; i++) {
            long[i] = scheme[i];
        }
        vm.expectPartialRevert(TaskPayloads.InvalidURI.selector);
        h.checkUri(long);
        assembly ("memory-safe") {
            mstore(long, 256)
        }
        h.checkUri(long);
    }

    function test_executorIdRules() public {
        assertEq(bytes32(h.encodeExecutorId("echo")), bytes32(bytes16("echo")), "padding");
        assertEq(bytes32(h.encodeExecutorId("abcdefghijklmnop")), bytes32(bytes16("abcdefghijklmnop")), "16 chars");
        string[4] memory bad = ["", "abcdefghijklmnopq", "has space", unicode"é"];
        for (uint256 i = 0; i < bad.length; i++) {
            vm.expectPartialRevert(TaskPayloads.InvalidExecutorId.selector);
            h.encodeExecutorId(bad[i]);
        }
    }

    function test_inlineInputLimit() public {
        bytes memory input = new bytes(TaskPayloads.MAX_INLINE_INPUT_LEN);
        assertEq(h.encodeRequestInline("echo", 1, 2, input).length, 512, "largest request is 512 bytes");
        vm.expectPartialRevert(TaskPayloads.InputTooLong.selector);
        h.encodeRequestInline("echo", 1, 2, new bytes(TaskPayloads.MAX_INLINE_INPUT_LEN + 1));
    }

    function test_resultProofRules() public {
        bytes memory valid = _bytes("task_results", 0, "encoded");
        assertEq(uint256(uint8(valid[208])), 0, "vector 0 has proof kind 0");
        // Proof kind 0 with one proof byte: same layout otherwise, and refused.
        bytes memory withProof = bytes.concat(_prefix(valid, 208), hex"00", hex"0001", hex"aa", _suffix(valid, 211));
        vm.expectPartialRevert(TaskPayloads.ProofWithoutProofKind.selector);
        h.decodeResult(withProof);
        // The same with proof kind 1 is fine.
        withProof[208] = 0x01;
        assertEq(h.decodeResult(withProof).proof, hex"aa", "proof bytes");
        // An all-zero executor id is empty.
        for (uint256 i = 32; i < 48; i++) {
            valid[i] = 0;
        }
        vm.expectPartialRevert(TaskPayloads.InvalidExecutorId.selector);
        h.decodeResult(valid);
    }

    function _prefix(bytes memory data, uint256 end) internal pure returns (bytes memory out) {
        out = new bytes(end);
        for (uint256 i = 0; i < end; i++) {
            out[i] = data[i];
        }
    }

    function _suffix(bytes memory data, uint256 start) internal pure returns (bytes memory out) {
        out = new bytes(data.length - start);
        for (uint256 i = 0; i < out.length; i++) {
            out[i] = data[start + i];
        }
    }
}
