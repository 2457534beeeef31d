"""Feeds on Solana end to end: the Tessera program deployed over JSON-RPC into the real Solana
localnet server (a subprocess), a committee initialized, and signed reports pushed through
`SolanaFeedTarget` (built from a config) into the feed account, read back with getAccountInfo."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed

import attest
from adapters.evm.devnet import free_port
from adapters.solana.feeds import FeedAccount, FeedPushError, SolanaFeedTarget, feed_address
from adapters.solana_localnet.testing import running_solana_localnet
from adapters.solana.deploy import deploy_program, initialize_committee
from adapters.solana.program import ProgramErrorCode
from relay.config import parse_config
from relay.feeds.aggregate import PushPolicy
from relay.feeds.push import Pusher
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport
from relay.interfaces import FeedNotNewer
from tests.support.solana import airdropped

pytestmark = pytest.mark.e2e

DOMAIN = 903
SIGNED_ROUND = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "feeds_v1.json").read_text())["signed_round"]


async def test_signed_reports_flow_into_the_feed_account_over_rpc(tmp_path: Path) -> None:
    committee, shares = attest.deal(4, 3, epoch=1, rng=random.Random(20261123))  # the vectors' committee
    assert "0x" + committee.group_key.hex() == SIGNED_ROUND["committee"]["group_key"]
    vector = SignedReport(FeedReport.decode(bytes.fromhex(SIGNED_ROUND["report"]["encoded"][2:])), 1,
                          bytes.fromhex(SIGNED_ROUND["signature"][2:]))

    def sign(report: FeedReport) -> SignedReport:
        digest = report.digest(1)
        combined = attest.combine(committee, digest, [attest.partial_sign(s, digest) for s in shares[:3]])
        return SignedReport(report, 1, combined.signature)

    async with running_solana_localnet(slot_ms=50, finality_slots=8) as net:
        async with AsyncClient(net.rpc_url, commitment=Confirmed) as client:
            admin = await airdropped(client, 50 * 10**9)
            program_id = await asyncio.wait_for(deploy_program(client, admin), 60)
            await initialize_committee(client, admin, program_id, domain=DOMAIN, epoch=1, n=4, t=3,
                                       group_key=committee.group_key)
            pusher = await airdropped(client, 10**9)  # the pusher's own key, not the admin's
            (tmp_path / "pusher.json").write_text(json.dumps(list(bytes(pusher))))
            dead = f"http://127.0.0.1:{free_port()}"  # a first endpoint that is down: the target fails over
            config = parse_config({"chains": {"solana": {
                "kind": "solana", "domain": DOMAIN, "rpc_urls": [dead, net.rpc_url], "program_id": str(program_id),
                "sender": {"file": str(tmp_path / "pusher.json")},
            }}})

            async with SolanaFeedTarget.from_config("solana", config.chains["solana"]) as target:
                assert target.name == "solana" and target.payer.pubkey() == pusher.pubkey()
                assert await target.latest("ETH/USD") is None

                tx = await target.push(vector)
                assert isinstance(tx, str)
                health = {h.url: h for h in target.health()}
                assert health[dead].total_errors >= 1 and health[net.rpc_url].healthy
                info = (await client.get_account_info(feed_address(program_id, "ETH/USD")[0])).value
                assert info.owner == program_id
                stored = FeedAccount.decode(bytes(info.data))
                assert stored.report == vector.report and stored.signed.verify(committee)
                assert (await target.latest("ETH/USD")) == stored

                # The same round again: a typed result, no transaction, no crash.
                again = await target.push(vector)
                assert again == FeedNotNewer("solana", "ETH/USD", vector.round, vector.round)

                # A tampered report (a newer round, so the ordering check passes): the program's error by name.
                tampered = dataclasses.replace(vector, report=dataclasses.replace(vector.report, round=99, price=1))
                with pytest.raises(FeedPushError, match="SIGNATURE_INVALID") as refused:
                    await target.push(tampered)
                assert refused.value.code == ProgramErrorCode.SIGNATURE_INVALID and not refused.value.retryable
                assert "ETH/USD round 99" in str(refused.value)

                newer = dataclasses.replace(vector.report, round=vector.round + 1, price=346_000_000_000,
                                            observed_at=vector.report.observed_at + 1000,
                                            published_at=vector.report.published_at + 1000)
                assert isinstance(await target.push(sign(newer)), str)
                latest = await target.latest("ETH/USD")
                assert latest.report == newer and latest.update_count == 2

                # The pusher (relay/feeds/push.py) with this target: it reads the account at start and
                # pushes only what the push rule wants (50 bps deviation, 1 h heartbeat).
                def step(rounds: int, price: int) -> SignedReport:
                    return sign(dataclasses.replace(newer, round=newer.round + rounds, price=price,
                                                    observed_at=newer.observed_at + 1000 * rounds,
                                                    published_at=newer.published_at + 1000 * rounds))

                clock = lambda: newer.published_at / 1000 + 60  # noqa: E731 (a minute after: no heartbeat)
                async with Pusher([target], {"ETH/USD": PushPolicy(50, 3600)}, committee=committee,
                                  clock=clock) as pusher:
                    assert pusher.last_pushed("solana", "ETH/USD") == newer
                    pusher.submit(step(1, newer.price + 1))  # 0.0003 bps: not pushed
                    await pusher.drain(30)
                    pusher.submit(step(2, newer.price * 101 // 100))  # +1 %: pushed
                    await pusher.drain(30)
                assert [(o.round, o.pushed) for o in pusher.history] == [(newer.round + 1, False), (newer.round + 2, True)]
                latest = await target.latest("ETH/USD")
                assert latest.report == step(2, newer.price * 101 // 100).report and latest.update_count == 3
