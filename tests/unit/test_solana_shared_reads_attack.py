"""Attack on the coalesced Solana reads (adapters.solana.rpc._SharedReads): getSignatureStatuses and
getMultipleAccounts answer positionally (no id per item), so a node answering a shared read with
fewer (or more) items than asked has answered nobody in particular. Before the fix the answers were
handed out by position anyway: with the first item cut, the first caller got the SECOND caller's
signature status (a delivery never sent "confirmed") or account (a receipt / replay bitmap of
another message, so `is_delivered` could say yes for a message never delivered, which the relayer
then skips). Every caller of such a read must get an error instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.message import Message
from solders.transaction import VersionedTransaction

from adapters.endpoints import AllEndpointsFailed
from adapters.solana.rpc import SolanaAdapterError, SolanaRpc, _SharedReads
from adapters.solana_localnet.ledger import PROCESSED
from adapters.solana_localnet.testing import running_solana_localnet_in_process
from relay.ports import free_port


@pytest.fixture
async def server():
    async with running_solana_localnet_in_process(slot_ms=20, finality_slots=2) as srv:
        yield srv


@pytest.fixture
async def cutting_proxy(server) -> AsyncIterator[tuple[str, dict]]:
    """The localnet behind an endpoint that, while mode["cut"] names a method, answers that
    method's `value` list with its first item dropped (or one extra item appended for "+1")."""
    mode: dict = {"cut": None, "how": "-1"}
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        async with session.post(server.rpc_url, json=body) as resp:
            answer = await resp.json()
        if isinstance(body, list) and mode["cut"] == "sendTransaction" and isinstance(answer, list):
            # One more item: request 0's id again, now "refused" (a later repeat wins a dict by id).
            answer.append({"jsonrpc": "2.0", "id": answer[0]["id"], "error": {"code": -32002, "message": "forged"}})
        elif isinstance(body, dict) and body.get("method") == mode["cut"]:
            value = answer["result"]["value"]
            answer["result"]["value"] = value[1:] if mode["how"] == "-1" else value + value[:1]
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", mode
    finally:
        await runner.cleanup()
        await session.close()


def _landed_transfer(server, target: Pubkey) -> Signature:
    blockhash, _ = server.ledger.latest_blockhash(PROCESSED)
    payer = server.faucet
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=target, lamports=10**6))
    tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), blockhash), [payer])
    signature, record = server.ledger.submit(tx, preflight=False)
    assert record is not None and record.err is None
    return signature


async def _confirmed(server, signature: Signature) -> None:
    slot = server.ledger.record(signature).slot
    while server.ledger.slot("confirmed") < slot:
        await asyncio.sleep(0.01)


async def test_a_cut_signature_status_answer_reaches_no_caller(server, cutting_proxy) -> None:
    url, mode = cutting_proxy
    landed = _landed_transfer(server, Keypair().pubkey())
    await _confirmed(server, landed)
    never_sent = Signature.new_unique()  # e.g. a delivery the node dropped
    rpc = SolanaRpc("t", [url], attempts=1)
    try:
        assert await rpc.signature_status(never_sent) is None  # the honest answer, through the proxy
        mode["cut"] = "getSignatureStatuses"
        for how in ("-1", "+1"):
            mode["how"] = how
            answers = await asyncio.gather(rpc.signature_status(never_sent), rpc.signature_status(landed),
                                           return_exceptions=True)
            # Before the fix (cut): the never-sent delivery got the landed transaction's status.
            assert all(isinstance(a, (SolanaAdapterError, AllEndpointsFailed)) for a in answers), answers
            assert all("answered" in str(a) for a in answers), answers
    finally:
        await rpc.close()
    # The endpoint's fault: with an honest endpoint next in the list, the read fails over to it.
    rpc = SolanaRpc("t", [url, server.rpc_url], attempts=2, base_delay=0.01)
    try:
        mode["how"] = "-1"
        never, found = await asyncio.gather(rpc.signature_status(never_sent), rpc.signature_status(landed))
        assert never is None and found is not None and found.err is None
    finally:
        await rpc.close()


async def test_a_cut_accounts_answer_reaches_no_caller(server, cutting_proxy) -> None:
    url, mode = cutting_proxy
    funded = Keypair().pubkey()
    await _confirmed(server, _landed_transfer(server, funded))
    nobody = Keypair().pubkey()  # e.g. the receipt of a message not delivered yet
    rpc = SolanaRpc("t", [url], attempts=1)
    try:
        assert (await rpc.accounts([nobody], Confirmed)) == [None]
        mode["cut"] = "getMultipleAccounts"
        for how in ("-1", "+1"):
            mode["how"] = how
            answers = await asyncio.gather(rpc.accounts([nobody], Confirmed), rpc.accounts([funded], Confirmed),
                                           return_exceptions=True)
            # Before the fix (cut): the caller asking for `nobody` got `funded`'s account.
            assert all(isinstance(a, (SolanaAdapterError, AllEndpointsFailed)) for a in answers), answers
    finally:
        await rpc.close()


async def test_shared_reads_with_a_wrong_count_fail_every_caller() -> None:
    shared = _SharedReads("t")
    asked: list[list[str]] = []

    async def short_read(items: list[str]) -> list[str]:
        asked.append(items)
        return [f"answer for {i}" for i in items][1:]  # positional, first one missing

    answers = await asyncio.gather(shared.get(("m",), ["a"], 10, short_read),
                                   shared.get(("m",), ["b"], 10, short_read), return_exceptions=True)
    assert asked == [["a", "b"]]  # one shared read
    assert all(isinstance(a, SolanaAdapterError) and "answered 1 items for 2 asked" in str(a) for a in answers), answers

    async def exact_read(items: list[str]) -> list[str]:
        return [f"answer for {i}" for i in items]

    assert await asyncio.gather(shared.get(("m",), ["a"], 10, exact_read),
                                shared.get(("m",), ["b", "a"], 10, exact_read)) == [
        ["answer for a"], ["answer for b", "answer for a"]]


async def test_a_send_batch_answer_repeating_an_id_is_no_answer(server, cutting_proxy) -> None:
    """send_many's batch answer matched by id: an extra item repeating request 0's id with an error
    made the relayer take a transaction the node accepted as refused (and sign another for it);
    a batch answer is one item per request, each id once, or the endpoint's fault."""
    from adapters.solana.tx import SentTransaction, SolanaTransactor
    from tests.unit.test_solana_rpc_batch import _transfers

    url, mode = cutting_proxy
    payer, target = server.faucet, Keypair().pubkey()
    rpc = SolanaRpc("t", [url], attempts=1)
    transactor = SolanaTransactor(rpc, payer, name="t")
    try:
        mode["cut"] = "sendTransaction"
        results = await transactor.send_many(_transfers(payer, target, 3))
        assert all(isinstance(r, AllEndpointsFailed) and "answered with ids" in str(r) for r in results), results
        mode["cut"] = None
        results = await transactor.send_many(_transfers(payer, Keypair().pubkey(), 3))
        assert all(isinstance(r, SentTransaction) for r in results), results
    finally:
        await rpc.close()
