"""`http`: forwards the task input as a user message to an OpenAI-compatible inference server
(`POST /v1/chat/completions`) and returns the first choice's message content. Not deterministic:
attesters cannot re-execute it, so its results need a TEE/zk proof verifier or signature-only trust."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import aiohttp

from relay.tasks.executors import (
    ExecutorInputError,
    ExecutorOutputError,
    ExecutorTimeoutError,
    ExecutorUnavailableError,
    ExecutorUpstreamError,
    VerifyResult,
)

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024
# A chat completion response wraps the content in JSON; allow for that, but never read without bound.
_RESPONSE_OVERHEAD = 64 * 1024


def completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ExecutorUnavailableError(f"http executor base_url {base_url!r} must start with http:// or https://")
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


class ChatCompletionsExecutor:
    id = "http"
    deterministic = False

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        *,
        api_key_env: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        system_prompt: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> None:
        if not base_url or not model:
            raise ExecutorUnavailableError(
                "the http executor needs base_url and model, e.g. [executors.http] "
                'base_url = "http://127.0.0.1:8000" model = "llama-3.1-8b-instruct"'
            )
        self.url = completions_url(base_url)
        self.model = model
        self._api_key: str | None = None
        if api_key_env:
            self._api_key = os.environ.get(api_key_env)
            if not self._api_key:
                raise ExecutorUnavailableError(
                    f"the http executor reads its API key from ${api_key_env}, which is not set; export it or drop api_key_env"
                )
        if timeout <= 0 or max_output_bytes <= 0:
            raise ExecutorUnavailableError("http executor timeout and max_output_bytes must be positive")
        self.timeout = float(timeout)
        self.max_output_bytes = int(max_output_bytes)
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.temperature = temperature

    def _request_body(self, text: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": text})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": False}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    async def run(self, input: bytes, *, deadline: float | None) -> bytes:
        try:
            text = input.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExecutorInputError(f"http executor input must be UTF-8 text; byte {exc.start} is not") from None
        budget = self.timeout
        if deadline is not None:
            budget = min(budget, deadline - time.time())
            if budget <= 0:
                raise ExecutorTimeoutError("the task deadline has already passed; not calling the inference server")
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with asyncio.timeout(budget):
                async with aiohttp.ClientSession() as session:
                    async with session.post(self.url, json=self._request_body(text), headers=headers) as resp:
                        raw = await self._read_bounded(resp)
                        status = resp.status
        except TimeoutError:
            raise ExecutorTimeoutError(
                f"inference server {self.url} did not answer within {budget:.1f} s "
                f"({'task deadline' if budget < self.timeout else 'executor timeout'})"
            ) from None
        except aiohttp.ClientError as exc:
            raise ExecutorUpstreamError(f"cannot reach inference server {self.url}: {exc}") from None
        if status != 200:
            raise ExecutorUpstreamError(
                f"inference server {self.url} answered HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
            )
        content = _first_choice_content(raw, self.url)
        output = content.encode("utf-8")
        if len(output) > self.max_output_bytes:
            raise ExecutorOutputError(
                f"model output is {len(output)} bytes; this executor allows {self.max_output_bytes} "
                "(raise max_output_bytes or ask the model for less with max_tokens)"
            )
        return output

    async def _read_bounded(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.max_output_bytes * 6 + _RESPONSE_OVERHEAD  # JSON escaping can grow text up to 6x
        if resp.content_length is not None and resp.content_length > limit:
            raise ExecutorOutputError(f"inference server response is {resp.content_length} bytes; refusing more than {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ExecutorOutputError(f"inference server response exceeds {limit} bytes; refusing to read more")
            chunks.append(chunk)
        return b"".join(chunks)

    def verify(self, input: bytes, output: bytes) -> VerifyResult:
        return VerifyResult(
            False,
            "http outputs are not deterministic and cannot be re-executed; "
            "check them with a TEE or zk proof verifier plugin, or accept them on the worker's signature only",
        )


def _first_choice_content(raw: bytes, url: str) -> str:
    try:
        document = json.loads(raw)
        content = document["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ExecutorOutputError(
            f"inference server {url} did not return an OpenAI-style chat completion "
            f"(choices[0].message.content): {raw[:200].decode('utf-8', 'replace')!r}"
        ) from None
    if not isinstance(content, str):
        raise ExecutorOutputError(f"inference server {url} returned a non-text message content: {type(content).__name__}")
    return content
