"""The DKG over HTTP: each participant serves its own messages (GET /v1/dkg/<session>/<round>) and
fetches everyone else's from the endpoints in the shared config, so a message is attributed to the
endpoint it came from (and, when the config pins identity keys, to the key that signed it). This
module only moves messages; what they mean is attest/dkg/protocol.py."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from attest.backend import Backend, get_backend
from attest.dkg.config import DKGConfig
from attest.dkg.identity import identity_public_bytes, signature_valid, signing_payload
from attest.dkg.protocol import HONEST, Conduct, DKGError, DKGResult, Done, Send, start
from attest.dkg.wire import (
    FORGED,
    MALFORMED,
    MAX_MESSAGE_BYTES,
    ROUND_CONFIRM,
    ROUND_JUSTIFY,
    ROUND_NAMES,
    envelope,
)


@dataclass
class DKGParticipant:
    """One participant: its server, its client, and the protocol state it drives. Tests subclass it
    to play participants that misbehave on the wire through `_publish`, `_serve` and `_sign` (and
    give a `conduct` to play a cheating dealer); production code never does."""

    config: DKGConfig
    index: int
    sock: socket.socket | None = None  # a pre-bound listening socket (tests use port 0)
    backend: Backend | str | None = None
    identity: Ed25519PrivateKey | None = None  # required when the config pins identity keys
    conduct: Conduct = HONEST
    _published: dict[int, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)
    _fetched_by: dict[int, set[int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.me = self.config.participant(self.index)
        self.session = self.config.session_id
        self.log = structlog.get_logger("attest.dkg", index=self.index, epoch=self.config.epoch)
        self.backend: Backend = get_backend(self.backend)
        self._confirm_peers: list[int] = []  # peers that reached round 4 (published round 3)
        self._last_errors: dict[int, str] = {}  # why a peer's message could not be fetched
        if self.config.authenticated:
            if self.identity is None:
                raise DKGError(f"the DKG config pins identity keys: give participant {self.index} its identity "
                               "key (--identity-key FILE)")
            own = identity_public_bytes(self.identity)
            if own != self.me.identity_key:
                raise DKGError(f"the identity key given to participant {self.index} is not the one the DKG config "
                               f"lists for it (0x{own.hex()}); use the matching key file or fix the config")

    async def run(self) -> DKGResult:
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        try:
            if self.sock is not None:
                site: web.BaseSite = web.SockSite(runner, self.sock)
            else:
                url = urlsplit(self.me.endpoint)
                site = web.TCPSite(runner, url.hostname, url.port)
            try:
                await site.start()
            except OSError as exc:
                raise DKGError(f"participant {self.index} cannot listen on {self.me.endpoint}: {exc.strerror}; "
                               "free the port or change the endpoint in the DKG config") from None
            timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                self._http = http
                try:
                    result = await self._drive()
                except DKGError:
                    await self._linger()  # peers still need our confirm message to reach the same verdict
                    raise
                await self._linger()
                return result
        finally:
            await runner.cleanup()

    async def _drive(self) -> DKGResult:
        """Run the protocol's transitions, exchanging each round's messages in between."""
        cfg = self.config
        self.log.info("dkg.start", n=cfg.n, t=cfg.t, session=self.session.hex()[:16])
        state, send = start(cfg, self.index, self.backend, conduct=self.conduct)
        while True:
            messages = await self._round(send)
            # In a thread: checking dealings and computing the committee is CPU work, and our server
            # must keep answering the peers meanwhile.
            step = await asyncio.to_thread(state.receive, messages, dict(self._last_errors))
            for level, event, fields in step.notes:
                getattr(self.log, level)(event, **fields)
            if isinstance(step, Done):
                result = step.result
                self.log.info("dkg.done", qual=result.qual, excluded=result.excluded,
                              confirmed_by=result.confirmed_by, group_key="0x" + result.committee.group_key.hex()[:16])
                return result
            state, send = step.state, step.send

    async def _round(self, send: Send) -> dict[int, dict[str, Any] | None]:
        if send.round == ROUND_CONFIRM:
            self._confirm_peers = list(send.peers)
        return await self._exchange(send.round, send.body, send.peers, send.timeout)

    # -- HTTP -----------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/dkg/{session}/{round}", self._serve)
        app.router.add_get("/v1/dkg/health", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"session": self.session.hex(), "index": self.index,
                                  "rounds_published": sorted(self._published)})

    async def _serve(self, request: web.Request) -> web.Response:
        if request.match_info["session"] != self.session.hex():
            return web.json_response(
                {"error": f"participant {self.index} runs DKG session {self.session.hex()}; every participant "
                          "must use the same dkg config (epoch, n, t, session, participants)"}, status=409)
        try:
            rnd = int(request.match_info["round"])
        except ValueError:
            return web.json_response({"error": "round must be an integer"}, status=400)
        message = self._published.get(rnd)
        if message is None:
            return web.json_response({"error": f"round {rnd} not published yet"}, status=404)
        requester = request.query.get("from", "")
        if requester.isdigit():
            self._fetched_by.setdefault(rnd, set()).add(int(requester))
        return web.json_response(message)

    def _publish(self, rnd: int, body: dict[str, Any]) -> dict[str, Any]:
        message = envelope(self.session, rnd, self.index, body)
        if self.identity is not None:
            message["signature"] = "0x" + self._sign(signing_payload(message)).hex()
        self._published[rnd] = message
        self.log.debug("dkg.published", round=ROUND_NAMES[rnd])
        return message

    async def _fetch(self, peer: int, rnd: int, deadline: float) -> dict[str, Any] | None:
        url = f"{self.config.participant(peer).endpoint}/v1/dkg/{self.session.hex()}/{rnd}"
        delay = 0.02
        last_error = "no answer"
        while True:
            try:
                async with self._http.get(url, params={"from": str(self.index)}) as resp:
                    raw = await _read_capped(resp)
                    if resp.status == 200:
                        try:
                            message = json.loads(raw)
                        except ValueError:
                            message = None
                        if (isinstance(message, dict) and message.get("session") == self.session.hex()
                                and message.get("round") == rnd and message.get("index") == peer
                                and isinstance(message.get("body"), dict)):
                            return message if self._authentic(peer, message) else dict(FORGED)
                        self.log.warning("dkg.bad_envelope", peer=peer, round=ROUND_NAMES[rnd])
                        return dict(MALFORMED)
                    last_error = f"HTTP {resp.status}"
                    if resp.status == 409:
                        try:
                            last_error = str(json.loads(raw)["error"])
                        except (ValueError, KeyError, TypeError):
                            pass
            except _TooLarge:
                self.log.warning("dkg.message_too_large", peer=peer, round=ROUND_NAMES[rnd])
                return dict(MALFORMED)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last_error = type(exc).__name__
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log.warning("dkg.peer_missed_round", peer=peer, round=ROUND_NAMES[rnd], last_error=last_error)
                self._last_errors[peer] = last_error
                return None
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.5)

    def _sign(self, data: bytes) -> bytes:
        assert self.identity is not None
        return self.identity.sign(data)

    def _authentic(self, peer: int, message: dict[str, Any]) -> bool:
        key = self.config.participant(peer).identity_key
        if key is None:
            return True  # unauthenticated mode: the endpoint that served it vouches for it (docs/KEYS.md)
        if not signature_valid(key, message):
            self.log.warning("dkg.bad_signature", peer=peer)
            return False
        return True

    async def _exchange(self, rnd: int, body: dict[str, Any], peers: Sequence[int],
                        timeout: float) -> dict[int, dict[str, Any] | None]:
        """Publish our message for this round, then collect every peer's (None = missed the deadline)."""
        own = self._publish(rnd, body)
        deadline = time.monotonic() + timeout
        others = [p for p in peers if p != self.index]
        fetched = await asyncio.gather(*(self._fetch(p, rnd, deadline) for p in others))
        messages: dict[int, dict[str, Any] | None] = dict(zip(others, fetched))
        messages[self.index] = own
        return messages

    async def _linger(self) -> None:
        # Our confirm message must stay up until every peer still in the protocol has read it: those
        # that published round 3 and fetched ours will come for it.
        waiting = (set(self._confirm_peers) & self._fetched_by.get(ROUND_JUSTIFY, set())) - {self.index}
        deadline = time.monotonic() + self.config.round_timeout
        while waiting - self._fetched_by.get(ROUND_CONFIRM, set()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


class _TooLarge(Exception):
    pass


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    # A peer decides how much it sends; we decide how much we hold.
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def run_participant(config: DKGConfig, index: int, sock: socket.socket | None = None,
                          backend: Backend | str | None = None,
                          identity: Ed25519PrivateKey | None = None) -> DKGResult:
    return await DKGParticipant(config, index, sock, backend, identity).run()
