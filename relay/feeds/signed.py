"""A committee-signed feed report: what the leader publishes, the feed server serves, the SDK
verifies and the pushers put on-chain. One JSON shape everywhere (docs/FEEDS.md "Signed reports")."""

from __future__ import annotations

from dataclasses import dataclass

from relay.feeds.report import FeedReport, ReportError


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
class SignedReport:
    report: FeedReport
    epoch: int  # committee epoch that signed
    signature: bytes  # 64-byte combined BLS signature (G1) over report.digest(epoch)

    @property
    def feed_id(self) -> str:
        return self.report.feed_id

    @property
    def round(self) -> int:
        return self.report.round

    @property
    def digest(self) -> bytes:
        return self.report.digest(self.epoch)

    def verify(self, committee, backend=None) -> bool:
        """True when the signature is the committee's (an `attest.Committee`, or anything with
        `epoch` and `verify(digest, signature)`) for this epoch."""
        if committee.epoch != self.epoch:
            return False
        try:
            return bool(committee.verify(self.digest, self.signature, backend=backend))
        except (ValueError, ArithmeticError):  # malformed point encodings
            return False

    def to_json(self) -> dict:
        r = self.report
        return {
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
        readable = cls(report, epoch, signature).to_json()
        for key, value in data.items():
            if key in readable and key not in ("report", "signature", "epoch") and str(value) != str(readable[key]):
                raise SignedReportError(f"{key} {value!r} does not match the encoded report ({readable[key]!r})")
        return cls(report, epoch, signature)
