"""A dealt test committee: the public committee and every member's share, and what tests sign with
them (t partial signatures combined)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import attest
from attest.threshold import combine_signatures
from relay.envelope import Envelope
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport


@dataclass
class Dealt:
    committee: attest.Committee
    shares: list[attest.KeyShare]

    def __iter__(self) -> Iterator:
        """`committee, shares = dealt`, like the pair `attest.deal` returns."""
        return iter((self.committee, self.shares))

    def sign_digest(self, digest: bytes) -> bytes:
        """The group signature of `digest` from the first t members."""
        return combine_signatures([attest.partial_sign(s, digest) for s in self.shares[: self.committee.t]])

    def sign(self, feed_id: str = "ETH/USD", round_: int = 1, price: int = 3_456_10000000, confidence: int = 5_000000,
             published_at: int | None = None, decimals: int = 8) -> SignedReport:
        """A feed report signed by the committee (published now unless `published_at` is given)."""
        now = time.time_ns() // 1_000_000 if published_at is None else published_at
        report = FeedReport(feed_id, round_, price, confidence, decimals, 3, now - 20, now)
        epoch = self.committee.epoch
        return SignedReport(report, epoch, self.sign_digest(report.digest(epoch)))


def deal(n: int = 3, t: int = 2, epoch: int = 7, **options) -> Dealt:
    """A fresh t-of-n committee; `options` go to `attest.deal` (rng, backend, endpoints)."""
    committee, shares = attest.deal(n, t, epoch=epoch, **options)
    return Dealt(committee, shares)


def sign_envelope(committee: attest.Committee, shares: list[attest.KeyShare], envelope: Envelope) -> bytes:
    """The group signature of `envelope` under `committee`'s epoch, from its first t shares."""
    digest = envelope.digest(committee.epoch)
    result = attest.combine(committee, digest, [attest.partial_sign(s, digest) for s in shares[:committee.t]])
    assert result.ok
    return result.signature
