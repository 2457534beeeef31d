"""adapters/evm/rpc.py's lean path without a node: the eth_call batcher (one pool call for the calls
asked at once, each caller its own answer or error), the receipt parser's refusals, the chain-id
check of a declared chainId, and TxManager keeping a mined receipt for receipt_ttl (counted against
a fake PoolCall)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from web3.exceptions import ContractLogicError, ProviderConnectionError, Web3ValidationError

from adapters.evm import rpc
from adapters.evm.rpc import CallBatcher, ChainIdCheck, LeanHTTPProvider, WrongChainError, is_retryable, parse_receipt
from adapters.evm.tx import TxManager


class FakePool:
    """A PoolCall whose client answers eth_calls in one go (what rpc.eth_calls does over a batch)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[dict, Any]]] = []
        self.fail: Exception | None = None

    async def __call__(self, what: str, fn: Any) -> Any:
        assert what.startswith("eth_call x")
        return await fn(self)

    # rpc.eth_calls is patched to this in the tests below
    async def answer(self, calls: list[tuple[dict, Any]]) -> list[Any]:
        self.batches.append(list(calls))
        await asyncio.sleep(0.005)
        if self.fail is not None:
            raise self.fail
        return [ContractLogicError("execution reverted", data="0xdeadbeef") if tx["data"] == "0xbad"
                else bytes.fromhex(tx["data"][2:]).rjust(32, b"\0") for tx, _block in calls]


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> FakePool:
    fake = FakePool()

    async def eth_calls(w3: Any, calls: list[tuple[dict, Any]]) -> list[Any]:
        assert w3 is fake
        return await fake.answer(calls)

    monkeypatch.setattr(rpc, "eth_calls", eth_calls)
    return fake


async def test_calls_asked_at_once_go_in_one_batch_and_each_caller_gets_its_own(pool: FakePool) -> None:
    batcher = CallBatcher(pool, size=50)
    datas = [f"0x{i:02x}" for i in range(1, 31)]
    answers = await asyncio.gather(*(batcher.eth_call({"to": "0x1", "data": d}, 7) for d in datas))
    assert [int.from_bytes(a, "big") for a in answers] == list(range(1, 31))
    assert len(pool.batches) == 1 and [block for _tx, block in pool.batches[0]] == [7] * 30

    # one after the other: a call each
    assert await batcher.eth_call({"to": "0x1", "data": "0x05"}) == (5).to_bytes(32, "big")
    assert await batcher.eth_call({"to": "0x1", "data": "0x06"}) == (6).to_bytes(32, "big")
    assert len(pool.batches) == 3


async def test_a_batch_holds_at_most_size_calls(pool: FakePool) -> None:
    batcher = CallBatcher(pool, size=8)
    answers = await asyncio.gather(*(batcher.eth_call({"to": "0x1", "data": f"0x{i:02x}"}) for i in range(20)))
    assert [int.from_bytes(a, "big") for a in answers] == list(range(20))
    assert sorted(len(b) for b in pool.batches) == [4, 8, 8]
    with pytest.raises(ValueError, match="at least one call"):
        CallBatcher(pool, size=0)


async def test_a_revert_reaches_its_caller_only_and_a_failed_batch_reaches_all(pool: FakePool) -> None:
    batcher = CallBatcher(pool)
    results = await asyncio.gather(batcher.eth_call({"to": "0x1", "data": "0x01"}),
                                   batcher.eth_call({"to": "0x1", "data": "0xbad"}),
                                   batcher.eth_call({"to": "0x1", "data": "0x02"}), return_exceptions=True)
    assert results[0] == (1).to_bytes(32, "big") and results[2] == (2).to_bytes(32, "big")
    assert isinstance(results[1], ContractLogicError) and rpc.revert_data(results[1]) == "0xdeadbeef"
    assert len(pool.batches) == 1

    pool.fail = ConnectionError("node down")
    results = await asyncio.gather(*(batcher.eth_call({"to": "0x1", "data": "0x01"}) for _ in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results), results
    pool.fail = None
    assert await batcher.eth_call({"to": "0x1", "data": "0x03"}) == (3).to_bytes(32, "big")


def test_receipts_parse_like_web3_and_malformed_ones_are_refused() -> None:
    raw = {"status": "0x1", "blockNumber": "0x10", "gasUsed": "0x5208", "blockHash": "0x" + "ab" * 32,
           "transactionHash": "0x" + "cd" * 32, "contractAddress": None, "type": "0x2",
           "logs": [{"address": "0x" + "5e" * 20, "topics": ["0x" + "01" * 32], "data": "0x", "logIndex": "0x3",
                     "blockNumber": "0x10", "removed": False}]}
    receipt = parse_receipt(raw)
    assert receipt is not None
    assert (receipt["status"], receipt["blockNumber"], receipt["gasUsed"], receipt["type"]) == (1, 16, 21_000, 2)
    assert bytes(receipt["blockHash"]) == b"\xab" * 32 and receipt["contractAddress"] is None
    entry = receipt["logs"][0]
    assert entry["address"] == to_checksum_address("0x" + "5e" * 20)
    assert [bytes(t) for t in entry["topics"]] == [b"\x01" * 32] and entry["logIndex"] == 3 and entry["removed"] is False
    assert parse_receipt(None) is None
    with pytest.raises(ProviderConnectionError, match="malformed transaction receipt"):
        parse_receipt({"status": "0x1"})  # no logs
    with pytest.raises(ProviderConnectionError, match="malformed transaction receipt"):
        parse_receipt(["not", "a", "receipt"])  # type: ignore[arg-type]


async def test_a_declared_chain_id_is_checked_against_the_node_read_once() -> None:
    provider = LeanHTTPProvider("http://127.0.0.1:1", 1.0)
    reads = Counter()

    async def read_chain_id() -> int:
        reads["eth_chainId"] += 1
        return 31337

    provider._read_chain_id = read_chain_id  # type: ignore[method-assign]
    check = ChainIdCheck(type("W3", (), {"provider": provider})())  # type: ignore[arg-type]
    tx = {"to": "0x" + "11" * 20, "data": "0x", "chainId": 31337}
    for _ in range(3):
        method, params = await check.async_request_processor("eth_call", (tx, "latest"))
        assert method == "eth_call" and "chainId" not in params[0] and params[1] == "latest"
    assert reads["eth_chainId"] == 1
    with pytest.raises(Web3ValidationError, match="declared chain ID 1, but the connected node is on 31337"):
        await check.async_request_processor("eth_estimateGas", ({**tx, "chainId": "0x1"},))
    untouched = ({"to": "0x" + "11" * 20},)
    assert await check.async_request_processor("eth_call", untouched) == ("eth_call", untouched)


def test_an_endpoint_on_another_chain_is_the_endpoints_fault() -> None:
    assert is_retryable(WrongChainError("endpoint serves chain id 1"))  # the pool fails over


class ReceiptNode:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.mined = True

    async def __call__(self, what: str, fn: Any) -> Any:
        self.calls[what] += 1
        await asyncio.sleep(0.002)
        assert what == "eth_getTransactionReceipt"
        return {"status": 1, "blockNumber": 5} if self.mined else None


async def test_a_mined_receipt_is_kept_for_receipt_ttl_and_a_missing_one_never() -> None:
    node = ReceiptNode()
    txm = TxManager(node, Account.create(), name="t", receipt_ttl=0.2)
    tx_hash = "0x" + "aa" * 32
    first = await asyncio.gather(*(txm.receipt(tx_hash) for _ in range(10)))
    assert all(r == {"status": 1, "blockNumber": 5} for r in first)
    assert await txm.receipt(tx_hash) is first[0]  # within the ttl: kept
    assert node.calls["eth_getTransactionReceipt"] == 1
    time.sleep(0.25)
    node.mined = False  # e.g. reorged out: the kept one has expired, so it is seen
    assert await txm.receipt(tx_hash) is None
    assert await txm.receipt(tx_hash) is None
    assert node.calls["eth_getTransactionReceipt"] == 3  # a missing receipt is read again each time

    no_ttl = TxManager(node, Account.create(), name="t", receipt_ttl=0.0)
    node.mined = True
    await no_ttl.receipt(tx_hash)
    await no_ttl.receipt(tx_hash)
    assert node.calls["eth_getTransactionReceipt"] == 5


async def test_batch_answers_are_matched_to_their_calls_by_id_or_refused() -> None:
    provider = LeanHTTPProvider("http://127.0.0.1:1", 1.0)
    answers: list[Any] = []

    async def post(body: bytes) -> Any:
        sent = json.loads(body)
        return answers.pop(0)(sent)

    provider._post = post  # type: ignore[method-assign]
    requests = [("eth_call", [{"to": "0x1", "data": f"0x0{i}"}, "latest"]) for i in range(3)]

    def shuffled(sent: list[dict]) -> list[dict]:  # answered out of order, one id as a string
        out = [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"][0]["data"]} for r in reversed(sent)]
        out[0]["id"] = str(out[0]["id"])
        return out

    answers.append(shuffled)
    assert [r["result"] for r in await provider.batch(requests)] == ["0x00", "0x01", "0x02"]

    refusals = [
        lambda sent: {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch not supported"}},
        lambda sent: [{"jsonrpc": "2.0", "id": r["id"], "result": "0x"} for r in sent[:2]],  # cut
        lambda sent: [{"jsonrpc": "2.0", "id": sent[0]["id"], "result": "0x"}] * 3,  # ids repeated
        lambda sent: [{"jsonrpc": "2.0", "id": r["id"] + 100, "result": "0x"} for r in sent],  # other ids
        lambda sent: [{"jsonrpc": "2.0", "result": "0x"} for r in sent],  # no ids
    ]
    for refusal in refusals:
        answers.append(refusal)
        assert await provider.batch(requests) is None


async def test_an_endpoint_refusing_batches_is_asked_one_call_at_a_time() -> None:
    w3 = rpc.make_client("http://127.0.0.1:1", 1.0)
    provider = w3.provider
    singles: list[Any] = []

    async def batch(requests: Any) -> None:
        return None

    async def make_request(method: str, params: Any) -> dict:
        singles.append(params)
        if params[0]["data"] == "0xbad":
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "message": "execution reverted",
                                                         "data": "0xdeadbeef"}}
        return {"jsonrpc": "2.0", "id": 1, "result": "0x" + "00" * 31 + params[0]["data"][2:]}

    provider.batch = batch  # type: ignore[method-assign]
    provider.make_request = make_request  # type: ignore[method-assign]
    results = await rpc.eth_calls(w3, [({"to": "0x1", "data": "0x07"}, 5), ({"to": "0x1", "data": "0xbad"}, 5)])
    assert results[0] == (7).to_bytes(32, "big")
    assert isinstance(results[1], ContractLogicError) and rpc.revert_data(results[1]) == "0xdeadbeef"
    assert [p[1] for p in singles] == ["0x5", "0x5"]
