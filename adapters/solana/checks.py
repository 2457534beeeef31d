"""`relay config check --online` on a Solana chain: the program a config names is deployed (an
executable account owned by the upgradeable BPF loader) and its committee account (PDA
["committee"], adapters/solana/program.py CommitteeConfig) holds the config's committee for this
chain's domain."""

from __future__ import annotations

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey

from adapters.checks import committee_problems
from adapters.solana.program import BPF_LOADER_UPGRADEABLE_ID, CommitteeConfig, SolanaProgramError, committee_address
from attest.committee import Committee
from relay.config import SolanaChain


async def deployment_problems(name: str, chain: SolanaChain, committee: Committee | None) -> list[str]:
    """What is wrong with `chain`'s program and committee account (empty when nothing). Uses rpc_urls[0]."""
    prefix = f"chains.{name}."
    if chain.program_id is None:
        return []  # the offline check names it
    program_id = Pubkey.from_string(chain.program_id)
    where = f"{prefix}program_id ({program_id})"
    async with AsyncClient(chain.rpc_urls[0], commitment=Confirmed) as client:
        program = (await client.get_account_info(program_id)).value
        if program is None:
            return [f"{where}: no account at this address: deploy the program (`relay deploy`) or fix program_id"]
        if not program.executable or program.owner != BPF_LOADER_UPGRADEABLE_ID:
            return [f"{where}: not a program deployed through the upgradeable loader (executable {program.executable}, "
                    f"owner {program.owner}): a wrong address"]
        config_address, _ = committee_address(program_id)
        account = (await client.get_account_info(config_address)).value
    committee_where = f"{prefix}committee account ({config_address})"
    if account is None or account.owner != program_id:
        return [f"{committee_where}: missing: the program's committee was never initialized (`relay deploy` does)"]
    try:
        state = CommitteeConfig.decode(bytes(account.data))
    except SolanaProgramError as exc:
        return [f"{committee_where}: {exc}"]
    problems = []
    if state.domain != chain.domain:
        problems.append(f"{committee_where}: initialized for domain {state.domain}, but chains.{name}.domain is "
                        f"{chain.domain}")
    if committee is not None:
        problems += committee_problems(committee_where, state.current_epoch, state.current_key, committee)
    return problems
