"""Batched store writes (issue #15 item 5): many messages' step results in one transaction
(`Store.write_steps`), observations with their watch cursor in one transaction
(`Store.add_observed_many`). Both are all-or-nothing: an error part way leaves nothing half-written.
Every test runs on SQLite and PostgreSQL (the `store` / `db_location` fixtures)."""

from __future__ import annotations

import math

import pytest

from relay.store import RetryReason, Stage, StepWrite, Store
from tests.support.fakes import envelope

CURSOR = "watch:31337"


async def observed(store: Store, count: int, start: int = 0) -> list[bytes]:
    envelopes = [envelope(n) for n in range(start, start + count)]
    assert await store.add_observed_many([(e, f"0xsrc{e.nonce}") for e in envelopes]) == [True] * count
    return [e.message_id for e in envelopes]


async def test_many_messages_go_through_every_stage_one_transaction_per_step(store: Store) -> None:
    ids = await observed(store, 40)
    assert await store.write_steps([store.advance_write(m, Stage.READY, now=10.0, epoch=3, signature=b"\x05" * 64)
                                    for m in ids]) == [True] * 40
    sent = [store.advance_write(m, Stage.SUBMITTED, now=11.0, dest_tx=f"tx{i}", next_attempt_at=11.5)
            for i, m in enumerate(ids)]
    assert await store.write_steps(sent) == [True] * 40
    waits = [store.postpone_write(m, RetryReason.AWAITING_FINALITY, "pending", 12.0, now=11.6) for m in ids]
    assert await store.write_steps(waits) == [True] * 40
    assert await store.write_steps([store.advance_write(m, Stage.CONFIRMED, now=13.0) for m in ids]) == [True] * 40
    for i, m in enumerate(ids):
        record = await store.get(m)
        assert record is not None
        assert (record.stage, record.epoch, record.signature, record.dest_tx) == (Stage.CONFIRMED, 3, b"\x05" * 64,
                                                                                 f"tx{i}")
        assert (record.signed_at, record.submitted_at, record.confirmed_at) == (10.0, 11.0, 13.0)
        assert record.reason == "" and record.reason_code is None and record.attempts == 0
        lease = await store.lease(m)
        assert lease is not None and lease.owner is None  # a terminal stage gives the lease up
    subs = await store.submissions()
    assert sorted(s.tx for s in subs) == sorted(f"tx{i}" for i in range(40))
    assert all(s.lease_held and s.replica == store.replica for s in subs)


async def test_retries_count_attempts_and_the_dead_letter_gives_the_lease_up(store: Store) -> None:
    ids = await observed(store, 6)
    assert len(await store.due(Stage.OBSERVED, now=1e12)) == 6  # leased to this replica
    writes = [store.retry_write(m, RetryReason.WAITING_FOR_SIGNATURES, "2/3", 50.0, now=40.0) for m in ids[:3]]
    writes += [store.retry_write(m, RetryReason.NO_ROUTE, "no adapter", math.inf, stage=Stage.DEAD, now=40.0)
               for m in ids[3:]]
    assert await store.write_steps(writes) == [True] * 6
    for m in ids[:3]:
        record, lease = await store.get(m), await store.lease(m)
        assert record.stage is Stage.OBSERVED and record.attempts == 1 and record.next_attempt_at == 50.0
        assert record.reason_code is RetryReason.WAITING_FOR_SIGNATURES
        assert lease.owner == store.replica and lease.until == 50.0 + store.lease_s  # kept past the next attempt
    for m in ids[3:]:
        record, lease = await store.get(m), await store.lease(m)
        assert record.stage is Stage.DEAD and record.attempts == 1 and lease.owner is None


async def test_messages_another_replica_holds_are_left_alone_the_others_written(db_location: str) -> None:
    mine = await Store.open(db_location, replica="r1", lease_batch=3)
    other = await Store.open(db_location, replica="r2")
    try:
        ids = await observed(mine, 6)
        taken_by_me = {r.message_id for r in await mine.due(Stage.OBSERVED, now=1e12)}
        taken_by_other = {r.message_id for r in await other.due(Stage.OBSERVED, now=1e12)}
        assert len(taken_by_me) == 3 and taken_by_other == set(ids) - taken_by_me
        writes = [mine.advance_write(m, Stage.SUBMITTED, dest_tx=f"tx-{m.hex()[:6]}") for m in ids]
        held = await mine.write_steps(writes)
        assert held == [m in taken_by_me for m in ids]
        for m in ids:
            record = await mine.get(m)
            assert record.stage is (Stage.SUBMITTED if m in taken_by_me else Stage.OBSERVED)
        # Every transaction sent is recorded, with whether the lease was held when it was.
        assert {s.message_id: s.lease_held for s in await mine.submissions()} == {m: m in taken_by_me for m in ids}
    finally:
        await mine.close()
        await other.close()


async def test_an_error_part_way_through_a_batched_write_leaves_nothing_written(store: Store) -> None:
    ids = await observed(store, 10)
    before = {m: await store.get(m) for m in ids}
    writes = [store.advance_write(m, Stage.SUBMITTED, now=5.0, dest_tx=f"tx{i}") for i, m in enumerate(ids[:9])]
    # The last write's shape runs after the good ones and fails (no such column): all roll back.
    writes.append(StepWrite(ids[9], {"no_such_column": 1}))
    with pytest.raises(Exception) as raised:
        await store.write_steps(writes)
    assert "no_such_column" in str(raised.value)
    for m in ids:
        assert await store.get(m) == before[m]  # not one message moved on
    assert await store.submissions() == []  # and no submission was recorded
    # The store is usable afterwards (the transaction was rolled back, not left open).
    assert await store.write_steps(writes[:9]) == [True] * 9
    assert {(await store.get(m)).stage for m in ids[:9]} == {Stage.SUBMITTED}


async def test_observations_and_their_cursor_are_one_transaction(store: Store) -> None:
    envelopes = [envelope(n) for n in range(5)]
    fresh = await store.add_observed_many([(e, "0xa") for e in envelopes[:3]], cursor=(CURSOR, "block:3"))
    assert fresh == [True, True, True] and await store.get_cursor(CURSOR) == "block:3"
    # Known ones are not new (also twice in one call); the cursor moves with the new ones.
    again = [(envelopes[2], "0xa"), (envelopes[3], "0xb"), (envelopes[3], "0xb"), (envelopes[4], "0xc")]
    assert await store.add_observed_many(again, cursor=(CURSOR, "block:5")) == [False, True, False, True]
    assert await store.get_cursor(CURSOR) == "block:5"
    record = await store.get(envelopes[4].message_id)
    assert record.stage is Stage.OBSERVED and record.source_tx == "0xc" and record.decoded == envelopes[4]
    assert await store.highest_contiguous_nonce(envelopes[0].src_domain) == 4


async def test_a_failed_cursor_write_drops_the_observations_with_it(store: Store) -> None:
    await store.set_cursor(CURSOR, "block:0")
    envelopes = [envelope(n) for n in range(250)]  # more than one multi-row INSERT
    with pytest.raises(Exception):
        await store.add_observed_many([(e, "0xa") for e in envelopes], cursor=(CURSOR, None))  # type: ignore[arg-type]
    assert await store.get_cursor(CURSOR) == "block:0"
    assert [await store.get(e.message_id) for e in envelopes] == [None] * 250  # re-observed after a restart
    assert await store.add_observed_many([(e, "0xa") for e in envelopes], cursor=(CURSOR, "block:9")) == [True] * 250
    assert await store.get_cursor(CURSOR) == "block:9"


async def test_batch_members_are_written_together(store: Store) -> None:
    ids = await observed(store, 300)
    proofs = [[bytes([i % 256]) * 32, b"\x09" * 32] for i in range(300)]
    await store.add_batch(b"\x0a" * 32, 31337, 13375, 1, b"\x07" * 64, ids, proofs)
    members = await store.batch_members(ids)
    assert len(members) == 300
    assert all(members[m].index == i and list(members[m].proof) == proofs[i] for i, m in enumerate(ids))


async def test_a_message_written_twice_in_one_batch_ends_as_the_later_write_says(store: Store) -> None:
    ids = await observed(store, 3)
    # Grouped by statement shape, the CONFIRMED writes (ids[1]'s comes first) would run before the
    # SUBMITTED one and leave ids[0] submitted.
    writes = [store.advance_write(ids[1], Stage.CONFIRMED, now=1.0),
              store.advance_write(ids[0], Stage.SUBMITTED, now=1.0, dest_tx="tx0"),
              store.advance_write(ids[0], Stage.CONFIRMED, now=2.0),
              store.retry_write(ids[2], RetryReason.STEP_FAILED, "boom", 9.0, now=2.0)]
    assert await store.write_steps(writes) == [True] * 4
    first = await store.get(ids[0])
    assert first.stage is Stage.CONFIRMED and first.confirmed_at == 2.0 and first.dest_tx == "tx0"
    assert (await store.get(ids[1])).stage is Stage.CONFIRMED
    assert (await store.get(ids[2])).attempts == 1


async def test_receipts_are_recorded_together_once(store: Store) -> None:
    from relay.store import NewReceipt, ReceiptState

    envelopes = [envelope(n) for n in range(230)]  # more than one multi-row INSERT
    found = [NewReceipt(e.message_id, 13375, e.encode(), b"\x03" * 32, 1000.0 + e.nonce, 2_000_000, ReceiptState.OPEN)
             for e in envelopes]
    assert await store.add_receipts(found[:10]) == {e.message_id for e in envelopes[:10]}
    # Recorded before (by us or another replica): not again, and not counted.
    assert await store.add_receipts(found) == {e.message_id for e in envelopes[10:]}
    receipt = await store.receipt(envelopes[42].message_id)
    assert receipt is not None and receipt.state is ReceiptState.OPEN and receipt.delivered_at == 1042.0
    assert await store.receipt_counts() == {ReceiptState.OPEN: (230, 230 * 2_000_000)}
    assert await store.add_receipts([]) == set()
