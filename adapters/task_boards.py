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


async def _fund_evm(config: TesseraConfig, address: str) -> None:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    for chain in config.chains.values():
        if isinstance(chain, EvmChain):
            w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_urls[0]))
            try:  # anvil's own cheat: the localnet is the only place extra workers are provisioned
                await w3.provider.make_request("anvil_setBalance", [address, hex(100 * 10**18)])
            finally:
                await w3.provider.disconnect()


async def provision_localnet_worker(state_dir, config: TesseraConfig, chain_name: str, name: str = "") -> dict:
    """Keys and payout addresses for a worker on a localnet, written under `state_dir/keys` if
    missing: the worker identity, its EVM account (anvil dev key 5; 6.. for named extra workers, so
    two workers never share an account's nonces), its Solana fee payer (funded by airdrop when it
    serves Solana). Returns the `[worker]` fields to set."""
    from pathlib import Path

    from eth_account import Account

    from adapters.localnet import ANVIL_DEV_KEYS, _load_or_create_keypair, _write_secret
    from relay.config import KeyRef, SolanaChain
    from relay.tasks.worker import generate_identity

    keys = Path(state_dir) / "keys"
    suffix = f"-{name}" if name else ""
    identity = keys / f"worker-{chain_name}{suffix}.key"
    if not identity.exists():
        generate_identity(identity)
    evm_key = keys / f"evm-worker{suffix}.key"
    if not evm_key.exists():
        # A named extra worker gets a fresh account (funded below): never share nonces with another.
        _write_secret(evm_key, (ANVIL_DEV_KEYS[WORKER_EVM_KEY_INDEX] if not name
                                else "0x" + bytes(Account.create().key).hex()) + "\n")
    evm_address = Account.from_key(evm_key.read_text().strip()).address
    if name:
        await _fund_evm(config, evm_address)
    solana_file = keys / f"solana-worker{suffix}.json"
    solana = _load_or_create_keypair(solana_file)
    payout: dict[str, str] = {}
    for chain_key, chain in config.chains.items():
        if isinstance(chain, EvmChain):
            payout[chain_key] = evm_address
        else:
            payout[chain_key] = str(solana.pubkey())
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
