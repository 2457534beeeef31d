"""Interchangeable BN254 group/pairing backends.

`pyecc` (py_ecc.optimized_bn128, pure Python) is the reference; `zksnake` (arkworks, Rust) is
the fast one and is chosen automatically when it imports. Force one with the environment variable
TESSERA_BN254_BACKEND=pyecc|zksnake, `set_default_backend(...)`, or a `backend=` argument.

Backends take and return the integer affine points of attest.bn254 (None = infinity), so their
outputs can be encoded and compared byte for byte. They never validate: callers pass points
that came out of attest.bn254's strict decoders or out of another backend operation.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Protocol, Sequence

from attest.errors import TesseraError
from attest.bn254 import G1Point, G2Point, R

ENV_VAR = "TESSERA_BN254_BACKEND"
BACKEND_NAMES = ("zksnake", "pyecc")


class BackendUnavailableError(TesseraError, RuntimeError):
    """The requested backend cannot be used on this machine."""


class Backend(Protocol):
    name: str

    def g1_mul(self, point: G1Point, scalar: int) -> G1Point | None: ...

    def g1_msm(self, points: Sequence[G1Point], scalars: Sequence[int]) -> G1Point | None: ...

    def g2_mul(self, point: G2Point, scalar: int) -> G2Point | None: ...

    def g2_msm(self, points: Sequence[G2Point], scalars: Sequence[int]) -> G2Point | None: ...

    def pairing_check(self, pairs: Sequence[tuple[G1Point, G2Point]]) -> bool:
        """True iff the product of e(P_i, Q_i) is 1 in GT."""
        ...

    def weighted_pairing_check(self, items: Sequence[tuple[G1Point, G1Point, G2Point]], weights: Sequence[int],
                               neg_g2: G2Point) -> bool:
        """True iff e(Σ wᵢ·σᵢ, neg_g2) · Πᵢ e(wᵢ·Hᵢ, PKᵢ) = 1 for items (σᵢ, Hᵢ, PKᵢ): the
        random-linear-combination check of BLS signatures on different messages under different keys,
        computed in the backend's own point types (no round trip through affine tuples)."""
        ...


class PyEccBackend:
    name = "pyecc"

    def __init__(self) -> None:
        from py_ecc import optimized_bn128 as bn

        self._bn = bn

    # py_ecc points are projective (x, y, z); everything leaving this class is normalized.
    def _g1(self, point: G1Point):
        bn = self._bn
        return (bn.FQ(point[0]), bn.FQ(point[1]), bn.FQ.one())

    def _g2(self, point: G2Point):
        bn = self._bn
        (x_re, x_im), (y_re, y_im) = point
        return (bn.FQ2([x_re, x_im]), bn.FQ2([y_re, y_im]), bn.FQ2.one())

    def _from_g1(self, point) -> G1Point | None:
        if self._bn.is_inf(point):
            return None
        x, y = self._bn.normalize(point)
        return (int(x), int(y))

    def _from_g2(self, point) -> G2Point | None:
        if self._bn.is_inf(point):
            return None
        x, y = self._bn.normalize(point)
        return ((int(x.coeffs[0]), int(x.coeffs[1])), (int(y.coeffs[0]), int(y.coeffs[1])))

    def _sum(self, points: list) -> object:
        acc = points[0]
        for point in points[1:]:
            acc = self._bn.add(acc, point)
        return acc

    def g1_mul(self, point: G1Point, scalar: int) -> G1Point | None:
        return self._from_g1(self._bn.multiply(self._g1(point), scalar % R))

    def g1_msm(self, points: Sequence[G1Point], scalars: Sequence[int]) -> G1Point | None:
        bn = self._bn
        return self._from_g1(self._sum([bn.multiply(self._g1(p), s % R) for p, s in zip(points, scalars, strict=True)]))

    def g2_mul(self, point: G2Point, scalar: int) -> G2Point | None:
        return self._from_g2(self._bn.multiply(self._g2(point), scalar % R))

    def g2_msm(self, points: Sequence[G2Point], scalars: Sequence[int]) -> G2Point | None:
        bn = self._bn
        return self._from_g2(self._sum([bn.multiply(self._g2(p), s % R) for p, s in zip(points, scalars, strict=True)]))

    def pairing_check(self, pairs: Sequence[tuple[G1Point, G2Point]]) -> bool:
        bn = self._bn
        # One final exponentiation for the whole product: it is most of a pairing's cost.
        acc = bn.FQ12.one()
        for p, q in pairs:
            acc = acc * bn.pairing(self._g2(q), self._g1(p), final_exponentiate=False)
        return bn.final_exponentiate(acc) == bn.FQ12.one()

    def weighted_pairing_check(self, items: Sequence[tuple[G1Point, G1Point, G2Point]], weights: Sequence[int],
                               neg_g2: G2Point) -> bool:
        bn = self._bn
        ws = [w % R for w in weights]
        if len(ws) != len(items) or not items:
            raise ValueError("items and weights must be non-empty and of the same length")
        sigma_sum = self._sum([bn.multiply(self._g1(sigma), w) for (sigma, _, _), w in zip(items, ws)])
        acc = bn.pairing(self._g2(neg_g2), sigma_sum, final_exponentiate=False)
        for (_, h, pk), w in zip(items, ws):
            acc = acc * bn.pairing(self._g2(pk), bn.multiply(self._g1(h), w), final_exponentiate=False)
        return bn.final_exponentiate(acc) == bn.FQ12.one()


class ZkSnakeBackend:
    name = "zksnake"

    def __init__(self) -> None:
        try:
            from zksnake._algebra import ec_bn254  # type: ignore[import-not-found]
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the zksnake backend needs zksnake==0.1.0 (pip install 'tessera[fast]'): {exc}"
            ) from exc
        self._ec = ec_bn254
        g1, g2 = ec_bn254.g1(), ec_bn254.g2()
        self._gt_one = ec_bn254.multi_pairing([g1, -g1], [g2, g2])
        # arkworks panics (an uncatchable-looking BaseException) on off-curve input; inputs here
        # come from the strict decoders, so that cannot happen. Cache key conversions: the
        # constructor re-checks the G2 subgroup.
        self._g2 = lru_cache(maxsize=1024)(self._g2_uncached)

    def _g1(self, point: G1Point):
        return self._ec.PointG1(point[0], point[1])

    def _g2_uncached(self, point: G2Point):
        (x_re, x_im), (y_re, y_im) = point
        return self._ec.PointG2(x_re, x_im, y_re, y_im)

    @staticmethod
    def _from_g1(point) -> G1Point | None:
        if point.is_zero():
            return None
        return (point.x, point.y)

    @staticmethod
    def _from_g2(point) -> G2Point | None:
        if point.is_zero():
            return None
        x, y = point.x, point.y
        return ((x[0], x[1]), (y[0], y[1]))

    def g1_mul(self, point: G1Point, scalar: int) -> G1Point | None:
        return self._from_g1(self._g1(point) * (scalar % R))

    def g1_msm(self, points: Sequence[G1Point], scalars: Sequence[int]) -> G1Point | None:
        if len(points) != len(scalars):
            raise ValueError("points and scalars differ in length")
        return self._from_g1(self._ec.multiscalar_mul_g1([self._g1(p) for p in points], [s % R for s in scalars]))

    def g2_mul(self, point: G2Point, scalar: int) -> G2Point | None:
        return self._from_g2(self._g2(point) * (scalar % R))

    def g2_msm(self, points: Sequence[G2Point], scalars: Sequence[int]) -> G2Point | None:
        if len(points) != len(scalars):
            raise ValueError("points and scalars differ in length")
        return self._from_g2(self._ec.multiscalar_mul_g2([self._g2(p) for p in points], [s % R for s in scalars]))

    def pairing_check(self, pairs: Sequence[tuple[G1Point, G2Point]]) -> bool:
        g1s = [self._g1(p) for p, _ in pairs]
        g2s = [self._g2(q) for _, q in pairs]
        return self._ec.multi_pairing(g1s, g2s) == self._gt_one

    def weighted_pairing_check(self, items: Sequence[tuple[G1Point, G1Point, G2Point]], weights: Sequence[int],
                               neg_g2: G2Point) -> bool:
        # Building a native point costs ~60-80 µs (arkworks re-checks it); the scaled points and
        # the sum stay native here, which halves the conversions of a pairing_check-based batch.
        ws = [w % R for w in weights]
        if len(ws) != len(items) or not items:
            raise ValueError("items and weights must be non-empty and of the same length")
        sigma_sum = self._ec.multiscalar_mul_g1([self._g1(sigma) for sigma, _, _ in items], ws)
        g1s = [sigma_sum] + [self._g1(h) * w for (_, h, _), w in zip(items, ws)]
        g2s = [self._g2(neg_g2)] + [self._g2(pk) for _, _, pk in items]
        return self._ec.multi_pairing(g1s, g2s) == self._gt_one


_FACTORIES = {"pyecc": PyEccBackend, "zksnake": ZkSnakeBackend}
_instances: dict[str, Backend] = {}
_default: str | None = None


def get_backend(name: str | Backend | None = None) -> Backend:
    """The named backend, else set_default_backend's, else $TESSERA_BN254_BACKEND, else the
    fastest importable one."""
    if name is not None and not isinstance(name, str):
        return name
    chosen = name or _default or os.environ.get(ENV_VAR) or None
    if chosen is None:
        for candidate in BACKEND_NAMES:
            try:
                return get_backend(candidate)
            except BackendUnavailableError:
                continue
        raise BackendUnavailableError("no BN254 backend is importable; install py-ecc")
    chosen = chosen.strip().lower()
    if chosen not in _FACTORIES:
        raise BackendUnavailableError(
            f"unknown BN254 backend {chosen!r}; set {ENV_VAR} to one of: {', '.join(BACKEND_NAMES)}"
        )
    if chosen not in _instances:
        _instances[chosen] = _FACTORIES[chosen]()
    return _instances[chosen]


def set_default_backend(name: str | None) -> None:
    """Process-wide choice (None: back to the environment variable / automatic choice)."""
    global _default
    if name is not None:
        get_backend(name)  # fail now, not at the first signature
    _default = name


def available_backends() -> list[str]:
    names = []
    for candidate in BACKEND_NAMES:
        try:
            get_backend(candidate)
        except BackendUnavailableError:
            continue
        names.append(candidate)
    return names
