"""The Solana adapter against the real Solana localnet server (a subprocess) with the Tessera program
deployed through the upgradeable loader: watch/reobserve/find_nonce on Send, submit/delivery_status/
is_delivered on Deliver, endpoint failover and an expired blockhash."""

from __future__ import annotations

import asyncio
import json
import socket
from base64 import b64decode
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Finalized
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

from adapters.endpoints import AllEndpointsFailed
from adapters.solana.deploy import initialize_gateway
from adapters.solana.gateway import SolanaAdapter
from adapters.solana_localnet.testing import RunningLocalnet, running_solana_localnet
from adapters.solana.deploy import deploy_program, initialize_committee
from adapters.solana.program import DeliveryReceipt, OutboxState, outbox_address, receipt_address, send_ix
from attest import Committee, KeyShare, combine, deal, partial_sign
from relay.interfaces import DeliveryState, DeliveryStatus, Observation, SignedDelivery
from relay.config import SolanaChain
from relay.envelope import Envelope
from relay.protocol import MessageKind
from tests.support.solana import airdropped

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DOMAIN = 902
EVM_DOMAIN = 31337
RECEIVER = b"\x00" * 12 + b"\xaa" * 20


@dataclass
class Deployed:
    net: RunningLocalnet
    program_id: Pubkey
    admin: Keypair
    committee: Committee
    shares: list[KeyShare]

    def chain(self, rpc_urls: list[str] | None = None, ws: bool = True) -> SolanaChain:
        return SolanaChain(kind="solana", domain=DOMAIN, rpc_urls=rpc_urls or [self.net.rpc_url],
                           ws_urls=[self.net.ws_url] if ws else [], program_id=str(self.program_id))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployed() -> AsyncIterator[Deployed]:
    # 30 ms slots: a blockhash (150 slots) expires in ~4.5 s, finalized trails by 8 slots (~0.24 s).
    async with running_solana_localnet(slot_ms=30, finality_slots=8) as net:
        async with AsyncClient(net.rpc_url, commitment=Confirmed) as client:
            admin = await airdropped(client, 100 * 10**9)
            program_id = await asyncio.wait_for(deploy_program(client, admin), 60)
            committee, shares = deal(4, 3, epoch=1)
            await initialize_committee(client, admin, program_id, domain=DOMAIN, epoch=1, n=4, t=3,
                                       group_key=committee.group_key)
            outbox = await initialize_gateway(client, admin, program_id)
            assert outbox == outbox_address(program_id)[0]
        yield Deployed(net, program_id, admin, committee, shares)


@pytest_asyncio.fixture(loop_scope="module")
async def client(deployed: Deployed) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(deployed.net.rpc_url, commitment=Confirmed) as c:
        yield c


async def _collect(adapter: SolanaAdapter, cursor: str | None, count: int, timeout: float = 15) -> list[Observation]:
    found: list[Observation] = []

    async def run() -> None:
        async for observation in adapter.watch(cursor):
            found.append(observation)
            if len(found) == count:
                return

    await asyncio.wait_for(run(), timeout)
    return found


async def _final_status(adapter: SolanaAdapter, tx: str, timeout: float = 15) -> DeliveryStatus:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await adapter.delivery_status(tx)
        if status.state is not DeliveryState.PENDING or loop.time() > deadline:
            return status
        await asyncio.sleep(0.05)


def _sign(committee: Committee, shares: list[KeyShare], envelope: Envelope, epoch: int = 1) -> bytes:
    digest = envelope.digest(epoch)
    result = combine(committee, digest, [partial_sign(share, digest) for share in shares[:3]])
    assert result.ok, result.reason
    return result.signature


# --- source side ---------------------------------------------------------------------------------


async def test_watch_yields_sent_envelopes_once_finalized_in_order_and_resumes(deployed: Deployed,
                                                                               client: AsyncClient) -> None:
    sender = await airdropped(client)
    # A long idle poll: between messages only the logs subscription can wake the watcher in time.
    async with SolanaAdapter("solana", deployed.chain(), sender, poll_interval=0.1, idle_poll_interval=60) as adapter:
        first, sig0 = await adapter.send_message(EVM_DOMAIN, RECEIVER, MessageKind.TASK_REQUEST, b"first task")
        # Right after confirmation the transaction is usually not final yet: reobserve must not see it.
        early = await adapter.reobserve(sig0)
        status = (await client.get_signature_statuses([Signature.from_string(sig0)])).value[0]
        if status.confirmation_status != TransactionConfirmationStatus.Finalized:  # still not final after it
            assert early == []
        second, sig1 = await adapter.send_message(EVM_DOMAIN, RECEIVER, MessageKind.DATA, b"\x01" * 512)
        assert (first.nonce + 1, first.src_domain, first.src_sender) == (second.nonce, DOMAIN, bytes(sender.pubkey()))
        assert first.dst_receiver == RECEIVER and second.payload == b"\x01" * 512

        observations = await _collect(adapter, None, 2)
        finalized = (await client.get_slot(Finalized)).value
        assert [o.envelope for o in observations] == [first, second]
        assert [o.source_tx for o in observations] == [sig0, sig1]
        assert all(o.position <= finalized for o in observations)
        assert adapter.ws_connected  # the logs subscription was the wake-up

        third, sig2 = await adapter.send_message(EVM_DOMAIN, RECEIVER, MessageKind.TASK_RESULT, b"third")
        (resumed,) = await _collect(adapter, observations[-1].cursor, 1, timeout=10)
        assert (resumed.envelope, resumed.source_tx) == (third, sig2)

        found = await adapter.find_nonce(first.nonce)
        assert found is not None and (found.envelope, found.source_tx) == (first, sig0)
        assert await adapter.find_nonce(third.nonce + 100) is None

        reobserved = await adapter.reobserve(sig1)
        assert [o.envelope for o in reobserved] == [second]

    # Polling alone (no WebSocket configured) sees the same envelopes.
    async with SolanaAdapter("solana", deployed.chain(ws=False), None, poll_interval=0.05) as polling:
        again = await _collect(polling, observations[0].cursor, 2)
        assert [o.envelope for o in again] == [second, third]
        assert not polling.ws_connected


async def test_reobserve_of_a_failed_or_unknown_transaction_is_empty(deployed: Deployed, client: AsyncClient) -> None:
    sender = await airdropped(client)
    async with SolanaAdapter("solana", deployed.chain(ws=False), sender) as adapter:
        # A Send of kind COMMITTEE_ROTATION is refused by the program; without preflight it lands failed.
        bad = send_ix(deployed.program_id, sender.pubkey(), dst_domain=EVM_DOMAIN, receiver=RECEIVER,
                      kind=MessageKind.COMMITTEE_ROTATION, payload=b"")
        failed = str((await adapter.tx.send([bad], preflight=False)).signature)
        status = await _final_status(adapter, failed)
        assert status.state is DeliveryState.REVERTED and "WRONG_MESSAGE_KIND" in status.detail
        assert await adapter.reobserve(failed) == []
        assert await adapter.reobserve(str(Signature.new_unique())) == []
        account = (await client.get_account_info(outbox_address(deployed.program_id)[0])).value
        outbox = OutboxState.decode(bytes(account.data))
        found = await adapter.find_nonce(outbox.next_nonce - 1) if outbox.next_nonce else None
        assert found is None or found.source_tx != failed


# --- destination side ----------------------------------------------------------------------------


async def test_deliver_end_to_end_then_replay_forgery_and_wrong_domain(deployed: Deployed, client: AsyncClient) -> None:
    relayer = await airdropped(client)
    async with SolanaAdapter("solana", deployed.chain(ws=False), relayer) as adapter:
        envelope = Envelope(kind=MessageKind.TASK_RESULT, nonce=5, src_domain=EVM_DOMAIN,
                            src_sender=b"\x00" * 12 + b"\x11" * 20, dst_domain=DOMAIN,
                            dst_receiver=bytes(Keypair().pubkey()), payload=b"result " * 70)
        signature = _sign(deployed.committee, deployed.shares, envelope)
        assert not await adapter.is_delivered(envelope.message_id)

        tx = await adapter.submit(SignedDelivery(envelope, 1, signature))
        assert (await _final_status(adapter, tx)).state is DeliveryState.CONFIRMED
        assert await adapter.is_delivered(envelope.message_id)
        account = (await client.get_account_info(receipt_address(deployed.program_id, envelope.message_id)[0])).value
        receipt = DeliveryReceipt.decode(bytes(account.data))
        assert (receipt.envelope, receipt.message_id, receipt.relayer) == (
            envelope.encode(), envelope.message_id, relayer.pubkey())
        assert await adapter.delivery_tx(envelope.message_id) == tx

        again = await adapter.submit(SignedDelivery(envelope, 1, signature))
        replay = await _final_status(adapter, again)
        assert replay.state is DeliveryState.REVERTED and "ALREADY_DELIVERED" in replay.detail
        assert await adapter.is_delivered(envelope.message_id)
        assert await adapter.delivery_tx(envelope.message_id) == tx

        other = Envelope(kind=MessageKind.DATA, nonce=6, src_domain=EVM_DOMAIN, src_sender=envelope.src_sender,
                         dst_domain=DOMAIN, dst_receiver=envelope.dst_receiver, payload=b"forged")
        stranger, stranger_shares = deal(4, 3, epoch=1)
        forged = await adapter.submit(SignedDelivery(other, 1, _sign(stranger, stranger_shares, other)))
        refused = await _final_status(adapter, forged)
        assert refused.state is DeliveryState.REVERTED and "SIGNATURE_INVALID" in refused.detail
        assert not await adapter.is_delivered(other.message_id)
        assert await adapter.delivery_tx(other.message_id) is None

        elsewhere = Envelope(kind=MessageKind.DATA, nonce=7, src_domain=EVM_DOMAIN, src_sender=envelope.src_sender,
                             dst_domain=DOMAIN + 1, dst_receiver=envelope.dst_receiver, payload=b"not for us")
        misrouted = await adapter.submit(SignedDelivery(elsewhere, 1, _sign(deployed.committee, deployed.shares,
                                                                            elsewhere)))
        wrong = await _final_status(adapter, misrouted)
        assert wrong.state is DeliveryState.REVERTED and "WRONG_DESTINATION_DOMAIN" in wrong.detail
        assert not await adapter.is_delivered(elsewhere.message_id)


# --- endpoints -----------------------------------------------------------------------------------


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


async def test_failover_to_the_second_endpoint_and_a_clear_error_when_all_are_dead(deployed: Deployed) -> None:
    dead = _dead_url()
    chain = deployed.chain(rpc_urls=[dead, deployed.net.rpc_url], ws=False)
    async with SolanaAdapter("solana", chain, None, pool_base_delay=0.01) as adapter:
        assert not await adapter.is_delivered(b"\x07" * 32)
        first, second = adapter.health()
        assert (first.url, first.healthy, first.total_errors) == (dead, False, 1)
        assert "ConnectError" in first.last_error or "Connect" in first.last_error
        assert (second.url, second.healthy) == (deployed.net.rpc_url, True)

    chain = deployed.chain(rpc_urls=[_dead_url(), _dead_url()], ws=False)
    async with SolanaAdapter("solana", chain, None, pool_attempts=2, pool_base_delay=0.01) as adapter:
        with pytest.raises(AllEndpointsFailed, match="failed on every endpoint"):
            await adapter.is_delivered(b"\x07" * 32)
        assert not any(h.healthy for h in adapter.health())


# --- a transaction that never lands --------------------------------------------------------------


@dataclass
class _Proxy:
    url: str = ""
    drop_sends: bool = False  # accept sendTransaction, answer with the signature, never forward it
    down: bool = False  # answer every request with HTTP 503


@asynccontextmanager
async def _rpc_proxy(upstream: str) -> AsyncIterator[_Proxy]:
    """An RPC endpoint in front of the localnet that can misbehave like real ones: one that accepts a
    transaction and loses it (the leader dropped it), or one that is down for a while."""
    proxy = _Proxy()
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.Response:
        if proxy.down:
            return web.Response(status=503, text="service unavailable")
        body = await request.read()
        message = json.loads(body)
        if proxy.drop_sends and isinstance(message, dict) and message.get("method") == "sendTransaction":
            tx = VersionedTransaction.from_bytes(b64decode(message["params"][0]))
            return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": str(tx.signatures[0])})
        async with session.post(upstream, data=body, headers={"Content-Type": "application/json"}) as response:
            return web.Response(body=await response.read(), status=response.status, content_type="application/json")

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield proxy
    finally:
        await runner.cleanup()
        await session.close()


async def test_watch_rides_out_an_rpc_outage(deployed: Deployed, client: AsyncClient) -> None:
    sender = await airdropped(client)
    async with SolanaAdapter("solana", deployed.chain(), sender) as direct:
        sent, _ = await direct.send_message(EVM_DOMAIN, RECEIVER, MessageKind.DATA, b"before the outage")
    async with _rpc_proxy(deployed.net.rpc_url) as proxy:
        proxy.down = True
        chain = deployed.chain(rpc_urls=[proxy.url], ws=False)
        async with SolanaAdapter("solana", chain, None, poll_interval=0.05, pool_attempts=1) as adapter:
            found: list[Observation] = []

            async def run() -> None:
                async for observation in adapter.watch(None):
                    found.append(observation)
                    if observation.envelope == sent:
                        return

            task = asyncio.create_task(run())
            await asyncio.sleep(0.5)
            assert not task.done() and not found and not adapter.health()[0].healthy
            proxy.down = False
            await asyncio.wait_for(task, 15)
            assert found[-1].envelope == sent and adapter.health()[0].healthy


async def test_a_delivery_that_never_lands_is_dropped_once_its_blockhash_expires(deployed: Deployed,
                                                                                 client: AsyncClient) -> None:
    relayer = await airdropped(client)
    envelope = Envelope(kind=MessageKind.DATA, nonce=11, src_domain=EVM_DOMAIN, src_sender=b"\x01" * 32,
                        dst_domain=DOMAIN, dst_receiver=b"\x02" * 32, payload=b"lost in transit")
    signature = _sign(deployed.committee, deployed.shares, envelope)
    async with _rpc_proxy(deployed.net.rpc_url) as proxy:
        proxy.drop_sends = True
        async with SolanaAdapter("solana", deployed.chain(rpc_urls=[proxy.url], ws=False), relayer) as adapter:
            tx = await adapter.submit(SignedDelivery(envelope, 1, signature))
            pending = await adapter.delivery_status(tx)
            assert pending.state is DeliveryState.PENDING
            status = await _final_status(adapter, tx, timeout=20)
            assert status.state is DeliveryState.DROPPED, status
            assert "blockhash expired" in status.detail
            assert not await adapter.is_delivered(envelope.message_id)
