"""Test doubles around `relay worker` processes: an OpenAI-compatible inference server that counts
calls, and a reader of the worker's task store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from aiohttp import web

from relay.devstack import free_port


def stages(db: Path) -> dict[bytes, tuple[str, str, int]]:
    """Every task in a worker's SQLite store: request id -> (stage, reason, runs)."""
    with sqlite3.connect(db) as conn:
        return {row[0]: (row[1], row[2], row[3]) for row in conn.execute("SELECT request_id, stage, reason, runs FROM tasks")}


class Inference:
    """An OpenAI-compatible server that counts calls per prompt. Prompts starting with "slow:"
    hang on their first call (the worker gets killed meanwhile) and answer on later ones; prompts
    starting with "gated:" answer once `gate` is set."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.gate = asyncio.Event()
        self.closing = asyncio.Event()
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        self.calls[prompt] = self.calls.get(prompt, 0) + 1
        if prompt.startswith("slow:") and self.calls[prompt] == 1:
            await self.closing.wait()  # the worker is killed meanwhile; nobody reads this answer
            return web.Response(status=503)
        if prompt.startswith("gated:"):
            await self.gate.wait()
        answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer({prompt})"}}]}
        return web.json_response(answer)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.closing.set()
        self.gate.set()
        if self.runner is not None:
            await self.runner.cleanup()

