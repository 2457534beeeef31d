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

from relay.batch import MAX_BATCH_SIZE, BatchError, climb, proof_length, proof_of, tree_levels
from relay.envelope import keccak256
from relay.feeds.report import REPORT_LEN, FeedReport, ReportError
from relay.feeds.signed import SignedReportError, _hex
from relay.protocol import TAG_FEED, U32_MAX

FEED_LEAF_PREFIX = b"\x02"
TAG_FEED_ROOT = TAG_FEED + b"ROOT"
MAX_FEEDS_PER_ROOT = MAX_BATCH_SIZE  # 64: depth 6, as message batches


class FeedRootError(ReportError):
    """A feed root, its reports or a proof do not follow the multi-feed encoding."""


def feed_leaf(report: bytes | FeedReport) -> bytes:
    raw = report.encode() if isinstance(report, FeedReport) else bytes(report)
    if len(raw) != REPORT_LEN:
        raise FeedRootError(f"a feed leaf is over a {REPORT_LEN}-byte report, got {len(raw)} bytes")
    return keccak256(FEED_LEAF_PREFIX + raw)


def _check_count(leaf_count: int) -> None:
    if not isinstance(leaf_count, int) or not 1 <= leaf_count <= MAX_FEEDS_PER_ROOT:
        raise FeedRootError(f"a feed root has 1..{MAX_FEEDS_PER_ROOT} reports, not {leaf_count}")


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


def verify_feed_proof(root: bytes, report: bytes | FeedReport, index: int, leaf_count: int,
                      proof: Sequence[bytes]) -> bool:
    try:
        return root_from_feed_proof(report, index, leaf_count, proof) == root
    except FeedRootError:
        return False


def feed_root_digest(epoch: int, leaf_count: int, root: bytes) -> bytes:
    """What the committee signs for a feed root."""
    if not isinstance(epoch, int) or not 0 <= epoch <= U32_MAX:
        raise FeedRootError(f"epoch {epoch!r} does not fit in uint32")
    _check_count(leaf_count)
    if len(root) != 32:
        raise FeedRootError("a root has 32 bytes")
    return keccak256(TAG_FEED_ROOT + epoch.to_bytes(4, "big") + leaf_count.to_bytes(4, "big") + root)


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
