"""Pipeline outcomes: each step returns a value, Relayer.apply is the one place that acts on it
(store, metrics, logs); retry reasons are a closed enum that round-trips through the store and shows
in `relay status` and /metrics; a store from before reason codes still opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from relay.backoff import Backoff
from relay.pipeline import (
    Confirmed,
    Drop,
    PipelineSettings,
    Postpone,
    Relayer,
    Retry,
    RetryReason,
    Signed,
    Submitted,
)
from relay.status import show_status
from relay.store import _SCHEMA, Stage, Store
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope

SETTINGS = PipelineSettings(backoff=Backoff(base=10.0, jitter=0.0, max_attempts=3), confirm_poll=0.5)


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "relayer.db")
    yield s
    await s.close()


def relayer_for(store: Store) -> Relayer:
    return Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(), SETTINGS)


def metric(relayer: Relayer, name: str, **labels: str) -> float:
    return relayer.metrics.registry.get_sample_value(name, labels) or 0.0


async def observed(store: Store, nonce: int = 0):
    env = envelope(nonce)
    await store.add_observed(env, "0xsrc")
    return await store.get(env.message_id)


async def test_apply_moves_a_message_through_every_stage(store: Store) -> None:
    relayer = relayer_for(store)
    record = await observed(store)
    await relayer.apply(record, Signed(epoch=3, signature=b"\x07" * 64, faulty={2: "invalid partial signature"}))
    record = await store.get(record.message_id)
    assert record.stage is Stage.READY and record.epoch == 3 and record.signature == b"\x07" * 64
    assert metric(relayer, "tessera_faulty_partials_total", member="2") == 1
    await relayer.apply(record, Submitted(tx="0xdest", chain="solana"))
    record = await store.get(record.message_id)
    assert record.stage is Stage.SUBMITTED and record.dest_tx == "0xdest" and record.submitted_at
    await relayer.apply(record, Confirmed(by="us"))
    record = await store.get(record.message_id)
    assert record.stage is Stage.CONFIRMED and record.reason_code is None and record.reason == ""
    assert metric(relayer, "tessera_deliveries_total", src_domain=str(SRC), dst_domain=str(DST), by="us") == 1


async def test_apply_retry_counts_an_attempt_postpone_does_not(store: Store) -> None:
    relayer = relayer_for(store)
    record = await observed(store)
    await relayer.apply(record, Postpone(RetryReason.AWAITING_FINALITY, "pending: 1 confirmation", 0.5))
    record = await store.get(record.message_id)
    assert record.attempts == 0 and record.reason_code is RetryReason.AWAITING_FINALITY
    assert record.reason == "pending: 1 confirmation"
    await relayer.apply(record, Retry(RetryReason.DELIVERY_DROPPED, "delivery dropped: gone", stage=Stage.READY))
    record = await store.get(record.message_id)
    assert record.attempts == 1 and record.stage is Stage.READY
    assert record.reason_code is RetryReason.DELIVERY_DROPPED and record.reason == "delivery dropped: gone"
    assert metric(relayer, "tessera_retries_total", stage="ready", reason="delivery_dropped") == 1


async def test_apply_sends_a_message_to_the_dead_letter_with_its_reason(store: Store) -> None:
    relayer = relayer_for(store)
    record = await observed(store)
    for _ in range(2):
        await relayer.apply(record, Retry(RetryReason.WAITING_FOR_SIGNATURES, "waiting for signatures: 1/2"))
        record = await store.get(record.message_id)
    assert record.stage is Stage.OBSERVED and record.attempts == 2
    await relayer.apply(record, Retry(RetryReason.WAITING_FOR_SIGNATURES, "waiting for signatures: 1/2"))
    record = await store.get(record.message_id)
    assert record.stage is Stage.DEAD and record.reason_code is RetryReason.WAITING_FOR_SIGNATURES
    assert record.reason == "retries exhausted (3); last: waiting for signatures: 1/2"
    assert metric(relayer, "tessera_dead_letters_total", reason="waiting_for_signatures") == 1

    other = await observed(store, 1)
    await relayer.apply(other, Drop(RetryReason.NO_ROUTE, "no adapter for destination domain 9"))
    other = await store.get(other.message_id)
    assert other.stage is Stage.DEAD and other.attempts == 1 and other.reason_code is RetryReason.NO_ROUTE


async def test_steps_return_outcomes_and_errors_become_reasons(store: Store) -> None:
    relayer = relayer_for(store)
    record = await observed(store)
    assert await relayer.prepare(record) == Signed(epoch=1, signature=b"\x05" * 64)
    relayer.signatures = FakeCommittee(ready=False)
    waiting = await relayer.prepare(record)
    assert isinstance(waiting, Retry) and waiting.reason is RetryReason.WAITING_FOR_SIGNATURES
    await relayer.apply(record, Signed(epoch=1, signature=b"\x05" * 64))
    ready = await store.get(record.message_id)
    relayer.adapters[DST].submit_error = ConnectionError("connection refused")
    failed = await relayer.submit(ready)
    assert failed == Retry(RetryReason.SUBMIT_FAILED, "ConnectionError: connection refused")

    async def broken(record):
        raise RuntimeError("a bug")

    await relayer._step(broken, ready)
    assert (await store.get(record.message_id)).reason_code is RetryReason.STEP_FAILED


@pytest.mark.parametrize("reason", list(RetryReason))
async def test_every_reason_round_trips_and_shows_in_status_and_metrics(tmp_path: Path, reason: RetryReason) -> None:
    path = tmp_path / "relayer.db"
    store = await Store.open(path)
    relayer = relayer_for(store)
    record = await observed(store)
    await relayer.apply(record, Retry(reason, f"detail of {reason.value}"))
    await store.close()

    store = await Store.open(path)  # what a restarted relayer reads
    try:
        again = await store.get(record.message_id)
        assert again.reason_code is reason and again.reason == f"detail of {reason.value}"
        relayer = relayer_for(store)
        await relayer.metrics_refresh()
        assert metric(relayer, "tessera_messages", stage="observed", reason=reason.value) == 1
    finally:
        await store.close()
    table = await show_status(path, None, 10)
    assert f"why: {reason.value}=1" in table and f" {reason.value} " in table
    detail = await show_status(path, record.message_id.hex()[:12], 10)
    assert f"reason_code: {reason.value}" in detail


async def test_a_store_from_before_reason_codes_opens_and_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_schema = _SCHEMA.replace("    reason_code     TEXT NOT NULL DEFAULT '',\n", "")
    assert "reason_code" not in old_schema
    env = envelope(0)
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema)
        conn.execute(
            "INSERT INTO messages (message_id, src_domain, nonce, dst_domain, kind, envelope, source_tx, stage, reason, "
            "attempts, next_attempt_at, observed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'dead', ?, 12, ?, 1, 1)",
            (env.message_id, env.src_domain, env.nonce, env.dst_domain, env.kind, env.encode(), "0xsrc",
             "retries exhausted (12); last: waiting for signatures: 1/3 valid partials", float("inf")))
    store = await Store.open(path)
    try:
        record = await store.get(env.message_id)
        assert record.stage is Stage.DEAD and record.reason_code is None and record.reason.startswith("retries")
        assert await store.counts() == {(Stage.DEAD, None): 1}
        revived = await store.force_retry(env.message_id)
        assert revived.stage is Stage.OBSERVED and revived.reason_code is RetryReason.MANUAL_RETRY
    finally:
        await store.close()
    assert "observed=1" in await show_status(path, None, 10)
