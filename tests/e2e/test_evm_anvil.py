"""adapters/evm/devnet.py against the real anvil binary: readiness, options, clean shutdown."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm import devnet as anvil

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); stop() reaps, so a remaining entry would be a bug.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


async def test_running_anvil_answers_and_leaves_nothing_behind() -> None:
    async with anvil.running_anvil(chain_id=4242) as node:
        pid = node.pid
        assert pid is not None and _alive(pid)
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        assert await w3.eth.chain_id == 4242
        accounts = await w3.eth.accounts
        assert accounts[:3] == [w3.eth.account.from_key(k).address for k in node.private_keys[:3]]
        assert await w3.eth.get_balance(accounts[0]) > 0
    assert not _alive(pid)
    assert anvil.port_is_free(node.host, node.port)


async def test_second_anvil_on_same_port_is_refused() -> None:
    async with anvil.running_anvil() as node:
        with pytest.raises(anvil.PortInUseError, match=f"port {node.port} on 127.0.0.1 is in use"):
            await anvil.AnvilProcess(port=node.port).astart()


def test_sync_use_and_state_dir_survive_a_restart(tmp_path: Path) -> None:
    port = anvil.free_port()
    with anvil.AnvilProcess(port=port, state_dir=tmp_path) as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))

        async def send() -> int:
            sender = w3.eth.account.from_key(node.private_keys[0])
            tx = {"to": "0x000000000000000000000000000000000000dEaD", "value": 12345, "gas": 21000,
                  "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 1, "nonce": 0, "chainId": 31337}
            tx_hash = await w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
            await w3.eth.wait_for_transaction_receipt(tx_hash)
            return await w3.eth.block_number

        assert asyncio.run(send()) == 1
    assert (tmp_path / "anvil-state.json").exists()
    with anvil.AnvilProcess(port=port, state_dir=tmp_path) as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))

        async def read() -> tuple[int, int]:
            return await w3.eth.block_number, await w3.eth.get_balance("0x000000000000000000000000000000000000dEaD")

        block, balance = asyncio.run(read())
    assert block >= 1
    assert balance == 12345


async def test_block_time_mines_without_transactions() -> None:
    async with anvil.running_anvil(block_time=0.2) as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        first = await w3.eth.block_number
        await asyncio.sleep(0.7)
        assert await w3.eth.block_number >= first + 2


async def test_anvil_that_exits_early_reports_its_output() -> None:
    with pytest.raises(anvil.AnvilStartError, match="exited with status"):
        async with anvil.running_anvil(extra_args=["--no-such-flag"]):
            pass
