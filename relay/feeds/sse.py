"""Server-Sent Events, both ways: the one encoder the feed server frames its stream with, and the one
reader every consumer parses a stream with (the SDK client, the pusher, tests, bench).

    async for event in read_events(response):      # an aiohttp response to GET /v1/stream
        print(event.event, event.id, json.loads(event.data))

The reader follows the WHATWG "event stream interpretation": lines end in LF, CRLF or CR; a blank
line dispatches the event; `data:` lines are joined with "\\n"; `event:` names the event ("message"
when absent); `id:` sets the last event id (kept across events, as a reconnecting client sends it in
Last-Event-ID); `retry:` sets the reconnection delay; lines starting with ":" are comments
(keep-alives) and are skipped; unknown fields are ignored; an event cut off by the end of the stream
is dropped. `SseDecoder` is the same reader without I/O: feed it bytes as they arrive.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp.http_exceptions import LineTooLong

__all__ = ["SseDecoder", "SseError", "SseEvent", "encode_comment", "encode_event", "read_events"]

# A peer decides how much it sends; we decide how much we hold before an event is complete.
MAX_EVENT_BYTES = 1 << 20
_LINE_END = re.compile(r"\r\n|\r|\n")


class SseError(ValueError):
    """The stream is not a usable event stream (an event larger than the reader holds)."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # the `event:` field, "message" when the event had none
    data: str  # the `data:` lines joined with "\n"
    id: str | None = None  # this event's own `id:` field (None when it had none)


def encode_event(data: str | None = None, *, event: str | None = None, id: str | None = None,
                 retry: int | None = None) -> bytes:
    """One event as it goes on the wire: `id`, `event`, `retry`, then one `data:` line per line of
    `data`, and the blank line that dispatches it. With only `retry`, a reconnection-delay hint."""
    for name, value in (("id", id), ("event", event)):
        if value is not None and _LINE_END.search(value):
            raise ValueError(f"an SSE {name} cannot hold a line break: {value!r}")
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    if data is not None:
        lines.extend(f"data: {line}" for line in _LINE_END.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def encode_comment(text: str = "") -> bytes:
    """A comment line: readers skip it; it keeps proxies and read timeouts from closing a quiet stream."""
    return "".join(f": {line}\n" for line in _LINE_END.split(text)).encode() + b"\n"


class SseDecoder:
    """Incremental SSE parser: `feed(bytes)` returns the events those bytes completed."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None  # the server's last `retry:` hint
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._buffer = ""  # the current, unfinished line
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._buffer + self._utf8.decode(chunk)
        if not self._started and text:
            text = text.removeprefix("\ufeff")
            self._started = True
        # A CR at the very end may be the first half of a CRLF: wait for the next byte before ending the line.
        held = "\r" if text.endswith("\r") else ""
        lines = _LINE_END.split(text[: len(text) - len(held)])
        self._buffer = lines.pop() + held
        events = [event for event in map(self._line, lines) if event is not None]
        if len(self._buffer) + sum(len(d) for d in self._data) > self.max_event_bytes:
            raise SseError(f"an event exceeds {self.max_event_bytes} bytes; is this a feed server's stream?")
        return events

    def close(self) -> list[SseEvent]:
        """The end of the stream: a held CR ends its line after all; an unfinished event is dropped."""
        events = []
        if self._buffer.endswith("\r"):
            events = [e for e in map(self._line, _LINE_END.split(self._buffer[:-1])) if e is not None]
        self._buffer, self._data, self._event, self._id = "", [], "", None
        return events

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event, event_id = self._data, self._event, self._id
        self._data, self._event, self._id = [], "", None
        if not data:
            return None
        return SseEvent(event or "message", "\n".join(data), event_id)


async def read_events(response: aiohttp.ClientResponse, *,
                      max_event_bytes: int = MAX_EVENT_BYTES) -> AsyncIterator[SseEvent]:
    """The events of a `text/event-stream` response as they arrive, until the server closes it.

    Reads line by line and stops reading at each event it yields: a caller may stop iterating and
    later call read_events again on the same response, to get the events that follow."""
    decoder = SseDecoder(max_event_bytes)
    while True:
        try:
            line = await response.content.readuntil(b"\n", max_size=max_event_bytes)
        except LineTooLong:
            raise SseError(f"a line exceeds {max_event_bytes} bytes; is this a feed server's stream?") from None
        if not line:
            for event in decoder.close():
                yield event
            return
        for event in decoder.feed(line):
            yield event
