"""The feed-freeze attack on a real anvil: reports the dealt committee really signed, whose times break
the bounds (observed_at = 2^64 − 1; observed_at too far after published_at; ahead of the block
clock), are refused by FeedStore, and the feed keeps taking honest reports (docs/FEEDS.md "Time
bounds"; the off-chain half is tests/unit/test_feed_time_bounds.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

import attest
from adapters.evm import deploy as evm_deploy
from adapters.evm.devnet import AnvilProcess, running_anvil
from adapters.evm.feeds import EvmFeedTarget, FeedPushError, deploy_feeds
from relay.feeds.aggregate import MAX_AHEAD_OF_CHAIN_MS, MAX_OBSERVED_AFTER_PUBLISHED_MS
from relay.feeds.config import FeedConfig
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport
from relay.protocol import U64_MAX
from tests.support.committee import Dealt

pytestmark = pytest.mark.e2e

DOMAIN = 31337
EPOCH = 1


@dataclass
class Setup:
    node: AnvilProcess
    w3: AsyncWeb3
    dealt: Dealt
    target: EvmFeedTarget

    async def block_ms(self) -> int:
        return int((await self.w3.eth.get_block("latest"))["timestamp"]) * 1000


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    await asyncio.to_thread(evm_deploy.ensure_built)
    committee, shares = attest.deal(4, 3, epoch=EPOCH, rng=random.Random(1313))
    async with running_anvil() as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        key = node.private_keys[0]
        verifier = await evm_deploy.deploy(w3, key, "CommitteeVerifier", DOMAIN, EPOCH, committee.n, committee.t,
                                           committee.group_key)
        feed = FeedConfig(id="ETH/USD", decimals=8, sources=[{"kind": "file", "path": "unused.csv"}])
        contracts = await deploy_feeds(w3, key, verifier, {"ETH/USD": feed})
        try:
            yield Setup(node, w3, Dealt(committee, shares), EvmFeedTarget(w3, node.private_keys[1], contracts["FeedStore"]))
        finally:
            await w3.provider.disconnect()


def signed(setup: Setup, round_: int, observed_at: int, published_at: int) -> SignedReport:
    report = FeedReport("ETH/USD", round_, 345_600_000_000, 0, 8, 3, observed_at, published_at)
    return SignedReport(report, EPOCH, setup.dealt.sign_digest(report.digest(EPOCH)))


async def test_signed_reports_that_would_freeze_the_feed_are_refused(setup: Setup) -> None:
    now = await setup.block_ms()
    frozen = signed(setup, 5, U64_MAX, now)
    assert frozen.verify(setup.dealt.committee)  # a valid committee signature
    with pytest.raises(FeedPushError) as refused:
        await setup.target.push(frozen)
    assert refused.value.reason.startswith("ObservedAfterPublished") and not refused.value.retryable

    with pytest.raises(FeedPushError, match="ObservedAfterPublished"):
        await setup.target.push(signed(setup, 5, now + MAX_OBSERVED_AFTER_PUBLISHED_MS + 1, now))
    ahead = now + MAX_AHEAD_OF_CHAIN_MS + 60_000  # past the tolerance whatever the next block's time
    with pytest.raises(FeedPushError, match="ReportFromTheFuture"):
        await setup.target.push(signed(setup, 5, ahead, ahead))
    assert await setup.target.latest("ETH/USD") is None

    good = signed(setup, 5, now - 300, now)
    assert isinstance(await setup.target.push(good), str)
    assert await setup.target.latest("ETH/USD") == good.report
    assert isinstance(await setup.target.push(signed(setup, 6, now + 700, now + 1000)), str)  # a second later
