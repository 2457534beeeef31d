"""What the feed server streams: each event serialised once, in every form a subscriber may need
(the SSE text, the same as one HTTP/1.1 chunk, the WebSocket message), then handed to every
subscriber as is."""

from __future__ import annotations

import json
from dataclasses import dataclass

from relay.feeds.signed import SignedReport
from relay.feeds.sse import encode_event


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # report | stale | live | gap | dropped
    feed_id: str
    data: dict
    sse: bytes  # the complete SSE event
    sse_chunk: bytes  # the same as one HTTP/1.1 chunk (what aiohttp's chunked writer would send)
    ws: str


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n"


def make_event(event_type: str, feed_id: str, data: dict, event_id: str | None = None) -> Event:
    body = json.dumps(data, separators=(",", ":"))
    sse = encode_event(body, event=event_type, id=event_id)
    if event_type == "report":
        ws = '{"type":"report","report":' + body + "}"
    else:
        ws = json.dumps({"type": event_type, **data}, separators=(",", ":"))
    return Event(event_type, feed_id, data, sse, _chunk(sse), ws)


def event_id(feed_id: str, round_: int) -> str:
    return f"{feed_id}:{round_}"


def parse_event_id(value: str) -> tuple[str, int] | None:
    # Feed ids may hold ':'; the round is whatever follows the last one.
    feed_id, sep, round_ = value.strip().rpartition(":")
    # ASCII digits only ("²".isdigit() holds but int() refuses it), and no more than a u64 has.
    if not sep or not feed_id or not (round_.isascii() and round_.isdigit()) or len(round_) > 20:
        return None
    return feed_id, int(round_)


def report_event(report: SignedReport) -> Event:
    return make_event("report", report.feed_id, report.to_json(), event_id(report.feed_id, report.round))


def gap_event(feed_id: str, from_round: int, to_round: int) -> Event:
    """Reports with rounds in [from_round, to_round] may exist that this server cannot replay."""
    return make_event("gap", feed_id, {"feed_id": feed_id, "from_round": from_round, "to_round": to_round})


def live_event(feed_id: str, round_: int) -> Event:
    return make_event("live", feed_id, {"feed_id": feed_id, "round": round_})


def stale_event(feed_id: str, last_round: int | None, age_ms: int | None, stale_after_ms: int) -> Event:
    return make_event("stale", feed_id, {
        "feed_id": feed_id,
        "last_round": last_round,
        "age_ms": age_ms,
        "stale_after_ms": stale_after_ms,
    })


def dropped_event(reason: str) -> Event:
    """The last event a too-slow subscriber gets before its stream is closed."""
    return make_event("dropped", "", {"reason": reason})
