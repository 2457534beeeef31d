"""In-memory stand-ins for the relayer's collaborators: a chain with a gateway's 'delivered' set and a
committee that signs (or does not yet), plus envelopes between their two domains."""

from __future__ import annotations

from relay.envelope import Envelope
from relay.interfaces import DeliveryState, DeliveryStatus, EndpointHealth, Observation, SignedDelivery
from relay.pipeline import Collected

SRC, DST = 31337, 13375


def envelope(nonce: int, src: int = SRC, dst: int = DST) -> Envelope:
    return Envelope(kind=4, nonce=nonce, src_domain=src, src_sender=b"\x01" * 32, dst_domain=dst,
                    dst_receiver=b"\x02" * 32, payload=f"msg {nonce}".encode())


class FakeChain:
    """A destination/source chain with a shared 'delivered' set, like a gateway contract."""

    def __init__(self, name: str, domain: int, delivered: set[bytes] | None = None) -> None:
        self.name, self.domain = name, domain
        self.delivered: set[bytes] = delivered if delivered is not None else set()
        self.sent: dict[str, SignedDelivery] = {}
        self.status_override: dict[str, DeliveryStatus] = {}
        self.by_nonce: dict[int, Observation] = {}
        self.submit_error: Exception | None = None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def watch(self, cursor):
        if False:
            yield

    async def reobserve(self, source_tx):
        return []

    async def find_nonce(self, nonce):
        return self.by_nonce.get(nonce)

    async def is_delivered(self, message_id, envelope=None):
        return message_id in self.delivered

    async def submit(self, delivery):
        if self.submit_error:
            raise self.submit_error
        tx = f"tx{len(self.sent)}"
        self.sent[tx] = delivery
        return tx

    async def delivery_status(self, tx_id):
        if tx_id in self.status_override:
            return self.status_override[tx_id]
        delivery = self.sent[tx_id]
        self.delivered.add(delivery.envelope.message_id)
        return DeliveryStatus(DeliveryState.CONFIRMED)

    def health(self):
        return [EndpointHealth(url=f"fake://{self.name}")]


class FakeCommittee:
    """Signs every envelope when `ready`; otherwise reports a shortfall and one faulty member."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.calls = 0

    async def collect(self, env, source_tx):
        self.calls += 1
        if not self.ready:
            return Collected(signature=None, epoch=1, reason="2/3 partials (member 3: timeout)", faulty={4: "bad partial"})
        return Collected(signature=b"\x05" * 64, epoch=1)
