"""Tessera configuration (TOML), validated at start with errors that name the bad field.

The file has one table per chain under `[chains.<name>]`, a `[committee]` table and a `[relayer]`
table. `relay localnet up` writes a complete one; `configs/` holds examples for real networks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relay.configfile import format_validation_error, read_toml
from relay.errors import ConfigError
from relay.feeds.config import FeedTables, resolve_feed_paths

U32_MAX = 2**32 - 1
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_urls(urls: list[str], schemes: tuple[str, ...]) -> list[str]:
    for url in urls:
        if not url.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(f"{url!r} is not a {'/'.join(schemes)} URL")
    return urls


class KeyRef(_Model):
    """Where a private key comes from: a file, or an environment variable. Never inline."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "KeyRef":
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of `file` or `env`")
        return self

    def describe(self) -> str:
        return f"file {self.file}" if self.file else f"environment variable {self.env}"

    def read_text(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set: export it with the key")
            return value.strip()
        assert self.file is not None
        try:
            return self.file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read key file {self.file}: {exc.strerror}") from None


class EvmChain(_Model):
    kind: Literal["evm"]
    domain: Annotated[int, Field(ge=0, le=U32_MAX)]
    chain_id: Annotated[int, Field(ge=1)]
    rpc_urls: Annotated[list[str], Field(min_length=1)]
    ws_urls: list[str] = []
    # Blocks on top of the one holding the event before it counts as final; or use the node's
    # `finalized` tag (None = tag).
    confirmations: Annotated[int, Field(ge=0)] | None = None
    contracts: dict[str, str] = {}
    signer: KeyRef | None = None  # the relayer's account (pays for deliveries)
    sender: KeyRef | None = None  # the SDK's account for sending messages (default: signer)

    _rpc = field_validator("rpc_urls")(lambda cls, v: _check_urls(v, ("http", "https")))
    _ws = field_validator("ws_urls")(lambda cls, v: _check_urls(v, ("ws", "wss")))

    @field_validator("contracts")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            if not _EVM_ADDRESS.match(address):
                raise ValueError(f"{name}: {address!r} is not a 0x-prefixed 20-byte address")
        return value


class SolanaChain(_Model):
    kind: Literal["solana"]
    domain: Annotated[int, Field(ge=0, le=U32_MAX)]
    rpc_urls: Annotated[list[str], Field(min_length=1)]
    ws_urls: list[str] = []
    commitment: Literal["processed", "confirmed", "finalized"] = "finalized"
    program_id: str | None = None
    accounts: dict[str, str] = {}
    signer: KeyRef | None = None  # the relayer's fee payer
    sender: KeyRef | None = None  # the SDK's keypair for sending messages (default: signer)

    _rpc = field_validator("rpc_urls")(lambda cls, v: _check_urls(v, ("http", "https")))
    _ws = field_validator("ws_urls")(lambda cls, v: _check_urls(v, ("ws", "wss")))

    @field_validator("program_id")
    @classmethod
    def _program_id(cls, value: str | None) -> str | None:
        if value is not None and not _BASE58.match(value):
            raise ValueError(f"{value!r} is not a base58 Solana public key")
        return value


Chain = Annotated[Union[EvmChain, SolanaChain], Field(discriminator="kind")]


class CommitteeRef(_Model):
    file: Path
    # This member's encrypted key share (attesters only); `{index}` is replaced by the member
    # index, so one config can serve a whole localnet committee.
    share: Path | None = None
    # What unlocks the share: a 32-byte key file, or a password from a file or an env variable.
    key_file: Path | None = None
    password: KeyRef | None = None

    def share_path(self, index: int) -> Path:
        if self.share is None:
            raise ConfigError("committee.share is not set: point it at this member's encrypted share file")
        return Path(str(self.share).replace("{index}", str(index)))


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value


class RelayerSection(_Model):
    db: Path = Path("relayer.db")
    listen: str = "127.0.0.1:7300"
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    retry_base_s: Annotated[float, Field(gt=0)] = 0.5
    retry_cap_s: Annotated[float, Field(gt=0)] = 60.0
    max_attempts: Annotated[int, Field(ge=1)] = 12
    partial_timeout_s: Annotated[float, Field(gt=0)] = 3.0

    _listen = field_validator("listen")(lambda cls, v: _check_listen(v))


class AttesterSection(_Model):
    # `{index}` in db is replaced by the member index, so one file serves a whole localnet committee.
    db: str = "attester-{index}.db"
    max_observe_requests_per_s: Annotated[float, Field(gt=0)] = 20.0


class WorkerSection(_Model):
    """`[worker]`: the task worker daemon (`relay worker`, relay/tasks/worker.py). Owned by the worker."""


class FeedRoundSection(_Model):
    """`[feed_round]`: how attesters run feed rounds among themselves (relay/feeds/round.py)."""


class FeedServerSection(_Model):
    """`[feed_server]`: the feed server daemon (relay/feeds/server.py)."""


class FeedPushSection(_Model):
    """`[feed_push]`: the on-chain pusher (relay/feeds/push.py)."""


class TesseraConfig(_Model):
    chains: dict[str, Chain]
    committee: CommitteeRef | None = None
    relayer: RelayerSection = RelayerSection()
    attester: AttesterSection = AttesterSection()
    feeds: FeedTables = {}
    feed_round: FeedRoundSection = FeedRoundSection()
    feed_server: FeedServerSection = FeedServerSection()
    feed_push: FeedPushSection = FeedPushSection()
    worker: WorkerSection | None = None
    # `[executors.<id>]`: options for each executor, passed to its factory as keywords.
    executors: dict[str, dict] = {}
    state_dir: Path | None = None

    @model_validator(mode="after")
    def _unique_domains(self) -> "TesseraConfig":
        seen: dict[int, str] = {}
        for name, chain in self.chains.items():
            if chain.domain in seen:
                raise ValueError(f"chains.{name}.domain {chain.domain} is also used by chains.{seen[chain.domain]}")
            seen[chain.domain] = name
        return self

    def chain_by_domain(self, domain: int) -> tuple[str, EvmChain | SolanaChain]:
        for name, chain in self.chains.items():
            if chain.domain == domain:
                return name, chain
        raise ConfigError(f"no configured chain has domain {domain}; add it under [chains.<name>]")


def parse_config(data: dict, source: str = "config") -> TesseraConfig:
    try:
        return TesseraConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_config(path: str | os.PathLike[str]) -> TesseraConfig:
    path = Path(path)
    data = read_toml(path, "run `relay localnet up` to generate one, or copy one from configs/")
    config = parse_config(data, str(path))
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: TesseraConfig, base: Path) -> TesseraConfig:
    """Relative paths in a config file are relative to the file, not to the working directory."""

    def fix(value: Path | None) -> Path | None:
        return base / value if value is not None and not value.is_absolute() else value

    def fix_key(ref: KeyRef | None) -> KeyRef | None:
        return ref.model_copy(update={"file": fix(ref.file)}) if ref is not None else None

    chains = {
        name: chain.model_copy(update={"signer": fix_key(chain.signer), "sender": fix_key(chain.sender)})
        for name, chain in config.chains.items()
    }
    update: dict = {
        "chains": chains,
        "state_dir": fix(config.state_dir),
        "relayer": config.relayer.model_copy(update={"db": fix(config.relayer.db)}),
        "feeds": resolve_feed_paths(config.feeds, base),
        "attester": config.attester.model_copy(
            update={"db": config.attester.db if Path(config.attester.db).is_absolute() else str(base / config.attester.db)}
        ),
    }
    if config.committee is not None:
        update["committee"] = config.committee.model_copy(
            update={
                "file": fix(config.committee.file),
                "share": fix(config.committee.share),
                "key_file": fix(config.committee.key_file),
                "password": fix_key(config.committee.password),
            }
        )
    return config.model_copy(update=update)


def dump_config(config: TesseraConfig, path: str | os.PathLike[str]) -> None:
    """Write atomically, so a reader never sees half a file."""
    path = Path(path)
    data = config.model_dump(mode="json", exclude_none=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(tomli_w.dumps(data))
    os.replace(tmp, path)
