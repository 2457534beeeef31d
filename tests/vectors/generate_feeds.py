"""Generate the feed vectors: report and observation encodings and digests, signed observations of a
3-of-4 committee, aggregation cases, the push rule, and malformed reports every decoder must reject.
Deterministic: the committee comes from a fixed seed and BLS signatures are deterministic, so
re-running produces a byte-identical file.

    .venv/bin/python tests/vectors/generate_feeds.py [--out DIR]

Schema and layouts: docs/FEEDS.md ("Test vectors").
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
from relay.feeds import (  # noqa: E402
    FeedConfig,
    FeedReport,
    Observation,
    PushPolicy,
    aggregate,
    build_report,
    sign_observation,
)

HERE = Path(__file__).resolve().parent
FILE = "feeds_v1.json"
EPOCHS = (0, 1, 4_294_967_295)
NOW = 1_795_431_723_000


def hx(data: bytes) -> str:
    return "0x" + data.hex()


def report_json(name: str, report: FeedReport) -> dict[str, Any]:
    return {
        "name": name,
        "feed_id": report.feed_id,
        "round": report.round,
        "price": str(report.price),  # int256 / uint256 as decimal strings: JSON numbers lose digits
        "confidence": str(report.confidence),
        "decimals": report.decimals,
        "observations": report.observations,
        "observed_at": report.observed_at,
        "published_at": report.published_at,
        "encoded": hx(report.encode()),
        "report_hash": hx(report.report_hash),
        "digests": {str(e): hx(report.digest(e)) for e in EPOCHS},
    }


def observation_json(obs: Observation) -> dict[str, Any]:
    return {
        "feed_id": obs.feed_id,
        "round": obs.round,
        "member": obs.member,
        "decimals": obs.decimals,
        "price": str(obs.price),
        "timestamp": obs.timestamp,
        "encoded": hx(obs.encode()),
    }


def report_cases() -> list[tuple[str, FeedReport]]:
    return [
        ("ETH/USD at 8 decimals", FeedReport("ETH/USD", 42, 345_678_900_000, 1_250_000, 8, 4, NOW - 150, NOW)),
        ("zero round, zero decimals, one observation", FeedReport("X", 0, 1, 0, 0, 1, 0, 0)),
        ("negative price (a spread feed)", FeedReport("BTC-PERP/FUNDING", 7, -12_345, 17, 6, 3, NOW, NOW + 5)),
        (
            "extremes: 32-character id, int256 min, uint256 max, u64 max",
            FeedReport("A" * 32, 2**64 - 1, -(2**255), 2**256 - 1, 18, 255, 2**64 - 1, 2**64 - 1),
        ),
        ("int256 max", FeedReport("MAX", 1, 2**255 - 1, 0, 18, 1, 1, 2)),
    ]


def invalid_reports(valid: bytes) -> list[dict[str, str]]:
    cases = [
        ("121 bytes (truncated)", valid[:-1], "length"),
        ("123 bytes (trailing byte)", valid + b"\x00", "length"),
        ("feed id all zeros", b"\x00" * 32 + valid[32:], "feed_id"),
        ("NUL inside the feed id", b"ETH\x00USD" + b"\x00" * 25 + valid[32:], "feed_id"),
        ("non-zero padding after the id", b"ETH/USD\x01" + b"\x00" * 24 + valid[32:], "feed_id"),
        ("non-ASCII feed id", b"\xc3\x89TH" + b"\x00" * 28 + valid[32:], "feed_id"),
        ("decimals 19", valid[:104] + bytes([19]) + valid[105:], "decimals"),
        ("zero observations", valid[:105] + b"\x00" + valid[106:], "observations"),
    ]
    for name, data, _ in cases:
        try:
            FeedReport.decode(data)
        except ValueError:
            continue
        raise AssertionError(f"invalid vector {name!r} decodes")
    return [{"name": name, "encoded": hx(data), "field": field} for name, data, field in cases]


def aggregation_cases() -> list[dict[str, Any]]:
    specs = [
        ("four honest views", [345_600_000_000, 345_650_000_000, 345_700_000_000, 345_900_000_000]),
        ("three views, one outlier high", [100_000, 100_050, 10**30]),
        ("four views, one outlier at zero", [0, 100_000, 100_050, 100_020]),
        ("five views, two equal", [7, 7, 9, 1, 50]),
        ("negative prices", [-10, -30, -20, -25]),
    ]
    cases = []
    for name, prices in specs:
        observations = [Observation("ETH/USD", 3, i + 1, 8, p, NOW - 1000 + 137 * i) for i, p in enumerate(prices)]
        report = aggregate(observations, NOW)
        cases.append(
            {
                "name": name,
                "observations": [observation_json(o) for o in observations],
                "published_at": NOW,
                "report": report_json(name, report),
            }
        )
    return cases


def signed_round() -> dict[str, Any]:
    committee, shares = attest.deal(4, 3, epoch=1, rng=random.Random(20261123))
    feed = FeedConfig.model_validate(
        {"id": "ETH/USD", "decimals": 8, "sources": [{"kind": "http_json", "url": "https://x.example/", "price_path": "p"}]}
    )
    prices = {1: 345_600_000_000, 2: 345_650_000_000, 3: 345_700_000_000, 4: 345_900_000_000}
    signed = [
        sign_observation(shares[m - 1], Observation(feed.id, 11, m, 8, p, NOW - 500 + 100 * m), committee.epoch)
        for m, p in prices.items()
    ]
    built = build_report(feed, committee, 11, signed, NOW)
    digest = built.report.digest(committee.epoch)
    partials = [attest.partial_sign(shares[i], digest) for i in (0, 1, 3)]
    combined = attest.combine(committee, digest, partials)
    assert combined.ok
    return {
        "committee": committee.to_dict(),
        "observations": [
            {
                **observation_json(s.observation),
                "digest": hx(s.observation.digest(committee.epoch)),
                "signature": hx(s.signature),
            }
            for s in built.observations
        ],
        "report": report_json("signed round", built.report),
        "partials": [{"index": p.index, "signature": hx(p.signature)} for p in partials],
        "signature": hx(combined.signature),
    }


def push_cases() -> list[dict[str, Any]]:
    policy = PushPolicy(deviation_bps=50, heartbeat_s=3600)

    def rep(price: int, round_: int) -> FeedReport:
        return FeedReport("ETH/USD", round_, price, 0, 8, 3, NOW - 100, NOW)

    specs = [
        ("first report", None, rep(100_000, 1), NOW),
        ("moved exactly 50 bps up", rep(100_000, 1), rep(100_500, 2), NOW + 1),
        ("moved 49.9 bps", rep(100_000, 1), rep(100_499, 2), NOW + 1),
        ("heartbeat reached", rep(100_000, 1), rep(100_001, 2), NOW + 3_600_000),
        ("heartbeat not reached", rep(100_000, 1), rep(100_001, 2), NOW + 3_599_999),
        ("not a newer round", rep(100_000, 5), rep(200_000, 5), NOW + 1),
    ]
    return [
        {
            "name": name,
            "deviation_bps": policy.deviation_bps,
            "heartbeat_s": policy.heartbeat_s,
            "last_pushed": None if last is None else hx(last.encode()),
            "new": hx(new.encode()),
            "now_ms": now,
            "push": policy.should_push(last, new, now).push,
        }
        for name, last, new, now in specs
    ]


def build() -> dict[str, Any]:
    reports = report_cases()
    return {
        "description": "Tessera feed vectors v1 (docs/FEEDS.md). Integers wider than 53 bits are decimal strings.",
        "report_len": 122,
        "observation_len": 83,
        "reports": [report_json(name, r) for name, r in reports],
        "invalid_reports": invalid_reports(reports[0][1].encode()),
        "aggregation": aggregation_cases(),
        "signed_round": signed_round(),
        "push": push_cases(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help=f"directory to write {FILE} to")
    args = parser.parse_args()
    (args.out / FILE).write_text(json.dumps(build(), indent=2) + "\n")


if __name__ == "__main__":
    main()
