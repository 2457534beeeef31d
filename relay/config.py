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

from attest.files import write_atomic
from relay.configfile import check_listen, check_urls, format_validation_error, read_toml
from relay.errors import ConfigError
from relay.feeds.config import (DEFAULT_NATS_STREAM, DEFAULT_NATS_SUBJECT, FeedRoundSection, FeedTables, NatsStreamName,
                                NatsSubjectPrefix, NatsUrls, resolve_feed_paths)

U32_MAX = 2**32 - 1
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    _rpc = field_validator("rpc_urls")(lambda cls, v: check_urls(v, ("http", "https")))
    _ws = field_validator("ws_urls")(lambda cls, v: check_urls(v, ("ws", "wss")))

    @staticmethod
    def parse_address(text: str) -> bytes:
        """A 0x-prefixed 20-byte address in its 32-byte wire form (left-padded with zeros)."""
        if not _EVM_ADDRESS.match(text):
            raise ValueError(f"{text!r} is not a 0x-prefixed 20-byte EVM address")
        return b"\x00" * 12 + bytes.fromhex(text[2:])

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

    _rpc = field_validator("rpc_urls")(lambda cls, v: check_urls(v, ("http", "https")))
    _ws = field_validator("ws_urls")(lambda cls, v: check_urls(v, ("ws", "wss")))

    @staticmethod
    def parse_address(text: str) -> bytes:
        """A base58 public key as its 32 bytes."""
        if not _BASE58.match(text):
            raise ValueError(f"{text!r} is not a base58 Solana public key")
        return _b58_to_32(text)

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


def is_database_url(db: str | Path) -> bool:
    """A `db` setting naming a PostgreSQL database (else it is an SQLite file path)."""
    return str(db).startswith(("postgresql://", "postgres://"))


class RelayerSection(_Model):
    # An SQLite file (relative to the config file), or a PostgreSQL URL that several relayer
    # replicas share (docs/DEPLOY.md): each replica then needs its own `replica` name and signer keys.
    db: str = "relayer.db"
    replica: str | None = None  # this relayer's name among replicas of one database (default host:pid)
    lease_s: Annotated[float, Field(gt=0)] = 60.0  # a dead replica's messages go to another after this
    listen: str = "127.0.0.1:7300"
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    retry_base_s: Annotated[float, Field(gt=0)] = 0.5
    retry_cap_s: Annotated[float, Field(gt=0)] = 60.0
    max_attempts: Annotated[int, Field(ge=1)] = 12
    partial_timeout_s: Annotated[float, Field(gt=0)] = 3.0
    # Guards the operator routes of the HTTP API (POST /v1/messages/{id}/retry): with it, callers send
    # `Authorization: Bearer <token>`; without it those routes answer only callers on this machine.
    admin_token: KeyRef | None = None

    _listen = field_validator("listen")(lambda cls, v: check_listen(v))


class AttesterSection(_Model):
    # `{index}` in db is replaced by the member index, so one file serves a whole localnet committee.
    # A PostgreSQL URL instead lets a member run active + standby replicas on one signing log.
    db: str = "attester-{index}.db"
    max_observe_requests_per_s: Annotated[float, Field(gt=0)] = 20.0


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58_to_32(text: str) -> bytes:
    # relay/ never imports solders, so a Solana key is decoded here (big base58 integer).
    number = 0
    for ch in text:
        number = number * 58 + _B58_ALPHABET.index(ch)
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    raw = b"\x00" * (len(text) - len(text.lstrip("1"))) + raw
    if len(raw) != 32:
        raise ValueError(f"{text!r} decodes to {len(raw)} bytes, not a 32-byte Solana key")
    return raw


class WorkerSection(_Model):
    """`[worker]`: the task worker daemon (`relay worker`, relay/tasks/worker.py). Owned by the worker.

    `{chain}` in `db` and `key_file` is replaced by the served chain's name, so one config can run
    one worker per chain."""

    db: str = "worker-{chain}.db"
    key_file: str = "keys/worker-{chain}.key"  # Ed25519 seed (`relay worker keygen`): the worker identity
    # The account that submits results on an EVM chain / pays fees on Solana. Deliberately not the
    # relayer's signer or the SDK's sender: sharing an account makes the processes fight over nonces.
    evm_key: KeyRef | None = None
    solana_keypair: KeyRef | None = None
    executors: Annotated[list[str], Field(min_length=1)] = ["echo", "sentiment"]
    # Where requesters pay: chain name -> address on that chain (0x EVM address or base58 key).
    payout: dict[str, str] = {}
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    min_fee: Annotated[int, Field(ge=0)] = 0  # smallest unit of the requester chain's token
    min_time_left_s: Annotated[float, Field(ge=0)] = 5.0  # skip requests whose deadline is closer
    input_fetch_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    max_input_bytes: Annotated[int, Field(ge=1)] = 1024 * 1024
    listen: str | None = None  # host:port for /health, /metrics and /v1/outputs; None = no HTTP server
    # Public base URL of `listen` as requesters and attesters reach it. When set, outputs too large
    # to travel inline are served at <output_url>/v1/outputs/0x<output_hash> and sent by URI.
    output_url: str | None = None

    _listen = field_validator("listen")(lambda cls, v: v if v is None else check_listen(v))

    @field_validator("output_url")
    @classmethod
    def _output_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_urls([value], ("http", "https"))
            value = value.rstrip("/")
        return value

    @model_validator(mode="after")
    def _output_url_needs_listen(self) -> "WorkerSection":
        if self.output_url is not None and self.listen is None:
            raise ValueError("output_url is set but listen is not: outputs are served by the worker's HTTP server, "
                             "so set listen = \"host:port\" too")
        return self

    @field_validator("payout")
    @classmethod
    def _payout_format(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            if not (_EVM_ADDRESS.match(address) or _BASE58.match(address)):
                raise ValueError(f"payout.{name}: {address!r} is neither a 0x EVM address nor a base58 Solana key")
        return value

    def path_for(self, template: str, chain: str) -> Path:
        return Path(template.replace("{chain}", chain))

    def payout_by_domain(self, config: "TesseraConfig") -> dict[int, bytes]:
        """Payout addresses as the 32-byte wire form, keyed by the requester chain's domain; each is
        checked against its chain's kind."""
        payouts: dict[int, bytes] = {}
        for name, address in self.payout.items():
            chain = config.chains.get(name)
            if chain is None:
                raise ConfigError(f"worker.payout.{name}: no chain {name!r} under [chains]; use a configured chain name")
            try:
                payouts[chain.domain] = chain.parse_address(address)
            except ValueError as exc:
                raise ConfigError(f"worker.payout.{name}: {exc}; give the address on chain {name!r} that receives "
                                  "payouts") from None
        return payouts


class FeedServerSection(_Model):
    """`[feed_server]`: the feed server daemon (relay/feeds/server/)."""

    listen: str = "127.0.0.1:7400"
    history_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000  # reports kept per feed
    # A feed with no report this long is stale (None: 3 × [feed_round] interval_ms); per-feed overrides below.
    stale_after_s: Annotated[float, Field(gt=0)] | None = None
    stale_after: dict[str, Annotated[float, Field(gt=0)]] = {}
    queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 256  # events waiting per subscriber before it is dropped
    max_subscribers: Annotated[int, Field(ge=1)] = 10_000
    keepalive_s: Annotated[float, Field(gt=0)] = 15.0
    # History that survives restarts: an SQLite file (relative to the config file), or a PostgreSQL
    # URL (kept as written: a Path would fold its `//`).
    db: str | None = None
    send_buffer_bytes: Annotated[int, Field(ge=1024)] | None = None  # SO_SNDBUF per stream socket
    previous_committee: Path | None = None  # still accept reports of the epoch before a rotation
    # Read reports from this NATS JetStream stream too (docs/FEEDS.md "Fan-out through NATS JetStream").
    nats_urls: NatsUrls = []
    nats_stream: NatsStreamName = DEFAULT_NATS_STREAM
    nats_subject: NatsSubjectPrefix = DEFAULT_NATS_SUBJECT

    _listen = field_validator("listen")(lambda cls, v: check_listen(v))
    _db = field_validator("db", mode="before")(lambda cls, v: os.fspath(v) if isinstance(v, os.PathLike) else v)


class FeedPushSection(_Model):
    """`[feed_push]`: the on-chain pusher (relay/feeds/push.py, `relay feed-push`).

    Key files are relative to the config file, like every other path in it."""

    # The feed server whose `GET /v1/stream` (server-sent events) the pusher follows.
    source: str | None = None
    targets: list[str] = []  # chain names under [chains]; empty = every configured chain
    feeds: list[str] | None = None  # feed ids to push; None = every [feeds] table
    # The pusher's own accounts. Deliberately not the relayer's signer: sharing an account makes the
    # processes fight over nonces. Without one, the chain's `sender` pays.
    evm_key: KeyRef | None = None
    solana_keypair: KeyRef | None = None
    verify: bool = True  # check each report against [committee] before spending gas on it
    listen: str | None = None  # host:port for /health and /metrics (wallet balances); None = no HTTP server
    retry_base_s: Annotated[float, Field(gt=0)] = 0.5
    retry_cap_s: Annotated[float, Field(gt=0)] = 30.0
    max_attempts: Annotated[int, Field(ge=1)] = 8

    @field_validator("source")
    @classmethod
    def _source_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_urls([value], ("http", "https"))
        return value

    _listen = field_validator("listen")(lambda cls, v: v if v is None else check_listen(v))


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
    # `[proof_verifiers.<entry point name>]`: options for each proof-verifier plugin, as keywords.
    proof_verifiers: dict[str, dict] = {}
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

    def fix_db(value: str | Path) -> str:
        # A database URL is left as it is; a file path is made relative to the config file.
        return str(value) if is_database_url(value) or Path(value).is_absolute() else str(base / value)

    def fix_key(ref: KeyRef | None) -> KeyRef | None:
        return ref.model_copy(update={"file": fix(ref.file)}) if ref is not None else None

    chains = {
        name: chain.model_copy(update={"signer": fix_key(chain.signer), "sender": fix_key(chain.sender)})
        for name, chain in config.chains.items()
    }
    update: dict = {
        "chains": chains,
        "state_dir": fix(config.state_dir),
        "relayer": config.relayer.model_copy(update={"db": fix_db(config.relayer.db),
                                                     "admin_token": fix_key(config.relayer.admin_token)}),
        "feeds": resolve_feed_paths(config.feeds, base),
        "attester": config.attester.model_copy(
            update={"db": fix_db(config.attester.db)}
        ),
    }
    if config.worker is not None:
        worker = config.worker

        def fix_template(value: str) -> str:
            return value if Path(value).is_absolute() else str(base / value)

        update["worker"] = worker.model_copy(update={
            "db": fix_db(worker.db), "key_file": fix_template(worker.key_file),
            "evm_key": fix_key(worker.evm_key), "solana_keypair": fix_key(worker.solana_keypair),
        })
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
    write_atomic(path, tomli_w.dumps(data), 0o644)
