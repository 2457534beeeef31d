"""Attack on batched deliveries: an attacker's receiver that makes the batch transaction it is in
revert (e.g. an EVM receiver burning more gas on chain than in the relayer's eth_createAccessList run,
its state flipped by a front-run transaction, so a handler after it runs out of gas:
InsufficientGasForHandler reverts the whole deliverBatch). Before the fix, the members of a reverted
batch were prepared again as a batch, with the attacker's message in it, every time: each attempt
reverted (the relayer paying for each) until the retry budget dead-lettered every genuine message
batched with it. Now the members of a reverted batch go the single way next: one message can sink a
batch once, never its neighbours' deliveries."""

from __future__ import annotations

from relay.interfaces import DeliveryState, DeliveryStatus, SignedBatch
from relay.pipeline import Relayer
from relay.store import Stage, Store
from tests.support.fakes import DST, SRC, FakeChain, envelope
from tests.unit.test_batching import BatchChain, RootCommittee, drain, observe, settings


class PoisonedChain(BatchChain):
    """A batch holding `poison` reverts (nothing in it is delivered); single deliveries of the other
    messages land; the poison message delivered alone reverts too."""

    def __init__(self, poison: bytes) -> None:
        super().__init__("evm", DST)
        self.poison = poison
        self.reverted: set[str] = set()
        self.singles: list[bytes] = []

    async def submit_batch(self, batch: SignedBatch, indices: list[int]) -> dict[int, str]:
        if self.poison not in batch.batch.message_ids:
            return await super().submit_batch(batch, indices)
        tx = f"batch{len(self.batches)}"
        self.batches.append((batch, list(indices)))
        self.reverted.add(tx)
        return {i: tx for i in indices}

    async def submit(self, delivery) -> str:
        self.singles.append(delivery.envelope.message_id)
        if delivery.envelope.message_id == self.poison:
            tx = f"single-poison{len(self.singles)}"
            self.reverted.add(tx)
            return tx
        return await super().submit(delivery)

    async def delivery_status(self, tx_id, message_id=None):
        if tx_id in self.reverted:
            return DeliveryStatus(DeliveryState.REVERTED, "InsufficientGasForHandler(1234)")
        if tx_id in self.sent:  # a single delivery (FakeChain's): lands
            return await FakeChain.delivery_status(self, tx_id)
        return await super().delivery_status(tx_id, message_id)


async def test_a_member_that_sinks_its_batch_does_not_take_the_others_down(store: Store) -> None:
    envelopes = [envelope(n) for n in range(6)]
    poison = envelopes[2].message_id
    dst = PoisonedChain(poison)
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, RootCommittee(), settings())
    await observe(relayer, envelopes)
    await drain(relayer, rounds=12)
    # One batch reverted (the relayer paid for one), then its members went one by one.
    assert len(dst.batches) == 1, f"{len(dst.batches)} batches sent, all reverted by one member"
    for e in envelopes:
        record = await store.get(e.message_id)
        if e.message_id == poison:
            assert record.stage in (Stage.OBSERVED, Stage.READY, Stage.SUBMITTED, Stage.DEAD)
            assert record.stage is not Stage.CONFIRMED
        else:
            assert record.stage is Stage.CONFIRMED, (e.nonce, record.stage, record.reason)
            assert e.message_id in dst.delivered


async def test_a_reverted_batch_members_go_singly_then_batch_again_later(store: Store) -> None:
    """Single only for the attempt after the revert: messages observed later batch as usual."""
    first = [envelope(n) for n in range(3)]
    dst = PoisonedChain(first[1].message_id)
    relayer = Relayer(store, {SRC: FakeChain("solana", SRC), DST: dst}, RootCommittee(), settings())
    await observe(relayer, first)
    await drain(relayer, rounds=8)
    assert len(dst.batches) == 1
    later = [envelope(n) for n in range(3, 7)]
    await observe(relayer, later)
    await drain(relayer, rounds=6)
    assert len(dst.batches) == 2 and dst.batches[1][0].batch.message_ids == [e.message_id for e in later]
    assert [(await store.get(e.message_id)).stage for e in later] == [Stage.CONFIRMED] * 4
    assert (await store.get(first[0].message_id)).stage is Stage.CONFIRMED
