"""Random parameters for every JSON-RPC method: a result or a JSON-RPC error, never a crash."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings, strategies as st
from solders.keypair import Keypair
from solders.message import Message
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from adapters.solana_localnet.codec import b58encode
from adapters.solana_localnet.errors import INTERNAL_ERROR, RpcError
from adapters.solana_localnet.ledger import Ledger, LedgerConfig
from adapters.solana_localnet.rpc import RpcMethods
from adapters.solana_localnet.server import LocalnetServer, ServerConfig
from tests.support.fuzzing import DEEP_JSON, budget, default_recursion_limit, mutated

_LEDGER = Ledger(LedgerConfig(finality_slots=2))
_METHODS = RpcMethods(_LEDGER, Keypair().pubkey())
_PAYER = Keypair().pubkey()
_SIG = _LEDGER.airdrop(_PAYER, 10**9)
_LEDGER.advance_slot()
_LEDGER.advance_slot()

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from([str(_PAYER), str(_SIG), str(_LEDGER.genesis_hash), "processed", "confirmed", "base64", "base58", "json"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["commitment", "encoding", "limit", "before", "until", "filters", "dataSlice", "offset",
                         "length", "memcmp", "bytes", "dataSize", "minContextSlot", "skipPreflight", "mentions",
                         "maxSupportedTransactionVersion", "transactionDetails", "accounts", "addresses", "x"]),
        inner,
        max_size=4,
    ),
    max_leaves=10,
)


_config = st.dictionaries(
    st.sampled_from(["commitment", "encoding", "limit", "before", "until", "filters", "dataSlice", "withContext",
                     "minContextSlot", "skipPreflight", "sigVerify", "replaceRecentBlockhash", "innerInstructions",
                     "maxSupportedTransactionVersion", "transactionDetails", "accounts", "rewards", "searchTransactionHistory"]),
    _json,
    max_size=4,
)
_valid_first = st.sampled_from([str(_PAYER), str(_SIG), "11111111111111111111111111111111", 1, 0])
_first = st.one_of(_valid_first, _valid_first, _scalars, st.lists(_scalars, max_size=3))
_params = st.one_of(
    st.lists(_json, max_size=4),
    _json,
    st.tuples(_first, _config).map(list),
    st.tuples(_first, _scalars, _config).map(list),
)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(sorted(_METHODS.methods)), params=_params)
def test_every_method_answers_or_refuses_cleanly(method: str, params: object) -> None:
    try:
        asyncio.run(_METHODS.call(method, params))
    except RpcError as exc:
        assert exc.code != INTERNAL_ERROR, (method, params, exc.message)


_SUBSCRIBE_METHODS = [
    f"{kind}{suffix}"
    for kind in ("logs", "signature", "account", "program", "slot", "root")
    for suffix in ("Subscribe", "Unsubscribe")
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(_SUBSCRIBE_METHODS), params=_params)
def test_every_subscription_answers_or_refuses_cleanly(method: str, params: object) -> None:
    import json

    from adapters.solana_localnet.pubsub import PubSub, _Connection

    async def run() -> list[str]:
        pubsub = PubSub(_LEDGER)
        connection = _Connection(ws=None)  # type: ignore[arg-type]  # only the outgoing queue is used
        try:
            pubsub._on_text(connection, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        finally:
            _LEDGER.remove_listener(pubsub)
        return [connection.queue.get_nowait() for _ in range(connection.queue.qsize())]

    replies = [json.loads(text) for text in asyncio.run(run())]
    assert replies and replies[0]["id"] in (1, None)
    assert all(r.get("error", {}).get("code") != INTERNAL_ERROR for r in replies), replies


# --- transactions: well-encoded bytes that are not quite a transaction ----------------------------

_SENDER = Keypair()
_LEDGER.airdrop(_SENDER.pubkey(), 10**9)


def _signed_transfers(*lamports: int) -> list[bytes]:
    """Transfers to new accounts (above the rent-exempt minimum), signed at the latest blockhash."""
    blockhash, _ = _LEDGER.latest_blockhash("processed")
    transfers = [transfer(TransferParams(from_pubkey=_SENDER.pubkey(), to_pubkey=Keypair().pubkey(), lamports=n))
                 for n in lamports]
    return [bytes(VersionedTransaction(Message.new_with_blockhash([ix], _SENDER.pubkey(), blockhash), [_SENDER]))
            for ix in transfers]


_TRANSACTIONS = _signed_transfers(10**6, 2 * 10**6)
_TX_CONFIG = st.fixed_dictionaries({}, optional={
    "encoding": st.sampled_from(["base64", "base58", "json", "nope"]),
    "skipPreflight": st.booleans(), "sigVerify": st.booleans(), "replaceRecentBlockhash": st.booleans(),
    "preflightCommitment": st.sampled_from(["processed", "confirmed", "finalized", "bogus"]),
    "innerInstructions": st.booleans(), "minContextSlot": st.integers(-1, 10**6),
    "accounts": st.fixed_dictionaries({"addresses": st.lists(st.sampled_from([str(_PAYER), "x"]), max_size=2),
                                       "encoding": st.sampled_from(["base64", "jsonParsed", "base58"])}),
})


def _encode(data: bytes, encoding: str) -> str:
    return base64.b64encode(data).decode() if encoding == "base64" else b58encode(data)


@settings(max_examples=budget(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(["sendTransaction", "simulateTransaction", "getFeeForMessage"]),
       data=mutated(_TRANSACTIONS) | st.binary(max_size=300), config=_TX_CONFIG,
       wire=st.sampled_from(["base64", "base58"]))
def test_transactions_that_decode_badly_are_refused_cleanly(method: str, data: bytes, config: dict, wire: str) -> None:
    if method == "getFeeForMessage":
        data = data[1 + 64:] if len(data) > 65 else data  # roughly the message inside a 1-signature transaction
        wire = "base64"
    else:
        config = {**config, "encoding": config.get("encoding", wire)}
    try:
        asyncio.run(_METHODS.call(method, [_encode(data, wire), config]))
    except RpcError as exc:
        assert exc.code != INTERNAL_ERROR, (method, data.hex(), config, exc.message)


def test_a_valid_transfer_is_accepted() -> None:
    """A transaction like the fuzz's seeds is one the ledger takes."""
    [fresh] = _signed_transfers(3 * 10**6)
    signature = asyncio.run(_METHODS.call("sendTransaction", [_encode(fresh, "base64"), {"encoding": "base64"}]))
    assert isinstance(signature, str) and len(signature) > 60


# --- the HTTP face: request bodies, batches, notifications ---------------------------------------

_request_objects = st.fixed_dictionaries({}, optional={
    "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | _scalars,
    "id": st.integers(-5, 2**70) | st.text(max_size=8) | st.booleans() | st.none() | st.floats(allow_nan=False)
    | st.lists(st.integers(), max_size=2),
    "method": st.sampled_from(sorted(_METHODS.methods)) | _scalars,
    "params": _params,
})
_bodies = st.one_of(
    _request_objects.map(json.dumps),
    st.lists(_request_objects | _json, max_size=5).map(json.dumps),
    _json.map(json.dumps),
    st.binary(max_size=100),
    st.sampled_from([DEEP_JSON, '{"jsonrpc": "2.0", "id": 1, "method": "getSlot", "params": ' + DEEP_JSON + "}", "",
                     "\xff", "[]", "[1]", "null"]),
)


@pytest.fixture
async def localnet_http() -> AsyncIterator[TestClient]:
    server = LocalnetServer(ServerConfig(ledger=LedgerConfig(finality_slots=2), max_batch=3))
    app = web.Application(client_max_size=server.config.max_body_bytes)
    app.router.add_post("/", server._handle_http)  # the routes LocalnetServer.start serves, without its ports
    async with TestClient(TestServer(app)) as client:
        yield client


@settings(max_examples=budget(200), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=_bodies)
async def test_any_request_body_gets_a_json_rpc_answer(localnet_http: TestClient, body: str | bytes) -> None:
    await _answers(localnet_http, body)


async def test_json_nested_too_deep_gets_a_parse_error(localnet_http: TestClient) -> None:
    with default_recursion_limit():
        await _answers(localnet_http, DEEP_JSON)


async def _answers(localnet_http: TestClient, body: str | bytes) -> None:
    async with localnet_http.post("/", data=body, headers={"content-type": "application/json"}) as resp:
        status, text = resp.status, await resp.text()
    assert status in (200, 204), (body[:200], status, text[:300])
    replies = json.loads(text) if text else []
    for reply in replies if isinstance(replies, list) else [replies]:
        assert reply["jsonrpc"] == "2.0" and ("result" in reply) != ("error" in reply), reply
        assert reply.get("error", {}).get("code") != INTERNAL_ERROR, (body[:200], reply)
    async with localnet_http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "getHealth"}) as resp:
        assert await resp.json() == {"jsonrpc": "2.0", "result": "ok", "id": 1}


def test_pubsub_answers_json_nested_too_deep_with_a_parse_error() -> None:
    from adapters.solana_localnet.pubsub import PubSub, _Connection

    async def run() -> list[dict]:
        pubsub = PubSub(_LEDGER)
        connection = _Connection(ws=None)  # type: ignore[arg-type]  # only the outgoing queue is used
        try:
            with default_recursion_limit():
                pubsub._on_text(connection, DEEP_JSON)
        finally:
            _LEDGER.remove_listener(pubsub)
        return [json.loads(connection.queue.get_nowait()) for _ in range(connection.queue.qsize())]

    assert [reply["error"]["code"] for reply in asyncio.run(run())] == [-32700]
