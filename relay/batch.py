"""Batch attestations (docs/PROTOCOL.md, "Batch attestations"): one Merkle root over the message ids
of a batch on one lane (source domain → destination domain), signed once by the committee under
`TESSERA/v1/ROOT`, and per-message inclusion proofs. Pure Python (keccak only): the same tree is
computed by contracts/evm/src/Gateway.sol and contracts/solana/src/batch.c, and the shared vectors
in tests/vectors/batch_v1.json (tests/vectors/generate_batch.py) prove they agree.

The tree:
- leaf_i = keccak256(0x00 ‖ message_id_i), in batch order (index 0, 1, …; the relayer's order);
- node = keccak256(0x01 ‖ left ‖ right);
- a level of odd width promotes its last node unchanged to the next level;
- the root of one leaf is that leaf; at most MAX_BATCH_SIZE = 2**MAX_BATCH_DEPTH leaves.
The committee signs `root_digest(epoch, src_domain, dst_domain, leaf_count, root)` =
keccak256("TESSERA/v1/ROOT" ‖ epoch:u32 ‖ src_domain:u32 ‖ dst_domain:u32 ‖ leaf_count:u32 ‖ root).
A proof is the list of sibling hashes from the leaf up, skipping levels where the node is promoted;
its length follows from (index, leaf_count) alone (`proof_length`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from relay.envelope import Envelope, EnvelopeError, keccak256
from relay.protocol import TAG_ROOT, U32_MAX, MessageKind

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
# Depth 6 (64 messages) keeps the largest Solana DeliverWithProof (a 512-byte payload to the task
# board with its 9 accounts, the committee config last) inside 1,232 bytes, without a compute-budget
# instruction: see docs/PROTOCOL.md ("Maximum depth") for the byte count.
MAX_BATCH_DEPTH = 6
MAX_BATCH_SIZE = 1 << MAX_BATCH_DEPTH


class BatchError(ValueError):
    """A batch, a proof or a root does not follow the batch protocol."""


def leaf_hash(message_id: bytes) -> bytes:
    if len(message_id) != 32:
        raise BatchError("a message id has 32 bytes")
    return keccak256(LEAF_PREFIX + message_id)


def node_hash(left: bytes, right: bytes) -> bytes:
    return keccak256(NODE_PREFIX + left + right)


def _check_count(leaf_count: int) -> None:
    if not 1 <= leaf_count <= MAX_BATCH_SIZE:
        raise BatchError(f"a batch has 1..{MAX_BATCH_SIZE} messages, not {leaf_count}")


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The tree over already-hashed leaves, bottom level first: pairs hashed with `node_hash`, the last
    node of an odd-width level promoted unchanged. Shared by message batches and feed roots, which
    differ only in how a leaf is hashed (their leaf prefixes)."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])  # promoted
        levels.append(above)
    return levels


def proof_of(levels: list[list[bytes]], index: int) -> list[bytes]:
    """The siblings of leaf `index` from the bottom up (none where the node was promoted)."""
    proof = []
    for level in levels[:-1]:
        if index ^ 1 < len(level):
            proof.append(level[index ^ 1])
        index //= 2
    return proof


def climb(leaf: bytes, index: int, leaf_count: int, proof: Sequence[bytes]) -> bytes:
    """The root a leaf hash and its proof lead to; the proof's length must already be checked."""
    node, width, used = leaf, leaf_count, 0
    while width > 1:
        if index % 2 == 1:
            node = node_hash(proof[used], node)
            used += 1
        elif index + 1 < width:
            node = node_hash(node, proof[used])
            used += 1
        index //= 2
        width = (width + 1) // 2
    return node


def _levels(message_ids: Sequence[bytes]) -> list[list[bytes]]:
    _check_count(len(message_ids))
    return tree_levels([leaf_hash(m) for m in message_ids])


def merkle_root(message_ids: Sequence[bytes]) -> bytes:
    return _levels(message_ids)[-1][0]


def proof_length(index: int, leaf_count: int) -> int:
    """How many siblings the proof of leaf `index` in a tree of `leaf_count` leaves has."""
    _check_count(leaf_count)
    if not 0 <= index < leaf_count:
        raise BatchError(f"leaf index {index} outside a batch of {leaf_count}")
    n = 0
    width = leaf_count
    while width > 1:
        if index % 2 == 1 or index + 1 < width:
            n += 1
        index //= 2
        width = (width + 1) // 2
    return n


def merkle_proof(message_ids: Sequence[bytes], index: int) -> list[bytes]:
    levels = _levels(message_ids)
    if not 0 <= index < len(message_ids):
        raise BatchError(f"leaf index {index} outside a batch of {len(message_ids)}")
    return proof_of(levels, index)


def root_from_proof(message_id: bytes, index: int, leaf_count: int, proof: Sequence[bytes]) -> bytes:
    """The root a proof leads to (what the contracts compute); raises on a proof of the wrong length."""
    if len(proof) != proof_length(index, leaf_count):
        raise BatchError(f"a proof of leaf {index} of {leaf_count} has {proof_length(index, leaf_count)} "
                         f"hashes, not {len(proof)}")
    return climb(leaf_hash(message_id), index, leaf_count, proof)


def verify_proof(root: bytes, message_id: bytes, index: int, leaf_count: int, proof: Sequence[bytes]) -> bool:
    try:
        return root_from_proof(message_id, index, leaf_count, proof) == root
    except BatchError:
        return False


def root_digest(epoch: int, src_domain: int, dst_domain: int, leaf_count: int, root: bytes) -> bytes:
    """What the committee signs for a batch root."""
    for name, value in (("epoch", epoch), ("src_domain", src_domain), ("dst_domain", dst_domain)):
        if not 0 <= value <= U32_MAX:
            raise BatchError(f"{name} {value} does not fit in uint32")
    _check_count(leaf_count)
    if len(root) != 32:
        raise BatchError("a root has 32 bytes")
    return keccak256(TAG_ROOT + b"".join(v.to_bytes(4, "big") for v in (epoch, src_domain, dst_domain, leaf_count))
                     + root)


@dataclass(frozen=True, slots=True)
class Batch:
    """Envelopes of one lane in batch order, with their tree. The message ids and the tree are
    computed once per batch (every proof and the root come from them), not on each use."""

    src_domain: int
    dst_domain: int
    envelopes: tuple[Envelope, ...]
    _ids: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _tree: list[list[bytes]] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", tuple(e.message_id for e in self.envelopes))
        object.__setattr__(self, "_tree", None)

    @classmethod
    def of(cls, envelopes: Sequence[Envelope]) -> "Batch":
        """Refuses an empty or oversized batch, mixed lanes, rotations and repeated messages."""
        _check_count(len(envelopes))
        src, dst = envelopes[0].src_domain, envelopes[0].dst_domain
        for e in envelopes:
            if (e.src_domain, e.dst_domain) != (src, dst):
                raise BatchError(f"lane mismatch: {e.src_domain}->{e.dst_domain} in a batch of {src}->{dst}")
            if e.kind == MessageKind.COMMITTEE_ROTATION:
                raise BatchError("a COMMITTEE_ROTATION is not delivered through a gateway")
        batch = cls(src, dst, tuple(envelopes))
        seen: set[bytes] = set()
        for message_id in batch._ids:
            if message_id in seen:
                raise BatchError(f"message 0x{message_id.hex()} twice in one batch")
            seen.add(message_id)
        return batch

    @property
    def message_ids(self) -> list[bytes]:
        return list(self._ids)

    def _levels(self) -> list[list[bytes]]:
        if self._tree is None:
            object.__setattr__(self, "_tree", _levels(self._ids))
        assert self._tree is not None
        return self._tree

    @property
    def root(self) -> bytes:
        return self._levels()[-1][0]

    def digest(self, epoch: int) -> bytes:
        return root_digest(epoch, self.src_domain, self.dst_domain, len(self.envelopes), self.root)

    def proof(self, index: int) -> list[bytes]:
        levels = self._levels()
        if not 0 <= index < len(self._ids):
            raise BatchError(f"leaf index {index} outside a batch of {len(self._ids)}")
        return proof_of(levels, index)


def decode_batch(raw: Sequence[bytes]) -> Batch:
    try:
        return Batch.of([Envelope.decode(r) for r in raw])
    except EnvelopeError as exc:
        raise BatchError(str(exc)) from exc
