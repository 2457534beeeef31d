"""The attester daemon (`relay attester`): watches every configured chain ITSELF, signs a partial
only for an envelope it observed final on its source chain, and serves its partials over HTTP.

It never trusts the relayer's view of a chain: a relayer may ask it to look at a source
transaction (`POST /v1/observe`), but the attester reads that transaction from its own RPC
endpoints and applies its own finality rule before signing anything.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

from aiohttp import web

from attest.signing_log import EquivocationError, SignedEntry, SigningLog
from relay.chains import ChainAdapter, Observation
from relay.lifecycle import keep_running, run_until_stopped
from relay.log import get_logger

log = get_logger("attester")

Signer = Callable[[bytes], bytes]  # digest -> partial signature (G1, 64 bytes)


class RateLimiter:
    """Sliding one-second window; keeps a noisy relayer from making us hammer our own RPC."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._hits: deque[float] = deque()

    def allow(self) -> bool:
        now = time.monotonic()
        while self._hits and now - self._hits[0] > 1.0:
            self._hits.popleft()
        if len(self._hits) >= self.per_second:
            return False
        self._hits.append(now)
        return True


class Attester:
    def __init__(
        self,
        index: int,
        epoch: int,
        sign: Signer,
        adapters: dict[int, ChainAdapter],
        signing_log: SigningLog,
        observe_rate: float = 20.0,
    ) -> None:
        self.index = index
        self.epoch = epoch
        self._sign = sign
        self.adapters = adapters
        self.signing_log = signing_log
        self._observe_limiter = RateLimiter(observe_rate)
        self.log = log.bind(member=index)

    async def run(self, stop: asyncio.Event) -> None:
        await run_until_stopped(stop, *(
            keep_running(f"watch {a.name}", lambda a=a: self._watch(a), self.log) for a in self.adapters.values()))

    async def _watch(self, adapter: ChainAdapter) -> None:
        name = f"watch:{adapter.domain}"
        cursor = self.signing_log.get_cursor(name)
        self.log.info("watching", chain=adapter.name, cursor=cursor)
        async for observation in adapter.watch(cursor):
            self.attest(observation, adapter)
            self.signing_log.set_cursor(name, observation.cursor)

    def attest(self, observation: Observation, adapter: ChainAdapter) -> SignedEntry | None:
        env = observation.envelope
        if env.src_domain != adapter.domain:
            # The gateway stamps its own domain; anything else is forged or misconfigured.
            self.log.error("refused: wrong source domain", chain=adapter.name, claimed=env.src_domain,
                           msg_id=env.message_id.hex())
            return None
        if env.dst_domain not in self.adapters:
            self.log.warning("refused: unknown destination", dst=env.dst_domain, msg_id=env.message_id.hex())
            return None
        message_id = env.message_id
        try:
            existing = self.signing_log.check(env.src_domain, env.nonce, message_id, self.epoch)
        except EquivocationError as exc:
            self.log.critical("refused to equivocate", reason=str(exc))
            return None
        if existing is not None:
            return existing
        partial = self._sign(env.digest(self.epoch))
        entry = self.signing_log.record(SignedEntry(
            src_domain=env.src_domain, nonce=env.nonce, message_id=message_id, epoch=self.epoch,
            partial=partial, source_tx=observation.source_tx, signed_at=time.time(),
        ))
        self.log.info("signed", msg_id=message_id.hex(), src=env.src_domain, nonce=env.nonce, tx=observation.source_tx)
        return entry

    async def observe_tx(self, src_domain: int, source_tx: str) -> list[SignedEntry]:
        adapter = self.adapters.get(src_domain)
        if adapter is None:
            raise web.HTTPBadRequest(text=f'{{"error": "this attester does not watch domain {src_domain}"}}',
                                     content_type="application/json")
        entries = []
        for observation in await adapter.reobserve(source_tx):
            entry = self.attest(observation, adapter)
            if entry is not None:
                entries.append(entry)
        return entries

    def build_app(self) -> web.Application:
        routes = web.RouteTableDef()

        def partial_json(entry: SignedEntry) -> dict:
            return {"member": self.index, "epoch": entry.epoch, "message_id": "0x" + entry.message_id.hex(),
                    "signature": "0x" + entry.partial.hex()}

        @routes.get("/health")
        async def health(request: web.Request) -> web.Response:
            return web.json_response({"ok": True, "member": self.index, "epoch": self.epoch})

        @routes.get("/v1/partials/{message_id}")
        async def partial(request: web.Request) -> web.Response:
            try:
                message_id = bytes.fromhex(request.match_info["message_id"].removeprefix("0x"))
                assert len(message_id) == 32
            except (ValueError, AssertionError):
                return web.json_response({"error": "message id must be 32 bytes of hex"}, status=400)
            entry = self.signing_log.by_message(message_id, self.epoch)
            if entry is None:
                return web.json_response(
                    {"error": "not signed: this attester has not observed the message final on its source chain"},
                    status=404)
            return web.json_response(partial_json(entry))

        @routes.post("/v1/observe")
        async def observe(request: web.Request) -> web.Response:
            if not self._observe_limiter.allow():
                return web.json_response({"error": "too many observe requests; retry later"}, status=429)
            try:
                body = await request.json()
                src_domain, source_tx = int(body["src_domain"]), str(body["source_tx"])
            except (ValueError, KeyError, TypeError):
                return web.json_response({"error": 'body must be {"src_domain": int, "source_tx": str}'}, status=400)
            try:
                entries = await self.observe_tx(src_domain, source_tx)
            except web.HTTPException:
                raise
            except Exception as exc:
                self.log.warning("re-observation failed", src=src_domain, tx=source_tx, error=str(exc))
                return web.json_response({"error": f"could not read the transaction: {exc}"}, status=503)
            return web.json_response({"signed": [partial_json(e) for e in entries]})

        app = web.Application(client_max_size=16 * 1024)
        app.add_routes(routes)
        return app
