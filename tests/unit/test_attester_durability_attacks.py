"""Attacks on the attester's group-committed signing log (e32cdb1, 821bc65, 8d43d7b) through its HTTP
surface, beyond tests/unit/test_signing_log_group_commit.py: routes added to the app after
build_app (as relay/daemons/messaging.py adds the rotation, feed and /metrics routes) that stream
their answer or answer through an HTTP exception still commit the log before the first byte leaves;
and remote callers asking for partials of messages the attester never saw final, or naming source
transactions it cannot find, get nothing signed and add nothing to the log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.support.fakes import SRC, envelope
from tests.unit.test_signing_log_group_commit import (
    ScriptedSource, _watch_some, attester_with, durable, durable_nonces, grouped_log, observation)


async def _client(app: web.Application) -> TestClient:
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_route_added_later_that_streams_a_signature_commits_it_before_the_first_byte(tmp_path: Path) -> None:
    db = tmp_path / "attester-1.db"
    log = grouped_log(db)
    attester = attester_with(log, ScriptedSource([observation(n) for n in range(3)]))
    _watch_some(attester, range(3))
    app = attester.build_app()
    seen_at_first_byte: list[dict[int, bytes]] = []
    release = asyncio.Event()

    async def streamed(request: web.Request) -> web.StreamResponse:
        entry = attester.signed_entry(log.by_nonce(SRC, 1, 1))  # signed now, written, not committed
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(entry.partial)
        await release.wait()  # the handler has not returned: the middleware's flush has not run
        await response.write_eof()
        return response

    async def refused(request: web.Request) -> web.Response:
        entry = attester.signed_entry(log.by_nonce(SRC, 2, 1))
        raise web.HTTPConflict(text=entry.partial.hex())  # the middleware's flush is skipped by the raise

    app.router.add_get("/later/streamed", streamed)
    app.router.add_get("/later/refused", refused)
    client = await _client(app)
    try:
        assert durable_nonces(db) == {}
        response = await client.get("/later/streamed")
        first = await response.content.readexactly(64)
        seen_at_first_byte.append(durable_nonces(db))
        release.set()
        await response.read()
        assert seen_at_first_byte[0][1] == first  # durable before the client had its first byte

        response = await client.get("/later/refused")
        assert response.status == 409
        assert durable_nonces(db)[2] == bytes.fromhex(await response.text())
    finally:
        await client.close()
        log.close()


async def test_partials_and_observations_of_messages_never_seen_final_sign_and_store_nothing(tmp_path: Path) -> None:
    db = tmp_path / "attester-1.db"
    log = grouped_log(db)
    source = ScriptedSource([observation(0)])
    attester = attester_with(log, source)
    _watch_some(attester, range(1))
    client = await _client(attester.build_app())
    try:
        assert (await client.get("/health")).status == 200  # every answer commits first
        assert durable_nonces(db) == {0: b""}  # seen final, its slot taken, no partial signed
        for nonce in range(1, 40):  # valid envelopes of this lane, never emitted on the source
            response = await client.get(f"/v1/partials/0x{envelope(nonce).message_id.hex()}")
            assert response.status == 404
        for tx in ("0xtx7", "0x" + "ab" * 32, "not a tx"):  # transactions the source does not hold
            response = await client.post("/v1/observe", json={"src_domain": SRC, "source_tx": tx})
            assert response.status == 200 and (await response.json())["signed"] == []
        assert durable_nonces(db) == {0: b""}  # nothing signed or added (not even nonce 0: never asked)
        with durable(db) as second:
            assert second.execute("SELECT count(*) FROM refusals").fetchone()[0] == 0
            assert second.execute("SELECT count(*) FROM roots").fetchone()[0] == 0
    finally:
        await client.close()
        log.close()
