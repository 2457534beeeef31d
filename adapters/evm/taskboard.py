"""The EVM task board (contracts/evm/src/TaskBoard.sol) seen through web3.py: both roles of
relay/tasks/board.py on one chain.

* serving side (`ServingBoard`): `watch_requests` follows `TaskReceived` events in final blocks
  (the chain's `confirmations`, as the gateway watcher does) and rebuilds the delivered envelope
  from the event and the gateway's `MessageDelivered` nonce; `submit_result` calls
  `TaskBoard.submitResult` paying the gateway fee.
* requester side (`RequesterBoard`): `request_task` escrows `max_fee` and sends the TASK_REQUEST
  (the envelope comes from the gateway's `MessageSent` in the receipt); `task_status` reads the
  `tasks()` getter; `reclaim` refunds an expired task.

Transactions go through an internal `EvmAdapter`'s transaction manager (adapters/evm/tx.py: endpoint
pool with failover, one nonce counter behind a lock, EIP-1559 fees), so a board must own its key: the worker passes its own account,
the requester uses `chains.<name>.sender` — never the relayer's signer, whose nonces the relayer
manages in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from adapters.evm.rpc import decode_revert, error_entries, revert_data, to_hex
from adapters.evm.tx import TxNotMined
from relay.config import EvmChain, KeyRef
from relay.envelope import Envelope, EnvelopeError, address_to_bytes32
from relay.interfaces import IncomingRequest, SentRequest, TaskState, TaskStatus
from relay.log import get_logger
from relay.protocol import MessageKind
from relay.tasks.board import (BoardRefused, ReclaimRefused, RequestExpired, RequestRefused, ResultAlreadySubmitted,
                               ResultRefused, TaskBoardError)
from relay.tasks.payloads import TaskPayloadError, TaskRequest, TaskResult, decode_executor_id

TASK_BOARD = "TaskBoard"
POLL_INTERVAL = 0.25  # seconds between polls for new final TaskReceived events
RECEIPT_TIMEOUT = 60.0
DEFAULT_ATTESTATION_GRACE = 300  # seconds; what `relay localnet up` deploys with

Role = Literal["worker", "requester"]


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
    def __init__(self, chain: str) -> None:
        super().__init__(
            f"chains.{chain}.contracts has no TaskBoard address: deploy it (`relay localnet up` does, or "
            f"adapters.evm.taskboard.deploy_task_board) and add `TaskBoard = \"0x…\"` under [chains.{chain}.contracts]"
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
}


def board_refusal(cls: type[BoardRefused], action: str, reason: str) -> BoardRefused:
    name = reason.split("(", 1)[0]
    if cls is ResultRefused:
        cls = {"ResultAlreadySubmitted": ResultAlreadySubmitted, "RequestExpired": RequestExpired}.get(name, cls)
    return cls(action, reason, _HINTS.get(name, ""), board=_BOARD)


# --- the board ------------------------------------------------------------------------------


class EvmTaskBoard:
    """Both roles of the task board on one EVM chain (relay.interfaces.ServingBoard and RequesterBoard)."""

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
        address = chain.contracts.get(TASK_BOARD)
        if address is None:
            raise TaskBoardNotConfigured(name)
        self.name = name
        self.domain = chain.domain
        self.board_address = to_checksum_address(address)
        self.address = address_to_bytes32(self.board_address)
        self.poll_interval = poll_interval
        self.receipt_timeout = receipt_timeout
        # The adapter brings the endpoint pool, finality, nonces and fees; its own watcher is unused.
        self._evm = EvmAdapter(name, chain, private_key, start_block=start_block, poll_interval=poll_interval,
                               log_range=log_range, rpc_timeout=rpc_timeout)
        self.abi = load_artifact(TASK_BOARD).abi
        self._board = AsyncWeb3().eth.contract(address=self.board_address, abi=self.abi)  # offline: encode/decode
        self._errors = self.abi + error_entries(self._evm.abi)
        events = {e["name"]: e for e in self.abi if e.get("type") == "event"}
        self._received_abi = events["TaskReceived"]
        self._topic_received = to_hex(event_abi_to_log_topic(self._received_abi))
        self._received_types = [i["type"] for i in self._received_abi["inputs"] if not i["indexed"]]

    @classmethod
    def connect(
        cls, rpc_url: str, *, domain: int, chain_id: int, gateway: str, board: str, private_key: str | None,
        confirmations: int | None = 0, name: str = "evm", **options: Any,
    ) -> "EvmTaskBoard":
        """Without a config file: one endpoint, the two contract addresses and a key (tests, scripts)."""
        chain = EvmChain(kind="evm", domain=domain, chain_id=chain_id, rpc_urls=[rpc_url], confirmations=confirmations,
                         contracts={"Gateway": gateway, TASK_BOARD: board})
        return cls(name, chain, private_key, **options)

    @classmethod
    def from_config(
        cls, name: str, chain: EvmChain, role: Role = "requester", *, worker_key: str | KeyRef | None = None,
        **options: Any,
    ) -> "EvmTaskBoard":
        """The board of `[chains.<name>]` for one role: "requester" signs with the chain's `sender`
        (else `signer`, as the SDK does); "worker" with `worker_key` (a hex private key, or a KeyRef
        such as `[worker] evm_key`), never the relayer's signer."""
        if role == "worker":
            if not worker_key:
                raise TaskBoardError(
                    f"the worker's board on {name} needs the worker's own EVM private key: pass worker_key= "
                    "or set [worker] evm_key (file = ... or env = ...); the relayer's signer must not be shared"
                )
            key = _check_key(worker_key.read_text() if isinstance(worker_key, KeyRef) else worker_key)
        elif role == "requester":
            field = "sender" if chain.sender is not None else "signer"
            key = evm_key(getattr(chain, field), f"chains.{name}.{field}")
            if key is None:
                raise TaskBoardError(f"requesting tasks on {name} needs a key: set chains.{name}.sender")
        else:
            raise TaskBoardError(f"role must be 'worker' or 'requester', not {role!r}")
        return cls(name, chain, key, **options)

    @property
    def account(self) -> LocalAccount | None:
        return self._evm.account

    async def close(self) -> None:
        await self._evm.close()

    # --- reading ---------------------------------------------------------------------------

    async def _view(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        function = getattr(self._board.functions, fn)(*args)
        data = function._encode_transaction_data()
        raw = await self._evm._call(
            f"eth_call {fn}",
            lambda w3: w3.eth.call({"to": self.board_address, "data": data}, block_identifier=block),
        )
        if not raw:
            raise TaskBoardError(f"no TaskBoard contract at {self.board_address} on {self.name}; check the config")
        values = abi_decode([o["type"] for o in function.abi["outputs"]], bytes(raw))
        return values[0] if len(values) == 1 else values

    async def result_submitted(self, request_id: bytes) -> bool:
        return bool(await self._view("resultAnswered", _request_id(request_id)))

    async def fee(self) -> int:
        return await self._evm.fee()

    async def task_status(self, request_id: bytes) -> TaskStatus:
        (requester, deadline, _dst, escrow, executor, _board, state, payout, result_id, output_hash,
         worker) = await self._view("tasks", _request_id(request_id))
        state = TaskState(state)
        has_result = state in (TaskState.RESULT_RECEIVED, TaskState.COMPLETED) or result_id != b"\x00" * 32
        return TaskStatus(
            request_id=bytes(request_id),
            state=state,
            requester=address_to_bytes32(requester),
            deadline=int(deadline),
            escrow=int(escrow),
            executor=decode_executor_id(bytes(executor)) if state is not TaskState.NONE else "",
            result_id=bytes(result_id) if has_result else None,
            output_hash=bytes(output_hash) if has_result else None,
            worker=bytes(worker) if has_result else None,
            payout=address_to_bytes32(payout) if has_result else None,
        )

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
            # block reads as what beat it (e.g. ResultAlreadySubmitted).
            reverted, revert = await txs.replay(sent.tx, int(receipt["blockNumber"]))
            if reverted:
                reason = decode_revert(self._errors, revert)
            raise board_refusal(refusal, action, reason)
        return receipt

    async def submit_result(self, request_id: bytes, result_payload: bytes) -> str:
        request_id = _request_id(request_id)
        try:
            result = TaskResult.decode(bytes(result_payload))
        except (TaskPayloadError, EnvelopeError) as exc:
            raise ResultRefused("the result", f"malformed TASK_RESULT: {exc}", "fix the payload encoding",
                                board=_BOARD) from None
        if result.request_id != bytes(request_id):
            raise ResultRefused(
                "the result", f"the payload answers request 0x{result.request_id.hex()}, not 0x{bytes(request_id).hex()}",
                "submit it for the request it names", board=_BOARD,
            )
        fee = await self._evm.fee()
        receipt = await self._transact(
            self._board.functions.submitResult(bytes(result_payload)), fee,
            f"the result for request 0x{bytes(request_id).hex()}", ResultRefused,
        )
        tx = to_hex(receipt["transactionHash"])
        _log().info("task result submitted", chain=self.name, request=bytes(request_id).hex(), tx=tx,
                    gas=receipt["gasUsed"])
        return tx

    async def request_task(self, *, dst_domain: int, worker_board: bytes, request: TaskRequest) -> SentRequest:
        if len(worker_board) != 32:
            raise TaskBoardError("worker_board must be 32 bytes (left-pad an EVM address with 12 zero bytes)")
        if request.input is not None:
            function = self._board.functions.requestTask(
                dst_domain, bytes(worker_board), request.executor, request.input, request.deadline)
        else:
            function = self._board.functions.requestTaskByReference(
                dst_domain, bytes(worker_board), request.executor, request.input_hash, request.input_uri,
                request.deadline)
        fee = await self._evm.fee()
        receipt = await self._transact(function, fee + request.max_fee, "the task request", RequestRefused)
        tx = to_hex(receipt["transactionHash"])
        for entry in receipt["logs"]:
            if (to_checksum_address(entry["address"]) == self._evm.gateway_address and entry["topics"]
                    and to_hex(entry["topics"][0]) == self._evm._topic_sent):
                observation = self._evm._observation(entry, str(receipt["blockNumber"]))
                if observation is None:
                    continue
                envelope = observation.envelope
                if envelope.payload != request.encode():
                    _log().error("the board encoded the request differently from relay.tasks.payloads",
                                 chain=self.name, tx=tx, sent=envelope.payload.hex(), expected=request.encode().hex())
                return SentRequest(request_id=envelope.message_id, envelope=envelope, tx=tx)
        raise TaskBoardError(f"transaction {tx} emitted no valid MessageSent: is {self.board_address} a TaskBoard "
                             f"bound to the gateway {self._evm.gateway_address}?")

    async def reclaim(self, request_id: bytes) -> str:
        request_id = _request_id(request_id)
        receipt = await self._transact(
            self._board.functions.reclaim(bytes(request_id)), 0, f"reclaiming task 0x{bytes(request_id).hex()}",
            ReclaimRefused,
        )
        return to_hex(receipt["transactionHash"])

    # --- watching --------------------------------------------------------------------------

    async def watch_requests(self, cursor: str | None) -> AsyncIterator[IncomingRequest]:
        """TaskReceived events in final blocks, in (block, log index) order, after `cursor`
        ("block:logIndex" of the last one handled); polls forever."""
        after = parse_cursor(cursor)
        next_block = after[0] if after is not None else self._evm.start_block
        outage = 0
        # With ws_urls, a newHeads subscription wakes the poll early; the poll stays the source of truth.
        self._evm._ensure_head_subscription()
        while True:
            self._evm._wake.clear()  # before the pass: a head announced during it wakes the next one
            try:
                final = await self._evm.final_block()
                while next_block <= final:
                    to_block = min(final, next_block + self._evm.log_range - 1)
                    for incoming in await self._incoming(next_block, to_block, after):
                        yield incoming
                        after = parse_cursor(incoming.cursor)
                    next_block = to_block + 1
                outage = 0
            except AllEndpointsFailed as exc:
                outage += 1
                delay = min(30.0, self.poll_interval * 2**outage)
                _log().error("request watch paused: no endpoint answers", chain=self.name, next_block=next_block,
                             error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._evm._wake.wait(), self.poll_interval)

    async def _logs(self, address: str, from_block: int, to_block: int, topics: list[Any]) -> list[Any]:
        params = {"address": address, "fromBlock": from_block, "toBlock": to_block, "topics": topics}
        logs = await self._evm._call("eth_getLogs", lambda w3: w3.eth.get_logs(params))
        return sorted((e for e in logs if not e.get("removed")), key=lambda e: (e["blockNumber"], e["logIndex"]))

    async def _incoming(self, from_block: int, to_block: int, after: tuple[int, int] | None) -> list[IncomingRequest]:
        logs = [e for e in await self._logs(self.board_address, from_block, to_block, [self._topic_received])
                if after is None or (int(e["blockNumber"]), int(e["logIndex"])) > after]
        if not logs:
            return []
        delivered = await self._logs(self._evm.gateway_address, from_block, to_block, [self._evm._topic_delivered])
        nonces = {(to_hex(e["transactionHash"]), bytes(e["topics"][1])): e for e in delivered if len(e["topics"]) == 3}
        out = []
        for entry in logs:
            incoming = await self._incoming_request(entry, nonces)
            if incoming is not None:
                out.append(incoming)
        return out

    async def _incoming_request(self, entry: Any, delivered: dict[tuple[str, bytes], Any]) -> IncomingRequest | None:
        tx = to_hex(entry["transactionHash"])
        block, index = int(entry["blockNumber"]), int(entry["logIndex"])
        where = {"chain": self.name, "tx": tx, "block": block, "log_index": index}
        topics = [bytes(t) for t in entry["topics"]]
        if len(topics) != 3:
            _log().warning("skipping a TaskReceived log with unexpected topics", **where)
            return None
        request_id, src_domain = topics[1], int.from_bytes(topics[2], "big")
        src_board, _executor, _deadline, payload = abi_decode(self._received_types, bytes(entry["data"]))
        event = delivered.get((tx, request_id))
        if event is None:
            # Handled by Gateway.retryFailed: MessageDelivered is in the first (failed) delivery's transaction.
            event = await self._delivered_event(request_id, block)
        if event is None:
            _log().error("skipping TaskReceived without a MessageDelivered for it", request=request_id.hex(), **where)
            return None
        (nonce, _handled) = abi_decode(["uint64", "bool"], bytes(event["data"]))
        try:
            envelope = Envelope(MessageKind.TASK_REQUEST, nonce, src_domain, bytes(src_board), self.domain, self.address,
                                bytes(payload))
            request = TaskRequest.decode(bytes(payload))
        except (EnvelopeError, TaskPayloadError) as exc:
            _log().error("skipping TaskReceived whose payload does not decode", error=str(exc), **where)
            return None
        if envelope.message_id != request_id:
            # The event and the gateway disagree: a wrong board/gateway pairing or a contract bug.
            _log().error("skipping TaskReceived whose rebuilt envelope has another message id",
                         request=request_id.hex(), rebuilt=envelope.message_id.hex(), **where)
            return None
        return IncomingRequest(request_id=request_id, envelope=envelope, request=request, delivery_tx=tx,
                               position=block, cursor=f"{block}:{index}")

    async def _delivered_event(self, message_id: bytes, at_or_before: int) -> Any | None:
        async for logs in self._evm._scan_newest_first(at_or_before, [self._evm._topic_delivered, to_hex(message_id)]):
            if logs:
                return logs[0]
        return None


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
        raise TaskBoardError(f"cursor {cursor!r} is not 'block:logIndex'; pass the cursor of an IncomingRequest") from None


def _check_key(key: str) -> str:
    key = key.strip()
    key = key if key.startswith("0x") else "0x" + key
    try:
        Account.from_key(key)
    except Exception:  # noqa: BLE001 - any parse failure means the same thing to the user
        raise TaskBoardError("the worker's EVM key must be a 32-byte hex private key (0x + 64 hex digits)") from None
    return key


# --- deployment -------------------------------------------------------------------------------


async def deploy_task_board(
    w3: AsyncWeb3, account: LocalAccount | str, gateway: str, *, attestation_domain: int = 0,
    attestation_sender: bytes = b"\x00" * 32, attestation_grace: int = DEFAULT_ATTESTATION_GRACE,
) -> str:
    """Deploys a TaskBoard bound to `gateway`. PROOF_ATTESTATIONs count only from
    (attestation_domain, attestation_sender): (0, zero) is the committee, which no chain can stamp."""
    return await deploy(
        w3, account, TASK_BOARD, to_checksum_address(gateway), attestation_domain, bytes(attestation_sender),
        attestation_grace,
    )
