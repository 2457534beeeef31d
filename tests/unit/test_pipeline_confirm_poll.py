"""The confirmation poll: a delivery still waiting for finality is looked at again after
confirm_poll_few while few are due for a check in a round (a lone message's finality is not seen up to
confirm_poll late), after confirm_poll when more than `concurrency` are (every check is a store write)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from relay.backoff import Backoff
from relay.interfaces import DeliveryState, DeliveryStatus
from relay.pipeline import PipelineSettings, Relayer, RetryReason, Signed, Submitted
from relay.store import Stage, Store
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope

SETTINGS = PipelineSettings(backoff=Backoff(base=10.0, jitter=0.0, max_attempts=3), confirm_poll=0.5,
                            confirm_poll_few=0.05, concurrency=4)


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "relayer.db")
    yield s
    await s.close()


async def _pending_deliveries(store: Store, relayer: Relayer, destination: FakeChain, count: int) -> list[bytes]:
    """`count` messages submitted, not final yet, due for a confirmation check now."""
    ids = []
    for nonce in range(count):
        env = envelope(nonce)
        await store.add_observed(env, "0xsrc")
        record = await store.get(env.message_id)
        await relayer.apply(record, Signed(epoch=1, signature=b"\x07" * 64))
        tx = f"0xtx{nonce}"
        destination.status_override[tx] = DeliveryStatus(DeliveryState.PENDING, "mined, not final yet")
        await relayer.apply(await store.get(env.message_id), Submitted(tx=tx, chain=destination.name))
        await store.postpone(env.message_id, RetryReason.AWAITING_FINALITY, "pending", 0.0)  # due now
        ids.append(env.message_id)
    return ids


@pytest.mark.parametrize(("count", "poll"), [(1, 0.05), (4, 0.05), (5, 0.5), (12, 0.5)])
async def test_the_next_check_comes_sooner_while_few_are_due(store: Store, count: int, poll: float) -> None:
    destination = FakeChain("solana", DST)
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: destination}, FakeCommittee(), SETTINGS)
    ids = await _pending_deliveries(store, relayer, destination, count)
    before = time.time()
    assert await relayer.process_due() == count
    after = time.time()
    for message_id in ids:
        record = await store.get(message_id)
        assert record.stage is Stage.SUBMITTED and record.reason_code is RetryReason.AWAITING_FINALITY
        assert record.attempts == 0  # waiting for finality is not failing
        assert before + poll <= record.next_attempt_at <= after + poll


async def test_the_short_poll_never_exceeds_confirm_poll(store: Store) -> None:
    settings = PipelineSettings(confirm_poll=0.0, confirm_poll_few=0.05)  # tests that poll at once keep doing so
    destination = FakeChain("solana", DST)
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: destination}, FakeCommittee(), settings)
    (message_id,) = await _pending_deliveries(store, relayer, destination, 1)
    after_setup = time.time()
    await relayer.process_due()
    assert (await store.get(message_id)).next_attempt_at <= time.time()
    assert (await store.get(message_id)).next_attempt_at >= after_setup
