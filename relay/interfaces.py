"""Every interface between Tessera's services and its chains, in one module: the messaging adapter
(`ChainAdapter`), the two sides of a task board (`ServingBoard`, `RequesterBoard`) and the feed push
target (`FeedTarget`), with the values they exchange. Each method's docstring is its contract:
whether it is idempotent, what it returns when nothing is final yet, how it behaves after a restart.

Implementations live in one package per chain (adapters/evm/, adapters/solana/), built only by
`adapters.registry.driver_for`; relay/ services see these types and nothing chain-specific.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Protocol, runtime_checkable

from relay.envelope import Envelope

if TYPE_CHECKING:  # annotations only: the payload codecs sit above this module
    from attest.committee import Committee
    from relay.feeds.config import FeedConfig
    from relay.feeds.signed import SignedReport
    from relay.tasks.payloads import TaskRequest


@dataclass(frozen=True, slots=True)
class Observation:
    """An envelope a gateway emitted, seen in a source transaction that reached finality."""

    envelope: Envelope
    source_tx: str  # EVM tx hash (0x-hex) or Solana signature (base58)
    position: int  # block number or slot
    cursor: str  # where a watcher resumes after this observation (adapter-defined, opaque)
    # Unix time of the block/slot that carried the transaction (EVM block timestamp, Solana
    # blockTime); None when the node cannot tell. PROOF_ATTESTATIONs derive checked_at from it.
    block_time: int | None = None


class DeliveryState(enum.Enum):
    PENDING = "pending"  # sent, not yet final on the destination
    CONFIRMED = "confirmed"  # final, and the gateway recorded the message as delivered
    REVERTED = "reverted"  # included but failed
    DROPPED = "dropped"  # not included and can no longer be (expired blockhash, replaced nonce)


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    state: DeliveryState
    detail: str = ""


@dataclass(slots=True)
class EndpointHealth:
    url: str
    healthy: bool = True
    consecutive_errors: int = 0
    total_errors: int = 0
    last_error: str = ""
    last_latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    envelope: Envelope
    epoch: int
    signature: bytes  # G1, 64 bytes
    extra: dict = field(default_factory=dict)  # adapter hints (e.g. Solana's hash-to-curve k, y)


@runtime_checkable
class ChainAdapter(Protocol):
    """One chain's gateway, as the relayer, the attesters and the SDK use it.

    Built by `ChainDriver.messaging`; `start()` before use, `close()` after (both idempotent). Every
    read goes through the adapter's endpoint pool (failover across `rpc_urls`), so a method raises
    only when every endpoint failed (a `TesseraError` subclass saying so)."""

    name: str
    domain: int

    async def start(self) -> None:
        """Open connections; idempotent."""
        ...

    async def close(self) -> None:
        """Close connections and background helpers; idempotent, safe after a failed start."""
        ...

    def watch(self, cursor: str | None) -> AsyncIterator[Observation]:
        """Yield every gateway envelope from `cursor` on (None: from the chain's current final head),
        in source order, each only once its transaction is final, forever. Each observation carries
        the cursor to resume after it: after a restart, `watch(last_cursor)` yields nothing already
        yielded before that cursor and misses nothing after it. Transient RPC errors are retried
        inside; the iterator ends only by cancellation or an error every endpoint reports."""
        ...

    async def reobserve(self, source_tx: str) -> list[Observation]:
        """Read one source transaction again. Returns its envelopes once final; an empty list when
        the transaction is unknown, failed, or not final yet (the caller asks again later).
        Idempotent, read-only."""
        ...

    async def find_nonce(self, nonce: int) -> Observation | None:
        """The final observation of the envelope with this source nonce (nonce-gap repair), or None
        when no final transaction carries it yet. Read-only."""
        ...

    async def is_delivered(self, message_id: bytes) -> bool:
        """True once the destination gateway has recorded the message as delivered (final or not,
        as the chain's latest state says). Read-only."""
        ...

    async def delivery_tx(self, message_id: bytes) -> str | None:
        """The transaction that delivered the message, or None when it is not delivered or the node
        cannot tell. Read-only."""
        ...

    async def submit(self, delivery: SignedDelivery) -> str:
        """Send one delivery transaction and return its id without waiting for finality. Not
        idempotent by itself (a second call sends a second transaction) but safe: the gateway accepts
        a message id once, so a repeat reverts as already delivered. Raises when the chain refuses it
        before inclusion (the error says whether it is worth retrying)."""
        ...

    async def delivery_status(self, tx_id: str) -> DeliveryStatus:
        """Where a submitted delivery transaction stands: PENDING while not final (also when the node
        has not seen it yet), CONFIRMED, REVERTED, or DROPPED when it can no longer be included.
        Read-only; after a restart any earlier tx id can be asked again."""
        ...

    async def send_message(self, dst_domain: int, receiver: bytes, kind: int, payload: bytes) -> tuple[Envelope, str]:
        """Send a message through this chain's gateway from the adapter's sender account; returns the
        emitted envelope (with its nonce) and the source transaction once it succeeded. Each call
        sends a new message."""
        ...

    def health(self) -> list[EndpointHealth]:
        """The endpoint pool's view of every RPC endpoint (for /health and metrics)."""
        ...


@dataclass(frozen=True, slots=True)
class DevnetNode:
    """How the localnet runs one chain's node on this machine (`ChainDriver.devnet_node`)."""

    argv: list[str]  # the node's command line (the localnet supervises it as a child process)
    rpc_url: str  # its JSON-RPC endpoint
    ready_method: str  # a JSON-RPC method (no params) that answers once the node serves requests
    status_method: str  # a JSON-RPC method (no params) whose answer `relay localnet status` shows


@dataclass(frozen=True, slots=True)
class DevnetDeployment:
    """What `ChainDriver.deploy_devnet` deployed on a localnet chain."""

    chain: Any  # the chain's complete [chains.<name>] table (addresses, accounts, key files)
    deployed: dict[str, str]  # what was deployed, name -> address (for the localnet summary)
    # Feed id -> source tables ([feeds.<id>] sources) that read this chain, for the localnet's feeds.
    feed_sources: dict[str, list[dict]] = field(default_factory=dict)
    # [feed_push] fields naming the pusher's own funded account on this chain (e.g. evm_key).
    feed_push: dict[str, Any] = field(default_factory=dict)


# Signs an envelope as the committee would: returns (epoch, combined signature).
EnvelopeSigner = Callable[[Envelope], tuple[int, bytes]]


@runtime_checkable
class ChainDriver(Protocol):
    """Everything Tessera builds for one configured chain. `adapters.registry.driver_for` returns the
    driver of a chain's kind; it is the only code that asks a chain's kind. Builders only construct
    objects (no network I/O until the object is started or used)."""

    name: str  # the chain's name under [chains]
    chain: Any  # its validated config table (relay.config.EvmChain, SolanaChain, ...)

    def messaging(self, *, role: str = "relayer", with_signer: bool = True) -> ChainAdapter:
        """The gateway adapter. role "relayer" signs with `signer`; role "sender" (the SDK) with
        `sender`, else `signer`; `with_signer=False` gives a read-only adapter (attesters)."""
        ...

    def requester_board(self, config: Any) -> RequesterBoard:
        """The requester's side of the task board, signing with the chain's sender (else signer)."""
        ...

    def serving_board(self, config: Any, worker: Any) -> ServingBoard:
        """The worker's side of the task board, submitting with the worker's own account from the
        given `[worker]` section; raises ConfigError naming the field when it has none."""
        ...

    def feed_target(self, config: Any, push: Any) -> FeedTarget:
        """The on-chain feed push target, paying with the pusher's own account for this kind of chain
        from the `[feed_push]` section, else the chain's sender."""
        ...

    def parse_address(self, text: str) -> bytes:
        """An account address of this chain as written in a config, in its 32-byte wire form; raises
        ValueError saying what was expected."""
        ...

    def pool_source(self, source: Any, name: str, clock: Any = None) -> Any:
        """A price source reading a constant-product pool on this chain (`evm_pool` feeds); raises
        ConfigError naming the source when this kind of chain has none."""
        ...

    def market(self, key: str, **options: Any) -> Any:
        """Localnet only: the random-walk trader on this chain's MarketPool (`relay market`); raises
        ConfigError when the chain has none."""
        ...

    async def provision_devnet_worker(self, keys_dir: Any, suffix: str, serves: bool) -> tuple[str, dict]:
        """Localnet only: the account a worker uses on this chain, created under `keys_dir` when missing
        (idempotent: an existing key is reused) and funded when needed (`serves`: the worker submits
        here). Returns its payout address as written in a config, and the `[worker]` fields naming
        its key."""
        ...

    def devnet_node(self, settings: Mapping[str, Any]) -> DevnetNode:
        """Localnet only: the node that serves this chain's table (its rpc_urls, ws_urls, chain id)
        on this machine, with the node's own `settings` from the localnet plan (e.g. `block_time`
        for anvil, `slot_ms` and `finality_slots` for the Solana localnet server). Pure: starts
        nothing."""
        ...

    async def deploy_devnet(self, keys_dir: Path, committee: Committee,
                            feeds: Mapping[str, FeedConfig]) -> DevnetDeployment:
        """Localnet only: deploy Tessera on this chain's freshly started node — its gateway and
        committee verification bound to `committee` and to the chain's domain, the task board, and
        a store for each of `feeds` where the chain keeps feeds on-chain — and fund the accounts
        the localnet's processes use. Keys are written under `keys_dir` when missing (0600) and
        reused when present, so several chains of one kind may share them; key paths in the
        returned table are relative to `keys_dir`'s parent, where the config is written. Not
        idempotent on one node (a second call deploys a second set of contracts)."""
        ...

    async def smoke_devnet(self, keys_dir: Path, sign: EnvelopeSigner) -> list[tuple[str, str]]:
        """Localnet only: prove the deployment works — call a deployed contract or program, then
        have the chain verify a committee signature over an envelope addressed to it (`sign`
        makes one) and refuse a forged one. Returns (check, outcome) rows for a reader; raises on
        the first failure. Sends transactions; safe to repeat."""
        ...


# --- task boards (docs/TASKS.md; relay/tasks/board.py holds their errors) ------------------------


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


# --- feed push targets (relay/feeds/push.py drives them) -----------------------------------------


@dataclass(frozen=True, slots=True)
class FeedNotNewer:
    """`push` result when the chain already holds this round or a newer one: nothing to do, not an
    error (another pusher or a pull consumer may have been first)."""

    target: str
    feed_id: str
    round: int
    stored_round: int | None

    def __str__(self) -> str:
        return f"{self.target}: {self.feed_id} round {self.round} is not newer than the stored round {self.stored_round}"


@runtime_checkable
class FeedTarget(Protocol):
    name: str

    async def push(self, signed: SignedReport) -> Any: ...  # tx id (str) or a not-newer result

    async def latest(self, feed_id: str) -> Any: ...  # SignedReport | FeedReport | report-like | None
