"""The SDK's feed client: read committee-signed reports from feed servers, verified before use.

    async with FeedsClient("http://127.0.0.1:7400", committee) as feeds:
        report = await feeds.latest("ETH/USD")            # verified, fresh, narrow enough, or an error
        async for update in feeds.stream(["ETH/USD", "BTC/USD"]):
            if isinstance(update, SignedReport): ...     # verified, fresh, not seen before
            elif isinstance(update, StaleEvent): ...     # stop using that feed's price
            elif isinstance(update, GapEvent): ...       # reports in [from_round, to_round] may be missed

Every report is checked against the committee key and refused when older than `max_age_s` (by its
observed_at) or when confidence / |price| exceeds `max_confidence_ratio`, so a stale or uncertain
price is never used silently. `latest` raises the typed error; `stream` yields a
`ReportRejectedEvent` carrying it (or raises with `raise_on_reject=True`) and keeps going. The
stream reconnects with backoff, resumes from the last round seen per feed, drops duplicates, and
says `StaleEvent` itself when it cannot reach any server and a feed's last report has aged past
`max_age_s`.

Several feed servers (e.g. fed by one NATS JetStream stream, docs/FEEDS.md "Fan-out through NATS
JetStream") make a stream survive a server: given several URLs, `stream` moves to the next one
whenever its server fails or closes the stream, and resumes there after the last round it took,
without gaps or duplicates (round numbers are the same on every server). Give each client the URLs
in its own order (or shuffled) to spread subscribers across the servers.

    async with FeedsClient(["http://feeds-a:7400", "http://feeds-b:7400", "http://feeds-c:7400"], committee) as f:
        async for update in f.stream(["ETH/USD"]): ...
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterable, Literal, Sequence, Union
from urllib.parse import quote

import aiohttp

from relay.aio import within
from relay.errors import TesseraError
from relay.feeds.report import ReportError
from relay.feeds.signed import SignedReport
from relay.feeds.sse import read_events
from relay.lifecycle import cancel_quietly
from relay.log import get_logger

log = get_logger("feeds.client")


class FeedClientError(TesseraError):
    """A feed request the SDK refused or could not complete."""


class ReportVerificationError(FeedClientError):
    """The report is malformed, or its signature is not the committee's: it was altered in transit or
    comes from an unknown committee (load the current committee file)."""


class StaleReportError(FeedClientError):
    """The report is older than max_age_s: the feed is not being updated."""


class ConfidenceTooWideError(FeedClientError):
    """The report's confidence interval is wider than max_confidence_ratio of its price."""


class FeedNotFoundError(FeedClientError):
    """The server does not serve this feed, or has no report for it yet."""


class FeedUnavailableError(FeedClientError):
    """No feed server answered."""


@dataclass(frozen=True, slots=True)
class GapEvent:
    """Reports with rounds in [from_round, to_round] may have been published and are not available."""

    feed_id: str
    from_round: int
    to_round: int


@dataclass(frozen=True, slots=True)
class StaleEvent:
    """The feed has had no report for too long; `source` is "server" or "client" (no server reachable)."""

    feed_id: str
    last_round: int | None
    age_ms: int | None
    source: str = "server"


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """A stale feed has a fresh report again (the report follows)."""

    feed_id: str
    round: int


@dataclass(frozen=True, slots=True)
class ReportRejectedEvent:
    """A report the client refused; `error` is a ReportVerificationError, StaleReportError or
    ConfidenceTooWideError."""

    feed_id: str
    round: int | None
    error: FeedClientError


FeedUpdate = Union[SignedReport, GapEvent, StaleEvent, LiveEvent, ReportRejectedEvent]


class _Reconnect(Exception):
    """The server asked us to go (slow consumer, shutdown): reconnect at once."""


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


class FeedsClient:
    def __init__(
        self,
        base_urls: str | Sequence[str],
        committee,
        *,
        max_age_s: float | None = 60.0,
        max_confidence_ratio: float | None = 0.05,
        timeout_s: float = 5.0,
        read_timeout_s: float = 45.0,
        reconnect_base_s: float = 0.1,
        reconnect_cap_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise FeedClientError("give at least one feed server URL, e.g. http://127.0.0.1:7400")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise FeedClientError(f"{url!r} is not an http(s) URL of a feed server")
        self.urls = [u.rstrip("/") for u in urls]
        committees = committee if isinstance(committee, (list, tuple)) else [committee]
        # Several committees (current and previous epoch) let a client ride through a rotation.
        self.committees = {c.epoch: c for c in committees}
        if max_age_s is not None and max_age_s <= 0:
            raise FeedClientError("max_age_s must be > 0 (or None to accept any age)")
        if max_confidence_ratio is not None and max_confidence_ratio < 0:
            raise FeedClientError("max_confidence_ratio must be >= 0 (or None to accept any width)")
        self.max_age_s = max_age_s
        self.max_confidence_ratio = max_confidence_ratio
        self.timeout_s = timeout_s
        self.read_timeout_s = read_timeout_s
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_cap_s = reconnect_cap_s
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self.reconnects = 0  # connections re-established by stream() (observability, tests)
        self.failovers = 0  # of those, how many went to another server of the list

    async def __aenter__(self) -> "FeedsClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    # --- checks ------------------------------------------------------------------------------

    def verify(self, report: SignedReport) -> None:
        committee = self.committees.get(report.epoch)
        if committee is None:
            raise ReportVerificationError(
                f"{report.feed_id} round {report.round} is signed by epoch {report.epoch}, but this client knows "
                f"epochs {sorted(self.committees)}; load the current committee file")
        if not report.verify(committee):
            raise ReportVerificationError(
                f"{report.feed_id} round {report.round}: the signature does not verify under the committee key of "
                f"epoch {report.epoch}; the report was altered or the server is not trustworthy")

    def check(self, report: SignedReport, now_ms: int | None = None) -> SignedReport:
        """Signature, age and confidence; returns the report or raises the typed error."""
        self.verify(report)
        now = _now_ms(self.clock) if now_ms is None else now_ms
        r = report.report
        if self.max_age_s is not None:
            age_ms = now - r.observed_at
            if age_ms > self.max_age_s * 1000:
                raise StaleReportError(
                    f"{r.feed_id} round {r.round} was observed {age_ms / 1000:.1f}s ago, more than max_age_s="
                    f"{self.max_age_s:g}; the feed is not being updated (raise max_age_s only if that is acceptable)")
        if self.max_confidence_ratio is not None:
            limit = self.max_confidence_ratio * abs(r.price)
            if r.confidence > limit:
                ratio = r.confidence / abs(r.price) if r.price else float("inf")
                raise ConfidenceTooWideError(
                    f"{r.feed_id} round {r.round}: confidence is {ratio:.4%} of the price, more than "
                    f"max_confidence_ratio={self.max_confidence_ratio:g}; the attesters' views disagree")
        return report

    def _decode(self, data: object) -> SignedReport:
        try:
            return SignedReport.from_json(data)
        except (ReportError, ValueError) as exc:
            raise ReportVerificationError(f"the server sent a malformed report: {exc}") from None

    # --- REST ----------------------------------------------------------------------------------

    async def latest(self, feed_id: str) -> SignedReport:
        """The latest report of a feed, verified, fresh and narrow enough, or the typed error."""
        errors = []
        for base in self.urls:
            try:
                async with self._http().get(f"{base}/v1/feeds/{quote(feed_id, safe='')}/latest") as resp:
                    body = await resp.json(content_type=None)
                    if resp.status == 404:
                        raise FeedNotFoundError(f"{base}: {body.get('error') if isinstance(body, dict) else body}")
                    if resp.status != 200:
                        errors.append(f"{base}: HTTP {resp.status}")
                        continue
            except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError) as exc:
                errors.append(f"{base}: {exc.__class__.__name__} {exc}".strip())
                continue
            return self.check(self._decode(body))
        raise FeedUnavailableError(f"no feed server answered for {feed_id}: {'; '.join(errors)}; check that "
                                   "`relay feed-server` is running and the URL is right")

    # --- streaming -----------------------------------------------------------------------------

    async def stream(self, ids: Iterable[str], transport: Literal["sse", "ws"] = "sse",
                     since: dict[str, int] | None = None, raise_on_reject: bool = False,
                     check_interval_s: float = 1.0) -> AsyncIterator[FeedUpdate]:
        """Verified reports and events for `ids`, for as long as the caller iterates.

        `since` resumes after the given rounds (e.g. saved from a previous run); without it each feed
        starts at its latest report."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise FeedClientError("name at least one feed to stream, e.g. stream([\"ETH/USD\"])")
        if transport not in ("sse", "ws"):
            raise FeedClientError(f"transport {transport!r} is unknown; use \"sse\" or \"ws\"")
        last: dict[str, int] = dict(since or {})
        last_seen: dict[str, SignedReport] = {}
        stale: dict[str, bool] = {}
        connected = asyncio.Event()
        queue: asyncio.Queue = asyncio.Queue(maxsize=256)
        pump = asyncio.create_task(self._pump(ids, last, transport, queue, connected))
        try:
            while True:
                try:
                    event_type, data = await within(queue.get(), check_interval_s)
                except TimeoutError:
                    if pump.done():
                        pump.result()  # re-raise what stopped it
                    if not connected.is_set():
                        for event in self._client_stale(ids, last_seen, stale):
                            yield event
                    continue
                if event_type == "fatal":
                    raise data
                fid = data.get("feed_id") if isinstance(data, dict) else None
                if event_type == "report":
                    try:
                        report = self._decode(data)
                    except ReportVerificationError as exc:
                        if raise_on_reject:
                            raise
                        yield ReportRejectedEvent(str(fid), data.get("round") if isinstance(data, dict) else None, exc)
                        continue
                    fid = report.feed_id
                    if fid not in ids or report.round <= last.get(fid, -1):
                        continue  # not ours, or already seen (resumption overlap, a second server)
                    try:
                        self.check(report)
                    except FeedClientError as exc:
                        if isinstance(exc, ReportVerificationError):
                            # A forged report must not advance the cursor and hide the real one.
                            pass
                        else:
                            last[fid] = report.round
                        if raise_on_reject:
                            raise
                        yield ReportRejectedEvent(fid, report.round, exc)
                        continue
                    last[fid] = report.round
                    last_seen[fid] = report
                    if stale.get(fid):
                        stale[fid] = False
                        yield LiveEvent(fid, report.round)
                    yield report
                elif event_type == "gap" and fid in ids:
                    from_round, to_round = int(data["from_round"]), int(data["to_round"])
                    if to_round > last.get(fid, -1):
                        last[fid] = to_round  # those rounds are gone; resume after them
                        yield GapEvent(fid, from_round, to_round)
                elif event_type == "stale" and fid in ids:
                    if not stale.get(fid):
                        stale[fid] = True
                        yield StaleEvent(fid, data.get("last_round"), data.get("age_ms"), "server")
                elif event_type == "live" and fid in ids:
                    if stale.get(fid):
                        stale[fid] = False
                        yield LiveEvent(fid, int(data["round"]))
        finally:
            await cancel_quietly(pump)

    def _client_stale(self, ids: list[str], last_seen: dict[str, SignedReport], stale: dict[str, bool]):
        if self.max_age_s is None:
            return
        now = _now_ms(self.clock)
        for fid in ids:
            report = last_seen.get(fid)
            if stale.get(fid) or report is None:
                continue
            age = now - report.report.observed_at
            if age > self.max_age_s * 1000:
                stale[fid] = True
                yield StaleEvent(fid, report.round, age, "client")

    async def _pump(self, ids: list[str], last: dict[str, int], transport: str, queue: asyncio.Queue,
                    connected: asyncio.Event) -> None:
        """Connect, read, reconnect: forever, until cancelled or a fatal answer.

        Failover: whenever a server's stream ends (it died, closed, dropped us, or never answered),
        the next connection goes to the next server of the list, so a dead server costs one attempt,
        not one per backoff step. The resumption (`since` = the last round taken per feed) is the
        same on every server: servers fed by one JetStream stream hold the same rounds, and the
        rounds a new server sends again are dropped by `stream`."""
        failures = 0
        position = 0
        first = True
        while True:
            base = self.urls[position % len(self.urls)]
            got_any = False
            try:
                reader = self._read_sse if transport == "sse" else self._read_ws
                if not first:
                    self.reconnects += 1
                first = False
                async for event_type, data in reader(base, ids, dict(last), connected):
                    got_any = True
                    failures = 0
                    await queue.put((event_type, data))
                reason = "the server closed the stream"
            except _Reconnect as exc:
                reason = str(exc)
            except FeedClientError as exc:  # the server refused the request itself: retrying will not help
                await queue.put(("fatal", exc))
                return
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, EOFError, ValueError) as exc:
                reason = f"{exc.__class__.__name__}: {exc}"
            connected.clear()
            if not got_any:
                failures += 1  # back off only while no server gives us anything
            if len(self.urls) > 1:
                position += 1
                self.failovers += 1
            delay = min(self.reconnect_cap_s, self.reconnect_base_s * 2 ** max(0, failures - 1))
            delay *= random.uniform(0.5, 1.0)  # spread the reconnections of a dead server's subscribers
            log.info("feed_stream_reconnecting", server=base, next_server=self.urls[position % len(self.urls)],
                     reason=reason, in_s=round(delay, 3))
            await asyncio.sleep(delay)

    def _stream_params(self, ids: list[str], last: dict[str, int]) -> list[tuple[str, str]]:
        params = [("id", fid) for fid in ids]  # one per parameter: ids may hold commas
        since = {fid: r for fid, r in last.items() if fid in ids}
        if since:
            params.append(("since", json.dumps(since)))
        return params

    async def _refused(self, resp: aiohttp.ClientResponse, base: str) -> None:
        text = await resp.text()
        try:
            message = json.loads(text).get("error", text)
        except (json.JSONDecodeError, AttributeError):
            message = text
        if resp.status in (400, 404):
            raise FeedNotFoundError(f"{base} refused the subscription: {message}")
        raise aiohttp.ClientResponseError(resp.request_info, resp.history, status=resp.status, message=message)

    async def _read_sse(self, base: str, ids: list[str], last: dict[str, int], connected: asyncio.Event):
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=self.read_timeout_s)
        async with self._http().get(f"{base}/v1/stream", params=self._stream_params(ids, last), timeout=timeout,
                                    headers={"Accept": "text/event-stream"}) as resp:
            if resp.status != 200:
                await self._refused(resp, base)
            connected.set()
            async for event in read_events(resp):
                if event.event == "dropped":
                    raise _Reconnect(f"dropped by the server: {event.data}")
                try:
                    yield event.event, json.loads(event.data)
                except json.JSONDecodeError:
                    log.warning("feed_stream_bad_event", server=base, event=event.event)

    async def _read_ws(self, base: str, ids: list[str], last: dict[str, int], connected: asyncio.Event):
        url = "ws" + base[len("http"):] + "/v1/ws"
        async with self._http().ws_connect(url, heartbeat=self.read_timeout_s / 3, timeout=aiohttp.ClientWSTimeout(
                ws_receive=None, ws_close=self.timeout_s)) as ws:
            since = {fid: r for fid, r in last.items() if fid in ids}
            await ws.send_json({"op": "subscribe", "ids": ids, "since": since})
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                event_type = data.get("type")
                if event_type == "error":
                    raise FeedNotFoundError(f"{base} refused the subscription: {data.get('message')}")
                if event_type == "subscribed":
                    connected.set()
                elif event_type == "report":
                    yield "report", data.get("report")
                elif event_type in ("gap", "stale", "live"):
                    yield event_type, data
            if ws.close_code == 1008:
                raise _Reconnect(f"dropped by the server: {ws.extra or 'slow consumer'}")
