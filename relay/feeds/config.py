"""Feed configuration: one `[feeds.<id>]` TOML table per feed, validated with errors naming the field.

    [feeds."ETH/USD"]
    description = "Ether in US dollars"
    decimals = 8
    deviation_bps = 50        # push on-chain when the price moved 0.5 % ...
    heartbeat_s = 3600        # ... or when the last push is an hour old
    min_sources = 2           # an attester needs 2 working sources for its own observation
    tolerance_bps = 100       # refuse to sign a median more than 1 % away from my own view
    sources = [
      { kind = "http_json", url = "https://api.coinbase.com/v2/prices/ETH-USD/spot", price_path = "data.amount" },
      { kind = "http_json", url = "https://api.kraken.com/0/public/Ticker?pair=ETHUSD", price_path = "result.XETHZUSD.c.0" },
    ]

The table key is the feed id (quote it when it holds a slash). See docs/FEEDS.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from relay.configfile import check_urls, format_validation_error, read_toml
from relay.errors import ConfigError
from relay.feeds.report import FEED_ID_LEN, MAX_DECIMALS

_FEED_ID = re.compile(r"^[\x20-\x7e]{1,32}$")
# A path into a JSON body: dotted keys, list indices as bare numbers or [n] (result.XXBTZUSD.c.0, data[0].price).
_JSON_PATH = re.compile(r"^[^.\[\]]+(\[\d+\])*(\.[^.\[\]]+(\[\d+\])*)*$")
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_feed_id(value: str) -> str:
    if not _FEED_ID.match(value) or value != value.strip():
        raise ValueError(
            f"feed id {value!r} must be 1..{FEED_ID_LEN} printable ASCII characters without surrounding spaces "
            "(e.g. \"ETH/USD\")"
        )
    return value


def _check_path(value: str) -> str:
    if not _JSON_PATH.match(value):
        raise ValueError(f"{value!r} is not a JSON path: use dotted keys and indices, e.g. data.amount or result.XXBTZUSD.c.0")
    return value


class HttpJsonSourceConfig(_Model):
    kind: Literal["http_json"]
    name: str | None = None
    url: str
    price_path: str
    timestamp_path: str | None = None  # without it the quote is stamped with the time it arrived
    timestamp_format: Literal["unix_s", "unix_ms", "iso8601"] = "unix_s"
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    max_age_s: Annotated[float, Field(gt=0)] = 60.0  # older quotes are stale and skipped
    headers: dict[str, str] = {}

    _price = field_validator("price_path")(lambda cls, v: _check_path(v))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http/https URL")
        return value

    @field_validator("timestamp_path")
    @classmethod
    def _ts_path(cls, value: str | None) -> str | None:
        return None if value is None else _check_path(value)


class FileSourceConfig(_Model):
    """A recorded series (CSV with a header row, or JSON lines) replayed in real time."""

    kind: Literal["file"]
    name: str | None = None
    path: Path
    format: Literal["csv", "jsonl"] | None = None  # None: from the file suffix
    price_field: str = "price"
    timestamp_field: str = "timestamp"  # unix seconds (fractions allowed) in the recording
    loop: bool = True
    speed: Annotated[float, Field(gt=0)] = 1.0  # 2.0 replays twice as fast as recorded
    max_age_s: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="after")
    def _known_format(self) -> "FileSourceConfig":
        if self.format is None and self.path.suffix.lower() not in (".csv", ".jsonl"):
            raise ValueError(f"path: cannot tell the format of {self.path.name}; name it .csv or .jsonl or set `format`")
        return self

    @property
    def resolved_format(self) -> str:
        return self.format or self.path.suffix.lower().lstrip(".")


class EvmPoolSourceConfig(_Model):
    """A Uniswap-v2-style pool on a configured EVM chain; implemented in adapters/ (needs web3)."""

    kind: Literal["evm_pool"]
    name: str | None = None
    chain: str  # a [chains.<name>] of the main config
    pool: str
    base_decimals: Annotated[int, Field(ge=0, le=36)] = 18
    quote_decimals: Annotated[int, Field(ge=0, le=36)] = 18
    invert: bool = False  # price = reserve0/reserve1 instead of reserve1/reserve0
    max_age_s: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        if not _EVM_ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a 0x-prefixed 20-byte address")
        return value


SourceConfig = Annotated[Union[HttpJsonSourceConfig, FileSourceConfig, EvmPoolSourceConfig], Field(discriminator="kind")]


class FeedConfig(_Model):
    id: str
    description: str = ""
    decimals: Annotated[int, Field(ge=0, le=MAX_DECIMALS)]
    sources: Annotated[list[SourceConfig], Field(min_length=1)]
    deviation_bps: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    heartbeat_s: Annotated[int, Field(ge=1)] = 3600
    min_sources: Annotated[int, Field(ge=1)] = 1
    tolerance_bps: Annotated[int, Field(ge=0, le=10_000)] = 100

    _id = field_validator("id")(lambda cls, v: check_feed_id(v))

    @model_validator(mode="after")
    def _consistent(self) -> "FeedConfig":
        if self.min_sources > len(self.sources):
            raise ValueError(
                f"min_sources: {self.min_sources} exceeds the {len(self.sources)} configured sources; "
                "add sources or lower min_sources"
            )
        names = self.source_names()
        if len(set(names)) != len(names):
            raise ValueError(f"sources: names must be unique, got {names}")
        return self

    def source_names(self) -> list[str]:
        return [s.name or f"{s.kind}[{i}]" for i, s in enumerate(self.sources)]


def _ids_from_keys(data: object) -> object:
    # The table key is the id; an explicit `id` inside the table must agree with it.
    if not isinstance(data, dict):
        return data
    feeds = {}
    for key, table in data.items():
        if isinstance(table, dict):
            if "id" in table and table["id"] != key:
                raise ValueError(f"{key}.id: {table['id']!r} differs from the table key {key!r}; drop `id`")
            table = {**table, "id": key}
        feeds[key] = table
    return feeds


# The type of a `feeds` field: relay.config.TesseraConfig can hold `feeds: FeedTables = {}` as is.
FeedTables = Annotated[dict[str, FeedConfig], BeforeValidator(_ids_from_keys)]


class FeedsConfig(_Model):
    feeds: FeedTables = {}


def parse_feeds(data: dict, source: str = "config") -> dict[str, FeedConfig]:
    """The `[feeds]` tables of a parsed Tessera config (other tables are ignored here)."""
    try:
        return FeedsConfig.model_validate({"feeds": data.get("feeds", {})}).feeds
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_feeds(path: str | os.PathLike[str]) -> dict[str, FeedConfig]:
    """The feeds of a config file (a whole Tessera config, or one holding only `[feeds]` tables)."""
    path = Path(path)
    return resolve_feed_paths(parse_feeds(read_toml(path), str(path)), path.parent)


def resolve_feed_paths(feeds: dict[str, FeedConfig], base: Path) -> dict[str, FeedConfig]:
    """Recorded files are relative to the config file, like every other path in it."""
    return {
        fid: feed.model_copy(
            update={
                "sources": [
                    s.model_copy(update={"path": base / s.path})
                    if isinstance(s, FileSourceConfig) and not s.path.is_absolute()
                    else s
                    for s in feed.sources
                ]
            }
        )
        for fid, feed in feeds.items()
    }


# NATS JetStream fan-out (relay/feeds/jetstream.py): where leaders publish and feed servers read.
DEFAULT_NATS_STREAM = "TESSERA_FEEDS"
DEFAULT_NATS_SUBJECT = "tessera.feeds"
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUBJECT_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def _check_stream_name(value: str) -> str:
    if not _STREAM_NAME.match(value):
        raise ValueError(f"{value!r} is not a JetStream stream name: use letters, digits, '-' and '_' (e.g. TESSERA_FEEDS)")
    return value


def _check_subject_prefix(value: str) -> str:
    if not _SUBJECT_PREFIX.match(value):
        raise ValueError(f"{value!r} is not a NATS subject prefix: dot-separated tokens of letters, digits, '-' and '_' "
                         "without wildcards (e.g. tessera.feeds)")
    return value


NatsUrls = Annotated[list[str], AfterValidator(lambda v: check_urls(v, ("nats", "tls")))]
NatsStreamName = Annotated[str, AfterValidator(_check_stream_name)]
NatsSubjectPrefix = Annotated[str, AfterValidator(_check_subject_prefix)]


class FeedRoundSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    """`[feed_round]`: how attesters run feed rounds among themselves (relay/feeds/round.py)."""

    # Round r starts at r · interval_ms on every member's clock: members agree without talking.
    interval_ms: Annotated[int, Field(ge=50, le=3_600_000)] = 1000
    # The leader waits this long after the t-th observation for the rest (0: build at once).
    collect_ms: Annotated[int, Field(ge=0, le=60_000)] = 50
    # A member that sent its observation and saw no proposal this long moves to the next leader.
    leader_timeout_ms: Annotated[int, Field(ge=10, le=60_000)] = 250
    # Where the leader POSTs each signed report (a feed server's /v1/reports; a bare host gets it appended).
    publish_urls: list[str] = []
    # An attester refuses a report whose published_at is further than this from its own clock.
    max_skew_ms: Annotated[int, Field(ge=0)] = 10_000
    # NATS servers of the JetStream stream the leader also publishes each report to (docs/FEEDS.md
    # "Fan-out through NATS JetStream"); feed servers with the same [feed_server] nats_* read it.
    nats_urls: NatsUrls = []
    nats_stream: NatsStreamName = DEFAULT_NATS_STREAM
    nats_subject: NatsSubjectPrefix = DEFAULT_NATS_SUBJECT
    # "root": the leader asks for one committee signature over the feed root of every report it
    # built in a round (docs/FEEDS.md "One signature per round"); "report": one signature per report.
    sign: Literal["root", "report"] = "root"

    _publish = field_validator("publish_urls")(lambda cls, v: check_urls(v, ("http", "https")))

    @model_validator(mode="after")
    def _leader_waits_less_than_members(self) -> "FeedRoundSection":
        if self.collect_ms >= self.leader_timeout_ms:
            raise ValueError(
                f"collect_ms ({self.collect_ms}) must be below leader_timeout_ms ({self.leader_timeout_ms}): "
                "members would move to the next leader before this one proposes"
            )
        return self
