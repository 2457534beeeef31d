"""Two-step ownership from the operator's side: `relay admin accept-ownership` and the owners in
`relay admin status`, against one anvil with a Gateway and a FeedStore (the contracts' own checks are
forge's: contracts/evm/test/Ownership.t.sol). Every refusal is made before anything is sent: the
refused account's nonce stays 0. The whole `relay deploy --owner` path: tests/e2e/test_deploy.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm import deploy as evm_deploy
from adapters.evm.deployment import accept_ownership, ownership
from adapters.evm.devnet import ANVIL_DEV_KEYS, AnvilProcess
from adapters.evm.gateway import evm_keystore
from adapters.registry import accept_ownership as accept_on_chain
from adapters.registry import contract_owners
from relay.cli import main
from relay.config import EvmChain, KeyRef, SolanaChain
from relay.deployment import DeploymentError
from relay.errors import ConfigError
from relay.ports import free_port

pytestmark = pytest.mark.slow

DEPLOYER, OWNER, STRANGER = (Account.from_key(k) for k in ANVIL_DEV_KEYS[:3])  # a fresh anvil per test
ZERO = "0x" + "00" * 20


def _key(tmp: Path, account: Any) -> KeyRef:
    path = tmp / f"{account.address}.key"
    path.write_text("0x" + bytes(account.key).hex())
    return KeyRef(file=path, allow_raw=True)


async def _call(url: str, fn: Any) -> Any:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        return await fn(w3)
    finally:
        await w3.provider.disconnect()


async def _deploy(url: str) -> dict[str, str]:
    async def run(w3: AsyncWeb3) -> dict[str, str]:
        # No call reaches the verifier here: any non-zero address stands in for it.
        gateway = await evm_deploy.deploy(w3, DEPLOYER, "Gateway", 31337, STRANGER.address, 0, DEPLOYER.address)
        store = await evm_deploy.deploy(w3, DEPLOYER, "FeedStore", STRANGER.address, DEPLOYER.address)
        probe = await evm_deploy.deploy(w3, DEPLOYER, "Probe")
        return {"Gateway": gateway, "FeedStore": store, "Probe": probe}
    return await _call(url, run)


async def _transfer(url: str, name: str, address: str, to: str, by: Any = DEPLOYER) -> None:
    await _call(url, lambda w3: evm_deploy.transact(
        w3, by, evm_deploy.contract(w3, name, address).functions.transferOwnership(to)))


async def _owner(url: str, name: str, address: str) -> str:
    return await _call(url, lambda w3: evm_deploy.contract(w3, name, address).functions.owner().call())


async def _nonce(url: str, address: str) -> int:
    return await _call(url, lambda w3: w3.eth.get_transaction_count(address))


def test_only_the_pending_owner_takes_over(tmp_path: Path) -> None:
    with AnvilProcess(port=free_port(), chain_id=31337) as node:
        url = node.rpc_url
        evm_deploy.ensure_built()
        deployed = asyncio.run(_deploy(url))
        contracts = {k: deployed[k] for k in ("Gateway", "FeedStore")}
        chain = EvmChain(kind="evm", domain=31337, chain_id=31337, rpc_urls=[url], contracts=contracts)
        stranger, owner, deployer = _key(tmp_path, STRANGER), _key(tmp_path, OWNER), _key(tmp_path, DEPLOYER)

        # Nothing proposed: a stranger is told so; the owner itself has nothing to accept.
        with pytest.raises(DeploymentError, match=f"Gateway {contracts['Gateway']} on chain evm has no ownership "
                           rf"transfer pending \(its owner is {DEPLOYER.address}\): the owner proposes one first"):
            asyncio.run(accept_ownership("evm", chain, "gateway", stranger))
        assert asyncio.run(accept_ownership("evm", chain, "gateway", deployer)) == (contracts["Gateway"], None)

        for name, address in contracts.items():
            asyncio.run(_transfer(url, name, address, OWNER.address))
        assert asyncio.run(contract_owners("evm", chain)) == {
            name: (address, DEPLOYER.address, OWNER.address) for name, address in contracts.items()}

        # The attack: a stranger, then the owner that proposed, accept in the proposed owner's place.
        for who, ref in ((STRANGER, stranger), (DEPLOYER, deployer)):
            nonce = asyncio.run(_nonce(url, who.address))
            with pytest.raises(DeploymentError) as refused:
                asyncio.run(accept_on_chain("evm", chain, "feed-store", ref))
            assert (f"FeedStore {contracts['FeedStore']} on chain evm awaits acceptOwnership() from {OWNER.address} "
                    f"(proposed by its owner {DEPLOYER.address}), but the key given is {who.address}'s: run with "
                    f"{OWNER.address}'s key (--keystore FILE --password-file FILE, or --key FILE)") == str(refused.value)
            assert asyncio.run(_nonce(url, who.address)) == nonce, "a refused accept sends nothing"
        assert asyncio.run(_owner(url, "FeedStore", contracts["FeedStore"])) == DEPLOYER.address

        # The proposed owner takes the Gateway; the old owner has lost its switch.
        address, tx = asyncio.run(accept_ownership("evm", chain, "gateway", owner))
        assert address == contracts["Gateway"] and tx is not None and tx.startswith("0x")
        assert asyncio.run(_owner(url, "Gateway", contracts["Gateway"])) == OWNER.address
        with pytest.raises(evm_deploy.TransactionReverted, match=f"NotOwner\\({DEPLOYER.address.lower()}\\)"):
            asyncio.run(_call(url, lambda w3: evm_deploy.transact(
                w3, DEPLOYER, evm_deploy.contract(w3, "Gateway", contracts["Gateway"]).functions.pause())))

        # A cancelled proposal cannot be accepted any more.
        asyncio.run(_transfer(url, "FeedStore", contracts["FeedStore"], ZERO))
        with pytest.raises(DeploymentError, match=rf"has no ownership transfer pending \(its owner is {DEPLOYER.address}\)"):
            asyncio.run(accept_ownership("evm", chain, "feed-store", owner))

        # What cannot be accepted at all: another contract name, one not recorded, other code.
        with pytest.raises(DeploymentError, match="--contract 'verifier': give one of gateway, feed-store"):
            asyncio.run(accept_ownership("evm", chain, "verifier", owner))
        bare = chain.model_copy(update={"contracts": {"Gateway": contracts["Gateway"]}})
        with pytest.raises(DeploymentError, match=r"chains.evm.contracts has no FeedStore: deploy it first"):
            asyncio.run(accept_ownership("evm", bare, "feed-store", owner))
        probe = chain.model_copy(update={"contracts": {"Gateway": deployed["Probe"]}})
        with pytest.raises(DeploymentError, match=r"answers no owner\(\) and pendingOwner\(\): not a Gateway"):
            asyncio.run(accept_ownership("evm", probe, "gateway", owner))
        assert asyncio.run(ownership("evm", bare)) == {"Gateway": (contracts["Gateway"], OWNER.address, None)}


def test_the_cli_accepts_with_a_keystore_and_shows_the_owners(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with AnvilProcess(port=free_port(), chain_id=31337) as node:
        evm_deploy.ensure_built()
        contracts = asyncio.run(_deploy(node.rpc_url))
        asyncio.run(_transfer(node.rpc_url, "Gateway", contracts["Gateway"], OWNER.address))
        config = tmp_path / "tessera.toml"
        config.write_text(f'[chains.evm]\nkind = "evm"\ndomain = 31337\nchain_id = 31337\nrpc_urls = ["{node.rpc_url}"]\n'
                          f'[chains.evm.contracts]\nGateway = "{contracts["Gateway"]}"\nFeedStore = "{contracts["FeedStore"]}"\n')
        keystore, _ = evm_keystore("0x" + bytes(OWNER.key).hex(), "pw")
        (tmp_path / "owner.json").write_text(json.dumps(keystore))
        (tmp_path / "pw").write_text("pw\n")

        assert main(["admin", "status", "--chain", "evm", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert (f"Gateway {contracts['Gateway']}: owner {DEPLOYER.address}, pending owner {OWNER.address} (it takes "
                "over with `relay admin accept-ownership --chain evm --contract gateway` signed with its key)") in out
        assert f"FeedStore {contracts['FeedStore']}: owner {DEPLOYER.address}, no ownership transfer pending" in out

        accept = ["admin", "accept-ownership", "--chain", "evm", "--contract", "gateway", "--config", str(config)]
        assert main([*accept, "--keystore", str(tmp_path / "owner.json")]) == 1
        assert "--keystore needs --password-file or --password-env" in capsys.readouterr().err
        assert main([*accept, "--key", str(tmp_path / "missing.key"), "--password-file", str(tmp_path / "pw")]) == 1
        assert "--password-file/--password-env unlock a --keystore" in capsys.readouterr().err
        assert main([*accept]) == 1  # the config has no signer for this chain
        assert "chains.evm has no signer: sign with the proposed owner's key" in capsys.readouterr().err
        with pytest.raises(SystemExit):  # one key only
            main([*accept, "--key", "a", "--keystore", "b"])
        capsys.readouterr()

        assert main([*accept, "--keystore", str(tmp_path / "owner.json"), "--password-file", str(tmp_path / "pw")]) == 0
        assert f"evm: gateway {contracts['Gateway']} ownership accepted (tx 0x" in capsys.readouterr().out
        assert asyncio.run(_owner(node.rpc_url, "Gateway", contracts["Gateway"])) == OWNER.address
        assert main(["admin", "status", "--chain", "evm", "--config", str(config)]) == 0
        assert (f"Gateway {contracts['Gateway']}: owner {OWNER.address}, no ownership transfer pending"
                in capsys.readouterr().out)


def test_a_solana_chain_has_one_admin_to_accept() -> None:
    # The Solana handover itself (ProposeAdmin / AcceptAdmin): tests/unit/test_solana_admin_handover.py, e2e test_deploy.
    chain = SolanaChain(kind="solana", domain=13375, rpc_urls=["http://127.0.0.1:1"])
    with pytest.raises(ConfigError, match="chains.sol is a Solana chain: its program has one admin .*--contract gateway"):
        asyncio.run(accept_on_chain("sol", chain, "feed-store", KeyRef(env="UNUSED", allow_raw=True)))
    with pytest.raises(DeploymentError, match="chains.sol has no program_id: deploy the program first"):
        asyncio.run(accept_on_chain("sol", chain, "gateway", KeyRef(env="UNUSED", allow_raw=True)))
    with pytest.raises(DeploymentError, match="chains.sol has no program_id"):
        asyncio.run(contract_owners("sol", chain))
