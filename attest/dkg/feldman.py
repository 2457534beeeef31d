"""Feldman verifiable secret sharing in G2: a dealer's polynomial, its public commitments, and the
check that a share lies on the committed polynomial."""

from __future__ import annotations

from typing import Sequence

from attest.backend import Backend
from attest.bn254 import G2_GENERATOR, R, G2Point


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
