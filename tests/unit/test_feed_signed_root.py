"""Served reports signed through a feed root (version 2: report + proof + the root's signature,
docs/FEEDS.md "One signature per round"): they verify alone, in the SDK and the feed server; any
change to the report, the proof or the root is caught; v1 reports keep verifying."""

from __future__ import annotations

import json
import time

import pytest

from relay.feeds.client import FeedsClient
from relay.feeds.multi import FeedRoot, SignedFeedRoot
from relay.feeds.report import FeedReport
from relay.feeds.signed import RootProof, SignedReport, SignedReportError
from tests.support.feeds import RunningServer, make_server

pytestmark = pytest.mark.timeout(60)


def signed_root(dealt, feeds=("BTC/USD", "ETH/USD", "SOL/USD"), round_: int = 4) -> SignedFeedRoot:
    now = time.time_ns() // 1_000_000
    reports = [FeedReport(f, round_, 1000_0000 * (i + 1), 5_0000, 8, 3, now - 20, now) for i, f in enumerate(feeds)]
    root = FeedRoot.of(reports)
    return SignedFeedRoot(root, dealt.committee.epoch, dealt.sign_digest(root.digest(dealt.committee.epoch)))


def test_each_served_report_verifies_alone_and_round_trips(dealt) -> None:
    root = signed_root(dealt)
    for served in root.reports():
        assert served.version == 2 and served.root_hash == root.root.root
        assert served.verify(dealt.committee)
        body = json.loads(json.dumps(served.to_json()))
        assert body["version"] == 2 and body["root"]["leaf_count"] == 3
        assert SignedReport.from_json(body) == served
    v1 = dealt.sign(round_=1)
    assert v1.version == 1 and "root" not in v1.to_json() and "version" not in v1.to_json()
    assert SignedReport.from_json(v1.to_json()).verify(dealt.committee)


def test_altered_reports_proofs_and_roots_do_not_verify(dealt) -> None:
    served = signed_root(dealt).report("ETH/USD")
    # Another price under the same proof and signature.
    forged = SignedReport(FeedReport("ETH/USD", 4, 1, 5_0000, 8, 3, served.report.observed_at,
                                     served.report.published_at), served.epoch, served.signature, served.root)
    assert not forged.verify(dealt.committee)
    # A proof moved to another leaf, or with a hash changed.
    assert not SignedReport(served.report, served.epoch, served.signature,
                            RootProof(0, 3, served.root.proof)).verify(dealt.committee)
    bad_hash = RootProof(served.root.index, 3, (b"\x00" * 32,) + served.root.proof[1:])
    assert not SignedReport(served.report, served.epoch, served.signature, bad_hash).verify(dealt.committee)
    # The root signature presented as a v1 report's (no proof): it is not over the report's digest.
    assert not SignedReport(served.report, served.epoch, served.signature).verify(dealt.committee)
    body = served.to_json()
    with pytest.raises(SignedReportError, match="root.root is not where"):
        SignedReport.from_json({**body, "root": {**body["root"], "root": "0x" + "11" * 32}})
    with pytest.raises(SignedReportError, match="version 2 report carries a root"):
        SignedReport.from_json({k: v for k, v in body.items() if k != "root"})
    with pytest.raises(SignedReportError, match="upgrade tessera"):
        SignedReport.from_json({**body, "version": 3})
    with pytest.raises(SignedReportError, match="hashes"):
        SignedReport.from_json({**body, "root": {**body["root"], "proof": []}})


async def test_the_feed_server_serves_v2_reports_the_sdk_verifies(dealt) -> None:
    running = await RunningServer(make_server(dealt, stale_after_s=60)).start()
    try:
        root = signed_root(dealt, feeds=("BTC/USD", "ETH/USD"))
        for served in root.reports():
            assert running.server.hub.ingest(served).accepted
        forged = root.report("ETH/USD")
        forged = SignedReport(FeedReport("ETH/USD", 5, 1, 1, 8, 3, forged.report.observed_at,
                                         forged.report.published_at), forged.epoch, forged.signature, forged.root)
        assert not running.server.hub.ingest(forged).accepted
        async with FeedsClient(running.url, dealt.committee) as client:
            got = await client.latest("ETH/USD")
            assert got == root.report("ETH/USD") and got.version == 2 and got.verify(dealt.committee)
            assert (await client.latest("BTC/USD")).root_hash == root.root.root
    finally:
        await running.stop()


def test_the_docs_v2_vector_verifies() -> None:
    """docs/FEEDS.md's served-report vector is SignedFeedRoot.report(2) of feeds_multi_v1.json's
    "four feeds", and verifies under the vectors' committee."""
    import re
    from pathlib import Path

    import attest

    root_dir = Path(__file__).resolve().parents[2]
    block = re.search(r'```json\n(\{\n  "feed_id": "FEED/02".*?\n\})\n```', (root_dir / "docs/FEEDS.md").read_text(),
                      re.S)
    assert block, "docs/FEEDS.md lost its v2 served report vector"
    doc = json.loads(block.group(1))
    vectors = json.loads((root_dir / "tests/vectors/feeds_multi_v1.json").read_text())
    case = vectors["signed_roots"][1]
    reports = [FeedReport.decode(bytes.fromhex(r[2:])) for r in case["reports"]]
    signed = SignedFeedRoot(FeedRoot.of(reports), case["epoch"], bytes.fromhex(case["signature"][2:]))
    assert doc == signed.report(2).to_json()
    committee = attest.Committee.from_dict(
        json.loads((root_dir / "tests/vectors/feeds_v1.json").read_text())["signed_round"]["committee"])
    assert SignedReport.from_json(doc).verify(committee)
