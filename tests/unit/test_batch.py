"""relay.batch and tests/vectors/batch_v1.json: the tree, proofs and root digest, checked against an
independent reading of docs/PROTOCOL.md ("Batch attestations") and the vectors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from relay.batch import (
    MAX_BATCH_SIZE,
    Batch,
    BatchError,
    merkle_proof,
    merkle_root,
    proof_length,
    root_digest,
    root_from_proof,
    verify_proof,
)
from relay.envelope import Envelope, keccak256
from relay.protocol import MessageKind

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DATA = json.loads((VECTORS / "batch_v1.json").read_text())


def _b(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def test_file_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("generate_batch", VECTORS / "generate_batch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.dumps(module.build(), indent=2) + "\n" == (VECTORS / "batch_v1.json").read_text()


def _reference_root(ids: list[bytes]) -> bytes:
    # The docs' wording, sharing no code with relay.batch: hash leaves, pair left to right, carry an
    # odd last node up unchanged, until one node is left.
    level = [keccak256(b"\x00" + i) for i in ids]
    while len(level) > 1:
        nxt = [keccak256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = nxt + ([level[-1]] if len(level) % 2 else [])
    return level[0]


@pytest.mark.parametrize("tree", DATA["trees"], ids=lambda t: f"n={t['leaf_count']}")
def test_tree_vectors(tree: dict) -> None:
    ids = [_b(i) for i in tree["message_ids"]]
    root = _b(tree["root"])
    assert merkle_root(ids) == root == _reference_root(ids)
    assert [keccak256(b"\x00" + i) for i in ids] == [_b(x) for x in tree["leaves"]]
    for case in tree["proofs"]:
        proof = [_b(p) for p in case["proof"]]
        assert merkle_proof(ids, case["index"]) == proof
        assert len(proof) == proof_length(case["index"], len(ids))
        assert verify_proof(root, ids[case["index"]], case["index"], len(ids), proof)


def test_every_proof_of_every_size_verifies() -> None:
    for n in range(1, MAX_BATCH_SIZE + 1):
        ids = [keccak256(n.to_bytes(2, "big") + i.to_bytes(2, "big")) for i in range(n)]
        root = merkle_root(ids)
        for i in range(n):
            proof = merkle_proof(ids, i)
            assert len(proof) <= 6
            assert root_from_proof(ids[i], i, n, proof) == root


@pytest.mark.parametrize("case", DATA["invalid_proofs"], ids=lambda c: c["reason"])
def test_invalid_proofs_are_refused(case: dict) -> None:
    assert not verify_proof(_b(case["root"]), _b(case["message_id"]), case["index"], case["leaf_count"],
                            [_b(p) for p in case["proof"]])


def test_digest_vectors() -> None:
    for case in DATA["digests"]:
        expected = keccak256(b"TESSERA/v1/ROOT" + b"".join(
            case[k].to_bytes(4, "big") for k in ("epoch", "src_domain", "dst_domain", "leaf_count")) + _b(case["root"]))
        assert _b(case["digest"]) == expected == root_digest(
            case["epoch"], case["src_domain"], case["dst_domain"], case["leaf_count"], _b(case["root"]))


def test_lane_batch_vector() -> None:
    lane = DATA["lane_batch"]
    batch = Batch.of([Envelope.decode(_b(e)) for e in lane["envelopes"]])
    assert (batch.src_domain, batch.dst_domain) == (lane["src_domain"], lane["dst_domain"])
    assert batch.message_ids == [_b(i) for i in lane["message_ids"]]
    assert batch.root == _b(lane["root"])
    assert batch.digest(lane["epoch"]) == _b(lane["digest"])
    assert [batch.proof(i) for i in range(3)] == [[_b(p) for p in proof] for proof in lane["proofs"]]


def test_batch_refusals() -> None:
    a = Envelope(MessageKind.DATA, 0, 1, bytes(32), 2, bytes(32), b"a")
    with pytest.raises(BatchError, match="lane mismatch"):
        Batch.of([a, Envelope(MessageKind.DATA, 1, 1, bytes(32), 3, bytes(32), b"b")])
    with pytest.raises(BatchError, match="twice"):
        Batch.of([a, a])
    with pytest.raises(BatchError, match="1..64"):
        Batch.of([])
    with pytest.raises(BatchError, match="1..64"):
        merkle_root([bytes(32)] * 65)
    with pytest.raises(BatchError, match="ROTATION"):
        Batch.of([Envelope(MessageKind.COMMITTEE_ROTATION, 0, 0, bytes(32), 2, bytes(32), bytes(140))])
    with pytest.raises(BatchError, match="outside"):
        proof_length(3, 3)
    with pytest.raises(BatchError, match="uint32"):
        root_digest(2**32, 0, 0, 1, bytes(32))


def test_a_batch_hashes_its_tree_once_for_its_root_and_every_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    import relay.batch as batch_module
    from relay.batch import Batch, merkle_proof, merkle_root

    envelopes = [Envelope(MessageKind.DATA, n, 7, b"\x01" * 32, 9, b"\x02" * 32, b"x") for n in range(64)]
    batch = Batch.of(envelopes)
    ids = [e.message_id for e in envelopes]
    expected_root, expected_proofs = merkle_root(ids), [merkle_proof(ids, i) for i in range(64)]
    calls: list[int] = []

    def counted(data: bytes) -> bytes:
        calls.append(1)
        return keccak256(data)

    monkeypatch.setattr(batch_module, "keccak256", counted)
    assert batch.message_ids == ids  # (computed when the batch was made)
    assert batch.root == expected_root
    assert [batch.proof(i) for i in range(64)] == expected_proofs
    assert batch.root == expected_root
    assert len(calls) == 64 + 63  # each leaf and each inner node hashed once
    with pytest.raises(BatchError):
        batch.proof(64)
    assert Batch.of(envelopes) == batch  # (the cached tree is not part of the value)
