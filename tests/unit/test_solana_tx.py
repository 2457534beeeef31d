"""adapters.solana.tx against a scripted RPC: sending (blockhash, compute budget, signers, preflight
refusals) and confirming (commitment reached, failed, blockhash expired, timed out)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from solana.rpc.core import RPCException
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionConfirmationStatus,
    TransactionErrorInstructionError,
)

from adapters.solana.program import ProgramErrorCode
from adapters.solana.rpc import SolanaAdapterError, SolanaRpc
from adapters.solana.tx import (
    ConfirmationTimeout,
    SentTransaction,
    SolanaTransactor,
    TransactionExpired,
    TransactionRefused,
)

REFUSED = TransactionErrorInstructionError(1, InstructionErrorCustom(int(ProgramErrorCode.SIGNATURE_INVALID)))


class ScriptedRpc:
    """Answers `SolanaRpc.call` by method name; records what was sent."""

    def __init__(self, statuses: list[Any], height: int = 10, send_error: Exception | None = None) -> None:
        self.statuses = statuses
        self.height = height
        self.send_error = send_error
        self.sent: list[VersionedTransaction] = []
        self.calls: list[str] = []

    async def call(self, what: str, fn: Any) -> Any:
        self.calls.append(what)
        if what == "getLatestBlockhash":
            return SimpleNamespace(value=SimpleNamespace(blockhash=Hash.new_unique(), last_valid_block_height=20))
        if what == "sendTransaction":
            client = SimpleNamespace(send_raw_transaction=self._send)
            return await fn(client)
        if what == "getSignatureStatuses":  # through a client, as the pool calls it
            async def statuses(signatures: list[Any], search_transaction_history: bool) -> Any:
                return SimpleNamespace(value=[self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]])
            return await fn(SimpleNamespace(get_signature_statuses=statuses))
        if what == "getBlockHeight":
            return SimpleNamespace(value=self.height)
        raise AssertionError(what)

    async def _send(self, raw: bytes, opts: Any) -> Any:
        if self.send_error is not None:
            raise self.send_error
        tx = VersionedTransaction.from_bytes(raw)
        self.sent.append(tx)
        return SimpleNamespace(value=tx.signatures[0])


def _transactor(rpc: ScriptedRpc, payer: Keypair | None = None) -> SolanaTransactor:
    real = SolanaRpc("sol", ["http://127.0.0.1:9"])
    real.call = rpc.call  # type: ignore[method-assign]
    return SolanaTransactor(real, payer if payer is not None else Keypair(), name="sol")


def _status(level: TransactionConfirmationStatus, err: Any = None) -> SimpleNamespace:
    return SimpleNamespace(confirmation_status=level, err=err, slot=5)


def _ix(payer: Keypair):
    return transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=1))


async def test_send_signs_with_every_signer_adds_the_budget_and_remembers_the_blockhash() -> None:
    payer, other = Keypair(), Keypair()
    rpc = ScriptedRpc([None])
    tx = _transactor(rpc, payer)
    sent = await tx.send([_ix(payer), _ix(other)], cu_limit=50_000, signers=[other])
    (raw,) = rpc.sent
    assert sent == SentTransaction(raw.signatures[0], 20) and len(raw.signatures) == 2
    assert len(raw.message.instructions) == 3  # the compute-budget limit first
    assert tx.last_valid_height(str(sent.signature)) == 20 and tx.last_valid_height("unknown") is None


async def test_a_preflight_refusal_carries_the_program_error_and_logs() -> None:
    data = SimpleNamespace(err=REFUSED, logs=["Program log: tessera: bad signature"])
    rpc = ScriptedRpc([None], send_error=RPCException(SimpleNamespace(data=data)))
    payer = Keypair()
    with pytest.raises(TransactionRefused, match="SIGNATURE_INVALID") as refused:
        await _transactor(rpc, payer).send([_ix(payer)])
    assert refused.value.signature is None and refused.value.logs == data.logs
    # A JSON-RPC error without a transaction error is not a refusal: it goes up as it is.
    rpc = ScriptedRpc([None], send_error=RPCException("invalid params"))
    with pytest.raises(RPCException):
        await _transactor(rpc, payer).send([_ix(payer)])


async def test_no_payer_says_what_to_configure() -> None:
    tx = SolanaTransactor(SolanaRpc("sol", ["http://127.0.0.1:9"]), None, name="sol", no_payer_hint="set chains.sol.signer")
    with pytest.raises(SolanaAdapterError, match="set chains.sol.signer"):
        await tx.send([])


async def test_confirm_waits_for_the_commitment_and_reports_failures() -> None:
    sent = SentTransaction(Signature.new_unique(), 20)
    rpc = ScriptedRpc([None, _status(TransactionConfirmationStatus.Processed),
                       _status(TransactionConfirmationStatus.Confirmed)])
    status = await _transactor(rpc).confirm(sent, timeout=5)
    assert status.confirmation_status == TransactionConfirmationStatus.Confirmed
    assert rpc.calls.count("getSignatureStatuses") == 3

    rpc = ScriptedRpc([_status(TransactionConfirmationStatus.Confirmed, REFUSED)])
    with pytest.raises(TransactionRefused, match="SIGNATURE_INVALID") as failed:
        await _transactor(rpc).confirm(sent, timeout=5)
    assert failed.value.signature == sent.signature and failed.value.err == REFUSED

    rpc = ScriptedRpc([None], height=21)  # past the blockhash's last valid height, never seen
    with pytest.raises(TransactionExpired, match="expired unlanded"):
        await _transactor(rpc).confirm(sent, timeout=5)

    rpc = ScriptedRpc([_status(TransactionConfirmationStatus.Confirmed)])
    with pytest.raises(ConfirmationTimeout, match="not finalized within"):
        await _transactor(rpc).confirm(sent, commitment="finalized", timeout=0.25)

