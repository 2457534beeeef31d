"""Min-sig BLS on BN254 as the destination chains check it: σ ∈ G1, keys ∈ G2,
valid iff e(σ, −G2)·e(H(digest), PK) = 1 (docs/CRYPTO.md)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from attest.errors import TesseraError
from attest.backend import Backend, get_backend
from attest.bn254 import (
    G2_GENERATOR,
    P,
    R,
    BN254Error,
    G1Point,
    G2Point,
    decode_g1,
    decode_g2,
    encode_g1,
    encode_g2,
    hash_to_g1,
)

NEG_G2: G2Point = (G2_GENERATOR[0], ((-G2_GENERATOR[1][0]) % P, (-G2_GENERATOR[1][1]) % P))

# Batch verification weights: 128 random bits make a forged batch pass with probability 2^-128.
BATCH_WEIGHT_BITS = 128


class RandomSource(Protocol):
    def getrandbits(self, k: int, /) -> int: ...


class _SystemRandom:
    def getrandbits(self, k: int, /) -> int:
        return secrets.randbits(k)


class SigningError(TesseraError, ValueError):
    """A signature could not be produced (degenerate key or hash)."""


def random_scalar(rng: RandomSource | None = None) -> int:
    rng = rng or _SystemRandom()
    while True:
        # 64 extra bits make the reduction mod r statistically uniform.
        value = rng.getrandbits(320) % R
        if value:
            return value


def public_key(secret: int, backend: Backend | str | None = None) -> bytes:
    point = get_backend(backend).g2_mul(G2_GENERATOR, secret)
    if point is None:
        raise SigningError("secret scalar is 0 mod r; it has no usable public key")
    return encode_g2(point)


def sign_point(secret: int, digest: bytes, backend: Backend | str | None = None) -> G1Point:
    h, _ = hash_to_g1(digest)
    sigma = get_backend(backend).g1_mul(h, secret)
    if sigma is None:
        raise SigningError("secret scalar is 0 mod r; refusing to produce the infinity signature")
    return sigma


def sign(secret: int, digest: bytes, backend: Backend | str | None = None) -> bytes:
    return encode_g1(sign_point(secret, digest, backend))


def verify_point(pk: G2Point, digest: bytes, sigma: G1Point, backend: Backend | str | None = None) -> bool:
    h, _ = hash_to_g1(digest)
    return get_backend(backend).pairing_check([(sigma, NEG_G2), (h, pk)])


def verify(group_key: bytes, digest: bytes, signature: bytes, backend: Backend | str | None = None) -> bool:
    """Exactly what the on-chain verifiers accept: strict decoding, then the pairing check.

    Returns False for malformed input as well; call attest.bn254.decode_* to learn why.
    """
    try:
        pk = decode_g2(bytes(group_key))
        sigma = decode_g1(bytes(signature))
    except BN254Error:
        return False
    return verify_point(pk, digest, sigma, backend)


def lagrange_at(indices: Sequence[int], x: int = 0) -> list[int]:
    """Lagrange coefficients λ_i(x) mod r for the Shamir x-coordinates `indices` (distinct)."""
    coefficients = []
    for i in indices:
        num, den = 1, 1
        for m in indices:
            if m != i:
                num = num * (x - m) % R
                den = den * (i - m) % R
        if den == 0:
            raise ValueError(f"Shamir indices must be distinct mod r, got {list(indices)}")
        coefficients.append(num * pow(den, -1, R) % R)
    return coefficients


@dataclass(frozen=True, slots=True)
class BatchResult:
    invalid: tuple[int, ...] = field(default=())  # positions in the submitted batch
    pairing_checks: int = 0  # how much work it took (a good batch costs one)

    @property
    def ok(self) -> bool:
        return not self.invalid


def batch_verify(
    group_key: bytes,
    items: Sequence[tuple[bytes, bytes]],
    backend: Backend | str | None = None,
    rng: RandomSource | None = None,
) -> BatchResult:
    """Verify many (digest, signature) pairs under ONE key with two pairings:
    e(Σ r_i σ_i, −G2)·e(Σ r_i H_i, PK) = 1 for random 128-bit r_i. On failure, bisect to name the
    bad positions (about 2·bad·log2(n) checks; at worst, when most items are bad, 2n − 1).
    """
    bk = get_backend(backend)
    rng = rng or _SystemRandom()
    try:
        pk = decode_g2(bytes(group_key))
    except BN254Error:
        return BatchResult(invalid=tuple(range(len(items))))
    invalid: list[int] = []
    decoded: list[tuple[int, G1Point, G1Point]] = []
    for position, (digest, signature) in enumerate(items):
        try:
            decoded.append((position, decode_g1(bytes(signature)), hash_to_g1(digest)[0]))
        except BN254Error:
            invalid.append(position)
    checks = 0

    def check(group: list[tuple[int, G1Point, G1Point]]) -> bool:
        nonlocal checks
        checks += 1
        if len(group) == 1:
            _, sigma, h = group[0]
            return bk.pairing_check([(sigma, NEG_G2), (h, pk)])
        weights = [rng.getrandbits(BATCH_WEIGHT_BITS) | 1 for _ in group]
        sigma_sum = bk.g1_msm([g[1] for g in group], weights)
        h_sum = bk.g1_msm([g[2] for g in group], weights)
        if sigma_sum is None or h_sum is None:
            return False  # negligible for honest input; bisection then decides item by item
        return bk.pairing_check([(sigma_sum, NEG_G2), (h_sum, pk)])

    def bisect(group: list[tuple[int, G1Point, G1Point]]) -> None:
        if not group or check(group):
            return
        if len(group) == 1:
            invalid.append(group[0][0])
            return
        middle = len(group) // 2
        bisect(group[:middle])
        bisect(group[middle:])

    bisect(decoded)
    return BatchResult(invalid=tuple(sorted(invalid)), pairing_checks=checks)
