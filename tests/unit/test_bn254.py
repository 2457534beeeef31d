import json
from pathlib import Path

import pytest
from py_ecc import optimized_bn128 as ref

from attest.backend import BackendUnavailableError, get_backend, set_default_backend
from attest.bn254 import (
    G1_GENERATOR,
    G2_GENERATOR,
    MAX_HASH_INCREMENTS,
    P,
    R,
    CoordinateOutOfRangeError,
    InvalidEncodingError,
    InvalidScalarError,
    NotInSubgroupError,
    NotOnCurveError,
    PointAtInfinityError,
    decode_g1,
    decode_g2,
    decode_scalar,
    encode_g1,
    encode_g2,
    encode_scalar,
    hash_to_g1,
    hex_to_bytes,
    is_in_g2_subgroup,
    is_on_g1_curve,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

G2_GEN_HEX = (
    "198e9393920d483a7260bfb731fb5d25f1aa493335a9e71297e485b7aef312c2"
    "1800deef121f1e76426a00665e5c4479674322d4f75edadd46debd5cd992f6ed"
    "090689d0585ff075ec9e99ad690c3395bc4b313370b38ef355acdadcd122975b"
    "12c85ea5db8c6deb4aab71808dcb408fe3d1e7690c43d37b4ce6cc0166fa7daa"
)


def test_g2_generator_encodes_in_eip197_order() -> None:
    assert encode_g2(G2_GENERATOR).hex() == G2_GEN_HEX
    assert decode_g2(bytes.fromhex(G2_GEN_HEX)) == G2_GENERATOR


def test_hash_to_g1_follows_try_and_increment() -> None:
    # digest 0: x = 0 gives beta = 3, a non-residue, so one increment lands on the generator (1, 2)
    assert hash_to_g1(bytes(32)) == ((1, 2), 1)
    digest = b"\xff" * 32
    (x, y), k = hash_to_g1(digest)
    assert x == (int.from_bytes(digest, "big") + k) % P
    assert y == pow((x**3 + 3) % P, (P + 1) // 4, P)  # principal root, not negated
    assert is_on_g1_curve((x, y))
    for step in range(k):  # every skipped x had no square root
        x_skipped = (int.from_bytes(digest, "big") + step) % P
        beta = (x_skipped**3 + 3) % P
        assert pow(pow(beta, (P + 1) // 4, P), 2, P) != beta


def test_hash_to_g1_rejects_wrong_digest_length() -> None:
    with pytest.raises(InvalidEncodingError):
        hash_to_g1(b"\x00" * 31)
    assert MAX_HASH_INCREMENTS == 255


def test_g1_round_trip_and_strict_decoding() -> None:
    point = (1, 2)
    data = encode_g1(point)
    assert decode_g1(data) == point
    with pytest.raises(InvalidEncodingError):
        decode_g1(data[:-1])
    with pytest.raises(PointAtInfinityError):
        decode_g1(bytes(64))
    with pytest.raises(NotOnCurveError):
        decode_g1(encode_g1((1, 3)))
    with pytest.raises(CoordinateOutOfRangeError):
        decode_g1((1 + P).to_bytes(32, "big") + (2).to_bytes(32, "big"))
    assert encode_g1(None) == bytes(64)


def test_g2_strict_decoding() -> None:
    gen = bytes.fromhex(G2_GEN_HEX)
    with pytest.raises(PointAtInfinityError):
        decode_g2(bytes(128))
    with pytest.raises(NotOnCurveError):
        decode_g2(gen[:-1] + bytes([gen[-1] ^ 1]))
    with pytest.raises(CoordinateOutOfRangeError):
        decode_g2((int.from_bytes(gen[:32], "big") + P).to_bytes(32, "big") + gen[32:])
    with pytest.raises(InvalidEncodingError):
        decode_g2(gen + b"\x00")


def test_subgroup_check_agrees_with_py_ecc() -> None:
    cases = json.loads((VECTORS / "bls_bn254.json").read_text())["cases"]
    outside = next(c for c in cases if "outside the G2 subgroup" in c["name"])
    data = hex_to_bytes(outside["group_key"])
    with pytest.raises(NotInSubgroupError):
        decode_g2(data)
    w = [int.from_bytes(data[i : i + 32], "big") for i in range(0, 128, 32)]
    point = (ref.FQ2([w[1], w[0]]), ref.FQ2([w[3], w[2]]), ref.FQ2.one())
    assert ref.is_on_curve(point, ref.b2)
    assert not ref.is_inf(ref.multiply(point, ref.curve_order))
    x = ref.normalize(ref.multiply(ref.G2, 987654321))
    inside = ((int(x[0].coeffs[0]), int(x[0].coeffs[1])), (int(x[1].coeffs[0]), int(x[1].coeffs[1])))
    assert is_in_g2_subgroup(inside)


def test_scalars() -> None:
    assert decode_scalar(encode_scalar(5)) == 5
    assert encode_scalar(R + 5) == encode_scalar(5)
    for bad in (bytes(32), R.to_bytes(32, "big")):
        with pytest.raises(InvalidScalarError):
            decode_scalar(bad)
    with pytest.raises(InvalidEncodingError):
        decode_scalar(b"\x01")


def test_hex_helper() -> None:
    assert hex_to_bytes("0x0aFF") == b"\x0a\xff"
    with pytest.raises(InvalidEncodingError):
        hex_to_bytes("0xzz")


@pytest.mark.parametrize("name", ["pyecc", "zksnake"])
def test_backend_group_operations_agree_with_py_ecc(name: str) -> None:
    bk = get_backend(name)
    s1, s2 = 123456789, R - 3
    assert bk.g1_mul(G1_GENERATOR, s1) == _ref_g1(ref.multiply(ref.G1, s1))
    assert bk.g1_msm([G1_GENERATOR, (1, P - 2)], [s1, s2]) == _ref_g1(
        ref.add(ref.multiply(ref.G1, s1), ref.multiply(ref.neg(ref.G1), s2))
    )
    assert bk.g1_mul(G1_GENERATOR, R) is None
    assert bk.g2_mul(G2_GENERATOR, s1) == decode_g2(encode_g2(bk.g2_mul(G2_GENERATOR, s1)))
    assert bk.g2_msm([G2_GENERATOR, G2_GENERATOR], [s1, R - s1]) is None


def _ref_g1(point):
    x, y = ref.normalize(point)
    return (int(x), int(y))


def test_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_BN254_BACKEND", "pyecc")
    assert get_backend().name == "pyecc"
    monkeypatch.setenv("TESSERA_BN254_BACKEND", "zksnake")
    assert get_backend().name == "zksnake"
    assert get_backend("pyecc").name == "pyecc"
    set_default_backend("pyecc")
    try:
        assert get_backend().name == "pyecc"
    finally:
        set_default_backend(None)
    monkeypatch.setenv("TESSERA_BN254_BACKEND", "nope")
    with pytest.raises(BackendUnavailableError, match="pyecc"):
        get_backend()
    monkeypatch.delenv("TESSERA_BN254_BACKEND")
    assert get_backend().name == "zksnake"  # the fast one is preferred when importable


@pytest.mark.parametrize("name", ["pyecc", "zksnake"])
def test_weighted_pairing_check_accepts_a_good_batch_and_refuses_one_bad_signature(name: str) -> None:
    from attest.bls import NEG_G2

    bk = get_backend(name)
    secrets_ = [11, 22, 33]
    items = []
    for i, secret in enumerate(secrets_):
        h, _ = hash_to_g1(bytes([i + 1]) * 32)
        items.append((bk.g1_mul(h, secret), h, bk.g2_mul(G2_GENERATOR, secret)))
    weights = [(1 << 127) + 5, (1 << 126) + 7, (1 << 125) + 9]
    assert bk.weighted_pairing_check(items, weights, NEG_G2)
    # σ₁ signed under the wrong secret: the combination no longer cancels.
    bad = [items[0], (bk.g1_mul(items[1][1], 23), items[1][1], items[1][2]), items[2]]
    assert not bk.weighted_pairing_check(bad, weights, NEG_G2)
    # Two signatures swapped between messages: each is valid for the other's message, not its own.
    swapped = [(items[1][0], items[0][1], items[0][2]), (items[0][0], items[1][1], items[1][2]), items[2]]
    assert not bk.weighted_pairing_check(swapped, weights, NEG_G2)
    with pytest.raises(ValueError):
        bk.weighted_pairing_check(items, weights[:2], NEG_G2)
