import random

import pytest
from hypothesis import given, settings, strategies as st

from attest import (
    PartialSignature,
    batch_verify,
    combine,
    combine_signatures,
    deal,
    partial_sign,
    sign,
    verify,
    verify_partial,
)
from attest.bls import lagrange_at
from attest.bn254 import R, encode_g1
from relay.envelope import keccak256

FAST = "zksnake"


def digest_of(i: int) -> bytes:
    return keccak256(b"threshold test " + i.to_bytes(4, "big"))


@pytest.fixture(scope="module")
def committee_10_7():
    return deal(10, 7, epoch=3, rng=random.Random(7), backend=FAST)


@pytest.mark.parametrize("n, t", [(1, 1), (2, 1), (3, 3), (4, 3), (5, 2), (7, 7), (10, 7)])
def test_t_of_n_round_trip(n: int, t: int) -> None:
    committee, shares = deal(n, t, rng=random.Random(n * 100 + t), backend=FAST)
    assert (committee.n, committee.t, len(committee.members), len(shares)) == (n, t, n, n)
    digest = digest_of(n * t)
    partials = [partial_sign(s, digest, FAST) for s in shares]
    assert all(verify_partial(committee, p, digest, FAST) for p in partials)
    result = combine(committee, digest, partials[-t:], FAST)
    assert result.ok and result.faulty == () and len(result.signers) == t
    assert verify(committee.group_key, digest, result.signature, FAST)
    assert not verify(committee.group_key, digest_of(999), result.signature, FAST)
    assert committee.verify(digest, result.signature, FAST)


def test_reference_backend_round_trip() -> None:
    committee, shares = deal(3, 2, rng=random.Random(5), backend="pyecc")
    digest = digest_of(1)
    partials = [partial_sign(s, digest, "pyecc") for s in shares[1:]]
    result = combine(committee, digest, partials, "pyecc")
    assert result.ok
    fast = combine(committee, digest, [partial_sign(s, digest, FAST) for s in shares[:2]], FAST)
    assert fast.signature == result.signature


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_any_t_partials_combine_to_the_same_signature(committee_10_7, data) -> None:
    committee, shares = committee_10_7
    digest = digest_of(data.draw(st.integers(0, 3)))
    subset = data.draw(st.lists(st.sampled_from(shares), min_size=7, max_size=7, unique_by=lambda s: s.index))
    combined = combine_signatures([partial_sign(s, digest, FAST) for s in subset], FAST)
    reference = combine_signatures([partial_sign(s, digest, FAST) for s in shares[:7]], FAST)
    assert combined == reference
    assert verify(committee.group_key, digest, combined, FAST)


def test_group_secret_signature_equals_combined(committee_10_7) -> None:
    committee, shares = committee_10_7
    lam = lagrange_at([s.index for s in shares[:7]])
    secret = sum(l * s.scalar for l, s in zip(lam, shares[:7])) % R
    digest = digest_of(42)
    assert sign(secret, digest, FAST) == combine(committee, digest, [partial_sign(s, digest, FAST) for s in shares[3:]], FAST).signature


def test_t_minus_one_partials_cannot_sign(committee_10_7) -> None:
    committee, shares = committee_10_7
    digest = digest_of(5)
    partials = [partial_sign(s, digest, FAST) for s in shares[:6]]
    result = combine(committee, digest, partials, FAST)
    assert not result.ok and result.signature is None and "threshold is 7" in result.reason
    forced = combine_signatures(partials, FAST)  # interpolating a degree-6 polynomial from 6 points
    assert not verify(committee.group_key, digest, forced, FAST)


def test_tampered_partial_is_identified(committee_10_7) -> None:
    committee, shares = committee_10_7
    digest = digest_of(6)
    partials = [partial_sign(s, digest, FAST) for s in shares]
    wrong_message = partial_sign(shares[2], digest_of(7), FAST)
    partials[2] = wrong_message  # member 3
    partials[4] = PartialSignature(5, partials[5].signature)  # member 5 replays member 6's partial
    partials[0] = PartialSignature(1, b"\x00" * 64)  # member 1 sends infinity
    result = combine(committee, digest, partials, FAST)
    assert result.ok and result.faulty == (1, 3, 5)
    assert set(result.signers).isdisjoint({1, 3, 5})
    assert verify(committee.group_key, digest, result.signature, FAST)
    assert not verify_partial(committee, wrong_message, digest, FAST)


def test_unknown_member_and_too_many_faulty(committee_10_7) -> None:
    committee, shares = committee_10_7
    digest = digest_of(8)
    partials = [partial_sign(s, digest, FAST) for s in shares[:7]]
    partials[0] = PartialSignature(1, encode_g1((1, 2)))
    partials.append(PartialSignature(11, partials[1].signature))
    result = combine(committee, digest, partials, FAST)
    assert not result.ok and result.faulty == (1, 11)


def test_combine_rejects_duplicate_indices(committee_10_7) -> None:
    _, shares = committee_10_7
    p = partial_sign(shares[0], digest_of(1), FAST)
    with pytest.raises(ValueError, match="duplicate"):
        combine_signatures([p, p], FAST)


def test_batch_verify_good_batch_of_100() -> None:
    committee, shares = deal(1, 1, rng=random.Random(1), backend=FAST)
    items = [(digest_of(i), sign(shares[0].scalar, digest_of(i), FAST)) for i in range(100)]
    result = batch_verify(committee.group_key, items, FAST, rng=random.Random(2))
    assert result.ok and result.pairing_checks == 1


def test_batch_verify_names_the_bad_ones() -> None:
    committee, shares = deal(1, 1, rng=random.Random(1), backend=FAST)
    sk = shares[0].scalar
    items = [(digest_of(i), sign(sk, digest_of(i), FAST)) for i in range(100)]
    items[13] = (digest_of(13), sign(sk, digest_of(14), FAST))  # signature of another message
    items[57] = (digest_of(57), sign(sk + 1, digest_of(57), FAST))  # another key
    items[90] = (digest_of(90), b"\x01" * 64)  # not even a point
    result = batch_verify(committee.group_key, items, FAST, rng=random.Random(3))
    assert result.invalid == (13, 57, 90)
    assert result.pairing_checks < 40  # bisection, not one check per item
    # A pair of forgeries that cancel under equal weights must still be caught (random weights).
    s13, s14 = sign(sk, digest_of(13), FAST), sign(sk, digest_of(14), FAST)
    swapped = [items[i] for i in range(20) if i not in (13, 14)] + [(digest_of(13), s14), (digest_of(14), s13)]
    assert batch_verify(committee.group_key, swapped, FAST).invalid == (18, 19)


def test_batch_verify_reference_backend_small() -> None:
    committee, shares = deal(1, 1, rng=random.Random(1), backend=FAST)
    items = [(digest_of(i), sign(shares[0].scalar, digest_of(i), FAST)) for i in range(3)]
    assert batch_verify(committee.group_key, items, "pyecc").ok
