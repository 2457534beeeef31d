"""Source transactions read in JSON-RPC batches (adapters.solana.rpc: SolanaRpc.transaction /
transactions, follow_address), against the real localnet server in-process: one HTTP round trip per
TX_BATCH transactions, each caller its own answer (a transaction the node does not serve, an error for
one item), endpoint faults failing the batch over, a node refusing batches or answering them out of
order; follow_address stays on a transaction missing in the middle of a batch and skips failed ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from adapters.endpoints import AllEndpointsFailed
from adapters.solana import rpc as solana_rpc
from adapters.solana.rpc import SolanaRpc, follow_address
from adapters.solana_localnet.errors import RpcError
from adapters.solana_localnet.ledger import PROCESSED
from adapters.solana_localnet.testing import running_solana_localnet_in_process
from relay.ports import free_port


@pytest.fixture
async def server():
    async with running_solana_localnet_in_process(slot_ms=20, finality_slots=2) as srv:
        yield srv


def _send(server, count: int, target: Pubkey, *, fail_at: set[int] = frozenset()) -> list[Signature]:
    """`count` transfers from the faucet to `target` (each landed; those at `fail_at` fail: they
    move more lamports than their payer has), in this order."""
    signatures = []
    for i in range(count):
        blockhash, _ = server.ledger.latest_blockhash(PROCESSED)
        payer, lamports = server.faucet, 10**19 if i in fail_at else 10**6 + i  # 10**19: more than it holds
        ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=target, lamports=lamports))
        tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), blockhash), [payer])
        signature, record = server.ledger.submit(tx, preflight=False)
        assert record is not None and (record.err is not None) == (i in fail_at)
        signatures.append(signature)
    return signatures


async def _confirmed(server, signatures: list[Signature]) -> None:
    slot = max(server.ledger.record(s).slot for s in signatures)
    while server.ledger.slot("confirmed") < slot:
        await asyncio.sleep(0.01)


def _count_posts(rpc: SolanaRpc) -> list[int]:
    """The number of requests in each HTTP POST the rpc's clients send (1 for a single request)."""
    sizes: list[int] = []

    async def hook(request) -> None:
        body = json.loads(request.content)
        sizes.append(len(body) if isinstance(body, list) else 1)

    for client in rpc.pool.clients:
        client._provider.session.event_hooks["request"].append(hook)
    return sizes


async def test_concurrent_reads_share_batches_and_each_gets_its_own_answer(server) -> None:
    target = Keypair().pubkey()
    sent = _send(server, 5, target, fail_at={3})
    await _confirmed(server, sent)
    unknown = Signature.new_unique()
    rpc = SolanaRpc("t", [server.rpc_url])
    posts = _count_posts(rpc)
    try:
        asked = [sent[0], sent[1], unknown, sent[2], sent[3], sent[4]]
        txs = await asyncio.gather(*(rpc.transaction(s, Confirmed, encoding="base64") for s in asked))
        assert posts == [6]  # one round trip
        assert txs[2] is None  # not served: None for that caller only
        for signature, tx in zip(asked, txs):
            if signature != unknown:
                assert tx.transaction.transaction.signatures[0] == signature
                assert tx.slot == server.ledger.record(signature).slot
        assert txs[4].transaction.meta.err is not None  # the failed transfer, served with its error
        assert all(tx.transaction.meta.err is None for tx in (txs[0], txs[1], txs[3], txs[5]))
        # More callers than TX_BATCH: batches of at most TX_BATCH.
        many = [Signature.new_unique() for _ in range(solana_rpc.TX_BATCH + 30)] + [sent[0]] * 3
        posts.clear()
        answers = await asyncio.gather(*(rpc.transaction(s, Confirmed, encoding="base64") for s in many))
        assert sorted(posts) == [31, solana_rpc.TX_BATCH]  # the three callers asking for sent[0] share a request
        assert [a is None for a in answers] == [True] * (solana_rpc.TX_BATCH + 30) + [False] * 3
        # One caller alone: a plain request, no batch.
        posts.clear()
        assert (await rpc.transaction(sent[0], Confirmed, encoding="base64")) is not None
        assert posts == [1]
    finally:
        await rpc.close()


async def test_an_error_for_one_item_goes_to_its_caller_only(server, monkeypatch) -> None:
    target = Keypair().pubkey()
    sent = _send(server, 3, target)
    await _confirmed(server, sent)
    record = server.ledger.record

    def refusing(signature):
        if signature == sent[1]:
            raise RpcError(-32602, "Invalid params: refused for the test")
        return record(signature)

    monkeypatch.setattr(server.ledger, "record", refusing)
    rpc = SolanaRpc("t", [server.rpc_url])
    try:
        results = await asyncio.gather(*(rpc.transaction(s, Confirmed, encoding="base64") for s in sent),
                                       return_exceptions=True)
        assert isinstance(results[1], RPCException) and "refused for the test" in str(results[1])
        assert results[0].transaction.transaction.signatures[0] == sent[0]
        assert results[2].transaction.transaction.signatures[0] == sent[2]
    finally:
        await rpc.close()


async def test_endpoint_faults_fail_the_batch_over(server, monkeypatch) -> None:
    target = Keypair().pubkey()
    sent = _send(server, 4, target)
    await _confirmed(server, sent)
    # A dead endpoint first: the batch goes to the live one.
    rpc = SolanaRpc("t", [f"http://127.0.0.1:{free_port()}", server.rpc_url], base_delay=0.01)
    try:
        txs = await rpc.transactions(sent, Confirmed, encoding="base64")
        assert [tx.transaction.transaction.signatures[0] for tx in txs] == sent
        dead, live = rpc.health()
        assert dead.total_errors >= 1 and live.healthy
    finally:
        await rpc.close()
    # An item the node answers "unhealthy" (the node's fault, not the request's) fails the whole
    # batch over to the next endpoint (here the same server, healthy again by then).
    record, unhealthy = server.ledger.record, [1]

    def sometimes_unhealthy(signature):
        if signature == sent[2] and unhealthy[0]:
            unhealthy[0] -= 1
            raise RpcError(-32005, "Node is unhealthy", {"numSlotsBehind": 3})
        return record(signature)

    monkeypatch.setattr(server.ledger, "record", sometimes_unhealthy)
    rpc = SolanaRpc("t", [server.rpc_url, server.rpc_url], base_delay=0.01)
    posts = _count_posts(rpc)
    try:
        txs = await rpc.transactions(sent, Confirmed, encoding="base64")
        assert [tx.transaction.transaction.signatures[0] for tx in txs] == sent
        assert posts == [4, 4] and unhealthy == [0]
    finally:
        await rpc.close()


@pytest.fixture
async def proxy(server) -> AsyncIterator[tuple[str, dict]]:
    """An HTTP endpoint in front of the localnet that rewrites batch answers as `mode["answer"]` says."""
    mode = {"answer": "as is"}
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.Response:
        async with session.post(server.rpc_url, data=await request.read(),
                                headers={"content-type": "application/json"}) as resp:
            answer = await resp.json()
        if isinstance(answer, list):
            if mode["answer"] == "reversed":
                answer.reverse()
            elif mode["answer"] == "duplicate ids":
                for item in answer:
                    item["id"] = 0
            elif mode["answer"] == "refused":
                answer = {"jsonrpc": "2.0", "error": {"code": -32600, "message": "batch requests are disabled"},
                          "id": None}
            elif mode["answer"] == "HTTP 403":
                return web.Response(status=403, text="batch requests are not allowed on this plan")
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


async def test_batch_answers_out_of_order_refused_or_broken(server, proxy) -> None:
    url, mode = proxy
    target = Keypair().pubkey()
    sent = _send(server, 4, target)
    await _confirmed(server, sent)
    asked = [sent[0], Signature.new_unique(), sent[1], sent[2], sent[3]]

    def signatures(txs) -> list:
        return [None if tx is None else tx.transaction.transaction.signatures[0] for tx in txs]

    rpc = SolanaRpc("t", [url], attempts=1)
    posts = _count_posts(rpc)
    try:
        mode["answer"] = "reversed"  # JSON-RPC allows any order: matched by id
        assert signatures(await rpc.transactions(asked, Confirmed, encoding="base64")) == [
            sent[0], None, sent[1], sent[2], sent[3]]
        mode["answer"] = "duplicate ids"  # not an answer to each request: the endpoint's fault
        with pytest.raises(AllEndpointsFailed, match="answered with ids"):
            await rpc.transactions(asked, Confirmed, encoding="base64")
        mode["answer"] = "refused"  # a node without batches: one by one, from then on
        posts.clear()
        assert signatures(await rpc.transactions(asked, Confirmed, encoding="base64")) == [
            sent[0], None, sent[1], sent[2], sent[3]]
        assert posts == [5] + [1] * 5
        posts.clear()
        assert signatures(await rpc.transactions(asked[:2], Confirmed, encoding="base64")) == [sent[0], None]
        assert posts == [1, 1]
    finally:
        await rpc.close()
    rpc = SolanaRpc("t", [url], attempts=1)
    posts = _count_posts(rpc)
    try:
        mode["answer"] = "HTTP 403"  # a gateway refusing batches with an HTTP error: one by one too
        assert signatures(await rpc.transactions(asked, Confirmed, encoding="base64")) == [
            sent[0], None, sent[1], sent[2], sent[3]]
        assert posts == [5] + [1] * 5
    finally:
        await rpc.close()


async def _until(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_follow_address_reads_batches_in_order_and_stays_on_a_missing_transaction(server, monkeypatch) -> None:
    target = Keypair().pubkey()
    sent = _send(server, 12, target, fail_at={4})
    await _confirmed(server, sent)
    hidden = {sent[7]}  # in the middle of the batch: the node does not serve it (yet)
    record = server.ledger.record
    monkeypatch.setattr(server.ledger, "record", lambda s: None if s in hidden else record(s))
    rpc = SolanaRpc("t", [f"http://127.0.0.1:{free_port()}", server.rpc_url], base_delay=0.01)
    posts = _count_posts(rpc)
    befores: dict[Signature, str] = {}

    async def read(signature: Signature, before: str):
        befores[signature] = before
        tx = await rpc.transaction(signature, Confirmed, encoding="base64")
        return None if tx is None else [signature]

    found: list[Signature] = []

    async def collect() -> None:
        async for item in follow_address(rpc, target, None, read, commitment=Confirmed, logs=None,
                                         poll_interval=0.02, idle_poll_interval=0.02, what="test"):
            found.append(item)

    collector = asyncio.create_task(collect())
    try:
        await _until(lambda: len(found) >= 6)
        # Transfers 0-6 but the failed 4 (listed failed: never read; the cursor passes it).
        assert found == [sent[i] for i in (0, 1, 2, 3, 5, 6)]
        assert sent[4] not in befores and befores[sent[5]] == str(sent[4])
        assert max(posts) == 11  # the whole backlog but the failed one, in one batch (on the live endpoint)
        await asyncio.sleep(0.3)
        assert len(found) == 6  # stays on the hidden transaction: nothing after it
        hidden.clear()  # served now: the follower resumes on it
        await _until(lambda: len(found) >= 11)
        assert found == [sent[i] for i in range(12) if i != 4]
        assert befores[sent[7]] == str(sent[6])
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await rpc.close()


# ----- sending many transactions (SolanaTransactor.send_many) and shared account reads ----------------

def _transfers(payer: Keypair, target: Pubkey, count: int) -> list:
    return [([transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=target, lamports=10**6 + i))], None)
            for i in range(count)]


async def test_send_many_one_blockhash_batched_posts_and_each_its_own_error(server, monkeypatch) -> None:
    from adapters.solana import tx as solana_tx
    from adapters.solana.tx import SolanaTransactor

    payer = server.faucet
    target = Keypair().pubkey()
    rpc = SolanaRpc("t", [server.rpc_url])
    posts = _count_posts(rpc)
    transactor = SolanaTransactor(rpc, payer, name="t")
    submit = server.ledger.submit
    refused: list = []

    def refusing_the_third(tx, preflight=True):
        if len(refused) == 0 and tx.message.instructions and bytes(tx.message.instructions[0].data)[4:12] == \
                (10**6 + 2).to_bytes(8, "little"):
            refused.append(tx.signatures[0])
            raise RpcError(-32002, "refused for the test")
        return submit(tx, preflight=preflight)

    monkeypatch.setattr(server.ledger, "submit", refusing_the_third)
    monkeypatch.setattr(solana_tx, "SEND_BATCH", 4)
    try:
        results = await transactor.send_many(_transfers(payer, target, 6))
        assert posts == [1, 4, 2]  # getLatestBlockhash once, then the 6 signed transactions in batches of 4
        assert isinstance(results[2], solana_rpc.SolanaAdapterError) and "refused for the test" in str(results[2])
        landed = [r for i, r in enumerate(results) if i != 2]
        assert all(isinstance(r, solana_tx.SentTransaction) for r in landed)
        for sent in landed:  # each one sent really landed, and is remembered for expiry checks
            assert server.ledger.record(sent.signature) is not None
            assert transactor.last_valid_height(str(sent.signature)) == sent.last_valid_block_height
        assert transactor.last_valid_height(str(refused[0])) is None
        with pytest.raises(solana_rpc.SolanaAdapterError, match="identical transactions"):
            await transactor.send_many(_transfers(payer, target, 1) * 2)
    finally:
        await rpc.close()


async def test_send_many_to_a_node_refusing_batches_sends_one_by_one(server, proxy) -> None:
    from adapters.solana.tx import SentTransaction, SolanaTransactor

    url, mode = proxy
    rpc = SolanaRpc("t", [url], attempts=1)
    posts = _count_posts(rpc)
    transactor = SolanaTransactor(rpc, server.faucet, name="t")
    try:
        mode["answer"] = "refused"
        results = await transactor.send_many(_transfers(server.faucet, Keypair().pubkey(), 3))
        assert all(isinstance(r, SentTransaction) for r in results)
        assert posts == [1, 3, 1, 1, 1]  # blockhash, the refused batch, then one by one
        for sent in results:
            assert server.ledger.record(sent.signature) is not None
        mode["answer"] = "duplicate ids"  # answers that cannot be matched: the endpoint's fault, not "sent"
        rpc2 = SolanaRpc("t", [url], attempts=1)
        try:
            results = await SolanaTransactor(rpc2, server.faucet, name="t").send_many(
                _transfers(server.faucet, Keypair().pubkey(), 2))
            assert all(isinstance(r, AllEndpointsFailed) for r in results)
        finally:
            await rpc2.close()
    finally:
        await rpc.close()


async def test_concurrent_account_reads_share_one_get_multiple_accounts(server) -> None:
    from solders.system_program import ID as SYSTEM_PROGRAM

    funded = [Keypair().pubkey() for _ in range(3)]
    sent = []
    for i, key in enumerate(funded):
        sent += _send(server, 1, key)
    await _confirmed(server, sent)
    nobody = Keypair().pubkey()
    rpc = SolanaRpc("t", [server.rpc_url])
    posts = _count_posts(rpc)
    try:
        answers = await asyncio.gather(rpc.accounts([funded[0], nobody], Confirmed),
                                       rpc.accounts([funded[1]], Confirmed),
                                       rpc.accounts([funded[2], funded[0]], Confirmed))
        assert posts == [1]
        (a0, none), (a1,), (a2, a0_again) = answers
        assert none is None and a0 == a0_again
        assert [a.lamports for a in (a0, a1, a2)] == [10**6] * 3 and a0.owner == SYSTEM_PROGRAM
        with pytest.raises(solana_rpc.SolanaAdapterError, match="at most 100"):
            await rpc.accounts([nobody] * 101, Confirmed)
    finally:
        await rpc.close()
