"""AI tasks end to end on real processes: anvil, the Solana localnet server, 4 attester processes
(t = 3), the relayer and a `relay worker` process per chain, driven through the SDK."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from web3 import AsyncHTTPProvider, AsyncWeb3

from attest.committee import Committee
from relay.config import TesseraConfig, load_config
from relay.devstack import messaging_stack
from relay.sdk import TesseraClient
from relay.interfaces import TaskState
from relay.tasks.client import AuctionTerms
from relay.tasks.payloads import AttestationMethod, ProofKind
from relay.tasks.sentiment import SentimentExecutor
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def expected_sentiment(text: str) -> bytes:
    return await SentimentExecutor().run(text.encode(), deadline=None)


async def balance(config: TesseraConfig, chain: str, address: str) -> int:
    """The native balance of `address` on `chain` (wei or lamports), read from the chain's RPC."""
    rpc = config.chains[chain].rpc_urls[0]
    if config.chains[chain].kind == "evm":
        w3 = AsyncWeb3(AsyncHTTPProvider(rpc))
        try:
            return await w3.eth.get_balance(AsyncWeb3.to_checksum_address(address))
        finally:
            await w3.provider.disconnect()
    async with AsyncClient(rpc) as solana:
        return (await solana.get_balance(Pubkey.from_string(address), commitment=Confirmed)).value


async def test_three_workers_compete_the_cheapest_claims_first_is_paid_its_price_the_rest_refunded(
        tmp_path: Path) -> None:
    """Task protocol v2 both ways. Three workers on Solana with different prices: the auction's price
    rises from half of max_fee over 6 s, the cheapest claims first, is paid its claim price on EVM,
    and the requester gets max_fee - price back. One worker on EVM answers a Solana requester."""
    prices = {"cheap": 6 * 10**14, "middle": 8 * 10**14, "dear": 95 * 10**13}
    payouts = {name: "0x" + os.urandom(20).hex() for name in prices}  # on EVM, where the requester pays
    evm_payout = str(Keypair().pubkey())  # the EVM worker is paid on Solana
    max_fee = 10**15
    async with messaging_stack(tmp_path) as stack:
        await asyncio.gather(
            *(stack.start_worker("solana", name=name, payout={"evm": payouts[name]}, prices={"sentiment": price})
              for name, price in prices.items()),
            stack.start_worker("evm", payout={"solana": evm_payout}))
        config = load_config(stack.config_path)
        async with TesseraClient.from_config(stack.config_path) as client:
            to_solana = await client.request_task(
                src="evm", dst="solana", executor="sentiment", input="Markets rallied on strong earnings.",
                max_fee=max_fee, auction=AuctionTerms(window_s=6, start_bps=5000, claim_window_s=60, bond=10**6))
            to_evm = await client.request_task(src="solana", dst="evm", executor="sentiment",
                                               input="Customers are furious about the delay.", max_fee=2_000_000,
                                               auction=AuctionTerms(bond=10**12))
            events = [event async for event in to_solana.events(timeout=150)]
            stages = [event.stage for event in events]
            assert stages[:3] == ["requested", "request_delivered", "claimed"], stages
            assert stages[-1] == "completed" and "result_submitted" in stages and "claim_expired" not in stages
            results = await asyncio.gather(to_solana.result(timeout=120), to_evm.result(timeout=120))
            for handle, result, text in ((to_solana, results[0], "Markets rallied on strong earnings."),
                                         (to_evm, results[1], "Customers are furious about the delay.")):
                assert result.output == await expected_sentiment(text)
                assert result.result.proof_kind is ProofKind.REEXECUTION
                assert result.method is AttestationMethod.REEXECUTION
                assert result.attestation.valid and result.attestation.request_id == handle.request_id
                assert result.status.state is TaskState.COMPLETED
                assert client.verify(result.attestation_envelope, result.epoch, result.signature)
            # The cheapest worker claimed first: paid its claim price (at least its own price, below the
            # next worker's), the others nothing; the requester got the rest of max_fee back.
            paid = results[0].result.price
            assert prices["cheap"] <= paid < prices["middle"]
            assert results[0].result.payout == config.chains["evm"].parse_address(payouts["cheap"])
            completed = events[-1].detail
            assert (completed["price"], completed["refund"]) == (paid, max_fee - paid)
            assert await balance(config, "evm", payouts["cheap"]) == paid
            assert await balance(config, "evm", payouts["middle"]) == 0
            assert await balance(config, "evm", payouts["dear"]) == 0
            assert await balance(config, "solana", evm_payout) == results[1].result.price
            assert results[1].status.refund == 2_000_000 - results[1].result.price


async def _verdicts(committee: Committee, result_id: bytes) -> list[dict] | None:
    """Every member's v2 verdict on a result, once all of them signed one."""
    bodies = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        for member in committee.members:
            async with session.get(f"{member.endpoint}/v1/task-results/0x{result_id.hex()}") as response:
                body = await response.json()
            if body.get("status") == "attested":
                bodies.append(body)
    return bodies if len(bodies) == len(committee.members) else None


def _fresh_account(chain: str) -> str:
    return "0x" + os.urandom(20).hex() if chain == "evm" else str(Keypair().pubkey())


# (serving chain, requester chain, max_fee on the requester's, bond on the serving chain: above the
# rent-exempt minimum on Solana, so a forfeited bond is credited to a fresh refund_to at once)
DIRECTIONS = [("evm", "solana", 2_000_000, 10**15), ("solana", "evm", 10**15, 10**7)]


@pytest.mark.parametrize("serving, requesting, max_fee, bond", DIRECTIONS, ids=["served-on-evm", "served-on-solana"])
async def test_silent_claimant_and_bogus_result_forfeit_their_bonds_and_an_honest_worker_completes(
        tmp_path: Path, serving: str, requesting: str, max_fee: int, bond: int) -> None:
    """Task protocol v2, both directions, against a dishonest claimant that
    claims first each time: on one task it never answers (its claim expires, its bond goes to the
    requester's refund_to, the honest worker claims and is paid), on the other it submits a wrong
    sentiment (every attester refuses it: output mismatch; bond forfeited, the result dropped, the
    task re-opened and served honestly). Afterwards it copies the honest worker's result (sniping):
    the board refuses it, and it is paid nothing."""
    from adapters.registry import driver_for
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from relay.config import WorkerSection
    from relay.localnet import provision_localnet_worker
    from relay.tasks.board import BoardRefused
    from relay.tasks.payloads import TaskResultV2

    refund_to = {"silent": _fresh_account(serving), "bogus": _fresh_account(serving)}
    honest_payout, dishonest_payout = _fresh_account(requesting), _fresh_account(requesting)
    async with messaging_stack(tmp_path) as stack:
        config = load_config(stack.config_path)
        # The honest worker's price is max_fee: it claims only at the end of the 4 s auction, after the
        # dishonest one has claimed at the start price.
        await stack.start_worker(serving, payout={requesting: honest_payout}, prices={"sentiment": max_fee})
        fields = await provision_localnet_worker(stack.state_dir, config, serving, "dishonest")
        dishonest = driver_for(serving, config.chains[serving]).serving_board_v2(config, WorkerSection(**fields))
        payout = config.chains[requesting].parse_address(dishonest_payout)
        committee = Committee.load(config.committee.file)
        try:
            async with TesseraClient.from_config(stack.config_path) as client:
                handles = {
                    name: await client.request_task(
                        src=requesting, dst=serving, executor="sentiment", input="What a wonderful, happy day!",
                        max_fee=max_fee, auction=AuctionTerms(
                            window_s=4, start_bps=5000, claim_window_s=8, bond=bond,
                            refund_to=config.chains[serving].parse_address(refund_to[name])))
                    for name in ("silent", "bogus")}

                async def open_on_serving(handle):
                    status = await dishonest.claim_status(handle.request_id)
                    return status.state.name == "OPEN" or None

                claims = {}
                for name, handle in handles.items():
                    await wait_for(lambda: open_on_serving(handle), 90)
                    claims[name] = await dishonest.claim(handle.request_id, payout)
                wrong = b'{"label":"negative","compound":-0.9000,"pos":0.0000,"neu":0.1000,"neg":0.9000}'
                bogus = TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=handles["bogus"].request_id,
                                            executor="sentiment", output=wrong, claimant=dishonest.account,
                                            payout=payout, price=claims["bogus"].price,
                                            proof_kind=ProofKind.REEXECUTION)
                await dishonest.submit_result(handles["bogus"].request_id, bogus.encode())

                events = {name: [] for name in handles}

                async def follow(name):
                    async for event in handles[name].events(timeout=240):
                        events[name].append(event)

                await asyncio.gather(*(follow(name) for name in handles))
                results = {name: await handle.result(timeout=60) for name, handle in handles.items()}

                silent_stages = [e.stage for e in events["silent"]]
                bogus_stages = [e.stage for e in events["bogus"]]
                assert "claim_expired" in silent_stages and silent_stages[-1] == "completed", silent_stages
                assert "result_refused" in bogus_stages and bogus_stages[-1] == "completed", bogus_stages
                refused_id = bytes.fromhex(next(e for e in events["bogus"] if e.stage == "result_refused")
                                           .detail["result_id"][2:])
                verdicts = await wait_for(lambda: _verdicts(committee, refused_id), 60)
                assert all(v["verdict"] == "refused" and v["refusal_reason"] == "output_mismatch" for v in verdicts)
                for name, result in results.items():
                    # Served honestly and paid to the honest worker, at its claim price; the rest refunded.
                    assert result.output == await expected_sentiment("What a wonderful, happy day!")
                    assert result.result.payout == config.chains[requesting].parse_address(honest_payout)
                    assert result.status.price == result.result.price
                    assert result.status.refund == max_fee - result.result.price
                    # Each dishonest claim's bond went to that task's refund_to on the serving chain.
                    assert await wait_for(lambda n=name: _equal(balance(config, serving, refund_to[n]), bond), 60)
                assert await balance(config, requesting, honest_payout) == sum(r.result.price for r in results.values())
                assert await balance(config, requesting, dishonest_payout) == 0

                # Sniping: a copy of the honest result, re-signed for the copier's claimant and payout.
                honest = results["bogus"].result
                copy = TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=honest.request_id,
                                           executor="sentiment", output=results["bogus"].output,
                                           claimant=dishonest.account, payout=payout, price=honest.price,
                                           proof_kind=ProofKind.REEXECUTION)
                with pytest.raises(BoardRefused):
                    await dishonest.submit_result(honest.request_id, copy.encode())
                assert await balance(config, requesting, dishonest_payout) == 0
        finally:
            await dishonest.close()


async def _equal(value, expected) -> bool | None:
    return (await value) == expected or None


async def test_a_result_on_time_on_the_serving_chain_but_delivered_after_the_deadline_is_paid(
        tmp_path: Path) -> None:
    """Attack 5 at the system level: the relayer is down from the request's delivery until after the
    deadline; the worker claims and submits on Solana in time; once the relayer is back the result and
    the verdict reach EVM late, and the board pays (timeliness by the serving chain's clock)."""
    payout = "0x" + os.urandom(20).hex()
    async with messaging_stack(tmp_path) as stack:
        await stack.start_worker("solana", payout={"evm": payout}, min_time_left_s=3)
        config = load_config(stack.config_path)
        async with TesseraClient.from_config(stack.config_path) as client:
            deadline = int(time.time()) + 25
            handle = await client.request_task(src="evm", dst="solana", executor="sentiment",
                                               input="Markets rallied on strong earnings.", max_fee=10**15,
                                               deadline=deadline, auction=AuctionTerms(window_s=1, bond=10**6))
            await client.wait_delivered(handle.envelope, timeout=60)
            stack.relayers["main"].stop()

            async def answered():
                status = await handle._serving.claim_status(handle.request_id)
                return status if status.state.name == "ANSWERED" else None

            waiting = await wait_for(answered, 30)
            assert not await handle._requester.result_recorded(waiting.result_id)
            while time.time() < deadline + 3:  # past the deadline, nothing delivered to EVM meanwhile
                await asyncio.sleep(0.5)
            assert (await handle.status()).state is TaskState.OPEN
            await stack.start_relayer()
            result = await handle.result(timeout=120)
            assert result.attestation.submitted_at <= deadline and result.status.state is TaskState.COMPLETED
            assert await balance(config, "evm", payout) == result.result.price
            assert result.status.refund == 10**15 - result.result.price
