"""Where an attester's prices come from: pluggable async sources, built from config by kind.

A source returns one Quote or raises SourceError saying why it has none this round; the caller
skips it and reports it (gather_quotes). Chain-reading kinds (evm_pool) live in adapters/ and
register themselves with register_source, so this module never imports a chain library.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import aiohttp

from relay.feeds.config import FeedConfig, FileSourceConfig, HttpJsonSourceConfig, SourceConfig
from relay.feeds.report import FeedError
from relay.log import get_logger

log = get_logger("feeds.sources")

Clock = Callable[[], float]  # unix seconds
MAX_BODY_BYTES = 1 << 20
# A quote stamped further ahead of our clock than this comes from a broken source (or clock).
MAX_FUTURE_SKEW_MS = 5_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class SourceError(FeedError):
    """A source has no usable quote this round; the message says why (skip it, report it)."""


@dataclass(frozen=True, slots=True)
class Quote:
    price: Decimal  # positive, finite, in the quote currency
    timestamp: int  # unix ms: when the source says the price was current


@runtime_checkable
class Source(Protocol):
    name: str

    async def fetch(self) -> Quote: ...

    async def close(self) -> None: ...


# --- shared parsing -------------------------------------------------------------------------------


def _path_tokens(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    for part in path.split("."):
        key, *indices = part.split("[")
        tokens.append(key)
        tokens.extend(int(i.rstrip("]")) for i in indices)
    return tokens


def extract(body: Any, path: str) -> Any:
    """Follow `data.amount`, `result.XXBTZUSD.c.0` or `data[0].price` into parsed JSON."""
    node = body
    walked: list[str] = []
    for token in _path_tokens(path):
        if isinstance(node, list):
            try:
                index = int(token)
                node = node[index]
            except (ValueError, IndexError):
                where = ".".join(walked) or "the top level"
                raise SourceError(f"path {path}: {where} is a list of {len(node)}, {token!r} is not an index in it") from None
        elif isinstance(node, dict):
            if str(token) not in node:
                where = ".".join(walked) or "the top level"
                keys = ", ".join(sorted(map(str, node))[:8])
                raise SourceError(f"path {path}: no key {token!r} at {where} (keys: {keys})")
            node = node[str(token)]
        else:
            raise SourceError(f"path {path}: {'.'.join(walked)} is a {type(node).__name__}, not an object or list")
        walked.append(str(token))
    return node


def parse_price(value: Any, where: str = "price") -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal, float)):
        raise SourceError(f"{where} is {type(value).__name__} {value!r}, not a number")
    try:
        price = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise SourceError(f"{where} {value!r} is not a number") from None
    if not price.is_finite():
        raise SourceError(f"{where} is {value!r}, not a finite number")
    if price <= 0:
        raise SourceError(f"{where} {value!r} is not a positive price")
    return price


def parse_timestamp(value: Any, fmt: str, where: str = "timestamp") -> int:
    """Unix ms from unix seconds, unix ms or an ISO 8601 string."""
    try:
        if fmt == "iso8601":
            if not isinstance(value, str):
                raise ValueError
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)  # exchanges that omit the zone mean UTC
            return (moment - _EPOCH) // timedelta(milliseconds=1)  # exact, unlike float seconds
        if isinstance(value, bool):
            raise ValueError
        number = Decimal(value.strip() if isinstance(value, str) else value)
        if not number.is_finite() or number < 0:
            raise ValueError
        return int(number * 1000) if fmt == "unix_s" else int(number)
    except (ValueError, TypeError, InvalidOperation, OverflowError):
        raise SourceError(f"{where} {value!r} is not a {fmt} timestamp") from None


def check_fresh(quote: Quote, now_ms: int, max_age_s: float) -> Quote:
    age = now_ms - quote.timestamp
    if age > max_age_s * 1000:
        raise SourceError(f"quote is stale: {age / 1000:.1f} s old, max_age_s is {max_age_s:g}")
    if -age > MAX_FUTURE_SKEW_MS:
        raise SourceError(f"quote is {-age / 1000:.1f} s in the future; the source's clock (or ours) is wrong")
    return quote


def _reject_constant(name: str) -> Any:
    raise SourceError(f"body holds the non-JSON number {name}")


# --- http_json ------------------------------------------------------------------------------------


class HttpJsonSource:
    """GET a JSON ticker and read the price (and optionally its time) at configured paths."""

    def __init__(
        self, config: HttpJsonSourceConfig, name: str, session: aiohttp.ClientSession | None = None, clock: Clock = time.time
    ) -> None:
        self.config = config
        self.name = name
        self._session = session
        self._own_session = session is None
        self._clock = clock

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    async def fetch(self) -> Quote:
        cfg = self.config
        session = await self._http()
        try:
            async with session.get(
                cfg.url, headers=cfg.headers, timeout=aiohttp.ClientTimeout(total=cfg.timeout_s)
            ) as resp:
                if resp.status != 200:
                    raise SourceError(f"GET {cfg.url} answered HTTP {resp.status}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise SourceError(f"GET {cfg.url}: body exceeds {MAX_BODY_BYTES} bytes; is this a ticker URL?")
                    chunks.append(chunk)
                raw = b"".join(chunks)
        except asyncio.TimeoutError:
            raise SourceError(f"GET {cfg.url} timed out after {cfg.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise SourceError(f"GET {cfg.url} failed: {exc.__class__.__name__}: {exc}") from None
        received_ms = int(self._clock() * 1000)
        try:
            # Decimal keeps every digit the exchange sent; a float would round it.
            body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            preview = raw[:60].decode("utf-8", errors="replace")
            raise SourceError(f"GET {cfg.url}: body is not JSON ({exc.msg if hasattr(exc, 'msg') else exc}): {preview!r}") from None
        price = parse_price(extract(body, cfg.price_path), f"price at {cfg.price_path}")
        if cfg.timestamp_path is None:
            timestamp = received_ms
        else:
            timestamp = parse_timestamp(extract(body, cfg.timestamp_path), cfg.timestamp_format, f"timestamp at {cfg.timestamp_path}")
        return check_fresh(Quote(price, timestamp), received_ms, cfg.max_age_s)


# --- file -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    offset_ms: int  # since the first record
    price: Decimal


class FileSource:
    """A recorded series replayed in time: the record current `elapsed · speed` after the start.

    Quotes are re-stamped on today's clock (start + offset / speed), so staleness works as for a
    live source: a non-looping replay that ran out keeps its last price until it goes stale.
    """

    def __init__(self, config: FileSourceConfig, name: str, clock: Clock = time.time) -> None:
        self.config = config
        self.name = name
        self._clock = clock
        self._records = self._load()
        self._start: float | None = None

    def _load(self) -> list[_Record]:
        cfg = self.config
        try:
            text = cfg.path.read_text()
        except OSError as exc:
            raise SourceError(f"cannot read recording {cfg.path}: {exc.strerror}") from None
        rows: list[tuple[int, Any]] = []
        if cfg.resolved_format == "csv":
            for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
                rows.append((line, row))
        else:
            for line, raw in enumerate(text.splitlines(), start=1):
                if raw.strip():
                    try:
                        rows.append((line, json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)))
                    except json.JSONDecodeError as exc:
                        raise SourceError(f"{cfg.path}:{line}: not JSON ({exc.msg})") from None
        parsed: list[tuple[int, Decimal]] = []
        for line, row in rows:
            if not isinstance(row, dict) or cfg.price_field not in row or cfg.timestamp_field not in row:
                raise SourceError(f"{cfg.path}:{line}: needs fields {cfg.timestamp_field!r} and {cfg.price_field!r}")
            try:
                ts = parse_timestamp(row[cfg.timestamp_field], "unix_s", f"{cfg.path}:{line} timestamp")
                price = parse_price(row[cfg.price_field], f"{cfg.path}:{line} price")
            except SourceError as exc:
                raise SourceError(f"{exc}; fix the recording") from None
            parsed.append((ts, price))
        if not parsed:
            raise SourceError(f"recording {cfg.path} holds no records")
        if any(b[0] < a[0] for a, b in zip(parsed, parsed[1:])):
            raise SourceError(f"recording {cfg.path} is not in time order")
        first = parsed[0][0]
        return [_Record(ts - first, price) for ts, price in parsed]

    @property
    def span_ms(self) -> int:
        # A loop restarts one median-ish step after the last record, not on top of it.
        step = self._records[1].offset_ms if len(self._records) > 1 else 1000
        return self._records[-1].offset_ms + max(step, 1)

    async def close(self) -> None:
        return None

    async def fetch(self) -> Quote:
        now = self._clock()
        if self._start is None:
            self._start = now
        elapsed_ms = int((now - self._start) * 1000 * self.config.speed)
        loop_start = 0
        if self.config.loop:
            loop_start = elapsed_ms - elapsed_ms % self.span_ms
        position = elapsed_ms - loop_start
        current = self._records[0]
        for record in self._records:
            if record.offset_ms > position:
                break
            current = record
        stamped = self._start + (loop_start + current.offset_ms) / 1000 / self.config.speed
        return check_fresh(Quote(current.price, int(stamped * 1000)), int(now * 1000), self.config.max_age_s)


# --- registry -------------------------------------------------------------------------------------


SourceFactory = Callable[..., Source]  # (config, name, **options) -> Source
_FACTORIES: dict[str, SourceFactory] = {
    "http_json": lambda config, name, session=None, clock=time.time, **_: HttpJsonSource(config, name, session, clock),
    "file": lambda config, name, clock=time.time, **_: FileSource(config, name, clock),
}


def register_source(kind: str, factory: SourceFactory) -> None:
    """Add (or replace) the implementation of a source kind; adapters/ registers evm_pool."""
    _FACTORIES[kind] = factory


# Source kinds that read a chain live in adapters/ and register themselves when loaded.
_CHAIN_SOURCE_LOADERS = {"evm_pool": "adapters.registry.register_feed_sources(config)"}


def source_kinds() -> list[str]:
    return sorted(_FACTORIES)


def build_source(config: SourceConfig, name: str, **options: Any) -> Source:
    factory = _FACTORIES.get(config.kind)
    if factory is None:
        loader = _CHAIN_SOURCE_LOADERS.get(config.kind)
        raise SourceError(
            f"source {name}: kind {config.kind!r} has no implementation loaded"
            + (f" (it reads a chain: it comes with adapters/; call {loader} first)" if loader else "")
        )
    return factory(config, name, **options)


def build_sources(feed: FeedConfig, **options: Any) -> dict[str, Source]:
    return {name: build_source(cfg, name, **options) for name, cfg in zip(feed.source_names(), feed.sources)}


@dataclass(frozen=True, slots=True)
class QuoteSet:
    quotes: dict[str, Quote] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # source name -> why it was skipped


async def gather_quotes(sources: Mapping[str, Source]) -> QuoteSet:
    """Ask every source at once; a failing source is skipped and named, never fatal."""
    names = list(sources)
    results = await asyncio.gather(*(sources[n].fetch() for n in names), return_exceptions=True)
    quotes: dict[str, Quote] = {}
    failures: dict[str, str] = {}
    for name, result in zip(names, results):
        if isinstance(result, Quote):
            quotes[name] = result
        elif isinstance(result, SourceError):
            failures[name] = str(result)
        elif isinstance(result, Exception):
            failures[name] = f"unexpected {type(result).__name__}: {result}"
        else:
            raise result  # cancellation and other BaseExceptions are not a source's fault
    for name, reason in failures.items():
        log.warning("source_skipped", source=name, reason=reason)
    return QuoteSet(quotes, failures)
