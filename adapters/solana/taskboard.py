"""The Solana task board (in the Tessera program, contracts/solana/src/taskboard.c) from Python:
its instruction builders and account decoders (the v1 ones stay only to build and read what the
program now refuses: task protocol v1 is retired, docs/TASKS.md "v1 retired") and
`SolanaTaskBoardV2`. The board's PDAs and the accounts a Deliver to
it carries are in adapters.solana.program (the gateway needs them too). Layouts:
contracts/solana/README.md "Task board".

- The board is the PDA ["taskboard"] (an address only): the src_sender of what it sends and the
  dst_receiver of what it is sent.
- A request's record and escrow live in the PDA ["task", request_id]; RequestTask creates it. The
  request id is the message id of the envelope RequestTask sends, so the client derives the task
  address from the outbox nonce it read; when another Send takes that nonce first the program
  refuses with TASK_WRONG_ADDRESS and `request_task` reads the nonce again and retries.
- The serving side marks "a result was sent" in the PDA ["answered", request_id].
- `watch_requests` lists `getSignaturesForAddress(board)`: every Deliver to the board carries the
  board account (read-only), so the list holds every delivery to it.

Task protocol v2 (contracts/solana/src/taskboard_v2.c, contracts/solana/README.md "Task board v2") is
`SolanaTaskBoardV2` (relay.interfaces.ServingBoardV2 and RequesterBoardV2): a request's task lives at
["task", requester, task_nonce] with a random task nonce the client picks (no outbox-nonce race) and
holds the envelope it sent; a delivered request is claimed at the auction price with its bond, which
creates ["serve", request_id] (the claim, the bond, the last result envelope); only the claimant
submits. `_SolanaBoard` holds endpoints, keys, decoded refusals and the board watch. The v1 client
`SolanaTaskBoard` is removed: the program refuses v1 instructions (TASK_V1_RETIRED).
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from solana.rpc.commitment import Commitment, Confirmed
from solana.rpc.core import RPCException
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.sysvar import CLOCK as CLOCK_SYSVAR
from solders.transaction import VersionedTransaction

from adapters.solana.program import (
    RECEIPT_STATUS_SERVE_CLOSED,
    SETTLEMENT_GRACE_SECONDS,
    TASK_RETENTION_SECONDS,
    DeliveryReceipt,
    ProgramInstruction,
    ServeAccount,
    SolanaProgramError,
    TaskAccountV2,
    TaskStateV2,
    answered_address,
    claim_task_ix,
    close_serve_ix,
    close_task_ix,
    committee_address,
    describe_transaction_error,
    expire_claim_ix,
    is_task_tombstone,
    outbox_address,
    program_error_name,
    receipt_address,
    reclaim_v2_ix,
    release_bond_ix,
    request_task_v2_ix,
    serve_address,
    submit_result_v2_ix,
    task_address,
    task_v2_address,
    task_v2_filters,
    taskboard_address,
    withdraw_credit_ix,
)
from adapters.solana.rpc import LogsWaker, SolanaAdapterError, SolanaRpc, follow_address, keypair_from_ref
from adapters.solana.tx import ConfirmationTimeout, SolanaTransactor, TransactionRefused
from relay.config import KeyRef, SolanaChain, WorkerSection
from relay.envelope import Envelope, EnvelopeError
from relay.interfaces import (Claim, ClaimStatus, IncomingRequestV2, SentRequest, ServeState,
                              TaskState, TaskStatus, TaskStatusV2)
from relay.log import get_logger
from relay.protocol import MessageKind
from relay.tasks.board import (
    BoardRefused,
    BondRefused,
    ClaimLost,
    ClaimNotHeld,
    ClaimRefused,
    ReclaimRefused,
    RequestExpired,
    RequestRefused,
    ResultAlreadySubmitted,
    ResultRefused,
    TaskBoardError,
)
from relay.tasks.payloads import (
    TaskPayloadError,
    TaskRequestV2,
    TaskResultV2,
    auction_price,
    decode_executor_id,
    task_payload_version,
)

log = get_logger("adapters.solana.taskboard")

TASK_MAGIC = b"TESSTASK"
TASK_LEN = 288
ANSWERED_MAGIC = b"TESSANSW"
ANSWERED_LEN = 120
ATTESTATION_GRACE_SECONDS = 300  # taskboard.h: reclaim waits this long after the deadline once a result is recorded
DELIVER_ATTESTATION_LEN = 133  # the Deliver instruction's attestation block (adapters.solana.program.Attestation)

REQUEST_CU_LIMIT = 80_000
SUBMIT_CU_LIMIT = 80_000
RECLAIM_CU_LIMIT = 20_000
CLAIM_CU_LIMIT = 60_000  # measured 14.6k (contracts/solana/README.md "Task board v2")
BOND_CU_LIMIT = 40_000  # ExpireClaim, ReleaseBond, Withdraw
CLOSE_CU_LIMIT = 20_000  # CloseTask 2.4k, CloseServe 4.2k CU measured

Role = Literal["requester", "worker", "reader"]
T = TypeVar("T")


# --- addresses and instructions ---------------------------------------------------------------


def request_task_ix(program_id: Pubkey, requester: Pubkey, *, request_id: bytes, dst_domain: int,
                    worker_board: bytes, payload: bytes) -> Instruction:
    """`request_id` is the id the client expects (from the outbox nonce): it names the task account."""
    if len(worker_board) != 32:
        raise ValueError("worker_board must be 32 bytes (left-pad an EVM address with 12 zero bytes)")
    data = bytes([ProgramInstruction.TASK_REQUEST]) + struct.pack("<I", dst_domain) + worker_board + payload
    return Instruction(program_id, data, [
        AccountMeta(requester, True, True),
        AccountMeta(task_address(program_id, request_id), False, True),
        AccountMeta(outbox_address(program_id)[0], False, True),
        AccountMeta(committee_address(program_id)[0], False, False),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def submit_result_ix(program_id: Pubkey, worker: Pubkey, request_id: bytes, payload: bytes) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.TASK_SUBMIT_RESULT]) + payload, [
        AccountMeta(worker, True, True),
        AccountMeta(receipt_address(program_id, request_id)[0], False, False),
        AccountMeta(answered_address(program_id, request_id), False, True),
        AccountMeta(outbox_address(program_id)[0], False, True),
        AccountMeta(committee_address(program_id)[0], False, False),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def reclaim_ix(program_id: Pubkey, requester: Pubkey, request_id: bytes) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.TASK_RECLAIM]), [
        AccountMeta(requester, False, True),
        AccountMeta(task_address(program_id, request_id), False, True),
    ])


# --- accounts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskAccount:
    """The task account (PDA ["task", request_id]): requester-side record and escrow."""

    bump: int
    state: TaskState
    dst_domain: int
    requester: Pubkey
    deadline: int
    escrow: int  # lamports held on top of the account's rent
    executor: str
    worker_board: bytes
    request_id: bytes
    result_id: bytes
    output_hash: bytes
    worker: bytes
    payout: bytes
    created_at: int
    updated_at: int

    @classmethod
    def decode(cls, data: bytes) -> "TaskAccount":
        if len(data) < TASK_LEN or data[:8] != TASK_MAGIC or data[8] != 1:
            raise SolanaProgramError("not a Tessera task account (wrong magic, version or size)")
        (dst_domain,) = struct.unpack_from("<I", data, 12)
        deadline, escrow = struct.unpack_from("<qQ", data, 48)
        created_at, updated_at = struct.unpack_from("<qq", data, 272)
        return cls(
            bump=data[9], state=TaskState(data[10]), dst_domain=dst_domain, requester=Pubkey.from_bytes(data[16:48]),
            deadline=deadline, escrow=escrow, executor=decode_executor_id(bytes(data[64:80])),
            worker_board=bytes(data[80:112]), request_id=bytes(data[112:144]), result_id=bytes(data[144:176]),
            output_hash=bytes(data[176:208]), worker=bytes(data[208:240]), payout=bytes(data[240:272]),
            created_at=created_at, updated_at=updated_at,
        )

    def status(self) -> TaskStatus:
        has_result = self.state in (TaskState.RESULT_RECEIVED, TaskState.COMPLETED) or any(self.result_id)
        return TaskStatus(
            request_id=self.request_id, state=self.state, requester=bytes(self.requester), deadline=self.deadline,
            escrow=self.escrow, executor=self.executor,
            result_id=self.result_id if has_result else None, output_hash=self.output_hash if has_result else None,
            worker=self.worker if has_result else None, payout=self.payout if has_result else None,
        )


@dataclass(frozen=True, slots=True)
class AnsweredAccount:
    """The serving side's marker (PDA ["answered", request_id]): the result sent for a request."""

    bump: int
    request_id: bytes
    result_id: bytes
    submitter: Pubkey
    answered_at: int

    @classmethod
    def decode(cls, data: bytes) -> "AnsweredAccount":
        if len(data) < ANSWERED_LEN or data[:8] != ANSWERED_MAGIC or data[8] != 1:
            raise SolanaProgramError("not a Tessera answered account")
        (answered_at,) = struct.unpack_from("<q", data, 112)
        return cls(bump=data[9], request_id=bytes(data[16:48]), result_id=bytes(data[48:80]),
                   submitter=Pubkey.from_bytes(data[80:112]), answered_at=answered_at)


def delivered_envelopes(tx: VersionedTransaction, program_id: Pubkey) -> list[bytes]:
    """The envelopes of the top-level Deliver and DeliverWithProof instructions to `program_id` in a
    transaction (a relayer delivers a batch's messages with DeliverWithProof: index u8, proof length
    u8, the proof's 32-byte hashes, then the envelope)."""
    message = tx.message
    keys = list(message.account_keys)
    found: list[bytes] = []
    for ix in message.instructions:
        if ix.program_id_index >= len(keys) or keys[ix.program_id_index] != program_id:
            continue
        data = bytes(ix.data)
        if len(data) > 1 + DELIVER_ATTESTATION_LEN and data[0] == ProgramInstruction.DELIVER:
            found.append(data[1 + DELIVER_ATTESTATION_LEN:])
        elif len(data) > 3 and data[0] == ProgramInstruction.DELIVER_WITH_PROOF:
            start = 3 + 32 * data[2]
            if len(data) > start:
                found.append(data[start:])
    return found


# --- errors ------------------------------------------------------------------------------------


class SolanaTaskBoardError(TaskBoardError):
    """The Solana task board could not do what was asked; the message says why and what to do."""


_BOARD = "the Solana task board"  # how refusals name the board
_HINTS = {
    "ALREADY_ANSWERED": "another result was sent first; nothing to do",
    "TASK_EXPIRED": "the deadline passed; the requester will reclaim the escrow",
    "REQUEST_RECEIPT_INVALID": "no TASK_REQUEST with this id was delivered to this chain (wrong chain, or not "
                               "delivered yet)",
    "NOT_A_BOARD_REQUEST": "the delivered message is not a TASK_REQUEST to this board",
    "RESULT_EXECUTOR_MISMATCH": "the result must name the executor the request asked for",
    "RESULT_REQUEST_MISMATCH": "the result's request_id must be the request it answers",
    "TASK_DEADLINE_PASSED": "choose a deadline after the chain's current time",
    "TASK_FEE_TOO_LARGE": "max_fee is in lamports and must fit in 64 bits",
    "DEADLINE_NOT_PASSED": "wait until the deadline (plus 300 s once a result was recorded), then reclaim again",
    "TASK_NOT_REFUNDABLE": "the task was already completed or refunded",
    "TASK_NOT_FOUND": "no task with this request id was requested on this board",
    "INSUFFICIENT_LAMPORTS": "fund the signing keypair: it pays the new account's rent (and, for a request, the "
                             "max_fee escrow)",
    "CONFIG_NOT_INITIALIZED": "run InitCommittee and InitGateway (`relay localnet up` does)",
    "OUTBOX_NOT_INITIALIZED": "run InitGateway (`relay localnet up` does)",
    # v2
    "TASK_TERMS_INVALID": "check auction_window, start_bps (<= 10000), claim_window (>= 1) and refund_to",
    "TASK_VERSION_UNSUPPORTED": "the delivered request is not a TASK_REQUEST v2 (serve it with the v1 board)",
    "TASK_SAME_DOMAIN": "a request goes to another chain's board: dst_domain must not be this chain's domain",
    "TASK_NONCE_USED": "a task with this task nonce exists: request again (a new random nonce)",
    "BOND_TOO_LARGE": "the request's bond is in lamports and must fit in 64 bits",
    "ALREADY_CLAIMED": "another worker holds the claim until its claim deadline; the task re-opens if it expires",
    "RESULT_PENDING": "a result waits for the committee's verdict; the task re-opens only if it is refused",
    "REQUEST_CLOSED": "the request was served (or its last claim settled); nothing to do",
    "ZERO_PAYOUT": "give a payout address on the requester's chain",
    "NOT_CLAIMED": "claim the request first; a result is accepted only from the running claim's claimant",
    "NOT_CLAIMANT": "another account holds the claim: only it may submit",
    "CLAIM_DEADLINE_PASSED": "the claim ran out before the result landed; the task is open for claims again",
    "CLAIM_MISMATCH": "the result must carry the claim's claimant (this account), payout and price",
    "CLAIM_NOT_EXPIRED": "the claim runs until its claim deadline (claim_status)",
    "NO_RESULT_PENDING": "no result is waiting for a verdict",
    "RECIPIENT_WRONG": "the account must be the one the record names (refund_to, claimant, requester)",
    "RECIPIENT_CANNOT_RECEIVE": "the recipient must be a writable, non-executable account",
    "NOTHING_TO_WITHDRAW": "nothing is held for this account",
    "RECIPIENT_BELOW_RENT": "fund the recipient up to the rent-exempt minimum, then withdraw again",
}

# Refusals with a class of their own in relay.tasks.board, by the class the action refuses with.
_SPECIFIC: dict[type[BoardRefused], dict[str, type[BoardRefused]]] = {
    ResultRefused: {"ALREADY_ANSWERED": ResultAlreadySubmitted, "TASK_EXPIRED": RequestExpired,
                    "NOT_CLAIMANT": ClaimNotHeld, "NOT_CLAIMED": ClaimNotHeld, "CLAIM_DEADLINE_PASSED": ClaimNotHeld},
    ClaimRefused: {"ALREADY_CLAIMED": ClaimLost, "RESULT_PENDING": ClaimLost, "REQUEST_CLOSED": ClaimLost,
                   "TASK_EXPIRED": RequestExpired},
}


def _refused(cls: type[BoardRefused], action: str, reason: str, error: str) -> BoardRefused:
    """A refusal named `error` (a ProgramErrorCode name) found before sending anything."""
    cls = _SPECIFIC.get(cls, {}).get(error, cls)
    return cls(action, reason, _HINTS.get(error, ""), error, _BOARD)


def _refusal(cls: type[BoardRefused], action: str, err: Any, logs: Sequence[str] = ()) -> BoardRefused:
    name = program_error_name(err)
    cls = _SPECIFIC.get(cls, {}).get(name, cls)
    reason = describe_transaction_error(err)
    tail = [line for line in logs if "tessera" in line or "failed" in line][-3:]
    if tail:
        reason += " [" + " | ".join(tail) + "]"
    return cls(action, reason, _HINTS.get(name, ""), name, _BOARD)


# --- the board ---------------------------------------------------------------------------------


class _SolanaBoard:
    """The board of one Solana chain over its RPC endpoints (adapters.solana.rpc): keys, reads at
    `confirmed`, transactions whose refusals are named after the program's errors, and the watch of
    the board's transactions. Writes go out with preflight at `confirmed` and are awaited at
    `confirmed` (adapters.solana.tx); watches report deliveries at the chain's commitment."""

    def __init__(self, name: str, chain: SolanaChain, signer: Keypair | None = None, *,
                 poll_interval: float = 1.0, idle_poll_interval: float = 10.0, confirm_timeout: float = 60.0,
                 rpc_timeout: float = 10.0, pool_attempts: int = 4, pool_base_delay: float = 0.2) -> None:
        if chain.program_id is None:
            raise SolanaTaskBoardError(f"chains.{name}.program_id is not set: deploy the program and write its id")
        self.name = name
        self.domain = chain.domain
        self.program_id = Pubkey.from_string(chain.program_id)
        self.board = taskboard_address(self.program_id)
        self.address = bytes(self.board)
        self.commitment: Commitment = chain.commitment  # type: ignore[assignment]
        self.signer = signer
        self.poll_interval = poll_interval
        self.idle_poll_interval = idle_poll_interval
        self.confirm_timeout = confirm_timeout
        self.rpc = SolanaRpc(name, chain.rpc_urls, timeout=rpc_timeout, attempts=pool_attempts,
                             base_delay=pool_base_delay)
        self.tx = SolanaTransactor(self.rpc, signer, name=name,
                                   no_payer_hint="this board client has no keypair; build it with from_config")
        # Every Deliver mentions the program: its logs subscription wakes the watcher (a superset of
        # what reaches the board, which costs one extra listing); polling covers while it is down.
        self.logs = LogsWaker(name, chain.ws_urls, self.program_id, self.commitment)

    @classmethod
    def from_config(cls, name: str, chain: SolanaChain, role: Role = "requester",
                    keypair: Keypair | KeyRef | None = None, worker: WorkerSection | None = None,
                    **options: Any) -> Any:
        """The board of `[chains.<name>]`. Role "requester" signs with `keypair`, else the chain's
        `sender` (else `signer`, as the SDK does); role "worker" with `keypair`, else the `[worker]`
        section's `solana_keypair` (never the relayer's signer); role "reader" signs nothing."""
        if role == "reader":
            return cls(name, chain, None, **options)
        if role == "worker":
            ref = keypair if keypair is not None else (worker.solana_keypair if worker else None)
            if ref is None:
                raise SolanaTaskBoardError(
                    f"the worker's board on {name} needs the worker's own fee payer: pass keypair= or set "
                    "[worker] solana_keypair (file = ... or env = ...); the relayer's signer must not be shared")
        elif role == "requester":
            ref = keypair if keypair is not None else (chain.sender or chain.signer)
            if ref is None:
                raise SolanaTaskBoardError(
                    f"requesting tasks on {name} needs a keypair: set chains.{name}.sender")
        else:
            raise SolanaTaskBoardError(f"role must be 'worker', 'requester' or 'reader', not {role!r}")
        signer = ref if isinstance(ref, Keypair) else keypair_from_ref(ref, "worker.solana_keypair")
        return cls(name, chain, signer, **options)

    async def close(self) -> None:
        await self.rpc.close()

    async def wallet_balances(self) -> dict[str, int]:
        return await self.tx.wallet_balances()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----- reads -----------------------------------------------------------------------------

    async def _account_data(self, address: Pubkey) -> bytes | None:
        return await self.rpc.account_data(address, self.program_id, Confirmed)

    async def _transact(self, instructions: Sequence[Instruction], cu_limit: int, action: str,
                        refusal: type[BoardRefused]) -> str:
        """Sends with preflight, waits for `confirmed`; a refusal (in preflight or on-chain) raises
        `refusal` (or its specific subclass) named after the program's error."""
        try:
            signature = await self.tx.transact(instructions, cu_limit=cu_limit, commitment=Confirmed,
                                               timeout=self.confirm_timeout)
        except TransactionRefused as exc:
            raise _refusal(refusal, action, exc.err, exc.logs) from None
        except RPCException as exc:
            raise SolanaTaskBoardError(f"{self.name}: {action} was refused by the node: {exc}") from None
        except ConfirmationTimeout:
            raise SolanaTaskBoardError(
                f"{self.name}: {action} was not confirmed within {self.confirm_timeout:.0f}s; "
                "check the transaction before retrying") from None
        except SolanaAdapterError as exc:
            raise SolanaTaskBoardError(f"{self.name}: {action}: {exc}") from None
        return str(signature)

    def _signer_key(self) -> Pubkey:
        if self.signer is None:
            raise SolanaTaskBoardError(f"{self.name}: this board client has no keypair (read-only); build it with "
                                       "from_config as a requester or a worker")
        return self.signer.pubkey()

    def _follow(self, cursor: str | None, read: Callable[[Signature, str], Awaitable[list[T] | None]]
                ) -> AsyncIterator[T]:
        """What `read` finds in the board's transactions after `cursor`, at the chain's commitment,
        forever (adapters.solana.rpc.follow_address). Every Deliver to the board carries the board
        account, so listing the board lists them all."""
        return follow_address(self.rpc, self.board, cursor, read, commitment=self.commitment, logs=self.logs,
                              poll_interval=self.poll_interval, idle_poll_interval=self.idle_poll_interval,
                              what="board")

    async def _delivered_envelopes(self, signature: Signature) -> tuple[Any, list[Envelope]] | None:
        """(the transaction, the envelopes its top-level Deliver instructions delivered to this board
        and domain); None when the node does not serve it at the commitment yet; no envelopes when it
        failed."""
        tx = await self.rpc.transaction(signature, self.commitment, encoding="base64")
        if tx is None:
            return None
        meta = tx.transaction.meta
        if meta is None or meta.err is not None:
            return tx, []
        raw_tx = tx.transaction.transaction
        if not isinstance(raw_tx, VersionedTransaction):
            log.error("board transaction not returned as binary; skipped", chain=self.name, tx=str(signature))
            return tx, []
        envelopes = []
        for raw in delivered_envelopes(raw_tx, self.program_id):
            try:
                envelope = Envelope.decode(raw)
            except EnvelopeError as exc:
                log.error("undecodable delivered envelope; skipped", chain=self.name, tx=str(signature), error=str(exc))
                continue
            if (envelope.kind == MessageKind.TASK_REQUEST and envelope.dst_receiver == self.address
                    and envelope.dst_domain == self.domain):
                envelopes.append(envelope)
        return tx, envelopes


# --- v2 --------------------------------------------------------------------------------------

_TASK_STATE_V2 = {TaskStateV2.OPEN: TaskState.OPEN, TaskStateV2.COMPLETED: TaskState.COMPLETED,
                  TaskStateV2.REFUNDED: TaskState.REFUNDED}
# Clock sysvar: slot, epoch_start_timestamp, epoch, leader_schedule_epoch, unix_timestamp (8 bytes each)
CLOCK_UNIX_TIMESTAMP_OFFSET = 32


class SolanaTaskBoardV2(_SolanaBoard):
    """Both roles of the Solana task board v2 (relay.interfaces.ServingBoardV2 and RequesterBoardV2;
    contracts in their docstrings). Amounts on this chain are lamports: max_fee of a request paid
    here, bonds of requests served here. `account` is the signer's key (zero when read-only).

    * Requesting: the task account's address is ["task", requester, task_nonce] with a random u64
      task nonce, so a Send landing first changes nothing (attack 6); the envelope returned is the
      one the program stored in the task account. `task_status` and `reclaim` find a task by request
      id with getProgramAccounts (cached for the tasks this client requested).
    * Serving: a request's terms come from its delivery receipt ["delivered", request_id] (the
      auction starts at the receipt's unix time) until the first claim creates ["serve",
      request_id]; `claim` posts the request's bond from the signer, the program fixes the price on
      its Clock."""

    def __init__(self, name: str, chain: SolanaChain, signer: Keypair | None = None, **options: Any) -> None:
        super().__init__(name, chain, signer, **options)
        self.account = bytes(signer.pubkey()) if signer is not None else bytes(32)
        self._tasks: dict[bytes, Pubkey] = {}  # request id -> task address (never changes)

    # ----- reads -----------------------------------------------------------------------------

    async def chain_time(self) -> int:
        """The Clock sysvar's unix_timestamp at `confirmed`: the clock the program prices and judges by."""
        account = (await self.rpc.call("getAccountInfo", lambda c: c.get_account_info(
            CLOCK_SYSVAR, commitment=Confirmed))).value
        if account is None or len(account.data) < CLOCK_UNIX_TIMESTAMP_OFFSET + 8:
            raise SolanaTaskBoardError(f"{self.name}: the node does not serve the Clock sysvar")
        return struct.unpack_from("<q", bytes(account.data), CLOCK_UNIX_TIMESTAMP_OFFSET)[0]

    async def serve_account(self, request_id: bytes) -> ServeAccount | None:
        data = await self._account_data(serve_address(self.program_id, _request_id(request_id)))
        return ServeAccount.decode(data) if data is not None else None

    async def _receipt(self, message_id: bytes) -> DeliveryReceipt | None:
        data = await self._account_data(receipt_address(self.program_id, message_id)[0])
        if data is None:
            return None
        try:
            return DeliveryReceipt.decode(data)
        except SolanaProgramError:
            return None

    async def delivered_request(self, request_id: bytes) -> tuple[DeliveryReceipt, TaskRequestV2] | None:
        """The receipt of a TASK_REQUEST v2 delivered to this board and its decoded request; None when
        no such request was delivered here (or it is not a v2 request to the board)."""
        receipt = await self._receipt(_request_id(request_id))
        if receipt is None:
            return None
        try:
            envelope = Envelope.decode(receipt.envelope)
        except EnvelopeError:
            return None
        if (envelope.kind != MessageKind.TASK_REQUEST or envelope.dst_receiver != self.address
                or envelope.dst_domain != self.domain
                or task_payload_version(envelope.kind, envelope.payload) != 2):
            return None
        try:
            return receipt, TaskRequestV2.decode(envelope.payload)
        except TaskPayloadError:
            return None

    async def current_price(self, request_id: bytes) -> int:
        request_id = _request_id(request_id)
        status = await self.claim_status(request_id)
        if status.state is ServeState.NONE:
            raise _refused(ClaimRefused, f"pricing request 0x{request_id.hex()}",
                           "no TASK_REQUEST v2 with this id was delivered to this board", "REQUEST_RECEIPT_INVALID")
        return auction_price(status.max_fee, status.start_bps, status.auction_window, status.auction_start,
                             await self.chain_time())

    async def claim_status(self, request_id: bytes) -> ClaimStatus:
        request_id = _request_id(request_id)
        serve = await self.serve_account(request_id)
        if serve is None:
            delivered = await self.delivered_request(request_id)
            if delivered is None:
                return ClaimStatus(request_id=request_id, state=ServeState.NONE)
            receipt, request = delivered
            envelope = Envelope.decode(receipt.envelope)
            # No serve account: never claimed (open), or claimed, settled and closed (CloseServe marks
            # the request's receipt, and Claim then refuses it).
            closed = receipt.status == RECEIPT_STATUS_SERVE_CLOSED
            return ClaimStatus(
                request_id=request_id, state=ServeState.CLOSED if closed else ServeState.OPEN,
                src_domain=envelope.src_domain,
                src_board=envelope.src_sender, executor=request.executor, deadline=request.deadline,
                auction_start=receipt.unix_time, auction_window=request.auction_window, start_bps=request.start_bps,
                claim_window=request.claim_window, max_fee=request.max_fee, bond=request.bond,
                refund_to=request.refund_to, claims=0)
        state = ServeState(int(serve.state))
        held = serve.claimant is not None and state in (ServeState.CLAIMED, ServeState.ANSWERED, ServeState.CLOSED)
        answered = state is ServeState.ANSWERED and serve.result_id is not None
        return ClaimStatus(
            request_id=request_id, state=state, src_domain=serve.src_domain, src_board=serve.src_board,
            executor=decode_executor_id(serve.executor), deadline=serve.deadline, auction_start=serve.auction_start,
            auction_window=serve.auction_window, start_bps=serve.start_bps, claim_window=serve.claim_window,
            max_fee=serve.max_fee, bond=serve.bond, refund_to=bytes(serve.refund_to),
            claimant=bytes(serve.claimant) if held and serve.claimant is not None else None,
            payout=serve.payout if held else None, price=serve.price if held else None,
            claim_deadline=serve.claim_deadline if held else None,
            result_id=serve.result_id if answered else None,
            submitted_at=serve.submitted_at if answered else None, claims=serve.claims)

    async def task_account_v2(self, request_id: bytes) -> tuple[Pubkey, TaskAccountV2] | None:
        """The v2 task of a request sent from this chain, with its address: from the cache of this
        client's requests, else getProgramAccounts by request id."""
        request_id = _request_id(request_id)
        address = self._tasks.get(request_id)
        if address is not None:
            data = await self._account_data(address)
            if data and not is_task_tombstone(data):  # (b"" or a tombstone: closed)
                return address, TaskAccountV2.decode(data)
        accounts = (await self.rpc.call("getProgramAccounts", lambda c: c.get_program_accounts(
            self.program_id, Confirmed, encoding="base64", filters=task_v2_filters(request_id)))).value
        for keyed in accounts:
            try:
                task = TaskAccountV2.decode(bytes(keyed.account.data))
            except SolanaProgramError:
                continue
            if task.request_id == request_id:
                self._tasks[request_id] = keyed.pubkey
                return keyed.pubkey, task
        return None

    async def task_status(self, request_id: bytes) -> TaskStatusV2:
        request_id = _request_id(request_id)
        found = await self.task_account_v2(request_id)
        if found is None:
            return TaskStatusV2(request_id=request_id, state=TaskState.NONE)
        task = found[1]
        state = _TASK_STATE_V2[task.state]
        completed = state is TaskState.COMPLETED
        return TaskStatusV2(
            request_id=request_id, state=state, requester=bytes(task.requester), dst_domain=task.dst_domain,
            worker_board=task.worker_board, executor=decode_executor_id(task.executor), deadline=task.deadline,
            max_fee=task.max_fee, refundable_after=task.deadline + SETTLEMENT_GRACE_SECONDS,
            result_id=task.result_id if completed else None, payout=task.payout if completed else None,
            price=task.price if completed else None,
            refund=task.refund if completed else task.max_fee if state is TaskState.REFUNDED else None)

    async def result_recorded(self, result_id: bytes) -> bool:
        """True once a TASK_RESULT v2 with this id was delivered to this board (its receipt is the record)."""
        receipt = await self._receipt(_request_id(result_id))
        if receipt is None:
            return False
        try:
            envelope = Envelope.decode(receipt.envelope)
        except EnvelopeError:
            return False
        return (envelope.kind == MessageKind.TASK_RESULT and envelope.dst_receiver == self.address
                and envelope.dst_domain == self.domain
                and task_payload_version(envelope.kind, envelope.payload) == 2)

    # ----- requester side --------------------------------------------------------------------

    async def request_task(self, *, dst_domain: int, worker_board: bytes, request: TaskRequestV2) -> SentRequest:
        """Escrows request.max_fee lamports in a new task account and sends the TASK_REQUEST v2;
        waits for `confirmed`. The envelope is read from the task account (what the program sent)."""
        if len(worker_board) != 32:
            raise SolanaTaskBoardError("worker_board must be 32 bytes (left-pad an EVM address with 12 zero bytes)")
        if request.max_fee >= 2**64:
            raise _refused(RequestRefused, "the task request",
                           f"max_fee {request.max_fee} does not fit u64 lamports", "TASK_FEE_TOO_LARGE")
        if dst_domain == self.domain:
            raise _refused(RequestRefused, "the task request", f"dst_domain {dst_domain} is this chain's domain",
                           "TASK_SAME_DOMAIN")
        payload = request.encode()
        requester = self._signer_key()
        task_nonce = secrets.randbits(64)
        ix = request_task_v2_ix(self.program_id, requester, task_nonce=task_nonce, dst_domain=dst_domain,
                                worker_board=bytes(worker_board), payload=payload)
        tx = await self._transact([ix], REQUEST_CU_LIMIT, "the task request", RequestRefused)
        address = task_v2_address(self.program_id, requester, task_nonce)
        data = await self._account_data(address)
        if data is None:
            raise SolanaTaskBoardError(f"{self.name}: task request {tx} confirmed but its task account {address} "
                                       "cannot be read; read it again later")
        task = TaskAccountV2.decode(data)
        envelope = Envelope.decode(task.envelope)
        if envelope.payload != payload:
            log.error("the program encoded the payload differently from relay.tasks.payloads", chain=self.name,
                      tx=tx, sent=envelope.payload.hex(), expected=payload.hex())
        self._tasks[envelope.message_id] = address
        log.info("task requested", chain=self.name, request_id=envelope.message_id.hex(), tx=tx,
                 escrow=request.max_fee, task=str(address))
        return SentRequest(request_id=envelope.message_id, envelope=envelope, tx=tx)

    async def reclaim(self, request_id: bytes) -> str:
        request_id = _request_id(request_id)
        found = await self.task_account_v2(request_id)
        if found is None:
            raise _refused(ReclaimRefused, "the reclaim", f"no v2 task {request_id.hex()} on {self.name}",
                           "TASK_NOT_FOUND")
        address, task = found
        return await self._transact([reclaim_v2_ix(self.program_id, address, task.requester)], RECLAIM_CU_LIMIT,
                                    f"reclaiming task 0x{request_id.hex()}", ReclaimRefused)

    async def withdraw(self, request_id: bytes) -> str | None:
        """Collects what this request's records hold for this board's account: the claimant or
        refund_to credit in its serve account (serving side), the requester or payout credit in its
        task account (requester side). None when nothing is held for it (nothing sent)."""
        request_id = _request_id(request_id)
        me = self._signer_key()
        instructions = []
        serve = await self.serve_account(request_id)
        if serve is not None:
            if ((serve.claimant_credit and serve.credited == me)
                    or (serve.refund_credit and serve.refund_to == me)):
                instructions.append(withdraw_credit_ix(self.program_id, serve_address(self.program_id, request_id),
                                                       me))
        else:
            found = await self.task_account_v2(request_id)
            if found is not None:
                address, task = found
                if ((task.requester_credit and task.requester == me)
                        or (task.payout_credit and task.payout == bytes(me))):
                    instructions.append(withdraw_credit_ix(self.program_id, address, me))
        if not instructions:
            return None
        return await self._transact(instructions, BOND_CU_LIMIT, f"withdrawing from 0x{request_id.hex()}",
                                    BondRefused)

    async def close_settled(self, request_id: bytes, *, serving_only: bool = False) -> list[str]:
        """Rent back (CloseTask / CloseServe; contracts/solana/README.md "Closing settled records"):
        closes this request's records on this chain that are settled with nothing owed — the task
        account (requester side: Completed or Refunded, no credit left; its rent goes to the
        requester, a 40-byte tombstone stays so the task nonce is never reused) and the serve account
        (serving side: Closed, or Open past its deadline, no bond held, no credit left; every lamport
        goes to the claimant whose first claim created it). The signer closes what it paid for at
        once, anything else once TASK_RETENTION_SECONDS have passed since settlement (for a serve
        account: since max(settlement, deadline)); the rent never goes to the signer unless it paid
        it. Records not closable yet (not settled, a credit to `withdraw` first, the retention
        period running) are skipped and logged. `serving_only`: the serve account alone — a worker's
        call, which skips the search for a task account (a getProgramAccounts that many providers
        refuse or bill heavily; a worker's requests come from other chains). Returns the signatures of
        the closes sent ([] when none was)."""
        request_id = _request_id(request_id)
        me = self._signer_key()
        now = await self.chain_time()
        instructions: list[tuple[str, Instruction]] = []
        serve = await self.serve_account(request_id)
        if serve is not None:
            settled = serve.state == ServeState.CLOSED or (serve.state == ServeState.OPEN and now > serve.deadline)
            since = max(serve.updated_at, serve.deadline)
            why = ("not settled" if not settled or serve.bond_held else
                   "a credit waits for withdraw" if serve.refund_credit or serve.claimant_credit else
                   "an older layout without a rent payer: never closable" if serve.rent_payer is None else
                   "the retention period runs" if serve.rent_payer != me and now < since + TASK_RETENTION_SECONDS
                   else None)
            if why is None:
                instructions.append(("serve", close_serve_ix(self.program_id, me, request_id, serve.rent_payer)))
            else:
                log.info("serve account not closable yet", chain=self.name, request_id=request_id.hex(), reason=why)
        found = None if serving_only else await self.task_account_v2(request_id)
        if found is not None:
            address, task = found
            why = ("not settled" if task.state not in (TaskStateV2.COMPLETED, TaskStateV2.REFUNDED) else
                   "a credit waits for withdraw" if task.payout_credit or task.requester_credit else
                   "the retention period runs" if task.requester != me and now < task.updated_at + TASK_RETENTION_SECONDS
                   else None)
            if why is None:
                instructions.append(("task", close_task_ix(self.program_id, me, address, task.requester)))
            else:
                log.info("task account not closable yet", chain=self.name, request_id=request_id.hex(), reason=why)
        sent = []
        for kind, ix in instructions:
            tx = await self._transact([ix], CLOSE_CU_LIMIT, f"closing the {kind} account of 0x{request_id.hex()}",
                                      BoardRefused)
            log.info(f"{kind} account closed", chain=self.name, request_id=request_id.hex(), tx=tx)
            sent.append(tx)
        return sent

    # ----- serving side ----------------------------------------------------------------------

    async def watch_requests(self, cursor: str | None) -> AsyncIterator[IncomingRequestV2]:
        """TASK_REQUEST v2s delivered to the board (top-level Deliver instructions), at the chain's
        commitment, oldest first, after the transaction `cursor` names (None: from the oldest the
        node still has), forever. The auction start is the delivery receipt's unix time (what the
        program prices from); v1 requests are passed over."""
        async for request in self._follow(cursor, self._requests_v2_in):
            yield request

    async def _requests_v2_in(self, signature: Signature, cursor_before: str) -> list[IncomingRequestV2] | None:
        found = await self._delivered_envelopes(signature)
        if found is None:
            return None
        tx, envelopes = found
        requests: list[tuple[Envelope, TaskRequestV2, int]] = []
        for envelope in envelopes:
            if task_payload_version(envelope.kind, envelope.payload) != 2:
                log.info("delivered TASK_REQUEST is task protocol v1, retired: ignored", chain=self.name,
                         request_id=envelope.message_id.hex())
                continue
            try:
                request = TaskRequestV2.decode(envelope.payload)
            except TaskPayloadError as exc:
                log.warning("delivered TASK_REQUEST v2 is malformed; no worker can serve it", chain=self.name,
                            request_id=envelope.message_id.hex(), error=str(exc))
                continue
            receipt = await self._receipt(envelope.message_id)
            auction_start = receipt.unix_time if receipt is not None else tx.block_time
            if auction_start is None:
                return None  # neither the receipt nor the block time served yet: stay on this transaction
            requests.append((envelope, request, int(auction_start)))
        return [
            IncomingRequestV2(request_id=env.message_id, envelope=env, request=req, auction_start=start,
                              delivery_tx=str(signature), position=tx.slot,
                              cursor=str(signature) if i == len(requests) - 1 else cursor_before)
            for i, (env, req, start) in enumerate(requests)
        ]

    async def claim(self, request_id: bytes, payout: bytes) -> Claim:
        request_id = _request_id(request_id)
        action = f"claiming request 0x{request_id.hex()}"
        if not isinstance(payout, (bytes, bytearray)) or len(payout) != 32 or not any(payout):
            raise _refused(ClaimRefused, action, "payout must be 32 non-zero bytes (an address on the requester's "
                           "chain)", "ZERO_PAYOUT")
        me = self._signer_key()
        serve = await self.serve_account(request_id)
        if serve is not None:
            held = await self._held(serve)
            if held is not None:
                return held
            refund_to = serve.refund_to
        else:
            delivered = await self.delivered_request(request_id)
            if delivered is None:
                raise _refused(ClaimRefused, action, "no TASK_REQUEST v2 with this id was delivered to this board",
                               "REQUEST_RECEIPT_INVALID")
            refund_to = Pubkey.from_bytes(delivered[1].refund_to)
        ix = claim_task_ix(self.program_id, me, request_id, payout=bytes(payout), refund_to=refund_to)
        try:
            tx = await self._transact([ix], CLAIM_CU_LIMIT, action, ClaimRefused)
        except ClaimLost:
            # Our own earlier claim (a retry after a lost confirmation) reads as ALREADY_CLAIMED too.
            serve = await self.serve_account(request_id)
            held = await self._held(serve) if serve is not None else None
            if held is not None:
                return held
            raise
        serve = await self.serve_account(request_id)
        if serve is None or serve.claimant != me or serve.state != ServeState.CLAIMED:
            raise SolanaTaskBoardError(f"{self.name}: claim {tx} confirmed but the serve account does not show it; "
                                       "read claim_status before claiming again")
        log.info("task claimed", chain=self.name, request=request_id.hex(), price=serve.price,
                 claim_deadline=serve.claim_deadline, tx=tx)
        return Claim(request_id=request_id, claimant=bytes(me), payout=serve.payout, price=serve.price,
                     claim_deadline=serve.claim_deadline, bond=serve.bond, tx=tx)

    async def _held(self, serve: ServeAccount) -> Claim | None:
        """The running claim, when this account holds it and it has not run out."""
        if (self.signer is None or serve.state != ServeState.CLAIMED or serve.claimant != self.signer.pubkey()
                or serve.claim_deadline < await self.chain_time()):
            return None
        return Claim(request_id=serve.request_id, claimant=self.account, payout=serve.payout, price=serve.price,
                     claim_deadline=serve.claim_deadline, bond=serve.bond, tx=None)

    async def submit_result(self, request_id: bytes, result_payload: bytes) -> str:
        request_id = _request_id(request_id)
        action = f"the result for request 0x{request_id.hex()}"
        try:
            result = TaskResultV2.decode(bytes(result_payload))
        except (TaskPayloadError, EnvelopeError) as exc:
            raise ResultRefused("the result", f"malformed TASK_RESULT v2: {exc}", "fix the payload encoding",
                                "RESULT_MALFORMED", _BOARD) from None
        if result.request_id != request_id:
            raise _refused(ResultRefused, action, f"the payload answers request 0x{result.request_id.hex()}",
                           "RESULT_REQUEST_MISMATCH")
        me = self._signer_key()
        if result.claimant != bytes(me):
            raise _refused(ResultRefused, action, f"the payload names claimant {Pubkey.from_bytes(result.claimant)}, "
                           f"but this board signs as {me}", "CLAIM_MISMATCH")
        if await self.serve_account(request_id) is None:
            raise _refused(ResultRefused, action, "nobody claimed this request", "NOT_CLAIMED")
        ix = submit_result_v2_ix(self.program_id, me, request_id, bytes(result_payload))
        tx = await self._transact([ix], SUBMIT_CU_LIMIT, action, ResultRefused)
        log.info("task result submitted", chain=self.name, request=request_id.hex(), tx=tx)
        return tx

    async def expire_claim(self, request_id: bytes) -> str:
        request_id = _request_id(request_id)
        action = f"expiring the claim on 0x{request_id.hex()}"
        serve = await self.serve_account(request_id)
        if serve is None:
            raise _refused(BondRefused, action, "nobody claimed this request", "NOT_CLAIMED")
        return await self._transact([expire_claim_ix(self.program_id, request_id, serve.refund_to)], BOND_CU_LIMIT,
                                    action, BondRefused)

    async def release_bond(self, request_id: bytes) -> str:
        request_id = _request_id(request_id)
        action = f"releasing the bond of 0x{request_id.hex()}"
        serve = await self.serve_account(request_id)
        if serve is None or serve.claimant is None:
            raise _refused(BondRefused, action, "no result is waiting for a verdict", "NO_RESULT_PENDING")
        return await self._transact([release_bond_ix(self.program_id, request_id, serve.claimant)], BOND_CU_LIMIT,
                                    action, BondRefused)


def _request_id(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise TaskBoardError("a request id is the 32-byte message id of the TASK_REQUEST envelope")
    return bytes(value)
