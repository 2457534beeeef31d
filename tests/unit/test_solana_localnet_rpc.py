"""JSON-RPC and PubSub shapes of the Solana localnet server, run in-process on free ports."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Finalized, Processed
from solana.rpc.models import DataSliceOpts, MemcmpOpts
from solders.account import Account
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.responses import GetProgramAccountsResp
from solders.transaction import VersionedTransaction

from adapters.solana_localnet.codec import b58encode
from adapters.solana_localnet.testing import running_solana_localnet_in_process

MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


@pytest.fixture
async def server():
    async with running_solana_localnet_in_process(slot_ms=40, finality_slots=3) as srv:
        yield srv


async def rpc(url: str, method: str, params: list | None = None) -> dict:
    async with aiohttp.ClientSession() as session:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        async with session.post(url, json=body) as resp:
            return await resp.json()


def seed(server, owner: Pubkey, data: bytes) -> Pubkey:
    key = Keypair().pubkey()
    lamports = server.ledger.minimum_balance_for_rent_exemption(len(data))
    server.ledger.set_account(key, Account(lamports=lamports, data=data, owner=owner, executable=False, rent_epoch=0))
    return key


async def test_program_accounts_filters_and_slices(server) -> None:
    owner = Keypair().pubkey()
    a = seed(server, owner, b"\x01\x02tessera-a" + bytes(20))
    b = seed(server, owner, b"\x01\x03tessera-b" + bytes(20))
    c = seed(server, owner, b"\x01\x02short")
    seed(server, Keypair().pubkey(), b"\x01\x02tessera-z" + bytes(20))
    async with AsyncClient(server.rpc_url, Processed) as client:
        everything = (await client.get_program_accounts(owner, encoding="base64")).value
        assert {x.pubkey for x in everything} == {a, b, c}
        matched = (
            await client.get_program_accounts(
                owner, encoding="base64", filters=[31, MemcmpOpts(offset=1, bytes=b58encode(b"\x02tessera"))]
            )
        ).value
        assert [x.pubkey for x in matched] == [a]
        sliced = (
            await client.get_program_accounts(owner, encoding="base64", data_slice=DataSliceOpts(offset=2, length=7))
        ).value
        assert {bytes(x.account.data) for x in sliced} == {b"tessera", b"short"}
    # The base64 memcmp form and withContext, over raw JSON.
    memcmp64 = {"memcmp": {"offset": 0, "bytes": base64.b64encode(b"\x01\x03").decode(), "encoding": "base64"}}
    resp = await rpc(server.rpc_url, "getProgramAccounts", [str(owner), {"encoding": "base64", "filters": [memcmp64], "withContext": True, "commitment": "processed"}])
    assert [x["pubkey"] for x in resp["result"]["value"]] == [str(b)]
    assert resp["result"]["context"]["slot"] >= 1
    # The plain list parses with solders' strict parser.
    resp = await rpc(server.rpc_url, "getProgramAccounts", [str(owner), {"encoding": "base64", "commitment": "processed"}])
    assert len(GetProgramAccountsResp.from_json(json.dumps(resp)).value) == 3


async def test_account_encodings(server) -> None:
    owner = Keypair().pubkey()
    small = seed(server, owner, b"hello")
    big = seed(server, owner, bytes(200))
    resp = await rpc(server.rpc_url, "getAccountInfo", [str(small), {"encoding": "base58", "commitment": "processed"}])
    value = resp["result"]["value"]
    assert value["data"] == [b58encode(b"hello"), "base58"]
    assert value["owner"] == str(owner) and value["space"] == 5 and value["executable"] is False
    resp = await rpc(server.rpc_url, "getAccountInfo", [str(small), {"commitment": "processed"}])
    assert resp["result"]["value"]["data"] == b58encode(b"hello")  # legacy default: "binary"
    resp = await rpc(server.rpc_url, "getAccountInfo", [str(big), {"encoding": "base58", "commitment": "processed"}])
    assert resp["error"]["code"] == -32600
    resp = await rpc(server.rpc_url, "getAccountInfo", [str(Keypair().pubkey()), {"encoding": "base64"}])
    assert resp["result"]["value"] is None
    resp = await rpc(server.rpc_url, "getMultipleAccounts", [[str(small), str(Keypair().pubkey())], {"encoding": "base64", "commitment": "processed"}])
    assert resp["result"]["value"][0]["data"] == [base64.b64encode(b"hello").decode(), "base64"]
    assert resp["result"]["value"][1] is None


async def test_simulate_options(server) -> None:
    payer = Keypair()
    async with AsyncClient(server.rpc_url, Processed) as client:
        sig = (await client.request_airdrop(payer.pubkey(), 10**10)).value
        await client.confirm_transaction(sig, Processed, sleep_seconds=0.02)
    unknown = Message.new_with_blockhash(
        [Instruction(MEMO, b"sim", [AccountMeta(payer.pubkey(), True, False)])], payer.pubkey(), Hash.new_unique()
    )
    tx = VersionedTransaction(unknown, [payer])
    encoded = base64.b64encode(bytes(tx)).decode()
    resp = await rpc(server.rpc_url, "simulateTransaction", [encoded, {"encoding": "base64", "commitment": "processed"}])
    assert resp["result"]["value"]["err"] == "BlockhashNotFound"
    resp = await rpc(
        server.rpc_url,
        "simulateTransaction",
        [encoded, {"encoding": "base64", "replaceRecentBlockhash": True, "commitment": "processed",
                   "accounts": {"addresses": [str(payer.pubkey())], "encoding": "base64"}, "innerInstructions": True}],
    )
    value = resp["result"]["value"]
    assert value["err"] is None and "Program log: sim" in value["logs"]
    assert value["replacementBlockhash"]["blockhash"] != str(unknown.recent_blockhash)
    assert value["accounts"][0]["lamports"] == 10**10 - 5000
    assert value["innerInstructions"] == []
    resp = await rpc(server.rpc_url, "simulateTransaction", [encoded, {"encoding": "base64", "replaceRecentBlockhash": True, "sigVerify": True}])
    assert resp["error"]["code"] == -32602


async def test_min_context_slot_and_block_time(server) -> None:
    resp = await rpc(server.rpc_url, "getBalance", [str(Keypair().pubkey()), {"minContextSlot": 10**9}])
    assert resp["error"]["code"] == -32016
    await asyncio.sleep(0.2)
    slot = server.ledger.slot("confirmed")
    resp = await rpc(server.rpc_url, "getBlockTime", [slot])
    assert isinstance(resp["result"], int) and resp["result"] > 1_700_000_000
    resp = await rpc(server.rpc_url, "getBlockTime", [10**9])
    assert resp["error"]["code"] == -32004
    blockhash = server.ledger.latest_blockhash("processed")[0]
    resp = await rpc(server.rpc_url, "isBlockhashValid", [str(blockhash), {"commitment": "processed"}])
    assert resp["result"]["value"] is True


async def test_vanished_websocket_clients_are_forgotten(server) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            ws = await session.ws_connect(server.ws_url)
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "slotSubscribe"}))
            await ws.receive(timeout=5)
            ws._response.connection.transport.abort()  # no close frame, as a crashed client
        for _ in range(100):
            if server.pubsub.connection_count == 0:
                break
            await asyncio.sleep(0.02)
        assert server.pubsub.connection_count == 0
        async with session.ws_connect(server.ws_url) as ws:
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 5, "method": "rootSubscribe"}))
            reply = json.loads((await ws.receive(timeout=5)).data)
            assert reply["id"] == 5
            note = json.loads((await ws.receive(timeout=5)).data)
            assert note["method"] == "rootNotification"


async def test_blocks_list_the_slot_transactions(server) -> None:
    async with AsyncClient(server.rpc_url, Confirmed) as client:
        sig = (await client.request_airdrop(Keypair().pubkey(), 10**9)).value
        status = (await client.confirm_transaction(sig, Confirmed, sleep_seconds=0.02)).value[0]
        block = (await client.get_block(status.slot)).value
        assert [t.transaction.signatures[0] for t in block.transactions] == [sig]
        assert block.parent_slot == status.slot - 1 and block.block_height == status.slot
        parent = (await client.get_block(status.slot - 1)).value
        assert block.previous_blockhash == parent.blockhash
        await client.confirm_transaction(sig, Finalized, sleep_seconds=0.02)
        slots = (await client.get_blocks(0, status.slot)).value  # getBlocks defaults to finalized
        assert slots == list(range(0, status.slot + 1))
    resp = await rpc(server.rpc_url, "getBlock", [status.slot, {"transactionDetails": "signatures", "commitment": "confirmed"}])
    assert resp["result"]["signatures"] == [str(sig)] and "transactions" not in resp["result"]
    resp = await rpc(server.rpc_url, "getBlock", [10**9, {"commitment": "confirmed"}])
    assert resp["error"]["code"] == -32004


def test_error_texts_follow_agave() -> None:
    from solders.transaction_status import (
        InstructionErrorCustom,
        InstructionErrorFieldless,
        TransactionErrorFieldless,
        TransactionErrorInstructionError,
    )

    from adapters.solana_localnet.rpc import describe_error

    assert describe_error(TransactionErrorInstructionError(0, InstructionErrorCustom(1))) == (
        "Error processing Instruction 0: custom program error: 0x1"
    )
    assert describe_error(TransactionErrorInstructionError(1, InstructionErrorFieldless.ProgramFailedToComplete)) == (
        "Error processing Instruction 1: Program failed to complete"
    )
    assert describe_error(TransactionErrorFieldless.BlockhashNotFound) == "Blockhash not found"


async def test_a_client_that_stops_reading_is_cut_off(server, monkeypatch) -> None:
    from adapters.solana_localnet import pubsub

    monkeypatch.setattr(pubsub, "MAX_QUEUED_MESSAGES", 4)
    owner = Keypair().pubkey()
    key = seed(server, owner, bytes(200_000))
    host, port = server.ws_url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    frame = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "accountSubscribe",
                        "params": [str(key), {"encoding": "base64", "commitment": "confirmed"}]}).encode()
    writer.write(bytes([0x81, 0x80 | 126]) + len(frame).to_bytes(2, "big") + b"\0\0\0\0" + frame)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head
    reply = await reader.readexactly(2)  # a short unmasked text frame: opcode, length
    assert json.loads(await reader.readexactly(reply[1]))["result"] >= 1
    # Never read again; rewrite the account every few ms: each slot carries ~270 kB of notification.
    for round_ in range(300):
        account = Account(lamports=10**9 + round_, data=bytes(200_000), owner=owner, executable=False, rent_epoch=0)
        server.ledger.set_account(key, account)
        await asyncio.sleep(0.01)
        if server.pubsub.connection_count == 0:
            break
    assert server.pubsub.connection_count == 0
    writer.close()
    async with AsyncClient(server.rpc_url) as client:  # everyone else is still served
        assert (await client.get_slot()).value >= 0
