"""The explorer's HTTP side in-process, from fakes: the page and its files, search by source tx,
message id and task id, a task assembled from its messages, live `message` events over SSE as the
pipeline applies outcomes; and the wallet-balance gauge."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry, generate_latest

from relay.api import build_app
from relay.backoff import Backoff
from relay.envelope import Envelope
from relay.metrics import Wallet, WalletBalances
from relay.pipeline import PipelineSettings, Relayer
from relay.protocol import MessageKind
from relay.store import Store
from relay.tasks.payloads import TaskRequest, TaskResult
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope

FAST = PipelineSettings(backoff=Backoff(base=0.0, jitter=0.0, max_attempts=3), confirm_poll=0.0)


@pytest.fixture
async def relayer(tmp_path: Path):
    store = await Store.open(tmp_path / "relayer.db")
    r = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    yield r
    await store.close()


async def _events(response, count: int, timeout: float = 5.0) -> list[dict]:
    """The next `count` `message` events of an SSE response."""
    events: list[dict] = []
    kind, data = None, []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "":
                if kind == "message":
                    events.append(json.loads("\n".join(data)))
                kind, data = None, []
    return events


async def test_the_page_and_its_files_are_served(relayer: Relayer) -> None:
    async with TestClient(TestServer(build_app(relayer))) as client:
        root = await client.get("/", allow_redirects=False)
        assert root.status == 302 and root.headers["Location"] == "/explorer/"
        page = await client.get("/explorer/")
        html = await page.text()
        assert page.status == 200 and 'name="viewport"' in html and "/explorer/static/explorer.js" in html
        for name in ("explorer.js", "explorer.css"):
            assert (await client.get(f"/explorer/static/{name}")).status == 200
        config = await (await client.get("/explorer/config.json")).json()
        assert config == {"chains": {str(SRC): "evm", str(DST): "solana"}, "committee": None, "feeds": False}
        feeds = await client.get("/explorer/api/feeds")
        assert feeds.status == 404 and "feed_server" in (await feeds.json())["error"]


async def test_search_by_source_tx_then_the_delivery_arrives_live(relayer: Relayer) -> None:
    env = envelope(0)
    async with TestClient(TestServer(build_app(relayer))) as client:
        missing = await client.get("/v1/search", params={"q": "0xABC"})
        assert missing.status == 404 and "final" in (await missing.json())["error"]
        assert (await client.get("/v1/search")).status == 400

        stream = await client.get("/v1/stream")
        assert stream.headers["Content-Type"] == "text/event-stream"
        await relayer.observe(env, "0xabcdef")
        (observed,) = await _events(stream, 1)
        assert observed["message_id"] == "0x" + env.message_id.hex() and observed["stage"] == "observed"
        assert [s["step"] for s in observed["journey"]] == ["sent", "final", "signed", "submitted", "confirmed"]
        assert observed["journey"][2].get("current") and observed["src_chain"] == "evm"

        # The source tx in another case finds it too (EVM hashes are hex).
        found = await (await client.get("/v1/search", params={"q": "0xABCDEF"})).json()
        assert [m["message_id"] for m in found["messages"]] == ["0x" + env.message_id.hex()]
        assert found["messages"][0]["payload"]["text"] == "msg 0" and found["tasks"] == []
        by_id = await (await client.get("/v1/search", params={"q": env.message_id.hex()})).json()
        assert by_id["messages"][0]["source_tx"] == "0xabcdef"

        per_message = await client.get(f"/v1/messages/0x{env.message_id.hex()}/events")
        (now,) = await _events(per_message, 1)  # its current state first
        assert now["stage"] == "observed"

        await relayer.process_due()  # signed, then submitted, then confirmed: each one event
        await relayer.process_due()
        await relayer.process_due()
        stages = [e["stage"] for e in await _events(stream, 3)]
        assert stages == ["ready", "submitted", "confirmed"]
        assert [e["stage"] for e in await _events(per_message, 3)] == stages
        confirmed = (await (await client.get("/v1/search", params={"q": "0xabcdef"})).json())["messages"][0]
        assert all(step["done"] for step in confirmed["journey"])
        assert confirmed["journey"][3]["tx"] == "tx0" and confirmed["confirmed_at"] >= confirmed["observed_at"]
        stream.close()
        per_message.close()


async def test_a_task_is_assembled_from_its_messages(relayer: Relayer) -> None:
    request = TaskRequest("sentiment", max_fee=10**15, deadline=int(time.time()) + 600, input=b"Markets rallied.")
    carrier = Envelope(kind=MessageKind.TASK_REQUEST, nonce=1, src_domain=SRC, src_sender=b"\x01" * 32,
                       dst_domain=DST, dst_receiver=b"\x02" * 32, payload=request.encode())
    task_id = carrier.message_id
    result = TaskResult.signed(Ed25519PrivateKey.generate(), request_id=task_id, executor="sentiment",
                               output=b'{"label":"positive"}', payout=b"\x07" * 32)
    answer = Envelope(kind=MessageKind.TASK_RESULT, nonce=0, src_domain=DST, src_sender=b"\x02" * 32,
                      dst_domain=SRC, dst_receiver=b"\x01" * 32, payload=result.encode())
    await relayer.observe(carrier, "0xrequest")
    await relayer.observe(answer, "ResultSignature111")  # no block time: no attestation derived
    async with TestClient(TestServer(build_app(relayer))) as client:
        task = await (await client.get(f"/v1/tasks/0x{task_id.hex()}")).json()
        assert task["requester_chain"] == "evm" and task["serving_chain"] == "solana"
        assert task["request"]["payload"]["executor"] == "sentiment"
        assert task["request"]["payload"]["input_text"] == "Markets rallied."
        assert task["request"]["payload"]["max_fee"] == 10**15
        assert [r["payload"]["output_text"] for r in task["results"]] == ['{"label":"positive"}']
        assert task["attestations"] == [] and task["settlement"]["state"] == "open"
        # The result's source transaction leads to the same task.
        found = await (await client.get("/v1/search", params={"q": "ResultSignature111"})).json()
        assert [t["task_id"] for t in found["tasks"]] == ["0x" + task_id.hex()]
        assert found["messages"][0]["task_id"] == "0x" + task_id.hex()
        assert (await client.get("/v1/tasks/0x" + "11" * 32)).status == 404
        assert (await client.get("/v1/tasks/0x12")).status == 400


async def test_wallet_balances_are_a_gauge_and_a_failed_read_keeps_the_last_value() -> None:
    registry = CollectorRegistry()
    answers = [{"0xAbc": 5 * 10**18}, RuntimeError("every endpoint failed")]

    async def read() -> dict[str, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    wallets = WalletBalances(registry, "relayer", [Wallet("evm", read)], interval=0.01)
    await wallets.refresh()
    await wallets.refresh()
    text = generate_latest(registry).decode()
    assert 'tessera_wallet_balance{account="0xAbc",chain="evm",daemon="relayer"} 5e+18' in text
    assert 'tessera_wallet_balance_read_errors_total{chain="evm",daemon="relayer"} 1.0' in text
