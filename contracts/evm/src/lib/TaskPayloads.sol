// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// AI-task payloads (docs/PROTOCOL.md): v1 ("AI-task payloads": TASK_REQUEST encode and decode,
/// TASK_RESULT and PROOF_ATTESTATION decode) and v2 ("AI-task payloads v2": TASK_REQUEST v2 with
/// its auction terms, TASK_RESULT v2 with its claim, the committee's verdict, the auction price).
/// Big-endian, packed; the byte layouts and what is refused follow relay/tasks/payloads.py
/// exactly, checked against tests/vectors/tasks_v1.json and tasks_v2.json by
/// test/TaskPayloads.t.sol and test/TaskPayloadsV2.t.sol.
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
    /// A v2 payload whose version byte (offset 0 of a request, 32 of a result or verdict) is not 2.
    error UnsupportedPayloadVersion(uint8 version, uint256 offset);
    /// start_bps above 10000, claim_window 0, or refund_to zero.
    error InvalidAuctionTerms(string field);

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

    // === task protocol v2 ===================================================================

    uint8 internal constant PAYLOAD_V2 = 2;
    uint256 internal constant BPS = 10_000;
    /// version, executor, max_fee, deadline, auction_window, start_bps, claim_window, bond, refund_to, input_mode.
    uint256 internal constant REQUEST_V2_HEADER_LEN = 100;
    uint256 internal constant MAX_INLINE_INPUT_LEN_V2 = MAX_PAYLOAD_LEN - REQUEST_V2_HEADER_LEN - 2; // 410
    /// request_id, version, executor, output_hash, worker, claimant, payout, price, signature, proof_kind.
    uint256 internal constant RESULT_V2_HEADER_LEN = 258;
    uint256 internal constant VERDICT_LEN = 220;
    uint8 internal constant VERDICT_REFUSED = 2;
    uint8 internal constant MAX_REFUSAL_REASON = 7;
    /// What a v2 worker signs: keccak256(tag ‖ request_id ‖ output_hash ‖ executor[16] ‖
    /// claimant[32] ‖ payout[32] ‖ price u128).
    bytes17 internal constant TAG_RESULT_V2 = "TESSERA/v2/RESULT";

    /// What the requester sets for the auction and the claim (docs/TASKS.md, "Task protocol v2").
    struct AuctionTerms {
        uint32 auctionWindow; // seconds for the price to rise from start to max_fee (0: max_fee at once)
        uint16 startBps; // price at the start, basis points of max_fee (0..10000)
        uint32 claimWindow; // seconds a claimant has to submit (capped at the deadline), at least 1
        uint128 bond; // serving chain's smallest unit
        bytes32 refundTo; // the requester's account on the serving chain: receives forfeited bonds
    }

    struct TaskRequestV2 {
        bytes16 executor;
        uint128 maxFee;
        uint64 deadline;
        AuctionTerms terms;
        uint8 inputMode;
        bytes input;
        bytes32 inputHash;
        string inputUri;
    }

    struct TaskResultV2 {
        bytes32 requestId;
        bytes16 executor;
        bytes32 outputHash;
        bytes32 worker; // Ed25519 public key
        bytes32 claimant; // the claiming account on the serving chain
        bytes32 payout; // on the requester's chain
        uint128 price; // the claim price
        bytes signature;
        uint8 proofKind;
        bytes proof;
        uint8 outputMode;
        bytes output;
        string outputUri;
    }

    /// PROOF_ATTESTATION v2: the committee's verdict on one result.
    struct Verdict {
        bytes32 requestId;
        bytes32 resultId;
        bytes32 outputHash;
        bytes32 worker;
        bytes32 claimant;
        bytes32 payout;
        uint128 price;
        uint8 method;
        uint8 verdict; // 1 valid, 2 refused
        uint8 reason; // 0 with a valid verdict, 1..7 with a refusal
        uint64 submittedAt; // block time of the result on the serving chain
    }

    function encodeRequestV2Inline(
        string memory executor,
        uint128 maxFee,
        uint64 deadline,
        AuctionTerms memory terms,
        bytes memory input
    ) internal pure returns (bytes memory) {
        if (input.length > MAX_INLINE_INPUT_LEN_V2) revert InputTooLong(input.length, MAX_INLINE_INPUT_LEN_V2);
        return bytes.concat(
            _requestV2Head(executor, maxFee, deadline, terms, MODE_INLINE), abi.encodePacked(uint16(input.length), input)
        );
    }

    function encodeRequestV2ByReference(
        string memory executor,
        uint128 maxFee,
        uint64 deadline,
        AuctionTerms memory terms,
        bytes32 inputHash,
        string memory inputUri
    ) internal pure returns (bytes memory) {
        bytes memory uri = bytes(inputUri);
        checkUri(uri);
        // 100 + 32 + 2 + 256 bytes at most: always within MAX_PAYLOAD_LEN.
        return bytes.concat(
            _requestV2Head(executor, maxFee, deadline, terms, MODE_URI),
            abi.encodePacked(inputHash, uint16(uri.length), uri)
        );
    }

    function decodeRequestV2(bytes memory data) internal pure returns (TaskRequestV2 memory r) {
        _checkMax(data);
        _need(data, 0, 1, "version");
        if (uint8(data[0]) != PAYLOAD_V2) revert UnsupportedPayloadVersion(uint8(data[0]), 0);
        _need(data, 0, REQUEST_V2_HEADER_LEN, "TASK_REQUEST v2 header");
        r.executor = bytes16(_word(data, 1));
        checkExecutorId(r.executor);
        r.maxFee = uint128(uint256(_word(data, 17)) >> 128);
        r.deadline = uint64(uint256(_word(data, 33)) >> 192);
        r.terms.auctionWindow = uint32(uint256(_word(data, 41)) >> 224);
        r.terms.startBps = uint16(uint256(_word(data, 45)) >> 240);
        r.terms.claimWindow = uint32(uint256(_word(data, 47)) >> 224);
        r.terms.bond = uint128(uint256(_word(data, 51)) >> 128);
        r.terms.refundTo = _word(data, 67);
        checkAuctionTerms(r.terms);
        r.inputMode = uint8(data[99]);
        uint256 offset = REQUEST_V2_HEADER_LEN;
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

    function decodeResultV2(bytes memory data) internal pure returns (TaskResultV2 memory r) {
        _checkMax(data);
        _need(data, 0, 33, "version");
        if (uint8(data[32]) != PAYLOAD_V2) revert UnsupportedPayloadVersion(uint8(data[32]), 32);
        _need(data, 0, RESULT_V2_HEADER_LEN, "TASK_RESULT v2 header");
        r.requestId = _word(data, 0);
        r.executor = bytes16(_word(data, 33));
        checkExecutorId(r.executor);
        r.outputHash = _word(data, 49);
        r.worker = _word(data, 81);
        r.claimant = _word(data, 113);
        r.payout = _word(data, 145);
        r.price = uint128(uint256(_word(data, 177)) >> 128);
        r.signature = _slice(data, 193, 64);
        r.proofKind = uint8(data[257]);
        if (r.proofKind > PROOF_ZK) revert UnknownProofKind(r.proofKind);
        uint256 offset;
        (r.proof, offset) = _prefixed(data, RESULT_V2_HEADER_LEN, "proof");
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

    function decodeVerdict(bytes memory data) internal pure returns (Verdict memory v) {
        if (data.length != VERDICT_LEN) revert AttestationLength(data.length, VERDICT_LEN);
        if (uint8(data[32]) != PAYLOAD_V2) revert UnsupportedPayloadVersion(uint8(data[32]), 32);
        v.requestId = _word(data, 0);
        v.resultId = _word(data, 33);
        v.outputHash = _word(data, 65);
        v.worker = _word(data, 97);
        v.claimant = _word(data, 129);
        v.payout = _word(data, 161);
        v.price = uint128(uint256(_word(data, 193)) >> 128);
        v.method = uint8(data[209]);
        v.verdict = uint8(data[210]);
        v.reason = uint8(data[211]);
        v.submittedAt = uint64(uint256(_word(data, 212)) >> 192);
        if (v.method < METHOD_SIGNATURE_ONLY || v.method > METHOD_PLUGGABLE_VERIFIER) {
            revert UnknownAttestationMethod(v.method);
        }
        if (v.verdict == VERDICT_VALID) {
            if (v.reason != 0) revert InvalidVerdict(v.verdict);
        } else if (v.verdict == VERDICT_REFUSED) {
            if (v.reason == 0 || v.reason > MAX_REFUSAL_REASON) revert InvalidVerdict(v.verdict);
        } else {
            revert InvalidVerdict(v.verdict);
        }
    }

    function checkAuctionTerms(AuctionTerms memory t) internal pure {
        if (t.startBps > BPS) revert InvalidAuctionTerms("start_bps above 10000");
        if (t.claimWindow == 0) revert InvalidAuctionTerms("claim_window is 0");
        if (t.refundTo == bytes32(0)) revert InvalidAuctionTerms("refund_to is zero");
    }

    /// The claim price at `now` (serving chain's clock): floor(maxFee·startBps/10000), rising
    /// linearly to maxFee over `window` seconds from `start`, floor at each division (the product
    /// needs up to 160 bits). Identical to relay.tasks.payloads.auction_price.
    function auctionPrice(uint128 maxFee, uint16 startBps, uint32 window, uint64 start, uint256 now_)
        internal
        pure
        returns (uint128)
    {
        if (window == 0) return maxFee;
        uint256 startPrice = uint256(maxFee) * startBps / BPS;
        uint256 elapsed = now_ <= start ? 0 : now_ - start;
        if (elapsed > window) elapsed = window;
        return uint128(startPrice + (uint256(maxFee) - startPrice) * elapsed / window);
    }

    /// The fields a verdict must repeat from its result, hashed (boards compare one word).
    function resultFieldsHash(
        bytes32 requestId,
        bytes32 outputHash,
        bytes32 worker,
        bytes32 claimant,
        bytes32 payout,
        uint128 price
    ) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(requestId, outputHash, worker, claimant, payout, price));
    }

    function resultSigningDigestV2(
        bytes32 requestId,
        bytes32 outputHash,
        bytes16 executor,
        bytes32 claimant,
        bytes32 payout,
        uint128 price
    ) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(TAG_RESULT_V2, requestId, outputHash, executor, claimant, payout, price));
    }

    function _requestV2Head(
        string memory executor,
        uint128 maxFee,
        uint64 deadline,
        AuctionTerms memory t,
        uint8 mode
    ) private pure returns (bytes memory) {
        checkAuctionTerms(t);
        return bytes.concat(
            abi.encodePacked(PAYLOAD_V2, encodeExecutorId(executor), maxFee, deadline),
            abi.encodePacked(t.auctionWindow, t.startBps, t.claimWindow, t.bond, t.refundTo, mode)
        );
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
