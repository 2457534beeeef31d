"""The relayer's store writes go in batches (issue #15 item 5): the step results of concurrent steps
share one transaction (group commit), a bad write fails only its own step, and a watcher's burst of
observations is recorded with its cursor in few transactions. Both engines (the `store` fixture)."""

from __future__ import annotations

import asyncio

from relay.interfaces import Observation
from relay.pipeline import Confirmed, Relayer
from relay.store import Stage, Store
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope
from tests.unit.test_pipeline import FAST, drain


def count_calls(store: Store, name: str) -> list[int]:
    """Wrap `store.<name>`; the list gets each call's number of items."""
    sizes: list[int] = []
    original = getattr(store, name)

    async def counted(items, *args, **kwargs):
        sizes.append(len(items))
        return await original(items, *args, **kwargs)

    setattr(store, name, counted)
    return sizes


async def test_concurrent_steps_share_store_transactions(store: Store) -> None:
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    envelopes = [envelope(n) for n in range(40)]
    assert await store.add_observed_many([(e, "0xsrc") for e in envelopes]) == [True] * 40
    transactions = count_calls(store, "write_steps")
    # One round: 40 prepare, 40 submit, 40 confirm steps, 16 at a time (concurrency).
    await relayer.process_due()
    assert [(await store.get(e.message_id)).stage for e in envelopes] == [Stage.CONFIRMED] * 40
    assert sum(transactions) == 120 and len(transactions) <= 15, transactions  # was: 120 transactions
    await drain(relayer)
    assert sum(transactions) == 120  # nothing left to write


async def test_a_failing_write_fails_only_its_own_step(store: Store) -> None:
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    envelopes = [envelope(n) for n in range(6)]
    await store.add_observed_many([(e, "0xsrc") for e in envelopes])
    records = [await store.get(e.message_id) for e in envelopes]
    poisoned = envelopes[3].message_id
    original = store.write_steps

    async def write_steps(writes):
        if any(w.message_id == poisoned for w in writes):
            raise RuntimeError("disk full")
        return await original(writes)

    store.write_steps = write_steps  # type: ignore[method-assign]
    results = await asyncio.gather(*(relayer.apply(r, Confirmed(by="us")) for r in records), return_exceptions=True)
    failed = [e.message_id for e, result in zip(envelopes, results) if isinstance(result, BaseException)]
    assert failed == [poisoned] and "disk full" in str(results[3])
    store.write_steps = original  # type: ignore[method-assign]
    stages = {e.message_id: (await store.get(e.message_id)).stage for e in envelopes}
    assert stages.pop(poisoned) is Stage.OBSERVED  # its write failed: nothing recorded, it is tried again
    assert set(stages.values()) == {Stage.CONFIRMED}
    metrics = relayer.metrics.render().decode()
    assert f'tessera_deliveries_total{{by="us",dst_domain="{DST}",src_domain="{SRC}"}} 5.0' in metrics


class BurstSource(FakeChain):
    """A source whose watcher yields a burst of observations at once, then nothing more."""

    def __init__(self, count: int) -> None:
        super().__init__("evm", SRC)
        self.count = count
        self.calls: list[str | None] = []

    async def watch(self, cursor):
        self.calls.append(cursor)
        start = 0 if cursor is None else int(cursor.removeprefix("c")) + 1
        for n in range(start, self.count):
            yield Observation(envelope(n), f"0x{n:04x}", n, f"c{n}")
        await asyncio.Event().wait()


async def run_until(relayer: Relayer, done) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(relayer.run(stop))
    try:
        for _ in range(500):
            if await done():
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 5)


async def test_a_watchers_burst_is_recorded_with_its_cursor_in_few_transactions(store: Store) -> None:
    source = BurstSource(120)
    relayer = Relayer(store, {SRC: source, DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    transactions = count_calls(store, "add_observed_many")

    async def all_seen() -> bool:
        return await store.get_cursor(f"watch:{SRC}") == "c119"

    await run_until(relayer, all_seen)
    assert await store.get_cursor(f"watch:{SRC}") == "c119"
    assert await store.highest_contiguous_nonce(SRC) == 119
    assert sum(transactions) == 120 and len(transactions) <= 3, transactions  # was: 240 commits
    record = await store.get(envelope(77).message_id)
    assert record is not None and record.source_tx == "0x004d"


async def test_a_watcher_that_fails_after_a_burst_resumes_after_what_was_recorded(store: Store) -> None:
    class FailsAfterBurst(BurstSource):
        async def watch(self, cursor):
            self.calls.append(cursor)
            if len(self.calls) == 1:
                for n in range(30):
                    yield Observation(envelope(n), "0xa", n, f"c{n}")
                raise ConnectionError("every endpoint is down")
            yield Observation(envelope(30), "0xb", 30, "c30")
            await asyncio.Event().wait()

    from relay import lifecycle

    source = FailsAfterBurst(0)
    relayer = Relayer(store, {SRC: source, DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    original = lifecycle.keep_running.__defaults__
    lifecycle.keep_running.__defaults__ = (0.0, 0.0)  # no backoff wait in the test
    try:
        async def resumed() -> bool:
            return await store.get(envelope(30).message_id) is not None

        await run_until(relayer, resumed)
    finally:
        lifecycle.keep_running.__defaults__ = original
    assert source.calls == [None, "c29"]  # the burst was recorded (with its cursor) before the restart
    assert await store.highest_contiguous_nonce(SRC) == 30
