"""A feed server fed by NATS JetStream (`[feed_server] nats_urls`; relay/feeds/jetstream.py).

Each feed server reads the whole stream through its own *ordered consumer*: an ephemeral push
consumer without acknowledgements that the client re-creates from the last stream sequence it saw
whenever a message goes missing or heartbeats stop (a NATS restart or failover). That fits what a
feed server is:
  - every server needs every report (fan-out, not work sharing): no queue group, no shared durable;
  - the cursor that matters is the hub's history, not state kept in NATS: at start the consumer
    replays everything the stream retains, reports already held (from the SQLite history, or also
    POSTed) are passed over before their signature is checked, and the rest fill the history;
  - nothing to name, clean up or leak per server: any number of servers come and go.
A durable consumer would only resume where the previous run of the same server stopped, which is
wrong for a restarted server whose in-memory history is empty.

Every message goes through the hub's checks (the committee's signature, the feed, newer rounds
only), so a forged message on the stream is refused here like a forged POST.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy

from relay.feeds.jetstream import StreamSettings, connect, ensure_stream
from relay.feeds.server.hub import FeedHub
from relay.log import get_logger

log = get_logger("feeds.server")

IDLE_HEARTBEAT_S = 1.0  # two missed heartbeats and the ordered consumer is re-created
PENDING_MSGS_LIMIT = 100_000  # messages nats-py may hold for us during catch-up


class StreamConsumer:
    """Reads the JetStream stream into a FeedHub: set up with `start`, stopped with `close`."""

    def __init__(self, hub: FeedHub, settings: StreamSettings, name: str = "tessera-feed-server") -> None:
        self.hub = hub
        self.settings = settings
        self.name = name
        self.stream_seq = 0  # the last stream sequence handled
        self.pending: int | None = None  # messages still to come, as JetStream last said
        self.caught_up = asyncio.Event()  # the stream's retained messages at start-up are all in the hub
        self._target = 0
        self._client: Nats | None = None
        self._sub = None

    async def start(self) -> None:
        """Connect (an error naming the URLs when NATS is unreachable), create the stream if missing,
        then subscribe from the stream's first retained message."""
        self._client = await connect(self.settings, self.name)
        js = self._client.jetstream()
        try:
            await ensure_stream(js, self.settings)
            info = await js.stream_info(self.settings.stream)
            self._target = info.state.last_seq
            if info.state.messages == 0:
                self._mark_caught_up()
            self._sub = await js.subscribe(
                self.settings.wildcard, stream=self.settings.stream, cb=self._on_message, ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL, idle_heartbeat=IDLE_HEARTBEAT_S,
                pending_msgs_limit=PENDING_MSGS_LIMIT,
            )
        except BaseException:
            await self._client.close()
            raise
        log.info("nats_consuming", stream=self.settings.stream, subjects=self.settings.wildcard,
                 retained=info.state.messages, last_seq=info.state.last_seq)

    async def _on_message(self, msg: Msg) -> None:
        meta = msg.metadata
        received_ms = int(meta.timestamp.timestamp() * 1000)
        self.hub.ingest_stream(msg.data, received_ms)  # a refusal is logged and counted by the hub
        self.stream_seq = meta.sequence.stream
        self.pending = meta.num_pending
        if not self.caught_up.is_set():
            if meta.num_pending == 0 or self.stream_seq >= self._target:
                self._mark_caught_up()
            else:
                # Catch-up hands over messages without a pause: let the HTTP side serve in between.
                await asyncio.sleep(0)

    def _mark_caught_up(self) -> None:
        self.caught_up.set()
        log.info("nats_caught_up", stream=self.settings.stream, stream_seq=self.stream_seq,
                 reports=sum(len(s.history) for s in self.hub.feeds.values()))

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def status(self) -> dict:
        """For GET /health: a load balancer may hold back traffic until `caught_up`."""
        return {"connected": self.connected, "stream": self.settings.stream, "stream_seq": self.stream_seq,
                "pending": self.pending, "caught_up": self.caught_up.is_set()}

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or client.is_closed:
            return
        try:
            if self._sub is not None:
                await self._sub.unsubscribe()
        except (NatsError, asyncio.TimeoutError):
            pass  # the connection is going anyway
        await client.close()
