"""Multi-feed roots (relay/feeds/multi.py) against tests/vectors/feeds_multi_v1.json, with an
independent reading of the tree (recursive, from the docs' rules) and the signed roots' signatures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import attest
from relay.batch import leaf_hash, merkle_root
from relay.envelope import keccak256
from relay.feeds.multi import (
    MAX_FEEDS_PER_ROOT,
    FeedRoot,
    FeedRootError,
    SignedFeedRoot,
    feed_leaf,
    feed_proof,
    feed_root,
    feed_root_digest,
    root_from_feed_proof,
    verify_feed_proof,
)
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport, SignedReportError

HERE = Path(__file__).resolve().parents[1] / "vectors"
VECTORS = json.loads((HERE / "feeds_multi_v1.json").read_text())


def b(h: str) -> bytes:
    return bytes.fromhex(h.removeprefix("0x"))


def independent_root(leaves: list[bytes]) -> bytes:
    """The tree read from docs/PROTOCOL.md: pair left to right, promote an odd last node."""
    while len(leaves) > 1:
        nxt = [keccak256(b"\x01" + leaves[i] + leaves[i + 1]) for i in range(0, len(leaves) - 1, 2)]
        if len(leaves) % 2:
            nxt.append(leaves[-1])
        leaves = nxt
    return leaves[0]


def test_vectors_file_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("generate_feeds_multi", HERE / "generate_feeds_multi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == VECTORS


@pytest.mark.parametrize("tree", VECTORS["trees"], ids=lambda t: f"n{t['leaf_count']}")
def test_trees(tree):
    reports = [b(r) for r in tree["reports"]]
    leaves = [keccak256(b"\x02" + r) for r in reports]
    assert [b(x) for x in tree["leaves"]] == leaves == [feed_leaf(r) for r in reports]
    assert b(tree["root"]) == independent_root(leaves) == feed_root(reports)
    assert feed_root([FeedReport.decode(r) for r in reports]) == b(tree["root"])
    for p in tree["proofs"]:
        proof = [b(h) for h in p["proof"]]
        assert proof == feed_proof(reports, p["index"])
        assert verify_feed_proof(b(tree["root"]), reports[p["index"]], p["index"], tree["leaf_count"], proof)


def test_leaf_is_not_a_message_leaf():
    report = b(VECTORS["trees"][0]["reports"][0])
    assert feed_leaf(report) != leaf_hash(keccak256(report))
    # A one-report root is its leaf, never the root of a one-message batch over the same bytes.
    assert feed_root([report]) != merkle_root([keccak256(report)])


@pytest.mark.parametrize("case", VECTORS["digests"], ids=lambda c: f"e{c['epoch']}n{c['leaf_count']}")
def test_digests(case):
    root = b(case["root"])
    preimage = b"TESSERA/v1/FEEDROOT" + case["epoch"].to_bytes(4, "big") + case["leaf_count"].to_bytes(4, "big") + root
    assert len(preimage) == 59
    assert feed_root_digest(case["epoch"], case["leaf_count"], root) == keccak256(preimage) == b(case["digest"])


@pytest.mark.parametrize("case", VECTORS["invalid_proofs"], ids=lambda c: c["name"])
def test_invalid_proofs_refused(case):
    assert not verify_feed_proof(b(case["root"]), b(case["report"]), case["index"], case["leaf_count"],
                                 [b(h) for h in case["proof"]])


@pytest.mark.parametrize("case", VECTORS["signed_roots"], ids=lambda c: c["name"])
def test_signed_roots_verify(case):
    committee = attest.Committee.from_dict(
        json.loads((Path(__file__).resolve().parents[1] / "vectors" / "feeds_v1.json").read_text())
        ["signed_round"]["committee"])
    reports = [FeedReport.decode(b(r)) for r in case["reports"]]
    signed = SignedFeedRoot(FeedRoot.of(reports), case["epoch"], b(case["signature"]))
    assert signed.root.root == b(case["root"]) and signed.digest == b(case["digest"])
    assert signed.verify(committee)
    for i, r in enumerate(reports):
        assert root_from_feed_proof(r, i, len(reports), [b(h) for h in case["proofs"][i]]) == b(case["root"])
        # The root's signature is not a signature of any one report.
        assert not SignedReport(r, case["epoch"], b(case["signature"])).verify(committee)
    assert SignedFeedRoot.from_json(signed.to_json()) == signed
    tampered = SignedFeedRoot(FeedRoot.of([*reports[:-1], FeedReport.decode(b(case["reports"][-1])[:39] + b"\x63"
                                                                             + b(case["reports"][-1])[40:])]),
                              case["epoch"], b(case["signature"]))
    assert not tampered.verify(committee)
    assert not SignedFeedRoot(signed.root, case["epoch"] + 1, signed.signature).verify(committee)


def test_feed_root_refusals():
    r = FeedReport("ETH/USD", 1, 1, 0, 8, 1, 0, 0)
    with pytest.raises(FeedRootError, match="1..64"):
        FeedRoot.of([])
    with pytest.raises(FeedRootError, match="one report per feed"):
        FeedRoot.of([r, FeedReport("ETH/USD", 2, 1, 0, 8, 1, 0, 0)])
    many = [FeedReport(f"F{i}", 1, 1, 0, 8, 1, 0, 0) for i in range(MAX_FEEDS_PER_ROOT + 1)]
    with pytest.raises(FeedRootError):
        FeedRoot.of(many)
    FeedRoot.of(many[:-1])
    with pytest.raises(FeedRootError, match="122-byte"):
        feed_leaf(b"\x00" * 121)
    with pytest.raises(FeedRootError, match="index"):
        root_from_feed_proof(r, 1, 1, [])
    with pytest.raises(FeedRootError, match="hashes"):
        root_from_feed_proof(r, 0, 2, [])
    with pytest.raises(FeedRootError, match="uint32"):
        feed_root_digest(2**32, 1, bytes(32))
    assert FeedRoot.of([r]).index_of("ETH/USD") == 0
    with pytest.raises(FeedRootError):
        FeedRoot.of([r]).index_of("BTC/USD")


def test_signed_root_json_checks():
    case = VECTORS["signed_roots"][1]
    data = {"epoch": 1, "reports": case["reports"], "signature": case["signature"], "root": case["root"],
            "leaf_count": 4}
    assert SignedFeedRoot.from_json(data).root.root == b(case["root"])
    with pytest.raises(SignedReportError, match="root does not match"):
        SignedFeedRoot.from_json({**data, "root": "0x" + "00" * 32})
    with pytest.raises(SignedReportError, match="leaf_count"):
        SignedFeedRoot.from_json({**data, "leaf_count": 5})
    with pytest.raises(SignedReportError, match="epoch"):
        SignedFeedRoot.from_json({**data, "epoch": -1})
    with pytest.raises(SignedReportError, match="reports"):
        SignedFeedRoot.from_json({**data, "reports": ["0x00"]})
