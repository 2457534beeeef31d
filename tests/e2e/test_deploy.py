"""`relay deploy` as an operator runs it, against chains with nothing deployed: a bare anvil and a bare
Solana localnet server, deployer keys that are not dev keys (encrypted keystores, funded by the test
from a dev account / the faucet as an operator funds them), the command run as a user types it; then
the EVM owner takes the Gateway and the FeedStore over with `relay admin accept-ownership` (a
stranger's accept refused), and the Solana program's admin likewise (`relay deploy --owner PUBKEY`
proposes, the owner accepts and pauses, the deployer's key is refused; the upgrade authority handed
over with SetAuthorityChecked from its keypair file), `relay config check --online` passes, a second `relay deploy` deploys nothing, an edited address is
refused by both commands, and the bad inputs get their messages.

One setup (two nodes, one deployment per chain) serves every check, to keep the module near 60 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w
from eth_account import Account
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.deploy import contract
from adapters.evm.devnet import ANVIL_DEV_KEYS, AnvilProcess
from adapters.registry import encrypt_hot_key
from adapters.solana.deploy import programdata_authority
from adapters.solana.program import CommitteeConfig, committee_address, programdata_address
from adapters.solana_localnet.testing import running_solana_localnet
from attest.dealer import deal
from solders.pubkey import Pubkey
from relay.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
EVM_FUNDING = 10**18  # 1 ETH: what a testnet faucet gives
SOLANA_FUNDING = 5 * 10**9  # 5 SOL


def relay(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": "warning"}
    return subprocess.run([sys.executable, "-m", "relay.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def _keystore(tmp: Path, name: str, kind: str, key_text: str) -> Path:
    keystore, _ = encrypt_hot_key(kind, key_text, PASSWORD)
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(keystore))
    return path


async def _fund_evm(url: str, address: str, wei: int) -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        dev = Account.from_key(ANVIL_DEV_KEYS[0])
        tx = {"to": address, "value": wei, "gas": 21_000, "gasPrice": await w3.eth.gas_price,
              "nonce": await w3.eth.get_transaction_count(dev.address), "chainId": await w3.eth.chain_id}
        sent = await w3.eth.send_raw_transaction(dev.sign_transaction(tx).raw_transaction)
        await w3.eth.wait_for_transaction_receipt(sent)
    finally:
        await w3.provider.disconnect()


async def _airdrop(url: str, pubkey: Pubkey, lamports: int) -> None:
    async with AsyncClient(url, commitment=Confirmed) as client:
        sig = (await client.request_airdrop(pubkey, lamports)).value
        await client.confirm_transaction(sig, commitment=Confirmed)


async def _owner_of(url: str, name: str, address: str) -> str:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        return await contract(w3, name, address).functions.owner().call()
    finally:
        await w3.provider.disconnect()


async def _upgrade_authority(url: str, program_id: str) -> Pubkey | None:
    async with AsyncClient(url, commitment=Confirmed) as client:
        data = (await client.get_account_info(programdata_address(Pubkey.from_string(program_id)))).value
        return programdata_authority(bytes(data.data))


async def _take_ownership(tmp: Path, config: Path, url: str, contracts: dict[str, str], deployer: str, owner: str,
                          owner_ks: Path) -> None:
    """Two-step ownership: `relay deploy --owner` only proposed; the deployer still owns both contracts
    until the owner accepts with `relay admin accept-ownership`. A stranger's accept is refused before
    anything is sent, naming who is pending."""
    for name in ("Gateway", "FeedStore"):
        assert await _owner_of(url, name, contracts[name]) == deployer
    await _fund_evm(url, owner, EVM_FUNDING // 10)
    stranger = Account.create()
    (tmp / "stranger.key").write_text("0x" + bytes(stranger.key).hex())
    owner_key = ["--keystore", str(owner_ks), "--password-file", str(tmp / "password")]
    accept = ["admin", "accept-ownership", "--chain", "evm", "--config", str(config)]
    stranger_key = ["--key", str(tmp / "stranger.key")]
    # Concurrently, on different contracts (so each outcome is fixed): the stranger tries the FeedStore
    # while the owner accepts the Gateway (and `relay admin status` shows the FeedStore still pending);
    # then the owner accepts the FeedStore while the stranger tries the Gateway the owner now holds.
    refused, accepted, status = await asyncio.gather(
        asyncio.to_thread(relay, *accept, "--contract", "feed-store", *stranger_key),
        asyncio.to_thread(relay, *accept, "--contract", "gateway", *owner_key),
        asyncio.to_thread(relay, "admin", "status", "--chain", "evm", "--config", str(config)))
    assert status.returncode == 0, status.stderr
    assert (f"FeedStore {contracts['FeedStore']}: owner {deployer}, pending owner {owner} (it takes over with `relay "
            "admin accept-ownership --chain evm --contract feed-store`") in status.stdout, status.stdout
    assert refused.returncode == 1, refused.stdout
    assert (f"FeedStore {contracts['FeedStore']} on chain evm awaits acceptOwnership() from {owner} (proposed by its "
            f"owner {deployer}), but the key given is {stranger.address}'s: run with {owner}'s key") in refused.stderr, \
        refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert f"gateway {contracts['Gateway']} ownership accepted (tx 0x" in accepted.stdout, accepted.stdout
    store, late = await asyncio.gather(
        asyncio.to_thread(relay, *accept, "--contract", "feed-store", *owner_key),
        asyncio.to_thread(relay, *accept, "--contract", "gateway", *stranger_key))
    assert store.returncode == 0, store.stderr
    assert late.returncode == 1 and f"has no ownership transfer pending (its owner is {owner})" in late.stderr, late.stderr
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        for name in ("Gateway", "FeedStore"):
            owned = contract(w3, name, contracts[name])
            assert await owned.functions.owner().call() == owner
            assert int(await owned.functions.pendingOwner().call(), 16) == 0
    finally:
        await w3.provider.disconnect()


async def _take_solana_admin(tmp: Path, config: Path, url: str, program_id: str, deployer: Pubkey, owner: Keypair,
                             deployer_key: list[str]) -> None:
    """The Solana program's admin, two steps: `relay deploy --owner` proposed it (the deployer stays
    the admin meanwhile); a stranger's accept is refused naming who is pending; the owner accepts,
    pauses and unpauses with `relay admin`; the deployer's key is refused from then on."""
    started = time.monotonic()
    await _airdrop(url, owner.pubkey(), SOLANA_FUNDING // 100)  # AcceptAdmin's fee payer
    stranger = Keypair()
    for who, key in (("sol-owner", owner), ("sol-stranger", stranger)):
        (tmp / f"{who}.json").write_text(json.dumps(list(bytes(key))))
    cfg = ["--chain", "sol", "--config", str(config)]
    owner_key, stranger_key = ["--key", str(tmp / "sol-owner.json")], ["--key", str(tmp / "sol-stranger.json")]
    refused, status = await asyncio.gather(
        asyncio.to_thread(relay, "admin", "accept-ownership", *cfg, "--contract", "gateway", *stranger_key),
        asyncio.to_thread(relay, "admin", "status", *cfg))
    assert refused.returncode == 1, refused.stdout
    assert (f"the admin of program {program_id} on chain sol awaits AcceptAdmin from {owner.pubkey()} (proposed by the "
            f"admin {deployer}), but the key given is {stranger.pubkey()}") in refused.stderr, refused.stderr
    assert status.returncode == 0, status.stderr
    assert (f"program admin {program_id}: owner {deployer}, pending owner {owner.pubkey()} (it takes over with `relay "
            "admin accept-ownership --chain sol --contract gateway`") in status.stdout, status.stdout
    accepted = relay("admin", "accept-ownership", *cfg, "--contract", "gateway", *owner_key)
    assert accepted.returncode == 0, accepted.stderr
    assert f"sol: gateway {program_id} ownership accepted (tx " in accepted.stdout, accepted.stdout
    old, paused = await asyncio.gather(asyncio.to_thread(relay, "admin", "pause", *cfg, *deployer_key),
                                       asyncio.to_thread(relay, "admin", "pause", *cfg, *owner_key))
    assert old.returncode == 1 and "NOT_ADMIN" in old.stderr, old.stdout + old.stderr
    assert paused.returncode == 0 and "sol: gateway paused" in paused.stdout, paused.stderr
    unpaused = relay("admin", "unpause", *cfg, *owner_key)
    assert unpaused.returncode == 0 and "sol: gateway unpaused" in unpaused.stdout, unpaused.stderr
    async with AsyncClient(url, commitment=Confirmed) as client:
        account = (await client.get_account_info(committee_address(Pubkey.from_string(program_id))[0])).value
    state = CommitteeConfig.decode(bytes(account.data))
    assert state.admin == owner.pubkey() and state.pending_admin is None and not state.paused
    print(f"Solana admin handover through the CLI: {time.monotonic() - started:.1f} s")


def test_relay_deploy_on_bare_chains(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp: Path) -> None:
    anvil = AnvilProcess(port=free_port(), chain_id=31337)
    await anvil.astart()
    try:
        async with running_solana_localnet(slot_ms=100, finality_slots=4) as solana:
            await _with_chains(tmp, anvil, solana)
    finally:
        await anvil.astop()


async def _with_chains(tmp: Path, anvil: AnvilProcess, solana) -> None:
    committee, _ = deal(4, 3, 1)
    committee.save(tmp / "committee.toml")
    (tmp / "password").write_text(PASSWORD + "\n")
    evm_deployer = Account.create()
    sol_deployer = Keypair()
    evm_ks = _keystore(tmp, "evm-deployer", "evm", "0x" + bytes(evm_deployer.key).hex())
    sol_ks = _keystore(tmp, "solana-deployer", "solana", json.dumps(list(bytes(sol_deployer))))
    owner_account = Account.create()
    owner = owner_account.address
    owner_ks = _keystore(tmp, "owner", "evm", "0x" + bytes(owner_account.key).hex())
    authority_keypair = Keypair()
    authority = authority_keypair.pubkey()
    (tmp / "upgrade-authority.json").write_text(json.dumps(list(bytes(authority_keypair))))
    sol_owner = Keypair()
    config = tmp / "tessera.toml"
    config.write_text(
        "# my network (not the localnet)\n\n"
        f'[chains.evm]\nkind = "evm"\ndomain = 31337\nchain_id = 31337\nrpc_urls = ["{anvil.rpc_url}"]\n\n'
        f'[chains.sol]\nkind = "solana"\ndomain = 13375\nrpc_urls = ["{solana.rpc_url}"]\nws_urls = ["{solana.ws_url}"]\n'
        'commitment = "confirmed"\n\n'
        '[committee]\nfile = "committee.toml"\n\n'
        '[feeds."ETH/USD"]\ndecimals = 8\ndescription = "ETH / USD"\n'
        '[[feeds."ETH/USD".sources]]\nkind = "http_json"\nname = "exchange"\n'
        'url = "https://prices.example.invalid/eth"\nprice_path = "price"\n')
    evm_key = ["--keystore", str(evm_ks), "--password-file", str(tmp / "password")]
    sol_key = ["--keystore", str(sol_ks), "--password-file", str(tmp / "password")]
    base = ["deploy", "--config", str(config)]

    # Bad inputs first, on the bare chains: each one refused with what to do, nothing deployed.
    unfunded, unfunded_sol = await asyncio.gather(asyncio.to_thread(relay, *base, "--chain", "evm", *evm_key),
                                                  asyncio.to_thread(relay, *base, "--chain", "sol", *sol_key))
    assert unfunded.returncode == 1
    assert f"the deployer {evm_deployer.address} holds 0.000000 ETH on chain evm" in unfunded.stderr, unfunded.stderr
    assert "fund it" in unfunded.stderr
    assert unfunded_sol.returncode == 1
    assert f"the deployer {sol_deployer.pubkey()} holds 0.000000 SOL on chain sol" in unfunded_sol.stderr
    assert "(rent included): fund it" in unfunded_sol.stderr, unfunded_sol.stderr
    raw = tmp / "raw.key"
    raw.write_text("0x" + bytes(evm_deployer.key).hex())
    refused_raw = relay(*base, "--chain", "evm", "--key-file", str(raw))
    assert refused_raw.returncode == 1 and "is an unencrypted key: encrypt it with `relay keys import" in refused_raw.stderr
    unknown = relay(*base, "--chain", "nope", *evm_key)
    assert unknown.returncode == 1 and "no chain 'nope' under [chains]" in unknown.stderr and "evm, sol" in unknown.stderr
    wrong_id = tmp / "wrong-id.toml"
    wrong_id.write_text(config.read_text().replace("domain = 31337\nchain_id = 31337", "domain = 1\nchain_id = 1"))
    mismatch = relay("deploy", "--config", str(wrong_id), "--chain", "evm", *evm_key)
    assert mismatch.returncode == 1
    assert f"chains.evm.rpc_urls[0] ({anvil.rpc_url}) serves chain id 31337, but chains.evm.chain_id is 1" in mismatch.stderr
    down = tmp / "down.toml"
    dead = f"http://127.0.0.1:{free_port()}"
    down.write_text(config.read_text().replace(solana.rpc_url, dead))
    unreachable = relay("deploy", "--config", str(down), "--chain", "sol", *sol_key)
    assert unreachable.returncode == 1
    assert f"chains.sol.rpc_urls[0] ({dead}) does not answer" in unreachable.stderr, unreachable.stderr
    no_committee = tmp / "no-committee.toml"
    no_committee.write_text(config.read_text().replace('file = "committee.toml"', 'file = "missing.toml"'))
    missing = relay("deploy", "--config", str(no_committee), "--chain", "evm", *evm_key)
    assert missing.returncode == 1 and "missing.toml does not exist: run `relay keys dkg`" in missing.stderr
    assert not (tmp / "deployment.toml").exists()

    # Funded as an operator funds a deployer: from a dev account / the faucet.
    await _fund_evm(anvil.rpc_url, evm_deployer.address, EVM_FUNDING)
    await _airdrop(solana.rpc_url, sol_deployer.pubkey(), SOLANA_FUNDING)

    evm_run, sol_run = await asyncio.gather(
        asyncio.to_thread(relay, *base, "--chain", "evm", *evm_key, "--owner", owner),
        asyncio.to_thread(relay, *base, "--chain", "sol", *sol_key, "--owner", str(sol_owner.pubkey()),
                          "--upgrade-authority", str(tmp / "upgrade-authority.json")))
    assert evm_run.returncode == 0, evm_run.stderr + evm_run.stdout
    assert sol_run.returncode == 0, sol_run.stderr + sol_run.stdout
    print(evm_run.stdout, sol_run.stdout, sep="\n")  # the figures of docs/BENCHMARKS.md "Deployment cost"
    for what in ("CommitteeVerifier", "Gateway", "TaskBoardV2", "FeedStore + 1 feed"):
        assert f"  {what} " in evm_run.stdout and "deployed" in evm_run.stdout
    assert "gas" in evm_run.stdout and "total:" in evm_run.stdout
    assert "TaskBoardV2 as flat-fee sender" in evm_run.stdout  # the board forwards the flat fee when it sends
    for what, flag in (("Gateway", "gateway"), ("FeedStore", "feed-store")):  # only proposed: the owner accepts
        assert f"  {what} ownership " in evm_run.stdout and "(awaiting acceptOwnership)" in evm_run.stdout
        assert (f"to take it over: `relay admin accept-ownership --chain evm --contract {flag}` with its key"
                in evm_run.stdout), evm_run.stdout
    for what in ("program (upgradeable loader)", "committee (InitCommittee)", "gateway (InitGateway)",
                 "admin (ProposeAdmin)", "upgrade authority (SetAuthorityChecked)"):
        assert what in sol_run.stdout, sol_run.stdout
    assert "(awaiting AcceptAdmin)" in sol_run.stdout and (
        f"{sol_owner.pubkey()} must accept the program's admin (pause, fees) to take it over: `relay admin "
        "accept-ownership --chain sol --contract gateway` with its key") in sol_run.stdout, sol_run.stdout
    assert "lamports" in sol_run.stdout and "(rent included)" in sol_run.stdout

    # The config now includes the deployment file; its comment survived.
    text = config.read_text()
    assert text.startswith("# my network (not the localnet)\n") and 'deployment = "deployment.toml"' in text
    deployment = tomllib.loads((tmp / "deployment.toml").read_text())
    contracts = deployment["chains"]["evm"]["contracts"]
    assert set(contracts) == {"CommitteeVerifier", "Gateway", "TaskBoardV2", "FeedStore", "Aggregator:ETH/USD"}
    program_id = deployment["chains"]["sol"]["program_id"]
    assert deployment["deployed"]["sol"]["upgrade_authority"] == str(authority)
    assert await _upgrade_authority(solana.rpc_url, program_id) == authority
    await asyncio.gather(
        _take_ownership(tmp, config, anvil.rpc_url, contracts, evm_deployer.address, owner, owner_ks),
        _take_solana_admin(tmp, config, solana.rpc_url, program_id, sol_deployer.pubkey(), sol_owner, sol_key))

    check = relay("config", "check", "--online", "--config", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "OK, 2 chains, checked offline and online" in check.stdout, check.stdout

    # A second run finds everything and sends nothing.
    again = await asyncio.gather(
        asyncio.to_thread(relay, *base, "--chain", "evm", *evm_key, "--owner", owner),
        asyncio.to_thread(relay, *base, "--chain", "sol", *sol_key, "--owner", str(sol_owner.pubkey()),
                          "--upgrade-authority", str(authority)))
    for run in again:
        assert run.returncode == 0, run.stderr + run.stdout
        assert "nothing to deploy: everything is in place" in run.stdout, run.stdout
    assert tomllib.loads((tmp / "deployment.toml").read_text())["chains"] == deployment["chains"]

    # A config whose committee is not the one the chains hold: refused on both, nothing sent (an
    # attacker's or a stale committee file must not silently get a verifier of its own).
    other, _ = deal(4, 3, 1)
    other.save(tmp / "other-committee.toml")
    swapped = tmp / "swapped.toml"
    swapped.write_text(config.read_text().replace('file = "committee.toml"', 'file = "other-committee.toml"'))
    refusals = await asyncio.gather(
        asyncio.to_thread(relay, "deploy", "--config", str(swapped), "--chain", "evm", *evm_key),
        asyncio.to_thread(relay, "deploy", "--config", str(swapped), "--chain", "sol", *sol_key))
    for run, where in zip(refusals, ("contracts.CommitteeVerifier", "committee account")):
        assert run.returncode == 1, run.stdout
        assert where in run.stderr and "not the config's committee" in run.stderr, run.stderr
        assert "rotate the chain's committee" in run.stderr

    # A run killed midway: EVM after its Gateway was recorded; Solana after the program was deployed
    # but before its id was recorded (only the program keypair file was written). The next run deploys
    # the rest and finds the program at the keypair's id.
    killed = {"chains": {"evm": {"contracts": {k: contracts[k] for k in ("CommitteeVerifier", "Gateway")}}}}
    (tmp / "deployment.toml").write_text(tomli_w.dumps(killed))
    evm_resume, sol_resume = await asyncio.gather(
        asyncio.to_thread(relay, *base, "--chain", "evm", *evm_key, "--owner", owner),
        asyncio.to_thread(relay, *base, "--chain", "sol", *sol_key, "--upgrade-authority", str(authority)))
    assert evm_resume.returncode == 0 and sol_resume.returncode == 0, evm_resume.stderr + sol_resume.stderr
    sent = {line.split()[0] for line in evm_resume.stdout.splitlines() if " deployed " in line}
    assert sent == {"TaskBoardV2", "FeedStore"}, evm_resume.stdout
    assert f"CommitteeVerifier    found       {contracts['CommitteeVerifier']}" in evm_resume.stdout
    assert f"Gateway              found       {contracts['Gateway']}" in evm_resume.stdout
    assert f"found       {program_id}" in sol_resume.stdout and "deployed by an interrupted run" in sol_resume.stdout
    assert "nothing to deploy: everything is in place" in sol_resume.stdout, sol_resume.stdout
    deployment = tomllib.loads((tmp / "deployment.toml").read_text())
    contracts = deployment["chains"]["evm"]["contracts"]
    assert deployment["chains"]["sol"]["program_id"] == program_id

    # An edited address: the Gateway's now points at the TaskBoardV2, a contract too.
    edited = dict(deployment)
    edited["chains"] = {**deployment["chains"], "evm": {"contracts": {**contracts, "Gateway": contracts["TaskBoardV2"]}}}
    (tmp / "deployment.toml").write_text(tomli_w.dumps(edited))
    bad = relay("config", "check", "--online", "--config", str(config))
    assert bad.returncode == 1
    assert (f"chains.evm.contracts.Gateway ({contracts['TaskBoardV2']}): the code there is not Gateway as contracts/evm "
            "builds it" in bad.stdout), bad.stdout
    refused = relay(*base, "--chain", "evm", *evm_key)
    assert refused.returncode == 1
    assert f"chains.evm.contracts.Gateway ({contracts['TaskBoardV2']}): the code there is not Gateway" in refused.stderr
    assert "remove the entry to deploy a new one" in refused.stderr


def test_a_program_upload_killed_midway_is_completed_from_its_buffer(tmp_path: Path) -> None:
    """A run killed during the buffer writes (simulated: the buffer created with the kept buffer
    keypair and half of the chunks written, as the killed run left them) is completed by the next
    run: the same buffer, only the missing chunks written, the program deployed with exactly
    tessera.so (the deployment checks its ProgramData)."""
    asyncio.run(_killed_upload(tmp_path))


async def _killed_upload(tmp: Path) -> None:
    from adapters.solana import deploy as solana_deploy
    from adapters.solana.deployment import deploy_tessera, load_or_create_keypair
    from relay.config import KeyRef, SolanaChain
    from relay.deployment import DeployRequest
    from solders.system_program import CreateAccountParams, create_account

    async with running_solana_localnet(slot_ms=100, finality_slots=4) as solana:
        payer_file = tmp / "payer.json"
        payer = load_or_create_keypair(payer_file)
        await _airdrop(solana.rpc_url, payer.pubkey(), SOLANA_FUNDING)
        keys = tmp / "keys"
        buffer = load_or_create_keypair(keys / "sol-buffer.json")
        program = solana_deploy.load_program_bytes()
        chunk = solana_deploy._write_chunk_size(payer, buffer.pubkey())
        offsets = list(range(0, len(program), chunk))
        async with AsyncClient(solana.rpc_url, commitment=Confirmed) as client:
            size = solana_deploy._BUFFER_METADATA_LEN + len(program)
            rent = (await client.get_minimum_balance_for_rent_exemption(size)).value
            await solana_deploy.send_instructions(client, payer, [
                create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=buffer.pubkey(), lamports=rent,
                                                   space=size, owner=solana_deploy.BPF_LOADER_UPGRADEABLE_ID)),
                solana_deploy.initialize_buffer_ix(buffer.pubkey(), payer.pubkey())], [buffer])
            written = offsets[::2]  # every other chunk: what was confirmed before the kill, in any order
            for offset in written:
                await solana_deploy.send_instructions(client, payer, [solana_deploy.write_ix(
                    buffer.pubkey(), payer.pubkey(), offset, program[offset:offset + chunk])])
            before = len((await client.get_signatures_for_address(payer.pubkey(), limit=1000)).value)

            committee, _ = deal(4, 3, 1)
            chain = SolanaChain(kind="solana", domain=13375, rpc_urls=[solana.rpc_url], commitment="confirmed")
            report = await deploy_tessera("sol", chain, DeployRequest(
                deployer=KeyRef(file=payer_file, allow_raw=True), committee=committee, feeds={}, owner=None,
                upgrade_authority=None, recorded={}, keys_dir=keys, record=lambda fields: None))
            after = len((await client.get_signatures_for_address(payer.pubkey(), limit=1000)).value)
            assert (await client.get_account_info(buffer.pubkey())).value is None  # consumed by the deployment
        # The missing chunks (a chunk of zeros is already what the fresh buffer holds), the deployment,
        # InitCommittee, InitGateway: nothing written twice.
        missing = [o for o in offsets if o not in written and program[o:o + chunk].strip(b"\0")]
        assert after - before == len(missing) + 3, (after - before, len(offsets), len(written), len(missing))
        assert [s.action for s in report.steps] == ["deployed", "initialized", "initialized", "kept"]
        assert report.fields["program_id"] == str(load_or_create_keypair(keys / "sol-program.json").pubkey())
