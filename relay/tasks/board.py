"""The chain-side interface of AI tasks: one task board per chain (docs/TASKS.md).

A task board plays two roles on its chain (task protocol v2, docs/TASKS.md "Task protocol v2";
`ServingBoardV2`/`RequesterBoardV2` in relay/interfaces.py; v1 is retired: docs/TASKS.md "v1 retired"):

* **requester side**: `request_task` escrows the max fee and sends a TASK_REQUEST v2 through the
  gateway to the worker board on another chain; it records results and the committee's verdicts in
  any order and pays the claim price to the payout when a valid verdict for a timely result is
  there; after deadline + settlement grace the requester reclaims.
* **serving side**: a worker claims a delivered TASK_REQUEST v2 at the auction price with a bond;
  only the claimant's `submit_result` sends a TASK_RESULT v2 back through the gateway with the board
  as the sender, before the claim deadline.

The EVM board is `contracts/evm/src/TaskBoardV2.sol` (adapters/evm/taskboard.py); the Solana board lives
in the Tessera program (contracts/solana/src/taskboard_v2.c, adapters/solana/taskboard.py). Both implement
the protocols in relay/interfaces.py, so the worker, the SDK and the tests are chain-agnostic. The
errors below serve both chains.
"""

from __future__ import annotations

from relay.errors import TesseraError


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


class ClaimRefused(BoardRefused):
    """Claiming a request is refused (v2): unknown request, not a v2 request, wrong bond, zero payout."""


class ClaimLost(ClaimRefused):
    """Another worker's claim runs, or the request is already answered or closed: the claim race was
    lost. A normal outcome of the auction, not an error to retry or report as a failure."""


class RequestExpired(ResultRefused, ClaimRefused):
    """The request's deadline has passed (serving chain's clock): no claim or result can count any more.
    Raised by `submit_result` and, in v2, by `claim`."""


class ClaimNotHeld(ResultRefused):
    """Submitting a v2 result is refused because this account does not hold the running claim: it never
    claimed, its claim deadline passed (`ClaimDeadlinePassed`), or the claim went to someone else."""


class BondRefused(BoardRefused):
    """expire_claim / release_bond / withdraw refused: no claim to expire, not yet expired, no result
    waiting, verdict wait not over, nothing held."""


class RequestRefused(BoardRefused):
    """Requesting a task is refused (deadline not in the future, executor id, fee, payload)."""


class ReclaimRefused(BoardRefused):
    """Reclaim is refused: unknown task, not refundable, or the deadline (plus grace) has not passed."""
