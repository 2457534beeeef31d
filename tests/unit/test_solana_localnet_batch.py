"""The localnet server answers JSON-RPC batches of getTransaction (how watchers read a burst) item by
item, an invalid item getting its own error; keys and signatures parse natively with the old error
texts; getTransaction answers are encoded once per record and encoding; PubSub does not compress."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from solders.keypair import Keypair
from solders.message import Message
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from adapters.solana_localnet import rpc as localnet_rpc
from adapters.solana_localnet.errors import RpcError
from adapters.solana_localnet.ledger import PROCESSED
from adapters.solana_localnet.rpc import encode_confirmed_transaction
from adapters.solana_localnet.testing import running_solana_localnet_in_process


@pytest.fixture
async def server():
    async with running_solana_localnet_in_process(slot_ms=20, finality_slots=2) as srv:
        yield srv


def _transfer(server, lamports: int) -> Signature:
    blockhash, _ = server.ledger.latest_blockhash(PROCESSED)
    payer = server.faucet
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=lamports))
    tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), blockhash), [payer])
    signature, record = server.ledger.submit(tx, preflight=False)
    assert record is not None
    return signature


def _get_tx(signature: object, request_id: object = None, **config: object) -> dict:
    body: dict = {"jsonrpc": "2.0", "method": "getTransaction",
                  "params": [signature, {"encoding": "base64", "commitment": "confirmed",
                                         "maxSupportedTransactionVersion": 0, **config}]}
    if request_id is not None:
        body["id"] = request_id
    return body


async def _post(url: str, body: object) -> object:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body) as resp:
            assert resp.status == 200
            return await resp.json()


async def _confirmed(server, signature: Signature) -> None:
    while server.ledger.slot("confirmed") < server.ledger.record(signature).slot:
        await asyncio.sleep(0.01)


async def test_a_batch_of_get_transaction_is_answered_item_by_item(server) -> None:
    known = _transfer(server, 10**6)
    await _confirmed(server, known)
    unknown = Signature.new_unique()
    batch = [
        _get_tx(str(known), 1),
        _get_tx(str(unknown), 2),
        _get_tx("not-base58-0OIl", 3),  # invalid characters
        _get_tx(str(Keypair().pubkey()), 4),  # valid base58, 32 bytes: not a signature
        _get_tx(str(known), 5, commitment="processed"),  # not supported below confirmed
        5,  # not a request object
        _get_tx(str(known)),  # a notification: no answer
        {"jsonrpc": "2.0", "id": 6, "method": "getNothing"},
        _get_tx(str(known), 7, encoding="json"),
    ]
    answers = await _post(server.rpc_url, batch)
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5, None, 6, 7]
    by_id = {a["id"]: a for a in answers}
    assert by_id[1]["result"]["transaction"][0]  # base64 transaction
    assert by_id[1]["result"]["slot"] == server.ledger.record(known).slot
    assert by_id[2] == {"jsonrpc": "2.0", "result": None, "id": 2}
    assert by_id[3]["error"] == {"code": -32602, "message": "Invalid param: Invalid"}
    assert by_id[4]["error"] == {"code": -32602, "message": "Invalid param: WrongSize"}
    assert by_id[5]["error"]["code"] == -32602 and "confirmed" in by_id[5]["error"]["message"]
    assert by_id[None]["error"]["code"] == -32600
    assert by_id[6]["error"]["code"] == -32601
    assert by_id[7]["result"]["transaction"]["signatures"] == [str(known)]
    # A batch over the server's limit is refused whole, with one error object.
    too_many = [_get_tx(str(known), i) for i in range(server.config.max_batch + 1)]
    refused = await _post(server.rpc_url, too_many)
    assert isinstance(refused, dict) and refused["error"]["code"] == -32600 and "batch" in refused["error"]["message"]


async def test_native_base58_parsing_keeps_the_error_texts(server) -> None:
    key, signature = Keypair().pubkey(), Signature.new_unique()
    assert localnet_rpc._pubkey(str(key)) == key
    assert localnet_rpc._signature(str(signature)) == signature
    assert str(localnet_rpc._hash(str(key))) == str(key)
    for bad, message in [("0OIl", "Invalid param: Invalid"), ("", "Invalid param: WrongSize"),
                         (str(signature), "Invalid param: WrongSize"), ("1" * 45, "Invalid param: WrongSize"),
                         ("\ud800", "Invalid param: Invalid")]:
        with pytest.raises(RpcError, match=message):
            localnet_rpc._pubkey(bad)
    with pytest.raises(RpcError, match="WrongSize"):
        localnet_rpc._signature(str(key))
    with pytest.raises(RpcError, match="expected a base-58 encoded signature"):
        localnet_rpc._signature(12)


async def test_get_transaction_answers_are_encoded_once(server, monkeypatch) -> None:
    signature = _transfer(server, 10**6)
    await _confirmed(server, signature)
    encoded = []

    def counting(record, encoding, max_version):
        encoded.append(encoding)
        return encode_confirmed_transaction(record, encoding, max_version)

    monkeypatch.setattr(localnet_rpc, "encode_confirmed_transaction", counting)
    first = await _post(server.rpc_url, [_get_tx(str(signature), i) for i in range(3)])
    again = await _post(server.rpc_url, _get_tx(str(signature), 9, encoding="json"))
    await _post(server.rpc_url, _get_tx(str(signature), 10, encoding="json"))
    assert encoded == ["base64", "json"]  # once per encoding
    record = server.ledger.record(signature)
    assert [a["result"] for a in first] == [encode_confirmed_transaction(record, "base64", 0)] * 3
    assert again["result"] == encode_confirmed_transaction(record, "json", 0)
    # Only while the ledger holds that very record: a forgotten one is not served from the cache.
    monkeypatch.setattr(server.ledger, "record", lambda s: None)
    assert (await _post(server.rpc_url, _get_tx(str(signature), 11)))["result"] is None
    # Bounded: the oldest answers go first.
    monkeypatch.setattr(localnet_rpc, "ENCODED_TRANSACTIONS_KEPT", 1)
    monkeypatch.setattr(server.ledger, "record", lambda s: record)
    base58 = await _post(server.rpc_url, _get_tx(str(signature), 12, encoding="base58"))
    assert list(server.methods._encoded) == [(signature, "base58", 0)]
    assert base58["result"]["transaction"][1] == "base58"
    assert Signature.from_bytes(localnet_rpc.b58decode(base58["result"]["transaction"][0])[1:65]) == signature


async def test_pubsub_does_not_compress(server) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.ws_url, compress=15) as ws:
            assert ws.compress == 0  # the server declined permessage-deflate
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "slotSubscribe"}))
            reply = json.loads((await ws.receive(timeout=5)).data)
            assert isinstance(reply["result"], int)

