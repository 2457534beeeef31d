"""Issue #14's scenario in one test: an operator and a user on "a network that is not the localnet".

Bare chains (two anvils, the Solana localnet server) with nothing deployed; every key an encrypted
keystore with a password file, funded from a dev account / the faucet as an operator funds them; the
committee from `relay keys dkg` run by 4 processes; `relay deploy` on each chain (EVM with --owner);
`relay config check --online` passes and names the field of an edited address; the owner posts
delivery costs and the beneficiary with `relay fees`; attesters and a relayer (a payment policy that
refuses unpaid messages) run as child processes from that config; the SDK, given only URLs,
addresses, the committee's public file and the user's own keys, quotes and sends paid messages
EVM<->Solana and EVM<->EVM2; the relayer delivers them and refuses an unpaid one; the beneficiary
claims the fees; `relay committee rotate` to a second DKG's committee: a message signed by the old
committee lands during the grace (through the running daemons), and is refused by every chain after it.

The committee signs the prices the quotes read (ETH/USD, SOL/USD) with its DKG shares, pushed here as
`relay feed-push` would (feed rounds need price sources this test does not have).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import tomllib
from pathlib import Path

import aiohttp
import pytest
import tomli_w
from eth_account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from web3 import AsyncHTTPProvider, AsyncWeb3

import attest
from adapters.evm.deploy import contract, transact
from adapters.evm.devnet import AnvilProcess
from adapters.evm.feeds import EvmFeedTarget
from adapters.evm.gateway import deploy_recording_receiver
from adapters.registry import driver_for
from adapters.solana import deploy as solana_deploy
from adapters.solana.checks import deployment_problems as solana_deployment_problems
from adapters.solana.feeds import SolanaFeedTarget
from adapters.solana_localnet.testing import running_solana_localnet
from attest.committee import Committee
from attest.keystore import Secret, load_share_for
from relay.config import load_config
from relay.envelope import Envelope
from relay.feeds.report import FeedReport, encode_feed_id
from relay.feeds.signed import SignedReport
from relay.interfaces import MessageStatus
from relay.ports import free_port, free_port_block
from relay.processes import ChildProcess
from relay.protocol import MessageKind
from relay.sdk import TesseraClient, evm_chain, solana_chain
from tests.support.committee import sign_envelope
from tests.support.offnet import Phases, airdrop, delivery_outcome, fund_evm, keystore, relay, relay_ok, run_dkg, write_dkg_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "a long operator passphrase"
N, T = 4, 3
GRACE_S = 25  # the rotation's grace: long enough for one delivery through the daemons on a loaded machine
ETH_PRICE, SOL_PRICE = 3_456_50000000, 150_25000000  # 8 decimals
SOL_DOMAIN = 13375
# A delivery's cost as the owner posts it: Solana in lamports (signature fee + the receipt's rent), EVM in gas
# (docs/BENCHMARKS.md "Quote accuracy": ~310k gas + 728.5 gas/byte with the RecordingReceiver).
SOL_BASE, SOL_PER_BYTE = 5_000 + 2_000_000, 6_960
EVM_BASE, EVM_PER_BYTE = 310_000, 729


def test_an_operator_and_a_user_off_the_localnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_scenario(tmp_path, monkeypatch))


async def _scenario(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    phases = Phases()
    anvils = [AnvilProcess(port=free_port(), chain_id=31337 + k, block_time=0.25) for k in range(2)]
    await asyncio.gather(*(a.astart() for a in anvils))
    daemons: dict[str, ChildProcess] = {}
    try:
        async with running_solana_localnet(slot_ms=100, finality_slots=4) as solana:
            phases.done("bare chains up")
            await _play(tmp, anvils, solana, daemons, phases, monkeypatch)
    finally:
        for proc in daemons.values():
            proc.stop()
        await asyncio.gather(*(a.astop() for a in anvils))
        print("phases:\n" + phases.table())


def _config_text(anvils: list[AnvilProcess], solana, signer: dict[str, str], relayer_port: int) -> str:
    evm = "".join(
        f'[chains.{name}]\nkind = "evm"\ndomain = {a.chain_id}\nchain_id = {a.chain_id}\nrpc_urls = ["{a.rpc_url}"]\n'
        f'confirmations = 1\nsigner = {{ keystore = "{signer[name]}", password_file = "password" }}\n\n'
        for name, a in zip(("evm", "evm2"), anvils))
    return (
        "# Tessera on my chains (not the localnet)\n\n" + evm +
        f'[chains.sol]\nkind = "solana"\ndomain = {SOL_DOMAIN}\nrpc_urls = ["{solana.rpc_url}"]\n'
        f'ws_urls = ["{solana.ws_url}"]\ncommitment = "confirmed"\n'
        f'signer = {{ keystore = "{signer["sol"]}", password_file = "password" }}\n\n'
        '[committee]\nfile = "p1/committee.toml"\nshare = "p{index}/share-{index}.json"\npassword = { file = "password" }\n\n'
        f'[relayer]\nlisten = "127.0.0.1:{relayer_port}"\ndb = "relayer.db"\n\n'
        '[relayer.policy]\nmode = "minimum"\nminimum = { evm = 1, evm2 = 1, sol = 1 }\n')


async def _play(tmp: Path, anvils: list[AnvilProcess], solana, daemons: dict[str, ChildProcess], phases: Phases,
                monkeypatch: pytest.MonkeyPatch) -> None:
    op = tmp / "operator"
    keys = op / "keys"
    keys.mkdir(parents=True)
    password = op / "password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)

    # --- keys: every one a keystore; funded as an operator funds them -----------------------------------
    evm_deployer, evm_owner, evm_relayer = Account.create(), Account.create(), Account.create()
    sol_deployer, sol_relayer = Keypair(), Keypair()
    ks = {}
    for name, account in (("evm-deployer", evm_deployer), ("evm-owner", evm_owner), ("evm-relayer", evm_relayer)):
        ks[name] = keystore(keys, name, "evm", "0x" + bytes(account.key).hex(), PASSWORD)
    for name, pair in (("sol-deployer", sol_deployer), ("sol-relayer", sol_relayer)):
        ks[name] = keystore(keys, name, "solana", json.dumps(list(bytes(pair))), PASSWORD)
    user, user_sol = Account.create(), Keypair()  # the SDK user's own keys (never the operator's)
    await asyncio.gather(
        *(fund_evm(a.rpc_url, [evm_deployer.address, evm_owner.address, evm_relayer.address, user.address], 10**18)
          for a in anvils),
        airdrop(solana.rpc_url, [sol_deployer.pubkey(), sol_relayer.pubkey(), user_sol.pubkey()], 5 * 10**9))
    phases.done("keystores written and funded")

    # --- the committee: `relay keys dkg`, one process per member ---------------------------------------
    attester_base = free_port_block(N)
    attester_ports = [attester_base + i for i in range(N)]
    write_dkg_config(op / "dkg-1.toml", N, T, 1, attester_ports, session=f"offnet-1-{os.getpid()}")
    await asyncio.to_thread(run_dkg, op, op / "dkg-1.toml", N, password)
    old = Committee.load(op / "p1" / "committee.toml")
    assert (old.epoch, old.n, old.t) == (1, N, T)
    assert [m.endpoint for m in old.members] == [f"http://127.0.0.1:{p}" for p in attester_ports]
    phases.done("relay keys dkg (4 processes)")

    # --- relay deploy on each chain ----------------------------------------------------------------------
    config = op / "tessera.toml"
    relayer_port = free_port()
    config.write_text(_config_text(anvils, solana, {"evm": "keys/evm-relayer.json", "evm2": "keys/evm-relayer.json",
                                                    "sol": "keys/sol-relayer.json"}, relayer_port))
    cfg = ["--config", str(config)]
    evm_key = ["--keystore", str(ks["evm-deployer"]), "--password-file", str(password)]
    sol_key = ["--keystore", str(ks["sol-deployer"]), "--password-file", str(password)]
    runs = await asyncio.gather(
        *(asyncio.to_thread(relay, "deploy", *cfg, "--chain", name, *evm_key, "--owner", evm_owner.address)
          for name in ("evm", "evm2")),
        asyncio.to_thread(relay, "deploy", *cfg, "--chain", "sol", *sol_key))
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr[-3000:]
        print(run.stdout)
    assert 'deployment = "deployment.toml"' in config.read_text()
    phases.done("relay deploy x3")

    # The owner's view of the same deployment: its keys sign (EVM: --owner; Solana: the deployer is the
    # committee config's admin).
    owner_config = op / "owner.toml"
    owner_config.write_text(config.read_text().replace("keys/evm-relayer.json", "keys/evm-owner.json")
                            .replace("keys/sol-relayer.json", "keys/sol-deployer.json"))
    own = ["--config", str(owner_config)]
    # Two-step ownership: deploy proposed --owner; the owner takes the Gateway and the FeedStore over.
    def accept(name: str) -> None:  # one chain's transactions one after the other (one nonce sequence)
        for what in ("gateway", "feed-store"):
            relay_ok("admin", "accept-ownership", "--chain", name, "--contract", what, *own)

    await asyncio.gather(*(asyncio.to_thread(accept, name) for name in ("evm", "evm2")))
    chains = load_config(config).chains
    for name in ("evm", "evm2"):
        w3 = AsyncWeb3(AsyncHTTPProvider(chains[name].rpc_urls[0]))
        try:
            for key in ("Gateway", "FeedStore"):
                owner = await contract(w3, key, chains[name].contracts[key]).functions.owner().call()
                assert owner.lower() == evm_owner.address.lower(), (name, key, owner)
        finally:
            await w3.provider.disconnect()

    # --- relay config check --online: passes; an edited address is named ----------------------------------
    # The edit is made in a copy of the config and its deployment file, checked at the same time.
    deployment = op / "deployment.toml"
    evm_contracts = chains["evm"].contracts
    edited = tomllib.loads(deployment.read_text())  # the Gateway's address now points at the TaskBoardV2, a contract too
    edited["chains"]["evm"]["contracts"]["Gateway"] = evm_contracts["TaskBoardV2"]
    (op / "edited-deployment.toml").write_text(tomli_w.dumps(edited))
    edited_config = op / "edited.toml"
    edited_config.write_text(config.read_text().replace('deployment = "deployment.toml"',
                                                        'deployment = "edited-deployment.toml"'))
    check, bad = await asyncio.gather(asyncio.to_thread(relay, "config", "check", "--online", *cfg),
                                      asyncio.to_thread(relay, "config", "check", "--online", "--config",
                                                        str(edited_config)))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "OK, 3 chains, checked offline and online" in check.stdout, check.stdout
    assert bad.returncode == 1, bad.stdout
    assert (f"chains.evm.contracts.Gateway ({evm_contracts['TaskBoardV2']}): the code there is not Gateway as "
            "contracts/evm builds it" in bad.stdout), bad.stdout
    assert "1 problem" in bad.stdout, bad.stdout  # evm2 has the same addresses (same deployer and nonces): not named
    # The program at program_id is not this checkout's build (here: tessera.so rebuilt with one byte
    # changed after the deployment): the check names the field and says what to do.
    rebuilt = tmp / "rebuilt-tessera.so"
    code = bytearray(solana_deploy.PROGRAM_SO_PATH.read_bytes())
    code[len(code) // 2] ^= 0xFF
    rebuilt.write_bytes(bytes(code))
    with monkeypatch.context() as patch:
        patch.setattr(solana_deploy, "PROGRAM_SO_PATH", rebuilt)
        problems = await solana_deployment_problems("sol", chains["sol"], old)
    assert problems == [f"chains.sol.program_id ({chains['sol'].program_id}): the deployed code is not {rebuilt} "
                        f"({len(code)} bytes; the deployed program differs from byte {len(code) // 2}): upgrade the "
                        "program with this build (`relay deploy` against a program you own, or `solana program deploy` "
                        "with its upgrade authority), or check out the version that is deployed"], problems
    phases.done("relay config check --online (passes; edited copy fails)")

    # --- the owner: prices (committee-signed), delivery costs, the relayer as beneficiary ----------------
    secret = Secret.password(PASSWORD)
    shares = [load_share_for(old, op / f"p{i}" / f"share-{i}.json", secret) for i in old.indices]
    await asyncio.gather(_push_evm_prices(chains["evm"], evm_owner, old, shares, ("ETH/USD", "SOL/USD")),
                         _push_evm_prices(chains["evm2"], evm_owner, old, shares, ("ETH/USD",)),
                         _push_solana_prices(chains["sol"], sol_deployer, old, shares))
    gas_price = {name: await _gas_price(chains[name].rpc_urls[0]) for name in ("evm", "evm2")}

    def destination(src: str, dst: str, *, gas: int, base: int, per_byte: float, decimals: int, feed: str,
                    native: str) -> list[str]:
        return ["fees", "set-destination", "--chain", src, "--to", dst, "--gas-price", str(gas), "--base-gas",
                str(base), "--gas-per-byte", str(per_byte), "--decimals", str(decimals), "--price-feed", feed,
                "--native-feed", native, "--margin-bps", "1000", "--max-price-age", "3600", *own]

    owner_runs = await asyncio.gather(*(asyncio.to_thread(relay, *args) for args in (
        destination("evm", "sol", gas=1, base=SOL_BASE, per_byte=SOL_PER_BYTE, decimals=9, feed="SOL/USD",
                    native="ETH/USD"),
        destination("evm2", "evm", gas=gas_price["evm"], base=EVM_BASE, per_byte=EVM_PER_BYTE, decimals=18,
                    feed="ETH/USD", native="ETH/USD"),
        destination("sol", "evm", gas=gas_price["evm"], base=EVM_BASE, per_byte=EVM_PER_BYTE, decimals=18,
                    feed="ETH/USD", native="SOL/USD"))))
    for run in owner_runs:
        assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    owner_runs = await asyncio.gather(*(asyncio.to_thread(relay, *args) for args in (
        destination("evm", "evm2", gas=gas_price["evm2"], base=EVM_BASE, per_byte=EVM_PER_BYTE, decimals=18,
                    feed="ETH/USD", native="ETH/USD"),
        ["fees", "set-beneficiary", evm_relayer.address, "--chain", "evm2", *own],
        ["fees", "set-beneficiary", str(sol_relayer.pubkey()), "--chain", "sol", *own])))
    for run in owner_runs:
        assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    relay_ok("fees", "set-beneficiary", evm_relayer.address, "--chain", "evm", *own)
    phases.done("owner: prices, costs, beneficiaries")

    # --- daemons from that config: 4 attesters and the relayer, each `python -m relay.cli ...` -----------
    def spawn(name: str, args: list[str], health: str) -> ChildProcess:
        proc = ChildProcess(name, [sys.executable, "-m", "relay.cli", *args], op / "logs" / f"{name}.log",
                            env={**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": "info"},
                            health_url=health)
        proc.start()
        daemons[name] = proc
        return proc

    async def start_attesters() -> None:
        procs = {i: spawn(f"attester-{i}", ["attester", "--index", str(i), *cfg], f"{old.member(i).endpoint}/health")
                 for i in old.indices}
        await asyncio.gather(*(_wait_health(p) for p in procs.values()))

    async def start_relayer() -> None:
        await _wait_health(spawn("relayer", ["run", *cfg], f"http://127.0.0.1:{relayer_port}/health"))

    await asyncio.gather(start_attesters(), start_relayer())
    phases.done("daemons started")
    # The next committee's DKG (epoch 2, the same members and attester endpoints) runs meanwhile.
    write_dkg_config(op / "dkg-2.toml", N, T, 2, attester_ports, session=f"offnet-2-{os.getpid()}")
    next_dkg = asyncio.ensure_future(asyncio.to_thread(run_dkg, op, op / "dkg-2.toml", N, password, "q{index}"))

    # --- the SDK as a user: URLs, addresses, the committee's public file, the user's own keys -----------
    receivers = {}
    for name in ("evm", "evm2"):
        w3 = AsyncWeb3(AsyncHTTPProvider(chains[name].rpc_urls[0]))
        try:  # the user's application contract
            receivers[name] = bytes(12) + bytes.fromhex((await deploy_recording_receiver(
                w3, user, chains[name].contracts["Gateway"]))[2:])
        finally:
            await w3.provider.disconnect()
    receivers["sol"] = bytes(Keypair().pubkey())
    sdk_chains = {
        name: evm_chain(chains[name].rpc_urls, chain_id=chains[name].chain_id, gateway=chains[name].contracts["Gateway"],
                        confirmations=1) for name in ("evm", "evm2")}
    sdk_chains["sol"] = solana_chain(chains["sol"].rpc_urls, program_id=chains["sol"].program_id, domain=SOL_DOMAIN,
                                     ws_urls=chains["sol"].ws_urls, commitment="confirmed")
    user_signers = {"evm": user, "evm2": user, "sol": user_sol}
    routes = [("evm", "sol"), ("sol", "evm"), ("evm", "evm2"), ("evm2", "evm")]
    payload = b"paid message from a user " * 4
    async with TesseraClient.connect(sdk_chains, committee=op / "p1" / "committee.toml",
                                     relayer_url=f"http://127.0.0.1:{relayer_port}") as client:
        quotes = {route: await client.quote(*route, payload) for route in routes}
        assert all(q > 0 for q in quotes.values()), quotes
        assert await client.quote("evm2", "sol", payload) == 0  # no delivery cost posted for this route: unpaid
        before = await _balances(chains, user, user_sol)
        paid = {}
        for src, dst in routes:
            paid[(src, dst)] = await client.send(src, dst, receivers[dst], payload, signer=user_signers[src])
        unpaid = await client.send("evm2", "sol", receivers["sol"], b"a free ride", signer=user)
        delivered = await asyncio.gather(*(client.wait_delivered(m, timeout=120) for m in paid.values()))
        assert [d.chain for d in delivered] == [dst for _, dst in routes]
        phases.done("SDK: 4 paid messages quoted, sent, delivered")

        # Each paid what it was quoted (the user's balance fell by the quote plus the transaction's cost).
        after = await _balances(chains, user, user_sol)
        assert before["sol"] - after["sol"] >= quotes[("sol", "evm")]
        assert before["evm"] - after["evm"] >= quotes[("evm", "sol")] + quotes[("evm", "evm2")]

        # The unpaid one: refused by the relayer's policy, never delivered, counted, in `relay status`.
        await _until_dead(relayer_port, unpaid.id_hex)
        status = relay_ok("status", unpaid.id_hex, *cfg)
        assert "refused_unpaid" in status and "unpaid: paid 0, below relayer.policy.minimum.evm2 = 1" in status, status
        assert not await client.is_delivered(unpaid)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{relayer_port}/metrics") as resp:
                metrics = await resp.text()
        assert f'tessera_relayer_refused_unpaid_total{{src_domain="{chains["evm2"].domain}"}} 1.0' in metrics
        phases.done("unpaid message refused by policy")

        # --- rotation: the next committee from a second DKG, approved by every member ------------------
        await next_dkg
        new = Committee.load(op / "q1" / "committee.toml")
        assert new.epoch == 2 and new.group_key != old.group_key
        text = config.read_text()
        config.write_text(text.replace('password = { file = "password" }\n',
                                       f'password = {{ file = "password" }}\nnext = "q1/committee.toml"\n'
                                       f'next_grace_s = {GRACE_S}\n', 1))
        check = relay("config", "check", *cfg)
        assert check.returncode == 0, check.stdout
        for i in old.indices:
            daemons[f"attester-{i}"].stop()
        await start_attesters()
        phases.done("second DKG, next approved, attesters restarted")
        out = relay_ok("committee", "rotate", *cfg, "--new-committee", str(op / "q1" / "committee.toml"),
                       "--new-share", "q{index}/share-{index}.json", "--grace", str(GRACE_S))
        for name in ("evm", "evm2", "sol"):
            assert f"{name}: epoch 1 -> 2" in out, out
        verifiers = {name: driver_for(name, chain).rotation() for name, chain in chains.items()}
        try:
            states = {name: await v.state() for name, v in verifiers.items()}
            assert all((s.epoch, s.group_key, s.previous_epoch) == (2, new.group_key, 1) for s in states.values())
            phases.done("relay committee rotate (3 chains)")

            # During the grace: the running daemons (still the old committee's keys) deliver to the chains
            # rotated last (the grace of the first one started earliest), paid like any message.
            grace_payload = b"old committee, in grace"
            in_grace = {}
            for dst in ("sol", "evm2"):
                quotes[("evm", dst, "grace")] = await client.quote("evm", dst, grace_payload)
                in_grace[dst] = await client.send("evm", dst, receivers[dst], grace_payload, signer=user)
            await asyncio.gather(*(client.wait_delivered(m, timeout=GRACE_S) for m in in_grace.values()))
            for dst, sent in in_grace.items():
                epoch, signature = await client.committee_signature(sent)
                assert epoch == 1 and client.verify(sent.envelope, epoch, signature)
                assert time.time() < states[dst].previous_valid_until, f"delivered on {dst} after its grace?"
            phases.done("old committee's messages delivered in the grace")

            # --- the beneficiary (the relayer's accounts) claims, while the grace runs out ------------
            daemons["relayer"].stop()  # idle now; its accounts claim, and send the late deliveries below

            async def grace_over() -> None:
                for name, verifier in verifiers.items():  # each chain's own clock
                    while (await verifier.state()).chain_time <= states[name].previous_valid_until:
                        await asyncio.sleep(0.5)

            claims = await asyncio.gather(*(asyncio.to_thread(relay_ok, "fees", "claim", "--chain", name, *cfg)
                                            for name in ("evm", "evm2", "sol")))
            expected = {"evm": quotes[("evm", "sol")] + quotes[("evm", "evm2")] + quotes[("evm", "sol", "grace")]
                        + quotes[("evm", "evm2", "grace")], "evm2": quotes[("evm2", "evm")], "sol": quotes[("sol", "evm")]}
            for name, out in zip(("evm", "evm2", "sol"), claims):
                beneficiary = str(sol_relayer.pubkey()) if name == "sol" else evm_relayer.address
                assert f"{name}: claimed {expected[name]} to the beneficiary {beneficiary}" in out, out
            phases.done("relay fees claim x3")
            await grace_over()
            phases.done("grace over")

            # After the grace the old committee's signature is refused everywhere; the new one's lands.
            rotated = load_config(config)
            assert Committee.load(rotated.committee.file).epoch == 2
            refusal = {"evm": "EpochExpired", "evm2": "EpochExpired", "sol": "EPOCH_EXPIRED"}
            source = {"evm": "sol", "evm2": "evm", "sol": "evm"}
            for name, chain in rotated.chains.items():
                adapter = driver_for(name, chain).messaging()
                await adapter.start()
                try:
                    late = Envelope(kind=MessageKind.DATA, nonce=int.from_bytes(os.urandom(4), "big"),
                                    src_domain=chains[source[name]].domain, src_sender=os.urandom(32),
                                    dst_domain=chain.domain, dst_receiver=receivers[name], payload=b"old, too late")
                    outcome = await delivery_outcome(adapter, late, 1, sign_envelope(old, shares, late))
                    assert outcome.startswith(("refused: ", "reverted: ")) and refusal[name] in outcome, outcome
                    assert await adapter.message_status(late.message_id) is MessageStatus.NOT_DELIVERED
                    # The new committee's signature lands (the same chain, the same account).
                    new_shares = [load_share_for(new, op / f"q{i}" / f"share-{i}.json", secret) for i in new.indices]
                    fresh = Envelope(kind=MessageKind.DATA, nonce=late.nonce + 1, src_domain=late.src_domain,
                                     src_sender=late.src_sender, dst_domain=chain.domain, dst_receiver=receivers[name],
                                     payload=b"new committee")
                    assert await delivery_outcome(adapter, fresh, 2, sign_envelope(new, new_shares, fresh)) == "delivered"
                finally:
                    await adapter.close()
            phases.done("old committee refused after the grace, new one lands")
        finally:
            for verifier in verifiers.values():
                await verifier.close()


async def _wait_health(proc: ChildProcess, timeout: float = 60.0) -> None:
    async def probe() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            async with session.get(proc.health_url) as resp:
                resp.raise_for_status()

    await proc.wait_ready(probe, timeout)


async def _gas_price(url: str) -> int:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        return await w3.eth.gas_price
    finally:
        await w3.provider.disconnect()


async def _balances(chains, user, user_sol: Keypair) -> dict[str, int]:
    w3 = AsyncWeb3(AsyncHTTPProvider(chains["evm"].rpc_urls[0]))
    try:
        evm = await w3.eth.get_balance(user.address)
    finally:
        await w3.provider.disconnect()
    from solana.rpc.async_api import AsyncClient

    async with AsyncClient(chains["sol"].rpc_urls[0]) as rpc:
        sol = (await rpc.get_balance(user_sol.pubkey(), commitment="confirmed")).value
    return {"evm": evm, "sol": sol}


async def _until_dead(relayer_port: int, id_hex: str, timeout: float = 60.0) -> None:
    """Until the relayer's API shows the message as a dead letter."""
    deadline = time.monotonic() + timeout
    shown: dict = {}
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"http://127.0.0.1:{relayer_port}/v1/messages/{id_hex}") as resp:
                shown = await resp.json() if resp.status == 200 else {}
            if shown.get("stage") == "dead":
                return
            await asyncio.sleep(0.3)
    raise AssertionError(f"{id_hex} not a dead letter within {timeout}s: {shown}")


def _signed_report(committee: Committee, shares: list, feed_id: str, round_: int, price: int, now_ms: int) -> SignedReport:
    report = FeedReport(feed_id, round_, price, confidence=1_000_000, decimals=8, observations=3,
                        observed_at=now_ms - 1000, published_at=now_ms)
    digest = report.digest(committee.epoch)
    signature = attest.combine_signatures([attest.partial_sign(share, digest) for share in shares[:committee.t]])
    return SignedReport(report, committee.epoch, signature)


async def _push_evm_prices(chain, owner, committee: Committee, shares: list, feed_ids: tuple[str, ...]) -> None:
    """The owner registers the feeds in the FeedStore; the committee's signed reports are pushed."""
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_urls[0]))
    try:
        store_address = chain.contracts["FeedStore"]
        store = contract(w3, "FeedStore", store_address)
        target = EvmFeedTarget(w3, owner, store_address)
        now_ms = (await w3.eth.get_block("latest"))["timestamp"] * 1000
        for feed_id in feed_ids:
            registered, _decimals, latest, _observed = await store.functions.feed(encode_feed_id(feed_id)).call()
            if not registered:
                await transact(w3, owner, store.functions.registerFeed(encode_feed_id(feed_id), 8, feed_id))
            price = {"ETH/USD": ETH_PRICE, "SOL/USD": SOL_PRICE}[feed_id]
            pushed = await target.push(_signed_report(committee, shares, feed_id, latest + 1, price, now_ms))
            assert isinstance(pushed, str), f"{feed_id} not stored: {pushed}"
    finally:
        await w3.provider.disconnect()


async def _push_solana_prices(chain, payer: Keypair, committee: Committee, shares: list) -> None:
    target = SolanaFeedTarget(chain.rpc_urls, payer, Pubkey.from_string(chain.program_id), name="sol")
    now_ms = int(time.time() * 1000)
    try:
        for feed_id, price in (("ETH/USD", ETH_PRICE), ("SOL/USD", SOL_PRICE)):
            current = await target.latest(feed_id)
            round_ = (current.round + 1) if current is not None else 1
            pushed = await target.push(_signed_report(committee, shares, feed_id, round_, price, now_ms))
            assert isinstance(pushed, str), f"{feed_id} not stored on Solana: {pushed}"
    finally:
        await target.close()
