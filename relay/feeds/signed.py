"""A committee-signed feed report: what the leader publishes, the feed server serves, the SDK
verifies and the pushers put on-chain. One JSON shape everywhere (docs/FEEDS.md "Signed reports").

Two kinds, one class: a v1 report carries the committee's signature over its own digest; a v2
report (`"version": 2`) was signed as one leaf of a feed root (docs/FEEDS.md "One signature per
round") and carries its Merkle proof, so it verifies alone: the signature is over
feed_root_digest(epoch, leaf_count, root) and the proof leads from the report to that root. The
leaf, root digest and proof primitives live here (relay/feeds/multi.py builds whole roots on them),
so a consumer verifying one served report needs nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.batch import MAX_BATCH_SIZE, BatchError, climb, proof_length
from relay.envelope import keccak256
from relay.feeds.report import REPORT_LEN, FeedReport, ReportError
from relay.protocol import TAG_FEED, U32_MAX

FEED_LEAF_PREFIX = b"\x02"
TAG_FEED_ROOT = TAG_FEED + b"ROOT"
MAX_FEEDS_PER_ROOT = MAX_BATCH_SIZE  # 64: depth 6, as message batches
ROOT_REPORT_VERSION = 2  # the "version" of a served report signed through a feed root


class FeedRootError(ReportError):
    """A feed root, its reports or a proof do not follow the multi-feed encoding."""


def feed_leaf(report: bytes | FeedReport) -> bytes:
    raw = report.encode() if isinstance(report, FeedReport) else bytes(report)
    if len(raw) != REPORT_LEN:
        raise FeedRootError(f"a feed leaf is over a {REPORT_LEN}-byte report, got {len(raw)} bytes")
    return keccak256(FEED_LEAF_PREFIX + raw)


def _check_count(leaf_count: int) -> None:
    if not isinstance(leaf_count, int) or isinstance(leaf_count, bool) or not 1 <= leaf_count <= MAX_FEEDS_PER_ROOT:
        raise FeedRootError(f"a feed root has 1..{MAX_FEEDS_PER_ROOT} reports, not {leaf_count}")


def root_from_feed_proof(report: bytes | FeedReport, index: int, leaf_count: int, proof: Sequence[bytes]) -> bytes:
    """The root a proof leads to (what the chains compute); raises on a wrong index or proof length."""
    _check_count(leaf_count)
    try:
        expected = proof_length(index, leaf_count)
    except BatchError as exc:
        raise FeedRootError(str(exc)) from None
    if len(proof) != expected:
        raise FeedRootError(f"a proof of report {index} of {leaf_count} has {expected} hashes, not {len(proof)}")
    return climb(feed_leaf(report), index, leaf_count, proof)


def feed_root_digest(epoch: int, leaf_count: int, root: bytes) -> bytes:
    """What the committee signs for a feed root."""
    if not isinstance(epoch, int) or not 0 <= epoch <= U32_MAX:
        raise FeedRootError(f"epoch {epoch!r} does not fit in uint32")
    _check_count(leaf_count)
    if len(root) != 32:
        raise FeedRootError("a root has 32 bytes")
    return keccak256(TAG_FEED_ROOT + epoch.to_bytes(4, "big") + leaf_count.to_bytes(4, "big") + root)


class SignedReportError(ReportError):
    """A signed report that is malformed or whose signature does not verify."""


def _hex(value: object, name: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise SignedReportError(f"{name} must be a 0x-prefixed hex string")
    try:
        data = bytes.fromhex(value[2:])
    except ValueError:
        raise SignedReportError(f"{name} is not valid hex") from None
    if length is not None and len(data) != length:
        raise SignedReportError(f"{name} must be {length} bytes, got {len(data)}")
    return data


@dataclass(frozen=True, slots=True)
class RootProof:
    """Where a report sits in the feed root the committee signed: its leaf index, the root's leaf
    count and the sibling hashes from leaf to root (relay/batch.py's proof rules)."""

    index: int
    leaf_count: int
    proof: tuple[bytes, ...]

    def root_of(self, report: FeedReport) -> bytes:
        return root_from_feed_proof(report, self.index, self.leaf_count, self.proof)

    def to_json(self, report: FeedReport) -> dict:
        return {"root": "0x" + self.root_of(report).hex(), "index": self.index, "leaf_count": self.leaf_count,
                "proof": ["0x" + h.hex() for h in self.proof]}

    @classmethod
    def from_json(cls, data: object, report: FeedReport) -> "RootProof":
        """Trusts index, leaf_count and proof; `root`, when given, must be where they lead."""
        if not isinstance(data, dict):
            raise SignedReportError("root must be an object {root, index, leaf_count, proof}")
        index, leaf_count = data.get("index"), data.get("leaf_count")
        for name, value in (("index", index), ("leaf_count", leaf_count)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_FEEDS_PER_ROOT:
                raise SignedReportError(f"root.{name} must be an integer in 0..{MAX_FEEDS_PER_ROOT}")
        items = data.get("proof")
        if not isinstance(items, list):
            raise SignedReportError("root.proof must be a list of 0x-hex 32-byte hashes")
        proof = cls(index, leaf_count, tuple(_hex(h, "root.proof[]", 32) for h in items))
        try:
            root = proof.root_of(report)
        except FeedRootError as exc:
            raise SignedReportError(f"root: {exc}") from None
        if "root" in data and _hex(data["root"], "root.root", 32) != root:
            raise SignedReportError("root.root is not where the report's proof leads: the report or its proof was altered")
        return proof


@dataclass(frozen=True, slots=True)
class SignedReport:
    report: FeedReport
    epoch: int  # committee epoch that signed
    signature: bytes  # 64-byte combined BLS signature (G1) over `digest`
    root: RootProof | None = None  # set when the committee signed a feed root holding this report (v2)

    @property
    def version(self) -> int:
        return 1 if self.root is None else ROOT_REPORT_VERSION

    @property
    def root_hash(self) -> bytes | None:
        """The feed root this report was signed in (None for a v1 report)."""
        return None if self.root is None else self.root.root_of(self.report)

    @property
    def root_key(self) -> tuple[int, bytes, bytes] | None:
        """(epoch, root, signature): reports with the same key were signed together and can go
        on-chain in one update."""
        return None if self.root is None else (self.epoch, self.root.root_of(self.report), bytes(self.signature))

    @property
    def feed_id(self) -> str:
        return self.report.feed_id

    @property
    def round(self) -> int:
        return self.report.round

    @property
    def digest(self) -> bytes:
        """What the committee signed: the report's digest (v1) or its feed root's (v2)."""
        if self.root is None:
            return self.report.digest(self.epoch)
        return feed_root_digest(self.epoch, self.root.leaf_count, self.root.root_of(self.report))

    def verify(self, committee, backend=None) -> bool:
        """True when the signature is the committee's (an `attest.Committee`, or anything with
        `epoch` and `verify(digest, signature)`) for this epoch."""
        if committee.epoch != self.epoch:
            return False
        try:
            return bool(committee.verify(self.digest, self.signature, backend=backend))
        except (ValueError, ArithmeticError):  # malformed point encodings (and a broken proof: FeedRootError)
            return False

    def to_json(self) -> dict:
        r = self.report
        body = {
            "feed_id": r.feed_id,
            "round": r.round,
            "price": str(r.price),  # decimal strings: int256 does not fit a JSON double
            "confidence": str(r.confidence),
            "decimals": r.decimals,
            "observations": r.observations,
            "observed_at": r.observed_at,
            "published_at": r.published_at,
            "epoch": self.epoch,
            "report": "0x" + r.encode().hex(),
            "signature": "0x" + self.signature.hex(),
        }
        if self.root is not None:
            body["version"] = ROOT_REPORT_VERSION
            body["root"] = self.root.to_json(r)
        return body

    @classmethod
    def from_json(cls, data: object) -> "SignedReport":
        """Trusts only `report`, `epoch` and `signature`; the readable fields must agree with them."""
        if not isinstance(data, dict):
            raise SignedReportError("a signed report is a JSON object")
        try:
            report = FeedReport.decode(_hex(data.get("report"), "report"))
        except SignedReportError:
            raise
        except ReportError as exc:
            raise SignedReportError(f"report: {exc}") from None
        epoch = data.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < 2**32:
            raise SignedReportError("epoch must be an integer in 0..2^32-1")
        signature = _hex(data.get("signature"), "signature", 64)
        version = data.get("version", 1)
        if version not in (1, ROOT_REPORT_VERSION) or isinstance(version, bool):
            raise SignedReportError(f"version {version!r} is not one this SDK reads (1, or 2 with a feed-root proof): "
                                    "upgrade tessera")
        if (version == ROOT_REPORT_VERSION) != ("root" in data):
            raise SignedReportError("a version 2 report carries a root {root, index, leaf_count, proof}, "
                                    "and only a version 2 report does")
        root = RootProof.from_json(data["root"], report) if "root" in data else None
        readable = cls(report, epoch, signature).to_json()
        for key, value in data.items():
            if key in readable and key not in ("report", "signature", "epoch") and str(value) != str(readable[key]):
                raise SignedReportError(f"{key} {value!r} does not match the encoded report ({readable[key]!r})")
        return cls(report, epoch, signature, root)
