// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// Batch attestations (docs/PROTOCOL.md, "Batch attestations"): a Merkle tree over the message ids of
/// a batch on one lane, signed once under "TESSERA/v1/ROOT". Same tree as relay/batch.py and the
/// Solana program's batch.c; tests/vectors/batch_v1.json checks all three.
///   leaf = keccak256(0x00 ‖ message_id), in batch order
///   node = keccak256(0x01 ‖ left ‖ right); a level of odd width promotes its last node unchanged
///   digest = keccak256("TESSERA/v1/ROOT" ‖ epoch u32 ‖ src_domain u32 ‖ dst_domain u32 ‖ leaf_count u32 ‖ root)
library Batch {
    uint256 internal constant MAX_DEPTH = 6;
    uint256 internal constant MAX_SIZE = 64;
    bytes15 internal constant TAG_ROOT = "TESSERA/v1/ROOT";

    error BatchSizeInvalid(uint256 count);
    error LeafIndexOutOfRange(uint256 index, uint256 leafCount);
    error ProofLengthInvalid(uint256 length, uint256 expected);

    function leafHash(bytes32 messageId) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            mstore8(0, 0)
            mstore(1, messageId)
            h := keccak256(0, 33)
        }
    }

    function nodeHash(bytes32 left, bytes32 right) internal pure returns (bytes32 h) {
        // 65 bytes at the free memory pointer (not the scratch space: it holds 64).
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore8(p, 1)
            mstore(add(p, 1), left)
            mstore(add(p, 33), right)
            h := keccak256(p, 65)
        }
    }

    /// The root over `ids` (message ids, batch order). Overwrites `ids` with the leaf hashes and
    /// then the levels above (no second array).
    function rootInPlace(bytes32[] memory ids) internal pure returns (bytes32) {
        uint256 width = ids.length;
        if (width == 0 || width > MAX_SIZE) revert BatchSizeInvalid(width);
        for (uint256 i = 0; i < width; ++i) {
            ids[i] = leafHash(ids[i]);
        }
        while (width > 1) {
            uint256 half = width >> 1;
            for (uint256 i = 0; i < half; ++i) {
                ids[i] = nodeHash(ids[2 * i], ids[2 * i + 1]);
            }
            if (width & 1 == 1) {
                ids[half] = ids[width - 1]; // promoted
                width = half + 1;
            } else {
                width = half;
            }
        }
        return ids[0];
    }

    /// The root that `proof` (siblings from the leaf up, none where the node is promoted) leads to
    /// from `messageId` at `index` of a tree of `leafCount` leaves. Reverts on a proof of the
    /// wrong length for that position and size.
    function rootFromProof(bytes32 messageId, uint256 index, uint256 leafCount, bytes32[] calldata proof)
        internal
        pure
        returns (bytes32 node)
    {
        if (leafCount == 0 || leafCount > MAX_SIZE) revert BatchSizeInvalid(leafCount);
        if (index >= leafCount) revert LeafIndexOutOfRange(index, leafCount);
        node = leafHash(messageId);
        uint256 used;
        uint256 width = leafCount;
        while (width > 1) {
            if (index & 1 == 1) {
                if (used == proof.length) revert ProofLengthInvalid(proof.length, used + 1);
                node = nodeHash(proof[used++], node);
            } else if (index + 1 < width) {
                if (used == proof.length) revert ProofLengthInvalid(proof.length, used + 1);
                node = nodeHash(node, proof[used++]);
            }
            index >>= 1;
            width = (width + 1) >> 1;
        }
        if (used != proof.length) revert ProofLengthInvalid(proof.length, used);
    }

    /// What the committee signs for a batch root.
    function digest(uint32 epoch, uint32 srcDomain, uint32 dstDomain, uint32 leafCount, bytes32 root)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(TAG_ROOT, epoch, srcDomain, dstDomain, leafCount, root));
    }
}
