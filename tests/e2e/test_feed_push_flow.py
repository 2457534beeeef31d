"""Reports flow end to end on real processes: the localnet (anvil + Solana), four attester processes
running feed rounds over the localnet's [feeds] (the localnet pool and the recordings), a feed
server process, and the pusher (`relay feed-push`'s code, in the test process) putting reports on
both chains, where the EVM aggregator and the Solana feed account show them. A tampered copy of a served
report is refused by both chains.

The attesters run with [feed_round] sign = "root" (docs/FEEDS.md "One signature per round"): each
round's ETH/USD and BTC/USD reports are signed once, over their feed root, the feed server serves
each as a v2 report (report + proof + the root's signature) that the SDK verifies, and the pusher
puts both feeds on each chain in ONE transaction (read back from the chains: one EVM transaction
with both FeedUpdated events and a FeedRootApplied; one Solana transaction writing both feed
accounts)."""

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
from eth_utils import keccak
from solana.rpc.commitment import Confirmed
from relay.feeds.client import FeedsClient
from relay.feeds.report import encode_feed_id
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
        # Rounds with room to spare (a loaded CI machine): a feed whose report is built late would
        # leave the root with one report, which is then signed alone (correct, but not what this
        # test looks for).
        config = config.model_copy(update={"feed_round": config.feed_round.model_copy(
            update={"sign": "root", "interval_ms": 2000, "leader_timeout_ms": 1200, "collect_ms": 300})})
        dump_config(config, stack.config_path)
        await asyncio.gather(*(stack.start_attester(i) for i in (1, 2, 3, 4)))

        evm = config.chains["evm"]
        stop = asyncio.Event()
        pushing = asyncio.create_task(run_feed_push(config, stack.config_path.parent, source=url, stop=stop))
        evm_target = EvmFeedTarget.from_config("evm", config.chains["evm"], key=None)
        solana_target = SolanaFeedTarget.from_config("solana", config.chains["solana"])
        try:
            deadline = time.monotonic() + 60
            evm_latest = sol_latest = None
            while time.monotonic() < deadline:
                assert not pushing.done(), pushing
                evm_latest = [await evm_target.latest(f) for f in ("ETH/USD", "BTC/USD")]
                sol_latest = [await solana_target.latest(f) for f in ("ETH/USD", "BTC/USD")]
                if None not in evm_latest and None not in sol_latest:
                    break
                await asyncio.sleep(0.5)
            assert None not in evm_latest and None not in sol_latest, \
                f"ETH/USD and BTC/USD did not reach both chains in 60 s: {evm_latest} {sol_latest}"

            # One EVM transaction updated both feeds: FeedStore.updateFeeds' FeedRootApplied, and
            # both FeedUpdated events in its receipt.
            w3 = evm_target.w3
            applied = await w3.eth.get_logs({"address": evm_target.store_address, "fromBlock": 0,
                                             "topics": ["0x" + keccak(text="FeedRootApplied(bytes32,uint32,uint32,uint256,uint256)").hex()]})
            assert applied, "no FeedStore.updateFeeds on the EVM chain"
            updated_topic = keccak(text="FeedUpdated(bytes32,uint80,int256,uint256,uint8,uint64,uint64,uint32)")
            ids = {bytes(encode_feed_id(f)) for f in ("ETH/USD", "BTC/USD")}
            both_in_one = False
            for log in applied:
                receipt = await w3.eth.get_transaction_receipt(log["transactionHash"])
                feeds_in_tx = {bytes(entry["topics"][1]) for entry in receipt["logs"]
                               if entry["topics"] and bytes(entry["topics"][0]) == updated_topic}
                both_in_one |= ids <= feeds_in_tx
            assert both_in_one, "no EVM transaction updated ETH/USD and BTC/USD together"
            # One Solana transaction wrote both feed accounts, stored from the root (flag bit 2).
            assert all(account.root_signed for account in sol_latest)
            signatures = []
            for feed_id in ("ETH/USD", "BTC/USD"):
                answer = await solana_target.rpc.call(
                    "getSignaturesForAddress", lambda c, a=solana_target.address(feed_id): c.get_signatures_for_address(a, commitment=Confirmed))
                signatures.append({str(item.signature) for item in answer.value})
            assert signatures[0] & signatures[1], "no Solana transaction updated ETH/USD and BTC/USD together"

            # The SDK verifies a served report of the root: report + proof + the root's signature.
            committee = Committee.load(config.committee.file)
            async with FeedsClient(url, committee, max_age_s=None, max_confidence_ratio=None) as client:
                for feed_id in ("ETH/USD", "BTC/USD"):
                    got = await client.latest(feed_id)
                    assert got.version == 2 and got.root.leaf_count == 2 and got.verify(committee)

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
