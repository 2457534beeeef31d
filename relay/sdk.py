"""The Python SDK: send a message from either chain, get its id, await its delivery, and verify
the committee's signature off-chain.

    async with TesseraClient.from_config(".tessera/localnet/config.toml") as client:
        sent = await client.send("evm", "solana", receiver=program_id_bytes, payload=b"hello")
        delivery = await client.wait_delivered(sent, timeout=60)
        epoch, signature = await client.committee_signature(sent)  # verified off-chain

`SyncTesseraClient` wraps the same calls for scripts that are not async.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from adapters.registry import driver_for
from attest.committee import Committee
from relay.collector import CommitteeCollector
from relay.config import TesseraConfig, load_config
from relay.envelope import Envelope
from relay.errors import TesseraError
from relay.feeds.client import FeedsClient
from relay.localnet import CONFIG_FILE, default_state_dir
from relay.interfaces import MessageStatus
from relay.protocol import MAX_PAYLOAD_LEN, MessageKind
from relay.tasks.client import DEFAULT_NO_WORKER_AFTER_S, AuctionTerms, request_task_v2


class SdkError(TesseraError):
    """A request the SDK refused or could not complete; the message says what to do."""


class UnknownChainError(SdkError):
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


class TesseraClient:
    def __init__(self, config: TesseraConfig) -> None:
        self.config = config
        self._drivers = {name: driver_for(name, chain) for name, chain in config.chains.items()}
        self._adapters = {name: driver.messaging(role="sender") for name, driver in self._drivers.items()}
        self._committee = None
        self._previous_committee: Committee | None = None
        self._started = False
        self._boards: dict[str, object] = {}
        self._feeds = None  # relay.feeds.client.FeedsClient, made on first use

    @classmethod
    def from_config(cls, path: str | Path | None = None) -> "TesseraClient":
        if path is None:
            path = default_state_dir() / CONFIG_FILE
        return cls(load_config(path))

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
        for adapter in self._adapters.values():
            await adapter.close()
        self._started = False

    def _chain(self, name: str):
        try:
            return self._adapters[name]
        except KeyError:
            raise UnknownChainError(f"no chain named {name!r} in the config; known: {', '.join(self._adapters)}") from None

    def _chain_config(self, name: str):
        self._chain(name)  # the same error for an unknown name
        return self.config.chains[name]

    def _task_board_v2(self, name: str):
        """The requester's side of chain `name`'s v2 board (signing with its sender)."""
        key = f"{name}:v2"
        if key not in self._boards:
            self._chain(name)  # the same error for an unknown name
            self._boards[key] = self._drivers[name].requester_board_v2(self.config)
        return self._boards[key]

    def _serving_board_v2(self, name: str):
        """A read-only view of chain `name`'s v2 board as workers see it (claims, waiting results)."""
        key = f"{name}:v2-serving"
        if key not in self._boards:
            self._chain(name)
            self._boards[key] = self._drivers[name].serving_board_v2(self.config, None)
        return self._boards[key]

    async def request_task(self, *, src: str, dst: str, executor: str, input: bytes | str | None = None,
                           max_fee: int, deadline: int | None = None, input_uri: str | None = None,
                           input_hash: bytes | None = None, allow_unknown_executor: bool = False,
                           auction: AuctionTerms | None = None,
                           no_worker_after_s: float | None = DEFAULT_NO_WORKER_AFTER_S):
        """Escrow `max_fee` on `src` and ask the workers on `dst` to run `executor` on `input`, in
        task protocol v2 (v1 is retired): workers compete in a reverse Dutch auction (`auction`:
        AuctionTerms, default a 1 s window from half of max_fee, 60 s to answer, no bond, forfeited
        bonds to our own account on `dst`); the cheapest that claims first is paid its price and the
        rest of max_fee comes back. Returns a `relay.tasks.client.TaskHandleV2` (`await
        handle.result()`, `handle.events()`). With no claim after `no_worker_after_s` (None: never),
        the handle says so: a `no_worker` event naming the executor and chain, and NoWorkerError
        from `result()`."""
        return await request_task_v2(self, src=src, dst=dst, executor=executor, input=input, max_fee=max_fee,
                                     deadline=deadline, input_uri=input_uri, input_hash=input_hash,
                                     allow_unknown_executor=allow_unknown_executor, auction=auction,
                                     no_worker_after_s=no_worker_after_s)

    def _by_domain(self, domain: int) -> tuple[str, object]:
        for name, adapter in self._adapters.items():
            if adapter.domain == domain:
                return name, adapter
        raise UnknownChainError(f"no configured chain has domain {domain}")

    @property
    def feeds(self):
        """A `relay.feeds.client.FeedsClient` for the `[feed_server]` listen address: `await
        client.feeds.latest("ETH/USD")`, `async for update in client.feeds.stream([...])`."""
        if self._feeds is None:
            self._feeds = FeedsClient(f"http://{self.config.feed_server.listen}", self.committee)
        return self._feeds

    @property
    def committee(self):
        if self._committee is None:
            if self.config.committee is None:
                raise SdkError("the config has no [committee] table, so signatures cannot be verified")
            self._committee = Committee.load(self.config.committee.file)
        return self._committee

    async def send(self, src: str, dst: str, receiver: bytes, payload: bytes,
                   kind: MessageKind = MessageKind.DATA) -> SentMessage:
        """Send from chain `src` to `receiver` (32 bytes: left-padded EVM address or Solana key) on `dst`."""
        source, destination = self._chain(src), self._chain(dst)
        if len(receiver) == 20:
            receiver = bytes(12) + receiver
        if len(receiver) != 32:
            raise SdkError("receiver must be 32 bytes (a Solana public key) or a 20-byte EVM address")
        if len(payload) > MAX_PAYLOAD_LEN:
            raise SdkError(f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_LEN}: send a hash + URI instead")
        if MessageKind(kind) is MessageKind.COMMITTEE_ROTATION:
            raise SdkError("COMMITTEE_ROTATION messages come from the committee, not from a gateway")
        envelope, tx = await source.send_message(destination.domain, receiver, int(kind), payload)
        return SentMessage(envelope=envelope, source_chain=src, source_tx=tx)

    async def is_delivered(self, message: SentMessage | Envelope) -> bool:
        envelope = message.envelope if isinstance(message, SentMessage) else message
        _, destination = self._by_domain(envelope.dst_domain)
        return await destination.is_delivered(envelope.message_id)

    async def wait_delivered(self, message: SentMessage | Envelope, timeout: float = 120.0,
                             poll: float = 0.25) -> Delivery:
        envelope = message.envelope if isinstance(message, SentMessage) else message
        name, destination = self._by_domain(envelope.dst_domain)
        started = time.monotonic()
        status = MessageStatus.NOT_DELIVERED
        while True:
            # Only "recorded and handled" is delivered: a failed handler is retried by the relayer.
            status = await destination.message_status(envelope.message_id)
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
        ref = self.config.committee
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


class SyncTesseraClient:
    """Blocking wrapper: one private event loop per client."""

    def __init__(self, config_path: str | Path | None = None) -> None:
        self._runner = asyncio.Runner()
        self._client = TesseraClient.from_config(config_path)
        self._runner.run(self._client.start())

    def __enter__(self) -> "SyncTesseraClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()

    def send(self, src: str, dst: str, receiver: bytes, payload: bytes, kind: MessageKind = MessageKind.DATA) -> SentMessage:
        return self._runner.run(self._client.send(src, dst, receiver, payload, kind))

    def wait_delivered(self, message: SentMessage, timeout: float = 120.0) -> Delivery:
        return self._runner.run(self._client.wait_delivered(message, timeout))

    def verify(self, envelope: Envelope, epoch: int, signature: bytes) -> bool:
        return self._client.verify(envelope, epoch, signature)
