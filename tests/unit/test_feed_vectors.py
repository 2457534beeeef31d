"""tests/vectors/feeds_v1.json: up to date, and consistent with an independent reading of the layout."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

import attest
from attest.committee import Committee
from relay.envelope import keccak256
from relay.feeds import FeedReport, Observation, ReportError, SignedObservation, check_proposal, FeedConfig

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DATA = json.loads((VECTORS / "feeds_v1.json").read_text())


def _hex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def test_file_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("generate_feeds", VECTORS / "generate_feeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.dumps(module.build(), indent=2) + "\n" == (VECTORS / "feeds_v1.json").read_text()


def _read_report(data: bytes) -> dict:
    # A reading of the docs/FEEDS.md table that shares no code with relay.feeds.
    assert len(data) == 122
    return {
        "feed_id": data[:32].rstrip(b"\x00").decode(),
        "round": int.from_bytes(data[32:40], "big"),
        "price": str(int.from_bytes(data[40:72], "big", signed=True)),
        "confidence": str(int.from_bytes(data[72:104], "big")),
        "decimals": data[104],
        "observations": data[105],
        "observed_at": int.from_bytes(data[106:114], "big"),
        "published_at": int.from_bytes(data[114:122], "big"),
    }


@pytest.mark.parametrize("case", DATA["reports"], ids=lambda c: c["name"])
def test_report_vectors(case: dict) -> None:
    data = _hex(case["encoded"])
    fields = _read_report(data)
    assert fields == {k: case[k] for k in fields}
    assert FeedReport.decode(data).encode() == data
    assert _hex(case["report_hash"]) == keccak256(data)
    for epoch, digest in case["digests"].items():
        assert _hex(digest) == keccak256(b"TESSERA/v1/FEED" + int(epoch).to_bytes(4, "big") + keccak256(data))


@pytest.mark.parametrize("case", DATA["invalid_reports"], ids=lambda c: c["name"])
def test_invalid_report_vectors_are_rejected(case: dict) -> None:
    with pytest.raises(ReportError):
        FeedReport.decode(_hex(case["encoded"]))


@pytest.mark.parametrize("case", DATA["aggregation"], ids=lambda c: c["name"])
def test_aggregation_vectors_follow_the_documented_rule(case: dict) -> None:
    prices = [int(o["price"]) for o in case["observations"]]
    stamps = [o["timestamp"] for o in case["observations"]]
    median = statistics.median_low(prices)
    report = case["report"]
    assert int(report["price"]) == median
    assert int(report["confidence"]) == statistics.median_low([abs(p - median) for p in prices])
    assert report["observed_at"] == statistics.median_low(stamps)
    assert report["observations"] == len(prices) and report["published_at"] == case["published_at"]
    assert _read_report(_hex(report["encoded"]))["price"] == report["price"]


def test_signed_round_verifies() -> None:
    signed_round = DATA["signed_round"]
    committee = Committee.from_dict(signed_round["committee"], backend="zksnake")
    observations = []
    for item in signed_round["observations"]:
        encoded = _hex(item["encoded"])
        digest = keccak256(b"TESSERA/v1/FEEDOBS" + committee.epoch.to_bytes(4, "big") + keccak256(encoded))
        assert _hex(item["digest"]) == digest
        partial = attest.PartialSignature(item["member"], _hex(item["signature"]))
        assert attest.verify_partial(committee, partial, digest, "zksnake")
        observations.append(SignedObservation(Observation.decode(encoded), partial.signature))
    report = FeedReport.decode(_hex(signed_round["report"]["encoded"]))
    digest = _hex(signed_round["report"]["digests"][str(committee.epoch)])
    assert committee.verify(digest, _hex(signed_round["signature"]), "zksnake")
    feed = FeedConfig.model_validate(
        {"id": report.feed_id, "decimals": report.decimals,
         "sources": [{"kind": "http_json", "url": "https://x.example/", "price_path": "p"}]}
    )
    check_proposal(feed, committee, report, observations, own=observations[0].observation,
                   now_ms=report.published_at, backend="zksnake")


@pytest.mark.parametrize("case", DATA["push"], ids=lambda c: c["name"])
def test_push_vectors(case: dict) -> None:
    new = _read_report(_hex(case["new"]))
    if case["last_pushed"] is None:
        assert case["push"]
        return
    last = _read_report(_hex(case["last_pushed"]))
    moved = abs(int(new["price"]) - int(last["price"])) * 10_000 >= case["deviation_bps"] * abs(int(last["price"]))
    stale = case["now_ms"] - last["published_at"] >= case["heartbeat_s"] * 1000
    newer = new["round"] > last["round"]
    assert case["push"] == (newer and (moved or stale))
