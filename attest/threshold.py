"""t-of-n threshold BLS: trusted dealer, partial signatures, optimistic combination
(docs/CRYPTO.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from attest.errors import TesseraError
from attest.backend import Backend, get_backend
from attest.bls import NEG_G2, RandomSource, lagrange_at, random_scalar, sign, verify_point
from attest.bn254 import G2_GENERATOR, R, BN254Error, G1Point, decode_g1, decode_g2, encode_g1, encode_g2, hash_to_g1
from attest.committee import Committee, KeyShare


class ThresholdError(TesseraError, ValueError):
    """Threshold signing cannot proceed with what was given."""


class NotEnoughPartialsError(ThresholdError):
    """Fewer than t distinct, valid partial signatures: wait for more attesters."""


@dataclass(frozen=True, slots=True)
class PartialSignature:
    index: int  # the signer's Shamir x-coordinate
    signature: bytes  # G1, 64 bytes: s_i·H(digest)


@dataclass(frozen=True, slots=True)
class CombineResult:
    signature: bytes | None  # combined σ (64 bytes), verified against the group key; None if impossible
    signers: tuple[int, ...] = ()  # indices whose partials went into σ
    faulty: tuple[int, ...] = ()  # indices whose partial failed its check (or could not be decoded)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.signature is not None


def partial_sign(share: KeyShare, digest: bytes, backend: Backend | str | None = None) -> PartialSignature:
    return PartialSignature(index=share.index, signature=sign(share.scalar, digest, backend))


def verify_partial(
    committee: Committee, partial: PartialSignature, digest: bytes, backend: Backend | str | None = None
) -> bool:
    """e(σ_i, −G2)·e(H, PK_i) = 1 against the member's public share."""
    try:
        pk_i = decode_g2(committee.public_share(partial.index))
        sigma = decode_g1(bytes(partial.signature))
    except (BN254Error, ValueError):
        return False
    return verify_point(pk_i, digest, sigma, backend)


def combine_signatures(partials: Sequence[PartialSignature], backend: Backend | str | None = None) -> bytes:
    """σ = Σ λ_i·σ_i (Lagrange at 0) over exactly the given partials, unchecked.

    Pass exactly t partials with distinct indices; fewer give a signature that does not verify.
    """
    indices = [p.index for p in partials]
    if len(set(indices)) != len(indices):
        raise ThresholdError(f"duplicate signer indices in {indices}; each member counts once")
    if not partials:
        raise NotEnoughPartialsError("no partial signatures to combine")
    points = [decode_g1(bytes(p.signature)) for p in partials]
    sigma = get_backend(backend).g1_msm(points, lagrange_at(indices))
    return encode_g1(sigma)


def combine(
    committee: Committee,
    digest: bytes,
    partials: Sequence[PartialSignature],
    backend: Backend | str | None = None,
) -> CombineResult:
    """Optimistic combination: combine the first t distinct partials and verify once (one
    2-pairing check); only if that fails, check partials one by one, name the faulty members and
    combine t good ones."""
    bk = get_backend(backend)
    pk = committee.group_key_point()
    h, _ = hash_to_g1(digest)
    faulty: set[int] = set()
    candidates: dict[int, list[G1Point]] = {}
    known = set(committee.indices)
    for partial in partials:
        if partial.index not in known:
            faulty.add(partial.index)
            continue
        try:
            point = decode_g1(bytes(partial.signature))
        except BN254Error:
            faulty.add(partial.index)
            continue
        same = candidates.setdefault(partial.index, [])
        if point not in same:
            same.append(point)

    def attempt(chosen: list[tuple[int, G1Point]]) -> bytes | None:
        sigma = bk.g1_msm([p for _, p in chosen], lagrange_at([i for i, _ in chosen]))
        if sigma is not None and bk.pairing_check([(sigma, NEG_G2), (h, pk)]):
            return encode_g1(sigma)
        return None

    # A member that sent two different partials is suspicious: never take it on the fast path.
    first = [(i, pts[0]) for i, pts in candidates.items() if len(pts) == 1 and i not in faulty]
    if len(first) >= committee.t:
        chosen = first[: committee.t]
        sigma = attempt(chosen)
        if sigma is not None:
            return CombineResult(signature=sigma, signers=tuple(i for i, _ in chosen), faulty=tuple(sorted(faulty)))

    good: list[tuple[int, G1Point]] = []
    for index, points in candidates.items():
        pk_i = decode_g2(committee.public_share(index))
        valid = [p for p in points if bk.pairing_check([(p, NEG_G2), (h, pk_i)])]
        if valid:
            good.append((index, valid[0]))
        if len(valid) != len(points):
            faulty.add(index)
    if len(good) < committee.t:
        return CombineResult(
            signature=None,
            faulty=tuple(sorted(faulty)),
            reason=f"{len(good)} valid partial signatures, threshold is {committee.t}; wait for more attesters",
        )
    chosen = good[: committee.t]
    sigma = attempt(chosen)
    if sigma is None:  # t partials that each verify always combine correctly; keep the invariant loud
        raise ThresholdError("valid partials combined to an invalid signature: the committee file is inconsistent")
    return CombineResult(signature=sigma, signers=tuple(i for i, _ in chosen), faulty=tuple(sorted(faulty)))


def shamir_split(secret: int, n: int, t: int, rng: RandomSource | None = None) -> list[int]:
    """Shares f(1..n) of a random degree t-1 polynomial with f(0) = secret, over Fr."""
    coefficients = [secret % R] + [random_scalar(rng) for _ in range(t - 1)]
    shares = []
    for x in range(1, n + 1):
        acc = 0
        for c in reversed(coefficients):
            acc = (acc * x + c) % R
        shares.append(acc)
    return shares


def deal(
    n: int,
    t: int,
    epoch: int = 1,
    endpoints: Sequence[str] | None = None,
    rng: RandomSource | None = None,
    backend: Backend | str | None = None,
) -> tuple[Committee, list[KeyShare]]:
    """Trusted dealer (localnet, tests): a fresh group key, n shares, the public committee.

    The dealer sees the group secret; real committees run a DKG (attest.dkg) instead.
    """
    if not 1 <= t <= n:
        raise ThresholdError(f"need 1 <= t <= n, got t={t}, n={n}")
    if endpoints is None:
        endpoints = [f"http://127.0.0.1:{7100 + i}" for i in range(1, n + 1)]
    if len(endpoints) != n:
        raise ThresholdError(f"{len(endpoints)} endpoints for n = {n} members")
    bk = get_backend(backend)
    while True:
        secret = random_scalar(rng)
        shares = shamir_split(secret, n, t, rng)
        if all(shares):  # a zero share has no public key; probability ~n/r
            break
    group_key = encode_g2(bk.g2_mul(G2_GENERATOR, secret))
    members = [
        {"index": i, "public_share": encode_g2(bk.g2_mul(G2_GENERATOR, s)), "endpoint": endpoints[i - 1]}
        for i, s in zip(range(1, n + 1), shares)
    ]
    committee = Committee.model_validate(
        {"epoch": epoch, "n": n, "t": t, "group_key": group_key, "members": members}, context={"backend": bk}
    )
    return committee, [KeyShare(index=i, scalar=s, epoch=epoch) for i, s in zip(range(1, n + 1), shares)]
