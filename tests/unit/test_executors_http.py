"""The `http` executor against a real OpenAI-compatible server started by the test (aiohttp,
loopback only, port chosen by the OS)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from relay.tasks import (
    ExecutorInputError,
    ExecutorOutputError,
    ExecutorTimeoutError,
    ExecutorUnavailableError,
    ExecutorUpstreamError,
)
from relay.tasks.chat import ChatCompletionsExecutor


def completion(content: object) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": "tiny",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }


@dataclass
class Server:
    url: str
    mode: str = "ok"
    content: object = "The answer is 42."
    requests: list[dict] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(url="")

    async def chat(request: web.Request) -> web.StreamResponse:
        state.requests.append({"body": await request.json(), "auth": request.headers.get("Authorization")})
        if state.mode == "500":
            return web.Response(status=500, text="model crashed")
        if state.mode == "slow":
            # Held until the test ends, bounded so a broken test cannot hang the suite.
            try:
                await asyncio.wait_for(state.release.wait(), 5)
            except TimeoutError:
                pass
            return web.json_response(completion("too late"))
        if state.mode == "garbage":
            return web.Response(text="{not json", content_type="application/json")
        if state.mode == "wrong-shape":
            return web.json_response({"choices": []})
        if state.mode == "huge-body":
            return web.Response(body=b" " * (2 * 1024 * 1024), content_type="application/json")
        return web.json_response(completion(state.content))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


def executor(server: Server, **options: object) -> ChatCompletionsExecutor:
    return ChatCompletionsExecutor(server.url, "tiny", **options)  # type: ignore[arg-type]


async def test_returns_the_first_choice_and_sends_an_openai_request(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_TEST_LLM_KEY", "sk-local")
    http = executor(server, api_key_env="TESSERA_TEST_LLM_KEY", system_prompt="Be brief.", max_tokens=32, temperature=0)
    out = await http.run("What is 6×7?".encode(), deadline=time.time() + 10)
    assert out == b"The answer is 42."
    (seen,) = server.requests
    assert seen["auth"] == "Bearer sk-local"
    assert seen["body"] == {
        "model": "tiny",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6×7?"}],
        "stream": False,
        "max_tokens": 32,
        "temperature": 0,
    }


async def test_base_url_may_end_in_v1_and_no_key_sends_no_header(server: Server) -> None:
    http = ChatCompletionsExecutor(server.url + "/v1/", "tiny")
    assert await http.run(b"hi", deadline=None) == b"The answer is 42."
    assert server.requests[0]["auth"] is None
    assert server.requests[0]["body"]["messages"] == [{"role": "user", "content": "hi"}]


async def test_server_error_is_reported_with_status_and_body(server: Server) -> None:
    server.mode = "500"
    with pytest.raises(ExecutorUpstreamError, match="answered HTTP 500: model crashed"):
        await executor(server).run(b"hi", deadline=None)


async def test_deadline_bounds_the_call(server: Server) -> None:
    server.mode = "slow"
    started = time.monotonic()
    with pytest.raises(ExecutorTimeoutError, match="task deadline"):
        await executor(server, timeout=30).run(b"hi", deadline=time.time() + 0.3)
    assert time.monotonic() - started < 2


async def test_executor_timeout_applies_without_a_deadline(server: Server) -> None:
    server.mode = "slow"
    started = time.monotonic()
    with pytest.raises(ExecutorTimeoutError, match="executor timeout"):
        await executor(server, timeout=0.3).run(b"hi", deadline=None)
    assert time.monotonic() - started < 2


async def test_past_deadline_does_not_call_the_server(server: Server) -> None:
    with pytest.raises(ExecutorTimeoutError, match="already passed"):
        await executor(server).run(b"hi", deadline=time.time() - 1)
    assert server.requests == []


@pytest.mark.parametrize("mode", ["garbage", "wrong-shape"])
async def test_malformed_responses_are_refused(server: Server, mode: str) -> None:
    server.mode = mode
    with pytest.raises(ExecutorOutputError, match=r"OpenAI-style chat completion \(choices\[0\].message.content\)"):
        await executor(server).run(b"hi", deadline=None)


async def test_non_text_content_is_refused(server: Server) -> None:
    server.content = {"parts": ["x"]}
    with pytest.raises(ExecutorOutputError, match="non-text message content: dict"):
        await executor(server).run(b"hi", deadline=None)


async def test_oversize_output_is_refused(server: Server) -> None:
    server.content = "é" * 600  # 1,200 bytes of UTF-8
    with pytest.raises(ExecutorOutputError, match="1200 bytes; this executor allows 1000"):
        await executor(server, max_output_bytes=1000).run(b"hi", deadline=None)
    assert await executor(server, max_output_bytes=1200).run(b"hi", deadline=None) == ("é" * 600).encode()


async def test_oversize_response_body_is_not_read_whole(server: Server) -> None:
    server.mode = "huge-body"
    with pytest.raises(ExecutorOutputError, match="refusing"):
        await executor(server, max_output_bytes=1000).run(b"hi", deadline=None)


async def test_unreachable_server_and_bad_input() -> None:
    with socket.socket() as probe:  # a port the OS just handed out and nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = ChatCompletionsExecutor(f"http://127.0.0.1:{port}", "tiny", timeout=2)
    with pytest.raises(ExecutorUpstreamError, match="cannot reach inference server"):
        await http.run(b"hi", deadline=None)
    with pytest.raises(ExecutorInputError, match="UTF-8"):
        await http.run(b"\xff", deadline=None)


def test_configuration_errors_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ExecutorUnavailableError, match=r"\$TESSERA_TEST_MISSING_KEY, which is not set"):
        ChatCompletionsExecutor("http://127.0.0.1:1", "m", api_key_env="TESSERA_TEST_MISSING_KEY")
    with pytest.raises(ExecutorUnavailableError, match="must start with http"):
        ChatCompletionsExecutor("127.0.0.1:1", "m")
    verdict = ChatCompletionsExecutor("http://127.0.0.1:1", "m").verify(b"q", b"a")
    assert not verdict.ok and "cannot be re-executed" in verdict.reason
