"""The toolchain end to end: forge (through the solcjs wrapper) builds, Python deploys to anvil."""

from __future__ import annotations

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm import deploy as evm_deploy
from adapters.evm.devnet import running_anvil
from relay.envelope import keccak256

pytestmark = pytest.mark.e2e


async def test_probe_deploys_stores_emits_and_hashes() -> None:
    evm_deploy.ensure_built()
    async with running_anvil() as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        key = node.private_keys[0]
        address = await evm_deploy.deploy(w3, key, "Probe")
        assert await w3.eth.get_code(address) != b""

        probe = evm_deploy.contract(w3, "Probe", address)
        assert await probe.functions.value().call() == 0
        data = b"tessera probe \x00\xff"
        assert await probe.functions.hash(data).call() == keccak256(data)

        receipt = await evm_deploy.transact(w3, key, probe.functions.set(42))
        assert receipt["status"] == 1
        assert await probe.functions.value().call() == 42
        (event,) = probe.events.ValueSet().process_receipt(receipt)
        assert event["args"]["value"] == 42
        assert event["args"]["setter"] == w3.eth.account.from_key(key).address


async def test_reverting_deployment_names_the_error() -> None:
    evm_deploy.ensure_built()
    async with running_anvil() as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        with pytest.raises(evm_deploy.TransactionReverted, match=r"deployment of CommitteeVerifier reverted: PointAtInfinity\(\)"):
            await evm_deploy.deploy(w3, node.private_keys[0], "CommitteeVerifier", 31337, 1, 4, 3, bytes(128))
        # With an explicit gas limit the transaction is mined and fails: the reason is recovered by replay.
        with pytest.raises(evm_deploy.TransactionReverted, match=r"BadThreshold\(2, 3\)") as info:
            await evm_deploy.deploy(w3, node.private_keys[0], "CommitteeVerifier", 31337, 1, 2, 3, bytes(128), gas=3_000_000)
        assert info.value.receipt is not None and info.value.receipt["status"] == 0
