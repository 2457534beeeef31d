"""Reads many messages ask for at once are made once: adapters/evm/rpc.py Coalescer (the EVM
adapter's final block, the TxManager's mined count, receipts and checks), TxManager's fee reads shared
for fee_ttl, and adapters/solana/rpc.py SolanaRpc.signature_status batched into getSignatureStatuses.
Counted against fake endpoints: how many RPCs went out, and that every caller got its own answer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from eth_account import Account
from solders.signature import Signature

from adapters.evm.rpc import Coalescer
from adapters.evm.tx import Mined, SentTx, TxManager, Waiting
from adapters.solana.rpc import SIGNATURE_STATUSES_MAX, SolanaRpc


# --- Coalescer ----------------------------------------------------------------------------------

async def test_concurrent_calls_with_one_key_share_one_call_and_later_calls_read_again() -> None:
    shared, calls = Coalescer(), Counter()

    async def read(key: str) -> str:
        calls[key] += 1
        await asyncio.sleep(0.01)
        return f"{key}#{calls[key]}"

    results = await asyncio.gather(*(shared.run(k, lambda k=k: read(k)) for k in ["a"] * 5 + ["b"] * 3))
    assert calls == {"a": 1, "b": 1}
    assert results == ["a#1"] * 5 + ["b#1"] * 3
    assert await shared.run("a", lambda: read("a")) == "a#2"  # nothing kept once it returned


async def test_a_shared_failure_reaches_every_caller_and_is_not_kept() -> None:
    shared, calls = Coalescer(), Counter()

    async def failing() -> int:
        calls["x"] += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("node down")

    results = await asyncio.gather(*(shared.run("x", failing) for _ in range(4)), return_exceptions=True)
    assert calls["x"] == 1 and all(isinstance(r, ConnectionError) for r in results)

    async def working() -> int:
        return 7

    assert await shared.run("x", working) == 7


async def test_a_caller_cancelled_does_not_cancel_the_others() -> None:
    shared = Coalescer()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    first = asyncio.ensure_future(shared.run("k", slow))
    second = asyncio.ensure_future(shared.run("k", slow))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "done"
    with pytest.raises(asyncio.CancelledError):
        await first


# --- TxManager ------------------------------------------------------------------------------------

class FakeNode:
    """A PoolCall answering the few methods TxManager uses, counting them."""

    def __init__(self, mined: int = 0) -> None:
        self.calls: Counter[str] = Counter()
        self.mined = mined
        self.receipts = False  # whether receipts are served
        self.fail_fees = False

    async def __call__(self, what: str, fn: Any) -> Any:
        self.calls[what] += 1
        await asyncio.sleep(0.005)  # a round trip: concurrent callers overlap
        match what:
            case "eth_getTransactionCount":
                return self.mined
            case "eth_getTransactionReceipt":
                return {"status": 1} if self.receipts else None
            case "eth_getBlockByNumber(latest)":
                if self.fail_fees:
                    raise ConnectionError("node down")
                return {"baseFeePerGas": 10}
            case "eth_maxPriorityFeePerGas":
                return 2
            case "eth_chainId":
                return 31337
            case "eth_estimateGas":
                return 21_000
        raise AssertionError(f"unexpected {what}")


def _sent(nonce: int, sent_at: float = 0.0) -> SentTx:
    return SentTx(tx={"nonce": nonce, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1}, hashes=[f"0x{nonce:064x}"],
                  sent_at=sent_at)


async def test_checks_at_once_share_the_mined_count_and_one_check_per_transaction() -> None:
    node = FakeNode(mined=0)
    txm = TxManager(node, Account.create(), name="t")
    now = time.monotonic()
    transactions = [_sent(n, now) for n in range(10)]
    # 40 messages of 10 transactions (a batch's messages share their transaction), none mined.
    checks = await asyncio.gather(*(txm.check(transactions[i % 10], 60.0) for i in range(40)))
    assert all(isinstance(c, Waiting) for c in checks)
    assert node.calls == {"eth_getTransactionCount": 1}

    node.mined = 10  # all mined: one count, then one receipt per transaction (not per message)
    node.receipts = True
    checks = await asyncio.gather(*(txm.check(transactions[i % 10], 60.0) for i in range(40)))
    assert all(isinstance(c, Mined) for c in checks)
    assert node.calls["eth_getTransactionCount"] == 2
    assert node.calls["eth_getTransactionReceipt"] == 10


async def test_fees_are_read_once_per_ttl_and_a_failed_read_is_not_kept() -> None:
    node = FakeNode()
    txm = TxManager(node, Account.create(), name="t", fee_ttl=60.0)
    txs = await asyncio.gather(*(txm.transaction("0x" + "11" * 20, "0x") for _ in range(5)))
    assert {(t["maxFeePerGas"], t["maxPriorityFeePerGas"]) for t in txs} == {(22, 2)}
    assert node.calls["eth_getBlockByNumber(latest)"] == 1 and node.calls["eth_maxPriorityFeePerGas"] == 1
    await txm.transaction("0x" + "11" * 20, "0x")
    assert node.calls["eth_getBlockByNumber(latest)"] == 1  # within the ttl: shared

    expiring = TxManager(node, Account.create(), name="t", fee_ttl=0.0)
    await expiring.transaction("0x" + "11" * 20, "0x")
    await expiring.transaction("0x" + "11" * 20, "0x")
    assert node.calls["eth_getBlockByNumber(latest)"] == 3  # ttl 0: read each time

    failing = FakeNode()
    failing.fail_fees = True
    txm = TxManager(failing, Account.create(), name="t", fee_ttl=60.0)
    with pytest.raises(ConnectionError):
        await txm.transaction("0x" + "11" * 20, "0x")
    failing.fail_fees = False
    tx = await txm.transaction("0x" + "11" * 20, "0x")  # the failure was not kept
    assert tx["maxFeePerGas"] == 22 and failing.calls["eth_getBlockByNumber(latest)"] == 2


# --- Solana signature statuses --------------------------------------------------------------------

class FakeStatuses:
    def __init__(self) -> None:
        self.requests: list[list[Signature]] = []
        self.fail: Exception | None = None

    async def get_signature_statuses(self, signatures: list[Signature], search_transaction_history: bool) -> Any:
        assert search_transaction_history
        self.requests.append(list(signatures))
        await asyncio.sleep(0.005)
        if self.fail is not None:
            raise self.fail

        class Answer:
            value = [f"status of {s}" for s in signatures]

        return Answer()


def _signature(i: int) -> Signature:
    return Signature.from_bytes(i.to_bytes(4, "big") * 16)


async def test_signature_statuses_asked_at_once_go_in_one_call_of_at_most_256() -> None:
    client = FakeStatuses()
    rpc = SolanaRpc.for_client("sol", client)  # type: ignore[arg-type]
    signatures = [_signature(i) for i in range(300)]
    answers = await asyncio.gather(*(rpc.signature_status(s) for s in signatures + signatures[:10]))
    assert answers == [f"status of {s}" for s in signatures + signatures[:10]]  # each caller its own
    # 310 callers, 300 signatures: two calls, the first full (256), the second the rest (the ten asked
    # twice after the first was full are asked in the second)
    assert sorted(len(r) for r in client.requests) == [300 - SIGNATURE_STATUSES_MAX + 10, SIGNATURE_STATUSES_MAX]
    assert all(len(set(r)) == len(r) for r in client.requests)

    before = len(client.requests)
    assert await rpc.signature_status(signatures[0]) == f"status of {signatures[0]}"
    assert await rpc.signature_status(signatures[1]) == f"status of {signatures[1]}"
    assert len(client.requests) == before + 2  # one after the other: asked again each time


async def test_a_failed_status_call_reaches_every_caller_of_its_batch() -> None:
    client = FakeStatuses()
    client.fail = ConnectionError("node down")
    rpc = SolanaRpc.for_client("sol", client, timeout=1.0)  # type: ignore[arg-type]
    results = await asyncio.gather(*(rpc.signature_status(_signature(i)) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results), results
    client.fail = None
    assert await rpc.signature_status(_signature(1)) == f"status of {_signature(1)}"
