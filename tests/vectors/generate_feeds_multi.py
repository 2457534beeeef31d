"""Generate the multi-feed root vectors (docs/PROTOCOL.md "Feed roots"): trees over feed reports
(leaves, root, proofs), root digests, committee-signed roots of 1, 4 and 16 reports (the committee
of feeds_v1.json's signed round: 3-of-4, epoch 1), and proofs no verifier may accept. Deterministic:
re-running produces a byte-identical file.

    .venv/bin/python tests/vectors/generate_feeds_multi.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import attest  # noqa: E402
from relay.feeds.multi import (  # noqa: E402
    FEED_LEAF_PREFIX,
    FeedRoot,
    feed_leaf,
    feed_proof,
    feed_root,
    feed_root_digest,
)
from relay.feeds.report import FeedReport  # noqa: E402

HERE = Path(__file__).resolve().parent
FILE = "feeds_multi_v1.json"
NOW = 1_795_431_723_000  # ms, as feeds_v1.json
TREE_SIZES = (1, 2, 3, 4, 5, 7, 16, 17, 64)


def hx(data: bytes) -> str:
    return "0x" + data.hex()


def feed_id(i: int) -> str:
    return f"FEED/{i:02d}"


def reports(n: int, round_: int = 11, published_at: int = NOW) -> list[FeedReport]:
    return [
        FeedReport(feed_id(i), round_, 100_000_000_000 + 1_234_567 * i + round_, 50_000 + i, 8, 4,
                   published_at - 300 - i, published_at)
        for i in range(n)
    ]


def tree_json(n: int) -> dict[str, Any]:
    rs = reports(n)
    encoded = [r.encode() for r in rs]
    every = range(n) if n <= 17 else (0, 1, n // 2, n - 2, n - 1)
    return {
        "leaf_count": n,
        "reports": [hx(e) for e in encoded],
        "leaves": [hx(feed_leaf(e)) for e in encoded],
        "root": hx(feed_root(encoded)),
        "proofs": [{"index": i, "proof": [hx(h) for h in feed_proof(encoded, i)]} for i in every],
    }


def digests() -> list[dict[str, Any]]:
    root = feed_root([r.encode() for r in reports(4)])
    cases = [(0, 1, root), (1, 4, root), (4_294_967_295, 64, b"\xff" * 32), (7, 17, bytes(32))]
    return [
        {"epoch": e, "leaf_count": n, "root": hx(r), "digest": hx(feed_root_digest(e, n, r))} for e, n, r in cases
    ]


def signed_roots() -> list[dict[str, Any]]:
    committee, shares = attest.deal(4, 3, epoch=1, rng=random.Random(20261123))
    out = []
    specs = [
        ("one feed", 1, 11, NOW),
        ("four feeds", 4, 11, NOW),
        ("four feeds, next round", 4, 12, NOW + 1_000),
        ("sixteen feeds", 16, 11, NOW),
        ("two feeds published a day ahead", 2, 13, NOW + 86_400_000),
    ]
    for name, n, round_, published in specs:
        root = FeedRoot.of(reports(n, round_, published))
        digest = root.digest(committee.epoch)
        partials = [attest.partial_sign(shares[i], digest) for i in (0, 1, 3)]
        combined = attest.combine(committee, digest, partials)
        assert combined.ok
        out.append({
            "name": name,
            "round": round_,
            "published_at": published,
            "epoch": committee.epoch,
            "leaf_count": n,
            "reports": [hx(r.encode()) for r in root.reports],
            "feed_ids": [r.feed_id for r in root.reports],
            "root": hx(root.root),
            "digest": hx(digest),
            "proofs": [[hx(h) for h in root.proof(i)] for i in range(n)],
            "signature": hx(combined.signature),
        })
    return out


def invalid_proofs() -> list[dict[str, Any]]:
    rs = [r.encode() for r in reports(5)]
    root = feed_root(rs)
    p2 = feed_proof(rs, 2)
    p4 = feed_proof(rs, 4)
    other = reports(5, round_=99)[2].encode()
    cases = [
        ("another report at the index", other, 2, p2),
        ("the proof of another index", rs[2], 3, p2),
        ("siblings out of order", rs[2], 2, list(reversed(p2))),
        ("a hash short", rs[2], 2, p2[:-1]),
        ("a hash too many", rs[2], 2, p2 + [p2[0]]),
        ("a promoted leaf given a sibling", rs[4], 4, [rs[0][:32]] + p4),
        ("index past the count", rs[2], 5, p2),
    ]
    return [
        {"name": name, "leaf_count": 5, "root": hx(root), "index": i, "report": hx(r), "proof": [hx(h) for h in p]}
        for name, r, i, p in cases
    ]


def build() -> dict[str, Any]:
    return {
        "description": "Tessera multi-feed roots v1 (docs/PROTOCOL.md \"Feed roots\"): leaf = keccak256(0x02 | report), "
                       "node = keccak256(0x01 | left | right), odd last node promoted; digest = keccak256(\"TESSERA/v1/FEED\" "
                       "| \"ROOT\" | epoch u32 | leaf_count u32 | root).",
        "leaf_prefix": hx(FEED_LEAF_PREFIX),
        "max_leaves": 64,
        "trees": [tree_json(n) for n in TREE_SIZES],
        "digests": digests(),
        "signed_roots": signed_roots(),
        "invalid_proofs": invalid_proofs(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help=f"directory to write {FILE} to")
    args = parser.parse_args()
    (args.out / FILE).write_text(json.dumps(build(), indent=2) + "\n")


if __name__ == "__main__":
    main()
