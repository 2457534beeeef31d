"""The chain-side interface of AI tasks: one task board per chain (docs/TASKS.md).

A task board plays two roles on its chain:

* **requester side**: `request_task` escrows the max fee and sends a TASK_REQUEST through the
  gateway to the worker board on another chain; it records the first valid TASK_RESULT delivered
  for it and pays the result's payout address when the committee's PROOF_ATTESTATION for that
  result is delivered; after the deadline with no attested result the requester reclaims.
* **serving side**: TASK_REQUESTs delivered to the board are what workers on this chain serve;
  `submit_result` sends the worker's TASK_RESULT back through the gateway with the board as the
  sender (so the requester's board can check the result comes from the board it asked), at most
  one result per request.

The EVM board is `contracts/evm/src/TaskBoard.sol` (adapters/evm_tasks.py); the Solana board lives
in the Tessera program (contracts/solana/src/taskboard.c, adapters/solana_tasks.py). Both implement
the protocols below, so the worker, the SDK and the tests are chain-agnostic.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from relay.envelope import Envelope
from relay.errors import TesseraError
from relay.tasks.payloads import TaskRequest


class TaskBoardError(TesseraError):
    """A task board could not do what was asked; the message says why and what to do."""


class BoardRefused(TaskBoardError):
    """The board (contract or program) refuses the call. `error` is the chain's own name for the
    refusal (a Solidity custom error such as "RequestExpired", a ProgramErrorCode such as
    "TASK_EXPIRED"; empty when the chain gave none), `reason` the decoded refusal."""

    def __init__(self, action: str, reason: str, hint: str = "", error: str | None = None,
                 board: str = "the task board") -> None:
        super().__init__(f"{board} refuses {action}: {reason}" + (f"; {hint}" if hint else ""))
        self.action = action
        self.reason = reason
        self.error = reason.split("(", 1)[0] if error is None else error


class ResultRefused(BoardRefused):
    """Submitting a result is refused: request not delivered here, wrong executor, malformed payload."""


class ResultAlreadySubmitted(ResultRefused):
    """Another submission (any worker's) already answered this request: the first valid result wins."""


class RequestExpired(ResultRefused):
    """The request's deadline has passed; the requester's board would ignore a late result anyway."""


class RequestRefused(BoardRefused):
    """Requesting a task is refused (deadline not in the future, executor id, fee, payload)."""


class ReclaimRefused(BoardRefused):
    """Reclaim is refused: unknown task, not refundable, or the deadline (plus grace) has not passed."""


class TaskState(enum.IntEnum):
    """Requester-side state of a task (same numbering as TaskBoard.State and the Solana account)."""

    NONE = 0
    OPEN = 1
    RESULT_RECEIVED = 2
    COMPLETED = 3
    REFUNDED = 4


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """A TASK_REQUEST delivered to this chain's board and final there: what a worker serves."""

    request_id: bytes  # message id of the TASK_REQUEST envelope (32 bytes)
    envelope: Envelope  # the delivered envelope (src = requester's chain and board)
    request: TaskRequest  # its decoded payload
    delivery_tx: str  # the destination transaction that delivered it
    position: int  # block number or slot of the delivery
    cursor: str  # opaque: where watch_requests resumes after this one


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """Requester-side record of one task, read from the chain."""

    request_id: bytes
    state: TaskState
    requester: bytes  # 32 bytes (EVM address left-padded, or Solana key)
    deadline: int  # unix seconds
    escrow: int  # smallest unit of the native token
    executor: str
    result_id: bytes | None = None  # message id of the recorded TASK_RESULT
    output_hash: bytes | None = None
    worker: bytes | None = None  # Ed25519 public key (32 bytes)
    payout: bytes | None = None  # 32 bytes


@dataclass(frozen=True, slots=True)
class SentRequest:
    request_id: bytes
    envelope: Envelope
    tx: str


@runtime_checkable
class ServingBoard(Protocol):
    """The worker's side, on the chain where it serves."""

    name: str
    domain: int
    address: bytes  # 32 bytes: the board as envelope sender/receiver

    def watch_requests(self, cursor: str | None) -> AsyncIterator[IncomingRequest]:
        """Delivered TASK_REQUESTs addressed to this board, final, in order, from `cursor` on (forever)."""
        ...

    async def result_submitted(self, request_id: bytes) -> bool:
        """True when the board already sent a TASK_RESULT for this request (by any worker)."""
        ...

    async def submit_result(self, request_id: bytes, result_payload: bytes) -> str:
        """Sends the encoded TASK_RESULT through the board; returns the transaction once it succeeded.
        Raises a `relay.errors.TesseraError` subclass with the reason when the board refuses."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class RequesterBoard(Protocol):
    """The requester's side, on the chain where the task is paid for."""

    name: str
    domain: int
    address: bytes

    async def request_task(self, *, dst_domain: int, worker_board: bytes, request: TaskRequest) -> SentRequest:
        """Escrows `request.max_fee` and sends the TASK_REQUEST; waits for the transaction."""
        ...

    async def task_status(self, request_id: bytes) -> TaskStatus: ...

    async def reclaim(self, request_id: bytes) -> str: ...

    async def close(self) -> None: ...
