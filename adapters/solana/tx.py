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
from collections.abc import Sequence
from typing import Any, NamedTuple

from solana.rpc.commitment import Commitment, Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction

from adapters.solana.program import describe_transaction_error
from adapters.solana.rpc import SolanaAdapterError, SolanaRpc, commitment_level, confirmation_level

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
