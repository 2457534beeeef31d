// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// Tessera wire protocol v1 envelope (docs/PROTOCOL.md): version u8 ‖ kind u8 ‖ nonce u64 ‖
/// src_domain u32 ‖ src_sender bytes32 ‖ dst_domain u32 ‖ dst_receiver bytes32 ‖ payload,
/// big-endian and packed. The same bytes are produced by relay/envelope.py and the Solana program.
library Envelope {
    uint8 internal constant VERSION = 1;
    uint256 internal constant HEADER_LEN = 82;
    uint256 internal constant MAX_PAYLOAD_LEN = 512;

    uint8 internal constant KIND_TASK_REQUEST = 1;
    uint8 internal constant KIND_TASK_RESULT = 2;
    uint8 internal constant KIND_PROOF_ATTESTATION = 3;
    uint8 internal constant KIND_DATA = 4;
    uint8 internal constant KIND_COMMITTEE_ROTATION = 5;

    /// ASCII, no terminator; a value type so the digest needs no copy of a bytes constant.
    bytes14 internal constant TAG_MESSAGE = "TESSERA/v1/MSG";
    /// Source domain of COMMITTEE_ROTATION envelopes: they come from the committee, not a chain.
    uint32 internal constant COMMITTEE_DOMAIN = 0;

    struct Message {
        uint8 version;
        uint8 kind;
        uint64 nonce;
        uint32 srcDomain;
        bytes32 srcSender;
        uint32 dstDomain;
        bytes32 dstReceiver;
        bytes payload;
    }

    error EnvelopeTooShort(uint256 length);
    error UnsupportedVersion(uint8 version);
    error UnknownKind(uint8 kind);
    error PayloadTooLong(uint256 length);

    function encode(Message memory m) internal pure returns (bytes memory) {
        _validate(m.version, m.kind, m.payload.length);
        return abi.encodePacked(
            m.version, m.kind, m.nonce, m.srcDomain, m.srcSender, m.dstDomain, m.dstReceiver, m.payload
        );
    }

    function decode(bytes memory data) internal pure returns (Message memory m) {
        if (data.length < HEADER_LEN) revert EnvelopeTooShort(data.length);
        uint256 w0;
        bytes32 srcSender;
        uint256 w1;
        bytes32 dstReceiver;
        assembly ("memory-safe") {
            let base := add(data, 32)
            w0 := mload(base) // version ‖ kind ‖ nonce ‖ src_domain ‖ 18 bytes of src_sender
            srcSender := mload(add(base, 14))
            w1 := mload(add(base, 46)) // dst_domain ‖ 28 bytes of dst_receiver
            dstReceiver := mload(add(base, 50))
        }
        m.version = uint8(w0 >> 248);
        m.kind = uint8(w0 >> 240);
        m.nonce = uint64(w0 >> 176);
        m.srcDomain = uint32(w0 >> 144);
        m.srcSender = srcSender;
        m.dstDomain = uint32(w1 >> 224);
        m.dstReceiver = dstReceiver;
        uint256 payloadLen = data.length - HEADER_LEN;
        _validate(m.version, m.kind, payloadLen);
        bytes memory payload = new bytes(payloadLen);
        assembly ("memory-safe") {
            mcopy(add(payload, 32), add(data, add(32, HEADER_LEN)), payloadLen)
        }
        m.payload = payload;
    }

    function messageId(bytes memory envelope) internal pure returns (bytes32) {
        return keccak256(envelope);
    }

    /// What the committee signs: keccak256("TESSERA/v1/MSG" ‖ epoch u32 ‖ message_id).
    function digest(uint32 epoch, bytes32 id) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(TAG_MESSAGE, epoch, id));
    }

    function _validate(uint8 version, uint8 kind, uint256 payloadLen) private pure {
        if (version != VERSION) revert UnsupportedVersion(version);
        if (kind < KIND_TASK_REQUEST || kind > KIND_COMMITTEE_ROTATION) revert UnknownKind(kind);
        if (payloadLen > MAX_PAYLOAD_LEN) revert PayloadTooLong(payloadLen);
    }
}
