"""adapters/evm/rpc.py's lean path on a real anvil: a receipt parsed from the raw JSON equals what
web3 formats, eth_calls batched into one JSON-RPC request answer each call (a revert as web3 raises
it), connections are kept alive, and an endpoint on another chain is refused with a clear error
(at start) or skipped for the right one (failover)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError

import attest
from adapters.evm import rpc
from adapters.evm.devnet import AnvilProcess, running_anvil
from adapters.evm.gateway import EvmAdapter, EvmAdapterError, deploy_gateway, deploy_recording_receiver
from relay.batch import Batch
from relay.config import EvmChain
from relay.envelope import Envelope, address_to_bytes32
from relay.interfaces import DeliveryState, SignedBatch
from relay.protocol import MessageKind
from tests.support import evm

pytestmark = pytest.mark.e2e

DOMAIN = 31337
REMOTE = 424242
EPOCH = 1


@dataclass
class Delivered:
    node: AnvilProcess
    w3: AsyncWeb3  # stock web3: what the lean path is compared with
    adapter: EvmAdapter
    gateway: str
    tx: str
    envelopes: list[Envelope]


@pytest.fixture
async def delivered() -> AsyncIterator[Delivered]:
    """A gateway on anvil and one deliverBatch of three messages, final (confirmations 0)."""
    async with evm.anvil_with_committee(DOMAIN, EPOCH) as anvil:
        gateway = await deploy_gateway(anvil.w3, anvil.deployer, anvil.verifier, DOMAIN, fee=0)
        receiver = await deploy_recording_receiver(anvil.w3, anvil.deployer, gateway)
        chain = EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=[anvil.node.rpc_url], ws_urls=[],
                         confirmations=0, contracts={"Gateway": gateway})
        adapter = EvmAdapter("evm", chain, anvil.node.private_keys[1])
        await adapter.start()
        envelopes = [Envelope(MessageKind.TASK_REQUEST, n, REMOTE, b"\x00" * 12 + b"\x5e" * 20, DOMAIN,
                              address_to_bytes32(receiver), b"payload %d" % n) for n in range(3)]
        batch = Batch.of(envelopes)
        signature = attest.combine_signatures([attest.partial_sign(anvil.shares[i], batch.digest(EPOCH))
                                               for i in range(3)])
        tx = (await adapter.submit_batch(SignedBatch(batch, EPOCH, signature), [0, 1, 2]))[0]
        await adapter._wait_receipt(tx, 30)
        try:
            yield Delivered(anvil.node, anvil.w3, adapter, gateway, tx, envelopes)
        finally:
            await adapter.close()


def _plain(value: Any) -> Any:
    """web3's AttributeDicts and lists as plain dicts and lists (HexBytes, ints, str kept)."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


async def test_a_raw_receipt_parses_to_what_web3_formats(delivered: Delivered) -> None:
    lean = rpc.make_client(delivered.node.rpc_url, 10, chain_id=DOMAIN)
    try:
        ours = await rpc.receipt(lean, delivered.tx)
        theirs = _plain(await delivered.w3.eth.get_transaction_receipt(delivered.tx))
        assert ours is not None and len(ours["logs"]) >= 3
        for key, value in theirs.items():  # every field web3 gives, the same value and type
            assert ours[key] == value, key
            assert type(ours[key]) is type(value), key
        assert await rpc.receipt(lean, "0x" + "00" * 32) is None  # unknown: None, as receipt_or_none says
        block = await delivered.w3.eth.get_block(theirs["blockNumber"])
        assert await rpc.block_header(lean, theirs["blockNumber"]) == {
            "number": block["number"], "hash": bytes(block["hash"]), "timestamp": block["timestamp"]}
        assert await rpc.block_header(lean, 10**9) is None  # beyond the head: none, as web3's BlockNotFound
        assert await rpc.block_number(lean) == await delivered.w3.eth.block_number
        gateway_logs = await rpc.get_logs(lean, {"address": delivered.gateway, "fromBlock": 0, "toBlock": "latest"})
        stock_logs = _plain(await delivered.w3.eth.get_logs({"address": delivered.gateway, "fromBlock": 0,
                                                             "toBlock": "latest"}))
        assert len(gateway_logs) == len(stock_logs) >= 3
        for ours_log, their_log in zip(gateway_logs, stock_logs):
            assert {k: ours_log[k] for k in their_log} == their_log
    finally:
        await lean.provider.disconnect()


async def test_the_status_of_each_message_comes_from_one_receipt(delivered: Delivered) -> None:
    adapter = delivered.adapter
    ids = [e.message_id for e in delivered.envelopes]
    states = [await adapter.delivery_status(delivered.tx, message_id=i) for i in ids]
    assert all(s.state is DeliveryState.CONFIRMED for s in states), states
    assert len(adapter._delivered_in) == 1  # the receipt's MessageDelivered logs were read once
    other = Envelope(MessageKind.TASK_REQUEST, 9, REMOTE, b"\x00" * 32, DOMAIN, b"\x00" * 32, b"").message_id
    status = await adapter.delivery_status(delivered.tx, message_id=other)
    assert status.state is DeliveryState.DROPPED and "did not deliver" in status.detail
    assert [await adapter.delivery_status_of(i) for i in ids] == [1, 1, 1]
    assert await adapter.is_delivered(ids[0]) and not await adapter.is_delivered(other)


async def test_eth_calls_in_one_batch_each_get_their_answer_or_their_revert(delivered: Delivered) -> None:
    adapter = delivered.adapter
    lean = rpc.make_client(delivered.node.rpc_url, 10, chain_id=DOMAIN)
    gateway = adapter._gateway
    status = lambda e: {"to": delivered.gateway, "data": adapter._delivery_status_selector + e.message_id.hex()}  # noqa: E731
    # retryFailed of a message whose handler did not fail: the gateway refuses (a custom error)
    refused = {"to": delivered.gateway, "data": gateway.functions.retryFailed(delivered.envelopes[0].encode())
               ._encode_transaction_data()}
    try:
        answers = await rpc.eth_calls(lean, [(status(delivered.envelopes[0]), "latest"), (refused, "latest"),
                                             (status(delivered.envelopes[2]), 0)])
        assert int.from_bytes(answers[0], "big") == 1
        assert answers[2] == b""  # block 0: no gateway yet
        assert isinstance(answers[1], ContractLogicError)
        expected = None
        try:
            await delivered.w3.eth.call(refused)
        except ContractLogicError as exc:  # what web3 raises for the same call
            expected = rpc.decode_revert(adapter.delivery_errors, rpc.revert_data(exc))
        assert expected and rpc.decode_revert(adapter.delivery_errors, rpc.revert_data(answers[1])) == expected
    finally:
        await lean.provider.disconnect()


async def test_requests_reuse_one_kept_alive_connection(delivered: Delivered) -> None:
    lean = rpc.make_client(delivered.node.rpc_url, 10, chain_id=DOMAIN)
    try:
        for _ in range(20):
            await rpc.block_number(lean)
            await lean.eth.get_balance(delivered.gateway)  # the web3 path uses the same session
        connector = lean.provider._session.connector
        # aiohttp's pool of idle connections: all forty requests went over one
        assert sum(len(idle) for idle in connector._conns.values()) == 1
    finally:
        await lean.provider.disconnect()


async def test_an_endpoint_on_another_chain_is_refused_or_skipped(delivered: Delivered) -> None:
    async with running_anvil(chain_id=4242) as other:
        wrong = EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=[other.rpc_url], ws_urls=[],
                         confirmations=0, contracts={"Gateway": delivered.gateway})
        adapter = EvmAdapter("evm", wrong, None, pool_attempts=1)
        with pytest.raises(EvmAdapterError, match=f"serves chain id 4242, the config says {DOMAIN}; point rpc_urls"):
            await adapter.start()
        await adapter.close()

        # Another chain first, the right one second: the second serves every read (failover); start refuses
        # the configuration still, since a reachable endpoint is on the wrong chain.
        both = wrong.model_copy(update={"rpc_urls": [other.rpc_url, delivered.node.rpc_url]})
        adapter = EvmAdapter("evm", both, None, pool_attempts=1)
        try:
            assert await adapter.delivery_status_of(delivered.envelopes[0].message_id) == 1
            health = adapter.health()
            assert not health[0].healthy and "serves chain id 4242" in (health[0].last_error or "")
            assert health[1].healthy
            with pytest.raises(EvmAdapterError, match="serves chain id 4242"):
                await adapter.start()
        finally:
            await adapter.close()

        # A chain id declared by a call is checked against the node (web3's validation, kept)
        stock = AsyncWeb3(AsyncHTTPProvider(other.rpc_url))
        lean = rpc.make_client(other.rpc_url, 10)  # no configured chain: only declared ids are checked
        try:
            assert await lean.eth.chain_id == 4242 == await stock.eth.chain_id
            with pytest.raises(Exception, match="declared chain ID 1, but the connected node is on 4242"):
                await lean.eth.call({"to": delivered.gateway, "data": "0x", "chainId": 1})
        finally:
            await lean.provider.disconnect()
            await stock.provider.disconnect()
