"""bench/loadgen.py's pieces that need no chain: CPU accounting per process and the JSON-RPC batch."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.loadgen import LoadError, Rpc, cpu_seconds, process_cpu

# Burns 0.3 CPU-s of its own (not wall time: the machine may be busy), then sleeps.
BUSY_THEN_SLEEP = "import time\nwhile time.process_time() < 0.3: pass\nprint('busy done', flush=True)\ntime.sleep(30)\n"


def test_a_named_child_is_counted_under_its_own_name_not_its_parents():
    child = subprocess.Popen([sys.executable, "-c", BUSY_THEN_SLEEP], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "busy done"
        me = os.getpid()
        named = process_cpu({"me": me, "child": child.pid})
        alone = process_cpu({"me": me})
        assert named["child"] >= 0.28  # its busy loop (clock ticks of 10 ms)
        assert alone["me"] - named["me"] >= 0.28  # unnamed, it is added to its parent; named, it is not
    finally:
        child.kill()
        child.wait()


def test_cpu_seconds_of_a_process_that_is_gone_is_none():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    time.sleep(0.05)
    assert cpu_seconds(child.pid) is None


async def test_rpc_batch_returns_results_in_order_and_names_the_call_that_failed():
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        replies = []
        for call in reversed(body):  # out of order: matched by id
            if call["method"] == "bad":
                replies.append({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": "nope"}})
            else:
                replies.append({"jsonrpc": "2.0", "id": call["id"], "result": call["params"][0]})
        return web.json_response(replies)

    app = web.Application()
    app.router.add_post("/", handle)
    async with TestServer(app, port=0) as server:
        rpc = Rpc(str(server.make_url("/")))
        try:
            assert await rpc.batch([("echo", [1]), ("echo", [2]), ("echo", [3])]) == [1, 2, 3]
            with pytest.raises(LoadError, match="bad failed: .*nope"):
                await rpc.batch([("echo", [1]), ("bad", [2])])
        finally:
            await rpc.close()
