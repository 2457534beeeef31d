"""Pipeline state machine against in-memory fake chains (fast). The same pipeline runs against
real anvil and the Solana localnet in tests/e2e."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from relay.backoff import Backoff
from relay.interfaces import DeliveryState, DeliveryStatus, Observation
from relay.pipeline import PipelineSettings, Relayer
from relay.store import Stage, Store
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope

FAST = PipelineSettings(backoff=Backoff(base=0.0, jitter=0.0, max_attempts=3), confirm_poll=0.0, idle_wait=0.01)


async def drain(relayer: Relayer, rounds: int = 10) -> None:
    for _ in range(rounds):
        await relayer.process_due()


async def test_message_goes_through_every_stage(store: Store) -> None:
    dst = FakeChain("solana", DST)
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: dst}, FakeCommittee(), FAST)
    env = envelope(0)
    await relayer.observe(env, "0xsrc")
    await relayer.process_due()
    record = await store.get(env.message_id)
    assert record.stage is Stage.CONFIRMED
    assert record.signature == b"\x05" * 64 and record.dest_tx == "tx0"
    assert record.signed_at and record.submitted_at and record.confirmed_at
    assert dst.sent["tx0"].envelope == env
    metrics = relayer.metrics.render().decode()
    assert 'tessera_deliveries_total{by="us",dst_domain="13375",src_domain="31337"} 1.0' in metrics


async def test_missing_signatures_retry_then_dead_then_manual_retry(store: Store) -> None:
    committee = FakeCommittee(ready=False)
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, committee, FAST)
    env = envelope(0)
    await relayer.observe(env, "0xsrc")
    await relayer.process_due()
    record = await store.get(env.message_id)
    assert record.stage is Stage.OBSERVED and record.attempts == 1
    assert record.reason == "waiting for signatures: 2/3 partials (member 3: timeout)"
    assert 'tessera_faulty_partials_total{member="4"} 1.0' in relayer.metrics.render().decode()
    await drain(relayer)
    record = await store.get(env.message_id)
    assert record.stage is Stage.DEAD and "retries exhausted" in record.reason
    assert committee.calls == 3  # bounded: no more attempts once dead
    committee.ready = True
    await store.force_retry(env.message_id)
    await drain(relayer, 2)
    assert (await store.get(env.message_id)).stage is Stage.CONFIRMED


async def test_already_delivered_by_another_relayer_is_confirmed_without_submitting(store: Store) -> None:
    env = envelope(0)
    dst = FakeChain("solana", DST, delivered={env.message_id})
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: dst}, FakeCommittee(), FAST)
    await relayer.observe(env, "0xsrc")
    await relayer.process_due()
    assert (await store.get(env.message_id)).stage is Stage.CONFIRMED
    assert dst.sent == {}


async def test_reverted_delivery_is_re_prepared_and_dropped_one_resubmitted(store: Store) -> None:
    dst = FakeChain("solana", DST)
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: dst}, FakeCommittee(), FAST)
    env = envelope(0)
    dst.status_override["tx0"] = DeliveryStatus(DeliveryState.REVERTED, "InvalidSignature")
    dst.status_override["tx1"] = DeliveryStatus(DeliveryState.DROPPED, "blockhash expired")
    await relayer.observe(env, "0xsrc")
    for _ in range(2):  # observed -> ready -> submitted(tx0) -> reverted -> observed
        await relayer.process_due()
    record = await store.get(env.message_id)
    assert record.stage in (Stage.OBSERVED, Stage.READY, Stage.SUBMITTED)
    await drain(relayer)
    record = await store.get(env.message_id)
    assert record.stage is Stage.CONFIRMED and record.dest_tx == "tx2"


async def test_unknown_destination_goes_to_dead_letter_with_a_reason(store: Store) -> None:
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC)}, FakeCommittee(), FAST)
    env = envelope(0, dst=777)
    await relayer.observe(env, "0xsrc")
    await relayer.process_due()
    record = await store.get(env.message_id)
    assert record.stage is Stage.DEAD and "destination domain 777" in record.reason


async def test_restart_resumes_from_the_store(tmp_path: Path) -> None:
    path = tmp_path / "relayer.db"
    dst = FakeChain("solana", DST)
    store = await Store.open(path)
    first = Relayer(store, {SRC: FakeChain("evm", SRC), DST: dst}, FakeCommittee(), FAST)
    env = envelope(0)
    await first.observe(env, "0xsrc")
    dst.status_override["tx0"] = DeliveryStatus(DeliveryState.PENDING, "1 confirmation")
    await first.process_due()
    assert (await store.get(env.message_id)).stage is Stage.SUBMITTED
    await store.close()  # the process dies here

    dst.status_override.clear()
    store = await Store.open(path)
    second = Relayer(store, {SRC: FakeChain("evm", SRC), DST: dst}, FakeCommittee(), FAST)
    await second.process_due()
    record = await store.get(env.message_id)
    assert record.stage is Stage.CONFIRMED and record.dest_tx == "tx0"
    assert len(dst.sent) == 1  # not submitted twice
    await store.close()


async def test_nonce_gap_is_repaired_from_the_source(store: Store) -> None:
    src = FakeChain("evm", SRC)
    src.by_nonce[1] = Observation(envelope(1), "0xmissed", 10, "c")
    relayer = Relayer(store, {SRC: src, DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    await relayer.observe(envelope(0), "0xa")
    await relayer.observe(envelope(2), "0xc")
    assert await store.missing_nonces(SRC) == [1]
    assert await relayer.repair_gaps() == 1
    assert await store.missing_nonces(SRC) == []
    assert await store.highest_contiguous_nonce(SRC) == 2


async def test_two_relayers_deliver_each_message_once(tmp_path: Path) -> None:
    delivered: set[bytes] = set()
    chains_a = {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST, delivered)}
    chains_b = {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST, delivered)}
    store_a, store_b = await Store.open(tmp_path / "a.db"), await Store.open(tmp_path / "b.db")
    a = Relayer(store_a, chains_a, FakeCommittee(), FAST, name="a")
    b = Relayer(store_b, chains_b, FakeCommittee(), FAST, name="b")
    envs = [envelope(n) for n in range(5)]
    for env in envs:
        await a.observe(env, "0x")
        await b.observe(env, "0x")
    await drain(a, 3)
    await drain(b, 3)
    for env in envs:
        assert (await store_a.get(env.message_id)).stage is Stage.CONFIRMED
        assert (await store_b.get(env.message_id)).stage is Stage.CONFIRMED
    assert len(chains_a[DST].sent) == 5 and len(chains_b[DST].sent) == 0
    await store_a.close()
    await store_b.close()


async def test_run_loop_processes_and_stops(store: Store) -> None:
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    stop = asyncio.Event()
    runner = asyncio.create_task(relayer.run(stop))
    env = envelope(0)
    await relayer.observe(env, "0x")
    for _ in range(100):
        if (await store.get(env.message_id)).stage is Stage.CONFIRMED:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert (await store.get(env.message_id)).stage is Stage.CONFIRMED


async def test_a_failing_watcher_is_restarted_from_its_cursor(store: Store) -> None:
    class FlakySource(FakeChain):
        def __init__(self) -> None:
            super().__init__("evm", SRC)
            self.calls: list[str | None] = []

        async def watch(self, cursor):
            self.calls.append(cursor)
            if len(self.calls) == 1:
                yield Observation(envelope(0), "0xa", 1, "c1")
                raise ConnectionError("every endpoint is down")
            yield Observation(envelope(1), "0xb", 2, "c2")

    from relay import lifecycle

    source = FlakySource()
    relayer = Relayer(store, {SRC: source, DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    original = lifecycle.keep_running.__defaults__
    lifecycle.keep_running.__defaults__ = (0.0, 0.0)  # no backoff wait in the test
    try:
        stop = asyncio.Event()
        runner = asyncio.create_task(relayer.run(stop))
        for _ in range(200):
            if await store.get(envelope(1).message_id):
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(runner, 5)
    finally:
        lifecycle.keep_running.__defaults__ = original
    assert source.calls == [None, "c1"]  # restarted, resuming after what it had already handled
    assert await store.get(envelope(1).message_id) is not None


async def test_a_delivery_not_final_after_the_timeout_is_resubmitted(store: Store, monkeypatch) -> None:
    dst = FakeChain("solana", DST)
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: dst}, FakeCommittee(),
                      dataclasses.replace(FAST, submitted_timeout=120.0))
    env = envelope(0)
    dst.status_override["tx0"] = DeliveryStatus(DeliveryState.PENDING, "1 confirmation")
    await relayer.observe(env, "0xsrc")
    await drain(relayer, 3)
    record = await store.get(env.message_id)
    assert record.stage is Stage.SUBMITTED and list(dst.sent) == ["tx0"]  # pending within the timeout: it waits
    later = time.time() + 121
    monkeypatch.setattr(time, "time", lambda: later)
    await drain(relayer, 3)
    record = await store.get(env.message_id)
    assert list(dst.sent) == ["tx0", "tx1"], "a delivery still pending after submitted_timeout is sent again"
    assert record.stage is Stage.CONFIRMED and record.dest_tx == "tx1"
