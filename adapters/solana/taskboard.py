"""The Solana task board (in the Tessera program, contracts/solana/src/taskboard.c) from Python:
its instruction builders, account decoders and `SolanaTaskBoard`, which implements
`relay.interfaces.ServingBoard` and `RequesterBoard`. The board's PDAs and the accounts a Deliver to
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
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from solana.rpc.commitment import Commitment, Confirmed
from solana.rpc.core import RPCException
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.transaction import VersionedTransaction

from adapters.solana.program import (
    OutboxState,
    ProgramInstruction,
    SolanaProgramError,
    answered_address,
    committee_address,
    describe_transaction_error,
    outbox_address,
    program_error_name,
    receipt_address,
    task_address,
    taskboard_address,
)
from adapters.solana.rpc import LogsWaker, SolanaAdapterError, SolanaRpc, follow_address, load_keypair
from adapters.solana.tx import ConfirmationTimeout, SolanaTransactor, TransactionRefused
from relay.config import KeyRef, SolanaChain, WorkerSection
from relay.envelope import Envelope, EnvelopeError
from relay.interfaces import IncomingRequest, SentRequest, TaskState, TaskStatus
from relay.log import get_logger
from relay.protocol import MessageKind
from relay.tasks.board import (
    BoardRefused,
    ReclaimRefused,
    RequestExpired,
    RequestRefused,
    ResultAlreadySubmitted,
    ResultRefused,
    TaskBoardError,
)
from relay.tasks.payloads import TaskPayloadError, TaskRequest, TaskResult, decode_executor_id

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
_NONCE_RACE_RETRIES = 8

Role = Literal["requester", "worker"]


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
    """The envelopes of the top-level Deliver instructions to `program_id` in a transaction."""
    message = tx.message
    keys = list(message.account_keys)
    found: list[bytes] = []
    for ix in message.instructions:
        if ix.program_id_index >= len(keys) or keys[ix.program_id_index] != program_id:
            continue
        data = bytes(ix.data)
        if len(data) > 1 + DELIVER_ATTESTATION_LEN and data[0] == ProgramInstruction.DELIVER:
            found.append(data[1 + DELIVER_ATTESTATION_LEN:])
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
}


def _refusal(cls: type[BoardRefused], action: str, err: Any, logs: Sequence[str] = ()) -> BoardRefused:
    name = program_error_name(err)
    if cls is ResultRefused:
        cls = {"ALREADY_ANSWERED": ResultAlreadySubmitted, "TASK_EXPIRED": RequestExpired}.get(name, cls)
    reason = describe_transaction_error(err)
    tail = [line for line in logs if "tessera" in line or "failed" in line][-3:]
    if tail:
        reason += " [" + " | ".join(tail) + "]"
    return cls(action, reason, _HINTS.get(name, ""), name, _BOARD)


# --- the board ---------------------------------------------------------------------------------


class SolanaTaskBoard:
    """Both roles of the Solana task board, over the chain's RPC endpoints (adapters.solana.rpc).
    Writes go out with preflight at `confirmed` and are awaited at `confirmed` (adapters.solana.tx);
    `watch_requests` reports deliveries at the chain's commitment."""

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
        self._request_lock = asyncio.Lock()

    @classmethod
    def from_config(cls, name: str, chain: SolanaChain, role: Role = "requester",
                    keypair: Keypair | KeyRef | None = None, worker: WorkerSection | None = None,
                    **options: Any) -> "SolanaTaskBoard":
        """The board of `[chains.<name>]`. Role "requester" signs with `keypair`, else the chain's
        `sender` (else `signer`, as the SDK does); role "worker" with `keypair`, else the `[worker]`
        section's `solana_keypair` (never the relayer's signer)."""
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
            raise SolanaTaskBoardError(f"role must be 'worker' or 'requester', not {role!r}")
        signer = ref if isinstance(ref, Keypair) else load_keypair(ref.read_text(), ref.describe())
        return cls(name, chain, signer, **options)

    async def close(self) -> None:
        await self.rpc.close()

    async def wallet_balances(self) -> dict[str, int]:
        return await self.tx.wallet_balances()

    async def __aenter__(self) -> "SolanaTaskBoard":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----- reads -----------------------------------------------------------------------------

    async def _account_data(self, address: Pubkey) -> bytes | None:
        return await self.rpc.account_data(address, self.program_id, Confirmed)

    async def task_account(self, request_id: bytes) -> TaskAccount | None:
        data = await self._account_data(task_address(self.program_id, request_id))
        return TaskAccount.decode(data) if data is not None else None

    async def task_status(self, request_id: bytes) -> TaskStatus:
        """The task as the board records it (at `confirmed`); state NONE for an unknown request."""
        task = await self.task_account(request_id)
        if task is None:
            return TaskStatus(request_id=request_id, state=TaskState.NONE, requester=bytes(32), deadline=0, escrow=0,
                              executor="")
        return task.status()

    async def answered(self, request_id: bytes) -> AnsweredAccount | None:
        data = await self._account_data(answered_address(self.program_id, request_id))
        return AnsweredAccount.decode(data) if data is not None else None

    async def result_submitted(self, request_id: bytes) -> bool:
        return await self.answered(request_id) is not None

    async def _outbox_nonce(self) -> int:
        data = await self._account_data(outbox_address(self.program_id)[0])
        if data is None:
            raise SolanaTaskBoardError(f"{self.name}: the gateway's outbox does not exist: run InitGateway "
                                       "(`relay localnet up` does)")
        return OutboxState.decode(data).next_nonce

    # ----- writes ----------------------------------------------------------------------------

    async def _transact(self, instructions: Sequence[Instruction], cu_limit: int, action: str,
                        refusal: type[BoardRefused]) -> str:
        """Sends with preflight, waits for `confirmed`; a refusal (in preflight or on-chain) raises
        `refusal` named after the program's error."""
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
            raise SolanaTaskBoardError(f"{self.name}: this board client has no keypair; build it with from_config")
        return self.signer.pubkey()

    async def request_task(self, *, dst_domain: int, worker_board: bytes, request: TaskRequest) -> SentRequest:
        """Escrows request.max_fee lamports and sends the TASK_REQUEST; waits for `confirmed`."""
        if len(worker_board) != 32:
            raise SolanaTaskBoardError("worker_board must be 32 bytes (left-pad an EVM address with 12 zero bytes)")
        if request.max_fee >= 2**64:
            raise RequestRefused("the task request", f"max_fee {request.max_fee} does not fit u64 lamports",
                                 _HINTS["TASK_FEE_TOO_LARGE"], "TASK_FEE_TOO_LARGE", _BOARD)
        payload = request.encode()
        requester = self._signer_key()
        # One request at a time per client: concurrent ones would read the same outbox nonce and
        # (with equal payloads) build the very same transaction.
        async with self._request_lock:
            return await self._request_task(dst_domain, worker_board, request, payload, requester)

    async def _request_task(self, dst_domain: int, worker_board: bytes, request: TaskRequest, payload: bytes,
                            requester: Pubkey) -> SentRequest:
        for attempt in range(_NONCE_RACE_RETRIES):
            nonce = await self._outbox_nonce()
            envelope = Envelope(kind=MessageKind.TASK_REQUEST, nonce=nonce, src_domain=self.domain,
                                src_sender=self.address, dst_domain=dst_domain, dst_receiver=worker_board,
                                payload=payload)
            ix = request_task_ix(self.program_id, requester, request_id=envelope.message_id, dst_domain=dst_domain,
                                 worker_board=worker_board, payload=payload)
            try:
                tx = await self._transact([ix], REQUEST_CU_LIMIT, "the task request", RequestRefused)
            except RequestRefused as exc:
                if exc.error != "TASK_WRONG_ADDRESS":
                    raise
                # Another Send took nonce `nonce` between our read and our transaction.
                log.info("task request lost the outbox nonce race; retrying", chain=self.name, nonce=nonce,
                         attempt=attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            log.info("task requested", chain=self.name, request_id=envelope.message_id.hex(), tx=tx,
                     escrow=request.max_fee)
            return SentRequest(request_id=envelope.message_id, envelope=envelope, tx=tx)
        raise SolanaTaskBoardError(f"{self.name}: the outbox nonce kept moving during {_NONCE_RACE_RETRIES} attempts; "
                                   "the gateway is busy, try again")

    async def submit_result(self, request_id: bytes, result_payload: bytes) -> str:
        try:
            result = TaskResult.decode(result_payload)
        except TaskPayloadError as exc:
            raise ResultRefused("the result", f"malformed TASK_RESULT: {exc}", "fix the payload encoding",
                                "RESULT_MALFORMED", _BOARD) from None
        if result.request_id != request_id:
            raise ResultRefused("the result", "its request_id is not the request it is submitted for",
                                _HINTS["RESULT_REQUEST_MISMATCH"], "RESULT_REQUEST_MISMATCH", _BOARD)
        ix = submit_result_ix(self.program_id, self._signer_key(), request_id, result_payload)
        tx = await self._transact([ix], SUBMIT_CU_LIMIT, "the result", ResultRefused)
        log.info("task result submitted", chain=self.name, request_id=request_id.hex(), tx=tx)
        return tx

    async def reclaim(self, request_id: bytes) -> str:
        task = await self.task_account(request_id)
        if task is None:
            raise ReclaimRefused("the reclaim", f"no task {request_id.hex()} on {self.name}", _HINTS["TASK_NOT_FOUND"],
                                 "TASK_NOT_FOUND", _BOARD)
        ix = reclaim_ix(self.program_id, task.requester, request_id)
        return await self._transact([ix], RECLAIM_CU_LIMIT, "the reclaim", ReclaimRefused)

    # ----- serving side: delivered requests --------------------------------------------------

    async def watch_requests(self, cursor: str | None) -> AsyncIterator[IncomingRequest]:
        """TASK_REQUESTs delivered to the board, at the chain's commitment, oldest first, after the
        transaction `cursor` names (None: from the oldest the node still has). Runs forever; RPC
        outages are logged and retried. Idle, it waits for the program's logs subscription (or polls
        every `poll_interval` while that is down, every `idle_poll_interval` otherwise). Every
        Deliver to the board carries the board account, so listing the board lists them all."""
        async for request in follow_address(
                self.rpc, self.board, cursor, self._requests_in, commitment=self.commitment, logs=self.logs,
                poll_interval=self.poll_interval, idle_poll_interval=self.idle_poll_interval, what="board"):
            yield request

    async def _requests_in(self, signature: Signature, cursor_before: str) -> list[IncomingRequest] | None:
        tx = await self.rpc.transaction(signature, self.commitment, encoding="base64")
        if tx is None:
            return None
        meta = tx.transaction.meta
        if meta is None or meta.err is not None:
            return []
        raw_tx = tx.transaction.transaction
        if not isinstance(raw_tx, VersionedTransaction):
            log.error("board transaction not returned as binary; skipped", chain=self.name, tx=str(signature))
            return []
        requests: list[tuple[bytes, Envelope, TaskRequest]] = []
        for raw in delivered_envelopes(raw_tx, self.program_id):
            try:
                envelope = Envelope.decode(raw)
            except EnvelopeError as exc:
                log.error("undecodable delivered envelope; skipped", chain=self.name, tx=str(signature), error=str(exc))
                continue
            if (envelope.kind != MessageKind.TASK_REQUEST or envelope.dst_receiver != self.address
                    or envelope.dst_domain != self.domain):
                continue
            try:
                request = TaskRequest.decode(envelope.payload)
            except TaskPayloadError as exc:
                log.warning("delivered TASK_REQUEST is malformed; no worker can serve it", chain=self.name,
                            request_id=envelope.message_id.hex(), error=str(exc))
                continue
            requests.append((envelope.message_id, envelope, request))
        return [
            IncomingRequest(request_id=rid, envelope=env, request=req, delivery_tx=str(signature), position=tx.slot,
                            cursor=str(signature) if i == len(requests) - 1 else cursor_before)
            for i, (rid, env, req) in enumerate(requests)
        ]
