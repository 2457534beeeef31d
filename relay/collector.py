"""The relayer's side of signing: ask every attester for its partial signature, verify, combine.

Partials are requested from all members at once; as soon as t have arrived they are combined
optimistically (one pairing check). Faulty partials are named, never trusted; an attester that has
not seen the message yet is asked to look at the source transaction itself (it reads its own RPC).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

import attest
from attest.committee import Committee
from relay.batch import Batch
from relay.envelope import Envelope
from relay.log import get_logger
from relay.pipeline import Collected
from relay.protocol import COMMITTEE_DOMAIN

log = get_logger("collector")


class _Unavailable(Exception):
    pass


class _Refused(Exception):
    """The member checked the message and will not sign it (HTTP 403, e.g. a wrong task result)."""


class CommitteeCollector:
    def __init__(self, committee: Committee, timeout: float = 3.0, session: aiohttp.ClientSession | None = None) -> None:
        self.committee = committee
        self.timeout = timeout
        self._session = session
        self._own_session = session is None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()

    async def _fetch(self, index: int, envelope: Envelope, source_tx: str) -> attest.PartialSignature:
        endpoint = self.committee.member(index).endpoint.rstrip("/")
        session = await self._http()
        message_id = envelope.message_id.hex()
        try:
            async with session.get(f"{endpoint}/v1/partials/0x{message_id}") as resp:
                body = await resp.json(content_type=None)
                status = resp.status
            if status == 403:
                raise _Refused(str(body.get("error", "refused")).removeprefix("refused: ")
                               if isinstance(body, dict) else "refused")
            if status == 404 and envelope.src_domain == COMMITTEE_DOMAIN:
                # A derived attestation has no source transaction of its own: the member signs it
                # once its check of the result is done (the result's own collection nudges it).
                raise _Unavailable(body.get("error", "not signed yet") if isinstance(body, dict) else "not signed yet")
            if status == 404:
                # The attester has not signed it (yet): ask it to read the source tx ITSELF.
                async with session.post(f"{endpoint}/v1/observe",
                                        json={"src_domain": envelope.src_domain, "source_tx": source_tx}) as resp:
                    observed = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise _Unavailable(observed.get("error", f"HTTP {resp.status}"))
                match = [p for p in observed.get("signed", []) if p.get("message_id", "").lower() == "0x" + message_id]
                if not match:
                    raise _Unavailable("has not observed it final yet")
                body = match[0]
            elif status != 200:
                raise _Unavailable(body.get("error", f"HTTP {status}") if isinstance(body, dict) else f"HTTP {status}")
            if int(body["epoch"]) != self.committee.epoch:
                raise _Unavailable(f"signs for epoch {body['epoch']}, committee is epoch {self.committee.epoch}")
            signature = bytes.fromhex(str(body["signature"]).removeprefix("0x"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _Unavailable(f"unreachable ({type(exc).__name__})") from None
        except (KeyError, ValueError, TypeError) as exc:
            # Garbage in the response is the member's fault: report it like a bad partial.
            raise _Unavailable(f"malformed response ({exc})") from None
        return attest.PartialSignature(index=index, signature=signature)

    async def _fetch_root(self, index: int, batch: Batch, source_txs: list[str]) -> attest.PartialSignature:
        """POST /v1/roots: the member's partial over the batch's root digest (docs/PROTOCOL.md)."""
        endpoint = self.committee.member(index).endpoint.rstrip("/")
        session = await self._http()
        request = {"src_domain": batch.src_domain, "dst_domain": batch.dst_domain,
                   "envelopes": ["0x" + e.encode().hex() for e in batch.envelopes], "source_txs": source_txs}
        try:
            async with session.post(f"{endpoint}/v1/roots", json=request) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
            if status == 409:
                raise _Refused(str(body.get("error", "refused")) if isinstance(body, dict) else "refused")
            if status != 200:
                raise _Unavailable(body.get("error", f"HTTP {status}") if isinstance(body, dict) else f"HTTP {status}")
            if int(body["epoch"]) != self.committee.epoch:
                raise _Unavailable(f"signs for epoch {body['epoch']}, committee is epoch {self.committee.epoch}")
            if bytes.fromhex(str(body["root"]).removeprefix("0x")) != batch.root:
                raise _Unavailable("answered for another root")
            signature = bytes.fromhex(str(body["signature"]).removeprefix("0x"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _Unavailable(f"unreachable ({type(exc).__name__})") from None
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise _Unavailable(f"malformed response ({exc})") from None
        return attest.PartialSignature(index=index, signature=signature)

    async def collect_root(self, batch: Batch, source_txs: list[str]) -> Collected:
        """The committee's signature over `batch.digest(epoch)`: every member asked for its partial
        over the root (it signs only if it saw every message final itself), combined as for one
        message. No signature (and the reasons) when fewer than t members sign."""
        digest = batch.digest(self.committee.epoch)
        return await self._combine(digest, lambda index: self._fetch_root(index, batch, source_txs))

    async def collect(self, envelope: Envelope, source_tx: str) -> Collected:
        digest = envelope.digest(self.committee.epoch)
        return await self._combine(digest, lambda index: self._fetch(index, envelope, source_tx))

    async def _combine(self, digest: bytes, fetch: Callable[[int], Awaitable[attest.PartialSignature]]) -> Collected:
        committee = self.committee
        tasks = {asyncio.create_task(fetch(m.index)): m.index for m in committee.members}
        partials: list[attest.PartialSignature] = []
        problems: dict[int, str] = {}
        refused: dict[int, str] = {}
        faulty: dict[int, str] = {}
        pending = set(tasks)
        # Sets of members already combined: a new set is tried even when it is no larger, e.g. once a
        # faulty member is dropped and a late honest one arrives (1, 2, 3✗ then 1, 2, 4).
        tried: set[frozenset[int]] = set()
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    index = tasks[task]
                    try:
                        partials.append(task.result())
                    except _Unavailable as exc:
                        problems[index] = str(exc)
                    except _Refused as exc:
                        refused[index] = str(exc)
                usable = [p for p in partials if p.index not in faulty]
                members = frozenset(p.index for p in usable)
                if len(usable) >= committee.t and members not in tried:
                    tried.add(members)
                    result = attest.combine(committee, digest, usable)
                    for index in result.faulty:
                        faulty[index] = "invalid partial signature"
                    if result.ok:
                        return Collected(signature=result.signature, epoch=committee.epoch, faulty=faulty)
        finally:
            for task in pending:
                task.cancel()
        valid = len([p for p in partials if p.index not in faulty])
        details = "; ".join(f"member {i}: {why}" for i, why in sorted({**problems, **faulty}.items()))
        if refused:
            details = "; ".join(filter(None, [details, f"{len(refused)} refused"]))
        return Collected(signature=None, epoch=committee.epoch, faulty=faulty, refused=refused,
                         reason=f"{valid}/{committee.t} valid partials ({details})")
