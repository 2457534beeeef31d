"""Reports flow end to end on real processes: the localnet (anvil + Solana), four attester processes
running feed rounds over the localnet's [feeds] (the localnet pool and the recordings), a feed
server process, and the pusher (`relay feed-push`'s code, in the test process) putting reports on
both chains, where the EVM aggregator and the Solana feed account show them. A tampered copy of a served
report is refused by both chains."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from adapters.evm import deploy as evm_deploy
from attest.committee import Committee
from adapters.evm.feeds import EvmFeedTarget, FeedPushError, aggregator_key
from adapters.solana.feeds import FeedPushError as SolanaFeedPushError
from adapters.solana.feeds import SolanaFeedTarget
from relay.config import dump_config, load_config
from relay.devstack import messaging_stack
from relay.daemons.feed_push import run_feed_push
from relay.feeds.signed import SignedReport

pytestmark = pytest.mark.e2e


async def _served(url: str, feed_id: str, round_: int) -> SignedReport | None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v1/feeds/{feed_id.replace('/', '%2F')}/history",
                               params={"from_round": str(round_), "limit": "1"}) as resp:
            body = await resp.json()
    items = body if isinstance(body, list) else body.get("reports", [])
    for item in items:
        signed = SignedReport.from_json(item)
        if signed.round == round_:
            return signed
    return None


async def test_reports_flow_to_the_evm_aggregator_and_solana(tmp_path: Path) -> None:
    async with messaging_stack(tmp_path, attesters=(), relayer=False, feeds=True) as stack:
        await stack.start_feed_server()
        url = stack.feed_server_url()
        config = load_config(stack.config_path)
        # The localnet config wires it all: leaders publish where the main feed server listens.
        assert config.feed_round.publish_urls == [f"{url}/v1/reports"] and config.feed_push.source == url
        await asyncio.gather(*(stack.start_attester(i) for i in (1, 2, 3, 4)))

        evm = config.chains["evm"]
        stop = asyncio.Event()
        pushing = asyncio.create_task(run_feed_push(config, stack.config_path.parent, source=url, stop=stop))
        evm_target = EvmFeedTarget.from_config("evm", config.chains["evm"], key=None)
        solana_target = SolanaFeedTarget.from_config("solana", config.chains["solana"])
        try:
            deadline = time.monotonic() + 45
            evm_latest = sol_latest = None
            while time.monotonic() < deadline:
                assert not pushing.done(), pushing
                evm_latest = await evm_target.latest("ETH/USD")
                sol_latest = await solana_target.latest("ETH/USD")
                if evm_latest is not None and sol_latest is not None and evm_latest.round > 0:
                    break
                await asyncio.sleep(0.5)
            assert evm_latest is not None and sol_latest is not None, "no report reached both chains in 45 s"

            # What the aggregator says is a report the committee signed and the server served.
            aggregator = evm_deploy.contract(evm_target.w3, "TesseraAggregator", evm.contracts[aggregator_key("ETH/USD")])
            round_id, answer, started_at, _, _ = await aggregator.functions.latestRoundData().call()
            served = await _served(url, "ETH/USD", round_id)
            assert served is not None and served.verify(Committee.load(config.committee.file))
            assert answer == served.report.price and started_at == served.report.observed_at // 1000
            # A price near the localnet market (pool and recording both start at 3456.50).
            assert 3000 * 10**8 < answer < 4000 * 10**8

            # The same report with one unit more: both chains refuse it.
            tampered = SignedReport(replace(served.report, price=served.report.price + 1, round=served.round + 10**6),
                                    served.epoch, served.signature)
            with pytest.raises(FeedPushError, match="InvalidSignature"):
                await evm_target.push(tampered)
            with pytest.raises(SolanaFeedPushError, match="SIGNATURE_INVALID"):
                await solana_target.push(tampered)
        finally:
            stop.set()
            await asyncio.wait_for(pushing, 15)
            await evm_target.close()
            await solana_target.close()
