"""Random parameters for every JSON-RPC method: a result or a JSON-RPC error, never a crash."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings, strategies as st
from solders.keypair import Keypair

from adapters.solana_localnet.errors import INTERNAL_ERROR, RpcError
from adapters.solana_localnet.ledger import Ledger, LedgerConfig
from adapters.solana_localnet.rpc import RpcMethods

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
