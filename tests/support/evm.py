"""EVM tests on a real anvil: a fresh node with a dealt committee and its CommitteeVerifier deployed,
and the raw JSON-RPC calls tests use to steer the node (mine, snapshot, reorg)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3

import attest
from adapters.evm import deploy as evm_deploy
from adapters.evm.devnet import AnvilProcess, _rpc, running_anvil
from tests.support.waiting import wait_for


@dataclass
class AnvilWithCommittee:
    node: AnvilProcess
    w3: AsyncWeb3
    committee: attest.Committee
    shares: list[attest.KeyShare]
    verifier: str  # the CommitteeVerifier's address

    @property
    def deployer(self) -> str:
        """The private key that deployed the verifier (anvil's account 0)."""
        return self.node.private_keys[0]


@asynccontextmanager
async def anvil_with_committee(domain: int, epoch: int, n: int = 4, t: int = 3,
                               **deal_options: Any) -> AsyncIterator[AnvilWithCommittee]:
    """Contracts built, a t-of-n committee dealt at `epoch` (`deal_options` go to `attest.deal`), a
    fresh anvil with the committee's CommitteeVerifier for `domain` deployed by account 0. The node
    stops and the web3 client closes on exit."""
    await asyncio.to_thread(evm_deploy.ensure_built)
    committee, shares = attest.deal(n, t, epoch=epoch, **deal_options)
    async with running_anvil() as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        try:
            verifier = await evm_deploy.deploy(w3, node.private_keys[0], "CommitteeVerifier", domain, epoch,
                                               committee.n, committee.t, committee.group_key)
            yield AnvilWithCommittee(node, w3, committee, shares, verifier)
        finally:
            await w3.provider.disconnect()


def rpc(node: AnvilProcess, method: str, *params: Any) -> Any:
    """One raw JSON-RPC call to the node (anvil_*, evm_* and eth_* methods)."""
    return _rpc(node.rpc_url, method, list(params), timeout=10)


def mine(node: AnvilProcess, blocks: int = 1) -> None:
    for _ in range(blocks):
        rpc(node, "evm_mine")


class WatchPasses:
    """Counts the watch passes of an EVM gateway adapter (a task board watches through its gateway
    adapter): each pass asks for the final block first. `await passes.whole()` returns once a pass
    that began after the call has ended, so whatever the chain held at the call has been looked at:
    "nothing yielded yet" is then a fact, not a guess after a sleep."""

    def __init__(self, adapter: Any) -> None:
        self.count = 0
        final_block = adapter.final_block

        async def counted() -> int:
            self.count += 1
            return await final_block()

        adapter.final_block = counted

    async def whole(self, timeout: float = 30.0) -> None:
        start = self.count
        await wait_for(lambda: self.count >= start + 2, timeout, what="a whole watch pass over the chain as it is")
