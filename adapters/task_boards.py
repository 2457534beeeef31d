"""Build the task-board client for a configured chain (the only place that maps a chain's `kind` to
a task-board class). The classes are imported lazily so a worker on one chain does not load the
other chain's libraries."""

from __future__ import annotations

from relay.config import EvmChain, TesseraConfig, WorkerSection
from relay.errors import ConfigError
from relay.tasks.board import RequesterBoard, ServingBoard


def _chain(config: TesseraConfig, chain_name: str) -> EvmChain | object:
    chain = config.chains.get(chain_name)
    if chain is None:
        raise ConfigError(f"no chain {chain_name!r} under [chains]; configured: {', '.join(sorted(config.chains))}")
    return chain


def _with_worker(config: TesseraConfig, worker_section: WorkerSection | None) -> TesseraConfig:
    # The board classes read the worker's submitting account from config.worker; a section given
    # explicitly (e.g. with a --db override) wins over the file's.
    if worker_section is None or worker_section is config.worker:
        return config
    return config.model_copy(update={"worker": worker_section})


def build_serving_board(config: TesseraConfig, chain_name: str,
                        worker_section: WorkerSection | None = None) -> ServingBoard:
    """The worker's side of the board on `chain_name`, submitting with the worker's own account
    (`[worker] evm_key` on EVM, `[worker] solana_keypair` on Solana)."""
    chain = _chain(config, chain_name)
    section = worker_section or config.worker or WorkerSection()
    config = _with_worker(config, section)
    if isinstance(chain, EvmChain):
        if section.evm_key is None:
            raise ConfigError(f"the worker on EVM chain {chain_name!r} needs its own account: set [worker] evm_key "
                              "(file = ... or env = ...), not the relayer's signer")
        from adapters.evm_tasks import EvmTaskBoard

        return EvmTaskBoard.from_config(config, chain_name, role="worker")
    if section.solana_keypair is None:
        raise ConfigError(f"the worker on Solana chain {chain_name!r} needs its own fee payer: set [worker] "
                          "solana_keypair (file = ... or env = ...)")
    from adapters.solana_tasks import SolanaTaskBoard

    return SolanaTaskBoard.from_config(config, chain_name, role="worker")


def build_requester_board(config: TesseraConfig, chain_name: str) -> RequesterBoard:
    """The requester's side of the board on `chain_name` (the SDK's sender account)."""
    chain = _chain(config, chain_name)
    if isinstance(chain, EvmChain):
        from adapters.evm_tasks import EvmTaskBoard

        return EvmTaskBoard.from_config(config, chain_name, role="requester")
    from adapters.solana_tasks import SolanaTaskBoard

    return SolanaTaskBoard.from_config(config, chain_name, role="requester")


WORKER_EVM_KEY_INDEX = 5  # anvil dev account of a localnet worker (0 deployer, 1 relayer, 3 SDK, 4-5 extra relayers)
WORKER_SOLANA_LAMPORTS = 100 * 10**9


async def provision_localnet_worker(state_dir, config: TesseraConfig, chain_name: str) -> dict:
    """Keys and payout addresses for a worker on a localnet, written under `state_dir/keys` if
    missing: the worker identity, its EVM account (anvil dev key 5), its Solana fee payer (funded
    by airdrop when it serves Solana). Returns the `[worker]` fields to set."""
    from pathlib import Path

    from eth_account import Account

    from adapters.localnet import ANVIL_DEV_KEYS, _load_or_create_keypair, _write_secret
    from relay.config import KeyRef, SolanaChain
    from relay.tasks.worker import generate_identity

    keys = Path(state_dir) / "keys"
    identity = keys / f"worker-{chain_name}.key"
    if not identity.exists():
        generate_identity(identity)
    evm_key = keys / "evm-worker.key"
    if not evm_key.exists():
        _write_secret(evm_key, ANVIL_DEV_KEYS[WORKER_EVM_KEY_INDEX] + "\n")
    solana_file = keys / "solana-worker.json"
    solana = _load_or_create_keypair(solana_file)
    payout: dict[str, str] = {}
    for name, chain in config.chains.items():
        if isinstance(chain, EvmChain):
            payout[name] = Account.from_key(ANVIL_DEV_KEYS[WORKER_EVM_KEY_INDEX]).address
        else:
            payout[name] = str(solana.pubkey())
    served = config.chains[chain_name]
    if isinstance(served, SolanaChain):
        from solana.rpc.async_api import AsyncClient
        from solana.rpc.commitment import Confirmed

        async with AsyncClient(served.rpc_urls[0], commitment=Confirmed) as client:
            balance = (await client.get_balance(solana.pubkey())).value
            if balance < WORKER_SOLANA_LAMPORTS // 2:
                sig = (await client.request_airdrop(solana.pubkey(), WORKER_SOLANA_LAMPORTS)).value
                await client.confirm_transaction(sig, commitment=Confirmed)
    return {"key_file": str(identity), "evm_key": KeyRef(file=evm_key), "solana_keypair": KeyRef(file=solana_file),
            "payout": payout}
