"""The Tessera Solana program from Python: deployment through the upgradeable BPF loader,
instruction builders and account decoders. Layouts: contracts/solana/README.md.

Deployment sends the sequence `solana program deploy` sends (create + initialize a buffer, write
the ELF in chunks, DeployWithMaxDataLen), either to a LiteSVM instance or over JSON-RPC.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import CreateAccountParams, create_account
from solders.sysvar import CLOCK, RENT
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

from relay.envelope import keccak256, message_digest
from relay.log import get_logger

PROGRAM_SO_PATH = Path(__file__).resolve().parents[2] / "contracts" / "solana" / "tessera.so"

BPF_LOADER_UPGRADEABLE_ID = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
COMMITTEE_SEED = b"committee"
OUTBOX_SEED = b"outbox"
RECEIPT_SEED = b"delivered"
SENT_EVENT_TAG = b"TESSERA_SENT"  # first sol_log_data field of a Send; the envelope is the second

# UpgradeableLoaderState sizes (bincode): Buffer = tag + Option<authority>; Program = tag + programdata
# address.
_BUFFER_METADATA_LEN = 4 + 1 + 32
_PROGRAM_ACCOUNT_LEN = 4 + 32
_PACKET_DATA_SIZE = 1232

G1_LEN = 64
G2_LEN = 128
FIELD_MODULUS = 21888242871839275222246405745257275088696311157297823662689037894645226208583
MAX_HINT_INCREMENTS = 255  # k is one byte on-chain


class ProgramInstruction(enum.IntEnum):
    PROBE = 0
    INIT_COMMITTEE = 1
    ROTATE_COMMITTEE = 2
    VERIFY_SIGNATURE = 3
    VERIFY_DIGEST = 4
    INIT_GATEWAY = 16
    SEND = 17
    DELIVER = 18
    TASK_REQUEST = 32
    TASK_SUBMIT_RESULT = 33
    TASK_RECLAIM = 34
    FEED_UPDATE = 48


class ProgramErrorCode(enum.IntEnum):
    """Custom error codes of the program (contracts/solana/src/tessera.h)."""

    UNKNOWN_INSTRUCTION = 1
    INVALID_INSTRUCTION_DATA = 2
    NOT_ENOUGH_ACCOUNTS = 3
    ACCOUNT_NOT_WRITABLE = 4
    ACCOUNT_NOT_SIGNER = 5
    WRONG_ACCOUNT_OWNER = 6
    ACCOUNT_TOO_SMALL = 7
    TOO_MANY_ACCOUNTS = 8
    SYSCALL_FAILED = 9
    WRONG_ACCOUNT_SIZE = 10
    CONFIG_WRONG_ADDRESS = 0x10
    CONFIG_ALREADY_INITIALIZED = 0x11
    CONFIG_NOT_INITIALIZED = 0x12
    NOT_UPGRADE_AUTHORITY = 0x13
    WRONG_PROGRAM_DATA = 0x14
    WRONG_SYSTEM_PROGRAM = 0x15
    BAD_THRESHOLD = 0x16
    EPOCH_UNKNOWN = 0x20
    EPOCH_EXPIRED = 0x21
    ENVELOPE_MALFORMED = 0x22
    WRONG_MESSAGE_KIND = 0x23
    WRONG_DESTINATION_DOMAIN = 0x24
    WRONG_SOURCE_DOMAIN = 0x25
    ROTATION_PAYLOAD_MALFORMED = 0x26
    ROTATION_WRONG_EPOCH = 0x27
    ROTATION_NOT_CURRENT_SIGNER = 0x28
    SIGNATURE_INFINITY = 0x30
    SIGNATURE_NOT_ON_CURVE = 0x31
    KEY_INFINITY = 0x32
    HINT_OUT_OF_RANGE = 0x33
    HINT_NOT_ON_CURVE = 0x34
    PAIRING_INPUT_INVALID = 0x35
    SIGNATURE_INVALID = 0x36
    HINT_NOT_CANONICAL = 0x37
    KEY_OUT_OF_RANGE = 0x38
    ALREADY_DELIVERED = 0x40
    RECEIPT_WRONG_ADDRESS = 0x41
    OUTBOX_WRONG_ADDRESS = 0x42
    OUTBOX_ALREADY_INITIALIZED = 0x43
    OUTBOX_NOT_INITIALIZED = 0x44
    PAYLOAD_TOO_LONG = 0x45
    NONCE_EXHAUSTED = 0x46
    RENT_UNSUPPORTED = 0x47
    TASK_PAYLOAD_MALFORMED = 0x50
    TASK_EXECUTOR_INVALID = 0x51
    TASK_FEE_TOO_LARGE = 0x52
    TASK_DEADLINE_PASSED = 0x53
    TASK_URI_INVALID = 0x54
    TASK_WRONG_ADDRESS = 0x55
    BOARD_ACCOUNTS_MISSING = 0x56
    BOARD_WRONG_ADDRESS = 0x57
    PAYOUT_ACCOUNT_WRONG = 0x58
    REQUEST_RECEIPT_INVALID = 0x59
    NOT_A_BOARD_REQUEST = 0x5A
    RESULT_MALFORMED = 0x5B
    RESULT_REQUEST_MISMATCH = 0x5C
    RESULT_EXECUTOR_MISMATCH = 0x5D
    TASK_EXPIRED = 0x5E
    ALREADY_ANSWERED = 0x5F
    ANSWERED_WRONG_ADDRESS = 0x60
    TASK_NOT_FOUND = 0x61
    TASK_NOT_REFUNDABLE = 0x62
    DEADLINE_NOT_PASSED = 0x63
    NOT_REQUESTER = 0x64
    INSUFFICIENT_LAMPORTS = 0x65
    FEED_REPORT_MALFORMED = 0x70
    FEED_ID_INVALID = 0x71
    FEED_DECIMALS_INVALID = 0x72
    FEED_NO_OBSERVATIONS = 0x73
    FEED_WRONG_ADDRESS = 0x74
    FEED_STALE_ROUND = 0x75
    FEED_DECIMALS_CHANGED = 0x76
    FEED_ACCOUNT_INVALID = 0x77


class SolanaProgramError(RuntimeError):
    """Deploying or calling the Tessera program failed."""


log = get_logger(__name__)


class TransactionFailedError(SolanaProgramError):
    """A transaction was refused or failed on-chain; the message carries the node's error and logs."""


class DeploymentError(TransactionFailedError):
    """A deployment transaction failed; the message names the step."""


# ---------------------------------------------------------------------------------------------
# Deployment


def programdata_address(program_id: Pubkey) -> Pubkey:
    return Pubkey.find_program_address([bytes(program_id)], BPF_LOADER_UPGRADEABLE_ID)[0]


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
    return _PACKET_DATA_SIZE - len(bytes(probe)) - 8  # margin: compact-u16 lengths grow with the chunk


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
                create_account(
                    CreateAccountParams(
                        from_pubkey=payer.pubkey(),
                        to_pubkey=buffer.pubkey(),
                        lamports=rent(buffer_len),
                        space=buffer_len,
                        owner=BPF_LOADER_UPGRADEABLE_ID,
                    )
                ),
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
                create_account(
                    CreateAccountParams(
                        from_pubkey=payer.pubkey(),
                        to_pubkey=program.pubkey(),
                        lamports=rent(_PROGRAM_ACCOUNT_LEN),
                        space=_PROGRAM_ACCOUNT_LEN,
                        owner=BPF_LOADER_UPGRADEABLE_ID,
                    )
                ),
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


async def _send(client: AsyncClient, payer: Keypair, step: _Step) -> Signature:
    blockhash = (await client.get_latest_blockhash(Confirmed)).value.blockhash
    tx = VersionedTransaction(Message.new_with_blockhash(step.instructions, payer.pubkey(), blockhash), step.signers)
    try:
        return (await client.send_transaction(tx, opts=TxOpts(preflight_commitment=Confirmed))).value
    except Exception as exc:  # solana-py raises RPCException & co. carrying the node's simulation logs
        raise _error(step)(f"step '{step.name}' was refused: {exc}{_v0_hint(step)}") from exc


async def _confirm(client: AsyncClient, signature: Signature, step: _Step) -> None:
    statuses = await client.confirm_transaction(signature, Confirmed, sleep_seconds=0.1)
    status = statuses.value[0]
    if status is None or status.err is not None:
        raise _error(step)(
            f"step '{step.name}' failed on-chain: {status.err if status else 'no status'}{_v0_hint(step)}"
        )


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
    client: AsyncClient, payer: Keypair, so_bytes: bytes | None = None, program_keypair: Keypair | None = None
) -> Pubkey:
    """Deploys over JSON-RPC through the upgradeable loader; the payer pays and becomes the upgrade
    authority. The buffer writes go out together, then are confirmed, as `solana program deploy` does.
    Returns the program id."""
    so_bytes = load_program_bytes() if so_bytes is None else so_bytes
    program = program_keypair or Keypair()
    rents: dict[int, int] = {}
    for size in (_BUFFER_METADATA_LEN + len(so_bytes), _PROGRAM_ACCOUNT_LEN):
        rents[size] = (await client.get_minimum_balance_for_rent_exemption(size)).value
    create, *writes, deploy = _deploy_steps(
        payer, so_bytes, program, Keypair(), rents.__getitem__, _max_data_len(so_bytes)
    )
    await _confirm(client, await _send(client, payer, create), create)
    sent = [(await _send(client, payer, step), step) for step in writes]
    for signature, step in sent:
        await _confirm(client, signature, step)
    await _confirm(client, await _send(client, payer, deploy), deploy)
    # A validator makes a new program callable from the slot after its deployment.
    deployed_at = (await client.get_slot(Confirmed)).value
    while (await client.get_slot(Confirmed)).value <= deployed_at:
        await asyncio.sleep(0.05)
    log.info("solana_program_deployed", program_id=str(program.pubkey()), size=len(so_bytes))
    return program.pubkey()


async def send_instructions(client: AsyncClient, payer: Keypair, instructions: list[Instruction],
                            signers: Sequence[Keypair] = ()) -> Signature:
    """Sends one transaction and waits until it is confirmed; raises SolanaProgramError if it failed."""
    step = _Step("transaction", instructions, [payer, *signers], deployment=False)
    signature = await _send(client, payer, step)
    await _confirm(client, signature, step)
    return signature


async def initialize_committee(
    client: AsyncClient, admin: Keypair, program_id: Pubkey, *, domain: int, epoch: int, n: int, t: int,
    group_key: bytes,
) -> Pubkey:
    """Runs InitCommittee (admin = the program's upgrade authority); returns the config address."""
    ix = init_committee_ix(program_id, admin.pubkey(), domain=domain, epoch=epoch, n=n, t=t, group_key=group_key)
    await send_instructions(client, admin, [ix])
    return committee_address(program_id)[0]


# ---------------------------------------------------------------------------------------------
# Instructions


def committee_address(program_id: Pubkey) -> tuple[Pubkey, int]:
    return Pubkey.find_program_address([COMMITTEE_SEED], program_id)


@dataclass(frozen=True, slots=True)
class G1Hint:
    """The relayer's hash-to-curve hint: H(digest) = (x0 + k, y), y the principal square root of
    x^3 + 3, and y_sqrt a square root of y that proves y is the principal one (README.md)."""

    k: int
    y: bytes  # 32 bytes big-endian
    y_sqrt: bytes  # 32 bytes big-endian

    def __post_init__(self) -> None:
        if len(self.y) != 32 or len(self.y_sqrt) != 32:
            raise ValueError("y and y_sqrt are 32-byte big-endian field elements")
        if not 0 <= self.k <= MAX_HINT_INCREMENTS:
            raise ValueError(f"k={self.k}: the program accepts at most {MAX_HINT_INCREMENTS} increments")

    def encode(self) -> bytes:
        return bytes([self.k]) + self.y + self.y_sqrt

    @classmethod
    def for_point(cls, k: int, y: int) -> "G1Hint":
        """Hint for H = (x0 + k, y) when H is already known (e.g. from attest.bn254.hash_to_g1)."""
        root = pow(y, (FIELD_MODULUS + 1) // 4, FIELD_MODULUS)
        # When y is not a square (the negated root) no witness exists; send one the program rejects.
        return cls(k, y.to_bytes(32, "big"), root.to_bytes(32, "big"))

    @classmethod
    def for_digest(cls, digest: bytes) -> "G1Hint":
        """Try-and-increment hashing of `digest` as DESIGN.md specifies."""
        x = int.from_bytes(digest, "big") % FIELD_MODULUS
        for k in range(MAX_HINT_INCREMENTS + 1):
            beta = (pow(x, 3, FIELD_MODULUS) + 3) % FIELD_MODULUS
            y = pow(beta, (FIELD_MODULUS + 1) // 4, FIELD_MODULUS)
            if y * y % FIELD_MODULUS == beta:
                return cls.for_point(k, y)
            x = (x + 1) % FIELD_MODULUS
        raise ValueError("no curve point within 255 increments (probability ~2^-255): cannot be verified on Solana")


@dataclass(frozen=True, slots=True)
class Attestation:
    """The signature block of RotateCommittee and VerifySignature (and later the gateway's deliver):
    the committee's signature over an envelope's digest under `epoch`, plus the hash-to-curve hint."""

    epoch: int
    signature: bytes  # G1, 64 bytes
    hint: G1Hint

    def __post_init__(self) -> None:
        if len(self.signature) != G1_LEN:
            raise ValueError("signature must be a 64-byte G1 encoding")

    def encode(self) -> bytes:
        return struct.pack("<I", self.epoch) + self.signature + self.hint.encode()

    @classmethod
    def for_envelope(cls, envelope: bytes, epoch: int, signature: bytes) -> "Attestation":
        return cls(epoch, signature, G1Hint.for_digest(message_digest(epoch, keccak256(envelope))))


def probe_ix(program_id: Pubkey, target: Pubkey, payload: bytes) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.PROBE]) + payload, [AccountMeta(target, False, True)])


def init_committee_ix(
    program_id: Pubkey,
    admin: Pubkey,
    *,
    domain: int,
    epoch: int,
    n: int,
    t: int,
    group_key: bytes,
) -> Instruction:
    """The program pays the config's rent from the admin, computed from the Rent sysvar."""
    if len(group_key) != G2_LEN:
        raise ValueError("group_key must be a 128-byte G2 encoding (EIP-197 order)")
    data = bytes([ProgramInstruction.INIT_COMMITTEE]) + struct.pack("<IIHH", domain, epoch, n, t) + group_key
    config, _ = committee_address(program_id)
    return Instruction(
        program_id,
        data,
        [
            AccountMeta(admin, True, True),
            AccountMeta(config, False, True),
            AccountMeta(programdata_address(program_id), False, False),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        ],
    )


def rotate_committee_ix(program_id: Pubkey, attestation: Attestation, envelope: bytes) -> Instruction:
    config, _ = committee_address(program_id)
    data = bytes([ProgramInstruction.ROTATE_COMMITTEE]) + attestation.encode() + envelope
    return Instruction(program_id, data, [AccountMeta(config, False, True)])


def verify_signature_ix(program_id: Pubkey, attestation: Attestation, envelope: bytes) -> Instruction:
    config, _ = committee_address(program_id)
    data = bytes([ProgramInstruction.VERIFY_SIGNATURE]) + attestation.encode() + envelope
    return Instruction(program_id, data, [AccountMeta(config, False, False)])


def verify_digest_ix(
    program_id: Pubkey, *, signature: bytes, hint: G1Hint, digest: bytes, group_key: bytes
) -> Instruction:
    if len(signature) != G1_LEN or len(digest) != 32 or len(group_key) != G2_LEN:
        raise ValueError("verify_digest takes a 64-byte signature, a 32-byte digest and a 128-byte key")
    data = bytes([ProgramInstruction.VERIFY_DIGEST]) + signature + hint.encode() + digest + group_key
    return Instruction(program_id, data, [])


# ---------------------------------------------------------------------------------------------
# Accounts

CONFIG_MAGIC = b"TESSCOMM"
PROBE_ACCOUNT_LEN = 32
CONFIG_LEN = 336


@dataclass(frozen=True, slots=True)
class CommitteeConfig:
    """The committee config account (PDA ["committee"])."""

    bump: int
    domain: int
    admin: Pubkey
    current_epoch: int
    current_n: int
    current_t: int
    current_key: bytes
    previous_epoch: int | None
    previous_n: int
    previous_t: int
    previous_key: bytes | None
    previous_valid_until: int
    updated_at: int

    @classmethod
    def decode(cls, data: bytes) -> "CommitteeConfig":
        if len(data) < CONFIG_LEN or data[:8] != CONFIG_MAGIC or data[8] != 1:
            raise SolanaProgramError("not an initialized Tessera committee account (run InitCommittee first)")
        has_previous = data[10] == 1
        (domain,) = struct.unpack_from("<I", data, 12)
        cur_epoch, cur_n, cur_t = struct.unpack_from("<IHH", data, 48)
        prev_epoch, prev_n, prev_t, prev_until = struct.unpack_from("<IHHq", data, 184)
        (updated_at,) = struct.unpack_from("<q", data, 328)
        return cls(
            bump=data[9],
            domain=domain,
            admin=Pubkey.from_bytes(data[16:48]),
            current_epoch=cur_epoch,
            current_n=cur_n,
            current_t=cur_t,
            current_key=bytes(data[56:184]),
            previous_epoch=prev_epoch if has_previous else None,
            previous_n=prev_n,
            previous_t=prev_t,
            previous_key=bytes(data[200:328]) if has_previous else None,
            previous_valid_until=prev_until,
            updated_at=updated_at,
        )


# ---------------------------------------------------------------------------------------------
# Gateway: outbox (Send), delivery receipts (Deliver). Layouts: contracts/solana/README.md "Gateway".

OUTBOX_MAGIC = b"TESSOUTB"
OUTBOX_LEN = 40
RECEIPT_MAGIC = b"TESSRCPT"
RECEIPT_HEADER_LEN = 96
RECEIPT_STATUS_DELIVERED = 1


def outbox_address(program_id: Pubkey) -> tuple[Pubkey, int]:
    return Pubkey.find_program_address([OUTBOX_SEED], program_id)


def receipt_address(program_id: Pubkey, message_id: bytes) -> tuple[Pubkey, int]:
    if len(message_id) != 32:
        raise ValueError("message_id must be 32 bytes")
    return Pubkey.find_program_address([RECEIPT_SEED, message_id], program_id)


def init_gateway_ix(program_id: Pubkey, admin: Pubkey) -> Instruction:
    return Instruction(
        program_id,
        bytes([ProgramInstruction.INIT_GATEWAY]),
        [
            AccountMeta(admin, True, True),
            AccountMeta(outbox_address(program_id)[0], False, True),
            AccountMeta(programdata_address(program_id), False, False),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        ],
    )


def send_ix(program_id: Pubkey, sender: Pubkey, *, dst_domain: int, receiver: bytes, kind: int,
            payload: bytes) -> Instruction:
    """Unchecked on purpose beyond the encoding, so tests can send what the program must refuse."""
    if len(receiver) != 32:
        raise ValueError("receiver must be 32 bytes (left-pad EVM addresses with zeros)")
    data = bytes([ProgramInstruction.SEND]) + struct.pack("<I", dst_domain) + receiver + bytes([kind]) + payload
    return Instruction(
        program_id,
        data,
        [
            AccountMeta(sender, True, False),
            AccountMeta(outbox_address(program_id)[0], False, True),
            AccountMeta(committee_address(program_id)[0], False, False),
        ],
    )


def deliver_ix(program_id: Pubkey, payer: Pubkey, attestation: Attestation, envelope: bytes) -> Instruction:
    data = bytes([ProgramInstruction.DELIVER]) + attestation.encode() + envelope
    return Instruction(
        program_id,
        data,
        [
            AccountMeta(payer, True, True),
            AccountMeta(committee_address(program_id)[0], False, False),
            AccountMeta(receipt_address(program_id, keccak256(envelope))[0], False, True),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        ],
    )


def sent_envelopes(logs: Sequence[str]) -> list[bytes]:
    """The envelope bytes of every Send in a transaction's log messages, in order, whoever wrote
    the line: A Send logs `Program data: <base64 "TESSERA_SENT"> <base64 envelope>`. Watchers use
    `sent_envelopes_of`, which keeps only lines our program wrote."""
    return sent_envelopes_of(logs, None)


def sent_envelopes_of(logs: Sequence[str], program_id: Pubkey | None) -> list[bytes]:
    """As `sent_envelopes`, keeping only lines written while `program_id` itself was executing
    (a CPI-calling program could print a look-alike `Program data:` line of its own)."""
    tag = base64.b64encode(SENT_EVENT_TAG).decode()
    wanted = str(program_id) if program_id is not None else None
    stack: list[str] = []
    found: list[bytes] = []
    for line in logs:
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "Program" and parts[2] == "invoke":
            stack.append(parts[1])
        elif len(parts) >= 3 and parts[0] == "Program" and parts[2] in ("success", "failed:"):
            if stack and stack[-1] == parts[1]:
                stack.pop()
        elif line.startswith("Program data: "):
            fields = line[len("Program data: "):].split(" ")
            if len(fields) != 2 or fields[0] != tag:
                continue
            if wanted is not None and (not stack or stack[-1] != wanted):
                continue
            try:
                found.append(base64.b64decode(fields[1], validate=True))
            except (binascii.Error, ValueError):
                continue
    return found


@dataclass(frozen=True, slots=True)
class OutboxState:
    """The outbox account (PDA ["outbox"])."""

    bump: int
    next_nonce: int
    last_sent_at: int

    @classmethod
    def decode(cls, data: bytes) -> "OutboxState":
        if len(data) < OUTBOX_LEN or data[:8] != OUTBOX_MAGIC or data[8] != 1:
            raise SolanaProgramError("not an initialized Tessera outbox (run InitGateway first)")
        next_nonce, sent_at = struct.unpack_from("<Qq", data, 16)
        return cls(bump=data[9], next_nonce=next_nonce, last_sent_at=sent_at)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """A delivery receipt (PDA ["delivered", message_id]): the envelope the gateway accepted, for
    receiver programs and off-chain agents to read."""

    bump: int
    status: int
    slot: int
    unix_time: int
    relayer: Pubkey
    message_id: bytes
    envelope: bytes

    @classmethod
    def decode(cls, data: bytes) -> "DeliveryReceipt":
        if len(data) < RECEIPT_HEADER_LEN or data[:8] != RECEIPT_MAGIC or data[8] != 1:
            raise SolanaProgramError("not a Tessera delivery receipt")
        (envelope_len,) = struct.unpack_from("<I", data, 12)
        slot, unix_time = struct.unpack_from("<Qq", data, 16)
        if len(data) < RECEIPT_HEADER_LEN + envelope_len:
            raise SolanaProgramError("delivery receipt is truncated")
        return cls(
            bump=data[9],
            status=data[10],
            slot=slot,
            unix_time=unix_time,
            relayer=Pubkey.from_bytes(data[32:64]),
            message_id=bytes(data[64:96]),
            envelope=bytes(data[RECEIPT_HEADER_LEN : RECEIPT_HEADER_LEN + envelope_len]),
        )


async def initialize_gateway(client: AsyncClient, admin: Keypair, program_id: Pubkey) -> Pubkey:
    """Runs InitGateway (admin = the program's upgrade authority; after InitCommittee); returns the
    outbox address. The program computes the outbox's rent itself from the Rent sysvar."""
    await send_instructions(client, admin, [init_gateway_ix(program_id, admin.pubkey())])
    return outbox_address(program_id)[0]
