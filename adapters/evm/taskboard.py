"""The EVM task board (contracts/evm/src/TaskBoardV2.sol) seen through web3.py: both roles of
relay/tasks/board.py on one chain.

* serving side (`ServingBoardV2`): `watch_requests` follows `TaskReceived` events in final blocks
  (the chain's `confirmations`, as the gateway watcher does) and rebuilds the delivered envelope
  from the event and the gateway's `MessageDelivered` nonce; a worker claims and submits.
* requester side (`RequesterBoardV2`): `request_task` escrows `max_fee` and sends the TASK_REQUEST v2
  (the envelope comes from the gateway's `MessageSent` in the receipt); `reclaim` refunds an
  expired task.

Transactions go through an internal `EvmAdapter`'s transaction manager (adapters/evm/tx.py: endpoint
pool with failover, one nonce counter behind a lock, EIP-1559 fees), so a board must own its key: the worker passes its own account,
the requester uses `chains.<name>.sender` — never the relayer's signer, whose nonces the relayer
manages in another process.

Task protocol v2 (contracts/evm/src/TaskBoardV2.sol, docs/TASKS.md "Task protocol v2") is
`EvmTaskBoardV2` (relay.interfaces.ServingBoardV2 and RequesterBoardV2), at
`chains.<name>.contracts.TaskBoardV2`: a worker claims a delivered request at the auction price with
the request's bond (`claim`), then only its account submits; the requester's escrow is exactly
max_fee. `_EvmBoard` holds views, decoded refusals and the TaskReceived watch. Task protocol v1
(`TaskBoard.sol`, `EvmTaskBoard`) is retired (docs/TASKS.md "v1 retired").
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Literal

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from adapters.endpoints import AllEndpointsFailed
from adapters.evm.deploy import deploy, load_artifact
from adapters.evm.gateway import LOG_RANGE, EvmAdapter, evm_key
from adapters.evm import rpc
from adapters.evm.rpc import decode_revert, error_entries, revert_data, to_hex
from adapters.evm.tx import TxNotMined
from relay.aio import wait_event
from relay.config import EvmChain, KeyRef
from relay.envelope import Envelope, EnvelopeError, address_to_bytes32
from relay.interfaces import (Claim, ClaimStatus, IncomingRequestV2, SentRequest, ServeState, TaskState,
                              TaskStatusV2)
from relay.log import get_logger
from relay.protocol import MessageKind
from relay.tasks.board import (BoardRefused, BondRefused, ClaimLost, ClaimNotHeld, ClaimRefused, ReclaimRefused,
                               RequestExpired, RequestRefused, ResultAlreadySubmitted, ResultRefused, TaskBoardError)
from relay.tasks.payloads import TaskPayloadError, TaskRequestV2, TaskResultV2, decode_executor_id

TASK_BOARD_V2 = "TaskBoardV2"
DEFAULT_SETTLEMENT_GRACE = 300  # seconds; what `relay localnet up` deploys TaskBoardV2 with (contract default 1800)
POLL_INTERVAL = 0.25  # seconds between polls for new final TaskReceived events
RECEIPT_TIMEOUT = 60.0

Role = Literal["worker", "requester", "reader"]


def _log() -> Any:
    return get_logger("evm.tasks")


# --- errors ---------------------------------------------------------------------------------


class TransactionNotMined(TaskBoardError):
    def __init__(self, action: str, tx: str, timeout: float) -> None:
        super().__init__(
            f"{action}: transaction {tx} was not mined within {timeout:.0f}s; it may still be. Check the node "
            "and the account's pending transactions, and read the board (result_submitted / task_status) "
            "before sending again"
        )
        self.tx = tx


class TaskBoardNotConfigured(TaskBoardError):
    def __init__(self, chain: str, contract: str = TASK_BOARD_V2) -> None:
        deployer = "deploy_task_board_v2"
        super().__init__(
            f"chains.{chain}.contracts has no {contract} address: deploy it (`relay localnet up` does, or "
            f"adapters.evm.taskboard.{deployer}) and add `{contract} = \"0x…\"` under [chains.{chain}.contracts]"
        )


_BOARD = "TaskBoard"  # how refusals name the board
_HINTS = {
    "ResultAlreadySubmitted": "another result was sent first; nothing to do",
    "RequestExpired": "the deadline passed; the requester will reclaim the escrow",
    "UnknownRequest": "no TASK_REQUEST with this id was delivered to this board (wrong chain or board?)",
    "ExecutorMismatch": "the result must name the executor the request asked for",
    "ValueBelowGatewayFee": "pay at least the gateway fee (Gateway.fee())",
    "DeadlineNotInFuture": "choose a deadline after the chain's current time",
    "DeadlineNotPassed": "wait until the time shown (unix seconds) has passed, then reclaim again",
    "TaskNotRefundable": "the task was already completed or refunded",
    "UnknownTask": "no task with this request id was requested on this board",
    # v2
    "AlreadyClaimed": "another worker holds the claim until the time shown; the task re-opens if it lets it expire",
    "ResultPending": "a result waits for the committee's verdict; the task re-opens only if it is refused",
    "RequestClosed": "the request was served (or its last claim settled); nothing to do",
    "WrongBond": "post exactly the request's bond (claim_status(...).bond) with the claim",
    "ZeroPayout": "give a payout address on the requester's chain",
    "NotClaimed": "claim the request first; a result is accepted only from the running claim's claimant",
    "NotClaimant": "another account holds the claim: only it may submit",
    "ClaimDeadlinePassed": "the claim ran out before the result landed; the task is open for claims again",
    "ClaimMismatch": "the result must carry the claim's claimant (this account), payout and price",
    "GatewayFeeAboveLimit": "the gateway fee rose: pay at least Gateway.fee() above max_fee",
    "ClaimNotExpired": "the claim runs until the time shown (unix seconds)",
    "NoResultPending": "no result is waiting for a verdict",
    "VerdictWaitNotOver": "wait until the time shown (deadline + settlement grace) has passed",
    "NothingToWithdraw": "nothing is held for this account",
    "InvalidAuctionTerms": "check auction_window, start_bps (<= 10000), claim_window (>= 1) and refund_to",
}

# Refusals with a class of their own in relay.tasks.board, by the class the action refuses with.
_SPECIFIC: dict[type[BoardRefused], dict[str, type[BoardRefused]]] = {
    ResultRefused: {"ResultAlreadySubmitted": ResultAlreadySubmitted, "RequestExpired": RequestExpired,
                    "NotClaimed": ClaimNotHeld, "NotClaimant": ClaimNotHeld, "ClaimDeadlinePassed": ClaimNotHeld},
    ClaimRefused: {"AlreadyClaimed": ClaimLost, "ResultPending": ClaimLost, "RequestClosed": ClaimLost,
                   "RequestExpired": RequestExpired},
}


def board_refusal(cls: type[BoardRefused], action: str, reason: str) -> BoardRefused:
    name = reason.split("(", 1)[0]
    cls = _SPECIFIC.get(cls, {}).get(name, cls)
    return cls(action, reason, _HINTS.get(name, ""), board=_BOARD)


# --- the board contract ----------------------------------------------------------------------


class _EvmBoard:
    """A board contract at `chains.<name>.contracts[CONTRACT]` seen through an internal EvmAdapter
    (endpoint pool, finality, the transaction manager): views, transactions whose refusals are
    decoded, the key rules of `from_config`, and the TaskReceived watch."""

    CONTRACT = TASK_BOARD_V2

    def __init__(
        self,
        name: str,
        chain: EvmChain,
        private_key: str | None,
        *,
        start_block: int = 0,
        poll_interval: float = POLL_INTERVAL,
        log_range: int = LOG_RANGE,
        rpc_timeout: float = 10.0,
        receipt_timeout: float = RECEIPT_TIMEOUT,
    ) -> None:
        address = chain.contracts.get(self.CONTRACT)
        if address is None:
            raise TaskBoardNotConfigured(name, self.CONTRACT)
        self.name = name
        self.domain = chain.domain
        self.board_address = to_checksum_address(address)
        self.address = address_to_bytes32(self.board_address)
        self.poll_interval = poll_interval
        self.receipt_timeout = receipt_timeout
        # The adapter brings the endpoint pool, finality, nonces and fees; its own watcher is unused.
        self._evm = EvmAdapter(name, chain, private_key, start_block=start_block, poll_interval=poll_interval,
                               log_range=log_range, rpc_timeout=rpc_timeout)
        self.abi = load_artifact(self.CONTRACT).abi
        self._board = AsyncWeb3().eth.contract(address=self.board_address, abi=self.abi)  # offline: encode/decode
        self._errors = self.abi + error_entries(self._evm.abi)
        self._events = {e["name"]: e for e in self.abi if e.get("type") == "event"}
        received = self._events["TaskReceived"]
        self._topic_received = self._topic("TaskReceived")
        self._received_names = [i["name"] for i in received["inputs"] if not i["indexed"]]
        self._received_types = [i["type"] for i in received["inputs"] if not i["indexed"]]

    def _topic(self, event: str) -> str:
        return to_hex(event_abi_to_log_topic(self._events[event]))

    @classmethod
    def connect(
        cls, rpc_url: str, *, domain: int, chain_id: int, gateway: str, board: str, private_key: str | None,
        confirmations: int | None = 0, name: str = "evm", **options: Any,
    ) -> Any:
        """Without a config file: one endpoint, the two contract addresses and a key (tests, scripts)."""
        chain = EvmChain(kind="evm", domain=domain, chain_id=chain_id, rpc_urls=[rpc_url], confirmations=confirmations,
                         contracts={"Gateway": gateway, cls.CONTRACT: board})
        return cls(name, chain, private_key, **options)

    @classmethod
    def from_config(
        cls, name: str, chain: EvmChain, role: Role = "requester", *, worker_key: str | KeyRef | None = None,
        **options: Any,
    ) -> Any:
        """The board of `[chains.<name>]` for one role: "requester" signs with the chain's `sender`
        (else `signer`, as the SDK does); "worker" with `worker_key` (a hex private key, or a KeyRef
        such as `[worker] evm_key`), never the relayer's signer; "reader" signs nothing."""
        if role == "worker":
            if not worker_key:
                raise TaskBoardError(
                    f"the worker's board on {name} needs the worker's own EVM private key: pass worker_key= "
                    "or set [worker] evm_key (file = ... or env = ...); the relayer's signer must not be shared"
                )
            key = _check_key(evm_key(worker_key, "worker.evm_key") if isinstance(worker_key, KeyRef) else worker_key)
        elif role == "requester":
            field = "sender" if chain.sender is not None else "signer"
            key = evm_key(getattr(chain, field), f"chains.{name}.{field}")
            if key is None:
                raise TaskBoardError(f"requesting tasks on {name} needs a key: set chains.{name}.sender")
        elif role == "reader":
            key = None
        else:
            raise TaskBoardError(f"role must be 'worker', 'requester' or 'reader', not {role!r}")
        return cls(name, chain, key, **options)

    @property
    def account(self) -> LocalAccount | None:
        return self._evm.account

    async def close(self) -> None:
        await self._evm.close()

    async def fee(self) -> int:
        return await self._evm.fee()

    # --- reading ---------------------------------------------------------------------------

    async def _view(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        function = getattr(self._board.functions, fn)(*args)
        data = function._encode_transaction_data()
        raw = await self._evm._call(
            f"eth_call {fn}",
            lambda w3: rpc.eth_call(w3, {"to": self.board_address, "data": data}, block),
        )
        if not raw:
            raise TaskBoardError(f"no {self.CONTRACT} contract at {self.board_address} on {self.name}; check the config")
        values = abi_decode([_abi_type(o) for o in function.abi["outputs"]], bytes(raw))
        return values[0] if len(values) == 1 else values

    async def _logs(self, address: str, from_block: int, to_block: int, topics: list[Any]) -> list[Any]:
        params = {"address": address, "fromBlock": from_block, "toBlock": to_block, "topics": topics}
        logs = await self._evm._call("eth_getLogs", lambda w3: rpc.get_logs(w3, params))
        return sorted((e for e in logs if not e.get("removed")), key=lambda e: (e["blockNumber"], e["logIndex"]))

    # --- transactions ----------------------------------------------------------------------

    async def _transact(self, function: Any, value: int, action: str, refusal: type[BoardRefused]) -> Any:
        """Estimates (a refusal raises with the decoded reason, nothing sent), sends, waits for the
        receipt; a transaction that still reverted (a race inside one block) raises the same way."""
        txs = self._evm.tx
        try:
            tx = await txs.transaction(self.board_address, function._encode_transaction_data(), value)
        except ContractLogicError as exc:
            raise board_refusal(refusal, action, decode_revert(self._errors, revert_data(exc))) from None
        sent = await txs.send(tx)
        try:
            mined = await txs.wait(sent, self.receipt_timeout)
        except TxNotMined:
            raise TransactionNotMined(action, sent.latest, self.receipt_timeout) from None
        receipt = mined.receipt
        if receipt["status"] != 1:
            reason = f"transaction {mined.tx_hash} reverted (gas used {receipt['gasUsed']})"
            # Replayed on the state after its block: a race lost to another transaction in that
            # block reads as what beat it (e.g. ResultAlreadySubmitted, AlreadyClaimed).
            reverted, revert = await txs.replay(sent.tx, int(receipt["blockNumber"]))
            if reverted:
                reason = decode_revert(self._errors, revert)
            raise board_refusal(refusal, action, reason)
        return receipt

    def _sent_envelope(self, receipt: Any, payload: bytes) -> Envelope:
        """The envelope of the gateway's MessageSent in `receipt` (what the board sent in it)."""
        tx = to_hex(receipt["transactionHash"])
        for entry in receipt["logs"]:
            if (to_checksum_address(entry["address"]) == self._evm.gateway_address and entry["topics"]
                    and to_hex(entry["topics"][0]) == self._evm._topic_sent):
                observation = self._evm._observation(entry, str(receipt["blockNumber"]))
                if observation is None:
                    continue
                envelope = observation.envelope
                if envelope.payload != payload:
                    _log().error("the board encoded the payload differently from relay.tasks.payloads",
                                 chain=self.name, tx=tx, sent=envelope.payload.hex(), expected=payload.hex())
                return envelope
        raise TaskBoardError(f"transaction {tx} emitted no valid MessageSent: is {self.board_address} a "
                             f"{self.CONTRACT} bound to the gateway {self._evm.gateway_address}?")

    # --- watching --------------------------------------------------------------------------

    async def _received(self, cursor: str | None) -> AsyncIterator[tuple[Any, Envelope]]:
        """(TaskReceived log, rebuilt TASK_REQUEST envelope) in final blocks, in (block, log index)
        order, after `cursor` ("block:logIndex" of the last one handled); polls forever (woken
        early by a newHeads subscription when ws_urls are set; the poll stays the source of truth)."""
        after = parse_cursor(cursor)
        next_block = after[0] if after is not None else self._evm.start_block
        outage = 0
        self._evm._ensure_head_subscription()
        while True:
            self._evm._wake.clear()  # before the pass: a head announced during it wakes the next one
            try:
                final = await self._evm.final_block()
                while next_block <= final:
                    to_block = min(final, next_block + self._evm.log_range - 1)
                    for entry, envelope in await self._received_in(next_block, to_block, after):
                        yield entry, envelope
                        after = (int(entry["blockNumber"]), int(entry["logIndex"]))
                    next_block = to_block + 1
                outage = 0
            except AllEndpointsFailed as exc:
                outage += 1
                delay = min(30.0, self.poll_interval * 2**outage)
                _log().error("request watch paused: no endpoint answers", chain=self.name, next_block=next_block,
                             error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
            await wait_event(self._evm._wake, self.poll_interval)

    async def _received_in(self, from_block: int, to_block: int,
                           after: tuple[int, int] | None) -> list[tuple[Any, Envelope]]:
        logs = [e for e in await self._logs(self.board_address, from_block, to_block, [self._topic_received])
                if after is None or (int(e["blockNumber"]), int(e["logIndex"])) > after]
        if not logs:
            return []
        delivered = await self._logs(self._evm.gateway_address, from_block, to_block, [self._evm._topic_delivered])
        nonces = {(to_hex(e["transactionHash"]), bytes(e["topics"][1])): e for e in delivered if len(e["topics"]) == 3}
        out = []
        for entry in logs:
            envelope = await self._rebuilt_request(entry, nonces)
            if envelope is not None:
                out.append((entry, envelope))
        return out

    async def _rebuilt_request(self, entry: Any, delivered: dict[tuple[str, bytes], Any]) -> Envelope | None:
        """The envelope a TaskReceived log stands for: source domain and board and payload from the
        event, the nonce from the gateway's MessageDelivered for the same id (same transaction or,
        for a delivery handled by retryFailed, the original one); None (logged) when inconsistent."""
        tx = to_hex(entry["transactionHash"])
        block, index = int(entry["blockNumber"]), int(entry["logIndex"])
        where = {"chain": self.name, "tx": tx, "block": block, "log_index": index}
        topics = [bytes(t) for t in entry["topics"]]
        if len(topics) != 3:
            _log().warning("skipping a TaskReceived log with unexpected topics", **where)
            return None
        request_id, src_domain = topics[1], int.from_bytes(topics[2], "big")
        fields = dict(zip(self._received_names, abi_decode(self._received_types, bytes(entry["data"]))))
        event = delivered.get((tx, request_id))
        if event is None:
            # Handled by Gateway.retryFailed: MessageDelivered is in the first (failed) delivery's transaction.
            event = await self._delivered_event(request_id, block)
        if event is None:
            _log().error("skipping TaskReceived without a MessageDelivered for it", request=request_id.hex(), **where)
            return None
        (nonce, _handled) = abi_decode(["uint64", "bool"], bytes(event["data"]))
        try:
            envelope = Envelope(MessageKind.TASK_REQUEST, nonce, src_domain, bytes(fields["srcBoard"]), self.domain,
                                self.address, bytes(fields["payload"]))
        except EnvelopeError as exc:
            _log().error("skipping TaskReceived whose envelope does not encode", error=str(exc), **where)
            return None
        if envelope.message_id != request_id:
            # The event and the gateway disagree: a wrong board/gateway pairing or a contract bug.
            _log().error("skipping TaskReceived whose rebuilt envelope has another message id",
                         request=request_id.hex(), rebuilt=envelope.message_id.hex(), **where)
            return None
        return envelope

    async def _delivered_event(self, message_id: bytes, at_or_before: int) -> Any | None:
        async for logs in self._evm._scan_newest_first(at_or_before, [self._evm._topic_delivered, to_hex(message_id)]):
            if logs:
                return logs[0]
        return None


# --- v2 -------------------------------------------------------------------------------------

_TASK_STATE_V2 = {0: TaskState.NONE, 1: TaskState.OPEN, 2: TaskState.COMPLETED, 3: TaskState.REFUNDED}


class EvmTaskBoardV2(_EvmBoard):
    """Both roles of TaskBoardV2 on one EVM chain (relay.interfaces.ServingBoardV2 and RequesterBoardV2;
    contracts in their docstrings). The serving side claims with `msg.value` = the request's bond and
    submits paying `Gateway.fee()`; the requester side escrows exactly max_fee and pays the gateway
    fee above it."""

    CONTRACT = TASK_BOARD_V2

    def __init__(self, name: str, chain: EvmChain, private_key: str | None, **options: Any) -> None:
        super().__init__(name, chain, private_key, **options)
        signer = self._evm.account
        self._account = address_to_bytes32(signer.address) if signer is not None else bytes(32)
        self._grace: int | None = None

    @property
    def account(self) -> bytes:  # type: ignore[override]
        """The claimant / requester account, 32 bytes (zero for a read-only board)."""
        return self._account

    # --- both sides ------------------------------------------------------------------------

    async def wallet_balances(self) -> dict[str, int]:
        return await self._evm.wallet_balances()

    async def chain_time(self) -> int:
        block = await self._evm._call("eth_getBlockByNumber(latest)", lambda w3: w3.eth.get_block("latest"))
        return int(block["timestamp"])

    async def settlement_grace(self) -> int:
        if self._grace is None:  # immutable in the contract
            self._grace = int(await self._view("settlementGrace"))
        return self._grace

    async def withdraw(self, request_id: bytes | None = None) -> str | None:
        """The account's credits (transfers the handler could not make), whatever the task."""
        account = self._signer_address()
        if not await self._view("credits", account):
            return None
        receipt = await self._transact(self._board.functions.withdraw(account), 0,
                                       f"withdrawing the credits of {account}", BondRefused)
        return to_hex(receipt["transactionHash"])

    def _signer_address(self) -> str:
        signer = self._evm.account
        if signer is None:
            raise TaskBoardError(f"this {self.CONTRACT} board on {self.name} is read-only: it has no key to send with")
        return signer.address

    # --- serving side ----------------------------------------------------------------------

    async def watch_requests(self, cursor: str | None) -> AsyncIterator[IncomingRequestV2]:
        """TaskReceived v2 events in final blocks, in (block, log index) order, after `cursor`
        ("block:logIndex"); the auction start is the delivering block's time (what the board took)."""
        async for entry, envelope in self._received(cursor):
            block, index = int(entry["blockNumber"]), int(entry["logIndex"])
            try:
                request = TaskRequestV2.decode(envelope.payload)
            except (EnvelopeError, TaskPayloadError) as exc:
                _log().error("skipping TaskReceived whose payload is not a TASK_REQUEST v2", error=str(exc),
                             chain=self.name, block=block, log_index=index)
                continue
            auction_start = await self._evm._block_time(block)
            if auction_start is None:  # the node lost a final block: read the board's own record
                auction_start = (await self.claim_status(envelope.message_id)).auction_start
            yield IncomingRequestV2(request_id=envelope.message_id, envelope=envelope, request=request,
                                    auction_start=auction_start, delivery_tx=to_hex(entry["transactionHash"]),
                                    position=block, cursor=f"{block}:{index}")

    async def current_price(self, request_id: bytes) -> int:
        request_id = _request_id(request_id)
        try:
            return int(await self._view("currentPrice", request_id))
        except ContractLogicError as exc:
            raise board_refusal(ClaimRefused, f"pricing request 0x{request_id.hex()}",
                                decode_revert(self._errors, revert_data(exc))) from None

    async def claim_status(self, request_id: bytes) -> ClaimStatus:
        request_id = _request_id(request_id)
        (src_domain, deadline, auction_start, auction_window, start_bps, claim_window, state, executor, max_fee,
         src_board, bond, price, refund_to, claimant, claim_deadline, payout, result_id) = await self._view(
            "servingOf", request_id)
        state = ServeState(state)
        if state is ServeState.NONE:
            return ClaimStatus(request_id=request_id, state=state)
        held = state in (ServeState.CLAIMED, ServeState.ANSWERED) or (
            state is ServeState.CLOSED and int(claimant, 16) != 0)
        return ClaimStatus(
            request_id=request_id, state=state, src_domain=int(src_domain), src_board=bytes(src_board),
            executor=decode_executor_id(bytes(executor)), deadline=int(deadline), auction_start=int(auction_start),
            auction_window=int(auction_window), start_bps=int(start_bps), claim_window=int(claim_window),
            max_fee=int(max_fee), bond=int(bond), refund_to=address_to_bytes32(refund_to),
            claimant=address_to_bytes32(claimant) if held else None,
            payout=bytes(payout) if held else None,
            price=int(price) if held else None,
            claim_deadline=int(claim_deadline) if held else None,
            result_id=bytes(result_id) if state is ServeState.ANSWERED else None,
        )

    async def claim(self, request_id: bytes, payout: bytes) -> Claim:
        request_id = _request_id(request_id)
        if not isinstance(payout, (bytes, bytearray)) or len(payout) != 32:
            raise ClaimRefused("the claim", "payout must be 32 bytes (an address on the requester's chain)",
                               board=_BOARD, error="ZeroPayout")
        self._signer_address()
        status = await self.claim_status(request_id)
        held = await self._held(status)
        if held is not None:
            return held
        action = f"claiming request 0x{request_id.hex()}"
        try:
            receipt = await self._transact(self._board.functions.claim(request_id, bytes(payout)), status.bond,
                                           action, ClaimRefused)
        except ClaimLost:
            # Our own earlier claim (a retry after a lost receipt) reads as AlreadyClaimed too.
            held = await self._held(await self.claim_status(request_id))
            if held is not None:
                return held
            raise
        topic = self._topic("TaskClaimed")
        for entry in receipt["logs"]:
            if (to_checksum_address(entry["address"]) == self.board_address and entry["topics"]
                    and to_hex(entry["topics"][0]) == topic):
                payout_, price, claim_deadline, bond = abi_decode(["bytes32", "uint256", "uint64", "uint256"],
                                                                  bytes(entry["data"]))
                tx = to_hex(receipt["transactionHash"])
                _log().info("task claimed", chain=self.name, request=request_id.hex(), price=price,
                            claim_deadline=claim_deadline, tx=tx)
                return Claim(request_id=request_id, claimant=self.account, payout=bytes(payout_), price=int(price),
                             claim_deadline=int(claim_deadline), bond=int(bond), tx=tx)
        raise TaskBoardError(f"claim transaction {to_hex(receipt['transactionHash'])} emitted no TaskClaimed")

    async def _held(self, status: ClaimStatus) -> Claim | None:
        """The running claim, when this account holds it and it has not run out."""
        if (status.state is not ServeState.CLAIMED or status.claimant != self.account
                or status.claim_deadline is None or status.claim_deadline < await self.chain_time()):
            return None
        assert status.payout is not None and status.price is not None
        return Claim(request_id=status.request_id, claimant=self.account, payout=status.payout, price=status.price,
                     claim_deadline=status.claim_deadline, bond=status.bond, tx=None)

    async def submit_result(self, request_id: bytes, result_payload: bytes) -> str:
        request_id = _request_id(request_id)
        try:
            result = TaskResultV2.decode(bytes(result_payload))
        except (TaskPayloadError, EnvelopeError) as exc:
            raise ResultRefused("the result", f"malformed TASK_RESULT v2: {exc}", "fix the payload encoding",
                                board=_BOARD) from None
        if result.request_id != request_id:
            raise ResultRefused(
                "the result", f"the payload answers request 0x{result.request_id.hex()}, not 0x{request_id.hex()}",
                "submit it for the request it names", board=_BOARD)
        if result.claimant != self.account:
            raise ResultRefused(
                "the result", f"the payload names claimant 0x{result.claimant.hex()}, but this board sends as "
                f"0x{self.account.hex()}", "sign the result for the account that claimed", board=_BOARD,
                error="ClaimMismatch")
        fee = await self._evm.fee()
        receipt = await self._transact(self._board.functions.submitResult(bytes(result_payload)), fee,
                                       f"the result for request 0x{request_id.hex()}", ResultRefused)
        tx = to_hex(receipt["transactionHash"])
        _log().info("task result submitted", chain=self.name, request=request_id.hex(), tx=tx, gas=receipt["gasUsed"])
        return tx

    async def expire_claim(self, request_id: bytes) -> str:
        request_id = _request_id(request_id)
        receipt = await self._transact(self._board.functions.expireClaim(request_id), 0,
                                       f"expiring the claim on 0x{request_id.hex()}", BondRefused)
        return to_hex(receipt["transactionHash"])

    async def release_bond(self, request_id: bytes) -> str:
        request_id = _request_id(request_id)
        receipt = await self._transact(self._board.functions.releaseBond(request_id), 0,
                                       f"releasing the bond of 0x{request_id.hex()}", BondRefused)
        return to_hex(receipt["transactionHash"])

    # --- requester side --------------------------------------------------------------------

    async def request_task(self, *, dst_domain: int, worker_board: bytes, request: TaskRequestV2) -> SentRequest:
        if len(worker_board) != 32:
            raise TaskBoardError("worker_board must be 32 bytes (left-pad an EVM address with 12 zero bytes)")
        terms = (request.auction_window, request.start_bps, request.claim_window, request.bond, request.refund_to)
        if request.input is not None:
            function = self._board.functions.requestTask(
                dst_domain, bytes(worker_board), request.executor, request.input, request.max_fee, request.deadline,
                terms)
        else:
            function = self._board.functions.requestTaskByReference(
                dst_domain, bytes(worker_board), request.executor, request.input_hash, request.input_uri,
                request.max_fee, request.deadline, terms)
        fee = await self._evm.fee()  # fixed in this transaction: a raise meanwhile reverts, never takes escrow
        receipt = await self._transact(function, fee + request.max_fee, "the task request", RequestRefused)
        envelope = self._sent_envelope(receipt, request.encode())
        return SentRequest(request_id=envelope.message_id, envelope=envelope, tx=to_hex(receipt["transactionHash"]))

    async def task_status(self, request_id: bytes) -> TaskStatusV2:
        request_id = _request_id(request_id)
        requester, deadline, dst_domain, max_fee, executor, worker_board, state = await self._view("taskOf",
                                                                                                   request_id)
        state = _TASK_STATE_V2[int(state)]
        if state is TaskState.NONE:
            return TaskStatusV2(request_id=request_id, state=state)
        status = TaskStatusV2(
            request_id=request_id, state=state, requester=address_to_bytes32(requester), dst_domain=int(dst_domain),
            worker_board=bytes(worker_board), executor=decode_executor_id(bytes(executor)), deadline=int(deadline),
            max_fee=int(max_fee), refundable_after=int(deadline) + await self.settlement_grace(),
        )
        if state is TaskState.REFUNDED:
            return dataclasses.replace(status, refund=int(max_fee))
        if state is TaskState.COMPLETED:
            completed = await self._completed_event(request_id)
            if completed is not None:
                result_id, payout, price, refund = completed
                return dataclasses.replace(status, result_id=result_id, payout=payout, price=price, refund=refund)
        return status

    async def _completed_event(self, request_id: bytes) -> tuple[bytes, bytes, int, int] | None:
        """(result id, payout, price, refund) from the board's TaskCompleted, newest blocks first."""
        topics = [self._topic("TaskCompleted"), to_hex(request_id)]
        to_block = await self._evm._call("eth_blockNumber", lambda w3: w3.eth.block_number)
        while to_block >= self._evm.start_block:
            from_block = max(self._evm.start_block, to_block - self._evm.log_range + 1)
            for entry in await self._logs(self.board_address, from_block, to_block, topics):
                price, refund = abi_decode(["uint256", "uint256"], bytes(entry["data"]))
                return (bytes(entry["topics"][2]), bytes(entry["topics"][3]), int(price), int(refund))
            to_block = from_block - 1
        return None

    async def result_recorded(self, result_id: bytes) -> bool:
        record = await self._view("resultOf", _request_id(result_id))
        return bool(record[4])

    async def reclaim(self, request_id: bytes) -> str:
        request_id = _request_id(request_id)
        receipt = await self._transact(self._board.functions.reclaim(request_id), 0,
                                       f"reclaiming task 0x{request_id.hex()}", ReclaimRefused)
        return to_hex(receipt["transactionHash"])


def _abi_type(output: dict[str, Any]) -> str:
    """An ABI output's type for eth_abi, with structs as tuples of their components."""
    kind = output["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in output["components"]) + ")" + kind[len("tuple"):]
    return kind


def _request_id(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise TaskBoardError("a request id is the 32-byte message id of the TASK_REQUEST envelope")
    return bytes(value)


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    if cursor is None:
        return None
    try:
        block, index = cursor.split(":")
        return int(block), int(index)
    except ValueError:
        raise TaskBoardError(f"cursor {cursor!r} is not 'block:logIndex'; pass the cursor of an IncomingRequestV2") from None


def _check_key(key: str) -> str:
    key = key.strip()
    key = key if key.startswith("0x") else "0x" + key
    try:
        Account.from_key(key)
    except Exception:  # noqa: BLE001 - any parse failure means the same thing to the user
        raise TaskBoardError("the worker's EVM key must be a 32-byte hex private key (0x + 64 hex digits)") from None
    return key


# --- deployment -------------------------------------------------------------------------------


async def deploy_task_board_v2(
    w3: AsyncWeb3, account: LocalAccount | str, gateway: str, *, attestation_domain: int = 0,
    attestation_sender: bytes = b"\x00" * 32, settlement_grace: int = DEFAULT_SETTLEMENT_GRACE,
) -> str:
    """Deploys a TaskBoardV2 bound to `gateway`. Verdicts count only from (attestation_domain,
    attestation_sender): (0, zero) is the committee. `settlement_grace`: seconds after a deadline
    before reclaim and releaseBond open (the contract's default is 1800; the localnet uses 300)."""
    return await deploy(
        w3, account, TASK_BOARD_V2, to_checksum_address(gateway), attestation_domain, bytes(attestation_sender),
        settlement_grace,
    )
