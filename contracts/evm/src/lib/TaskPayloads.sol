// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// AI-task payloads of wire protocol v1 (docs/PROTOCOL.md, "AI-task payloads"): TASK_REQUEST
/// (encode and decode), TASK_RESULT and PROOF_ATTESTATION (decode). Big-endian, packed; the byte
/// layouts and what is refused follow relay/tasks/payloads.py exactly, checked against
/// tests/vectors/tasks_v1.json by test/TaskPayloads.t.sol.
library TaskPayloads {
    uint256 internal constant MAX_PAYLOAD_LEN = 512;
    uint256 internal constant EXECUTOR_ID_LEN = 16;
    uint256 internal constant MAX_URI_LEN = 256;
    /// executor 16, max_fee 16, deadline 8, input_mode 1.
    uint256 internal constant REQUEST_HEADER_LEN = 41;
    uint256 internal constant MAX_INLINE_INPUT_LEN = MAX_PAYLOAD_LEN - REQUEST_HEADER_LEN - 2; // 469
    /// request_id, executor, output_hash, worker, payout, signature, proof_kind.
    uint256 internal constant RESULT_HEADER_LEN = 209;
    uint256 internal constant ATTESTATION_LEN = 170;

    uint8 internal constant MODE_INLINE = 0;
    uint8 internal constant MODE_URI = 1;
    uint8 internal constant PROOF_NONE = 0;
    uint8 internal constant PROOF_ZK = 3; // highest known proof kind
    uint8 internal constant METHOD_SIGNATURE_ONLY = 1;
    uint8 internal constant METHOD_PLUGGABLE_VERIFIER = 3; // highest known method
    uint8 internal constant VERDICT_VALID = 1;

    /// ASCII, no terminator: what a worker signs is keccak256(tag ‖ request_id ‖ output_hash ‖
    /// executor[16] ‖ payout[32]).
    bytes17 internal constant TAG_RESULT = "TESSERA/v1/RESULT";

    struct TaskRequest {
        bytes16 executor; // right-padded with zero bytes
        uint128 maxFee;
        uint64 deadline;
        uint8 inputMode; // MODE_INLINE: input; MODE_URI: inputHash + inputUri
        bytes input;
        bytes32 inputHash;
        string inputUri;
    }

    struct TaskResult {
        bytes32 requestId;
        bytes16 executor;
        bytes32 outputHash;
        bytes32 worker; // Ed25519 public key
        bytes32 payout; // EVM address left-padded, or a Solana key
        bytes signature; // 64 bytes, Ed25519 by worker over resultSigningDigest(...)
        uint8 proofKind;
        bytes proof;
        uint8 outputMode; // MODE_INLINE: output; MODE_URI: outputUri
        bytes output;
        string outputUri;
    }

    struct ProofAttestation {
        bytes32 requestId;
        bytes32 resultId;
        bytes32 outputHash;
        bytes32 worker;
        bytes32 payout;
        uint8 method;
        uint8 verdict;
        uint64 checkedAt;
    }

    error PayloadTooLarge(uint256 length, uint256 max);
    error PayloadTruncated(string field, uint256 offset, uint256 needed);
    error TrailingBytes(uint256 count, uint256 offset);
    error InvalidExecutorId(string reason);
    error InvalidURI(string reason);
    error UnknownDataMode(string field, uint8 mode);
    error UnknownProofKind(uint8 proofKind);
    error ProofWithoutProofKind(uint256 proofLength);
    error OutputHashMismatch(bytes32 outputHash, bytes32 actual);
    error AttestationLength(uint256 length, uint256 expected);
    error UnknownAttestationMethod(uint8 method);
    error InvalidVerdict(uint8 verdict);
    error InputTooLong(uint256 length, uint256 max);

    // --- TASK_REQUEST ----------------------------------------------------------------------

    function encodeRequestInline(string memory executor, uint128 maxFee, uint64 deadline, bytes memory input)
        internal
        pure
        returns (bytes memory)
    {
        if (input.length > MAX_INLINE_INPUT_LEN) revert InputTooLong(input.length, MAX_INLINE_INPUT_LEN);
        return abi.encodePacked(encodeExecutorId(executor), maxFee, deadline, MODE_INLINE, uint16(input.length), input);
    }

    function encodeRequestByReference(
        string memory executor,
        uint128 maxFee,
        uint64 deadline,
        bytes32 inputHash,
        string memory inputUri
    ) internal pure returns (bytes memory payload) {
        bytes memory uri = bytes(inputUri);
        checkUri(uri);
        // 73 + 2 + 256 bytes at most: always within MAX_PAYLOAD_LEN.
        payload = abi.encodePacked(
            encodeExecutorId(executor), maxFee, deadline, MODE_URI, inputHash, uint16(uri.length), uri
        );
    }

    function decodeRequest(bytes memory data) internal pure returns (TaskRequest memory r) {
        _checkMax(data);
        _need(data, 0, REQUEST_HEADER_LEN, "TASK_REQUEST header");
        r.executor = bytes16(_word(data, 0));
        checkExecutorId(r.executor);
        r.maxFee = uint128(uint256(_word(data, 16)) >> 128);
        r.deadline = uint64(uint256(_word(data, 32)) >> 192);
        r.inputMode = uint8(data[40]);
        uint256 offset = REQUEST_HEADER_LEN;
        if (r.inputMode == MODE_INLINE) {
            (r.input, offset) = _prefixed(data, offset, "input");
        } else if (r.inputMode == MODE_URI) {
            _need(data, offset, 32, "input_hash");
            r.inputHash = _word(data, offset);
            bytes memory uri;
            (uri, offset) = _prefixed(data, offset + 32, "input_uri");
            checkUri(uri);
            r.inputUri = string(uri);
        } else {
            revert UnknownDataMode("input mode", r.inputMode);
        }
        _finish(data, offset);
    }

    // --- TASK_RESULT -----------------------------------------------------------------------

    function decodeResult(bytes memory data) internal pure returns (TaskResult memory r) {
        _checkMax(data);
        _need(data, 0, RESULT_HEADER_LEN, "TASK_RESULT header");
        r.requestId = _word(data, 0);
        r.executor = bytes16(_word(data, 32));
        checkExecutorId(r.executor);
        r.outputHash = _word(data, 48);
        r.worker = _word(data, 80);
        r.payout = _word(data, 112);
        r.signature = _slice(data, 144, 64);
        r.proofKind = uint8(data[208]);
        if (r.proofKind > PROOF_ZK) revert UnknownProofKind(r.proofKind);
        uint256 offset;
        (r.proof, offset) = _prefixed(data, RESULT_HEADER_LEN, "proof");
        if (r.proofKind == PROOF_NONE && r.proof.length != 0) revert ProofWithoutProofKind(r.proof.length);
        _need(data, offset, 1, "output mode");
        r.outputMode = uint8(data[offset]);
        offset += 1;
        if (r.outputMode == MODE_INLINE) {
            (r.output, offset) = _prefixed(data, offset, "output");
            bytes32 actual = keccak256(r.output);
            if (actual != r.outputHash) revert OutputHashMismatch(r.outputHash, actual);
        } else if (r.outputMode == MODE_URI) {
            bytes memory uri;
            (uri, offset) = _prefixed(data, offset, "output_uri");
            checkUri(uri);
            r.outputUri = string(uri);
        } else {
            revert UnknownDataMode("output mode", r.outputMode);
        }
        _finish(data, offset);
    }

    /// keccak256("TESSERA/v1/RESULT" ‖ request_id ‖ output_hash ‖ executor[16] ‖ payout[32]): the
    /// 32 bytes a worker signs with Ed25519 (checked off-chain by the attesters, not here).
    function resultSigningDigest(bytes32 requestId, bytes32 outputHash, bytes16 executor, bytes32 payout)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(TAG_RESULT, requestId, outputHash, executor, payout));
    }

    // --- PROOF_ATTESTATION -----------------------------------------------------------------

    function decodeAttestation(bytes memory data) internal pure returns (ProofAttestation memory a) {
        if (data.length != ATTESTATION_LEN) revert AttestationLength(data.length, ATTESTATION_LEN);
        a.requestId = _word(data, 0);
        a.resultId = _word(data, 32);
        a.outputHash = _word(data, 64);
        a.worker = _word(data, 96);
        a.payout = _word(data, 128);
        a.method = uint8(data[160]);
        a.verdict = uint8(data[161]);
        a.checkedAt = uint64(uint256(_word(data, 162)) >> 192);
        if (a.method < METHOD_SIGNATURE_ONLY || a.method > METHOD_PLUGGABLE_VERIFIER) {
            revert UnknownAttestationMethod(a.method);
        }
        if (a.verdict != VERDICT_VALID) revert InvalidVerdict(a.verdict);
    }

    // --- fields ----------------------------------------------------------------------------

    /// "sentiment" → 0x73656e74696d656e74 followed by zero bytes; 1–16 printable ASCII characters.
    function encodeExecutorId(string memory executor) internal pure returns (bytes16 id) {
        bytes memory raw = bytes(executor);
        if (raw.length == 0 || raw.length > EXECUTOR_ID_LEN) {
            revert InvalidExecutorId("executor id must be 1 to 16 printable ASCII characters");
        }
        for (uint256 i = 0; i < raw.length; ++i) {
            if (uint8(raw[i]) < 0x21 || uint8(raw[i]) > 0x7E) {
                revert InvalidExecutorId("executor id must be printable ASCII without spaces (0x21-0x7E)");
            }
        }
        id = bytes16(_word(raw, 0)) & bytes16(type(uint128).max << uint128(8 * (EXECUTOR_ID_LEN - raw.length)));
    }

    /// A padded executor id: printable ASCII, then only zero bytes, at least one character.
    function checkExecutorId(bytes16 id) internal pure {
        if (id == bytes16(0)) revert InvalidExecutorId("executor id is empty");
        bool padding;
        for (uint256 i = 0; i < EXECUTOR_ID_LEN; ++i) {
            uint8 c = uint8(id[i]);
            if (c == 0) {
                padding = true;
            } else if (padding) {
                revert InvalidExecutorId("executor id has a zero byte inside it; only trailing zero padding is allowed");
            } else if (c < 0x21 || c > 0x7E) {
                revert InvalidExecutorId("executor id must be printable ASCII without spaces (0x21-0x7E)");
            }
        }
    }

    /// At most 256 bytes of strict UTF-8, one of the schemes https:// http:// ipfs:// ar:// with
    /// something after it, no whitespace (Python's str.isspace) or control characters.
    function checkUri(bytes memory uri) internal pure {
        if (uri.length > MAX_URI_LEN) revert InvalidURI("URI is longer than 256 bytes");
        uint256 schemeLen = _schemeLength(uri);
        if (schemeLen == 0) revert InvalidURI("unsupported URI scheme; use https://, http://, ipfs:// or ar://");
        if (uri.length == schemeLen) revert InvalidURI("URI names nothing after the scheme");
        uint256 i;
        while (i < uri.length) {
            (uint256 cp, uint256 len) = _utf8At(uri, i);
            if (_isSpaceOrControl(cp)) {
                revert InvalidURI("URI contains whitespace or control characters; percent-encode them");
            }
            i += len;
        }
    }

    // --- internals -------------------------------------------------------------------------

    function _schemeLength(bytes memory uri) private pure returns (uint256) {
        bytes32 w = _word(uri, 0); // bytes past the end read as whatever follows; lengths are checked
        if (uri.length >= 8 && bytes8(w) == "https://") return 8;
        if (uri.length >= 7 && bytes7(w) == "http://") return 7;
        if (uri.length >= 7 && bytes7(w) == "ipfs://") return 7;
        if (uri.length >= 5 && bytes5(w) == "ar://") return 5;
        return 0;
    }

    /// The code point starting at byte i, refusing what Python's strict UTF-8 decoder refuses:
    /// overlong forms, surrogates, code points above U+10FFFF, stray or missing continuations.
    function _utf8At(bytes memory s, uint256 i) private pure returns (uint256 cp, uint256 len) {
        uint8 b0 = uint8(s[i]);
        if (b0 < 0x80) return (b0, 1);
        uint256 lo = 0x80;
        uint256 hi = 0xBF; // allowed range of the second byte
        if (b0 >= 0xC2 && b0 <= 0xDF) {
            len = 2;
            cp = b0 & 0x1F;
        } else if (b0 >= 0xE0 && b0 <= 0xEF) {
            len = 3;
            cp = b0 & 0x0F;
            if (b0 == 0xE0) lo = 0xA0;
            if (b0 == 0xED) hi = 0x9F;
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
            len = 4;
            cp = b0 & 0x07;
            if (b0 == 0xF0) lo = 0x90;
            if (b0 == 0xF4) hi = 0x8F;
        } else {
            revert InvalidURI("URI is not valid UTF-8");
        }
        if (i + len > s.length) revert InvalidURI("URI is not valid UTF-8");
        for (uint256 k = 1; k < len; ++k) {
            uint8 b = uint8(s[i + k]);
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) revert InvalidURI("URI is not valid UTF-8");
            cp = (cp << 6) | (b & 0x3F);
        }
    }

    function _isSpaceOrControl(uint256 cp) private pure returns (bool) {
        if (cp <= 0x20 || cp == 0x7F) return true;
        if (cp < 0x85) return false;
        return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028
            || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    }

    function _checkMax(bytes memory data) private pure {
        if (data.length > MAX_PAYLOAD_LEN) revert PayloadTooLarge(data.length, MAX_PAYLOAD_LEN);
    }

    function _need(bytes memory data, uint256 offset, uint256 n, string memory field) private pure {
        if (offset + n > data.length) revert PayloadTruncated(field, offset, n);
    }

    function _finish(bytes memory data, uint256 offset) private pure {
        if (offset != data.length) revert TrailingBytes(data.length - offset, offset);
    }

    /// u16 length ‖ bytes at offset; returns the bytes and the offset after them.
    function _prefixed(bytes memory data, uint256 offset, string memory field)
        private
        pure
        returns (bytes memory out, uint256 next)
    {
        _need(data, offset, 2, field);
        uint256 len = uint16(bytes2(_word(data, offset)));
        _need(data, offset + 2, len, field);
        out = _slice(data, offset + 2, len);
        next = offset + 2 + len;
    }

    function _slice(bytes memory data, uint256 offset, uint256 len) private pure returns (bytes memory out) {
        out = new bytes(len);
        assembly ("memory-safe") {
            mcopy(add(out, 32), add(add(data, 32), offset), len)
        }
    }

    /// 32 bytes at offset (callers check bounds; memory past the end reads without reverting).
    function _word(bytes memory data, uint256 offset) private pure returns (bytes32 w) {
        assembly ("memory-safe") {
            w := mload(add(add(data, 32), offset))
        }
    }
}
