"""EvmAdapter logic that needs no node: error classification, MessageSent checks, cursors, finality
and bounded log ranges (against a fake web3 client behind the real EndpointPool)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from eth_abi import encode as abi_encode
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from adapters.endpoints import EndpointPool
from adapters.evm.gateway import EvmAdapter, GatewayNotConfigured
from adapters.evm.rpc import is_retryable
from adapters.evm.tx import NoSignerError, bump
from relay.interfaces import DeliveryState, SignedDelivery
from relay.config import EvmChain, KeyRef
from relay.envelope import Envelope, keccak256

DOMAIN = 31337
GATEWAY = "0x" + "ab" * 20


pytestmark = pytest.mark.usefixtures("evm_contracts")  # tests/conftest.py


def _chain(confirmations: int | None = 2, **kw: Any) -> EvmChain:
    return EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=["http://127.0.0.1:1"],
                    confirmations=confirmations, contracts={"Gateway": GATEWAY}, **kw)


class FakeEth:
    def __init__(self, head: int, finalized: int = 0, logs: list[dict] | None = None) -> None:
        self.head = head
        self.finalized = finalized
        self.logs = logs or []
        self.log_queries: list[tuple[int, int, list]] = []
        self.hashes: dict[int, bytes] = {}
        self.receipts: dict[str, dict] = {}

    @property
    async def block_number(self) -> int:
        return self.head

    async def get_block(self, tag: Any) -> dict:
        if tag == "finalized":
            return {"number": self.finalized}
        if tag not in self.hashes:  # a block only asked for its timestamp (Observation.block_time)
            return {"number": tag, "timestamp": 1_700_000_000 + tag}
        return {"number": tag, "hash": self.hashes[tag], "timestamp": 1_700_000_000 + tag}

    async def get_transaction_receipt(self, tx_hash: str) -> dict:
        if tx_hash not in self.receipts:
            raise TransactionNotFound(f"{tx_hash} not found")
        return self.receipts[tx_hash]

    async def get_logs(self, params: dict) -> list[dict]:
        self.log_queries.append((params["fromBlock"], params["toBlock"], params["topics"]))
        return [e for e in self.logs if params["fromBlock"] <= e["blockNumber"] <= params["toBlock"]]


def _adapter(eth: FakeEth, confirmations: int | None = 2, **kw: Any) -> EvmAdapter:
    adapter = EvmAdapter("evm", _chain(confirmations), None, poll_interval=0.01, **kw)
    adapter.pool = EndpointPool("evm", ["http://fake"], lambda url: SimpleNamespace(eth=eth), is_retryable,
                                base_delay=0.0)
    return adapter


def _log(adapter: EvmAdapter, envelope: Envelope, block: int, index: int = 0, *, message_id: bytes | None = None,
         nonce: int | None = None) -> dict:
    raw = envelope.encode()
    return {
        "topics": [
            bytes.fromhex(adapter._topic_sent[2:]),
            message_id or keccak256(raw),
            (envelope.nonce if nonce is None else nonce).to_bytes(32, "big"),
            envelope.dst_domain.to_bytes(32, "big"),
        ],
        "data": abi_encode(["bytes"], [raw]),
        "blockNumber": block,
        "logIndex": index,
        "transactionHash": (block * 1000 + index).to_bytes(32, "big"),
    }


def _envelope(nonce: int, src_domain: int = DOMAIN) -> Envelope:
    return Envelope(1, nonce, src_domain, b"\x00" * 12 + b"\x11" * 20, 900, b"\x00" * 31 + b"\x01", b"p%d" % nonce)


def test_retryable_errors_are_endpoint_trouble_only() -> None:
    info = SimpleNamespace(real_url="http://x")
    assert is_retryable(aiohttp.ClientConnectionError("refused"))
    assert is_retryable(asyncio.TimeoutError())
    assert is_retryable(ConnectionRefusedError())
    assert is_retryable(aiohttp.ClientResponseError(info, (), status=429))
    assert is_retryable(aiohttp.ClientResponseError(info, (), status=503))
    assert not is_retryable(aiohttp.ClientResponseError(info, (), status=400))
    assert not is_retryable(ContractLogicError("execution reverted", data="0x"))
    assert not is_retryable(Web3RPCError("nonce too low"))


def test_configuration_errors_say_what_to_do() -> None:
    with pytest.raises(GatewayNotConfigured, match="contracts has no Gateway address"):
        EvmAdapter("evm", _chain().model_copy(update={"contracts": {}}), None)
    adapter = EvmAdapter("evm", _chain(), None)
    with pytest.raises(NoSignerError, match="set chains.evm.signer"):
        asyncio.run(adapter.submit(SignedDelivery(_envelope(0), 1, bytes(64))))


def test_fee_bump_is_at_least_12_5_percent() -> None:
    for fee in (1, 7, 8, 1_000_000_007, 3 * 10**9):
        assert bump(fee) * 8 >= fee * 9 and bump(fee) > fee


def test_observations_check_every_field_and_skip_bad_events() -> None:
    adapter = _adapter(FakeEth(head=0))
    good = [_log(adapter, _envelope(0), 10, 0), _log(adapter, _envelope(1), 10, 1), _log(adapter, _envelope(2), 12, 0)]
    bad = [
        _log(adapter, _envelope(3), 13, 0, message_id=b"\x00" * 32),  # id is not keccak(envelope)
        _log(adapter, _envelope(4, src_domain=5), 13, 1),  # another chain's domain
        _log(adapter, _envelope(5), 13, 2, nonce=6),  # indexed nonce disagrees
        {**_log(adapter, _envelope(6), 13, 3), "data": abi_encode(["bytes"], [b"\x02" * 90])},  # version 2
    ]
    observations = adapter._observations(good + bad)
    assert [o.envelope.nonce for o in observations] == [0, 1, 2]
    # A cursor saved mid-block resumes at that block (a repeat), never after it (a gap).
    assert [o.cursor for o in observations] == ["9", "10", "12"]
    assert observations[0].source_tx == "0x" + (10_000).to_bytes(32, "big").hex()
    assert observations[2].position == 12


async def test_final_block_by_confirmations_or_finalized_tag() -> None:
    eth = FakeEth(head=100, finalized=36)
    assert await _adapter(eth, confirmations=3).final_block() == 97
    assert await _adapter(eth, confirmations=0).final_block() == 100
    assert await _adapter(eth, confirmations=None).final_block() == 36
    assert await _adapter(FakeEth(head=1), confirmations=3).final_block() == -2


async def test_watch_queries_bounded_ranges_up_to_the_final_block_only() -> None:
    eth = FakeEth(head=5_003)
    adapter = _adapter(eth, confirmations=3, log_range=2_000)
    eth.logs = [_log(adapter, _envelope(0), 1_500), _log(adapter, _envelope(1), 4_999), _log(adapter, _envelope(2), 5_001)]
    seen = []

    async def consume() -> None:
        async for observation in adapter.watch("99"):
            seen.append(observation)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    assert [(f, t) for f, t, _ in eth.log_queries] == [(100, 2_099), (2_100, 4_099), (4_100, 5_000)]
    assert [o.envelope.nonce for o in seen] == [0, 1]  # block 5,001 is not final (head 5,003 - 3)
    eth.head = 5_004
    await asyncio.sleep(0.1)
    task.cancel()
    assert [o.envelope.nonce for o in seen] == [0, 1, 2]
    assert eth.log_queries[3][:2] == (5_001, 5_001)
    assert all(q[2] == [adapter._topic_sent] for q in eth.log_queries)


async def test_watch_survives_an_outage_of_every_endpoint() -> None:
    class Flaky(FakeEth):
        failures = 6  # more than one pool round (4 attempts): the pool gives up at least once

        async def get_logs(self, params: dict) -> list[dict]:
            if self.failures:
                self.failures -= 1
                raise ConnectionRefusedError("node down")
            return await super().get_logs(params)

    eth = Flaky(head=10)
    adapter = _adapter(eth, confirmations=0)
    eth.logs = [_log(adapter, _envelope(0), 7)]
    seen = []

    async def consume() -> None:
        async for observation in adapter.watch(None):
            seen.append(observation)

    task = asyncio.create_task(consume())
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    assert [o.envelope.nonce for o in seen] == [0]
    assert eth.failures == 0 and adapter.health()[0].total_errors == 6


async def test_a_delivery_is_confirmed_only_when_final_and_still_canonical() -> None:
    eth = FakeEth(head=20)
    adapter = _adapter(eth, confirmations=5)
    tx = "0x" + "77" * 32
    eth.receipts[tx] = {"blockNumber": 16, "blockHash": b"\x16" * 32, "status": 1, "logs": []}
    eth.hashes[16] = b"\x16" * 32
    status = await adapter.delivery_status(tx)
    assert status.state is DeliveryState.PENDING and "not final" in status.detail
    eth.head = 21
    assert (await adapter.delivery_status(tx)).state is DeliveryState.CONFIRMED
    eth.hashes[16] = b"\x99" * 32  # the block at that height is another one now
    status = await adapter.delivery_status(tx)
    assert status.state is DeliveryState.PENDING and "reorged" in status.detail
    assert await adapter.reobserve(tx) == []


def test_from_config_reads_the_signer_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "0x" + "01" * 32
    monkeypatch.setenv("TESSERA_TEST_EVM_KEY", key)
    chain = _chain().model_copy(update={"signer": KeyRef(env="TESSERA_TEST_EVM_KEY")})
    adapter = EvmAdapter.from_config("evm", chain)
    assert adapter.account is not None and adapter.account.key.hex().removeprefix("0x") == "01" * 32
    assert EvmAdapter.from_config("evm", _chain()).account is None


async def test_find_nonce_scans_bounded_ranges_newest_first() -> None:
    eth = FakeEth(head=4_500)
    adapter = _adapter(eth, confirmations=0, log_range=2_000, start_block=100)
    eth.logs = [_log(adapter, _envelope(3), 1_000)]
    found = await adapter.find_nonce(3)
    assert found is not None and found.envelope.nonce == 3 and found.position == 1_000
    assert [(f, t) for f, t, _ in eth.log_queries] == [(2_501, 4_500), (501, 2_500)]
    assert eth.log_queries[0][2][2] == "0x" + (3).to_bytes(32, "big").hex()
    eth.logs, eth.log_queries = [], []
    assert await adapter.find_nonce(9) is None
    assert [(f, t) for f, t, _ in eth.log_queries] == [(2_501, 4_500), (501, 2_500), (100, 500)]
