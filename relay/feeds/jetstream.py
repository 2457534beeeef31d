"""Feed fan-out through NATS JetStream (docs/FEEDS.md "Fan-out through NATS JetStream").

Round leaders publish each signed report to one JetStream stream; any number of feed servers read
the whole stream (relay/feeds/server/consumer.py) and serve their own subscribers. What is shared by
both sides lives here: the subject of a feed, the message id that makes a round's report unique in
the stream, the stream's definition (created by whichever side comes first, left alone when it
exists) and the leaders' publisher.

    subject     <prefix>.<hex of the feed id>      (feed ids may hold '.', '*', '>' or spaces)
    msg id      <feed id>:<round>                  (JetStream keeps the first report of a round)
    stream      every <prefix>.> subject, file storage, RETAINED_PER_FEED reports per feed

The stream is only a carrier: a feed server verifies every report against the committee key
before it serves it, so a message put on the stream by anyone else is refused there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from nats.aio.client import Client as Nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from relay.errors import ConfigError, TesseraError
from relay.feeds.config import DEFAULT_NATS_STREAM, DEFAULT_NATS_SUBJECT
from relay.feeds.signed import SignedReport
from relay.log import get_logger

log = get_logger("feeds.jetstream")

# What the stream keeps when this code creates it (an operator may create it beforehand with other
# limits, e.g. replicas = 3 in a NATS cluster; an existing stream is used as it is).
RETAINED_PER_FEED = 1000  # as many as a feed server's default history_size: a new server fills it
RETAINED_FOR_S = 24 * 3600
DUPLICATE_WINDOW_S = 120  # two leaders publishing one round within this keep only the first
CONNECT_TIMEOUT_S = 2.0  # one attempt at one server
FIRST_CONNECT_TIMEOUT_S = 5.0  # every server of the list, at start-up
PUBLISH_TIMEOUT_S = 1.0  # one attempt; a timed-out publish is tried PUBLISH_ATTEMPTS times in all
PUBLISH_ATTEMPTS = 3


class JetStreamError(ConfigError):
    """NATS cannot be reached at start-up, or its stream cannot carry the feeds."""


class PublishError(TesseraError):
    """A report did not reach the stream (not connected, no acknowledgement in time)."""


def report_subject(prefix: str, feed_id: str) -> str:
    return f"{prefix}.{feed_id.encode().hex()}"


def report_msg_id(report: SignedReport) -> str:
    return f"{report.feed_id}:{report.round}"


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Where the reports go: NATS servers (several: the client fails over), stream and subject prefix."""

    urls: tuple[str, ...]
    stream: str = DEFAULT_NATS_STREAM
    subject: str = DEFAULT_NATS_SUBJECT

    @classmethod
    def from_section(cls, section) -> "StreamSettings | None":
        """From `[feed_round]` or `[feed_server]` (their nats_urls, nats_stream, nats_subject); None
        when nats_urls is empty (the embedded default: reports are POSTed to the feed servers)."""
        if not section.nats_urls:
            return None
        return cls(tuple(section.nats_urls), section.nats_stream, section.nats_subject)

    @property
    def shown_urls(self) -> str:
        """The URLs for logs and errors without secrets: nats://user:***@host, and a token
        (nats://token@host) as ***."""
        shown = []
        for url in self.urls:
            parts = urlsplit(url)
            host = parts.netloc.rpartition("@")[2]
            if parts.password is not None:
                url = parts._replace(netloc=f"{parts.username}:***@{host}").geturl()
            elif parts.username is not None:
                url = parts._replace(netloc=f"***@{host}").geturl()
            shown.append(url)
        return ", ".join(shown)

    @property
    def wildcard(self) -> str:
        return f"{self.subject}.>"


async def connect(settings: StreamSettings, name: str) -> Nats:
    """A NATS connection that reconnects forever once made; an error naming the URLs if none answers now."""

    errors: list[Exception] = []

    async def quiet(exc: Exception) -> None:  # nats-py reports each failed (re)connection attempt
        errors[:] = [exc]
        log.warning("nats_error", error=f"{type(exc).__name__}: {exc}")

    async def disconnected() -> None:
        if not client.is_closed:  # closing on purpose says nothing
            log.warning("nats_disconnected", name=name)

    async def reconnected() -> None:
        log.info("nats_reconnected", name=name, server=str(client.connected_url.netloc if client.connected_url else ""))

    client = Nats()
    try:
        # With reconnection forever, nats-py also retries the first connection forever: bound it here.
        await asyncio.wait_for(client.connect(
            servers=list(settings.urls), name=name, connect_timeout=CONNECT_TIMEOUT_S,
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            error_cb=quiet, disconnected_cb=disconnected, reconnected_cb=reconnected,
        ), FIRST_CONNECT_TIMEOUT_S)
    except (NatsError, OSError, asyncio.TimeoutError) as exc:
        with contextlib.suppress(Exception):
            await client.close()
        cause = errors[0] if errors else exc
        raise JetStreamError(f"cannot reach NATS at {settings.shown_urls} ({type(cause).__name__}: {cause}); "
                             "start nats-server with JetStream (nats-server -js -sd <dir>) or fix nats_urls") from None
    return client


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create the stream when it does not exist; check that an existing one carries our subjects."""
    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        config = StreamConfig(
            name=settings.stream, subjects=[settings.wildcard], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, max_msgs_per_subject=RETAINED_PER_FEED, max_age=RETAINED_FOR_S,
            discard=DiscardPolicy.OLD, duplicate_window=DUPLICATE_WINDOW_S,
        )
        try:
            await js.add_stream(config)
            log.info("nats_stream_created", stream=settings.stream, subjects=settings.wildcard,
                     retained_per_feed=RETAINED_PER_FEED)
            return
        except BadRequestError:  # created meanwhile by another leader or feed server
            info = await js.stream_info(settings.stream)
    subjects = info.config.subjects or []
    if settings.wildcard not in subjects and f"{settings.subject}.*" not in subjects and ">" not in subjects:
        raise JetStreamError(f"the NATS stream {settings.stream} holds subjects {subjects}, not {settings.wildcard}: "
                             "set nats_subject to one of them or name another nats_stream")


class ReportPublisher:
    """A round leader's side: every signed report to the stream, awaiting JetStream's acknowledgement.

    Connects in the background (an attester must start and sign messages while NATS is down);
    until then, and while disconnected, a publish fails at once and is counted by the caller."""

    def __init__(self, settings: StreamSettings, name: str = "tessera-feed-rounds") -> None:
        self.settings = settings
        self.name = name
        self._client: Nats | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Task | None = None

    def start(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect_until_done())

    async def _connect_until_done(self) -> None:
        delay = 0.5
        while True:
            client: Nats | None = None
            try:
                client = await connect(self.settings, self.name)
                js = client.jetstream()
                await ensure_stream(js, self.settings)
                self._client, self._js = client, js
                log.info("nats_publisher_ready", urls=self.settings.shown_urls, stream=self.settings.stream)
                return
            except (JetStreamError, NatsError, OSError, asyncio.TimeoutError) as exc:
                if client is not None and not client.is_closed:
                    await client.close()
                log.warning("nats_publisher_connect_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)

    @property
    def ready(self) -> bool:
        return self._js is not None and self._client is not None and self._client.is_connected

    async def wait_ready(self, timeout: float) -> None:
        self.start()
        assert self._connecting is not None
        await asyncio.wait_for(asyncio.shield(self._connecting), timeout)

    async def publish(self, report: SignedReport) -> int:
        """Publish one report; returns its stream sequence (a duplicate of the round returns the first's)."""
        if self._js is None:
            raise PublishError(f"not connected to NATS at {self.settings.shown_urls} yet")
        body = json.dumps(report.to_json(), separators=(",", ":")).encode()
        # A timeout says nothing about whether the stream stored the report: try again. The message
        # id makes that safe — the stream keeps the first copy and acks a repeat as a duplicate.
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                ack = await self._js.publish(report_subject(self.settings.subject, report.feed_id), body,
                                             timeout=PUBLISH_TIMEOUT_S, stream=self.settings.stream,
                                             headers={"Nats-Msg-Id": report_msg_id(report)})
                return ack.seq
            except (NatsTimeoutError, asyncio.TimeoutError) as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    raise PublishError(f"{type(exc).__name__}: {exc} ({attempt} attempts of "
                                       f"{PUBLISH_TIMEOUT_S:.0f}s)") from None
            except NatsError as exc:
                raise PublishError(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            try:
                await self._connecting
            except asyncio.CancelledError:
                pass
        if self._client is not None and not self._client.is_closed:
            await self._client.drain()
        self._client = self._js = None
        self._connecting = None
