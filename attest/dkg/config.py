"""The DKG's shared configuration (docs/KEYS.md): epoch, n, t, the participants with their endpoints
and optional identity keys, the session label and the round deadlines."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from attest.dealer import KeygenError
from attest.dkg.wire import PROTOCOL, canonical, unhex


@dataclass(frozen=True, slots=True)
class Participant:
    index: int
    endpoint: str  # where this participant serves DKG messages
    attester_endpoint: str  # what goes into the committee file
    identity_key: bytes | None = None  # Ed25519 public key that signs its DKG messages (optional)


@dataclass(frozen=True, slots=True)
class DKGConfig:
    epoch: int
    n: int
    t: int
    participants: tuple[Participant, ...]
    session: str = ""  # operators pick a fresh label per run, so a stale server cannot feed an old run
    start_timeout: float = 120.0  # round 0 waits for everyone to start
    round_timeout: float = 30.0  # later rounds: a party silent this long is disqualified
    request_timeout: float = 3.0

    def __post_init__(self) -> None:
        if not 0 <= self.epoch < 2**32:
            raise KeygenError(f"dkg config: epoch {self.epoch} does not fit in uint32")
        if not 1 <= self.t <= self.n:
            raise KeygenError(f"dkg config: need 1 <= t <= n, got t={self.t}, n={self.n}")
        indices = sorted(p.index for p in self.participants)
        if indices != list(range(1, self.n + 1)):
            raise KeygenError(f"dkg config: participants must have indices 1..{self.n} exactly once, got {indices}")
        endpoints = [p.endpoint for p in self.participants]
        if len(set(endpoints)) != len(endpoints):
            raise KeygenError("dkg config: two participants share an endpoint")
        for p in self.participants:
            url = urlsplit(p.endpoint)
            if url.scheme not in ("http", "https") or not url.hostname or url.port is None:
                raise KeygenError(f"dkg config: participant {p.index} endpoint {p.endpoint!r} must look like "
                                  "http://HOST:PORT")
        if min(self.start_timeout, self.round_timeout, self.request_timeout) <= 0:
            raise KeygenError("dkg config: timeouts must be positive")
        pinned = [p.identity_key is not None for p in self.participants]
        if any(pinned) and not all(pinned):
            raise KeygenError("dkg config: give an identity_key for every participant or for none "
                              "(make one with `relay keys identity --out FILE`)")
        for p in self.participants:
            if p.identity_key is not None:
                try:
                    Ed25519PublicKey.from_public_bytes(p.identity_key)
                except ValueError:
                    raise KeygenError(f"dkg config: participant {p.index} identity_key is not a 32-byte "
                                      "Ed25519 public key") from None

    @property
    def authenticated(self) -> bool:
        return all(p.identity_key is not None for p in self.participants)

    def participant(self, index: int) -> Participant:
        for p in self.participants:
            if p.index == index:
                return p
        raise KeygenError(f"dkg config has no participant {index}; indices are 1..{self.n}")

    @property
    def session_id(self) -> bytes:
        """Binds every message and ciphertext to this exact run's parameters."""
        spec = {
            "protocol": PROTOCOL,
            "session": self.session,
            "epoch": self.epoch,
            "n": self.n,
            "t": self.t,
            "participants": [[p.index, p.endpoint, p.attester_endpoint,
                              None if p.identity_key is None else p.identity_key.hex()]
                             for p in sorted(self.participants, key=lambda p: p.index)],
        }
        return hashlib.sha256(canonical(spec)).digest()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dkg config") -> "DKGConfig":
        try:
            participants = tuple(
                Participant(int(p["index"]), str(p["endpoint"]), str(p.get("attester_endpoint", p["endpoint"])),
                            unhex(p["identity_key"], 32) if "identity_key" in p else None)
                for p in data["participants"]
            )
            timing = {k: float(data[k]) for k in ("start_timeout", "round_timeout", "request_timeout") if k in data}
            return cls(int(data["epoch"]), int(data["n"]), int(data["t"]), participants,
                       str(data.get("session", "")), **timing)
        except KeyError as exc:
            raise KeygenError(f"{source}: missing field {exc.args[0]!r} (see docs/KEYS.md for the format)") from None
        except (TypeError, ValueError) as exc:
            raise KeygenError(f"{source}: malformed value ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "n": self.n, "t": self.t, "session": self.session,
            "start_timeout": self.start_timeout, "round_timeout": self.round_timeout,
            "request_timeout": self.request_timeout,
            "participants": [{"index": p.index, "endpoint": p.endpoint, "attester_endpoint": p.attester_endpoint,
                              **({} if p.identity_key is None else {"identity_key": "0x" + p.identity_key.hex()})}
                             for p in self.participants],
        }


def load_dkg_config(path: Path) -> DKGConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeygenError(f"cannot read DKG config {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeygenError(f"{path} is neither valid TOML nor JSON: {exc}") from None
    return DKGConfig.from_dict(data, str(path))
