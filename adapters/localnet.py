"""Chain-specific steps of `relay localnet up`: command lines, funding, deployment, config.

relay/localnet.py owns the lifecycle (processes, state directory, detach); this module owns what
needs web3 and solana-py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.evm.devnet import ANVIL_DEV_KEYS
from adapters.solana.devnet import load_or_create_keypair
from attest.files import write_atomic
from relay.config import (CommitteeRef, EvmChain, FeedPushSection, FeedRoundSection, FeedServerSection, KeyRef,
                          RelayerSection, SolanaChain, TesseraConfig, dump_config)
from relay.log import get_logger

if TYPE_CHECKING:
    from relay.localnet import LocalnetOptions

log = get_logger("localnet.deploy")

SOLANA_PAYER_LAMPORTS = 1_000 * 10**9


def anvil_argv(binary: Path, host: str, port: int, chain_id: int, block_time: float | None) -> list[str]:
    argv = [str(binary), "--host", host, "--port", str(port), "--chain-id", str(chain_id), "--silent"]
    if block_time:
        argv += ["--block-time", str(block_time)]
    return argv


def solana_argv(host: str, rpc_port: int, ws_port: int, slot_ms: int, finality_slots: int) -> list[str]:
    return [
        sys.executable, "-m", "adapters.solana_localnet",
        "--host", host,
        "--rpc-port", str(rpc_port),
        "--ws-port", str(ws_port),
        "--slot-ms", str(slot_ms),
        "--finality-slots", str(finality_slots),
    ]


def _write_secret(path: Path, text: str) -> None:
    write_atomic(path, text, 0o600)  # mode 0600 from the first byte


COMMITTEE_EPOCH = 1


def deal_committee(options: "LocalnetOptions", keys_dir: Path):
    """A trusted dealer is fine for a localnet; real committees run `relay keys dkg`."""
    from attest.committee import Committee
    from attest.dealer import deal_to_directory
    from attest.keystore import generate_key_file, read_key_file

    committee_dir = keys_dir / "committee"
    committee_file = committee_dir / "committee.toml"
    key_file = keys_dir / "committee.key"
    if committee_file.exists() and key_file.exists():
        committee = Committee.load(committee_file)
        same_endpoints = [m.endpoint for m in committee.members] == [
            f"http://{options.host}:{options.attester_base_port + i}" for i in range(options.committee_n)]
        if committee.n == options.committee_n and committee.t == options.committee_t and same_endpoints:
            return committee  # keep the committee across restarts of the same state directory
    secret = read_key_file(key_file) if key_file.exists() else generate_key_file(key_file)
    endpoints = [f"http://{options.host}:{options.attester_base_port + i}" for i in range(options.committee_n)]
    committee = deal_to_directory(committee_dir, options.committee_n, options.committee_t, COMMITTEE_EPOCH, secret,
                                  endpoints, force=True)
    log.info("committee dealt", n=committee.n, t=committee.t, epoch=committee.epoch)
    return committee


async def deploy_evm(options: "LocalnetOptions", keys_dir: Path, committee, evm_domain: int) -> dict[str, str]:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters.evm import deploy as evm_deploy
    from adapters.evm.gateway import deploy_gateway, deploy_recording_receiver
    from adapters.evm.taskboard import deploy_task_board

    await asyncio.to_thread(evm_deploy.ensure_built)  # forge build when sources changed
    _write_secret(keys_dir / "evm-deployer.key", ANVIL_DEV_KEYS[0] + "\n")
    _write_secret(keys_dir / "evm-relayer.key", ANVIL_DEV_KEYS[1] + "\n")
    _write_secret(keys_dir / "evm-user.key", ANVIL_DEV_KEYS[3] + "\n")  # the SDK's sender
    w3 = AsyncWeb3(AsyncHTTPProvider(options.evm_rpc_url))
    account = w3.eth.account.from_key(ANVIL_DEV_KEYS[0])
    try:
        contracts = {
            "Probe": await evm_deploy.deploy(w3, account, "Probe"),
            "CommitteeVerifier": await evm_deploy.deploy(
                w3, account, "CommitteeVerifier", evm_domain, committee.epoch, committee.n, committee.t,
                committee.group_key,
            ),
        }
        contracts["Gateway"] = await deploy_gateway(w3, account, contracts["CommitteeVerifier"], evm_domain)
        # A receiver that records what it is handed: the demo's and the tests' destination.
        contracts["RecordingReceiver"] = await deploy_recording_receiver(w3, account, contracts["Gateway"])
        # Both task-board roles; PROOF_ATTESTATIONs count only from the committee (domain 0, sender 0).
        contracts["TaskBoard"] = await deploy_task_board(w3, account, contracts["Gateway"], attestation_grace=300)
        contracts.update(await _deploy_localnet_feeds(w3, account, keys_dir, contracts["CommitteeVerifier"]))
    finally:
        await w3.provider.disconnect()
    log.info("evm contracts deployed", **contracts)
    return contracts


# --- feeds: the market the evm_pool source reads, the feed store and its aggregators ---------------

RECORDINGS = Path(__file__).resolve().parents[1] / "configs/recordings"
PUSHER_FUNDING_WEI = 100 * 10**18


def localnet_feeds(pool: str | None) -> dict:
    """The localnet's [feeds]: ETH/USD from the simulated pool and a recording, BTC/USD from a recording."""
    from relay.feeds.config import FeedConfig

    eth_sources: list[dict] = [{"kind": "file", "name": "recording", "path": str(RECORDINGS / "eth_usd.jsonl")}]
    if pool is not None:
        eth_sources.insert(0, {"kind": "evm_pool", "name": "localnet-pool", "chain": "evm", "pool": pool,
                               "base_decimals": 18, "quote_decimals": 6})
    return {
        "ETH/USD": FeedConfig(id="ETH/USD", description="Ether in US dollars (localnet pool + recording)", decimals=8,
                              sources=eth_sources, min_sources=1, deviation_bps=50, heartbeat_s=60),
        "BTC/USD": FeedConfig(id="BTC/USD", description="Bitcoin in US dollars (recording)", decimals=8,
                              sources=[{"kind": "file", "name": "recording", "path": str(RECORDINGS / "btc_usd.jsonl")}],
                              min_sources=1, deviation_bps=50, heartbeat_s=60),
    }


async def _deploy_localnet_feeds(w3, account, keys_dir: Path, verifier: str) -> dict[str, str]:
    from eth_account import Account

    from adapters.evm import deploy as evm_deploy
    from adapters.evm.feeds import deploy_feeds
    from adapters.evm.market import deploy_market

    # The simulator trades from dev account 2; the pusher gets an account of its own (funded here)
    # so it never shares a nonce sequence with the relayer, the SDK user or the market.
    _write_secret(keys_dir / "evm-market.key", ANVIL_DEV_KEYS[2] + "\n")
    pusher_key = keys_dir / "evm-feed-pusher.key"
    if not pusher_key.exists():
        _write_secret(pusher_key, "0x" + bytes(Account.create().key).hex() + "\n")
    pusher = Account.from_key(pusher_key.read_text().strip())
    await evm_deploy._send(w3, account, {"to": pusher.address, "value": PUSHER_FUNDING_WEI}, "funding the feed pusher", [])
    market = await deploy_market(w3, account, price="3456.5", base_liquidity="1000")
    contracts = market.contracts()
    contracts.update(await deploy_feeds(w3, account, verifier, localnet_feeds(market.pool)))
    return contracts


async def deploy_solana(options: "LocalnetOptions", keys_dir: Path, committee, solana_domain: int) -> dict[str, str]:
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.commitment import Confirmed

    from adapters.solana import program as solana_program

    payer = load_or_create_keypair(keys_dir / "solana-payer.json")
    user = load_or_create_keypair(keys_dir / "solana-user.json")  # the SDK's sender
    program_keypair = load_or_create_keypair(keys_dir / "solana-program.json")
    async with AsyncClient(options.solana_rpc_url, commitment=Confirmed) as client:
        for account in (payer, user):
            sig = (await client.request_airdrop(account.pubkey(), SOLANA_PAYER_LAMPORTS)).value
            await client.confirm_transaction(sig, commitment=Confirmed)
        so_bytes = solana_program.load_program_bytes()
        program_id = await solana_program.deploy_program(client, payer, so_bytes, program_keypair)
        config_address = await solana_program.initialize_committee(
            client, payer, program_id, domain=solana_domain, epoch=committee.epoch, n=committee.n, t=committee.t,
            group_key=committee.group_key,
        )
        outbox = await solana_program.initialize_gateway(client, payer, program_id)
    log.info("solana program deployed", program_id=str(program_id), committee_config=str(config_address),
             outbox=str(outbox))
    return {"program_id": str(program_id), "payer": str(payer.pubkey()), "committee": str(config_address),
            "outbox": str(outbox)}


async def deploy_all(options: "LocalnetOptions", state_dir: Path, evm_chain_id: int, solana_domain: int) -> dict:
    keys_dir = state_dir / "keys"
    committee = deal_committee(options, keys_dir)
    evm_contracts, solana = await asyncio.gather(
        deploy_evm(options, keys_dir, committee, evm_chain_id),
        deploy_solana(options, keys_dir, committee, solana_domain),
    )
    config = TesseraConfig(
        chains={
            "evm": EvmChain(
                kind="evm",
                domain=evm_chain_id,
                chain_id=evm_chain_id,
                rpc_urls=[options.evm_rpc_url],
                ws_urls=[options.evm_ws_url],
                confirmations=2,
                contracts=evm_contracts,
                signer=KeyRef(file=Path("keys/evm-relayer.key")),
                sender=KeyRef(file=Path("keys/evm-user.key")),
            ),
            "solana": SolanaChain(
                kind="solana",
                domain=solana_domain,
                rpc_urls=[options.solana_rpc_url],
                ws_urls=[options.solana_ws_url],
                commitment="finalized",
                program_id=solana["program_id"],
                accounts={"committee": solana["committee"], "outbox": solana["outbox"]},
                signer=KeyRef(file=Path("keys/solana-payer.json")),
                sender=KeyRef(file=Path("keys/solana-user.json")),
            ),
        },
        committee=CommitteeRef(
            file=Path("keys/committee/committee.toml"),
            share=Path("keys/committee/share-{index}.json"),
            key_file=Path("keys/committee.key"),
        ),
        relayer=RelayerSection(listen=f"{options.host}:{options.relayer_port}"),
        feeds=localnet_feeds(evm_contracts.get("MarketPool")) if options.feeds else {},
        # Round leaders publish to the feed server; the pusher reads its stream.
        feed_server=FeedServerSection(listen=f"{options.host}:{options.feed_server_port}"),
        feed_round=FeedRoundSection(publish_urls=[f"http://{options.host}:{options.feed_server_port}/v1/reports"]),
        feed_push=FeedPushSection(targets=["evm", "solana"], evm_key=KeyRef(file=Path("keys/evm-feed-pusher.key")),
                                  source=f"http://{options.host}:{options.feed_server_port}"),
    )
    dump_config(config, state_dir / "config.toml")
    return {
        "evm_contracts": evm_contracts,
        "solana_program_id": solana["program_id"],
        "solana_committee": solana["committee"],
        "solana_payer": solana["payer"],
        "committee": {"epoch": committee.epoch, "n": committee.n, "t": committee.t,
                      "group_key": "0x" + committee.group_key.hex()},
    }


# -- the smoke job: proves every deployed piece works, used by `relay demo` and the e2e tests ---

async def smoke(state_dir: Path) -> list[tuple[str, str]]:
    """Exercise what `up` deployed; returns (check, outcome) rows. Raises on the first failure."""
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from relay.config import load_config

    config = load_config(state_dir / "config.toml")
    w3 = AsyncWeb3(AsyncHTTPProvider(config.chains["evm"].rpc_urls[0]))
    try:
        return await _smoke(state_dir, config, w3)
    finally:
        await w3.provider.disconnect()


async def _smoke(state_dir: Path, config, w3) -> list[tuple[str, str]]:
    import time

    from solana.rpc.async_api import AsyncClient
    from solana.rpc.commitment import Confirmed
    from solders.keypair import Keypair
    from solders.pubkey import Pubkey
    from solders.system_program import CreateAccountParams, create_account

    import attest
    from adapters.evm import deploy as evm_deploy
    from adapters.solana import program as solana_program
    from attest.committee import Committee
    from attest.keystore import load_share_for, read_key_file
    from relay.envelope import Envelope, address_to_bytes32, keccak256
    from relay.protocol import MessageKind

    evm, sol = config.chains["evm"], config.chains["solana"]
    rows: list[tuple[str, str]] = []

    def row(check: str, outcome: str) -> None:
        rows.append((check, outcome))
        log.info("smoke", check=check, outcome=outcome)

    # EVM: the first contract, through web3.py.
    deployer = w3.eth.account.from_key(ANVIL_DEV_KEYS[0])
    probe = evm_deploy.contract(w3, "Probe", evm.contracts["Probe"])
    receipt = await evm_deploy.transact(w3, deployer, probe.functions.set(42))
    value = await probe.functions.value().call()
    digest = await probe.functions.hash(b"tessera").call()
    if value != 42 or bytes(digest) != keccak256(b"tessera"):
        raise RuntimeError(f"Probe returned value={value}, hash={bytes(digest).hex()}")
    row("EVM Probe.set(42) + hash()", f"ok (block {receipt['blockNumber']}, gas {receipt['gasUsed']:,})")

    # Solana: the program's probe writes keccak256 of its input into an account it owns.
    payer = load_or_create_keypair(state_dir / "keys" / "solana-payer.json")
    program_id = Pubkey.from_string(sol.program_id)
    async with AsyncClient(sol.rpc_urls[0], commitment=Confirmed) as client:
        target = Keypair()
        rent = (await client.get_minimum_balance_for_rent_exemption(32)).value
        create = create_account(CreateAccountParams(
            from_pubkey=payer.pubkey(), to_pubkey=target.pubkey(), lamports=rent, space=32, owner=program_id))
        await solana_program.send_instructions(
            client, payer, [create, solana_program.probe_ix(program_id, target.pubkey(), b"tessera")], [target])
        data = bytes((await client.get_account_info(target.pubkey())).value.data)
        if data != keccak256(b"tessera"):
            raise RuntimeError(f"Solana probe wrote {data.hex()}")
        row("Solana program probe (keccak into its account)", "ok")

        # The committee: t of n members sign, the SDK-side check and both chains verify.
        committee = Committee.load(config.committee.file)
        secret = read_key_file(config.committee.key_file)
        shares = [load_share_for(committee, config.committee.share_path(i), secret) for i in range(1, committee.t + 1)]
        for dst_name, dst in (("EVM", evm), ("Solana", sol)):
            receiver = address_to_bytes32(evm.contracts["CommitteeVerifier"]) if dst is evm else bytes(program_id)
            env = Envelope(kind=MessageKind.DATA, nonce=0, src_domain=sol.domain if dst is evm else evm.domain,
                           src_sender=bytes(32), dst_domain=dst.domain, dst_receiver=receiver,
                           payload=b"hello from the localnet")
            msg_digest = env.digest(committee.epoch)
            started = time.perf_counter()
            result = attest.combine(committee, msg_digest, [attest.partial_sign(s, msg_digest) for s in shares])
            if not result.ok or not committee.verify(msg_digest, result.signature):
                raise RuntimeError(f"combining partial signatures failed: {result.reason}")
            combine_ms = (time.perf_counter() - started) * 1000
            forged = bytearray(result.signature)
            forged[-1] ^= 1
            if dst is evm:
                verifier = evm_deploy.contract(w3, "CommitteeVerifier", evm.contracts["CommitteeVerifier"])
                call = verifier.functions.verify(env.encode(), committee.epoch, result.signature)
                gas = (await evm_deploy.transact(w3, deployer, call))["gasUsed"]
                try:
                    await verifier.functions.verify(env.encode(), committee.epoch, bytes(forged)).call()
                except Exception:
                    refused = True
                else:
                    refused = False
                outcome = f"verified on-chain ({gas:,} gas); forged signature {'refused' if refused else 'ACCEPTED'}"
            else:
                attestation = solana_program.Attestation.for_envelope(env.encode(), committee.epoch, result.signature)
                sig = await solana_program.send_instructions(
                    client, payer, [solana_program.verify_signature_ix(program_id, attestation, env.encode())])
                tx = await client.get_transaction(sig, commitment=Confirmed, max_supported_transaction_version=0)
                units = tx.value.transaction.meta.compute_units_consumed
                bad = solana_program.Attestation(attestation.epoch, bytes(forged), attestation.hint)
                try:
                    await solana_program.send_instructions(
                        client, payer, [solana_program.verify_signature_ix(program_id, bad, env.encode())])
                except solana_program.SolanaProgramError:
                    refused = True
                else:
                    refused = False
                outcome = f"verified on-chain ({units:,} CU); forged signature {'refused' if refused else 'ACCEPTED'}"
            if not refused:
                raise RuntimeError(f"{dst_name} accepted a forged signature")
            row(f"{committee.t}-of-{committee.n} BLS signature -> {dst_name}",
                f"combined in {combine_ms:.1f} ms, {outcome}")
    return rows
