"""Joint-Feldman distributed key generation over HTTP: no party ever holds the group secret.

Pedersen's DKG with Feldman commitments and complaints (Gennaro, Jarecki, Krawczyk, Rabin), with the
commitments in G2 so that the group key and every public share live where BLS min-sig needs them.
Each participant serves its own messages (GET /v1/dkg/<session>/<round>) and fetches everyone else's
from the endpoints in the shared config, so a message is attributed to the endpoint it came from.
Private shares travel inside those public messages, encrypted to the recipient's round-0 X25519 key.
Rounds, rules and limits: docs/KEYS.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import socket
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from attest.backend import Backend, get_backend
from attest.bls import random_scalar
from attest.bn254 import G2_GENERATOR, R, BN254Error, G2Point, decode_g2, encode_g2
from attest.committee import Committee, KeyShare
from attest.dealer import KeygenError
from relay.log import get_logger

PROTOCOL = "TESSERA/v1/DKG"
ROUND_HELLO, ROUND_DEAL, ROUND_COMPLAINTS, ROUND_JUSTIFY, ROUND_CONFIRM = range(5)
ROUND_NAMES = {0: "hello", 1: "deal", 2: "complaints", 3: "justify", 4: "confirm"}
_SHARE_INFO = PROTOCOL.encode() + b"/share"
_SIGNING_TAG = PROTOCOL.encode() + b"/message"
MAX_MESSAGE_BYTES = 1 << 20  # a deal message for n participants is ~n·200 bytes
_MALFORMED = {"malformed": True}  # stands in the transcript for a message that could not be parsed
_FORGED = {"forged": True}  # ... and for one that the sender's pinned identity key did not sign


class DKGError(KeygenError):
    """The distributed key generation could not produce an agreed committee."""


# -- configuration ------------------------------------------------------------------------------

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
        return hashlib.sha256(_canonical(spec)).digest()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dkg config") -> "DKGConfig":
        try:
            participants = tuple(
                Participant(int(p["index"]), str(p["endpoint"]), str(p.get("attester_endpoint", p["endpoint"])),
                            _unhex(p["identity_key"], 32) if "identity_key" in p else None)
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


# -- share encryption (ECIES: ephemeral X25519 + HKDF-SHA256 + AES-256-GCM) ---------------------

def x25519_public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _share_aad(session: bytes, sender: int, recipient: int) -> bytes:
    return session + sender.to_bytes(4, "big") + recipient.to_bytes(4, "big")


def seal_share(session: bytes, sender: int, recipient: int, recipient_key: bytes, share: int) -> dict[str, str]:
    ephemeral = X25519PrivateKey.generate()
    ephemeral_pub = x25519_public_bytes(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_key))
    key = HKDF(hashes.SHA256(), 32, salt=None, info=_SHARE_INFO + ephemeral_pub + recipient_key).derive(shared)
    nonce = secrets.token_bytes(12)
    ciphertext = AESGCM(key).encrypt(nonce, (share % R).to_bytes(32, "big"), _share_aad(session, sender, recipient))
    return {"ephemeral": "0x" + ephemeral_pub.hex(), "nonce": "0x" + nonce.hex(), "ciphertext": "0x" + ciphertext.hex()}


def open_share(session: bytes, sender: int, recipient: int, recipient_key: X25519PrivateKey,
               sealed: dict[str, str]) -> int:
    """Raises ValueError when the box does not open to a scalar: that is grounds for a complaint."""
    ephemeral_pub = _unhex(sealed["ephemeral"], 32)
    nonce = _unhex(sealed["nonce"], 12)
    ciphertext = _unhex(sealed["ciphertext"], 48)
    shared = recipient_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_pub))
    own_pub = x25519_public_bytes(recipient_key)
    key = HKDF(hashes.SHA256(), 32, salt=None, info=_SHARE_INFO + ephemeral_pub + own_pub).derive(shared)
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _share_aad(session, sender, recipient))
    except InvalidTag:
        raise ValueError("the encrypted share does not decrypt") from None
    scalar = int.from_bytes(plaintext, "big")
    if scalar >= R:
        raise ValueError("the decrypted share is not reduced modulo r")
    return scalar


# -- helpers ------------------------------------------------------------------------------------

def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _unhex(value: Any, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected 0x-hex")
    raw = bytes.fromhex(value[2:])
    if length is not None and len(raw) != length:
        raise ValueError(f"expected {length} bytes, got {len(raw)}")
    return raw


def _scalar_hex(value: int) -> str:
    return "0x" + (value % R).to_bytes(32, "big").hex()


def poly_eval(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for c in reversed(coefficients):
        result = (result * x + c) % R
    return result


def commitment_eval(backend: Backend, commitments: Sequence[G2Point], x: int) -> G2Point | None:
    """Σ_k x^k·C_k: the public image of the committed polynomial at x (Feldman)."""
    return backend.g2_msm(list(commitments), [pow(x, k, R) for k in range(len(commitments))])


def verify_share(backend: Backend, share: int, recipient: int, commitments: Sequence[G2Point]) -> bool:
    return 0 <= share < R and backend.g2_mul(G2_GENERATOR, share) == commitment_eval(backend, commitments, recipient)


def committee_from_commitments(config: DKGConfig, commitments: dict[int, Sequence[G2Point]],
                               backend: Backend) -> Committee:
    """Group key Σ C_i0 and public shares PK_j = Σ_i Σ_k j^k·C_ik over the qualified dealers."""
    dealers = sorted(commitments)
    aggregate = [backend.g2_msm([commitments[i][k] for i in dealers], [1] * len(dealers)) for k in range(config.t)]
    if any(a is None for a in aggregate):
        raise DKGError("the qualified dealers' commitments cancel out; run the DKG again with a new session label")
    members = []
    for p in sorted(config.participants, key=lambda p: p.index):
        public = commitment_eval(backend, aggregate, p.index)  # type: ignore[arg-type]
        if public is None:
            raise DKGError(f"participant {p.index}'s public share is the point at infinity; run the DKG again")
        members.append({"index": p.index, "public_share": encode_g2(public), "endpoint": p.attester_endpoint})
    try:
        # Validation checks that every public share and the group key lie on one degree t-1 polynomial.
        return Committee.model_validate({"epoch": config.epoch, "n": config.n, "t": config.t,
                                         "group_key": encode_g2(aggregate[0]), "members": members})
    except ValueError as exc:
        raise DKGError(f"the computed committee is invalid ({exc}); this is a bug, report it") from None


@dataclass
class DKGResult:
    committee: Committee
    share: KeyShare
    qual: list[int]
    excluded: dict[int, str]  # participant -> why it is not in QUAL
    transcript_hash: bytes
    confirmed_by: list[int]

    def summary(self) -> dict[str, Any]:
        return {
            "epoch": self.committee.epoch,
            "index": self.share.index,
            "qual": self.qual,
            "excluded": {str(k): v for k, v in sorted(self.excluded.items())},
            "transcript_hash": "0x" + self.transcript_hash.hex(),
            "confirmed_by": self.confirmed_by,
            "group_key": "0x" + self.committee.group_key.hex(),
        }


@dataclass
class _Dealing:
    commitments: list[G2Point]
    sealed: dict[int, dict[str, str]]


# -- the participant ----------------------------------------------------------------------------

@dataclass
class DKGParticipant:
    """One participant: its server, its client and its view of the protocol. Tests subclass it to
    play misbehaving participants through `_outgoing_share`, `_reveal`, `_publish`, `_serve` and
    `_sign`; production code never does."""

    config: DKGConfig
    index: int
    sock: socket.socket | None = None  # a pre-bound listening socket (tests use port 0)
    backend: Backend | str | None = None
    identity: Ed25519PrivateKey | None = None  # required when the config pins identity keys
    _published: dict[int, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)
    _fetched_by: dict[int, set[int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.me = self.config.participant(self.index)
        self.session = self.config.session_id
        self.log = get_logger("attest.dkg", index=self.index, epoch=self.config.epoch)
        self._x25519 = X25519PrivateKey.generate()
        self.backend: Backend = get_backend(self.backend)
        self._confirm_peers: list[int] = []  # peers that reached round 4 (published round 3)
        self._last_errors: dict[int, str] = {}  # why a peer's message could not be fetched
        if self.config.authenticated:
            if self.identity is None:
                raise DKGError(f"the DKG config pins identity keys: give participant {self.index} its identity "
                               "key (--identity-key FILE)")
            own = self.identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            if own != self.me.identity_key:
                raise DKGError(f"the identity key given to participant {self.index} is not the one the DKG config "
                               f"lists for it (0x{own.hex()}); use the matching key file or fix the config")

    # Behaviour hooks: an honest participant sends and reveals the true share.
    def _outgoing_share(self, recipient: int, share: int) -> int:
        return share

    def _reveal(self, complainer: int, share: int) -> int | None:
        return share

    async def run(self) -> DKGResult:
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        try:
            if self.sock is not None:
                site: web.BaseSite = web.SockSite(runner, self.sock)
            else:
                url = urlsplit(self.me.endpoint)
                site = web.TCPSite(runner, url.hostname, url.port)
            try:
                await site.start()
            except OSError as exc:
                raise DKGError(f"participant {self.index} cannot listen on {self.me.endpoint}: {exc.strerror}; "
                               "free the port or change the endpoint in the DKG config") from None
            timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                self._http = http
                try:
                    result = await self._protocol()
                except DKGError:
                    await self._linger()  # peers still need our confirm message to reach the same verdict
                    raise
                await self._linger()
                return result
        finally:
            await runner.cleanup()

    # -- HTTP -----------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/dkg/{session}/{round}", self._serve)
        app.router.add_get("/v1/dkg/health", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"session": self.session.hex(), "index": self.index,
                                  "rounds_published": sorted(self._published)})

    async def _serve(self, request: web.Request) -> web.Response:
        if request.match_info["session"] != self.session.hex():
            return web.json_response(
                {"error": f"participant {self.index} runs DKG session {self.session.hex()}; every participant "
                          "must use the same dkg config (epoch, n, t, session, participants)"}, status=409)
        try:
            rnd = int(request.match_info["round"])
        except ValueError:
            return web.json_response({"error": "round must be an integer"}, status=400)
        message = self._published.get(rnd)
        if message is None:
            return web.json_response({"error": f"round {rnd} not published yet"}, status=404)
        requester = request.query.get("from", "")
        if requester.isdigit():
            self._fetched_by.setdefault(rnd, set()).add(int(requester))
        return web.json_response(message)

    def _publish(self, rnd: int, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"protocol": PROTOCOL, "session": self.session.hex(), "round": rnd,
                                   "index": self.index, "body": body}
        if self.identity is not None:
            message["signature"] = "0x" + self._sign(_SIGNING_TAG + _canonical(message)).hex()
        self._published[rnd] = message
        self.log.debug("dkg.published", round=ROUND_NAMES[rnd])
        return message

    async def _fetch(self, peer: int, rnd: int, deadline: float) -> dict[str, Any] | None:
        url = f"{self.config.participant(peer).endpoint}/v1/dkg/{self.session.hex()}/{rnd}"
        delay = 0.02
        last_error = "no answer"
        while True:
            try:
                async with self._http.get(url, params={"from": str(self.index)}) as resp:
                    raw = await _read_capped(resp)
                    if resp.status == 200:
                        try:
                            message = json.loads(raw)
                        except ValueError:
                            message = None
                        if (isinstance(message, dict) and message.get("session") == self.session.hex()
                                and message.get("round") == rnd and message.get("index") == peer
                                and isinstance(message.get("body"), dict)):
                            return message if self._authentic(peer, message) else dict(_FORGED)
                        self.log.warning("dkg.bad_envelope", peer=peer, round=ROUND_NAMES[rnd])
                        return dict(_MALFORMED)
                    last_error = f"HTTP {resp.status}"
                    if resp.status == 409:
                        try:
                            last_error = str(json.loads(raw)["error"])
                        except (ValueError, KeyError, TypeError):
                            pass
            except _TooLarge:
                self.log.warning("dkg.message_too_large", peer=peer, round=ROUND_NAMES[rnd])
                return dict(_MALFORMED)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last_error = type(exc).__name__
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log.warning("dkg.peer_missed_round", peer=peer, round=ROUND_NAMES[rnd], last_error=last_error)
                self._last_errors[peer] = last_error
                return None
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.5)

    def _sign(self, data: bytes) -> bytes:
        assert self.identity is not None
        return self.identity.sign(data)

    def _authentic(self, peer: int, message: dict[str, Any]) -> bool:
        key = self.config.participant(peer).identity_key
        if key is None:
            return True  # unauthenticated mode: the endpoint that served it vouches for it (docs/KEYS.md)
        unsigned = {k: v for k, v in message.items() if k != "signature"}
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(_unhex(message.get("signature"), 64),
                                                           _SIGNING_TAG + _canonical(unsigned))
        except (InvalidSignature, ValueError):
            self.log.warning("dkg.bad_signature", peer=peer)
            return False
        return True

    async def _exchange(self, rnd: int, body: dict[str, Any], peers: Sequence[int],
                        timeout: float) -> dict[int, dict[str, Any] | None]:
        """Publish our message for this round, then collect every peer's (None = missed the deadline)."""
        own = self._publish(rnd, body)
        deadline = time.monotonic() + timeout
        others = [p for p in peers if p != self.index]
        fetched = await asyncio.gather(*(self._fetch(p, rnd, deadline) for p in others))
        messages: dict[int, dict[str, Any] | None] = dict(zip(others, fetched))
        messages[self.index] = own
        return messages

    async def _linger(self) -> None:
        # Our confirm message must stay up until every peer still in the protocol has read it: those
        # that published round 3 and fetched ours will come for it.
        waiting = (set(self._confirm_peers) & self._fetched_by.get(ROUND_JUSTIFY, set())) - {self.index}
        deadline = time.monotonic() + self.config.round_timeout
        while waiting - self._fetched_by.get(ROUND_CONFIRM, set()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # -- the protocol ---------------------------------------------------------------------------

    async def _protocol(self) -> DKGResult:
        cfg = self.config
        transcript: dict[int, list[Any]] = {p.index: [None] * 4 for p in cfg.participants}
        excluded: dict[int, str] = {}

        def record(rnd: int, messages: dict[int, dict[str, Any] | None]) -> None:
            for peer, message in messages.items():
                transcript[peer][rnd] = message
                if message is None:
                    excluded.setdefault(peer, f"missed the {ROUND_NAMES[rnd]} round deadline")
                elif message == _MALFORMED:
                    excluded.setdefault(peer, f"sent a malformed {ROUND_NAMES[rnd]} message")
                elif message == _FORGED:
                    excluded.setdefault(peer, f"served a {ROUND_NAMES[rnd]} message not signed by its identity key")

        def alive() -> list[int]:
            return [p.index for p in cfg.participants if p.index not in excluded]

        def require_quorum(stage: str) -> None:
            if self.index in excluded:
                raise DKGError(f"participant {self.index} was itself disqualified after the {stage} round: it "
                               f"{excluded[self.index]}. Check its logs, clock and network, then run the DKG again")
            if len(alive()) < cfg.t:
                errors = "".join(f" (participant {i}: {e})" for i, e in sorted(self._last_errors.items()))
                raise DKGError(
                    f"only {len(alive())} of {cfg.n} participants are still qualified after the {stage} round "
                    f"(threshold t={cfg.t}): {_describe(excluded)}.{errors} Start the missing participants "
                    "and run the DKG again with a new session label")

        self.log.info("dkg.start", n=cfg.n, t=cfg.t, session=self.session.hex()[:16])

        # Round 0: announce a fresh X25519 key for receiving shares.
        hello = await self._exchange(ROUND_HELLO, {"x25519": "0x" + x25519_public_bytes(self._x25519).hex()},
                                     [p.index for p in cfg.participants], cfg.start_timeout)
        record(ROUND_HELLO, hello)
        box_keys: dict[int, bytes] = {}
        for peer in alive():
            try:
                key = _unhex(hello[peer]["body"]["x25519"], 32)  # type: ignore[index]
                # A low-order point gives an all-zero shared secret whoever uses it; cryptography
                # refuses it. Every honest participant reaches the same verdict on the same key.
                self._x25519.exchange(X25519PublicKey.from_public_bytes(key))
                box_keys[peer] = key
            except (KeyError, TypeError, ValueError):
                excluded[peer] = "sent a malformed or unusable X25519 key in its hello message"
        require_quorum("hello")

        # Round 1: commit to a random polynomial (Feldman) and send each participant its share, sealed.
        coefficients = [random_scalar() for _ in range(cfg.t)]
        own_commitments = [self.backend.g2_mul(G2_GENERATOR, a) for a in coefficients]
        sealed = {
            str(j): seal_share(self.session, self.index, j, box_keys[j],
                               self._outgoing_share(j, poly_eval(coefficients, j)))
            for j in alive() if j != self.index
        }
        deal_body = {"commitments": ["0x" + encode_g2(c).hex() for c in own_commitments], "shares": sealed}
        del own_commitments  # everyone, us included, works from the published dealing
        deals = await self._exchange(ROUND_DEAL, deal_body, alive(), cfg.round_timeout)
        record(ROUND_DEAL, deals)
        dealings: dict[int, _Dealing] = {}
        my_shares: dict[int, int] = {self.index: poly_eval(coefficients, self.index)}
        complaints: list[int] = []

        def check_dealings() -> None:
            # Decoding n·t commitments with subgroup checks is CPU work: done in a thread so that our
            # server keeps answering the peers meanwhile. Our own dealing goes through the same checks,
            # so that we reach the verdict the others reach about us.
            for peer in alive():
                try:
                    body = deals[peer]["body"]  # type: ignore[index]
                    dealings[peer] = self._parse_dealing(body, peer, set(box_keys))
                except (KeyError, TypeError, ValueError, BN254Error) as exc:
                    excluded[peer] = f"sent a malformed dealing ({exc})"
                    continue
                if peer == self.index:
                    continue
                try:
                    share = open_share(self.session, peer, self.index, self._x25519, dealings[peer].sealed[self.index])
                    if not verify_share(self.backend, share, self.index, dealings[peer].commitments):
                        raise ValueError("the share does not match the dealer's commitments")
                    my_shares[peer] = share
                except (KeyError, TypeError, ValueError) as exc:
                    self.log.warning("dkg.complaint", against=peer, reason=str(exc))
                    complaints.append(peer)

        await asyncio.to_thread(check_dealings)
        require_quorum("deal")

        # Round 2: complaints against dealers whose share to us was bad.
        rounds = await self._exchange(ROUND_COMPLAINTS, {"complaints": sorted(complaints)}, alive(),
                                      cfg.round_timeout)
        record(ROUND_COMPLAINTS, rounds)
        against: dict[int, set[int]] = {}  # dealer -> complainers
        for peer in alive():
            try:
                listed = rounds[peer]["body"]["complaints"]  # type: ignore[index]
                if not isinstance(listed, list) or not all(isinstance(d, int) for d in listed):
                    raise TypeError
            except (KeyError, TypeError):
                excluded[peer] = "sent a malformed complaints message"
                continue
            for dealer in listed:
                if dealer in dealings and dealer != peer:
                    against.setdefault(dealer, set()).add(peer)
        require_quorum("complaints")

        # Round 3: answer complaints against us by revealing the disputed share in public.
        reveals = {}
        for complainer in sorted(against.get(self.index, ())):
            value = self._reveal(complainer, poly_eval(coefficients, complainer))
            if value is not None:
                reveals[str(complainer)] = _scalar_hex(value)
        coefficients.clear()
        justify = await self._exchange(ROUND_JUSTIFY, {"reveals": reveals}, alive(), cfg.round_timeout)
        record(ROUND_JUSTIFY, justify)
        for dealer, complainers in sorted(against.items()):
            if dealer in excluded:
                continue
            body = justify[dealer]["body"]  # type: ignore[index]
            revealed = body.get("reveals", {}) if isinstance(body, dict) else {}
            for complainer in sorted(complainers):
                try:
                    value = int.from_bytes(_unhex(revealed[str(complainer)], 32), "big")
                except (KeyError, TypeError, ValueError):
                    excluded[dealer] = f"did not answer the complaint of participant {complainer}"
                    break
                if not verify_share(self.backend, value, complainer, dealings[dealer].commitments):
                    excluded[dealer] = (f"revealed a share for participant {complainer} that does not match "
                                        "its commitments")
                    break
                self.log.info("dkg.complaint_dismissed", dealer=dealer, complainer=complainer)
                if complainer == self.index:
                    my_shares[dealer] = value
        if len(alive()) < cfg.t:
            require_quorum("justify")
        qual = alive()
        disqualified_self = self.index not in qual

        # Everyone with the same transcript computes the same committee from QUAL's commitments.
        committee: Committee | None = None
        share: KeyShare | None = None
        committee_hash = None
        if not disqualified_self:
            committee = await asyncio.to_thread(
                committee_from_commitments, cfg, {i: dealings[i].commitments for i in qual}, self.backend)
            share = KeyShare(index=self.index, scalar=sum(my_shares[i] for i in qual) % R, epoch=cfg.epoch)
            if share.public_share(self.backend) != committee.public_share(self.index):
                raise DKGError("our share does not match our public share; this is a bug, report it")
            committee_hash = hashlib.sha256(_canonical(committee.to_dict())).hexdigest()

        # Round 4: compare what everyone received. Without a reliable broadcast channel, a participant
        # could have shown different messages to different parties; this is where that surfaces.
        # Everyone who published round 3 takes part, disqualified or not, so nobody waits in vain.
        senders = {str(i): hashlib.sha256(_canonical(transcript[i])).hexdigest() for i in sorted(transcript)}
        transcript_hash = hashlib.sha256(self.session + _canonical(senders)).digest()
        confirm_body = {"transcript": transcript_hash.hex(), "senders": senders, "committee": committee_hash,
                        "qual": qual}
        finishers = [p for p in transcript if transcript[p][ROUND_JUSTIFY] not in (None, _MALFORMED, _FORGED)]
        self._confirm_peers = finishers
        confirms = await self._exchange(ROUND_CONFIRM, confirm_body, finishers, cfg.round_timeout)
        agreed = [self.index]
        for peer in finishers:
            message = confirms.get(peer)
            if peer == self.index:
                continue
            if message in (None, _MALFORMED, _FORGED) or not isinstance(message["body"].get("senders"), dict):
                self.log.warning("dkg.no_confirmation", peer=peer)
                continue
            body = message["body"]
            if body.get("transcript") != transcript_hash.hex():
                culprits = [int(i) for i, h in senders.items() if body["senders"].get(i) != h]
                raise DKGError(
                    f"participant {peer} received different DKG messages than participant {self.index} from "
                    f"participant(s) {culprits}: someone showed different messages to different parties "
                    "(or a message arrived at a round deadline). Do not use this key: run the DKG again, "
                    "without the named participant(s) if it happens again")
            if peer in qual and not disqualified_self and body.get("committee") != committee_hash:
                raise DKGError(f"participant {peer} computed a different committee from the same transcript; "
                               "this is a bug, report it")
            if peer in qual:
                agreed.append(peer)
        if disqualified_self:
            require_quorum("justify")  # raises: we are excluded
        if len(agreed) < cfg.t:
            raise DKGError(f"only participants {sorted(agreed)} confirmed the transcript (threshold t={cfg.t}); "
                           "the committee cannot be trusted to be agreed. Run the DKG again")
        assert committee is not None and share is not None
        self.log.info("dkg.done", qual=qual, excluded=excluded, confirmed_by=sorted(agreed),
                      group_key="0x" + committee.group_key.hex()[:16])
        return DKGResult(committee, share, qual, excluded, transcript_hash, sorted(agreed))

    def _parse_dealing(self, body: dict[str, Any], dealer: int, recipients: set[int]) -> _Dealing:
        raw_commitments = body["commitments"]
        if not isinstance(raw_commitments, list) or len(raw_commitments) != self.config.t:
            raise ValueError(f"expected {self.config.t} commitments")
        commitments = [decode_g2(_unhex(c)) for c in raw_commitments]
        shares = body["shares"]
        if not isinstance(shares, dict):
            raise TypeError("shares must be an object")
        sealed = {int(j): box for j, box in shares.items()}
        missing = sorted(recipients - {dealer} - set(sealed))
        if missing:
            raise ValueError(f"no share for participant(s) {missing}")
        return _Dealing(commitments, sealed)


class _TooLarge(Exception):
    pass


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    # A peer decides how much it sends; we decide how much we hold.
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(excluded: dict[int, str]) -> str:
    return "; ".join(f"participant {i} {why}" for i, why in sorted(excluded.items())) or "none excluded"


async def run_participant(config: DKGConfig, index: int, sock: socket.socket | None = None,
                          backend: Backend | str | None = None,
                          identity: Ed25519PrivateKey | None = None) -> DKGResult:
    return await DKGParticipant(config, index, sock, backend, identity).run()


def generate_identity() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def identity_public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def identity_private_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def load_identity(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 identity key file: the 32-byte seed, raw or as 0x-hex text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeygenError(f"cannot read identity key {path}: {exc.strerror}") from None
    if len(raw) != 32:
        text = raw.strip().decode("ascii", errors="replace")
        try:
            raw = bytes.fromhex(text[2:] if text.startswith("0x") else text)
        except ValueError:
            raw = b""
    if len(raw) != 32:
        raise KeygenError(f"identity key {path} must hold a 32-byte Ed25519 seed, raw or hex "
                          "(make one with `relay keys identity --out FILE`)")
    return Ed25519PrivateKey.from_private_bytes(raw)
