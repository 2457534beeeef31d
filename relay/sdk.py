"""The Python SDK: send a message from any configured chain with your own key, follow it, find it
again from its id or its source transaction, request AI tasks and read feeds; verify the
committee's signatures off-chain.

A user needs no operator config and no key to read:

    client = TesseraClient.connect(
        chains={"base-sepolia": evm_chain("https://sepolia.base.org", network="base-sepolia",
                                          gateway="0x...", task_board="0x..."),
                "solana-devnet": solana_chain("https://api.devnet.solana.com", network="solana-devnet",
                                              program_id="...")},
        committee="committee.toml",                        # the committee's public file
        relayer_url="https://relayer.example.org", feeds_url="https://feeds.example.org")
    async with client:
        info = await client.message("0x1234...")           # delivered? failed? the relayer's record
        sent = await client.send("base-sepolia", "solana-devnet", receiver, b"hi",
                                 signer=Account.from_key(...))   # your key, per call or per client
        delivery = await client.wait_delivered(sent, timeout=120)

Operators keep `TesseraClient.from_config(path)`, which sends with `chains.<name>.sender`. The SDK
never signs with a chain's `signer` (the relayer's account). `SyncTesseraClient` offers every call
without asyncio. Everything is documented with working examples in docs/SDK.md.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from adapters.registry import driver_for
from attest.committee import Committee
from relay.collector import CommitteeCollector
from relay.config import CommitteeRef, TesseraConfig, load_config, parse_config
from relay.configfile import check_urls
from relay.envelope import Envelope
from relay.errors import ConfigError, TesseraError
from relay.feeds.client import FeedsClient
from relay.interfaces import MessageStatus
from relay.localnet import CONFIG_FILE, default_state_dir
from relay.protocol import MAX_PAYLOAD_LEN, MessageKind
from relay.tasks.client import (DEFAULT_NO_WORKER_AFTER_S, AuctionTerms, TaskHandleV2, TaskRequestError,
                                request_task_v2)
from relay.tasks.payloads import TaskPayloadError, TaskRequestV2

__all__ = ["Delivery", "DeliveryFailedError", "DeliveryTimeoutError", "MessageInfo", "MessageNotFoundError",
           "MissingSignerError", "SdkError", "SentMessage", "SignatureError", "SyncTesseraClient", "TesseraClient",
           "UnknownChainError", "evm_chain", "solana_chain"]

# What a signer is: an eth_account LocalAccount on an EVM chain, a solders Keypair on a Solana chain.
# The chain's driver checks the type and says which one it needs.
Signer = Any


class SdkError(TesseraError):
    """A request the SDK refused or could not complete; the message says what to do."""


class UnknownChainError(SdkError):
    pass


class MissingSignerError(SdkError):
    """A transaction was asked for on a chain for which the client has no key."""


class MessageNotFoundError(SdkError):
    pass


class DeliveryTimeoutError(SdkError):
    pass


class DeliveryFailedError(DeliveryTimeoutError):
    """The destination recorded the message but its receiver's handler failed (EVM Gateway status
    2) and no retry had succeeded by the timeout: the message is not delivered."""


class SignatureError(SdkError):
    """The committee's signature over a delivered message does not verify."""


@dataclass(frozen=True, slots=True)
class SentMessage:
    envelope: Envelope
    source_chain: str
    source_tx: str

    @property
    def message_id(self) -> bytes:
        return self.envelope.message_id

    @property
    def id_hex(self) -> str:
        return "0x" + self.message_id.hex()


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: bytes
    chain: str
    tx: str | None  # the destination transaction that delivered it (None if the node cannot tell)
    latency_s: float
    status: MessageStatus = MessageStatus.DELIVERED


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """What the chains (and the relayer's API, when the client has its URL) say about one message.
    `status` and `delivery_tx` come from the destination chain itself, at its finality; `stage`,
    `reason` and `attempts` from the relayer (None without one, or when it does not know the id)."""

    message_id: bytes
    status: MessageStatus
    chain: str | None  # the destination chain's name, when known (from the envelope or a receipt)
    delivery_tx: str | None = None
    envelope: Envelope | None = None  # checked to hash to message_id
    source_tx: str | None = None
    stage: str | None = None  # the relayer's pipeline stage (observed, signed, submitted, confirmed, ...)
    reason: str | None = None  # why the relayer is waiting or retrying
    attempts: int | None = None
    relayer_error: str | None = None  # the relayer's API could not be asked (the chains still were)

    @property
    def delivered(self) -> bool:
        return self.status is MessageStatus.DELIVERED

    @property
    def failed(self) -> bool:
        """Recorded on the destination but its receiver's handler failed (the relayer retries it)."""
        return self.status is MessageStatus.HANDLER_FAILED

    @property
    def id_hex(self) -> str:
        return "0x" + self.message_id.hex()


def _urls(value: str | Sequence[str], what: str, schemes: tuple[str, ...]) -> list[str]:
    urls = [value] if isinstance(value, str) else list(value)
    try:
        return check_urls([u.rstrip("/") for u in urls], schemes)
    except ValueError as exc:
        raise SdkError(f"{what}: {exc}; give the full URL, e.g. {schemes[-1]}://host:port") from None


def evm_chain(rpc_urls: str | Sequence[str], *, gateway: str, network: str | None = None, chain_id: int | None = None,
              domain: int | None = None, task_board: str | None = None, feed_store: str | None = None,
              verifier: str | None = None, ws_urls: str | Sequence[str] = (), confirmations: int | None = None,
              contracts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An EVM chain's table for `TesseraClient.connect`: its RPC URL(s) and where Tessera is deployed
    on it. `network` names a known chain (relay/networks.toml: chain id, domain, finality); without
    one give `chain_id` (the domain defaults to it)."""
    if network is None and chain_id is None:
        raise SdkError("evm_chain: give network= (a known chain such as 'base-sepolia', see relay/networks.toml) "
                       "or chain_id=")
    named = {"Gateway": gateway, "TaskBoardV2": task_board, "FeedStore": feed_store, "CommitteeVerifier": verifier}
    table: dict[str, Any] = {"kind": "evm", "rpc_urls": _urls(rpc_urls, "rpc_urls", ("http", "https")),
                             "contracts": {**{k: v for k, v in named.items() if v is not None}, **(contracts or {})}}
    if ws_urls:
        table["ws_urls"] = _urls(ws_urls, "ws_urls", ("ws", "wss"))
    for field, value in (("network", network), ("chain_id", chain_id), ("confirmations", confirmations)):
        if value is not None:
            table[field] = value
    if domain is not None or (network is None and chain_id is not None):
        table["domain"] = domain if domain is not None else chain_id
    return table


def solana_chain(rpc_urls: str | Sequence[str], *, program_id: str, network: str | None = None,
                 domain: int | None = None, ws_urls: str | Sequence[str] = (),
                 commitment: str | None = None) -> dict[str, Any]:
    """A Solana chain's table for `TesseraClient.connect`: its RPC URL(s) and Tessera's program id
    (the gateway, committee, task board and feeds all live in it). `network` names a known cluster
    (relay/networks.toml); without one give `domain`."""
    if network is None and domain is None:
        raise SdkError("solana_chain: give network= (a known cluster such as 'solana-devnet', see "
                       "relay/networks.toml) or domain=")
    table: dict[str, Any] = {"kind": "solana", "rpc_urls": _urls(rpc_urls, "rpc_urls", ("http", "https")),
                             "program_id": program_id}
    if ws_urls:
        table["ws_urls"] = _urls(ws_urls, "ws_urls", ("ws", "wss"))
    for field, value in (("network", network), ("domain", domain), ("commitment", commitment)):
        if value is not None:
            table[field] = value
    return table


def _message_id(value: bytes | str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise SdkError(f"{value!r} is not a message id: give 32 bytes or 0x + 64 hex digits") from None
    if len(value) != 32:
        raise SdkError(f"a message id is 32 bytes, not {len(value)}: give the id `send` returned (sent.message_id)")
    return bytes(value)


_FROM_CONFIG: Any = object()  # service URLs default to the config's listen addresses (operators)


class TesseraClient:
    """Async client. Build it with `connect(...)` (RPC URLs + deployment addresses, no config file),
    `from_config(path)` (an operator's config) or `TesseraClient(config)`.

    `signers` maps chain names to the keys the client sends with (an eth_account LocalAccount on an
    EVM chain, a solders Keypair on Solana); every sending call also takes `signer=`. Without one the
    client is read-only there, and sending says what is missing. A config's `chains.<name>.sender`
    is used when no signer object is given; a chain's `signer` (the relayer's account) never is."""

    def __init__(self, config: TesseraConfig, *, signers: Mapping[str, Signer] | None = None,
                 relayer_url: str | None = _FROM_CONFIG, feeds_url: str | Sequence[str] | None = _FROM_CONFIG,
                 committee: Committee | None = None, attester_urls: Mapping[int, str] | None = None) -> None:
        # The relayer's signer never leaves the relayer: the SDK's copy of every chain drops it.
        self.config = config.model_copy(update={
            "chains": {name: chain.model_copy(update={"signer": None}) for name, chain in config.chains.items()}})
        self._drivers = {name: driver_for(name, chain) for name, chain in self.config.chains.items()}
        # Read-only gateway adapters, one per chain: every read goes through them.
        self._adapters = {name: driver.messaging(role="sender", with_signer=False)
                          for name, driver in self._drivers.items()}
        unknown = sorted(set(signers or {}) - set(self._drivers))
        if unknown:
            raise UnknownChainError(f"signers for {', '.join(map(repr, unknown))}: no such chain; known: "
                                    f"{', '.join(self._drivers) or '(none)'}")
        self._signers = dict(signers or {})
        self._senders: dict[tuple[str, object], tuple[Any, Signer | None]] = {}
        self._sender_lock = asyncio.Lock()
        self.relayer_url = (f"http://{config.relayer.listen}" if relayer_url is _FROM_CONFIG
                            else None if relayer_url is None else _urls(relayer_url, "relayer_url", ("http", "https"))[0])
        self.feeds_urls = ([f"http://{config.feed_server.listen}"] if feeds_url is _FROM_CONFIG
                           else [] if feeds_url is None else _urls(feeds_url, "feeds_url", ("http", "https")))
        self._attester_urls = dict(attester_urls or {})
        self._committee = self._with_endpoints(committee) if committee is not None else None
        self._previous_committee: Committee | None = None
        self._started = False
        self._boards: dict[object, Any] = {}
        self._feeds = None  # relay.feeds.client.FeedsClient, made on first use

    @classmethod
    def from_config(cls, path: str | Path | None = None, **options: Any) -> "TesseraClient":
        """The client of an operator's config file (default: the localnet's). `options` as for the
        constructor (signers, service URLs)."""
        if path is None:
            path = default_state_dir() / CONFIG_FILE
        return cls(load_config(path), **options)

    @classmethod
    def connect(cls, chains: Mapping[str, Mapping[str, Any]], *, committee: str | Path | Committee | None = None,
                previous_committee: str | Path | None = None, previous_valid_until: int | None = None,
                signers: Mapping[str, Signer] | None = None, relayer_url: str | None = None,
                feeds_url: str | Sequence[str] | None = None,
                attester_urls: Mapping[int, str] | None = None) -> "TesseraClient":
        """A client from RPC URLs and deployment addresses only (`evm_chain(...)`, `solana_chain(...)`
        tables by chain name), no config file and no key. `committee` is the committee's public
        file (or a loaded Committee): what signatures are checked against and where the attesters
        answer (`attester_urls` overrides member endpoints by index). `relayer_url` and `feeds_url`
        are full http(s) URLs of the relayer's API and the feed server(s)."""
        tables: dict[str, Any] = {}
        for name, table in chains.items():
            keys = {"signer", "sender"} & set(table)
            if keys:
                raise SdkError(f"chains[{name!r}] names {'/'.join(sorted(keys))}: connect() reads no key files; pass "
                               f"your own key as signers={{{name!r}: ...}} or signer= per call")
            tables[name] = dict(table)
        data: dict[str, Any] = {"chains": tables}
        loaded: Committee | None = None
        if isinstance(committee, Committee):
            loaded = committee
        elif committee is not None:
            data["committee"] = {"file": str(committee)}
            if previous_committee is not None:
                data["committee"] |= {"previous": str(previous_committee), "previous_valid_until": previous_valid_until}
        try:
            config = parse_config(data, "TesseraClient.connect(chains=...)")
        except ConfigError as exc:
            raise SdkError(str(exc)) from None
        return cls(config, signers=signers, relayer_url=relayer_url, feeds_url=feeds_url, committee=loaded,
                   attester_urls=attester_urls)

    async def __aenter__(self) -> "TesseraClient":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if not self._started:
            for adapter in self._adapters.values():
                await adapter.start()
            self._started = True

    async def close(self) -> None:
        for board in self._boards.values():
            await board.close()
        self._boards.clear()
        if self._feeds is not None:
            await self._feeds.close()
            self._feeds = None
        for adapter, _ in self._senders.values():
            await adapter.close()
        self._senders.clear()
        for adapter in self._adapters.values():
            await adapter.close()
        self._started = False

    # --- chains and keys ---------------------------------------------------------------------

    @property
    def chains(self) -> list[str]:
        return list(self._adapters)

    def _chain(self, name: str):
        try:
            return self._adapters[name]
        except KeyError:
            raise UnknownChainError(f"no chain named {name!r}; known: {', '.join(self._adapters) or '(none)'}") from None

    def _chain_config(self, name: str):
        self._chain(name)  # the same error for an unknown name
        return self.config.chains[name]

    def _signer_for(self, name: str, signer: Signer | None) -> tuple[object, Signer | None] | None:
        """(cache key, signer object) of the key that signs on chain `name`: the call's, the
        client's, else the config's `sender` (object None); None when there is none."""
        if signer is None:
            signer = self._signers.get(name)
        if signer is not None:
            return id(signer), signer
        if self.config.chains[name].sender is not None:
            return "config", None
        return None

    def _missing_signer(self, name: str, what: str) -> MissingSignerError:
        return MissingSignerError(
            f"{what} on chain {name!r} needs a key and this client has none there: pass signer= to the call, or "
            f"signers={{{name!r}: ...}} to the client (an eth_account LocalAccount on an EVM chain, a solders Keypair "
            f"on Solana); the client stays read-only on a chain without one")

    async def _sending_adapter(self, name: str, signer: Signer | None):
        self._chain(name)
        found = self._signer_for(name, signer)
        if found is None:
            raise self._missing_signer(name, "sending a message")
        key, obj = found
        async with self._sender_lock:
            cached = self._senders.get((name, key))
            if cached is None:
                driver = self._drivers[name]
                try:
                    adapter = driver.messaging(role="sender", signer=obj) if obj is not None else driver.messaging(role="sender")
                except ConfigError as exc:
                    raise SdkError(str(exc)) from None
                await adapter.start()
                # The signer object is kept with its adapter so that its id() stays its own.
                cached = self._senders[(name, key)] = (adapter, obj)
        return cached[0]

    # --- tasks -------------------------------------------------------------------------------

    def _task_board_v2(self, name: str, signer: Signer | None = None):
        """The requester's side of chain `name`'s v2 board, signing with the given signer, the
        client's or the config's sender; read-only (account zero) when there is none."""
        self._chain(name)
        found = self._signer_for(name, signer)
        if found is None:
            return self._serving_board_v2(name)
        key, obj = found
        if (name, "v2", key) not in self._boards:
            try:
                self._boards[(name, "v2", key)] = self._drivers[name].requester_board_v2(self.config, obj)
            except ConfigError as exc:
                raise SdkError(str(exc)) from None
            if obj is not None:
                self._boards[(name, "v2-signer", key)] = _Kept(obj)
        return self._boards[(name, "v2", key)]

    def _serving_board_v2(self, name: str):
        """A read-only view of chain `name`'s v2 board as workers see it (claims, waiting results)."""
        key = (name, "v2-serving")
        if key not in self._boards:
            self._chain(name)
            self._boards[key] = self._drivers[name].serving_board_v2(self.config, None)
        return self._boards[key]

    async def request_task(self, *, src: str, dst: str, executor: str, input: bytes | str | None = None,
                           max_fee: int, deadline: int | None = None, input_uri: str | None = None,
                           input_hash: bytes | None = None, allow_unknown_executor: bool = False,
                           auction: AuctionTerms | None = None,
                           no_worker_after_s: float | None = DEFAULT_NO_WORKER_AFTER_S,
                           signer: Signer | None = None) -> TaskHandleV2:
        """Escrow `max_fee` on `src` and ask the workers on `dst` to run `executor` on `input`, in
        task protocol v2 (v1 is retired): workers compete in a reverse Dutch auction (`auction`:
        AuctionTerms, default a 1 s window from half of max_fee, 60 s to answer, no bond, forfeited
        bonds to our own account on `dst`); the cheapest that claims first is paid its price and the
        rest of max_fee comes back. `signer` pays on `src` (default: the client's). Returns a
        `relay.tasks.client.TaskHandleV2` (`await handle.result()`, `handle.events()`). With no
        claim after `no_worker_after_s` (None: never), the handle says so: a `no_worker` event
        naming the executor and chain, and NoWorkerError from `result()`."""
        if src != dst and src in self._adapters and self._signer_for(src, signer) is None:
            raise self._missing_signer(src, "requesting a task")
        return await request_task_v2(self, src=src, dst=dst, executor=executor, input=input, max_fee=max_fee,
                                     deadline=deadline, input_uri=input_uri, input_hash=input_hash,
                                     allow_unknown_executor=allow_unknown_executor, auction=auction,
                                     no_worker_after_s=no_worker_after_s, signer=signer)

    async def task(self, request_id: bytes | str, *, source_tx: str | None = None, signer: Signer | None = None,
                   no_worker_after_s: float | None = None) -> TaskHandleV2:
        """Reopen the handle of a task requested earlier (by this process or another) from its
        request id: the same events, result and reclaim as the handle `request_task` returned.
        The request's envelope comes from the relayer's API (checked to hash to the id) or, given
        `source_tx` (the request's transaction), from its source chain. `signer` is needed only to
        reclaim (default: the client's key on the requester's chain)."""
        request_id = _message_id(request_id)
        id_hex = "0x" + request_id.hex()
        if source_tx is not None:
            found = [m for m in await self.find(source_tx) if m.message_id == request_id]
            if not found:
                raise MessageNotFoundError(f"transaction {source_tx} emitted no message {id_hex}: give the request's "
                                           "own transaction, or leave source_tx out to ask the relayer")
            envelope, tx = found[0].envelope, source_tx
        else:
            record = await self._relayer_record(request_id)
            if record is None:
                raise MessageNotFoundError(f"the relayer ({self.relayer_url}) does not know task {id_hex}: check the id, "
                                           "or pass source_tx= (the request's transaction) to read it from the chain")
            envelope, tx = record["envelope"], record.get("source_tx") or ""
        if envelope.kind != MessageKind.TASK_REQUEST:
            raise SdkError(f"{id_hex} is a {MessageKind(envelope.kind).name} message, not a task request")
        try:
            request = TaskRequestV2.decode(envelope.payload)
        except TaskPayloadError as exc:
            raise TaskRequestError(f"{id_hex} does not carry a task protocol v2 request: {exc}") from None
        src, _ = self._by_domain(envelope.src_domain)
        dst, _ = self._by_domain(envelope.dst_domain)
        requester = self._task_board_v2(src, signer)
        return TaskHandleV2(self, src, dst, request, envelope, tx, requester, self._serving_board_v2(dst),
                            no_worker_after_s)

    def _by_domain(self, domain: int) -> tuple[str, Any]:
        for name, adapter in self._adapters.items():
            if adapter.domain == domain:
                return name, adapter
        raise UnknownChainError(f"no chain of this client has domain {domain}; known: "
                                f"{', '.join(f'{n} ({a.domain})' for n, a in self._adapters.items()) or '(none)'}")

    # --- services ----------------------------------------------------------------------------

    def _with_endpoints(self, committee: Committee) -> Committee:
        if not self._attester_urls:
            return committee
        unknown = sorted(set(self._attester_urls) - set(committee.indices))
        if unknown:
            raise SdkError(f"attester_urls for member(s) {unknown}: the committee's members are {committee.indices}")
        members = [m.model_copy(update={"endpoint": _urls(self._attester_urls[m.index], f"attester_urls[{m.index}]",
                                                          ("http", "https"))[0]})
                   if m.index in self._attester_urls else m for m in committee.members]
        return committee.model_copy(update={"members": members})

    @property
    def feeds(self) -> FeedsClient:
        """A `relay.feeds.client.FeedsClient` over the feed server URL(s): `await
        client.feeds.latest("ETH/USD")`, `async for update in client.feeds.stream([...])`."""
        if self._feeds is None:
            if not self.feeds_urls:
                raise SdkError("this client has no feed server: pass feeds_url=\"https://...\" (or a list) to "
                               "TesseraClient.connect")
            committees = [self.committee]
            ref = self.config.committee
            if self.previous_committee is not None and ref is not None and (ref.previous_valid_until or 0) > time.time():
                committees.append(self.previous_committee)  # reports of the outgoing epoch, during the grace
            self._feeds = FeedsClient(self.feeds_urls, committees)
        return self._feeds

    def relayer_api(self) -> str:
        """The relayer's API base URL; SdkError naming the option when the client has none."""
        if self.relayer_url is None:
            raise SdkError("this needs the relayer's API (it serves the envelopes it carried): pass "
                           "relayer_url=\"https://...\" to TesseraClient.connect")
        return self.relayer_url

    async def _relayer_record(self, message_id: bytes) -> dict | None:
        """The relayer's record of a message (None when it does not know the id), its envelope
        decoded and checked to hash to the id."""
        url = f"{self.relayer_api()}/v1/messages/0x{message_id.hex()}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(url) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise SdkError(f"the relayer's API answered HTTP {response.status} for {url}")
                body = await response.json()
        envelope = Envelope.decode(bytes.fromhex(body["envelope"].removeprefix("0x")))
        if envelope.message_id != message_id:
            raise SdkError(f"the relayer ({self.relayer_url}) returned an envelope that does not hash to "
                           f"0x{message_id.hex()}: do not trust that relayer")
        return {**body, "envelope": envelope}

    @property
    def committee(self) -> Committee:
        if self._committee is None:
            if self.config.committee is None:
                raise SdkError("this client has no committee (no [committee] table, no committee= given), so "
                               "signatures cannot be verified: pass committee=\"committee.toml\" (the committee's "
                               "public file) to TesseraClient.connect, or use a config with a [committee] table")
            self._committee = self._with_endpoints(Committee.load(self.config.committee.file))
        return self._committee

    # --- messages ----------------------------------------------------------------------------

    async def quote(self, src: str, dst: str, payload: bytes | int) -> int:
        """What sending `payload` (or that many bytes) from `src` to `dst` costs now, in `src`'s smallest
        unit (wei, lamports): the source gateway's quote (docs/PROTOCOL.md "Fees"), which `send` pays;
        the gateway refunds anything above it. SdkError saying what to do when the gateway refuses to
        quote (a stale or missing price feed)."""
        source, destination = self._chain(src), self._chain(dst)
        length = payload if isinstance(payload, int) else len(payload)
        try:
            return await source.quote(destination.domain, length)
        except TesseraError as exc:
            raise SdkError(str(exc)) from None

    async def send(self, src: str, dst: str, receiver: bytes, payload: bytes,
                   kind: MessageKind = MessageKind.DATA, *, signer: Signer | None = None) -> SentMessage:
        """Send from chain `src` to `receiver` (32 bytes: left-padded EVM address or Solana key) on
        `dst`, signed by `signer` (default: the client's key on `src`), paying the source gateway's
        quote (see `quote`)."""
        self._chain(src)
        destination = self._chain(dst)
        if len(receiver) == 20:
            receiver = bytes(12) + receiver
        if len(receiver) != 32:
            raise SdkError("receiver must be 32 bytes (a Solana public key) or a 20-byte EVM address")
        if len(payload) > MAX_PAYLOAD_LEN:
            raise SdkError(f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_LEN}: send a hash + URI instead")
        if MessageKind(kind) is MessageKind.COMMITTEE_ROTATION:
            raise SdkError("COMMITTEE_ROTATION messages come from the committee, not from a gateway")
        source = await self._sending_adapter(src, signer)
        envelope, tx = await source.send_message(destination.domain, receiver, int(kind), payload)
        return SentMessage(envelope=envelope, source_chain=src, source_tx=tx)

    async def find(self, source_tx: str, *, chain: str | None = None, timeout: float = 60.0,
                   poll: float = 0.5) -> list[SentMessage]:
        """The messages a source transaction emitted (EVM: the Gateway's MessageSent logs in its
        receipt; Solana: the envelopes the program logged), once final on its chain. Looks on
        `chain`, or on every chain of the client; MessageNotFoundError after `timeout` seconds."""
        names = [chain] if chain is not None else list(self._adapters)
        for name in names:
            self._chain(name)
        started = time.monotonic()
        while True:
            problems: dict[str, str] = {}
            for name in names:
                try:
                    observations = await self._adapters[name].reobserve(source_tx)
                except Exception as exc:  # noqa: BLE001 - a tx id in another chain's format, an RPC error: said below
                    problems[name] = f"{type(exc).__name__}: {exc}"
                    continue
                if observations:
                    return [SentMessage(o.envelope, name, source_tx) for o in observations]
            if time.monotonic() - started >= timeout:
                why = "; ".join(f"{n}: {p}" for n, p in problems.items())
                raise MessageNotFoundError(
                    f"no final message from transaction {source_tx} on {', '.join(names)} after {timeout:.0f}s: is it a "
                    f"send through Tessera's gateway, and final yet?" + (f" ({why})" if why else ""))
            await asyncio.sleep(poll)

    async def message(self, message_id: bytes | str) -> MessageInfo:
        """What the destination chain says about a message (delivered? handler failed?), plus the
        relayer's record when the client has its URL. Without the relayer the destination is found
        by asking every chain for a receipt of the id."""
        message_id = _message_id(message_id)
        record, relayer_error = None, None
        if self.relayer_url is not None:
            try:
                record = await self._relayer_record(message_id)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                relayer_error = f"{self.relayer_url}: {exc or type(exc).__name__}"
        envelope: Envelope | None = record["envelope"] if record else None
        chain: str | None = None
        status = MessageStatus.NOT_DELIVERED
        if envelope is not None:
            chain, destination = self._by_domain(envelope.dst_domain)
            status = await destination.message_status(message_id, envelope)
        else:
            statuses = await asyncio.gather(*(a.message_status(message_id) for a in self._adapters.values()))
            for name, found in zip(self._adapters, statuses):
                if found is not MessageStatus.NOT_DELIVERED:
                    chain, status = name, found
                    break
        tx = await self._adapters[chain].delivery_tx(message_id) if chain and status is not MessageStatus.NOT_DELIVERED else None
        return MessageInfo(message_id, status, chain, tx, envelope,
                           source_tx=record.get("source_tx") if record else None,
                           stage=record.get("stage") if record else None,
                           reason=record.get("reason") if record else None,
                           attempts=record.get("attempts") if record else None, relayer_error=relayer_error)

    async def is_delivered(self, message: SentMessage | Envelope) -> bool:
        envelope = message.envelope if isinstance(message, SentMessage) else message
        _, destination = self._by_domain(envelope.dst_domain)
        return await destination.is_delivered(envelope.message_id, envelope)

    async def wait_delivered(self, message: SentMessage | Envelope, timeout: float = 120.0,
                             poll: float = 0.25) -> Delivery:
        envelope = message.envelope if isinstance(message, SentMessage) else message
        name, destination = self._by_domain(envelope.dst_domain)
        started = time.monotonic()
        status = MessageStatus.NOT_DELIVERED
        while True:
            # Only "recorded and handled" is delivered: a failed handler is retried by the relayer.
            status = await destination.message_status(envelope.message_id, envelope)
            if status is MessageStatus.DELIVERED:
                tx = await destination.delivery_tx(envelope.message_id)
                return Delivery(envelope.message_id, name, tx, time.monotonic() - started, status)
            if time.monotonic() - started > timeout:
                if status is MessageStatus.HANDLER_FAILED:
                    raise DeliveryFailedError(
                        f"0x{envelope.message_id.hex()} reached {name} but its receiver's handler failed and no "
                        f"retry succeeded within {timeout:.0f}s: fix the receiver; the relayer retries it "
                        f"(`relay status 0x{envelope.message_id.hex()[:12]}`)")
                raise DeliveryTimeoutError(
                    f"0x{envelope.message_id.hex()} not delivered to {name} within {timeout:.0f}s: "
                    f"`relay status 0x{envelope.message_id.hex()[:12]}` shows where it is stuck")
            await asyncio.sleep(poll)

    # --- signatures --------------------------------------------------------------------------

    def verify(self, envelope: Envelope, epoch: int, signature: bytes, now: float | None = None) -> bool:
        """Off-chain check of a committee signature over an envelope (what the chains check): the
        current committee's, or during a rotation's grace window (`[committee] previous`,
        `previous_valid_until`) the outgoing committee's."""
        committee = self.committee
        if epoch == committee.epoch:
            return committee.verify(envelope.digest(epoch), signature)
        previous = self.previous_committee
        ref = self.config.committee
        if previous is None or epoch != previous.epoch or ref is None or ref.previous_valid_until is None:
            return False
        if (time.time() if now is None else now) > ref.previous_valid_until:
            return False
        return previous.verify(envelope.digest(epoch), signature)

    @property
    def previous_committee(self) -> Committee | None:
        """The outgoing committee during a rotation's grace window (`[committee] previous`), else None."""
        ref: CommitteeRef | None = self.config.committee
        if ref is None or ref.previous is None:
            return None
        if self._previous_committee is None:
            self._previous_committee = Committee.load(ref.previous)
        return self._previous_committee

    async def committee_signature(self, message: SentMessage | Envelope, timeout: float = 5.0) -> tuple[int, bytes]:
        """Ask the attesters for their partials and combine them: the same signature the relayer uses.
        An envelope the committee derives itself (a PROOF_ATTESTATION) has no source transaction."""
        envelope, source_tx = (message.envelope, message.source_tx) if isinstance(message, SentMessage) else (message, "")
        id_hex = "0x" + envelope.message_id.hex()
        collector = CommitteeCollector(self.committee, timeout=timeout)
        try:
            collected = await collector.collect(envelope, source_tx)
        finally:
            await collector.close()
        if collected.signature is None:
            raise SignatureError(f"the committee has not signed {id_hex} yet: {collected.reason}")
        if not self.verify(envelope, collected.epoch, collected.signature):
            raise SignatureError(f"combined signature for {id_hex} does not verify under the committee key")
        return collected.epoch, collected.signature


class _Kept:
    """Holds a signer object in the board cache (so its id() is not reused while cached)."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    async def close(self) -> None:
        return None


# --- the blocking client ---------------------------------------------------------------------------


class _Blocking:
    """A blocking view of an async object: coroutine methods run to completion on the client's
    loop, async iterators become iterators, handles and clients it returns are wrapped too."""

    def __init__(self, target: Any, runner: asyncio.Runner) -> None:
        self._target = target
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value):
            return lambda *args, **kwargs: _blocking(self._runner, value(*args, **kwargs))
        return _blocking(self._runner, value)

    def __iter__(self):
        return _blocking(self._runner, self._target.__aiter__())

    def __repr__(self) -> str:
        return f"blocking {self._target!r}"


def _blocking(runner: asyncio.Runner, value: Any) -> Any:
    if inspect.iscoroutine(value) or isinstance(value, asyncio.Future):
        return _blocking(runner, runner.run(_await(value)))
    if hasattr(value, "__anext__"):
        return _iterate(runner, value)
    if isinstance(value, (TaskHandleV2, FeedsClient)):
        return _Blocking(value, runner)
    return value


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _iterate(runner: asyncio.Runner, iterator: Any):
    async def step() -> tuple[bool, Any]:
        try:
            return True, await iterator.__anext__()
        except StopAsyncIteration:
            return False, None

    try:
        while True:
            more, item = runner.run(step())
            if not more:
                return
            yield item
    finally:
        if hasattr(iterator, "aclose"):
            runner.run(iterator.aclose())


class SyncTesseraClient:
    """Every call of TesseraClient without asyncio, on one private event loop per client:
    `SyncTesseraClient(path)` (an operator's config, like from_config), `SyncTesseraClient.connect(...)`
    (the same arguments as TesseraClient.connect). Task handles and the feeds client it returns are
    blocking too: `handle.result()`, `for event in handle.events(): ...`, `client.feeds.latest(...)`."""

    def __init__(self, config_path: str | Path | None = None, *, client: TesseraClient | None = None,
                 **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = client if client is not None else TesseraClient.from_config(config_path, **options)
        self._runner.run(self._client.start())

    @classmethod
    def connect(cls, chains: Mapping[str, Mapping[str, Any]], **options: Any) -> "SyncTesseraClient":
        return cls(client=TesseraClient.connect(chains, **options))

    def __enter__(self) -> "SyncTesseraClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()

    @property
    def client(self) -> TesseraClient:
        """The async client underneath (its loop is this object's: call it only through this wrapper)."""
        return self._client

    @property
    def feeds(self) -> Any:
        return _Blocking(self._client.feeds, self._runner)

    def send(self, src: str, dst: str, receiver: bytes, payload: bytes, kind: MessageKind = MessageKind.DATA, *,
             signer: Signer | None = None) -> SentMessage:
        return self._runner.run(self._client.send(src, dst, receiver, payload, kind, signer=signer))

    def wait_delivered(self, message: SentMessage | Envelope, timeout: float = 120.0, poll: float = 0.25) -> Delivery:
        return self._runner.run(self._client.wait_delivered(message, timeout, poll))

    def quote(self, src: str, dst: str, payload: bytes | int) -> int:
        return self._runner.run(self._client.quote(src, dst, payload))

    def __getattr__(self, name: str) -> Any:
        # Any other call of the async client (one added later too), blocking: never a silent gap.
        if name.startswith("_"):
            raise AttributeError(name)
        return _Blocking(self._client, self._runner).__getattr__(name)

    def is_delivered(self, message: SentMessage | Envelope) -> bool:
        return self._runner.run(self._client.is_delivered(message))

    def message(self, message_id: bytes | str) -> MessageInfo:
        return self._runner.run(self._client.message(message_id))

    def find(self, source_tx: str, **options: Any) -> list[SentMessage]:
        return self._runner.run(self._client.find(source_tx, **options))

    def request_task(self, **request: Any) -> Any:
        """As TesseraClient.request_task; the handle is blocking (result(), events(), reclaim())."""
        return _Blocking(self._runner.run(self._client.request_task(**request)), self._runner)

    def task(self, request_id: bytes | str, **options: Any) -> Any:
        """As TesseraClient.task; the handle is blocking."""
        return _Blocking(self._runner.run(self._client.task(request_id, **options)), self._runner)

    def committee_signature(self, message: SentMessage | Envelope, timeout: float = 5.0) -> tuple[int, bytes]:
        return self._runner.run(self._client.committee_signature(message, timeout))

    def verify(self, envelope: Envelope, epoch: int, signature: bytes, now: float | None = None) -> bool:
        return self._client.verify(envelope, epoch, signature, now)

    @property
    def committee(self) -> Committee:
        return self._client.committee

    @property
    def chains(self) -> list[str]:
        return self._client.chains
