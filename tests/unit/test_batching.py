"""The relayer's batching against in-memory fake chains: lanes, the size and wait caps, the root
signature, per-message outcomes through Relayer.apply, fallback to single messages, resuming a
half-delivered batch after a restart, and closing finished roots. Real chains: tests/e2e/test_batching.py."""

from __future__ import annotations

import dataclasses

import time
from pathlib import Path

from relay.backoff import Backoff
from relay.batch import Batch, verify_proof
from relay.interfaces import DeliveryState, DeliveryStatus, SignedBatch
from relay.pipeline import Collected, PipelineSettings, Relayer
from relay.store import RetryReason, Stage, Store
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope

ROOT_SIG = b"\x07" * 64


def settings(size: int = 32, wait: float = 0.0) -> PipelineSettings:
    return PipelineSettings(backoff=Backoff(base=0.0, jitter=0.0, max_attempts=3), confirm_poll=0.0, idle_wait=0.01,
                            batch_size=size, batch_wait=wait)


class RootCommittee(FakeCommittee):
    """Signs roots when `roots_ready`, every single message always (FakeCommittee)."""

    def __init__(self, roots_ready: bool = True) -> None:
        super().__init__()
        self.roots_ready = roots_ready
        self.roots: list[list[bytes]] = []

    async def collect_root(self, batch, source_txs):
        self.roots.append(batch.message_ids)
        assert len(source_txs) == len(batch.envelopes)
        if not self.roots_ready:
            return Collected(signature=None, epoch=1, reason="0/3 valid partials (member 1: HTTP 404)")
        return Collected(signature=ROOT_SIG, epoch=1)


class BatchChain(FakeChain):
    """A gateway that takes batches: one transaction per submit_batch (like EVM deliverBatch) that
    skips messages delivered before; `failing` messages' handlers fail (EVM status 2)."""

    def __init__(self, name: str, domain: int) -> None:
        super().__init__(name, domain)
        self.batches: list[tuple[SignedBatch, list[int]]] = []
        self.in_tx: dict[str, dict[bytes, str]] = {}  # tx -> message id -> "handled" | "failed"
        self.failing: set[bytes] = set()
        self.closed: list[bytes] = []
        self.retried: list[bytes] = []
        self.not_final: set[str] = set()  # transactions that read as PENDING
        self.status_calls: list[tuple[str, bytes | None]] = []  # every delivery_status question

    async def submit_batch(self, batch: SignedBatch, indices: list[int]) -> dict[int, str]:
        assert batch.signature == ROOT_SIG
        for i in indices:  # each proof leads to the signed root
            assert verify_proof(batch.batch.root, batch.batch.message_ids[i], i, len(batch.batch.envelopes),
                                batch.batch.proof(i))
        tx = f"batch{len(self.batches)}"
        self.batches.append((batch, list(indices)))
        outcome = {}
        for e in batch.batch.envelopes:
            if e.message_id not in self.delivered and e.message_id not in self.failing:
                outcome[e.message_id] = "handled"
            elif e.message_id in self.failing and e.message_id not in self.delivered:
                outcome[e.message_id] = "failed"
        self.in_tx[tx] = outcome
        self.delivered.update(m for m, o in outcome.items() if o == "handled")
        return {i: tx for i in indices}

    async def delivery_status(self, tx_id, message_id=None):
        self.status_calls.append((tx_id, message_id))
        if tx_id in self.not_final:
            return DeliveryStatus(DeliveryState.PENDING, f"{tx_id} not final yet")
        if message_id is None:
            if tx_id not in self.in_tx:
                return await super().delivery_status(tx_id)
            # The whole transaction, as the EVM adapter reads it: final; a failed handler in it shows.
            failed = "failed" in self.in_tx[tx_id].values()
            return DeliveryStatus(DeliveryState.HANDLER_FAILED if failed else DeliveryState.CONFIRMED, f"{tx_id} final")
        outcome = self.in_tx[tx_id].get(message_id)
        if outcome == "handled":
            return DeliveryStatus(DeliveryState.CONFIRMED, f"{tx_id} final")
        if outcome == "failed":
            return DeliveryStatus(DeliveryState.HANDLER_FAILED, "the receiver's handler failed")
        return DeliveryStatus(DeliveryState.DROPPED, f"{tx_id} did not deliver it: delivered before")

    async def retry_failed(self, envelope):
        self.failing.discard(envelope.message_id)
        self.retried.append(envelope.message_id)
        self.delivered.add(envelope.message_id)
        tx = f"retry{len(self.retried)}"
        self.in_tx[tx] = {envelope.message_id: "handled"}
        return tx

    async def close_batch(self, batch: SignedBatch) -> None:
        self.closed.append(batch.batch.root)


async def drain(relayer: Relayer, rounds: int = 6) -> None:
    for _ in range(rounds):
        await relayer.process_due()


async def observe(relayer: Relayer, envelopes) -> None:
    for e in envelopes:
        await relayer.observe(e, f"0xsrc{e.nonce}")


async def test_a_lane_burst_is_one_root_one_batch_transaction_then_closed(store: Store) -> None:
    dst = BatchChain("evm", DST)
    committee = RootCommittee()
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, committee, settings())
    envelopes = [envelope(n) for n in range(5)]
    await observe(relayer, envelopes)
    await drain(relayer)
    assert committee.roots == [[e.message_id for e in envelopes]] and committee.calls == 0
    assert len(dst.batches) == 1 and dst.batches[0][1] == [0, 1, 2, 3, 4] and not dst.sent
    for i, e in enumerate(envelopes):
        record = await store.get(e.message_id)
        assert record.stage is Stage.CONFIRMED and record.dest_tx == "batch0" and record.signature == ROOT_SIG
        member = (await store.batch_members([e.message_id]))[e.message_id]
        assert member.index == i and verify_proof(member.root, e.message_id, i, 5, list(member.proof))
    metrics = relayer.metrics.render().decode()
    assert f'tessera_deliveries_total{{by="us",dst_domain="{DST}",src_domain="{SRC}"}} 5.0' in metrics
    assert await relayer.close_finished_batches() == 1
    assert dst.closed == [dst.batches[0][0].batch.root]
    assert await relayer.close_finished_batches() == 0  # closed once


async def test_the_size_cap_cuts_a_lane_and_lanes_never_mix(store: Store) -> None:
    dst, src = BatchChain("evm", DST), BatchChain("solana", SRC)
    committee = RootCommittee()
    relayer = Relayer(store, {SRC: src, DST: dst}, committee, settings(size=8))
    there = [envelope(n) for n in range(19)]
    back = [envelope(n, src=DST, dst=SRC) for n in range(3)]
    await observe(relayer, [*there, *back])
    await drain(relayer)
    assert sorted(len(r) for r in committee.roots) == [3, 3, 8, 8]
    for root in committee.roots:
        lanes = {(e.src_domain, e.dst_domain) for e in [*there, *back] if e.message_id in root}
        assert len(lanes) == 1
    assert all([(await store.get(e.message_id)).stage is Stage.CONFIRMED for e in [*there, *back]])


async def test_a_lone_message_waits_at_most_the_wait_cap_then_goes_singly(store: Store) -> None:
    dst = BatchChain("evm", DST)
    committee = RootCommittee()
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, committee, settings(wait=0.3))
    first, env = envelope(0), envelope(1)
    # On a quiet lane (nothing observed on it within the wait) a lone message goes at once: no company
    # is on its way, the wait would only be latency.
    await observe(relayer, [first])
    await relayer.process_due()
    assert (await store.get(first.message_id)).stage is Stage.CONFIRMED
    assert committee.calls == 1 and not committee.roots and relayer._held_until is None
    # Right after it the lane has traffic: the next lone message is held for company, at most the cap.
    await observe(relayer, [env])
    await relayer.process_due()
    assert (await store.get(env.message_id)).stage is Stage.OBSERVED  # held for company
    assert committee.calls == 1 and not committee.roots
    assert relayer._held_until is not None and relayer._held_until <= time.time() + 0.3
    time.sleep(0.31)
    await drain(relayer, 3)
    record = await store.get(env.message_id)
    assert record.stage is Stage.CONFIRMED and record.dest_tx == "tx1"  # the single path
    assert committee.calls == 2 and not committee.roots and not dst.batches


async def test_without_a_root_signature_every_message_goes_the_single_way(store: Store) -> None:
    dst = BatchChain("evm", DST)
    committee = RootCommittee(roots_ready=False)
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, committee, settings())
    envelopes = [envelope(n) for n in range(4)]
    await observe(relayer, envelopes)
    await drain(relayer)
    assert len(committee.roots) == 1 and committee.calls == 4
    assert not dst.batches and len(dst.sent) == 4
    for e in envelopes:
        record = await store.get(e.message_id)
        assert record.stage is Stage.CONFIRMED and record.signature == b"\x05" * 64
        assert not await store.batch_members([e.message_id])


async def test_refusals_in_a_batch_end_as_they_would_singly(store: Store) -> None:
    """A message delivered before by another relayer is confirmed 'by other'; one whose handler failed
    is re-run through retry_failed: the same outcomes as on the single path."""
    dst = BatchChain("evm", DST)
    committee = RootCommittee()
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, committee, settings())
    envelopes = [envelope(n) for n in range(4)]
    dst.delivered.add(envelopes[1].message_id)  # another relayer won this one after we observed it
    dst.failing.add(envelopes[2].message_id)
    await observe(relayer, envelopes)
    await drain(relayer)
    # The one delivered before is confirmed without being put in a root (no pairing paid for it).
    assert committee.roots == [[envelopes[i].message_id for i in (0, 2, 3)]]
    assert all([(await store.get(e.message_id)).stage is Stage.CONFIRMED for e in envelopes])
    assert dst.retried == [envelopes[2].message_id]
    assert (await store.get(envelopes[2].message_id)).dest_tx == "retry1"
    metrics = relayer.metrics.render().decode()
    assert f'tessera_deliveries_total{{by="other",dst_domain="{DST}",src_domain="{SRC}"}} 1.0' in metrics
    assert f'tessera_deliveries_total{{by="us",dst_domain="{DST}",src_domain="{SRC}"}} 3.0' in metrics
    assert 'reason="handler_failed"' in metrics


async def test_a_restarted_relayer_resumes_a_half_delivered_batch_on_the_same_root(tmp_path: Path) -> None:
    db = tmp_path / "relayer.db"
    dst = BatchChain("solana", DST)
    envelopes = [envelope(n) for n in range(5)]
    store = await Store.open(db, replica="r")
    committee = RootCommittee()
    unreachable = BatchChain("solana", DST)

    async def killed(batch, indices):  # the process dies before its batch goes out
        raise ConnectionError("killed")
    unreachable.submit_batch = killed  # type: ignore[method-assign]
    first = Relayer(store, {SRC: FakeChain("evm", SRC), DST: unreachable}, committee, settings())
    await observe(first, envelopes)
    await first.process_due()  # signed: all READY, membership stored
    assert all([(await store.get(e.message_id)).stage is Stage.READY for e in envelopes])
    # It got as far as two deliveries before dying (what a SIGKILL between two writes leaves behind).
    stored = await store.batch((await store.batch_members([envelopes[0].message_id]))[envelopes[0].message_id].root)
    sent = await dst.submit_batch(SignedBatch(Batch.of(envelopes), stored.epoch, stored.signature), [0, 1])
    for e, i in ((envelopes[0], 0), (envelopes[1], 1)):
        await store.advance(e.message_id, Stage.SUBMITTED, dest_tx=sent[i])
    await store.close()

    store = await Store.open(db, replica="r")
    again = RootCommittee()
    second = Relayer(store, {SRC: FakeChain("evm", SRC), DST: dst}, again, settings())
    await drain(second)
    assert not again.roots and again.calls == 0  # no second root signature
    assert dst.batches[-1][1] == [2, 3, 4] and dst.batches[-1][0].batch.root == stored.root
    assert all([(await store.get(e.message_id)).stage is Stage.CONFIRMED for e in envelopes])
    assert len(dst.delivered) == 5
    await store.close()


async def test_a_failed_batch_submission_retries_every_member(store: Store) -> None:
    dst = BatchChain("evm", DST)
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, RootCommittee(), settings())
    envelopes = [envelope(n) for n in range(3)]

    async def broken(batch, indices):
        raise RuntimeError("node down")
    dst.submit_batch = broken  # type: ignore[method-assign]
    await observe(relayer, envelopes)
    await relayer.process_due()
    for e in envelopes:
        record = await store.get(e.message_id)
        assert record.stage is Stage.READY and record.reason_code is RetryReason.SUBMIT_FAILED
        assert "node down" in record.reason and record.attempts == 1


async def test_members_sharing_a_transaction_ask_for_it_once_while_it_is_not_final(store: Store) -> None:
    dst = BatchChain("evm", DST)
    dst.not_final.add("batch0")
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, RootCommittee(), settings())
    envelopes = [envelope(n) for n in range(5)]
    await observe(relayer, envelopes)
    await drain(relayer, rounds=6)
    assert len(dst.batches) == 1
    # Each round asked for the batch transaction once, never for its members one by one.
    assert dst.status_calls and set(dst.status_calls) == {("batch0", None)}
    assert len(dst.status_calls) <= 6
    for e in envelopes:
        record = await store.get(e.message_id)
        assert record.stage is Stage.SUBMITTED and record.reason_code is RetryReason.AWAITING_FINALITY
    dst.not_final.clear()  # final: now each member's own outcome in it
    dst.status_calls.clear()
    await drain(relayer, rounds=2)
    assert [(await store.get(e.message_id)).stage for e in envelopes] == [Stage.CONFIRMED] * 5
    per_member = [m for tx, m in dst.status_calls if m is not None]
    assert sorted(per_member) == sorted(e.message_id for e in envelopes)  # once each, when final


async def test_a_member_a_final_shared_transaction_did_not_deliver_is_not_confirmed_by_it(store: Store) -> None:
    dst = BatchChain("evm", DST)
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, RootCommittee(), settings())
    envelopes = [envelope(n) for n in range(4)]
    await observe(relayer, envelopes)
    dst.not_final.add("batch0")
    await drain(relayer, rounds=4)
    # The transaction turns out (once final) not to have delivered one member, nor did anyone else.
    skipped = envelopes[2].message_id
    del dst.in_tx["batch0"][skipped]
    dst.delivered.discard(skipped)
    dst.not_final.clear()
    await relayer.process_due()
    stages = {e.message_id: (await store.get(e.message_id)).stage for e in envelopes}
    assert stages[skipped] is Stage.READY  # resubmitted, never confirmed by a transaction that skipped it
    assert all(stage is Stage.CONFIRMED for m, stage in stages.items() if m != skipped)
    assert (await store.get(skipped)).reason_code is RetryReason.DELIVERY_DROPPED


async def test_the_payment_policy_is_asked_for_every_member_before_the_root_and_refusals_leave_the_batch(
        store: Store) -> None:
    from relay.policy import PaymentPolicy

    class FeeSource(FakeChain):
        def __init__(self) -> None:
            super().__init__("solana", SRC)
            self.asked: list[bytes] = []

        async def fee_paid(self, source_tx, message_id):
            self.asked.append(message_id)
            if source_tx == "0xsrc2":
                raise ConnectionError("fee unreadable")
            return 0 if source_tx == "0xsrc1" else 100

    dst, source, committee = BatchChain("evm", DST), FeeSource(), RootCommittee()
    policy = PaymentPolicy(mode="minimum", minimum={SRC: 50})
    # A retry waits (a zero backoff would retry the unreadable fee in process_due's next pass).
    slow_retry = dataclasses.replace(settings(), backoff=Backoff(base=60.0, jitter=0.0, max_attempts=3))
    relayer = Relayer(store, {SRC: source, DST: dst}, committee, slow_retry, policy=policy)
    envelopes = [envelope(n) for n in range(5)]
    await observe(relayer, envelopes)
    await relayer.process_due()
    assert sorted(source.asked) == sorted(e.message_id for e in envelopes)
    unpaid, unreadable = await store.get(envelopes[1].message_id), await store.get(envelopes[2].message_id)
    assert unpaid.stage is Stage.DEAD and unpaid.reason_code is RetryReason.REFUSED_UNPAID
    assert unreadable.stage is Stage.OBSERVED and unreadable.reason_code is RetryReason.STEP_FAILED  # not refused
    assert committee.roots[0] == [e.message_id for e in envelopes if e.nonce not in (1, 2)]
