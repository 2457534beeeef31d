"""Multi-feed roots (docs/PROTOCOL.md "Feed roots"; docs/FEEDS.md "One signature per round"): one
committee signature over the reports of every feed of a round, so a chain verifies one pairing and
updates several feeds in one transaction (Pyth's `updatePriceFeeds(bytes[])` is the anchor).

The tree is the batch tree of relay/batch.py (node = keccak256(0x01 ‖ left ‖ right), a level of odd
width promotes its last node, at most 64 leaves, proofs skip promoted levels) with its own leaf:
    leaf_i = keccak256(0x02 ‖ report_i)            (the 122-byte v1 report; 0x00 is a message leaf)
The committee signs
    feed_root_digest(epoch, leaf_count, root) = keccak256("TESSERA/v1/FEED" ‖ "ROOT" ‖ epoch:u32 ‖ leaf_count:u32 ‖ root)
(59 bytes; a report digest's preimage is 51 bytes, an observation digest's 54, a message root's 63, so
no feed-root signature is valid for anything else). No domain: like a report, a root is valid on
every chain. Pure Python (keccak only); FeedStore.sol and the Solana program's feeds.c compute the
same, and tests/vectors/feeds_multi_v1.json (tests/vectors/generate_feeds_multi.py) pins it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.batch import MAX_BATCH_SIZE, proof_of, tree_levels
from relay.feeds.report import FeedReport, ReportError
from relay.feeds.signed import (  # the primitives a served report's proof needs live beside it
    FEED_LEAF_PREFIX,
    TAG_FEED_ROOT,
    FeedRootError,
    RootProof,
    SignedReport,
    SignedReportError,
    _check_count,
    _hex,
    feed_leaf,
    feed_root_digest,
    root_from_feed_proof,
)
from relay.protocol import U32_MAX

__all__ = [
    "FEED_LEAF_PREFIX", "MAX_FEEDS_PER_ROOT", "TAG_FEED_ROOT", "FeedRoot", "FeedRootError", "SignedFeedRoot",
    "feed_leaf", "feed_proof", "feed_root", "feed_root_digest", "root_from_feed_proof", "verify_feed_proof",
]

MAX_FEEDS_PER_ROOT = MAX_BATCH_SIZE  # 64: depth 6, as message batches (= relay.feeds.signed's)


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    _check_count(len(leaves))
    return tree_levels(leaves)


def feed_root(reports: Sequence[bytes | FeedReport]) -> bytes:
    return _levels([feed_leaf(r) for r in reports])[-1][0]


def feed_proof(reports: Sequence[bytes | FeedReport], index: int) -> list[bytes]:
    levels = _levels([feed_leaf(r) for r in reports])
    if not 0 <= index < len(reports):
        raise FeedRootError(f"report index {index} outside a root of {len(reports)}")
    return proof_of(levels, index)


def verify_feed_proof(root: bytes, report: bytes | FeedReport, index: int, leaf_count: int,
                      proof: Sequence[bytes]) -> bool:
    try:
        return root_from_feed_proof(report, index, leaf_count, proof) == root
    except FeedRootError:
        return False


@dataclass(frozen=True, slots=True)
class FeedRoot:
    """The reports of one round in leaf order (the leader's order, e.g. by feed id), with their tree."""

    reports: tuple[FeedReport, ...]

    @classmethod
    def of(cls, reports: Sequence[FeedReport]) -> "FeedRoot":
        """Refuses an empty or oversized set and two reports of one feed."""
        _check_count(len(reports))
        ids = [r.feed_id for r in reports]
        if len(set(ids)) != len(ids):
            raise FeedRootError("a feed root holds at most one report per feed")
        return cls(tuple(reports))

    @property
    def leaf_count(self) -> int:
        return len(self.reports)

    @property
    def root(self) -> bytes:
        return feed_root(self.reports)

    def digest(self, epoch: int) -> bytes:
        return feed_root_digest(epoch, self.leaf_count, self.root)

    def proof(self, index: int) -> list[bytes]:
        return feed_proof(self.reports, index)

    def index_of(self, feed_id: str) -> int:
        for i, r in enumerate(self.reports):
            if r.feed_id == feed_id:
                return i
        raise FeedRootError(f"no report of {feed_id!r} in this root")


@dataclass(frozen=True, slots=True)
class SignedFeedRoot:
    """A feed root with the committee's signature over `root.digest(epoch)`."""

    root: FeedRoot
    epoch: int
    signature: bytes  # 64-byte combined BLS signature (G1)

    @property
    def digest(self) -> bytes:
        return self.root.digest(self.epoch)

    def verify(self, committee, backend=None) -> bool:
        """As SignedReport.verify: True when the committee of this epoch signed the root."""
        if committee.epoch != self.epoch:
            return False
        try:
            return bool(committee.verify(self.digest, self.signature, backend=backend))
        except (ValueError, ArithmeticError):
            return False

    def report(self, feed_id_or_index: str | int) -> SignedReport:
        """One feed's report as served (v2): the report, its proof and the root's signature; it
        verifies alone (SignedReport.verify)."""
        i = feed_id_or_index if isinstance(feed_id_or_index, int) else self.root.index_of(feed_id_or_index)
        proof = RootProof(i, self.root.leaf_count, tuple(self.root.proof(i)))
        return SignedReport(self.root.reports[i], self.epoch, self.signature, proof)

    def reports(self) -> list[SignedReport]:
        """Every feed's served report, in leaf order."""
        return [self.report(i) for i in range(self.root.leaf_count)]

    def to_json(self) -> dict:
        return {
            "epoch": self.epoch,
            "leaf_count": self.root.leaf_count,
            "root": "0x" + self.root.root.hex(),
            "reports": ["0x" + r.encode().hex() for r in self.root.reports],
            "signature": "0x" + self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: object) -> "SignedFeedRoot":
        """Trusts `reports`, `epoch` and `signature`; `root` and `leaf_count`, when given, must agree."""
        if not isinstance(data, dict) or not isinstance(data.get("reports"), list):
            raise SignedReportError("a signed feed root is a JSON object with a list of reports")
        try:
            root = FeedRoot.of([FeedReport.decode(_hex(r, "reports[]")) for r in data["reports"]])
        except SignedReportError:
            raise
        except ReportError as exc:
            raise SignedReportError(f"reports: {exc}") from None
        epoch = data.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= U32_MAX:
            raise SignedReportError("epoch must be an integer in 0..2^32-1")
        signature = _hex(data.get("signature"), "signature", 64)
        if "root" in data and _hex(data["root"], "root", 32) != root.root:
            raise SignedReportError("root does not match the reports")
        if "leaf_count" in data and data["leaf_count"] != root.leaf_count:
            raise SignedReportError("leaf_count does not match the reports")
        return cls(root, epoch, signature)
