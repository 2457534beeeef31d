"""The EVM transaction manager (adapters/evm/tx.py) against a real anvil: nonces, the fee rule,
replacement of stuck transactions (same nonce, fees +12.5 %), receipts through the endpoint pool,
a nonce taken by another transaction, and a nonce gap healed after the node lost our transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from web3 import AsyncWeb3

from adapters.endpoints import EndpointPool
from adapters.evm.devnet import AnvilProcess, free_port, running_anvil
from adapters.evm.rpc import endpoint_pool, make_client
from adapters.evm.tx import (GAS_MULTIPLIER, Mined, NonceTaken, NonceUsed, Replaced, TxManager, TxNotMined, Waiting,
                             bump, current_fees)

pytestmark = pytest.mark.e2e


@dataclass
class Node:
    anvil: AnvilProcess
    w3: AsyncWeb3
    pool: EndpointPool[AsyncWeb3]

    async def rpc(self, method: str, *params: Any) -> Any:
        response = await self.w3.provider.make_request(method, list(params))
        return response.get("result")

    def manager(self, key_index: int = 1, pool: EndpointPool[AsyncWeb3] | None = None) -> TxManager:
        return TxManager((pool or self.pool).call, Account.from_key(self.anvil.private_keys[key_index]), name="test",
                         poll_interval=0.02)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    async with running_anvil() as anvil:
        pool = endpoint_pool("test", [anvil.rpc_url], timeout=5.0)
        w3 = make_client(anvil.rpc_url, 5.0)
        try:
            yield Node(anvil, w3, pool)
        finally:
            await w3.provider.disconnect()
            for client in pool.clients:
                await client.provider.disconnect()


class NoAutomine:
    def __init__(self, node: Node) -> None:
        self.node = node

    async def __aenter__(self) -> None:
        await self.node.rpc("evm_setAutomine", False)

    async def __aexit__(self, *exc: object) -> None:
        await self.node.rpc("evm_setAutomine", True)


async def _pending_pool(node: Node) -> list[dict]:
    content = await node.rpc("txpool_content")
    return [tx for by_nonce in content["pending"].values() for tx in by_nonce.values()]


async def test_sends_with_consecutive_nonces_and_the_fee_rule(node: Node) -> None:
    txm = node.manager()
    address = txm.signer.address
    start = await node.w3.eth.get_transaction_count(address)
    fee, tip = await current_fees(txm.call)
    first = await txm.send(await txm.transaction(address, "0x", 1))
    second = await txm.send(await txm.transaction(address, "0x", 2))
    assert (first.nonce, second.nonce) == (start, start + 1)
    tx = await node.w3.eth.get_transaction(first.original)
    assert tx["type"] == 2 and tx["maxPriorityFeePerGas"] == tip and tx["maxFeePerGas"] >= tip
    assert tx["gas"] == int(21_000 * GAS_MULTIPLIER)
    mined = await txm.wait(second, 10)
    assert isinstance(mined, Mined) and mined.tx_hash == second.original and mined.receipt["status"] == 1
    # Once seen mined, a check asks that version's receipt only.
    again = await txm.check(second)
    assert isinstance(again, Mined) and again.receipt["blockNumber"] == mined.receipt["blockNumber"]


async def test_a_stuck_transaction_is_replaced_with_its_nonce_and_bumped_fees(node: Node) -> None:
    txm = node.manager()
    address = txm.signer.address
    async with NoAutomine(node):
        sent = await txm.send(await txm.transaction(address, "0x", 1))
        original = await node.w3.eth.get_transaction(sent.original)
        waiting = await txm.check(sent, stuck_after=60)
        assert isinstance(waiting, Waiting) and waiting.tx_hash == sent.original
        replaced = await txm.check(sent, stuck_after=0)
        assert isinstance(replaced, Replaced) and sent.replacements == [replaced.tx_hash]
        bumped = await node.w3.eth.get_transaction(replaced.tx_hash)
        assert bumped["nonce"] == original["nonce"]
        assert bumped["maxFeePerGas"] >= bump(original["maxFeePerGas"])
        assert bumped["maxPriorityFeePerGas"] >= bump(original["maxPriorityFeePerGas"])
        # The replacement took the original's place in the pool: one transaction, not two.
        assert [int(tx["nonce"], 16) for tx in await _pending_pool(node)] == [original["nonce"]]
        await node.rpc("evm_mine")
    mined = await txm.check(sent)
    assert isinstance(mined, Mined) and mined.tx_hash == replaced.tx_hash
    assert await txm.receipt(sent.original) is None


async def test_a_new_transaction_can_take_an_unmined_ones_nonce(node: Node) -> None:
    txm = node.manager()
    address = txm.signer.address
    async with NoAutomine(node):
        stuck = await txm.send(await txm.transaction(address, "0x", 1))
        newer = await txm.send(await txm.transaction(address, "0x", 2), replacing=stuck)
        assert newer.nonce == stuck.nonce and newer.hashes[:-1] == stuck.hashes
        assert int(newer.tx["maxPriorityFeePerGas"]) >= bump(int(stuck.tx["maxPriorityFeePerGas"]))
        await node.rpc("evm_mine")
    mined = await txm.wait(newer, 10)
    assert mined.tx_hash == newer.latest
    assert (await node.w3.eth.get_transaction(mined.tx_hash))["value"] == 2
    # The stuck one is mined now (as its replacement): a send "replacing" it takes a fresh nonce.
    fresh = await txm.send(await txm.transaction(address, "0x", 3), replacing=newer)
    assert fresh.nonce == newer.nonce + 1 and fresh.hashes == [fresh.original]


async def test_a_nonce_used_by_another_transaction_is_reported(node: Node) -> None:
    txm = node.manager()
    account = txm.signer
    async with NoAutomine(node):
        sent = await txm.send(await txm.transaction(account.address, "0x", 1))
        await node.rpc("anvil_dropTransaction", sent.original)
        other = account.sign_transaction({"to": account.address, "value": 7, "nonce": sent.nonce, "gas": 21_000,
                                          "chainId": node.anvil.chain_id, "maxFeePerGas": 10**10,
                                          "maxPriorityFeePerGas": 10**9})
        await node.w3.eth.send_raw_transaction(other.raw_transaction)
        await node.rpc("evm_mine")
    assert await txm.check(sent) == NonceUsed(sent.nonce)
    with pytest.raises(NonceTaken, match=f"nonce {sent.nonce}"):
        await txm.wait(sent, 5)


async def test_waiting_gives_up_at_the_deadline_and_a_lost_nonce_is_reused(node: Node) -> None:
    txm = node.manager()
    address = txm.signer.address
    async with NoAutomine(node):
        lost = await txm.send(await txm.transaction(address, "0x", 1))
        with pytest.raises(TxNotMined, match=lost.original):
            await txm.wait(lost, 0.2)
        # The node forgets it (a mempool under pressure): the next send heals the gap.
        await node.rpc("anvil_dropTransaction", lost.original)
        healed = await txm.send(await txm.transaction(address, "0x", 2))
        assert healed.nonce == lost.nonce
        await node.rpc("evm_mine")
    assert (await txm.wait(healed, 10)).receipt["status"] == 1


async def test_receipts_are_polled_through_the_endpoint_pool(node: Node) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    pool = endpoint_pool("test", [dead, node.anvil.rpc_url], timeout=2.0)
    try:
        txm = node.manager(pool=pool)
        sent = await txm.send(await txm.transaction(txm.signer.address, "0x", 1))
        assert (await txm.wait(sent, 10)).receipt["status"] == 1
        first, second = pool.health()
        assert first.url == dead and first.total_errors >= 1 and not first.healthy
        assert second.healthy and second.total_errors == 0
    finally:
        for client in pool.clients:
            await client.provider.disconnect()


async def test_a_transaction_the_node_lost_is_sent_again_before_it_counts_as_stuck(node: Node, monkeypatch) -> None:
    """anvil can drop a transaction it accepted while mining a block (foundry-rs/foundry#10122; a real
    node's mempool evicts): a burst's last deliveries waited for STUCK_AFTER (30 s) until re-sent.
    The check finds the node no longer knows it and sends the same signed bytes again."""
    from adapters.evm import tx as evm_tx

    txm = node.manager()
    address = txm.signer.address
    async with NoAutomine(node):
        sent = await txm.send(await txm.transaction(address, "0x", 1))
        await node.rpc("anvil_dropTransaction", sent.original)
        assert await node.rpc("eth_getTransactionByHash", sent.original) is None  # lost by the node
        waiting = await txm.check(sent, stuck_after=60)  # not looked for yet: too early
        assert isinstance(waiting, Waiting) and await node.rpc("eth_getTransactionByHash", sent.original) is None
        monkeypatch.setattr(evm_tx, "LOST_CHECK_S", 0.0)
        waiting = await txm.check(sent, stuck_after=60)
        assert isinstance(waiting, Waiting) and sent.hashes == [sent.original]  # the same transaction, not a new one
        assert (await node.rpc("eth_getTransactionByHash", sent.original))["nonce"] == hex(sent.nonce)
        # A transaction the node still has is left alone (no second send).
        sends: list[str] = []
        real_send = evm_tx.send_signed

        async def counting(call, signer, tx):
            sends.append(tx["nonce"])
            return await real_send(call, signer, tx)
        monkeypatch.setattr(evm_tx, "send_signed", counting)
        assert isinstance(await txm.check(sent, stuck_after=60), Waiting) and sends == []
        await node.rpc("evm_mine")
    mined = await txm.check(sent)
    assert isinstance(mined, Mined) and mined.tx_hash == sent.original and mined.receipt["status"] == 1
