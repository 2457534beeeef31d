"""Feeds on a real anvil: FeedStore + TesseraAggregator deployed, reports signed by a dealt 3-of-4
committee pushed through EvmFeedTarget, tampered reports refused, the pull consumer, the evm_pool
source reading a pool the market simulator moves with real swaps, and the Pusher's decisions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from web3 import AsyncWeb3
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD

import attest
from adapters.evm import deploy as evm_deploy
from adapters.evm.devnet import AnvilProcess, free_port
from attest.bn254 import hash_to_g1_hint
from adapters.evm.feeds import EvmFeedTarget, FeedPushError, aggregator_key, deploy_feeds, hinted_update_args
from adapters.registry import register_feed_sources
from adapters.evm.market import MarketSimulator, deploy_market, pool_price
from relay.config import EvmChain, SolanaChain
from relay.errors import ConfigError
from relay.feeds.aggregate import PushPolicy
from relay.feeds.config import EvmPoolSourceConfig, FeedConfig
from relay.interfaces import FeedNotNewer
from relay.feeds.push import Pusher, sse_reports
from relay.feeds.report import FeedReport, encode_feed_id
from relay.feeds.signed import SignedReport
from relay.feeds.sources import SourceError, build_source
from tests.support import evm
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

DOMAIN = 31337
EPOCH = 1
T0_MS = 1_795_431_720_000  # reports' clock: far from anvil's, the store does not compare with block time


@dataclass
class Setup:
    node: AnvilProcess
    w3: AsyncWeb3
    committee: attest.Committee
    shares: list[attest.KeyShare]
    verifier: str
    contracts: dict[str, str]

    @property
    def deployer(self) -> str:
        return self.node.private_keys[0]

    def sign(self, report: FeedReport, epoch: int = EPOCH, signers: tuple[int, ...] = (1, 2, 4)) -> SignedReport:
        digest = report.digest(epoch)
        signature = attest.combine_signatures([attest.partial_sign(self.shares[i - 1], digest) for i in signers])
        return SignedReport(report, epoch, signature)

    def target(self, key_index: int = 2) -> EvmFeedTarget:
        return EvmFeedTarget(self.w3, self.node.private_keys[key_index], self.contracts["FeedStore"])

    def aggregator(self, feed_id: str = "ETH/USD") -> Any:
        return evm_deploy.contract(self.w3, "TesseraAggregator", self.contracts[aggregator_key(feed_id)])

    def chain(self) -> EvmChain:
        return EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=[self.node.rpc_url], contracts=self.contracts)


def feed_config(feed_id: str, decimals: int = 8) -> FeedConfig:
    return FeedConfig(id=feed_id, description=f"{feed_id} test feed", decimals=decimals,
                      sources=[{"kind": "file", "path": "unused.csv"}])


def report(round_: int, price: int, feed_id: str = "ETH/USD", published_s: int = 0) -> FeedReport:
    return FeedReport(feed_id, round_, price, confidence=1_000_000, decimals=8, observations=3,
                      observed_at=T0_MS + round_ * 1000, published_at=T0_MS + round_ * 1000 + published_s * 1000)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with evm.anvil_with_committee(DOMAIN, EPOCH) as anvil:
        contracts = await deploy_feeds(anvil.w3, anvil.deployer, anvil.verifier,
                                       {"ETH/USD": feed_config("ETH/USD"), "BTC/USD": feed_config("BTC/USD")})
        yield Setup(anvil.node, anvil.w3, anvil.committee, anvil.shares, anvil.verifier, contracts)


async def test_push_updates_the_aggregator(setup: Setup) -> None:
    target = setup.target()
    assert await target.latest("ETH/USD") is None
    aggregator = setup.aggregator()
    assert await aggregator.functions.decimals().call() == 8
    assert await aggregator.functions.description().call() == "ETH/USD test feed"
    assert await aggregator.functions.version().call() == 1

    signed = setup.sign(report(7, 345_650_000_000))
    tx = await target.push(signed)
    assert isinstance(tx, str) and tx.startswith("0x")
    round_id, answer, started_at, updated_at, answered = await aggregator.functions.latestRoundData().call()
    assert (round_id, answer, answered) == (7, 345_650_000_000, 7)
    assert started_at == signed.report.observed_at // 1000 and updated_at == signed.report.published_at // 1000
    assert (await aggregator.functions.getRoundData(7).call())[1] == 345_650_000_000
    stored = await target.latest("ETH/USD")
    assert stored == signed.report  # published_at is a whole second here, so nothing is lost
    # The other feed is untouched.
    assert await target.latest("BTC/USD") is None

    # The same round again, or an older one: a typed "not newer", no transaction, no crash.
    count = await setup.w3.eth.get_transaction_count(target.account.address)
    again = await target.push(signed)
    assert isinstance(again, FeedNotNewer) and again.stored_round == 7 and again.round == 7
    older = await target.push(setup.sign(report(6, 1)))
    assert isinstance(older, FeedNotNewer) and older.stored_round == 7
    assert await setup.w3.eth.get_transaction_count(target.account.address) == count

    newer = setup.sign(report(9, -5))  # int256: negative values are prices too
    assert isinstance(await target.push(newer), str)
    assert tuple((await aggregator.functions.latestRoundData().call())[:2]) == (9, -5)
    assert target.last_receipt["gasUsed"] > 0


async def test_tampered_and_misdirected_reports_are_refused(setup: Setup) -> None:
    target = setup.target()
    good = setup.sign(report(3, 100_000_000))
    tampered = SignedReport(replace(good.report, price=good.report.price + 1), good.epoch, good.signature)
    with pytest.raises(FeedPushError) as refused:
        await target.push(tampered)
    assert refused.value.reason == "InvalidSignature()" and not refused.value.retryable

    with pytest.raises(FeedPushError, match="UnknownEpoch"):
        await target.push(setup.sign(report(3, 100_000_000), epoch=2))
    wrong_decimals = setup.sign(replace(report(3, 100_000_000), decimals=6))
    with pytest.raises(FeedPushError, match="WrongDecimals"):
        await target.push(wrong_decimals)
    unknown = setup.sign(report(3, 100_000_000, feed_id="XAU/USD"))
    with pytest.raises(FeedPushError, match="UnknownFeed"):
        await target.push(unknown)
    # Only two signers' partials: a signature the group key does not verify.
    with pytest.raises(FeedPushError, match="InvalidSignature"):
        await target.push(setup.sign(report(3, 100_000_000), signers=(1, 2)))
    assert await target.latest("ETH/USD") is None
    assert isinstance(await target.push(good), str)


async def test_pull_consumer_submits_and_reads_in_one_transaction(setup: Setup) -> None:
    fid = encode_feed_id("ETH/USD")
    consumer_address = await evm_deploy.deploy(setup.w3, setup.deployer, "PullConsumer", setup.contracts["FeedStore"],
                                               fid, 2**40)
    consumer = evm_deploy.contract(setup.w3, "PullConsumer", consumer_address)
    signed = setup.sign(report(5, 123_400_000_000))
    user = setup.node.private_keys[3]
    receipt = await evm_deploy.transact(setup.w3, user, consumer.functions.settle(
        *hinted_update_args(signed)))
    events = consumer.events.PriceUsed().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.roundId, e.args.price, e.args.submitted) for e in events] == [(5, 123_400_000_000, True)]
    assert await consumer.functions.lastPrice().call() == 123_400_000_000
    assert (await setup.aggregator().functions.latestRoundData().call())[1] == 123_400_000_000

    # Someone pushed it first: the consumer's transaction still succeeds, on the stored round.
    receipt = await evm_deploy.transact(setup.w3, user, consumer.functions.settle(
        *hinted_update_args(signed)))
    assert [e.args.submitted for e in consumer.events.PriceUsed().process_receipt(receipt, errors=DISCARD)] == [False]

    tampered = replace(signed.report, round=6)
    with pytest.raises(evm_deploy.TransactionReverted):
        await evm_deploy.transact(setup.w3, user, consumer.functions.settle(
            tampered.encode(), signed.epoch, signed.signature, *hash_to_g1_hint(tampered.digest(EPOCH))))


async def test_evm_pool_source_follows_the_simulated_market(setup: Setup) -> None:
    market = await deploy_market(setup.w3, setup.deployer, price="3456.5", base_liquidity="1000")
    register_feed_sources({"evm": replace_contracts(setup.chain(), market.contracts())})
    cfg = EvmPoolSourceConfig(kind="evm_pool", chain="evm", pool=market.pool, base_decimals=18, quote_decimals=6,
                              max_age_s=3600)
    source = build_source(cfg, "pool")
    try:
        first = await source.fetch()
        assert first.price == Decimal("3456.5")
        inverted = build_source(cfg.model_copy(update={"invert": True, "base_decimals": 6, "quote_decimals": 18}), "inv")
        try:
            assert abs((await inverted.fetch()).price * first.price - 1) < Decimal("1e-20")
        finally:
            await inverted.close()

        # Its own (lean, kept-alive) client, as `relay localnet` starts it.
        simulator = MarketSimulator.connect(setup.node.rpc_url, setup.node.private_keys[2], market.pool,
                                            interval_ms=1, volatility_bps=100, seed=11)
        try:
            await simulator.run(steps=6)
        finally:
            await simulator.close()
        assert len(simulator.steps) >= 5
        moved = await source.fetch()
        on_chain = await pool_price(setup.w3, market.pool, 18, 6)
        assert abs(moved.price / on_chain - 1) < Decimal("1e-20") and moved.price != first.price
        # Each swap landed the pool on the walk's target (up to the fee's rounding).
        last = simulator.steps[-1]
        assert abs(last.price_after / last.target - 1) < Decimal("0.0001")
    finally:
        await source.close()


def replace_contracts(chain: EvmChain, contracts: dict[str, str]) -> EvmChain:
    return chain.model_copy(update={"contracts": {**chain.contracts, **contracts}})


async def test_evm_pool_source_skips_garbage(setup: Setup) -> None:
    register_feed_sources({"evm": setup.chain()})
    base = dict(kind="evm_pool", chain="evm", max_age_s=3600)
    cases = {
        # A contract that is not a pool: FeedStore has no getReserves().
        setup.contracts["FeedStore"]: "reverted",
        # An account without code.
        "0x" + "12" * 20: "no contract",
    }
    empty_market = await deploy_market(setup.w3, setup.deployer)
    for address, expected in cases.items():
        source = build_source(EvmPoolSourceConfig(**base, pool=address), "bad")
        try:
            with pytest.raises(SourceError, match=expected):
                await source.fetch()
        finally:
            await source.close()
    # Stale: anvil (automine) made no block for a while; a 1 ms max_age_s makes it old.
    stale = build_source(EvmPoolSourceConfig(**base | {"max_age_s": 0.001}, pool=empty_market.pool), "stale")
    try:
        await asyncio.sleep(1.1)
        with pytest.raises(SourceError, match="stale"):
            await stale.fetch()
    finally:
        await stale.close()
    # RPC down.
    register_feed_sources({"evm": EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN,
                                           rpc_urls=[f"http://127.0.0.1:{free_port()}"])})
    down = build_source(EvmPoolSourceConfig(**base, pool=empty_market.pool), "down")
    try:
        with pytest.raises(SourceError, match="RPC"):
            await down.fetch()
    finally:
        await down.close()
    # A chain the config does not have.
    with pytest.raises(SourceError, match=r"no chain 'nope' under \[chains\]"):
        build_source(EvmPoolSourceConfig(**base | {"chain": "nope"}, pool=empty_market.pool), "x")
    # A chain of a kind that has no pools: its driver refuses, naming the source.
    register_feed_sources({"sol": SolanaChain(kind="solana", domain=DOMAIN + 1, rpc_urls=["http://127.0.0.1:1"])})
    with pytest.raises(ConfigError, match="source y: chains.sol is a Solana chain"):
        build_source(EvmPoolSourceConfig(**base | {"chain": "sol"}, pool=empty_market.pool), "y")


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000


async def test_pusher_pushes_on_deviation_and_heartbeat_only(setup: Setup) -> None:
    clock = Clock(T0_MS)
    policy = PushPolicy(deviation_bps=50, heartbeat_s=60)
    target = setup.target()
    async with Pusher([target], {"ETH/USD": policy}, committee=setup.committee, clock=clock) as pusher:
        steps = [
            (report(1, 100_000_000), T0_MS + 1_000, True),  # first report of the feed
            (report(2, 100_400_000), T0_MS + 2_000, False),  # +0.4 % < 0.5 %, 1 s after
            (report(3, 100_600_000), T0_MS + 3_000, True),  # +0.6 % from the pushed 1.00
            (report(4, 100_700_000), T0_MS + 4_000, False),
            (report(5, 100_700_000), T0_MS + 3_000 + 60_000, True),  # heartbeat: pushed round 3 is 60 s old
            (report(4, 200_000_000), T0_MS + 70_000, False),  # old round: never pushed
        ]
        for signed_report, now_ms, _ in steps:
            clock.now_ms = now_ms
            pusher.submit(setup.sign(signed_report))
            await pusher.drain(timeout=30)
        decisions = [(o.round, o.pushed) for o in pusher.history]
        assert decisions == [(r.round, push) for r, _, push in steps], pusher.history
        assert "heartbeat" in pusher.history[4].reason and "moved" in pusher.history[2].reason
        # A forged report is dropped before it reaches the chain.
        forged = SignedReport(report(9, 1), EPOCH, setup.sign(report(8, 1)).signature)
        pusher.submit(forged)
        await pusher.drain(timeout=5)
        assert len(pusher.history) == len(steps)
    assert (await target.latest("ETH/USD")).round == 5

    # A restarted pusher starts from what the chain holds, not from "nothing pushed yet".
    clock.now_ms = T0_MS + 5_000 + 30_000  # round 5 was published at T0 + 5 s: 30 s < heartbeat
    async with Pusher([setup.target()], {"ETH/USD": policy}, clock=clock) as restarted:
        assert restarted.last_pushed("evm", "ETH/USD").round == 5
        restarted.submit(setup.sign(report(6, 100_710_000)))
        await restarted.drain(timeout=30)
        assert [(o.round, o.pushed) for o in restarted.history] == [(6, False)]


class FlakyTarget:
    """Wraps a real target; its first pushes fail like an RPC that is down."""

    def __init__(self, inner: EvmFeedTarget, failures: int) -> None:
        self.inner, self.failures, self.name = inner, failures, "flaky"

    async def latest(self, feed_id: str) -> Any:
        return await self.inner.latest(feed_id)

    async def push(self, signed: SignedReport) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("connection refused")
        return await self.inner.push(signed)


async def test_pusher_retries_and_does_not_retry_refusals(setup: Setup) -> None:
    from relay.backoff import Backoff

    flaky = FlakyTarget(setup.target(), failures=2)
    async with Pusher([flaky], {"ETH/USD": PushPolicy(50, 60)}, backoff=Backoff(base=0.05, cap=0.1, max_attempts=5),
                      clock=Clock(T0_MS)) as pusher:
        pusher.submit(setup.sign(report(1, 100_000_000)))
        await pusher.drain(timeout=30)
        assert [(o.pushed, o.attempts) for o in pusher.history] == [(True, 3)]
        # Refused by the contract (bad signature, no committee check in this pusher): logged, not retried.
        bad = SignedReport(report(2, 300_000_000), EPOCH, setup.sign(report(1, 100_000_000)).signature)
        pusher.submit(bad)
        await pusher.drain(timeout=30)
        assert pusher.history[-1].pushed is False and pusher.history[-1].attempts == 1
        assert "InvalidSignature" in pusher.history[-1].reason


async def test_sse_stream_feeds_the_pusher(setup: Setup) -> None:
    signed = [setup.sign(report(r, 100_000_000 + r * 10_000_000)) for r in (1, 2)]

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": keep-alive\n\n")
        await resp.write(b"event: report\ndata: " + json.dumps(signed[0].to_json()).encode() + b"\n\n")
        await resp.write(b"data: not json\n\n")
        await resp.write(b"data: {\"report\": \"0x00\", \"epoch\": 1, \"signature\": \"0x00\"}\n\n")
        await resp.write(b"data: " + json.dumps(signed[1].to_json()).encode() + b"\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/v1/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        received: list[SignedReport] = []
        async for item in sse_reports(f"http://127.0.0.1:{port}"):
            received.append(item)
            if len(received) == 2:
                break
        assert [r.round for r in received] == [1, 2] and received[1] == signed[1]

        async def two() -> AsyncIterator[SignedReport]:
            for item in received:
                yield item

        async with Pusher([setup.target()], {"ETH/USD": PushPolicy(50, 60)}, clock=Clock(T0_MS)) as pusher:
            await pusher.run(two())
            await pusher.drain(timeout=30)
            assert [(o.round, o.pushed) for o in pusher.history] in ([(1, True), (2, True)], [(2, True)])
    finally:
        await runner.cleanup()


async def test_localnet_feed_deployment(setup: Setup, tmp_path: Any) -> None:
    from adapters.evm.devnet import ANVIL_DEV_KEYS, deploy_devnet_feeds, pool_source
    from relay.localnet import localnet_feeds

    account = setup.w3.eth.account.from_key(ANVIL_DEV_KEYS[0])
    contracts = await deploy_devnet_feeds(setup.w3, account, tmp_path, setup.verifier, localnet_feeds())
    assert {"MarketPool", "MarketBase", "MarketQuote", "FeedStore", "Aggregator:ETH/USD", "Aggregator:BTC/USD"} <= set(contracts)
    pusher_key = (tmp_path / "evm-feed-pusher.key").read_text().strip()
    assert pusher_key not in ANVIL_DEV_KEYS and (tmp_path / "evm-market.key").read_text().strip() == ANVIL_DEV_KEYS[2]
    pusher = setup.w3.eth.account.from_key(pusher_key)
    assert await setup.w3.eth.get_balance(pusher.address) == 100 * 10**18

    feeds = localnet_feeds({"ETH/USD": [pool_source("evm", contracts["MarketPool"])]})
    register_feed_sources({"evm": setup.chain()})
    pool_cfg = feeds["ETH/USD"].sources[0]
    source = build_source(pool_cfg.model_copy(update={"max_age_s": 3600}), "localnet-pool")
    try:
        assert (await source.fetch()).price == Decimal("3456.5")
    finally:
        await source.close()
    # The funded pusher pushes a committee report to the localnet's own FeedStore.
    target = EvmFeedTarget(setup.w3, pusher, contracts["FeedStore"])
    assert isinstance(await target.push(setup.sign(report(1, 345_650_000_000))), str)
    btc = evm_deploy.contract(setup.w3, "TesseraAggregator", contracts["Aggregator:BTC/USD"])
    assert await btc.functions.description().call() == "Bitcoin in US dollars (recording)"


async def test_feed_push_and_market_commands(setup: Setup, tmp_path: Any) -> None:
    from pathlib import Path

    from relay.config import CommitteeRef, FeedPushSection, KeyRef, TesseraConfig

    from relay.daemons.feed_push import run_feed_push, run_market

    signed = [setup.sign(report(r, 100_000_000 * r)) for r in (1, 2)]
    finished = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for item in signed:
            await resp.write(b"event: report\ndata: " + json.dumps(item.to_json()).encode() + b"\n\n")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(finished.wait(), 30)  # an open stream with nothing new
        return resp

    app = web.Application()
    app.router.add_get("/v1/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/pusher.key").write_text(setup.node.private_keys[6] + "\n")
    (tmp_path / "keys/evm-market.key").write_text(setup.node.private_keys[7] + "\n")
    market = await deploy_market(setup.w3, setup.deployer)
    config = TesseraConfig(
        chains={"evm": replace_contracts(setup.chain(), market.contracts())},
        feeds={"ETH/USD": feed_config("ETH/USD")},
        feed_push=FeedPushSection(source=f"http://127.0.0.1:{port}", targets=["evm"],
                                  evm_key=KeyRef(file=Path("keys/pusher.key"))),
    )
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(run_feed_push(config, tmp_path, stop=stop))
        target = setup.target()
        for _ in range(200):
            latest = await target.latest("ETH/USD")
            if latest is not None and latest.round == 2:
                break
            assert not task.done(), task
            await asyncio.sleep(0.05)
        assert latest is not None and latest.round == 2  # +100 %: a deviation push
        stop.set()
        await asyncio.wait_for(task, 10)
        pusher_address = setup.w3.eth.account.from_key(setup.node.private_keys[6]).address
        # Round 1 is pushed, or replaced while waiting by round 2 (only the newest report of a feed waits).
        assert await setup.w3.eth.get_transaction_count(pusher_address) in (1, 2)

        # With [committee], the SDK's FeedsClient follows the stream and verifies every report.
        committee_file = tmp_path / "committee.toml"
        setup.committee.save(committee_file)
        signed[:] = [setup.sign(report(r, 100_000_000 * r)) for r in (3, 4)]
        with_committee = config.model_copy(update={"committee": CommitteeRef(file=committee_file)})
        stop = asyncio.Event()
        task = asyncio.create_task(run_feed_push(with_committee, tmp_path, stop=stop))
        for _ in range(200):
            latest = await target.latest("ETH/USD")
            if latest is not None and latest.round == 4:
                break
            assert not task.done(), task
            await asyncio.sleep(0.05)
        assert latest is not None and latest.round == 4
        stop.set()
        await asyncio.wait_for(task, 10)

        with pytest.raises(ConfigError, match="no feed server"):
            await run_feed_push(config.model_copy(update={"feed_push": FeedPushSection()}), tmp_path)
        with pytest.raises(ConfigError, match="no chain 'nope'"):
            await run_feed_push(config, tmp_path, target_names=["nope"], stop=asyncio.Event())
    finally:
        finished.set()
        await runner.cleanup()

    before = await pool_price(setup.w3, market.pool, 18, 6)
    await run_market(config, tmp_path, "evm", None, interval_ms=1, volatility_bps=50, reversion=0.05, steps=3,
                     seed=3, stop=asyncio.Event())
    assert await pool_price(setup.w3, market.pool, 18, 6) != before
    with pytest.raises(ConfigError, match="no MarketPool"):
        await run_market(config.model_copy(update={"chains": {"evm": setup.chain()}}), tmp_path, "evm", None,
                         interval_ms=1, volatility_bps=50, reversion=0.05, steps=1, seed=1, stop=asyncio.Event())


async def test_push_fails_over_to_the_next_rpc_endpoint(setup: Setup) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    target = EvmFeedTarget([dead, setup.node.rpc_url], setup.node.private_keys[2], setup.contracts["FeedStore"],
                           rpc_timeout_s=2.0)
    try:
        tx = await target.push(setup.sign(report(3, 300_000_000_000)))
        assert isinstance(tx, str)
        assert (await target.latest("ETH/USD")).round == 3
        health = {h.url: h for h in target.health()}
        assert health[dead].total_errors >= 1 and health[setup.node.rpc_url].healthy
    finally:
        await target.close()


@contextlib.asynccontextmanager
async def no_automine(w3: AsyncWeb3) -> AsyncIterator[None]:
    await w3.provider.make_request("evm_setAutomine", [False])
    try:
        yield
    finally:
        await w3.provider.make_request("evm_setAutomine", [True])


async def test_a_stuck_update_is_replaced_with_higher_fees(setup: Setup) -> None:
    target = EvmFeedTarget(setup.w3, setup.node.private_keys[2], setup.contracts["FeedStore"],
                           stuck_after_s=0.3, receipt_timeout_s=30)
    tip_before = await setup.w3.eth.max_priority_fee
    async with no_automine(setup.w3):
        pushing = asyncio.create_task(target.push(setup.sign(report(4, 310_000_000_000))))
        await wait_for(lambda: target._in_flight is not None and len(target._in_flight.hashes) >= 2, timeout=10.0)
        first = target._in_flight.hashes[0]
        await setup.w3.provider.make_request("evm_mine", [])
        tx = await asyncio.wait_for(pushing, 10)
    assert tx != first
    mined = await setup.w3.eth.get_transaction_receipt(tx)
    assert mined["status"] == 1
    sent = await setup.w3.eth.get_transaction(tx)
    assert sent["maxPriorityFeePerGas"] > tip_before  # the replacement outbid the original
    # One nonce, one update: the replaced transaction never made it into a block.
    assert await setup.w3.eth.get_transaction_count(target.account.address) == sent["nonce"] + 1
    with pytest.raises(TransactionNotFound):
        await setup.w3.eth.get_transaction_receipt(first)
    assert (await target.latest("ETH/USD")).round == 4


async def test_an_update_still_unmined_at_timeout_is_replaced_by_the_next_push(setup: Setup) -> None:
    target = EvmFeedTarget(setup.w3, setup.node.private_keys[2], setup.contracts["FeedStore"],
                           stuck_after_s=60, receipt_timeout_s=0.5)
    async with no_automine(setup.w3):
        with pytest.raises(FeedPushError, match="not mined within") as timed_out:
            await target.push(setup.sign(report(5, 320_000_000_000)))
        assert timed_out.value.retryable
        [stuck] = target._in_flight.hashes
        stuck_tx = await setup.w3.eth.get_transaction(stuck)
        # The next report takes the stuck update's nonce with higher fees, instead of queueing behind it.
        pushing = asyncio.create_task(target.push(setup.sign(report(6, 321_000_000_000))))
        await wait_for(lambda: target._in_flight is not None and len(target._in_flight.hashes) >= 2, timeout=10.0)
        await setup.w3.provider.make_request("evm_mine", [])
        tx = await asyncio.wait_for(pushing, 10)
    newer = await setup.w3.eth.get_transaction(tx)
    assert newer["nonce"] == stuck_tx["nonce"]
    assert newer["maxPriorityFeePerGas"] > stuck_tx["maxPriorityFeePerGas"]
    assert (await target.latest("ETH/USD")).round == 6
    with pytest.raises(TransactionNotFound):
        await setup.w3.eth.get_transaction_receipt(stuck)
