"""Building, sending and confirming Solana transactions, once for the gateway adapter, the task
board, the feed target and deployment.

- send: a fresh blockhash (at `confirmed`), an optional compute-unit limit, signed by the payer
  (and any extra signers), sent as raw bytes through the endpoint pool. Re-sending the same signed
  bytes to another endpoint after a connection error is harmless: a validator executes one
  signature once. With preflight the node simulates first and a refusal raises
  `TransactionRefused` (program error and logs) without paying; without preflight a refused
  transaction lands failed and its status says why.
- confirm: polls the signature's status until it reached the wanted commitment; a failed
  transaction raises `TransactionRefused`; one the node does not know once the block height at
  that commitment passed its blockhash's last valid height raises `TransactionExpired` (it can
  never land); `ConfirmationTimeout` after `timeout` seconds.
- The last valid block height of every signature sent is remembered (in memory, bounded), so a
  caller can tell DROPPED from PENDING later (`last_valid_height`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from solana.rpc.commitment import Commitment, Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.commitment_config import CommitmentLevel
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.config import RpcSendTransactionConfig
from solders.rpc.requests import SendRawTransaction
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction

from adapters.solana.program import describe_transaction_error
from adapters.solana.rpc import (
    BadBatchAnswer,
    RawBody,
    SolanaAdapterError,
    SolanaRpc,
    commitment_level,
    confirmation_level,
)

__all__ = [
    "ConfirmationTimeout",
    "SentTransaction",
    "SolanaTransactor",
    "TransactionExpired",
    "TransactionRefused",
]

PACKET_DATA_SIZE = 1232  # the most bytes a Solana transaction may take (solana_sdk::packet::PACKET_DATA_SIZE)


def transaction_size(instructions: Sequence[Instruction], payer: Pubkey) -> int:
    """The serialized size of a legacy transaction of `instructions` paid (and signed) by `payer`,
    signatures included: what must stay within PACKET_DATA_SIZE."""
    return len(bytes(Transaction.new_unsigned(Message.new_with_blockhash(list(instructions), payer, Hash.default()))))


_REMEMBERED_BLOCKHASHES = 100_000
SEND_BATCH = 50  # sendTransaction requests per JSON-RPC batch in `send_many` (one HTTP round trip)
_STATUS_POLL_S = 0.1


class SentTransaction(NamedTuple):
    signature: Signature
    last_valid_block_height: int  # of its blockhash: past this height it can never land


class TransactionRefused(SolanaAdapterError):
    """The node refused the transaction in preflight (`signature` None), or it landed failed.
    `err` is the transaction error (`describe_transaction_error` reads it), `logs` the program
    logs when the node gave them."""

    def __init__(self, message: str, err: Any, logs: Sequence[str] = (), signature: Signature | None = None) -> None:
        super().__init__(message)
        self.err = err
        self.logs = list(logs)
        self.signature = signature


class TransactionExpired(SolanaAdapterError):
    """The transaction's blockhash expired before it landed: it never will; send it again."""


class ConfirmationTimeout(SolanaAdapterError):
    """The transaction did not reach the wanted commitment in time; it may still land."""


class SolanaTransactor:
    """Sends and confirms transactions paid by `payer` through `rpc`."""

    def __init__(self, rpc: SolanaRpc, payer: Keypair | None, *, name: str, no_payer_hint: str = "") -> None:
        self.rpc = rpc
        self.payer = payer
        self.name = name
        self.no_payer_hint = no_payer_hint or "build it with a funded keypair to send transactions"
        self._last_valid: dict[str, int] = {}
        self._refuses_batches: set[int] = set()  # ids of clients whose node answered a batch with one error

    def require_payer(self) -> Keypair:
        if self.payer is None:
            raise SolanaAdapterError(f"{self.name}: no keypair to pay for transactions: {self.no_payer_hint}")
        return self.payer

    async def wallet_balances(self) -> dict[str, int]:
        """{address: balance in lamports} of the fee payer; {} without one."""
        if self.payer is None:
            return {}
        key = self.payer.pubkey()
        return {str(key): (await self.rpc.call("getBalance", lambda c: c.get_balance(key, Confirmed))).value}

    def last_valid_height(self, signature: str) -> int | None:
        """The last valid block height of a signature this transactor sent; None when unknown
        (another process sent it, or this one restarted)."""
        return self._last_valid.get(signature)

    async def send(self, instructions: Sequence[Instruction], *, cu_limit: int | None = None,
                   signers: Sequence[Keypair] = (), preflight: bool = True) -> SentTransaction:
        """Signs and sends one transaction; does not wait for it (see `confirm`)."""
        payer = self.require_payer()
        if cu_limit is not None:
            instructions = [set_compute_unit_limit(cu_limit), *instructions]
        latest = (await self.rpc.call("getLatestBlockhash", lambda c: c.get_latest_blockhash(Confirmed))).value
        tx = VersionedTransaction(Message.new_with_blockhash(list(instructions), payer.pubkey(), latest.blockhash),
                                  [payer, *signers])
        raw = bytes(tx)
        opts = TxOpts(skip_preflight=not preflight, preflight_commitment=Confirmed)
        try:
            signature = (await self.rpc.call("sendTransaction", lambda c: c.send_raw_transaction(raw, opts))).value
        except RPCException as exc:
            data = getattr(exc.args[0], "data", None) if exc.args else None
            err = getattr(data, "err", None)
            if err is None:
                raise
            raise TransactionRefused(f"{self.name}: the node refused the transaction: {describe_transaction_error(err)}",
                                     err, list(getattr(data, "logs", None) or [])) from None
        self._last_valid[str(signature)] = latest.last_valid_block_height
        while len(self._last_valid) > _REMEMBERED_BLOCKHASHES:
            del self._last_valid[next(iter(self._last_valid))]  # the oldest: long settled
        return SentTransaction(signature, latest.last_valid_block_height)

    async def send_many(self, transactions: Sequence[tuple[Sequence[Instruction], int | None]]
                        ) -> list[SentTransaction | Exception]:
        """Signs and sends many transactions (instructions, compute-unit limit) paid by the payer,
        without preflight and without waiting: one getLatestBlockhash for all of them, and the signed
        bytes sent SEND_BATCH per JSON-RPC batch (one HTTP round trip each; a node refusing batches is
        sent them one by one). Per transaction, in order: what was sent, or the error the node gave
        for it. The transactions must differ (two identical ones with one blockhash are one
        signature). Re-sending the batch to another endpoint after a failure is harmless: a
        validator executes one signature once."""
        payer = self.require_payer()
        if not transactions:
            return []
        latest = (await self.rpc.call("getLatestBlockhash", lambda c: c.get_latest_blockhash(Confirmed))).value
        signed: list[VersionedTransaction] = []
        for instructions, cu_limit in transactions:
            if cu_limit is not None:
                instructions = [set_compute_unit_limit(cu_limit), *instructions]
            signed.append(VersionedTransaction(
                Message.new_with_blockhash(list(instructions), payer.pubkey(), latest.blockhash), [payer]))
        if len({tx.signatures[0] for tx in signed}) != len(signed):
            raise SolanaAdapterError(f"{self.name}: send_many was given identical transactions (one signature)")
        chunks = [signed[i:i + SEND_BATCH] for i in range(0, len(signed), SEND_BATCH)]
        answers = await asyncio.gather(*(self.rpc.call("sendTransaction (batch)", lambda c, chunk=chunk:
                                                       self._send_chunk(c, chunk)) for chunk in chunks),
                                       return_exceptions=True)
        results: list[SentTransaction | Exception] = []
        for chunk, answer in zip(chunks, answers):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer
                results += [answer] * len(chunk)
                continue
            for tx, error in zip(chunk, answer):
                if error is not None:
                    results.append(error)
                    continue
                signature = tx.signatures[0]
                self._last_valid[str(signature)] = latest.last_valid_block_height
                results.append(SentTransaction(signature, latest.last_valid_block_height))
        while len(self._last_valid) > _REMEMBERED_BLOCKHASHES:
            del self._last_valid[next(iter(self._last_valid))]
        return results

    async def _send_chunk(self, client: Any, chunk: Sequence[VersionedTransaction]) -> list[Exception | None]:
        """One JSON-RPC batch of sendTransaction (skip preflight): per transaction None (accepted) or
        the node's error for it. A node answering the batch with one error object or an HTTP 4xx is
        sent the transactions one by one (from then on, for this client)."""
        config = RpcSendTransactionConfig(skip_preflight=True, preflight_commitment=CommitmentLevel.Confirmed)
        if len(chunk) == 1 or id(client) in self._refuses_batches:
            return await self._send_one_by_one(client, chunk)
        body = "[" + ",".join(SendRawTransaction(bytes(tx), config, i).to_json() for i, tx in enumerate(chunk)) + "]"
        try:
            raw = await client._provider.make_request_unparsed(RawBody(body))
            answer = json.loads(raw)
        except ValueError:
            raise BadBatchAnswer(f"{self.name}: a sendTransaction batch was answered with invalid JSON") from None
        except Exception as exc:  # noqa: BLE001 - only a 4xx (a proxy refusing batches) is not the transport's
            status = getattr(getattr(getattr(exc, "__cause__", None), "response", None), "status_code", None)
            if status is None or not 400 <= status < 500 or status == 429:
                raise
            answer = None
        if not isinstance(answer, list):
            self._refuses_batches.add(id(client))
            return await self._send_one_by_one(client, chunk)
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        # One answer per request, each id once: a repeated id (one "accepted", one "refused" for the
        # same transaction) or an extra item is no answer to each request.
        if (len(answer) != len(chunk) or len(by_id) != len(chunk)
                or sorted(k for k in by_id if type(k) is int) != list(range(len(chunk)))):  # noqa: E721 - True is no id
            raise BadBatchAnswer(f"{self.name}: a batch of {len(chunk)} sendTransaction requests was answered with "
                                 f"ids {list(by_id)[:10]}")
        out: list[Exception | None] = []
        for i, tx in enumerate(chunk):
            item = by_id[i]
            if "error" in item:
                error = item["error"] or {}
                out.append(SolanaAdapterError(f"{self.name}: the node refused transaction {tx.signatures[0]}: "
                                              f"{error.get('message', error)}"[:500]))
            elif item.get("result") != str(tx.signatures[0]):
                raise BadBatchAnswer(f"{self.name}: sendTransaction answered {item.get('result')!r} for "
                                     f"{tx.signatures[0]}")
            else:
                out.append(None)
        return out

    async def _send_one_by_one(self, client: Any, chunk: Sequence[VersionedTransaction]) -> list[Exception | None]:
        opts = TxOpts(skip_preflight=True, preflight_commitment=Confirmed)
        answers = await asyncio.gather(*(client.send_raw_transaction(bytes(tx), opts) for tx in chunk),
                                       return_exceptions=True)
        out: list[Exception | None] = []
        for answer in answers:
            if isinstance(answer, RPCException):
                out.append(SolanaAdapterError(f"{self.name}: the node refused a transaction: {answer}"[:500]))
            elif isinstance(answer, BaseException):
                raise answer  # the transport's: the pool fails over (the same bytes again: harmless)
            else:
                out.append(None)
        return out

    async def confirm(self, sent: SentTransaction, *, commitment: Commitment = Confirmed,
                      timeout: float = 60.0) -> Any:
        """The transaction's status once it reached `commitment` and succeeded; raises
        TransactionRefused (it failed), TransactionExpired or ConfirmationTimeout."""
        signature, last_valid = sent
        want = commitment_level(commitment)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.rpc.signature_status(signature)
            if status is not None and confirmation_level(status.confirmation_status) >= want:
                if status.err is not None:
                    raise TransactionRefused(
                        f"{self.name}: transaction {signature} failed: {describe_transaction_error(status.err)}",
                        status.err, signature=signature)
                return status
            if status is None and await self.rpc.block_height(commitment) > last_valid:
                raise TransactionExpired(f"{self.name}: {signature} expired unlanded (blockhash valid to height "
                                         f"{last_valid})")
            if loop.time() > deadline:
                raise ConfirmationTimeout(f"{self.name}: {signature} not {commitment} within {timeout:.0f}s")
            await asyncio.sleep(_STATUS_POLL_S)

    async def transact(self, instructions: Sequence[Instruction], *, cu_limit: int | None = None,
                       signers: Sequence[Keypair] = (), commitment: Commitment = Confirmed,
                       timeout: float = 60.0) -> Signature:
        """Sends with preflight and waits until the transaction reached `commitment`."""
        sent = await self.send(instructions, cu_limit=cu_limit, signers=signers)
        await self.confirm(sent, commitment=commitment, timeout=timeout)
        return sent.signature
