"""The feed server: takes committee-signed reports from the round leader and serves them over REST,
Server-Sent Events and WebSocket (docs/FEEDS.md "Serving").

    settings.py     FeedServerSettings ([feed_server]) and FeedServerError
    events.py       the events a stream carries, serialised once (SSE text, its HTTP/1.1 chunk, WS message)
    subscribers.py  one subscriber class per transport (SSE, WebSocket), with its bounded queue
    history.py      per-feed state: the reports held in memory, staleness, and the SQLite history file
    metrics.py      the Prometheus metrics
    hub.py          FeedHub: verify, store and fan out reports; subscriptions and catch-up; staleness
    app.py          FeedServer: the aiohttp app (routes, WebSocket commands, openapi.json) over a hub

Fan-out: each event is serialised once and handed to every subscriber without awaiting any of them.
An SSE event goes straight into the subscriber's transport while that transport's buffer is small;
otherwise it waits in the subscriber's bounded queue, and a subscriber whose queue is full is
disconnected (SSE: closed; WS: close 1008 "slow consumer") so it can never hold the others back or
grow the server's memory.
"""

from relay.feeds.server.app import FeedServer
from relay.feeds.server.hub import FeedHub, IngestResult
from relay.feeds.server.settings import FeedServerError, FeedServerSettings

__all__ = ["FeedHub", "FeedServer", "FeedServerError", "FeedServerSettings", "IngestResult"]
