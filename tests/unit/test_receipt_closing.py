"""Rent that comes back (issue 15 item 4): the relayer records the Solana delivery receipts of the
messages it confirmed (store `receipts`, both engines), and closes those its own key paid for once
`close_receipts_after` passed, several per transaction; restarts lose nothing and close nothing twice.
The chain here is a fake that behaves like the program's CloseReceipt (batch.c): the receiver any
time, anyone after the retention on the chain's clock, the rent to the receipt's payer, a second
close refused. The real program: tests/e2e/test_receipt_closing.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from adapters.solana.gateway import SolanaAdapter, _close_receipts_cu
from adapters.solana.tx import PACKET_DATA_SIZE, transaction_size
from adapters.solana.program import close_receipt_ix
from relay.backoff import Backoff
from relay.config import SolanaChain
from relay.envelope import Envelope
from relay.interfaces import ReceiptClose, ReceiptCloser, ReceiptInfo
from relay.pipeline import RECEIPTS_SCANNED, PipelineSettings, Relayer
from relay.store import ReceiptState, Stage, Store
from tests.support.fakes import FakeChain, FakeCommittee, envelope

OURS, THEIRS = b"\x0a" * 32, b"\x0b" * 32
RETENTION = 86_400
RENT = 2_700_000


class FakeSolana(FakeChain):
    """A destination whose receipts behave like the program's: each holds RENT lamports paid by
    `payer`; CloseReceipt by `closer` is allowed to the receiver at any time and to anyone once
    `clock` >= delivered_at + RETENTION; the rent goes to the payer; a closed receipt is gone."""

    def __init__(self, domain: int, payer: bytes | None = OURS, closer: bytes = OURS) -> None:
        super().__init__("solana", domain)
        self.payer, self.closer = payer, closer
        self.clock = 1_000_000
        self.receipts: dict[bytes, tuple[Envelope, ReceiptInfo]] = {}
        self.balances: dict[bytes, int] = {}
        self.closes: list[bytes] = []  # every receipt a CloseReceipt closed, in order
        self.transactions = 0
        self.fail_next: Exception | None = None

    def deliver(self, env: Envelope, payer: bytes = OURS, closable: bool = True) -> None:
        self.receipts[env.message_id] = (env, ReceiptInfo(payer, self.clock, RENT, closable))
        self.delivered.add(env.message_id)

    def receipt_payer(self) -> bytes | None:
        return self.payer

    async def receipt_infos(self, envelopes):
        return {e.message_id: (self.receipts[e.message_id][1] if e.message_id in self.receipts else None)
                for e in envelopes}

    def close_one(self, message_id: bytes) -> str:
        env, info = self.receipts[message_id]
        if self.closer != env.dst_receiver and self.clock < info.delivered_at + RETENTION:
            return "too_early"
        del self.receipts[message_id]
        self.balances[info.payer] = self.balances.get(info.payer, 0) + info.lamports
        self.closes.append(message_id)
        return "closed"

    async def close_receipts(self, envelopes):
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.transactions += 1
        out: dict[bytes, ReceiptClose] = {}
        for e in envelopes:
            found = self.receipts.get(e.message_id)
            if found is None:
                out[e.message_id] = ReceiptClose("already_closed")
            elif found[1].payer != self.payer:
                out[e.message_id] = ReceiptClose("foreign")
            else:
                lamports = found[1].lamports
                outcome = self.close_one(e.message_id)
                out[e.message_id] = ReceiptClose(outcome, f"tx{self.transactions}" if outcome == "closed" else None,
                                                 lamports if outcome == "closed" else 0)
        return out


async def _confirmed(store: Store, env: Envelope) -> None:
    await store.add_observed(env, "0xsrc")
    await store.advance(env.message_id, Stage.CONFIRMED)


def _relayer(store: Store, chain: FakeSolana, after: float = RETENTION) -> Relayer:
    source = FakeChain("evm", env_src())
    settings = PipelineSettings(backoff=Backoff(base=1.0, cap=10.0, max_attempts=5), close_receipts_after=after,
                                receipt_scan_margin=0.0, receipt_close_batch=3)
    return Relayer(store, {source.domain: source, chain.domain: chain}, FakeCommittee(), settings)


def env_src() -> int:
    return envelope(0).src_domain


def _metric(relayer: Relayer, name: str, **labels: str) -> float:
    return relayer.metrics.registry.get_sample_value(name, labels) or 0.0


# -- the store --------------------------------------------------------------------------------------

async def test_store_records_receipts_once_and_hands_due_ones_to_one_replica(store: Store, db_location: str) -> None:
    confirmed, observed, elsewhere = envelope(1), envelope(2), envelope(3, dst=777)
    for env in (confirmed, elsewhere):
        await _confirmed(store, env)
    await store.add_observed(observed, "0xsrc")
    dst = confirmed.dst_domain
    assert [r.message_id for r in await store.unrecorded_confirmed([dst], 0.0)] == [confirmed.message_id]
    assert await store.unrecorded_confirmed([dst], 2e9) == []  # confirmed before `since`
    assert await store.add_receipt(confirmed.message_id, dst, confirmed.encode(), payer=OURS, delivered_at=1000.0,
                                   lamports=RENT, state=ReceiptState.OPEN)
    assert not await store.add_receipt(confirmed.message_id, dst, confirmed.encode(), payer=THEIRS,
                                       delivered_at=5.0, lamports=1, state=ReceiptState.FOREIGN)  # recorded once
    assert await store.unrecorded_confirmed([dst], 0.0) == []
    record = await store.receipt(confirmed.message_id)
    assert record is not None and (record.payer, record.state, record.lamports) == (OURS, ReceiptState.OPEN, RENT)
    assert record.decoded == confirmed

    # Due only once old enough, only for its payer; leased: another replica sharing the store gets none.
    assert await store.due_receipts(dst, OURS, after_s=100, now=1050.0) == []
    assert await store.due_receipts(dst, THEIRS, after_s=100, now=2000.0) == []
    other = await Store.open(db_location, replica="other")
    try:
        assert [r.message_id for r in await store.due_receipts(dst, OURS, after_s=100, now=2000.0)] == [confirmed.message_id]
        assert await other.due_receipts(dst, OURS, after_s=100, now=2000.0) == []
        assert await other.due_receipts(dst, OURS, after_s=100, now=2000.0 + store.lease_s + 1) != []  # lease expired
    finally:
        await other.close()

    await store.receipt_retry_later(confirmed.message_id, "too_early: not yet", 3000.0)
    assert await store.due_receipts(dst, OURS, after_s=100, now=2500.0) == []
    assert (await store.receipt(confirmed.message_id)).attempts == 1  # type: ignore[union-attr]
    assert await store.mark_receipt_closed(confirmed.message_id, by="us", tx="sig")
    assert not await store.mark_receipt_closed(confirmed.message_id, by="us", tx="sig2")  # counted once
    assert await store.due_receipts(dst, OURS, after_s=100, now=9999.0) == []
    assert (await store.receipt_counts())[ReceiptState.CLOSED] == (1, RENT)


async def test_an_old_store_gets_the_receipts_table_and_its_confirmed_messages_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = await Store.open(path)
    env = envelope(5)
    await _confirmed(store, env)
    # What a store from before receipts looks like: no table, no index.
    await store._db.execute("DROP TABLE receipts")
    await store._db.execute("DROP INDEX messages_by_confirmed")
    await store.close()

    store = await Store.open(path)
    try:
        chain = FakeSolana(env.dst_domain)
        chain.deliver(env)
        relayer = _relayer(store, chain)
        assert await relayer.record_receipts() == 1
        assert (await store.receipt(env.message_id)).state is ReceiptState.OPEN  # type: ignore[union-attr]
    finally:
        await store.close()


# -- the loop ---------------------------------------------------------------------------------------

async def test_the_relayer_closes_only_the_receipts_its_key_paid_once_old_enough(store: Store) -> None:
    chain = FakeSolana(envelope(0).dst_domain)
    ours = [envelope(n) for n in range(1, 6)]
    foreign, kept, gone = envelope(10), envelope(11), envelope(12)
    for env in ours:
        chain.deliver(env)
    chain.deliver(foreign, payer=THEIRS)
    chain.deliver(kept, closable=False)
    for env in (*ours, foreign, kept, gone):
        await _confirmed(store, env)
    relayer = _relayer(store, chain)
    assert isinstance(chain, ReceiptCloser)

    assert await relayer.record_receipts(now=2e9) == 8
    states = {m: (await store.receipt(m)).state for m in (foreign.message_id, kept.message_id, gone.message_id)}  # type: ignore[union-attr]
    assert states == {foreign.message_id: ReceiptState.FOREIGN, kept.message_id: ReceiptState.NOT_CLOSABLE,
                      gone.message_id: ReceiptState.GONE}
    assert await store.get_cursor(RECEIPTS_SCANNED) is not None
    assert await relayer.record_receipts(now=2e9) == 0  # looked at once

    # Not old enough by the relayer's setting: nothing sent.
    assert await relayer.close_due_receipts(now=chain.clock + RETENTION - 1) == 0
    assert chain.transactions == 0

    chain.clock += RETENTION
    assert await relayer.close_due_receipts(now=chain.clock) == 5
    assert sorted(chain.closes) == sorted(e.message_id for e in ours)
    assert chain.transactions == 2  # 5 receipts, 3 per call (receipt_close_batch)
    assert chain.balances == {OURS: 5 * RENT}
    assert foreign.message_id in chain.receipts and kept.message_id in chain.receipts  # never touched
    assert _metric(relayer, "tessera_receipts_closed_total", dst_domain=str(chain.domain), by="us") == 5
    assert _metric(relayer, "tessera_receipt_lamports_recovered_total", dst_domain=str(chain.domain)) == 5 * RENT
    # A second sweep sends nothing: all closed.
    assert await relayer.close_due_receipts(now=chain.clock + 10) == 0
    assert chain.transactions == 2


async def test_too_early_and_failures_wait_and_nothing_is_closed_twice_after_a_crash(store: Store) -> None:
    chain = FakeSolana(envelope(0).dst_domain)
    first, second = envelope(1), envelope(2)
    for env in (first, second):
        chain.deliver(env)
        await _confirmed(store, env)
    # The relayer is set to close after 10 s, the chain's retention is a day: refused as too early.
    relayer = _relayer(store, chain, after=10)
    await relayer.record_receipts()
    now = chain.clock + 20
    assert await relayer.close_due_receipts(now=now) == 0
    record = await store.receipt(first.message_id)
    assert record is not None and record.state is ReceiptState.OPEN and record.reason.startswith("too_early")
    assert record.next_attempt_at >= now + relayer.settings.receipt_too_early_retry
    assert await relayer.close_due_receipts(now=now + 1) == 0  # waiting: not asked again
    assert chain.transactions == 1

    # An outage: retried after the backoff.
    chain.clock += RETENTION
    now = chain.clock
    chain.fail_next = ConnectionError("rpc down")
    with pytest.raises(ConnectionError):
        await relayer.close_due_receipts(now=now)
    # (the exception reached the sweep: the leases stay until they expire, then the next sweep closes)

    # Crash after the close landed, before it was marked: the restarted relayer finds it gone and marks
    # it closed (by "other": its rent came back all the same); the chain closed it exactly once.
    chain.close_one(first.message_id)
    restarted = _relayer(store, chain, after=10)
    later = now + store.lease_s + 1
    assert await restarted.close_due_receipts(now=later) == 2
    assert chain.closes == [first.message_id, second.message_id]
    assert (await store.receipt(first.message_id)).closed_by == "other"  # type: ignore[union-attr]
    assert (await store.receipt(second.message_id)).closed_by == "us"  # type: ignore[union-attr]
    assert chain.balances == {OURS: 2 * RENT}
    assert _metric(restarted, "tessera_receipts_closed_total", dst_domain=str(chain.domain), by="other") == 1


async def test_a_relayer_without_a_key_or_a_chain_without_receipts_runs_no_receipt_loop(store: Store) -> None:
    chain = FakeSolana(envelope(0).dst_domain, payer=None)  # watch-only: no key, nothing it paid
    relayer = _relayer(store, chain)
    assert relayer._receipt_closers() == {}
    assert await relayer.record_receipts() == 0 and await relayer.close_due_receipts() == 0
    plain = Relayer(store, {1: FakeChain("evm", 1)}, FakeCommittee())
    assert plain._receipt_closers() == {}


# -- the adapter's packing --------------------------------------------------------------------------

def test_close_receipts_are_packed_as_many_as_fit_in_one_transaction() -> None:
    program = Pubkey.from_string("Tess111111111111111111111111111111111111111")
    chain = SolanaChain(kind="solana", domain=5, rpc_urls=["http://127.0.0.1:1"], program_id=str(program))
    payer = Keypair()
    adapter = SolanaAdapter("sol", chain, payer)
    assert adapter.receipt_payer() == bytes(payer.pubkey())
    assert isinstance(adapter, ReceiptCloser)
    info = ReceiptInfo(bytes(payer.pubkey()), 0, RENT, True)
    pending = [(envelope(n, src=31337, dst=5), info) for n in range(60)]
    group = adapter._receipts_that_fit(pending, payer, payer)

    def size(count: int) -> int:
        from solders.compute_budget import set_compute_unit_limit
        ixs = [close_receipt_ix(program, payer.pubkey(), e, payer.pubkey()) for e, _ in pending[:count]]
        return transaction_size([set_compute_unit_limit(_close_receipts_cu(count)), *ixs], payer.pubkey())

    assert len(group) > 10, len(group)
    assert size(len(group)) <= PACKET_DATA_SIZE < size(len(group) + 1)
    assert adapter._receipts_that_fit(pending[:1], payer, payer) == pending[:1]


def test_close_receipts_after_s_defaults_to_the_program_retention_and_refuses_nonsense() -> None:
    from pydantic import ValidationError

    from adapters.solana.program import RECEIPT_RETENTION_SECONDS
    from relay.config import RelayerSection

    assert RelayerSection().close_receipts_after_s == RECEIPT_RETENTION_SECONDS
    assert RelayerSection(close_receipts_after_s=0).close_receipts_after_s == 0
    for bad in (-1, "soon", 10**12):
        with pytest.raises(ValidationError, match="close_receipts_after_s"):
            RelayerSection(close_receipts_after_s=bad)
