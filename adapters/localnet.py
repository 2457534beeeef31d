"""Chain-specific steps of `relay localnet up`: command lines, funding, deployment, config.

relay/localnet.py owns the lifecycle (processes, state directory, detach); this module owns what
needs web3 and solana-py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from relay.config import EvmChain, KeyRef, SolanaChain, TesseraConfig, dump_config
from relay.log import get_logger

if TYPE_CHECKING:
    from relay.localnet import LocalnetOptions

log = get_logger("localnet.deploy")

# anvil's well-known development accounts (mnemonic "test test ... junk"): index 0 deploys,
# index 1 relays. Public knowledge: never use them outside a localnet.
ANVIL_DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
]
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def _load_or_create_keypair(path: Path):
    from solders.keypair import Keypair

    if path.exists():
        return Keypair.from_bytes(bytes(json.loads(path.read_text())))
    keypair = Keypair()
    # Same format as the Solana CLI (a JSON array of the 64 secret-key bytes).
    _write_secret(path, json.dumps(list(bytes(keypair))))
    return keypair


async def deploy_evm(options: "LocalnetOptions", keys_dir: Path) -> dict[str, str]:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters import evm_deploy

    evm_deploy.ensure_built()
    _write_secret(keys_dir / "evm-deployer.key", ANVIL_DEV_KEYS[0] + "\n")
    _write_secret(keys_dir / "evm-relayer.key", ANVIL_DEV_KEYS[1] + "\n")
    w3 = AsyncWeb3(AsyncHTTPProvider(options.evm_rpc_url))
    account = w3.eth.account.from_key(ANVIL_DEV_KEYS[0])
    contracts = {"Probe": await evm_deploy.deploy(w3, account, "Probe")}
    log.info("evm contracts deployed", **contracts)
    return contracts


async def deploy_solana(options: "LocalnetOptions", keys_dir: Path) -> tuple[str, str]:
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.commitment import Confirmed

    from adapters import solana_program

    payer = _load_or_create_keypair(keys_dir / "solana-payer.json")
    program_keypair = _load_or_create_keypair(keys_dir / "solana-program.json")
    async with AsyncClient(options.solana_rpc_url, commitment=Confirmed) as client:
        sig = (await client.request_airdrop(payer.pubkey(), SOLANA_PAYER_LAMPORTS)).value
        await client.confirm_transaction(sig, commitment=Confirmed)
        so_bytes = solana_program.PROGRAM_SO.read_bytes()
        program_id = await solana_program.deploy_program(client, payer, so_bytes, program_keypair)
    log.info("solana program deployed", program_id=str(program_id))
    return str(program_id), str(payer.pubkey())


async def deploy_all(options: "LocalnetOptions", state_dir: Path, evm_chain_id: int, solana_domain: int) -> dict:
    import asyncio

    keys_dir = state_dir / "keys"
    evm_contracts, (program_id, payer) = await asyncio.gather(
        deploy_evm(options, keys_dir), deploy_solana(options, keys_dir)
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
            ),
            "solana": SolanaChain(
                kind="solana",
                domain=solana_domain,
                rpc_urls=[options.solana_rpc_url],
                ws_urls=[options.solana_ws_url],
                commitment="finalized",
                program_id=program_id,
                signer=KeyRef(file=Path("keys/solana-payer.json")),
            ),
        },
    )
    dump_config(config, state_dir / "config.toml")
    return {"evm_contracts": evm_contracts, "solana_program_id": program_id, "solana_payer": payer}
