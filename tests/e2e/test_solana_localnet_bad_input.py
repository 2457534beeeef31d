"""Malformed requests against the Solana localnet server (a subprocess): each gets the real RPC's error,
and the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import aiohttp
import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from adapters.solana_localnet.testing import running_solana_localnet

pytestmark = pytest.mark.e2e


@pytest.fixture
async def rpc():
    async with running_solana_localnet(slot_ms=50, finality_slots=3) as net:
        async with aiohttp.ClientSession() as session:
            yield net, session


async def post(session: aiohttp.ClientSession, url: str, body: bytes | str | object) -> tuple[int, object]:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with session.post(url, data=data, headers={"content-type": "application/json"}) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def call(method: str, params: object = None, request_id: object = 1) -> dict:
    body = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    return body


async def assert_still_serving(session: aiohttp.ClientSession, url: str) -> None:
    status, body = await post(session, url, call("getHealth"))
    assert status == 200 and body == {"jsonrpc": "2.0", "result": "ok", "id": 1}


async def test_malformed_json_and_invalid_requests(rpc) -> None:
    net, session = rpc
    status, body = await post(session, net.rpc_url, b'{"jsonrpc": "2.0", "method": ')
    assert status == 200
    assert body == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
    for bad in ([], 42, {"jsonrpc": "2.0", "id": 3}, {"jsonrpc": "1.0", "id": 3, "method": "getSlot"}):
        _, body = await post(session, net.rpc_url, bad)
        assert body["error"]["code"] == -32600, bad
    _, body = await post(session, net.rpc_url, call("getSlotz", request_id="abc"))
    assert body == {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "abc"}
    await assert_still_serving(session, net.rpc_url)


async def test_wrong_parameter_types(rpc) -> None:
    net, session = rpc
    cases = [
        call("getBalance", [12345]),
        call("getBalance", ["not-a-pubkey"]),
        call("getBalance", ["1111"]),  # valid base58, wrong length
        call("getBalance"),
        call("getAccountInfo", [str(Keypair().pubkey()), "finalized"]),
        call("getMinimumBalanceForRentExemption", ["100"]),
        call("getMinimumBalanceForRentExemption", [-1]),
        call("getSlot", [{"commitment": "eventually"}]),
        call("getSignatureStatuses", ["abc"]),
        call("getSignaturesForAddress", [str(Keypair().pubkey()), {"limit": 5000}]),
        call("getMultipleAccounts", [[str(Keypair().pubkey())] * 101]),
        call("getTransaction", ["x" * 88]),
        call("getTransaction", [str(Keypair().sign_message(b"x")), {"commitment": "processed"}]),
        call("requestAirdrop", [str(Keypair().pubkey()), "lots"]),
        call("getSlot", {"commitment": "processed"}),
    ]
    for request in cases:
        _, body = await post(session, net.rpc_url, request)
        assert body["error"]["code"] == -32602, (request, body)
        assert body["id"] == 1
    await assert_still_serving(session, net.rpc_url)


def _signed_tx() -> bytes:
    payer = Keypair()
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=1))
    return bytes(VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), Hash.default()), [payer]))


async def test_bad_transactions(rpc) -> None:
    net, session = rpc
    raw = _signed_tx()
    cases = {
        "bad base64": call("sendTransaction", ["%%%not base64%%%", {"encoding": "base64"}]),
        "bad base58": call("sendTransaction", ["0OIl" * 10]),
        "not a transaction": call("sendTransaction", [base64.b64encode(b"\x01\x02\x03").decode(), {"encoding": "base64"}]),
        "truncated": call("sendTransaction", [base64.b64encode(raw[:-5]).decode(), {"encoding": "base64"}]),
        "too large": call("sendTransaction", [base64.b64encode(b"\x01" * 1300).decode(), {"encoding": "base64"}]),
        "unknown encoding": call("sendTransaction", [base64.b64encode(raw).decode(), {"encoding": "hex"}]),
        "not a string": call("sendTransaction", [[1, 2, 3]]),
        "simulate garbage": call("simulateTransaction", ["!!", {"encoding": "base64"}]),
    }
    for name, request in cases.items():
        _, body = await post(session, net.rpc_url, request)
        assert body["error"]["code"] == -32602, (name, body)
    # A well-formed transaction with an unknown blockhash fails preflight with the runtime's error.
    _, body = await post(session, net.rpc_url, call("sendTransaction", [base64.b64encode(raw).decode(), {"encoding": "base64"}]))
    assert body["error"]["code"] == -32002
    assert body["error"]["data"]["err"] == "BlockhashNotFound"
    assert set(body["error"]["data"]) >= {"err", "logs", "accounts", "unitsConsumed", "returnData", "innerInstructions"}
    # A tampered signature is caught before simulation.
    tampered = bytearray(raw)
    tampered[5] ^= 0xFF
    _, body = await post(session, net.rpc_url, call("sendTransaction", [base64.b64encode(bytes(tampered)).decode(), {"encoding": "base64"}]))
    assert body["error"]["code"] == -32003
    await assert_still_serving(session, net.rpc_url)


async def test_oversized_body_and_batches(rpc) -> None:
    net, session = rpc
    huge = json.dumps(call("getBalance", ["1" * (2 << 20)]))
    status, body = await post(session, net.rpc_url, huge)
    assert status == 413 and body["error"]["code"] == -32600
    status, body = await post(session, net.rpc_url, [call("getSlot", request_id=i) for i in range(101)])
    assert body["error"]["code"] == -32600 and "batch" in body["error"]["message"]
    status, body = await post(
        session, net.rpc_url, [call("getHealth", request_id=1), call("nope", request_id=2), call("getSlot", request_id=3)]
    )
    assert [r["id"] for r in body] == [1, 2, 3]
    assert body[0]["result"] == "ok" and body[1]["error"]["code"] == -32601 and isinstance(body[2]["result"], int)
    await assert_still_serving(session, net.rpc_url)


async def test_websocket_clients_that_misbehave_or_vanish(rpc) -> None:
    net, session = rpc
    async with session.ws_connect(net.ws_url) as ws:
        await ws.send_str("{not json")
        reply = json.loads((await ws.receive(timeout=5)).data)
        assert reply == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
        await ws.send_str(json.dumps(call("accountSubscribe", ["nope"], request_id=7)))
        reply = json.loads((await ws.receive(timeout=5)).data)
        assert reply["error"]["code"] == -32602 and reply["id"] == 7
        await ws.send_str(json.dumps(call("fooSubscribe", [], request_id=8)))
        assert json.loads((await ws.receive(timeout=5)).data)["error"]["code"] == -32601
        await ws.send_str(json.dumps(call("slotUnsubscribe", [999], request_id=9)))
        assert json.loads((await ws.receive(timeout=5)).data)["error"]["code"] == -32602

    # Clients that subscribe and then drop their TCP connection without a close frame.
    host, port = net.ws_url.removeprefix("ws://").split(":")
    for _ in range(3):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        assert b"101" in await reader.readline()
        sock: socket.socket = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        writer.transport.abort()

    async with session.ws_connect(net.ws_url) as ws:
        await ws.send_str(json.dumps(call("slotSubscribe", [], request_id=1)))
        reply = json.loads((await ws.receive(timeout=5)).data)
        assert reply["id"] == 1 and isinstance(reply["result"], int)
        note = json.loads((await ws.receive(timeout=5)).data)
        assert note["method"] == "slotNotification"
    await assert_still_serving(session, net.rpc_url)
    assert "Traceback" not in net.log_path.read_text()
