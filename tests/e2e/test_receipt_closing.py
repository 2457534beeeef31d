"""Rent that comes back, against the real program on the Solana localnet server (in process, so the
test can move the ledger's clock: the program's 86,400 s receipt retention is compiled in; the same
`time` stand-in as tests/e2e/test_solana_board_v2.py). A relayer (in process, batching on, committee
signatures from locally dealt shares) delivers messages from an EVM-like source to Solana, records
their receipts, and:

- a receiver closes its own receipt before the retention (the receiver path: SolanaAdapter.close_receipt),
  its rent going to the relayer that paid it;
- the relayer's own closes are refused by the program as too early until the clock passes the retention,
  then all its receipts are closed, the relayer's balance gets exactly their rent back (less the fees);
- a closed message replayed through the gateway, by Deliver and by DeliverWithProof, is refused
  (DELIVERED_AND_CLOSED: the replay bitmap)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from adapters.solana.deploy import deploy_program, initialize_committee, initialize_gateway
from adapters.solana.gateway import SolanaAdapter
from adapters.solana.program import (RECEIPT_RETENTION_SECONDS, REPLAY_ACCOUNT_LEN, ROOT_ACCOUNT_LEN, ROOT_RETENTION_SECONDS, RootAccount,
                                     close_root_ix, replay_address, root_address)
from adapters.solana_localnet.testing import running_solana_localnet_in_process
from attest import Committee, KeyShare, combine, deal, partial_sign
from relay.batch import Batch
from relay.config import SolanaChain
from relay.envelope import Envelope
from relay.interfaces import MessageStatus, DeliveryState, SignedBatch, SignedDelivery
from relay import pipeline
from relay.pipeline import Collected, PipelineSettings, Relayer
from relay.protocol import MessageKind
from relay.store import ReceiptState, Stage, Store
from tests.support.fakes import FakeChain
from tests.support.solana import MovableClock, airdropped
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e]

DOMAIN = 921
EVM = 31337
EPOCH = 1
FEE = 5_000  # lamports per signature


class LocalCommittee:
    """The committee's signatures from locally dealt shares (t of them), for messages and roots."""

    def __init__(self, committee: Committee, shares: list[KeyShare]) -> None:
        self.committee, self.shares = committee, shares

    def sign(self, digest: bytes) -> bytes:
        result = combine(self.committee, digest, [partial_sign(s, digest) for s in self.shares[:3]])
        assert result.ok, result.reason
        return result.signature

    async def collect(self, envelope: Envelope, source_tx: str) -> Collected:
        return Collected(self.sign(envelope.digest(EPOCH)), EPOCH)

    async def collect_root(self, batch: Batch, source_txs: list[str]) -> Collected:
        return Collected(self.sign(batch.digest(EPOCH)), EPOCH)


def _message(nonce: int, receiver: bytes) -> Envelope:
    return Envelope(kind=MessageKind.DATA, nonce=nonce, src_domain=EVM, src_sender=b"\x00" * 12 + b"\x5e" * 20,
                    dst_domain=DOMAIN, dst_receiver=receiver, payload=f"message {nonce}".encode())


@contextlib.asynccontextmanager
async def _program_on_a_localnet() -> AsyncIterator[tuple]:
    """The in-process Solana localnet (its clock movable with `movable_clock`) with the program
    deployed and its committee (EPOCH, 3-of-4) and gateway initialised: (server, client, program id,
    the chain's config table, a LocalCommittee that signs as that committee)."""
    async with running_solana_localnet_in_process(slot_ms=30, finality_slots=8) as server:
        async with AsyncClient(server.rpc_url, commitment=Confirmed) as client:
            committee, shares = deal(4, 3, epoch=EPOCH)
            admin = await airdropped(client, 100 * 10**9)
            program_id = await asyncio.wait_for(deploy_program(client, admin), 120)
            await initialize_committee(client, admin, program_id, domain=DOMAIN, epoch=EPOCH, n=4, t=3,
                                       group_key=committee.group_key)
            await initialize_gateway(client, admin, program_id)
            chain = SolanaChain(kind="solana", domain=DOMAIN, rpc_urls=[server.rpc_url], ws_urls=[server.ws_url],
                                program_id=str(program_id))
            yield server, client, program_id, chain, LocalCommittee(committee, shares)


async def _clock_past(client: AsyncClient, offset_s: int) -> None:
    """Until the chain's latest block time is `offset_s` past real time (the moved clock reached the
    program: its Clock sysvar follows the block times)."""
    async def past() -> bool:
        slot = (await client.get_slot(Confirmed)).value
        return (await client.get_block_time(slot)).value >= time.time() + offset_s
    await wait_for(past, timeout=10, what="the chain's clock past the retention")


async def _final(adapter: SolanaAdapter, tx: str, message_id: bytes | None = None):
    async def settled():
        status = await adapter.delivery_status(tx, message_id=message_id)
        return status if status.state is not DeliveryState.PENDING else None
    return await wait_for(settled, timeout=30, interval=0.05, what=f"{tx} final")


async def test_receipts_are_closed_by_receiver_and_relayer_rent_returns_and_replays_are_refused(
        tmp_path: Path, movable_clock: MovableClock) -> None:
    clock = movable_clock
    async with _program_on_a_localnet() as (server, client, program_id, chain, signer):
        relayer_key, receiver_key = await airdropped(client), await airdropped(client)

        async def balance(key: Keypair) -> int:
            return (await client.get_balance(key.pubkey(), Confirmed)).value

        adapter = SolanaAdapter("solana", chain, relayer_key, poll_interval=0.1, idle_poll_interval=1.0)
        receiver = SolanaAdapter("solana", chain, receiver_key)
        store = await Store.open(tmp_path / "relayer.db")
        # close_receipts_after 0: the relayer tries at once and the program refuses until the retention.
        settings = PipelineSettings(batch_size=4, batch_wait=0.05, confirm_poll=0.05, batch_close_interval=0.2,
                                    close_receipts_after=0, receipt_close_interval=0.2, receipt_scan_margin=0,
                                    receipt_too_early_retry=0.5)
        relayer = Relayer(store, {EVM: FakeChain("evm", EVM), DOMAIN: adapter}, signer, settings)
        stop = asyncio.Event()
        running = asyncio.create_task(relayer.run(stop))
        try:
            # Seven messages: six to receivers nobody holds, one to the receiver this test holds.
            others = [_message(n, bytes(Keypair().pubkey())) for n in range(6)]
            mine = _message(6, bytes(receiver_key.pubkey()))
            messages = [*others, mine]
            for m in messages:
                await relayer.observe(m, f"0xsource{m.nonce}")

            async def all_recorded() -> bool:
                return sum(n for n, _ in (await store.receipt_counts()).values()) == len(messages)
            await wait_for(all_recorded, timeout=60, what="every message delivered and its receipt recorded")
            for m in messages:
                assert (await store.get(m.message_id)).stage is Stage.CONFIRMED  # type: ignore[union-attr]
            receipts = {m.message_id: await store.receipt(m.message_id) for m in messages}
            assert all(r is not None and r.state is ReceiptState.OPEN and r.payer == bytes(relayer_key.pubkey())
                       for r in receipts.values())
            rent = {mid: r.lamports for mid, r in receipts.items()}  # type: ignore[union-attr]
            assert all(v > 0 for v in rent.values())

            async def roots_closed() -> bool:
                batches = await store._db.fetch("SELECT closed_at FROM batches")
                return bool(batches) and all(b["closed_at"] is not None for b in batches)
            await wait_for(roots_closed, timeout=30, what="the relayer to close its root accounts")

            # The relayer's closes are refused by the program: the retention has not passed.
            async def refused_as_too_early() -> bool:
                found = [await store.receipt(m.message_id) for m in others]
                return all(r is not None and r.reason.startswith("too_early") for r in found)
            await wait_for(refused_as_too_early, timeout=30, what="the program to refuse the relayer's closes")
            assert [await adapter.is_delivered(m.message_id) for m in messages] == [True] * len(messages)

            # The receiver closes its own receipt now: the rent goes to the relayer, which paid it.
            before = await balance(relayer_key)
            closed = await receiver.close_receipt(mine)
            assert closed.outcome == "closed", closed
            assert await balance(relayer_key) - before == rent[mine.message_id]
            async def closed_at_finality() -> bool:  # (is_delivered reads at `finalized`)
                return not await adapter.is_delivered(mine.message_id) and await adapter.closed_and_delivered(mine)
            await wait_for(closed_at_finality, timeout=10, what="the receiver's close to be final")
            # Someone else's receipt, before the retention: refused by the program.
            early = await receiver.close_receipt(others[0])
            assert early.outcome == "too_early", early

            # Past the retention on the chain's clock: the relayer closes all its receipts.
            before = await balance(relayer_key)
            clock.offset = RECEIPT_RETENTION_SECONDS + 5

            async def all_closed() -> bool:
                found = [await store.receipt(m.message_id) for m in messages]
                return all(r is not None and r.state is ReceiptState.CLOSED for r in found)
            await wait_for(all_closed, timeout=60, what="the relayer to close every receipt")
            rows = {m.message_id: await store.receipt(m.message_id) for m in messages}
            assert rows[mine.message_id].closed_by == "other"  # type: ignore[union-attr]
            assert {rows[m.message_id].closed_by for m in others} == {"us"}  # type: ignore[union-attr]
            transactions = {rows[m.message_id].close_tx for m in others}  # type: ignore[union-attr]
            assert len(transactions) < len(others), "several CloseReceipts per transaction"
            recovered = sum(rent[m.message_id] for m in others)
            assert await balance(relayer_key) - before == recovered - FEE * len(transactions)
            for m in messages:
                assert await adapter.receipt_infos([m]) == {m.message_id: None}
                await wait_for(lambda m=m: adapter.closed_and_delivered(m), timeout=10, what="the close final")
            # Closed, a message still reads as delivered given its envelope (its replay bit): a relayer
            # that meets it again (a fresh store, `relay retry`) confirms it rather than paying for a
            # replay the program refuses. By id alone it reads as not delivered (the receipt is gone).
            assert [await adapter.is_delivered(m.message_id, m) for m in messages] == [True] * len(messages)
            assert await adapter.is_delivered(others[0].message_id) is False
            # The SDK's status and wait_delivered read it the same way (they pass the envelope).
            assert await adapter.message_status(others[0].message_id, others[0]) is MessageStatus.DELIVERED
            record = await store.get(others[0].message_id)
            assert record is not None and await relayer.prepare(record) == pipeline.Confirmed(by="other")
            metric = relayer.metrics.registry.get_sample_value
            assert metric("tessera_receipts_closed_total", {"dst_domain": str(DOMAIN), "by": "us"}) == 6
            assert metric("tessera_receipt_lamports_recovered_total", {"dst_domain": str(DOMAIN)}) == sum(rent.values())
            # The bitmap stays (paid by the first closer: the receiver).
            bitmap = await client.get_account_info(replay_address(program_id, EVM, 0), Confirmed)
            assert bitmap.value is not None and bitmap.value.owner == program_id
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)

        try:
            # A replay of closed messages through the gateway: Deliver, and DeliverWithProof under a
            # fresh root the committee signed. Both refused by the bitmap.
            replayed = others[0]
            tx = await adapter.submit(SignedDelivery(replayed, EPOCH, signer.sign(replayed.digest(EPOCH))))
            status = await _final(adapter, tx)
            assert status.state is DeliveryState.REVERTED and "DELIVERED_AND_CLOSED" in status.detail, status
            batch = Batch.of([others[1], mine])
            sent = await adapter.submit_batch(SignedBatch(batch, EPOCH, signer.sign(batch.digest(EPOCH))), [0, 1])
            for index, tx in sent.items():
                status = await _final(adapter, tx, batch.envelopes[index].message_id)
                assert status.state is DeliveryState.REVERTED and "DELIVERED_AND_CLOSED" in status.detail, status
            assert len(sent) == 2
            # Closing twice: the receipt is gone, reported as already closed (nothing sent).
            again = await adapter.close_receipts([others[2]])
            assert again[others[2].message_id].outcome == "already_closed"
        finally:
            await store.close()
            await adapter.close()
            await receiver.close()


async def test_a_root_closed_and_revived_by_an_attacker_is_verified_again_and_its_batch_delivers(
        movable_clock: MovableClock) -> None:
    """After the retention anyone may close a root; the attacker does so and, in the same
    transaction, sends rent back to its address: the account survives, program-owned and zeroed. The
    relayer's adapter must not take it for a verified root (DeliverWithProof would fail
    ROOT_NOT_VERIFIED for ever, and a batch has no per-message signature to fall back to): it
    verifies the root again and the rest of the batch lands."""
    async with _program_on_a_localnet() as (server, client, program_id, chain, signer):
        relayer_key, attacker = await airdropped(client), await airdropped(client)
        adapter = SolanaAdapter("solana", chain, relayer_key, poll_interval=0.1, idle_poll_interval=1.0)
        try:
            batch = Batch.of([_message(n, bytes(Keypair().pubkey())) for n in range(2)])
            signed = SignedBatch(batch, EPOCH, signer.sign(batch.digest(EPOCH)))
            first = await adapter.submit_batch(signed, [0])
            assert (await _final(adapter, first[0], batch.envelopes[0].message_id)).state is DeliveryState.CONFIRMED

            movable_clock.offset = ROOT_RETENTION_SECONDS + 5

            await _clock_past(client, ROOT_RETENTION_SECONDS)
            address = root_address(program_id, batch.root)
            rent = (await client.get_minimum_balance_for_rent_exemption(ROOT_ACCOUNT_LEN)).value
            blockhash = (await client.get_latest_blockhash(Confirmed)).value.blockhash
            revive = Transaction.new_signed_with_payer(
                [close_root_ix(program_id, attacker.pubkey(), batch.root, relayer_key.pubkey()),
                 transfer(TransferParams(from_pubkey=attacker.pubkey(), to_pubkey=address, lamports=rent))],
                attacker.pubkey(), [attacker], blockhash)
            sig = (await client.send_raw_transaction(bytes(revive))).value
            await client.confirm_transaction(sig, commitment=Confirmed)
            revived = (await client.get_account_info(address, Confirmed)).value
            assert revived is not None and revived.owner == program_id and not any(bytes(revived.data))

            second = await adapter.submit_batch(signed, [1])
            status = await _final(adapter, second[1], batch.envelopes[1].message_id)
            assert status.state is DeliveryState.CONFIRMED, status
            assert RootAccount.decode(bytes((await client.get_account_info(address, Confirmed)).value.data))
        finally:
            await adapter.close()


async def test_the_relayer_defers_closes_that_would_cost_more_than_they_return(movable_clock: MovableClock) -> None:
    """The first close in a source's nonce window pays for its replay bitmap (never returned): one
    lone receipt there is not worth closing (deferred, nothing sent); once the window's due receipts
    return more than the bitmap costs, they are closed together."""
    async with _program_on_a_localnet() as (server, client, program_id, chain, signer):
        relayer_key = await airdropped(client)
        adapter = SolanaAdapter("solana", chain, relayer_key, poll_interval=0.1, idle_poll_interval=1.0)
        try:
            messages = [_message(n, bytes(Keypair().pubkey())) for n in range(6)]
            for m in messages:
                tx = await adapter.submit(SignedDelivery(m, EPOCH, signer.sign(m.digest(EPOCH))))
                assert (await _final(adapter, tx)).state is DeliveryState.CONFIRMED
            movable_clock.offset = RECEIPT_RETENTION_SECONDS + 5

            await _clock_past(client, RECEIPT_RETENTION_SECONDS)
            bitmap = replay_address(program_id, EVM, 0)
            infos = await adapter.receipt_infos(messages)
            bitmap_rent = (await client.get_minimum_balance_for_rent_exemption(REPLAY_ACCOUNT_LEN)).value
            assert infos[messages[0].message_id].lamports < bitmap_rent  # (one receipt returns less)

            lone = await adapter.close_receipts(messages[:1])
            assert lone[messages[0].message_id].outcome == "deferred", lone
            assert (await client.get_account_info(bitmap, Confirmed)).value is None
            assert await adapter.is_delivered(messages[0].message_id)  # the receipt is still there

            enough = sum(infos[m.message_id].lamports for m in messages) >= bitmap_rent
            assert enough
            together = await adapter.close_receipts(messages)
            assert {r.outcome for r in together.values()} == {"closed"}, together
            assert (await client.get_account_info(bitmap, Confirmed)).value is not None
        finally:
            await adapter.close()
