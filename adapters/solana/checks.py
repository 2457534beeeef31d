"""`relay config check --online` on a Solana chain: the program a config names is deployed (an
executable account owned by the upgradeable BPF loader) with the code this checkout builds (its
ProgramData account holds the ELF after a 45-byte header: compared byte for byte with
contracts/solana/tessera.so as it is when the check runs, the rest of the account must be zeros), and
its committee account (PDA ["committee"], adapters/solana/program.py CommitteeConfig) holds the
config's committee for this chain's domain."""

from __future__ import annotations

from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey

from adapters.checks import committee_problems
from adapters.solana import deploy as solana_deploy
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
        problems = []
        if (problem := await _code_problem(client, where, bytes(program.data))) is not None:
            problems.append(problem)
        config_address, _ = committee_address(program_id)
        account = (await client.get_account_info(config_address)).value
    committee_where = f"{prefix}committee account ({config_address})"
    if account is None or account.owner != program_id:
        return problems + [f"{committee_where}: missing: the program's committee was never initialized (`relay deploy` does)"]
    try:
        state = CommitteeConfig.decode(bytes(account.data))
    except SolanaProgramError as exc:
        return problems + [f"{committee_where}: {exc}"]
    if state.domain != chain.domain:
        problems.append(f"{committee_where}: initialized for domain {state.domain}, but chains.{name}.domain is "
                        f"{chain.domain}")
    if committee is not None:
        problems += committee_problems(committee_where, state.current_epoch, state.current_key, committee)
    return problems


async def _code_problem(client: AsyncClient, where: str, program_account: bytes,
                        so_path: Path | None = None) -> str | None:
    """Why the code of the program whose Program account holds `program_account` is not `so_path`
    (default contracts/solana/tessera.so, read now: never a hash fixed in advance)."""
    # Program account (bincode UpgradeableLoaderState::Program): tag 2, then its ProgramData address.
    if len(program_account) < 36 or int.from_bytes(program_account[:4], "little") != 2:
        return f"{where}: not an upgradeable loader Program account: a wrong address"
    programdata = Pubkey.from_bytes(program_account[4:36])
    account = (await client.get_account_info(programdata)).value
    if account is None or account.owner != BPF_LOADER_UPGRADEABLE_ID:
        return f"{where}: its ProgramData account {programdata} is missing: a wrong address"
    return code_problem(where, bytes(account.data), so_path or solana_deploy.PROGRAM_SO_PATH)


def code_problem(where: str, programdata: bytes, so_path: Path) -> str | None:
    """Why a ProgramData account's bytes are not the program `so_path` holds (None when they are)."""
    try:
        expected = solana_deploy.load_program_bytes(so_path)
    except SolanaProgramError as exc:
        return f"{where}: cannot compare the deployed code: {exc}"
    header = solana_deploy.PROGRAMDATA_METADATA_LEN
    if len(programdata) < header or int.from_bytes(programdata[:4], "little") != 3:
        return f"{where}: its ProgramData account is not one (tag {programdata[:4].hex()}): a wrong address"
    code = programdata[header:]
    if len(code) < len(expected) or code[:len(expected)] != expected or code[len(expected):].strip(b"\0"):
        differs = next((i for i, (a, b) in enumerate(zip(code, expected)) if a != b), min(len(code), len(expected)))
        return (f"{where}: the deployed code is not {so_path} ({len(expected)} bytes; the deployed program "
                f"differs from byte {differs}): upgrade the program with this build (`relay deploy` against a "
                "program you own, or `solana program deploy` with its upgrade authority), or check out the "
                "version that is deployed")
    return None
