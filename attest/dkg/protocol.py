"""Joint-Feldman DKG as pure state transitions: no network, no clock, no logging.

Pedersen's DKG with Feldman commitments and complaints (Gennaro, Jarecki, Krawczyk, Rabin), with the
commitments in G2 so that the group key and every public share live where BLS min-sig needs them.

    state, send = start(config, index)               # send: our hello, and whose hellos to collect
    while True:
        messages = <publish send.body, collect the round's messages from send.peers>
        step = state.receive(messages, fetch_errors)
        if isinstance(step, Done): return step.result
        state, send = step.state, step.send

Five states, one per round whose messages they wait for: AwaitingHello → AwaitingDeals →
AwaitingComplaints → AwaitingJustifications → AwaitingConfirmations → Done. `messages` maps every
peer asked for (this participant included, with the message it published itself) to the message
received, None for a missed deadline, or wire.MALFORMED / wire.FORGED. A transition that cannot end
in an agreed committee raises DKGError. Rounds, rules and limits: docs/KEYS.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from attest.backend import Backend, get_backend
from attest.bls import random_scalar
from attest.bn254 import G2_GENERATOR, R, BN254Error, G2Point, decode_g2, encode_g2
from attest.committee import Committee, KeyShare
from attest.dealer import KeygenError
from attest.dkg.config import DKGConfig
from attest.dkg.feldman import commitment_eval, poly_eval, verify_share
from attest.dkg.sealing import open_share, seal_share, x25519_public_bytes
from attest.dkg.wire import (
    FORGED,
    MALFORMED,
    ROUND_COMPLAINTS,
    ROUND_CONFIRM,
    ROUND_DEAL,
    ROUND_HELLO,
    ROUND_JUSTIFY,
    ROUND_NAMES,
    canonical,
    scalar_hex,
    unhex,
)

Message = Union[dict[str, Any], None]  # None: missed the round's deadline
Messages = Mapping[int, Message]
Note = tuple[str, str, dict[str, Any]]  # (level, event, fields): what the driver should log


class DKGError(KeygenError):
    """The distributed key generation could not produce an agreed committee."""


class Conduct:
    """How this participant deals and answers complaints. Honest: the true share, the true reveal.
    Tests subclass it to play a cheating dealer; production code never does."""

    def outgoing_share(self, recipient: int, share: int) -> int:
        return share

    def reveal(self, complainer: int, share: int) -> int | None:
        return share


HONEST = Conduct()


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


@dataclass(frozen=True)
class Send:
    """Publish `body` as our message of `round`, then collect that round's messages from `peers`
    (ourselves included) for at most `timeout` seconds."""

    round: int
    body: dict[str, Any]
    peers: tuple[int, ...]
    timeout: float


@dataclass(frozen=True)
class Next:
    state: "State"
    send: Send
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Done:
    result: DKGResult
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Dealing:
    commitments: list[G2Point]
    sealed: dict[int, dict[str, str]]


# --- what every state carries -------------------------------------------------------------------

@dataclass(frozen=True)
class _Base:
    config: DKGConfig
    index: int
    backend: Backend
    box_key: X25519PrivateKey  # our round-0 X25519 key: dealers seal our shares to it
    conduct: Conduct
    # Per peer, the messages of rounds 0..3 as received: what round 4 compares. Never mutated: each
    # transition builds new maps.
    transcript: Mapping[int, tuple[Message, ...]]
    excluded: Mapping[int, str]  # peer -> why it is out

    @property
    def session(self) -> bytes:
        return self.config.session_id

    def alive(self, excluded: Mapping[int, str] | None = None) -> list[int]:
        out = self.excluded if excluded is None else excluded
        return [p.index for p in self.config.participants if p.index not in out]


class _Round:
    """The scratch copy of a state's transcript and exclusions while one transition runs."""

    def __init__(self, state: _Base, rnd: int, messages: Messages, fetch_errors: Mapping[int, str] | None) -> None:
        self.state = state
        self.round = rnd
        self.messages = messages
        self.fetch_errors = dict(fetch_errors or {})
        self.transcript = {peer: list(row) for peer, row in state.transcript.items()}
        self.excluded = dict(state.excluded)
        self.notes: list[Note] = []
        for peer, message in messages.items():
            self.transcript[peer][rnd] = message
            if message is None:
                self.excluded.setdefault(peer, f"missed the {ROUND_NAMES[rnd]} round deadline")
            elif message == MALFORMED:
                self.excluded.setdefault(peer, f"sent a malformed {ROUND_NAMES[rnd]} message")
            elif message == FORGED:
                self.excluded.setdefault(peer, f"served a {ROUND_NAMES[rnd]} message not signed by its identity key")

    def alive(self) -> list[int]:
        return self.state.alive(self.excluded)

    def body(self, peer: int) -> Any:
        return self.messages[peer]["body"]  # type: ignore[index]

    def require_quorum(self, stage: str) -> None:
        require_quorum(self.state.config, self.state.index, self.excluded, self.fetch_errors, stage)

    def carried(self) -> dict[str, Any]:
        """The _Base fields of the next state."""
        s = self.state
        return {"config": s.config, "index": s.index, "backend": s.backend, "box_key": s.box_key,
                "conduct": s.conduct, "transcript": {p: tuple(row) for p, row in self.transcript.items()},
                "excluded": dict(self.excluded)}


def start(config: DKGConfig, index: int, backend: Backend | str | None = None, *,
          box_key: X25519PrivateKey | None = None, coefficients: Sequence[int] | None = None,
          conduct: Conduct = HONEST) -> tuple["AwaitingHello", Send]:
    """The first state and the first message: announce a fresh X25519 key for receiving shares.
    `box_key` and `coefficients` (our secret polynomial, t scalars) are drawn at random unless given."""
    config.participant(index)
    if coefficients is not None and len(coefficients) != config.t:
        raise DKGError(f"a dealer's polynomial has t={config.t} coefficients, got {len(coefficients)}")
    box_key = box_key or X25519PrivateKey.generate()
    state = AwaitingHello(
        config=config, index=index, backend=get_backend(backend), box_key=box_key, conduct=conduct,
        transcript={p.index: (None,) * 4 for p in config.participants}, excluded={},
        coefficients=tuple(coefficients) if coefficients is not None else tuple(random_scalar() for _ in range(config.t)),
    )
    body = {"x25519": "0x" + x25519_public_bytes(box_key).hex()}
    return state, Send(ROUND_HELLO, body, tuple(p.index for p in config.participants), config.start_timeout)


@dataclass(frozen=True)
class AwaitingHello(_Base):
    coefficients: tuple[int, ...] = field(repr=False, default=())
    round = ROUND_HELLO

    def receive(self, messages: Messages, fetch_errors: Mapping[int, str] | None = None) -> Next:
        """Hellos → everyone's box key; then commit to our polynomial and deal sealed shares."""
        r = _Round(self, ROUND_HELLO, messages, fetch_errors)
        box_keys: dict[int, bytes] = {}
        for peer in r.alive():
            try:
                key = unhex(r.body(peer)["x25519"], 32)
                # A low-order point gives an all-zero shared secret whoever uses it; cryptography
                # refuses it. Every honest participant reaches the same verdict on the same key.
                self.box_key.exchange(X25519PublicKey.from_public_bytes(key))
                box_keys[peer] = key
            except (KeyError, TypeError, ValueError):
                r.excluded[peer] = "sent a malformed or unusable X25519 key in its hello message"
        r.require_quorum("hello")
        alive = r.alive()
        sealed = {
            str(j): seal_share(self.session, self.index, j, box_keys[j],
                               self.conduct.outgoing_share(j, poly_eval(self.coefficients, j)))
            for j in alive if j != self.index
        }
        # Everyone, us included, works from the published dealing, so we reach the verdict the others
        # reach about us.
        commitments = [self.backend.g2_mul(G2_GENERATOR, a) for a in self.coefficients]
        body = {"commitments": ["0x" + encode_g2(c).hex() for c in commitments], "shares": sealed}
        state = AwaitingDeals(**r.carried(), coefficients=self.coefficients, box_keys=box_keys)
        return Next(state, Send(ROUND_DEAL, body, tuple(alive), self.config.round_timeout), tuple(r.notes))


@dataclass(frozen=True)
class AwaitingDeals(_Base):
    coefficients: tuple[int, ...] = field(repr=False, default=())
    box_keys: Mapping[int, bytes] = field(default_factory=dict)
    round = ROUND_DEAL

    def receive(self, messages: Messages, fetch_errors: Mapping[int, str] | None = None) -> Next:
        """Dealings → our shares, checked against each dealer's commitments; complain about bad ones.
        CPU work (n·t subgroup checks): a driver with a server to keep answering runs it in a thread."""
        r = _Round(self, ROUND_DEAL, messages, fetch_errors)
        dealings: dict[int, Dealing] = {}
        my_shares = {self.index: poly_eval(self.coefficients, self.index)}
        complaints: list[int] = []
        for peer in r.alive():
            try:
                dealings[peer] = parse_dealing(r.body(peer), peer, set(self.box_keys), self.config.t)
            except (KeyError, TypeError, ValueError, BN254Error) as exc:
                r.excluded[peer] = f"sent a malformed dealing ({exc})"
                continue
            if peer == self.index:
                continue
            try:
                share = open_share(self.session, peer, self.index, self.box_key, dealings[peer].sealed[self.index])
                if not verify_share(self.backend, share, self.index, dealings[peer].commitments):
                    raise ValueError("the share does not match the dealer's commitments")
                my_shares[peer] = share
            except (KeyError, TypeError, ValueError) as exc:
                r.notes.append(("warning", "dkg.complaint", {"against": peer, "reason": str(exc)}))
                complaints.append(peer)
        r.require_quorum("deal")
        state = AwaitingComplaints(**r.carried(), coefficients=self.coefficients, dealings=dealings,
                                   my_shares=my_shares)
        send = Send(ROUND_COMPLAINTS, {"complaints": sorted(complaints)}, tuple(r.alive()), self.config.round_timeout)
        return Next(state, send, tuple(r.notes))


@dataclass(frozen=True)
class AwaitingComplaints(_Base):
    coefficients: tuple[int, ...] = field(repr=False, default=())
    dealings: Mapping[int, Dealing] = field(default_factory=dict)
    my_shares: Mapping[int, int] = field(repr=False, default_factory=dict)
    round = ROUND_COMPLAINTS

    def receive(self, messages: Messages, fetch_errors: Mapping[int, str] | None = None) -> Next:
        """Complaints → who complains about whom; answer those against us by revealing the disputed
        share in public. Our polynomial is not needed after this: the next state does not hold it."""
        r = _Round(self, ROUND_COMPLAINTS, messages, fetch_errors)
        against: dict[int, set[int]] = {}  # dealer -> complainers
        for peer in r.alive():
            try:
                listed = r.body(peer)["complaints"]
                if not isinstance(listed, list) or not all(isinstance(d, int) for d in listed):
                    raise TypeError
            except (KeyError, TypeError):
                r.excluded[peer] = "sent a malformed complaints message"
                continue
            for dealer in listed:
                if dealer in self.dealings and dealer != peer:
                    against.setdefault(dealer, set()).add(peer)
        r.require_quorum("complaints")
        reveals = {}
        for complainer in sorted(against.get(self.index, ())):
            value = self.conduct.reveal(complainer, poly_eval(self.coefficients, complainer))
            if value is not None:
                reveals[str(complainer)] = scalar_hex(value)
        state = AwaitingJustifications(**r.carried(), dealings=self.dealings, my_shares=self.my_shares,
                                       against={d: frozenset(c) for d, c in against.items()})
        send = Send(ROUND_JUSTIFY, {"reveals": reveals}, tuple(r.alive()), self.config.round_timeout)
        return Next(state, send, tuple(r.notes))


@dataclass(frozen=True)
class AwaitingJustifications(_Base):
    dealings: Mapping[int, Dealing] = field(default_factory=dict)
    my_shares: Mapping[int, int] = field(repr=False, default_factory=dict)
    against: Mapping[int, frozenset[int]] = field(default_factory=dict)
    round = ROUND_JUSTIFY

    def receive(self, messages: Messages, fetch_errors: Mapping[int, str] | None = None) -> Next:
        """Reveals → disqualify dealers that did not answer a complaint or revealed a share off their
        commitments; QUAL is who is left. Compute the committee from QUAL's commitments and propose
        the transcript for comparison."""
        r = _Round(self, ROUND_JUSTIFY, messages, fetch_errors)
        my_shares = dict(self.my_shares)
        for dealer, complainers in sorted(self.against.items()):
            if dealer in r.excluded:
                continue
            body = r.body(dealer)
            revealed = body.get("reveals", {}) if isinstance(body, dict) else {}
            for complainer in sorted(complainers):
                try:
                    value = int.from_bytes(unhex(revealed[str(complainer)], 32), "big")
                except (KeyError, TypeError, ValueError):
                    r.excluded[dealer] = f"did not answer the complaint of participant {complainer}"
                    break
                if not verify_share(self.backend, value, complainer, self.dealings[dealer].commitments):
                    r.excluded[dealer] = (f"revealed a share for participant {complainer} that does not match "
                                          "its commitments")
                    break
                r.notes.append(("info", "dkg.complaint_dismissed", {"dealer": dealer, "complainer": complainer}))
                if complainer == self.index:
                    my_shares[dealer] = value
        if len(r.alive()) < self.config.t:
            r.require_quorum("justify")
        qual = r.alive()
        disqualified_self = self.index not in qual

        # Everyone with the same transcript computes the same committee from QUAL's commitments.
        committee: Committee | None = None
        share: KeyShare | None = None
        committee_hash = None
        if not disqualified_self:
            committee = committee_from_commitments(self.config, {i: self.dealings[i].commitments for i in qual},
                                                   self.backend)
            share = KeyShare(index=self.index, scalar=sum(my_shares[i] for i in qual) % R, epoch=self.config.epoch)
            if share.public_share(self.backend) != committee.public_share(self.index):
                raise DKGError("our share does not match our public share; this is a bug, report it")
            committee_hash = hashlib.sha256(canonical(committee.to_dict())).hexdigest()

        # Round 4 compares what everyone received. Without a reliable broadcast channel, a participant
        # could have shown different messages to different parties; this is where that surfaces.
        # Everyone who published round 3 takes part, disqualified or not, so nobody waits in vain.
        senders = {str(i): hashlib.sha256(canonical(r.transcript[i])).hexdigest() for i in sorted(r.transcript)}
        transcript_hash = hashlib.sha256(self.session + canonical(senders)).digest()
        body = {"transcript": transcript_hash.hex(), "senders": senders, "committee": committee_hash, "qual": qual}
        finishers = tuple(p for p in r.transcript if r.transcript[p][ROUND_JUSTIFY] not in (None, MALFORMED, FORGED))
        state = AwaitingConfirmations(**r.carried(), qual=tuple(qual), committee=committee, share=share,
                                      committee_hash=committee_hash, senders=senders,
                                      transcript_hash=transcript_hash, finishers=finishers)
        return Next(state, Send(ROUND_CONFIRM, body, finishers, self.config.round_timeout), tuple(r.notes))


@dataclass(frozen=True)
class AwaitingConfirmations(_Base):
    qual: tuple[int, ...] = ()
    committee: Committee | None = None  # None when we are not in QUAL
    share: KeyShare | None = field(repr=False, default=None)
    committee_hash: str | None = None
    senders: Mapping[str, str] = field(default_factory=dict)  # peer -> hash of its messages as we got them
    transcript_hash: bytes = b""
    finishers: tuple[int, ...] = ()  # who published round 3: whose confirmation we asked for
    round = ROUND_CONFIRM

    def receive(self, messages: Messages, fetch_errors: Mapping[int, str] | None = None) -> Done:
        """Confirmations → abort on any transcript mismatch; done when t members of QUAL agree."""
        notes: list[Note] = []
        disqualified_self = self.index not in self.qual
        agreed = [self.index]
        for peer in self.finishers:
            message = messages.get(peer)
            if peer == self.index:
                continue
            if message in (None, MALFORMED, FORGED) or not isinstance(message["body"].get("senders"), dict):
                notes.append(("warning", "dkg.no_confirmation", {"peer": peer}))
                continue
            body = message["body"]
            if body.get("transcript") != self.transcript_hash.hex():
                culprits = [int(i) for i, h in self.senders.items() if body["senders"].get(i) != h]
                raise DKGError(
                    f"participant {peer} received different DKG messages than participant {self.index} from "
                    f"participant(s) {culprits}: someone showed different messages to different parties "
                    "(or a message arrived at a round deadline). Do not use this key: run the DKG again, "
                    "without the named participant(s) if it happens again")
            if peer in self.qual and not disqualified_self and body.get("committee") != self.committee_hash:
                raise DKGError(f"participant {peer} computed a different committee from the same transcript; "
                               "this is a bug, report it")
            if peer in self.qual:
                agreed.append(peer)
        if disqualified_self:
            require_quorum(self.config, self.index, self.excluded, fetch_errors or {}, "justify")  # raises: we are out
        if len(agreed) < self.config.t:
            raise DKGError(f"only participants {sorted(agreed)} confirmed the transcript (threshold t={self.config.t}); "
                           "the committee cannot be trusted to be agreed. Run the DKG again")
        assert self.committee is not None and self.share is not None
        result = DKGResult(self.committee, self.share, list(self.qual), dict(self.excluded), self.transcript_hash,
                           sorted(agreed))
        return Done(result, tuple(notes))


State = Union[AwaitingHello, AwaitingDeals, AwaitingComplaints, AwaitingJustifications, AwaitingConfirmations]


def parse_dealing(body: dict[str, Any], dealer: int, recipients: set[int], t: int) -> Dealing:
    raw_commitments = body["commitments"]
    if not isinstance(raw_commitments, list) or len(raw_commitments) != t:
        raise ValueError(f"expected {t} commitments")
    commitments = [decode_g2(unhex(c)) for c in raw_commitments]
    shares = body["shares"]
    if not isinstance(shares, dict):
        raise TypeError("shares must be an object")
    sealed = {int(j): box for j, box in shares.items()}
    missing = sorted(recipients - {dealer} - set(sealed))
    if missing:
        raise ValueError(f"no share for participant(s) {missing}")
    return Dealing(commitments, sealed)


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


def require_quorum(config: DKGConfig, index: int, excluded: Mapping[int, str], fetch_errors: Mapping[int, str],
                   stage: str) -> None:
    """Raise DKGError when we are excluded ourselves, or when fewer than t participants are left.
    `fetch_errors`: why a peer's messages could not be fetched (the transport's last error per peer)."""
    if index in excluded:
        raise DKGError(f"participant {index} was itself disqualified after the {stage} round: it "
                       f"{excluded[index]}. Check its logs, clock and network, then run the DKG again")
    alive = [p.index for p in config.participants if p.index not in excluded]
    if len(alive) < config.t:
        errors = "".join(f" (participant {i}: {e})" for i, e in sorted(fetch_errors.items()))
        raise DKGError(
            f"only {len(alive)} of {config.n} participants are still qualified after the {stage} round "
            f"(threshold t={config.t}): {_describe(excluded)}.{errors} Start the missing participants "
            "and run the DKG again with a new session label")


def _describe(excluded: Mapping[int, str]) -> str:
    return "; ".join(f"participant {i} {why}" for i, why in sorted(excluded.items())) or "none excluded"
