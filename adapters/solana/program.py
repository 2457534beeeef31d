"""The Tessera Solana program's interface from Python: instruction encoders, PDAs, account decoders
and program error codes, for the gateway, the task board's Deliver accounts and the committee.
Layouts: contracts/solana/README.md. Deployment through the upgradeable loader is in
adapters.solana.deploy; the task board's and the feeds' own instructions and accounts are in
adapters.solana.taskboard and adapters.solana.feeds.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from solana.rpc.models import MemcmpOpts
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from attest.bn254 import G1_LEN, G2_LEN, MAX_HASH_INCREMENTS, fp_sqrt, hash_to_g1_hint
from relay.envelope import Envelope, keccak256, message_digest
from relay.protocol import MessageKind

BPF_LOADER_UPGRADEABLE_ID = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
COMMITTEE_SEED = b"committee"
OUTBOX_SEED = b"outbox"
RECEIPT_SEED = b"delivered"
TASKBOARD_SEED = b"taskboard"
TASK_SEED = b"task"
ANSWERED_SEED = b"answered"
SERVE_SEED = b"serve"  # task protocol v2, serving side: ["serve", request_id]
SENT_EVENT_TAG = b"TESSERA_SENT"  # first sol_log_data field of a Send; the envelope is the second

MAX_HINT_INCREMENTS = MAX_HASH_INCREMENTS  # k is one byte on-chain


class ProgramInstruction(enum.IntEnum):
    PROBE = 0
    INIT_COMMITTEE = 1
    ROTATE_COMMITTEE = 2
    VERIFY_SIGNATURE = 3
    VERIFY_DIGEST = 4
    INIT_GATEWAY = 16
    SEND = 17
    DELIVER = 18
    VERIFY_ROOT = 19
    DELIVER_WITH_PROOF = 20
    CLOSE_ROOT = 21
    CLOSE_RECEIPT = 22
    CHECK_BATCH = 23
    PAUSE = 24  # the committee config's admin: Send, Deliver and VerifyRoot refused
    UNPAUSE = 25
    SET_FEE_CONFIG = 26  # fees (adapters/solana/fees.py builds these)
    SET_BENEFICIARY = 27
    CLAIM_FEES = 28
    SEND_PAID = 29
    CHECK_QUOTE = 30
    TASK_REQUEST = 32
    TASK_SUBMIT_RESULT = 33
    TASK_RECLAIM = 34
    TASK_REQUEST_V2 = 35
    TASK_CLAIM = 36
    TASK_SUBMIT_RESULT_V2 = 37
    TASK_EXPIRE_CLAIM = 38
    TASK_RELEASE_BOND = 39
    TASK_RECLAIM_V2 = 40
    TASK_WITHDRAW = 41
    TASK_CLOSE_TASK = 42
    TASK_CLOSE_SERVE = 43
    TASK_CHECK_PAYLOAD_V2 = 47
    FEED_UPDATE = 48
    FEED_UPDATE_MANY = 49
    FEED_VERIFY_ROOT = 50
    FEED_UPDATE_WITH_PROOFS = 51
    FEED_CLOSE_ROOT = 52
    PROPOSE_ADMIN = 53  # the admin handover, step 1: the admin names its successor (zero cancels)
    ACCEPT_ADMIN = 54  # step 2: the proposed admin signs and becomes the admin


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
    WRONG_SOURCE_SENDER = 0x29
    WRONG_DESTINATION_RECEIVER = 0x2A
    SIGNATURE_INFINITY = 0x30
    SIGNATURE_NOT_ON_CURVE = 0x31
    KEY_INFINITY = 0x32
    HINT_OUT_OF_RANGE = 0x33
    HINT_NOT_ON_CURVE = 0x34
    PAIRING_INPUT_INVALID = 0x35
    SIGNATURE_INVALID = 0x36
    HINT_NOT_CANONICAL = 0x37
    KEY_OUT_OF_RANGE = 0x38
    KEY_NOT_IN_SUBGROUP = 0x39
    ALREADY_DELIVERED = 0x40
    RECEIPT_WRONG_ADDRESS = 0x41
    OUTBOX_WRONG_ADDRESS = 0x42
    OUTBOX_ALREADY_INITIALIZED = 0x43
    OUTBOX_NOT_INITIALIZED = 0x44
    PAYLOAD_TOO_LONG = 0x45
    NONCE_EXHAUSTED = 0x46
    RENT_UNSUPPORTED = 0x47
    GATEWAY_PAUSED = 0x48
    NOT_ADMIN = 0x49
    NO_ADMIN_PENDING = 0x4a  # AcceptAdmin while nothing is proposed
    NOT_PENDING_ADMIN = 0x4b  # AcceptAdmin by another key than the proposed one
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
    TASK_V1_RETIRED = 0x66  # RequestTask / SubmitResult / Reclaim: task protocol v1 is retired
    FEED_REPORT_MALFORMED = 0x70
    FEED_ID_INVALID = 0x71
    FEED_DECIMALS_INVALID = 0x72
    FEED_NO_OBSERVATIONS = 0x73
    FEED_WRONG_ADDRESS = 0x74
    FEED_STALE_ROUND = 0x75
    FEED_DECIMALS_CHANGED = 0x76
    FEED_ACCOUNT_INVALID = 0x77
    FEED_OBSERVED_AFTER_PUBLISHED = 0x78
    FEED_AHEAD_OF_CLOCK = 0x79
    FEED_ROOT_SIZE_INVALID = 0x7A
    FEED_NOT_IN_ROOT = 0x7B
    FEED_ROOT_WRONG_ADDRESS = 0x7C
    FEED_ROOT_ALREADY_VERIFIED = 0x7D
    FEED_ROOT_NOT_VERIFIED = 0x7E
    TASK_TERMS_INVALID = 0x80
    TASK_VERSION_UNSUPPORTED = 0x81
    TASK_SAME_DOMAIN = 0x82
    BOND_TOO_LARGE = 0x83
    SERVE_WRONG_ADDRESS = 0x84
    ALREADY_CLAIMED = 0x85
    RESULT_PENDING = 0x86
    REQUEST_CLOSED = 0x87
    ZERO_PAYOUT = 0x88
    NOT_CLAIMED = 0x89
    NOT_CLAIMANT = 0x8A
    CLAIM_DEADLINE_PASSED = 0x8B
    CLAIM_MISMATCH = 0x8C
    CLAIM_NOT_EXPIRED = 0x8D
    NO_RESULT_PENDING = 0x8E
    RECIPIENT_WRONG = 0x8F
    RECIPIENT_CANNOT_RECEIVE = 0x90
    NOTHING_TO_WITHDRAW = 0x91
    RECIPIENT_BELOW_RENT = 0x92
    VERDICT_MALFORMED = 0x93
    RESULT_RECEIPT_WRONG_ADDRESS = 0x94
    TASK_NONCE_USED = 0x95
    TASK_ACCOUNT_WRONG = 0x96
    TASK_NOT_SETTLED = 0x97
    CREDITS_OUTSTANDING = 0x98
    BATCH_SIZE_INVALID = 0xA0
    PROOF_INVALID = 0xA1
    ROOT_WRONG_ADDRESS = 0xA2
    ROOT_ALREADY_VERIFIED = 0xA3
    ROOT_NOT_VERIFIED = 0xA4
    LANE_MISMATCH = 0xA5
    REPLAY_WRONG_ADDRESS = 0xA6
    DELIVERED_AND_CLOSED = 0xA7
    RECEIPT_NOT_CLOSABLE = 0xA8
    CLOSE_TOO_EARLY = 0xA9
    NOT_A_RECEIPT = 0xAA
    FEE_WRONG_ADDRESS = 0xB0
    FEE_NOT_CONFIGURED = 0xB1
    FEE_FEED_MISMATCH = 0xB2
    FEE_FEED_INVALID = 0xB3
    FEE_PRICE_STALE = 0xB4
    FEE_ABOVE_MAX = 0xB5
    FEE_REQUIRED = 0xB6
    VAULT_WRONG_ADDRESS = 0xB7
    NOT_BENEFICIARY = 0xB8
    NOTHING_TO_CLAIM = 0xB9
    FEE_CONFIG_INVALID = 0xBA
    FEE_OVERFLOW = 0xBB


class SolanaProgramError(RuntimeError):
    """Deploying or calling the Tessera program failed."""


def program_error_code(err: Any) -> int | None:
    """The program's custom error code in a transaction error (InstructionError(i, Custom(code))),
    None for an error the program did not raise."""
    return getattr(getattr(err, "err", None), "code", None)


def program_error_name(err: Any) -> str:
    """The program's error name in a transaction error; "" when it is not one of ours."""
    code = program_error_code(err)
    if code is None:
        return ""
    try:
        return ProgramErrorCode(code).name
    except ValueError:
        return ""


def describe_transaction_error(err: Any) -> str:
    """A transaction error as a person reads it: the program's error name for a custom code."""
    code = program_error_code(err)
    if code is None:
        return str(err)
    return f"{program_error_name(err) or 'UNKNOWN_PROGRAM_ERROR'} (custom error {code:#x} in instruction {getattr(err, 'index', '?')})"


# ---------------------------------------------------------------------------------------------
# Instructions


def committee_address(program_id: Pubkey) -> tuple[Pubkey, int]:
    return Pubkey.find_program_address([COMMITTEE_SEED], program_id)


def programdata_address(program_id: Pubkey) -> Pubkey:
    """The upgradeable loader's ProgramData account of a program (its upgrade authority lives there)."""
    return Pubkey.find_program_address([bytes(program_id)], BPF_LOADER_UPGRADEABLE_ID)[0]


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
        # When y is not a square (the negated root) no witness exists; send one the program rejects.
        return cls(k, y.to_bytes(32, "big"), fp_sqrt(y).to_bytes(32, "big"))

    @classmethod
    def for_digest(cls, digest: bytes) -> "G1Hint":
        """The hint for `digest` (attest.bn254.hash_to_g1_hint: try-and-increment as DESIGN.md
        specifies)."""
        k, y, y_sqrt = hash_to_g1_hint(digest)
        return cls(k, y.to_bytes(32, "big"), y_sqrt.to_bytes(32, "big"))


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
CONFIG_LEN_WITH_PENDING = 368  # grown by the first ProposeAdmin: the pending admin at 336..368


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
    paused: bool = False  # Pause / Unpause (byte 11): Send, Deliver and VerifyRoot refused while set
    pending_admin: Pubkey | None = None  # ProposeAdmin's candidate until it accepts (None: nothing pending)

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
            paused=data[11] != 0,
            pending_admin=(Pubkey.from_bytes(data[336:368])
                           if len(data) >= CONFIG_LEN_WITH_PENDING and any(data[336:368]) else None),
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
    """Deliver; the replay bitmap follows the usual four accounts when the receipt may be closed
    (`replay_accounts`), the task board's accounts are the caller's to append."""
    data = bytes([ProgramInstruction.DELIVER]) + attestation.encode() + envelope
    return Instruction(
        program_id,
        data,
        [
            AccountMeta(payer, True, True),
            AccountMeta(committee_address(program_id)[0], False, False),
            AccountMeta(receipt_address(program_id, keccak256(envelope))[0], False, True),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
            *replay_accounts(program_id, envelope),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Batches (contracts/solana/src/batch.c; layouts: contracts/solana/README.md "Batches and closing";
# the tree: relay.batch, docs/PROTOCOL.md "Batch attestations").

ROOT_SEED = b"root"
REPLAY_SEED = b"replay"
ROOT_MAGIC = b"TESSROOT"
ROOT_ACCOUNT_LEN = 164  # version 2 (132-byte version-1 roots, without the config, are refused)
REPLAY_MAGIC = b"TESSRPLY"
REPLAY_WINDOW_BITS = 13  # 8,192 nonces per bitmap account
REPLAY_ACCOUNT_LEN = 24 + (1 << REPLAY_WINDOW_BITS) // 8
RECEIPT_RETENTION_SECONDS = 86_400  # batch.h: anyone may close a receipt / root after this
ROOT_RETENTION_SECONDS = 86_400


def root_address(program_id: Pubkey, root: bytes) -> Pubkey:
    if len(root) != 32:
        raise ValueError("root must be 32 bytes")
    return Pubkey.find_program_address([ROOT_SEED, root], program_id)[0]


def replay_address(program_id: Pubkey, src_domain: int, nonce: int) -> Pubkey:
    """The replay bitmap of `nonce`'s window of source `src_domain`: PDA ["replay", src_domain u32 LE,
    nonce >> 13 u64 LE]."""
    return Pubkey.find_program_address(
        [REPLAY_SEED, struct.pack("<I", src_domain), struct.pack("<Q", nonce >> REPLAY_WINDOW_BITS)], program_id)[0]


def receipt_closable(program_id: Pubkey, envelope: Envelope) -> bool:
    """Whether the program lets this message's receipt be closed (and so wants its replay bitmap at
    delivery): not a committee message (src_domain 0), not addressed to the task board."""
    return envelope.src_domain != 0 and envelope.dst_receiver != bytes(taskboard_address(program_id))


def replay_accounts(program_id: Pubkey, envelope: bytes | Envelope) -> list[AccountMeta]:
    """[the replay bitmap] for a delivery whose receipt may be closed, else [] (read-only). Reads the
    header only, so tests can still build deliveries of envelopes the program must refuse."""
    raw = envelope.encode() if isinstance(envelope, Envelope) else envelope
    if len(raw) < 82:
        return []
    nonce, src_domain = struct.unpack_from(">QI", raw, 2)
    if src_domain == 0 or raw[50:82] == bytes(taskboard_address(program_id)):
        return []
    return [AccountMeta(replay_address(program_id, src_domain, nonce), False, False)]


def verify_root_ix(program_id: Pubkey, payer: Pubkey, attestation: Attestation, *, src_domain: int,
                   leaf_count: int, root: bytes) -> Instruction:
    """VerifyRoot: `attestation` over relay.batch.root_digest(epoch, src_domain, this domain,
    leaf_count, root) (`Attestation` with the hint for that digest)."""
    data = (bytes([ProgramInstruction.VERIFY_ROOT]) + attestation.encode() + struct.pack("<IB", src_domain, leaf_count)
            + root)
    return Instruction(program_id, data, [
        AccountMeta(payer, True, True),
        AccountMeta(committee_address(program_id)[0], False, False),
        AccountMeta(root_address(program_id, root), False, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def deliver_with_proof_ix(program_id: Pubkey, payer: Pubkey, root: bytes, index: int, proof: Sequence[bytes],
                          envelope: bytes, extra: Sequence[AccountMeta] = ()) -> Instruction:
    """DeliverWithProof of the message at `index` of a verified root (proof: relay.batch.merkle_proof).
    The replay bitmap is added when the receipt may be closed; a delivery to the task board passes
    the board's accounts as `extra` (board_delivery_accounts & co.), as for Deliver. The committee
    config goes last (the program checks it is the config PDA and refuses while paused)."""
    if not 0 <= index <= 255 or len(proof) > 255 or any(len(p) != 32 for p in proof):
        raise ValueError("index and proof length are one byte each; proof hashes 32 bytes")
    data = bytes([ProgramInstruction.DELIVER_WITH_PROOF, index, len(proof)]) + b"".join(proof) + envelope
    return Instruction(program_id, data, [
        AccountMeta(payer, True, True),
        AccountMeta(root_address(program_id, root), False, False),
        AccountMeta(receipt_address(program_id, keccak256(envelope))[0], False, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        *replay_accounts(program_id, envelope),
        *extra,
        AccountMeta(committee_address(program_id)[0], False, False),
    ])


def pause_ix(program_id: Pubkey, admin: Pubkey, paused: bool = True) -> Instruction:
    """Pause (or, with paused=False, Unpause) the gateway: signed by the committee config's admin."""
    tag = ProgramInstruction.PAUSE if paused else ProgramInstruction.UNPAUSE
    return Instruction(program_id, bytes([tag]), [
        AccountMeta(admin, True, False),
        AccountMeta(committee_address(program_id)[0], False, True),
    ])


def propose_admin_ix(program_id: Pubkey, admin: Pubkey, new_admin: Pubkey | None) -> Instruction:
    """ProposeAdmin, signed by the committee config's admin: `new_admin` may take over with AcceptAdmin
    (None or the zero key cancels a proposal). The first proposal grows the config by 32 bytes, the
    admin paying their rent."""
    proposed = bytes(new_admin) if new_admin is not None else bytes(32)
    return Instruction(program_id, bytes([ProgramInstruction.PROPOSE_ADMIN]) + proposed, [
        AccountMeta(admin, True, True),
        AccountMeta(committee_address(program_id)[0], False, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def accept_admin_ix(program_id: Pubkey, new_admin: Pubkey) -> Instruction:
    """AcceptAdmin, signed by the proposed admin: it becomes the committee config's admin."""
    return Instruction(program_id, bytes([ProgramInstruction.ACCEPT_ADMIN]), [
        AccountMeta(new_admin, True, False),
        AccountMeta(committee_address(program_id)[0], False, True),
    ])


def close_root_ix(program_id: Pubkey, closer: Pubkey, root: bytes, payer: Pubkey) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.CLOSE_ROOT]), [
        AccountMeta(closer, True, False),
        AccountMeta(root_address(program_id, root), False, True),
        AccountMeta(payer, False, True),
    ])


def close_receipt_ix(program_id: Pubkey, closer: Pubkey, envelope: Envelope, relayer: Pubkey) -> Instruction:
    """CloseReceipt: the closer (the receiver, or anyone after RECEIPT_RETENTION_SECONDS) signs and
    pays for the replay bitmap if it is the first close in its window; the rent goes to `relayer`
    (the receipt's payer)."""
    return Instruction(program_id, bytes([ProgramInstruction.CLOSE_RECEIPT]), [
        AccountMeta(closer, True, True),
        AccountMeta(receipt_address(program_id, envelope.message_id)[0], False, True),
        AccountMeta(relayer, False, True),
        AccountMeta(replay_address(program_id, envelope.src_domain, envelope.nonce), False, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def check_batch_proof_ix(program_id: Pubkey, message_id: bytes, index: int, leaf_count: int,
                         proof: Sequence[bytes]) -> Instruction:
    """CheckBatch 0 (stateless): the root the proof leads to, as return data."""
    data = (bytes([ProgramInstruction.CHECK_BATCH, 0, leaf_count, index, len(proof)]) + b"".join(proof) + message_id)
    return Instruction(program_id, data, [])


def check_batch_digest_ix(program_id: Pubkey, epoch: int, src_domain: int, dst_domain: int, leaf_count: int,
                          root: bytes) -> Instruction:
    """CheckBatch 1 (stateless): the root digest, as return data."""
    data = bytes([ProgramInstruction.CHECK_BATCH, 1]) + struct.pack("<IIIB", epoch, src_domain, dst_domain,
                                                                     leaf_count) + root
    return Instruction(program_id, data, [])


@dataclass(frozen=True, slots=True)
class RootAccount:
    """A verified batch root (PDA ["root", root])."""

    bump: int
    src_domain: int
    dst_domain: int
    leaf_count: int
    epoch: int
    verified_at: int
    payer: Pubkey
    root: bytes
    board: Pubkey
    config: Pubkey  # the committee config VerifyRoot checked (DeliverWithProof compares its last account)

    @classmethod
    def decode(cls, data: bytes) -> "RootAccount":
        if len(data) != ROOT_ACCOUNT_LEN or data[:8] != ROOT_MAGIC or data[8] != 2:
            raise SolanaProgramError("not a Tessera root account")
        src, dst, count, epoch, verified_at = struct.unpack_from("<IIIIq", data, 12)
        return cls(bump=data[9], src_domain=src, dst_domain=dst, leaf_count=count, epoch=epoch,
                   verified_at=verified_at, payer=Pubkey.from_bytes(data[36:68]), root=bytes(data[68:100]),
                   board=Pubkey.from_bytes(data[100:132]), config=Pubkey.from_bytes(data[132:164]))


def replay_bit_set(data: bytes, nonce: int) -> bool:
    """Whether a replay bitmap account's data marks `nonce` (delivered and its receipt closed)."""
    if len(data) != REPLAY_ACCOUNT_LEN or data[:8] != REPLAY_MAGIC:
        raise SolanaProgramError("not a Tessera replay bitmap")
    bit = nonce & ((1 << REPLAY_WINDOW_BITS) - 1)
    return bool(data[24 + (bit >> 3)] & (1 << (bit & 7)))


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


# ---------------------------------------------------------------------------------------------
# Task board PDAs, and the accounts a Deliver to the board carries. The board's own instructions
# and accounts: adapters.solana.taskboard.


@functools.lru_cache(maxsize=64)
def taskboard_address(program_id: Pubkey) -> Pubkey:
    """The board (PDA ["taskboard"], an address only): src_sender of what it sends, dst_receiver
    of what it is sent. Remembered per program (every delivery asks whether it goes to the board)."""
    return Pubkey.find_program_address([TASKBOARD_SEED], program_id)[0]


def _request_address(seed: bytes, program_id: Pubkey, request_id: bytes) -> Pubkey:
    if len(request_id) != 32:
        raise ValueError("request_id must be 32 bytes (the TASK_REQUEST envelope's message id)")
    return Pubkey.find_program_address([seed, request_id], program_id)[0]


def task_address(program_id: Pubkey, request_id: bytes) -> Pubkey:
    """A request's record and escrow (PDA ["task", request_id])."""
    return _request_address(TASK_SEED, program_id, request_id)


def answered_address(program_id: Pubkey, request_id: bytes) -> Pubkey:
    """The serving side's "a result was sent" marker (PDA ["answered", request_id])."""
    return _request_address(ANSWERED_SEED, program_id, request_id)


def board_delivery_accounts(program_id: Pubkey, envelope: Envelope) -> list[AccountMeta]:
    """The extra accounts a Deliver of `envelope` needs after its usual four when no v2 record
    names more: [] when it is not addressed to the board, else the board only (a TASK_REQUEST; a
    retired v1 TASK_RESULT / PROOF_ATTESTATION, which the program ignores)."""
    board = taskboard_address(program_id)
    if envelope.dst_receiver != bytes(board):
        return []
    return [AccountMeta(board, False, False)]


# ---------------------------------------------------------------------------------------------
# Task protocol v2 (contracts/solana/src/taskboard_v2.c; layouts: contracts/solana/README.md
# "Task board v2"). Requester side: the task lives at ["task", requester, task_nonce u64 LE], an
# address the client picks before sending (no outbox-nonce race), and holds the request envelope.
# Serving side: ["serve", request_id], created by the first Claim, holds the claim, the bond and the
# last result envelope sent. Deliveries of v2 results and verdicts carry the accounts below.

TASK_V2_MAGIC = b"TESSTSK2"
TASK_V2_LEN = 948
SERVE_MAGIC = b"TESSSERV"
SERVE_LEN = 1020  # 988 + the rent payer (CloseServe)
SERVE_LEN_V1 = 988  # serve accounts created before CloseServe: no rent payer, still valid (not closable)
TASK_RETENTION_SECONDS = 86_400  # CloseTask / CloseServe: anyone may close a settled record after this
# What CloseTask leaves at the task's address: the magic then the request id (taskboard.h TOMB_*).
# Tombstones of the first CloseTask are 0 bytes (no request id: deliveries to them are refused).
TASK_TOMBSTONE_MAGIC = b"TESSTOMB"
TASK_TOMBSTONE_LEN = 40
RECEIPT_STATUS_SERVE_CLOSED = 2  # a TASK_REQUEST receipt's status once its serve account was closed
SETTLEMENT_GRACE_SECONDS = 1800  # taskboard.h: ReclaimV2 and ReleaseBond open at deadline + this
VERDICT_V2_LEN = 220


class TaskStateV2(enum.IntEnum):
    OPEN = 1
    COMPLETED = 3
    REFUNDED = 4


class ServeState(enum.IntEnum):
    OPEN = 1
    CLAIMED = 2
    ANSWERED = 3
    CLOSED = 4


def task_v2_address(program_id: Pubkey, requester: Pubkey, task_nonce: int) -> Pubkey:
    """A v2 request's record and escrow: PDA ["task", requester, task_nonce u64 LE] (the client's own
    nonce, e.g. random: the address does not depend on the outbox)."""
    return Pubkey.find_program_address([TASK_SEED, bytes(requester), struct.pack("<Q", task_nonce)], program_id)[0]


def serve_address(program_id: Pubkey, request_id: bytes) -> Pubkey:
    """The serving side's record of a delivered v2 request: PDA ["serve", request_id]."""
    return _request_address(SERVE_SEED, program_id, request_id)


def request_task_v2_ix(program_id: Pubkey, requester: Pubkey, *, task_nonce: int, dst_domain: int,
                       worker_board: bytes, payload: bytes) -> Instruction:
    """RequestTask v2 (tag 35): escrows the payload's max_fee lamports in the task account."""
    if len(worker_board) != 32:
        raise ValueError("worker_board must be 32 bytes (left-pad an EVM address with 12 zero bytes)")
    data = (bytes([ProgramInstruction.TASK_REQUEST_V2]) + struct.pack("<QI", task_nonce, dst_domain) + worker_board
            + payload)
    return Instruction(program_id, data, [
        AccountMeta(requester, True, True),
        AccountMeta(task_v2_address(program_id, requester, task_nonce), False, True),
        AccountMeta(outbox_address(program_id)[0], False, True),
        AccountMeta(committee_address(program_id)[0], False, False),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def claim_task_ix(program_id: Pubkey, claimant: Pubkey, request_id: bytes, *, payout: bytes,
                  refund_to: Pubkey) -> Instruction:
    """Claim (tag 36): at the current auction price, posting the request's bond (lamports).
    `refund_to` is the request's refund_to (gets the bond of an expired claim this one replaces)."""
    if len(payout) != 32:
        raise ValueError("payout must be 32 bytes (an address on the requester's chain, EVM left-padded)")
    return Instruction(program_id, bytes([ProgramInstruction.TASK_CLAIM]) + payout, [
        AccountMeta(claimant, True, True),
        AccountMeta(receipt_address(program_id, request_id)[0], False, False),
        AccountMeta(serve_address(program_id, request_id), False, True),
        AccountMeta(refund_to, False, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def submit_result_v2_ix(program_id: Pubkey, claimant: Pubkey, request_id: bytes, payload: bytes) -> Instruction:
    """SubmitResult v2 (tag 37): only the claimant, by its claim deadline."""
    return Instruction(program_id, bytes([ProgramInstruction.TASK_SUBMIT_RESULT_V2]) + payload, [
        AccountMeta(claimant, True, False),
        AccountMeta(serve_address(program_id, request_id), False, True),
        AccountMeta(outbox_address(program_id)[0], False, True),
        AccountMeta(committee_address(program_id)[0], False, False),
    ])


def expire_claim_ix(program_id: Pubkey, request_id: bytes, refund_to: Pubkey) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.TASK_EXPIRE_CLAIM]), [
        AccountMeta(serve_address(program_id, request_id), False, True),
        AccountMeta(refund_to, False, True),
    ])


def release_bond_ix(program_id: Pubkey, request_id: bytes, claimant: Pubkey) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.TASK_RELEASE_BOND]), [
        AccountMeta(serve_address(program_id, request_id), False, True),
        AccountMeta(claimant, False, True),
    ])


def reclaim_v2_ix(program_id: Pubkey, task: Pubkey, requester: Pubkey) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.TASK_RECLAIM_V2]), [
        AccountMeta(task, False, True),
        AccountMeta(requester, False, True),
    ])


def close_task_ix(program_id: Pubkey, closer: Pubkey, task: Pubkey, requester: Pubkey) -> Instruction:
    """CloseTask (tag 42): a settled task's rent back to its requester; the account stays as a
    40-byte tombstone (magic + request id) so its (requester, task_nonce) is never used again and a
    late result or verdict of the request is delivered as a no-op. The requester may close at once,
    anyone TASK_RETENTION_SECONDS after settlement."""
    return Instruction(program_id, bytes([ProgramInstruction.TASK_CLOSE_TASK]), [
        AccountMeta(closer, True, False),
        AccountMeta(task, False, True),
        AccountMeta(requester, False, True),
    ])


def close_serve_ix(program_id: Pubkey, closer: Pubkey, request_id: bytes, rent_payer: Pubkey) -> Instruction:
    """CloseServe (tag 43): a settled serve account deleted, its lamports to `rent_payer` (the
    claimant whose first Claim created it); the request's receipt is marked so Claim refuses it for
    good. The payer may close at once, anyone TASK_RETENTION_SECONDS after max(settlement, deadline)."""
    return Instruction(program_id, bytes([ProgramInstruction.TASK_CLOSE_SERVE]), [
        AccountMeta(closer, True, False),
        AccountMeta(serve_address(program_id, request_id), False, True),
        AccountMeta(rent_payer, False, True),
        AccountMeta(receipt_address(program_id, request_id)[0], False, True),
    ])


def withdraw_credit_ix(program_id: Pubkey, record: Pubkey, recipient: Pubkey) -> Instruction:
    """Withdraw (tag 41): pays what a task or serve account holds for `recipient`."""
    return Instruction(program_id, bytes([ProgramInstruction.TASK_WITHDRAW]), [
        AccountMeta(record, False, True),
        AccountMeta(recipient, False, True),
    ])


def check_task_payload_v2_ix(program_id: Pubkey, kind: int, payload: bytes) -> Instruction:
    """CheckPayload v2 (tag 47, no accounts): kind 1/2/3 runs the program's TASK_REQUEST v2 /
    TASK_RESULT v2 / verdict decoder; kind 0 computes the auction price (auction_price_input)."""
    return Instruction(program_id, bytes([ProgramInstruction.TASK_CHECK_PAYLOAD_V2, kind]) + payload, [])


def auction_price_input(max_fee: int, start_bps: int, auction_window: int, auction_start: int, now: int) -> bytes:
    return (max_fee.to_bytes(16, "big") + start_bps.to_bytes(2, "big") + auction_window.to_bytes(4, "big")
            + auction_start.to_bytes(8, "big") + now.to_bytes(8, "big"))


def result_v2_delivery_accounts(program_id: Pubkey, envelope: Envelope, *, task: Pubkey,
                                requester: Pubkey) -> list[AccountMeta]:
    """After the Deliver's four: a TASK_RESULT v2 to this board (the requester's side)."""
    return [
        AccountMeta(taskboard_address(program_id), False, False),
        AccountMeta(task, False, True),
        AccountMeta(Pubkey.from_bytes(envelope.payload[145:177]), False, True),
        AccountMeta(requester, False, True),
    ]


def verdict_delivery_accounts(program_id: Pubkey, envelope: Envelope, *, task: Pubkey | None = None,
                              requester: Pubkey | None = None, claimant: Pubkey | None = None,
                              refund_to: Pubkey | None = None) -> list[AccountMeta]:
    """After the Deliver's four: a verdict to this board. Requester side (task + requester): the
    task, the result's receipt, payout, requester. Serving side (claimant + refund_to, from the serve
    account): the serve account, claimant, refund_to."""
    payload = envelope.payload
    board = AccountMeta(taskboard_address(program_id), False, False)
    if task is not None and requester is not None:
        return [board, AccountMeta(task, False, True),
                AccountMeta(receipt_address(program_id, payload[33:65])[0], False, False),
                AccountMeta(Pubkey.from_bytes(payload[161:193]), False, True), AccountMeta(requester, False, True)]
    if claimant is not None and refund_to is not None:
        return [board, AccountMeta(serve_address(program_id, payload[:32]), False, True),
                AccountMeta(claimant, False, True), AccountMeta(refund_to, False, True)]
    raise ValueError("a verdict names its side: task + requester (requester's board) or claimant + refund_to (serving)")


def closed_task_delivery_accounts(program_id: Pubkey, tombstone: Pubkey) -> list[AccountMeta]:
    """After the Deliver's four: a TASK_RESULT v2 or verdict of a request whose task CloseTask
    closed: the board and the task's tombstone (its address, holding that request id). The program
    records the delivery and pays nothing."""
    return [AccountMeta(taskboard_address(program_id), False, False), AccountMeta(tombstone, False, True)]


def closed_serve_verdict_accounts(program_id: Pubkey, envelope: Envelope) -> list[AccountMeta]:
    """After the Deliver's four: a verdict of a request served here whose serve account CloseServe
    deleted: the board, the (now empty) serve address ["serve", request_id] and the request's own
    receipt ["delivered", request_id] (status RECEIPT_STATUS_SERVE_CLOSED). The program records the
    delivery and pays nothing."""
    request_id = envelope.payload[:32]
    return [AccountMeta(taskboard_address(program_id), False, False),
            AccountMeta(serve_address(program_id, request_id), False, True),
            AccountMeta(receipt_address(program_id, request_id)[0], False, False)]


def is_task_tombstone(data: bytes | None, request_id: bytes | None = None) -> bool:
    """Whether `data` (a task address's account data) is a tombstone CloseTask left — of
    `request_id` when given. A 0-byte tombstone of the first CloseTask is not (it names no request)."""
    return (data is not None and len(data) == TASK_TOMBSTONE_LEN and data[:8] == TASK_TOMBSTONE_MAGIC
            and (request_id is None or data[8:40] == request_id))


def task_tombstone_filters(request_id: bytes) -> list[Any]:
    """getProgramAccounts filters that find the tombstone of a request's closed v2 task."""
    if len(request_id) != 32:
        raise ValueError("request_id must be 32 bytes (the TASK_REQUEST envelope's message id)")
    return [TASK_TOMBSTONE_LEN, MemcmpOpts(offset=8, bytes=str(Pubkey.from_bytes(request_id)))]  # (magic: is_task_tombstone)


TASK_V2_REQUEST_ID_OFFSET = 136  # where a v2 task account stores its request id


def task_v2_filters(request_id: bytes) -> list[Any]:
    """getProgramAccounts filters that find the v2 task account of a request id (its address
    depends on the requester's own task nonce, so it cannot be derived from the id)."""
    if len(request_id) != 32:
        raise ValueError("request_id must be 32 bytes (the TASK_REQUEST envelope's message id)")
    return [TASK_V2_LEN, MemcmpOpts(offset=TASK_V2_REQUEST_ID_OFFSET, bytes=str(Pubkey.from_bytes(request_id)))]  # base58


def is_v2_result(envelope: Envelope) -> bool:
    """A TASK_RESULT v2 (version byte 2 after the request id)."""
    return envelope.kind == MessageKind.TASK_RESULT and len(envelope.payload) >= 33 and envelope.payload[32] == 2


def is_v2_verdict(envelope: Envelope) -> bool:
    """A PROOF_ATTESTATION v2 (the committee's verdict: 220 bytes, version byte 2 after the request id)."""
    payload = envelope.payload
    return envelope.kind == MessageKind.PROOF_ATTESTATION and len(payload) == VERDICT_V2_LEN and payload[32] == 2


def _stored_envelope(data: bytes, at: int) -> bytes | None:
    (length,) = struct.unpack_from("<I", data, at - 8)
    return bytes(data[at:at + length]) if length else None


@dataclass(frozen=True, slots=True)
class TaskAccountV2:
    """A v2 task (PDA ["task", requester, task_nonce]): the request, its escrow and how it settled.
    `envelope` is the TASK_REQUEST v2 envelope exactly as sent (read it here, not from logs)."""

    bump: int
    state: TaskStateV2
    dst_domain: int
    requester: Pubkey
    task_nonce: int
    deadline: int
    max_fee: int
    created_at: int
    updated_at: int
    executor: bytes
    worker_board: bytes
    request_id: bytes
    request_nonce: int
    pending_result_id: bytes | None  # a valid verdict kept until its result arrives
    pending_fields_hash: bytes
    pending_submitted_at: int
    result_id: bytes | None  # the result that was paid
    payout: bytes
    price: int
    refund: int
    payout_credit: int
    requester_credit: int
    envelope: bytes

    @classmethod
    def decode(cls, data: bytes) -> "TaskAccountV2":
        data = bytes(data)
        if len(data) < TASK_V2_LEN or data[:8] != TASK_V2_MAGIC or data[8] != 2:
            raise SolanaProgramError("not a Tessera v2 task account")
        (dst_domain,) = struct.unpack_from("<I", data, 12)
        nonce, deadline, max_fee, created, updated = struct.unpack_from("<QQQqq", data, 48)
        (request_nonce,) = struct.unpack_from("<Q", data, 168)
        (pending_at,) = struct.unpack_from("<Q", data, 240)
        price, refund, payout_credit, requester_credit = struct.unpack_from("<QQQQ", data, 312)
        pending, result = data[176:208], data[248:280]
        return cls(
            bump=data[9], state=TaskStateV2(data[10]), dst_domain=dst_domain, requester=Pubkey.from_bytes(data[16:48]),
            task_nonce=nonce, deadline=deadline, max_fee=max_fee, created_at=created, updated_at=updated,
            executor=data[88:104], worker_board=data[104:136], request_id=data[136:168], request_nonce=request_nonce,
            pending_result_id=pending if any(pending) else None, pending_fields_hash=data[208:240],
            pending_submitted_at=pending_at, result_id=result if any(result) else None, payout=data[280:312],
            price=price, refund=refund, payout_credit=payout_credit, requester_credit=requester_credit,
            envelope=_stored_envelope(data, 352) or b"",
        )


@dataclass(frozen=True, slots=True)
class ServeAccount:
    """The serving side of a v2 request (PDA ["serve", request_id]): terms, the current claim, the
    bond, and the last TASK_RESULT v2 envelope sent (`result_envelope`; read it here, not from logs)."""

    bump: int
    state: ServeState
    src_domain: int
    request_id: bytes
    src_board: bytes
    deadline: int
    auction_start: int
    auction_window: int
    claim_window: int
    start_bps: int
    claims: int
    max_fee: int
    bond: int
    refund_to: Pubkey
    executor: bytes
    claimant: Pubkey | None
    payout: bytes
    price: int
    claim_deadline: int
    bond_held: int
    refund_credit: int
    claimant_credit: int
    credited: Pubkey
    result_id: bytes | None
    result_nonce: int
    submitted_at: int
    updated_at: int
    result_envelope: bytes | None
    rent_payer: Pubkey | None  # the claimant whose first Claim created the account: CloseServe pays it back
    # (None: a pre-upgrade 988-byte account, which CloseServe refuses)

    @classmethod
    def decode(cls, data: bytes) -> "ServeAccount":
        data = bytes(data)
        if len(data) < SERVE_LEN_V1 or data[:8] != SERVE_MAGIC or data[8] != 1:
            raise SolanaProgramError("not a Tessera serve account")
        (src_domain,) = struct.unpack_from("<I", data, 12)
        deadline, start, window, claim_window, bps, claims = struct.unpack_from("<QQIIHxxI", data, 80)
        lo, hi, bond = struct.unpack_from("<QQQ", data, 112)
        price_lo, price_hi, claim_deadline, bond_held, refund_credit, claimant_credit = struct.unpack_from(
            "<QQQQQQ", data, 248)
        result_nonce, submitted_at, updated_at = struct.unpack_from("<QQq", data, 360)
        claimant, result = data[184:216], data[328:360]
        return cls(
            bump=data[9], state=ServeState(data[10]), src_domain=src_domain, request_id=data[16:48],
            src_board=data[48:80], deadline=deadline, auction_start=start, auction_window=window,
            claim_window=claim_window, start_bps=bps, claims=claims, max_fee=lo | hi << 64, bond=bond,
            refund_to=Pubkey.from_bytes(data[136:168]), executor=data[168:184],
            claimant=Pubkey.from_bytes(claimant) if any(claimant) else None, payout=data[216:248],
            price=price_lo | price_hi << 64, claim_deadline=claim_deadline, bond_held=bond_held,
            refund_credit=refund_credit, claimant_credit=claimant_credit, credited=Pubkey.from_bytes(data[296:328]),
            result_id=result if any(result) else None, result_nonce=result_nonce, submitted_at=submitted_at,
            updated_at=updated_at, result_envelope=_stored_envelope(data, 392),
            rent_payer=Pubkey.from_bytes(data[988:1020]) if len(data) >= SERVE_LEN else None,
        )
