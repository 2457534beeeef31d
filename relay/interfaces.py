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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Protocol, runtime_checkable

from relay.envelope import Envelope

if TYPE_CHECKING:  # annotations only: the payload codecs sit above this module
    from attest.committee import Committee
    from relay.feeds.config import FeedConfig
    from relay.feeds.signed import SignedReport
    from relay.tasks.payloads import TaskRequestV2
    from relay.batch import Batch


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
    # Final, the gateway recorded the message, but its receiver's handler failed (EVM Gateway
    # status 2): NOT delivered. Retryable: `submit` again (it re-runs the handler) or `retry_failed`.
    HANDLER_FAILED = "handler_failed"


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    state: DeliveryState
    detail: str = ""


class MessageStatus(enum.Enum):
    """Where a message stands at its destination gateway (as the adapter's finality rule says)."""

    NOT_DELIVERED = "not_delivered"
    DELIVERED = "delivered"  # recorded and handled by its receiver
    # Recorded, but the receiver's handler failed (EVM Gateway status 2): not delivered, retryable.
    HANDLER_FAILED = "handler_failed"


@dataclass(frozen=True, slots=True)
class ChainIdentity:
    """Which chain an RPC endpoint serves, kept beside every cursor and signing log so a daemon never
    resumes one chain's state on another (a reset testnet, a new localnet, another chain behind the
    same domain). `genesis` tells instances of one chain id apart."""

    kind: str  # the chain's kind ("evm", "solana")
    chain_id: str  # EVM chain id (decimal); "" where the chain has none beyond its genesis
    genesis: str  # EVM block 0 hash (0x-hex), Solana genesis hash (base58)

    def encode(self) -> str:
        return f"{self.kind}:{self.chain_id}:{self.genesis}"

    @classmethod
    def decode(cls, text: str) -> "ChainIdentity":
        kind, chain_id, genesis = text.split(":", 2)
        return cls(kind, chain_id, genesis)

    def describe(self) -> str:
        return f"{self.kind} chain id {self.chain_id}, genesis {self.genesis}" if self.chain_id else \
            f"{self.kind} chain, genesis {self.genesis}"


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


@dataclass(frozen=True, slots=True)
class SignedBatch:
    """A lane's batch (relay.batch.Batch) and the committee's signature over `batch.digest(epoch)`."""

    batch: "Batch"
    epoch: int
    signature: bytes  # G1, 64 bytes


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

    async def is_delivered(self, message_id: bytes, envelope: Envelope | None = None) -> bool:
        """True once the destination gateway has recorded the message as delivered and handled (as
        the adapter's finality rule says). A message whose handler failed (EVM status 2) is not
        delivered: it is retryable (`retry_failed`). `envelope` (the message's, when the caller has
        it) lets a chain whose delivery records can be closed (Solana's CloseReceipt keeps only a
        replay bit keyed by source and nonce) still say True after the close; without it such a
        message reads as not delivered. Read-only."""
        ...

    async def message_status(self, message_id: bytes, envelope: Envelope | None = None) -> MessageStatus:
        """`is_delivered` with the reason when it is not: NOT_DELIVERED, DELIVERED, or HANDLER_FAILED
        (recorded but the receiver's handler failed; the relayer re-runs it). `envelope` as for
        `is_delivered`. Read-only."""
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

    async def delivery_status(self, tx_id: str, message_id: bytes | None = None) -> DeliveryStatus:
        """Where a submitted delivery transaction stands: PENDING while not final (also when the node
        has not seen it yet), CONFIRMED, REVERTED, or DROPPED when it can no longer be included.
        Read-only; after a restart any earlier tx id can be asked again. HANDLER_FAILED when the
        transaction is final but the receiver's handler failed (the message is not delivered).
        With `message_id` (a batch transaction that may deliver several messages): that message's
        outcome in it; DROPPED when the final transaction did not deliver it (skipped: delivered before)."""
        ...

    async def submit_batch(self, batch: SignedBatch, indices: list[int]) -> dict[int, str]:
        """Deliver the messages at `indices` of a committee-signed batch (EVM: one deliverBatch
        transaction; Solana: VerifyRoot unless the root is verified already, then one DeliverWithProof
        transaction per message, sent concurrently). Returns each delivered index's transaction id
        without waiting for finality (indices may share one); an index missing from the answer was
        not sent (the adapter logs why). Raises when nothing was sent. Safe to repeat, also after a
        restart with the indices still undelivered: the root is not verified twice and the gateway
        accepts a message id once. Follow each transaction with `delivery_status(tx, message_id)`."""
        ...

    async def close_batch(self, batch: SignedBatch) -> None:
        """Once none of the batch's deliveries is outstanding: give back what its verified root holds
        on-chain (Solana: CloseRoot returns the root account's rent to the relayer; EVM: nothing).
        Idempotent; a root already closed or never verified is left alone."""
        ...

    async def retry_failed(self, envelope: Envelope) -> str:
        """Re-run the receiver's handler of a message the gateway recorded with a failed handler (EVM
        `Gateway.retryFailed`; anyone may call it, no signature needed: the envelope was verified at
        its first delivery). Returns the transaction id without waiting for finality; follow it with
        `delivery_status` like a delivery. Not idempotent by itself, but safe: once the handler ran,
        a repeat is refused before sending. Raises (before sending) when the message is not in the
        failed state or the handler still fails. `submit` of such a message does the same thing, so
        a relayer that only resubmits is correct too. Chains whose failing handler fails the whole
        delivery (Solana) never hold a failed message: they raise, saying there is nothing to retry."""
        ...

    async def send_message(self, dst_domain: int, receiver: bytes, kind: int, payload: bytes) -> tuple[Envelope, str]:
        """Send a message through this chain's gateway from the adapter's sender account; returns the
        emitted envelope (with its nonce) and the source transaction once it succeeded. Each call
        sends a new message."""
        ...

    async def quote(self, dst_domain: int, payload_length: int, sender: bytes | None = None) -> int:
        """What this chain's gateway charges now to send `payload_length` bytes to `dst_domain`, in the
        chain's smallest unit (docs/PROTOCOL.md "Fees"): what `send_message` pays. With `sender` (32
        bytes), that sender's price (a task board pays the flat fee). Read-only; raises (a TesseraError
        saying what to do) when the gateway refuses to quote, e.g. on a stale or missing price feed."""
        ...

    async def fee_paid(self, source_tx: str, message_id: bytes) -> int | None:
        """The fee the send of `message_id` paid, read from its source transaction's fee event; None
        when that transaction records none for it. Read-only."""
        ...

    def health(self) -> list[EndpointHealth]:
        """The endpoint pool's view of every RPC endpoint (for /health and metrics)."""
        ...

    async def wallet_balances(self) -> dict[str, int]:
        """The native balance of every account this adapter spends from (its signer: the relayer's
        or the SDK's sender), in the chain's smallest unit (wei, lamports), keyed by the address as
        written in a config; empty when it has no signer (a read-only adapter). Read-only; raises
        like any read when every endpoint failed."""
        ...

    async def chain_identity(self) -> ChainIdentity:
        """The identity of the chain the endpoints serve (EVM: eth_chainId + the hash of block 0;
        Solana: getGenesisHash). Stable for the life of a chain, different for a reset or another
        chain. Read-only; raises like any read when every endpoint failed."""
        ...

    async def cursor_problem(self, cursor: str) -> str | None:
        """None when `cursor` (one `watch` yielded, on a chain with this identity) names a position the
        chain has reached; otherwise why it cannot be resumed from, for an error message (EVM: the
        cursor's block is ahead of the head; Solana: the cursor's transaction is unknown to the node).
        Read-only."""
        ...


@dataclass(frozen=True, slots=True)
class ReceiptInfo:
    """A delivery receipt as its account says (`ReceiptCloser.receipt_infos`)."""

    payer: bytes  # the key that paid its rent (and gets it back when it is closed)
    delivered_at: int  # unix time of the delivery, on the destination's clock
    lamports: int  # the rent it holds
    closable: bool  # whether the program lets it be closed (not the task board's, not the committee's)


@dataclass(frozen=True, slots=True)
class ReceiptClose:
    """The outcome of closing one receipt (`ReceiptCloser.close_receipts`): "closed" (by this call,
    in `tx`), "already_closed" (no receipt any more: its rent went back already), "too_early" (the
    retention has not passed on the destination's clock), "foreign" (another key paid it),
    "deferred" (closing would cost more than it returns: Solana's first close in a nonce window pays
    the window's replay bitmap; asked again later) or "failed" (detail says why; try again later)."""

    outcome: str
    tx: str | None = None
    lamports: int = 0
    detail: str = ""


@runtime_checkable
class ReceiptCloser(Protocol):
    """Optional, for destinations whose delivery receipts hold rent that can come back (Solana
    CloseReceipt: the receiver any time, anyone once the program's retention passed; the rent goes to
    the receipt's payer; replay protection survives in a bitmap). The relayer closes the receipts its
    own key paid for (relay.pipeline `close_due_receipts`)."""

    def receipt_payer(self) -> bytes | None:
        """The key this adapter pays receipts with (its signer); None without one."""
        ...

    async def receipt_infos(self, envelopes: list[Envelope]) -> dict[bytes, ReceiptInfo | None]:
        """By message id: what each message's receipt account says, None when there is none (never
        delivered, or closed). Read-only."""
        ...

    async def close_receipts(self, envelopes: list[Envelope]) -> dict[bytes, ReceiptClose]:
        """Close the receipts of `envelopes` that this adapter's key paid for, several per transaction;
        by message id, what happened to each. Safe to repeat: a receipt closed already is reported so."""
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

    def messaging(self, *, role: str = "relayer", with_signer: bool = True, signer: Any = None) -> ChainAdapter:
        """The gateway adapter. role "relayer" signs with `signer`; role "sender" (the SDK) with
        `sender`, else `signer`; `with_signer=False` gives a read-only adapter (attesters). A given
        `signer` object (the SDK user's own: an eth_account LocalAccount on EVM, a solders Keypair on
        Solana) overrides the config; ConfigError naming the expected type for another object."""
        ...

    def rotation(self) -> Any:
        """The chain's committee verifier for `relay committee rotate` (relay/rotation.py): `receiver`
        (32 bytes, a rotation's dst_receiver), `await state()` (a ChainCommittee), `await
        rotate(envelope, epoch, signature)` (sent by the chain's signer; RotationError when the chain
        refuses), `await close()`."""
        ...

    def requester_board_v2(self, config: Any, signer: Any = None) -> RequesterBoardV2:
        """Task protocol v2, requester's side, signing with the given `signer` object (as for
        `messaging`), else the chain's sender (else signer)."""
        ...

    def serving_board_v2(self, config: Any, worker: Any = None) -> ServingBoardV2:
        """Task protocol v2, serving side, claiming and submitting with the worker's own account from
        the given `[worker]` section (ConfigError naming the field when it has none). `worker=None`
        gives a read-only board (watch, prices, claim status: what the SDK follows); its transactions
        raise TaskBoardError."""
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

    async def provision_devnet_relayer(self, keys_dir: Any, name: str) -> dict[str, Any]:
        """Localnet only: relayer replica `name`'s own account on this chain, created under `keys_dir`
        when missing (reused when present, also by other chains of this kind) and funded for its
        deliveries. Returns the fields of this chain's table that make the replica sign with it
        (`signer`): replicas never share an account (docs/DEPLOY.md, "Relayer replicas")."""
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

    async def deployment_problems(self, committee: Committee | None) -> list[str]:
        """`relay config check --online`: what is wrong with the chain's deployment as the config
        describes it — contracts or program missing or not the code this checkout builds, a
        committee on chain other than `committee` — each naming the config field. Read-only; reads
        through rpc_urls[0]; raises like any read when the endpoint fails."""
        ...


# --- task boards (docs/TASKS.md; relay/tasks/board.py holds their errors) ------------------------


class TaskState(enum.IntEnum):
    """Requester-side state of a task (v1 numbering: the retired TaskBoard.State and the Solana v1 account)."""

    NONE = 0
    OPEN = 1
    RESULT_RECEIVED = 2
    COMPLETED = 3
    REFUNDED = 4


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


# --- task boards, protocol v2 (docs/TASKS.md "Task protocol v2"; errors in relay/tasks/board.py) --
# v2 replaces v1 everywhere (issue 12); v1's ServingBoard / RequesterBoard / IncomingRequest are
# retired (docs/TASKS.md "v1 retired"). TaskStatus above stays: the v1 Solana task account decodes to it.


class ServeState(enum.IntEnum):
    """Serving-side state of a request (same numbering as TaskBoardV2.ServeState and the Solana serve
    account's state byte)."""

    NONE = 0  # no TASK_REQUEST v2 with this id was delivered to this board (or it is not final yet)
    OPEN = 1  # claimable until its deadline (also: re-opened after an expired or refused claim)
    CLAIMED = 2  # one claimant may submit until claim_deadline
    ANSWERED = 3  # a result was sent; waiting for the committee's verdict
    CLOSED = 4  # bond returned or forfeited for the last time: nothing more happens


@dataclass(frozen=True, slots=True)
class IncomingRequestV2:
    """A TASK_REQUEST v2 delivered to this chain's board and final there: what a worker may claim."""

    request_id: bytes  # message id of the TASK_REQUEST envelope (32 bytes)
    envelope: Envelope  # the delivered envelope (src = requester's chain and board)
    request: TaskRequestV2  # its decoded payload (auction and claim terms included)
    auction_start: int  # unix seconds, serving chain's clock: the delivery's block time (the auction's t0)
    delivery_tx: str  # the destination transaction that delivered it
    position: int  # block number or slot of the delivery
    cursor: str  # opaque: where watch_requests resumes after this one


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim this board's account holds: only it may submit, with this payout and price, until
    claim_deadline (serving chain's clock)."""

    request_id: bytes
    claimant: bytes  # 32 bytes: the account that claimed (the board's own: `ServingBoardV2.account`)
    payout: bytes  # 32 bytes, an address on the requester's chain
    price: int  # requester chain's smallest unit: what the requester pays for a valid result
    claim_deadline: int  # unix seconds, serving chain's clock
    bond: int  # serving chain's smallest unit, posted with the claim
    tx: str | None  # the claim transaction; None when the claim was already held (found on the board)


@dataclass(frozen=True, slots=True)
class ClaimStatus:
    """Serving-side record of one request, read from the chain's latest state."""

    request_id: bytes
    state: ServeState
    src_domain: int = 0  # the requester's chain
    src_board: bytes = bytes(32)  # the requester's board: where the result goes
    executor: str = ""
    deadline: int = 0  # unix seconds, serving chain's clock
    auction_start: int = 0  # t0 of the auction (the delivery's block time)
    auction_window: int = 0
    start_bps: int = 0
    claim_window: int = 0
    max_fee: int = 0  # requester chain's smallest unit
    bond: int = 0  # serving chain's smallest unit
    refund_to: bytes = bytes(32)  # receives forfeited bonds
    claimant: bytes | None = None  # the running claim or the answered one (32 bytes); None when open
    payout: bytes | None = None
    price: int | None = None
    claim_deadline: int | None = None
    result_id: bytes | None = None  # message id of the result waiting for its verdict
    submitted_at: int | None = None  # that result's block time, where the board stores it (Solana)
    claims: int | None = None  # claims so far, where the board counts them (Solana)


@dataclass(frozen=True, slots=True)
class TaskStatusV2:
    """Requester-side record of one v2 task, read from the chain's latest state. `state` is a TaskState
    (NONE, OPEN, COMPLETED or REFUNDED: v2 records results by result id, see `result_recorded`)."""

    request_id: bytes
    state: TaskState
    requester: bytes = bytes(32)  # 32 bytes (EVM address left-padded, or Solana key)
    dst_domain: int = 0
    worker_board: bytes = bytes(32)
    executor: str = ""
    deadline: int = 0  # unix seconds, serving chain's clock
    max_fee: int = 0  # escrowed, requester chain's smallest unit
    refundable_after: int = 0  # reclaim opens after this (deadline + the board's settlement grace)
    # Once COMPLETED (None before, and None where the chain does not keep them):
    result_id: bytes | None = None  # the paid TASK_RESULT's message id
    payout: bytes | None = None  # 32 bytes
    price: int | None = None  # paid to the payout
    refund: int | None = None  # max_fee - price back to the requester (or max_fee once REFUNDED)


@runtime_checkable
class ServingBoardV2(Protocol):
    """A worker's side of a v2 board, on the chain where it serves: watch, claim at the auction price
    with a bond, submit as the claimant, settle bonds. Built by `ChainDriver.serving_board_v2`; every
    transaction is signed by the worker's own account (`account`) and returns once the chain accepted
    it (EVM receipt status 1, Solana confirmed), not once final. Refusals raise
    `relay.tasks.board` errors (same classes on every chain, `.error` = the chain's own name)."""

    name: str
    domain: int
    address: bytes  # 32 bytes: the board as envelope receiver/sender
    account: bytes  # 32 bytes: the claimant account (EVM address left-padded, Solana key); zero if read-only

    def watch_requests(self, cursor: str | None) -> AsyncIterator[IncomingRequestV2]:
        """Delivered TASK_REQUEST v2s addressed to this board, final, in delivery order, from `cursor`
        on (None: from the adapter's start), forever. Each carries the cursor to resume after it:
        after a restart `watch_requests(last_cursor)` yields nothing before it and misses nothing
        after it. Deliveries whose payload is not a v2 request are skipped (logged). Read-only."""
        ...

    async def chain_time(self) -> int:
        """The serving chain's clock now (latest block timestamp, Solana Clock unix_timestamp): the
        clock of auction prices and deadlines. Read-only."""
        ...

    async def current_price(self, request_id: bytes) -> int:
        """The price `claim` would fix if it landed now (auction price on the chain's latest clock),
        requester chain's smallest unit. Raises ClaimRefused (`UnknownRequest`) when no v2 request with
        that id was delivered here. Read-only."""
        ...

    async def claim(self, request_id: bytes, payout: bytes) -> Claim:
        """Claims the request at the auction price when the transaction lands, posting the request's
        bond, with `payout` (32 bytes, an address on the requester's chain). Returns the claim.
        Idempotent for its holder: when this account already holds the running claim (e.g. after a
        restart), returns it with tx None and sends nothing. Raises ClaimLost when another claim runs
        or the request is answered or closed (a normal outcome of the race: not an error to retry),
        RequestExpired after the deadline, ClaimRefused for anything else (wrong bond, zero payout,
        unknown request; `.error` names it). An expired claim of someone else is forfeited by the
        claim itself."""
        ...

    async def submit_result(self, request_id: bytes, result_payload: bytes) -> str:
        """Sends the encoded TASK_RESULT v2 through the board (paying the gateway fee where there is
        one); returns the transaction once it succeeded. Only the claimant, before its claim deadline,
        with the claim's claimant, payout and price in the payload. Checked locally first (decodes,
        names `request_id`; ResultRefused without a transaction). Not idempotent: after a restart read
        `claim_status` first (ANSWERED with our claimant: it landed). Raises ResultAlreadySubmitted
        (answered already), ClaimNotHeld (no claim, someone else's, or its deadline passed),
        RequestExpired, ResultRefused (mismatched fields, executor)."""
        ...

    async def claim_status(self, request_id: bytes) -> ClaimStatus:
        """The request's serving-side record (state NONE when unknown here). Read-only."""
        ...

    async def expire_claim(self, request_id: bytes) -> str:
        """Forfeits a claim whose deadline passed without a result (bond to the request's refund_to,
        the task open again until its deadline); anyone may call it. Returns the transaction. Raises
        BondRefused (`NotClaimed`, `ClaimNotExpired`) otherwise; a second call is refused."""
        ...

    async def release_bond(self, request_id: bytes) -> str:
        """Returns the bond to the claimant of a result that got no verdict by deadline + the board's
        settlement grace; anyone may call it, the lamports/wei go to the claimant only. Returns the
        transaction; raises BondRefused (`NoResultPending`, `VerdictWaitNotOver`) otherwise."""
        ...

    async def withdraw(self, request_id: bytes) -> str | None:
        """Collects what the board holds for this board's account because a transfer to it could not
        be made (EVM: the account's credits, from any task; Solana: the claimant credit held in this
        request's serve account). Returns the transaction, or None when nothing is held (nothing
        sent)."""
        ...

    async def close(self) -> None:
        """Closes connections; idempotent."""
        ...


@runtime_checkable
class SettledCloser(Protocol):
    """Optional for a ServingBoardV2: a board whose per-request records lock rent that comes back once
    settled (Solana: the serve account, CloseServe; docs/TASKS.md "Closing settled records on
    Solana"). EVM boards have no rent to close and do not implement it. The worker calls it for the
    tasks it claimed, once their record is settled and its credits are withdrawn."""

    async def close_settled(self, request_id: bytes, *, serving_only: bool = False) -> list[str]:
        """Closes this request's records that are settled with nothing owed (`serving_only`: the
        serving side's record alone, what a worker holds); returns the transactions sent, [] when none
        was closable yet (not settled, a credit to withdraw first, the retention period of a record
        someone else paid for) or none exists any more."""
        ...


@runtime_checkable
class RequesterBoardV2(Protocol):
    """A requester's side of a v2 board, on the chain where the task is paid for. Built by
    `ChainDriver.requester_board_v2`, signing with the chain's sender (else signer)."""

    name: str
    domain: int
    address: bytes  # 32 bytes: the board as envelope sender/receiver
    account: bytes  # 32 bytes: the requester account

    async def request_task(self, *, dst_domain: int, worker_board: bytes, request: TaskRequestV2) -> SentRequest:
        """Escrows exactly `request.max_fee` (plus the gateway fee where there is one, fixed in this
        transaction) and sends the TASK_REQUEST v2 with the request's auction and claim terms to
        `worker_board` on `dst_domain`; returns once the transaction succeeded, with the envelope as
        the chain emitted it (its payload equals `request.encode()`). Each call sends a new request;
        raises RequestRefused (deadline not in the future, terms, fee) before sending."""
        ...

    async def task_status(self, request_id: bytes) -> TaskStatusV2:
        """The task's requester-side record (state NONE when unknown). Read-only."""
        ...

    async def result_recorded(self, result_id: bytes) -> bool:
        """True once the board recorded the TASK_RESULT v2 with this message id (its verdict can then
        settle it). Read-only; what relayers order a verdict after."""
        ...

    async def reclaim(self, request_id: bytes) -> str:
        """Refunds max_fee to the requester of a task still open after deadline + settlement grace;
        anyone may call it. Returns the transaction; raises ReclaimRefused otherwise (too early,
        completed, refunded: a second call is refused)."""
        ...

    async def withdraw(self, request_id: bytes) -> str | None:
        """Collects what the board holds for the requester because a refund could not be made (EVM:
        the account's credits; Solana: the requester credit in this task's account). Returns the
        transaction, or None when nothing is held (nothing sent)."""
        ...

    async def close(self) -> None:
        """Closes connections; idempotent."""
        ...


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

    @staticmethod
    def split(target: str, reports: Sequence[Any], stored: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """(the reports newer than what `stored` (feed id -> the chain's latest report or None) holds,
        feed id -> FeedNotNewer for the rest): what a multi-feed update sends and what it reports."""
        fresh = [r for r in reports if stored[r.feed_id] is None or stored[r.feed_id].round < r.round]
        return fresh, {r.feed_id: FeedNotNewer(target, r.feed_id, r.round, stored[r.feed_id].round)
                       for r in reports if r not in fresh}


@runtime_checkable
class FeedTarget(Protocol):
    name: str

    async def push(self, signed: SignedReport) -> Any: ...  # tx id (str) or a not-newer result

    async def push_root(self, reports: Sequence[SignedReport], riders: Sequence[SignedReport] = ()) -> dict[str, Any]:
        """Served (v2) reports of one feed root in one on-chain update (docs/FEEDS.md "One signature
        per round"); feed id -> tx id (str) or a not-newer result. A stale feed never fails the rest.
        `riders`: other reports of the root, to send too only where that makes the update cheaper."""
        ...

    async def latest(self, feed_id: str) -> Any: ...  # SignedReport | FeedReport | report-like | None

    async def wallet_balances(self) -> dict[str, int]:
        """The native balance of the account this target pays pushes from, smallest unit, keyed by
        address as written in a config. Read-only."""
        ...
