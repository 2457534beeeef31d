"""The Solana side of a localnet: the Solana localnet server's command line, keypair files, and what
Tessera deploys on it (the program, InitCommittee, InitGateway, funded accounts), with the smoke
check. Reached through `SolanaDriver.devnet_node` / `deploy_devnet` / `smoke_devnet` by
relay/localnet.py; the server itself is its own package (adapters/solana_localnet/)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account

from adapters.solana import deploy as solana_deploy
from adapters.solana.deployment import deploy_tessera, load_or_create_keypair
from adapters.solana.fee_program import set_beneficiary_ix
from adapters.solana import program as solana_program
from attest.committee import Committee
from relay.config import KeyRef, SolanaChain
from relay.deployment import DeployRequest
from relay.envelope import Envelope, keccak256
from relay.feeds.config import FeedConfig
from relay.interfaces import DevnetDeployment, DevnetNode, EnvelopeSigner
from relay.log import get_logger
from relay.protocol import MessageKind

SOLANA_PAYER_LAMPORTS = 1_000 * 10**9
SMOKE_PAYLOAD = b"hello from the localnet"


def solana_argv(host: str, rpc_port: int, ws_port: int, slot_ms: int, finality_slots: int) -> list[str]:
    return [
        sys.executable, "-m", "adapters.solana_localnet",
        "--host", host,
        "--rpc-port", str(rpc_port),
        "--ws-port", str(ws_port),
        "--slot-ms", str(slot_ms),
        "--finality-slots", str(finality_slots),
    ]


def devnet_node(chain: SolanaChain, settings: Mapping[str, Any]) -> DevnetNode:
    """The Solana localnet server serving `chain` (host and ports from its first rpc_url and ws_url);
    settings: `slot_ms`, `finality_slots`."""
    rpc, ws = urlsplit(chain.rpc_urls[0]), urlsplit(chain.ws_urls[0])
    argv = solana_argv(rpc.hostname or "127.0.0.1", rpc.port or 8899, ws.port or 8900,
                       settings.get("slot_ms", 400), settings.get("finality_slots", 32))
    return DevnetNode(argv=argv, rpc_url=chain.rpc_urls[0], ready_method="getHealth", status_method="getSlot")


async def deploy_devnet(name: str, chain: SolanaChain, keys_dir: Path, committee: Committee,
                        feeds: Mapping[str, FeedConfig]) -> DevnetDeployment:
    """The program deployed, its committee (InitCommittee, bound to the chain's domain) and gateway
    (InitGateway) initialised, the relayer's payer and the SDK's user funded, the payer (the relayer's
    account) made the fee beneficiary. Feed accounts are
    created by the pusher's first update, so `feeds` needs nothing here."""
    payer = load_or_create_keypair(keys_dir / "solana-payer.json")
    user = load_or_create_keypair(keys_dir / "solana-user.json")  # the SDK's sender
    async with AsyncClient(chain.rpc_urls[0], commitment=Confirmed) as client:
        for account in (payer, user):
            sig = (await client.request_airdrop(account.pubkey(), SOLANA_PAYER_LAMPORTS)).value
            await client.confirm_transaction(sig, commitment=Confirmed)
    # What `relay deploy` runs on any cluster, by the same code: the program through the upgradeable
    # loader (its keypair kept as keys/<chain>-program.json), InitCommittee, InitGateway.
    report = await deploy_tessera(name, chain, DeployRequest(
        deployer=KeyRef(file=keys_dir / "solana-payer.json", allow_raw=True), committee=committee, feeds=feeds,
        owner=None, upgrade_authority=None, recorded={}, keys_dir=keys_dir, record=lambda fields: None))
    program_id = report.fields["program_id"]
    # Fees as on the EVM localnet (adapters/evm/devnet.py): the relayer's account (the payer: it signs the
    # deliveries) is the beneficiary, so `relay fees claim --chain solana` works. No destination costs are
    # posted: once any fee config exists every Solana send needs fresh prices in the program's feed
    # accounts (docs/PROTOCOL.md "Fees", Solana), and the EVM localnet posts none either.
    async with AsyncClient(chain.rpc_urls[0], commitment=Confirmed) as client:
        await solana_deploy.send_instructions(client, payer, [set_beneficiary_ix(
            Pubkey.from_string(program_id), payer.pubkey(), payer.pubkey())])
    committee_config, outbox = report.fields["accounts"]["committee"], report.fields["accounts"]["outbox"]
    deployed = {"program_id": program_id, "payer": str(payer.pubkey()), "committee": committee_config,
                "outbox": outbox, "fee_beneficiary": str(payer.pubkey())}
    get_logger("localnet.solana").info("solana program deployed", chain=name, **deployed)
    keys = Path(keys_dir.name)
    table = chain.model_copy(update={
        "program_id": program_id, "accounts": {"committee": committee_config, "outbox": outbox},
        "signer": KeyRef(file=keys / "solana-payer.json"), "sender": KeyRef(file=keys / "solana-user.json"),
    })
    return DevnetDeployment(chain=table, deployed=deployed)


async def smoke_devnet(chain: SolanaChain, keys_dir: Path, sign: EnvelopeSigner) -> list[tuple[str, str]]:
    """The program's probe (it writes keccak256 of its input into an account it owns), then a
    committee signature verified by VerifySignature while a forged one is refused."""
    payer = load_or_create_keypair(keys_dir / "solana-payer.json")
    program_id = Pubkey.from_string(chain.program_id)
    async with AsyncClient(chain.rpc_urls[0], commitment=Confirmed) as client:
        target = Keypair()
        rent = (await client.get_minimum_balance_for_rent_exemption(32)).value
        create = create_account(CreateAccountParams(
            from_pubkey=payer.pubkey(), to_pubkey=target.pubkey(), lamports=rent, space=32, owner=program_id))
        await solana_deploy.send_instructions(
            client, payer, [create, solana_program.probe_ix(program_id, target.pubkey(), b"tessera")], [target])
        data = bytes((await client.get_account_info(target.pubkey())).value.data)
        if data != keccak256(b"tessera"):
            raise solana_program.SolanaProgramError(f"the probe wrote {data.hex()}, not keccak256(b'tessera')")
        rows = [("program probe (keccak into its account)", "ok")]

        envelope = Envelope(kind=MessageKind.DATA, nonce=0, src_domain=0, src_sender=bytes(32), dst_domain=chain.domain,
                            dst_receiver=bytes(program_id), payload=SMOKE_PAYLOAD)
        epoch, signature = sign(envelope)
        attestation = solana_program.Attestation.for_envelope(envelope.encode(), epoch, signature)
        sig = await solana_deploy.send_instructions(
            client, payer, [solana_program.verify_signature_ix(program_id, attestation, envelope.encode())])
        tx = await client.get_transaction(sig, commitment=Confirmed, max_supported_transaction_version=0)
        units = tx.value.transaction.meta.compute_units_consumed
        forged = bytes(signature[:-1]) + bytes([signature[-1] ^ 1])
        bad = solana_program.Attestation(attestation.epoch, forged, attestation.hint)
        try:
            await solana_deploy.send_instructions(
                client, payer, [solana_program.verify_signature_ix(program_id, bad, envelope.encode())])
        except solana_program.SolanaProgramError:
            pass
        else:
            raise solana_program.SolanaProgramError(f"the program on {chain.rpc_urls[0]} accepted a forged signature")
        rows.append(("committee signature", f"verified on-chain ({units:,} CU); forged signature refused"))
    return rows
