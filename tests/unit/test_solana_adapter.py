"""Pieces of the Solana adapter that need no chain: error classification, error names, the Send
log parser, configuration errors. The adapter against a real localnet: tests/e2e/test_solana_gateway.py."""

from __future__ import annotations

import base64
import json

import httpx2
import pytest
from solana.exceptions import SolanaRpcException
from solana.rpc.core import RPCException
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.responses import GetSlotResp
from solders.transaction_status import InstructionErrorCustom, TransactionErrorInstructionError

from adapters.solana.gateway import SolanaAdapter
from adapters.solana.rpc import SolanaAdapterError, is_retryable
from adapters.solana.program import SENT_EVENT_TAG, describe_transaction_error, sent_envelopes, sent_envelopes_of
from relay.interfaces import ChainAdapter
from relay.config import SolanaChain

PROGRAM = Pubkey.new_unique()
OTHER = Pubkey.new_unique()


def _wrapped(cause: Exception) -> SolanaRpcException:
    try:
        try:
            raise cause
        except Exception as exc:
            raise SolanaRpcException(exc, lambda: None, None, object()) from exc
    except SolanaRpcException as wrapped:
        return wrapped


def _status_error(code: int) -> SolanaRpcException:
    request = httpx2.Request("POST", "http://node")
    response = httpx2.Response(code, request=request)
    return _wrapped(httpx2.HTTPStatusError("status", request=request, response=response))


def test_endpoint_faults_are_retried_request_faults_are_not() -> None:
    assert is_retryable(_wrapped(httpx2.ConnectError("refused")))
    assert is_retryable(_wrapped(httpx2.ReadTimeout("slow")))
    assert is_retryable(_status_error(429))
    assert is_retryable(_status_error(503))
    assert not is_retryable(_status_error(400))
    assert not is_retryable(RPCException("Transaction simulation failed: custom program error: 0x36"))
    assert not is_retryable(ValueError("bad input"))
    behind = GetSlotResp.from_json('{"jsonrpc":"2.0","error":{"code":-32005,"message":"Node is unhealthy",'
                                   '"data":{"numSlotsBehind":5}},"id":0}')
    assert is_retryable(RPCException(behind))


def test_custom_program_errors_are_named() -> None:
    err = TransactionErrorInstructionError(1, InstructionErrorCustom(0x40))
    assert describe_transaction_error(err) == "ALREADY_DELIVERED (custom error 0x40 in instruction 1)"
    err = TransactionErrorInstructionError(0, InstructionErrorCustom(0x36))
    assert describe_transaction_error(err).startswith("SIGNATURE_INVALID")
    assert describe_transaction_error(TransactionErrorInstructionError(0, InstructionErrorCustom(9999))).startswith(
        "UNKNOWN_PROGRAM_ERROR")


def _data_line(envelope: bytes, tag: bytes = SENT_EVENT_TAG) -> str:
    return f"Program data: {base64.b64encode(tag).decode()} {base64.b64encode(envelope).decode()}"


def test_sent_envelopes_only_from_our_program_even_under_cpi() -> None:
    logs = [
        f"Program {OTHER} invoke [1]",
        _data_line(b"forged by a caller"),  # a look-alike line written by another program
        f"Program {PROGRAM} invoke [2]",
        _data_line(b"real one"),
        f"Program {PROGRAM} consumed 5000 of 190000 compute units",
        f"Program return: {PROGRAM} AAAA",
        f"Program {PROGRAM} success",
        _data_line(b"forged after"),
        _data_line(b"other tag", tag=b"SOMETHING"),
        f"Program {OTHER} success",
        f"Program {PROGRAM} invoke [1]",
        _data_line(b"second real"),
        f"Program {PROGRAM} success",
    ]
    assert sent_envelopes_of(logs, PROGRAM) == [b"real one", b"second real"]
    assert sent_envelopes(logs) == [b"forged by a caller", b"real one", b"forged after", b"second real"]


def _chain(**kw) -> SolanaChain:
    base = dict(kind="solana", domain=5, rpc_urls=["http://127.0.0.1:1"], program_id=str(PROGRAM))
    return SolanaChain(**{**base, **kw})


def test_adapter_needs_a_program_id_and_a_signer_to_send() -> None:
    with pytest.raises(SolanaAdapterError, match="program_id is not set"):
        SolanaAdapter("sol", _chain(program_id=None), None)
    adapter = SolanaAdapter("sol", _chain(), None)
    assert isinstance(adapter, ChainAdapter)
    assert (adapter.domain, adapter.commitment, adapter.program_id) == (5, "finalized", PROGRAM)
    with pytest.raises(SolanaAdapterError, match="signer is not set"):
        adapter._require_signer()
    assert SolanaAdapter("sol", _chain(commitment="confirmed"), Keypair()).commitment == "confirmed"


async def test_reobserve_refuses_what_is_not_a_signature() -> None:
    adapter = SolanaAdapter("sol", _chain(), None)
    with pytest.raises(SolanaAdapterError, match="not a base58 Solana transaction signature"):
        await adapter.reobserve("0xdeadbeef")
    await adapter.close()


def test_from_config_reads_the_signer_in_the_solana_cli_format(tmp_path, monkeypatch) -> None:
    keypair = Keypair()
    path = tmp_path / "payer.json"
    path.write_text(json.dumps(list(bytes(keypair))))
    adapter = SolanaAdapter.from_config("sol", _chain(signer={"file": str(path)}))
    assert adapter.signer.pubkey() == keypair.pubkey()
    monkeypatch.setenv("SOL_KEY", str(keypair))
    assert SolanaAdapter.from_config("sol", _chain(signer={"env": "SOL_KEY"})).signer.pubkey() == keypair.pubkey()
    assert SolanaAdapter.from_config("sol", _chain()).signer is None
    path.write_text("[1, 2, 3]")
    with pytest.raises(SolanaAdapterError, match="not a Solana keypair"):
        SolanaAdapter.from_config("sol", _chain(signer={"file": str(path)}))
