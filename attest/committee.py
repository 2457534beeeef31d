"""The attester committee (public part) and a member's secret key share (docs/CRYPTO.md).

Committee file (TOML, or JSON with the same keys): epoch, n, t, group_key and one [[members]]
table per member (index, public_share, endpoint). Points are 0x-hex in the EIP-197 encoding.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from attest.errors import TesseraError
from attest.backend import Backend, get_backend
from attest.bls import lagrange_at, verify
from attest.bn254 import (
    G2_GENERATOR,
    R,
    BN254Error,
    CoordinateOutOfRangeError,
    G2Point,
    InvalidEncodingError,
    NotInSubgroupError,
    NotOnCurveError,
    PointAtInfinityError,
    decode_g2,
    decode_scalar,
    encode_g2,
    encode_scalar,
    hex_to_bytes,
)

U32_MAX = 2**32 - 1

_REASONS = {
    InvalidEncodingError: "wrong length or not hex; expected 0x + 256 hex digits",
    CoordinateOutOfRangeError: "a coordinate is >= p",
    PointAtInfinityError: "the point at infinity",
    NotOnCurveError: "not on the curve",
    NotInSubgroupError: "not in the subgroup",
}


class CommitteeError(TesseraError, ValueError):
    """A committee file or committee object is inconsistent; the message names the field."""


def _parse_g2(value: Any) -> bytes:
    if not isinstance(value, (str, bytes)):
        raise PydanticCustomError("g2_point", "not a valid G2 point (expected a 0x-hex string)")
    try:
        data = hex_to_bytes(value)
        decode_g2(data)
    except BN254Error as exc:
        reason = next((text for cls, text in _REASONS.items() if isinstance(exc, cls)), str(exc))
        raise PydanticCustomError("g2_point", "not a valid G2 point ({reason})", {"reason": reason}) from None
    return data


G2Bytes = Annotated[bytes, BeforeValidator(_parse_g2), PlainSerializer(lambda b: "0x" + b.hex(), return_type=str)]


class Member(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=1, le=65535)  # Shamir x-coordinate
    public_share: G2Bytes
    endpoint: str = Field(min_length=1)


class Committee(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    epoch: int = Field(ge=0, le=U32_MAX)
    n: int = Field(ge=1, le=65535)
    t: int = Field(ge=1)
    group_key: G2Bytes
    members: list[Member]

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "Committee":
        if self.t > self.n:
            raise PydanticCustomError("committee", "t: threshold {t} exceeds n = {n}", {"t": self.t, "n": self.n})
        if len(self.members) != self.n:
            raise PydanticCustomError(
                "committee", "members: n = {n} but {count} members are listed", {"n": self.n, "count": len(self.members)}
            )
        seen: set[int] = set()
        for position, member in enumerate(self.members):
            if member.index in seen or member.index > self.n:
                raise PydanticCustomError(
                    "committee",
                    "members[{pos}].index: {index} is duplicated or outside 1..n; indices must be 1..{n}, each once",
                    {"pos": position, "index": member.index, "n": self.n},
                )
            seen.add(member.index)
        self._check_shares_interpolate((info.context or {}).get("backend"))
        return self

    def _check_shares_interpolate(self, backend: Backend | str | None) -> None:
        # All n public shares must lie on ONE degree t-1 polynomial whose value at 0 is the group
        # key; otherwise some t-subsets would combine to a signature the chain rejects. Interpolate
        # from the first t shares to 0 and to every other index: n-t+1 small MSMs in G2.
        bk = get_backend(backend)
        base = self.members[: self.t]
        xs = [m.index for m in base]
        points = [decode_g2(m.public_share) for m in base]
        targets = [(0, self.group_key, "group_key")] + [
            (m.index, m.public_share, f"members[{pos}].public_share")
            for pos, m in enumerate(self.members)
            if pos >= self.t
        ]
        for x, expected, name in targets:
            if encode_g2(bk.g2_msm(points, lagrange_at(xs, x))) != expected:
                raise PydanticCustomError(
                    "committee",
                    "{name}: the public shares do not interpolate to it; the key files come from different "
                    "deals or were edited (re-run the deal or DKG)",
                    {"name": name},
                )

    # --- accessors ---
    @property
    def threshold(self) -> int:
        return self.t

    @property
    def indices(self) -> list[int]:
        return [m.index for m in self.members]

    def member(self, index: int) -> Member:
        for m in self.members:
            if m.index == index:
                return m
        raise CommitteeError(f"no member with index {index} in the committee of epoch {self.epoch}")

    def public_share(self, index: int) -> bytes:
        return self.member(index).public_share

    def group_key_point(self) -> G2Point:
        return decode_g2(self.group_key)

    def verify(self, digest: bytes, signature: bytes, backend: Backend | str | None = None) -> bool:
        """Is `signature` this committee's combined signature of `digest`?"""
        return verify(self.group_key, digest, signature, backend)

    # --- files ---
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def dumps_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def dumps_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = self.dumps_json() if path.suffix == ".json" else self.dumps_toml()
        path.write_text(text)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str = "committee", backend: Backend | str | None = None
    ) -> "Committee":
        try:
            return cls.model_validate(data, context={"backend": backend})
        except ValidationError as exc:
            raise CommitteeError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None

    @classmethod
    def load(cls, path: str | Path, backend: Backend | str | None = None) -> "Committee":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise CommitteeError(f"cannot read committee file {path}: {exc.strerror}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CommitteeError(f"committee file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
        return cls.from_dict(data, source=f"committee file {path}", backend=backend)


def _describe(error: Any) -> str:
    parts: list[str] = []
    for item in error["loc"]:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
    location = ".".join(parts)
    message = error["msg"]
    # Model-level messages already start with the field they are about.
    return f"{location}: {message}" if location else message


def load_committee(path: str | Path, backend: Backend | str | None = None) -> Committee:
    return Committee.load(path, backend)


@dataclass(frozen=True, slots=True)
class KeyShare:
    """A member's secret Shamir share s_i (in memory only; attest.keystore encrypts it on disk)."""

    index: int
    scalar: int
    epoch: int

    def __post_init__(self) -> None:
        if not 0 < self.scalar < R:
            raise CommitteeError("a key share scalar must be in [1, r-1]; the key file is corrupt")
        if self.index < 1:
            raise CommitteeError(f"key share index {self.index} must be >= 1")

    def __repr__(self) -> str:  # never print the secret
        return f"KeyShare(index={self.index}, epoch={self.epoch}, scalar=<hidden>)"

    def to_bytes(self) -> bytes:
        return encode_scalar(self.scalar)

    @classmethod
    def from_bytes(cls, index: int, epoch: int, data: bytes) -> "KeyShare":
        return cls(index=index, scalar=decode_scalar(data), epoch=epoch)

    def public_share(self, backend: Backend | str | None = None) -> bytes:
        return encode_g2(get_backend(backend).g2_mul(G2_GENERATOR, self.scalar))
