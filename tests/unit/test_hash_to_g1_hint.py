"""The one hash-to-curve hint (attest.bn254.hash_to_g1_hint) against the BLS vectors, and both chains'
encodings of it: Solana's G1Hint (k, y, y_sqrt as bytes) and the EVM's (k, y, ySqrt) arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.solana.program import Attestation, G1Hint
from attest.bn254 import P, HashToG1Hint, InvalidEncodingError, fp_sqrt, hash_to_g1, hash_to_g1_hint, hex_to_bytes
from relay.envelope import keccak256, message_digest

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "bls_bn254.json").read_text())["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_the_hint_names_the_vector_point_and_proves_its_root(case: dict) -> None:
    digest = hex_to_bytes(case["digest"])
    h = hex_to_bytes(case["h"])
    hint = hash_to_g1_hint(digest)
    assert isinstance(hint, HashToG1Hint) and hint.k == case["k"]
    x, y = int.from_bytes(h[:32], "big"), int.from_bytes(h[32:], "big")
    # The verifier's view: x from the digest and k, y from the hint, y_sqrt proves y is the principal root.
    assert (int.from_bytes(digest, "big") % P + hint.k) % P == x and hint.y == y
    assert hint.y_sqrt * hint.y_sqrt % P == y and (y * y - x * x * x - 3) % P == 0
    assert hash_to_g1(digest) == ((x, y), hint.k)


@pytest.mark.parametrize("case", VECTORS[:4], ids=lambda c: c["name"])
def test_solana_encodes_the_same_hint(case: dict) -> None:
    digest = hex_to_bytes(case["digest"])
    k, y, y_sqrt = hash_to_g1_hint(digest)
    encoded = G1Hint.for_digest(digest)
    assert encoded == G1Hint(k, y.to_bytes(32, "big"), y_sqrt.to_bytes(32, "big"))
    assert encoded.encode() == bytes([k]) + y.to_bytes(32, "big") + y_sqrt.to_bytes(32, "big")
    assert G1Hint.for_point(k, y) == encoded
    envelope = b"any envelope bytes"
    attestation = Attestation.for_envelope(envelope, 3, bytes(64))
    assert attestation.hint == G1Hint.for_digest(message_digest(3, keccak256(envelope)))


def test_fp_sqrt_is_the_principal_root_and_the_hint_refuses_bad_digests() -> None:
    assert fp_sqrt(4) in (2, P - 2) and fp_sqrt(4) ** 2 % P == 4
    with pytest.raises(InvalidEncodingError):  # a digest is 32 bytes, as everywhere else
        hash_to_g1_hint(b"\x01" * 31)
