"""Deploying the Tessera Solana program and initializing it: the sequence `solana program deploy`
sends through the upgradeable BPF loader (create + initialize a buffer, write the ELF in chunks,
DeployWithMaxDataLen), either into a LiteSVM instance or over JSON-RPC, then InitCommittee and
InitGateway. Over JSON-RPC every transaction goes through adapters.solana.tx.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import CreateAccountParams, create_account
from solders.sysvar import CLOCK, RENT
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from adapters.solana.program import (
    BPF_LOADER_UPGRADEABLE_ID,
    SolanaProgramError,
    committee_address,
    init_committee_ix,
    init_gateway_ix,
    outbox_address,
    programdata_address,
)
from adapters.solana.rpc import SolanaAdapterError, SolanaRpc
from adapters.solana.tx import PACKET_DATA_SIZE, SentTransaction, SolanaTransactor, TransactionRefused
from relay.log import get_logger

log = get_logger(__name__)

PROGRAM_SO_PATH = Path(__file__).resolve().parents[2] / "contracts" / "solana" / "tessera.so"

# UpgradeableLoaderState sizes (bincode): Buffer = tag + Option<authority>; Program = tag + programdata
# address.
_BUFFER_METADATA_LEN = 4 + 1 + 32
_PROGRAM_ACCOUNT_LEN = 4 + 32


class TransactionFailedError(SolanaProgramError):
    """A transaction was refused or failed on-chain; the message carries the node's error and logs."""


class DeploymentError(TransactionFailedError):
    """A deployment transaction failed; the message names the step."""


def load_program_bytes(path: Path = PROGRAM_SO_PATH) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SolanaProgramError(
            f"{path} is missing: build it with `.venv/bin/python contracts/solana/build.py`"
        ) from None


def _loader_ix(data: bytes, accounts: Sequence[tuple[Pubkey, bool, bool]]) -> Instruction:
    metas = [AccountMeta(pubkey=k, is_signer=s, is_writable=w) for k, s, w in accounts]
    return Instruction(BPF_LOADER_UPGRADEABLE_ID, data, metas)


def initialize_buffer_ix(buffer: Pubkey, authority: Pubkey) -> Instruction:
    return _loader_ix(struct.pack("<I", 0), [(buffer, False, True), (authority, False, False)])


def write_ix(buffer: Pubkey, authority: Pubkey, offset: int, chunk: bytes) -> Instruction:
    data = struct.pack("<IIQ", 1, offset, len(chunk)) + chunk
    return _loader_ix(data, [(buffer, False, True), (authority, True, False)])


def deploy_with_max_data_len_ix(
    payer: Pubkey, program_id: Pubkey, buffer: Pubkey, authority: Pubkey, max_data_len: int
) -> Instruction:
    return _loader_ix(
        struct.pack("<IQ", 2, max_data_len),
        [
            (payer, True, True),
            (programdata_address(program_id), False, True),
            (program_id, False, True),
            (buffer, False, True),
            (RENT, False, False),
            (CLOCK, False, False),
            (SYSTEM_PROGRAM_ID, False, False),
            (authority, True, False),
        ],
    )


def set_authority_ix(programdata: Pubkey, authority: Pubkey, new_authority: Pubkey) -> Instruction:
    """SetAuthority: hands a program's upgrade authority (on its ProgramData account) to another key."""
    return _loader_ix(struct.pack("<I", 4), [(programdata, False, True), (authority, True, False),
                                             (new_authority, False, False)])


def set_authority_checked_ix(programdata: Pubkey, authority: Pubkey, new_authority: Pubkey) -> Instruction:
    """SetAuthorityChecked (loader instruction 7): as SetAuthority, but the new authority must sign too,
    so a mistyped key cannot receive the program."""
    return _loader_ix(struct.pack("<I", 7), [(programdata, False, True), (authority, True, False),
                                             (new_authority, True, False)])


# ProgramData: tag (u32 = 3), deployment slot (u64), Option<authority> (1 + 32), then the ELF.
PROGRAMDATA_METADATA_LEN = 4 + 8 + 1 + 32


def programdata_authority(data: bytes) -> Pubkey | None:
    """The upgrade authority a ProgramData account holds (None: the program is immutable)."""
    if len(data) < PROGRAMDATA_METADATA_LEN or struct.unpack_from("<I", data)[0] != 3:
        raise SolanaProgramError("not an upgradeable loader ProgramData account")
    return Pubkey.from_bytes(data[13:45]) if data[12] == 1 else None


@dataclass(frozen=True)
class _Step:
    name: str
    instructions: list[Instruction]
    signers: list[Keypair]
    deployment: bool = True


def _write_chunk_size(payer: Keypair, buffer: Pubkey) -> int:
    probe = Transaction.new_signed_with_payer(
        [write_ix(buffer, payer.pubkey(), 0, b"")], payer.pubkey(), [payer], Hash.default()
    )
    return PACKET_DATA_SIZE - len(bytes(probe)) - 8  # margin: compact-u16 lengths grow with the chunk


def _loader_account(payer: Keypair, account: Keypair, space: int, rent: Callable[[int], int]) -> Instruction:
    """Creates `account` (rent-exempt, `space` bytes) owned by the upgradeable loader."""
    return create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=account.pubkey(),
                                              lamports=rent(space), space=space, owner=BPF_LOADER_UPGRADEABLE_ID))


def _deploy_steps(
    payer: Keypair,
    so_bytes: bytes,
    program: Keypair,
    buffer: Keypair,
    rent: Callable[[int], int],
    max_data_len: int,
) -> list[_Step]:
    authority = payer.pubkey()
    buffer_len = _BUFFER_METADATA_LEN + len(so_bytes)
    steps = [
        _Step(
            "create buffer",
            [
                _loader_account(payer, buffer, buffer_len, rent),
                initialize_buffer_ix(buffer.pubkey(), authority),
            ],
            [payer, buffer],
        )
    ]
    chunk = _write_chunk_size(payer, buffer.pubkey())
    for offset in range(0, len(so_bytes), chunk):
        steps.append(
            _Step(
                f"write {offset}",
                [write_ix(buffer.pubkey(), authority, offset, so_bytes[offset : offset + chunk])],
                [payer],
            )
        )
    steps.append(
        _Step(
            "deploy",
            [
                _loader_account(payer, program, _PROGRAM_ACCOUNT_LEN, rent),
                deploy_with_max_data_len_ix(
                    payer.pubkey(), program.pubkey(), buffer.pubkey(), authority, max_data_len
                ),
            ],
            [payer, program],
        )
    )
    return steps


def _max_data_len(so_bytes: bytes) -> int:
    # Room for upgrades twice the size, as `solana program deploy` does by default.
    return 2 * len(so_bytes)


def deploy_program_litesvm(
    svm: LiteSVM, payer: Keypair, so_bytes: bytes | None = None, program_keypair: Keypair | None = None
) -> Pubkey:
    """Deploys into a solders.litesvm.LiteSVM through the upgradeable loader; the payer becomes the
    upgrade authority. Returns the program id."""
    so_bytes = load_program_bytes() if so_bytes is None else so_bytes
    program = program_keypair or Keypair()
    steps = _deploy_steps(
        payer, so_bytes, program, Keypair(), svm.minimum_balance_for_rent_exemption, _max_data_len(so_bytes)
    )
    for step in steps:
        tx = Transaction.new_signed_with_payer(step.instructions, payer.pubkey(), step.signers, svm.latest_blockhash())
        result = svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            logs = "\n".join(result.meta().logs())
            raise DeploymentError(f"deployment step '{step.name}' failed: {result.err()}\n{logs}{_v0_hint(step)}")
    # The loader makes a new program visible from the next slot on.
    svm.warp_to_slot(svm.get_clock().slot + 1)
    return program.pubkey()


async def _send(transactor: SolanaTransactor, step: _Step) -> SentTransaction:
    payer = transactor.require_payer().pubkey()
    try:
        return await transactor.send(step.instructions, signers=[k for k in step.signers if k.pubkey() != payer])
    except Exception as exc:  # a preflight refusal carries the node's simulation logs
        logs = "\n" + "\n".join(exc.logs) if isinstance(exc, TransactionRefused) and exc.logs else ""
        raise _error(step)(f"step '{step.name}' was refused: {exc}{logs}{_v0_hint(step)}") from exc


async def _confirm(transactor: SolanaTransactor, sent: SentTransaction, step: _Step) -> None:
    try:
        await transactor.confirm(sent, commitment=Confirmed)
    except SolanaAdapterError as exc:
        raise _error(step)(f"step '{step.name}' failed on-chain: {exc}{_v0_hint(step)}") from exc


def _error(step: _Step) -> type[TransactionFailedError]:
    return DeploymentError if step.deployment else TransactionFailedError


def _v0_hint(step: _Step) -> str:
    if step.name != "deploy":
        return ""
    return (
        "\n(if the cluster activates SIMD-0500 B8JJXCy5amZyWG9r7EnUYLwzXSXTxG7GZ1qZ1qggo83g it refuses SBPFv0 "
        "programs: start solana-test-validator with --deactivate-feature for it and for "
        "SIMD-0460 7VgiehxNxu53KdxgLspGQY8myE6f7UokaWa4jsGcaSz; see contracts/solana/README.md)"
    )


async def deploy_program(
    client: AsyncClient, payer: Keypair, so_bytes: bytes | None = None, program_keypair: Keypair | None = None,
    buffer_keypair: Keypair | None = None,
) -> Pubkey:
    """Deploys over JSON-RPC through the upgradeable loader; the payer pays and becomes the upgrade
    authority. The buffer writes go out together, then are confirmed, as `solana program deploy` does.
    With a `buffer_keypair` whose buffer an interrupted deployment left (same size, the payer its
    authority), that buffer is reused and only the chunks it lacks are written. Returns the program id."""
    so_bytes = load_program_bytes() if so_bytes is None else so_bytes
    program = program_keypair or Keypair()
    buffer = buffer_keypair or Keypair()
    rents: dict[int, int] = {}
    for size in (_BUFFER_METADATA_LEN + len(so_bytes), _PROGRAM_ACCOUNT_LEN):
        rents[size] = (await client.get_minimum_balance_for_rent_exemption(size)).value
    create, *writes, deploy = _deploy_steps(
        payer, so_bytes, program, buffer, rents.__getitem__, _max_data_len(so_bytes)
    )
    transactor = _transactor(client, payer)
    left = (await client.get_account_info(buffer.pubkey())).value if buffer_keypair is not None else None
    if left is None:
        await _confirm(transactor, await _send(transactor, create), create)
    else:
        writes = _missing_writes(bytes(left.data), left.owner, payer, buffer.pubkey(), so_bytes, writes)
        log.info("solana_buffer_resumed", buffer=str(buffer.pubkey()), writes_left=len(writes))
    sent = [(await _send(transactor, step), step) for step in writes]
    for signature, step in sent:
        await _confirm(transactor, signature, step)
    await _confirm(transactor, await _send(transactor, deploy), deploy)
    # A validator makes a new program callable from the slot after its deployment.
    deployed_at = (await client.get_slot(Confirmed)).value
    while (await client.get_slot(Confirmed)).value <= deployed_at:
        await asyncio.sleep(0.05)
    log.info("solana_program_deployed", program_id=str(program.pubkey()), size=len(so_bytes))
    return program.pubkey()


def _missing_writes(data: bytes, owner: Pubkey, payer: Keypair, buffer: Pubkey, so_bytes: bytes,
                    writes: list[_Step]) -> list[_Step]:
    """The write steps whose chunk a left-over buffer does not hold yet (the steps are in offset
    order, one chunk each, as _deploy_steps makes them)."""
    authority = bytes(payer.pubkey())
    if (owner != BPF_LOADER_UPGRADEABLE_ID or len(data) != _BUFFER_METADATA_LEN + len(so_bytes)
            or struct.unpack_from("<I", data)[0] != 1 or data[4] != 1 or data[5:37] != authority):
        raise DeploymentError(f"the account {buffer} of the buffer keypair is not a buffer of this program's size with "
                              f"{payer.pubkey()} as its authority: move the buffer keypair file away to start with a "
                              "new buffer (`solana program close` recovers the old one's rent)")
    held = data[_BUFFER_METADATA_LEN:]
    chunk = _write_chunk_size(payer, buffer)
    offsets = range(0, len(so_bytes), chunk)
    return [step for step, offset in zip(writes, offsets, strict=True)
            if held[offset:offset + chunk] != so_bytes[offset:offset + chunk]]


def _transactor(client: AsyncClient, payer: Keypair) -> SolanaTransactor:
    return SolanaTransactor(SolanaRpc.for_client("solana deploy", client), payer, name="solana deploy")


async def send_instructions(client: AsyncClient, payer: Keypair, instructions: list[Instruction],
                            signers: Sequence[Keypair] = ()) -> Signature:
    """Sends one transaction and waits until it is confirmed; raises TransactionFailedError if it
    was refused or failed."""
    step = _Step("transaction", instructions, [payer, *signers], deployment=False)
    transactor = _transactor(client, payer)
    sent = await _send(transactor, step)
    await _confirm(transactor, sent, step)
    return sent.signature


async def initialize_committee(
    client: AsyncClient, admin: Keypair, program_id: Pubkey, *, domain: int, epoch: int, n: int, t: int,
    group_key: bytes,
) -> Pubkey:
    """Runs InitCommittee (admin = the program's upgrade authority); returns the config address."""
    ix = init_committee_ix(program_id, admin.pubkey(), domain=domain, epoch=epoch, n=n, t=t, group_key=group_key)
    await send_instructions(client, admin, [ix])
    return committee_address(program_id)[0]


async def initialize_gateway(client: AsyncClient, admin: Keypair, program_id: Pubkey) -> Pubkey:
    """Runs InitGateway (admin = the program's upgrade authority; after InitCommittee); returns the
    outbox address. The program computes the outbox's rent itself from the Rent sysvar."""
    await send_instructions(client, admin, [init_gateway_ix(program_id, admin.pubkey())])
    return outbox_address(program_id)[0]
