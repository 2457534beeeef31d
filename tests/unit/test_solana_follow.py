"""adapters.solana.rpc.follow_address reads a burst's transactions READ_AHEAD at a time, yields what
they hold strictly in order, stays on a transaction the node does not serve yet, and passes each
read the cursor before it."""

from __future__ import annotations

import asyncio

from solders.keypair import Keypair
from solders.signature import Signature

from adapters.solana import rpc as solana_rpc


class FakeRpc:
    name = "fake"

    def __init__(self, signatures: list[tuple[Signature, object]]) -> None:
        self.signatures = signatures

    async def signatures_after(self, address, until, commitment):
        if until is None:
            return list(self.signatures)
        index = [s for s, _ in self.signatures].index(until)
        return list(self.signatures[index + 1:])


async def _take(iterator, count: int, timeout: float = 5.0) -> list:
    out = []

    async def run() -> None:
        async for item in iterator:
            out.append(item)
            if len(out) == count:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_a_burst_is_read_concurrently_and_yielded_in_order() -> None:
    sigs = [Signature.new_unique() for _ in range(40)]
    failed = {sigs[3]}  # a failed transaction: not read, but the cursor moves past it
    rpc = FakeRpc([(s, "err" if s in failed else None) for s in sigs])
    active, peak, befores = 0, 0, {}

    async def read(signature: Signature, before: str):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        befores[signature] = before
        await asyncio.sleep(0.01 * (hash(str(signature)) % 3))  # finish out of order
        active -= 1
        return [str(signature)]

    follower = solana_rpc.follow_address(rpc, Keypair().pubkey(), None, read, commitment="confirmed", logs=None,
                                         poll_interval=0.01, idle_poll_interval=0.01, what="test")
    items = await _take(follower, 39)
    await follower.aclose()
    assert items == [str(s) for s in sigs if s not in failed]
    assert peak > 1  # read ahead, not one after another
    assert befores[sigs[0]] == "" and befores[sigs[1]] == str(sigs[0])
    assert befores[sigs[4]] == str(sigs[3])  # the cursor before a read names the failed transaction too


async def test_a_transaction_not_served_yet_holds_the_follower_on_it() -> None:
    sigs = [Signature.new_unique() for _ in range(20)]
    rpc = FakeRpc([(s, None) for s in sigs])
    served = set(sigs[:5])
    reads: list[Signature] = []

    async def read(signature: Signature, before: str):
        reads.append(signature)
        return [str(signature)] if signature in served else None

    follower = solana_rpc.follow_address(rpc, Keypair().pubkey(), None, read, commitment="confirmed", logs=None,
                                         poll_interval=0.01, idle_poll_interval=0.01, what="test")
    first = await _take(follower, 5)
    assert first == [str(s) for s in sigs[:5]]
    served.update(sigs[5:])  # the node serves the rest now: the follower resumes on transaction 5
    rest = await _take(follower, 15)
    await follower.aclose()
    assert rest == [str(s) for s in sigs[5:]]
