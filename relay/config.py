"""Tessera configuration (TOML), validated at start with errors that name the bad field.

The file has one table per chain under `[chains.<name>]`, a `[committee]` table and a `[relayer]`
table. `relay localnet up` writes a complete one; `configs/` holds examples for real networks.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from attest.files import write_atomic
from relay.configfile import check_listen, check_urls, format_validation_error, read_toml
from relay.deployment import merge_deployment
from relay.errors import ConfigError
from relay.networks import UnknownNetwork, network_named
from relay.feeds.config import (DEFAULT_NATS_STREAM, DEFAULT_NATS_SUBJECT, FeedRoundSection, FeedTables, NatsStreamName,
                                NatsSubjectPrefix, NatsUrls, resolve_feed_paths)

U32_MAX = 2**32 - 1
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret (a password) comes from: a file, or an environment variable. Never inline."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SecretRef":
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of `file` or `env`")
        return self

    def describe(self) -> str:
        return f"file {self.file}" if self.file else f"environment variable {self.env}"

    def read_text(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set: export it with the secret")
            return value.strip()
        assert self.file is not None
        try:
            return self.file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {self.file}: {exc.strerror}") from None


class KeyRef(_Model):
    """Where a hot key (an account that signs transactions) comes from. Never inline.

    - `keystore = "keys/relayer.json"` with `password_file` (or `password_env`): an encrypted
      keystore in the Ethereum V3 format (Web3 Secret Storage: scrypt + AES-128-CTR, keccak MAC).
      An EVM key is the keystore's private key; a Solana keypair is stored as its 32-byte Ed25519
      seed in the same format. `relay keys import` writes one from a raw key. The chain adapters
      decrypt it (adapters/evm/gateway.py `evm_key`, adapters/solana/rpc.py `keypair_from_ref`).
    - `file = ...` or `env = ...`: an unencrypted key (0x-hex, base58 or solana-keygen's JSON
      array). A config file may name one only with `allow_raw = true` (load_config refuses it
      otherwise): a plaintext key is one file read away from being spent, so it takes a decision
      that shows in the config, as localnets and tests make.
    """

    file: Path | None = None
    env: str | None = None
    keystore: Path | None = None
    password_file: Path | None = None
    password_env: str | None = None
    allow_raw: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> "KeyRef":
        if sum(x is not None for x in (self.file, self.env, self.keystore)) != 1:
            raise ValueError("give exactly one of `file` or `env` (an unencrypted key, with allow_raw = true), or "
                             "`keystore` (an encrypted keystore, with password_file or password_env)")
        has_password = (self.password_file is not None, self.password_env is not None)
        if self.keystore is not None:
            if sum(has_password) != 1:
                raise ValueError("a keystore needs exactly one of `password_file` or `password_env`")
            if self.allow_raw:
                raise ValueError("allow_raw is for unencrypted keys (file or env); a keystore is encrypted, "
                                 "so leave allow_raw out")
        elif any(has_password):
            raise ValueError("password_file/password_env unlock a keystore; with `file` or `env` the key is "
                             "not encrypted: use `keystore = ...` (see `relay keys import`)")
        return self

    @property
    def is_raw(self) -> bool:
        """An unencrypted key (file or env)."""
        return self.keystore is None

    def describe(self) -> str:
        if self.keystore is not None:
            return f"keystore {self.keystore}"
        return f"file {self.file}" if self.file else f"environment variable {self.env}"

    def read_text(self) -> str:
        """The unencrypted key's text. A keystore is decrypted by the chain adapter instead
        (`read_keystore` gives it the keystore and its password)."""
        if self.keystore is not None:
            raise ConfigError(f"{self.describe()} is encrypted: the chain adapter decrypts it (this caller "
                              "expected an unencrypted key)")
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

    def read_keystore(self) -> tuple[dict, str]:
        """The keystore's JSON and its password, for the adapter to decrypt."""
        assert self.keystore is not None, "read_keystore on an unencrypted key"
        try:
            data = json.loads(self.keystore.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read keystore {self.keystore}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"keystore {self.keystore} is not JSON ({exc}); write one with `relay keys import`") from None
        if not isinstance(data, dict) or "crypto" not in data and "Crypto" not in data:
            raise ConfigError(f"{self.keystore} is not a V3 keystore (no `crypto` object); write one with "
                              "`relay keys import`")
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                raise ConfigError(f"environment variable {self.password_env} is not set: export the password of "
                                  f"keystore {self.keystore}")
        else:
            assert self.password_file is not None
            try:
                password = self.password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"cannot read password file {self.password_file}: {exc.strerror}") from None
        return data, password

    def with_paths_under(self, base: Path) -> "KeyRef":
        """Relative file, keystore and password_file paths taken relative to `base`."""
        def fix(value: Path | None) -> Path | None:
            return base / value if value is not None and not value.is_absolute() else value

        return self.model_copy(update={"file": fix(self.file), "keystore": fix(self.keystore),
                                       "password_file": fix(self.password_file)})


class EvmChain(_Model):
    kind: Literal["evm"]
    network: str | None = None  # a known network (relay/networks.toml) that filled in the fields not set here
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
    # A domain other than the chain id is refused unless this says it is meant (see TesseraConfig).
    allow_domain_mismatch: bool = False

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
    network: str | None = None  # a known cluster (relay/networks.toml) that filled in the fields not set here
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
    password: SecretRef | None = None
    # During a rotation's grace window the outgoing committee's signatures still land on-chain; the
    # SDK accepts them too until `previous_valid_until` (unix seconds, the chains' grace end).
    previous: Path | None = None
    previous_valid_until: Annotated[int, Field(ge=0)] | None = None
    # The committee of the next epoch this member approves (its public file): an attester signs a
    # COMMITTEE_ROTATION only to exactly that committee (`relay committee rotate`, docs/DEPLOY.md).
    next: Path | None = None
    # The grace the operator approves for that rotation (seconds); without it any grace up to 30 days.
    next_grace_s: Annotated[int, Field(ge=0, le=30 * 24 * 3600)] | None = None

    def share_path(self, index: int) -> Path:
        if self.share is None:
            raise ConfigError("committee.share is not set: point it at this member's encrypted share file")
        return Path(str(self.share).replace("{index}", str(index)))


def is_database_url(db: str | Path) -> bool:
    """A `db` setting naming a PostgreSQL database (else it is an SQLite file path)."""
    return str(db).startswith(("postgresql://", "postgres://"))


class RelayerPolicy(_Model):
    """`[relayer.policy]`: which messages the relayer pays to deliver (relay/policy.py, docs/SECURITY.md).
    mode "none" delivers everything; "minimum" wants at least `minimum[<source chain>]` paid (in that
    chain's smallest unit: wei, lamports); "onchain_quote" wants at least the source gateway's quote now,
    less `quote_tolerance_bps` (prices move between the send and the check). `allow` senders are always
    delivered, `deny` senders never; both are lists of addresses per source chain name. Committee
    messages (attestations, verdicts, rotations) are always delivered."""

    mode: Literal["none", "minimum", "onchain_quote"] = "none"
    minimum: dict[str, Annotated[int, Field(ge=0)]] = {}
    quote_tolerance_bps: Annotated[int, Field(ge=0, le=10_000)] = 1000
    allow: dict[str, list[str]] = {}
    deny: dict[str, list[str]] = {}


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
    # Batches (docs/PROTOCOL.md "Batch attestations"): up to batch_size due messages of one lane under one
    # committee signature; a lane's first message waits at most batch_wait_ms for others (none on a quiet
    # lane: relay/pipeline.py _group_observed). 1: no batching.
    batch_size: Annotated[int, Field(ge=1, le=64)] = 32
    batch_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 50.0
    # Rent that comes back (docs/MESSAGING.md): the relayer closes the Solana delivery receipts its key
    # paid for once they are this old; the program lets anyone close one after 86,400 s (its receiver
    # at any time), so a smaller value only helps for receipts to the relayer's own key.
    close_receipts_after_s: Annotated[float, Field(ge=0, le=10 * 365 * 86_400)] = 86_400.0
    # Guards the operator routes of the HTTP API (POST /v1/messages/{id}/retry): with it, callers send
    # `Authorization: Bearer <token>`; without it those routes answer only callers on this machine.
    admin_token: KeyRef | None = None
    policy: RelayerPolicy = RelayerPolicy()  # [relayer.policy]: payment policy (relay/policy.py)

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
    # Task protocol v2: the least this worker accepts per executor (same unit as min_fee; an executor
    # not listed takes min_fee). It claims a request once the auction price reaches its price.
    prices: dict[str, Annotated[int, Field(ge=0)]] = {}
    # v2: the largest bond it posts (serving chain's smallest unit); None = any bond its account can fund.
    max_bond: Annotated[int, Field(ge=0)] | None = None
    min_time_left_s: Annotated[float, Field(ge=0)] = 5.0  # skip requests whose deadline is closer
    # v2: seconds between settle passes (bond release, credit withdrawal, Solana serve-account closing
    # for the tasks this worker claimed, once they ended).
    settle_interval_s: Annotated[float, Field(ge=1, le=86_400)] = 60.0
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

    @field_validator("chains", mode="before")
    @classmethod
    def _expand_networks(cls, value: object) -> object:
        """`network = "<name>"` fills in what the table leaves out (relay/networks.toml)."""
        if not isinstance(value, dict):
            return value
        return {name: _with_network(name, table) for name, table in value.items()}

    @model_validator(mode="after")
    def _evm_domain_is_chain_id(self) -> "TesseraConfig":
        # Why an error and not a warning: the domain is what envelopes and committee signatures
        # name, the chain id what the node answers. With domain = chain id one number means one
        # chain everywhere (EIP-155 keeps chain ids unique), so a table copied for another chain
        # with a stale domain cannot deliver one chain's messages under another's name. A second
        # deployment on one chain, or a chain id above 2^32-1, is a real reason: say it with
        # allow_domain_mismatch = true.
        for name, chain in self.chains.items():
            if isinstance(chain, EvmChain) and chain.domain != chain.chain_id and not chain.allow_domain_mismatch:
                raise ValueError(
                    f"chains.{name}.domain {chain.domain} differs from chain_id {chain.chain_id}: an EVM chain's "
                    f"domain is its chain id, so set domain = {chain.chain_id}, or set allow_domain_mismatch = true "
                    "if this is meant (a second deployment on one chain, a chain id above 2^32-1)")
        return self

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


def _with_network(name: str, table: object) -> object:
    if not isinstance(table, dict) or table.get("network") is None:
        return table
    try:
        network = network_named(str(table["network"]))
    except UnknownNetwork as exc:
        raise ValueError(f"chains.{name}.network: {exc}") from None
    defaults = network.chain_defaults()
    # The network's identity is not a default: a table that contradicts it names another chain.
    for field in ("kind", "chain_id"):
        if field in table and defaults.get(field) is not None and table[field] != defaults[field]:
            raise ValueError(f"chains.{name}.{field} = {table[field]!r} contradicts network {network.name!r} "
                             f"({field} {defaults[field]!r}); name the right network or leave `network` out")
    return {**defaults, **table}


def key_refs(config: TesseraConfig) -> list[tuple[str, str, KeyRef]]:
    """Every hot key the config names, as (field path, chain kind the key is for, ref)."""
    found: list[tuple[str, str, KeyRef]] = []
    for name, chain in config.chains.items():
        for field in ("signer", "sender"):
            ref = getattr(chain, field)
            if ref is not None:
                found.append((f"chains.{name}.{field}", chain.kind, ref))
    for section_name in ("worker", "feed_push"):
        section = getattr(config, section_name)
        if section is None:
            continue
        for field, kind in (("evm_key", "evm"), ("solana_keypair", "solana")):
            ref = getattr(section, field)
            if ref is not None:
                found.append((f"{section_name}.{field}", kind, ref))
    return found


def raw_key_problems(config: TesseraConfig) -> list[str]:
    """Unencrypted keys named without `allow_raw = true`, each with how to convert it."""
    problems = []
    for where, kind, ref in key_refs(config):
        if ref.is_raw and not ref.allow_raw:
            source = f"--key-file {ref.file}" if ref.file is not None else f"--key-env {ref.env}"
            out = f"keys/{where.replace('.', '-')}.json"
            problems.append(
                f"{where}: {ref.describe()} holds an unencrypted key; encrypt it with `relay keys import --kind {kind} "
                f"{source} --out {out} --password-file <file>` and set {where.rpartition('.')[2]} = "
                f'{{ keystore = "{out}", password_file = "<file>" }}, or keep it unencrypted with allow_raw = true')
    return problems


def allow_raw_keys(config: TesseraConfig) -> TesseraConfig:
    """The config with `allow_raw = true` on every unencrypted key: for generated localnet and test
    configs, whose keys are throwaway dev keys by design."""

    def opt_in(ref: KeyRef | None) -> KeyRef | None:
        return ref.model_copy(update={"allow_raw": True}) if ref is not None and ref.is_raw else ref

    update: dict = {"chains": {name: chain.model_copy(update={"signer": opt_in(chain.signer), "sender": opt_in(chain.sender)})
                               for name, chain in config.chains.items()},
                    "feed_push": config.feed_push.model_copy(update={
                        "evm_key": opt_in(config.feed_push.evm_key),
                        "solana_keypair": opt_in(config.feed_push.solana_keypair)})}
    if config.worker is not None:
        update["worker"] = config.worker.model_copy(update={"evm_key": opt_in(config.worker.evm_key),
                                                            "solana_keypair": opt_in(config.worker.solana_keypair)})
    return config.model_copy(update=update)


def parse_config(data: dict, source: str = "config") -> TesseraConfig:
    try:
        return TesseraConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_config(path: str | os.PathLike[str], *, check_keys: bool = True) -> TesseraConfig:
    """The config at `path`, paths resolved against its folder. With `check_keys` (every daemon and
    command but `relay config check`, which lists the problems itself) an unencrypted key without
    `allow_raw = true` is refused."""
    path = Path(path)
    data = read_toml(path, "run `relay localnet up` to generate one, or copy one from configs/")
    data = merge_deployment(data, path)  # `deployment = "..."`: the addresses `relay deploy` wrote
    config = _resolve_paths(parse_config(data, str(path)), path.parent)
    if check_keys and (problems := raw_key_problems(config)):
        raise ConfigError("\n  ".join([f"{path} names unencrypted keys:", *problems]))
    return config


def _resolve_paths(config: TesseraConfig, base: Path) -> TesseraConfig:
    """Relative paths in a config file are relative to the file, not to the working directory."""

    def fix(value: Path | None) -> Path | None:
        return base / value if value is not None and not value.is_absolute() else value

    def fix_db(value: str | Path) -> str:
        # A database URL is left as it is; a file path is made relative to the config file.
        return str(value) if is_database_url(value) or Path(value).is_absolute() else str(base / value)

    def fix_key(ref: KeyRef | None) -> KeyRef | None:
        return ref.with_paths_under(base) if ref is not None else None

    def fix_secret(ref: SecretRef | None) -> SecretRef | None:
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
        "feed_push": config.feed_push.model_copy(update={"evm_key": fix_key(config.feed_push.evm_key),
                                                         "solana_keypair": fix_key(config.feed_push.solana_keypair)}),
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
                "previous": fix(config.committee.previous),
                "next": fix(config.committee.next),
                "password": fix_secret(config.committee.password),
            }
        )
    return config.model_copy(update=update)


def dump_config(config: TesseraConfig, path: str | os.PathLike[str]) -> None:
    """Write atomically, so a reader never sees half a file."""
    path = Path(path)
    data = config.model_dump(mode="json", exclude_none=True)
    write_atomic(path, tomli_w.dumps(data), 0o644)
