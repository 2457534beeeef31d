"""Replicas sharing one relayer store: leases split the due messages, a dead replica's messages are
taken over once its leases expire, a replica that lost a lease cannot overwrite the new holder's
progress, and submissions are counted per replica. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

from relay.envelope import Envelope
from relay.protocol import MessageKind
from relay.store import RetryReason, Stage, Store

SRC, DST = 31337, 13375


def envelope(nonce: int, src: int = SRC) -> Envelope:
    return Envelope(MessageKind.DATA, nonce, src, b"\x01" * 32, DST, b"\x02" * 32, f"m{nonce}".encode())


async def replicas(db: str, *names: str, **options: object) -> list[Store]:
    return [await Store.open(db, replica=name, **options) for name in names]


async def test_two_replicas_lease_disjoint_batches(db_location: str) -> None:
    a, b = await replicas(db_location, "a", "b", lease_batch=4)
    try:
        for n in range(10):
            assert await a.add_observed(envelope(n), "0xsrc", now=100.0)
        assert not await b.add_observed(envelope(3), "0xsrc")  # known to every replica
        first = await a.due(Stage.OBSERVED, now=200.0)
        second = await b.due(Stage.OBSERVED, now=200.0)
        assert len(first) == 4 and len(second) == 4
        assert not {r.message_id for r in first} & {r.message_id for r in second}
        # b never sees a's leased messages, however often it asks.
        rest = await b.due(Stage.OBSERVED, now=201.0)
        assert len(rest) == 4 and not {r.message_id for r in rest} & {r.message_id for r in first}
        lease = await a.lease(first[0].message_id)
        assert lease.owner == "a" and lease.until == 200.0 + a.lease_s and lease.takeovers == 0
    finally:
        await a.close()
        await b.close()


async def test_concurrent_due_calls_never_hand_one_message_to_two_replicas(db_location: str) -> None:
    stores = await replicas(db_location, "a", "b", "c", lease_batch=7)
    try:
        for n in range(40):
            await stores[0].add_observed(envelope(n), "0xsrc", now=1.0)
        taken: list[bytes] = []
        for _ in range(3):
            batches = await asyncio.gather(*(s.due(Stage.OBSERVED) for s in stores))
            taken += [r.message_id for batch in batches for r in batch]
            for store, batch in zip(stores, batches):  # each replica moves its batch on
                for record in batch:
                    assert await store.advance(record.message_id, Stage.READY, signature=b"s", epoch=1)
        assert len(taken) == len(set(taken)) == 40
    finally:
        for s in stores:
            await s.close()


async def test_a_dead_replicas_messages_are_taken_over_after_its_lease_expires(db_location: str) -> None:
    a, b = await replicas(db_location, "a", "b", lease_s=30.0)
    try:
        env = envelope(0)
        await a.add_observed(env, "0xsrc", now=0.0)
        (record,) = await a.due(Stage.OBSERVED, now=10.0)
        await a.advance(env.message_id, Stage.READY, now=10.0, epoch=1, signature=b"sig")
        (ready,) = await a.due(Stage.READY, now=11.0)
        # a sends its delivery and dies before recording it. b waits for the lease...
        assert await b.due(Stage.READY, now=11.0 + 29.0) == []
        # ...then takes the message over.
        (taken,) = await b.due(Stage.READY, now=11.0 + 31.0)
        assert taken.message_id == env.message_id
        assert (await b.lease(env.message_id)).owner == "b"
        assert (await b.lease(env.message_id)).takeovers == 1
        assert await b.advance(env.message_id, Stage.SUBMITTED, now=43.0, dest_tx="0xb")
        # a comes back with a stale result: dropped, b's progress stands; its submission is still counted.
        assert not await a.advance(env.message_id, Stage.SUBMITTED, now=44.0, dest_tx="0xa")
        assert not await a.retry_later(env.message_id, RetryReason.SUBMIT_FAILED, "late", 50.0)
        assert (await b.get(env.message_id)).dest_tx == "0xb"
        subs = await b.submissions(env.message_id)
        assert [(s.replica, s.tx, s.lease_held) for s in subs] == [("b", "0xb", True), ("a", "0xa", False)]
        # Confirmation ends the lease.
        assert await b.advance(env.message_id, Stage.CONFIRMED)
        assert (await b.lease(env.message_id)).owner is None
    finally:
        await a.close()
        await b.close()


async def test_a_replica_keeps_its_message_between_steps(db_location: str) -> None:
    a, b = await replicas(db_location, "a", "b", lease_s=5.0)
    try:
        env = envelope(0)
        await a.add_observed(env, "0xsrc", now=0.0)
        await a.due(Stage.OBSERVED, now=1.0)
        now = time.time()
        await a.retry_later(env.message_id, RetryReason.WAITING_FOR_SIGNATURES, "1/3", now + 20.0, now=now)
        # Due again at +20 s: still a's until 5 s later, and a's next_due_at says so.
        assert await b.due(Stage.OBSERVED, now=now + 21.0) == []
        assert await b.next_due_at() == now + 25.0
        assert await a.next_due_at() == now + 20.0
        assert len(await a.due(Stage.OBSERVED, now=now + 21.0)) == 1
    finally:
        await a.close()
        await b.close()


async def test_closing_a_replica_hands_its_leases_back(db_location: str) -> None:
    a, b = await replicas(db_location, "a", "b")
    try:
        await a.add_observed(envelope(0), "0xsrc", now=0.0)
        assert len(await a.due(Stage.OBSERVED)) == 1
        assert await b.due(Stage.OBSERVED) == []
        await a.close()
        assert len(await b.due(Stage.OBSERVED)) == 1
    finally:
        await b.close()


async def test_dead_letters_and_manual_retry_release_the_lease(db_location: str) -> None:
    a, b = await replicas(db_location, "a", "b")
    try:
        env = envelope(0)
        await a.add_observed(env, "0xsrc")
        await a.due(Stage.OBSERVED)
        await a.retry_later(env.message_id, RetryReason.REFUSED_BY_MEMBERS, "no", float("inf"), stage=Stage.DEAD)
        assert (await a.lease(env.message_id)).owner is None
        revived = await b.force_retry(env.message_id)
        assert revived.stage is Stage.OBSERVED
        assert len(await b.due(Stage.OBSERVED)) == 1
    finally:
        await a.close()
        await b.close()


async def test_chain_identity_is_kept_and_forgetting_a_chain_drops_its_state(db_location: str) -> None:
    store = await Store.open(db_location)
    try:
        assert await store.chain_identity(SRC) is None
        await store.set_chain_identity(SRC, "evm:31337:0xaa")
        await store.set_chain_identity(DST, "solana:genesis")
        await store.set_cursor(f"watch:{SRC}", "133")
        await store.set_cursor(f"watch:{DST}", "sig")
        for n in range(3):
            await store.add_observed(envelope(n), "0xsrc")
        await store.add_observed(envelope(0, src=DST), "sig")
        assert await store.chain_identity(SRC) == "evm:31337:0xaa"
        assert await store.forget_chain(SRC) == 3
        assert await store.chain_identity(SRC) is None and await store.get_cursor(f"watch:{SRC}") is None
        assert await store.chain_identity(DST) == "solana:genesis" and await store.get_cursor(f"watch:{DST}") == "sig"
        assert await store.get_by_nonce(DST, 0) is not None
        assert await store.add_observed(envelope(0), "0xnew")  # the new chain's nonce 0 is new again
    finally:
        await store.close()


async def test_find_prefix_and_listing_on_both_engines(db_location: str) -> None:
    store = await Store.open(db_location)
    try:
        env = envelope(7)
        await store.add_observed(env, "0xsrc")
        found = await store.find_prefix("0x" + env.message_id.hex()[:10].upper())
        assert [r.message_id for r in found] == [env.message_id]
        await store.advance(env.message_id, Stage.CONFIRMED)
        assert [r.stage for r in await store.listing()] == [Stage.CONFIRMED]
        assert await store.counts() == {(Stage.CONFIRMED, None): 1}
        assert await store.missing_nonces(SRC) == list(range(7))
    finally:
        await store.close()
