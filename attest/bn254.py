"""BN254 (alt_bn128) arithmetic that does not need a backend: constants, hash to G1, byte
encodings and strict decoding of untrusted points (docs/CRYPTO.md).

Points are kept in a backend-neutral affine form made of Python integers:
G1 = (x, y); G2 = ((x_re, x_im), (y_re, y_im)). The point at infinity is never a valid
key, share or signature, so it has no representation here besides its encoding (all zeros).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from attest.errors import TesseraError

# Base field modulus p and group order r of Ethereum's BN254 (EIP-196/197).
P = 21888242871839275222246405745257275088696311157297823662689037894645226208583
R = 21888242871839275222246405745257275088548364400416034343698204186575808495617

G1_LEN = 64
G2_LEN = 128
SCALAR_LEN = 32

# Try-and-increment gives up after this many increments. A quadratic residue comes after ~2
# tries; the Solana program takes k as a one-byte hint, so a k above 255 could not be delivered.
MAX_HASH_INCREMENTS = 255

Fp2 = tuple[int, int]
G1Point = tuple[int, int]
G2Point = tuple[Fp2, Fp2]

G1_GENERATOR: G1Point = (1, 2)
G2_GENERATOR: G2Point = (
    (
        10857046999023057135944570762232829481370756359578518086990519993285655852781,
        11559732032986387107991004021392285783925812861821192530917403151452391805634,
    ),
    (
        8495653923123431417604973247489272438418190587263600148770280649306958101930,
        4082367875863433681332203403145435568316851327593401208105741076214120093531,
    ),
)

_SQRT_EXP = (P + 1) // 4


class BN254Error(TesseraError, ValueError):
    """Bytes that should hold a BN254 point or scalar do not."""


class InvalidEncodingError(BN254Error):
    """Wrong length or not hex: the sender used another encoding (see docs/CRYPTO.md)."""


class InvalidScalarError(BN254Error):
    """A scalar is not in [1, r-1]."""


class InvalidPointError(BN254Error):
    """Well-formed bytes that do not decode to a usable group element."""


class CoordinateOutOfRangeError(InvalidPointError):
    """A coordinate is >= p: encodings are canonical, so this is never the same point as c - p."""


class PointAtInfinityError(InvalidPointError):
    """The point at infinity (all-zero encoding) is never a valid key, share or signature."""


class NotOnCurveError(InvalidPointError):
    """The coordinates do not satisfy the curve equation."""


class NotInSubgroupError(InvalidPointError):
    """A G2 point on the twist curve but outside the order-r subgroup (small-subgroup attack)."""


class HashToCurveError(BN254Error):
    """Try-and-increment needed more than MAX_HASH_INCREMENTS steps (probability ~2^-255)."""


# --- Fp2 = Fp[u] / (u^2 + 1), elements as (re, im) ----------------------------------------


def _f2_add(a: Fp2, b: Fp2) -> Fp2:
    return ((a[0] + b[0]) % P, (a[1] + b[1]) % P)


def _f2_sub(a: Fp2, b: Fp2) -> Fp2:
    return ((a[0] - b[0]) % P, (a[1] - b[1]) % P)


def _f2_mul(a: Fp2, b: Fp2) -> Fp2:
    a0, a1 = a
    b0, b1 = b
    return ((a0 * b0 - a1 * b1) % P, (a0 * b1 + a1 * b0) % P)


def _f2_sqr(a: Fp2) -> Fp2:
    a0, a1 = a
    return ((a0 + a1) * (a0 - a1) % P, 2 * a0 * a1 % P)


def _f2_inv(a: Fp2) -> Fp2:
    a0, a1 = a
    inv_norm = pow(a0 * a0 + a1 * a1, P - 2, P)
    return (a0 * inv_norm % P, -a1 * inv_norm % P)


def _f2_scale(a: Fp2, k: int) -> Fp2:
    return (a[0] * k % P, a[1] * k % P)


# Twist curve E'(Fp2): y^2 = x^3 + 3 / (9 + u).
TWIST_B: Fp2 = _f2_mul((3, 0), _f2_inv((9, 1)))


# --- curve predicates ---------------------------------------------------------------------


def is_on_g1_curve(point: G1Point) -> bool:
    x, y = point
    return (y * y - x * x * x - 3) % P == 0


def is_on_g2_curve(point: G2Point) -> bool:
    x, y = point
    return _f2_sub(_f2_sqr(y), _f2_add(_f2_mul(_f2_sqr(x), x), TWIST_B)) == (0, 0)


def _g2_mul_jacobian(point: G2Point, scalar: int) -> tuple[Fp2, Fp2, Fp2]:
    """scalar·point in Jacobian coordinates (Z = 0 is infinity), plain double-and-add.

    No endomorphism tricks: those assume the point is already in the subgroup, which is exactly
    what the caller wants to find out.
    """
    px, py = point
    x, y, z = px, py, (1, 0)
    for bit in bin(scalar)[3:]:
        if z != (0, 0):  # dbl-2009-l (a = 0)
            a = _f2_sqr(x)
            b = _f2_sqr(y)
            c = _f2_sqr(b)
            d = _f2_scale(_f2_sub(_f2_sub(_f2_sqr(_f2_add(x, b)), a), c), 2)
            e = _f2_scale(a, 3)
            f = _f2_sqr(e)
            x3 = _f2_sub(f, _f2_scale(d, 2))
            y3 = _f2_sub(_f2_mul(e, _f2_sub(d, x3)), _f2_scale(c, 8))
            z = _f2_scale(_f2_mul(y, z), 2)
            x, y = x3, y3
        if bit == "1":
            if z == (0, 0):
                x, y, z = px, py, (1, 0)
                continue
            # madd-2007-bl (the added point is affine)
            z1z1 = _f2_sqr(z)
            u2 = _f2_mul(px, z1z1)
            s2 = _f2_mul(_f2_mul(py, z), z1z1)
            h = _f2_sub(u2, x)
            rr = _f2_scale(_f2_sub(s2, y), 2)
            if h == (0, 0):
                if rr == (0, 0):  # same point: double the affine point instead
                    x, y, z = _g2_mul_jacobian(point, 2)
                else:  # opposite points
                    x, y, z = (1, 0), (1, 0), (0, 0)
                continue
            hh = _f2_sqr(h)
            i = _f2_scale(hh, 4)
            j = _f2_mul(h, i)
            v = _f2_mul(x, i)
            x3 = _f2_sub(_f2_sub(_f2_sqr(rr), j), _f2_scale(v, 2))
            y3 = _f2_sub(_f2_mul(rr, _f2_sub(v, x3)), _f2_scale(_f2_mul(y, j), 2))
            z = _f2_sub(_f2_sub(_f2_sqr(_f2_add(z, h)), z1z1), hh)
            x, y = x3, y3
    return x, y, z


def is_in_g2_subgroup(point: G2Point) -> bool:
    """r·Q == O. BN254's twist has a large cofactor, so on-curve alone is not enough for G2."""
    return _g2_mul_jacobian(point, R)[2] == (0, 0)


# --- hash to G1 ---------------------------------------------------------------------------


def hash_to_g1(digest: bytes) -> tuple[G1Point, int]:
    """Try-and-increment exactly as DESIGN.md (EigenLayer's BN254.hashToG1): returns (H, k).

    y is the principal root β^((p+1)/4), never negated: on-chain verifiers compute the same one.
    """
    if len(digest) != 32:
        raise InvalidEncodingError(f"a digest is 32 bytes, got {len(digest)}")
    return _hash_to_g1(bytes(digest))


# Each square root is a 254-bit modular exponentiation (~0.1 ms in Python) and the same digest
# is hashed by every partial check, the combination and the final verification.
@lru_cache(maxsize=4096)
def _hash_to_g1(digest: bytes) -> tuple[G1Point, int]:
    x = int.from_bytes(digest, "big") % P
    for k in range(MAX_HASH_INCREMENTS + 1):
        beta = (x * x * x + 3) % P
        y = fp_sqrt(beta)
        if y * y % P == beta:
            return (x, y), k
        x = (x + 1) % P
    raise HashToCurveError(f"no curve point within {MAX_HASH_INCREMENTS} increments of digest 0x{digest.hex()}")


def fp_sqrt(value: int) -> int:
    """value^((p+1)/4) mod p: the principal square root of `value` when it is a square (p = 3 mod 4)."""
    return pow(value, _SQRT_EXP, P)


class HashToG1Hint(NamedTuple):
    """What an on-chain verifier needs to skip try-and-increment's square roots: H(digest) =
    (x0 + k, y) with x0 = digest mod p, and y_sqrt, a square root of y that proves y is the
    principal root (contracts/evm/README.md, contracts/solana/README.md). Both chains' encoders
    send (k, y, y_sqrt); the verifier recomputes x from the digest and k."""

    k: int
    y: int
    y_sqrt: int


def hash_to_g1_hint(digest: bytes) -> HashToG1Hint:
    """The hint for `hash_to_g1(digest)`: the one place either chain's hint is computed."""
    (_, y), k = hash_to_g1(digest)
    y_sqrt = fp_sqrt(y)
    # The principal root β^((p+1)/4) is itself a square (β is one); anything else is a bug above.
    if y_sqrt * y_sqrt % P != y:
        raise HashToCurveError(f"hash_to_g1(0x{bytes(digest).hex()}) returned a y that is not the principal root")
    return HashToG1Hint(k, y, y_sqrt)


# --- encodings ----------------------------------------------------------------------------


def encode_scalar(value: int) -> bytes:
    return (value % R).to_bytes(SCALAR_LEN, "big")


def decode_scalar(data: bytes) -> int:
    """A secret share or secret key: 32 bytes big-endian, canonical, non-zero."""
    if len(data) != SCALAR_LEN:
        raise InvalidEncodingError(f"a scalar is {SCALAR_LEN} bytes big-endian, got {len(data)}")
    value = int.from_bytes(data, "big")
    if not 0 < value < R:
        raise InvalidScalarError("a secret scalar must be in [1, r-1]; this key material is corrupt or not BN254")
    return value


def encode_g1(point: G1Point | None) -> bytes:
    """x ‖ y, 64 bytes; None (infinity) encodes as 64 zero bytes, as the EVM precompiles do."""
    if point is None:
        return bytes(G1_LEN)
    return point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def encode_g2(point: G2Point | None) -> bytes:
    """EIP-197 order: x_im ‖ x_re ‖ y_im ‖ y_re, 128 bytes; None (infinity) is 128 zero bytes."""
    if point is None:
        return bytes(G2_LEN)
    (x_re, x_im), (y_re, y_im) = point
    return b"".join(c.to_bytes(32, "big") for c in (x_im, x_re, y_im, y_re))


def _words(data: bytes, count: int, what: str) -> list[int]:
    if len(data) != 32 * count:
        raise InvalidEncodingError(f"{what} is {32 * count} bytes, got {len(data)}")
    words = [int.from_bytes(data[i : i + 32], "big") for i in range(0, len(data), 32)]
    if any(w >= P for w in words):
        raise CoordinateOutOfRangeError(f"{what} has a coordinate >= p; encodings must be canonical")
    if not any(words):
        raise PointAtInfinityError(f"{what} is the point at infinity, which is never a valid key or signature")
    return words


@lru_cache(maxsize=4096)
def decode_g1(data: bytes) -> G1Point:
    """Strict decoding of an untrusted G1 point (signature). G1 has cofactor 1: on-curve suffices."""
    x, y = _words(bytes(data), 2, "a G1 point")
    if not is_on_g1_curve((x, y)):
        raise NotOnCurveError("the G1 point is not on y^2 = x^3 + 3")
    return (x, y)


@lru_cache(maxsize=1024)
def decode_g2(data: bytes) -> G2Point:
    """Strict decoding of an untrusted G2 point (group key, public share), with subgroup check.

    Cached: keys are decoded again and again and the subgroup check costs a few milliseconds.
    """
    x_im, x_re, y_im, y_re = _words(bytes(data), 4, "a G2 point")
    point = ((x_re, x_im), (y_re, y_im))
    if not is_on_g2_curve(point):
        raise NotOnCurveError("the G2 point is not on the twist curve y^2 = x^3 + 3/(9+u)")
    if not is_in_g2_subgroup(point):
        raise NotInSubgroupError("the G2 point is on the twist curve but not in the order-r subgroup")
    return point


def hex_to_bytes(value: str | bytes) -> bytes:
    """0x-hex (or raw bytes) to bytes; the JSON/TOML files carry points as 0x-hex."""
    if isinstance(value, bytes):
        return value
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidEncodingError(f"not valid hex: {value[:20]!r}...") from None
