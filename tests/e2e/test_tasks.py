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
from relay.envelope import keccak256
from relay.sdk import TesseraClient
from relay.interfaces import TaskState
from relay.tasks.client import TaskExpiredError
from relay.tasks.payloads import AttestationMethod, ProofKind, TaskResult
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


async def test_tasks_both_ways_are_executed_attested_verified_and_paid(tmp_path: Path) -> None:
    # Each worker is paid on the requester's chain, to a fresh account nothing else spends from.
    payouts = {"solana": "0x" + os.urandom(20).hex(), "evm": str(Keypair().pubkey())}
    async with messaging_stack(tmp_path) as stack:
        await asyncio.gather(stack.start_worker("evm", payout={"solana": payouts["evm"]}),
                             stack.start_worker("solana", payout={"evm": payouts["solana"]}))
        config = load_config(stack.config_path)
        assert await balance(config, "evm", payouts["solana"]) == 0
        assert await balance(config, "solana", payouts["evm"]) == 0
        async with TesseraClient.from_config(stack.config_path) as client:
            to_solana = await client.request_task(src="evm", dst="solana", executor="sentiment",
                                                  input="Markets rallied on strong earnings.", max_fee=10**15)
            to_evm = await client.request_task(src="solana", dst="evm", executor="sentiment",
                                               input="Customers are furious about the delay.", max_fee=2_000_000)
            # An executor no worker serves: refused by the SDK unless explicitly allowed; the worker
            # skips it and the escrow comes back after the deadline.
            unserved = await client.request_task(src="evm", dst="solana", executor="summarize", input="x",
                                                 max_fee=10**14, deadline=int(time.time()) + 25,
                                                 allow_unknown_executor=True)
            stages = []
            async for event in to_solana.events(timeout=120):
                stages.append(event.stage)
            assert stages == ["requested", "request_delivered", "result_submitted", "result_delivered", "completed"]
            results = await asyncio.gather(to_solana.result(timeout=120), to_evm.result(timeout=120))
            for handle, result, text in ((to_solana, results[0], "Markets rallied on strong earnings."),
                                         (to_evm, results[1], "Customers are furious about the delay.")):
                # The worker's output is what the SDK re-derives locally, and the committee re-executed it.
                assert result.output == await expected_sentiment(text)
                assert result.result.proof_kind is ProofKind.REEXECUTION
                assert result.method is AttestationMethod.REEXECUTION
                assert result.attestation.request_id == handle.request_id
                assert result.status.state is TaskState.COMPLETED
                assert client.verify(result.attestation_envelope, result.epoch, result.signature)
            assert results[0].text.startswith('{"label":"positive"')
            assert results[1].text.startswith('{"label":"negative"')
            # Paid: the escrow went to the payout address the worker signed.
            assert results[0].result.payout == config.chains["evm"].parse_address(payouts["solana"])
            assert results[1].result.payout == config.chains["solana"].parse_address(payouts["evm"])
            assert await balance(config, "evm", payouts["solana"]) == 10**15
            assert await balance(config, "solana", payouts["evm"]) == 2_000_000

            with pytest.raises(TaskExpiredError, match="reclaim"):
                await unserved.result(timeout=60)
            assert not await unserved._serving.result_submitted(unserved.request_id)
            await unserved.reclaim()
            assert (await unserved.status()).state is TaskState.REFUNDED


async def test_a_wrong_sentiment_result_is_refused_by_the_attesters_and_not_paid(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from adapters.solana.taskboard import SolanaTaskBoard

    async with messaging_stack(tmp_path) as stack:  # no worker: the test plays a dishonest one
        config = load_config(stack.config_path)
        async with TesseraClient.from_config(stack.config_path) as client:
            handle = await client.request_task(src="evm", dst="solana", executor="sentiment",
                                               input="What a wonderful, happy day!", max_fee=10**15)
            await client.wait_delivered(handle.envelope, timeout=90)
            wrong = b'{"label":"negative","compound":-0.9000,"pos":0.0000,"neu":0.1000,"neg":0.9000}'
            payout = bytes(12) + bytes.fromhex("00000000000000000000000000000000000000aa")
            result = TaskResult.signed(Ed25519PrivateKey.generate(), request_id=handle.request_id,
                                       executor="sentiment", output=wrong, payout=payout,
                                       proof_kind=ProofKind.REEXECUTION)
            board = SolanaTaskBoard.from_config("solana", config.chains["solana"], role="worker",
                                                keypair=_funded_keypair(stack))
            try:
                await board.submit_result(handle.request_id, result.encode())
            finally:
                await board.close()

            async def recorded():
                status = await handle.status()
                return status if status.state is TaskState.RESULT_RECEIVED else None

            status = await wait_for(recorded, 90)
            assert status.output_hash == keccak256(wrong)
            committee = Committee.load(config.committee.file)
            refusals = await wait_for(lambda: _refusals(committee, status.result_id), 60)
            assert len(refusals) >= committee.t
            assert all("re-execution" in reason or "output" in reason for reason in refusals), refusals
            await asyncio.sleep(5)  # time for an attestation, were there one
            assert (await handle.status()).state is TaskState.RESULT_RECEIVED  # not paid


def _funded_keypair(stack):
    from adapters.solana.rpc import load_keypair

    path = stack.state_dir / "keys" / "solana-user.json"  # funded by the localnet
    return load_keypair(path.read_text(), str(path))


async def _refusals(committee: Committee, result_id: bytes) -> list[str] | None:
    reasons = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        for member in committee.members:
            async with session.get(f"{member.endpoint}/v1/task-results/0x{result_id.hex()}") as response:
                body = await response.json()
            if body.get("status") == "refused":
                reasons.append(body["reason"])
    return reasons if len(reasons) == len(committee.members) else None

